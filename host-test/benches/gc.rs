//! `make bench` (collection part): what `runqueue cache gc` costs on a
//! cache of 100,000 entries (each with its own blob and record: 300,000
//! files) against `rm -rf` of the same files (the floor for removing
//! them), and `cache stats` (a scan) against `du -s` walking and stat'ing
//! the same tree (the floor for looking at every file).
//! Medians of 3, each on a fresh copy, written back (`sync`) before each
//! timed command.
//!
//! Appends markdown to the report file given as the first argument.

mod common;

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::runners::{copy_tree, measure, median, runqueue_bin, secs};
use runqueue::cache::blobs::{blob_rel, put};
use runqueue::cache::cutoff::record_rel;
use runqueue::cache::digest::sha256_hex;
use runqueue::cache::entry::entry_rel;

const ENTRIES: usize = 100_000;

fn main() {
    let report = common::report_path();
    let made = tempfile::tempdir().unwrap();
    let source = made.path().join("cache");
    fill(&source);
    let (mut gc, mut stats, mut du, mut rm) = (vec![], vec![], vec![], vec![]);
    for _ in 0..3 {
        let copy = tempfile::tempdir().unwrap();
        let cache = copy.path().join("cache");
        copy_tree(&source, &cache);
        settle_disk();
        du.push(measure(Command::new("du").arg("-s").arg(&cache)).0);
        stats.push(run(&["cache", "stats", "--cache"], &cache, &[]));
        rm.push(remove_copy(&cache));
        settle_disk();
        gc.push(run(
            &["cache", "gc", "--cache"],
            &cache,
            &["--max-size", "1", "--grace", "0"],
        ));
        assert!(
            !cache
                .join("cas")
                .read_dir()
                .unwrap()
                .flatten()
                .any(|s| { s.path().read_dir().unwrap().next().is_some() }),
            "gc removed every blob"
        );
    }
    let (gc, stats, du, rm) = (median(gc), median(stats), median(du), median(rm));
    let ratio = |d: Duration, to: Duration| d.as_secs_f64() / to.as_secs_f64();
    let mut md = String::new();
    let settle = Duration::from_secs(2);
    writeln!(
        md,
        "## Cache collection: {ENTRIES} entries ({} files)\n\n\
         Every entry unused past the grace period (`--max-size 1 --grace 0`): all go. \
         Floors: `du -s` for looking at every file, `rm -rf` of the same files for \
         removing them. The collection includes its 2 s settle (entries set aside, the \
         journal read again). Medians of 3, each on a fresh copy written back first.\n\n\
         | what | time | ratio to its floor |\n|---|---|---|\n\
         | `du -s` (walk and stat every file) | {} | 1.00 |\n\
         | `runqueue cache stats` (scan, parse every entry) | {} | {:.2} × `du -s` |\n\
         | `rm -rf` of the same files | {} | 1.00 |\n\
         | `runqueue cache gc` (scan, set aside, remove) | {} | {:.2} × `rm -rf` |\n\
         | `runqueue cache gc` less the settle | {} | {:.2} × `rm -rf` |\n",
        3 * ENTRIES,
        secs(du),
        secs(stats),
        ratio(stats, du),
        secs(rm),
        secs(gc),
        ratio(gc, rm),
        secs(gc.saturating_sub(settle)),
        ratio(gc.saturating_sub(settle), rm),
    )
    .unwrap();
    common::flush(&report, &mut md);
}

fn run(args: &[&str], cache: &Path, extra: &[&str]) -> Duration {
    let mut cmd = Command::new(runqueue_bin());
    cmd.args(args).arg(cache).args(extra);
    measure(&mut cmd).0
}

/// `rm -rf` of a copy of the cache's `ac/`, `eq/` and `cas/`: removing
/// the same files, knowing nothing.
fn remove_copy(cache: &Path) -> Duration {
    let copy = tempfile::tempdir().unwrap();
    let parts = ["ac", "eq", "cas"].map(|p| copy.path().join(p));
    for (part, to) in ["ac", "eq", "cas"].iter().zip(&parts) {
        copy_tree(&cache.join(part), to);
    }
    settle_disk();
    measure(Command::new("rm").arg("-rf").args(&parts)).0
}

/// Writes back what the copies left dirty, so that no timed command pays
/// for the one before it.
fn settle_disk() {
    assert!(Command::new("sync").status().unwrap().success());
}

/// A cache of [`ENTRIES`] entries, written on every CPU.
fn fill(cache: &Path) {
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|s| {
        for part in 0..cpus {
            s.spawn(move || {
                for i in (part..ENTRIES).step_by(cpus) {
                    write_entry(cache, i);
                }
            });
        }
    });
}

fn write_entry(cache: &Path, i: usize) {
    let bytes = format!("the output of task {i}\n");
    let blob = sha256_hex(bytes.as_bytes());
    put(cache, &blob_rel(&blob), bytes.as_bytes()).unwrap();
    let sig = sha256_hex(format!("task {i}").as_bytes());
    let entry = serde_json::json!({
        "format": 1, "task": format!("t{i}"), "signature": sig, "exit_code": 0,
        "duration_ms": 1, "stored_at": 0,
        "outputs": [{"kind": "file", "path": format!("o{i}"), "blob": blob,
                     "size": bytes.len(), "mode": 420}],
    });
    put(cache, &entry_rel(&sig), entry.to_string().as_bytes()).unwrap();
    let record = format!(r#"{{"signature":"{sig}"}}"#);
    put(cache, &record_rel(&sig), record.as_bytes()).unwrap();
}
