//! Ctrl-C: the first stops starting tasks and waits for the running ones,
//! the second kills them. Either way the report is written and no process
//! is left behind.

mod common;

use std::time::{Duration, Instant};

use common::{process_is_running, stderr, stdout, Ws};

fn start(ws: &Ws, graph: &str) -> std::process::Child {
    ws.write("g.json", graph);
    common::runqueue_command(ws.path())
        .args(["build", "g.json", "-j", "2", "--report", "r.json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until every file in `names` exists in the workspace.
fn wait_for_files(ws: &Ws, names: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !names.iter().all(|n| ws.join(n).exists()) {
        assert!(Instant::now() < deadline, "tasks never started");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The pid a task wrote to `name`, once the whole line is there (the file
/// exists before the shell has written to it).
fn read_pid(ws: &Ws, name: &str) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(ws.join(name)).unwrap_or_default();
        if let Some(line) = text.strip_suffix('\n') {
            return line.parse().unwrap();
        }
        assert!(Instant::now() < deadline, "no pid in {name}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn interrupt(child: &std::process::Child) {
    #[allow(unsafe_code)]
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
}

#[test]
fn one_interrupt_lets_running_tasks_finish_and_starts_nothing_new() {
    let ws = Ws::new();
    let child = start(
        &ws,
        r#"{"version":1,"tasks":[
        {"id":"a","run":"touch a.started; sleep 1.5; touch a.done"},
        {"id":"b","run":"touch b.started; sleep 1.5; touch b.done"},
        {"id":"c","run":"touch c.done"},{"id":"d","deps":["a"],"run":"touch d.done"}]}"#,
    );
    wait_for_files(&ws, &["a.started", "b.started"]);
    interrupt(&child);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        ws.join("a.done").exists() && ws.join("b.done").exists(),
        "running tasks finished"
    );
    assert!(
        !ws.join("c.done").exists() && !ws.join("d.done").exists(),
        "nothing new started"
    );
    assert!(
        stderr(&out).contains(
            "runqueue: warning: interrupted: starting nothing new, waiting for 2 running task(s) to finish \
             (interrupt again to kill them): a, b"
        ),
        "{}",
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("  c: not run: the build was interrupted"),
        "{}",
        stdout(&out)
    );
    let report: serde_json::Value = serde_json::from_str(&ws.read("r.json")).unwrap();
    let states: Vec<&str> = report["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["succeeded", "succeeded", "not-run", "not-run"]);
}

#[test]
fn a_second_interrupt_kills_running_tasks_and_leaves_no_process() {
    let ws = Ws::new();
    let child = start(
        &ws,
        r#"{"version":1,"tasks":[
        {"id":"a","run":"sleep 60 & echo $! > a.bg; echo $$ > a.pid; wait"},
        {"id":"b","run":"sleep 60 & echo $! > b.bg; echo $$ > b.pid; wait"},
        {"id":"c","run":"touch c.done"}]}"#,
    );
    wait_for_files(&ws, &["a.pid", "b.pid", "a.bg", "b.bg"]);
    let pids: Vec<i32> = ["a.pid", "b.pid", "a.bg", "b.bg"]
        .iter()
        .map(|f| ws.read(f).trim().parse().unwrap())
        .collect();
    let t0 = Instant::now();
    interrupt(&child);
    std::thread::sleep(Duration::from_millis(300));
    interrupt(&child);
    let out = child.wait_with_output().unwrap();
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t0.elapsed()
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("runqueue: interrupted again: killing the running tasks"));
    assert!(
        stdout(&out).contains("FAILED   a: killed by signal 9 (SIGKILL)"),
        "{}",
        stdout(&out)
    );
    assert!(!ws.join("c.done").exists());
    for pid in pids {
        assert!(!process_is_running(pid), "process {pid} outlived the build");
    }
    let report: serde_json::Value = serde_json::from_str(&ws.read("r.json")).unwrap();
    assert_eq!(report["totals"]["failed"], 2);
    assert_eq!(report["totals"]["not_run"], 1);
}

/// SIGKILL of the host cannot be caught; its watchdog (a second process
/// told of every task's process group) kills the tasks instead. A re-run
/// then completes.
#[test]
fn tasks_do_not_outlive_a_killed_host() {
    let ws = Ws::new();
    let graph = r#"{"version":1,"tasks":[
        {"id":"a","outputs":["a.out"],"run":"sleep 60 & echo $! > a.bg; echo $$ > a.pid; wait; touch a.out"},
        {"id":"b","outputs":["b.out"],"run":"echo b > b.out"}]}"#;
    let mut child = start(&ws, graph);
    let pids: Vec<i32> = ["a.pid", "a.bg"].iter().map(|f| read_pid(&ws, f)).collect();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|&p| process_is_running(p)) {
        assert!(
            Instant::now() < deadline,
            "tasks outlived the host: {pids:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // A clean re-run, with the task quick this time.
    ws.write(
        "g.json",
        &graph.replace("sleep 60 & echo $! > a.bg; echo $$ > a.pid; wait; ", ""),
    );
    let out = ws.cli(&["build", "g.json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(ws.join("a.out").exists() && ws.join("b.out").exists());
}
