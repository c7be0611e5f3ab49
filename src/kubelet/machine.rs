//! What the node reports about the machine: capacity (CPUs, memory, the data dir's disk, a pod limit),
//! allocatable (capacity less the kubelet's default hard-eviction reserves), nodeInfo (machine and boot
//! IDs, kernel, OS image) and whether memory or disk is under pressure. Read from /proc, /etc and
//! statvfs; a fact that cannot be read is reported empty rather than failing the node.

use std::path::Path;

use serde_json::{json, Value};

/// Pods per node (the kubelet's default maxPods).
pub const MAX_PODS: u32 = 110;
/// The kubelet's default hard eviction threshold `memory.available<100Mi`, kept out of allocatable.
const MEMORY_RESERVE_KIB: u64 = 100 * 1024;
/// The kubelet's default `nodefs.available<10%`, kept out of allocatable.
const DISK_RESERVE_PERCENT: u64 = 10;

/// The machine's size and state at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    pub cpus: usize,
    pub memory_kib: u64,
    pub memory_available_kib: u64,
    pub disk_bytes: u64,
    pub disk_available_bytes: u64,
}

impl Machine {
    /// Reads the machine now; the disk is the filesystem holding `data_dir`.
    pub fn read(data_dir: &Path) -> Machine {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        // statvfs's field types differ between targets (32-bit ARM among them): the casts are needed there.
        #[allow(clippy::unnecessary_cast)]
        let (disk_bytes, disk_available_bytes) = nix::sys::statvfs::statvfs(data_dir)
            .map(|s| {
                let unit = s.fragment_size() as u64;
                (s.blocks() as u64 * unit, s.blocks_available() as u64 * unit)
            })
            .unwrap_or((0, 0));
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, usize::from),
            memory_kib: meminfo_kib(&meminfo, "MemTotal"),
            memory_available_kib: meminfo_kib(&meminfo, "MemAvailable"),
            disk_bytes,
            disk_available_bytes,
        }
    }

    pub fn capacity(&self) -> Value {
        json!({
            "cpu": self.cpus.to_string(),
            "memory": format!("{}Ki", self.memory_kib),
            "ephemeral-storage": format!("{}Ki", self.disk_bytes / 1024),
            "pods": MAX_PODS.to_string(),
        })
    }

    pub fn allocatable(&self) -> Value {
        let disk = self.disk_bytes - self.disk_bytes * DISK_RESERVE_PERCENT / 100;
        json!({
            "cpu": self.cpus.to_string(),
            "memory": format!("{}Ki", self.memory_kib.saturating_sub(MEMORY_RESERVE_KIB)),
            "ephemeral-storage": disk.to_string(),
            "pods": MAX_PODS.to_string(),
        })
    }

    pub fn memory_pressure(&self) -> bool {
        self.memory_available_kib < MEMORY_RESERVE_KIB
    }

    pub fn disk_pressure(&self) -> bool {
        self.disk_bytes > 0 && self.disk_available_bytes * 100 < self.disk_bytes * DISK_RESERVE_PERCENT
    }
}

/// A `/proc/meminfo` field in KiB (0 when absent).
fn meminfo_kib(meminfo: &str, field: &str) -> u64 {
    meminfo
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path).map(|s| s.trim().to_string()).unwrap_or_default()
}

/// PRETTY_NAME of an os-release file's text.
fn pretty_name(os_release: &str) -> String {
    os_release
        .lines()
        .find_map(|line| line.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim().trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".to_string())
}

/// The architecture as Kubernetes names it (GOARCH).
pub fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        other => other,
    }
}

/// The node's nodeInfo, with the runtime's `name://version`.
pub fn node_info(runtime_version: &str) -> Value {
    let kernel = nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default();
    let os_release = std::fs::read_to_string("/etc/os-release")
        .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
        .unwrap_or_default();
    json!({
        "machineID": read_trimmed("/etc/machine-id"),
        "systemUUID": read_trimmed("/sys/class/dmi/id/product_uuid"),
        "bootID": read_trimmed("/proc/sys/kernel/random/boot_id"),
        "kernelVersion": kernel,
        "osImage": pretty_name(&os_release),
        "containerRuntimeVersion": runtime_version,
        "kubeletVersion": crate::KUBERNETES_VERSION_OF_TUG,
        "kubeProxyVersion": "",
        "operatingSystem": "linux",
        "architecture": arch(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine() -> Machine {
        Machine {
            cpus: 4,
            memory_kib: 4 * 1024 * 1024,
            memory_available_kib: 2 * 1024 * 1024,
            disk_bytes: 100 << 30,
            disk_available_bytes: 50 << 30,
        }
    }

    #[test]
    fn allocatable_keeps_the_eviction_reserves_out() {
        let m = machine();
        assert_eq!(m.capacity()["memory"], "4194304Ki");
        assert_eq!(m.allocatable()["memory"], "4091904Ki");
        assert_eq!(m.allocatable()["ephemeral-storage"], (90u64 << 30).to_string());
        assert_eq!(m.allocatable()["pods"], "110");
    }

    #[test]
    fn pressure_starts_below_the_reserves() {
        assert!(!machine().memory_pressure() && !machine().disk_pressure());
        let tight = Machine { memory_available_kib: 50 * 1024, disk_available_bytes: 5 << 30, ..machine() };
        assert!(tight.memory_pressure() && tight.disk_pressure());
    }

    #[test]
    fn meminfo_and_os_release_are_read_as_written() {
        let meminfo = "MemTotal:        8048284 kB\nMemFree:  100 kB\nMemAvailable:    6000000 kB\n";
        assert_eq!(meminfo_kib(meminfo, "MemTotal"), 8048284);
        assert_eq!(meminfo_kib(meminfo, "MemAvailable"), 6000000);
        assert_eq!(meminfo_kib(meminfo, "Missing"), 0);
        assert_eq!(
            pretty_name("NAME=x\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n"),
            "Debian GNU/Linux 12 (bookworm)"
        );
    }

    #[test]
    fn the_real_machine_reads_without_failing() {
        let m = Machine::read(Path::new("/"));
        assert!(m.cpus >= 1 && m.memory_kib > 0 && m.disk_bytes > 0, "{m:?}");
    }
}
