//! `tug simulate`: simulated nodes, like kwok. Each registers a Node with the capacity, labels and
//! taints it was given, keeps its Lease fresh, and plays kubelet for the pods bound to it (Running and
//! Ready after a delay, Succeeded or Failed for pods that exit, removed when deleted) without running
//! anything. Operators rehearse a fleet with it; the tests and benchmarks drive the control plane with
//! it.

mod nodes;
mod pods;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use kube::runtime::{reflector, watcher, WatchStreamExt};
use serde_json::{json, Value};

use crate::cli::SimulateArgs;
use crate::core::{quantity, validation};

/// What every simulated node is and how its pods behave, validated.
#[derive(Debug, Clone)]
pub struct Fleet {
    pub kubeconfig: PathBuf,
    pub count: u32,
    pub name_prefix: String,
    pub cpu: String,
    pub memory: String,
    pub max_pods: u32,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Value>,
    pub heartbeat: Duration,
    pub start_delay: Duration,
    pub run_time: Duration,
}

impl Fleet {
    /// Validates the flags; the error names the flag.
    pub fn from_args(args: SimulateArgs) -> Result<Fleet, String> {
        let kubeconfig =
            args.kubeconfig.or_else(|| std::env::var_os("KUBECONFIG").map(PathBuf::from)).unwrap_or_else(|| {
                if nix::unistd::Uid::effective().is_root() {
                    "/etc/tug/tug.yaml".into()
                } else {
                    std::env::var_os("HOME").map_or_else(PathBuf::new, PathBuf::from).join(".kube/tug.yaml")
                }
            });
        for (flag, value) in [("cpu", &args.cpu), ("memory", &args.memory)] {
            match quantity::parse_milli(value) {
                Ok(v) if v > 0 => {}
                Ok(_) => return Err(format!("invalid --{flag} {value:?}: must be greater than zero")),
                Err(reason) => return Err(format!("invalid --{flag} {value:?}: {reason}")),
            }
        }
        let last = format!("{}{}", args.name_prefix, args.nodes - 1);
        if let Some(problem) = validation::is_dns1123_subdomain(&last).first() {
            return Err(format!("invalid --name-prefix {:?}: node names like {last:?}: {problem}", args.name_prefix));
        }
        if args.heartbeat.is_zero() {
            return Err("invalid --heartbeat \"0s\": must be greater than zero".into());
        }
        let labels = crate::config::parse_labels("node-label", &args.node_labels).map_err(|e| e.to_string())?;
        let taints = args.node_taints.iter().map(|t| parse_taint(t)).collect::<Result<Vec<_>, _>>()?;
        Ok(Fleet {
            kubeconfig,
            count: args.nodes,
            name_prefix: args.name_prefix,
            cpu: args.cpu,
            memory: args.memory,
            max_pods: args.max_pods,
            labels,
            taints,
            heartbeat: args.heartbeat,
            start_delay: args.start_delay,
            run_time: args.run_time,
        })
    }

    pub fn node_names(&self) -> impl Iterator<Item = String> + '_ {
        (0..self.count).map(|i| format!("{}{i}", self.name_prefix))
    }
}

/// `key[=value]:Effect`, as `kubectl taint` writes it.
fn parse_taint(text: &str) -> Result<Value, String> {
    let invalid = |why: &str| format!("invalid --node-taint {text:?}: {why}");
    let (key_value, effect) = text.rsplit_once(':').ok_or_else(|| invalid("want key[=value]:effect"))?;
    if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        return Err(invalid("effect must be NoSchedule, PreferNoSchedule or NoExecute"));
    }
    let (key, value) = key_value.split_once('=').unwrap_or((key_value, ""));
    if key.is_empty() {
        return Err(invalid("the key is empty"));
    }
    Ok(json!({"key": key, "value": value, "effect": effect}))
}

/// Connects, registers the nodes, and runs their heartbeats and pods until the process is stopped.
pub async fn run(fleet: Fleet) -> anyhow::Result<()> {
    let kubeconfig = kube::config::Kubeconfig::read_from(&fleet.kubeconfig)
        .map_err(|e| anyhow::anyhow!("cannot read kubeconfig {}: {e}", fleet.kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    let client = kube::Client::try_from(config)?;
    nodes::register_all(&client, &fleet).await.map_err(|e| anyhow::anyhow!("registering the nodes: {e}"))?;
    tracing::info!(nodes = fleet.count, prefix = fleet.name_prefix, "simulated nodes registered");
    let fleet = Arc::new(fleet);
    let (known, writer) = reflector::store();
    let selector = watcher::Config::default().labels("node.tug.dev/simulated=true");
    let node_watch = watcher(Api::<Node>::all(client.clone()), selector)
        .default_backoff()
        .reflect(writer)
        .for_each(|_| futures::future::ready(()));
    tokio::select! {
        _ = node_watch => {}
        _ = nodes::heartbeat(client.clone(), &fleet, known.clone()) => {}
        _ = pods::run(client, fleet.clone(), known) => {}
        Ok(()) = crate::lifecycle::until_stopped() => tracing::info!("stopping; the nodes stay registered and go NotReady when their leases lapse"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taints_parse_as_kubectl_writes_them() {
        assert_eq!(
            parse_taint("dedicated=gpu:NoSchedule"),
            Ok(json!({"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}))
        );
        assert_eq!(
            parse_taint("edge:PreferNoSchedule"),
            Ok(json!({"key": "edge", "value": "", "effect": "PreferNoSchedule"}))
        );
        assert!(parse_taint("k=v").unwrap_err().contains("want key[=value]:effect"));
        assert!(parse_taint("k=v:Sometimes").unwrap_err().contains("effect must be"));
    }
}
