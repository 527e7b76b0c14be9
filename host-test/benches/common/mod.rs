//! Shared by the benchmarks: where things are (the end-to-end tests'
//! `common/paths.rs`) and the markdown report each appends to. Knows
//! nothing of what is measured.

#![allow(dead_code)]

use std::io::Write as _;
use std::path::{Path, PathBuf};

#[path = "../../tests/common/paths.rs"]
mod paths;
pub mod runners;
#[path = "../../tests/common/service.rs"]
pub mod service;
pub use paths::*;

/// The component the CLI and the service run: `$RUNQUEUE_COMPONENT`, else
/// the release build.
pub fn component_path() -> PathBuf {
    std::env::var_os("RUNQUEUE_COMPONENT")
        .map(PathBuf::from)
        .unwrap_or_else(|| wasm_release_dir().join("runqueue.wasm"))
}

/// The report file: the first argument that is not an option (`cargo
/// bench` passes `--bench`), else `target/bench-report.md`.
pub fn report_path() -> PathBuf {
    std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/bench-report.md"))
}

/// Prints and appends what is in `md`, then empties it, so partial results
/// survive.
pub fn flush(report: &Path, md: &mut String) {
    print!("{md}");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(report)
        .unwrap();
    f.write_all(md.as_bytes()).unwrap();
    md.clear();
}
