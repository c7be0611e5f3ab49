//! `tug agent`: join the cluster through the server named on the command line, then run the node agent
//! with a kubelet that talks to the servers over TLS as `system:node:<name>`, until SIGTERM or SIGINT;
//! every connection to a server passes through the agent's load balancer (`super::balancer`). The
//! kubelet's certificates are renewed while it runs (`super::renewal`).

use std::net::IpAddr;

use anyhow::Context;

use super::balancer::Balancer;
use super::{credentials, renewal};
use crate::config::AgentRunConfig;
use crate::join::client::ServerUrl;
use crate::kubelet::node::Identity;
use crate::kubelet::server::KubeletTls;
use crate::pki::LiveIdentity;

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
    let client_identity = LiveIdentity::from_pem(&credentials.client.cert_pem, &credentials.client.key_pem)?;
    let serving_identity = LiveIdentity::from_pem(&credentials.serving.cert_pem, &credentials.serving.key_pem)?;
    let client = super::api_client::client(&via, &credentials.ca_pem, client_identity.clone())?;
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
        kubelet_tls: KubeletTls { ca_pem: credentials.ca_pem, serving: serving_identity.clone() },
    };
    let joined = credentials::Renewal {
        server: via,
        token: cfg.token.clone(),
        agent_dir,
        name: agent_config.node.name.clone(),
        addresses,
        client: client_identity,
        serving: serving_identity,
    };
    let renewer = renewal::Renewer::Joined(joined);
    let node = agent_config.node.name.clone();
    let renewing = tokio::spawn(renewal::run(renewer, cfg.certificate_check_interval, client.clone(), node));
    let agent = super::Agent::start(agent_config, client).await?;
    crate::lifecycle::notify_ready("serving");
    crate::lifecycle::until_stopped().await?;
    renewing.abort();
    crate::lifecycle::stop_within(agent.stop()).await;
    Ok(())
}
