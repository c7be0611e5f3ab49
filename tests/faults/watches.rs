//! Watch streams during the fault test: on each server, one after the other, a list of the registers
//! and a watch from the list's resourceVersion, recording every event until the stream ends (the
//! server died, the watch timed out, or it ended with an error such as 410 Gone), then a new list and
//! watch. Each stream must be ordered (resourceVersions increasing from the list's) and have no gaps:
//! every change of a register it shows, from the value it last showed (or listed), is a write the
//! clients made from that value to that one, and every acknowledged write with a resourceVersion
//! between the list's and the stream's last event is in it, at that resourceVersion. (After a stream's
//! last event nothing can be required: a stream may end at any point, and its client resumes from the
//! last resourceVersion it saw.)

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ListParams, WatchEvent, WatchParams};
use kube::Api;

use super::linearizability::{Action, Operation};
use super::workload::Written;

/// One list and the watch that followed it.
#[derive(Debug, Default)]
pub struct Stream {
    /// The registers as listed, and the list's resourceVersion.
    listed: BTreeMap<String, String>,
    listed_at: u64,
    /// Each event: register, value, resourceVersion.
    events: Vec<(String, String, u64)>,
}

/// A register's name, value and resourceVersion; a register without a value or version reads as the
/// value `<malformed>`, which no write made, so the check fails on it.
fn register(cm: &ConfigMap) -> Option<(String, String, u64)> {
    let name = cm.metadata.name.clone().filter(|n| n.starts_with("reg-"))?;
    let value = cm.data.as_ref().and_then(|data| data.get("v")).cloned();
    let version = cm.metadata.resource_version.as_ref().and_then(|v| v.parse().ok());
    match (value, version) {
        (Some(value), Some(version)) => Some((name, value, version)),
        (_, version) => Some((name, "<malformed>".into(), version.unwrap_or(u64::MAX))),
    }
}

/// One stream: a list, then the watch from it until it ends or `stop`.
async fn stream(api: &Api<ConfigMap>, stop: &AtomicBool) -> Option<Stream> {
    let list = api.list(&ListParams::default()).await.ok()?;
    let version = list.metadata.resource_version.clone()?;
    let listed = list.items.iter().filter_map(register).map(|(name, value, _)| (name, value)).collect();
    let listed_at = version.parse().ok()?;
    let mut recorded = Stream { listed, listed_at, events: Vec::new() };
    let params = WatchParams::default().timeout(30);
    let Ok(events) = api.watch(&params, &version).await else { return Some(recorded) };
    let mut events = events.boxed();
    while !stop.load(Ordering::Relaxed) {
        match tokio::time::timeout(Duration::from_millis(500), events.next()).await {
            Err(_) => continue,
            Ok(Some(Ok(WatchEvent::Added(cm) | WatchEvent::Modified(cm)))) => recorded.events.extend(register(&cm)),
            // Registers are never deleted: a deletion is a value no write made.
            Ok(Some(Ok(WatchEvent::Deleted(cm)))) => {
                recorded.events.extend(register(&cm).map(|(name, _, version)| (name, "<deleted>".into(), version)))
            }
            Ok(Some(Ok(WatchEvent::Bookmark(_)))) => {}
            // The end: an error (410 Gone included), a broken connection, or the timeout.
            Ok(_) => break,
        }
    }
    Some(recorded)
}

/// Records streams on the server `client` talks to until `stop`.
pub async fn run(client: kube::Client, streams: Arc<Mutex<Vec<Stream>>>, stop: Arc<AtomicBool>) {
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    while !stop.load(Ordering::Relaxed) {
        match stream(&api, &stop).await {
            Some(recorded) => streams.lock().unwrap().push(recorded),
            None => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Checks every stream against the writes of `history` and the acknowledged writes `written`; the
/// number of events checked.
pub fn check(streams: &[Stream], history: &[Operation], written: &[Written]) -> Result<usize, String> {
    let writes: HashSet<(&str, Option<&str>, &str)> = history
        .iter()
        .filter_map(|op| match &op.action {
            Action::CasOk { old, new } | Action::CasUnknown { old, new } => {
                Some((op.key.as_str(), old.as_deref(), new.as_str()))
            }
            _ => None,
        })
        .collect();
    let mut checked = 0;
    for (index, stream) in streams.iter().enumerate() {
        let mut last_version = stream.listed_at;
        let mut values: BTreeMap<&str, &str> =
            stream.listed.iter().map(|(name, value)| (name.as_str(), value.as_str())).collect();
        for (name, value, version) in &stream.events {
            if *version <= last_version {
                return Err(format!("stream {index}: resourceVersion {version} after {last_version}"));
            }
            last_version = *version;
            let previous = values.get(name.as_str()).copied();
            if previous != Some(value.as_str()) && !writes.contains(&(name.as_str(), previous, value.as_str())) {
                return Err(format!(
                    "stream {index}: {name} went from {previous:?} to {value:?} with no write between them (a gap)"
                ));
            }
            values.insert(name, value);
            checked += 1;
        }
        let shown: HashSet<&Written> = stream.events.iter().collect();
        let covered = stream.listed_at + 1..=last_version;
        if let Some(missing) = written.iter().find(|w| covered.contains(&w.2) && !shown.contains(w)) {
            return Err(format!("stream {index}: the acknowledged write {missing:?} is missing (a gap)"));
        }
    }
    Ok(checked)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(key: &str, old: Option<&str>, new: &str) -> Operation {
        let action = Action::CasOk { old: old.map(str::to_string), new: new.into() };
        Operation { key: key.into(), call: 0, ret: Some(1), action }
    }

    fn stream(events: &[(&str, &str, u64)]) -> Stream {
        let events = events.iter().map(|(k, v, rv)| (k.to_string(), v.to_string(), *rv)).collect();
        Stream { listed: BTreeMap::from([("reg-0".into(), "a".into())]), listed_at: 4, events }
    }

    #[test]
    fn a_stream_following_the_writes_passes_and_a_gap_or_a_reordering_fails() {
        let history = [write("reg-0", Some("a"), "b"), write("reg-0", Some("b"), "c"), write("reg-1", None, "x")];
        let written: Vec<Written> = [("reg-0", "b", 5), ("reg-1", "x", 6), ("reg-0", "c", 7)]
            .iter()
            .map(|(k, v, rv)| (k.to_string(), v.to_string(), *rv))
            .collect();
        let whole = stream(&[("reg-0", "b", 5), ("reg-1", "x", 6), ("reg-0", "c", 7)]);
        assert_eq!(check(&[whole], &history, &written), Ok(3));
        let gap = stream(&[("reg-0", "c", 7)]);
        assert!(check(&[gap], &history, &written).unwrap_err().contains("a gap"));
        let reordered = stream(&[("reg-0", "b", 7), ("reg-1", "x", 6)]);
        assert!(check(&[reordered], &history, &written).unwrap_err().contains("after 7"));
        let replayed = stream(&[("reg-0", "b", 3)]);
        assert!(check(&[replayed], &history, &written).unwrap_err().contains("after 4"), "not before the list");
        // reg-1's only change is missing: no later event of reg-1 shows it, the acknowledged write does.
        let missing = stream(&[("reg-0", "b", 5), ("reg-0", "c", 7)]);
        assert!(check(&[missing], &history, &written).unwrap_err().contains("\"x\", 6) is missing"));
        // A stream that ended early owes nothing after its last event.
        let ended = stream(&[("reg-0", "b", 5)]);
        assert_eq!(check(&[ended], &history, &written), Ok(1));
    }
}
