//! The WIT shim: converts between the bindings' types and the plain Rust
//! ones, and gives [`work::run`] the host's processes. Nothing else.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use futures::future::{select, Either};
use wstd::runtime::{block_on, AsyncPollable};

use crate::cache::{Cache, FileModes};
use crate::estimate::{expected_durations, mean};
use crate::graph::{Graph, TaskId};
use crate::import;
use crate::plan::{longest_chain, remaining_path, Policy};
use crate::signature::{hash_inputs, sig_parts};
use crate::simulate::{durations_for, parse_durations, simulate};
use crate::sstate;
use crate::work::{self, Event, Exit, ExitStatus, Outcome, Processes, RunOptions, TaskRecord};

wit_bindgen::generate!({
    world: "executor",
    path: "wit",
    with: { "wasi:io/poll@0.2.12": wasip2::io::poll },
});

use exports::runqueue::executor::runner::{self as wit_runner, Guest};
use runqueue::executor::{process, progress, types};

/// The workspace as the component sees it: the host preopens it as `.`.
const WORKSPACE: &str = ".";

/// Where task logs go, relative to the workspace.
const LOG_DIR: &str = ".runqueue/logs";

/// The PATH tasks get when neither the host nor the graph gives one.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

pub(crate) struct Component;

export!(Component);

impl Guest for Component {
    fn check(graph: String) -> Result<wit_runner::Summary, wit_runner::Error> {
        let graph = parse(&graph)?;
        let path = remaining_path(&graph, |_| 1);
        Ok(wit_runner::Summary {
            tasks: graph.len() as u32,
            edges: graph.edge_count() as u32,
            roots: graph.tasks.iter().filter(|t| t.deps.is_empty()).count() as u32,
            finals: graph.dependents.iter().filter(|d| d.is_empty()).count() as u32,
            longest_path: longest_chain(&graph, &path)
                .into_iter()
                .map(|id: TaskId| graph.task(id).id.clone())
                .collect(),
        })
    }

    fn run(
        graph: String,
        options: wit_runner::Options,
    ) -> Result<types::Report, wit_runner::Error> {
        let graph = parse(&graph)?;
        let log_dir = match options.log_dir {
            None => LOG_DIR.to_string(),
            Some(dir) => match crate::graph::normalize(&dir) {
                Some(d) if !d.is_empty() => d,
                _ => {
                    return Err(wit_runner::Error::InvalidRequest(format!(
                        "log directory \"{dir}\" leaves the workspace (use a relative path without \"..\")"
                    )))
                }
            },
        };
        if let Some(link) = sstate::escaping_symlink(Path::new(WORKSPACE), &log_dir) {
            return Err(wit_runner::Error::InvalidRequest(format!(
                "log directory \"{log_dir}\" leads out of the workspace through symlink \"{link}\""
            )));
        }
        let remote = remote_for(options.remote_cache.as_ref(), options.cache_dir.is_some())?;
        let opts = RunOptions {
            remote_concurrency: options
                .remote_cache
                .as_ref()
                .map_or(1, |r| r.concurrency.max(1) as usize),
            remote_read_only: options.remote_cache.as_ref().is_some_and(|r| r.read_only),
            max_parallel: options
                .max_parallel
                .unwrap_or_else(process::parallelism)
                .max(1) as usize,
            keep_going: options.keep_going,
            base_env: base_env(),
            log_dir,
            workspace: PathBuf::from(WORKSPACE),
            cache: options.cache_dir.map(Cache::new),
            run_nonce: format!("{:016x}", wasip2::random::random::get_random_u64()),
            policy: policy(options.scheduler),
            default_timeout_ms: options.timeout_ms,
        };
        let mut procs = HostProcesses { remote };
        let report = block_on(async { work::run(&graph, &opts, &mut procs).await })
            .map_err(wit_runner::Error::InvalidGraph)?;
        Ok(types::Report {
            tasks: report.tasks.iter().map(task_report).collect(),
            totals: types::Totals {
                total: report.tasks.len() as u32,
                succeeded: report.succeeded as u32,
                failed: report.failed as u32,
                not_run: report.not_run as u32,
                cached: report.cached as u32,
                peak_parallel: report.peak_parallel as u32,
                wall_ms: report.wall_ms,
            },
            max_parallel: report.max_parallel as u32,
            critical_path: report
                .critical_path
                .iter()
                .map(|id| graph.task(*id).id.clone())
                .collect(),
        })
    }

    fn explain(
        graph: String,
        task: String,
        options: wit_runner::Options,
    ) -> Result<Vec<String>, wit_runner::Error> {
        let graph = parse(&graph)?;
        let id = graph
            .ids()
            .find(|&id| graph.task(id).id == task)
            .ok_or_else(|| {
                wit_runner::Error::InvalidRequest(format!("no task \"{task}\" in the graph"))
            })?;
        let cache = options.cache_dir.map(Cache::new).ok_or_else(|| {
            wit_runner::Error::InvalidRequest("explain needs a cache directory".into())
        })?;
        let ws = PathBuf::from(WORKSPACE);
        sstate::check_paths(&graph, &ws).map_err(wit_runner::Error::InvalidGraph)?;
        let inputs = hash_inputs(&graph, &ws).map_err(wit_runner::Error::InvalidGraph)?;
        let sigs = sig_parts(&graph, inputs, "explain");
        Ok(sstate::explain(&graph, id, &sigs, &cache))
    }

    fn plan(graph: String, options: wit_runner::Options) -> Result<Vec<String>, wit_runner::Error> {
        let graph = parse(&graph)?;
        let ws = PathBuf::from(WORKSPACE);
        sstate::check_paths(&graph, &ws).map_err(wit_runner::Error::InvalidGraph)?;
        let inputs = hash_inputs(&graph, &ws).map_err(wit_runner::Error::InvalidGraph)?;
        let sigs = sig_parts(&graph, inputs, "plan");
        let cache = options.cache_dir.map(Cache::new);
        let known = recorded_durations(&graph, cache.as_ref(), vec![None; graph.len()]);
        let durations = expected_durations(&graph, &known);
        Ok(sstate::plan(&graph, &sigs, cache.as_ref(), &durations))
    }

    fn simulate(
        graph: String,
        options: wit_runner::SimulateOptions,
    ) -> Result<wit_runner::Simulation, wit_runner::Error> {
        let graph = parse(&graph)?;
        let given = match &options.durations {
            Some(text) => durations_for(
                &graph,
                &parse_durations(text).map_err(wit_runner::Error::InvalidRequest)?,
            ),
            None => vec![None; graph.len()],
        };
        let cache = options.cache_dir.map(Cache::new);
        let known = recorded_durations(&graph, cache.as_ref(), given);
        let durations = expected_durations(&graph, &known);
        let sim = simulate(
            &graph,
            &durations,
            &durations,
            policy(options.scheduler),
            options.max_parallel.max(1) as usize,
        );
        Ok(wit_runner::Simulation {
            makespan_ms: sim.makespan_ms,
            work_ms: sim.work_ms,
            critical_path_ms: sim.critical_path_ms,
            lower_bound_ms: sim.lower_bound_ms,
            critical_path: sim
                .critical_path
                .iter()
                .map(|id| graph.task(*id).id.clone())
                .collect(),
            peak_parallel: sim.peak_parallel as u32,
        })
    }

    fn import_graph(
        text: String,
        options: wit_runner::ImportOptions,
    ) -> Result<String, wit_runner::Error> {
        let tasks = import::parse(&text).map_err(wit_runner::Error::InvalidGraph)?;
        let durations_ms = match &options.durations {
            Some(t) => parse_durations(t).map_err(wit_runner::Error::InvalidRequest)?,
            None => Default::default(),
        };
        let json = import::to_graph(
            &tasks,
            &import::ImportOptions {
                run_template: options.run_template,
                durations_ms,
                scale: options.scale,
            },
        );
        // What comes out must be a valid graph (a cycle in the input, say).
        parse(&json)?;
        Ok(json)
    }
}

/// `given` durations, else the mean of the cache's recorded ones.
fn recorded_durations(
    graph: &Graph,
    cache: Option<&Cache>,
    given: Vec<Option<u64>>,
) -> Vec<Option<u64>> {
    graph
        .ids()
        .map(|id| {
            given[id.index()].or_else(|| {
                let h = cache?.history(&graph.task(id).id)?;
                mean(&h.durations_ms)
            })
        })
        .collect()
}

fn policy(s: wit_runner::Scheduler) -> Policy {
    match s {
        wit_runner::Scheduler::CriticalPath => Policy::CriticalPath,
        wit_runner::Scheduler::Speed => Policy::Speed,
        wit_runner::Scheduler::Fifo => Policy::Fifo,
        wit_runner::Scheduler::Waves => Policy::Waves,
    }
}

fn parse(text: &str) -> Result<Graph, wit_runner::Error> {
    Graph::parse(text).map_err(|e| wit_runner::Error::InvalidGraph(e.to_string()))
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
    let mut env = BTreeMap::from([(
        "PATH".to_string(),
        own.get("PATH")
            .cloned()
            .unwrap_or_else(|| DEFAULT_PATH.to_string()),
    )]);
    if let Some(ws) = own.get("RUNQUEUE_WORKSPACE") {
        env.insert("HOME".to_string(), ws.clone());
    }
    env
}

/// The host's `process` interface as [`Processes`].
struct HostProcesses {
    remote: Option<Box<dyn crate::remote::Remote>>,
}

/// The remote cache the options ask for: only the `remote-cache` build
/// speaks HTTP, and the remote needs a local cache to read through.
fn remote_for(
    remote: Option<&wit_runner::RemoteCache>,
    local_cache: bool,
) -> Result<Option<Box<dyn crate::remote::Remote>>, wit_runner::Error> {
    let Some(remote) = remote else {
        return Ok(None);
    };
    if !local_cache {
        return Err(wit_runner::Error::InvalidRequest(
            "a remote cache needs a local cache to read through (drop --no-cache)".into(),
        ));
    }
    #[cfg(feature = "remote-cache")]
    {
        Ok(Some(Box::new(crate::http_remote::HttpRemote::new(
            &remote.url,
            remote.timeout_ms,
        )?)))
    }
    #[cfg(not(feature = "remote-cache"))]
    {
        Err(wit_runner::Error::InvalidRequest(format!(
            "this build of the runqueue component has no remote cache (remote {}): \
             use runqueue-remote.wasm, built with the remote-cache feature",
            remote.url
        )))
    }
}

impl FileModes for HostProcesses {
    fn mode(&self, rel: &str) -> Result<u32, String> {
        process::file_mode(rel)
    }

    fn set_mode(&self, rel: &str, mode: u32) -> Result<(), String> {
        process::set_file_mode(rel, mode)
    }
}

impl Processes for HostProcesses {
    fn remote(&self) -> Option<&dyn crate::remote::Remote> {
        self.remote.as_deref()
    }

    fn spawn(&mut self, cmd: &work::Command) -> Result<(u32, Exit), String> {
        let child = process::spawn(&process::Command {
            program: cmd.program.clone(),
            args: cmd.args.clone(),
            cwd: cmd.cwd.clone(),
            env: cmd.env.clone(),
            log: cmd.log.clone(),
        })
        .map_err(|e| match e {
            process::SpawnError::NotFound(m)
            | process::SpawnError::PermissionDenied(m)
            | process::SpawnError::InvalidPath(m)
            | process::SpawnError::Other(m) => m,
        })?;
        let pid = child.pid();
        let timeout_ms = cmd.timeout_ms;
        let exit = async move {
            let mut timed_out = false;
            {
                // The pollable is dropped before the child, as WASI requires.
                let exited = AsyncPollable::new(child.subscribe());
                match timeout_ms {
                    None => exited.wait_for().await,
                    Some(ms) => {
                        let wait = std::pin::pin!(exited.wait_for());
                        let timer = std::pin::pin!(wstd::task::sleep(
                            wstd::time::Duration::from_millis(ms)
                        ));
                        if let Either::Right((_, wait)) = select(wait, timer).await {
                            // The host stops the whole process group: TERM,
                            // then KILL after a grace period.
                            timed_out = true;
                            child.kill();
                            wait.await;
                        }
                    }
                }
            }
            if let (true, Some(ms)) = (timed_out, timeout_ms) {
                return Err(work::describe_timeout(ms));
            }
            child
                .try_wait()
                .map(from_wit_status)
                .ok_or_else(|| "the host said the process exited but has no status".to_string())
        };
        Ok((pid, Box::pin(exit)))
    }

    fn interrupted(&mut self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> {
        let asked = AsyncPollable::new(process::interrupt());
        Box::pin(async move { asked.wait_for().await })
    }

    fn now_ms(&self) -> u64 {
        wasip2::clocks::monotonic_clock::now() / 1_000_000
    }

    fn event(&mut self, event: Event<'_>) {
        progress::report(&match event {
            Event::Started { task, running } => progress::Event::Started(progress::Started {
                id: task.id.clone(),
                pid: task.pid.unwrap_or(0),
                at_ms: task.start_ms.unwrap_or(0),
                running: running as u32,
                log: task.log.clone().unwrap_or_default(),
            }),
            Event::Finished(task) => progress::Event::Finished(task_report(task)),
            Event::Warning(w) => progress::Event::Warning(w.to_string()),
            Event::Planned { total, cached } => progress::Event::Planned(progress::Planned {
                total: total as u32,
                cached: cached as u32,
            }),
        });
    }
}

fn from_wit_status(s: process::ExitStatus) -> ExitStatus {
    match s {
        process::ExitStatus::Code(c) => ExitStatus::Code(c),
        process::ExitStatus::Signal(s) => ExitStatus::Signal(s),
    }
}

fn task_report(t: &TaskRecord) -> types::TaskReport {
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
    }
}
