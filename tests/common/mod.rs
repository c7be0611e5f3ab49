//! Test harness: runs the real `tug` binary as a server on a free loopback port with a temporary data
//! dir, and the real kubectl binaries against it. A missing kubectl fails the test when CI=true.

#![allow(dead_code)]

pub mod agent;
pub mod node;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The binary under test: this package's `tug`, or `TUG_TEST_BINARY` (e.g. a `profiling` build for perf).
pub fn server_binary() -> PathBuf {
    std::env::var_os("TUG_TEST_BINARY").map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_tug")), PathBuf::from)
}

/// A `tug server` process and its data dir.
pub struct TugServer {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
    flags: Vec<String>,
    /// Whether the server runs its node agent (containerd and the kubelet).
    agent: bool,
    /// The network namespace it runs in, if not the host's.
    netns: Option<String>,
    /// The tug binary it runs ([`server_binary`] unless changed for a restart).
    binary: PathBuf,
}

impl TugServer {
    /// Starts a server on a free port.
    pub fn start() -> TugServer {
        TugServer::start_with(&[])
    }

    /// Starts a server on a free port with extra `tug server` flags.
    pub fn start_with(flags: &[&str]) -> TugServer {
        TugServer::launched(flags, false, &[], None, 0)
    }

    /// Starts a server with its node agent (root, containerd), `images` placed in its images dir first.
    pub fn start_with_agent(flags: &[&str], images: &[PathBuf]) -> TugServer {
        TugServer::launched(flags, true, images, None, 0)
    }

    /// A server in `netns` (the host's if none) on `port` (any free one for 0).
    fn launched(flags: &[&str], agent: bool, images: &[PathBuf], netns: Option<&str>, port: u16) -> TugServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let images_dir = dir.path().join("agent").join("images");
        std::fs::create_dir_all(&images_dir).expect("images dir");
        for image in images {
            std::fs::copy(image, images_dir.join(image.file_name().expect("image file name"))).expect("copy image");
        }
        let flags = flags.iter().map(|f| f.to_string()).collect();
        let netns = netns.map(str::to_string);
        let mut server = TugServer { dir, port, child: None, flags, agent, netns, binary: server_binary() };
        server.launch(port);
        server
    }

    /// Starts a server in network namespace `netns` (without its agent) on `port`.
    pub fn start_in_netns(netns: &str, port: u16, flags: &[&str]) -> TugServer {
        TugServer::launched(flags, false, &[], Some(netns), port)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig.yaml")
    }

    fn launch(&mut self, port: u16) {
        self.spawn(port);
        self.wait_until_ready();
    }

    fn spawn(&mut self, port: u16) {
        let _ = std::fs::remove_file(self.kubeconfig());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .expect("log");
        let mut command = match &self.netns {
            // nsenter, not `ip netns exec`, as for agents (see `agent::agent_command`).
            Some(netns) => {
                let mut command = Command::new("nsenter");
                command.arg(format!("--net=/run/netns/{netns}")).arg("--").arg(&self.binary);
                command
            }
            None => Command::new(&self.binary),
        };
        let child = command
            .args(["server", "--bind-address", "127.0.0.1", "--config", "/dev/null"])
            .args((!self.agent).then_some("--disable-agent"))
            .arg("--data-dir")
            .arg(self.dir.path())
            .args(["--https-listen-port", &port.to_string()])
            .arg("--write-kubeconfig")
            .arg(self.kubeconfig())
            .args(&self.flags)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start tug server");
        self.child = Some(child);
    }

    /// Waits until the server (just spawned) is ready, 20 s at most.
    pub fn wait_until_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(text) = std::fs::read_to_string(self.kubeconfig()) {
                let url = text.lines().find_map(|l| l.trim().strip_prefix("server: https://"));
                if let Some((_, p)) = url.and_then(|url| url.rsplit_once(':')) {
                    self.port = p.trim().parse().expect("port in kubeconfig");
                    if self.ready() {
                        return;
                    }
                }
            }
            assert!(Instant::now() < deadline, "tug server did not become ready; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn ready(&self) -> bool {
        kubectl_default(&self.kubeconfig(), &["get", "--raw", "/readyz"]).status.success()
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Stops the server with SIGTERM, as a service manager does, and waits for it to exit.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        self.child.take().and_then(terminate)
    }

    /// The exit status once the process has exited by itself (it then counts as stopped).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        self.child = None;
        Some(status)
    }

    /// The binary the next (re)start runs: an upgrade.
    pub fn set_binary(&mut self, binary: &Path) {
        self.binary = binary.to_path_buf();
    }

    /// Whether the next (re)start runs the node agent.
    pub fn set_agent(&mut self, agent: bool) {
        self.agent = agent;
    }

    /// Kills the process with SIGKILL (no chance to flush anything) and starts it again on the same port.
    pub fn kill_and_restart(&mut self) {
        self.kill();
        self.restart();
    }

    /// Kills the process with SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the (killed or terminated) server again on the same port and waits until it is ready.
    pub fn restart(&mut self) {
        let port = self.port;
        self.launch(port);
    }

    /// Starts the (killed) server again on the same port without waiting for it to be ready (it may
    /// need other servers to be).
    pub fn spawn_again(&mut self) {
        let port = self.port;
        self.spawn(port);
    }

    /// The server's `tug server` flags, to be changed before a restart.
    pub fn flags_mut(&mut self) -> &mut Vec<String> {
        &mut self.flags
    }
}

impl Drop for TugServer {
    fn drop(&mut self) {
        if self.agent && self.child.is_some() {
            // The kubelet tears the pods down (their network too), then what is left is killed.
            let kubectl = kubectls().into_iter().next().expect("a kubectl");
            let _ = Command::new(kubectl)
                .env("KUBECONFIG", self.kubeconfig())
                .args(["delete", "pods", "--all", "--all-namespaces", "--grace-period=1", "--timeout=60s"])
                .output();
            node::kill_containers(self.dir.path());
            self.terminate();
            node::clean_up(self.dir.path());
        } else if self.agent {
            node::clean_up(self.dir.path());
        } else if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Stops `child` with SIGTERM and waits for it to exit; SIGKILL when it has not within 30 s.
pub fn terminate(mut child: Child) -> Option<std::process::ExitStatus> {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    child.wait().ok()
}

/// The value of gauge `name` on `server`'s /metrics, if it has one.
pub fn metric(server: &TugServer, name: &str) -> Option<String> {
    let metrics = kubectl(&kubectls()[0], server, &["get", "--raw", "/metrics"], None).stdout;
    let line = metrics.lines().find(|l| l.split_whitespace().next() == Some(name))?;
    line.split_whitespace().nth(1).map(str::to_string)
}

/// The index of the server leading the store's Raft group, once one does (20 s at most).
pub fn leader(servers: &[TugServer]) -> usize {
    let mut found = None;
    eventually_within(Duration::from_secs(20), "one server is the leader", || {
        found = servers.iter().position(|server| metric(server, "tug_raft_is_leader").as_deref() == Some("1"));
        found.is_some()
    });
    found.expect("a leader")
}

/// `tug simulate` run against a server: simulated nodes until dropped or stopped.
pub struct Simulator {
    child: Option<Child>,
}

impl Simulator {
    /// Starts `tug simulate --kubeconfig <server's> <args…>`; its log goes to `simulate-<n>.log` in the
    /// server's data dir.
    pub fn start(server: &TugServer, args: &[&str]) -> Simulator {
        let log_path = (0..).map(|n| server.data_dir().join(format!("simulate-{n}.log"))).find(|p| !p.exists());
        let log = std::fs::File::create(log_path.expect("a free log name")).expect("simulator log");
        let child = Command::new(server_binary())
            .arg("simulate")
            .arg("--kubeconfig")
            .arg(server.kubeconfig())
            .args(args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start tug simulate");
        Simulator { child: Some(child) }
    }

    /// Kills the simulator (its nodes stop heartbeating).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Polls `check` until it returns true, for up to `limit`; whether it did.
pub fn within(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !check() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    true
}

/// Polls `check` until it returns true, for up to `limit`.
pub fn eventually_within(limit: Duration, what: &str, check: impl FnMut() -> bool) {
    assert!(within(limit, check), "timed out waiting until {what}");
}

/// Polls `check` until it returns true, for up to 30 s.
pub fn eventually(what: &str, check: impl FnMut() -> bool) {
    eventually_within(Duration::from_secs(30), what, check)
}

/// Whether missing prerequisites must fail rather than skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

const KUBECTL_DIR: &str = "/usr/lib/google-cloud-sdk/bin";

/// The kubectl binaries to test with: the newest installed and 1.29 (each as `kubectl.1.XX` from the
/// kubectl package), or the kubectl on PATH when the versioned ones are absent.
pub fn kubectls() -> Vec<PathBuf> {
    let mut found = Vec::new();
    for v in ["1.33", "1.29"] {
        let p = PathBuf::from(format!("{KUBECTL_DIR}/kubectl.{v}"));
        if p.exists() {
            found.push(p);
        } else if in_ci() {
            panic!("{} is missing: the test command installs the kubectl package", p.display());
        }
    }
    if found.is_empty() {
        let on_path = PathBuf::from("kubectl");
        assert!(Command::new(&on_path).arg("version").arg("--client").output().is_ok(), "no kubectl found");
        found.push(on_path);
    }
    found
}

/// The result of one kubectl run.
pub struct Run {
    pub stdout: String,
    pub stderr: String,
    pub code: i32,
}

impl Run {
    pub fn ok(self) -> Run {
        assert_eq!(self.code, 0, "kubectl failed: {}\n{}", self.stderr, self.stdout);
        self
    }
}

fn run(output: Output) -> Run {
    Run {
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        code: output.status.code().unwrap_or(-1),
    }
}

fn kubectl_default(kubeconfig: &Path, args: &[&str]) -> Output {
    let bin = kubectls().into_iter().next().expect("a kubectl");
    Command::new(bin).env("KUBECONFIG", kubeconfig).args(args).output().expect("run kubectl")
}

/// How long one kubectl run may take before it is killed (exit code 124), so a hang fails the test.
const KUBECTL_TIMEOUT: &str = "120s";

/// Runs `kubectl` (`bin`) with `args` against `server`, with `stdin` fed if given.
pub fn kubectl(bin: &Path, server: &TugServer, args: &[&str], stdin: Option<&str>) -> Run {
    kubectl_with_config(bin, &server.kubeconfig(), args, stdin)
}

/// Runs `kubectl` against `server` as the bearer of `token` alone (no client certificate), through a
/// kubeconfig of its own as a user would write one.
pub fn kubectl_with_token(bin: &Path, server: &TugServer, token: &str, args: &[&str]) -> Run {
    let config = tempfile::NamedTempFile::new().expect("kubeconfig file");
    let ca = server.data_dir().join("server/tls/server-ca.crt");
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters: [{{name: tug, cluster: {{server: 'https://127.0.0.1:{}', certificate-authority: '{}'}}}}]\nusers: [{{name: bearer, user: {{token: '{token}'}}}}]\ncontexts: [{{name: bearer, context: {{cluster: tug, user: bearer}}}}]\ncurrent-context: bearer\n",
        server.port,
        ca.display()
    );
    std::fs::write(config.path(), text).expect("write kubeconfig");
    kubectl_with_config(bin, config.path(), args, None)
}

fn kubectl_with_config(bin: &Path, kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Run {
    let mut cmd = Command::new("timeout");
    cmd.arg(KUBECTL_TIMEOUT).arg(bin);
    cmd.env("KUBECONFIG", kubeconfig).env_remove("KUBECTL_EXTERNAL_DIFF").args(args);
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn kubectl");
    if let Some(input) = stdin {
        use std::io::Write;
        child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write stdin");
    }
    run(child.wait_with_output().expect("kubectl output"))
}

/// `kubectl get <object…> -o jsonpath=<path>`, which must succeed; its output.
pub fn jsonpath(bin: &Path, server: &TugServer, object: &[&str], path: &str) -> String {
    let output = format!("jsonpath={path}");
    let args: Vec<&str> =
        ["get"].iter().copied().chain(object.iter().copied()).chain(["-o", output.as_str()]).collect();
    kubectl(bin, server, &args, None).ok().stdout
}

/// Whether Node `name` reports Ready (false while it is not registered yet).
pub fn node_ready(server: &TugServer, name: &str) -> bool {
    let path = r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}"#;
    kubectl(&kubectls()[0], server, &["get", "node", name, "-o", path], None).stdout == "True"
}

/// `tug <args>` as `server`'s admin (`TUG_KUBECONFIG`, which the commands through the API read).
pub fn tug_admin(server: &TugServer, args: &[&str]) -> Output {
    Command::new(server_binary()).args(args).env("TUG_KUBECONFIG", server.kubeconfig()).output().expect("run tug")
}

/// The serial number (`serial=…`) of the certificate served at `address` (`host:port`); empty when none.
pub fn served_serial(address: &str) -> String {
    openssl_serial(&format!("openssl s_client -connect {address} </dev/null 2>/dev/null | openssl x509 -noout -serial"))
}

/// The serial number (`serial=…`) of the certificate file `path`; empty when there is none.
pub fn file_serial(path: &Path) -> String {
    openssl_serial(&format!("openssl x509 -noout -serial -in {} 2>/dev/null", path.display()))
}

fn openssl_serial(script: &str) -> String {
    let output = Command::new("sh").args(["-c", script]).output().expect("openssl");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}
