//! Counting finished pods exactly once (upstream's Job tracking with finalizers): every Job pod carries
//! the `batch.kubernetes.io/job-tracking` finalizer, so it cannot vanish before it is counted. A finished
//! pod is first recorded in `status.uncountedTerminatedPods`, then its finalizer is removed, and once
//! the finalizer is gone it moves into `succeeded`/`failed`; a crash between the steps repeats a step,
//! never a count. Failed pods go through the podFailurePolicy on the way in.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::batch::v1::{Job, JobStatus, PodFailurePolicyRule, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::json;

use super::indexes;

pub const FINALIZER: &str = "batch.kubernetes.io/job-tracking";

fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

pub fn has_finalizer(pod: &Pod) -> bool {
    pod.finalizers().iter().any(|f| f == FINALIZER)
}

/// What a podFailurePolicy rule decided about a failed pod.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Fail the whole Job, with this message.
    FailJob(String),
    /// Do not count the failure.
    Ignore,
    /// Count it towards backoffLimit (also when no rule matches).
    Count,
}

fn rule_matches(rule: &PodFailurePolicyRule, pod: &Pod) -> Option<String> {
    if let Some(codes) = &rule.on_exit_codes {
        let statuses = pod.status.as_ref().and_then(|s| s.container_statuses.as_deref()).unwrap_or_default();
        return statuses.iter().find_map(|c| {
            let code = c.state.as_ref()?.terminated.as_ref()?.exit_code;
            let named = codes.container_name.as_ref().is_none_or(|n| *n == c.name);
            let listed = codes.values.contains(&code);
            let hit = named && code != 0 && if codes.operator == "In" { listed } else { !listed };
            hit.then(|| {
                format!(
                    "Container {} for pod {}/{} failed with exit code {code}",
                    c.name,
                    pod.namespace().unwrap_or_default(),
                    pod.name_any()
                )
            })
        });
    }
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_deref()).unwrap_or_default();
    rule.on_pod_conditions.iter().flatten().find_map(|wanted| {
        let status = wanted.status.as_str();
        conditions.iter().any(|c| c.type_ == wanted.type_ && c.status == status).then(|| {
            format!(
                "Pod {}/{} has condition {} matching",
                pod.namespace().unwrap_or_default(),
                pod.name_any(),
                wanted.type_
            )
        })
    })
}

/// The podFailurePolicy's verdict on a failed pod: the first matching rule decides.
pub fn judge(job: &Job, pod: &Pod) -> Verdict {
    let rules = job.spec.as_ref().and_then(|s| s.pod_failure_policy.as_ref()).map(|p| p.rules.as_slice());
    for (index, rule) in rules.unwrap_or_default().iter().enumerate() {
        let Some(what) = rule_matches(rule, pod) else { continue };
        return match rule.action.as_str() {
            "FailJob" => Verdict::FailJob(format!("{what} {}FailJob rule at index {index}", matching_word(&what))),
            "Ignore" => Verdict::Ignore,
            _ => Verdict::Count,
        };
    }
    Verdict::Count
}

fn matching_word(what: &str) -> &'static str {
    if what.ends_with("matching") {
        ""
    } else {
        "matching "
    }
}

/// What accounting found in one sync.
#[derive(Debug, Default)]
pub struct Tally {
    /// Pods whose finalizer may now be removed (recorded, or not to be counted).
    pub release: Vec<Arc<Pod>>,
    /// A FailJob verdict, if a newly failed pod drew one.
    pub fail_job: Option<String>,
    /// Completion indexes that succeeded (Indexed Jobs).
    pub completed_indexes: BTreeSet<i32>,
    /// When the latest counted failure happened, for the backoff.
    pub last_failure: Option<jiff::Timestamp>,
    /// Finished pods present now (succeeded, failed and not ignored): a floor under the counts when
    /// the Job read is older than the pods read.
    seen: (i32, i32),
}

impl Tally {
    /// Successes and failures so far, counted or recorded, and never fewer than the pods show.
    pub fn totals(&self, status: &JobStatus) -> (i32, i32) {
        let (ok, failed) = recorded(status);
        let counted = (status.succeeded.unwrap_or(0) + ok, status.failed.unwrap_or(0) + failed);
        (counted.0.max(self.seen.0), counted.1.max(self.seen.1))
    }
}

/// Advances the accounting in `status` for the Job's `owned` pods.
pub fn tally(job: &Job, owned: &[Arc<Pod>], status: &mut JobStatus) -> Tally {
    let mut out = Tally::default();
    let completions = job.spec.as_ref().and_then(|s| s.completions).unwrap_or(0);
    let indexed = job.spec.as_ref().and_then(|s| s.completion_mode.as_deref()) == Some("Indexed");
    out.completed_indexes = status.completed_indexes.as_deref().map(indexes::parse).unwrap_or_default();
    let mut uncounted = status.uncounted_terminated_pods.take().unwrap_or_default();
    let (mut succeeded, mut failed) =
        (uncounted.succeeded.take().unwrap_or_default(), uncounted.failed.take().unwrap_or_default());
    // Step 3: recorded pods whose finalizer is gone (or that are gone) are counted.
    let holding: BTreeSet<String> = owned.iter().filter(|p| has_finalizer(p)).filter_map(|p| p.uid()).collect();
    let before = (succeeded.len(), failed.len());
    succeeded.retain(|uid| holding.contains(uid));
    failed.retain(|uid| holding.contains(uid));
    status.succeeded = Some(status.succeeded.unwrap_or(0) + (before.0 - succeeded.len()) as i32);
    status.failed = Some(status.failed.unwrap_or(0) + (before.1 - failed.len()) as i32);
    // Steps 1 and 2: newly finished pods are recorded, and recorded ones released.
    for pod in owned.iter().filter(|p| has_finalizer(p)) {
        let uid = pod.uid().unwrap_or_default();
        match phase(pod) {
            "Succeeded" => {
                if !succeeded.contains(&uid) {
                    succeeded.push(uid);
                }
                if indexed {
                    out.completed_indexes.extend(indexes::of(pod, completions));
                }
                out.release.push(pod.clone());
            }
            "Failed" => {
                match judge(job, pod) {
                    Verdict::Ignore => {}
                    verdict => {
                        if let Verdict::FailJob(message) = verdict {
                            out.fail_job.get_or_insert(message);
                        }
                        if !failed.contains(&uid) {
                            failed.push(uid);
                        }
                    }
                }
                out.release.push(pod.clone());
            }
            // A pod deleted before it finished is not a completion; it may go.
            _ if pod.metadata.deletion_timestamp.is_some() => out.release.push(pod.clone()),
            _ => {}
        }
    }
    let failed_counts = |p: &&Arc<Pod>| phase(p) == "Failed" && judge(job, p) != Verdict::Ignore;
    out.seen = (
        owned.iter().filter(|p| phase(p) == "Succeeded").count() as i32,
        owned.iter().filter(failed_counts).count() as i32,
    );
    out.last_failure = owned.iter().filter(|p| phase(p) == "Failed").filter_map(|p| finished_at(p)).max();
    if !succeeded.is_empty() || !failed.is_empty() {
        status.uncounted_terminated_pods = Some(UncountedTerminatedPods {
            succeeded: (!succeeded.is_empty()).then_some(succeeded),
            failed: (!failed.is_empty()).then_some(failed),
        });
    } else {
        status.uncounted_terminated_pods = Some(UncountedTerminatedPods::default());
    }
    if indexed {
        status.completed_indexes = Some(indexes::format(&out.completed_indexes));
    }
    out
}

/// When the pod's last container finished.
fn finished_at(pod: &Pod) -> Option<jiff::Timestamp> {
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    statuses.iter().filter_map(|c| Some(c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref()?.0)).max()
}

/// The successes and failures recorded but not yet counted (they count as done for what to create).
pub fn recorded(status: &JobStatus) -> (i32, i32) {
    let uncounted = status.uncounted_terminated_pods.as_ref();
    let len = |list: Option<&Vec<String>>| list.map_or(0, Vec::len) as i32;
    (len(uncounted.and_then(|u| u.succeeded.as_ref())), len(uncounted.and_then(|u| u.failed.as_ref())))
}

/// Removes the tracking finalizer from `pod` (guarded by its resourceVersion).
pub async fn release(api: &Api<Pod>, pod: &Pod) -> kube::Result<()> {
    let rest: Vec<&String> = pod.finalizers().iter().filter(|f| *f != FINALIZER).collect();
    let patch = json!({"metadata": {"finalizers": if rest.is_empty() { json!(null) } else { json!(rest) },
        "resourceVersion": pod.resource_version()}});
    match api.patch(&pod.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn job(policy: Value) -> Job {
        serde_json::from_value(json!({"metadata": {"name": "j"}, "spec": {"completions": 3, "podFailurePolicy": policy,
            "template": {"spec": {"containers": []}}}}))
        .expect("job")
    }

    fn pod(uid: &str, phase: &str, code: i32, finalizer: bool) -> Arc<Pod> {
        let finalizers = if finalizer { json!([FINALIZER]) } else { json!([]) };
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": uid, "namespace": "ns", "uid": uid, "finalizers": finalizers},
                "status": {"phase": phase, "containerStatuses": [{"name": "main", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                    "state": {"terminated": {"exitCode": code, "finishedAt": "2024-01-01T00:00:00Z"}}}]}}))
            .expect("pod"),
        )
    }

    #[test]
    fn finished_pods_are_recorded_released_then_counted_once() {
        let job = job(Value::Null);
        let mut status = JobStatus::default();
        let first = tally(
            &job,
            &[pod("a", "Succeeded", 0, true), pod("b", "Failed", 1, true), pod("c", "Running", 0, true)],
            &mut status,
        );
        assert_eq!(first.release.len(), 2);
        assert_eq!(recorded(&status), (1, 1));
        assert_eq!((status.succeeded, status.failed), (Some(0), Some(0)));
        // The finalizers are gone now: the pods are counted, and not again.
        tally(&job, &[pod("a", "Succeeded", 0, false), pod("b", "Failed", 1, false)], &mut status);
        assert_eq!((status.succeeded, status.failed), (Some(1), Some(1)));
        assert_eq!(recorded(&status), (0, 0));
        tally(&job, &[pod("a", "Succeeded", 0, false)], &mut status);
        assert_eq!((status.succeeded, status.failed), (Some(1), Some(1)));
    }

    #[test]
    fn the_failure_policy_fails_ignores_or_counts() {
        let policy = json!({"rules": [
            {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}},
            {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [7]}}]});
        let job = job(policy);
        assert_eq!(
            judge(&job, &pod("x", "Failed", 42, true)),
            Verdict::FailJob(
                "Container main for pod ns/x failed with exit code 42 matching FailJob rule at index 0".into()
            )
        );
        assert_eq!(judge(&job, &pod("x", "Failed", 7, true)), Verdict::Ignore);
        assert_eq!(judge(&job, &pod("x", "Failed", 1, true)), Verdict::Count);
        let mut status = JobStatus::default();
        tally(&job, &[pod("i", "Failed", 7, true)], &mut status);
        assert_eq!(recorded(&status), (0, 0), "an ignored failure is not counted");
    }
}
