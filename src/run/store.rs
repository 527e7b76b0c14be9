//! Keeping what succeeded tasks produced: their files into the cache's
//! blobs on the host, then their action entries and outputs records, the
//! history journal, and at the end the write-through to a remote cache.
//!
//! Knows the run's state and the cache's files; knows nothing of starting
//! or ordering tasks.

use super::{Done, Run};
use crate::cache::reuse::{check_outputs, commit, store_blobs, PendingStore, StoredBlobs};
use crate::cache::usage::REFRESH_SECS;
use crate::cache::{file_paths, record_file};
use crate::graph::TaskId;
use crate::remote;
use crate::run::report::{Ended, ExitStatus, Outcome};
use crate::seams::Event;

impl<'a, 'g> Run<'a, 'g> {
    /// A task's blobs are stored: its action entry and outputs record are
    /// written, its run waits to be recorded, and its dependents, whose
    /// signatures cover its outputs, may start.
    pub(super) fn stored(&mut self, stored: StoredBlobs) {
        let id = stored.job.id;
        let cache = self.config.cache.as_ref().expect("only a cache stores");
        let mut warnings = Vec::new();
        let mut warn = |w| warnings.push(w);
        let mut committed = commit(self.graph, stored, &mut self.sigs, cache, &mut warn);
        committed.record.peak_bytes = self.records[id].peak_memory;
        self.history.push(committed.record);
        // The record is written before the entry: a build killed between
        // the two leaves a record no entry uses (harmless), never an entry
        // without its record (no cutoff past it, and a warning).
        if let Some(record) = &committed.outputs {
            self.entries.push(record_file(record));
        }
        if let Some(((rel, bytes), sig)) = committed.entry {
            self.entries.push((rel, cache.seal(bytes)));
            self.entry_sigs.push(sig);
        }
        self.late.ran(self.graph, id, committed.outputs.as_ref());
        self.plan.finish(id, true);
        for w in &warnings {
            self.seams.progress.event(Event::Warning(w));
        }
    }

    /// Starts writing the action entries waiting to be written, all in one
    /// job, unless a job is still writing earlier ones: an entry is written
    /// as soon as its task is stored, and when tasks end faster than the
    /// host writes, their entries gather into one job (one wake-up of the
    /// loop) rather than one each.
    pub(super) fn write_entries(&mut self) {
        let Some(cache) = &self.config.cache else {
            return;
        };
        if self.entries.is_empty() || self.writing {
            return;
        }
        self.writing = true;
        let files = std::mem::take(&mut self.entries);
        let sigs = std::mem::take(&mut self.entry_sigs);
        let writing = self.seams.files.put(cache.dir_str(), files);
        self.pending
            .push(Box::pin(async move { Done::Written(sigs, writing.await) }));
    }

    pub(super) fn written(&mut self, sigs: Vec<String>, written: Result<(), String>) {
        self.writing = false;
        match written {
            Ok(()) => self.stored.extend(sigs),
            Err(e) => {
                let msg = format!("cannot write {} action entries: {e}", sigs.len());
                self.seams.progress.event(Event::Warning(&msg));
            }
        }
    }

    /// Appends the runs waiting to be recorded once there are `at_least`.
    pub(super) fn record_history(&mut self, at_least: usize) {
        let Some(cache) = &self.config.cache else {
            return;
        };
        if self.history.is_empty() || self.history.len() < at_least {
            return;
        }
        if let Err(e) = cache.record_runs(std::mem::take(&mut self.history)) {
            let msg = format!("cannot record history: {e}");
            self.seams.progress.event(Event::Warning(&msg));
        }
    }

    /// Tells the journal of the entries found since it was last told, and
    /// every [`REFRESH_SECS`] again of those still unrestored, so that no
    /// collection takes them before they are restored.
    pub(super) fn tell_uses(&mut self) {
        let Some(cache) = &self.config.cache else {
            return;
        };
        let mut told = cache.tell_uses();
        if self.now() - self.uses_told_ms >= REFRESH_SECS * 1000 {
            self.uses_told_ms = self.now();
            let held = self.graph.ids().filter(|&id| self.covered[id].is_some());
            let sigs = held.filter_map(|id| self.records[id].signature.clone());
            told = told.and(cache.tell_used(sigs.collect()));
        }
        if let Err(e) = told {
            let msg = format!("cannot record the entries used: {e}");
            self.seams.progress.event(Event::Warning(&msg));
        }
    }

    /// Tells the journal how much of this build the cache covered.
    pub(super) fn record_build(&mut self) {
        let Some(cache) = &self.config.cache else {
            return;
        };
        let cached = self
            .records
            .iter()
            .filter(|r| r.outcome == Some(Outcome::Cached));
        let told = cache.tell_built(self.graph.len() as u64, cached.count() as u64);
        if let Err(e) = told {
            let msg = format!("cannot record the build: {e}");
            self.seams.progress.event(Event::Warning(&msg));
        }
    }

    /// A task's command succeeded: check its declared outputs (a missing or
    /// escaping one fails it) and queue them for the cache. With a cache,
    /// its dependents wait until they are stored (their signatures cover
    /// the digest of its outputs); its slot is free at once.
    pub(super) fn succeeded(&mut self, id: TaskId, duration_ms: u64) {
        let ws = &self.config.workspace;
        match check_outputs(self.graph, id, ws, duration_ms, self.seams.modes) {
            Ok(job) => {
                let storing = self.config.cache.is_some();
                self.finish(id, Ended::Exited(ExitStatus::Code(0)), storing);
                self.store(job);
            }
            Err(why) => self.finish(id, Ended::Lost(why), false),
        }
    }

    /// Starts copying a checked task's files into the cache's blobs on the
    /// host; with no files to copy, or for a nostamp task (whose outputs
    /// are not kept), goes straight to the entry and history.
    fn store(&mut self, job: PendingStore) {
        let Some(cache) = &self.config.cache else {
            return;
        };
        let paths = file_paths(&job.entries);
        if paths.is_empty() || self.graph.task(job.id).nostamp {
            let blobs = Ok(Vec::new());
            return self.stored(StoredBlobs { job, blobs });
        }
        let storing = store_blobs(job, paths, cache, self.seams.files);
        self.pending
            .push(Box::pin(async move { Done::Stored(storing.await) }));
    }

    /// Write-through: what this run stored goes up, blobs first.
    pub(super) async fn push_to_remote(&mut self) {
        let (Some(cache), Some(remote)) = (&self.config.cache, self.seams.remote) else {
            return;
        };
        if self.config.remote_read_only || self.stored.is_empty() {
            return;
        }
        let concurrency = self.config.remote_concurrency;
        let stats = remote::push(remote, cache, &self.stored, concurrency).await;
        for w in &stats.warnings {
            self.seams.progress.event(Event::Warning(w));
        }
    }
}
