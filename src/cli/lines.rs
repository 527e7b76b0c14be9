//! The lines both command lines print (`check`, `simulate`, the build
//! summary), so they agree by construction.
//!
//! Knows the API's results; knows nothing of WIT or of either host.

use crate::api::{Simulated, Summary};
use crate::schedule::plan::Policy;

/// What `check` says of a valid graph.
pub fn check_lines(graph: &str, s: &Summary) -> [String; 2] {
    [
        format!(
            "{graph}: OK: {} tasks, {} dependencies, {} without dependencies, {} final",
            s.tasks, s.edges, s.roots, s.finals
        ),
        format!(
            "longest path ({} tasks): {}",
            s.longest_path.len(),
            s.longest_path.join(" -> ")
        ),
    ]
}

/// What `simulate` prints of a simulation on `jobs` slots.
pub fn simulation_lines(f: &Simulated, jobs: u32, policy: Policy) -> Vec<String> {
    let s = |ms: u64| format!("{:.1} s", ms as f64 / 1000.0);
    let ratio = if f.lower_bound_ms == 0 {
        1.0
    } else {
        f.makespan_ms as f64 / f.lower_bound_ms as f64
    };
    let mut lines = vec![
        format!(
            "simulated on {jobs} slots with the {} scheduler",
            policy.name()
        ),
        format!("makespan     {}", s(f.makespan_ms)),
        format!(
            "lower bound  {} = max(critical path {}, work {} / {jobs})",
            s(f.lower_bound_ms),
            s(f.critical_path_ms),
            s(f.work_ms),
        ),
        format!("ratio        {ratio:.3}"),
        format!("peak         {} tasks at once", f.peak_parallel),
    ];
    if f.peak_memory > 0 {
        let mib = f.peak_memory >> 20;
        lines.push(format!("memory       {mib} MiB at most, by recorded peaks"));
    }
    lines.push(format!(
        "critical path ({} tasks, {}): {}",
        f.critical_path.len(),
        s(f.critical_path_ms),
        f.critical_path.join(" -> ")
    ));
    lines
}

/// A build's totals, as the summary counts them.
pub struct Tally {
    pub total: u32,
    pub succeeded: u32,
    pub cached: u32,
    /// Of the cached, those cut off.
    pub cut_off: u32,
    pub failed: u32,
    pub not_run: u32,
    /// Tasks run again alone after an out-of-memory kill.
    pub oom_reruns: u32,
    pub peak_parallel: u32,
    pub max_parallel: u32,
    pub wall_ms: u64,
}

/// BitBake's one-line tally, then runqueue's totals.
pub fn summary_lines(t: &Tally) -> [String; 2] {
    [
        format!(
            "Tasks Summary: Attempted {} tasks of which {} didn't need to be rerun and {}.",
            t.total,
            t.cached,
            if t.failed == 0 {
                "all succeeded".to_string()
            } else {
                format!("{} failed", t.failed)
            }
        ),
        format!(
            "Summary: {} tasks: {} succeeded, {} cached{}, {} failed, {} not run{}. \
             Peak parallelism {} (limit {}). Wall time {:.2}s.",
            t.total,
            t.succeeded,
            t.cached,
            match t.cut_off {
                0 => String::new(),
                n => format!(" ({n} cut off)"),
            },
            t.failed,
            t.not_run,
            match t.oom_reruns {
                0 => String::new(),
                n => format!("; {n} re-run alone after an out-of-memory kill"),
            },
            t.peak_parallel,
            t.max_parallel,
            t.wall_ms as f64 / 1000.0
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_says_what_bitbake_says() {
        let t = Tally {
            total: 5,
            succeeded: 3,
            cached: 1,
            cut_off: 0,
            failed: 1,
            not_run: 0,
            oom_reruns: 0,
            peak_parallel: 2,
            max_parallel: 4,
            wall_ms: 1234,
        };
        assert_eq!(
            summary_lines(&t),
            [
                "Tasks Summary: Attempted 5 tasks of which 1 didn't need to be rerun and 1 failed.",
                "Summary: 5 tasks: 3 succeeded, 1 cached, 1 failed, 0 not run. Peak parallelism 2 (limit 4). Wall time 1.23s."
            ]
        );
    }
}
