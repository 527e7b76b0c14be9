//! What the machine has to give: memory available (to this cgroup, where
//! it is limited), memory pressure, and how many processes the kernel has
//! killed for lack of memory. Knows /proc and /sys/fs/cgroup; knows
//! nothing of tasks.

use std::fs;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes available now: `MemAvailable`, or less where this process's
/// memory cgroup (v2 or v1) has a lower limit.
pub fn memory_available() -> u64 {
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let available = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(u64::MAX, |kb| kb * 1024);
    available.min(cgroup_room().unwrap_or(u64::MAX))
}

/// The memory cgroup's limit minus its usage, if it has a limit.
fn cgroup_room() -> Option<u64> {
    let cgroups = fs::read_to_string("/proc/self/cgroup").ok()?;
    let read = |p: String| fs::read_to_string(p).ok()?.trim().parse::<u64>().ok();
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let (limit, usage) = if controllers.is_empty() {
            let dir = format!("/sys/fs/cgroup{path}");
            (
                read(format!("{dir}/memory.max")),
                read(format!("{dir}/memory.current")),
            )
        } else if controllers.split(',').any(|c| c == "memory") {
            let dir = format!("/sys/fs/cgroup/memory{path}");
            (
                read(format!("{dir}/memory.limit_in_bytes")),
                read(format!("{dir}/memory.usage_in_bytes")),
            )
        } else {
            continue;
        };
        // v1 says "no limit" with a huge number, v2 with "max" (no parse).
        if let (Some(limit), Some(usage)) = (limit, usage) {
            if limit < 1 << 60 {
                return Some(limit.saturating_sub(usage));
            }
        }
    }
    None
}

/// Microseconds some process stalled on memory since boot
/// (`/proc/pressure/memory`, `some … total=`); `None` without PSI.
pub fn memory_stall_us() -> Option<u64> {
    let text = fs::read_to_string("/proc/pressure/memory").ok()?;
    let some = text.lines().find(|l| l.starts_with("some "))?;
    some.split_whitespace()
        .find_map(|w| w.strip_prefix("total="))?
        .parse()
        .ok()
}

/// Processes the kernel's out-of-memory killer has killed since boot
/// (`/proc/vmstat`), as last read.
static OOM_KILLS: AtomicU64 = AtomicU64::new(0);

/// The out-of-memory kill count as last read: a child notes it when it
/// starts and compares when it dies of SIGKILL.
pub fn oom_kills_seen() -> u64 {
    OOM_KILLS.load(Ordering::Relaxed)
}

/// Reads the out-of-memory kill count afresh.
pub fn oom_kills_now() -> u64 {
    let vmstat = fs::read_to_string("/proc/vmstat").unwrap_or_default();
    let now = vmstat
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    OOM_KILLS.fetch_max(now, Ordering::Relaxed);
    now
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machine_answers() {
        let available = memory_available();
        assert!(available > 1 << 20 && available < u64::MAX, "{available}");
        if std::path::Path::new("/proc/pressure/memory").exists() {
            assert!(memory_stall_us().is_some());
        }
        assert!(oom_kills_now() >= oom_kills_seen() || oom_kills_seen() == 0);
    }
}
