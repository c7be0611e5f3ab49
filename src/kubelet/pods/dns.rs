//! A pod's resolv.conf, as upstream's kubelet makes it: dnsPolicy ClusterFirst (the default) asks the
//! cluster DNS with the pod's namespace, `svc` and the cluster domain searched first and ndots:5;
//! Default (and ClusterFirst with host networking) takes the node's resolv.conf; None takes only the
//! pod's dnsConfig, which the other policies merge in (nameservers and search domains appended,
//! options overriding by name). The node's resolv.conf is `--resolv-conf`, else /etc/resolv.conf, or
//! systemd-resolved's real one when /etc/resolv.conf names only its loopback stub, which pods cannot
//! reach. The cluster DNS forwards to the same servers.

use std::net::IpAddr;
use std::path::Path;

use k8s_cri::v1::DnsConfig;
use k8s_openapi::api::core::v1::Pod;

/// Upstream's limits on what a resolver reads.
const MAX_NAMESERVERS: usize = 3;
const MAX_SEARCHES: usize = 32;

/// The node's resolver settings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resolv {
    pub nameservers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

impl Resolv {
    pub fn parse(text: &str) -> Resolv {
        let mut resolv = Resolv::default();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => resolv.nameservers.extend(words.next().map(str::to_string)),
                Some("search" | "domain") => resolv.searches = words.map(str::to_string).collect(),
                Some("options") => resolv.options.extend(words.map(str::to_string)),
                _ => {}
            }
        }
        resolv
    }

    /// The node's: the file given (`--resolv-conf`), else /etc/resolv.conf unless it only names
    /// loopback servers and systemd-resolved's upstream file exists.
    pub fn of_node(given: Option<&Path>) -> Resolv {
        if let Some(path) = given {
            return Resolv::parse(&std::fs::read_to_string(path).unwrap_or_default());
        }
        let etc = Resolv::parse(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default());
        let only_loopback = !etc.nameservers.is_empty()
            && etc.nameservers.iter().all(|ns| ns.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()));
        let resolved = Path::new("/run/systemd/resolve/resolv.conf");
        match only_loopback && resolved.exists() {
            true => Resolv::parse(&std::fs::read_to_string(resolved).unwrap_or_default()),
            false => etc,
        }
    }
}

/// What a pod's DNS is made from.
#[derive(Debug, Clone)]
pub struct PodDns {
    pub cluster_dns: IpAddr,
    pub cluster_domain: String,
    pub node: Resolv,
}

impl PodDns {
    /// The CRI's DnsConfig for `pod`.
    pub fn config(&self, pod: &Pod) -> DnsConfig {
        let spec = pod.spec.as_ref();
        let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
        let policy = spec.and_then(|s| s.dns_policy.as_deref()).unwrap_or("ClusterFirst");
        let mut resolv = match (policy, host_network) {
            ("None", _) => Resolv::default(),
            ("Default", _) | ("ClusterFirst", true) => self.node.clone(),
            _ => {
                let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
                let domain = &self.cluster_domain;
                let mut searches = vec![format!("{namespace}.svc.{domain}"), format!("svc.{domain}"), domain.clone()];
                searches.extend(self.node.searches.iter().cloned());
                Resolv { nameservers: vec![self.cluster_dns.to_string()], searches, options: vec!["ndots:5".into()] }
            }
        };
        if let Some(extra) = spec.and_then(|s| s.dns_config.as_ref()) {
            resolv.nameservers.extend(extra.nameservers.iter().flatten().cloned());
            resolv.searches.extend(extra.searches.iter().flatten().cloned());
            for option in extra.options.iter().flatten() {
                let Some(name) = &option.name else { continue };
                resolv.options.retain(|o| o.split(':').next() != Some(name.as_str()));
                resolv.options.push(match &option.value {
                    Some(value) => format!("{name}:{value}"),
                    None => name.clone(),
                });
            }
        }
        let mut searches: Vec<String> = Vec::new();
        for search in resolv.searches {
            if !searches.contains(&search) {
                searches.push(search);
            }
        }
        resolv.nameservers.dedup();
        resolv.nameservers.truncate(MAX_NAMESERVERS);
        searches.truncate(MAX_SEARCHES);
        DnsConfig { servers: resolv.nameservers, searches, options: resolv.options }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dns() -> PodDns {
        PodDns {
            cluster_dns: "10.43.0.10".parse().unwrap(),
            cluster_domain: "cluster.local".into(),
            node: Resolv::parse("nameserver 192.0.2.53\nsearch lan\noptions edns0\n"),
        }
    }

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "shop"}, "spec": spec})).unwrap()
    }

    #[test]
    fn cluster_first_asks_the_cluster_dns_and_searches_the_namespace_first() {
        let config = dns().config(&pod(json!({"containers": []})));
        assert_eq!(config.servers, ["10.43.0.10"]);
        assert_eq!(config.searches, ["shop.svc.cluster.local", "svc.cluster.local", "cluster.local", "lan"]);
        assert_eq!(config.options, ["ndots:5"]);
    }

    #[test]
    fn default_and_host_network_pods_use_the_nodes_resolver() {
        let default = dns().config(&pod(json!({"containers": [], "dnsPolicy": "Default"})));
        assert_eq!((default.servers, default.searches), (vec!["192.0.2.53".to_string()], vec!["lan".to_string()]));
        let host = dns().config(&pod(json!({"containers": [], "hostNetwork": true})));
        assert_eq!(host.servers, ["192.0.2.53"]);
        let with_net =
            dns().config(&pod(json!({"containers": [], "hostNetwork": true, "dnsPolicy": "ClusterFirstWithHostNet"})));
        assert_eq!(with_net.servers, ["10.43.0.10"]);
    }

    #[test]
    fn none_takes_only_the_pods_dns_config_which_others_merge() {
        let config = dns().config(&pod(json!({"containers": [], "dnsPolicy": "None",
            "dnsConfig": {"nameservers": ["1.1.1.1"], "searches": ["a.example"], "options": [{"name": "ndots", "value": "2"}]}})));
        assert_eq!(
            (config.servers, config.searches, config.options),
            (vec!["1.1.1.1".into()], vec!["a.example".into()], vec!["ndots:2".into()])
        );
        let merged = dns().config(&pod(json!({"containers": [],
            "dnsConfig": {"searches": ["cluster.local", "b.example"], "options": [{"name": "ndots", "value": "1"}, {"name": "rotate"}]}})));
        assert_eq!(
            merged.searches,
            ["shop.svc.cluster.local", "svc.cluster.local", "cluster.local", "lan", "b.example"]
        );
        assert_eq!(merged.options, ["ndots:1", "rotate"]);
    }
}
