//! Tests of the iptables layout: chains reached from each kind of address, balancing, affinity,
//! traffic policies, refusals.

use super::*;
use crate::proxy::model::Protocol;

fn node() -> Node {
    Node { name: "a".into(), cluster_cidr: "10.42.0.0/16".parse().unwrap() }
}

fn endpoint(ip: &str, node: &str) -> Endpoint {
    Endpoint { ip: ip.parse().unwrap(), port: 8080, node: Some(node.into()) }
}

fn web(endpoints: Vec<Endpoint>) -> ServicePort {
    ServicePort {
        id: PortId {
            namespace: "default".into(),
            service: "web".into(),
            port_name: "http".into(),
            protocol: Protocol::Tcp,
        },
        cluster_ips: vec!["10.43.0.20".parse().unwrap()],
        port: 80,
        node_port: None,
        external_ips: vec![],
        load_balancer_ips: vec![],
        affinity_seconds: None,
        external_local: false,
        internal_local: false,
        endpoints,
    }
}

/// The rules of the chain a rule of `chain` containing `needle` jumps to.
fn target_of<'a>(set: &'a Ruleset, table: Table, chain: &str, needle: &str) -> (&'a str, &'a [String]) {
    let rule = set
        .rules(table, chain)
        .unwrap()
        .iter()
        .find(|r| r.contains(needle))
        .unwrap_or_else(|| panic!("no {needle} in {chain}"));
    let target = rule.rsplit(' ').next().unwrap();
    let name = set.chain_names(table).find(|n| *n == target).expect("target chain");
    (name, set.rules(table, name).unwrap())
}

#[test]
fn a_cluster_ip_balances_over_every_endpoint_and_masquerades_off_cluster_clients() {
    let port = web(vec![endpoint("10.42.0.4", "a"), endpoint("10.42.1.5", "b"), endpoint("10.42.1.6", "b")]);
    let set = render(&node(), &[port]);
    let (svc, rules) = target_of(&set, Table::Nat, SERVICES, "-d 10.43.0.20/32");
    assert!(svc.starts_with("TUG-SVC-") && svc.len() == 24, "{svc}");
    assert!(
        rules[0].starts_with("! -s 10.42.0.0/16 -d 10.43.0.20/32 -p tcp") && rules[0].ends_with("-j TUG-MARK-MASQ")
    );
    assert!(rules[1].contains("--probability 0.3333333333"), "{}", rules[1]);
    assert!(rules[2].contains("--probability 0.5000000000"), "{}", rules[2]);
    assert!(!rules[3].contains("statistic"));
    let (_, sep) = target_of(&set, Table::Nat, svc, "10.42.1.6:8080");
    assert!(sep[0].starts_with("-s 10.42.1.6/32") && sep[0].ends_with("-j TUG-MARK-MASQ"), "hairpin: {}", sep[0]);
    assert!(sep[1].ends_with("-j DNAT --to-destination 10.42.1.6:8080"), "{}", sep[1]);
    assert!(set.rules(Table::Filter, SERVICES).unwrap().is_empty());
    let last = set.rules(Table::Nat, SERVICES).unwrap().last().unwrap();
    assert!(last.ends_with("-m addrtype --dst-type LOCAL -j TUG-NODEPORTS"));
}

#[test]
fn a_port_without_endpoints_is_rejected_and_gets_no_chains() {
    let mut port = web(vec![]);
    port.node_port = Some(30080);
    let set = render(&node(), &[port]);
    let rejects = set.rules(Table::Filter, SERVICES).unwrap();
    assert_eq!(rejects.len(), 1);
    assert!(
        rejects[0].contains("-d 10.43.0.20/32")
            && rejects[0].contains("has no endpoints")
            && rejects[0].ends_with("-j REJECT")
    );
    let external = set.rules(Table::Filter, EXTERNAL_SERVICES).unwrap();
    assert!(
        external[0].contains("--dst-type LOCAL")
            && external[0].contains("--dport 30080")
            && external[0].ends_with("-j REJECT")
    );
    assert!(set.chain_names(Table::Nat).all(|c| !PER_SERVICE_PREFIXES.iter().any(|p| c.starts_with(p))));
}

#[test]
fn a_node_port_masquerades_and_reaches_every_endpoint() {
    let mut port = web(vec![endpoint("10.42.1.5", "b")]);
    port.node_port = Some(30080);
    port.external_ips = vec!["192.0.2.9".parse().unwrap()];
    let set = render(&node(), &[port]);
    let (ext, rules) = target_of(&set, Table::Nat, NODE_PORTS, "--dport 30080");
    assert!(ext.starts_with("TUG-EXT-"));
    assert_eq!(rules[0], "-j TUG-MARK-MASQ");
    assert!(rules[1].starts_with("-j TUG-SVC-"));
    let (by_ip, _) = target_of(&set, Table::Nat, SERVICES, "-d 192.0.2.9/32");
    assert_eq!(by_ip, ext);
}

#[test]
fn external_traffic_policy_local_keeps_the_source_and_drops_without_local_endpoints() {
    let mut port = web(vec![endpoint("10.42.0.4", "a"), endpoint("10.42.1.5", "b")]);
    port.node_port = Some(30080);
    port.external_local = true;
    let set = render(&node(), &[port.clone()]);
    let (ext, rules) = target_of(&set, Table::Nat, NODE_PORTS, "--dport 30080");
    assert!(rules[0].starts_with("-s 10.42.0.0/16") && rules[0].contains("-j TUG-SVC-"), "pods reach every endpoint");
    assert!(rules[1].contains("--src-type LOCAL") && rules[1].ends_with("-j TUG-MARK-MASQ"));
    assert!(!rules.iter().any(|r| r == "-j TUG-MARK-MASQ"), "outside clients keep their address");
    let (_, local) = target_of(&set, Table::Nat, ext, "-j TUG-SVL-");
    assert_eq!(local.len(), 1, "{local:?}");
    assert!(local[0].contains("10.42.0.4:8080"));

    let elsewhere = Node { name: "c".into(), ..node() };
    let set = render(&elsewhere, &[port]);
    let drops = set.rules(Table::Filter, EXTERNAL_SERVICES).unwrap();
    assert!(drops[0].contains("has no local endpoints") && drops[0].ends_with("-j DROP"), "{drops:?}");
    let (_, rules) = target_of(&set, Table::Nat, NODE_PORTS, "--dport 30080");
    assert_eq!(rules.len(), 3, "pods and the node itself still reach the service: {rules:?}");
    assert!(rules.iter().all(|r| !r.contains("TUG-SVL-")));
}

#[test]
fn internal_traffic_policy_local_uses_only_this_nodes_endpoints() {
    let mut port = web(vec![endpoint("10.42.0.4", "a"), endpoint("10.42.1.5", "b")]);
    port.internal_local = true;
    let set = render(&node(), &[port.clone()]);
    let (svl, rules) = target_of(&set, Table::Nat, SERVICES, "-d 10.43.0.20/32");
    assert!(svl.starts_with("TUG-SVL-"));
    assert_eq!(rules.len(), 1);
    assert!(rules[0].contains("10.42.0.4:8080"));
    let set = render(&Node { name: "c".into(), ..node() }, &[port]);
    assert!(set.rules(Table::Filter, SERVICES).unwrap()[0].ends_with("-j DROP"));
}

#[test]
fn client_ip_affinity_sends_a_client_back_to_its_endpoint() {
    let mut port = web(vec![endpoint("10.42.0.4", "a"), endpoint("10.42.1.5", "b")]);
    port.affinity_seconds = Some(60);
    let set = render(&node(), &[port]);
    let (svc, rules) = target_of(&set, Table::Nat, SERVICES, "-d 10.43.0.20/32");
    let recent: Vec<&String> = rules.iter().filter(|r| r.contains("--rcheck --seconds 60 --reap")).collect();
    assert_eq!(recent.len(), 2);
    let (sep, sep_rules) = target_of(&set, Table::Nat, svc, "10.42.1.5:8080");
    assert!(sep_rules[1].contains(&format!("-m recent --set --name {sep}")), "{sep_rules:?}");
}

#[test]
fn chain_names_are_stable_and_fit_iptables() {
    let set = render(&node(), &[web(vec![endpoint("10.42.0.4", "a")])]);
    let again = render(&node(), &[web(vec![endpoint("10.42.0.4", "a")])]);
    assert_eq!(set, again);
    assert!(set.chain_names(Table::Nat).all(|c| c.len() <= 28 && owns(c)));
}
