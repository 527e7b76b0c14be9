//! Action entries: what a task produced, stored under its signature as
//! JSON (`ac/<s0s1>/<signature>.json`), made from its outputs, and checked
//! when read: whole, normalized paths, well-formed blobs, and writing
//! nothing but the task's declared outputs.
//!
//! Knows the entry format and the workspace's paths; knows nothing of the
//! cache's files, of signatures' making or of scheduling.

use serde::{Deserialize, Serialize};

use crate::cache::blobs::Blob;
use crate::cache::digest::is_sha256_hex;
use crate::cache::signing::unseal;
use crate::graph::confine::link_escapes;
use crate::graph::{is_within, normalize};

/// Bumped when the layout or entry format changes.
pub const CACHE_FORMAT: u32 = 1;

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

/// Parses an action entry and checks it is whole and names only paths
/// inside the workspace and well-formed blobs; the error completes "the
/// entry ...".
pub fn validate_entry(sig: &str, bytes: &[u8]) -> Result<ActionEntry, String> {
    let entry: ActionEntry =
        serde_json::from_slice(unseal(bytes)).map_err(|e| format!("is corrupt: {e}"))?;
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

impl ActionEntry {
    /// Checks that restoring this entry writes nothing but `outputs` (the
    /// task's declared outputs, normalized) and what is below them, never
    /// through a symlink it restores itself, and makes no symlink leading
    /// out of the workspace; and that it has every declared output. What
    /// the entry was stored from passed these checks, so an entry that
    /// fails them was written by something else. The error completes
    /// "the entry ...".
    pub fn confined_to(&self, outputs: &[String]) -> Result<(), String> {
        let links: Vec<&str> = self
            .outputs
            .iter()
            .filter(|o| matches!(o, OutputEntry::Symlink { .. }))
            .map(OutputEntry::path)
            .collect();
        for o in &self.outputs {
            let p = o.path();
            if !outputs.iter().any(|d| is_within(p, d)) {
                return Err(format!(
                    "writes \"{p}\", which is no declared output of the task"
                ));
            }
            if let Some(link) = links.iter().find(|l| p != **l && is_within(p, l)) {
                return Err(format!("writes \"{p}\" through its own symlink \"{link}\""));
            }
            if let OutputEntry::Symlink { target, .. } = o {
                if link_escapes(p, target) {
                    return Err(format!(
                        "makes symlink \"{p}\" -> \"{target}\", which leads out of the workspace"
                    ));
                }
            }
        }
        match outputs
            .iter()
            .find(|d| !self.outputs.iter().any(|o| o.path() == d.as_str()))
        {
            Some(d) => Err(format!("lacks the declared output \"{d}\"")),
            None => Ok(()),
        }
    }
}

/// Where the entry for `sig` lives, relative to the cache.
pub fn entry_rel(sig: &str) -> String {
    format!("ac/{}/{sig}.json", &sig[..2])
}

/// The action entry for `entries` (whose blobs are stored), as the file to
/// write (path relative to the cache, bytes), and as itself.
pub fn entry_file(
    task: &str,
    sig: &str,
    entries: Vec<OutputEntry>,
    duration_ms: u64,
) -> ((String, Vec<u8>), ActionEntry) {
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
    ((entry_rel(sig), json), entry)
}

/// The workspace paths of the files among `entries`.
pub fn file_paths(entries: &[OutputEntry]) -> Vec<String> {
    entries
        .iter()
        .filter(|e| matches!(e, OutputEntry::File { .. }))
        .map(|e| e.path().to_string())
        .collect()
}

/// `entries` with each file's blob, from `blobs` in [`file_paths`] order.
pub fn with_blobs(mut entries: Vec<OutputEntry>, blobs: Vec<Blob>) -> Vec<OutputEntry> {
    let files = entries.iter_mut().filter_map(|e| match e {
        OutputEntry::File { blob, size, .. } => Some((blob, size)),
        _ => None,
    });
    for ((blob, size), b) in files.zip(blobs) {
        *blob = b.hash;
        *size = b.size;
    }
    entries
}
