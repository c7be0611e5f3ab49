//! /metrics in the Prometheus text format: API request counts and latencies by verb, resource and code,
//! the store's write batches, commit and fsync latency, and the number of open watches.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use crate::store::Store;

/// Latency histogram buckets, seconds (upstream's apiserver_request_duration_seconds buckets, trimmed).
const BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0];

#[derive(Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

/// Request metrics.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, &'static str, u16), u64>>,
    latency: Mutex<BTreeMap<(&'static str, &'static str), Histogram>>,
}

impl Metrics {
    /// Records one finished request.
    pub fn observe(&self, verb: &'static str, resource: &'static str, code: u16, elapsed: Duration) {
        if let Ok(mut requests) = self.requests.lock() {
            *requests.entry((verb, resource, code)).or_default() += 1;
        }
        // Watches are long-running: their duration is not a latency.
        if verb == "watch" {
            return;
        }
        if let Ok(mut latency) = self.latency.lock() {
            let h = latency.entry((verb, resource)).or_default();
            if h.counts.is_empty() {
                h.counts = vec![0; BUCKETS.len()];
            }
            let secs = elapsed.as_secs_f64();
            for (i, bound) in BUCKETS.iter().enumerate() {
                if secs <= *bound {
                    h.counts[i] += 1;
                }
            }
            h.sum += secs;
            h.count += 1;
        }
    }

    /// The exposition text.
    pub fn render(&self, store: &Store) -> String {
        let mut out = String::new();
        out.push_str("# HELP apiserver_request_total Counter of apiserver requests broken out by verb, resource and HTTP response code.\n# TYPE apiserver_request_total counter\n");
        if let Ok(requests) = self.requests.lock() {
            for ((verb, resource, code), n) in requests.iter() {
                let _ = writeln!(
                    out,
                    "apiserver_request_total{{verb=\"{verb}\",resource=\"{resource}\",code=\"{code}\"}} {n}"
                );
            }
        }
        out.push_str("# HELP apiserver_request_duration_seconds Response latency distribution in seconds for each verb and resource.\n# TYPE apiserver_request_duration_seconds histogram\n");
        if let Ok(latency) = self.latency.lock() {
            for ((verb, resource), h) in latency.iter() {
                let labels = format!("verb=\"{verb}\",resource=\"{resource}\"");
                for (bound, n) in BUCKETS.iter().zip(&h.counts) {
                    let _ = writeln!(out, "apiserver_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {n}");
                }
                let _ = writeln!(out, "apiserver_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}", h.count);
                let _ = writeln!(out, "apiserver_request_duration_seconds_sum{{{labels}}} {}", h.sum);
                let _ = writeln!(out, "apiserver_request_duration_seconds_count{{{labels}}} {}", h.count);
            }
        }
        let s = store.metrics();
        let _ = write!(
            out,
            "# HELP tug_store_write_batches_total Store transactions committed.\n# TYPE tug_store_write_batches_total counter\ntug_store_write_batches_total {}\n\
             # HELP tug_store_write_commands_total Write commands applied.\n# TYPE tug_store_write_commands_total counter\ntug_store_write_commands_total {}\n\
             # HELP tug_store_commit_seconds Time from a transaction's first write to its commit (it stays open for more writes while an fsync runs).\n# TYPE tug_store_commit_seconds summary\ntug_store_commit_seconds_sum {}\ntug_store_commit_seconds_count {}\n\
             # HELP tug_store_commit_seconds_max Slowest transaction.\n# TYPE tug_store_commit_seconds_max gauge\ntug_store_commit_seconds_max {}\n\
             # HELP tug_store_fsync_seconds WAL fsync latency; each fsync makes one or more transactions durable (none once replicated: the Raft log is).\n# TYPE tug_store_fsync_seconds summary\ntug_store_fsync_seconds_sum {}\ntug_store_fsync_seconds_count {}\n\
             # HELP tug_store_revision Current store revision.\n# TYPE tug_store_revision gauge\ntug_store_revision {}\n\
             # HELP apiserver_registered_watchers Number of open watches.\n# TYPE apiserver_registered_watchers gauge\napiserver_registered_watchers {}\n",
            s.batches, s.commands, s.commit_seconds_total, s.batches, s.commit_seconds_max, s.sync_seconds_total, s.syncs,
            store.current_revision(), store.watch_count()
        );
        if let Some(r) = store.replication_status() {
            let gauges = [
                ("has_leader", "Whether this server knows a Raft leader (1) or not (0).", u64::from(r.has_leader)),
                ("is_leader", "Whether this server is the Raft leader.", u64::from(r.is_leader)),
                ("term", "The current Raft term.", r.term),
                ("last_log_index", "The index of the last entry in this server's Raft log.", r.last_log_index),
                ("applied_index", "The index of the last Raft entry applied to this server's store.", r.applied_index),
                ("voters", "Voting members of the Raft group.", r.voters as u64),
                ("learners", "Non-voting members (servers catching up).", r.learners as u64),
                ("log_bytes", "Bytes of entries in this server's Raft log (measured every few seconds).", r.log_bytes),
            ];
            let counters = [
                ("proposed_entries_total", "Raft log entries this server proposed as leader.", r.proposed_entries),
                ("proposed_writes_total", "Writes carried by the entries this server proposed.", r.proposed_writes),
            ];
            let typed = gauges.iter().map(|g| (g, "gauge")).chain(counters.iter().map(|c| (c, "counter")));
            for ((name, help, value), kind) in typed {
                let _ = write!(
                    out,
                    "# HELP tug_raft_{name} {help}\n# TYPE tug_raft_{name} {kind}\ntug_raft_{name} {value}\n"
                );
            }
        }
        out
    }
}
