//! A started task process, the `child` resource: starting it in its own
//! process group, waiting for it, stopping its group. Knows the OS process
//! and the resource table; leaves paths to the workspace, output to the log
//! files, and group bookkeeping to the live groups.

use std::borrow::Cow;
use std::fs;
use std::io;
use std::path::Path;
use std::process::{ExitStatus as OsExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime_wasi::p2::Pollable;

use super::exec_size::{self, Fit};
use super::groups::signal_group;
use super::jobserver::Jobserver;
use super::logs::{self, copy_lazily};
use super::machine;
use super::netns;
use super::program::Programs;
use super::stamps::{self, Stamp};
use super::strays;
use super::{Activity, Entry, LiveGroups, LogFiles, Workspace};
use crate::bindings::runqueue::executor::process::{self as wit, ExitStatus, SpawnError};

/// A started process: the `child` resource.
pub struct ChildProcess {
    child: tokio::process::Child,
    pid: u32,
    status: Option<OsExitStatus>,
    started: Instant,
    /// Set by the exit stamper the moment the process exits.
    stamp: Stamp,
    /// When it exited: the stamp, or when the runtime noticed if earlier
    /// (or if there is no stamp).
    exited_at: Option<Instant>,
    /// Copies output from a pipe into the task's log, creating it with the
    /// first byte (see [`spawn`]).
    copier: Option<tokio::task::JoinHandle<bool>>,
    files: Arc<LogFiles>,
    /// The exit has been seen and the output drained.
    settled: bool,
    /// It was told to stop (timeout, interrupt): what it left running
    /// outside its group is killed once it has exited.
    stopped: bool,
    /// Its log's name (as the guest names it) and the workspace's root: how its strays are told
    /// apart (boxed: rarely read, and a child is moved about).
    task: Box<(String, std::path::PathBuf)>,
    live: LiveGroups,
    activity: Activity,
    /// Out-of-memory kills the kernel had counted when it started, and
    /// whether one of them, since, was this process.
    oom_baseline: u64,
    oom_killed: bool,
}

/// How long a stopped task's process group has between SIGTERM and SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(2);

/// How long an exited task's output may take to drain from its pipe. A
/// background process that keeps the pipe open does not hold the task up
/// longer; its output still reaches the log.
const DRAIN_GRACE: Duration = Duration::from_millis(200);

impl ChildProcess {
    fn poll_status(&mut self) -> Option<OsExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Stops the process group: SIGTERM now, SIGKILL after [`KILL_GRACE`]
    /// to whatever is left of the group (background children too).
    fn stop_group(&mut self) {
        self.stopped = true;
        if self.poll_status().is_none() {
            signal_group(self.pid, libc::SIGTERM);
        }
        let pgid = self.pid;
        tokio::spawn(async move {
            tokio::time::sleep(KILL_GRACE).await;
            signal_group(pgid, libc::SIGKILL);
        });
    }

    fn kill_group(&mut self) {
        if self.poll_status().is_none() {
            // The process leads its own group: signal every process in it.
            signal_group(self.pid, libc::SIGKILL);
        }
    }
}

impl Drop for ChildProcess {
    /// A child the guest lets go of while it runs is killed with its group;
    /// tokio reaps it.
    fn drop(&mut self) {
        self.kill_group();
        self.live.update(self.pid, false);
        self.activity.forget(self.pid);
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for ChildProcess {
    async fn ready(&mut self) {
        if self.settled {
            return;
        }
        if self.status.is_none() {
            // Stamped first: reaping would take its resource usage along.
            self.stamp.wait().await;
            self.status = self.child.wait().await.ok();
        }
        self.oom_killed = self.killed_for_memory();
        let noticed = Instant::now();
        let stamped = self.stamp.get().map_or(noticed, |(at, _)| *at);
        self.exited_at = Some(stamped.min(noticed));
        let strays = match self.stopped {
            true => strays::kill(Some((&self.task.0, &self.task.1))),
            false => Vec::new(),
        };
        if let Some(copier) = self.copier.as_mut() {
            let wrote = tokio::time::timeout(DRAIN_GRACE, copier).await;
            // A failed task always has a log to point at, if only empty.
            let failed = !self.status.is_some_and(|s| s.success());
            if failed && !matches!(wrote, Ok(Ok(true))) {
                let _ = self.files.create();
            }
            self.copier = None;
        }
        if !strays.is_empty() {
            let _ = self.files.note(&format!(
                "runqueue: killed what the task left running outside its process group: {}",
                strays.join(", ")
            ));
        }
        self.settled = true;
    }
}

impl ChildProcess {
    /// Whether the kernel killed it for lack of memory: it (or the child
    /// its shell waited for) died of a SIGKILL runqueue did not send, and the kernel's count of such kills
    /// went up while it ran.
    fn killed_for_memory(&self) -> bool {
        use std::os::unix::process::ExitStatusExt;
        // A shell reports its child's SIGKILL as 128 + 9.
        let sigkill = self.status.and_then(|s| s.signal()) == Some(libc::SIGKILL)
            || self.status.and_then(|s| s.code()) == Some(128 + libc::SIGKILL);
        sigkill && !self.stopped && machine::oom_kills_now() > self.oom_baseline
    }
}

fn to_wit_status(s: OsExitStatus) -> ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(code), _) => ExitStatus::Code(code),
        (None, Some(sig)) => ExitStatus::Signal(sig),
        (None, None) => ExitStatus::Code(-1),
    }
}

/// What a process starts with besides its command: where it runs and who
/// watches it.
pub struct Surroundings<'a> {
    pub ws: &'a Workspace,
    pub live: &'a LiveGroups,
    pub activity: &'a Activity,
    pub programs: &'a Programs,
    pub jobserver: Option<&'a Jobserver>,
    /// What to do when the kernel gives no network namespaces.
    pub isolation: super::Isolation,
}

/// Starts `cmd` in `ws`: its own process group, stdin closed, exactly the
/// given environment (with the jobserver's `MAKEFLAGS` if it takes part),
/// stdout and stderr through a pipe into its log.
pub fn spawn(cmd: &wit::Command, at: &Surroundings<'_>) -> Result<ChildProcess, SpawnError> {
    let (ws, live, activity, programs) = (at.ws, at.live, at.activity, at.programs);
    let jobserver = at.jobserver.filter(|_| cmd.jobserver);
    let isolated =
        netns::decide(netns::allowed(), cmd.network, at.isolation).map_err(SpawnError::Other)?;
    // Both held open until the process started (the log's for as long as
    // its files are written): a swap meanwhile cannot lead them out.
    let cwd_dir = ws.ensure_dir(&cmd.cwd).map_err(SpawnError::InvalidPath)?;
    let cwd = cwd_dir.path();
    let link = ws.file_path(&cmd.log).map_err(SpawnError::InvalidPath)?;
    let log_err = |e: io::Error| log_error(cmd, e);
    remove_latest_link(&link.path(), cmd)?;
    let cmd = &*fitted(cmd, &link, ws.root())?;
    let (reader, writer) = io::pipe().map_err(log_err)?;
    let out = fs::File::from(std::os::fd::OwnedFd::from(writer));
    let err = out.try_clone().map_err(log_err)?;
    let (argv, program) = argv_of(cmd, programs, &cwd)?;
    let started = Instant::now();
    let makeflags = jobserver.map(|js| {
        let theirs = cmd.env.iter().rev().find(|(k, _)| k == "MAKEFLAGS");
        js.makeflags(theirs.map(|(_, v)| v.as_str()))
    });
    let oom_baseline = machine::oom_kills_seen();

    let child = start(
        cmd,
        (&argv, &program, &cwd, ws.root()),
        (makeflags, isolated),
        (out, err),
    )?;
    let pid = child.id().unwrap_or(0);
    if let Some(js) = jobserver {
        js.joined(pid);
    }
    let stamp = stamps::watch(pid);
    let shown_cwd = ws.root().join(cwd_dir.rel());
    let files = Arc::new(LogFiles::new(link, pid, cmd, &shown_cwd));
    let copier = tokio::spawn(copy_lazily(reader, files.clone(), {
        let activity = activity.clone();
        move || activity.touch(pid)
    }));
    live.update(pid, true);
    Ok(ChildProcess {
        child,
        pid,
        status: None,
        started,
        stamp,
        exited_at: None,
        copier: Some(copier),
        files,
        settled: false,
        stopped: false,
        task: Box::new((cmd.log.clone(), ws.root().to_path_buf())),
        live: live.clone(),
        activity: activity.clone(),
        oom_baseline,
        oom_killed: false,
    })
}

/// `cmd` as it can start (see [`exec_size`]): as given, or as `sh FILE`
/// with its text (and what of its environment is too big to pass) in a
/// script written next to its log.
fn fitted<'a>(
    cmd: &'a wit::Command,
    link: &Entry,
    root: &Path,
) -> Result<Cow<'a, wit::Command>, SpawnError> {
    let fit = exec_size::fit(&cmd.program, &cmd.args, &cmd.env, exec_size::arg_limit());
    let (script, env) = match fit.map_err(SpawnError::Other)? {
        Fit::AsIs => return Ok(Cow::Borrowed(cmd)),
        Fit::Script { script, env } => (script, env),
    };
    let path = logs::write_script(link, root, &script).map_err(|e| log_error(cmd, e))?;
    Ok(Cow::Owned(wit::Command {
        program: "sh".into(),
        args: vec![path],
        env,
        cwd: cmd.cwd.clone(),
        log: cmd.log.clone(),
        jobserver: cmd.jobserver,
        network: cmd.network,
        inputs: Vec::new(),
        outputs: Vec::new(),
        platform: Vec::new(),
        cacheable: cmd.cacheable,
    }))
}

/// The argument vector and the program to execute: directly what a shell
/// would run, when it would only run one program (see [`Programs::direct`]).
fn argv_of(
    cmd: &wit::Command,
    programs: &Programs,
    cwd: &Path,
) -> Result<(Vec<String>, std::path::PathBuf), SpawnError> {
    if let Some(direct) = programs.direct(&cmd.program, &cmd.args, &cmd.env, cwd) {
        return Ok(direct);
    }
    let argv = std::iter::once(&cmd.program)
        .chain(&cmd.args)
        .cloned()
        .collect();
    Ok((argv, programs.resolve(&cmd.program, &cmd.env, cwd)?))
}

/// Removes the link to the task's latest log: until this run writes one,
/// there is none. Logs are only created once the task prints something (or
/// fails): most tasks of a big build print nothing, and creating thousands
/// of empty files costs more than running the tasks (see the overhead
/// benchmark).
fn remove_latest_link(link: &Path, cmd: &wit::Command) -> Result<(), SpawnError> {
    match fs::symlink_metadata(link) {
        Ok(m) if m.is_dir() => Err(SpawnError::InvalidPath(format!(
            "log \"{}\" is a directory",
            cmd.log
        ))),
        Ok(_) => fs::remove_file(link).map_err(|e| log_error(cmd, e)),
        Err(_) => Ok(()),
    }
}

fn log_error(cmd: &wit::Command, e: io::Error) -> SpawnError {
    SpawnError::Other(format!("log file \"{}\": {e}", cmd.log))
}

/// Starts `program` as `argv` with the environment of `cmd`, in `cwd`
/// (in the workspace `root`), in its own process group, with the given
/// stdout and stderr.
fn start(
    cmd: &wit::Command,
    (argv, program, cwd, root): (&[String], &Path, &Path, &Path),
    (makeflags, isolated): (Option<String>, bool),
    (out, err): (fs::File, fs::File),
) -> Result<tokio::process::Child, SpawnError> {
    let mut command = tokio::process::Command::new(program);
    command.arg0(&argv[0]);
    command
        .args(&argv[1..])
        .current_dir(cwd)
        .env_clear()
        .envs(cmd.env.iter().map(|(k, v)| (k, v)))
        .env(strays::TASK_VAR, &cmd.log)
        .env(strays::WORKSPACE_VAR, root)
        .envs(makeflags.map(|m| ("MAKEFLAGS", m)))
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .process_group(0);
    // `command` holds the pipe's write end until it is dropped; it must be
    // dropped after the spawn so the copier sees end-of-file.
    let spawned = match isolated {
        true => netns::spawn(command),
        false => {
            let spawned = command.spawn();
            drop(command);
            spawned
        }
    };
    spawned.map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => {
            SpawnError::NotFound(format!("program \"{}\" not found", cmd.program))
        }
        io::ErrorKind::PermissionDenied => {
            SpawnError::PermissionDenied(format!("program \"{}\": permission denied", cmd.program))
        }
        _ => SpawnError::Other(format!("program \"{}\": {e}", cmd.program)),
    })
}

/// What the `child` resource's methods read of a local process.
impl ChildProcess {
    pub fn status(&mut self) -> Option<ExitStatus> {
        self.poll_status().map(to_wit_status)
    }

    /// Stops it with its group (see [`ChildProcess::stop_group`]).
    pub fn stop(&mut self) {
        self.stop_group();
    }

    /// How long the process ran, once its exit has been seen.
    pub fn ran_ms(&self) -> Option<u64> {
        let ran = |at: Instant| at.duration_since(self.started).as_millis() as u64;
        self.exited_at.map(ran)
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Its peak resident memory in bytes, once it exited, if measured.
    pub fn peak_memory(&self) -> Option<u64> {
        self.stamp.get().and_then(|(_, peak)| *peak)
    }

    /// Whether the kernel killed it for lack of memory.
    pub fn oom_killed(&self) -> bool {
        self.oom_killed
    }
}
