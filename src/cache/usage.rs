//! What `runqueue cache gc` and `stats` learn from builds: which entries a
//! build used and when (least recently used goes first), and how much of
//! each build the cache covered. Told to the journal a line at a time,
//! never a file per use.
//!
//! A build tells its hits as soon as it has decided (before it restores
//! anything), and again every [`REFRESH_SECS`] for the entries it still
//! holds unrestored, so that a collection, which keeps whatever was used
//! within its grace period, never takes what a running build will restore.
//!
//! Knows the cache's journal; knows nothing of graphs or scheduling.

use crate::cache::cutoff::now_secs;
use crate::cache::journal::Built;
use crate::cache::Cache;

/// How often a running build tells the journal again of the entries it
/// has looked up and not yet restored. Well inside the collector's
/// default grace period (an hour).
pub const REFRESH_SECS: u64 = 600;

impl Cache {
    /// Notes that the entry of `sig` was found, for the next
    /// [`Cache::tell_uses`].
    pub(super) fn note_hit(&self, sig: &str) {
        let mut hits = self.hits.lock().unwrap_or_else(|e| e.into_inner());
        hits.push(sig.to_string());
    }

    /// Tells the journal of the entries found since it was last told, in
    /// one line.
    pub fn tell_uses(&self) -> Result<(), String> {
        let mut used = std::mem::take(&mut *self.hits.lock().unwrap_or_else(|e| e.into_inner()));
        used.sort_unstable();
        used.dedup();
        self.tell_used(used)
    }

    /// Tells the journal that the entries of `sigs` are in use now.
    pub fn tell_used(&self, sigs: Vec<String>) -> Result<(), String> {
        self.with_journal(|j| j.append_uses(sigs, now_secs()))
    }

    /// Tells the journal how much of a build of `tasks` tasks the cache
    /// covered.
    pub fn tell_built(&self, tasks: u64, cached: u64) -> Result<(), String> {
        let built_at = now_secs();
        self.with_journal(|j| {
            j.append_built(Built {
                built_at,
                tasks,
                cached,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::journal::Journal;

    #[test]
    fn uses_and_builds_are_read_back_from_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        cache.note_hit(&a);
        cache.note_hit(&b);
        cache.note_hit(&a);
        cache.tell_uses().unwrap();
        cache.tell_uses().unwrap();
        cache.tell_built(10, 2).unwrap();
        let text = std::fs::read_to_string(dir.path().join("journal")).unwrap();
        assert_eq!(text.lines().count(), 2, "no line for no uses: {text}");
        let j = Journal::load(&dir.path().join("journal"));
        let now = now_secs();
        for sig in [&a, &b] {
            assert!(j.last_use(sig).is_some_and(|t| now - t < 5), "{sig}");
        }
        assert_eq!(j.last_use(&"c".repeat(64)), None);
        let builds: Vec<_> = j.builds().map(|b| (b.tasks, b.cached)).collect();
        assert_eq!(builds, [(10, 2)]);
    }
}
