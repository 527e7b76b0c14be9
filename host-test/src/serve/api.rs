//! The service's routes: the JSON API under `/api`, `/metrics` and the
//! page at `/`. Every request that changes anything needs the token;
//! reads need it too unless `--public-read`.
//!
//! Knows paths, methods, status codes and JSON shapes; the verbs are
//! [`Service`]'s.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Method, Request};
use serde_json::{json, Value};

use super::db::BuildRow;
use super::http::{self, error, json, percent_decode, query_param, Reply};
use super::service::{Refusal, Service};
use super::token::Token;
use super::{page, sse, task_log};

/// Who may do what, and how much a request may carry.
pub struct Access {
    /// `None`: `--no-token`.
    pub token: Option<Token>,
    pub public_read: bool,
    pub max_body: usize,
}

/// The most builds one page of `GET /api/builds` lists.
const PAGE: u32 = 100;

/// Answers `req`.
pub async fn handle(service: Arc<Service>, access: Arc<Access>, req: Request<Incoming>) -> Reply {
    let path = req.uri().path().to_string();
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let writes = req.method() != Method::GET && req.method() != Method::HEAD;
    let open = parts == [""] || parts == ["api", "openapi.json"];
    if !open && (writes || !access.public_read) {
        let header = req.headers().get("authorization").map(|v| v.as_bytes());
        if access.token.as_ref().is_some_and(|t| !t.allows(header)) {
            let mut reply = error(
                401,
                "a valid token is required (Authorization: Bearer TOKEN)",
            );
            reply
                .headers_mut()
                .insert("www-authenticate", "Bearer".parse().expect("header"));
            return reply;
        }
    }
    match (req.method().clone(), parts.as_slice()) {
        (Method::GET, [""]) => page::page(),
        (Method::GET, ["api", "openapi.json"]) => page::openapi(),
        (Method::GET, ["metrics"]) => metrics(&service),
        (Method::GET, ["api", "builds"]) => list(&service, req.uri().query()),
        (Method::POST, ["api", "builds"]) => submit(&service, &access, req).await,
        (Method::GET, ["api", "builds", id]) => with_build(&service, id, |b| json(200, &b)),
        (Method::POST, ["api", "builds", id, "cancel"]) => cancel(&service, id),
        (Method::GET, ["api", "builds", id, "events"]) => events(&service, id, &req),
        (Method::GET, ["api", "builds", id, "tasks", task, "log"]) => {
            log(&service, id, task, req.uri().query())
        }
        (_, [""] | ["metrics"] | ["api", "builds", ..]) => error(405, "method not allowed"),
        _ => error(404, &format!("no such resource: {path}")),
    }
}

fn metrics(service: &Service) -> Reply {
    let text = service.shared.metrics.text(&service.gauges());
    http::reply(200, "text/plain; version=0.0.4", text)
}

async fn submit(service: &Arc<Service>, access: &Access, req: Request<Incoming>) -> Reply {
    let body = match http::read_body(req, access.max_body).await {
        Ok(body) => body,
        Err(reply) => return reply,
    };
    match service.submit(&body).await {
        Ok(id) => json(201, &json!({"id": id})),
        Err(Refusal(status, msg)) => error(status, &msg),
    }
}

/// `GET /api/builds?before=ID&limit=N`: newest first, and where the next
/// page starts.
fn list(service: &Service, query: Option<&str>) -> Reply {
    let before = query_param(query, "before").and_then(|b| b.parse().ok());
    let limit = query_param(query, "limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(PAGE);
    let rows = match service.db().list(before, limit.clamp(1, PAGE)) {
        Ok(rows) => rows,
        Err(e) => return error(500, &e.to_string()),
    };
    let next = (rows.len() as u32 == limit.clamp(1, PAGE)).then(|| rows.last().map(|r| r.id));
    let builds: Vec<Value> = rows.iter().map(|r| summary(r, false)).collect();
    json(
        200,
        &json!({"builds": builds, "next_before": next.flatten()}),
    )
}

/// A build as the API shows it; with its report when `full`.
fn summary(row: &BuildRow, full: bool) -> Value {
    let totals = row
        .report
        .as_ref()
        .map_or(Value::Null, |r| r["totals"].clone());
    let mut value = json!({
        "id": row.id, "state": row.state, "tasks": row.tasks, "workspace": row.workspace,
        "created_ms": row.created_ms, "started_ms": row.started_ms,
        "finished_ms": row.finished_ms, "totals": totals, "error": row.error,
    });
    if full {
        value["report"] = row.report.clone().unwrap_or(Value::Null);
    }
    value
}

/// The build `id` names, found by `find`; else the status and message.
fn found<T>(
    id: &str,
    find: impl FnOnce(u64) -> rusqlite::Result<Option<T>>,
) -> Result<(u64, T), (u16, String)> {
    let Some(id) = id.parse::<u64>().ok() else {
        return Err((404, format!("no build {id}")));
    };
    match find(id) {
        Ok(Some(row)) => Ok((id, row)),
        Ok(None) => Err((404, format!("no build {id}"))),
        Err(e) => Err((500, e.to_string())),
    }
}

/// Runs `f` on build `id`'s full summary; 404 when there is none.
fn with_build(service: &Service, id: &str, f: impl FnOnce(Value) -> Reply) -> Reply {
    match found(id, |id| service.db().get(id)) {
        Ok((_, row)) => f(summary(&row, true)),
        Err((status, msg)) => error(status, &msg),
    }
}

/// Runs `f` on build `id`'s number, state and workspace (its report is
/// not read); 404 when there is none.
fn with_brief(service: &Service, id: &str, f: impl FnOnce(u64, &str, &str) -> Reply) -> Reply {
    match found(id, |id| service.db().brief(id)) {
        Ok((id, (state, workspace))) => f(id, &state, &workspace),
        Err((status, msg)) => error(status, &msg),
    }
}

fn cancel(service: &Service, id: &str) -> Reply {
    with_brief(service, id, |id, state, _| match service.cancel(id) {
        true => json(202, &json!({"id": id, "cancelling": true})),
        false => error(409, &format!("build {id} has already ended ({state})")),
    })
}

/// `GET …/events`, from after `Last-Event-ID` (or `?after=`) if given.
fn events(service: &Arc<Service>, id: &str, req: &Request<Incoming>) -> Reply {
    let header = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok());
    let after = header
        .map(str::to_string)
        .or_else(|| query_param(req.uri().query(), "after"))
        .and_then(|a| a.trim().parse().ok())
        .unwrap_or(0);
    with_brief(service, id, |id, _, _| {
        sse::stream(service.clone(), id, after)
    })
}

/// `GET …/tasks/TASK/log?offset=N`: the log from byte N; its size in
/// `x-log-size`, where to ask from next in `x-log-next`, and the task's
/// state (`running` while it runs) in `x-task-state`.
fn log(service: &Service, id: &str, task: &str, query: Option<&str>) -> Reply {
    let Some(task) = percent_decode(task) else {
        return error(404, "no such task");
    };
    with_brief(service, id, |id, _, workspace| {
        let found = service.db().task_log(id, &task).ok().flatten();
        let Some((log, state)) = found else {
            return error(404, &format!("build {id} has no log for task {task}"));
        };
        let offset = query_param(query, "offset")
            .and_then(|o| o.parse().ok())
            .unwrap_or(0);
        match task_log::read(std::path::Path::new(workspace), &log, offset) {
            Ok((bytes, size)) => {
                let next = offset.min(size) + bytes.len() as u64;
                let mut reply = http::reply(200, "text/plain; charset=utf-8", bytes);
                let headers = reply.headers_mut();
                headers.insert("x-log-size", size.into());
                headers.insert("x-log-next", next.into());
                headers.insert("x-task-state", state.parse().expect("header"));
                reply
            }
            Err(e) => error(404, &format!("log of task {task}: {e}")),
        }
    })
}
