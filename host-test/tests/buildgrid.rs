//! The BuildGrid harness itself (common/buildgrid.rs): a real BuildGrid
//! with its own PostgreSQL starts, answers Capabilities, stops and starts
//! again on the same port, and leaves no process behind.

mod common;

use std::time::{Duration, Instant};

use bazel_remote_apis::build::bazel::remote::execution::v2::digest_function;
use common::buildgrid::{pid_is_running, BuildGrid};

/// The processes whose parent is `pid`, and theirs, recursively.
fn descendants(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
        // After "pid (comm) ": state, ppid, pgrp.
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        if fields.get(1) == Some(&pid.to_string().as_str()) {
            out.push(child);
            out.extend(descendants(child));
        }
    }
    out
}

/// Waits up to 10 s for none of `pids` to run; returns those still running.
fn still_running(pids: &[u32]) -> Vec<u32> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let running: Vec<u32> = pids
            .iter()
            .copied()
            .filter(|&p| pid_is_running(p))
            .collect();
        if running.is_empty() || Instant::now() > deadline {
            return running;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn buildgrid_starts_answers_and_restarts() {
    let mut bg = BuildGrid::start();
    assert_eq!(bg.url(), format!("grpc://127.0.0.1:{}", bg.port()));
    let caps = bg.capabilities().expect("Capabilities answers");
    let exec = caps.execution_capabilities.expect("execution capabilities");
    assert!(exec.exec_enabled, "{exec:?}");
    let sha256 = digest_function::Value::Sha256 as i32;
    let cache = caps.cache_capabilities.expect("cache capabilities");
    assert!(cache.digest_functions.contains(&sha256), "{cache:?}");
    assert!(exec.digest_functions.contains(&sha256) || exec.digest_function == sha256);

    let first_pid = bg.server_pid().unwrap();
    let first_group = descendants(first_pid);
    bg.stop_server();
    assert_eq!(
        still_running(&[&[first_pid][..], &first_group].concat()),
        Vec::<u32>::new()
    );
    assert!(bg.capabilities().is_err(), "a stopped server answers");

    let t = Instant::now();
    bg.start_server();
    eprintln!("restarted in {:.1?}", t.elapsed());
    assert!(bg.capabilities().is_ok(), "{}", bg.log());

    let mut pids = vec![bg.server_pid().unwrap(), bg.postgres().pid()];
    pids.extend(descendants(pids[0]));
    pids.extend(descendants(pids[1]));
    assert!(pids.len() > 2, "the PostgreSQL backends: {pids:?}");
    let group = bg.server_pgid().unwrap();
    drop(bg);
    assert_eq!(still_running(&pids), Vec::<u32>::new(), "after drop");
    assert!(
        unsafe { libc::kill(-(group as i32), 0) } != 0,
        "the server's process group is gone"
    );
    let ours = descendants(std::process::id());
    assert_eq!(still_running(&ours), Vec::<u32>::new(), "no child left");
}
