//! The service's records: builds, their tasks and every event, in SQLite
//! (WAL mode) under the data directory, so the history survives restarts
//! and a kill -9 leaves it whole (each change is one transaction).
//!
//! Knows tables and rows; knows nothing of HTTP or of running builds.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS builds (
    id          INTEGER PRIMARY KEY,
    state       TEXT NOT NULL,
    created_ms  INTEGER NOT NULL,
    started_ms  INTEGER,
    finished_ms INTEGER,
    workspace   TEXT NOT NULL,
    options     TEXT NOT NULL,
    graph       TEXT NOT NULL,
    tasks       INTEGER NOT NULL,
    report      TEXT,
    error       TEXT
);
CREATE TABLE IF NOT EXISTS tasks (
    build     INTEGER NOT NULL,
    id        TEXT NOT NULL,
    state     TEXT NOT NULL,
    start_ms  INTEGER,
    end_ms    INTEGER,
    log       TEXT,
    message   TEXT,
    PRIMARY KEY (build, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    build INTEGER NOT NULL,
    seq   INTEGER NOT NULL,
    data  TEXT NOT NULL,
    PRIMARY KEY (build, seq)
) WITHOUT ROWID;
";

/// The states a build moves through; the last four are final.
pub const QUEUED: &str = "queued";
pub const RUNNING: &str = "running";
pub const INTERRUPTED: &str = "interrupted";

/// One build's row.
#[derive(Debug, Clone)]
pub struct BuildRow {
    pub id: u64,
    pub state: String,
    pub created_ms: u64,
    pub started_ms: Option<u64>,
    pub finished_ms: Option<u64>,
    pub workspace: String,
    pub tasks: u64,
    pub report: Option<Value>,
    pub error: Option<String>,
}

/// A build as submitted.
pub struct NewBuild<'a> {
    pub workspace: &'a str,
    pub options: &'a str,
    pub graph: &'a str,
    pub tasks: u64,
}

/// The database, one connection shared under a lock (every statement is
/// short).
pub struct Db(Mutex<Connection>);

impl Db {
    /// Opens (or creates) `dir/service.db`; builds that were queued or
    /// running when the service last stopped are marked interrupted, and
    /// their ids returned.
    pub fn open(dir: &Path) -> Result<(Db, Vec<u64>), String> {
        let conn = Connection::open(dir.join("service.db")).map_err(|e| e.to_string())?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(|e| e.to_string())?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(format!("journal mode {mode}, not WAL"));
        }
        let setup = conn
            .execute_batch("PRAGMA synchronous = NORMAL")
            .and_then(|()| conn.busy_timeout(std::time::Duration::from_secs(5)))
            .and_then(|()| conn.execute_batch(SCHEMA));
        setup.map_err(|e| e.to_string())?;
        let db = Db(Mutex::new(conn));
        let gone = db.interrupt_unfinished().map_err(|e| e.to_string())?;
        Ok((db, gone))
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn interrupt_unfinished(&self) -> rusqlite::Result<Vec<u64>> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let ids: Vec<u64> = tx
            .prepare("SELECT id FROM builds WHERE state IN (?1, ?2)")?
            .query_map(params![QUEUED, RUNNING], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let now = now_ms();
        for &id in &ids {
            tx.execute(
                "UPDATE builds SET state = ?1, finished_ms = ?2 WHERE id = ?3",
                params![INTERRUPTED, now, id],
            )?;
            tx.execute(
                "UPDATE tasks SET state = ?1 WHERE build = ?2 AND state = 'running'",
                params![INTERRUPTED, id],
            )?;
            let data = serde_json::json!({"type": "state", "state": INTERRUPTED}).to_string();
            append_in(&tx, id, &data)?;
        }
        tx.commit()?;
        Ok(ids)
    }

    /// Records a new queued build; its id.
    pub fn insert(&self, b: &NewBuild<'_>) -> rusqlite::Result<u64> {
        let conn = self.lock();
        conn.execute(
            "INSERT INTO builds (state, created_ms, workspace, options, graph, tasks)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![QUEUED, now_ms(), b.workspace, b.options, b.graph, b.tasks],
        )?;
        Ok(conn.last_insert_rowid() as u64)
    }

    /// A build's workspace, once it is known (a fresh one is named by id).
    pub fn set_workspace(&self, id: u64, workspace: &str) -> rusqlite::Result<()> {
        self.lock().execute(
            "UPDATE builds SET workspace = ?1 WHERE id = ?2",
            params![workspace, id],
        )?;
        Ok(())
    }

    /// Moves a build to `state`, stamping when it started or finished.
    pub fn set_state(&self, id: u64, state: &str) -> rusqlite::Result<()> {
        let column = match state {
            RUNNING => "started_ms",
            _ => "finished_ms",
        };
        let sql = format!("UPDATE builds SET state = ?1, {column} = ?2 WHERE id = ?3");
        self.lock().execute(&sql, params![state, now_ms(), id])?;
        Ok(())
    }

    /// Ends a build: its final state, its report or why it has none.
    pub fn finish(
        &self,
        id: u64,
        state: &str,
        report: Option<&Value>,
        error: Option<&str>,
    ) -> rusqlite::Result<()> {
        self.lock().execute(
            "UPDATE builds SET state = ?1, finished_ms = ?2, report = ?3, error = ?4 WHERE id = ?5",
            params![state, now_ms(), report.map(Value::to_string), error, id],
        )?;
        Ok(())
    }

    /// Appends event `data` (JSON text) to build `id`'s stream and, for a
    /// task's start or end, updates its row; the event's sequence number.
    pub fn append(&self, id: u64, data: &str, task: Option<&TaskRow>) -> rusqlite::Result<u64> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let seq = append_in(&tx, id, data)?;
        if let Some(t) = task {
            tx.execute(
                "INSERT INTO tasks (build, id, state, start_ms, end_ms, log, message)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (build, id) DO UPDATE SET state = ?3,
                   start_ms = coalesce(?4, start_ms), end_ms = ?5,
                   log = coalesce(?6, log), message = ?7",
                params![id, t.id, t.state, t.start_ms, t.end_ms, t.log, t.message],
            )?;
        }
        tx.commit()?;
        Ok(seq)
    }

    /// Build `id`'s events after `after`, in order: (seq, JSON text).
    pub fn events(&self, id: u64, after: u64) -> rusqlite::Result<Vec<(u64, String)>> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT seq, data FROM events WHERE build = ?1 AND seq > ?2 ORDER BY seq",
        )?;
        let rows = stmt.query_map(params![id, after], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect()
    }

    /// One build.
    pub fn get(&self, id: u64) -> rusqlite::Result<Option<BuildRow>> {
        let conn = self.lock();
        conn.query_row(
            &format!("{SELECT_BUILD} WHERE id = ?1"),
            params![id],
            build_row,
        )
        .optional()
    }

    /// A build's state and workspace, without reading its report (for the
    /// requests that need no more: cancel, events, logs).
    pub fn brief(&self, id: u64) -> rusqlite::Result<Option<(String, String)>> {
        let conn = self.lock();
        conn.query_row(
            "SELECT state, workspace FROM builds WHERE id = ?1",
            params![id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
    }

    /// Up to `limit` builds older than `before` (all, for `None`), newest
    /// first.
    pub fn list(&self, before: Option<u64>, limit: u32) -> rusqlite::Result<Vec<BuildRow>> {
        let conn = self.lock();
        let sql = format!("{SELECT_BUILD} WHERE id < ?1 ORDER BY id DESC LIMIT ?2");
        let mut stmt = conn.prepare_cached(&sql)?;
        let before = before.unwrap_or(i64::MAX as u64);
        let rows = stmt.query_map(params![before, limit], build_row)?;
        rows.collect()
    }

    /// The log file of task `task` of build `id`, relative to its
    /// workspace, once the task started.
    pub fn task_log(&self, id: u64, task: &str) -> rusqlite::Result<Option<(String, String)>> {
        let conn = self.lock();
        conn.query_row(
            "SELECT log, state FROM tasks WHERE build = ?1 AND id = ?2 AND log IS NOT NULL",
            params![id, task],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
    }
}

/// A task's row as an event changes it.
pub struct TaskRow<'a> {
    pub id: &'a str,
    pub state: &'a str,
    pub start_ms: Option<u64>,
    pub end_ms: Option<u64>,
    pub log: Option<&'a str>,
    pub message: Option<&'a str>,
}

const SELECT_BUILD: &str =
    "SELECT id, state, created_ms, started_ms, finished_ms, workspace, tasks, report, error FROM builds";

fn build_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<BuildRow> {
    let report: Option<String> = r.get(7)?;
    Ok(BuildRow {
        id: r.get(0)?,
        state: r.get(1)?,
        created_ms: r.get(2)?,
        started_ms: r.get(3)?,
        finished_ms: r.get(4)?,
        workspace: r.get(5)?,
        tasks: r.get(6)?,
        report: report.and_then(|t| serde_json::from_str(&t).ok()),
        error: r.get(8)?,
    })
}

fn append_in(tx: &rusqlite::Transaction<'_>, id: u64, data: &str) -> rusqlite::Result<u64> {
    let last: u64 = tx.query_row(
        "SELECT coalesce(max(seq), 0) FROM events WHERE build = ?1",
        params![id],
        |r| r.get(0),
    )?;
    tx.execute(
        "INSERT INTO events (build, seq, data) VALUES (?1, ?2, ?3)",
        params![id, last + 1, data],
    )?;
    Ok(last + 1)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unfinished_builds_are_interrupted_at_the_next_open() {
        let dir = tempfile::tempdir().unwrap();
        let (db, gone) = Db::open(dir.path()).unwrap();
        assert!(gone.is_empty());
        let new = NewBuild {
            workspace: "w",
            options: "{}",
            graph: "{}",
            tasks: 1,
        };
        let (a, b) = (db.insert(&new).unwrap(), db.insert(&new).unwrap());
        db.set_state(a, RUNNING).unwrap();
        db.finish(b, "succeeded", None, None).unwrap();
        let row = TaskRow {
            id: "t",
            state: "running",
            start_ms: Some(1),
            end_ms: None,
            log: Some("l"),
            message: None,
        };
        assert_eq!(db.append(a, "{}", Some(&row)).unwrap(), 1);
        drop(db);
        let (db, gone) = Db::open(dir.path()).unwrap();
        assert_eq!(gone, vec![a]);
        assert_eq!(db.get(a).unwrap().unwrap().state, INTERRUPTED);
        assert_eq!(db.get(b).unwrap().unwrap().state, "succeeded");
        assert_eq!(db.events(a, 0).unwrap().len(), 2);
        assert_eq!(
            db.task_log(a, "t").unwrap(),
            Some(("l".into(), INTERRUPTED.into()))
        );
        let ids: Vec<u64> = db.list(None, 10).unwrap().iter().map(|r| r.id).collect();
        assert_eq!(ids, vec![b, a]);
    }
}
