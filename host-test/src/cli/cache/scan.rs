//! What a cache directory holds, read on all CPUs: every entry (its size,
//! age and the blobs it names), every blob (size and age), every record
//! whose entry is gone, every temporary file. Reads; removes nothing.
//!
//! Knows the cache's layout and entry format; knows nothing of builds.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::UNIX_EPOCH;

use runqueue::cache::{ActionEntry, OutputEntry};

/// One `ac/` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct EntryFile {
    pub(super) sig: String,
    /// The entry and its `eq/` record, in bytes.
    pub(super) bytes: u64,
    /// When it was written, in seconds since the epoch.
    pub(super) written: u64,
    /// The blobs it names; `None` when it does not parse (a miss for every
    /// build, so collected first).
    pub(super) blobs: Option<Vec<String>>,
}

/// One `cas/` blob, or any other file: its path, size and age.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FileAt {
    pub(super) path: PathBuf,
    pub(super) size: u64,
    /// Last written or touched, in seconds since the epoch.
    pub(super) modified: u64,
}

impl FileAt {
    /// The file's name (a blob's hash).
    pub(super) fn name(&self) -> &str {
        file_name(&self.path)
    }
}

/// The last part of `path` ("" if it has none or it is not UTF-8).
pub(super) fn file_name(path: &Path) -> &str {
    path.file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
}

/// Everything the cache held when scanned.
#[derive(Debug, Default)]
pub(super) struct Scan {
    pub(super) entries: Vec<EntryFile>,
    pub(super) blobs: Vec<FileAt>,
    /// `eq/` records whose entry is gone.
    pub(super) stray_records: Vec<FileAt>,
    pub(super) tmp: Vec<FileAt>,
}

impl Scan {
    /// Entries, blobs and records, in bytes (what `--max-size` bounds).
    pub(super) fn bytes(&self) -> u64 {
        let entries: u64 = self.entries.iter().map(|e| e.bytes).sum();
        let blobs: u64 = self.blobs.iter().map(|b| b.size).sum();
        entries + blobs + self.stray_records.iter().map(|r| r.size).sum::<u64>()
    }
}

/// Whether `dir` looks like a runqueue cache (one that has stored
/// anything has `cas/`).
pub(super) fn is_cache(dir: &Path) -> bool {
    dir.join("cas").is_dir()
}

/// Reads the whole cache at `cache`.
pub(super) fn scan(cache: &Path) -> Result<Scan, String> {
    let entries = entries(cache)?;
    let have: HashSet<&str> = entries.iter().map(|e| e.sig.as_str()).collect();
    let records = on_all_cpus(&shard_files(&cache.join("eq"))?, |f| stat(f));
    let stray_records = records
        .into_iter()
        .flatten()
        .filter(|r| !have.contains(r.name().trim_end_matches(".json")))
        .collect();
    Ok(Scan {
        blobs: on_all_cpus(&shard_files(&cache.join("cas"))?, |f| stat(f))
            .into_iter()
            .flatten()
            .collect(),
        stray_records,
        tmp: top_files(&cache.join("tmp"))?
            .iter()
            .filter_map(|f| stat(f))
            .collect(),
        entries,
    })
}

/// Every entry of the cache at `cache`.
pub(super) fn entries(cache: &Path) -> Result<Vec<EntryFile>, String> {
    Ok(on_all_cpus(&shard_files(&cache.join("ac"))?, |f| {
        read_entry(cache, f)
    }))
}

/// `each` of `items`, on every CPU; what it returns, in no set order.
pub(super) fn on_all_cpus<I: Sync, T: Send>(items: &[I], each: impl Fn(&I) -> T + Sync) -> Vec<T> {
    let next = AtomicUsize::new(0);
    let found = Mutex::new(Vec::with_capacity(items.len()));
    std::thread::scope(|s| {
        for _ in 0..crate::files::cpus().max(1) {
            s.spawn(|| {
                let mut mine = Vec::new();
                while let Some(item) = items.get(next.fetch_add(1, Ordering::Relaxed)) {
                    mine.push(each(item));
                }
                found.lock().unwrap_or_else(|e| e.into_inner()).extend(mine);
            });
        }
    });
    found.into_inner().unwrap_or_else(|e| e.into_inner())
}

/// The entry at `file` (`ac/xx/<sig>.json`), with its record's size.
fn read_entry(cache: &Path, file: &Path) -> EntryFile {
    let sig = file_name(file).trim_end_matches(".json").to_string();
    let (bytes, written) = stat(file).map_or((0, 0), |f| (f.size, f.modified));
    let record = (sig.len() >= 2)
        .then(|| stat(&cache.join(runqueue::cache::cutoff::record_rel(&sig))))
        .flatten();
    let blobs = fs::read(file).ok().and_then(|b| blobs_named(&b));
    EntryFile {
        bytes: bytes + record.map_or(0, |r| r.size),
        written,
        blobs,
        sig,
    }
}

/// The blobs a stored entry names, if it parses.
fn blobs_named(stored: &[u8]) -> Option<Vec<String>> {
    let bytes = runqueue::cache::signing::unseal(stored);
    let entry: ActionEntry = serde_json::from_slice(bytes).ok()?;
    let files = entry.outputs.into_iter().filter_map(|o| match o {
        OutputEntry::File { blob, .. } => Some(blob),
        _ => None,
    });
    Some(files.collect())
}

/// The size and time of the regular file at `path`.
pub(super) fn stat(path: &Path) -> Option<FileAt> {
    let meta = fs::symlink_metadata(path).ok().filter(|m| m.is_file())?;
    let modified = meta.modified().ok()?.duration_since(UNIX_EPOCH).ok()?;
    Some(FileAt {
        path: path.to_path_buf(),
        size: meta.len(),
        modified: modified.as_secs(),
    })
}

/// Every file two levels below `dir` (`dir/ab/abcd…`); none if `dir` is
/// missing.
pub(super) fn shard_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for shard in read_dir(dir)? {
        if shard.file_type().is_ok_and(|t| t.is_dir()) {
            files.extend(top_files(&shard.path())?);
        }
    }
    files.sort();
    Ok(files)
}

/// The regular files directly in `dir`.
fn top_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let files = read_dir(dir)?
        .into_iter()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.path());
    Ok(files.collect())
}

fn read_dir(dir: &Path) -> Result<Vec<fs::DirEntry>, String> {
    match fs::read_dir(dir) {
        Ok(entries) => Ok(entries.flatten().collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(format!("{}: {e}", dir.display())),
    }
}
