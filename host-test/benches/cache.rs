//! `make bench` (cache part): a fully cached 4,000-task Yocto graph against
//! its uncached run, and store/restore throughput for large outputs against
//! `cp -r` plus `sha256sum` of the same data, all measured in one run.
//! Appends markdown to the report file given as the first argument.

mod common;

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use runqueue_host::{RunOptions, Runqueue, Workspace};

#[path = "../tests/common/nginx.rs"]
mod nginx;

/// The moevm core-image-minimal graph, each task writing one small output
/// file under `out/<recipe>/<task>`.
fn yocto_graph() -> (String, usize) {
    let edges =
        std::fs::read_to_string(common::yocto_data().join("moevm__yocto_profiling.edges.txt"))
            .expect("shared/data/yocto is beside the repository (or set RUNQUEUE_YOCTO_DATA)");
    let mut deps: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for line in edges.lines().filter(|l| !l.trim().is_empty()) {
        let (a, b) = line.split_once(' ').expect("edge lines are `A B`");
        deps.entry(b.to_string()).or_default();
        deps.entry(a.to_string()).or_default().push(b.to_string());
    }
    let id = |t: &str| t.replacen(".do_", ":do_", 1);
    let tasks: Vec<serde_json::Value> = deps
        .iter()
        .map(|(t, d)| {
            let (recipe, task) = t.split_once(".do_").unwrap_or((t, "task"));
            let out = format!("out/{recipe}/do_{task}");
            serde_json::json!({
                "id": id(t),
                "deps": d.iter().map(|x| id(x)).collect::<Vec<_>>(),
                "run": format!("mkdir -p out/{recipe} && echo {t} > {out}"),
                "outputs": [out],
            })
        })
        .collect();
    let n = tasks.len();
    (
        serde_json::json!({"version": 1, "tasks": tasks}).to_string(),
        n,
    )
}

fn run(
    rq: &Runqueue,
    rt: &tokio::runtime::Runtime,
    graph: &str,
    ws: &Path,
    jobs: u32,
) -> (Duration, runqueue_host::Report) {
    run_with_remote(rq, rt, graph, ws, jobs, None)
}

fn run_with_remote(
    rq: &Runqueue,
    rt: &tokio::runtime::Runtime,
    graph: &str,
    ws: &Path,
    jobs: u32,
    remote: Option<&str>,
) -> (Duration, runqueue_host::Report) {
    let ws = Workspace::open(ws).unwrap();
    let opts = RunOptions {
        max_parallel: Some(jobs),
        keep_going: false,
        cache: Some(runqueue_host::DEFAULT_CACHE.into()),
        remote_cache: remote.map(|url| runqueue_host::RemoteCache::new(url).unwrap()),
        ..Default::default()
    };
    let start = Instant::now();
    let report = rt
        .block_on(rq.run(graph, &opts, &ws, |e| {
            if let runqueue_host::Event::Warning(w) = e {
                eprintln!("warning: {w}");
            }
        }))
        .unwrap()
        .unwrap();
    (start.elapsed(), report)
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

/// Fills `dir` with `files` files of `size` bytes of pseudo-random data.
fn make_data(dir: &Path, files: usize, size: usize) {
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let mut buf = vec![0u8; size];
    for i in 0..files {
        for chunk in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
        let sub = dir.join(format!("d{}", i % 10));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join(format!("f{i}.bin")), &buf).unwrap();
    }
}

fn sh(cmd: &str, cwd: &Path) -> Duration {
    let start = Instant::now();
    let status = std::process::Command::new("sh")
        .args(["-c", cmd])
        .current_dir(cwd)
        .status()
        .unwrap();
    assert!(status.success(), "{cmd}");
    start.elapsed()
}

fn main() {
    let report_path = common::report_path();
    let component = common::wasm_release_dir().join("runqueue.wasm");
    let rq = Runqueue::load(&component).expect("build the component first (make build)");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut md = String::new();

    // 1. Fully cached Yocto graph.
    let (graph, n) = yocto_graph();
    let ws = tempfile::tempdir().unwrap();
    let (uncached, r1) = run(&rq, &rt, &graph, ws.path(), 8);
    assert_eq!(r1.totals.failed, 0);
    let (cached, r2) = run(&rq, &rt, &graph, ws.path(), 8);
    assert_eq!(r2.totals.cached as usize, n);
    std::fs::remove_dir_all(ws.path().join("out")).unwrap();
    let (fresh, r3) = run(&rq, &rt, &graph, ws.path(), 8);
    assert_eq!(r3.totals.cached as usize, n);
    let restored = r3.tasks.iter().filter(|t| t.restored).count();
    writeln!(md, "## Cache: fully cached Yocto graph ({n} tasks, -j8)\n").unwrap();
    writeln!(md, "| run | wall | ratio to uncached |\n|---|---|---|").unwrap();
    writeln!(
        md,
        "| uncached ({} tasks executed and stored) | {} | 1.00 |",
        r1.totals.succeeded,
        secs(uncached)
    )
    .unwrap();
    writeln!(
        md,
        "| fully cached, outputs in place | {} | {:.3} |",
        secs(cached),
        cached.as_secs_f64() / uncached.as_secs_f64()
    )
    .unwrap();
    writeln!(
        md,
        "| fully cached, outputs deleted ({restored} final tasks restored) | {} | {:.3} |\n",
        secs(fresh),
        fresh.as_secs_f64() / uncached.as_secs_f64()
    )
    .unwrap();
    writeln!(
        md,
        "Goal: a fully cached run under 1 s: {}.\n",
        if cached < Duration::from_secs(1) && fresh < Duration::from_secs(1) {
            "met"
        } else {
            "NOT met"
        }
    )
    .unwrap();

    // 2. Store and restore throughput.
    let mib: usize = std::env::var("RUNQUEUE_BENCH_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024);
    let files = 1000;
    let size = mib * (1 << 20) / files;
    let ws = tempfile::tempdir().unwrap();
    make_data(&ws.path().join("data"), files, size);
    // Files in the page cache, written back: what is measured is the
    // copying and hashing, not the disk catching up with make_data.
    sh("sync", ws.path());
    let big = r#"{"version":1,"tasks":[{"id":"big:do_install","outputs":["data"],"run":"true"}]}"#;
    // A warm-up store, thrown away: on these virtual machines the first
    // touch of fresh memory for a gigabyte of page cache costs three
    // times the copy itself.
    run(&rq, &rt, big, ws.path(), 1);
    std::fs::remove_dir_all(ws.path().join(runqueue_host::DEFAULT_CACHE)).unwrap();
    sh("sync", ws.path());
    let (store, _) = run(&rq, &rt, big, ws.path(), 1);
    std::fs::remove_dir_all(ws.path().join("data")).unwrap();
    sh("sync", ws.path());
    let (restore, r) = run(&rq, &rt, big, ws.path(), 1);
    assert!(r.tasks[0].restored);
    sh("sync", ws.path());
    let baseline = sh(
        "cp -r data copy && find copy -type f -print0 | xargs -0 sha256sum > /dev/null",
        ws.path(),
    );
    let total = (files * size) as f64 / (1 << 20) as f64;
    writeln!(
        md,
        "## Cache: store and restore of {total:.0} MiB in {files} files\n"
    )
    .unwrap();
    writeln!(
        md,
        "| operation | wall | MiB/s | ratio to cp -r + sha256sum |\n|---|---|---|---|"
    )
    .unwrap();
    for (name, d) in [
        ("store (hash, copy into the cache)", store),
        ("restore (copy out, verify)", restore),
        ("cp -r + sha256sum", baseline),
    ] {
        writeln!(
            md,
            "| {name} | {} | {:.0} | {:.2} |",
            secs(d),
            total / d.as_secs_f64(),
            d.as_secs_f64() / baseline.as_secs_f64()
        )
        .unwrap();
    }
    writeln!(md).unwrap();

    // 3. The same fully cached graph from a remote cache (nginx, WebDAV).
    let remote_rq = Runqueue::load(&common::wasm_release_dir().join("runqueue-remote.wasm"))
        .expect("make build makes runqueue-remote.wasm");
    let server = nginx::Nginx::start();
    let url = server.url();
    let first = tempfile::tempdir().unwrap();
    let (populate, r) = run_with_remote(&remote_rq, &rt, &graph, first.path(), 8, Some(&url));
    let failed: Vec<_> = r
        .tasks
        .iter()
        .filter(|t| t.state == runqueue_host::TaskState::Failed)
        .map(|t| (t.id.clone(), t.message.clone()))
        .collect();
    assert!(failed.is_empty(), "{failed:?}");
    let stored = server.files().len();
    // From the remote: a workspace with an empty local cache.
    let second = tempfile::tempdir().unwrap();
    let before = server.requests().len();
    let (from_remote, r) = run_with_remote(&remote_rq, &rt, &graph, second.path(), 8, Some(&url));
    assert_eq!(
        r.totals.cached as usize, n,
        "everything came from the remote"
    );
    let requests = server.requests().len() - before;
    // From the local cache: the first workspace, outputs deleted.
    std::fs::remove_dir_all(first.path().join("out")).unwrap();
    let (from_local, r) = run(&rq, &rt, &graph, first.path(), 8);
    assert_eq!(r.totals.cached as usize, n);
    writeln!(
        md,
        "## Cache: fully cached Yocto graph ({n} tasks) from a remote cache\n"
    )
    .unwrap();
    writeln!(
        md,
        "nginx 1.22 with WebDAV PUT on loopback; {stored} files on the server after the first \
         build ({} with write-through). Both runs restore the final tasks' outputs; the \
         runtime is single-threaded, as in the CLI.\n",
        secs(populate)
    )
    .unwrap();
    writeln!(md, "| run | wall | ratio to local |\n|---|---|---|").unwrap();
    writeln!(md, "| from the local cache | {} | 1.00 |", secs(from_local)).unwrap();
    writeln!(
        md,
        "| from the remote, empty local cache ({requests} HTTP requests, 16 at a time) | {} | {:.2} |\n",
        secs(from_remote),
        from_remote.as_secs_f64() / from_local.as_secs_f64()
    )
    .unwrap();
    drop(server);

    common::flush(&report_path, &mut md);
    eprintln!("appended to {}", report_path.display());
}
