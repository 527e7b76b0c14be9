//! Opening a file for writing the same way on every runtime. Rust's std on
//! WASI 0.2 asks for `mutate-directory` with every file it opens for
//! writing, which some runtimes refuse (jco's Node shim: "Not supported").
//! In the component, files are opened for writing through `wasi:filesystem`
//! itself, asking only for `write`; natively, through std.
//!
//! Knows paths and open flags; knows nothing of what is written.

use std::io;
use std::path::Path;

/// How a file is opened for writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// Created or emptied.
    Truncate,
    /// Created if missing; writes go at its end.
    Append,
    /// Created; it must not exist.
    New,
}

/// A file open for writing: natively, std's.
#[cfg(not(target_arch = "wasm32"))]
pub type File = std::fs::File;

/// Opens `path` for writing as `how` says.
#[cfg(not(target_arch = "wasm32"))]
pub fn open(path: &Path, how: How) -> io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    match how {
        How::Truncate => o.write(true).create(true).truncate(true),
        How::Append => o.append(true).create(true),
        How::New => o.write(true).create_new(true),
    };
    o.open(path)
}

/// A file open for writing in the component: its stream, then its handle
/// (the stream must go first).
#[cfg(target_arch = "wasm32")]
pub struct File {
    stream: wasip2::io::streams::OutputStream,
    _descriptor: wasip2::filesystem::types::Descriptor,
}

/// Waits for what was written to reach the file: a runtime may write in
/// the background and drop what is still pending with the stream.
#[cfg(target_arch = "wasm32")]
impl Drop for File {
    fn drop(&mut self) {
        let _ = self.stream.blocking_flush();
    }
}

#[cfg(target_arch = "wasm32")]
impl io::Write for File {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        io::Write::write(&mut self.stream, buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        io::Write::flush(&mut self.stream)
    }
}

/// Opens `path` for writing as `how` says, in the preopened directory that
/// holds it (`.` for relative paths).
#[cfg(target_arch = "wasm32")]
pub fn open(path: &Path, how: How) -> io::Result<File> {
    use wasip2::filesystem::types::{DescriptorFlags, OpenFlags, PathFlags};
    let (dir, rel) = preopen_of(path)?;
    let flags = match how {
        How::Truncate => OpenFlags::CREATE | OpenFlags::TRUNCATE,
        How::Append => OpenFlags::CREATE,
        How::New => OpenFlags::CREATE | OpenFlags::EXCLUSIVE,
    };
    let file = dir
        .open_at(
            PathFlags::SYMLINK_FOLLOW,
            &rel,
            flags,
            DescriptorFlags::WRITE,
        )
        .map_err(io_error)?;
    let stream = match how {
        How::Append => file.append_via_stream(),
        _ => file.write_via_stream(0),
    }
    .map_err(io_error)?;
    Ok(File {
        stream,
        _descriptor: file,
    })
}

/// The preopened directory holding `path`, and `path` inside it.
#[cfg(target_arch = "wasm32")]
fn preopen_of(path: &Path) -> io::Result<(wasip2::filesystem::types::Descriptor, String)> {
    let text = path.to_str().ok_or(io::ErrorKind::InvalidInput)?;
    let text = text.strip_prefix("./").unwrap_or(text);
    let dirs = wasip2::filesystem::preopens::get_directories();
    let mut best: Option<(wasip2::filesystem::types::Descriptor, String, usize)> = None;
    for (dir, name) in dirs {
        let rel = match name.as_str() {
            "." | "./" if !text.starts_with('/') => Some(text.to_string()),
            name => text
                .strip_prefix(name.trim_end_matches('/'))
                .and_then(|r| r.strip_prefix('/'))
                .filter(|_| name.starts_with('/'))
                .map(str::to_string),
        };
        if let Some(rel) = rel.filter(|_| best.as_ref().is_none_or(|b| name.len() > b.2)) {
            best = Some((dir, rel, name.len()));
        }
    }
    best.map(|(d, r, _)| (d, r)).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("no preopened directory holds {text}"),
        )
    })
}

#[cfg(target_arch = "wasm32")]
fn io_error(code: wasip2::filesystem::types::ErrorCode) -> io::Error {
    use wasip2::filesystem::types::ErrorCode as E;
    let kind = match code {
        E::NoEntry => io::ErrorKind::NotFound,
        E::Exist => io::ErrorKind::AlreadyExists,
        E::Access | E::NotPermitted | E::ReadOnly => io::ErrorKind::PermissionDenied,
        E::Unsupported => io::ErrorKind::Unsupported,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, format!("{code:?}"))
}
