//! The Event printer, shared by core/v1 and events.k8s.io/v1 Events: upstream prints both through
//! the internal core Event, so events.k8s.io objects are read through their renamed fields
//! (regarding, note, deprecatedSource, deprecatedFirstTimestamp, ...).

use jiff::Timestamp;
use serde_json::Value;

use super::{at, col, int_at, name, opt_str, parse_time, since, str_at, wide, Column, Printer, NAME};

const EV_LAST: &str = "The time at which the most recent occurrence of this event was recorded.";
const EV_TYPE: &str = "Type of this event (Normal, Warning), new types could be added in the future";
const EV_REASON: &str = "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.";
const EV_OBJECT: &str = "The object that this event is about.";
const EV_SUBOBJECT: &str = "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2]. For example, if the object reference is to a container within a pod, this would take on a value like: \"spec.containers{name}\" (where \"name\" refers to the name of the container that triggered the event) or if no container name is specified \"spec.containers[2]\" (container with index 2 in this pod). This syntax is chosen only to have some well-defined way of referencing a part of an object.";
const EV_SOURCE: &str = "The component reporting this event. Should be a short machine understandable string.";
const EV_MESSAGE: &str = "A human-readable description of the status of this operation.";
const EV_FIRST: &str = "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)";
const EV_COUNT: &str = "The number of times this event has occurred.";

const COLUMNS: &[Column] = &[
    col("Last Seen", "string", EV_LAST),
    col("Type", "string", EV_TYPE),
    col("Reason", "string", EV_REASON),
    col("Object", "string", EV_OBJECT),
    wide("Subobject", "string", EV_SUBOBJECT),
    wide("Source", "string", EV_SOURCE),
    col("Message", "string", EV_MESSAGE),
    wide("First Seen", "string", EV_FIRST),
    wide("Count", "string", EV_COUNT),
    Column { priority: 1, ..NAME },
];

pub(super) const CORE_EVENT: Printer = Printer { columns: COLUMNS, cells: |ev, now| event_cells(ev, now, &CORE) };
pub(super) const EVENTS_V1_EVENT: Printer =
    Printer { columns: COLUMNS, cells: |ev, now| event_cells(ev, now, &EVENTS_V1) };

/// Where each version keeps the fields the printer reads.
struct Fields {
    object: &'static str,
    message: &'static str,
    source: &'static str,
    first: &'static str,
    last: &'static str,
    count: &'static str,
}

const CORE: Fields = Fields {
    object: "/involvedObject",
    message: "/message",
    source: "/source",
    first: "/firstTimestamp",
    last: "/lastTimestamp",
    count: "/count",
};

const EVENTS_V1: Fields = Fields {
    object: "/regarding",
    message: "/note",
    source: "/deprecatedSource",
    first: "/deprecatedFirstTimestamp",
    last: "/deprecatedLastTimestamp",
    count: "/deprecatedCount",
};

fn event_cells(ev: &Value, now: Timestamp, f: &Fields) -> Vec<Value> {
    // An unset timestamp falls back: firstTimestamp to eventTime, lastTimestamp to the first.
    let first = match opt_str(ev, f.first).filter(|t| parse_time(Some(t)).is_some()) {
        Some(t) => since(Some(t), now),
        None => since(opt_str(ev, "/eventTime"), now),
    };
    let mut last = match opt_str(ev, f.last).filter(|t| parse_time(Some(t)).is_some()) {
        Some(t) => since(Some(t), now),
        None => first.clone(),
    };
    let mut count = int_at(ev, f.count);
    if let Some(series) = at(ev, "/series") {
        last = since(opt_str(series, "/lastObservedTime"), now);
        count = int_at(series, "/count");
    } else if count == 0 {
        // Singleton events don't have a count set in the new API.
        count = 1;
    }
    let object = at(ev, f.object).unwrap_or(&Value::Null);
    let kind = str_at(object, "/kind").to_lowercase();
    let target = match str_at(object, "/name") {
        "" => kind,
        name => format!("{kind}/{name}"),
    };
    let component = first_non_empty(str_at(ev, &format!("{}/component", f.source)), str_at(ev, "/reportingController"));
    let host = first_non_empty(str_at(ev, &format!("{}/host", f.source)), str_at(ev, "/reportingInstance"));
    let source = if host.is_empty() { component.to_string() } else { format!("{component}, {host}") };
    vec![
        Value::from(last),
        Value::from(str_at(ev, "/type")),
        Value::from(str_at(ev, "/reason")),
        Value::from(target),
        Value::from(str_at(object, "/fieldPath")),
        Value::from(source),
        Value::from(str_at(ev, f.message).trim()),
        Value::from(first),
        Value::from(count),
        name(ev),
    ]
}

fn first_non_empty<'a>(a: &'a str, b: &'a str) -> &'a str {
    if a.is_empty() {
        b
    } else {
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> Timestamp {
        "2024-01-01T00:10:00Z".parse().unwrap()
    }

    #[test]
    fn core_event() {
        let ev = json!({"metadata": {"name": "web.17a"}, "type": "Warning", "reason": "BackOff",
            "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{app}"},
            "source": {"component": "kubelet", "host": "n1"}, "message": " Back-off restarting \n",
            "firstTimestamp": "2024-01-01T00:00:00Z", "lastTimestamp": "2024-01-01T00:08:00Z", "count": 4});
        let r = event_cells(&ev, now(), &CORE);
        let want = [
            "2m",
            "Warning",
            "BackOff",
            "pod/web",
            "spec.containers{app}",
            "kubelet, n1",
            "Back-off restarting",
            "10m",
        ];
        assert_eq!(r[..8], want.map(Value::from));
        assert_eq!(r[8..], [json!(4), json!("web.17a")]);
    }

    #[test]
    fn events_v1_event_with_series() {
        let ev = json!({"metadata": {"name": "e"}, "type": "Normal", "reason": "Scheduled", "note": "assigned",
            "regarding": {"kind": "Node"}, "reportingController": "tug-scheduler",
            "eventTime": "2024-01-01T00:05:00.000000Z", "series": {"count": 3, "lastObservedTime": "2024-01-01T00:09:00.000000Z"}});
        let r = event_cells(&ev, now(), &EVENTS_V1);
        assert_eq!(r[..4], [json!("60s"), json!("Normal"), json!("Scheduled"), json!("node")]);
        assert_eq!(r[5..9], [json!("tug-scheduler"), json!("assigned"), json!("5m"), json!(3)]);
    }
}
