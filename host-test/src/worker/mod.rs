//! `runqueue worker`: a bot for a REAPI server's Remote Workers API
//! (`google.devtools.remoteworkers.v1test2.Bots`, as BuildGrid serves
//! it), so that a machine joins a build farm with nothing but this
//! program.
//!
//! # Design decisions
//!
//! - **One session, `capacity` leases.** BuildGrid reads a `capacity`
//!   worker config and hands one session that many leases at once, so one
//!   bot id serves every slot ([`session`]).
//! - **Leases are reconciled, not tracked by messages.** After each reply
//!   the held leases are brought in line with the server's list: a new
//!   one starts, one no longer listed is stopped (withdrawn) or forgotten
//!   (its completion acknowledged) ([`leases`]).
//! - **A server that goes away is waited for.** Transient errors resume
//!   the same session, so a lease that ran on is reported when the server
//!   is back; a server that no longer knows the session gets a new one,
//!   and what it no longer lists is dropped ([`retry`]).
//! - **Each action in a directory of its own, in a process group of its
//!   own**, with exactly its Command's environment; the group is killed on
//!   timeout, withdrawal and exit, and the directory removed
//!   ([`execute`], [`command`]).
//! - **A signal's death is exit code 128 + the signal**, as shells report
//!   it, with a `runqueue worker:` line on stderr saying so; so are a
//!   timeout (status DEADLINE_EXCEEDED too) and a program that never
//!   started (127 not found, 126 not runnable).

mod command;
mod execute;
mod leases;
mod outputs;
mod paths;
mod retry;
mod session;

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use runqueue::cli::{EXIT_BAD_INPUT, EXIT_OK};
use tokio::sync::watch;

use crate::reapi::bots::BotsClient;
use crate::reapi::cas::Cas;

/// `runqueue worker`'s options.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The server: grpc://HOST:PORT, serving the Bots service and the CAS.
    #[arg(long, value_name = "URL")]
    pub server: String,
    /// The instance name whose actions to run.
    #[arg(long, value_name = "NAME", default_value = "")]
    pub instance: String,
    /// Run at most N actions at once (default: the number of CPUs).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub capacity: Option<u32>,
    /// Where actions run, each in a directory of its own (default: a new
    /// directory in the system's temporary directory, removed at exit).
    #[arg(long, value_name = "DIR")]
    pub workdir: Option<PathBuf>,
    /// The bot's id, and the worker name each result records (default: the
    /// host name and a suffix of this process's, e.g. `build3-5f0c21aa`, so
    /// that two workers on one machine never share one). Two workers must
    /// not share one: the server would close one's session for the other.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
}

/// Runs the worker until SIGINT or SIGTERM; the exit code.
pub async fn run(args: Args) -> i32 {
    match serve(args).await {
        Ok(()) => EXIT_OK,
        Err(e) => {
            eprintln!("runqueue worker: {e:#}");
            EXIT_BAD_INPUT
        }
    }
}

async fn serve(args: Args) -> Result<()> {
    let channel = crate::reapi::channel(&args.server)?;
    let name = args.name.unwrap_or_else(default_name);
    let capacity = (args.capacity).unwrap_or(crate::files::cpus() as u32);
    let (workdir, temporary) = workdir(args.workdir)?;
    let ctx = execute::Context {
        cas: Cas::new(channel.clone(), &args.instance),
        worker: name.clone(),
    };
    let mut leases = leases::Leases::new(ctx, workdir.clone());
    let bot = session::Bot {
        id: name.clone(),
        instance: args.instance.clone(),
        capacity,
        properties: platform(),
    };
    let mut shutdown = Shutdown::on_signals(&name)?;
    // Should the worker die (SIGKILL included), the watchdog kills what
    // it was running.
    let exe = std::env::current_exe().context("finding the runqueue binary")?;
    let live = crate::process::LiveGroups::watched_by(&exe).context("starting the watchdog")?;
    command::watch_groups(live);
    eprintln!(
        "worker {name}: serving {} (instance {:?}), {capacity} at once, in {}",
        args.server,
        args.instance,
        workdir.display()
    );
    let served = session::serve(&bot, BotsClient::new(channel), &mut leases, &mut shutdown).await;
    if temporary {
        let _ = std::fs::remove_dir_all(&workdir);
    }
    served?;
    eprintln!("worker {name}: stopped");
    Ok(())
}

/// The working directory (canonical), and whether it is a temporary one
/// of this process's.
fn workdir(given: Option<PathBuf>) -> Result<(PathBuf, bool)> {
    let temporary = given.is_none();
    let dir = given.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("runqueue-worker-{}", std::process::id()))
    });
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir
        .canonicalize()
        .with_context(|| format!("resolving {}", dir.display()))?;
    Ok((dir, temporary))
}

/// The host name and 8 random hex digits: chosen once per process, so it
/// stays the same across the session's reconnects, and no two workers
/// (on one machine, or in containers of the same host name) share it.
fn default_name() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 4];
    let random = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    let suffix = match random {
        Ok(()) => u32::from_be_bytes(bytes),
        // No random source: the pid and the time still tell two apart.
        Err(_) => {
            std::process::id()
                ^ std::time::UNIX_EPOCH
                    .elapsed()
                    .unwrap_or_default()
                    .subsec_nanos()
        }
    };
    format!("{}-{suffix:08x}", hostname())
}

/// This machine's name (`runqueue-worker` if it has none).
fn hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    match name.trim() {
        "" => "runqueue-worker".into(),
        name => name.into(),
    }
}

/// The platform properties this worker offers, in the names and values
/// REAPI platforms use (BuildGrid matches OSFamily and ISA by default; a
/// bot that offers them still takes actions that ask for neither).
fn platform() -> Vec<(String, String)> {
    let isa = match std::env::consts::ARCH {
        "x86_64" => "x86-64",
        arch => arch,
    };
    let os = std::env::consts::OS;
    vec![("ISA".into(), isa.into()), ("OSFamily".into(), os.into())]
}

/// Turns true on the first SIGINT or SIGTERM.
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    fn on_signals(name: &str) -> Result<Shutdown> {
        use tokio::signal::unix::{signal, SignalKind};
        let (tx, rx) = watch::channel(false);
        let name = name.to_string();
        let mut int = signal(SignalKind::interrupt()).context("catching SIGINT")?;
        let mut term = signal(SignalKind::terminate()).context("catching SIGTERM")?;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
                eprintln!("worker {name}: stopping: killing running actions, handing leases back");
                let _ = tx.send(true);
            }
        });
        Ok(Shutdown(rx))
    }

    /// Returns once shutdown is asked for (at once if it was).
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}
