//! The artifact cache end to end: signatures, covering, restoring,
//! corruption, crashes and concurrent builds, with real processes and files.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{stderr, stdout, Ws};
use runqueue::cache::digest::hash_file;
use runqueue::cache::{Cache, Lookup, OutputEntry};
use runqueue_host::{RunOptions, TaskState, Workspace};

/// Four tasks over real files: a fetch with an input file, a compile with
/// its own env, an independent compile, and an image that combines both.
const GRAPH: &str = r#"{"version":1,"tasks":[
  {"id":"a:do_fetch","inputs":["src/a.txt"],"outputs":["dl/a.txt"],
   "run":"mkdir -p dl && cp src/a.txt dl/a.txt"},
  {"id":"a:do_compile","deps":["a:do_fetch"],"outputs":["build/a.out"],"env":{"FLAVOR":"plain"},
   "run":"mkdir -p build && tr a-z A-Z < dl/a.txt > build/a.out && echo $FLAVOR >> build/a.out"},
  {"id":"b:do_compile","outputs":["build/b.out"],
   "run":"mkdir -p build && echo bee > build/b.out && chmod 755 build/b.out"},
  {"id":"img:do_image","deps":["a:do_compile","b:do_compile"],"outputs":["img"],
   "run":"mkdir -p img/bin && cat build/a.out build/b.out > img/all.txt && ln -sf ../all.txt img/bin/link"}]}"#;

fn workspace() -> Ws {
    let ws = Ws::new();
    ws.write("src/a.txt", "hello\n");
    ws
}

fn cache_of(ws: &Ws) -> Cache {
    Cache::new(ws.join(runqueue_host::DEFAULT_CACHE))
}

/// Every action entry in the cache is whole and every blob it names exists
/// with the bytes its name promises.
fn assert_cache_consistent(dir: &Path) {
    let cache = Cache::new(dir);
    let Ok(shards) = std::fs::read_dir(dir.join("ac")) else {
        return;
    };
    let mut checked = 0;
    for shard in shards {
        for e in std::fs::read_dir(shard.unwrap().path()).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            let sig = name
                .strip_suffix(".json")
                .unwrap_or_else(|| panic!("stray file {name}"));
            let Lookup::Hit(entry) = cache.lookup(sig) else {
                panic!("entry {sig} is not whole")
            };
            for o in &entry.outputs {
                if let OutputEntry::File { blob, size, .. } = o {
                    let path = dir.join("cas").join(&blob[..2]).join(blob);
                    let (h, n) = hash_file(&path).unwrap_or_else(|e| panic!("blob {blob}: {e}"));
                    assert_eq!((&h, n), (blob, *size), "blob {blob} holds the wrong bytes");
                }
            }
            checked += 1;
        }
    }
    assert!(checked > 0, "the cache holds entries");
}

fn read_tree(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if p.is_symlink() {
                out.push((
                    rel,
                    std::fs::read_link(&p)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned()
                        .into_bytes(),
                ));
            } else if p.is_dir() {
                stack.push(p);
            } else {
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_second_build_runs_nothing_and_restores_final_outputs() {
    let ws = workspace();
    let first = ws.run_cached(GRAPH, 4);
    assert_eq!(first.report().totals.succeeded, 4);
    let image = read_tree(&ws.join("img"));
    assert_eq!(image.len(), 2, "{image:?}");

    // Unchanged: nothing runs, every task is reported cached.
    let second = ws.run_cached(GRAPH, 4);
    let t = &second.report().totals;
    assert_eq!((t.succeeded, t.cached, t.failed), (0, 4, 0));
    assert!(second
        .events
        .iter()
        .all(|e| !matches!(e, runqueue_host::Event::Started(_))));
    assert_eq!(read_tree(&ws.join("img")), image);

    // A fresh workspace sharing the cache gets only the final task's outputs
    // back, byte for byte, with modes and symlinks; nothing runs.
    std::fs::remove_dir_all(ws.join("img")).unwrap();
    std::fs::remove_dir_all(ws.join("build")).unwrap();
    std::fs::remove_dir_all(ws.join("dl")).unwrap();
    let third = ws.run_cached(GRAPH, 4);
    assert_eq!(third.report().totals.cached, 4);
    assert_eq!(read_tree(&ws.join("img")), image);
    assert!(third.task("img:do_image").restored);
    assert!(!third.task("a:do_compile").restored);
    assert!(
        !ws.join("build").exists() && !ws.join("dl").exists(),
        "covered tasks are not restored"
    );
    assert_cache_consistent(&ws.join(runqueue_host::DEFAULT_CACHE));
}

#[test]
fn a_rerunning_task_gets_its_dependencies_outputs_back() {
    let ws = workspace();
    ws.run_cached(GRAPH, 4);
    for d in ["img", "build", "dl"] {
        std::fs::remove_dir_all(ws.join(d)).unwrap();
    }
    let changed = GRAPH.replace("cat build/a.out build/b.out", "cat build/b.out build/a.out");
    let run = ws.run_cached(&changed, 4);
    assert_eq!(run.ids_in(TaskState::Succeeded), ["img:do_image"]);
    // Its dependencies were restored (b's mode too), then it ran.
    assert!(run.task("a:do_compile").restored && run.task("b:do_compile").restored);
    assert!(
        run.task("a:do_fetch").restored,
        "everything upstream of a re-running task"
    );
    assert_eq!(ws.read("img/all.txt"), "bee\nHELLO\nplain\n");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(ws.join("build/b.out"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
}

/// Explains `task` through the library API, as `runqueue explain` does.
/// A local entry edited by hand (or by anything that can write the cache
/// directory) to restore a source file: refused, removed, the task runs.
#[test]
fn a_tampered_local_entry_writes_nothing_but_declared_outputs() {
    let ws = workspace();
    assert_eq!(ws.run_cached(GRAPH, 4).report().totals.succeeded, 4);
    let entries = ws.join(&format!("{}/ac", runqueue_host::DEFAULT_CACHE));
    let (at, mut entry) = walk(&entries)
        .into_iter()
        .map(|p| {
            (
                p.clone(),
                serde_json::from_slice::<serde_json::Value>(&std::fs::read(&p).unwrap()).unwrap(),
            )
        })
        .find(|(_, v)| v["task"] == "img:do_image")
        .expect("the image's entry");
    let blob = entry["outputs"][1]["blob"].clone();
    entry["outputs"].as_array_mut().unwrap().push(
        serde_json::json!({"kind":"file","path":"src/a.txt","blob":blob,"size":0,"mode":420}),
    );
    std::fs::write(&at, entry.to_string()).unwrap();
    std::fs::remove_dir_all(ws.join("img")).unwrap();
    let run = ws.run_cached(GRAPH, 4);
    assert!(
        run.warnings()
            .iter()
            .any(|w| w.contains("writes \"src/a.txt\", which is no declared output")),
        "{:?}",
        run.warnings()
    );
    assert_eq!(ws.read("src/a.txt"), "hello\n");
    assert_eq!(
        run.task("img:do_image").state,
        runqueue_host::TaskState::Succeeded
    );
    let rewritten = std::fs::read_to_string(&at).unwrap();
    assert!(
        !rewritten.contains("src/a.txt"),
        "replaced by the run's own: {rewritten}"
    );
}

/// Every file below `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .flat_map(|e| {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p)
            } else {
                vec![p]
            }
        })
        .collect()
}

fn explain(ws: &Ws, graph: &str, task: &str) -> Vec<String> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let opts = RunOptions {
        cache: Some(runqueue_host::DEFAULT_CACHE.into()),
        ..Default::default()
    };
    rt.block_on(common::runqueue().explain(
        graph,
        task,
        &opts,
        &Workspace::open(ws.path()).unwrap(),
    ))
    .unwrap()
    .unwrap()
}

#[test]
fn one_change_reruns_exactly_that_task_and_its_dependents() {
    struct Case {
        name: &'static str,
        change: fn(&Ws, &str) -> String,
        reruns: &'static [&'static str],
        explained: (&'static str, &'static str),
    }
    let cases = [
        Case {
            name: "script",
            // "hello" has no z: the same output, so the image is cut off.
            change: |_, g| g.replace("tr a-z A-Z", "tr a-y A-Y"),
            reruns: &["a:do_compile"],
            explained: ("a:do_compile", "  script changed: run "),
        },
        Case {
            name: "input file",
            change: |ws, g| {
                ws.write("src/a.txt", "changed\n");
                g.to_string()
            },
            reruns: &["a:do_fetch", "a:do_compile", "img:do_image"],
            explained: ("a:do_fetch", "  input file src/a.txt changed"),
        },
        Case {
            name: "env",
            change: |_, g| g.replace(r#""FLAVOR":"plain""#, r#""FLAVOR":"spicy""#),
            reruns: &["a:do_compile", "img:do_image"],
            explained: (
                "a:do_compile",
                "  env FLAVOR changed: \"plain\" -> \"spicy\"",
            ),
        },
    ];
    for case in cases {
        let ws = workspace();
        ws.run_cached(GRAPH, 4);
        let graph = (case.change)(&ws, GRAPH);
        let why = explain(&ws, &graph, case.explained.0);
        assert!(
            why.iter().any(|l| l.starts_with(case.explained.1)),
            "{}: {why:#?}",
            case.name
        );
        // Its signature covers a:do_compile's outputs, not known before it runs.
        let dependent = explain(&ws, &graph, "img:do_image");
        assert!(
            dependent[1]
                .starts_with("not decided: its signature covers the outputs of a:do_compile,"),
            "{}: {dependent:#?}",
            case.name
        );
        let run = ws.run_cached(&graph, 4);
        assert_eq!(
            run.ids_in(TaskState::Succeeded),
            case.reruns,
            "{}",
            case.name
        );
        // And afterwards everything is covered again.
        assert_eq!(
            explain(&ws, &graph, "img:do_image")[1].split(':').next(),
            Some("cached")
        );
    }
}

#[test]
fn corrupt_or_missing_cache_data_is_detected_and_repaired() {
    let ws = workspace();
    let first = ws.run_cached(GRAPH, 4);
    let cache = cache_of(&ws);
    let sig = first.task("img:do_image").signature.clone().unwrap();
    let Lookup::Hit(entry) = cache.lookup(&sig) else {
        panic!()
    };
    let blob_of = |path: &str| {
        entry
            .outputs
            .iter()
            .find_map(|o| match o {
                OutputEntry::File { path: p, blob, .. } if p == path => Some(blob.clone()),
                _ => None,
            })
            .unwrap()
    };
    let blob_path = |b: &str| ws.join(&format!(".runqueue/cache/cas/{}/{b}", &b[..2]));
    let all_txt = blob_path(&blob_of("img/all.txt"));
    let entry_path = ws.join(&format!(".runqueue/cache/ac/{}/{sig}.json", &sig[..2]));

    type Damage<'a> = Box<dyn Fn() + 'a>;
    let damages: Vec<(&str, Damage, &str)> = vec![
        (
            "corrupt blob",
            Box::new(|| {
                let mut bytes = std::fs::read(&all_txt).unwrap();
                bytes[0] ^= 0xff;
                std::fs::write(&all_txt, bytes).unwrap();
            }),
            "is corrupt",
        ),
        (
            "deleted blob",
            Box::new(|| std::fs::remove_file(&all_txt).unwrap()),
            "is missing",
        ),
        (
            "truncated entry",
            Box::new(|| {
                let json = std::fs::read(&entry_path).unwrap();
                std::fs::write(&entry_path, &json[..json.len() / 3]).unwrap();
            }),
            "is corrupt",
        ),
    ];
    for (name, damage, warning) in damages {
        std::fs::remove_dir_all(ws.join("img")).unwrap();
        damage();
        let run = ws.run_cached(GRAPH, 4);
        assert_eq!(
            run.ids_in(TaskState::Succeeded),
            ["img:do_image"],
            "{name}: the task re-runs"
        );
        let warnings = run.warnings();
        assert!(
            warnings
                .iter()
                .any(|w| w.starts_with("img:do_image: ") && w.contains(warning)),
            "{name}: {warnings:?}"
        );
        assert_eq!(ws.read("img/all.txt"), "HELLO\nplain\nbee\n", "{name}");
        // Repaired: the next run is fully cached and restores good bytes.
        std::fs::remove_dir_all(ws.join("img")).unwrap();
        let again = ws.run_cached(GRAPH, 4);
        assert_eq!(again.report().totals.cached, 4, "{name}: repaired");
        assert!(
            again.warnings().is_empty(),
            "{name}: {:?}",
            again.warnings()
        );
        assert_eq!(ws.read("img/all.txt"), "HELLO\nplain\nbee\n", "{name}");
        assert_cache_consistent(&ws.join(runqueue_host::DEFAULT_CACHE));
    }
}

#[test]
fn nostamp_tasks_always_run_and_so_do_their_dependents() {
    let ws = workspace();
    let graph = r#"{"version":1,"tasks":[
        {"id":"stamp","nostamp":true,"outputs":["stamp.txt"],"run":"echo run >> runs.txt; date +%s%N > stamp.txt"},
        {"id":"use","deps":["stamp"],"outputs":["use.txt"],"run":"cp stamp.txt use.txt"},
        {"id":"other","outputs":["other.txt"],"run":"echo other > other.txt"}]}"#;
    ws.run_cached(graph, 2);
    let second = ws.run_cached(graph, 2);
    assert_eq!(second.ids_in(TaskState::Succeeded), ["stamp", "use"]);
    assert_eq!(second.ids_in(TaskState::Cached), ["other"]);
    assert_eq!(ws.read("runs.txt"), "run\nrun\n");
    assert_eq!(ws.read("use.txt"), ws.read("stamp.txt"));
}

#[test]
fn a_missing_declared_output_fails_the_task() {
    let ws = workspace();
    let graph = r#"{"version":1,"tasks":[
        {"id":"lazy","outputs":["made.txt","forgotten.txt"],"run":"touch made.txt"},
        {"id":"after","deps":["lazy"],"run":"touch after"}]}"#;
    for cached in [false, true] {
        let run = if cached {
            ws.run_cached(graph, 2)
        } else {
            ws.run(graph, 2, false)
        };
        let t = run.task("lazy");
        assert_eq!(t.state, TaskState::Failed, "cached={cached}");
        assert_eq!(
            t.message.as_deref(),
            Some("declared output \"forgotten.txt\" was not produced")
        );
        assert_eq!(run.task("after").state, TaskState::NotRun);
    }
    assert!(!ws.join("after").exists());
    assert!(
        !ws.join(".runqueue/cache/ac").exists(),
        "nothing stored for a failed task"
    );
}

#[test]
fn an_output_symlink_pointing_outside_fails_the_task() {
    let ws = workspace();
    let graph = r#"{"version":1,"tasks":[
        {"id":"abs","outputs":["abs.lnk"],"run":"ln -s /etc/passwd abs.lnk"},
        {"id":"rel","outputs":["d/rel.lnk"],"run":"mkdir -p d && ln -s ../../outside d/rel.lnk"},
        {"id":"ok","outputs":["d2/ok.lnk"],"run":"mkdir -p d2 && ln -s ../src/a.txt d2/ok.lnk"}]}"#;
    let run = ws.run_cached(graph, 2);
    assert_eq!(
        run.task("abs").message.as_deref(),
        Some("output symlink \"abs.lnk\" points outside the workspace")
    );
    assert_eq!(
        run.task("rel").message.as_deref(),
        Some("output symlink \"d/rel.lnk\" points outside the workspace")
    );
}

#[test]
fn outputs_escaping_the_workspace_are_bad_input() {
    let outside = tempfile::tempdir().unwrap();
    let cases = [
        (r#"["../x"]"#, "task \"t\": output \"../x\" leaves the workspace (use a relative path without \"..\")".to_string()),
        (r#"["/etc/x"]"#, "task \"t\": output \"/etc/x\" leaves the workspace (use a relative path without \"..\")".to_string()),
        (
            r#"["link/x"]"#,
            "task \"t\": output \"link/x\" leads out of the workspace through symlink \"link\"".to_string(),
        ),
    ];
    for (outputs, message) in cases {
        let ws = Ws::new();
        std::os::unix::fs::symlink(outside.path(), ws.join("link")).unwrap();
        ws.write(
            "g.json",
            &format!(
                r#"{{"version":1,"tasks":[{{"id":"t","outputs":{outputs},"run":"touch ran"}}]}}"#
            ),
        );
        let out = ws.cli(&["build", "g.json"]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert_eq!(
            stderr(&out),
            format!("runqueue: invalid graph g.json: {message}\n")
        );
        assert_eq!(ws.listing(), ["g.json", "link"], "nothing written");
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }
}

#[test]
fn two_concurrent_builds_share_one_cache_safely() {
    let shared = tempfile::tempdir().unwrap();
    let cache_dir = shared.path().join("cache");
    let cache_arg = cache_dir.to_str().unwrap();
    // Many tasks with overlapping outputs so both builds write the same
    // blobs and entries at the same time.
    let tasks: Vec<String> = (0..40)
        .map(|i| {
            format!(
                r#"{{"id":"t{i}","outputs":["out/{i}.txt"],"run":"mkdir -p out && seq 1 {} > out/{i}.txt"}}"#,
                1000 + i * 100
            )
        })
        .collect();
    let graph = format!(r#"{{"version":1,"tasks":[{}]}}"#, tasks.join(","));
    let (a, b) = (Ws::new(), Ws::new());
    let mut children = Vec::new();
    for ws in [&a, &b] {
        ws.write("g.json", &graph);
        children.push(
            common::runqueue_command(ws.path())
                .args(["build", "g.json", "-j", "4", "--cache", cache_arg])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap(),
        );
    }
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}{}",
            stdout(&out),
            stderr(&out)
        );
        assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
    }
    assert_cache_consistent(&cache_dir);
    // A third workspace gets everything from the shared cache.
    let c = Ws::new();
    c.write("g.json", &graph);
    let out = c.cli(&["build", "g.json", "--cache", cache_arg]);
    assert!(
        stdout(&out).contains("Attempted 40 tasks of which 40 didn't need to be rerun"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        std::fs::read(c.join("out/7.txt")).unwrap(),
        std::fs::read(a.join("out/7.txt")).unwrap()
    );
    assert!(
        !cache_dir.join("tmp").read_dir().unwrap().any(|_| true),
        "no temporary files left"
    );
}

#[test]
fn a_host_killed_while_storing_leaves_no_broken_entry() {
    let ws = Ws::new();
    // A large output takes a while to hash and copy into the cache.
    let graph = r#"{"version":1,"tasks":[
        {"id":"small","outputs":["small.txt"],"run":"echo small > small.txt"},
        {"id":"big","deps":["small"],"outputs":["big"],"run":"mkdir -p big && head -c 400000000 /dev/zero > big/zeros && echo tail >> big/zeros"}]}"#;
    ws.write("g.json", graph);
    let tmp = ws.join(".runqueue/cache/tmp");
    let mut killed_while_copying = false;
    for _attempt in 0..3 {
        let mut child = common::runqueue_command(ws.path())
            .args(["build", "g.json"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Wait until a blob of the big output is being copied, then kill.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while std::time::Instant::now() < deadline && child.try_wait().unwrap().is_none() {
            let copying = std::fs::read_dir(&tmp)
                .map(|d| {
                    d.filter_map(|e| e.ok())
                        .any(|e| e.metadata().is_ok_and(|m| m.len() > 1 << 20))
                })
                .unwrap_or(false);
            if copying {
                child.kill().unwrap();
                killed_while_copying = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        child.wait().unwrap();
        if killed_while_copying {
            break;
        }
        // It finished before we could catch it: start over.
        std::fs::remove_dir_all(ws.join(".runqueue")).unwrap();
    }
    assert!(
        killed_while_copying,
        "never caught the host while it stored the big output"
    );
    // Whatever is in the cache is whole; the big task has no entry.
    assert_cache_consistent(&ws.join(runqueue_host::DEFAULT_CACHE));
    // Running again completes, and then a third run is fully cached.
    let out = ws.cli(&["build", "g.json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("Attempted 2 tasks of which 1 didn't need to be rerun"),
        "{}",
        stdout(&out)
    );
    let out = ws.cli(&["build", "g.json"]);
    assert!(
        stdout(&out).contains("Attempted 2 tasks of which 2 didn't need to be rerun"),
        "{}",
        stdout(&out)
    );
    assert_cache_consistent(&ws.join(runqueue_host::DEFAULT_CACHE));
    assert_eq!(
        std::fs::metadata(ws.join("big/zeros")).unwrap().len(),
        400_000_005
    );
}

/// A cache that cannot be written (here a file where the directory should
/// be, since tests run as root and permissions do not stop root) costs the
/// caching, with warnings, never the build.
#[test]
fn an_unusable_cache_only_warns() {
    let ws = workspace();
    ws.write(".runqueue/cache", "not a directory");
    let out = {
        ws.write("g.json", GRAPH);
        ws.cli(&["build", "g.json"])
    };
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(ws.read("img/all.txt"), "HELLO\nplain\nbee\n");
    let err = stderr(&out);
    assert!(err.contains("runqueue: warning: img:do_image: cannot store outputs in the cache: cannot write .runqueue/cache/tmp/"), "{err}");
    assert!(stdout(&out)
        .contains("Attempted 4 tasks of which 0 didn't need to be rerun and all succeeded."));
}

/// Four builds at once into one shared cache, each writing the same 8 MB
/// output and a different one, blobs stored by the host several at a time:
/// every entry is whole, every blob holds the bytes its name promises, the
/// journal has every run (a build that starts late may restore `same`
/// instead: runs plus restores are all eight tasks), and a fifth workspace
/// restores from it.
#[test]
fn concurrent_builds_sharing_one_cache_agree_blob_by_blob() {
    let rerun_count = |summary: &str| -> usize {
        let at = summary.find(" of which ").expect("a summary line") + 10;
        summary[at..].split(' ').next().unwrap().parse().unwrap()
    };
    let shared = tempfile::tempdir().unwrap();
    let cache = shared.path().join("cache");
    let graph = |n: usize| {
        format!(
            r#"{{"version":1,"tasks":[
              {{"id":"same","outputs":["same.bin"],"run":"head -c 8000000 /dev/zero | tr '\\0' s > same.bin"}},
              {{"id":"own","outputs":["own.txt"],"run":"echo {n} > own.txt"}}]}}"#
        )
    };
    let builds: Vec<_> = (0..4)
        .map(|n| {
            let ws = Ws::new();
            ws.write("g.json", &graph(n));
            let child = common::runqueue_command(ws.path())
                .args(["build", "g.json", "--cache"])
                .arg(&cache)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            (ws, child)
        })
        .collect();
    let mut restored = 0;
    for (_ws, child) in builds {
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert_eq!(stderr(&out), "", "no warnings");
        restored += rerun_count(&stdout(&out));
    }
    assert_cache_consistent(&cache);
    let journal = std::fs::read_to_string(cache.join("journal")).unwrap();
    // Task runs only (the journal also says which entries builds used).
    let runs = journal
        .lines()
        .filter(|l| l.starts_with(r#"{"task":"#))
        .count();
    assert_eq!(journal.matches(r#""task":"own""#).count(), 4, "{journal}");
    assert_eq!(runs + restored, 8, "every run recorded:\n{journal}");
    let fresh = Ws::new();
    fresh.write("g.json", &graph(2));
    let out = common::runqueue_command(fresh.path())
        .args(["build", "g.json", "--cache"])
        .arg(&cache)
        .output()
        .unwrap();
    assert!(
        stdout(&out).contains("of which 2 didn't need to be rerun"),
        "{}",
        stdout(&out)
    );
    assert_eq!(fresh.read("own.txt"), "2\n");
    assert_eq!(
        std::fs::metadata(fresh.join("same.bin")).unwrap().len(),
        8_000_000
    );
}

/// The default cache's parent `.runqueue` is made by the first store even
/// when nothing else (the logs live elsewhere) made it first.
#[test]
fn the_first_store_makes_the_default_cache() {
    let ws = workspace();
    ws.write("g.json", GRAPH);
    let out = ws.cli(&["build", "g.json", "--logs", "logs"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stderr(&out), "", "no warnings");
    assert_cache_consistent(&ws.join(runqueue_host::DEFAULT_CACHE));
}

/// A build killed with SIGKILL part way, and a record torn in the middle
/// of the journal's last line, cost nothing else: the next build runs
/// without a warning, and every other line of the journal is whole.
#[test]
fn the_history_journal_survives_a_killed_build() {
    let ws = workspace();
    ws.write("g.json", &common::numbered_outputs(400));
    let mut child = common::runqueue_command(ws.path())
        .args(["build", "g.json", "-j", "2"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let journal = ws.join(".runqueue/cache/journal");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    // Until a first whole record is there (the file is made a moment
    // before its first bytes land).
    let written = || std::fs::read(&journal).is_ok_and(|b| b.contains(&b'\n'));
    while !written() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL, part way through
    child.wait().unwrap();
    let whole = std::fs::read_to_string(&journal).unwrap().lines().count();
    assert!(whole > 0, "some history was written before the kill");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&journal)
        .unwrap();
    std::io::Write::write_all(&mut f, br#"{"task":"t1","signa"#).unwrap();

    let out = ws.cli(&["build", "g.json", "-j", "2"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stderr(&out), "", "no warnings");
    let text = std::fs::read_to_string(&journal).unwrap();
    let torn: Vec<&str> = text
        .lines()
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).is_err())
        .collect();
    assert_eq!(
        torn,
        [r#"{"task":"t1","signa"#],
        "only the torn line is not whole"
    );
    assert!(
        text.lines().count() > whole,
        "nothing written before was lost"
    );
}

/// `plan` and `explain` given `--cache-trust` see the cache as a build
/// given it would: an entry signed by another key is not covered.
#[test]
fn plan_and_explain_take_the_trusted_keys_a_build_would() {
    let ws = workspace();
    ws.keygen(&["ci", "dev"]);
    let out = ws.cli_build(GRAPH, &["--cache-signing-key", "ci.sec"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let plan = |key: &str| stdout(&ws.cli(&["plan", "g.json", "--cache-trust", key]));
    assert!(
        plan("ci.pub").contains("0 to run, 4 covered by the cache"),
        "{}",
        plan("ci.pub")
    );
    assert!(
        plan("dev.pub").contains("4 to run, 0 covered by the cache"),
        "{}",
        plan("dev.pub")
    );
    let explain = stdout(&ws.cli(&[
        "explain",
        "g.json",
        "a:do_fetch",
        "--cache-trust",
        "dev.pub",
    ]));
    assert!(
        explain.contains("signed by key \"ci\", which is not trusted"),
        "{explain}"
    );
}

#[test]
fn cache_verify_drops_a_tampered_blob_and_the_next_build_repairs_it() {
    let ws = Ws::new();
    let g = r#"{"version":1,"tasks":[{"id":"a","run":"mkdir -p out; echo made > out/a","outputs":["out/a"]}]}"#;
    assert!(ws.cli_build(g, &[]).status.success());
    let (hash, _) = hash_file(&ws.join("out/a")).unwrap();
    let blob = ws.join(&format!(".runqueue/cache/cas/{}/{hash}", &hash[..2]));
    std::fs::write(&blob, "tampered\n").unwrap();
    let out = ws.cli(&["cache", "verify", "--cache", ".runqueue/cache"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = stdout(&out);
    assert!(
        said.contains(&format!("dropped cas/{}/{hash}", &hash[..2])),
        "{said}"
    );
    assert!(said.contains("1 dropped"), "{said}");
    assert!(!blob.exists());
    std::fs::remove_file(ws.join("out/a")).unwrap();
    let again = ws.cli_build(g, &["--report", "r.json"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(ws.read("out/a"), "made\n", "the task ran again");
    assert!(blob.exists(), "and its blob is back");
    let clean = stdout(&ws.cli(&["cache", "verify", "--cache", ".runqueue/cache"]));
    assert!(clean.contains(": 0 dropped"), "{clean}");
    let none = ws.cli(&["cache", "verify", "--cache", "nowhere"]);
    assert_eq!(none.status.code(), Some(2));
}
