//! Tasks without the network: a task whose command does not say `network`
//! runs in an empty network namespace of its own (a loopback only, and
//! down), as BitBake runs every task but `do_fetch`. The namespace is made
//! in the child between fork and exec: `unshare(CLONE_NEWNET)` where this
//! process may, else with a user namespace that maps the user to itself
//! (as `unshare -rn` does). Whether the kernel allows either is tried once
//! per process, with a child of its own.
//!
//! Knows namespaces and syscalls; knows nothing of tasks or graphs.

use std::ffi::CString;
use std::io;
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

/// Whether a task runs isolated: `Ok(true)` in a namespace of its own,
/// `Ok(false)` with the network (it asked for it, or the kernel refuses
/// and isolation is not required), `Err` why it cannot run.
pub fn decide(allowed: &Result<(), String>, network: bool, how: Isolation) -> Result<bool, String> {
    match (network, allowed, how) {
        (true, _, _) => Ok(false),
        (false, Ok(()), _) => Ok(true),
        (false, Err(_), Isolation::WhereAllowed) => Ok(false),
        (false, Err(why), Isolation::Required) => Err(format!(
            "cannot take the network away from the task ({why}) and --require-isolation is given"
        )),
    }
}

/// Whether this kernel lets this process give a child a network namespace
/// of its own; `Err` says why not. Tried once.
pub fn allowed() -> &'static Result<(), String> {
    static ALLOWED: OnceLock<Result<(), String>> = OnceLock::new();
    ALLOWED.get_or_init(try_once)
}

/// Starts `sh -c 'exit 0'` in a namespace of its own.
fn try_once() -> Result<(), String> {
    use std::os::unix::process::CommandExt as _;
    let leave = Leave::new();
    let mut probe = std::process::Command::new("/bin/sh");
    probe.args(["-c", "exit 0"]);
    // SAFETY: the hook only makes syscalls on values prepared before fork.
    #[allow(unsafe_code)]
    unsafe {
        probe.pre_exec(move || leave.enter());
    }
    match probe.status() {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("a probe in a new namespace ended with {s}")),
        Err(e) => Err(format!("no network namespace: {e}")),
    }
}

/// How a child leaves the network, prepared before fork so that the child
/// only makes syscalls.
#[derive(Clone)]
pub struct Leave {
    uid_map: CString,
    gid_map: CString,
}

impl Default for Leave {
    fn default() -> Self {
        Self::new()
    }
}

impl Leave {
    pub fn new() -> Leave {
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
    pub fn enter(&self) -> io::Result<()> {
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
        let refused = Err("EPERM".to_string());
        assert_eq!(decide(&refused, false, Isolation::WhereAllowed), Ok(false));
        let err = decide(&refused, false, Isolation::Required).unwrap_err();
        assert!(
            err.contains("EPERM") && err.contains("--require-isolation"),
            "{err}"
        );
        assert_eq!(
            decide(&refused, true, Isolation::Required),
            Ok(false),
            "it asked for it"
        );
    }

    #[test]
    fn an_allowing_kernel_isolates_every_task_but_those_asking_for_the_network() {
        assert_eq!(decide(&Ok(()), false, Isolation::WhereAllowed), Ok(true));
        assert_eq!(decide(&Ok(()), false, Isolation::Required), Ok(true));
        assert_eq!(decide(&Ok(()), true, Isolation::Required), Ok(false));
    }
}
