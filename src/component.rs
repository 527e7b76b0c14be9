//! The WIT shim: converts between the bindings' types and [`crate::api`]'s
//! plain ones, and implements the seams over the host's imports. Nothing
//! else.

use std::collections::BTreeMap;
use std::path::Path;

use wstd::runtime::{block_on, AsyncPollable};

use crate::api::{self, Host, RemoteSettings};
use crate::remote::Remote;
use crate::run::report::{ExitStatus, Outcome, Report, TaskRecord};
#[cfg(not(feature = "command"))]
use crate::schedule::plan::Policy;
use crate::seams::{self, Command, Event, FileModes, LocalFuture, Processes, Progress};

#[cfg(not(feature = "command"))]
wit_bindgen::generate!({
    world: "executor",
    path: "wit",
    with: { "wasi:io/poll@0.2.12": wasip2::io::poll },
});

// The command alone, for composing with `wasm-tools compose`.
#[cfg(feature = "command")]
wit_bindgen::generate!({
    world: "executor-command",
    path: "wit",
    with: { "wasi:io/poll@0.2.12": wasip2::io::poll },
});

#[cfg(not(feature = "command"))]
use exports::runqueue::executor::runner::{self as wit, Guest};
use runqueue::executor::{files, process, progress, types};

/// The workspace as the component sees it: the host preopens it as `.`.
pub(crate) const WORKSPACE: &str = ".";

/// The PATH tasks get when neither the host nor the graph gives one.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

pub(crate) struct Component;

export!(Component);

#[cfg(not(feature = "command"))]
impl Guest for Component {
    fn check(graph: String) -> Result<wit::Summary, wit::Error> {
        let s = api::check(&graph).map_err(to_wit_error)?;
        Ok(wit::Summary {
            tasks: s.tasks,
            edges: s.edges,
            roots: s.roots,
            finals: s.finals,
            longest_path: s.longest_path,
        })
    }

    fn run(graph: String, options: wit::Options) -> Result<types::Report, wit::Error> {
        let report = run_on_host(&graph, &from_wit_options(options)).map_err(to_wit_error)?;
        Ok(to_wit_report(report))
    }

    fn explain(
        graph: String,
        task: String,
        options: wit::Options,
    ) -> Result<Vec<String>, wit::Error> {
        let ws = Path::new(WORKSPACE);
        let (cache, trusted) = (options.cache_dir.as_deref(), &options.trusted_keys);
        api::explain(&graph, &task, ws, cache, trusted).map_err(to_wit_error)
    }

    fn plan(graph: String, options: wit::Options) -> Result<Vec<String>, wit::Error> {
        let ws = Path::new(WORKSPACE);
        let (cache, trusted) = (options.cache_dir.as_deref(), &options.trusted_keys);
        api::plan(&graph, ws, cache, trusted).map_err(to_wit_error)
    }

    fn simulate(
        graph: String,
        options: wit::SimulateOptions,
    ) -> Result<wit::Simulation, wit::Error> {
        let options = api::SimulateOptions {
            max_parallel: options.max_parallel,
            policy: from_wit_scheduler(options.scheduler),
            durations: options.durations,
            cache_dir: options.cache_dir,
            memory_limit: options.memory_limit,
        };
        let sim = api::simulate(&graph, &options).map_err(to_wit_error)?;
        Ok(wit::Simulation {
            makespan_ms: sim.makespan_ms,
            work_ms: sim.work_ms,
            critical_path_ms: sim.critical_path_ms,
            lower_bound_ms: sim.lower_bound_ms,
            critical_path: sim.critical_path,
            peak_parallel: sim.peak_parallel,
            peak_memory: sim.peak_memory,
        })
    }

    fn import_graph(text: String, options: wit::ImportOptions) -> Result<String, wit::Error> {
        let request = api::ImportRequest {
            run_template: options.run_template,
            durations: options.durations,
            scale: options.scale,
        };
        api::import_graph(&text, &request).map_err(to_wit_error)
    }
}

/// Runs `graph` with the host's processes, progress and file modes.
pub(crate) fn run_on_host(graph: &str, options: &api::Options) -> Result<Report, api::Error> {
    let host = Host {
        workspace: Path::new(WORKSPACE),
        base_env: base_env(),
        run_nonce: format!("{:016x}", wasip2::random::random::get_random_u64()),
        processes: &mut HostProcesses,
        progress: &mut HostProgress,
        modes: &HostModes,
        files: &HostFiles,
        connect: &connect_remote,
    };
    block_on(api::run(graph, options, host))
}

/// The minimal environment every task starts from: PATH from the
/// component's own environment (the host decides what that is), so tasks
/// find `sh` and compilers, and HOME at the workspace (which the host names
/// in `RUNQUEUE_WORKSPACE`), so tools writing dotfiles stay inside it. The
/// graph may override both.
fn base_env() -> BTreeMap<String, String> {
    let own: BTreeMap<String, String> = wasip2::cli::environment::get_environment()
        .into_iter()
        .collect();
    let path = own.get("PATH").map_or(DEFAULT_PATH, String::as_str);
    let mut env = BTreeMap::from([("PATH".to_string(), path.to_string())]);
    if let Some(ws) = own.get("RUNQUEUE_WORKSPACE") {
        env.insert("HOME".to_string(), ws.clone());
    }
    env
}

/// The remote cache's client: only the `remote-cache` build speaks HTTP.
fn connect_remote(remote: &RemoteSettings) -> Result<Box<dyn Remote>, String> {
    #[cfg(feature = "remote-cache")]
    {
        let client = crate::remote::http::HttpRemote::new(&remote.url, remote.timeout_ms)?;
        Ok(Box::new(client))
    }
    #[cfg(not(feature = "remote-cache"))]
    {
        Err(format!(
            "this build of the runqueue component has no remote cache (remote {}): \
             use runqueue-remote.wasm, built with the remote-cache feature",
            remote.url
        ))
    }
}

#[cfg(not(feature = "command"))]
fn from_wit_options(o: wit::Options) -> api::Options {
    api::Options {
        max_parallel: o.max_parallel,
        keep_going: o.keep_going,
        cache_dir: o.cache_dir,
        policy: from_wit_scheduler(o.scheduler),
        log_dir: o.log_dir,
        timeout_ms: o.timeout_ms,
        remote: o.remote_cache.map(|r| RemoteSettings {
            url: r.url,
            read_only: r.read_only,
            timeout_ms: r.timeout_ms,
            concurrency: r.concurrency,
        }),
        signing_key: o.signing_key,
        trusted_keys: o.trusted_keys,
        no_cutoff: o.no_cutoff,
        check_reproducible: o.check_reproducible,
        memory_limit: o.memory_limit,
    }
}

#[cfg(not(feature = "command"))]
fn from_wit_scheduler(s: wit::Scheduler) -> Policy {
    match s {
        wit::Scheduler::CriticalPath => Policy::CriticalPath,
        wit::Scheduler::Speed => Policy::Speed,
        wit::Scheduler::Fifo => Policy::Fifo,
        wit::Scheduler::Waves => Policy::Waves,
    }
}

#[cfg(not(feature = "command"))]
fn to_wit_error(e: api::Error) -> wit::Error {
    match e {
        api::Error::InvalidGraph(m) => wit::Error::InvalidGraph(m),
        api::Error::InvalidRequest(m) => wit::Error::InvalidRequest(m),
        api::Error::Internal(m) => wit::Error::Internal(m),
    }
}

#[cfg(not(feature = "command"))]
fn to_wit_report(r: Report) -> types::Report {
    types::Report {
        totals: types::Totals {
            total: r.tasks.len() as u32,
            succeeded: r.succeeded as u32,
            failed: r.failed as u32,
            not_run: r.not_run as u32,
            cached: r.cached as u32,
            cut_off: r.cut_off as u32,
            oom_reruns: r.oom_reruns as u32,
            peak_parallel: r.peak_parallel as u32,
            wall_ms: r.wall_ms,
        },
        tasks: r.tasks.iter().map(to_wit_task).collect(),
        max_parallel: r.max_parallel as u32,
        critical_path: r.critical_path,
    }
}

fn to_wit_task(t: &TaskRecord) -> types::TaskReport {
    types::TaskReport {
        id: t.id.clone(),
        state: match t.outcome.expect("reported tasks are final") {
            Outcome::Succeeded => types::TaskState::Succeeded,
            Outcome::Failed => types::TaskState::Failed,
            Outcome::NotRun => types::TaskState::NotRun,
            Outcome::Cached => types::TaskState::Cached,
        },
        exit: t.exit.map(|e| match e {
            ExitStatus::Code(c) => process::ExitStatus::Code(c),
            ExitStatus::Signal(s) => process::ExitStatus::Signal(s),
        }),
        message: t.message.clone(),
        pid: t.pid,
        start_ms: t.start_ms,
        end_ms: t.end_ms,
        log: t.log.clone(),
        signature: t.signature.clone(),
        restored: t.restored,
        cut_off: t.cut_off.clone(),
        peak_memory: t.peak_memory,
        oom_rerun: t.oom_rerun,
        held_by: t.held_by.iter().map(|h| h.to_string()).collect(),
        ran_on: t.ran_on.clone(),
        remote_cached: t.remote_cached,
    }
}

/// The host's `process` interface as [`Processes`].
struct HostProcesses;

/// A process the host started.
struct HostChild(process::Child);

impl seams::Child for HostChild {
    fn pid(&self) -> u32 {
        self.0.pid()
    }

    fn exited(&self) -> LocalFuture<()> {
        let exited = AsyncPollable::new(self.0.subscribe());
        Box::pin(async move { exited.wait_for().await })
    }

    fn status(&self) -> Option<ExitStatus> {
        self.0.try_wait().map(|s| match s {
            process::ExitStatus::Code(c) => ExitStatus::Code(c),
            process::ExitStatus::Signal(s) => ExitStatus::Signal(s),
        })
    }

    fn ran_ms(&self) -> Option<u64> {
        self.0.ran_ms()
    }

    fn kill(&self) {
        self.0.kill();
    }

    fn peak_memory(&self) -> Option<u64> {
        self.0.peak_memory()
    }

    fn oom_killed(&self) -> bool {
        self.0.oom_killed()
    }

    fn ran_on(&self) -> Option<String> {
        self.0.ran_on()
    }

    fn remote_cached(&self) -> bool {
        self.0.remote_cached()
    }
}

impl Processes for HostProcesses {
    fn spawn(&mut self, cmd: &Command) -> Result<Box<dyn seams::Child>, String> {
        let child = process::spawn(&process::Command {
            program: cmd.program.clone(),
            args: cmd.args.clone(),
            cwd: cmd.cwd.clone(),
            env: cmd.env.clone(),
            log: cmd.log.clone(),
            jobserver: cmd.jobserver,
            network: cmd.network,
            inputs: cmd.inputs.clone(),
            outputs: cmd.outputs.clone(),
            platform: cmd.platform.clone(),
            cacheable: cmd.cacheable,
        })
        .map_err(|e| match e {
            process::SpawnError::NotFound(m)
            | process::SpawnError::PermissionDenied(m)
            | process::SpawnError::InvalidPath(m)
            | process::SpawnError::Other(m) => m,
        })?;
        Ok(Box::new(HostChild(child)))
    }

    fn now_ms(&self) -> u64 {
        wasip2::clocks::monotonic_clock::now() / 1_000_000
    }

    fn sleep(&self, ms: u64) -> LocalFuture<()> {
        let timer = wstd::task::sleep(wstd::time::Duration::from_millis(ms));
        Box::pin(async move {
            timer.await;
        })
    }

    fn interrupted(&mut self) -> LocalFuture<()> {
        let asked = AsyncPollable::new(process::interrupt());
        Box::pin(async move { asked.wait_for().await })
    }

    fn parallelism(&self) -> u32 {
        process::parallelism()
    }

    fn take_slots(&mut self, n: u32) -> bool {
        process::take_slots(n)
    }

    fn give_slots(&mut self, n: u32) {
        process::give_slots(n)
    }

    fn slots_freed(&mut self) -> LocalFuture<()> {
        let freed = AsyncPollable::new(process::slots_freed());
        Box::pin(async move { freed.wait_for().await })
    }

    fn memory_available(&self) -> u64 {
        process::memory_available()
    }

    fn memory_stall_us(&self) -> Option<u64> {
        process::memory_stall_us()
    }
}

/// The host's `progress` interface as [`Progress`].
struct HostProgress;

impl Progress for HostProgress {
    fn event(&mut self, event: Event<'_>) {
        progress::report(&match event {
            Event::Started { task, running } => progress::Event::Started(progress::Started {
                id: task.id.clone(),
                pid: task.pid.unwrap_or(0),
                at_ms: task.start_ms.unwrap_or(0),
                running: running as u32,
                log: task.log.clone().unwrap_or_default(),
            }),
            Event::Finished(task) => progress::Event::Finished(to_wit_task(task)),
            Event::Warning(w) => progress::Event::Warning(w.to_string()),
            Event::Held { task, why } => progress::Event::Held(progress::Held {
                id: task.to_string(),
                why: why.to_string(),
            }),
            Event::Planned { total, cached } => progress::Event::Planned(progress::Planned {
                total: total as u32,
                cached: cached as u32,
            }),
        });
    }
}

/// The host's file-mode calls as [`FileModes`].
struct HostModes;

impl FileModes for HostModes {
    fn mode(&self, rel: &str) -> Result<u32, String> {
        process::file_mode(rel)
    }

    fn set_mode(&self, rel: &str, mode: u32) -> Result<(), String> {
        process::set_file_mode(rel, mode)
    }
}

/// The host's `files` interface as [`Files`]: each call returns a job the
/// loop awaits through its pollable, like a child.
struct HostFiles;

impl HostFiles {
    fn awaited(job: files::Job) -> LocalFuture<Result<Vec<seams::Blob>, String>> {
        Box::pin(async move {
            AsyncPollable::new(job.subscribe()).wait_for().await;
            let finished = job
                .finish()
                .unwrap_or_else(|| Err("the host lost a files job".into()));
            finished.map(|blobs| blobs.into_iter().map(from_wit_blob).collect())
        })
    }
}

fn from_wit_blob(b: files::Blob) -> seams::Blob {
    seams::Blob {
        hash: b.hash,
        size: b.size,
    }
}

impl seams::Files for HostFiles {
    fn hash(&self, paths: Vec<String>) -> LocalFuture<Result<Vec<seams::Blob>, String>> {
        Self::awaited(files::hash(&paths))
    }

    fn store(
        &self,
        cache: &str,
        paths: Vec<String>,
    ) -> LocalFuture<Result<Vec<seams::Blob>, String>> {
        Self::awaited(files::store(cache, &paths))
    }

    fn restore(
        &self,
        cache: &str,
        list: Vec<seams::RestoreFile>,
    ) -> LocalFuture<Result<(), String>> {
        let list: Vec<files::RestoreFile> = list
            .into_iter()
            .map(|f| files::RestoreFile {
                path: f.path,
                blob: files::Blob {
                    hash: f.blob.hash,
                    size: f.blob.size,
                },
                mode: f.mode,
            })
            .collect();
        let job = Self::awaited(files::restore(cache, &list));
        Box::pin(async move { job.await.map(|_| ()) })
    }

    fn put(&self, cache: &str, list: Vec<(String, Vec<u8>)>) -> LocalFuture<Result<(), String>> {
        let job = Self::awaited(files::put(cache, &list));
        Box::pin(async move { job.await.map(|_| ()) })
    }
}
