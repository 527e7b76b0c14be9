//! The native host for the runqueue component: real processes through
//! `process`, progress events through `progress`, the component loaded once
//! and run per call.
//!
//! Embedding runqueue in a Rust program takes three steps:
//!
//! ```no_run
//! # async fn demo() -> wasmtime::Result<()> {
//! use runqueue_host::{Runqueue, Workspace, RunOptions};
//! let rq = Runqueue::load(std::path::Path::new("runqueue.wasm"))?;
//! let ws = Workspace::open(std::path::Path::new("."))?;
//! let graph = std::fs::read_to_string("graph.json")?;
//! let options = RunOptions { max_parallel: Some(4), ..Default::default() };
//! let report = rq.run(&graph, &options, &ws, |_event| {}).await?;
//! # Ok(()) }
//! ```
//!
//! A host that keeps its own engine, store and linker (a build service
//! running many components) uses the pieces instead: [`add_to_linker`]
//! provides WASI and `process`/`types`/`progress` (real processes),
//! [`HostState`] is the store data, and [`bindings::Executor`] is the typed
//! entry point:
//!
//! ```no_run
//! # async fn demo() -> wasmtime::Result<()> {
//! use runqueue_host::{add_to_linker, bindings::Executor, HostState, Workspace};
//! use runqueue_host::bindings::exports::runqueue::executor::runner::Options;
//! use wasmtime::{component::{Component, Linker}, Config, Engine, Store};
//!
//! let engine = Engine::new(&Config::new())?;
//! let component = Component::from_file(&engine, "runqueue.wasm")?;
//! let mut linker = Linker::new(&engine);
//! add_to_linker(&mut linker)?;
//!
//! let ws = Workspace::open(std::path::Path::new("build"))?;
//! let mut store = Store::new(&engine, HostState::new(&ws, |event| println!("{event:?}"))?);
//! store.limiter(HostState::limiter);
//! let runqueue = Executor::instantiate_async(&mut store, &component, &linker).await?;
//! let options = Options {
//!     max_parallel: Some(8),
//!     keep_going: false,
//!     cache_dir: Some(".runqueue/cache".into()),
//!     scheduler: runqueue_host::Scheduler::CriticalPath,
//!     log_dir: None,
//!     timeout_ms: None,
//!     remote_cache: None,
//! };
//! let graph = std::fs::read_to_string("build/graph.json")?;
//! match runqueue.runqueue_executor_runner().call_run(&mut store, &graph, &options).await? {
//!     Ok(report) => println!("{} failed", report.totals.failed),
//!     Err(e) => eprintln!("bad graph: {e:?}"),
//! }
//! # Ok(()) }
//! ```
//!
//! Knows how to host the component; knows nothing of graphs or scheduling,
//! which are the component's.

#![deny(unsafe_code)]

pub mod cli;
pub mod console;
pub mod outputs;
pub mod process;
pub mod remote;

use std::path::{Path, PathBuf};

use wasmtime::component::{Component, HasSelf, Linker, Resource, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

pub use process::{ChildProcess, Workspace};

/// Bindings for the `executor` world, generated from `wit/`.
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "executor",
        imports: { default: trappable },
        exports: { default: async },
        additional_derives: [PartialEq],
        with: {
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "runqueue:executor/process.child": crate::process::ChildProcess,
        },
    });
}

use bindings::exports::runqueue::executor::runner;
pub use bindings::runqueue::executor::process::{ExitStatus, SpawnError};
pub use bindings::runqueue::executor::progress::Event;
pub use bindings::runqueue::executor::types::{Report, TaskReport, TaskState, Totals};
pub use runner::{
    Error as RunError, ImportOptions, Scheduler, SimulateOptions, Simulation, Summary,
};

/// Where the component sees a cache directory that lies outside the
/// workspace.
pub const CACHE_GUEST_DIR: &str = "/cache";

/// The default cache directory, relative to the workspace.
pub const DEFAULT_CACHE: &str = runqueue::cli::DEFAULT_CACHE;

/// How to run a graph: what goes to the component.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The most tasks at once; `None` is the host's CPU count.
    pub max_parallel: Option<u32>,
    /// Run everything that does not depend on a failure.
    pub keep_going: bool,
    /// The artifact cache directory: relative paths are inside the
    /// workspace; `None` caches nothing.
    pub cache: Option<PathBuf>,
    /// How ready tasks are ordered.
    pub scheduler: Scheduler,
    /// Where logs go, relative to the workspace; `None` is `.runqueue/logs`.
    pub log_dir: Option<String>,
    /// Stop tasks that run longer (unless the graph gives their own
    /// `timeout`).
    pub timeout: Option<std::time::Duration>,
    /// A cache shared across machines; needs `cache` and the
    /// `runqueue-remote.wasm` build of the component.
    pub remote_cache: Option<remote::RemoteCache>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            max_parallel: None,
            keep_going: false,
            cache: None,
            scheduler: Scheduler::CriticalPath,
            log_dir: None,
            timeout: None,
            remote_cache: None,
        }
    }
}

/// How the host oversees a run's processes: what stays on this side and
/// never reaches the component. The default oversees nothing.
#[derive(Debug, Clone, Default)]
pub struct Controls {
    /// Interrupt requests so far (Ctrl-C): at 1 the build starts nothing
    /// new and waits for running tasks; at 2 the host kills them.
    pub interrupts: Option<tokio::sync::watch::Receiver<u32>>,
    /// A program that, run with the argument `watchdog`, does what
    /// [`process::run_watchdog`] does (the `runqueue` binary does): it kills
    /// the run's task process groups if this host dies.
    pub watchdog: Option<PathBuf>,
    /// With `Some`, the only programs tasks may start, as the graph names
    /// them (`make`, `/usr/bin/make`); the shell `sh` is always allowed.
    pub allowed_programs: Option<Vec<String>>,
    /// Records when each task process last printed, for a stall warning
    /// (see [`console::Console::watch_stalls`]).
    pub activity: Option<process::Activity>,
}

/// Why a call into the component did not return.
#[derive(Debug)]
pub enum CallError {
    /// The component needed more memory than its limit (an absurd graph);
    /// the text says so and how to raise the limit.
    OutOfMemory(String),
    /// It trapped or could not be instantiated: runqueue's own failure.
    Trap(wasmtime::Error),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::OutOfMemory(msg) => write!(f, "{msg}"),
            CallError::Trap(e) => write!(f, "{e:#}"),
        }
    }
}

impl std::error::Error for CallError {}

/// The error a memory growth past [`MemoryCap`]'s limit traps with.
#[derive(Debug)]
struct MemoryLimitReached;

impl std::fmt::Display for MemoryLimitReached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "memory limit reached")
    }
}

impl std::error::Error for MemoryLimitReached {}

/// Caps the component's memory: growth past `limit` bytes traps with
/// [`MemoryLimitReached`], which [`Runqueue`] turns into
/// [`CallError::OutOfMemory`].
pub struct MemoryCap {
    limit: usize,
}

impl wasmtime::ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            return Err(MemoryLimitReached.into());
        }
        Ok(maximum.is_none_or(|m| desired <= m))
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        Err(error)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(maximum.is_none_or(|m| desired <= m))
    }
}

/// The component's error as the plain-Rust one both command lines word.
pub fn from_wit_error(e: RunError) -> runqueue::api::Error {
    match e {
        RunError::InvalidGraph(m) => runqueue::api::Error::InvalidGraph(m),
        RunError::InvalidRequest(m) => runqueue::api::Error::InvalidRequest(m),
        RunError::Internal(m) => runqueue::api::Error::Internal(m),
    }
}

/// `check`'s answer as the plain-Rust one both command lines print.
pub fn from_wit_summary(s: Summary) -> runqueue::api::Summary {
    runqueue::api::Summary {
        tasks: s.tasks,
        edges: s.edges,
        roots: s.roots,
        finals: s.finals,
        longest_path: s.longest_path,
    }
}

/// `simulate`'s answer as the plain-Rust one both command lines print.
pub fn from_wit_simulation(s: Simulation) -> runqueue::api::Simulated {
    runqueue::api::Simulated {
        makespan_ms: s.makespan_ms,
        work_ms: s.work_ms,
        critical_path_ms: s.critical_path_ms,
        lower_bound_ms: s.lower_bound_ms,
        critical_path: s.critical_path,
        peak_parallel: s.peak_parallel,
    }
}

/// A scheduling policy as the component takes it.
pub fn to_wit_scheduler(p: runqueue::plan::Policy) -> Scheduler {
    use runqueue::plan::Policy;
    match p {
        Policy::CriticalPath => Scheduler::CriticalPath,
        Policy::Speed => Scheduler::Speed,
        Policy::Fifo => Scheduler::Fifo,
        Policy::Waves => Scheduler::Waves,
    }
}

/// Where the component finds the cache, and what the host must preopen for
/// it.
struct CacheMount {
    guest_path: String,
    preopen: Option<PathBuf>,
}

/// A relative cache path without `..` stays in the workspace preopen; any
/// other is created if needed and preopened on its own.
fn cache_mount(cache: &Path, ws: &Workspace) -> wasmtime::Result<CacheMount> {
    use wasmtime::error::Context;
    let rel = cache.to_str().filter(|s| {
        cache.is_relative()
            && !cache
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
            && !s.is_empty()
    });
    if let Some(rel) = rel {
        return Ok(CacheMount {
            guest_path: rel.to_string(),
            preopen: None,
        });
    }
    let host = if cache.is_relative() {
        ws.root().join(cache)
    } else {
        cache.to_path_buf()
    };
    std::fs::create_dir_all(&host)
        .with_context(|| format!("cannot create the cache directory {}", host.display()))?;
    let real = std::fs::canonicalize(&host)?;
    Ok(CacheMount {
        guest_path: CACHE_GUEST_DIR.to_string(),
        preopen: Some(real),
    })
}

/// Where compiled components are kept: `$RUNQUEUE_COMPILE_CACHE`, else
/// `$XDG_CACHE_HOME/runqueue`, else `~/.cache/runqueue`. Setting
/// `RUNQUEUE_COMPILE_CACHE` to the empty string turns the cache off.
pub fn compile_cache_dir() -> Option<PathBuf> {
    match std::env::var_os("RUNQUEUE_COMPILE_CACHE") {
        Some(d) if d.is_empty() => None,
        Some(d) => Some(PathBuf::from(d)),
        None => std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .map(|d| d.join("runqueue")),
    }
}

/// The component from `dir` if this exact component was compiled there by
/// this engine before; otherwise compiles it and stores the result (through
/// a temporary file and a rename). A cache that cannot be written only
/// costs the compile.
fn load_cached(engine: &Engine, wasm: &[u8], dir: &Path) -> wasmtime::Result<Component> {
    use sha2::{Digest, Sha256};
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    let key = format!("{:x}-{:016x}", Sha256::digest(wasm), h.finish());
    let file = dir.join(format!("{key}.cwasm"));
    if file.is_file() {
        // SAFETY: the file is one this function wrote from a component with
        // this sha256 for an engine with these settings, in the user's own
        // cache directory; wasmtime also checks the engine compatibility.
        #[allow(unsafe_code)]
        if let Ok(c) = unsafe { Component::deserialize_file(engine, &file) } {
            return Ok(c);
        }
    }
    let component = Component::new(engine, wasm)?;
    if let Ok(bytes) = component.serialize() {
        let tmp = dir.join(format!(".{key}.{}.tmp", std::process::id()));
        let stored = std::fs::create_dir_all(dir)
            .and_then(|_| std::fs::write(&tmp, bytes))
            .and_then(|_| std::fs::rename(&tmp, &file));
        if stored.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }
    Ok(component)
}

/// What one instance of the component owns on the host side.
pub struct HostState {
    limits: MemoryCap,
    wasi: WasiCtx,
    table: ResourceTable,
    /// Where processes run; `None` for calls that run nothing (`check`).
    workspace: Option<Workspace>,
    live: process::LiveGroups,
    activity: process::Activity,
    /// Programs found on `PATH` so far.
    programs: process::Programs,
    http: wasmtime_wasi_http::WasiHttpCtx,
    /// Lets `wasi:http` reach the remote cache's origin and nothing else.
    http_hooks: remote::OriginOnly,
    /// With `Some`, only these programs (names or paths) may be spawned.
    allowed: Option<Vec<String>>,
    interrupts: Option<tokio::sync::watch::Receiver<u32>>,
    on_event: Box<dyn FnMut(Event) + Send>,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl wasmtime_wasi_http::WasiHttpView for HostState {
    fn http(&mut self) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
        wasmtime_wasi_http::WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.http_hooks,
        }
    }
}

impl bindings::runqueue::executor::process::Host for HostState {
    fn spawn(
        &mut self,
        cmd: bindings::runqueue::executor::process::Command,
    ) -> wasmtime::Result<Result<Resource<ChildProcess>, SpawnError>> {
        let Some(ws) = &self.workspace else {
            return Ok(Err(SpawnError::Other(
                "no workspace: this call runs nothing".into(),
            )));
        };
        if let Some(allowed) = &self.allowed {
            if !allowed.contains(&cmd.program) {
                return Ok(Err(SpawnError::PermissionDenied(format!(
                    "program \"{}\" is not allowed (see --allow-program)",
                    cmd.program
                ))));
            }
        }
        match process::spawn(ws, &cmd, &self.live, &self.activity, &self.programs) {
            Ok(child) => Ok(Ok(process::Children(&mut self.table).push(child)?)),
            Err(e) => Ok(Err(e)),
        }
    }

    fn interrupt(&mut self) -> wasmtime::Result<Resource<DynPollable>> {
        let signal = self
            .table
            .push(process::Interrupt(self.interrupts.clone()))?;
        wasmtime_wasi::p2::subscribe(&mut self.table, signal)
    }

    fn parallelism(&mut self) -> wasmtime::Result<u32> {
        Ok(std::thread::available_parallelism().map_or(1, |n| n.get() as u32))
    }

    fn file_mode(&mut self, path: String) -> wasmtime::Result<Result<u32, String>> {
        Ok(self.workspace().and_then(|ws| ws.file_mode(&path)))
    }

    fn set_file_mode(&mut self, path: String, mode: u32) -> wasmtime::Result<Result<(), String>> {
        Ok(self
            .workspace()
            .and_then(|ws| ws.set_file_mode(&path, mode)))
    }
}

impl HostState {
    fn workspace(&self) -> Result<&Workspace, String> {
        self.workspace
            .as_ref()
            .ok_or_else(|| "no workspace: this call runs nothing".to_string())
    }
}

impl bindings::runqueue::executor::process::HostChild for HostState {
    fn subscribe(&mut self, c: Resource<ChildProcess>) -> wasmtime::Result<Resource<DynPollable>> {
        process::Children(&mut self.table).subscribe(c)
    }

    fn try_wait(&mut self, c: Resource<ChildProcess>) -> wasmtime::Result<Option<ExitStatus>> {
        process::Children(&mut self.table).try_wait(c)
    }

    fn kill(&mut self, c: Resource<ChildProcess>) -> wasmtime::Result<()> {
        process::Children(&mut self.table).kill(c)
    }

    fn pid(&mut self, c: Resource<ChildProcess>) -> wasmtime::Result<u32> {
        process::Children(&mut self.table).pid(c)
    }

    fn drop(&mut self, c: Resource<ChildProcess>) -> wasmtime::Result<()> {
        process::Children(&mut self.table).drop(c)
    }
}

impl bindings::runqueue::executor::types::Host for HostState {}

impl bindings::runqueue::executor::progress::Host for HostState {
    fn report(&mut self, ev: Event) -> wasmtime::Result<()> {
        (self.on_event)(ev);
        Ok(())
    }
}

impl HostState {
    /// The host side of one instance: `workspace` preopened as `.` (task
    /// paths are relative to it), the memory cap [`DEFAULT_MEMORY_LIMIT`]
    /// (install it with `store.limiter(HostState::limiter)`), processes
    /// spawned for real with no [`Controls`], progress events to
    /// `on_event`. For embedders that keep their own [`Store`] and
    /// [`Linker`] (see [`add_to_linker`]); [`Runqueue`] does all of this
    /// itself.
    pub fn new(
        workspace: &Workspace,
        on_event: impl FnMut(Event) + Send + 'static,
    ) -> wasmtime::Result<HostState> {
        let instance = Instance {
            workspace: Some(workspace),
            cache: None,
            remote: None,
            memory_limit: DEFAULT_MEMORY_LIMIT,
        };
        HostState::build(&instance, &Controls::default(), Box::new(on_event))
    }

    /// The memory limiter to pass to [`Store::limiter`].
    pub fn limiter(&mut self) -> &mut dyn wasmtime::ResourceLimiter {
        &mut self.limits
    }

    fn build(
        instance: &Instance<'_>,
        controls: &Controls,
        on_event: Box<dyn FnMut(Event) + Send>,
    ) -> wasmtime::Result<HostState> {
        let live = live_groups(controls)?;
        let allowed = controls.allowed_programs.clone().map(|mut a| {
            a.push("sh".to_string());
            a
        });
        let origin = instance.remote.and_then(|r| remote::origin_of(&r.url).ok());
        Ok(HostState {
            limits: MemoryCap {
                limit: instance.memory_limit,
            },
            wasi: wasi_ctx(instance)?,
            table: ResourceTable::new(),
            workspace: instance.workspace.cloned(),
            live,
            activity: controls.activity.clone().unwrap_or_default(),
            programs: process::Programs::default(),
            http: wasmtime_wasi_http::WasiHttpCtx::new(),
            http_hooks: remote::OriginOnly::new(origin),
            allowed,
            interrupts: controls.interrupts.clone(),
            on_event,
        })
    }
}

/// What one instance sees: the workspace (preopened as `.`), the cache's
/// mount, the remote cache it may reach, and its memory cap.
struct Instance<'a> {
    /// `None` for calls that run nothing (`check`).
    workspace: Option<&'a Workspace>,
    cache: Option<&'a CacheMount>,
    remote: Option<&'a remote::RemoteCache>,
    memory_limit: usize,
}

/// The process groups of a run, watched by the watchdog `controls` names;
/// a second interrupt kills them all.
fn live_groups(controls: &Controls) -> wasmtime::Result<process::LiveGroups> {
    let live = match &controls.watchdog {
        Some(program) => {
            use wasmtime::error::Context;
            let mut dog = std::process::Command::new(program)
                .arg("watchdog")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::null())
                .spawn()
                .with_context(|| format!("cannot start the watchdog {}", program.display()))?;
            process::LiveGroups::with_watchdog(dog.stdin.take().expect("piped"))
        }
        None => process::LiveGroups::default(),
    };
    if let Some(mut rx) = controls.interrupts.clone() {
        let live = live.clone();
        tokio::spawn(async move {
            if rx.wait_for(|n| *n >= 2).await.is_ok() {
                live.kill_all();
            }
        });
    }
    Ok(live)
}

/// WASI for one instance: stderr, PATH, the workspace as `.`, a cache
/// outside it as [`CACHE_GUEST_DIR`].
fn wasi_ctx(instance: &Instance<'_>) -> wasmtime::Result<WasiCtx> {
    let mut wasi = WasiCtx::builder();
    wasi.inherit_stderr();
    // File system calls are short; running them on this thread instead
    // of tokio's blocking pool makes the cache several times faster.
    wasi.allow_blocking_current_thread(true);
    if let Ok(path) = std::env::var("PATH") {
        wasi.env("PATH", path);
    }
    if let Some(ws) = instance.workspace {
        wasi.preopened_dir(ws.root(), ".", wasmtime_wasi::FsPerms::ReadWrite)?;
        wasi.env("RUNQUEUE_WORKSPACE", ws.root().to_string_lossy());
    }
    if let Some(dir) = instance.cache.and_then(|c| c.preopen.as_ref()) {
        wasi.preopened_dir(dir, CACHE_GUEST_DIR, wasmtime_wasi::FsPerms::ReadWrite)?;
    }
    Ok(wasi.build())
}

/// Adds everything the component imports to `linker`: WASI 0.2 (from
/// wasmtime-wasi), `wasi:http` (wasmtime-wasi-http, allowed to reach the
/// run's remote cache only; see [`remote`]) and runqueue's `process`, `types` and `progress`,
/// implemented by [`HostState`] with real processes. The engine needs
/// async support; call the exports with their `_async` entry points.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    // For runqueue-remote.wasm; requests go to the remote cache only.
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker)?;
    use bindings::runqueue::executor::{process as p, progress, types};
    p::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    types::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    progress::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    Ok(())
}

/// The compiled component and a linker that provides its imports; cheap to
/// run many times.
pub struct Runqueue {
    engine: Engine,
    component: Component,
    linker: Linker<HostState>,
    memory_limit: usize,
}

/// The component's memory limit unless [`Runqueue::set_memory_limit`]
/// says otherwise: 2 GiB.
pub const DEFAULT_MEMORY_LIMIT: usize = 2 << 30;

/// The result of a call into the component: its own answer, or why it gave
/// none.
pub type CallResult<T> = Result<Result<T, RunError>, CallError>;

impl Runqueue {
    /// Loads the component at `path` (a `.wasm` file). Compiling it takes
    /// about a second, so the machine code is kept in a compile cache
    /// ([`compile_cache_dir`]) keyed by the component's sha256 and the
    /// engine's settings, and reused by later calls.
    pub fn load(path: &Path) -> wasmtime::Result<Runqueue> {
        use wasmtime::error::Context;
        let engine = Engine::new(&Config::new())?;
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read the runqueue component {}", path.display()))?;
        let component = match compile_cache_dir() {
            Some(dir) => load_cached(&engine, &bytes, &dir)?,
            None => Component::new(&engine, &bytes)?,
        };
        Self::new(engine, component)
    }

    /// Uses an already compiled component; the engine must support async.
    pub fn new(engine: Engine, component: Component) -> wasmtime::Result<Runqueue> {
        let mut linker = Linker::new(&engine);
        add_to_linker(&mut linker)?;
        Ok(Runqueue {
            engine,
            component,
            linker,
            memory_limit: DEFAULT_MEMORY_LIMIT,
        })
    }

    /// Caps the memory of each instance (a graph too large for it fails
    /// with [`CallError::OutOfMemory`]).
    pub fn set_memory_limit(&mut self, bytes: usize) {
        self.memory_limit = bytes;
    }

    /// A trap as a [`CallError`]: reaching the memory cap is named for
    /// what it is.
    fn call_error(&self, e: wasmtime::Error) -> CallError {
        if e.downcast_ref::<MemoryLimitReached>().is_some() {
            CallError::OutOfMemory(format!(
                "the runqueue component needed more memory than its limit ({} MiB): \
                 the graph is too large for it; raise it with --max-memory",
                self.memory_limit >> 20
            ))
        } else {
            CallError::Trap(e)
        }
    }

    /// An instance of the component, overseen by `controls`.
    async fn instantiate(
        &self,
        mut instance: Instance<'_>,
        controls: &Controls,
        on_event: Box<dyn FnMut(Event) + Send>,
    ) -> Result<(Store<HostState>, bindings::Executor), CallError> {
        instance.memory_limit = self.memory_limit;
        let state = HostState::build(&instance, controls, on_event).map_err(CallError::Trap)?;
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        let executor =
            bindings::Executor::instantiate_async(&mut store, &self.component, &self.linker)
                .await
                .map_err(|e| self.call_error(e))?;
        Ok((store, executor))
    }

    /// An instance that runs nothing (`check`, `import-graph`).
    async fn instantiate_bare(&self) -> Result<(Store<HostState>, bindings::Executor), CallError> {
        let instance = Instance {
            workspace: None,
            cache: None,
            remote: None,
            memory_limit: self.memory_limit,
        };
        self.instantiate(instance, &Controls::default(), Box::new(|_| {}))
            .await
    }

    /// Validates `graph` (JSON text) without running anything.
    pub async fn check(&self, graph: &str) -> CallResult<Summary> {
        let (mut store, executor) = self.instantiate_bare().await?;
        let call = executor
            .runqueue_executor_runner()
            .call_check(&mut store, graph);
        call.await.map_err(|e| self.call_error(e))
    }

    /// Runs `graph` in `workspace`, calling `on_event` for every progress
    /// event, with no [`Controls`]. Task failures are in the report; an
    /// inner `Err` is bad input, an outer one a broken component.
    pub async fn run(
        &self,
        graph: &str,
        options: &RunOptions,
        workspace: &Workspace,
        on_event: impl FnMut(Event) + Send + 'static,
    ) -> CallResult<Report> {
        let controls = Controls::default();
        self.run_controlled(graph, options, &controls, workspace, on_event)
            .await
    }

    /// [`Runqueue::run`] with the host overseeing the processes as
    /// `controls` says (interrupts, watchdog, allowed programs, activity).
    pub async fn run_controlled(
        &self,
        graph: &str,
        options: &RunOptions,
        controls: &Controls,
        workspace: &Workspace,
        on_event: impl FnMut(Event) + Send + 'static,
    ) -> CallResult<Report> {
        let (mut store, executor, options) = self
            .instantiate_with(workspace, options, controls, Box::new(on_event))
            .await?;
        let call = executor
            .runqueue_executor_runner()
            .call_run(&mut store, graph, &options);
        call.await.map_err(|e| self.call_error(e))
    }

    /// Explains why `task` of `graph` is or is not covered by the cache in
    /// `options.cache` (which must be set). Runs nothing.
    pub async fn explain(
        &self,
        graph: &str,
        task: &str,
        options: &RunOptions,
        workspace: &Workspace,
    ) -> CallResult<Vec<String>> {
        let (mut store, executor, options) = self
            .instantiate_with(workspace, options, &Controls::default(), Box::new(|_| {}))
            .await?;
        let call = executor
            .runqueue_executor_runner()
            .call_explain(&mut store, graph, task, &options);
        call.await.map_err(|e| self.call_error(e))
    }

    /// What running `graph` would do, without running anything: a count
    /// line, then every task in start order marked `run` or `cached`.
    pub async fn plan(
        &self,
        graph: &str,
        options: &RunOptions,
        workspace: &Workspace,
    ) -> CallResult<Vec<String>> {
        let (mut store, executor, options) = self
            .instantiate_with(workspace, options, &Controls::default(), Box::new(|_| {}))
            .await?;
        let call = executor
            .runqueue_executor_runner()
            .call_plan(&mut store, graph, &options);
        call.await.map_err(|e| self.call_error(e))
    }

    /// An instance for `workspace` with `options`' cache mounted, and the
    /// options as the component takes them.
    async fn instantiate_with(
        &self,
        workspace: &Workspace,
        options: &RunOptions,
        controls: &Controls,
        on_event: Box<dyn FnMut(Event) + Send>,
    ) -> Result<(Store<HostState>, bindings::Executor, runner::Options), CallError> {
        let mount = options
            .cache
            .as_deref()
            .map(|c| cache_mount(c, workspace))
            .transpose()
            .map_err(CallError::Trap)?;
        let instance = Instance {
            workspace: Some(workspace),
            cache: mount.as_ref(),
            remote: options.remote_cache.as_ref(),
            memory_limit: self.memory_limit,
        };
        let (store, executor) = self.instantiate(instance, controls, on_event).await?;
        let wit = wit_options(options, mount.map(|m| m.guest_path));
        Ok((store, executor, wit))
    }

    /// Simulates `graph` (see the WIT `simulate`); `cache`, when given,
    /// supplies recorded durations from `workspace`'s cache.
    pub async fn simulate(
        &self,
        graph: &str,
        max_parallel: u32,
        scheduler: Scheduler,
        durations: Option<String>,
        cache: Option<(&Workspace, &Path)>,
    ) -> CallResult<Simulation> {
        let (ws, mount) = match cache {
            Some((ws, dir)) => (
                Some(ws),
                Some(cache_mount(dir, ws).map_err(CallError::Trap)?),
            ),
            None => (None, None),
        };
        let instance = Instance {
            workspace: ws,
            cache: mount.as_ref(),
            remote: None,
            memory_limit: self.memory_limit,
        };
        let (mut store, executor) = self
            .instantiate(instance, &Controls::default(), Box::new(|_| {}))
            .await?;
        let options = SimulateOptions {
            max_parallel,
            scheduler,
            durations,
            cache_dir: mount.map(|m| m.guest_path),
        };
        let call = executor
            .runqueue_executor_runner()
            .call_simulate(&mut store, graph, &options);
        call.await.map_err(|e| self.call_error(e))
    }

    /// Converts `bitbake -g` output into graph JSON (see the WIT
    /// `import-graph`).
    pub async fn import_graph(&self, text: &str, options: &ImportOptions) -> CallResult<String> {
        let (mut store, executor) = self.instantiate_bare().await?;
        let call = executor
            .runqueue_executor_runner()
            .call_import_graph(&mut store, text, options);
        call.await.map_err(|e| self.call_error(e))
    }
}

/// The options as the component takes them; `cache_dir` is where it sees
/// the cache.
fn wit_options(options: &RunOptions, cache_dir: Option<String>) -> runner::Options {
    runner::Options {
        max_parallel: options.max_parallel,
        keep_going: options.keep_going,
        cache_dir,
        scheduler: options.scheduler,
        log_dir: options.log_dir.clone(),
        timeout_ms: options.timeout.map(runqueue::cli::millis),
        remote_cache: options.remote_cache.as_ref().map(|r| runner::RemoteCache {
            url: r.url.clone(),
            read_only: r.read_only,
            timeout_ms: runqueue::cli::millis(r.timeout).min(u32::MAX as u64) as u32,
            concurrency: r.concurrency.max(1),
        }),
    }
}
