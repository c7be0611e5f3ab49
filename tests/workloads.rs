//! Deployments, the garbage collector and namespace deletion on simulated nodes, driven as a user
//! would: real kubectl (`create deployment`, `set image`, `rollout status|history|undo|pause|resume|
//! restart`, `scale`, `delete --cascade=…`, `delete namespace`) against the real binary.

mod common;

use std::path::Path;

use common::{eventually, jsonpath, kubectl, kubectls, Simulator, TugServer};

fn cluster() -> (TugServer, Simulator) {
    let server = TugServer::start();
    let nodes = Simulator::start(&server, &["--nodes", "3"]);
    let bin = &kubectls()[0];
    eventually("three nodes are registered", || {
        jsonpath(bin, &server, &["nodes"], "{.items[*].metadata.name}").split_whitespace().count() == 3
    });
    (server, nodes)
}

fn rollout_status(bin: &Path, server: &TugServer, deployment: &str) -> String {
    let target = format!("deployment/{deployment}");
    kubectl(bin, server, &["rollout", "status", &target, "--timeout=60s"], None).ok().stdout
}

/// Names of the objects of `kind` matching `selector`, in every namespace.
fn names(bin: &Path, server: &TugServer, kind: &str, selector: &str) -> Vec<String> {
    let out = jsonpath(bin, server, &[kind, "-A", "-l", selector], "{.items[*].metadata.name}");
    out.split_whitespace().map(str::to_string).collect()
}

#[test]
fn a_deployment_rolls_out_rolls_back_scales_and_is_deleted_with_everything_it_made() {
    let (server, _nodes) = cluster();
    for bin in &kubectls() {
        kubectl(bin, &server, &["create", "deployment", "web", "--image=nginx:1.27", "--replicas=6"], None).ok();
        assert!(rollout_status(bin, &server, "web").contains("successfully rolled out"));
        let ready = kubectl(bin, &server, &["get", "deployment", "web"], None).ok().stdout;
        assert!(ready.contains("6/6"), "{ready}");
        let pods = jsonpath(bin, &server, &["pods", "-l", "app=web"], "{.items[*].spec.nodeName}");
        let spread: std::collections::BTreeSet<&str> = pods.split_whitespace().collect();
        assert_eq!(spread.len(), 3, "six pods over three nodes: {pods}");

        kubectl(bin, &server, &["set", "image", "deployment/web", "nginx=nginx:1.28"], None).ok();
        assert!(rollout_status(bin, &server, "web").contains("successfully rolled out"));
        let images = jsonpath(bin, &server, &["pods", "-l", "app=web"], "{.items[*].spec.containers[0].image}");
        eventually("only new pods remain", || {
            let images = jsonpath(bin, &server, &["pods", "-l", "app=web"], "{.items[*].spec.containers[0].image}");
            images.split_whitespace().count() == 6 && images.split_whitespace().all(|i| i == "nginx:1.28")
        });
        assert!(!images.is_empty());
        let history = kubectl(bin, &server, &["rollout", "history", "deployment/web"], None).ok().stdout;
        assert!(history.contains("1 ") && history.contains("2 "), "{history}");
        assert_eq!(names(bin, &server, "replicasets", "app=web").len(), 2);

        kubectl(bin, &server, &["rollout", "undo", "deployment/web"], None).ok();
        assert!(rollout_status(bin, &server, "web").contains("successfully rolled out"));
        let template_image =
            jsonpath(bin, &server, &["deployment", "web"], "{.spec.template.spec.containers[0].image}");
        assert_eq!(template_image, "nginx:1.27");
        let revision = jsonpath(
            bin,
            &server,
            &["deployment", "web"],
            r#"{.metadata.annotations.deployment\.kubernetes\.io/revision}"#,
        );
        assert_eq!(revision, "3", "the revived revision gets the next number");

        kubectl(bin, &server, &["scale", "deployment/web", "--replicas=0"], None).ok();
        eventually("no pods at zero replicas", || names(bin, &server, "pods", "app=web").is_empty());
        kubectl(bin, &server, &["scale", "deployment/web", "--replicas=2"], None).ok();
        assert!(rollout_status(bin, &server, "web").contains("successfully rolled out"));
        assert_eq!(names(bin, &server, "pods", "app=web").len(), 2);

        let available =
            jsonpath(bin, &server, &["deployment", "web"], r#"{.status.conditions[?(@.type=="Available")].status}"#);
        assert_eq!(available, "True");

        kubectl(bin, &server, &["delete", "deployment", "web"], None).ok();
        eventually("its ReplicaSets and Pods are gone", || {
            names(bin, &server, "replicasets", "app=web").is_empty()
                && names(bin, &server, "pods", "app=web").is_empty()
        });
    }
}

#[test]
fn recreate_pause_resume_and_restart() {
    let (server, _nodes) = cluster();
    let bin = &kubectls()[0];
    kubectl(bin, &server, &["create", "deployment", "db", "--image=postgres:16", "--replicas=2"], None).ok();
    kubectl(
        bin,
        &server,
        &["patch", "deployment", "db", "-p", r#"{"spec":{"strategy":{"type":"Recreate","rollingUpdate":null}}}"#],
        None,
    )
    .ok();
    assert!(rollout_status(bin, &server, "db").contains("successfully rolled out"));

    kubectl(bin, &server, &["rollout", "pause", "deployment/db"], None).ok();
    kubectl(bin, &server, &["set", "image", "deployment/db", "postgres=postgres:17"], None).ok();
    eventually("the paused condition shows", || {
        jsonpath(bin, &server, &["deployment", "db"], r#"{.status.conditions[?(@.type=="Progressing")].reason}"#)
            == "DeploymentPaused"
    });
    assert_eq!(names(bin, &server, "replicasets", "app=db").len(), 1, "a paused deployment does not roll");

    kubectl(bin, &server, &["rollout", "resume", "deployment/db"], None).ok();
    assert!(rollout_status(bin, &server, "db").contains("successfully rolled out"));
    let images = jsonpath(bin, &server, &["pods", "-l", "app=db"], "{.items[*].spec.containers[0].image}");
    assert_eq!(images, "postgres:17 postgres:17");

    kubectl(bin, &server, &["rollout", "restart", "deployment/db"], None).ok();
    assert!(rollout_status(bin, &server, "db").contains("successfully rolled out"));
    assert_eq!(names(bin, &server, "replicasets", "app=db").len(), 3);
    let events = kubectl(bin, &server, &["describe", "deployment", "db"], None).ok().stdout;
    assert!(events.contains("ScalingReplicaSet") && events.contains("Scaled down replica set db-"), "{events}");
}

#[test]
fn deletion_propagates_in_the_background_in_the_foreground_or_not_at_all() {
    let (server, _nodes) = cluster();
    let bin = &kubectls()[0];
    for name in ["kept", "fg"] {
        kubectl(bin, &server, &["create", "deployment", name, "--image=nginx", "--replicas=2"], None).ok();
        assert!(rollout_status(bin, &server, name).contains("successfully rolled out"));
    }
    // Orphan: the ReplicaSet and pods stay, no longer owned.
    kubectl(bin, &server, &["delete", "deployment", "kept", "--cascade=orphan"], None).ok();
    let owners = jsonpath(bin, &server, &["replicasets", "-l", "app=kept"], "{.items[*].metadata.ownerReferences}");
    assert!(owners.is_empty(), "ownerReferences left: {owners}");
    assert_eq!(names(bin, &server, "pods", "app=kept").len(), 2);

    // Foreground: kubectl waits until the deployment is gone, and by then so are its dependents, which
    // block it as upstream's controllers make them do.
    let blocking = jsonpath(
        bin,
        &server,
        &["rs,pods", "-l", "app=fg"],
        "{.items[*].metadata.ownerReferences[0].blockOwnerDeletion}",
    );
    assert_eq!(blocking, "true true true", "a ReplicaSet and its two pods block their owners' deletion");
    kubectl(bin, &server, &["delete", "deployment", "fg", "--cascade=foreground", "--timeout=30s"], None).ok();
    let left = names(bin, &server, "replicasets", "app=fg");
    assert!(left.is_empty(), "foreground deletion returned with ReplicaSets left: {left:?}");
    assert!(names(bin, &server, "pods", "app=fg").is_empty());

    // Background, for any kind: a ConfigMap owned by a Secret goes with it, and one naming an owner that
    // does not exist is collected.
    kubectl(bin, &server, &["create", "secret", "generic", "owner", "--from-literal=k=v"], None).ok();
    let uid = jsonpath(bin, &server, &["secret", "owner"], "{.metadata.uid}");
    let owned = |name: &str, owner_uid: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  ownerReferences:\n  - {{apiVersion: v1, kind: Secret, name: owner, uid: {owner_uid}}}\n"
        )
    };
    kubectl(bin, &server, &["apply", "-f", "-"], Some(&owned("child", &uid))).ok();
    kubectl(bin, &server, &["apply", "-f", "-"], Some(&owned("stray", "00000000-0000-0000-0000-000000000000"))).ok();
    eventually("the stray ConfigMap is collected", || kubectl(bin, &server, &["get", "cm", "stray"], None).code != 0);
    assert_eq!(kubectl(bin, &server, &["get", "cm", "child"], None).code, 0, "a live owner keeps its dependent");
    kubectl(bin, &server, &["delete", "secret", "owner"], None).ok();
    eventually("the child goes with its owner", || kubectl(bin, &server, &["get", "cm", "child"], None).code != 0);
}

#[test]
fn deleting_a_namespace_empties_it_then_removes_it() {
    let (server, _nodes) = cluster();
    let bin = &kubectls()[0];
    kubectl(bin, &server, &["create", "namespace", "team"], None).ok();
    kubectl(bin, &server, &["create", "deployment", "web", "-n", "team", "--image=nginx", "--replicas=2"], None).ok();
    let held =
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: held, namespace: team, finalizers: [example.com/hold]}\n";
    kubectl(bin, &server, &["apply", "-f", "-"], Some(held)).ok();
    kubectl(bin, &server, &["rollout", "status", "-n", "team", "deployment/web", "--timeout=60s"], None).ok();

    kubectl(bin, &server, &["delete", "namespace", "team", "--wait=false"], None).ok();
    eventually("only the held ConfigMap is left, and the namespace says so", || {
        let message = jsonpath(
            bin,
            &server,
            &["namespace", "team"],
            r#"{.status.conditions[?(@.type=="NamespaceFinalizersRemaining")].message}"#,
        );
        message.contains("example.com/hold in 1 resource instances")
            && names(bin, &server, "pods", "app=web").is_empty()
    });
    assert_eq!(jsonpath(bin, &server, &["namespace", "team"], "{.status.phase}"), "Terminating");
    assert!(kubectl(bin, &server, &["get", "deployments", "-n", "team", "-o", "name"], None).ok().stdout.is_empty());
    let refused = kubectl(bin, &server, &["create", "configmap", "late", "-n", "team"], None);
    assert!(refused.stderr.contains("because it is being terminated"), "{}", refused.stderr);

    kubectl(
        bin,
        &server,
        &["patch", "configmap", "held", "-n", "team", "--type=merge", "-p", r#"{"metadata":{"finalizers":null}}"#],
        None,
    )
    .ok();
    kubectl(bin, &server, &["wait", "--for=delete", "namespace/team", "--timeout=30s"], None).ok();
}

#[test]
fn drain_evicts_what_the_disruption_budget_allows_and_uncordon_reopens_the_node() {
    let (server, _nodes) = cluster();
    for bin in &kubectls() {
        let app = format!("web-{}", bin.extension().and_then(|e| e.to_str()).unwrap_or("default").replace('.', "-"));
        kubectl(bin, &server, &["create", "deployment", &app, "--image=nginx", "--replicas=3"], None).ok();
        assert!(rollout_status(bin, &server, &app).contains("successfully rolled out"));
        let selector = format!("app={app}");
        let budget = format!("{app}-budget");
        kubectl(bin, &server, &["create", "pdb", &budget, "--selector", &selector, "--min-available=3"], None).ok();
        eventually("the budget counts three healthy pods", || {
            jsonpath(bin, &server, &["pdb", &budget], "{.status.currentHealthy}/{.status.disruptionsAllowed}") == "3/0"
        });
        let node = jsonpath(bin, &server, &["pods", "-l", &selector], "{.items[0].spec.nodeName}");
        let drain =
            ["drain", node.as_str(), "--ignore-daemonsets", "--pod-selector", selector.as_str(), "--timeout=12s"];

        let refused = kubectl(bin, &server, &drain, None);
        assert_ne!(refused.code, 0, "the budget allows no disruption");
        let said = format!("{}{}", refused.stdout, refused.stderr);
        assert!(said.contains("Cannot evict pod as it would violate the pod's disruption budget"), "{said}");
        assert_eq!(jsonpath(bin, &server, &["node", &node], "{.spec.unschedulable}"), "true", "drain cordons first");

        kubectl(bin, &server, &["patch", "pdb", &budget, "--type=merge", "-p", r#"{"spec":{"minAvailable":2}}"#], None)
            .ok();
        let drained = kubectl(bin, &server, &drain, None).ok();
        assert!(drained.stdout.contains(&format!("node/{node} drained")), "{}", drained.stdout);
        let on_node = |bin: &Path| {
            let nodes = jsonpath(bin, &server, &["pods", "-l", &selector], "{.items[*].spec.nodeName}");
            nodes.split_whitespace().filter(|n| *n == node).count()
        };
        assert_eq!(on_node(bin), 0, "nothing of the app is left on the drained node");
        assert!(rollout_status(bin, &server, &app).contains("successfully rolled out"), "the evicted pod is replaced");

        kubectl(bin, &server, &["uncordon", &node], None).ok();
        assert_eq!(jsonpath(bin, &server, &["node", &node], "{.spec.unschedulable}"), "");
        kubectl(bin, &server, &["delete", "deployment", &app], None).ok();
        kubectl(bin, &server, &["delete", "pdb", &budget], None).ok();
    }
}
