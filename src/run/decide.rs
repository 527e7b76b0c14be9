//! What a run decides before its first task starts: which tasks the
//! cache covers (read through from a remote first), which run, and how
//! long each is expected to take.
//!
//! Knows the cache, the remote and history; knows nothing of processes.

use super::{Config, Seams};
use crate::cache::reuse::{setscene, Decisions, Fate, Notes};
use crate::cache::signature::Signatures;
use crate::graph::{Graph, TaskId, TaskMap};
use crate::remote;
use crate::schedule::estimate::{expected_durations, recorded_durations};
use crate::seams::Event;

/// Which tasks run, which the cache covers (restoring what is needed) and
/// which wait for their dependencies' outputs. Without a cache every task
/// runs and chains.
pub(super) async fn decide_fates(
    graph: &Graph,
    config: &Config,
    sigs: &mut Signatures,
    (seams, asker): (&mut Seams<'_>, Option<&remote::Asker<'_>>),
    notes: &mut Notes,
) -> Decisions {
    let Some(cache) = &config.cache else {
        sigs.chain_all(graph);
        let fates = TaskMap::filled(graph, Fate::Run);
        let entries = TaskMap::filled(graph, None);
        return Decisions { fates, entries };
    };
    if let Some(asker) = asker {
        pull_from_remote(graph, config, cache, sigs, (seams, asker), notes).await;
    }
    let ws = &config.workspace;
    let files = (ws.as_path(), seams.modes, seams.files);
    setscene(graph, sigs, cache, files, notes).await
}

/// Read-through: what the local cache lacks comes from the remote into the
/// local cache, checked; setscene then restores locally. A signature
/// becomes known once its dependencies' outputs are: ask, decide what is
/// known now, and ask again for what that made known, until the remote
/// adds nothing.
async fn pull_from_remote(
    graph: &Graph,
    config: &Config,
    cache: &crate::cache::Cache,
    sigs: &mut Signatures,
    (seams, asker): (&mut Seams<'_>, &remote::Asker<'_>),
    notes: &mut Notes,
) {
    let mut asked = TaskMap::filled(graph, false);
    let forced = TaskMap::filled(graph, false);
    let mut decided = crate::cache::reuse::decide(graph, sigs, cache, &forced, notes);
    loop {
        let new: Vec<TaskId> = graph
            .ids()
            .filter(|&id| !asked[id] && decided.fates[id] == Fate::Run && !graph.task(id).nostamp)
            .collect();
        let wanted: Vec<(String, &[String])> = new
            .iter()
            .map(|&id| {
                asked[id] = true;
                let sig = sigs.get(id).expect("tasks that run are signed");
                (sig.hash.clone(), graph.task(id).outputs.as_slice())
            })
            .collect();
        if wanted.is_empty() {
            return;
        }
        let stats = asker
            .pull_many(cache, &wanted, config.remote_concurrency)
            .await;
        for w in &stats.warnings {
            seams.progress.event(Event::Warning(w));
        }
        if stats.done == 0 || !asker.usable() {
            return;
        }
        crate::cache::reuse::decide_more(graph, sigs, cache, &forced, &mut decided, notes);
    }
}

/// Expected durations: what history recorded for tasks that will (or may)
/// run; covered tasks end at once and add nothing to a path.
pub(super) fn expected_for(graph: &Graph, config: &Config, fates: &TaskMap<Fate>) -> Vec<u64> {
    let runs = |id: TaskId| !matches!(fates[id], Fate::Cached { .. });
    let given = TaskMap::filled(graph, None);
    let known = recorded_durations(graph, config.cache.as_ref(), given, runs);
    let mut expected = expected_durations(graph, known.as_slice());
    for id in graph.ids().filter(|&id| !runs(id)) {
        expected[id.index()] = 0;
    }
    expected
}
