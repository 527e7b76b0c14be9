//! `make bench` (isolation part): what an empty network namespace per task
//! costs. 2,000 independent trivial tasks (`true`) at -j = the CPU count,
//! `--no-cache`, with and without `"network": true`, medians of 3,
//! interleaved; tasks per second and the ratio.
//!
//! Appends markdown to the report file given as the first argument.

mod common;

use std::fmt::Write as _;
use std::time::Duration;

use common::runners::{measure, median, rq};

const TASKS: usize = 2000;

fn main() {
    let report = common::report_path();
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get() as u32);
    let (mut isolated, mut open) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        isolated.push(build(false, jobs));
        open.push(build(true, jobs));
    }
    let per_sec = |d: Duration| TASKS as f64 / d.as_secs_f64();
    let (iso, net) = (per_sec(median(isolated)), per_sec(median(open)));
    let mut md = String::new();
    writeln!(
        md,
        "## Network isolation: {TASKS} trivial tasks (`true`), -j{jobs}\n\n\
         Each task without `\"network\": true` gets an empty network namespace of its own \
         (`unshare(CLONE_NEWNET)` between fork and exec). Medians of 3, interleaved.\n\n\
         | tasks | tasks/s | ratio |\n|---|---|---|\n\
         | with the network (`\"network\": true`) | {net:.0} | 1.00 |\n\
         | isolated (default) | {iso:.0} | {:.2} |\n",
        iso / net
    )
    .unwrap();
    common::flush(&report, &mut md);
}

/// One build of the trivial graph in a fresh workspace; its wall.
fn build(network: bool, jobs: u32) -> Duration {
    let ws = tempfile::tempdir().unwrap();
    let tasks: Vec<String> = (0..TASKS)
        .map(|i| format!(r#"{{"id":"t{i}","argv":["true"],"network":{network}}}"#))
        .collect();
    let graph = format!(r#"{{"version":1,"tasks":[{}]}}"#, tasks.join(","));
    std::fs::write(ws.path().join("g.json"), graph).unwrap();
    let mut cmd = rq(ws.path(), "g.json", jobs, &["--no-cache", "-q"]);
    measure(cmd.env("RUNQUEUE_COMPONENT", common::component_path())).0
}
