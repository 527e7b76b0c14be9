//! Strays: processes a task started that outlived it outside its process
//! group (`setsid cmd &`, a double fork). As a child subreaper, this
//! process becomes the parent of every orphan below it, so strays can be
//! found among its own children and told apart by the `RUNQUEUE_LOG` and
//! `RUNQUEUE_WORKSPACE` variables every task's environment carries (naming
//! the task's log and its workspace: builds side by side in one process,
//! as `runqueue serve` runs them, may share log names).
//! A stray that clears its environment is not recognized.
//!
//! Knows pids, `/proc` and signals; knows nothing of tasks or graphs.

use std::time::{Duration, Instant};

/// The variable naming a task's log in its environment, and so the task.
pub const TASK_VAR: &str = "RUNQUEUE_LOG";

/// The variable naming a task's workspace (absolute) in its environment.
pub const WORKSPACE_VAR: &str = "RUNQUEUE_WORKSPACE";

/// A task as its strays know it: its log, relative to its workspace.
pub type TaskKey<'a> = (&'a str, &'a std::path::Path);

/// Makes orphans below this process its children rather than init's;
/// `false` where the kernel does not allow it.
#[allow(unsafe_code)]
pub fn become_subreaper() -> bool {
    // SAFETY: plain prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0 }
}

/// Kills the strays of the task `task` (any task's, for `None`), with
/// their process groups, and reaps them; says which ("123 (sleep)").
/// Orphans that already exited are reaped too.
pub fn kill(task: Option<TaskKey<'_>>) -> Vec<String> {
    let mut killed = Vec::new();
    // Killing a stray orphans its own children: they are ours next.
    for _ in 0..4 {
        let found: Vec<u32> = children()
            .into_iter()
            .filter(|&p| belongs(p, task))
            .collect();
        if found.is_empty() {
            break;
        }
        for pid in found {
            if let Some(name) = kill_one(pid) {
                killed.push(format!("{pid} ({name})"));
            }
        }
    }
    killed
}

/// This process's children, from every thread's list.
fn children() -> Vec<u32> {
    let Ok(threads) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    threads
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// Whether `pid` carries the task variable (for `Some`, with the task's
/// log and workspace). A task's own process carries them too and is the
/// runtime's to wait for: callers look only after that task's process was
/// reaped (for `None`, after every task's).
fn belongs(pid: u32, task: Option<TaskKey<'_>>) -> bool {
    use std::os::unix::ffi::OsStrExt as _;
    let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
        return false;
    };
    let value = |var: &str| {
        let prefix = format!("{var}=");
        env.split(|&b| b == 0)
            .filter_map(|kv| kv.strip_prefix(prefix.as_bytes()))
            .next_back()
    };
    match (value(TASK_VAR), task) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(log), Some((want, root))) => {
            log == want.as_bytes() && value(WORKSPACE_VAR) == Some(root.as_os_str().as_bytes())
        }
    }
}

/// SIGKILL to `pid` and the group it leads, then reaps it; its name, if
/// it was still running.
#[allow(unsafe_code)]
fn kill_one(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let name = stat.split_once('(')?.1.rsplit_once(')')?.0.to_string();
    let zombie = stat.rsplit_once(')')?.1.trim_start().starts_with('Z');
    if !zombie {
        // SAFETY: signals to a pid and a pgid that are our own children's.
        unsafe {
            libc::kill(-(pid as i32), libc::SIGKILL);
            libc::kill(pid as i32, libc::SIGKILL);
        }
    }
    reap(pid);
    (!zombie).then_some(name)
}

/// Waits (briefly) for our child `pid` to end, so it leaves no zombie.
#[allow(unsafe_code)]
fn reap(pid: u32) {
    let until = Instant::now() + Duration::from_secs(1);
    loop {
        let mut status = 0;
        // SAFETY: waitpid on a specific child with a valid status pointer.
        let r = unsafe { libc::waitpid(pid as i32, &mut status, libc::WNOHANG) };
        if r != 0 || Instant::now() > until {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
