//! The `runqueue` command: arguments, finding the component, console output
//! and exit codes. Knows nothing of scheduling; that is the component's.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

use crate::{Event, Report, RunError, RunOptions, Runqueue, TaskReport, TaskState, Workspace};

/// Exit code: every task succeeded.
pub const EXIT_OK: i32 = 0;
/// Exit code: at least one task failed.
pub const EXIT_TASK_FAILED: i32 = 1;
/// Exit code: bad input (graph, arguments, workspace); nothing ran.
pub const EXIT_BAD_INPUT: i32 = 2;
/// Exit code: runqueue itself broke (component missing or trapped).
pub const EXIT_INTERNAL: i32 = 3;

/// Graph files larger than this are refused before parsing.
pub const MAX_GRAPH_BYTES: u64 = 256 << 20;

/// The environment variable naming the component file.
pub const COMPONENT_ENV: &str = "RUNQUEUE_COMPONENT";

#[derive(Parser, Debug)]
#[command(
    name = "runqueue",
    version,
    about = "Run BitBake-style task graphs in parallel, in a WASI component"
)]
struct Cli {
    /// The runqueue component (.wasm). Default: $RUNQUEUE_COMPONENT, then
    /// runqueue.wasm next to this program, then the cargo build output.
    #[arg(long, global = true, value_name = "FILE")]
    component: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
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
        #[command(flatten)]
        place: Place,
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
        place: Place,
    },
}

/// Where a build happens.
#[derive(clap::Args, Debug)]
struct Place {
    /// The workspace: task directories and logs live here (default: the
    /// current directory).
    #[arg(long, value_name = "DIR", default_value = ".")]
    workspace: PathBuf,
    /// The artifact cache directory; a relative path is inside the workspace.
    #[arg(long, value_name = "DIR", default_value = crate::DEFAULT_CACHE)]
    cache: PathBuf,
    /// Run every task and cache nothing.
    #[arg(long, conflicts_with = "cache")]
    no_cache: bool,
}

/// Runs the CLI with `args` (including the program name) and returns the
/// exit code.
pub fn main_with(args: impl IntoIterator<Item = OsString>) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                EXIT_BAD_INPUT
            } else {
                EXIT_OK
            };
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run_cli(cli))
}

async fn run_cli(cli: Cli) -> i32 {
    let graph_path = match &cli.command {
        Command::Build { graph, .. }
        | Command::Check { graph }
        | Command::Explain { graph, .. } => graph.clone(),
    };
    let graph = match read_graph(&graph_path) {
        Ok(text) => text,
        Err(msg) => return fail(EXIT_BAD_INPUT, &msg),
    };
    let workspace = match &cli.command {
        Command::Build { place, .. } | Command::Explain { place, .. } => {
            match Workspace::open(&place.workspace) {
                Ok(ws) => Some(ws),
                Err(e) => {
                    return fail(
                        EXIT_BAD_INPUT,
                        &format!("workspace {}: {e}", place.workspace.display()),
                    )
                }
            }
        }
        Command::Check { .. } => None,
    };
    let component = match find_component(cli.component.as_deref()) {
        Ok(path) => path,
        Err(msg) => return fail(EXIT_INTERNAL, &msg),
    };
    let rq = match Runqueue::load(&component) {
        Ok(rq) => rq,
        Err(e) => return fail(EXIT_INTERNAL, &format!("{e:#}")),
    };
    match cli.command {
        Command::Check { .. } => match rq.check(&graph).await {
            Ok(Ok(summary)) => {
                println!(
                    "{}: OK: {} tasks, {} dependencies, {} without dependencies, {} final",
                    graph_path.display(),
                    summary.tasks,
                    summary.edges,
                    summary.roots,
                    summary.finals
                );
                println!(
                    "longest path ({} tasks): {}",
                    summary.longest_path.len(),
                    summary.longest_path.join(" -> ")
                );
                EXIT_OK
            }
            Ok(Err(e)) => run_error(&graph_path, e),
            Err(e) => fail(EXIT_INTERNAL, &format!("{e:#}")),
        },
        Command::Explain { task, place, .. } => {
            let ws = workspace.expect("explain has a workspace");
            let options = RunOptions {
                cache: Some(place.cache),
                ..RunOptions::default()
            };
            match rq.explain(&graph, &task, &options, &ws).await {
                Ok(Ok(lines)) => {
                    for line in lines {
                        println!("{line}");
                    }
                    EXIT_OK
                }
                Ok(Err(e)) => run_error(&graph_path, e),
                Err(e) => fail(EXIT_INTERNAL, &format!("{e:#}")),
            }
        }
        Command::Build {
            jobs,
            keep_going,
            place,
            ..
        } => {
            let ws = workspace.expect("build has a workspace");
            let options = RunOptions {
                max_parallel: jobs,
                keep_going,
                cache: (!place.no_cache).then_some(place.cache),
            };
            match rq.run(&graph, &options, &ws, print_event).await {
                Ok(Ok(report)) => {
                    print_summary(&report);
                    if report.totals.failed > 0 {
                        EXIT_TASK_FAILED
                    } else {
                        EXIT_OK
                    }
                }
                Ok(Err(e)) => run_error(&graph_path, e),
                Err(e) => fail(EXIT_INTERNAL, &format!("{e:#}")),
            }
        }
    }
}

fn fail(code: i32, msg: &str) -> i32 {
    eprintln!("runqueue: {msg}");
    code
}

fn run_error(graph: &Path, e: RunError) -> i32 {
    match e {
        RunError::InvalidGraph(msg) => fail(
            EXIT_BAD_INPUT,
            &format!("invalid graph {}: {msg}", graph.display()),
        ),
        RunError::Internal(msg) => fail(EXIT_INTERNAL, &msg),
    }
}

fn read_graph(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("cannot read graph {}: {e}", path.display()))?;
    if meta.len() > MAX_GRAPH_BYTES {
        return Err(format!(
            "graph {} is {} bytes; the limit is {MAX_GRAPH_BYTES}",
            path.display(),
            meta.len()
        ));
    }
    std::fs::read_to_string(path).map_err(|e| format!("cannot read graph {}: {e}", path.display()))
}

/// The component: `explicit`, else `$RUNQUEUE_COMPONENT`, else
/// `runqueue.wasm` next to this program, else where `cargo build --target
/// wasm32-wasip2` puts it relative to this program in the same target
/// directory (release first).
pub fn find_component(explicit: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os(COMPONENT_ENV) {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot locate this program: {e}"))?;
    let mut candidates = Vec::new();
    for dir in exe.ancestors().skip(1).take(3) {
        candidates.push(dir.join("runqueue.wasm"));
        for profile in ["release", "debug"] {
            candidates.push(
                dir.join("wasm32-wasip2")
                    .join(profile)
                    .join("runqueue.wasm"),
            );
        }
    }
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| {
            format!(
                "cannot find the runqueue component (runqueue.wasm): build it with `make build`, \
             or give --component FILE or ${COMPONENT_ENV}"
            )
        })
}

fn secs(ms: u64) -> String {
    format!("{:.2}s", ms as f64 / 1000.0)
}

/// One line per started and finished task.
fn print_event(ev: Event) {
    let line = match ev {
        Event::Started(s) => format!(
            "[{:>8}] started  {} (pid {}, {} running)",
            secs(s.at_ms),
            s.id,
            s.pid,
            s.running
        ),
        Event::Finished(t) => match t.state {
            TaskState::Succeeded => format!(
                "[{:>8}] done     {} in {}",
                secs(t.end_ms.unwrap_or(0)),
                t.id,
                secs(duration_ms(&t))
            ),
            TaskState::Failed => format!(
                "[{:>8}] FAILED   {}: {}{}",
                secs(t.end_ms.unwrap_or(0)),
                t.id,
                t.message.as_deref().unwrap_or("failed"),
                log_hint(&t)
            ),
            TaskState::Cached if t.restored => format!(
                "[{:>8}] restored {} from the cache",
                secs(t.end_ms.unwrap_or(0)),
                t.id
            ),
            // Not-run tasks are listed in the summary; covered tasks that
            // nothing needs are only counted.
            TaskState::NotRun | TaskState::Cached => return,
        },
        Event::Warning(w) => {
            eprintln!("runqueue: warning: {w}");
            return;
        }
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
}

fn duration_ms(t: &TaskReport) -> u64 {
    match (t.start_ms, t.end_ms) {
        (Some(s), Some(e)) => e.saturating_sub(s),
        _ => 0,
    }
}

fn log_hint(t: &TaskReport) -> String {
    t.log
        .as_deref()
        .map(|l| format!(" (log: {l})"))
        .unwrap_or_default()
}

/// How many not-run tasks the summary names before it only counts.
const NOT_RUN_SHOWN: usize = 10;

fn print_summary(report: &Report) {
    let t = &report.totals;
    println!(
        "Tasks Summary: Attempted {} tasks of which {} didn't need to be rerun and {}.",
        t.total,
        t.cached,
        if t.failed == 0 {
            "all succeeded".to_string()
        } else {
            format!("{} failed", t.failed)
        }
    );
    println!(
        "Summary: {} tasks: {} succeeded, {} cached, {} failed, {} not run. Peak parallelism {} (limit {}). Wall time {}.",
        t.total,
        t.succeeded,
        t.cached,
        t.failed,
        t.not_run,
        t.peak_parallel,
        report.max_parallel,
        secs(t.wall_ms)
    );
    let failed: Vec<_> = report
        .tasks
        .iter()
        .filter(|t| t.state == TaskState::Failed)
        .collect();
    if !failed.is_empty() {
        println!("Failed tasks:");
        for t in failed {
            println!(
                "  {}: {}{}",
                t.id,
                t.message.as_deref().unwrap_or("failed"),
                log_hint(t)
            );
        }
    }
    let not_run: Vec<_> = report
        .tasks
        .iter()
        .filter(|t| t.state == TaskState::NotRun)
        .collect();
    if !not_run.is_empty() {
        println!("Not run ({}):", not_run.len());
        for t in not_run.iter().take(NOT_RUN_SHOWN) {
            println!("  {}: {}", t.id, t.message.as_deref().unwrap_or("not run"));
        }
        if not_run.len() > NOT_RUN_SHOWN {
            println!("  ... and {} more", not_run.len() - NOT_RUN_SHOWN);
        }
    }
}
