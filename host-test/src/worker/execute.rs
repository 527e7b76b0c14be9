//! One lease's work, start to end: the Action and Command from the CAS,
//! the input tree written into the lease's own directory, the command run
//! there, and its outputs, stdout and stderr uploaded and described in an
//! `ActionResult`. Knows REAPI and the CAS; knows nothing of the Bots API
//! or of sessions.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use bazel_remote_apis::google::protobuf::{Any, Timestamp};
use bazel_remote_apis::google::rpc::Status;
use prost::Message;
use tokio::sync::watch;
use tonic::Code;

use super::command::{self, Ending, Spec};
use super::{outputs, paths, retry};
use crate::reapi::blobs::Blobs;
use crate::reapi::cas::Cas;
use crate::reapi::tree;
use crate::reapi::{bots, digest, re};

/// The full names of the payloads a lease may carry: BuildGrid sends the
/// Action itself, other servers its digest.
pub const ACTION: &str = "build.bazel.remote.execution.v2.Action";
pub const DIGEST: &str = "build.bazel.remote.execution.v2.Digest";
pub const ACTION_RESULT: &str = "build.bazel.remote.execution.v2.ActionResult";

/// What every lease's work needs.
pub struct Context {
    pub cas: Cas,
    /// The worker's name, recorded in each result's metadata.
    pub worker: String,
}

/// What came of a lease.
#[derive(Debug)]
pub enum Outcome {
    /// The action ran (or could not): the status to report, and the result
    /// when there is one.
    Done(Status, Option<Box<re::ActionResult>>),
    /// The lease was withdrawn while the command ran: nothing to report.
    Cancelled,
}

/// A failure before or after the command, with the status code it is
/// reported under (BuildGrid retries INTERNAL and UNAVAILABLE).
struct Failure(Code, anyhow::Error);

fn failing(code: Code) -> impl FnOnce(anyhow::Error) -> Failure {
    move |e| Failure(code, e)
}

/// The digest of the Action a lease's payload names, when it names one.
pub fn action_digest(payload: &Any) -> Option<re::Digest> {
    match bots::type_name(payload) {
        ACTION => Some(digest(&payload.value)),
        DIGEST => re::Digest::decode(payload.value.as_slice()).ok(),
        _ => None,
    }
}

/// Runs the lease whose payload is `payload` in `dir` (made afresh, and
/// removed afterwards), until done or `cancel` turns true.
pub async fn execute(
    ctx: &Context,
    payload: &Any,
    dir: &Path,
    cancel: watch::Receiver<bool>,
) -> Outcome {
    let outcome = match attempt(ctx, payload, dir, cancel).await {
        Ok(outcome) => outcome,
        Err(Failure(code, e)) => Outcome::Done(status(code, format!("{e:#}")), None),
    };
    let owned = dir.to_path_buf();
    let removed = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(owned)).await;
    match removed {
        Ok(Err(e)) if e.kind() != std::io::ErrorKind::NotFound => {
            eprintln!("runqueue worker: cannot remove {}: {e}", dir.display());
        }
        _ => {}
    }
    outcome
}

fn status(code: Code, message: String) -> Status {
    Status {
        code: code as i32,
        message,
        details: Vec::new(),
    }
}

async fn attempt(
    ctx: &Context,
    payload: &Any,
    dir: &Path,
    cancel: watch::Receiver<bool>,
) -> Result<Outcome, Failure> {
    let mut meta = re::ExecutedActionMetadata {
        worker: ctx.worker.clone(),
        input_fetch_start_timestamp: Some(now()),
        ..Default::default()
    };
    let fetched = persist(&ctx.worker, &cancel, false, || {
        inputs(&ctx.cas, payload, dir)
    });
    let Some((command, setup)) = fetched.await.transpose()? else {
        return Ok(Outcome::Cancelled);
    };
    meta.input_fetch_completed_timestamp = Some(now());
    meta.execution_start_timestamp = Some(now());
    let ending = command::run(&setup.spec, cancel.clone()).await;
    meta.execution_completed_timestamp = Some(now());
    if ending == Ending::Cancelled {
        return Ok(Outcome::Cancelled);
    }
    meta.output_upload_start_timestamp = Some(now());
    let (mut result, blobs) = collect(&setup, &command, &ending).await?;
    let uploaded = persist(&ctx.worker, &cancel, true, || upload(&ctx.cas, &blobs));
    if uploaded.await.transpose()?.is_none() {
        return Ok(Outcome::Cancelled);
    }
    meta.output_upload_completed_timestamp = Some(now());
    result.execution_metadata = Some(meta);
    Ok(Outcome::Done(
        ending_status(&ending, &setup),
        Some(Box::new(result)),
    ))
}

/// How long a lease's inputs or outputs are tried again while the server
/// is away (unless it withdraws the lease first).
const PATIENCE: Duration = Duration::from_secs(600);

/// `op`'s result, tried again after a backoff while it fails in a way
/// that may pass (see [`retry::transient`]; `untyped` says for failures
/// without a gRPC status), for [`PATIENCE`] at most; `None` once `cancel`
/// turns true.
async fn persist<T, Fut>(
    worker: &str,
    cancel: &watch::Receiver<bool>,
    untyped: bool,
    mut op: impl FnMut() -> Fut,
) -> Option<Result<T, Failure>>
where
    Fut: std::future::Future<Output = Result<T, Failure>>,
{
    let give_up = Instant::now() + PATIENCE;
    let mut backoff = retry::Backoff::new();
    let mut cancel = cancel.clone();
    loop {
        let e = match op().await {
            Err(Failure(_, e)) if retry::transient(&e, untyped) && Instant::now() < give_up => e,
            done => return Some(done),
        };
        let wait = backoff.failed();
        eprintln!(
            "worker {worker}: {e:#}; trying again in {:.1} s",
            wait.as_secs_f64()
        );
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = cancel.wait_for(|stop| *stop) => return None,
        }
    }
}

/// The Action and Command a lease's payload leads to, and the lease's
/// directory made ready to run the Command in.
async fn inputs(cas: &Cas, payload: &Any, dir: &Path) -> Result<(re::Command, Setup), Failure> {
    let action = action(cas, payload).await?;
    let command = fetch(cas, action.command_digest.as_ref(), "Command").await?;
    let setup = prepare(cas, &action, &command, dir).await?;
    Ok((command, setup))
}

/// The status a lease that ran reports: OK, or DEADLINE_EXCEEDED for a
/// command stopped at its timeout.
fn ending_status(ending: &Ending, setup: &Setup) -> Status {
    match ending {
        Ending::TimedOut(_) => {
            let secs = setup.spec.timeout.unwrap_or_default().as_secs_f64();
            let msg = format!("the action ran longer than its timeout of {secs} s");
            status(Code::DeadlineExceeded, msg)
        }
        _ => status(Code::Ok, String::new()),
    }
}

/// The Action a payload carries or names.
async fn action(cas: &Cas, payload: &Any) -> Result<re::Action, Failure> {
    match bots::type_name(payload) {
        ACTION => re::Action::decode(payload.value.as_slice())
            .context("the lease's Action does not decode")
            .map_err(failing(Code::InvalidArgument)),
        DIGEST => {
            let d = re::Digest::decode(payload.value.as_slice())
                .context("the lease's Digest does not decode")
                .map_err(failing(Code::InvalidArgument))?;
            fetch(cas, Some(&d), "Action").await
        }
        other => Err(Failure(
            Code::InvalidArgument,
            anyhow::anyhow!("a lease carrying {other:?}, not an Action or its Digest"),
        )),
    }
}

/// The message `what` stored under `d` (a missing digest is an empty one).
async fn fetch<M: Message + Default>(
    cas: &Cas,
    d: Option<&re::Digest>,
    what: &str,
) -> Result<M, Failure> {
    let d = d.cloned().unwrap_or_else(|| digest(b""));
    cas.read_message(&d)
        .await
        .with_context(|| format!("fetching the {what}"))
        .map_err(failing(Code::FailedPrecondition))
}

/// A lease's directory, ready to run in: the input root, and the command.
struct Setup {
    /// The input root (canonical).
    root: PathBuf,
    /// The working directory, relative to `root`.
    cwd: String,
    spec: Spec,
}

/// Writes the input tree into `dir/root`, makes the working directory and
/// the directories leading to the outputs, and says how to run `command`.
async fn prepare(
    cas: &Cas,
    action: &re::Action,
    command: &re::Command,
    dir: &Path,
) -> Result<Setup, Failure> {
    let root = fresh(dir).map_err(failing(Code::Internal))?.join("root");
    match &action.input_root_digest {
        Some(d) => tree::materialize(cas, d, &root).await,
        None => std::fs::create_dir_all(&root).map_err(Into::into),
    }
    .context("fetching the input root")
    .map_err(failing(Code::FailedPrecondition))?;
    let root = root.canonicalize().context("resolving the input root");
    let root = root.map_err(failing(Code::Internal))?;
    let cwd = command.working_directory.trim_matches('/').to_string();
    let cwd_path = paths::inside(&root, &cwd)
        .context("the working directory")
        .map_err(failing(Code::InvalidArgument))?;
    make_dirs(&root, &cwd, command).map_err(failing(Code::Internal))?;
    let mut env: Vec<(String, String)> = (command.environment_variables.iter())
        .map(|v| (v.name.clone(), v.value.clone()))
        .collect();
    // Tools writing dotfiles stay in the action's directory.
    if !env.iter().any(|(k, _)| k == "HOME") {
        env.push(("HOME".into(), root.display().to_string()));
    }
    let spec = Spec {
        argv: command.arguments.clone(),
        env,
        cwd: cwd_path,
        stdout: dir.join("stdout"),
        stderr: dir.join("stderr"),
        timeout: timeout(action),
    };
    Ok(Setup { root, cwd, spec })
}

/// `dir`, empty and new (whatever an earlier run left there is removed).
fn fresh(dir: &Path) -> anyhow::Result<&Path> {
    if std::fs::symlink_metadata(dir).is_ok() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// The working directory and the directories leading to each output
/// (outputs that would leave the root are skipped here and noted later).
fn make_dirs(root: &Path, cwd: &str, command: &re::Command) -> anyhow::Result<()> {
    let parents = outputs::declared(command).into_iter().map(|(rel, _)| {
        let rel = outputs::from_root(cwd, &rel);
        rel.rsplit_once('/')
            .map_or(String::new(), |(p, _)| p.to_string())
    });
    for rel in std::iter::once(cwd.to_string()).chain(parents) {
        if let Ok(path) = paths::inside(root, &rel) {
            std::fs::create_dir_all(&path)
                .with_context(|| format!("creating {}", path.display()))?;
        }
    }
    Ok(())
}

/// The Action's timeout; none when unset or not positive.
fn timeout(action: &re::Action) -> Option<Duration> {
    let t = action.timeout.as_ref()?;
    let nanos = u32::try_from(t.nanos).ok()?;
    let t = Duration::new(u64::try_from(t.seconds).ok()?, nanos);
    (!t.is_zero()).then_some(t)
}

/// Collects the outputs, stdout and stderr: the `ActionResult` (without
/// its metadata) and the blobs to upload.
async fn collect(
    setup: &Setup,
    command: &re::Command,
    ending: &Ending,
) -> Result<(re::ActionResult, Blobs), Failure> {
    let (exit_code, note) = command::exit_code(ending, setup.spec.timeout);
    let (root, cwd, command) = (setup.root.clone(), setup.cwd.clone(), command.clone());
    let (stdout, stderr) = (setup.spec.stdout.clone(), setup.spec.stderr.clone());
    let collected = tokio::task::spawn_blocking(move || {
        let mut blobs = Blobs::default();
        let (mut result, mut notes) = outputs::collect(&root, &cwd, &command, &mut blobs)?;
        notes.extend(note);
        append_notes(&stdout, &stderr, &notes)?;
        result.stdout_digest = Some(blobs.add_file(&stdout)?);
        result.stderr_digest = Some(blobs.add_file(&stderr)?);
        result.exit_code = exit_code;
        anyhow::Ok((result, blobs))
    })
    .await;
    let collected = collected.map_err(|e| anyhow::anyhow!("collecting the outputs: {e}"));
    collected.and_then(|r| r).map_err(failing(Code::Internal))
}

async fn upload(cas: &Cas, blobs: &Blobs) -> Result<(), Failure> {
    cas.upload(blobs)
        .await
        .context("uploading the outputs")
        .map_err(failing(Code::Unavailable))
}

/// Makes sure stdout and stderr exist (a program that never started left
/// none) and adds `notes` to stderr, one `runqueue worker:` line each.
fn append_notes(stdout: &Path, stderr: &Path, notes: &[String]) -> anyhow::Result<()> {
    let open = |p: &Path| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .with_context(|| format!("opening {}", p.display()))
    };
    open(stdout)?;
    let mut err = open(stderr)?;
    for note in notes {
        writeln!(err, "runqueue worker: {note}")?;
    }
    Ok(())
}

/// The time now, as protobuf has it.
pub fn now() -> Timestamp {
    let since = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp {
        seconds: since.as_secs() as i64,
        nanos: since.subsec_nanos() as i32,
    }
}

/// `result` packed for a lease.
pub fn pack_result(result: &re::ActionResult) -> Any {
    bots::pack(ACTION_RESULT, result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_name_their_action() {
        let action = re::Action::default();
        let inline = bots::pack(ACTION, &action);
        assert_eq!(
            action_digest(&inline),
            Some(digest(&action.encode_to_vec()))
        );
        let d = digest(b"x");
        assert_eq!(action_digest(&bots::pack(DIGEST, &d)), Some(d));
        assert_eq!(action_digest(&bots::pack("other.Thing", &action)), None);
    }

    #[test]
    fn timeouts() {
        let with = |seconds, nanos| re::Action {
            timeout: Some(bazel_remote_apis::google::protobuf::Duration { seconds, nanos }),
            ..Default::default()
        };
        assert_eq!(timeout(&re::Action::default()), None);
        assert_eq!(timeout(&with(0, 0)), None);
        assert_eq!(timeout(&with(-1, 0)), None);
        assert_eq!(timeout(&with(2, 500)), Some(Duration::new(2, 500)));
    }

    #[test]
    fn notes_go_to_stderr_and_both_files_exist() {
        let t = tempfile::tempdir().unwrap();
        let (out, err) = (t.path().join("out"), t.path().join("err"));
        std::fs::write(&err, "own\n").unwrap();
        append_notes(&out, &err, &["x: not found".into()]).unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "");
        let text = std::fs::read_to_string(&err).unwrap();
        assert_eq!(text, "own\nrunqueue worker: x: not found\n");
    }
}
