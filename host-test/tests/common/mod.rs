//! Shared helpers for the end-to-end tests: the component loaded once per
//! test process, temporary workspaces, and running the real CLI binary.

#![allow(dead_code)]

pub mod buildgrid;
pub mod nginx;
pub mod paths;
pub mod service;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use runqueue_host::{Event, Report, RunError, RunOptions, Runqueue, Workspace};

/// The component under test: `$RUNQUEUE_COMPONENT`, else the release build
/// in this workspace's target directory.
pub fn component_path() -> PathBuf {
    if let Some(p) = std::env::var_os("RUNQUEUE_COMPONENT") {
        return PathBuf::from(p);
    }
    let p = paths::wasm_release_dir().join("runqueue.wasm");
    assert!(
        p.is_file(),
        "{} is missing: build the component first (make build)",
        p.display()
    );
    p
}

/// The real `runqueue` binary, set to run in `dir` with the component under
/// test; the caller adds the arguments and the stdio.
pub fn runqueue_command(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_runqueue"));
    c.current_dir(dir)
        .env("RUNQUEUE_COMPONENT", component_path());
    c
}

/// The component, compiled once for the whole test process.
pub fn runqueue() -> &'static Runqueue {
    static RQ: OnceLock<Runqueue> = OnceLock::new();
    RQ.get_or_init(|| Runqueue::load(&component_path()).expect("load the component"))
}

/// A temporary workspace directory.
pub struct Ws {
    pub dir: tempfile::TempDir,
}

impl Ws {
    pub fn new() -> Ws {
        Ws {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn join(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
    }

    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Every file and directory below the workspace, relative, sorted.
    pub fn listing(&self) -> Vec<String> {
        fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
                if p.is_dir() && !p.is_symlink() {
                    walk(root, &p, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(self.path(), self.path(), &mut out);
        out.sort();
        out
    }

    /// Runs `graph` through the library API without a cache.
    pub fn run(&self, graph: &str, jobs: u32, keep_going: bool) -> Run {
        self.run_with(
            graph,
            RunOptions {
                max_parallel: Some(jobs),
                keep_going,
                cache: None,
                ..Default::default()
            },
        )
    }

    /// Runs `graph` with the default cache in the workspace, as the CLI does.
    pub fn run_cached(&self, graph: &str, jobs: u32) -> Run {
        self.run_with(
            graph,
            RunOptions {
                max_parallel: Some(jobs),
                keep_going: false,
                cache: Some(runqueue_host::DEFAULT_CACHE.into()),
                ..Default::default()
            },
        )
    }

    /// Runs `graph` through the library API and returns the result, the
    /// events and the wall time of the run alone.
    pub fn run_with(&self, graph: &str, opts: RunOptions) -> Run {
        self.run_observed(graph, opts, |_| {})
    }

    /// As [`Ws::run_with`], with `observe` called on each event as it
    /// comes (from the component's thread: it blocks the component).
    pub fn run_observed(
        &self,
        graph: &str,
        opts: RunOptions,
        observe: impl Fn(&Event) + Send + 'static,
    ) -> Run {
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let rq = runqueue();
        let ws = Workspace::open(self.path()).unwrap();
        let start = Instant::now();
        let result = rt
            .block_on(rq.run(graph, &opts, &ws, move |e| {
                observe(&e);
                sink.lock().unwrap().push(e)
            }))
            .expect("the component does not trap");
        let wall = start.elapsed();
        let events = std::mem::take(&mut *events.lock().unwrap());
        Run {
            result,
            events,
            wall,
        }
    }

    /// Runs the real `runqueue` binary with `args` in this workspace.
    pub fn cli(&self, args: &[&str]) -> Output {
        runqueue_command(self.path())
            .args(args)
            .output()
            .expect("run the runqueue binary")
    }

    /// Like [`Ws::cli`], but a run that has not ended after `secs` seconds
    /// is killed and fails the test: for what used to hang.
    pub fn cli_within(&self, secs: u64, args: &[&str]) -> Output {
        let mut child = runqueue_command(self.path())
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run the runqueue binary");
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        while child.try_wait().expect("wait").is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("runqueue {args:?} still running after {secs} s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().expect("wait")
    }

    /// Makes a key pair `NAME.sec` and `NAME.pub` here for each name.
    pub fn keygen(&self, names: &[&str]) {
        for name in names {
            let (secret, public) = (format!("{name}.sec"), format!("{name}.pub"));
            let out = self.cli(&["keygen", name, &secret, &public]);
            assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        }
    }

    /// Writes `graph` to `g.json` and runs `runqueue build g.json` with
    /// `args` in this workspace.
    pub fn cli_build(&self, graph: &str, args: &[&str]) -> Output {
        self.write("g.json", graph);
        self.cli(&[&["build", "g.json"], args].concat())
    }
}

pub struct Run {
    pub result: Result<Report, RunError>,
    pub events: Vec<Event>,
    pub wall: Duration,
}

impl Run {
    /// Ids of the tasks in `state`, in graph order.
    pub fn ids_in(&self, state: runqueue_host::TaskState) -> Vec<String> {
        self.report()
            .tasks
            .iter()
            .filter(|t| t.state == state)
            .map(|t| t.id.clone())
            .collect()
    }

    /// Ids of the tasks in the order they started.
    pub fn started_ids(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Started(s) => Some(s.id.clone()),
                _ => None,
            })
            .collect()
    }

    /// Warnings the run emitted.
    pub fn warnings(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Warning(w) => Some(w.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn report(&self) -> &Report {
        self.result.as_ref().expect("the graph is valid")
    }

    pub fn task(&self, id: &str) -> &runqueue_host::TaskReport {
        self.report()
            .tasks
            .iter()
            .find(|t| t.id == id)
            .unwrap_or_else(|| panic!("no task {id}"))
    }
}

/// Builds a graph JSON text from `(id, deps, run)` triples.
pub fn graph(tasks: &[(&str, &[&str], &str)]) -> String {
    let tasks: Vec<serde_json::Value> = tasks
        .iter()
        .map(|(id, deps, run)| serde_json::json!({"id": id, "deps": deps, "run": run}))
        .collect();
    serde_json::json!({"version": 1, "tasks": tasks}).to_string()
}

/// `n` independent tasks `t0`, `t1`, ..., each writing its number to the
/// output it declares, `o0`, `o1`, ....
pub fn numbered_outputs(n: usize) -> String {
    let tasks: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            let (id, out) = (format!("t{i}"), format!("o{i}"));
            serde_json::json!({"id": id, "run": format!("echo {i} > {out}"), "outputs": [out]})
        })
        .collect();
    serde_json::json!({"version": 1, "tasks": tasks}).to_string()
}

/// A BitBake-style run script of about `bytes` bytes: exports, many shell
/// functions (each appending a line to `out`), then the task function that
/// calls them all. Returns the text and how many lines it writes.
pub fn bitbake_script(bytes: usize, out: &str) -> (String, usize) {
    let mut s =
        String::from("#!/bin/sh\nset -e\nexport CC=\"x86_64-poky-linux-gcc  -m64 -march=core2\"\n");
    let mut n = 0;
    while s.len() < bytes {
        s += &format!(
            "# line: 42, file: /srv/poky/meta/classes-recipe/autotools.bbclass\n\
             autotools_step_{n}() {{\n\tbbnote \"step {n}: 'quoted' \\\"and\\\" $CC\" >/dev/null\n\
             \tprintf '%s\\n' \"step {n}\" >> {out}\n}}\n\nbbnote() {{ echo \"NOTE: $*\"; }}\n"
        );
        n += 1;
    }
    s += "do_compile() {\n";
    for i in 0..n {
        s += &format!("\tautotools_step_{i}\n");
    }
    s += "}\n\ndo_compile\n";
    (s, n)
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Whether process `pid` is still running: it exists and is not a zombie
/// (a killed task its parent has not reaped yet).
pub fn process_is_running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.split(' ').nth(2) != Some("Z"))
        .unwrap_or(false)
}

/// The pid the console printed for `id` ("started  ID (pid N, ...").
pub fn printed_pid(stdout: &str, id: &str) -> u32 {
    let start = format!("started  {id} (pid ");
    let at = stdout
        .find(&start)
        .unwrap_or_else(|| panic!("{id} started: {stdout}"))
        + start.len();
    stdout[at..].split(',').next().unwrap().parse().unwrap()
}
