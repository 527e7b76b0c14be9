//! A `command` from the component as a REAPI Action: the Command message,
//! the input root (a Merkle tree of what the task reads) and the Action
//! naming both.

use std::path::Path;

use anyhow::{bail, Result};

use crate::bindings::runqueue::executor::process as wit;
use crate::process::exec_size::{self, Exec, Fit};
use crate::reapi::blobs::Blobs;
use crate::reapi::re;
use crate::reapi::tree;

/// An action ready to upload: its digest and every blob it needs.
pub struct Prepared {
    pub action: re::Digest,
    pub blobs: Blobs,
    /// The Command's working directory, which its output paths are
    /// relative to.
    pub working_directory: String,
}

/// Builds the action for `cmd` from the files under `root` (the
/// workspace). Reads files: run it off the component's thread.
pub fn prepare(cmd: &wit::Command, root: &Path) -> Result<Prepared> {
    let mut blobs = Blobs::default();
    let (command, script) = command_of(cmd, root)?;
    let mut reads = cmd.inputs.clone();
    if cmd.program.contains('/') {
        reads.push(join(&cmd.cwd, &cmd.program));
    }
    let extra = tree::Extra {
        dirs: vec![cmd.cwd.clone()],
        files: script.into_iter().collect(),
    };
    let input_root = tree::directory_with(root, &reads, &extra, &mut blobs)?;
    let action = re::Action {
        command_digest: Some(blobs.add_message(&command)),
        input_root_digest: Some(input_root),
        do_not_cache: !cmd.cacheable,
        platform: Some(platform_of(cmd)),
        ..Default::default()
    };
    let action = blobs.add_message(&action);
    let working_directory = command.working_directory;
    Ok(Prepared {
        action,
        blobs,
        working_directory,
    })
}

/// Where a shell text too long for one argument goes in the input root
/// (see [`exec_size`]): named by its hash, so that the same script makes
/// the same action from any checkout.
const SCRIPTS: &str = ".runqueue/scripts";

/// A file the input root must hold besides the task's inputs: its path
/// and bytes.
type Made = (String, Vec<u8>);

/// The argv and environment `cmd` runs with on any worker (assumed to
/// take [`exec_size::DEFAULT_ARG_MAX`]), and the script file it then
/// needs; an error naming the limit when it cannot be passed.
pub fn fitted(cmd: &wit::Command) -> Result<(Exec, Option<Made>)> {
    let fit = exec_size::fit(
        &cmd.program,
        &cmd.args,
        &cmd.env,
        exec_size::DEFAULT_ARG_MAX,
    );
    match fit.map_err(anyhow::Error::msg)? {
        Fit::AsIs => {
            let argv = std::iter::once(&cmd.program).chain(&cmd.args).cloned();
            let env = cmd.env.clone();
            Ok((
                Exec {
                    argv: argv.collect(),
                    env,
                },
                None,
            ))
        }
        Fit::Script { script, env } => {
            let path = format!(
                "{SCRIPTS}/{}.sh",
                crate::reapi::digest(script.as_bytes()).hash
            );
            let up = "../".repeat(tree::components(&cmd.cwd)?.len());
            let argv = vec!["sh".to_string(), format!("{up}{path}")];
            Ok((Exec { argv, env }, Some((path, script.into_bytes()))))
        }
    }
}

/// The Command message: argv, the whole environment (sorted by name, as
/// REAPI asks), the working directory and the declared outputs relative to
/// it; and the script file it runs, if its text is too long for one
/// argument. Outputs outside the working directory cannot be named relative to
/// it (REAPI forbids `..`): the command then runs from the input root
/// and changes directory itself. `HOME` at the local workspace `root` (the
/// component's default) is left out: the worker sets it to the action's
/// directory, and the action stays the same from any checkout.
#[allow(deprecated)] // Command.platform: services before REAPI 2.2 read it there
pub fn command_of(cmd: &wit::Command, root: &Path) -> Result<(re::Command, Option<Made>)> {
    let cwd = tree::components(&cmd.cwd)?.join("/");
    let (
        Exec {
            argv: mut arguments,
            env,
        },
        script,
    ) = fitted(cmd)?;
    let mut outputs = Vec::new();
    let mut all_under_cwd = true;
    for out in &cmd.outputs {
        let out = tree::components(out)?.join("/");
        match under(&out, &cwd) {
            Some(rel) => outputs.push(rel.to_string()),
            None => all_under_cwd = false,
        }
    }
    let working_directory = if all_under_cwd || cwd.is_empty() {
        cwd
    } else {
        arguments = in_directory(&cwd, arguments);
        outputs = cmd
            .outputs
            .iter()
            .map(|o| tree::components(o).map(|c| c.join("/")))
            .collect::<Result<_>>()?;
        String::new()
    };
    outputs.sort();
    outputs.dedup();
    let local_home = |(k, v): &&(String, String)| k == "HOME" && Path::new(v) == root;
    let mut env: Vec<_> = env
        .iter()
        .filter(|kv| !local_home(kv))
        .map(|(k, v)| re::command::EnvironmentVariable {
            name: k.clone(),
            value: v.clone(),
        })
        .collect();
    env.sort_by(|a, b| a.name.cmp(&b.name));
    let command = re::Command {
        arguments,
        environment_variables: env,
        output_paths: outputs,
        working_directory,
        platform: Some(platform_of(cmd)),
        ..Default::default()
    };
    Ok((command, script))
}

/// `path` relative to `dir` if it lies inside it (not `dir` itself).
fn under<'a>(path: &'a str, dir: &str) -> Option<&'a str> {
    if dir.is_empty() {
        return Some(path);
    }
    path.strip_prefix(dir)?
        .strip_prefix('/')
        .filter(|r| !r.is_empty())
}

/// argv run from the input root after `cd DIR`.
fn in_directory(dir: &str, argv: Vec<String>) -> Vec<String> {
    let mut out = vec![
        "sh".into(),
        "-c".into(),
        "cd \"$0\" && exec \"$@\"".into(),
        dir.to_string(),
    ];
    out.extend(argv);
    out
}

fn platform_of(cmd: &wit::Command) -> re::Platform {
    let mut properties: Vec<_> = cmd
        .platform
        .iter()
        .map(|(k, v)| re::platform::Property {
            name: k.clone(),
            value: v.clone(),
        })
        .collect();
    properties.sort_by(|a, b| (&a.name, &a.value).cmp(&(&b.name, &b.value)));
    re::Platform { properties }
}

fn join(dir: &str, path: &str) -> String {
    if dir.is_empty() {
        path.trim_start_matches("./").to_string()
    } else {
        format!("{dir}/{}", path.trim_start_matches("./"))
    }
}

/// Refuses a command whose paths leave the workspace.
pub fn check_paths(cmd: &wit::Command) -> Result<()> {
    for p in cmd
        .inputs
        .iter()
        .chain(&cmd.outputs)
        .chain([&cmd.cwd, &cmd.log])
    {
        if p.starts_with('/') {
            bail!("\"{p}\" is absolute");
        }
        tree::components(p)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(cwd: &str, outputs: &[&str]) -> wit::Command {
        wit::Command {
            program: "make".into(),
            args: vec!["all".into()],
            cwd: cwd.into(),
            env: vec![
                ("PATH".into(), "/bin".into()),
                ("HOME".into(), "/ws".into()),
                ("A".into(), "1".into()),
            ],
            log: "log".into(),
            jobserver: false,
            network: false,
            inputs: vec![],
            outputs: outputs.iter().map(|s| s.to_string()).collect(),
            platform: vec![("OSFamily".into(), "linux".into())],
            cacheable: true,
        }
    }

    #[test]
    fn outputs_under_the_working_directory_are_relative_to_it() {
        let c = command_of(&cmd("w/src", &["w/src/out/a", "w/src/b"]), Path::new("/ws"))
            .unwrap()
            .0;
        assert_eq!(c.working_directory, "w/src");
        assert_eq!(c.output_paths, vec!["b", "out/a"]);
        assert_eq!(c.arguments, vec!["make", "all"]);
        let names: Vec<_> = c
            .environment_variables
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(names, ["A", "PATH"], "sorted, without the local HOME");
    }

    #[test]
    fn outputs_elsewhere_run_from_the_root() {
        let c = command_of(&cmd("w", &["deploy/img"]), Path::new("/ws"))
            .unwrap()
            .0;
        assert_eq!(c.working_directory, "");
        assert_eq!(c.output_paths, vec!["deploy/img"]);
        assert_eq!(
            c.arguments[..4],
            ["sh", "-c", "cd \"$0\" && exec \"$@\"", "w"]
        );
        assert_eq!(c.arguments[4..], ["make", "all"]);
    }

    #[test]
    fn leaving_paths_are_refused() {
        assert!(command_of(&cmd("", &["../x"]), Path::new("/ws")).is_err());
        let mut c = cmd("", &[]);
        c.inputs = vec!["/etc/passwd".into()];
        assert!(check_paths(&c).is_err());
    }
}
