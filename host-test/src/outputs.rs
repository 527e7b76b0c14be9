//! What a finished run leaves behind for machines and eyes: the JSON report,
//! a Chrome trace and an SVG timeline. Knows the report; knows nothing of
//! the console or of running.

use std::fmt::Write as _;

use serde::Serialize;

use crate::{ExitStatus, Report, TaskReport, TaskState};

/// The `--report` format's version; bumped on incompatible changes.
pub const REPORT_VERSION: u32 = 1;

/// One task in the JSON report.
#[derive(Debug, Serialize)]
pub struct JsonTask<'a> {
    pub id: &'a str,
    /// `succeeded`, `failed`, `not-run` or `cached`.
    pub state: &'static str,
    pub signature: Option<&'a str>,
    /// `{"code": N}` or `{"signal": N}`, or null if it did not run.
    pub exit: Option<JsonExit>,
    pub start_ms: Option<u64>,
    pub end_ms: Option<u64>,
    pub duration_ms: Option<u64>,
    pub cached: bool,
    pub restored: bool,
    /// Why a cached task was cut off (its dependencies' outputs came out
    /// identical to an earlier run), or null.
    pub cut_off: Option<&'a str>,
    /// Peak memory in bytes, where measured.
    pub peak_memory: Option<u64>,
    /// Ran again alone after an out-of-memory kill.
    pub oom_rerun: bool,
    /// Why it waited while ready: slots, pool, jobserver, memory, pressure.
    pub held_by: &'a [String],
    /// The remote worker its process ran on; null when it ran here.
    pub ran_on: Option<&'a str>,
    /// A remote service answered from its action cache.
    pub remote_cached: bool,
    pub pid: Option<u32>,
    pub log: Option<&'a str>,
    pub message: Option<&'a str>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JsonExit {
    Code(i32),
    Signal(i32),
}

/// The totals in the JSON report.
#[derive(Debug, Serialize)]
pub struct JsonTotals {
    pub total: u32,
    pub succeeded: u32,
    pub failed: u32,
    pub not_run: u32,
    pub cached: u32,
    pub cut_off: u32,
    pub oom_reruns: u32,
    pub peak_parallel: u32,
    pub max_parallel: u32,
    pub wall_ms: u64,
}

/// The whole `--report` file.
#[derive(Debug, Serialize)]
pub struct JsonReport<'a> {
    pub version: u32,
    pub tasks: Vec<JsonTask<'a>>,
    pub totals: JsonTotals,
    pub critical_path: &'a [String],
}

pub fn state_name(s: TaskState) -> &'static str {
    match s {
        TaskState::Succeeded => "succeeded",
        TaskState::Failed => "failed",
        TaskState::NotRun => "not-run",
        TaskState::Cached => "cached",
    }
}

/// How long a task ran, if it started and ended.
pub fn duration(t: &TaskReport) -> Option<u64> {
    Some(t.end_ms?.saturating_sub(t.start_ms?))
}

/// The report as the documented JSON shape.
pub fn json_report(report: &Report) -> JsonReport<'_> {
    let t = &report.totals;
    JsonReport {
        version: REPORT_VERSION,
        tasks: report.tasks.iter().map(json_task).collect(),
        totals: JsonTotals {
            total: t.total,
            succeeded: t.succeeded,
            failed: t.failed,
            not_run: t.not_run,
            cached: t.cached,
            cut_off: t.cut_off,
            oom_reruns: t.oom_reruns,
            peak_parallel: t.peak_parallel,
            max_parallel: report.max_parallel,
            wall_ms: t.wall_ms,
        },
        critical_path: &report.critical_path,
    }
}

/// One task as the report's JSON has it.
pub fn json_task(task: &TaskReport) -> JsonTask<'_> {
    JsonTask {
        id: &task.id,
        state: state_name(task.state),
        signature: task.signature.as_deref(),
        exit: task.exit.map(|e| match e {
            ExitStatus::Code(c) => JsonExit::Code(c),
            ExitStatus::Signal(s) => JsonExit::Signal(s),
        }),
        start_ms: task.start_ms,
        end_ms: task.end_ms,
        duration_ms: duration(task),
        cached: task.state == TaskState::Cached,
        restored: task.restored,
        cut_off: task.cut_off.as_deref(),
        peak_memory: task.peak_memory,
        oom_rerun: task.oom_rerun,
        held_by: &task.held_by,
        ran_on: task.ran_on.as_deref(),
        remote_cached: task.remote_cached,
        pid: task.pid,
        log: task.log.as_deref(),
        message: task.message.as_deref(),
    }
}

/// Tasks whose process ran (succeeded or failed with a pid), in start order.
fn executed(report: &Report) -> Vec<&TaskReport> {
    let mut ran: Vec<&TaskReport> = report
        .tasks
        .iter()
        .filter(|t| t.pid.is_some() && t.start_ms.is_some() && t.end_ms.is_some())
        .collect();
    ran.sort_by_key(|t| (t.start_ms, t.end_ms));
    ran
}

/// Gives each executed task a slot (a row): the lowest-numbered slot free at
/// its start. Returns the tasks with their slots, and the number of slots.
pub fn slots(report: &Report) -> (Vec<(&TaskReport, usize)>, usize) {
    let mut free_at: Vec<u64> = Vec::new();
    let mut out = Vec::new();
    for t in executed(report) {
        let (start, end) = (t.start_ms.unwrap(), t.end_ms.unwrap());
        let slot = match free_at.iter().position(|&f| f <= start) {
            Some(s) => s,
            None => {
                free_at.push(0);
                free_at.len() - 1
            }
        };
        free_at[slot] = end;
        out.push((t, slot));
    }
    let n = free_at.len();
    (out, n)
}

/// A Chrome trace-event JSON (Perfetto, chrome://tracing): one complete
/// ("X") event per executed task, one track per slot; an instant event
/// ("i", category `cut-off`) where a task was cut off.
pub fn chrome_trace(report: &Report) -> String {
    let (tasks, n) = slots(report);
    let mut events = Vec::new();
    for slot in 0..n {
        events.push(serde_json::json!({
            "name": "thread_name", "ph": "M", "pid": 1, "tid": slot,
            "args": {"name": format!("slot {slot}")},
        }));
    }
    for (t, slot) in tasks {
        let (start, end) = (t.start_ms.unwrap(), t.end_ms.unwrap());
        events.push(serde_json::json!({
            "name": t.id, "cat": state_name(t.state), "ph": "X", "pid": 1, "tid": slot,
            "ts": start * 1000, "dur": (end - start) * 1000,
            "args": {"state": state_name(t.state), "pid": t.pid, "log": t.log, "message": t.message},
        }));
    }
    for t in report.tasks.iter().filter(|t| t.cut_off.is_some()) {
        events.push(serde_json::json!({
            "name": format!("cut off: {}", t.id), "cat": "cut-off", "ph": "i", "s": "g",
            "pid": 1, "tid": 0, "ts": t.end_ms.unwrap_or(0) * 1000,
            "args": {"task": t.id, "why": t.cut_off},
        }));
    }
    serde_json::json!({"traceEvents": events, "displayTimeUnit": "ms"}).to_string()
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A self-contained SVG timeline: one row per slot, one bar per executed
/// task coloured by state, the run's critical path outlined, a time axis.
pub fn svg_chart(report: &Report) -> String {
    let (tasks, n) = slots(report);
    let chart = Chart {
        wall: report.totals.wall_ms.max(1) as f64,
        slots: n,
        left: 70.0,
        top: 40.0,
        row: 26.0,
        width: 1100.0,
    };
    let mut s = String::new();
    chart.header(&mut s, report);
    chart.rows(&mut s);
    chart.axis(&mut s);
    let critical: std::collections::HashSet<&str> =
        report.critical_path.iter().map(String::as_str).collect();
    for (task, slot) in tasks {
        chart.bar(&mut s, task, slot, critical.contains(task.id.as_str()));
    }
    chart.legend(&mut s);
    s.push_str("</svg>\n");
    s
}

/// The timeline's geometry, in pixels, and its time scale.
struct Chart {
    /// The run's wall time in ms (at least 1): the width of the plot.
    wall: f64,
    slots: usize,
    left: f64,
    top: f64,
    row: f64,
    width: f64,
}

impl Chart {
    fn x(&self, ms: u64) -> f64 {
        self.left + ms as f64 / self.wall * self.width
    }

    /// Where the time axis runs, below the last row.
    fn axis_y(&self) -> f64 {
        self.top + self.row * self.slots.max(1) as f64 + 8.0
    }

    /// The `<svg>` element, a white background and the title line.
    fn header(&self, s: &mut String, report: &Report) {
        let height = self.top + self.row * self.slots.max(1) as f64 + 70.0;
        let total_w = self.left + self.width + 20.0;
        writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{total_w}" height="{height}" viewBox="0 0 {total_w} {height}" font-family="sans-serif" font-size="11">"#
        )
        .unwrap();
        writeln!(s, r##"<rect width="100%" height="100%" fill="#ffffff"/>"##).unwrap();
        let t = &report.totals;
        writeln!(
            s,
            r#"<text x="{}" y="20" font-size="14">runqueue: {} tasks, {} succeeded, {} cached, {} failed, {} not run; wall {:.2} s; critical path outlined</text>"#,
            self.left,
            t.total,
            t.succeeded,
            t.cached,
            t.failed,
            t.not_run,
            self.wall / 1000.0
        )
        .unwrap();
    }

    /// A label and a separating line per slot.
    fn rows(&self, s: &mut String) {
        let (left, row) = (self.left, self.row);
        for slot in 0..self.slots {
            let y = self.top + row * slot as f64;
            writeln!(
                s,
                r##"<text x="8" y="{}" fill="#444">slot {slot}</text>"##,
                y + 17.0
            )
            .unwrap();
            writeln!(
                s,
                r##"<line x1="{left}" y1="{}" x2="{}" y2="{}" stroke="#eee"/>"##,
                y + row,
                left + self.width,
                y + row
            )
            .unwrap();
        }
    }

    /// Time axis with about ten ticks at round numbers.
    fn axis(&self, s: &mut String) {
        let (top, axis_y) = (self.top, self.axis_y());
        let step = nice_step(self.wall / 10.0);
        let mut tick = 0.0;
        while tick <= self.wall {
            let tx = self.left + tick / self.wall * self.width;
            writeln!(
                s,
                r##"<line x1="{tx}" y1="{top}" x2="{tx}" y2="{axis_y}" stroke="#ddd"/>"##
            )
            .unwrap();
            writeln!(
                s,
                r##"<text x="{tx}" y="{}" text-anchor="middle" fill="#444">{}</text>"##,
                axis_y + 14.0,
                fmt_secs(tick)
            )
            .unwrap();
            tick += step;
        }
    }

    /// One task's bar, with a tooltip, and its id when it fits.
    fn bar(&self, s: &mut String, task: &TaskReport, slot: usize, critical: bool) {
        let (start, end) = (task.start_ms.unwrap(), task.end_ms.unwrap());
        let (x0, x1) = (self.x(start), self.x(end));
        let w = (x1 - x0).max(1.0);
        let y = self.top + self.row * slot as f64 + 3.0;
        let fill = match task.state {
            TaskState::Succeeded => "#4caf50",
            TaskState::Failed => "#e53935",
            TaskState::Cached => "#9e9e9e",
            TaskState::NotRun => "#ffb300",
        };
        let stroke = if critical {
            r##" stroke="#1a237e" stroke-width="2.5""##
        } else {
            ""
        };
        let id = xml_escape(&task.id);
        writeln!(
            s,
            r#"<rect class="task" x="{x0:.1}" y="{y}" width="{w:.1}" height="{}" rx="2" fill="{fill}"{stroke}><title>{id}: {} ({})</title></rect>"#,
            self.row - 6.0,
            state_name(task.state),
            fmt_secs((end - start) as f64)
        )
        .unwrap();
        // A label when it fits (about 6 px per character).
        if w > 6.0 * task.id.len() as f64 + 6.0 {
            writeln!(
                s,
                r##"<text x="{:.1}" y="{}" fill="#fff">{id}</text>"##,
                x0 + 3.0,
                y + 14.0
            )
            .unwrap();
        }
    }

    /// What the colours and the outline mean.
    fn legend(&self, s: &mut String) {
        let ly = self.axis_y() + 36.0;
        let mut lx = self.left;
        for (label, fill) in [
            ("succeeded", "#4caf50"),
            ("failed", "#e53935"),
            ("cached", "#9e9e9e"),
        ] {
            writeln!(
                s,
                r#"<rect x="{lx}" y="{}" width="14" height="10" fill="{fill}"/>"#,
                ly - 9.0
            )
            .unwrap();
            writeln!(
                s,
                r##"<text x="{}" y="{ly}" fill="#444">{label}</text>"##,
                lx + 18.0
            )
            .unwrap();
            lx += 100.0;
        }
        writeln!(
            s,
            r##"<rect x="{lx}" y="{}" width="14" height="10" fill="#fff" stroke="#1a237e" stroke-width="2.5"/>"##,
            ly - 9.0
        )
        .unwrap();
        writeln!(
            s,
            r##"<text x="{}" y="{ly}" fill="#444">critical path</text>"##,
            lx + 18.0
        )
        .unwrap();
    }
}

fn nice_step(raw: f64) -> f64 {
    let raw = raw.max(1.0);
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag)
}

fn fmt_secs(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else {
        format!("{ms:.0} ms")
    }
}
