//! The artifact cache: content-addressed blobs, one action entry per
//! signature, and per-task history. Every write goes to a temporary name and
//! is renamed into place, so a crash at any moment leaves the old state or
//! the complete new one.
//!
//! Layout under the cache directory:
//! - `cas/<h0h1>/<sha256>`: a blob, named by the sha256 of its bytes;
//! - `ac/<s0s1>/<signature>.json`: an [`ActionEntry`], written last;
//! - `eq/<s0s1>/<signature>.json`: the [`crate::cache::cutoff::OutputsRecord`]
//!   of the run that stored the entry, written with it;
//! - `journal`: the history of task runs and of entries' uses
//!   ([`crate::cache::journal`]);
//! - `tmp/`: temporary files, renamed into place when complete;
//! - the directory itself is `flock`ed by `runqueue cache gc` while it
//!   collects (builds take no lock).
//!
//! Knows files, blobs and entries; knows nothing of scheduling or of how
//! signatures are made.
//!
//! Around it, the rest of reusing earlier results (BitBake's shared
//! state): entries ([`entry`]), blobs on disk ([`blobs`], [`digest`],
//! [`wfile`]), history ([`journal`]), signing ([`signing`]), signatures
//! ([`signature`]), early cutoff ([`cutoff`]) and which tasks the cache
//! covers ([`reuse`]).

pub mod blobs;
pub mod cutoff;
pub mod digest;
pub mod entry;
pub mod journal;
pub mod reuse;
pub mod signature;
pub mod signing;
pub mod usage;
pub mod wfile;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::cache::blobs::{blob_path, blob_rel, Blob};
use crate::cache::cutoff::{parse_record, record_rel, OutputsRecord};
use crate::cache::digest::{is_sha256_hex, sha256_hex};
pub use crate::cache::journal::History;
use crate::cache::journal::Journal;
pub use crate::cache::journal::Record;
use crate::cache::signing::{Signer, Trust};
use crate::graph::confine::link_escapes;
use crate::seams::{FileModes, Files, RestoreFile};
use entry::entry_rel;
pub use entry::{
    entry_file, file_paths, validate_entry, with_blobs, ActionEntry, OutputEntry, CACHE_FORMAT,
};

/// Why outputs could not be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// A declared output does not exist after the task succeeded: the task
    /// fails.
    Missing(String),
    /// An output symlink points outside the workspace: the task fails.
    Escapes(String),
    /// An output is a FIFO, socket or device, which is never opened (a
    /// FIFO would block for ever): the task fails.
    Special(String),
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
            StoreError::Special(p) => write!(
                f,
                "output \"{p}\" is a FIFO, socket or device; outputs are files, directories and symlinks"
            ),
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
    /// An entry exists but is not signed by a trusted key; left in place
    /// (it may serve a build that trusts its key).
    Untrusted(String),
}

/// A cache directory. Nothing is created until something is stored.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
    /// The journal, read on first use and shared by the clones.
    journal: Arc<Mutex<Option<Journal>>>,
    /// Signs the entries this cache writes, if set.
    signer: Option<Arc<Signer>>,
    /// Whose signed entries are used (any entry, if empty).
    trust: Arc<Trust>,
    /// Signatures found since the journal last heard of uses
    /// ([`usage`]).
    hits: Arc<Mutex<Vec<String>>>,
}

fn io_err(what: &str, path: &Path, e: io::Error) -> String {
    format!(
        "{what} {}: {}",
        path.display(),
        crate::cache::digest::io_text(&e)
    )
}

impl Cache {
    pub fn new(dir: impl Into<PathBuf>) -> Cache {
        Cache {
            dir: dir.into(),
            journal: Arc::default(),
            signer: None,
            trust: Arc::default(),
            hits: Arc::default(),
        }
    }

    /// This cache, signing what it writes with `signer` and using only
    /// entries signed by a key of `trust` (unless it is empty).
    pub fn with_keys(self, signer: Option<Signer>, trust: Trust) -> Cache {
        Cache {
            signer: signer.map(Arc::new),
            trust: Arc::new(trust),
            ..self
        }
    }

    /// An entry's bytes as this cache stores them: signed, with a signer.
    pub fn seal(&self, entry: Vec<u8>) -> Vec<u8> {
        match &self.signer {
            Some(s) => s.seal(&entry),
            None => entry,
        }
    }

    /// Whether an entry as stored may be used (see [`Trust::check`]).
    pub fn trusts(&self, stored: &[u8]) -> Result<(), String> {
        self.trust.check(stored)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn blob_path(&self, hash: &str) -> PathBuf {
        blob_path(&self.dir, hash)
    }

    fn entry_path(&self, sig: &str) -> PathBuf {
        self.dir.join(entry_rel(sig))
    }

    /// The journal, read once.
    fn with_journal<T>(&self, f: impl FnOnce(&mut Journal) -> T) -> T {
        let mut guard = self.journal.lock().unwrap_or_else(|e| e.into_inner());
        f(guard.get_or_insert_with(|| Journal::load(&self.dir.join("journal"))))
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
        if let Err(why) = self.trust.check(&bytes) {
            return Lookup::Untrusted(format!("the cache entry {why}"));
        }
        match validate_entry(sig, &bytes) {
            Ok(entry) => {
                self.note_hit(sig);
                Lookup::Hit(entry)
            }
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
        blobs::put(&self.dir, &entry_rel(sig), bytes)
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
        blobs::put(&self.dir, &blob_rel(hash), bytes)
    }

    /// The outputs record of `sig`, if there is one (`Err`: unusable).
    pub fn outputs_record(&self, sig: &str) -> Option<Result<OutputsRecord, String>> {
        let bytes = fs::read(self.dir.join(record_rel(sig))).ok()?;
        Some(parse_record(sig, &bytes).map_err(|why| format!("the outputs record {why}")))
    }

    /// Stores `bytes` as the outputs record of `sig` (temp + rename) if
    /// they are one.
    pub fn put_record(&self, sig: &str, bytes: &[u8]) -> Result<(), String> {
        parse_record(sig, bytes).map_err(|why| format!("the outputs record {why}"))?;
        blobs::put(&self.dir, &record_rel(sig), bytes)
    }

    /// Removes the entry for `sig` (it was found corrupt); best effort.
    pub fn remove_entry(&self, sig: &str) {
        let _ = fs::remove_file(self.entry_path(sig));
    }

    /// The cache directory as a string, for the [`Files`] seam.
    pub fn dir_str(&self) -> &str {
        self.dir
            .to_str()
            .expect("cache paths come from UTF-8 options")
    }

    /// Puts the outputs of `entry` into the workspace: directories, then
    /// the files (by `files`: every blob checked to exist first, verified
    /// while copied, each file complete or not at all; a corrupt blob is
    /// deleted so that storing again repairs it), then symlinks.
    pub async fn restore(
        &self,
        ws: &Path,
        entry: &ActionEntry,
        modes: &dyn FileModes,
        files: &dyn Files,
    ) -> Result<(), String> {
        for o in &entry.outputs {
            if let OutputEntry::Dir { path, mode } = o {
                make_dir(&ws.join(path))?;
                modes.set_mode(path, *mode)?;
            }
        }
        files.restore(self.dir_str(), restore_files(entry)).await?;
        for o in &entry.outputs {
            if let OutputEntry::Symlink { path, target } = o {
                link_at(target, &ws.join(path))?;
            }
        }
        Ok(())
    }

    /// The last recorded run of `task`, if any.
    pub fn history(&self, task: &str) -> Option<History> {
        self.with_journal(|j| j.history(task).cloned())
    }

    /// Every task id in the history with the peak memory of its latest
    /// measured run.
    pub fn peaks(&self) -> Vec<(String, u64)> {
        self.with_journal(|j| j.peaks())
    }

    /// The signature of the last recorded run of `task`, if any (without
    /// copying the rest of its history).
    pub fn last_signature(&self, task: &str) -> Option<String> {
        self.with_journal(|j| j.history(task).map(|h| h.signature.clone()))
    }

    /// Records runs of tasks: lines appended to the journal in one write.
    pub fn record_runs(&self, runs: Vec<Record>) -> Result<(), String> {
        self.with_journal(|j| j.append(runs))
    }
}

/// Lists every file, directory and symlink of the declared `outputs`
/// (directories first, sorted), with modes, after checking that each output
/// exists and every symlink stays inside the workspace. Only looks: cheap
/// next to storing the files, which copies; their blobs are filled in by
/// [`with_blobs`].
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
        let target = match target {
            Ok(t) if !link_escapes(rel, &t) => t,
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
    } else if meta.is_file() {
        entries.push(OutputEntry::File {
            path: rel.to_string(),
            blob: String::new(),
            size: 0,
            mode: mode(rel)?,
        });
    } else {
        return Err(StoreError::Special(rel.to_string()));
    }
    Ok(())
}

/// The outputs record as the file to write (path relative to the cache,
/// bytes).
pub fn record_file(record: &OutputsRecord) -> (String, Vec<u8>) {
    let json = serde_json::to_vec(record).expect("records serialize");
    (record_rel(&record.signature), json)
}

/// The files of `entry`, to restore.
fn restore_files(entry: &ActionEntry) -> Vec<RestoreFile> {
    let file = |o: &OutputEntry| match o {
        OutputEntry::File {
            path,
            blob,
            size,
            mode,
        } => Some(RestoreFile {
            path: path.clone(),
            blob: Blob {
                hash: blob.clone(),
                size: *size,
            },
            mode: *mode,
        }),
        _ => None,
    };
    entry.outputs.iter().filter_map(file).collect()
}

/// Makes directory `dest`, replacing a file or symlink in the way.
fn make_dir(dest: &Path) -> Result<(), String> {
    if fs::symlink_metadata(dest).is_ok_and(|m| !m.is_dir()) {
        fs::remove_file(dest).map_err(|e| io_err("cannot replace", dest, e))?;
    }
    fs::create_dir_all(dest).map_err(|e| io_err("cannot create", dest, e))
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

/// Makes `link` a symlink to `target`, replacing what is there.
pub fn link_at(target: &str, link: &Path) -> Result<(), String> {
    remove_any(link)?;
    make_parent(link)?;
    symlink(target, link).map_err(|e| io_err("cannot create symlink", link, e))
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
    use crate::cache::signature::SigParts;
    use futures::executor::block_on;
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

    /// The [`Files`] seam done at once, on this thread, over the native
    /// file system with the workspace at `.0`.
    pub(crate) struct NativeFiles(pub PathBuf);

    impl NativeFiles {
        fn each<T>(
            &self,
            paths: Vec<String>,
            f: impl Fn(&Path) -> Result<T, String>,
        ) -> Result<Vec<T>, String> {
            paths.iter().map(|p| f(&self.0.join(p))).collect()
        }
    }

    impl Files for NativeFiles {
        fn hash(&self, paths: Vec<String>) -> crate::seams::LocalFuture<Result<Vec<Blob>, String>> {
            let hashed = self.each(paths, crate::cache::blobs::hash);
            Box::pin(std::future::ready(hashed))
        }
        fn store(
            &self,
            cache: &str,
            paths: Vec<String>,
        ) -> crate::seams::LocalFuture<Result<Vec<Blob>, String>> {
            let stored = self.each(paths, |p| crate::cache::blobs::store(Path::new(cache), p));
            Box::pin(std::future::ready(stored))
        }
        fn restore(
            &self,
            cache: &str,
            files: Vec<RestoreFile>,
        ) -> crate::seams::LocalFuture<Result<(), String>> {
            let set_mode = |p: &Path, mode: u32| {
                fs::set_permissions(p, fs::Permissions::from_mode(mode)).map_err(|e| e.to_string())
            };
            let list: Vec<_> = files
                .iter()
                .map(|f| (f.path.as_str(), &f.blob, f.mode))
                .collect();
            let dest_of = |path: &str| self.0.join(path);
            let done = blobs::restore_all(Path::new(cache), &list, &dest_of, &set_mode);
            Box::pin(std::future::ready(done))
        }
        fn put(
            &self,
            cache: &str,
            files: Vec<(String, Vec<u8>)>,
        ) -> crate::seams::LocalFuture<Result<(), String>> {
            let cache = Path::new(cache);
            let done = files
                .iter()
                .try_for_each(|(rel, bytes)| crate::cache::blobs::put(cache, rel, bytes));
            Box::pin(std::future::ready(done))
        }
    }

    fn files(ws: &tempfile::TempDir) -> NativeFiles {
        NativeFiles(ws.path().to_path_buf())
    }

    /// Stores `outputs` of the workspace `ws` under [`SIG`] as a build
    /// does: outputs listed, blobs stored, then the entry written.
    fn store(
        cache: &Cache,
        ws: &tempfile::TempDir,
        modes: &NativeModes,
        outputs: &[String],
        duration_ms: u64,
    ) -> Result<ActionEntry, StoreError> {
        let entries = collect_outputs(ws.path(), outputs, modes)?;
        let stored = block_on(files(ws).store(cache.dir_str(), file_paths(&entries)));
        let entries = with_blobs(entries, stored.map_err(StoreError::Io)?);
        let ((rel, bytes), entry) = entry_file("t", SIG, entries, duration_ms);
        blobs::put(cache.dir(), &rel, &bytes).map_err(StoreError::Io)?;
        Ok(entry)
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
        let entry = store(&cache, &ws, &modes, &outs, 42).unwrap();
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
        block_on(cache.restore(ws.path(), &found, &modes, &files(&ws))).unwrap();
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
        let entry = store(&cache, &ws, &modes, &["single".into()], 1).unwrap();
        let OutputEntry::File { blob, .. } = &entry.outputs[0] else {
            panic!()
        };
        let blob_path = cache.blob_path(blob);
        fs::write(&blob_path, "one fil!").unwrap(); // same size, wrong bytes
        fs::remove_file(ws.path().join("single")).unwrap();
        let err = block_on(cache.restore(ws.path(), &entry, &modes, &files(&ws))).unwrap_err();
        assert!(err.contains("is corrupt"), "{err}");
        assert!(!ws.path().join("single").exists(), "no partial file");
        assert!(!blob_path.exists(), "the bad blob is gone");
        // Storing again repairs it.
        fs::write(ws.path().join("single"), "one file").unwrap();
        store(&cache, &ws, &modes, &["single".into()], 1).unwrap();
        assert_eq!(fs::read_to_string(&blob_path).unwrap(), "one file");
    }

    #[test]
    fn missing_blobs_and_truncated_entries_are_misses() {
        let (ws, _c, cache, modes) = setup();
        let entry = store(&cache, &ws, &modes, &["out".into()], 1).unwrap();
        let OutputEntry::File { blob, .. } = &entry.outputs[1] else {
            panic!()
        };
        fs::remove_file(cache.blob_path(blob)).unwrap();
        fs::remove_file(ws.path().join("out/data")).unwrap();
        let err = block_on(cache.restore(ws.path(), &entry, &modes, &files(&ws))).unwrap_err();
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
            store(&cache, &ws, &modes, &["nope".into()], 1).unwrap_err(),
            StoreError::Missing("nope".into())
        );
        std::os::unix::fs::symlink("../../etc/passwd", ws.path().join("out/bad")).unwrap();
        assert_eq!(
            store(&cache, &ws, &modes, &["out".into()], 1).unwrap_err(),
            StoreError::Escapes("out/bad".into())
        );
        assert!(
            matches!(cache.lookup(SIG), Lookup::Miss),
            "no entry written"
        );
    }

    /// An entry with `outputs` (JSON objects), as a remote or a tampered
    /// cache could hand it over.
    fn entry_of(outputs: &str) -> ActionEntry {
        let json = format!(
            r#"{{"format":{CACHE_FORMAT},"task":"t","signature":"{SIG}","outputs":[{outputs}],"exit_code":0,"duration_ms":1,"stored_at":0}}"#
        );
        validate_entry(SIG, json.as_bytes()).unwrap()
    }

    #[test]
    fn an_entry_writes_only_declared_outputs_and_links_only_inside() {
        let blob = sha256_hex(b"x");
        let file = |p: &str| {
            format!(r#"{{"kind":"file","path":"{p}","blob":"{blob}","size":1,"mode":420}}"#)
        };
        let dir = |p: &str| format!(r#"{{"kind":"dir","path":"{p}","mode":493}}"#);
        let link =
            |p: &str, t: &str| format!(r#"{{"kind":"symlink","path":"{p}","target":"{t}"}}"#);
        let declared = ["out".to_string(), "stamp".to_string()];
        let good = [
            dir("out"),
            file("out/a"),
            link("out/l", "a"),
            link("out/up", "../src/x"),
            file("stamp"),
        ];
        assert_eq!(entry_of(&good.join(",")).confined_to(&declared), Ok(()));
        // Each case: what the entry adds to a sound one, and why it is refused.
        let base = || vec![dir("out"), file("stamp")];
        let refused = [
            (
                vec![file("src/main.c")],
                "writes \"src/main.c\", which is no declared output",
            ),
            (
                vec![file("stampede")],
                "writes \"stampede\", which is no declared output",
            ),
            (
                vec![link("out/esc", "../../etc")],
                "makes symlink \"out/esc\" -> \"../../etc\", which leads out",
            ),
            (
                vec![link("out/abs", "/etc")],
                "makes symlink \"out/abs\" -> \"/etc\", which leads out",
            ),
            (
                vec![link("out/l", "../src"), file("out/l/main.c")],
                "writes \"out/l/main.c\" through its own symlink \"out/l\"",
            ),
        ];
        for (extra, why) in refused {
            let all = [base(), extra].concat();
            let err = entry_of(&all.join(",")).confined_to(&declared).unwrap_err();
            assert!(err.contains(why), "{err} should say {why}");
        }
        let err = entry_of(&dir("out")).confined_to(&declared).unwrap_err();
        assert_eq!(err, "lacks the declared output \"stamp\"");
    }

    #[test]
    fn history_is_read_back_from_the_journal() {
        let (_ws, _c, cache, _modes) = setup();
        let parts: SigParts = serde_json::from_str(
            r#"{"version":1,"action":"none","env":{},"cwd":"","outputs":[],"inputs":{},"deps":{}}"#,
        )
        .unwrap();
        let run = |d| Record {
            task: "a:do_x".into(),
            signature: SIG.into(),
            parts: parts.clone(),
            duration_ms: Some(d),
            peak_bytes: None,
        };
        cache.record_runs((0..12).map(run).collect()).unwrap();
        for c in [&cache, &Cache::new(cache.dir())] {
            let h = c.history("a:do_x").unwrap();
            assert_eq!(h.durations_ms, (2..12).collect::<Vec<_>>());
            assert_eq!(h.parts, parts);
            assert!(c.history("other").is_none());
        }
    }
}
