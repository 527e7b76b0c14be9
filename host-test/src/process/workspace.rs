//! The workspace: every path the guest names, confined inside one
//! directory, and the modes of files there. Knows paths and symlinks;
//! knows nothing of processes or logs.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A directory that every path the guest names must stay inside.
#[derive(Debug, Clone)]
pub struct Workspace {
    root: PathBuf,
    /// Directories (relative) already found to be real directories inside
    /// the workspace, so each is checked once per run rather than once per
    /// task. Tasks are trusted processes; the checks guard against what the
    /// graph names, not against a task swapping a directory for a symlink.
    verified: Arc<Mutex<HashSet<String>>>,
}

impl Workspace {
    /// Opens an existing directory as the workspace.
    pub fn open(dir: &Path) -> io::Result<Workspace> {
        let root = fs::canonicalize(dir)?;
        if !root.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} is not a directory", dir.display()),
            ));
        }
        Ok(Workspace {
            root,
            verified: Default::default(),
        })
    }

    /// The workspace's canonical path.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Makes sure the directory `rel` exists inside the workspace, creating
    /// what is missing, and returns its real path. Refuses absolute paths,
    /// `..` that climbs out, and symlinks that lead out, before creating
    /// anything outside.
    pub fn ensure_dir(&self, rel: &str) -> Result<PathBuf, String> {
        let parts = normalize(rel)?;
        let key = parts.join("/");
        if self.verified.lock().expect("not poisoned").contains(&key) {
            return Ok(self.root.join(&key));
        }
        let mut at = self.root.clone();
        for part in parts {
            at.push(part);
            match fs::symlink_metadata(&at) {
                Ok(_) => {
                    let real = fs::canonicalize(&at).map_err(|e| format!("{rel}: {e}"))?;
                    if !real.starts_with(&self.root) {
                        return Err(format!(
                            "\"{rel}\" leads out of the workspace through a symlink"
                        ));
                    }
                    if !real.is_dir() {
                        return Err(format!("\"{rel}\": {} is not a directory", at.display()));
                    }
                    at = real;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir(&at).map_err(|e| format!("cannot create \"{rel}\": {e}"))?;
                }
                Err(e) => return Err(format!("\"{rel}\": {e}")),
            }
        }
        self.verified.lock().expect("not poisoned").insert(key);
        Ok(at)
    }

    /// The path of the file `rel` inside the workspace, with its parent
    /// directories created and checked; the file itself is not touched.
    pub fn file_path(&self, rel: &str) -> Result<PathBuf, String> {
        let parts = normalize(rel)?;
        let Some((name, dirs)) = parts.split_last() else {
            return Err(format!("\"{rel}\" names no file"));
        };
        let dirs: Vec<&str> = dirs.iter().map(String::as_str).collect();
        Ok(self.ensure_dir(&dirs.join("/"))?.join(name))
    }

    /// The path of `rel` inside the workspace, after checking that every
    /// directory on the way stays inside it; the last part may be a
    /// symlink, which is not followed.
    pub fn resolve_no_follow(&self, rel: &str) -> Result<PathBuf, String> {
        let parts = normalize(rel)?;
        let Some((name, dirs)) = parts.split_last() else {
            return Ok(self.root.clone());
        };
        let mut dir = self.root.clone();
        for d in dirs {
            dir.push(d);
            let real = fs::canonicalize(&dir).map_err(|e| format!("\"{rel}\": {e}"))?;
            if !real.starts_with(&self.root) {
                return Err(format!(
                    "\"{rel}\" leads out of the workspace through a symlink"
                ));
            }
            dir = real;
        }
        Ok(dir.join(name))
    }

    /// The permission bits of `rel`, not following a final symlink.
    pub fn file_mode(&self, rel: &str) -> Result<u32, String> {
        use std::os::unix::fs::PermissionsExt;
        let path = self.resolve_no_follow(rel)?;
        let meta = fs::symlink_metadata(&path).map_err(|e| format!("\"{rel}\": {e}"))?;
        Ok(meta.permissions().mode() & 0o7777)
    }

    /// Sets the permission bits of `rel`; a symlink is refused rather than
    /// followed.
    pub fn set_file_mode(&self, rel: &str, mode: u32) -> Result<(), String> {
        use std::os::unix::fs::PermissionsExt;
        let path = self.resolve_no_follow(rel)?;
        let meta = fs::symlink_metadata(&path).map_err(|e| format!("\"{rel}\": {e}"))?;
        if meta.is_symlink() {
            return Err(format!("\"{rel}\" is a symlink; its mode is not set"));
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(mode & 0o7777))
            .map_err(|e| format!("\"{rel}\": {e}"))
    }
}

/// Splits a relative path into its parts, resolving `.` and `..`; refuses
/// absolute paths and `..` above the start.
fn normalize(rel: &str) -> Result<Vec<String>, String> {
    let mut parts: Vec<String> = Vec::new();
    for c in Path::new(rel).components() {
        match c {
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::CurDir => {}
            Component::ParentDir => {
                if parts.pop().is_none() {
                    return Err(format!("\"{rel}\" leaves the workspace"));
                }
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!(
                    "\"{rel}\" is absolute; paths are relative to the workspace"
                ))
            }
        }
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_and_refuses_escapes() {
        assert_eq!(normalize("a/./b/../c").unwrap(), ["a", "c"]);
        assert_eq!(normalize("").unwrap(), Vec::<String>::new());
        assert_eq!(
            normalize("a/../..").unwrap_err(),
            "\"a/../..\" leaves the workspace"
        );
        assert_eq!(
            normalize("/etc").unwrap_err(),
            "\"/etc\" is absolute; paths are relative to the workspace"
        );
    }

    #[test]
    fn refuses_symlinks_out_of_the_workspace() {
        let ws_dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), ws_dir.path().join("out")).unwrap();
        let ws = Workspace::open(ws_dir.path()).unwrap();
        assert_eq!(
            ws.ensure_dir("out/sub").unwrap_err(),
            "\"out/sub\" leads out of the workspace through a symlink"
        );
        assert!(
            !outside.path().join("sub").exists(),
            "nothing created outside"
        );
        assert!(ws.file_path("out/log").is_err());
        // Inside is fine and created on demand.
        let made = ws.ensure_dir("work/a/b").unwrap();
        assert!(made.is_dir() && made.starts_with(ws.root()));
    }
}
