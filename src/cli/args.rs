//! The component's own command line (`wasi:cli/run`) parsed into requests,
//! with the subcommands and options the host's clap command line also
//! has (a host test checks that every option here is one there too).
//!
//! Knows words; knows nothing of WIT or files.

use crate::api::{Options, RemoteSettings};
use crate::schedule::plan::Policy;

use super::{
    millis, parse_scheduler, parse_seconds, DEFAULT_CACHE, DEFAULT_REMOTE_TIMEOUT,
    DEFAULT_SIMULATE_JOBS, REMOTE_CONCURRENCY,
};

/// A subcommand: its positional arguments and the options it takes
/// (long names; `-j` and `-k` are short for `--jobs` and `--keep-going`).
pub struct Spec {
    pub name: &'static str,
    pub positional: &'static [&'static str],
    pub options: &'static [&'static str],
}

/// The subcommands of the component's command line.
pub const SUBCOMMANDS: [Spec; 5] = [
    Spec {
        name: "check",
        positional: &["GRAPH"],
        options: &[],
    },
    Spec {
        name: "plan",
        positional: &["GRAPH"],
        options: &["--cache", "--no-cache", "--cache-trust"],
    },
    Spec {
        name: "simulate",
        positional: &["GRAPH"],
        options: &[
            "--jobs",
            "--durations",
            "--scheduler",
            "--cache",
            "--no-cache",
            "--memory-limit",
        ],
    },
    Spec {
        name: "explain",
        positional: &["GRAPH", "TASK"],
        options: &["--cache", "--cache-trust"],
    },
    Spec {
        name: "build",
        positional: &["GRAPH"],
        options: &[
            "--jobs",
            "--keep-going",
            "--scheduler",
            "--timeout",
            "--logs",
            "--cache",
            "--no-cache",
            "--remote-cache",
            "--remote-cache-read-only",
            "--remote-cache-timeout",
            "--cache-signing-key",
            "--cache-trust",
            "--no-cutoff",
            "--check-reproducible",
            "--memory-limit",
        ],
    },
];

/// Options that take no value.
const FLAGS: [&str; 5] = [
    "--keep-going",
    "--no-cache",
    "--remote-cache-read-only",
    "--no-cutoff",
    "--check-reproducible",
];

pub const USAGE: &str = "usage: runqueue check GRAPH
       runqueue plan GRAPH [--cache DIR | --no-cache] [--cache-trust FILE]...
       runqueue simulate GRAPH [-j N] [--durations FILE] [--scheduler S] [--cache DIR | --no-cache] [--memory-limit SIZE]
       runqueue explain GRAPH TASK [--cache DIR] [--cache-trust FILE]...
       runqueue build GRAPH [-j N] [-k] [--scheduler S] [--timeout SECS] [--logs DIR] [--cache DIR | --no-cache]
                      [--remote-cache URL [--remote-cache-read-only] [--remote-cache-timeout SECS]]
                      [--cache-signing-key FILE] [--cache-trust FILE]... [--no-cutoff] [--check-reproducible]
                      [--memory-limit SIZE]";

/// One command line, parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Check {
        graph: String,
    },
    Plan {
        graph: String,
        cache: Option<String>,
        /// Public key files' texts (`--cache-trust`).
        trusted_keys: Vec<String>,
    },
    Simulate {
        graph: String,
        jobs: u32,
        durations: Option<String>,
        policy: Policy,
        cache: Option<String>,
        memory_limit: Option<u64>,
    },
    Explain {
        graph: String,
        task: String,
        cache: Option<String>,
        trusted_keys: Vec<String>,
    },
    Build {
        graph: String,
        options: Options,
    },
}

/// The options given, by long name, in order, before interpretation.
struct Given {
    positional: Vec<String>,
    options: Vec<(&'static str, Option<String>)>,
}

impl Given {
    fn value(&self, name: &str) -> Option<&str> {
        let found = self.options.iter().rev().find(|(n, _)| *n == name);
        found.and_then(|(_, v)| v.as_deref())
    }

    /// Every value given to a repeatable option, in order.
    fn values(&self, name: &str) -> Vec<&str> {
        let given = self.options.iter().filter(|(n, _)| *n == name);
        given.filter_map(|(_, v)| v.as_deref()).collect()
    }

    /// The texts of the `--cache-trust` key files.
    fn trusted_keys(&self) -> Result<Vec<String>, String> {
        self.values("--cache-trust")
            .into_iter()
            .map(read_key)
            .collect()
    }

    fn has(&self, name: &str) -> bool {
        self.options.iter().any(|(n, _)| *n == name)
    }

    fn graph(&self) -> String {
        self.positional[0].clone()
    }

    /// `--cache DIR` or `--no-cache`, whichever came last; default
    /// [`DEFAULT_CACHE`].
    fn cache(&self) -> Option<String> {
        let last = self
            .options
            .iter()
            .rev()
            .find(|(n, _)| *n == "--cache" || *n == "--no-cache");
        match last {
            Some(("--no-cache", _)) => None,
            Some((_, dir)) => dir.clone(),
            None => Some(DEFAULT_CACHE.to_string()),
        }
    }

    fn scheduler(&self) -> Result<Policy, String> {
        self.value("--scheduler")
            .map_or(Ok(Policy::CriticalPath), parse_scheduler)
    }

    fn jobs(&self) -> Result<Option<u32>, String> {
        let Some(v) = self.value("--jobs") else {
            return Ok(None);
        };
        match v.parse::<u32>() {
            Ok(n) if n >= 1 => Ok(Some(n)),
            _ => Err(format!(
                "-j {v:?}: give a whole number of slots, at least 1"
            )),
        }
    }

    fn memory_limit(&self) -> Result<Option<u64>, String> {
        let limit = self.value("--memory-limit").map(super::parse_size);
        limit.transpose().map_err(|e| format!("--memory-limit {e}"))
    }
}

/// Parses a command line (without the program name).
pub fn parse(args: &[String]) -> Result<Request, String> {
    let (name, rest) = args.split_first().ok_or_else(|| USAGE.to_string())?;
    let spec = SUBCOMMANDS
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| format!("unknown command {name:?}\n{USAGE}"))?;
    let given = split(spec, rest)?;
    if given.positional.len() != spec.positional.len() {
        return Err(format!("{name}: wrong number of arguments\n{USAGE}"));
    }
    request(spec, &given)
}

/// Sorts `args` into positional arguments and the options `spec` takes.
fn split(spec: &Spec, args: &[String]) -> Result<Given, String> {
    let mut given = Given {
        positional: Vec::new(),
        options: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let long = match a.as_str() {
            "-j" => "--jobs",
            "-k" => "--keep-going",
            s => s,
        };
        if !long.starts_with('-') || long.len() == 1 {
            given.positional.push(a.clone());
            continue;
        }
        let Some(&name) = spec.options.iter().find(|o| **o == long) else {
            return Err(format!("{}: unknown option {a}\n{USAGE}", spec.name));
        };
        let value = match FLAGS.contains(&name) {
            true => None,
            false => Some(
                it.next()
                    .cloned()
                    .ok_or_else(|| format!("{a} needs a value\n{USAGE}"))?,
            ),
        };
        given.options.push((name, value));
    }
    Ok(given)
}

fn request(spec: &Spec, g: &Given) -> Result<Request, String> {
    Ok(match spec.name {
        "check" => Request::Check { graph: g.graph() },
        "plan" => Request::Plan {
            graph: g.graph(),
            cache: g.cache(),
            trusted_keys: g.trusted_keys()?,
        },
        "simulate" => Request::Simulate {
            graph: g.graph(),
            jobs: g.jobs()?.unwrap_or(DEFAULT_SIMULATE_JOBS),
            durations: g.value("--durations").map(str::to_string),
            policy: g.scheduler()?,
            cache: g.cache(),
            memory_limit: g.memory_limit()?,
        },
        "explain" => Request::Explain {
            graph: g.graph(),
            task: g.positional[1].clone(),
            cache: g.cache(),
            trusted_keys: g.trusted_keys()?,
        },
        _ => Request::Build {
            graph: g.graph(),
            options: build_options(g)?,
        },
    })
}

fn build_options(g: &Given) -> Result<Options, String> {
    let seconds = |name: &str, value: Option<&str>| {
        value
            .map(|v| parse_seconds(v).map_err(|e| format!("{name} {e}")))
            .transpose()
    };
    let remote_timeout = g.value("--remote-cache-timeout");
    let remote_timeout = seconds(
        "--remote-cache-timeout",
        Some(remote_timeout.unwrap_or(DEFAULT_REMOTE_TIMEOUT)),
    )?
    .map_or(u64::MAX, millis);
    let remote = g.value("--remote-cache").map(|url| RemoteSettings {
        url: url.to_string(),
        read_only: g.has("--remote-cache-read-only"),
        timeout_ms: remote_timeout.min(u32::MAX as u64) as u32,
        concurrency: REMOTE_CONCURRENCY,
    });
    Ok(Options {
        max_parallel: g.jobs()?,
        keep_going: g.has("--keep-going"),
        cache_dir: g.cache(),
        policy: g.scheduler()?,
        log_dir: g.value("--logs").map(str::to_string),
        timeout_ms: seconds("--timeout", g.value("--timeout"))?.map(millis),
        remote,
        signing_key: g.value("--cache-signing-key").map(read_key).transpose()?,
        trusted_keys: g.trusted_keys()?,
        no_cutoff: g.has("--no-cutoff"),
        check_reproducible: g.has("--check-reproducible"),
        memory_limit: g.memory_limit()?,
    })
}

/// A key file's text (small: read with the limits of every option file).
fn read_key(path: &str) -> Result<String, String> {
    super::read_text(std::path::Path::new(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_words(line: &str) -> Result<Request, String> {
        let args: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        parse(&args)
    }

    #[test]
    fn builds_take_their_options() {
        let r = parse_words("build g.json -j 3 -k --no-cache --scheduler fifo --timeout 1.5");
        let Ok(Request::Build { graph, options }) = r else {
            panic!("{r:?}")
        };
        assert_eq!(graph, "g.json");
        assert_eq!(options.max_parallel, Some(3));
        assert!(options.keep_going);
        assert_eq!(options.cache_dir, None);
        assert_eq!(options.policy, Policy::Fifo);
        assert_eq!(options.timeout_ms, Some(1500));
    }

    #[test]
    fn options_of_other_subcommands_are_refused() {
        let e = parse_words("check g.json -j 4").unwrap_err();
        assert!(e.starts_with("check: unknown option -j\n"), "{e}");
        let e = parse_words("plan g.json --timeout 3").unwrap_err();
        assert!(e.starts_with("plan: unknown option --timeout\n"), "{e}");
        let e = parse_words("explain g.json a b").unwrap_err();
        assert!(e.starts_with("explain: wrong number of arguments\n"), "{e}");
    }

    #[test]
    fn values_are_checked() {
        assert_eq!(
            parse_words("build g.json --timeout 0").unwrap_err(),
            "--timeout \"0\" is not a positive number of seconds"
        );
        assert_eq!(
            parse_words("simulate g.json -j 0").unwrap_err(),
            "-j \"0\": give a whole number of slots, at least 1"
        );
        assert_eq!(
            parse_words("simulate g.json").unwrap(),
            Request::Simulate {
                graph: "g.json".into(),
                jobs: 8,
                durations: None,
                policy: Policy::CriticalPath,
                cache: Some(DEFAULT_CACHE.into()),
                memory_limit: None,
            }
        );
    }
}
