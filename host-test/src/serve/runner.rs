//! One submitted build, from the queue to its final state: it waits for a
//! build slot and its workspace, runs in a store of its own (the
//! component's memory and CPU limits, the shared task slots, its own
//! cancel), and records what happened.
//!
//! Knows a build's life; knows nothing of HTTP.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};
use tokio::sync::{watch, Semaphore};

use super::db::{self, Db};
use super::events::Recorder;
use super::metrics::Metrics;
use crate::process::{JobserverMode, SharedSlots};
use crate::workspace_lock::WorkspaceLock;
use crate::{outputs, Controls, Report, RunOptions, Runqueue, Workspace};

/// What all builds share.
pub struct Shared {
    pub db: Arc<Db>,
    pub rq: Runqueue,
    pub pool: Arc<SharedSlots>,
    pub metrics: Arc<Metrics>,
    /// One permit per build that may run at once (`--max-builds`).
    pub gate: Arc<Semaphore>,
}

/// A build that has not finished: how to cancel and follow it.
pub struct Live {
    /// Cancel requests so far: 1 starts nothing new, 2 kills the tasks.
    pub cancel: watch::Sender<u32>,
    /// The last event's number.
    pub seq: watch::Sender<u64>,
    /// It left the queue.
    pub started: AtomicBool,
}

impl Live {
    pub fn new() -> Arc<Live> {
        Arc::new(Live {
            cancel: watch::channel(0).0,
            seq: watch::channel(0).0,
            started: AtomicBool::new(false),
        })
    }

    fn cancelled(&self) -> bool {
        *self.cancel.borrow() > 0
    }
}

/// What a submitted build runs with.
#[derive(Debug, Clone)]
pub struct Submitted {
    /// What goes to the component (the cache stays the workspace's own).
    pub options: RunOptions,
    /// `allow_program`, when given.
    pub allowed_programs: Option<Vec<String>>,
    pub jobserver: JobserverMode,
    /// `require_isolation`.
    pub isolation: crate::process::Isolation,
}

/// How a request's `options` object is read (the CLI's parser, which the
/// command line hands over).
pub type ReadOptions = fn(&serde_json::Map<String, Value>) -> Result<Submitted, String>;

/// A build as accepted.
pub struct Job {
    pub id: u64,
    pub graph: String,
    pub submitted: Submitted,
    pub workspace: PathBuf,
}

/// Runs `job` to its end; its final state.
pub async fn run(shared: Arc<Shared>, job: Job, live: Arc<Live>) -> &'static str {
    let recorder = Arc::new(Recorder {
        db: shared.db.clone(),
        build: job.id,
        seq: live.seq.clone(),
        metrics: shared.metrics.clone(),
    });
    let (state, report, error) = match admitted(&shared, &job, &live, &recorder).await {
        Ok(None) => ("cancelled", None, None),
        Ok(Some(result)) => outcome(result, &live),
        Err(e) => ("failed", None, Some(e)),
    };
    let json = report
        .as_ref()
        .map(|r| serde_json::to_value(outputs::json_report(r)).expect("json"));
    if let Err(e) = shared
        .db
        .finish(job.id, state, json.as_ref(), error.as_deref())
    {
        eprintln!(
            "runqueue serve: cannot record the end of build {}: {e}",
            job.id
        );
    }
    let totals = json.as_ref().map_or(Value::Null, |r| r["totals"].clone());
    recorder.state(state, json!({"totals": totals, "error": error}));
    state
}

/// Waits for a build slot and the workspace, then runs; `None` when
/// cancelled before it started.
async fn admitted(
    shared: &Shared,
    job: &Job,
    live: &Live,
    recorder: &Arc<Recorder>,
) -> Result<Option<crate::CallResult<Report>>, String> {
    let _permit = shared
        .gate
        .clone()
        .acquire_owned()
        .await
        .map_err(|e| e.to_string())?;
    if live.cancelled() {
        return Ok(None);
    }
    let root = &job.workspace;
    std::fs::create_dir_all(root).map_err(|e| format!("cannot make {}: {e}", root.display()))?;
    let ws = Workspace::open(root).map_err(|e| format!("workspace {}: {e}", root.display()))?;
    let locked = |e: std::io::Error| format!("cannot lock workspace {}: {e}", root.display());
    let _lock = WorkspaceLock::lock_async(root.clone())
        .await
        .map_err(locked)?;
    if live.cancelled() {
        return Ok(None);
    }
    live.started.store(true, Ordering::Relaxed);
    shared
        .db
        .set_state(job.id, db::RUNNING)
        .map_err(|e| e.to_string())?;
    recorder.state(db::RUNNING, json!({}));
    let (options, controls) = run_with(shared, job, live);
    let events = recorder.clone();
    let run = shared
        .rq
        .run_controlled(&job.graph, &options, &controls, &ws, move |e| {
            events.event(e)
        });
    Ok(Some(run.await))
}

/// The options and controls `job` runs with: without `jobs`, as many task
/// slots as the service has; a jobserver of its own (a service joins
/// none), the watchdog, and its part of the shared slots.
fn run_with(shared: &Shared, job: &Job, live: &Live) -> (RunOptions, Controls) {
    let mut options = job.submitted.options.clone();
    let jobs = *options.max_parallel.get_or_insert(shared.pool.total());
    let jobserver = match job.submitted.jobserver {
        JobserverMode::JoinOr(_) => JobserverMode::Serve(jobs),
        mode => mode,
    };
    let controls = Controls {
        interrupts: Some(live.cancel.subscribe()),
        watchdog: std::env::current_exe().ok(),
        allowed_programs: job.submitted.allowed_programs.clone(),
        activity: None,
        jobserver,
        executor: None,
        shared_slots: Some((shared.pool.clone(), job.id)),
        isolation: job.submitted.isolation,
    };
    (options, controls)
}

/// A run's final state, report and error: cancelled when asked to and
/// something did not run, failed when a task failed or did not run.
fn outcome(
    result: crate::CallResult<Report>,
    live: &Live,
) -> (&'static str, Option<Report>, Option<String>) {
    match result {
        Ok(Ok(report)) => {
            let t = &report.totals;
            let state = match (t.failed == 0 && t.not_run == 0, live.cancelled()) {
                (true, _) => "succeeded",
                (false, true) => "cancelled",
                (false, false) => "failed",
            };
            (state, Some(report), None)
        }
        Ok(Err(e)) => {
            let (_, msg) = runqueue::cli::error_exit("in the request", &crate::from_wit_error(e));
            ("failed", None, Some(msg))
        }
        Err(e) => ("failed", None, Some(e.to_string())),
    }
}
