//! Isolated pods → filter-table chains and ipsets, as kube-router's policy controller lays them out:
//! `TUG-NWPLCY` (jumped to from FORWARD) lets established traffic through and sends traffic from an
//! egress-isolated pod to its `TUG-PODE-` chain and traffic to an ingress-isolated pod to its
//! `TUG-PODI-` chain; each rule of the pod's policies RETURNs what it allows (peers by an ipset of
//! type hash:net, exceptions as `nomatch` entries; ports by protocol and range), and the chain's last
//! rule rejects the rest. Chains never accept, so both ends' policies apply to traffic between pods
//! of one node.

use std::collections::BTreeMap;
use std::fmt::Write;

use ipnet::IpNet;

use super::model::{Direction, Isolated, Rule};
use crate::iptables::{comment, hashed_name as hashed, Ruleset, Table};

pub const POLICIES: &str = "TUG-NWPLCY";

/// Whether the network policy controller owns the chain.
pub fn owns(chain: &str) -> bool {
    chain == POLICIES || chain.starts_with("TUG-PODI-") || chain.starts_with("TUG-PODE-")
}

/// The jump from FORWARD.
pub const JUMP: [&str; 6] = ["-m", "comment", "--comment", "tug network policies", "-j", POLICIES];

/// The prefix of tug's ipsets.
pub const SET_PREFIX: &str = "TUG-";

/// The address sets by name, each with its members and excluded networks.
pub type Sets = BTreeMap<String, (Vec<IpNet>, Vec<IpNet>)>;

/// The chains and the address sets they use.
pub fn render(pods: &[Isolated]) -> (Ruleset, Sets) {
    let mut set = Ruleset::default();
    let mut sets = Sets::new();
    set.rule(Table::Filter, POLICIES, "-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN");
    for pod in pods.iter().filter(|p| p.ip.is_ipv4()) {
        for (direction, rules) in [(Direction::Egress, &pod.egress), (Direction::Ingress, &pod.ingress)] {
            let Some(rules) = rules else { continue };
            let (prefix, side, match_pod) = match direction {
                Direction::Ingress => ("TUG-PODI-", "src", format!("-d {}/32", pod.ip)),
                Direction::Egress => ("TUG-PODE-", "dst", format!("-s {}/32", pod.ip)),
            };
            let chain = hashed(prefix, &pod.pod);
            set.rule(
                Table::Filter,
                POLICIES,
                format!("{match_pod} -m comment --comment \"{} {direction:?}\" -j {chain}", pod.pod),
            );
            for rule in rules {
                render_rule(&mut set, &mut sets, &chain, side, rule);
            }
            let label = comment(&format!("{} {direction:?} not allowed by policy", pod.pod));
            set.rule(Table::Filter, &chain, format!("-m comment --comment \"{label}\" -j REJECT"));
        }
    }
    (set, sets)
}

fn render_rule(set: &mut Ruleset, sets: &mut Sets, chain: &str, side: &str, rule: &Rule) {
    // Each peer group is its own set: any of them lets the traffic through.
    let matches: Vec<String> = match &rule.peers {
        None => vec![String::new()],
        Some(groups) => groups
            .iter()
            .enumerate()
            .map(|(index, peers)| {
                let name = hashed(SET_PREFIX, &format!("{}/{index}", rule.id));
                let members = peers.networks.iter().filter(|n| n.addr().is_ipv4()).flat_map(|n| storable(*n)).collect();
                let except = peers.except.iter().filter(|n| n.addr().is_ipv4()).copied().collect();
                sets.insert(name.clone(), (members, except));
                format!("-m set --match-set {name} {side} ")
            })
            .collect(),
    };
    let label = format!("-m comment --comment \"{}\"", comment(&rule.id));
    for peers in matches {
        if rule.ports.is_empty() {
            set.rule(Table::Filter, chain, format!("{peers}{label} -j RETURN"));
        }
        for port in &rule.ports {
            let protocol = port.protocol.to_ascii_lowercase();
            let ports = match port.ports {
                None => String::new(),
                Some((first, last)) if first == last => format!(" -m {protocol} --dport {first}"),
                Some((first, last)) => format!(" -m {protocol} --dport {first}:{last}"),
            };
            set.rule(Table::Filter, chain, format!("{peers}-p {protocol}{ports} {label} -j RETURN"));
        }
    }
}

/// hash:net cannot hold a /0: it is stored as its two halves.
fn storable(network: IpNet) -> Vec<IpNet> {
    match network.prefix_len() {
        0 => network.subnets(1).map(|halves| halves.collect()).unwrap_or_default(),
        _ => vec![network],
    }
}

/// The `ipset restore` text that makes each set hold exactly its members, swapped in whole.
pub fn ipset_payload(sets: &Sets) -> String {
    let mut text = String::new();
    for (name, (members, except)) in sets {
        let temporary = format!("{name}-T");
        let _ = writeln!(text, "create {name} hash:net family inet -exist");
        let _ = writeln!(text, "create {temporary} hash:net family inet -exist");
        let _ = writeln!(text, "flush {temporary}");
        for member in members {
            let _ = writeln!(text, "add {temporary} {member} -exist");
        }
        for excluded in except {
            let _ = writeln!(text, "add {temporary} {excluded} nomatch -exist");
        }
        let _ = writeln!(text, "swap {temporary} {name}");
        let _ = writeln!(text, "destroy {temporary}");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netpol::model::{Peers, PortRange};

    fn web(ingress: Option<Vec<Rule>>) -> Isolated {
        Isolated { pod: "shop/web".into(), ip: "10.42.0.5".parse().unwrap(), ingress, egress: None }
    }

    #[test]
    fn an_isolated_pod_gets_a_chain_that_returns_what_its_rules_allow_and_rejects_the_rest() {
        let rule = Rule {
            id: "shop/allow/ingress/0".into(),
            peers: Some(vec![Peers {
                networks: vec!["10.42.1.5/32".parse().unwrap(), "0.0.0.0/0".parse().unwrap()],
                except: vec!["10.0.0.0/8".parse().unwrap()],
            }]),
            ports: vec![
                PortRange { protocol: "TCP".into(), ports: Some((8080, 8080)) },
                PortRange { protocol: "UDP".into(), ports: Some((1000, 2000)) },
            ],
        };
        let (set, sets) = render(&[web(Some(vec![rule]))]);
        let jumps = set.rules(Table::Filter, POLICIES).unwrap();
        assert!(jumps[0].contains("ESTABLISHED") && jumps[0].ends_with("-j RETURN"));
        assert!(jumps[1].starts_with("-d 10.42.0.5/32") && jumps[1].contains("-j TUG-PODI-"));
        let chain = jumps[1].rsplit(' ').next().unwrap();
        let rules = set.rules(Table::Filter, chain).unwrap();
        let (name, (members, except)) = sets.iter().next().unwrap();
        assert_eq!(except, &["10.0.0.0/8".parse::<IpNet>().unwrap()]);
        assert!(
            rules[0].starts_with(&format!("-m set --match-set {name} src -p tcp -m tcp --dport 8080")),
            "{}",
            rules[0]
        );
        assert!(rules[1].contains("-p udp -m udp --dport 1000:2000"), "{}", rules[1]);
        assert!(rules[2].ends_with("-j REJECT"));
        let members: Vec<String> = members.iter().map(|m| m.to_string()).collect();
        assert_eq!(members, ["10.42.1.5/32", "0.0.0.0/1", "128.0.0.0/1"]);
        let payload = ipset_payload(&sets);
        assert!(payload.contains(&format!("add {name}-T 10.0.0.0/8 nomatch")), "{payload}");
        assert!(payload.contains(&format!("swap {name}-T {name}")));
        assert!(set.chain_names(Table::Filter).all(owns));
    }

    #[test]
    fn a_pod_isolated_without_rules_rejects_everything() {
        let (set, sets) = render(&[web(Some(vec![]))]);
        let chain = set.rules(Table::Filter, POLICIES).unwrap()[1].rsplit(' ').next().unwrap().to_string();
        assert_eq!(set.rules(Table::Filter, &chain).unwrap().len(), 1);
        assert!(sets.is_empty());
        let (open, _) = render(&[web(None)]);
        assert_eq!(open.rules(Table::Filter, POLICIES).unwrap().len(), 1, "not isolated: no jump");
    }
}
