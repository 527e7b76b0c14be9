//! `runqueue serve`: a build service. One process, one engine, the
//! component compiled once; every build its own store (memory and CPU
//! limits, its own workspace and cancel), all builds sharing one machine's
//! task slots fairly; an HTTP JSON API with a live event stream, a web
//! page, `/metrics`, and every build recorded in SQLite under the data
//! directory.
//!
//! # Design decisions
//!
//! - **The component is the plugin.** Builds run in wasm stores of the
//!   engine this process holds, not in child `runqueue` processes: the
//!   limits are the store's, the slots the host's ([`runner`]).
//! - **Fair slots.** A build takes a task slot only while no other waiting
//!   build holds fewer ([`crate::process::SharedSlots`]).
//! - **The database is the stream.** Events are numbered rows; a client
//!   reads from any number on, live ones are announced ([`sse`]).
//! - **Nothing survives the service.** Each build's watchdog kills its
//!   task groups when the service dies; the next start marks what was
//!   running as interrupted ([`db`]).

mod api;
mod db;
mod events;
mod http;
mod metrics;
mod page;
mod runner;
mod service;
mod sse;
mod task_log;
mod token;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use runqueue::cli::{parse_seconds, EXIT_BAD_INPUT, EXIT_INTERNAL};

use crate::process::SharedSlots;
use crate::Runqueue;

pub use runner::{ReadOptions, Submitted};

/// `runqueue serve`'s options.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Where to listen: HOST:PORT (port 0 picks a free one). Anything but
    /// loopback needs the token.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8470")]
    pub listen: SocketAddr,
    /// The service's directory: its database, its token and the builds'
    /// fresh workspaces (made if missing).
    #[arg(long, value_name = "DIR", default_value = "runqueue-service")]
    pub data: PathBuf,
    /// Task slots all builds share (default: the number of CPUs).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub max_parallel: Option<u32>,
    /// Builds that run at once; the others wait in the queue.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub max_builds: u32,
    /// Builds that may wait; more submissions get 429.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub max_queued: usize,
    /// A directory under which a request may name its build's workspace
    /// (repeatable); without one, every build gets a fresh directory.
    #[arg(long, value_name = "DIR")]
    pub workspace_root: Vec<PathBuf>,
    /// Read the token from FILE instead of DIR/token.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Accept every request without a token: for one user on this
    /// machine, so only with a loopback --listen.
    #[arg(long, conflicts_with = "token_file")]
    pub no_token: bool,
    /// Let reads (GET) through without the token; writes still need it.
    #[arg(long)]
    pub public_read: bool,
    /// The largest request body, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 16 << 20)]
    pub max_body: usize,
    /// The most time one build's component may spend computing (not
    /// waiting for its tasks), in seconds.
    #[arg(long, value_name = "SECS", default_value = "3600", value_parser = parse_seconds)]
    pub build_cpu: Duration,
}

/// Runs the service until it is killed; the exit code when it cannot
/// start.
pub fn main(args: Args, component: &Path, max_memory_mib: u64, read_options: ReadOptions) -> i32 {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(serve(args, (component, max_memory_mib), read_options)) {
        Ok(()) => 0,
        Err((code, msg)) => {
            eprintln!("runqueue serve: {msg}");
            code
        }
    }
}

async fn serve(
    args: Args,
    (component, max_memory): (&Path, u64),
    read_options: ReadOptions,
) -> Result<(), (i32, String)> {
    let bad = |m: String| (EXIT_BAD_INPUT, m);
    if args.no_token && !args.listen.ip().is_loopback() {
        return Err(bad(format!(
            "refusing to listen on {} without a token (drop --no-token)",
            args.listen
        )));
    }
    let roots = args
        .workspace_root
        .iter()
        .map(|r| {
            r.canonicalize()
                .map_err(|e| bad(format!("--workspace-root {}: {e}", r.display())))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| bad(format!("cannot listen on {}: {e}", args.listen)))?;
    let rq = load(component, max_memory, args.build_cpu)?;
    std::fs::create_dir_all(&args.data)
        .map_err(|e| bad(format!("--data {}: {e}", args.data.display())))?;
    let data = args.data.canonicalize().map_err(|e| bad(e.to_string()))?;
    let token = match args.no_token {
        true => None,
        false => Some(token::Token::load(&data, args.token_file.as_deref()).map_err(bad)?),
    };
    let (db, interrupted) = db::Db::open(&data).map_err(|e| bad(format!("database: {e}")))?;
    for id in interrupted {
        eprintln!("runqueue serve: build {id} was interrupted when the service stopped");
    }
    crate::process::strays::become_subreaper();
    let slots = args.max_parallel.unwrap_or(crate::files::cpus() as u32);
    let shared = Arc::new(runner::Shared {
        db: Arc::new(db),
        rq,
        pool: SharedSlots::new(slots),
        metrics: Arc::default(),
        gate: Arc::new(tokio::sync::Semaphore::new(args.max_builds as usize)),
    });
    let limits = service::Limits {
        max_builds: args.max_builds as usize,
        max_queued: args.max_queued,
        workspace_roots: roots,
        builds_dir: data.join("builds"),
        read_options,
    };
    let service = service::Service::new(shared, limits);
    let access = Arc::new(api::Access {
        token,
        public_read: args.public_read,
        max_body: args.max_body,
    });
    let addr = listener.local_addr().map_err(|e| bad(e.to_string()))?;
    println!("listening on http://{addr}");
    accept(listener, service, access).await;
    Ok(())
}

/// The component, compiled once, interruptible, with the builds' limits.
fn load(path: &Path, max_memory: u64, cpu: Duration) -> Result<Runqueue, (i32, String)> {
    let mut rq =
        Runqueue::load_interruptible(path).map_err(|e| (EXIT_INTERNAL, format!("{e:#}")))?;
    rq.set_memory_limit((max_memory as usize) << 20);
    rq.set_cpu_limit(cpu);
    Ok(rq)
}

/// Serves each connection on a task of its own, forever.
async fn accept(
    listener: tokio::net::TcpListener,
    service: Arc<service::Service>,
    access: Arc<api::Access>,
) {
    use hyper_util::rt::TokioIo;
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let (service, access) = (service.clone(), access.clone());
        tokio::spawn(async move {
            let handler = hyper::service::service_fn(move |req| {
                let (service, access) = (service.clone(), access.clone());
                async move { Ok::<_, std::convert::Infallible>(api::handle(service, access, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .serve_connection(TokioIo::new(stream), handler);
            let _ = conn.await;
        });
    }
}
