//! Job controller (upstream's job controller): runs pods from the template until `completions` succeed
//! (or, Indexed, until every index has), at most `parallelism` at a time, recreating failed ones after an
//! exponential backoff (10 s doubling, capped at 6 min) until `backoffLimit` failures; fails the Job past
//! that, past `activeDeadlineSeconds`, or on a FailJob podFailurePolicy rule; deletes its active pods
//! while suspended or finished. Finished pods are counted exactly once (`tracking.rs`); finished Jobs
//! with `ttlSecondsAfterFinished` are deleted by `ttl.rs`.

mod indexes;
mod tracking;
mod ttl;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

use super::pod_control::{self, Expectations};
use super::{claim, pods};
use crate::events::{EventType, Recorder};

const BACKOFF_FIRST: Duration = Duration::from_secs(10);
const BACKOFF_CAP: Duration = Duration::from_secs(360);

struct Context {
    client: Client,
    pods: Store<Pod>,
    expectations: Expectations<Job>,
    recorder: Arc<Recorder>,
}

/// Runs until the client's server goes away, following pods through the shared `pod_cache` and
/// `pod_events`.
pub async fn run(client: Client, pod_cache: Store<Pod>, pod_events: impl Stream<Item = Arc<Pod>> + Send + 'static) {
    let controller = Controller::new(Api::<Job>::all(client.clone()), watcher::Config::default());
    let jobs = controller.store();
    let recorder = Recorder::new(client.clone(), "job-controller");
    let context = Arc::new(Context {
        client: client.clone(),
        pods: pod_cache.clone(),
        expectations: Expectations::default(),
        recorder,
    });
    let (orphans, jobs_for_orphans) = (pod_cache.clone(), jobs.clone());
    let follow = controller
        .watches_shared_stream(pod_events, move |pod| claim::interested(&jobs, pod.as_ref(), "Job", selector))
        .run(reconcile, super::retry_later, context)
        .for_each(|_| futures::future::ready(()));
    tokio::join!(follow, ttl::run(client.clone()), release_orphans(client, orphans, jobs_for_orphans));
}

fn selector(job: &Job) -> Option<kube::core::Selector> {
    claim::selector_of(job.spec.as_ref()?.selector.as_ref()?)
}

fn condition_true(job: &Job, kind: &str) -> bool {
    let conditions = job.status.as_ref().and_then(|s| s.conditions.as_deref()).unwrap_or_default();
    conditions.iter().any(|c| c.type_ == kind && c.status == "True")
}

/// Complete or Failed.
pub fn finished(job: &Job) -> bool {
    condition_true(job, "Complete") || condition_true(job, "Failed")
}

fn reference(job: &Job) -> ObjectReference {
    let mut reference = job.object_ref(&());
    reference.resource_version = None;
    reference
}

async fn reconcile(job: Arc<Job>, context: Arc<Context>) -> Result<Action, kube::Error> {
    let key = ObjectRef::from_obj(job.as_ref());
    if !context.expectations.met(&key, &context.pods) {
        return Ok(Action::requeue(Duration::from_millis(200)));
    }
    let (Some(ns), Some(selector)) = (job.namespace(), selector(&job)) else {
        return Ok(Action::await_change());
    };
    let api: Api<Pod> = Api::namespaced(context.client.clone(), &ns);
    let owned = claim::claim(job.as_ref(), &selector, context.pods.state().into_iter(), &api, pods::is_active).await?;
    let mut status = job.status.clone().unwrap_or_default();
    let now = Timestamp::now();
    let suspended = job.spec.as_ref().and_then(|s| s.suspend).unwrap_or(false);
    let was_finished = finished(&job);
    let tally = tracking::tally(&job, &owned, &mut status);
    let active: Vec<&Pod> = owned.iter().map(AsRef::as_ref).filter(|p| pods::is_active(p)).collect();
    let mut requeue = None;
    if !was_finished {
        if !suspended && status.start_time.is_none() {
            status.start_time = Some(Time(now));
        }
        let verdict = judge(&job, &status, &tally, now);
        match verdict {
            Outcome::Failed(reason, message) => {
                finish(&mut status, &[("FailureTarget", &reason), ("Failed", &reason)], &message, now);
                delete_active(&context, &job, &api, &key, &active).await?;
                context.recorder.emit(reference(&job), EventType::Warning, &reason, message);
            }
            Outcome::Complete => {
                finish(&mut status, &[("SuccessCriteriaMet", "CompletionsReached"), ("Complete", "")], "", now);
                status.completion_time = Some(Time(now));
                context.recorder.emit(reference(&job), EventType::Normal, "Completed", "Job completed".into());
            }
            Outcome::Running(deadline) => {
                set_suspended(&mut status, suspended, now);
                if suspended {
                    status.start_time = None;
                    delete_active(&context, &job, &api, &key, &active).await?;
                } else {
                    requeue = start_pods(&context, &job, &api, &key, &status, &tally, &active, now).await?;
                }
                requeue = [requeue, deadline].into_iter().flatten().min();
            }
        }
    }
    status.active = Some(if finished_status(&status) { 0 } else { active.len() as i32 });
    status.ready = Some(active.iter().filter(|p| pods::is_ready(p)).count() as i32);
    if job.status.as_ref() != Some(&status) {
        let jobs: Api<Job> = Api::namespaced(context.client.clone(), &ns);
        // Guarded by the resourceVersion read: a count must build on the latest status, never a stale one.
        let mut status_json = serde_json::to_value(&status).map_err(kube::Error::SerdeError)?;
        // A merge patch keeps lists it is not told to clear: emptied ones are sent as null.
        let uncounted = status.uncounted_terminated_pods.clone().unwrap_or_default();
        status_json["uncountedTerminatedPods"] = json!({"succeeded": uncounted.succeeded, "failed": uncounted.failed});
        let patch = json!({"metadata": {"resourceVersion": job.resource_version()}, "status": status_json});
        jobs.patch_status(&job.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await?;
    }
    // Only once the status records them may the finished pods go.
    for pod in &tally.release {
        tracking::release(&api, pod).await?;
    }
    Ok(requeue.map_or_else(|| Action::requeue(Duration::from_secs(300)), Action::requeue))
}

enum Outcome {
    Failed(String, String),
    Complete,
    /// Still running; when its deadline falls, if it has one.
    Running(Option<Duration>),
}

/// Whether the Job has failed, completed, or runs on.
fn judge(job: &Job, status: &JobStatus, tally: &tracking::Tally, now: Timestamp) -> Outcome {
    let spec = job.spec.as_ref();
    if let Some(message) = &tally.fail_job {
        return Outcome::Failed("PodFailurePolicy".into(), message.clone());
    }
    let (succeeded, failed) = tally.totals(status);
    if failed > spec.and_then(|s| s.backoff_limit).unwrap_or(6) {
        return Outcome::Failed("BackoffLimitExceeded".into(), "Job has reached the specified backoff limit".into());
    }
    let mut deadline = None;
    if let (Some(seconds), Some(start)) = (spec.and_then(|s| s.active_deadline_seconds), status.start_time.as_ref()) {
        let at = start.0 + SignedDuration::from_secs(seconds);
        if at <= now {
            return Outcome::Failed("DeadlineExceeded".into(), "Job was active longer than specified deadline".into());
        }
        deadline = Duration::try_from(at.duration_since(now)).ok();
    }
    let indexed = spec.and_then(|s| s.completion_mode.as_deref()) == Some("Indexed");
    let done = match spec.and_then(|s| s.completions) {
        Some(completions) if indexed => tally.completed_indexes.len() as i32 >= completions,
        Some(completions) => succeeded >= completions,
        // A work queue is done once one pod succeeded.
        None => succeeded > 0,
    };
    if done {
        Outcome::Complete
    } else {
        Outcome::Running(deadline)
    }
}

fn finished_status(status: &JobStatus) -> bool {
    let conditions = status.conditions.as_deref().unwrap_or_default();
    conditions.iter().any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
}

fn condition(kind: &str, status: &str, reason: &str, message: &str, now: Timestamp) -> JobCondition {
    JobCondition {
        type_: kind.into(),
        status: status.into(),
        reason: (!reason.is_empty()).then(|| reason.into()),
        message: (!message.is_empty()).then(|| message.into()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Adds the terminal conditions, in upstream's order.
fn finish(status: &mut JobStatus, kinds: &[(&str, &str)], message: &str, now: Timestamp) {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    for (kind, reason) in kinds {
        conditions.retain(|c| c.type_ != *kind);
        conditions.push(condition(kind, "True", reason, message, now));
    }
}

/// The Suspended condition follows `spec.suspend` once it has been set.
fn set_suspended(status: &mut JobStatus, suspended: bool, now: Timestamp) {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    let current = conditions.iter().position(|c| c.type_ == "Suspended");
    let (state, reason, message) =
        if suspended { ("True", "JobSuspended", "Job suspended") } else { ("False", "JobResumed", "Job resumed") };
    match current {
        Some(i) if conditions[i].status == state => {}
        Some(i) => conditions[i] = condition("Suspended", state, reason, message, now),
        None if suspended => conditions.push(condition("Suspended", state, reason, message, now)),
        None => {}
    }
}

async fn delete_active(
    context: &Context,
    job: &Job,
    api: &Api<Pod>,
    key: &ObjectRef<Job>,
    active: &[&Pod],
) -> kube::Result<()> {
    let deleted = pod_control::delete(api, active).await;
    for (name, _) in &deleted.0 {
        context.recorder.emit(reference(job), EventType::Normal, "SuccessfulDelete", format!("Deleted pod: {name}"));
    }
    context.expectations.expect(key.clone(), Vec::new(), deleted.0);
    deleted.1
}

/// Creates the pods the Job lacks, unless a failure's backoff is still running; returns when to look
/// again for the backoff.
#[allow(clippy::too_many_arguments)]
async fn start_pods(
    context: &Context,
    job: &Job,
    api: &Api<Pod>,
    key: &ObjectRef<Job>,
    status: &JobStatus,
    tally: &tracking::Tally,
    active: &[&Pod],
    now: Timestamp,
) -> kube::Result<Option<Duration>> {
    let spec = job.spec.as_ref();
    let (succeeded, failures) = tally.totals(status);
    if let (Some(last), true) = (tally.last_failure, failures > 0) {
        let wait = BACKOFF_FIRST.saturating_mul(1 << (failures - 1).clamp(0, 6) as u32).min(BACKOFF_CAP);
        let until = last + SignedDuration::try_from(wait).unwrap_or_default();
        if until > now {
            return Ok(Duration::try_from(until.duration_since(now)).ok());
        }
    }
    let parallelism = spec.and_then(|s| s.parallelism).unwrap_or(1).max(0);
    let completions = spec.and_then(|s| s.completions);
    let wanted = match completions {
        Some(c) => parallelism.min(c - succeeded),
        None if succeeded > 0 => 0,
        None => parallelism,
    };
    let missing = (wanted - active.len() as i32).max(0) as usize;
    if missing == 0 {
        return Ok(None);
    }
    let template = pods::from_template(spec.map(|s| s.template.clone()), &job.name_any(), claim::controller_ref(job));
    let indexed = spec.and_then(|s| s.completion_mode.as_deref()) == Some("Indexed");
    let new_pods: Vec<Pod> = if indexed {
        let taken: BTreeSet<i32> = active.iter().filter_map(|p| indexes::of(p, completions.unwrap_or(0))).collect();
        let pending = indexes::pending(completions.unwrap_or(0), &tally.completed_indexes, &taken, missing);
        pending.into_iter().map(|i| indexed_pod(template.clone(), &job.name_any(), i)).collect()
    } else {
        vec![tracked(template); missing]
    };
    let created = pod_control::create(api, new_pods).await;
    for name in &created.0 {
        context.recorder.emit(reference(job), EventType::Normal, "SuccessfulCreate", format!("Created pod: {name}"));
    }
    context.expectations.expect(key.clone(), created.0, Vec::new());
    created.1.map(|()| None)
}

/// The pod with the tracking finalizer added.
fn tracked(mut pod: Pod) -> Pod {
    pod.metadata.finalizers.get_or_insert_with(Vec::new).push(tracking::FINALIZER.into());
    pod
}

/// The pod for completion index `index`: annotated and labelled with it, hostname `<job>-<index>`, and
/// JOB_COMPLETION_INDEX in every container's environment.
fn indexed_pod(pod: Pod, job: &str, index: i32) -> Pod {
    let mut pod = tracked(pod);
    pod.metadata.generate_name = Some(format!("{job}-{index}-"));
    pod.metadata.annotations.get_or_insert_with(Default::default).insert(indexes::INDEX_KEY.into(), index.to_string());
    pod.metadata.labels.get_or_insert_with(Default::default).insert(indexes::INDEX_KEY.into(), index.to_string());
    if let Some(spec) = pod.spec.as_mut() {
        spec.hostname = Some(format!("{job}-{index}"));
        let env = EnvVar {
            name: "JOB_COMPLETION_INDEX".into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: format!("metadata.annotations['{}']", indexes::INDEX_KEY),
                    api_version: Some("v1".into()),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        for container in spec.containers.iter_mut().chain(spec.init_containers.iter_mut().flatten()) {
            container.env.get_or_insert_with(Vec::new).push(env.clone());
        }
    }
    pod
}

/// Removes the tracking finalizer from pods whose Job is gone (deleted with them, or never seen), so
/// they are not stuck terminating.
async fn release_orphans(client: Client, pod_cache: Store<Pod>, jobs: Store<Job>) {
    if jobs.wait_until_ready().await.is_err() {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        for pod in pod_cache.state().iter().filter(|p| tracking::has_finalizer(p)) {
            let ns = pod.namespace().unwrap_or_default();
            let job = claim::controller_of(pod.as_ref()).filter(|o| o.kind == "Job");
            let alive = job.is_some_and(|o| {
                jobs.get(&ObjectRef::new(&o.name).within(&ns))
                    .is_some_and(|j| j.uid().as_deref() == Some(o.uid.as_str()))
            });
            if !alive {
                let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
                if let Err(error) = tracking::release(&api, pod).await {
                    tracing::debug!(%error, pod = pod.name_any(), "could not release a job pod");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(spec: serde_json::Value, status: serde_json::Value) -> Job {
        let mut spec = spec;
        spec["template"] = json!({"spec": {"containers": [{"name": "c", "image": "i"}]}});
        serde_json::from_value(json!({"metadata": {"name": "j"}, "spec": spec, "status": status})).expect("job")
    }

    fn outcome(job: &Job) -> String {
        let status = job.status.clone().unwrap_or_default();
        match judge(job, &status, &tracking::Tally::default(), Timestamp::now()) {
            Outcome::Failed(reason, _) => reason,
            Outcome::Complete => "Complete".into(),
            Outcome::Running(_) => "Running".into(),
        }
    }

    #[test]
    fn completion_backoff_limit_and_deadline_decide() {
        assert_eq!(outcome(&job(json!({"completions": 5}), json!({"succeeded": 5}))), "Complete");
        assert_eq!(outcome(&job(json!({"completions": 5}), json!({"succeeded": 4}))), "Running");
        assert_eq!(
            outcome(&job(json!({"completions": 5, "backoffLimit": 1}), json!({"failed": 2}))),
            "BackoffLimitExceeded"
        );
        let old = json!({"startTime": "2020-01-01T00:00:00Z"});
        assert_eq!(outcome(&job(json!({"completions": 1, "activeDeadlineSeconds": 10}), old)), "DeadlineExceeded");
        assert_eq!(outcome(&job(json!({"parallelism": 2}), json!({"succeeded": 1}))), "Complete", "a work queue");
    }

    #[test]
    fn indexed_pods_carry_their_index() {
        let pod =
            indexed_pod(pods::from_template(job(json!({}), json!({})).spec.map(|s| s.template), "j", None), "j", 3);
        assert_eq!(pod.annotations().get(indexes::INDEX_KEY).map(String::as_str), Some("3"));
        let spec = pod.spec.expect("spec");
        assert_eq!(spec.hostname.as_deref(), Some("j-3"));
        assert_eq!(spec.containers[0].env.as_ref().map(|e| e[0].name.as_str()), Some("JOB_COMPLETION_INDEX"));
        assert!(pod.metadata.finalizers.expect("finalizers").contains(&tracking::FINALIZER.to_string()));
    }
}
