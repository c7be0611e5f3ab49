//! TTL after finished (upstream's ttl-after-finished controller): a Job that has finished and sets
//! `ttlSecondsAfterFinished` is deleted, with its pods (background propagation), that many seconds after
//! it finished.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, DeleteParams, Preconditions, PropagationPolicy};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

/// Runs until the client's server goes away.
pub async fn run(client: Client) {
    Controller::new(Api::<Job>::all(client.clone()), watcher::Config::default())
        .run(reconcile, super::super::retry_later, Arc::new(client))
        .for_each(|_| futures::future::ready(()))
        .await;
}

/// When the Job finished: its Complete or Failed condition's transition.
fn finished_at(job: &Job) -> Option<Timestamp> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    let done = conditions.iter().find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")?;
    done.last_transition_time.as_ref().map(|t| t.0)
}

/// How long until the Job is due for deletion (zero when due); None when it never is.
fn due_in(job: &Job, now: Timestamp) -> Option<Duration> {
    let ttl = job.spec.as_ref()?.ttl_seconds_after_finished?;
    let at = finished_at(job)? + SignedDuration::from_secs(i64::from(ttl));
    Some(Duration::try_from(at.duration_since(now)).unwrap_or_default())
}

async fn reconcile(job: Arc<Job>, client: Arc<Client>) -> Result<Action, kube::Error> {
    if job.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    match due_in(&job, Timestamp::now()) {
        None => Ok(Action::await_change()),
        Some(wait) if !wait.is_zero() => Ok(Action::requeue(wait)),
        Some(_) => {
            let api: Api<Job> = Api::namespaced((*client).clone(), &job.namespace().unwrap_or_default());
            let params = DeleteParams {
                propagation_policy: Some(PropagationPolicy::Background),
                preconditions: Some(Preconditions { uid: job.uid(), resource_version: None }),
                ..DeleteParams::default()
            };
            match api.delete(&job.name_any(), &params).await {
                Ok(_) => Ok(Action::await_change()),
                Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(Action::await_change()),
                Err(e) => Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finished_jobs_are_due_their_ttl_after_finishing() {
        let job = |ttl: serde_json::Value, condition: &str| -> Job {
            serde_json::from_value(json!({"metadata": {"name": "j"}, "spec": {"ttlSecondsAfterFinished": ttl,
                "template": {"spec": {"containers": []}}},
                "status": {"conditions": [{"type": condition, "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"}]}}))
            .expect("job")
        };
        let now: Timestamp = "2024-01-01T00:00:30Z".parse().expect("time");
        assert_eq!(due_in(&job(json!(60), "Complete"), now), Some(Duration::from_secs(30)));
        assert_eq!(due_in(&job(json!(10), "Failed"), now), Some(Duration::ZERO));
        assert_eq!(due_in(&job(json!(null), "Complete"), now), None);
        assert_eq!(due_in(&job(json!(10), "Suspended"), now), None);
    }
}
