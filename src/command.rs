//! `wasi:cli/run`: the runqueue command line inside the component, for
//! `wasmtime run` of the composed component. Same subcommands, options and
//! output as the bundled host's `runqueue` where they make sense; files are
//! read and written through the preopened directories (the workspace is
//! the directory preopened as `.`).
//!
//! WASI 0.2 carries only success or failure out of `run`: bad input and
//! failed tasks both exit 1 here (the bundled host exits 2 and 1).

use crate::component::exports::runqueue::executor::runner::{self as wit_runner, Guest as _};
use crate::component::exports::wasi::cli::run::Guest as Run;
use crate::component::Component;

/// The cache when neither `--cache` nor `--no-cache` is given; the host's
/// default too.
const DEFAULT_CACHE: &str = ".runqueue/cache";

/// Prints a line to stdout; a closed stdout (`| head`) is not an error
/// worth a panic.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// Remote cache requests: each may take this long, this many at once (the
/// host's defaults too).
const REMOTE_TIMEOUT_MS: u32 = 10_000;
const REMOTE_CONCURRENCY: u32 = 16;

const USAGE: &str = "usage: runqueue check GRAPH
       runqueue plan GRAPH [--cache DIR | --no-cache]
       runqueue simulate GRAPH [-j N] [--durations FILE] [--scheduler S] [--cache DIR | --no-cache]
       runqueue explain GRAPH TASK [--cache DIR]
       runqueue build GRAPH [-j N] [-k] [--scheduler S] [--timeout SECS] [--logs DIR] [--cache DIR | --no-cache]
                      [--remote-cache URL [--remote-cache-read-only]]";

impl Run for Component {
    fn run() -> Result<(), ()> {
        let args: Vec<String> = wasip2::cli::environment::get_arguments();
        match main(args.get(1..).unwrap_or_default()) {
            Ok(true) => Ok(()),
            Ok(false) => Err(()),
            Err(msg) => {
                eprintln!("runqueue: {msg}");
                Err(())
            }
        }
    }
}

/// The parsed options; each subcommand uses its own.
struct Args {
    positional: Vec<String>,
    jobs: Option<u32>,
    keep_going: bool,
    cache: Option<String>,
    durations: Option<String>,
    scheduler: wit_runner::Scheduler,
    timeout_ms: Option<u64>,
    logs: Option<String>,
    remote: Option<String>,
    remote_read_only: bool,
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut out = Args {
        positional: Vec::new(),
        jobs: None,
        keep_going: false,
        cache: Some(DEFAULT_CACHE.to_string()),
        durations: None,
        scheduler: wit_runner::Scheduler::CriticalPath,
        timeout_ms: None,
        logs: None,
        remote: None,
        remote_read_only: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
        };
        match a.as_str() {
            "-j" | "--jobs" => {
                let v = value(a)?;
                match v.parse::<u32>() {
                    Ok(n) if n >= 1 => out.jobs = Some(n),
                    _ => {
                        return Err(format!(
                            "-j {v:?}: give a whole number of slots, at least 1"
                        ))
                    }
                }
            }
            "-k" | "--keep-going" => out.keep_going = true,
            "--cache" => out.cache = Some(value(a)?),
            "--no-cache" => out.cache = None,
            "--durations" => out.durations = Some(value(a)?),
            "--logs" => out.logs = Some(value(a)?),
            "--remote-cache" => out.remote = Some(value(a)?),
            "--remote-cache-read-only" => out.remote_read_only = true,
            "--timeout" => {
                let v = value(a)?;
                match v.parse::<f64>() {
                    Ok(s) if s.is_finite() && s > 0.0 && s < 1e9 => {
                        out.timeout_ms = Some((s * 1000.0).ceil() as u64)
                    }
                    _ => {
                        return Err(format!(
                            "--timeout {v:?} is not a positive number of seconds"
                        ))
                    }
                }
            }
            "--scheduler" => {
                out.scheduler = match value(a)?.as_str() {
                    "critical-path" => wit_runner::Scheduler::CriticalPath,
                    "speed" => wit_runner::Scheduler::Speed,
                    "fifo" => wit_runner::Scheduler::Fifo,
                    "waves" => wit_runner::Scheduler::Waves,
                    other => return Err(format!("unknown scheduler {other:?}\n{USAGE}")),
                }
            }
            s if s.starts_with('-') && s.len() > 1 => {
                return Err(format!("unknown option {s}\n{USAGE}"))
            }
            _ => out.positional.push(a.clone()),
        }
    }
    Ok(out)
}

fn read(path: &str, what: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {what} {path}: {e}"))
}

fn scheduler_name(s: wit_runner::Scheduler) -> &'static str {
    match s {
        wit_runner::Scheduler::CriticalPath => "critical-path",
        wit_runner::Scheduler::Speed => "speed",
        wit_runner::Scheduler::Fifo => "fifo",
        wit_runner::Scheduler::Waves => "waves",
    }
}

/// Runs one command line; `Ok(false)` is a build with failed tasks.
fn main(args: &[String]) -> Result<bool, String> {
    let (command, rest) = args.split_first().ok_or_else(|| USAGE.to_string())?;
    let a = parse_args(rest)?;
    let wants = |n: usize| {
        if a.positional.len() == n {
            Ok(())
        } else {
            Err(format!("{command}: wrong number of arguments\n{USAGE}"))
        }
    };
    let graph_path = a.positional.first().cloned().unwrap_or_default();
    let invalid = |e: wit_runner::Error| match e {
        wit_runner::Error::InvalidGraph(m) => format!("invalid graph {graph_path}: {m}"),
        wit_runner::Error::InvalidRequest(m) | wit_runner::Error::Internal(m) => m,
    };
    let options = wit_runner::Options {
        max_parallel: a.jobs,
        keep_going: a.keep_going,
        cache_dir: a.cache.clone(),
        scheduler: a.scheduler,
        log_dir: a.logs.clone(),
        timeout_ms: a.timeout_ms,
        remote_cache: a.remote.clone().map(|url| wit_runner::RemoteCache {
            url,
            read_only: a.remote_read_only,
            timeout_ms: REMOTE_TIMEOUT_MS,
            concurrency: REMOTE_CONCURRENCY,
        }),
    };
    match command.as_str() {
        "check" => {
            wants(1)?;
            let s = Component::check(read(&graph_path, "graph")?).map_err(invalid)?;
            for line in crate::text::check_lines(
                &graph_path,
                s.tasks,
                s.edges,
                s.roots,
                s.finals,
                &s.longest_path,
            ) {
                say!("{line}");
            }
        }
        "plan" => {
            wants(1)?;
            for line in Component::plan(read(&graph_path, "graph")?, options).map_err(invalid)? {
                say!("{line}");
            }
        }
        "explain" => {
            wants(2)?;
            let task = a.positional[1].clone();
            for line in
                Component::explain(read(&graph_path, "graph")?, task, options).map_err(invalid)?
            {
                say!("{line}");
            }
        }
        "simulate" => {
            wants(1)?;
            let jobs = a.jobs.unwrap_or(8);
            let durations = a
                .durations
                .as_deref()
                .map(|p| read(p, "durations"))
                .transpose()?;
            let sim = Component::simulate(
                read(&graph_path, "graph")?,
                wit_runner::SimulateOptions {
                    max_parallel: jobs,
                    scheduler: a.scheduler,
                    durations,
                    cache_dir: a.cache.clone(),
                },
            )
            .map_err(invalid)?;
            print_simulation(&sim, jobs, scheduler_name(a.scheduler));
        }
        "build" => {
            wants(1)?;
            let report =
                <Component as wit_runner::Guest>::run(read(&graph_path, "graph")?, options)
                    .map_err(invalid)?;
            let t = &report.totals;
            for line in crate::text::summary_lines(&crate::text::Tally {
                total: t.total,
                succeeded: t.succeeded,
                cached: t.cached,
                failed: t.failed,
                not_run: t.not_run,
                peak_parallel: t.peak_parallel,
                max_parallel: report.max_parallel,
                wall_ms: t.wall_ms,
            }) {
                say!("{line}");
            }
            return Ok(t.failed == 0 && t.not_run == 0);
        }
        other => return Err(format!("unknown command {other:?}\n{USAGE}")),
    }
    Ok(true)
}

/// The simulation as the host's `runqueue simulate` prints it.
fn print_simulation(sim: &wit_runner::Simulation, jobs: u32, scheduler: &str) {
    for line in crate::text::simulation_lines(&crate::text::SimulationFigures {
        jobs,
        scheduler,
        makespan_ms: sim.makespan_ms,
        lower_bound_ms: sim.lower_bound_ms,
        critical_path_ms: sim.critical_path_ms,
        work_ms: sim.work_ms,
        peak_parallel: sim.peak_parallel,
        critical_path: &sim.critical_path,
    }) {
        say!("{line}");
    }
}
