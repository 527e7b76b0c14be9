//! `/metrics` in Prometheus' text format: builds running and queued, tasks
//! started, cached and failed since the service started, slots in use.
//!
//! Knows counters and the exposition format; knows nothing of HTTP.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::{Event, TaskState};

/// Counters the builds' events bump.
#[derive(Default)]
pub struct Metrics {
    started: AtomicU64,
    cached: AtomicU64,
    failed: AtomicU64,
    builds: AtomicU64,
}

/// What is true at the moment of a scrape.
pub struct Gauges {
    pub running: usize,
    pub queued: usize,
    pub slots_in_use: u32,
    pub slots: u32,
}

impl Metrics {
    pub fn count(&self, event: &Event) {
        match event {
            Event::Started(_) => self.started.fetch_add(1, Relaxed),
            Event::Finished(t) if t.state == TaskState::Cached => self.cached.fetch_add(1, Relaxed),
            Event::Finished(t) if t.state == TaskState::Failed => self.failed.fetch_add(1, Relaxed),
            _ => 0,
        };
    }

    /// A build was submitted.
    pub fn submitted(&self) {
        self.builds.fetch_add(1, Relaxed);
    }

    /// The exposition text.
    pub fn text(&self, g: &Gauges) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        metric(
            "runqueue_builds_running",
            "gauge",
            "Builds running now.",
            g.running as u64,
        );
        metric(
            "runqueue_builds_queued",
            "gauge",
            "Builds waiting to run.",
            g.queued as u64,
        );
        let submitted = self.builds.load(Relaxed);
        metric(
            "runqueue_builds_submitted_total",
            "counter",
            "Builds accepted.",
            submitted,
        );
        let started = self.started.load(Relaxed);
        metric(
            "runqueue_tasks_started_total",
            "counter",
            "Task processes started.",
            started,
        );
        let cached = self.cached.load(Relaxed);
        metric(
            "runqueue_tasks_cached_total",
            "counter",
            "Tasks the cache covered.",
            cached,
        );
        let failed = self.failed.load(Relaxed);
        metric(
            "runqueue_tasks_failed_total",
            "counter",
            "Tasks that failed.",
            failed,
        );
        let in_use = g.slots_in_use as u64;
        metric(
            "runqueue_slots_in_use",
            "gauge",
            "Task slots held by running builds.",
            in_use,
        );
        metric(
            "runqueue_slots",
            "gauge",
            "Task slots all builds share (--max-parallel).",
            g.slots as u64,
        );
        out
    }
}
