//! Embedding with the library's pieces, as the README's "Embedding" shows:
//! an own engine, store and linker, `add_to_linker`, `HostState`, and the
//! typed entry point.

mod common;

use std::sync::{Arc, Mutex};

use runqueue_host::bindings::exports::runqueue::executor::runner::Options;
use runqueue_host::bindings::Executor;
use runqueue_host::{add_to_linker, Event, HostState, Scheduler, TaskState, Workspace};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, Store};

#[test]
fn an_embedder_runs_a_graph_with_its_own_store_and_linker() {
    let ws = common::Ws::new();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let report: wasmtime::Result<runqueue_host::Report> = rt.block_on(async move {
        let engine = Engine::new(&Config::new())?;
        let component = Component::from_file(&engine, common::component_path())?;
        let mut linker = Linker::new(&engine);
        add_to_linker(&mut linker)?;
        let workspace = Workspace::open(ws.path())?;
        let state = HostState::new(&workspace, move |e| sink.lock().unwrap().push(e))?;
        let mut store = Store::new(&engine, state);
        store.limiter(HostState::limiter);
        let runqueue = Executor::instantiate_async(&mut store, &component, &linker).await?;
        let options = Options {
            max_parallel: Some(2),
            keep_going: false,
            cache_dir: Some(".runqueue/cache".into()),
            scheduler: Scheduler::CriticalPath,
            log_dir: None,
            timeout_ms: None,
            remote_cache: None,
            signing_key: None,
            trusted_keys: Vec::new(),
            no_cutoff: false,
            check_reproducible: false,
            memory_limit: None,
        };
        let graph = r#"{"version":1,"tasks":[
            {"id":"a","run":"echo a > a.txt","outputs":["a.txt"]},
            {"id":"b","deps":["a"],"run":"cat a.txt > b.txt","outputs":["b.txt"]}]}"#;
        let report = runqueue
            .runqueue_executor_runner()
            .call_run(&mut store, graph, &options)
            .await?
            .expect("a valid graph");
        assert_eq!(std::fs::read_to_string(ws.join("b.txt")).unwrap(), "a\n");
        // Again, with the final output gone: the host's `files` restores it.
        std::fs::remove_file(ws.join("b.txt")).unwrap();
        let again = runqueue
            .runqueue_executor_runner()
            .call_run(&mut store, graph, &options)
            .await?
            .expect("a valid graph");
        assert_eq!(again.totals.cached, 2, "{again:?}");
        assert_eq!(std::fs::read_to_string(ws.join("b.txt")).unwrap(), "a\n");
        Ok(report)
    });
    let report = report.expect("runs");
    assert_eq!(report.totals.succeeded, 2);
    assert!(report.tasks.iter().all(|t| t.state == TaskState::Succeeded));
    let started = events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, Event::Started(_)))
        .count();
    assert_eq!(started, 2, "progress events reach the embedder");
}
