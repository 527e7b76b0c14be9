//! runqueue as a plain-Rust API: check, plan, explain, simulate, import and
//! run a graph given as JSON text, on plain types, with one typed error.
//! The component's WIT export and its `wasi:cli/run` both call this; native
//! tests call it directly.
//!
//! Knows requests, defaults and which error each problem is; knows nothing
//! of WIT. Processes, progress, file modes and the remote reach it through
//! [`Host`].

use std::collections::BTreeMap;
use std::path::Path;

use crate::cache::reuse::{self, Fate, Notes};
use crate::cache::signature::signatures_in;
use crate::cache::signing::{Signer, Trust};
use crate::cache::Cache;
use crate::graph::confine;
use crate::graph::import;
use crate::graph::{Graph, TaskId, TaskMap};
use crate::remote::Remote;
use crate::run::report::Report;
use crate::run::reproducible;
use crate::run::{self, Config, Seams};
use crate::schedule::estimate::{expected_durations, recorded_durations};
use crate::schedule::plan::{longest_chain, remaining_path, Policy};
use crate::schedule::simulate::{durations_for, parse_durations};
use crate::seams::{FileModes, Files, Processes, Progress};

/// Why a request was not carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The graph is not valid (or a path in it leads out of the workspace,
    /// or an input is missing); the text names the ids or fields.
    InvalidGraph(String),
    /// Input other than the graph is not valid: an option, a task id that
    /// is not in the graph, a durations text.
    InvalidRequest(String),
    /// The run itself broke.
    Internal(String),
}

/// What `check` found out about a valid graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub tasks: u32,
    pub edges: u32,
    /// Tasks with no dependencies.
    pub roots: u32,
    /// Tasks nothing depends on.
    pub finals: u32,
    /// The longest dependency chain, first task's id first.
    pub longest_path: Vec<String>,
}

/// How to run a graph (the WIT `options`, in plain Rust).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The most tasks at once; `None` asks [`Processes::parallelism`].
    pub max_parallel: Option<u32>,
    pub keep_going: bool,
    /// The cache directory as the component sees it; `None` caches nothing.
    pub cache_dir: Option<String>,
    pub policy: Policy,
    /// Relative to the workspace; `None` is [`confine::DEFAULT_LOG_DIR`].
    pub log_dir: Option<String>,
    /// The timeout of tasks whose graph entry sets none.
    pub timeout_ms: Option<u64>,
    pub remote: Option<RemoteSettings>,
    /// A secret key file's text: every entry this run writes is signed.
    pub signing_key: Option<String>,
    /// Public key files' texts: only entries signed by one are used.
    pub trusted_keys: Vec<String>,
    /// Every dependent's signature chains (no early cutoff).
    pub no_cutoff: bool,
    /// Build twice, the second time in another directory, and fail what
    /// is not reproducible ([`crate::run::reproducible`]).
    pub check_reproducible: bool,
    /// Bytes the running tasks may use between them; `None` asks the
    /// host, `Some(0)` turns memory-aware starts off.
    pub memory_limit: Option<u64>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            max_parallel: None,
            keep_going: false,
            cache_dir: None,
            policy: Policy::CriticalPath,
            log_dir: None,
            timeout_ms: None,
            remote: None,
            signing_key: None,
            trusted_keys: Vec::new(),
            no_cutoff: false,
            check_reproducible: false,
            memory_limit: None,
        }
    }
}

/// A cache shared across machines over HTTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteSettings {
    pub url: String,
    pub read_only: bool,
    /// How long one request may take.
    pub timeout_ms: u32,
    /// Requests in flight at once.
    pub concurrency: u32,
}

/// How to simulate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimulateOptions {
    pub max_parallel: u32,
    pub policy: Policy,
    /// Durations TSV text (`recipe<TAB>task<TAB>seconds`).
    pub durations: Option<String>,
    /// The cache whose history supplies recorded durations.
    pub cache_dir: Option<String>,
    /// Bytes the running tasks' recorded peaks may add up to.
    pub memory_limit: Option<u64>,
}

/// What a simulated build took (see [`crate::schedule::simulate::Simulation`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Simulated {
    pub makespan_ms: u64,
    pub work_ms: u64,
    pub critical_path_ms: u64,
    pub lower_bound_ms: u64,
    /// Ids along the longest chain by duration, first task first.
    pub critical_path: Vec<String>,
    pub peak_parallel: u32,
    /// The most the running tasks' recorded peaks added up to.
    pub peak_memory: u64,
}

/// How to import a BitBake graph.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportRequest {
    pub run_template: Option<String>,
    /// Durations TSV text for `{seconds}`.
    pub durations: Option<String>,
    pub scale: f64,
}

/// Makes the client of a remote cache; `Err` says why this build cannot
/// (no HTTP in it, a URL it cannot use).
pub type Connect = dyn Fn(&RemoteSettings) -> Result<Box<dyn Remote>, String>;

/// What a run reaches outside itself.
pub struct Host<'a> {
    /// The workspace as this code sees it (`.` in the component).
    pub workspace: &'a Path,
    /// The environment every task starts from (PATH, HOME).
    pub base_env: BTreeMap<String, String>,
    /// Unique to this run (nostamp signatures).
    pub run_nonce: String,
    pub processes: &'a mut dyn Processes,
    pub progress: &'a mut dyn Progress,
    pub modes: &'a dyn FileModes,
    pub files: &'a dyn Files,
    pub connect: &'a Connect,
}

fn parse(text: &str) -> Result<Graph, Error> {
    let graph = Graph::parse(text).map_err(|e| Error::InvalidGraph(e.to_string()))?;
    crate::graph::lognames::check(&graph).map_err(Error::InvalidGraph)?;
    Ok(graph)
}

/// Validates `graph` without running anything.
pub fn check(graph: &str) -> Result<Summary, Error> {
    let graph = parse(graph)?;
    let path = remaining_path(&graph, |_| 1);
    Ok(Summary {
        tasks: graph.len() as u32,
        edges: graph.edge_count() as u32,
        roots: graph.tasks.iter().filter(|t| t.deps.is_empty()).count() as u32,
        finals: graph.dependents.iter().filter(|d| d.is_empty()).count() as u32,
        longest_path: ids(&graph, longest_chain(&graph, &path)),
    })
}

fn ids(graph: &Graph, chain: Vec<TaskId>) -> Vec<String> {
    chain
        .into_iter()
        .map(|id| graph.task(id).id.clone())
        .collect()
}

/// Validates and runs `graph`. Task failures are in the report.
pub async fn run(graph: &str, options: &Options, host: Host<'_>) -> Result<Report, Error> {
    let graph = parse(graph)?;
    let log_dir = confine::log_dir(host.workspace, options.log_dir.as_deref())
        .map_err(Error::InvalidRequest)?;
    confine::check_kept_apart(&graph, &log_dir, "log directory").map_err(Error::InvalidGraph)?;
    if let Some(dir) = &options.cache_dir {
        confine::check_kept_apart(&graph, dir, "cache").map_err(Error::InvalidGraph)?;
    }
    let remote = connect_remote(options, host.connect)?;
    let config = Config {
        max_parallel: options
            .max_parallel
            .unwrap_or_else(|| host.processes.parallelism())
            .max(1) as usize,
        keep_going: options.keep_going,
        base_env: host.base_env,
        log_dir,
        workspace: host.workspace.to_path_buf(),
        cache: cache_of(options)?,
        run_nonce: host.run_nonce,
        policy: options.policy,
        default_timeout_ms: options.timeout_ms,
        remote_concurrency: options.remote.as_ref().map_or(1, |r| r.concurrency.max(1)) as usize,
        remote_read_only: options.remote.as_ref().is_some_and(|r| r.read_only),
        cutoff: !options.no_cutoff,
        memory_limit: match options.memory_limit {
            Some(0) => None,
            Some(bytes) => Some(bytes),
            None => Some(host.processes.memory_available() / 10 * 9),
        },
    };
    let seams = Seams {
        processes: host.processes,
        progress: host.progress,
        modes: host.modes,
        files: host.files,
        remote: remote.as_deref(),
    };
    let report = match options.check_reproducible {
        true => reproducible::check(&graph, &config, seams).await,
        false => run::run(&graph, &config, seams).await,
    };
    report.map_err(Error::InvalidGraph)
}

/// A cache to look into (plan, explain), using only entries signed by one
/// of `trusted_keys` if any are given, as a build given them would.
fn reading_cache(dir: Option<&str>, trusted_keys: &[String]) -> Result<Option<Cache>, Error> {
    let trust = trust_of(trusted_keys)?;
    Ok(dir.map(|d| Cache::new(d).with_keys(None, trust)))
}

/// Public key files' texts as trust, or bad input saying why.
fn trust_of(trusted_keys: &[String]) -> Result<Trust, Error> {
    Trust::parse(trusted_keys).map_err(|e| Error::InvalidRequest(format!("trusted key: {e}")))
}

/// The cache the options ask for, with its keys; `Err` for keys that are
/// not keys, or keys with no cache.
fn cache_of(options: &Options) -> Result<Option<Cache>, Error> {
    let keys = options.signing_key.is_some() || !options.trusted_keys.is_empty();
    let Some(dir) = &options.cache_dir else {
        return match keys {
            true => Err(Error::InvalidRequest(
                "cache signing and trusted keys need a cache (drop --no-cache)".into(),
            )),
            false => Ok(None),
        };
    };
    let signer = options
        .signing_key
        .as_deref()
        .map(Signer::parse)
        .transpose();
    let signer = signer.map_err(|e| Error::InvalidRequest(format!("signing key: {e}")))?;
    Ok(Some(
        Cache::new(dir).with_keys(signer, trust_of(&options.trusted_keys)?),
    ))
}

/// The remote cache the options ask for; it needs a local cache to read
/// through.
fn connect_remote(options: &Options, connect: &Connect) -> Result<Option<Box<dyn Remote>>, Error> {
    let Some(remote) = &options.remote else {
        return Ok(None);
    };
    if options.cache_dir.is_none() {
        return Err(Error::InvalidRequest(
            "a remote cache needs a local cache to read through (drop --no-cache)".into(),
        ));
    }
    connect(remote).map(Some).map_err(Error::InvalidRequest)
}

/// Why `task` is or is not covered by the cache. Runs nothing.
pub fn explain(
    graph: &str,
    task: &str,
    workspace: &Path,
    cache_dir: Option<&str>,
    trusted_keys: &[String],
) -> Result<Vec<String>, Error> {
    let graph = parse(graph)?;
    let id = graph
        .ids()
        .find(|&id| graph.task(id).id == task)
        .ok_or_else(|| Error::InvalidRequest(format!("no task \"{task}\" in the graph")))?;
    let cache = reading_cache(cache_dir, trusted_keys)?
        .ok_or_else(|| Error::InvalidRequest("explain needs a cache directory".into()))?;
    let mut sigs = signatures_in(&graph, workspace, "explain").map_err(Error::InvalidGraph)?;
    let forced = TaskMap::filled(&graph, false);
    reuse::decide(&graph, &mut sigs, &cache, &forced, &mut Notes::default());
    Ok(reuse::explain(&graph, id, &sigs, &cache))
}

/// What `run` would do, without doing it. Runs nothing.
pub fn plan(
    graph: &str,
    workspace: &Path,
    cache_dir: Option<&str>,
    trusted_keys: &[String],
) -> Result<Vec<String>, Error> {
    let graph = parse(graph)?;
    let mut sigs = signatures_in(&graph, workspace, "plan").map_err(Error::InvalidGraph)?;
    let cache = reading_cache(cache_dir, trusted_keys)?;
    let forced = TaskMap::filled(&graph, false);
    let fates = match &cache {
        Some(c) => reuse::decide(&graph, &mut sigs, c, &forced, &mut Notes::default()).fates,
        None => TaskMap::filled(&graph, Fate::Run),
    };
    let given = TaskMap::filled(&graph, None);
    let known = recorded_durations(&graph, cache.as_ref(), given, |_| true);
    let durations = expected_durations(&graph, known.as_slice());
    Ok(reuse::plan(&graph, &fates, &durations))
}

/// Runs the real scheduler against a virtual clock. Runs nothing.
pub fn simulate(graph: &str, options: &SimulateOptions) -> Result<Simulated, Error> {
    let graph = parse(graph)?;
    let given = match &options.durations {
        Some(text) => {
            let table = parse_durations(text).map_err(Error::InvalidRequest)?;
            TaskMap::from(durations_for(&graph, &table))
        }
        None => TaskMap::filled(&graph, None),
    };
    let cache = options.cache_dir.as_deref().map(Cache::new);
    let known = recorded_durations(&graph, cache.as_ref(), given, |_| true);
    let durations = expected_durations(&graph, known.as_slice());
    let slots = options.max_parallel.max(1) as usize;
    let peaks =
        crate::schedule::simulate::Memory::recorded(&graph, cache.as_ref(), options.memory_limit);
    let sim = crate::schedule::simulate::simulate_within(
        &graph,
        (&durations, &durations),
        options.policy,
        slots,
        &peaks,
    );
    Ok(Simulated {
        makespan_ms: sim.makespan_ms,
        work_ms: sim.work_ms,
        critical_path_ms: sim.critical_path_ms,
        lower_bound_ms: sim.lower_bound_ms,
        critical_path: ids(&graph, sim.critical_path),
        peak_parallel: sim.peak_parallel as u32,
        peak_memory: sim.peak_memory,
    })
}

/// Converts `bitbake -g` output into graph JSON, which must be valid.
pub fn import_graph(text: &str, request: &ImportRequest) -> Result<String, Error> {
    let tasks = import::parse(text).map_err(Error::InvalidGraph)?;
    let durations_ms = match &request.durations {
        Some(t) => parse_durations(t).map_err(Error::InvalidRequest)?,
        None => Default::default(),
    };
    let options = import::ImportOptions {
        run_template: request.run_template.clone(),
        durations_ms,
        scale: request.scale,
    };
    let json = import::to_graph(&tasks, &options);
    // What comes out must be a valid graph (a cycle in the input, say).
    parse(&json)?;
    Ok(json)
}
