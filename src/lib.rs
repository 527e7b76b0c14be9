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
//!   ([`schedule::plan`]).
//! - **A failed task's dependents never run**; without keep-going nothing new
//!   starts after the first failure ([`schedule::plan::Plan::finish`]).
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

pub mod api;
pub mod cache;
pub mod cli;
pub mod graph;
pub mod remote;
pub mod run;
pub mod schedule;
pub mod seams;

#[cfg(target_arch = "wasm32")]
mod command;
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)] // the bindings' generated export glue
mod component;
