//! `runqueue cache gc|stats|verify`, and the collection `build
//! --cache-max-size` runs after a build: looking after a cache directory
//! that builds may be using at the same moment.
//!
//! A collection holds an exclusive `flock` on the cache directory, so two
//! never sweep at once; builds take no lock (the component has none to
//! take, and a shared cache may be on NFS), and are kept safe by time
//! instead: see [`sweep`].
//!
//! Knows the cache's layout; knows nothing of graphs or scheduling.

mod plan;
mod scan;
mod stats;
mod sweep;
mod verify;

use std::fs::File;
use std::path::Path;

use runqueue::cache::cutoff::now_secs;
use runqueue::cache::journal::Journal;

use super::failure::{bad_input, Failure};
pub(super) use plan::Limits;
pub(super) use stats::stats;
pub(super) use verify::verify;

/// How long what was used or written stays, unless `--grace` says: well
/// above how often a running build tells what it holds
/// ([`runqueue::cache::usage::REFRESH_SECS`]).
pub(super) const DEFAULT_GRACE_SECS: u64 = 3600;

/// What one collection did, for its summary line.
#[derive(Debug)]
pub(super) struct Collected {
    swept: sweep::Swept,
    /// Entries, blobs and bytes the cache holds now.
    left: (usize, usize, u64),
    limits: Limits,
}

impl Collected {
    pub(super) fn summary(&self) -> String {
        let (entries, blobs, bytes) = self.left;
        let s = &self.swept;
        let mut line = format!(
            "removed {} entries and {} blobs ({}); the cache holds {entries} entries, \
             {blobs} blobs, {} (limit {})",
            s.entries,
            s.blobs,
            mib(s.bytes),
            mib(bytes),
            mib(self.limits.max_bytes)
        );
        if s.put_back > 0 {
            line += &format!("; {} entries a build used meanwhile stay", s.put_back);
        }
        if bytes > self.limits.max_bytes {
            let grace = self.limits.grace_secs;
            line += &format!("; still over: the rest was used within the last {grace} s");
        }
        line
    }
}

pub(super) fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

/// Checks that `cache` is a cache directory, creating nothing.
pub(super) fn check_cache(cache: &Path) -> Result<(), Failure> {
    match scan::is_cache(cache) {
        true => Ok(()),
        false => Err(bad_input(format!(
            "{}: not a runqueue cache (no cas/)",
            cache.display()
        ))),
    }
}

/// `runqueue cache gc`: waits for any other collection, then collects.
pub(super) fn gc(cache: &Path, limits: Limits) -> Result<i32, Failure> {
    check_cache(cache)?;
    let collected = collect(cache, limits, true).map_err(bad_input)?;
    if let Some(done) = collected {
        println!("{}", done.summary());
    }
    Ok(runqueue::cli::EXIT_OK)
}

/// Collects `cache` down to `limits`, as of when it holds the lock;
/// `None` when `wait` is false and another collection holds the cache.
pub(super) fn collect(
    cache: &Path,
    limits: Limits,
    wait: bool,
) -> Result<Option<Collected>, String> {
    let Some(_held) = lock(cache, wait)? else {
        return Ok(None);
    };
    sweep::recover(cache, limits.grace_secs);
    let journal = Journal::load(&cache.join("journal"));
    let scan = scan::scan(cache)?;
    let plan = plan::plan(&scan, |sig| journal.last_use(sig), &limits, now_secs());
    let swept = sweep::sweep(cache, &scan, &plan, &journal, limits.grace_secs);
    sweep::remove_stale_tmp(&scan, limits.grace_secs);
    let left = (
        scan.entries.len() - swept.entries,
        scan.blobs.len() - swept.blobs,
        scan.bytes().saturating_sub(swept.bytes),
    );
    Ok(Some(Collected {
        swept,
        left,
        limits,
    }))
}

/// The collection lock: the cache directory's own `flock`, dropped by
/// the kernel however its holder ends.
fn lock(cache: &Path, wait: bool) -> Result<Option<File>, String> {
    let fail = |e: std::io::Error| format!("cannot lock {}: {e}", cache.display());
    let dir = File::open(cache).map_err(fail)?;
    let op = match wait {
        true => libc::LOCK_EX,
        false => libc::LOCK_EX | libc::LOCK_NB,
    };
    let taken = crate::workspace_lock::flock(&dir, op).map_err(fail)?;
    Ok(taken.then_some(dir))
}
