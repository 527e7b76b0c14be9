//! Runs a plan: starts tasks through a [`Processes`] provider while slots are
//! free, otherwise awaits the next process to end, and records what happened.
//!
//! Knows the plan, the graph and the report; knows nothing of WIT or of how
//! processes are made, so the same loop runs in the component (over the
//! host's `process` interface) and in native tests (over fakes).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use futures::stream::{FuturesUnordered, StreamExt};

use std::path::PathBuf;

use crate::cache::{Cache, FileModes};
use crate::estimate::{expected_durations, mean};
use crate::graph::{Action, Graph, TaskId};
use crate::plan::{longest_chain, remaining_path, Plan, Policy, SkipReason, TaskState};
use crate::remote::{self, Remote};
use crate::signature::{hash_inputs, sig_parts};
use crate::sstate::{check_outputs, check_paths, setscene, store, Fate, PendingStore};

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
}

impl ExitStatus {
    pub fn success(self) -> bool {
        self == ExitStatus::Code(0)
    }
}

/// How a timed-out task's failure reads: "timed out after 2.5 s".
pub fn describe_timeout(ms: u64) -> String {
    format!("timed out after {} s", ms as f64 / 1000.0)
}

/// Describes a failed status in words: "exited with code 2", "killed by
/// signal 9 (SIGKILL)".
pub fn describe_status(status: ExitStatus) -> String {
    match status {
        ExitStatus::Code(c) => format!("exited with code {c}"),
        ExitStatus::Signal(s) => match signal_name(s) {
            Some(name) => format!("killed by signal {s} ({name})"),
            None => format!("killed by signal {s}"),
        },
    }
}

fn signal_name(sig: i32) -> Option<&'static str> {
    Some(match sig {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        6 => "SIGABRT",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        _ => return None,
    })
}

/// A process to start, with every path relative to the workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub program: String,
    pub args: Vec<String>,
    pub cwd: String,
    pub env: Vec<(String, String)>,
    pub log: String,
    /// Kill it (with its process group) after this many ms; the exit is
    /// then an error saying so.
    pub timeout_ms: Option<u64>,
}

/// A started process's end: its exit status, or why it could not be waited
/// for.
pub type Exit = Pin<Box<dyn Future<Output = Result<ExitStatus, String>>>>;

/// What the loop needs from its surroundings: processes, a clock, file
/// modes (which WASI cannot see) and someone to tell.
pub trait Processes: FileModes {
    /// Starts `cmd`; returns its pid and a future of its end. An error is a
    /// spawn failure, in words.
    fn spawn(&mut self, cmd: &Command) -> Result<(u32, Exit), String>;
    /// Milliseconds on a monotonic clock.
    fn now_ms(&self) -> u64;
    /// Resolves once the build is asked to stop (Ctrl-C); may never.
    fn interrupted(&mut self) -> Pin<Box<dyn Future<Output = ()>>>;
    /// Told of each event as it happens.
    fn event(&mut self, event: Event<'_>);
    /// A cache shared across machines, if one is configured (see
    /// [`crate::remote`]).
    fn remote(&self) -> Option<&dyn Remote> {
        None
    }
}

/// Something that happened during a run.
#[derive(Debug)]
pub enum Event<'a> {
    /// Before anything starts: the number of tasks and how many the cache
    /// covers.
    Planned {
        total: usize,
        cached: usize,
    },
    Started {
        task: &'a TaskRecord,
        running: usize,
    },
    Finished(&'a TaskRecord),
    /// Something went wrong that does not fail the build (a corrupt cache
    /// entry, a cache that cannot be written).
    Warning(&'a str),
}

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub max_parallel: usize,
    pub keep_going: bool,
    /// Environment every task starts from, below the graph's and the task's
    /// own (PATH, typically).
    pub base_env: BTreeMap<String, String>,
    /// Directory for task logs, relative to the workspace.
    pub log_dir: String,
    /// The workspace as this code sees it (`.` in the component).
    pub workspace: PathBuf,
    /// The artifact cache; `None` runs every task and stores nothing.
    pub cache: Option<Cache>,
    /// Unique to this run: makes `nostamp` signatures differ every time.
    pub run_nonce: String,
    /// How ready tasks are ordered.
    pub policy: Policy,
    /// The timeout of tasks whose graph entry gives none.
    pub default_timeout_ms: Option<u64>,
    /// With a remote cache ([`Processes::remote`]): requests in flight at
    /// once, and whether to only read from it.
    pub remote_concurrency: usize,
    pub remote_read_only: bool,
}

/// A task's final state, as reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Failed,
    NotRun,
    /// Covered by the cache: not run, outputs restored if needed.
    Cached,
}

/// What is known about one task; complete once the run ends.
#[derive(Debug, Clone)]
pub struct TaskRecord {
    pub id: String,
    pub outcome: Option<Outcome>,
    pub exit: Option<ExitStatus>,
    pub message: Option<String>,
    pub pid: Option<u32>,
    pub start_ms: Option<u64>,
    pub end_ms: Option<u64>,
    pub log: Option<String>,
    pub signature: Option<String>,
    /// For cached tasks: whether its outputs were restored.
    pub restored: bool,
}

/// The result of a run.
#[derive(Debug, Clone)]
pub struct Report {
    /// Every task, in graph order.
    pub tasks: Vec<TaskRecord>,
    pub succeeded: usize,
    pub failed: usize,
    pub not_run: usize,
    pub cached: usize,
    pub peak_parallel: usize,
    pub wall_ms: u64,
    pub max_parallel: usize,
    /// The longest chain by the time tasks actually took, first task first.
    pub critical_path: Vec<TaskId>,
}

/// The log file of a task: `<log_dir>/<recipe>/log.<task>` for ids of the
/// form `recipe:task` (BitBake's `${T}/log.do_task`), `<log_dir>/log.<id>`
/// otherwise, with characters that are unsafe in file names replaced.
pub fn log_path(log_dir: &str, id: &str) -> String {
    match id.split_once(':') {
        Some((recipe, task)) => format!("{log_dir}/{}/log.{}", file_safe(recipe), file_safe(task)),
        None => format!("{log_dir}/log.{}", file_safe(id)),
    }
}

fn file_safe(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_+.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with('.') {
        out.insert(0, '_');
    }
    out
}

/// The command for a task, or `None` for a task with nothing to run.
pub fn command_for(graph: &Graph, id: TaskId, opts: &RunOptions) -> Option<Command> {
    let task = graph.task(id);
    let (program, args) = match &task.action {
        Action::Nothing => return None,
        Action::Shell(text) => ("sh".to_string(), vec!["-c".to_string(), text.clone()]),
        Action::Argv(argv) => (argv[0].clone(), argv[1..].to_vec()),
    };
    let mut env = opts.base_env.clone();
    env.extend(graph.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    env.extend(task.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    Some(Command {
        program,
        args,
        cwd: task.cwd.clone(),
        env: env.into_iter().collect(),
        log: log_path(&opts.log_dir, &task.id),
        timeout_ms: task.timeout_ms.or(opts.default_timeout_ms),
    })
}

/// Runs every task of `graph` that the cache does not cover and the plan
/// allows, and reports on all of them. Task failures are in the report;
/// `Err` is bad input found in the workspace (a missing input file, an
/// output path through a symlink leading out), before anything ran.
pub async fn run<P: Processes>(
    graph: &Graph,
    opts: &RunOptions,
    procs: &mut P,
) -> Result<Report, String> {
    let ws = &opts.workspace;
    check_paths(graph, ws)?;
    let sigs = sig_parts(graph, hash_inputs(graph, ws)?, &opts.run_nonce);
    let t0 = procs.now_ms();
    if let (Some(cache), Some(remote)) = (&opts.cache, procs.remote()) {
        // Read-through: what the local cache lacks comes from the remote
        // into the local cache, checked; setscene then restores locally.
        let wanted: Vec<String> = graph
            .ids()
            .filter(|id| !graph.task(*id).nostamp)
            .map(|id| sigs[id.index()].1.clone())
            .collect();
        let stats = remote::pull(remote, cache, &wanted, opts.remote_concurrency).await;
        for w in &stats.warnings {
            procs.event(Event::Warning(w));
        }
    }
    let fates = match &opts.cache {
        Some(cache) => {
            let mut warnings = Vec::new();
            let fates = setscene(graph, &sigs, cache, ws, &*procs, &mut |w| warnings.push(w));
            for w in &warnings {
                procs.event(Event::Warning(w));
            }
            fates
        }
        None => vec![Fate::Run; graph.len()],
    };
    // Expected durations: what history recorded for tasks that will run;
    // covered tasks end at once and add nothing to a path.
    let known: Vec<Option<u64>> = graph
        .ids()
        .map(|id| match (&opts.cache, fates[id.index()]) {
            (Some(cache), Fate::Run) => cache
                .history(&graph.task(id).id)
                .and_then(|h| mean(&h.durations_ms)),
            _ => None,
        })
        .collect();
    let mut expected = expected_durations(graph, &known);
    for (e, fate) in expected.iter_mut().zip(&fates) {
        if *fate != Fate::Run {
            *e = 0;
        }
    }
    procs.event(Event::Planned {
        total: graph.len(),
        cached: fates.iter().filter(|f| **f != Fate::Run).count(),
    });
    let mut plan = Plan::new(
        graph,
        opts.policy,
        opts.policy.priorities(graph, &expected),
        opts.max_parallel,
        opts.keep_going,
    );
    let mut records: Vec<TaskRecord> = graph
        .ids()
        .map(|id| TaskRecord {
            id: graph.task(id).id.clone(),
            outcome: None,
            exit: None,
            message: None,
            pid: None,
            start_ms: None,
            end_ms: None,
            log: None,
            signature: Some(sigs[id.index()].1.clone()),
            restored: false,
        })
        .collect();
    let mut running = FuturesUnordered::new();
    let mut stores: Vec<PendingStore> = Vec::new();
    let mut stored: Vec<String> = Vec::new();
    let mut interrupt = Some(procs.interrupted());
    loop {
        while let Some(id) = plan.start_next() {
            let now = procs.now_ms() - t0;
            let rec = &mut records[id.index()];
            rec.start_ms = Some(now);
            if let Fate::Cached { restored } = fates[id.index()] {
                rec.end_ms = Some(now);
                rec.restored = restored;
                rec.outcome = Some(Outcome::Cached);
                rec.message = Some(
                    if restored {
                        "restored from the cache"
                    } else {
                        "covered by the cache; outputs not needed"
                    }
                    .to_string(),
                );
                plan.finish(id, true);
                procs.event(Event::Finished(rec));
                continue;
            }
            let Some(cmd) = command_for(graph, id, opts) else {
                rec.end_ms = Some(now);
                let ok = after_run(graph, id, opts, 0, procs, &mut stores);
                finish(&mut plan, &mut records[id.index()], id, ok, procs);
                continue;
            };
            rec.log = Some(cmd.log.clone());
            match procs.spawn(&cmd) {
                Ok((pid, exit)) => {
                    rec.pid = Some(pid);
                    procs.event(Event::Started {
                        task: rec,
                        running: plan.running(),
                    });
                    running.push(async move { (id, exit.await) });
                }
                Err(why) => {
                    rec.end_ms = Some(now);
                    rec.log = None; // no process, no log
                    finish(
                        &mut plan,
                        rec,
                        id,
                        Err(format!("cannot start: {why}")),
                        procs,
                    );
                }
            }
        }
        // Slots are full (or nothing is ready): now copy what finished tasks
        // produced into the cache, while their dependents run.
        for job in stores.drain(..) {
            if let Some(cache) = &opts.cache {
                stored.push(sigs[job.id.index()].1.clone());
                let mut warnings = Vec::new();
                store(graph, job, &sigs, cache, &opts.workspace, &mut |w| {
                    warnings.push(w)
                });
                for w in &warnings {
                    procs.event(Event::Warning(w));
                }
            }
        }
        if plan.is_done() {
            break;
        }
        let next = running.next();
        let (id, exit) = match &mut interrupt {
            Some(asked) => match futures::future::select(next, asked).await {
                futures::future::Either::Left((done, _)) => {
                    done.expect("the plan has running tasks, so their processes are awaited")
                }
                futures::future::Either::Right(((), _)) => {
                    interrupt = None;
                    plan.interrupt();
                    let waiting: Vec<&str> = records
                        .iter()
                        .filter(|r| r.pid.is_some() && r.end_ms.is_none())
                        .map(|r| r.id.as_str())
                        .collect();
                    let msg = format!(
                        "interrupted: starting nothing new, waiting for {} running task(s) to finish \
                         (interrupt again to kill them): {}",
                        waiting.len(),
                        waiting.join(", ")
                    );
                    procs.event(Event::Warning(&msg));
                    continue;
                }
            },
            None => next
                .await
                .expect("the plan has running tasks, so their processes are awaited"),
        };
        let rec = &mut records[id.index()];
        let end = procs.now_ms() - t0;
        rec.end_ms = Some(end);
        let duration = end - rec.start_ms.unwrap_or(end);
        let exit = match exit {
            Ok(status) if status.success() => {
                after_run(graph, id, opts, duration, procs, &mut stores)
            }
            other => other,
        };
        finish(&mut plan, &mut records[id.index()], id, exit, procs);
    }
    plan.close();
    if let (Some(cache), Some(remote)) = (&opts.cache, procs.remote()) {
        // Write-through: what this run stored goes up, blobs first.
        if !opts.remote_read_only && !stored.is_empty() {
            let stats = remote::push(remote, cache, &stored, opts.remote_concurrency).await;
            for w in &stats.warnings {
                procs.event(Event::Warning(w));
            }
        }
    }

    for id in graph.ids() {
        let rec = &mut records[id.index()];
        if rec.outcome.is_some() {
            continue;
        }
        let TaskState::Skipped(reason) = plan.state(id) else {
            unreachable!("a closed plan has only final states");
        };
        rec.outcome = Some(Outcome::NotRun);
        rec.message = Some(match reason {
            SkipReason::DependencyFailed(dep) => {
                format!("not run: dependency \"{}\" failed", graph.task(dep).id)
            }
            SkipReason::BuildStopped => {
                "not run: the build stopped after a failure (use -k to keep going)".to_string()
            }
            SkipReason::Interrupted => "not run: the build was interrupted".to_string(),
        });
        procs.event(Event::Finished(rec));
    }
    let count = |o: Outcome| records.iter().filter(|r| r.outcome == Some(o)).count();
    let took = |id: TaskId| {
        let r = &records[id.index()];
        r.end_ms
            .unwrap_or(0)
            .saturating_sub(r.start_ms.unwrap_or(0))
    };
    let critical_path = longest_chain(graph, &remaining_path(graph, took));
    Ok(Report {
        critical_path,
        succeeded: count(Outcome::Succeeded),
        failed: count(Outcome::Failed),
        not_run: count(Outcome::NotRun),
        cached: count(Outcome::Cached),
        peak_parallel: plan.peak_running(),
        wall_ms: procs.now_ms() - t0,
        max_parallel: plan.max_parallel(),
        tasks: records,
    })
}

/// A task's command succeeded: check its declared outputs (a missing or
/// escaping one fails it) and queue them for the cache.
fn after_run<P: Processes>(
    graph: &Graph,
    id: TaskId,
    opts: &RunOptions,
    duration_ms: u64,
    procs: &mut P,
    stores: &mut Vec<PendingStore>,
) -> Result<ExitStatus, String> {
    let job = check_outputs(graph, id, &opts.workspace, duration_ms, &*procs)?;
    if opts.cache.is_some() {
        stores.push(job);
    }
    Ok(ExitStatus::Code(0))
}

/// Records a task's end in the plan and its record, and tells the provider.
fn finish<P: Processes>(
    plan: &mut Plan<'_>,
    rec: &mut TaskRecord,
    id: TaskId,
    exit: Result<ExitStatus, String>,
    procs: &mut P,
) {
    let success = match exit {
        Ok(status) => {
            rec.exit = Some(status);
            if !status.success() {
                rec.message = Some(describe_status(status));
            }
            status.success()
        }
        Err(why) => {
            rec.message = Some(why);
            false
        }
    };
    rec.outcome = Some(if success {
        Outcome::Succeeded
    } else {
        Outcome::Failed
    });
    plan.finish(id, success);
    procs.event(Event::Finished(rec));
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;

    /// Processes that end at once: `false` exits 1, `kill-me` dies of
    /// SIGKILL, `missing` cannot start, anything else exits 0.
    #[derive(Default)]
    struct Instant {
        spawned: Vec<Command>,
        events: Vec<String>,
    }

    impl FileModes for Instant {
        fn mode(&self, _: &str) -> Result<u32, String> {
            Ok(0o644)
        }
        fn set_mode(&self, _: &str, _: u32) -> Result<(), String> {
            Ok(())
        }
    }

    impl Processes for Instant {
        fn spawn(&mut self, cmd: &Command) -> Result<(u32, Exit), String> {
            if cmd.program == "missing" {
                return Err("program \"missing\" not found".into());
            }
            self.spawned.push(cmd.clone());
            let status = match cmd.program.as_str() {
                "false" => ExitStatus::Code(1),
                "kill-me" => ExitStatus::Signal(9),
                _ => ExitStatus::Code(0),
            };
            Ok((
                100 + self.spawned.len() as u32,
                Box::pin(async move { Ok(status) }),
            ))
        }
        fn now_ms(&self) -> u64 {
            0
        }
        fn interrupted(&mut self) -> Pin<Box<dyn Future<Output = ()>>> {
            Box::pin(futures::future::pending())
        }
        fn event(&mut self, event: Event<'_>) {
            self.events.push(match event {
                Event::Started { task, running } => format!("start {} ({running})", task.id),
                Event::Warning(w) => format!("warning {w}"),
                Event::Planned { total, cached } => format!("planned {total} {cached}"),
                Event::Finished(t) => format!(
                    "end {} {:?} {}",
                    t.id,
                    t.outcome.unwrap(),
                    t.message.as_deref().unwrap_or("")
                ),
            });
        }
    }

    fn options(max: usize, keep_going: bool) -> RunOptions {
        RunOptions {
            max_parallel: max,
            keep_going,
            base_env: BTreeMap::from([("PATH".into(), "/bin".into())]),
            log_dir: ".runqueue/logs".into(),
            workspace: PathBuf::from("/nonexistent-workspace"),
            cache: None,
            run_nonce: "test".into(),
            policy: Policy::CriticalPath,
            default_timeout_ms: None,
            remote_concurrency: 1,
            remote_read_only: false,
        }
    }

    #[test]
    fn builds_commands_with_layered_environment() {
        let g = Graph::parse(
            r#"{"version":1,"env":{"LANG":"C","PATH":"/opt"},"tasks":[
              {"id":"zlib:do_compile","run":"make","cwd":"w","env":{"LANG":"de"}}]}"#,
        )
        .unwrap();
        let cmd = command_for(&g, TaskId(0), &options(1, false)).unwrap();
        assert_eq!(
            cmd,
            Command {
                program: "sh".into(),
                args: vec!["-c".into(), "make".into()],
                cwd: "w".into(),
                env: vec![("LANG".into(), "de".into()), ("PATH".into(), "/opt".into())],
                log: ".runqueue/logs/zlib/log.do_compile".into(),
                timeout_ms: None,
            }
        );
    }

    #[test]
    fn log_paths_are_safe() {
        assert_eq!(log_path("L", "a:do_x"), "L/a/log.do_x");
        assert_eq!(log_path("L", "../../etc:passwd"), "L/_.._.._etc/log.passwd");
        assert_eq!(log_path("L", "plain"), "L/log.plain");
        assert_eq!(log_path("L", ":x/y"), "L/_/log.x_y");
    }

    #[test]
    fn reports_failures_and_what_they_blocked() {
        let g = Graph::parse(
            r#"{"version":1,"tasks":[
              {"id":"ok","argv":["true"]},
              {"id":"bad","argv":["false"]},
              {"id":"after-bad","deps":["bad"],"argv":["true"]},
              {"id":"gone","argv":["missing"]},
              {"id":"shot","argv":["kill-me"]},
              {"id":"noexec","deps":["ok"]}]}"#,
        )
        .unwrap();
        let mut procs = Instant::default();
        let report = block_on(run(&g, &options(1, true), &mut procs)).unwrap();
        let msgs: Vec<_> = report
            .tasks
            .iter()
            .map(|t| (t.outcome.unwrap(), t.message.clone()))
            .collect();
        assert_eq!(
            msgs,
            vec![
                (Outcome::Succeeded, None),
                (Outcome::Failed, Some("exited with code 1".into())),
                (
                    Outcome::NotRun,
                    Some("not run: dependency \"bad\" failed".into())
                ),
                (
                    Outcome::Failed,
                    Some("cannot start: program \"missing\" not found".into())
                ),
                (Outcome::Failed, Some("killed by signal 9 (SIGKILL)".into())),
                (Outcome::Succeeded, None),
            ]
        );
        assert_eq!((report.succeeded, report.failed, report.not_run), (2, 3, 1));
        assert_eq!(procs.spawned.len(), 3, "after-bad never ran");
        assert_eq!(report.tasks[5].pid, None, "noexec has no process");
    }

    #[test]
    fn stops_after_first_failure_without_keep_going() {
        let g = Graph::parse(
            r#"{"version":1,"tasks":[
              {"id":"bad","deps":[],"argv":["false"]},
              {"id":"later","argv":["true"]}]}"#,
        )
        .unwrap();
        let mut procs = Instant::default();
        let report = block_on(run(&g, &options(1, false), &mut procs)).unwrap();
        assert_eq!(
            procs.events,
            [
                "planned 2 0",
                "start bad (1)",
                "end bad Failed exited with code 1",
                "end later NotRun not run: the build stopped after a failure (use -k to keep going)"
            ]
        );
        assert_eq!(report.failed, 1);
        assert_eq!(report.not_run, 1);
    }
}
