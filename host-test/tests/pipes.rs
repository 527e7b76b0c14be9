//! Graphs from pipes: `-` (standard input), bash's `<(…)` and a named
//! FIFO a generator writes (slowly), for every subcommand that reads a
//! graph, answering exactly as the same graph from a file does.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use common::{runqueue_command, stderr, stdout, Ws};

const GRAPH: &str = r#"{"version":1,"tasks":[
  {"id":"a:do_x","run":"echo a > a.txt","outputs":["a.txt"]},
  {"id":"b:do_y","deps":["a:do_x"],"run":"cat a.txt > b.txt","outputs":["b.txt"]}]}"#;

const DOT: &str = r#"digraph depends {
"a.do_x" [label="a do_x\n:1.0-r0\n/a.bb"]
"b.do_y" [label="b do_y\n:1.0-r0\n/b.bb"]
"b.do_y" -> "a.do_x"
}
"#;

/// The subcommands that read a graph, `GRAPH` standing for where from.
fn subcommands() -> Vec<(Vec<&'static str>, &'static str)> {
    vec![
        (vec!["check", "GRAPH"], GRAPH),
        (vec!["plan", "GRAPH"], GRAPH),
        (vec!["explain", "GRAPH", "b:do_y"], GRAPH),
        (vec!["simulate", "GRAPH"], GRAPH),
        (vec!["import-dot", "GRAPH"], DOT),
        (vec!["build", "GRAPH", "--no-cache", "-q"], GRAPH),
    ]
}

fn with(args: &[&'static str], graph: &str) -> Vec<String> {
    args.iter().map(|a| a.replace("GRAPH", graph)).collect()
}

/// What the subcommand prints for the graph in the file `g.file`.
fn from_file(ws: &Ws, args: &[&'static str]) -> String {
    let args = with(args, "g.file");
    let out = ws.cli(&args.iter().map(String::as_str).collect::<Vec<_>>());
    answer(&out, "g.file")
}

/// stdout with the graph's name (it starts `check`'s line) made alike,
/// and without the times a build's summary gives (they differ run to run).
fn answer(out: &Output, name: &str) -> String {
    assert_eq!(out.status.code(), Some(0), "{name}: {}", stderr(out));
    let text = stdout(out).replace(&format!("{name}:"), "GRAPH:");
    let timed = |l: &&str| l.starts_with("Critical path") || l.starts_with("Slowest tasks");
    let lines: Vec<&str> = text.lines().filter(|l| !timed(l)).collect();
    let text: Vec<&str> = lines
        .iter()
        .map(|l| l.split(" Wall time").next().unwrap())
        .collect();
    assert!(!text.is_empty());
    text.join("\n")
}

/// The `/dev/fd/N` bash named the pipe, if `check` printed it.
fn fd_name(text: &str) -> String {
    let rest = text.split_once("/dev/fd/").map_or("", |(_, r)| r);
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    format!("/dev/fd/{digits}")
}

#[test]
fn every_subcommand_reads_its_graph_from_standard_input() {
    let ws = Ws::new();
    for (args, text) in subcommands() {
        ws.write("g.file", text);
        let want = from_file(&ws, &args);
        let mut child = runqueue_command(ws.path())
            .args(with(&args, "-"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(text.as_bytes()).unwrap();
        drop(stdin);
        let fed = child.wait_with_output().unwrap();
        assert_eq!(answer(&fed, "-"), want, "{args:?}");
    }
    assert_eq!(ws.read("b.txt"), "a\n", "the build from stdin ran");
}

#[test]
fn every_subcommand_reads_its_graph_from_bash_process_substitution() {
    let ws = Ws::new();
    let rq = env!("CARGO_BIN_EXE_runqueue");
    for (args, text) in subcommands() {
        ws.write("g.file", text);
        let want = from_file(&ws, &args);
        std::fs::remove_file(ws.join("b.txt")).ok();
        // A generator that takes its time: the pipe is read to its end.
        let line = with(&args, "<(sleep 0.3; cat g.file)").join(" ");
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!("exec '{rq}' {line}"))
            .current_dir(ws.path())
            .env("RUNQUEUE_COMPONENT", common::component_path())
            .output()
            .unwrap();
        assert_eq!(answer(&out, &fd_name(&stdout(&out))), want, "{args:?}");
    }
    assert_eq!(ws.read("b.txt"), "a\n", "the build from the pipe ran");
}

#[test]
fn a_named_fifo_is_read_once_its_writer_comes() {
    let ws = Ws::new();
    ws.write("g.file", GRAPH);
    let status = Command::new("mkfifo")
        .arg(ws.join("fifo"))
        .status()
        .unwrap();
    assert!(status.success());
    // The writer opens the FIFO a second after runqueue started waiting.
    let writer = Command::new("sh")
        .args(["-c", "sleep 1; cat g.file > fifo"])
        .current_dir(ws.path())
        .spawn()
        .unwrap();
    let out = ws.cli_within(30, &["build", "fifo", "--no-cache", "-q"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(ws.read("b.txt"), "a\n");
    let _ = { writer }.wait();
}
