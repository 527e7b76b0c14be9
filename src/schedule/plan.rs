//! The plan: which task may start next, and what a task's end means for the
//! rest of the graph.
//!
//! A dynamic ready queue, never waves: whenever a slot is free the ready task
//! with the longest remaining path starts. Knows task states and priorities;
//! knows nothing of processes, clocks or the WIT types, so it runs the same
//! natively, in the component and in simulations.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::graph::{Graph, TaskId, TaskMap};

/// Where a task is. Every change goes through [`Plan::set`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    /// Some dependency has not succeeded yet.
    Waiting,
    /// Every dependency succeeded; queued for a slot.
    Ready,
    /// Started; holds a slot until it finishes.
    Running,
    /// Its process succeeded and left its slot; its dependents wait for
    /// the digest of its outputs (their signatures cover it).
    Storing,
    /// Finished successfully. Final.
    Succeeded,
    /// Finished unsuccessfully (non-zero exit, signal, could not start). Final.
    Failed,
    /// Will never run. Final.
    Skipped(SkipReason),
}

/// Why a task never ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// This failed task is among its (transitive) dependencies.
    DependencyFailed(TaskId),
    /// The build stopped after a failure (not keep-going) before it started.
    BuildStopped,
    /// The build was interrupted (Ctrl-C) before it started.
    Interrupted,
}

impl TaskState {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            TaskState::Succeeded | TaskState::Failed | TaskState::Skipped(_)
        )
    }
}

/// Why the best ready task is not starting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Hold {
    /// Every slot of `-j` is taken.
    Slots,
    /// Its pool is full.
    Pool,
    /// The jobserver has no slot for it: nested builds hold them.
    Jobserver,
    /// The predicted peaks of the running tasks and its own exceed the
    /// memory limit.
    Memory,
    /// The machine is stalling on memory.
    Pressure,
}

impl Hold {
    pub fn name(self) -> &'static str {
        match self {
            Hold::Slots => "slots",
            Hold::Pool => "pool",
            Hold::Jobserver => "jobserver",
            Hold::Memory => "memory",
            Hold::Pressure => "pressure",
        }
    }
}

/// How ready tasks are ordered. Only `CriticalPath` is meant for builds; the
/// others exist so benchmarks and simulations can compare in one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Longest remaining path, weighted by expected durations (default).
    CriticalPath,
    /// BitBake's "speed": final tasks weigh 10, others 1 + the sum of their
    /// direct dependents' weights; heaviest first.
    Speed,
    /// In the order tasks became ready.
    Fifo,
    /// The seed design: the ready set in batches of `max_parallel`, each
    /// batch joined all at once before the next starts.
    Waves,
}

impl Policy {
    pub const ALL: [Policy; 4] = [
        Policy::CriticalPath,
        Policy::Speed,
        Policy::Fifo,
        Policy::Waves,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Policy::CriticalPath => "critical-path",
            Policy::Speed => "speed",
            Policy::Fifo => "fifo",
            Policy::Waves => "waves",
        }
    }

    pub fn parse(name: &str) -> Option<Policy> {
        Policy::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The priority of every task under this policy; `expected` are the
    /// expected durations (used by `CriticalPath` only).
    pub fn priorities(self, graph: &Graph, expected: &[u64]) -> TaskMap<u64> {
        match self {
            Policy::CriticalPath => remaining_path(graph, |id| expected[id.index()]),
            Policy::Speed => speed_weights(graph),
            Policy::Fifo | Policy::Waves => TaskMap::filled(graph, 0),
        }
    }
}

/// BitBake's `speed` scheduler weights: final tasks 10, any other task 1 +
/// the sum of its direct dependents' weights (saturating).
pub fn speed_weights(graph: &Graph) -> TaskMap<u64> {
    let mut w = TaskMap::filled(graph, 0u64);
    for &id in graph.topo_order.iter().rev() {
        let deps = &graph.dependents[id];
        w[id] = if deps.is_empty() {
            10
        } else {
            deps.iter().fold(1u64, |acc, &d| acc.saturating_add(w[d]))
        };
    }
    w
}

/// The longest remaining path from each task to any final task, counting the
/// task itself: `weight(t) + max(path(d) for d depending on t)`. A ready task
/// with a longer path starts first.
pub fn remaining_path(graph: &Graph, weight: impl Fn(TaskId) -> u64) -> TaskMap<u64> {
    let mut path = TaskMap::filled(graph, 0u64);
    for &id in graph.topo_order.iter().rev() {
        let longest_after = graph.dependents[id]
            .iter()
            .map(|&d| path[d])
            .max()
            .unwrap_or(0);
        path[id] = weight(id) + longest_after;
    }
    path
}

/// The chain of tasks along the longest path, first task first; ties go to
/// the task earlier in the graph.
pub fn longest_chain(graph: &Graph, path: &TaskMap<u64>) -> Vec<TaskId> {
    let best =
        |ids: &mut dyn Iterator<Item = TaskId>| ids.max_by_key(|&id| (path[id], Reverse(id)));
    let mut chain = Vec::new();
    let mut at = best(&mut graph.ids().filter(|id| graph.task(*id).deps.is_empty()));
    while let Some(id) = at {
        chain.push(id);
        at = best(&mut graph.dependents[id].iter().copied());
    }
    chain
}

/// A ready task's place in its queue: larger first, then lower id.
type Key = (u64, Reverse<TaskId>);

/// The scheduling state of one run.
pub struct Plan<'g> {
    graph: &'g Graph,
    policy: Policy,
    states: TaskMap<TaskState>,
    /// Dependencies of each task that have not succeeded yet.
    unmet: TaskMap<u32>,
    priority: TaskMap<u64>,
    /// Ready tasks per pool; index 0 holds tasks without a pool, index
    /// `p + 1` those of `graph.pools[p]`.
    ready: Vec<BinaryHeap<Key>>,
    ready_count: usize,
    /// Slots taken by running tasks per pool (their weights), indexed
    /// like `ready`.
    pool_running: Vec<usize>,
    /// How many tasks became ready so far: the FIFO order.
    readied: u64,
    running: usize,
    /// Slots taken by running tasks: the sum of their weights.
    slots: usize,
    /// Tasks in [`TaskState::Storing`].
    storing: usize,
    peak_running: usize,
    max_parallel: usize,
    keep_going: bool,
    /// Set by the first failure unless keep-going: start nothing new.
    stopping: bool,
    /// Waves only: a batch is being started.
    wave_open: bool,
    /// Set by [`Plan::interrupt`]: start nothing new.
    interrupted: bool,
    /// Tasks to run alone (taking every slot): re-runs after the kernel
    /// killed them for memory.
    alone: TaskMap<bool>,
    /// The best ready task and why it did not start, after the last pick
    /// that started nothing while tasks were ready.
    held: Option<(TaskId, Hold)>,
}

impl<'g> Plan<'g> {
    /// New priorities for every task (some turned out covered by the
    /// cache: they weigh nothing now); the ready queues are reordered.
    pub fn reprioritize(&mut self, priority: TaskMap<u64>) {
        self.priority = priority;
        if matches!(self.policy, Policy::CriticalPath | Policy::Speed) {
            for queue in &mut self.ready {
                let ids: Vec<TaskId> = queue.drain().map(|(_, Reverse(id))| id).collect();
                queue.extend(ids.into_iter().map(|id| (self.priority[id], Reverse(id))));
            }
        }
    }

    /// A plan with every task waiting and the roots ready. `priority` is
    /// indexed by task (see [`Policy::priorities`]); `max_parallel` is at
    /// least 1.
    pub fn new(
        graph: &'g Graph,
        policy: Policy,
        priority: TaskMap<u64>,
        max_parallel: usize,
        keep_going: bool,
    ) -> Self {
        assert_eq!(priority.as_slice().len(), graph.len());
        let mut plan = Plan {
            graph,
            policy,
            states: TaskMap::filled(graph, TaskState::Waiting),
            unmet: TaskMap::from_fn(graph, |id| graph.task(id).deps.len() as u32),
            priority,
            ready: vec![BinaryHeap::new(); graph.pools.len() + 1],
            ready_count: 0,
            pool_running: vec![0; graph.pools.len() + 1],
            readied: 0,
            running: 0,
            slots: 0,
            storing: 0,
            peak_running: 0,
            max_parallel: max_parallel.max(1),
            keep_going,
            stopping: false,
            wave_open: false,
            interrupted: false,
            alone: TaskMap::filled(graph, false),
            held: None,
        };
        for id in graph.ids() {
            if plan.unmet[id] == 0 {
                plan.set(id, TaskState::Ready);
            }
        }
        plan
    }

    fn weight(&self, id: TaskId) -> usize {
        match self.alone[id] {
            true => self.max_parallel,
            false => self.graph.task(id).weight as usize,
        }
    }

    /// Whether `id`, at the head of queue `q`, fits in the free slots and
    /// its pool's. A task heavier than the limit runs alone. A head that
    /// does not fit holds back its queue (never starved by lighter tasks).
    fn fits(&self, id: TaskId, q: usize) -> bool {
        let fits = |used: usize, limit: usize| used == 0 || used + self.weight(id) <= limit;
        self.fits_slots(id)
            && (q == 0 || fits(self.pool_running[q], self.graph.pools[q - 1].depth as usize))
    }

    fn queue_of(&self, id: TaskId) -> usize {
        self.graph.task(id).pool.map_or(0, |p| p + 1)
    }

    /// The one place a task changes state; panics on a transition that the
    /// algorithm never makes.
    fn set(&mut self, id: TaskId, to: TaskState) {
        let from = self.states[id];
        use TaskState::*;
        let queue = self.queue_of(id);
        match (from, to) {
            (Waiting, Ready) => {
                let key = match self.policy {
                    Policy::CriticalPath | Policy::Speed => self.priority[id],
                    Policy::Fifo | Policy::Waves => u64::MAX - self.readied,
                };
                self.readied += 1;
                self.ready[queue].push((key, Reverse(id)));
                self.ready_count += 1;
            }
            (Ready, Running) => {
                self.running += 1;
                self.slots += self.weight(id);
                self.pool_running[queue] += self.weight(id);
                self.peak_running = self.peak_running.max(self.running);
            }
            (Running, Ready) => {
                self.running -= 1;
                self.slots -= self.weight(id);
                self.pool_running[queue] -= self.weight(id);
                self.ready[queue].push((u64::MAX, Reverse(id)));
                self.ready_count += 1;
            }
            (Running, Succeeded | Failed | Storing) => {
                self.running -= 1;
                self.slots -= self.weight(id);
                self.pool_running[queue] -= self.weight(id);
                self.storing += usize::from(to == Storing);
            }
            (Storing, Succeeded) => self.storing -= 1,
            // Ready tasks are only skipped when the build stops; the heap is
            // dropped then.
            (Waiting | Ready, Skipped(_)) => {}
            _ => panic!(
                "task {} cannot go from {from:?} to {to:?}",
                self.graph.task(id).id
            ),
        }
        self.states[id] = to;
    }

    /// The next task to start, if a slot is free and a task is ready whose
    /// pool has room. The task is marked running.
    pub fn start_next(&mut self) -> Option<TaskId> {
        self.start_next_if(|_, _| Ok(()))
    }

    /// [`Plan::start_next`], when `admit` also lets the task start (the
    /// machine has room for it; it is given the task and its slots); a task it holds back holds back the rest,
    /// as a head too heavy for the free slots does. See [`Plan::held`].
    pub fn start_next_if(
        &mut self,
        admit: impl FnMut(TaskId, usize) -> Result<(), Hold>,
    ) -> Option<TaskId> {
        if self.policy == Policy::Waves && self.running == 0 {
            self.wave_open = true;
        }
        let next = self.pick(admit);
        if next.is_none() {
            self.wave_open = false;
        }
        next
    }

    fn pick(&mut self, mut admit: impl FnMut(TaskId, usize) -> Result<(), Hold>) -> Option<TaskId> {
        self.held = None;
        if self.stopping || (self.policy == Policy::Waves && !self.wave_open) {
            return None;
        }
        let best = (0..self.ready.len())
            .filter_map(|q| self.ready[q].peek().map(|key| (*key, q)))
            .max()?;
        let (_, Reverse(best_id)) = best.0;
        if self.slots >= self.max_parallel {
            self.held = Some((best_id, Hold::Slots));
            return None;
        }
        // The best head among the queues whose pool has room.
        let Some((_, queue)) = (0..self.ready.len())
            .filter_map(|q| self.ready[q].peek().map(|key| (*key, q)))
            .filter(|&((_, Reverse(id)), q)| self.fits(id, q))
            .max()
        else {
            let pool_full = best.1 != 0 && self.fits_slots(best_id);
            let hold = if pool_full { Hold::Pool } else { Hold::Slots };
            self.held = Some((best_id, hold));
            return None;
        };
        let (_, Reverse(id)) = *self.ready[queue].peek().expect("peeked");
        if let Err(hold) = admit(id, self.weight(id)) {
            self.held = Some((id, hold));
            return None;
        }
        self.ready[queue].pop();
        self.ready_count -= 1;
        self.set(id, TaskState::Running);
        Some(id)
    }

    fn fits_slots(&self, id: TaskId) -> bool {
        self.slots == 0 || self.slots + self.weight(id) <= self.max_parallel
    }

    /// The best ready task and why it is not running, when the last
    /// attempt to start one started nothing although tasks were ready.
    pub fn held(&self) -> Option<(TaskId, Hold)> {
        self.held
    }

    /// A running task the kernel killed for memory goes back to the front
    /// of its queue, to run again alone.
    pub fn retry_alone(&mut self, id: TaskId) {
        self.set(id, TaskState::Ready);
        self.alone[id] = true;
    }

    /// Slots `id` takes: its weight, or every slot when it runs alone.
    pub fn slots_of(&self, id: TaskId) -> usize {
        self.weight(id)
    }

    /// A running task's process succeeded, but its dependents wait for
    /// [`Plan::finish`]: its slot is free for the next task now.
    pub fn exited(&mut self, id: TaskId) {
        self.set(id, TaskState::Storing);
    }

    /// Records the end of a running (or storing) task. Success makes dependents whose
    /// dependencies have all succeeded ready; failure skips every task
    /// downstream of it and, unless keep-going, stops the build.
    pub fn finish(&mut self, id: TaskId, success: bool) {
        if success {
            self.set(id, TaskState::Succeeded);
            for &d in &self.graph.dependents[id] {
                self.unmet[d] -= 1;
                if self.unmet[d] == 0 && self.states[d] == TaskState::Waiting {
                    self.set(d, TaskState::Ready);
                }
            }
            return;
        }
        self.set(id, TaskState::Failed);
        let mut stack = vec![id];
        while let Some(at) = stack.pop() {
            for &d in &self.graph.dependents[at] {
                if self.states[d] == TaskState::Waiting {
                    self.set(d, TaskState::Skipped(SkipReason::DependencyFailed(id)));
                    stack.push(d);
                }
            }
        }
        if !self.keep_going {
            self.stopping = true;
        }
    }

    /// Stops the build: nothing new starts, running tasks finish.
    pub fn interrupt(&mut self) {
        self.interrupted = true;
        self.stopping = true;
    }

    /// True when nothing runs or stores and nothing more will start.
    pub fn is_done(&self) -> bool {
        self.running == 0 && self.storing == 0 && (self.stopping || self.ready_count == 0)
    }

    /// Ends the plan: every task that never ran is skipped because the build
    /// stopped. Call once [`Plan::is_done`].
    pub fn close(&mut self) {
        debug_assert!(self.is_done());
        self.ready.iter_mut().for_each(BinaryHeap::clear);
        self.ready_count = 0;
        for id in self.graph.ids() {
            if !self.states[id].is_final() {
                let reason = if self.interrupted {
                    SkipReason::Interrupted
                } else {
                    SkipReason::BuildStopped
                };
                self.set(id, TaskState::Skipped(reason));
            }
        }
    }

    pub fn state(&self, id: TaskId) -> TaskState {
        self.states[id]
    }

    pub fn running(&self) -> usize {
        self.running
    }

    pub fn peak_running(&self) -> usize {
        self.peak_running
    }

    pub fn max_parallel(&self) -> usize {
        self.max_parallel
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(text: &str) -> Graph {
        Graph::parse(text).unwrap()
    }

    fn names(g: &Graph, ids: &[TaskId]) -> Vec<String> {
        ids.iter().map(|&id| g.task(id).id.clone()).collect()
    }

    fn plan(g: &Graph, max: usize, keep_going: bool) -> Plan<'_> {
        Plan::new(
            g,
            Policy::CriticalPath,
            remaining_path(g, |_| 1),
            max,
            keep_going,
        )
    }

    fn with<'g>(g: &'g Graph, policy: Policy, expected: &[u64], max: usize) -> Plan<'g> {
        Plan::new(g, policy, policy.priorities(g, expected), max, false)
    }

    /// Runs the plan to the end with every task succeeding, finishing the
    /// oldest running task first; returns the start order.
    fn start_order(mut p: Plan<'_>) -> Vec<TaskId> {
        let mut order = Vec::new();
        let mut running = std::collections::VecDeque::new();
        loop {
            while let Some(id) = p.start_next() {
                order.push(id);
                running.push_back(id);
            }
            let Some(id) = running.pop_front() else { break };
            p.finish(id, true);
        }
        order
    }

    /// A diamond with a long arm: a -> {b, c}, c -> d, {b, d} -> e; plus a
    /// lone task z.
    const DIAMOND: &str = r#"{"version":1,"tasks":[
        {"id":"z"},
        {"id":"a"},
        {"id":"b","deps":["a"]},
        {"id":"c","deps":["a"]},
        {"id":"d","deps":["c"]},
        {"id":"e","deps":["b","d"]}]}"#;

    #[test]
    fn remaining_path_counts_tasks() {
        let g = graph(DIAMOND);
        assert_eq!(remaining_path(&g, |_| 1).into_vec(), vec![1, 4, 2, 3, 2, 1]);
        let chain = longest_chain(&g, &remaining_path(&g, |_| 1));
        assert_eq!(names(&g, &chain), ["a", "c", "d", "e"]);
    }

    #[test]
    fn longest_path_starts_first_and_limit_holds() {
        let g = graph(DIAMOND);
        let mut p = plan(&g, 2, false);
        // a (path 4) before z (path 1); the limit of 2 is reached.
        let first: Vec<_> = std::iter::from_fn(|| p.start_next()).collect();
        assert_eq!(names(&g, &first), ["a", "z"]);
        assert_eq!(p.start_next(), None);
        p.finish(TaskId(1), true); // a
                                   // c (path 3) before b (path 2); one slot is free.
        assert_eq!(names(&g, &[p.start_next().unwrap()]), ["c"]);
        assert_eq!(p.start_next(), None);
        p.finish(TaskId(0), true); // z
        assert_eq!(names(&g, &[p.start_next().unwrap()]), ["b"]);
        p.finish(TaskId(3), true); // c
        assert_eq!(names(&g, &[p.start_next().unwrap()]), ["d"]);
        p.finish(TaskId(2), true);
        assert_eq!(p.start_next(), None, "e still waits for d");
        p.finish(TaskId(4), true);
        assert_eq!(names(&g, &[p.start_next().unwrap()]), ["e"]);
        assert!(!p.is_done());
        p.finish(TaskId(5), true);
        assert!(p.is_done());
        p.close();
        assert!(g.ids().all(|id| p.state(id) == TaskState::Succeeded));
        assert_eq!(p.peak_running(), 2);
    }

    #[test]
    fn durations_weight_the_critical_path() {
        // Two chains: x1 -> x2 (1 + 1 tasks) and y (one long task). By task
        // count x1 goes first; by duration y does.
        let g =
            graph(r#"{"version":1,"tasks":[{"id":"x1"},{"id":"x2","deps":["x1"]},{"id":"y"}]}"#);
        let count = start_order(with(&g, Policy::CriticalPath, &[1, 1, 1], 1));
        assert_eq!(names(&g, &count), ["x1", "x2", "y"]);
        let timed = start_order(with(&g, Policy::CriticalPath, &[10, 10, 50], 1));
        assert_eq!(names(&g, &timed), ["y", "x1", "x2"]);
        assert_eq!(
            remaining_path(&g, |id| [10, 10, 50][id.index()]).into_vec(),
            vec![20, 10, 50]
        );
    }

    #[test]
    fn speed_weights_are_bitbakes() {
        let g = graph(DIAMOND);
        // e final: 10; b, d: 11; c: 12; a: 1 + 11 + 12 = 24; z final: 10.
        assert_eq!(speed_weights(&g).into_vec(), vec![10, 24, 11, 12, 11, 10]);
        let order = start_order(with(&g, Policy::Speed, &[1; 6], 1));
        assert_eq!(names(&g, &order), ["a", "c", "b", "d", "z", "e"]);
    }

    #[test]
    fn fifo_starts_in_readiness_order() {
        let g = graph(DIAMOND);
        let order = start_order(with(&g, Policy::Fifo, &[1; 6], 1));
        assert_eq!(names(&g, &order), ["z", "a", "b", "c", "d", "e"]);
    }

    #[test]
    fn waves_wait_for_the_whole_batch() {
        let g = graph(r#"{"version":1,"tasks":[{"id":"1"},{"id":"2"},{"id":"3"},{"id":"4"}]}"#);
        let mut p = with(&g, Policy::Waves, &[1; 4], 2);
        assert_eq!(p.start_next(), Some(TaskId(0)));
        assert_eq!(p.start_next(), Some(TaskId(1)));
        assert_eq!(p.start_next(), None);
        p.finish(TaskId(0), true);
        assert_eq!(
            p.start_next(),
            None,
            "the slot stays empty until the batch ends"
        );
        p.finish(TaskId(1), true);
        assert_eq!(p.start_next(), Some(TaskId(2)));
        assert_eq!(p.start_next(), Some(TaskId(3)));
    }

    #[test]
    fn pools_cap_their_tasks_within_the_global_limit() {
        let g = graph(
            r#"{"version":1,"pools":{"fetch":2},"tasks":[
            {"id":"f1","pool":"fetch"},{"id":"f2","pool":"fetch"},{"id":"f3","pool":"fetch"},
            {"id":"c1"},{"id":"c2"}]}"#,
        );
        let mut p = plan(&g, 4, false);
        let started: Vec<_> = std::iter::from_fn(|| p.start_next()).collect();
        assert_eq!(
            names(&g, &started),
            ["f1", "f2", "c1", "c2"],
            "f3 waits for its pool"
        );
        p.finish(TaskId(3), true); // c1: a global slot frees, but fetch is full
        assert_eq!(p.start_next(), None);
        p.finish(TaskId(0), true); // f1
        assert_eq!(p.start_next(), Some(TaskId(2)));
    }

    #[test]
    fn ties_go_to_graph_order() {
        let g = graph(r#"{"version":1,"tasks":[{"id":"x"},{"id":"y"},{"id":"w"}]}"#);
        let mut p = plan(&g, 8, false);
        let order: Vec<_> = std::iter::from_fn(|| p.start_next()).collect();
        assert_eq!(names(&g, &order), ["x", "y", "w"]);
    }

    #[test]
    fn failure_stops_the_build_but_lets_running_tasks_finish() {
        let g = graph(DIAMOND);
        let mut p = plan(&g, 2, false);
        assert_eq!(p.start_next(), Some(TaskId(1))); // a
        assert_eq!(p.start_next(), Some(TaskId(0))); // z
        p.finish(TaskId(1), false);
        assert_eq!(p.start_next(), None);
        assert!(!p.is_done(), "z is still running");
        p.finish(TaskId(0), true);
        assert!(p.is_done());
        p.close();
        assert_eq!(p.state(TaskId(1)), TaskState::Failed);
        assert_eq!(p.state(TaskId(0)), TaskState::Succeeded);
        for id in 2..6 {
            assert_eq!(
                p.state(TaskId(id)),
                TaskState::Skipped(SkipReason::DependencyFailed(TaskId(1)))
            );
        }
    }

    #[test]
    fn without_keep_going_unrelated_ready_tasks_are_not_started() {
        let g = graph(DIAMOND);
        let mut p = plan(&g, 1, false);
        assert_eq!(p.start_next(), Some(TaskId(1))); // a; z waits
        p.finish(TaskId(1), false);
        assert!(p.is_done());
        p.close();
        assert_eq!(
            p.state(TaskId(0)),
            TaskState::Skipped(SkipReason::BuildStopped)
        );
    }

    #[test]
    fn policies_parse_by_name() {
        for p in Policy::ALL {
            assert_eq!(Policy::parse(p.name()), Some(p));
        }
        assert_eq!(Policy::parse("random"), None);
    }

    #[test]
    fn keep_going_runs_everything_not_downstream_of_a_failure() {
        let g = graph(DIAMOND);
        let mut p = plan(&g, 1, true);
        let mut ran = Vec::new();
        while !p.is_done() {
            let id = p.start_next().unwrap();
            ran.push(id);
            let fails = g.task(id).id == "c";
            p.finish(id, !fails);
        }
        p.close();
        assert_eq!(names(&g, &ran), ["a", "c", "b", "z"]);
        assert_eq!(
            p.state(TaskId(4)),
            TaskState::Skipped(SkipReason::DependencyFailed(TaskId(3)))
        );
        assert_eq!(
            p.state(TaskId(5)),
            TaskState::Skipped(SkipReason::DependencyFailed(TaskId(3)))
        );
        assert_eq!(p.state(TaskId(2)), TaskState::Succeeded);
        assert_eq!(p.peak_running(), 1);
    }

    #[test]
    fn a_free_slot_is_filled_at_once_not_after_a_wave() {
        // Four independent tasks at -j2: when one ends, the third starts
        // while the second still runs.
        let g = graph(r#"{"version":1,"tasks":[{"id":"1"},{"id":"2"},{"id":"3"},{"id":"4"}]}"#);
        let mut p = plan(&g, 2, false);
        assert_eq!(p.start_next(), Some(TaskId(0)));
        assert_eq!(p.start_next(), Some(TaskId(1)));
        p.finish(TaskId(0), true);
        assert_eq!(p.start_next(), Some(TaskId(2)));
        assert_eq!(p.running(), 2);
    }

    #[test]
    fn a_storing_task_frees_its_slot_but_holds_its_dependents() {
        let g =
            graph(r#"{"version":1,"tasks":[{"id":"a"},{"id":"b"},{"id":"after-a","deps":["a"]}]}"#);
        let mut p = plan(&g, 1, false);
        let a = p.start_next().unwrap();
        assert_eq!(names(&g, &[a]), ["a"]);
        p.exited(a);
        assert_eq!(p.state(a), TaskState::Storing);
        let b = p.start_next().expect("a's slot is free");
        assert_eq!(names(&g, &[b]), ["b"]);
        p.finish(b, true);
        assert_eq!(p.start_next(), None, "after-a waits for a's outputs");
        assert!(!p.is_done(), "a is still storing");
        p.finish(a, true);
        assert_eq!(names(&g, &[p.start_next().unwrap()]), ["after-a"]);
    }

    #[test]
    fn new_priorities_reorder_the_ready_tasks() {
        let g = graph(r#"{"version":1,"tasks":[{"id":"x"},{"id":"y"},{"id":"z"}]}"#);
        let mut p = with(&g, Policy::CriticalPath, &[3, 2, 1], 1);
        p.reprioritize(Policy::CriticalPath.priorities(&g, &[1, 2, 3]));
        assert_eq!(names(&g, &[p.start_next().unwrap()]), ["z"]);
    }

    #[test]
    fn a_weighted_task_takes_its_weight_in_slots() {
        let g = graph(
            r#"{"version":1,"tasks":[{"id":"big","weight":3},{"id":"a"},{"id":"b"},
               {"id":"huge","weight":9,"deps":["big"]}]}"#,
        );
        let mut p = with(&g, Policy::CriticalPath, &[10, 1, 1, 10], 4);
        let started: Vec<TaskId> = std::iter::from_fn(|| p.start_next()).collect();
        assert_eq!(names(&g, &started), ["big", "a"], "3 + 1 slots of 4");
        p.finish(started[1], true);
        assert_eq!(names(&g, &[p.start_next().unwrap()]), ["b"]);
        p.finish(started[0], true);
        assert_eq!(p.start_next(), None, "huge waits for every slot to be free");
        p.finish(TaskId(2), true);
        assert_eq!(
            names(&g, &[p.start_next().unwrap()]),
            ["huge"],
            "and runs alone"
        );
        assert_eq!(p.start_next(), None);
    }
}
