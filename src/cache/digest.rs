//! sha256 of bytes and files, and copying a file while hashing it.
//!
//! Knows bytes and paths; knows nothing of tasks or of the cache layout.

use std::collections::hash_map::RandomState;
use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

/// Bytes read or written per system call.
const CHUNK: usize = 1 << 20;

/// An I/O error as messages say it. A file name that is not UTF-8 cannot
/// pass through WASI (its names are strings): that error says so.
pub fn io_text(e: &io::Error) -> String {
    const EILSEQ: i32 = if cfg!(target_os = "wasi") { 25 } else { 84 };
    if e.raw_os_error() == Some(EILSEQ) {
        "holds a file name that is not UTF-8, which runqueue cannot read; rename it".into()
    } else {
        e.to_string()
    }
}

/// Lower-case hex of a sha256 digest.
pub fn hex(digest: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(digest.len() * 2);
    for b in digest {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

/// sha256 of `bytes`, in hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// True for a 64-character lower-case hex string, the only names the cache
/// accepts for blobs and signatures.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// sha256 and size of everything `src` yields, handing each chunk to
/// `each` on the way.
fn hash_stream(
    src: &mut impl Read,
    mut each: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut size = 0u64;
    loop {
        let n = src.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        each(&buf[..n])?;
        size += n as u64;
    }
    Ok((hex(&hasher.finalize()), size))
}

/// sha256 and size of a file's contents.
pub fn hash_file(path: &Path) -> io::Result<(String, u64)> {
    hash_stream(&mut open_regular(path)?, |_| Ok(()))
}

/// Opens `path` for reading if it is a regular file (after symlinks). A
/// FIFO, socket or device is refused without being opened: opening a FIFO
/// with no writer would block for ever, and a device can be endless.
pub fn open_regular(path: &Path) -> io::Result<File> {
    let not_regular = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file (a FIFO, socket or device)",
        )
    };
    if !std::fs::metadata(path)?.is_file() {
        return Err(not_regular());
    }
    // Natively, opened without blocking and checked again on the open file:
    // a FIFO swapped in meanwhile is still never waited on.
    #[cfg(unix)]
    let file = {
        use std::os::unix::fs::OpenOptionsExt;
        let file = File::options()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)?;
        if !file.metadata()?.is_file() {
            return Err(not_regular());
        }
        file
    };
    #[cfg(not(unix))]
    let file = File::open(path)?;
    Ok(file)
}

/// Copies `from` into a new file `to` (which must not exist), returning the
/// sha256 and size of what was copied. The caller renames `to` into place.
pub fn copy_hashing(from: &Path, to: &Path) -> io::Result<(String, u64)> {
    let mut src = open_regular(from)?;
    let mut dst = crate::cache::wfile::open(to, crate::cache::wfile::How::New)?;
    let hashed = hash_stream(&mut src, |chunk| dst.write_all(chunk))?;
    dst.flush()?;
    Ok(hashed)
}

/// A name part that no other call, in this or any other process, returns:
/// a counter mixed with a per-process random key.
pub fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    thread_local! {
        static KEY: RandomState = RandomState::new();
    }
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut h = KEY.with(|k| k.build_hasher());
    h.write_u64(n);
    format!("{:016x}{n:x}", h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_and_copies() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::write(&a, b"abc").unwrap();
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(sha256_hex(b"abc"), abc);
        assert_eq!(hash_file(&a).unwrap(), (abc.to_string(), 3));
        let b = dir.path().join("b");
        assert_eq!(copy_hashing(&a, &b).unwrap(), (abc.to_string(), 3));
        assert_eq!(std::fs::read(&b).unwrap(), b"abc");
        assert!(copy_hashing(&a, &b).is_err(), "never overwrites");
        assert!(is_sha256_hex(abc));
        assert!(!is_sha256_hex("../../etc/passwd"));
        assert_ne!(unique_suffix(), unique_suffix());
    }
}
