//! The history journal: one append-only file per cache, one line per task
//! run (like Ninja's `.ninja_log`), read once per build and compacted now
//! and then. Replaces a file read and written per task.
//!
//! Each line is a JSON [`Record`] (a task ran, or was decided), a [`Uses`]
//! (a build looked these entries up: when, for `runqueue cache gc`'s
//! least-recently-used order) or a [`Built`] (a build's hit ratio, for
//! `runqueue cache stats`). A line that does not parse (the torn
//! last line of a build killed mid-write) is ignored; an append first ends
//! such a line, so nothing after it is lost. Each append is one `write` of
//! whole lines to a file opened for appending, so concurrent builds sharing
//! a cache interleave whole records.
//!
//! Knows files and records; knows nothing of graphs or scheduling.

use std::collections::{HashMap, VecDeque};
use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cache::digest::{io_text, is_sha256_hex, unique_suffix};
use crate::cache::entry::entry_rel;
use crate::cache::signature::SigParts;
use crate::cache::wfile::{self, How};

/// How many recent durations the history keeps per task.
pub const HISTORY_DURATIONS: usize = 10;

/// A journal is rewritten with one line per task once it holds more than
/// this many lines per task (and at least [`COMPACT_MIN_LINES`]).
const COMPACT_RATIO: usize = 4;
const COMPACT_MIN_LINES: usize = 1000;

/// One run of a task, as a journal line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub task: String,
    pub signature: String,
    pub parts: SigParts,
    /// How long it ran; `None` when it did not run (recorded for its parts).
    pub duration_ms: Option<u64>,
    /// The most memory it held at once, in bytes, where the host measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_bytes: Option<u64>,
}

/// Entries a build used (looked up and found), and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Uses {
    /// Seconds since the Unix epoch.
    pub used_at: u64,
    /// Their signatures.
    pub used: Vec<String>,
}

/// How much of a build the cache covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Built {
    /// When it ended, in seconds since the Unix epoch.
    pub built_at: u64,
    /// Its tasks, and how many of them the cache covered.
    pub tasks: u64,
    pub cached: u64,
}

/// How many [`Built`] lines the journal keeps.
pub const RECENT_BUILDS: usize = 20;

/// One journal line, of any kind.
#[derive(Deserialize)]
#[serde(untagged)]
enum Line {
    Record(Box<Record>),
    Uses(Uses),
    Built(Built),
}

/// The last recorded run of a task id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    pub task: String,
    pub signature: String,
    pub parts: SigParts,
    /// Most recent last.
    pub durations_ms: Vec<u64>,
    /// The peak memory of its latest measured run.
    pub peak_bytes: Option<u64>,
}

impl History {
    fn of(r: Record) -> History {
        History {
            task: r.task,
            signature: r.signature,
            parts: r.parts,
            durations_ms: r.duration_ms.into_iter().collect(),
            peak_bytes: r.peak_bytes,
        }
    }

    fn add(&mut self, r: Record) {
        self.signature = r.signature;
        self.parts = r.parts;
        self.peak_bytes = r.peak_bytes.or(self.peak_bytes);
        if let Some(d) = r.duration_ms {
            self.durations_ms.push(d);
            let excess = self.durations_ms.len().saturating_sub(HISTORY_DURATIONS);
            self.durations_ms.drain(..excess);
        }
    }

    /// The lines that give this history when read back.
    fn as_records(&self) -> impl Iterator<Item = Record> + '_ {
        let runs: Vec<Option<u64>> = match self.durations_ms.as_slice() {
            [] => vec![None],
            ms => ms.iter().map(|&d| Some(d)).collect(),
        };
        let last = runs.len() - 1;
        runs.into_iter()
            .enumerate()
            .map(move |(i, duration_ms)| Record {
                task: self.task.clone(),
                signature: self.signature.clone(),
                parts: self.parts.clone(),
                duration_ms,
                peak_bytes: self.peak_bytes.filter(|_| i == last),
            })
    }
}

/// The journal file of a cache and what it says, per task id.
#[derive(Debug, Default)]
pub struct Journal {
    path: PathBuf,
    by_task: HashMap<String, History>,
    /// When each entry was last used, by signature.
    last_use: HashMap<String, u64>,
    builds: VecDeque<Built>,
    lines: usize,
}

impl Journal {
    /// Reads the journal at `path` (none yet is empty), compacting it when
    /// it has grown long; a compaction that fails only leaves it long.
    pub fn load(path: &Path) -> Journal {
        let mut journal = Journal::read_only(path);
        if journal.lines > COMPACT_MIN_LINES.max(COMPACT_RATIO * journal.by_task.len()) {
            let _ = journal.compact();
        }
        journal
    }

    /// Reads the journal at `path`, never compacting it (a collection
    /// reading what builds used while entries are set aside, which a
    /// compaction would forget).
    pub fn read_only(path: &Path) -> Journal {
        let mut journal = Journal {
            path: path.to_path_buf(),
            ..Journal::default()
        };
        if let Ok(text) = fs::read(path) {
            journal.read(&text);
        }
        journal
    }

    fn read(&mut self, text: &[u8]) {
        for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            self.lines += 1;
            match serde_json::from_slice::<Line>(line) {
                Ok(Line::Record(r)) => self.remember(*r),
                Ok(Line::Uses(u)) => self.remember_uses(u),
                Ok(Line::Built(b)) => self.remember_build(b),
                Err(_) => {}
            }
        }
    }

    fn remember_uses(&mut self, u: Uses) {
        for sig in u.used {
            let at = self.last_use.entry(sig).or_insert(u.used_at);
            *at = (*at).max(u.used_at);
        }
    }

    fn remember_build(&mut self, b: Built) {
        self.builds.push_back(b);
        if self.builds.len() > RECENT_BUILDS {
            self.builds.pop_front();
        }
    }

    /// When the entry of `sig` was last used, if the journal says.
    pub fn last_use(&self, sig: &str) -> Option<u64> {
        self.last_use.get(sig).copied()
    }

    /// The most recent builds' coverage, oldest first.
    pub fn builds(&self) -> impl Iterator<Item = &Built> {
        self.builds.iter()
    }

    fn remember(&mut self, r: Record) {
        match self.by_task.get_mut(&r.task) {
            Some(h) => h.add(r),
            None => {
                self.by_task.insert(r.task.clone(), History::of(r));
            }
        }
    }

    pub fn history(&self, task: &str) -> Option<&History> {
        self.by_task.get(task)
    }

    /// Every task id with a measured peak, and that peak.
    pub fn peaks(&self) -> Vec<(String, u64)> {
        let measured = self
            .by_task
            .values()
            .filter_map(|h| Some((h.task.clone(), h.peak_bytes?)));
        measured.collect()
    }

    /// Appends `records` in one write, ending a torn last line first.
    pub fn append(&mut self, records: Vec<Record>) -> Result<(), String> {
        if records.is_empty() {
            return Ok(());
        }
        let text = lines(&records);
        self.append_bytes(text)
            .map_err(|e| self.error("append to", &e))?;
        self.lines += records.len();
        records.into_iter().for_each(|r| self.remember(r));
        Ok(())
    }

    /// Records that the entries of `sigs` were used now, in one line.
    pub fn append_uses(&mut self, used: Vec<String>, used_at: u64) -> Result<(), String> {
        if used.is_empty() {
            return Ok(());
        }
        let uses = Uses { used_at, used };
        self.append_line(&uses)?;
        self.remember_uses(uses);
        Ok(())
    }

    /// Records how much of a build the cache covered.
    pub fn append_built(&mut self, built: Built) -> Result<(), String> {
        self.append_line(&built)?;
        self.remember_build(built);
        Ok(())
    }

    fn append_line(&mut self, line: &impl Serialize) -> Result<(), String> {
        let mut text = serde_json::to_vec(line).expect("journal lines serialize");
        text.push(b'\n');
        self.append_bytes(text)
            .map_err(|e| self.error("append to", &e))?;
        self.lines += 1;
        Ok(())
    }

    fn append_bytes(&self, mut text: Vec<u8>) -> io::Result<()> {
        if let Some(dir) = self.path.parent() {
            fs::create_dir_all(dir)?;
        }
        if ends_torn(&self.path)? {
            text.insert(0, b'\n');
        }
        wfile::open(&self.path, How::Append)?.write_all(&text)
    }

    /// Rewrites the journal with one history per task: temporary file, then
    /// rename.
    fn compact(&mut self) -> Result<(), String> {
        let records: Vec<Record> = self
            .by_task
            .values()
            .flat_map(History::as_records)
            .collect();
        let mut text = lines(&records);
        self.uses_lines(&mut text);
        let tmp = self
            .path
            .with_file_name(format!("journal.{}", unique_suffix()));
        let written = wfile::open(&tmp, How::New)
            .and_then(|mut f| f.write_all(&text))
            .and_then(|_| fs::rename(&tmp, &self.path));
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(self.error("compact", &e));
        }
        self.lines = text.iter().filter(|&&b| b == b'\n').count();
        Ok(())
    }

    /// The uses of entries still in the cache (or used within the last
    /// day: one a collection has set aside may come back), one line per
    /// time, and the recent builds.
    fn uses_lines(&self, text: &mut Vec<u8>) {
        let cache = self.path.parent().unwrap_or(Path::new("."));
        let mut by_time: HashMap<u64, Vec<String>> = HashMap::new();
        let recent = crate::cache::cutoff::now_secs().saturating_sub(24 * 3600);
        for (sig, &at) in &self.last_use {
            let kept = at >= recent || cache.join(entry_rel(sig)).exists();
            if is_sha256_hex(sig) && kept {
                by_time.entry(at).or_default().push(sig.clone());
            }
        }
        let mut times: Vec<_> = by_time.into_iter().collect();
        times.sort_unstable_by_key(|(at, _)| *at);
        for (used_at, used) in times {
            let line = serde_json::to_vec(&Uses { used_at, used }).expect("uses serialize");
            text.extend(line);
            text.push(b'\n');
        }
        for b in &self.builds {
            text.extend(serde_json::to_vec(b).expect("builds serialize"));
            text.push(b'\n');
        }
    }

    fn error(&self, what: &str, e: &io::Error) -> String {
        format!("cannot {what} {}: {}", self.path.display(), io_text(e))
    }
}

/// `records` as journal lines.
fn lines(records: &[Record]) -> Vec<u8> {
    let mut text = Vec::new();
    for r in records {
        serde_json::to_writer(&mut text, r).expect("records serialize");
        text.push(b'\n');
    }
    text
}

/// Whether the file's last byte is not a line end (a torn record).
fn ends_torn(path: &Path) -> io::Result<bool> {
    let mut file = match fs::File::open(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        opened => opened?,
    };
    if file.metadata()?.len() == 0 {
        return Ok(false);
    }
    file.seek(SeekFrom::End(-1))?;
    let mut last = [0u8];
    file.read_exact(&mut last)?;
    Ok(last[0] != b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts() -> SigParts {
        serde_json::from_str(
            r#"{"version":1,"action":"none","env":{},"cwd":"","outputs":[],"inputs":{},"deps":{}}"#,
        )
        .unwrap()
    }

    fn run(task: &str, sig: &str, ms: u64) -> Record {
        Record {
            task: task.into(),
            signature: sig.into(),
            parts: parts(),
            duration_ms: Some(ms),
            peak_bytes: None,
        }
    }

    #[test]
    fn keeps_the_last_durations_and_signature() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let mut j = Journal::load(&path);
        for d in 0..12 {
            j.append(vec![run("a:do_x", &format!("s{d}"), d)]).unwrap();
        }
        for j in [&j, &Journal::load(&path)] {
            let h = j.history("a:do_x").unwrap();
            assert_eq!(h.durations_ms, (2..12).collect::<Vec<_>>());
            assert_eq!(h.signature, "s11");
            assert!(j.history("other").is_none());
        }
    }

    #[test]
    fn a_torn_last_record_is_ignored_and_nothing_else_lost() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let mut j = Journal::load(&path);
        j.append(vec![run("a", "s", 1), run("b", "s", 2)]).unwrap();
        // Killed mid-write: half a record, no line end.
        let line = serde_json::to_string(&run("c", "s", 3)).unwrap();
        let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&line.as_bytes()[..line.len() / 2]).unwrap();
        let mut j = Journal::load(&path);
        assert!(j.history("c").is_none());
        assert_eq!(j.history("b").unwrap().durations_ms, [2]);
        // The next build's records survive the torn line.
        j.append(vec![run("d", "s", 4)]).unwrap();
        let j = Journal::load(&path);
        assert_eq!(j.history("a").unwrap().durations_ms, [1]);
        assert_eq!(j.history("d").unwrap().durations_ms, [4]);
    }

    #[test]
    fn a_long_journal_is_compacted_to_what_it_says() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let mut j = Journal::load(&path);
        for d in 0..(COMPACT_MIN_LINES as u64 + 10) {
            j.append(vec![run(&format!("t{}", d % 3), "s", d)]).unwrap();
        }
        let before: Vec<_> = (0..3)
            .map(|i| j.history(&format!("t{i}")).cloned())
            .collect();
        let compacted = Journal::load(&path);
        let lines = fs::read_to_string(&path).unwrap().lines().count();
        assert_eq!(lines, 3 * HISTORY_DURATIONS);
        let after: Vec<_> = (0..3)
            .map(|i| compacted.history(&format!("t{i}")).cloned())
            .collect();
        assert_eq!(before, after);
    }

    #[test]
    fn compaction_keeps_the_uses_of_entries_still_there_and_the_builds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let (kept, gone) = ("a".repeat(64), "b".repeat(64));
        let entry = dir.path().join(entry_rel(&kept));
        fs::create_dir_all(entry.parent().unwrap()).unwrap();
        fs::write(&entry, "{}").unwrap();
        let mut j = Journal::load(&path);
        j.append_uses(vec![kept.clone(), gone.clone()], 100)
            .unwrap();
        j.append_uses(vec![kept.clone()], 200).unwrap();
        for n in 0..(RECENT_BUILDS as u64 + 2) {
            j.append_built(Built {
                built_at: n,
                tasks: 9,
                cached: n,
            })
            .unwrap();
        }
        for d in 0..COMPACT_MIN_LINES as u64 {
            j.append(vec![run("t", "s", d)]).unwrap();
        }
        Journal::load(&path);
        let lines = fs::read_to_string(&path).unwrap().lines().count();
        assert_eq!(lines, HISTORY_DURATIONS + 1 + RECENT_BUILDS);
        let compacted = Journal::load(&path);
        assert_eq!(compacted.last_use(&kept), Some(200));
        assert_eq!(compacted.last_use(&gone), None, "its entry is gone");
        let cached: Vec<u64> = compacted.builds().map(|b| b.cached).collect();
        assert_eq!(cached, (2..RECENT_BUILDS as u64 + 2).collect::<Vec<_>>());
    }
}
