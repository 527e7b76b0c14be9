//! An action's outputs, looked for once its command has run: each output
//! path as a file, a directory (a `Tree`) or a symlink, in the
//! `ActionResult` fields REAPI has for it, with the blobs to upload. Paths
//! that would leave the action's directory are skipped with a note;
//! missing ones are left out, as REAPI allows. Knows files and REAPI
//! messages; knows nothing of servers or processes.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, Result};

use super::paths;
use crate::reapi::blobs::Blobs;
use crate::reapi::re;
use crate::reapi::tree;

/// What an output was declared as.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Declared {
    /// In `output_paths` (REAPI 2.1+): whatever is found.
    Path,
    /// In the deprecated `output_files`.
    File,
    /// In the deprecated `output_directories`.
    Directory,
}

/// The outputs a Command asks for: `output_paths` if it has any (then the
/// older lists are ignored, as REAPI says), else `output_files` and
/// `output_directories`.
#[allow(deprecated)]
pub fn declared(command: &re::Command) -> Vec<(String, Declared)> {
    if !command.output_paths.is_empty() {
        let paths = command.output_paths.iter();
        return paths.map(|p| (p.clone(), Declared::Path)).collect();
    }
    let files = command
        .output_files
        .iter()
        .map(|p| (p.clone(), Declared::File));
    let dirs = command.output_directories.iter();
    files
        .chain(dirs.map(|p| (p.clone(), Declared::Directory)))
        .collect()
}

/// `rel` (relative to the working directory `cwd`) relative to the input
/// root.
pub fn from_root(cwd: &str, rel: &str) -> String {
    match (cwd.trim_matches('/'), rel) {
        ("", rel) => rel.to_string(),
        (cwd, "") => cwd.to_string(),
        (cwd, rel) => format!("{cwd}/{rel}"),
    }
}

/// The outputs of the command that ran in `cwd` under `root` (canonical):
/// the output fields of an `ActionResult`, their blobs added to `blobs`,
/// and a line for each output skipped.
pub fn collect(
    root: &Path,
    cwd: &str,
    command: &re::Command,
    blobs: &mut Blobs,
) -> Result<(re::ActionResult, Vec<String>)> {
    let mut result = re::ActionResult::default();
    let mut notes = Vec::new();
    for (rel, declared) in declared(command) {
        let path = match paths::inside(root, &from_root(cwd, &rel)) {
            Ok(path) => path,
            Err(e) => {
                notes.push(format!("output {rel:?} skipped: {e:#}"));
                continue;
            }
        };
        if let Some(note) = add(&mut result, &path, &rel, declared, blobs)? {
            notes.push(note);
        }
    }
    Ok((result, notes))
}

/// Adds what is at `path` (declared as `rel`) to `result`; a note if it
/// is not what was declared.
#[allow(deprecated)]
fn add(
    result: &mut re::ActionResult,
    path: &Path,
    rel: &str,
    declared: Declared,
    blobs: &mut Blobs,
) -> Result<Option<String>> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let kind = meta.file_type();
    if kind.is_symlink() {
        let link = symlink(path, rel)?;
        match declared {
            Declared::File => result.output_file_symlinks.push(link.clone()),
            Declared::Directory => result.output_directory_symlinks.push(link.clone()),
            Declared::Path => {}
        }
        result.output_symlinks.push(link);
    } else if kind.is_dir() && declared != Declared::File {
        result.output_directories.push(directory(path, rel, blobs)?);
    } else if kind.is_file() && declared != Declared::Directory {
        result.output_files.push(re::OutputFile {
            path: rel.to_string(),
            digest: Some(blobs.add_file(path)?),
            is_executable: meta.permissions().mode() & 0o111 != 0,
            ..Default::default()
        });
    } else {
        let wanted = match declared {
            Declared::File => "a file",
            Declared::Directory => "a directory",
            Declared::Path => "a file, directory or symlink",
        };
        return Ok(Some(format!("output {rel:?} skipped: not {wanted}")));
    }
    Ok(None)
}

fn symlink(path: &Path, rel: &str) -> Result<re::OutputSymlink> {
    let target = std::fs::read_link(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(re::OutputSymlink {
        path: rel.to_string(),
        target: target.to_string_lossy().into_owned(),
        ..Default::default()
    })
}

/// An output directory: its `Tree` (and root `Directory`) in `blobs`.
fn directory(path: &Path, rel: &str, blobs: &mut Blobs) -> Result<re::OutputDirectory> {
    let tree = tree::tree(path, blobs)?;
    let root = tree.root.clone().unwrap_or_default();
    Ok(re::OutputDirectory {
        path: rel.to_string(),
        tree_digest: Some(blobs.add_message(&tree)),
        root_directory_digest: Some(blobs.add_message(&root)),
        is_topologically_sorted: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(deprecated)]
    fn command(paths: &[&str], files: &[&str], dirs: &[&str]) -> re::Command {
        let own = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        re::Command {
            output_paths: own(paths),
            output_files: own(files),
            output_directories: own(dirs),
            ..Default::default()
        }
    }

    #[test]
    fn output_paths_win_over_the_old_lists() {
        let both = command(&["a"], &["f"], &["d"]);
        assert_eq!(declared(&both), [("a".to_string(), Declared::Path)]);
        let old = command(&[], &["f"], &["d"]);
        let want = [
            ("f".to_string(), Declared::File),
            ("d".to_string(), Declared::Directory),
        ];
        assert_eq!(declared(&old), want);
    }

    #[test]
    fn paths_are_taken_from_the_working_directory() {
        assert_eq!(from_root("", "a/b"), "a/b");
        assert_eq!(from_root("w", "a"), "w/a");
        assert_eq!(from_root("w/x/", "a"), "w/x/a");
        assert_eq!(from_root("w", ""), "w");
    }

    #[test]
    #[allow(deprecated)]
    fn files_directories_and_symlinks_land_in_their_fields() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().canonicalize().unwrap();
        let w = root.join("w");
        std::fs::create_dir_all(w.join("dir/sub")).unwrap();
        std::fs::write(w.join("dir/sub/x"), "x").unwrap();
        std::fs::write(w.join("tool"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(w.join("tool"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink("tool", w.join("link")).unwrap();
        std::os::unix::fs::symlink("/etc", w.join("escape")).unwrap();
        let cmd = command(&["dir", "escape/passwd", "gone", "link", "tool"], &[], &[]);
        let mut blobs = Blobs::default();
        let (result, notes) = collect(&root, "w", &cmd, &mut blobs).unwrap();
        assert_eq!(result.output_files.len(), 1);
        assert!(result.output_files[0].is_executable);
        assert_eq!(
            result.output_files[0].digest,
            Some(crate::reapi::digest(b"#!/bin/sh\n"))
        );
        assert_eq!(result.output_directories[0].path, "dir");
        let tree_digest = result.output_directories[0].tree_digest.clone().unwrap();
        assert!(blobs.bytes(&tree_digest).is_ok());
        assert_eq!(result.output_symlinks[0].target, "tool");
        assert!(result.output_file_symlinks.is_empty());
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].starts_with("output \"escape/passwd\" skipped"),
            "{notes:?}"
        );
    }

    #[test]
    #[allow(deprecated)]
    fn old_lists_keep_to_their_kinds() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().canonicalize().unwrap();
        std::fs::create_dir(root.join("d")).unwrap();
        std::fs::write(root.join("f"), "").unwrap();
        let cmd = command(&[], &["d"], &["f", ""]);
        let (result, notes) = collect(&root, "", &cmd, &mut Blobs::default()).unwrap();
        assert!(result.output_files.is_empty());
        assert_eq!(result.output_directories.len(), 1);
        assert_eq!(result.output_directories[0].path, "");
        assert_eq!(notes.len(), 2, "{notes:?}");
    }
}
