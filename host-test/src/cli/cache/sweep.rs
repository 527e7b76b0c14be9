//! Removing what a [`Plan`] takes, next to builds that may be using the
//! cache at that moment, and so that a collection killed at any point
//! loses nothing still named by an entry.
//!
//! - Entries go before blobs: an entry is first renamed to a tombstone in
//!   `tmp/gc/`, and after [`SETTLE`] the journal is read again; an entry a
//!   build has used meanwhile is put back, and its blobs stay.
//! - A blob goes only when nothing has touched it for the grace period (a
//!   build storing an output that is already there touches its blob, a
//!   new one writes it anew): it is renamed into `tmp/gc/`, looked at again,
//!   and put back if it was touched in between.
//! - What a killed collection left in `tmp/gc/` is put right by the next one
//!   ([`recover`]): blobs touched within the grace period go back, the rest
//!   goes.
//!
//! Knows the cache's layout and the journal; knows nothing of builds.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use runqueue::cache::blobs::blob_path;
use runqueue::cache::cutoff::{now_secs, record_rel};
use runqueue::cache::digest::is_sha256_hex;
use runqueue::cache::journal::Journal;

use super::plan::Plan;
use super::scan::{on_all_cpus, stat, FileAt, Scan};

/// How long tombstoned entries wait before the journal is read again: a
/// build journals what it found as soon as it has looked (before it
/// restores anything), so a use racing the collection shows by then.
pub(super) const SETTLE: Duration = Duration::from_secs(2);

/// Where entries, blobs and records wait, sharded like `cas/` (one
/// directory of a hundred thousand names makes every rename and unlink in
/// it slower).
const ASIDE: &str = "tmp/gc";

/// What a sweep removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Swept {
    pub(super) entries: usize,
    pub(super) blobs: usize,
    pub(super) bytes: u64,
    /// Taken entries a build used meanwhile, put back.
    pub(super) put_back: usize,
}

/// Removes what `plan` takes from `scan` of `cache`, on every CPU;
/// `before` is the journal the plan was made from.
pub(super) fn sweep(cache: &Path, scan: &Scan, plan: &Plan, before: &Journal, grace: u64) -> Swept {
    let mut swept = Swept::default();
    let buried = bury(cache, scan, plan);
    // The blobs of entries that stay (not moved, put back) stay too.
    let mut keep: HashSet<&str> = (plan.entries.iter())
        .filter(|i| !buried.contains(i))
        .flat_map(|&i| blobs_of(scan, i))
        .collect();
    if !buried.is_empty() {
        std::thread::sleep(SETTLE);
        let after = Journal::read_only(&cache.join("journal"));
        for (i, used, stays) in settle_all(cache, scan, &buried, (before, &after), grace) {
            if used {
                keep.extend(blobs_of(scan, i));
            }
            if stays {
                swept.put_back += 1;
            } else {
                swept.entries += 1;
                swept.bytes += scan.entries[i].bytes;
            }
        }
    }
    let blobs = (plan.blobs.iter().map(|&i| &scan.blobs[i])).filter(|b| !keep.contains(b.name()));
    let gone = remove_all(cache, blobs.collect(), grace);
    swept.blobs = gone.len();
    swept.bytes += gone.iter().sum::<u64>();
    let records = remove_all(cache, scan.stray_records.iter().collect(), grace);
    swept.bytes += records.iter().sum::<u64>();
    swept
}

/// [`settle`]s each buried entry, on every CPU: (entry, whether a build
/// used it meanwhile, whether it stays).
fn settle_all(
    cache: &Path,
    scan: &Scan,
    buried: &HashSet<usize>,
    (before, after): (&Journal, &Journal),
    grace: u64,
) -> Vec<(usize, bool, bool)> {
    let buried: Vec<usize> = buried.iter().copied().collect();
    on_all_cpus(&buried, |&i: &usize| {
        let sig = &scan.entries[i].sig;
        let used = after.last_use(sig) > before.last_use(sig);
        (i, used, settle(cache, sig, used, grace))
    })
}

/// [`remove_untouched`] of each file, on every CPU; the sizes of those
/// that went.
fn remove_all(cache: &Path, files: Vec<&FileAt>, grace: u64) -> Vec<u64> {
    let gone = on_all_cpus(&files, |f| {
        remove_untouched(cache, &f.path, grace).then_some(f.size)
    });
    gone.into_iter().flatten().collect()
}

fn blobs_of(scan: &Scan, entry: usize) -> impl Iterator<Item = &str> {
    scan.entries[entry]
        .blobs
        .iter()
        .flatten()
        .map(|b| b.as_str())
}

/// Ends a tombstoned entry: put back if a build `used` it meanwhile, or
/// left with its record if a build stored it anew; else it goes with its
/// record (unless that was just written). Whether the entry stays.
fn settle(cache: &Path, sig: &str, used: bool, grace: u64) -> bool {
    let (tomb, path) = (entry_tomb(cache, sig), entry_path(cache, sig));
    if used && !path.exists() && fs::rename(&tomb, &path).is_ok() {
        return true;
    }
    let _ = fs::remove_file(&tomb);
    if path.exists() {
        return true;
    }
    remove_untouched(cache, &cache.join(record_rel(sig)), grace);
    false
}

/// Renames the planned entries to tombstones; those it moved.
fn bury(cache: &Path, scan: &Scan, plan: &Plan) -> HashSet<usize> {
    make_aside_dirs(cache);
    let moved = on_all_cpus(&plan.entries, |&i| {
        let sig = &scan.entries[i].sig;
        fs::rename(entry_path(cache, sig), entry_tomb(cache, sig))
            .ok()
            .map(|()| i)
    });
    moved.into_iter().flatten().collect()
}

/// Removes the file at `path` (a blob or a record) unless something
/// touched it within `grace` seconds, looking again once it is out of
/// the way; whether it went.
fn remove_untouched(cache: &Path, path: &Path, grace: u64) -> bool {
    let settled = |f: &FileAt| now_secs().saturating_sub(f.modified) >= grace;
    if !stat(path).is_some_and(|f| settled(&f)) {
        return false;
    }
    // A blob aside keeps its name (so `recover` can put it back); a
    // record gets one no entry's tombstone has.
    let name = super::scan::file_name(path);
    let aside = match name.ends_with(".json") {
        true => tomb(cache, &format!("eq-{name}")),
        false => tomb(cache, name),
    };
    if fs::rename(path, &aside).is_err() {
        return false;
    }
    if stat(&aside).is_some_and(|f| settled(&f)) {
        return fs::remove_file(&aside).is_ok();
    }
    put_back(&aside, path);
    false
}

fn put_back(aside: &Path, path: &Path) {
    if path.exists() || fs::rename(aside, path).is_err() {
        let _ = fs::remove_file(aside);
    }
}

/// Puts right what a killed collection left in `tmp/gc/`: blobs touched
/// within `grace` go back into `cas/`, other blobs and tombstones go.
pub(super) fn recover(cache: &Path, grace: u64) {
    let Ok(files) = super::scan::shard_files(&cache.join(ASIDE)) else {
        return;
    };
    for file in files.iter().filter_map(|f| stat(f)) {
        let name = file.name();
        let fresh = now_secs().saturating_sub(file.modified) < grace;
        match is_sha256_hex(name) && fresh {
            true => put_back(&file.path, &blob_path(cache, name)),
            false => {
                let _ = fs::remove_file(&file.path);
            }
        }
    }
}

/// Removes the temporary files nothing has written for `grace` seconds
/// (left by builds that were killed); their bytes.
pub(super) fn remove_stale_tmp(scan: &Scan, grace: u64) -> u64 {
    remove_settled(scan.tmp.iter(), grace)
}

fn remove_settled<'a>(files: impl Iterator<Item = &'a FileAt>, grace: u64) -> u64 {
    let settled = files.filter(|f| now_secs().saturating_sub(f.modified) >= grace);
    let removed = settled.filter(|f| fs::remove_file(&f.path).is_ok());
    removed.map(|f| f.size).sum()
}

fn entry_path(cache: &Path, sig: &str) -> PathBuf {
    cache.join(runqueue::cache::entry::entry_rel(sig))
}

/// Where an entry waits to go (not a blob's name, so [`recover`] drops it).
fn entry_tomb(cache: &Path, sig: &str) -> PathBuf {
    tomb(cache, &format!("{sig}.json"))
}

/// `tmp/gc/<xx>/name`, `xx` the start of the hash in `name`.
fn tomb(cache: &Path, name: &str) -> PathBuf {
    let hash = name.strip_prefix("eq-").unwrap_or(name);
    cache.join(ASIDE).join(&hash[..2]).join(name)
}

/// The shard directories [`tomb`] names.
fn make_aside_dirs(cache: &Path) {
    for shard in 0..=255u8 {
        let _ = fs::create_dir_all(cache.join(ASIDE).join(format!("{shard:02x}")));
    }
}

#[cfg(test)]
mod tests {
    use super::super::plan::{plan, Limits};
    use super::super::scan::scan;
    use super::*;
    use runqueue::cache::blobs::store;

    /// A cache with one entry naming one blob, both a day old.
    fn old_entry(cache: &Path) -> (String, PathBuf) {
        let src = cache.join("src");
        fs::write(&src, "the output").unwrap();
        let blob = store(cache, &src).unwrap();
        let sig = "ab".repeat(32);
        let outputs = format!(
            r#"[{{"kind":"file","path":"o","blob":"{}","size":{},"mode":420}}]"#,
            blob.hash, blob.size
        );
        let entry = format!(
            r#"{{"format":1,"task":"t","signature":"{sig}","outputs":{outputs},"exit_code":0,"duration_ms":1,"stored_at":0}}"#
        );
        runqueue::cache::blobs::put(
            cache,
            &runqueue::cache::entry::entry_rel(&sig),
            entry.as_bytes(),
        )
        .unwrap();
        let day_ago = std::time::SystemTime::now() - Duration::from_secs(86400);
        let blob_at = blob_path(cache, &blob.hash);
        for path in [entry_path(cache, &sig), blob_at.clone()] {
            let file = fs::File::options().append(true).open(path).unwrap();
            file.set_modified(day_ago).unwrap();
        }
        (sig, blob_at)
    }

    fn collect_all(cache: &Path, used_meanwhile: Option<String>, grace: u64) -> Swept {
        let before = Journal::load(&cache.join("journal"));
        let found = scan(cache).unwrap();
        let limits = Limits {
            max_bytes: 0,
            max_age_secs: None,
            grace_secs: grace,
        };
        let p = plan(&found, |s| before.last_use(s), &limits, now_secs());
        assert_eq!((p.entries.len(), p.blobs.len()), (1, 1));
        let user = used_meanwhile.map(|sig| {
            let journal = cache.join("journal");
            std::thread::spawn(move || {
                std::thread::sleep(SETTLE / 4);
                Journal::load(&journal)
                    .append_uses(vec![sig], now_secs())
                    .unwrap();
            })
        });
        let swept = sweep(cache, &found, &p, &before, grace);
        if let Some(u) = user {
            u.join().unwrap();
        }
        swept
    }

    #[test]
    fn an_entry_used_while_set_aside_comes_back_with_its_blob() {
        let dir = tempfile::tempdir().unwrap();
        let (sig, blob) = old_entry(dir.path());
        let swept = collect_all(dir.path(), Some(sig.clone()), 60);
        assert_eq!((swept.entries, swept.blobs, swept.put_back), (0, 0, 1));
        assert!(entry_path(dir.path(), &sig).exists() && blob.exists());
        let swept = collect_all(dir.path(), None, 0);
        assert_eq!(
            (swept.entries, swept.blobs),
            (1, 1),
            "with no grace it goes"
        );
        assert!(!entry_path(dir.path(), &sig).exists() && !blob.exists());
    }

    #[test]
    fn recovery_puts_fresh_blobs_back_and_drops_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path();
        let (sig, blob) = old_entry(cache);
        make_aside_dirs(cache);
        let hash = blob.file_name().unwrap().to_str().unwrap().to_string();
        fs::rename(&blob, tomb(cache, &hash)).unwrap();
        fs::rename(entry_path(cache, &sig), entry_tomb(cache, &sig)).unwrap();
        recover(cache, 60);
        assert!(!blob.exists(), "a day old: it was on its way out");
        assert_eq!(
            super::super::scan::shard_files(&cache.join(ASIDE)).unwrap(),
            Vec::<PathBuf>::new()
        );
        let (_, blob) = old_entry(cache);
        fs::rename(&blob, tomb(cache, &hash)).unwrap();
        let file = fs::File::options()
            .append(true)
            .open(tomb(cache, &hash))
            .unwrap();
        file.set_modified(std::time::SystemTime::now()).unwrap();
        recover(cache, 60);
        assert!(blob.exists(), "touched within the grace period: it is back");
    }
}
