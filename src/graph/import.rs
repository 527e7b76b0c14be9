//! Converts BitBake's `bitbake -g` task graph (`task-depends.dot`, or the
//! `A B` edge lists of shared/data/yocto) into the graph format.
//!
//! Knows both text formats and the graph JSON; knows nothing of running.

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::schedule::estimate::task_name;

/// A BitBake task id `recipe.do_task` as a graph id `recipe:do_task`; the
/// split is at the last `.do_`, since recipe names contain dots.
pub fn graph_id(bitbake_id: &str) -> String {
    match bitbake_id.rfind(".do_") {
        Some(at) => format!("{}:{}", &bitbake_id[..at], &bitbake_id[at + 1..]),
        None => bitbake_id.to_string(),
    }
}

/// Tasks in the order first seen, each with its dependencies, from a `.dot`
/// file (node lines `"a.do_x" [label=...]`, edge lines `"a.do_x" ->
/// "b.do_y"`, meaning a depends on b) or an edge list (`a.do_x b.do_y`).
pub fn parse(text: &str) -> Result<Vec<(String, Vec<String>)>, String> {
    let mut order: Vec<String> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut deps: Vec<Vec<String>> = Vec::new();
    let mut node = |name: &str, order: &mut Vec<String>, deps: &mut Vec<Vec<String>>| -> usize {
        *index.entry(name.to_string()).or_insert_with(|| {
            order.push(name.to_string());
            deps.push(Vec::new());
            order.len() - 1
        })
    };
    let is_dot = text.trim_start().starts_with("digraph") || text.contains("->");
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with("//") || line.starts_with('#') {
            continue;
        }
        if is_dot {
            if line.starts_with("digraph") || line == "}" || line == "{" || !line.starts_with('"') {
                continue;
            }
            let quoted: Vec<&str> = line.split('"').skip(1).step_by(2).collect();
            let Some(&from) = quoted.first() else {
                continue;
            };
            let rest = &line[from.len() + 2..];
            if rest.trim_start().starts_with("->") {
                let to = quoted
                    .get(1)
                    .ok_or_else(|| format!("line {}: an edge without a target: {line}", n + 1))?;
                let a = node(from, &mut order, &mut deps);
                node(to, &mut order, &mut deps);
                deps[a].push(to.to_string());
            } else {
                node(from, &mut order, &mut deps);
            }
        } else {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [a, b] = fields[..] else {
                return Err(format!(
                    "line {}: expected `TASK DEPENDENCY`, got {line:?}",
                    n + 1
                ));
            };
            let ai = node(a, &mut order, &mut deps);
            node(b, &mut order, &mut deps);
            deps[ai].push(b.to_string());
        }
    }
    Ok(order.into_iter().zip(deps).collect())
}

/// How each imported task runs.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Shell text with `{id}`, `{recipe}`, `{task}` and `{seconds}`
    /// replaced per task; `None` makes tasks with nothing to run.
    pub run_template: Option<String>,
    /// Seconds per `(recipe, task)`, for `{seconds}`; a task without one
    /// gets the median of its task name, else 1.
    pub durations_ms: HashMap<(String, String), u64>,
    /// Multiplies `{seconds}` (0.01 runs a build a hundred times faster).
    pub scale: f64,
}

/// The graph JSON (format version 1) for `tasks`.
pub fn to_graph(tasks: &[(String, Vec<String>)], opts: &ImportOptions) -> String {
    let mut by_name: HashMap<&str, Vec<u64>> = HashMap::new();
    for ((_, task), ms) in &opts.durations_ms {
        by_name.entry(task.as_str()).or_default().push(*ms);
    }
    let median: HashMap<&str, u64> = by_name
        .into_iter()
        .map(|(k, mut v)| {
            v.sort_unstable();
            (k, v[v.len() / 2])
        })
        .collect();
    let list: Vec<Value> = tasks
        .iter()
        .map(|(bb, deps)| {
            let id = graph_id(bb);
            let (recipe, task) = id.rsplit_once(':').unwrap_or(("", id.as_str()));
            let mut deps: Vec<String> = deps.iter().map(|d| graph_id(d)).collect();
            deps.sort();
            deps.dedup();
            let mut t = json!({"id": id, "deps": deps});
            if let Some(template) = &opts.run_template {
                let ms = opts
                    .durations_ms
                    .get(&(recipe.to_string(), task.to_string()))
                    .or_else(|| median.get(task_name(&id)))
                    .copied()
                    .unwrap_or(1000);
                let secs = ms as f64 / 1000.0 * opts.scale;
                let run = template
                    .replace("{id}", &id)
                    .replace("{recipe}", recipe)
                    .replace("{task}", task)
                    .replace("{seconds}", &format!("{secs:.3}"));
                t["run"] = Value::String(run);
            }
            // BitBake gives the network to do_fetch alone.
            if task == "do_fetch" {
                t["network"] = Value::Bool(true);
            }
            t
        })
        .collect();
    // One task per line: readable, and diffs stay small.
    let lines: Vec<String> = list.iter().map(|t| format!("  {t}")).collect();
    format!("{{\"version\": 1, \"tasks\": [\n{}\n]}}", lines.join(",\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Graph;

    #[test]
    fn reads_bitbake_dot_with_labels() {
        let dot = r#"digraph depends {
"busybox.do_compile" [label="busybox do_compile\n:1.36.1-r0\n/poky/meta/recipes-core/busybox/busybox_1.36.1.bb"]
"busybox.do_compile" -> "busybox.do_configure"
"busybox.do_compile" -> "glibc.do_populate_sysroot"
"busybox.do_configure" [label="busybox do_configure"]
"glibc.do_populate_sysroot" [label="glibc do_populate_sysroot"]
"python3-3.11.do_fetch" [label="x"]
}
"#;
        let tasks = parse(dot).unwrap();
        assert_eq!(
            tasks,
            vec![
                (
                    "busybox.do_compile".to_string(),
                    vec![
                        "busybox.do_configure".to_string(),
                        "glibc.do_populate_sysroot".to_string()
                    ]
                ),
                ("busybox.do_configure".to_string(), vec![]),
                ("glibc.do_populate_sysroot".to_string(), vec![]),
                ("python3-3.11.do_fetch".to_string(), vec![]),
            ]
        );
        let durations =
            HashMap::from([(("busybox".to_string(), "do_compile".to_string()), 30_000)]);
        let json = to_graph(
            &tasks,
            &ImportOptions {
                run_template: Some("sleep {seconds} # {recipe} {task}".into()),
                durations_ms: durations,
                scale: 0.01,
            },
        );
        let g = Graph::parse(&json).unwrap();
        assert_eq!(g.tasks[0].id, "busybox:do_compile");
        assert_eq!(g.tasks[3].id, "python3-3.11:do_fetch");
        assert!(g.tasks[3].network, "do_fetch may reach the network");
        assert!(!g.tasks[0].network);
        assert_eq!(g.tasks[0].deps.len(), 2);
        assert_eq!(
            g.tasks[0].action,
            crate::graph::Action::Shell("sleep 0.300 # busybox do_compile".into())
        );
        assert_eq!(
            g.tasks[1].action,
            crate::graph::Action::Shell("sleep 0.010 # busybox do_configure".into())
        );
    }

    #[test]
    fn reads_edge_lists() {
        let tasks = parse("a.do_b c.do_d\na.do_b e.do_f\n\ne.do_f c.do_d\n").unwrap();
        let g = Graph::parse(&to_graph(
            &tasks,
            &ImportOptions {
                scale: 1.0,
                ..Default::default()
            },
        ))
        .unwrap();
        assert_eq!(g.len(), 3);
        assert_eq!(g.topo_order.len(), 3);
        assert_eq!(
            parse("just-one\n").unwrap_err(),
            "line 1: expected `TASK DEPENDENCY`, got \"just-one\""
        );
    }
}
