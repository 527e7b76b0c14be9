//! Reusing earlier results (BitBake's shared state): which tasks the cache
//! covers, what is restored before the build (setscene), what is stored
//! after a task succeeds, why a task is not covered, and what a build
//! would do.
//!
//! Knows the graph, signatures and the cache; knows nothing of processes or
//! scheduling.

use std::path::Path;

use crate::cache::cutoff::{
    equivalence, identical_to, new_record, now_secs, outputs_digest, unihash_of_outputs,
    Equivalence, OutputsRecord,
};
use crate::cache::journal::Record;
use crate::cache::signature::{differences, Signature, Signatures};
use crate::cache::{
    collect_outputs, entry_file, with_blobs, ActionEntry, Cache, Lookup, OutputEntry, StoreError,
};
use crate::graph::{Action, Graph, TaskId, TaskMap};
use crate::schedule::plan::Policy;
use crate::seams::{Blob, FileModes, Files, LocalFuture};

/// What the build does with a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Run its command.
    Run,
    /// Covered by the cache; `restored` says whether its outputs were put
    /// in the workspace (only those something needs are).
    Cached { restored: bool },
    /// Its signature waits for the outputs of a dependency that runs
    /// first: decided once that one has run (covered then, it is cut off).
    Undecided,
}

/// Decisions taken before anything runs.
pub struct Decisions {
    pub fates: TaskMap<Fate>,
    /// The entry of each covered task.
    pub entries: TaskMap<Option<ActionEntry>>,
}

/// What deciding found wrong, kept to be said once: warnings as they
/// come, and tasks whose entries or records could not serve, summarized.
#[derive(Default)]
pub struct Notes {
    pub warnings: Vec<String>,
    untrusted: Vec<String>,
    unrecorded: Vec<String>,
    disagreeing: Vec<String>,
}

impl Notes {
    /// Every note as a warning line, each summary once; empties the notes.
    pub fn take(&mut self) -> Vec<String> {
        let mut out = std::mem::take(&mut self.warnings);
        let mut summary = |tasks: &mut Vec<String>, what: &str| {
            let mut seen = std::collections::HashSet::new();
            tasks.retain(|t| seen.insert(t.clone()));
            if let Some(first) = tasks.first() {
                out.push(format!("{} task(s) {what} (first: {first})", tasks.len()));
            }
            tasks.clear();
        };
        summary(
            &mut self.untrusted,
            "run because their cache entries are not signed by a trusted key",
        );
        summary(
            &mut self.unrecorded,
            "have cache entries but no outputs record: no early cutoff past them",
        );
        summary(
            &mut self.disagreeing,
            "have an outputs record that disagrees with their cache entry: no early cutoff past them",
        );
        out
    }
}

/// Signs every task whose dependencies' unihashes are known, dependencies
/// first, and decides it ([`decide_one`]); the others are undecided. Tasks
/// in `forced` run whatever the cache holds.
pub fn decide(
    graph: &Graph,
    sigs: &mut Signatures,
    cache: &Cache,
    forced: &TaskMap<bool>,
    notes: &mut Notes,
) -> Decisions {
    let mut decided = Decisions {
        fates: TaskMap::filled(graph, Fate::Undecided),
        entries: TaskMap::filled(graph, None),
    };
    decide_more(graph, sigs, cache, forced, &mut decided, notes);
    decided
}

/// Continues [`decide`] once the cache holds more (a remote sent
/// entries): tasks that run are looked up again, and undecided ones whose
/// dependencies' unihashes are known now are decided.
pub fn decide_more(
    graph: &Graph,
    sigs: &mut Signatures,
    cache: &Cache,
    forced: &TaskMap<bool>,
    decided: &mut Decisions,
    notes: &mut Notes,
) {
    for &id in &graph.topo_order {
        let open = matches!(decided.fates[id], Fate::Run | Fate::Undecided);
        if !open || sigs.sign(graph, id).is_none() {
            continue;
        }
        if forced[id] {
            if !(sigs.cuts_off() && waits_for_outputs(graph, id)) {
                sigs.chain(id);
            }
            decided.fates[id] = Fate::Run;
            continue;
        }
        decided.entries[id] = decide_one(graph, id, sigs, cache, notes);
        decided.fates[id] = match decided.entries[id] {
            Some(_) => Fate::Cached { restored: false },
            None => Fate::Run,
        };
    }
}

/// Decides the signed task `id`: its usable entry if the cache covers it
/// (`None`: it runs). Sets its unihash if that is known now: a covered
/// task's from its outputs record, checked against its entry; a task that
/// runs chains unless its dependents wait for its outputs.
pub fn decide_one(
    graph: &Graph,
    id: TaskId,
    sigs: &mut Signatures,
    cache: &Cache,
    notes: &mut Notes,
) -> Option<ActionEntry> {
    let sig = sigs.get(id).expect("a decided task is signed").hash.clone();
    let entry = usable_entry(graph, id, &sig, cache, notes);
    match &entry {
        Some(e) if !graph.task(id).outputs.is_empty() => {
            covered_unihash(graph, id, e, sigs, cache, notes)
        }
        None if sigs.cuts_off() && waits_for_outputs(graph, id) => {}
        _ => sigs.chain(id),
    }
    entry
}

/// Whether dependents of `id`, when it runs, wait for the digest of its
/// outputs (it has declared outputs, kept in the cache) rather than chain.
fn waits_for_outputs(graph: &Graph, id: TaskId) -> bool {
    let task = graph.task(id);
    !task.nostamp && !task.outputs.is_empty()
}

/// A covered task's unihash: from its outputs record if that agrees with
/// its entry; otherwise (no record, an unusable one, or one naming other
/// outputs) it chains, noted.
fn covered_unihash(
    graph: &Graph,
    id: TaskId,
    entry: &ActionEntry,
    sigs: &mut Signatures,
    cache: &Cache,
    notes: &mut Notes,
) {
    let sig = sigs.get(id).expect("a covered task is signed");
    // An unusable record is as good as none.
    let record = cache.outputs_record(&sig.hash).and_then(Result::ok);
    let name = graph.task(id).id.clone();
    match equivalence(entry, record.as_ref()) {
        Equivalence::Known(digest) => {
            let uni = unihash_of_outputs(&digest, &sig.parts);
            sigs.set_unihash(id, uni);
        }
        Equivalence::NoRecord => {
            notes.unrecorded.push(name);
            sigs.chain(id);
        }
        Equivalence::Disagrees => {
            notes.disagreeing.push(name);
            sigs.chain(id);
        }
    }
}

/// Decides each task's fate and restores what is needed, before anything
/// runs ([`decide`]). A covered task is restored if it is final (nothing
/// depends on it), or a task that runs or is undecided depends on it,
/// directly or through other tasks, or a restored task with nothing to run
/// (an aggregate like `do_build`) depends on it; otherwise it is left
/// alone. A restore that fails (missing or corrupt blob) turns the task
/// into one that runs, which changes what its dependents' signatures can
/// be: decide again until every restore succeeds. The restores of a round
/// run at once, on the [`Files`] seam.
pub async fn setscene(
    graph: &Graph,
    sigs: &mut Signatures,
    cache: &Cache,
    seams: (&Path, &dyn FileModes, &dyn Files),
    notes: &mut Notes,
) -> Decisions {
    let (ws, modes, files) = seams;
    let mut forced = TaskMap::filled(graph, false);
    let mut restored: TaskMap<Option<String>> = TaskMap::filled(graph, None);
    loop {
        sigs.reset();
        let mut decided = decide(graph, sigs, cache, &forced, notes);
        if let Err(e) = cache.tell_uses() {
            // Before restoring: see `crate::cache::usage`.
            notes
                .warnings
                .push(format!("cannot record the entries used: {e}"));
        }
        let needed = needed(graph, &decided.fates);
        let sig_of = |id: TaskId| sigs.get(id).map(|s| s.hash.clone());
        let due: Vec<TaskId> = graph
            .ids()
            .filter(|&id| needed[id] && decided.entries[id].is_some() && restored[id] != sig_of(id))
            .collect();
        let restores = due.iter().map(|&id| {
            let entry = decided.entries[id]
                .as_ref()
                .expect("due tasks have entries");
            cache.restore(ws, entry, modes, files)
        });
        let results = futures::future::join_all(restores).await;
        let mut failed = false;
        for (id, result) in due.into_iter().zip(results) {
            let sig = sig_of(id).expect("covered tasks are signed");
            match result {
                Ok(()) => restored[id] = Some(sig),
                Err(why) => {
                    notes.warnings.push(format!(
                        "{}: cannot restore from the cache: {why}; the task runs",
                        graph.task(id).id
                    ));
                    cache.remove_entry(&sig);
                    forced[id] = true;
                    failed = true;
                }
            }
        }
        if !failed {
            for id in graph.ids() {
                if let Fate::Cached { restored: r } = &mut decided.fates[id] {
                    *r = restored[id] == sig_of(id);
                }
            }
            return decided;
        }
    }
}

/// The cache entry for signature `sig` of task `id`, if there is a sound
/// one and the task is not nostamp; a corrupt entry is removed with a
/// warning, an untrusted one is noted.
fn usable_entry(
    graph: &Graph,
    id: TaskId,
    sig: &str,
    cache: &Cache,
    notes: &mut Notes,
) -> Option<ActionEntry> {
    let task = graph.task(id);
    if task.nostamp {
        return None;
    }
    match cache.lookup(sig) {
        Lookup::Untrusted(why) => {
            notes.untrusted.push(format!("{}: {why}", task.id));
            None
        }
        Lookup::Hit(e) => match e.confined_to(&task.outputs) {
            Ok(()) => Some(e),
            Err(why) => {
                notes.warnings.push(format!(
                    "{}: the cache entry {why}; it is removed and the task runs",
                    task.id
                ));
                cache.remove_entry(sig);
                None
            }
        },
        Lookup::Miss => None,
        Lookup::Corrupt(why) => {
            notes
                .warnings
                .push(format!("{}: {why}; the task runs", task.id));
            cache.remove_entry(sig);
            None
        }
    }
}

/// Which covered tasks' outputs must be in the workspace: a task is needed
/// if it is final, or a task that runs or is undecided depends on it
/// directly or not, or a needed task with nothing to run depends on it.
fn needed(graph: &Graph, fates: &TaskMap<Fate>) -> TaskMap<bool> {
    let runs = |id: TaskId| matches!(fates[id], Fate::Run | Fate::Undecided);
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
/// copying is left to [`store`](crate::run::store), so that the build can start the next tasks
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

/// What a stored task leaves to write: its action entry and outputs record
/// (none for a nostamp task, or when its blobs could not be stored) and
/// the history record of its run.
pub struct Committed {
    /// The entry file (path relative to the cache, bytes) and its signature.
    pub entry: Option<((String, Vec<u8>), String)>,
    /// What its outputs came to, for a task with declared outputs.
    pub outputs: Option<OutputsRecord>,
    pub record: Record,
}

/// Once its blobs are stored, the task's action entry, outputs record and
/// history record, for the caller to write with others; its unihash is
/// set (from its outputs, or chained). Cache trouble is only a warning:
/// the build goes on without it.
pub fn commit(
    graph: &Graph,
    stored: StoredBlobs,
    sigs: &mut Signatures,
    cache: &Cache,
    warn: &mut dyn FnMut(String),
) -> Committed {
    let StoredBlobs { job, blobs } = stored;
    let task = graph.task(job.id);
    let sig = sigs.get(job.id).expect("a task that ran is signed").clone();
    let outputs = match (task.nostamp, blobs) {
        (true, _) => None,
        (false, Err(e)) => {
            warn(format!("{}: {}", task.id, StoreError::Io(e)));
            None
        }
        (false, Ok(b)) => Some(with_blobs(job.entries, b)),
    };
    let record = outputs
        .as_ref()
        .filter(|_| !task.outputs.is_empty())
        .map(|o| {
            let digest = outputs_digest(o);
            sigs.set_unihash(job.id, unihash_of_outputs(&digest, &sig.parts));
            let previous = previous_record(cache, &task.id);
            new_record(&task.id, &sig.hash, &digest, now_secs(), previous.as_ref())
        });
    if sigs.unihash(job.id).is_none() {
        sigs.chain(job.id);
    }
    let entry = outputs.map(|o| {
        let (file, _) = entry_file(&task.id, &sig.hash, o, job.duration_ms);
        (file, sig.hash.clone())
    });
    let history = Record {
        task: task.id.clone(),
        signature: sig.hash.clone(),
        parts: sig.parts,
        duration_ms: Some(job.duration_ms),
        peak_bytes: None,
    };
    Committed {
        entry,
        outputs: record,
        record: history,
    }
}

/// The outputs record of the last recorded run of `task`, if usable.
fn previous_record(cache: &Cache, task: &str) -> Option<OutputsRecord> {
    cache.outputs_record(&cache.last_signature(task)?)?.ok()
}

/// Why `id` is or is not covered by the cache, one line per reason, like
/// `bitbake-diffsigs`. `sigs` are as [`decide`] left them.
pub fn explain(graph: &Graph, id: TaskId, sigs: &Signatures, cache: &Cache) -> Vec<String> {
    let task = graph.task(id);
    let Some(Signature { parts, hash: sig }) = sigs.get(id) else {
        return not_decided(graph, id, sigs);
    };
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
            out.extend(cut_off_by(graph, id, sigs, cache));
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

/// For a task whose signature waits on dependencies that run first.
fn not_decided(graph: &Graph, id: TaskId, sigs: &Signatures) -> Vec<String> {
    let waits: Vec<&str> = graph
        .task(id)
        .deps
        .iter()
        .filter(|&&d| sigs.unihash(d).is_none())
        .map(|&d| graph.task(d).id.as_str())
        .collect();
    vec![
        format!("{}: signature not known yet", graph.task(id).id),
        format!(
            "not decided: its signature covers the outputs of {}, which run first \
             (see `runqueue explain` for them); if they come out identical to an earlier \
             run, it is cut off, otherwise it runs",
            waits.join(", ")
        ),
    ]
}

/// "cut off" lines for the covered task `id`: dependencies whose last run
/// left outputs identical to an earlier run's under another signature.
fn cut_off_by(graph: &Graph, id: TaskId, sigs: &Signatures, cache: &Cache) -> Vec<String> {
    let record = |d: TaskId| cache.outputs_record(&sigs.get(d)?.hash)?.ok();
    graph
        .task(id)
        .deps
        .iter()
        .filter_map(|&d| Some((d, record(d)?)))
        .filter(|(_, r)| r.reproduced())
        .map(|(d, r)| format!("cut off: {}", identical_to(&graph.task(d).id, &r)))
        .collect()
}

/// What a build would do, without doing it (`bitbake -n`): a count line,
/// then every task in the order one slot would start them, marked `run`,
/// `cached` (its signature has an entry in `cache`) or `run?` (its
/// signature waits on outputs: it runs unless they come out identical).
pub fn plan(graph: &Graph, fates: &TaskMap<Fate>, durations: &[u64]) -> Vec<String> {
    let covered = |id: TaskId| matches!(fates[id], Fate::Cached { .. });
    // Covered tasks weigh nothing, as in a real run.
    let weights: Vec<u64> = graph
        .ids()
        .map(|id| {
            if covered(id) {
                0
            } else {
                durations[id.index()]
            }
        })
        .collect();
    let sim =
        crate::schedule::simulate::simulate(graph, &weights, &weights, Policy::CriticalPath, 1);
    let mut order: Vec<TaskId> = graph.ids().collect();
    order.sort_by_key(|&id| (sim.starts[id.index()], covered(id), id));
    let count = |f: fn(&Fate) -> bool| fates.iter().filter(|x| f(x)).count();
    let cached = count(|f| matches!(f, Fate::Cached { .. }));
    let undecided = count(|f| *f == Fate::Undecided);
    let mut head = format!(
        "{} tasks: {} to run, {} covered by the cache",
        graph.len(),
        graph.len() - cached,
        cached
    );
    if undecided > 0 {
        head += &format!(" ({undecided} of those to run are cut off if their dependencies' outputs come out identical)");
    }
    let mut out = vec![head];
    out.extend(order.iter().map(|&id| {
        let mark = match fates[id] {
            Fate::Cached { .. } => "cached",
            Fate::Run => "run",
            Fate::Undecided => "run?",
        };
        format!("{mark:<7}{}", graph.task(id).id)
    }));
    out
}
