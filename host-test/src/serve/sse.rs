//! A build's events as Server-Sent Events: every recorded event from the
//! one after `Last-Event-ID` (or the first), each with its number as `id`,
//! then the new ones as they are recorded, until the build's final state.
//!
//! Knows the event-stream format; the events are the database's.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::http::{Body, Reply};
use super::service::Service;

/// A comment line sent when nothing happened for this long, so proxies
/// and clients see the connection is alive.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The stream of build `id`'s events after event `after`.
pub fn stream(service: Arc<Service>, id: u64, after: u64) -> Reply {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(follow(service, id, after, tx));
    hyper::Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-store")
        .body(Body::Stream(rx))
        .expect("valid response")
}

/// Sends what is recorded, then waits for more while the build is live.
async fn follow(service: Arc<Service>, id: u64, mut last: u64, tx: mpsc::Sender<Bytes>) {
    loop {
        // Subscribed before reading, so no event falls between the two.
        let mut newer = service.live(id).map(|l| l.seq.subscribe());
        let Ok(rows) = service.db().events(id, last) else {
            return;
        };
        for (seq, data) in rows {
            let frame = format!("id: {seq}\ndata: {data}\n\n");
            if tx.send(Bytes::from(frame)).await.is_err() {
                return;
            }
            last = seq;
        }
        let Some(newer) = newer.as_mut() else {
            return;
        };
        tokio::select! {
            _ = newer.changed() => {}
            () = tx.closed() => return,
            () = tokio::time::sleep(KEEP_ALIVE) => {
                if tx.send(Bytes::from_static(b": keep-alive\n\n")).await.is_err() {
                    return;
                }
            }
        }
    }
}
