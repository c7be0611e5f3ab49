//! The fault tests' network: a switch (a bridge in a namespace of its own) joining one namespace per
//! server and the host, all on 10.251.9.0/24, created by the test and removed when dropped. Faults are
//! made inside the servers' namespaces: iptables DROP rules for partitions (one-way ones too) and random
//! drops for packet loss (the `statistic` match), and for delay a token bucket (`tc ... tbf`) on each
//! server's link, which queues what exceeds its rate (this machine's kernel has no netem, so delay comes
//! from a slow link rather than a fixed added latency).

use std::process::Command;

const SWITCH: &str = "tugfsw";
const HOST_END: &str = "tugfh";
pub const HOST_IP: &str = "10.251.9.1";

fn run(program: &str, args: &[&str]) {
    let output = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(output.status.success(), "{program} {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr));
}

fn in_netns(netns: &str, program: &str, args: &[&str]) {
    run("ip", &[&["netns", "exec", netns, program][..], args].concat());
}

/// The switch and the servers' namespaces.
pub struct Network {
    pub servers: Vec<(String, String)>,
}

impl Network {
    /// A namespace for each of `count` servers: `tugf<i>` with address `10.251.9.1<i>`.
    pub fn create(count: usize) -> Network {
        let servers: Vec<(String, String)> =
            (1..=count).map(|i| (format!("tugf{i}"), format!("10.251.9.1{i}"))).collect();
        let network = Network { servers };
        network.remove();
        run("ip", &["netns", "add", SWITCH]);
        in_netns(SWITCH, "ip", &["link", "add", "br0", "type", "bridge"]);
        in_netns(SWITCH, "ip", &["link", "set", "br0", "up"]);
        run("ip", &["link", "add", HOST_END, "type", "veth", "peer", "name", "host", "netns", SWITCH]);
        run("ip", &["addr", "add", &format!("{HOST_IP}/24"), "dev", HOST_END]);
        run("ip", &["link", "set", HOST_END, "up"]);
        in_netns(SWITCH, "ip", &["link", "set", "host", "master", "br0", "up"]);
        for (netns, address) in &network.servers {
            run("ip", &["netns", "add", netns]);
            let port = format!("{netns}p");
            run("ip", &["link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", netns]);
            run("ip", &["link", "set", &port, "netns", SWITCH]);
            in_netns(SWITCH, "ip", &["link", "set", &port, "master", "br0", "up"]);
            in_netns(netns, "ip", &["addr", "add", &format!("{address}/24"), "dev", "eth0"]);
            in_netns(netns, "ip", &["link", "set", "eth0", "up"]);
            in_netns(netns, "ip", &["link", "set", "lo", "up"]);
        }
        network
    }

    /// Server `at` no longer receives packets from server `from` (one way at the IP level; TCP
    /// connections from either side stall, since their acknowledgements are lost).
    pub fn drop_from(&self, at: usize, from: usize) {
        in_netns(&self.servers[at].0, "iptables", &["-I", "INPUT", "-s", &self.servers[from].1, "-j", "DROP"]);
    }

    /// Servers `a` and `b` no longer reach each other.
    pub fn partition(&self, a: usize, b: usize) {
        self.drop_from(a, b);
        self.drop_from(b, a);
    }

    /// Every server loses this share of the packets it receives.
    pub fn lose(&self, probability: &str) {
        for (netns, _) in &self.servers {
            let rule =
                ["-I", "INPUT", "-m", "statistic", "--mode", "random", "--probability", probability, "-j", "DROP"];
            in_netns(netns, "iptables", &rule);
        }
    }

    /// Every server's link sends at most `rate` (as tc writes it, e.g. `2mbit`), queueing what exceeds
    /// it for up to `latency` (then dropping it).
    pub fn slow(&self, rate: &str, latency: &str) {
        for (netns, _) in &self.servers {
            let qdisc =
                ["qdisc", "add", "dev", "eth0", "root", "tbf", "rate", rate, "burst", "16kb", "latency", latency];
            in_netns(netns, "tc", &qdisc);
        }
    }

    /// Every partition, loss and slow link undone.
    pub fn heal(&self) {
        for (netns, _) in &self.servers {
            in_netns(netns, "iptables", &["-F", "INPUT"]);
            // Only slowed links have a root qdisc to delete.
            let _ =
                Command::new("ip").args(["netns", "exec", netns, "tc", "qdisc", "del", "dev", "eth0", "root"]).output();
        }
    }

    fn remove(&self) {
        for netns in self.servers.iter().map(|(netns, _)| netns.as_str()).chain([SWITCH]) {
            let _ = Command::new("ip").args(["netns", "del", netns]).output();
        }
        let _ = Command::new("ip").args(["link", "del", HOST_END]).output();
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        self.remove();
    }
}
