//! Private registries, as k3s's registries.yaml: `mirrors` (a registry's endpoints to try first, `*`
//! for every registry) and `configs` (a registry host's credentials and TLS). The agent reads
//! `--private-registry` (default /etc/tug/registries.yaml, when it exists) at start and turns it into
//! containerd's own forms: a `hosts.toml` per registry under `<containerd dir>/certs.d/` (the CRI
//! plugin's `config_path`) for mirrors and TLS, and the CRI plugin's `registry.configs.<host>.auth`
//! for credentials, so every pull through the CRI uses them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Where k3s users would look for it, with tug's name.
pub const DEFAULT_PATH: &str = "/etc/tug/registries.yaml";

/// The parsed file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registries {
    #[serde(default)]
    pub mirrors: BTreeMap<String, Mirror>,
    #[serde(default)]
    pub configs: BTreeMap<String, RegistryConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mirror {
    /// URLs (or bare hosts, taken as https) tried in order before the registry itself.
    #[serde(default)]
    pub endpoint: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    pub auth: Option<Auth>,
    pub tls: Option<Tls>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    pub username: Option<String>,
    pub password: Option<String>,
    pub auth: Option<String>,
    pub identity_token: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// Reads `path`; a missing file is no registries when `required` is false.
pub fn load(path: &Path, required: bool) -> Result<Registries, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => return Ok(Registries::default()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let registries: Registries =
        serde_yaml::from_str(&text).map_err(|e| format!("{} is not a valid registries file: {e}", path.display()))?;
    for (name, mirror) in &registries.mirrors {
        for endpoint in &mirror.endpoint {
            url_of(endpoint)
                .ok_or_else(|| format!("{}: mirrors.{name}: endpoint {endpoint:?} is not a URL", path.display()))?;
        }
    }
    Ok(registries)
}

/// `endpoint` as a URL: https unless it names its scheme; None when it is not one.
fn url_of(endpoint: &str) -> Option<String> {
    let url = match endpoint.contains("://") {
        true => endpoint.to_string(),
        false => format!("https://{endpoint}"),
    };
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"))?;
    (!rest.is_empty() && !rest.contains(char::is_whitespace)).then(|| url.trim_end_matches('/').to_string())
}

/// The host (and port) of a URL.
fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.split('/').next().unwrap_or(rest)
}

fn quoted(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
}

/// The TLS lines of a `[host."…"]` table for the registry host `host`.
fn tls_lines(registries: &Registries, host: &str) -> String {
    let Some(tls) = registries.configs.get(host).and_then(|c| c.tls.as_ref()) else { return String::new() };
    let mut lines = String::new();
    if let Some(ca) = &tls.ca_file {
        lines.push_str(&format!("  ca = {}\n", quoted(&ca.to_string_lossy())));
    }
    if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
        lines.push_str(&format!(
            "  client = [[{}, {}]]\n",
            quoted(&cert.to_string_lossy()),
            quoted(&key.to_string_lossy())
        ));
    }
    if tls.insecure_skip_verify {
        lines.push_str("  skip_verify = true\n");
    }
    lines
}

/// containerd's directory name and `hosts.toml` for each registry the file mentions.
pub fn hosts_files(registries: &Registries) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    let named =
        registries.mirrors.keys().chain(registries.configs.keys().filter(|k| !registries.mirrors.contains_key(*k)));
    for registry in named {
        let (dir, server) = match registry.as_str() {
            "*" => ("_default".to_string(), None),
            "docker.io" => (registry.clone(), Some("https://registry-1.docker.io".to_string())),
            other => (other.to_string(), url_of(other)),
        };
        let mut text = String::from("# Generated by tug from its registries file at every start; edits are lost.\n");
        if let Some(server) = &server {
            text.push_str(&format!("server = {}\n", quoted(server)));
        }
        let endpoints = registries.mirrors.get(registry).map(|m| m.endpoint.as_slice()).unwrap_or_default();
        for url in endpoints.iter().filter_map(|e| url_of(e)) {
            text.push_str(&format!("\n[host.{}]\n  capabilities = [\"pull\", \"resolve\"]\n", quoted(&url)));
            text.push_str(&tls_lines(registries, host_of(&url)));
        }
        if let Some(server) = server.as_ref().filter(|_| registry != "docker.io") {
            let own = tls_lines(registries, registry);
            if !own.is_empty() {
                text.push_str(&format!(
                    "\n[host.{}]\n  capabilities = [\"pull\", \"resolve\", \"push\"]\n{own}",
                    quoted(server)
                ));
            }
        }
        files.insert(dir, text);
    }
    files
}

/// The CRI plugin's registry section: where the hosts files are, and each host's credentials.
pub fn cri_section(registries: &Registries, certs_dir: &Path) -> String {
    let mut text = format!(
        "\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = {}\n",
        quoted(&certs_dir.to_string_lossy())
    );
    for (host, config) in &registries.configs {
        let Some(auth) = &config.auth else { continue };
        text.push_str(&format!("\n[plugins.\"io.containerd.grpc.v1.cri\".registry.configs.{}.auth]\n", quoted(host)));
        let fields = [
            ("username", &auth.username),
            ("password", &auth.password),
            ("auth", &auth.auth),
            ("identitytoken", &auth.identity_token),
        ];
        for (key, value) in fields {
            if let Some(value) = value {
                text.push_str(&format!("  {key} = {}\n", quoted(value)));
            }
        }
    }
    text
}

/// Writes the hosts files into `certs_dir` (replacing what an earlier start wrote).
pub fn write_hosts(registries: &Registries, certs_dir: &Path) -> std::io::Result<()> {
    if certs_dir.exists() {
        std::fs::remove_dir_all(certs_dir)?;
    }
    std::fs::create_dir_all(certs_dir)?;
    for (dir, text) in hosts_files(registries) {
        let dir = certs_dir.join(dir);
        std::fs::create_dir_all(&dir)?;
        crate::fsutil::write_atomic(&dir.join("hosts.toml"), text.as_bytes(), 0o600)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
mirrors:
  docker.io:
    endpoint: ["http://127.0.0.1:5000", "mirror.example:5443"]
  "*":
    endpoint: ["http://127.0.0.1:5000"]
configs:
  "mirror.example:5443":
    auth: {username: user, password: "p\"ss"}
    tls: {ca_file: /etc/ssl/mirror.pem, insecure_skip_verify: true}
  "registry.example":
    tls: {cert_file: /c.pem, key_file: /k.pem}
"#;

    fn parsed() -> Registries {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("registries.yaml");
        std::fs::write(&path, FILE).expect("write");
        load(&path, true).expect("valid")
    }

    #[test]
    fn mirrors_and_tls_become_hosts_files() {
        let files = hosts_files(&parsed());
        let hub = &files["docker.io"];
        assert!(hub.contains("server = \"https://registry-1.docker.io\""), "{hub}");
        assert!(hub.contains("[host.\"http://127.0.0.1:5000\"]\n  capabilities = [\"pull\", \"resolve\"]\n"), "{hub}");
        assert!(hub.contains("[host.\"https://mirror.example:5443\"]"), "{hub}");
        assert!(hub.contains("ca = \"/etc/ssl/mirror.pem\"\n  skip_verify = true"), "{hub}");
        assert!(!files["_default"].contains("server ="));
        let own = &files["registry.example"];
        assert!(
            own.contains("[host.\"https://registry.example\"]") && own.contains("client = [[\"/c.pem\", \"/k.pem\"]]"),
            "{own}"
        );
    }

    #[test]
    fn credentials_go_to_the_cri_config() {
        let section = cri_section(&parsed(), Path::new("/data/certs.d"));
        assert!(section.contains("config_path = \"/data/certs.d\""));
        assert!(
            section.contains(
                "registry.configs.\"mirror.example:5443\".auth]\n  username = \"user\"\n  password = \"p\\\"ss\"\n"
            ),
            "{section}"
        );
        assert!(!section.contains("registry.example\".auth"));
    }

    #[test]
    fn a_missing_default_file_is_nothing_and_a_bad_one_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("none.yaml");
        assert_eq!(load(&missing, false), Ok(Registries::default()));
        assert!(load(&missing, true).is_err());
        let bad = dir.path().join("bad.yaml");
        std::fs::write(&bad, "mirrors:\n  docker.io:\n    endpoints: [x]\n").expect("write");
        assert!(load(&bad, true).unwrap_err().contains("unknown field `endpoints`"));
    }
}
