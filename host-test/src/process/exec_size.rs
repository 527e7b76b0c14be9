//! Fitting a command within what Linux's `execve` takes: one argument or
//! environment string of at most 128 KiB (`MAX_ARG_STRLEN`), and all of
//! them together within a quarter of the stack size limit. BitBake's run
//! scripts are 100–300 KB: a shell text that long goes to the shell as a
//! script file, never as one `sh -c` argument, and environment variables
//! too big to pass are set inside that script. What cannot fit otherwise
//! is refused with the limit named.
//!
//! Knows sizes and shell quoting; knows nothing of where the script is
//! written or how the process starts.

/// Linux's cap on one argument or environment string, its NUL included
/// (`MAX_ARG_STRLEN`, 32 pages).
pub const MAX_ARG_STRLEN: usize = 32 * 4096;

/// Shell texts longer than this go to the shell as a file. Well below
/// [`MAX_ARG_STRLEN`], so that a text near it never decides between the
/// two by the environment's size.
pub const INLINE_TEXT_MAX: usize = 64 << 10;

/// What Linux allows arguments and environment together under the default
/// 8 MiB stack limit: the limit assumed for a machine not this one (a
/// remote worker).
pub const DEFAULT_ARG_MAX: usize = 2 << 20;

/// Room kept for what `execve` copies besides argv and envp (the program's
/// path, the auxiliary vector) and for the variables the host adds
/// (`MAKEFLAGS`, the task's name).
const MARGIN: usize = 8 << 10;

/// An argument vector and an environment, as `execve` takes them.
#[derive(Debug, PartialEq)]
pub struct Exec {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// How a command is to be started.
#[derive(Debug, PartialEq)]
pub enum Fit {
    /// As given.
    AsIs,
    /// `sh FILE`, FILE holding `script`, with the environment `env` (the
    /// given one less the variables the script sets itself).
    Script {
        script: String,
        env: Vec<(String, String)>,
    },
}

/// How `program args` with environment `env` can start within `limit`
/// bytes of arguments and environment ([`arg_limit`]); an error naming the
/// limit if it cannot. Only `sh -c TEXT` can be turned into a script.
pub fn fit(
    program: &str,
    args: &[String],
    env: &[(String, String)],
    limit: usize,
) -> Result<Fit, String> {
    match (program, args) {
        ("sh", [c, text]) if c == "-c" => fit_shell(text, env, limit),
        _ => fits_as_is(program, args, env, limit).map(|()| Fit::AsIs),
    }
}

/// Bytes of arguments and environment `execve` takes here: a quarter of
/// the stack size limit, at most 6 MiB and at least 128 KiB, as the kernel
/// computes it (`bprm_stack_limits`).
#[allow(unsafe_code)]
pub fn arg_limit() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given.
    let stack = match unsafe { libc::getrlimit(libc::RLIMIT_STACK, &mut lim) } {
        0 if lim.rlim_cur != libc::RLIM_INFINITY => lim.rlim_cur as usize,
        0 => usize::MAX,
        _ => 8 << 20,
    };
    (stack / 4).clamp(MAX_ARG_STRLEN, 6 << 20)
}

/// What `strings` take of the limit: each with its NUL, and a pointer.
fn size(strings: impl IntoIterator<Item = usize>) -> usize {
    strings.into_iter().map(|n| n + 1 + 8).sum()
}

fn env_len((k, v): &(String, String)) -> usize {
    k.len() + 1 + v.len()
}

fn fits_as_is(
    program: &str,
    args: &[String],
    env: &[(String, String)],
    limit: usize,
) -> Result<(), String> {
    for (i, a) in args.iter().enumerate() {
        if a.len() + 1 > MAX_ARG_STRLEN {
            return Err(too_long(
                &format!("argument {} of {program}", i + 1),
                a.len(),
            ));
        }
    }
    if let Some(kv) = env.iter().find(|kv| env_len(kv) + 1 > MAX_ARG_STRLEN) {
        let what = format!("environment variable {}", kv.0);
        return Err(
            too_long(&what, kv.1.len()) + "; a `run` task can have it set inside its script"
        );
    }
    let all = size(std::iter::once(program.len()).chain(args.iter().map(String::len)))
        + size(env.iter().map(env_len));
    match all + MARGIN > limit {
        true => Err(too_much(all, limit)),
        false => Ok(()),
    }
}

fn too_long(what: &str, n: usize) -> String {
    format!(
        "{what} is {n} bytes: Linux passes at most {} bytes in one (MAX_ARG_STRLEN)",
        MAX_ARG_STRLEN - 1
    )
}

fn too_much(all: usize, limit: usize) -> String {
    format!(
        "arguments and environment take {all} bytes: Linux passes at most {} \
         (a quarter of the stack size limit, `ulimit -s`)",
        limit - MARGIN
    )
}

/// `sh -c TEXT` as is when it fits and TEXT is short; else as a script
/// that sets the variables too big to pass (each too big for one string,
/// then the biggest until the rest fits), not exported: a program the
/// script starts could not be given them either.
fn fit_shell(text: &str, env: &[(String, String)], limit: usize) -> Result<Fit, String> {
    let mut biggest: Vec<usize> = (0..env.len()).collect();
    biggest.sort_by_key(|&i| std::cmp::Reverse(env_len(&env[i])));
    // `sh FILE`, FILE a path of up to 256 bytes.
    let argv = size([2, 256]);
    let mut rest = size(env.iter().map(env_len));
    let mut moved = vec![false; env.len()];
    for i in biggest {
        let kv = &env[i];
        if env_len(kv) < MAX_ARG_STRLEN && rest + argv + MARGIN <= limit {
            break;
        }
        if !is_shell_name(&kv.0) {
            let what = format!("environment variable {:?}", kv.0);
            return Err(
                too_long(&what, kv.1.len()) + ", and it is no shell name to set in a script"
            );
        }
        rest -= size([env_len(kv)]);
        moved[i] = true;
    }
    let inline = size([2, 2, text.len()]);
    let none_moved = !moved.contains(&true);
    if none_moved && text.len() <= INLINE_TEXT_MAX && rest + inline + MARGIN <= limit {
        return Ok(Fit::AsIs);
    }
    let mut script = String::with_capacity(text.len() + 64);
    let mut left = Vec::new();
    for (kv, moved) in env.iter().zip(moved) {
        match moved {
            true => script += &format!("{}={}\n", kv.0, shell_quote(&kv.1)),
            false => left.push(kv.clone()),
        }
    }
    script += text;
    script.push('\n');
    Ok(Fit::Script { script, env: left })
}

/// Whether `name` can be assigned in a POSIX shell.
fn is_shell_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `s` quoted for a POSIX shell: in single quotes, each `'` as `'\''`.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(text: &str) -> Vec<String> {
        vec!["-c".into(), text.into()]
    }

    fn env(pairs: &[(&str, usize)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, n)| (k.to_string(), "v".repeat(*n)))
            .collect()
    }

    #[test]
    fn short_commands_run_as_given() {
        let e = env(&[("PATH", 20), ("A", 100_000)]);
        assert_eq!(fit("sh", &sh("make"), &e, DEFAULT_ARG_MAX), Ok(Fit::AsIs));
        let args = vec!["x".repeat(100_000)];
        assert_eq!(fit("cc", &args, &e, DEFAULT_ARG_MAX), Ok(Fit::AsIs));
    }

    #[test]
    fn a_long_shell_text_becomes_a_script() {
        let text = "echo hi\n".repeat(40_000);
        let e = env(&[("PATH", 20)]);
        let Ok(Fit::Script { script, env: left }) = fit("sh", &sh(&text), &e, DEFAULT_ARG_MAX)
        else {
            panic!("not a script")
        };
        assert_eq!(script, text.clone() + "\n");
        assert_eq!(left, e);
    }

    #[test]
    fn variables_too_big_to_pass_are_set_in_the_script() {
        let mut e = env(&[("PATH", 20), ("BIG", 200_000)]);
        e[1].1 = "it's".to_string() + &"v".repeat(200_000);
        let Ok(Fit::Script { script, env: left }) = fit("sh", &sh("echo"), &e, DEFAULT_ARG_MAX)
        else {
            panic!("not a script")
        };
        assert!(script.starts_with("BIG='it'\\''svvv"), "{}", &script[..20]);
        assert!(script.ends_with("'\necho\n"));
        assert_eq!(left, env(&[("PATH", 20)]));
        // Many medium ones: the biggest move until the rest fits.
        let many: Vec<(String, String)> = (0..30)
            .map(|i| (format!("V{i}"), "v".repeat(100_000 + i)))
            .collect();
        let Ok(Fit::Script { env: left, .. }) = fit("sh", &sh("echo"), &many, DEFAULT_ARG_MAX)
        else {
            panic!("not a script")
        };
        let names: Vec<_> = left.iter().map(|(k, _)| k.as_str()).collect();
        let smallest: Vec<_> = (0..20).map(|i| format!("V{i}")).collect();
        assert_eq!(names, smallest);
    }

    #[test]
    fn what_cannot_fit_is_refused_with_the_limit_named() {
        let big = vec!["x".repeat(200_000)];
        assert_eq!(
            fit("cc", &big, &[], DEFAULT_ARG_MAX).unwrap_err(),
            "argument 1 of cc is 200000 bytes: Linux passes at most 131071 bytes in one (MAX_ARG_STRLEN)"
        );
        let e = env(&[("BIG", 200_000)]);
        let err = fit("cc", &[], &e, DEFAULT_ARG_MAX).unwrap_err();
        assert!(
            err.starts_with("environment variable BIG is 200000 bytes"),
            "{err}"
        );
        let odd = env(&[("A-B", 200_000)]);
        let err = fit("sh", &sh("true"), &odd, DEFAULT_ARG_MAX).unwrap_err();
        assert!(err.ends_with("no shell name to set in a script"), "{err}");
        let many = vec!["x".repeat(100_000); 30];
        let err = fit("cc", &many, &[], DEFAULT_ARG_MAX).unwrap_err();
        assert!(err.contains("Linux passes at most 2088960"), "{err}");
    }

    #[test]
    fn the_limit_follows_the_stack_limit() {
        let l = arg_limit();
        assert!((MAX_ARG_STRLEN..=6 << 20).contains(&l), "{l}");
    }
}
