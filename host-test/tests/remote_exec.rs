//! Remote execution against a real BuildGrid (REAPI v2) with PostgreSQL,
//! started on loopback by each test, and `runqueue worker`s as its bots:
//! outputs, where tasks ran, the remote action cache, workers dying and
//! the server going away, cancellation, bad addresses.

mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::buildgrid::BuildGrid;
use common::{stderr, Ws};
use serde_json::Value;

/// A `runqueue worker` serving `grid`, killed (with what it runs) when
/// dropped.
struct Worker {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Worker {
    fn start(grid: &BuildGrid, name: &str, capacity: u32) -> Worker {
        Worker::start_as(grid, Some(name), capacity)
    }

    /// A worker named `name`, or by its default.
    fn start_as(grid: &BuildGrid, name: Option<&str>, capacity: u32) -> Worker {
        let dir = tempfile::tempdir().unwrap();
        let named = name.map(|n| ["--name", n]);
        let child = Command::new(env!("CARGO_BIN_EXE_runqueue"))
            .args([
                "worker",
                "--server",
                &grid.url(),
                "--instance",
                grid.instance(),
            ])
            .args(["--capacity", &capacity.to_string()])
            .args(named.iter().flatten())
            .arg("--workdir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("worker.log")).unwrap())
            .spawn()
            .expect("start runqueue worker");
        Worker { child, _dir: dir }
    }

    fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().unwrap().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill_hard();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self._dir.path().join("worker.log"));
            eprintln!("{}", log.unwrap_or_default());
        }
    }
}

/// A build of `g.json` in `ws`, remotely when `grid` is given; the report
/// lands in r.json.
fn build(ws: &Ws, grid: Option<&BuildGrid>, extra: &[&str]) -> Output {
    let mut args = vec![
        "build".to_string(),
        "g.json".into(),
        "--report".into(),
        "r.json".into(),
    ];
    if let Some(g) = grid {
        args.extend([
            "--executor".into(),
            g.url(),
            "--instance".into(),
            g.instance().into(),
        ]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ws.cli_within(120, &args)
}

fn report(ws: &Ws) -> Value {
    serde_json::from_str(&ws.read("r.json")).unwrap()
}

fn task<'a>(r: &'a Value, id: &str) -> &'a Value {
    r["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id)
        .unwrap()
}

/// A small build with sources, a chain, a fan-in, an executable, an
/// output directory and a task in a subdirectory.
const GRAPH: &str = r#"{"version":1,"tasks":[
  {"id":"gen","inputs":["src"],"outputs":["gen/a.txt","gen/tool.sh"],
   "run":"mkdir -p gen && cat src/one.txt src/two.txt > gen/a.txt && printf '#!/bin/sh\necho tool:$1\n' > gen/tool.sh && chmod +x gen/tool.sh"},
  {"id":"dir","outputs":["tree"],"run":"mkdir -p tree/x/y && echo deep > tree/x/y/z && echo top > tree/t && ln -s x/y/z tree/link"},
  {"id":"use","deps":["gen","dir"],"outputs":["out/result"],"cwd":"out",
   "run":"../gen/tool.sh hi > result && cat ../gen/a.txt ../tree/x/y/z >> result && echo to-log"},
  {"id":"stamp","deps":["use"],"nostamp":true,"outputs":["final"],"run":"wc -c out/result > final"}
]}"#;

fn seed(ws: &Ws) {
    ws.write("g.json", GRAPH);
    ws.write("src/one.txt", "one\n");
    ws.write("src/two.txt", "two\n");
}

/// Every output file under `root`: path, mode, bytes (symlinks as targets).
fn outputs(root: &Path) -> Vec<(String, u32, Vec<u8>)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    for top in ["gen", "tree", "out", "final"] {
        let mut stack = vec![root.join(top)];
        while let Some(p) = stack.pop() {
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            if meta.file_type().is_symlink() {
                out.push((
                    rel,
                    0,
                    std::fs::read_link(&p)
                        .unwrap()
                        .display()
                        .to_string()
                        .into_bytes(),
                ));
            } else if meta.is_dir() {
                stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            } else {
                out.push((
                    rel,
                    meta.permissions().mode() & 0o777,
                    std::fs::read(&p).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn remote_builds_match_local_ones_and_hit_the_remote_action_cache() {
    let grid = BuildGrid::start();
    let _w = Worker::start(&grid, "w1", 2);
    let (local, remote, again) = (Ws::new(), Ws::new(), Ws::new());
    for ws in [&local, &remote, &again] {
        seed(ws);
    }
    let o = build(&local, None, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = build(&remote, Some(&grid), &[]);
    assert!(o.status.success(), "{}{}", stderr(&o), grid.log());
    assert_eq!(outputs(local.path()), outputs(remote.path()));
    let r = report(&remote);
    for id in ["gen", "dir", "use", "stamp"] {
        assert_eq!(task(&r, id)["ran_on"], "w1", "{id}: {r}");
        assert_eq!(task(&r, id)["remote_cached"], false);
    }
    assert!(find_log(&remote, "use").contains("to-log"));
    assert!(
        common::stdout(&o).contains("Remote: 4 tasks on 1 workers (w1)"),
        "{}",
        common::stdout(&o)
    );

    // A fresh workspace (no local cache): the service answers from its
    // action cache, except for the nostamp task, which it may not keep.
    let o = build(&again, Some(&grid), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(outputs(local.path()), outputs(again.path()));
    let r = report(&again);
    for id in ["gen", "dir", "use"] {
        assert_eq!(task(&r, id)["remote_cached"], true, "{id}: {r}");
    }
    assert_eq!(task(&r, "stamp")["remote_cached"], false);
}

/// The log a task wrote, wherever the log directory is.
fn find_log(ws: &Ws, id: &str) -> String {
    let r = report(ws);
    let log = task(&r, id)["log"].as_str().unwrap_or_default().to_string();
    std::fs::read_to_string(ws.join(&log)).unwrap_or_default()
}

/// A graph of one task running `run`, written into `ws`.
fn one_task(ws: &Ws, fields: &str) {
    ws.write(
        "g.json",
        &format!(r#"{{"version":1,"tasks":[{{"id":"slow",{fields}}}]}}"#),
    );
}

/// `runqueue build g.json` on `grid`, started in the background.
fn start_build(ws: &Ws, grid: &BuildGrid) -> Child {
    common::runqueue_command(ws.path())
        .args([
            "build",
            "g.json",
            "--report",
            "r.json",
            "--executor",
            &grid.url(),
        ])
        .args(["--instance", grid.instance()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn wait_within(child: &mut Child, secs: u64) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("runqueue did not finish within {secs} s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the pid written to `path` is running, returns it.
fn pid_in(path: &Path) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if let Some(line) = text.strip_suffix('\n') {
            return line.parse().unwrap();
        }
        assert!(Instant::now() < deadline, "no pid in {}", path.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn gone_within(pid: i32, secs: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while common::process_is_running(pid) {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

#[test]
fn two_workers_share_the_work_and_a_dead_workers_task_runs_on_the_other() {
    let grid = BuildGrid::start();
    let (w1, w2) = (Worker::start(&grid, "w1", 2), Worker::start(&grid, "w2", 2));
    eight_tasks_on_both(&grid);
    drop((w1, w2));
    a_dead_workers_task_moves(&grid);
}

fn eight_tasks_on_both(grid: &BuildGrid) {
    let ws = Ws::new();
    let tasks: Vec<String> = (0..8)
        .map(|i| {
            format!(r#"{{"id":"t{i}","outputs":["o{i}"],"run":"sleep 0.5; echo {i} > o{i}"}}"#)
        })
        .collect();
    ws.write(
        "g.json",
        &format!(r#"{{"version":1,"tasks":[{}]}}"#, tasks.join(",")),
    );
    let o = build(&ws, Some(grid), &["-j", "4"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = report(&ws);
    let on = |w: &str| {
        r["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["ran_on"] == w)
            .count()
    };
    assert!(
        on("w1") > 0 && on("w2") > 0,
        "w1 {} w2 {}",
        on("w1"),
        on("w2")
    );
    assert_eq!(on("w1") + on("w2"), 8);
}

/// One worker takes the task and dies (SIGKILL); another, started then,
/// runs it once the server gives up on the first (its keepalive).
fn a_dead_workers_task_moves(grid: &BuildGrid) {
    let mut w3 = Worker::start(grid, "w3", 1);
    let mark = tempfile::tempdir().unwrap();
    let p = mark.path().join("started");
    let ws = Ws::new();
    one_task(
        &ws,
        &format!(
            r#""outputs":["o"],"run":"echo $$ >> {}; sleep 3; echo done > o""#,
            p.display()
        ),
    );
    let mut run = start_build(&ws, grid);
    let pid = pid_in(&p);
    w3.kill_hard();
    assert!(
        gone_within(pid, 10),
        "the dead worker's task still runs (no watchdog)"
    );
    let _w4 = Worker::start(grid, "w4", 1);
    assert!(
        wait_within(&mut run, 120).success(),
        "the build failed after w3 died"
    );
    assert_eq!(ws.read("o"), "done\n");
    assert_eq!(task(&report(&ws), "slow")["ran_on"], "w4");
}

/// Two workers started without `--name` on one machine get names of their
/// own and share a build of real-sized tasks: a BitBake-sized run script
/// (shipped as a file in the input root) and an environment value too big
/// to pass, alike to a local build.
#[test]
fn unnamed_workers_share_a_build_of_real_sized_tasks() {
    let grid = BuildGrid::start();
    let _workers = [
        Worker::start_as(&grid, None, 2),
        Worker::start_as(&grid, None, 2),
    ];
    let (script, lines) = common::bitbake_script(300 << 10, "steps");
    let mut tasks = vec![
        serde_json::json!({"id": "big", "cwd": "sub", "outputs": ["sub/steps"], "run": script}),
        serde_json::json!({"id": "env", "outputs": ["n"], "env": {"BIG": "b".repeat(200_000)},
                           "run": "printf %s \"$BIG\" | wc -c > n"}),
    ];
    for i in 0..6 {
        let (id, out) = (format!("t{i}"), format!("o{i}"));
        let run = format!("sleep 0.5; echo {i} > {out}");
        tasks.push(serde_json::json!({"id": id, "outputs": [out], "run": run}));
    }
    let g = serde_json::json!({"version": 1, "tasks": tasks}).to_string();
    let (local, remote) = (Ws::new(), Ws::new());
    for ws in [&local, &remote] {
        ws.write("g.json", &g);
    }
    let o = build(&local, None, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = build(&remote, Some(&grid), &["-j", "4"]);
    assert!(o.status.success(), "{}{}", stderr(&o), common::stdout(&o));
    assert_eq!(remote.read("sub/steps").lines().count(), lines);
    assert_eq!(remote.read("n").trim(), "200000");
    for f in ["sub/steps", "n", "o0", "o5"] {
        assert_eq!(local.read(f), remote.read(f), "{f}");
    }
    let r = report(&remote);
    let mut names: Vec<String> = r["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            t["ran_on"]
                .as_str()
                .unwrap_or_else(|| panic!("{t}"))
                .to_string()
        })
        .collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 2, "both workers ran tasks: {names:?}");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    for n in &names {
        assert!(n.starts_with(&format!("{}-", host.trim())), "{n}");
    }
}

#[test]
fn cancels_timeouts_and_ctrl_c_and_survives_the_server_going_away() {
    let mut grid = BuildGrid::start();
    let _w = Worker::start(&grid, "w1", 2);
    let mark = tempfile::tempdir().unwrap();
    a_timeout_cancels(&grid, mark.path());
    ctrl_c_cancels(&grid, mark.path());
    platforms_choose_workers(&grid);
    a_lost_server_fails_the_build(&mut grid, mark.path());
}

/// A timeout cancels the operation; the worker kills the process.
fn a_timeout_cancels(grid: &BuildGrid, mark: &Path) {
    let ws = Ws::new();
    let p = mark.join("timeout");
    one_task(
        &ws,
        &format!(
            r#""timeout":2,"run":"echo $$ > {}; exec sleep 60""#,
            p.display()
        ),
    );
    let o = build(&ws, Some(grid), &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        gone_within(pid_in(&p), 30),
        "the timed-out remote process still runs"
    );
}

/// Two Ctrl-Cs: runqueue cancels and exits; the process goes.
fn ctrl_c_cancels(grid: &BuildGrid, mark: &Path) {
    let ws = Ws::new();
    let p = mark.join("ctrlc");
    one_task(
        &ws,
        &format!(r#""run":"echo $$ > {}; exec sleep 60""#, p.display()),
    );
    let mut run = start_build(&ws, grid);
    let pid = pid_in(&p);
    for _ in 0..2 {
        // SAFETY: kill(2) on our own child.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(run.id() as i32, libc::SIGINT);
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(!wait_within(&mut run, 30).success());
    assert!(
        gone_within(pid, 30),
        "the interrupted remote process still runs"
    );
}

/// A task's platform goes to the service: the worker offers OSFamily
/// linux, so a task asking for it runs and one asking for another waits
/// (until its timeout).
fn platforms_choose_workers(grid: &BuildGrid) {
    let ws = Ws::new();
    ws.write(
        "g.json",
        r#"{"version":1,"tasks":[
      {"id":"linux","platform":{"OSFamily":"linux"},"outputs":["l"],"run":"echo l > l"},
      {"id":"plan9","platform":{"OSFamily":"plan9"},"timeout":3,"run":"echo never"}]}"#,
    );
    let o = build(
        &ws,
        Some(grid),
        &["-k", "--no-cache", "--stall-warning", "1"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let r = report(&ws);
    assert_eq!(task(&r, "linux")["state"], "succeeded");
    let plan9 = task(&r, "plan9");
    assert_eq!(plan9["state"], "failed");
    assert!(plan9["ran_on"].is_null());
    // Never placed: it says so while it waits, and the timeout counts
    // from its submission, queueing included.
    assert!(
        stderr(&o).contains(
            "warning: plan9 has made no progress on the executor for 1s \
             (queued: no worker has taken it); is it stuck?"
        ),
        "{}",
        stderr(&o)
    );
    let ran = plan9["duration_ms"]
        .as_u64()
        .unwrap_or_else(|| panic!("{plan9}"));
    assert!((3000..8000).contains(&ran), "{plan9}");
}

/// The server goes away mid-task: the task fails with the reason in its
/// log, the build exits 1, no hang. Down at the start: exit 2, one line.
/// Back: the worker reconnects by itself and a build succeeds.
fn a_lost_server_fails_the_build(grid: &mut BuildGrid, mark: &Path) {
    let ws = Ws::new();
    let p = mark.join("lost");
    one_task(
        &ws,
        &format!(r#""run":"echo $$ > {}; sleep 5""#, p.display()),
    );
    let mut run = start_build(&ws, grid);
    pid_in(&p);
    grid.stop_server();
    assert_eq!(wait_within(&mut run, 90).code(), Some(1));
    assert!(
        find_log(&ws, "slow").contains("remote execution on"),
        "{}",
        find_log(&ws, "slow")
    );
    let t = Instant::now();
    let o = build(&ws, Some(grid), &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("cannot reach the executor"),
        "{}",
        stderr(&o)
    );
    assert_eq!(stderr(&o).trim().lines().count(), 1);
    assert!(t.elapsed() < Duration::from_secs(15));
    grid.start_server();
    one_task(&ws, r#""outputs":["a"],"run":"echo back > a""#);
    let o = build(&ws, Some(grid), &["--no-cache"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(ws.read("a"), "back\n");
}

#[test]
fn bad_executor_addresses_are_bad_input() {
    let ws = Ws::new();
    ws.write(
        "g.json",
        r#"{"version":1,"tasks":[{"id":"a","run":"touch a"}]}"#,
    );
    for url in [
        "http://127.0.0.1:1",
        "grpc://127.0.0.1",
        "grpc://:80",
        "grpc://h:0",
        "grpc://h:99999",
        "grpc://h:1/x",
    ] {
        let o = ws.cli_within(30, &["build", "g.json", "--executor", url]);
        assert_eq!(o.status.code(), Some(2), "{url}");
        let err = stderr(&o);
        assert_eq!(err.trim().lines().count(), 1, "{url}: {err}");
        assert!(err.contains("grpc://HOST:PORT"), "{url}: {err}");
        assert!(
            !ws.join("a").exists() && !ws.join(".runqueue").exists(),
            "{url}"
        );
    }
    let o = ws.cli_within(30, &["build", "g.json", "--instance", "x"]);
    assert_eq!(o.status.code(), Some(2));
}
