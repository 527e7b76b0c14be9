//! The task graph: tasks, their dependencies and the paths they name,
//! parsed and validated from the JSON format ([`Graph::parse`]). Around it:
//! path confinement ([`confine`]), overlapping paths ([`overlap`]), log
//! file names ([`lognames`]) and `bitbake -g` import ([`import`]).
//!
//! Knows the shape of tasks and their dependencies; knows nothing of
//! scheduling, processes or time.

pub mod confine;
mod error;
pub mod import;
pub mod lognames;
pub mod overlap;
mod parse;

pub use error::GraphError;
pub use parse::seconds_to_ms;

use std::collections::BTreeMap;

/// The graph format version this build understands.
pub const FORMAT_VERSION: u32 = 1;

/// The most tasks a graph may have.
pub const MAX_TASKS: usize = 1_000_000;
/// The longest task id, in bytes.
pub const MAX_ID_BYTES: usize = 4096;
/// The longest `run` text, `argv` in all, env value or path, in bytes.
pub const MAX_FIELD_BYTES: usize = 1 << 20;
/// The most slots one task may take.
pub const MAX_WEIGHT: u32 = 4096;

/// The directory runqueue keeps for itself inside the workspace.
pub const RESERVED: &str = ".runqueue";

/// Index of a task in [`Graph::tasks`]; dense, assigned in file order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskId(pub u32);

impl TaskId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// One value per task, indexed by [`TaskId`] (instead of a `Vec` indexed
/// by hand with `id.index()`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskMap<T>(Vec<T>);

impl<T> TaskMap<T> {
    /// `f(id)` for every task of `graph`.
    pub fn from_fn(graph: &Graph, f: impl FnMut(TaskId) -> T) -> TaskMap<T> {
        TaskMap(graph.ids().map(f).collect())
    }

    /// `f(id)` for every task of `graph`, or the first error.
    pub fn try_from_fn<E>(
        graph: &Graph,
        f: impl FnMut(TaskId) -> Result<T, E>,
    ) -> Result<TaskMap<T>, E> {
        graph.ids().map(f).collect::<Result<_, _>>().map(TaskMap)
    }

    /// `value` for every task of `graph`.
    pub fn filled(graph: &Graph, value: T) -> TaskMap<T>
    where
        T: Clone,
    {
        TaskMap(vec![value; graph.len()])
    }

    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        self.0.iter()
    }

    pub fn iter_mut(&mut self) -> std::slice::IterMut<'_, T> {
        self.0.iter_mut()
    }

    /// The values in task order.
    pub fn as_slice(&self) -> &[T] {
        &self.0
    }

    /// The values in task order.
    pub fn into_vec(self) -> Vec<T> {
        self.0
    }
}

impl<T> From<Vec<T>> for TaskMap<T> {
    /// Values already in task order.
    fn from(values: Vec<T>) -> TaskMap<T> {
        TaskMap(values)
    }
}

impl<T> std::ops::Index<TaskId> for TaskMap<T> {
    type Output = T;
    fn index(&self, id: TaskId) -> &T {
        &self.0[id.index()]
    }
}

impl<T> std::ops::IndexMut<TaskId> for TaskMap<T> {
    fn index_mut(&mut self, id: TaskId) -> &mut T {
        &mut self.0[id.index()]
    }
}

/// What a task executes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Shell text, run as `sh -c TEXT`.
    Shell(String),
    /// A program and its arguments, run directly.
    Argv(Vec<String>),
    /// Nothing to run (BitBake's `noexec`): succeeds at once.
    Nothing,
}

/// One validated task.
#[derive(Debug, Clone)]
pub struct Task {
    pub id: String,
    pub action: Action,
    /// Working directory relative to the workspace ("" is the root).
    pub cwd: String,
    /// The task's own environment, on top of the graph's.
    pub env: BTreeMap<String, String>,
    /// Direct dependencies, sorted and without duplicates.
    pub deps: Vec<TaskId>,
    /// Source files or directories (workspace-relative, normalized) whose
    /// content goes into the signature.
    pub inputs: Vec<String>,
    /// Files or directories (workspace-relative, normalized) the task
    /// produces; stored in and restored from the cache.
    pub outputs: Vec<String>,
    /// Never cached; dependents' signatures change on every run.
    pub nostamp: bool,
    /// Index into [`Graph::pools`] of the pool this task runs in.
    pub pool: Option<usize>,
    /// Kill the task (its whole process group) after this many ms.
    pub timeout_ms: Option<u64>,
    /// How many slots it takes, against `-j` and its pool (a `make -j4`,
    /// a parallel link); 1 unless the graph says.
    pub weight: u32,
    /// Its nested builds share the job slots through the jobserver;
    /// `"jobserver": false` keeps them out (they still take `weight`).
    pub jobserver: bool,
    /// Properties a remote machine must have to run it (REAPI platform
    /// properties); ignored by local runs.
    pub platform: BTreeMap<String, String>,
    /// It may reach the network (BitBake's `network` flag, `do_fetch`);
    /// other tasks run in an empty network namespace.
    pub network: bool,
}

/// A named limit on how many of its tasks run at once (BitBake's
/// `[number_threads]`, Ninja's pools).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    pub name: String,
    pub depth: u32,
}

/// A validated, acyclic task graph.
#[derive(Debug, Clone)]
pub struct Graph {
    /// Environment for every task.
    pub env: BTreeMap<String, String>,
    /// Pools, sorted by name.
    pub pools: Vec<Pool>,
    pub tasks: Vec<Task>,
    /// For each task, the tasks that depend on it directly, sorted.
    pub dependents: TaskMap<Vec<TaskId>>,
    /// All tasks, dependencies before dependents.
    pub topo_order: Vec<TaskId>,
}

/// Checks that `path` is relative and stays inside the directory it is
/// relative to, without looking at the file system (the host checks
/// symlinks). "" and "." mean the directory itself.
pub fn is_contained(path: &str) -> bool {
    normalize(path).is_some()
}

/// `path` with `.`, `..` and repeated slashes resolved, or `None` if it is
/// absolute or climbs above its start. "" is the start itself.
pub fn normalize(path: &str) -> Option<String> {
    if path.starts_with('/') || path.starts_with('\\') || path.contains('\0') {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            _ => parts.push(part),
        }
    }
    Some(parts.join("/"))
}

/// True if `inner` is `outer` or lies below it (both normalized).
pub fn is_within(inner: &str, outer: &str) -> bool {
    outer.is_empty()
        || inner == outer
        || (inner.starts_with(outer) && inner.as_bytes().get(outer.len()) == Some(&b'/'))
}

impl Graph {
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// The declared outputs of every task `id` depends on, directly or
    /// not, sorted and without duplicates.
    pub fn upstream_outputs(&self, id: TaskId) -> Vec<String> {
        let mut seen = vec![false; self.tasks.len()];
        let mut stack = self.task(id).deps.clone();
        let mut out = Vec::new();
        while let Some(d) = stack.pop() {
            if std::mem::replace(&mut seen[d.0 as usize], true) {
                continue;
            }
            out.extend(self.task(d).outputs.iter().cloned());
            stack.extend(self.task(d).deps.iter().copied());
        }
        out.sort();
        out.dedup();
        out
    }

    pub fn task(&self, id: TaskId) -> &Task {
        &self.tasks[id.index()]
    }

    pub fn ids(&self) -> impl Iterator<Item = TaskId> {
        (0..self.tasks.len() as u32).map(TaskId)
    }

    pub fn edge_count(&self) -> usize {
        self.tasks.iter().map(|t| t.deps.len()).sum()
    }
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        Graph::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn parses_a_small_graph() {
        let g = Graph::parse(
            r#"{"version":1,"env":{"LANG":"C"},"tasks":[
                {"id":"a:do_fetch","run":"true"},
                {"id":"a:do_compile","deps":["a:do_fetch"],"argv":["make","-j4"],"cwd":"work/a","env":{"CC":"gcc"}},
                {"id":"a:do_build","deps":["a:do_compile","a:do_fetch"]}]}"#,
        )
        .unwrap();
        assert_eq!(g.len(), 3);
        assert_eq!(g.edge_count(), 3);
        assert_eq!(
            g.tasks[1].action,
            Action::Argv(vec!["make".into(), "-j4".into()])
        );
        assert_eq!(g.tasks[2].action, Action::Nothing);
        assert_eq!(g.tasks[2].deps, vec![TaskId(0), TaskId(1)]);
        assert_eq!(g.dependents[TaskId(0)], vec![TaskId(1), TaskId(2)]);
        assert_eq!(g.topo_order, vec![TaskId(0), TaskId(1), TaskId(2)]);
        assert_eq!(g.env["LANG"], "C");
    }

    #[test]
    fn reports_a_cycle_path() {
        let text = r#"{"version":1,"tasks":[
            {"id":"root","run":"true"},
            {"id":"a","deps":["root","c"],"run":"true"},
            {"id":"b","deps":["a"],"run":"true"},
            {"id":"c","deps":["b"],"run":"true"},
            {"id":"after","deps":["c"],"run":"true"}]}"#;
        assert_eq!(err(text), "dependency cycle: a -> c -> b -> a");
    }

    #[test]
    fn reports_a_two_task_cycle_reached_from_outside() {
        let text = r#"{"version":1,"tasks":[
            {"id":"x","deps":["y"]},{"id":"y","deps":["z"]},{"id":"z","deps":["y"]}]}"#;
        assert_eq!(err(text), "dependency cycle: y -> z -> y");
    }

    #[test]
    fn names_bad_ids() {
        assert_eq!(
            err(r#"{"version":1,"tasks":[{"id":"a","deps":["nope"]}]}"#),
            "task \"a\" depends on unknown task \"nope\""
        );
        assert_eq!(
            err(r#"{"version":1,"tasks":[{"id":"a"},{"id":"a"}]}"#),
            "duplicate task id \"a\""
        );
        assert_eq!(
            err(r#"{"version":1,"tasks":[{"id":"a"},{"id":""}]}"#),
            "task #1 has an empty id"
        );
        assert_eq!(
            err(r#"{"version":1,"tasks":[{"id":"a","deps":["a"]}]}"#),
            "task \"a\" depends on itself"
        );
        assert_eq!(
            err(r#"{"version":1,"tasks":[{"id":"a","run":"x","argv":["y"]}]}"#),
            "task \"a\" has both \"run\" and \"argv\"; give one"
        );
        assert_eq!(
            err(r#"{"version":1,"tasks":[{"id":"a","argv":[]}]}"#),
            "task \"a\" has an empty \"argv\""
        );
        assert_eq!(
            err(r#"{"version":2,"tasks":[]}"#),
            "unsupported graph version 2 (this runqueue reads version 1)"
        );
    }

    #[test]
    fn refuses_unknown_fields_and_wrong_types() {
        assert_eq!(
            err(r#"{"version":1,"tasks":[{"id":"a","rnu":"true"}]}"#),
            "malformed graph: unknown field `rnu`, expected one of `id`, `deps`, `run`, `argv`, `cwd`, `env`, `inputs`, `outputs`, `nostamp`, `pool`, `timeout`, `weight`, `jobserver`, `platform`, `network` at line 1 column 37"
        );
        assert_eq!(
            err(r#"{"version":1,"tasks":[{"id":7}]}"#),
            "malformed graph: invalid type: integer `7`, expected a string at line 1 column 29"
        );
        assert_eq!(
            err(r#"{"version":1,"tasks":["#),
            "malformed graph: EOF while parsing a list at line 1 column 22"
        );
    }

    #[test]
    fn refuses_paths_that_leave_the_workspace() {
        assert_eq!(
            err(r#"{"version":1,"tasks":[{"id":"a","cwd":"work/../../etc"}]}"#),
            "task \"a\": cwd \"work/../../etc\" leaves the workspace (use a relative path without \"..\")"
        );
        assert!(Graph::parse(r#"{"version":1,"tasks":[{"id":"a","cwd":"/tmp"}]}"#).is_err());
        assert!(Graph::parse(r#"{"version":1,"tasks":[{"id":"a","cwd":"w/x/../y"}]}"#).is_ok());
    }

    #[test]
    fn normalizes_inputs_and_outputs_and_refuses_escapes() {
        let g = Graph::parse(
            r#"{"version":1,"tasks":[{"id":"a","inputs":["src/./a.c","src//b"],"outputs":["out/x/../y"],"nostamp":true}]}"#,
        )
        .unwrap();
        assert_eq!(g.tasks[0].inputs, ["src/a.c", "src/b"]);
        assert_eq!(g.tasks[0].outputs, ["out/y"]);
        assert!(g.tasks[0].nostamp);
        assert_eq!(
            err(r#"{"version":1,"tasks":[{"id":"a","outputs":["../x"]}]}"#),
            "task \"a\": output \"../x\" leaves the workspace (use a relative path without \"..\")"
        );
        assert_eq!(
            err(r#"{"version":1,"tasks":[{"id":"a","outputs":["/etc/passwd"]}]}"#),
            "task \"a\": output \"/etc/passwd\" leaves the workspace (use a relative path without \"..\")"
        );
        assert_eq!(
            err(r#"{"version":1,"tasks":[{"id":"a","inputs":["."]}]}"#),
            "task \"a\": input \".\" is the workspace itself; name a file or directory inside it"
        );
    }

    #[test]
    fn absurd_sizes_are_named() {
        let long_run = "x".repeat(MAX_FIELD_BYTES + 1);
        assert_eq!(
            err(&format!(
                r#"{{"version":1,"tasks":[{{"id":"a","run":"{long_run}"}}]}}"#
            )),
            "task \"a\": run is longer than 1048576 bytes"
        );
        let long_id = "i".repeat(MAX_ID_BYTES + 1);
        assert_eq!(
            err(&format!(
                r#"{{"version":1,"tasks":[{{"id":"ok"}},{{"id":"{long_id}"}}]}}"#
            )),
            "task #1: id is longer than 4096 bytes"
        );
    }

    #[test]
    fn timeouts_are_positive_seconds() {
        let g = Graph::parse(r#"{"version":1,"tasks":[{"id":"a","timeout":0.25},{"id":"b"}]}"#)
            .unwrap();
        assert_eq!(g.tasks[0].timeout_ms, Some(250));
        assert_eq!(g.tasks[1].timeout_ms, None);
        assert_eq!(
            err(r#"{"version":1,"tasks":[{"id":"a","timeout":-1}]}"#),
            "task \"a\": \"timeout\" must be a positive number of seconds below 1e9"
        );
    }

    #[test]
    fn weights_are_whole_slots() {
        let g =
            Graph::parse(r#"{"version":1,"tasks":[{"id":"a","weight":4},{"id":"b"}]}"#).unwrap();
        assert_eq!((g.tasks[0].weight, g.tasks[1].weight), (4, 1));
        for bad in ["0", "4097"] {
            assert_eq!(
                err(&format!(
                    r#"{{"version":1,"tasks":[{{"id":"a","weight":{bad}}}]}}"#
                )),
                "task \"a\": \"weight\" must be a whole number of slots from 1 to 4096"
            );
        }
    }

    #[test]
    fn pools_are_defined_before_use() {
        let g = Graph::parse(
            r#"{"version":1,"pools":{"fetch":2,"big":1},"tasks":[{"id":"a","pool":"fetch"},{"id":"b"}]}"#,
        )
        .unwrap();
        assert_eq!(
            g.pools[g.tasks[0].pool.unwrap()],
            Pool {
                name: "fetch".into(),
                depth: 2
            }
        );
        assert_eq!(g.tasks[1].pool, None);
        assert_eq!(
            err(r#"{"version":1,"tasks":[{"id":"a","pool":"net"}]}"#),
            "task \"a\" uses pool \"net\", which the graph's \"pools\" does not define"
        );
        assert_eq!(
            err(r#"{"version":1,"pools":{"net":0},"tasks":[]}"#),
            "pool \"net\" has depth 0; give it at least 1"
        );
    }

    #[test]
    fn refuses_inputs_inside_outputs() {
        assert_eq!(
            err(r#"{"version":1,"tasks":[{"id":"gen","outputs":["build/gen"]},{"id":"use","deps":["gen"],"inputs":["build/gen/x.h"]}]}"#),
            "task \"use\": input \"build/gen/x.h\" is inside output \"build/gen\" of task \"gen\"; \
             list only source files as inputs and depend on \"gen\" instead"
        );
        assert!(Graph::parse(
            r#"{"version":1,"tasks":[{"id":"gen","outputs":["build/gen"]},{"id":"use","inputs":["build/generic.h","build/ge"]}]}"#
        )
        .is_ok());
    }

    #[test]
    fn containment_is_lexical() {
        assert!(is_within("a/b", "a"));
        assert!(is_within("a", "a"));
        assert!(!is_within("ab", "a"));
        assert!(is_contained(""));
        assert!(is_contained("a/./b/.."));
        assert!(!is_contained(".."));
        assert!(!is_contained("a/../.."));
        assert!(!is_contained("/a"));
    }

    #[test]
    fn refuses_text_no_process_can_take() {
        assert_eq!(
            err(r#"{"version":1,"tasks":[{"id":"a","run":"x\u0000y"}]}"#),
            "task \"a\": run contains a NUL byte"
        );
        assert_eq!(
            err(r#"{"version":1,"tasks":[{"id":"a","argv":["x","\u0000"]}]}"#),
            "task \"a\": argv contains a NUL byte"
        );
        assert_eq!(
            err(r#"{"version":1,"tasks":[{"id":"a","outputs":["o\u0000"]}]}"#),
            "task \"a\": an output contains a NUL byte"
        );
        assert_eq!(
            err(r#"{"version":1,"tasks":[{"id":"ok"},{"id":"a\nb"}]}"#),
            "task #1: id contains a control character"
        );
        assert_eq!(
            err(r#"{"version":1,"tasks":[{"id":"a","env":{"A=B":"1"}}]}"#),
            "task \"a\": env name \"A=B\" is not usable (names are non-empty, without \"=\" or NUL)"
        );
        assert_eq!(
            err(r#"{"version":1,"env":{"":"1"},"tasks":[]}"#),
            "env name \"\" is not usable (names are non-empty, without \"=\" or NUL)"
        );
        assert_eq!(
            err(r#"{"version":1,"env":{"A":"\u0000"},"tasks":[]}"#),
            "the graph's env: an env value contains a NUL byte"
        );
    }

    #[test]
    fn a_long_cycle_is_named_by_its_ends() {
        let n = 1000;
        let tasks: Vec<String> = (0..n)
            .map(|i| format!(r#"{{"id":"t{i}","deps":["t{}"]}}"#, (i + 1) % n))
            .collect();
        let text = format!(r#"{{"version":1,"tasks":[{}]}}"#, tasks.join(","));
        assert_eq!(
            err(&text),
            "dependency cycle of 1000 tasks: t0 -> t1 -> t2 -> t3 -> t4 -> ... (991 more) ... \
             -> t996 -> t997 -> t998 -> t999 -> t0"
        );
    }
}
