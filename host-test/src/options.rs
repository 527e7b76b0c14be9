//! What a caller asks of the component, and its answers in the guest
//! crate's plain types: the options of a run (which go to the component),
//! the host's controls (which stay here), and conversions between the WIT
//! types and `runqueue::api`'s.
//!
//! Knows the bindings' types; knows nothing of processes or stores.

use std::path::PathBuf;

use crate::runner;
use crate::{process, RemoteCache, RunError, Scheduler, Simulation, Summary};

/// How to run a graph: what goes to the component.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The most tasks at once; `None` is the host's CPU count.
    pub max_parallel: Option<u32>,
    /// Run everything that does not depend on a failure.
    pub keep_going: bool,
    /// The artifact cache directory: relative paths are inside the
    /// workspace; `None` caches nothing.
    pub cache: Option<PathBuf>,
    /// How ready tasks are ordered.
    pub scheduler: Scheduler,
    /// Where logs go, relative to the workspace; `None` is `.runqueue/logs`.
    pub log_dir: Option<String>,
    /// Stop tasks that run longer (unless the graph gives their own
    /// `timeout`).
    pub timeout: Option<std::time::Duration>,
    /// A cache shared across machines; needs `cache` and the
    /// `runqueue-remote.wasm` build of the component.
    pub remote_cache: Option<RemoteCache>,
    /// A secret key file's text: entries this run writes are signed.
    pub signing_key: Option<String>,
    /// Public key files' texts: only entries signed by one are used.
    pub trusted_keys: Vec<String>,
    /// No early cutoff: dependents' signatures chain.
    pub no_cutoff: bool,
    /// Build twice (the second time in `.runqueue/repro`) and fail the
    /// tasks that are not reproducible.
    pub check_reproducible: bool,
    /// Bytes the running tasks may use between them by their recorded
    /// peaks; `None`: 90 % of what is available; `Some(0)`: no limit.
    pub memory_limit: Option<u64>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            max_parallel: None,
            keep_going: false,
            cache: None,
            scheduler: Scheduler::CriticalPath,
            log_dir: None,
            timeout: None,
            remote_cache: None,
            signing_key: None,
            trusted_keys: Vec::new(),
            no_cutoff: false,
            check_reproducible: false,
            memory_limit: None,
        }
    }
}

/// How the host oversees a run's processes: what stays on this side and
/// never reaches the component. The default oversees nothing.
#[derive(Debug, Clone, Default)]
pub struct Controls {
    /// Interrupt requests so far (Ctrl-C): at 1 the build starts nothing
    /// new and waits for running tasks; at 2 the host kills them.
    pub interrupts: Option<tokio::sync::watch::Receiver<u32>>,
    /// A program that, run with the argument `watchdog`, does what
    /// [`process::run_watchdog`] does (the `runqueue` binary does): it kills
    /// the run's task process groups if this host dies.
    pub watchdog: Option<PathBuf>,
    /// With `Some`, the only programs tasks may start, as the graph names
    /// them (`make`, `/usr/bin/make`); the shell `sh` is always allowed.
    pub allowed_programs: Option<Vec<String>>,
    /// Records when each task process last printed, for a stall warning
    /// (see [`console::Console::watch_stalls`]).
    pub activity: Option<process::Activity>,
    /// Whether to share job slots with the tasks' nested builds through a
    /// GNU make jobserver (served, or joined from `MAKEFLAGS`).
    pub jobserver: process::JobserverMode,
    /// With `Some`, commands run on this remote execution service instead
    /// of as local processes.
    pub executor: Option<std::sync::Arc<crate::remote_run::Executor>>,
    /// With `Some((pool, build))`, task slots also come from this pool,
    /// which the builds of one process share fairly (`runqueue serve`);
    /// `build` is this run's number in it.
    pub shared_slots: Option<(std::sync::Arc<process::SharedSlots>, u64)>,
    /// Where the kernel gives no network namespaces: run the tasks that
    /// did not ask for the network with it anyway (warned once), or fail
    /// them (`--require-isolation`).
    pub isolation: process::Isolation,
}

/// The component's error as the plain-Rust one both command lines word.
pub fn from_wit_error(e: RunError) -> runqueue::api::Error {
    match e {
        RunError::InvalidGraph(m) => runqueue::api::Error::InvalidGraph(m),
        RunError::InvalidRequest(m) => runqueue::api::Error::InvalidRequest(m),
        RunError::Internal(m) => runqueue::api::Error::Internal(m),
    }
}

/// `check`'s answer as the plain-Rust one both command lines print.
pub fn from_wit_summary(s: Summary) -> runqueue::api::Summary {
    runqueue::api::Summary {
        tasks: s.tasks,
        edges: s.edges,
        roots: s.roots,
        finals: s.finals,
        longest_path: s.longest_path,
    }
}

/// `simulate`'s answer as the plain-Rust one both command lines print.
pub fn from_wit_simulation(s: Simulation) -> runqueue::api::Simulated {
    runqueue::api::Simulated {
        makespan_ms: s.makespan_ms,
        work_ms: s.work_ms,
        critical_path_ms: s.critical_path_ms,
        lower_bound_ms: s.lower_bound_ms,
        critical_path: s.critical_path,
        peak_parallel: s.peak_parallel,
        peak_memory: s.peak_memory,
    }
}

/// A scheduling policy as the component takes it.
pub fn to_wit_scheduler(p: runqueue::schedule::plan::Policy) -> Scheduler {
    use runqueue::schedule::plan::Policy;
    match p {
        Policy::CriticalPath => Scheduler::CriticalPath,
        Policy::Speed => Scheduler::Speed,
        Policy::Fifo => Scheduler::Fifo,
        Policy::Waves => Scheduler::Waves,
    }
}

/// The options as the component takes them; `cache_dir` is where it sees
/// the cache.
pub(crate) fn wit_options(options: &RunOptions, cache_dir: Option<String>) -> runner::Options {
    runner::Options {
        max_parallel: options.max_parallel,
        keep_going: options.keep_going,
        cache_dir,
        scheduler: options.scheduler,
        log_dir: options.log_dir.clone(),
        timeout_ms: options.timeout.map(runqueue::cli::millis),
        remote_cache: options.remote_cache.as_ref().map(|r| runner::RemoteCache {
            url: r.url.clone(),
            read_only: r.read_only,
            timeout_ms: runqueue::cli::millis(r.timeout).min(u32::MAX as u64) as u32,
            concurrency: r.concurrency.max(1),
        }),
        signing_key: options.signing_key.clone(),
        trusted_keys: options.trusted_keys.clone(),
        no_cutoff: options.no_cutoff,
        check_reproducible: options.check_reproducible,
        memory_limit: options.memory_limit,
    }
}
