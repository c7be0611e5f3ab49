//! A linearizability checker for a history of operations on compare-and-set registers, one register
//! per key (checked key by key: linearizability is compositional). The search is Wing & Gong's with
//! Lowe's memoization, as Porcupine does it: repeatedly pick an operation that may take effect next
//! (invoked before every pending operation returned), apply it to the register, and backtrack when no
//! order explains the results; configurations (register value, set of operations done) already seen
//! are not searched again.
//!
//! Values are unique per write, so a compare-and-set on Kubernetes' resourceVersion (the version read
//! with the value) is a compare-and-set on the value. An operation whose outcome is unknown (a timeout,
//! a broken connection, 504) may have taken effect at any time after its invocation, or never.

use std::collections::{BTreeMap, HashSet};

/// What an operation did, with what it returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A read that returned the value (None: the key did not exist).
    Read(Option<String>),
    /// Replace `old` with `new`: it succeeded.
    CasOk { old: Option<String>, new: String },
    /// Replace `old` with `new`: refused, the register did not hold `old`.
    CasFailed { old: Option<String> },
    /// Replace `old` with `new`: the outcome is unknown.
    CasUnknown { old: Option<String>, new: String },
}

/// One operation on one key: invoked at `call`, answered at `ret` (None: never, the outcome is unknown).
#[derive(Debug, Clone)]
pub struct Operation {
    pub key: String,
    pub call: u64,
    pub ret: Option<u64>,
    pub action: Action,
}

/// The register's states after `action` from `value`; none if the action's result cannot follow from
/// that value.
fn step(value: &Option<String>, action: &Action) -> Vec<Option<String>> {
    match action {
        Action::Read(read) if read == value => vec![value.clone()],
        Action::Read(_) => vec![],
        Action::CasOk { old, new } if old == value => vec![Some(new.clone())],
        Action::CasOk { .. } => vec![],
        Action::CasFailed { old } if old != value => vec![value.clone()],
        Action::CasFailed { .. } => vec![],
        Action::CasUnknown { old, new } if old == value => vec![Some(new.clone()), value.clone()],
        Action::CasUnknown { .. } => vec![value.clone()],
    }
}

/// Whether the history of one key, starting from `initial`, is linearizable.
fn key_is_linearizable(initial: Option<String>, ops: &[&Operation]) -> bool {
    let n = ops.len();
    let mut seen: HashSet<(Vec<u64>, Option<String>)> = HashSet::new();
    // Depth-first: each frame is (operations done, register value).
    let mut stack = vec![(vec![0u64; n.div_ceil(64)], initial)];
    while let Some((done, value)) = stack.pop() {
        let is_done = |i: usize| done[i / 64] & (1 << (i % 64)) != 0;
        let pending: Vec<usize> = (0..n).filter(|&i| !is_done(i)).collect();
        if pending.is_empty() {
            return true;
        }
        if !seen.insert((done.clone(), value.clone())) {
            continue;
        }
        // An operation may go next if it was invoked before every pending operation returned; the
        // earliest invoked is tried first (pushed last).
        let first_return = pending.iter().filter_map(|&i| ops[i].ret).min().unwrap_or(u64::MAX);
        let mut candidates: Vec<usize> = pending.iter().copied().filter(|&i| ops[i].call < first_return).collect();
        candidates.sort_by_key(|&i| std::cmp::Reverse(ops[i].call));
        for i in candidates {
            for next in step(&value, &ops[i].action) {
                let mut done = done.clone();
                done[i / 64] |= 1 << (i % 64);
                stack.push((done, next));
            }
        }
    }
    false
}

/// The keys whose histories (each starting from an absent key) are not linearizable.
pub fn violations(history: &[Operation]) -> Vec<String> {
    let mut by_key: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for op in history {
        by_key.entry(&op.key).or_default().push(op);
    }
    by_key.into_iter().filter(|(_, ops)| !key_is_linearizable(None, ops)).map(|(key, _)| key.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(call: u64, ret: Option<u64>, action: Action) -> Operation {
        Operation { key: "k".into(), call, ret, action }
    }

    fn v(s: &str) -> Option<String> {
        Some(s.into())
    }

    fn cas(old: Option<String>, new: &str) -> Action {
        Action::CasOk { old, new: new.into() }
    }

    #[test]
    fn sequential_and_overlapping_histories_that_have_an_order_pass() {
        let history = [
            op(0, Some(1), cas(None, "a")),
            op(2, Some(3), Action::Read(v("a"))),
            // Overlapping writes and a read seeing the second one's value.
            op(4, Some(8), cas(v("a"), "b")),
            op(5, Some(9), Action::CasFailed { old: v("a") }),
            op(6, Some(7), Action::Read(v("b"))),
        ];
        assert!(violations(&history).is_empty());
    }

    #[test]
    fn a_stale_read_after_a_write_returned_fails() {
        let history =
            [op(0, Some(1), cas(None, "a")), op(2, Some(3), cas(v("a"), "b")), op(4, Some(5), Action::Read(v("a")))];
        assert_eq!(violations(&history), ["k"]);
    }

    #[test]
    fn a_lost_acknowledged_write_fails_and_an_unknown_one_may_go_either_way() {
        let lost = [op(0, Some(1), cas(None, "a")), op(2, Some(3), Action::Read(None))];
        assert_eq!(violations(&lost), ["k"]);
        let applied =
            [op(0, None, Action::CasUnknown { old: None, new: "a".into() }), op(2, Some(3), Action::Read(v("a")))];
        assert!(violations(&applied).is_empty());
        let not_applied =
            [op(0, None, Action::CasUnknown { old: None, new: "a".into() }), op(2, Some(3), Action::Read(None))];
        assert!(violations(&not_applied).is_empty());
    }

    #[test]
    fn a_read_of_a_value_written_only_later_fails_even_if_that_write_is_unknown() {
        let history =
            [op(0, Some(1), Action::Read(v("a"))), op(2, None, Action::CasUnknown { old: None, new: "a".into() })];
        assert_eq!(violations(&history), ["k"]);
    }

    #[test]
    fn two_successful_writes_from_the_same_value_fail() {
        let history = [op(0, Some(5), cas(None, "a")), op(1, Some(6), cas(None, "b"))];
        assert_eq!(violations(&history), ["k"]);
    }

    #[test]
    fn a_failed_compare_and_set_that_should_have_matched_fails() {
        let history = [op(0, Some(1), cas(None, "a")), op(2, Some(3), Action::CasFailed { old: v("a") })];
        assert_eq!(violations(&history), ["k"]);
    }
}
