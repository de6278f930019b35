//! The log backend: every write batch appended to a segment file, only an index of keys in
//! memory. Always built (Unix only: values are read with positioned reads).
//!
//! Made for the raft log, the way TiKV's raft-engine is: data that is written once, read
//! back soon if at all, and deleted from the front. An LSM tree puts every entry through a
//! memtable, a journal and later compactions; here a write batch is one checksummed record
//! appended to the active segment, and a value is read from the file where that record put
//! it.
//!
//! - **Format**: a directory of segment files `<id>.rlog`, each a sequence of records
//!   `length | crc32 | kind | body`. A batch record holds the batch's operations in order
//!   (put, delete, delete range); a catalog record names the column families, and every
//!   segment starts with one. See `format.rs`.
//! - **Atomicity**: a batch is one record; replay applies a record whole or, if its
//!   checksum fails, not at all.
//! - **Durability**: an unsynced write is in the OS's page cache (it survives a process
//!   crash); a synced write and [`Engine::sync`](crate::Engine::sync) `fdatasync` the active
//!   segment. A segment is synced before the next one starts, so only the active segment is
//!   ever unsynced.
//! - **Recovery**: [`LogEngine::open`] replays every segment, oldest first, into the index.
//!   A damaged record in the newest segment is a torn append: the segment is cut before it
//!   (every synced record precedes it). A damaged record in an older segment is
//!   [`Error::Corruption`](crate::Error::Corruption).
//! - **Prefill**: a thread writes zeros a few MiB ahead of the appends, so that a synced
//!   append lands on allocated blocks and its `fdatasync` has no allocation to commit.
//!   See `prefill.rs`.
//! - **Memory**: the index holds each live key and where its value lies (16 bytes), not the
//!   value: a million 300-byte raft entries cost tens of MiB, not hundreds.
//! - **Space**: segments roll over at [`LogOptions::segment_bytes`]. The oldest segment is
//!   deleted once none of its values are live, or once most are dead (the live ones are
//!   appended anew first), or once the log holds more than four times its live data.
//!   Deleting only the oldest keeps replay right: a deletion recorded in a deleted segment
//!   only hid values of segments deleted before it.
//! - **Snapshots and scans**: the index maps are shared copy-on-write; a snapshot holds the
//!   maps of its moment and handles on the segment files, so it outlives the engine and a
//!   deleted segment.
//! - **Poisoning**: after a failed fsync, or a failed append that could not be cut back,
//!   every write and sync returns [`Error::Poisoned`](crate::Error::Poisoned) until reopen.
//! - **Locking**: a `LOCK` file keeps a second process (or a second open) out of the
//!   directory.

mod engine;
mod format;
mod index;
mod prefill;
mod snapshot;
mod write_batch;

pub use engine::{LogEngine, LogOptions};
pub use snapshot::LogSnapshot;
pub use write_batch::LogWriteBatch;

#[cfg(test)]
mod tests;
