//! The Remote Execution API (REAPI v2) plumbing shared by the remote
//! executor (`build --executor`) and the worker (`runqueue worker`): the
//! channel to a server, content-addressed storage and Merkle trees.

pub mod blobs;
pub mod bots;
pub mod cas;
pub mod tree;

pub use bazel_remote_apis::build::bazel::remote::execution::v2 as re;

use anyhow::{bail, Context, Result};
use tonic::transport::{Channel, Endpoint};

/// The sha256 digest of `bytes`.
pub fn digest(bytes: &[u8]) -> re::Digest {
    re::Digest {
        hash: runqueue::cache::digest::sha256_hex(bytes),
        size_bytes: bytes.len() as i64,
    }
}

/// `HOST:PORT` of a `grpc://HOST:PORT` address, or why it is not one.
pub fn authority(url: &str) -> Result<&str> {
    let Some(rest) = url.strip_prefix("grpc://") else {
        bail!("{url:?} is not a grpc://HOST:PORT address");
    };
    let ok = match rest.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0),
        None => false,
    };
    if !ok || rest.contains('/') {
        bail!("{url:?} is not a grpc://HOST:PORT address");
    }
    Ok(rest)
}

/// A lazily connected channel to the server at `url` (`grpc://HOST:PORT`,
/// plaintext HTTP/2): nothing is sent until the first call, and a broken
/// connection is re-established by the next one.
pub fn channel(url: &str) -> Result<Channel> {
    let endpoint = Endpoint::from_shared(format!("http://{}", authority(url)?))
        .with_context(|| format!("{url:?} is not a usable address"))?
        .connect_timeout(std::time::Duration::from_secs(5))
        .http2_keep_alive_interval(std::time::Duration::from_secs(30))
        .keep_alive_while_idle(true);
    Ok(endpoint.connect_lazy())
}

/// A digest as `hash/size`, the way REAPI names blobs.
pub fn show(d: &re::Digest) -> String {
    format!("{}/{}", d.hash, d.size_bytes)
}

/// Calls `f` until it succeeds, or fails for a reason other than a busy
/// or unreachable server (RESOURCE_EXHAUSTED, UNAVAILABLE), 8 times at
/// most, waiting 0.1 s, then twice as long each time (up to 3.2 s).
pub async fn patiently<T, F, Fut>(mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut wait = std::time::Duration::from_millis(100);
    for _ in 1..8 {
        match f().await {
            Err(e) if busy(&e) => tokio::time::sleep(wait).await,
            done => return done,
        }
        wait = (wait * 2).min(std::time::Duration::from_millis(3200));
    }
    f().await
}

/// Whether `e` says the server is busy or away for now.
pub fn busy(e: &anyhow::Error) -> bool {
    use tonic::Code;
    let rpc = e.chain().find_map(|c| c.downcast_ref::<Rpc>());
    rpc.is_some_and(|r| matches!(r.0.code(), Code::ResourceExhausted | Code::Unavailable))
}

/// A failed call's gRPC status, kept in an error's chain (retries look
/// at its code), shown as the code.
#[derive(Debug)]
pub struct Rpc(pub tonic::Status);

impl std::fmt::Display for Rpc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.0.code())
    }
}

impl std::error::Error for Rpc {}

/// A failed call as an error: one line (`Execute: MESSAGE`), with the
/// status beneath it (`{:#}` adds its code).
pub fn status_line(what: &str, s: &tonic::Status) -> anyhow::Error {
    let msg = s.message().lines().next().unwrap_or("");
    anyhow::Error::new(Rpc(s.clone())).context(format!("{what}: {msg}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            authority("grpc://127.0.0.1:50051").unwrap(),
            "127.0.0.1:50051"
        );
        assert_eq!(
            authority("grpc://build.example:8980").unwrap(),
            "build.example:8980"
        );
        for bad in [
            "http://a:1",
            "grpc://a",
            "grpc://:1",
            "grpc://a:0",
            "grpc://a:x",
            "grpc://a:1/b",
            "a:1",
        ] {
            assert!(authority(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn busy_servers_are_asked_again_and_others_not() {
        let fail = |code| Err::<(), _>(status_line("Call", &tonic::Status::new(code, "no")));
        let mut calls = 0;
        let r = patiently(|| {
            calls += 1;
            let reply = if calls < 3 {
                fail(tonic::Code::ResourceExhausted)
            } else {
                Ok(())
            };
            async move { reply }
        })
        .await;
        assert!(r.is_ok() && calls == 3);
        let mut calls = 0;
        let r = patiently(|| {
            calls += 1;
            async move { fail(tonic::Code::NotFound) }
        })
        .await;
        assert_eq!(
            (r.unwrap_err().to_string(), calls),
            ("Call: no".to_string(), 1)
        );
    }

    #[test]
    fn empty_digest() {
        let d = digest(b"");
        assert_eq!(
            d.hash,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(d.size_bytes, 0);
    }
}
