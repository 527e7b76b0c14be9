//! What is wrong with a graph, worded for the person who wrote it.
//!
//! Knows the graph format's words (fields, ids, paths); knows nothing of
//! how a graph is parsed or run.

use std::fmt;

use super::{FORMAT_VERSION, MAX_TASKS, MAX_WEIGHT, RESERVED};

/// How many ids at each end of a long cycle its message shows.
const CYCLE_SHOWN: usize = 5;

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
            RESERVED
        ),
        _ => unreachable!("every other error is written by Display"),
    }
}

impl std::error::Error for GraphError {}
