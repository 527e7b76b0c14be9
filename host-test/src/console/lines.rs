//! Progress as plain lines, one per started, finished and restored task:
//! for output that is not a terminal (or a quiet console). Knows the line
//! formats; draws nothing that needs erasing.

use super::{duration_ms, secs, Progress, Render, Step, Verbosity};

/// A line per task step, or none at all when quiet.
pub(super) struct Lines {
    quiet: bool,
}

impl Lines {
    pub(super) fn new(verbosity: Verbosity) -> Lines {
        Lines {
            quiet: verbosity == Verbosity::Quiet,
        }
    }
}

impl Render for Lines {
    fn line(&self, step: &Step<'_>) -> Option<String> {
        if self.quiet {
            return None;
        }
        Some(match step {
            Step::Started(st) => format!(
                "[{:>8}] started  {} (pid {}, {} running)",
                secs(st.at_ms),
                st.id,
                st.pid,
                st.running
            ),
            Step::Succeeded(t) => format!(
                "[{:>8}] done     {} in {}",
                secs(t.end_ms.unwrap_or(0)),
                t.id,
                secs(duration_ms(t))
            ),
            Step::Restored(t) => format!(
                "[{:>8}] restored {} from the cache",
                secs(t.end_ms.unwrap_or(0)),
                t.id
            ),
            Step::Held(id, why) => format!("[        ] waiting  {id} (for {why})"),
        })
    }

    fn redraw(&mut self, _: &Progress) {}

    fn clear(&mut self) {}
}
