//! Early cutoff on real processes and files: a task that reruns but leaves
//! outputs identical to an earlier run's does not make its dependents run;
//! the outputs records behind it, missing or poisoned, never give a wrong
//! result; and two workspaces sharing a remote cache share the cutoff.

mod common;

use std::path::Path;

use common::nginx::Nginx;
use common::{stderr, stdout, Ws};
use runqueue_host::{RunOptions, TaskState, Workspace};

/// A chain of `n` tasks: the first keeps the non-comment lines of
/// `src/in.txt`, each next one copies its dependency's output and adds
/// its number: every output is a pure function of its dependency's.
fn chain(n: usize) -> String {
    let mut tasks = vec![serde_json::json!({
        "id": "t0", "inputs": ["src/in.txt"], "outputs": ["out/0"],
        "run": "mkdir -p out && grep -v '^#' src/in.txt > out/0",
    })];
    for i in 1..n {
        tasks.push(serde_json::json!({
            "id": format!("t{i}"), "deps": [format!("t{}", i - 1)], "outputs": [format!("out/{i}")],
            "run": format!("{{ cat out/{}; echo {i}; }} > out/{i}", i - 1),
        }));
    }
    serde_json::json!({"version": 1, "tasks": tasks}).to_string()
}

fn chain_ws(text: &str) -> Ws {
    let ws = Ws::new();
    ws.write("src/in.txt", text);
    ws
}

/// The ids of the tasks whose process ran.
fn ran(run: &common::Run) -> Vec<String> {
    run.ids_in(TaskState::Succeeded)
}

/// The final output equals a clean build's of the same sources.
fn assert_as_clean_build(ws: &Ws, graph: &str, source: &str, output: &str) {
    let clean = chain_ws(source);
    let run = clean.run(graph, 2, false);
    assert!(run
        .report()
        .tasks
        .iter()
        .all(|t| t.state == TaskState::Succeeded));
    assert_eq!(
        std::fs::read(ws.join(output)).unwrap(),
        std::fs::read(clean.join(output)).unwrap(),
        "{output} differs from a clean build's"
    );
}

fn explain(ws: &Ws, graph: &str, task: &str) -> Vec<String> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let opts = RunOptions {
        cache: Some(runqueue_host::DEFAULT_CACHE.into()),
        ..Default::default()
    };
    let ws = Workspace::open(ws.path()).unwrap();
    rt.block_on(common::runqueue().explain(graph, task, &opts, &ws))
        .unwrap()
        .unwrap()
}

#[test]
fn a_comment_at_the_root_of_a_100_task_chain_runs_one_task() {
    let g = chain(100);
    let ws = chain_ws("# v1\nhello\n");
    assert_eq!(ran(&ws.run_cached(&g, 4)).len(), 100);
    ws.write("src/in.txt", "# v2, only a comment changed\nhello\n");
    // Before the build, t1 cannot be decided: t0 must run first.
    let before = explain(&ws, &g, "t1");
    assert!(
        before[1].starts_with("not decided: its signature covers the outputs of t0,"),
        "{before:#?}"
    );
    let second = ws.run_cached(&g, 4);
    assert_eq!(ran(&second), ["t0"]);
    let totals = &second.report().totals;
    assert_eq!((totals.cached, totals.cut_off), (99, 99));
    let t1 = second.task("t1");
    let why = t1.cut_off.as_deref().unwrap();
    assert!(
        why.starts_with("t0's outputs identical to the run of 20"),
        "{why}"
    );
    assert_eq!(
        t1.message.as_deref(),
        Some(format!("cut off: {why}").as_str())
    );
    assert_eq!(
        second.task("t99").cut_off.as_deref(),
        Some(why),
        "the reason travels down"
    );
    assert!(second.task("t99").restored, "the final output is restored");
    assert_as_clean_build(&ws, &g, "# v2, only a comment changed\nhello\n", "out/99");
    let after = explain(&ws, &g, "t1");
    assert_eq!(after[1].split(':').next(), Some("cached"), "{after:#?}");
    assert!(
        after
            .iter()
            .any(|l| l.starts_with("cut off: t0's outputs identical to the run of ")),
        "{after:#?}"
    );
    assert!(second.warnings().is_empty(), "{:?}", second.warnings());
}

#[test]
fn without_cutoff_a_comment_reruns_everything_downstream() {
    let g = chain(10);
    let ws = chain_ws("# v1\nhello\n");
    let no_cutoff = || RunOptions {
        max_parallel: Some(4),
        cache: Some(runqueue_host::DEFAULT_CACHE.into()),
        no_cutoff: true,
        ..Default::default()
    };
    assert_eq!(ran(&ws.run_with(&g, no_cutoff())).len(), 10);
    assert!(
        ran(&ws.run_with(&g, no_cutoff())).is_empty(),
        "still cached"
    );
    ws.write("src/in.txt", "# v2\nhello\n");
    let second = ws.run_with(&g, no_cutoff());
    assert_eq!(ran(&second).len(), 10);
    assert_eq!(second.report().totals.cut_off, 0);
}

#[test]
fn an_altered_output_reruns_the_whole_chain() {
    let g = chain(100);
    let ws = chain_ws("# v1\nhello\n");
    ws.run_cached(&g, 4);
    ws.write("src/in.txt", "# v1\nhello, world\n");
    let second = ws.run_cached(&g, 4);
    assert_eq!(ran(&second).len(), 100);
    assert_eq!(second.report().totals.cut_off, 0);
    assert_as_clean_build(&ws, &g, "# v1\nhello, world\n", "out/99");
}

/// top -> left -> mid, top -> right -> tail, left + right -> join; left
/// and right also read a source of their own.
const DIAMOND: &str = r#"{"version":1,"tasks":[
  {"id":"top","inputs":["src/top.txt"],"outputs":["out/top"],"run":"mkdir -p out && cp src/top.txt out/top"},
  {"id":"left","deps":["top"],"inputs":["src/left.txt"],"outputs":["out/left"],
   "run":"{ cat out/top; grep -v '^#' src/left.txt; } > out/left"},
  {"id":"right","deps":["top"],"inputs":["src/right.txt"],"outputs":["out/right"],
   "run":"{ cat out/top; grep -v '^#' src/right.txt; } > out/right"},
  {"id":"mid","deps":["left"],"outputs":["out/mid"],"run":"tac out/left > out/mid"},
  {"id":"tail","deps":["right"],"outputs":["out/tail"],"run":"tac out/right > out/tail"},
  {"id":"join","deps":["mid","tail"],"outputs":["out/join"],"run":"cat out/mid out/tail > out/join"}]}"#;

#[test]
fn in_a_diamond_exactly_the_tasks_whose_inputs_changed_rerun() {
    let ws = Ws::new();
    ws.write("src/top.txt", "top\n");
    ws.write("src/left.txt", "# a\nleft\n");
    ws.write("src/right.txt", "right\n");
    assert_eq!(ran(&ws.run_cached(DIAMOND, 4)).len(), 6);
    // A comment on the left, a real change on the right.
    ws.write("src/left.txt", "# b\nleft\n");
    ws.write("src/right.txt", "right, changed\n");
    let second = ws.run_cached(DIAMOND, 4);
    assert_eq!(ran(&second), ["left", "right", "tail", "join"]);
    assert_eq!(second.ids_in(TaskState::Cached), ["top", "mid"]);
    assert!(second
        .task("mid")
        .cut_off
        .as_deref()
        .unwrap()
        .starts_with("left's outputs identical"));
    assert!(
        second.task("top").cut_off.is_none(),
        "covered from the start, not cut off"
    );
    let mut expected = b"right, changed\ntop\n".to_vec();
    expected.splice(0..0, b"left\ntop\n".iter().copied());
    assert_eq!(std::fs::read(ws.join("out/join")).unwrap(), expected);
}

/// Every outputs record in the cache of `ws`, rewritten by `poison`.
fn rewrite_records(ws: &Ws, poison: impl Fn(&mut serde_json::Value)) -> usize {
    let eq = ws.join(".runqueue/cache/eq");
    let mut n = 0;
    for shard in std::fs::read_dir(&eq).unwrap() {
        for file in std::fs::read_dir(shard.unwrap().path()).unwrap() {
            let path = file.unwrap().path();
            let mut record: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            poison(&mut record);
            std::fs::write(&path, serde_json::to_vec(&record).unwrap()).unwrap();
            n += 1;
        }
    }
    n
}

fn remove_records(ws: &Ws) {
    std::fs::remove_dir_all(ws.join(".runqueue/cache/eq")).unwrap();
}

#[test]
fn missing_or_poisoned_records_mean_no_cutoff_never_a_wrong_output() {
    let g = chain(10);
    type Poison = (&'static str, fn(&Ws));
    let poisons: [Poison; 3] = [
        ("missing", remove_records),
        ("other digest", |ws| {
            let n = rewrite_records(ws, |r| r["outputs"] = "0".repeat(64).into());
            assert_eq!(n, 10);
        }),
        ("garbage", |ws| {
            rewrite_records(ws, |r| *r = serde_json::json!({"format": 1}));
        }),
    ];
    for (name, poison) in poisons {
        let ws = chain_ws("# v1\nhello\n");
        ws.run_cached(&g, 2);
        poison(&ws);
        ws.write("src/in.txt", "# v2\nhello\n");
        let second = ws.run_cached(&g, 2);
        // t0 reruns and writes a sound record; t1 is covered by its entry,
        // but without a sound record of its own nothing past it is cut off.
        let expected: Vec<String> = (0..10)
            .filter(|&i| i != 1)
            .map(|i| format!("t{i}"))
            .collect();
        assert_eq!(ran(&second), expected, "{name}");
        let warnings = second.warnings();
        assert_eq!(warnings.len(), 1, "{name}: said once: {warnings:?}");
        assert!(
            warnings[0].contains("no early cutoff past them"),
            "{name}: {warnings:?}"
        );
        assert_as_clean_build(&ws, &g, "# v2\nhello\n", "out/9");
        let third = ws.run_cached(&g, 2);
        assert!(ran(&third).is_empty(), "{name}: and then nothing runs");
    }
}

#[test]
fn two_workspaces_sharing_a_remote_cache_share_the_cutoff() {
    let server = Nginx::start();
    let url = server.url();
    let g = chain(20);
    let first = chain_ws("# v1\nhello\n");
    let out = first.cli_build(&g, &["--remote-cache", &url]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // Another machine, with only a comment changed: its t0 runs, and every
    // other task is found on the server once t0's outputs are known.
    let second = chain_ws("# v2, elsewhere\nhello\n");
    let out = second.cli_build(&g, &["--remote-cache", &url, "--report", "r.json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stderr(&out), "", "no warnings");
    assert!(
        stdout(&out).contains("Summary: 20 tasks: 1 succeeded, 19 cached (19 cut off),"),
        "{}",
        stdout(&out)
    );
    let report: serde_json::Value = serde_json::from_str(&second.read("r.json")).unwrap();
    assert_eq!(report["totals"]["cut_off"], 19);
    assert_eq!(
        std::fs::read(first.join("out/19")).unwrap(),
        std::fs::read(second.join("out/19")).unwrap()
    );
    assert!(
        !Path::new(&second.join("out/5")).exists(),
        "not needed, not restored"
    );
}

/// A copy, a timestamp, the working directory's path, and a task reading
/// a file the graph does not declare.
const UNREPRODUCIBLE: &str = r#"{"version":1,"tasks":[
  {"id":"same","inputs":["src/a.txt"],"outputs":["out/same"],"run":"mkdir -p out && cp src/a.txt out/same"},
  {"id":"after","deps":["same"],"outputs":["out/after"],"run":"tac out/same > out/after"},
  {"id":"clock","outputs":["out/clock"],"run":"mkdir -p out && date +%s%N > out/clock"},
  {"id":"path","outputs":["out/path"],"run":"mkdir -p out && pwd > out/path"},
  {"id":"undeclared","outputs":["out/u"],"run":"mkdir -p out && cat notes.txt > out/u"}]}"#;

#[test]
fn check_reproducible_fails_what_a_second_directory_builds_differently() {
    let ws = Ws::new();
    ws.write("src/a.txt", "a\nb\n");
    ws.write("notes.txt", "not declared\n");
    let out = ws.cli_build(
        UNREPRODUCIBLE,
        &["--check-reproducible", "--report", "r.json"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&ws.read("r.json")).unwrap();
    let task = |id: &str| {
        let t = report["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == id);
        let t = t.unwrap().clone();
        (
            t["state"].as_str().unwrap().to_string(),
            t["message"].as_str().unwrap_or("").to_string(),
        )
    };
    assert_eq!(task("same").0, "succeeded");
    assert_eq!(task("after").0, "succeeded");
    for (id, path) in [("clock", "out/clock"), ("path", "out/path")] {
        let (state, message) = task(id);
        assert_eq!(state, "failed", "{id}");
        assert!(
            message.starts_with("not reproducible: its outputs differ"),
            "{message}"
        );
        assert!(message.ends_with(path), "{message}");
    }
    let (state, message) = task("undeclared");
    assert_eq!(state, "failed");
    assert!(
        message.contains("failed in a second directory"),
        "{message}"
    );
    assert_eq!(report["totals"]["failed"], 3);
    // Both builds ran for real: the second one's outputs are in its directory.
    assert_eq!(ws.read(".runqueue/repro/out/after"), "b\na\n");
    assert_ne!(ws.read(".runqueue/repro/out/path"), ws.read("out/path"));
    assert!(!ws.join(".runqueue/cache").exists(), "nothing cached");
    let summary = stdout(&out);
    assert!(summary.contains("3 failed"), "{summary}");
}
