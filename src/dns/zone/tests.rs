//! Tests of the zone's answers: service, headless, ExternalName, pod and reverse names, and the
//! negative answers.

use super::*;
use serde_json::json;

fn zone() -> Zone {
    let services: Vec<Arc<Service>> = [
        json!({"metadata": {"name": "web", "namespace": "default"}, "spec": {"clusterIP": "10.43.0.20",
            "clusterIPs": ["10.43.0.20"], "ports": [{"name": "http", "port": 80, "protocol": "TCP"}, {"port": 81}]}}),
        json!({"metadata": {"name": "db", "namespace": "prod"}, "spec": {"clusterIP": "None",
            "ports": [{"name": "pg", "port": 5432}]}}),
        json!({"metadata": {"name": "ext", "namespace": "default"}, "spec": {"type": "ExternalName",
            "externalName": "example.com"}}),
    ]
    .into_iter()
    .map(|v| Arc::new(serde_json::from_value(v).unwrap()))
    .collect();
    let slices: Vec<Arc<EndpointSlice>> = [json!({"metadata": {"name": "db-x", "namespace": "prod",
        "labels": {"kubernetes.io/service-name": "db"}}, "addressType": "IPv4",
        "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": ["10.42.1.7"], "hostname": "db-0", "conditions": {"ready": true}},
            {"addresses": ["10.42.0.9"], "conditions": {"ready": true}},
            {"addresses": ["10.42.0.10"], "conditions": {"ready": false}}]})]
    .into_iter()
    .map(|v| Arc::new(serde_json::from_value(v).unwrap()))
    .collect();
    let reverse = vec!["10.43.0.0/16".parse().unwrap(), "10.42.0.0/16".parse().unwrap()];
    Zone::build("cluster.local", reverse, &services, &slices)
}

fn ask(zone: &Zone, query: &str, kind: RecordType) -> Answer {
    zone.answer(&LowerName::new(&Name::from_ascii(query).unwrap()), kind)
}

fn data(answer: Answer) -> Vec<String> {
    let Answer::Records(records) = answer else { panic!("no records: {answer:?}") };
    let mut data: Vec<String> = records.iter().map(|r| r.data.to_string()).collect();
    data.sort();
    data
}

#[test]
fn a_service_name_gives_its_cluster_ip_and_named_ports_give_srv_records() {
    let zone = zone();
    assert_eq!(data(ask(&zone, "web.default.svc.cluster.local.", RecordType::A)), ["10.43.0.20"]);
    assert_eq!(data(ask(&zone, "WEB.Default.svc.cluster.local.", RecordType::A)), ["10.43.0.20"], "case-insensitive");
    assert_eq!(ask(&zone, "web.default.svc.cluster.local.", RecordType::AAAA), Answer::NoData);
    assert_eq!(
        data(ask(&zone, "_http._tcp.web.default.svc.cluster.local.", RecordType::SRV)),
        ["0 100 80 web.default.svc.cluster.local."]
    );
    assert_eq!(data(ask(&zone, "20.0.43.10.in-addr.arpa.", RecordType::PTR)), ["web.default.svc.cluster.local."]);
}

#[test]
fn a_headless_service_gives_its_ready_endpoints_by_address_and_by_name() {
    let zone = zone();
    assert_eq!(data(ask(&zone, "db.prod.svc.cluster.local.", RecordType::A)), ["10.42.0.9", "10.42.1.7"]);
    assert_eq!(data(ask(&zone, "db-0.db.prod.svc.cluster.local.", RecordType::A)), ["10.42.1.7"]);
    assert_eq!(data(ask(&zone, "10-42-0-9.db.prod.svc.cluster.local.", RecordType::A)), ["10.42.0.9"]);
    assert_eq!(data(ask(&zone, "7.1.42.10.in-addr.arpa.", RecordType::PTR)), ["db-0.db.prod.svc.cluster.local."]);
    assert_eq!(
        data(ask(&zone, "_pg._tcp.db.prod.svc.cluster.local.", RecordType::SRV)),
        ["0 50 5432 10-42-0-9.db.prod.svc.cluster.local.", "0 50 5432 db-0.db.prod.svc.cluster.local."]
    );
    assert_eq!(ask(&zone, "10-42-0-10.db.prod.svc.cluster.local.", RecordType::A), Answer::NxDomain, "not ready");
}

#[test]
fn names_outside_the_cluster_are_asked_elsewhere_and_missing_ones_do_not_exist() {
    let zone = zone();
    assert_eq!(data(ask(&zone, "ext.default.svc.cluster.local.", RecordType::A)), ["example.com."]);
    assert_eq!(ask(&zone, "nope.default.svc.cluster.local.", RecordType::A), Answer::NxDomain);
    assert_eq!(ask(&zone, "web.default.svc.cluster.local.default.svc.cluster.local.", RecordType::A), Answer::NxDomain);
    assert_eq!(ask(&zone, "default.svc.cluster.local.", RecordType::A), Answer::NoData);
    assert_eq!(ask(&zone, "prod.pod.cluster.local.", RecordType::A), Answer::NoData);
    assert_eq!(ask(&zone, "_pg._tcp.db.prod.svc.cluster.local.", RecordType::A), Answer::NoData);
    assert_eq!(data(ask(&zone, "cluster.local.", RecordType::SOA)).len(), 1, "the apex answers its SOA");
    assert_eq!(ask(&zone, "example.com.", RecordType::A), Answer::Elsewhere);
    assert_eq!(ask(&zone, "9.9.43.10.in-addr.arpa.", RecordType::PTR), Answer::NxDomain);
    assert_eq!(ask(&zone, "1.2.0.192.in-addr.arpa.", RecordType::PTR), Answer::Elsewhere);
}

#[test]
fn pod_names_resolve_to_the_address_they_spell() {
    let zone = zone();
    assert_eq!(data(ask(&zone, "10-42-1-7.prod.pod.cluster.local.", RecordType::A)), ["10.42.1.7"]);
    assert_eq!(ask(&zone, "10-42-1-7.prod.pod.cluster.local.", RecordType::AAAA), Answer::NoData);
    assert_eq!(ask(&zone, "nonsense.prod.pod.cluster.local.", RecordType::A), Answer::NxDomain);
}
