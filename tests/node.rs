//! The server's own node on the real runtime (root, containerd, runc, CNI plugins): containerd started
//! and supervised by tug, the air-gapped images imported, the Node registered with the machine's
//! capacity and kept Ready through its Lease and status.

mod common;

use std::time::Duration;

use common::node;
use common::{eventually_within, jsonpath, kubectl, kubectls, TugServer};

fn containerd_pid(server: &TugServer) -> Option<u32> {
    let config = server.data_dir().join("agent/containerd/config.toml");
    let output = std::process::Command::new("pgrep")
        .args(["-f", &format!("containerd --config {}", config.display())])
        .output()
        .ok()?;
    String::from_utf8_lossy(&output.stdout).lines().next()?.trim().parse().ok()
}

#[test]
fn the_servers_node_runs_containerd_imports_the_images_and_becomes_ready() {
    if !node::available() {
        return;
    }
    let _one_node_at_a_time = node::exclusive();
    let mut server = node::ready_server();
    let bin = &kubectls()[0];
    let wait = Duration::from_secs(60);
    let node = |path: &str| jsonpath(bin, &server, &["node", "edge-test"], path);
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    assert_eq!(node("{.status.capacity.cpu}"), cpus.to_string());
    let meminfo = std::fs::read_to_string("/proc/meminfo").expect("meminfo");
    let total_kib = meminfo.lines().find_map(|l| l.strip_prefix("MemTotal:")).expect("MemTotal");
    assert_eq!(node("{.status.capacity.memory}"), format!("{}Ki", total_kib.trim().trim_end_matches(" kB").trim()));
    assert!(node("{.status.nodeInfo.containerRuntimeVersion}").starts_with("containerd://"));
    assert_eq!(node("{.status.addresses[?(@.type==\"InternalIP\")].address}"), "127.0.0.1");
    assert_eq!(node("{.metadata.labels.node-role\\.kubernetes\\.io/control-plane}"), "true");
    assert!(!node("{.spec.podCIDR}").is_empty());

    // The images from the air-gap directory are in the CRI's namespace.
    let images = node::ctr(server.data_dir(), &["images", "ls", "-q"]);
    assert!(images.contains("tug.local/pause:1") && images.contains("tug.local/busybox:1"), "{images}");

    // The Lease is renewed.
    let renewed = jsonpath(bin, &server, &["lease", "-n", "kube-node-lease", "edge-test"], "{.spec.renewTime}");
    eventually_within(wait, "the lease is renewed", || {
        jsonpath(bin, &server, &["lease", "-n", "kube-node-lease", "edge-test"], "{.spec.renewTime}") != renewed
    });

    // A containerd that dies is started again.
    let first = containerd_pid(&server).expect("containerd runs");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(first as i32), nix::sys::signal::Signal::SIGKILL)
        .expect("kill containerd");
    eventually_within(wait, "containerd is restarted and answers", || {
        containerd_pid(&server).is_some_and(|pid| pid != first)
            && node::ctr(server.data_dir(), &["version"]).contains("Server:")
    });

    // Stopping tug stops its containerd.
    let status = server.terminate().expect("server exit status");
    assert!(status.success(), "{status:?}\n{}", server.log());
    assert!(containerd_pid(&server).is_none(), "containerd outlived tug");
}

/// `kubectl get pod <name> -o jsonpath=<path>`.
fn pod_field(server: &TugServer, name: &str, path: &str) -> String {
    jsonpath(&kubectls()[0], server, &["pod", name], path)
}

/// Waits up to a minute for the pod's phase; on time-out fails with the pod, the runtime's containers
/// and the server's log.
fn until_phase(server: &TugServer, pod: &str, phase: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while pod_field(server, pod, "{.status.phase}") != phase {
        if std::time::Instant::now() > deadline {
            let yaml = kubectl(&kubectls()[0], server, &["get", "pod", pod, "-o", "yaml"], None).stdout;
            let containers = node::ctr(server.data_dir(), &["containers", "ls"]);
            panic!("{pod} did not reach {phase}:\n{yaml}\n{containers}\n{}", server.log());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn pods_run_on_containerd_serve_restart_finish_and_go_away() {
    if !node::available() {
        return;
    }
    let _one_node_at_a_time = node::exclusive();
    let mut server = node::ready_server();
    let bin = &kubectls()[0];
    let wait = Duration::from_secs(60);
    let busybox = "--image=tug.local/busybox:1";
    let serve = "echo hello-from-tug > /tmp/index.html && exec httpd -f -p 8080 -h /tmp";
    kubectl(bin, &server, &["run", "web", busybox, "--env=WHO=tug", "--", "sh", "-c", serve], None).ok();
    kubectl(bin, &server, &["run", "crash", busybox, "--", "sh", "-c", "echo crashing; exit 3"], None).ok();
    kubectl(
        bin,
        &server,
        &["run", "done", busybox, "--restart=Never", "--env=WHO=ok", "--", "sh", "-c", "echo finished $WHO"],
        None,
    )
    .ok();
    kubectl(bin, &server, &["run", "failed", busybox, "--restart=Never", "--", "sh", "-c", "exit 7"], None).ok();

    // A server in a pod answers on its pod IP.
    eventually_within(wait, "web is Ready", || {
        pod_field(&server, "web", "{.status.containerStatuses[0].ready}") == "true"
    });
    assert_eq!(pod_field(&server, "web", "{.status.phase}"), "Running");
    let ip = pod_field(&server, "web", "{.status.podIP}");
    assert!(ip.starts_with("10.42."), "pod IP {ip:?}");
    assert_eq!(pod_field(&server, "web", "{.status.hostIP}"), "127.0.0.1");
    let page = || {
        let output = std::process::Command::new("curl")
            .args(["-sS", "--max-time", "2", &format!("http://{ip}:8080/index.html")])
            .output()
            .expect("curl");
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    };
    // The host may still hold a neighbour entry for an earlier pod with this address: allow it to expire.
    eventually_within(wait, "web answers on its pod IP", || page() == "hello-from-tug");
    let listed = kubectl(bin, &server, &["get", "pod", "web"], None).ok().stdout;
    assert!(listed.contains("1/1") && listed.contains("Running"), "{listed}");

    // Restart policies: a crashing container restarts with back-off, Never pods end by exit code.
    eventually_within(wait, "crash restarts and backs off", || {
        pod_field(&server, "crash", "{.status.containerStatuses[0].restartCount}").parse::<i32>().unwrap_or(0) >= 1
            && pod_field(&server, "crash", "{.status.containerStatuses[0].state.waiting.reason}") == "CrashLoopBackOff"
    });
    assert_eq!(pod_field(&server, "crash", "{.status.containerStatuses[0].lastState.terminated.exitCode}"), "3");
    until_phase(&server, "done", "Succeeded");
    until_phase(&server, "failed", "Failed");

    // tug killed and started again (its containerd with it) finds its containers running: same
    // container, no restart. (Pods are settled first: a container that ends while containerd is down
    // is reported by containerd with exit code 255, reason Unknown.)
    let container = pod_field(&server, "web", "{.status.containerStatuses[0].containerID}");
    server.kill_and_restart();
    eventually_within(wait, "the node reports again", || {
        node::ctr(server.data_dir(), &["version"]).contains("Server:")
            && pod_field(&server, "web", "{.status.containerStatuses[0].ready}") == "true"
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(pod_field(&server, "web", "{.status.containerStatuses[0].containerID}"), container);
    assert_eq!(pod_field(&server, "web", "{.status.containerStatuses[0].restartCount}"), "0");
    assert_eq!(page(), "hello-from-tug", "still serving after the restart");

    // kubectl logs goes through the API server to the kubelet: the current attempt, the previous one,
    // and -f of a container that has ended returns rather than waits.
    assert_eq!(kubectl(bin, &server, &["logs", "done"], None).ok().stdout, "finished ok\n");
    assert_eq!(kubectl(bin, &server, &["logs", "-f", "done"], None).ok().stdout, "finished ok\n");
    assert_eq!(kubectl(bin, &server, &["logs", "crash", "--previous"], None).ok().stdout, "crashing\n");
    let wrong = kubectl(bin, &server, &["logs", "done", "-c", "nope"], None);
    assert!(wrong.code != 0 && wrong.stderr.contains("container nope is not valid for pod done"), "{}", wrong.stderr);
    assert_eq!(pod_field(&server, "failed", "{.status.containerStatuses[0].state.terminated.exitCode}"), "7");
    let listed = kubectl(bin, &server, &["get", "pods"], None).ok().stdout;
    assert!(
        listed.contains("Completed") && listed.contains("Error") && listed.contains("CrashLoopBackOff"),
        "{listed}"
    );

    // Environment from ConfigMaps, Secrets and Services; a missing source holds the container back with the reason.
    kubectl(
        bin,
        &server,
        &["create", "configmap", "settings", "--from-literal=COLOR=blue", "--from-literal=SIZE=9"],
        None,
    )
    .ok();
    kubectl(bin, &server, &["create", "secret", "generic", "creds", "--from-literal=password=s3cret"], None).ok();
    let configured = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: configured\nspec:\n  restartPolicy: Never\n  containers:\n  - name: app\n    image: tug.local/busybox:1\n    command: [sh, -c, 'echo $CFG_COLOR $CFG_SIZE $PASSWORD; echo $KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT $KUBERNETES_PORT']\n    envFrom: [{prefix: CFG_, configMapRef: {name: settings}}]\n    env: [{name: PASSWORD, valueFrom: {secretKeyRef: {name: creds, key: password}}}]\n";
    kubectl(bin, &server, &["apply", "-f", "-"], Some(configured)).ok();
    let unconfigured =
        configured.replace("name: configured", "name: unconfigured").replace("name: settings", "name: missing");
    kubectl(bin, &server, &["apply", "-f", "-"], Some(&unconfigured)).ok();
    until_phase(&server, "configured", "Succeeded");
    // The API server's Service variables are there too, as in-cluster clients need them.
    assert_eq!(
        kubectl(bin, &server, &["logs", "configured"], None).ok().stdout,
        "blue 9 s3cret\n10.43.0.1:443 tcp://10.43.0.1:443\n"
    );
    eventually_within(wait, "unconfigured says why it waits", || {
        pod_field(&server, "unconfigured", "{.status.containerStatuses[0].state.waiting.reason}")
            == "CreateContainerConfigError"
    });
    assert_eq!(
        pod_field(&server, "unconfigured", "{.status.containerStatuses[0].state.waiting.message}"),
        "configmap \"missing\" not found"
    );

    // An image that is neither imported nor pullable: ErrImagePull, then ImagePullBackOff.
    kubectl(bin, &server, &["run", "unpullable", "--image=tug.local/missing:1"], None).ok();
    eventually_within(wait, "unpullable backs off", || {
        pod_field(&server, "unpullable", "{.status.containerStatuses[0].state.waiting.reason}") == "ImagePullBackOff"
    });

    // Limits reach the container's cgroup, its environment and the downward API.
    let limited = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: limited\nspec:\n  restartPolicy: Never\n  containers:\n  - name: app\n    image: tug.local/busybox:1\n    command: [sh, -c, 'cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes; echo $MEMORY_MI $CPU_M; cat /info/cpu']\n    resources: {limits: {memory: 64Mi, cpu: 500m}}\n    env:\n    - {name: MEMORY_MI, valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}}\n    - {name: CPU_M, valueFrom: {resourceFieldRef: {resource: requests.cpu, divisor: 1m}}}\n    volumeMounts: [{name: info, mountPath: /info}]\n  volumes:\n  - name: info\n    downwardAPI: {items: [{path: cpu, resourceFieldRef: {containerName: app, resource: limits.cpu, divisor: 100m}}]}\n";
    kubectl(bin, &server, &["apply", "-f", "-"], Some(limited)).ok();
    until_phase(&server, "limited", "Succeeded");
    assert_eq!(kubectl(bin, &server, &["logs", "limited"], None).ok().stdout, "67108864\n64 500\n5");
    assert_eq!(pod_field(&server, "limited", "{.status.qosClass}"), "Guaranteed");

    // Init containers run to success first; one that fails ends a pod that never restarts.
    let with_init = |name: &str, restart: &str, init: &str| {
        format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  restartPolicy: {restart}\n  initContainers:\n  - name: setup\n    image: tug.local/busybox:1\n    command: [sh, -c, '{init}']\n  containers:\n  - name: app\n    image: tug.local/busybox:1\n    command: [sleep, '3600']\n")
    };
    kubectl(bin, &server, &["apply", "-f", "-"], Some(&with_init("initialized", "Always", "sleep 1"))).ok();
    kubectl(bin, &server, &["apply", "-f", "-"], Some(&with_init("initfails", "Never", "exit 1"))).ok();
    eventually_within(wait, "initialized runs after its init container", || {
        pod_field(&server, "initialized", "{.status.phase}") == "Running"
    });
    assert_eq!(
        pod_field(&server, "initialized", "{.status.initContainerStatuses[0].state.terminated.reason}"),
        "Completed"
    );
    until_phase(&server, "initfails", "Failed");
    let listed = kubectl(bin, &server, &["get", "pod", "initfails"], None).ok().stdout;
    assert!(listed.contains("Init:Error"), "{listed}");

    // Deleting a pod stops and removes its containers, then the object.
    let uid = pod_field(&server, "web", "{.metadata.uid}");
    kubectl(bin, &server, &["delete", "pod", "web", "--grace-period=2"], None).ok();
    assert!(kubectl(bin, &server, &["get", "pod", "web"], None).code != 0, "web is gone once delete returns");
    let left =
        node::ctr(server.data_dir(), &["containers", "ls", "-q", &format!("labels.\"io.kubernetes.pod.uid\"=={uid}")]);
    assert!(left.trim().is_empty(), "containers left behind: {left}");

    // A pod deleted while the node was down: its containers go when the node is back.
    let uid = pod_field(&server, "crash", "{.metadata.uid}");
    server.set_agent(false);
    server.kill_and_restart();
    kubectl(bin, &server, &["delete", "pod", "crash", "--force", "--grace-period=0"], None).ok();
    server.set_agent(true);
    server.kill_and_restart();
    let of_crash = format!("labels.\"io.kubernetes.pod.uid\"=={uid}");
    eventually_within(wait, "the deleted pod's containers are removed", || {
        node::ctr(server.data_dir(), &["version"]).contains("Server:")
            && node::ctr(server.data_dir(), &["containers", "ls", "-q", &of_crash]).trim().is_empty()
    });
}

#[test]
fn probes_gate_readiness_and_endpoints_and_restart_what_fails_liveness() {
    if !node::available() {
        return;
    }
    let _one_node_at_a_time = node::exclusive();
    let server = node::ready_server();
    let bin = &kubectls()[0];
    let wait = Duration::from_secs(60);
    // Ready only once /tmp/www/ready exists (after 4 s); alive only while /tmp/alive exists (removed
    // after 6 s, so liveness fails and the container restarts, which makes both true again).
    let pods = r#"apiVersion: v1
kind: Pod
metadata:
  name: slow
  labels: {app: slow}
spec:
  containers:
  - name: app
    image: tug.local/busybox:1
    command: [sh, -c, 'mkdir -p /tmp/www; httpd -p 8080 -h /tmp/www; sleep 4; echo ok > /tmp/www/ready; exec sleep 3600']
    ports: [{name: http, containerPort: 8080}]
    readinessProbe:
      httpGet: {path: /ready, port: http}
      periodSeconds: 1
---
apiVersion: v1
kind: Pod
metadata:
  name: fragile
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: tug.local/busybox:1
    command: [sh, -c, 'touch /tmp/alive; sleep 6; rm /tmp/alive; exec sleep 3600']
    livenessProbe:
      exec: {command: [cat, /tmp/alive]}
      periodSeconds: 1
      failureThreshold: 2
---
apiVersion: v1
kind: Service
metadata:
  name: slow
spec:
  selector: {app: slow}
  ports: [{port: 80, targetPort: http}]
"#;
    kubectl(bin, &server, &["apply", "-f", "-"], Some(pods)).ok();
    eventually_within(wait, "slow runs", || pod_field(&server, "slow", "{.status.phase}") == "Running");
    let ready = || pod_field(&server, "slow", "{.status.containerStatuses[0].ready}");
    let endpoints = || jsonpath(bin, &server, &["endpoints", "slow"], "{.subsets[*].addresses[*].ip}");
    assert_eq!(ready(), "false", "not ready before its probe passes");
    assert!(endpoints().is_empty(), "an unready pod is not an endpoint: {}", endpoints());
    eventually_within(wait, "slow becomes ready", || ready() == "true");
    let ip = pod_field(&server, "slow", "{.status.podIP}");
    eventually_within(wait, "slow becomes an endpoint", || endpoints() == ip);

    eventually_within(wait, "fragile is restarted after failing liveness", || {
        pod_field(&server, "fragile", "{.status.containerStatuses[0].restartCount}").parse::<i32>().unwrap_or(0) >= 1
    });
    let events =
        kubectl(bin, &server, &["get", "events", "--field-selector", "involvedObject.name=fragile"], None).ok().stdout;
    assert!(events.contains("Unhealthy") && events.contains("Liveness probe failed"), "{events}");

    // A gRPC readiness probe asks the standard health service: here the test's own, on the host's
    // network, which a pod on the host's network reaches at its pod IP.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (health, port) = runtime.block_on(async {
        let (health, service) = tonic_health::server::health_reporter();
        health.set_service_status("tug.test", tonic_health::ServingStatus::NotServing).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        tokio::spawn(tonic::transport::Server::builder().add_service(service).serve_with_incoming(incoming));
        (health, port)
    });
    let checked = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: checked}}\nspec:\n  hostNetwork: true\n  containers:\n  - name: app\n    image: tug.local/busybox:1\n    command: [sleep, '3600']\n    readinessProbe: {{grpc: {{port: {port}, service: tug.test}}, periodSeconds: 1}}\n"
    );
    kubectl(bin, &server, &["apply", "-f", "-"], Some(&checked)).ok();
    let checked_ready = || pod_field(&server, "checked", "{.status.containerStatuses[0].ready}");
    eventually_within(wait, "NOT_SERVING is reported", || {
        let events = kubectl(bin, &server, &["get", "events", "--field-selector", "involvedObject.name=checked"], None);
        events.stdout.contains(r#"service unhealthy (responded with "NOT_SERVING")"#)
    });
    assert_eq!(checked_ready(), "false");
    runtime.block_on(health.set_service_status("tug.test", tonic_health::ServingStatus::Serving));
    eventually_within(wait, "SERVING makes the pod ready", || checked_ready() == "true");
}

#[test]
fn containers_run_as_their_security_context_says_with_a_managed_hosts_file() {
    if !node::available() {
        return;
    }
    let _one_node_at_a_time = node::exclusive();
    let server = node::ready_server();
    let bin = &kubectls()[0];
    let pod = r#"apiVersion: v1
kind: Pod
metadata: {name: guarded}
spec:
  securityContext: {runAsUser: 1000, runAsGroup: 3000, supplementalGroups: [4000]}
  hostAliases: [{ip: 10.1.2.3, hostnames: [db.internal, db]}]
  hostname: keeper
  subdomain: vault
  containers:
  - name: app
    image: tug.local/busybox:1
    command: [sleep, '3600']
    securityContext: {runAsUser: 2000, allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
"#;
    kubectl(bin, &server, &["apply", "-f", "-"], Some(pod)).ok();
    eventually_within(Duration::from_secs(60), "guarded runs", || {
        pod_field(&server, "guarded", "{.status.phase}") == "Running"
    });
    let exec = |script: &str| kubectl(bin, &server, &["exec", "guarded", "--", "sh", "-c", script], None).ok().stdout;
    assert_eq!(
        exec("id -u; id -g; id -G"),
        "2000\n3000\n3000 4000\n",
        "the container's user wins, the pod's group and groups apply"
    );
    assert_eq!(exec("grep CapEff /proc/self/status").split_whitespace().last(), Some("0000000000000000"));
    assert_eq!(exec("grep NoNewPrivs /proc/self/status").split_whitespace().last(), Some("1"));
    assert_eq!(exec("cat /proc/1/oom_score_adj"), "1000\n", "a BestEffort pod is the first the OOM killer takes");
    let hosts = exec("cat /etc/hosts");
    let ip = pod_field(&server, "guarded", "{.status.podIP}");
    assert!(hosts.starts_with("# Kubernetes-managed hosts file."), "{hosts}");
    let own = format!("{ip}\tkeeper.vault.default.svc.cluster.local\tkeeper\n");
    assert!(hosts.contains(&own) && hosts.contains("10.1.2.3\tdb.internal\tdb\n"), "{hosts}");
    assert_eq!(exec("hostname"), "keeper\n");
}

#[test]
fn a_chatty_containers_log_is_rotated_compressed_and_capped() {
    if !node::available() {
        return;
    }
    let _one_node_at_a_time = node::exclusive();
    let server = node::ready_server_with(&["--container-log-max-size", "64Ki", "--container-log-max-files", "4"]);
    let bin = &kubectls()[0];
    // About 200 KB a second: past the 64 KiB limit at every check.
    let chatty = "i=0; while true; do for j in $(seq 200); do echo line $i of a container that talks a lot; i=$((i+1)); done; sleep 0.1; done";
    kubectl(bin, &server, &["run", "chatty", "--image=tug.local/busybox:1", "--", "sh", "-c", chatty], None).ok();
    until_phase(&server, "chatty", "Running");
    let uid = pod_field(&server, "chatty", "{.metadata.uid}");
    let dir = server.data_dir().join("agent/pod-logs").join(format!("default_chatty_{uid}")).join("chatty");
    let files = || -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        names.sort();
        names
    };
    let compressed = common::within(Duration::from_secs(60), || files().iter().any(|f| f.ends_with(".gz")));
    assert!(compressed, "no rotated log was compressed: {:?}\n{}", files(), server.log());
    let mut kept = Vec::new();
    let capped = common::within(Duration::from_secs(30), || {
        kept = files();
        kept.len() == 4
            && kept.contains(&"0.log".to_string())
            && kept.iter().filter(|f| f.ends_with(".gz")).count() == 1
    });
    assert!(capped, "the current log, the two newest rotated ones and one compressed: {kept:?}");
    std::thread::sleep(Duration::from_secs(12));
    assert!(files().len() <= 5, "still capped (a compression may be under way): {:?}", files());
    let last = kubectl(bin, &server, &["logs", "chatty", "--tail=1"], None).ok().stdout;
    assert!(last.starts_with("line ") && last.ends_with("talks a lot\n"), "logs still read the current file: {last:?}");
}

#[test]
fn post_start_and_pre_stop_hooks_run_and_a_failed_post_start_restarts_the_container() {
    if !node::available() {
        return;
    }
    let _one_node_at_a_time = node::exclusive();
    let server = node::ready_server();
    let bin = &kubectls()[0];
    let host = tempfile::tempdir().expect("tempdir");
    let pod = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: hooked}}
spec:
  terminationGracePeriodSeconds: 20
  containers:
  - name: app
    image: tug.local/busybox:1
    command: [sleep, '3600']
    lifecycle:
      postStart: {{exec: {{command: [sh, -c, 'echo started > /tmp/started']}}}}
      preStop: {{exec: {{command: [sh, -c, 'echo stopping > /host/farewell']}}}}
    volumeMounts: [{{name: host, mountPath: /host}}]
  volumes: [{{name: host, hostPath: {{path: {}}}}}]
"#,
        host.path().display()
    );
    kubectl(bin, &server, &["apply", "-f", "-"], Some(&pod)).ok();
    until_phase(&server, "hooked", "Running");
    let started = kubectl(bin, &server, &["exec", "hooked", "--", "cat", "/tmp/started"], None).ok().stdout;
    assert_eq!(started, "started\n");
    kubectl(bin, &server, &["delete", "pod", "hooked", "--wait=true"], None).ok();
    assert_eq!(std::fs::read_to_string(host.path().join("farewell")).expect("the preStop hook's file"), "stopping\n");

    let failing = "apiVersion: v1\nkind: Pod\nmetadata: {name: unlucky}\nspec:\n  terminationGracePeriodSeconds: 2\n  containers:\n  - name: app\n    image: tug.local/busybox:1\n    command: [sleep, '3600']\n    lifecycle: {postStart: {exec: {command: [sh, -c, 'exit 1']}}}\n";
    kubectl(bin, &server, &["apply", "-f", "-"], Some(failing)).ok();
    eventually_within(Duration::from_secs(60), "the failed hook is reported and the container restarted", || {
        let events =
            kubectl(bin, &server, &["get", "events", "--field-selector", "involvedObject.name=unlucky"], None).stdout;
        events.contains("FailedPostStartHook")
            && pod_field(&server, "unlucky", "{.status.containerStatuses[0].restartCount}").parse::<u32>().unwrap_or(0)
                >= 1
    });
}

#[test]
fn static_pods_run_from_their_manifests_with_mirror_pods_in_the_api() {
    if !node::available() {
        return;
    }
    let _one_node_at_a_time = node::exclusive();
    let server = node::ready_server();
    let bin = &kubectls()[0];
    let manifests = server.data_dir().join("agent/pod-manifests");
    std::fs::create_dir_all(&manifests).expect("manifests dir");
    let manifest = "apiVersion: v1\nkind: Pod\nmetadata: {name: fixed, labels: {app: fixed}}\nspec:\n  containers:\n  - {name: app, image: tug.local/busybox:1, command: [sleep, '3600']}\n";
    std::fs::write(manifests.join("fixed.yaml"), manifest).expect("write manifest");
    let field = |path: &str| {
        kubectl(bin, &server, &["get", "pod", "fixed-edge-test", "-o", &format!("jsonpath={path}")], None).stdout
    };
    eventually_within(Duration::from_secs(60), "the mirror pod shows the static pod running", || {
        field("{.status.phase}") == "Running"
    });
    let mirror = pod_field(&server, "fixed-edge-test", "{.metadata.annotations.kubernetes\\.io/config\\.mirror}");
    assert!(!mirror.is_empty(), "the mirror pod is marked");
    assert_eq!(pod_field(&server, "fixed-edge-test", "{.metadata.ownerReferences[0].kind}"), "Node");
    let container = pod_field(&server, "fixed-edge-test", "{.status.containerStatuses[0].containerID}");
    let hostname = kubectl(bin, &server, &["exec", "fixed-edge-test", "--", "hostname"], None).ok().stdout;
    assert_eq!(hostname, "fixed-edge-test\n");

    // Deleting the mirror pod does not stop the static pod: the mirror comes back, same container.
    kubectl(bin, &server, &["delete", "pod", "fixed-edge-test", "--wait=false"], None).ok();
    let first_mirror = field("{.metadata.uid}");
    eventually_within(Duration::from_secs(60), "a new mirror pod shows the same container", || {
        field("{.metadata.uid}") != first_mirror
            && field("{.metadata.deletionTimestamp}").is_empty()
            && field("{.status.containerStatuses[0].containerID}") == container
    });

    // Removing the manifest removes the pod and its mirror.
    std::fs::remove_file(manifests.join("fixed.yaml")).expect("remove manifest");
    let id = container.trim_start_matches("containerd://").to_string();
    eventually_within(Duration::from_secs(60), "the static pod and its mirror are gone", || {
        kubectl(bin, &server, &["get", "pod", "fixed-edge-test"], None).code != 0
            && !node::ctr(server.data_dir(), &["containers", "ls", "-q"]).contains(&id)
    });
}

#[test]
fn an_existing_runtime_is_used_through_its_socket() {
    if !node::available() {
        return;
    }
    let _one_node_at_a_time = node::exclusive();
    // A containerd the test runs itself, with the config (and CNI config) a tug node writes, moved to a
    // directory of its own.
    let runtime_dir = tempfile::tempdir().expect("tempdir");
    {
        let first = node::ready_server();
        let from = first.data_dir().to_string_lossy().into_owned();
        let config = std::fs::read_to_string(first.data_dir().join("agent/containerd/config.toml")).expect("config");
        std::fs::create_dir_all(runtime_dir.path().join("agent/containerd")).expect("dir");
        let config = config.replace(&from, &runtime_dir.path().to_string_lossy());
        std::fs::write(runtime_dir.path().join("agent/containerd/config.toml"), config).expect("write config");
        let cni = runtime_dir.path().join("agent/etc/cni/net.d");
        std::fs::create_dir_all(&cni).expect("cni dir");
        for entry in std::fs::read_dir(first.data_dir().join("agent/etc/cni/net.d")).expect("cni config").flatten() {
            let text = std::fs::read_to_string(entry.path()).expect("conflist");
            std::fs::write(cni.join(entry.file_name()), text.replace(&from, &runtime_dir.path().to_string_lossy()))
                .expect("write conflist");
        }
    }
    let mut containerd = std::process::Command::new("containerd")
        .arg("--config")
        .arg(runtime_dir.path().join("agent/containerd/config.toml"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start containerd");
    let socket = node::containerd_socket(runtime_dir.path());
    assert!(common::within(Duration::from_secs(30), || socket.exists()), "containerd did not start");

    let flag = socket.to_string_lossy().into_owned();
    let server = node::ready_server_with(&["--container-runtime-endpoint", &flag]);
    assert!(containerd_pid(&server).is_none(), "tug started a containerd of its own");
    let bin = &kubectls()[0];
    kubectl(bin, &server, &["run", "outside", "--image=tug.local/busybox:1", "--", "sleep", "3600"], None).ok();
    eventually_within(Duration::from_secs(60), "the pod runs", || {
        pod_field(&server, "outside", "{.status.phase}") == "Running"
    });
    let containers = node::ctr(runtime_dir.path(), &["containers", "ls", "-q"]);
    let id = pod_field(&server, "outside", "{.status.containerStatuses[0].containerID}");
    assert!(containers.contains(id.trim_start_matches("containerd://")), "{id} not in:\n{containers}");
    drop(server);
    node::kill_containers(runtime_dir.path());
    let _ = containerd.kill();
    let _ = containerd.wait();
    node::clean_up(runtime_dir.path());
}
