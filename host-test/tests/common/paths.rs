//! Where the end-to-end tests and the benchmarks find what lies outside the
//! host crate: the repository, its release builds, the Yocto data beside it.
//! Knows nothing of running any of them. The benchmarks include this file by
//! `#[path]`, so it uses nothing but std.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The repository root (the guest crate and the workspace).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Where `make build` writes the components.
pub fn wasm_release_dir() -> PathBuf {
    repo().join("target/wasm32-wasip2/release")
}

/// The Yocto task graphs and durations: `$RUNQUEUE_YOCTO_DATA`, else
/// `shared/data/yocto` beside the repository.
pub fn yocto_data() -> PathBuf {
    std::env::var_os("RUNQUEUE_YOCTO_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared/data/yocto"))
}
