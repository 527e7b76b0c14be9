//! `runqueue cache verify`: every blob of a cache rehashed (on all CPUs),
//! and what does not match its name dropped and reported. An entry whose
//! blob is gone is then a miss and is repaired by the next build that
//! runs its task (as for any missing blob).
//!
//! Knows the cache's blob files; knows nothing of entries or graphs.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::failure::{bad_input, Failure};

/// What a verification found.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Verified {
    pub(super) blobs: usize,
    pub(super) bytes: u64,
    /// Blobs removed: their path in the cache and why.
    pub(super) dropped: Vec<(String, String)>,
}

/// `runqueue cache verify --cache DIR`: prints what it dropped and a
/// summary line.
pub(super) fn verify(cache: &Path) -> Result<i32, Failure> {
    if !cache.join("cas").is_dir() {
        return Err(bad_input(format!(
            "{}: not a runqueue cache (no cas/)",
            cache.display()
        )));
    }
    let found = verify_blobs(cache).map_err(bad_input)?;
    for (path, why) in &found.dropped {
        println!("dropped {path}: {why}");
    }
    println!(
        "verified {} blobs ({:.1} MiB): {} dropped",
        found.blobs,
        found.bytes as f64 / (1 << 20) as f64,
        found.dropped.len()
    );
    Ok(runqueue::cli::EXIT_OK)
}

/// Rehashes every blob under `cache/cas`, removing those whose bytes do
/// not hash to their name.
pub(super) fn verify_blobs(cache: &Path) -> Result<Verified, String> {
    let files = blob_files(&cache.join("cas"))?;
    let next = AtomicUsize::new(0);
    let found = Mutex::new(Verified::default());
    std::thread::scope(|s| {
        for _ in 0..crate::files::cpus().max(1) {
            s.spawn(|| {
                while let Some(file) = files.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let checked = check_one(file);
                    let mut found = found.lock().unwrap_or_else(|e| e.into_inner());
                    found.blobs += 1;
                    match checked {
                        Ok(size) => found.bytes += size,
                        Err(why) => found.dropped.push((rel(cache, file), why)),
                    }
                }
            });
        }
    });
    let mut found = found.into_inner().unwrap_or_else(|e| e.into_inner());
    found.dropped.sort();
    Ok(found)
}

/// Every file two levels below `cas/` (`cas/ab/abcd…`).
fn blob_files(cas: &Path) -> Result<Vec<PathBuf>, String> {
    let read = |d: &Path| std::fs::read_dir(d).map_err(|e| format!("{}: {e}", d.display()));
    let mut files = Vec::new();
    for shard in read(cas)?.flatten() {
        if shard.file_type().is_ok_and(|t| t.is_dir()) {
            let inner = read(&shard.path())?.flatten();
            files.extend(
                inner
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                    .map(|e| e.path()),
            );
        }
    }
    files.sort();
    Ok(files)
}

/// The blob's size if its bytes hash to its name; else it is removed and
/// the reason returned.
fn check_one(file: &Path) -> Result<u64, String> {
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let why = match runqueue::cache::blobs::hash(file) {
        Ok(blob) if blob.hash == name => return Ok(blob.size),
        Ok(blob) => format!("its bytes hash to {}", blob.hash),
        Err(e) => e,
    };
    let _ = std::fs::remove_file(file);
    Err(why)
}

fn rel(cache: &Path, file: &Path) -> String {
    file.strip_prefix(cache)
        .unwrap_or(file)
        .display()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_that_does_not_match_its_name_is_dropped_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("f");
        std::fs::write(&src, "hello").unwrap();
        let good = runqueue::cache::blobs::store(dir.path(), &src).unwrap();
        std::fs::write(&src, "other").unwrap();
        let bad = runqueue::cache::blobs::store(dir.path(), &src).unwrap();
        let bad_path = runqueue::cache::blobs::blob_path(dir.path(), &bad.hash);
        std::fs::write(&bad_path, "tampered").unwrap();
        let found = verify_blobs(dir.path()).unwrap();
        assert_eq!((found.blobs, found.bytes), (2, good.size));
        assert_eq!(found.dropped.len(), 1);
        assert!(
            found.dropped[0].0.ends_with(&bad.hash),
            "{:?}",
            found.dropped
        );
        assert!(!bad_path.exists());
        assert!(runqueue::cache::blobs::blob_path(dir.path(), &good.hash).exists());
        assert_eq!(
            verify_blobs(dir.path()).unwrap().dropped,
            vec![],
            "and then it is sound"
        );
    }
}
