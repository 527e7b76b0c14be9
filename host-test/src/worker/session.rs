//! The bot's session with the server, as a loop: report the leases, take
//! the server's list back, and call again: at once when a lease finishes,
//! soon while there is room for more, after a backoff when a call fails
//! (resuming the session if the server may still know it, else making a
//! new one). On the way out, the leases are handed back. Knows the Bots
//! API and its timing; knows nothing of how actions run.

use std::time::{Duration, Instant, SystemTime};

use super::leases::Leases;
use super::retry::{self, Backoff, Next};
use super::Shutdown;
use crate::reapi::bots::{
    BotSession, BotStatus, BotsClient, CreateBotSessionRequest, Device, FieldMask, Lease, Property,
    UpdateBotSessionRequest, Worker,
};
use crate::reapi::status_line;

/// How long one call may take. BuildGrid holds a call for work up to 80 %
/// of this (or of its session keepalive, if shorter).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the calls that hand leases back on the way out may take.
const FAREWELL_TIMEOUT: Duration = Duration::from_secs(3);
/// The pause between calls the server answered at once: while there is
/// room for more leases, and while there is none (then only withdrawals
/// can come).
const POLL: Duration = Duration::from_millis(500);
const POLL_FULL: Duration = Duration::from_secs(2);

/// Who the bot is, as the server is told.
pub struct Bot {
    /// The bot id (stable across restarts: the server requeues what a
    /// bot of the same id held when it makes a new session).
    pub id: String,
    /// The instance whose work it takes.
    pub instance: String,
    /// Leases at once (BuildGrid's `capacity` config).
    pub capacity: u32,
    /// The platform properties it offers (OSFamily, ISA).
    pub properties: Vec<(String, String)>,
}

impl Bot {
    fn worker(&self) -> Worker {
        let property = |(key, value): (&str, &str)| Property {
            key: key.into(),
            value: value.into(),
        };
        let properties = self.properties.iter().map(|(k, v)| property((k, v)));
        let capacity = self.capacity.to_string();
        Worker {
            devices: vec![Device {
                handle: self.id.clone(),
                properties: properties.collect(),
            }],
            properties: Vec::new(),
            configs: vec![property(("capacity", &capacity))],
        }
    }
}

/// What the server said of the session last.
struct Known {
    name: String,
    version: String,
    expires: Option<SystemTime>,
}

/// The calls to the server and what they leave to remember.
struct Session<'a> {
    bot: &'a Bot,
    client: BotsClient,
    known: Option<Known>,
    /// Whether the server has ever accepted a session of this bot.
    joined: bool,
    backoff: Backoff,
}

/// Serves leases until `shutdown` (or until the server refuses the first
/// session: that error); then stops what runs and hands every lease back.
pub async fn serve(
    bot: &Bot,
    client: BotsClient,
    leases: &mut Leases,
    shutdown: &mut Shutdown,
) -> anyhow::Result<()> {
    let mut s = Session {
        bot,
        client,
        known: None,
        joined: false,
        backoff: Backoff::new(),
    };
    let mut refused = Ok(());
    loop {
        let sent = Instant::now();
        let reply = tokio::select! {
            reply = s.call(BotStatus::Ok, leases.report(), CALL_TIMEOUT) => reply,
            // Report it now; the call is dropped, which the server allows.
            _ = leases.next_finished() => continue,
            _ = shutdown.wait() => break,
        };
        let (pause, wake_on_finish) = match reply {
            Ok(session) => {
                leases.reconcile(&session.leases, true);
                s.backoff.reset();
                (s.pause(sent, leases.running()), true)
            }
            Err(status) => match s.failed(&status) {
                Ok(wait) => (wait, false),
                Err(e) => {
                    refused = Err(e);
                    break;
                }
            },
        };
        if !idle(pause, wake_on_finish, leases, shutdown).await {
            break;
        }
    }
    leases.stop_all().await;
    s.farewell(leases).await;
    refused
}

/// Waits `pause` (less if a lease finishes and `wake_on_finish`); false
/// on shutdown.
async fn idle(
    pause: Duration,
    wake_on_finish: bool,
    leases: &mut Leases,
    shutdown: &mut Shutdown,
) -> bool {
    let deadline = tokio::time::Instant::now() + pause;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return true,
            _ = leases.next_finished() => if wake_on_finish { return true },
            _ = shutdown.wait() => return false,
        }
    }
}

impl Session<'_> {
    /// Creates the session, or updates it, with `leases`.
    async fn call(
        &mut self,
        status: BotStatus,
        leases: Vec<Lease>,
        timeout: Duration,
    ) -> Result<BotSession, tonic::Status> {
        let session = BotSession {
            name: self
                .known
                .as_ref()
                .map_or(String::new(), |k| k.name.clone()),
            bot_id: self.bot.id.clone(),
            status: status as i32,
            worker: Some(self.bot.worker()),
            leases,
            expire_time: None,
            version: self
                .known
                .as_ref()
                .map_or(String::new(), |k| k.version.clone()),
        };
        let reply = match &self.known {
            None => self.create(session, timeout).await?,
            Some(known) => {
                let req = UpdateBotSessionRequest {
                    name: known.name.clone(),
                    bot_session: Some(session),
                    update_mask: Some(FieldMask {
                        paths: vec!["status".into(), "leases".into()],
                    }),
                };
                self.client.update_bot_session(req, timeout).await?
            }
        };
        self.joined = true;
        self.known = Some(Known {
            name: reply.name.clone(),
            version: reply.version.clone(),
            expires: reply.expire_time.as_ref().map(system_time),
        });
        Ok(reply)
    }

    async fn create(
        &mut self,
        session: BotSession,
        timeout: Duration,
    ) -> Result<BotSession, tonic::Status> {
        let serving = session.status == BotStatus::Ok as i32;
        let req = CreateBotSessionRequest {
            parent: self.bot.instance.clone(),
            bot_session: Some(session),
        };
        let reply = self.client.create_bot_session(req, timeout).await?;
        if serving {
            eprintln!("worker {}: joined as session {}", self.bot.id, reply.name);
        }
        Ok(reply)
    }

    /// The pause before the next call, after one sent at `sent` that
    /// succeeded: none if the server held it for long, else [`POLL`] (or
    /// [`POLL_FULL`] with no room for more); always well within the
    /// session's expiry.
    fn pause(&self, sent: Instant, running: usize) -> Duration {
        let poll = match running >= self.bot.capacity as usize {
            true => POLL_FULL,
            false => POLL,
        };
        let expires = self.known.as_ref().and_then(|k| k.expires);
        let left = expires.and_then(|t| t.duration_since(SystemTime::now()).ok());
        let pause = poll.saturating_sub(sent.elapsed());
        left.map_or(pause, |left| pause.min(left / 2))
    }

    /// Says why a call failed, decides the session's fate, and gives the
    /// wait before the next call; the error when there is to be none.
    fn failed(&mut self, status: &tonic::Status) -> anyhow::Result<Duration> {
        let expires = self.known.as_ref().and_then(|k| k.expires);
        let what = match &self.known {
            None => "CreateBotSession",
            Some(_) => "UpdateBotSession",
        };
        let why = status_line(what, status);
        let doing =
            match retry::after_failure(status.code(), expires, SystemTime::now(), self.joined) {
                Next::Resume => "calling again",
                Next::Recreate => {
                    self.known = None;
                    "joining anew"
                }
                Next::GiveUp => return Err(why),
            };
        let wait = self.backoff.failed();
        // BuildGrid closes a session (DATA_LOSS) when another bot
        // registers under its id, and the two then take turns for ever.
        let hint = match status.code() {
            tonic::Code::DataLoss => format!(
                " (if another worker runs as {:?}, give each its own --name)",
                self.bot.id
            ),
            _ => String::new(),
        };
        eprintln!(
            "worker {}: {why}{hint}; {doing} in {:.1} s",
            self.bot.id,
            wait.as_secs_f64()
        );
        Ok(wait)
    }

    /// Hands every lease back (the stopped ones as undone, so the server
    /// requeues them at once) and says the bot is going; leases offered
    /// meanwhile are handed back too. Without a session (the first call
    /// was cut short), a terminating one is made: it replaces whatever
    /// session the server may have made of that call, which would
    /// otherwise be given work until it expired.
    async fn farewell(&mut self, leases: &mut Leases) {
        let had_session = self.known.is_some();
        for _ in 0..3 {
            let reply = self.call(BotStatus::BotTerminating, leases.report(), FAREWELL_TIMEOUT);
            match reply.await {
                Ok(session) => leases.reconcile(&session.leases, false),
                Err(status) if had_session => {
                    let why = status_line("UpdateBotSession", &status);
                    let id = &self.bot.id;
                    eprintln!("worker {id}: {why}; leaving without handing leases back");
                    return;
                }
                Err(_) => return,
            }
            if leases.report().is_empty() {
                return;
            }
        }
    }
}

fn system_time(t: &bazel_remote_apis::google::protobuf::Timestamp) -> SystemTime {
    let since = Duration::new(t.seconds.max(0) as u64, t.nanos.max(0) as u32);
    SystemTime::UNIX_EPOCH + since
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worker_offers_its_properties_and_capacity() {
        let bot = Bot {
            id: "host-1".into(),
            instance: "main".into(),
            capacity: 3,
            properties: vec![("OSFamily".into(), "linux".into())],
        };
        let w = bot.worker();
        assert_eq!(w.devices[0].handle, "host-1");
        assert_eq!(w.devices[0].properties[0].key, "OSFamily");
        assert_eq!(w.configs[0].key, "capacity");
        assert_eq!(w.configs[0].value, "3");
    }
}
