//! `process` over a REAPI v2 executor (`build --executor grpc://…`): each
//! command becomes an Action run on the service's workers; its output and
//! declared outputs come back into the workspace. The component cannot
//! tell, except by `ran-on` and `remote-cached`.

mod action;
mod execute;
mod results;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bazel_remote_apis::google::longrunning::operations_client::OperationsClient;
use tokio::sync::oneshot;
use tonic::transport::Channel;
use wasmtime_wasi::p2::Pollable;

use crate::bindings::runqueue::executor::process::{self as wit, ExitStatus, SpawnError};
use crate::process::Activity;
use crate::reapi::cas::Cas;
use crate::reapi::re::capabilities_client::CapabilitiesClient;
use crate::reapi::re::execution_client::ExecutionClient;
use crate::reapi::{self, re};
use crate::Workspace;
use execute::Finished;

/// The exit code of a command whose remote run failed for a reason of
/// the service's (unreachable, refused its inputs): the reason is in the
/// task's log.
pub const REMOTE_FAILED: i32 = 255;

/// A remote execution service and the clients to reach it.
pub struct Executor {
    url: String,
    instance: String,
    cas: Cas,
    execution: ExecutionClient<Channel>,
    operations: OperationsClient<Channel>,
    capabilities: CapabilitiesClient<Channel>,
    /// Set to stop every run at once (a second Ctrl-C).
    stop_all: tokio::sync::watch::Sender<bool>,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Executor({}, instance {:?})", self.url, self.instance)
    }
}

impl Executor {
    /// The service at `url` (`grpc://HOST:PORT`) for `instance`; nothing is
    /// sent yet. A malformed URL is an error.
    pub fn new(url: &str, instance: &str) -> Result<Executor> {
        let channel = reapi::channel(url)?;
        Ok(Executor {
            url: url.to_string(),
            instance: instance.to_string(),
            cas: Cas::new(channel.clone(), instance),
            execution: ExecutionClient::new(channel.clone()),
            operations: OperationsClient::new(channel.clone()),
            capabilities: CapabilitiesClient::new(channel),
            stop_all: tokio::sync::watch::channel(false).0,
        })
    }

    /// Cancels every run in progress and every run started from now on.
    pub fn stop_all(&self) {
        self.stop_all.send_replace(true);
    }

    /// Resolves once this run is told to stop, or all are.
    fn stop_of(&self, mine: oneshot::Receiver<()>) -> execute::Stop {
        let mut all = self.stop_all.subscribe();
        Box::pin(async move {
            tokio::select! {
                _ = mine => {}
                _ = all.wait_for(|stop| *stop) => {}
            }
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Asks the service what it can do, within 10 s: an error unless it
    /// answers, executes and speaks SHA-256.
    pub async fn check(&self) -> Result<()> {
        let request = re::GetCapabilitiesRequest {
            instance_name: self.instance.clone(),
        };
        let mut client = self.capabilities.clone();
        let call = client.get_capabilities(request);
        let reply = tokio::time::timeout(Duration::from_secs(10), call).await;
        let reply =
            reply.map_err(|_| anyhow::anyhow!("no answer from {} within 10 s", self.url))?;
        let caps = reply
            .map_err(|s| {
                anyhow::anyhow!("cannot reach the executor at {}: {}", self.url, s.message())
            })?
            .into_inner();
        let exec = caps.execution_capabilities.unwrap_or_default();
        if !exec.exec_enabled {
            bail!(
                "the service at {} does not execute actions (instance {:?})",
                self.url,
                self.instance
            );
        }
        let sha256 = re::digest_function::Value::Sha256 as i32;
        if exec.digest_function != sha256 && !exec.digest_functions.contains(&sha256) {
            bail!("the service at {} does not speak SHA-256", self.url);
        }
        Ok(())
    }
}

/// How a remote run ended.
struct Outcome {
    status: ExitStatus,
    at: Instant,
    worker: Option<String>,
    cached: bool,
}

impl Outcome {
    fn now(status: ExitStatus) -> Outcome {
        Outcome {
            status,
            at: Instant::now(),
            worker: None,
            cached: false,
        }
    }
}

/// A command running remotely: the `child` resource for it.
pub struct RemoteRun {
    started: Instant,
    task: Option<tokio::task::JoinHandle<Outcome>>,
    outcome: Option<Outcome>,
    stop: Option<oneshot::Sender<()>>,
}

impl RemoteRun {
    /// Starts `cmd` on `exec`; paths leaving the workspace are refused now.
    pub fn start(
        exec: Arc<Executor>,
        cmd: wit::Command,
        ws: &Workspace,
        activity: Activity,
    ) -> Result<RemoteRun, SpawnError> {
        action::check_paths(&cmd).map_err(|e| SpawnError::InvalidPath(e.to_string()))?;
        action::fitted(&cmd).map_err(|e| SpawnError::Other(e.to_string()))?;
        let (stop, stopped) = oneshot::channel();
        let ws = ws.clone();
        let task = tokio::spawn(async move {
            let outcome = outcome_of(&exec, &cmd, &ws, stopped, &activity).await;
            activity.remote_ended(&cmd.log);
            outcome
        });
        Ok(RemoteRun {
            started: Instant::now(),
            task: Some(task),
            outcome: None,
            stop: Some(stop),
        })
    }

    pub fn status(&self) -> Option<ExitStatus> {
        self.outcome.as_ref().map(|o| o.status)
    }

    /// Cancels the operation; the run then ends as if by SIGTERM.
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    pub fn ran_ms(&self) -> Option<u64> {
        self.outcome
            .as_ref()
            .map(|o| o.at.duration_since(self.started).as_millis() as u64)
    }

    pub fn ran_on(&self) -> Option<String> {
        self.outcome.as_ref().and_then(|o| o.worker.clone())
    }

    pub fn remote_cached(&self) -> bool {
        self.outcome.as_ref().is_some_and(|o| o.cached)
    }
}

impl Drop for RemoteRun {
    /// Let go of while it runs: the operation is cancelled.
    fn drop(&mut self) {
        self.stop();
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for RemoteRun {
    async fn ready(&mut self) {
        if let Some(task) = self.task.as_mut() {
            let outcome = task
                .await
                .unwrap_or_else(|_| Outcome::now(ExitStatus::Code(REMOTE_FAILED)));
            self.outcome = Some(outcome);
            self.task = None;
        }
    }
}

/// Runs `cmd` remotely to the end; a failure of the service's is written
/// into the task's log and ends the run with [`REMOTE_FAILED`].
async fn outcome_of(
    exec: &Executor,
    cmd: &wit::Command,
    ws: &Workspace,
    stop: oneshot::Receiver<()>,
    activity: &Activity,
) -> Outcome {
    let progress = |stage| activity.remote_at(&cmd.log, stage);
    match attempt(exec, cmd, ws, exec.stop_of(stop), &progress).await {
        Ok(outcome) => outcome,
        Err(e) => {
            let line = format!("runqueue: remote execution on {} failed: {e:#}\n", exec.url);
            if let Ok(entry) = ws.file_path(&cmd.log) {
                let _ = reapi::cas::write_atomically(&entry.path(), line.as_bytes(), false);
            }
            Outcome::now(ExitStatus::Code(REMOTE_FAILED))
        }
    }
}

async fn attempt(
    exec: &Executor,
    cmd: &wit::Command,
    ws: &Workspace,
    stop: execute::Stop,
    progress: execute::Progress<'_>,
) -> Result<Outcome> {
    let (c, root) = (cmd.clone(), ws.root().to_path_buf());
    progress("hashing its inputs");
    let prepared = tokio::task::spawn_blocking(move || action::prepare(&c, &root)).await??;
    let response = match execute::run(exec, &prepared, stop, progress).await? {
        Finished::Cancelled => return Ok(Outcome::now(ExitStatus::Signal(libc::SIGTERM))),
        Finished::Done(response) => response,
    };
    let at = Instant::now();
    if let Some(s) = response.status.as_ref().filter(|s| s.code != 0) {
        bail!("the service could not run it: {}", s.message);
    }
    let result = response.result.context("the service sent no result")?;
    results::write_log(&exec.cas, ws, &cmd.log, &result, None).await?;
    if result.exit_code == 0 {
        results::write_back(&exec.cas, ws, cmd, &prepared.working_directory, &result).await?;
    }
    let worker = result
        .execution_metadata
        .as_ref()
        .map(|m| m.worker.clone())
        .filter(|w| !w.is_empty());
    Ok(Outcome {
        status: ExitStatus::Code(result.exit_code),
        at,
        worker,
        cached: response.cached_result,
    })
}
