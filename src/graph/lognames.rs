//! Where each task's log goes, and that no two tasks' log files meet. A task
//! `recipe:task` logs to `<log_dir>/<recipe>/log.<task>` (BitBake's
//! `${T}/log.do_task`), a task without a colon to `<log_dir>/log.<id>`,
//! with characters unsafe in file names replaced. Next to that link the
//! host writes `log.<task>.<pid>` and `run.<task>.<pid>`.
//!
//! Knows names; knows nothing of files on disk.

use std::collections::HashMap;

use crate::graph::Graph;

/// The log file of task `id` under `log_dir`.
pub fn log_path(log_dir: &str, id: &str) -> String {
    match place(id) {
        (Some(dir), stem) => format!("{log_dir}/{dir}/log.{stem}"),
        (None, stem) => format!("{log_dir}/log.{stem}"),
    }
}

/// The directory (for `recipe:task` ids) and the name stem of a task's log.
fn place(id: &str) -> (Option<String>, String) {
    match id.split_once(':') {
        Some((recipe, task)) => (Some(file_safe(recipe)), file_safe(task)),
        None => (None, file_safe(id)),
    }
}

fn file_safe(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_+.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with('.') {
        out.insert(0, '_');
    }
    out
}

/// `name` as `<stem>.<digits>`: the stem, if so.
fn numbered(name: &str) -> Option<&str> {
    let (stem, n) = name.rsplit_once('.')?;
    (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())).then_some(stem)
}

/// Refuses a graph where two tasks would write the same log files: ids
/// that become the same name, one task's name that is another's plus
/// `.<number>` (its log of that pid), or a recipe directory named like the
/// log or run file of a task without a colon (`log.x:y` and `x`).
pub fn check(graph: &Graph) -> Result<(), String> {
    let mut seen: HashMap<(Option<String>, String), &str> = HashMap::new();
    for t in &graph.tasks {
        if let Some(other) = seen.insert(place(&t.id), &t.id) {
            return Err(clash(other, &t.id));
        }
    }
    for ((dir, stem), id) in &seen {
        let same_dir = |s: &str| seen.get(&(dir.clone(), s.to_string())).copied();
        if let Some(other) = numbered(stem).and_then(same_dir) {
            return Err(clash(other, id));
        }
        let top = |s: &str| seen.get(&(None, s.to_string())).copied();
        let Some(dir) = dir else { continue };
        let other = match dir.split_once('.') {
            Some(("log", rest)) => top(rest).or_else(|| numbered(rest).and_then(top)),
            Some(("run", rest)) => numbered(rest).and_then(top),
            _ => None,
        };
        if let Some(other) = other {
            return Err(clash(other, id));
        }
    }
    Ok(())
}

fn clash(a: &str, b: &str) -> String {
    format!(
        "tasks \"{a}\" and \"{b}\" would write the same log files (ids are made file-safe: \
         characters other than letters, digits and -_+. become _); rename one"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(ids: &[&str]) -> Result<(), String> {
        let tasks: Vec<String> = ids.iter().map(|i| format!(r#"{{"id":"{i}"}}"#)).collect();
        let json = format!(r#"{{"version":1,"tasks":[{}]}}"#, tasks.join(","));
        check(&Graph::parse(&json).unwrap())
    }

    #[test]
    fn log_paths_are_safe() {
        assert_eq!(log_path("L", "a:do_x"), "L/a/log.do_x");
        assert_eq!(log_path("L", "../../etc:passwd"), "L/_.._.._etc/log.passwd");
        assert_eq!(log_path("L", "plain"), "L/log.plain");
        assert_eq!(log_path("L", ":x/y"), "L/_/log.x_y");
    }

    #[test]
    fn tasks_whose_log_files_would_meet_are_refused() {
        assert_eq!(ids(&["a:do_x", "a:do_y", "b:do_x", "x", "y"]), Ok(()));
        for clashing in [
            &["a:b c", "a:b_c"][..],
            &["x", "log.x:y"],
            &["x", "log.x.12:y"],
            &["x", "run.x.12:y"],
            &["r:do_x", "r:do_x.4242"],
            &["x", "x.7"],
        ] {
            let err = ids(clashing).unwrap_err();
            assert!(
                err.contains("would write the same log files"),
                "{clashing:?}: {err}"
            );
        }
    }
}
