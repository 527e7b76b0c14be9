//! Parsing a graph file and validating it: the JSON format as written,
//! then every check that turns it into a [`Graph`].
//!
//! Knows the format and its limits; knows nothing of the file system,
//! scheduling or processes.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::Deserialize;

use super::{
    is_contained, normalize, Action, Graph, GraphError, Pool, Task, TaskId, TaskMap,
    FORMAT_VERSION, MAX_FIELD_BYTES, MAX_ID_BYTES, MAX_TASKS, MAX_WEIGHT,
};

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
    #[serde(default)]
    network: bool,
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
        crate::graph::overlap::check(&tasks)?;
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
        network: t.network,
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
