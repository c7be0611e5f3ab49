//! The pod's volumes on the node, under `<data-dir>/agent/pods/<uid>/volumes/<plugin>/<name>`: emptyDir
//! (a directory, or a tmpfs for `medium: Memory`), hostPath (with its type checks), configMap, secret,
//! downwardAPI and projected (files written atomically, `atomic.rs`; secrets and projected volumes on a
//! tmpfs so they never reach the disk), and persistentVolumeClaim bound to a hostPath or local volume.
//! Set up before the sandbox, their files refreshed from the API when asked (so a changed ConfigMap
//! shows in the pod), turned into the CRI's mounts per container, and removed with the pod.

mod atomic;
mod files;

use std::collections::HashMap;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use k8s_cri::v1::{Mount, MountPropagation};
use k8s_openapi::api::core::v1::{
    Container, HostPathVolumeSource, PersistentVolume, PersistentVolumeClaim, Pod, Volume,
};
use kube::{Api, Client, ResourceExt};

use crate::kubelet::tokens::ServiceAccountTokens;

pub use atomic::is_safe;

/// What volumes are made of besides the pod itself: API objects, service account tokens, and the
/// node's allocatable resources (for `resourceFieldRef`).
pub struct Sources<'a> {
    pub client: &'a Client,
    pub tokens: &'a ServiceAccountTokens,
    pub allocatable: &'a serde_json::Value,
}

/// One volume as set up on the node.
#[derive(Debug, Clone)]
struct Prepared {
    path: PathBuf,
    /// Read-only as a whole, whatever a volumeMount says.
    read_only: bool,
    /// Only the kubelet writes it (configMap, secret, downwardAPI, projected): its symlinks are its own.
    kubelet_written: bool,
}

/// Where each of the pod's volumes is on the node.
#[derive(Debug, Default, Clone)]
pub struct PodVolumes {
    by_name: HashMap<String, Prepared>,
}

/// The directory of a pod's own files on the node.
pub fn pod_dir(pods_root: &Path, uid: &str) -> PathBuf {
    pods_root.join(uid)
}

/// Prepares every volume of `pod`; `refresh` rereads the API for the volumes made of its objects (they
/// are written anyway when they are not there yet). The error is upstream's FailedMount message.
pub async fn set_up(sources: &Sources<'_>, pods_root: &Path, pod: &Pod, refresh: bool) -> Result<PodVolumes, String> {
    let uid = pod.uid().unwrap_or_default();
    let base = pod_dir(pods_root, &uid).join("volumes");
    let mut prepared = PodVolumes::default();
    for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let failed = |e: String| format!("MountVolume.SetUp failed for volume {:?} : {e}", volume.name);
        let at = set_up_one(sources, &base, pod, volume, refresh).await.map_err(failed)?;
        prepared.by_name.insert(volume.name.clone(), at);
    }
    Ok(prepared)
}

async fn set_up_one(
    sources: &Sources<'_>,
    base: &Path,
    pod: &Pod,
    volume: &Volume,
    refresh: bool,
) -> Result<Prepared, String> {
    let user_written = |path: PathBuf, read_only: bool| Prepared { path, read_only, kubelet_written: false };
    let dir = |plugin: &str| base.join(plugin).join(&volume.name);
    if let Some(empty) = &volume.empty_dir {
        let dir = dir("kubernetes.io~empty-dir");
        make_dir(&dir, 0o777)?;
        if empty.medium.as_deref() == Some("Memory") {
            let size = empty.size_limit.as_ref().and_then(|q| crate::core::quantity::parse_whole(&q.0).ok());
            mount_tmpfs(&dir, "1777", size)?;
        }
        return Ok(user_written(dir, false));
    }
    if let Some(host) = &volume.host_path {
        return host_path(host).map(|path| user_written(path, false));
    }
    if let Some(claim) = &volume.persistent_volume_claim {
        let path = claimed_path(sources.client, &pod.namespace().unwrap_or_default(), &claim.claim_name).await?;
        return Ok(user_written(path, claim.read_only.unwrap_or(false)));
    }
    let (plugin, in_memory) = match () {
        _ if volume.config_map.is_some() => ("kubernetes.io~configmap", false),
        _ if volume.secret.is_some() => ("kubernetes.io~secret", true),
        _ if volume.downward_api.is_some() => ("kubernetes.io~downward-api", false),
        _ if volume.projected.is_some() => ("kubernetes.io~projected", true),
        _ => return Err("this kind of volume is not supported by tug".into()),
    };
    let dir = dir(plugin);
    make_dir(&dir, 0o755)?;
    if in_memory {
        mount_tmpfs(&dir, "0755", None)?;
    }
    if refresh || !dir.join("..data").exists() {
        let payload = files::payload(sources, pod, volume).await?;
        if atomic::write(&dir, &payload).map_err(|e| e.to_string())? {
            tracing::debug!(pod = pod.name_any(), volume = volume.name, "volume files written");
        }
    }
    // Upstream mounts these read-only whatever the volumeMount says.
    Ok(Prepared { path: dir, read_only: true, kubelet_written: true })
}

fn make_dir(dir: &Path, mode: u32) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).map_err(|e| e.to_string())
}

/// Every mount point of this process's mount namespace.
fn mount_points() -> Vec<String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    mountinfo.lines().filter_map(|l| l.split(' ').nth(4)).map(str::to_string).collect()
}

/// Whether something is mounted at `dir`.
fn is_mount_point(dir: &Path) -> bool {
    let wanted = dir.to_string_lossy();
    mount_points().iter().any(|m| *m == wanted)
}

fn mount_tmpfs(dir: &Path, mode: &str, size: Option<i128>) -> Result<(), String> {
    if is_mount_point(dir) {
        return Ok(());
    }
    let mut options = format!("mode={mode}");
    if let Some(bytes) = size.filter(|b| *b > 0) {
        options.push_str(&format!(",size={bytes}"));
    }
    nix::mount::mount(Some("tmpfs"), dir, Some("tmpfs"), nix::mount::MsFlags::empty(), Some(options.as_str()))
        .map_err(|e| format!("cannot mount a tmpfs at {}: {e}", dir.display()))
}

/// A hostPath's path, after the checks (or creation) its type asks for.
fn host_path(source: &HostPathVolumeSource) -> Result<PathBuf, String> {
    let path = PathBuf::from(&source.path);
    let kind = source.type_.as_deref().unwrap_or("");
    let metadata = std::fs::metadata(&path);
    let is = |check: fn(&std::fs::Metadata) -> bool| metadata.as_ref().is_ok_and(check);
    let ok = match kind {
        "" => true,
        "DirectoryOrCreate" if metadata.is_err() => {
            std::fs::create_dir_all(&path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
            true
        }
        "FileOrCreate" if metadata.is_err() => {
            std::fs::write(&path, b"").map_err(|e| format!("cannot create {}: {e}", path.display()))?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).map_err(|e| e.to_string())?;
            true
        }
        "DirectoryOrCreate" | "Directory" => is(|m| m.is_dir()),
        "FileOrCreate" | "File" => is(|m| m.is_file()),
        "Socket" => is(|m| m.file_type().is_socket()),
        "CharDevice" => is(|m| m.file_type().is_char_device()),
        "BlockDevice" => is(|m| m.file_type().is_block_device()),
        other => return Err(format!("unknown hostPath type {other:?}")),
    };
    match ok {
        true => Ok(path),
        false => Err(format!("hostPath type check failed: {} is not a {kind}", source.path)),
    }
}

/// The directory of the hostPath or local PersistentVolume the claim is bound to.
async fn claimed_path(client: &Client, namespace: &str, claim: &str) -> Result<PathBuf, String> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let found = claims.get_opt(claim).await.map_err(|e| e.to_string())?;
    let found = found.ok_or_else(|| format!("persistentvolumeclaim {claim:?} not found"))?;
    let found_uid = found.metadata.uid.clone();
    let bound = found.spec.and_then(|s| s.volume_name).filter(|v| !v.is_empty());
    let volume_name = bound.ok_or_else(|| format!("persistentvolumeclaim {claim:?} is not bound"))?;
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let volume = volumes.get_opt(&volume_name).await.map_err(|e| e.to_string())?;
    let spec = volume.and_then(|v| v.spec).ok_or_else(|| format!("persistentvolume {volume_name:?} not found"))?;
    // A volume bound to another claim is not this claim's to use (without a binder, an unbound volume
    // goes to the claim that names it).
    if let Some(bound_to) = &spec.claim_ref {
        let same = bound_to.namespace.as_deref() == Some(namespace) && bound_to.name.as_deref() == Some(claim);
        if !same || bound_to.uid.as_ref().is_some_and(|uid| Some(uid) != found_uid.as_ref()) {
            return Err(format!("persistentvolume {volume_name:?} is bound to another claim"));
        }
    }
    let path = spec.host_path.map(|h| h.path).or(spec.local.map(|l| l.path));
    path.map(PathBuf::from).ok_or_else(|| format!("persistentvolume {volume_name:?} is neither hostPath nor local"))
}

/// The CRI mounts of `container`: each volumeMount at its path, with its subPath (or subPathExpr,
/// expanded with the container's `env`), read-only as asked or as the volume is.
pub fn mounts(container: &Container, volumes: &PodVolumes, env: &[(String, String)]) -> Result<Vec<Mount>, String> {
    let mut mounts = Vec::new();
    for mount in container.volume_mounts.iter().flatten() {
        let volume = volumes
            .by_name
            .get(&mount.name)
            .ok_or_else(|| format!("volumeMount {:?}: no such volume in the pod", mount.name))?;
        let (path, read_only) = (&volume.path, &volume.read_only);
        let sub = match (&mount.sub_path, &mount.sub_path_expr) {
            (Some(sub), _) if !sub.is_empty() => sub.clone(),
            (_, Some(expr)) if !expr.is_empty() => crate::kubelet::pods::spec::expand(expr, env),
            _ => String::new(),
        };
        let host = match sub.is_empty() {
            true => path.clone(),
            false => sub_path(volume, &sub).map_err(|e| format!("volumeMount {:?}: {e}", mount.name))?,
        };
        let propagation = match mount.mount_propagation.as_deref() {
            Some("HostToContainer") => MountPropagation::PropagationHostToContainer,
            Some("Bidirectional") => MountPropagation::PropagationBidirectional,
            _ => MountPropagation::PropagationPrivate,
        };
        mounts.push(Mount {
            container_path: mount.mount_path.clone(),
            host_path: host.to_string_lossy().into_owned(),
            readonly: mount.read_only.unwrap_or(false) || *read_only,
            propagation: propagation as i32,
            ..Default::default()
        });
    }
    Ok(mounts)
}

/// The host path of `sub` in `volume`. In a volume the pod can write to, no part of it may be a symlink
/// (a container could point one anywhere on the host, upstream's CVE-2017-1002101); missing
/// directories are created there, one at a time, never through a symlink.
fn sub_path(volume: &Prepared, sub: &str) -> Result<PathBuf, String> {
    let relative = Path::new(sub);
    if !is_safe(relative) {
        return Err(format!("subPath {sub:?} leaves the volume"));
    }
    if volume.kubelet_written {
        return Ok(volume.path.join(relative));
    }
    let mut at = volume.path.clone();
    for part in relative.components() {
        at.push(part);
        match std::fs::symlink_metadata(&at) {
            Ok(found) if found.file_type().is_symlink() => {
                return Err(format!("subPath {sub:?} goes through a symlink, which is refused"))
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !volume.read_only => {
                std::fs::create_dir(&at).map_err(|e| format!("cannot create subPath {sub:?}: {e}"))?;
            }
            Err(e) => return Err(format!("subPath {sub:?}: {e}")),
        }
    }
    Ok(at)
}

/// Unmounts whatever is mounted under the pod's directory and removes it.
pub fn tear_down(pods_root: &Path, uid: &str) {
    if uid.is_empty() {
        return;
    }
    let dir = pod_dir(pods_root, uid);
    let prefix = format!("{}/", dir.to_string_lossy());
    let mut mounted: Vec<String> = mount_points().into_iter().filter(|m| m.starts_with(&prefix)).collect();
    mounted.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for point in mounted {
        if let Err(error) = nix::mount::umount2(point.as_str(), nix::mount::MntFlags::MNT_DETACH) {
            tracing::warn!(%error, point, "cannot unmount a pod volume");
        }
    }
    if let Err(error) = std::fs::remove_dir_all(&dir) {
        if error.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(%error, dir = %dir.display(), "cannot remove a pod's directory");
        }
    }
}

/// The kubelet-managed `/etc/hosts` of a pod not on the host's network, written under its directory:
/// localhost entries, the pod's own address with its hostname, then its hostAliases, as upstream writes
/// it (without the `<hostname>.<subdomain>` name, which needs the cluster domain). None for a pod on the
/// host's network.
pub fn etc_hosts(pods_root: &Path, pod: &Pod, pod_ip: &str, cluster_domain: &str) -> Result<Option<Mount>, String> {
    let spec = pod.spec.clone().unwrap_or_default();
    if spec.host_network.unwrap_or(false) {
        return Ok(None);
    }
    let hostname: String = spec.hostname.clone().unwrap_or_else(|| pod.name_any()).chars().take(63).collect();
    let mut text = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    let subdomain = spec.subdomain.as_deref().filter(|s| !s.is_empty());
    match (pod_ip.is_empty(), subdomain) {
        (true, _) => {}
        (false, None) => text.push_str(&format!("{pod_ip}\t{hostname}\n")),
        (false, Some(subdomain)) => {
            let namespace = pod.namespace().unwrap_or_default();
            let fqdn = format!("{hostname}.{subdomain}.{namespace}.svc.{cluster_domain}");
            text.push_str(&format!("{pod_ip}\t{fqdn}\t{hostname}\n"));
        }
    }
    let aliases = spec.host_aliases.unwrap_or_default();
    if !aliases.is_empty() {
        text.push_str("\n# Entries added by HostAliases.\n");
        for alias in aliases {
            text.push_str(&format!("{}\t{}\n", alias.ip, alias.hostnames.unwrap_or_default().join("\t")));
        }
    }
    let path = pod_dir(pods_root, &pod.uid().unwrap_or_default()).join("etc-hosts");
    crate::fsutil::write_atomic(&path, text.as_bytes(), 0o644)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(Some(Mount {
        container_path: "/etc/hosts".into(),
        host_path: path.to_string_lossy().into_owned(),
        ..Default::default()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writable(path: &Path) -> Prepared {
        Prepared { path: path.to_path_buf(), read_only: false, kubelet_written: false }
    }

    #[test]
    fn a_sub_path_is_made_inside_the_volume_and_never_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let made = sub_path(&writable(dir.path()), "a/b").unwrap();
        assert_eq!(made, dir.path().join("a/b"));
        assert!(made.is_dir());
        std::os::unix::fs::symlink("/", dir.path().join("escape")).unwrap();
        let refused = sub_path(&writable(dir.path()), "escape/etc").unwrap_err();
        assert!(refused.contains("symlink"), "{refused}");
        assert!(sub_path(&writable(dir.path()), "../up").is_err());
        let kubelet_written = Prepared { kubelet_written: true, read_only: true, ..writable(dir.path()) };
        assert_eq!(sub_path(&kubelet_written, "escape").unwrap(), dir.path().join("escape"), "its links are its own");
    }
}
