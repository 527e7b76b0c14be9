//! Keeping paths inside the workspace, as the component sees it: task
//! paths and the log directory may not lead out through a symlink that
//! exists now. Lexical checks (absolute, `..`) are the graph's; the host
//! checks again, after resolving symlinks, when it starts each process.
//!
//! Knows paths and the file system; knows nothing of the cache or of
//! processes.

use std::fs;
use std::path::Path;

use crate::graph::{is_within, normalize, Graph};

/// Where task logs go unless told otherwise, relative to the workspace.
pub const DEFAULT_LOG_DIR: &str = ".runqueue/logs";

/// The log directory `dir` (default [`DEFAULT_LOG_DIR`]), normalized;
/// refused if it is absolute, climbs out, names the workspace itself or
/// leads out through a symlink.
pub fn log_dir(ws: &Path, dir: Option<&str>) -> Result<String, String> {
    let Some(dir) = dir else {
        return Ok(DEFAULT_LOG_DIR.to_string());
    };
    let dir = match normalize(dir) {
        Some(d) if !d.is_empty() => d,
        _ => {
            return Err(format!(
                "log directory \"{dir}\" leaves the workspace (use a relative path without \"..\")"
            ))
        }
    };
    match escaping_symlink(ws, &dir) {
        Some(link) => Err(format!(
            "log directory \"{dir}\" leads out of the workspace through symlink \"{link}\""
        )),
        None => Ok(dir),
    }
}

/// Refuses task inputs and outputs inside `dir` (the cache or the log
/// directory, as the guest names it, when inside the workspace): a task
/// must not read or overwrite runqueue's own files.
pub fn check_kept_apart(graph: &Graph, dir: &str, what: &str) -> Result<(), String> {
    let Some(dir) = normalize(dir).filter(|d| !d.is_empty()) else {
        return Ok(()); // absolute: outside the workspace
    };
    let inside = |p: &str| is_within(p, &dir);
    for task in &graph.tasks {
        let paths = task.inputs.iter().map(|p| ("input", p));
        if let Some((field, path)) = paths
            .chain(task.outputs.iter().map(|p| ("output", p)))
            .find(|(_, p)| inside(p))
        {
            return Err(format!(
                "task \"{}\": {field} \"{path}\" is inside the {what} \"{dir}\"",
                task.id
            ));
        }
    }
    Ok(())
}

/// Refuses task paths (cwd, inputs, outputs) that lead out of the workspace
/// through a symlink. Looks only at what exists now; the host checks again
/// when it starts each process.
pub fn check_paths(graph: &Graph, ws: &Path) -> Result<(), String> {
    for task in &graph.tasks {
        let fields = std::iter::once(("cwd", &task.cwd))
            .chain(task.inputs.iter().map(|p| ("input", p)))
            .chain(task.outputs.iter().map(|p| ("output", p)));
        for (field, path) in fields {
            if let Some(link) = escaping_symlink(ws, path) {
                return Err(format!(
                    "task \"{}\": {field} \"{path}\" leads out of the workspace through symlink \"{link}\"",
                    task.id
                ));
            }
        }
    }
    Ok(())
}

/// Whether a symlink at `rel` pointing to `target` leads out of the
/// workspace (lexically, from where the link is). WASI cannot read a link
/// to an absolute path: that escapes too.
pub fn link_escapes(rel: &str, target: &str) -> bool {
    let parent = rel
        .rsplit_once('/')
        .map_or(String::new(), |(d, _)| format!("{d}/"));
    target.starts_with('/') || normalize(&format!("{parent}{target}")).is_none()
}

/// The first existing prefix of `rel` that is a symlink leading out of
/// `ws` (lexically, from where the link is), if any.
pub fn escaping_symlink(ws: &Path, rel: &str) -> Option<String> {
    let mut prefix = String::new();
    for part in rel.split('/').filter(|p| !p.is_empty()) {
        if !prefix.is_empty() {
            prefix.push('/');
        }
        prefix.push_str(part);
        let meta = fs::symlink_metadata(ws.join(&prefix)).ok()?;
        if !meta.is_symlink() {
            continue;
        }
        // WASI cannot read a link to an absolute path: that escapes too.
        let escapes = match fs::read_link(ws.join(&prefix)) {
            Ok(target) => link_escapes(&prefix, &target.to_string_lossy()),
            Err(_) => true,
        };
        if escapes {
            return Some(prefix);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::link_escapes;

    #[test]
    fn a_link_escapes_only_if_it_leads_out() {
        assert!(!link_escapes("link", "f"), "a top-level link to a sibling");
        assert!(!link_escapes("out/l", "../f"));
        assert!(!link_escapes("a/b/l", "../../c"));
        assert!(link_escapes("l", "../x"));
        assert!(link_escapes("out/l", "../../x"));
        assert!(link_escapes("out/l", "/etc"));
    }
}
