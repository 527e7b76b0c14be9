//! The cache's blobs as files: storing a file under its sha256, and
//! restoring a blob to a path, verified. Plain `std::fs` and sha256, no
//! other part of runqueue: the host runs this natively on its own threads
//! (the `files` interface), and the WASI-only provider includes it as it is.
//!
//! Every write goes to a temporary name and is renamed into place, so a
//! crash leaves the old file or the complete new one; a blob whose bytes
//! do not hash to its name is deleted and refused.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::digest::{copy_hashing, hash_file, io_text, is_sha256_hex, unique_suffix};

/// A file's content: its sha256 (hex) and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    pub hash: String,
    pub size: u64,
}

/// Where blob `hash` lives in the cache at `cache`.
pub fn blob_path(cache: &Path, hash: &str) -> PathBuf {
    cache.join("cas").join(&hash[..2]).join(hash)
}

fn io_err(what: &str, path: &Path, e: io::Error) -> String {
    format!("{what} {}: {}", path.display(), io_text(&e))
}

/// The sha256 and size of the file at `path`.
pub fn hash(path: &Path) -> Result<Blob, String> {
    let (hash, size) = hash_file(path).map_err(|e| io_err("cannot read", path, e))?;
    Ok(Blob { hash, size })
}

/// Adds the file at `src` to the blobs of `cache` in one pass: copied to a
/// temporary file while hashed, then renamed to its hash (replacing an
/// identical blob is harmless).
pub fn store(cache: &Path, src: &Path) -> Result<Blob, String> {
    let tmp_dir = cache.join("tmp");
    fs::create_dir_all(&tmp_dir).map_err(|e| io_err("cannot create", &tmp_dir, e))?;
    let tmp = tmp_dir.join(unique_suffix());
    let stored = copy_hashing(src, &tmp)
        .map_err(|e| io_err("cannot copy", src, e))
        .and_then(|(hash, size)| {
            rename_into(&tmp, &blob_path(cache, &hash))?;
            Ok(Blob { hash, size })
        });
    if stored.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    stored
}

fn rename_into(tmp: &Path, dest: &Path) -> Result<(), String> {
    let parent = dest.parent().expect("blob paths have parents");
    fs::create_dir_all(parent).map_err(|e| io_err("cannot create", parent, e))?;
    fs::rename(tmp, dest).map_err(|e| io_err("cannot rename into", dest, e))
}

/// Checks that blob `blob` for `path` exists with its size; a blob of the
/// wrong size is deleted.
pub fn check(cache: &Path, path: &str, blob: &Blob) -> Result<(), String> {
    if !is_sha256_hex(&blob.hash) {
        return Err(format!("blob name \"{}\" is not a sha256", blob.hash));
    }
    let b = blob_path(cache, &blob.hash);
    match fs::metadata(&b) {
        Ok(m) if m.len() == blob.size => Ok(()),
        Ok(m) => {
            let _ = fs::remove_file(&b);
            Err(format!(
                "blob {} for \"{path}\" has {} bytes, expected {}",
                blob.hash,
                m.len(),
                blob.size
            ))
        }
        Err(_) => Err(format!("blob {} for \"{path}\" is missing", blob.hash)),
    }
}

/// Puts blob `blob` at `dest` (`path` names it in messages) with `mode`
/// given by `set_mode`: a file already there with these bytes is left
/// alone; otherwise the blob is copied beside `dest` while verified, and
/// renamed over it. A blob whose bytes do not match is deleted.
pub fn restore(
    cache: &Path,
    dest: &Path,
    path: &str,
    blob: &Blob,
    set_mode: &dyn Fn(&Path) -> Result<(), String>,
) -> Result<(), String> {
    if fs::symlink_metadata(dest).is_ok_and(|m| m.is_file() && m.len() == blob.size)
        && hash_file(dest).is_ok_and(|(h, _)| h == blob.hash)
    {
        return set_mode(dest);
    }
    let parent = dest.parent().expect("workspace paths have parents");
    fs::create_dir_all(parent).map_err(|e| io_err("cannot create", parent, e))?;
    let tmp = dest.with_file_name(format!(".rq-restore-{}", unique_suffix()));
    let src = blob_path(cache, &blob.hash);
    let done = copy_hashing(&src, &tmp)
        .map_err(|e| io_err("cannot copy", &src, e))
        .and_then(|(h, _)| {
            if h == blob.hash {
                return Ok(());
            }
            let _ = fs::remove_file(&src);
            Err(format!(
                "blob {} for \"{path}\" is corrupt (its bytes hash to {h})",
                blob.hash
            ))
        })
        .and_then(|_| set_mode(&tmp))
        .and_then(|_| replace(&tmp, dest));
    if done.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    done
}

/// Renames `tmp` over `dest`, removing a directory in the way first.
fn replace(tmp: &Path, dest: &Path) -> Result<(), String> {
    if fs::symlink_metadata(dest).is_ok_and(|m| m.is_dir()) {
        fs::remove_dir_all(dest).map_err(|e| io_err("cannot replace", dest, e))?;
    }
    fs::rename(tmp, dest).map_err(|e| io_err("cannot rename into", dest, e))
}
