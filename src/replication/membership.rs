//! Membership changes, made by the leader one at a time: adding a server (as a learner that catches up,
//! then a voter in place of any member at its address) and removing one, refused when the voters left
//! could not form a quorum among the members answering now (etcd's strict reconfiguration check).

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

fn refused(e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> Refusal {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => Refusal::NotLeader,
        other => Refusal::Failed(other.to_string()),
    }
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
                self.raft.change_membership(update, true).await.map_err(refused)?;
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
        self.raft.change_membership(voters, false).await.map_err(refused)?;
        Ok(())
    }

    /// On the leader: removes member `id` (voter or learner); whether it was removed. The only voter
    /// stays (there is no group without it). Refused when fewer voters answer than a quorum of
    /// those left.
    pub async fn remove_server(&self, id: NodeId) -> Result<bool, Refusal> {
        let _one_at_a_time = self.membership_changes.lock().await;
        if !self.is_leader() {
            return Err(Refusal::NotLeader);
        }
        let membership = self.raft.metrics().borrow().membership_config.membership().clone();
        if membership.get_node(&id).is_none() {
            return Ok(false);
        }
        let voters: BTreeSet<NodeId> = membership.voter_ids().filter(|voter| *voter != id).collect();
        if voters.is_empty() {
            tracing::info!(id, "not removing the only voter");
            return Ok(false);
        }
        let mut answering = 0;
        for voter in &voters {
            let address = membership.get_node(voter).map(|node| node.addr.clone()).unwrap_or_default();
            let path = addressed(PING_PATH, *voter);
            if *voter == self.id || self.peers.call::<(), ()>(&address, &path, &(), PING_TIMEOUT).await.is_ok() {
                answering += 1;
            }
        }
        let quorum = voters.len() / 2 + 1;
        if answering < quorum {
            return Err(Refusal::Failed(format!(
                "only {answering} of the {} voters left answer, fewer than their quorum of {quorum}",
                voters.len()
            )));
        }
        tracing::info!(id, ?voters, "removing a server from the group");
        let change = if membership.voter_ids().any(|voter| voter == id) {
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        };
        self.raft.change_membership(change, false).await.map_err(refused)?;
        // Told directly: replication to it has stopped, so it may never see the change itself.
        let address = membership.get_node(&id).map(|node| node.addr.clone()).unwrap_or_default();
        if let Err(error) = self.peers.call::<(), ()>(&address, &addressed(REMOVED_PATH, id), &(), PING_TIMEOUT).await {
            tracing::warn!(id, %address, %error, "could not tell the removed server; it stays up until stopped");
        }
        Ok(true)
    }
}
