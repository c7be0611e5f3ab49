//! The autoscaling/v2 HorizontalPodAutoscaler printer, with upstream's TARGETS summary of the
//! metric specs against the current metrics.

use serde_json::Value;

use super::{age, at, col, int_at, list_at, name, opt_int, scalar_text, str_at, Printer, AGE, NAME};

const HPA_REF: &str = "scaleTargetRef points to the target resource to scale, and is used to the pods for which metrics should be collected, as well as to actually change the replica count.";
const HPA_METRICS: &str = "metrics contains the specifications for which to use to calculate the desired replica count (the maximum replica count across all metrics will be used).  The desired replica count is calculated multiplying the ratio between the target value and the current value by the current number of pods.  Ergo, metrics used must decrease as the pod count is increased, and vice-versa.  See the individual metric source types for more information about how each type of metric must respond. If not set, the default metric will be set to 80% average CPU utilization.";
const HPA_MIN: &str = "minReplicas is the lower limit for the number of replicas to which the autoscaler can scale down.  It defaults to 1 pod.  minReplicas is allowed to be 0 if the alpha feature gate HPAScaleToZero is enabled and at least one Object or External metric is configured.  Scaling is active as long as at least one metric value is available.";
const HPA_MAX: &str = "maxReplicas is the upper limit for the number of replicas to which the autoscaler can scale up. It cannot be less that minReplicas.";
const HPA_CURRENT: &str =
    "currentReplicas is current number of replicas of pods managed by this autoscaler, as last seen by the autoscaler.";

pub(super) const HPA: Printer = Printer {
    columns: &[
        NAME,
        col("Reference", "string", HPA_REF),
        col("Targets", "string", HPA_METRICS),
        col("MinPods", "string", HPA_MIN),
        col("MaxPods", "string", HPA_MAX),
        col("Replicas", "string", HPA_CURRENT),
        AGE,
    ],
    cells: |hpa, now| {
        let reference =
            format!("{}/{}", str_at(hpa, "/spec/scaleTargetRef/kind"), str_at(hpa, "/spec/scaleTargetRef/name"));
        let min_pods = opt_int(hpa, "/spec/minReplicas").map_or("<unset>".to_string(), |n| n.to_string());
        vec![
            name(hpa),
            Value::from(reference),
            Value::from(format_metrics(list_at(hpa, "/spec/metrics"), list_at(hpa, "/status/currentMetrics"))),
            Value::from(min_pods),
            Value::from(int_at(hpa, "/spec/maxReplicas")),
            Value::from(int_at(hpa, "/status/currentReplicas")),
            age(hpa, now),
        ]
    },
};

const UNKNOWN: &str = "<unknown>";

/// A quantity as Quantity.String() prints it, `<nil>` when unset.
fn quantity(v: &Value, ptr: &str) -> String {
    scalar_text(at(v, ptr)).unwrap_or_else(|| "<nil>".to_string())
}

/// formatHPAMetrics: "current/target" per metric spec (at most two, then "+ N more...").
fn format_metrics(specs: &[Value], statuses: &[Value]) -> String {
    if specs.is_empty() {
        return "<none>".to_string();
    }
    const MAX: usize = 2;
    let entries: Vec<String> = specs
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let status = statuses.get(i);
            match str_at(spec, "/type") {
                "External" => value_metric(spec, status, "external"),
                "Object" => value_metric(spec, status, "object"),
                "Pods" => {
                    let current = status
                        .and_then(|s| at(s, "/pods"))
                        .map_or(UNKNOWN.to_string(), |p| quantity(p, "/current/averageValue"));
                    format!("{current}/{}", quantity(spec, "/pods/target/averageValue"))
                }
                "Resource" => resource_metric(spec, status, "resource"),
                "ContainerResource" => resource_metric(spec, status, "containerResource"),
                _ => "<unknown type>".to_string(),
            }
        })
        .collect();
    if entries.len() > MAX {
        return format!("{} + {} more...", entries[..MAX].join(", "), entries.len() - MAX);
    }
    entries.join(", ")
}

/// External and Object metrics: an average value target, else a plain value target.
fn value_metric(spec: &Value, status: Option<&Value>, field: &str) -> String {
    let source = at(spec, &format!("/{field}")).unwrap_or(&Value::Null);
    let current = status.and_then(|s| at(s, &format!("/{field}/current")));
    if at(source, "/target/averageValue").is_some() {
        let current = current.and_then(|c| scalar_text(at(c, "/averageValue"))).unwrap_or(UNKNOWN.to_string());
        return format!("{current}/{} (avg)", quantity(source, "/target/averageValue"));
    }
    let current = match status.and_then(|s| at(s, &format!("/{field}"))) {
        Some(s) => quantity(s, "/current/value"),
        None => UNKNOWN.to_string(),
    };
    format!("{current}/{}", quantity(source, "/target/value"))
}

/// Resource and ContainerResource metrics: "cpu: 40%/80%" or "memory: 100Mi/200Mi".
fn resource_metric(spec: &Value, status: Option<&Value>, field: &str) -> String {
    let source = at(spec, &format!("/{field}")).unwrap_or(&Value::Null);
    let status = status.and_then(|s| at(s, &format!("/{field}")));
    let resource = str_at(source, "/name");
    if at(source, "/target/averageValue").is_some() {
        let current = status.map_or(UNKNOWN.to_string(), |s| quantity(s, "/current/averageValue"));
        return format!("{resource}: {current}/{}", quantity(source, "/target/averageValue"));
    }
    let current =
        status.and_then(|s| opt_int(s, "/current/averageUtilization")).map_or(UNKNOWN.to_string(), |u| format!("{u}%"));
    let target = opt_int(source, "/target/averageUtilization").map_or("<auto>".to_string(), |u| format!("{u}%"));
    format!("{resource}: {current}/{target}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hpa_targets() {
        let hpa = json!({"metadata": {"name": "web"}, "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"},
            "minReplicas": 2, "maxReplicas": 5, "metrics": [
                {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}},
                {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "200Mi"}}},
                {"type": "Pods", "pods": {"target": {"averageValue": "1k"}}}]},
            "status": {"currentReplicas": 3, "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 41}}}]}});
        let r = (HPA.cells)(&hpa, "2024-01-01T00:00:00Z".parse().unwrap());
        assert_eq!(
            r[1..6],
            [
                json!("Deployment/web"),
                json!("cpu: 41%/80%, memory: <unknown>/200Mi + 1 more..."),
                json!("2"),
                json!(5),
                json!(3)
            ]
        );
        assert_eq!(format_metrics(&[], &[]), "<none>");
        let ext = [json!({"type": "External", "external": {"target": {"value": "10"}}})];
        assert_eq!(format_metrics(&ext, &[json!({"external": {"current": {"value": "4"}}})]), "4/10");
        assert_eq!(format_metrics(&ext, &[]), "<unknown>/10");
    }
}
