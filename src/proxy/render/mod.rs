//! The pure renderer: Service ports with their endpoints → the iptables chains that implement them,
//! as kube-proxy's iptables mode lays them out (tug's chains carry `TUG-` where kube-proxy's carry
//! `KUBE-`). Traffic to a cluster IP jumps to the port's `SVC` chain (every endpoint) or, with
//! internalTrafficPolicy Local, its `SVL` chain (this node's endpoints); traffic from outside (node
//! port, external IPs, load-balancer IPs) goes through its `EXT` chain, which masquerades it unless
//! externalTrafficPolicy is Local; each endpoint has a `SEP` chain that DNATs to it. Ports without
//! endpoints are rejected in the filter table, ports without local endpoints dropped.

use std::net::IpAddr;

use ipnet::IpNet;

use super::model::{Endpoint, PortId, ServicePort};
use crate::iptables::{Ruleset, Table};

/// The mark on packets to be masqueraded on the way out (kube-proxy's bit).
pub const MASQUERADE_MARK: &str = "0x4000";

pub const SERVICES: &str = "TUG-SERVICES";
pub const EXTERNAL_SERVICES: &str = "TUG-EXTERNAL-SERVICES";
pub const NODE_PORTS: &str = "TUG-NODEPORTS";
pub const POSTROUTING: &str = "TUG-POSTROUTING";
pub const FORWARD: &str = "TUG-FORWARD";
const MARK_MASQ: &str = "TUG-MARK-MASQ";

/// The prefixes of the chains made per Service port and endpoint.
pub const PER_SERVICE_PREFIXES: [&str; 4] = ["TUG-SVC-", "TUG-SVL-", "TUG-EXT-", "TUG-SEP-"];

/// Whether the proxy owns the chain (the static ones and the per-Service ones).
pub fn owns(chain: &str) -> bool {
    [SERVICES, EXTERNAL_SERVICES, NODE_PORTS, POSTROUTING, FORWARD, MARK_MASQ].contains(&chain)
        || PER_SERVICE_PREFIXES.iter().any(|prefix| chain.starts_with(prefix))
}

/// The jumps from the built-in chains into the proxy's chains: table, built-in chain, rule.
pub const JUMPS: [(Table, &str, &[&str]); 8] = [
    (Table::Nat, "PREROUTING", &["-m", "comment", "--comment", "tug service portals", "-j", SERVICES]),
    (Table::Nat, "OUTPUT", &["-m", "comment", "--comment", "tug service portals", "-j", SERVICES]),
    (Table::Nat, "POSTROUTING", &["-m", "comment", "--comment", "tug postrouting rules", "-j", POSTROUTING]),
    (Table::Filter, "INPUT", &NEW_EXTERNAL),
    (Table::Filter, "FORWARD", &NEW_EXTERNAL),
    (Table::Filter, "FORWARD", &NEW_SERVICES),
    (Table::Filter, "OUTPUT", &NEW_SERVICES),
    (Table::Filter, "FORWARD", &["-m", "comment", "--comment", "tug forwarding rules", "-j", FORWARD]),
];
const NEW_SERVICES: [&str; 10] =
    ["-m", "conntrack", "--ctstate", "NEW", "-m", "comment", "--comment", "tug service portals", "-j", SERVICES];
const NEW_EXTERNAL: [&str; 10] = [
    "-m",
    "conntrack",
    "--ctstate",
    "NEW",
    "-m",
    "comment",
    "--comment",
    "tug externally-visible service portals",
    "-j",
    EXTERNAL_SERVICES,
];

/// What the rules depend on besides the Services.
#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    /// The pods' addresses: traffic from elsewhere to a cluster IP is masqueraded.
    pub cluster_cidr: IpNet,
}

/// The whole ruleset for `ports` on `node` (IPv4 addresses; IPv6 ones are for ip6tables).
pub fn render(node: &Node, ports: &[ServicePort]) -> Ruleset {
    let mut set = Ruleset::default();
    static_chains(&mut set);
    for port in ports {
        render_port(&mut set, node, port);
    }
    set.rule(
        Table::Nat,
        SERVICES,
        format!(
            "-m comment --comment \"tug service nodeports; this must be the last rule in this chain\" \
             -m addrtype --dst-type LOCAL -j {NODE_PORTS}"
        ),
    );
    set
}

fn static_chains(set: &mut Ruleset) {
    set.chain(Table::Nat, SERVICES);
    set.chain(Table::Nat, NODE_PORTS);
    set.rule(Table::Nat, MARK_MASQ, format!("-j MARK --or-mark {MASQUERADE_MARK}"));
    set.rule(Table::Nat, POSTROUTING, format!("-m mark ! --mark {MASQUERADE_MARK}/{MASQUERADE_MARK} -j RETURN"));
    set.rule(Table::Nat, POSTROUTING, format!("-j MARK --xor-mark {MASQUERADE_MARK}"));
    set.rule(
        Table::Nat,
        POSTROUTING,
        "-m comment --comment \"tug service traffic requiring SNAT\" -j MASQUERADE --random-fully",
    );
    set.chain(Table::Filter, SERVICES);
    set.chain(Table::Filter, EXTERNAL_SERVICES);
    set.rule(Table::Filter, FORWARD, "-m conntrack --ctstate INVALID -j DROP");
    set.rule(
        Table::Filter,
        FORWARD,
        format!("-m comment --comment \"tug forwarding rules\" -m mark --mark {MASQUERADE_MARK}/{MASQUERADE_MARK} -j ACCEPT"),
    );
    set.rule(Table::Filter, FORWARD, "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT");
}

/// `TUG-<kind>-` and a hash of `key`.
fn chain_name(kind: &str, key: &str) -> String {
    crate::iptables::hashed_name(&format!("TUG-{kind}-"), key)
}

fn port_key(id: &PortId) -> String {
    format!("{id}/{}", id.protocol.iptables())
}

fn endpoint_chain(id: &PortId, endpoint: &Endpoint) -> String {
    chain_name("SEP", &format!("{}/{}:{}", port_key(id), endpoint.ip, endpoint.port))
}

fn host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{v4}/32"),
        IpAddr::V6(v6) => format!("{v6}/128"),
    }
}

fn render_port(set: &mut Ruleset, node: &Node, port: &ServicePort) {
    let id = &port.id;
    let protocol = port.id.protocol.iptables();
    let matches = |comment: &str, port_number: u16| {
        format!("-p {protocol} -m comment --comment \"{id} {comment}\" -m {protocol} --dport {port_number}")
    };
    let v4 = |ips: &[IpAddr]| ips.iter().copied().filter(IpAddr::is_ipv4).collect::<Vec<_>>();
    let local: Vec<&Endpoint> =
        port.endpoints.iter().filter(|e| e.node.as_deref() == Some(node.name.as_str())).collect();
    let all: Vec<&Endpoint> = port.endpoints.iter().collect();
    let cluster_chain = (!all.is_empty()).then(|| chain_name("SVC", &port_key(id)));
    let local_chain =
        ((port.internal_local || port.external_local) && !local.is_empty()).then(|| chain_name("SVL", &port_key(id)));
    let internal_chain = if port.internal_local { local_chain.clone() } else { cluster_chain.clone() };
    let external_chain = if port.external_local { local_chain.clone() } else { cluster_chain.clone() };
    // Why traffic that finds no chain is refused: no endpoint at all, or none on this node.
    let refusal = |has_chain: bool| match (has_chain, all.is_empty()) {
        (true, _) => None,
        (false, true) => Some(("has no endpoints", "REJECT")),
        (false, false) => Some(("has no local endpoints", "DROP")),
    };

    let cluster_ips = v4(&port.cluster_ips);
    for ip in &cluster_ips {
        let rule = format!("-d {} {}", host(*ip), matches("cluster IP", port.port));
        match (&internal_chain, refusal(internal_chain.is_some())) {
            (Some(chain), _) => set.rule(Table::Nat, SERVICES, format!("{rule} -j {chain}")),
            (None, Some((why, target))) => {
                set.rule(Table::Filter, SERVICES, format!("-d {} {} -j {target}", host(*ip), matches(why, port.port)))
            }
            (None, None) => {}
        }
    }

    if let Some(chain) = &cluster_chain {
        for ip in &cluster_ips {
            set.rule(
                Table::Nat,
                chain,
                format!(
                    "! -s {} -d {} {} -j {MARK_MASQ}",
                    node.cluster_cidr,
                    host(*ip),
                    matches("cluster IP", port.port)
                ),
            );
        }
        balance(set, chain, port, &all);
    }
    if let Some(chain) = &local_chain {
        balance(set, chain, port, &local);
    }
    for endpoint in &all {
        let chain = endpoint_chain(id, endpoint);
        set.rule(Table::Nat, &chain, format!("-s {} -m comment --comment \"{id}\" -j {MARK_MASQ}", host(endpoint.ip)));
        let affinity = match port.affinity_seconds {
            Some(_) => format!(" -m recent --set --name {chain} --mask 255.255.255.255 --rsource"),
            None => String::new(),
        };
        let to = match endpoint.ip {
            IpAddr::V4(v4) => format!("{v4}:{}", endpoint.port),
            IpAddr::V6(v6) => format!("[{v6}]:{}", endpoint.port),
        };
        set.rule(
            Table::Nat,
            &chain,
            format!(
                "-p {protocol} -m comment --comment \"{id}\"{affinity} -m {protocol} -j DNAT --to-destination {to}"
            ),
        );
    }

    if !port.is_external() {
        return;
    }
    // As kube-proxy: the external chain exists whenever the port has endpoints; with
    // externalTrafficPolicy Local, pods and the node itself still reach every endpoint, and traffic
    // from elsewhere goes only to this node's (none: it falls through and the filter table drops it).
    let external_entry = cluster_chain.as_ref().map(|cluster| {
        let chain = chain_name("EXT", &port_key(id));
        if port.external_local {
            let pod_traffic = format!(
                "-s {} -m comment --comment \"pod traffic for {id} external destinations\" -j {cluster}",
                node.cluster_cidr
            );
            set.rule(Table::Nat, &chain, pod_traffic);
            let local_source = format!(
                "-m comment --comment \"masquerade LOCAL traffic for {id} external destinations\" -m addrtype --src-type LOCAL"
            );
            set.rule(Table::Nat, &chain, format!("{local_source} -j {MARK_MASQ}"));
            set.rule(Table::Nat, &chain, format!("{local_source} -j {cluster}"));
            if let Some(local) = &local_chain {
                set.rule(Table::Nat, &chain, format!("-j {local}"));
            }
        } else {
            set.rule(Table::Nat, &chain, format!("-j {MARK_MASQ}"));
            set.rule(Table::Nat, &chain, format!("-j {cluster}"));
        }
        chain
    });
    let refused = refusal(external_chain.is_some());
    if let Some(node_port) = port.node_port {
        if let Some(chain) = &external_entry {
            set.rule(Table::Nat, NODE_PORTS, format!("{} -j {chain}", matches("node port", node_port)));
        }
        if let Some((why, target)) = refused {
            let rule = format!("-m addrtype --dst-type LOCAL {} -j {target}", matches(why, node_port));
            set.rule(Table::Filter, EXTERNAL_SERVICES, rule);
        }
    }
    let outside = [("external IP", v4(&port.external_ips)), ("load balancer IP", v4(&port.load_balancer_ips))];
    for (kind, ips) in outside {
        for ip in ips {
            if let Some(chain) = &external_entry {
                set.rule(Table::Nat, SERVICES, format!("-d {} {} -j {chain}", host(ip), matches(kind, port.port)));
            }
            if let Some((why, target)) = refused {
                let rule = format!("-d {} {} -j {target}", host(ip), matches(why, port.port));
                set.rule(Table::Filter, EXTERNAL_SERVICES, rule);
            }
        }
    }
}

/// The rules of a policy chain: ClientIP affinity first, then one jump per endpoint, each taken with
/// the probability that spreads new connections evenly.
fn balance(set: &mut Ruleset, chain: &str, port: &ServicePort, endpoints: &[&Endpoint]) {
    let id = &port.id;
    if let Some(seconds) = port.affinity_seconds {
        for endpoint in endpoints {
            let target = endpoint_chain(id, endpoint);
            set.rule(
                Table::Nat,
                chain,
                format!(
                    "-m comment --comment \"{id} -> {}\" -m recent --name {target} --mask 255.255.255.255 \
                     --rcheck --seconds {seconds} --reap -j {target}",
                    endpoint.ip
                ),
            );
        }
    }
    let count = endpoints.len();
    for (index, endpoint) in endpoints.iter().enumerate() {
        let target = endpoint_chain(id, endpoint);
        let comment = format!("-m comment --comment \"{id} -> {}:{}\"", endpoint.ip, endpoint.port);
        if index + 1 < count {
            let probability = 1.0 / (count - index) as f64;
            set.rule(
                Table::Nat,
                chain,
                format!("{comment} -m statistic --mode random --probability {probability:.10} -j {target}"),
            );
        } else {
            set.rule(Table::Nat, chain, format!("{comment} -j {target}"));
        }
    }
}

#[cfg(test)]
mod tests;
