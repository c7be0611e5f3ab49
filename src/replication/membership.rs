//! The group's members as a server sees them, and membership changes, made by the leader one at a time,
//! each in a task of its own so that no caller giving up leaves the group in a joint configuration:
//! adding a server (as a learner that catches up, then a voter in place of any member at its address)
//! and removing one, refused unless a quorum of the voters and a quorum of the voters left answer now
//! (etcd's strict reconfiguration check).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers};

use serde::{Deserialize, Serialize};

use super::network::{addressed, MEMBERSHIP_PATH, PING_PATH, REMOVED_PATH};
use super::types::{NodeId, RaftMetrics};
use super::{JoinRequest, Refusal, Replication};

/// How long a member may take to answer the check before a removal.
const PING_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a removal is waited for once the members answered (with the pings, less than a forward's
/// deadline).
const REMOVAL_COMMIT_TIMEOUT: Duration = Duration::from_secs(5);

/// The outcome of a change made in a task of its own.
fn finished(change: Result<Result<(), Refusal>, tokio::task::JoinError>) -> Result<(), Refusal> {
    change.unwrap_or_else(|e| Err(Refusal::Failed(format!("the membership change failed: {e}"))))
}

fn refused(e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> Refusal {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => Refusal::NotLeader,
        other => Refusal::Failed(other.to_string()),
    }
}

/// What a removal did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Removal {
    Removed,
    /// No member has that id: nothing to do.
    NotMember,
    /// It is the only voter, which stays (there is no group without it).
    OnlyVoter,
}

/// A member of the group as an admin sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// A string: ids go beyond the integers JSON readers keep exactly.
    pub id: String,
    /// Where its peers reach it (`host:port` of its API).
    pub address: String,
    /// `leader`, `voter` or `learner`.
    pub role: String,
}

/// The newest membership a server knows to be committed: its log index and its members.
#[derive(Debug, Serialize, Deserialize)]
pub struct CommittedMembership {
    index: u64,
    members: Vec<NodeId>,
}

/// The membership in `metrics` if it is committed (applied, hence committed: one still being committed
/// may yet be undone by the next leader).
pub(super) fn committed_membership(metrics: &RaftMetrics) -> Option<CommittedMembership> {
    let config = &metrics.membership_config;
    (config.log_id() <= &metrics.last_applied).then(|| CommittedMembership {
        index: config.log_id().map_or(0, |id| id.index),
        members: config.membership().nodes().map(|(id, _)| *id).collect(),
    })
}

impl Replication {
    /// The membership this server last applied, if it is the newest it knows.
    pub(super) fn committed_membership(&self) -> Option<CommittedMembership> {
        committed_membership(&self.raft.metrics().borrow())
    }

    /// The members of the group as this server knows it, voters first.
    pub fn members(&self) -> Vec<Member> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let mut members: Vec<Member> = membership
            .nodes()
            .map(|(id, node)| {
                let role = match (metrics.current_leader == Some(*id), voters.contains(id)) {
                    (true, _) => "leader",
                    (false, true) => "voter",
                    (false, false) => "learner",
                };
                Member { id: id.to_string(), address: node.addr.clone(), role: role.into() }
            })
            .collect();
        members.sort_by_key(|member| member.role == "learner");
        members
    }

    /// Whether another member knows a committed membership newer than this server's that leaves it out:
    /// it was removed while down, and the leader could not tell it (committed changes are never undone,
    /// and a removed server comes back only with a new id).
    pub(super) async fn removed_while_down(&self) -> bool {
        let (known, others): (u64, Vec<(NodeId, String)>) = {
            let metrics = self.raft.metrics();
            let metrics = metrics.borrow();
            let config = &metrics.membership_config;
            let others = config.membership().nodes().filter(|(id, _)| **id != self.id);
            (config.log_id().map_or(0, |id| id.index), others.map(|(id, node)| (*id, node.addr.clone())).collect())
        };
        // Asked by node id: a server now at that address in another group (a cluster reset) refuses.
        for (id, address) in others {
            let path = addressed(MEMBERSHIP_PATH, id);
            let view = self.peers.call::<(), Option<CommittedMembership>>(&address, &path, &(), PING_TIMEOUT);
            if let Ok(Some(view)) = view.await {
                if view.index > known && !view.members.contains(&self.id) {
                    return true;
                }
            }
        }
        false
    }

    /// Makes a membership change in a task of its own, so that it completes even when its caller stops
    /// waiting: openraft commits a joint configuration, then the final one, from the future making the
    /// change, and a future dropped between the two would leave the group joint.
    fn change_membership(
        &self,
        change: impl Into<ChangeMembers<NodeId, BasicNode>>,
    ) -> tokio::task::JoinHandle<Result<(), Refusal>> {
        let raft = self.raft.clone();
        let change = change.into();
        tokio::spawn(async move { raft.change_membership(change, false).await.map(drop).map_err(refused) })
    }

    /// On the leader: adds a server as a learner, waits for it to catch up, then makes it a voter in
    /// place of any member at the same address (a server re-joining with a wiped data dir).
    pub(super) async fn add_server(&self, request: JoinRequest) -> Result<(), Refusal> {
        let _one_at_a_time = self.membership_changes.lock().await;
        let node = BasicNode::new(&request.address);
        let membership = self.raft.metrics().borrow().membership_config.membership().clone();
        match membership.get_node(&request.id) {
            Some(known) if known.addr != request.address => {
                tracing::info!(id = request.id, address = %request.address, "updating a member's address");
                let update = ChangeMembers::SetNodes(BTreeMap::from([(request.id, node)]));
                finished(self.change_membership(update).await)?;
            }
            Some(_) => {}
            None => {
                tracing::info!(id = request.id, address = %request.address, "adding a server as a learner");
                self.raft.add_learner(request.id, node, true).await.map_err(refused)?;
            }
        }
        // A learner (just added, or left so by an interrupted join) becomes a voter.
        let membership = self.raft.metrics().borrow().membership_config.membership().clone();
        if membership.voter_ids().any(|id| id == request.id) {
            return Ok(());
        }
        let replaced: BTreeSet<NodeId> = membership
            .nodes()
            .filter(|(id, node)| node.addr == request.address && **id != request.id)
            .map(|(id, _)| *id)
            .collect();
        let mut voters: BTreeSet<NodeId> = membership.voter_ids().filter(|id| !replaced.contains(id)).collect();
        voters.insert(request.id);
        tracing::info!(id = request.id, ?replaced, ?voters, "promoting the server to voter");
        finished(self.change_membership(voters).await)
    }

    /// On the leader: removes member `id` (voter or learner). Refused while another change is under way,
    /// and unless a quorum of the voters and a quorum of the voters left answer now.
    pub async fn remove_server(&self, id: NodeId) -> Result<Removal, Refusal> {
        let Ok(_one_at_a_time) = self.membership_changes.try_lock() else {
            return Err(Refusal::Failed("another membership change (a server joining) is under way".into()));
        };
        if !self.is_leader() {
            return Err(Refusal::NotLeader);
        }
        let membership = self.raft.metrics().borrow().membership_config.membership().clone();
        if membership.get_node(&id).is_none() {
            return Ok(Removal::NotMember);
        }
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let left: BTreeSet<NodeId> = voters.iter().copied().filter(|voter| *voter != id).collect();
        if left.is_empty() {
            tracing::info!(id, "not removing the only voter");
            return Ok(Removal::OnlyVoter);
        }
        let pings = voters.iter().filter(|voter| **voter != self.id).map(|voter| async {
            let address = membership.get_node(voter).map(|node| node.addr.clone()).unwrap_or_default();
            let path = addressed(PING_PATH, *voter);
            self.peers.call::<(), ()>(&address, &path, &(), PING_TIMEOUT).await.is_ok().then_some(*voter)
        });
        let mut answering: BTreeSet<NodeId> = futures::future::join_all(pings).await.into_iter().flatten().collect();
        answering.insert(self.id);
        // The change commits in both configurations (joint consensus), and the voters left must go on.
        for (group, which) in [(&voters, "voters"), (&left, "voters left")] {
            let up = group.intersection(&answering).count();
            let quorum = group.len() / 2 + 1;
            if up < quorum {
                let total = group.len();
                return Err(Refusal::Failed(format!(
                    "only {up} of the {total} {which} answer, fewer than their quorum of {quorum}"
                )));
            }
        }
        tracing::info!(id, ?left, "removing a server from the group");
        let change = if voters.contains(&id) {
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        };
        match tokio::time::timeout(REMOVAL_COMMIT_TIMEOUT, self.change_membership(change)).await {
            Ok(changed) => finished(changed)?,
            Err(_) => {
                return Err(Refusal::Indeterminate(format!(
                    "the removal is not committed after {REMOVAL_COMMIT_TIMEOUT:?} (it goes on; see `tug member ls`)"
                )))
            }
        };
        // Told directly: replication to it has stopped, so it may never see the change itself.
        let address = membership.get_node(&id).map(|node| node.addr.clone()).unwrap_or_default();
        if let Err(error) = self.peers.call::<(), ()>(&address, &addressed(REMOVED_PATH, id), &(), PING_TIMEOUT).await {
            tracing::warn!(id, %address, %error, "could not tell the removed server; it stays up until stopped");
        }
        Ok(Removal::Removed)
    }
}
