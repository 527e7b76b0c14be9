//! Stall warnings: which running tasks have printed nothing for too long,
//! or (run remotely) made no progress on the executor. Knows when each
//! task last showed progress; knows nothing of how warnings are shown.

use std::collections::HashMap;
use std::time::Duration;

use super::Running;
use crate::process::Activity;

/// The warnings due for tasks in `running` silent for a multiple of
/// `after` they have not been warned about yet, sorted; records them as
/// given.
pub(super) fn warnings(
    running: &mut HashMap<String, Running>,
    after: Duration,
    activity: &Activity,
) -> Vec<String> {
    let mut warnings = Vec::new();
    for (id, r) in running.iter_mut() {
        let remote = (r.pid == 0)
            .then(|| activity.remote_stage(&r.log))
            .flatten();
        let last = match remote {
            Some((_, since)) => since,
            None => activity.last_output(r.pid).unwrap_or(r.since),
        };
        let silent = last.max(r.since).elapsed();
        let periods = (silent.as_secs_f64() / after.as_secs_f64()) as u32;
        if periods == 0 {
            r.warned = 0;
        } else if periods > r.warned {
            r.warned = periods;
            let (how_long, how) = (human(after * periods), remote.map(|(stage, _)| stage));
            warnings.push(match how {
                Some(stage) => format!(
                    "{id} has made no progress on the executor for {how_long} ({stage}); is it stuck?"
                ),
                None => format!(
                    "{id} has printed nothing for {how_long} (pid {}); is it stuck?",
                    r.pid
                ),
            });
        }
    }
    warnings.sort();
    warnings
}

/// A duration as people write it: `45s`, `10m`, `1h30m`.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, 0, _) => format!("{h}h"),
        (h, m, _) => format!("{h}h{m}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        let cases = [
            (45, "45s"),
            (600, "10m"),
            (90, "1m30s"),
            (7200, "2h"),
            (5430, "1h30m"),
        ];
        for (secs, text) in cases {
            assert_eq!(human(Duration::from_secs(secs)), text);
        }
    }
}
