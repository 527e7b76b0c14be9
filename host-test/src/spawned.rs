//! The `child` resource: a process on this machine, or a command running
//! on a remote executor. The methods the component calls, over the
//! resource table.

use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::p2::{DynPollable, Pollable};

use crate::process::ChildProcess;
use crate::remote_run::RemoteRun;
use crate::ExitStatus;

/// What `spawn` started.
pub enum Spawned {
    Local(ChildProcess),
    Remote(RemoteRun),
}

#[wasmtime_wasi::async_trait]
impl Pollable for Spawned {
    async fn ready(&mut self) {
        match self {
            Spawned::Local(c) => c.ready().await,
            Spawned::Remote(r) => r.ready().await,
        }
    }
}

/// The host side of the `child` resource methods.
pub(crate) struct Children<'a>(pub &'a mut ResourceTable);

impl Children<'_> {
    pub fn push(&mut self, child: Spawned) -> wasmtime::Result<Resource<Spawned>> {
        Ok(self.0.push(child)?)
    }

    pub fn subscribe(&mut self, c: Resource<Spawned>) -> wasmtime::Result<Resource<DynPollable>> {
        wasmtime_wasi::p2::subscribe(self.0, c)
    }

    pub fn try_wait(&mut self, c: Resource<Spawned>) -> wasmtime::Result<Option<ExitStatus>> {
        Ok(match self.0.get_mut(&c)? {
            Spawned::Local(c) => c.status(),
            Spawned::Remote(r) => r.status(),
        })
    }

    pub fn kill(&mut self, c: Resource<Spawned>) -> wasmtime::Result<()> {
        match self.0.get_mut(&c)? {
            Spawned::Local(c) => c.stop(),
            Spawned::Remote(r) => r.stop(),
        }
        Ok(())
    }

    pub fn ran_ms(&mut self, c: Resource<Spawned>) -> wasmtime::Result<Option<u64>> {
        Ok(match self.0.get(&c)? {
            Spawned::Local(c) => c.ran_ms(),
            Spawned::Remote(r) => r.ran_ms(),
        })
    }

    /// A remote command has no local pid: 0.
    pub fn pid(&mut self, c: Resource<Spawned>) -> wasmtime::Result<u32> {
        Ok(match self.0.get(&c)? {
            Spawned::Local(c) => c.pid(),
            Spawned::Remote(_) => 0,
        })
    }

    pub fn peak_memory(&mut self, c: Resource<Spawned>) -> wasmtime::Result<Option<u64>> {
        Ok(match self.0.get(&c)? {
            Spawned::Local(c) => c.peak_memory(),
            Spawned::Remote(_) => None,
        })
    }

    pub fn oom_killed(&mut self, c: Resource<Spawned>) -> wasmtime::Result<bool> {
        Ok(match self.0.get(&c)? {
            Spawned::Local(c) => c.oom_killed(),
            Spawned::Remote(_) => false,
        })
    }

    pub fn ran_on(&mut self, c: Resource<Spawned>) -> wasmtime::Result<Option<String>> {
        Ok(match self.0.get(&c)? {
            Spawned::Local(_) => None,
            Spawned::Remote(r) => r.ran_on(),
        })
    }

    pub fn remote_cached(&mut self, c: Resource<Spawned>) -> wasmtime::Result<bool> {
        Ok(match self.0.get(&c)? {
            Spawned::Local(_) => false,
            Spawned::Remote(r) => r.remote_cached(),
        })
    }

    pub fn drop(&mut self, c: Resource<Spawned>) -> wasmtime::Result<()> {
        self.0.delete(c)?;
        Ok(())
    }
}
