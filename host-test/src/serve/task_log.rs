//! A task's log as the service hands it out: from a byte offset, at most
//! [`CHUNK`] bytes at a time, so a client follows a running task's log by
//! asking again from where it stopped.
//!
//! Knows log files inside a workspace; knows nothing of HTTP.

use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Component, Path};

/// The most bytes one read returns.
pub const CHUNK: u64 = 1 << 20;

/// Up to [`CHUNK`] bytes of `workspace/log` from `offset`, and the file's
/// size. `log` must be a plain relative path (as the component names
/// logs): nothing outside the workspace is read. A task that printed
/// nothing has no log file: its log is empty.
pub fn read(workspace: &Path, log: &str, offset: u64) -> std::io::Result<(Vec<u8>, u64)> {
    let rel = Path::new(log);
    if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(std::io::Error::other("not a path inside the workspace"));
    }
    let mut file = match std::fs::File::open(workspace.join(rel)) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        opened => opened?,
    };
    let size = file.metadata()?.len();
    let mut bytes = Vec::new();
    if offset < size {
        file.seek(SeekFrom::Start(offset))?;
        file.take(CHUNK.min(size - offset))
            .read_to_end(&mut bytes)?;
    }
    Ok((bytes, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_from_an_offset_and_only_inside() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("logs")).unwrap();
        std::fs::write(dir.path().join("logs/a.log"), "hello world").unwrap();
        let (bytes, size) = read(dir.path(), "logs/a.log", 6).unwrap();
        assert_eq!((bytes.as_slice(), size), (&b"world"[..], 11));
        assert_eq!(
            read(dir.path(), "logs/none.log", 0).unwrap(),
            (Vec::new(), 0)
        );
        assert!(read(dir.path(), "../x", 0).is_err());
        assert!(read(dir.path(), "/etc/passwd", 0).is_err());
    }
}
