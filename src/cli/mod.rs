//! The vocabulary both command lines share — the bundled host's `runqueue`
//! (clap) and the component's own `wasi:cli/run` ([`args`]): subcommands
//! and the options each takes, defaults, parsing of option values, reading
//! a graph file, exit codes and error wording, and the lines they print
//! ([`lines`]).
//!
//! Knows words and numbers; knows nothing of WIT, clap or either host.

pub mod args;
pub mod lines;

use std::path::Path;
use std::time::Duration;

use crate::api::Error;
use crate::graph::seconds_to_ms;
use crate::schedule::plan::Policy;

/// Exit code: every task succeeded.
pub const EXIT_OK: i32 = 0;
/// Exit code: at least one task failed or did not run.
pub const EXIT_TASK_FAILED: i32 = 1;
/// Exit code: bad input (graph, arguments, workspace); nothing ran.
pub const EXIT_BAD_INPUT: i32 = 2;
/// Exit code: runqueue itself broke (component missing or trapped).
pub const EXIT_INTERNAL: i32 = 3;

/// The cache directory unless `--cache` or `--no-cache` says otherwise,
/// relative to the workspace.
pub const DEFAULT_CACHE: &str = ".runqueue/cache";
/// Where logs go unless `--logs` says otherwise.
pub const DEFAULT_LOG_DIR: &str = crate::graph::confine::DEFAULT_LOG_DIR;
/// `simulate`'s virtual slots unless `-j` says otherwise.
pub const DEFAULT_SIMULATE_JOBS: u32 = 8;
/// How long one remote cache request may take unless
/// `--remote-cache-timeout` says otherwise, in seconds.
pub const DEFAULT_REMOTE_TIMEOUT: &str = "10";
/// Remote cache requests in flight at once.
pub const REMOTE_CONCURRENCY: u32 = 16;

/// Graph files larger than this are refused before parsing.
pub const MAX_GRAPH_BYTES: u64 = 256 << 20;

/// The exit code of a build that ran: 0 if every task succeeded or was
/// cached, 1 if any failed or did not run (interrupted).
pub fn build_exit_code(all_done: bool) -> i32 {
    if all_done {
        EXIT_OK
    } else {
        EXIT_TASK_FAILED
    }
}

/// The exit code and the message for an error from the API, reading the
/// graph at `graph`.
pub fn error_exit(graph: &str, e: &Error) -> (i32, String) {
    match e {
        Error::InvalidGraph(m) => (EXIT_BAD_INPUT, format!("invalid graph {graph}: {m}")),
        Error::InvalidRequest(m) => (EXIT_BAD_INPUT, m.clone()),
        Error::Internal(m) => (EXIT_INTERNAL, m.clone()),
    }
}

/// The graph name that means standard input.
pub const STDIN: &str = "-";

/// A graph file's text: refused if it is not a regular file (a FIFO or a
/// device is never opened), larger than [`MAX_GRAPH_BYTES`] (however large
/// it says it is: no more is read) or not UTF-8. `-` reads standard input
/// to its end, with the same cap.
pub fn read_graph(path: &Path) -> Result<String, String> {
    let bytes = match path.to_str() == Some(STDIN) {
        true => read_capped_from(std::io::stdin().lock(), "graph ", path, MAX_GRAPH_BYTES)?,
        false => read_capped(path, "graph ", MAX_GRAPH_BYTES)?,
    };
    graph_text(bytes, path)
}

/// Bytes read as the graph `path` as its text, if they are UTF-8.
pub fn graph_text(bytes: Vec<u8>, path: &Path) -> Result<String, String> {
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "graph {} is not UTF-8 text (bad byte at offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        )
    })
}

/// Any other text file an option names (durations), with the same rules.
pub fn read_text(path: &Path) -> Result<String, String> {
    let bytes = read_capped(path, "", MAX_GRAPH_BYTES)?;
    String::from_utf8(bytes).map_err(|_| format!("{} is not UTF-8 text", path.display()))
}

/// The bytes of the regular file `path`, at most `cap` of them; `what`
/// starts the messages ("graph ").
fn read_capped(path: &Path, what: &str, cap: u64) -> Result<Vec<u8>, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {what}{shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{what}{shown} is not a regular file"));
    }
    if meta.len() > cap {
        return Err(format!(
            "{what}{shown} is {} bytes or more; the limit is {cap}",
            meta.len()
        ));
    }
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read {what}{shown}: {e}"))?;
    read_capped_from(file, what, path, cap)
}

/// All of `from` up to its end, refused past `cap` bytes (no more than one
/// byte past it is read); `what` and `path` name it in messages.
pub fn read_capped_from(
    from: impl std::io::Read,
    what: &str,
    path: &Path,
    cap: u64,
) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let shown = path.display();
    let mut bytes = Vec::new();
    from.take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {what}{shown}: {e}"))?;
    if bytes.len() as u64 > cap {
        let n = cap + 1;
        return Err(format!(
            "{what}{shown} is {n} bytes or more; the limit is {cap}"
        ));
    }
    Ok(bytes)
}

/// A number of seconds (`--timeout`, `--remote-cache-timeout`): positive,
/// below 1e9, kept to the millisecond (rounded up).
pub fn parse_seconds(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .and_then(seconds_to_ms)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{s:?} is not a positive number of seconds"))
}

/// Like [`parse_seconds`], but `0` turns the thing off (`--stall-warning`).
pub fn parse_seconds_or_off(s: &str) -> Result<Duration, String> {
    if s.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    parse_seconds(s)
}

/// A `--memory-limit`: bytes, with an optional K, M, G or T suffix
/// (powers of 1024, fractions allowed: `1.5G`); `none` (or `0`) is 0,
/// which turns memory-aware starts off.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    if t == "none" {
        return Ok(0);
    }
    let (number, unit) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&t[..i], c.to_ascii_uppercase()),
        _ => (t, 'B'),
    };
    let scale = match unit {
        'B' => 1u64,
        'K' => 1 << 10,
        'M' => 1 << 20,
        'G' => 1 << 30,
        'T' => 1 << 40,
        _ => 0,
    };
    let bytes = number.parse::<f64>().ok().map(|n| n * scale as f64);
    match bytes {
        Some(b) if scale > 0 && (0.0..1e19).contains(&b) => Ok(b as u64),
        _ => Err(format!(
            "{s:?} is not a size in bytes (like 512M, 4G or none)"
        )),
    }
}

/// A `--scheduler` name.
pub fn parse_scheduler(s: &str) -> Result<Policy, String> {
    Policy::parse(s).ok_or_else(|| {
        let names: Vec<&str> = Policy::ALL.iter().map(|p| p.name()).collect();
        format!("unknown scheduler {s:?} (one of {})", names.join(", "))
    })
}

/// Milliseconds of a duration for the component, at least 1.
pub fn millis(d: Duration) -> u64 {
    d.as_millis().clamp(1, u64::MAX as u128) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("1.5g"), Ok(3 << 29));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("none"), Ok(0));
        for bad in ["", "x", "-1G", "5Q", "1e30"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn seconds_follow_the_graphs_rule() {
        assert_eq!(parse_seconds("2.5"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_seconds("0.0001"), Ok(Duration::from_millis(1)));
        for bad in ["0", "-1", "nan", "inf", "1e9", "x"] {
            assert_eq!(
                parse_seconds(bad),
                Err(format!("{bad:?} is not a positive number of seconds"))
            );
        }
        assert_eq!(parse_seconds_or_off("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn schedulers_are_named_once() {
        for p in Policy::ALL {
            assert_eq!(parse_scheduler(p.name()), Ok(p));
        }
        assert_eq!(
            parse_scheduler("best"),
            Err("unknown scheduler \"best\" (one of critical-path, speed, fifo, waves)".into())
        );
    }
}
