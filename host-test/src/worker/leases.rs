//! The leases this worker holds and the task working on each: what the
//! server's list of leases means for them (start, keep, stop, forget),
//! what to tell the server back, and every change of state in one place
//! ([`Leases::change`]). Knows the Bots API's leases; knows nothing of how
//! an action runs (that is [`super::execute`]'s) or of sessions.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use bazel_remote_apis::google::protobuf::Any;
use bazel_remote_apis::google::rpc::Status;
use tokio::sync::watch;
use tokio::task::{Id, JoinSet};
use tonic::Code;

use super::execute::{self, Context, Outcome};
use super::paths;
use crate::reapi::bots::{Lease, LeaseState};

/// Where a held lease stands.
enum State {
    /// Task `task` is working on it; reported ACTIVE. Sending `true` on
    /// `stop` (or dropping it) stops the task.
    Running { task: Id, stop: watch::Sender<bool> },
    /// Finished, or given up; reported COMPLETED until the server stops
    /// listing it.
    Done { status: Status, result: Option<Any> },
}

/// What happens to a lease.
enum Change {
    /// The server offers a lease not held: start working on it.
    Start(Lease),
    /// The server offers a lease not held while the worker is stopping:
    /// hand it back undone.
    Decline(Lease),
    /// Its task ended this way.
    Finish(Outcome),
    /// The server no longer lists it (it was withdrawn, or its completion
    /// acknowledged): stop its task if any, and forget it.
    Forget,
}

struct Held {
    /// The lease as the server sent it.
    lease: Lease,
    state: State,
}

/// The leases held, and the tasks working on them.
pub struct Leases {
    held: BTreeMap<String, Held>,
    tasks: JoinSet<Outcome>,
    /// Leases started so far, numbering their directories.
    started: u64,
    ctx: Arc<Context>,
    /// Where each lease gets a directory of its own.
    workdir: PathBuf,
}

impl Leases {
    pub fn new(ctx: Context, workdir: PathBuf) -> Leases {
        Leases {
            held: BTreeMap::new(),
            tasks: JoinSet::new(),
            started: 0,
            ctx: Arc::new(ctx),
            workdir,
        }
    }

    /// How many leases are being worked on.
    pub fn running(&self) -> usize {
        let running = |h: &&Held| matches!(h.state, State::Running { .. });
        self.held.values().filter(running).count()
    }

    /// Every held lease as the server should hear of it: ACTIVE while
    /// running, COMPLETED with status and result once done.
    pub fn report(&self) -> Vec<Lease> {
        let as_reported = |held: &Held| match &held.state {
            State::Running { .. } => Lease {
                state: LeaseState::Active as i32,
                ..held.lease.clone()
            },
            State::Done { status, result } => Lease {
                state: LeaseState::Completed as i32,
                status: Some(status.clone()),
                result: result.clone(),
                ..held.lease.clone()
            },
        };
        self.held.values().map(as_reported).collect()
    }

    /// Brings the held leases in line with the server's list: new ones are
    /// started (or, unless `accept`, handed back undone), ones no longer
    /// listed are stopped and forgotten.
    pub fn reconcile(&mut self, listed: &[Lease], accept: bool) {
        let wanted = |l: &&Lease| l.state() != LeaseState::Cancelled;
        let ids: HashSet<&str> = listed
            .iter()
            .filter(wanted)
            .map(|l| l.id.as_str())
            .collect();
        let gone: Vec<String> = (self.held.keys())
            .filter(|id| !ids.contains(id.as_str()))
            .cloned()
            .collect();
        for id in gone {
            self.change(&id, Change::Forget);
        }
        for lease in listed {
            let new = matches!(lease.state(), LeaseState::Pending | LeaseState::Active);
            if new && !self.held.contains_key(&lease.id) {
                let change = match accept {
                    true => Change::Start(lease.clone()),
                    false => Change::Decline(lease.clone()),
                };
                self.change(&lease.id, change);
            }
        }
    }

    /// Waits for a task to end and records how (never returns when none
    /// is running).
    pub async fn next_finished(&mut self) {
        let Some(joined) = self.tasks.join_next_with_id().await else {
            return std::future::pending().await;
        };
        let (task, outcome) = match joined {
            Ok(done) => done,
            Err(e) => {
                let msg = format!("the worker's task for this lease failed: {e}");
                (e.id(), Outcome::Done(status(Code::Internal, msg), None))
            }
        };
        let owner = self.held.iter().find_map(|(id, h)| match h.state {
            State::Running { task: t, .. } if t == task => Some(id.clone()),
            _ => None,
        });
        if let Some(id) = owner {
            self.change(&id, Change::Finish(outcome));
        }
    }

    /// Stops every running task and waits for them all; what they were
    /// working on is then reported undone.
    pub async fn stop_all(&mut self) {
        for held in self.held.values() {
            if let State::Running { stop, .. } = &held.state {
                let _ = stop.send(true);
            }
        }
        while !self.tasks.is_empty() {
            self.next_finished().await;
        }
    }

    /// The one place a lease changes state; panics on a change that cannot
    /// happen.
    fn change(&mut self, id: &str, change: Change) {
        let running = (self.held.get(id)).map(|h| matches!(h.state, State::Running { .. }));
        let (lease, state) = match (running, change) {
            (None, Change::Start(lease)) => self.start(lease),
            (None, Change::Decline(lease)) => (lease, undone("the worker is stopping".into())),
            (Some(true), Change::Finish(outcome)) => {
                let lease = self.held.remove(id).expect("held").lease;
                (lease, finished(outcome))
            }
            (Some(_), Change::Forget) => {
                if let Some(State::Running { stop, .. }) = self.held.remove(id).map(|h| h.state) {
                    let _ = stop.send(true);
                }
                return;
            }
            (_, _) => panic!("lease {id}: a change that cannot happen in its state"),
        };
        self.held.insert(id.to_string(), Held { lease, state });
    }

    /// Starts a task on `lease` in a directory of its own.
    fn start(&mut self, lease: Lease) -> (Lease, State) {
        self.started += 1;
        let dir = (self.workdir).join(paths::lease_dir_name(&lease.id, self.started));
        let (stop, cancel) = watch::channel(false);
        let ctx = self.ctx.clone();
        let payload = lease.payload.clone().unwrap_or_default();
        let handle = self.tasks.spawn(async move {
            let short = short(&payload);
            eprintln!("worker {}: running {short}", ctx.worker);
            let t0 = Instant::now();
            let outcome = execute::execute(&ctx, &payload, &dir, cancel).await;
            let ms = t0.elapsed().as_millis();
            eprintln!("{}", end_line(&ctx.worker, &short, &outcome, ms));
            outcome
        });
        let task = handle.id();
        (lease, State::Running { task, stop })
    }
}

/// How a finished task's lease is reported.
fn finished(outcome: Outcome) -> State {
    match outcome {
        Outcome::Done(status, result) => State::Done {
            status,
            result: result.as_deref().map(execute::pack_result),
        },
        // Only a stopping worker stops a task it still holds.
        Outcome::Cancelled => undone("the worker stopped before the action finished".into()),
    }
}

/// Given back without a result: UNAVAILABLE, which BuildGrid retries
/// elsewhere at once.
fn undone(message: String) -> State {
    State::Done {
        status: status(Code::Unavailable, message),
        result: None,
    }
}

fn status(code: Code, message: String) -> Status {
    Status {
        code: code as i32,
        message,
        details: Vec::new(),
    }
}

/// The first 12 hex digits of the payload's Action digest (`?` if none).
fn short(payload: &Any) -> String {
    execute::action_digest(payload).map_or("?".into(), |d| d.hash.chars().take(12).collect())
}

/// The line logged when a lease's task ends.
fn end_line(worker: &str, short: &str, outcome: &Outcome, ms: u128) -> String {
    match outcome {
        Outcome::Done(_, Some(result)) => {
            format!(
                "worker {worker}: ran {short} exit {} in {ms} ms",
                result.exit_code
            )
        }
        Outcome::Done(status, None) => {
            let msg = status.message.lines().next().unwrap_or("");
            format!("worker {worker}: could not run {short} ({ms} ms): {msg}")
        }
        Outcome::Cancelled => format!("worker {worker}: stopped {short} after {ms} ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reapi::re;

    fn lease(id: &str, state: LeaseState) -> Lease {
        Lease {
            id: id.into(),
            state: state as i32,
            ..Default::default()
        }
    }

    fn leases() -> Leases {
        let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:9").connect_lazy();
        let ctx = Context {
            cas: crate::reapi::cas::Cas::new(channel, ""),
            worker: "w".into(),
        };
        Leases::new(ctx, std::env::temp_dir())
    }

    fn states(l: &Leases) -> Vec<(String, LeaseState)> {
        l.report()
            .into_iter()
            .map(|r| (r.id.clone(), r.state()))
            .collect()
    }

    #[tokio::test]
    async fn declined_leases_are_handed_back_and_forgotten_once_acknowledged() {
        let mut l = leases();
        l.reconcile(
            &[
                lease("a", LeaseState::Active),
                lease("x", LeaseState::Completed),
            ],
            false,
        );
        assert_eq!(states(&l), [("a".into(), LeaseState::Completed)]);
        assert_eq!(
            l.report()[0].status.as_ref().unwrap().code,
            Code::Unavailable as i32
        );
        l.reconcile(&[lease("a", LeaseState::Active)], false);
        assert_eq!(
            l.report().len(),
            1,
            "kept until the server stops listing it"
        );
        l.reconcile(&[], false);
        assert!(l.report().is_empty());
    }

    #[tokio::test]
    async fn withdrawn_leases_are_stopped() {
        let mut l = leases();
        l.reconcile(&[lease("a", LeaseState::Pending)], true);
        assert_eq!(states(&l), [("a".into(), LeaseState::Active)]);
        assert_eq!(l.running(), 1);
        l.reconcile(&[lease("a", LeaseState::Cancelled)], true);
        assert_eq!(l.running(), 0);
        assert!(l.report().is_empty());
        // The stopped task still ends, and its outcome goes nowhere.
        l.next_finished().await;
        assert!(l.report().is_empty());
    }

    #[tokio::test]
    async fn a_task_that_cannot_run_completes_its_lease_with_a_status() {
        let mut l = leases();
        let mut bad = lease("a", LeaseState::Active);
        bad.payload = Some(crate::reapi::bots::pack(
            "some.Other",
            &re::Digest::default(),
        ));
        l.reconcile(&[bad], true);
        l.next_finished().await;
        let report = l.report();
        assert_eq!(report[0].state(), LeaseState::Completed);
        assert_eq!(
            report[0].status.as_ref().unwrap().code,
            Code::InvalidArgument as i32
        );
    }

    #[test]
    fn end_lines() {
        let result = re::ActionResult {
            exit_code: 2,
            ..Default::default()
        };
        let ran = Outcome::Done(status(Code::Ok, String::new()), Some(Box::new(result)));
        assert_eq!(
            end_line("w1", "abc", &ran, 12),
            "worker w1: ran abc exit 2 in 12 ms"
        );
        let failed = Outcome::Done(
            status(Code::FailedPrecondition, "no blob\nmore".into()),
            None,
        );
        assert_eq!(
            end_line("w1", "abc", &failed, 3),
            "worker w1: could not run abc (3 ms): no blob"
        );
    }
}
