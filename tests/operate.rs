//! Running tug as an operator does: under a service manager that waits for `READY=1` and stops it with
//! SIGTERM, `tug kubectl` (also as a `kubectl` link) with the admin kubeconfig, `tug check-config`.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{served_serial, TugServer};

/// The next notification on `socket`, within `limit`.
fn notification(socket: &UnixDatagram, limit: Duration) -> String {
    socket.set_read_timeout(Some(limit)).expect("timeout");
    let mut buffer = [0u8; 4096];
    let n = socket.recv(&mut buffer).expect("a notification in time");
    String::from_utf8_lossy(&buffer[..n]).into_owned()
}

#[test]
fn systemd_is_told_when_the_server_serves_and_a_sigterm_stops_it_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind the notify socket");
    let kubeconfig = dir.path().join("kubeconfig.yaml");
    let data_dir = dir.path().join("data");
    let start = || {
        Command::new(common::server_binary())
            .args(["server", "--disable-agent", "--bind-address", "127.0.0.1", "--https-listen-port", "0"])
            .args(["--config", "/dev/null", "--data-dir"])
            .arg(&data_dir)
            .arg("--write-kubeconfig")
            .arg(&kubeconfig)
            .env("NOTIFY_SOCKET", &socket_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tug server")
    };
    let kubectl = |args: &[&str]| {
        let bin = common::kubectls().into_iter().next().expect("a kubectl");
        Command::new(bin).env("KUBECONFIG", &kubeconfig).args(args).output().expect("run kubectl")
    };
    let child = start();
    let ready = notification(&socket, Duration::from_secs(30));
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready}");
    // Ready means serving: the first request after the notification succeeds.
    let readyz = kubectl(&["get", "--raw", "/readyz"]);
    assert!(readyz.status.success(), "{}", String::from_utf8_lossy(&readyz.stderr));
    assert!(kubectl(&["create", "configmap", "kept", "--from-literal=a=b"]).status.success());

    let asked = Instant::now();
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM);
    let stopping = notification(&socket, Duration::from_secs(10));
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping}");
    let status = common::terminate(child).expect("exit status");
    assert!(status.success(), "tug exited with {status} on SIGTERM");
    // Bounded by tug's own stop timeouts (20 s in all), well under systemd's default of 90 s.
    assert!(asked.elapsed() < Duration::from_secs(25), "the stop took {:?}", asked.elapsed());

    let child = start();
    notification(&socket, Duration::from_secs(30));
    let kept = kubectl(&["get", "configmap", "kept", "-o", "jsonpath={.data.a}"]);
    assert_eq!(String::from_utf8_lossy(&kept.stdout), "b");
    common::terminate(child);
}

#[test]
fn a_server_starts_and_serves_without_a_default_route() {
    if !nix::unistd::geteuid().is_root() {
        assert!(!common::in_ci(), "this test needs root (a network namespace)");
        return;
    }
    // A network namespace with loopback alone: no route anywhere (an air-gapped device).
    let netns = format!("tugnoroute{}", std::process::id());
    let ip = |args: &[&str]| assert!(Command::new("ip").args(args).status().expect("ip").success(), "ip {args:?}");
    ip(&["netns", "add", &netns]);
    ip(&["-n", &netns, "link", "set", "lo", "up"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = UnixDatagram::bind(dir.path().join("notify.sock")).expect("bind the notify socket");
    let kubeconfig = dir.path().join("kubeconfig.yaml");
    let child = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{netns}"))
        .arg(common::server_binary())
        .args(["server", "--disable-agent", "--https-listen-port", "0", "--config", "/dev/null", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--write-kubeconfig")
        .arg(&kubeconfig)
        .env("NOTIFY_SOCKET", dir.path().join("notify.sock"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tug server");
    let ready = notification(&socket, Duration::from_secs(30));
    let kubectl = common::kubectls().into_iter().next().expect("a kubectl");
    let readyz = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{netns}"))
        .arg(kubectl)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["get", "--raw", "/readyz"])
        .output()
        .expect("kubectl");
    common::terminate(child);
    let _ = Command::new("ip").args(["netns", "del", &netns]).status();
    assert!(ready.contains("READY=1"), "{ready}");
    assert_eq!(String::from_utf8_lossy(&readyz.stdout), "ok", "{}", String::from_utf8_lossy(&readyz.stderr));
}

/// Runs the tug binary (or `program`, a link to it) with `args` and only `env` besides PATH and HOME.
fn tug_kubectl(program: &Path, args: &[&str], env: &[(&str, &Path)], path: &str) -> std::process::Output {
    let mut command = Command::new(program);
    command.env_clear().env("PATH", path).env("HOME", "/nonexistent").args(args);
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("run tug kubectl")
}

#[test]
fn tug_kubectl_runs_kubectl_with_the_admin_kubeconfig() {
    let server = TugServer::start();
    let tug = common::server_binary();
    let kubectl = common::kubectls().into_iter().next().expect("a kubectl");
    let kubectl_dir = tempfile::tempdir().expect("tempdir");
    std::os::unix::fs::symlink(&kubectl, kubectl_dir.path().join("kubectl")).expect("kubectl on PATH");
    let path = kubectl_dir.path().display().to_string();
    let config = server.kubeconfig();
    let stdout = |output: std::process::Output| {
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };

    let args = ["kubectl", "get", "namespace", "default", "-o", "name"];
    assert_eq!(stdout(tug_kubectl(&tug, &args, &[("TUG_KUBECONFIG", &config)], &path)), "namespace/default\n");
    // KUBECONFIG, when set, is the user's choice.
    let env = [("KUBECONFIG", config.as_path()), ("TUG_KUBECONFIG", Path::new("/nonexistent"))];
    assert_eq!(stdout(tug_kubectl(&tug, &args, &env, &path)), "namespace/default\n");
    // kubectl's own exit code comes through.
    let missing = tug_kubectl(&tug, &["kubectl", "get", "namespace", "nope"], &[("TUG_KUBECONFIG", &config)], &path);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("namespaces \"nope\" not found"));

    // As a `kubectl` link to tug earlier on PATH (what install.sh makes): the next kubectl runs.
    let links = tempfile::tempdir().expect("tempdir");
    std::os::unix::fs::symlink(&tug, links.path().join("kubectl")).expect("link");
    let linked_path = format!("{}:{path}", links.path().display());
    let output = tug_kubectl(&links.path().join("kubectl"), &args[1..], &[("TUG_KUBECONFIG", &config)], &linked_path);
    assert_eq!(stdout(output), "namespace/default\n");
    // Without a tug kubeconfig the link leaves kubectl to its own defaults (a user's ~/.kube/config).
    std::fs::create_dir(links.path().join(".kube")).expect("~/.kube");
    let own = "apiVersion: v1\nkind: Config\ncurrent-context: users-own\ncontexts: [{name: users-own, context: {cluster: c}}]\n";
    std::fs::write(links.path().join(".kube/config"), own).expect("~/.kube/config");
    let no_config = [("TUG_KUBECONFIG", Path::new("/nonexistent/tug.yaml")), ("HOME", links.path())];
    let output = tug_kubectl(&links.path().join("kubectl"), &["config", "current-context"], &no_config, &linked_path);
    assert_eq!(stdout(output), "users-own\n");

    let output = tug_kubectl(&tug, &args, &[("TUG_KUBECONFIG", Path::new("/nonexistent/tug.yaml"))], &path);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "tug: fatal: no kubeconfig at /nonexistent/tug.yaml (run this where `tug server` runs, or set KUBECONFIG)\n"
    );
    let output = tug_kubectl(&tug, &args, &[("TUG_KUBECONFIG", &config)], "/nonexistent");
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "tug: fatal: kubectl is not on PATH; install it (the package kubectl)\n"
    );
}

#[test]
fn check_config_passes_on_a_prepared_host_and_names_what_fails_with_a_hint() {
    let busy = std::net::TcpListener::bind("0.0.0.0:0").expect("bind");
    let port = busy.local_addr().expect("address").port().to_string();
    let data_dir = tempfile::tempdir().expect("tempdir");
    let output = Command::new(common::server_binary())
        .args(["check-config", "--https-listen-port", &port, "--data-dir"])
        .arg(data_dir.path())
        .output()
        .expect("run tug check-config");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.starts_with("tug: fatal: ") && stderr.trim_end().ends_with(" of 12 checks failed"), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    let api = lines.iter().position(|l| l.starts_with("API port ")).expect("the API port's line");
    assert!(lines[api].contains(&format!("FAIL  {port}: Address already in use")), "{stdout}");
    assert!(lines[api + 1].trim_start().starts_with("hint: another program holds it"), "{stdout}");
    for name in ["cgroups", "overlayfs", "br_netfilter", "ip_forward", "containerd", "runc", "CNI plugins", "iptables"]
    {
        let line = lines.iter().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name} line:\n{stdout}"));
        // The test command installs every prerequisite; elsewhere a failure is the host's, not tug's.
        assert!(!common::in_ci() || line.contains("  pass  "), "{stdout}");
    }
    assert!(stdout.contains(&format!("fdatasyncs in {}", data_dir.path().display())), "{stdout}");
}

#[test]
fn manifests_in_the_data_dir_are_applied_at_start_and_on_change_but_skipped_and_deleted_ones_are_not() {
    let mut server = TugServer::start();
    let kubectl = common::kubectls().into_iter().next().expect("a kubectl");
    let manifests = server.data_dir().join("server/manifests");
    let app = "apiVersion: v1\nkind: Namespace\nmetadata: {name: demo}\n---\n\
        apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: demo}\ndata: {level: one}\n";
    std::fs::write(manifests.join("app.yaml"), app).expect("write app.yaml");
    std::fs::write(manifests.join("off.yaml"), "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: off}\n")
        .expect("write off.yaml");
    std::fs::write(manifests.join("off.yaml.skip"), "").expect("write off.yaml.skip");
    std::fs::write(manifests.join("broken.yaml"), "apiVersion: v1\nkind: ConfigMap\n").expect("write broken.yaml");
    let level = |server: &TugServer| {
        common::kubectl(
            &kubectl,
            server,
            &["-n", "demo", "get", "cm", "settings", "-o", "jsonpath={.data.level}"],
            None,
        )
        .stdout
    };
    common::eventually("app.yaml applied", || level(&server) == "one");
    let managers = common::jsonpath(
        &kubectl,
        &server,
        &["-n", "demo", "cm", "settings"],
        "{.metadata.managedFields[*].manager}/{.metadata.managedFields[*].operation}",
    );
    assert_eq!(managers, "tug/Apply");
    let events = || {
        common::kubectl(
            &kubectl,
            &server,
            &[
                "-n",
                "kube-system",
                "get",
                "events",
                "-o",
                "jsonpath={range .items[*]}{.type} {.reason} {.message}{\"\\n\"}{end}",
            ],
            None,
        )
        .stdout
    };
    common::eventually("the events of both files", || {
        let events = events();
        events.contains("Normal AppliedManifest applied 2 objects from manifests/app.yaml")
            && events.contains("Warning ManifestFailed manifests/broken.yaml: document 0: metadata.name is required")
    });

    // A change is applied again, and wins over a hand edit of its fields.
    common::kubectl(
        &kubectl,
        &server,
        &["-n", "demo", "patch", "cm", "settings", "-p", r#"{"data":{"level":"edited"}}"#],
        None,
    )
    .ok();
    std::fs::write(manifests.join("app.yaml"), app.replace("level: one", "level: two")).expect("rewrite app.yaml");
    common::eventually("the change applied", || level(&server) == "two");
    let off = common::kubectl(&kubectl, &server, &["get", "cm", "off"], None);
    assert!(off.stderr.contains("not found"), "a skipped file was applied: {}", off.stdout);

    // A deleted file deletes nothing; a file added while the server is down is applied when it starts.
    std::fs::remove_file(manifests.join("app.yaml")).expect("remove app.yaml");
    server.terminate();
    std::fs::write(
        manifests.join("later.json"),
        r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "later"}}"#,
    )
    .expect("write later.json");
    server.restart();
    common::eventually("later.json applied at start", || {
        common::kubectl(&kubectl, &server, &["get", "cm", "later"], None).code == 0
    });
    assert_eq!(level(&server), "two");
}

/// The HTTP status of a node-credentials request with basic credentials `node:<secret>` over HTTP/1.1,
/// as agents send it: with its empty body, 400 means the token was accepted, 401 that it was not.
fn join_status(server: &TugServer, secret: &str) -> String {
    let output = Command::new("curl")
        .args(["-s", "--http1.1", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(server.data_dir().join("server/tls/server-ca.crt"))
        .args(["-u", &format!("node:{secret}"), "-d", "{}"])
        .arg(format!("https://127.0.0.1:{}/v1-tug/node-credentials", server.port))
        .output()
        .expect("curl");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn bootstrap_tokens_are_created_listed_accepted_for_joins_until_they_expire_or_are_deleted() {
    let server = TugServer::start();
    let output = common::tug_admin(&server, &["token", "create", "--ttl", "2h", "--description", "the lab"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let token = String::from_utf8_lossy(&output.stdout).trim().to_string();
    let server_token = std::fs::read_to_string(server.data_dir().join("server/token")).expect("server token");
    let ca_hash = server_token.split("::").next().expect("hash");
    let secret = token.strip_prefix(&format!("{ca_hash}::")).expect("K10<the CA's hash>::<id>.<secret>");
    let (id, _) = secret.split_once('.').expect("<id>.<secret>");
    assert_eq!((id.len(), secret.len()), (6, 23), "{token}");

    let list = String::from_utf8_lossy(&common::tug_admin(&server, &["token", "list"]).stdout).into_owned();
    let line = list.lines().find(|l| l.starts_with(id)).unwrap_or_else(|| panic!("{id} not listed:\n{list}"));
    assert!(line.contains(" 1h ") && line.contains("authentication,signing") && line.ends_with("the lab"), "{line}");
    assert_eq!(join_status(&server, secret), "400", "a valid bootstrap token was refused");
    assert_eq!(join_status(&server, &format!("{id}.0000000000000000")), "401");

    let expiring = common::tug_admin(&server, &["token", "create", "--ttl", "1s", "abcdef.0123456789abcdef"]);
    assert!(expiring.status.success(), "{}", String::from_utf8_lossy(&expiring.stderr));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(join_status(&server, "abcdef.0123456789abcdef"), "401", "an expired token was accepted");
    common::eventually("the expired token is deleted", || {
        !String::from_utf8_lossy(&common::tug_admin(&server, &["token", "list"]).stdout).contains("abcdef")
    });

    // By the whole token, as `create` printed it.
    let deleted = common::tug_admin(&server, &["token", "delete", &token]);
    assert_eq!(String::from_utf8_lossy(&deleted.stdout), format!("bootstrap token \"{id}\" deleted\n"));
    assert_eq!(join_status(&server, secret), "401", "a deleted token was accepted");

    let bad = common::tug_admin(&server, &["token", "create", "not-a-token"]);
    assert_eq!(bad.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("not <id>.<secret>"), "{stderr}");
}

#[test]
fn certificates_are_listed_and_rotated_ones_are_reissued_and_used_without_a_restart() {
    let server = TugServer::start_with(&["--certificate-check-interval", "1s"]);
    let tug = |args: &[&str]| {
        let output =
            Command::new(common::server_binary()).args(args).arg("-d").arg(server.data_dir()).output().expect("tug");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let check = tug(&["certificate", "check"]);
    for (file, subject) in
        [("serving-kube-apiserver", "kube-apiserver"), ("client-admin", "system:admin"), ("server-ca", "tug-server-ca")]
    {
        let line = check
            .lines()
            .find(|l| l.starts_with(&format!("server/tls/{file}.crt")))
            .unwrap_or_else(|| panic!("{check}"));
        let days = if file == "server-ca" { ["3649", "3650"] } else { ["364", "365"] };
        assert!(line.contains(subject) && days.iter().any(|d| line.ends_with(&format!("ok, {d} days left"))), "{line}");
    }

    let address = format!("127.0.0.1:{}", server.port);
    let serial = served_serial(&address);
    assert!(serial.starts_with("serial="), "{serial}");
    let kubeconfig = std::fs::read_to_string(server.kubeconfig()).expect("kubeconfig");
    let rotated = tug(&["certificate", "rotate", "--service", "serving-kube-apiserver", "--service", "client-admin"]);
    assert!(rotated.contains("serving-kube-apiserver: set aside in"), "{rotated}");
    common::eventually_within(Duration::from_secs(20), "a new serving certificate is served", || {
        let now = served_serial(&address);
        now.starts_with("serial=") && now != serial
    });
    common::eventually_within(Duration::from_secs(20), "the kubeconfig has the new admin certificate", || {
        std::fs::read_to_string(server.kubeconfig()).is_ok_and(|now| now != kubeconfig)
    });
    let kubectl = common::kubectls().into_iter().next().expect("a kubectl");
    let events = common::kubectl(
        &kubectl,
        &server,
        &["-n", "kube-system", "get", "events", "-o", "jsonpath={range .items[*]}{.reason}: {.message}{\"\\n\"}{end}"],
        None,
    )
    .ok()
    .stdout;
    assert!(events.contains("CertificateRenewed: renewed serving-kube-apiserver"), "{events}");
    assert!(events.contains("CertificateRenewed: renewed client-admin"), "{events}");
}

#[test]
fn the_server_token_rotates_on_the_running_server_and_outlives_a_restart_with_the_old_one() {
    let mut server = TugServer::start();
    let token_file = server.data_dir().join("server/token");
    let old = std::fs::read_to_string(&token_file).expect("token file").trim().to_string();
    let (hash, old_secret) = old.rsplit_once("::server:").expect("K10<hash>::server:<secret>");
    let (hash, old_secret) = (hash.to_string(), old_secret.to_string());
    assert_eq!(join_status(&server, &old_secret), "400");

    let output = common::tug_admin(&server, &["token", "rotate", "--new-token", "fresh-secret-1"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let new = format!("{hash}::server:fresh-secret-1");
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), new);
    common::eventually_within(Duration::from_secs(15), "the server follows the rotation", || {
        std::fs::read_to_string(&token_file).is_ok_and(|t| t.trim() == new)
            && join_status(&server, &old_secret) == "401"
    });
    assert_eq!(join_status(&server, "fresh-secret-1"), "400");

    // Restarted with the old token on its command line (an env file not yet updated): the rotation holds.
    server.terminate();
    server.flags_mut().extend(["--token".to_string(), old_secret.clone()]);
    server.restart();
    assert_eq!(join_status(&server, &old_secret), "401");
    assert_eq!(join_status(&server, "fresh-secret-1"), "400");
    assert_eq!(std::fs::read_to_string(&token_file).expect("token file").trim(), new);

    let bad = common::tug_admin(&server, &["token", "rotate", "--new-token", "two words"]);
    assert_eq!(bad.status.code(), Some(2), "{}", String::from_utf8_lossy(&bad.stderr));
}
