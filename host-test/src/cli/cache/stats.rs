//! `runqueue cache stats`: what a cache holds and how much of the recent
//! builds it covered (from the journal's build lines).
//!
//! Knows a [`Scan`] and the journal; changes nothing.

use std::path::Path;

use runqueue::cache::journal::Journal;

use super::{check_cache, mib, scan, Failure};

/// Prints one `name: value` line per figure.
pub(in crate::cli) fn stats(cache: &Path) -> Result<i32, Failure> {
    check_cache(cache)?;
    let found = scan::scan(cache).map_err(super::bad_input)?;
    let journal = Journal::read_only(&cache.join("journal"));
    for (name, value) in figures(&found, &journal) {
        println!("{name}: {value}");
    }
    Ok(runqueue::cli::EXIT_OK)
}

fn figures(found: &scan::Scan, journal: &Journal) -> Vec<(&'static str, String)> {
    let unreadable = found.entries.iter().filter(|e| e.blobs.is_none()).count();
    let tmp: u64 = found.tmp.iter().map(|f| f.size).sum();
    let mut lines = vec![
        ("entries", found.entries.len().to_string()),
        ("unreadable entries", unreadable.to_string()),
        ("blobs", found.blobs.len().to_string()),
        (
            "bytes",
            format!("{} ({})", found.bytes(), mib(found.bytes())),
        ),
        ("temporary bytes", tmp.to_string()),
    ];
    let builds: Vec<_> = journal.builds().collect();
    let (tasks, cached) = builds
        .iter()
        .fold((0, 0), |(t, c), b| (t + b.tasks, c + b.cached));
    lines.push(("recent builds", builds.len().to_string()));
    if let Some(last) = builds.last() {
        lines.push(("hit ratio of recent builds", ratio(cached, tasks)));
        lines.push((
            "hit ratio of the last build",
            ratio(last.cached, last.tasks),
        ));
    }
    lines
}

/// `cached` of `tasks` as a percentage and the counts.
fn ratio(cached: u64, tasks: u64) -> String {
    let percent = 100.0 * cached as f64 / tasks.max(1) as f64;
    format!("{percent:.1}% ({cached} of {tasks} tasks)")
}
