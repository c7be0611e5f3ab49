//! install.sh for real, as an operator runs it: `curl -sfL http://…/install.sh | sh -` against a release
//! directory served on 127.0.0.1 (the built binary and its checksum), inside a throwaway root (a chroot
//! over the host's read-only /usr) whose systemctl, openrc and package managers are stubs recording their
//! calls. The uninstall scripts run in namespaces of their own (pid, network, mounts), so what they kill
//! and clean up is only theirs. Then, on a real node: an upgrade keeps objects and running pods, and
//! tug-killall.sh leaves no container, mount, interface or chain behind. Needs root; fails when CI=true
//! and it is not.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::{jsonpath, kubectl, kubectls, node};

/// The init system a throwaway root pretends to have.
#[derive(Clone, Copy, PartialEq)]
enum Init {
    Systemd,
    OpenRc,
    None,
}

/// A throwaway root: `root/` (chrooted into) and `usr-local/` (mounted on its /usr/local).
struct Root {
    dir: tempfile::TempDir,
}

/// The package managers, stubs in every root: they record their calls and fail.
const PACKAGE_MANAGERS: &[&str] = &["apt-get", "apk", "dnf", "yum", "zypper"];

/// A stub command: records its call; systemctl and rc-service keep whether the service runs.
const STUB: &str = r#"#!/bin/sh
echo "$(basename "$0") $*" >> /stubs/calls
case "$(basename "$0") $1 $2" in
    "systemctl is-active"*|"rc-service "*" status") [ -f /stubs/running ] ;;
    "systemctl restart"*|"rc-service "*" restart") touch /stubs/running ;;
    "systemctl stop"*|"rc-service "*" stop") rm -f /stubs/running ;;
    "apt-get"*|"apk"*|"dnf"*|"yum"*|"zypper"*) exit 1 ;;
esac
"#;

impl Root {
    /// A root with the directories a host with `init` has, and the stubs.
    fn new(init: Init) -> Root {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        for sub in ["etc/alternatives", "var", "run", "usr", "dev", "proc", "stubs", "opt"] {
            std::fs::create_dir_all(root.join(sub)).expect("skeleton");
        }
        std::fs::create_dir_all(dir.path().join("usr-local/bin")).expect("usr-local");
        std::fs::create_dir(root.join("tmp")).expect("tmp");
        std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777)).expect("chmod tmp");
        for link in ["bin", "sbin", "lib", "lib64"] {
            let host = Path::new("/").join(link);
            if let Ok(target) = std::fs::read_link(&host) {
                std::os::unix::fs::symlink(target, root.join(link)).expect("link");
            } else {
                assert!(!host.exists(), "the installer's tests need a merged /usr (/{link} a link into /usr)");
            }
        }
        let stubs: &[&str] = match init {
            Init::Systemd => {
                for dir in ["run/systemd/system", "etc/systemd/system"] {
                    std::fs::create_dir_all(root.join(dir)).expect("systemd dirs");
                }
                &["systemctl"]
            }
            Init::OpenRc => {
                for dir in ["etc/init.d", "etc/logrotate.d"] {
                    std::fs::create_dir_all(root.join(dir)).expect("openrc dirs");
                }
                &["rc-update", "rc-service", "openrc-run"]
            }
            Init::None => &[],
        };
        for stub in stubs.iter().chain(PACKAGE_MANAGERS) {
            let path = root.join("stubs").join(stub);
            std::fs::write(&path, STUB).expect("stub");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod stub");
        }
        Root { dir }
    }

    /// Puts the built binary at /opt/tug and install.sh at /tmp/install.sh: an install without network.
    fn stage_local_install(&self) {
        link_or_copy(&common::server_binary(), &self.path("/opt/tug"));
        std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("install.sh"), self.path("/tmp/install.sh"))
            .expect("copy install.sh");
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// A path as seen inside the root.
    fn path(&self, inside: &str) -> PathBuf {
        match inside.strip_prefix("/usr/local/") {
            Some(rest) => self.dir.path().join("usr-local").join(rest),
            None => self.root().join(inside.trim_start_matches('/')),
        }
    }

    fn read(&self, inside: &str) -> String {
        std::fs::read_to_string(self.path(inside)).unwrap_or_else(|e| panic!("{inside}: {e}"))
    }

    /// Runs `script` with `sh -c` in the root, with only `env` (and PATH) in its environment.
    fn run(&self, env: &[(&str, &str)], script: &str, how: How) -> Output {
        self.run_hiding(env, script, how, &[])
    }

    /// [`Root::run`] with the programs at `hidden` (absolute paths) made unusable.
    fn run_hiding(&self, env: &[(&str, &str)], script: &str, how: How, hidden: &[&str]) -> Output {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/chroot.sh");
        let mut command = Command::new("unshare");
        command.env("TUG_TEST_HIDE", hidden.join(" ")).arg("--mount");
        if how == How::Isolated {
            command.args(["--pid", "--fork", "--net"]);
        }
        command
            .arg("sh")
            .arg(fixture)
            .arg(self.root())
            .arg(self.dir.path().join("usr-local"))
            .arg(if how == How::ReadOnlyUsrLocal { "true" } else { "false" })
            .args(["env", "-i", "PATH=/stubs:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]);
        command.args(env.iter().map(|(k, v)| format!("{k}={v}")));
        command.args(["sh", "-c", script]);
        command.output().expect("run unshare")
    }

    /// The stubs' calls so far (each a line: the command and its arguments), and forgets them.
    fn take_calls(&self) -> String {
        let path = self.path("/stubs/calls");
        let calls = std::fs::read_to_string(&path).unwrap_or_default();
        let _ = std::fs::remove_file(path);
        calls
    }

    /// Every path in the root and its /usr/local but the stubs' records, for "nothing left behind".
    fn tree(&self) -> BTreeSet<String> {
        fn walk(dir: &Path, base: &Path, into: &mut BTreeSet<String>) {
            for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
                let path = entry.path();
                into.insert(path.strip_prefix(base).expect("under base").display().to_string());
                if entry.file_type().expect("file type").is_dir() {
                    walk(&path, base, into);
                }
            }
        }
        let mut paths = BTreeSet::new();
        walk(self.dir.path(), self.dir.path(), &mut paths);
        paths.retain(|p| !p.starts_with("root/stubs/calls") && !p.starts_with("root/stubs/running"));
        paths
    }
}

#[derive(Clone, Copy, PartialEq)]
enum How {
    /// In the host's pid and network namespaces (to reach the release server on 127.0.0.1).
    Plain,
    /// With /usr/local read-only.
    ReadOnlyUsrLocal,
    /// In pid and network namespaces of its own.
    Isolated,
}

/// A release tree served over HTTP on 127.0.0.1, as scripts/release.sh lays it out: `latest/tug-amd64`
/// (the built binary until another is published), its checksum file, install.sh.
struct Releases {
    dir: tempfile::TempDir,
    port: u16,
}

impl Releases {
    fn serve() -> Releases {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("install.sh");
        std::fs::copy(script, dir.path().join("install.sh")).expect("install.sh");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        let base = dir.path().to_path_buf();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let base = base.clone();
                std::thread::spawn(move || serve_one(&base, stream));
            }
        });
        let releases = Releases { dir, port };
        releases.publish(&common::server_binary(), None);
        releases
    }

    /// Publishes `binary` as the latest release with scripts/release.sh, its checksum file then replaced
    /// by one naming `checksum` when given.
    fn publish(&self, binary: &Path, checksum: Option<&str>) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/release.sh");
        let output = Command::new(script)
            .arg("--out")
            .arg(self.dir.path())
            .arg("--binary")
            .arg(binary)
            .arg(arch())
            .output()
            .expect("run scripts/release.sh");
        succeeded(output);
        if let Some(sum) = checksum {
            let file = self.dir.path().join(format!("latest/sha256sum-{}.txt", arch()));
            std::fs::write(file, format!("{sum}  tug-{}\n", arch())).expect("checksum file");
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The operator's one line, with `args` after `sh -s -`.
    fn one_line(&self, args: &str) -> String {
        format!("curl -sfL {}/install.sh | sh -s - {args}", self.url())
    }
}

fn serve_one(base: &Path, mut stream: std::net::TcpStream) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
    let mut request = String::new();
    let _ = reader.read_line(&mut request);
    let mut header = String::new();
    while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
        header.clear();
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/").trim_start_matches('/').to_string();
    match std::fs::File::open(base.join(&path)).ok().filter(|_| !path.contains("..")) {
        Some(mut file) => {
            let length = file.metadata().map(|m| m.len()).unwrap_or(0);
            let _ = write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n");
            let _ = std::io::copy(&mut file, &mut stream);
        }
        None => {
            let _ = write!(stream, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    }
}

/// A hard link of `from` at `to` (the test binary is large), a copy across file systems.
fn link_or_copy(from: &Path, to: &Path) {
    std::fs::hard_link(from, to).or_else(|_| std::fs::copy(from, to).map(drop)).expect("link or copy");
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        _ => "armv7",
    }
}

fn sha256(path: &Path) -> String {
    let output = Command::new("sha256sum").arg(path).output().expect("sha256sum");
    String::from_utf8_lossy(&output.stdout).split_whitespace().next().expect("sum").to_string()
}

/// Whether the tests can run: root (a chroot and namespaces); false (skip) outside CI, a failure in CI.
fn prerequisites() -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root && common::in_ci() {
        panic!("the installer's tests need root");
    }
    root
}

/// Asserts the command succeeded; its standard output.
fn succeeded(output: Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "failed: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    stdout
}

fn shellcheck(root: &Root, inside: &str) {
    let output =
        Command::new("shellcheck").arg(root.path(inside)).output().expect("shellcheck (scripts/setup.sh installs it)");
    assert!(output.status.success(), "{inside} is not shellcheck-clean:\n{}", String::from_utf8_lossy(&output.stdout));
}

/// The built binary made different (an upgrade): bytes after the ELF image change nothing when it runs.
fn newer_binary(dir: &Path) -> PathBuf {
    let path = dir.join("tug-newer");
    std::fs::copy(common::server_binary(), &path).expect("copy binary");
    std::fs::OpenOptions::new().append(true).open(&path).expect("open").write_all(b"newer").expect("append");
    path
}

#[test]
fn a_server_installs_with_systemd_restarts_only_on_change_and_uninstalls_without_a_trace() {
    if !prerequisites() {
        return;
    }
    let releases = Releases::serve();
    let root = Root::new(Init::Systemd);
    let before = root.tree();
    let env = [("INSTALL_TUG_DOWNLOAD_URL", releases.url()), ("TUG_TOKEN", "s3cret".to_string())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let line = releases.one_line("--disable-agent --node-label 'site=50% $HOME'");
    succeeded(root.run(&env, &line, How::Plain));

    let installed = root.path("/usr/local/bin/tug");
    let meta = std::fs::metadata(&installed).expect("installed binary");
    assert_eq!((meta.mode() & 0o7777, meta.uid(), meta.gid()), (0o755, 0, 0));
    assert_eq!(sha256(&installed), sha256(&common::server_binary()));
    assert_eq!(std::fs::read_link(root.path("/usr/local/bin/kubectl")).expect("kubectl link"), Path::new("tug"));
    let unit = root.read("/etc/systemd/system/tug.service");
    for line in [
        "Type=notify",
        "Delegate=yes",
        "KillMode=process",
        "Restart=always",
        "EnvironmentFile=-/etc/systemd/system/tug.service.env",
    ] {
        assert!(unit.lines().any(|l| l == line), "the unit lacks {line}:\n{unit}");
    }
    assert!(
        unit.contains(r#"ExecStart=/usr/local/bin/tug server "--disable-agent" "--node-label" "site=50%% $$HOME""#),
        "{unit}"
    );
    let env_file = root.path("/etc/systemd/system/tug.service.env");
    assert_eq!(std::fs::metadata(&env_file).expect("env file").mode() & 0o777, 0o600);
    assert!(root.read("/etc/systemd/system/tug.service.env").contains("TUG_TOKEN='s3cret'"));
    for script in ["/usr/local/bin/tug-killall.sh", "/usr/local/bin/tug-uninstall.sh"] {
        assert_eq!(std::fs::metadata(root.path(script)).expect(script).mode() & 0o777, 0o755);
        shellcheck(&root, script);
    }
    let calls = root.take_calls();
    assert!(calls.contains("systemctl daemon-reload\nsystemctl enable tug\n"), "{calls}");
    assert!(calls.contains("systemctl restart tug\n"), "{calls}");
    assert!(!calls.contains("apt-get"), "the runtime is not needed with --disable-agent: {calls}");

    // The same again: nothing downloaded, nothing restarted.
    let output = succeeded(root.run(&env, &line, How::Plain));
    assert!(output.contains("already this release"), "{output}");
    let calls = root.take_calls();
    assert!(!calls.contains("restart") && !calls.contains("daemon-reload"), "{calls}");

    // A new release: downloaded, checked, installed, restarted.
    let work = tempfile::tempdir().expect("tempdir");
    let newer = newer_binary(work.path());
    releases.publish(&newer, None);
    succeeded(root.run(&env, &line, How::Plain));
    assert_eq!(sha256(&installed), sha256(&newer));
    let calls = root.take_calls();
    assert!(calls.contains("systemctl restart tug") && !calls.contains("daemon-reload"), "{calls}");

    // Other flags: a new unit, reloaded and restarted.
    succeeded(root.run(&env, &releases.one_line("--disable-agent"), How::Plain));
    let calls = root.take_calls();
    assert!(calls.contains("systemctl daemon-reload") && calls.contains("systemctl restart tug"), "{calls}");

    // An agent beside the server: removing one service keeps tug and its data for the other.
    let agent = [("INSTALL_TUG_SKIP_DOWNLOAD", "true"), ("TUG_URL", "https://10.0.0.1:6443"), ("TUG_TOKEN", "t")];
    succeeded(root.run(&agent, &releases.one_line(""), How::Plain));
    let output = succeeded(root.run(&[], "/usr/local/bin/tug-uninstall.sh", How::Isolated));
    assert!(output.contains("Other tug services are installed"), "{output}");
    assert!(installed.exists() && root.path("/etc/systemd/system/tug-agent.service").exists());
    assert!(!root.path("/etc/systemd/system/tug.service").exists());
    assert!(root.take_calls().contains("systemctl disable tug\n"));

    succeeded(root.run(&[], "/usr/local/bin/tug-agent-uninstall.sh", How::Isolated));
    assert!(root.take_calls().contains("systemctl disable tug-agent\n"));
    assert_eq!(root.tree(), before, "the uninstalls left files behind");
}

#[test]
fn a_named_service_in_another_unit_dir_installs_with_wget_and_is_left_disabled_when_asked() {
    if !prerequisites() {
        return;
    }
    let releases = Releases::serve();
    let root = Root::new(Init::Systemd);
    let unit_dir = "/usr/local/lib/systemd/system";
    std::fs::create_dir_all(root.path(unit_dir)).expect("unit dir");
    let before = root.tree();
    let url = releases.url();
    let env = [
        ("INSTALL_TUG_DOWNLOAD_URL", url.as_str()),
        ("INSTALL_TUG_NAME", "edge"),
        ("INSTALL_TUG_SYSTEMD_DIR", unit_dir),
        ("INSTALL_TUG_SKIP_ENABLE", "true"),
    ];
    // No curl on this machine: the script comes, and fetches the release, with wget.
    let line = format!("! command -v curl >/dev/null && wget -qO- {url}/install.sh | sh -s - --disable-agent");
    succeeded(root.run_hiding(&env, &line, How::Plain, &["/usr/bin/curl"]));

    assert_eq!(sha256(&root.path("/usr/local/bin/tug")), sha256(&common::server_binary()));
    let unit = root.read(&format!("{unit_dir}/tug-edge.service"));
    assert!(unit.contains(&format!("EnvironmentFile=-{unit_dir}/tug-edge.service.env")), "{unit}");
    assert!(unit.contains(r#"ExecStart=/usr/local/bin/tug server "--disable-agent""#), "{unit}");
    assert!(
        !root.path("/etc/systemd/system/tug-edge.service").exists()
            && !root.path("/etc/systemd/system/tug.service").exists()
    );
    assert_eq!(
        root.take_calls(),
        "systemctl daemon-reload\n",
        "a service left disabled is neither enabled nor started"
    );

    succeeded(root.run(&[], "/usr/local/bin/tug-edge-uninstall.sh", How::Isolated));
    assert!(root.take_calls().contains("systemctl disable tug-edge\n"));
    assert_eq!(root.tree(), before, "the uninstall left files behind");
}

#[test]
fn a_checksum_mismatch_is_refused_and_installs_nothing() {
    if !prerequisites() {
        return;
    }
    let releases = Releases::serve();
    releases.publish(&common::server_binary(), Some(&"0".repeat(64)));
    let root = Root::new(Init::Systemd);
    let before = root.tree();
    let url = releases.url();
    let output = root.run(&[("INSTALL_TUG_DOWNLOAD_URL", &url)], &releases.one_line(""), How::Plain);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("checksum mismatch for tug-{}: expected {}", arch(), "0".repeat(64))), "{stderr}");
    assert_eq!(root.tree(), before);
    assert_eq!(root.take_calls(), "");
}

#[test]
fn an_agent_installs_with_openrc_from_a_local_binary_without_network() {
    if !prerequisites() {
        return;
    }
    let root = Root::new(Init::OpenRc);
    root.stage_local_install();
    let before = root.tree();
    let env = [
        ("INSTALL_TUG_BINARY", "file:///opt/tug"),
        ("TUG_URL", "https://10.0.0.1:6443"),
        ("TUG_TOKEN_FILE", "/etc/tug/token"),
    ];
    succeeded(root.run(&env, r#"sh /tmp/install.sh --node-label 'say="hi" $HOME `id` \x'"#, How::Isolated));

    let service = root.read("/etc/init.d/tug-agent");
    // The arguments reach OpenRC as given, nothing expanded when it reads the script.
    let args = succeeded(root.run(&[], r#". /etc/init.d/tug-agent; printf %s "$command_args""#, How::Isolated));
    assert_eq!(args, r#"agent '--node-label' 'say="hi" $HOME `id` \x'"#);
    assert!(service.starts_with("#!/sbin/openrc-run\n"), "{service}");
    assert!(service.contains("supervisor=supervise-daemon"), "{service}");
    assert!(service.contains("output_log=/var/log/tug-agent.log"), "{service}");
    assert!(root.read("/etc/logrotate.d/tug-agent").starts_with("/var/log/tug-agent.log {"));
    let env_file = root.read("/etc/tug/tug-agent.env");
    assert!(
        env_file.contains("TUG_URL='https://10.0.0.1:6443'\n")
            && env_file.contains("TUG_TOKEN_FILE='/etc/tug/token'\n"),
        "{env_file}"
    );
    assert_eq!(std::fs::metadata(root.path("/etc/tug/tug-agent.env")).expect("env").mode() & 0o777, 0o600);
    let calls = root.take_calls();
    assert!(
        calls.contains("rc-update add tug-agent default\n") && calls.contains("rc-service tug-agent restart\n"),
        "{calls}"
    );
    shellcheck(&root, "/usr/local/bin/tug-agent-uninstall.sh");

    succeeded(root.run(&[], "/usr/local/bin/tug-agent-uninstall.sh", How::Isolated));
    assert!(root.take_calls().contains("rc-update delete tug-agent default"));
    assert_eq!(root.tree(), before, "the uninstall left files behind");
}

#[test]
fn without_an_init_system_it_installs_and_says_how_to_start_and_bad_settings_are_refused() {
    if !prerequisites() {
        return;
    }
    let releases = Releases::serve();
    let root = Root::new(Init::None);
    let url = releases.url();
    let output = succeeded(root.run(
        &[("INSTALL_TUG_DOWNLOAD_URL", &url)],
        &releases.one_line("--disable-agent"),
        How::ReadOnlyUsrLocal,
    ));
    assert!(output.contains("/usr/local/bin is read-only; installing to /opt/bin"), "{output}");
    assert!(output.contains("start tug by hand"), "{output}");
    assert!(output.contains("/opt/bin/tug server '--disable-agent'"), "{output}");
    assert_eq!(sha256(&root.path("/opt/bin/tug")), sha256(&common::server_binary()));
    assert_eq!(root.take_calls(), "");

    let output = root.run(
        &[("INSTALL_TUG_DOWNLOAD_URL", &url), ("TUG_URL", "https://10.0.0.1:6443")],
        &releases.one_line(""),
        How::Plain,
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("TUG_URL is set for an agent, but neither TUG_TOKEN nor TUG_TOKEN_FILE is"), "{stderr}");
}

/// Starts a long-running pod on `server` and waits until it runs; its container's id.
fn running_pod(server: &common::TugServer, name: &str) -> String {
    let bin = &kubectls()[0];
    kubectl(bin, server, &["run", name, "--image=tug.local/busybox:1", "--", "sleep", "3600"], None).ok();
    common::eventually_within(Duration::from_secs(60), "the pod runs", || {
        jsonpath(bin, server, &["pod", name], "{.status.phase}") == "Running"
    });
    jsonpath(bin, server, &["pod", name], "{.status.containerStatuses[0].containerID}")
}

/// The process ids of the node's running containers, as its containerd lists them.
fn container_pids(data_dir: &Path) -> Vec<u32> {
    node::ctr(data_dir, &["tasks", "ls"])
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1)?.parse().ok())
        .collect()
}

/// Whether process `pid` runs (a zombie does not: an orphan's is reaped by init, if ever).
fn alive(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z'))
}

#[test]
fn a_newer_binary_installed_over_a_running_server_keeps_its_objects_and_running_pods() {
    if !node::available() {
        return;
    }
    let _one_node_at_a_time = node::exclusive();
    let mut server = node::ready_server();
    let bin = &kubectls()[0];
    let container = running_pod(&server, "sleeper");
    kubectl(bin, &server, &["create", "configmap", "kept", "--from-literal=a=b"], None).ok();
    let version = jsonpath(bin, &server, &["configmap", "kept"], "{.metadata.resourceVersion}");
    let pids = container_pids(server.data_dir());
    assert!(!pids.is_empty());

    // What `systemctl restart` does after install.sh put the new file in place: SIGTERM (KillMode=process:
    // the containers stay), then the new binary starts.
    let status = server.terminate().expect("exit status");
    assert!(status.success(), "{status}\n{}", server.log());
    assert!(pids.iter().all(|pid| alive(*pid)), "containers stopped with tug");
    let work = tempfile::tempdir().expect("tempdir");
    server.set_binary(&newer_binary(work.path()));
    server.restart();

    common::eventually_within(Duration::from_secs(60), "the node is Ready again", || {
        common::node_ready(&server, "edge-test")
    });
    assert_eq!(jsonpath(bin, &server, &["pod", "sleeper"], "{.status.containerStatuses[0].containerID}"), container);
    assert_eq!(jsonpath(bin, &server, &["pod", "sleeper"], "{.status.containerStatuses[0].restartCount}"), "0");
    assert_eq!(jsonpath(bin, &server, &["pod", "sleeper"], "{.status.phase}"), "Running");
    assert!(pids.iter().all(|pid| alive(*pid)), "a container was restarted by the upgrade");
    assert_eq!(jsonpath(bin, &server, &["configmap", "kept"], "{.metadata.resourceVersion}"), version);
    assert_eq!(jsonpath(bin, &server, &["configmap", "kept"], "{.data.a}"), "b");
}

#[test]
fn tug_killall_stops_tug_and_leaves_no_container_mount_interface_or_chain() {
    if !node::available() || !prerequisites() {
        return;
    }
    let _one_node_at_a_time = node::exclusive();
    // The script as install.sh writes it.
    let root = Root::new(Init::Systemd);
    root.stage_local_install();
    let env = [("INSTALL_TUG_BINARY", "/opt/tug"), ("INSTALL_TUG_SKIP_START", "true")];
    succeeded(root.run(&env, "sh /tmp/install.sh", How::Isolated));
    let killall = root.path("/usr/local/bin/tug-killall.sh");

    let mut server = node::ready_server();
    running_pod(&server, "doomed");
    let pids = container_pids(server.data_dir());
    assert!(!pids.is_empty() && pids.iter().all(|pid| alive(*pid)), "{pids:?}");
    let data_dir = server.data_dir().to_path_buf();
    let mounted = || {
        let mounts = std::fs::read_to_string("/proc/self/mounts").expect("mounts");
        mounts.lines().filter(|l| l.contains(data_dir.to_str().expect("utf-8 path"))).count()
    };
    assert!(mounted() > 0, "a running pod mounts its root file system under the data dir");

    let output = Command::new("sh")
        .arg(&killall)
        .env("TUG_DATA_DIR", &data_dir)
        .env("TUG_KILLALL_BIN", common::server_binary())
        .output()
        .expect("run tug-killall.sh");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    common::eventually_within(Duration::from_secs(5), "tug exited", || server.exited().is_some());
    assert!(pids.iter().all(|pid| !alive(*pid)), "containers outlived tug-killall.sh");
    assert_eq!(mounted(), 0, "mounts left under the data dir");
    for link in ["tug.1", "cni0"] {
        assert!(!Path::new("/sys/class/net").join(link).exists(), "{link} left");
    }
    let rules = Command::new("iptables-save").output().expect("iptables-save");
    let rules = String::from_utf8_lossy(&rules.stdout);
    assert!(!rules.contains(":TUG-"), "iptables chains left:\n{rules}");
}

#[test]
fn missing_runtime_packages_are_installed_with_the_package_manager_or_named() {
    if !prerequisites() {
        return;
    }
    let root = Root::new(Init::Systemd);
    root.stage_local_install();
    let runtime = ["/usr/bin/containerd", "/usr/sbin/runc"];
    let hidden: Vec<&str> = runtime.iter().copied().filter(|p| Path::new(p).exists()).collect();
    assert_eq!(hidden.len(), 2, "the test needs containerd and runc where Debian puts them");
    let env = [("INSTALL_TUG_BINARY", "/opt/tug")];
    let output = root.run_hiding(&env, "sh /tmp/install.sh", How::Isolated, &hidden);
    assert!(!output.status.success());
    let calls = root.take_calls();
    // apt-get first (this root's stubs fail, as a package manager without a network would).
    assert!(calls.starts_with("apt-get update -q\n"), "{calls}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("still missing: containerd runc; install them (or set INSTALL_TUG_SKIP_DEPS=true"),
        "{stderr}"
    );

    // Opting out installs without them.
    let env = [("INSTALL_TUG_BINARY", "/opt/tug"), ("INSTALL_TUG_SKIP_DEPS", "true")];
    succeeded(root.run_hiding(&env, "sh /tmp/install.sh", How::Isolated, &hidden));
    assert!(!root.take_calls().contains("apt-get"));
}
