//! A task that runs too long is stopped with its whole process group and
//! fails saying so; its dependents never run.

mod common;

use std::time::Duration;

use common::{process_is_running, stderr, stdout, Ws};
use runqueue_host::{RunOptions, TaskState};

#[test]
fn a_timed_out_task_and_its_background_children_are_stopped() {
    let ws = Ws::new();
    // The shell starts a background sleep, records its pid, and waits.
    let graph = r#"{"version":1,"tasks":[
        {"id":"hang:do_fetch","timeout":0.5,"run":"sleep 60 & echo $! > bg.pid; sleep 60"},
        {"id":"hang:do_unpack","deps":["hang:do_fetch"],"run":"touch unpacked"},
        {"id":"quick:do_it","run":"true"}]}"#;
    let run = ws.run(graph, 2, true);
    let t = run.task("hang:do_fetch");
    assert_eq!(t.state, TaskState::Failed);
    assert_eq!(t.message.as_deref(), Some("timed out after 0.5 s"));
    assert!(
        t.end_ms.unwrap() < 3000,
        "stopped promptly: {} ms",
        t.end_ms.unwrap()
    );
    assert_eq!(run.task("hang:do_unpack").state, TaskState::NotRun);
    assert!(!ws.join("unpacked").exists());
    assert_eq!(run.task("quick:do_it").state, TaskState::Succeeded);
    let bg: i32 = ws.read("bg.pid").trim().parse().unwrap();
    // SIGTERM reached the whole group; give the kernel a moment.
    let mut gone = false;
    for _ in 0..50 {
        if !process_is_running(bg) {
            gone = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(gone, "the background sleep {bg} was left running");
}

#[test]
fn a_task_ignoring_sigterm_is_killed_after_the_grace_period() {
    let ws = Ws::new();
    let graph = r#"{"version":1,"tasks":[
        {"id":"stubborn","run":"trap '' TERM; echo $$ > me.pid; while true; do sleep 0.1; done"}]}"#;
    let run = ws.run_with(
        graph,
        RunOptions {
            max_parallel: Some(1),
            timeout: Some(Duration::from_millis(300)),
            ..Default::default()
        },
    );
    let t = run.task("stubborn");
    assert_eq!(t.message.as_deref(), Some("timed out after 0.3 s"));
    // TERM is ignored; KILL comes 2 s later.
    assert!(
        t.end_ms.unwrap() >= 2000 && t.end_ms.unwrap() < 5000,
        "{} ms",
        t.end_ms.unwrap()
    );
    let pid: i32 = ws.read("me.pid").trim().parse().unwrap();
    assert!(!process_is_running(pid));
}

#[test]
fn the_cli_default_timeout_and_bad_values() {
    let ws = Ws::new();
    ws.write("g.json", r#"{"version":1,"tasks":[{"id":"slow","run":"sleep 30"},{"id":"own","timeout":5,"run":"sleep 1"}]}"#);
    let out = ws.cli(&["build", "g.json", "--timeout", "0.4", "-k"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("FAILED   slow: timed out after 0.4 s"),
        "{text}"
    );
    assert!(
        text.contains("] done     own in "),
        "the task's own timeout wins: {text}"
    );
    let bad = ws.cli(&["build", "g.json", "--timeout", "-3"]);
    assert_eq!(bad.status.code(), Some(2));
    ws.write(
        "bad.json",
        r#"{"version":1,"tasks":[{"id":"a","timeout":0}]}"#,
    );
    let bad = ws.cli(&["build", "bad.json"]);
    assert_eq!(bad.status.code(), Some(2));
    assert_eq!(
        stderr(&bad),
        "runqueue: invalid graph bad.json: task \"a\": \"timeout\" must be a positive number of seconds below 1e9\n"
    );
}

/// A descendant that left the task's process group (`setsid`) and holds
/// its output pipe neither delays the timeout nor outlives the build: it
/// is killed once the task is stopped, and the log says so; a successful
/// task's such descendant is killed when the build ends, with a warning.
#[test]
fn processes_that_escaped_the_group_are_killed_too() {
    let ws = Ws::new();
    let g = r#"{"version":1,"tasks":[
      {"id":"a","run":"setsid sleep 301 & echo $! > a.pid; sleep 30","timeout":1},
      {"id":"b","run":"setsid sleep 302 & echo $! > b.pid"}]}"#;
    let started = std::time::Instant::now();
    let out = ws.cli_build(g, &["-k", "--no-cache"]);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("a: timed out after 1 s"),
        "{}",
        stdout(&out)
    );
    for task in ["a", "b"] {
        let pid: i32 = ws.read(&format!("{task}.pid")).trim().parse().unwrap();
        assert!(
            !process_is_running(pid),
            "{task}'s escaped child {pid} still runs"
        );
    }
    let a_pid = ws.read("a.pid");
    assert!(
        ws.read(".runqueue/logs/log.a").contains(&format!(
            "runqueue: killed what the task left running outside its process group: {} (sleep)",
            a_pid.trim()
        )),
        "{}",
        ws.read(".runqueue/logs/log.a")
    );
    assert!(
        stderr(&out).contains("runqueue: warning: killed 1 process(es) that tasks left running"),
        "{}",
        stderr(&out)
    );
}
