//! Reading a graph from a pipe or a FIFO (`runqueue build <(make-graph)`,
//! or a named FIFO some generator writes). Knows how to wait for a writer
//! without hanging; knows nothing of graphs.
//!
//! Opening a FIFO for reading blocks until some process opens it for
//! writing, possibly never: the open runs on its own thread and is given
//! [`WRITER_WAIT`]. Once a writer is there, everything is read to its end
//! (a slow generator is waited for), refused past the cap.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

/// How long a FIFO may stay without a writer before it is refused.
pub const WRITER_WAIT: Duration = Duration::from_secs(5);

/// Whether `path` leads to a pipe or a FIFO (`/dev/fd/N` of `<(…)` does).
pub fn is_pipe(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo())
}

/// Everything written to the pipe or FIFO `path`, at most `cap` bytes;
/// `what` starts the messages ("graph ").
pub fn read_pipe(path: &Path, what: &str, cap: u64, wait: Duration) -> Result<Vec<u8>, String> {
    let file = open_with_writer(path, wait).map_err(|e| {
        let shown = path.display();
        match e {
            Opened::NoWriter => format!(
                "{what}{shown}: no process opened this FIFO for writing within {} s",
                wait.as_secs()
            ),
            Opened::Failed(e) => format!("cannot read {what}{shown}: {e}"),
        }
    })?;
    runqueue::cli::read_capped_from(file, what, path, cap)
}

enum Opened {
    NoWriter,
    Failed(std::io::Error),
}

/// `path` opened for reading once a writer has it open, waiting `wait`.
fn open_with_writer(path: &Path, wait: Duration) -> Result<File, Opened> {
    let (tx, rx) = mpsc::channel();
    let owned = path.to_path_buf();
    std::thread::spawn(move || {
        let _ = tx.send(File::open(&owned));
    });
    match rx.recv_timeout(wait) {
        Ok(opened) => opened.map_err(Opened::Failed),
        Err(_) => {
            unblock(path);
            Err(Opened::NoWriter)
        }
    }
}

/// Frees the thread blocked opening `path`: a writer that opens without
/// waiting (there is a reader, the thread) and closes at once, so that
/// the thread reads an end and exits.
fn unblock(path: &Path) {
    let _ = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn fifo(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("rq-pipes-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("fifo");
        let status = std::process::Command::new("mkfifo").arg(&path).status();
        assert!(status.unwrap().success());
        path
    }

    #[test]
    fn a_fifo_without_a_writer_is_refused_after_the_wait() {
        let path = fifo("alone");
        assert!(is_pipe(&path));
        let e = read_pipe(&path, "graph ", 100, Duration::from_millis(100)).unwrap_err();
        assert!(
            e.ends_with("no process opened this FIFO for writing within 0 s"),
            "{e}"
        );
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn a_fifo_is_read_to_its_end_and_capped() {
        let path = fifo("written");
        for (text, cap) in [("hello", 5), ("hello!", 5)] {
            let writer = {
                let path = path.clone();
                std::thread::spawn(move || {
                    let mut f = OpenOptions::new().write(true).open(path).unwrap();
                    let _ = f.write_all(text.as_bytes());
                })
            };
            let read = read_pipe(&path, "graph ", cap, Duration::from_secs(10));
            writer.join().unwrap();
            match text.len() as u64 <= cap {
                true => assert_eq!(read.unwrap(), text.as_bytes()),
                false => assert!(read.unwrap_err().ends_with("the limit is 5")),
            }
        }
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
}
