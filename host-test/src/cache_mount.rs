//! Where the component finds the artifact cache: inside the workspace
//! preopen, or a directory of its own preopened as [`CACHE_GUEST_DIR`]; and
//! the directories a build made for a missing one, removed again when the
//! build refuses its input.
//!
//! Knows paths and the workspace; knows nothing of wasmtime or the cache's
//! contents.

use std::path::{Path, PathBuf};

use crate::Workspace;

/// Where the component sees a cache directory that lies outside the
/// workspace.
pub const CACHE_GUEST_DIR: &str = "/cache";

/// Where the component finds the cache, and what the host must preopen for
/// it.
#[derive(Clone)]
pub(crate) struct CacheMount {
    pub(crate) guest_path: String,
    preopen: Option<PathBuf>,
}

impl CacheMount {
    /// The cache's own directory on the host, when it is preopened apart
    /// from the workspace; `None` when it lies inside the workspace.
    pub(crate) fn host_dir(&self) -> Option<&Path> {
        self.preopen.as_deref()
    }
}

/// A relative cache path without `..` stays in the workspace preopen; any
/// other is preopened on its own. A missing one is made when `make` (a
/// build, which stores), with the directories made for it; else (a call
/// that only reads) nothing is made and the component sees an empty cache.
pub(crate) fn cache_mount(
    cache: &Path,
    ws: &Workspace,
    make: bool,
) -> wasmtime::Result<(CacheMount, MadeDirs)> {
    use wasmtime::error::Context;
    let rel = cache.to_str().filter(|s| {
        cache.is_relative()
            && !cache
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
            && !s.is_empty()
    });
    let mount = |preopen| CacheMount {
        guest_path: rel.unwrap_or(CACHE_GUEST_DIR).to_string(),
        preopen,
    };
    if rel.is_some() {
        return Ok((mount(None), MadeDirs::default()));
    }
    let host = ws.root().join(cache);
    if !make && !host.exists() {
        // Nothing is preopened at the guest path: every read misses.
        return Ok((mount(None), MadeDirs::default()));
    }
    let made = MadeDirs::make(&host)
        .with_context(|| format!("cannot create the cache directory {}", host.display()))?;
    let real = std::fs::canonicalize(&host)?;
    Ok((mount(Some(real)), made))
}

/// Directories made for a cache, outermost first: removed again (those
/// still empty) when the call they were made for refuses its input, so
/// that bad input leaves nothing behind.
#[derive(Debug, Default)]
#[must_use]
pub(crate) struct MadeDirs(Vec<PathBuf>);

impl MadeDirs {
    fn make(dir: &Path) -> std::io::Result<MadeDirs> {
        let missing = dir.ancestors().take_while(|a| !a.exists());
        let mut made: Vec<PathBuf> = missing.map(Path::to_path_buf).collect();
        made.reverse();
        let made = MadeDirs(made);
        match std::fs::create_dir_all(dir) {
            Ok(()) => Ok(made),
            Err(e) => {
                made.remove();
                Err(e)
            }
        }
    }

    /// Removes the directories made, innermost first, unless something
    /// was put in them meanwhile.
    pub(crate) fn remove(self) {
        for dir in self.0.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}
