//! One action through the Execution service: upload what the server lacks,
//! Execute, follow the operation (WaitExecution when the stream breaks),
//! CancelOperation when told to stop.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use bazel_remote_apis::google::longrunning::{operation, CancelOperationRequest, Operation};
use prost::Message;
use tonic::codegen::tokio_stream::StreamExt;
use tonic::Streaming;

use super::action::Prepared;
use super::Executor;
use crate::reapi::{re, status_line};

/// How the operation ended.
pub enum Finished {
    Done(Box<re::ExecuteResponse>),
    /// Told to stop; the operation was cancelled.
    Cancelled,
}

/// Resolves when the run is to stop.
pub type Stop = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// How often a broken operation stream is re-joined before giving up.
const REJOINS: u32 = 5;

/// Told each stage an operation reaches, in words ("queued: no worker
/// has taken it"): what a stall warning says.
pub type Progress<'a> = &'a (dyn Fn(&'static str) + Send + Sync);

/// Runs `prepared` on the executor until it is done or `stop` fires.
pub async fn run(
    exec: &Executor,
    prepared: &Prepared,
    mut stop: Stop,
    progress: Progress<'_>,
) -> Result<Finished> {
    progress("uploading its inputs");
    tokio::select! {
        uploaded = exec.cas.upload(&prepared.blobs) => uploaded?,
        _ = &mut stop => return Ok(Finished::Cancelled),
    }
    let request = re::ExecuteRequest {
        instance_name: exec.instance.clone(),
        action_digest: Some(prepared.action.clone()),
        ..Default::default()
    };
    let execute = || async {
        let reply = exec.execution.clone().execute(request.clone()).await;
        reply.map_err(|s| status_line("Execute", &s))
    };
    progress("waiting for the server to take it");
    let stream = tokio::select! {
        s = crate::reapi::patiently(execute) => s?,
        _ = &mut stop => return Ok(Finished::Cancelled),
    };
    follow(exec, stream.into_inner(), stop, progress).await
}

/// The stage an operation update gives, in words.
fn stage_of(op: &Operation) -> Option<&'static str> {
    use re::execution_stage::Value;
    let meta = op.metadata.as_ref()?;
    let meta = re::ExecuteOperationMetadata::decode(meta.value.as_slice()).ok()?;
    Some(match Value::try_from(meta.stage).ok()? {
        Value::Unknown => return None,
        Value::CacheCheck => "checking the action cache",
        Value::Queued => "queued: no worker has taken it",
        Value::Executing => "executing on a worker",
        Value::Completed => "fetching its result",
    })
}

/// Reads the operation's updates until it is done; re-joins it by name when
/// the stream breaks, and cancels it when `stop` fires.
async fn follow(
    exec: &Executor,
    mut stream: Streaming<Operation>,
    mut stop: Stop,
    progress: Progress<'_>,
) -> Result<Finished> {
    let mut name = String::new();
    let mut rejoins = 0;
    loop {
        let next = tokio::select! {
            next = stream.next() => next,
            _ = &mut stop => {
                cancel(exec, &name).await;
                return Ok(Finished::Cancelled);
            }
        };
        match next {
            Some(Ok(op)) => {
                name = op.name.clone();
                if let Some(stage) = stage_of(&op) {
                    progress(stage);
                }
                if op.done {
                    return done(op).map(|r| Finished::Done(Box::new(r)));
                }
            }
            Some(Err(s)) if name.is_empty() || rejoins == REJOINS => {
                return Err(status_line("Execute", &s))
            }
            None if name.is_empty() => bail!("the server closed the Execute stream at once"),
            _ => {
                rejoins += 1;
                tokio::time::sleep(Duration::from_millis(200 << rejoins)).await;
                stream = rejoin(exec, &name).await?;
            }
        }
    }
}

async fn rejoin(exec: &Executor, name: &str) -> Result<Streaming<Operation>> {
    let request = re::WaitExecutionRequest {
        name: name.to_string(),
    };
    let mut client = exec.execution.clone();
    let stream = client.wait_execution(request).await;
    Ok(stream
        .map_err(|s| status_line("WaitExecution", &s))?
        .into_inner())
}

async fn cancel(exec: &Executor, name: &str) {
    if name.is_empty() {
        return;
    }
    let request = CancelOperationRequest {
        name: name.to_string(),
    };
    let mut client = exec.operations.clone();
    let _ = tokio::time::timeout(Duration::from_secs(5), client.cancel_operation(request)).await;
}

/// The ExecuteResponse of a finished operation.
fn done(op: Operation) -> Result<re::ExecuteResponse> {
    match op.result {
        Some(operation::Result::Response(any)) => re::ExecuteResponse::decode(any.value.as_slice())
            .context("the server's ExecuteResponse is garbled"),
        Some(operation::Result::Error(s)) => {
            bail!("the action failed on the server: {}", s.message)
        }
        None => bail!("the server finished the operation without a result"),
    }
}
