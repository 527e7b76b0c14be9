//! Bad input: the corpus in `tests/bad-input/` (each `NAME.json` with the
//! exact stderr in `NAME.err`) and generated cases too big or too binary
//! for files. Every case must exit 2 with its message, print nothing on
//! stdout, run nothing, and leave the workspace, the cache, and what lies
//! next to the workspace exactly as they were.

mod common;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::SystemTime;

use common::{runqueue_command, stderr, stdout};

/// A workspace that has seen one good build (cache entries, logs,
/// outputs), a file `victim` next to it, and a symlink `escape` in it that
/// leads to its parent. Bad graphs are run with the cache outside the
/// workspace, at `../cache`, so both are watched.
struct Fixture {
    root: tempfile::TempDir,
}

const GOOD: &str = r#"{"version":1,"tasks":[
  {"id":"app:do_compile","inputs":["src/main.c"],"outputs":["out/bin"],
   "run":"echo compiling; mkdir -p out && cat src/main.c > out/bin"}]}"#;

impl Fixture {
    fn new() -> Fixture {
        let root = tempfile::tempdir().unwrap();
        let ws = root.path().join("ws");
        std::fs::create_dir_all(ws.join("src")).unwrap();
        std::fs::write(root.path().join("victim"), "precious\n").unwrap();
        std::fs::write(ws.join("src/main.c"), "int main(void) { return 0; }\n").unwrap();
        std::os::unix::fs::symlink("..", ws.join("escape")).unwrap();
        let f = Fixture { root };
        std::fs::write(ws.join("good.json"), GOOD).unwrap();
        for cache in [&["--cache", "../cache"][..], &[]] {
            let mut args = vec!["build", "good.json"];
            args.extend_from_slice(cache);
            let out = f.cli(args.iter().map(OsStr::new));
            assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        }
        std::fs::remove_file(ws.join("good.json")).unwrap();
        f
    }

    fn ws(&self) -> PathBuf {
        self.root.path().join("ws")
    }

    fn cli<'a>(&self, args: impl IntoIterator<Item = &'a OsStr>) -> Output {
        runqueue_command(&self.ws())
            .args(args)
            .output()
            .expect("run the runqueue binary")
    }

    /// [`Fixture::cli`] with `input` on standard input.
    fn cli_fed<'a>(&self, args: impl IntoIterator<Item = &'a OsStr>, input: &[u8]) -> Output {
        use std::process::Stdio;
        let mut child = runqueue_command(&self.ws())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run the runqueue binary");
        let mut stdin = child.stdin.take().unwrap();
        let input = input.to_vec();
        // A writer of its own: runqueue may stop reading (at its cap).
        let feeder = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &input));
        let out = child.wait_with_output().unwrap();
        let _ = feeder.join();
        out
    }

    /// Every path under the fixture but the graph being tried, with its
    /// kind, content (or link target) and modification time.
    fn snapshot(&self, graph: &OsStr) -> BTreeMap<PathBuf, String> {
        fn walk(root: &Path, dir: &Path, skip: &Path, out: &mut BTreeMap<PathBuf, String>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                let rel = p.strip_prefix(root).unwrap().to_path_buf();
                if rel == skip {
                    continue;
                }
                let m = std::fs::symlink_metadata(&p).unwrap();
                let mtime = m
                    .modified()
                    .unwrap()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos();
                let what = if m.is_symlink() {
                    format!("link {:?}", std::fs::read_link(&p).unwrap())
                } else if m.is_dir() {
                    walk(root, &p, skip, out);
                    "dir".to_string()
                } else {
                    format!("file {:?}", std::fs::read(&p).unwrap())
                };
                out.insert(rel, format!("{what} at {mtime}"));
            }
        }
        let mut out = BTreeMap::new();
        let skip = Path::new("ws").join(graph);
        walk(self.root.path(), self.root.path(), &skip, &mut out);
        out
    }

    /// Runs `build` on `graph` (the bytes, written to `name`, or given on
    /// standard input when `name` is `-`) and checks the exit code, the
    /// exact stderr, an empty stdout, and that nothing changed. Returns
    /// what went wrong instead of panicking, so a corpus run reports every
    /// failing case at once.
    fn refuse_named(
        &self,
        name: &OsStr,
        graph: &[u8],
        extra: &[&str],
        want: &str,
    ) -> Result<(), String> {
        let stdin = name == "-";
        if !stdin {
            std::fs::write(self.ws().join(name), graph).unwrap();
        }
        let before = self.snapshot(name);
        let mut args: Vec<&OsStr> = vec![OsStr::new("build"), name];
        args.extend(["-j", "2", "--cache", "../cache"].map(OsStr::new));
        args.extend(extra.iter().map(OsStr::new));
        let out = match stdin {
            true => self.cli_fed(args, graph),
            false => self.cli(args),
        };
        let after = self.snapshot(name);
        if !stdin {
            std::fs::remove_file(self.ws().join(name)).unwrap();
        }
        let mut problems = Vec::new();
        if out.status.code() != Some(2) {
            problems.push(format!("exit {:?}, not 2", out.status.code()));
        }
        if stderr(&out) != want {
            problems.push(format!("stderr {:?}\n  wanted {want:?}", stderr(&out)));
        }
        if !out.stdout.is_empty() {
            problems.push(format!("stdout {:?}", stdout(&out)));
        }
        if after != before {
            let changed: Vec<_> = after
                .keys()
                .chain(before.keys())
                .filter(|k| after.get(*k) != before.get(*k))
                .collect();
            problems.push(format!("changed on disk: {changed:?}"));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n  "))
        }
    }

    fn refuse(&self, graph: &[u8], message: &str) {
        let want = format!("runqueue: invalid graph g.json: {message}\n");
        if let Err(e) = self.refuse_named(OsStr::new("g.json"), graph, &[], &want) {
            panic!("{e}");
        }
    }
}

#[test]
fn every_case_of_the_corpus_is_refused_with_its_message_and_changes_nothing() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad-input");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension() == Some(OsStr::new("json")))
        .collect();
    names.sort();
    assert!(names.len() >= 60, "the corpus is there: {}", names.len());
    let f = Fixture::new();
    let mut failures = Vec::new();
    for path in &names {
        let want = std::fs::read_to_string(path.with_extension("err"))
            .unwrap_or_else(|e| panic!("{}: no .err file: {e}", path.display()));
        let graph = std::fs::read(path).unwrap();
        // The same from standard input, named `-` in the message.
        let fed = want.replacen("invalid graph g.json:", "invalid graph -:", 1);
        for (name, want) in [("g.json", &want), ("-", &fed)] {
            if let Err(e) = f.refuse_named(OsStr::new(name), &graph, &[], want) {
                let case = path.file_name().unwrap().to_string_lossy();
                failures.push(format!("{case} ({name}):\n  {e}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(
        std::fs::read_to_string(f.root.path().join("victim")).unwrap(),
        "precious\n"
    );
}

/// `n` tasks in one chain, the first depending on the last.
fn ring(n: usize) -> String {
    let tasks: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"id":"r{i}:do_t","deps":["r{}:do_t"],"run":"touch ran"}}"#,
                (i + 1) % n
            )
        })
        .collect();
    format!(r#"{{"version":1,"tasks":[{}]}}"#, tasks.join(","))
}

#[test]
fn a_hundred_thousand_task_cycle_is_named_by_its_ends() {
    Fixture::new().refuse(
        ring(100_000).as_bytes(),
        "dependency cycle of 100000 tasks: r0:do_t -> r1:do_t -> r2:do_t -> r3:do_t -> r4:do_t \
         -> ... (99991 more) ... -> r99996:do_t -> r99997:do_t -> r99998:do_t -> r99999:do_t -> r0:do_t",
    );
}

#[test]
fn a_hundred_thousand_tasks_with_one_unknown_dependency() {
    let mut tasks: Vec<String> = (0..100_000)
        .map(|i| format!(r#"{{"id":"r{i}:do_t","run":"touch ran"}}"#))
        .collect();
    tasks.push(r#"{"id":"last","deps":["r5:do_t","r100000:do_t"]}"#.into());
    Fixture::new().refuse(
        format!(r#"{{"version":1,"tasks":[{}]}}"#, tasks.join(",")).as_bytes(),
        "task \"last\" depends on unknown task \"r100000:do_t\"",
    );
}

#[test]
fn more_tasks_than_the_limit() {
    let tasks: Vec<String> = (0..1_000_001)
        .map(|i| format!(r#"{{"id":"{i}"}}"#))
        .collect();
    Fixture::new().refuse(
        format!(r#"{{"version":1,"tasks":[{}]}}"#, tasks.join(",")).as_bytes(),
        "the graph has 1000001 tasks; the limit is 1000000",
    );
}

#[test]
fn ten_megabyte_strings_in_every_field() {
    let f = Fixture::new();
    let huge = "x".repeat(10 << 20);
    let cases = [
        (
            format!(r#"{{"id":"{huge}"}}"#),
            "task #0: id is longer than 4096 bytes",
        ),
        (
            format!(r#"{{"id":"a","deps":["{huge}"]}}"#),
            "task \"a\": a dependency id is longer than 4096 bytes",
        ),
        (
            format!(r#"{{"id":"a","run":"{huge}"}}"#),
            "task \"a\": run is longer than 1048576 bytes",
        ),
        (
            format!(r#"{{"id":"a","argv":["touch","{huge}"]}}"#),
            "task \"a\": argv is longer than 1048576 bytes",
        ),
        (
            format!(r#"{{"id":"a","cwd":"{huge}"}}"#),
            "task \"a\": a path is longer than 1048576 bytes",
        ),
        (
            format!(r#"{{"id":"a","inputs":["{huge}"]}}"#),
            "task \"a\": a path is longer than 1048576 bytes",
        ),
        (
            format!(r#"{{"id":"a","outputs":["{huge}"]}}"#),
            "task \"a\": a path is longer than 1048576 bytes",
        ),
        (
            format!(r#"{{"id":"a","env":{{"{huge}":"1"}}}}"#),
            "task \"a\": an env entry is longer than 1048576 bytes",
        ),
        (
            format!(r#"{{"id":"a","env":{{"A":"{huge}"}}}}"#),
            "task \"a\": an env entry is longer than 1048576 bytes",
        ),
        (
            format!(r#"{{"id":"a","pool":"{huge}"}}"#),
            "task \"a\": pool is longer than 4096 bytes",
        ),
    ];
    for (task, message) in cases {
        let graph =
            format!(r#"{{"version":1,"tasks":[{{"id":"first","run":"touch ran"}},{task}]}}"#);
        let message = message.replace("#0", "#1");
        f.refuse(graph.as_bytes(), &message);
    }
    f.refuse(
        format!(
            r#"{{"version":1,"env":{{"A":"{huge}"}},"tasks":[{{"id":"a","run":"touch ran"}}]}}"#
        )
        .as_bytes(),
        "the graph's env: an entry is longer than 1048576 bytes",
    );
    f.refuse(
        format!(
            r#"{{"version":1,"pools":{{"{huge}":1}},"tasks":[{{"id":"a","run":"touch ran"}}]}}"#
        )
        .as_bytes(),
        "the graph's pools: a name is longer than 4096 bytes",
    );
}

/// Deep nesting meets a type error at its first level: the parser never
/// recurses into it, so it cannot overflow a stack.
#[test]
fn json_nested_too_deeply() {
    let deep = format!(
        r#"{{"version":1,"tasks":{}{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    Fixture::new().refuse(
        deep.as_bytes(),
        "malformed graph: invalid type: sequence, expected a string at line 1 column 23",
    );
}

#[test]
fn bytes_that_are_not_utf8() {
    let f = Fixture::new();
    let mut graph = br#"{"version":1,"tasks":[{"id":"a","run":"touch ran"},{"id":"b"#.to_vec();
    let want = format!(
        "runqueue: graph g.json is not UTF-8 text (bad byte at offset {})\n",
        graph.len()
    );
    graph.extend_from_slice(b"\xff\xfe\"}]}");
    f.refuse_named(OsStr::new("g.json"), &graph, &[], &want)
        .unwrap();
}

#[test]
fn file_names_that_are_not_utf8() {
    let f = Fixture::new();
    // An input directory holding a name WASI cannot pass.
    let odd = OsStr::from_bytes(b"bad\xffname.c");
    std::fs::write(f.ws().join("src").join(odd), "x").unwrap();
    f.refuse(
        br#"{"version":1,"tasks":[{"id":"a","inputs":["src"],"run":"touch ran"}]}"#,
        "task \"a\": input \"src\": holds a file name that is not UTF-8, which runqueue cannot read; rename it",
    );
    std::fs::remove_file(f.ws().join("src").join(odd)).unwrap();
    // A graph file whose own name is not UTF-8 is read; its errors name it.
    let name = OsStr::from_bytes(b"g\xfe.json");
    let want = "runqueue: invalid graph g\u{fffd}.json: task \"a\" depends on itself\n";
    f.refuse_named(
        name,
        br#"{"version":1,"tasks":[{"id":"a","deps":["a"],"run":"touch ran"}]}"#,
        &[],
        want,
    )
    .unwrap();
}

#[test]
fn log_directories_outside_the_workspace() {
    let f = Fixture::new();
    let graph = br#"{"version":1,"tasks":[{"id":"a","run":"echo hi; touch ran"}]}"#;
    for (dir, problem) in [
        (
            "../logs",
            "leaves the workspace (use a relative path without \"..\")",
        ),
        (
            "/tmp/logs",
            "leaves the workspace (use a relative path without \"..\")",
        ),
        (
            ".",
            "leaves the workspace (use a relative path without \"..\")",
        ),
        (
            "escape/logs",
            "leads out of the workspace through symlink \"escape\"",
        ),
    ] {
        let want = format!("runqueue: log directory \"{dir}\" {problem}\n");
        f.refuse_named(OsStr::new("g.json"), graph, &["--logs", dir], &want)
            .unwrap_or_else(|e| panic!("--logs {dir}: {e}"));
    }
}

/// `--report`, `--trace` and `--chart` are checked before the build, not
/// found unwritable after it ran (missing directories are made after it).
#[test]
fn unwritable_report_paths_are_refused_before_anything_runs() {
    let f = Fixture::new();
    let graph = br#"{"version":1,"tasks":[{"id":"a","run":"echo hi; touch ran"}]}"#;
    for option in ["--report", "--trace", "--chart"] {
        let want = format!("runqueue: {option} src/main.c/t.json: src/main.c is not a directory\n");
        f.refuse_named(
            OsStr::new("g.json"),
            graph,
            &[option, "src/main.c/t.json"],
            &want,
        )
        .unwrap_or_else(|e| panic!("{option}: {e}"));
        let want = format!("runqueue: {option} src: is a directory\n");
        f.refuse_named(OsStr::new("g.json"), graph, &[option, "src"], &want)
            .unwrap_or_else(|e| panic!("{option}: {e}"));
    }
}

/// Key files that are not keys, or keys with no cache, are refused before
/// anything runs.
#[test]
fn bad_cache_keys_are_refused_before_anything_runs() {
    let f = Fixture::new();
    std::fs::write(f.ws().join("junk.key"), "junk\n").unwrap();
    let graph = br#"{"version":1,"tasks":[{"id":"a","run":"echo hi; touch ran"}]}"#;
    for (args, want) in [
        (&["--cache-signing-key", "junk.key"][..], "signing key: not a runqueue-secret-key (one line `runqueue-secret-key:NAME:HEX`, from `runqueue keygen`)"),
        (&["--cache-trust", "junk.key"], "trusted key: not a runqueue-public-key (one line `runqueue-public-key:NAME:HEX`, from `runqueue keygen`)"),
        (&["--cache-trust", "missing.pub"], "cannot read missing.pub: No such file or directory (os error 2)"),
    ] {
        let want = format!("runqueue: {want}\n");
        f.refuse_named(OsStr::new("g.json"), graph, args, &want)
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    }
}

/// A cache or log directory inside the workspace is runqueue's: no task
/// may read or write in it.
#[test]
fn task_paths_inside_the_cache_or_the_logs_are_refused() {
    let ws = common::Ws::new();
    for (args, graph, want) in [
        (
            &["--cache", "mycache"][..],
            r#"{"version":1,"tasks":[{"id":"a","run":"true","outputs":["mycache/ac"]}]}"#,
            "task \"a\": output \"mycache/ac\" is inside the cache \"mycache\"",
        ),
        (
            &["--logs", "mylogs"],
            r#"{"version":1,"tasks":[{"id":"a","run":"true","outputs":["mylogs"]}]}"#,
            "task \"a\": output \"mylogs\" is inside the log directory \"mylogs\"",
        ),
    ] {
        ws.write("g.json", graph);
        let out = ws.cli(&[&["build", "g.json"], args].concat());
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(
            stderr(&out),
            format!("runqueue: invalid graph g.json: {want}\n")
        );
        assert_eq!(ws.listing(), ["g.json"], "{args:?}");
    }
}

/// Bad input creates nothing wherever the paths point: a new cache
/// directory several levels deep (in the workspace or outside it), the
/// report, trace and chart outside it, a new log directory, for every
/// subcommand that reads a graph; a log directory outside is refused.
#[test]
fn bad_input_creates_nothing_wherever_the_paths_point() {
    let outside = tempfile::tempdir().unwrap();
    let there = |rel: &str| outside.path().join(rel).display().to_string();
    let ws = common::Ws::new();
    let graphs = [
        r#"{"version":1,"tasks":[{"id":"a","run":"true","inputs":["missing"]}]}"#,
        r#"{"version":1,"tasks":[{"id":"a","run":"true","deps":["nope"]}]}"#,
        r#"{"version":1,"tasks":[{"id":"a","run":"true"}"#,
    ];
    let (report, trace, chart) = (
        there("r/report.json"),
        there("t/trace.json"),
        there("c/c.svg"),
    );
    let build = [
        "build", "g.json", "--report", &report, "--trace", &trace, "--chart", &chart,
    ];
    let build = [&build[..], &["--logs", "new-logs/deep"]].concat();
    let outside_cache = there("new/cache");
    for graph in graphs {
        ws.write("g.json", graph);
        for cache in ["NEWDIR/deeper", &outside_cache] {
            for args in [
                &build[..],
                &["plan", "g.json"],
                &["explain", "g.json", "a"],
                &["simulate", "g.json"],
            ] {
                let out = ws.cli(&[args, &["--cache", cache]].concat());
                // Only simulate never reads inputs: a missing one is no
                // bad input to it, and it still creates nothing.
                let bad = !(args[0] == "simulate" && graph.contains("missing"));
                assert_eq!(
                    out.status.code(),
                    Some(if bad { 2 } else { 0 }),
                    "{args:?} {graph}"
                );
                assert!(!bad || stderr(&out).starts_with("runqueue: invalid graph g.json: "));
                assert_eq!(ws.listing(), ["g.json"], "{args:?} --cache {cache}");
                let made: Vec<_> = std::fs::read_dir(outside.path()).unwrap().collect();
                assert!(made.is_empty(), "{args:?} --cache {cache}: {made:?}");
            }
        }
        let checked = ws.cli(&["check", "g.json"]).status.code();
        assert_eq!(checked, Some(if graph.contains("missing") { 0 } else { 2 }));
    }
    ws.write(
        "g.json",
        r#"{"version":1,"tasks":[{"id":"a","run":"true"}]}"#,
    );
    let out = ws.cli(&["build", "g.json", "--logs", &there("logs")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("leaves the workspace"),
        "{}",
        stderr(&out)
    );
    assert_eq!(ws.listing(), ["g.json"]);
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
}

/// A FIFO nobody writes to is refused after a wait (no hang), a device is
/// refused without being read (no unbounded read), and standard input is
/// capped like a file.
#[test]
fn a_fifo_without_a_writer_a_device_or_too_much_input_is_no_graph() {
    let ws = common::Ws::new();
    let fifo = std::ffi::CString::new(ws.join("fifo").into_os_string().into_vec()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    let lonely = "runqueue: graph fifo: no process opened this FIFO for writing within 5 s\n";
    for (args, want) in [
        (vec!["check", "fifo"], lonely.to_string()),
        (vec!["build", "fifo"], lonely.to_string()),
        (
            vec!["check", "/dev/zero"],
            "runqueue: graph /dev/zero is not a regular file\n".to_string(),
        ),
    ] {
        let out = ws.cli_within(30, &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(stderr(&out), want);
    }
    assert_eq!(ws.listing(), ["fifo"]);
    let cap = runqueue::cli::MAX_GRAPH_BYTES;
    let f = Fixture::new();
    let too_much = vec![b' '; cap as usize + 4096];
    let out = f.cli_fed(["check", "-"].map(OsStr::new), &too_much);
    assert_eq!(out.status.code(), Some(2));
    let over = cap + 1;
    let want = format!("runqueue: graph - is {over} bytes or more; the limit is {cap}\n");
    assert_eq!(stderr(&out), want);
}

#[test]
fn missing_graph_file_and_bad_arguments() {
    let ws = common::Ws::new();
    let out = ws.cli(&["build", "nope.json"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with("runqueue: cannot read graph nope.json: "),
        "{}",
        stderr(&out)
    );
    ws.write("g.json", r#"{"version":1,"tasks":[]}"#);
    let out = ws.cli(&["build", "g.json", "-j", "0"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = ws.cli(&["build", "g.json", "--workspace", "missing-dir"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with("runqueue: workspace missing-dir: "),
        "{}",
        stderr(&out)
    );
    assert_eq!(ws.listing(), ["g.json"]);
}

#[test]
fn check_describes_a_valid_graph_and_refuses_a_bad_one() {
    let ws = common::Ws::new();
    ws.write(
        "g.json",
        r#"{"version":1,"tasks":[{"id":"a:do_fetch"},{"id":"a:do_compile","deps":["a:do_fetch"]},
            {"id":"b:do_fetch"},{"id":"a:do_install","deps":["a:do_compile","b:do_fetch"]}]}"#,
    );
    let out = ws.cli(&["check", "g.json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "g.json: OK: 4 tasks, 3 dependencies, 2 without dependencies, 1 final\n\
         longest path (3 tasks): a:do_fetch -> a:do_compile -> a:do_install\n"
    );
    ws.write(
        "bad.json",
        r#"{"version":1,"tasks":[{"id":"a","deps":["b"]}]}"#,
    );
    let out = ws.cli(&["check", "bad.json"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "runqueue: invalid graph bad.json: task \"a\" depends on unknown task \"b\"\n"
    );
}

#[test]
fn a_graph_too_big_for_the_memory_limit_is_bad_input() {
    let tasks: Vec<String> = (0..100_000)
        .map(|i| format!(r#"{{"id":"r{i}:do_t","run":"touch ran"}}"#))
        .collect();
    let graph = format!(r#"{{"version":1,"tasks":[{}]}}"#, tasks.join(","));
    let want = "runqueue: the runqueue component needed more memory than its limit (16 MiB): \
                the graph, or a blob from the remote cache, is too large for it; raise it with --max-memory\n";
    Fixture::new()
        .refuse_named(
            OsStr::new("g.json"),
            graph.as_bytes(),
            &["--max-memory", "16"],
            want,
        )
        .unwrap();
}
