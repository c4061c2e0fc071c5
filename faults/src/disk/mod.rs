//! Disk faults: a lazy FUSE filesystem that keeps writes in its own memory until they are
//! fsynced, so that a power loss can be simulated, and file corruption.
//!
//! | module | what it is for |
//! |---|---|
//! | [`volume`] | [`Volume`]: the filesystem's rules without FUSE — unsynced data in memory, directory changes durable only after a directory fsync, [`Volume::drop_unsynced`] and [`Volume::tear_last_write`]. |
//! | `fs` | the fuser [`fuser::Filesystem`] serving a shared volume, kernel caching off (zero TTLs, direct I/O). |
//! | [`mount`] | [`LazyMount`]: mount a volume at a directory (pure-Rust mount through `/dev/fuse`, no libfuse), unmount on drop; [`DiskControl`]: the handle faults act through. |
//! | [`corrupt`](mod@corrupt) | [`corrupt()`]: flip bits in or truncate the largest data file of a node that is down. |
//! | [`probe`] | [`fuse_usable`]: can this process mount FUSE here. |
//!
//! # Named inverses
//!
//! | fault | inverse |
//! |---|---|
//! | [`DiskControl::drop_unsynced`] (after killing the node) | restart the node: it recovers from what was durable |
//! | [`DiskControl::tear_last_write`] | the same |
//! | [`corrupt()`] (node down) | restart the node: it must detect the damage |
//! | [`LazyMount::mount`] | [`LazyMount::unmount`] (also on drop) |
//!
//! Mount inside the lab ([`crate::Lab::enter`] gives the harness a private mount namespace),
//! so a killed harness leaves no mount on the host.

pub mod corrupt;
mod fs;
pub mod mount;
pub mod probe;
pub mod volume;

pub use corrupt::{corrupt, corrupt_seeded, CorruptMode, CorruptReport};
pub use mount::{DiskControl, LazyMount};
pub use probe::fuse_usable;
pub use volume::{DropReport, TornWrite, Volume, VolumeStats};
