//! Scheduling: which ready task a free slot takes (the duration-weighted
//! critical path, [`plan`]), whether it may start now (slots, pools,
//! memory: [`admit`]), how long tasks are expected to take ([`estimate`]),
//! and the same scheduler against a virtual clock ([`simulate`]).
//!
//! Knows the graph and durations; knows nothing of processes, files or the
//! cache's layout.

pub mod admit;
pub mod estimate;
pub mod plan;
#[cfg(test)]
mod properties;
pub mod simulate;
