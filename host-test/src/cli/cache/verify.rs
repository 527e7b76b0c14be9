//! `runqueue cache verify`: every blob of a cache rehashed (on all CPUs),
//! and what does not match its name dropped and reported; then every
//! entry that names a blob no longer there dropped and reported too (the
//! next build that needs it runs its task and stores it again).
//!
//! Knows the cache's files and entries; knows nothing of graphs.

use std::collections::HashSet;
use std::path::Path;

use runqueue::cache::blobs::blob_path;
use runqueue::cache::cutoff::record_rel;
use runqueue::cache::entry::entry_rel;

use super::scan::{entries, file_name, on_all_cpus, shard_files};
use super::{bad_input, check_cache, Failure};

/// What a verification found.
#[derive(Debug, Default, PartialEq, Eq)]
pub(in crate::cli) struct Verified {
    pub(super) blobs: usize,
    pub(super) bytes: u64,
    /// The hashes of the blobs that are sound.
    pub(super) sound: HashSet<String>,
    /// Blobs removed: their path in the cache and why.
    pub(super) dropped: Vec<(String, String)>,
}

/// `runqueue cache verify --cache DIR`: prints what it dropped and a
/// summary line.
pub(in crate::cli) fn verify(cache: &Path) -> Result<i32, Failure> {
    check_cache(cache)?;
    let found = verify_blobs(cache).map_err(bad_input)?;
    let broken = drop_broken_entries(cache, &found.sound).map_err(bad_input)?;
    for (path, why) in found.dropped.iter().chain(&broken) {
        println!("dropped {path}: {why}");
    }
    println!(
        "verified {} blobs ({}): {} dropped; {} entries dropped",
        found.blobs,
        super::mib(found.bytes),
        found.dropped.len(),
        broken.len()
    );
    Ok(runqueue::cli::EXIT_OK)
}

/// Removes the entries that do not parse or name a blob that is not
/// there (looked for when not among the `sound` ones just verified, as a
/// build may have stored it since); their paths and why.
fn drop_broken_entries(
    cache: &Path,
    sound: &HashSet<String>,
) -> Result<Vec<(String, String)>, String> {
    let mut dropped = Vec::new();
    for entry in &entries(cache)? {
        let missing = match &entry.blobs {
            None => Some("it does not parse".to_string()),
            Some(blobs) => (blobs.iter())
                .find(|b| !sound.contains(b.as_str()) && !blob_path(cache, b).exists())
                .map(|b| format!("it names blob {b}, which is not there")),
        };
        if let Some(why) = missing {
            let _ = std::fs::remove_file(cache.join(entry_rel(&entry.sig)));
            let _ = std::fs::remove_file(cache.join(record_rel(&entry.sig)));
            dropped.push((entry_rel(&entry.sig), why));
        }
    }
    Ok(dropped)
}

/// Rehashes every blob under `cache/cas`, removing those whose bytes do
/// not hash to their name.
pub(in crate::cli) fn verify_blobs(cache: &Path) -> Result<Verified, String> {
    let files = shard_files(&cache.join("cas"))?;
    let checked = on_all_cpus(&files, |file| (file.clone(), check_one(file)));
    let mut found = Verified::default();
    for (file, result) in checked {
        found.blobs += 1;
        match result {
            Ok(size) => {
                found.bytes += size;
                found.sound.insert(file_name(&file).to_string());
            }
            Err(why) => found.dropped.push((rel(cache, &file), why)),
        }
    }
    found.dropped.sort();
    Ok(found)
}

/// The blob's size if its bytes hash to its name; else it is removed and
/// the reason returned.
fn check_one(file: &Path) -> Result<u64, String> {
    let name = file_name(file);
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
