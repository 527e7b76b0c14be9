//! The artifact cache: content-addressed blobs, one action entry per
//! signature, and per-task history. Every write goes to a temporary name and
//! is renamed into place, so a crash at any moment leaves the old state or
//! the complete new one.
//!
//! Layout under the cache directory:
//! - `cas/<h0h1>/<sha256>`: a blob, named by the sha256 of its bytes;
//! - `ac/<s0s1>/<signature>.json`: an [`ActionEntry`], written last;
//! - `history/<sha256 of task id>.json`: a [`History`];
//! - `tmp/`: temporary files, renamed into place when complete.
//!
//! Knows files, blobs and entries; knows nothing of scheduling or of how
//! signatures are made.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::{copy_hashing, hash_file, is_sha256_hex, sha256_hex, unique_suffix};
use crate::graph::normalize;
use crate::seams::FileModes;
use crate::signature::SigParts;

/// Bumped when the layout or entry format changes.
pub const CACHE_FORMAT: u32 = 1;

/// How many recent durations the history keeps per task.
pub const HISTORY_DURATIONS: usize = 10;

/// What a successful task produced, stored under its signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionEntry {
    pub format: u32,
    pub task: String,
    pub signature: String,
    /// Directories before what they contain.
    pub outputs: Vec<OutputEntry>,
    pub exit_code: i32,
    pub duration_ms: u64,
    /// Seconds since the Unix epoch.
    pub stored_at: u64,
}

/// One file, directory or symlink of a task's outputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum OutputEntry {
    File {
        path: String,
        blob: String,
        size: u64,
        mode: u32,
    },
    Dir {
        path: String,
        mode: u32,
    },
    Symlink {
        path: String,
        target: String,
    },
}

impl OutputEntry {
    pub fn path(&self) -> &str {
        match self {
            OutputEntry::File { path, .. }
            | OutputEntry::Dir { path, .. }
            | OutputEntry::Symlink { path, .. } => path,
        }
    }
}

/// The last recorded run of a task id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    pub task: String,
    pub signature: String,
    pub parts: SigParts,
    /// Most recent last.
    pub durations_ms: Vec<u64>,
}

/// Why outputs could not be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// A declared output does not exist after the task succeeded: the task
    /// fails.
    Missing(String),
    /// An output symlink points outside the workspace: the task fails.
    Escapes(String),
    /// The cache could not be written: a warning, the build goes on.
    Io(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Missing(p) => write!(f, "declared output \"{p}\" was not produced"),
            StoreError::Escapes(p) => {
                write!(f, "output symlink \"{p}\" points outside the workspace")
            }
            StoreError::Io(msg) => write!(f, "cannot store outputs in the cache: {msg}"),
        }
    }
}

/// What a lookup found.
#[derive(Debug)]
pub enum Lookup {
    Hit(ActionEntry),
    Miss,
    /// An entry exists but cannot be used; the text says why.
    Corrupt(String),
}

/// A cache directory. Nothing is created until something is stored.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

fn io_err(what: &str, path: &Path, e: io::Error) -> String {
    format!("{what} {}: {}", path.display(), crate::digest::io_text(&e))
}

/// Parses an action entry and checks it is whole and names only paths
/// inside the workspace and well-formed blobs; the error completes "the
/// entry ...".
pub fn validate_entry(sig: &str, bytes: &[u8]) -> Result<ActionEntry, String> {
    let entry: ActionEntry =
        serde_json::from_slice(bytes).map_err(|e| format!("is corrupt: {e}"))?;
    if entry.format != CACHE_FORMAT || entry.signature != sig {
        return Err("is unusable: wrong format or signature".to_string());
    }
    for o in &entry.outputs {
        if normalize(o.path()).is_none_or(|n| n.is_empty() || n != o.path()) {
            return Err(format!(
                "is unusable: path \"{}\" is not a normalized workspace path",
                o.path()
            ));
        }
        if let OutputEntry::File { blob, .. } = o {
            if !is_sha256_hex(blob) {
                return Err(format!("is unusable: blob name \"{blob}\" is not a sha256"));
            }
        }
    }
    Ok(entry)
}

impl Cache {
    pub fn new(dir: impl Into<PathBuf>) -> Cache {
        Cache { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn blob_path(&self, hash: &str) -> PathBuf {
        self.dir.join("cas").join(&hash[..2]).join(hash)
    }

    fn entry_path(&self, sig: &str) -> PathBuf {
        self.dir
            .join("ac")
            .join(&sig[..2])
            .join(format!("{sig}.json"))
    }

    fn history_path(&self, task: &str) -> PathBuf {
        self.dir
            .join("history")
            .join(format!("{}.json", sha256_hex(task.as_bytes())))
    }

    /// A fresh temporary path inside the cache, on the same file system as
    /// every final name.
    fn temp_path(&self) -> Result<PathBuf, String> {
        let tmp = self.dir.join("tmp");
        fs::create_dir_all(&tmp).map_err(|e| io_err("cannot create", &tmp, e))?;
        Ok(tmp.join(unique_suffix()))
    }

    /// Writes `bytes` to `dest` through a temporary file and a rename.
    fn write_atomic(&self, dest: &Path, bytes: &[u8]) -> Result<(), String> {
        let tmp = self.temp_path()?;
        fs::write(&tmp, bytes).map_err(|e| io_err("cannot write", &tmp, e))?;
        self.rename_into(&tmp, dest)
    }

    fn rename_into(&self, tmp: &Path, dest: &Path) -> Result<(), String> {
        let parent = dest.parent().expect("cache paths have parents");
        let result = fs::create_dir_all(parent)
            .map_err(|e| io_err("cannot create", parent, e))
            .and_then(|_| fs::rename(tmp, dest).map_err(|e| io_err("cannot rename into", dest, e)));
        if result.is_err() {
            let _ = fs::remove_file(tmp);
        }
        result
    }

    /// Finds the entry for `sig`, checking that it is whole and names only
    /// paths inside the workspace and well-formed blobs.
    pub fn lookup(&self, sig: &str) -> Lookup {
        assert!(is_sha256_hex(sig), "signatures are sha256 hex");
        let path = self.entry_path(sig);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Lookup::Miss,
            Err(e) => return Lookup::Corrupt(io_err("cannot read", &path, e)),
        };
        match validate_entry(sig, &bytes) {
            Ok(entry) => Lookup::Hit(entry),
            Err(why) => Lookup::Corrupt(format!("action entry {} {why}", path.display())),
        }
    }

    /// The bytes of the entry for `sig`, if there is one.
    pub fn entry_bytes(&self, sig: &str) -> Option<Vec<u8>> {
        fs::read(self.entry_path(sig)).ok()
    }

    /// Stores `bytes` as the entry for `sig` (temp + rename) if they are a
    /// usable entry; the caller has stored its blobs first.
    pub fn put_entry(&self, sig: &str, bytes: &[u8]) -> Result<(), String> {
        validate_entry(sig, bytes).map_err(|why| format!("the entry {why}"))?;
        self.write_atomic(&self.entry_path(sig), bytes)
    }

    pub fn has_blob(&self, hash: &str) -> bool {
        is_sha256_hex(hash) && self.blob_path(hash).is_file()
    }

    /// The content of blob `hash`, read whole.
    pub fn blob_bytes(&self, hash: &str) -> Result<Vec<u8>, String> {
        let path = self.blob_path(hash);
        fs::read(&path).map_err(|e| io_err("cannot read", &path, e))
    }

    /// Stores `bytes` as blob `hash` (temp + rename), refusing bytes whose
    /// sha256 is not `hash`.
    pub fn put_blob(&self, hash: &str, bytes: &[u8]) -> Result<(), String> {
        let actual = sha256_hex(bytes);
        if !is_sha256_hex(hash) || actual != hash {
            return Err(format!(
                "blob {hash} has the wrong bytes (their sha256 is {actual})"
            ));
        }
        self.write_atomic(&self.blob_path(hash), bytes)
    }

    /// Removes the entry for `sig` (it was found corrupt); best effort.
    pub fn remove_entry(&self, sig: &str) {
        let _ = fs::remove_file(self.entry_path(sig));
    }

    /// Stores the declared `outputs` of a task that succeeded: blobs first,
    /// the action entry last. [`collect_outputs`] then [`Cache::commit`].
    pub fn store(
        &self,
        ws: &Path,
        task: &str,
        sig: &str,
        outputs: &[String],
        duration_ms: u64,
        modes: &dyn FileModes,
    ) -> Result<ActionEntry, StoreError> {
        let entries = collect_outputs(ws, outputs, modes)?;
        self.commit(ws, task, sig, entries, duration_ms)
            .map_err(StoreError::Io)
    }

    /// Copies the files of `entries` (from [`collect_outputs`]) into the
    /// blobs, then writes the action entry.
    pub fn commit(
        &self,
        ws: &Path,
        task: &str,
        sig: &str,
        mut entries: Vec<OutputEntry>,
        duration_ms: u64,
    ) -> Result<ActionEntry, String> {
        for e in &mut entries {
            if let OutputEntry::File {
                path, blob, size, ..
            } = e
            {
                let (hash, n) = self.store_blob(&ws.join(&*path))?;
                *blob = hash;
                *size = n;
            }
        }
        let entry = ActionEntry {
            format: CACHE_FORMAT,
            task: task.to_string(),
            signature: sig.to_string(),
            outputs: entries,
            exit_code: 0,
            duration_ms,
            stored_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        };
        let json = serde_json::to_vec_pretty(&entry).expect("entries serialize");
        self.write_atomic(&self.entry_path(sig), &json)?;
        Ok(entry)
    }

    /// Adds the file at `src` to the blobs, in one pass: copied to a
    /// temporary file while hashed, then renamed to its hash (replacing an
    /// identical blob is harmless). Returns its hash and size.
    fn store_blob(&self, src: &Path) -> Result<(String, u64), String> {
        let tmp = self.temp_path()?;
        match copy_hashing(src, &tmp) {
            Ok((hash, size)) => {
                self.rename_into(&tmp, &self.blob_path(&hash))?;
                Ok((hash, size))
            }
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(io_err("cannot copy", src, e))
            }
        }
    }

    /// Puts the outputs of `entry` into the workspace. Every blob is checked
    /// to exist before anything is touched, and verified while it is copied;
    /// each file appears complete or not at all. A corrupt blob is deleted so
    /// that storing again repairs it.
    pub fn restore(
        &self,
        ws: &Path,
        entry: &ActionEntry,
        modes: &dyn FileModes,
    ) -> Result<(), String> {
        for o in &entry.outputs {
            if let OutputEntry::File {
                path, blob, size, ..
            } = o
            {
                let b = self.blob_path(blob);
                match fs::metadata(&b) {
                    Ok(m) if m.len() == *size => {}
                    Ok(m) => {
                        let _ = fs::remove_file(&b);
                        return Err(format!(
                            "blob {blob} for \"{path}\" has {} bytes, expected {size}",
                            m.len()
                        ));
                    }
                    Err(_) => return Err(format!("blob {blob} for \"{path}\" is missing")),
                }
            }
        }
        for o in &entry.outputs {
            let dest = ws.join(o.path());
            match o {
                OutputEntry::Dir { path, mode } => {
                    if fs::symlink_metadata(&dest).is_ok_and(|m| !m.is_dir()) {
                        fs::remove_file(&dest).map_err(|e| io_err("cannot replace", &dest, e))?;
                    }
                    fs::create_dir_all(&dest).map_err(|e| io_err("cannot create", &dest, e))?;
                    modes.set_mode(path, *mode)?;
                }
                OutputEntry::File {
                    path,
                    blob,
                    size,
                    mode,
                } => {
                    self.restore_file(ws, path, blob, *size, *mode, modes)?;
                }
                OutputEntry::Symlink { target, .. } => {
                    remove_any(&dest)?;
                    make_parent(&dest)?;
                    symlink(target, &dest)
                        .map_err(|e| io_err("cannot create symlink", &dest, e))?;
                }
            }
        }
        Ok(())
    }

    fn restore_file(
        &self,
        ws: &Path,
        path: &str,
        blob: &str,
        size: u64,
        mode: u32,
        modes: &dyn FileModes,
    ) -> Result<(), String> {
        let dest = ws.join(path);
        // Already in place: leave the bytes alone, fix the mode.
        if fs::symlink_metadata(&dest).is_ok_and(|m| m.is_file() && m.len() == size)
            && hash_file(&dest).is_ok_and(|(h, _)| h == blob)
        {
            return modes.set_mode(path, mode);
        }
        make_parent(&dest)?;
        let tmp_name = format!(".rq-restore-{}", unique_suffix());
        let tmp = dest.with_file_name(&tmp_name);
        let tmp_rel = match path.rsplit_once('/') {
            Some((dir, _)) => format!("{dir}/{tmp_name}"),
            None => tmp_name.clone(),
        };
        let src = self.blob_path(blob);
        let done = copy_hashing(&src, &tmp)
            .map_err(|e| io_err("cannot copy", &src, e))
            .and_then(|(h, _)| {
                if h == blob {
                    Ok(())
                } else {
                    let _ = fs::remove_file(&src);
                    Err(format!(
                        "blob {blob} for \"{path}\" is corrupt (its bytes hash to {h})"
                    ))
                }
            })
            .and_then(|_| modes.set_mode(&tmp_rel, mode))
            .and_then(|_| {
                if fs::symlink_metadata(&dest).is_ok_and(|m| m.is_dir()) {
                    fs::remove_dir_all(&dest).map_err(|e| io_err("cannot replace", &dest, e))?;
                }
                fs::rename(&tmp, &dest).map_err(|e| io_err("cannot rename into", &dest, e))
            });
        if done.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        done
    }

    /// The last recorded run of `task`, if any (a corrupt record is none).
    pub fn history(&self, task: &str) -> Option<History> {
        let bytes = fs::read(self.history_path(task)).ok()?;
        serde_json::from_slice::<History>(&bytes)
            .ok()
            .filter(|h| h.task == task)
    }

    /// Records a run of `task` with these parts and, if it ran, its
    /// duration.
    pub fn record_history(
        &self,
        task: &str,
        sig: &str,
        parts: &SigParts,
        duration_ms: Option<u64>,
    ) -> Result<(), String> {
        let mut durations = self
            .history(task)
            .map(|h| h.durations_ms)
            .unwrap_or_default();
        if let Some(d) = duration_ms {
            durations.push(d);
            let excess = durations.len().saturating_sub(HISTORY_DURATIONS);
            durations.drain(..excess);
        }
        let h = History {
            task: task.to_string(),
            signature: sig.to_string(),
            parts: parts.clone(),
            durations_ms: durations,
        };
        let json = serde_json::to_vec_pretty(&h).expect("history serializes");
        self.write_atomic(&self.history_path(task), &json)
    }
}

/// Lists every file, directory and symlink of the declared `outputs`
/// (directories first, sorted), with modes, after checking that each output
/// exists and every symlink stays inside the workspace. Only looks: cheap
/// next to [`Cache::commit`], which copies. File blobs are filled in there.
pub fn collect_outputs(
    ws: &Path,
    outputs: &[String],
    modes: &dyn FileModes,
) -> Result<Vec<OutputEntry>, StoreError> {
    let mut entries = Vec::new();
    for out in outputs {
        collect(ws, out, modes, &mut entries)?;
    }
    Ok(entries)
}

/// Adds `rel` and, for a directory, everything below it (sorted) to
/// `entries`.
fn collect(
    ws: &Path,
    rel: &str,
    modes: &dyn FileModes,
    entries: &mut Vec<OutputEntry>,
) -> Result<(), StoreError> {
    let path = ws.join(rel);
    let meta = match fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(StoreError::Missing(rel.to_string()))
        }
        Err(e) => return Err(StoreError::Io(io_err("cannot read", &path, e))),
    };
    let mode = |rel: &str| modes.mode(rel).map_err(StoreError::Io);
    if meta.is_symlink() {
        // WASI cannot read a link to an absolute path: that escapes too.
        let target = fs::read_link(&path).map(|t| t.to_string_lossy().into_owned());
        let parent = rel.rsplit_once('/').map_or("", |(d, _)| d);
        let target = match target {
            Ok(t) if !t.starts_with('/') && normalize(&format!("{parent}/{t}")).is_some() => t,
            _ => return Err(StoreError::Escapes(rel.to_string())),
        };
        entries.push(OutputEntry::Symlink {
            path: rel.to_string(),
            target,
        });
    } else if meta.is_dir() {
        entries.push(OutputEntry::Dir {
            path: rel.to_string(),
            mode: mode(rel)?,
        });
        let mut names: Vec<String> = fs::read_dir(&path)
            .and_then(|it| {
                it.map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                    .collect()
            })
            .map_err(|e| StoreError::Io(io_err("cannot list", &path, e)))?;
        names.sort();
        for name in names {
            collect(ws, &format!("{rel}/{name}"), modes, entries)?;
        }
    } else {
        entries.push(OutputEntry::File {
            path: rel.to_string(),
            blob: String::new(),
            size: 0,
            mode: mode(rel)?,
        });
    }
    Ok(())
}

fn make_parent(dest: &Path) -> Result<(), String> {
    let parent = dest.parent().expect("workspace paths have parents");
    fs::create_dir_all(parent).map_err(|e| io_err("cannot create", parent, e))
}

fn remove_any(p: &Path) -> Result<(), String> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p).map_err(|e| io_err("cannot replace", p, e)),
        Ok(_) => fs::remove_file(p).map_err(|e| io_err("cannot replace", p, e)),
        Err(_) => Ok(()),
    }
}

#[cfg(unix)]
fn symlink(target: &str, link: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(not(unix))]
#[allow(deprecated)] // the one stable way to make a symlink on WASI
fn symlink(target: &str, link: &Path) -> io::Result<()> {
    fs::soft_link(target, link)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// Modes through the native file system, relative to a root.
    pub(crate) struct NativeModes(pub PathBuf);

    impl FileModes for NativeModes {
        fn mode(&self, rel: &str) -> Result<u32, String> {
            fs::symlink_metadata(self.0.join(rel))
                .map(|m| m.permissions().mode() & 0o7777)
                .map_err(|e| e.to_string())
        }
        fn set_mode(&self, rel: &str, mode: u32) -> Result<(), String> {
            fs::set_permissions(self.0.join(rel), fs::Permissions::from_mode(mode))
                .map_err(|e| e.to_string())
        }
    }

    const SIG: &str = "1111111111111111111111111111111111111111111111111111111111111111";

    fn setup() -> (tempfile::TempDir, tempfile::TempDir, Cache, NativeModes) {
        let ws = tempfile::tempdir().unwrap();
        let cache_dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(cache_dir.path().join("c"));
        let modes = NativeModes(ws.path().to_path_buf());
        let root = ws.path();
        fs::create_dir_all(root.join("out/sub")).unwrap();
        fs::write(root.join("out/sub/tool"), "#!/bin/sh\necho hi\n").unwrap();
        fs::set_permissions(root.join("out/sub/tool"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(root.join("out/data"), "data").unwrap();
        std::os::unix::fs::symlink("sub/tool", root.join("out/link")).unwrap();
        fs::write(root.join("single"), "one file").unwrap();
        (ws, cache_dir, cache, modes)
    }

    #[test]
    fn stores_and_restores_files_dirs_symlinks_and_modes() {
        let (ws, _c, cache, modes) = setup();
        let outs = vec!["out".to_string(), "single".to_string()];
        let entry = cache.store(ws.path(), "t", SIG, &outs, 42, &modes).unwrap();
        let kinds: Vec<_> = entry.outputs.iter().map(|o| o.path().to_string()).collect();
        assert_eq!(
            kinds,
            [
                "out",
                "out/data",
                "out/link",
                "out/sub",
                "out/sub/tool",
                "single"
            ]
        );
        let Lookup::Hit(found) = cache.lookup(SIG) else {
            panic!("stored entry is found")
        };
        assert_eq!(found, entry);
        assert_eq!(found.duration_ms, 42);

        fs::remove_dir_all(ws.path().join("out")).unwrap();
        fs::write(ws.path().join("single"), "changed").unwrap();
        cache.restore(ws.path(), &found, &modes).unwrap();
        let root = ws.path();
        assert_eq!(fs::read_to_string(root.join("out/data")).unwrap(), "data");
        assert_eq!(fs::read_to_string(root.join("single")).unwrap(), "one file");
        assert_eq!(
            fs::read_link(root.join("out/link")).unwrap(),
            Path::new("sub/tool")
        );
        assert_eq!(modes.mode("out/sub/tool").unwrap(), 0o755);
        // No temporary files are left in the workspace.
        let leftovers: Vec<_> = fs::read_dir(root.join("out"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".rq-"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn a_corrupt_blob_is_detected_and_deleted() {
        let (ws, _c, cache, modes) = setup();
        let entry = cache
            .store(ws.path(), "t", SIG, &["single".into()], 1, &modes)
            .unwrap();
        let OutputEntry::File { blob, .. } = &entry.outputs[0] else {
            panic!()
        };
        let blob_path = cache.blob_path(blob);
        fs::write(&blob_path, "one fil!").unwrap(); // same size, wrong bytes
        fs::remove_file(ws.path().join("single")).unwrap();
        let err = cache.restore(ws.path(), &entry, &modes).unwrap_err();
        assert!(err.contains("is corrupt"), "{err}");
        assert!(!ws.path().join("single").exists(), "no partial file");
        assert!(!blob_path.exists(), "the bad blob is gone");
        // Storing again repairs it.
        fs::write(ws.path().join("single"), "one file").unwrap();
        cache
            .store(ws.path(), "t", SIG, &["single".into()], 1, &modes)
            .unwrap();
        assert_eq!(fs::read_to_string(&blob_path).unwrap(), "one file");
    }

    #[test]
    fn missing_blobs_and_truncated_entries_are_misses() {
        let (ws, _c, cache, modes) = setup();
        let entry = cache
            .store(ws.path(), "t", SIG, &["out".into()], 1, &modes)
            .unwrap();
        let OutputEntry::File { blob, .. } = &entry.outputs[1] else {
            panic!()
        };
        fs::remove_file(cache.blob_path(blob)).unwrap();
        fs::remove_file(ws.path().join("out/data")).unwrap();
        let err = cache.restore(ws.path(), &entry, &modes).unwrap_err();
        assert!(err.ends_with("for \"out/data\" is missing"), "{err}");
        let json = fs::read(cache.entry_path(SIG)).unwrap();
        fs::write(cache.entry_path(SIG), &json[..json.len() / 2]).unwrap();
        assert!(matches!(cache.lookup(SIG), Lookup::Corrupt(m) if m.contains("is corrupt")));
        let other = "2222222222222222222222222222222222222222222222222222222222222222";
        assert!(matches!(cache.lookup(other), Lookup::Miss));
    }

    #[test]
    fn refuses_missing_outputs_and_escaping_symlinks() {
        let (ws, _c, cache, modes) = setup();
        assert_eq!(
            cache
                .store(ws.path(), "t", SIG, &["nope".into()], 1, &modes)
                .unwrap_err(),
            StoreError::Missing("nope".into())
        );
        std::os::unix::fs::symlink("../../etc/passwd", ws.path().join("out/bad")).unwrap();
        assert_eq!(
            cache
                .store(ws.path(), "t", SIG, &["out".into()], 1, &modes)
                .unwrap_err(),
            StoreError::Escapes("out/bad".into())
        );
        assert!(
            matches!(cache.lookup(SIG), Lookup::Miss),
            "no entry written"
        );
    }

    #[test]
    fn history_keeps_the_last_durations() {
        let (_ws, _c, cache, _modes) = setup();
        let parts: SigParts = serde_json::from_str(
            r#"{"version":1,"action":"none","env":{},"cwd":"","outputs":[],"inputs":{},"deps":{}}"#,
        )
        .unwrap();
        for d in 0..12 {
            cache
                .record_history("a:do_x", SIG, &parts, Some(d))
                .unwrap();
        }
        let h = cache.history("a:do_x").unwrap();
        assert_eq!(h.durations_ms, (2..12).collect::<Vec<_>>());
        assert_eq!(h.parts, parts);
        assert!(cache.history("other").is_none());
    }
}
