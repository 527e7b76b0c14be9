//! Compiling the component once: machine code kept on disk, keyed by the
//! component's sha256 and the engine's settings. Knows files and engines;
//! knows nothing of what the component does.

use std::path::{Path, PathBuf};

use wasmtime::component::Component;
use wasmtime::Engine;

/// Where compiled components are kept: `$RUNQUEUE_COMPILE_CACHE`, else
/// `$XDG_CACHE_HOME/runqueue`, else `~/.cache/runqueue`. Setting
/// `RUNQUEUE_COMPILE_CACHE` to the empty string turns the cache off.
pub fn compile_cache_dir() -> Option<PathBuf> {
    match std::env::var_os("RUNQUEUE_COMPILE_CACHE") {
        Some(d) if d.is_empty() => None,
        Some(d) => Some(PathBuf::from(d)),
        None => std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .map(|d| d.join("runqueue")),
    }
}

/// The component from `dir` if this exact component was compiled there by
/// this engine before; otherwise compiles it and stores the result (through
/// a temporary file and a rename). A cache that cannot be written only
/// costs the compile.
pub(crate) fn load_cached(engine: &Engine, wasm: &[u8], dir: &Path) -> wasmtime::Result<Component> {
    use sha2::{Digest, Sha256};
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    let key = format!("{:x}-{:016x}", Sha256::digest(wasm), h.finish());
    let file = dir.join(format!("{key}.cwasm"));
    if file.is_file() {
        // SAFETY: the file is one this function wrote from a component with
        // this sha256 for an engine with these settings, in the user's own
        // cache directory; wasmtime also checks the engine compatibility.
        #[allow(unsafe_code)]
        if let Ok(c) = unsafe { Component::deserialize_file(engine, &file) } {
            return Ok(c);
        }
    }
    let component = Component::new(engine, wasm)?;
    if let Ok(bytes) = component.serialize() {
        let tmp = dir.join(format!(".{key}.{}.tmp", std::process::id()));
        let stored = std::fs::create_dir_all(dir)
            .and_then(|_| std::fs::write(&tmp, bytes))
            .and_then(|_| std::fs::rename(&tmp, &file));
        if stored.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }
    Ok(component)
}
