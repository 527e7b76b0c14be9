//! The native host for the runqueue component: real processes through
//! `process`, progress events through `progress`, the component loaded once
//! and run per call.
//!
//! Embedding runqueue in a Rust program takes three steps:
//!
//! ```no_run
//! # async fn demo() -> wasmtime::Result<()> {
//! use runqueue_host::{Runqueue, Workspace, RunOptions};
//! let rq = Runqueue::load(std::path::Path::new("runqueue.wasm"))?;
//! let ws = Workspace::open(std::path::Path::new("."))?;
//! let graph = std::fs::read_to_string("graph.json")?;
//! let options = RunOptions { max_parallel: Some(4), ..Default::default() };
//! let report = rq.run(&graph, &options, &ws, |_event| {}).await?;
//! # Ok(()) }
//! ```
//!
//! A host that keeps its own engine, store and linker (a build service
//! running many components) uses the pieces instead: [`add_to_linker`]
//! provides WASI and `process`/`types`/`progress` (real processes),
//! [`HostState`] is the store data, and [`bindings::Executor`] is the typed
//! entry point:
//!
//! ```no_run
//! # async fn demo() -> wasmtime::Result<()> {
//! use runqueue_host::{add_to_linker, bindings::Executor, HostState, Workspace};
//! use runqueue_host::bindings::exports::runqueue::executor::runner::Options;
//! use wasmtime::{component::{Component, Linker}, Config, Engine, Store};
//!
//! let engine = Engine::new(&Config::new())?;
//! let component = Component::from_file(&engine, "runqueue.wasm")?;
//! let mut linker = Linker::new(&engine);
//! add_to_linker(&mut linker)?;
//!
//! let ws = Workspace::open(std::path::Path::new("build"))?;
//! let mut store = Store::new(&engine, HostState::new(&ws, |event| println!("{event:?}"))?);
//! store.limiter(HostState::limiter);
//! let runqueue = Executor::instantiate_async(&mut store, &component, &linker).await?;
//! let options = Options {
//!     max_parallel: Some(8),
//!     keep_going: false,
//!     cache_dir: Some(".runqueue/cache".into()),
//!     scheduler: runqueue_host::Scheduler::CriticalPath,
//!     log_dir: None,
//!     timeout_ms: None,
//!     remote_cache: None,
//!     signing_key: None,
//!     trusted_keys: Vec::new(),
//!     no_cutoff: false,
//!     check_reproducible: false,
//!     memory_limit: None,
//! };
//! let graph = std::fs::read_to_string("build/graph.json")?;
//! match runqueue.runqueue_executor_runner().call_run(&mut store, &graph, &options).await? {
//!     Ok(report) => println!("{} failed", report.totals.failed),
//!     Err(e) => eprintln!("bad graph: {e:?}"),
//! }
//! # Ok(()) }
//! ```
//!
//! Knows how to host the component; knows nothing of graphs or scheduling,
//! which are the component's.

#![deny(unsafe_code)]

mod cache_mount;
pub mod cli;
mod compile;
mod component;
pub mod console;
mod files;
pub mod http_origin;
mod options;
pub mod outputs;
mod pipes;
pub mod process;
pub mod reapi;
pub mod remote_run;
pub mod serve;
mod spawned;
mod state;
pub mod worker;
pub mod workspace_lock;

pub use cache_mount::CACHE_GUEST_DIR;
pub use compile::compile_cache_dir;
pub use component::{CallError, CallResult, Runqueue, DEFAULT_MEMORY_LIMIT};
pub use http_origin::RemoteCache;
pub use options::{
    from_wit_error, from_wit_simulation, from_wit_summary, to_wit_scheduler, Controls, RunOptions,
};
pub use process::{ChildProcess, Workspace};
pub use state::{add_to_linker, HostState, MemoryCap};

/// Bindings for the `executor` world, generated from `wit/`.
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "executor",
        imports: { default: trappable },
        exports: { default: async },
        additional_derives: [PartialEq],
        with: {
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "runqueue:executor/process.child": crate::spawned::Spawned,
            "runqueue:executor/files.job": crate::files::FilesJob,
        },
    });
}

use bindings::exports::runqueue::executor::runner;
pub use bindings::runqueue::executor::process::{ExitStatus, SpawnError};
pub use bindings::runqueue::executor::progress::Event;
pub use bindings::runqueue::executor::types::{Report, TaskReport, TaskState, Totals};
pub use runner::{
    Error as RunError, ImportOptions, Scheduler, SimulateOptions, Simulation, Summary,
};

/// The default cache directory, relative to the workspace.
pub const DEFAULT_CACHE: &str = runqueue::cli::DEFAULT_CACHE;
