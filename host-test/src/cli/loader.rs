//! Finding and loading the component: `--component`, `$RUNQUEUE_COMPONENT`,
//! next to this program, or the cargo build output; and its remote-cache
//! sibling.
//!
//! Knows files and the compiled component; knows nothing of graphs.

use std::path::{Path, PathBuf};

use runqueue::cli::EXIT_INTERNAL;

use super::failure::Failure;
use crate::Runqueue;

/// The environment variable naming the component file.
pub const COMPONENT_ENV: &str = "RUNQUEUE_COMPONENT";

/// The build of the component with the remote cache (wasi:http), found
/// next to the plain one.
pub const REMOTE_COMPONENT: &str = "runqueue-remote.wasm";

/// Finds and loads the component, once the input has been read.
pub(super) struct Loader {
    pub(super) component: Option<PathBuf>,
    /// The memory cap, in MiB.
    pub(super) max_memory: u64,
}

impl Loader {
    /// The component (its remote-cache build when `remote`).
    pub(super) fn load(&self, remote: bool) -> Result<Runqueue, Failure> {
        let explicit = self.component.as_deref();
        let path = find_component(explicit).map_err(|m| Failure(EXIT_INTERNAL, m))?;
        // The remote cache speaks wasi:http: the build of the component
        // that imports it lies next to the plain one.
        let path = match remote && explicit.is_none() {
            true => remote_sibling(&path)?,
            false => path,
        };
        let mut rq = Runqueue::load(&path).map_err(|e| Failure(EXIT_INTERNAL, format!("{e:#}")))?;
        rq.set_memory_limit((self.max_memory as usize) << 20);
        Ok(rq)
    }
}

pub(super) fn remote_sibling(plain: &Path) -> Result<PathBuf, Failure> {
    let sibling = plain.with_file_name(REMOTE_COMPONENT);
    if !sibling.is_file() {
        let msg = format!(
            "--remote-cache needs {} (make build makes it)",
            sibling.display()
        );
        return Err(Failure(EXIT_INTERNAL, msg));
    }
    Ok(sibling)
}

/// The component: `explicit`, else `$RUNQUEUE_COMPONENT`, else
/// `runqueue.wasm` next to this program, else where `cargo build --target
/// wasm32-wasip2` puts it relative to this program in the same target
/// directory (release first).
pub fn find_component(explicit: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os(COMPONENT_ENV) {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot locate this program: {e}"))?;
    let mut candidates = Vec::new();
    for dir in exe.ancestors().skip(1).take(3) {
        candidates.push(dir.join("runqueue.wasm"));
        for profile in ["release", "debug"] {
            candidates.push(
                dir.join("wasm32-wasip2")
                    .join(profile)
                    .join("runqueue.wasm"),
            );
        }
    }
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| {
            format!(
                "cannot find the runqueue component (runqueue.wasm): build it with `make build`, \
             or give --component FILE or ${COMPONENT_ENV}"
            )
        })
}
