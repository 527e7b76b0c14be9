//! One build per workspace: an exclusive `flock` on the workspace
//! directory itself, held for as long as the build runs. Knows locks and
//! who holds them; knows nothing of builds or graphs.
//!
//! The lock creates no file (it is taken on the directory's own open
//! handle, close-on-exec, so no task inherits it) and the kernel drops it
//! when its holder exits however it exits: a build killed with SIGKILL
//! leaves nothing stale behind. Two builds in one process (the service)
//! exclude each other too, as each opens the directory anew.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The workspace held by this build; dropping it lets the next one in.
#[derive(Debug)]
pub struct WorkspaceLock {
    _dir: File,
}

/// Who holds a workspace another build asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// Another process, by its pid when /proc/locks names it.
    Other(Option<u32>),
    /// A build this process runs under (a nested build in the workspace
    /// of the build running it, which would wait for ever).
    Ancestor(u32),
}

impl Holder {
    /// "workspace W is in use by …", as the second build says it.
    pub fn describe(&self, workspace: &Path) -> String {
        let by = match self {
            Holder::Other(Some(pid)) => format!("another build (pid {pid})"),
            Holder::Other(None) => "another build".to_string(),
            Holder::Ancestor(pid) => format!("the build that runs this one (pid {pid})"),
        };
        format!("workspace {} is in use by {by}", workspace.display())
    }
}

impl WorkspaceLock {
    /// Takes the lock if it is free, else says who holds it.
    pub fn try_lock(workspace: &Path) -> io::Result<Result<WorkspaceLock, Holder>> {
        let dir = File::open(workspace)?;
        if flock(&dir, libc::LOCK_EX | libc::LOCK_NB)? {
            return Ok(Ok(WorkspaceLock { _dir: dir }));
        }
        Ok(Err(holder_of(&dir)))
    }

    /// Waits for the lock (blocking the calling thread).
    pub fn lock(workspace: &Path) -> io::Result<WorkspaceLock> {
        let dir = File::open(workspace)?;
        flock(&dir, libc::LOCK_EX)?;
        Ok(WorkspaceLock { _dir: dir })
    }

    /// Waits for the lock on the blocking pool, not stalling the runtime.
    pub async fn lock_async(workspace: PathBuf) -> io::Result<WorkspaceLock> {
        tokio::task::spawn_blocking(move || WorkspaceLock::lock(&workspace))
            .await
            .map_err(io::Error::other)?
    }
}

/// `flock(op)`: true once taken, false if `LOCK_NB` found it held.
#[allow(unsafe_code)]
pub(crate) fn flock(dir: &File, op: libc::c_int) -> io::Result<bool> {
    loop {
        // SAFETY: flock on a descriptor we own; no memory is passed.
        if unsafe { libc::flock(dir.as_raw_fd(), op) } == 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EWOULDBLOCK) => return Ok(false),
            Some(libc::EINTR) => continue,
            _ => return Err(e),
        }
    }
}

/// Who holds the lock on `dir`, from /proc/locks.
fn holder_of(dir: &File) -> Holder {
    let pid = dir.metadata().ok().and_then(|m| {
        let locks = std::fs::read_to_string("/proc/locks").ok()?;
        flock_holder(&locks, m.dev(), m.ino())
    });
    match pid {
        Some(pid) if ancestors().contains(&pid) => Holder::Ancestor(pid),
        pid => Holder::Other(pid),
    }
}

/// The pid of the FLOCK write lock on device `dev`, inode `ino` in a
/// /proc/locks text ("1: FLOCK ADVISORY WRITE 4242 08:01:1234 0 EOF").
fn flock_holder(locks: &str, dev: u64, ino: u64) -> Option<u32> {
    let want = format!(
        "{:02x}:{:02x}:{ino}",
        libc::major(dev as libc::dev_t),
        libc::minor(dev as libc::dev_t)
    );
    locks.lines().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        // Blocked waiters are listed as "1: -> FLOCK …": skip them.
        let held = f.len() >= 6 && f[1] == "FLOCK" && f[3] == "WRITE";
        (held && f[5] == want).then(|| f[4].parse().ok()).flatten()
    })
}

/// The pids this process runs under, parent first.
fn ancestors() -> Vec<u32> {
    let mut out = Vec::new();
    let mut pid = std::process::id();
    while let Some(parent) = parent_of(pid).filter(|&p| p > 1 && !out.contains(&p)) {
        out.push(parent);
        pid = parent;
    }
    out
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid …": comm may hold spaces and parentheses.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holder_is_read_from_proc_locks() {
        let locks = "1: FLOCK  ADVISORY  WRITE 4242 08:01:1234 0 EOF\n\
                     1: -> FLOCK  ADVISORY  WRITE 777 08:01:1234 0 EOF\n\
                     2: POSIX  ADVISORY  WRITE 99 08:01:55 0 EOF\n";
        let dev = libc::makedev(8, 1) as u64;
        assert_eq!(flock_holder(locks, dev, 1234), Some(4242));
        assert_eq!(
            flock_holder(locks, dev, 55),
            None,
            "POSIX locks are not ours"
        );
        assert_eq!(flock_holder(locks, dev, 99), None);
    }

    #[test]
    fn a_second_lock_names_this_process_and_is_free_after_the_first_drops() {
        let dir = std::env::temp_dir().join(format!("rq-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let first = WorkspaceLock::try_lock(&dir).unwrap().expect("free");
        let held = WorkspaceLock::try_lock(&dir).unwrap().unwrap_err();
        assert_eq!(held, Holder::Other(Some(std::process::id())));
        drop(first);
        assert!(WorkspaceLock::try_lock(&dir).unwrap().is_ok());
        std::fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn the_parent_of_this_process_is_an_ancestor() {
        let parent = std::os::unix::process::parent_id();
        assert_eq!(ancestors().first(), Some(&parent));
    }
}
