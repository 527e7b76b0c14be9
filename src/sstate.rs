//! Shared state, BitBake's name for it: which tasks the cache covers, what
//! is restored before the build (setscene), what is stored after a task
//! succeeds, and why a task is not covered.
//!
//! Knows the graph, signatures and the cache; knows nothing of processes or
//! scheduling.

use std::fs;
use std::path::Path;

use crate::cache::{collect_outputs, Cache, FileModes, Lookup, OutputEntry, StoreError};
use crate::graph::{normalize, Action, Graph, TaskId};
use crate::plan::Policy;
use crate::signature::{differences, SigParts};

/// What the build does with a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Run its command.
    Run,
    /// Covered by the cache; `restored` says whether its outputs were put
    /// in the workspace (only those something needs are).
    Cached { restored: bool },
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

/// The first existing prefix of `rel` that is a symlink leading out of
/// `ws` (lexically, from where the link is), if any.
pub fn escaping_symlink(ws: &Path, rel: &str) -> Option<String> {
    let mut prefix = String::new();
    for part in rel.split('/').filter(|p| !p.is_empty()) {
        if !prefix.is_empty() {
            prefix.push('/');
        }
        let parent_len = prefix.len();
        prefix.push_str(part);
        let meta = fs::symlink_metadata(ws.join(&prefix)).ok()?;
        if !meta.is_symlink() {
            continue;
        }
        // WASI cannot read a link to an absolute path: that escapes too.
        let escapes = match fs::read_link(ws.join(&prefix)) {
            Ok(target) => {
                let target = target.to_string_lossy();
                target.starts_with('/')
                    || normalize(&format!("{}{target}", &prefix[..parent_len])).is_none()
            }
            Err(_) => true,
        };
        if escapes {
            return Some(prefix);
        }
    }
    None
}

/// Decides each task's fate and restores what is needed, before anything
/// runs. A task runs if its signature has no usable entry (or it is
/// nostamp). A covered task is restored if it is final (nothing depends on
/// it), or a task that runs depends on it, directly or through other
/// tasks, or a restored task with nothing to run (an aggregate like
/// `do_build`) depends on it; otherwise it is left alone. A restore that fails (missing or
/// corrupt blob) turns the task into one that runs, which can make more of
/// its dependencies needed: repeat until nothing changes.
pub fn setscene(
    graph: &Graph,
    sigs: &[(SigParts, String)],
    cache: &Cache,
    ws: &Path,
    modes: &dyn FileModes,
    warn: &mut dyn FnMut(String),
) -> Vec<Fate> {
    let mut entries: Vec<_> = graph
        .ids()
        .map(|id| {
            let (_, sig) = &sigs[id.index()];
            if graph.task(id).nostamp {
                return None;
            }
            match cache.lookup(sig) {
                Lookup::Hit(e) => Some(e),
                Lookup::Miss => None,
                Lookup::Corrupt(why) => {
                    warn(format!("{}: {why}; the task runs", graph.task(id).id));
                    cache.remove_entry(sig);
                    None
                }
            }
        })
        .collect();
    let mut restored = vec![false; graph.len()];
    loop {
        let runs = |id: TaskId| entries[id.index()].is_none();
        // needed[t]: t is final, or a task that runs depends on it directly
        // or not, or a needed task with nothing to run depends on it.
        let mut feeds = vec![false; graph.len()];
        let mut needed = vec![false; graph.len()];
        for &id in graph.topo_order.iter().rev() {
            let i = id.index();
            let dependents = &graph.dependents[i];
            feeds[i] = dependents.iter().any(|&d| runs(d) || feeds[d.index()]);
            needed[i] = dependents.is_empty()
                || feeds[i]
                || dependents
                    .iter()
                    .any(|&d| needed[d.index()] && graph.task(d).action == Action::Nothing);
        }
        let mut changed = false;
        for &id in &graph.topo_order {
            let i = id.index();
            if restored[i] || !needed[i] {
                continue;
            }
            let Some(entry) = &entries[i] else { continue };
            match cache.restore(ws, entry, modes) {
                Ok(()) => restored[i] = true,
                Err(why) => {
                    warn(format!(
                        "{}: cannot restore from the cache: {why}; the task runs",
                        graph.task(id).id
                    ));
                    cache.remove_entry(&sigs[i].1);
                    entries[i] = None;
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    graph
        .ids()
        .map(|id| match entries[id.index()] {
            None => Fate::Run,
            Some(_) => Fate::Cached {
                restored: restored[id.index()],
            },
        })
        .collect()
}

/// Outputs a succeeded task left behind, checked and listed, waiting to be
/// copied into the cache.
#[derive(Debug)]
pub struct PendingStore {
    pub id: TaskId,
    pub entries: Vec<OutputEntry>,
    pub duration_ms: u64,
}

/// After a task's process succeeded: checks its declared outputs exist and
/// stay inside the workspace (`Err` fails the task) and lists them. The
/// copying is left to [`store`], so that the build can start the next tasks
/// first.
pub fn check_outputs(
    graph: &Graph,
    id: TaskId,
    ws: &Path,
    duration_ms: u64,
    modes: &dyn FileModes,
) -> Result<PendingStore, String> {
    let entries = collect_outputs(ws, &graph.task(id).outputs, modes).map_err(|e| e.to_string())?;
    Ok(PendingStore {
        id,
        entries,
        duration_ms,
    })
}

/// Copies a checked task's outputs into the cache and records its history.
/// Cache trouble is only a warning: the build goes on without it.
pub fn store(
    graph: &Graph,
    job: PendingStore,
    sigs: &[(SigParts, String)],
    cache: &Cache,
    ws: &Path,
    warn: &mut dyn FnMut(String),
) {
    let task = graph.task(job.id);
    let (parts, sig) = &sigs[job.id.index()];
    if !task.nostamp {
        if let Err(e) = cache.commit(ws, &task.id, sig, job.entries, job.duration_ms) {
            warn(format!("{}: {}", task.id, StoreError::Io(e)));
        }
    }
    if let Err(e) = cache.record_history(&task.id, sig, parts, Some(job.duration_ms)) {
        warn(format!("{}: cannot record history: {e}", task.id));
    }
}

/// Why `id` is or is not covered by the cache, one line per reason, like
/// `bitbake-diffsigs`.
pub fn explain(
    graph: &Graph,
    id: TaskId,
    sigs: &[(SigParts, String)],
    cache: &Cache,
) -> Vec<String> {
    let task = graph.task(id);
    let (parts, sig) = &sigs[id.index()];
    let mut out = vec![format!("{}: signature {sig}", task.id)];
    if task.nostamp {
        out.push("not cached: the task is nostamp, it runs every time".to_string());
        return out;
    }
    match cache.lookup(sig) {
        Lookup::Hit(entry) => {
            out.push(format!(
                "cached: the cache holds its outputs ({} paths, stored after a run of {} ms)",
                entry.outputs.len(),
                entry.duration_ms
            ));
            return out;
        }
        Lookup::Corrupt(why) => out.push(format!("not cached: {why}")),
        Lookup::Miss => out.push("not cached: no entry for this signature".to_string()),
    }
    match cache.history(&task.id) {
        None => out.push("no earlier run of this task is recorded".to_string()),
        Some(h) if h.signature == *sig => out.push(
            "the last recorded run had this same signature: its entry was removed or the task failed to store"
                .to_string(),
        ),
        Some(h) => {
            out.push(format!("differs from the last recorded run (signature {}):", h.signature));
            out.extend(differences(&h.parts, parts).into_iter().map(|d| format!("  {d}")));
        }
    }
    out
}

/// What a build would do, without doing it (`bitbake -n`): a count line,
/// then every task in the order one slot would start them, marked `run`
/// or `cached` (its signature has an entry in `cache`).
pub fn plan(
    graph: &Graph,
    sigs: &[(SigParts, String)],
    cache: Option<&Cache>,
    durations: &[u64],
) -> Vec<String> {
    let covered: Vec<bool> = graph
        .ids()
        .map(|id| {
            let task = graph.task(id);
            !task.nostamp
                && cache.is_some_and(|c| matches!(c.lookup(&sigs[id.index()].1), Lookup::Hit(_)))
        })
        .collect();
    // Covered tasks weigh nothing, as in a real run.
    let weights: Vec<u64> = graph
        .ids()
        .map(|id| {
            if covered[id.index()] {
                0
            } else {
                durations[id.index()]
            }
        })
        .collect();
    let sim = crate::simulate::simulate(graph, &weights, &weights, Policy::CriticalPath, 1);
    let mut order: Vec<TaskId> = graph.ids().collect();
    order.sort_by_key(|id| (sim.starts[id.index()], covered[id.index()], id.index()));
    let cached = covered.iter().filter(|&&c| c).count();
    let mut out = vec![format!(
        "{} tasks: {} to run, {} covered by the cache",
        graph.len(),
        graph.len() - cached,
        cached
    )];
    out.extend(order.iter().map(|&id| {
        let mark = if covered[id.index()] { "cached" } else { "run" };
        format!("{mark:<7}{}", graph.task(id).id)
    }));
    out
}
