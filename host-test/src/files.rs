//! The `files` interface: hashing, storing and restoring files on the
//! host's threads, natively (sha256 with the CPU's SHA extensions where it
//! has them), while the component goes on noticing exits. Each call checks
//! its paths against the workspace and the cache it was given at the
//! moment of use, then hands the work to tokio's blocking pool (or, for a
//! few kilobytes, does it at once); the component awaits the job's
//! pollable like a child's.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use runqueue::cache::blobs::{self, Blob};
use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::p2::{DynPollable, Pollable};

use crate::bindings::runqueue::executor::files as wit;
use crate::cache_mount::CacheMount;
use crate::process::{Dir, Workspace};

type Outcome = Result<Vec<Blob>, String>;

/// A `job` resource: the work on the blocking pool, then its outcome until
/// the component takes it.
pub enum FilesJob {
    Running(tokio::task::JoinHandle<Outcome>),
    Finished(Option<Outcome>),
}

#[wasmtime_wasi::async_trait]
impl Pollable for FilesJob {
    async fn ready(&mut self) {
        if let FilesJob::Running(handle) = self {
            let outcome = handle
                .await
                .unwrap_or_else(|e| Err(format!("a files job broke: {e}")));
            *self = FilesJob::Finished(Some(outcome));
        }
    }
}

/// Where a call's files are: the workspace and the cache mount, if any.
pub(crate) struct Places<'a> {
    pub ws: Option<&'a Workspace>,
    pub cache: Option<&'a CacheMount>,
}

impl Places<'_> {
    fn workspace(&self) -> Result<&Workspace, String> {
        self.ws
            .ok_or_else(|| "no workspace: this call touches no files".to_string())
    }

    /// The host directory of the cache the component calls `guest`: the
    /// cache preopened apart from the workspace, or a directory inside the
    /// workspace (its parent made, checked and held open for the job; the
    /// cache itself is made by the first store), which the component can
    /// reach anyway.
    fn cache(&self, guest: &str) -> Result<(PathBuf, Option<Dir>), String> {
        let mount = self.cache.filter(|m| m.guest_path == guest);
        if let Some(dir) = mount.and_then(CacheMount::host_dir) {
            return Ok((dir.to_path_buf(), None));
        }
        let inside = runqueue::graph::normalize(guest).filter(|n| !n.is_empty());
        let Some(rel) = inside else {
            return Err(format!("\"{guest}\" is not this run's cache"));
        };
        let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel.as_str()));
        let parent = self.workspace()?.ensure_dir(parent)?;
        let dir = parent.join(name);
        if dir.is_symlink() {
            return Err(format!("the cache \"{guest}\" is a symlink"));
        }
        Ok((dir, Some(parent)))
    }

    /// Host directories as the component calls them, for messages.
    fn names(&self) -> Vec<(String, String)> {
        let mut names = Vec::new();
        if let Some(dir) = self.cache.and_then(CacheMount::host_dir) {
            names.push((
                dir.display().to_string(),
                crate::CACHE_GUEST_DIR.to_string(),
            ));
        }
        if let Some(ws) = self.ws {
            names.push((format!("{}/", ws.root().display()), String::new()));
        }
        names
    }

    /// Workspace files to read: each checked to lie inside (directories on
    /// the way not leading out), then named by its path. Reading through a
    /// directory swapped afterwards could at worst read a file outside;
    /// nothing is written through these.
    fn to_read(&self, paths: &[String]) -> Result<Vec<PathBuf>, String> {
        let ws = self.workspace()?;
        paths
            .iter()
            .map(|p| ws.resolve_no_follow(p).map(|_| ws.root().join(p)))
            .collect()
    }

    /// Workspace files to write: their directories made, checked and held
    /// open (each once), so the writes go through the handles.
    fn to_write(&self, paths: &[String]) -> Result<Held, String> {
        let ws = self.workspace()?;
        let mut dirs: HashMap<String, Dir> = HashMap::new();
        let mut held = Vec::with_capacity(paths.len());
        for p in paths {
            let (dir, name) = p.rsplit_once('/').unwrap_or(("", p));
            let dir = match dirs.get(dir) {
                Some(d) => d.clone(),
                None => ws.file_path(p)?.dir,
            };
            held.push(dir.join(name));
            dirs.insert(dir.rel().to_string(), dir);
        }
        Ok(Held {
            paths: held,
            dirs: dirs.into_values().collect(),
        })
    }

    pub fn hash(&self, paths: &[String]) -> FilesJob {
        let sources = self.to_read(paths);
        start(self.names(), Size::Large, move || {
            par_map(&sources?, |p| blobs::hash(p))
        })
    }

    pub fn store(&self, cache: &str, paths: &[String]) -> FilesJob {
        let places = self
            .cache(cache)
            .and_then(|c| Ok((c, self.to_read(paths)?)));
        let size = places
            .as_ref()
            .map_or(Size::Small, |(_, s)| Size::of_files(s));
        let names = with_held(
            self.names(),
            places.as_ref().ok().and_then(|((_, d), _)| d.as_ref()),
        );
        start(names, size, move || {
            let ((cache, _held), sources) = places?;
            par_map(&sources, |p| blobs::store(&cache, p))
        })
    }

    pub fn put(&self, cache: &str, files: Vec<(String, Vec<u8>)>) -> FilesJob {
        let cache = self.cache(cache);
        let names = with_held(
            self.names(),
            cache.as_ref().ok().and_then(|(_, d)| d.as_ref()),
        );
        start(names, Size::Large, move || {
            let (cache, _held) = cache?;
            for (rel, bytes) in &files {
                if runqueue::graph::normalize(rel).as_deref() != Some(rel.as_str()) {
                    return Err(format!("\"{rel}\" is not a path inside the cache"));
                }
                blobs::put(&cache, rel, bytes)?;
            }
            Ok(Vec::new())
        })
    }

    pub fn restore(&self, cache: &str, files: Vec<wit::RestoreFile>) -> FilesJob {
        let paths: Vec<String> = files.iter().map(|f| f.path.clone()).collect();
        let places = self
            .cache(cache)
            .and_then(|c| Ok((c, self.to_write(&paths)?)));
        let bytes: u64 = files.iter().map(|f| f.blob.size).sum();
        let mut names = self.names();
        if let Ok(((_, cache_dir), held)) = &places {
            names = with_held(names, cache_dir.as_ref());
            names.extend(held.dirs.iter().map(Dir::names));
        }
        start(names, Size::of_bytes(bytes), move || {
            let ((cache, _held_cache), dests) = places?;
            restore_all(&cache, &files, &dests.paths).map(|()| Vec::new())
        })
    }
}

/// Paths to write, and the directories they go through, held open.
struct Held {
    paths: Vec<PathBuf>,
    dirs: Vec<Dir>,
}

/// `names` and the guest's name of `dir`'s handle path, if any.
fn with_held(mut names: Vec<(String, String)>, dir: Option<&Dir>) -> Vec<(String, String)> {
    names.extend(dir.map(Dir::names));
    names
}

/// [`blobs::restore_all`] with the files restored several at once: every
/// blob is checked to exist before anything is touched; then each file is
/// restored, verified, with its mode.
fn restore_all(cache: &Path, files: &[wit::RestoreFile], dests: &[PathBuf]) -> Result<(), String> {
    let list: Vec<(&str, Blob, u32, &PathBuf)> = files
        .iter()
        .zip(dests)
        .map(|(f, dest)| {
            let blob = Blob {
                hash: f.blob.hash.clone(),
                size: f.blob.size,
            };
            (f.path.as_str(), blob, f.mode, dest)
        })
        .collect();
    blobs::check_all(cache, list.iter().map(|(path, blob, ..)| (*path, blob)))?;
    par_map(&list, |(path, blob, mode, dest)| {
        blobs::restore(cache, dest, path, blob, &|p: &Path| set_mode(p, *mode))
    })
    .map(|_| ())
}

fn set_mode(path: &Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o7777))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The CPUs this process may use, looked up once (the lookup reads
/// several cgroup files).
pub(crate) fn cpus() -> usize {
    static CPUS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CPUS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// `f` of each item, in order, on up to one thread per CPU: several files
/// at once. The first error (in item order) wins.
fn par_map<I: Sync, T: Send>(
    items: &[I],
    f: impl Fn(&I) -> Result<T, String> + Sync,
) -> Result<Vec<T>, String> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let threads = cpus().min(items.len());
    if threads <= 1 {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let worker = || {
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(item) = items.get(i) else { break done };
            done.push((i, f(item)));
        }
    };
    let mut results: Vec<(usize, Result<T, String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads).map(|_| s.spawn(worker)).collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("files workers do not panic"))
            .collect()
    });
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

/// Runs `work` on tokio's blocking pool; its error names host
/// directories by their `names` in the component.
fn start(
    names: Vec<(String, String)>,
    size: Size,
    work: impl FnOnce() -> Outcome + Send + 'static,
) -> FilesJob {
    let work = move || {
        work().map_err(|msg| {
            let rename = |msg: String, (host, guest): &(String, String)| msg.replace(host, guest);
            names.iter().fold(msg, rename)
        })
    };
    match size {
        Size::Small => FilesJob::Finished(Some(work())),
        Size::Large => FilesJob::Running(tokio::task::spawn_blocking(work)),
    }
}

/// How much data a job moves. A small one (a stamp, a header: at most
/// [`SMALL_JOB`] bytes) is done at once, in the call: tens of
/// microseconds, less than handing it to another thread and waking the
/// component again; a large one goes to the blocking pool.
enum Size {
    Small,
    Large,
}

const SMALL_JOB: u64 = 64 * 1024;

impl Size {
    fn of_bytes(bytes: u64) -> Size {
        if bytes <= SMALL_JOB {
            Size::Small
        } else {
            Size::Large
        }
    }

    /// Large if a file cannot be looked at, or once they add up to more
    /// (the rest are not looked at).
    fn of_files(paths: &[PathBuf]) -> Size {
        let mut total = 0;
        for p in paths {
            match std::fs::symlink_metadata(p) {
                Ok(m) => total += m.len(),
                Err(_) => return Size::Large,
            }
            if total > SMALL_JOB {
                return Size::Large;
            }
        }
        Size::Small
    }
}

/// The host side of the `job` resource methods, over a resource table.
pub(crate) struct Jobs<'a>(pub &'a mut ResourceTable);

impl Jobs<'_> {
    pub fn push(&mut self, job: FilesJob) -> wasmtime::Result<Resource<FilesJob>> {
        Ok(self.0.push(job)?)
    }

    pub fn subscribe(&mut self, j: Resource<FilesJob>) -> wasmtime::Result<Resource<DynPollable>> {
        wasmtime_wasi::p2::subscribe(self.0, j)
    }

    pub fn finish(
        &mut self,
        j: Resource<FilesJob>,
    ) -> wasmtime::Result<Option<Result<Vec<wit::Blob>, String>>> {
        let FilesJob::Finished(outcome) = self.0.get_mut(&j)? else {
            return Ok(None);
        };
        let to_wit = |b: Blob| wit::Blob {
            hash: b.hash,
            size: b.size,
        };
        Ok(outcome
            .take()
            .map(|o| o.map(|blobs| blobs.into_iter().map(to_wit).collect())))
    }

    pub fn drop(&mut self, j: Resource<FilesJob>) -> wasmtime::Result<()> {
        self.0.delete(j)?;
        Ok(())
    }
}
