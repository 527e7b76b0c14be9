//! The bundled example builds for real: C sources compiled, linked and run.

mod common;

use std::path::Path;

use common::Ws;

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

#[test]
fn the_demo_builds_an_image_that_runs() {
    let demo = common::paths::repo().join("examples/demo");
    let ws = Ws::new();
    copy_tree(&demo.join("sources"), &ws.join("sources"));
    let graph = std::fs::read_to_string(demo.join("graph.json")).unwrap();
    let run = ws.run(&graph, 4, false);
    let r = run.report();
    assert_eq!(r.totals.failed, 0, "{:#?}", r.tasks);
    assert_eq!(r.totals.succeeded, r.totals.total);
    // The three fetches always overlap; with calc's three compiles and
    // greet's it usually reaches 4.
    assert!(
        r.totals.peak_parallel >= 3,
        "peak {}",
        r.totals.peak_parallel
    );
    assert_eq!(
        ws.read(".runqueue/logs/image/log.do_rootfs"),
        "Hello, demo! (greet 1.0)\n6 + 7 = 13, 6 * 7 = 42\nusr/bin/calc\nusr/bin/hello\n"
    );
    assert_eq!(
        ws.read("image/manifest.txt"),
        "usr/bin/calc\nusr/bin/hello\n"
    );
}

#[test]
fn the_demo_built_twice_runs_nothing_the_second_time() {
    let demo = common::paths::repo().join("examples/demo");
    let ws = Ws::new();
    copy_tree(&demo.join("sources"), &ws.join("sources"));
    let graph = std::fs::read_to_string(demo.join("graph.json")).unwrap();
    let first = ws.run_cached(&graph, 4);
    assert_eq!(first.report().totals.succeeded, first.report().totals.total);
    let finals = [
        "image/usr/bin/hello",
        "image/usr/bin/calc",
        "image/manifest.txt",
    ];
    let before: Vec<Vec<u8>> = finals
        .iter()
        .map(|f| std::fs::read(ws.join(f)).unwrap())
        .collect();

    let second = ws.run_cached(&graph, 4);
    let t = &second.report().totals;
    assert_eq!((t.succeeded, t.cached), (0, t.total), "nothing executes");
    let after: Vec<Vec<u8>> = finals
        .iter()
        .map(|f| std::fs::read(ws.join(f)).unwrap())
        .collect();
    assert_eq!(before, after, "identical bytes");

    // With the image deleted, the cache brings it back and it still runs.
    std::fs::remove_dir_all(ws.join("image")).unwrap();
    let third = ws.run_cached(&graph, 4);
    assert_eq!(third.report().totals.cached, third.report().totals.total);
    let out = std::process::Command::new(ws.join("image/usr/bin/hello"))
        .arg("cache")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Hello, cache! (greet 1.0)\n"
    );
}
