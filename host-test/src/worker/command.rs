//! Runs one REAPI `Command`'s process: the program found as the Command
//! says, with exactly its environment, stdin closed, stdout and stderr to
//! files, in a process group of its own that is killed whole when the
//! program ends, runs out of time, is cancelled, or is let go of. Knows
//! processes and signals; knows nothing of the CAS, leases or servers.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::sync::watch;

use crate::process::exec_size::{self, Exec, Fit};
use crate::process::groups::signal_group;
use crate::process::{LiveGroups, KILL_GRACE};

/// Where PATH lookups go when the Command sets no PATH (as `execvp` does).
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// What to run, and how.
pub struct Spec {
    pub argv: Vec<String>,
    /// The whole environment: nothing of the worker's is passed on.
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
    pub timeout: Option<Duration>,
}

/// How a run ended.
#[derive(Debug, PartialEq)]
pub enum Ending {
    /// The program exited (or was killed by a signal not of our sending).
    Exited(ExitStatus),
    /// It ran longer than its timeout and was stopped; how it died.
    TimedOut(ExitStatus),
    /// The lease was withdrawn and the program stopped.
    Cancelled,
    /// It never started: the shell's code for that (127: not found, 126:
    /// found but not runnable) and why.
    NotStarted(i32, String),
}

/// A process group, SIGKILLed when dropped: leftovers of a finished
/// program, and everything when the run is abandoned midway. While it
/// lives, the watchdog (if [`watch_groups`] set one) knows it, and kills it
/// should the worker die (SIGKILL included).
struct Group(u32);

static WATCHED: std::sync::OnceLock<LiveGroups> = std::sync::OnceLock::new();

/// Reports every task's process group to `live` (a watchdog's) from now on.
pub fn watch_groups(live: LiveGroups) {
    let _ = WATCHED.set(live);
}

impl Group {
    fn new(pgid: u32) -> Group {
        WATCHED.get().inspect(|live| live.update(pgid, true));
        Group(pgid)
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        signal_group(self.0, libc::SIGKILL);
        WATCHED.get().inspect(|live| live.update(self.0, false));
    }
}

/// Runs `spec` until it ends, times out, or `cancel` turns true (or its
/// sender goes away).
pub async fn run(spec: &Spec, mut cancel: watch::Receiver<bool>) -> Ending {
    let mut child = match spawn(spec) {
        Ok(child) => child,
        Err((code, why)) => return Ending::NotStarted(code, why),
    };
    let Some(pid) = child.id() else {
        return Ending::NotStarted(126, "the program vanished as it started".into());
    };
    let _group = Group::new(pid);
    let timeout = spec.timeout.unwrap_or(Duration::MAX);
    let cancelled = async {
        let _ = cancel.wait_for(|stop| *stop).await;
    };
    tokio::select! {
        status = child.wait() => match status {
            Ok(status) => Ending::Exited(status),
            Err(e) => Ending::NotStarted(126, format!("cannot wait for the program: {e}")),
        },
        _ = tokio::time::sleep(timeout) => Ending::TimedOut(stop(&mut child, pid).await),
        _ = cancelled => {
            stop(&mut child, pid).await;
            Ending::Cancelled
        }
    }
}

/// SIGTERM to the group, SIGKILL after [`KILL_GRACE`]; how the leader died.
async fn stop(child: &mut tokio::process::Child, pgid: u32) -> ExitStatus {
    signal_group(pgid, libc::SIGTERM);
    if let Ok(Ok(status)) = tokio::time::timeout(KILL_GRACE, child.wait()).await {
        return status;
    }
    signal_group(pgid, libc::SIGKILL);
    child
        .wait()
        .await
        .unwrap_or(ExitStatus::from_raw(libc::SIGKILL))
}

fn spawn(spec: &Spec) -> Result<tokio::process::Child, (i32, String)> {
    let fitted = fitted(spec)?;
    let (argv, env) = match &fitted {
        Some(exec) => (&exec.argv, &exec.env),
        None => (&spec.argv, &spec.env),
    };
    let argv0 = argv.first().ok_or((127, "the command is empty".into()))?;
    let path = env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| v);
    let program = program(argv0, path.map(String::as_str), &spec.cwd)?;
    let output = |p: &Path| {
        std::fs::File::create(p).map_err(|e| (126, format!("cannot create {}: {e}", p.display())))
    };
    let mut cmd = tokio::process::Command::new(&program);
    cmd.arg0(argv0)
        .args(&argv[1..])
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(&spec.cwd)
        .stdin(Stdio::null())
        .stdout(output(&spec.stdout)?)
        .stderr(output(&spec.stderr)?)
        .process_group(0);
    cmd.spawn()
        .map_err(|e| (126, format!("cannot run {}: {e}", program.display())))
}

/// The argv and environment to start instead of `spec`'s when Linux
/// could not pass those (see [`exec_size`]): `sh FILE`, FILE beside the
/// output files (outside the input root, which the outputs come from);
/// `None` when they fit as they are.
fn fitted(spec: &Spec) -> Result<Option<Exec>, (i32, String)> {
    let Some((program, args)) = spec.argv.split_first() else {
        return Ok(None);
    };
    let fit = exec_size::fit(program, args, &spec.env, exec_size::arg_limit());
    let (script, env) = match fit.map_err(|why| (126, why))? {
        Fit::AsIs => return Ok(None),
        Fit::Script { script, env } => (script, env),
    };
    let file = spec.stdout.with_file_name("script");
    std::fs::write(&file, script)
        .map_err(|e| (126, format!("cannot write {}: {e}", file.display())))?;
    let argv = vec!["sh".into(), file.to_string_lossy().into_owned()];
    Ok(Some(Exec { argv, env }))
}

/// The program `argv0` names: with a `/`, that path (relative to `cwd`);
/// without, the first executable file of that name in `path`'s
/// directories (the Command's PATH, else [`DEFAULT_PATH`]; relative ones
/// relative to `cwd`). Not found: 127 and why.
fn program(argv0: &str, path: Option<&str>, cwd: &Path) -> Result<PathBuf, (i32, String)> {
    if argv0.contains('/') {
        return Ok(cwd.join(argv0));
    }
    let path = path.unwrap_or(DEFAULT_PATH);
    path.split(':')
        .map(|dir| cwd.join(dir).join(argv0))
        .find(|p| is_executable(p))
        .ok_or_else(|| (127, format!("{argv0}: not found in PATH {path}")))
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The exit code to report for `ending` (a signal's death is 128 + its
/// number, as shells say it), and a line for stderr when the code alone
/// would not tell what happened.
pub fn exit_code(ending: &Ending, timeout: Option<Duration>) -> (i32, Option<String>) {
    let died = |status: &ExitStatus| match (status.code(), status.signal()) {
        (Some(code), _) => (code, None),
        (None, Some(sig)) => (128 + sig, Some(sig)),
        (None, None) => (128, None),
    };
    match ending {
        Ending::Exited(status) => {
            let (code, sig) = died(status);
            let note = sig.map(|s| format!("killed by signal {s} ({})", signal_name(s)));
            (code, note)
        }
        Ending::TimedOut(status) => {
            let secs = timeout.map_or(0.0, |t| t.as_secs_f64());
            (
                died(status).0,
                Some(format!("stopped: ran longer than its timeout of {secs} s")),
            )
        }
        Ending::Cancelled => (
            128 + libc::SIGTERM,
            Some("stopped: the lease was withdrawn".into()),
        ),
        Ending::NotStarted(code, why) => (*code, Some(why.clone())),
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        _ => "a signal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        let exited = |raw| Ending::Exited(ExitStatus::from_raw(raw));
        assert_eq!(exit_code(&exited(3 << 8), None), (3, None));
        assert_eq!(
            exit_code(&exited(libc::SIGKILL), None),
            (137, Some("killed by signal 9 (SIGKILL)".into()))
        );
        let timed_out = Ending::TimedOut(ExitStatus::from_raw(libc::SIGTERM));
        assert_eq!(
            exit_code(&timed_out, Some(Duration::from_millis(1500))),
            (
                143,
                Some("stopped: ran longer than its timeout of 1.5 s".into())
            )
        );
        let missing = Ending::NotStarted(127, "cc: not found in PATH /bin".into());
        assert_eq!(
            exit_code(&missing, None),
            (127, Some("cc: not found in PATH /bin".into()))
        );
    }

    #[test]
    fn programs_are_found_as_the_command_says() {
        let t = tempfile::tempdir().unwrap();
        let bin = t.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        std::fs::write(bin.join("tool"), "").unwrap();
        std::fs::write(bin.join("data"), "").unwrap();
        std::fs::set_permissions(bin.join("tool"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let cwd = t.path();
        assert_eq!(
            program("tool", Some("/nowhere:bin"), cwd).unwrap(),
            bin.join("tool")
        );
        assert_eq!(program("./x/y", None, cwd).unwrap(), cwd.join("./x/y"));
        assert_eq!(program("data", Some("bin"), cwd).unwrap_err().0, 127);
        assert!(program("sh", None, cwd).unwrap().ends_with("bin/sh"));
    }

    fn spec(dir: &Path, argv: &[&str], timeout: Option<Duration>) -> Spec {
        Spec {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            env: vec![
                ("PATH".into(), "/usr/bin:/bin".into()),
                ("ONLY".into(), "this".into()),
            ],
            cwd: dir.to_path_buf(),
            stdout: dir.join("out"),
            stderr: dir.join("err"),
            timeout,
        }
    }

    #[tokio::test]
    async fn runs_with_exactly_its_environment() {
        let t = tempfile::tempdir().unwrap();
        let (_keep, cancel) = watch::channel(false);
        let ending = run(&spec(t.path(), &["env"], None), cancel.clone()).await;
        assert_eq!(exit_code(&ending, None), (0, None));
        let out = std::fs::read_to_string(t.path().join("out")).unwrap();
        let mut lines: Vec<&str> = out.lines().collect();
        lines.sort();
        assert_eq!(lines, ["ONLY=this", "PATH=/usr/bin:/bin"]);
        let failing = spec(t.path(), &["sh", "-c", "echo oops >&2; exit 4"], None);
        assert_eq!(exit_code(&run(&failing, cancel).await, None), (4, None));
        assert_eq!(
            std::fs::read_to_string(t.path().join("err")).unwrap(),
            "oops\n"
        );
    }

    /// A Command from any client with a shell text too long for one
    /// argument runs from a script; an argument nothing can pass is a
    /// clear refusal.
    #[tokio::test]
    async fn what_is_too_long_for_one_argument_still_runs_or_says_why() {
        let t = tempfile::tempdir().unwrap();
        let (_keep, cancel) = watch::channel(false);
        let text = "echo x\n".repeat(30_000) + "echo done";
        let long = spec(t.path(), &["sh", "-c", &text], None);
        assert_eq!(
            exit_code(&run(&long, cancel.clone()).await, None),
            (0, None)
        );
        let out = std::fs::read_to_string(t.path().join("out")).unwrap();
        assert_eq!(out.lines().count(), 30_001);
        let arg = "a".repeat(200_000);
        let Ending::NotStarted(126, why) =
            run(&spec(t.path(), &["echo", &arg], None), cancel).await
        else {
            panic!("started")
        };
        assert!(why.contains("MAX_ARG_STRLEN"), "{why}");
    }

    #[tokio::test]
    async fn a_timeout_stops_the_whole_group() {
        let t = tempfile::tempdir().unwrap();
        let pidfile = t.path().join("bg");
        let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
        let s = spec(
            t.path(),
            &["sh", "-c", &script],
            Some(Duration::from_millis(300)),
        );
        let (_keep, cancel) = watch::channel(false);
        let ending = run(&s, cancel).await;
        assert!(matches!(ending, Ending::TimedOut(_)), "{ending:?}");
        let bg: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            !Path::new(&format!("/proc/{bg}")).exists() || is_zombie(bg),
            "sleep survived"
        );
    }

    #[tokio::test]
    async fn cancelling_stops_it() {
        let t = tempfile::tempdir().unwrap();
        let s = spec(t.path(), &["sleep", "30"], None);
        let (stop, cancel) = watch::channel(false);
        let run = tokio::spawn(async move { run(&s, cancel).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop.send(true).unwrap();
        assert_eq!(run.await.unwrap(), Ending::Cancelled);
    }

    fn is_zombie(pid: i32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
    }
}
