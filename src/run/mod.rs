//! Runs a plan: starts tasks through a [`Processes`] provider while slots
//! are free, otherwise awaits the next process to end, and records what
//! happened.
//!
//! Knows the plan, the graph and the report; knows nothing of WIT or of how
//! processes are made, so the same loop runs in the component (over the
//! host's `process` interface) and in native tests (over fakes).

use std::collections::BTreeMap;
use std::path::PathBuf;

use futures::future::{select, Either};
use futures::stream::{FuturesUnordered, StreamExt};

use crate::cache::journal::Record;
use crate::cache::reuse::{Decisions, Fate, Notes, StoredBlobs};
use crate::cache::signature::{signatures_by, Signatures};
use crate::cache::{ActionEntry, Cache};
use crate::graph::{Action, Graph, TaskId, TaskMap};
use crate::remote::Fut;
use crate::remote::{self, Remote};
use crate::run::report::{Ended, Outcome, Report, TaskRecord};
use crate::schedule::admit::{Admission, PRESSURE_WINDOW_MS};
use crate::schedule::estimate::recorded_peaks;
use crate::schedule::plan::{
    longest_chain, remaining_path, Hold, Plan, Policy, SkipReason, TaskState,
};
use crate::seams::{Child, Command, Event, FileModes, Files, LocalFuture, Processes, Progress};
pub use command::command_for;
use decide::{decide_fates, expected_for};

mod command;
mod decide;
mod late;
pub mod report;
pub mod reproducible;
mod store;

/// How to run, with every default resolved.
#[derive(Debug, Clone)]
pub struct Config {
    pub max_parallel: usize,
    pub keep_going: bool,
    /// Environment every task starts from, below the graph's and the task's
    /// own (PATH, typically).
    pub base_env: BTreeMap<String, String>,
    /// Directory for task logs, relative to the workspace.
    pub log_dir: String,
    /// The workspace as this code sees it (`.` in the component).
    pub workspace: PathBuf,
    /// The artifact cache; `None` runs every task and stores nothing.
    pub cache: Option<Cache>,
    /// Unique to this run: makes `nostamp` signatures differ every time.
    pub run_nonce: String,
    /// How ready tasks are ordered.
    pub policy: Policy,
    /// The timeout of tasks whose graph entry gives none.
    pub default_timeout_ms: Option<u64>,
    /// With a remote cache: requests in flight at once, and whether to
    /// only read from it.
    pub remote_concurrency: usize,
    pub remote_read_only: bool,
    /// Early cutoff ([`crate::cache::cutoff`]); without it every task chains.
    pub cutoff: bool,
    /// Bytes the running tasks' predicted peaks may add up to; `None`
    /// starts tasks without regard to memory ([`crate::schedule::admit`]).
    pub memory_limit: Option<u64>,
}

/// Everything a run reaches outside itself, one seam per concern.
pub struct Seams<'a> {
    pub processes: &'a mut dyn Processes,
    pub progress: &'a mut dyn Progress,
    pub modes: &'a dyn FileModes,
    /// Hashing, storing and restoring files, off the loop.
    pub files: &'a dyn Files,
    /// A cache shared across machines, if one is configured.
    pub remote: Option<&'a dyn Remote>,
}

/// Runs every task of `graph` that the cache does not cover and the plan
/// allows, and reports on all of them. Task failures are in the report;
/// `Err` is bad input found in the workspace (a missing input file, a
/// path through a symlink leading out), before anything ran.
pub async fn run<'a>(
    graph: &Graph,
    config: &'a Config,
    seams: Seams<'a>,
) -> Result<Report, String> {
    let mut run = Run::prepare(graph, config, seams).await?;
    loop {
        run.start_ready();
        run.write_entries();
        if run.plan.is_done() && run.idle() {
            break;
        }
        run.await_next().await;
    }
    run.record_history(0);
    run.tell_uses();
    run.record_build();
    run.say_notes();
    run.say_remote();
    run.plan.close();
    run.push_to_remote().await;
    run.skip_rest();
    Ok(run.report())
}

/// What the loop awaits: processes and cache stores, in one set, so that
/// whichever ends first is handled first.
enum Done {
    /// A task's process ended.
    Exited(TaskId, Ended, Exit),
    /// A succeeded task's files are in the cache's blobs (or not).
    Stored(StoredBlobs),
    /// Action entries of these signatures are written (or not).
    Written(Vec<String>, Result<(), String>),
    /// The remote was asked for the entry of this task's signature,
    /// known only now (its dependencies ran).
    Pulled(TaskId),
    /// The outputs of these covered tasks were put in the workspace (or
    /// not) for this task, which waits to start.
    Restored(TaskId, Vec<(TaskId, Result<(), String>)>),
    /// Job slots may be back, or it is time to look at the pressure again.
    Woken,
}

/// What the host saw of an ended process besides its status.
struct Exit {
    /// How long it ran, if stamped.
    ran_ms: Option<u64>,
    peak_memory: Option<u64>,
    oom_killed: bool,
    ran_on: Option<String>,
    remote_cached: bool,
}

/// History records are appended this many at a time (and at the end).
const HISTORY_BATCH: usize = 64;

/// One run in progress.
struct Run<'a, 'g> {
    graph: &'g Graph,
    config: &'a Config,
    seams: Seams<'a>,
    sigs: Signatures,
    fates: TaskMap<Fate>,
    /// The entry of each covered task, kept until its outputs are restored.
    covered: TaskMap<Option<ActionEntry>>,
    /// Cutoff decided during the build (see [`late`]).
    late: late::Late<'a>,
    /// Why deciding found entries or records unusable, said at the end.
    notes: Notes,
    /// Expected durations, for priorities (covered tasks weigh 0).
    expected: Vec<u64>,
    plan: Plan<'g>,
    records: TaskMap<TaskRecord>,
    /// Running processes, stores, entry writes, restores and remote
    /// lookups in progress.
    pending: FuturesUnordered<Fut<'a, Done>>,
    /// Runs not yet appended to the history journal.
    history: Vec<Record>,
    /// Action entries and outputs records not yet written.
    entries: Vec<(String, Vec<u8>)>,
    /// The signatures of the entries among them.
    entry_sigs: Vec<String>,
    /// A job writing entries is in progress.
    writing: bool,
    /// Signatures this run stored, for the remote.
    stored: Vec<String>,
    /// Resolves at the first interrupt; `None` after it.
    interrupt: Option<LocalFuture<()>>,
    t0: u64,
    /// Task processes running now, and the most at once.
    processes: usize,
    peak: usize,
    /// Memory, pressure and job slots for the next start.
    admission: Admission,
    /// A [`Done::Woken`] is pending.
    waking: bool,
    /// The last hold noted, told again only when it changes.
    last_hold: Option<(TaskId, Hold)>,
    /// When (ms into the run) the journal was last told of the entries
    /// this run holds unrestored ([`crate::cache::usage`]).
    uses_told_ms: u64,
}

impl<'a, 'g> Run<'a, 'g> {
    /// Signatures, read-through from the remote, setscene, and the plan
    /// weighted by expected durations.
    async fn prepare(
        graph: &'g Graph,
        config: &'a Config,
        mut seams: Seams<'a>,
    ) -> Result<Run<'a, 'g>, String> {
        let (ws, nonce) = (&config.workspace, &config.run_nonce);
        let mut sigs = signatures_by(graph, ws, nonce, seams.files).await?;
        if !config.cutoff {
            sigs.without_cutoff();
        }
        let t0 = seams.processes.now_ms();
        let mut notes = Notes::default();
        let asker = seams.remote.map(remote::Asker::new);
        let with = (&mut seams, asker.as_ref());
        let decided = decide_fates(graph, config, &mut sigs, with, &mut notes).await;
        for w in notes.take() {
            seams.progress.event(Event::Warning(&w));
        }
        let cached = decided
            .fates
            .iter()
            .filter(|f| matches!(f, Fate::Cached { .. }))
            .count();
        seams.progress.event(Event::Planned {
            total: graph.len(),
            cached,
        });
        let late = late::Late::new(graph, asker);
        Ok(Run::new(graph, config, seams, (sigs, decided), late, t0))
    }

    /// A run about to start, its fates decided, its clock started at `t0`.
    fn new(
        graph: &'g Graph,
        config: &'a Config,
        seams: Seams<'a>,
        (sigs, decided): (Signatures, Decisions),
        late: late::Late<'a>,
        t0: u64,
    ) -> Run<'a, 'g> {
        let Decisions { fates, entries } = decided;
        let expected = expected_for(graph, config, &fates);
        let priorities = config.policy.priorities(graph, &expected);
        let (max, keep_going) = (config.max_parallel, config.keep_going);
        let plan = Plan::new(graph, config.policy, priorities, max, keep_going);
        let peaks = recorded_peaks(config.cache.as_ref());
        let admission = Admission::new(graph, config.memory_limit, &peaks, max);
        let records = TaskMap::from_fn(graph, |id| {
            TaskRecord::new(&graph.task(id).id, sigs.get(id).map(|s| s.hash.as_str()))
        });
        let interrupt = Some(seams.processes.interrupted());
        Run {
            graph,
            config,
            seams,
            sigs,
            fates,
            covered: entries,
            late,
            notes: Notes::default(),
            expected,
            plan,
            records,
            pending: FuturesUnordered::new(),
            history: Vec::new(),
            entries: Vec::new(),
            entry_sigs: Vec::new(),
            writing: false,
            stored: Vec::new(),
            interrupt,
            t0,
            processes: 0,
            peak: 0,
            admission,
            waking: false,
            last_hold: None,
            uses_told_ms: 0,
        }
    }

    fn now(&self) -> u64 {
        self.seams.processes.now_ms() - self.t0
    }

    /// Starts ready tasks while slots are free: covered tasks end at once,
    /// tasks with nothing to run too, the rest get a process. A task whose
    /// signature waited for its dependencies' outputs is decided first.
    fn start_ready(&mut self) {
        self.reweigh();
        while let Some(id) = self.next_admitted() {
            self.records[id].start_ms = Some(self.now());
            if self.fates[id] == Fate::Undecided && self.decide_late(id) {
                continue;
            }
            self.start_decided(id);
        }
        self.note_hold();
    }

    /// The next task the plan and the machine let start. Covered tasks and
    /// tasks with nothing to run start without asking the machine.
    fn next_admitted(&mut self) -> Option<TaskId> {
        let Run {
            graph,
            plan,
            admission,
            seams,
            fates,
            ..
        } = self;
        plan.start_next_if(|id, slots| {
            let runs = !matches!(fates[id], Fate::Cached { .. });
            match runs && graph.task(id).action != Action::Nothing {
                true => admission.admit(graph, id, slots as u32, &mut *seams.processes),
                false => Ok(()),
            }
        })
    }

    /// Notes why the best ready task waits, and arranges to look again
    /// when what holds it is not a task's end: job slots coming back to
    /// the pool, or the pressure measured again.
    fn note_hold(&mut self) {
        let Some((id, hold)) = self.plan.held() else {
            return;
        };
        let held_by = &mut self.records[id].held_by;
        if !held_by.contains(&hold.name()) {
            held_by.push(hold.name());
        }
        if hold != Hold::Slots && self.last_hold != Some((id, hold)) {
            let (task, why) = (self.records[id].id.as_str(), hold.name());
            self.seams.progress.event(Event::Held { task, why });
        }
        self.last_hold = Some((id, hold));
        if self.waking || !matches!(hold, Hold::Jobserver | Hold::Pressure) {
            return;
        }
        self.waking = true;
        let wake = match hold {
            Hold::Jobserver => self.seams.processes.slots_freed(),
            _ => self.seams.processes.sleep(PRESSURE_WINDOW_MS),
        };
        self.pending.push(Box::pin(async move {
            wake.await;
            Done::Woken
        }));
    }

    /// Nothing is pending but a wake-up (which may never come).
    fn idle(&self) -> bool {
        self.pending.len() == usize::from(self.waking)
    }

    /// Starts the decided task `id`'s process (or ends it at once when it
    /// has nothing to run).
    fn launch(&mut self, id: TaskId) {
        let now = self.now();
        if self.interrupt.is_none() {
            // It waited for the remote or a restore, and the build was
            // interrupted meanwhile: start nothing new.
            self.records[id].end_ms = Some(now);
            let why = Ended::Lost("not started: the build was interrupted".into());
            return self.finish(id, why, false);
        }
        match command_for(self.graph, id, self.config) {
            Some(cmd) => self.spawn(id, cmd, now),
            None => {
                self.records[id].end_ms = Some(now);
                self.succeeded(id, 0);
            }
        }
    }

    fn finish_cached(&mut self, id: TaskId, restored: bool) {
        self.admission.release(id, &mut *self.seams.processes);
        let now = self.now();
        let cut_off = self.late.reason(id);
        let rec = &mut self.records[id];
        rec.end_ms = Some(now);
        rec.restored = restored;
        rec.outcome = Some(Outcome::Cached);
        rec.message = Some(match (&cut_off, restored) {
            (Some(why), _) => format!("cut off: {why}"),
            (None, true) => "restored from the cache".to_string(),
            (None, false) => "covered by the cache; outputs not needed".to_string(),
        });
        rec.cut_off = cut_off;
        self.plan.finish(id, true);
        self.seams.progress.event(Event::Finished(rec));
    }

    fn spawn(&mut self, id: TaskId, cmd: Command, now: u64) {
        self.records[id].log = Some(cmd.log.clone());
        let child = match self.seams.processes.spawn(&cmd) {
            Ok(child) => child,
            Err(why) => {
                let rec = &mut self.records[id];
                rec.end_ms = Some(now);
                rec.log = None; // no process, no log
                let why = Ended::Lost(format!("cannot start: {why}"));
                return self.finish(id, why, false);
            }
        };
        self.records[id].pid = Some(child.pid());
        self.processes += 1;
        self.peak = self.peak.max(self.processes);
        self.seams.progress.event(Event::Started {
            task: &self.records[id],
            running: self.processes,
        });
        let timeout = cmd
            .timeout_ms
            .map(|ms| (ms, self.seams.processes.sleep(ms)));
        self.pending.push(Box::pin(async move {
            let ended = end_of(&*child, timeout).await;
            let exit = Exit {
                ran_ms: child.ran_ms(),
                peak_memory: child.peak_memory(),
                oom_killed: child.oom_killed(),
                ran_on: child.ran_on(),
                remote_cached: child.remote_cached(),
            };
            Done::Exited(id, ended, exit)
        }));
    }

    /// Waits for the next process or store to end (or the first
    /// interrupt) and records it.
    async fn await_next(&mut self) {
        self.record_history(HISTORY_BATCH);
        self.tell_uses();
        let next = self.pending.next();
        let done = match &mut self.interrupt {
            None => next.await,
            Some(asked) => match select(next, asked).await {
                Either::Left((done, _)) => done,
                Either::Right(((), _)) => return self.interrupted(),
            },
        };
        match done.expect("the loop awaits only while something is pending") {
            Done::Exited(id, ended, exit) => self.exited(id, ended, exit),
            Done::Woken => self.waking = false,
            Done::Stored(stored) => self.stored(stored),
            Done::Written(sigs, written) => self.written(sigs, written),
            Done::Pulled(id) => self.pulled(id),
            Done::Restored(id, results) => self.restored(id, results),
        }
    }

    fn exited(&mut self, id: TaskId, ended: Ended, exit: Exit) {
        self.processes -= 1;
        self.admission.release(id, &mut *self.seams.processes);
        if let Some(peak) = exit.peak_memory {
            self.records[id].peak_memory = Some(peak);
            self.admission.learn(self.graph, id, peak);
        }
        self.records[id].ran_on = exit.ran_on;
        self.records[id].remote_cached = exit.remote_cached;
        if exit.oom_killed && self.retry_alone(id) {
            return;
        }
        // The exit as stamped when it happened, not when this loop noticed.
        let now = self.now();
        let start = self.records[id].start_ms.unwrap_or(now);
        let end = exit.ran_ms.map_or(now, |ran| (start + ran).min(now));
        self.records[id].end_ms = Some(end);
        match ended {
            Ended::Exited(s) if s.success() => {
                let took = self.records[id].took_ms();
                self.succeeded(id, took);
            }
            other => self.finish(id, other, false),
        }
    }

    /// The kernel killed `id` for memory: once, unless the build is
    /// stopping, it goes back to run again alone. True if it does.
    fn retry_alone(&mut self, id: TaskId) -> bool {
        if self.records[id].oom_rerun || self.interrupt.is_none() {
            return false;
        }
        self.records[id].oom_rerun = true;
        self.plan.retry_alone(id);
        let msg = format!(
            "{}: killed by the kernel for lack of memory; running it again alone",
            self.records[id].id
        );
        self.seams.progress.event(Event::Warning(&msg));
        true
    }

    /// The first interrupt: start nothing new, say what is still awaited.
    fn interrupted(&mut self) {
        self.interrupt = None;
        self.plan.interrupt();
        let waiting: Vec<&str> = self
            .records
            .iter()
            .filter(|r| r.pid.is_some() && r.end_ms.is_none())
            .map(|r| r.id.as_str())
            .collect();
        let msg = format!(
            "interrupted: starting nothing new, waiting for {} running task(s) to finish \
             (interrupt again to kill them): {}",
            waiting.len(),
            waiting.join(", ")
        );
        self.seams.progress.event(Event::Warning(&msg));
    }

    /// Records a task's end in its record and tells; in the plan too,
    /// unless it is `storing` its outputs (then [`Run::stored`] does).
    fn finish(&mut self, id: TaskId, ended: Ended, storing: bool) {
        self.admission.release(id, &mut *self.seams.processes);
        let rec = &mut self.records[id];
        if let Ended::Exited(status) = ended {
            rec.exit = Some(status);
        }
        rec.message = ended.failure();
        let success = rec.message.is_none();
        rec.outcome = Some(if success {
            Outcome::Succeeded
        } else {
            Outcome::Failed
        });
        match success && storing {
            true => self.plan.exited(id),
            false => self.plan.finish(id, success),
        }
        self.seams.progress.event(Event::Finished(rec));
    }

    /// Says once what deciding during the build found wrong.
    fn say_notes(&mut self) {
        for w in self.notes.take() {
            self.seams.progress.event(Event::Warning(&w));
        }
    }

    /// Reports every task that never got to run, and why.
    fn skip_rest(&mut self) {
        for id in self.graph.ids() {
            if self.records[id].outcome.is_some() {
                continue;
            }
            let TaskState::Skipped(reason) = self.plan.state(id) else {
                unreachable!("a closed plan has only final states");
            };
            let rec = &mut self.records[id];
            rec.outcome = Some(Outcome::NotRun);
            rec.message = Some(match reason {
                SkipReason::DependencyFailed(dep) => {
                    format!("not run: dependency \"{}\" failed", self.graph.task(dep).id)
                }
                SkipReason::BuildStopped => {
                    "not run: the build stopped after a failure (use -k to keep going)".to_string()
                }
                SkipReason::Interrupted => "not run: the build was interrupted".to_string(),
            });
            self.seams.progress.event(Event::Finished(rec));
        }
    }

    fn report(self) -> Report {
        let records = &self.records;
        let count = |o: Outcome| records.iter().filter(|r| r.outcome == Some(o)).count();
        let took = |id: TaskId| records[id].took_ms();
        let critical_path = longest_chain(self.graph, &remaining_path(self.graph, took))
            .into_iter()
            .map(|id| self.graph.task(id).id.clone())
            .collect();
        Report {
            critical_path,
            succeeded: count(Outcome::Succeeded),
            failed: count(Outcome::Failed),
            not_run: count(Outcome::NotRun),
            cached: count(Outcome::Cached),
            cut_off: records.iter().filter(|r| r.cut_off.is_some()).count(),
            oom_reruns: records.iter().filter(|r| r.oom_rerun).count(),
            peak_parallel: self.peak,
            wall_ms: self.now(),
            max_parallel: self.plan.max_parallel(),
            tasks: self.records.into_vec(),
        }
    }
}

/// How a started process ends: on its own, or stopped after `timeout`
/// (its ms and a timer) runs out.
async fn end_of(child: &dyn Child, timeout: Option<(u64, LocalFuture<()>)>) -> Ended {
    let timed_out = {
        // The exit future holds the child's pollable: it goes first.
        let exited = child.exited();
        match timeout {
            None => {
                exited.await;
                None
            }
            Some((ms, timer)) => match select(exited, timer).await {
                Either::Left(_) => None,
                Either::Right((_, exited)) => {
                    child.kill();
                    exited.await;
                    Some(ms)
                }
            },
        }
    };
    match (timed_out, child.status()) {
        (Some(ms), _) => Ended::TimedOut(ms),
        (None, Some(status)) => Ended::Exited(status),
        (None, None) => Ended::Lost("the host said the process exited but has no status".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::report::ExitStatus;
    use futures::executor::block_on;
    use std::cell::Cell;
    use std::rc::Rc;
    use std::task::Poll;

    /// Processes that end at once: `false` exits 1, `kill-me` dies of
    /// SIGKILL, `missing` cannot start, `hang` runs until killed (then
    /// SIGTERM), anything else exits 0. Timers fire at once.
    #[derive(Default)]
    struct Fake {
        spawned: Vec<Command>,
        /// The clock, and how far it moves each time it is read.
        clock: Cell<u64>,
        tick: u64,
    }

    struct FakeChild {
        pid: u32,
        status: ExitStatus,
        hangs: bool,
        killed: Rc<Cell<bool>>,
        /// `sleep MS` says it ran MS.
        ran: Option<u64>,
    }

    impl Child for FakeChild {
        fn pid(&self) -> u32 {
            self.pid
        }
        fn exited(&self) -> LocalFuture<()> {
            let (hangs, killed) = (self.hangs, self.killed.clone());
            Box::pin(futures::future::poll_fn(move |_| {
                if hangs && !killed.get() {
                    Poll::Pending
                } else {
                    Poll::Ready(())
                }
            }))
        }
        fn status(&self) -> Option<ExitStatus> {
            Some(match self.killed.get() {
                true => ExitStatus::Signal(15),
                false => self.status,
            })
        }
        fn kill(&self) {
            self.killed.set(true);
        }
        fn ran_ms(&self) -> Option<u64> {
            self.ran
        }
    }

    impl Processes for Fake {
        fn spawn(&mut self, cmd: &Command) -> Result<Box<dyn Child>, String> {
            if cmd.program == "missing" {
                return Err("program \"missing\" not found".into());
            }
            self.spawned.push(cmd.clone());
            let status = match cmd.program.as_str() {
                "false" => ExitStatus::Code(1),
                "kill-me" => ExitStatus::Signal(9),
                _ => ExitStatus::Code(0),
            };
            Ok(Box::new(FakeChild {
                pid: 100 + self.spawned.len() as u32,
                status,
                hangs: cmd.program == "hang",
                killed: Rc::default(),
                ran: (cmd.program == "sleep").then(|| cmd.args[0].parse().unwrap()),
            }))
        }
        fn now_ms(&self) -> u64 {
            self.clock.set(self.clock.get() + self.tick);
            self.clock.get()
        }
        fn sleep(&self, _ms: u64) -> LocalFuture<()> {
            Box::pin(futures::future::ready(()))
        }
        fn interrupted(&mut self) -> LocalFuture<()> {
            Box::pin(futures::future::pending())
        }
        fn parallelism(&self) -> u32 {
            2
        }
    }

    /// Every event, as a line.
    #[derive(Default)]
    struct Events(Vec<String>);

    impl Progress for Events {
        fn event(&mut self, event: Event<'_>) {
            self.0.push(match event {
                Event::Started { task, running } => format!("start {} ({running})", task.id),
                Event::Warning(w) => format!("warning {w}"),
                Event::Planned { total, cached } => format!("planned {total} {cached}"),
                Event::Held { task, why } => format!("held {task} {why}"),
                Event::Finished(t) => format!(
                    "end {} {:?} {}",
                    t.id,
                    t.outcome.unwrap(),
                    t.message.as_deref().unwrap_or("")
                ),
            });
        }
    }

    struct Modes;

    impl FileModes for Modes {
        fn mode(&self, _: &str) -> Result<u32, String> {
            Ok(0o644)
        }
        fn set_mode(&self, _: &str, _: u32) -> Result<(), String> {
            Ok(())
        }
    }

    /// Runs `g` over the fakes: the report, what was spawned, the events.
    fn run_fake(g: &Graph, config: &Config) -> (Report, Vec<Command>, Vec<String>) {
        run_fake_with(Fake::default(), g, config)
    }

    fn run_fake_with(
        mut procs: Fake,
        g: &Graph,
        config: &Config,
    ) -> (Report, Vec<Command>, Vec<String>) {
        let mut events = Events::default();
        let files = crate::cache::tests::NativeFiles(config.workspace.clone());
        let seams = Seams {
            processes: &mut procs,
            progress: &mut events,
            modes: &Modes,
            files: &files,
            remote: None,
        };
        let report = block_on(run(g, config, seams)).unwrap();
        (report, procs.spawned, events.0)
    }

    fn options(max: usize, keep_going: bool) -> Config {
        Config {
            max_parallel: max,
            keep_going,
            base_env: BTreeMap::from([("PATH".into(), "/bin".into())]),
            log_dir: ".runqueue/logs".into(),
            workspace: PathBuf::from("/nonexistent-workspace"),
            cache: None,
            run_nonce: "test".into(),
            policy: Policy::CriticalPath,
            default_timeout_ms: None,
            remote_concurrency: 1,
            remote_read_only: false,
            cutoff: true,
            memory_limit: None,
        }
    }

    #[test]
    fn builds_commands_with_layered_environment() {
        let g = Graph::parse(
            r#"{"version":1,"env":{"LANG":"C","PATH":"/opt"},"tasks":[
              {"id":"zlib:do_compile","run":"make","cwd":"w","env":{"LANG":"de"}}]}"#,
        )
        .unwrap();
        let cmd = command_for(&g, TaskId(0), &options(1, false)).unwrap();
        assert_eq!(
            cmd,
            Command {
                program: "sh".into(),
                args: vec!["-c".into(), "make".into()],
                cwd: "w".into(),
                env: vec![("LANG".into(), "de".into()), ("PATH".into(), "/opt".into())],
                log: ".runqueue/logs/zlib/log.do_compile".into(),
                timeout_ms: None,
                jobserver: true,
                network: false,
                inputs: vec![],
                outputs: vec![],
                platform: vec![],
                cacheable: true,
            }
        );
    }

    #[test]
    fn reports_failures_and_what_they_blocked() {
        let g = Graph::parse(
            r#"{"version":1,"tasks":[
              {"id":"ok","argv":["true"]},
              {"id":"bad","argv":["false"]},
              {"id":"after-bad","deps":["bad"],"argv":["true"]},
              {"id":"gone","argv":["missing"]},
              {"id":"shot","argv":["kill-me"]},
              {"id":"noexec","deps":["ok"]}]}"#,
        )
        .unwrap();
        let (report, spawned, _) = run_fake(&g, &options(1, true));
        let msgs: Vec<_> = report
            .tasks
            .iter()
            .map(|t| (t.outcome.unwrap(), t.message.clone()))
            .collect();
        assert_eq!(
            msgs,
            vec![
                (Outcome::Succeeded, None),
                (Outcome::Failed, Some("exited with code 1".into())),
                (
                    Outcome::NotRun,
                    Some("not run: dependency \"bad\" failed".into())
                ),
                (
                    Outcome::Failed,
                    Some("cannot start: program \"missing\" not found".into())
                ),
                (Outcome::Failed, Some("killed by signal 9 (SIGKILL)".into())),
                (Outcome::Succeeded, None),
            ]
        );
        assert_eq!((report.succeeded, report.failed, report.not_run), (2, 3, 1));
        assert_eq!(spawned.len(), 3, "after-bad never ran");
        assert_eq!(report.tasks[5].pid, None, "noexec has no process");
    }

    #[test]
    fn stops_after_first_failure_without_keep_going() {
        let g = Graph::parse(
            r#"{"version":1,"tasks":[
              {"id":"bad","deps":[],"argv":["false"]},
              {"id":"later","argv":["true"]}]}"#,
        )
        .unwrap();
        let (report, _, events) = run_fake(&g, &options(1, false));
        assert_eq!(
            events,
            [
                "planned 2 0",
                "start bad (1)",
                "end bad Failed exited with code 1",
                "end later NotRun not run: the build stopped after a failure (use -k to keep going)"
            ]
        );
        assert_eq!(report.failed, 1);
        assert_eq!(report.not_run, 1);
    }

    #[test]
    fn a_task_past_its_timeout_is_killed_and_fails() {
        let g = Graph::parse(
            r#"{"version":1,"tasks":[
              {"id":"slow","argv":["hang"],"timeout":0.05},
              {"id":"after","deps":["slow"],"argv":["true"]}]}"#,
        )
        .unwrap();
        let (report, spawned, _) = run_fake(&g, &options(2, true));
        let slow = &report.tasks[0];
        assert_eq!(slow.outcome, Some(Outcome::Failed));
        assert_eq!(slow.message.as_deref(), Some("timed out after 0.05 s"));
        assert_eq!(
            slow.exit, None,
            "a timed-out task has no exit status of its own"
        );
        assert_eq!(spawned.len(), 1, "its dependent never started");
        assert_eq!(report.tasks[1].outcome, Some(Outcome::NotRun));
    }

    #[test]
    fn a_task_lasts_what_its_process_ran_not_until_the_loop_noticed() {
        let g =
            Graph::parse(r#"{"version":1,"tasks":[{"id":"nap","argv":["sleep","7"]}]}"#).unwrap();
        // Every look at the clock takes a second: the loop notices late.
        let slow_clock = Fake {
            tick: 1000,
            ..Fake::default()
        };
        let (report, _, _) = run_fake_with(slow_clock, &g, &options(1, false));
        let nap = &report.tasks[0];
        assert_eq!(nap.took_ms(), 7, "{nap:?}");
        assert!(report.wall_ms >= 1000, "the run itself took longer");
    }

    #[test]
    fn cached_tasks_hold_no_slot_in_the_peak() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("out")).unwrap();
        std::fs::write(dir.path().join("out/a"), "a").unwrap();
        let g = Graph::parse(
            r#"{"version":1,"tasks":[
              {"id":"a","argv":["true"],"outputs":["out/a"]},
              {"id":"b","argv":["true"],"nostamp":true}]}"#,
        )
        .unwrap();
        let config = Config {
            workspace: dir.path().to_path_buf(),
            cache: Some(Cache::new(dir.path().join("cache"))),
            ..options(2, false)
        };
        let (first, _, _) = run_fake(&g, &config);
        assert_eq!((first.succeeded, first.peak_parallel), (2, 2));
        // Now a is covered; b runs and a is decided while b's process runs.
        let (second, spawned, events) = run_fake(&g, &config);
        assert_eq!(second.cached, 1, "{events:?}");
        assert_eq!(spawned.len(), 1);
        assert_eq!(second.peak_parallel, 1, "{events:?}");
    }
}
