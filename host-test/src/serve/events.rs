//! A build's progress events as the service records and streams them: one
//! JSON object per event with a `type` (`state`, `planned`, `started`,
//! `held`, `finished`, `warning`), numbered from 1 within the build.
//!
//! Knows the component's events and the JSON shape; knows nothing of HTTP.

use std::sync::Arc;

use serde_json::{json, Value};
use tokio::sync::watch;

use super::db::{Db, TaskRow};
use super::metrics::Metrics;
use crate::{outputs, Event, TaskState};

/// Where one build's events go: the database, then a bump of `seq` for
/// the streams that follow the build.
pub struct Recorder {
    pub db: Arc<Db>,
    pub build: u64,
    pub seq: watch::Sender<u64>,
    pub metrics: Arc<Metrics>,
}

impl Recorder {
    /// Records `data` (and the task row it changes); a database that
    /// cannot be written loses the event, saying so once per event.
    pub fn record(&self, data: &Value, task: Option<&TaskRow<'_>>) {
        match self.db.append(self.build, &data.to_string(), task) {
            Ok(seq) => {
                self.seq.send_replace(seq);
            }
            Err(e) => eprintln!(
                "runqueue serve: cannot record an event of build {}: {e}",
                self.build
            ),
        }
    }

    /// The build moved to `state`.
    pub fn state(&self, state: &str, extra: Value) {
        let mut data = json!({"type": "state", "state": state});
        if let (Value::Object(d), Value::Object(x)) = (&mut data, extra) {
            d.extend(x);
        }
        self.record(&data, None);
    }

    /// One of the component's events.
    pub fn event(&self, event: Event) {
        self.metrics.count(&event);
        match event {
            Event::Planned(p) => self.record(
                &json!({"type": "planned", "total": p.total, "cached": p.cached}),
                None,
            ),
            Event::Started(s) => {
                let data = json!({"type": "started", "id": s.id, "pid": s.pid,
                    "at_ms": s.at_ms, "running": s.running, "log": s.log});
                let row = TaskRow {
                    id: &s.id,
                    state: "running",
                    start_ms: Some(s.at_ms),
                    end_ms: None,
                    log: Some(&s.log),
                    message: None,
                };
                self.record(&data, Some(&row));
            }
            Event::Held(h) => self.record(&json!({"type": "held", "id": h.id, "why": h.why}), None),
            Event::Warning(w) => self.record(&json!({"type": "warning", "message": w}), None),
            Event::Finished(t) => {
                let task = serde_json::to_value(outputs::json_task(&t)).expect("json");
                let row = TaskRow {
                    id: &t.id,
                    state: outputs::state_name(t.state),
                    start_ms: t.start_ms,
                    end_ms: t.end_ms,
                    log: t.log.as_deref().filter(|_| t.state != TaskState::Cached),
                    message: t.message.as_deref(),
                };
                self.record(&json!({"type": "finished", "task": task}), Some(&row));
            }
        }
    }
}
