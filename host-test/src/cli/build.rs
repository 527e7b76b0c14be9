//! `runqueue build`: the workspace lock, the options and controls a build
//! runs with, the console, interrupts, stray processes, and the files it
//! writes afterwards (report, trace, chart).
//!
//! Knows a build's surroundings on this machine; the build itself is the
//! component's.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use runqueue::cli::build_exit_code;

use super::args::{Request, Show, REMOTE_JOBS};
use super::failure::{answer, bad_input, Failure};
use super::loader::Loader;
use super::read::{graph_text, open_workspace};
use crate::console::{Console, Verbosity};
use crate::outputs;
use crate::process::{Activity, Isolation, JobserverMode};
use crate::workspace_lock::{Holder, WorkspaceLock};
use crate::{CallResult, Controls, Report, RunOptions, Runqueue, Summary, Workspace};

/// `-j`, `--no-jobserver` and `--memory-limit` as a build uses them: for a
/// remote executor, remote slots (default [`REMOTE_JOBS`]) and no local
/// jobserver or memory budget, which describe this machine.
pub(super) fn local_limits(
    remote: bool,
    given: (Option<u32>, bool, Option<u64>),
) -> (Option<u32>, bool, Option<u64>) {
    let (jobs, no_jobserver, memory_limit) = given;
    match remote {
        true => (jobs.or(Some(REMOTE_JOBS)), true, Some(0)),
        false => (jobs, no_jobserver, memory_limit),
    }
}

/// No jobserver when asked; serving `-j` slots when given; else joining
/// the make jobserver runqueue runs under, if any (as make and Ninja do),
/// or serving one slot per CPU.
pub(super) fn jobserver_mode(jobs: Option<u32>, off: bool) -> JobserverMode {
    match (off, jobs) {
        (true, _) => JobserverMode::Off,
        (false, Some(j)) => JobserverMode::Serve(j),
        (false, None) => JobserverMode::JoinOr(crate::files::cpus() as u32),
    }
}

pub(super) async fn build(loader: &Loader, request: Request) -> Result<i32, Failure> {
    let Request::Build {
        graph,
        jobs,
        keep_going,
        scheduler,
        timeout,
        stall_warning,
        allow_program,
        remote_cache,
        remote_cache_read_only,
        remote_cache_timeout,
        no_cutoff,
        check_reproducible,
        memory_limit,
        cache_max_size,
        no_jobserver,
        require_isolation,
        no_wait,
        keys,
        place,
        show,
        remote_exec,
    } = request
    else {
        unreachable!("called for build")
    };
    let text = graph_text(&graph)?;
    let ws = open_workspace(&place)?;
    let executor = remote_exec.open().await?;
    let (jobs, no_jobserver, memory_limit) =
        local_limits(executor.is_some(), (jobs, no_jobserver, memory_limit));
    let remote = remote_of(remote_cache, remote_cache_read_only, remote_cache_timeout)?;
    if remote.is_some() && place.no_cache {
        let why = "--remote-cache needs a local cache to read through (drop --no-cache)";
        return Err(bad_input(why));
    }
    check_writable(&show).map_err(bad_input)?;
    let (signing_key, trusted_keys) = keys.texts()?;
    let rq = loader.load(remote.is_some())?;
    let options = RunOptions {
        max_parallel: jobs,
        keep_going,
        cache: place.cache(),
        scheduler: crate::to_wit_scheduler(scheduler),
        log_dir: Some(show.logs.clone()),
        timeout,
        remote_cache: remote,
        signing_key,
        trusted_keys,
        no_cutoff,
        check_reproducible,
        memory_limit,
    };
    let _lock = hold_workspace(&ws, no_wait, || rq.check(&text), &graph).await?;
    let controls = Controls {
        jobserver: jobserver_mode(jobs, no_jobserver),
        interrupts: Some(interrupt_requests()),
        watchdog: std::env::current_exe().ok(),
        allowed_programs: (!allow_program.is_empty()).then_some(allow_program),
        activity: Some(Activity::default()),
        executor,
        shared_slots: None,
        isolation: isolation_of(require_isolation),
    };
    let console = console_for(&show, &ws, &controls, stall_warning);
    let run = (&rq, text.as_str(), &options, &controls, &ws);
    let report = answer(&graph, run_watched(run, &console).await)?;
    console.summary(&report);
    write_outputs(&report, &show).map_err(bad_input)?;
    if let (Some(max_bytes), Some(cache)) = (cache_max_size, place.cache()) {
        collect_after(&place.workspace.join(cache), max_bytes);
    }
    // Failed, or stopped before everything ran (interrupted).
    let t = &report.totals;
    Ok(build_exit_code(t.failed == 0 && t.not_run == 0))
}

/// `--cache-max-size`: collects the cache as `runqueue cache gc` would
/// with its defaults, unless another collection is at it; says what it did
/// on stderr, and a failure only warns (the build's result stands).
fn collect_after(cache: &std::path::Path, max_bytes: u64) {
    let limits = super::cache::Limits {
        max_bytes,
        max_age_secs: None,
        grace_secs: super::cache::DEFAULT_GRACE_SECS,
    };
    match super::cache::collect(cache, limits, false) {
        Ok(Some(done)) => eprintln!("cache: {}", done.summary()),
        Ok(None) => eprintln!("cache: another collection is running; not collected"),
        Err(e) => eprintln!("warning: cache not collected: {e}"),
    }
}

/// What `--require-isolation` asks for.
pub(super) fn isolation_of(required: bool) -> Isolation {
    match required {
        true => Isolation::Required,
        false => Isolation::WhereAllowed,
    }
}

/// Runs the build, shown on `console`; tasks' orphans become ours
/// meanwhile, so none outlives the build.
async fn run_watched(
    (rq, text, options, controls, ws): (&Runqueue, &str, &RunOptions, &Controls, &Workspace),
    console: &Console,
) -> CallResult<Report> {
    let subreaper = crate::process::strays::become_subreaper();
    let ticker = console.start_ticker();
    let events = console.clone();
    let result = rq
        .run_controlled(text, options, controls, ws, move |e| events.event(e))
        .await;
    ticker.abort();
    if subreaper {
        kill_strays();
    }
    result
}

/// The workspace for this build alone. When another build holds it: exit
/// 2 (`--no-wait`, or a build nested in the holder), else refuse a bad
/// graph first (`check`) and wait, saying once who holds it.
pub(super) async fn hold_workspace<F: Future<Output = CallResult<Summary>>>(
    ws: &Workspace,
    no_wait: bool,
    check: impl FnOnce() -> F,
    graph: &Path,
) -> Result<WorkspaceLock, Failure> {
    let root = ws.root().to_path_buf();
    let locked =
        |e: std::io::Error| bad_input(format!("cannot lock workspace {}: {e}", root.display()));
    let holder = match WorkspaceLock::try_lock(&root).map_err(locked)? {
        Ok(lock) => return Ok(lock),
        Err(holder) => holder,
    };
    let busy = holder.describe(&root);
    if no_wait || matches!(holder, Holder::Ancestor(_)) {
        return Err(bad_input(busy));
    }
    answer(graph, check().await)?;
    eprintln!("runqueue: {busy}; waiting for it to finish…");
    WorkspaceLock::lock_async(root.clone())
        .await
        .map_err(locked)
}

/// The console a build prints to, watching for stalled tasks.
pub(super) fn console_for(
    show: &Show,
    ws: &Workspace,
    controls: &Controls,
    stall: Duration,
) -> Console {
    let verbosity = if show.quiet {
        Verbosity::Quiet
    } else if show.verbose {
        Verbosity::Verbose
    } else {
        Verbosity::Normal
    };
    let console = Console::new(verbosity, ws.root().to_path_buf(), show.tail);
    if let (false, Some(activity)) = (stall.is_zero(), &controls.activity) {
        console.watch_stalls(activity.clone(), stall);
    }
    console
}

/// Refuses, before anything runs, a `--report`, `--trace` or `--chart`
/// path that could not be written after the build: a directory in its
/// place, or a file where one of its directories should be. Missing
/// directories are made when the file is written. Nothing is created here.
pub(super) fn check_writable(show: &Show) -> Result<(), String> {
    let given = [
        ("--report", &show.report),
        ("--trace", &show.trace),
        ("--chart", &show.chart),
    ];
    for (option, path) in given {
        let Some(path) = path else { continue };
        if path.is_dir() {
            return Err(format!("{option} {}: is a directory", path.display()));
        }
        let existing = path
            .ancestors()
            .skip(1)
            .find(|a| a.as_os_str().is_empty() || a.exists());
        if let Some(a) = existing.filter(|a| !a.as_os_str().is_empty() && !a.is_dir()) {
            return Err(format!(
                "{option} {}: {} is not a directory",
                path.display(),
                a.display()
            ));
        }
    }
    Ok(())
}

/// The remote cache `--remote-cache` and its options ask for.
pub(super) fn remote_of(
    url: Option<String>,
    read_only: bool,
    timeout: Duration,
) -> Result<Option<crate::RemoteCache>, Failure> {
    let remote = url.map(|url| crate::RemoteCache::new(&url)).transpose();
    Ok(remote.map_err(bad_input)?.map(|r| crate::RemoteCache {
        read_only,
        timeout,
        ..r
    }))
}

/// Kills what tasks left running outside their process groups, saying so.
pub(super) fn kill_strays() {
    let killed = crate::process::strays::kill(None);
    if !killed.is_empty() {
        eprintln!(
            "runqueue: warning: killed {} process(es) that tasks left running: {}",
            killed.len(),
            killed.join(", ")
        );
    }
}

/// Writes the files `--report`, `--trace` and `--chart` ask for.
pub(super) fn write_outputs(report: &Report, show: &Show) -> Result<(), String> {
    let write = |path: &Option<PathBuf>, text: String| match path {
        Some(p) => p
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(p, text))
            .map_err(|e| format!("cannot write {}: {e}", p.display())),
        None => Ok(()),
    };
    write(
        &show.report,
        serde_json::to_string_pretty(&outputs::json_report(report)).expect("json") + "\n",
    )?;
    write(&show.trace, outputs::chrome_trace(report))?;
    write(&show.chart, outputs::svg_chart(report))
}

/// Counts Ctrl-C (SIGINT) and SIGTERM: the first asks the build to start
/// nothing new and wait, the second to kill the running tasks.
pub(super) fn interrupt_requests() -> tokio::sync::watch::Receiver<u32> {
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
