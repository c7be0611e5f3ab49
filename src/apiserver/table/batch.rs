//! Printers for batch/v1: jobs (STATUS, COMPLETIONS, DURATION) and cronjobs.

use jiff::Timestamp;
use serde_json::Value;

use super::{age, at, bool_text, col, container_cells, deleting, format_selector, human_signed, int_at, list_at};
use super::{
    name, opt_bool, opt_int, opt_str, parse_time, since, str_at, wide, Printer, AGE, CONTAINERS, IMAGES, NAME,
};

const JOB_SUCCEEDED: &str = "The number of pods which reached phase Succeeded. The value increases monotonically for a given spec. However, it may decrease in reaction to scale down of elastic indexed jobs.";
const JOB_SELECTOR: &str = "A label query over pods that should match the pod count. Normally, the system sets this field for you. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors";
const CJ_SCHEDULE: &str = "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron.";
const CJ_TIMEZONE: &str = "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones. If not specified, this will default to the time zone of the kube-controller-manager process. The set of valid time zone names and the time zone offset is loaded from the system-wide time zone database by the API server during CronJob validation and the controller manager during execution. If no system-wide time zone database can be found a bundled version of the database is used instead. If the time zone name becomes invalid during the lifetime of a CronJob or due to a change in host configuration, the controller will stop creating new new Jobs and will create a system event with the reason UnknownTimeZone. More information can be found in https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/#time-zones";
const CJ_SUSPEND: &str = "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions.  Defaults to false.";
const CJ_ACTIVE: &str = "A list of pointers to currently running jobs.";
const CJ_LAST: &str = "Information when was the last time the job was successfully scheduled.";

pub(super) const JOB: Printer = Printer {
    columns: &[
        NAME,
        col("Status", "string", "Status of the job."),
        col("Completions", "string", JOB_SUCCEEDED),
        col("Duration", "string", "Time required to complete the job."),
        AGE,
        CONTAINERS,
        IMAGES,
        wide("Selector", "string", JOB_SELECTOR),
    ],
    cells: job_cells,
};

pub(super) const CRON_JOB: Printer = Printer {
    columns: &[
        NAME,
        col("Schedule", "string", CJ_SCHEDULE),
        col("Timezone", "string", CJ_TIMEZONE),
        col("Suspend", "boolean", CJ_SUSPEND),
        col("Active", "integer", CJ_ACTIVE),
        col("Last Schedule", "string", CJ_LAST),
        AGE,
        CONTAINERS,
        IMAGES,
        wide("Selector", "string", JOB_SELECTOR),
    ],
    cells: cron_job_cells,
};

fn job_cells(job: &Value, now: Timestamp) -> Vec<Value> {
    let succeeded = int_at(job, "/status/succeeded");
    let completions = match (opt_int(job, "/spec/completions"), opt_int(job, "/spec/parallelism").unwrap_or(0)) {
        (Some(completions), _) => format!("{succeeded}/{completions}"),
        (None, parallelism) if parallelism > 1 => format!("{succeeded}/1 of {parallelism}"),
        (None, _) => format!("{succeeded}/1"),
    };
    let start = parse_time(opt_str(job, "/status/startTime"));
    let completion = parse_time(opt_str(job, "/status/completionTime"));
    let duration = match (start, completion) {
        (None, _) => String::new(),
        (Some(start), None) => human_signed(now.duration_since(start)),
        (Some(start), Some(end)) => human_signed(end.duration_since(start)),
    };
    let [names, images] = container_cells(job, "/spec/template/spec/containers");
    vec![
        name(job),
        Value::from(job_status(job)),
        Value::from(completions),
        Value::from(duration),
        age(job, now),
        names,
        images,
        Value::from(format_selector(at(job, "/spec/selector"))),
    ]
}

/// The job's state, from its conditions in upstream's order of precedence.
fn job_status(job: &Value) -> &'static str {
    let conditions = list_at(job, "/status/conditions");
    // The first condition of a type decides, as in upstream's hasJobCondition.
    let has = |kind: &str| {
        conditions.iter().find(|c| str_at(c, "/type") == kind).is_some_and(|c| str_at(c, "/status") == "True")
    };
    if has("Complete") {
        "Complete"
    } else if has("Failed") {
        "Failed"
    } else if deleting(job) {
        "Terminating"
    } else if has("Suspended") {
        "Suspended"
    } else if has("FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    }
}

fn cron_job_cells(cj: &Value, now: Timestamp) -> Vec<Value> {
    let last_schedule = match opt_str(cj, "/status/lastScheduleTime") {
        Some(t) => since(Some(t), now),
        None => "<none>".to_string(),
    };
    let [names, images] = container_cells(cj, "/spec/jobTemplate/spec/template/spec/containers");
    vec![
        name(cj),
        Value::from(str_at(cj, "/spec/schedule")),
        Value::from(opt_str(cj, "/spec/timeZone").unwrap_or("<none>")),
        Value::from(bool_text(opt_bool(cj, "/spec/suspend"))),
        Value::from(list_at(cj, "/status/active").len()),
        Value::from(last_schedule),
        age(cj, now),
        names,
        images,
        Value::from(format_selector(at(cj, "/spec/jobTemplate/spec/selector"))),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> Timestamp {
        "2024-01-01T01:00:00Z".parse().unwrap()
    }

    #[test]
    fn job_completions_and_duration() {
        let done = json!({"metadata": {"name": "pi", "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"completions": 1, "parallelism": 1, "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u1"}}},
            "status": {"succeeded": 1, "startTime": "2024-01-01T00:00:00Z", "completionTime": "2024-01-01T00:03:20Z",
                       "conditions": [{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}]}});
        let r = job_cells(&done, now());
        assert_eq!(r[..5], [json!("pi"), json!("Complete"), json!("1/1"), json!("3m20s"), json!("60m")]);
        assert_eq!(r[7], json!("batch.kubernetes.io/controller-uid=u1"));

        let running =
            json!({"spec": {"parallelism": 3}, "status": {"succeeded": 2, "startTime": "2024-01-01T00:59:30Z"}});
        assert_eq!(job_cells(&running, now())[1..4], [json!("Running"), json!("2/1 of 3"), json!("30s")]);

        let pending = json!({"spec": {}, "status": {"conditions": [{"type": "Failed", "status": "True"}]}});
        assert_eq!(job_cells(&pending, now())[1..4], [json!("Failed"), json!("0/1"), json!("")]);

        let suspended = json!({"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z"},
            "status": {"conditions": [{"type": "Suspended", "status": "True"}]}});
        assert_eq!(job_cells(&suspended, now())[1], json!("Terminating"));
        assert_eq!(
            job_status(&json!({"status": {"conditions": [{"type": "Suspended", "status": "True"}]}})),
            "Suspended"
        );
    }

    #[test]
    fn cron_job_cells_defaults() {
        let cj = json!({"spec": {"schedule": "*/5 * * * *", "suspend": false}, "status": {"active": [{"name": "j"}],
            "lastScheduleTime": "2024-01-01T00:55:00Z"}});
        let r = cron_job_cells(&cj, now());
        assert_eq!(r[1..6], [json!("*/5 * * * *"), json!("<none>"), json!("False"), json!(1), json!("5m")]);
        let bare = cron_job_cells(&json!({}), now());
        assert_eq!((bare[3].clone(), bare[5].clone()), (json!("<unset>"), json!("<none>")));
    }
}
