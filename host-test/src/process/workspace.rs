//! The workspace: every path the guest names, confined inside one
//! directory, and the modes of files there. Knows paths and symlinks;
//! knows nothing of processes or logs.
//!
//! Paths are checked at the moment of use, never remembered: a directory
//! is opened relative to a handle on the workspace with `openat2` and
//! `RESOLVE_BENEATH` (symlinks inside are followed, any way out is
//! refused by the kernel), and what lies in it is then reached through
//! that open handle (`/proc/self/fd/N/name`). A task that swaps a
//! directory for a symlink after the check cannot lead the next use out.

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// A directory that every path the guest names must stay inside.
#[derive(Debug, Clone)]
pub struct Workspace {
    root: PathBuf,
    handle: Arc<OwnedFd>,
}

/// A directory inside the workspace, held open. Paths made with
/// [`Dir::join`] resolve through the handle for as long as it lives.
#[derive(Debug, Clone)]
pub struct Dir {
    handle: Arc<OwnedFd>,
    /// As the guest names it ("" for the workspace itself).
    rel: String,
}

impl Dir {
    /// The directory, through its handle.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.handle.as_raw_fd()))
    }

    /// `name` (one part, no `/`) in this directory, through its handle.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path().join(name)
    }

    /// The directory as the guest names it ("" for the workspace).
    pub fn rel(&self) -> &str {
        &self.rel
    }

    /// The prefix of this directory's paths and the guest's name for it,
    /// for turning host paths in messages back into the guest's.
    pub fn names(&self) -> (String, String) {
        let rel = if self.rel.is_empty() {
            String::new()
        } else {
            format!("{}/", self.rel)
        };
        (format!("{}/", self.path().display()), rel)
    }
}

/// A file (or anything) in a directory of the workspace: the directory is
/// held open, the last part is not resolved.
#[derive(Debug, Clone)]
pub struct Entry {
    pub dir: Dir,
    pub name: String,
}

impl Entry {
    pub fn path(&self) -> PathBuf {
        self.dir.join(&self.name)
    }
}

impl Workspace {
    /// Opens an existing directory as the workspace.
    pub fn open(dir: &Path) -> io::Result<Workspace> {
        let root = fs::canonicalize(dir)?;
        let handle = fs::File::open(&root)?;
        if !handle.metadata()?.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} is not a directory", dir.display()),
            ));
        }
        Ok(Workspace {
            root,
            handle: Arc::new(OwnedFd::from(handle)),
        })
    }

    /// The workspace's canonical path.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory `rel` inside the workspace, created with what is
    /// missing, held open. Refuses absolute paths, `..` that climbs out,
    /// and symlinks that lead out, before creating anything outside.
    pub fn ensure_dir(&self, rel: &str) -> Result<Dir, String> {
        self.ensure(&normalize(rel)?, rel)
    }

    /// [`Workspace::ensure_dir`] of `parts`; messages name `rel`.
    fn ensure(&self, parts: &[String], rel: &str) -> Result<Dir, String> {
        let at = parts.join("/");
        // Nearly always there already: one open, and a walk only if not.
        let handle = match self.open_dir(&at) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => self.make_dirs(parts, rel)?,
            opened => opened.map_err(|e| self.explain(rel, e))?,
        };
        Ok(Dir {
            handle: Arc::new(handle),
            rel: at,
        })
    }

    /// Creates what is missing of `parts`, one directory at a time, each
    /// in its parent opened beneath the root; the last one, opened.
    fn make_dirs(&self, parts: &[String], rel: &str) -> Result<OwnedFd, String> {
        let mut at = String::new();
        for part in parts {
            if !at.is_empty() {
                at.push('/');
            }
            at.push_str(part);
            match self.open_dir(&at) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => self.make_dir(&at, rel)?,
                other => drop(other.map_err(|e| self.explain(rel, e))?),
            }
        }
        self.open_dir(&at).map_err(|e| self.explain(rel, e))
    }

    /// `rel`'s directory (created with what is missing) held open, and its
    /// last part, not resolved; the file itself is not touched.
    pub fn file_path(&self, rel: &str) -> Result<Entry, String> {
        let parts = normalize(rel)?;
        let Some((name, dirs)) = parts.split_last() else {
            return Err(format!("\"{rel}\" names no file"));
        };
        Ok(Entry {
            dir: self.ensure(dirs, rel)?,
            name: name.clone(),
        })
    }

    /// Like [`Workspace::file_path`], but creates nothing: every directory
    /// on the way must exist inside the workspace; the last part may be a
    /// symlink, which is not followed.
    pub fn resolve_no_follow(&self, rel: &str) -> Result<Entry, String> {
        let parts = normalize(rel)?;
        let Some((name, dirs)) = parts.split_last() else {
            return Err(format!("\"{rel}\" names no file"));
        };
        let dirs = dirs.join("/");
        let handle = self.open_dir(&dirs).map_err(|e| self.explain(rel, e))?;
        Ok(Entry {
            dir: Dir {
                handle: Arc::new(handle),
                rel: dirs,
            },
            name: name.clone(),
        })
    }

    /// The permission bits of `rel`, not following a final symlink.
    pub fn file_mode(&self, rel: &str) -> Result<u32, String> {
        use std::os::unix::fs::PermissionsExt;
        let entry = self.resolve_no_follow(rel)?;
        let meta = fs::symlink_metadata(entry.path()).map_err(|e| format!("\"{rel}\": {e}"))?;
        Ok(meta.permissions().mode() & 0o7777)
    }

    /// Sets the permission bits of `rel`; a symlink is refused rather than
    /// followed.
    pub fn set_file_mode(&self, rel: &str, mode: u32) -> Result<(), String> {
        use std::os::unix::fs::PermissionsExt;
        let entry = self.resolve_no_follow(rel)?;
        let path = entry.path();
        let meta = fs::symlink_metadata(&path).map_err(|e| format!("\"{rel}\": {e}"))?;
        if meta.is_symlink() {
            return Err(format!("\"{rel}\" is a symlink; its mode is not set"));
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(mode & 0o7777))
            .map_err(|e| format!("\"{rel}\": {e}"))
    }

    /// Opens the directory `at` (normalized, relative) beneath the root.
    fn open_dir(&self, at: &str) -> io::Result<OwnedFd> {
        let at = if at.is_empty() { "." } else { at };
        openat2_beneath(&self.handle, at, libc::O_PATH | libc::O_DIRECTORY)
    }

    /// Creates the last part of `at`, in its parent opened beneath the root.
    #[allow(unsafe_code)]
    fn make_dir(&self, at: &str, rel: &str) -> Result<(), String> {
        let (parent, name) = at.rsplit_once('/').unwrap_or(("", at));
        let parent = self.open_dir(parent).map_err(|e| self.explain(rel, e))?;
        let name = std::ffi::CString::new(name).map_err(|_| format!("\"{rel}\" has a NUL byte"))?;
        // SAFETY: a valid directory fd and NUL-terminated name.
        let made = unsafe { libc::mkdirat(parent.as_raw_fd(), name.as_ptr(), 0o777) };
        match made {
            0 => Ok(()),
            _ => match io::Error::last_os_error() {
                e if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
                e => Err(format!("cannot create \"{rel}\": {e}")),
            },
        }
    }

    /// An error opening a directory for `rel`, in words.
    fn explain(&self, rel: &str, e: io::Error) -> String {
        match e.raw_os_error() {
            Some(libc::EXDEV) => format!("\"{rel}\" leads out of the workspace through a symlink"),
            Some(libc::ENOTDIR) => format!("\"{rel}\": a part of it is not a directory"),
            _ => format!("\"{rel}\": {e}"),
        }
    }
}

/// `openat2(dir, path, flags | O_CLOEXEC, RESOLVE_BENEATH |
/// RESOLVE_NO_MAGICLINKS)`: `path` resolved inside `dir`, symlinks
/// included, or refused with `EXDEV`.
#[allow(unsafe_code)]
fn openat2_beneath(dir: &OwnedFd, path: &str, flags: i32) -> io::Result<OwnedFd> {
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }
    const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
    const RESOLVE_BENEATH: u64 = 0x08;
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
    };
    let path = std::ffi::CString::new(path).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: valid fd, NUL-terminated path, and `how` of the size given.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            path.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a non-negative result is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
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
        assert!(ws_dir.path().join("work/a/b").is_dir());
        assert_eq!(made.names().1, "work/a/b/");
    }

    /// A directory swapped for a symlink out, after a first use, is
    /// refused at the next: nothing is remembered.
    #[test]
    fn a_swap_after_the_check_is_caught_at_the_next_use() {
        let ws_dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let ws = Workspace::open(ws_dir.path()).unwrap();
        let first = ws.file_path("w/log").unwrap();
        fs::write(first.path(), "inside").unwrap();
        fs::rename(ws_dir.path().join("w"), ws_dir.path().join("moved")).unwrap();
        std::os::unix::fs::symlink(outside.path(), ws_dir.path().join("w")).unwrap();
        assert_eq!(
            ws.file_path("w/log").unwrap_err(),
            "\"w/log\" leads out of the workspace through a symlink"
        );
        assert!(ws.resolve_no_follow("w/log").is_err());
        // What was opened before the swap still reaches the directory it
        // opened, wherever it went, never the symlink's target.
        fs::write(first.path(), "still inside").unwrap();
        assert_eq!(
            fs::read_to_string(ws_dir.path().join("moved/log")).unwrap(),
            "still inside"
        );
        assert!(!outside.path().join("log").exists());
    }
}
