//! What a person sees while a build runs and after: one line per task when
//! output is not a terminal, a live status block on a terminal, failures
//! with their log tails, and the final summary. Knows events and reports;
//! knows nothing of how tasks run.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// How many running tasks the live status lists.
const RUNNING_SHOWN: usize = 5;
/// How many not-run tasks the summary names before it only counts.
const NOT_RUN_SHOWN: usize = 10;
/// How many of the slowest tasks the summary lists.
const SLOWEST_SHOWN: usize = 5;

struct State {
    verbosity: Verbosity,
    /// A live status block on stderr instead of a line per task.
    live: bool,
    workspace: PathBuf,
    tail: usize,
    started: Instant,
    total: usize,
    done: usize,
    cached: usize,
    failed: usize,
    running: HashMap<String, Running>,
    /// Warn about a running task that printed nothing for this long.
    stall: Option<(Duration, Activity)>,
    /// Lines of the status block now on screen.
    drawn: usize,
}

/// A running task as the console tracks it.
struct Running {
    since: Instant,
    pid: u32,
    /// Stall warnings given for the current silence.
    warned: u32,
}

/// The console of one build; cheap to clone into event callbacks.
#[derive(Clone)]
pub struct Console(Arc<Mutex<State>>);

/// A duration as people write it: `45s`, `10m`, `1h30m`.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, 0, _) => format!("{h}h"),
        (h, m, _) => format!("{h}h{m}m"),
    }
}

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
        let live = verbosity != Verbosity::Quiet && std::io::stderr().is_terminal();
        Console(Arc::new(Mutex::new(State {
            verbosity,
            live,
            workspace,
            tail,
            started: Instant::now(),
            total: 0,
            done: 0,
            cached: 0,
            failed: 0,
            running: HashMap::new(),
            stall: None,
            drawn: 0,
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
                if s.live {
                    s.redraw();
                }
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
        let mut lines: Vec<String> = Vec::new();
        match ev {
            Event::Planned(p) => {
                s.total = p.total as usize;
                s.cached = p.cached as usize;
            }
            Event::Started(st) => {
                s.running.insert(
                    st.id.clone(),
                    Running {
                        since: Instant::now(),
                        pid: st.pid,
                        warned: 0,
                    },
                );
                if s.verbosity != Verbosity::Quiet && !s.live {
                    lines.push(format!(
                        "[{:>8}] started  {} (pid {}, {} running)",
                        secs(st.at_ms),
                        st.id,
                        st.pid,
                        st.running
                    ));
                }
            }
            Event::Finished(t) => {
                s.running.remove(&t.id);
                let at = secs(t.end_ms.unwrap_or(0));
                match t.state {
                    TaskState::Succeeded => {
                        s.done += 1;
                        if s.verbosity != Verbosity::Quiet && !s.live {
                            lines.push(format!(
                                "[{at:>8}] done     {} in {}",
                                t.id,
                                secs(duration_ms(&t))
                            ));
                        }
                    }
                    TaskState::Failed => {
                        s.done += 1;
                        s.failed += 1;
                        lines.push(format!(
                            "[{at:>8}] FAILED   {}: {}",
                            t.id,
                            t.message.as_deref().unwrap_or("failed")
                        ));
                        lines.extend(failure_details(&t, &s.workspace, s.tail));
                    }
                    TaskState::Cached => {
                        if t.restored && s.verbosity != Verbosity::Quiet && !s.live {
                            lines.push(format!("[{at:>8}] restored {} from the cache", t.id));
                        } else if s.verbosity == Verbosity::Verbose {
                            lines.push(format!("[{at:>8}] cached   {}", t.id));
                        }
                    }
                    TaskState::NotRun => {
                        if s.verbosity == Verbosity::Verbose {
                            lines.push(format!(
                                "           not run  {}: {}",
                                t.id,
                                t.message.as_deref().unwrap_or("")
                            ));
                        }
                    }
                }
            }
            Event::Warning(w) => {
                s.clear();
                eprintln!("runqueue: warning: {w}");
            }
        }
        if !lines.is_empty() {
            s.clear();
            let mut out = std::io::stdout().lock();
            for l in lines {
                let _ = writeln!(out, "{l}");
            }
            let _ = out.flush();
        }
        if s.live {
            s.redraw();
        }
    }

    /// The final summary: BitBake's one-line tally, totals, wall time, this
    /// run's critical path, the slowest tasks, and the failed tasks with
    /// their logs again.
    pub fn summary(&self, report: &Report) {
        let mut s = self.0.lock().expect("not poisoned");
        s.clear();
        s.live = false;
        let t = &report.totals;
        let mut out = String::new();
        let mut line = |l: String| {
            out.push_str(&l);
            out.push('\n');
        };
        for l in runqueue::text::summary_lines(&runqueue::text::Tally {
            total: t.total,
            succeeded: t.succeeded,
            cached: t.cached,
            failed: t.failed,
            not_run: t.not_run,
            peak_parallel: t.peak_parallel,
            max_parallel: report.max_parallel,
            wall_ms: t.wall_ms,
        }) {
            line(l);
        }
        let by_id: HashMap<&str, &TaskReport> =
            report.tasks.iter().map(|t| (t.id.as_str(), t)).collect();
        let path_ms: u64 = report
            .critical_path
            .iter()
            .filter_map(|id| by_id.get(id.as_str()))
            .map(|t| duration_ms(t))
            .sum();
        if t.succeeded + t.failed > 0 && !report.critical_path.is_empty() {
            line(format!(
                "Critical path ({} tasks, {}): {}",
                report.critical_path.len(),
                secs(path_ms),
                abbreviate(&report.critical_path)
            ));
            let mut ran: Vec<&TaskReport> =
                report.tasks.iter().filter(|t| t.pid.is_some()).collect();
            ran.sort_by_key(|t| std::cmp::Reverse(duration_ms(t)));
            let slowest: Vec<String> = ran
                .iter()
                .take(SLOWEST_SHOWN)
                .map(|t| format!("{} {}", t.id, secs(duration_ms(t))))
                .collect();
            line(format!("Slowest tasks: {}", slowest.join(", ")));
        }
        let failed: Vec<&TaskReport> = report
            .tasks
            .iter()
            .filter(|t| t.state == TaskState::Failed)
            .collect();
        if !failed.is_empty() {
            line("Failed tasks:".to_string());
            for f in failed {
                line(format!(
                    "  {}: {}",
                    f.id,
                    f.message.as_deref().unwrap_or("failed")
                ));
                for l in failure_details(f, &s.workspace, s.tail) {
                    line(format!("  {l}"));
                }
            }
        }
        let not_run: Vec<&TaskReport> = report
            .tasks
            .iter()
            .filter(|t| t.state == TaskState::NotRun)
            .collect();
        if !not_run.is_empty() {
            line(format!("Not run ({}):", not_run.len()));
            for n in not_run.iter().take(NOT_RUN_SHOWN) {
                line(format!(
                    "  {}: {}",
                    n.id,
                    n.message.as_deref().unwrap_or("not run")
                ));
            }
            if not_run.len() > NOT_RUN_SHOWN {
                line(format!("  ... and {} more", not_run.len() - NOT_RUN_SHOWN));
            }
        }
        print!("{out}");
    }
}

/// "a -> b -> c", or the first and last few of a long chain.
fn abbreviate(chain: &[String]) -> String {
    if chain.len() <= 12 {
        return chain.join(" -> ");
    }
    format!(
        "{} -> ... {} more ... -> {}",
        chain[..5].join(" -> "),
        chain.len() - 10,
        chain[chain.len() - 5..].join(" -> ")
    )
}

/// BitBake's failure block: where the log is and its last lines.
fn failure_details(t: &TaskReport, workspace: &Path, tail: usize) -> Vec<String> {
    let Some(log) = &t.log else {
        return Vec::new();
    };
    // The log name is a link to this run's `log.<task>.<pid>`: show that.
    let link = workspace.join(log);
    let path = match std::fs::read_link(&link) {
        Ok(target) => link.with_file_name(target),
        Err(_) => link,
    };
    let mut lines = vec![format!("Logfile of failure stored in: {}", path.display())];
    if tail == 0 {
        return lines;
    }
    match std::fs::read(&path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&last_bytes(&bytes, 64 << 10)).into_owned();
            let all: Vec<&str> = text.lines().collect();
            let shown = &all[all.len().saturating_sub(tail)..];
            if shown.is_empty() {
                lines.push("Log data follows: (the log is empty)".to_string());
            } else {
                lines.push(format!("Log data follows (last {} lines):", shown.len()));
                lines.extend(shown.iter().map(|l| format!("| {l}")));
            }
        }
        Err(e) => lines.push(format!("(cannot read the log: {e})")),
    }
    lines
}

/// The last `n` bytes, so a huge log is not read into lines whole.
fn last_bytes(bytes: &[u8], n: usize) -> Vec<u8> {
    bytes[bytes.len().saturating_sub(n)..].to_vec()
}

impl State {
    /// Erases the status block.
    fn clear(&mut self) {
        if self.drawn > 0 {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\x1b[{}F\x1b[J", self.drawn);
            let _ = err.flush();
            self.drawn = 0;
        }
    }

    /// Warns about running tasks silent for a multiple of the stall time
    /// they have not been warned about yet.
    fn warn_stalls(&mut self) {
        let Some((after, activity)) = &self.stall else {
            return;
        };
        let mut warnings = Vec::new();
        for (id, r) in self.running.iter_mut() {
            let last = activity
                .last_output(r.pid)
                .map_or(r.since, |t| t.max(r.since));
            let silent = last.elapsed();
            let periods = (silent.as_secs_f64() / after.as_secs_f64()) as u32;
            if periods == 0 {
                r.warned = 0;
            } else if periods > r.warned {
                r.warned = periods;
                warnings.push(format!(
                    "{id} has printed nothing for {} (pid {}); is it stuck?",
                    human(*after * periods),
                    r.pid
                ));
            }
        }
        if !warnings.is_empty() {
            warnings.sort();
            self.clear();
            for w in warnings {
                eprintln!("runqueue: warning: {w}");
            }
        }
    }

    /// Draws the status block: counts, elapsed time, and the longest
    /// running tasks.
    fn redraw(&mut self) {
        self.clear();
        let left = self
            .total
            .saturating_sub(self.done + self.cached + self.running.len());
        let mut block = vec![format!(
            "[{}/{}] {} done, {} cached, {} running, {} failed, {} left, {:.1}s",
            self.done + self.cached,
            self.total,
            self.done - self.failed,
            self.cached,
            self.running.len(),
            self.failed,
            left,
            self.started.elapsed().as_secs_f64()
        )];
        let mut running: Vec<(&String, Instant)> =
            self.running.iter().map(|(id, r)| (id, r.since)).collect();
        running.sort_by_key(|(id, at)| (*at, (*id).clone()));
        for (id, at) in running.iter().take(RUNNING_SHOWN) {
            block.push(format!("  {id} {:.1}s", at.elapsed().as_secs_f64()));
        }
        let mut err = std::io::stderr().lock();
        for l in &block {
            let _ = writeln!(err, "{l}");
        }
        let _ = err.flush();
        self.drawn = block.len();
    }
}
