//! `make bench` (scale part): a Yocto-shaped graph of about a million
//! tasks, made from the moevm graph (its 4,256 tasks copied 234 times;
//! each copy's `do_configure` tasks also wait for the previous copy's
//! `do_populate_sysroot` of the same recipe, as layers stacked on layers
//! do). `check`, `plan`, `simulate` of its JSON and `import-dot` of its
//! dot: wall and peak memory (the whole process: host and component),
//! medians of 3, each beside its target (issue 29).
//!
//! Appends markdown to the report file given as the first argument.

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::runners::{measure_any, median, runqueue_bin, secs};

const COPIES: usize = 234;

fn main() {
    let report = common::report_path();
    let dir = tempfile::tempdir().unwrap();
    let (json, dot) = (dir.path().join("g.json"), dir.path().join("g.dot"));
    let tasks = write_graph(&json, &dot);
    let cases: [(&str, Vec<&str>, &Path, f64, u64); 4] = [
        ("check", vec!["check"], &json, 2.0, 500),
        ("plan", vec!["plan", "--no-cache"], &json, 2.0, 500),
        (
            "simulate -j8",
            vec!["simulate", "-j", "8", "--no-cache"],
            &json,
            3.0,
            0,
        ),
        (
            "import-dot",
            vec!["import-dot", "-o", "/dev/null"],
            &dot,
            4.0,
            800,
        ),
    ];
    let mut md = String::new();
    writeln!(
        md,
        "## Scale: a Yocto-shaped graph of {tasks} tasks\n\n\
         The moevm graph copied {COPIES} times, each copy's `do_configure` also after the \
         previous copy's `do_populate_sysroot`. Wall and peak RSS of the whole process \
         (host and component), medians of 3.\n\n\
         | command | wall | target | peak RSS | target |\n|---|---|---|---|---|"
    )
    .unwrap();
    for (name, args, graph, wall_target, rss_target) in cases {
        let rss_goal = match rss_target {
            0 => "—".to_string(),
            mb => format!("< {mb} MB"),
        };
        let (wall, rss, refused) = three(&args, graph, dir.path());
        let note = match refused {
            true => " (refused at the default memory limit; with `--max-memory 4096`)",
            false => "",
        };
        writeln!(
            md,
            "| `{name}`{note} | {} | < {wall_target:.0} s | {} MB | {rss_goal} |",
            secs(wall),
            rss / 1024
        )
        .unwrap();
    }
    md.push('\n');
    common::flush(&report, &mut md);
}

/// Three runs of `runqueue ARGS GRAPH`: the median wall, the largest
/// peak (KiB), and whether the default memory limit refused it (the runs
/// are then made with the largest limit).
fn three(args: &[&str], graph: &Path, cwd: &Path) -> (Duration, u64, bool) {
    let run = |limit: &[&str]| {
        let mut cmd = Command::new(runqueue_bin());
        cmd.args(&args[..1]).arg(graph).args(&args[1..]).args(limit);
        measure_any(
            cmd.current_dir(cwd)
                .env("RUNQUEUE_COMPONENT", common::component_path()),
        )
    };
    let first = run(&[]);
    let refused = first.2 == 2;
    let limit: &[&str] = if refused {
        &["--max-memory", "4096"]
    } else {
        &[]
    };
    let runs: Vec<_> = (0..3).map(|_| run(limit)).collect();
    if let Some(failed) = runs.iter().find(|r| r.2 != 0) {
        panic!(
            "runqueue {args:?} {limit:?} failed with exit code {}",
            failed.2
        );
    }
    let peak = runs.iter().map(|r| r.1).max().unwrap_or(0);
    (
        median(runs.into_iter().map(|r| r.0).collect()),
        peak,
        refused,
    )
}

/// Writes the graph as JSON and as a BitBake `task-depends.dot`; its size.
fn write_graph(json: &Path, dot: &Path) -> usize {
    let edges =
        std::fs::read_to_string(common::yocto_data().join("moevm__yocto_profiling.edges.txt"))
            .unwrap();
    let mut deps: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for line in edges.lines() {
        let mut parts = line.split_whitespace();
        if let (Some(a), Some(b)) = (parts.next(), parts.next()) {
            deps.entry(a).or_default().push(b);
            deps.entry(b).or_default();
        }
    }
    let mut j = std::io::BufWriter::new(std::fs::File::create(json).unwrap());
    let mut d = std::io::BufWriter::new(std::fs::File::create(dot).unwrap());
    write!(j, r#"{{"version":1,"tasks":["#).unwrap();
    writeln!(d, "digraph depends {{").unwrap();
    let mut first = true;
    for c in 0..COPIES {
        for (task, on) in &deps {
            let mut all: Vec<String> = on.iter().map(|b| format!("c{c}.{b}")).collect();
            if let (true, Some(recipe)) = (c > 0, task.strip_suffix(".do_configure")) {
                all.push(format!("c{}.{recipe}.do_populate_sysroot", c - 1));
            }
            let t = serde_json::json!({"id": format!("c{c}.{task}"), "run": "true", "deps": all});
            write!(j, "{}{t}", if first { "" } else { "," }).unwrap();
            first = false;
            for b in &all {
                writeln!(d, "\"c{c}.{task}\" -> \"{b}\"").unwrap();
            }
        }
    }
    write!(j, "]}}").unwrap();
    writeln!(d, "}}").unwrap();
    COPIES * deps.len()
}
