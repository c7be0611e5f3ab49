//! Resource usage for `kubectl top`: every [`STATS_EVERY`] the kubelet samples the node (CPU time from
//! /proc/stat, memory in use from /proc/meminfo) and its containers (the CRI's ListContainerStats), turns
//! the change since the previous sample into CPU rates, and keeps the result as the part of the kubelet
//! Summary API that metrics.k8s.io needs, served at `/stats/summary`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use k8s_cri::v1::ListContainerStatsRequest;
use serde_json::{json, Value};
use tokio::sync::watch;

use super::cri::Cri;
use super::pods::spec::{CONTAINER_NAME, POD_NAME, POD_NAMESPACE, POD_UID};

/// How often usage is sampled (the window of the rates).
pub const STATS_EVERY: Duration = Duration::from_secs(10);
/// Linux reports /proc/stat in USER_HZ ticks of 10 ms on every architecture tug runs on.
const NANOS_PER_TICK: u64 = 10_000_000;

/// The newest summary, once there is one.
#[derive(Default)]
pub struct Latest(RwLock<Option<Value>>);

impl Latest {
    pub fn get(&self) -> Option<Value> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, summary: Value) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Some(summary);
    }
}

/// A cumulative CPU time and when it was read (nanoseconds).
#[derive(Debug, Clone, Copy)]
struct CpuTime {
    at: i64,
    used: u64,
}

impl CpuTime {
    /// The rate since `earlier`, in nanocores.
    fn rate_since(self, earlier: CpuTime) -> Option<u64> {
        let elapsed = u64::try_from(self.at - earlier.at).ok().filter(|e| *e > 0)?;
        let used = self.used.checked_sub(earlier.used)?;
        Some((u128::from(used) * 1_000_000_000 / u128::from(elapsed)) as u64)
    }
}

/// The node's busy CPU time: user, nice, system, irq and softirq (not idle, iowait, or steal, which is
/// time the hypervisor gave to others).
fn node_cpu(stat: &str) -> Option<u64> {
    let fields: Vec<u64> =
        stat.lines().next()?.strip_prefix("cpu ")?.split_whitespace().filter_map(|f| f.parse().ok()).collect();
    let busy: u64 = fields.iter().take(7).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, v)| v).sum();
    Some(busy * NANOS_PER_TICK)
}

/// The node's memory in use: MemTotal less MemAvailable, in bytes.
fn node_memory(meminfo: &str) -> Option<u64> {
    let kib = |name: &str| {
        meminfo.lines().find_map(|l| l.strip_prefix(name)?.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
    };
    Some(kib("MemTotal:")?.checked_sub(kib("MemAvailable:")?)? * 1024)
}

fn now_nanos() -> i64 {
    jiff::Timestamp::now().as_nanosecond() as i64
}

fn rfc3339(nanos: i64) -> String {
    jiff::Timestamp::from_nanosecond(i128::from(nanos))
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

fn usage(cpu: Option<(CpuTime, u64)>, memory: Option<(i64, u64)>) -> (Value, Value) {
    let cpu = cpu.map_or(
        Value::Null,
        |(time, rate)| json!({"time": rfc3339(time.at), "usageNanoCores": rate, "usageCoreNanoSeconds": time.used}),
    );
    let memory = memory.map_or(Value::Null, |(at, bytes)| json!({"time": rfc3339(at), "workingSetBytes": bytes}));
    (cpu, memory)
}

/// Samples until `stop` turns true.
pub async fn sample(mut cri: Cri, node_name: String, latest: Arc<Latest>, mut stop: watch::Receiver<bool>) {
    let mut previous_node: Option<CpuTime> = None;
    let mut previous: HashMap<String, CpuTime> = HashMap::new();
    loop {
        let node_now = std::fs::read_to_string("/proc/stat")
            .ok()
            .as_deref()
            .and_then(node_cpu)
            .map(|used| CpuTime { at: now_nanos(), used });
        let node_rate = node_now.zip(previous_node).and_then(|(now, before)| now.rate_since(before).map(|r| (now, r)));
        let memory = std::fs::read_to_string("/proc/meminfo").ok().as_deref().and_then(node_memory);
        let (cpu, memory) = usage(node_rate, memory.map(|m| (now_nanos(), m)));
        previous_node = node_now;
        let stats = match cri.runtime.list_container_stats(ListContainerStatsRequest { filter: None }).await {
            Ok(answer) => answer.into_inner().stats,
            Err(status) => {
                // The previous sample stays, so that the next one still makes rates.
                tracing::debug!(%status, "cannot read the containers' usage");
                tokio::select! {
                    _ = tokio::time::sleep(STATS_EVERY) => continue,
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        };
        let mut pods: BTreeMap<String, (Value, Vec<Value>)> = BTreeMap::new();
        let mut seen = HashMap::new();
        let mut incomplete = std::collections::HashSet::new();
        for stat in stats {
            let Some(attributes) = stat.attributes else { continue };
            let labels = &attributes.labels;
            let (Some(uid), Some(name)) = (labels.get(POD_UID), labels.get(CONTAINER_NAME)) else { continue };
            let cpu_now = stat
                .cpu
                .as_ref()
                .and_then(|c| Some(CpuTime { at: c.timestamp, used: c.usage_core_nano_seconds.as_ref()?.value }));
            let rate = cpu_now.and_then(|now| Some((now, now.rate_since(*previous.get(&attributes.id)?)?)));
            if let Some(now) = cpu_now {
                seen.insert(attributes.id.clone(), now);
            }
            let Some(rate) = rate else {
                // A pod is shown whole or not at all (as metrics-server does), or its sum would be low.
                incomplete.insert(uid.clone());
                continue;
            };
            let memory = stat.memory.as_ref().and_then(|m| Some((m.timestamp, m.working_set_bytes.as_ref()?.value)));
            let (cpu, memory) = usage(Some(rate), memory);
            let pod_ref = json!({"name": labels.get(POD_NAME), "namespace": labels.get(POD_NAMESPACE), "uid": uid});
            let entry = pods.entry(uid.clone()).or_insert_with(|| (pod_ref, Vec::new()));
            entry.1.push(json!({"name": name, "cpu": cpu, "memory": memory}));
        }
        previous = seen;
        pods.retain(|uid, _| !incomplete.contains(uid));
        let pods: Vec<Value> = pods
            .into_values()
            .map(|(pod_ref, containers)| json!({"podRef": pod_ref, "containers": containers}))
            .collect();
        latest.set(json!({"node": {"nodeName": node_name, "cpu": cpu, "memory": memory}, "pods": pods}));
        tokio::select! {
            _ = tokio::time::sleep(STATS_EVERY) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_usage_comes_from_proc() {
        let stat = "cpu  100 5 50 1000 20 1 2 3 0 0\ncpu0 1 2 3\n";
        assert_eq!(
            node_cpu(stat),
            Some((100 + 5 + 50 + 1 + 2) * NANOS_PER_TICK),
            "idle, iowait and steal are not busy"
        );
        let meminfo = "MemTotal:       2048 kB\nMemFree:         100 kB\nMemAvailable:    1024 kB\n";
        assert_eq!(node_memory(meminfo), Some(1024 * 1024));
    }

    #[test]
    fn cpu_rates_are_nanocores_over_the_window() {
        let before = CpuTime { at: 0, used: 0 };
        let after = CpuTime { at: 10_000_000_000, used: 5_000_000_000 };
        assert_eq!(after.rate_since(before), Some(500_000_000), "half a core");
        assert_eq!(before.rate_since(after), None);
    }
}
