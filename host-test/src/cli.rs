//! The `runqueue` command: arguments, finding the component, the files a
//! build writes, and exit codes; one function per subcommand. The words it
//! shares with the component's own command line (defaults, value parsing,
//! graph reading, exit codes, messages, printed lines) are
//! [`runqueue::cli`]'s. Knows nothing of scheduling; that is the
//! component's.

use std::ffi::OsString;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use runqueue::cli::{
    build_exit_code, error_exit, lines, parse_scheduler, parse_seconds, parse_seconds_or_off,
    read_graph, read_text, DEFAULT_CACHE, DEFAULT_LOG_DIR, DEFAULT_REMOTE_TIMEOUT,
    DEFAULT_SIMULATE_JOBS, EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_OK, MAX_GRAPH_BYTES,
};
use runqueue::schedule::plan::Policy;

use crate::console::{Console, Verbosity};
use crate::outputs;
use crate::process::{Activity, JobserverMode};
use crate::remote_run::Executor;
use crate::workspace_lock::{Holder, WorkspaceLock};
use crate::{
    CallError, CallResult, Controls, ImportOptions, Report, RunError, RunOptions, Runqueue,
    Summary, Workspace,
};

/// The environment variable naming the component file.
pub const COMPONENT_ENV: &str = "RUNQUEUE_COMPONENT";

/// The build of the component with the remote cache (wasi:http), found
/// next to the plain one.
pub const REMOTE_COMPONENT: &str = "runqueue-remote.wasm";

/// `--scheduler`: the names [`Policy`] gives, listed in `--help`.
fn scheduler_parser() -> impl clap::builder::TypedValueParser<Value = Policy> {
    use clap::builder::TypedValueParser;
    let names = Policy::ALL.map(Policy::name);
    clap::builder::PossibleValuesParser::new(names)
        .map(|name: String| parse_scheduler(&name).expect("one of the possible values"))
}

#[derive(Parser, Debug)]
#[command(
    name = "runqueue",
    version,
    about = "Run BitBake-style task graphs in parallel, in a WASI component"
)]
struct Cli {
    /// The runqueue component (.wasm). Default: $RUNQUEUE_COMPONENT, then
    /// runqueue.wasm next to this program, then the cargo build output.
    #[arg(long, global = true, value_name = "FILE")]
    component: Option<PathBuf>,
    /// The most memory the component may use, in MiB.
    #[arg(long, global = true, value_name = "MIB", default_value_t = (crate::DEFAULT_MEMORY_LIMIT >> 20) as u64,
          value_parser = clap::value_parser!(u64).range(1..=4096))]
    max_memory: u64,
    #[command(subcommand)]
    request: Request,
}

// Parsed once per process: the size of the build variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Request {
    /// Run every task of the graph, dependencies first, in parallel.
    Build {
        /// The graph file (JSON, format version 1).
        graph: PathBuf,
        /// Run at most N tasks at once (default: the number of CPUs).
        #[arg(short = 'j', long = "jobs", value_name = "N", value_parser = clap::value_parser!(u32).range(1..=4096))]
        jobs: Option<u32>,
        /// Keep going after a failure: run everything that does not depend
        /// on a failed task.
        #[arg(short = 'k', long)]
        keep_going: bool,
        /// How ready tasks are ordered when slots are scarce.
        #[arg(long, default_value = "critical-path", value_parser = scheduler_parser())]
        scheduler: Policy,
        /// Stop a task (SIGTERM to its process group, SIGKILL 2 s later)
        /// that runs longer than SECS, unless the graph gives it a timeout.
        #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
        timeout: Option<Duration>,
        /// Warn when a running task has printed nothing for SECS (and again
        /// after each further SECS); 0 turns the warning off.
        #[arg(long, value_name = "SECS", default_value = "600", value_parser = parse_seconds_or_off)]
        stall_warning: Duration,
        /// Allow tasks to start only these programs (repeatable), as the
        /// graph names them; `sh` (which runs every `run` task) stays
        /// allowed, so this restricts `argv` tasks.
        #[arg(long = "allow-program", value_name = "PROGRAM")]
        allow_program: Vec<String>,
        /// A cache shared across machines over HTTP, in bazel-remote's
        /// layout ({URL}/cas/{sha256}, {URL}/ac/{signature}): read through
        /// before the build, written through after it. Uses
        /// runqueue-remote.wasm.
        #[arg(long, value_name = "URL", env = "RUNQUEUE_REMOTE_CACHE")]
        remote_cache: Option<String>,
        /// Only read from the remote cache, never upload (an sstate mirror).
        #[arg(long, requires = "remote_cache")]
        remote_cache_read_only: bool,
        /// How long one remote cache request may take.
        #[arg(long, value_name = "SECS", default_value = DEFAULT_REMOTE_TIMEOUT, value_parser = parse_seconds)]
        remote_cache_timeout: Duration,
        /// No early cutoff: a task that reruns makes its dependents rerun
        /// even when its outputs come out identical.
        #[arg(long)]
        no_cutoff: bool,
        /// Build twice without the cache, the second time in
        /// .runqueue/repro with only the declared inputs, and fail the
        /// tasks whose outputs differ (or that fail there).
        #[arg(long)]
        check_reproducible: bool,
        /// Memory the running tasks may use between them, by the peaks
        /// their earlier runs reached (512M, 4G; `none` turns it off).
        /// Default: 90 % of what is available (MemAvailable, or the
        /// cgroup's limit).
        #[arg(long, value_name = "SIZE", value_parser = runqueue::cli::parse_size)]
        memory_limit: Option<u64>,
        /// Do not share job slots with the tasks' nested builds: no GNU
        /// make jobserver is served or joined, tasks get no MAKEFLAGS.
        #[arg(long)]
        no_jobserver: bool,
        /// When another build holds the workspace, exit 2 at once instead
        /// of waiting for it to finish.
        #[arg(long)]
        no_wait: bool,
        #[command(flatten)]
        keys: Keys,
        #[command(flatten)]
        place: Place,
        #[command(flatten)]
        show: Show,
        #[command(flatten)]
        remote_exec: RemoteExec,
    },
    /// Validate the graph and describe it; runs nothing.
    Check {
        /// The graph file (JSON, format version 1).
        graph: PathBuf,
    },
    /// Say why a task is or is not covered by the cache: what differs from
    /// its last recorded run. Runs nothing.
    Explain {
        /// The graph file (JSON, format version 1).
        graph: PathBuf,
        /// The task id.
        task: String,
        #[command(flatten)]
        trust: Trust,
        #[command(flatten)]
        place: Place,
    },
    /// What `build` would do, without doing it: every task in the order one
    /// slot would start them, marked `run` or `cached`. Runs nothing.
    Plan {
        /// The graph file (JSON, format version 1).
        graph: PathBuf,
        #[command(flatten)]
        trust: Trust,
        #[command(flatten)]
        place: Place,
    },
    /// Run the real scheduler against a virtual clock: how long would this
    /// graph take with N slots? Runs nothing.
    Simulate {
        /// The graph file (JSON, format version 1).
        graph: PathBuf,
        /// Virtual slots.
        #[arg(short = 'j', long = "jobs", value_name = "N", default_value_t = DEFAULT_SIMULATE_JOBS, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        jobs: u32,
        /// Task durations: TSV lines `recipe<TAB>task<TAB>seconds`. Tasks not
        /// in it use the cache's recorded durations, then the median of their
        /// task name, then the median of all known, then equal weights.
        #[arg(long, value_name = "FILE")]
        durations: Option<PathBuf>,
        #[arg(long, default_value = "critical-path", value_parser = scheduler_parser())]
        scheduler: Policy,
        /// Start a task only when the peaks the cache recorded (by task,
        /// else the median of its task name) fit within SIZE together.
        #[arg(long, value_name = "SIZE", value_parser = runqueue::cli::parse_size)]
        memory_limit: Option<u64>,
        #[command(flatten)]
        place: Place,
    },
    /// Make an Ed25519 key pair for signing cache entries: the secret key
    /// (for --cache-signing-key, kept by whoever may write the cache, e.g.
    /// CI) and the public key (for --cache-trust, given to readers).
    Keygen {
        /// A name for the key, recorded in every entry it signs.
        name: String,
        /// Where to write the secret key (created, mode 0600; never
        /// overwritten).
        secret: PathBuf,
        /// Where to write the public key (created; never overwritten).
        public: PathBuf,
    },
    /// (internal) Kill the process groups listed on stdin when it closes.
    #[command(hide = true)]
    Watchdog,
    /// Convert `bitbake -g` output (task-depends.dot, or `A B` edge lines)
    /// into graph JSON, written to stdout or -o.
    ImportDot {
        /// The .dot or edge-list file.
        file: PathBuf,
        /// Shell text for every task; `{id}`, `{recipe}`, `{task}` and
        /// `{seconds}` are replaced. Without it tasks have nothing to run.
        #[arg(long, value_name = "TEMPLATE")]
        run: Option<String>,
        /// Durations for `{seconds}` (TSV, as for simulate).
        #[arg(long, value_name = "FILE")]
        durations: Option<PathBuf>,
        /// Multiply `{seconds}` by this (0.01: a hundred times faster).
        #[arg(long, default_value_t = 1.0)]
        scale: f64,
        /// Write the graph here instead of stdout.
        #[arg(short = 'o', long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Serve a REAPI server's build farm as a worker (a Remote Workers API
    /// bot): take its leases, run the actions here, upload the results.
    Worker(crate::worker::Args),
}

/// Signing and trusting cache entries.
#[derive(clap::Args, Debug)]
struct Keys {
    /// Sign every cache entry this build writes with this secret key
    /// (from `runqueue keygen`).
    #[arg(long, value_name = "FILE")]
    cache_signing_key: Option<PathBuf>,
    #[command(flatten)]
    trust: Trust,
}

/// Trusting cache entries.
#[derive(clap::Args, Debug)]
struct Trust {
    /// Use only cache entries signed by this public key (repeatable; any
    /// of them), local and remote alike; others are misses.
    #[arg(long, value_name = "FILE")]
    cache_trust: Vec<PathBuf>,
}

impl Keys {
    /// The key files' texts: (signing key, trusted keys).
    fn texts(&self) -> Result<(Option<String>, Vec<String>), Failure> {
        let read = |p: &PathBuf| read_text(p).map_err(bad_input);
        let signing = self.cache_signing_key.as_ref().map(read).transpose()?;
        Ok((signing, self.trust.texts()?))
    }
}

impl Trust {
    /// The trusted key files' texts.
    fn texts(&self) -> Result<Vec<String>, Failure> {
        let read = |p: &PathBuf| read_text(p).map_err(bad_input);
        self.cache_trust.iter().map(read).collect()
    }
}

/// What a build shows and leaves behind.
#[derive(clap::Args, Debug)]
struct Show {
    /// Print only failures and the summary.
    #[arg(short, long, conflicts_with = "verbose")]
    quiet: bool,
    /// Also print cached and not-run tasks as they are decided.
    #[arg(short, long)]
    verbose: bool,
    /// Where task logs and run scripts go, relative to the workspace.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_LOG_DIR)]
    logs: String,
    /// How many last lines of a failed task's log to print.
    #[arg(long, value_name = "N", default_value_t = 25)]
    tail: usize,
    /// Write the run as JSON (every task and the totals) to FILE.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Write a Chrome trace-event file (Perfetto, chrome://tracing) to FILE.
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,
    /// Write an SVG timeline (one row per slot) to FILE.
    #[arg(long, value_name = "FILE")]
    chart: Option<PathBuf>,
}

/// Where a build happens.
#[derive(clap::Args, Debug)]
struct Place {
    /// The workspace: task directories and logs live here (default: the
    /// current directory).
    #[arg(long, value_name = "DIR", default_value = ".")]
    workspace: PathBuf,
    /// The artifact cache directory; a relative path is inside the workspace.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_CACHE)]
    cache: PathBuf,
    /// Run every task and cache nothing.
    #[arg(long, conflicts_with = "cache")]
    no_cache: bool,
}

impl Place {
    /// The cache directory, unless `--no-cache`.
    fn cache(&self) -> Option<PathBuf> {
        (!self.no_cache).then(|| self.cache.clone())
    }
}

/// Where tasks run when not here.
#[derive(clap::Args, Debug)]
struct RemoteExec {
    /// Run every task on this remote execution service (REAPI v2:
    /// BuildGrid, Buildbarn, NativeLink, …) instead of as local processes;
    /// -j then counts remote slots (default 16).
    #[arg(long, value_name = "grpc://HOST:PORT", env = "RUNQUEUE_EXECUTOR")]
    executor: Option<String>,
    /// The service's instance name.
    #[arg(long, value_name = "NAME", default_value = "", requires = "executor")]
    instance: String,
}

/// Remote slots when `--executor` comes without -j: enough to keep a few
/// workers busy while runqueue, not the service's queue, decides what
/// runs next (critical path first).
pub const REMOTE_JOBS: u32 = 16;

impl RemoteExec {
    /// The executor, once it has answered; a malformed URL or a service
    /// that does not answer (or cannot execute) is bad input: exit 2.
    async fn open(&self) -> Result<Option<Arc<Executor>>, Failure> {
        let Some(url) = &self.executor else {
            return Ok(None);
        };
        let exec = Executor::new(url, &self.instance)
            .map_err(|e| bad_input(format!("--executor: {e}")))?;
        exec.check()
            .await
            .map_err(|e| bad_input(format!("--executor: {e}")))?;
        Ok(Some(Arc::new(exec)))
    }
}

/// `-j`, `--no-jobserver` and `--memory-limit` as a build uses them: for a
/// remote executor, remote slots (default [`REMOTE_JOBS`]) and no local
/// jobserver or memory budget, which describe this machine.
fn local_limits(
    remote: bool,
    given: (Option<u32>, bool, Option<u64>),
) -> (Option<u32>, bool, Option<u64>) {
    let (jobs, no_jobserver, memory_limit) = given;
    match remote {
        true => (jobs.or(Some(REMOTE_JOBS)), true, Some(0)),
        false => (jobs, no_jobserver, memory_limit),
    }
}

/// Runs the CLI with `args` (including the program name) and returns the
/// exit code.
pub fn main_with(args: impl IntoIterator<Item = OsString>) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                EXIT_BAD_INPUT
            } else {
                EXIT_OK
            };
        }
    };
    if let Request::Watchdog = cli.request {
        crate::process::run_watchdog(std::io::stdin().lock());
        return EXIT_OK;
    }
    // One thread: the component is single-threaded anyway, and a child's
    // exit then wakes the component without a hop between threads. Exits
    // are stamped by reaper threads, files jobs run on the blocking pool.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run_cli(cli)) {
        Ok(code) => code,
        Err(Failure(code, msg)) => {
            eprintln!("runqueue: {msg}");
            code
        }
    }
}

/// Why a command failed: its exit code and message.
struct Failure(i32, String);

fn bad_input(msg: impl Into<String>) -> Failure {
    Failure(EXIT_BAD_INPUT, msg.into())
}

/// A component call's nested result, as a value or a [`Failure`]: running
/// out of the memory limit is bad input (an absurd graph); any other trap
/// is runqueue's own failure; an error from the component is worded as
/// [`runqueue::cli::error_exit`] says.
fn answer<T>(graph: &Path, result: Result<Result<T, RunError>, CallError>) -> Result<T, Failure> {
    match result {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => {
            let (code, msg) = error_exit(&graph.display().to_string(), &crate::from_wit_error(e));
            Err(Failure(code, msg))
        }
        Err(CallError::OutOfMemory(msg)) => Err(bad_input(msg)),
        Err(CallError::Trap(e)) => Err(Failure(EXIT_INTERNAL, format!("{e:#}"))),
    }
}

async fn run_cli(cli: Cli) -> Result<i32, Failure> {
    let loader = Loader {
        component: cli.component.clone(),
        max_memory: cli.max_memory,
    };
    match cli.request {
        Request::Watchdog => unreachable!("handled before"),
        Request::Keygen {
            name,
            secret,
            public,
        } => keygen(&name, &secret, &public),
        Request::Check { graph } => check(&loader, &graph).await,
        Request::Explain {
            graph,
            task,
            trust,
            place,
        } => explain(&loader, &graph, &task, &trust, &place).await,
        Request::Plan {
            graph,
            trust,
            place,
        } => plan(&loader, &graph, &trust, &place).await,
        Request::Simulate {
            graph,
            jobs,
            durations,
            scheduler,
            memory_limit,
            place,
        } => {
            simulate(
                &loader,
                &graph,
                (jobs, memory_limit.filter(|&m| m > 0)),
                durations.as_deref(),
                scheduler,
                &place,
            )
            .await
        }
        Request::ImportDot {
            file,
            run,
            durations,
            scale,
            output,
        } => {
            let text = graph_text(&file)?;
            let options = ImportOptions {
                run_template: run,
                durations: durations
                    .as_deref()
                    .map(read_text)
                    .transpose()
                    .map_err(bad_input)?,
                scale,
            };
            import_dot(&loader, &file, &text, &options, output.as_deref()).await
        }
        Request::Worker(args) => Ok(crate::worker::run(args).await),
        request @ Request::Build { .. } => build(&loader, request).await,
    }
}

/// Writes a new key pair (32 bytes from the OS's random source); refuses
/// to overwrite anything.
fn keygen(name: &str, secret: &Path, public: &Path) -> Result<i32, Failure> {
    use std::io::{Read, Write};
    use std::os::unix::fs::OpenOptionsExt;
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut seed))
        .map_err(|e| bad_input(format!("cannot read /dev/urandom: {e}")))?;
    let (secret_text, public_text) =
        runqueue::cache::signing::keygen(name, seed).map_err(bad_input)?;
    for path in [secret, public] {
        if std::fs::symlink_metadata(path).is_ok() {
            return Err(bad_input(format!(
                "{} exists; keygen never overwrites",
                path.display()
            )));
        }
    }
    for (path, text, mode) in [(secret, secret_text, 0o600), (public, public_text, 0o644)] {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|e| bad_input(format!("cannot write {}: {e}", path.display())))?;
    }
    println!(
        "wrote the secret key {} and the public key {}",
        secret.display(),
        public.display()
    );
    Ok(0)
}

/// Finds and loads the component, once the input has been read.
struct Loader {
    component: Option<PathBuf>,
    /// The memory cap, in MiB.
    max_memory: u64,
}

impl Loader {
    /// The component (its remote-cache build when `remote`).
    fn load(&self, remote: bool) -> Result<Runqueue, Failure> {
        let explicit = self.component.as_deref();
        let path = find_component(explicit).map_err(|m| Failure(EXIT_INTERNAL, m))?;
        // The remote cache speaks wasi:http: the build of the component
        // that imports it lies next to the plain one.
        let path = match remote && explicit.is_none() {
            true => remote_sibling(&path)?,
            false => path,
        };
        let mut rq = Runqueue::load(&path).map_err(|e| Failure(EXIT_INTERNAL, format!("{e:#}")))?;
        rq.set_memory_limit((self.max_memory as usize) << 20);
        Ok(rq)
    }
}

fn remote_sibling(plain: &Path) -> Result<PathBuf, Failure> {
    let sibling = plain.with_file_name(REMOTE_COMPONENT);
    if !sibling.is_file() {
        let msg = format!(
            "--remote-cache needs {} (make build makes it)",
            sibling.display()
        );
        return Err(Failure(EXIT_INTERNAL, msg));
    }
    Ok(sibling)
}

fn open_workspace(place: &Place) -> Result<Workspace, Failure> {
    Workspace::open(&place.workspace)
        .map_err(|e| bad_input(format!("workspace {}: {e}", place.workspace.display())))
}

/// The graph's text from a file, a pipe or FIFO, or `-` (standard input).
fn graph_text(path: &Path) -> Result<String, Failure> {
    if !crate::pipes::is_pipe(path) {
        return read_graph(path).map_err(bad_input);
    }
    let wait = crate::pipes::WRITER_WAIT;
    let bytes = crate::pipes::read_pipe(path, "graph ", MAX_GRAPH_BYTES, wait);
    bytes
        .and_then(|b| runqueue::cli::graph_text(b, path))
        .map_err(bad_input)
}

fn print_all(lines: impl IntoIterator<Item = String>) {
    for line in lines {
        println!("{line}");
    }
}

async fn check(loader: &Loader, graph: &Path) -> Result<i32, Failure> {
    let text = graph_text(graph)?;
    let summary = answer(graph, loader.load(false)?.check(&text).await)?;
    let shown = graph.display().to_string();
    print_all(lines::check_lines(
        &shown,
        &crate::from_wit_summary(summary),
    ));
    Ok(EXIT_OK)
}

async fn explain(
    loader: &Loader,
    graph: &Path,
    task: &str,
    trust: &Trust,
    place: &Place,
) -> Result<i32, Failure> {
    let text = graph_text(graph)?;
    let ws = open_workspace(place)?;
    let rq = loader.load(false)?;
    let options = RunOptions {
        cache: Some(place.cache.clone()),
        trusted_keys: trust.texts()?,
        ..RunOptions::default()
    };
    print_all(answer(graph, rq.explain(&text, task, &options, &ws).await)?);
    Ok(EXIT_OK)
}

async fn plan(loader: &Loader, graph: &Path, trust: &Trust, place: &Place) -> Result<i32, Failure> {
    let text = graph_text(graph)?;
    let ws = open_workspace(place)?;
    let rq = loader.load(false)?;
    let options = RunOptions {
        cache: place.cache(),
        trusted_keys: trust.texts()?,
        ..RunOptions::default()
    };
    print_all(answer(graph, rq.plan(&text, &options, &ws).await)?);
    Ok(EXIT_OK)
}

async fn simulate(
    loader: &Loader,
    graph: &Path,
    (jobs, memory_limit): (u32, Option<u64>),
    durations: Option<&Path>,
    scheduler: Policy,
    place: &Place,
) -> Result<i32, Failure> {
    let text = graph_text(graph)?;
    let ws = open_workspace(place)?;
    let rq = loader.load(false)?;
    let durations = durations.map(read_text).transpose().map_err(bad_input)?;
    let cache = place.cache();
    let cache = cache.as_deref().map(|dir| (&ws, dir));
    let wit_scheduler = crate::to_wit_scheduler(scheduler);
    let sim = rq
        .simulate(&text, (jobs, memory_limit), wit_scheduler, durations, cache)
        .await;
    let sim = crate::from_wit_simulation(answer(graph, sim)?);
    print_all(lines::simulation_lines(&sim, jobs, scheduler));
    Ok(EXIT_OK)
}

async fn import_dot(
    loader: &Loader,
    file: &Path,
    text: &str,
    options: &ImportOptions,
    output: Option<&Path>,
) -> Result<i32, Failure> {
    let json = answer(file, loader.load(false)?.import_graph(text, options).await)?;
    match output {
        Some(path) => std::fs::write(path, json + "\n")
            .map_err(|e| bad_input(format!("cannot write {}: {e}", path.display())))?,
        None => println!("{json}"),
    }
    Ok(EXIT_OK)
}

/// No jobserver when asked; serving `-j` slots when given; else joining
/// the make jobserver runqueue runs under, if any (as make and Ninja do),
/// or serving one slot per CPU.
fn jobserver_mode(jobs: Option<u32>, off: bool) -> JobserverMode {
    match (off, jobs) {
        (true, _) => JobserverMode::Off,
        (false, Some(j)) => JobserverMode::Serve(j),
        (false, None) => JobserverMode::JoinOr(crate::files::cpus() as u32),
    }
}

async fn build(loader: &Loader, request: Request) -> Result<i32, Failure> {
    let Request::Build {
        graph,
        jobs,
        keep_going,
        scheduler,
        timeout,
        stall_warning,
        allow_program,
        remote_cache,
        remote_cache_read_only,
        remote_cache_timeout,
        no_cutoff,
        check_reproducible,
        memory_limit,
        no_jobserver,
        no_wait,
        keys,
        place,
        show,
        remote_exec,
    } = request
    else {
        unreachable!("called for build")
    };
    let text = graph_text(&graph)?;
    let ws = open_workspace(&place)?;
    let executor = remote_exec.open().await?;
    let (jobs, no_jobserver, memory_limit) =
        local_limits(executor.is_some(), (jobs, no_jobserver, memory_limit));
    let remote = remote_of(remote_cache, remote_cache_read_only, remote_cache_timeout)?;
    if remote.is_some() && place.no_cache {
        let why = "--remote-cache needs a local cache to read through (drop --no-cache)";
        return Err(bad_input(why));
    }
    check_writable(&show).map_err(bad_input)?;
    let (signing_key, trusted_keys) = keys.texts()?;
    let rq = loader.load(remote.is_some())?;
    let options = RunOptions {
        max_parallel: jobs,
        keep_going,
        cache: place.cache(),
        scheduler: crate::to_wit_scheduler(scheduler),
        log_dir: Some(show.logs.clone()),
        timeout,
        remote_cache: remote,
        signing_key,
        trusted_keys,
        no_cutoff,
        check_reproducible,
        memory_limit,
    };
    let _lock = hold_workspace(&ws, no_wait, || rq.check(&text), &graph).await?;
    let controls = Controls {
        jobserver: jobserver_mode(jobs, no_jobserver),
        interrupts: Some(interrupt_requests()),
        watchdog: std::env::current_exe().ok(),
        allowed_programs: (!allow_program.is_empty()).then_some(allow_program),
        activity: Some(Activity::default()),
        executor,
    };
    let console = console_for(&show, &ws, &controls, stall_warning);
    // Orphans of tasks become ours, so none outlives the build.
    let subreaper = crate::process::strays::become_subreaper();
    let ticker = console.start_ticker();
    let events = console.clone();
    let result = rq
        .run_controlled(&text, &options, &controls, &ws, move |e| events.event(e))
        .await;
    ticker.abort();
    if subreaper {
        kill_strays();
    }
    let report = answer(&graph, result)?;
    console.summary(&report);
    write_outputs(&report, &show).map_err(bad_input)?;
    // Failed, or stopped before everything ran (interrupted).
    let t = &report.totals;
    Ok(build_exit_code(t.failed == 0 && t.not_run == 0))
}

/// The workspace for this build alone. When another build holds it: exit
/// 2 (`--no-wait`, or a build nested in the holder), else refuse a bad
/// graph first (`check`) and wait, saying once who holds it.
async fn hold_workspace<F: Future<Output = CallResult<Summary>>>(
    ws: &Workspace,
    no_wait: bool,
    check: impl FnOnce() -> F,
    graph: &Path,
) -> Result<WorkspaceLock, Failure> {
    let root = ws.root().to_path_buf();
    let locked =
        |e: std::io::Error| bad_input(format!("cannot lock workspace {}: {e}", root.display()));
    let holder = match WorkspaceLock::try_lock(&root).map_err(locked)? {
        Ok(lock) => return Ok(lock),
        Err(holder) => holder,
    };
    let busy = holder.describe(&root);
    if no_wait || matches!(holder, Holder::Ancestor(_)) {
        return Err(bad_input(busy));
    }
    answer(graph, check().await)?;
    eprintln!("runqueue: {busy}; waiting for it to finish…");
    WorkspaceLock::lock_async(root.clone())
        .await
        .map_err(locked)
}

/// The console a build prints to, watching for stalled tasks.
fn console_for(show: &Show, ws: &Workspace, controls: &Controls, stall: Duration) -> Console {
    let verbosity = if show.quiet {
        Verbosity::Quiet
    } else if show.verbose {
        Verbosity::Verbose
    } else {
        Verbosity::Normal
    };
    let console = Console::new(verbosity, ws.root().to_path_buf(), show.tail);
    if let (false, Some(activity)) = (stall.is_zero(), &controls.activity) {
        console.watch_stalls(activity.clone(), stall);
    }
    console
}

/// The component: `explicit`, else `$RUNQUEUE_COMPONENT`, else
/// `runqueue.wasm` next to this program, else where `cargo build --target
/// wasm32-wasip2` puts it relative to this program in the same target
/// directory (release first).
pub fn find_component(explicit: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os(COMPONENT_ENV) {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot locate this program: {e}"))?;
    let mut candidates = Vec::new();
    for dir in exe.ancestors().skip(1).take(3) {
        candidates.push(dir.join("runqueue.wasm"));
        for profile in ["release", "debug"] {
            candidates.push(
                dir.join("wasm32-wasip2")
                    .join(profile)
                    .join("runqueue.wasm"),
            );
        }
    }
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| {
            format!(
                "cannot find the runqueue component (runqueue.wasm): build it with `make build`, \
             or give --component FILE or ${COMPONENT_ENV}"
            )
        })
}

/// Refuses, before anything runs, a `--report`, `--trace` or `--chart`
/// path that could not be written after the build: a directory in its
/// place, or a file where one of its directories should be. Missing
/// directories are made when the file is written. Nothing is created here.
fn check_writable(show: &Show) -> Result<(), String> {
    let given = [
        ("--report", &show.report),
        ("--trace", &show.trace),
        ("--chart", &show.chart),
    ];
    for (option, path) in given {
        let Some(path) = path else { continue };
        if path.is_dir() {
            return Err(format!("{option} {}: is a directory", path.display()));
        }
        let existing = path
            .ancestors()
            .skip(1)
            .find(|a| a.as_os_str().is_empty() || a.exists());
        if let Some(a) = existing.filter(|a| !a.as_os_str().is_empty() && !a.is_dir()) {
            return Err(format!(
                "{option} {}: {} is not a directory",
                path.display(),
                a.display()
            ));
        }
    }
    Ok(())
}

/// The remote cache `--remote-cache` and its options ask for.
fn remote_of(
    url: Option<String>,
    read_only: bool,
    timeout: Duration,
) -> Result<Option<crate::RemoteCache>, Failure> {
    let remote = url.map(|url| crate::RemoteCache::new(&url)).transpose();
    Ok(remote.map_err(bad_input)?.map(|r| crate::RemoteCache {
        read_only,
        timeout,
        ..r
    }))
}

/// Kills what tasks left running outside their process groups, saying so.
fn kill_strays() {
    let killed = crate::process::strays::kill(None);
    if !killed.is_empty() {
        eprintln!(
            "runqueue: warning: killed {} process(es) that tasks left running: {}",
            killed.len(),
            killed.join(", ")
        );
    }
}

/// Writes the files `--report`, `--trace` and `--chart` ask for.
fn write_outputs(report: &Report, show: &Show) -> Result<(), String> {
    let write = |path: &Option<PathBuf>, text: String| match path {
        Some(p) => p
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(p, text))
            .map_err(|e| format!("cannot write {}: {e}", p.display())),
        None => Ok(()),
    };
    write(
        &show.report,
        serde_json::to_string_pretty(&outputs::json_report(report)).expect("json") + "\n",
    )?;
    write(&show.trace, outputs::chrome_trace(report))?;
    write(&show.chart, outputs::svg_chart(report))
}

/// Counts Ctrl-C (SIGINT) and SIGTERM: the first asks the build to start
/// nothing new and wait, the second to kill the running tasks.
fn interrupt_requests() -> tokio::sync::watch::Receiver<u32> {
    use tokio::signal::unix::{signal, SignalKind};
    let (tx, rx) = tokio::sync::watch::channel(0u32);
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return rx;
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            let n = *tx.borrow() + 1;
            if n == 2 {
                eprintln!("runqueue: interrupted again: killing the running tasks");
            }
            if tx.send(n).is_err() {
                return;
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every option the component's own command line takes for a
    /// subcommand is one this command line takes for it too.
    #[test]
    fn the_component_cli_is_a_subset_of_this_one() {
        let cli = Cli::command();
        for spec in runqueue::cli::args::SUBCOMMANDS {
            let sub = cli
                .find_subcommand(spec.name)
                .unwrap_or_else(|| panic!("no subcommand {}", spec.name));
            let positional = sub.get_positionals().count();
            assert_eq!(positional, spec.positional.len(), "{}", spec.name);
            for option in spec.options {
                let long = option.trim_start_matches("--");
                assert!(
                    sub.get_arguments().any(|a| a.get_long() == Some(long)),
                    "{} {option}",
                    spec.name
                );
            }
        }
    }
}
