//! Periodic compaction: forgets history older than a window kept by revision count and by age (like
//! kine: by default the last 1000 revisions, checked every 5 minutes), through the same applier as every
//! other write so that it is ordered with them.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{Command, Store};

/// How much history to keep and how often to check.
#[derive(Debug, Clone, Copy)]
pub struct CompactionPolicy {
    pub interval: Duration,
    /// Keep at least this many revisions.
    pub keep_revisions: i64,
    /// Keep every revision newer than this age.
    pub keep_age: Duration,
}

impl Default for CompactionPolicy {
    fn default() -> Self {
        CompactionPolicy { interval: Duration::from_secs(300), keep_revisions: 1000, keep_age: Duration::ZERO }
    }
}

impl CompactionPolicy {
    /// The revision to compact to, given the current revision and the revisions seen at past ticks
    /// (oldest first); None when nothing is old enough.
    fn target(&self, current: i64, compacted: i64, samples: &VecDeque<(Instant, i64)>, now: Instant) -> Option<i64> {
        let mut target = current - self.keep_revisions;
        if !self.keep_age.is_zero() {
            let aged =
                samples.iter().rev().find(|(at, _)| now.duration_since(*at) >= self.keep_age).map(|(_, rev)| *rev)?;
            target = target.min(aged);
        }
        (target > compacted).then_some(target)
    }
}

pub(super) fn spawn(store: Store, policy: CompactionPolicy) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut samples: VecDeque<(Instant, i64)> = VecDeque::new();
        let mut ticker = tokio::time::interval(policy.interval);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            let now = Instant::now();
            let current = store.current_revision();
            samples.push_back((now, current));
            // Compaction is a replicated command: one member (the leader) proposes it for all.
            let proposes = store.replication_status().is_none_or(|status| status.is_leader);
            let target = policy.target(current, store.compacted_revision(), &samples, now).filter(|_| proposes);
            if let Some(target) = target {
                match store.apply(Command::Compact { revision: target }).await {
                    Ok(Ok(_)) => tracing::info!(revision = target, "compacted store history"),
                    Ok(Err(refused)) => tracing::debug!(%refused, "compaction skipped"),
                    Err(e) => tracing::warn!(error = %e, "compaction failed"),
                }
            }
            // Samples older than the age window are no longer needed, except the newest of them.
            while samples.len() > 1 && now.duration_since(samples[1].0) >= policy.keep_age {
                samples.pop_front();
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_revision_window() {
        let policy = CompactionPolicy::default();
        let now = Instant::now();
        assert_eq!(policy.target(500, 0, &VecDeque::new(), now), None);
        assert_eq!(policy.target(1500, 0, &VecDeque::new(), now), Some(500));
        assert_eq!(policy.target(1500, 500, &VecDeque::new(), now), None);
    }

    #[test]
    fn keeps_revisions_younger_than_the_age() {
        let policy = CompactionPolicy { keep_age: Duration::from_secs(60), keep_revisions: 10, ..Default::default() };
        let now = Instant::now();
        let old = now.checked_sub(Duration::from_secs(120)).expect("clock");
        let young = now.checked_sub(Duration::from_secs(30)).expect("clock");
        let samples = VecDeque::from([(old, 100), (young, 900)]);
        assert_eq!(policy.target(1000, 0, &samples, now), Some(100));
        assert_eq!(policy.target(1000, 0, &VecDeque::from([(young, 900)]), now), None);
    }
}
