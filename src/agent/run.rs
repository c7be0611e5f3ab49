//! `tug agent`: join the cluster through the server named on the command line, then run the node agent
//! with a kubelet that talks to the servers over TLS as `system:node:<name>`, until SIGTERM or SIGINT;
//! every connection to a server passes through the agent's load balancer (`super::balancer`).

use std::net::IpAddr;

use anyhow::Context;

use super::balancer::Balancer;
use super::credentials;
use crate::config::AgentRunConfig;
use crate::join::client::ServerUrl;
use crate::kubelet::node::Identity;
use crate::kubelet::server::KubeletTls;

/// Runs the agent until it is told to stop.
pub async fn run(cfg: AgentRunConfig) -> anyhow::Result<()> {
    let agent_dir = cfg.data_dir.join("agent");
    for dir in [&cfg.data_dir, &agent_dir] {
        crate::fsutil::create_private_dir(dir, 0o700).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let name = credentials::node_name(&agent_dir, &cfg.node.name, cfg.with_node_id)?;
    let address = cfg.node.ip.or_else(|| crate::server::host_addresses().into_iter().find(IpAddr::is_ipv4));
    let addresses: Vec<IpAddr> = address.into_iter().collect();
    // Everything reaches the servers through the balancer, the join included.
    let mut balancer = Balancer::start(&agent_dir, &cfg.server.authority(), cfg.lb_server_port).await?;
    let via = ServerUrl { host: balancer.address().ip().to_string(), port: balancer.address().port() };
    let credentials = credentials::obtain(&via, &cfg.token, &agent_dir, &name, &addresses).await?;
    let kubeconfig = kube::config::Kubeconfig::read_from(&credentials.kubeconfig)?;
    let client_config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default()).await?;
    let client = kube::Client::try_from(client_config)?;
    balancer.follow_endpoints(client.clone());
    let agent_config = super::AgentConfig {
        data_dir: cfg.data_dir.clone(),
        node: Identity {
            name,
            address,
            external_address: cfg.node.external_ip,
            labels: cfg.node.labels.clone(),
            data_dir: cfg.data_dir.clone(),
            cluster_domain: credentials.network.cluster_domain.clone(),
            cluster_dns: credentials.network.cluster_dns,
            resolv_conf: cfg.node.resolv_conf.clone(),
        },
        network: credentials.network.clone(),
        container_runtime_endpoint: cfg.node.container_runtime_endpoint.clone(),
        registries: cfg.node.registries.clone(),
        log_rotation: cfg.node.log_rotation,
        kubelet_tls: KubeletTls {
            ca_pem: credentials.ca_pem,
            cert_pem: credentials.serving.cert_pem,
            key_pem: credentials.serving.key_pem,
        },
    };
    let agent = super::Agent::start(agent_config, client).await?;
    crate::lifecycle::notify_ready("serving");
    crate::lifecycle::until_stopped().await?;
    crate::lifecycle::stop_within(agent.stop()).await;
    Ok(())
}
