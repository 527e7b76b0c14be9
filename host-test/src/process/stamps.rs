//! Exit stamps: one thread that watches every task process (a pidfd per
//! child in one epoll set, Linux 5.3 and later) and notes the moment each
//! one exits, and the most memory it held (its resource usage, read
//! without reaping it), whatever the component (and with it the async runtime's one
//! thread) is doing then. It only looks: reaping stays with the runtime,
//! which wakes the component directly. Where pidfds or epoll are missing,
//! nothing is stamped and the runtime's own time of noticing stands.
//! Knows pids and clocks; knows nothing of tasks, logs or groups.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

/// The moment a process exited, once the stamper saw it, and its peak
/// resident memory in bytes (its own or that of the largest process it
/// waited for), when the kernel still had it to tell.
pub type Stamp = Arc<Stamped>;

#[derive(Default)]
pub struct Stamped {
    exit: OnceLock<(Instant, Option<u64>)>,
    /// Told once the exit is stamped.
    stamped: tokio::sync::Notify,
    /// The stamper watches the process: its exit will be stamped.
    watched: std::sync::atomic::AtomicBool,
}

impl Stamped {
    pub fn get(&self) -> Option<&(Instant, Option<u64>)> {
        self.exit.get()
    }

    /// Resolves once the exit is stamped, at once if it never will be.
    /// Awaited before the runtime reaps the process, so that its resource
    /// usage can still be read.
    pub async fn wait(&self) {
        use std::sync::atomic::Ordering;
        while self.watched.load(Ordering::Acquire) && self.exit.get().is_none() {
            self.stamped.notified().await;
        }
    }

    fn set(&self, exit: (Instant, Option<u64>)) {
        let _ = self.exit.set(exit);
        self.stamped.notify_one();
    }
}

/// The epoll set and what to stamp, by pid.
struct Stamper {
    epoll: OwnedFd,
    watched: Mutex<HashMap<u32, (Stamp, OwnedFd)>>,
}

/// Starts watching process `pid` (a child of this process, not yet
/// reaped); its stamp is set when it exits.
pub fn watch(pid: u32) -> Stamp {
    let stamp = Stamp::default();
    if let Some(stamper) = shared() {
        stamper.add(pid, stamp.clone());
    }
    stamp
}

/// The one stamper of this process, started on first use; `None` where
/// epoll is not available.
fn shared() -> Option<&'static Arc<Stamper>> {
    static STAMPER: OnceLock<Option<Arc<Stamper>>> = OnceLock::new();
    STAMPER
        .get_or_init(|| {
            let stamper = Arc::new(Stamper {
                epoll: epoll_create().ok()?,
                watched: Mutex::default(),
            });
            let s = stamper.clone();
            let started = std::thread::Builder::new()
                .name("exit stamps".into())
                .stack_size(64 * 1024)
                .spawn(move || s.run());
            started.ok().map(|_| stamper)
        })
        .as_ref()
}

impl Stamper {
    fn add(&self, pid: u32, stamp: Stamp) {
        let Ok(pidfd) = pidfd_open(pid) else { return };
        let fd = pidfd.as_raw_fd();
        stamp
            .watched
            .store(true, std::sync::atomic::Ordering::Release);
        // In the map before the epoll set: the exit may be reported at once.
        self.watched
            .lock()
            .expect("not poisoned")
            .insert(pid, (stamp, pidfd));
        if epoll_add(self.epoll.as_raw_fd(), fd, pid).is_err() {
            let removed = self.watched.lock().expect("not poisoned").remove(&pid);
            if let Some((stamp, _)) = removed {
                stamp
                    .watched
                    .store(false, std::sync::atomic::Ordering::Release);
                stamp.stamped.notify_one();
            }
        }
    }

    fn run(&self) {
        let mut ready = Vec::new();
        loop {
            epoll_wait(self.epoll.as_raw_fd(), &mut ready);
            let now = Instant::now();
            for pid in ready.drain(..) {
                let watched = self.watched.lock().expect("not poisoned").remove(&pid);
                if let Some((stamp, pidfd)) = watched {
                    stamp.set((now, peak_rss(pidfd.as_raw_fd())));
                    // Out of the set before it is closed: a child being
                    // spawned may hold a copy of the fd for a while, and
                    // until then closing ours would leave it reported.
                    epoll_del(self.epoll.as_raw_fd(), pidfd.as_raw_fd());
                }
            }
        }
    }
}

/// The peak resident memory of the exited, unreaped process behind
/// `pidfd`: `waitid` with `WNOWAIT` leaves it for the runtime to reap.
/// `None` if the runtime reaped it first.
#[allow(unsafe_code)]
fn peak_rss(pidfd: RawFd) -> Option<u64> {
    const P_PIDFD: libc::c_int = 3;
    // SAFETY: zeroed plain C structs are valid values.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let flags = libc::WEXITED | libc::WNOWAIT | libc::WNOHANG;
    // SAFETY: the raw syscall takes a fifth argument, the rusage to fill;
    // both buffers are valid for writing.
    let r = unsafe {
        libc::syscall(
            libc::SYS_waitid,
            P_PIDFD,
            pidfd,
            &mut info,
            flags,
            &mut usage,
        )
    };
    (r == 0 && usage.ru_maxrss > 0).then(|| usage.ru_maxrss as u64 * 1024)
}

#[allow(unsafe_code)]
fn epoll_create() -> std::io::Result<OwnedFd> {
    // SAFETY: plain syscall; a non-negative result is a new fd we own.
    let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh, valid descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[allow(unsafe_code)]
fn pidfd_open(pid: u32) -> std::io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a non-negative result is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

#[allow(unsafe_code)]
fn epoll_add(epoll: RawFd, fd: RawFd, pid: u32) -> std::io::Result<()> {
    let mut ev = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: pid as u64,
    };
    // SAFETY: both fds are valid; ev is a valid event for the call.
    if unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[allow(unsafe_code)]
fn epoll_del(epoll: RawFd, fd: RawFd) {
    // SAFETY: both fds are valid; DEL ignores the event argument.
    unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_DEL, fd, std::ptr::null_mut()) };
}

/// Blocks until some pidfds are ready; their pids go into `ready`.
#[allow(unsafe_code)]
fn epoll_wait(epoll: RawFd, ready: &mut Vec<u32>) {
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 64];
    // SAFETY: events is a valid buffer of the length given.
    let n = unsafe { libc::epoll_wait(epoll, events.as_mut_ptr(), events.len() as i32, -1) };
    for ev in events.iter().take(n.max(0) as usize) {
        ready.push(ev.u64 as u32);
    }
}
