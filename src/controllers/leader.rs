//! Leader election through a coordination.k8s.io Lease, as client-go's leaderelection does: a candidate
//! takes the Lease when it is free or its holder has not renewed it for `LEASE_DURATION` (measured on
//! this server's clock from when it last saw the Lease change, so clock skew between servers does not
//! matter), renews it every `RETRY_PERIOD`, and stops its work the moment it cannot renew within
//! `RENEW_DEADLINE`. Every write is guarded by the Lease's resourceVersion, so two candidates can
//! never both win. A server keeps one identity across restarts, so a restarted lone server takes its
//! Lease back at once instead of waiting for it to expire.

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::Client;

/// Upstream's defaults for kube-controller-manager and kube-scheduler.
const LEASE_DURATION: Duration = Duration::from_secs(15);
const RENEW_DEADLINE: Duration = Duration::from_secs(10);
const RETRY_PERIOD: Duration = Duration::from_secs(2);
/// Leases of the control plane's components live here.
const NAMESPACE: &str = "kube-system";

/// This server's identity as a Lease holder: `<hostname>_<uuid>`, made once and kept in `server_dir`.
pub fn identity(server_dir: &Path) -> std::io::Result<String> {
    let path = server_dir.join("identity");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let host = hostname::get().map(|h| h.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    let id = format!("{host}_{}", uuid::Uuid::new_v4());
    crate::fsutil::write_atomic(&path, id.as_bytes(), 0o600)?;
    Ok(id)
}

/// What this candidate last saw of the Lease, and when.
struct Observed {
    lease: Lease,
    at: Instant,
}

struct Candidate {
    api: Api<Lease>,
    name: &'static str,
    identity: String,
    observed: Option<Observed>,
}

/// Runs `work` whenever this server holds Lease `name`, stopping it when the Lease is lost; never
/// returns.
pub async fn run_while_leader<W, F>(client: Client, name: &'static str, identity: String, work: W)
where
    W: Fn() -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let mut candidate = Candidate { api: Api::namespaced(client, NAMESPACE), name, identity, observed: None };
    loop {
        while !candidate.try_acquire_or_renew().await {
            tokio::time::sleep(RETRY_PERIOD).await;
        }
        tracing::info!(lease = name, identity = candidate.identity, "became leader");
        let task = tokio::spawn(work());
        let mut renewed_at = Instant::now();
        while renewed_at.elapsed() < RENEW_DEADLINE {
            tokio::time::sleep(RETRY_PERIOD).await;
            if candidate.try_acquire_or_renew().await {
                renewed_at = Instant::now();
            }
        }
        task.abort();
        tracing::warn!(lease = name, identity = candidate.identity, "lost the lease; stopped leading");
    }
}

impl Candidate {
    /// Takes or renews the Lease; whether this candidate holds it now.
    async fn try_acquire_or_renew(&mut self) -> bool {
        let now = MicroTime(jiff::Timestamp::now());
        let current = match self.api.get_opt(self.name).await {
            Ok(current) => current,
            Err(error) => {
                tracing::debug!(%error, lease = self.name, "could not read the lease");
                return false;
            }
        };
        let Some(current) = current else {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(self.name.into()), ..Default::default() },
                spec: Some(self.spec(None, now)),
            };
            return self.write(self.api.create(&PostParams::default(), &lease).await);
        };
        self.observe(&current);
        let holder = current.spec.as_ref().and_then(|s| s.holder_identity.clone()).filter(|h| !h.is_empty());
        if holder.as_deref().is_some_and(|h| h != self.identity) && !self.expired(&current) {
            return false;
        }
        let mut lease = current;
        let spec = self.spec(lease.spec.take(), now);
        lease.spec = Some(spec);
        let result = self.api.replace(self.name, &PostParams::default(), &lease).await;
        self.write(result)
    }

    /// The spec naming this candidate as holder, keeping acquireTime while it already held the Lease.
    fn spec(&self, previous: Option<LeaseSpec>, now: MicroTime) -> LeaseSpec {
        let previous = previous.unwrap_or_default();
        let ours = previous.holder_identity.as_deref() == Some(self.identity.as_str());
        let transitions = previous.lease_transitions.unwrap_or(0);
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(LEASE_DURATION.as_secs() as i32),
            acquire_time: if ours { previous.acquire_time } else { Some(now.clone()) },
            renew_time: Some(now),
            lease_transitions: Some(if ours || previous.holder_identity.is_none() {
                transitions
            } else {
                transitions + 1
            }),
            ..previous
        }
    }

    /// Notes the Lease as seen now if it changed since last seen.
    fn observe(&mut self, lease: &Lease) {
        let unchanged = self
            .observed
            .as_ref()
            .is_some_and(|o| o.lease.metadata.resource_version == lease.metadata.resource_version);
        if !unchanged {
            self.observed = Some(Observed { lease: lease.clone(), at: Instant::now() });
        }
    }

    /// Whether its holder let the Lease lapse: unchanged for its duration on this server's clock.
    fn expired(&self, lease: &Lease) -> bool {
        let seconds = lease.spec.as_ref().and_then(|s| s.lease_duration_seconds).unwrap_or(0).max(0) as u64;
        self.observed.as_ref().is_none_or(|o| o.at.elapsed() > Duration::from_secs(seconds))
    }

    fn write(&mut self, result: Result<Lease, kube::Error>) -> bool {
        match result {
            Ok(lease) => {
                self.observed = Some(Observed { lease, at: Instant::now() });
                true
            }
            Err(error) => {
                tracing::debug!(%error, lease = self.name, "could not take the lease");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(identity: &str) -> Candidate {
        let service = tower::service_fn(|_: http::Request<kube::client::Body>| async {
            Err::<http::Response<kube::client::Body>, std::io::Error>(std::io::Error::other("offline"))
        });
        let client = Client::new(service, "default");
        Candidate { api: Api::namespaced(client, NAMESPACE), name: "test", identity: identity.into(), observed: None }
    }

    fn held_by(holder: &str, version: &str) -> Lease {
        Lease {
            metadata: ObjectMeta { resource_version: Some(version.into()), ..Default::default() },
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                lease_duration_seconds: Some(15),
                lease_transitions: Some(4),
                ..Default::default()
            }),
        }
    }

    #[tokio::test]
    async fn a_lease_renewed_by_its_holder_is_not_expired_until_it_stays_still_for_its_duration() {
        let mut c = candidate("me");
        let lease = held_by("other", "1");
        c.observe(&lease);
        assert!(!c.expired(&lease));
        c.observed.as_mut().expect("observed").at = Instant::now() - Duration::from_secs(16);
        c.observe(&lease);
        assert!(c.expired(&lease), "unchanged for longer than its duration");
        c.observe(&held_by("other", "2"));
        assert!(!c.expired(&lease), "a renewal restarts the clock");
    }

    #[tokio::test]
    async fn taking_a_lease_from_another_holder_counts_a_transition() {
        let c = candidate("me");
        let now = MicroTime(jiff::Timestamp::now());
        let taken = c.spec(held_by("other", "1").spec, now.clone());
        assert_eq!((taken.holder_identity.as_deref(), taken.lease_transitions), (Some("me"), Some(5)));
        assert_eq!(taken.acquire_time, Some(now.clone()));
        let renewed = c.spec(Some(taken.clone()), now);
        assert_eq!(renewed.lease_transitions, Some(5));
        assert_eq!(renewed.acquire_time, taken.acquire_time);
    }

    #[test]
    fn identity_is_kept_across_restarts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = identity(dir.path()).expect("identity");
        assert_eq!(identity(dir.path()).expect("identity"), first);
        assert!(first.contains('_'));
    }
}
