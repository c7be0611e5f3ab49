//! The kubelet's Node: registered at start (taking over a Node of the same name left by an earlier run),
//! then its status kept true: every [`STATUS_EVERY`] the machine and the runtime are read again (cheap:
//! /proc and one CRI call) and the status is posted only when anything changed, or at least every
//! [`STATUS_REPORT_EVERY`] (upstream's nodeStatusReportFrequency), so a change such as the pod network
//! coming up shows within a second. Conditions keep their transition time while their status holds.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

use super::cri::RuntimeHealth;
use super::machine::{self, Machine};

/// How often the status is computed (and posted if changed).
pub const STATUS_EVERY: Duration = Duration::from_secs(1);
/// An unchanged status is posted again this often.
const STATUS_REPORT_EVERY: Duration = Duration::from_secs(300);

/// Who the node is.
#[derive(Debug, Clone)]
pub struct Identity {
    pub name: String,
    pub address: Option<IpAddr>,
    /// The address the node is reached at from outside, if it has one (`--node-external-ip`).
    pub external_address: Option<IpAddr>,
    pub labels: BTreeMap<String, String>,
    /// The filesystem whose size is the node's ephemeral storage.
    pub data_dir: PathBuf,
    /// The cluster's DNS domain: pods with a subdomain find their full name in /etc/hosts.
    pub cluster_domain: String,
    /// The cluster DNS Service's address, the nameserver of pods with dnsPolicy ClusterFirst.
    pub cluster_dns: IpAddr,
    /// The resolv.conf pods with dnsPolicy Default get, and the cluster DNS forwards to
    /// (`--resolv-conf`; default /etc/resolv.conf).
    pub resolv_conf: Option<PathBuf>,
}

impl Identity {
    /// The labels every kubelet sets, then the configured ones.
    fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::from([
            ("kubernetes.io/hostname".to_string(), self.name.clone()),
            ("kubernetes.io/os".to_string(), "linux".to_string()),
            ("kubernetes.io/arch".to_string(), machine::arch().to_string()),
            ("beta.kubernetes.io/os".to_string(), "linux".to_string()),
            ("beta.kubernetes.io/arch".to_string(), machine::arch().to_string()),
            ("node.kubernetes.io/instance-type".to_string(), "tug".to_string()),
        ]);
        labels.extend(self.labels.clone());
        labels
    }
}

/// One condition's status and since when it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Held {
    status: &'static str,
    reason: &'static str,
    message: String,
    since: jiff::Timestamp,
}

/// The status the kubelet last computed and when it last posted one.
pub struct Reporter {
    identity: Identity,
    /// Read once: none of it changes while tug runs.
    node_info: Value,
    conditions: BTreeMap<&'static str, Held>,
    last_posted: Option<(Value, Instant)>,
}

impl Reporter {
    pub fn new(identity: Identity, runtime_version: String) -> Reporter {
        Reporter {
            identity,
            node_info: machine::node_info(&runtime_version),
            conditions: BTreeMap::new(),
            last_posted: None,
        }
    }

    pub fn name(&self) -> &str {
        &self.identity.name
    }

    /// Records a condition, keeping its transition time when the status is unchanged.
    fn hold(&mut self, kind: &'static str, status: bool, reasons: (&'static str, &'static str), message: String) {
        let (status, reason) = if status { ("True", reasons.0) } else { ("False", reasons.1) };
        let now = jiff::Timestamp::now();
        let since = self.conditions.get(kind).filter(|h| h.status == status).map_or(now, |h| h.since);
        self.conditions.insert(kind, Held { status, reason, message, since });
    }

    /// The status from the machine and the runtime's health now.
    fn status(&mut self, machine: &Machine, health: &RuntimeHealth) -> Value {
        let memory = machine.memory_pressure();
        self.hold(
            "MemoryPressure",
            memory,
            ("KubeletHasInsufficientMemory", "KubeletHasSufficientMemory"),
            format!("kubelet has {} memory available", if memory { "insufficient" } else { "sufficient" }),
        );
        let disk = machine.disk_pressure();
        self.hold(
            "DiskPressure",
            disk,
            ("KubeletHasDiskPressure", "KubeletHasNoDiskPressure"),
            format!("kubelet has {}disk pressure", if disk { "" } else { "no " }),
        );
        self.hold(
            "PIDPressure",
            false,
            ("KubeletHasInsufficientPID", "KubeletHasSufficientPID"),
            "kubelet has sufficient PID available".into(),
        );
        let ready = health.runtime_ready && health.network_ready;
        let message = if ready { "kubelet is posting ready status".to_string() } else { health.message.clone() };
        self.hold("Ready", ready, ("KubeletReady", "KubeletNotReady"), message);
        let mut addresses = Vec::new();
        if let Some(ip) = self.identity.address {
            addresses.push(json!({"type": "InternalIP", "address": ip.to_string()}));
        }
        if let Some(ip) = self.identity.external_address {
            addresses.push(json!({"type": "ExternalIP", "address": ip.to_string()}));
        }
        addresses.push(json!({"type": "Hostname", "address": self.identity.name}));
        let conditions: Vec<Value> = ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]
            .iter()
            .filter_map(|kind| {
                let held = self.conditions.get(kind)?;
                Some(json!({"type": kind, "status": held.status, "reason": held.reason, "message": held.message,
                    "lastTransitionTime": held.since}))
            })
            .collect();
        json!({
            "capacity": machine.capacity(),
            "allocatable": machine.allocatable(),
            "conditions": conditions,
            "addresses": addresses,
            "daemonEndpoints": {"kubeletEndpoint": {"Port": super::server::PORT}},
            "nodeInfo": self.node_info,
        })
    }

    /// The status to post now, if any: when it changed or the last post is getting old. Each
    /// condition's heartbeat time is stamped here.
    pub fn due(&mut self, health: &RuntimeHealth) -> Option<Value> {
        let machine = Machine::read(&self.identity.data_dir);
        let status = self.status(&machine, health);
        let fresh = self
            .last_posted
            .as_ref()
            .is_some_and(|(posted, at)| *posted == comparable(&status) && at.elapsed() < STATUS_REPORT_EVERY);
        if fresh {
            return None;
        }
        Some(stamped(status))
    }

    /// Records that `status` (from [`Reporter::due`]) was posted; until then it stays due.
    pub fn posted(&mut self, status: &Value) {
        self.last_posted = Some((comparable(status), Instant::now()));
    }

    /// The Node to register.
    pub fn node(&mut self, health: &RuntimeHealth) -> Value {
        let machine = Machine::read(&self.identity.data_dir);
        let status = stamped(self.status(&machine, health));
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": self.identity.name, "labels": self.identity.labels()},
               "status": status})
    }
}

/// The status without what changes on every posting (heartbeat times).
fn comparable(status: &Value) -> Value {
    let mut status = status.clone();
    for condition in status["conditions"].as_array_mut().into_iter().flatten() {
        condition["lastHeartbeatTime"] = Value::Null;
    }
    status
}

fn stamped(mut status: Value) -> Value {
    let now = jiff::Timestamp::now();
    for condition in status["conditions"].as_array_mut().into_iter().flatten() {
        condition["lastHeartbeatTime"] = json!(now);
    }
    status
}

/// Creates the Node, or takes over an existing one of the same name (its labels merged, its status
/// replaced).
pub async fn register(nodes: &Api<Node>, reporter: &mut Reporter, health: &RuntimeHealth) -> kube::Result<()> {
    let object = reporter.node(health);
    let node: Node = serde_json::from_value(object.clone()).map_err(kube::Error::SerdeError)?;
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => {
            let name = reporter.name().to_string();
            let labels = Patch::Merge(json!({"metadata": {"labels": object["metadata"]["labels"]}}));
            nodes.patch(&name, &PatchParams::default(), &labels).await?;
            let status = Patch::Merge(json!({"status": object["status"]}));
            nodes.patch_status(&name, &PatchParams::default(), &status).await.map(drop)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reporter() -> Reporter {
        let identity = Identity {
            name: "edge-1".into(),
            address: Some("192.0.2.7".parse().expect("ip")),
            external_address: None,
            cluster_dns: "10.43.0.10".parse().expect("ip"),
            resolv_conf: None,
            labels: BTreeMap::from([("site".to_string(), "north".to_string())]),
            data_dir: "/".into(),
            cluster_domain: "cluster.local".into(),
        };
        Reporter::new(identity, "containerd://1.6.20".into())
    }

    fn healthy() -> RuntimeHealth {
        RuntimeHealth { runtime_ready: true, network_ready: true, message: String::new() }
    }

    fn condition<'a>(status: &'a Value, kind: &str) -> &'a Value {
        status["conditions"].as_array().and_then(|c| c.iter().find(|c| c["type"] == kind)).expect("condition")
    }

    #[test]
    fn the_node_carries_the_standard_labels_addresses_and_runtime() {
        let node = reporter().node(&healthy());
        let labels = &node["metadata"]["labels"];
        assert_eq!(labels["kubernetes.io/hostname"], "edge-1");
        assert_eq!(labels["kubernetes.io/os"], "linux");
        assert_eq!(labels["site"], "north");
        assert_eq!(node["status"]["addresses"][0], json!({"type": "InternalIP", "address": "192.0.2.7"}));
        assert_eq!(node["status"]["nodeInfo"]["containerRuntimeVersion"], "containerd://1.6.20");
        assert_eq!(condition(&node["status"], "Ready")["status"], "True");
    }

    #[test]
    fn a_runtime_without_network_makes_the_node_not_ready_with_its_reason() {
        let health = RuntimeHealth {
            runtime_ready: true,
            network_ready: false,
            message: "container runtime network not ready: cni config uninitialized".into(),
        };
        let node = reporter().node(&health);
        let ready = condition(&node["status"], "Ready");
        assert_eq!(ready["status"], "False");
        assert_eq!(ready["reason"], "KubeletNotReady");
        assert_eq!(ready["message"], "container runtime network not ready: cni config uninitialized");
    }

    #[test]
    fn an_unchanged_status_is_not_posted_again_and_a_change_is() {
        let mut reporter = reporter();
        let first = reporter.due(&healthy()).expect("first post");
        assert!(reporter.due(&healthy()).is_some(), "not posted yet: still due");
        reporter.posted(&first);
        assert!(reporter.due(&healthy()).is_none(), "nothing changed");
        let broken = RuntimeHealth { runtime_ready: false, network_ready: true, message: "down".into() };
        let second = reporter.due(&broken).expect("a change is posted");
        assert_eq!(condition(&second, "Ready")["status"], "False");
        assert_eq!(
            condition(&first, "MemoryPressure")["lastTransitionTime"],
            condition(&second, "MemoryPressure")["lastTransitionTime"],
            "a held condition keeps its transition time"
        );
    }
}
