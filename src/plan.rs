//! The plan: which task may start next, and what a task's end means for the
//! rest of the graph.
//!
//! A dynamic ready queue, never waves: whenever a slot is free the ready task
//! with the longest remaining path starts. Knows task states and priorities;
//! knows nothing of processes, clocks or the WIT types, so it runs the same
//! natively, in the component and in simulations.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::graph::{Graph, TaskId};

/// Where a task is. Every change goes through [`Plan::set`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    /// Some dependency has not succeeded yet.
    Waiting,
    /// Every dependency succeeded; queued for a slot.
    Ready,
    /// Started; holds a slot until it finishes.
    Running,
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
}

impl TaskState {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            TaskState::Succeeded | TaskState::Failed | TaskState::Skipped(_)
        )
    }
}

/// The longest remaining path from each task to any final task, counting the
/// task itself: `weight(t) + max(path(d) for d depending on t)`. A ready task
/// with a longer path starts first.
pub fn remaining_path(graph: &Graph, weight: impl Fn(TaskId) -> u64) -> Vec<u64> {
    let mut path = vec![0u64; graph.len()];
    for &id in graph.topo_order.iter().rev() {
        let longest_after = graph.dependents[id.index()]
            .iter()
            .map(|d| path[d.index()])
            .max()
            .unwrap_or(0);
        path[id.index()] = weight(id) + longest_after;
    }
    path
}

/// The chain of tasks along the longest path, first task first; ties go to
/// the task earlier in the graph.
pub fn longest_chain(graph: &Graph, path: &[u64]) -> Vec<TaskId> {
    let best = |ids: &mut dyn Iterator<Item = TaskId>| {
        ids.max_by_key(|id| (path[id.index()], Reverse(*id)))
    };
    let mut chain = Vec::new();
    let mut at = best(&mut graph.ids().filter(|id| graph.task(*id).deps.is_empty()));
    while let Some(id) = at {
        chain.push(id);
        at = best(&mut graph.dependents[id.index()].iter().copied());
    }
    chain
}

/// The scheduling state of one run.
pub struct Plan<'g> {
    graph: &'g Graph,
    states: Vec<TaskState>,
    /// Dependencies of each task that have not succeeded yet.
    unmet: Vec<u32>,
    priority: Vec<u64>,
    /// Ready tasks, longest remaining path first, then graph order.
    ready: BinaryHeap<(u64, Reverse<TaskId>)>,
    running: usize,
    peak_running: usize,
    max_parallel: usize,
    keep_going: bool,
    /// Set by the first failure unless keep-going: start nothing new.
    stopping: bool,
}

impl<'g> Plan<'g> {
    /// A plan with every task waiting and the roots ready. `priority` is
    /// indexed by task; `max_parallel` is at least 1.
    pub fn new(
        graph: &'g Graph,
        priority: Vec<u64>,
        max_parallel: usize,
        keep_going: bool,
    ) -> Self {
        assert_eq!(priority.len(), graph.len());
        let mut plan = Plan {
            graph,
            states: vec![TaskState::Waiting; graph.len()],
            unmet: graph.tasks.iter().map(|t| t.deps.len() as u32).collect(),
            priority,
            ready: BinaryHeap::new(),
            running: 0,
            peak_running: 0,
            max_parallel: max_parallel.max(1),
            keep_going,
            stopping: false,
        };
        for id in graph.ids() {
            if plan.unmet[id.index()] == 0 {
                plan.set(id, TaskState::Ready);
            }
        }
        plan
    }

    /// The one place a task changes state; panics on a transition that the
    /// algorithm never makes.
    fn set(&mut self, id: TaskId, to: TaskState) {
        let from = self.states[id.index()];
        use TaskState::*;
        match (from, to) {
            (Waiting, Ready) => self.ready.push((self.priority[id.index()], Reverse(id))),
            (Ready, Running) => {
                self.running += 1;
                self.peak_running = self.peak_running.max(self.running);
            }
            (Running, Succeeded | Failed) => self.running -= 1,
            // Ready tasks are only skipped when the build stops; the heap is
            // dropped then.
            (Waiting | Ready, Skipped(_)) => {}
            _ => panic!(
                "task {} cannot go from {from:?} to {to:?}",
                self.graph.task(id).id
            ),
        }
        self.states[id.index()] = to;
    }

    /// The next task to start, if a slot is free and a task is ready. The
    /// task is marked running.
    pub fn start_next(&mut self) -> Option<TaskId> {
        if self.stopping || self.running >= self.max_parallel {
            return None;
        }
        let (_, Reverse(id)) = self.ready.pop()?;
        self.set(id, TaskState::Running);
        Some(id)
    }

    /// Records the end of a running task. Success makes dependents whose
    /// dependencies have all succeeded ready; failure skips every task
    /// downstream of it and, unless keep-going, stops the build.
    pub fn finish(&mut self, id: TaskId, success: bool) {
        if success {
            self.set(id, TaskState::Succeeded);
            for &d in &self.graph.dependents[id.index()] {
                self.unmet[d.index()] -= 1;
                if self.unmet[d.index()] == 0 && self.states[d.index()] == TaskState::Waiting {
                    self.set(d, TaskState::Ready);
                }
            }
            return;
        }
        self.set(id, TaskState::Failed);
        let mut stack = vec![id];
        while let Some(at) = stack.pop() {
            for &d in &self.graph.dependents[at.index()] {
                if self.states[d.index()] == TaskState::Waiting {
                    self.set(d, TaskState::Skipped(SkipReason::DependencyFailed(id)));
                    stack.push(d);
                }
            }
        }
        if !self.keep_going {
            self.stopping = true;
        }
    }

    /// True when nothing runs and nothing more will start.
    pub fn is_done(&self) -> bool {
        self.running == 0 && (self.stopping || self.ready.is_empty())
    }

    /// Ends the plan: every task that never ran is skipped because the build
    /// stopped. Call once [`Plan::is_done`].
    pub fn close(&mut self) {
        debug_assert!(self.is_done());
        self.ready.clear();
        for id in self.graph.ids() {
            if !self.states[id.index()].is_final() {
                self.set(id, TaskState::Skipped(SkipReason::BuildStopped));
            }
        }
    }

    pub fn state(&self, id: TaskId) -> TaskState {
        self.states[id.index()]
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
        Plan::new(g, remaining_path(g, |_| 1), max, keep_going)
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
        assert_eq!(remaining_path(&g, |_| 1), vec![1, 4, 2, 3, 2, 1]);
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
}
