//! One instance's host side: the store's state (WASI with the workspace
//! and cache preopened, the resource table, the process groups, the memory
//! cap) and the `process`, `types` and `progress` imports over real
//! processes.
//!
//! Knows wasmtime's store and linker; knows nothing of graphs, and of the
//! command line.

use wasmtime::component::{HasSelf, Linker, Resource, ResourceTable};
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::cache_mount::{CacheMount, CACHE_GUEST_DIR};
use crate::files::{self, FilesJob};
use crate::remote_run::{Executor, RemoteRun};
use crate::spawned::{Children, Spawned};
use crate::{bindings, http_origin, process, Controls, Event, ExitStatus, SpawnError};
use crate::{RemoteCache, Workspace, DEFAULT_MEMORY_LIMIT};

/// The error a memory growth past [`MemoryCap`]'s limit traps with.
#[derive(Debug)]
pub(crate) struct MemoryLimitReached;

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

/// What one instance of the component owns on the host side.
pub struct HostState {
    limits: MemoryCap,
    wasi: WasiCtx,
    table: ResourceTable,
    /// Where processes run; `None` for calls that run nothing (`check`).
    workspace: Option<Workspace>,
    /// The cache this instance may store into and restore from.
    cache: Option<CacheMount>,
    live: process::LiveGroups,
    activity: process::Activity,
    /// Programs found on `PATH` so far.
    programs: process::Programs,
    http: wasmtime_wasi_http::WasiHttpCtx,
    /// Lets `wasi:http` reach the remote cache's origin and nothing else.
    http_hooks: http_origin::OriginOnly,
    /// With `Some`, only these programs (names or paths) may be spawned.
    allowed: Option<Vec<String>>,
    interrupts: Option<tokio::sync::watch::Receiver<u32>>,
    on_event: Box<dyn FnMut(Event) + Send>,
    /// The job slots shared with the tasks' nested builds, if any.
    jobserver: Option<process::Jobserver>,
    /// Serving a jobserver's slots or joining one: how many processes
    /// may run at once (joining: as many as its slots allow).
    parallelism: u32,
    /// Where commands run when not here: a remote execution service.
    executor: Option<std::sync::Arc<Executor>>,
    /// This run's part of the slots the builds of a service share.
    shared: Option<process::Share>,
    /// The last take was refused by the shared pool, not the jobserver.
    refused_by_pool: bool,
    /// Tasks without the network where the kernel refuses namespaces.
    isolation: process::Isolation,
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
    ) -> wasmtime::Result<Result<Resource<Spawned>, SpawnError>> {
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
        if let Some(exec) = &self.executor {
            return match RemoteRun::start(exec.clone(), cmd, ws, self.activity.clone()) {
                Ok(run) => Ok(Ok(Children(&mut self.table).push(Spawned::Remote(run))?)),
                Err(e) => Ok(Err(e)),
            };
        }
        let at = process::Surroundings {
            ws,
            live: &self.live,
            activity: &self.activity,
            programs: &self.programs,
            jobserver: self.jobserver.as_ref(),
            isolation: self.isolation,
        };
        match process::spawn(&cmd, &at) {
            Ok(child) => Ok(Ok(Children(&mut self.table).push(Spawned::Local(child))?)),
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
        Ok(self.parallelism)
    }

    /// Slots from the shared pool first (if any), then the jobserver's;
    /// all or none.
    fn take_slots(&mut self, n: u32) -> wasmtime::Result<bool> {
        if let Some(shared) = &mut self.shared {
            self.refused_by_pool = !shared.take(n);
            if self.refused_by_pool {
                return Ok(false);
            }
        }
        let taken = self.jobserver.as_ref().is_none_or(|js| js.take(n));
        if let (false, Some(shared)) = (taken, &self.shared) {
            shared.give(n);
        }
        Ok(taken)
    }

    fn give_slots(&mut self, n: u32) -> wasmtime::Result<()> {
        if let Some(js) = &self.jobserver {
            js.give(n);
        }
        if let Some(shared) = &self.shared {
            shared.give(n);
        }
        Ok(())
    }

    /// Ready when the pool that refused the last take has slots back
    /// (the other may well have some: waiting on it would spin).
    fn slots_freed(&mut self) -> wasmtime::Result<Resource<DynPollable>> {
        match (&self.shared, &self.jobserver) {
            (Some(shared), _) if self.refused_by_pool => {
                let freed = self.table.push(shared.freed())?;
                wasmtime_wasi::p2::subscribe(&mut self.table, freed)
            }
            (_, Some(js)) => {
                let freed = self.table.push(js.freed())?;
                wasmtime_wasi::p2::subscribe(&mut self.table, freed)
            }
            _ => {
                let never = self.table.push(process::Interrupt(None))?;
                wasmtime_wasi::p2::subscribe(&mut self.table, never)
            }
        }
    }

    fn memory_available(&mut self) -> wasmtime::Result<u64> {
        Ok(process::machine::memory_available())
    }

    fn memory_stall_us(&mut self) -> wasmtime::Result<Option<u64>> {
        Ok(process::machine::memory_stall_us())
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
    fn ran_on(&mut self, c: Resource<Spawned>) -> wasmtime::Result<Option<String>> {
        Children(&mut self.table).ran_on(c)
    }

    fn remote_cached(&mut self, c: Resource<Spawned>) -> wasmtime::Result<bool> {
        Children(&mut self.table).remote_cached(c)
    }

    fn subscribe(&mut self, c: Resource<Spawned>) -> wasmtime::Result<Resource<DynPollable>> {
        Children(&mut self.table).subscribe(c)
    }

    fn try_wait(&mut self, c: Resource<Spawned>) -> wasmtime::Result<Option<ExitStatus>> {
        Children(&mut self.table).try_wait(c)
    }

    fn ran_ms(&mut self, c: Resource<Spawned>) -> wasmtime::Result<Option<u64>> {
        Children(&mut self.table).ran_ms(c)
    }

    fn kill(&mut self, c: Resource<Spawned>) -> wasmtime::Result<()> {
        Children(&mut self.table).kill(c)
    }

    fn pid(&mut self, c: Resource<Spawned>) -> wasmtime::Result<u32> {
        Children(&mut self.table).pid(c)
    }

    fn peak_memory(&mut self, c: Resource<Spawned>) -> wasmtime::Result<Option<u64>> {
        Children(&mut self.table).peak_memory(c)
    }

    fn oom_killed(&mut self, c: Resource<Spawned>) -> wasmtime::Result<bool> {
        Children(&mut self.table).oom_killed(c)
    }

    fn drop(&mut self, c: Resource<Spawned>) -> wasmtime::Result<()> {
        Children(&mut self.table).drop(c)
    }
}

impl bindings::runqueue::executor::types::Host for HostState {}

impl HostState {
    fn places(&self) -> files::Places<'_> {
        files::Places {
            ws: self.workspace.as_ref(),
            cache: self.cache.as_ref(),
        }
    }
}

impl bindings::runqueue::executor::files::Host for HostState {
    fn hash(&mut self, paths: Vec<String>) -> wasmtime::Result<Resource<FilesJob>> {
        let job = self.places().hash(&paths);
        files::Jobs(&mut self.table).push(job)
    }

    fn store(&mut self, cache: String, paths: Vec<String>) -> wasmtime::Result<Resource<FilesJob>> {
        let job = self.places().store(&cache, &paths);
        files::Jobs(&mut self.table).push(job)
    }

    fn put(
        &mut self,
        cache: String,
        list: Vec<(String, Vec<u8>)>,
    ) -> wasmtime::Result<Resource<FilesJob>> {
        let job = self.places().put(&cache, list);
        files::Jobs(&mut self.table).push(job)
    }

    fn restore(
        &mut self,
        cache: String,
        list: Vec<bindings::runqueue::executor::files::RestoreFile>,
    ) -> wasmtime::Result<Resource<FilesJob>> {
        let job = self.places().restore(&cache, list);
        files::Jobs(&mut self.table).push(job)
    }
}

impl bindings::runqueue::executor::files::HostJob for HostState {
    fn subscribe(&mut self, j: Resource<FilesJob>) -> wasmtime::Result<Resource<DynPollable>> {
        files::Jobs(&mut self.table).subscribe(j)
    }

    fn finish(
        &mut self,
        j: Resource<FilesJob>,
    ) -> wasmtime::Result<Option<Result<Vec<bindings::runqueue::executor::files::Blob>, String>>>
    {
        files::Jobs(&mut self.table).finish(j)
    }

    fn drop(&mut self, j: Resource<FilesJob>) -> wasmtime::Result<()> {
        files::Jobs(&mut self.table).drop(j)
    }
}

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

    pub(crate) fn build(
        instance: &Instance<'_>,
        controls: &Controls,
        on_event: Box<dyn FnMut(Event) + Send>,
    ) -> wasmtime::Result<HostState> {
        let live = live_groups(controls)?;
        let allowed = controls.allowed_programs.clone().map(|mut a| {
            a.push("sh".to_string());
            a
        });
        let origin = instance
            .remote
            .and_then(|r| http_origin::origin_of(&r.url).ok());
        process::machine::oom_kills_now();
        let jobserver = match instance.workspace {
            Some(_) => jobserver_of(controls.jobserver)?,
            None => None,
        };
        let parallelism = match (&jobserver, controls.jobserver) {
            (Some(js), _) if !js.serving() => process::MAX_SLOTS,
            (_, process::JobserverMode::Serve(n) | process::JobserverMode::JoinOr(n)) => n,
            _ => files::cpus() as u32,
        };
        let mut on_event = on_event;
        if instance.workspace.is_some() && controls.executor.is_none() {
            warn_unisolated(controls.isolation, &mut on_event);
        }
        Ok(HostState {
            limits: MemoryCap {
                limit: instance.memory_limit,
            },
            wasi: wasi_ctx(instance)?,
            table: ResourceTable::new(),
            workspace: instance.workspace.cloned(),
            cache: instance.cache.cloned(),
            live,
            activity: controls.activity.clone().unwrap_or_default(),
            programs: process::Programs::default(),
            http: wasmtime_wasi_http::WasiHttpCtx::new(),
            http_hooks: http_origin::OriginOnly::new(origin),
            allowed,
            interrupts: controls.interrupts.clone(),
            on_event,
            jobserver,
            parallelism,
            executor: controls.executor.clone(),
            shared: controls
                .shared_slots
                .as_ref()
                .map(|(pool, build)| pool.share(*build)),
            refused_by_pool: false,
            isolation: controls.isolation,
        })
    }
}

/// Says once per run, when the kernel gives no network namespaces and
/// they are not required, that tasks keep the network.
fn warn_unisolated(how: process::Isolation, on_event: &mut Box<dyn FnMut(Event) + Send>) {
    if let (Err(why), process::Isolation::WhereAllowed) = (process::netns::allowed(), how) {
        on_event(Event::Warning(format!(
            "tasks run with the network: this kernel gives no network namespaces ({why}); \
             --require-isolation fails them instead"
        )));
    }
}

/// The jobserver `mode` asks for, reading `MAKEFLAGS` to join one.
fn jobserver_of(mode: process::JobserverMode) -> wasmtime::Result<Option<process::Jobserver>> {
    let makeflags = std::env::var("MAKEFLAGS").ok();
    process::Jobserver::new(mode, makeflags.as_deref())
        .map_err(|e| wasmtime::Error::msg(format!("cannot start the jobserver: {e}")))
}

/// What one instance sees: the workspace (preopened as `.`), the cache's
/// mount, the remote cache it may reach, and its memory cap.
pub(crate) struct Instance<'a> {
    /// `None` for calls that run nothing (`check`).
    pub(crate) workspace: Option<&'a Workspace>,
    pub(crate) cache: Option<&'a CacheMount>,
    pub(crate) remote: Option<&'a RemoteCache>,
    pub(crate) memory_limit: usize,
}

/// The process groups of a run, watched by the watchdog `controls` names;
/// a second interrupt kills them all.
fn live_groups(controls: &Controls) -> wasmtime::Result<process::LiveGroups> {
    let live = match &controls.watchdog {
        Some(program) => {
            use wasmtime::error::Context;
            process::LiveGroups::watched_by(program)
                .with_context(|| format!("cannot start the watchdog {}", program.display()))?
        }
        None => process::LiveGroups::default(),
    };
    if let Some(mut rx) = controls.interrupts.clone() {
        let live = live.clone();
        let executor = controls.executor.clone();
        tokio::spawn(async move {
            if rx.wait_for(|n| *n >= 2).await.is_ok() {
                live.kill_all();
                executor.inspect(|e| e.stop_all());
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
    if let Some(dir) = instance.cache.and_then(CacheMount::host_dir) {
        wasi.preopened_dir(dir, CACHE_GUEST_DIR, wasmtime_wasi::FsPerms::ReadWrite)?;
    }
    Ok(wasi.build())
}

/// Adds everything the component imports to `linker`: WASI 0.2 (from
/// wasmtime-wasi), `wasi:http` (wasmtime-wasi-http, allowed to reach the
/// run's remote cache only; see [`crate::http_origin`]) and runqueue's `process`, `types` and `progress`,
/// implemented by [`HostState`] with real processes. The engine needs
/// async support; call the exports with their `_async` entry points.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    // For runqueue-remote.wasm; requests go to the remote cache only.
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker)?;
    use bindings::runqueue::executor::{files as f, process as p, progress, types};
    p::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    f::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    types::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    progress::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    Ok(())
}
