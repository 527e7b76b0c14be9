//! When each task last showed a sign of life: when a local process last
//! printed, and at which stage a remote run is and since when. What a
//! stall warning reads. Knows pids, log names and instants; knows nothing
//! of pipes, logs or tasks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// When each running task last showed progress. Cheap to clone.
#[derive(Clone, Default, Debug)]
pub struct Activity(Arc<Mutex<Seen>>);

#[derive(Default, Debug)]
struct Seen {
    /// When each local process last printed, by pid.
    printed: HashMap<u32, Instant>,
    /// Each remote run's stage and when it reached it, by the task's log
    /// name (a remote run has no pid).
    remote: HashMap<String, (&'static str, Instant)>,
}

impl Activity {
    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.0.lock().expect("not poisoned")
    }

    /// When `pid` last wrote to its output; `None` if it has printed
    /// nothing (or is not one of this run's processes).
    pub fn last_output(&self, pid: u32) -> Option<Instant> {
        self.seen().printed.get(&pid).copied()
    }

    /// Records that `pid` printed just now.
    pub(super) fn touch(&self, pid: u32) {
        self.seen().printed.insert(pid, Instant::now());
    }

    /// Drops `pid`, whose process is gone.
    pub(super) fn forget(&self, pid: u32) {
        self.seen().printed.remove(&pid);
    }

    /// The stage the remote run of the task logging to `log` is at, and
    /// since when; `None` for a task not running remotely.
    pub fn remote_stage(&self, log: &str) -> Option<(&'static str, Instant)> {
        self.seen().remote.get(log).copied()
    }

    /// Records that the remote run of `log`'s task is at `stage` ("queued",
    /// "executing"): progress when it differs from the last one.
    pub fn remote_at(&self, log: &str, stage: &'static str) {
        let mut seen = self.seen();
        match seen.remote.get(log) {
            Some((current, _)) if *current == stage => {}
            _ => {
                seen.remote.insert(log.to_string(), (stage, Instant::now()));
            }
        }
    }

    /// Drops `log`'s remote run, which has ended.
    pub fn remote_ended(&self, log: &str) {
        self.seen().remote.remove(log);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_new_stage_is_progress() {
        let a = Activity::default();
        a.remote_at("l", "queued");
        let (_, first) = a.remote_stage("l").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        a.remote_at("l", "queued");
        assert_eq!(a.remote_stage("l"), Some(("queued", first)));
        a.remote_at("l", "executing");
        let (stage, since) = a.remote_stage("l").unwrap();
        assert!(stage == "executing" && since > first);
        a.remote_ended("l");
        assert_eq!(a.remote_stage("l"), None);
    }
}
