//! Task signatures: everything a task's result depends on, in one canonical
//! encoding, hashed with sha256; and the differences between two of them.
//!
//! Knows the graph and how to read input files; knows nothing of the cache
//! layout, processes or scheduling.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::cache::digest::{hash_file, sha256_hex};
use crate::graph::{Action, Graph, TaskId, TaskMap};
use crate::seams::Files;

/// Bumped whenever the encoding changes, so old cache entries stop matching.
pub const SIGNATURE_VERSION: u32 = 2;

/// What goes into a signature. The signature is the sha256 of this record's
/// compact JSON: fields in this order, maps sorted by key. Nothing of the
/// host (absolute paths, timestamps, the host's PATH) is in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigParts {
    pub version: u32,
    /// `{"run": text}`, `{"argv": [...]}` or `"none"`.
    pub action: ActionParts,
    /// The graph's env overlaid with the task's, sorted by name.
    pub env: BTreeMap<String, String>,
    pub cwd: String,
    /// Declared outputs, as normalized in the graph.
    pub outputs: Vec<String>,
    /// Every input file (directories expanded to the files below them) to
    /// `sha256:<hex>`, or a symlink to `symlink:<target>`.
    pub inputs: BTreeMap<String, String>,
    /// Each dependency's id to its unihash ([`crate::cache::cutoff`]): the digest
    /// of its outputs and of its own dependencies', or its signature.
    pub deps: BTreeMap<String, String>,
    /// For `nostamp` tasks, a value unique to this run; otherwise absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nostamp: Option<String>,
    /// `true` for a task that may reach the network; absent otherwise (so
    /// the signatures of isolated tasks are what they were).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub network: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionParts {
    Run(String),
    Argv(Vec<String>),
    None,
}

impl SigParts {
    /// The sha256 of the canonical encoding, in hex.
    pub fn signature(&self) -> String {
        sha256_hex(&serde_json::to_vec(self).expect("signature parts serialize"))
    }
}

/// What a walked input path is: a file to hash, or a symlink (recorded by
/// its target, never followed).
enum Found {
    File,
    Link(String),
}

/// Every path below each distinct declared input, sorted; a missing
/// input is an error naming the task. Only looks; hashing comes after.
type Walked = BTreeMap<String, Vec<(String, Found)>>;

fn walk_inputs(graph: &Graph, root: &Path) -> Result<Walked, String> {
    let mut walked = Walked::new();
    for task in &graph.tasks {
        for input in &task.inputs {
            if walked.contains_key(input) {
                continue;
            }
            let mut found = Vec::new();
            walk(root, input, &mut found)
                .map_err(|e| format!("task \"{}\": input \"{input}\": {e}", task.id))?;
            walked.insert(input.clone(), found);
        }
    }
    Ok(walked)
}

/// The files among `walked`, each once.
fn files_of(walked: &Walked) -> Vec<String> {
    let mut files: Vec<String> = walked
        .values()
        .flatten()
        .filter(|(_, f)| matches!(f, Found::File))
        .map(|(rel, _)| rel.clone())
        .collect();
    files.sort();
    files.dedup();
    files
}

/// Each task's inputs as `path -> sha256:<hash> | symlink:<target>`,
/// from `walked` and the `hashes` of its files.
fn assemble(
    graph: &Graph,
    walked: &Walked,
    hashes: &BTreeMap<String, String>,
) -> TaskMap<BTreeMap<String, String>> {
    let value = |rel: &str, found: &Found| match found {
        Found::File => format!("sha256:{}", hashes[rel]),
        Found::Link(target) => format!("symlink:{target}"),
    };
    TaskMap::from_fn(graph, |id| {
        let inputs = graph.task(id).inputs.iter().flat_map(|i| &walked[i]);
        inputs
            .map(|(rel, f)| (rel.clone(), value(rel, f)))
            .collect()
    })
}

/// Hashes every declared input of every task, here and now; a missing
/// input is an error naming the task. Files shared by several tasks are
/// read once.
pub fn hash_inputs(
    graph: &Graph,
    root: &Path,
) -> Result<TaskMap<BTreeMap<String, String>>, String> {
    let walked = walk_inputs(graph, root)?;
    let hashes = files_of(&walked)
        .into_iter()
        .map(|rel| {
            let (hash, _) =
                hash_file(&root.join(&rel)).map_err(|e| format!("input \"{rel}\": {e}"))?;
            Ok((rel, hash))
        })
        .collect::<Result<_, String>>()?;
    Ok(assemble(graph, &walked, &hashes))
}

/// As [`hash_inputs`], with the hashing done by `files`, away from this
/// thread and several files at once.
pub async fn hash_inputs_by(
    graph: &Graph,
    root: &Path,
    files: &dyn Files,
) -> Result<TaskMap<BTreeMap<String, String>>, String> {
    let walked = walk_inputs(graph, root)?;
    let paths = files_of(&walked);
    let blobs = files.hash(paths.clone()).await?;
    let hashes = paths
        .into_iter()
        .zip(blobs.into_iter().map(|b| b.hash))
        .collect();
    Ok(assemble(graph, &walked, &hashes))
}

/// Adds `rel` (a file, symlink, or directory walked in sorted order) to
/// `found`.
fn walk(root: &Path, rel: &str, found: &mut Vec<(String, Found)>) -> Result<(), String> {
    let path = root.join(rel);
    let meta = fs::symlink_metadata(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "does not exist".to_string(),
        _ => e.to_string(),
    })?;
    if meta.is_symlink() {
        let target = fs::read_link(&path).map_err(|e| e.to_string())?;
        found.push((
            rel.to_string(),
            Found::Link(target.to_string_lossy().into_owned()),
        ));
    } else if meta.is_dir() {
        let mut names: Vec<String> = fs::read_dir(&path)
            .and_then(|it| {
                it.map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                    .collect()
            })
            .map_err(|e| crate::cache::digest::io_text(&e))?;
        names.sort();
        for name in names {
            walk(root, &format!("{rel}/{name}"), found)?;
        }
    } else {
        found.push((rel.to_string(), Found::File));
    }
    Ok(())
}

/// A task's signature: what went into it, and its sha256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub parts: SigParts,
    /// The sha256 of the canonical encoding of `parts`, in hex: the key of
    /// the task's cache entry.
    pub hash: String,
}

/// Every task's signature, as far as it can be known for the workspace at
/// `ws` as it is now: refuses task paths that lead out through a symlink
/// and hashes the inputs (a missing one is an error naming the task).
pub fn signatures_in(graph: &Graph, ws: &Path, run_nonce: &str) -> Result<Signatures, String> {
    crate::graph::confine::check_paths(graph, ws)?;
    Ok(Signatures::new(graph, hash_inputs(graph, ws)?, run_nonce))
}

/// As [`signatures_in`], with the inputs hashed by `files`.
pub async fn signatures_by(
    graph: &Graph,
    ws: &Path,
    run_nonce: &str,
    files: &dyn Files,
) -> Result<Signatures, String> {
    crate::graph::confine::check_paths(graph, ws)?;
    let inputs = hash_inputs_by(graph, ws, files).await?;
    Ok(Signatures::new(graph, inputs, run_nonce))
}

/// Task signatures, made as they become known: a task is signed once the
/// unihash of each of its dependencies is known (see [`crate::cache::cutoff`]:
/// the digest of its outputs, or its own signature).
pub struct Signatures {
    /// What the graph and the inputs say of each task, without its
    /// dependencies.
    base: TaskMap<SigParts>,
    sigs: TaskMap<Option<Signature>>,
    unihashes: TaskMap<Option<String>>,
    /// Unihashes may be output digests; otherwise every task chains.
    cutoff: bool,
}

impl Signatures {
    /// Nothing signed yet. `inputs` comes from [`hash_inputs`];
    /// `run_nonce` makes `nostamp` tasks unique to this run.
    pub fn new(
        graph: &Graph,
        inputs: TaskMap<BTreeMap<String, String>>,
        run_nonce: &str,
    ) -> Signatures {
        let mut inputs = inputs;
        let base = TaskMap::from_fn(graph, |id| SigParts {
            inputs: std::mem::take(&mut inputs[id]),
            nostamp: graph
                .task(id)
                .nostamp
                .then(|| format!("{run_nonce}:{}", id.0)),
            ..SigParts::of_task(graph, id)
        });
        Signatures {
            base,
            sigs: TaskMap::filled(graph, None),
            unihashes: TaskMap::filled(graph, None),
            cutoff: true,
        }
    }

    /// Every task signed, each chaining its dependencies' signatures (no
    /// cutoff: what a build without a cache, which hashes no outputs, uses).
    pub fn chain_all(&mut self, graph: &Graph) {
        for &id in &graph.topo_order {
            self.sign(graph, id);
            self.chain(id);
        }
    }

    pub fn get(&self, id: TaskId) -> Option<&Signature> {
        self.sigs[id].as_ref()
    }

    /// Signs `id` if every dependency's unihash is known (and it is not
    /// signed yet); its signature, if it has one.
    pub fn sign(&mut self, graph: &Graph, id: TaskId) -> Option<&Signature> {
        if self.sigs[id].is_none() {
            let deps = graph.task(id).deps.iter().map(|&d| {
                let uni = self.unihashes[d].clone()?;
                Some((graph.task(d).id.clone(), uni))
            });
            let parts = SigParts {
                deps: deps.collect::<Option<_>>()?,
                ..self.base[id].clone()
            };
            let hash = parts.signature();
            self.sigs[id] = Some(Signature { parts, hash });
        }
        self.sigs[id].as_ref()
    }

    /// What dependents of `id` cover of it, if known.
    pub fn unihash(&self, id: TaskId) -> Option<&str> {
        self.unihashes[id].as_deref()
    }

    /// Sets the unihash of `id` (it chains without cutoff).
    pub fn set_unihash(&mut self, id: TaskId, unihash: String) {
        match self.cutoff {
            true => self.unihashes[id] = Some(unihash),
            false => self.chain(id),
        }
    }

    /// No early cutoff: every task chains.
    pub fn without_cutoff(&mut self) {
        self.cutoff = false;
    }

    /// Whether a dependent may cover a task's outputs rather than chain.
    pub fn cuts_off(&self) -> bool {
        self.cutoff
    }

    /// Dependents of the signed task `id` cover its signature.
    pub fn chain(&mut self, id: TaskId) {
        let sig = self.sigs[id].as_ref().expect("a chained task is signed");
        self.unihashes[id] = Some(sig.hash.clone());
    }

    /// Forgets every signature and unihash (decisions start over).
    pub fn reset(&mut self) {
        self.sigs.iter_mut().for_each(|s| *s = None);
        self.unihashes.iter_mut().for_each(|u| *u = None);
    }
}

impl SigParts {
    /// What the graph alone says of task `id`: no inputs, dependencies or
    /// nonce yet.
    fn of_task(graph: &Graph, id: TaskId) -> SigParts {
        let task = graph.task(id);
        let mut env = graph.env.clone();
        env.extend(task.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        SigParts {
            version: SIGNATURE_VERSION,
            action: match &task.action {
                Action::Shell(text) => ActionParts::Run(text.clone()),
                Action::Argv(argv) => ActionParts::Argv(argv.clone()),
                Action::Nothing => ActionParts::None,
            },
            env,
            cwd: task.cwd.clone(),
            outputs: task.outputs.clone(),
            inputs: BTreeMap::new(),
            deps: BTreeMap::new(),
            nostamp: None,
            network: task.network,
        }
    }
}

/// What differs between the last recorded parts and the current ones, one
/// line per difference, in the order of the encoding.
pub fn differences(old: &SigParts, new: &SigParts) -> Vec<String> {
    let mut out = Vec::new();
    if old.version != new.version {
        out.push(format!(
            "signature format changed: version {} -> {}",
            old.version, new.version
        ));
    }
    if old.action != new.action {
        out.push(format!(
            "script changed: {} -> {}",
            describe_action(&old.action),
            describe_action(&new.action)
        ));
    }
    map_diff("env", &old.env, &new.env, &mut out, |k, o, n| {
        format!("env {k} changed: {o:?} -> {n:?}")
    });
    if old.cwd != new.cwd {
        out.push(format!("cwd changed: {:?} -> {:?}", old.cwd, new.cwd));
    }
    if old.outputs != new.outputs {
        out.push(format!(
            "outputs changed: {:?} -> {:?}",
            old.outputs, new.outputs
        ));
    }
    map_diff(
        "input file",
        &old.inputs,
        &new.inputs,
        &mut out,
        |k, _, _| format!("input file {k} changed"),
    );
    map_diff("dependency", &old.deps, &new.deps, &mut out, |k, _, _| {
        format!("dependency {k} changed its outputs or signature (see `runqueue explain` for {k})")
    });
    if old.network != new.network {
        let now = if new.network {
            "may now reach"
        } else {
            "may no longer reach"
        };
        out.push(format!("the task {now} the network"));
    }
    if new.nostamp.is_some() {
        out.push("the task is nostamp: it runs every time".to_string());
    }
    out
}

fn describe_action(a: &ActionParts) -> String {
    match a {
        ActionParts::Run(text) => format!("run {text:?}"),
        ActionParts::Argv(argv) => format!("argv {argv:?}"),
        ActionParts::None => "nothing to run".to_string(),
    }
}

fn map_diff(
    what: &str,
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
    out: &mut Vec<String>,
    changed: impl Fn(&str, &str, &str) -> String,
) {
    for (k, v) in new {
        match old.get(k) {
            None => out.push(format!("{what} {k} added")),
            Some(o) if o != v => out.push(changed(k, o, v)),
            Some(_) => {}
        }
    }
    for k in old.keys().filter(|k| !new.contains_key(*k)) {
        out.push(format!("{what} {k} removed"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRAPH: &str = r#"{"version":1,"env":{"LANG":"C"},"tasks":[
        {"id":"a:do_fetch","run":"fetch","inputs":["src"]},
        {"id":"a:do_compile","deps":["a:do_fetch"],"run":"make","env":{"CC":"gcc"},"outputs":["out/a"]},
        {"id":"b:do_stamp","run":"date","nostamp":true},
        {"id":"b:do_after","deps":["b:do_stamp"],"run":"true"}]}"#;

    fn sigs(text: &str, root: &Path, nonce: &str) -> Vec<Signature> {
        let g = Graph::parse(text).unwrap();
        let inputs = hash_inputs(&g, root).unwrap();
        let mut sigs = Signatures::new(&g, inputs, nonce);
        sigs.chain_all(&g);
        g.ids().map(|id| sigs.get(id).unwrap().clone()).collect()
    }

    fn workspace() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("src/sub")).unwrap();
        std::fs::write(dir.path().join("src/a.c"), "int a;").unwrap();
        std::fs::write(dir.path().join("src/sub/b.c"), "int b;").unwrap();
        dir
    }

    #[test]
    fn the_encoding_is_canonical_json() {
        let dir = workspace();
        let s = sigs(GRAPH, dir.path(), "n1");
        let json = serde_json::to_string(&s[1].parts).unwrap();
        let fetch_sig = &s[0].hash;
        assert_eq!(
            json,
            format!(
                r#"{{"version":2,"action":{{"run":"make"}},"env":{{"CC":"gcc","LANG":"C"}},"cwd":"","outputs":["out/a"],"inputs":{{}},"deps":{{"a:do_fetch":"{fetch_sig}"}}}}"#
            )
        );
        assert_eq!(
            s[0].parts.inputs,
            BTreeMap::from([
                (
                    "src/a.c".to_string(),
                    format!("sha256:{}", sha256_hex(b"int a;"))
                ),
                (
                    "src/sub/b.c".to_string(),
                    format!("sha256:{}", sha256_hex(b"int b;"))
                ),
            ])
        );
        assert_eq!(s[1].hash, sha256_hex(json.as_bytes()));
    }

    #[test]
    fn the_network_flag_is_signed_and_absent_when_off() {
        let dir = workspace();
        let plain = sigs(GRAPH, dir.path(), "n");
        let open = GRAPH.replace(r#""run":"fetch","#, r#""run":"fetch","network":true,"#);
        let open = sigs(&open, dir.path(), "n");
        assert_ne!(
            plain[0].hash, open[0].hash,
            "the flag changes the signature"
        );
        assert_ne!(plain[1].hash, open[1].hash, "and its dependents'");
        let text = serde_json::to_string(&plain[0].parts).unwrap();
        assert!(
            !text.contains("network"),
            "isolated tasks keep their encoding: {text}"
        );
        let diff = differences(&plain[0].parts, &open[0].parts);
        assert!(
            diff.iter().any(|d| d.contains("may now reach the network")),
            "{diff:?}"
        );
    }

    #[test]
    fn stable_across_runs_except_for_nostamp() {
        let dir = workspace();
        let one = sigs(GRAPH, dir.path(), "n1");
        let two = sigs(GRAPH, dir.path(), "n2");
        assert_eq!(one[0].hash, two[0].hash);
        assert_eq!(one[1].hash, two[1].hash);
        assert_ne!(one[2].hash, two[2].hash, "nostamp differs per run");
        assert_ne!(one[3].hash, two[3].hash, "and so do its dependents");
    }

    #[test]
    fn an_input_change_reaches_dependents_and_is_explained() {
        let dir = workspace();
        let before = sigs(GRAPH, dir.path(), "n");
        std::fs::write(dir.path().join("src/sub/b.c"), "int b = 1;").unwrap();
        let after = sigs(GRAPH, dir.path(), "n");
        assert_ne!(before[0].hash, after[0].hash);
        assert_ne!(before[1].hash, after[1].hash);
        assert_eq!(
            differences(&before[0].parts, &after[0].parts),
            ["input file src/sub/b.c changed"]
        );
        assert_eq!(
            differences(&before[1].parts, &after[1].parts),
            ["dependency a:do_fetch changed its outputs or signature (see `runqueue explain` for a:do_fetch)"]
        );
    }

    #[test]
    fn explains_script_and_env_changes() {
        let dir = workspace();
        let before = sigs(GRAPH, dir.path(), "n");
        let changed = GRAPH.replace(
            r#""run":"make","env":{"CC":"gcc"}"#,
            r#""run":"make -j8","env":{"CC":"clang","V":"1"}"#,
        );
        let after = sigs(&changed, dir.path(), "n");
        assert_eq!(
            differences(&before[1].parts, &after[1].parts),
            [
                r#"script changed: run "make" -> run "make -j8""#,
                r#"env CC changed: "gcc" -> "clang""#,
                "env V added",
            ]
        );
    }

    #[test]
    fn inputs_hashed_by_the_files_seam_are_the_same() {
        let dir = workspace();
        std::os::unix::fs::symlink("a.c", dir.path().join("src/link")).unwrap();
        let g = Graph::parse(GRAPH).unwrap();
        let files = crate::cache::tests::NativeFiles(dir.path().to_path_buf());
        let by_files = futures::executor::block_on(hash_inputs_by(&g, dir.path(), &files));
        let here = hash_inputs(&g, dir.path()).unwrap();
        assert_eq!(by_files.unwrap(), here);
        assert_eq!(here[TaskId(0)].len(), 3, "{:?}", here[TaskId(0)]);
        assert_eq!(here[TaskId(0)]["src/link"], "symlink:a.c");
    }

    #[test]
    fn a_missing_input_names_the_task() {
        let dir = tempfile::tempdir().unwrap();
        let g = Graph::parse(GRAPH).unwrap();
        assert_eq!(
            hash_inputs(&g, dir.path()).unwrap_err(),
            "task \"a:do_fetch\": input \"src\": does not exist"
        );
    }

    #[test]
    fn a_dependent_is_signed_once_its_dependencies_unihashes_are_known() {
        let dir = workspace();
        let g = Graph::parse(GRAPH).unwrap();
        let sign = |fetch_unihash: &str| {
            let mut sigs = Signatures::new(&g, hash_inputs(&g, dir.path()).unwrap(), "n");
            sigs.sign(&g, TaskId(0)).unwrap();
            assert!(
                sigs.sign(&g, TaskId(1)).is_none(),
                "a:do_fetch's outputs unknown"
            );
            sigs.set_unihash(TaskId(0), fetch_unihash.to_string());
            sigs.sign(&g, TaskId(1)).unwrap().hash.clone()
        };
        assert_eq!(sign("outputs-1"), sign("outputs-1"));
        assert_ne!(sign("outputs-1"), sign("outputs-2"));
        // Whatever a:do_fetch's own inputs: only what it produced counts.
        let before = sign("outputs-1");
        std::fs::write(dir.path().join("src/a.c"), "int a; // a comment").unwrap();
        assert_eq!(sign("outputs-1"), before);
    }

    #[test]
    fn without_cutoff_every_task_chains() {
        let dir = workspace();
        let g = Graph::parse(GRAPH).unwrap();
        let mut sigs = Signatures::new(&g, hash_inputs(&g, dir.path()).unwrap(), "n");
        sigs.without_cutoff();
        let fetch = sigs.sign(&g, TaskId(0)).unwrap().hash.clone();
        sigs.set_unihash(TaskId(0), "outputs-1".into());
        assert_eq!(sigs.unihash(TaskId(0)), Some(fetch.as_str()));
    }
}
