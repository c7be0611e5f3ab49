//! iptables as tug drives it: the backend in use on the host (nft or legacy, the one holding the
//! host's rules, much as Kubernetes' iptables-wrapper decides), whole payloads applied atomically with `iptables-restore --noflush`, the
//! jump rules that lead from the built-in chains into tug's own, what is there now (`iptables-save`)
//! and the removal of everything tug added. Every chain tug owns starts with [`PREFIX`]; nothing else
//! is flushed or deleted.

pub mod ruleset;

use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

pub use ruleset::{Payload, Ruleset, Table};

/// The prefix of every chain tug owns.
pub const PREFIX: &str = "TUG-";

#[derive(Debug, thiserror::Error)]
pub enum IptablesError {
    #[error("cannot run {command}: {source}")]
    Spawn { command: String, source: std::io::Error },
    #[error("{command} failed: {stderr}")]
    Failed { command: String, stderr: String },
}

/// The iptables commands of one backend: `iptables`, `iptables-save` and `iptables-restore` with the
/// backend's suffix (`-nft`, `-legacy`, or none for whatever the host's default is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iptables {
    variant: String,
}

impl Iptables {
    /// The backend holding the host's rules: where both exist, the one with more rules (so tug joins
    /// what kube-proxy, Docker or a firewall already use), else, when neither holds any, the host's
    /// default `iptables` (Kubernetes' iptables-wrapper prefers nft there; tug follows the host's
    /// alternatives).
    pub async fn detect() -> Iptables {
        let mut best = Iptables { variant: String::new() };
        let mut most = 0;
        for variant in ["-legacy", "-nft"] {
            let candidate = Iptables { variant: variant.into() };
            if let Ok(saved) = candidate.save().await {
                let rules = saved.lines().filter(|line| line.starts_with("-A ")).count();
                if rules > most {
                    (best, most) = (candidate, rules);
                }
            }
        }
        tracing::info!(backend = best.name(), rules = most, "iptables backend");
        best
    }

    /// Both backends, for removing tug's rules wherever they are.
    pub fn every_backend() -> [Iptables; 2] {
        [Iptables { variant: "-legacy".into() }, Iptables { variant: "-nft".into() }]
    }

    pub fn name(&self) -> &str {
        match self.variant.as_str() {
            "" => "default",
            variant => &variant[1..],
        }
    }

    fn command(&self, tool: &str) -> String {
        let (base, rest) = tool.split_once('-').map_or((tool, ""), |(b, r)| (b, r));
        match rest {
            "" => format!("{base}{}", self.variant),
            rest => format!("{base}{}-{rest}", self.variant),
        }
    }

    async fn run(&self, tool: &str, args: &[&str], input: Option<&str>) -> Result<String, IptablesError> {
        exec(&self.command(tool), args, input).await
    }

    /// `iptables-save`: every table's rules.
    pub async fn save(&self) -> Result<String, IptablesError> {
        self.run("iptables-save", &[], None).await
    }

    /// Applies `payload` in one transaction, leaving every chain it does not name as it is.
    pub async fn restore(&self, payload: &Payload) -> Result<(), IptablesError> {
        if payload.is_empty() {
            return Ok(());
        }
        self.run("iptables-restore", &["--noflush", "-w", "5"], Some(&payload.text())).await.map(drop)
    }

    /// Puts `rule` (which must carry a `-m comment`, as tug's jumps do) into the built-in `chain`
    /// unless it is already there: first in the chain, or last with `append` (as flannel adds its
    /// forwarding rules, after whatever decides first).
    pub async fn ensure_rule(
        &self,
        table: Table,
        chain: &str,
        rule: &[&str],
        append: bool,
    ) -> Result<(), IptablesError> {
        let check = [&["-w", "5", "-t", table.name(), "-C", chain][..], rule].concat();
        if self.run("iptables", &check, None).await.is_ok() {
            return Ok(());
        }
        let position: &[&str] = if append { &["-A", chain] } else { &["-I", chain, "1"] };
        let add = [&["-w", "5", "-t", table.name()][..], position, rule].concat();
        self.run("iptables", &add, None).await.map(drop)
    }

    /// Makes `rule` the first rule of the built-in `chain`, moving it there if something else was
    /// put before it (for the policy chain, which must see traffic before any rule accepts it).
    pub async fn ensure_first(
        &self,
        table: Table,
        chain: &str,
        rule: &[&str],
        target: &str,
    ) -> Result<(), IptablesError> {
        let listed = self.run("iptables", &["-w", "5", "-t", table.name(), "-S", chain], None).await?;
        let first = listed.lines().find(|line| line.starts_with("-A "));
        if first.is_some_and(|line| line.ends_with(&format!("-j {target}"))) {
            return Ok(());
        }
        self.delete_rule(table, chain, rule).await?;
        self.ensure_rule(table, chain, rule, false).await
    }

    /// Removes `rule` from `chain` if it is there.
    pub async fn delete_rule(&self, table: Table, chain: &str, rule: &[&str]) -> Result<(), IptablesError> {
        let check = [&["-w", "5", "-t", table.name(), "-C", chain][..], rule].concat();
        while self.run("iptables", &check, None).await.is_ok() {
            let delete = [&["-w", "5", "-t", table.name(), "-D", chain][..], rule].concat();
            self.run("iptables", &delete, None).await?;
        }
        Ok(())
    }

    /// The chains tug owns now, with `owned` picking which (by name), as a ruleset.
    pub async fn owned_chains(&self, owned: impl Fn(&str) -> bool) -> Result<Ruleset, IptablesError> {
        Ok(parse_save(&self.save().await?, |chain| chain.starts_with(PREFIX) && owned(chain)))
    }

    /// Removes every rule and chain tug added: the jumps from the built-in chains, then tug's chains.
    pub async fn remove_all(&self) -> Result<(), IptablesError> {
        let saved = self.save().await?;
        let payload = removal_payload(&saved);
        if !payload.is_empty() {
            self.run("iptables-restore", &["--noflush", "-w", "5"], Some(&payload)).await?;
        }
        Ok(())
    }
}

/// `<prefix>` and 16 hex digits of a hash of `key`: a chain or set name that is stable across
/// restarts and fits iptables' 28 and ipset's 31 characters.
pub fn hashed_name(prefix: &str, key: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(key.as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02X}")).collect();
    format!("{prefix}{hex}")
}

/// A `--comment` value iptables takes (at most 256 bytes), cut on a character boundary.
pub fn comment(text: &str) -> String {
    let mut end = text.len().min(200);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].replace('"', "'")
}

/// Runs `command` with `args`, `input` on its stdin; its stdout, or what it said when it failed.
pub async fn exec(command: &str, args: &[&str], input: Option<&str>) -> Result<String, IptablesError> {
    let spawn_error = |source| IptablesError::Spawn { command: command.to_string(), source };
    let mut child = Command::new(command)
        .args(args)
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(spawn_error)?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(input.as_bytes()).await.map_err(spawn_error)?;
    }
    let output = child.wait_with_output().await.map_err(spawn_error)?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
        return Err(IptablesError::Failed { command: format!("{command} {}", args.join(" ")), stderr });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The chains of `saved` (iptables-save output) whose names `keep` accepts, with their rules as saved.
fn parse_save(saved: &str, keep: impl Fn(&str) -> bool) -> Ruleset {
    let mut set = Ruleset::default();
    let mut table = None;
    for line in saved.lines() {
        if let Some(name) = line.strip_prefix('*') {
            table = Table::ALL.into_iter().find(|t| t.name() == name);
        } else if let (Some(table), Some(chain)) = (table, line.strip_prefix(':')) {
            let name = chain.split(' ').next().unwrap_or_default();
            if keep(name) {
                set.chain(table, name);
            }
        } else if let (Some(table), Some(rule)) = (table, line.strip_prefix("-A ")) {
            let (chain, rest) = rule.split_once(' ').unwrap_or((rule, ""));
            if keep(chain) {
                set.rule(table, chain, rest);
            }
        }
    }
    set
}

/// The iptables-restore text removing tug's jumps from the built-in chains and then tug's chains.
fn removal_payload(saved: &str) -> String {
    let mut text = String::new();
    let jump = format!("-j {PREFIX}");
    for table in Table::ALL {
        let mut lines = Vec::new();
        let mut in_table = false;
        let mut chains = Vec::new();
        for line in saved.lines() {
            if let Some(name) = line.strip_prefix('*') {
                in_table = name == table.name();
            } else if !in_table {
                continue;
            } else if let Some(chain) = line.strip_prefix(':') {
                let name = chain.split(' ').next().unwrap_or_default();
                if name.starts_with(PREFIX) {
                    chains.push(name.to_string());
                }
            } else if let Some(rule) = line.strip_prefix("-A ") {
                if !rule.starts_with(PREFIX) && rule.contains(&jump) {
                    lines.push(format!("-D {rule}"));
                }
            }
        }
        if lines.is_empty() && chains.is_empty() {
            continue;
        }
        lines.extend(chains.iter().map(|c| format!(":{c} - [0:0]")));
        lines.extend(chains.iter().map(|c| format!("-X {c}")));
        text.push_str(&format!("*{}\n{}\nCOMMIT\n", table.name(), lines.join("\n")));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAVED: &str = "# Generated by iptables-save\n*nat\n:PREROUTING ACCEPT [0:0]\n:TUG-SERVICES - [0:0]\n\
        :TUG-SVC-AB - [0:0]\n:OTHER - [0:0]\n\
        -A PREROUTING -m comment --comment \"tug service portals\" -j TUG-SERVICES\n-A PREROUTING -j OTHER\n\
        -A TUG-SERVICES -d 10.43.0.1/32 -j TUG-SVC-AB\nCOMMIT\n*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n";

    #[test]
    fn the_backends_commands_carry_its_suffix() {
        let nft = Iptables { variant: "-nft".into() };
        assert_eq!(nft.command("iptables-restore"), "iptables-nft-restore");
        assert_eq!(nft.command("iptables"), "iptables-nft");
        assert_eq!(Iptables { variant: String::new() }.command("iptables-save"), "iptables-save");
    }

    #[test]
    fn saved_chains_are_read_back_as_a_ruleset() {
        let set = parse_save(SAVED, |chain| chain.starts_with(PREFIX));
        assert_eq!(set.chain_names(Table::Nat).collect::<Vec<_>>(), ["TUG-SERVICES", "TUG-SVC-AB"]);
        assert_eq!(set.rules(Table::Nat, "TUG-SERVICES"), Some(&["-d 10.43.0.1/32 -j TUG-SVC-AB".to_string()][..]));
        assert_eq!(set.rules(Table::Nat, "TUG-SVC-AB"), Some(&[][..]));
    }

    #[test]
    fn removal_takes_out_the_jumps_and_the_chains_but_nothing_else() {
        let text = removal_payload(SAVED);
        assert_eq!(
            text,
            "*nat\n-D PREROUTING -m comment --comment \"tug service portals\" -j TUG-SERVICES\n\
             :TUG-SERVICES - [0:0]\n:TUG-SVC-AB - [0:0]\n-X TUG-SERVICES\n-X TUG-SVC-AB\nCOMMIT\n"
        );
    }
}
