//! `make bench` (service part): what `runqueue serve` costs over the CLI,
//! measured in one run.
//!
//! - One build: the same 200-task graph (10 layers of 20 short tasks, each
//!   depending on two of the layer before) through the CLI and through the
//!   service (submit → final state seen over HTTP), medians of 3,
//!   interleaved; the ratio is the service's overhead.
//! - Ten at once: ten such builds submitted together to one service whose
//!   `--max-parallel` is the CPU count, total wall against the sum of ten
//!   CLI walls (one after the other, the way ten CI jobs on one machine
//!   without the service would share it at best).
//!
//! Appends markdown to the report file given as the first argument.

mod common;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use common::runners::{measure, median, rq, secs};
use common::service::Service;
use serde_json::{json, Value};

const LAYERS: usize = 10;
const WIDTH: usize = 20;

fn main() {
    let report = common::report_path();
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get() as u32);
    let graph = layered();
    let mut md = String::new();
    let data = tempfile::tempdir().unwrap();
    let j = jobs.to_string();
    let svc = Service::start(data.path(), &["--max-parallel", &j, "--max-builds", "10"]);
    let (cli, served) = one_build(&svc, &graph, jobs);
    let (ten, sum) = ten_builds(&svc, &graph, jobs);
    writeln!(
        md,
        "## The build service: {} tasks per build at -j{jobs}\n\n\
         The same graph ({LAYERS} layers of {WIDTH} tasks of `sleep 0.01`, no cache) through the \
         CLI and through `runqueue serve` (submit to final state over HTTP); medians of 3, \
         interleaved. Then ten builds submitted at once to one service sharing {jobs} slots, \
         against ten CLI builds one after the other.\n\n\
         | case | wall | ratio |\n|---|---|---|\n\
         | CLI, one build | {} | 1.00 |\n\
         | service, one build | {} | {:.2} |\n\
         | CLI, ten builds one after the other (sum) | {} | 1.00 |\n\
         | service, ten builds at once (total) | {} | {:.2} |\n",
        LAYERS * WIDTH,
        secs(cli),
        secs(served),
        served.as_secs_f64() / cli.as_secs_f64(),
        secs(sum),
        secs(ten),
        ten.as_secs_f64() / sum.as_secs_f64(),
    )
    .unwrap();
    common::flush(&report, &mut md);
}

/// Layers of short tasks, each depending on two of the layer before.
fn layered() -> Value {
    let mut tasks = Vec::new();
    for l in 0..LAYERS {
        for w in 0..WIDTH {
            let deps: Vec<String> = match l {
                0 => Vec::new(),
                _ => vec![
                    format!("l{}w{w}", l - 1),
                    format!("l{}w{}", l - 1, (w + 1) % WIDTH),
                ],
            };
            tasks.push(json!({"id": format!("l{l}w{w}"), "deps": deps, "run": "sleep 0.01"}));
        }
    }
    json!({"version": 1, "tasks": tasks})
}

/// Median walls of one build through the CLI and through the service.
fn one_build(svc: &Service, graph: &Value, jobs: u32) -> (Duration, Duration) {
    let (mut cli, mut served) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        cli.push(cli_build(graph, jobs));
        let start = Instant::now();
        let id = svc.submit(graph, json!({"no_cache": true}));
        assert_eq!(svc.wait_final(id, 600)["state"], "succeeded");
        served.push(start.elapsed());
    }
    (median(cli), median(served))
}

/// One CLI build of `graph` in a fresh workspace.
fn cli_build(graph: &Value, jobs: u32) -> Duration {
    let ws = tempfile::tempdir().unwrap();
    std::fs::write(ws.path().join("g.json"), graph.to_string()).unwrap();
    measure(
        rq(ws.path(), "g.json", jobs, &["--no-cache", "-q"])
            .env("RUNQUEUE_COMPONENT", common::component_path()),
    )
    .0
}

/// Ten builds at once through the service, and ten CLI builds' sum.
fn ten_builds(svc: &Service, graph: &Value, jobs: u32) -> (Duration, Duration) {
    let sum: Duration = (0..10).map(|_| cli_build(graph, jobs)).sum();
    let start = Instant::now();
    let ids: Vec<u64> = (0..10)
        .map(|_| svc.submit(graph, json!({"no_cache": true})))
        .collect();
    for id in ids {
        assert_eq!(svc.wait_final(id, 600)["state"], "succeeded");
    }
    (start.elapsed(), sum)
}
