//! The arithmetic of a rollout, as upstream's deployment controller does it, over plain numbers: maxSurge
//! and maxUnavailable resolved against the replica count, how far the new ReplicaSet may grow, how far
//! the old ones may shrink (unhealthy pods first, then available ones down to the minimum), and how a
//! scale of the Deployment mid-rollout is shared among its ReplicaSets in proportion.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// A ReplicaSet as the arithmetic sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rs {
    pub name: String,
    /// spec.replicas
    pub replicas: i32,
    /// status.availableReplicas
    pub available: i32,
    /// Orders ReplicaSets oldest first (creation time, then name).
    pub age_rank: usize,
    /// The `max-replicas` annotation: the Deployment size (plus surge) it was last sized for.
    pub sized_for: Option<i32>,
}

/// An absolute number or a percentage of `total`, rounded up or down.
fn resolve(value: Option<&IntOrString>, default_percent: i32, total: i32, round_up: bool) -> i32 {
    let percent = match value {
        Some(IntOrString::Int(n)) => return (*n).max(0),
        Some(IntOrString::String(s)) => s.trim_end_matches('%').parse::<i32>().unwrap_or(0).max(0),
        None => default_percent,
    };
    let scaled = i64::from(percent) * i64::from(total);
    (if round_up { (scaled + 99) / 100 } else { scaled / 100 }) as i32
}

/// maxSurge and maxUnavailable of a rolling update of `replicas` (never both zero: then one may be
/// unavailable).
pub fn fenceposts(max_surge: Option<&IntOrString>, max_unavailable: Option<&IntOrString>, replicas: i32) -> (i32, i32) {
    let surge = resolve(max_surge, 25, replicas, true);
    let unavailable = resolve(max_unavailable, 25, replicas, false);
    if surge == 0 && unavailable == 0 {
        return (0, 1);
    }
    (surge, unavailable.min(replicas))
}

fn total(sets: &[Rs]) -> i32 {
    sets.iter().map(|rs| rs.replicas).sum()
}

/// How many replicas the new ReplicaSet may have now: up to the Deployment's size, within the surge.
pub fn new_rs_replicas(replicas: i32, surge: i32, all: &[Rs], new: &Rs) -> i32 {
    let room = replicas + surge - total(all);
    if room <= 0 {
        return new.replicas;
    }
    new.replicas + room.min(replicas - new.replicas).max(0)
}

/// The sizes old ReplicaSets shrink to: first their unavailable replicas, then available ones as long as
/// `replicas - unavailable` stay available. Only changed sizes are returned.
pub fn shrink_old(replicas: i32, max_unavailable: i32, old: &[Rs], new: &Rs) -> BTreeMap<String, i32> {
    let mut old: Vec<Rs> = old.iter().filter(|rs| rs.replicas > 0).cloned().collect();
    old.sort_by_key(|rs| rs.age_rank);
    let mut sizes = BTreeMap::new();
    let min_available = replicas - max_unavailable;
    let all_pods = total(&old) + new.replicas;
    let new_unavailable = new.replicas - new.available;
    let mut budget = all_pods - min_available - new_unavailable;
    if budget <= 0 {
        return sizes;
    }
    // Unhealthy replicas first: they add nothing to availability.
    for rs in old.iter_mut() {
        if budget <= 0 {
            break;
        }
        let unhealthy = (rs.replicas - rs.available).max(0).min(budget);
        if unhealthy > 0 {
            rs.replicas -= unhealthy;
            budget -= unhealthy;
            sizes.insert(rs.name.clone(), rs.replicas);
        }
    }
    // Then available ones, while enough stay available.
    let available: i32 = old.iter().map(|rs| rs.available.min(rs.replicas)).sum::<i32>() + new.available;
    let mut surplus = available - min_available;
    for rs in old.iter_mut() {
        if surplus <= 0 {
            break;
        }
        let cut = rs.replicas.min(surplus);
        if cut > 0 {
            rs.replicas -= cut;
            surplus -= cut;
            sizes.insert(rs.name.clone(), rs.replicas);
        }
    }
    sizes
}

/// The sizes after the Deployment was scaled to `replicas` mid-rollout: every active ReplicaSet grows or
/// shrinks in proportion to its share of the size it was last sized for; the rounding leftover goes to
/// the largest (or, shrinking, from the largest).
pub fn proportional(replicas: i32, surge: i32, active: &[Rs], status_replicas: i32) -> BTreeMap<String, i32> {
    let allowed = if replicas > 0 { replicas + surge } else { 0 };
    let to_add = allowed - total(active);
    let mut ordered: Vec<&Rs> = active.iter().collect();
    if to_add > 0 {
        // Largest first, newer first on ties.
        ordered.sort_by(|a, b| b.replicas.cmp(&a.replicas).then(b.age_rank.cmp(&a.age_rank)));
    } else {
        ordered.sort_by(|a, b| b.replicas.cmp(&a.replicas).then(a.age_rank.cmp(&b.age_rank)));
    }
    let mut sizes: BTreeMap<String, i32> = BTreeMap::new();
    let mut added = 0;
    for rs in &ordered {
        let share = if replicas == 0 {
            -rs.replicas
        } else {
            let sized_for = rs.sized_for.unwrap_or(status_replicas).max(1);
            let scaled = f64::from(rs.replicas) * f64::from(allowed) / f64::from(sized_for);
            scaled.round() as i32 - rs.replicas
        };
        let left = to_add - added;
        let proportion = if rs.replicas == 0 || to_add == 0 || left == 0 {
            0
        } else if left > 0 {
            share.min(left)
        } else {
            share.max(left)
        };
        sizes.insert(rs.name.clone(), rs.replicas + proportion);
        added += proportion;
    }
    if let Some(largest) = ordered.first() {
        let size = sizes.entry(largest.name.clone()).or_default();
        *size = (*size + to_add - added).max(0);
    }
    sizes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(name: &str, replicas: i32, available: i32, age_rank: usize) -> Rs {
        Rs { name: name.into(), replicas, available, age_rank, sized_for: None }
    }

    #[test]
    fn fenceposts_round_surge_up_and_unavailability_down() {
        let pct = |s: &str| IntOrString::String(s.into());
        assert_eq!(fenceposts(None, None, 10), (3, 2));
        assert_eq!(fenceposts(Some(&IntOrString::Int(0)), Some(&pct("0%")), 10), (0, 1));
        assert_eq!(fenceposts(Some(&pct("50%")), Some(&IntOrString::Int(20)), 5), (3, 5));
    }

    #[test]
    fn the_new_set_grows_within_the_surge() {
        let new = rs("new", 0, 0, 1);
        let all = [rs("old", 10, 10, 0), new.clone()];
        assert_eq!(new_rs_replicas(10, 3, &all, &new), 3);
        let full = [rs("old", 13, 10, 0), new.clone()];
        assert_eq!(new_rs_replicas(10, 3, &full, &new), 0);
    }

    #[test]
    fn old_sets_shrink_unhealthy_first_then_to_the_minimum_available() {
        let new = rs("new", 3, 0, 2);
        let old = [rs("old", 10, 10, 0)];
        // 13 pods, 8 must stay available, 3 new ones are not yet: 2 old ones may go.
        assert_eq!(shrink_old(10, 2, &old, &new), BTreeMap::from([("old".to_string(), 8)]));
        let sick = [rs("older", 2, 0, 0), rs("old", 10, 10, 1)];
        let sizes = shrink_old(10, 2, &sick, &rs("new", 1, 1, 2));
        assert_eq!(sizes, BTreeMap::from([("older".to_string(), 0), ("old".to_string(), 7)]));
    }

    #[test]
    fn scaling_mid_rollout_is_shared_in_proportion() {
        let mut old = rs("old", 8, 8, 0);
        let mut new = rs("new", 5, 0, 1);
        old.sized_for = Some(13);
        new.sized_for = Some(13);
        // 10 + 3 surge grows to 20 + 5: 25 shared 8:5.
        let sizes = proportional(20, 5, &[old.clone(), new.clone()], 13);
        assert_eq!(sizes.values().sum::<i32>(), 25);
        assert_eq!(sizes, BTreeMap::from([("old".to_string(), 15), ("new".to_string(), 10)]));
        let to_zero = proportional(0, 0, &[old, new], 13);
        assert!(to_zero.values().all(|v| *v == 0));
    }
}
