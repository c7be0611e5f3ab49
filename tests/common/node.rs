//! What tests of a real node need: the prerequisites (root, containerd, runc, the CNI plugins, and
//! what packaging/images/build.sh builds the test images from), the images themselves, built once per
//! test binary, and the cleanup of everything a node left under its data dir (processes, mounts).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use super::{eventually_within, TugServer};

/// Held by each node test: nodes of one host share its network namespace (the `cni0` bridge, the
/// first podCIDR), so they run one at a time.
pub fn exclusive() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Whether this machine can run a node; when it cannot, the test fails under CI and is skipped
/// (with the reason printed) otherwise.
pub fn available() -> bool {
    let mut missing = Vec::new();
    if !nix::unistd::geteuid().is_root() {
        missing.push("root".to_string());
    }
    for tool in ["containerd", "runc", "ctr", "gcc", "readelf"] {
        if !Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().is_ok_and(|o| o.status.success()) {
            missing.push(tool.to_string());
        }
    }
    if !Path::new("/bin/busybox").exists() {
        missing.push("/bin/busybox (busybox-static)".into());
    }
    if !["/usr/lib/cni/bridge", "/opt/cni/bin/bridge"].iter().any(|p| Path::new(p).exists()) {
        missing.push("the CNI plugins (containernetworking-plugins)".into());
    }
    if missing.is_empty() {
        return true;
    }
    let message = format!("a node test needs {}; scripts/setup.sh installs them", missing.join(", "));
    assert!(!super::in_ci(), "{message}");
    eprintln!("skipped: {message}");
    false
}

/// The pause and busybox image archives, built by packaging/images/build.sh once per test binary.
pub fn images() -> &'static [PathBuf] {
    static IMAGES: OnceLock<(tempfile::TempDir, Vec<PathBuf>)> = OnceLock::new();
    let (_, paths) = IMAGES.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/images/build.sh");
        let output = Command::new(script).arg(dir.path()).output().expect("run build.sh");
        assert!(output.status.success(), "build.sh failed: {}", String::from_utf8_lossy(&output.stderr));
        let paths = vec![dir.path().join("pause.tar"), dir.path().join("busybox.tar")];
        (dir, paths)
    });
    paths
}

/// The socket of the containerd a node with `data_dir` runs.
pub fn containerd_socket(data_dir: &Path) -> PathBuf {
    data_dir.join("agent/containerd/containerd.sock")
}

/// `ctr` against the node's containerd, in the CRI's namespace; its stdout.
pub fn ctr(data_dir: &Path, args: &[&str]) -> String {
    let output = Command::new("ctr")
        .arg("--address")
        .arg(containerd_socket(data_dir))
        .args(["--namespace", "k8s.io"])
        .args(args)
        .output()
        .expect("run ctr");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Kills every container the node's containerd runs (containerd must still be up).
pub fn kill_containers(data_dir: &Path) {
    for task in ctr(data_dir, &["tasks", "ls", "-q"]).lines().filter(|t| !t.is_empty()) {
        ctr(data_dir, &["tasks", "kill", "--all", "--signal", "SIGKILL", task]);
    }
}

/// Kills whatever still runs from `data_dir` (containerd, shims, containers) and unmounts what is
/// mounted under it, so the directory can be removed.
pub fn clean_up(data_dir: &Path) {
    let needle = data_dir.to_string_lossy().into_owned();
    let _ = Command::new("pkill").args(["-KILL", "-f", &needle]).status();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut mounts: Vec<&str> =
        mountinfo.lines().filter_map(|l| l.split(' ').nth(4)).filter(|m| m.starts_with(needle.as_str())).collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for mount in mounts {
        let _ = nix::mount::umount2(mount, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// A server with its node, Ready, named `edge-test` and reached at 127.0.0.1, the test images imported.
pub fn ready_server() -> TugServer {
    ready_server_with(&[])
}

/// [`ready_server`] with extra `tug server` flags.
pub fn ready_server_with(flags: &[&str]) -> TugServer {
    let all: Vec<&str> = ["--node-name", "edge-test", "--node-ip", "127.0.0.1"].iter().chain(flags).copied().collect();
    let server = TugServer::start_with_agent(&all, images());
    eventually_within(Duration::from_secs(60), "the node is Ready", || super::node_ready(&server, "edge-test"));
    server
}
