//! Expected task durations, for scheduling: what history recorded, else a
//! prior by task name.
//!
//! Knows task ids and numbers; knows nothing of where durations come from
//! (the cache's history, a durations file) or of the plan.

use std::collections::HashMap;

use crate::graph::Graph;

/// The task name of an id: what follows the last `:` (`do_compile` for
/// `zlib:do_compile`), or the whole id.
pub fn task_name(id: &str) -> &str {
    id.rsplit_once(':').map_or(id, |(_, t)| t)
}

/// Typical relative cost of common BitBake tasks, in milliseconds, for tasks
/// nothing is known about. Compiles and image steps dominate Yocto builds;
/// bookkeeping tasks are short.
fn prior_by_name(name: &str) -> u64 {
    match name {
        "do_compile" | "do_rootfs" => 60_000,
        "do_configure" => 20_000,
        "do_install" | "do_package" | "do_image" | "do_image_complete" => 8_000,
        "do_fetch" | "do_unpack" | "do_patch" | "do_populate_lic" => 2_000,
        n if n.starts_with("do_package_write") || n.starts_with("do_image_") => 4_000,
        n if n.starts_with("do_compile") => 20_000,
        _ => 1_000,
    }
}

/// The expected duration of every task: `known[i]` where given; else the
/// median of the known durations of tasks with the same task name; else the
/// built-in prior by name. Never 0, so every task adds to a path.
pub fn expected_durations(graph: &Graph, known: &[Option<u64>]) -> Vec<u64> {
    let mut by_name: HashMap<&str, Vec<u64>> = HashMap::new();
    for (t, k) in graph.tasks.iter().zip(known) {
        if let Some(ms) = k {
            by_name.entry(task_name(&t.id)).or_default().push(*ms);
        }
    }
    let medians: HashMap<&str, u64> = by_name
        .into_iter()
        .map(|(name, mut v)| {
            v.sort_unstable();
            (name, v[v.len() / 2])
        })
        .collect();
    graph
        .tasks
        .iter()
        .zip(known)
        .map(|(t, k)| {
            let name = task_name(&t.id);
            k.or_else(|| medians.get(name).copied())
                .unwrap_or_else(|| prior_by_name(name))
                .max(1)
        })
        .collect()
}

/// The mean of recorded durations, or `None` when there are none.
pub fn mean(durations: &[u64]) -> Option<u64> {
    (!durations.is_empty()).then(|| durations.iter().sum::<u64>() / durations.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_then_median_by_name_then_prior() {
        let g = Graph::parse(
            r#"{"version":1,"tasks":[{"id":"a:do_compile"},{"id":"b:do_compile"},{"id":"c:do_compile"},
              {"id":"d:do_compile"},{"id":"e:do_fetch"},{"id":"odd"}]}"#,
        )
        .unwrap();
        let known = [Some(10), Some(30), Some(20), None, None, None];
        assert_eq!(
            expected_durations(&g, &known),
            vec![10, 30, 20, 20, 2_000, 1_000]
        );
        assert_eq!(task_name("zlib:do_compile"), "do_compile");
        assert_eq!(mean(&[1, 2, 6]), Some(3));
        assert_eq!(mean(&[]), None);
    }
}
