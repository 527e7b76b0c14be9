//! The `runqueue` command; see [`runqueue_host::cli`].

fn main() {
    // Like other Unix tools, end quietly when the reader of our output goes
    // away (`runqueue check big.json | head`) instead of panicking.
    #[allow(unsafe_code)]
    // SAFETY: restoring the default disposition of one signal before any
    // thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    std::process::exit(runqueue_host::cli::main_with(std::env::args_os()));
}
