//! Real processes run in parallel, in dependency order, within the limit.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{graph, Ws};
use runqueue_host::TaskState;

fn sleepers(n: usize, secs: &str) -> String {
    let ids: Vec<String> = (0..n).map(|i| format!("s{i}")).collect();
    let run = format!("sleep {secs}");
    let tasks: Vec<(&str, &[&str], &str)> = ids
        .iter()
        .map(|id| (id.as_str(), &[][..], run.as_str()))
        .collect();
    graph(&tasks)
}

#[test]
fn eight_sleeps_at_j4_take_two_rounds() {
    let ws = Ws::new();
    let run = ws.run(&sleepers(8, "1"), 4, false);
    let report = run.report();
    assert_eq!(report.totals.succeeded, 8);
    assert_eq!(report.totals.peak_parallel, 4);
    assert!(
        run.wall < Duration::from_millis(3500),
        "took {:?}",
        run.wall
    );
    assert!(
        run.wall >= Duration::from_millis(2000),
        "limit ignored: {:?}",
        run.wall
    );
}

#[test]
fn eight_sleeps_at_j8_run_at_once() {
    let ws = Ws::new();
    let run = ws.run(&sleepers(8, "1"), 8, false);
    assert_eq!(run.report().totals.peak_parallel, 8);
    assert!(
        run.wall < Duration::from_millis(2500),
        "took {:?}",
        run.wall
    );
}

/// A layered graph with fan-out and fan-in where every task appends its id
/// to one file; each id must come after all of its dependencies.
#[test]
fn dependencies_finish_before_dependents_start() {
    let mut tasks: Vec<(String, Vec<String>)> = Vec::new();
    for layer in 0..4 {
        for i in 0..5 {
            let id = format!("r{i}:do_l{layer}");
            let deps = if layer == 0 {
                vec![]
            } else {
                // Each task needs two tasks of the previous layer.
                vec![
                    format!("r{i}:do_l{}", layer - 1),
                    format!("r{}:do_l{}", (i + 2) % 5, layer - 1),
                ]
            };
            tasks.push((id, deps));
        }
    }
    tasks.push((
        "image:do_build".into(),
        (0..5).map(|i| format!("r{i}:do_l3")).collect(),
    ));
    let runs: Vec<String> = tasks
        .iter()
        .enumerate()
        .map(|(n, (id, _))| format!("sleep 0.{}; echo {id} >> order.txt", n % 4))
        .collect();
    let dep_refs: Vec<Vec<&str>> = tasks
        .iter()
        .map(|(_, d)| d.iter().map(String::as_str).collect())
        .collect();
    let spec: Vec<(&str, &[&str], &str)> = tasks
        .iter()
        .zip(&dep_refs)
        .zip(&runs)
        .map(|(((id, _), deps), run)| (id.as_str(), deps.as_slice(), run.as_str()))
        .collect();
    let ws = Ws::new();
    let run = ws.run(&graph(&spec), 3, false);
    assert_eq!(run.report().totals.succeeded, tasks.len() as u32);
    let order: Vec<String> = ws.read("order.txt").lines().map(String::from).collect();
    assert_eq!(order.len(), tasks.len(), "every task ran once");
    let pos: HashMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    for (id, deps) in &tasks {
        for d in deps {
            assert!(
                pos[d.as_str()] < pos[id.as_str()],
                "{id} ran before its dependency {d}: {order:?}"
            );
        }
    }
    // The report agrees: no task started before its dependencies ended.
    for (id, deps) in &tasks {
        let t = run.task(id);
        for d in deps {
            assert!(run.task(d).end_ms.unwrap() <= t.start_ms.unwrap());
        }
    }
}

/// Tasks record their own start and end times; at no instant do more than
/// the limit overlap, and the limit is reached.
#[test]
fn the_limit_is_never_exceeded() {
    let mut spec = Vec::new();
    let ids: Vec<String> = (0..12).map(|i| format!("t{i}")).collect();
    let run = |secs: &str| {
        format!("echo \"$(date +%s%N) 1\" >> ../times; sleep {secs}; echo \"$(date +%s%N) -1\" >> ../times")
    };
    let runs: Vec<String> = (0..12).map(|i| run(["0.3", "0.5", "0.2"][i % 3])).collect();
    let deps: Vec<Vec<&str>> = (0..12)
        .map(|i| {
            if i >= 6 {
                vec![ids[i - 6].as_str()]
            } else {
                vec![]
            }
        })
        .collect();
    for i in 0..12 {
        spec.push((ids[i].as_str(), deps[i].as_slice(), runs[i].as_str()));
    }
    let text = graph(&spec).replace("\"run\"", "\"cwd\":\"w\",\"run\"");
    let ws = Ws::new();
    let result = ws.run(&text, 3, false);
    assert_eq!(result.report().totals.succeeded, 12);
    let mut marks: Vec<(u128, i32)> = ws
        .read("times")
        .lines()
        .map(|l| {
            let (t, d) = l.split_once(' ').unwrap();
            (t.parse().unwrap(), d.parse().unwrap())
        })
        .collect();
    assert_eq!(marks.len(), 24);
    // Ends sort before starts at the same instant.
    marks.sort();
    let (mut now, mut peak) = (0, 0);
    for (_, d) in marks {
        now += d;
        peak = peak.max(now);
    }
    assert_eq!(peak, 3, "processes overlapping at most");
    assert_eq!(result.report().totals.peak_parallel, 3);
}

/// A slot is refilled as soon as any task ends, not when a whole batch has
/// ended: with one long and many short tasks at -j2, the short ones run
/// while the long one is still going.
#[test]
fn free_slots_are_refilled_without_waiting_for_a_wave() {
    let mut spec: Vec<(&str, &[&str], &str)> = vec![("long", &[], "sleep 1.5")];
    let ids: Vec<String> = (0..5).map(|i| format!("short{i}")).collect();
    for id in &ids {
        spec.push((id.as_str(), &[], "sleep 0.2"));
    }
    let ws = Ws::new();
    let run = ws.run(&graph(&spec), 2, false);
    let long_end = run.task("long").end_ms.unwrap();
    for id in &ids {
        assert!(
            run.task(id).end_ms.unwrap() < long_end,
            "{id} waited for the long task"
        );
    }
    assert!(
        run.wall < Duration::from_millis(2500),
        "took {:?}",
        run.wall
    );
}

/// The longest remaining chain starts first when slots are scarce; equal
/// paths go in graph order (chain3's path is 1, like the lone tasks').
#[test]
fn the_longest_chain_starts_first() {
    let spec: Vec<(&str, &[&str], &str)> = vec![
        ("lone1", &[], "true"),
        ("lone2", &[], "true"),
        ("chain1", &[], "true"),
        ("chain2", &["chain1"], "true"),
        ("chain3", &["chain2"], "true"),
    ];
    let ws = Ws::new();
    let run = ws.run(&graph(&spec), 1, false);
    assert_eq!(
        run.started_ids(),
        ["chain1", "chain2", "lone1", "lone2", "chain3"]
    );
    assert!(run
        .report()
        .tasks
        .iter()
        .all(|t| t.state == TaskState::Succeeded));
}

#[test]
fn tasks_get_exactly_the_given_environment_and_directory() {
    let ws = Ws::new();
    let text = r#"{"version":1,"env":{"LANG":"C","A":"graph"},"tasks":[
        {"id":"e","cwd":"work/deep/dir","env":{"A":"task"},
         "run":"env | sort > ../../../env.txt; pwd > ../../../pwd.txt"}]}"#;
    std::env::set_var("RUNQUEUE_TEST_LEAK", "leaked");
    let run = ws.run(text, 1, false);
    assert_eq!(run.report().totals.succeeded, 1);
    let env = ws.read("env.txt");
    assert!(env.contains("A=task\n"), "{env}");
    assert!(env.contains("LANG=C\n"), "{env}");
    assert!(env.contains("PATH="), "{env}");
    let home = format!("HOME={}\n", ws.path().canonicalize().unwrap().display());
    assert!(env.contains(&home), "HOME is the workspace: {env}");
    assert!(env.contains("RUNQUEUE_LOG=.runqueue/logs/log.e\n"), "{env}");
    let root = format!(
        "RUNQUEUE_WORKSPACE={}\n",
        ws.path().canonicalize().unwrap().display()
    );
    assert!(env.contains(&root), "{env}");
    assert_eq!(
        env.lines().count(),
        7,
        "exactly A, HOME, LANG, PATH, RUNQUEUE_LOG, RUNQUEUE_WORKSPACE and the shell's PWD: {env}"
    );
    assert!(
        !env.contains("RUNQUEUE_TEST_LEAK"),
        "host environment leaked: {env}"
    );
    let pwd = ws.read("pwd.txt");
    assert!(pwd.trim_end().ends_with("/work/deep/dir"), "{pwd}");
    assert_eq!(run.task("e").log.as_deref(), Some(".runqueue/logs/log.e"));
}

/// The host stamps a process's exit when it happens: a task that ended
/// while the component was busy (here: blocked in a progress callback for
/// 1.5 s) is recorded with the time it really ran, not until the component
/// noticed.
#[test]
fn durations_are_stamped_at_the_exit_not_when_the_component_notices() {
    let ws = Ws::new();
    let g = graph(&[("nap", &[], "sleep 0.3"), ("busy", &[], "sleep 2")]);
    let run = ws.run_observed(&g, Default::default(), |e| {
        if matches!(e, runqueue_host::Event::Started(s) if s.id == "busy") {
            std::thread::sleep(Duration::from_millis(1500));
        }
    });
    let nap = &run.report().tasks[0];
    let took = nap.end_ms.unwrap() - nap.start_ms.unwrap();
    assert!(
        (250..900).contains(&took),
        "nap ran 0.3 s but is recorded as {took} ms"
    );
}

/// Weighted tasks (`"weight": N` slots) next to plain ones at -j4: at no
/// moment do the running tasks' weights add up to more than 4, and a task
/// heavier than -j runs alone.
#[test]
fn weighted_tasks_count_their_weight_against_the_limit() {
    let mut tasks = vec![
        serde_json::json!({"id": "link", "weight": 4, "run": "sleep 0.3"}),
        serde_json::json!({"id": "huge", "weight": 9, "run": "sleep 0.3"}),
    ];
    for i in 0..2 {
        tasks.push(serde_json::json!({"id": format!("make{i}"), "weight": 2, "run": "sleep 0.3"}));
    }
    for i in 0..4 {
        tasks.push(serde_json::json!({"id": format!("cc{i}"), "run": "sleep 0.3"}));
    }
    let g = serde_json::json!({"version": 1, "tasks": tasks}).to_string();
    let run = Ws::new().run(&g, 4, false);
    let report = run.report();
    assert_eq!(report.totals.succeeded, 8);
    let weight = |id: &str| match id {
        "link" => 4,
        "huge" => 9,
        id if id.starts_with("make") => 2,
        _ => 1,
    };
    let spans: Vec<(&str, u64, u64)> = report
        .tasks
        .iter()
        .map(|t| (t.id.as_str(), t.start_ms.unwrap(), t.end_ms.unwrap()))
        .collect();
    for &(id, start, _) in &spans {
        let running: Vec<&str> = spans
            .iter()
            .filter(|&&(_, s, e)| s <= start && start < e)
            .map(|&(other, _, _)| other)
            .collect();
        let taken: u32 = running.iter().map(|id| weight(id)).sum();
        if running.contains(&"huge") {
            assert_eq!(running, ["huge"], "huge runs alone");
        } else {
            assert!(taken <= 4, "when {id} started: {running:?}");
        }
    }
}

/// The `Summary:` line's limit of a one-task build run by `wrap` (a shell
/// command line ending in `"$@"`, given the runqueue command).
fn default_limit(wrap: &str) -> String {
    let ws = Ws::new();
    ws.write(
        "g.json",
        r#"{"version":1,"tasks":[{"id":"a","run":"true"}]}"#,
    );
    let rq = common::runqueue_command(ws.path());
    let out = std::process::Command::new("sh")
        .current_dir(ws.path())
        .envs(rq.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .args(["-c", wrap, "sh", rq.get_program().to_str().unwrap()])
        .args(["build", "g.json", "--no-cache"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    let stdout = common::stdout(&out);
    let at = stdout.find("(limit ").expect("a summary line");
    stdout[at + 7..].split(')').next().unwrap().to_string()
}

/// The default -j is what the process may use: its CPU affinity (a
/// container's cpuset) and its cgroup's CPU quota, not the machine's CPUs.
#[test]
fn the_default_limit_follows_affinity_and_the_cpu_quota() {
    let cpus = std::thread::available_parallelism().unwrap().get();
    assert_eq!(default_limit(r#"exec "$@""#), cpus.to_string());
    assert_eq!(default_limit(r#"exec taskset -c 0 "$@""#), "1");
    // A cgroup with half a CPU of quota (v1 or v2, where this user may
    // make one: CI runs as root).
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers");
    let (dir, quota) = match std::fs::read_to_string(v2) {
        Ok(c) if c.contains("cpu") => ("/sys/fs/cgroup/runqueue-test", ("cpu.max", "50000 100000")),
        _ => (
            "/sys/fs/cgroup/cpu/runqueue-test",
            ("cpu.cfs_quota_us", "50000"),
        ),
    };
    let dir = format!("{dir}-{}", std::process::id());
    if std::fs::create_dir(&dir).is_err() {
        eprintln!("cannot make a cgroup at {dir}: the quota half of this test needs root");
        return;
    }
    std::fs::write(format!("{dir}/{}", quota.0), quota.1).unwrap();
    let wrap = format!(r#"echo $$ > {dir}/cgroup.procs && exec "$@""#);
    let limit = default_limit(&wrap);
    remove_cgroup(&dir);
    assert_eq!(limit, "1");
}

/// Removes an emptied cgroup. The kernel lets go of a reaped process's
/// cgroup a moment later, so removal can say EBUSY at first (it did, on a
/// loaded machine).
fn remove_cgroup(dir: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match std::fs::remove_dir(dir) {
            Err(e) if e.raw_os_error() == Some(16) && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            r => return r.unwrap(),
        }
    }
}
