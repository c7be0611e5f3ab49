//! A set of iptables chains with their rules, as pure data, and the iptables-restore payload that turns
//! one set into the next: only chains whose rules changed are rewritten, chains that are gone are
//! flushed and deleted, and nothing outside the set is touched (the payload is applied with
//! `--noflush`).

use std::collections::BTreeMap;
use std::fmt::Write;

/// The tables tug writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    Filter,
    Nat,
}

impl Table {
    pub fn name(self) -> &'static str {
        match self {
            Table::Filter => "filter",
            Table::Nat => "nat",
        }
    }

    pub const ALL: [Table; 2] = [Table::Filter, Table::Nat];
}

/// Chains by table and name, each with its rules in order (a rule is what follows `-A <chain> `).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ruleset {
    chains: BTreeMap<(Table, String), Vec<String>>,
}

impl Ruleset {
    /// Declares `chain` (empty) if it is not there yet.
    pub fn chain(&mut self, table: Table, chain: &str) {
        self.chains.entry((table, chain.to_string())).or_default();
    }

    /// Appends a rule to `chain`, declaring the chain.
    pub fn rule(&mut self, table: Table, chain: &str, rule: impl Into<String>) {
        self.chains.entry((table, chain.to_string())).or_default().push(rule.into());
    }

    pub fn rules(&self, table: Table, chain: &str) -> Option<&[String]> {
        self.chains.get(&(table, chain.to_string())).map(Vec::as_slice)
    }

    pub fn chain_names(&self, table: Table) -> impl Iterator<Item = &str> {
        self.chains.keys().filter(move |(t, _)| *t == table).map(|(_, name)| name.as_str())
    }

    pub fn rule_count(&self) -> usize {
        self.chains.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.chains.is_empty()
    }

    /// The iptables-restore payload that turns `self` into `next` (`self` being what is applied now).
    pub fn transition_to(&self, next: &Ruleset) -> Payload {
        let mut payload = Payload::default();
        for table in Table::ALL {
            let mut text = String::new();
            let changed: Vec<(&str, &[String])> = next
                .chains
                .iter()
                .filter(|((t, name), rules)| *t == table && self.rules(table, name) != Some(rules.as_slice()))
                .map(|((_, name), rules)| (name.as_str(), rules.as_slice()))
                .collect();
            let gone: Vec<&str> = self.chain_names(table).filter(|name| next.rules(table, name).is_none()).collect();
            if changed.is_empty() && gone.is_empty() {
                continue;
            }
            // Declaring a chain creates it or flushes it; a chain is deleted only after every rule
            // that jumped to it is rewritten, and flushed first so it holds no jumps itself.
            for name in changed.iter().map(|(name, _)| name).chain(&gone) {
                let _ = writeln!(text, ":{name} - [0:0]");
            }
            for (name, rules) in &changed {
                for rule in *rules {
                    let _ = writeln!(text, "-A {name} {rule}");
                }
            }
            for name in &gone {
                let _ = writeln!(text, "-X {name}");
            }
            payload.chains_written += changed.len();
            payload.chains_deleted += gone.len();
            payload.tables.push((table, text));
        }
        payload
    }
}

/// What iptables-restore is given: per table, the lines between `*table` and `COMMIT`.
#[derive(Debug, Default)]
pub struct Payload {
    tables: Vec<(Table, String)>,
    pub chains_written: usize,
    pub chains_deleted: usize,
}

impl Payload {
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }

    /// The text for iptables-restore.
    pub fn text(&self) -> String {
        let mut text = String::new();
        for (table, lines) in &self.tables {
            let _ = write!(text, "*{}\n{lines}COMMIT\n", table.name());
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(rules: &[(Table, &str, &str)]) -> Ruleset {
        let mut set = Ruleset::default();
        for (table, chain, rule) in rules {
            if rule.is_empty() {
                set.chain(*table, chain);
            } else {
                set.rule(*table, chain, *rule);
            }
        }
        set
    }

    #[test]
    fn a_first_sync_writes_every_chain() {
        let next = set(&[(Table::Nat, "TUG-A", "-j RETURN"), (Table::Filter, "TUG-B", ""), (Table::Nat, "TUG-C", "")]);
        let payload = Ruleset::default().transition_to(&next);
        assert_eq!(
            payload.text(),
            "*filter\n:TUG-B - [0:0]\nCOMMIT\n*nat\n:TUG-A - [0:0]\n:TUG-C - [0:0]\n-A TUG-A -j RETURN\nCOMMIT\n"
        );
        assert_eq!((payload.chains_written, payload.chains_deleted), (3, 0));
    }

    #[test]
    fn later_syncs_rewrite_only_what_changed_and_delete_what_is_gone() {
        let before =
            set(&[(Table::Nat, "TUG-A", "-j X"), (Table::Nat, "TUG-B", "-j Y"), (Table::Nat, "TUG-C", "-j Z")]);
        let after = set(&[(Table::Nat, "TUG-A", "-j X"), (Table::Nat, "TUG-B", "-j W")]);
        let payload = before.transition_to(&after);
        assert_eq!(payload.text(), "*nat\n:TUG-B - [0:0]\n:TUG-C - [0:0]\n-A TUG-B -j W\n-X TUG-C\nCOMMIT\n");
        assert!(after.transition_to(&after).is_empty());
    }
}
