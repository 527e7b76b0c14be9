//! Merkle trees of files: a directory on disk (or chosen paths in it) as
//! REAPI `Directory` messages and blobs, and such a tree written back to
//! disk. Names are plain single components and symlinks stay inside the
//! tree, both ways.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};
use prost::Message;

use super::blobs::Blobs;
use super::cas::Cas;
use super::{digest, re, show};

/// A directory being built: entries by name.
#[derive(Default)]
struct Dir(BTreeMap<String, Node>);

enum Node {
    File(re::Digest, bool),
    Link(String),
    Dir(Dir),
}

/// The Merkle tree of `root` holding only `paths` (relative; files,
/// directories with everything in them, symlinks as links). Paths that do
/// not exist are left out.
pub fn directory(root: &Path, paths: &[String], blobs: &mut Blobs) -> Result<re::Digest> {
    directory_with(root, paths, &Extra::default(), blobs)
}

/// What an input root holds besides files read from disk.
#[derive(Default)]
pub struct Extra {
    /// Directories (relative), empty if nothing else puts something in
    /// them (a command's working directory).
    pub dirs: Vec<String>,
    /// Files made in memory, at their relative paths (not executable).
    pub files: Vec<(String, Vec<u8>)>,
}

/// [`directory`] with `extra` in it too.
pub fn directory_with(
    root: &Path,
    paths: &[String],
    extra: &Extra,
    blobs: &mut Blobs,
) -> Result<re::Digest> {
    let mut top = Dir::default();
    for (rel, bytes) in &extra.files {
        let names = components(rel)?;
        let Some((last, parents)) = names.split_last() else {
            bail!("a made file needs a name");
        };
        let mut dir = &mut top;
        for name in parents {
            dir = dir_entry(dir, name)?;
        }
        let file = Node::File(blobs.add_bytes(bytes.clone()), false);
        dir.0.insert(last.clone(), file);
    }
    for rel in &extra.dirs {
        let mut dir = &mut top;
        for name in components(rel)? {
            dir = dir_entry(dir, &name)?;
        }
    }
    for rel in paths {
        let names = components(rel)?;
        let Some((last, parents)) = names.split_last() else {
            add_entries(&mut top, root, blobs)?;
            continue;
        };
        let Some(node) = read_node(&root.join(rel), blobs)? else {
            continue;
        };
        let mut dir = &mut top;
        for name in parents {
            dir = dir_entry(dir, name)?;
        }
        dir.0.insert(last.clone(), node);
    }
    Ok(encode(&top, blobs, &mut Vec::new()))
}

/// The `Tree` of everything under `dir`, for an output directory.
pub fn tree(dir: &Path, blobs: &mut Blobs) -> Result<re::Tree> {
    let mut top = Dir::default();
    add_entries(&mut top, dir, blobs)?;
    let mut all = Vec::new();
    encode(&top, blobs, &mut all);
    let root = all.pop().map(|(_, d)| d);
    let mut seen = std::collections::HashSet::new();
    let children = all
        .into_iter()
        .filter(|(h, _)| seen.insert(h.clone()))
        .map(|(_, d)| d);
    Ok(re::Tree {
        root,
        children: children.collect(),
    })
}

fn dir_entry<'a>(dir: &'a mut Dir, name: &str) -> Result<&'a mut Dir> {
    match dir
        .0
        .entry(name.to_string())
        .or_insert_with(|| Node::Dir(Dir::default()))
    {
        Node::Dir(d) => Ok(d),
        _ => bail!("{name:?} is both a file and a directory among the paths"),
    }
}

fn read_node(path: &Path, blobs: &mut Blobs) -> Result<Option<Node>> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(path)?;
        return Ok(Some(Node::Link(target.to_string_lossy().into_owned())));
    }
    if meta.is_dir() {
        let mut dir = Dir::default();
        add_entries(&mut dir, path, blobs)?;
        return Ok(Some(Node::Dir(dir)));
    }
    let exe = meta.permissions().mode() & 0o111 != 0;
    Ok(Some(Node::File(blobs.add_file(path)?, exe)))
}

fn add_entries(dir: &mut Dir, path: &Path, blobs: &mut Blobs) -> Result<()> {
    let entries = std::fs::read_dir(path).with_context(|| format!("reading {}", path.display()))?;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(node) = read_node(&entry.path(), blobs)? {
            dir.0.insert(name, node);
        }
    }
    Ok(())
}

/// Encodes `dir` bottom-up into blobs, returning its digest; every
/// Directory made is pushed to `all` (children before parents).
fn encode(dir: &Dir, blobs: &mut Blobs, all: &mut Vec<(String, re::Directory)>) -> re::Digest {
    let mut out = re::Directory::default();
    for (name, node) in &dir.0 {
        let name = name.clone();
        match node {
            Node::File(d, exe) => out.files.push(re::FileNode {
                name,
                digest: Some(d.clone()),
                is_executable: *exe,
                ..Default::default()
            }),
            Node::Link(target) => out.symlinks.push(re::SymlinkNode {
                name,
                target: target.clone(),
                ..Default::default()
            }),
            Node::Dir(sub) => {
                let d = encode(sub, blobs, all);
                out.directories.push(re::DirectoryNode {
                    name,
                    digest: Some(d),
                });
            }
        }
    }
    let d = blobs.add_message(&out);
    all.push((d.hash.clone(), out));
    d
}

/// The components of a relative path, refusing absolute ones and `..`.
pub fn components(rel: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for c in Path::new(rel).components() {
        match c {
            Component::Normal(n) => out.push(n.to_string_lossy().into_owned()),
            Component::CurDir => {}
            _ => bail!("{rel:?} leaves its directory"),
        }
    }
    Ok(out)
}

/// Whether a name from a server is one plain path component.
fn plain(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/') && !name.contains('\0')
}

/// Whether a symlink at `depth` directories below the root, pointing at
/// `target`, stays inside the root.
pub fn link_stays_inside(depth: usize, target: &str) -> bool {
    if target.starts_with('/') || target.is_empty() {
        return false;
    }
    let mut level = depth as i64;
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => level -= 1,
            _ => level += 1,
        }
        if level < 0 {
            return false;
        }
    }
    true
}

/// An entry of an output directory's tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    Dir,
    File(re::Digest, bool),
    Link(String),
}

/// Every entry of `tree`, by path relative to its root (parents before
/// children), names checked and symlinks kept inside.
pub fn entries(tree: &re::Tree) -> Result<Vec<(String, Entry)>> {
    let index: HashMap<String, &re::Directory> = tree
        .children
        .iter()
        .map(|d| (digest(&d.encode_to_vec()).hash, d))
        .collect();
    let mut out = Vec::new();
    let root = tree.root.clone().unwrap_or_default();
    let mut stack = vec![(root, String::new(), 0usize)];
    while let Some((dir, at, depth)) = stack.pop() {
        let join = |name: &str| -> Result<String> {
            let name = checked(name)?;
            Ok(if at.is_empty() {
                name.to_string()
            } else {
                format!("{at}/{name}")
            })
        };
        for f in &dir.files {
            out.push((
                join(&f.name)?,
                Entry::File(f.digest.clone().unwrap_or_default(), f.is_executable),
            ));
        }
        for l in &dir.symlinks {
            if !link_stays_inside(depth, &l.target) {
                bail!(
                    "the symlink {} -> {} would point outside",
                    join(&l.name)?,
                    l.target
                );
            }
            out.push((join(&l.name)?, Entry::Link(l.target.clone())));
        }
        for d in &dir.directories {
            let digest = d.digest.clone().unwrap_or_default();
            let Some(sub) = index.get(&digest.hash) else {
                bail!("the tree lacks directory {}", show(&digest));
            };
            out.push((join(&d.name)?, Entry::Dir));
            stack.push(((*sub).clone(), join(&d.name)?, depth + 1));
        }
    }
    Ok(out)
}

/// Writes the tree whose root Directory is `root` into `dest` (created).
pub async fn materialize(cas: &Cas, root: &re::Digest, dest: &Path) -> Result<()> {
    let top: re::Directory = cas.read_message(root).await?;
    let mut files = Vec::new();
    let mut stack = vec![(top, dest.to_path_buf(), 0usize)];
    while let Some((dir, path, depth)) = stack.pop() {
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        for f in dir.files {
            let at = path.join(checked(&f.name)?);
            files.push((f.digest.unwrap_or_default(), at, f.is_executable));
        }
        for l in dir.symlinks {
            write_link(&path.join(checked(&l.name)?), &l.target, depth)?;
        }
        for d in dir.directories {
            let sub = cas.read_message(&d.digest.unwrap_or_default()).await?;
            stack.push((sub, path.join(checked(&d.name)?), depth + 1));
        }
    }
    fetch_files(cas, files).await
}

fn checked(name: &str) -> Result<&str> {
    if !plain(name) {
        bail!("the server named an entry {name:?}, which is not a plain name");
    }
    Ok(name)
}

fn write_link(path: &Path, target: &str, depth: usize) -> Result<()> {
    if !link_stays_inside(depth, target) {
        bail!(
            "the symlink {} -> {target} would point outside",
            path.display()
        );
    }
    let _ = std::fs::remove_file(path);
    std::os::unix::fs::symlink(target, path).with_context(|| format!("creating {}", path.display()))
}

/// Downloads files, several at once.
async fn fetch_files(cas: &Cas, files: Vec<(re::Digest, PathBuf, bool)>) -> Result<()> {
    let mut running = tokio::task::JoinSet::new();
    for (d, path, exe) in files {
        if running.len() >= 16 {
            running.join_next().await.unwrap()??;
        }
        let cas = cas.clone();
        running.spawn(async move { cas.write_file(&d, &path, exe).await });
    }
    while let Some(done) = running.join_next().await {
        done??;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_refuse_leaving() {
        assert_eq!(components("a/./b").unwrap(), vec!["a", "b"]);
        assert!(components("/etc").is_err());
        assert!(components("a/../../b").is_err());
    }

    #[test]
    fn links_must_stay_inside() {
        assert!(link_stays_inside(0, "a/b"));
        assert!(link_stays_inside(1, "../x"));
        assert!(!link_stays_inside(0, "../x"));
        assert!(!link_stays_inside(2, "/etc/passwd"));
        assert!(!link_stays_inside(1, "a/../../../x"));
    }

    #[test]
    fn chosen_paths_make_the_same_tree_as_the_whole_directory() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("a/b")).unwrap();
        std::fs::write(t.path().join("a/b/f"), "x").unwrap();
        std::fs::write(t.path().join("a/g"), "y").unwrap();
        std::fs::write(t.path().join("other"), "z").unwrap();
        let mut blobs = Blobs::default();
        let some = directory(
            t.path(),
            &["a/b/f".into(), "a/g".into(), "gone".into()],
            &mut blobs,
        )
        .unwrap();
        std::fs::remove_file(t.path().join("other")).unwrap();
        let whole = directory(t.path(), &["".into()], &mut blobs).unwrap();
        assert_eq!(some, whole);
        let tree = tree(t.path(), &mut Blobs::default()).unwrap();
        assert_eq!(tree.children.len(), 2);
        assert_eq!(digest(&tree.root.unwrap().encode_to_vec()), whole);
    }
}
