//! Finding the program a task names on its `PATH`, and seeing when a
//! shell would only start one program. Knows files, permission bits and
//! shell words; knows nothing of starting the program.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::bindings::runqueue::executor::process::SpawnError;

/// Programs already found, by name and `PATH`: thousands of tasks run `sh`
/// with the same `PATH`. Only absolute answers are kept (a relative `PATH`
/// entry depends on the task's directory). One per instance of the
/// component.
#[derive(Default)]
pub struct Programs(Mutex<HashMap<(String, String), PathBuf>>);

impl Programs {
    /// For `sh -c TEXT` where TEXT is only plain words (nothing the shell
    /// would interpret) and the first is a program on `PATH`: the words as
    /// the argument vector, and that program. Running it directly does
    /// exactly what the shell would, with one process fewer per task (Ninja
    /// always starts the shell). Anything else, a program not found
    /// included (the shell says so in the log, exit 127), is left to `sh`.
    pub(super) fn direct(
        &self,
        program: &str,
        args: &[String],
        env: &[(String, String)],
        cwd: &Path,
    ) -> Option<(Vec<String>, PathBuf)> {
        let [c, text] = args else { return None };
        if program != "sh" || c != "-c" {
            return None;
        }
        let words = plain_words(text)?;
        let path = self.resolve(&words[0], env, cwd).ok()?;
        Some((words, path))
    }

    /// The program to execute: a name without `/` is looked up in the
    /// `PATH` of the task's environment, here rather than in the child, so
    /// the standard library can use `posix_spawn` instead of `fork` and one
    /// `execve` per `PATH` entry. A name with `/` is relative to the task's
    /// directory.
    pub(super) fn resolve(
        &self,
        program: &str,
        env: &[(String, String)],
        cwd: &Path,
    ) -> Result<PathBuf, SpawnError> {
        use std::os::unix::fs::PermissionsExt;
        if program.contains('/') {
            return Ok(cwd.join(program));
        }
        let path = env
            .iter()
            .rev()
            .find(|(k, _)| k == "PATH")
            .map_or("", |(_, v)| v.as_str());
        let key = (program.to_string(), path.to_string());
        if let Some(p) = self.0.lock().expect("not poisoned").get(&key) {
            return Ok(p.clone());
        }
        let cacheable = path.split(':').all(|d| d.starts_with('/'));
        let mut denied = false;
        for dir in path.split(':').filter(|d| !d.is_empty()) {
            let candidate = cwd.join(dir).join(program);
            if let Ok(meta) = fs::metadata(&candidate) {
                if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                    if cacheable {
                        let mut found = self.0.lock().expect("not poisoned");
                        found.insert(key, candidate.clone());
                    }
                    return Ok(candidate);
                }
                denied |= meta.is_file();
            }
        }
        Err(if denied {
            SpawnError::PermissionDenied(format!("program \"{program}\": permission denied"))
        } else {
            SpawnError::NotFound(format!("program \"{program}\" not found"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn env(path: &str) -> Vec<(String, String)> {
        vec![("PATH".to_string(), path.to_string())]
    }

    #[test]
    fn finds_executables_on_path_and_remembers_absolute_answers() {
        let dir = tempfile::tempdir().unwrap();
        let (bin, plain) = (dir.path().join("bin"), dir.path().join("plain"));
        fs::create_dir(&bin).unwrap();
        fs::write(bin.join("tool"), "").unwrap();
        fs::set_permissions(bin.join("tool"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(dir.path().join("plain"), "").unwrap();
        let programs = Programs::default();
        let path = bin.to_string_lossy().into_owned();
        assert_eq!(
            programs.resolve("tool", &env(&path), dir.path()).unwrap(),
            bin.join("tool")
        );
        assert_eq!(programs.resolve("./x", &[], &bin).unwrap(), bin.join("./x"));
        // The answer is remembered even after the program is gone.
        fs::remove_file(bin.join("tool")).unwrap();
        assert!(programs.resolve("tool", &env(&path), dir.path()).is_ok());
        // Relative entries are looked up afresh each time.
        assert_eq!(
            programs.resolve("plain", &env("."), dir.path()),
            Err(SpawnError::PermissionDenied(
                "program \"plain\": permission denied".into()
            ))
        );
        fs::set_permissions(&plain, fs::Permissions::from_mode(0o755)).unwrap();
        assert!(programs.resolve("plain", &env("."), dir.path()).is_ok());
        assert_eq!(
            programs.resolve("none", &env(&path), dir.path()),
            Err(SpawnError::NotFound("program \"none\" not found".into()))
        );
    }
}

/// The words of `text` if the shell would only pass them along: no quotes,
/// `$`, globs, redirections, `;`, `&&`, comments or escapes, no assignment
/// first, and not a builtin or keyword first (`cd`, `exit`, `if`, ...).
fn plain_words(text: &str) -> Option<Vec<String>> {
    const SHELL_FIRST: &[&str] = &[
        ".", ":", "alias", "bg", "break", "cd", "command", "continue", "eval", "exec", "exit",
        "export", "fc", "fg", "getopts", "hash", "jobs", "local", "read", "readonly", "return",
        "set", "shift", "times", "trap", "type", "ulimit", "umask", "unalias", "unset", "wait",
        "if", "then", "else", "elif", "fi", "for", "while", "until", "do", "done", "case", "esac",
        "function", "select", "time", "!",
    ];
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./=:,+@% \t".contains(c);
    if !text.chars().all(plain) {
        return None;
    }
    let words: Vec<String> = text
        .split([' ', '\t'])
        .filter(|w| !w.is_empty())
        .map(String::from)
        .collect();
    let first = words.first()?;
    let shell = first.contains('=') || SHELL_FIRST.contains(&first.as_str());
    (!shell).then_some(words)
}

#[cfg(test)]
mod direct_tests {
    use super::*;

    #[test]
    fn plain_words_are_run_without_a_shell() {
        let words = |t: &str| plain_words(t).map(|w| w.join("|"));
        assert_eq!(words("touch s/t1"), Some("touch|s/t1".into()));
        assert_eq!(words("  make  -j8 V=1 "), Some("make|-j8|V=1".into()));
        for shell in [
            "",
            "echo $HOME",
            "ls *.c",
            "a && b",
            "a; b",
            "a > f",
            "cd x",
            "exit 3",
            "CC=gcc make",
            "echo 'x y'",
            "echo \"x\"",
            "a\nb",
            "~/bin/x",
            "if true",
            "echo a\\b",
            "x # comment",
            "(a)",
            "a | b",
            "a &",
        ] {
            assert_eq!(plain_words(shell), None, "{shell:?} needs a shell");
        }
    }

    #[test]
    fn only_sh_c_of_a_program_on_path_goes_direct() {
        let p = Programs::default();
        let env = [("PATH".to_string(), "/usr/bin:/bin".to_string())];
        let cwd = Path::new("/");
        let args = |t: &str| vec!["-c".to_string(), t.to_string()];
        let (argv, path) = p.direct("sh", &args("true x"), &env, cwd).unwrap();
        assert_eq!(argv, ["true", "x"]);
        assert!(path.ends_with("true"), "{path:?}");
        assert!(p
            .direct("sh", &args("no-such-program-anywhere"), &env, cwd)
            .is_none());
        assert!(p.direct("bash", &args("true"), &env, cwd).is_none());
        assert!(p.direct("sh", &args("true > f"), &env, cwd).is_none());
    }
}
