//! `make bench` (data part): what the cache's data work costs the build,
//! measured in one run:
//! 1. the real-process Yocto race with declared outputs (every task sleeps
//!    its duration / 200 and touches a stamp it declares), -j8: runqueue in
//!    the default mode with one build of history, and `--no-cache`, against
//!    Ninja with its `.ninja_log`; interleaved, medians of 3;
//! 2. stalls: big outputs being stored next to short tasks, -j4: the
//!    recorded durations of the short tasks against their real 0.5 s, and
//!    how long a free slot waited for a ready task.
//!
//! Appends markdown to the report file given as the first argument.

mod common;

use std::fmt::Write as _;
use std::path::Path;

use common::runners::{
    load, measure, median, moevm_durations, ninja, reset, rq, secs, write_ninja,
};
use runqueue::schedule::plan::Policy;
use runqueue::schedule::simulate::simulate;

/// Every task of `json` declares `stamps/<id>` as its output.
fn with_stamps(json: &str) -> String {
    let mut g: serde_json::Value = serde_json::from_str(json).unwrap();
    for t in g["tasks"].as_array_mut().unwrap() {
        let stamp = format!("stamps/{}", t["id"].as_str().unwrap());
        t["outputs"] = serde_json::json!([stamp]);
    }
    g.to_string()
}

fn fresh_stamps(ws: &Path) {
    let _ = std::fs::remove_dir_all(ws.join("stamps"));
    std::fs::create_dir_all(ws.join("stamps")).unwrap();
}

/// A cache holding only the history journal of `warm`.
fn cache_with_history_of(ws: &Path, warm: &str, name: &str) -> String {
    let dir = ws.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(ws.join(warm).join("journal"), dir.join("journal")).unwrap();
    name.to_string()
}

fn yocto_race(md: &mut String) {
    let scale = 1.0 / 200.0;
    let durations = moevm_durations();
    let run = "sleep {seconds} && touch 'stamps/{id}'";
    let (json, graph, d) = load("moevm__yocto_profiling", &durations, Some(run), scale);
    let lower = simulate(&graph, &d, &d, Policy::CriticalPath, 8).lower_bound_ms as f64 * scale;
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path();
    std::fs::write(ws.join("g.json"), with_stamps(&json)).unwrap();
    write_ninja(ws, &graph);
    // One build of history each.
    fresh_stamps(ws);
    measure(&mut rq(ws, "g.json", 8, &["--cache", "warm"]));
    fresh_stamps(ws);
    measure(&mut ninja(ws, 8));
    let (mut default, mut nocache, mut nin) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..3 {
        fresh_stamps(ws);
        let cache = cache_with_history_of(ws, "warm", &format!("c{round}"));
        default.push(measure(&mut rq(ws, "g.json", 8, &["--cache", &cache])).0);
        fresh_stamps(ws);
        nocache.push(measure(&mut rq(ws, "g.json", 8, &["--no-cache"])).0);
        fresh_stamps(ws);
        reset(ws);
        nin.push(measure(&mut ninja(ws, 8)).0);
    }
    let (default, nocache, nin) = (median(default), median(nocache), median(nin));
    writeln!(
        md,
        "## Data: the Yocto race with declared outputs, -j8\n\n\
         The moevm graph ({} tasks), every task `sleep` its duration / 200 and `touch` a stamp it \
         declares as its output (so runqueue stores each one in the cache). Medians of 3, \
         interleaved; lower bound {:.2} s.\n\n\
         | runner | wall | / ninja | / lower bound |\n|---|---|---|---|",
        graph.len(),
        lower / 1000.0
    )
    .unwrap();
    for (name, wall) in [
        ("runqueue (cache on, history of one build)", default),
        ("runqueue --no-cache", nocache),
        ("ninja 1.13 (`.ninja_log` of one build)", nin),
    ] {
        writeln!(
            md,
            "| {name} | {} | {:.3} | {:.3} |",
            secs(wall),
            wall.as_secs_f64() / nin.as_secs_f64(),
            wall.as_secs_f64() * 1000.0 / lower
        )
        .unwrap();
    }
    writeln!(md).unwrap();
}

/// Four tasks writing `mib` MiB each next to twelve `sleep 0.5`.
fn stall_graph(mib: usize) -> String {
    let mut tasks = Vec::new();
    for i in 0..4 {
        tasks.push(serde_json::json!({
            "id": format!("big{i}"),
            "run": format!("mkdir -p big && head -c {}M /dev/zero > big/b{i} && echo {i} >> big/b{i}", mib),
            "outputs": [format!("big/b{i}")],
        }));
    }
    for i in 0..12 {
        tasks.push(serde_json::json!({"id": format!("nap{i}"), "run": "sleep 0.5"}));
    }
    serde_json::json!({"version": 1, "tasks": tasks}).to_string()
}

/// The longest a free slot waited for a ready task: all tasks are
/// independent, so the n-th task to start (n > slots) could have started
/// when the (n - slots)-th task ended.
fn slot_wait_ms(spans: &[(u64, u64)], slots: usize) -> u64 {
    let mut starts: Vec<u64> = spans.iter().map(|s| s.0).collect();
    let mut ends: Vec<u64> = spans.iter().map(|s| s.1).collect();
    starts.sort();
    ends.sort();
    (slots..starts.len())
        .map(|n| starts[n].saturating_sub(ends[n - slots]))
        .max()
        .unwrap_or(0)
}

fn stalls(md: &mut String) {
    let mib = 200;
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path();
    std::fs::write(ws.join("g.json"), stall_graph(mib)).unwrap();
    let report_file = ws.join("r.json");
    let (wall, _) = measure(&mut rq(
        ws,
        "g.json",
        4,
        &["--cache", "c", "--report", report_file.to_str().unwrap()],
    ));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report_file).unwrap()).unwrap();
    let tasks = report["tasks"].as_array().unwrap();
    let span = |t: &serde_json::Value| {
        (
            t["start_ms"].as_u64().unwrap(),
            t["end_ms"].as_u64().unwrap(),
        )
    };
    let spans: Vec<(u64, u64)> = tasks.iter().map(span).collect();
    let naps: Vec<u64> = tasks
        .iter()
        .filter(|t| t["id"].as_str().unwrap().starts_with("nap"))
        .map(|t| t["duration_ms"].as_u64().unwrap())
        .collect();
    let worst = naps.iter().map(|&d| d.abs_diff(500)).max().unwrap();
    writeln!(
        md,
        "## Data: stalls, -j4\n\n\
         Four tasks each writing {mib} MiB (stored in the cache) next to twelve `sleep 0.5`, all \
         independent.\n\n\
         | wall | sleeps recorded as | worst error | longest wait of a free slot |\n|---|---|---|---|\n\
         | {} | {}–{} ms | {worst} ms | {} ms |\n",
        secs(wall),
        naps.iter().min().unwrap(),
        naps.iter().max().unwrap(),
        slot_wait_ms(&spans, 4)
    )
    .unwrap();
}

fn main() {
    let report = common::report_path();
    let mut md = String::new();
    stalls(&mut md);
    common::flush(&report, &mut md);
    yocto_race(&mut md);
    common::flush(&report, &mut md);
}
