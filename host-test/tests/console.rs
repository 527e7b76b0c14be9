//! What a person and a machine see: failure blocks with log tails, plain
//! lines without escape codes, the live status on a terminal, and the
//! --report, --trace and --chart files.

mod common;

use common::{stderr, stdout, Ws};

/// Two tasks succeed, one prints 30 lines and fails, one never runs.
const GRAPH: &str = r#"{"version":1,"tasks":[
  {"id":"a:do_fetch","run":"sleep 0.2"},
  {"id":"b:do_fetch","run":"sleep 0.1; echo fetched"},
  {"id":"a:do_compile","deps":["a:do_fetch"],"run":"for i in $(seq 1 30); do echo line $i; done; exit 2"},
  {"id":"a:do_install","deps":["a:do_compile"],"run":"true"}]}"#;

/// Builds `GRAPH` at -j2 with --keep-going, and `extra`.
fn build_failing_graph(ws: &Ws, extra: &[&str]) -> std::process::Output {
    ws.cli_build(GRAPH, &[&["-j", "2", "-k"], extra].concat())
}

#[test]
fn a_failure_shows_its_log_path_and_last_lines_twice() {
    let ws = Ws::new();
    let out = build_failing_graph(&ws, &["--tail", "3"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    let pid = common::printed_pid(&text, "a:do_compile");
    let log = ws
        .path()
        .canonicalize()
        .unwrap()
        .join(format!(".runqueue/logs/a/log.do_compile.{pid}"));
    let block = format!(
        "Logfile of failure stored in: {}\nLog data follows (last 3 lines):\n| line 28\n| line 29\n| line 30\n",
        log.display()
    );
    assert!(
        text.contains(&format!(
            "FAILED   a:do_compile: exited with code 2\n{block}"
        )),
        "{text}"
    );
    let summary = text
        .split("Failed tasks:\n")
        .nth(1)
        .expect("a summary of failures");
    let indented: String = block.lines().map(|l| format!("  {l}\n")).collect();
    assert!(
        summary.starts_with(&format!("  a:do_compile: exited with code 2\n{indented}")),
        "{summary}"
    );
    assert_eq!(
        text.matches("Logfile of failure stored in:").count(),
        2,
        "once live, once in the summary"
    );
}

#[test]
fn output_to_a_pipe_has_no_escape_codes() {
    let ws = Ws::new();
    let out = build_failing_graph(&ws, &[]);
    assert!(!stdout(&out).contains('\x1b') && !stderr(&out).contains('\x1b'));
    assert!(stdout(&out).contains("] started  a:do_fetch (pid "));
    let quiet = build_failing_graph(&ws, &["--quiet"]);
    let text = stdout(&quiet);
    assert!(
        !text.contains("started") && !text.contains("] done"),
        "{text}"
    );
    assert!(
        text.contains("FAILED   a:do_compile") && text.contains("Tasks Summary:"),
        "{text}"
    );
}

#[test]
fn a_terminal_gets_a_live_status() {
    let ws = Ws::new();
    ws.write("g.json", GRAPH);
    // `script` gives the command a pseudo-terminal.
    let cmd = format!("{} build g.json -j 2 -k", env!("CARGO_BIN_EXE_runqueue"));
    let out = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .current_dir(ws.path())
        .env("RUNQUEUE_COMPONENT", common::component_path())
        .output()
        .expect("script(1) from util-linux");
    let text = stdout(&out);
    assert!(
        text.contains("\x1b[J"),
        "the status block is redrawn in place: {text:?}"
    );
    assert!(
        text.contains("[0/4] 0 done, 0 cached, 2 running, 0 failed, 2 left"),
        "{text:?}"
    );
    assert!(
        text.contains("  a:do_fetch "),
        "running tasks are listed: {text:?}"
    );
    assert!(
        !text.contains("] started  "),
        "no per-task lines on a terminal"
    );
    assert!(text.contains("Tasks Summary: Attempted 4 tasks"));
}

#[test]
fn the_json_report_has_the_documented_shape_and_agrees_with_the_console() {
    let ws = Ws::new();
    let out = build_failing_graph(&ws, &["--report", "r.json"]);
    let r: serde_json::Value = serde_json::from_str(&ws.read("r.json")).unwrap();
    assert_eq!(r["version"], 1);
    let tasks = r["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 4);
    let keys = [
        "id",
        "state",
        "signature",
        "exit",
        "start_ms",
        "end_ms",
        "duration_ms",
        "cached",
        "restored",
        "cut_off",
        "peak_memory",
        "oom_rerun",
        "held_by",
        "ran_on",
        "remote_cached",
        "pid",
        "log",
        "message",
    ];
    for t in tasks {
        let obj = t.as_object().unwrap();
        assert_eq!(obj.len(), keys.len(), "{t}");
        for k in keys {
            assert!(obj.contains_key(k), "{k} missing in {t}");
        }
        assert!(
            ["succeeded", "failed", "not-run", "cached"].contains(&t["state"].as_str().unwrap())
        );
        assert_eq!(t["signature"].as_str().unwrap().len(), 64);
        assert!(t["held_by"].is_array() && t["oom_rerun"] == false);
    }
    // Tasks that ran have their peak memory measured.
    assert!(
        tasks[0]["peak_memory"].as_u64().unwrap() > 100_000,
        "{}",
        tasks[0]
    );
    assert_eq!(tasks[2]["exit"], serde_json::json!({"code": 2}));
    assert_eq!(tasks[3]["exit"], serde_json::Value::Null);
    assert_eq!(
        tasks[0]["duration_ms"].as_u64().unwrap(),
        tasks[0]["end_ms"].as_u64().unwrap() - tasks[0]["start_ms"].as_u64().unwrap()
    );
    let totals = &r["totals"];
    let summary = format!(
        "Summary: {} tasks: {} succeeded, {} cached, {} failed, {} not run. Peak parallelism {} (limit {}).",
        totals["total"], totals["succeeded"], totals["cached"], totals["failed"], totals["not_run"],
        totals["peak_parallel"], totals["max_parallel"]
    );
    assert!(
        stdout(&out).contains(&summary),
        "{summary}\n{}",
        stdout(&out)
    );
    assert_eq!(summary, "Summary: 4 tasks: 2 succeeded, 0 cached, 1 failed, 1 not run. Peak parallelism 2 (limit 2).");
    assert_eq!(
        r["critical_path"],
        serde_json::json!(["a:do_fetch", "a:do_compile", "a:do_install"])
    );
}

#[test]
fn the_trace_has_one_complete_event_per_executed_task() {
    let ws = Ws::new();
    build_failing_graph(&ws, &["--trace", "t.json"]);
    let t: serde_json::Value = serde_json::from_str(&ws.read("t.json")).unwrap();
    let events = t["traceEvents"].as_array().unwrap();
    let complete: Vec<&str> = events
        .iter()
        .filter(|e| e["ph"] == "X")
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    let mut names = complete.clone();
    names.sort();
    assert_eq!(
        names,
        ["a:do_compile", "a:do_fetch", "b:do_fetch"],
        "executed tasks, each once"
    );
    for e in events.iter().filter(|e| e["ph"] == "X") {
        assert!(
            e["ts"].as_u64().is_some()
                && e["dur"].as_u64().is_some()
                && e["tid"].as_u64().unwrap() < 2
        );
    }
}

#[test]
fn the_chart_is_svg_with_one_bar_per_executed_task() {
    let ws = Ws::new();
    build_failing_graph(&ws, &["--chart", "c.svg"]);
    let svg = ws.read("c.svg");
    let doc = roxmltree::Document::parse(&svg).expect("well-formed XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let bars: Vec<String> = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("task"))
        .map(|n| {
            n.children()
                .find(|c| c.has_tag_name("title"))
                .unwrap()
                .text()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(bars.len(), 3, "{bars:?}");
    assert!(
        bars.iter().any(|b| b.starts_with("a:do_compile: failed")),
        "{bars:?}"
    );
    let outlined = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("task") && n.attribute("stroke").is_some())
        .count();
    assert_eq!(
        outlined, 2,
        "the critical path's executed tasks are outlined"
    );
}

#[test]
fn the_logs_directory_is_configurable_and_confined() {
    let ws = Ws::new();
    let out = build_failing_graph(&ws, &["--logs", "build/tmp/logs"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(ws.read("build/tmp/logs/b/log.do_fetch"), "fetched\n");
    assert!(!ws.join(".runqueue/logs").exists());

    let ws = Ws::new();
    let out = build_failing_graph(&ws, &["--logs", "../elsewhere"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "runqueue: log directory \"../elsewhere\" leaves the workspace (use a relative path without \"..\")\n"
    );
    assert_eq!(ws.listing(), ["g.json"]);
}

#[test]
fn a_silent_task_gets_a_stall_warning_and_a_chatty_one_does_not() {
    let ws = Ws::new();
    ws.write(
        "g.json",
        r#"{"version":1,"tasks":[
          {"id":"r:do_quiet","run":"sleep 2.7"},
          {"id":"r:do_chatty","run":"for i in 1 2 3 4 5 6 7 8 9; do echo $i; sleep 0.3; done"}]}"#,
    );
    let out = ws.cli(&[
        "build",
        "g.json",
        "-j",
        "2",
        "--no-cache",
        "--stall-warning",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let pid = common::printed_pid(&stdout(&out), "r:do_quiet");
    let warnings: Vec<String> = stderr(&out)
        .lines()
        .filter(|l| l.starts_with("runqueue: warning:"))
        .map(str::to_string)
        .collect();
    assert_eq!(
        warnings,
        [1, 2].map(|n| format!(
            "runqueue: warning: r:do_quiet has printed nothing for {n}s (pid {pid}); is it stuck?"
        )),
        "one warning per second of silence, none for the task that prints"
    );

    let out = ws.cli(&[
        "build",
        "g.json",
        "-j",
        "2",
        "--no-cache",
        "--stall-warning",
        "0",
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
}

/// Report files may name directories that do not exist yet (the build
/// makes `.runqueue` itself): they are made when the file is written.
#[test]
fn report_files_get_their_directories_made() {
    let ws = Ws::new();
    let out = ws.cli_build(
        r#"{"version":1,"tasks":[{"id":"a","run":"true"}]}"#,
        &["--report", ".runqueue/r.json", "--trace", "deep/er/t.json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(ws.join(".runqueue/r.json").is_file());
    assert!(ws.join("deep/er/t.json").is_file());
}
