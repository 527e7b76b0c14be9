//! Early cutoff (BitBake's hash equivalence, Ninja's `restat`): what a
//! dependent's signature covers of a task (its *unihash*), and the record
//! of which outputs a signature produced, kept next to action entries so
//! that every machine sharing the cache finds it.
//!
//! A task with declared outputs whose digest is known has the unihash
//! `sha256("outputs" digest deps)`: the digest of its outputs (sorted
//! paths, kinds, modes, blob hashes, link targets) and the unihashes of
//! its own dependencies. A dependent thus covers the outputs of everything
//! it depends on, directly or not (a task may read any of them), and
//! nothing of their scripts or sources: identical outputs give identical
//! dependent signatures. Any other task (no declared outputs, nostamp, no
//! cache, outputs not known) chains: its unihash is its signature.
//!
//! Knows output listings, signatures and the record format; knows nothing
//! of scheduling, processes or where records are stored.

use serde::{Deserialize, Serialize};

use crate::cache::digest::{is_sha256_hex, sha256_hex};
use crate::cache::entry::{ActionEntry, OutputEntry};
use crate::cache::signature::SigParts;

/// Bumped when the record format changes.
pub const RECORD_FORMAT: u32 = 1;

/// The longest outputs record taken from anywhere: a real one is ~300 bytes.
pub const MAX_RECORD_BYTES: u64 = 64 << 10;

/// What a run under `signature` produced, by digest: the mapping a
/// dependent's signature is made from when the task does not run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputsRecord {
    pub format: u32,
    pub task: String,
    pub signature: String,
    /// [`outputs_digest`] of what the run left.
    pub outputs: String,
    /// When the run happened, seconds since the Unix epoch.
    pub at: u64,
    /// When these same outputs were first produced, and under which
    /// signature: this run's if they were new, an earlier run's (under
    /// another signature) if this one reproduced them.
    pub first_at: u64,
    pub first_signature: String,
}

impl OutputsRecord {
    /// Whether this run left the same outputs as an earlier run under
    /// another signature.
    pub fn reproduced(&self) -> bool {
        self.first_signature != self.signature
    }
}

/// The digest of a task's outputs: sha256 of their canonical listing,
/// sorted by path. Sizes are left out (the blob hash implies them).
pub fn outputs_digest(outputs: &[OutputEntry]) -> String {
    let mut lines: Vec<(&str, String)> = outputs
        .iter()
        .map(|o| {
            let line = match o {
                OutputEntry::File {
                    path, blob, mode, ..
                } => format!("file {mode:o} {blob} {path}"),
                OutputEntry::Dir { path, mode } => format!("dir {mode:o} {path}"),
                OutputEntry::Symlink { path, target } => format!("symlink {target:?} {path}"),
            };
            (o.path(), line)
        })
        .collect();
    lines.sort();
    let lines: Vec<String> = lines.into_iter().map(|(_, line)| line).collect();
    sha256_hex(
        serde_json::to_string(&lines)
            .expect("strings serialize")
            .as_bytes(),
    )
}

/// The unihash of a task whose outputs have `digest`, signed with `parts`.
pub fn unihash_of_outputs(digest: &str, parts: &SigParts) -> String {
    let deps = serde_json::to_string(&parts.deps).expect("maps serialize");
    sha256_hex(format!("outputs {digest} {deps}").as_bytes())
}

/// What a covered task's record says of its entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Equivalence {
    /// The record agrees with the entry: dependents cover this digest.
    Known(String),
    /// No record: the task chains (no cutoff past it).
    NoRecord,
    /// The record names other outputs than the entry holds: something
    /// wrote one of them besides runqueue; the task chains.
    Disagrees,
}

/// Checks a covered task's record against its entry.
pub fn equivalence(entry: &ActionEntry, record: Option<&OutputsRecord>) -> Equivalence {
    let Some(record) = record else {
        return Equivalence::NoRecord;
    };
    let digest = outputs_digest(&entry.outputs);
    match record.outputs == digest {
        true => Equivalence::Known(digest),
        false => Equivalence::Disagrees,
    }
}

/// Where the record of `sig` lives in a local cache.
pub fn record_rel(sig: &str) -> String {
    format!("eq/{}/{sig}.json", &sig[..2])
}

/// The remote key of the record of `sig`: an `ac/` key of its own, a
/// sha256 like every key there (bazel-remote checks that).
pub fn record_key(sig: &str) -> String {
    format!(
        "ac/{}",
        sha256_hex(format!("runqueue outputs of {sig}").as_bytes())
    )
}

/// Parses a record and checks it is for `sig`; the error completes "the
/// outputs record ...".
pub fn parse_record(sig: &str, bytes: &[u8]) -> Result<OutputsRecord, String> {
    let r: OutputsRecord = serde_json::from_slice(bytes).map_err(|e| format!("is corrupt: {e}"))?;
    if r.format != RECORD_FORMAT || r.signature != sig || !is_sha256_hex(&r.outputs) {
        return Err("is unusable: wrong format, signature or digest".to_string());
    }
    Ok(r)
}

/// The record of a run under `sig` that left outputs with `digest` at
/// `now`; `previous` is the record of the task's last run, if any.
pub fn new_record(
    task: &str,
    sig: &str,
    digest: &str,
    now: u64,
    previous: Option<&OutputsRecord>,
) -> OutputsRecord {
    let (first_at, first_signature) = match previous {
        Some(p) if p.outputs == digest => (p.first_at, p.first_signature.clone()),
        _ => (now, sig.to_string()),
    };
    OutputsRecord {
        format: RECORD_FORMAT,
        task: task.to_string(),
        signature: sig.to_string(),
        outputs: digest.to_string(),
        at: now,
        first_at,
        first_signature,
    }
}

/// "X's outputs identical to the run of DATE", for `task` whose run left
/// `record`, which reproduced an earlier run's outputs.
pub fn identical_to(task: &str, record: &OutputsRecord) -> String {
    format!(
        "{task}'s outputs identical to the run of {}",
        date(record.first_at)
    )
}

/// Seconds since the epoch as `2026-12-02 07:49 UTC`.
pub fn date(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let (h, m) = ((secs % 86_400) / 3600, (secs % 3600) / 60);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{m:02} UTC")
}

/// Seconds since the Unix epoch, now.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, blob: &str) -> OutputEntry {
        OutputEntry::File {
            path: path.into(),
            blob: blob.into(),
            size: 1,
            mode: 0o644,
        }
    }

    #[test]
    fn the_digest_is_of_content_and_listing_not_of_order() {
        let dir = OutputEntry::Dir {
            path: "out".into(),
            mode: 0o755,
        };
        let one = outputs_digest(&[dir.clone(), file("out/a", "1"), file("out/b", "2")]);
        let two = outputs_digest(&[file("out/b", "2"), dir.clone(), file("out/a", "1")]);
        assert_eq!(one, two);
        let changed = outputs_digest(&[dir.clone(), file("out/a", "1"), file("out/b", "3")]);
        assert_ne!(one, changed);
        let moved = outputs_digest(&[dir, file("out/a", "1"), file("out/c", "2")]);
        assert_ne!(one, moved);
        // Paths with spaces sort by their whole path too.
        let spaced = |order: [usize; 2]| {
            let files = [file("a b/x y", "1"), file("c/z y", "2")];
            outputs_digest(&order.map(|i| files[i].clone()))
        };
        assert_eq!(spaced([0, 1]), spaced([1, 0]));
    }

    #[test]
    fn a_record_keeps_the_first_run_of_the_same_outputs() {
        let first = new_record("t", &"a".repeat(64), &"d".repeat(64), 100, None);
        assert_eq!(first.first_at, 100);
        assert!(!first.reproduced());
        let same = new_record("t", &"b".repeat(64), &"d".repeat(64), 200, Some(&first));
        assert_eq!((same.at, same.first_at), (200, 100));
        assert!(same.reproduced());
        assert_eq!(same.first_signature, "a".repeat(64));
        let other = new_record("t", &"c".repeat(64), &"e".repeat(64), 300, Some(&same));
        assert_eq!(other.first_at, 300);
        assert!(!other.reproduced());
        let bytes = serde_json::to_vec(&same).unwrap();
        assert_eq!(parse_record(&"b".repeat(64), &bytes), Ok(same));
        assert!(parse_record(&"c".repeat(64), &bytes).is_err());
    }

    #[test]
    fn dates_read_as_utc() {
        assert_eq!(date(0), "1970-01-01 00:00 UTC");
        assert_eq!(date(1_796_197_740), "2026-12-02 07:49 UTC");
        assert_eq!(date(951_782_400), "2000-02-29 00:00 UTC");
    }

    #[test]
    fn record_keys_are_sha256_apart_from_entry_keys() {
        let sig = "a".repeat(64);
        let key = record_key(&sig);
        assert!(is_sha256_hex(key.strip_prefix("ac/").unwrap()));
        assert_ne!(key, format!("ac/{sig}"));
        assert_eq!(record_rel(&sig), format!("eq/aa/{sig}.json"));
    }
}
