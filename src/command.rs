//! `wasi:cli/run`: the runqueue command line inside the component, for
//! `wasmtime run` of the composed component. Its subcommands, options,
//! defaults, messages and output are the bundled host's ([`crate::cli`]);
//! files are read and written through the preopened directories (the
//! workspace is the directory preopened as `.`).
//!
//! WASI 0.2 carries only success or failure out of `run`: bad input and
//! failed tasks both exit 1 here (the bundled host exits 2 and 1).

use std::path::Path;

use crate::api;
use crate::cli::args::{self, Request};
use crate::cli::{error_exit, lines, read_graph, read_text, EXIT_OK};
use crate::component::exports::wasi::cli::run::Guest as Run;
use crate::component::{run_on_host, Component, WORKSPACE};

/// Prints a line to stdout; a closed stdout (`| head`) is not an error
/// worth a panic.
fn say(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

impl Run for Component {
    fn run() -> Result<(), ()> {
        let args: Vec<String> = wasip2::cli::environment::get_arguments();
        let code = match main(args.get(1..).unwrap_or_default()) {
            Ok(code) => code,
            Err(msg) => {
                eprintln!("runqueue: {msg}");
                fail()
            }
        };
        if code == EXIT_OK {
            Ok(())
        } else {
            fail()
        }
    }
}

/// Ends the command as failed through `wasi:cli/exit`, so that the
/// component's own output stays the last word: a runtime given `err` from
/// `run` may add its own (jco prints a JavaScript `ComponentError` stack).
fn fail() -> ! {
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    wasip2::cli::exit::exit(Err(()));
    unreachable!("wasi:cli/exit does not return")
}

/// Runs one command line: the exit code, or the message of bad input.
fn main(args: &[String]) -> Result<i32, String> {
    let request = args::parse(args)?;
    let graph = match &request {
        Request::Check { graph }
        | Request::Plan { graph, .. }
        | Request::Simulate { graph, .. }
        | Request::Explain { graph, .. }
        | Request::Build { graph, .. } => graph.clone(),
    };
    let text = read_graph(Path::new(&graph))?;
    let failed = |e: api::Error| error_exit(&graph, &e).1;
    let ws = Path::new(WORKSPACE);
    match request {
        Request::Check { .. } => {
            let summary = api::check(&text).map_err(failed)?;
            lines::check_lines(&graph, &summary)
                .iter()
                .for_each(|l| say(l));
        }
        Request::Plan {
            cache,
            trusted_keys,
            ..
        } => {
            let out = api::plan(&text, ws, cache.as_deref(), &trusted_keys).map_err(failed)?;
            out.iter().for_each(|l| say(l));
        }
        Request::Explain {
            task,
            cache,
            trusted_keys,
            ..
        } => {
            let out = api::explain(&text, &task, ws, cache.as_deref(), &trusted_keys);
            let out = out.map_err(failed)?;
            out.iter().for_each(|l| say(l));
        }
        Request::Simulate {
            jobs,
            durations,
            policy,
            cache,
            memory_limit,
            ..
        } => {
            let durations = durations.map(|p| read_text(Path::new(&p))).transpose()?;
            let options = api::SimulateOptions {
                max_parallel: jobs,
                policy,
                durations,
                cache_dir: cache,
                memory_limit,
            };
            let sim = api::simulate(&text, &options).map_err(failed)?;
            let out = lines::simulation_lines(&sim, jobs, policy);
            out.iter().for_each(|l| say(l));
        }
        Request::Build { options, .. } => {
            let report = run_on_host(&text, &options).map_err(failed)?;
            return Ok(summary(&report));
        }
    }
    Ok(EXIT_OK)
}

/// Prints the build's summary lines; the exit code.
fn summary(report: &crate::run::report::Report) -> i32 {
    let out = lines::summary_lines(&lines::Tally {
        total: report.tasks.len() as u32,
        succeeded: report.succeeded as u32,
        cached: report.cached as u32,
        cut_off: report.cut_off as u32,
        failed: report.failed as u32,
        not_run: report.not_run as u32,
        oom_reruns: report.oom_reruns as u32,
        peak_parallel: report.peak_parallel as u32,
        max_parallel: report.max_parallel as u32,
        wall_ms: report.wall_ms,
    });
    out.iter().for_each(|line| say(line));
    crate::cli::build_exit_code(report.all_done())
}
