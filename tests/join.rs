//! Joining (root, containerd, `ip netns`): a second node, `tug agent` with its own data dir and
//! containerd in a network namespace the test creates, joins the server with the token from
//! `<data-dir>/server/token`, registers, runs a pod whose logs the API server fetches from it; a wrong
//! token and another cluster's token are refused; a second machine claiming a live node's name is
//! refused, and takes the name over once that node is gone (a reinstalled device). Kubelet certificates
//! are renewed on request while the nodes run, and an agent whose token was deleted renews and rejoins
//! on its certificate.

mod common;

use std::time::Duration;

use common::agent::{agent_command, Netns, TugAgent};
use common::{eventually_within, file_serial, jsonpath, kubectl, kubectls, node, node_ready, served_serial, TugServer};

/// `tug agent` run to its end (it must end by itself within a minute); its exit code and stderr.
fn refused(mut command: std::process::Command) -> (i32, String) {
    let output = command.output().expect("run tug agent");
    (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// Runs pod `name` on `agent`'s node and checks that the API server fetches its logs from the kubelet.
fn runs_a_pod_whose_logs_are_served(server: &TugServer, agent: &TugAgent, name: &str) {
    let bin = &kubectls()[0];
    let pod = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  nodeName: {}\n  containers:\n  - name: app\n    image: tug.local/busybox:1\n    command: [sh, -c, 'echo hello from $(hostname); sleep 3600']\n",
        agent.node_name
    );
    kubectl(bin, server, &["apply", "-f", "-"], Some(&pod)).ok();
    let running = common::within(Duration::from_secs(60), || {
        jsonpath(bin, server, &["pod", name], "{.status.phase}") == "Running"
    });
    let describe = || kubectl(bin, server, &["describe", "pod", name], None).stdout;
    assert!(running, "pod {name} does not run:\n{}\nagent log:\n{}", describe(), agent.log());
    eventually_within(Duration::from_secs(10), "its logs are served", || {
        kubectl(bin, server, &["logs", name], None).stdout == format!("hello from {name}\n")
    });
}

/// `tug <args>` as the admin of `server`, which must succeed; its standard output.
fn tug(server: &TugServer, args: &[&str]) -> String {
    let output = common::tug_admin(server, args);
    assert!(output.status.success(), "tug {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn kubelet_certificates_are_renewed_while_the_nodes_run_without_the_join_token() {
    if !node::available() {
        return;
    }
    let _one_node_at_a_time = node::exclusive();
    let netns = Netns::create("tugrenew", "10.251.4.1", "10.251.4.2");
    let every_second = ["--certificate-check-interval", "1s"];
    let server = TugServer::start_with_agent(
        &[&["--bind-address", "10.251.4.1", "--node-name", "node-a", "--node-ip", "127.0.0.1"], &every_second[..]]
            .concat(),
        node::images(),
    );
    let bin = &kubectls()[0];
    // Joined with a bootstrap token deleted once the node runs: renewals need only the node's certificate.
    let token = tug(&server, &["token", "create", "--ttl", "1h"]).trim().to_string();
    let b_flags = [&["--token", &token][..], &every_second].concat();
    let mut b = TugAgent::start(&server, &netns, "node-b", &b_flags, node::images());
    eventually_within(Duration::from_secs(90), "node-b is Ready", || node_ready(&server, "node-b"));
    tug(&server, &["token", "delete", &token]);

    let tls = b.dir.path().join("agent/tls");
    let (b_served, a_served) = ("10.251.4.2:10250", "127.0.0.1:10250");
    let before = [served_serial(b_served), file_serial(&tls.join("client-kubelet.crt"))];
    let a_before = served_serial(a_served);
    let key_before = std::fs::read_to_string(tls.join("client-kubelet.key")).expect("the client key");
    assert!(before.iter().chain([&a_before]).all(|s| s.starts_with("serial=")), "{before:?} {a_before}");
    let rotated = tug(&server, &["certificate", "rotate", "--data-dir", b.dir.path().to_str().unwrap()]);
    for name in ["client-kubelet", "serving-kubelet"] {
        assert!(rotated.contains(&format!("{name}: renewal requested")), "{rotated}");
    }
    let server_dir = server.data_dir().to_str().unwrap();
    let rotated = tug(&server, &["certificate", "rotate", "--service", "serving-kubelet", "--data-dir", server_dir]);
    assert!(rotated.contains("serving-kubelet: set aside in") && !rotated.contains("client-admin"), "{rotated}");

    eventually_within(Duration::from_secs(30), "node-b serves its renewed certificate", || {
        let served = served_serial(b_served);
        served != before[0] && served == file_serial(&tls.join("serving-kubelet.crt"))
    });
    let client = file_serial(&tls.join("client-kubelet.crt"));
    assert!(client.starts_with("serial=") && client != before[1], "{client} after {}", before[1]);
    let key_after = std::fs::read_to_string(tls.join("client-kubelet.key")).expect("the client key");
    assert_ne!(key_after, key_before, "a renewal makes new keys");
    assert!(b.log().contains("renewed the kubelet's certificates"), "{}", b.log());
    eventually_within(Duration::from_secs(10), "the renewal mark is removed", || !tls.join("renew-requested").exists());
    eventually_within(Duration::from_secs(30), "node-a serves its renewed certificate", || {
        let served = served_serial(a_served);
        served.starts_with("serial=") && served != a_before
    });
    let events = r#"jsonpath={range .items[*]}{.involvedObject.kind}/{.involvedObject.name} {.reason}{"\n"}{end}"#;
    eventually_within(Duration::from_secs(10), "each renewal is an Event on its Node", || {
        let listed = kubectl(bin, &server, &["get", "events", "-n", "default", "-o", events], None).stdout;
        ["Node/node-a CertificateRenewed", "Node/node-b CertificateRenewed"].iter().all(|e| listed.contains(e))
    });
    // The API server trusts the new serving certificate, and node-b keeps reporting.
    runs_a_pod_whose_logs_are_served(&server, &b, "after-renewal");
    assert!(node_ready(&server, "node-b"));

    // A node's certificate renews its own credentials only, with the password it joined with.
    let refusal = |body: &str| {
        let curl = std::process::Command::new("curl")
            .args(["-s", "--http1.1", "-w", " %{http_code}"])
            .arg("--cacert")
            .arg(tls.join("server-ca.crt"))
            .arg("--cert")
            .arg(tls.join("client-kubelet.crt"))
            .arg("--key")
            .arg(tls.join("client-kubelet.key"))
            .args(["-d", body])
            .arg(format!("https://10.251.4.1:{}/v1-tug/node-credentials", server.port))
            .output()
            .expect("curl");
        String::from_utf8_lossy(&curl.stdout).into_owned()
    };
    let request = |node: &str| {
        format!(r#"{{"nodeName":"{node}","nodePassword":"x","addresses":[],"clientCsr":"","servingCsr":""}}"#)
    };
    let other = refusal(&request("node-a"));
    assert!(other.contains("may renew only its own credentials") && other.ends_with(" 403"), "{other}");
    let wrong_password = refusal(&request("node-b"));
    let refused = wrong_password.contains("only with the password it joined with") && wrong_password.ends_with(" 403");
    assert!(refused, "{wrong_password}");

    // Restarted with its deleted token, node-b joins again on its certificate.
    b.restart(&server, &netns, &b_flags);
    eventually_within(Duration::from_secs(60), "node-b joined again", || {
        b.log().matches("joined the cluster").count() == 2
    });
    assert!(!b.log().contains("starting with the credentials of an earlier start"), "{}", b.log());
    eventually_within(Duration::from_secs(60), "node-b is Ready again", || node_ready(&server, "node-b"));
}

#[test]
fn an_agent_joins_with_the_token_runs_pods_and_wrong_tokens_are_refused() {
    if !node::available() {
        return;
    }
    let _one_node_at_a_time = node::exclusive();
    let netns = Netns::create("tugjoin", "10.251.0.1", "10.251.0.2");
    let server = TugServer::start_with_agent(
        &[
            "--bind-address",
            "10.251.0.1",
            "--node-name",
            "node-a",
            "--node-ip",
            "127.0.0.1",
            "--node-monitor-grace-period",
            "5s",
        ],
        node::images(),
    );
    let bin = &kubectls()[0];
    let token = std::fs::read_to_string(server.data_dir().join("server/token")).expect("the token file");
    let token = token.trim();
    let (hash, secret) =
        token.strip_prefix("K10").and_then(|t| t.split_once("::server:")).expect("K10<hash>::server:<secret>");
    assert_eq!(hash.len(), 64, "{token}");

    // Refused: a wrong secret, and another CA's hash with the right secret; both exit 1 before
    // starting anything.
    let scratch = tempfile::tempdir().expect("tempdir");
    let wrong_secret = format!("K10{hash}::server:not-{secret}");
    let (code, stderr) = refused(agent_command(&server, &netns, scratch.path(), "node-x", &["--token", &wrong_secret]));
    assert!(code == 1 && stderr.contains("the server refused the token"), "{code}: {stderr}");
    let foreign = format!("K10{}::server:{secret}", "0".repeat(64));
    let (code, stderr) = refused(agent_command(&server, &netns, scratch.path(), "node-x", &["--token", &foreign]));
    assert!(code == 1 && stderr.contains("does not match the token's CA hash"), "{code}: {stderr}");
    assert_eq!(kubectl(bin, &server, &["get", "node", "node-x"], None).code, 1, "no node was registered");

    // Joined with the token file: the node registers at its address and runs a pod, whose logs come
    // from its kubelet over TLS (its serving certificate signed at the join).
    let token_file = scratch.path().join("token");
    std::fs::write(&token_file, token).expect("token file");
    let mut b =
        TugAgent::start(&server, &netns, "node-b", &["--token-file", token_file.to_str().unwrap()], node::images());
    eventually_within(Duration::from_secs(90), "node-b is Ready", || node_ready(&server, "node-b"));
    let addresses =
        jsonpath(bin, &server, &["node", "node-b"], r#"{.status.addresses[?(@.type=="InternalIP")].address}"#);
    assert_eq!(addresses, "10.251.0.2");
    runs_a_pod_whose_logs_are_served(&server, &b, "on-b");
    assert!(jsonpath(bin, &server, &["pod", "on-b"], "{.status.podIP}").starts_with("10.42."));
    kubectl(bin, &server, &["delete", "pod", "on-b", "--grace-period=1"], None).ok();

    // Another machine with the same node name (a fresh data dir, so another node password) is refused
    // while node-b is alive, and keeps trying; once node-b is gone it takes the name over. It joins with
    // the short token (the secret alone), which works but warns.
    // (Its own load balancer port: it shares node-b's network namespace.)
    let twin_flags = ["--token", secret, "--lb-server-port", "6445"];
    let mut twin = TugAgent::start(&server, &netns, "node-b", &twin_flags, node::images());
    eventually_within(Duration::from_secs(30), "the twin is refused", || twin.log().contains("node password rejected"));
    assert!(twin.running(), "a rejected node keeps trying:\n{}", twin.log());
    assert!(twin.log().contains("has no CA hash"), "a short token warns:\n{}", twin.log());
    b.stop();
    eventually_within(Duration::from_secs(90), "the twin has replaced node-b", || {
        twin.log().contains("joined the cluster")
    });
    eventually_within(Duration::from_secs(60), "node-b is Ready again", || node_ready(&server, "node-b"));
}
