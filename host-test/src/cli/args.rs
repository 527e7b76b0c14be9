//! The `runqueue` command's arguments (clap): the subcommands, the option
//! groups they share (keys, trust, what a build shows, where it happens,
//! remote execution) and how each group turns into what the host takes.
//!
//! Knows options and their defaults; knows nothing of running them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use runqueue::cli::{
    parse_scheduler, parse_seconds, parse_seconds_or_off, read_text, DEFAULT_CACHE,
    DEFAULT_LOG_DIR, DEFAULT_REMOTE_TIMEOUT, DEFAULT_SIMULATE_JOBS,
};
use runqueue::schedule::plan::Policy;

use super::failure::{bad_input, Failure};
use crate::remote_run::Executor;

/// `--scheduler`: the names [`Policy`] gives, listed in `--help`.
pub(super) fn scheduler_parser() -> impl clap::builder::TypedValueParser<Value = Policy> {
    use clap::builder::TypedValueParser;
    let names = Policy::ALL.map(Policy::name);
    clap::builder::PossibleValuesParser::new(names)
        .map(|name: String| parse_scheduler(&name).expect("one of the possible values"))
}

#[derive(Parser, Debug)]
#[command(
    name = "runqueue",
    version,
    about = "Run BitBake-style task graphs in parallel, in a WASI component"
)]
pub(super) struct Cli {
    /// The runqueue component (.wasm). Default: $RUNQUEUE_COMPONENT, then
    /// runqueue.wasm next to this program, then the cargo build output.
    #[arg(long, global = true, value_name = "FILE")]
    pub(super) component: Option<PathBuf>,
    /// The most memory the component may use, in MiB.
    #[arg(long, global = true, value_name = "MIB", default_value_t = (crate::DEFAULT_MEMORY_LIMIT >> 20) as u64,
          value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub(super) max_memory: u64,
    #[command(subcommand)]
    pub(super) request: Request,
}

// Parsed once per process: the size of the build variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub(super) enum Request {
    /// Run every task of the graph, dependencies first, in parallel.
    Build {
        /// The graph file (JSON, format version 1).
        graph: PathBuf,
        /// Run at most N tasks at once (default: the number of CPUs).
        #[arg(short = 'j', long = "jobs", value_name = "N", value_parser = clap::value_parser!(u32).range(1..=4096))]
        jobs: Option<u32>,
        /// Keep going after a failure: run everything that does not depend
        /// on a failed task.
        #[arg(short = 'k', long)]
        keep_going: bool,
        /// How ready tasks are ordered when slots are scarce.
        #[arg(long, default_value = "critical-path", value_parser = scheduler_parser())]
        scheduler: Policy,
        /// Stop a task (SIGTERM to its process group, SIGKILL 2 s later)
        /// that runs longer than SECS, unless the graph gives it a timeout.
        #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
        timeout: Option<Duration>,
        /// Warn when a running task has printed nothing for SECS (and again
        /// after each further SECS); 0 turns the warning off.
        #[arg(long, value_name = "SECS", default_value = "600", value_parser = parse_seconds_or_off)]
        stall_warning: Duration,
        /// Allow tasks to start only these programs (repeatable), as the
        /// graph names them; `sh` (which runs every `run` task) stays
        /// allowed, so this restricts `argv` tasks.
        #[arg(long = "allow-program", value_name = "PROGRAM")]
        allow_program: Vec<String>,
        /// A cache shared across machines over HTTP, in bazel-remote's
        /// layout ({URL}/cas/{sha256}, {URL}/ac/{signature}): read through
        /// before the build, written through after it. Uses
        /// runqueue-remote.wasm.
        #[arg(long, value_name = "URL", env = "RUNQUEUE_REMOTE_CACHE")]
        remote_cache: Option<String>,
        /// Only read from the remote cache, never upload (an sstate mirror).
        #[arg(long, requires = "remote_cache")]
        remote_cache_read_only: bool,
        /// How long one remote cache request may take.
        #[arg(long, value_name = "SECS", default_value = DEFAULT_REMOTE_TIMEOUT, value_parser = parse_seconds)]
        remote_cache_timeout: Duration,
        /// No early cutoff: a task that reruns makes its dependents rerun
        /// even when its outputs come out identical.
        #[arg(long)]
        no_cutoff: bool,
        /// Build twice without the cache, the second time in
        /// .runqueue/repro with only the declared inputs, and fail the
        /// tasks whose outputs differ (or that fail there).
        #[arg(long)]
        check_reproducible: bool,
        /// Memory the running tasks may use between them, by the peaks
        /// their earlier runs reached (512M, 4G; `none` turns it off).
        /// Default: 90 % of what is available (MemAvailable, or the
        /// cgroup's limit).
        #[arg(long, value_name = "SIZE", value_parser = runqueue::cli::parse_size)]
        memory_limit: Option<u64>,
        /// After the build, collect the cache down to SIZE as `runqueue
        /// cache gc` does (skipped while another collection runs).
        #[arg(long, value_name = "SIZE", value_parser = parse_cache_size, conflicts_with = "no_cache")]
        cache_max_size: Option<u64>,
        /// Do not share job slots with the tasks' nested builds: no GNU
        /// make jobserver is served or joined, tasks get no MAKEFLAGS.
        #[arg(long)]
        no_jobserver: bool,
        /// Fail the tasks that did not ask for the network (`"network":
        /// true`) when the kernel gives no network namespace to run them
        /// without it, instead of warning and running them with it.
        #[arg(long)]
        require_isolation: bool,
        /// When another build holds the workspace, exit 2 at once instead
        /// of waiting for it to finish.
        #[arg(long)]
        no_wait: bool,
        #[command(flatten)]
        keys: Keys,
        #[command(flatten)]
        place: Place,
        #[command(flatten)]
        show: Show,
        #[command(flatten)]
        remote_exec: RemoteExec,
    },
    /// Validate the graph and describe it; runs nothing.
    Check {
        /// The graph file (JSON, format version 1).
        graph: PathBuf,
    },
    /// Say why a task is or is not covered by the cache: what differs from
    /// its last recorded run. Runs nothing.
    Explain {
        /// The graph file (JSON, format version 1).
        graph: PathBuf,
        /// The task id.
        task: String,
        #[command(flatten)]
        trust: Trust,
        #[command(flatten)]
        place: Place,
    },
    /// What `build` would do, without doing it: every task in the order one
    /// slot would start them, marked `run` or `cached`. Runs nothing.
    Plan {
        /// The graph file (JSON, format version 1).
        graph: PathBuf,
        #[command(flatten)]
        trust: Trust,
        #[command(flatten)]
        place: Place,
    },
    /// Run the real scheduler against a virtual clock: how long would this
    /// graph take with N slots? Runs nothing.
    Simulate {
        /// The graph file (JSON, format version 1).
        graph: PathBuf,
        /// Virtual slots.
        #[arg(short = 'j', long = "jobs", value_name = "N", default_value_t = DEFAULT_SIMULATE_JOBS, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        jobs: u32,
        /// Task durations: TSV lines `recipe<TAB>task<TAB>seconds`. Tasks not
        /// in it use the cache's recorded durations, then the median of their
        /// task name, then the median of all known, then equal weights.
        #[arg(long, value_name = "FILE")]
        durations: Option<PathBuf>,
        #[arg(long, default_value = "critical-path", value_parser = scheduler_parser())]
        scheduler: Policy,
        /// Start a task only when the peaks the cache recorded (by task,
        /// else the median of its task name) fit within SIZE together.
        #[arg(long, value_name = "SIZE", value_parser = runqueue::cli::parse_size)]
        memory_limit: Option<u64>,
        #[command(flatten)]
        place: Place,
    },
    /// Make an Ed25519 key pair for signing cache entries: the secret key
    /// (for --cache-signing-key, kept by whoever may write the cache, e.g.
    /// CI) and the public key (for --cache-trust, given to readers).
    Keygen {
        /// A name for the key, recorded in every entry it signs.
        name: String,
        /// Where to write the secret key (created, mode 0600; never
        /// overwritten).
        secret: PathBuf,
        /// Where to write the public key (created; never overwritten).
        public: PathBuf,
    },
    /// Look after a cache directory.
    #[command(subcommand)]
    Cache(CacheRequest),
    /// (internal) Kill the process groups listed on stdin when it closes.
    #[command(hide = true)]
    Watchdog,
    /// Convert `bitbake -g` output (task-depends.dot, or `A B` edge lines)
    /// into graph JSON, written to stdout or -o.
    ImportDot {
        /// The .dot or edge-list file.
        file: PathBuf,
        /// Shell text for every task; `{id}`, `{recipe}`, `{task}` and
        /// `{seconds}` are replaced. Without it tasks have nothing to run.
        #[arg(long, value_name = "TEMPLATE")]
        run: Option<String>,
        /// Durations for `{seconds}` (TSV, as for simulate).
        #[arg(long, value_name = "FILE")]
        durations: Option<PathBuf>,
        /// Multiply `{seconds}` by this (0.01: a hundred times faster).
        #[arg(long, default_value_t = 1.0)]
        scale: f64,
        /// Write the graph here instead of stdout.
        #[arg(short = 'o', long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Serve a REAPI server's build farm as a worker (a Remote Workers API
    /// bot): take its leases, run the actions here, upload the results.
    Worker(crate::worker::Args),
    /// Serve builds over HTTP: a JSON API, a live web page, every build
    /// recorded; builds share this machine's task slots.
    Serve(crate::serve::Args),
}

/// `runqueue cache …`.
#[derive(Subcommand, Debug)]
pub(super) enum CacheRequest {
    /// Remove the least recently used entries, and the blobs only they
    /// name, until the cache fits SIZE; safe while builds use the cache.
    Gc {
        /// The cache directory.
        #[arg(long, value_name = "DIR")]
        cache: PathBuf,
        #[command(flatten)]
        bounds: GcBounds,
    },
    /// What the cache holds, and how much of the recent builds it covered.
    Stats {
        /// The cache directory.
        #[arg(long, value_name = "DIR")]
        cache: PathBuf,
    },
    /// Rehash every blob; drop and report those whose bytes do not match
    /// their name (their entries are then misses, repaired by the next
    /// build that runs the task).
    Verify {
        /// The cache directory.
        #[arg(long, value_name = "DIR")]
        cache: PathBuf,
    },
}

/// How far a collection cuts a cache down.
#[derive(clap::Args, Debug, Clone, Copy)]
pub(super) struct GcBounds {
    /// What entries, blobs and records may hold between them (512M, 20G).
    #[arg(long, value_name = "SIZE", value_parser = parse_cache_size)]
    pub(super) max_size: u64,
    #[command(flatten)]
    pub(super) ages: GcAges,
}

/// How old what a collection takes is.
#[derive(clap::Args, Debug, Clone, Copy)]
pub(super) struct GcAges {
    /// Also remove every entry no build has used for DAYS, whatever the
    /// size.
    #[arg(long, value_name = "DAYS", value_parser = parse_days)]
    pub(super) max_age: Option<u64>,
    /// Never remove what was used or written in the last SECS: a running
    /// build tells the cache every 600 s what it still holds, so keep this
    /// above that when builds may be running.
    #[arg(long, value_name = "SECS", default_value_t = super::cache::DEFAULT_GRACE_SECS)]
    pub(super) grace: u64,
}

impl GcBounds {
    /// The limits of a collection.
    pub(super) fn limits(&self) -> super::cache::Limits {
        super::cache::Limits {
            max_bytes: self.max_size,
            max_age_secs: self.ages.max_age,
            grace_secs: self.ages.grace,
        }
    }
}

/// A cache size: as `--memory-limit` takes it, but never `none`.
fn parse_cache_size(s: &str) -> Result<u64, String> {
    match s.trim() {
        "none" => Err("a cache size is a number of bytes (like 512M or 20G), not none".into()),
        _ => runqueue::cli::parse_size(s),
    }
}

/// Days, as seconds.
fn parse_days(s: &str) -> Result<u64, String> {
    match s.trim().parse::<f64>() {
        Ok(d) if (0.0..1e9).contains(&d) => Ok((d * 86400.0) as u64),
        _ => Err(format!("{s:?} is not a number of days")),
    }
}

/// Signing and trusting cache entries.
#[derive(clap::Args, Debug)]
pub(super) struct Keys {
    /// Sign every cache entry this build writes with this secret key
    /// (from `runqueue keygen`).
    #[arg(long, value_name = "FILE")]
    pub(super) cache_signing_key: Option<PathBuf>,
    #[command(flatten)]
    pub(super) trust: Trust,
}

/// Trusting cache entries.
#[derive(clap::Args, Debug)]
pub(super) struct Trust {
    /// Use only cache entries signed by this public key (repeatable; any
    /// of them), local and remote alike; others are misses.
    #[arg(long, value_name = "FILE")]
    pub(super) cache_trust: Vec<PathBuf>,
}

impl Keys {
    /// The key files' texts: (signing key, trusted keys).
    pub(super) fn texts(&self) -> Result<(Option<String>, Vec<String>), Failure> {
        let read = |p: &PathBuf| read_text(p).map_err(bad_input);
        let signing = self.cache_signing_key.as_ref().map(read).transpose()?;
        Ok((signing, self.trust.texts()?))
    }
}

impl Trust {
    /// The trusted key files' texts.
    pub(super) fn texts(&self) -> Result<Vec<String>, Failure> {
        let read = |p: &PathBuf| read_text(p).map_err(bad_input);
        self.cache_trust.iter().map(read).collect()
    }
}

/// What a build shows and leaves behind.
#[derive(clap::Args, Debug)]
pub(super) struct Show {
    /// Print only failures and the summary.
    #[arg(short, long, conflicts_with = "verbose")]
    pub(super) quiet: bool,
    /// Also print cached and not-run tasks as they are decided.
    #[arg(short, long)]
    pub(super) verbose: bool,
    /// Where task logs and run scripts go, relative to the workspace.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_LOG_DIR)]
    pub(super) logs: String,
    /// How many last lines of a failed task's log to print.
    #[arg(long, value_name = "N", default_value_t = 25)]
    pub(super) tail: usize,
    /// Write the run as JSON (every task and the totals) to FILE.
    #[arg(long, value_name = "FILE")]
    pub(super) report: Option<PathBuf>,
    /// Write a Chrome trace-event file (Perfetto, chrome://tracing) to FILE.
    #[arg(long, value_name = "FILE")]
    pub(super) trace: Option<PathBuf>,
    /// Write an SVG timeline (one row per slot) to FILE.
    #[arg(long, value_name = "FILE")]
    pub(super) chart: Option<PathBuf>,
}

/// Where a build happens.
#[derive(clap::Args, Debug)]
pub(super) struct Place {
    /// The workspace: task directories and logs live here (default: the
    /// current directory).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub(super) workspace: PathBuf,
    /// The artifact cache directory; a relative path is inside the workspace.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_CACHE)]
    pub(super) cache: PathBuf,
    /// Run every task and cache nothing.
    #[arg(long, conflicts_with = "cache")]
    pub(super) no_cache: bool,
}

impl Place {
    /// The cache directory, unless `--no-cache`.
    pub(super) fn cache(&self) -> Option<PathBuf> {
        (!self.no_cache).then(|| self.cache.clone())
    }
}

/// Where tasks run when not here.
#[derive(clap::Args, Debug)]
pub(super) struct RemoteExec {
    /// Run every task on this remote execution service (REAPI v2:
    /// BuildGrid, Buildbarn, NativeLink, …) instead of as local processes;
    /// -j then counts remote slots (default 16).
    #[arg(long, value_name = "grpc://HOST:PORT", env = "RUNQUEUE_EXECUTOR")]
    pub(super) executor: Option<String>,
    /// The service's instance name.
    #[arg(long, value_name = "NAME", default_value = "", requires = "executor")]
    pub(super) instance: String,
}

/// Remote slots when `--executor` comes without -j: enough to keep a few
/// workers busy while runqueue, not the service's queue, decides what
/// runs next (critical path first).
pub const REMOTE_JOBS: u32 = 16;

impl RemoteExec {
    /// The executor, once it has answered; a malformed URL or a service
    /// that does not answer (or cannot execute) is bad input: exit 2.
    pub(super) async fn open(&self) -> Result<Option<Arc<Executor>>, Failure> {
        let Some(url) = &self.executor else {
            return Ok(None);
        };
        let exec = Executor::new(url, &self.instance)
            .map_err(|e| bad_input(format!("--executor: {e}")))?;
        exec.check()
            .await
            .map_err(|e| bad_input(format!("--executor: {e}")))?;
        Ok(Some(Arc::new(exec)))
    }
}
