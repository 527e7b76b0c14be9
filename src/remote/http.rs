//! The remote cache over `wasi:http`, through wstd's client. Built only
//! with the `remote-cache` feature (`runqueue-remote.wasm`): importing
//! `wasi:http` would otherwise cost every host that lacks it.

use std::time::Duration;

use futures::future::{select, Either};
use wstd::http::{Body, Client, Request};

use std::cell::RefCell;

use crate::cache::blobs::BlobSink;
use crate::remote::{Failure, Fut, Remote, MAX_ENTRY_BYTES};

pub struct HttpRemote {
    base: String,
    client: Client,
    timeout: Duration,
}

impl HttpRemote {
    /// A remote at `url` (`http://` or `https://`), each request limited to
    /// `timeout_ms`.
    /// `Err` says why the URL cannot be used.
    pub fn new(url: &str, timeout_ms: u32) -> Result<HttpRemote, String> {
        crate::remote::check_url(url)?;
        let base = url.trim_end_matches('/').to_string();
        if base.parse::<wstd::http::Uri>().is_err() {
            return Err(format!("remote cache \"{base}\" is not a URL"));
        }
        let timeout = Duration::from_millis(u64::from(timeout_ms.max(1)));
        let mut client = Client::new();
        client.set_connect_timeout(timeout);
        client.set_first_byte_timeout(timeout);
        client.set_between_bytes_timeout(timeout);
        Ok(HttpRemote {
            base,
            client,
            timeout,
        })
    }

    /// A GET of `path` under the base URL.
    fn get_request(&self, path: &str) -> Result<Request<Body>, Failure> {
        Request::get(format!("{}/{path}", self.base))
            .body(Body::empty())
            .map_err(|e| Failure::Transport(e.to_string()))
    }

    /// Sends one request and, if `wanted(status)`, hands the answer to
    /// `each` frame by frame, at most `limit` bytes of it; the status.
    async fn exchange(
        &self,
        req: Request<Body>,
        limit: u64,
        wanted: impl Fn(u16) -> bool,
        each: impl FnMut(&[u8]) -> Result<(), Failure>,
    ) -> Result<u16, Failure> {
        let work = async {
            let resp = self
                .client
                .send(req)
                .await
                .map_err(|e| classify(&e, None))?;
            let status = resp.status().as_u16();
            if wanted(status) {
                each_chunk(resp.into_body(), limit, each).await?;
            }
            Ok(status)
        };
        self.within_timeout(work).await
    }

    /// `work`, or a timeout once the request's time is up.
    async fn within_timeout<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, Failure>>,
    ) -> Result<T, Failure> {
        let deadline = wstd::task::sleep(self.timeout.into());
        match select(Box::pin(work), Box::pin(deadline)).await {
            Either::Left((r, _)) => r,
            Either::Right(_) => Err(Failure::Timeout(format!(
                "no answer within {} ms",
                self.timeout.as_millis()
            ))),
        }
    }
}

/// Hands `body` to `each` frame by frame, refused as soon as there are
/// more than `limit` bytes (whatever its Content-Length said).
async fn each_chunk(
    body: Body,
    limit: u64,
    mut each: impl FnMut(&[u8]) -> Result<(), Failure>,
) -> Result<(), Failure> {
    use wstd::http::BodyExt;
    if body.content_length().is_some_and(|n| n > limit) {
        return Err(Failure::TooLong(limit));
    }
    let mut body = body.into_boxed_body();
    let mut total = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| classify(&e, Some("reading the answer")))?;
        if let Ok(data) = frame.into_data() {
            total += data.len() as u64;
            if total > limit {
                return Err(Failure::TooLong(limit));
            }
            each(&data)?;
        }
    }
    Ok(())
}

/// A client error as a failure, by its WASI error code: timeouts are not
/// worth a retry.
fn classify(e: &wstd::http::Error, doing: Option<&str>) -> Failure {
    use wstd::http::error::ErrorCode;
    let timed_out = e.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<ErrorCode>(),
            Some(
                ErrorCode::ConnectionTimeout
                    | ErrorCode::ConnectionReadTimeout
                    | ErrorCode::ConnectionWriteTimeout
                    | ErrorCode::HttpResponseTimeout
            )
        )
    });
    let why = match doing {
        None => format!("{e:#}"),
        Some(doing) => format!("{doing}: {e:#}"),
    };
    if timed_out {
        Failure::Timeout(why)
    } else {
        Failure::Transport(why)
    }
}

impl Remote for HttpRemote {
    fn get<'a>(&'a self, path: &'a str, limit: u64) -> Fut<'a, Result<Option<Vec<u8>>, Failure>> {
        Box::pin(async move {
            let mut body = Vec::new();
            let keep = |chunk: &[u8]| {
                body.extend_from_slice(chunk);
                Ok(())
            };
            match self
                .exchange(self.get_request(path)?, limit, |_| true, keep)
                .await?
            {
                200 => Ok(Some(body)),
                404 => Ok(None),
                status => Err(Failure::Status(status)),
            }
        })
    }

    fn put<'a>(&'a self, path: &'a str, body: Vec<u8>) -> Fut<'a, Result<(), Failure>> {
        Box::pin(async move {
            let req = Request::put(format!("{}/{path}", self.base))
                .body(Body::from(body))
                .map_err(|e| Failure::Transport(e.to_string()))?;
            match self
                .exchange(req, MAX_ENTRY_BYTES, |_| true, |_| Ok(()))
                .await?
            {
                200..=299 => Ok(()),
                status => Err(Failure::Status(status)),
            }
        })
    }

    fn url(&self) -> &str {
        &self.base
    }

    fn get_into<'a>(
        &'a self,
        path: &'a str,
        limit: u64,
        sink: &'a RefCell<BlobSink>,
    ) -> Fut<'a, Result<bool, Failure>> {
        Box::pin(async move {
            // Started (again, on a retry) before the answer: even an empty
            // blob is a file.
            sink.borrow_mut().restart().map_err(Failure::Local)?;
            let keep = |chunk: &[u8]| sink.borrow_mut().write(chunk).map_err(Failure::Local);
            match self
                .exchange(self.get_request(path)?, limit, |s| s == 200, keep)
                .await?
            {
                200 => Ok(true),
                404 => Ok(false),
                status => Err(Failure::Status(status)),
            }
        })
    }
}
