//! `make bench` (scheduling part), all measured in one run:
//! 1. simulated makespan / lower bound for every policy on the Yocto graphs;
//! 2. real processes (`sleep`, durations scaled 1/100) at -j8: runqueue per
//!    policy against Ninja and make;
//! 3. overhead: 10,000 trivial tasks, tasks per second against Ninja and make;
//! 4. scale: check and simulate of a generated 100,000-task graph.
//!
//! Appends markdown to the report file given as the first argument.

mod common;

use common::runners::{
    load, make, measure, moevm_durations, ninja, reset, rq, runqueue_bin, secs, write_make,
    write_ninja,
};

use std::fmt::Write as _;
use std::process::Command;
use std::time::Duration;

use runqueue::graph::Graph;
use runqueue::schedule::estimate::expected_durations;
use runqueue::schedule::plan::Policy;
use runqueue::schedule::simulate::simulate;

fn main() {
    let report = common::report_path();
    let mut md = String::new();
    let durations = moevm_durations();

    // 1. Simulation.
    writeln!(md, "## Scheduling: simulated makespan / lower bound\n").unwrap();
    writeln!(
        md,
        "The real plan code on a virtual clock. `critical-path` knows each task's duration (as after one \
         recorded build); `critical-path, prior only` knows none (a first build: \
         every task weighs the same, so it is Ninja's edge-count order); `ninja order` is the same queue weighted by task \
         count (Ninja's edge-count critical path); `speed` is BitBake's; `waves` is the seed design.\n"
    )
    .unwrap();
    let (_, moevm, moevm_d) = load("moevm__yocto_profiling", &durations, None, 1.0);
    let prior = expected_durations(&moevm, &vec![None; moevm.len()]);
    let ones = vec![1u64; moevm.len()];
    writeln!(
        md,
        "moevm core-image-minimal ({} tasks; work {:.0} s):\n",
        moevm.len(),
        moevm_d.iter().sum::<u64>() as f64 / 1000.0
    )
    .unwrap();
    writeln!(md, "| policy | N=4 | N=8 | N=16 |\n|---|---|---|---|").unwrap();
    let rows: Vec<(&str, Policy, &Vec<u64>)> = vec![
        ("critical-path (default)", Policy::CriticalPath, &moevm_d),
        ("critical-path, prior only", Policy::CriticalPath, &prior),
        ("ninja order (edge count)", Policy::CriticalPath, &ones),
        ("speed (BitBake)", Policy::Speed, &moevm_d),
        ("fifo", Policy::Fifo, &moevm_d),
        ("waves (seed)", Policy::Waves, &moevm_d),
    ];
    let mut default_worst: f64 = 0.0;
    for (name, policy, expected) in &rows {
        let cells: Vec<String> = [4, 8, 16]
            .iter()
            .map(|&n| {
                let s = simulate(&moevm, &moevm_d, expected, *policy, n);
                if *name == "critical-path (default)" {
                    default_worst = default_worst.max(s.ratio());
                }
                format!("{:.3}", s.ratio())
            })
            .collect();
        writeln!(md, "| {name} | {} |", cells.join(" | ")).unwrap();
    }
    let lb8 = simulate(&moevm, &moevm_d, &moevm_d, Policy::CriticalPath, 8).lower_bound_ms;
    writeln!(
        md,
        "\nGoal for the default policy, <= 1.02 at every N: {} (worst {default_worst:.3}). Lower bound at N=8: {:.1} s.\n",
        if default_worst <= 1.02 { "met" } else { "NOT met" },
        lb8 as f64 / 1000.0
    )
    .unwrap();
    writeln!(md, "Other graphs at N=8, with the moevm durations borrowed by recipe and task (else the median of the task name):\n").unwrap();
    writeln!(md, "| graph | tasks | critical-path | prior only | ninja order | speed | fifo | waves |\n|---|---|---|---|---|---|---|---|").unwrap();
    for name in [
        "spb228__embedded_linux_sandbox",
        "Tdouillet__Yocto-TP-A3S10",
        "SangTruongTan__meta-mylayer",
    ] {
        let (_, g, d) = load(name, &durations, None, 1.0);
        let prior = expected_durations(&g, &vec![None; g.len()]);
        let ones = vec![1u64; g.len()];
        let r = |p: Policy, e: &[u64]| format!("{:.3}", simulate(&g, &d, e, p, 8).ratio());
        writeln!(
            md,
            "| {name} | {} | {} | {} | {} | {} | {} | {} |",
            g.len(),
            r(Policy::CriticalPath, &d),
            r(Policy::CriticalPath, &prior),
            r(Policy::CriticalPath, &ones),
            r(Policy::Speed, &d),
            r(Policy::Fifo, &d),
            r(Policy::Waves, &d)
        )
        .unwrap();
    }
    writeln!(md).unwrap();
    common::flush(&report, &mut md);

    // 2. Real processes.
    let scale = 0.01;
    let (json, graph, _) = load(
        "moevm__yocto_profiling",
        &durations,
        Some("sleep {seconds}"),
        scale,
    );
    let lower = Duration::from_secs_f64(lb8 as f64 / 1000.0 * scale);
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path();
    std::fs::write(ws.join("g.json"), &json).unwrap();
    write_ninja(ws, &graph);
    write_make(ws, &graph);
    writeln!(md, "## Scheduling: real processes at -j8\n").unwrap();
    writeln!(
        md,
        "The moevm graph with every task a `sleep` of its duration / 100 ({} processes). Lower bound {}. \
         runqueue runs with the history of one earlier build and an empty cache (everything runs); Ninja \
         with the `.ninja_log` of one earlier build.\n",
        graph.len(),
        secs(lower)
    )
    .unwrap();
    writeln!(md, "| runner | wall | wall / lower bound |\n|---|---|---|").unwrap();
    // Warm-up runs that record durations.
    measure(&mut rq(ws, "g.json", 8, &["--cache", "warm"]));
    measure(&mut ninja(ws, 8));
    let history = ws.join("warm/journal");
    for policy in ["critical-path", "speed", "fifo", "waves"] {
        let cache = ws.join(format!("cache-{policy}"));
        std::fs::create_dir_all(&cache).unwrap();
        let status = Command::new("cp")
            .arg("-r")
            .arg(&history)
            .arg(&cache)
            .status()
            .unwrap();
        assert!(status.success());
        let (wall, _) = measure(&mut rq(
            ws,
            "g.json",
            8,
            &["--scheduler", policy, "--cache", cache.to_str().unwrap()],
        ));
        writeln!(
            md,
            "| runqueue --scheduler {policy} | {} | {:.3} |",
            secs(wall),
            wall.as_secs_f64() / lower.as_secs_f64()
        )
        .unwrap();
    }
    reset(ws);
    let (wall, _) = measure(&mut ninja(ws, 8));
    writeln!(
        md,
        "| ninja 1.13 | {} | {:.3} |",
        secs(wall),
        wall.as_secs_f64() / lower.as_secs_f64()
    )
    .unwrap();
    reset(ws);
    let (wall, _) = measure(&mut make(ws, 8));
    writeln!(
        md,
        "| make -j8 | {} | {:.3} |\n",
        secs(wall),
        wall.as_secs_f64() / lower.as_secs_f64()
    )
    .unwrap();
    common::flush(&report, &mut md);

    // 3. Overhead.
    writeln!(
        md,
        "## Overhead: 10,000 trivial tasks (`true`), tasks per second\n"
    )
    .unwrap();
    writeln!(md, "| graph | -j | runqueue --no-cache | runqueue (cache) | ninja | make | runqueue / ninja |\n|---|---|---|---|---|---|---|").unwrap();
    for (shape, chains) in [("independent", 10_000usize), ("100 chains of 100", 100)] {
        let per_chain = 10_000 / chains;
        let tasks: Vec<serde_json::Value> = (0..10_000usize)
            .map(|i| {
                let deps: Vec<String> = if i % per_chain == 0 {
                    vec![]
                } else {
                    vec![format!("t{}", i - 1)]
                };
                serde_json::json!({"id": format!("t{i}"), "deps": deps, "run": "true"})
            })
            .collect();
        let json = serde_json::json!({"version": 1, "tasks": tasks}).to_string();
        let graph = Graph::parse(&json).unwrap();
        for jobs in [2u32, 8] {
            let dir = tempfile::tempdir().unwrap();
            let ws = dir.path();
            std::fs::write(ws.join("g.json"), &json).unwrap();
            write_ninja(ws, &graph);
            write_make(ws, &graph);
            let rate = |d: Duration| 10_000.0 / d.as_secs_f64();
            let (nocache, _) = measure(&mut rq(ws, "g.json", jobs, &["--no-cache"]));
            let (cached, _) = measure(&mut rq(ws, "g.json", jobs, &["--cache", "c"]));
            let (n, _) = measure(&mut ninja(ws, jobs));
            reset(ws);
            let (m, _) = measure(&mut make(ws, jobs));
            writeln!(
                md,
                "| {shape} | {jobs} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} |",
                rate(nocache),
                rate(cached),
                rate(n),
                rate(m),
                rate(nocache) / rate(n)
            )
            .unwrap();
        }
    }
    writeln!(md).unwrap();
    common::flush(&report, &mut md);

    // 4. Scale.
    let n = 100_000usize;
    let mut x: u64 = 12345;
    let mut rnd = move |m: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % m as u64) as usize
    };
    let tasks: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            let deps: Vec<String> = if i < 100 {
                vec![]
            } else {
                (0..3)
                    .map(|_| format!("r{}:do_t", i - 1 - rnd(100.min(i))))
                    .collect()
            };
            serde_json::json!({"id": format!("r{i}:do_t"), "deps": deps, "run": "true"})
        })
        .collect();
    let json = serde_json::json!({"version": 1, "tasks": tasks}).to_string();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("big.json"), &json).unwrap();
    writeln!(
        md,
        "## Scale: a generated {n}-task graph ({:.1} MB of JSON, ~3 dependencies each)\n",
        json.len() as f64 / 1e6
    )
    .unwrap();
    writeln!(md, "| command | wall | peak memory |\n|---|---|---|").unwrap();
    for (name, args) in [
        ("runqueue check", vec!["check", "big.json"]),
        (
            "runqueue simulate -j 8",
            vec!["simulate", "big.json", "-j", "8", "--no-cache"],
        ),
    ] {
        let mut c = Command::new(runqueue_bin());
        c.args(&args).current_dir(dir.path());
        let (wall, kib) = measure(&mut c);
        writeln!(
            md,
            "| {name} | {} | {:.0} MiB |",
            secs(wall),
            kib as f64 / 1024.0
        )
        .unwrap();
    }
    writeln!(md).unwrap();
    common::flush(&report, &mut md);
}
