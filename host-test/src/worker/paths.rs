//! Paths a server names, kept inside a lease's directory: the directory's
//! own name from a lease id, and relative paths resolved without leaving
//! it, lexically or through symlinks. Knows paths; knows nothing of leases
//! or commands.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::reapi::tree::components;

/// The longest part of a directory name taken from a lease id.
const NAME_CHARS: usize = 80;

/// A directory name for the `n`th lease of this worker, whose id is `id`:
/// the id's letters, digits, `.`, `-` and `_` (others become `_`, at most
/// [`NAME_CHARS`] of them), then `-n`, so that a lease given again while
/// its earlier run is still being stopped gets a directory of its own.
pub fn lease_dir_name(id: &str, n: u64) -> String {
    let safe: String = id
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' | '_' => c,
            _ => '_',
        })
        .take(NAME_CHARS)
        .collect();
    let safe = safe.trim_start_matches('.');
    format!("{safe}-{n}")
}

/// `rel` (a server's relative path: `/`-separated, no `..`, not absolute;
/// empty means `root` itself) under `root`, refused if it leaves `root`
/// lexically or because a directory on the way is a symlink pointing
/// out. The last component itself is not followed: it may be a symlink,
/// reported as one. `root` must be canonical.
pub fn inside(root: &Path, rel: &str) -> Result<PathBuf> {
    let names = components(rel)?;
    let path = names.iter().fold(root.to_path_buf(), |p, n| p.join(n));
    let Some(parent) = path.parent().filter(|_| !names.is_empty()) else {
        return Ok(path);
    };
    let existing = parent
        .ancestors()
        .find(|a| std::fs::symlink_metadata(a).is_ok())
        .unwrap_or(root);
    let real = existing
        .canonicalize()
        .with_context(|| format!("resolving {}", existing.display()))?;
    if !real.starts_with(root) {
        bail!("{rel:?} leads outside the action's directory");
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_ids_become_plain_names() {
        assert_eq!(lease_dir_name("main/3f2a-b_c.d", 7), "main_3f2a-b_c.d-7");
        assert_eq!(lease_dir_name("../..", 1), "_..-1");
        assert_eq!(lease_dir_name("..", 2), "-2");
        assert_eq!(lease_dir_name(&"x".repeat(300), 3).len(), NAME_CHARS + 2);
    }

    #[test]
    fn paths_stay_inside() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().canonicalize().unwrap();
        std::fs::create_dir(root.join("d")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("out")).unwrap();
        std::os::unix::fs::symlink("d", root.join("in")).unwrap();
        std::os::unix::fs::symlink("/nonexistent/x", root.join("dangling")).unwrap();
        assert_eq!(inside(&root, "").unwrap(), root);
        assert_eq!(inside(&root, "d/new/f").unwrap(), root.join("d/new/f"));
        assert_eq!(inside(&root, "in/f").unwrap(), root.join("in/f"));
        // The last component is not followed: a symlink output is allowed.
        assert_eq!(inside(&root, "out").unwrap(), root.join("out"));
        for bad in [
            "out/passwd",
            "dangling/f",
            "../x",
            "/etc/passwd",
            "d/../../x",
        ] {
            assert!(inside(&root, bad).is_err(), "{bad}");
        }
    }
}
