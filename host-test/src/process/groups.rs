//! Process groups: signalling one, the live groups of a run, and the
//! watchdog process that kills them if the host dies. Knows pgids and
//! signals; knows nothing of how a process was started or what it runs.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::ChildStdin;
use std::sync::{Arc, Mutex};

/// The process groups of a run's live children: so that a second interrupt
/// can kill them all, and so that a watchdog process, told of every group,
/// can kill them if the host itself dies (SIGKILL included).
#[derive(Clone, Default)]
pub struct LiveGroups(Arc<Mutex<Live>>);

#[derive(Default)]
struct Live {
    groups: HashSet<u32>,
    /// `+pgid` / `-pgid` lines go here; see [`run_watchdog`].
    watchdog: Option<ChildStdin>,
    /// `-pgid` lines not sent yet: they go with the next `+pgid` line (or
    /// once they fill [`REMOVALS_BYTES`]), so the watchdog wakes once per
    /// task, not twice. Until then it would only signal an empty group.
    removals: String,
}

/// Removals are sent once this many bytes (about 64 lines) wait.
const REMOVALS_BYTES: usize = 512;

impl LiveGroups {
    /// Groups reported to a watchdog reading `stdin` (see [`run_watchdog`]).
    pub fn with_watchdog(stdin: ChildStdin) -> LiveGroups {
        LiveGroups(Arc::new(Mutex::new(Live {
            groups: Default::default(),
            watchdog: Some(stdin),
            removals: String::new(),
        })))
    }

    /// Adds (`add`) or removes the group `pgid`, telling the watchdog.
    pub(crate) fn update(&self, pgid: u32, add: bool) {
        let mut live = self.0.lock().expect("not poisoned");
        if add {
            live.groups.insert(pgid);
        } else if !live.groups.remove(&pgid) {
            return;
        }
        let live = &mut *live;
        let Some(w) = &mut live.watchdog else { return };
        if !add {
            live.removals += &format!("-{pgid}\n");
            if live.removals.len() < REMOVALS_BYTES {
                return;
            }
        } else {
            live.removals += &format!("+{pgid}\n");
        }
        // One write: the watchdog wakes once.
        let _ = w.write_all(live.removals.as_bytes());
        live.removals.clear();
    }

    /// Groups reported to a new watchdog process: `program watchdog` (the
    /// `runqueue` binary runs [`run_watchdog`] then).
    pub fn watched_by(program: &std::path::Path) -> std::io::Result<LiveGroups> {
        let mut dog = std::process::Command::new(program)
            .arg("watchdog")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()?;
        Ok(LiveGroups::with_watchdog(dog.stdin.take().expect("piped")))
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
/// to handle. It reads what has come, then naps [`WATCHDOG_NAP`] before
/// reading again: a host writing to it then rarely has to wake it (once
/// per nap, not once per task), and nothing is lost, since the pipe keeps
/// what is written until it is read, EOF included.
pub fn run_watchdog(input: impl Read) {
    #[allow(unsafe_code)]
    // SAFETY: setting signal dispositions in a single-threaded process.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGTERM, libc::SIG_IGN);
    }
    let mut input = BufReader::with_capacity(1 << 16, input);
    let mut groups = HashSet::new();
    let mut line = String::new();
    loop {
        line.clear();
        match input.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => note(&mut groups, line.trim_end()),
        }
        if input.buffer().is_empty() {
            std::thread::sleep(WATCHDOG_NAP);
        }
    }
    for pgid in groups {
        signal_group(pgid, libc::SIGKILL);
    }
}

/// How long the watchdog waits between reads.
const WATCHDOG_NAP: std::time::Duration = std::time::Duration::from_millis(50);

/// Applies one `+pgid` or `-pgid` line.
fn note(groups: &mut HashSet<u32>, line: &str) {
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

/// Sends `sig` to every process in the group led by `pgid`.
pub(crate) fn signal_group(pgid: u32, sig: i32) {
    #[allow(unsafe_code)]
    // SAFETY: kill(2) with a negative pid signals a process group; no
    // memory is involved.
    unsafe {
        libc::kill(-(pgid as i32), sig);
    }
}
