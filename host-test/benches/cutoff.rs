//! `make bench` (early cutoff part): "touch a root recipe's input" on the
//! moevm graph with real processes, -j8, measured in one run. Every task
//! sleeps its duration / 200 and writes the stamp it declares, the sha256 of
//! its dependencies' stamps and its id, so outputs are deterministic; the
//! root task with the most dependents also reads a declared input, comment
//! lines dropped. From one warmed workspace and cache (copied afresh for
//! each build, interleaved, medians of 3): a comment changed in that input,
//! with early cutoff and with `--no-cutoff`, and a real change.
//!
//! Appends markdown to the report file given as the first argument.

mod common;

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use common::runners::{copy_tree, load, measure, median, moevm_durations, rq, secs};
use runqueue::graph::{Graph, TaskId};

/// The root task's declared input, relative to the workspace.
const INPUT: &str = "inputs/root.txt";
const JOBS: u32 = 8;

/// The root task (no dependencies) with the most transitive dependents,
/// and how many it has.
fn widest_root(graph: &Graph) -> (TaskId, usize) {
    graph
        .ids()
        .filter(|&id| graph.task(id).deps.is_empty())
        .map(|id| (id, dependents_of(graph, id)))
        .max_by_key(|&(id, n)| (n, std::cmp::Reverse(id)))
        .expect("the graph has a root")
}

/// How many tasks depend on `root`, directly or not.
fn dependents_of(graph: &Graph, root: TaskId) -> usize {
    let mut seen = vec![false; graph.len()];
    let mut todo = vec![root];
    let mut n = 0;
    while let Some(id) = todo.pop() {
        for &d in &graph.dependents[id] {
            if !std::mem::replace(&mut seen[d.index()], true) {
                n += 1;
                todo.push(d);
            }
        }
    }
    n
}

/// `json` (tasks that `sleep`) with every task writing `stamps/<id>`, the
/// sha256 of its dependencies' stamps and its id; `root` also reads
/// [`INPUT`] without its comment lines.
fn stamping(json: &str, graph: &Graph, root: TaskId) -> String {
    let mut g: serde_json::Value = serde_json::from_str(json).unwrap();
    let tasks = g["tasks"].as_array_mut().unwrap();
    for (t, task) in tasks.iter_mut().zip(&graph.tasks) {
        assert!(!task.id.contains('\''), "ids are quoted as 'id'");
        let cat: Vec<String> = task
            .deps
            .iter()
            .map(|&d| format!("cat 'stamps/{}'; ", graph.task(d).id))
            .collect();
        let read = if task.id == graph.task(root).id {
            t["inputs"] = serde_json::json!([INPUT]);
            format!("grep -v '^#' {INPUT}; ")
        } else {
            String::new()
        };
        let id = &task.id;
        let sleep = t["run"].as_str().unwrap();
        t["run"] = format!(
            "{sleep} && {{ {read}{}echo '{id}'; }} | sha256sum > 'stamps/{id}'",
            cat.concat()
        )
        .into();
        t["outputs"] = serde_json::json!([format!("stamps/{id}")]);
    }
    g.to_string()
}

/// A workspace `ws` with the graph and the input, built with the cache in
/// both modes (the signatures of `--no-cutoff` chain, so they differ): each
/// build after it finds its own mode's entries.
fn warm(ws: &Path, json: &str) {
    std::fs::create_dir_all(ws.join("stamps")).unwrap();
    std::fs::create_dir_all(ws.join("inputs")).unwrap();
    std::fs::write(ws.join("g.json"), json).unwrap();
    std::fs::write(ws.join(INPUT), "# touched 0\nroot input\n").unwrap();
    measure(&mut rq(ws, "g.json", JOBS, &[]));
    measure(&mut rq(ws, "g.json", JOBS, &["--no-cutoff"]));
}

/// One build after a change to the root's input.
struct Case {
    name: &'static str,
    input: &'static str,
    flags: &'static [&'static str],
}

const CASES: [Case; 3] = [
    Case {
        name: "comment changed, early cutoff (default)",
        input: "# touched 1\nroot input\n",
        flags: &[],
    },
    Case {
        name: "comment changed, `--no-cutoff`",
        input: "# touched 1\nroot input\n",
        flags: &["--no-cutoff"],
    },
    Case {
        name: "real change, early cutoff (default)",
        input: "# touched 0\nroot input, changed\n",
        flags: &[],
    },
];

/// What one build did: tasks run and cut off (the report's totals), stamps
/// that differ from the warm build's, wall time.
#[derive(Debug)]
struct Outcome {
    ran: u64,
    cut_off: u64,
    changed: usize,
    wall: Duration,
}

/// `case` built in a fresh copy of the warm workspace `warm`.
fn build(warm: &Path, case: &Case, run: &str) -> Outcome {
    let ws = warm.with_file_name(run);
    copy_tree(warm, &ws);
    std::fs::write(ws.join(INPUT), case.input).unwrap();
    let report = warm.with_file_name(format!("{run}.json"));
    let mut flags = case.flags.to_vec();
    flags.extend(["--report", report.to_str().unwrap()]);
    let (wall, _) = measure(&mut rq(&ws, "g.json", JOBS, &flags));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let totals = &report["totals"];
    let changed = changed_stamps(warm, &ws);
    std::fs::remove_dir_all(&ws).unwrap();
    Outcome {
        ran: totals["succeeded"].as_u64().unwrap(),
        cut_off: totals["cut_off"].as_u64().unwrap(),
        changed,
        wall,
    }
}

/// How many stamps of `ws` differ from those of `warm`.
fn changed_stamps(warm: &Path, ws: &Path) -> usize {
    let read = |dir: &Path, name: &std::ffi::OsStr| std::fs::read(dir.join("stamps").join(name));
    std::fs::read_dir(warm.join("stamps"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|name| read(warm, name).unwrap() != read(ws, name).unwrap())
        .count()
}

/// Each case three times, interleaved; per case, its counts (the same
/// every time) and its median wall.
fn measure_cases(warm: &Path) -> Vec<Outcome> {
    let mut runs: Vec<Vec<Outcome>> = CASES.iter().map(|_| Vec::new()).collect();
    for round in 0..3 {
        for (i, case) in CASES.iter().enumerate() {
            runs[i].push(build(warm, case, &format!("case{i}-{round}")));
        }
    }
    runs.into_iter()
        .map(|r| {
            let counts = |o: &Outcome| (o.ran, o.cut_off, o.changed);
            assert!(r.iter().all(|o| counts(o) == counts(&r[0])), "{r:?}");
            Outcome {
                wall: median(r.iter().map(|o| o.wall).collect()),
                ..r[0]
            }
        })
        .collect()
}

fn main() {
    let report = common::report_path();
    let scale = 1.0 / 200.0;
    let run = Some("sleep {seconds}");
    let (json, graph, _) = load("moevm__yocto_profiling", &moevm_durations(), run, scale);
    let (root, dependents) = widest_root(&graph);
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("warm");
    warm(&ws, &stamping(&json, &graph, root));
    let results = measure_cases(&ws);
    // A comment changes nothing downstream; a real change, exactly the
    // root and its dependents.
    let changed: Vec<usize> = results.iter().map(|o| o.changed).collect();
    assert_eq!(changed, [0, 0, 1 + dependents]);
    let mut md = String::new();
    write_table(&mut md, &graph, root, dependents, &results);
    common::flush(&report, &mut md);
}

fn write_table(
    md: &mut String,
    graph: &Graph,
    root: TaskId,
    dependents: usize,
    results: &[Outcome],
) {
    writeln!(
        md,
        "## Early cutoff: touch a root recipe's input (moevm)\n\n\
         The moevm graph ({} tasks), every task `sleep` its duration / 200 and write the stamp it \
         declares: the sha256 of its dependencies' stamps and its id. The root task with the most \
         dependents, `{}` ({dependents} tasks depend on it), also reads a declared input, comment \
         lines dropped. Built once with the cache in each mode, then the input changed and built \
         again, -j{JOBS}, each build from a fresh copy of that workspace and cache; medians of 3, \
         interleaved.\n\n\
         | change, build | tasks run | tasks cut off | wall | / `--no-cutoff` |\n|---|---|---|---|---|",
        graph.len(),
        graph.task(root).id,
    )
    .unwrap();
    let base = results[1].wall.as_secs_f64();
    for (case, o) in CASES.iter().zip(results) {
        let ratio = o.wall.as_secs_f64() / base;
        let (name, ran, cut_off, wall) = (case.name, o.ran, o.cut_off, secs(o.wall));
        writeln!(md, "| {name} | {ran} | {cut_off} | {wall} | {ratio:.3} |").unwrap();
    }
    writeln!(md).unwrap();
}
