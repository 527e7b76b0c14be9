//! What the console says once tasks are over: a failed task's block (where
//! its log is, and its last lines) and the final summary. Knows reports and
//! log files; knows nothing of progress as it happens.

use std::collections::HashMap;
use std::path::Path;

use super::{duration_ms, secs};
use crate::{Report, TaskReport, TaskState};

/// How many not-run tasks the summary names before it only counts.
const NOT_RUN_SHOWN: usize = 10;
/// How many of the slowest tasks the summary lists.
const SLOWEST_SHOWN: usize = 5;

/// The final summary, each line ended by a newline: BitBake's one-line
/// tally, totals, wall time, this run's critical path, the slowest tasks,
/// the failed tasks with their logs again, and the tasks that did not run.
pub(super) fn text(report: &Report, workspace: &Path, tail: usize) -> String {
    let mut lines = tally(report);
    lines.extend(remote(report));
    lines.extend(critical_path(report));
    lines.extend(failed(report, workspace, tail));
    lines.extend(not_run(report));
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// The tally lines both command lines print.
fn tally(report: &Report) -> Vec<String> {
    let t = &report.totals;
    runqueue::cli::lines::summary_lines(&runqueue::cli::lines::Tally {
        total: t.total,
        succeeded: t.succeeded,
        cached: t.cached,
        cut_off: t.cut_off,
        failed: t.failed,
        not_run: t.not_run,
        oom_reruns: t.oom_reruns,
        peak_parallel: t.peak_parallel,
        max_parallel: report.max_parallel,
        wall_ms: t.wall_ms,
    })
    .into_iter()
    .collect()
}

/// Where tasks ran remotely: how many on how many workers, how many the
/// service's action cache answered.
fn remote(report: &Report) -> Option<String> {
    let remote: Vec<&TaskReport> = report
        .tasks
        .iter()
        .filter(|t| t.ran_on.is_some() || t.remote_cached)
        .collect();
    if remote.is_empty() {
        return None;
    }
    let mut workers: Vec<&str> = remote.iter().filter_map(|t| t.ran_on.as_deref()).collect();
    workers.sort();
    workers.dedup();
    let cached = remote.iter().filter(|t| t.remote_cached).count();
    Some(format!(
        "Remote: {} tasks on {} workers ({}), {cached} from the remote action cache",
        remote.len(),
        workers.len(),
        workers.join(", ")
    ))
}

/// The critical path and the slowest tasks, if any task ran.
fn critical_path(report: &Report) -> Vec<String> {
    let t = &report.totals;
    if t.succeeded + t.failed == 0 || report.critical_path.is_empty() {
        return Vec::new();
    }
    let by_id: HashMap<&str, &TaskReport> =
        report.tasks.iter().map(|t| (t.id.as_str(), t)).collect();
    let path_ms: u64 = report
        .critical_path
        .iter()
        .filter_map(|id| by_id.get(id.as_str()))
        .map(|t| duration_ms(t))
        .sum();
    let mut ran: Vec<&TaskReport> = report.tasks.iter().filter(|t| t.pid.is_some()).collect();
    ran.sort_by_key(|t| std::cmp::Reverse(duration_ms(t)));
    let slowest: Vec<String> = ran
        .iter()
        .take(SLOWEST_SHOWN)
        .map(|t| format!("{} {}", t.id, secs(duration_ms(t))))
        .collect();
    vec![
        format!(
            "Critical path ({} tasks, {}): {}",
            report.critical_path.len(),
            secs(path_ms),
            abbreviate(&report.critical_path)
        ),
        format!("Slowest tasks: {}", slowest.join(", ")),
    ]
}

/// The failed tasks, each with its failure block.
fn failed(report: &Report, workspace: &Path, tail: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for f in report.tasks.iter().filter(|t| t.state == TaskState::Failed) {
        if lines.is_empty() {
            lines.push("Failed tasks:".to_string());
        }
        lines.push(format!(
            "  {}: {}",
            f.id,
            f.message.as_deref().unwrap_or("failed")
        ));
        for l in failure_details(f, workspace, tail) {
            lines.push(format!("  {l}"));
        }
    }
    lines
}

/// The tasks that did not run, the first few by name.
fn not_run(report: &Report) -> Vec<String> {
    let not_run: Vec<&TaskReport> = report
        .tasks
        .iter()
        .filter(|t| t.state == TaskState::NotRun)
        .collect();
    if not_run.is_empty() {
        return Vec::new();
    }
    let mut lines = vec![format!("Not run ({}):", not_run.len())];
    for n in not_run.iter().take(NOT_RUN_SHOWN) {
        lines.push(format!(
            "  {}: {}",
            n.id,
            n.message.as_deref().unwrap_or("not run")
        ));
    }
    if not_run.len() > NOT_RUN_SHOWN {
        lines.push(format!("  ... and {} more", not_run.len() - NOT_RUN_SHOWN));
    }
    lines
}

/// "a -> b -> c", or the first and last few of a long chain.
fn abbreviate(chain: &[String]) -> String {
    if chain.len() <= 12 {
        return chain.join(" -> ");
    }
    format!(
        "{} -> ... {} more ... -> {}",
        chain[..5].join(" -> "),
        chain.len() - 10,
        chain[chain.len() - 5..].join(" -> ")
    )
}

/// BitBake's failure block: where the log is and its last lines.
pub(super) fn failure_details(t: &TaskReport, workspace: &Path, tail: usize) -> Vec<String> {
    let Some(log) = &t.log else {
        return Vec::new();
    };
    // The log name is a link to this run's `log.<task>.<pid>`: show that.
    let link = workspace.join(log);
    let path = match std::fs::read_link(&link) {
        Ok(target) => link.with_file_name(target),
        Err(_) => link,
    };
    let mut lines = vec![format!("Logfile of failure stored in: {}", path.display())];
    if tail == 0 {
        return lines;
    }
    match std::fs::read(&path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&last_bytes(&bytes, 64 << 10)).into_owned();
            let all: Vec<&str> = text.lines().collect();
            let shown = &all[all.len().saturating_sub(tail)..];
            if shown.is_empty() {
                lines.push("Log data follows: (the log is empty)".to_string());
            } else {
                lines.push(format!("Log data follows (last {} lines):", shown.len()));
                lines.extend(shown.iter().map(|l| format!("| {l}")));
            }
        }
        Err(e) => lines.push(format!("(cannot read the log: {e})")),
    }
    lines
}

/// The last `n` bytes, so a huge log is not read into lines whole.
fn last_bytes(bytes: &[u8], n: usize) -> Vec<u8> {
    bytes[bytes.len().saturating_sub(n)..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abbreviates_long_chains() {
        let chain = |n: usize| -> Vec<String> { (1..=n).map(|i| format!("t{i}")).collect() };
        assert_eq!(abbreviate(&chain(3)), "t1 -> t2 -> t3");
        assert_eq!(
            abbreviate(&chain(13)),
            "t1 -> t2 -> t3 -> t4 -> t5 -> ... 3 more ... -> t9 -> t10 -> t11 -> t12 -> t13"
        );
    }
}
