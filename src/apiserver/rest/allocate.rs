//! Service IP and node port allocation. What is allocated is derived from the Services in the store, so
//! an address is free again as soon as its Service is gone and nothing can leak; one lock serializes
//! Service writes so two creates never pick the same address.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::sync::Arc;

use ipnet::IpNet;
use serde_json::{json, Value};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::core::registry::ResourceInfo;
use crate::store::ListOptions;

use super::Rest;
use crate::apiserver::object;
use crate::apiserver::status::{ApiError, ApiResult, FieldError};

/// The ranges Services draw from.
#[derive(Debug, Clone)]
pub struct ServiceNetwork {
    pub cidr: IpNet,
    pub node_ports: RangeInclusive<u16>,
    lock: Arc<Mutex<()>>,
}

impl ServiceNetwork {
    pub fn new(cidr: IpNet, node_ports: RangeInclusive<u16>) -> ServiceNetwork {
        ServiceNetwork { cidr, node_ports, lock: Arc::new(Mutex::new(())) }
    }
}

/// What other Services hold.
struct InUse {
    ips: BTreeSet<IpAddr>,
    ports: BTreeSet<u16>,
}

impl Rest {
    /// Fills in a Service's cluster IP and node ports (keeping those it already had) and checks requested
    /// ones. Returns a guard to hold until the write is done; None for other kinds.
    pub(super) async fn allocate(
        &self,
        res: &ResourceInfo,
        obj: &mut Value,
        old: Option<&Value>,
    ) -> ApiResult<Option<OwnedMutexGuard<()>>> {
        if !(res.group.is_empty() && res.kind == "Service") {
            return Ok(None);
        }
        let guard = self.network.lock.clone().lock_owned().await;
        let in_use = self.services_in_use(obj).await?;
        let name = object::name(obj).unwrap_or("").to_string();
        let invalid = |errors| ApiError::invalid(res, &name, errors);
        let kind = obj.pointer("/spec/type").and_then(Value::as_str).unwrap_or("ClusterIP").to_string();
        if kind == "ExternalName" {
            if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
                spec.remove("clusterIP");
                spec.remove("clusterIPs");
            }
            return Ok(Some(guard));
        }
        let old_ip = old.and_then(|o| o.pointer("/spec/clusterIP")).and_then(Value::as_str).map(str::to_string);
        let requested = obj.pointer("/spec/clusterIP").and_then(Value::as_str).unwrap_or("").to_string();
        let ip = match (requested.as_str(), old_ip) {
            ("", Some(old)) => old,
            ("", None) => self.pick_ip(&in_use).ok_or_else(|| {
                invalid(vec![FieldError::invalid(
                    "spec.clusterIPs",
                    &json!([]),
                    "failed to allocate IP: range is full",
                )])
            })?,
            ("None", _) => "None".to_string(),
            (ip, Some(old)) if ip == old => old,
            (ip, _) => {
                let detail = self.check_ip(ip, &in_use);
                if let Some(detail) = detail {
                    return Err(invalid(vec![FieldError::invalid("spec.clusterIPs", &json!([ip]), detail)]));
                }
                ip.to_string()
            }
        };
        obj["spec"]["clusterIP"] = json!(ip);
        obj["spec"]["clusterIPs"] = json!([ip]);
        if matches!(kind.as_str(), "NodePort" | "LoadBalancer") {
            self.assign_node_ports(obj, old, &in_use).map_err(|e| invalid(vec![e]))?;
        }
        Ok(Some(guard))
    }

    async fn services_in_use(&self, service: &Value) -> ApiResult<InUse> {
        let uid = object::meta_str(service, "uid").unwrap_or("").to_string();
        let page = self.store.list("/registry/core/services/", ListOptions::default()).await?;
        let mut in_use = InUse { ips: BTreeSet::new(), ports: BTreeSet::new() };
        for record in page.records {
            let other = object::decode(&record)?;
            if object::meta_str(&other, "uid") == Some(uid.as_str()) {
                continue;
            }
            if let Some(ip) = other.pointer("/spec/clusterIP").and_then(Value::as_str).and_then(|s| s.parse().ok()) {
                in_use.ips.insert(ip);
            }
            for p in other.pointer("/spec/ports").and_then(Value::as_array).into_iter().flatten() {
                if let Some(port) = p.get("nodePort").and_then(Value::as_u64) {
                    in_use.ports.insert(port as u16);
                }
            }
        }
        Ok(in_use)
    }

    /// A free address, scanning from a random point so that restarts do not hand out the same IPs in order.
    fn pick_ip(&self, in_use: &InUse) -> Option<String> {
        let hosts: Vec<IpAddr> = self.network.cidr.hosts().take(1 << 20).collect();
        if hosts.is_empty() {
            return None;
        }
        let start = (uuid::Uuid::new_v4().as_u128() % hosts.len() as u128) as usize;
        (0..hosts.len())
            .map(|i| hosts[(start + i) % hosts.len()])
            .find(|ip| !in_use.ips.contains(ip))
            .map(|ip| ip.to_string())
    }

    fn check_ip(&self, ip: &str, in_use: &InUse) -> Option<String> {
        let Ok(addr) = ip.parse::<IpAddr>() else {
            return Some("must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)".into());
        };
        if !self.network.cidr.contains(&addr)
            || addr == self.network.cidr.network()
            || addr == self.network.cidr.broadcast()
        {
            return Some(format!(
                "failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range. The range of valid IPs is {}",
                self.network.cidr
            ));
        }
        in_use.ips.contains(&addr).then(|| format!("failed to allocate IP {ip}: provided IP is already allocated"))
    }

    fn assign_node_ports(&self, obj: &mut Value, old: Option<&Value>, in_use: &InUse) -> Result<(), FieldError> {
        let old_ports: Vec<Value> =
            old.and_then(|o| o.pointer("/spec/ports")).and_then(Value::as_array).cloned().unwrap_or_default();
        let mut taken = in_use.ports.clone();
        let Some(ports) = obj.pointer_mut("/spec/ports").and_then(Value::as_array_mut) else {
            return Ok(());
        };
        for (i, p) in ports.iter_mut().enumerate() {
            let field = format!("spec.ports[{i}].nodePort");
            let requested = p.get("nodePort").and_then(Value::as_u64);
            let previous = old_ports
                .iter()
                .find(|o| o.get("port") == p.get("port") && o.get("protocol") == p.get("protocol"))
                .and_then(|o| o.get("nodePort"))
                .and_then(Value::as_u64);
            let port = match requested.or(previous) {
                Some(port) => {
                    let port16 = u16::try_from(port).ok().filter(|p| self.network.node_ports.contains(p));
                    let Some(port16) = port16 else {
                        return Err(FieldError::invalid(
                            field,
                            &json!(port),
                            format!(
                                "provided port is not in the valid range. The range of valid ports is {}-{}",
                                self.network.node_ports.start(),
                                self.network.node_ports.end()
                            ),
                        ));
                    };
                    if !taken.insert(port16) && Some(port) != previous {
                        return Err(FieldError::invalid(field, &json!(port), "provided port is already allocated"));
                    }
                    port16
                }
                None => {
                    let span = u32::from(*self.network.node_ports.end() - *self.network.node_ports.start()) + 1;
                    let start = (uuid::Uuid::new_v4().as_u128() % u128::from(span)) as u32;
                    let free = (0..span)
                        .map(|k| *self.network.node_ports.start() + ((start + k) % span) as u16)
                        .find(|candidate| !taken.contains(candidate))
                        .ok_or_else(|| FieldError::invalid(field.clone(), &json!(0), "range is full"))?;
                    taken.insert(free);
                    free
                }
            };
            if let Some(map) = p.as_object_mut() {
                map.insert("nodePort".into(), json!(port));
            }
        }
        Ok(())
    }
}
