//! `Runqueue`: the compiled component and a linker, with one method per
//! export, each on a fresh instance. Knows how to call the component and
//! how a call fails; the instance's host side is [`crate::state`]'s.

use std::path::Path;

use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, Store};

use crate::cache_mount::{cache_mount, MadeDirs};
use crate::compile::{compile_cache_dir, load_cached};
use crate::options::wit_options;
use crate::state::{Instance, MemoryLimitReached};
use crate::Workspace;
use crate::{add_to_linker, bindings, runner, Controls, Event, HostState, RunOptions};
use crate::{ImportOptions, Report, RunError, Scheduler, SimulateOptions, Simulation, Summary};

/// Why a call into the component did not return.
#[derive(Debug)]
pub enum CallError {
    /// The component needed more memory than its limit (an absurd graph);
    /// the text says so and how to raise the limit.
    OutOfMemory(String),
    /// The component computed for longer than its CPU limit
    /// ([`Runqueue::set_cpu_limit`]); the text says so.
    CpuLimit(String),
    /// It trapped or could not be instantiated: runqueue's own failure.
    Trap(wasmtime::Error),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::OutOfMemory(msg) | CallError::CpuLimit(msg) => write!(f, "{msg}"),
            CallError::Trap(e) => write!(f, "{e:#}"),
        }
    }
}

impl std::error::Error for CallError {}

/// The compiled component and a linker that provides its imports; cheap to
/// run many times.
pub struct Runqueue {
    engine: Engine,
    component: Component,
    linker: Linker<HostState>,
    memory_limit: usize,
    /// With `Some`, how many epoch ticks of computing a call may use.
    cpu_ticks: Option<u64>,
}

/// How often the epoch of an interruptible [`Runqueue`]'s engine advances:
/// the grain of its CPU limit, and how often a computing instance yields
/// to the other tasks of the async runtime.
pub const EPOCH_TICK: std::time::Duration = std::time::Duration::from_millis(10);

/// A call that computed for longer than the CPU limit.
#[derive(Debug)]
struct CpuLimitReached;

impl std::fmt::Display for CpuLimitReached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the runqueue component reached its CPU limit")
    }
}

impl std::error::Error for CpuLimitReached {}

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
        Self::load_with(path, &Config::new())
    }

    /// [`Runqueue::load`] for a host running many calls at once (a build
    /// service): the code can be interrupted, so each call may be given a
    /// CPU limit ([`Runqueue::set_cpu_limit`]) and a computing call yields
    /// every [`EPOCH_TICK`]. A thread advances the epoch meanwhile, for as
    /// long as the engine lives.
    pub fn load_interruptible(path: &Path) -> wasmtime::Result<Runqueue> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        let rq = Self::load_with(path, &config)?;
        let engine = rq.engine.weak();
        std::thread::spawn(move || {
            while let Some(engine) = engine.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        });
        Ok(rq)
    }

    fn load_with(path: &Path, config: &Config) -> wasmtime::Result<Runqueue> {
        use wasmtime::error::Context;
        let engine = Engine::new(config)?;
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
            cpu_ticks: None,
        })
    }

    /// Caps the time each call may spend computing (not waiting for its
    /// processes) at about `limit`; needs [`Runqueue::load_interruptible`].
    pub fn set_cpu_limit(&mut self, limit: std::time::Duration) {
        self.cpu_ticks = Some((limit.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64);
    }

    /// Counts the ticks a call computes through, yielding at each, and
    /// stops it past the CPU limit.
    fn limit_cpu(&self, store: &mut Store<HostState>) {
        let Some(ticks) = self.cpu_ticks else {
            return;
        };
        let mut used = 0u64;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            used += 1;
            match used > ticks {
                true => Err(wasmtime::Error::new(CpuLimitReached)),
                false => Ok(wasmtime::UpdateDeadline::Yield(1)),
            }
        });
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
                 the graph, or a blob from the remote cache, is too large for it; raise it with --max-memory",
                self.memory_limit >> 20
            ))
        } else if e.downcast_ref::<CpuLimitReached>().is_some() {
            let secs = self.cpu_ticks.unwrap_or(0) * EPOCH_TICK.as_millis() as u64 / 1000;
            CallError::CpuLimit(format!(
                "the runqueue component computed for longer than its CPU limit ({secs} s)"
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
        store.limiter(HostState::limiter);
        // What the guest hands the host in one call (an imported graph, a
        // report) is bounded by what the guest may hold; wasmtime's default
        // (128 MiB) refused the JSON of a million-task import.
        store.set_hostcall_fuel(self.memory_limit);
        self.limit_cpu(&mut store);
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
        let (mut store, executor, options, made) = self
            .instantiate_with((workspace, true), options, controls, Box::new(on_event))
            .await?;
        let call = executor
            .runqueue_executor_runner()
            .call_run(&mut store, graph, &options);
        let result = call.await.map_err(|e| self.call_error(e));
        if !matches!(result, Ok(Ok(_))) {
            made.remove();
        }
        result
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
        let (mut store, executor, options, _) = self
            .instantiate_with(
                (workspace, false),
                options,
                &Controls::default(),
                Box::new(|_| {}),
            )
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
        let (mut store, executor, options, _) = self
            .instantiate_with(
                (workspace, false),
                options,
                &Controls::default(),
                Box::new(|_| {}),
            )
            .await?;
        let call = executor
            .runqueue_executor_runner()
            .call_plan(&mut store, graph, &options);
        call.await.map_err(|e| self.call_error(e))
    }

    /// An instance for `workspace` with `options`' cache mounted, the
    /// options as the component takes them, and the directories made for
    /// the cache (only a `build`, which stores, makes a missing one).
    async fn instantiate_with(
        &self,
        (workspace, building): (&Workspace, bool),
        options: &RunOptions,
        controls: &Controls,
        on_event: Box<dyn FnMut(Event) + Send>,
    ) -> Result<
        (
            Store<HostState>,
            bindings::Executor,
            runner::Options,
            MadeDirs,
        ),
        CallError,
    > {
        let mounted = options
            .cache
            .as_deref()
            .map(|c| cache_mount(c, workspace, building))
            .transpose()
            .map_err(CallError::Trap)?;
        let (mount, made) = mounted.unzip();
        let instance = Instance {
            workspace: Some(workspace),
            cache: mount.as_ref(),
            remote: options.remote_cache.as_ref(),
            memory_limit: self.memory_limit,
        };
        let made = made.unwrap_or_default();
        let (store, executor) = match self.instantiate(instance, controls, on_event).await {
            Ok(instance) => instance,
            Err(e) => {
                made.remove();
                return Err(e);
            }
        };
        let wit = wit_options(options, mount.map(|m| m.guest_path));
        Ok((store, executor, wit, made))
    }

    /// Simulates `graph` (see the WIT `simulate`); `cache`, when given,
    /// supplies recorded durations from `workspace`'s cache.
    pub async fn simulate(
        &self,
        graph: &str,
        (max_parallel, memory_limit): (u32, Option<u64>),
        scheduler: Scheduler,
        durations: Option<String>,
        cache: Option<(&Workspace, &Path)>,
    ) -> CallResult<Simulation> {
        let (ws, mount) = match cache {
            Some((ws, dir)) => (
                Some(ws),
                Some(cache_mount(dir, ws, false).map_err(CallError::Trap)?.0),
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
            memory_limit,
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
