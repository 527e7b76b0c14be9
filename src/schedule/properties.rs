//! Property tests of the plan: random DAGs, durations, failures, limits and
//! pools, driven on a virtual clock. Whatever the input, the scheduling
//! rules hold.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};

use crate::graph::{Graph, TaskId};
use crate::schedule::plan::{Plan, Policy, SkipReason, TaskState};
use proptest::prelude::*;

/// A random graph: each task depends on a few earlier ones; some tasks
/// are in a pool.
fn graph_text(n: usize, deps: &[Vec<usize>], pools: &[Option<u8>], depth: u32) -> String {
    let tasks: Vec<String> = (0..n)
        .map(|i| {
            let d: Vec<String> = deps[i]
                .iter()
                .filter(|&&j| j < i)
                .map(|j| format!("\"t{j}\""))
                .collect();
            let pool = match pools[i] {
                Some(p) => format!(",\"pool\":\"p{}\"", p % 2),
                None => String::new(),
            };
            format!("{{\"id\":\"t{i}\",\"deps\":[{}]{pool}}}", d.join(","))
        })
        .collect();
    format!(
        "{{\"version\":1,\"pools\":{{\"p0\":{depth},\"p1\":1}},\"tasks\":[{}]}}",
        tasks.join(",")
    )
}

#[derive(Debug, Clone)]
struct Case {
    text: String,
    durations: Vec<u64>,
    failing: BTreeSet<usize>,
    max: usize,
    keep_going: bool,
    policy: Policy,
}

fn cases() -> impl Strategy<Value = Case> {
    (1usize..40).prop_flat_map(|n| {
        (
            proptest::collection::vec(proptest::collection::vec(0..n, 0..4), n),
            proptest::collection::vec(proptest::option::of(0u8..4), n),
            1u32..4,
            proptest::collection::vec(1u64..50, n),
            proptest::collection::btree_set(0..n, 0..4),
            1usize..6,
            any::<bool>(),
            prop_oneof![
                Just(Policy::CriticalPath),
                Just(Policy::Speed),
                Just(Policy::Fifo),
                Just(Policy::Waves)
            ],
        )
            .prop_map(
                move |(deps, pools, depth, durations, failing, max, keep_going, policy)| Case {
                    text: graph_text(n, &deps, &pools, depth),
                    durations,
                    failing,
                    max,
                    keep_going,
                    policy,
                },
            )
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 300,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn scheduling_rules_hold(case in cases()) {
        let g = Graph::parse(&case.text).unwrap();
        let mut plan = Plan::new(&g, case.policy, case.policy.priorities(&g, &case.durations), case.max, case.keep_going);
        let mut ends: BinaryHeap<Reverse<(u64, TaskId)>> = BinaryHeap::new();
        let mut started = vec![false; g.len()];
        let mut succeeded = vec![false; g.len()];
        let mut now = 0;
        loop {
            while let Some(id) = plan.start_next() {
                // Never twice, never before every dependency succeeded.
                prop_assert!(!started[id.index()]);
                started[id.index()] = true;
                for d in &g.task(id).deps {
                    prop_assert!(succeeded[d.index()], "{} started before {}", id.0, d.0);
                }
                ends.push(Reverse((now + case.durations[id.index()], id)));
            }
            // Limits: global and per pool.
            prop_assert!(ends.len() <= case.max);
            for (p, pool) in g.pools.iter().enumerate() {
                let in_pool = ends.iter().filter(|Reverse((_, id))| g.task(*id).pool == Some(p)).count();
                prop_assert!(in_pool <= pool.depth as usize);
            }
            if plan.is_done() {
                break;
            }
            let Reverse((t, id)) = ends.pop().expect("something runs");
            now = t;
            let ok = !case.failing.contains(&id.index());
            succeeded[id.index()] = ok;
            plan.finish(id, ok);
        }
        plan.close();
        // Every task ends in exactly one final state, matching what ran.
        let mut downstream_of_failure = vec![false; g.len()];
        for &id in &g.topo_order {
            let i = id.index();
            downstream_of_failure[i] = g.task(id).deps.iter().any(|d| {
                downstream_of_failure[d.index()] || (started[d.index()] && !succeeded[d.index()])
            });
        }
        for id in g.ids() {
            let i = id.index();
            match plan.state(id) {
                TaskState::Succeeded => prop_assert!(started[i] && succeeded[i]),
                TaskState::Failed => prop_assert!(started[i] && !succeeded[i]),
                TaskState::Skipped(SkipReason::DependencyFailed(_)) => {
                    prop_assert!(!started[i] && downstream_of_failure[i])
                }
                TaskState::Skipped(_) => prop_assert!(!started[i] && !case.keep_going),
                other => prop_assert!(false, "task {} left {:?}", i, other),
            }
            // Dependents of failures never run.
            if downstream_of_failure[i] {
                prop_assert!(!started[i]);
            }
            // With keep-going, everything not downstream of a failure ran
            // and succeeded unless it was meant to fail.
            if case.keep_going && !downstream_of_failure[i] {
                prop_assert!(started[i]);
                prop_assert_eq!(succeeded[i], !case.failing.contains(&i));
            }
        }
    }
}
