//! A build's options as a service request gives them: a JSON object of
//! `build`'s long option names with `_` for `-` (`{"jobs": 4,
//! "keep_going": true}`), read by the same parser as the command line, so
//! both refuse the same values in the same words.
//!
//! Knows the `build` options; knows nothing of HTTP or of the service.

use clap::Parser;
use serde_json::{Map, Value};

use super::args::{Cli, Request};
use super::build::{isolation_of, jobserver_mode, local_limits};
use crate::serve::Submitted;
use crate::RunOptions;

/// Options that name files or places on the service's machine, or that
/// only a terminal has a use for: a request may not give them.
const REFUSED: &[&str] = &[
    "workspace",
    "cache",
    "logs",
    "report",
    "trace",
    "chart",
    "cache_signing_key",
    "cache_trust",
    "executor",
    "instance",
    "remote_cache",
    "remote_cache_read_only",
    "remote_cache_timeout",
    "no_wait",
    "quiet",
    "verbose",
    "tail",
    "stall_warning",
    "component",
    "max_memory",
];

/// Reads `options`; `Err` is the one-line reason, naming the option.
pub fn submitted(options: &Map<String, Value>) -> Result<Submitted, String> {
    let mut argv: Vec<String> = ["runqueue", "build", "graph.json"].map(String::from).into();
    for (name, value) in options {
        argv.extend(option_args(name, value)?);
    }
    let cli = Cli::try_parse_from(&argv).map_err(|e| clap_line(&e))?;
    let Request::Build {
        jobs,
        keep_going,
        scheduler,
        timeout,
        allow_program,
        no_cutoff,
        check_reproducible,
        memory_limit,
        no_jobserver,
        require_isolation,
        place,
        ..
    } = cli.request
    else {
        unreachable!("parsed as build")
    };
    let (jobs, no_jobserver, memory_limit) =
        local_limits(false, (jobs, no_jobserver, memory_limit));
    Ok(Submitted {
        options: RunOptions {
            max_parallel: jobs,
            keep_going,
            cache: place.cache(),
            scheduler: crate::to_wit_scheduler(scheduler),
            timeout,
            no_cutoff,
            check_reproducible,
            memory_limit,
            ..RunOptions::default()
        },
        allowed_programs: (!allow_program.is_empty()).then_some(allow_program),
        jobserver: jobserver_mode(jobs, no_jobserver),
        isolation: isolation_of(require_isolation),
    })
}

/// One option as command-line words: `true` is the bare flag, `false` and
/// `null` nothing, a list the option once per item.
fn option_args(name: &str, value: &Value) -> Result<Vec<String>, String> {
    if REFUSED.contains(&name) {
        return Err(format!("option {name:?} is not accepted by the service"));
    }
    if !name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') || name.is_empty() {
        return Err(format!("unknown option {name:?}"));
    }
    let flag = format!("--{}", name.replace('_', "-"));
    let word = |v: &Value| match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err(format!("option {name:?}: expected a string or a number")),
    };
    Ok(match value {
        Value::Bool(true) => vec![flag],
        Value::Bool(false) | Value::Null => Vec::new(),
        Value::Array(items) => {
            let mut words = Vec::new();
            for item in items {
                words.extend([flag.clone(), word(item)?]);
            }
            words
        }
        other => vec![flag, word(other)?],
    })
}

/// Clap's error as one line, without its `error: ` and usage.
fn clap_line(e: &clap::Error) -> String {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or("invalid options");
    first.trim_start_matches("error: ").replace("'", "\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::JobserverMode;
    use std::time::Duration;

    fn parse(json: &str) -> Result<Submitted, String> {
        submitted(
            serde_json::from_str::<Value>(json)
                .unwrap()
                .as_object()
                .unwrap(),
        )
    }

    #[test]
    fn the_cli_long_names_are_read() {
        let s =
            parse(r#"{"jobs": 3, "keep_going": true, "timeout": "5", "no_cache": true}"#).unwrap();
        assert_eq!(s.options.max_parallel, Some(3));
        assert!(s.options.keep_going);
        assert_eq!(s.options.timeout, Some(Duration::from_secs(5)));
        assert_eq!(s.options.cache, None);
        assert!(matches!(s.jobserver, JobserverMode::Serve(3)));
    }

    #[test]
    fn bad_values_and_names_are_refused_in_one_line() {
        let bad = parse(r#"{"jobs": 0}"#).unwrap_err();
        assert!(bad.contains("--jobs") && !bad.contains('\n'), "{bad}");
        let unknown = parse(r#"{"jobz": 1}"#).unwrap_err();
        assert!(unknown.contains("--jobz"), "{unknown}");
        let refused = parse(r#"{"report": "/etc/x"}"#).unwrap_err();
        assert!(refused.contains("not accepted"), "{refused}");
        assert!(parse(r#"{"jobs": {"a": 1}}"#).is_err());
    }
}
