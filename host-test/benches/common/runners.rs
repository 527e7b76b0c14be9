//! Running the same graph with runqueue, Ninja and make, and timing it:
//! shared by the benchmarks that race them.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use runqueue::graph::import::{self, ImportOptions};
use runqueue::graph::Graph;
use runqueue::schedule::estimate::expected_durations;
use runqueue::schedule::simulate::{durations_for, parse_durations};

/// The CLI of this build's target directory (`CARGO_TARGET_DIR` is
/// honoured): `cargo bench` builds the benchmarks next to it.
pub fn runqueue_bin() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory holds tmp/")
        .join("release/runqueue")
}

/// The moevm durations, by (recipe, task), in ms.
pub fn moevm_durations() -> HashMap<(String, String), u64> {
    let tsv = super::yocto_data().join("moevm__yocto_profiling.durations.tsv");
    parse_durations(&std::fs::read_to_string(&tsv).unwrap()).unwrap()
}

/// The median of three or more.
pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// A copy of the tree `from` at `to` (modes and times kept).
pub fn copy_tree(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success(), "cp -a {from:?} {to:?} failed");
}

/// A graph from a Yocto edge list, with the moevm durations (by recipe and
/// task, else the median of the task name).
pub fn load(
    name: &str,
    durations: &HashMap<(String, String), u64>,
    run: Option<&str>,
    scale: f64,
) -> (String, Graph, Vec<u64>) {
    let text =
        std::fs::read_to_string(super::yocto_data().join(format!("{name}.edges.txt"))).unwrap();
    let tasks = import::parse(&text).unwrap();
    let json = import::to_graph(
        &tasks,
        &ImportOptions {
            run_template: run.map(str::to_string),
            durations_ms: durations.clone(),
            scale,
        },
    );
    let graph = Graph::parse(&json).unwrap();
    let d = expected_durations(&graph, &durations_for(&graph, durations));
    (json, graph, d)
}

pub fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// Runs a command, returning its wall time and peak memory (KiB).
pub fn measure(cmd: &mut Command) -> (Duration, u64) {
    let (wall, peak, status) = measure_any(cmd);
    assert!(status == 0, "{cmd:?} failed with exit status {status}");
    (wall, peak)
}

/// Runs a command, returning its wall time, peak memory (KiB) and exit
/// code (-1 when a signal ended it).
pub fn measure_any(cmd: &mut Command) -> (Duration, u64, i32) {
    let start = Instant::now();
    let child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let mut status = 0;
    // SAFETY: wait4 on our own child, with valid pointers to locals.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = start.elapsed();
    assert_eq!(rc, pid);
    std::mem::forget(child);
    let code = match libc::WIFEXITED(status) {
        true => libc::WEXITSTATUS(status),
        false => -1,
    };
    (wall, usage.ru_maxrss as u64, code)
}

pub fn write_ninja(dir: &Path, graph: &Graph) {
    let mut s = String::from("rule r\n  command = $cmd\n\n");
    for (i, t) in graph.tasks.iter().enumerate() {
        let deps: Vec<String> = t.deps.iter().map(|d| format!("s/{}", d.0)).collect();
        let cmd = match &t.action {
            runqueue::graph::Action::Shell(c) => c.clone(),
            _ => "true".into(),
        };
        let implicit = if deps.is_empty() {
            String::new()
        } else {
            format!(" | {}", deps.join(" "))
        };
        // The same command as runqueue runs, nothing added: the stamp files
        // are never created, so every run is a full build.
        writeln!(
            s,
            "build s/{i}: r{implicit}\n  cmd = {}",
            cmd.replace('$', "$$")
        )
        .unwrap();
    }
    let all: Vec<String> = (0..graph.len()).map(|i| format!("s/{i}")).collect();
    writeln!(s, "build all: phony {}\ndefault all", all.join(" ")).unwrap();
    std::fs::write(dir.join("build.ninja"), s).unwrap();
    std::fs::create_dir_all(dir.join("s")).unwrap();
}

pub fn write_make(dir: &Path, graph: &Graph) {
    let all: Vec<String> = (0..graph.len()).map(|i| format!("s/{i}")).collect();
    let mut s = format!(".PHONY: all\nall: {}\n\n", all.join(" "));
    for (i, t) in graph.tasks.iter().enumerate() {
        let deps: Vec<String> = t.deps.iter().map(|d| format!("s/{}", d.0)).collect();
        let cmd = match &t.action {
            runqueue::graph::Action::Shell(c) => c.clone(),
            _ => "true".into(),
        };
        writeln!(
            s,
            "s/{i}: {}\n\t@{}",
            deps.join(" "),
            cmd.replace('$', "$$")
        )
        .unwrap();
    }
    std::fs::write(dir.join("Makefile"), s).unwrap();
    std::fs::create_dir_all(dir.join("s")).unwrap();
}

pub fn reset(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir.join("s"));
    std::fs::create_dir_all(dir.join("s")).unwrap();
}

pub fn rq(ws: &Path, graph: &str, jobs: u32, extra: &[&str]) -> Command {
    let mut c = Command::new(runqueue_bin());
    c.arg("build")
        .arg(ws.join(graph))
        .args(["-j", &jobs.to_string(), "--workspace"])
        .arg(ws)
        .args(extra);
    c
}

pub fn ninja(ws: &Path, jobs: u32) -> Command {
    let mut c = Command::new("ninja");
    c.args(["-j", &jobs.to_string(), "-C"]).arg(ws);
    c
}

pub fn make(ws: &Path, jobs: u32) -> Command {
    let mut c = Command::new("make");
    c.args(["-s", "-j", &jobs.to_string(), "-C"]).arg(ws);
    c
}
