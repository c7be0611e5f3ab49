//! The pod network's own iptables rules (as flannel's): pods' traffic to outside the cluster leaves
//! masqueraded as the node, traffic between pods keeps its addresses, and the host's traffic to
//! other nodes' pods is masqueraded so their replies find the way back; forwarding to and from pods
//! is accepted even where the FORWARD policy drops.

use ipnet::IpNet;

use crate::iptables::{Iptables, IptablesError, Ruleset, Table};

const POSTROUTING: &str = "TUG-NET-POSTRTG";
const FORWARD: &str = "TUG-NET-FWD";

/// Whether the pod network owns the chain.
pub fn owns(chain: &str) -> bool {
    chain.starts_with("TUG-NET-")
}

/// The chains for a node whose pods use `pod_cidr` inside the cluster's `cluster_cidr`.
pub fn render(cluster_cidr: IpNet, pod_cidr: IpNet) -> Ruleset {
    let mut set = Ruleset::default();
    let rule = |set: &mut Ruleset, rule: String| set.rule(Table::Nat, POSTROUTING, rule);
    let multicast = if cluster_cidr.addr().is_ipv4() { "224.0.0.0/4" } else { "ff00::/8" };
    rule(&mut set, format!("-m mark --mark {0}/{0} -j RETURN", crate::proxy::render::MASQUERADE_MARK));
    rule(&mut set, format!("-s {pod_cidr} -d {cluster_cidr} -m comment --comment \"tug pod to pod\" -j RETURN"));
    rule(&mut set, format!("-s {cluster_cidr} -d {pod_cidr} -j RETURN"));
    rule(&mut set, format!("! -s {cluster_cidr} -d {pod_cidr} -j RETURN"));
    rule(
        &mut set,
        format!(
            "-s {cluster_cidr} ! -d {multicast} -m comment --comment \"tug pod egress\" -j MASQUERADE --random-fully"
        ),
    );
    rule(&mut set, format!("! -s {cluster_cidr} -d {cluster_cidr} -j MASQUERADE --random-fully"));
    set.rule(Table::Filter, FORWARD, format!("-s {cluster_cidr} -m comment --comment \"tug pod network\" -j ACCEPT"));
    set.rule(Table::Filter, FORWARD, format!("-d {cluster_cidr} -m comment --comment \"tug pod network\" -j ACCEPT"));
    set
}

/// Applies the chains (replacing whatever the pod network had) and the jumps to them.
pub async fn apply(iptables: &Iptables, rules: &Ruleset) -> Result<(), IptablesError> {
    let applied = iptables.owned_chains(owns).await?;
    iptables.restore(&applied.transition_to(rules)).await?;
    let comment = ["-m", "comment", "--comment", "tug pod network"];
    // Appended, as flannel's: the service proxy's and the policies' rules decide first.
    iptables.ensure_rule(Table::Nat, "POSTROUTING", &[&comment[..], &["-j", POSTROUTING]].concat(), true).await?;
    iptables.ensure_rule(Table::Filter, "FORWARD", &[&comment[..], &["-j", FORWARD]].concat(), true).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_keep_their_addresses_inside_and_are_masqueraded_outside() {
        let set = render("10.42.0.0/16".parse().unwrap(), "10.42.3.0/24".parse().unwrap());
        let nat = set.rules(Table::Nat, POSTROUTING).unwrap();
        let returns: Vec<&String> = nat.iter().filter(|r| r.ends_with("-j RETURN")).collect();
        assert!(returns[1].starts_with("-s 10.42.3.0/24 -d 10.42.0.0/16"), "{returns:?}");
        assert!(nat.iter().any(|r| r.starts_with("-s 10.42.0.0/16 ! -d 224.0.0.0/4") && r.contains("MASQUERADE")));
        assert_eq!(set.rules(Table::Filter, FORWARD).unwrap().len(), 2);
        assert!(set.chain_names(Table::Nat).chain(set.chain_names(Table::Filter)).all(owns));
    }
}
