//! Progress as a live status block on a terminal (stderr): counts, elapsed
//! time and the longest running tasks, redrawn in place. Knows ANSI cursor
//! movement; leaves every per-task line to others.

use std::io::Write;
use std::time::Instant;

use super::{Progress, Render, Step};

/// How many running tasks the live status lists.
const RUNNING_SHOWN: usize = 5;

/// The status block and how many lines of it are on screen.
#[derive(Default)]
pub(super) struct Live {
    drawn: usize,
}

impl Render for Live {
    /// Shows no per-task lines: the status block counts them.
    fn line(&self, _: &Step<'_>) -> Option<String> {
        None
    }

    /// Draws the status block: counts, elapsed time, and the longest
    /// running tasks.
    fn redraw(&mut self, p: &Progress) {
        self.clear();
        let left = p.total.saturating_sub(p.done + p.cached + p.running.len());
        let mut block = vec![format!(
            "[{}/{}] {} done, {} cached, {} running, {} failed, {} left, {:.1}s",
            p.done + p.cached,
            p.total,
            p.done - p.failed,
            p.cached,
            p.running.len(),
            p.failed,
            left,
            p.started.elapsed().as_secs_f64()
        )];
        let mut running: Vec<(&String, Instant)> =
            p.running.iter().map(|(id, r)| (id, r.since)).collect();
        running.sort_by_key(|(id, at)| (*at, (*id).clone()));
        for (id, at) in running.iter().take(RUNNING_SHOWN) {
            block.push(format!("  {id} {:.1}s", at.elapsed().as_secs_f64()));
        }
        if let Some((id, why)) = &p.waiting {
            block.push(format!("  next: {id}, waiting for {why}"));
        }
        let mut err = std::io::stderr().lock();
        for l in &block {
            let _ = writeln!(err, "{l}");
        }
        let _ = err.flush();
        self.drawn = block.len();
    }

    /// Erases the status block.
    fn clear(&mut self) {
        if self.drawn > 0 {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\x1b[{}F\x1b[J", self.drawn);
            let _ = err.flush();
            self.drawn = 0;
        }
    }
}
