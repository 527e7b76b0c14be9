//! The `process` interface with real OS processes, confined to a workspace.
//!
//! Knows how to start, wait for and kill processes, and which paths are
//! inside the workspace. Knows nothing of tasks, graphs or scheduling.

mod activity;
mod child;
mod groups;
mod interrupt;
mod logs;
mod program;
mod stamps;
pub mod strays;
mod workspace;

pub use activity::Activity;
pub(crate) use child::Children;
pub use child::{spawn, ChildProcess, KILL_GRACE};
pub use groups::{run_watchdog, LiveGroups};
pub use interrupt::Interrupt;
pub use logs::LogFiles;
pub use program::Programs;
pub use workspace::{Dir, Entry, Workspace};
