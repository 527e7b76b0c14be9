//! `make bench` (remote part): running tasks on a REAPI service (a real
//! BuildGrid with PostgreSQL on loopback) through `runqueue worker`s on
//! this same machine, against running them here. Every task differs per
//! round (an environment variable in the graph), so the service's action
//! cache answers only where a row says so.
//!
//! - Per-action overhead: a chain of 20 `true` tasks (so one at a time),
//!   local vs remote (uncached) vs remote again (action cache hits).
//! - Scaling: 16 independent `sleep 1` at -j16 on 1, 2 and 4 workers of
//!   capacity 4 (ideal: 4, 2, 1 s).
//! - The moevm Yocto graph (4,256 tasks) at durations / 200, -j8, here and
//!   on 4 workers of capacity 4 (one round each: the remote one takes about
//!   27 minutes, BuildGrid placing ~2.6 actions a second on 2 shared cores).
//!
//! Every task's command differs from the others' (the service would
//! otherwise run one and answer the rest from it).
//!
//! Appends markdown to the report file given as the first argument.

#[path = "../tests/common/buildgrid.rs"]
mod buildgrid;
mod common;

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use buildgrid::BuildGrid;
use common::runners::{load, median, moevm_durations, rq, runqueue_bin, secs};

const CHAIN: usize = 20;

fn main() {
    let report = common::report_path();
    let mut md = String::new();
    let grid = BuildGrid::start();
    writeln!(
        md,
        "## Remote execution (BuildGrid 0.9.1, workers on this machine)\n"
    )
    .unwrap();
    overhead(&mut md, &grid);
    common::flush(&report, &mut md);
    scaling(&mut md, &grid);
    common::flush(&report, &mut md);
    moevm(&mut md, &grid);
    common::flush(&report, &mut md);
}

/// `runqueue worker`s, stopped when dropped.
struct Workers(Vec<Child>, #[allow(dead_code)] tempfile::TempDir);

impl Workers {
    fn start(grid: &BuildGrid, n: usize, capacity: u32) -> Workers {
        let dir = tempfile::tempdir().unwrap();
        let children = (0..n)
            .map(|i| {
                Command::new(runqueue_bin())
                    .args([
                        "worker",
                        "--server",
                        &grid.url(),
                        "--instance",
                        grid.instance(),
                    ])
                    .args([
                        "--capacity",
                        &capacity.to_string(),
                        "--name",
                        &format!("w{i}"),
                    ])
                    .arg("--workdir")
                    .arg(dir.path())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        // Let them open their bot sessions before the build starts.
        std::thread::sleep(Duration::from_secs(2));
        Workers(children, dir)
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        }
        for c in &mut self.0 {
            let _ = c.wait();
        }
    }
}

fn remote<'a>(grid: &'a BuildGrid, extra: &[&'a str]) -> Vec<String> {
    let mut args = vec![
        "--executor".to_string(),
        grid.url(),
        "--instance".into(),
        grid.instance().into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// The wall time of a build, which must succeed.
fn timed(ws: &Path, jobs: u32, args: &[String]) -> Duration {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let start = Instant::now();
    let out = rq(ws, "g.json", jobs, &args).output().unwrap();
    let wall = start.elapsed();
    let (said, err) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "runqueue {args:?} failed: {said}{err}"
    );
    wall
}

/// A fresh workspace holding `graph` with `ROUND` set to `round`.
fn workspace(graph: &str, round: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut g: serde_json::Value = serde_json::from_str(graph).unwrap();
    g["env"] = serde_json::json!({ "ROUND": round, "PATH": std::env::var("PATH").unwrap() });
    std::fs::write(dir.path().join("g.json"), g.to_string()).unwrap();
    dir
}

fn chain() -> String {
    let tasks: Vec<String> = (0..CHAIN)
        .map(|i| {
            let dep = if i == 0 {
                String::new()
            } else {
                format!(r#""deps":["t{}"],"#, i - 1)
            };
            format!(r#"{{"id":"t{i}",{dep}"run":"true {i}"}}"#)
        })
        .collect();
    format!(r#"{{"version":1,"tasks":[{}]}}"#, tasks.join(","))
}

fn overhead(md: &mut String, grid: &BuildGrid) {
    let _w = Workers::start(grid, 1, 4);
    let graph = chain();
    let (mut here, mut there, mut hits) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..3 {
        let tag = format!("overhead-{round}-{}", std::process::id());
        here.push(timed(
            workspace(&graph, &tag).path(),
            1,
            &["--no-cache".into()],
        ));
        there.push(timed(
            workspace(&graph, &tag).path(),
            1,
            &remote(grid, &["--no-cache"]),
        ));
        hits.push(timed(
            workspace(&graph, &tag).path(),
            1,
            &remote(grid, &["--no-cache"]),
        ));
    }
    let per = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1000.0 / CHAIN as f64);
    writeln!(
        md,
        "### Per-action overhead\n\nA chain of {CHAIN} `true` tasks, one at a time, \
         `--no-cache`; medians of 3, interleaved.\n\n| where | wall | per task |\n|---|---|---|"
    )
    .unwrap();
    for (name, d) in [
        ("here", median(here)),
        ("remote, 1 worker", median(there)),
        ("remote, action cache hits", median(hits)),
    ] {
        writeln!(md, "| {name} | {} | {} |", secs(d), per(d)).unwrap();
    }
    writeln!(md).unwrap();
}

fn sleeps() -> String {
    let tasks: Vec<String> = (0..16)
        .map(|i| format!(r#"{{"id":"s{i}","run":"sleep 1 && echo {i}"}}"#))
        .collect();
    format!(r#"{{"version":1,"tasks":[{}]}}"#, tasks.join(","))
}

fn scaling(md: &mut String, grid: &BuildGrid) {
    let graph = sleeps();
    let mut walls: Vec<Vec<Duration>> = vec![Vec::new(); 3];
    for round in 0..3 {
        for (i, n) in [1, 2, 4].into_iter().enumerate() {
            let _w = Workers::start(grid, n, 4);
            let tag = format!("scaling-{round}-{n}-{}", std::process::id());
            walls[i].push(timed(
                workspace(&graph, &tag).path(),
                16,
                &remote(grid, &["--no-cache"]),
            ));
        }
    }
    writeln!(
        md,
        "### Scaling\n\n16 × `sleep 1` at -j16 on workers of capacity 4; medians of 3, \
         interleaved.\n\n| workers | wall | ideal | / ideal |\n|---|---|---|---|"
    )
    .unwrap();
    for (i, n) in [1u32, 2, 4].into_iter().enumerate() {
        let wall = median(walls[i].clone());
        let ideal = 4.0 / n as f64;
        writeln!(
            md,
            "| {n} | {} | {ideal:.0} s | {:.2} |",
            secs(wall),
            wall.as_secs_f64() / ideal
        )
        .unwrap();
    }
    writeln!(md).unwrap();
}

fn moevm(md: &mut String, grid: &BuildGrid) {
    let scale = 1.0 / 200.0;
    let run = "sleep {seconds} && mkdir -p stamps && touch 'stamps/{id}'";
    let (json, graph, _) = load(
        "moevm__yocto_profiling",
        &moevm_durations(),
        Some(run),
        scale,
    );
    let mut g: serde_json::Value = serde_json::from_str(&json).unwrap();
    for t in g["tasks"].as_array_mut().unwrap() {
        t["outputs"] = serde_json::json!([format!("stamps/{}", t["id"].as_str().unwrap())]);
    }
    let json = g.to_string();
    let tag = format!("moevm-{}", std::process::id());
    let here = timed(workspace(&json, &tag).path(), 8, &["--no-cache".into()]);
    let _w = Workers::start(grid, 4, 4);
    let there = timed(
        workspace(&json, &tag).path(),
        8,
        &remote(grid, &["--no-cache"]),
    );
    writeln!(
        md,
        "### The moevm graph remotely\n\n{} tasks, each `sleep` its duration / 200 and touch its \
         declared stamp, `--no-cache`; one run each.\n\n| where | wall | / here |\n|---|---|---|",
        graph.len()
    )
    .unwrap();
    for (name, d) in [("here, -j8", here), ("4 workers × 4, -j8", there)] {
        writeln!(
            md,
            "| {name} | {} | {:.2} |",
            secs(d),
            d.as_secs_f64() / here.as_secs_f64()
        )
        .unwrap();
    }
    writeln!(md).unwrap();
}
