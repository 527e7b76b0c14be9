//! Task output reaches its log file: directly when the log exists, through
//! a pipe that creates it with the first byte when it does not.

mod common;

use common::{graph, Ws};
use runqueue_host::TaskState;

#[test]
fn logs_hold_output_and_silent_successes_leave_none() {
    let ws = Ws::new();
    let spec: &[(&str, &[&str], &str)] = &[
        ("talk:do_it", &[], "echo out; echo err >&2"),
        ("quiet:do_it", &[], "true"),
        ("mute:do_fail", &[], "exit 4"),
    ];
    let run = ws.run(&graph(spec), 3, true);
    assert_eq!(ws.read(".runqueue/logs/talk/log.do_it"), "out\nerr\n");
    assert!(
        !ws.join(".runqueue/logs/quiet/log.do_it").exists(),
        "no empty log for a silent success"
    );
    assert_eq!(run.task("mute:do_fail").state, TaskState::Failed);
    assert_eq!(
        ws.read(".runqueue/logs/mute/log.do_fail"),
        "",
        "a failure always has a log"
    );

    // A second run truncates existing logs rather than appending.
    let spec2: &[(&str, &[&str], &str)] = &[("talk:do_it", &[], "echo again")];
    ws.run(&graph(spec2), 1, false);
    assert_eq!(ws.read(".runqueue/logs/talk/log.do_it"), "again\n");
}

/// The task ends when its process does (plus a short drain), even if a
/// background process keeps its output open; what that process prints
/// while the build still runs reaches the log.
#[test]
fn a_background_process_holding_the_output_does_not_hold_up_the_task() {
    let ws = Ws::new();
    let spec: &[(&str, &[&str], &str)] = &[
        ("bg:do_it", &[], "(sleep 1; echo late) & echo early"),
        ("other:do_wait", &[], "sleep 2"),
    ];
    let run = ws.run(&graph(spec), 2, false);
    let t = run.task("bg:do_it");
    assert_eq!(t.state, TaskState::Succeeded);
    assert!(t.end_ms.unwrap() < 800, "ended at {} ms", t.end_ms.unwrap());
    assert_eq!(ws.read(".runqueue/logs/bg/log.do_it"), "early\nlate\n");
}

#[test]
fn large_output_arrives_whole() {
    let ws = Ws::new();
    // 64 MiB through the pipe, then a marker.
    let spec: &[(&str, &[&str], &str)] =
        &[("big:do_it", &[], "head -c 67108864 /dev/zero; echo END")];
    let run = ws.run(&graph(spec), 1, false);
    assert_eq!(run.task("big:do_it").state, TaskState::Succeeded);
    let log = std::fs::read(ws.join(".runqueue/logs/big/log.do_it")).unwrap();
    assert_eq!(log.len(), 67108864 + 4);
    assert!(log.ends_with(b"END\n"));
}

/// BitBake's layout: `log.<task>.<pid>`, the link `log.<task>` to the
/// latest, and `run.<task>.<pid>` with the exact command.
#[test]
fn each_run_keeps_a_log_and_run_script_per_pid_behind_a_stable_link() {
    let ws = Ws::new();
    let text = r#"{"version":1,"env":{"LANG":"C"},"tasks":[
        {"id":"zlib:do_compile","cwd":"w","run":"echo \"compiling $LANG\" && printf '%s\\n' \"it's done\""}]}"#;
    let first = ws.run(text, 1, false);
    let pid1 = first.task("zlib:do_compile").pid.unwrap();
    let dir = ws.join(".runqueue/logs/zlib");
    assert_eq!(
        std::fs::read_link(dir.join("log.do_compile"))
            .unwrap()
            .to_str()
            .unwrap(),
        format!("log.do_compile.{pid1}")
    );
    assert_eq!(
        ws.read(&format!(".runqueue/logs/zlib/log.do_compile.{pid1}")),
        "compiling C\nit's done\n"
    );
    let run = ws.read(&format!(".runqueue/logs/zlib/run.do_compile.{pid1}"));
    assert!(run.starts_with("#!/bin/sh\n"), "{run}");
    assert!(run.contains("export LANG='C'\n"), "{run}");
    assert!(
        run.ends_with("\necho \"compiling $LANG\" && printf '%s\\n' \"it's done\"\n"),
        "the exact script: {run}"
    );
    // The run script reproduces the task.
    let again = std::process::Command::new("sh")
        .arg(dir.join(format!("run.do_compile.{pid1}")))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&again.stdout),
        "compiling C\nit's done\n"
    );

    let second = ws.run(text, 1, false);
    let pid2 = second.task("zlib:do_compile").pid.unwrap();
    assert_ne!(pid1, pid2);
    assert_eq!(
        std::fs::read_link(dir.join("log.do_compile"))
            .unwrap()
            .to_str()
            .unwrap(),
        format!("log.do_compile.{pid2}"),
        "the link follows the latest run"
    );
    assert!(
        dir.join(format!("log.do_compile.{pid1}")).exists(),
        "earlier logs are kept"
    );
}

/// 2 GiB of output goes to the log through a fixed buffer: the host's
/// memory does not grow with it.
#[test]
fn huge_output_does_not_grow_memory() {
    let ws = Ws::new();
    ws.write(
        "g.json",
        r#"{"version":1,"tasks":[{"id":"loud:do_it","run":"head -c 2147483648 /dev/zero"}]}"#,
    );
    let child = common::runqueue_command(ws.path())
        .args(["build", "g.json"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let mut status = 0;
    #[allow(unsafe_code)]
    // SAFETY: wait4 on our own child with pointers to locals.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::wait4(pid, &mut status, 0, &mut usage), pid);
        usage
    };
    std::mem::forget(child);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    let log = ws.join(".runqueue/logs/loud/log.do_it");
    assert_eq!(std::fs::metadata(&log).unwrap().len(), 2 << 30);
    let peak_mib = usage.ru_maxrss / 1024;
    assert!(peak_mib < 300, "the host peaked at {peak_mib} MiB");
}
