//! The edges of the API a user meets: authentication, health and metrics endpoints, request limits,
//! and bad input answered with a Status rather than a crash.

mod common;

use common::{kubectl, kubectls, TugServer};

/// A copy of the admin kubeconfig whose user presents a bearer token tug does not know instead of the
/// client certificate (with no credentials at all kubectl would prompt for a password).
/// The server's kubeconfig with its user's credentials replaced by `user` (YAML).
fn kubeconfig_as(server: &TugServer, name: &str, user: serde_json::Value) -> std::path::PathBuf {
    let text = std::fs::read_to_string(server.kubeconfig()).expect("kubeconfig");
    let mut doc: serde_json::Value = serde_yaml::from_str(&text).expect("yaml");
    doc["users"][0]["user"] = user;
    let path = server.data_dir().join(format!("{name}.yaml"));
    std::fs::write(&path, serde_yaml::to_string(&doc).expect("yaml")).expect("write");
    path
}

#[test]
fn requests_without_a_client_certificate_are_unauthorized_except_health() {
    let server = TugServer::start();
    let bin = &kubectls()[0];
    let run = |config: &std::path::Path, args: &[&str]| {
        std::process::Command::new(bin).env("KUBECONFIG", config).args(args).output().expect("kubectl")
    };
    // Basic credentials are no credentials to the API server (nor to upstream's since 1.19): anonymous. A
    // user with none at all would make kubectl prompt for a password.
    let anonymous = kubeconfig_as(&server, "anonymous", serde_json::json!({"username": "nobody", "password": "x"}));
    let denied = run(&anonymous, &["get", "ns"]);
    assert!(!denied.status.success());
    let stderr = String::from_utf8_lossy(&denied.stderr);
    assert!(stderr.contains("must be logged in") || stderr.contains("Unauthorized"), "{stderr}");
    let health = run(&anonymous, &["get", "--raw", "/readyz"]);
    assert_eq!(String::from_utf8_lossy(&health.stdout), "ok");
    // Credentials that do not authenticate are refused everywhere, health included (as upstream).
    let forged = kubeconfig_as(&server, "forged", serde_json::json!({"token": "not-a-valid-token"}));
    let refused = run(&forged, &["get", "--raw", "/readyz"]);
    assert!(!refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("Unauthorized"));
}

#[test]
fn health_and_metrics_endpoints() {
    let server = TugServer::start();
    let bin = &kubectls()[0];
    let verbose = kubectl(bin, &server, &["get", "--raw", "/readyz?verbose"], None).ok().stdout;
    assert!(verbose.contains("[+]store ok") && verbose.contains("readyz check passed"), "{verbose}");
    assert_eq!(kubectl(bin, &server, &["get", "--raw", "/livez"], None).ok().stdout, "ok");
    kubectl(bin, &server, &["get", "cm", "-A"], None).ok();
    let metrics = kubectl(bin, &server, &["get", "--raw", "/metrics"], None).ok().stdout;
    assert!(
        metrics.contains("apiserver_request_total{verb=\"list\",resource=\"configmaps\",code=\"200\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("tug_store_write_batches_total") && metrics.contains("apiserver_registered_watchers"));
    let version = kubectl(bin, &server, &["version", "-o", "json"], None).ok().stdout;
    assert!(version.contains("\"minor\": \"33\""), "{version}");
}

#[test]
fn oversized_and_malformed_bodies_get_a_status() {
    let server = TugServer::start();
    let bin = &kubectls()[0];
    let big = format!(
        "{{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{{\"name\":\"big\"}},\"data\":{{\"v\":\"{}\"}}}}",
        "x".repeat(4 * 1024 * 1024)
    );
    let refused = kubectl(bin, &server, &["create", "-f", "-"], Some(&big));
    assert_ne!(refused.code, 0);
    assert!(
        refused.stderr.contains("RequestEntityTooLarge") || refused.stderr.contains("too large"),
        "{}",
        refused.stderr
    );
    let wrong_type = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {replicas: three}\n";
    let bad = kubectl(bin, &server, &["create", "-f", "-", "--validate=false"], Some(wrong_type));
    assert_ne!(bad.code, 0);
    assert!(
        bad.stderr.contains("cannot be handled as a Deployment") || bad.stderr.contains("replicas"),
        "{}",
        bad.stderr
    );
    // The server is still serving after all of the above.
    kubectl(bin, &server, &["get", "ns", "default"], None).ok();
}
