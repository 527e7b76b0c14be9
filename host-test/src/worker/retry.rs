//! After a failed call to the server: how long to wait, and whether the
//! session is worth resuming or a new one must be made. Knows gRPC status
//! codes and time; knows nothing of leases or of the calls themselves.

use std::time::{Duration, SystemTime};

use tonic::Code;

/// The first wait after a failure; it doubles up to [`LONGEST`].
const FIRST: Duration = Duration::from_millis(500);
const LONGEST: Duration = Duration::from_secs(5);

/// Waits that grow while calls keep failing.
pub struct Backoff(Duration);

impl Backoff {
    pub fn new() -> Backoff {
        Backoff(FIRST)
    }

    /// The wait after one more failure.
    pub fn failed(&mut self) -> Duration {
        let wait = self.0;
        self.0 = (self.0 * 2).min(LONGEST);
        wait
    }

    /// A call succeeded: the next failure waits [`FIRST`] again.
    pub fn reset(&mut self) {
        self.0 = FIRST;
    }
}

/// What to do with the session after a failed call.
#[derive(Debug, PartialEq)]
pub enum Next {
    /// Call again with the same session: the server (or the network) had
    /// a passing problem, and a server that restarts keeps its sessions
    /// (BuildGrid's are in its database), leases included.
    Resume,
    /// Make a new session: the server said it does not know this one, or
    /// it has expired by now.
    Recreate,
    /// Stop: the server refused the very first session (a wrong instance
    /// name, platform properties it has no place for); calling again would
    /// be refused again.
    GiveUp,
}

/// What follows a call that failed with `code`, the session expiring at
/// `expires` (as the server last said), when the server has (`joined`) or
/// has never accepted a session of this bot.
pub fn after_failure(
    code: Code,
    expires: Option<SystemTime>,
    now: SystemTime,
    joined: bool,
) -> Next {
    if !joined && !passing(code) {
        return Next::GiveUp;
    }
    if expires.is_some_and(|t| t <= now) {
        return Next::Recreate;
    }
    // BuildGrid: DATA_LOSS for a closed session, INVALID_ARGUMENT for one
    // it does not know, NOT_FOUND, FAILED_PRECONDITION.
    match passing(code) {
        true => Next::Resume,
        false => Next::Recreate,
    }
}

/// Whether a call that failed with `code` may succeed if made again: the
/// server or the network had a problem, not the request.
fn passing(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Unknown
            | Code::Internal
            | Code::ResourceExhausted
            | Code::Aborted
    )
}

/// Whether an operation that failed with `e` may succeed if tried again:
/// as the gRPC status in its chain says; `untyped` for a failure without
/// one.
pub fn transient(e: &anyhow::Error, untyped: bool) -> bool {
    let status = e
        .chain()
        .find_map(|c| c.downcast_ref::<crate::reapi::Rpc>());
    status.map_or(untyped, |s| passing(s.0.code()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_five_seconds_and_reset() {
        let mut b = Backoff::new();
        let waits: Vec<u128> = (0..6).map(|_| b.failed().as_millis()).collect();
        assert_eq!(waits, [500, 1000, 2000, 4000, 5000, 5000]);
        b.reset();
        assert_eq!(b.failed(), FIRST);
    }

    #[test]
    fn sessions_are_resumed_unless_unknown_or_expired() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let later = Some(now + Duration::from_secs(60));
        let earlier = Some(now - Duration::from_secs(1));
        let next = |code, expires| after_failure(code, expires, now, true);
        assert_eq!(next(Code::Unavailable, later), Next::Resume);
        assert_eq!(next(Code::Unavailable, None), Next::Resume);
        assert_eq!(next(Code::Unavailable, earlier), Next::Recreate);
        assert_eq!(next(Code::InvalidArgument, later), Next::Recreate);
        assert_eq!(next(Code::DataLoss, later), Next::Recreate);
    }

    #[test]
    fn a_first_session_refused_for_good_gives_up() {
        let now = SystemTime::UNIX_EPOCH;
        assert_eq!(
            after_failure(Code::InvalidArgument, None, now, false),
            Next::GiveUp
        );
        assert_eq!(
            after_failure(Code::Unavailable, None, now, false),
            Next::Resume
        );
    }

    #[test]
    fn failures_are_transient_as_their_status_says() {
        let status = |code| {
            anyhow::Error::new(crate::reapi::Rpc(tonic::Status::new(code, "x"))).context("reading")
        };
        assert!(transient(&status(Code::Unavailable), false));
        assert!(!transient(&status(Code::NotFound), true));
        assert!(transient(&anyhow::anyhow!("disk"), true));
        assert!(!transient(&anyhow::anyhow!("disk"), false));
    }
}
