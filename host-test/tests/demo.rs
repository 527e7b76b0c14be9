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
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/demo");
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
