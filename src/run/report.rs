//! What a run reports: how each task ended and the totals, in plain Rust
//! (the component converts it to the WIT `report`).
//!
//! Knows outcomes and exit statuses; knows nothing of how they came about.

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
}

impl ExitStatus {
    pub fn success(self) -> bool {
        self == ExitStatus::Code(0)
    }

    /// A failed status in words: "exited with code 2", "killed by signal 9
    /// (SIGKILL)".
    pub fn describe(self) -> String {
        match self {
            ExitStatus::Code(c) => format!("exited with code {c}"),
            ExitStatus::Signal(s) => match signal_name(s) {
                Some(name) => format!("killed by signal {s} ({name})"),
                None => format!("killed by signal {s}"),
            },
        }
    }
}

fn signal_name(sig: i32) -> Option<&'static str> {
    Some(match sig {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        6 => "SIGABRT",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        _ => return None,
    })
}

/// How a started process came to an end, as the run loop sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// It exited (or was killed by a signal) on its own.
    Exited(ExitStatus),
    /// It ran past its timeout of this many ms and was stopped.
    TimedOut(u64),
    /// Its end could not be observed; the text says why.
    Lost(String),
}

impl Ended {
    /// Why a task that ended so failed, or `None` if it succeeded.
    pub fn failure(&self) -> Option<String> {
        match self {
            Ended::Exited(s) if s.success() => None,
            Ended::Exited(s) => Some(s.describe()),
            Ended::TimedOut(ms) => Some(format!("timed out after {} s", *ms as f64 / 1000.0)),
            Ended::Lost(why) => Some(why.clone()),
        }
    }
}

/// A task's final state, as reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Failed,
    NotRun,
    /// Covered by the cache: not run, outputs restored if needed.
    Cached,
}

/// What is known about one task; complete once the run ends.
#[derive(Debug, Clone)]
pub struct TaskRecord {
    pub id: String,
    pub outcome: Option<Outcome>,
    pub exit: Option<ExitStatus>,
    pub message: Option<String>,
    pub pid: Option<u32>,
    pub start_ms: Option<u64>,
    pub end_ms: Option<u64>,
    pub log: Option<String>,
    pub signature: Option<String>,
    /// For cached tasks: whether its outputs were restored.
    pub restored: bool,
    /// For tasks covered only once their dependencies ran (early cutoff):
    /// why, e.g. "a's outputs identical to the run of 2026-12-02 07:49 UTC".
    pub cut_off: Option<String>,
    /// The most memory its process held at once, in bytes, if measured.
    pub peak_memory: Option<u64>,
    /// The kernel's OOM killer ended its first run; it ran again alone.
    pub oom_rerun: bool,
    /// Why it waited while ready ([`crate::schedule::plan::Hold`] names), first seen
    /// first.
    pub held_by: Vec<&'static str>,
    /// Where its process ran: `None` here, else the remote worker.
    pub ran_on: Option<String>,
    /// A remote service answered from its action cache.
    pub remote_cached: bool,
}

impl TaskRecord {
    /// A task not yet decided.
    pub fn new(id: &str, signature: Option<&str>) -> TaskRecord {
        TaskRecord {
            id: id.to_string(),
            outcome: None,
            exit: None,
            message: None,
            pid: None,
            start_ms: None,
            end_ms: None,
            log: None,
            signature: signature.map(str::to_string),
            restored: false,
            cut_off: None,
            peak_memory: None,
            oom_rerun: false,
            held_by: Vec::new(),
            ran_on: None,
            remote_cached: false,
        }
    }

    /// How long it ran, in ms (0 unless it started and ended).
    pub fn took_ms(&self) -> u64 {
        self.end_ms
            .unwrap_or(0)
            .saturating_sub(self.start_ms.unwrap_or(0))
    }
}

/// The result of a run.
#[derive(Debug, Clone)]
pub struct Report {
    /// Every task, in graph order.
    pub tasks: Vec<TaskRecord>,
    pub succeeded: usize,
    pub failed: usize,
    pub not_run: usize,
    pub cached: usize,
    /// Of the cached tasks, those covered only once their dependencies ran
    /// and left outputs identical to an earlier run.
    pub cut_off: usize,
    /// Tasks run again alone after the kernel killed them for memory.
    pub oom_reruns: usize,
    /// The most task processes running at the same moment (cached tasks
    /// and tasks with nothing to run hold no slot and do not count).
    pub peak_parallel: usize,
    pub wall_ms: u64,
    pub max_parallel: usize,
    /// The longest chain by the time tasks actually took, first task's id
    /// first.
    pub critical_path: Vec<String>,
}

impl Report {
    /// Exit-code material: true if every task succeeded or was cached.
    pub fn all_done(&self) -> bool {
        self.failed == 0 && self.not_run == 0
    }
}
