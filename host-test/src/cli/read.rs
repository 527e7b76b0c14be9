//! The subcommands that only read: `check`, `plan`, `explain`,
//! `simulate`, `import-dot` (and `keygen`), with reading the graph they
//! are given and opening the workspace.
//!
//! Knows the component's calls and what they print; takes no workspace
//! lock and runs nothing.

use std::path::Path;

use runqueue::cli::{lines, read_graph, read_text, EXIT_OK, MAX_GRAPH_BYTES};
use runqueue::schedule::plan::Policy;

use super::args::{Place, Trust};
use super::failure::{answer, bad_input, Failure};
use super::loader::Loader;
use crate::{ImportOptions, RunOptions, Workspace};

/// Writes a new key pair (32 bytes from the OS's random source); refuses
/// to overwrite anything.
pub(super) fn keygen(name: &str, secret: &Path, public: &Path) -> Result<i32, Failure> {
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

pub(super) fn open_workspace(place: &Place) -> Result<Workspace, Failure> {
    Workspace::open(&place.workspace)
        .map_err(|e| bad_input(format!("workspace {}: {e}", place.workspace.display())))
}

/// The graph's text from a file, a pipe or FIFO, or `-` (standard input).
pub(super) fn graph_text(path: &Path) -> Result<String, Failure> {
    if !crate::pipes::is_pipe(path) {
        return read_graph(path).map_err(bad_input);
    }
    let wait = crate::pipes::WRITER_WAIT;
    let bytes = crate::pipes::read_pipe(path, "graph ", MAX_GRAPH_BYTES, wait);
    bytes
        .and_then(|b| runqueue::cli::graph_text(b, path))
        .map_err(bad_input)
}

pub(super) fn print_all(lines: impl IntoIterator<Item = String>) {
    for line in lines {
        println!("{line}");
    }
}

pub(super) async fn check(loader: &Loader, graph: &Path) -> Result<i32, Failure> {
    let text = graph_text(graph)?;
    let summary = answer(graph, loader.load(false)?.check(&text).await)?;
    let shown = graph.display().to_string();
    print_all(lines::check_lines(
        &shown,
        &crate::from_wit_summary(summary),
    ));
    Ok(EXIT_OK)
}

pub(super) async fn explain(
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

pub(super) async fn plan(
    loader: &Loader,
    graph: &Path,
    trust: &Trust,
    place: &Place,
) -> Result<i32, Failure> {
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

pub(super) async fn simulate(
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

pub(super) async fn import_dot(
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
