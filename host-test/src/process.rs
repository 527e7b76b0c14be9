//! The `process` interface with real OS processes, confined to a workspace.
//!
//! Knows how to start, wait for and kill processes, and which paths are
//! inside the workspace. Knows nothing of tasks, graphs or scheduling.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::process::{ExitStatus as OsExitStatus, Stdio};
use std::sync::Arc;

use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::p2::{DynPollable, Pollable};

use crate::bindings::runqueue::executor::process::{self as wit, ExitStatus, SpawnError};

/// A directory that every path the guest names must stay inside.
#[derive(Debug, Clone)]
pub struct Workspace {
    root: PathBuf,
    /// Directories (relative) already found to be real directories inside
    /// the workspace, so each is checked once per run rather than once per
    /// task. Tasks are trusted processes; the checks guard against what the
    /// graph names, not against a task swapping a directory for a symlink.
    verified: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

impl Workspace {
    /// Opens an existing directory as the workspace.
    pub fn open(dir: &Path) -> io::Result<Workspace> {
        let root = fs::canonicalize(dir)?;
        if !root.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} is not a directory", dir.display()),
            ));
        }
        Ok(Workspace {
            root,
            verified: Default::default(),
        })
    }

    /// The workspace's canonical path.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Makes sure the directory `rel` exists inside the workspace, creating
    /// what is missing, and returns its real path. Refuses absolute paths,
    /// `..` that climbs out, and symlinks that lead out, before creating
    /// anything outside.
    pub fn ensure_dir(&self, rel: &str) -> Result<PathBuf, String> {
        let parts = normalize(rel)?;
        let key = parts.join("/");
        if self.verified.lock().expect("not poisoned").contains(&key) {
            return Ok(self.root.join(&key));
        }
        let mut at = self.root.clone();
        for part in parts {
            at.push(part);
            match fs::symlink_metadata(&at) {
                Ok(_) => {
                    let real = fs::canonicalize(&at).map_err(|e| format!("{rel}: {e}"))?;
                    if !real.starts_with(&self.root) {
                        return Err(format!(
                            "\"{rel}\" leads out of the workspace through a symlink"
                        ));
                    }
                    if !real.is_dir() {
                        return Err(format!("\"{rel}\": {} is not a directory", at.display()));
                    }
                    at = real;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir(&at).map_err(|e| format!("cannot create \"{rel}\": {e}"))?;
                }
                Err(e) => return Err(format!("\"{rel}\": {e}")),
            }
        }
        self.verified.lock().expect("not poisoned").insert(key);
        Ok(at)
    }

    /// The path of the file `rel` inside the workspace, with its parent
    /// directories created and checked; the file itself is not touched.
    pub fn log_path(&self, rel: &str) -> Result<PathBuf, String> {
        let parts = normalize(rel)?;
        let Some((name, dirs)) = parts.split_last() else {
            return Err(format!("\"{rel}\" names no file"));
        };
        let dirs: Vec<&str> = dirs.iter().map(String::as_str).collect();
        Ok(self.ensure_dir(&dirs.join("/"))?.join(name))
    }
}

impl Workspace {
    /// The path of `rel` inside the workspace, after checking that every
    /// directory on the way stays inside it; the last part may be a
    /// symlink, which is not followed.
    pub fn resolve_no_follow(&self, rel: &str) -> Result<PathBuf, String> {
        let parts = normalize(rel)?;
        let Some((name, dirs)) = parts.split_last() else {
            return Ok(self.root.clone());
        };
        let mut dir = self.root.clone();
        for d in dirs {
            dir.push(d);
            let real = fs::canonicalize(&dir).map_err(|e| format!("\"{rel}\": {e}"))?;
            if !real.starts_with(&self.root) {
                return Err(format!(
                    "\"{rel}\" leads out of the workspace through a symlink"
                ));
            }
            dir = real;
        }
        Ok(dir.join(name))
    }

    /// The permission bits of `rel`, not following a final symlink.
    pub fn file_mode(&self, rel: &str) -> Result<u32, String> {
        use std::os::unix::fs::PermissionsExt;
        let path = self.resolve_no_follow(rel)?;
        let meta = fs::symlink_metadata(&path).map_err(|e| format!("\"{rel}\": {e}"))?;
        Ok(meta.permissions().mode() & 0o7777)
    }

    /// Sets the permission bits of `rel`; a symlink is refused rather than
    /// followed.
    pub fn set_file_mode(&self, rel: &str, mode: u32) -> Result<(), String> {
        use std::os::unix::fs::PermissionsExt;
        let path = self.resolve_no_follow(rel)?;
        let meta = fs::symlink_metadata(&path).map_err(|e| format!("\"{rel}\": {e}"))?;
        if meta.is_symlink() {
            return Err(format!("\"{rel}\" is a symlink; its mode is not set"));
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(mode & 0o7777))
            .map_err(|e| format!("\"{rel}\": {e}"))
    }
}

/// Splits a relative path into its parts, resolving `.` and `..`; refuses
/// absolute paths and `..` above the start.
fn normalize(rel: &str) -> Result<Vec<String>, String> {
    let mut parts: Vec<String> = Vec::new();
    for c in Path::new(rel).components() {
        match c {
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::CurDir => {}
            Component::ParentDir => {
                if parts.pop().is_none() {
                    return Err(format!("\"{rel}\" leaves the workspace"));
                }
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!(
                    "\"{rel}\" is absolute; paths are relative to the workspace"
                ))
            }
        }
    }
    Ok(parts)
}

/// The process groups of a run's live children: so that a second interrupt
/// can kill them all, and so that a watchdog process, told of every group,
/// can kill them if the host itself dies (SIGKILL included).
#[derive(Clone, Default)]
pub struct LiveGroups(Arc<std::sync::Mutex<Live>>);

#[derive(Default)]
struct Live {
    groups: std::collections::HashSet<u32>,
    /// `+pgid` / `-pgid` lines go here; see [`run_watchdog`].
    watchdog: Option<std::process::ChildStdin>,
}

impl LiveGroups {
    /// Groups reported to a watchdog reading `stdin` (see [`run_watchdog`]).
    pub fn with_watchdog(stdin: std::process::ChildStdin) -> LiveGroups {
        LiveGroups(Arc::new(std::sync::Mutex::new(Live {
            groups: Default::default(),
            watchdog: Some(stdin),
        })))
    }

    fn update(&self, pgid: u32, add: bool) {
        use std::io::Write;
        let mut live = self.0.lock().expect("not poisoned");
        if add {
            live.groups.insert(pgid);
        } else if !live.groups.remove(&pgid) {
            return;
        }
        if let Some(w) = &mut live.watchdog {
            let _ = writeln!(w, "{}{pgid}", if add { '+' } else { '-' });
        }
    }

    /// Sends SIGKILL to every live group.
    pub fn kill_all(&self) {
        for &pgid in &self.0.lock().expect("not poisoned").groups {
            signal_group(pgid, libc::SIGKILL);
        }
    }
}

/// The watchdog's loop: reads `+pgid` and `-pgid` lines until its input
/// closes (the host exited or died), then SIGKILLs every group still
/// listed. Ignores SIGINT and SIGTERM: a terminal's Ctrl-C is the host's
/// to handle.
pub fn run_watchdog(input: impl std::io::BufRead) {
    #[allow(unsafe_code)]
    // SAFETY: setting signal dispositions in a single-threaded process.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGTERM, libc::SIG_IGN);
    }
    let mut groups = std::collections::HashSet::new();
    for line in input.lines() {
        let Ok(line) = line else { break };
        let (sign, pgid) = line.split_at(line.len().min(1));
        match (sign, pgid.parse::<u32>()) {
            ("+", Ok(p)) => {
                groups.insert(p);
            }
            ("-", Ok(p)) => {
                groups.remove(&p);
            }
            _ => {}
        }
    }
    for pgid in groups {
        signal_group(pgid, libc::SIGKILL);
    }
}

/// When each running process last printed, by pid: what a stall warning
/// reads. Cheap to clone.
#[derive(Clone, Default, Debug)]
pub struct Activity(Arc<std::sync::Mutex<HashMap<u32, std::time::Instant>>>);

impl Activity {
    /// When `pid` last wrote to its output; `None` if it has printed
    /// nothing (or is not one of this run's processes).
    pub fn last_output(&self, pid: u32) -> Option<std::time::Instant> {
        self.0.lock().expect("not poisoned").get(&pid).copied()
    }

    fn touch(&self, pid: u32) {
        self.0
            .lock()
            .expect("not poisoned")
            .insert(pid, std::time::Instant::now());
    }

    fn forget(&self, pid: u32) {
        self.0.lock().expect("not poisoned").remove(&pid);
    }
}

/// The `interrupt` pollable: ready once the interrupt count is at least 1.
pub struct Interrupt(pub Option<tokio::sync::watch::Receiver<u32>>);

#[wasmtime_wasi::async_trait]
impl Pollable for Interrupt {
    async fn ready(&mut self) {
        match &mut self.0 {
            Some(rx) => {
                if rx.wait_for(|n| *n >= 1).await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending().await,
        }
    }
}

/// A started process: the `child` resource.
pub struct ChildProcess {
    child: tokio::process::Child,
    pid: u32,
    status: Option<OsExitStatus>,
    /// Copies output from a pipe into the task's log, creating it with the
    /// first byte (see [`spawn`]).
    copier: Option<tokio::task::JoinHandle<bool>>,
    files: Arc<LogFiles>,
    /// The exit has been seen and the output drained.
    settled: bool,
    live: LiveGroups,
    activity: Activity,
}

/// How long a stopped task's process group has between SIGTERM and SIGKILL.
pub const KILL_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Sends `sig` to every process in the group led by `pgid`.
fn signal_group(pgid: u32, sig: i32) {
    #[allow(unsafe_code)]
    // SAFETY: kill(2) with a negative pid signals a process group; no
    // memory is involved.
    unsafe {
        libc::kill(-(pgid as i32), sig);
    }
}

/// How long an exited task's output may take to drain from its pipe. A
/// background process that keeps the pipe open does not hold the task up
/// longer; its output still reaches the log.
const DRAIN_GRACE: std::time::Duration = std::time::Duration::from_millis(200);

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
            self.status = self.child.wait().await.ok();
        }
        if let Some(copier) = self.copier.as_mut() {
            let wrote = tokio::time::timeout(DRAIN_GRACE, copier).await;
            // A failed task always has a log to point at, if only empty.
            let failed = !self.status.is_some_and(|s| s.success());
            if failed && !matches!(wrote, Ok(Ok(true))) {
                let _ = self.files.create();
            }
            self.copier = None;
        }
        self.settled = true;
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

/// The program to execute: a name without `/` is looked up in the `PATH` of
/// the task's environment, here rather than in the child, so the standard
/// library can use `posix_spawn` instead of `fork` and one `execve` per
/// `PATH` entry. A name with `/` is relative to the task's directory.
fn resolve_program(
    program: &str,
    env: &[(String, String)],
    cwd: &Path,
) -> Result<PathBuf, SpawnError> {
    use std::os::unix::fs::PermissionsExt;
    if program.contains('/') {
        return Ok(cwd.join(program));
    }
    let path = env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map_or("", |(_, v)| v.as_str());
    // Thousands of tasks run `sh` with the same PATH: remember absolute
    // answers (a relative PATH entry depends on the task's directory).
    type Found = std::collections::HashMap<(String, String), PathBuf>;
    static FOUND: std::sync::OnceLock<std::sync::Mutex<Found>> = std::sync::OnceLock::new();
    let found = FOUND.get_or_init(Default::default);
    let key = (program.to_string(), path.to_string());
    if let Some(p) = found.lock().expect("not poisoned").get(&key) {
        return Ok(p.clone());
    }
    let cacheable = path.split(':').all(|d| d.starts_with('/'));
    let mut denied = false;
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let candidate = cwd.join(dir).join(program);
        if let Ok(meta) = fs::metadata(&candidate) {
            if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                if cacheable {
                    found
                        .lock()
                        .expect("not poisoned")
                        .insert(key, candidate.clone());
                }
                return Ok(candidate);
            }
            denied |= meta.is_file();
        }
    }
    Err(if denied {
        SpawnError::PermissionDenied(format!("program \"{program}\": permission denied"))
    } else {
        SpawnError::NotFound(format!("program \"{program}\" not found"))
    })
}

/// The files a task leaves next to each other, BitBake style: for the log
/// name `dir/log.do_x` given by the component, `dir/log.do_x.<pid>` (the
/// output), `dir/run.do_x.<pid>` (the exact command, as a shell script) and
/// the link `dir/log.do_x` to the latest log.
pub struct LogFiles {
    link: PathBuf,
    log: PathBuf,
    run: PathBuf,
    script: String,
}

impl LogFiles {
    fn new(link: PathBuf, pid: u32, cmd: &wit::Command, cwd: &Path) -> LogFiles {
        let name = link
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let stem = name.strip_prefix("log.").unwrap_or(&name);
        LogFiles {
            log: link.with_file_name(format!("{name}.{pid}")),
            run: link.with_file_name(format!("run.{stem}.{pid}")),
            link,
            script: run_script(cmd, cwd, pid),
        }
    }

    /// Creates the log (empty) and the run script, and points the link at
    /// the log; returns the log, open for writing.
    fn create(&self) -> io::Result<fs::File> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&self.log)?;
        fs::write(&self.run, &self.script)?;
        // Replace the link atomically: a new link under a temporary name,
        // renamed over the old one.
        let tmp = self.link.with_file_name(format!(
            ".{}.tmp",
            self.log.file_name().unwrap_or_default().to_string_lossy()
        ));
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(self.log.file_name().unwrap_or_default(), &tmp)?;
        fs::rename(&tmp, &self.link)?;
        Ok(file)
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The command as a shell script that does what ran: the environment, the
/// directory, then the task's own shell text (for `sh -c TEXT`) or the
/// program and its arguments.
fn run_script(cmd: &wit::Command, cwd: &Path, pid: u32) -> String {
    let mut s = format!("#!/bin/sh\n# The command runqueue ran as pid {pid}.\n");
    for (k, v) in &cmd.env {
        s += &format!("export {k}={}\n", shell_quote(v));
    }
    s += &format!("cd {}\n", shell_quote(&cwd.to_string_lossy()));
    match (cmd.program.as_str(), cmd.args.as_slice()) {
        ("sh", [c, text]) if c == "-c" => {
            s += text;
            s.push('\n');
        }
        _ => {
            let argv: Vec<String> = std::iter::once(&cmd.program)
                .chain(&cmd.args)
                .map(|a| shell_quote(a))
                .collect();
            s += &format!("exec {}\n", argv.join(" "));
        }
    }
    s
}

/// Starts `cmd` in `ws`: its own process group, stdin closed, exactly the
/// given environment, stdout and stderr through a pipe into its log.
pub fn spawn(
    ws: &Workspace,
    cmd: &wit::Command,
    live: &LiveGroups,
    activity: &Activity,
) -> Result<ChildProcess, SpawnError> {
    let cwd = ws.ensure_dir(&cmd.cwd).map_err(SpawnError::InvalidPath)?;
    let link = ws.log_path(&cmd.log).map_err(SpawnError::InvalidPath)?;
    let log_err = |e: io::Error| SpawnError::Other(format!("log file \"{}\": {e}", cmd.log));
    // The link names the latest log: until this run writes one, there is
    // none. Logs are only created once the task prints something (or
    // fails): most tasks of a big build print nothing, and creating
    // thousands of empty files costs more than running the tasks (see the
    // overhead benchmark).
    match fs::symlink_metadata(&link) {
        Ok(m) if m.is_dir() => {
            return Err(SpawnError::InvalidPath(format!(
                "log \"{}\" is a directory",
                cmd.log
            )))
        }
        Ok(_) => fs::remove_file(&link).map_err(log_err)?,
        Err(_) => {}
    }
    let (reader, writer) = io::pipe().map_err(log_err)?;
    let out = fs::File::from(std::os::fd::OwnedFd::from(writer));
    let err = out.try_clone().map_err(log_err)?;
    let program = resolve_program(&cmd.program, &cmd.env, &cwd)?;
    let mut command = tokio::process::Command::new(&program);
    command.arg0(&cmd.program);
    command
        .args(&cmd.args)
        .current_dir(&cwd)
        .env_clear()
        .envs(cmd.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .process_group(0);
    // `command` holds the pipe's write end until it is dropped; it must be
    // dropped after the spawn so the copier sees end-of-file.
    let spawned = command.spawn();
    drop(command);
    let child = spawned.map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => {
            SpawnError::NotFound(format!("program \"{}\" not found", cmd.program))
        }
        io::ErrorKind::PermissionDenied => {
            SpawnError::PermissionDenied(format!("program \"{}\": permission denied", cmd.program))
        }
        _ => SpawnError::Other(format!("program \"{}\": {e}", cmd.program)),
    })?;
    let pid = child.id().unwrap_or(0);
    let files = Arc::new(LogFiles::new(link, pid, cmd, &cwd));
    let copier = tokio::spawn(copy_lazily(reader, files.clone(), {
        let activity = activity.clone();
        move || activity.touch(pid)
    }));
    live.update(pid, true);
    Ok(ChildProcess {
        child,
        pid,
        status: None,
        copier: Some(copier),
        files,
        settled: false,
        live: live.clone(),
        activity: activity.clone(),
    })
}

/// Copies everything from `reader` into the task's log, creating it (and
/// its run script and link) with the first byte, calling `printed` for
/// every chunk; returns whether anything was written. Keeps draining if the log cannot be written, so the task
/// never blocks on a full pipe.
async fn copy_lazily(reader: io::PipeReader, files: Arc<LogFiles>, printed: impl Fn()) -> bool {
    use tokio::io::AsyncReadExt;
    let Ok(mut rx) = tokio::net::unix::pipe::Receiver::from_owned_fd(reader.into()) else {
        return false;
    };
    let mut buf = vec![0u8; 64 << 10];
    let mut file: Option<Option<fs::File>> = None;
    loop {
        match rx.read(&mut buf).await {
            Ok(0) | Err(_) => return file.is_some(),
            Ok(n) => {
                printed();
                let f = file.get_or_insert_with(|| files.create().ok());
                if let Some(f) = f {
                    use std::io::Write;
                    if f.write_all(&buf[..n]).is_err() {
                        *f = fs::File::open("/dev/null").expect("/dev/null");
                    }
                }
            }
        }
    }
}

/// The host side of the `child` resource methods, over a resource table.
pub(crate) struct Children<'a>(pub &'a mut ResourceTable);

impl Children<'_> {
    pub fn push(&mut self, child: ChildProcess) -> wasmtime::Result<Resource<ChildProcess>> {
        Ok(self.0.push(child)?)
    }

    pub fn subscribe(
        &mut self,
        c: Resource<ChildProcess>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        wasmtime_wasi::p2::subscribe(self.0, c)
    }

    pub fn try_wait(&mut self, c: Resource<ChildProcess>) -> wasmtime::Result<Option<ExitStatus>> {
        Ok(self.0.get_mut(&c)?.poll_status().map(to_wit_status))
    }

    pub fn kill(&mut self, c: Resource<ChildProcess>) -> wasmtime::Result<()> {
        self.0.get_mut(&c)?.stop_group();
        Ok(())
    }

    pub fn pid(&mut self, c: Resource<ChildProcess>) -> wasmtime::Result<u32> {
        Ok(self.0.get(&c)?.pid)
    }

    pub fn drop(&mut self, c: Resource<ChildProcess>) -> wasmtime::Result<()> {
        self.0.delete(c)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_and_refuses_escapes() {
        assert_eq!(normalize("a/./b/../c").unwrap(), ["a", "c"]);
        assert_eq!(normalize("").unwrap(), Vec::<String>::new());
        assert_eq!(
            normalize("a/../..").unwrap_err(),
            "\"a/../..\" leaves the workspace"
        );
        assert_eq!(
            normalize("/etc").unwrap_err(),
            "\"/etc\" is absolute; paths are relative to the workspace"
        );
    }

    #[test]
    fn refuses_symlinks_out_of_the_workspace() {
        let ws_dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), ws_dir.path().join("out")).unwrap();
        let ws = Workspace::open(ws_dir.path()).unwrap();
        assert_eq!(
            ws.ensure_dir("out/sub").unwrap_err(),
            "\"out/sub\" leads out of the workspace through a symlink"
        );
        assert!(
            !outside.path().join("sub").exists(),
            "nothing created outside"
        );
        assert!(ws.log_path("out/log").is_err());
        // A planted link in the log's place is replaced, never followed.
        std::os::unix::fs::symlink(outside.path().join("f"), ws_dir.path().join("log.x")).unwrap();
        let cmd = wit::Command {
            program: "true".into(),
            args: vec![],
            cwd: String::new(),
            env: vec![],
            log: "log.x".into(),
        };
        let files = LogFiles::new(ws.log_path("log.x").unwrap(), 42, &cmd, ws.root());
        files.create().unwrap();
        assert!(!outside.path().join("f").exists());
        assert_eq!(
            fs::read_link(ws_dir.path().join("log.x")).unwrap(),
            Path::new("log.x.42")
        );
        assert!(ws_dir.path().join("run.x.42").is_file());
        // Inside is fine and created on demand.
        let made = ws.ensure_dir("work/a/b").unwrap();
        assert!(made.is_dir() && made.starts_with(ws.root()));
    }
}
