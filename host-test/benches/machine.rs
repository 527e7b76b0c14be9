//! `make bench` (machine part): starting tasks only when the machine can
//! take them, measured in one run at `-j` = the CPU count, each case three
//! times, interleaved, medians.
//!
//! - Memory hogs: 6 tasks each touching 300 MiB, in a memory cgroup of
//!   500 MiB (v1, as root), with memory-aware starts (the default; the
//!   peaks recorded by one earlier build) and with `--memory-limit none`:
//!   wall time, the cgroup's peak memory, out-of-memory kills.
//! - Nested make: 8 tasks each a `make` of 8 CPU-bound sub-jobs with
//!   `-j8` in MAKEFLAGS (BitBake's PARALLEL_MAKE), with the jobserver and
//!   with `--no-jobserver`: wall time, the most sub-jobs at once.
//!
//! Appends markdown to the report file given as the first argument.

mod common;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::runners::{median, runqueue_bin, secs};

const HOG_MB: u64 = 300;
const CGROUP_MB: u64 = 500;
const SUB_JOB: &str = "awk 'BEGIN{for(i=0;i<3000000;i++)s+=i}'";

fn main() {
    let report = common::report_path();
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get() as u32);
    let mut md = String::new();
    hogs(&mut md, jobs);
    common::flush(&report, &mut md);
    nested_make(&mut md, jobs);
    common::flush(&report, &mut md);
}

/// One build's figures.
struct Figures {
    wall: Duration,
    peak_mb: u64,
    oom_kills: u64,
    most: usize,
}

fn hogs(md: &mut String, jobs: u32) {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path();
    let cgroup = Cgroup::new(CGROUP_MB << 20);
    write_hogs(ws, 0);
    let mut warm = rq(ws, &["-j", "1", "--memory-limit", "none"]);
    assert!(
        warm.0.status().unwrap().success(),
        "the warm-up build failed"
    );
    let cases: [(&str, &[&str]); 2] = [
        ("memory-aware starts (default)", &[]),
        ("`--memory-limit none`", &["--memory-limit", "none"]),
    ];
    let mut runs: Vec<Vec<Figures>> = vec![Vec::new(), Vec::new()];
    for round in 1..=3 {
        for (i, (_, extra)) in cases.iter().enumerate() {
            write_hogs(ws, round * 10 + i as u32);
            let j = jobs.to_string();
            runs[i].push(in_cgroup(&cgroup, ws, &[&["-j", &j], *extra].concat()));
        }
    }
    writeln!(
        md,
        "## Memory-aware starts: 6 memory hogs at -j{jobs}\n\n\
         Each task touches {HOG_MB} MiB and holds it 0.6 s; runqueue runs in a memory cgroup of \
         {CGROUP_MB} MiB (so two hogs at once do not fit). Memory-aware starts use the peaks one \
         earlier build recorded; without them the kernel kills a hog and runqueue runs it again \
         alone. Medians of 3, interleaved.\n\n\
         | starts | wall | cgroup peak | OOM kills |\n|---|---|---|---|"
    )
    .unwrap();
    for ((name, _), figures) in cases.iter().zip(runs) {
        let m = medians(figures);
        writeln!(
            md,
            "| {name} | {} | {} MiB | {} |",
            secs(m.wall),
            m.peak_mb,
            m.oom_kills
        )
        .unwrap();
    }
    md.push('\n');
}

/// Six hogs; `salt` changes their signatures so that each build runs them.
fn write_hogs(ws: &Path, salt: u32) {
    let tasks: Vec<String> = (0..6)
        .map(|i| {
            format!(
                r#"{{"id":"r{i}:do_hog","run":"python3 -c \"import time; b = b'x' * ({HOG_MB} << 20); time.sleep(0.6)\" && touch h{i}","outputs":["h{i}"],"env":{{"SALT":"{salt}"}}}}"#
            )
        })
        .collect();
    let graph = format!(r#"{{"version":1,"tasks":[{}]}}"#, tasks.join(","));
    std::fs::write(ws.join("g.json"), graph).unwrap();
}

/// `runqueue build g.json ARGS --report r.json` in `ws`, as a command.
fn rq(ws: &Path, args: &[&str]) -> (Command, PathBuf) {
    let mut c = Command::new(runqueue_bin());
    c.args(["build", "g.json", "--report", "r.json"])
        .args(args)
        .current_dir(ws);
    c.stdout(std::process::Stdio::null());
    (c, ws.join("r.json"))
}

/// One build inside `cgroup`: its wall time, the cgroup's peak and the
/// kernel's out-of-memory kills meanwhile.
fn in_cgroup(cgroup: &Cgroup, ws: &Path, args: &[&str]) -> Figures {
    cgroup.reset_peak();
    let before = oom_kills();
    let (cmd, report) = rq(ws, args);
    let line = format!("{:?}", cmd).replace('"', "");
    let mut sh = Command::new("sh");
    let script = format!(
        "echo $$ > {}/cgroup.procs && exec \"$@\"",
        cgroup.0.display()
    );
    sh.args(["-c", &script, "sh"])
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .current_dir(ws);
    sh.stdout(std::process::Stdio::null());
    let start = Instant::now();
    let status = sh.status().unwrap();
    let wall = start.elapsed();
    assert!(status.success(), "{line} failed: {status}");
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(report).unwrap()).unwrap();
    let reruns = r["totals"]["oom_reruns"].as_u64().unwrap();
    Figures {
        wall,
        peak_mb: cgroup.peak() >> 20,
        oom_kills: (oom_kills() - before).max(reruns),
        most: r["totals"]["peak_parallel"].as_u64().unwrap() as usize,
    }
}

fn medians(figures: Vec<Figures>) -> Figures {
    let mid = |mut v: Vec<u64>| {
        v.sort_unstable();
        v[v.len() / 2]
    };
    Figures {
        wall: median(figures.iter().map(|f| f.wall).collect()),
        peak_mb: mid(figures.iter().map(|f| f.peak_mb).collect()),
        oom_kills: mid(figures.iter().map(|f| f.oom_kills).collect()),
        most: mid(figures.iter().map(|f| f.most as u64).collect()) as usize,
    }
}

fn oom_kills() -> u64 {
    let vmstat = std::fs::read_to_string("/proc/vmstat").unwrap();
    let line = vmstat.lines().find_map(|l| l.strip_prefix("oom_kill "));
    line.and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

/// A memory cgroup (v1) for the benchmark, removed at the end.
struct Cgroup(PathBuf);

impl Cgroup {
    fn new(limit: u64) -> Cgroup {
        let dir = PathBuf::from(format!(
            "/sys/fs/cgroup/memory/runqueue-bench-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("a memory cgroup (v1, as root)");
        for file in ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"] {
            if dir.join(file).exists() {
                std::fs::write(dir.join(file), limit.to_string()).unwrap();
            }
        }
        Cgroup(dir)
    }

    fn reset_peak(&self) {
        std::fs::write(self.0.join("memory.max_usage_in_bytes"), "0").unwrap();
    }

    fn peak(&self) -> u64 {
        let text = std::fs::read_to_string(self.0.join("memory.max_usage_in_bytes")).unwrap();
        text.trim().parse().unwrap()
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn nested_make(md: &mut String, jobs: u32) {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path();
    let targets: Vec<String> = (1..=8).map(|i| format!("j{i}")).collect();
    let makefile = format!("all: {}\nj%:\n\t@{SUB_JOB}\n", targets.join(" "));
    std::fs::write(ws.join("Makefile"), makefile).unwrap();
    let tasks: Vec<String> = (0..8)
        .map(|i| format!(r#"{{"id":"r{i}:do_compile","run":"make -s -f ../Makefile","cwd":"w{i}","env":{{"MAKEFLAGS":"-j8"}}}}"#))
        .collect();
    let graph = format!(r#"{{"version":1,"tasks":[{}]}}"#, tasks.join(","));
    std::fs::write(ws.join("g.json"), graph).unwrap();
    let cases: [(&str, &[&str]); 2] = [
        ("jobserver (default)", &[]),
        ("`--no-jobserver`", &["--no-jobserver"]),
    ];
    let mut runs: Vec<Vec<Figures>> = vec![Vec::new(), Vec::new()];
    for _ in 0..3 {
        for (i, (_, extra)) in cases.iter().enumerate() {
            let j = jobs.to_string();
            runs[i].push(sampled(ws, &[&["-j", &j, "--no-cache"], *extra].concat()));
        }
    }
    writeln!(
        md,
        "## Nested make: 8 tasks each `make` of 8 CPU-bound sub-jobs at -j{jobs}\n\n\
         Every task runs `make` with `-j8` in its MAKEFLAGS; each sub-job is `{SUB_JOB}` \
         (CPU only). With the jobserver the makes share runqueue's {jobs} slots; without it \
         each runs 8. Medians of 3, interleaved.\n\n\
         | | wall | most sub-jobs at once |\n|---|---|---|"
    )
    .unwrap();
    for ((name, _), figures) in cases.iter().zip(runs) {
        let m = medians(figures);
        writeln!(md, "| {name} | {} | {} |", secs(m.wall), m.most).unwrap();
    }
    md.push('\n');
}

/// One build of the nested makes, sampling how many sub-jobs run at once.
fn sampled(ws: &Path, args: &[&str]) -> Figures {
    let done = Arc::new(AtomicBool::new(false));
    let stop = done.clone();
    let sampler = std::thread::spawn(move || {
        let mut most = 0;
        while !stop.load(Ordering::Relaxed) {
            most = most.max(count_awk());
            std::thread::sleep(Duration::from_millis(5));
        }
        most
    });
    let (mut cmd, _) = rq(ws, args);
    let start = Instant::now();
    assert!(
        cmd.status().unwrap().success(),
        "the nested-make build failed"
    );
    let wall = start.elapsed();
    done.store(true, Ordering::Relaxed);
    let most = sampler.join().unwrap();
    Figures {
        wall,
        peak_mb: 0,
        oom_kills: 0,
        most,
    }
}

/// How many sub-jobs (`awk` processes) run now.
fn count_awk() -> usize {
    let procs = std::fs::read_dir("/proc").unwrap().flatten();
    let comm = |p: PathBuf| std::fs::read_to_string(p.join("comm")).unwrap_or_default();
    let awks = ["awk", "mawk", "gawk"];
    procs
        .filter(|e| awks.contains(&comm(e.path()).trim()))
        .count()
}
