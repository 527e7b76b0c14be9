//! The `runqueue` command; see [`runqueue_host::cli`].

fn main() {
    std::process::exit(runqueue_host::cli::main_with(std::env::args_os()));
}
