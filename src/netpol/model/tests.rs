//! Tests of policy resolution: isolation, peers, ports, directions.

use super::*;
use serde_json::json;

fn pod(name: &str, namespace: &str, node: &str, ip: &str, labels: serde_json::Value) -> Arc<Pod> {
    Arc::new(
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i",
                "ports": [{"name": "http", "containerPort": 8080}]}]},
            "status": {"phase": "Running", "podIP": ip}}))
        .unwrap(),
    )
}

fn namespace(name: &str, labels: serde_json::Value) -> Arc<Namespace> {
    Arc::new(serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap())
}

fn policy(value: serde_json::Value) -> Arc<NetworkPolicy> {
    Arc::new(serde_json::from_value(value).unwrap())
}

fn world() -> (Vec<Arc<Pod>>, Vec<Arc<Namespace>>) {
    let pods = vec![
        pod("web", "shop", "a", "10.42.0.5", json!({"app": "web"})),
        pod("other", "shop", "a", "10.42.0.6", json!({"app": "other"})),
        pod("client", "shop", "b", "10.42.1.5", json!({"role": "client"})),
        pod("friend", "friends", "b", "10.42.1.6", json!({"role": "client"})),
    ];
    let namespaces = vec![namespace("shop", json!({})), namespace("friends", json!({"trusted": "yes"}))];
    (pods, namespaces)
}

fn networks(peers: &Option<Vec<Peers>>) -> Vec<String> {
    peers.as_ref().expect("peers").iter().flat_map(|p| &p.networks).map(|n| n.to_string()).collect()
}

#[test]
fn a_pod_no_policy_selects_is_not_isolated() {
    let (pods, namespaces) = world();
    let world = World { pods: &pods, namespaces: &namespaces };
    let deny = policy(json!({"metadata": {"name": "deny", "namespace": "shop"},
        "spec": {"podSelector": {"matchLabels": {"app": "web"}}}}));
    let isolated = isolated(&[deny], &world, "a");
    assert_eq!(isolated.len(), 1, "only web: {isolated:?}");
    assert_eq!(isolated[0].pod, "shop/web");
    assert_eq!(isolated[0].ingress, Some(vec![]), "a policy without rules denies all ingress");
    assert_eq!(isolated[0].egress, None);
}

#[test]
fn peers_are_pods_of_the_namespace_or_of_the_selected_namespaces_and_ip_blocks() {
    let (pods, namespaces) = world();
    let world = World { pods: &pods, namespaces: &namespaces };
    let allow = policy(json!({"metadata": {"name": "allow", "namespace": "shop"},
        "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [
            {"from": [{"podSelector": {"matchLabels": {"role": "client"}}}], "ports": [{"port": "http"}]},
            {"from": [{"namespaceSelector": {"matchLabels": {"trusted": "yes"}}}]},
            {"from": [{"ipBlock": {"cidr": "192.0.2.0/24", "except": ["192.0.2.128/25"]}}], "ports": [{"port": 80, "endPort": 90, "protocol": "UDP"}]}]}}));
    let isolated = isolated(&[allow], &world, "a");
    let rules = isolated[0].ingress.as_ref().unwrap();
    assert_eq!(networks(&rules[0].peers), ["10.42.1.5/32"], "clients of the policy's namespace only");
    assert_eq!(rules[0].ports, [PortRange { protocol: "TCP".into(), ports: Some((8080, 8080)) }], "named port");
    assert_eq!(networks(&rules[1].peers), ["10.42.1.6/32"], "every pod of the trusted namespace");
    assert!(rules[1].ports.is_empty());
    let block = &rules[2].peers.as_ref().unwrap()[0];
    assert_eq!(
        (block.networks[0].to_string(), block.except[0].to_string()),
        ("192.0.2.0/24".into(), "192.0.2.128/25".into())
    );
    assert_eq!(rules[2].ports, [PortRange { protocol: "UDP".into(), ports: Some((80, 90)) }]);
    assert_eq!(rules[2].id, "shop/allow/ingress/2");
}

#[test]
fn egress_is_isolated_when_the_policy_says_so() {
    let (pods, namespaces) = world();
    let world = World { pods: &pods, namespaces: &namespaces };
    let egress = policy(json!({"metadata": {"name": "out", "namespace": "shop"},
        "spec": {"podSelector": {}, "egress": [{"to": [{"namespaceSelector": {}}], "ports": [{"port": "http"}]}]}}));
    let isolated = isolated(&[egress], &world, "a");
    assert_eq!(isolated.len(), 2, "an empty selector selects every pod of the namespace");
    let rules = isolated[0].egress.as_ref().unwrap();
    assert_eq!(networks(&rules[0].peers).len(), 4, "every pod of every namespace");
    assert_eq!(rules[0].ports, [PortRange { protocol: "TCP".into(), ports: Some((8080, 8080)) }]);
    assert_eq!(isolated[0].ingress, Some(vec![]), "policyTypes default to Ingress too");
}

#[test]
fn each_ip_block_keeps_its_own_exceptions() {
    let (pods, namespaces) = world();
    let world = World { pods: &pods, namespaces: &namespaces };
    let blocks = policy(json!({"metadata": {"name": "blocks", "namespace": "shop"},
        "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{"from": [
            {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}, {"ipBlock": {"cidr": "10.0.0.0/8"}}]}]}}));
    let isolated = isolated(&[blocks], &world, "a");
    let peers = isolated[0].ingress.as_ref().unwrap()[0].peers.as_ref().unwrap();
    assert_eq!(peers.len(), 2);
    assert!(peers[1].except.is_empty(), "the second block allows 10.1.0.0/16: {peers:?}");
    let empty_egress = policy(json!({"metadata": {"name": "e", "namespace": "shop"},
        "spec": {"podSelector": {"matchLabels": {"app": "other"}}, "egress": []}}));
    let isolated = super::isolated(&[empty_egress], &world, "a");
    assert_eq!(isolated[0].egress, None, "an empty egress list does not make the policy an egress policy");
}
