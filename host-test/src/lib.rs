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
pub const DEFAULT_CACHE: &str = ".runqueue/cache";

/// How to run a graph.
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
            interrupts: None,
            watchdog: None,
            allowed_programs: None,
            activity: None,
            remote_cache: None,
        }
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
    limits: wasmtime::StoreLimits,
    wasi: WasiCtx,
    table: ResourceTable,
    /// Where processes run; `None` for calls that run nothing (`check`).
    workspace: Option<Workspace>,
    live: process::LiveGroups,
    activity: process::Activity,
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
        match process::spawn(ws, &cmd, &self.live, &self.activity) {
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
    /// spawned for real, progress events to `on_event`. For embedders that
    /// keep their own [`Store`] and [`Linker`] (see [`add_to_linker`]);
    /// [`Runqueue`] does all of this itself.
    pub fn new(
        workspace: &Workspace,
        on_event: impl FnMut(Event) + Send + 'static,
    ) -> wasmtime::Result<HostState> {
        HostState::build(
            Some(workspace),
            None,
            Box::new(on_event),
            None,
            DEFAULT_MEMORY_LIMIT,
        )
    }

    /// The memory limiter to pass to [`Store::limiter`].
    pub fn limiter(&mut self) -> &mut dyn wasmtime::ResourceLimiter {
        &mut self.limits
    }

    fn build(
        workspace: Option<&Workspace>,
        cache: Option<&CacheMount>,
        on_event: Box<dyn FnMut(Event) + Send>,
        run: Option<&RunOptions>,
        memory_limit: usize,
    ) -> wasmtime::Result<HostState> {
        let default = RunOptions::default();
        let run = run.unwrap_or(&default);
        let live = match &run.watchdog {
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
        if let Some(mut rx) = run.interrupts.clone() {
            // The second interrupt kills every running task's group.
            let live = live.clone();
            tokio::spawn(async move {
                if rx.wait_for(|n| *n >= 2).await.is_ok() {
                    live.kill_all();
                }
            });
        }
        let allowed = run.allowed_programs.clone().map(|mut a| {
            a.push("sh".to_string());
            a
        });
        let mut wasi = WasiCtx::builder();
        wasi.inherit_stderr();
        // File system calls are short; running them on this thread instead
        // of tokio's blocking pool makes the cache several times faster.
        wasi.allow_blocking_current_thread(true);
        if let Ok(path) = std::env::var("PATH") {
            wasi.env("PATH", path);
        }
        if let Some(ws) = workspace {
            wasi.preopened_dir(ws.root(), ".", wasmtime_wasi::FsPerms::ReadWrite)?;
            wasi.env("RUNQUEUE_WORKSPACE", ws.root().to_string_lossy());
        }
        if let Some(dir) = cache.and_then(|c| c.preopen.as_ref()) {
            wasi.preopened_dir(dir, CACHE_GUEST_DIR, wasmtime_wasi::FsPerms::ReadWrite)?;
        }
        Ok(HostState {
            limits: wasmtime::StoreLimitsBuilder::new()
                .memory_size(memory_limit)
                .trap_on_grow_failure(true)
                .build(),
            wasi: wasi.build(),
            table: ResourceTable::new(),
            workspace: workspace.cloned(),
            live,
            activity: run.activity.clone().unwrap_or_default(),
            http: wasmtime_wasi_http::WasiHttpCtx::new(),
            http_hooks: remote::OriginOnly::new(
                run.remote_cache
                    .as_ref()
                    .and_then(|r| remote::origin_of(&r.url).ok()),
            ),
            allowed,
            interrupts: run.interrupts.clone(),
            on_event,
        })
    }
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

/// The start of the error a call returns when the component needed more
/// memory than its limit.
pub const OUT_OF_MEMORY: &str = "the runqueue component needed more memory than its limit";

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
    /// with an error starting with [`OUT_OF_MEMORY`]).
    pub fn set_memory_limit(&mut self, bytes: usize) {
        self.memory_limit = bytes;
    }

    /// Names a memory-limit trap for what it is.
    fn explain_trap(&self, e: wasmtime::Error) -> wasmtime::Error {
        if format!("{e:?}").contains("forcing trap when growing memory") {
            wasmtime::format_err!(
                "{OUT_OF_MEMORY} ({} MiB): the graph is too large for it; raise it with --max-memory",
                self.memory_limit >> 20
            )
        } else {
            e
        }
    }

    /// An instance of the component. `workspace` is preopened as `.` and
    /// `cache` as [`CACHE_GUEST_DIR`]; `run` carries the settings of a run
    /// that starts processes (interrupts, watchdog, allowed programs, output
    /// activity).
    async fn instantiate(
        &self,
        workspace: Option<&Workspace>,
        cache: Option<&CacheMount>,
        on_event: Box<dyn FnMut(Event) + Send>,
        run: Option<&RunOptions>,
    ) -> wasmtime::Result<(Store<HostState>, bindings::Executor)> {
        let state = HostState::build(workspace, cache, on_event, run, self.memory_limit)?;
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        let instance =
            bindings::Executor::instantiate_async(&mut store, &self.component, &self.linker)
                .await?;
        Ok((store, instance))
    }

    /// Validates `graph` (JSON text) without running anything.
    pub async fn check(&self, graph: &str) -> wasmtime::Result<Result<Summary, RunError>> {
        let (mut store, instance) = self.instantiate(None, None, Box::new(|_| {}), None).await?;
        instance
            .runqueue_executor_runner()
            .call_check(&mut store, graph)
            .await
            .map_err(|e| self.explain_trap(e))
    }

    /// Runs `graph` in `workspace`, calling `on_event` for every progress
    /// event. Task failures are in the report; `Err` is a bad graph inside,
    /// or a broken component outside.
    pub async fn run(
        &self,
        graph: &str,
        options: &RunOptions,
        workspace: &Workspace,
        on_event: impl FnMut(Event) + Send + 'static,
    ) -> wasmtime::Result<Result<Report, RunError>> {
        let (mut store, instance, options) = self
            .instantiate_with(workspace, options, Box::new(on_event))
            .await?;
        instance
            .runqueue_executor_runner()
            .call_run(&mut store, graph, &options)
            .await
            .map_err(|e| self.explain_trap(e))
    }

    /// Explains why `task` of `graph` is or is not covered by the cache in
    /// `options.cache` (which must be set). Runs nothing.
    pub async fn explain(
        &self,
        graph: &str,
        task: &str,
        options: &RunOptions,
        workspace: &Workspace,
    ) -> wasmtime::Result<Result<Vec<String>, RunError>> {
        let (mut store, instance, options) = self
            .instantiate_with(workspace, options, Box::new(|_| {}))
            .await?;
        instance
            .runqueue_executor_runner()
            .call_explain(&mut store, graph, task, &options)
            .await
            .map_err(|e| self.explain_trap(e))
    }

    /// What running `graph` would do, without running anything: a count
    /// line, then every task in start order marked `run` or `cached`.
    pub async fn plan(
        &self,
        graph: &str,
        options: &RunOptions,
        workspace: &Workspace,
    ) -> wasmtime::Result<Result<Vec<String>, RunError>> {
        let (mut store, instance, options) = self
            .instantiate_with(workspace, options, Box::new(|_| {}))
            .await?;
        instance
            .runqueue_executor_runner()
            .call_plan(&mut store, graph, &options)
            .await
            .map_err(|e| self.explain_trap(e))
    }

    /// An instance for `workspace` with `options`' cache mounted, and the
    /// options as the component takes them.
    async fn instantiate_with(
        &self,
        workspace: &Workspace,
        options: &RunOptions,
        on_event: Box<dyn FnMut(Event) + Send>,
    ) -> wasmtime::Result<(Store<HostState>, bindings::Executor, runner::Options)> {
        let mount = options
            .cache
            .as_deref()
            .map(|c| cache_mount(c, workspace))
            .transpose()?;
        let (store, instance) = self
            .instantiate(Some(workspace), mount.as_ref(), on_event, Some(options))
            .await?;
        let wit = runner::Options {
            max_parallel: options.max_parallel,
            keep_going: options.keep_going,
            cache_dir: mount.map(|m| m.guest_path),
            scheduler: options.scheduler,
            log_dir: options.log_dir.clone(),
            timeout_ms: options.timeout.map(|t| t.as_millis().max(1) as u64),
            remote_cache: options.remote_cache.as_ref().map(|r| runner::RemoteCache {
                url: r.url.clone(),
                read_only: r.read_only,
                timeout_ms: r.timeout.as_millis().clamp(1, u32::MAX as u128) as u32,
                concurrency: r.concurrency.max(1),
            }),
        };
        Ok((store, instance, wit))
    }
}

impl Runqueue {
    /// Simulates `graph` (see the WIT `simulate`); `cache`, when given,
    /// supplies recorded durations from `workspace`'s cache.
    pub async fn simulate(
        &self,
        graph: &str,
        max_parallel: u32,
        scheduler: Scheduler,
        durations: Option<String>,
        cache: Option<(&Workspace, &Path)>,
    ) -> wasmtime::Result<Result<Simulation, RunError>> {
        let (ws, mount) = match cache {
            Some((ws, dir)) => (Some(ws), Some(cache_mount(dir, ws)?)),
            None => (None, None),
        };
        let (mut store, instance) = self
            .instantiate(ws, mount.as_ref(), Box::new(|_| {}), None)
            .await?;
        let options = SimulateOptions {
            max_parallel,
            scheduler,
            durations,
            cache_dir: mount.map(|m| m.guest_path),
        };
        instance
            .runqueue_executor_runner()
            .call_simulate(&mut store, graph, &options)
            .await
            .map_err(|e| self.explain_trap(e))
    }

    /// Converts `bitbake -g` output into graph JSON (see the WIT
    /// `import-graph`).
    pub async fn import_graph(
        &self,
        text: &str,
        options: &ImportOptions,
    ) -> wasmtime::Result<Result<String, RunError>> {
        let (mut store, instance) = self.instantiate(None, None, Box::new(|_| {}), None).await?;
        instance
            .runqueue_executor_runner()
            .call_import_graph(&mut store, text, options)
            .await
            .map_err(|e| self.explain_trap(e))
    }
}
