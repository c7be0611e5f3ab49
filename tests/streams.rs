//! The streams kubectl opens through the API server to the node's kubelet and on to containerd (root,
//! containerd): `exec` (plain, with stdin, with a TTY on a pty, exit codes), `cp` both ways,
//! `port-forward` answering HTTP, and `attach`, each with the newest kubectl (WebSocket: v5 for exec and
//! attach, the SPDY tunnel for port-forward, translated by the kubelet) and 1.29 (SPDY, passed through).

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{eventually_within, jsonpath, kubectl, kubectls, node, TugServer};

/// `script` gives kubectl a pty, so that `exec -it` has a terminal to put in raw mode.
fn on_a_pty(bin: &Path, server: &TugServer, args: &str, input: &str) -> (i32, String) {
    let mut child = Command::new("script")
        .args(["-qec", &format!("{} {args}", bin.display()), "/dev/null"])
        .env("KUBECONFIG", server.kubeconfig())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("script");
    use std::io::Write;
    child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write");
    let output = child.wait_with_output().expect("script output");
    (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stdout).replace('\r', ""))
}

/// kubectl running on its own, its stdout and stderr to read.
fn background(bin: &Path, server: &TugServer, args: &[&str]) -> std::process::Child {
    Command::new(bin)
        .args(args)
        .env("KUBECONFIG", server.kubeconfig())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl")
}

/// `kubectl port-forward pod/<pod> :<port>`; the local port it chose, and the process to kill.
fn port_forward(bin: &Path, server: &TugServer, pod: &str, port: u16) -> (u16, std::process::Child) {
    let mut child = background(bin, server, &["port-forward", &format!("pod/{pod}"), &format!(":{port}")]);
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("read");
    // kubectl reports every connection on stdout: keep reading, or it dies of SIGPIPE.
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    let local = line
        .strip_prefix("Forwarding from 127.0.0.1:")
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected port-forward output {line:?}"));
    (local, child)
}

fn curl(url: &str) -> String {
    let output = Command::new("curl").args(["-sS", "--max-time", "5", url]).output().expect("curl");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn exec_cp_port_forward_and_attach_work_with_both_protocols() {
    if !node::available() {
        return;
    }
    let _one_node_at_a_time = node::exclusive();
    let server = node::ready_server();
    let newest = &kubectls()[0];
    let serve = "echo served > /tmp/index.html; i=0; while true; do echo tick $i; i=$((i+1)); sleep 1; done & exec httpd -f -p 8080 -h /tmp";
    kubectl(newest, &server, &["run", "web", "--image=tug.local/busybox:1", "--", "sh", "-c", serve], None).ok();
    eventually_within(Duration::from_secs(60), "web runs", || {
        jsonpath(newest, &server, &["pod", "web"], "{.status.phase}") == "Running"
    });

    for bin in &kubectls() {
        let run = |args: &[&str], stdin: Option<&str>| kubectl(bin, &server, args, stdin);
        let version = bin.display();
        assert_eq!(run(&["exec", "web", "--", "cat", "/etc/hostname"], None).ok().stdout, "web\n", "{version}");
        let echoed = run(&["exec", "-i", "web", "--", "sh", "-c", "cat > /tmp/in; cat /tmp/in"], Some("from stdin\n"));
        assert_eq!(echoed.ok().stdout, "from stdin\n", "{version}");
        let failed = run(&["exec", "web", "--", "sh", "-c", "echo oops >&2; exit 3"], None);
        assert_eq!((failed.code, failed.stderr.contains("oops")), (3, true), "{version}: {}", failed.stderr);

        let (code, screen) = on_a_pty(bin, &server, "exec -it web -- sh", "tty\nexit 4\n");
        assert!(code == 4 && screen.contains("/dev/pts/"), "{version}: exit {code}, screen:\n{screen}");

        let dir = tempfile::tempdir().expect("tempdir");
        let (local, back) = (dir.path().join("up.txt"), dir.path().join("down.txt"));
        std::fs::write(&local, "copied both ways\n").expect("write");
        run(&["cp", local.to_str().unwrap(), "web:/tmp/up.txt"], None).ok();
        run(&["cp", "web:/tmp/up.txt", back.to_str().unwrap()], None).ok();
        assert_eq!(std::fs::read_to_string(&back).expect("copied back"), "copied both ways\n", "{version}");

        let (port, mut forwarding) = port_forward(bin, &server, "web", 8080);
        let pages: Vec<String> = (0..2).map(|_| curl(&format!("http://127.0.0.1:{port}/index.html"))).collect();
        let _ = forwarding.kill();
        let _ = forwarding.wait();
        assert_eq!(pages, ["served\n", "served\n"], "{version}: two connections over one forward");

        let mut attached = background(bin, &server, &["attach", "web"]);
        let mut line = String::new();
        BufReader::new(attached.stdout.take().expect("stdout")).read_line(&mut line).expect("read");
        let _ = attached.kill();
        let _ = attached.wait();
        assert!(line.starts_with("tick "), "{version}: attach shows the container's output: {line:?}");
    }

    // The newest kubectl gets its WebSocket protocols served (v5 for exec, the SPDY tunnel for
    // port-forward) rather than falling back to SPDY.
    let verbose = kubectl(newest, &server, &["exec", "-v=7", "web", "--", "true"], None).ok();
    assert!(
        verbose.stderr.contains("The subprotocol is v5.channel.k8s.io") && !verbose.stderr.contains("fallback"),
        "{}",
        verbose.stderr
    );
    let mut forwarding = background(newest, &server, &["port-forward", "-v=6", "pod/web", ":8080"]);
    let mut log = String::new();
    let mut stderr = BufReader::new(forwarding.stderr.take().expect("stderr"));
    while !log.contains("negotiated protocol") && stderr.read_line(&mut log).is_ok_and(|n| n > 0) {}
    let _ = forwarding.kill();
    let _ = forwarding.wait();
    assert!(log.contains("negotiated protocol: portforward.k8s.io") && !log.contains("fallback"), "{log}");

    let missing = kubectl(newest, &server, &["exec", "web", "-c", "nope", "--", "true"], None);
    assert!(
        missing.code != 0 && missing.stderr.contains("container nope is not valid for pod web"),
        "{}",
        missing.stderr
    );
}
