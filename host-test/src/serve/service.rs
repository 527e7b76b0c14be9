//! The service's state and its verbs: accept a build (checked whole before
//! anything is created), cancel one, find a live one, say what runs.
//!
//! Knows builds and their limits; knows nothing of HTTP or of the page.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use serde_json::{Map, Value};

use super::db::{Db, NewBuild};
use super::metrics::Gauges;
use super::runner::{self, Job, Live, Shared};

/// What the operator allowed.
pub struct Limits {
    /// Builds that run at once (`--max-builds`).
    pub max_builds: usize,
    /// Builds waiting beyond this many are refused (429).
    pub max_queued: usize,
    /// Where a request may name a workspace (canonical paths).
    pub workspace_roots: Vec<PathBuf>,
    /// Fresh workspaces go under this directory, one per build id.
    pub builds_dir: PathBuf,
    /// How a request's options are read.
    pub read_options: runner::ReadOptions,
}

/// The running service.
pub struct Service {
    pub shared: Arc<Shared>,
    pub limits: Limits,
    live: Mutex<HashMap<u64, Arc<Live>>>,
}

/// Why a request was refused: the HTTP status and the one-line reason.
#[derive(Debug)]
pub struct Refusal(pub u16, pub String);

fn bad(msg: impl Into<String>) -> Refusal {
    Refusal(400, msg.into())
}

/// `POST /api/builds`' body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Submission {
    graph: Value,
    #[serde(default)]
    workspace: Option<String>,
    #[serde(default)]
    options: Map<String, Value>,
}

impl Service {
    pub fn new(shared: Arc<Shared>, limits: Limits) -> Arc<Service> {
        Arc::new(Service {
            shared,
            limits,
            live: Mutex::new(HashMap::new()),
        })
    }

    pub fn db(&self) -> &Db {
        &self.shared.db
    }

    fn live_map(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Live>>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The build `id`, if it has not finished.
    pub fn live(&self, id: u64) -> Option<Arc<Live>> {
        self.live_map().get(&id).cloned()
    }

    /// Accepts a build: `body` is checked whole (graph, options,
    /// workspace, the queue's room) before anything is recorded.
    pub async fn submit(self: &Arc<Self>, body: &[u8]) -> Result<u64, Refusal> {
        let sub: Submission =
            serde_json::from_slice(body).map_err(|e| bad(format!("invalid request: {e}")))?;
        if !sub.graph.is_object() {
            return Err(bad("invalid request: \"graph\" must be a graph object"));
        }
        let submitted = (self.limits.read_options)(&sub.options).map_err(bad)?;
        let workspace = sub
            .workspace
            .as_deref()
            .map(|w| self.named_workspace(w))
            .transpose()?;
        let graph = sub.graph.to_string();
        let summary = match self.shared.rq.check(&graph).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                let e = crate::from_wit_error(e);
                return Err(bad(runqueue::cli::error_exit("in the request", &e).1));
            }
            Err(e) => return Err(bad(e.to_string())),
        };
        if self.live_map().len() >= self.limits.max_builds + self.limits.max_queued {
            let why = format!("the queue is full ({} builds wait)", self.limits.max_queued);
            return Err(Refusal(429, why));
        }
        let new = NewBuild {
            workspace: &workspace
                .as_deref()
                .map_or(String::new(), |p| p.display().to_string()),
            options: &Value::Object(sub.options).to_string(),
            graph: &graph,
            tasks: summary.tasks as u64,
        };
        let id = self
            .shared
            .db
            .insert(&new)
            .map_err(|e| Refusal(500, e.to_string()))?;
        let workspace = workspace.unwrap_or_else(|| self.limits.builds_dir.join(id.to_string()));
        let _ = self
            .shared
            .db
            .set_workspace(id, &workspace.display().to_string());
        self.shared.metrics.submitted();
        self.start(Job {
            id,
            graph,
            submitted,
            workspace,
        });
        Ok(id)
    }

    /// A workspace a request names: an existing directory under one of
    /// the `--workspace-root`s.
    fn named_workspace(&self, given: &str) -> Result<PathBuf, Refusal> {
        let path = Path::new(given)
            .canonicalize()
            .map_err(|e| bad(format!("workspace {given}: {e}")))?;
        if !path.is_dir() {
            return Err(bad(format!("workspace {given}: not a directory")));
        }
        match self
            .limits
            .workspace_roots
            .iter()
            .any(|r| path.starts_with(r))
        {
            true => Ok(path),
            false => Err(bad(format!(
                "workspace {given}: not under a --workspace-root"
            ))),
        }
    }

    /// Runs `job` on its own task; when the last running build ends, what
    /// tasks left behind is killed.
    fn start(self: &Arc<Self>, job: Job) {
        let live = Live::new();
        self.live_map().insert(job.id, live.clone());
        let service = self.clone();
        tokio::spawn(async move {
            let id = job.id;
            runner::run(service.shared.clone(), job, live).await;
            let idle = {
                let mut map = service.live_map();
                map.remove(&id);
                map.is_empty()
            };
            if idle {
                crate::process::strays::kill(None);
            }
        });
    }

    /// Asks build `id` to stop: the first time nothing new starts, the
    /// second its running tasks are killed. `false`: it is not live.
    pub fn cancel(&self, id: u64) -> bool {
        let Some(live) = self.live(id) else {
            return false;
        };
        live.cancel.send_modify(|n| *n += 1);
        self.shared.pool.stop_waiting(id);
        true
    }

    /// Builds running and waiting, and the shared slots.
    pub fn gauges(&self) -> Gauges {
        let map = self.live_map();
        let running = map
            .values()
            .filter(|l| l.started.load(Ordering::Relaxed))
            .count();
        Gauges {
            running,
            queued: map.len() - running,
            slots_in_use: self.shared.pool.in_use(),
            slots: self.shared.pool.total(),
        }
    }
}
