//! `resourceFieldRef` values, for the environment and downwardAPI volumes: a container's limits or
//! requests of cpu, memory, ephemeral-storage or hugepages, divided by the divisor (default 1) and
//! rounded up, as upstream computes them; a limit the container does not set is the node's
//! allocatable amount, a request it does not set is 0.

use k8s_openapi::api::core::v1::{Pod, ResourceFieldSelector};
use serde_json::Value;

use crate::core::quantity::parse_milli;

/// The value `selector` names for `pod`, whose container `container` asks when the selector names
/// none; `allocatable` is the node's (as its status reports it).
pub fn value(
    pod: &Pod,
    container: &str,
    selector: &ResourceFieldSelector,
    allocatable: &Value,
) -> Result<String, String> {
    let name = selector.container_name.as_deref().filter(|c| !c.is_empty()).unwrap_or(container);
    let spec = pod.spec.as_ref().ok_or("the pod has no spec")?;
    let found = spec.containers.iter().chain(spec.init_containers.iter().flatten()).find(|c| c.name == name);
    let found = found.ok_or_else(|| format!("container {name:?} not found in the pod"))?;
    let (kind, resource) = selector
        .resource
        .split_once('.')
        .filter(|(kind, _)| matches!(*kind, "limits" | "requests"))
        .ok_or_else(|| format!("unsupported container resource: {}", selector.resource))?;
    let resources = found.resources.as_ref();
    let set = match kind {
        "limits" => resources.and_then(|r| r.limits.as_ref()),
        _ => resources.and_then(|r| r.requests.as_ref()),
    }
    .and_then(|map| map.get(resource));
    let amount = match (set, kind) {
        (Some(quantity), _) => parse_milli(&quantity.0)?,
        (None, "limits") => allocatable.get(resource).and_then(Value::as_str).map_or(Ok(0), parse_milli)?,
        (None, _) => 0,
    };
    let divisor = selector.divisor.as_ref().map_or(Ok(1000), |d| parse_milli(&d.0))?;
    if divisor <= 0 {
        return Err(format!("invalid divisor for {}: must be positive", selector.resource));
    }
    Ok(((amount + divisor - 1).div_euclid(divisor)).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({"spec": {"containers": [
            {"name": "app", "resources": {"limits": {"memory": "64Mi", "cpu": "500m"}, "requests": {"cpu": "250m"}}},
            {"name": "side"}
        ]}}))
        .expect("pod")
    }

    fn selector(resource: &str, divisor: Option<&str>, container: Option<&str>) -> ResourceFieldSelector {
        ResourceFieldSelector {
            resource: resource.into(),
            divisor: divisor.map(|d| Quantity(d.into())),
            container_name: container.map(str::to_string),
        }
    }

    #[test]
    fn values_are_divided_and_rounded_up() {
        let node = serde_json::json!({"cpu": "2", "memory": "4Gi"});
        let of = |r: &str, d: Option<&str>, c: Option<&str>| value(&pod(), "app", &selector(r, d, c), &node).expect(r);
        assert_eq!(of("limits.memory", Some("1Mi"), None), "64");
        assert_eq!(of("limits.memory", None, None), "67108864");
        assert_eq!(of("limits.cpu", Some("1m"), None), "500");
        assert_eq!(of("limits.cpu", None, None), "1", "half a core rounds up to 1");
        assert_eq!(of("requests.cpu", Some("1m"), None), "250");
        assert_eq!(of("limits.cpu", None, Some("side")), "2", "an unset limit is the node's allocatable");
        assert_eq!(of("limits.memory", Some("1Gi"), Some("side")), "4");
        assert_eq!(of("requests.memory", None, Some("side")), "0");
        assert!(value(&pod(), "app", &selector("limits.cpu", None, Some("ghost")), &node).is_err());
        assert!(value(&pod(), "app", &selector("cpu", None, None), &node).is_err());
    }
}
