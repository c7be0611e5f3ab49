//! Tests of flag, environment and config-file precedence and of validation.

use super::*;
use crate::cli::Command;

fn server(argv: &[&str]) -> Result<ServerConfig, String> {
    let argv = std::iter::once("tug").chain(argv.iter().copied()).map(OsString::from).collect();
    match parse_cli(argv).map_err(|e| e.to_string())?.command {
        Command::Server(args) => ServerConfig::from_args(*args).map_err(|e| e.to_string()),
        _ => Err("not a server".into()),
    }
}

fn with_config(yaml: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, yaml).expect("write config");
    (dir, path.display().to_string())
}

#[test]
fn defaults_match_k3s() {
    let cfg = server(&["server", "--config", "/nonexistent-default-is-optional"]);
    // an explicit config path that does not exist is an error
    assert!(cfg.unwrap_err().contains("/nonexistent-default-is-optional"));
    let (_dir, path) = with_config("");
    let cfg = server(&["server", "-c", &path]).expect("config");
    assert_eq!(cfg.https_listen_port, 6443);
    assert_eq!(cfg.cluster_cidr.to_string(), "10.42.0.0/16");
    assert_eq!(cfg.service_cidr.to_string(), "10.43.0.0/16");
    assert_eq!(cfg.cluster_dns.to_string(), "10.43.0.10");
    assert_eq!(cfg.cluster_domain, "cluster.local");
    assert_eq!(cfg.kubeconfig_mode, 0o600);
    assert_eq!(cfg.compaction.keep_revisions, 1000);
    // etcd's defaults
    assert_eq!(cfg.raft_timing.heartbeat, Duration::from_millis(100));
    assert_eq!(cfg.raft_timing.election_timeout, Duration::from_secs(1));
}

#[test]
fn raft_flags_are_checked() {
    let (_dir, path) = with_config("raft-heartbeat-interval: 300ms\nraft-election-timeout: 3s\n");
    let cfg = server(&["server", "-c", &path]).expect("config");
    assert_eq!(cfg.raft_timing.heartbeat, Duration::from_millis(300));
    assert_eq!(cfg.raft_timing.election_timeout, Duration::from_secs(3));
    let err = server(&["server", "-c", &path, "--raft-election-timeout", "1s"]).unwrap_err();
    assert!(
        err.contains("--raft-election-timeout \"1s\"") && err.contains("five heartbeat intervals (1s 500ms)"),
        "{err}"
    );
    assert_eq!(cfg.raft_snapshot_bytes, 64 << 20);
    let err = server(&["server", "-c", &path, "--raft-snapshot-bytes", "512Ki"]).unwrap_err();
    assert!(err.contains("--raft-snapshot-bytes \"512Ki\": want a size of at least 1Mi"), "{err}");
    let err = server(&["server", "-c", &path, "--raft-heartbeat-interval", "0s"]).unwrap_err();
    assert!(err.contains("--raft-heartbeat-interval \"0s\": must be at least 1ms"), "{err}");
}

#[test]
fn config_file_sets_flags_and_command_line_wins() {
    let (_dir, path) = with_config("https-listen-port: 7443\ntls-san: [a.example, 10.0.0.1]\ndisable-agent: true\n");
    let cfg = server(&["server", "-c", &path]).expect("config");
    assert_eq!(cfg.https_listen_port, 7443);
    assert_eq!(cfg.tls_sans, ["a.example", "10.0.0.1"]);
    assert!(cfg.disable_agent);
    let cfg = server(&["server", "-c", &path, "--https-listen-port", "8443"]).expect("config");
    assert_eq!(cfg.https_listen_port, 8443);
}

#[test]
fn bad_input_names_the_problem() {
    let (_dir, path) = with_config("no-such-flag: 1\n");
    assert!(server(&["server", "-c", &path]).unwrap_err().contains("unknown key \"no-such-flag\""));
    let (_dir, path) = with_config("- a list\n");
    assert!(server(&["server", "-c", &path]).unwrap_err().contains("mapping"));
    let (_dir, path) = with_config("");
    let err = server(&["server", "-c", &path, "--cluster-dns", "10.99.0.10"]).unwrap_err();
    assert!(err.contains("--cluster-dns") && err.contains("service-cidr"), "{err}");
    let err = server(&["server", "-c", &path, "--cluster-cidr", "10.42.0.1/16"]).unwrap_err();
    assert!(err.contains("host bits"), "{err}");
    let err = server(&["server", "-c", &path, "--write-kubeconfig-mode", "999"]).unwrap_err();
    assert!(err.contains("write-kubeconfig-mode"), "{err}");
    assert!(server(&["server", "--https-listen-port", "notaport"]).is_err());
}

fn agent(argv: &[&str]) -> Result<AgentRunConfig, String> {
    let (_dir, path) = with_config("");
    let argv = ["tug", "agent", "-c", &path, "--node-name", "edge-1"].into_iter().chain(argv.iter().copied());
    match parse_cli(argv.map(OsString::from).collect()).map_err(|e| e.to_string())?.command {
        Command::Agent(args) => AgentRunConfig::from_args(args).map_err(|e| e.to_string()),
        _ => Err("not an agent".into()),
    }
}

#[test]
fn an_agent_needs_a_server_url_and_a_token_from_the_flag_or_a_file() {
    let hash = "a".repeat(64);
    let full = format!("K10{hash}::server:s3cret");
    let cfg = agent(&["--server", "https://10.0.0.1:6443", "--token", &full]).expect("config");
    assert_eq!((cfg.server.to_string(), cfg.token.secret.as_str()), ("https://10.0.0.1:6443".into(), "s3cret"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, format!("{full}\n")).unwrap();
    let cfg = agent(&["--server", "https://a.example", "--token-file", file.to_str().unwrap()]).expect("config");
    assert_eq!(cfg.token.ca_hash.as_deref(), Some(hash.as_str()));

    let err = agent(&["--token", &full]).unwrap_err();
    assert!(err.contains("--server"), "{err}");
    let err = agent(&["--server", "http://10.0.0.1:6443", "--token", &full]).unwrap_err();
    assert!(err.contains("https://"), "{err}");
    let err = agent(&["--server", "https://10.0.0.1"]).unwrap_err();
    assert!(err.contains("--token"), "{err}");
    let err = agent(&["--server", "https://10.0.0.1", "--token", "K10abc::server:s3cret"]).unwrap_err();
    assert!(err.contains("malformed") && !err.contains("s3cret"), "the secret is not echoed: {err}");
    let err = agent(&["--server", "https://10.0.0.1", "--token-file", "/nonexistent"]).unwrap_err();
    assert!(err.contains("/nonexistent"), "{err}");
}

#[test]
fn the_network_backend_and_disabled_components_are_checked() {
    let (_dir, path) = with_config("");
    let cfg = server(&["server", "-c", &path]).expect("defaults");
    let network = cfg.cluster_network();
    assert_eq!(network.backend, crate::network::Backend::Vxlan);
    assert!(network.dns && network.service_lb);
    let cfg =
        server(&["server", "-c", &path, "--network-backend", "host-gw", "--disable", "servicelb,coredns"]).unwrap();
    let network = cfg.cluster_network();
    assert_eq!(network.backend, crate::network::Backend::HostGw);
    assert!(!network.dns && !network.service_lb);
    let err = server(&["server", "-c", &path, "--network-backend", "wireguard"]).unwrap_err();
    assert!(err.contains("--network-backend") && err.contains("vxlan, host-gw or none"), "{err}");
    let err = server(&["server", "-c", &path, "--disable", "traefik"]).unwrap_err();
    assert!(err.contains("--disable") && err.contains("servicelb, coredns"), "{err}");
    let err = server(&["server", "-c", &path, "--network-iface", "no-such-if0"]).unwrap_err();
    assert!(err.contains("--network-iface"), "{err}");
    let err = server(&["server", "-c", &path, "--resolv-conf", "/no/such/resolv.conf"]).unwrap_err();
    assert!(err.contains("--resolv-conf") && err.contains("no such file"), "{err}");
}
