//! Kernel checks: cgroup controllers (v2 or v1), overlayfs, br_netfilter, IP forwarding.

use std::path::Path;

use super::Check;

/// The cgroup controllers pods need.
const CONTROLLERS: [&str; 3] = ["cpu", "memory", "pids"];

/// The hint for missing memory or cpu controllers, naming the Raspberry Pi's boot flags.
const CGROUP_HINT: &str = "enable them on the kernel command line: on a Raspberry Pi append \
    `cgroup_memory=1 cgroup_enable=memory` to /boot/firmware/cmdline.txt (/boot/cmdline.txt on older \
    systems) and reboot; elsewhere check the bootloader's cgroup_disable= flags";

pub fn checks() -> Vec<Check> {
    vec![cgroups(), overlayfs(), br_netfilter(), ip_forward()]
}

fn cgroups() -> Check {
    const NAME: &str = "cgroups";
    if let Ok(listed) = std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers") {
        return controllers(NAME, "v2", &cgroup_v2_controllers(&listed));
    }
    match std::fs::read_to_string("/proc/cgroups") {
        Ok(table) => controllers(NAME, "v1", &cgroup_v1_controllers(&table)),
        Err(_) => Check::fail(NAME, "no cgroup filesystem", "mount cgroup2 on /sys/fs/cgroup"),
    }
}

fn controllers(name: &'static str, version: &str, enabled: &[String]) -> Check {
    let missing: Vec<&str> = CONTROLLERS.into_iter().filter(|c| !enabled.iter().any(|e| e == c)).collect();
    match missing.is_empty() {
        true => Check::pass(name, format!("{version}: {}", CONTROLLERS.join(", "))),
        false => Check::fail(name, format!("{version}: missing {}", missing.join(", ")), CGROUP_HINT),
    }
}

/// The controllers of `cgroup.controllers` (space separated).
fn cgroup_v2_controllers(listed: &str) -> Vec<String> {
    listed.split_whitespace().map(str::to_string).collect()
}

/// The enabled controllers of /proc/cgroups (`subsys_name hierarchy num_cgroups enabled`).
fn cgroup_v1_controllers(table: &str) -> Vec<String> {
    table
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.len() == 4 && fields[3] == "1").then(|| fields[0].to_string())
        })
        .collect()
}

fn overlayfs() -> Check {
    const NAME: &str = "overlayfs";
    let filesystems = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if filesystems.lines().any(|l| l.split_whitespace().last() == Some("overlay")) {
        Check::pass(NAME, "in the kernel")
    } else if module_available("overlay") {
        Check::pass(NAME, "module available (loaded on first use)")
    } else {
        Check::fail(NAME, "not in the kernel", "load it (`modprobe overlay`) or use a kernel with CONFIG_OVERLAY_FS")
    }
}

fn br_netfilter() -> Check {
    const NAME: &str = "br_netfilter";
    if Path::new("/proc/sys/net/bridge/bridge-nf-call-iptables").exists() {
        Check::pass(NAME, "loaded")
    } else if module_available("br_netfilter") {
        Check::pass(NAME, "module available (tug loads it)")
    } else {
        Check::fail(
            NAME,
            "not in the kernel",
            "Services cannot reach pods on the same node without it: use a kernel with CONFIG_BRIDGE_NETFILTER",
        )
    }
}

fn ip_forward() -> Check {
    const NAME: &str = "ip_forward";
    match std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").map(|v| v.trim().to_string()) {
        Ok(on) if on == "1" => Check::pass(NAME, "on"),
        Ok(_) => Check::pass(NAME, "off (tug turns it on)"),
        Err(error) => Check::fail(NAME, format!("cannot read it: {error}"), "mount /proc"),
    }
}

/// Whether the running kernel has module `name` (built in or as a file).
fn module_available(name: &str) -> bool {
    if Path::new("/sys/module").join(name).exists() {
        return true;
    }
    let Ok(release) = nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()) else {
        return false;
    };
    let modules = Path::new("/lib/modules").join(release);
    let builtin = std::fs::read_to_string(modules.join("modules.builtin")).unwrap_or_default();
    let listed = std::fs::read_to_string(modules.join("modules.dep")).unwrap_or_default();
    let file = |line: &str| {
        let path = line.split(':').next().unwrap_or("");
        let base = path.rsplit('/').next().unwrap_or("");
        base.split('.').next() == Some(name)
    };
    builtin.lines().any(file) || listed.lines().any(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_v1_lists_only_enabled_controllers() {
        let table = "#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpu\t2\t80\t1\nmemory\t0\t1\t0\npids\t3\t80\t1\n";
        assert_eq!(cgroup_v1_controllers(table), ["cpu", "pids"]);
        let check = controllers("cgroups", "v1", &cgroup_v1_controllers(table));
        match check.outcome {
            super::super::Outcome::Fail { found, hint } => {
                assert_eq!(found, "v1: missing memory");
                assert!(hint.contains("cgroup_memory=1 cgroup_enable=memory"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn cgroup_v2_with_every_controller_passes() {
        let enabled = cgroup_v2_controllers("cpuset cpu io memory hugetlb pids rdma misc\n");
        assert_eq!(
            controllers("cgroups", "v2", &enabled).outcome,
            super::super::Outcome::Pass("v2: cpu, memory, pids".into())
        );
    }
}
