//! Completion indexes of Indexed Jobs: the index a pod carries, the compressed interval list
//! `status.completedIndexes` uses ("1,3-5,7"), and which indexes still need a pod.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

/// The annotation (and label) holding a pod's completion index.
pub const INDEX_KEY: &str = "batch.kubernetes.io/job-completion-index";

/// The completion index of a pod, if it has a valid one below `completions`.
pub fn of(pod: &Pod, completions: i32) -> Option<i32> {
    let index: i32 = pod.annotations().get(INDEX_KEY)?.parse().ok()?;
    (0..completions).contains(&index).then_some(index)
}

/// Reads "1,3-5,7" (malformed parts are skipped).
pub fn parse(list: &str) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    for part in list.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((from, to)) => {
                if let (Ok(from), Ok(to)) = (from.parse::<i32>(), to.parse::<i32>()) {
                    out.extend(from..=to);
                }
            }
            None => out.extend(part.parse::<i32>().ok()),
        }
    }
    out
}

/// Writes indexes as "1,3-5,7".
pub fn format(indexes: &BTreeSet<i32>) -> String {
    let mut parts = Vec::new();
    let mut run: Option<(i32, i32)> = None;
    for &i in indexes {
        run = match run {
            Some((from, to)) if to + 1 == i => Some((from, i)),
            Some(done) => {
                parts.push(done);
                Some((i, i))
            }
            None => Some((i, i)),
        };
    }
    parts.extend(run);
    let text: Vec<String> =
        parts.iter().map(|(from, to)| if from == to { from.to_string() } else { format!("{from}-{to}") }).collect();
    text.join(",")
}

/// The lowest `count` indexes below `completions` that are neither completed nor taken by an active pod.
pub fn pending(completions: i32, completed: &BTreeSet<i32>, active: &BTreeSet<i32>, count: usize) -> Vec<i32> {
    (0..completions).filter(|i| !completed.contains(i) && !active.contains(i)).take(count).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_lists_round_trip() {
        let set: BTreeSet<i32> = [1, 3, 4, 5, 7].into();
        assert_eq!(format(&set), "1,3-5,7");
        assert_eq!(parse("1,3-5,7"), set);
        assert_eq!(format(&BTreeSet::new()), "");
        assert_eq!(parse("x,2"), [2].into());
    }

    #[test]
    fn pending_indexes_skip_done_and_running_ones() {
        assert_eq!(pending(5, &[0, 2].into(), &[1].into(), 2), [3, 4]);
        assert_eq!(pending(3, &[0, 1, 2].into(), &BTreeSet::new(), 2), Vec::<i32>::new());
    }
}
