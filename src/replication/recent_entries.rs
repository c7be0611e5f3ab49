//! The newest log entries kept in memory beside the log file, so that replicating an entry to each
//! follower and applying it do not read it back from SQLite and decode it again (openraft reads the
//! log for both). A contiguous run of indexes, bounded in bytes, following every change of the log:
//! appends add to it, truncation and purging take from it.

use std::collections::VecDeque;

use super::types::Entry;

/// The most bytes (encoded) of entries kept: enough for those being replicated and applied (a batch
/// is at most 1 MiB), little for a server at rest to hold on to.
const MAX_BYTES: usize = 2 * 1024 * 1024;

/// Entries at consecutive indexes with their encoded sizes, oldest first.
#[derive(Default)]
pub struct RecentEntries {
    entries: VecDeque<(Entry, usize)>,
    bytes: usize,
}

impl RecentEntries {
    /// Adds entries just appended to the log (with their encoded sizes), dropping the oldest kept
    /// beyond the byte bound. Entries not following on from those kept replace them.
    pub fn appended(&mut self, entries: impl IntoIterator<Item = (Entry, usize)>) {
        for (entry, size) in entries {
            if self.last_index().is_some_and(|last| entry.log_id.index != last + 1) {
                self.entries.clear();
                self.bytes = 0;
            }
            self.bytes += size;
            self.entries.push_back((entry, size));
        }
        while self.bytes > MAX_BYTES && self.entries.len() > 1 {
            if let Some((_, size)) = self.entries.pop_front() {
                self.bytes -= size;
            }
        }
    }

    /// Forgets the entries at `index` and after (the log was truncated there).
    pub fn truncated(&mut self, index: u64) {
        while self.last_index().is_some_and(|last| last >= index) {
            if let Some((_, size)) = self.entries.pop_back() {
                self.bytes -= size;
            }
        }
    }

    /// Forgets the entries up to `index` (the log was purged up to there).
    pub fn purged(&mut self, index: u64) {
        while self.first_index().is_some_and(|first| first <= index) {
            if let Some((_, size)) = self.entries.pop_front() {
                self.bytes -= size;
            }
        }
    }

    /// The entries at `start..=end`, if all are kept; with a `budget`, only as many as fit in that
    /// many bytes (always at least one), as the log file would give them.
    pub fn get(&self, start: u64, end: u64, budget: Option<usize>) -> Option<Vec<Entry>> {
        let (first, last) = (self.first_index()?, self.last_index()?);
        if start < first || end > last || start > end {
            return None;
        }
        let (mut entries, mut bytes) = (Vec::new(), 0);
        for (entry, size) in self.entries.range((start - first) as usize..=(end - first) as usize) {
            bytes += size;
            if budget.is_some_and(|budget| bytes > budget) && !entries.is_empty() {
                break;
            }
            entries.push(entry.clone());
        }
        Some(entries)
    }

    fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|(entry, _)| entry.log_id.index)
    }

    fn last_index(&self) -> Option<u64> {
        self.entries.back().map(|(entry, _)| entry.log_id.index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64) -> (Entry, usize) {
        let log_id = openraft::LogId::new(openraft::CommittedLeaderId::new(1, 1), index);
        (Entry { log_id, payload: openraft::EntryPayload::Blank }, 100)
    }

    fn indexes(entries: Option<Vec<Entry>>) -> Option<Vec<u64>> {
        entries.map(|entries| entries.iter().map(|e| e.log_id.index).collect())
    }

    #[test]
    fn follows_appends_truncation_and_purging() {
        let mut recent = RecentEntries::default();
        assert_eq!(indexes(recent.get(1, 1, None)), None, "nothing kept");
        recent.appended((1..=5).map(entry));
        assert_eq!(indexes(recent.get(2, 4, None)), Some(vec![2, 3, 4]));
        assert_eq!(indexes(recent.get(2, 6, None)), None, "6 is not there");
        assert_eq!(indexes(recent.get(1, 5, Some(250))), Some(vec![1, 2]), "within the budget");
        assert_eq!(indexes(recent.get(1, 5, Some(50))), Some(vec![1]), "at least one");
        recent.truncated(4);
        assert_eq!(indexes(recent.get(3, 4, None)), None, "4 was truncated");
        recent.appended([entry(4)]);
        assert_eq!(indexes(recent.get(1, 4, None)), Some(vec![1, 2, 3, 4]));
        recent.purged(2);
        assert_eq!(indexes(recent.get(2, 3, None)), None, "2 was purged");
        assert_eq!(indexes(recent.get(3, 4, None)), Some(vec![3, 4]));
        recent.appended([entry(9)]);
        assert_eq!(indexes(recent.get(3, 3, None)), None, "a gap starts over");
        assert_eq!(indexes(recent.get(9, 9, None)), Some(vec![9]));
    }

    #[test]
    fn keeps_within_its_bytes() {
        let mut recent = RecentEntries::default();
        let count = (MAX_BYTES / 100 + 10) as u64;
        recent.appended((1..=count).map(entry));
        assert_eq!(indexes(recent.get(1, 1, None)), None, "the oldest went");
        assert!(recent.get(11, count, None).is_some(), "the newest stay");
        assert!(recent.bytes <= MAX_BYTES);
    }
}
