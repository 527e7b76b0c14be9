//! The GNU make jobserver: a pool of job slots, one byte per slot in a
//! pipe, that runqueue's tasks and the `make`, `ninja` and `cargo` they run
//! share. Serving, runqueue makes a FIFO holding `-j` minus one bytes (the
//! one it keeps is the implicit slot its first task takes); joining, it
//! uses the pool of the make it runs under. Either way it takes a slot for
//! each task it starts and gives it back when the task ends; the nested
//! builds take theirs from the same pool.
//!
//! Tasks that take part find the pool in `MAKEFLAGS` in both dialects:
//! `--jobserver-auth=fifo:PATH` (make 4.4, Ninja 1.13, which reads only
//! this one) and, after it, the descriptor pair of an inherited open FIFO
//! as `--jobserver-au=R,W` (make 4.3 reads only pipes, takes the last
//! option, and accepts the abbreviation Ninja does not recognize).
//!
//! A nested build killed with SIGKILL takes its slots with it. Once no
//! task holds a slot and every process group that took part is gone,
//! missing slots are put back. Knows descriptors and bytes; knows
//! nothing of tasks.

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::io::unix::AsyncFd;

/// Whether runqueue shares its slots with nested builds, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JobserverMode {
    /// No jobserver: tasks get no `MAKEFLAGS` from runqueue.
    #[default]
    Off,
    /// Serve a pool of this many slots.
    Serve(u32),
    /// Take slots from the jobserver `MAKEFLAGS` names (runqueue was given
    /// no `-j` and runs under make); serve this many if it names none.
    JoinOr(u32),
}

/// A pool of job slots shared with the tasks' nested builds.
pub struct Jobserver {
    /// Ours: non-blocking, read to take a slot, written to give it back.
    read: OwnedFd,
    write: RawFd,
    state: Mutex<Held>,
    /// What tasks that take part get as `MAKEFLAGS`.
    makeflags: String,
    served: Option<Served>,
    readable: Arc<AsyncFd<OwnedFd>>,
}

/// The slots runqueue holds for its running tasks.
struct Held {
    /// Its own implicit slot is free.
    implicit: bool,
    /// Bytes read from the pool, given back as they came.
    bytes: Vec<u8>,
    /// Process groups of tasks that took part and may still run.
    groups: Vec<u32>,
}

/// The pool runqueue serves: a FIFO in a private directory.
struct Served {
    dir: PathBuf,
    /// Bytes in the pool when nobody holds a slot.
    tokens: u32,
    /// Open without close-on-exec: the tasks' `R,W`.
    _inherited: OwnedFd,
}

impl Jobserver {
    /// The pool `mode` asks for; `Ok(None)` when off. `MAKEFLAGS` is the
    /// host's own, read only to join.
    pub fn new(mode: JobserverMode, makeflags: Option<&str>) -> io::Result<Option<Jobserver>> {
        match mode {
            JobserverMode::Off => Ok(None),
            JobserverMode::Serve(slots) => Jobserver::serve(slots).map(Some),
            JobserverMode::JoinOr(slots) => {
                let auth = makeflags.and_then(parse_auth);
                match auth.map(|a| Jobserver::join(a, makeflags.unwrap_or_default())) {
                    Some(Ok(js)) => return Ok(Some(js)),
                    Some(Err(e)) => eprintln!(
                        "runqueue: warning: cannot join the jobserver MAKEFLAGS names: {e}; \
                         serving {slots} slots of its own"
                    ),
                    None => {}
                }
                Jobserver::serve(slots).map(Some)
            }
        }
    }

    /// Whether runqueue serves this pool (rather than joining make's).
    pub fn serving(&self) -> bool {
        self.served.is_some()
    }

    fn serve(slots: u32) -> io::Result<Jobserver> {
        let dir = private_dir()?;
        let fifo = dir.join("jobserver");
        let made = mkfifo(&fifo).and_then(|()| {
            let read = open(&fifo, libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC)?;
            let inherited = open(&fifo, libc::O_RDWR)?;
            Ok((read, inherited))
        });
        let (read, inherited) = made.inspect_err(|_| {
            let _ = fs::remove_dir_all(&dir);
        })?;
        let tokens = slots.saturating_sub(1);
        write_all(read.as_raw_fd(), &vec![b'+'; tokens as usize])?;
        let fd = inherited.as_raw_fd();
        let makeflags = format!(
            " -j{slots} --jobserver-auth=fifo:{} --jobserver-au={fd},{fd}",
            fifo.display()
        );
        let served = Served {
            dir,
            tokens,
            _inherited: inherited,
        };
        let write = read.as_raw_fd();
        Jobserver::with(read, write, makeflags, Some(served))
    }

    fn join(auth: Auth, makeflags: &str) -> io::Result<Jobserver> {
        let (read, write) = match auth {
            Auth::Fifo(path) => {
                let fd = open(&path, libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC)?;
                let w = fd.as_raw_fd();
                (fd, w)
            }
            Auth::Pipe(r, w) => {
                valid_fd(r)?;
                valid_fd(w)?;
                // A descriptor of our own on the same pipe, so that ours
                // can be non-blocking and make's stay as they are.
                let own = format!("/proc/self/fd/{r}");
                let flags = libc::O_RDONLY | libc::O_NONBLOCK | libc::O_CLOEXEC;
                (open(Path::new(&own), flags)?, w)
            }
        };
        Jobserver::with(read, write, makeflags.to_string(), None)
    }

    fn with(
        read: OwnedFd,
        write: RawFd,
        makeflags: String,
        served: Option<Served>,
    ) -> io::Result<Jobserver> {
        let readable = Arc::new(watch(read.try_clone()?)?);
        Ok(Jobserver {
            read,
            write,
            state: Mutex::new(Held {
                implicit: true,
                bytes: Vec::new(),
                groups: Vec::new(),
            }),
            makeflags,
            served,
            readable,
        })
    }

    /// `MAKEFLAGS` for a task that takes part, after its own `theirs`.
    pub fn makeflags(&self, theirs: Option<&str>) -> String {
        match theirs {
            Some(t) if !t.trim().is_empty() => format!("{t}{}", self.makeflags),
            _ => self.makeflags.trim_start().to_string(),
        }
    }

    /// Process group `pgid` takes part: its slots are counted lost only
    /// once it is gone.
    pub fn joined(&self, pgid: u32) {
        self.held().groups.push(pgid);
    }

    /// Takes `n` slots, all or none, without waiting.
    pub fn take(&self, n: u32) -> bool {
        let mut held = self.held();
        let implicit = held.implicit && n > 0;
        let need = n as usize - usize::from(implicit);
        let mut got = vec![0u8; need];
        let mut have = 0;
        while have < need {
            match read(self.read.as_raw_fd(), &mut got[have..]) {
                Ok(0) | Err(_) => break,
                Ok(k) => have += k,
            }
        }
        if have < need {
            let _ = write_all(self.write, &got[..have]);
            return false;
        }
        held.implicit &= !implicit;
        held.bytes.extend_from_slice(&got);
        true
    }

    /// Gives back `n` slots: bytes to the pool first, then the implicit one.
    pub fn give(&self, n: u32) {
        let mut held = self.held();
        for _ in 0..n {
            match held.bytes.pop() {
                Some(b) => {
                    let _ = write_all(self.write, &[b]);
                }
                None => held.implicit = true,
            }
        }
        self.restore_lost(&mut held);
    }

    /// A future that resolves once the pool has a byte to read.
    pub fn freed(&self) -> SlotsFreed {
        SlotsFreed(self.readable.clone())
    }

    /// Serving, with no slot held and no group that took part alive:
    /// puts back the slots that killed nested builds took with them.
    fn restore_lost(&self, held: &mut Held) {
        let Some(served) = &self.served else { return };
        if !held.implicit || !held.bytes.is_empty() {
            return;
        }
        held.groups.retain(|&g| group_alive(g));
        if !held.groups.is_empty() {
            return;
        }
        let now = in_pipe(self.read.as_raw_fd());
        if now < served.tokens as usize {
            let lost = vec![b'+'; served.tokens as usize - now];
            let _ = write_all(self.write, &lost);
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.state.lock().expect("not poisoned")
    }
}

impl Drop for Jobserver {
    /// The build is over: what is left in its tasks' groups is killed (as
    /// it would be as strays), what runqueue held goes back, so do the
    /// slots the killed took along, and the served FIFO's name goes away.
    fn drop(&mut self) {
        let mut held = self.held();
        let groups = std::mem::take(&mut held.groups);
        let n = held.bytes.len() as u32 + u32::from(!held.implicit);
        drop(held);
        kill_groups(&groups);
        self.give(n);
        if let Some(served) = &self.served {
            let _ = fs::remove_dir_all(&served.dir);
        }
    }
}

/// Kills what is left in `groups` and waits (a second at most) for it to go.
fn kill_groups(groups: &[u32]) {
    let alive: Vec<u32> = groups.iter().copied().filter(|&g| group_alive(g)).collect();
    for &g in &alive {
        super::groups::signal_group(g, libc::SIGKILL);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    while alive.iter().any(|&g| group_alive(g)) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// The `slots-freed` pollable: ready while the pool has a byte.
pub struct SlotsFreed(Arc<AsyncFd<OwnedFd>>);

#[wasmtime_wasi::async_trait]
impl wasmtime_wasi::p2::Pollable for SlotsFreed {
    async fn ready(&mut self) {
        loop {
            let Ok(mut guard) = self.0.readable().await else {
                return std::future::pending().await;
            };
            if in_pipe(self.0.get_ref().as_raw_fd()) > 0 {
                return;
            }
            guard.clear_ready();
        }
    }
}

/// Where a jobserver's pool is, as `MAKEFLAGS` names it.
#[derive(Debug, PartialEq, Eq)]
pub enum Auth {
    Fifo(PathBuf),
    Pipe(RawFd, RawFd),
}

/// The jobserver in `MAKEFLAGS`: the last `--jobserver-auth=` (or the old
/// `--jobserver-fds=`) wins; none in a dry run (`n` in the first word).
pub fn parse_auth(makeflags: &str) -> Option<Auth> {
    let mut words = makeflags.split_ascii_whitespace().peekable();
    if words
        .peek()
        .is_some_and(|w| !w.starts_with('-') && w.contains('n'))
    {
        return None;
    }
    let mut found = None;
    for word in words {
        let Some(value) = word
            .strip_prefix("--jobserver-auth=")
            .or_else(|| word.strip_prefix("--jobserver-fds="))
        else {
            continue;
        };
        found = match value.strip_prefix("fifo:") {
            Some(path) => Some(Auth::Fifo(PathBuf::from(path))),
            None => value.split_once(',').and_then(|(r, w)| {
                let (r, w) = (r.parse().ok()?, w.parse().ok()?);
                (r >= 0 && w >= 0).then_some(Auth::Pipe(r, w))
            }),
        };
    }
    found
}

/// `fd` in the runtime's reactor, to wait until it is readable.
#[allow(unsafe_code)]
fn watch(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    let interest = tokio::io::Interest::READABLE;
    // SAFETY: the AsyncFd owns `fd`, which stays open as long as it does.
    unsafe { AsyncFd::register_with_interest(fd, interest) }
        .map_err(|e| io::Error::other(e.to_string()))
}

/// A fresh directory only this user can enter, for the FIFO.
fn private_dir() -> io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let base = std::env::temp_dir();
    for attempt in 0..100u32 {
        let name = format!("runqueue-jobserver-{}-{attempt}", std::process::id());
        let dir = base.join(name);
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other(
        "no free name for the jobserver's directory",
    ))
}

fn c_path(path: &Path) -> io::Result<std::ffi::CString> {
    std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)
}

#[allow(unsafe_code)]
fn mkfifo(path: &Path) -> io::Result<()> {
    let c = c_path(path)?;
    // SAFETY: c is a valid NUL-terminated path.
    match unsafe { libc::mkfifo(c.as_ptr(), 0o600) } {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

#[allow(unsafe_code)]
fn open(path: &Path, flags: libc::c_int) -> io::Result<OwnedFd> {
    let c = c_path(path)?;
    // SAFETY: c is a valid NUL-terminated path.
    let fd = unsafe { libc::open(c.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[allow(unsafe_code)]
fn valid_fd(fd: RawFd) -> io::Result<()> {
    // SAFETY: F_GETFD only looks at the descriptor.
    match unsafe { libc::fcntl(fd, libc::F_GETFD) } {
        -1 => Err(io::Error::other(format!(
            "descriptor {fd} is not open here (make passes its jobserver only \
             to recursive commands: mark the rule with `+` or use $(MAKE))"
        ))),
        _ => Ok(()),
    }
}

#[allow(unsafe_code)]
fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is valid for writing buf.len() bytes.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    match n {
        n if n < 0 => Err(io::Error::last_os_error()),
        n => Ok(n as usize),
    }
}

#[allow(unsafe_code)]
fn write_all(fd: RawFd, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        // SAFETY: bytes is valid for reading bytes.len() bytes.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        bytes = &bytes[n as usize..];
    }
    Ok(())
}

/// How many bytes wait in the pipe behind `fd`.
#[allow(unsafe_code)]
fn in_pipe(fd: RawFd) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int.
    match unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) } {
        0 => n.max(0) as usize,
        _ => 0,
    }
}

/// Whether any process is left in group `pgid`.
#[allow(unsafe_code)]
fn group_alive(pgid: u32) -> bool {
    // SAFETY: signal 0 only checks that the group exists.
    unsafe { libc::kill(-(pgid as libc::pid_t), 0) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn makeflags_name_the_pool_last_one_winning() {
        assert_eq!(
            parse_auth(" -j4 --jobserver-auth=3,4"),
            Some(Auth::Pipe(3, 4))
        );
        assert_eq!(
            parse_auth("-j --jobserver-fds=3,4 --jobserver-auth=fifo:/tmp/f"),
            Some(Auth::Fifo("/tmp/f".into()))
        );
        assert_eq!(parse_auth("kn --jobserver-auth=3,4"), None, "a dry run");
        assert_eq!(parse_auth(" -j4 --jobserver-auth=-2,-2"), None);
        assert_eq!(parse_auth("-k"), None);
    }

    #[tokio::test]
    async fn slots_are_taken_all_or_none_and_come_back() {
        let js = Jobserver::serve(3).unwrap();
        let fd = js.read.as_raw_fd();
        assert_eq!(in_pipe(fd), 2);
        assert!(js.take(2), "the implicit slot and one byte");
        assert!(!js.take(2), "one byte left: not enough");
        assert_eq!(in_pipe(fd), 1, "what a failed take read is back");
        assert!(js.take(1));
        js.give(3);
        assert_eq!(in_pipe(fd), 2);
        // A byte lost (a nested build killed holding it) comes back once
        // nothing is held.
        let mut b = [0u8; 1];
        read(fd, &mut b).unwrap();
        assert!(js.take(1));
        js.give(1);
        assert_eq!(in_pipe(fd), 2);
        let dir = js.served.as_ref().unwrap().dir.clone();
        drop(js);
        assert!(!dir.exists());
    }
}
