//! Reusing earlier results (BitBake's shared state): which tasks the cache
//! covers, what is restored before the build (setscene), what is stored
//! after a task succeeds, why a task is not covered, and what a build
//! would do.
//!
//! Knows the graph, signatures and the cache; knows nothing of processes or
//! scheduling.

use std::path::Path;

use crate::cache::{
    collect_outputs, entry_file, with_blobs, ActionEntry, Cache, Lookup, OutputEntry, StoreError,
};
use crate::graph::{Action, Graph, TaskId, TaskMap};
use crate::journal::Record;
use crate::plan::Policy;
use crate::seams::{Blob, FileModes, Files, LocalFuture};
use crate::signature::{differences, Signature};

/// What the build does with a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Run its command.
    Run,
    /// Covered by the cache; `restored` says whether its outputs were put
    /// in the workspace (only those something needs are).
    Cached { restored: bool },
}

/// Decides each task's fate and restores what is needed, before anything
/// runs. A task runs if its signature has no usable entry (or it is
/// nostamp). A covered task is restored if it is final (nothing depends on
/// it), or a task that runs depends on it, directly or through other
/// tasks, or a restored task with nothing to run (an aggregate like
/// `do_build`) depends on it; otherwise it is left alone. A restore that
/// fails (missing or corrupt blob) turns the task into one that runs, which
/// can make more of its dependencies needed: repeat until nothing changes.
/// The restores of a round run at once, on the [`Files`] seam.
pub async fn setscene(
    graph: &Graph,
    sigs: &TaskMap<Signature>,
    cache: &Cache,
    seams: (&Path, &dyn FileModes, &dyn Files),
    warn: &mut dyn FnMut(String),
) -> TaskMap<Fate> {
    let (ws, modes, files) = seams;
    let mut untrusted = Vec::new();
    let mut entries = TaskMap::from_fn(graph, |id| {
        usable_entry(graph, id, sigs, cache, warn, &mut untrusted)
    });
    if let Some(first) = untrusted.first() {
        warn(format!(
            "{} task(s) run because their cache entries are not signed by a trusted key (first: {first})",
            untrusted.len()
        ));
    }
    let mut restored = TaskMap::filled(graph, false);
    loop {
        let needed = needed(graph, &entries);
        let due: Vec<TaskId> = graph
            .ids()
            .filter(|&id| !restored[id] && needed[id] && entries[id].is_some())
            .collect();
        let restores = due.iter().map(|&id| {
            let entry = entries[id].as_ref().expect("due tasks have entries");
            cache.restore(ws, entry, modes, files)
        });
        let results = futures::future::join_all(restores).await;
        let mut changed = false;
        for (id, result) in due.into_iter().zip(results) {
            match result {
                Ok(()) => restored[id] = true,
                Err(why) => {
                    warn(format!(
                        "{}: cannot restore from the cache: {why}; the task runs",
                        graph.task(id).id
                    ));
                    cache.remove_entry(&sigs[id].hash);
                    entries[id] = None;
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    TaskMap::from_fn(graph, |id| match entries[id] {
        None => Fate::Run,
        Some(_) => Fate::Cached {
            restored: restored[id],
        },
    })
}

/// The cache entry for task `id`'s signature, if there is a sound one and
/// the task is not nostamp; a corrupt entry is removed with a warning, an
/// untrusted one is noted in `untrusted`.
fn usable_entry(
    graph: &Graph,
    id: TaskId,
    sigs: &TaskMap<Signature>,
    cache: &Cache,
    warn: &mut dyn FnMut(String),
    untrusted: &mut Vec<String>,
) -> Option<ActionEntry> {
    if graph.task(id).nostamp {
        return None;
    }
    match cache.lookup(&sigs[id].hash) {
        Lookup::Untrusted(why) => {
            untrusted.push(format!("{}: {why}", graph.task(id).id));
            None
        }
        Lookup::Hit(e) => match e.confined_to(&graph.task(id).outputs) {
            Ok(()) => Some(e),
            Err(why) => {
                warn(format!(
                    "{}: the cache entry {why}; it is removed and the task runs",
                    graph.task(id).id
                ));
                cache.remove_entry(&sigs[id].hash);
                None
            }
        },
        Lookup::Miss => None,
        Lookup::Corrupt(why) => {
            warn(format!("{}: {why}; the task runs", graph.task(id).id));
            cache.remove_entry(&sigs[id].hash);
            None
        }
    }
}

/// Which covered tasks' outputs must be in the workspace: a task is needed
/// if it is final, or a task that runs (no entry) depends on it directly
/// or not, or a needed task with nothing to run depends on it.
fn needed(graph: &Graph, entries: &TaskMap<Option<ActionEntry>>) -> TaskMap<bool> {
    let runs = |id: TaskId| entries[id].is_none();
    let mut feeds = TaskMap::filled(graph, false);
    let mut needed = TaskMap::filled(graph, false);
    for &id in graph.topo_order.iter().rev() {
        let dependents = &graph.dependents[id];
        feeds[id] = dependents.iter().any(|&d| runs(d) || feeds[d]);
        needed[id] = dependents.is_empty()
            || feeds[id]
            || dependents
                .iter()
                .any(|&d| needed[d] && graph.task(d).action == Action::Nothing);
    }
    needed
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

/// A checked task's files on their way into the cache's blobs.
pub struct StoredBlobs {
    pub job: PendingStore,
    /// The blob of each file of `job`, or why they could not be stored.
    pub blobs: Result<Vec<Blob>, String>,
}

/// Starts copying a checked task's files (`paths`, its entries'
/// [`crate::cache::file_paths`]) into the cache's blobs, on the [`Files`]
/// seam: the loop awaits it like a process.
pub fn store_blobs(
    job: PendingStore,
    paths: Vec<String>,
    cache: &Cache,
    files: &dyn Files,
) -> LocalFuture<StoredBlobs> {
    let copying = files.store(cache.dir_str(), paths);
    Box::pin(async move {
        let blobs = copying.await;
        StoredBlobs { job, blobs }
    })
}

/// What a stored task leaves to write: its action entry (none for a
/// nostamp task, or when its blobs could not be stored) and the history
/// record of its run.
pub struct Committed {
    /// The entry file (path relative to the cache, bytes) and its signature.
    pub entry: Option<((String, Vec<u8>), String)>,
    pub record: Record,
}

/// Once its blobs are stored, the task's action entry and history record,
/// for the caller to write with others. Cache trouble is only a warning:
/// the build goes on without it.
pub fn commit(
    graph: &Graph,
    stored: StoredBlobs,
    sigs: &TaskMap<Signature>,
    warn: &mut dyn FnMut(String),
) -> Committed {
    let StoredBlobs { job, blobs } = stored;
    let task = graph.task(job.id);
    let sig = &sigs[job.id];
    let entry = match (task.nostamp, blobs) {
        (true, _) => None,
        (false, Err(e)) => {
            warn(format!("{}: {}", task.id, StoreError::Io(e)));
            None
        }
        (false, Ok(b)) => {
            let entries = with_blobs(job.entries, b);
            let (file, _) = entry_file(&task.id, &sig.hash, entries, job.duration_ms);
            Some((file, sig.hash.clone()))
        }
    };
    let record = Record {
        task: task.id.clone(),
        signature: sig.hash.clone(),
        parts: sig.parts.clone(),
        duration_ms: Some(job.duration_ms),
    };
    Committed { entry, record }
}

/// Why `id` is or is not covered by the cache, one line per reason, like
/// `bitbake-diffsigs`.
pub fn explain(graph: &Graph, id: TaskId, sigs: &TaskMap<Signature>, cache: &Cache) -> Vec<String> {
    let task = graph.task(id);
    let Signature { parts, hash: sig } = &sigs[id];
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
        Lookup::Corrupt(why) | Lookup::Untrusted(why) => out.push(format!("not cached: {why}")),
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
    sigs: &TaskMap<Signature>,
    cache: Option<&Cache>,
    durations: &[u64],
) -> Vec<String> {
    let covered = TaskMap::from_fn(graph, |id| {
        !graph.task(id).nostamp
            && cache.is_some_and(|c| matches!(c.lookup(&sigs[id].hash), Lookup::Hit(_)))
    });
    // Covered tasks weigh nothing, as in a real run.
    let weights: Vec<u64> = graph
        .ids()
        .map(|id| {
            if covered[id] {
                0
            } else {
                durations[id.index()]
            }
        })
        .collect();
    let sim = crate::simulate::simulate(graph, &weights, &weights, Policy::CriticalPath, 1);
    let mut order: Vec<TaskId> = graph.ids().collect();
    order.sort_by_key(|&id| (sim.starts[id.index()], covered[id], id));
    let cached = covered.iter().filter(|&&c| c).count();
    let mut out = vec![format!(
        "{} tasks: {} to run, {} covered by the cache",
        graph.len(),
        graph.len() - cached,
        cached
    )];
    out.extend(order.iter().map(|&id| {
        let mark = if covered[id] { "cached" } else { "run" };
        format!("{mark:<7}{}", graph.task(id).id)
    }));
    out
}
