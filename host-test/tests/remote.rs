//! The remote cache against a real nginx with WebDAV PUT (Debian's
//! nginx-light; `.ci/run` installs it), started per test on a free
//! loopback port with a temporary root and a generated config.

mod common;

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::nginx::{free_port, Nginx};
use common::{stderr, stdout, Ws};

/// Three tasks with outputs: text, 300 KB of random bytes (so a rerun
/// could never produce identical bytes by chance), and a file made from
/// both.
const GRAPH: &str = r#"{"version":1,"tasks":[
  {"id":"gen:do_compile","run":"mkdir -p out && printf 'generated\n' > out/gen.txt","outputs":["out/gen.txt"]},
  {"id":"rand:do_compile","run":"mkdir -p out && head -c 300000 /dev/urandom > out/rand.bin","outputs":["out/rand.bin"]},
  {"id":"image:do_rootfs","deps":["gen:do_compile","rand:do_compile"],
   "run":"cat out/gen.txt out/rand.bin > out/image.bin","outputs":["out/image.bin"]}]}"#;

/// Builds `GRAPH` at -j2 with `extra`.
fn build_with_outputs(ws: &Ws, extra: &[&str]) -> std::process::Output {
    ws.cli_build(GRAPH, &[&["-j", "2"], extra].concat())
}

/// Builds `GRAPH` in `ws` reading from `server` only, with `extra`; the
/// build succeeds whatever the server does.
fn read_only_build(ws: &Ws, server: &Nginx, extra: &[&str]) -> std::process::Output {
    let url = server.url();
    let args = [
        &["--remote-cache", &url, "--remote-cache-read-only"][..],
        extra,
    ]
    .concat();
    let out = build_with_outputs(ws, &args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    out
}

fn summary_line(out: &std::process::Output) -> String {
    stdout(out)
        .lines()
        .find(|l| l.starts_with("Tasks Summary"))
        .unwrap_or_default()
        .to_string()
}

/// The final output (the text and the random bytes together) is the same
/// file in both workspaces. As with BitBake's sstate, a fully covered build
/// restores only what is needed: the final task's outputs.
fn assert_same_outputs(a: &Ws, b: &Ws) {
    assert_eq!(
        std::fs::read(a.join("out/image.bin")).unwrap(),
        std::fs::read(b.join("out/image.bin")).unwrap(),
        "out/image.bin differs"
    );
    assert!(!b.join("out/rand.bin").exists(), "not needed, not restored");
}

#[test]
fn two_workspaces_with_their_own_caches_share_one_server() {
    let server = Nginx::start();
    let url = server.url();
    let first = Ws::new();
    let out = build_with_outputs(&first, &["--remote-cache", &url]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stderr(&out), "", "no warnings");
    // Three entries, their outputs records and their blobs went up.
    let files = server.files();
    assert_eq!(
        files.iter().filter(|f| f.starts_with("ac")).count(),
        6,
        "{files:?}"
    );
    assert_eq!(
        files.iter().filter(|f| f.starts_with("cas")).count(),
        3,
        "{files:?}"
    );

    let second = Ws::new();
    let out = build_with_outputs(&second, &["--remote-cache", &url]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        summary_line(&out),
        "Tasks Summary: Attempted 3 tasks of which 3 didn't need to be rerun and all succeeded."
    );
    assert!(
        !stdout(&out).contains("started"),
        "nothing executed: {}",
        stdout(&out)
    );
    assert_same_outputs(&first, &second);
    // It is in the second workspace's local cache now: no server needed.
    std::fs::remove_dir_all(second.join("out")).unwrap();
    let out = build_with_outputs(&second, &[]);
    assert!(summary_line(&out).contains("3 didn't need to be rerun"));
    assert_same_outputs(&first, &second);
}

#[test]
fn read_only_mode_writes_nothing_to_the_server() {
    let server = Nginx::start();
    let ws = Ws::new();
    read_only_build(&ws, &server, &[]);
    assert_eq!(server.files(), Vec::<PathBuf>::new());
    let requests = server.requests();
    assert_eq!(requests.len(), 3, "one lookup per task: {requests:?}");
    assert!(
        requests.iter().all(|r| r.starts_with("GET /cache/ac/")),
        "{requests:?}"
    );
}

#[test]
fn a_server_answering_4xx_or_5xx_only_costs_a_warning() {
    for status in [403, 500] {
        let server = Nginx::with_location(&format!("return {status};"));
        let ws = Ws::new();
        let out = build_with_outputs(&ws, &["--remote-cache", &server.url()]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("2 of 2 lookups failed"), "{err}");
        assert!(err.contains(&format!("HTTP status {status}")), "{err}");
        assert!(err.contains("3 of 3 uploads failed"), "{err}");
        assert_eq!(
            std::fs::read_to_string(ws.join("out/gen.txt")).unwrap(),
            "generated\n"
        );
        assert_eq!(
            std::fs::metadata(ws.join("out/image.bin")).unwrap().len(),
            300_010
        );
    }
}

#[test]
fn wrong_bytes_from_the_server_are_never_restored() {
    let server = Nginx::start();
    let first = Ws::new();
    let out = build_with_outputs(&first, &["--remote-cache", &server.url()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // Someone (a disk, a proxy) corrupts every blob on the server.
    for f in server.files().iter().filter(|f| f.starts_with("cas")) {
        let p = server.path(f);
        let len = std::fs::metadata(&p).unwrap().len() as usize;
        std::fs::write(&p, vec![b'!'; len]).unwrap();
    }
    let second = Ws::new();
    let out = read_only_build(&second, &server, &[]);
    let err = stderr(&out);
    assert!(err.contains("2 of 2 lookups failed"), "{err}");
    assert!(err.contains("has the wrong bytes"), "{err}");
    assert!(
        summary_line(&out).contains("0 didn't need to be rerun"),
        "every task ran: {}",
        stdout(&out)
    );
    assert_eq!(
        std::fs::read_to_string(second.join("out/gen.txt")).unwrap(),
        "generated\n"
    );
    let image = std::fs::read(second.join("out/image.bin")).unwrap();
    assert!(image.starts_with(b"generated\n"));
    assert!(
        !image.windows(64).any(|w| w.iter().all(|&b| b == b'!')),
        "the corrupted bytes did not get in"
    );
    // Nothing corrupt reached the local cache: a rebuild is all hits.
    let out = build_with_outputs(&second, &[]);
    assert!(
        summary_line(&out).contains("3 didn't need to be rerun"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_server_stopped_mid_build_leaves_a_correct_build() {
    let mut server = Nginx::start();
    let ws = Ws::new();
    ws.write(
        "g.json",
        r#"{"version":1,"tasks":[
          {"id":"a","run":"touch started; sleep 1; mkdir -p out && echo a > out/a","outputs":["out/a"]},
          {"id":"b","deps":["a"],"run":"cat out/a > out/b","outputs":["out/b"]}]}"#,
    );
    let child = common::runqueue_command(ws.path())
        .args(["build", "g.json", "--remote-cache", &server.url()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ws.join("started").exists() {
        assert!(Instant::now() < deadline, "the task never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    server.stop();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("2 of 2 uploads failed"),
        "{}",
        stderr(&out)
    );
    assert_eq!(ws.read("out/b"), "a\n");
}

#[test]
fn a_server_that_is_down_costs_one_warning() {
    let ws = Ws::new();
    let url = format!("http://127.0.0.1:{}/cache", free_port());
    let t0 = Instant::now();
    let out = build_with_outputs(&ws, &["--remote-cache", &url]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    let err = stderr(&out);
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains("remote cache")).collect();
    assert_eq!(
        warnings.len(),
        2,
        "one for lookups, one for uploads: {warnings:?}"
    );
    assert!(
        warnings[0].contains("2 of 2 lookups failed"),
        "{warnings:?}"
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("out/gen.txt")).unwrap(),
        "generated\n"
    );
}

/// A server that accepts connections and never answers: lookups are
/// issued many at once but bounded, each gives up after the timeout, and
/// the remote is given up on after a few failures.
#[test]
fn a_silent_server_is_waited_for_in_parallel_within_bounds() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let seen = accepted.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { break };
            seen.lock().unwrap().push(Instant::now());
            // Read the request so the client is not stuck writing; never answer.
            conn.set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            let _ = conn.read(&mut [0u8; 4096]);
            held.push(conn);
        }
    });
    let ws = Ws::new();
    ws.write("g.json", &common::numbered_outputs(40));
    let t0 = Instant::now();
    let out = ws.cli(&[
        "build",
        "g.json",
        "--remote-cache",
        &format!("http://127.0.0.1:{port}/cache"),
        "--remote-cache-timeout",
        "0.5",
        "--remote-cache-read-only",
    ]);
    let wall = t0.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(wall < Duration::from_secs(8), "{wall:?}");
    assert!(
        stderr(&out).contains("40 of 40 lookups failed"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("gave up on it"), "{}", stderr(&out));
    let accepted = accepted.lock().unwrap();
    eprintln!("connections accepted: {}", accepted.len());
    // Nothing can have timed out within 0.4 s of the first connection: the
    // ones accepted by then were in flight at once. A request that times
    // out a little before the others may be followed by one more before
    // the remote is given up on (after 3 failures).
    let at_once = accepted
        .iter()
        .filter(|t| **t < accepted[0] + Duration::from_millis(400));
    let at_once = at_once.count();
    assert!(
        (2..=16).contains(&at_once),
        "lookups in flight at once: {at_once} (bound 16)"
    );
    assert!(accepted.len() <= 16 + 2, "{} connections", accepted.len());
    assert_eq!(ws.read("o39"), "39\n");
}

#[test]
fn bad_remote_urls_and_combinations_are_bad_input() {
    let ws = Ws::new();
    let out = build_with_outputs(&ws, &["--remote-cache", "ftp://example.com/x"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "runqueue: remote cache \"ftp://example.com/x\" is not an http:// or https:// URL\n"
    );
    for (url, why) in [
        (
            "http://127.0.0.1:99999/c",
            "port \"99999\" is not a number from 1 to 65535",
        ),
        (
            "http://me:hunter2@127.0.0.1:9/c",
            "\"http://me:***@127.0.0.1:9/c\" has credentials in it",
        ),
    ] {
        let out = build_with_outputs(&ws, &["--remote-cache", url]);
        assert_eq!(out.status.code(), Some(2));
        assert!(stderr(&out).contains(why), "{}", stderr(&out));
        assert!(!stderr(&out).contains("hunter2"), "{}", stderr(&out));
    }
    let out = build_with_outputs(
        &ws,
        &["--remote-cache", "http://127.0.0.1:9/c", "--no-cache"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("needs a local cache"),
        "{}",
        stderr(&out)
    );
    assert!(!ws.join("out").exists());
}

/// The server's entry of `task`, parsed, and where it is.
fn entry_on(server: &Nginx, task: &str) -> (PathBuf, serde_json::Value) {
    server
        .files()
        .into_iter()
        .filter(|f| f.starts_with("ac"))
        .map(|f| server.path(&f))
        .map(|p| {
            let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
            (p, v)
        })
        // Outputs records have a task too, but their outputs are a digest.
        .find(|(_, v)| {
            (v["task"] == task && v["outputs"].is_array()) || v["signed"]["task"] == task
        })
        .expect("the task's entry is on the server")
}

/// Someone with write access to the server (or a man in the middle on
/// plain HTTP) adds paths to an entry: a source file, a symlink out of the
/// workspace, a file written through a symlink the entry itself makes.
/// None of it is written; the entry is refused and the task runs.
#[test]
fn a_poisoned_entry_writes_nothing_but_declared_outputs() {
    let server = Nginx::start();
    let first = Ws::new();
    let out = build_with_outputs(&first, &["--remote-cache", &server.url()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (at, pristine) = entry_on(&server, "image:do_rootfs");
    let blob = pristine["outputs"][0]["blob"].clone();
    let file =
        |p: &str| serde_json::json!({"kind":"file","path":p,"blob":blob,"size":300010,"mode":420});
    let link = |p: &str, t: &str| serde_json::json!({"kind":"symlink","path":p,"target":t});
    let declared = pristine["outputs"][0].clone();
    let poisons = [
        (
            vec![declared.clone(), file("src/main.c")],
            "writes \"src/main.c\", which is no declared output",
        ),
        (
            vec![link("out/image.bin", "../../../../../../../etc/passwd")],
            "makes symlink \"out/image.bin\"",
        ),
        (
            vec![
                link("out/image.bin", "../src"),
                file("out/image.bin/main.c"),
            ],
            "through its own symlink \"out/image.bin\"",
        ),
    ];
    for (outputs, why) in poisons {
        let mut poisoned = pristine.clone();
        poisoned["outputs"] = serde_json::Value::Array(outputs);
        std::fs::write(&at, poisoned.to_string()).unwrap();
        let second = Ws::new();
        second.write("src/main.c", "original\n");
        let out = read_only_build(&second, &server, &[]);
        assert!(stderr(&out).contains(why), "{}", stderr(&out));
        assert_eq!(second.read("src/main.c"), "original\n");
        assert!(second.join("out/image.bin").is_file(), "made by the task");
        assert!(
            stdout(&out).contains("started  image:do_rootfs"),
            "the task ran: {}",
            stdout(&out)
        );
        let image = |ws: &Ws| std::fs::read(ws.join("out/image.bin")).unwrap();
        assert_eq!(image(&first), image(&second));
    }
}

/// A server answering with bodies far longer than an entry or a blob can
/// be: reading stops at the limit, the lookup is a miss with a warning,
/// and the build (which works without the remote) works with it.
#[test]
fn endless_answers_from_the_server_are_cut_short() {
    let server = Nginx::start();
    let first = Ws::new();
    let out = build_with_outputs(&first, &["--remote-cache", &server.url()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let junk = vec![b'{'; 40 << 20];
    // The image's entry stays sound, its blob grows by 40 MiB; the other
    // entries become 40 MiB each.
    let (image_at, image) = entry_on(&server, "image:do_rootfs");
    for f in server.files() {
        if f.starts_with("ac") && server.path(&f) != image_at {
            std::fs::write(server.path(&f), &junk).unwrap();
        }
    }
    let blob = format!("cas/{}", image["outputs"][0]["blob"].as_str().unwrap());
    let mut grown = std::fs::read(server.path(Path::new(&blob))).unwrap();
    grown.extend_from_slice(&junk);
    std::fs::write(server.path(Path::new(&blob)), grown).unwrap();
    let second = Ws::new();
    let out = read_only_build(&second, &server, &[]);
    let err = stderr(&out);
    assert!(err.contains("2 of 2 lookups failed"), "{err}");
    assert!(
        err.contains("the answer is longer than 1048576 bytes"),
        "{err}"
    );
    assert!(!err.contains("too large"), "{err}");
    assert!(
        summary_line(&out).contains("0 didn't need to be rerun"),
        "{}",
        stdout(&out)
    );
    let image = |ws: &Ws| std::fs::read(ws.join("out/image.bin")).unwrap();
    assert_eq!(image(&first).len(), image(&second).len());
}

/// CI signs what it uploads; readers trusting CI's public key restore it,
/// but not an entry the server (or anyone with write access to it) edited
/// or wrote unsigned, nor one signed by a key they do not trust.
#[test]
fn signed_entries_cannot_be_forged_by_the_server() {
    let server = Nginx::start();
    let keys = Ws::new();
    keys.keygen(&["ci", "dev"]);
    let key = |f: &str| keys.join(f).display().to_string();
    let ci = Ws::new();
    let out = build_with_outputs(
        &ci,
        &[
            "--remote-cache",
            &server.url(),
            "--cache-signing-key",
            &key("ci.sec"),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let reader = |trust: &str| {
        let out = read_only_build(&Ws::new(), &server, &["--cache-trust", &key(trust)]);
        (summary_line(&out), stderr(&out))
    };
    let (summary, err) = reader("ci.pub");
    assert!(
        summary.contains("3 didn't need to be rerun"),
        "{summary} {err}"
    );
    let (summary, err) = reader("dev.pub");
    assert!(summary.contains("0 didn't need to be rerun"), "{summary}");
    assert!(
        err.contains("signed by key \"ci\", which is not trusted"),
        "{err}"
    );
    // The server edits the image's entry (its duration) and strips the
    // signature of another.
    let (at, mut image) = entry_on(&server, "image:do_rootfs");
    image["signed"]["duration_ms"] = serde_json::json!(1);
    std::fs::write(&at, image.to_string()).unwrap();
    let (at, gen) = entry_on(&server, "gen:do_compile");
    std::fs::write(&at, gen["signed"].to_string()).unwrap();
    let (summary, err) = reader("ci.pub");
    assert!(
        summary.contains("1 didn't need to be rerun"),
        "{summary} {err}"
    );
    assert!(err.contains("that does not verify"), "{err}");
    assert!(
        err.contains("is not signed, and only signed entries are trusted"),
        "{err}"
    );
}
