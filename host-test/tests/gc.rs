//! `runqueue cache gc|stats` and `build --cache-max-size` on real caches
//! written by real builds: the least recently used go, what the latest
//! builds used stays and restores, builds running next to a collection
//! never lose what they restore, and a collection killed at any moment
//! leaves no entry without its blobs.

mod common;

use std::path::Path;
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{stderr, stdout, Ws};

const CACHE: &str = ".runqueue/cache";

/// Generation `g` of a graph of `n` tasks, each writing `size` bytes that
/// name the generation and the task.
fn graph(g: usize, n: usize, size: usize) -> String {
    let tasks: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            let run = format!("yes gen{g}-t{i} | head -c {size} > o{i}");
            serde_json::json!({"id": format!("t{i}"), "run": run, "outputs": [format!("o{i}")]})
        })
        .collect();
    serde_json::json!({"version": 1, "tasks": tasks}).to_string()
}

/// What task `i` of generation `g` writes.
fn expected(g: usize, i: usize, size: usize) -> Vec<u8> {
    let line = format!("gen{g}-t{i}\n");
    line.bytes().cycle().take(size).collect()
}

/// Builds generation `g` in `ws` with `args`; how many tasks the cache
/// covered, after checking that it succeeded, said no warning and left
/// every output as it should be.
fn build(ws: &Ws, (g, n, size): (usize, usize, usize), args: &[&str]) -> u64 {
    for i in 0..n {
        let _ = std::fs::remove_file(ws.join(&format!("o{i}")));
    }
    let out = ws.cli_build(
        &graph(g, n, size),
        &[&["--report", "r.json"], args].concat(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
    for i in 0..n {
        let got = std::fs::read(ws.join(&format!("o{i}"))).unwrap();
        assert!(got == expected(g, i, size), "gen {g} o{i} is wrong");
    }
    let report: serde_json::Value = serde_json::from_str(&ws.read("r.json")).unwrap();
    report["totals"]["cached"].as_u64().unwrap()
}

fn gc(dir: &Path, cache: &str, args: &[&str]) -> Output {
    common::runqueue_command(dir)
        .args([&["cache", "gc", "--cache", cache], args].concat())
        .output()
        .unwrap()
}

/// A figure `runqueue cache stats` prints.
fn stat(ws: &Ws, cache: &str, name: &str) -> u64 {
    let out = ws.cli(&["cache", "stats", "--cache", cache]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")));
    let first = line.and_then(|l| l.split(' ').next());
    first
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

/// Makes every entry, record and blob of `cache` `secs` older: a cache
/// that has aged.
fn age(cache: &Path, secs: u64) {
    for part in ["ac", "eq", "cas"] {
        for shard in std::fs::read_dir(cache.join(part)).unwrap().flatten() {
            for file in std::fs::read_dir(shard.path()).unwrap().flatten() {
                let f = std::fs::File::options()
                    .append(true)
                    .open(file.path())
                    .unwrap();
                let then = f.metadata().unwrap().modified().unwrap();
                f.set_modified(then - Duration::from_secs(secs)).unwrap();
            }
        }
    }
}

/// Seven generations written a second apart (over three times the
/// limit), the second one used again last: collecting to the size of two
/// keeps the newest and the one used last, and they restore whole; the
/// rest is gone.
#[test]
fn collection_keeps_what_was_used_last_within_the_size() {
    let ws = Ws::new();
    let size = 100_000;
    for g in 0..7 {
        assert_eq!(build(&ws, (g, 5, size), &[]), 0);
        std::thread::sleep(Duration::from_millis(1100));
    }
    assert_eq!(
        build(&ws, (1, 5, size), &[]),
        5,
        "a hit: its use is journaled"
    );
    let before = stat(&ws, CACHE, "bytes");
    assert!(before > 3 * (1025 << 10), "{before}");
    let out = gc(ws.path(), CACHE, &["--max-size", "1025K", "--grace", "0"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let said = stdout(&out);
    assert!(
        said.starts_with("removed 25 entries and 25 blobs"),
        "{said}"
    );
    assert!(stat(&ws, CACHE, "bytes") <= 1025 << 10);
    assert_eq!(stat(&ws, CACHE, "entries"), 10);
    assert_eq!(build(&ws, (6, 5, size), &[]), 5, "the newest stays");
    assert_eq!(
        build(&ws, (1, 5, size), &[]),
        5,
        "so does the one used last"
    );
    for g in [0, 2, 3, 4, 5] {
        assert_eq!(build(&ws, (g, 5, size), &[]), 0, "generation {g} is gone");
    }
    let ratio = ws.cli(&["cache", "stats", "--cache", CACHE]);
    assert!(stdout(&ratio).contains("hit ratio of the last build: 0.0% (0 of 5 tasks)"));
}

/// `build --cache-max-size` collects after the build, keeping what was
/// used within the grace period (an hour): the aged generation goes, the
/// one just built stays.
#[test]
fn a_build_with_a_cache_max_size_collects_after_itself() {
    let ws = Ws::new();
    let size = 100_000;
    assert_eq!(build(&ws, (0, 5, size), &[]), 0);
    age(&ws.join(CACHE), 7200);
    let out = ws.cli_build(&graph(1, 5, size), &["--cache-max-size", "550K"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cache: removed 5 entries and 5 blobs"),
        "{}",
        stderr(&out)
    );
    assert_eq!(build(&ws, (1, 5, size), &[]), 5);
    let out = ws.cli_build(&graph(2, 5, size), &["--cache-max-size", "550K"]);
    assert!(
        stderr(&out).contains("still over: the rest was used within the last 3600 s"),
        "nothing recent goes: {}",
        stderr(&out)
    );
    assert_eq!(build(&ws, (0, 5, size), &[]), 0);
}

/// Collections running over and over with no room at all, while three
/// builds at a time restore an aged cache's entries (and store the same
/// blobs again where an entry went): every build succeeds with every
/// output right and no warning (nothing it restores goes), and what no
/// build used is gone at the end. Three times, the cache aged each time.
#[test]
fn collection_next_to_running_builds_takes_nothing_they_restore() {
    let shared = Ws::new();
    let cache = shared.join("cache");
    let cache_arg = cache.to_str().unwrap().to_string();
    let shape = |g| (g, 30, 20_000);
    for g in 0..4 {
        assert_eq!(build(&shared, shape(g), &["--cache", &cache_arg]), 0);
    }
    for _ in 0..3 {
        age(&cache, 7200);
        let collections = race(&shared, &cache_arg, shape);
        assert!(collections >= 1, "{collections} collections ran meanwhile");
    }
    let ws = Ws::new();
    assert_eq!(
        build(&ws, shape(3), &["--cache", &cache_arg]),
        0,
        "unused: gone"
    );
}

/// Collects `cache` over and over while three builders build generations
/// 0 to 2 in fresh workspaces; how many collections ran.
fn race(shared: &Ws, cache: &str, shape: impl Fn(usize) -> (usize, usize, usize) + Sync) -> u64 {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let collector = s.spawn(|| {
            let mut runs = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // Starting at ever other moments of the builds.
                std::thread::sleep(Duration::from_millis(runs * 67 % 400));
                let out = gc(shared.path(), cache, &["--max-size", "1", "--grace", "30"]);
                assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
                runs += 1;
            }
            runs
        });
        let builders: Vec<_> = (0..3)
            .map(|w| {
                let shape = &shape;
                s.spawn(move || {
                    for round in 0..4 {
                        build(&Ws::new(), shape((w + round) % 3), &["--cache", cache]);
                    }
                })
            })
            .collect();
        // Every builder ends (a failed one too) before the collector stops.
        let ended: Vec<_> = builders.into_iter().map(|b| b.join()).collect();
        stop.store(true, Ordering::Relaxed);
        let runs = collector.join().unwrap();
        ended
            .into_iter()
            .for_each(|e| e.unwrap_or_else(|p| std::panic::resume_unwind(p)));
        runs
    })
}

/// A collection killed with SIGKILL at moments spread over its run, ten
/// times: after each, `cache verify` finds every blob sound and no entry
/// naming a blob that is not there.
#[test]
fn a_collection_killed_at_any_moment_leaves_every_entry_whole() {
    let ws = Ws::new();
    for g in 0..8 {
        assert_eq!(build(&ws, (g, 40, 3_000), &[]), 0);
    }
    let entries = stat(&ws, CACHE, "entries");
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    let mut random = seed | 1;
    for kill in 0..10u64 {
        let mut child = common::runqueue_command(ws.path())
            .args([
                "cache",
                "gc",
                "--cache",
                CACHE,
                "--max-size",
                "1",
                "--grace",
                "0",
            ])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        // Anywhere in its run, or (every other time) about when the 2 s
        // settle ends and the removals happen.
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        let at = match kill % 2 {
            0 => random % 2300,
            _ => 1950 + random % 250,
        };
        std::thread::sleep(Duration::from_millis(at));
        child.kill().unwrap();
        child.wait().unwrap();
        let out = ws.cli(&["cache", "verify", "--cache", CACHE]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert!(
            stdout(&out).ends_with(": 0 dropped; 0 entries dropped\n"),
            "kill {kill} at {at} ms (seed {seed}): {}",
            stdout(&out)
        );
        // What is left restores whole; what went runs again.
        build(&ws, (kill as usize % 8, 40, 3_000), &[]);
    }
    assert!(stat(&ws, CACHE, "entries") <= entries);
}

/// Bad input: one line, exit 2, nothing created.
#[test]
fn bad_collection_requests_are_refused_creating_nothing() {
    let ws = Ws::new();
    let cases: [&[&str]; 5] = [
        &["cache", "gc", "--cache", "nowhere", "--max-size", "1M"],
        &["cache", "gc", "--cache", "nowhere", "--max-size", "lots"],
        &["cache", "gc", "--cache", "nowhere", "--max-size", "none"],
        &[
            "cache",
            "gc",
            "--cache",
            "nowhere",
            "--max-size",
            "1M",
            "--max-age",
            "soon",
        ],
        &["cache", "stats", "--cache", "nowhere"],
    ];
    for args in cases {
        let out = ws.cli(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        // One line naming the problem (clap adds where to read more).
        let said = stderr(&out);
        let lines = said
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with("For more"));
        assert_eq!(lines.count(), 1, "{args:?}: {said}");
    }
    let g = graph(0, 1, 10);
    let out = ws.cli_build(&g, &["--cache-max-size", "1M", "--no-cache"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(ws.listing(), ["g.json"], "nothing made");
}
