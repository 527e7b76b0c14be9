//! The cache's blobs as files: storing a file under its sha256, and
//! restoring a blob to a path, verified. Plain `std::fs` and sha256, no
//! other part of runqueue: the host runs this natively on its own threads
//! (the `files` interface), and the WASI-only provider includes it as it is.
//!
//! Every write goes to a temporary name and is renamed into place, so a
//! crash leaves the old file or the complete new one; a blob whose bytes
//! do not hash to its name is deleted and refused.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::cache::digest::{
    copy_hashing, hash_file, io_text, is_sha256_hex, open_regular, sha256_hex, unique_suffix,
};
use crate::cache::wfile::{self, How};

/// A file's content: its sha256 (hex) and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    pub hash: String,
    pub size: u64,
}

/// Where blob `hash` lives in the cache at `cache`.
pub fn blob_path(cache: &Path, hash: &str) -> PathBuf {
    cache.join(blob_rel(hash))
}

/// Where blob `hash` lives, relative to the cache.
pub fn blob_rel(hash: &str) -> String {
    format!("cas/{}/{hash}", &hash[..2])
}

fn io_err(what: &str, path: &Path, e: io::Error) -> String {
    format!("{what} {}: {}", path.display(), io_text(&e))
}

/// The sha256 and size of the file at `path`.
pub fn hash(path: &Path) -> Result<Blob, String> {
    let (hash, size) = hash_file(path).map_err(|e| io_err("cannot read", path, e))?;
    Ok(Blob { hash, size })
}

/// Files up to this size are read whole, and not written again when
/// their blob is already there (stamps, small headers: often the same
/// bytes in many tasks).
const SMALL: u64 = 64 * 1024;

/// Adds the file at `src` to the blobs of `cache`: a small file is read
/// and hashed, and written (temporary file, rename) only if its blob is
/// missing; a larger one is copied to a temporary file while hashed, in
/// one pass, then renamed to its hash (replacing an identical blob is
/// harmless).
pub fn store(cache: &Path, src: &Path) -> Result<Blob, String> {
    use std::io::Read;
    let read = |e| io_err("cannot read", src, e);
    let file = open_regular(src).map_err(read)?;
    if file.metadata().map_err(read)?.len() > SMALL {
        return store_large(cache, src);
    }
    let mut bytes = Vec::new();
    file.take(SMALL + 1).read_to_end(&mut bytes).map_err(read)?;
    if bytes.len() as u64 > SMALL {
        return store_large(cache, src);
    }
    let blob = Blob {
        hash: sha256_hex(&bytes),
        size: bytes.len() as u64,
    };
    if !touch(&blob_path(cache, &blob.hash), blob.size) {
        put(cache, &blob_rel(&blob.hash), &bytes)?;
    }
    Ok(blob)
}

/// Whether blob `path` is there with `size` bytes; if so its time is made
/// now, so that a collection running meanwhile (which takes only blobs
/// untouched for its grace period, and looks again once it has moved one
/// aside) keeps it for the entry about to name it. The path is looked at
/// again after the touch: a blob moved aside just before it is gone or
/// coming back, and is written anew.
fn touch(path: &Path, size: u64) -> bool {
    let Ok(file) = fs::File::open(path) else {
        return false;
    };
    let there = |m: io::Result<fs::Metadata>| m.is_ok_and(|m| m.len() == size);
    there(file.metadata())
        && file.set_modified(std::time::SystemTime::now()).is_ok()
        && there(fs::metadata(path))
}

fn store_large(cache: &Path, src: &Path) -> Result<Blob, String> {
    let tmp = cache.join("tmp").join(unique_suffix());
    let stored = with_parent(&tmp, |t| copy_hashing(src, t))
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

/// Writes `bytes` at `rel` under `cache` through a temporary file and a
/// rename.
pub fn put(cache: &Path, rel: &str, bytes: &[u8]) -> Result<(), String> {
    let tmp = cache.join("tmp").join(unique_suffix());
    let written = with_parent(&tmp, |t| wfile::open(t, How::New)?.write_all(bytes))
        .map_err(|e| io_err("cannot write", &tmp, e))
        .and_then(|_| rename_into(&tmp, &cache.join(rel)));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

fn rename_into(tmp: &Path, dest: &Path) -> Result<(), String> {
    with_parent(dest, |d| fs::rename(tmp, d)).map_err(|e| io_err("cannot rename into", dest, e))
}

/// `op` on `path`, and once more after creating `path`'s parent if it was
/// missing: the cache's directories exist nearly always, so they are not
/// created (nor looked at) first.
fn with_parent<T>(path: &Path, op: impl Fn(&Path) -> io::Result<T>) -> io::Result<T> {
    match op(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(path.parent().expect("cache paths have parents"))?;
            op(path)
        }
        done => done,
    }
}

/// A blob arriving in pieces (from a remote): written to a temporary
/// file and hashed as it comes, never whole in memory, and stored under its
/// name only if its bytes hash to it. [`BlobSink::restart`] begins (again,
/// for a retried request); dropped unfinished, it leaves nothing.
pub struct BlobSink {
    cache: PathBuf,
    hash: String,
    tmp: PathBuf,
    file: Option<wfile::File>,
    hasher: sha2::Sha256,
    size: u64,
}

impl BlobSink {
    pub fn new(cache: &Path, hash: &str) -> Result<BlobSink, String> {
        if !is_sha256_hex(hash) {
            return Err(format!("blob name \"{hash}\" is not a sha256"));
        }
        Ok(BlobSink {
            cache: cache.to_path_buf(),
            hash: hash.to_string(),
            tmp: cache.join("tmp").join(unique_suffix()),
            file: None,
            hasher: Default::default(),
            size: 0,
        })
    }

    /// Starts over with an empty temporary file.
    pub fn restart(&mut self) -> Result<(), String> {
        let file = with_parent(&self.tmp, |t| wfile::open(t, How::Truncate))
            .map_err(|e| io_err("cannot write", &self.tmp, e))?;
        self.file = Some(file);
        self.hasher = Default::default();
        self.size = 0;
        Ok(())
    }

    pub fn write(&mut self, chunk: &[u8]) -> Result<(), String> {
        use sha2::Digest;
        use std::io::Write;
        let file = self
            .file
            .as_mut()
            .ok_or("a blob written before it was started")?;
        file.write_all(chunk)
            .map_err(|e| io_err("cannot write", &self.tmp, e))?;
        self.hasher.update(chunk);
        self.size += chunk.len() as u64;
        Ok(())
    }

    /// Stores what arrived as the blob, if it hashes to its name.
    pub fn finish(mut self) -> Result<u64, String> {
        use sha2::Digest;
        self.file = None;
        let actual = crate::cache::digest::hex(&std::mem::take(&mut self.hasher).finalize());
        if actual != self.hash {
            return Err(format!(
                "blob {} has the wrong bytes (their sha256 is {actual})",
                self.hash
            ));
        }
        rename_into(&self.tmp, &blob_path(&self.cache, &self.hash))?;
        Ok(self.size)
    }
}

impl Drop for BlobSink {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.tmp);
    }
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

/// Checks every blob of `files` (`(path, blob)`, see [`check`]), before
/// anything is restored.
pub fn check_all<'a>(
    cache: &Path,
    files: impl IntoIterator<Item = (&'a str, &'a Blob)>,
) -> Result<(), String> {
    files
        .into_iter()
        .try_for_each(|(path, blob)| check(cache, path, blob))
}

/// Restores each of `files` (`(path, blob, mode)`) at `dest_of(path)`, one
/// after another, with `set_mode(file, mode)`: every blob is checked first.
pub fn restore_all(
    cache: &Path,
    files: &[(&str, &Blob, u32)],
    dest_of: &dyn Fn(&str) -> PathBuf,
    set_mode: &dyn Fn(&Path, u32) -> Result<(), String>,
) -> Result<(), String> {
    check_all(cache, files.iter().map(|&(path, blob, _)| (path, blob)))?;
    files.iter().try_for_each(|&(path, blob, mode)| {
        restore(cache, &dest_of(path), path, blob, &|p: &Path| {
            set_mode(p, mode)
        })
    })
}

/// Renames `tmp` over `dest`, removing a directory in the way first.
fn replace(tmp: &Path, dest: &Path) -> Result<(), String> {
    if fs::symlink_metadata(dest).is_ok_and(|m| m.is_dir()) {
        fs::remove_dir_all(dest).map_err(|e| io_err("cannot replace", dest, e))?;
    }
    fs::rename(tmp, dest).map_err(|e| io_err("cannot rename into", dest, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn a_small_blob_already_there_is_not_written_again() {
        let dir = tempfile::tempdir().unwrap();
        let (cache, a, b) = (
            dir.path().join("c"),
            dir.path().join("a"),
            dir.path().join("b"),
        );
        fs::write(&a, "stamp").unwrap();
        fs::write(&b, "stamp").unwrap();
        let first = store(&cache, &a).unwrap();
        let path = blob_path(&cache, &first.hash);
        let inode = fs::metadata(&path).unwrap().ino();
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(86_400);
        fs::File::open(&path).unwrap().set_modified(old).unwrap();
        assert_eq!(store(&cache, &b).unwrap(), first);
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.ino(), inode, "not rewritten");
        assert!(meta.modified().unwrap() > old, "but touched, for gc");
        assert_eq!(fs::read_to_string(path).unwrap(), "stamp");
    }

    #[test]
    fn a_large_file_is_copied_while_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let (cache, src) = (dir.path().join("c"), dir.path().join("big"));
        let bytes: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        fs::write(&src, &bytes).unwrap();
        let blob = store(&cache, &src).unwrap();
        assert_eq!(
            blob,
            Blob {
                hash: sha256_hex(&bytes),
                size: 200_000
            }
        );
        assert_eq!(fs::read(blob_path(&cache, &blob.hash)).unwrap(), bytes);
        let leftovers = fs::read_dir(cache.join("tmp")).unwrap().count();
        assert_eq!(leftovers, 0, "no temporary files left");
    }
}
