//! Bad graphs: each exits 2 with a message naming the problem and runs
//! nothing.

mod common;

use common::{stderr, stdout, Ws};

/// Runs `runqueue build` on `text` and checks exit 2, the message, and that
/// the workspace holds nothing but the graph afterwards.
fn refused(text: &str, message: &str) {
    let ws = Ws::new();
    ws.write("g.json", text);
    let out = ws.cli(&["build", "g.json", "-j", "2"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "stdout: {}\nstderr: {}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(
        stderr(&out),
        format!("runqueue: invalid graph g.json: {message}\n")
    );
    assert_eq!(stdout(&out), "");
    assert_eq!(ws.listing(), ["g.json"], "nothing written, nothing run");
}

// Each graph has a task that would leave a file behind if it ran.
#[test]
fn cycle() {
    refused(
        r#"{"version":1,"tasks":[{"id":"first","run":"touch ran"},
            {"id":"a","deps":["first","c"],"run":"touch ran"},{"id":"b","deps":["a"]},{"id":"c","deps":["b"]}]}"#,
        "dependency cycle: a -> c -> b -> a",
    );
}

#[test]
fn unknown_dependency() {
    refused(
        r#"{"version":1,"tasks":[{"id":"a","run":"touch ran"},{"id":"b","deps":["a","zlib:do_fetch"]}]}"#,
        "task \"b\" depends on unknown task \"zlib:do_fetch\"",
    );
}

#[test]
fn duplicate_id() {
    refused(
        r#"{"version":1,"tasks":[{"id":"a","run":"touch ran"},{"id":"a","run":"touch ran"}]}"#,
        "duplicate task id \"a\"",
    );
}

#[test]
fn malformed_json() {
    refused(
        r#"{"version":1,"tasks":[{"id":"a","run":"touch ran"}"#,
        "malformed graph: EOF while parsing a list at line 1 column 50",
    );
}

#[test]
fn unknown_field() {
    refused(
        r#"{"version":1,"tasks":[{"id":"a","run":"touch ran","depends":["b"]}]}"#,
        "malformed graph: unknown field `depends`, expected one of `id`, `deps`, `run`, `argv`, `cwd`, `env`, `inputs`, `outputs`, `nostamp`, `pool`, `timeout` at line 1 column 59",
    );
}

#[test]
fn cwd_escaping_the_workspace() {
    refused(
        r#"{"version":1,"tasks":[{"id":"a","run":"touch ran"},{"id":"b","cwd":"../elsewhere","run":"touch ran"}]}"#,
        "task \"b\": cwd \"../elsewhere\" leaves the workspace (use a relative path without \"..\")",
    );
}

#[test]
fn self_dependency_and_empty_id() {
    refused(
        r#"{"version":1,"tasks":[{"id":"a","deps":["a"],"run":"touch ran"}]}"#,
        "task \"a\" depends on itself",
    );
    refused(
        r#"{"version":1,"tasks":[{"id":"","run":"touch ran"}]}"#,
        "task #0 has an empty id",
    );
}

#[test]
fn missing_graph_file_and_bad_arguments() {
    let ws = Ws::new();
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
}

#[test]
fn check_describes_a_valid_graph_and_refuses_a_bad_one() {
    let ws = Ws::new();
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
    let ws = Ws::new();
    let tasks: Vec<String> = (0..100_000)
        .map(|i| format!(r#"{{"id":"r{i}:do_t","run":"touch ran"}}"#))
        .collect();
    ws.write(
        "g.json",
        &format!(r#"{{"version":1,"tasks":[{}]}}"#, tasks.join(",")),
    );
    let out = ws.cli(&["build", "g.json", "--max-memory", "16"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        "runqueue: the runqueue component needed more memory than its limit (16 MiB): \
         the graph is too large for it; raise it with --max-memory\n"
    );
    assert_eq!(ws.listing(), ["g.json"], "nothing ran");
}

#[test]
fn a_ten_megabyte_string_is_bad_input() {
    let ws = Ws::new();
    let huge = "x".repeat(10 << 20);
    ws.write(
        "g.json",
        &format!(r#"{{"version":1,"tasks":[{{"id":"a","run":"touch ran # {huge}"}}]}}"#),
    );
    let out = ws.cli(&["build", "g.json"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "runqueue: invalid graph g.json: task \"a\": run is longer than 1048576 bytes\n"
    );
    assert_eq!(ws.listing(), ["g.json"]);
}
