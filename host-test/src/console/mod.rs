//! What a person sees while a build runs and after: one line per task when
//! output is not a terminal, a live status block on a terminal, failures
//! with their log tails, and the final summary. Knows events and reports;
//! knows nothing of how tasks run.

mod lines;
mod live;
mod stalls;
mod summary;

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::bindings::runqueue::executor::progress::Started;
use crate::process::Activity;
use crate::{Event, Report, TaskReport, TaskState};

/// How much the console says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    /// Failures and the summary only.
    Quiet,
    /// A line per started, finished and restored task (or the live status).
    Normal,
    /// Also covered tasks that were not restored, and tasks that did not run.
    Verbose,
}

/// How progress shows while the build runs: a line per task
/// ([`lines::Lines`]) or a live status block ([`live::Live`]). Failures,
/// warnings and verbose details are printed the same way by both.
trait Render: Send {
    /// The line for `step`, or `None` where this renderer shows it some
    /// other way (or not at all).
    fn line(&self, step: &Step<'_>) -> Option<String>;
    /// Shows the progress so far: after every event and on every tick.
    fn redraw(&mut self, progress: &Progress);
    /// Erases what `redraw` drew, before anything else is printed.
    fn clear(&mut self);
}

/// A task's step that one renderer narrates and the other only counts.
enum Step<'a> {
    Started(&'a Started),
    Succeeded(&'a TaskReport),
    Restored(&'a TaskReport),
    /// The next task to start waits for this (not a free slot).
    Held(&'a str, &'a str),
}

/// The build so far, as the console counts it.
struct Progress {
    started: Instant,
    total: usize,
    done: usize,
    cached: usize,
    failed: usize,
    running: HashMap<String, Running>,
    /// The next task to start and what it waits for, besides a slot.
    waiting: Option<(String, String)>,
}

/// A running task as the console tracks it.
struct Running {
    since: Instant,
    /// 0 for a task running remotely.
    pid: u32,
    /// Its log, by which a remote run's progress is known.
    log: String,
    /// Stall warnings given for the current silence.
    warned: u32,
}

struct State {
    verbosity: Verbosity,
    workspace: PathBuf,
    tail: usize,
    progress: Progress,
    /// Warn about a running task that printed nothing for this long.
    stall: Option<(Duration, Activity)>,
    render: Box<dyn Render>,
}

/// The console of one build; cheap to clone into event callbacks.
#[derive(Clone)]
pub struct Console(Arc<Mutex<State>>);

pub(crate) fn secs(ms: u64) -> String {
    format!("{:.2}s", ms as f64 / 1000.0)
}

fn duration_ms(t: &TaskReport) -> u64 {
    crate::outputs::duration(t).unwrap_or(0)
}

impl Console {
    /// A console that draws a live status when stderr is a terminal (and not
    /// quiet), plain lines otherwise. `tail` lines of a failed task's log
    /// are shown.
    pub fn new(verbosity: Verbosity, workspace: PathBuf, tail: usize) -> Console {
        let render: Box<dyn Render> =
            if verbosity != Verbosity::Quiet && std::io::stderr().is_terminal() {
                Box::new(live::Live::default())
            } else {
                Box::new(lines::Lines::new(verbosity))
            };
        Console(Arc::new(Mutex::new(State {
            verbosity,
            workspace,
            tail,
            progress: Progress {
                started: Instant::now(),
                total: 0,
                done: 0,
                cached: 0,
                failed: 0,
                running: HashMap::new(),
                waiting: None,
            },
            stall: None,
            render,
        })))
    }

    /// Redraws the live status twice a second (running times move on even
    /// when no event comes). Abort the handle when the build ends.
    pub fn start_ticker(&self) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tick.tick().await;
                let mut s = me.0.lock().expect("not poisoned");
                s.warn_stalls();
                s.redraw();
            }
        })
    }

    /// Warns (on stderr, from the ticker) about every running task that
    /// has printed nothing for `after`, and again after each further
    /// `after` of silence. `activity` must be the run's
    /// ([`crate::RunOptions::activity`]).
    pub fn watch_stalls(&self, activity: Activity, after: Duration) {
        self.0.lock().expect("not poisoned").stall = Some((after, activity));
    }

    /// Takes one progress event.
    pub fn event(&self, ev: Event) {
        let mut s = self.0.lock().expect("not poisoned");
        let lines = match ev {
            Event::Planned(p) => {
                s.progress.total = p.total as usize;
                s.progress.cached = p.cached as usize;
                Vec::new()
            }
            Event::Started(st) => {
                s.progress.waiting.take_if(|(id, _)| *id == st.id);
                s.started(&st)
            }
            Event::Held(h) => {
                let line = s.render.line(&Step::Held(&h.id, &h.why));
                s.progress.waiting = Some((h.id, h.why));
                line.into_iter().collect()
            }
            Event::Finished(t) => s.finished(&t),
            Event::Warning(w) => {
                s.render.clear();
                eprintln!("runqueue: warning: {w}");
                Vec::new()
            }
        };
        s.print(lines);
        s.redraw();
    }

    /// The final summary: BitBake's one-line tally, totals, wall time, this
    /// run's critical path, the slowest tasks, and the failed tasks with
    /// their logs again.
    pub fn summary(&self, report: &Report) {
        let mut s = self.0.lock().expect("not poisoned");
        s.render.clear();
        // The build is over: no status block from here on.
        s.render = Box::new(lines::Lines::new(s.verbosity));
        print!("{}", summary::text(report, &s.workspace, s.tail));
    }
}

impl State {
    /// Counts a started task; returns the lines to print.
    fn started(&mut self, st: &Started) -> Vec<String> {
        let running = Running {
            since: Instant::now(),
            pid: st.pid,
            log: st.log.clone(),
            warned: 0,
        };
        self.progress.running.insert(st.id.clone(), running);
        self.render.line(&Step::Started(st)).into_iter().collect()
    }

    /// Counts a task that reached its final state; returns the lines to
    /// print.
    fn finished(&mut self, t: &TaskReport) -> Vec<String> {
        self.progress.running.remove(&t.id);
        let at = secs(t.end_ms.unwrap_or(0));
        let verbose = self.verbosity == Verbosity::Verbose;
        match t.state {
            TaskState::Succeeded => {
                self.progress.done += 1;
                self.render.line(&Step::Succeeded(t)).into_iter().collect()
            }
            TaskState::Failed => {
                self.progress.done += 1;
                self.progress.failed += 1;
                let mut lines = vec![format!(
                    "[{at:>8}] FAILED   {}: {}",
                    t.id,
                    t.message.as_deref().unwrap_or("failed")
                )];
                lines.extend(summary::failure_details(t, &self.workspace, self.tail));
                lines
            }
            TaskState::Cached => {
                if t.cut_off.is_some() {
                    // Decided during the build: not among the planned.
                    self.progress.cached += 1;
                }
                let restored = t.restored.then(|| self.render.line(&Step::Restored(t)));
                let cached = || verbose.then(|| format!("[{at:>8}] cached   {}", t.id));
                restored.flatten().or_else(cached).into_iter().collect()
            }
            TaskState::NotRun => verbose
                .then(|| {
                    format!(
                        "           not run  {}: {}",
                        t.id,
                        t.message.as_deref().unwrap_or("")
                    )
                })
                .into_iter()
                .collect(),
        }
    }

    /// Prints `lines` on stdout, below where the status block was.
    fn print(&mut self, lines: Vec<String>) {
        if lines.is_empty() {
            return;
        }
        self.render.clear();
        let mut out = std::io::stdout().lock();
        for l in lines {
            let _ = writeln!(out, "{l}");
        }
        let _ = out.flush();
    }

    fn redraw(&mut self) {
        self.render.redraw(&self.progress);
    }

    /// Warns about running tasks silent for a multiple of the stall time
    /// they have not been warned about yet.
    fn warn_stalls(&mut self) {
        let Some((after, activity)) = &self.stall else {
            return;
        };
        let warnings = stalls::warnings(&mut self.progress.running, *after, activity);
        if !warnings.is_empty() {
            self.render.clear();
            for w in warnings {
                eprintln!("runqueue: warning: {w}");
            }
        }
    }
}
