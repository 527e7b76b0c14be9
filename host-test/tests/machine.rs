//! Starting tasks only when the machine can take them: the jobserver that
//! nested builds share (served and joined, with the make and Ninja on the
//! machine), its slots all back after every kind of ending, and memory.

mod common;

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{runqueue_command, stderr, stdout, Ws};

/// Samples, every 10 ms until `done`, how many processes run whose
/// arguments end with `argv`, and how many bytes of memory they hold between them; the most
/// of each.
struct Sampler {
    done: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(usize, u64)>,
}

impl Sampler {
    fn start(argv: &[&str]) -> Sampler {
        let want: Vec<u8> = argv
            .iter()
            .flat_map(|a| [a.as_bytes(), b"\0"].concat())
            .collect();
        let done = Arc::new(AtomicBool::new(false));
        let stop = done.clone();
        let thread = std::thread::spawn(move || {
            let (mut most, mut most_bytes) = (0, 0);
            while !stop.load(Ordering::Relaxed) {
                let (n, bytes) = matching(&want);
                most = most.max(n);
                most_bytes = most_bytes.max(bytes);
                std::thread::sleep(Duration::from_millis(10));
            }
            (most, most_bytes)
        });
        Sampler { done, thread }
    }

    fn stop(self) -> (usize, u64) {
        self.done.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// The processes whose command line ends with `want` (the program may be
/// named by its path): how many, and their resident memory together.
fn matching(want: &[u8]) -> (usize, u64) {
    let (mut n, mut bytes) = (0, 0);
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let dir = entry.path();
        let cmdline = std::fs::read(dir.join("cmdline")).unwrap_or_default();
        if !cmdline.ends_with(want)
            || cmdline.len() > want.len() && cmdline[cmdline.len() - want.len() - 1] != 0
        {
            continue;
        }
        n += 1;
        let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
        let rss_kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
        bytes += rss_kb.unwrap_or(0) * 1024;
    }
    (n, bytes)
}

/// Runs the real binary in `ws` while sampling processes with `argv`.
fn sampled(ws: &Ws, argv: &[&str], args: &[&str]) -> (Output, usize, u64) {
    let sampler = Sampler::start(argv);
    let out = ws.cli(args);
    let (most, bytes) = sampler.stop();
    (out, most, bytes)
}

/// 8 tasks, each a `make` of 8 sub-jobs with `-j8` in its MAKEFLAGS (as
/// BitBake's PARALLEL_MAKE would put it).
fn nested_makes(ws: &Ws, sub_job: &str) -> String {
    let targets: Vec<String> = (1..=8).map(|i| format!("j{i}")).collect();
    let makefile = format!("all: {}\nj%:\n\t@{sub_job}\n", targets.join(" "));
    ws.write("Makefile", &makefile);
    let tasks: Vec<String> = (0..8)
        .map(|i| {
            format!(
                r#"{{"id":"r{i}:do_compile","run":"make -s -f ../Makefile","cwd":"w{i}","env":{{"MAKEFLAGS":"-j8"}}}}"#
            )
        })
        .collect();
    format!(r#"{{"version":1,"tasks":[{}]}}"#, tasks.join(","))
}

#[test]
fn nested_makes_share_the_slots_through_the_jobserver() {
    let ws = Ws::new();
    ws.write("g.json", &nested_makes(&ws, "sleep 0.313"));
    let argv = ["sleep", "0.313"];
    let args = ["build", "g.json", "-j", "4", "--no-cache"];
    let (out, shared, _) = sampled(&ws, &argv, &args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (out, alone, _) = sampled(&ws, &argv, &[&args[..], &["--no-jobserver"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(shared <= 4, "{shared} sub-jobs at once at -j4");
    assert!(
        shared >= 3,
        "the makes took slots beside their tasks': {shared}"
    );
    assert!(alone > 4, "without the jobserver each make runs 8: {alone}");
}

#[test]
fn a_task_can_keep_out_of_the_jobserver() {
    let ws = Ws::new();
    let echo = |id: &str, extra: &str| {
        format!(r#"{{"id":"{id}","run":"echo \"$MAKEFLAGS\" > {id}.flags"{extra}}}"#)
    };
    let g = format!(
        r#"{{"version":1,"tasks":[{},{}]}}"#,
        echo("in", ""),
        echo("out", r#","jobserver":false,"env":{"MAKEFLAGS":"-k"}"#)
    );
    let out = ws.cli_build(&g, &["--no-cache"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let joined = ws.read("in.flags");
    assert!(
        joined.contains("--jobserver-auth=fifo:") && joined.contains("--jobserver-au="),
        "{joined}"
    );
    assert_eq!(ws.read("out.flags"), "-k\n", "its own MAKEFLAGS only");
    let out = ws.cli_build(&g, &["--no-cache", "--no-jobserver"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(ws.read("in.flags"), "\n", "no jobserver: no MAKEFLAGS");
}

/// Ninja 1.13 or later, which joins a jobserver (`fifo:` style only).
fn ninja() -> &'static str {
    let out = Command::new("ninja").arg("--version").output();
    let version = out.map(|o| String::from_utf8_lossy(&o.stdout).to_string());
    let version = version.expect("ninja is on PATH (make test installs it from PyPI)");
    let mut parts = version
        .trim()
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    assert!(
        (major, minor) >= (1, 13),
        "ninja {version} is older than 1.13"
    );
    "ninja"
}

#[test]
fn nested_ninjas_share_the_slots_too() {
    let ws = Ws::new();
    let mut build = "rule s\n  command = sleep 0.317 && touch $out\n".to_string();
    for i in 1..=8 {
        build += &format!("build o{i}: s\n");
    }
    ws.write("build.ninja", &build);
    let tasks: Vec<String> = (0..6)
        .map(|i| format!(r#"{{"id":"n{i}","run":"rm -f o* .ninja_log && {} -f ../build.ninja","cwd":"n{i}"}}"#, ninja()))
        .collect();
    ws.write(
        "g.json",
        &format!(r#"{{"version":1,"tasks":[{}]}}"#, tasks.join(",")),
    );
    let argv = ["sleep", "0.317"];
    let args = ["build", "g.json", "-j", "3", "--no-cache"];
    let (out, shared, _) = sampled(&ws, &argv, &args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (out, alone, _) = sampled(&ws, &argv, &[&args[..], &["--no-jobserver"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        (2..=3).contains(&shared),
        "{shared} sub-jobs at once at -j3"
    );
    assert!(
        alone > 3,
        "without the jobserver each ninja runs its own -j: {alone}"
    );
}

/// The served FIFO, named by the MAKEFLAGS a task wrote to `flags`,
/// opened here as soon as it is there: what is in it stays readable
/// after runqueue has gone.
fn open_pool(ws: &Ws, flags: &str) -> OwnedFd {
    let deadline = Instant::now() + Duration::from_secs(20);
    let path = loop {
        let text = std::fs::read_to_string(ws.join(flags)).unwrap_or_default();
        let fifo = text
            .split_whitespace()
            .find_map(|w| w.strip_prefix("--jobserver-auth=fifo:"));
        if let Some(p) = fifo.filter(|_| text.ends_with('\n')) {
            break p.to_string();
        }
        assert!(Instant::now() < deadline, "no task wrote its MAKEFLAGS");
        std::thread::sleep(Duration::from_millis(10));
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path);
    OwnedFd::from(file.expect("open the jobserver FIFO"))
}

/// Bytes waiting in the pipe behind `fd`.
fn in_pipe(fd: &OwnedFd) -> i32 {
    let mut n: libc::c_int = 0;
    #[allow(unsafe_code)]
    // SAFETY: FIONREAD writes one int.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n) };
    assert_eq!(r, 0);
    n
}

/// Starts `runqueue build g.json -j 3 ARGS` on `graph` in `ws`.
fn start(ws: &Ws, graph: &str, args: &[&str]) -> Child {
    ws.write("g.json", graph);
    runqueue_command(ws.path())
        .args([&["build", "g.json", "-j", "3", "--no-cache"], args].concat())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// A graph whose first task writes its MAKEFLAGS to `flags`, beside `tasks`.
fn with_flags(tasks: &[&str]) -> String {
    let first =
        r#"{"id":"flags","run":"echo $MAKEFLAGS > flags.tmp && mv flags.tmp flags && sleep 0.5"}"#;
    format!(r#"{{"version":1,"tasks":[{first},{}]}}"#, tasks.join(","))
}

fn signal(child: &Child, sig: i32) {
    #[allow(unsafe_code)]
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(child.id() as i32, sig);
    }
}

/// Runs `graph`, calls `during` once the pool is open, and returns the
/// exit code and the slots in the pool once runqueue has exited: all of
/// them but the one runqueue keeps, however the build ended.
fn slots_after(graph: &str, args: &[&str], during: impl FnOnce(&Ws, &Child)) -> (i32, i32) {
    let ws = Ws::new();
    ws.write("Makefile", "all: a b c d\na b c d:\n\t@sleep 3\n");
    let child = start(&ws, graph, args);
    let pool = open_pool(&ws, "flags");
    during(&ws, &child);
    let out = child.wait_with_output().unwrap();
    (out.status.code().unwrap_or(-1), in_pipe(&pool))
}

#[test]
fn every_slot_comes_back_after_success_failure_timeout_and_interrupt() {
    let make = r#"{"id":"m","run":"make -s -f Makefile"}"#;
    let quick =
        r#"{"id":"q","run":"printf 'all: a b\na b:\n\t@true\n' > q.mk && make -s -f q.mk"}"#;
    // Takes a slot from the pool and dies of SIGKILL without giving it back.
    let thief = r#"{"id":"thief","run":"sleep 0.2; python3 -c \"import os,re; r=re.search(r'--jobserver-au=(\\d+),', os.environ['MAKEFLAGS']).group(1); os.read(int(r), 1); os.kill(os.getpid(), 9)\""}"#;
    let failing = r#"{"id":"f","run":"make -s -f Makefile & sleep 0.5; exit 3"}"#;
    let timed = r#"{"id":"t","run":"make -s -f Makefile","timeout":0.8}"#;

    let (code, slots) = slots_after(&with_flags(&[quick]), &[], |_, _| {});
    assert_eq!((code, slots), (0, 2), "after success");
    let (code, slots) = slots_after(&with_flags(&[failing, thief]), &["-k"], |_, _| {});
    assert_eq!((code, slots), (1, 2), "after failures, one of them a thief");
    let (code, slots) = slots_after(&with_flags(&[timed]), &[], |_, _| {});
    assert_eq!((code, slots), (1, 2), "after a timeout");
    let (code, slots) = slots_after(&with_flags(&[make]), &[], |ws, child| {
        wait_for(ws, "m");
        signal(child, libc::SIGINT);
        std::thread::sleep(Duration::from_millis(300));
        signal(child, libc::SIGINT);
    });
    assert_eq!(
        (code, slots),
        (1, 2),
        "after two interrupts killed the makes"
    );
}

/// Waits until make's sub-jobs of task `id` (cwd = workspace) run.
fn wait_for(ws: &Ws, _id: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while matching(b"sleep\x003\x00").0 == 0 {
        assert!(
            Instant::now() < deadline,
            "make never started in {:?}",
            ws.path()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn under_make_j3_runqueue_takes_make_slots_and_runs_three_at_once() {
    let ws = Ws::new();
    let tasks: Vec<String> = (0..9)
        .map(|i| format!(r#"{{"id":"s{i}","run":"sleep 0.419"}}"#))
        .collect();
    ws.write(
        "g.json",
        &format!(r#"{{"version":1,"tasks":[{}]}}"#, tasks.join(",")),
    );
    let rq = env!("CARGO_BIN_EXE_runqueue");
    // `+`: make hands its jobserver to recursive commands only.
    let rule = format!("all:\n\t+{rq} build g.json --no-cache --report r.json\n");
    ws.write("Makefile", &rule);
    let sampler = Sampler::start(&["sleep", "0.419"]);
    let out = Command::new("make")
        .args(["-j3", "-s"])
        .current_dir(ws.path())
        .env("RUNQUEUE_COMPONENT", common::component_path())
        .env_remove("MAKEFLAGS")
        .output()
        .unwrap();
    let (most, _) = sampler.stop();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&ws.read("r.json")).unwrap();
    assert_eq!(report["totals"]["peak_parallel"], 3, "{}", stdout(&out));
    assert_eq!(most, 3);
}

/// A task that allocates and touches `mb` MiB, then holds them a while.
fn hog(id: &str, mb: u64) -> String {
    format!(
        r#"{{"id":"{id}","run":"python3 -c \"import time; b = b'x' * ({mb} << 20); time.sleep(0.6)\" && touch {id}.done","outputs":["{id}.done"]}}"#
    )
}

#[test]
fn memory_hogs_start_only_when_their_recorded_peaks_fit() {
    let ws = Ws::new();
    const LIMIT_MB: u64 = 600;
    // One run teaches the history what a do_hog takes.
    ws.write(
        "g.json",
        &format!(
            r#"{{"version":1,"tasks":[{}]}}"#,
            hog("r0:do_hog", LIMIT_MB / 3)
        ),
    );
    let out = ws.cli(&["build", "g.json", "--memory-limit", "none"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // Six new ones, each a third of the limit: never three at once.
    let hogs: Vec<String> = (1..=6)
        .map(|i| hog(&format!("r{i}:do_hog"), LIMIT_MB / 3))
        .collect();
    ws.write(
        "g.json",
        &format!(r#"{{"version":1,"tasks":[{}]}}"#, hogs.join(",")),
    );
    let argv = ["-c", "import time; b = b'x' * (200 << 20); time.sleep(0.6)"];
    let limit = format!("{LIMIT_MB}M");
    let args = [
        "build",
        "g.json",
        "-j",
        "6",
        "--memory-limit",
        &limit,
        "--report",
        "r.json",
    ];
    let (out, _, bytes) = sampled(&ws, &argv, &args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // The console says what the next task waits for.
    assert!(stdout(&out).contains("(for memory)"), "{}", stdout(&out));
    assert!(bytes <= LIMIT_MB << 20, "{} MiB at once", bytes >> 20);
    // Two at once, never three (pyenv's shims make the process count
    // unreliable: the report counts the tasks).
    assert!(bytes > 300 << 20, "two at once: {} MiB", bytes >> 20);
    let report: serde_json::Value = serde_json::from_str(&ws.read("r.json")).unwrap();
    assert_eq!(report["totals"]["peak_parallel"], 2);
    let held = report["tasks"].as_array().unwrap().iter();
    let by_memory = held
        .filter(|t| t["held_by"].to_string().contains("memory"))
        .count();
    assert!(by_memory >= 4, "{}", ws.read("r.json"));
    assert!(report["tasks"][0]["peak_memory"].as_u64().unwrap() > 200 << 20);
    // simulate answers the same from the recorded peaks.
    let out = ws.cli(&["simulate", "g.json", "-j", "6", "--memory-limit", &limit]);
    assert!(
        stdout(&out).contains("peak         2 tasks at once"),
        "{}",
        stdout(&out)
    );
}

/// A memory cgroup (v1) of `limit` bytes for a test, removed on drop.
struct Cgroup(std::path::PathBuf);

impl Cgroup {
    fn new(limit: u64) -> Cgroup {
        let base = Path::new("/sys/fs/cgroup/memory");
        assert!(
            base.is_dir(),
            "this test needs the cgroup v1 memory controller"
        );
        let dir = base.join(format!("runqueue-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create a memory cgroup (as root)");
        std::fs::write(dir.join("memory.limit_in_bytes"), limit.to_string()).unwrap();
        let memsw = dir.join("memory.memsw.limit_in_bytes");
        if memsw.exists() {
            std::fs::write(memsw, limit.to_string()).unwrap();
        }
        Cgroup(dir)
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn a_task_the_kernel_kills_for_memory_runs_again_alone() {
    let ws = Ws::new();
    let cgroup = Cgroup::new(400 << 20);
    ws.write(
        "g.json",
        &format!(
            r#"{{"version":1,"tasks":[{},{}]}}"#,
            hog("a", 250),
            hog("b", 250)
        ),
    );
    let rq = env!("CARGO_BIN_EXE_runqueue");
    let script = format!(
        "echo $$ > {}/cgroup.procs && exec {rq} build g.json -j 2 --memory-limit none --report r.json",
        cgroup.0.display()
    );
    let out = Command::new("sh")
        .args(["-c", &script])
        .current_dir(ws.path())
        .env("RUNQUEUE_COMPONENT", common::component_path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let report: serde_json::Value = serde_json::from_str(&ws.read("r.json")).unwrap();
    let reruns = report["totals"]["oom_reruns"].as_u64().unwrap();
    assert_eq!(reruns, 1, "{}", ws.read("r.json"));
    assert!(
        stdout(&out).contains("1 re-run alone after an out-of-memory kill"),
        "{}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains("killed by the kernel for lack of memory; running it again alone")
    );
}
