//! A cache shared across machines over HTTP, in bazel-remote's layout:
//! `GET/PUT {url}/cas/{sha256}` for blobs and `GET/PUT {url}/ac/{signature}`
//! for action entries (ours, as JSON). bazel-remote (with HTTP AC validation
//! off) and nginx with WebDAV PUT both serve it.
//!
//! Read-through: before the build, every signature the local cache lacks is
//! looked up remotely, many at once; a hit's blobs are fetched, each
//! checked against its sha256, stored locally, and the entry stored last;
//! the build then restores from the local cache as usual. Write-through:
//! after the build, the entries this run stored go up, blobs first, with
//! their outputs records (early cutoff) under `ac/` keys of their own.
//!
//! The remote never breaks a build: any failure (down, slow, 4xx/5xx, wrong
//! bytes) is a warning and a local miss. After [`GIVE_UP_AFTER`] transport
//! failures the remote is left alone for the rest of the run, so a dead
//! server costs a few timeouts, not one per task.
//!
//! Knows the cache and the layout; HTTP itself is the [`Remote`]
//! implementor's (wstd's client in the component, a map in tests).

#[cfg(all(target_arch = "wasm32", feature = "remote-cache"))]
pub(crate) mod http;

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use futures::stream::{self, StreamExt};

use crate::cache::blobs::BlobSink;
use crate::cache::cutoff::{record_key, MAX_RECORD_BYTES};
use crate::cache::{record_file, validate_entry, Cache, Lookup, OutputEntry};

/// A boxed future, not `Send`: the component has one thread.
pub type Fut<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// Why a request did not give an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No answer: connection refused, reset. Tried again up to
    /// [`RETRIES`] times (a busy server or a full port range resets some
    /// connections); then counts towards giving up on the remote.
    Transport(String),
    /// No answer in time. Not tried again (a slow server stays slow);
    /// counts towards giving up.
    Timeout(String),
    /// An answer that is not 200 (or 404 for a GET): 500, 403, ...
    Status(u16),
    /// An answer longer than the caller's limit; reading stopped there.
    TooLong(u64),
    /// The answer could not be kept here (a full disk): not the remote's
    /// fault, not tried again.
    Local(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Transport(why) | Failure::Timeout(why) => write!(f, "{why}"),
            Failure::Status(code) => write!(f, "HTTP status {code}"),
            Failure::TooLong(limit) => write!(f, "the answer is longer than {limit} bytes"),
            Failure::Local(why) => write!(f, "{why}"),
        }
    }
}

/// HTTP as the remote cache needs it. `path` is `cas/<sha256>` or
/// `ac/<signature>`, relative to the remote's base URL.
pub trait Remote {
    /// The body, or `None` for 404; a body longer than `limit` bytes is
    /// not read further ([`Failure::TooLong`]).
    fn get<'a>(&'a self, path: &'a str, limit: u64) -> Fut<'a, Result<Option<Vec<u8>>, Failure>>;
    fn put<'a>(&'a self, path: &'a str, body: Vec<u8>) -> Fut<'a, Result<(), Failure>>;
    /// The base URL, for messages.
    fn url(&self) -> &str;

    /// The body of `path` into `sink` as it arrives (restarted first), at
    /// most `limit` bytes; `Ok(false)` for 404. By default through
    /// [`Remote::get`]; a client that can stream overrides it, so a blob
    /// is never whole in memory.
    fn get_into<'a>(
        &'a self,
        path: &'a str,
        limit: u64,
        sink: &'a RefCell<BlobSink>,
    ) -> Fut<'a, Result<bool, Failure>> {
        Box::pin(async move {
            let Some(body) = self.get(path, limit).await? else {
                return Ok(false);
            };
            let mut sink = sink.borrow_mut();
            sink.restart()
                .and_then(|()| sink.write(&body))
                .map_err(Failure::Local)?;
            Ok(true)
        })
    }
}

/// The longest action entry taken from a remote: a real one is a few
/// hundred bytes per output file.
pub const MAX_ENTRY_BYTES: u64 = 1 << 20;

/// Failed requests in a row (connection failures or timeouts, after
/// retries) after which the remote is not asked again this run.
pub const GIVE_UP_AFTER: usize = 3;

/// How many times a request whose connection failed is tried again.
pub const RETRIES: usize = 4;

/// What talking to the remote came to.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Entries found remotely and stored locally (pull), or sent (push).
    pub done: usize,
    /// Lookups the remote answered 404.
    pub missing: usize,
    /// Requests that failed; the first few reasons are in `warnings`.
    pub failed: usize,
    /// Warnings to show, already summarized.
    pub warnings: Vec<String>,
}

/// Why one entry did not come down (or go up).
#[derive(Debug)]
enum Missed {
    /// Not asked: the remote had failed too often already.
    Skipped,
    /// Asked, and it failed; the text says how.
    Failed(String),
}

impl From<String> for Missed {
    fn from(why: String) -> Missed {
        Missed::Failed(why)
    }
}

/// How many failure reasons are shown before only counting.
const REASONS_SHOWN: usize = 3;

/// Counts failures and gives up on the remote after too many transport
/// errors.
struct Session<'a> {
    remote: &'a dyn Remote,
    transport_failures: Cell<usize>,
    /// Some request went unanswered (after retries).
    unanswered: Cell<bool>,
}

impl<'a> Session<'a> {
    fn new(remote: &'a dyn Remote) -> Session<'a> {
        Session {
            remote,
            transport_failures: Cell::new(0),
            unanswered: Cell::new(false),
        }
    }

    fn usable(&self) -> bool {
        self.transport_failures.get() < GIVE_UP_AFTER
    }

    /// Counts a request's outcome: an answer (any status) resets the count
    /// of failures in a row.
    fn note<T>(&self, r: &Result<T, Failure>) {
        match r {
            Err(Failure::Transport(_) | Failure::Timeout(_)) => {
                self.unanswered.set(true);
                self.transport_failures
                    .set(self.transport_failures.get() + 1)
            }
            _ => self.transport_failures.set(0),
        }
    }

    /// Sends one request (`send` makes it afresh for each try): a reset
    /// connection is tried again up to [`RETRIES`] times; the outcome counts
    /// towards giving up; the error names `method` and `path`.
    async fn request<'b, T>(
        &self,
        method: &str,
        path: &str,
        send: impl Fn() -> Fut<'b, Result<T, Failure>>,
    ) -> Result<T, Missed> {
        let mut tries = 0;
        loop {
            if !self.usable() {
                return Err(Missed::Skipped);
            }
            let r = send().await;
            if matches!(r, Err(Failure::Transport(_))) && tries < RETRIES {
                tries += 1;
                continue;
            }
            self.note(&r);
            return r.map_err(|f| Missed::Failed(format!("{method} {path}: {f}")));
        }
    }

    async fn get(&self, path: &str, limit: u64) -> Result<Option<Vec<u8>>, Missed> {
        self.request("GET", path, || self.remote.get(path, limit))
            .await
    }

    async fn get_into(
        &self,
        path: &str,
        limit: u64,
        sink: &RefCell<BlobSink>,
    ) -> Result<bool, Missed> {
        self.request("GET", path, || self.remote.get_into(path, limit, sink))
            .await
    }

    async fn put(&self, path: &str, body: Vec<u8>) -> Result<(), Missed> {
        self.request("PUT", path, || self.remote.put(path, body.clone()))
            .await
    }

    fn summarize(&self, what: &str, results: Vec<Result<bool, Missed>>) -> Stats {
        let mut stats = Stats::default();
        let mut reasons = Vec::new();
        for r in results {
            match r {
                Ok(true) => stats.done += 1,
                Ok(false) => stats.missing += 1,
                Err(Missed::Skipped) => stats.failed += 1,
                Err(Missed::Failed(why)) => {
                    stats.failed += 1;
                    if reasons.len() < REASONS_SHOWN {
                        reasons.push(why);
                    }
                }
            }
        }
        if stats.failed > 0 {
            stats.warnings.push(format!(
                "remote cache {}: {} of {} {what} failed ({}){}",
                self.remote.url(),
                stats.failed,
                stats.done + stats.missing + stats.failed,
                reasons.join("; "),
                if self.usable() {
                    String::new()
                } else {
                    format!("; gave up on it after {GIVE_UP_AFTER} failed connections")
                }
            ));
        }
        stats
    }
}

/// Checks a remote cache URL by hand (both command lines and every host
/// use it, before anything runs): `http://` or `https://`, a host, a port
/// in 1-65535 if one is given, and no credentials, which runqueue would not
/// send and must not print. The message shows the URL with any password
/// hidden.
pub fn check_url(url: &str) -> Result<(), String> {
    let shown = hide_password(url);
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("remote cache \"{shown}\" is not an http:// or https:// URL"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(format!(
            "remote cache \"{shown}\" has credentials in it, which runqueue does not send; give the URL without them"
        ));
    }
    let (host, port) = match authority.find(']') {
        // [IPv6]:port
        Some(end) if authority.starts_with('[') => {
            (&authority[..=end], authority[end + 1..].strip_prefix(':'))
        }
        _ => match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    if host.is_empty() {
        return Err(format!("remote cache \"{shown}\" names no host"));
    }
    match port.map(str::parse::<u16>) {
        Some(Ok(0) | Err(_)) => Err(format!(
            "remote cache \"{shown}\": port \"{}\" is not a number from 1 to 65535",
            port.unwrap_or_default()
        )),
        _ => Ok(()),
    }
}

/// `url` with the password of any `user:password@` replaced by `***`.
pub fn hide_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rsplit_once('@') {
        Some((user, host)) => {
            let user = user.split_once(':').map_or(user, |(u, _)| u);
            format!("{scheme}://{user}:***@{host}{}", &rest[end..])
        }
        None => url.to_string(),
    }
}

/// Fetches from the remote into `cache` every signature of `wanted` the
/// local cache does not have, `concurrency` at a time, in `session`. Each
/// comes with its task's declared outputs: an entry that would write
/// anything else is refused before its blobs are fetched.
async fn pull_in(
    session: &Session<'_>,
    cache: &Cache,
    wanted: &[(String, &[String])],
    concurrency: usize,
) -> Stats {
    let wanted: Vec<&(String, &[String])> = wanted
        .iter()
        .filter(|(sig, _)| !matches!(cache.lookup(sig), Lookup::Hit(_)))
        .collect();
    let results: Vec<Result<bool, Missed>> = stream::iter(wanted)
        .map(|(sig, outputs)| pull_one(session, cache, sig, outputs))
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    session.summarize("lookups", results)
}

/// Asks the remote for one signature at a time during the build (those
/// known only once dependencies ran), as one session: transport failures
/// add up to giving up, and [`Asker::summary`] says once what failed.
pub struct Asker<'a> {
    session: Rc<Session<'a>>,
    results: Rc<RefCell<Vec<Result<bool, Missed>>>>,
}

impl<'a> Asker<'a> {
    pub fn new(remote: &'a dyn Remote) -> Asker<'a> {
        Asker {
            session: Rc::new(Session::new(remote)),
            results: Rc::default(),
        }
    }

    /// Whether asking is still worth it: every request was answered so
    /// far (an answer may be a 403 or a bad entry: that costs a round trip,
    /// a dead or slow server costs timeouts).
    pub fn usable(&self) -> bool {
        !self.session.unanswered.get()
    }

    /// Fetches from the remote into `cache` every signature of `wanted`
    /// the local cache does not have, `concurrency` at a time. Each comes
    /// with its task's declared outputs: an entry that would write anything
    /// else is refused before its blobs are fetched.
    pub async fn pull_many(
        &self,
        cache: &Cache,
        wanted: &[(String, &[String])],
        concurrency: usize,
    ) -> Stats {
        pull_in(&self.session, cache, wanted, concurrency).await
    }

    /// Fetches the entry of `sig` (a task with declared `outputs`) into
    /// `cache` if the remote has a sound one.
    pub fn pull(&self, cache: &'a Cache, sig: String, outputs: Vec<String>) -> Fut<'a, ()> {
        let (session, results) = (self.session.clone(), self.results.clone());
        Box::pin(async move {
            let r = pull_one(&session, cache, &sig, &outputs).await;
            results.borrow_mut().push(r);
        })
    }

    /// What went wrong, as one warning (none if nothing did).
    pub fn summary(&self) -> Stats {
        let results = std::mem::take(&mut *self.results.borrow_mut());
        self.session.summarize("lookups during the build", results)
    }
}

/// One signature: `Ok(false)` if the remote does not have it.
async fn pull_one(
    session: &Session<'_>,
    cache: &Cache,
    sig: &str,
    outputs: &[String],
) -> Result<bool, Missed> {
    let Some(bytes) = session.get(&format!("ac/{sig}"), MAX_ENTRY_BYTES).await? else {
        return Ok(false);
    };
    let entry = cache
        .trusts(&bytes)
        .and_then(|()| validate_entry(sig, &bytes))
        .and_then(|e| e.confined_to(outputs).map(|()| e))
        .map_err(|why| format!("ac/{sig}: the entry {why}"))?;
    for o in &entry.outputs {
        if let OutputEntry::File { blob, size, .. } = o {
            if cache.has_blob(blob) {
                continue;
            }
            let path = format!("cas/{blob}");
            let sink = RefCell::new(BlobSink::new(cache.dir(), blob)?);
            if !session.get_into(&path, *size, &sink).await? {
                let why = format!("GET {path}: the remote has the entry but not this blob");
                return Err(why.into());
            }
            sink.into_inner()
                .finish()
                .map_err(|e| format!("GET {path}: {e}"))?;
        }
    }
    // The record first: a build killed between the two then leaves a
    // record no entry uses, never an entry without its record.
    pull_record(session, cache, sig).await?;
    cache.put_entry(sig, &bytes)?;
    Ok(true)
}

/// The outputs record of `sig`, stored locally if the remote has a sound
/// one; a missing one only means no cutoff past the task.
async fn pull_record(session: &Session<'_>, cache: &Cache, sig: &str) -> Result<(), Missed> {
    let key = record_key(sig);
    if let Some(bytes) = session.get(&key, MAX_RECORD_BYTES).await? {
        cache
            .put_record(sig, &bytes)
            .map_err(|why| format!("{key}: {why}"))?;
    }
    Ok(())
}

/// Sends the entries of `sigs` (and their blobs, first) from `cache` to
/// `remote`, `concurrency` at a time.
pub async fn push(
    remote: &dyn Remote,
    cache: &Cache,
    sigs: &[String],
    concurrency: usize,
) -> Stats {
    let session = Session::new(remote);
    let results: Vec<Result<bool, Missed>> = stream::iter(sigs)
        .map(|sig| push_one(&session, cache, sig))
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    session.summarize("uploads", results)
}

async fn push_one(session: &Session<'_>, cache: &Cache, sig: &str) -> Result<bool, Missed> {
    let Some(bytes) = cache.entry_bytes(sig) else {
        return Ok(false);
    };
    let entry = validate_entry(sig, &bytes).map_err(|why| format!("local entry {sig} {why}"))?;
    for o in &entry.outputs {
        if let OutputEntry::File { blob, .. } = o {
            session
                .put(&format!("cas/{blob}"), cache.blob_bytes(blob)?)
                .await?;
        }
    }
    session.put(&format!("ac/{sig}"), bytes).await?;
    if let Some(Ok(record)) = cache.outputs_record(sig) {
        let (_, bytes) = record_file(&record);
        session.put(&record_key(sig), bytes).await?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::digest::sha256_hex;
    use std::cell::RefCell;
    use std::collections::HashMap;

    /// A remote in memory that can be told to fail.
    #[derive(Default)]
    struct Fake {
        files: RefCell<HashMap<String, Vec<u8>>>,
        fail: Cell<Option<Failure>>,
        requests: Cell<usize>,
    }

    impl Remote for Fake {
        fn get<'a>(
            &'a self,
            path: &'a str,
            limit: u64,
        ) -> Fut<'a, Result<Option<Vec<u8>>, Failure>> {
            self.requests.set(self.requests.get() + 1);
            let r = match self.fail.take() {
                Some(f) => {
                    self.fail.set(Some(f.clone()));
                    Err(f)
                }
                None => match self.files.borrow().get(path) {
                    Some(b) if b.len() as u64 > limit => Err(Failure::TooLong(limit)),
                    found => Ok(found.cloned()),
                },
            };
            Box::pin(async move { r })
        }
        fn put<'a>(&'a self, path: &'a str, body: Vec<u8>) -> Fut<'a, Result<(), Failure>> {
            self.requests.set(self.requests.get() + 1);
            self.files.borrow_mut().insert(path.to_string(), body);
            Box::pin(async { Ok(()) })
        }
        fn url(&self) -> &str {
            "http://fake"
        }
    }

    /// A cache holding one entry for `sig` with one file of `content`.
    fn cache_with(dir: &std::path::Path, sig: &str, content: &[u8]) -> Cache {
        let cache = Cache::new(dir);
        let blob = sha256_hex(content);
        cache.put_blob(&blob, content).unwrap();
        let entry = format!(
            r#"{{"format":{},"task":"t","signature":"{sig}","outputs":[{{"kind":"file","path":"out","blob":"{blob}","size":{},"mode":420}}],"exit_code":0,"duration_ms":5,"stored_at":0}}"#,
            crate::cache::CACHE_FORMAT,
            content.len()
        );
        cache
            .put_entry(sig, entry.as_bytes())
            .expect("a valid entry");
        cache
    }

    /// Each signature, for a task declaring `out` (as [`cache_with`] stores).
    fn want(sigs: &[String]) -> Vec<(String, &'static [String])> {
        let outputs: &'static [String] = Box::leak(Box::new(["out".to_string()]));
        sigs.iter().map(|s| (s.clone(), outputs)).collect()
    }

    /// A pull in a session of its own, as before a build.
    async fn pull(
        remote: &dyn Remote,
        cache: &Cache,
        wanted: &[(String, &[String])],
        concurrency: usize,
    ) -> Stats {
        Asker::new(remote)
            .pull_many(cache, wanted, concurrency)
            .await
    }

    fn block<T>(f: impl Future<Output = T>) -> T {
        futures::executor::block_on(f)
    }

    #[test]
    fn push_then_pull_into_an_empty_cache() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let sig = "a".repeat(64);
        let from = cache_with(a.path(), &sig, b"hello");
        let remote = Fake::default();
        let up = block(push(&remote, &from, std::slice::from_ref(&sig), 4));
        assert_eq!((up.done, up.failed), (1, 0));
        let to = Cache::new(b.path());
        let down = block(pull(&remote, &to, &want(&[sig.clone(), "b".repeat(64)]), 4));
        assert_eq!((down.done, down.missing, down.failed), (1, 1, 0));
        assert!(matches!(to.lookup(&sig), Lookup::Hit(_)));
        assert_eq!(to.blob_bytes(&sha256_hex(b"hello")).unwrap(), b"hello");
    }

    #[test]
    fn wrong_bytes_are_never_stored() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let sig = "c".repeat(64);
        let from = cache_with(a.path(), &sig, b"good");
        let remote = Fake::default();
        block(push(&remote, &from, std::slice::from_ref(&sig), 1));
        let blob = format!("cas/{}", sha256_hex(b"good"));
        remote.files.borrow_mut().insert(blob, b"evil".to_vec());
        let to = Cache::new(b.path());
        let down = block(pull(&remote, &to, &want(std::slice::from_ref(&sig)), 1));
        assert_eq!((down.done, down.failed), (0, 1));
        assert!(
            down.warnings[0].contains("has the wrong bytes"),
            "{:?}",
            down.warnings
        );
        assert!(
            matches!(to.lookup(&sig), Lookup::Miss),
            "no entry without its blobs"
        );
        assert!(!to.has_blob(&sha256_hex(b"good")));
        assert!(!to.has_blob(&sha256_hex(b"evil")));
    }

    #[test]
    fn a_dead_remote_is_given_up_on_after_a_few_failures() {
        let b = tempfile::tempdir().unwrap();
        let remote = Fake::default();
        remote
            .fail
            .set(Some(Failure::Transport("connection refused".into())));
        let sigs: Vec<String> = (0..100).map(|i| format!("{i:064x}")).collect();
        let down = block(pull(&remote, &Cache::new(b.path()), &want(&sigs), 1));
        assert_eq!(down.failed, 100);
        assert_eq!(
            remote.requests.get(),
            GIVE_UP_AFTER * (1 + RETRIES),
            "not one request per task"
        );
        assert_eq!(down.warnings.len(), 1, "one summarized warning");
        assert!(
            down.warnings[0].contains("100 of 100 lookups failed"),
            "{:?}",
            down.warnings
        );
        assert!(
            down.warnings[0].contains("gave up on it"),
            "{:?}",
            down.warnings
        );
    }

    /// Fails the first `n` requests with a reset, then answers.
    struct Flaky {
        inner: Fake,
        resets_left: Cell<usize>,
    }

    impl Remote for Flaky {
        fn get<'a>(
            &'a self,
            path: &'a str,
            limit: u64,
        ) -> Fut<'a, Result<Option<Vec<u8>>, Failure>> {
            if self.resets_left.get() > 0 {
                self.resets_left.set(self.resets_left.get() - 1);
                return Box::pin(async { Err(Failure::Transport("connection reset".into())) });
            }
            self.inner.get(path, limit)
        }
        fn put<'a>(&'a self, path: &'a str, body: Vec<u8>) -> Fut<'a, Result<(), Failure>> {
            self.inner.put(path, body)
        }
        fn url(&self) -> &str {
            "http://flaky"
        }
    }

    #[test]
    fn reset_connections_are_tried_again() {
        let b = tempfile::tempdir().unwrap();
        let remote = Flaky {
            inner: Fake::default(),
            resets_left: Cell::new(RETRIES),
        };
        let down = block(pull(
            &remote,
            &Cache::new(b.path()),
            &want(&["e".repeat(64)]),
            1,
        ));
        assert_eq!((down.missing, down.failed), (1, 0), "{:?}", down.warnings);
        assert!(down.warnings.is_empty());
    }

    #[test]
    fn timeouts_are_not_tried_again() {
        let b = tempfile::tempdir().unwrap();
        let remote = Fake::default();
        remote
            .fail
            .set(Some(Failure::Timeout("no answer within 5 ms".into())));
        let down = block(pull(
            &remote,
            &Cache::new(b.path()),
            &want(&["f".repeat(64)]),
            1,
        ));
        assert_eq!(down.failed, 1);
        assert_eq!(remote.requests.get(), 1);
    }

    #[test]
    fn answers_longer_than_expected_are_not_taken() {
        let a = tempfile::tempdir().unwrap();
        let sig = "a".repeat(64);
        let from = cache_with(a.path(), &sig, b"hello");
        let remote = Fake::default();
        block(push(&remote, &from, std::slice::from_ref(&sig), 1));
        // A blob longer than its entry says, then an entry of 2 MiB.
        let blob = format!("cas/{}", sha256_hex(b"hello"));
        remote.files.borrow_mut().insert(blob, vec![b'x'; 6]);
        let b = tempfile::tempdir().unwrap();
        let down = block(pull(
            &remote,
            &Cache::new(b.path()),
            &want(std::slice::from_ref(&sig)),
            1,
        ));
        assert!(
            down.warnings[0].contains("the answer is longer than 5 bytes"),
            "{:?}",
            down.warnings
        );
        remote
            .files
            .borrow_mut()
            .insert(format!("ac/{sig}"), vec![b' '; 2 << 20]);
        let down = block(pull(
            &remote,
            &Cache::new(b.path()),
            &want(std::slice::from_ref(&sig)),
            1,
        ));
        assert!(
            down.warnings[0].contains("longer than 1048576 bytes"),
            "{:?}",
            down.warnings
        );
    }

    #[test]
    fn urls_are_checked_and_passwords_never_shown() {
        for good in [
            "http://h",
            "https://h:443/x",
            "http://127.0.0.1:8080/c/",
            "http://[::1]:80/c",
            "http://[::1]",
        ] {
            assert_eq!(check_url(good), Ok(()), "{good}");
        }
        let bad = [
            ("ftp://h", "is not an http:// or https:// URL"),
            ("http:///c", "names no host"),
            (
                "http://h:99999/c",
                "port \"99999\" is not a number from 1 to 65535",
            ),
            ("http://h:0", "port \"0\" is not"),
            ("http://h:/c", "port \"\" is not"),
            (
                "http://u:secret@h/c",
                "\"http://u:***@h/c\" has credentials in it",
            ),
        ];
        for (url, why) in bad {
            let err = check_url(url).unwrap_err();
            assert!(err.contains(why), "{url}: {err}");
            assert!(!err.contains("secret"), "{err}");
        }
    }

    #[test]
    fn server_errors_are_misses_with_a_warning() {
        let b = tempfile::tempdir().unwrap();
        let remote = Fake::default();
        remote.fail.set(Some(Failure::Status(500)));
        let down = block(pull(
            &remote,
            &Cache::new(b.path()),
            &want(&["d".repeat(64)]),
            1,
        ));
        assert_eq!(down.failed, 1);
        assert!(
            down.warnings[0].contains("HTTP status 500"),
            "{:?}",
            down.warnings
        );
    }
}
