//! runqueue: BitBake's task runqueue as a WASI 0.2 component.
//!
//! A task graph goes in; every task whose dependencies have succeeded runs as
//! an external process, as many at once as allowed; a report comes out.
//!
//! # Design decisions
//! - **Parallelism comes from the host.** A component has one thread, so it
//!   never blocks: the host's `process.spawn` returns a `child` whose
//!   `subscribe()` pollable the component awaits through wstd's reactor,
//!   together with every other running child.
//! - **A dynamic ready queue, never waves.** A free slot is filled the moment
//!   any task ends, by the ready task with the longest remaining path
//!   ([`plan`]).
//! - **A failed task's dependents never run**; without keep-going nothing new
//!   starts after the first failure ([`plan::Plan::finish`]).
//! - **Logic is plain Rust.** [`api`] is runqueue as a plain-Rust API on
//!   plain types; everything under it compiles and tests natively. The WIT
//!   export in `component` (wasm only) only converts types and calls
//!   [`api`]; the component's `wasi:cli/run` in `command` parses its
//!   arguments with [`cli`] (the vocabulary the host's command line shares)
//!   and calls [`api`] too.
//! - **One seam per concern** ([`seams`]): processes with a clock and an
//!   interrupt, progress, file modes; the remote cache's is
//!   [`remote::Remote`].

#![deny(unsafe_code)]

pub mod admit;
pub mod api;
pub mod blobs;
pub mod cache;
pub mod cli;
pub mod confine;
pub mod cutoff;
pub mod digest;
pub mod estimate;
pub mod graph;
#[cfg(test)]
mod graph_fuzz;
pub mod import;
pub mod journal;
pub mod lognames;
pub mod overlap;
pub mod plan;
#[cfg(test)]
mod plan_properties;
pub mod remote;
pub mod report;
pub mod reproducible;
pub mod reuse;
pub mod seams;
pub mod signature;
pub mod signing;
pub mod simulate;
pub mod wfile;
pub mod work;

#[cfg(target_arch = "wasm32")]
mod command;
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)] // the bindings' generated export glue
mod component;
#[cfg(all(target_arch = "wasm32", feature = "remote-cache"))]
mod http_remote;
