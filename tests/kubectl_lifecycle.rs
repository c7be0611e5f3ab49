//! Watching, paging, deletion and restarts, driven by the real kubectl against a real `tug server`.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{kubectl, kubectls, TugServer};

#[test]
fn get_watch_sees_added_modified_and_deleted() {
    let server = TugServer::start();
    for bin in kubectls() {
        let mut watch = Command::new(&bin)
            .env("KUBECONFIG", server.kubeconfig())
            .args(["get", "cm", "--watch", "--output-watch-events", "--no-headers"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("kubectl get -w");
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let reader = {
            let lines = lines.clone();
            let stdout = watch.stdout.take().expect("stdout");
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    // EVENT NAME DATA AGE: keep the first three.
                    lines.lock().expect("lock").push(line.split_whitespace().take(3).collect::<Vec<_>>().join(" "));
                }
            })
        };
        std::thread::sleep(Duration::from_millis(500));
        kubectl(
            &bin,
            &server,
            &["create", "-f", "-"],
            Some("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: watched}\ndata: {v: one}\n"),
        )
        .ok();
        kubectl(&bin, &server, &["patch", "cm", "watched", "-p", r#"{"data":{"w":"two"}}"#], None).ok();
        kubectl(&bin, &server, &["delete", "cm", "watched"], None).ok();
        let want = ["ADDED watched 1", "MODIFIED watched 2", "DELETED watched 2"];
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && !want.iter().all(|w| lines.lock().expect("lock").iter().any(|l| l == w)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = watch.kill();
        let _ = watch.wait();
        let _ = reader.join();
        let seen = lines.lock().expect("lock").clone();
        for w in want {
            assert!(seen.iter().any(|l| l == w), "{w:?} not seen by {}; saw {seen:?}", bin.display());
        }
    }
}

#[test]
fn chunked_lists_page_through_more_than_a_thousand_objects() {
    let server = TugServer::start();
    let bin = &kubectls()[0];
    let mut list = String::from("apiVersion: v1\nkind: List\nitems:\n");
    for i in 0..1100 {
        list.push_str(&format!("- apiVersion: v1\n  kind: ConfigMap\n  metadata: {{name: page-{i:04}, labels: {{bulk: 'yes'}}}}\n  data: {{i: '{i}'}}\n"));
    }
    kubectl(bin, &server, &["create", "-f", "-"], Some(&list)).ok();
    let out =
        kubectl(bin, &server, &["get", "cm", "-l", "bulk=yes", "--chunk-size=100", "-o", "name", "-v=6"], None).ok();
    let names: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(names.len(), 1100);
    assert_eq!(names[0], "configmap/page-0000");
    assert_eq!(names[1099], "configmap/page-1099");
    let pages = out.stderr.matches("continue=").count();
    assert!(pages >= 10, "expected at least 10 continued requests, saw {pages}");
}

#[test]
fn delete_waits_until_gone_and_finalizers_hold_objects() {
    let server = TugServer::start();
    let bin = &kubectls()[0];
    kubectl(bin, &server, &["create", "-f", "-"], Some("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: plain}\n"))
        .ok();
    let deleted = kubectl(bin, &server, &["delete", "cm", "plain"], None).ok().stdout;
    assert!(deleted.contains("configmap \"plain\" deleted"), "{deleted}");
    let gone = kubectl(bin, &server, &["get", "cm", "plain"], None);
    assert!(gone.stderr.contains("configmaps \"plain\" not found"), "{}", gone.stderr);

    let held = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: held, finalizers: [example.com/hold]}\n";
    kubectl(bin, &server, &["create", "-f", "-"], Some(held)).ok();
    kubectl(bin, &server, &["delete", "cm", "held", "--wait=false"], None).ok();
    let ts =
        kubectl(bin, &server, &["get", "cm", "held", "-o", "jsonpath={.metadata.deletionTimestamp}"], None).ok().stdout;
    assert!(ts.ends_with('Z'), "a held object is marked for deletion: {ts:?}");
    let mut waiter = Command::new(bin)
        .env("KUBECONFIG", server.kubeconfig())
        .args(["wait", "--for=delete", "cm/held", "--timeout=20s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl wait");
    std::thread::sleep(Duration::from_millis(300));
    kubectl(
        bin,
        &server,
        &["patch", "cm", "held", "--type=json", "-p", r#"[{"op":"remove","path":"/metadata/finalizers"}]"#],
        None,
    )
    .ok();
    let status = waiter.wait().expect("wait");
    assert!(status.success(), "kubectl wait --for=delete saw the object go");
    let gone = kubectl(bin, &server, &["get", "cm", "held"], None);
    assert!(gone.stderr.contains("not found"), "{}", gone.stderr);
}

#[test]
fn restart_after_kill_preserves_objects_and_resource_versions() {
    let mut server = TugServer::start();
    let bin = &kubectls()[0];
    for i in 0..20 {
        let cm = format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: keep-{i}}}\ndata: {{i: '{i}'}}\n");
        kubectl(bin, &server, &["create", "-f", "-"], Some(&cm)).ok();
    }
    let snapshot = |server: &TugServer| {
        let jsonpath = "jsonpath={range .items[*]}{.metadata.name}={.metadata.resourceVersion}={.metadata.uid} {end}";
        kubectl(bin, server, &["get", "cm,ns,svc", "-A", "-o", jsonpath], None).ok().stdout
    };
    let before = snapshot(&server);
    server.kill_and_restart();
    let after = snapshot(&server);
    assert_eq!(before, after);
    assert_eq!(before.matches("keep-").count(), 20);
    let next = kubectl(
        bin,
        &server,
        &["create", "-f", "-", "-o", "jsonpath={.metadata.resourceVersion}"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: after}\n"),
    )
    .ok()
    .stdout;
    let max_before =
        before.split_whitespace().filter_map(|e| e.split('=').nth(1)?.parse::<i64>().ok()).max().unwrap_or(0);
    assert!(next.parse::<i64>().expect("rv") > max_before, "revisions keep increasing across restarts");
}
