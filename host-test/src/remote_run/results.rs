//! What a remote run left, written into the workspace: its output into the
//! task's log, its files, directories and symlinks where the task declared
//! them. Every path is checked against the declared outputs and opened
//! beneath the workspace root, as a local cache restore is.

use anyhow::{bail, Context, Result};

use crate::bindings::runqueue::executor::process as wit;
use crate::reapi::cas::{write_atomically, Cas};
use crate::reapi::re;
use crate::reapi::tree::{self, Entry};
use crate::Workspace;

#[allow(deprecated)] // older services still fill the per-kind symlink lists
/// Writes `result`'s outputs (paths relative to `wd`, the Command's working
/// directory) into `ws`.
pub async fn write_back(
    cas: &Cas,
    ws: &Workspace,
    cmd: &wit::Command,
    wd: &str,
    result: &re::ActionResult,
) -> Result<()> {
    for f in &result.output_files {
        let rel = declared(cmd, wd, &f.path)?;
        write_file(
            cas,
            ws,
            &rel,
            f.digest.as_ref(),
            f.is_executable,
            &f.contents,
        )
        .await?;
    }
    let links = result
        .output_symlinks
        .iter()
        .chain(&result.output_file_symlinks)
        .chain(&result.output_directory_symlinks);
    for l in links {
        let rel = declared(cmd, wd, &l.path)?;
        write_link(ws, &rel, &l.target)?;
    }
    for d in &result.output_directories {
        let rel = declared(cmd, wd, &d.path)?;
        let tree: re::Tree = cas
            .read_message(
                d.tree_digest
                    .as_ref()
                    .context("an output directory without a tree")?,
            )
            .await?;
        write_dir(cas, ws, &rel, &tree).await?;
    }
    Ok(())
}

/// Writes the run's stdout then stderr into the task's log: created when
/// there is output, and always for a failed run.
pub async fn write_log(
    cas: &Cas,
    ws: &Workspace,
    log: &str,
    result: &re::ActionResult,
    note: Option<&str>,
) -> Result<()> {
    let mut text = stream(cas, &result.stdout_raw, result.stdout_digest.as_ref()).await?;
    text.extend(stream(cas, &result.stderr_raw, result.stderr_digest.as_ref()).await?);
    if let Some(note) = note {
        text.extend(format!("runqueue: {note}\n").into_bytes());
    }
    if text.is_empty() && result.exit_code == 0 {
        return Ok(());
    }
    let entry = ws.file_path(log).map_err(anyhow::Error::msg)?;
    write_atomically(&entry.path(), &text, false)
}

async fn stream(cas: &Cas, raw: &[u8], d: Option<&re::Digest>) -> Result<Vec<u8>> {
    match d {
        _ if !raw.is_empty() => Ok(raw.to_vec()),
        Some(d) => cas.read(d).await,
        None => Ok(Vec::new()),
    }
}

/// The workspace path of output `path`, if the task declared it (or a
/// directory holding it).
fn declared(cmd: &wit::Command, wd: &str, path: &str) -> Result<String> {
    let parts =
        tree::components(path).with_context(|| format!("the server sent output {path:?}"))?;
    let rel = tree::components(wd)?
        .into_iter()
        .chain(parts)
        .collect::<Vec<_>>()
        .join("/");
    let ok = cmd.outputs.iter().any(|o| {
        let o = o.trim_end_matches('/');
        rel == o || rel.starts_with(&format!("{o}/"))
    });
    if !ok {
        bail!("the server sent {rel:?}, which the task does not declare as an output");
    }
    Ok(rel)
}

async fn write_file(
    cas: &Cas,
    ws: &Workspace,
    rel: &str,
    d: Option<&re::Digest>,
    exe: bool,
    inline: &[u8],
) -> Result<()> {
    let entry = ws.file_path(rel).map_err(anyhow::Error::msg)?;
    let d = d.context("an output file without a digest")?;
    if !inline.is_empty() && crate::reapi::digest(inline) == *d {
        return write_atomically(&entry.path(), inline, exe);
    }
    cas.write_file(d, &entry.path(), exe).await
}

fn write_link(ws: &Workspace, rel: &str, target: &str) -> Result<()> {
    let depth = rel.matches('/').count();
    if !tree::link_stays_inside(depth, target) {
        bail!("the server sent symlink {rel} -> {target}, which points outside the workspace");
    }
    let entry = ws.file_path(rel).map_err(anyhow::Error::msg)?;
    let _ = std::fs::remove_file(entry.path());
    std::os::unix::fs::symlink(target, entry.path()).with_context(|| format!("creating {rel}"))
}

async fn write_dir(cas: &Cas, ws: &Workspace, rel: &str, tree: &re::Tree) -> Result<()> {
    ws.ensure_dir(rel).map_err(anyhow::Error::msg)?;
    for (path, entry) in tree::entries(tree)? {
        let at = format!("{rel}/{path}");
        match entry {
            Entry::Dir => drop(ws.ensure_dir(&at).map_err(anyhow::Error::msg)?),
            Entry::File(d, exe) => write_file(cas, ws, &at, Some(&d), exe, &[]).await?,
            Entry::Link(target) => write_link(ws, &at, &target)?,
        }
    }
    Ok(())
}
