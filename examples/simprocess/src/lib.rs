//! A `process` and `progress` provider written against WASI alone, to be
//! composed into the runqueue component so that `wasmtime run` (or any
//! plain WASI host) can run it.
//!
//! Its "processes" are simulated: a command takes the seconds its `sleep S`
//! words add up to and exits with the code of its last `exit N` (`false`
//! exits 1; anything else succeeds). Each one writes a log naming what it
//! simulated through `wasi:filesystem`, and its `subscribe()` pollable is a
//! `wasi:clocks` timer: the pollables runqueue awaits come from WASI itself,
//! through another component. Progress events become the same lines the
//! bundled host prints when its output is not a terminal.
//!
//! Its `files` (storing into and restoring from the cache's blobs) is
//! runqueue's own `src/cache/blobs.rs` over `wasi:filesystem`, done at once: a
//! WASI-only provider has no other thread to do it on, so its jobs are
//! finished when they are returned.

#![cfg(target_arch = "wasm32")]

use std::cell::Cell;
use std::sync::atomic::{AtomicU32, Ordering};

use wasip2::clocks::monotonic_clock;
use wasip2::io::poll::Pollable;

wit_bindgen::generate!({
    world: "process-provider",
    path: "../../wit",
    with: { "wasi:io/poll@0.2.12": wasip2::io::poll },
});

#[path = "../../../src/cache/blobs.rs"]
#[allow(dead_code)]
mod blobs;
#[path = "../../../src/cache/digest.rs"]
#[allow(dead_code)]
mod digest;
#[path = "../../../src/cache/wfile.rs"]
#[allow(dead_code)]
mod wfile;
/// Where the guest's files find each other (`crate::cache::digest`, …).
mod cache {
    pub(crate) use super::{digest, wfile};
}

use exports::runqueue::executor::files;
use exports::runqueue::executor::process::{self as wit, Command, ExitStatus, SpawnError};
use exports::runqueue::executor::progress::{self, Event};
use exports::runqueue::executor::types::TaskState;

/// Prints a line to stdout, ignoring a closed stdout (`| head`).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// How many tasks runqueue runs at once when not told (`-j`).
const SLOTS: u32 = 8;

struct Provider;

export!(Provider);

/// Simulated process ids start here, far from real ones.
static NEXT_PID: AtomicU32 = AtomicU32::new(100_000);

/// A simulated process: it started at `start` and ends at `deadline`
/// (monotonic ns), or when killed (`killed_at`).
pub struct Child {
    pid: u32,
    start: u64,
    deadline: u64,
    code: i32,
    killed_at: Cell<Option<u64>>,
}

/// The shell text of a command, or its program and arguments.
fn text_of(cmd: &Command) -> String {
    match (cmd.program.as_str(), cmd.args.as_slice()) {
        ("sh", [c, text, ..]) if c == "-c" => text.clone(),
        _ => std::iter::once(cmd.program.as_str())
            .chain(cmd.args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// Seconds from every `sleep S`, and the exit code of the last `exit N`.
fn simulate(text: &str) -> (f64, i32) {
    let words: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || c == ';' || c == '&' || c == '|')
        .filter(|w| !w.is_empty())
        .collect();
    let mut secs = 0.0;
    let mut code = if words.first() == Some(&"false") {
        1
    } else {
        0
    };
    for pair in words.windows(2) {
        match pair[0] {
            "sleep" => secs += pair[1].parse::<f64>().unwrap_or(0.0).max(0.0),
            "exit" => code = pair[1].parse().unwrap_or(1),
            _ => {}
        }
    }
    (secs, code)
}

impl wit::GuestChild for Child {
    fn subscribe(&self) -> Pollable {
        if self.killed_at.get().is_some() {
            monotonic_clock::subscribe_duration(0)
        } else {
            monotonic_clock::subscribe_instant(self.deadline)
        }
    }

    fn try_wait(&self) -> Option<ExitStatus> {
        if self.killed_at.get().is_some() {
            Some(ExitStatus::Signal(15))
        } else if monotonic_clock::now() >= self.deadline {
            Some(ExitStatus::Code(self.code))
        } else {
            None
        }
    }

    fn ran_ms(&self) -> Option<u64> {
        self.try_wait()?;
        let end = self.killed_at.get().unwrap_or(self.deadline);
        Some((end - self.start) / 1_000_000)
    }

    fn kill(&self) {
        if self.try_wait().is_none() {
            self.killed_at.set(Some(monotonic_clock::now()));
        }
    }

    fn pid(&self) -> u32 {
        self.pid
    }

    fn peak_memory(&self) -> Option<u64> {
        None
    }

    fn oom_killed(&self) -> bool {
        false
    }

    fn ran_on(&self) -> Option<String> {
        None
    }

    fn remote_cached(&self) -> bool {
        false
    }
}

impl wit::Guest for Provider {
    type Child = Child;

    fn spawn(cmd: Command) -> Result<wit::Child, SpawnError> {
        let text = text_of(&cmd);
        let (secs, code) = simulate(&text);
        let dir = |p: &str| std::path::Path::new(p).parent().map(|d| d.to_path_buf());
        if !cmd.cwd.is_empty() {
            std::fs::create_dir_all(&cmd.cwd)
                .map_err(|e| SpawnError::InvalidPath(format!("cwd \"{}\": {e}", cmd.cwd)))?;
        }
        let log = format!("simulated: {text}\nsimulated: {secs} s, exit code {code}\n");
        let written = dir(&cmd.log)
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| wfile::open(std::path::Path::new(&cmd.log), wfile::How::Truncate))
            .and_then(|mut f| std::io::Write::write_all(&mut f, log.as_bytes()));
        if let Err(e) = written {
            // A runtime that cannot write it costs the log, not the task.
            eprintln!("runqueue: warning: log \"{}\" not written: {e}", cmd.log);
        }
        let start = monotonic_clock::now();
        Ok(wit::Child::new(Child {
            pid: NEXT_PID.fetch_add(1, Ordering::Relaxed),
            start,
            deadline: start.saturating_add((secs * 1e9) as u64),
            code,
            killed_at: Cell::new(None),
        }))
    }

    fn interrupt() -> Pollable {
        // Nothing interrupts a simulation: a timer that never fires in a
        // build's time. (Twenty days, not u64::MAX: JavaScript runtimes turn
        // a timer past 2^31 ms into one of 1 ms.)
        monotonic_clock::subscribe_duration(20 * 24 * 3600 * 1_000_000_000)
    }

    fn parallelism() -> u32 {
        SLOTS
    }

    // Simulated tasks share no job slots and use no memory.
    fn take_slots(_n: u32) -> bool {
        true
    }

    fn give_slots(_n: u32) {}

    fn slots_freed() -> Pollable {
        Self::interrupt()
    }

    fn memory_available() -> u64 {
        u64::MAX
    }

    fn memory_stall_us() -> Option<u64> {
        None
    }

    fn file_mode(path: String) -> Result<u32, String> {
        // WASI cannot see permission bits: files are plain, directories
        // searchable.
        std::fs::symlink_metadata(&path)
            .map(|m| if m.is_dir() { 0o755 } else { 0o644 })
            .map_err(|e| format!("{path}: {e}"))
    }

    fn set_file_mode(_path: String, _mode: u32) -> Result<(), String> {
        Ok(())
    }
}

/// A files job, finished when made.
pub struct Job(std::cell::RefCell<Option<Result<Vec<files::Blob>, String>>>);

impl files::GuestJob for Job {
    fn subscribe(&self) -> Pollable {
        monotonic_clock::subscribe_duration(0)
    }

    fn finish(&self) -> Option<Result<Vec<files::Blob>, String>> {
        self.0.borrow_mut().take()
    }
}

fn job(outcome: Result<Vec<blobs::Blob>, String>) -> files::Job {
    let to_wit = |b: blobs::Blob| files::Blob {
        hash: b.hash,
        size: b.size,
    };
    let outcome = outcome.map(|v| v.into_iter().map(to_wit).collect());
    files::Job::new(Job(std::cell::RefCell::new(Some(outcome))))
}

fn blob(b: &files::Blob) -> blobs::Blob {
    blobs::Blob {
        hash: b.hash.clone(),
        size: b.size,
    }
}

impl files::Guest for Provider {
    type Job = Job;

    fn hash(paths: Vec<String>) -> files::Job {
        job(paths.iter().map(|p| blobs::hash(p.as_ref())).collect())
    }

    fn store(cache: String, paths: Vec<String>) -> files::Job {
        let cache = std::path::Path::new(&cache);
        job(paths
            .iter()
            .map(|p| blobs::store(cache, p.as_ref()))
            .collect())
    }

    fn put(cache: String, list: Vec<(String, Vec<u8>)>) -> files::Job {
        let cache = std::path::Path::new(&cache);
        let done = list
            .iter()
            .try_for_each(|(rel, bytes)| blobs::put(cache, rel, bytes));
        job(done.map(|()| Vec::new()))
    }

    fn restore(cache: String, list: Vec<files::RestoreFile>) -> files::Job {
        // WASI cannot set permission bits: files keep the default.
        let keep = |_: &std::path::Path, _: u32| Ok(());
        let blobs: Vec<blobs::Blob> = list.iter().map(|f| blob(&f.blob)).collect();
        let files: Vec<_> = list
            .iter()
            .zip(&blobs)
            .map(|(f, b)| (f.path.as_str(), b, f.mode))
            .collect();
        let cache = std::path::Path::new(&cache);
        let done = blobs::restore_all(cache, &files, &|p| p.into(), &keep);
        job(done.map(|()| Vec::new()))
    }
}

fn secs(ms: u64) -> String {
    format!("{:.2}s", ms as f64 / 1000.0)
}

impl progress::Guest for Provider {
    fn report(ev: Event) {
        match ev {
            Event::Planned(_) => {}
            Event::Started(st) => say!(
                "[{:>8}] started  {} (pid {}, {} running)",
                secs(st.at_ms),
                st.id,
                st.pid,
                st.running
            ),
            Event::Finished(t) => {
                let at = secs(t.end_ms.unwrap_or(0));
                let took = secs(
                    t.end_ms
                        .unwrap_or(0)
                        .saturating_sub(t.start_ms.unwrap_or(0)),
                );
                match t.state {
                    TaskState::Succeeded => say!("[{at:>8}] done     {} in {took}", t.id),
                    TaskState::Failed => say!(
                        "[{at:>8}] FAILED   {}: {}",
                        t.id,
                        t.message.as_deref().unwrap_or("failed")
                    ),
                    TaskState::Cached if t.restored => {
                        say!("[{at:>8}] restored {} from the cache", t.id)
                    }
                    TaskState::Cached | TaskState::NotRun => {}
                }
            }
            Event::Warning(w) => eprintln!("runqueue: warning: {w}"),
            Event::Held(_) => {}
        }
    }
}
