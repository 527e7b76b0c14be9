//! When each task process last printed: what a stall warning reads. Knows
//! pids and instants; knows nothing of pipes, logs or tasks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// When each running process last printed, by pid: what a stall warning
/// reads. Cheap to clone.
#[derive(Clone, Default, Debug)]
pub struct Activity(Arc<Mutex<HashMap<u32, Instant>>>);

impl Activity {
    /// When `pid` last wrote to its output; `None` if it has printed
    /// nothing (or is not one of this run's processes).
    pub fn last_output(&self, pid: u32) -> Option<Instant> {
        self.0.lock().expect("not poisoned").get(&pid).copied()
    }

    /// Records that `pid` printed just now.
    pub(super) fn touch(&self, pid: u32) {
        self.0
            .lock()
            .expect("not poisoned")
            .insert(pid, Instant::now());
    }

    /// Drops `pid`, whose process is gone.
    pub(super) fn forget(&self, pid: u32) {
        self.0.lock().expect("not poisoned").remove(&pid);
    }
}
