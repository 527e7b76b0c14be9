//! A fuzz harness for the graph parser and validator, built on proptest so
//! it runs on stable Rust: random bytes, random byte edits of a valid graph,
//! and random graph-shaped JSON with hostile values. Whatever the input,
//! `Graph::parse` returns (never panics), an accepted graph keeps every
//! promise the rest of runqueue relies on, and a refused one says why in a
//! bounded message (a cycle it names is a real cycle).
//!
//! `make test` runs a few hundred cases per property; `make fuzz` runs
//! `$RUNQUEUE_FUZZ_CASES` (default 20,000 there).

use std::collections::{HashMap, HashSet};

use proptest::prelude::*;
use serde_json::{json, Value};

use crate::graph::{is_contained, normalize, Action, Graph, GraphError, MAX_ID_BYTES};

fn config() -> ProptestConfig {
    let cases = std::env::var("RUNQUEUE_FUZZ_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(300);
    ProptestConfig {
        cases,
        max_shrink_iters: 2000,
        // A failure prints its minimal input; no regression files at the
        // top of the repository.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Parses `text` and checks the result, whichever it is.
fn check(text: &str) -> Result<(), TestCaseError> {
    match Graph::parse(text) {
        Ok(g) => accepted(&g),
        Err(e) => refused(text, &e),
    }
}

/// What an accepted graph promises.
fn accepted(g: &Graph) -> Result<(), TestCaseError> {
    let mut ids = HashSet::new();
    for t in &g.tasks {
        prop_assert!(!t.id.is_empty(), "empty id");
        prop_assert!(t.id.len() <= MAX_ID_BYTES);
        prop_assert!(
            !t.id.chars().any(char::is_control),
            "control char in {:?}",
            t.id
        );
        prop_assert!(ids.insert(t.id.as_str()), "duplicate id {:?}", t.id);
        prop_assert!(is_contained(&t.cwd), "cwd {:?}", t.cwd);
        match &t.action {
            Action::Shell(run) => prop_assert!(!run.contains('\0'), "NUL in run"),
            Action::Argv(argv) => {
                prop_assert!(!argv.is_empty());
                prop_assert!(argv.iter().all(|a| !a.contains('\0')), "NUL in argv");
            }
            Action::Nothing => {}
        }
        prop_assert!(!t.cwd.contains('\0'));
        for p in t.inputs.iter().chain(&t.outputs) {
            prop_assert!(!p.is_empty() && !p.contains('\0'), "path {:?}", p);
            let normal = normalize(p);
            prop_assert_eq!(normal.as_deref(), Some(p.as_str()), "not normalized");
        }
        for (k, v) in g.env.iter().chain(&t.env) {
            prop_assert!(!k.is_empty() && !k.contains('=') && !k.contains('\0'));
            prop_assert!(!v.contains('\0'));
        }
        if let Some(ms) = t.timeout_ms {
            prop_assert!(ms > 0);
        }
        if let Some(p) = t.pool {
            prop_assert!(p < g.pools.len());
        }
        prop_assert!(
            t.deps.windows(2).all(|w| w[0] < w[1]),
            "deps sorted, unique"
        );
    }
    // The order is a permutation with every dependency first.
    prop_assert_eq!(g.topo_order.len(), g.tasks.len());
    let mut position = vec![usize::MAX; g.tasks.len()];
    for (at, id) in g.topo_order.iter().enumerate() {
        prop_assert_eq!(position[id.index()], usize::MAX, "listed twice");
        position[id.index()] = at;
    }
    for (i, t) in g.tasks.iter().enumerate() {
        for d in &t.deps {
            prop_assert!(d.index() != i);
            prop_assert!(
                position[d.index()] < position[i],
                "dependency after dependent"
            );
            prop_assert!(g.dependents[*d].iter().any(|x| x.index() == i));
        }
    }
    Ok(())
}

/// What a refusal promises: a message of bounded length, and a named cycle
/// that exists in the text.
fn refused(text: &str, e: &GraphError) -> Result<(), TestCaseError> {
    let msg = e.to_string();
    prop_assert!(!msg.is_empty());
    prop_assert!(
        msg.len() <= 16 * MAX_ID_BYTES,
        "message of {} bytes",
        msg.len()
    );
    if let GraphError::Cycle(path) = e {
        let v: Value = serde_json::from_str(text).expect("a cycle comes from valid JSON");
        let deps: HashMap<&str, Vec<&str>> = v["tasks"]
            .as_array()
            .expect("tasks")
            .iter()
            .map(|t| {
                let deps = t["deps"]
                    .as_array()
                    .map_or(Vec::new(), |d| d.iter().filter_map(Value::as_str).collect());
                (t["id"].as_str().expect("id"), deps)
            })
            .collect();
        prop_assert!(path.len() >= 3, "a cycle has two tasks at least");
        prop_assert_eq!(path.first(), path.last());
        for pair in path.windows(2) {
            prop_assert!(
                deps[pair[0].as_str()].contains(&pair[1].as_str()),
                "{} does not depend on {}",
                pair[0],
                pair[1]
            );
        }
    }
    Ok(())
}

/// Strings chosen to hit the validator's edges.
fn hostile_string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just(".".to_string()),
        Just("..".to_string()),
        Just("/".to_string()),
        Just("a/../..".to_string()),
        Just("a//b/./c".to_string()),
        Just("\0".to_string()),
        Just("A=B".to_string()),
        Just("x\ny".to_string()),
        Just("é/ü".to_string()),
        Just("t0".to_string()),
        Just("t1".to_string()),
        Just("t2".to_string()),
        "[a-z/.]{0,12}",
        ".{0,8}",
    ]
}

/// A JSON value of any type, small.
fn any_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        hostile_string().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(hostile_string(), inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A field of a task: usually the right type with a hostile value,
/// sometimes any value at all.
fn task_field() -> impl Strategy<Value = (String, Value)> {
    let strings = prop::collection::vec(hostile_string(), 0..3).prop_map(Value::from);
    let name = prop_oneof![
        Just("deps"),
        Just("run"),
        Just("argv"),
        Just("cwd"),
        Just("env"),
        Just("inputs"),
        Just("outputs"),
        Just("nostamp"),
        Just("pool"),
        Just("timeout"),
        Just("depends"),
    ];
    (name, strings, hostile_string(), any_value(), any::<bool>()).prop_map(
        |(name, strings, s, any, typed)| {
            let value = if !typed {
                any
            } else {
                match name {
                    "deps" | "argv" | "inputs" | "outputs" => strings,
                    "env" => json!({ s.clone(): s }),
                    "nostamp" => json!(true),
                    "timeout" => json!(s.len() as f64 - 2.5),
                    _ => Value::from(s),
                }
            };
            (name.to_string(), value)
        },
    )
}

fn graph_value() -> impl Strategy<Value = Value> {
    let task = (
        prop_oneof![hostile_string(), "t[0-9]"],
        prop::collection::vec(task_field(), 0..4),
    )
        .prop_map(|(id, fields)| {
            let mut t = serde_json::Map::new();
            t.insert("id".into(), Value::from(id));
            t.extend(fields);
            Value::Object(t)
        });
    (
        prop::collection::vec(task, 0..8),
        prop::collection::btree_map(hostile_string(), 0u32..3, 0..2),
        prop::collection::btree_map(hostile_string(), hostile_string(), 0..2),
        prop_oneof![4 => Just(json!(1)), 1 => any_value()],
    )
        .prop_map(|(tasks, pools, env, version)| {
            json!({"version": version, "pools": pools, "env": env, "tasks": tasks})
        })
}

/// A valid graph with a little of everything, to edit bytes of.
const SEED: &str = r#"{"version":1,"env":{"LANG":"C"},"pools":{"net":2},"tasks":[
 {"id":"zlib:do_fetch","run":"echo fetch","pool":"net","outputs":["downloads/zlib.tar"]},
 {"id":"zlib:do_compile","deps":["zlib:do_fetch"],"argv":["make","-C","zlib"],"cwd":"work/zlib",
  "inputs":["src/zlib"],"outputs":["work/zlib/out"],"env":{"CC":"gcc"},"timeout":60},
 {"id":"app:do_compile","deps":["zlib:do_compile"],"run":"cc -o app app.c","nostamp":true},
 {"id":"image","deps":["app:do_compile","zlib:do_compile"]}]}"#;

/// One byte edit: delete, insert or replace at a position.
fn edit() -> impl Strategy<Value = (usize, u8, u8)> {
    (any::<usize>(), 0u8..3, any::<u8>())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        check(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn edited_graphs_are_accepted_whole_or_refused_clearly(
        edits in prop::collection::vec(edit(), 1..6),
    ) {
        let mut bytes = SEED.as_bytes().to_vec();
        for (at, kind, byte) in edits {
            let at = at % (bytes.len() + 1);
            match kind {
                0 if at < bytes.len() => { bytes.remove(at); }
                1 => bytes.insert(at, byte),
                _ if at < bytes.len() => bytes[at] = byte,
                _ => {}
            }
        }
        check(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn hostile_graph_shaped_json_is_accepted_whole_or_refused_clearly(v in graph_value()) {
        check(&v.to_string())?;
    }

    #[test]
    fn random_dependency_graphs_are_sorted_or_a_real_cycle_is_named(
        edges in prop::collection::vec((0usize..12, 0usize..12), 0..30),
    ) {
        let tasks: Vec<Value> = (0..12)
            .map(|i| {
                let deps: Vec<String> = edges
                    .iter()
                    .filter(|(a, b)| *a == i && a != b)
                    .map(|(_, b)| format!("t{b}"))
                    .collect();
                json!({"id": format!("t{i}"), "deps": deps})
            })
            .collect();
        let text = json!({"version": 1, "tasks": tasks}).to_string();
        check(&text)?;
        // An independent oracle: repeatedly remove tasks whose dependencies
        // are all removed; a cycle is what remains.
        let mut left: HashSet<usize> = (0..12).collect();
        loop {
            let free: Vec<usize> = left
                .iter()
                .copied()
                .filter(|&a| !edges.iter().any(|&(x, b)| x == a && x != b && left.contains(&b)))
                .collect();
            if free.is_empty() {
                break;
            }
            for a in free {
                left.remove(&a);
            }
        }
        prop_assert_eq!(Graph::parse(&text).is_ok(), left.is_empty());
    }
}

#[test]
fn the_seed_is_a_valid_graph() {
    let g = Graph::parse(SEED).expect("valid");
    assert_eq!(g.len(), 4);
}
