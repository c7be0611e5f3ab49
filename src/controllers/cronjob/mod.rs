//! CronJob controller (upstream's cronjob controller v2): at each scheduled time (`core/cron.rs`, in
//! `spec.timeZone`) creates a Job `<cronjob>-<minutes since the epoch>` from the job template, unless
//! suspended, too late (`startingDeadlineSeconds`), or forbidden by `concurrencyPolicy` (Forbid skips
//! while a Job runs, Replace deletes the running ones first); keeps `status.active`,
//! `lastScheduleTime` and `lastSuccessfulTime`; deletes finished Jobs beyond the history limits; and
//! wakes up at the next scheduled time.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

use crate::controllers::claim;
use crate::core::cron::Schedule;
use crate::events::{EventType, Recorder};

/// The annotation on a Job naming the time it was scheduled for.
const SCHEDULED_ANNOTATION: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// More missed start times than this are not all examined (upstream's limit).
const MAX_MISSED: usize = 100;

struct Context {
    client: Client,
    recorder: Arc<Recorder>,
}

/// Runs until the client's server goes away.
pub async fn run(client: Client) {
    let recorder = Recorder::new(client.clone(), "cronjob-controller");
    Controller::new(Api::<CronJob>::all(client.clone()), watcher::Config::default())
        .owns(Api::<Job>::all(client.clone()), watcher::Config::default())
        .run(reconcile, super::retry_later, Arc::new(Context { client, recorder }))
        .for_each(|_| futures::future::ready(()))
        .await;
}

/// The CronJob's time zone: `spec.timeZone`, or the server's own.
pub fn time_zone(cronjob: &CronJob) -> Result<TimeZone, String> {
    match cronjob.spec.as_ref().and_then(|s| s.time_zone.as_deref()) {
        Some(name) => TimeZone::get(name).map_err(|_| format!("unknown time zone {name}")),
        None => Ok(TimeZone::system()),
    }
}

fn reference(object: &impl Resource<DynamicType = ()>) -> ObjectReference {
    let mut reference = object.object_ref(&());
    reference.resource_version = None;
    reference
}

fn job_finished(job: &Job) -> Option<(&str, Timestamp)> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    let done = conditions.iter().find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")?;
    Some((done.type_.as_str(), done.last_transition_time.as_ref().map_or(Timestamp::UNIX_EPOCH, |t| t.0)))
}

async fn reconcile(cronjob: Arc<CronJob>, context: Arc<Context>) -> Result<Action, kube::Error> {
    let ns = cronjob.namespace().unwrap_or_default();
    let jobs_api: Api<Job> = Api::namespaced(context.client.clone(), &ns);
    let owned: Vec<Job> = jobs_api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|j| super::claim::controller_of(j).is_some_and(|o| Some(&o.uid) == cronjob.uid().as_ref()))
        .collect();
    let now = Timestamp::now();
    let mut status = cronjob.status.clone().unwrap_or_default();
    let (mut running, finished): (Vec<Job>, Vec<Job>) = owned.into_iter().partition(|j| job_finished(j).is_none());
    for job in &finished {
        let known = status.active.iter().flatten().any(|r| r.uid == job.uid());
        if let (true, Some((how, at))) = (known, job_finished(job)) {
            let message = format!("Saw completed job: {}, condition: {how}", job.name_any());
            context.recorder.emit(reference(cronjob.as_ref()), EventType::Normal, "SawCompletedJob", message);
            if how == "Complete" && status.last_successful_time.as_ref().is_none_or(|t| t.0 < at) {
                status.last_successful_time = Some(Time(at));
            }
        }
    }
    prune_history(&context, &cronjob, &jobs_api, &finished).await?;

    let (Ok(schedule), Ok(tz)) =
        (Schedule::parse(cronjob.spec.as_ref().map_or("", |s| s.schedule.as_str())), time_zone(&cronjob))
    else {
        write_status(&context, &cronjob, &running, status).await?;
        return Ok(Action::await_change());
    };
    let spec = cronjob.spec.as_ref();
    let since =
        status.last_schedule_time.as_ref().map(|t| t.0).or(cronjob.metadata.creation_timestamp.as_ref().map(|t| t.0));
    let mut earliest = since.unwrap_or(now);
    if let Some(deadline) = spec.and_then(|s| s.starting_deadline_seconds) {
        earliest = earliest.max(now - SignedDuration::from_secs(deadline));
    }
    let (latest, missed) = missed_times(&schedule, &tz, earliest, now);
    if missed > MAX_MISSED {
        let message = "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew"
            .to_string();
        context.recorder.emit(reference(cronjob.as_ref()), EventType::Warning, "TooManyMissedTimes", message);
    }
    let suspended = spec.and_then(|s| s.suspend).unwrap_or(false);
    if let (Some(scheduled), false) = (latest, suspended) {
        let policy = spec.and_then(|s| s.concurrency_policy.as_deref()).unwrap_or("Allow");
        if policy == "Forbid" && !running.is_empty() {
            let message =
                "Not starting job because prior execution is running and concurrency policy is Forbid".to_string();
            context.recorder.emit(reference(cronjob.as_ref()), EventType::Normal, "JobAlreadyActive", message);
        } else {
            if policy == "Replace" {
                for job in running.drain(..) {
                    delete_job(&context, &cronjob, &jobs_api, &job).await?;
                }
            }
            running.extend(create_job(&context, &cronjob, &jobs_api, scheduled, &tz).await?);
            status.last_schedule_time = Some(Time(scheduled));
        }
    }
    write_status(&context, &cronjob, &running, status).await?;
    let next = schedule.next_after(now, &tz).map(|at| Duration::try_from(at.duration_since(now)).unwrap_or_default());
    Ok(next.map_or_else(Action::await_change, |wait| Action::requeue(wait + Duration::from_millis(100))))
}

/// The latest scheduled time in (`earliest`, `now`], and how many there are.
fn missed_times(schedule: &Schedule, tz: &TimeZone, earliest: Timestamp, now: Timestamp) -> (Option<Timestamp>, usize) {
    let (mut latest, mut count) = (None, 0);
    let mut at = earliest;
    while let Some(next) = schedule.next_after(at, tz).filter(|n| *n <= now) {
        (latest, count, at) = (Some(next), count + 1, next);
    }
    (latest, count)
}

/// Creates the Job for `scheduled` (None if it already exists: a previous sync made it).
async fn create_job(
    context: &Context,
    cronjob: &CronJob,
    api: &Api<Job>,
    scheduled: Timestamp,
    tz: &TimeZone,
) -> kube::Result<Option<Job>> {
    let template = cronjob.spec.as_ref().map(|s| s.job_template.clone()).unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let mut annotations = meta.annotations.unwrap_or_default();
    annotations.insert(
        SCHEDULED_ANNOTATION.into(),
        scheduled.to_zoned(tz.clone()).strftime("%Y-%m-%dT%H:%M:%S%:z").to_string(),
    );
    let name = format!("{}-{}", cronjob.name_any(), scheduled.as_second().div_euclid(60));
    let job = Job {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: cronjob.namespace(),
            labels: meta.labels,
            annotations: Some(annotations),
            owner_references: claim::controller_ref(cronjob).map(|o| vec![o]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    };
    match api.create(&PostParams::default(), &job).await {
        Ok(job) => {
            let message = format!("Created job {name}");
            context.recorder.emit(reference(cronjob), EventType::Normal, "SuccessfulCreate", message);
            Ok(Some(job))
        }
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(None),
        Err(e) => Err(e),
    }
}

async fn delete_job(context: &Context, cronjob: &CronJob, api: &Api<Job>, job: &Job) -> kube::Result<()> {
    let params = DeleteParams { propagation_policy: Some(PropagationPolicy::Background), ..DeleteParams::default() };
    match api.delete(&job.name_any(), &params).await {
        Ok(_) => {
            let message = format!("Deleted job {}", job.name_any());
            context.recorder.emit(reference(cronjob), EventType::Normal, "SuccessfulDelete", message);
            Ok(())
        }
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Deletes the oldest finished Jobs beyond successfulJobsHistoryLimit (3) and failedJobsHistoryLimit (1).
async fn prune_history(context: &Context, cronjob: &CronJob, api: &Api<Job>, finished: &[Job]) -> kube::Result<()> {
    let spec = cronjob.spec.as_ref();
    for (kind, limit) in [
        ("Complete", spec.and_then(|s| s.successful_jobs_history_limit).unwrap_or(3)),
        ("Failed", spec.and_then(|s| s.failed_jobs_history_limit).unwrap_or(1)),
    ] {
        let mut of_kind: Vec<(Timestamp, &Job)> = finished
            .iter()
            .filter_map(|j| job_finished(j).filter(|(k, _)| *k == kind).map(|(_, at)| (at, j)))
            .collect();
        of_kind.sort_by_key(|(at, _)| *at);
        let surplus = of_kind.len().saturating_sub(limit.max(0) as usize);
        for (_, job) in &of_kind[..surplus] {
            delete_job(context, cronjob, api, job).await?;
        }
    }
    Ok(())
}

async fn write_status(
    context: &Context,
    cronjob: &CronJob,
    running: &[Job],
    mut status: k8s_openapi::api::batch::v1::CronJobStatus,
) -> kube::Result<()> {
    let active: Vec<ObjectReference> = running.iter().map(reference).collect();
    status.active = (!active.is_empty()).then_some(active);
    if cronjob.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let api: Api<CronJob> = Api::namespaced(context.client.clone(), &cronjob.namespace().unwrap_or_default());
    let mut body = serde_json::to_value(&status).map_err(kube::Error::SerdeError)?;
    body["active"] = json!(status.active);
    api.patch_status(&cronjob.name_any(), &PatchParams::default(), &Patch::Merge(json!({ "status": body })))
        .await
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_missed_time_is_the_one_to_run() {
        let schedule = Schedule::parse("* * * * *").expect("schedule");
        let now: Timestamp = "2024-01-01T10:00:00Z".parse().expect("time");
        assert_eq!(missed_times(&schedule, &TimeZone::UTC, now - SignedDuration::from_mins(3), now), (Some(now), 3));
        let (latest, count) = missed_times(&schedule, &TimeZone::UTC, now - SignedDuration::from_hours(5), now);
        assert_eq!((latest, count > MAX_MISSED), (Some(now), true));
        assert_eq!(missed_times(&schedule, &TimeZone::UTC, now, now), (None, 0));
    }
}
