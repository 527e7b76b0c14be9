//! Simulation: the real plan run against a virtual clock, to answer "how
//! long would this take with N slots?" without running anything.
//!
//! Knows the plan and durations; knows nothing of processes or files.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use crate::cache::Cache;
use crate::graph::{Graph, TaskId};
use crate::schedule::admit::Admission;
use crate::schedule::estimate::{recorded_peaks, task_name};
use crate::schedule::plan::{longest_chain, remaining_path, Hold, Plan, Policy};

/// What a simulated build took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Simulation {
    pub makespan_ms: u64,
    /// The sum of all durations.
    pub work_ms: u64,
    /// The longest dependency chain by duration.
    pub critical_path_ms: u64,
    pub critical_path: Vec<TaskId>,
    /// max(critical path, slot time / slots), a task's slot time being its
    /// duration times its weight: no schedule can beat it.
    pub lower_bound_ms: u64,
    pub peak_parallel: usize,
    /// The most the running tasks' peaks added up to, in bytes.
    pub peak_memory: u64,
    /// When each task started, in ms.
    pub starts: Vec<u64>,
}

/// Each task's peak memory, and the limit their sum must stay within.
#[derive(Debug, Clone, Default)]
pub struct Memory {
    pub peaks: Vec<u64>,
    pub limit: Option<u64>,
}

impl Memory {
    /// The peaks `cache`'s history recorded (by task, else the median of
    /// the task name, else 0), within `limit`.
    pub fn recorded(graph: &Graph, cache: Option<&Cache>, limit: Option<u64>) -> Memory {
        let admission = Admission::new(graph, None, &recorded_peaks(cache), 1);
        let peaks = graph
            .ids()
            .map(|id| admission.predicted(graph, id).unwrap_or(0));
        Memory {
            peaks: peaks.collect(),
            limit,
        }
    }
}

impl Simulation {
    /// Makespan over the lower bound: 1.0 is a perfect schedule.
    pub fn ratio(&self) -> f64 {
        if self.lower_bound_ms == 0 {
            1.0
        } else {
            self.makespan_ms as f64 / self.lower_bound_ms as f64
        }
    }
}

/// Runs `graph` on `max_parallel` virtual slots: task `i` takes `actual[i]`
/// ms and is prioritized by `policy` with `expected` durations. Every task
/// succeeds. Tasks that end at the same instant free their slots together,
/// in id order.
pub fn simulate(
    graph: &Graph,
    actual: &[u64],
    expected: &[u64],
    policy: Policy,
    max_parallel: usize,
) -> Simulation {
    let memory = Memory::default();
    simulate_within(graph, (actual, expected), policy, max_parallel, &memory)
}

/// [`simulate`], a task starting only when its peak fits beside the
/// running tasks' within `memory`'s limit (alone, it always starts).
pub fn simulate_within(
    graph: &Graph,
    (actual, expected): (&[u64], &[u64]),
    policy: Policy,
    max_parallel: usize,
    memory: &Memory,
) -> Simulation {
    let priorities = policy.priorities(graph, expected);
    let mut plan = Plan::new(graph, policy, priorities, max_parallel, false);
    let mut held = Held::new(memory);
    let mut starts = vec![0u64; graph.len()];
    let mut ends: BinaryHeap<Reverse<(u64, TaskId)>> = BinaryHeap::new();
    let mut now = 0u64;
    loop {
        while let Some(id) = plan.start_next_if(|id, _| held.fits(id)) {
            starts[id.index()] = now;
            ends.push(Reverse((now + actual[id.index()], id)));
            held.start(id);
        }
        if plan.is_done() {
            break;
        }
        let Reverse((t, id)) = ends.pop().expect("running tasks end");
        now = t;
        let mut ended = vec![id];
        while let Some(&Reverse((t2, next))) = ends.peek() {
            if t2 != now {
                break;
            }
            ends.pop();
            ended.push(next);
        }
        for id in ended {
            held.end(id);
            plan.finish(id, true);
        }
    }
    let mut sim = bounds(graph, actual, max_parallel);
    sim.makespan_ms = now;
    sim.peak_parallel = plan.peak_running();
    sim.peak_memory = held.peak;
    sim.starts = starts;
    sim
}

/// The running tasks' memory in a simulation.
struct Held<'m> {
    memory: &'m Memory,
    in_use: u64,
    running: usize,
    peak: u64,
}

impl<'m> Held<'m> {
    fn new(memory: &'m Memory) -> Self {
        Held {
            memory,
            in_use: 0,
            running: 0,
            peak: 0,
        }
    }

    fn peak_of(&self, id: TaskId) -> u64 {
        self.memory.peaks.get(id.index()).copied().unwrap_or(0)
    }

    /// Whether `id` fits beside the running tasks (alone it always does).
    fn fits(&self, id: TaskId) -> Result<(), Hold> {
        let over = self
            .memory
            .limit
            .is_some_and(|l| self.in_use + self.peak_of(id) > l);
        match over && self.running > 0 {
            true => Err(Hold::Memory),
            false => Ok(()),
        }
    }

    fn start(&mut self, id: TaskId) {
        self.in_use += self.peak_of(id);
        self.running += 1;
        self.peak = self.peak.max(self.in_use);
    }

    fn end(&mut self, id: TaskId) {
        self.in_use -= self.peak_of(id);
        self.running -= 1;
    }
}

/// The work, the critical path and the lower bound of `graph` on
/// `max_parallel` slots; the schedule's figures are left at zero.
fn bounds(graph: &Graph, actual: &[u64], max_parallel: usize) -> Simulation {
    let path = remaining_path(graph, |id| actual[id.index()]);
    let critical_path_ms = path.iter().copied().max().unwrap_or(0);
    let slots = max_parallel.max(1) as u64;
    // A weighted task takes its weight in slots (at most all of them).
    let slot_ms: u64 = graph
        .ids()
        .map(|id| actual[id.index()] * u64::from(graph.task(id).weight).min(slots))
        .sum();
    Simulation {
        makespan_ms: 0,
        work_ms: actual.iter().sum(),
        critical_path_ms,
        critical_path: longest_chain(graph, &path),
        lower_bound_ms: critical_path_ms.max(slot_ms.div_ceil(slots)),
        peak_parallel: 0,
        peak_memory: 0,
        starts: Vec::new(),
    }
}

/// Durations from a TSV file of `recipe<TAB>task<TAB>seconds` lines (as in
/// shared/data/yocto; a header line and blank lines are skipped), keyed by
/// `(recipe, task)`, in ms.
pub fn parse_durations(text: &str) -> Result<HashMap<(String, String), u64>, String> {
    let mut out = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split('\t').map(str::trim).collect();
        if line.trim().is_empty() || (n == 0 && fields.get(2) == Some(&"seconds")) {
            continue;
        }
        let [recipe, task, secs] = fields[..] else {
            return Err(format!(
                "durations line {}: expected `recipe<TAB>task<TAB>seconds`, got {line:?}",
                n + 1
            ));
        };
        let secs: f64 = secs
            .parse()
            .ok()
            .filter(|s: &f64| s.is_finite() && *s >= 0.0)
            .ok_or_else(|| {
                format!(
                    "durations line {}: {secs:?} is not a number of seconds",
                    n + 1
                )
            })?;
        out.insert(
            (recipe.to_string(), task.to_string()),
            (secs * 1000.0).round() as u64,
        );
    }
    Ok(out)
}

/// The duration each task of `graph` has in `durations`, matching
/// `recipe:task` ids.
pub fn durations_for(
    graph: &Graph,
    durations: &HashMap<(String, String), u64>,
) -> Vec<Option<u64>> {
    graph
        .tasks
        .iter()
        .map(|t| {
            let recipe = t.id.rsplit_once(':').map_or("", |(r, _)| r);
            durations
                .get(&(recipe.to_string(), task_name(&t.id).to_string()))
                .copied()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// a(3) -> c(2); b(4); d(1) after b and c. At two slots: a and b start
    /// at 0; a ends at 3 and c starts; b ends at 4 and nothing is ready; c
    /// ends at 5; d runs 5..6.
    const G: &str = r#"{"version":1,"tasks":[{"id":"a"},{"id":"b"},{"id":"c","deps":["a"]},
        {"id":"d","deps":["b","c"]}]}"#;

    #[test]
    fn matches_a_hand_computed_schedule() {
        let g = Graph::parse(G).unwrap();
        let d = [3000, 4000, 2000, 1000];
        let s = simulate(&g, &d, &d, Policy::CriticalPath, 2);
        assert_eq!(s.starts, vec![0, 0, 3000, 5000]);
        assert_eq!(s.makespan_ms, 6000);
        assert_eq!(s.work_ms, 10_000);
        assert_eq!(s.critical_path_ms, 6000);
        assert_eq!(s.lower_bound_ms, 6000);
        assert_eq!(s.ratio(), 1.0);
        let chain: Vec<_> = s
            .critical_path
            .iter()
            .map(|id| g.task(*id).id.as_str())
            .collect();
        assert_eq!(chain, ["a", "c", "d"]);
        // One slot: everything in a row; the bound is the work.
        let one = simulate(&g, &d, &d, Policy::CriticalPath, 1);
        assert_eq!((one.makespan_ms, one.lower_bound_ms), (10_000, 10_000));
    }

    #[test]
    fn recorded_peaks_hold_starts_within_the_memory_limit() {
        let g =
            Graph::parse(r#"{"version":1,"tasks":[{"id":"a"},{"id":"b"},{"id":"c"},{"id":"d"}]}"#)
                .unwrap();
        const GB: u64 = 1 << 30;
        let memory = Memory {
            peaks: vec![2 * GB, 2 * GB, 2 * GB, 5 * GB],
            limit: Some(4 * GB),
        };
        let ms = [100, 100, 100, 100];
        let sim = simulate_within(&g, (&ms, &ms), Policy::CriticalPath, 4, &memory);
        // Two at a time, then the one too big for the limit alone.
        assert_eq!((sim.makespan_ms, sim.peak_parallel), (300, 2));
        assert_eq!(sim.peak_memory, 5 * GB);
        let free = simulate_within(&g, (&ms, &ms), Policy::CriticalPath, 4, &Memory::default());
        assert_eq!(free.makespan_ms, 100);
    }

    #[test]
    fn waves_lose_time_that_the_critical_path_does_not() {
        // Four tasks at two slots: 5, 1, 1, 5 s. Waves pair (5, 1) and
        // (1, 5): 10 s. The critical path pairs the long ones: 6 s.
        let g =
            Graph::parse(r#"{"version":1,"tasks":[{"id":"a"},{"id":"b"},{"id":"c"},{"id":"d"}]}"#)
                .unwrap();
        let d = [5000, 1000, 1000, 5000];
        assert_eq!(simulate(&g, &d, &d, Policy::Waves, 2).makespan_ms, 10_000);
        assert_eq!(
            simulate(&g, &d, &d, Policy::CriticalPath, 2).makespan_ms,
            6_000
        );
        assert_eq!(simulate(&g, &d, &d, Policy::Fifo, 2).makespan_ms, 7_000);
    }

    #[test]
    fn reads_durations_files() {
        let text = "recipe\ttask\tseconds\nacl\tdo_compile\t1\nacl\tdo_configure\t7.5\n\n";
        let d = parse_durations(text).unwrap();
        assert_eq!(d[&("acl".to_string(), "do_configure".to_string())], 7500);
        let g = Graph::parse(
            r#"{"version":1,"tasks":[{"id":"acl:do_compile"},{"id":"zlib:do_compile"}]}"#,
        )
        .unwrap();
        assert_eq!(durations_for(&g, &d), vec![Some(1000), None]);
        assert_eq!(
            parse_durations("a\tb\n").unwrap_err(),
            "durations line 1: expected `recipe<TAB>task<TAB>seconds`, got \"a\\tb\""
        );
        assert_eq!(
            parse_durations("a\tb\tsoon\n").unwrap_err(),
            "durations line 1: \"soon\" is not a number of seconds"
        );
    }
}
