//! The `process` interface with real OS processes, confined to a workspace.
//!
//! Knows how to start, wait for and kill processes, and which paths are
//! inside the workspace. Knows nothing of tasks, graphs or scheduling.

mod activity;
mod child;
pub mod exec_size;
pub(crate) mod groups;
mod interrupt;
mod jobserver;
mod logs;
pub mod machine;
pub mod netns;
mod program;
pub mod shared_slots;
mod stamps;
pub mod strays;
mod workspace;

pub use activity::Activity;
pub use child::{spawn, ChildProcess, Surroundings, KILL_GRACE};
/// The most slots a task may take, and runqueue's limit under a make
/// jobserver (whose slots are the limit then).
pub const MAX_SLOTS: u32 = 4096;

pub use groups::{run_watchdog, LiveGroups};
pub use interrupt::Interrupt;
pub use jobserver::{parse_auth, Auth, Jobserver, JobserverMode, SlotsFreed};
pub use logs::LogFiles;
pub use netns::Isolation;
pub use program::Programs;
pub use shared_slots::{Share, SharedSlots};
pub use workspace::{Dir, Entry, Workspace};
