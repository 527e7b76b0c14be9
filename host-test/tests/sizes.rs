//! Real-sized tasks: BitBake's run scripts are 100–300 KB of shell, more
//! than Linux takes as one argument (128 KiB); such a text goes to the
//! shell as a file. Environment values too big to pass are set inside the
//! script; what cannot be passed at all fails its task, naming the limit.

mod common;

use common::{bitbake_script, stderr, stdout, Ws};

fn task(id: &str, run: &str) -> serde_json::Value {
    serde_json::json!({"id": id, "run": run})
}

fn graph(tasks: Vec<serde_json::Value>) -> String {
    serde_json::json!({"version": 1, "tasks": tasks}).to_string()
}

#[test]
fn a_bitbake_sized_run_script_runs_whole_and_is_cached() {
    let ws = Ws::new();
    let (script, lines) = bitbake_script(300 << 10, "steps");
    assert!(script.len() > 300 << 10);
    let mut t = task("busybox:do_compile", &script);
    t["outputs"] = serde_json::json!(["steps"]);
    let g = graph(vec![t]);
    let out = ws.cli_build(&g, &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let written = ws.read("steps");
    assert_eq!(written.lines().count(), lines, "every function ran");
    assert_eq!(
        written.lines().last(),
        Some(format!("step {}", lines - 1).as_str())
    );
    // The text went to the shell as a file next to the task's logs.
    let on_disk = ws.read(".runqueue/logs/busybox/script.do_compile");
    assert_eq!(on_disk, script + "\n");
    // Its signature covers the text: the second build takes it from the
    // cache and restores the output.
    std::fs::remove_file(ws.join("steps")).unwrap();
    let again = ws.cli_build(&g, &[]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert!(stdout(&again).contains("1 cached"), "{}", stdout(&again));
    assert_eq!(ws.read("steps").lines().count(), lines);
}

#[test]
fn big_environment_values_reach_the_script_and_programs_still_start() {
    let ws = Ws::new();
    let big = "x".repeat(200_000) + "'quoted' \"and\" $NOT_EXPANDED";
    let mut t = task(
        "r:do_install",
        "printf %s \"$BIG\" > big; sh -c 'echo \"${BIG:-unset}\"' > child; echo \"$SMALL\" > small",
    );
    t["env"] = serde_json::json!({"BIG": big, "SMALL": "s"});
    let out = ws.cli_build(&graph(vec![t]), &["--no-cache"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(
        ws.read("big"),
        big,
        "the script has the value, byte for byte"
    );
    // Too big for any program's environment: the programs the script
    // starts do not get it, but they start.
    assert_eq!(ws.read("child"), "unset\n");
    assert_eq!(ws.read("small"), "s\n", "the rest is exported as before");
}

#[test]
fn what_linux_cannot_pass_fails_its_task_naming_the_limit() {
    let ws = Ws::new();
    let arg = "a".repeat(200_000);
    let g = serde_json::json!({"version": 1, "tasks": [
        {"id": "r:do_arg", "argv": ["touch", arg]},
        {"id": "r:do_env", "argv": ["touch", "env-ran"], "env": {"BIG": "b".repeat(140_000)}},
        {"id": "r:do_after", "deps": ["r:do_arg"], "run": "touch after"},
    ]})
    .to_string();
    let out = ws.cli_build(&g, &["--no-cache", "-k"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.contains("FAILED   r:do_arg: cannot start: argument 1 of touch is 200000 bytes: Linux passes at most 131071 bytes in one (MAX_ARG_STRLEN)"),
        "{text}"
    );
    assert!(
        text.contains("FAILED   r:do_env: cannot start: environment variable BIG is 140000 bytes"),
        "{text}"
    );
    assert!(!ws.join("after").exists() && !ws.join("env-ran").exists());
}
