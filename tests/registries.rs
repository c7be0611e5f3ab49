//! Image pulls from a real registry (Debian's docker-registry, with htpasswd authentication, on a
//! loopback port): a pod without credentials is refused (ErrImagePull, then ImagePullBackOff), one with
//! an `imagePullSecrets` docker-registry Secret runs, and one whose image names a registry that
//! registries.yaml mirrors to it, with the credentials in that file, runs too. Pull policies: Never
//! never pulls (ErrImageNeverPull), Always pulls even an image that is present.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{eventually_within, jsonpath, kubectl, kubectls, node};

const USER: &str = "puller";
const PASSWORD: &str = "s3cret-pull";

/// A docker-registry process serving `dir` at 127.0.0.1:`port` to `USER` only.
struct Registry {
    child: Child,
}

impl Registry {
    fn start(dir: &Path, port: u16) -> Registry {
        let htpasswd = Command::new("htpasswd").args(["-Bbn", USER, PASSWORD]).output().expect("run htpasswd");
        assert!(htpasswd.status.success(), "htpasswd failed");
        std::fs::write(dir.join("htpasswd"), &htpasswd.stdout).expect("htpasswd file");
        let config = format!(
            "version: 0.1\nstorage: {{filesystem: {{rootdirectory: {root}}}}}\nhttp: {{addr: '127.0.0.1:{port}'}}\nauth: {{htpasswd: {{realm: tug, path: {root}/htpasswd}}}}\n",
            root = dir.display()
        );
        std::fs::write(dir.join("config.yml"), config).expect("registry config");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("registry.log")).expect("log"))
            .spawn()
            .expect("start docker-registry");
        let up = common::within(Duration::from_secs(20), || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
        assert!(
            up,
            "docker-registry did not listen: {}",
            std::fs::read_to_string(dir.join("registry.log")).unwrap_or_default()
        );
        Registry { child }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address").port()
}

fn pod(name: &str, image: &str, secret: Option<&str>) -> String {
    let secrets = secret.map(|s| format!("  imagePullSecrets: [{{name: {s}}}]\n")).unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n{secrets}  containers:\n  - {{name: app, image: '{image}', command: [sleep, '3600']}}\n"
    )
}

#[test]
fn pulls_use_pull_secrets_and_registries_yaml() {
    if !node::available() {
        return;
    }
    let registry_present =
        Command::new("sh").args(["-c", "command -v docker-registry && command -v htpasswd"]).output();
    if !registry_present.is_ok_and(|o| o.status.success()) {
        assert!(!common::in_ci(), "docker-registry and htpasswd are missing; scripts/setup.sh installs them");
        eprintln!("skipped: docker-registry and htpasswd are missing; scripts/setup.sh installs them");
        return;
    }
    let _one_node_at_a_time = node::exclusive();
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let _registry = Registry::start(dir.path(), port);
    // Credentials in registries.yaml are for 127.0.0.1:<port>; `localhost:<port>` is the same registry
    // under a name the file does not cover, so pulls by that name need a pull secret.
    let registries = dir.path().join("registries.yaml");
    let file = format!(
        "mirrors:\n  mirror.tug.test:\n    endpoint: ['http://127.0.0.1:{port}']\nconfigs:\n  '127.0.0.1:{port}':\n    auth: {{username: {USER}, password: {PASSWORD}}}\n"
    );
    std::fs::write(&registries, file).expect("registries.yaml");
    let server = node::ready_server_with(&["--private-registry", &registries.to_string_lossy()]);
    let bin = &kubectls()[0];
    let run = |args: &[&str], stdin: Option<&str>| kubectl(bin, &server, args, stdin);

    // Put the test image into the registry with the node's own containerd, then forget it locally.
    let pushed = format!("localhost:{port}/tug/busybox:1");
    node::ctr(server.data_dir(), &["images", "tag", "tug.local/busybox:1", &pushed]);
    let push = Command::new("ctr")
        .arg("--address")
        .arg(node::containerd_socket(server.data_dir()))
        .args(["--namespace", "k8s.io", "images", "push", "--plain-http", "--user", &format!("{USER}:{PASSWORD}")])
        .arg(&pushed)
        .output()
        .expect("ctr push");
    assert!(push.status.success(), "push failed: {}", String::from_utf8_lossy(&push.stderr));
    node::ctr(server.data_dir(), &["images", "rm", &pushed]);

    let waiting =
        |name: &str| jsonpath(bin, &server, &["pod", name], "{.status.containerStatuses[0].state.waiting.reason}");
    let phase = |name: &str| jsonpath(bin, &server, &["pod", name], "{.status.phase}");
    run(&["apply", "-f", "-"], Some(&pod("anonymous", &pushed, None))).ok();
    eventually_within(Duration::from_secs(60), "a pull without credentials is refused", || {
        matches!(waiting("anonymous").as_str(), "ErrImagePull" | "ImagePullBackOff")
    });
    let events = run(&["get", "events", "--field-selector", "involvedObject.name=anonymous"], None).ok().stdout;
    assert!(events.contains("Failed to pull image") && events.contains("401"), "{events}");

    let server_flag = format!("--docker-server=localhost:{port}");
    let (user, password) = (format!("--docker-username={USER}"), format!("--docker-password={PASSWORD}"));
    run(&["create", "secret", "docker-registry", "regcred", &server_flag, &user, &password], None).ok();
    run(&["apply", "-f", "-"], Some(&pod("authorized", &pushed, Some("regcred")))).ok();
    eventually_within(Duration::from_secs(60), "the pull secret's pod runs", || phase("authorized") == "Running");

    let mirrored = "mirror.tug.test/tug/busybox:1";
    run(&["apply", "-f", "-"], Some(&pod("mirrored", mirrored, None))).ok();
    eventually_within(Duration::from_secs(60), "the mirrored image's pod runs", || phase("mirrored") == "Running");
    // Always pulls even what is present (tug.local is no registry); Never does not pull what is absent.
    let always = pod("always", "tug.local/busybox:1", None).replace("command:", "imagePullPolicy: Always, command:");
    run(&["apply", "-f", "-"], Some(&always)).ok();
    let never = pod("never", &format!("localhost:{port}/tug/absent:1"), None)
        .replace("command:", "imagePullPolicy: Never, command:");
    run(&["apply", "-f", "-"], Some(&never)).ok();
    eventually_within(Duration::from_secs(60), "Always pulls and fails, Never does not pull", || {
        matches!(waiting("always").as_str(), "ErrImagePull" | "ImagePullBackOff")
            && waiting("never") == "ErrImageNeverPull"
    });
    let hosts = std::fs::read_to_string(server.data_dir().join("agent/containerd/certs.d/mirror.tug.test/hosts.toml"))
        .expect("hosts.toml");
    assert!(hosts.contains(&format!("[host.\"http://127.0.0.1:{port}\"]")), "{hosts}");
}
