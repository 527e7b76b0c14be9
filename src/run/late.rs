//! Deciding during the build (BitBake's migrations): a task whose signature
//! waited for its dependencies' outputs is signed when it is about to
//! start, looked up (in the remote too), and then either cut off (covered:
//! it ends at once and weighs nothing in the priorities of the rest) or
//! run, once the covered outputs it reads are in the workspace.
//!
//! Part of the run loop; knows the cache and the remote only through
//! [`crate::cache::reuse`] and [`crate::remote`].

use std::collections::BTreeSet;

use futures::future::join_all;

use super::{Done, Run};
use crate::cache::cutoff::{identical_to, OutputsRecord};
use crate::cache::reuse::{decide_one, Fate};
use crate::graph::{Action, Graph, TaskId, TaskMap};
use crate::remote::Asker;
use crate::seams::Event;

/// What the run knows of cutoff decided during the build.
pub struct Late<'a> {
    /// Covered tasks decided during the build whose outputs are not in the
    /// workspace yet; restored when a task that runs needs them.
    unrestored: TaskMap<bool>,
    /// Why dependents of a task are cut off: set for tasks that ran and
    /// left outputs identical to an earlier run, and for cut-off tasks.
    reasons: TaskMap<Option<String>>,
    /// Some task was cut off since the priorities were last computed.
    reweigh: bool,
    /// Asks the remote during the build; `None` when there is none or it
    /// failed before the build (it is not asked again).
    asker: Option<Asker<'a>>,
}

impl<'a> Late<'a> {
    pub fn new(graph: &Graph, asker: Option<Asker<'a>>) -> Late<'a> {
        Late {
            unrestored: TaskMap::filled(graph, false),
            reasons: TaskMap::filled(graph, None),
            reweigh: false,
            asker,
        }
    }

    /// Why the covered task `id` is cut off, if it is.
    pub fn reason(&self, id: TaskId) -> Option<String> {
        self.reasons[id].clone()
    }

    /// Task `id` ran and its outputs are stored with `record`: if they are
    /// identical to an earlier run's, dependents cut off say so.
    pub fn ran(&mut self, graph: &Graph, id: TaskId, record: Option<&OutputsRecord>) {
        if let Some(r) = record.filter(|r| r.reproduced()) {
            self.reasons[id] = Some(identical_to(&graph.task(id).id, r));
        }
    }
}

impl<'a, 'g> Run<'a, 'g> {
    /// Signs the undecided task `id`, about to start, and decides it from
    /// the local cache; true if, not covered there, it waits for the remote
    /// (holding its slot).
    pub(super) fn decide_late(&mut self, id: TaskId) -> bool {
        let Some(sig) = self.sigs.sign(self.graph, id).map(|s| s.hash.clone()) else {
            unreachable!("a task starts once its dependencies' unihashes are known")
        };
        self.records[id].signature = Some(sig.clone());
        self.settle(id);
        let asker = self.late.asker.as_ref().filter(|a| a.usable());
        let (Some(asker), Fate::Run) = (asker, self.fates[id]) else {
            return false;
        };
        if self.graph.task(id).nostamp {
            return false;
        }
        let cache = self
            .config
            .cache
            .as_ref()
            .expect("undecided tasks need a cache");
        let pulling = asker.pull(cache, sig, self.graph.task(id).outputs.clone());
        self.pending.push(Box::pin(async move {
            pulling.await;
            Done::Pulled(id)
        }));
        true
    }

    /// The remote was asked for `id`'s entry: decide again and start it.
    pub(super) fn pulled(&mut self, id: TaskId) {
        self.settle(id);
        self.start_decided(id);
    }

    /// Says once what asking the remote during the build came to.
    pub(super) fn say_remote(&mut self) {
        if let Some(asker) = &self.late.asker {
            for w in asker.summary().warnings {
                self.seams.progress.event(Event::Warning(&w));
            }
        }
    }

    /// Decides the signed task `id` from the local cache.
    fn settle(&mut self, id: TaskId) {
        let cache = self
            .config
            .cache
            .as_ref()
            .expect("undecided tasks need a cache");
        let entry = decide_one(self.graph, id, &mut self.sigs, cache, &mut self.notes);
        if entry.is_none() {
            self.fates[id] = Fate::Run;
            return;
        }
        self.covered[id] = entry;
        self.fates[id] = Fate::Cached { restored: false };
        self.late.unrestored[id] = true;
        self.late.reweigh = true;
        let graph = self.graph;
        let why = graph
            .task(id)
            .deps
            .iter()
            .find_map(|&d| self.late.reasons[d].clone());
        self.late.reasons[id] = Some(
            why.unwrap_or_else(|| "its dependencies' outputs are as in an earlier run".into()),
        );
    }

    /// Starts the decided task `id`: a covered one ends (restored first if
    /// final), one that runs gets the covered outputs it reads first.
    pub(super) fn start_decided(&mut self, id: TaskId) {
        let due = match self.fates[id] {
            Fate::Cached { restored } if restored || !self.late.unrestored[id] => {
                return self.finish_cached(id, restored)
            }
            Fate::Cached { .. } if !self.graph.dependents[id].is_empty() => {
                return self.finish_cached(id, false)
            }
            Fate::Cached { .. } => {
                let mut due = vec![id];
                if self.graph.task(id).action == Action::Nothing {
                    due.extend(self.unrestored_above(id));
                }
                due
            }
            Fate::Run => self.unrestored_above(id),
            Fate::Undecided => unreachable!("decided first"),
        };
        match due.is_empty() {
            true => self.launch(id),
            false => self.restore_for(id, due),
        }
    }

    /// Covered tasks decided during the build, above `id` (through other
    /// such tasks), whose outputs are not in the workspace. Others above it
    /// are in place: restored before the build, or run.
    fn unrestored_above(&self, id: TaskId) -> Vec<TaskId> {
        let mut found = BTreeSet::new();
        let mut stack = vec![id];
        while let Some(at) = stack.pop() {
            for &d in &self.graph.task(at).deps {
                if self.late.unrestored[d] && found.insert(d) {
                    stack.push(d);
                }
            }
        }
        found.into_iter().collect()
    }

    /// Restores the outputs of the covered tasks `due` for `id`, which
    /// holds its slot meanwhile.
    fn restore_for(&mut self, id: TaskId, due: Vec<TaskId>) {
        self.tell_uses(); // before any blob is read: see `cache::usage`
        let cache = self
            .config
            .cache
            .as_ref()
            .expect("covered tasks need a cache");
        let (ws, modes, files) = (&self.config.workspace, self.seams.modes, self.seams.files);
        let entries: Vec<_> = due
            .iter()
            .map(|&d| self.covered[d].clone().expect("covered tasks have entries"))
            .collect();
        self.pending.push(Box::pin(async move {
            let restores = entries.iter().map(|e| cache.restore(ws, e, modes, files));
            let results = join_all(restores).await;
            Done::Restored(id, due.into_iter().zip(results).collect())
        }));
    }

    /// The outputs `id` waited for are restored (or not): start it. If its
    /// own restore failed it runs instead; if a dependency's did, it fails
    /// (that dependency already counts as done) and the broken entry goes.
    pub(super) fn restored(&mut self, id: TaskId, results: Vec<(TaskId, Result<(), String>)>) {
        let mut broken = None;
        for (d, result) in results {
            self.late.unrestored[d] = false;
            match result {
                Ok(()) => self.mark_restored(d),
                Err(why) => broken = broken.or(Some((d, why))),
            }
        }
        let Some((d, why)) = broken else {
            return self.start_decided(id);
        };
        let cache = self
            .config
            .cache
            .as_ref()
            .expect("covered tasks need a cache");
        if let Some(sig) = &self.records[d].signature {
            cache.remove_entry(sig);
        }
        let task = &self.graph.task(d).id;
        if d == id {
            let msg = format!("{task}: cannot restore from the cache: {why}; the task runs");
            self.seams.progress.event(Event::Warning(&msg));
            self.fates[id] = Fate::Run;
            self.late.reasons[id] = None;
            return self.start_decided(id);
        }
        self.records[id].end_ms = Some(self.now());
        let why = format!(
            "cannot restore the outputs of its dependency {task} from the cache: {why}; \
             its entry is removed, build again"
        );
        self.finish(id, crate::run::report::Ended::Lost(why), false);
    }

    fn mark_restored(&mut self, id: TaskId) {
        self.fates[id] = Fate::Cached { restored: true };
        let rec = &mut self.records[id];
        rec.restored = true;
        if rec.outcome.is_some() && rec.cut_off.is_none() {
            rec.message = Some("restored from the cache".to_string());
        }
    }

    /// Recomputes the priorities once tasks were cut off: they weigh 0.
    pub(super) fn reweigh(&mut self) {
        if !std::mem::take(&mut self.late.reweigh) {
            return;
        }
        for id in self.graph.ids() {
            if matches!(self.fates[id], Fate::Cached { .. }) {
                self.expected[id.index()] = 0;
            }
        }
        let priorities = self.config.policy.priorities(self.graph, &self.expected);
        self.plan.reprioritize(priorities);
    }
}
