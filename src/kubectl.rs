//! `tug kubectl ARGS...`: runs the kubectl on PATH in tug's place with the admin kubeconfig, as
//! `k3s kubectl` does: `KUBECONFIG` when set, else `TUG_KUBECONFIG`, else the file `tug server` writes.
//! tug run as `kubectl` (the link install.sh makes) does the same with the next kubectl on PATH, except
//! that without a tug kubeconfig it leaves kubectl to its own (a user's `~/.kube/config`).

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

/// How tug came to run kubectl.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invocation {
    /// `tug kubectl`: the tug kubeconfig is required.
    Subcommand,
    /// tug run as `kubectl`: the tug kubeconfig when there is one.
    Link,
}

/// Replaces this process with kubectl; returns only the reason it could not.
pub fn exec(args: Vec<OsString>, invocation: Invocation) -> anyhow::Error {
    let Some(kubectl) = system_kubectl() else {
        return anyhow::anyhow!("kubectl is not on PATH; install it (the package kubectl)");
    };
    let mut command = Command::new(&kubectl);
    if std::env::var_os("KUBECONFIG").is_none_or(|v| v.is_empty()) {
        match (admin_kubeconfig(), invocation) {
            (Ok(path), _) => {
                command.env("KUBECONFIG", path);
            }
            (Err(_), Invocation::Link) => {}
            (Err(error), Invocation::Subcommand) => return error,
        }
    }
    let error = command.args(args).exec();
    anyhow::anyhow!("cannot run {}: {error}", kubectl.display())
}

/// Whether this process was started as `kubectl` (through a link to tug).
pub fn invoked_as_kubectl(argv0: &std::ffi::OsStr) -> bool {
    std::path::Path::new(argv0).file_name().is_some_and(|name| name == "kubectl")
}

/// The first executable `kubectl` on PATH that is not tug itself (none when tug cannot tell its own
/// path, which would risk running itself for ever).
fn system_kubectl() -> Option<PathBuf> {
    let this = Some(std::env::current_exe().and_then(std::fs::canonicalize).ok()?);
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join("kubectl")).find(|candidate| {
        let executable = std::fs::metadata(candidate)
            .is_ok_and(|m| m.is_file() && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0);
        executable && std::fs::canonicalize(candidate).ok() != this
    })
}

/// `TUG_KUBECONFIG` or the default, which must exist.
fn admin_kubeconfig() -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("TUG_KUBECONFIG")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(crate::config::default_kubeconfig);
    match path.exists() {
        true => Ok(path),
        false => Err(anyhow::anyhow!(
            "no kubeconfig at {} (run this where `tug server` runs, or set KUBECONFIG)",
            path.display()
        )),
    }
}
