//! Tasks without the network: a task whose command does not say `network`
//! runs in an empty network namespace (a loopback only, and down), as
//! BitBake runs every task but `do_fetch`. One namespace is made per
//! process, by a helper child: `unshare(CLONE_NEWNET)` where this process
//! may, else with a user namespace that maps the user to itself (as
//! `unshare -rn` does); each task's child joins it with `setns` between
//! fork and exec. Whether the kernel allows it is known from that first
//! try.
//!
//! Knows namespaces and syscalls; knows nothing of tasks or graphs.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;

/// What a build asks when the kernel refuses namespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// Run such tasks with the network, having warned once.
    #[default]
    WhereAllowed,
    /// Fail them (`--require-isolation`).
    Required,
}

/// Whether a task runs isolated: `Ok(true)` in the empty namespace,
/// `Ok(false)` with the network (it asked for it, or the kernel refuses
/// and isolation is not required), `Err` why it cannot run.
pub fn decide(allowed: Result<(), &str>, network: bool, how: Isolation) -> Result<bool, String> {
    match (network, allowed, how) {
        (true, _, _) => Ok(false),
        (false, Ok(()), _) => Ok(true),
        (false, Err(_), Isolation::WhereAllowed) => Ok(false),
        (false, Err(why), Isolation::Required) => Err(format!(
            "cannot take the network away from the task ({why}) and --require-isolation is given"
        )),
    }
}

/// The empty network namespace isolated tasks join (and the user
/// namespace that owns it, when one was needed), held open by
/// descriptors. One per process: a namespace made and torn down per task
/// costs more than half the rate of trivial tasks; joining one costs a
/// syscall.
struct Shared {
    net: OwnedFd,
    user: Option<OwnedFd>,
}

fn shared() -> &'static Result<Shared, String> {
    static SHARED: OnceLock<Result<Shared, String>> = OnceLock::new();
    SHARED.get_or_init(make_shared)
}

/// Whether this kernel lets this process take the network away from its
/// children; `Err` says why not. Tried once.
pub fn allowed() -> Result<(), &'static str> {
    shared().as_ref().map(|_| ()).map_err(String::as_str)
}

/// How a child joins the empty namespace, when there is one.
fn join() -> Option<Join> {
    let shared = shared().as_ref().ok()?;
    Some(Join {
        net: shared.net.as_raw_fd(),
        user: shared.user.as_ref().map(AsRawFd::as_raw_fd),
    })
}

/// Makes the namespace: a helper child leaves the network (see
/// [`Leave`]) and waits on its stdin while its namespaces are opened.
fn make_shared() -> Result<Shared, String> {
    use std::os::unix::process::CommandExt as _;
    let leave = Leave::new();
    let mut helper = std::process::Command::new("/bin/sh");
    helper
        .args(["-c", "read _"])
        .stdin(std::process::Stdio::piped());
    // SAFETY: the hook only makes syscalls on values prepared before fork.
    #[allow(unsafe_code)]
    unsafe {
        helper.pre_exec(move || leave.enter());
    }
    let mut child = helper
        .spawn()
        .map_err(|e| format!("no network namespace: {e}"))?;
    let opened = open_namespaces(child.id());
    drop(child.stdin.take());
    let _ = child.wait();
    opened.map_err(|e| format!("cannot hold the network namespace: {e}"))
}

/// The network namespace of `pid`, and its user namespace if not ours.
fn open_namespaces(pid: u32) -> io::Result<Shared> {
    use std::os::unix::fs::MetadataExt as _;
    let net = std::fs::File::open(format!("/proc/{pid}/ns/net"))?;
    let user = std::fs::File::open(format!("/proc/{pid}/ns/user"))?;
    let ours = std::fs::metadata("/proc/self/ns/user")?.ino();
    let theirs = user.metadata()?.ino();
    Ok(Shared {
        net: net.into(),
        user: (theirs != ours).then(|| user.into()),
    })
}

/// Starts `command` in the empty namespace, consuming it (and so closing
/// what it holds open once the child runs). From a thread that joined the
/// namespace, where it can (a thread may join a network namespace; not a
/// user namespace, in a process with threads): its children inherit it
/// and keep `posix_spawn`'s speed, where a hook between fork and exec would
/// force a full fork of this large process (measured: 39 % of the rate of
/// trivial tasks). Else with such a hook.
pub fn spawn(mut command: tokio::process::Command) -> io::Result<tokio::process::Child> {
    if let Some(spawner) = spawner() {
        return spawner.spawn(command);
    }
    let join = join().ok_or_else(|| io::Error::other("no network namespace"))?;
    // SAFETY: the hook only makes syscalls on descriptors prepared before
    // fork.
    #[allow(unsafe_code)]
    unsafe {
        command.pre_exec(move || join.enter());
    }
    command.spawn()
}

type Reply = std::sync::mpsc::Sender<io::Result<tokio::process::Child>>;

/// A spawn request: the command, the runtime of the caller (its child is
/// that runtime's to reap), where to answer.
type Request = (tokio::process::Command, tokio::runtime::Handle, Reply);

/// The thread that spawns isolated tasks from inside the namespace.
struct Spawner(std::sync::Mutex<std::sync::mpsc::Sender<Request>>);

impl Spawner {
    fn spawn(&self, command: tokio::process::Command) -> io::Result<tokio::process::Child> {
        let runtime = tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
        let (reply, answer) = std::sync::mpsc::channel();
        let sent = self
            .0
            .lock()
            .map(|tx| tx.send((command, runtime, reply)).is_ok());
        match sent {
            Ok(true) => answer
                .recv()
                .unwrap_or_else(|_| Err(io::Error::other("spawner gone"))),
            _ => Err(io::Error::other("spawner gone")),
        }
    }
}

/// The spawner thread, started once if the namespace lets a thread in.
fn spawner() -> Option<&'static Spawner> {
    static SPAWNER: OnceLock<Option<Spawner>> = OnceLock::new();
    SPAWNER
        .get_or_init(|| {
            let join = join().filter(|j| j.user.is_none())?;
            let (tx, rx) = std::sync::mpsc::channel::<Request>();
            let (ready, joined) = std::sync::mpsc::channel();
            std::thread::Builder::new()
                .name("isolated spawns".into())
                .spawn(move || {
                    let _ = ready.send(join.enter().is_ok());
                    for (mut command, runtime, reply) in rx {
                        let entered = runtime.enter();
                        let child = command.spawn();
                        drop(entered);
                        drop(command);
                        let _ = reply.send(child);
                    }
                })
                .ok()?;
            joined
                .recv()
                .ok()?
                .then(|| Spawner(std::sync::Mutex::new(tx)))
        })
        .as_ref()
}

/// Descriptors of the shared namespaces, for a child between fork and
/// exec.
#[derive(Clone, Copy)]
struct Join {
    net: RawFd,
    user: Option<RawFd>,
}

impl Join {
    /// In the child: into the empty network namespace, or an error.
    #[allow(unsafe_code)]
    fn enter(self) -> io::Result<()> {
        // SAFETY: setns on descriptors this process holds open.
        unsafe {
            if let Some(user) = self.user {
                if libc::setns(user, libc::CLONE_NEWUSER) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            if libc::setns(self.net, libc::CLONE_NEWNET) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

/// How a child leaves the network, prepared before fork so that the child
/// only makes syscalls.
struct Leave {
    uid_map: CString,
    gid_map: CString,
}

impl Leave {
    fn new() -> Leave {
        // SAFETY: getuid and getgid cannot fail.
        #[allow(unsafe_code)]
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        Leave {
            uid_map: CString::new(format!("{uid} {uid} 1")).expect("digits"),
            gid_map: CString::new(format!("{gid} {gid} 1")).expect("digits"),
        }
    }

    /// In the child: into an empty network namespace, or an error.
    #[allow(unsafe_code)]
    fn enter(&self) -> io::Result<()> {
        // SAFETY: plain syscalls; nothing is allocated.
        unsafe {
            if libc::unshare(libc::CLONE_NEWNET) == 0 {
                return Ok(());
            }
            if libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        write_proc(c"/proc/self/setgroups", c"deny")?;
        write_proc(c"/proc/self/uid_map", &self.uid_map)?;
        write_proc(c"/proc/self/gid_map", &self.gid_map)
    }
}

/// Writes `text` to the `/proc` file `path` with raw syscalls.
#[allow(unsafe_code)]
fn write_proc(path: &std::ffi::CStr, text: &std::ffi::CStr) -> io::Result<()> {
    // SAFETY: valid C strings; the descriptor is closed on every path.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let bytes = text.to_bytes();
        let n = libc::write(fd, bytes.as_ptr().cast(), bytes.len());
        libc::close(fd);
        match n == bytes.len() as isize {
            true => Ok(()),
            false => Err(io::Error::last_os_error()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusing_kernel_runs_tasks_with_the_network_unless_isolation_is_required() {
        let refused = Err("EPERM");
        assert_eq!(decide(refused, false, Isolation::WhereAllowed), Ok(false));
        let err = decide(refused, false, Isolation::Required).unwrap_err();
        assert!(
            err.contains("EPERM") && err.contains("--require-isolation"),
            "{err}"
        );
        assert_eq!(
            decide(refused, true, Isolation::Required),
            Ok(false),
            "it asked for it"
        );
    }

    #[test]
    fn an_allowing_kernel_isolates_every_task_but_those_asking_for_the_network() {
        assert_eq!(decide(Ok(()), false, Isolation::WhereAllowed), Ok(true));
        assert_eq!(decide(Ok(()), false, Isolation::Required), Ok(true));
        assert_eq!(decide(Ok(()), true, Isolation::Required), Ok(false));
    }
}
