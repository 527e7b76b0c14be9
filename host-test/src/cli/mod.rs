//! The `runqueue` command: parses the arguments ([`args`]) and sends each
//! subcommand to its function ([`build`], [`read`]), turning failures into
//! exit codes ([`failure`]) with the component [`loader`] finds. The words it
//! shares with the component's own command line (defaults, value parsing,
//! graph reading, exit codes, messages, printed lines) are
//! [`runqueue::cli`]'s. Knows nothing of scheduling; that is the
//! component's.

mod args;
mod build;
mod cache;
mod failure;
mod loader;
mod read;
mod submitted;

use std::ffi::OsString;

use clap::Parser;
use runqueue::cli::{read_text, EXIT_BAD_INPUT, EXIT_OK};

use crate::ImportOptions;
use args::{Cli, Request};
use failure::{bad_input, Failure};
use loader::Loader;
use read::{check, explain, graph_text, import_dot, keygen, plan, simulate};

pub use loader::{find_component, COMPONENT_ENV, REMOTE_COMPONENT};
pub use submitted::submitted;

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
    if let Request::Watchdog = cli.request {
        crate::process::run_watchdog(std::io::stdin().lock());
        return EXIT_OK;
    }
    let cli = match cli {
        Cli {
            request: Request::Serve(args),
            component,
            max_memory,
        } => return serve(args, component.as_deref(), max_memory),
        cli => cli,
    };
    // One thread: the component is single-threaded anyway, and a child's
    // exit then wakes the component without a hop between threads. Exits
    // are stamped by reaper threads, files jobs run on the blocking pool.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run_cli(cli)) {
        Ok(code) => code,
        Err(Failure(code, msg)) => {
            eprintln!("runqueue: {msg}");
            code
        }
    }
}

/// `runqueue serve`, once the component is found; it reads the requests'
/// build options with this command line's parser.
fn serve(args: crate::serve::Args, component: Option<&std::path::Path>, max_memory: u64) -> i32 {
    match find_component(component) {
        Ok(path) => crate::serve::main(args, &path, max_memory, submitted::submitted),
        Err(msg) => {
            eprintln!("runqueue serve: {msg}");
            runqueue::cli::EXIT_INTERNAL
        }
    }
}

async fn run_cli(cli: Cli) -> Result<i32, Failure> {
    let loader = Loader {
        component: cli.component.clone(),
        max_memory: cli.max_memory,
    };
    match cli.request {
        Request::Watchdog | Request::Serve(_) => unreachable!("handled before"),
        Request::Keygen {
            name,
            secret,
            public,
        } => keygen(&name, &secret, &public),
        Request::Check { graph } => check(&loader, &graph).await,
        Request::Explain {
            graph,
            task,
            trust,
            place,
        } => explain(&loader, &graph, &task, &trust, &place).await,
        Request::Plan {
            graph,
            trust,
            place,
        } => plan(&loader, &graph, &trust, &place).await,
        Request::Simulate {
            graph,
            jobs,
            durations,
            scheduler,
            memory_limit,
            place,
        } => {
            simulate(
                &loader,
                &graph,
                (jobs, memory_limit.filter(|&m| m > 0)),
                durations.as_deref(),
                scheduler,
                &place,
            )
            .await
        }
        Request::ImportDot {
            file,
            run,
            durations,
            scale,
            output,
        } => {
            let text = graph_text(&file)?;
            let options = ImportOptions {
                run_template: run,
                durations: durations
                    .as_deref()
                    .map(read_text)
                    .transpose()
                    .map_err(bad_input)?,
                scale,
            };
            import_dot(&loader, &file, &text, &options, output.as_deref()).await
        }
        Request::Worker(args) => Ok(crate::worker::run(args).await),
        Request::Cache(request) => cache_request(request),
        request @ Request::Build { .. } => build::build(&loader, request).await,
    }
}

fn cache_request(request: args::CacheRequest) -> Result<i32, Failure> {
    match request {
        args::CacheRequest::Gc { cache: dir, bounds } => cache::gc(&dir, bounds.limits()),
        args::CacheRequest::Stats { cache: dir } => cache::stats(&dir),
        args::CacheRequest::Verify { cache: dir } => cache::verify(&dir),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every option the component's own command line takes for a
    /// subcommand is one this command line takes for it too.
    #[test]
    fn the_component_cli_is_a_subset_of_this_one() {
        let cli = Cli::command();
        for spec in runqueue::cli::args::SUBCOMMANDS {
            let sub = cli
                .find_subcommand(spec.name)
                .unwrap_or_else(|| panic!("no subcommand {}", spec.name));
            let positional = sub.get_positionals().count();
            assert_eq!(positional, spec.positional.len(), "{}", spec.name);
            for option in spec.options {
                let long = option.trim_start_matches("--");
                assert!(
                    sub.get_arguments().any(|a| a.get_long() == Some(long)),
                    "{} {option}",
                    spec.name
                );
            }
        }
    }
}
