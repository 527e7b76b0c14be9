//! Finding the program a task names on its `PATH`. Knows files and
//! permission bits; knows nothing of starting the program.

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
