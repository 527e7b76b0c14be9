//! One build per workspace: a second build waits for the first (saying
//! once who holds the workspace) or, with `--no-wait`, exits 2; a build
//! killed with SIGKILL leaves no stale lock; a build nested in the build
//! holding its workspace is refused rather than waiting for ever; the
//! read-only commands run beside a build.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{runqueue_command, stderr, stdout, Ws};

/// A task that notes its start and end in `log` and, between them, waits
/// for the file `go`: the test decides when a build ends.
const GATED: &str = r#"{"version":1,"tasks":[{"id":"t","nostamp":true,
  "run":"echo start >> log; until [ -e go ]; do sleep 0.02; done; echo end >> log"}]}"#;

fn start_build(ws: &Ws, args: &[&str]) -> Child {
    runqueue_command(ws.path())
        .args([&["build", "g.json", "--no-cache"], args].concat())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until `rel` in `ws` holds `text`.
fn wait_for(ws: &Ws, rel: &str, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_to_string(ws.join(rel)).unwrap_or_default() != text {
        assert!(Instant::now() < deadline, "{rel} never became {text:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A running first build, its task started.
fn holding_build(ws: &Ws) -> Child {
    ws.write("g.json", GATED);
    let first = start_build(ws, &[]);
    wait_for(ws, "log", "start\n");
    first
}

fn busy_message(ws: &Ws, holder: &Child) -> String {
    let root = std::fs::canonicalize(ws.path()).unwrap();
    format!(
        "runqueue: workspace {} is in use by another build (pid {})",
        root.display(),
        holder.id()
    )
}

fn finish(child: Child) -> std::process::Output {
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    out
}

#[test]
fn a_second_build_waits_for_the_first_saying_once_who_holds_the_workspace() {
    let ws = Ws::new();
    let first = holding_build(&ws);
    let mut second = start_build(&ws, &[]);
    let mut err = BufReader::new(second.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    let want = format!("{}; waiting for it to finish…\n", busy_message(&ws, &first));
    assert_eq!(line, want);
    // The second build runs nothing while the first holds the workspace.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(ws.read("log"), "start\n");
    ws.write("go", "");
    finish(first);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    assert!(!rest.contains("in use"), "said once: {rest}");
    finish(second);
    assert_eq!(
        ws.read("log"),
        "start\nend\nstart\nend\n",
        "one after the other"
    );
}

#[test]
fn with_no_wait_a_second_build_exits_2_naming_the_holder_and_writes_nothing() {
    let ws = Ws::new();
    let first = holding_build(&ws);
    let out = ws.cli(&[
        "build",
        "g.json",
        "--no-cache",
        "--no-wait",
        "--report",
        "r.json",
        "--logs",
        "second-logs",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert_eq!(stderr(&out), format!("{}\n", busy_message(&ws, &first)));
    assert!(!ws.join("r.json").exists() && !ws.join("second-logs").exists());
    ws.write("go", "");
    finish(first);
    assert_eq!(ws.read("log"), "start\nend\n");
}

#[test]
fn a_build_killed_with_sigkill_leaves_no_stale_lock() {
    let ws = Ws::new();
    let mut first = holding_build(&ws);
    first.kill().unwrap();
    first.wait().unwrap();
    ws.write("go", "");
    let out = ws.cli_within(60, &["build", "g.json", "--no-cache", "--no-wait"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn a_build_nested_in_the_build_holding_its_workspace_is_refused_not_left_waiting() {
    let ws = Ws::new();
    ws.write(
        "inner.json",
        r#"{"version":1,"tasks":[{"id":"i","run":"touch inner-ran"}]}"#,
    );
    let (rq, component) = (env!("CARGO_BIN_EXE_runqueue"), common::component_path());
    let run = format!(
        "'{rq}' --component '{}' build inner.json --no-cache 2> inner-err; echo $? > inner-exit",
        component.display()
    );
    let outer = serde_json::json!({"version": 1, "tasks": [{"id": "outer", "run": run}]});
    ws.write("g.json", &outer.to_string());
    let out = ws.cli_within(60, &["build", "g.json", "--no-cache"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(ws.read("inner-exit"), "2\n");
    let root = std::fs::canonicalize(ws.path()).unwrap();
    let want = format!(
        "runqueue: workspace {} is in use by the build that runs this one (pid ",
        root.display()
    );
    assert!(
        ws.read("inner-err").starts_with(&want),
        "{}",
        ws.read("inner-err")
    );
    assert!(!ws.join("inner-ran").exists());
}

#[test]
fn plan_explain_check_and_simulate_run_beside_a_build() {
    let ws = Ws::new();
    let first = holding_build(&ws);
    for args in [
        &["plan", "g.json"][..],
        &["explain", "g.json", "t"],
        &["check", "g.json"],
        &["simulate", "g.json"],
    ] {
        let out = ws.cli_within(30, args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
    }
    ws.write("go", "");
    finish(first);
}
