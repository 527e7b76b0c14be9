//! Scheduling end to end: recorded durations steer the order, pools cap
//! their tasks, simulate and import-dot through the real CLI.

mod common;

use common::paths::yocto_data;
use common::{stderr, stdout, Ws};
use runqueue_host::{RunOptions, Scheduler};

/// At -j1, a two-task chain of quick tasks beats one slow task by count,
/// but once history says how long each took, the slow one goes first.
#[test]
fn recorded_durations_reorder_the_next_build() {
    let ws = Ws::new();
    let graph = r#"{"version":1,"tasks":[
        {"id":"quick1","nostamp":true,"run":"sleep 0.05"},
        {"id":"quick2","nostamp":true,"deps":["quick1"],"run":"sleep 0.05"},
        {"id":"slow","nostamp":true,"run":"sleep 0.6"}]}"#;
    let first = ws.run_cached(graph, 1);
    assert_eq!(
        first.started_ids(),
        ["quick1", "quick2", "slow"],
        "no history: by task count"
    );
    let second = ws.run_cached(graph, 1);
    assert_eq!(
        second.started_ids(),
        ["slow", "quick1", "quick2"],
        "history: by duration"
    );
    // The other policies are selectable and ignore durations.
    let fifo = ws.run_with(
        graph,
        RunOptions {
            max_parallel: Some(1),
            scheduler: Scheduler::Fifo,
            ..Default::default()
        },
    );
    assert_eq!(fifo.started_ids(), ["quick1", "slow", "quick2"]);
}

/// Six fetches in a pool of depth 2 and four other tasks at -j8: the
/// fetches never overlap more than two at a time, everything else runs.
#[test]
fn a_pool_depth_is_never_exceeded() {
    let ws = Ws::new();
    let mut tasks = Vec::new();
    let stamp = |kind: &str, secs: &str| {
        format!(
            "echo \"$(date +%s%N) 1 {kind}\" >> times; sleep {secs}; echo \"$(date +%s%N) -1 {kind}\" >> times"
        )
    };
    for i in 0..6 {
        tasks.push(serde_json::json!({"id": format!("r{i}:do_fetch"), "pool": "fetch", "run": stamp("fetch", "0.3")}));
    }
    for i in 0..4 {
        tasks.push(
            serde_json::json!({"id": format!("r{i}:do_compile"), "run": stamp("other", "0.5")}),
        );
    }
    let graph =
        serde_json::json!({"version": 1, "pools": {"fetch": 2}, "tasks": tasks}).to_string();
    let run = ws.run(&graph, 8, false);
    assert_eq!(run.report().totals.succeeded, 10);
    let mut marks: Vec<(u128, i32, String)> = ws
        .read("times")
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[2].to_string(),
            )
        })
        .collect();
    marks.sort();
    let (mut fetch, mut all, mut peak_fetch, mut peak_all) = (0, 0, 0, 0);
    for (_, d, kind) in marks {
        all += d;
        if kind == "fetch" {
            fetch += d;
        }
        peak_fetch = peak_fetch.max(fetch);
        peak_all = peak_all.max(all);
    }
    assert_eq!(
        peak_fetch, 2,
        "the pool's depth is reached and never exceeded"
    );
    assert_eq!(peak_all, 6, "two fetches and four others ran together");
}

#[test]
fn an_unknown_pool_is_bad_input() {
    let ws = Ws::new();
    ws.write(
        "g.json",
        r#"{"version":1,"tasks":[{"id":"a","pool":"net","run":"touch ran"}]}"#,
    );
    let out = ws.cli(&["build", "g.json"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "runqueue: invalid graph g.json: task \"a\" uses pool \"net\", which the graph's \"pools\" does not define\n"
    );
    assert_eq!(ws.listing(), ["g.json"]);
}

/// The hand-computed schedule of a small graph, through the CLI.
#[test]
fn simulate_prints_the_makespan_and_the_bound() {
    let ws = Ws::new();
    ws.write(
        "g.json",
        r#"{"version":1,"tasks":[{"id":"a:do_fetch"},{"id":"b:do_fetch"},{"id":"a:do_compile","deps":["a:do_fetch"]},
            {"id":"img:do_rootfs","deps":["b:do_fetch","a:do_compile"]}]}"#,
    );
    ws.write(
        "d.tsv",
        "recipe\ttask\tseconds\na\tdo_fetch\t3\nb\tdo_fetch\t4\na\tdo_compile\t2\nimg\tdo_rootfs\t1\n",
    );
    let out = ws.cli(&["simulate", "g.json", "-j", "2", "--durations", "d.tsv"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "simulated on 2 slots with the critical-path scheduler\n\
         makespan     6.0 s\n\
         lower bound  6.0 s = max(critical path 6.0 s, work 10.0 s / 2)\n\
         ratio        1.000\n\
         peak         2 tasks at once\n\
         critical path (3 tasks, 6.0 s): a:do_fetch -> a:do_compile -> img:do_rootfs\n"
    );
    let out = ws.cli(&[
        "simulate",
        "g.json",
        "-j",
        "1",
        "--durations",
        "d.tsv",
        "--scheduler",
        "waves",
    ]);
    assert!(
        stdout(&out).contains("makespan     10.0 s\n"),
        "{}",
        stdout(&out)
    );
    assert!(
        ws.listing().iter().all(|p| !p.starts_with(".runqueue")),
        "simulate writes nothing"
    );
}

#[test]
fn import_dot_converts_a_real_yocto_graph_that_checks_and_simulates() {
    let ws = Ws::new();
    let edges = yocto_data().join("moevm__yocto_profiling.edges.txt");
    let durations = yocto_data().join("moevm__yocto_profiling.durations.tsv");
    let out = ws.cli(&[
        "import-dot",
        edges.to_str().unwrap(),
        "--run",
        "sleep {seconds}",
        "--durations",
        durations.to_str().unwrap(),
        "--scale",
        "0.01",
        "-o",
        "g.json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let check = ws.cli(&["check", "g.json"]);
    assert_eq!(check.status.code(), Some(0), "{}", stderr(&check));
    assert!(
        stdout(&check).starts_with("g.json: OK: 4256 tasks, 14308 dependencies,"),
        "{}",
        stdout(&check)
    );
    assert!(
        stdout(&check).contains("longest path (170 tasks)"),
        "{}",
        stdout(&check)
    );
    let graph = ws.read("g.json");
    assert!(
        graph.contains(r#""id":"acl:do_configure","run":"sleep 0.070""#),
        "durations scaled into the command"
    );
    // The data's reference figures: work 9843 s, critical path 964 s,
    // lower bound 1230 s at 8 slots.
    let sim = ws.cli(&[
        "simulate",
        "g.json",
        "-j",
        "8",
        "--durations",
        durations.to_str().unwrap(),
    ]);
    let text = stdout(&sim);
    assert!(
        text.contains("lower bound  1230.4 s = max(critical path 964.0 s, work 9843.0 s / 8)"),
        "{text}"
    );
    let ratio: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("ratio"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        ratio <= 1.02,
        "critical-path scheduling is within 2% of the bound: {ratio}"
    );
}

#[test]
fn import_dot_reads_bitbake_dot_files() {
    let ws = Ws::new();
    ws.write(
        "task-depends.dot",
        "digraph depends {\n\
         \"busybox.do_compile\" [label=\"busybox do_compile\\n:1.36.1-r0\\n/poky/meta/recipes-core/busybox/busybox_1.36.1.bb\"]\n\
         \"busybox.do_compile\" -> \"busybox.do_configure\"\n\
         \"busybox.do_configure\" [label=\"busybox do_configure\"]\n\
         \"busybox.do_build\" -> \"busybox.do_compile\"\n\
         }\n",
    );
    let out = ws.cli(&["import-dot", "task-depends.dot"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "{\"version\": 1, \"tasks\": [\n  \
         {\"deps\":[\"busybox:do_configure\"],\"id\":\"busybox:do_compile\"},\n  \
         {\"deps\":[],\"id\":\"busybox:do_configure\"},\n  \
         {\"deps\":[\"busybox:do_compile\"],\"id\":\"busybox:do_build\"}\n]}\n"
    );
    ws.write("cycle.txt", "a.do_x b.do_y\nb.do_y a.do_x\n");
    let out = ws.cli(&["import-dot", "cycle.txt"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "runqueue: invalid graph cycle.txt: dependency cycle: a:do_x -> b:do_y -> a:do_x\n"
    );
}
