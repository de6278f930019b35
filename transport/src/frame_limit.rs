//! [`check_frame_sizes`]: the sender-side frame limit check every transport needs.

use bytes::Bytes;

use crate::{Error, Result};

/// Checks that no frame of a batch is larger than `max_frame_bytes`, so a transport can
/// refuse the whole batch before queueing any of it.
///
/// # Errors
///
/// [`Error::FrameTooLarge`] naming the first oversized frame.
pub fn check_frame_sizes(frames: &[Bytes], max_frame_bytes: usize) -> Result<()> {
    match frames
        .iter()
        .map(Bytes::len)
        .find(|&len| len > max_frame_bytes)
    {
        Some(size_bytes) => Err(Error::FrameTooLarge {
            size_bytes,
            max_bytes: max_frame_bytes,
        }),
        None => Ok(()),
    }
}
