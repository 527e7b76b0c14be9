//! HTTP plumbing for the service: the response body (whole, or streamed
//! from a channel), JSON and error responses, a size-capped request body,
//! percent-decoding and query strings.
//!
//! Knows HTTP/1.1 through hyper; knows nothing of builds.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body as HttpBody, Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use tokio::sync::mpsc;

/// A response body: all at once, or chunks as they come (an event stream).
pub enum Body {
    Whole(Option<Bytes>),
    Stream(mpsc::Receiver<Bytes>),
}

impl HttpBody for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Body::Whole(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Body::Stream(rx) => rx
                .poll_recv(cx)
                .map(|chunk| chunk.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Body::Whole(None))
    }
}

pub type Reply = Response<Body>;

/// A response with `status`, `content_type` and `body`.
pub fn reply(status: u16, content_type: &str, body: impl Into<Bytes>) -> Reply {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", content_type)
        .header("cache-control", "no-store")
        .header("x-content-type-options", "nosniff")
        .body(Body::Whole(Some(body.into())))
        .expect("valid response")
}

/// `value` as JSON.
pub fn json(status: u16, value: &serde_json::Value) -> Reply {
    reply(status, "application/json", value.to_string() + "\n")
}

/// `{"error": msg}` with `status`.
pub fn error(status: u16, msg: &str) -> Reply {
    json(status, &serde_json::json!({"error": msg}))
}

/// The body of `req`, at most `cap` bytes (`Err`: the response to give).
pub async fn read_body(req: Request<Incoming>, cap: usize) -> Result<Bytes, Reply> {
    let declared = req
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let too_large = || error(413, &format!("request body larger than {cap} bytes"));
    if declared.is_some_and(|n| n > cap as u64) {
        return Err(too_large());
    }
    match Limited::new(req.into_body(), cap).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(e) => Err(error(400, &format!("cannot read the request body: {e}"))),
    }
}

/// `%XX` escapes decoded; `None` when that is not UTF-8 or malformed.
pub fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b != b'%' {
            out.push(b);
            continue;
        }
        let hex = [bytes.next()?, bytes.next()?];
        let hex = std::str::from_utf8(&hex).ok()?;
        out.push(u8::from_str_radix(hex, 16).ok()?);
    }
    String::from_utf8(out).ok()
}

/// The value of `key` in the query string `query`.
pub fn query_param(query: Option<&str>, key: &str) -> Option<String> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| percent_decode(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_decoded_and_bad_ones_refused() {
        assert_eq!(
            percent_decode("a%3Ado_compile").as_deref(),
            Some("a:do_compile")
        );
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(
            query_param(Some("limit=5&before=9"), "before").as_deref(),
            Some("9")
        );
    }
}
