//! What a run needs from its surroundings, one trait per concern:
//! processes with a clock and an interrupt ([`Processes`], [`Child`]),
//! someone to tell ([`Progress`]), Unix permission bits ([`FileModes`]),
//! and bulk data work off the loop ([`Files`]). The remote cache's seam is [`crate::remote::Remote`].
//!
//! The component implements them over its WIT imports; tests implement
//! them with fakes. Knows nothing of graphs or scheduling.

use std::future::Future;
use std::pin::Pin;

pub use crate::cache::blobs::Blob;
use crate::run::report::{ExitStatus, TaskRecord};

/// A boxed future on the component's one thread (not `Send`).
pub type LocalFuture<T> = Pin<Box<dyn Future<Output = T>>>;

/// A process to start, with every path relative to the workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub program: String,
    pub args: Vec<String>,
    pub cwd: String,
    pub env: Vec<(String, String)>,
    pub log: String,
    /// Stop it (with its process group) after this many ms.
    pub timeout_ms: Option<u64>,
    /// Its nested builds share the job slots (see [`Processes::take_slots`]).
    pub jobserver: bool,
    /// It may reach the network; otherwise the host gives it none.
    pub network: bool,
    /// What it reads and writes, for a host that runs it elsewhere: the
    /// task's inputs with its upstream tasks' outputs, and its outputs.
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    /// Properties a remote machine must have (the task's `platform`).
    pub platform: Vec<(String, String)>,
    /// A remote service may keep and reuse its result (not `nostamp`).
    pub cacheable: bool,
}

/// A started process.
pub trait Child {
    fn pid(&self) -> u32;
    /// Resolves once the process has exited. Drop it before the child
    /// (WASI requires a pollable to go before its resource).
    fn exited(&self) -> LocalFuture<()>;
    /// How it ended, once [`Child::exited`] resolved.
    fn status(&self) -> Option<ExitStatus>;
    /// How long it ran, stamped by whoever saw it exit, once
    /// [`Child::exited`] resolved; `None` if nobody stamped it (the run
    /// then counts until it noticed).
    fn ran_ms(&self) -> Option<u64>;
    /// Stops the process and its group: TERM now, KILL a little later.
    fn kill(&self);
    /// The most memory it held at once, in bytes, once it exited.
    fn peak_memory(&self) -> Option<u64> {
        None
    }
    /// Whether the kernel's out-of-memory killer ended it.
    fn oom_killed(&self) -> bool {
        false
    }
    /// Where it ran, once it exited: `None` here, else a remote worker.
    fn ran_on(&self) -> Option<String> {
        None
    }
    /// A remote service answered from its action cache.
    fn remote_cached(&self) -> bool {
        false
    }
}

/// Starting processes, telling time, and hearing the user ask to stop.
pub trait Processes {
    /// Starts `cmd`; an error is a spawn failure, in words.
    fn spawn(&mut self, cmd: &Command) -> Result<Box<dyn Child>, String>;
    /// Milliseconds on a monotonic clock.
    fn now_ms(&self) -> u64;
    /// Resolves `ms` milliseconds from now.
    fn sleep(&self, ms: u64) -> LocalFuture<()>;
    /// Resolves once the build is asked to stop (Ctrl-C); may never.
    fn interrupted(&mut self) -> LocalFuture<()>;
    /// How many processes can usefully run at once: the default limit.
    fn parallelism(&self) -> u32;
    /// Takes `n` slots of the job pool shared with nested builds, all or
    /// none; without a pool, always true.
    fn take_slots(&mut self, _n: u32) -> bool {
        true
    }
    /// Gives back slots taken with [`Processes::take_slots`].
    fn give_slots(&mut self, _n: u32) {}
    /// Resolves when slots may have come back since a take said no.
    fn slots_freed(&mut self) -> LocalFuture<()> {
        Box::pin(std::future::pending())
    }
    /// Bytes of memory the tasks may use between them, now.
    fn memory_available(&self) -> u64 {
        u64::MAX
    }
    /// Microseconds some process stalled on memory since boot, if known.
    fn memory_stall_us(&self) -> Option<u64> {
        None
    }
}

/// Something that happened during a run.
#[derive(Debug)]
pub enum Event<'a> {
    /// Before anything starts: the number of tasks and how many the cache
    /// covers.
    Planned {
        total: usize,
        cached: usize,
    },
    Started {
        task: &'a TaskRecord,
        running: usize,
    },
    Finished(&'a TaskRecord),
    /// Something went wrong that does not fail the build (a corrupt cache
    /// entry, a cache that cannot be written).
    Warning(&'a str),
    /// The next task to start waits for something other than a free
    /// slot ([`crate::schedule::plan::Hold`]'s name); told when that changes.
    Held {
        task: &'a str,
        why: &'a str,
    },
}

/// Told of each event as it happens; must not block.
pub trait Progress {
    fn event(&mut self, event: Event<'_>);
}

/// Unix permission bits, which WASI 0.2 cannot see: the host provides them.
pub trait FileModes {
    /// The mode of `rel` (workspace-relative), not following symlinks.
    fn mode(&self, rel: &str) -> Result<u32, String>;
    fn set_mode(&self, rel: &str, mode: u32) -> Result<(), String>;
}

/// A file to restore from the cache's blobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreFile {
    /// Workspace-relative.
    pub path: String,
    pub blob: Blob,
    pub mode: u32,
}

/// Bulk data work done away from the run loop (the host's threads, in the
/// component), awaited like a process so that the loop never stops
/// noticing exits. `cache` is the cache directory as this code sees it.
pub trait Files {
    /// The sha256 and size of each workspace file, in order.
    fn hash(&self, paths: Vec<String>) -> LocalFuture<Result<Vec<Blob>, String>>;
    /// Copies each workspace file into the cache's blobs; their blobs.
    fn store(&self, cache: &str, paths: Vec<String>) -> LocalFuture<Result<Vec<Blob>, String>>;
    /// Puts each file's blob at its path, verified, complete or not at all.
    fn restore(&self, cache: &str, files: Vec<RestoreFile>) -> LocalFuture<Result<(), String>>;
    /// Writes small files (path relative to the cache, bytes) into the
    /// cache, each complete or not at all.
    fn put(&self, cache: &str, files: Vec<(String, Vec<u8>)>) -> LocalFuture<Result<(), String>>;
}
