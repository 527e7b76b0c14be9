//! `runqueue serve` end to end: a real service on loopback, real task
//! processes, its database across a kill -9, its event stream, its token.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::service::{request, Events, Service};
use serde_json::{json, Value};

/// Process groups whose processes carry `MARK=mark` in their environment:
/// the tasks of the graphs below that are running now.
fn running_groups(mark: &str) -> HashSet<i32> {
    let want = format!("MARK={mark}");
    let mut groups = HashSet::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if env.split(|&b| b == 0).any(|kv| kv == want.as_bytes()) && common::process_is_running(pid)
        {
            // SAFETY: getpgid on any pid only reads.
            #[allow(unsafe_code)]
            let pgid = unsafe { libc::getpgid(pid) };
            if pgid > 0 {
                groups.insert(pgid);
            }
        }
    }
    groups
}

/// `n` independent tasks, each sleeping `secs` and writing its name.
fn fan(mark: &str, n: usize, secs: f64) -> Value {
    let tasks: Vec<Value> = (0..n)
        .map(|i| {
            json!({"id": format!("t{i}"),
                   "run": format!("echo working on t{i}; sleep {secs}; mkdir -p out; echo t{i} > out/t{i}"),
                   "outputs": [format!("out/t{i}")]})
        })
        .collect();
    json!({"version": 1, "env": {"MARK": mark}, "tasks": tasks})
}

fn unique(name: &str) -> String {
    format!("{name}-{}-{:?}", std::process::id(), Instant::now())
}

#[test]
fn ten_builds_at_once_finish_sharing_max_parallel() {
    let data = tempfile::tempdir().unwrap();
    let svc = Service::start(data.path(), &["--max-parallel", "3", "--max-builds", "10"]);
    let mark = unique("ten");
    let graph = fan(&mark, 6, 0.3);
    let ids: Vec<u64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..10)
            .map(|_| s.spawn(|| svc.submit(&graph, json!({"no_cache": true}))))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let (mut most, mut samples) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(120);
    let unfinished = |b: &&Value| ["queued", "running"].contains(&b["state"].as_str().unwrap());
    while svc.get("/api/builds")["builds"]
        .as_array()
        .unwrap()
        .iter()
        .any(|b| unfinished(&b))
    {
        most = most.max(running_groups(&mark).len());
        samples += 1;
        assert!(Instant::now() < deadline, "builds never finished");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(most <= 3, "{most} tasks ran at once across builds (max 3)");
    assert!(
        most >= 2 && samples > 10,
        "the sampling saw the builds run ({most}, {samples})"
    );
    for id in ids {
        let b = svc.wait_final(id, 5);
        assert_eq!(b["state"], "succeeded", "{b}");
        let ws = std::path::Path::new(b["workspace"].as_str().unwrap());
        for i in 0..6 {
            let out = std::fs::read_to_string(ws.join(format!("out/t{i}"))).unwrap();
            assert_eq!(out, format!("t{i}\n"));
        }
        assert_eq!(b["totals"]["succeeded"], 6);
    }
    let metrics = svc.call("GET", "/metrics", None).body;
    assert!(
        metrics.contains("runqueue_tasks_started_total 60"),
        "{metrics}"
    );
    assert!(metrics.contains("runqueue_builds_running 0"), "{metrics}");
}

/// Waits until `n` tasks of `mark` run.
fn wait_running(mark: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while running_groups(mark).len() < n {
        assert!(Instant::now() < deadline, "tasks never started");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_cancelled_build_stops_its_tasks_within_two_seconds() {
    let data = tempfile::tempdir().unwrap();
    let svc = Service::start(data.path(), &["--max-parallel", "2"]);
    let mark = unique("cancel");
    let id = svc.submit(&fan(&mark, 4, 60.0), json!({"no_cache": true}));
    wait_running(&mark, 2);
    let asked = Instant::now();
    for _ in 0..2 {
        let r = svc.call("POST", &format!("/api/builds/{id}/cancel"), None);
        assert_eq!(r.status, 202, "{}", r.body);
    }
    let b = svc.wait_final(id, 10);
    let took = asked.elapsed();
    assert_eq!(b["state"], "cancelled", "{b}");
    assert!(took < Duration::from_secs(2), "cancel took {took:?}");
    assert!(running_groups(&mark).is_empty(), "tasks left running");
    let again = svc.call("POST", &format!("/api/builds/{id}/cancel"), None);
    assert_eq!(again.status, 409);
}

#[test]
fn after_a_kill_9_the_running_build_is_interrupted_and_the_history_whole() {
    let data = tempfile::tempdir().unwrap();
    let mut svc = Service::start(data.path(), &[]);
    let done = svc.submit(&fan(&unique("early"), 2, 0.0), json!({}));
    assert_eq!(svc.wait_final(done, 30)["state"], "succeeded");
    let mark = unique("kill9");
    let cut = svc.submit(&fan(&mark, 2, 60.0), json!({"jobs": 2}));
    wait_running(&mark, 2);
    svc.kill9();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !running_groups(&mark).is_empty() {
        assert!(Instant::now() < deadline, "tasks outlived the service");
        std::thread::sleep(Duration::from_millis(50));
    }
    let svc = Service::start(data.path(), &[]);
    assert_eq!(
        svc.get(&format!("/api/builds/{cut}"))["state"],
        "interrupted"
    );
    let early = svc.get(&format!("/api/builds/{done}"));
    assert_eq!(early["state"], "succeeded");
    assert_eq!(early["report"]["totals"]["succeeded"], 2);
    let log = svc.call("GET", &format!("/api/builds/{done}/tasks/t0/log"), None);
    assert_eq!(log.status, 200, "{}", log.body);
    assert_eq!(log.body, "working on t0\n");
    let listed: Vec<u64> = svc.get("/api/builds")["builds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_u64().unwrap())
        .collect();
    assert_eq!(listed, vec![cut, done]);
    let mut events = Events::open(&svc, cut, None);
    let mut last = None;
    while let Some((_, ev)) = events.next() {
        last = Some(ev);
    }
    assert_eq!(last.unwrap()["state"], "interrupted");
}

#[test]
fn a_client_resuming_with_last_event_id_misses_nothing() {
    let data = tempfile::tempdir().unwrap();
    let svc = Service::start(data.path(), &["--max-parallel", "2"]);
    let id = svc.submit(&fan(&unique("sse"), 12, 0.1), json!({"no_cache": true}));
    let mut first = Events::open(&svc, id, None);
    let seen: Vec<(u64, Value)> = (0..5).map(|_| first.next().unwrap()).collect();
    drop(first);
    let mut rest = Events::open(&svc, id, Some(seen.last().unwrap().0));
    let mut all = seen;
    while let Some(ev) = rest.next() {
        all.push(ev);
    }
    let numbers: Vec<u64> = all.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        numbers,
        (1..=all.len() as u64).collect::<Vec<_>>(),
        "gaps or repeats"
    );
    assert_eq!(all.last().unwrap().1["state"], "succeeded");
    let finished = all.iter().filter(|(_, e)| e["type"] == "finished").count();
    assert_eq!(finished, 12);
    let mut replay = Events::open(&svc, id, None);
    let mut again = Vec::new();
    while let Some(ev) = replay.next() {
        again.push(ev);
    }
    assert_eq!(again, all, "a replay from the start is the same stream");
}

#[test]
fn writes_need_the_token_and_bad_input_creates_nothing() {
    let data = tempfile::tempdir().unwrap();
    let svc = Service::start(
        data.path(),
        &[
            "--max-builds",
            "1",
            "--max-queued",
            "0",
            "--max-body",
            "4096",
        ],
    );
    let graph = json!({"graph": fan("x", 1, 0.0)}).to_string();
    let anonymous = |method, path, body| request(&svc.addr, method, path, &[], body);
    let wrong = |method, path| {
        request(
            &svc.addr,
            method,
            path,
            &[("Authorization", "Bearer nottheone0000000")],
            None,
        )
    };
    assert_eq!(anonymous("POST", "/api/builds", Some(&graph)).status, 401);
    assert_eq!(wrong("POST", "/api/builds").status, 401);
    assert_eq!(anonymous("POST", "/api/builds/1/cancel", None).status, 401);
    assert_eq!(anonymous("GET", "/api/builds", None).status, 401);
    assert_eq!(
        anonymous("GET", "/", None).status,
        200,
        "the page itself holds no data"
    );
    let bad = svc.call(
        "POST",
        "/api/builds",
        Some(r#"{"graph": {"version": 1, "tasks": [{"id": "a", "deps": ["b"], "run": "true"}]}}"#),
    );
    assert_eq!(bad.status, 400, "{}", bad.body);
    let msg = bad.json()["error"].as_str().unwrap().to_string();
    assert!(
        msg.contains("invalid graph") && !msg.contains('\n'),
        "{msg}"
    );
    let opt = svc.call(
        "POST",
        "/api/builds",
        Some(&json!({"graph": fan("x", 1, 0.0), "options": {"jobs": "many"}}).to_string()),
    );
    assert_eq!(opt.status, 400, "{}", opt.body);
    assert!(opt.json()["error"].as_str().unwrap().contains("--jobs"));
    let outside = json!({"graph": fan("x", 1, 0.0), "workspace": "/tmp"}).to_string();
    assert_eq!(svc.call("POST", "/api/builds", Some(&outside)).status, 400);
    let big = json!({"graph": fan(&"y".repeat(5000), 1, 0.0)}).to_string();
    assert_eq!(svc.call("POST", "/api/builds", Some(&big)).status, 413);
    assert_eq!(svc.call("GET", "/api/builds/77", None).status, 404);
    assert_eq!(svc.call("GET", "/api/builds/77/events", None).status, 404);
    assert_eq!(
        svc.get("/api/builds")["builds"],
        json!([]),
        "nothing was created"
    );
    assert!(
        !data.path().join("builds").exists(),
        "no workspace was made"
    );
    let mark = unique("queue");
    let long = svc.submit(&fan(&mark, 1, 60.0), json!({}));
    assert_eq!(
        svc.call("POST", "/api/builds", Some(&graph)).status,
        429,
        "no room in the queue"
    );
    wait_running(&mark, 1);
    for _ in 0..2 {
        svc.call("POST", &format!("/api/builds/{long}/cancel"), None);
    }
    assert_eq!(svc.wait_final(long, 10)["state"], "cancelled");
}

#[test]
fn public_read_opens_reads_only_and_no_token_stays_on_loopback() {
    let data = tempfile::tempdir().unwrap();
    let svc = Service::start(data.path(), &["--public-read"]);
    assert_eq!(
        request(&svc.addr, "GET", "/api/builds", &[], None).status,
        200
    );
    assert_eq!(request(&svc.addr, "GET", "/metrics", &[], None).status, 200);
    let graph = json!({"graph": fan("x", 1, 0.0)}).to_string();
    assert_eq!(
        request(&svc.addr, "POST", "/api/builds", &[], Some(&graph)).status,
        401
    );
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_runqueue"))
        .env("RUNQUEUE_COMPONENT", common::component_path())
        .args(["serve", "--listen", "0.0.0.0:0", "--no-token", "--data"])
        .arg(data.path().join("other"))
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("without a token") && err.lines().count() == 1,
        "{err}"
    );
    assert!(!data.path().join("other").exists(), "nothing was created");
}

#[test]
fn a_named_workspace_under_a_root_is_used_and_its_log_followed() {
    let data = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("checkout")).unwrap();
    let svc = Service::start(
        data.path(),
        &["--workspace-root", root.path().to_str().unwrap()],
    );
    let graph = json!({"version": 1, "tasks": [
        {"id": "talk", "run": "echo one; sleep 1; echo two", "outputs": []}]});
    let ws = root.path().join("checkout");
    let body = json!({"graph": graph, "workspace": ws}).to_string();
    let r = svc.call("POST", "/api/builds", Some(&body));
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.json()["id"].as_u64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let first = loop {
        let log = svc.call("GET", &format!("/api/builds/{id}/tasks/talk/log"), None);
        if log.status == 200 && log.body.contains("one") {
            break log;
        }
        assert!(Instant::now() < deadline, "no log while running");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        first.header("x-task-state"),
        Some("running"),
        "read while it runs"
    );
    let next = first.header("x-log-next").unwrap().to_string();
    assert_eq!(svc.wait_final(id, 20)["state"], "succeeded");
    let rest = svc.call(
        "GET",
        &format!("/api/builds/{id}/tasks/talk/log?offset={next}"),
        None,
    );
    assert_eq!(rest.body, "two\n");
    assert!(
        ws.join(".runqueue").is_dir(),
        "the build ran in the named workspace"
    );
}
