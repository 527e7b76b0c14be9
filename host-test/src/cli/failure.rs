//! How a subcommand fails: an exit code and a one-line message, from bad
//! input or from a component call.
//!
//! Knows exit codes and the component's error wording; knows nothing of
//! the subcommands.

use std::path::Path;

use runqueue::cli::{error_exit, EXIT_BAD_INPUT, EXIT_INTERNAL};

use crate::{CallError, RunError};

/// Why a command failed: its exit code and message.
pub(super) struct Failure(pub(super) i32, pub(super) String);

pub(super) fn bad_input(msg: impl Into<String>) -> Failure {
    Failure(EXIT_BAD_INPUT, msg.into())
}

/// A component call's nested result, as a value or a [`Failure`]: running
/// out of the memory limit is bad input (an absurd graph); any other trap
/// is runqueue's own failure; an error from the component is worded as
/// [`runqueue::cli::error_exit`] says.
pub(super) fn answer<T>(
    graph: &Path,
    result: Result<Result<T, RunError>, CallError>,
) -> Result<T, Failure> {
    match result {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => {
            let (code, msg) = error_exit(&graph.display().to_string(), &crate::from_wit_error(e));
            Err(Failure(code, msg))
        }
        Err(CallError::OutOfMemory(msg) | CallError::CpuLimit(msg)) => Err(bad_input(msg)),
        Err(CallError::Trap(e)) => Err(Failure(EXIT_INTERNAL, format!("{e:#}"))),
    }
}
