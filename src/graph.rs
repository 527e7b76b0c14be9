//! The task graph: parsing the JSON format and validating it.
//!
//! Knows the shape of tasks and their dependencies; knows nothing of
//! scheduling, processes or time.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::Deserialize;

/// The graph format version this build understands.
pub const FORMAT_VERSION: u32 = 1;

/// The most tasks a graph may have.
pub const MAX_TASKS: usize = 1_000_000;
/// The longest task id, in bytes.
pub const MAX_ID_BYTES: usize = 4096;
/// The longest `run` text, `argv` in all, env value or path, in bytes.
pub const MAX_FIELD_BYTES: usize = 1 << 20;

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

/// The graph file as written, before validation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GraphFile {
    version: u32,
    #[serde(default, deserialize_with = "unique_keys")]
    env: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "unique_keys")]
    pools: BTreeMap<String, u32>,
    tasks: Vec<TaskFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskFile {
    id: String,
    #[serde(default)]
    deps: Vec<String>,
    run: Option<String>,
    argv: Option<Vec<String>>,
    #[serde(default)]
    cwd: String,
    #[serde(default, deserialize_with = "unique_keys")]
    env: BTreeMap<String, String>,
    #[serde(default)]
    inputs: Vec<String>,
    #[serde(default)]
    outputs: Vec<String>,
    #[serde(default)]
    nostamp: bool,
    pool: Option<String>,
    timeout: Option<f64>,
    weight: Option<u32>,
    jobserver: Option<bool>,
    #[serde(default, deserialize_with = "unique_keys")]
    platform: BTreeMap<String, String>,
}

/// A JSON object as a map, refusing a key given twice (serde keeps the
/// last one silently, while a duplicate field is refused).
fn unique_keys<'de, D, V>(d: D) -> Result<BTreeMap<String, V>, D::Error>
where
    D: serde::Deserializer<'de>,
    V: Deserialize<'de>,
{
    struct Unique<V>(std::marker::PhantomData<V>);
    impl<'de, V: Deserialize<'de>> serde::de::Visitor<'de> for Unique<V> {
        type Value = BTreeMap<String, V>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a map")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some((key, value)) = map.next_entry::<String, V>()? {
                if out.contains_key(&key) {
                    return Err(serde::de::Error::custom(format_args!(
                        "duplicate key `{key}`"
                    )));
                }
                out.insert(key, value);
            }
            Ok(out)
        }
    }
    d.deserialize_map(Unique(std::marker::PhantomData))
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

/// Why a graph text was refused. Each variant names what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GraphError {
    /// Not JSON, or JSON of the wrong shape (wrong type, unknown field,
    /// missing field); serde's message with line and column.
    Syntax(String),
    Version(u32),
    EmptyId {
        index: usize,
    },
    DuplicateId(String),
    UnknownDep {
        task: String,
        dep: String,
    },
    SelfDep(String),
    /// A cycle, as the ids along it with the first repeated at the end.
    Cycle(Vec<String>),
    BothRunAndArgv(String),
    EmptyArgv(String),
    /// A text field a process cannot be given (a NUL byte), or an id with a
    /// control character: where (`task "a"`, `task #3`, `the graph's
    /// env`), field, problem.
    BadText {
        place: String,
        field: &'static str,
        problem: &'static str,
    },
    /// An environment name that is empty or holds `=` or a NUL byte; `task`
    /// is `None` for the graph's own `env`.
    BadEnvName {
        task: Option<String>,
        name: String,
    },
    /// A path field that names the workspace itself ("" or ".").
    PathIsWorkspace {
        task: String,
        field: &'static str,
        path: String,
    },
    /// A path field that is absolute or climbs out of the workspace.
    PathEscapes {
        task: String,
        field: &'static str,
        path: String,
    },
    UnknownPool {
        task: String,
        pool: String,
    },
    EmptyPool(String),
    BadTimeout(String),
    /// A task's weight is 0 or above [`MAX_WEIGHT`].
    BadWeight(String),
    TooManyTasks(usize),
    /// A field longer than its limit: task (or index), field, limit.
    TooLong {
        place: String,
        field: &'static str,
        limit: usize,
    },
    /// An input lies inside another task's output: depend on that task
    /// instead, its signature covers its outputs.
    InputIsOutput {
        task: String,
        input: String,
        producer: String,
        output: String,
    },
    /// Two outputs are the same path, or one is inside the other, and
    /// neither task depends on the other.
    OutputsOverlap {
        task: String,
        output: String,
        other: String,
        other_output: String,
    },
    /// An output lies inside some task's input.
    OutputInInput {
        task: String,
        output: String,
        reader: String,
        input: String,
    },
    /// A path inside the directory runqueue keeps for itself.
    Reserved {
        task: String,
        field: &'static str,
        path: String,
    },
    /// The text starts with a UTF-8 byte order mark.
    ByteOrderMark,
}

impl fmt::Display for GraphError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GraphError::Syntax(msg) => write!(f, "malformed graph: {msg}"),
            GraphError::Version(v) => write!(
                f,
                "unsupported graph version {v} (this runqueue reads version {FORMAT_VERSION})"
            ),
            GraphError::EmptyId { index } => write!(f, "task #{index} has an empty id"),
            GraphError::DuplicateId(id) => write!(f, "duplicate task id \"{id}\""),
            GraphError::UnknownDep { task, dep } => {
                write!(f, "task \"{task}\" depends on unknown task \"{dep}\"")
            }
            GraphError::SelfDep(id) => write!(f, "task \"{id}\" depends on itself"),
            GraphError::Cycle(path) if path.len() > 2 * CYCLE_SHOWN => write!(
                f,
                "dependency cycle of {} tasks: {} -> ... ({} more) ... -> {}",
                path.len() - 1,
                path[..CYCLE_SHOWN].join(" -> "),
                path.len() - 2 * CYCLE_SHOWN,
                path[path.len() - CYCLE_SHOWN..].join(" -> ")
            ),
            GraphError::Cycle(path) => write!(f, "dependency cycle: {}", path.join(" -> ")),
            GraphError::BadText {
                place,
                field,
                problem,
            } => write!(f, "{place}: {field} {problem}"),
            GraphError::BadEnvName { task, name } => write!(
                f,
                "{}env name \"{}\" is not usable (names are non-empty, without \"=\" or NUL)",
                task.as_ref()
                    .map_or(String::new(), |t| format!("task \"{t}\": ")),
                name.escape_debug()
            ),
            GraphError::BothRunAndArgv(id) => {
                write!(f, "task \"{id}\" has both \"run\" and \"argv\"; give one")
            }
            GraphError::EmptyArgv(id) => write!(f, "task \"{id}\" has an empty \"argv\""),
            GraphError::UnknownPool { task, pool } => write!(
                f,
                "task \"{task}\" uses pool \"{pool}\", which the graph's \"pools\" does not define"
            ),
            GraphError::TooManyTasks(n) => {
                write!(f, "the graph has {n} tasks; the limit is {MAX_TASKS}")
            }
            GraphError::TooLong {
                place,
                field,
                limit,
            } => {
                write!(f, "{place}: {field} is longer than {limit} bytes")
            }
            GraphError::BadTimeout(task) => write!(
                f,
                "task \"{task}\": \"timeout\" must be a positive number of seconds below 1e9"
            ),
            GraphError::BadWeight(task) => write!(
                f,
                "task \"{task}\": \"weight\" must be a whole number of slots from 1 to {MAX_WEIGHT}"
            ),
            GraphError::EmptyPool(name) => {
                write!(f, "pool \"{name}\" has depth 0; give it at least 1")
            }
            GraphError::ByteOrderMark => write!(
                f,
                "the graph starts with a UTF-8 byte order mark; save it as UTF-8 without one"
            ),
            paths => fmt_paths(paths, f),
        }
    }
}

/// The errors about task paths, in words.
fn fmt_paths(e: &GraphError, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match e {
        GraphError::PathIsWorkspace { task, field, path } => write!(
            f,
            "task \"{task}\": {field} \"{path}\" is the workspace itself; name a file or directory inside it"
        ),
        GraphError::PathEscapes { task, field, path } => write!(
            f,
            "task \"{task}\": {field} \"{path}\" leaves the workspace (use a relative path without \"..\")"
        ),
        GraphError::InputIsOutput {
            task,
            input,
            producer,
            output,
        } => write!(
            f,
            "task \"{task}\": input \"{input}\" is inside output \"{output}\" of task \"{producer}\"; \
             list only source files as inputs and depend on \"{producer}\" instead"
        ),
        GraphError::OutputsOverlap {
            task,
            output,
            other,
            other_output,
        } if output == other_output => write!(
            f,
            "task \"{task}\": output \"{output}\" is also an output of task \"{other}\", and neither task depends on the other: \
             their writes would race"
        ),
        GraphError::OutputsOverlap {
            task,
            output,
            other,
            other_output,
        } => write!(
            f,
            "task \"{task}\": output \"{output}\" is inside output \"{other_output}\" of task \"{other}\", and neither task \
             depends on the other: their writes would race"
        ),
        GraphError::OutputInInput {
            task,
            output,
            reader,
            input,
        } => write!(
            f,
            "task \"{task}\": output \"{output}\" is inside input \"{input}\" of task \"{reader}\"; \
             inputs are source files that no task writes"
        ),
        GraphError::Reserved { task, field, path } => write!(
            f,
            "task \"{task}\": {field} \"{path}\" is inside \"{}\", which runqueue keeps for its cache and logs",
            crate::overlap::RESERVED
        ),
        _ => unreachable!("every other error is written by Display"),
    }
}

impl std::error::Error for GraphError {}

/// How many ids at each end of a long cycle its message shows.
const CYCLE_SHOWN: usize = 5;

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

/// Normalizes every path of a path-list field, refusing ones that leave the
/// workspace or name the workspace itself.
fn paths(task: &str, field: &'static str, list: &[String]) -> Result<Vec<String>, GraphError> {
    list.iter()
        .map(|p| match normalize(p) {
            Some(n) if !n.is_empty() => Ok(n),
            Some(_) => Err(GraphError::PathIsWorkspace {
                task: task.to_string(),
                field,
                path: p.clone(),
            }),
            None => Err(GraphError::PathEscapes {
                task: task.to_string(),
                field,
                path: p.clone(),
            }),
        })
        .collect()
}

impl Graph {
    /// Parses and validates the JSON text of a graph.
    pub fn parse(text: &str) -> Result<Graph, GraphError> {
        if text.starts_with('\u{feff}') {
            return Err(GraphError::ByteOrderMark);
        }
        let start = text.trim_start_matches([' ', '\t', '\n', '\r']);
        if !start.is_empty() && !start.starts_with('{') {
            return Err(GraphError::Syntax(
                "expected a JSON object {\"version\": 1, \"tasks\": [...]} at the top".into(),
            ));
        }
        let file: GraphFile =
            serde_json::from_str(text).map_err(|e| GraphError::Syntax(e.to_string()))?;
        Graph::from_file(file)
    }

    fn from_file(file: GraphFile) -> Result<Graph, GraphError> {
        check_file(&file)?;
        let index = index_ids(&file.tasks)?;
        let pools = pools_of(&file.pools)?;
        let tasks = file
            .tasks
            .iter()
            .map(|t| task_of(t, &index, &pools))
            .collect::<Result<Vec<_>, _>>()?;
        crate::overlap::check(&tasks)?;
        let mut dependents = vec![Vec::new(); tasks.len()];
        for (i, t) in tasks.iter().enumerate() {
            for d in &t.deps {
                dependents[d.index()].push(TaskId(i as u32));
            }
        }
        let topo_order = topo_sort(&tasks, &dependents)?;
        Ok(Graph {
            env: file.env,
            pools,
            tasks,
            dependents: TaskMap(dependents),
            topo_order,
        })
    }

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

/// The checks that need no task index: version, size, lengths and text.
fn check_file(file: &GraphFile) -> Result<(), GraphError> {
    if file.version != FORMAT_VERSION {
        return Err(GraphError::Version(file.version));
    }
    if file.tasks.len() > MAX_TASKS {
        return Err(GraphError::TooManyTasks(file.tasks.len()));
    }
    check_graph_lengths(file)?;
    check_env_names(None, &file.env)?;
    for (i, t) in file.tasks.iter().enumerate() {
        check_lengths(i, t)?;
        check_text(i, t)?;
    }
    Ok(())
}

/// Each id's [`TaskId`], refusing empty and duplicate ids.
fn index_ids(tasks: &[TaskFile]) -> Result<HashMap<&str, TaskId>, GraphError> {
    let mut index = HashMap::with_capacity(tasks.len());
    for (i, t) in tasks.iter().enumerate() {
        if t.id.is_empty() {
            return Err(GraphError::EmptyId { index: i });
        }
        if index.insert(t.id.as_str(), TaskId(i as u32)).is_some() {
            return Err(GraphError::DuplicateId(t.id.clone()));
        }
    }
    Ok(index)
}

/// The pools, sorted by name; a depth of 0 is refused.
fn pools_of(pools: &BTreeMap<String, u32>) -> Result<Vec<Pool>, GraphError> {
    pools
        .iter()
        .map(|(name, &depth)| match depth {
            0 => Err(GraphError::EmptyPool(name.clone())),
            depth => Ok(Pool {
                name: name.clone(),
                depth,
            }),
        })
        .collect()
}

/// One task as written, validated against the ids and pools.
fn task_of(
    t: &TaskFile,
    index: &HashMap<&str, TaskId>,
    pools: &[Pool],
) -> Result<Task, GraphError> {
    let deps = deps_of(t, index)?;
    let action = action_of(t)?;
    if !is_contained(&t.cwd) {
        return Err(GraphError::PathEscapes {
            task: t.id.clone(),
            field: "cwd",
            path: t.cwd.clone(),
        });
    }
    Ok(Task {
        id: t.id.clone(),
        action,
        cwd: t.cwd.clone(),
        env: t.env.clone(),
        deps,
        inputs: paths(&t.id, "input", &t.inputs)?,
        outputs: paths(&t.id, "output", &t.outputs)?,
        nostamp: t.nostamp,
        timeout_ms: timeout_of(t)?,
        pool: pool_of(t, pools)?,
        weight: weight_of(t)?,
        jobserver: t.jobserver.unwrap_or(true),
        platform: t.platform.clone(),
    })
}

/// A task's dependencies as ids, sorted, without duplicates.
fn deps_of(t: &TaskFile, index: &HashMap<&str, TaskId>) -> Result<Vec<TaskId>, GraphError> {
    let mut deps = Vec::with_capacity(t.deps.len());
    for d in &t.deps {
        if *d == t.id {
            return Err(GraphError::SelfDep(t.id.clone()));
        }
        match index.get(d.as_str()) {
            Some(&id) => deps.push(id),
            None => {
                return Err(GraphError::UnknownDep {
                    task: t.id.clone(),
                    dep: d.clone(),
                })
            }
        }
    }
    deps.sort_unstable();
    deps.dedup();
    Ok(deps)
}

fn action_of(t: &TaskFile) -> Result<Action, GraphError> {
    Ok(match (&t.run, &t.argv) {
        (Some(_), Some(_)) => return Err(GraphError::BothRunAndArgv(t.id.clone())),
        (Some(run), None) => Action::Shell(run.clone()),
        (None, Some(argv)) if argv.is_empty() => return Err(GraphError::EmptyArgv(t.id.clone())),
        (None, Some(argv)) => Action::Argv(argv.clone()),
        (None, None) => Action::Nothing,
    })
}

/// The most slots one task may take.
pub const MAX_WEIGHT: u32 = 4096;

fn weight_of(t: &TaskFile) -> Result<u32, GraphError> {
    match t.weight.unwrap_or(1) {
        w @ 1..=MAX_WEIGHT => Ok(w),
        _ => Err(GraphError::BadWeight(t.id.clone())),
    }
}

fn timeout_of(t: &TaskFile) -> Result<Option<u64>, GraphError> {
    match t.timeout {
        None => Ok(None),
        Some(secs) => seconds_to_ms(secs)
            .map(Some)
            .ok_or_else(|| GraphError::BadTimeout(t.id.clone())),
    }
}

/// A span of seconds as whole milliseconds (rounded up), if it is a
/// positive number below 1e9: the rule for every timeout, in the graph and
/// on both command lines.
pub fn seconds_to_ms(secs: f64) -> Option<u64> {
    (secs.is_finite() && secs > 0.0 && secs < 1e9).then(|| (secs * 1000.0).ceil() as u64)
}

fn pool_of(t: &TaskFile, pools: &[Pool]) -> Result<Option<usize>, GraphError> {
    let Some(name) = &t.pool else { return Ok(None) };
    let found = pools.iter().position(|p| p.name == *name);
    found.map(Some).ok_or_else(|| GraphError::UnknownPool {
        task: t.id.clone(),
        pool: name.clone(),
    })
}

/// Refuses absurdly long graph-wide fields.
fn check_graph_lengths(file: &GraphFile) -> Result<(), GraphError> {
    let too_long = |place: &str, field: &'static str, limit: usize| {
        Err(GraphError::TooLong {
            place: place.to_string(),
            field,
            limit,
        })
    };
    if file
        .env
        .iter()
        .any(|(k, v)| k.len() > MAX_FIELD_BYTES || v.len() > MAX_FIELD_BYTES)
    {
        return too_long("the graph's env", "an entry", MAX_FIELD_BYTES);
    }
    if file.pools.keys().any(|k| k.len() > MAX_ID_BYTES) {
        return too_long("the graph's pools", "a name", MAX_ID_BYTES);
    }
    Ok(())
}

/// Refuses absurdly long fields, naming the task and the field.
fn check_lengths(index: usize, t: &TaskFile) -> Result<(), GraphError> {
    let too_long = |field: &'static str, limit: usize| {
        Err(GraphError::TooLong {
            place: format!("task {}", task_name(index, t)),
            field,
            limit,
        })
    };
    if t.id.len() > MAX_ID_BYTES {
        return too_long("id", MAX_ID_BYTES);
    }
    let long = |s: &String| s.len() > MAX_FIELD_BYTES;
    if t.run.as_ref().is_some_and(long) {
        return too_long("run", MAX_FIELD_BYTES);
    }
    if t.argv
        .as_ref()
        .is_some_and(|a| a.iter().map(String::len).sum::<usize>() > MAX_FIELD_BYTES)
    {
        return too_long("argv", MAX_FIELD_BYTES);
    }
    if t.deps.iter().any(|d| d.len() > MAX_ID_BYTES) {
        return too_long("a dependency id", MAX_ID_BYTES);
    }
    if t.pool.as_ref().is_some_and(|p| p.len() > MAX_ID_BYTES) {
        return too_long("pool", MAX_ID_BYTES);
    }
    if long(&t.cwd) || t.inputs.iter().chain(&t.outputs).any(long) {
        return too_long("a path", MAX_FIELD_BYTES);
    }
    if t.env.iter().any(|(k, v)| long(k) || long(v)) {
        return too_long("an env entry", MAX_FIELD_BYTES);
    }
    Ok(())
}

/// The task as messages name it: its quoted id, or `#index` when the id
/// itself is the problem.
fn task_name(index: usize, t: &TaskFile) -> String {
    if t.id.len() <= MAX_ID_BYTES && !t.id.chars().any(char::is_control) {
        format!("\"{}\"", t.id)
    } else {
        format!("#{index}")
    }
}

/// Refuses text no process can be given (NUL bytes), ids with control
/// characters (they would break every line that names the task), and
/// unusable environment names.
fn check_text(index: usize, t: &TaskFile) -> Result<(), GraphError> {
    let bad = |field: &'static str, problem: &'static str| {
        Err(GraphError::BadText {
            place: format!("task {}", task_name(index, t)),
            field,
            problem,
        })
    };
    const NUL: &str = "contains a NUL byte";
    let nul = |s: &String| s.contains('\0');
    if t.id.chars().any(char::is_control) {
        return bad("id", "contains a control character");
    }
    if t.run.as_ref().is_some_and(nul) {
        return bad("run", NUL);
    }
    if t.argv.iter().flatten().any(nul) {
        return bad("argv", NUL);
    }
    if nul(&t.cwd) {
        return bad("cwd", NUL);
    }
    if t.inputs.iter().any(nul) {
        return bad("an input", NUL);
    }
    if t.outputs.iter().any(nul) {
        return bad("an output", NUL);
    }
    check_env_names(Some(&t.id), &t.env)
}

fn check_env_names(task: Option<&str>, env: &BTreeMap<String, String>) -> Result<(), GraphError> {
    if let Some(name) = env
        .keys()
        .find(|k| k.is_empty() || k.contains('=') || k.contains('\0'))
    {
        return Err(GraphError::BadEnvName {
            task: task.map(str::to_string),
            name: name.clone(),
        });
    }
    if env.values().any(|v| v.contains('\0')) {
        return Err(GraphError::BadText {
            place: task.map_or("the graph's env".into(), |t| format!("task \"{t}\"")),
            field: "an env value",
            problem: "contains a NUL byte",
        });
    }
    Ok(())
}

/// Kahn's algorithm; on a cycle, finds one and names it.
fn topo_sort(tasks: &[Task], dependents: &[Vec<TaskId>]) -> Result<Vec<TaskId>, GraphError> {
    let mut waiting: Vec<usize> = tasks.iter().map(|t| t.deps.len()).collect();
    let mut order: Vec<TaskId> = (0..tasks.len() as u32)
        .map(TaskId)
        .filter(|id| waiting[id.index()] == 0)
        .collect();
    let mut next = 0;
    while next < order.len() {
        let id = order[next];
        next += 1;
        for &d in &dependents[id.index()] {
            waiting[d.index()] -= 1;
            if waiting[d.index()] == 0 {
                order.push(d);
            }
        }
    }
    if order.len() == tasks.len() {
        return Ok(order);
    }
    Err(GraphError::Cycle(find_cycle(tasks, &waiting)))
}

/// Every task left with unfinished dependencies after Kahn's algorithm lies on
/// or behind a cycle, and each has a dependency that is also left: follow such
/// dependencies from the first one until an id repeats.
fn find_cycle(tasks: &[Task], waiting: &[usize]) -> Vec<String> {
    let start = waiting.iter().position(|&w| w > 0).expect("a task is left");
    let mut seen_at: HashMap<usize, usize> = HashMap::new();
    let mut path: Vec<usize> = Vec::new();
    let mut at = start;
    loop {
        if let Some(&pos) = seen_at.get(&at) {
            let mut cycle: Vec<String> = path[pos..].iter().map(|&i| tasks[i].id.clone()).collect();
            cycle.push(tasks[at].id.clone());
            return cycle;
        }
        seen_at.insert(at, path.len());
        path.push(at);
        at = tasks[at]
            .deps
            .iter()
            .map(|d| d.index())
            .find(|&d| waiting[d] > 0)
            .expect("a task left by Kahn's algorithm has a dependency that is left too");
    }
}

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
            "malformed graph: unknown field `rnu`, expected one of `id`, `deps`, `run`, `argv`, `cwd`, `env`, `inputs`, `outputs`, `nostamp`, `pool`, `timeout`, `weight`, `jobserver`, `platform` at line 1 column 37"
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
