//! `wasi:http` for the remote cache, and nothing else: the component's
//! requests may reach the configured cache's origin (scheme, host and
//! port) only; any other request is denied before a connection is made.
//! Plain-HTTP requests reuse keep-alive connections (wasmtime-wasi-http's
//! own sender opens one per request: thousands of lookups then pay a
//! connect each and, at high rates, get connections reset).

use std::future::Future;
use std::sync::{Arc, Mutex};

use http_body_util::BodyExt;
use hyper::client::conn::http1::SendRequest;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

/// Where the remote cache is and how to use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteCache {
    /// The base URL: `{url}/cas/{sha256}`, `{url}/ac/{signature}`.
    pub url: String,
    /// Only read from it (an sstate mirror); never upload.
    pub read_only: bool,
    /// How long one request may take.
    pub timeout: std::time::Duration,
    /// Requests in flight at once.
    pub concurrency: u32,
}

/// Each request may take this long by default.
pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Requests in flight at once by default.
pub const DEFAULT_CONCURRENCY: u32 = 16;

impl RemoteCache {
    /// A remote at `url` with the default timeout and concurrency; `Err`
    /// says why the URL is unusable.
    pub fn new(url: &str) -> Result<RemoteCache, String> {
        origin_of(url)?;
        Ok(RemoteCache {
            url: url.trim_end_matches('/').to_string(),
            read_only: false,
            timeout: DEFAULT_TIMEOUT,
            concurrency: DEFAULT_CONCURRENCY,
        })
    }
}

/// The (scheme, authority) of an `http://` or `https://` URL.
pub fn origin_of(url: &str) -> Result<(String, String), String> {
    runqueue::remote::check_url(url)?;
    let shown = runqueue::remote::hide_password(url);
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("remote cache \"{shown}\" is not a URL: {e}"))?;
    match (uri.scheme_str(), uri.authority()) {
        (Some(s @ ("http" | "https")), Some(a)) => Ok((s.to_string(), a.as_str().to_string())),
        _ => Err(format!(
            "remote cache \"{shown}\" is not an http:// or https:// URL with a host"
        )),
    }
}

/// `wasi:http` hooks allowing requests to one origin; `None` allows none.
#[derive(Default)]
pub struct OriginOnly(pub Option<(String, String)>, Pool);

impl OriginOnly {
    /// Hooks for `origin` (from [`origin_of`]), or none allowed.
    pub fn new(origin: Option<(String, String)>) -> OriginOnly {
        OriginOnly(origin, Pool::default())
    }

    fn allows(&self, uri: &http::Uri) -> bool {
        match &self.0 {
            Some((scheme, authority)) => {
                uri.scheme_str() == Some(scheme.as_str())
                    && uri.authority().map(|a| a.as_str()) == Some(authority.as_str())
            }
            None => false,
        }
    }
}

type Sent = Box<
    dyn Future<
            Output = wasmtime_wasi_http::Result<(
                http::Response<WasiBody>,
                Box<dyn Future<Output = Result<(), Error>> + Send>,
            )>,
        > + Send,
>;

impl WasiHttpHooks for OriginOnly {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Sent {
        if !self.allows(request.uri()) {
            return Box::new(async { Err(Error::HttpRequestDenied) });
        }
        match request.uri().scheme_str() {
            Some("http") => Box::new(send_pooled(self.1.clone(), request)),
            _ => wasmtime_wasi_http::default_hooks().send_request(request, options, fut),
        }
    }
}

/// Idle keep-alive connections to the origin. A connection goes back right
/// after its response head arrives and is taken again only once it is
/// ready, i.e. once that response's body has been read.
#[derive(Clone, Default)]
struct Pool(Arc<Mutex<Vec<SendRequest<WasiBody>>>>);

impl Pool {
    fn take(&self) -> Option<SendRequest<WasiBody>> {
        let mut idle = self.0.lock().expect("not poisoned");
        idle.retain(|s| !s.is_closed());
        let at = idle.iter().position(|s| s.is_ready())?;
        Some(idle.swap_remove(at))
    }

    fn give_back(&self, sender: SendRequest<WasiBody>) {
        if !sender.is_closed() {
            self.0.lock().expect("not poisoned").push(sender);
        }
    }
}

/// Sends `request` over an idle connection of `pool`, or a new one. A
/// stale connection fails the request; the component tries again.
async fn send_pooled(
    pool: Pool,
    request: http::Request<WasiBody>,
) -> wasmtime_wasi_http::Result<(
    http::Response<WasiBody>,
    Box<dyn Future<Output = Result<(), Error>> + Send>,
)> {
    let mut sender = match pool.take() {
        Some(sender) => sender,
        None => {
            let uri = request.uri();
            let host = uri.host().ok_or(Error::HttpRequestUriInvalid)?;
            let port = uri.port_u16().unwrap_or(80);
            let stream = tokio::net::TcpStream::connect((host, port))
                .await
                .map_err(Error::Connect)?;
            let _ = stream.set_nodelay(true);
            let (sender, connection) =
                hyper::client::conn::http1::handshake(wasmtime_wasi_http::io::TokioIo::new(stream))
                    .await?;
            tokio::spawn(connection);
            sender
        }
    };
    // HTTP/1.1 sends the path; the Host header carries the authority.
    let (mut parts, body) = request.into_parts();
    parts.uri = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .parse()
        .map_err(|_| Error::HttpRequestUriInvalid)?;
    let response = sender
        .send_request(http::Request::from_parts(parts, body))
        .await?;
    pool.give_back(sender);
    let response = response.map(|body| body.map_err(Error::from).boxed_unsync());
    Ok((response, Box::new(async { Ok(()) })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_configured_origin_is_allowed() {
        let hooks = OriginOnly::new(Some(origin_of("http://127.0.0.1:8080/cache").unwrap()));
        let ok: http::Uri = "http://127.0.0.1:8080/cache/ac/00".parse().unwrap();
        assert!(hooks.allows(&ok));
        for other in [
            "http://127.0.0.1:8081/cache/ac/00",
            "https://127.0.0.1:8080/cache/ac/00",
            "http://example.com/cache/ac/00",
            "http://localhost:8080/cache/ac/00",
        ] {
            assert!(!hooks.allows(&other.parse().unwrap()), "{other}");
        }
        assert!(!OriginOnly::new(None).allows(&ok));
        assert!(origin_of("ftp://x/").is_err());
        assert!(origin_of("not a url").is_err());
    }
}
