//! Which entries and blobs a collection takes: entries older than the
//! age limit, then least recently used ones until the cache fits its size,
//! and with them the blobs no kept entry names. Nothing used or written
//! within the grace period is taken. Decides; removes nothing.
//!
//! Knows a [`Scan`] and last uses; knows nothing of files.

use std::collections::{HashMap, HashSet};

use super::scan::Scan;

/// What a collection may keep.
#[derive(Debug, Clone, Copy)]
pub(in crate::cli) struct Limits {
    pub(in crate::cli) max_bytes: u64,
    /// Entries unused for longer go whatever the size.
    pub(in crate::cli) max_age_secs: Option<u64>,
    /// Anything used or written more recently stays.
    pub(in crate::cli) grace_secs: u64,
}

/// [`Limits`] as of `now` (seconds since the epoch).
struct At<'a>(&'a Limits, u64);

impl At<'_> {
    fn settled(&self, at: u64) -> bool {
        self.1.saturating_sub(at) >= self.0.grace_secs
    }

    fn expired(&self, at: u64) -> bool {
        (self.0.max_age_secs).is_some_and(|age| self.1.saturating_sub(at) > age)
    }
}

/// What to take: indices into the scan's entries and blobs.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Plan {
    pub(super) entries: Vec<usize>,
    pub(super) blobs: Vec<usize>,
}

/// The plan for `scan` under `limits` as of `now`; `last_use` says when a
/// build last used an entry, by signature (the journal).
pub(super) fn plan(
    scan: &Scan,
    last_use: impl Fn(&str) -> Option<u64>,
    limits: &Limits,
    now: u64,
) -> Plan {
    let at = At(limits, now);
    let mut refs = references(scan);
    let blob_at: HashMap<&str, usize> = (scan.blobs.iter().enumerate())
        .map(|(i, b)| (b.name(), i))
        .collect();
    let mut total = scan.bytes();
    let mut taken = HashSet::new();
    let mut take_blob = |i: usize, total: &mut u64| {
        let blob = &scan.blobs[i];
        if at.settled(blob.modified) && taken.insert(i) {
            *total -= blob.size;
        }
    };
    for (i, blob) in scan.blobs.iter().enumerate() {
        if !refs.contains_key(blob.name()) {
            take_blob(i, &mut total);
        }
    }
    let mut entries = Vec::new();
    for (i, last) in by_last_use(scan, last_use) {
        if !at.settled(last) || !(at.expired(last) || total > limits.max_bytes) {
            continue;
        }
        entries.push(i);
        total -= scan.entries[i].bytes;
        for blob in scan.entries[i].blobs.iter().flatten() {
            let left = refs.get_mut(blob.as_str()).expect("counted above");
            *left -= 1;
            if let (0, Some(&b)) = (*left, blob_at.get(blob.as_str())) {
                take_blob(b, &mut total);
            }
        }
    }
    let mut blobs: Vec<usize> = taken.into_iter().collect();
    blobs.sort_unstable();
    Plan { entries, blobs }
}

/// How many entries name each blob.
fn references(scan: &Scan) -> HashMap<&str, usize> {
    let mut refs = HashMap::new();
    for blob in scan.entries.iter().flat_map(|e| e.blobs.iter().flatten()) {
        *refs.entry(blob.as_str()).or_insert(0) += 1;
    }
    refs
}

/// Entries by when they were last used (written counts as used), least
/// recently first; those that do not parse before all.
fn by_last_use(scan: &Scan, last_use: impl Fn(&str) -> Option<u64>) -> Vec<(usize, u64)> {
    let mut order: Vec<(bool, usize, u64)> = (scan.entries.iter().enumerate())
        .map(|(i, e)| {
            let last = last_use(&e.sig).unwrap_or(0).max(e.written);
            (e.blobs.is_some(), i, last)
        })
        .collect();
    order.sort_by_key(|&(parses, i, last)| (parses, last, i));
    order.into_iter().map(|(_, i, last)| (i, last)).collect()
}

#[cfg(test)]
mod tests {
    use super::super::scan::{EntryFile, FileAt};
    use super::*;

    const NOW: u64 = 1_000_000;

    /// What the cache holds once the plan is carried out.
    fn after(scan: &Scan, p: &Plan) -> u64 {
        let entries: u64 = p.entries.iter().map(|&i| scan.entries[i].bytes).sum();
        let blobs: u64 = p.blobs.iter().map(|&i| scan.blobs[i].size).sum();
        scan.bytes() - entries - blobs
    }

    fn blob(name: &str, size: u64, modified: u64) -> FileAt {
        FileAt {
            path: format!("cas/xx/{name}").into(),
            size,
            modified,
        }
    }

    fn entry(sig: &str, written: u64, blobs: &[&str]) -> EntryFile {
        EntryFile {
            sig: sig.to_string(),
            bytes: 10,
            written,
            blobs: Some(blobs.iter().map(|b| b.to_string()).collect()),
        }
    }

    fn limits(max_bytes: u64) -> Limits {
        Limits {
            max_bytes,
            max_age_secs: None,
            grace_secs: 100,
        }
    }

    /// Entries a (oldest), b, c (newest); blob s shared by a and c.
    fn three() -> Scan {
        Scan {
            entries: vec![
                entry("a", NOW - 3000, &["s", "x"]),
                entry("b", NOW - 2000, &["y"]),
                entry("c", NOW - 1000, &["s", "z"]),
            ],
            blobs: vec![
                blob("s", 100, NOW - 3000),
                blob("x", 100, NOW - 3000),
                blob("y", 100, NOW - 2000),
                blob("z", 100, NOW - 1000),
            ],
            ..Scan::default()
        }
    }

    #[test]
    fn the_least_recently_used_go_until_the_cache_fits_and_shared_blobs_stay() {
        let scan = three();
        assert_eq!(scan.bytes(), 430);
        let p = plan(&scan, |_| None, &limits(330), NOW);
        assert_eq!(p.entries, vec![0], "a and its own blob bring 430 to 320");
        assert_eq!(p.blobs, vec![1], "x goes; s is still c's");
        assert_eq!(after(&scan, &p), 320);
        let p = plan(&scan, |_| None, &limits(250), NOW);
        assert_eq!((&p.entries, &p.blobs), (&vec![0, 1], &vec![1, 2]));
        assert_eq!(after(&scan, &p), 210);
    }

    #[test]
    fn a_journaled_use_counts_and_recent_use_is_never_taken() {
        let scan = three();
        let used = |sig: &str| (sig == "a").then_some(NOW - 10);
        let p = plan(&scan, used, &limits(0), NOW);
        assert_eq!(p.entries, vec![1, 2], "a was used within the grace period");
        assert_eq!(p.blobs, vec![2, 3], "s and x are a's");
        assert_eq!(after(&scan, &p), 210);
    }

    #[test]
    fn age_takes_entries_whatever_the_size_and_orphans_wait_out_the_grace() {
        let mut scan = three();
        scan.blobs.push(blob("orphan", 5, NOW - 500));
        scan.blobs.push(blob("fresh", 5, NOW - 5));
        let mut l = limits(u64::MAX);
        l.max_age_secs = Some(2500);
        let p = plan(&scan, |_| None, &l, NOW);
        assert_eq!(p.entries, vec![0]);
        assert_eq!(
            p.blobs,
            vec![1, 4],
            "x, and the old orphan; not the fresh one"
        );
    }

    #[test]
    fn entries_that_do_not_parse_go_first() {
        let mut scan = three();
        scan.entries.push(EntryFile {
            blobs: None,
            ..entry("broken", NOW - 500, &[])
        });
        let p = plan(&scan, |_| None, &limits(435), NOW);
        assert_eq!(p.entries, vec![3]);
    }
}
