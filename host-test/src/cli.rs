//! The `runqueue` command: arguments, finding the component, the files a
//! build writes, and exit codes. Knows nothing of scheduling; that is the component's.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

use crate::console::{Console, Verbosity};
use crate::outputs;
use crate::process::Activity;
use crate::{ImportOptions, Report, RunError, RunOptions, Runqueue, Scheduler, Workspace};

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
    /// The most memory the component may use, in MiB.
    #[arg(long, global = true, value_name = "MIB", default_value_t = (crate::DEFAULT_MEMORY_LIMIT >> 20) as u64,
          value_parser = clap::value_parser!(u64).range(1..=4096))]
    max_memory: u64,
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
        /// How ready tasks are ordered when slots are scarce.
        #[arg(long, value_enum, default_value_t = SchedulerArg::CriticalPath)]
        scheduler: SchedulerArg,
        /// Stop a task (SIGTERM to its process group, SIGKILL 2 s later)
        /// that runs longer than SECS, unless the graph gives it a timeout.
        #[arg(long, value_name = "SECS", value_parser = parse_timeout)]
        timeout: Option<std::time::Duration>,
        /// Warn when a running task has printed nothing for SECS (and again
        /// after each further SECS); 0 turns the warning off.
        #[arg(long, value_name = "SECS", default_value = "600", value_parser = parse_stall)]
        stall_warning: std::time::Duration,
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
        #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_timeout)]
        remote_cache_timeout: std::time::Duration,
        #[command(flatten)]
        place: Place,
        #[command(flatten)]
        show: Show,
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
    /// What `build` would do, without doing it: every task in the order one
    /// slot would start them, marked `run` or `cached`. Runs nothing.
    Plan {
        /// The graph file (JSON, format version 1).
        graph: PathBuf,
        #[command(flatten)]
        place: Place,
    },
    /// Run the real scheduler against a virtual clock: how long would this
    /// graph take with N slots? Runs nothing.
    Simulate {
        /// The graph file (JSON, format version 1).
        graph: PathBuf,
        /// Virtual slots.
        #[arg(short = 'j', long = "jobs", value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        jobs: u32,
        /// Task durations: TSV lines `recipe<TAB>task<TAB>seconds`. Tasks not
        /// in it use the cache's recorded durations, then the median of their
        /// task name, then the median of all known, then equal weights.
        #[arg(long, value_name = "FILE")]
        durations: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = SchedulerArg::CriticalPath)]
        scheduler: SchedulerArg,
        #[command(flatten)]
        place: Place,
    },
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
}

/// The `--scheduler` values.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum SchedulerArg {
    /// Longest remaining path weighted by expected durations (default).
    CriticalPath,
    /// BitBake's speed weights.
    Speed,
    /// In the order tasks became ready.
    Fifo,
    /// Batches of -j tasks joined all at once (for comparison only).
    Waves,
}

impl From<SchedulerArg> for Scheduler {
    fn from(s: SchedulerArg) -> Scheduler {
        match s {
            SchedulerArg::CriticalPath => Scheduler::CriticalPath,
            SchedulerArg::Speed => Scheduler::Speed,
            SchedulerArg::Fifo => Scheduler::Fifo,
            SchedulerArg::Waves => Scheduler::Waves,
        }
    }
}

/// What a build shows and leaves behind.
#[derive(clap::Args, Debug)]
struct Show {
    /// Print only failures and the summary.
    #[arg(short, long, conflicts_with = "verbose")]
    quiet: bool,
    /// Also print cached and not-run tasks as they are decided.
    #[arg(short, long)]
    verbose: bool,
    /// Where task logs and run scripts go, relative to the workspace.
    #[arg(long, value_name = "DIR", default_value = ".runqueue/logs")]
    logs: String,
    /// How many last lines of a failed task's log to print.
    #[arg(long, value_name = "N", default_value_t = 25)]
    tail: usize,
    /// Write the run as JSON (every task and the totals) to FILE.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Write a Chrome trace-event file (Perfetto, chrome://tracing) to FILE.
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,
    /// Write an SVG timeline (one row per slot) to FILE.
    #[arg(long, value_name = "FILE")]
    chart: Option<PathBuf>,
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
    // One thread: the component is single-threaded anyway, and a child's
    // exit then wakes the component without a hop between threads.
    if let Command::Watchdog = cli.command {
        crate::process::run_watchdog(std::io::stdin().lock());
        return EXIT_OK;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run_cli(cli))
}

async fn run_cli(cli: Cli) -> i32 {
    let graph_path = match &cli.command {
        Command::Build { graph, .. }
        | Command::Check { graph }
        | Command::Explain { graph, .. }
        | Command::Plan { graph, .. }
        | Command::Simulate { graph, .. } => graph.clone(),
        Command::ImportDot { file, .. } => file.clone(),
        Command::Watchdog => unreachable!("handled before"),
    };
    let graph = match read_graph(&graph_path) {
        Ok(text) => text,
        Err(msg) => return fail(EXIT_BAD_INPUT, &msg),
    };
    let workspace = match &cli.command {
        Command::Build { place, .. }
        | Command::Explain { place, .. }
        | Command::Plan { place, .. }
        | Command::Simulate { place, .. } => match Workspace::open(&place.workspace) {
            Ok(ws) => Some(ws),
            Err(e) => {
                return fail(
                    EXIT_BAD_INPUT,
                    &format!("workspace {}: {e}", place.workspace.display()),
                )
            }
        },
        Command::Check { .. } | Command::ImportDot { .. } | Command::Watchdog => None,
    };
    let remote = match &cli.command {
        Command::Build {
            remote_cache: Some(url),
            remote_cache_read_only,
            remote_cache_timeout,
            ..
        } => match crate::remote::RemoteCache::new(url) {
            Ok(r) => Some(crate::remote::RemoteCache {
                read_only: *remote_cache_read_only,
                timeout: *remote_cache_timeout,
                ..r
            }),
            Err(msg) => return fail(EXIT_BAD_INPUT, &msg),
        },
        _ => None,
    };
    let component = match find_component(cli.component.as_deref()) {
        // The remote cache speaks wasi:http: the build of the component
        // that imports it lies next to the plain one.
        Ok(path) if remote.is_some() && cli.component.is_none() => {
            let sibling = path.with_file_name(REMOTE_COMPONENT);
            if !sibling.is_file() {
                return fail(
                    EXIT_INTERNAL,
                    &format!(
                        "--remote-cache needs {} (make build makes it)",
                        sibling.display()
                    ),
                );
            }
            sibling
        }
        Ok(path) => path,
        Err(msg) => return fail(EXIT_INTERNAL, &msg),
    };
    let mut rq = match Runqueue::load(&component) {
        Ok(rq) => rq,
        Err(e) => return fail(EXIT_INTERNAL, &format!("{e:#}")),
    };
    rq.set_memory_limit((cli.max_memory as usize) << 20);
    match cli.command {
        Command::Watchdog => unreachable!("handled before"),
        Command::Check { .. } => match rq.check(&graph).await {
            Ok(Ok(summary)) => {
                for line in runqueue::text::check_lines(
                    &graph_path.display().to_string(),
                    summary.tasks,
                    summary.edges,
                    summary.roots,
                    summary.finals,
                    &summary.longest_path,
                ) {
                    println!("{line}");
                }
                EXIT_OK
            }
            Ok(Err(e)) => run_error(&graph_path, e),
            Err(e) => call_failed(e),
        },
        Command::Explain { task, place, .. } => {
            let ws = workspace.expect("explain has a workspace");
            let options = RunOptions {
                cache: Some(place.cache),
                ..RunOptions::default()
            };
            print_lines(rq.explain(&graph, &task, &options, &ws).await, &graph_path)
        }
        Command::Plan { place, .. } => {
            let ws = workspace.expect("plan has a workspace");
            let options = RunOptions {
                cache: (!place.no_cache).then_some(place.cache),
                ..RunOptions::default()
            };
            print_lines(rq.plan(&graph, &options, &ws).await, &graph_path)
        }
        Command::Simulate {
            jobs,
            durations,
            scheduler,
            place,
            ..
        } => {
            let ws = workspace.expect("simulate has a workspace");
            let durations = match durations.as_deref().map(read_text).transpose() {
                Ok(d) => d,
                Err(msg) => return fail(EXIT_BAD_INPUT, &msg),
            };
            let cache = (!place.no_cache).then_some((&ws, place.cache.as_path()));
            match rq
                .simulate(&graph, jobs, scheduler.into(), durations, cache)
                .await
            {
                Ok(Ok(sim)) => {
                    print_simulation(&sim, jobs, scheduler);
                    EXIT_OK
                }
                Ok(Err(e)) => run_error(&graph_path, e),
                Err(e) => call_failed(e),
            }
        }
        Command::ImportDot {
            run,
            durations,
            scale,
            output,
            ..
        } => {
            let durations = match durations.as_deref().map(read_text).transpose() {
                Ok(d) => d,
                Err(msg) => return fail(EXIT_BAD_INPUT, &msg),
            };
            let options = ImportOptions {
                run_template: run,
                durations,
                scale,
            };
            match rq.import_graph(&graph, &options).await {
                Ok(Ok(json)) => match output {
                    Some(path) => match std::fs::write(&path, json + "\n") {
                        Ok(()) => EXIT_OK,
                        Err(e) => fail(
                            EXIT_BAD_INPUT,
                            &format!("cannot write {}: {e}", path.display()),
                        ),
                    },
                    None => {
                        println!("{json}");
                        EXIT_OK
                    }
                },
                Ok(Err(e)) => run_error(&graph_path, e),
                Err(e) => call_failed(e),
            }
        }
        Command::Build {
            jobs,
            keep_going,
            scheduler,
            timeout,
            stall_warning,
            allow_program,
            place,
            show,
            ..
        } => {
            if remote.is_some() && place.no_cache {
                return fail(
                    EXIT_BAD_INPUT,
                    "--remote-cache needs a local cache to read through (drop --no-cache)",
                );
            }
            let ws = workspace.expect("build has a workspace");
            let options = RunOptions {
                max_parallel: jobs,
                keep_going,
                cache: (!place.no_cache).then_some(place.cache),
                scheduler: scheduler.into(),
                log_dir: Some(show.logs.clone()),
                timeout,
                interrupts: Some(interrupt_requests()),
                watchdog: std::env::current_exe().ok(),
                allowed_programs: (!allow_program.is_empty()).then_some(allow_program),
                activity: Some(Activity::default()),
                remote_cache: remote,
            };
            let console = Console::new(
                if show.quiet {
                    Verbosity::Quiet
                } else if show.verbose {
                    Verbosity::Verbose
                } else {
                    Verbosity::Normal
                },
                ws.root().to_path_buf(),
                show.tail,
            );
            if !stall_warning.is_zero() {
                let activity = options.activity.clone().expect("set above");
                console.watch_stalls(activity, stall_warning);
            }
            let ticker = console.start_ticker();
            let events = console.clone();
            let result = rq
                .run(&graph, &options, &ws, move |e| events.event(e))
                .await;
            ticker.abort();
            match result {
                Ok(Ok(report)) => {
                    console.summary(&report);
                    if let Err(msg) = write_outputs(&report, &show) {
                        return fail(EXIT_BAD_INPUT, &msg);
                    }
                    // Failed, or stopped before everything ran (interrupted).
                    if report.totals.failed > 0 || report.totals.not_run > 0 {
                        EXIT_TASK_FAILED
                    } else {
                        EXIT_OK
                    }
                }
                Ok(Err(e)) => run_error(&graph_path, e),
                Err(e) => call_failed(e),
            }
        }
    }
}

/// Exit code and message for an error from a component call: running out of
/// the memory limit is bad input (an absurd graph), anything else is ours.
/// Prints the lines a call returned (`explain`, `plan`), or its error.
fn print_lines(result: wasmtime::Result<Result<Vec<String>, RunError>>, graph: &Path) -> i32 {
    match result {
        Ok(Ok(lines)) => {
            for line in lines {
                println!("{line}");
            }
            EXIT_OK
        }
        Ok(Err(e)) => run_error(graph, e),
        Err(e) => call_failed(e),
    }
}

fn call_failed(e: wasmtime::Error) -> i32 {
    let msg = format!("{e:#}");
    let code = if msg.starts_with(crate::OUT_OF_MEMORY) {
        EXIT_BAD_INPUT
    } else {
        EXIT_INTERNAL
    };
    fail(code, &msg)
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
        RunError::InvalidRequest(msg) => fail(EXIT_BAD_INPUT, &msg),
        RunError::Internal(msg) => fail(EXIT_INTERNAL, &msg),
    }
}

fn read_text(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn print_simulation(sim: &crate::Simulation, jobs: u32, scheduler: SchedulerArg) {
    let name = match scheduler {
        SchedulerArg::CriticalPath => "critical-path",
        SchedulerArg::Speed => "speed",
        SchedulerArg::Fifo => "fifo",
        SchedulerArg::Waves => "waves",
    };
    for line in runqueue::text::simulation_lines(&runqueue::text::SimulationFigures {
        jobs,
        scheduler: name,
        makespan_ms: sim.makespan_ms,
        lower_bound_ms: sim.lower_bound_ms,
        critical_path_ms: sim.critical_path_ms,
        work_ms: sim.work_ms,
        peak_parallel: sim.peak_parallel,
        critical_path: &sim.critical_path,
    }) {
        println!("{line}");
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
    let bytes =
        std::fs::read(path).map_err(|e| format!("cannot read graph {}: {e}", path.display()))?;
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "graph {} is not UTF-8 text (bad byte at offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        )
    })
}

/// The component: `explicit`, else `$RUNQUEUE_COMPONENT`, else
/// `runqueue.wasm` next to this program, else where `cargo build --target
/// wasm32-wasip2` puts it relative to this program in the same target
/// directory (release first).
/// The build of the component with the remote cache (wasi:http), found
/// next to the plain one.
pub const REMOTE_COMPONENT: &str = "runqueue-remote.wasm";

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

/// Writes the files `--report`, `--trace` and `--chart` ask for.
fn write_outputs(report: &Report, show: &Show) -> Result<(), String> {
    let write = |path: &Option<PathBuf>, text: String| match path {
        Some(p) => {
            std::fs::write(p, text).map_err(|e| format!("cannot write {}: {e}", p.display()))
        }
        None => Ok(()),
    };
    write(
        &show.report,
        serde_json::to_string_pretty(&outputs::json_report(report)).expect("json") + "\n",
    )?;
    write(&show.trace, outputs::chrome_trace(report))?;
    write(&show.chart, outputs::svg_chart(report))
}

fn parse_timeout(s: &str) -> Result<std::time::Duration, String> {
    match s.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs > 0.0 && secs < 1e9 => {
            Ok(std::time::Duration::from_secs_f64(secs))
        }
        _ => Err(format!("{s:?} is not a positive number of seconds")),
    }
}

fn parse_stall(s: &str) -> Result<std::time::Duration, String> {
    if s.trim() == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    parse_timeout(s)
}

/// Counts Ctrl-C (SIGINT) and SIGTERM: the first asks the build to start
/// nothing new and wait, the second to kill the running tasks.
fn interrupt_requests() -> tokio::sync::watch::Receiver<u32> {
    use tokio::signal::unix::{signal, SignalKind};
    let (tx, rx) = tokio::sync::watch::channel(0u32);
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return rx;
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            let n = *tx.borrow() + 1;
            if n == 2 {
                eprintln!("runqueue: interrupted again: killing the running tasks");
            }
            if tx.send(n).is_err() {
                return;
            }
        }
    });
    rx
}
