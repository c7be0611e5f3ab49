//! A second node on the same machine: a network namespace the test creates (a veth pair to the host,
//! nothing else), and a `tug agent` process running in it with its own data dir and containerd.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::{kubectls, server_binary, terminate, TugServer};

fn ip(args: &[&str]) {
    let output = Command::new("ip").args(args).output().expect("run ip");
    assert!(output.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr));
}

/// A network namespace reached from the host over a veth pair: the host end has `host_ip`/30, the
/// namespace's `eth0` has `inside_ip`/30. Removed when dropped.
pub struct Netns {
    pub name: String,
    pub host_ip: String,
    pub inside_ip: String,
}

impl Netns {
    pub fn create(name: &str, host_ip: &str, inside_ip: &str) -> Netns {
        let _ = Command::new("ip").args(["netns", "del", name]).output();
        let host_end = format!("{name}0");
        let _ = Command::new("ip").args(["link", "del", &host_end]).output();
        ip(&["netns", "add", name]);
        let netns = Netns { name: name.into(), host_ip: host_ip.into(), inside_ip: inside_ip.into() };
        ip(&["link", "add", &host_end, "type", "veth", "peer", "name", "eth0", "netns", name]);
        ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &host_end]);
        ip(&["link", "set", &host_end, "up"]);
        for args in [
            vec!["addr", "add", &format!("{inside_ip}/30"), "dev", "eth0"],
            vec!["link", "set", "eth0", "up"],
            vec!["link", "set", "lo", "up"],
        ] {
            ip(&[&["netns", "exec", name, "ip"][..], &args].concat());
        }
        netns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
        let _ = Command::new("ip").args(["link", "del", &format!("{}0", self.name)]).output();
    }
}

/// `tug agent` in a network namespace, with its own data dir; its log is `agent.log` there.
pub struct TugAgent {
    pub dir: tempfile::TempDir,
    pub node_name: String,
    child: Option<Child>,
    kubeconfig: PathBuf,
}

impl TugAgent {
    /// Starts `tug agent --server <server at netns.host_ip> --node-name <name> --node-ip <netns.inside_ip>
    /// <flags…>` in `netns`, `images` placed in its images dir first.
    pub fn start(server: &TugServer, netns: &Netns, name: &str, flags: &[&str], images: &[PathBuf]) -> TugAgent {
        let dir = tempfile::tempdir().expect("tempdir");
        let images_dir = dir.path().join("agent").join("images");
        std::fs::create_dir_all(&images_dir).expect("images dir");
        for image in images {
            std::fs::copy(image, images_dir.join(image.file_name().expect("image file name"))).expect("copy image");
        }
        let mut agent = TugAgent { dir, node_name: name.into(), child: None, kubeconfig: server.kubeconfig() };
        agent.launch(server, netns, flags);
        agent
    }

    fn launch(&mut self, server: &TugServer, netns: &Netns, flags: &[&str]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("agent.log"))
            .expect("agent log");
        let child = agent_command(server, netns, self.dir.path(), &self.node_name, flags)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start tug agent");
        self.child = Some(child);
    }

    /// Stops the agent with SIGTERM (its containers keep running) and starts it again with the same
    /// data dir, `--server` pointing at `server`.
    pub fn restart(&mut self, server: &TugServer, netns: &Netns, flags: &[&str]) {
        if let Some(child) = self.child.take() {
            let _ = terminate(child);
        }
        self.launch(server, netns, flags);
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// Deletes the node's pods while it can still confirm it, then stops it with SIGTERM and removes
    /// what it left running.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        if child.try_wait().ok().flatten().is_none() {
            let selector = format!("spec.nodeName={}", self.node_name);
            let _ = Command::new(&kubectls()[0])
                .env("KUBECONFIG", &self.kubeconfig)
                .args(["delete", "pods", "-A", "--field-selector", &selector, "--grace-period=1", "--timeout=60s"])
                .output();
            super::node::kill_containers(self.dir.path());
        }
        let _ = terminate(child);
        super::node::clean_up(self.dir.path());
    }
}

impl Drop for TugAgent {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The command line of a `tug agent` in `netns` against `server`.
pub fn agent_command(server: &TugServer, netns: &Netns, data_dir: &Path, name: &str, flags: &[&str]) -> Command {
    // nsenter, not `ip netns exec`: that one also remounts /sys, hiding the cgroup filesystem runc needs.
    let mut command = Command::new("nsenter");
    command
        .arg(format!("--net=/run/netns/{}", netns.name))
        .arg("--")
        .arg(server_binary())
        .args(["agent", "--config", "/dev/null", "--server"])
        .arg(format!("https://{}:{}", netns.host_ip, server.port))
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--node-name", name, "--node-ip", &netns.inside_ip])
        .args(flags);
    command
}
