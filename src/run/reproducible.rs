//! Checking reproducibility (like BitBake's reproducible-build tests): the
//! graph is built twice without the cache, in the workspace and in a second
//! directory holding only the declared inputs, and each task's outputs are
//! compared path by path. A task whose outputs differ (a timestamp, a
//! random number, an embedded path) fails the check: it is what breaks
//! early cutoff. One that fails only in the second directory reads
//! something the graph does not declare.
//!
//! Knows the run loop, the cache's output listing and the seams; the second
//! directory is reached through the same seams, with its paths prefixed.

use std::collections::BTreeMap;
use std::path::Path;

use crate::cache::signature::hash_inputs_by;
use crate::cache::{collect_outputs, file_paths, with_blobs, OutputEntry};
use crate::graph::{Graph, TaskId};
use crate::run::report::{Outcome, Report};
use crate::run::{self, Config, Seams};
use crate::seams::{
    Blob, Child, Command, Event, FileModes, Files, LocalFuture, Processes, Progress, RestoreFile,
};

/// The second directory, relative to the workspace, made afresh each time.
pub const SECOND_DIR: &str = ".runqueue/repro";
/// Where the second build's logs go, relative to the workspace.
pub const SECOND_LOGS: &str = ".runqueue/repro-logs";
/// Blobs of the inputs on their way into the second directory.
const SCRATCH_CAS: &str = ".runqueue/repro-cas";

/// Builds `graph` twice without a cache (ignoring `config.cache`) and
/// reports the first build, with the tasks that are not reproducible
/// failed. `Err` is bad input, as for [`crate::run::run`].
pub async fn check(graph: &Graph, config: &Config, seams: Seams<'_>) -> Result<Report, String> {
    let Seams {
        processes,
        progress,
        modes,
        files,
        ..
    } = seams;
    let first = Config {
        cache: None,
        ..config.clone()
    };
    let seams = Seams {
        processes: &mut *processes,
        progress: &mut *progress,
        modes,
        files,
        remote: None,
    };
    let mut report = run::run(graph, &first, seams).await?;
    if !report.all_done() {
        return Ok(report);
    }
    let ws = &config.workspace;
    prepare_second(graph, ws, modes, files).await?;
    let second = Config {
        workspace: ws.join(SECOND_DIR),
        log_dir: SECOND_LOGS.to_string(),
        ..first
    };
    let (pmodes, pfiles) = (Prefixed::new(modes), Prefixed::new(files));
    let mut procs = Prefixed::new(processes);
    let mut quiet = Quiet(progress);
    let seams = Seams {
        processes: &mut procs,
        progress: &mut quiet,
        modes: &pmodes,
        files: &pfiles,
        remote: None,
    };
    let again = run::run(graph, &second, seams).await?;
    let differences = compare(graph, (ws, &second.workspace), (modes, &pmodes), files).await;
    fail_unreproducible(&mut report, &again, differences, quiet.0);
    Ok(report)
}

/// Makes the second directory hold the declared inputs (files copied with
/// their modes through the host, symlinks as they are) and each task's
/// working directory.
async fn prepare_second(
    graph: &Graph,
    ws: &Path,
    modes: &dyn FileModes,
    files: &dyn Files,
) -> Result<(), String> {
    let second = ws.join(SECOND_DIR);
    let io = |what: &str, e: std::io::Error| format!("{what} {SECOND_DIR}: {e}");
    // Nothing runs now: clearing the last check's directory stalls nobody.
    match std::fs::remove_dir_all(&second) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io("cannot clear", e)),
        _ => {}
    }
    for task in &graph.tasks {
        std::fs::create_dir_all(second.join(&task.cwd)).map_err(|e| io("cannot fill", e))?;
    }
    let inputs: BTreeMap<String, String> = hash_inputs_by(graph, ws, files)
        .await?
        .into_vec()
        .into_iter()
        .flatten()
        .collect();
    let mut copies = Vec::new();
    for (path, value) in &inputs {
        match value.strip_prefix("symlink:") {
            Some(target) => crate::cache::link_at(target, &second.join(path))?,
            None => copies.push(path.clone()),
        }
    }
    let blobs = files.store(SCRATCH_CAS, copies.clone()).await?;
    let restores = copies.into_iter().zip(blobs).map(|(path, blob)| {
        let mode = modes.mode(&path).unwrap_or(0o644);
        let path = format!("{SECOND_DIR}/{path}");
        RestoreFile { path, blob, mode }
    });
    files.restore(SCRATCH_CAS, restores.collect()).await?;
    let _ = std::fs::remove_dir_all(ws.join(SCRATCH_CAS));
    Ok(())
}

/// Each task's outputs in both directories, as listings with blobs.
async fn compare(
    graph: &Graph,
    (ws, second): (&Path, &Path),
    (modes, pmodes): (&dyn FileModes, &dyn FileModes),
    files: &dyn Files,
) -> BTreeMap<TaskId, Vec<String>> {
    let mut out = BTreeMap::new();
    for id in graph.ids() {
        let outputs = &graph.task(id).outputs;
        let a = listing(ws, outputs, modes, files, "").await;
        let b = listing(second, outputs, pmodes, files, SECOND_DIR).await;
        let differ = differing_paths(&a, &b);
        if !differ.is_empty() {
            out.insert(id, differ);
        }
    }
    out
}

/// The outputs below `root` with their blobs (hashed through `files`,
/// whose paths are below `prefix`); a path that cannot be read is listed
/// without a blob.
async fn listing(
    root: &Path,
    outputs: &[String],
    modes: &dyn FileModes,
    files: &dyn Files,
    prefix: &str,
) -> BTreeMap<String, OutputEntry> {
    let Ok(entries) = collect_outputs(root, outputs, modes) else {
        return BTreeMap::new();
    };
    let paths = file_paths(&entries)
        .into_iter()
        .map(|p| prefixed(prefix, &p));
    let blobs = files.hash(paths.collect()).await.unwrap_or_default();
    let entries = match blobs.is_empty() {
        true => entries,
        false => with_blobs(entries, blobs),
    };
    entries
        .into_iter()
        .map(|e| (e.path().to_string(), e))
        .collect()
}

/// The paths whose entries differ (or exist in one listing only).
fn differing_paths(
    a: &BTreeMap<String, OutputEntry>,
    b: &BTreeMap<String, OutputEntry>,
) -> Vec<String> {
    let mut paths: Vec<&String> = a.keys().chain(b.keys()).collect();
    paths.sort();
    paths.dedup();
    paths
        .into_iter()
        .filter(|p| a.get(*p) != b.get(*p))
        .cloned()
        .collect()
}

/// Fails, in `report`, the tasks whose outputs differ or that failed in
/// the second directory, and tells.
fn fail_unreproducible(
    report: &mut Report,
    again: &Report,
    differences: BTreeMap<TaskId, Vec<String>>,
    progress: &mut dyn Progress,
) {
    for (i, (first, second)) in report.tasks.iter_mut().zip(&again.tasks).enumerate() {
        let why = match (second.outcome, differences.get(&TaskId(i as u32))) {
            (Some(Outcome::Succeeded), Some(paths)) => format!(
                "not reproducible: its outputs differ between two builds in separate \
                 directories (the second in {SECOND_DIR}): {}",
                shorten(paths)
            ),
            (Some(Outcome::Succeeded), None) => continue,
            _ => format!(
                "not reproducible: it failed in a second directory ({SECOND_DIR}): {}; \
                 does it read files the graph does not declare?",
                second.message.as_deref().unwrap_or("not run")
            ),
        };
        first.outcome = Some(Outcome::Failed);
        first.message = Some(why);
        // The log that tells: the second build's, if it failed there.
        first.log = second
            .log
            .clone()
            .filter(|_| second.outcome != Some(Outcome::Succeeded));
        report.succeeded -= 1;
        report.failed += 1;
        progress.event(Event::Finished(first));
    }
}

fn shorten(paths: &[String]) -> String {
    match paths {
        [one] => one.clone(),
        [first, rest @ ..] => format!("{first} and {} more", rest.len()),
        [] => String::new(),
    }
}

fn prefixed(prefix: &str, path: &str) -> String {
    match prefix {
        "" => path.to_string(),
        _ => format!("{prefix}/{path}"),
    }
}

/// A seam reaching the second directory: workspace paths get its prefix.
struct Prefixed<T>(T);

impl<T> Prefixed<T> {
    fn new(inner: T) -> Prefixed<T> {
        Prefixed(inner)
    }
}

fn under(path: &str) -> String {
    prefixed(SECOND_DIR, path)
}

impl FileModes for Prefixed<&dyn FileModes> {
    fn mode(&self, rel: &str) -> Result<u32, String> {
        self.0.mode(&under(rel))
    }
    fn set_mode(&self, rel: &str, mode: u32) -> Result<(), String> {
        self.0.set_mode(&under(rel), mode)
    }
}

impl Files for Prefixed<&dyn Files> {
    fn hash(&self, paths: Vec<String>) -> LocalFuture<Result<Vec<Blob>, String>> {
        self.0.hash(paths.iter().map(|p| under(p)).collect())
    }
    fn store(&self, cache: &str, paths: Vec<String>) -> LocalFuture<Result<Vec<Blob>, String>> {
        self.0
            .store(cache, paths.iter().map(|p| under(p)).collect())
    }
    fn restore(&self, cache: &str, files: Vec<RestoreFile>) -> LocalFuture<Result<(), String>> {
        let files = files.into_iter().map(|f| RestoreFile {
            path: under(&f.path),
            ..f
        });
        self.0.restore(cache, files.collect())
    }
    fn put(&self, cache: &str, files: Vec<(String, Vec<u8>)>) -> LocalFuture<Result<(), String>> {
        self.0.put(cache, files)
    }
}

impl Processes for Prefixed<&mut dyn Processes> {
    fn spawn(&mut self, cmd: &Command) -> Result<Box<dyn Child>, String> {
        let cwd = match cmd.cwd.as_str() {
            "" => SECOND_DIR.to_string(),
            cwd => under(cwd),
        };
        self.0.spawn(&Command { cwd, ..cmd.clone() })
    }
    fn now_ms(&self) -> u64 {
        self.0.now_ms()
    }
    fn sleep(&self, ms: u64) -> LocalFuture<()> {
        self.0.sleep(ms)
    }
    fn interrupted(&mut self) -> LocalFuture<()> {
        self.0.interrupted()
    }
    fn parallelism(&self) -> u32 {
        self.0.parallelism()
    }
    fn take_slots(&mut self, n: u32) -> bool {
        self.0.take_slots(n)
    }
    fn give_slots(&mut self, n: u32) {
        self.0.give_slots(n)
    }
    fn slots_freed(&mut self) -> LocalFuture<()> {
        self.0.slots_freed()
    }
    fn memory_available(&self) -> u64 {
        self.0.memory_available()
    }
    fn memory_stall_us(&self) -> Option<u64> {
        self.0.memory_stall_us()
    }
}

/// The second build's progress: only its warnings reach the console,
/// marked as the second build's.
struct Quiet<'a>(&'a mut dyn Progress);

impl Progress for Quiet<'_> {
    fn event(&mut self, event: Event<'_>) {
        if let Event::Warning(w) = event {
            let w = format!("second build ({SECOND_DIR}): {w}");
            self.0.event(Event::Warning(&w));
        }
    }
}
