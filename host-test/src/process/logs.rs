//! The files a task leaves in its log directory (its output, the command as
//! a shell script, the link to the latest log) and the copying of its
//! output into them. Knows files and pipes; knows nothing of how the
//! process runs or is waited for.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::exec_size::shell_quote;
use super::workspace::{Dir, Entry};
use crate::bindings::runqueue::executor::process as wit;

/// The files a task leaves next to each other, BitBake style: for the log
/// name `dir/log.do_x` given by the component, `dir/log.do_x.<pid>` (the
/// output), `dir/run.do_x.<pid>` (the exact command, as a shell script) and
/// the link `dir/log.do_x` to the latest log.
pub struct LogFiles {
    /// The log directory, held open: the paths below go through it.
    _dir: Dir,
    link: PathBuf,
    log: PathBuf,
    run: PathBuf,
    script: String,
}

impl LogFiles {
    /// The files of task `cmd`'s process `pid`, next to the link `link`;
    /// `cwd` is where it runs, for the run script.
    pub(super) fn new(link: Entry, pid: u32, cmd: &wit::Command, cwd: &Path) -> LogFiles {
        let name = link.name.clone();
        let stem = name.strip_prefix("log.").unwrap_or(&name);
        let (_dir, link) = (link.dir.clone(), link.path());
        LogFiles {
            _dir,
            log: link.with_file_name(format!("{name}.{pid}")),
            run: link.with_file_name(format!("run.{stem}.{pid}")),
            link,
            script: run_script(cmd, cwd, pid),
        }
    }

    /// Creates the log (empty) and the run script, and points the link at
    /// the log; returns the log, open for writing.
    pub(super) fn create(&self) -> io::Result<fs::File> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&self.log)?;
        fs::write(&self.run, &self.script)?;
        // Replace the link atomically: a new link under a temporary name,
        // renamed over the old one.
        let tmp = self.link.with_file_name(format!(
            ".{}.tmp",
            self.log.file_name().unwrap_or_default().to_string_lossy()
        ));
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(self.log.file_name().unwrap_or_default(), &tmp)?;
        fs::rename(&tmp, &self.link)?;
        Ok(file)
    }
}

impl LogFiles {
    /// Appends a line of runqueue's own to the log, creating it if the
    /// task printed nothing.
    pub(super) fn note(&self, line: &str) -> io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        if fs::symlink_metadata(&self.log).is_err() {
            drop(self.create()?);
        }
        let mut file = fs::OpenOptions::new()
            .append(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&self.log)?;
        writeln!(file, "{line}")
    }
}

/// Writes `script` next to the log `link` (`dir/log.do_x`) as
/// `dir/script.do_x`, through a temporary file renamed into place, for
/// `sh` to run; returns its path under `root`, the workspace. The next run
/// of the task replaces it; the one before keeps reading its own.
pub(super) fn write_script(link: &Entry, root: &Path, script: &str) -> io::Result<String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let stem = link.name.strip_prefix("log.").unwrap_or(&link.name);
    let name = format!("script.{stem}");
    let tmp = link.dir.join(&format!(".{name}.tmp"));
    let _ = fs::remove_file(&tmp);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    file.write_all(script.as_bytes())?;
    drop(file);
    fs::rename(&tmp, link.dir.join(&name))?;
    let path = root.join(link.dir.rel()).join(name);
    Ok(path.to_string_lossy().into_owned())
}

/// The command as a shell script that does what ran: the environment, the
/// directory, then the task's own shell text (for `sh -c TEXT`) or the
/// program and its arguments.
fn run_script(cmd: &wit::Command, cwd: &Path, pid: u32) -> String {
    let mut s = format!("#!/bin/sh\n# The command runqueue ran as pid {pid}.\n");
    for (k, v) in &cmd.env {
        s += &format!("export {k}={}\n", shell_quote(v));
    }
    s += &format!("cd {}\n", shell_quote(&cwd.to_string_lossy()));
    match (cmd.program.as_str(), cmd.args.as_slice()) {
        ("sh", [c, text]) if c == "-c" => {
            s += text;
            s.push('\n');
        }
        _ => {
            let argv: Vec<String> = std::iter::once(&cmd.program)
                .chain(&cmd.args)
                .map(|a| shell_quote(a))
                .collect();
            s += &format!("exec {}\n", argv.join(" "));
        }
    }
    s
}

/// Copies everything from `reader` into the task's log, creating it (and
/// its run script and link) with the first byte, calling `printed` for
/// every chunk; returns whether anything was written. Keeps draining if the
/// log cannot be written, so the task never blocks on a full pipe.
pub(super) async fn copy_lazily(
    reader: io::PipeReader,
    files: Arc<LogFiles>,
    printed: impl Fn(),
) -> bool {
    use tokio::io::AsyncReadExt;
    let Ok(mut rx) = tokio::net::unix::pipe::Receiver::from_owned_fd(reader.into()) else {
        return false;
    };
    let mut buf = vec![0u8; 64 << 10];
    let mut file: Option<Option<fs::File>> = None;
    loop {
        match rx.read(&mut buf).await {
            Ok(0) | Err(_) => return file.is_some(),
            Ok(n) => {
                printed();
                let f = file.get_or_insert_with(|| files.create().ok());
                if let Some(f) = f {
                    use std::io::Write;
                    if f.write_all(&buf[..n]).is_err() {
                        *f = fs::File::open("/dev/null").expect("/dev/null");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::Workspace;

    #[test]
    fn replaces_a_planted_link_never_follows_it() {
        let ws_dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let ws = Workspace::open(ws_dir.path()).unwrap();
        std::os::unix::fs::symlink(outside.path().join("f"), ws_dir.path().join("log.x")).unwrap();
        let cmd = wit::Command {
            program: "true".into(),
            args: vec![],
            cwd: String::new(),
            env: vec![],
            log: "log.x".into(),
            jobserver: false,
            network: false,
            inputs: vec![],
            outputs: vec![],
            platform: vec![],
            cacheable: true,
        };
        let files = LogFiles::new(ws.file_path("log.x").unwrap(), 42, &cmd, ws.root());
        files.create().unwrap();
        assert!(!outside.path().join("f").exists());
        assert_eq!(
            fs::read_link(ws_dir.path().join("log.x")).unwrap(),
            Path::new("log.x.42")
        );
        assert!(ws_dir.path().join("run.x.42").is_file());
    }
}
