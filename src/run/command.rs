//! The command a task runs: its program and arguments (`sh -c` for shell
//! text), its directory, its environment in layers, its log, and what the
//! host needs to confine it.
//!
//! Knows the graph and the run's configuration; knows nothing of how
//! processes are started or awaited.

use super::Config;
use crate::graph::{Action, Graph, TaskId};
use crate::seams::Command;

/// The command for a task, or `None` for a task with nothing to run.
pub fn command_for(graph: &Graph, id: TaskId, config: &Config) -> Option<Command> {
    let task = graph.task(id);
    let (program, args) = match &task.action {
        Action::Nothing => return None,
        Action::Shell(text) => ("sh".to_string(), vec!["-c".to_string(), text.clone()]),
        Action::Argv(argv) => (argv[0].clone(), argv[1..].to_vec()),
    };
    let mut env = config.base_env.clone();
    env.extend(graph.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    env.extend(task.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    Some(Command {
        program,
        args,
        cwd: task.cwd.clone(),
        env: env.into_iter().collect(),
        log: crate::graph::lognames::log_path(&config.log_dir, &task.id),
        timeout_ms: task.timeout_ms.or(config.default_timeout_ms),
        jobserver: task.jobserver,
        network: task.network,
        inputs: inputs_of(graph, id),
        outputs: task.outputs.clone(),
        platform: platform_of(task),
        cacheable: !task.nostamp,
    })
}

/// The task's platform properties, with `network=true` for a task that may
/// reach the network, so a remote service can place it where it can.
fn platform_of(task: &crate::graph::Task) -> Vec<(String, String)> {
    let mut platform: Vec<(String, String)> = task
        .platform
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if task.network && !task.platform.contains_key("network") {
        platform.push(("network".into(), "true".into()));
        platform.sort();
    }
    platform
}

/// What a task reads: its inputs and its upstream tasks' outputs.
fn inputs_of(graph: &Graph, id: TaskId) -> Vec<String> {
    let mut inputs = graph.task(id).inputs.clone();
    inputs.extend(graph.upstream_outputs(id));
    inputs.sort();
    inputs.dedup();
    inputs
}
