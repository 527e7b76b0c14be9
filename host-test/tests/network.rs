//! Tasks and the network: a task reaches a server on this machine's
//! loopback only when it says `"network": true`; the others run in an
//! empty network namespace of their own.

mod common;

use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::{stderr, Ws};

/// A server on 127.0.0.1 counting the connections it accepts; its port.
fn counting_server() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            drop(conn);
            count.fetch_add(1, Ordering::SeqCst);
        }
    });
    (port, seen)
}

/// A task that connects to `port` with bash's /dev/tcp, with `network`.
fn connecting(id: &str, port: u16, network: bool) -> String {
    format!(
        r#"{{"id":"{id}","argv":["bash","-c","exec 3<>/dev/tcp/127.0.0.1/{port} && echo connected"],"network":{network}}}"#
    )
}

#[test]
fn a_task_reaches_a_loopback_server_only_when_it_asks_for_the_network() {
    let (port, seen) = counting_server();
    let graph = format!(
        r#"{{"version":1,"tasks":[{},{}]}}"#,
        connecting("closed", port, false),
        connecting("open", port, true)
    );
    let ws = Ws::new();
    let out = ws.cli_build(
        &graph,
        &["-k", "-j", "1", "--no-cache", "--require-isolation"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let closed = ws.read(".runqueue/logs/log.closed");
    assert!(
        closed.contains("Network is unreachable"),
        "no route at all: {closed}"
    );
    assert_eq!(ws.read(".runqueue/logs/log.open"), "connected\n");
    assert_eq!(
        seen.load(Ordering::SeqCst),
        1,
        "only the task with the network connected"
    );
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
}

#[test]
fn an_isolated_task_sees_nothing_but_a_loopback_that_is_down() {
    let ws = Ws::new();
    let graph = r#"{"version":1,"tasks":[{"id":"look","run":
        "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' > ifaces; bash -c 'exec 3<>/dev/tcp/127.0.0.1/9' 2> err || true"}]}"#;
    let out = ws.cli_build(graph, &["--no-cache"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(ws.read("ifaces"), "lo\n", "nothing but a loopback");
    let err = ws.read("err");
    assert!(
        err.contains("Network is unreachable"),
        "the loopback is down: {err}"
    );
}
