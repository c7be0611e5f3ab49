//! `tug server`: opens the store, makes or loads the certificates, starts the API server on its listener,
//! writes the admin kubeconfig, creates the objects every cluster has, and runs until SIGTERM/SIGINT.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::apiserver::admission::Admission;
use crate::apiserver::rest::{Rest, ServiceNetwork};
use crate::apiserver::{self, serve, ApiState};
use crate::config::ServerConfig;
use crate::controllers::{ControlLoops, Settings};
use crate::store::Store;

mod bootstrap;
mod certificates;
mod cluster;
pub(crate) mod endpoints;
pub mod manifests;
mod members;

/// How long a stopping server tries to take itself out of the `kubernetes` endpoints.
const WITHDRAW_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// The running server's handles, for tests and for the process entry point.
pub struct RunningServer {
    pub port: u16,
    pub state: Arc<ApiState>,
    pub kubeconfig: PathBuf,
    shutdown: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    control_loops: ControlLoops,
    app: axum::Router,
    replication: Arc<crate::replication::Replication>,
    /// The scheduled snapshots' task.
    snapshots: Option<tokio::task::JoinHandle<()>>,
    /// This server's place in the `kubernetes` endpoints, taken out when it stops.
    endpoints: endpoints::ApiServerEndpoints,
    /// The server's own upkeep: its endpoints renewed, deleted servers' membership ended.
    housekeeping: tokio::task::JoinSet<()>,
}

impl RunningServer {
    /// An in-process API client acting as `user`.
    pub fn client_as(&self, user: crate::apiserver::auth::User) -> kube::Client {
        crate::controllers::client::in_process(self.app.clone(), user)
    }

    /// Stops serving and waits for the listener to close.
    pub async fn stop(mut self) {
        self.control_loops.stop();
        // Waited for: a renewal in flight must not bring the Lease back after the withdrawal.
        self.housekeeping.shutdown().await;
        match tokio::time::timeout(WITHDRAW_TIMEOUT, self.endpoints.withdraw()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "cannot take this server out of the kubernetes endpoints"),
            Err(_) => tracing::warn!("cannot take this server out of the kubernetes endpoints in time"),
        }
        if let Some(snapshots) = &self.snapshots {
            snapshots.abort();
        }
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
        self.replication.shutdown().await;
    }
}

/// Addresses of this host's interfaces (loopback excluded), for the serving certificate.
pub(crate) fn host_addresses() -> Vec<IpAddr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return vec![];
    };
    // Not the pod network's own interfaces: their addresses are no way to reach this host.
    let pod_network = |name: &str| {
        name == crate::network::cni::BRIDGE || name == crate::network::VXLAN_DEVICE || name.starts_with("veth")
    };
    let mut ips: Vec<IpAddr> = addrs
        .filter(|a| !pod_network(&a.interface_name))
        .filter_map(|a| a.address)
        .filter_map(|a| {
            a.as_sockaddr_in().map(|s| IpAddr::V4(s.ip())).or_else(|| a.as_sockaddr_in6().map(|s| IpAddr::V6(s.ip())))
        })
        .filter(|ip| !ip.is_loopback() && !matches!(ip, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80))
        .collect();
    ips.sort();
    ips.dedup();
    ips
}

/// The serving certificate's SANs.
fn sans(cfg: &ServerConfig) -> (Vec<String>, Vec<IpAddr>) {
    let mut dns = vec![
        "localhost".to_string(),
        "kubernetes".into(),
        "kubernetes.default".into(),
        "kubernetes.default.svc".into(),
        format!("kubernetes.default.svc.{}", cfg.cluster_domain),
    ];
    if let Ok(host) = hostname::get() {
        let host = host.to_string_lossy().to_ascii_lowercase();
        if !host.is_empty() && crate::core::validation::is_dns1123_subdomain(&host).is_empty() {
            dns.push(host);
        }
    }
    let mut ips = vec![IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST)];
    ips.extend(cfg.service_cidr.hosts().next());
    ips.extend(cfg.advertise_address);
    if !cfg.bind_address.is_unspecified() {
        ips.push(cfg.bind_address);
    }
    ips.extend(host_addresses());
    for san in &cfg.tls_sans {
        match san.parse::<IpAddr>() {
            Ok(ip) => ips.push(ip),
            Err(_) => dns.push(san.to_ascii_lowercase()),
        }
    }
    dns.dedup();
    ips.sort();
    ips.dedup();
    (dns, ips)
}

/// Starts every part of the server; returns once the API is serving and bootstrapped.
pub async fn start(cfg: ServerConfig) -> anyhow::Result<RunningServer> {
    let started = Instant::now();
    crate::fsutil::create_private_dir(&cfg.data_dir, 0o700)
        .with_context(|| format!("cannot create data dir {}", cfg.data_dir.display()))?;
    let server_dir = cfg.data_dir.join("server");
    crate::fsutil::create_private_dir(&server_dir, 0o700)?;
    let (dns, ips) = sans(&cfg);
    cluster::fetch_shared_files(&cfg, &server_dir.join("tls")).await?;
    let tls_files = crate::pki::ensure_server_tls(&server_dir.join("tls"), &dns, &ips)?;
    let db_dir = server_dir.join("db");
    if let Some(reset) = &cfg.cluster_reset {
        if reset.restore.is_none() {
            // The store's contents are kept: first every write the old log committed.
            let store = Store::open(&db_dir.join("state.db"))?;
            crate::replication::apply_committed_log(&store, &db_dir).await?;
        }
        cluster::reset_before_start(&db_dir, reset.restore.as_deref())?;
    }
    let store = Store::open(&db_dir.join("state.db"))?;
    let listener = TcpListener::bind(SocketAddr::new(cfg.bind_address, cfg.https_listen_port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", cfg.bind_address, cfg.https_listen_port))?;
    let port = listener.local_addr()?.port();
    // --advertise-address, else the address it is bound to, else (bound to all) the node's or the
    // host's; as kube-apiserver, except that a loopback bind address is advertised as is (a cluster on
    // one host). The `kubernetes` Endpoints and the other servers reach it there.
    let advertise = cfg
        .advertise_address
        .or(Some(cfg.bind_address).filter(|ip| !ip.is_unspecified()))
        .or(cfg.node.ip.filter(|ip| !ip.is_loopback()))
        .or_else(|| host_addresses().into_iter().find(IpAddr::is_ipv4))
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let peer_address = crate::core::net::join_host_port(&advertise.to_string(), port);
    let identities = certificates::Identities::new(&tls_files)?;
    let replication =
        cluster::start_replication(&store, &cfg, &db_dir, peer_address, &tls_files, identities.peer.clone()).await?;
    let network = ServiceNetwork::new(cfg.service_cidr, cfg.node_port_range.clone());
    let rest = Rest::new(store.clone(), Admission, network);
    let service_key = crate::pki::service_account_key(&tls_files.dir)?;
    let tokens = apiserver::tokens::TokenAuthority::new(&service_key, &cfg.cluster_domain);
    let state = ApiState::new(rest, SocketAddr::new(advertise, port).to_string(), tokens);
    let tls = serve::tls_config_with(&tls_files.ca_cert_pem, identities.serving.clone())?;
    let (shutdown, mut shutdown_rx) = tokio::sync::watch::channel(false);
    match apiserver::node_proxy::KubeletClient::new(&tls_files.ca_cert_pem, identities.kubelet_client.clone()) {
        Ok(client) => {
            let _ = state.kubelet.set(client);
        }
        Err(error) => tracing::error!(%error, "no kubelet client: pods/log will not work"),
    }
    let app = apiserver::router(state.clone());
    let loops_app = app.clone();
    let agent_app = app.clone();
    let token = crate::join::rotation::ServerToken::new(crate::join::server::ensure_server_token(
        &server_dir,
        &tls_files.ca_cert_pem,
        cfg.token.as_ref(),
    )?);
    let join = crate::join::server::JoinService {
        authority: crate::pki::cluster_authority(&tls_files.dir)?,
        token: token.clone(),
        network: cfg.cluster_network(),
        client: crate::controllers::client::in_process(app.clone(), crate::controllers::client::supervisor()),
        tls_dir: tls_files.dir.clone(),
    };
    let app = crate::join::server::routes(Arc::new(join))
        .merge(crate::replication::routes(replication.clone()))
        .merge(crate::replication::admin_routes(replication.clone()))
        .merge(app);
    let task = tokio::spawn(async move {
        serve::serve(listener, tls, app, async move {
            let _ = shutdown_rx.wait_for(|stop| *stop).await;
        })
        .await
    });
    let local = match cfg.bind_address {
        IpAddr::V6(v6) if !v6.is_unspecified() => format!("[{v6}]"),
        IpAddr::V4(v4) if !v4.is_unspecified() => v4.to_string(),
        _ => "127.0.0.1".to_string(),
    };
    let kubeconfig = certificates::AdminKubeconfig {
        path: cfg.kubeconfig_path.clone(),
        server_url: format!("https://{local}:{port}"),
        mode: cfg.kubeconfig_mode,
    };
    kubeconfig.write(&tls_files)?;
    cluster::become_member(&replication, &store, &cfg, &tls_files.ca_cert_pem).await?;
    let cluster_network = cfg.cluster_network();
    let cluster_dns = cluster_network.dns.then_some(cfg.cluster_dns);
    bootstrap::run(&state.rest, cfg.service_cidr, port, cluster_dns)
        .await
        .map_err(|e| anyhow::anyhow!("creating the cluster's default objects: {}", e.message))?;
    let identity = crate::controllers::leader::identity(&server_dir)?;
    let supervisor =
        || crate::controllers::client::in_process(loops_app.clone(), crate::controllers::client::supervisor());
    let mut housekeeping = tokio::task::JoinSet::new();
    // A rotated server token wins over the one this server started with (an old --token).
    let follower = crate::join::rotation::Follower {
        client: supervisor(),
        token,
        server_dir: server_dir.clone(),
        ca_pem: tls_files.ca_cert_pem.clone(),
    };
    if let Err(error) = follower.adopt().await {
        tracing::warn!(%error, "cannot read the cluster's server token");
    }
    housekeeping.spawn(follower.follow());
    let address = SocketAddr::new(advertise, port);
    let endpoints = endpoints::ApiServerEndpoints::new(supervisor(), replication.id(), identity.clone(), address);
    housekeeping.spawn(endpoints.clone().start().await);
    housekeeping.spawn(members::remove_deleted_servers(supervisor(), replication.clone()));
    housekeeping.spawn(manifests::run(supervisor(), server_dir.join("manifests")));
    housekeeping.spawn(crate::join::bootstrap::clean_expired(supervisor()));
    let upkeep = certificates::Upkeep {
        tls: tls_files.clone(),
        dns_sans: dns,
        ip_sans: ips,
        identities,
        kubeconfig,
        every: cfg.certificate_check_interval,
    };
    housekeeping.spawn(certificates::run(upkeep, supervisor()));
    if !cfg.disable_agent {
        housekeeping.spawn(members::mark_own_node(supervisor(), cfg.node.name.clone(), replication.id()));
    }
    let settings = Settings {
        identity,
        ca_pem: tls_files.ca_cert_pem.clone(),
        network: cluster_network,
        node_monitor_grace_period: cfg.node_monitor_grace_period,
    };
    let control_loops = ControlLoops::start(loops_app, settings);
    state.set_ready();
    store.spawn_compactor(cfg.compaction);
    let snapshots = cfg
        .snapshots
        .clone()
        .map(|schedule| crate::snapshot::spawn_schedule(cfg.data_dir.clone(), schedule, cfg.node.name.clone()));
    tracing::info!(port, kubeconfig = %cfg.kubeconfig_path.display(), elapsed_ms = started.elapsed().as_millis() as u64, "tug server is ready");
    Ok(RunningServer {
        port,
        state,
        kubeconfig: cfg.kubeconfig_path.clone(),
        shutdown,
        task,
        control_loops,
        app: agent_app,
        replication,
        snapshots,
        endpoints,
        housekeeping,
    })
}

/// Runs the server until SIGTERM or SIGINT.
pub async fn run(cfg: ServerConfig) -> anyhow::Result<()> {
    let server = start(cfg.clone()).await?;
    if cfg.cluster_reset.is_some() {
        server.stop().await;
        tracing::info!("the cluster's membership was reset to this server alone; restart without --cluster-reset");
        return Ok(());
    }
    let agent = match cfg.disable_agent {
        true => None,
        false => {
            let client = server.client_as(crate::apiserver::auth::User {
                name: format!("system:node:{}", cfg.node.name),
                groups: vec!["system:nodes".into(), "system:authenticated".into()],
                ..Default::default()
            });
            let (config, own_node) = agent_config(&cfg)?;
            let renewer = crate::agent::renewal::Renewer::OwnNode(own_node);
            let every = cfg.certificate_check_interval;
            let renewing =
                tokio::spawn(crate::agent::renewal::run(renewer, every, client.clone(), cfg.node.name.clone()));
            let agent = crate::agent::Agent::start(config, client).await?;
            Some((agent, renewing))
        }
    };
    crate::lifecycle::notify_ready("serving");
    crate::lifecycle::until_stopped().await?;
    crate::lifecycle::stop_within(async move {
        if let Some((agent, renewing)) = agent {
            renewing.abort();
            agent.stop().await;
        }
        server.stop().await;
    })
    .await;
    Ok(())
}

/// The in-process agent's settings: the node's flags, its address the advertised one by default, its
/// kubelet's serving certificate issued here (and renewed here, as the second value says).
fn agent_config(cfg: &ServerConfig) -> anyhow::Result<(crate::agent::AgentConfig, crate::agent::renewal::OwnNode)> {
    let address = cfg.node.ip.or(cfg.advertise_address).or_else(|| host_addresses().into_iter().find(IpAddr::is_ipv4));
    let serving = crate::agent::renewal::OwnNodeServing {
        ca_dir: cfg.data_dir.join("server").join("tls"),
        dir: cfg.data_dir.join("agent").join("tls"),
        name: cfg.node.name.clone(),
        ips: address.into_iter().chain([IpAddr::V4(Ipv4Addr::LOCALHOST)]).collect(),
    };
    let (leaf, ca_pem) = serving.ensure()?;
    let identity = crate::pki::LiveIdentity::from_pem(&leaf.cert_pem, &leaf.key_pem)?;
    let own_node = crate::agent::renewal::OwnNode { serving, current: leaf.cert_pem, identity: identity.clone() };
    let mut labels =
        std::collections::BTreeMap::from([("node-role.kubernetes.io/control-plane".to_string(), "true".to_string())]);
    labels.extend(cfg.node.labels.clone());
    let config = crate::agent::AgentConfig {
        data_dir: cfg.data_dir.clone(),
        node: crate::kubelet::node::Identity {
            name: cfg.node.name.clone(),
            address,
            external_address: cfg.node.external_ip,
            labels,
            data_dir: cfg.data_dir.clone(),
            cluster_domain: cfg.cluster_domain.clone(),
            cluster_dns: cfg.cluster_dns,
            resolv_conf: cfg.node.resolv_conf.clone(),
        },
        network: cfg.cluster_network(),
        container_runtime_endpoint: cfg.node.container_runtime_endpoint.clone(),
        registries: cfg.node.registries.clone(),
        log_rotation: cfg.node.log_rotation,
        kubelet_tls: crate::kubelet::server::KubeletTls { ca_pem, serving: identity },
    };
    Ok((config, own_node))
}
