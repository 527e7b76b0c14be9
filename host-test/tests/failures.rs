//! What happens when tasks fail: dependents never run, keep-going runs the
//! rest, spawn failures and signals are reported.

mod common;

use common::{graph, stdout, Ws};
use runqueue_host::{ExitStatus, TaskState};

const FAILING: &[(&str, &[&str], &str)] = &[
    ("bad:do_compile", &[], "sleep 0.2; echo broken; exit 3"),
    ("bad:do_install", &["bad:do_compile"], "touch bad-installed"),
    ("bad:do_package", &["bad:do_install"], "touch bad-packaged"),
    ("slow:do_compile", &[], "sleep 0.6; touch slow-done"),
    ("other:do_compile", &["slow:do_compile"], "touch other-done"),
];

#[test]
fn dependents_of_a_failure_never_run_and_nothing_new_starts() {
    let ws = Ws::new();
    let run = ws.run(&graph(FAILING), 2, false);
    let r = run.report();
    let bad = run.task("bad:do_compile");
    assert_eq!(bad.state, TaskState::Failed);
    assert_eq!(bad.exit, Some(ExitStatus::Code(3)));
    assert_eq!(bad.message.as_deref(), Some("exited with code 3"));
    assert_eq!(ws.read(".runqueue/logs/bad/log.do_compile"), "broken\n");
    for id in ["bad:do_install", "bad:do_package"] {
        assert_eq!(run.task(id).state, TaskState::NotRun);
        assert_eq!(
            run.task(id).message.as_deref(),
            Some("not run: dependency \"bad:do_compile\" failed")
        );
    }
    assert!(!ws.join("bad-installed").exists() && !ws.join("bad-packaged").exists());
    // The running task was allowed to finish; nothing new started after it.
    assert_eq!(run.task("slow:do_compile").state, TaskState::Succeeded);
    assert!(ws.join("slow-done").exists());
    assert_eq!(run.task("other:do_compile").state, TaskState::NotRun);
    assert!(!ws.join("other-done").exists());
    assert_eq!(
        (r.totals.succeeded, r.totals.failed, r.totals.not_run),
        (1, 1, 3)
    );
}

#[test]
fn keep_going_runs_everything_that_does_not_depend_on_the_failure() {
    let ws = Ws::new();
    let run = ws.run(&graph(FAILING), 2, true);
    assert!(ws.join("other-done").exists());
    assert!(!ws.join("bad-installed").exists());
    let r = run.report();
    assert_eq!(
        (r.totals.succeeded, r.totals.failed, r.totals.not_run),
        (2, 1, 2)
    );
}

#[test]
fn cli_exit_code_and_summary_name_the_failure() {
    let ws = Ws::new();
    ws.write("g.json", &graph(FAILING));
    let out = ws.cli(&["build", "g.json", "-j", "2", "-k"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    let pid = common::printed_pid(&text, "bad:do_compile");
    let log = ws
        .path()
        .canonicalize()
        .unwrap()
        .join(format!(".runqueue/logs/bad/log.do_compile.{pid}"));
    assert!(
        text.contains(&format!(
            "FAILED   bad:do_compile: exited with code 3\nLogfile of failure stored in: {}\n",
            log.display()
        )),
        "{text}"
    );
    assert!(
        text.contains(
            "Summary: 5 tasks: 2 succeeded, 0 cached, 1 failed, 2 not run. Peak parallelism 2 (limit 2)."
        ),
        "{text}"
    );
    assert!(
        text.contains("Failed tasks:\n  bad:do_compile: exited with code 3"),
        "{text}"
    );
    assert!(
        text.contains("  bad:do_install: not run: dependency \"bad:do_compile\" failed"),
        "{text}"
    );
}

#[test]
fn a_missing_program_fails_cleanly() {
    let ws = Ws::new();
    let text = r#"{"version":1,"tasks":[
        {"id":"ghost","argv":["no-such-program-anywhere","x"]},
        {"id":"after","deps":["ghost"],"run":"touch after"}]}"#;
    let run = ws.run(text, 2, true);
    let t = run.task("ghost");
    assert_eq!(t.state, TaskState::Failed);
    assert_eq!(t.exit, None);
    assert_eq!(t.pid, None);
    assert_eq!(
        t.message.as_deref(),
        Some("cannot start: program \"no-such-program-anywhere\" not found")
    );
    assert_eq!(run.task("after").state, TaskState::NotRun);
    assert!(!ws.join("after").exists());
}

#[test]
fn a_task_killed_by_a_signal_is_reported_as_such() {
    let ws = Ws::new();
    let spec: &[(&str, &[&str], &str)] = &[
        ("shot", &[], "kill -TERM $$; sleep 5"),
        ("segv", &[], "kill -SEGV $$"),
    ];
    let run = ws.run(&graph(spec), 2, true);
    let t = run.task("shot");
    assert_eq!(t.state, TaskState::Failed);
    assert_eq!(t.exit, Some(ExitStatus::Signal(15)));
    assert_eq!(t.message.as_deref(), Some("killed by signal 15 (SIGTERM)"));
    assert_eq!(
        run.task("segv").message.as_deref(),
        Some("killed by signal 11 (SIGSEGV)")
    );
}

#[test]
fn a_cwd_symlinked_out_of_the_workspace_is_refused_by_the_host() {
    // A symlink there before the run is bad input (see bad_input.rs); one
    // that an earlier task makes is caught by the host when it starts the
    // next process.
    let ws = Ws::new();
    let outside = tempfile::tempdir().unwrap();
    let text = format!(
        r#"{{"version":1,"tasks":[{{"id":"link","run":"ln -s {} escape"}},
            {{"id":"t","deps":["link"],"cwd":"escape/sub","run":"touch x"}}]}}"#,
        outside.path().display()
    );
    let run = ws.run(&text, 1, false);
    let t = run.task("t");
    assert_eq!(t.state, TaskState::Failed);
    assert_eq!(
        t.message.as_deref(),
        Some("cannot start: \"escape/sub\" leads out of the workspace through a symlink")
    );
    assert_eq!(
        std::fs::read_dir(outside.path()).unwrap().count(),
        0,
        "nothing written outside"
    );
}

#[test]
fn an_allow_list_refuses_other_programs() {
    let ws = Ws::new();
    ws.write(
        "g.json",
        r#"{"version":1,"tasks":[
        {"id":"direct","argv":["touch","direct.txt"]},
        {"id":"allowed","argv":["mkdir","-p","made"]},
        {"id":"shell","run":"touch shell.txt"}]}"#,
    );
    let out = ws.cli(&["build", "g.json", "-k", "--allow-program", "mkdir"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains(
            "FAILED   direct: cannot start: program \"touch\" is not allowed (see --allow-program)"
        ),
        "{text}"
    );
    assert!(!ws.join("direct.txt").exists());
    assert!(ws.join("made").is_dir() && ws.join("shell.txt").exists());
}

/// A FIFO is never opened as an output or an input: storing one with no
/// writer would block the build for ever. As an output it fails its task
/// (cache on or off); inside an input directory it is bad input.
#[test]
fn fifos_fail_their_task_or_the_graph_and_never_hang() {
    let ws = Ws::new();
    let g = r#"{"version":1,"tasks":[
      {"id":"a","run":"mkdir -p out && mkfifo out/p && echo x > out/f","outputs":["out"]},
      {"id":"b","deps":["a"],"run":"touch b"}]}"#;
    ws.write("g.json", g);
    for extra in [&[][..], &["--no-cache"]] {
        let _ = std::fs::remove_dir_all(ws.join("out"));
        let out = ws.cli_within(30, &[&["build", "g.json"], extra].concat());
        assert_eq!(out.status.code(), Some(1), "{extra:?}");
        assert!(
            stdout(&out).contains("a: output \"out/p\" is a FIFO, socket or device"),
            "{}",
            stdout(&out)
        );
        assert!(!ws.join("b").exists(), "the dependent never ran");
    }
    std::fs::create_dir_all(ws.join("in")).unwrap();
    let fifo = std::ffi::CString::new(ws.join("in/p").to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    ws.write(
        "i.json",
        r#"{"version":1,"tasks":[{"id":"c","run":"touch c","inputs":["in"]}]}"#,
    );
    let out = ws.cli_within(30, &["build", "i.json"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        common::stderr(&out),
        "runqueue: invalid graph i.json: cannot read in/p: not a regular file (a FIFO, socket or device)\n"
    );
    assert!(!ws.join("c").exists());
}

/// A task that swaps a directory for a symlink leading out (its own cwd,
/// or the log directory of its recipe) cannot make a later task write
/// outside: every path is checked when it is used, not remembered.
///
/// The swap moves the directory aside rather than deleting it: runqueue
/// is still writing the task's log there while it runs, so `rm -rf` of
/// the log directory would race with that writer (rmdir: not empty).
#[test]
fn a_directory_swapped_for_a_symlink_out_is_caught_when_used() {
    let outside = tempfile::tempdir().unwrap();
    let out = outside.path().display();
    for (what, swap) in [
        ("cwd", format!("cd .. && mv w w.old && ln -s {out} w")),
        (
            "log dir",
            format!("mv ../.runqueue/logs/r ../r.old && ln -s {out} ../.runqueue/logs/r"),
        ),
    ] {
        let ws = Ws::new();
        let g = format!(
            r#"{{"version":1,"tasks":[
              {{"id":"r:do_a","cwd":"w","run":"echo a; {swap}"}},
              {{"id":"r:do_b","cwd":"w","deps":["r:do_a"],"run":"echo b; touch made-by-b"}}]}}"#
        );
        let out = ws.cli_build(&g, &["--no-cache"]);
        assert_eq!(out.status.code(), Some(1), "{what}: {}", stdout(&out));
        assert!(
            stdout(&out).contains("leads out of the workspace through a symlink"),
            "{what}: {}",
            stdout(&out)
        );
        let listing: Vec<_> = std::fs::read_dir(outside.path()).unwrap().collect();
        assert!(listing.is_empty(), "{what}: written outside: {listing:?}");
    }
}
