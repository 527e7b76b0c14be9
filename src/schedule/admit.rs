//! Whether the machine can take the next task now, beyond the free slots
//! the plan counts: memory for its predicted peak beside the running
//! tasks', no memory pressure, and job slots from the jobserver the host
//! shares with the tasks' nested builds.
//!
//! Predictions come from the peaks the history recorded, else the median
//! of the task name's (recorded, or measured earlier in this run), else
//! none: a task never measured is started on the pressure feedback alone.
//! Pressure is the share of time some process stalled on memory (Linux
//! PSI) over the last second; starts hold while it exceeds 1/J of the time
//! (J = `-j`): past that, the stalls cost the build more than a slot's
//! worth of work, and one more task only adds to them. Knows predictions,
//! budgets and samples; asks the host through [`Processes`]; knows
//! nothing of queues.

use std::collections::HashMap;

use crate::graph::{Graph, TaskId, TaskMap};
use crate::schedule::estimate::task_name;
use crate::schedule::plan::Hold;
use crate::seams::Processes;

/// Pressure is measured over at least this long.
pub const PRESSURE_WINDOW_MS: u64 = 1000;

/// What the running tasks hold and what may start.
pub struct Admission {
    /// Bytes the running tasks' predicted peaks may add up to; `None`:
    /// memory is not considered.
    budget: Option<u64>,
    /// Each task's peak as the history recorded it.
    recorded: TaskMap<Option<u64>>,
    /// Peaks recorded or measured, by task name, each list sorted.
    by_name: HashMap<String, Vec<u64>>,
    /// What each running task holds: job slots, predicted bytes.
    holds: TaskMap<Option<(u32, u64)>>,
    in_use: u64,
    running: usize,
    pressure: Pressure,
}

impl Admission {
    /// `history` holds the recorded peaks by task id, of this graph's
    /// tasks and others; `j` is the limit of tasks at once.
    pub fn new(
        graph: &Graph,
        budget: Option<u64>,
        history: &HashMap<String, u64>,
        j: usize,
    ) -> Self {
        let mut admission = Admission {
            budget,
            recorded: TaskMap::from_fn(graph, |id| history.get(&graph.task(id).id).copied()),
            by_name: HashMap::new(),
            holds: TaskMap::filled(graph, None),
            in_use: 0,
            running: 0,
            pressure: Pressure::new(j),
        };
        for (id, &peak) in history {
            admission.add_peak(task_name(id), peak);
        }
        admission
    }

    /// The peak `id` is expected to reach, if anything is known.
    pub fn predicted(&self, graph: &Graph, id: TaskId) -> Option<u64> {
        self.recorded[id].or_else(|| {
            let peaks = self.by_name.get(task_name(&graph.task(id).id))?;
            Some(peaks[peaks.len() / 2])
        })
    }

    /// Lets `id` start, taking `slots` job slots, or says what holds it.
    /// Nothing holds a task while none of this run's tasks runs: a task
    /// too big for the budget runs alone.
    pub fn admit(
        &mut self,
        graph: &Graph,
        id: TaskId,
        slots: u32,
        host: &mut dyn Processes,
    ) -> Result<(), Hold> {
        let bytes = self.predicted(graph, id).unwrap_or(0);
        let stalling = self.pressure.high(host);
        if self.running > 0 {
            if self.budget.is_some_and(|b| self.in_use + bytes > b) {
                return Err(Hold::Memory);
            }
            if stalling {
                return Err(Hold::Pressure);
            }
        }
        if !host.take_slots(slots) {
            return Err(Hold::Jobserver);
        }
        self.holds[id] = Some((slots, bytes));
        self.in_use += bytes;
        self.running += 1;
        Ok(())
    }

    /// `id` no longer runs: its slots go back to the pool. Idempotent.
    pub fn release(&mut self, id: TaskId, host: &mut dyn Processes) {
        if let Some((slots, bytes)) = self.holds[id].take() {
            host.give_slots(slots);
            self.in_use -= bytes;
            self.running -= 1;
        }
    }

    /// A peak measured for `id`, for the tasks of its name still to come.
    pub fn learn(&mut self, graph: &Graph, id: TaskId, peak: u64) {
        self.add_peak(task_name(&graph.task(id).id), peak);
    }

    /// Adds `peak` to its name's list, keeping it sorted (its median is
    /// read at every start).
    fn add_peak(&mut self, name: &str, peak: u64) {
        let peaks = self.by_name.entry(name.to_string()).or_default();
        peaks.insert(peaks.partition_point(|&p| p < peak), peak);
    }
}

/// The share of time some process stalled on memory, from the host's
/// cumulative counter sampled at least [`PRESSURE_WINDOW_MS`] apart.
struct Pressure {
    /// Above this share, starts hold: 1/J.
    limit: f64,
    last: Option<(u64, u64)>,
    share: f64,
}

impl Pressure {
    fn new(j: usize) -> Self {
        Pressure {
            limit: 1.0 / j.max(1) as f64,
            last: None,
            share: 0.0,
        }
    }

    /// Whether the share measured last is above the limit; the host's
    /// counter is read again only once a window has passed, not at every
    /// start.
    fn high(&mut self, host: &dyn Processes) -> bool {
        let now_ms = host.now_ms();
        if self
            .last
            .is_some_and(|(at, _)| now_ms < at + PRESSURE_WINDOW_MS)
        {
            return self.share > self.limit;
        }
        let Some(stalled_us) = host.memory_stall_us() else {
            return false;
        };
        if let Some((at, before)) = self.last {
            let window_us = (now_ms - at) as f64 * 1000.0;
            self.share = stalled_us.saturating_sub(before) as f64 / window_us;
        }
        self.last = Some((now_ms, stalled_us));
        self.share > self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seams::{Child, Command, LocalFuture};

    #[derive(Default)]
    struct Host {
        pool: u32,
        stalled_us: u64,
        now_ms: u64,
    }

    impl Processes for Host {
        fn spawn(&mut self, _: &Command) -> Result<Box<dyn Child>, String> {
            Err("not here".into())
        }
        fn now_ms(&self) -> u64 {
            self.now_ms
        }
        fn sleep(&self, _: u64) -> LocalFuture<()> {
            Box::pin(std::future::ready(()))
        }
        fn interrupted(&mut self) -> LocalFuture<()> {
            Box::pin(std::future::pending())
        }
        fn parallelism(&self) -> u32 {
            4
        }
        fn take_slots(&mut self, n: u32) -> bool {
            let ok = self.pool >= n;
            self.pool -= if ok { n } else { 0 };
            ok
        }
        fn give_slots(&mut self, n: u32) {
            self.pool += n;
        }
        fn memory_stall_us(&self) -> Option<u64> {
            Some(self.stalled_us)
        }
    }

    fn graph() -> Graph {
        Graph::parse(
            r#"{"version":1,"tasks":[{"id":"a:do_hog"},{"id":"b:do_hog"},{"id":"c:do_hog"},{"id":"d:do_other"}]}"#,
        )
        .unwrap()
    }

    const MB: u64 = 1 << 20;

    #[test]
    fn memory_holds_what_would_not_fit_and_a_giant_runs_alone() {
        let g = graph();
        let history = HashMap::from([
            ("z:do_hog".into(), 300 * MB),
            ("d:do_other".into(), 900 * MB),
        ]);
        let mut a = Admission::new(&g, Some(700 * MB), &history, 4);
        let mut host = Host {
            pool: 8,
            ..Host::default()
        };
        let [ta, tb, tc, td] = [0, 1, 2, 3].map(TaskId);
        // a, b and c have no peak of their own: z's, of the same name.
        assert_eq!(a.predicted(&g, tb), Some(300 * MB));
        assert_eq!(a.admit(&g, ta, 1, &mut host), Ok(()));
        assert_eq!(a.admit(&g, tb, 1, &mut host), Ok(()));
        assert_eq!(a.admit(&g, tc, 1, &mut host), Err(Hold::Memory));
        a.release(ta, &mut host);
        a.release(ta, &mut host);
        assert_eq!(a.admit(&g, tc, 1, &mut host), Ok(()));
        assert_eq!(a.admit(&g, td, 1, &mut host), Err(Hold::Memory));
        a.release(tb, &mut host);
        a.release(tc, &mut host);
        assert_eq!(a.admit(&g, td, 1, &mut host), Ok(()), "alone, it starts");
        assert_eq!(host.pool, 7);
    }

    #[test]
    fn an_empty_pool_holds_and_slots_come_back() {
        let g = graph();
        let mut a = Admission::new(&g, None, &HashMap::new(), 2);
        let mut host = Host {
            pool: 3,
            ..Host::default()
        };
        assert_eq!(a.admit(&g, TaskId(0), 2, &mut host), Ok(()));
        assert_eq!(a.admit(&g, TaskId(1), 2, &mut host), Err(Hold::Jobserver));
        a.release(TaskId(0), &mut host);
        assert_eq!(a.admit(&g, TaskId(1), 2, &mut host), Ok(()));
        assert_eq!(host.pool, 1);
    }

    #[test]
    fn memory_pressure_above_one_slots_share_holds_starts() {
        let g = graph();
        let mut a = Admission::new(&g, None, &HashMap::new(), 4);
        let mut host = Host {
            pool: 8,
            ..Host::default()
        };
        assert_eq!(a.admit(&g, TaskId(0), 1, &mut host), Ok(()));
        // A second later, stalled 30 % of the time: above 1/4.
        host.now_ms = 1000;
        host.stalled_us = 300_000;
        assert_eq!(a.admit(&g, TaskId(1), 1, &mut host), Err(Hold::Pressure));
        // Another second with 10 %: below.
        host.now_ms = 2000;
        host.stalled_us = 400_000;
        assert_eq!(a.admit(&g, TaskId(1), 1, &mut host), Ok(()));
    }
}
