//! The staged snapshot format: key-value records in a stream of checksummed frames.
//!
//! ```text
//! stream = MAGIC (8 bytes) frame*
//! frame  = payload_len: u32 LE | crc32(payload_len bytes ++ payload): u32 LE | payload
//! record = cf_len: u8 | cf | key_len: u32 LE | key | value_len: u32 LE | value
//! ```
//!
//! Records lie end to end across frame payloads (a record may span frames), so every
//! frame but the last carries exactly the writer's `chunk_bytes` and a large value never
//! makes a large frame. The checksum covers the length too: a flipped bit anywhere in a
//! frame is caught before its payload is used. The descriptor (`SnapshotMeta`) carries the
//! stream's size, CRC32, frame count and record count; [`StreamDecoder::finish`] checks a
//! stream against all four, so a truncated, extended, reordered or duplicated stream is
//! refused even when each frame is intact.
//!
//! Memory: a writer holds one frame plus one record; a decoder holds one frame (at most
//! the descriptor's `chunk_bytes`, itself at most 64 MiB) plus one record.

use std::io::{self, Write};

use super::SnapshotError;
use crate::keys::SnapRange;
use crate::pb::raft_serverpb::SnapshotMeta;

/// The first bytes of every stream (format version 1).
pub const MAGIC: &[u8; 8] = b"RKVSNAP1";
/// Length and checksum, before each payload.
pub const FRAME_HEADER_BYTES: usize = 8;
/// The largest record (key and value) a stream may carry: the memory a decoder commits to
/// one record.
pub const MAX_RECORD_BYTES: usize = 256 << 20;

/// One key-value pair of a column family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// The column family.
    pub cf: &'a str,
    /// The engine key.
    pub key: &'a [u8],
    /// The value.
    pub value: &'a [u8],
}

/// The totals of a stream, which its descriptor must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamSummary {
    /// Bytes in the stream, magic and frame headers included.
    pub size_bytes: u64,
    /// CRC32 of every byte of the stream.
    pub checksum: u32,
    /// Frames in the stream.
    pub frame_count: u64,
    /// Records in the stream.
    pub key_count: u64,
}

impl StreamSummary {
    /// Checks these totals against a descriptor's.
    ///
    /// # Errors
    /// [`SnapshotError::Mismatch`] naming the first total that differs.
    pub fn check_against(&self, meta: &SnapshotMeta) -> Result<(), SnapshotError> {
        let pairs = [
            ("size", self.size_bytes, meta.size_bytes),
            (
                "checksum",
                u64::from(self.checksum),
                u64::from(meta.checksum),
            ),
            ("frame count", self.frame_count, meta.frame_count),
            ("key count", self.key_count, meta.key_count),
        ];
        for (what, got, declared) in pairs {
            if got != declared {
                return Err(SnapshotError::Mismatch(format!(
                    "{what} {got}, declared {declared}"
                )));
            }
        }
        Ok(())
    }
}

/// Running totals over the bytes of a stream.
#[derive(Default)]
struct Totals {
    hasher: crc32fast::Hasher,
    size_bytes: u64,
    frame_count: u64,
}

impl Totals {
    fn add(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.size_bytes += bytes.len() as u64;
    }

    fn summary(self, key_count: u64) -> StreamSummary {
        StreamSummary {
            size_bytes: self.size_bytes,
            checksum: self.hasher.finalize(),
            frame_count: self.frame_count,
            key_count,
        }
    }
}

fn frame_crc(len: [u8; 4], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&len);
    h.update(payload);
    h.finalize()
}

/// Writes records as a stream of frames of `chunk_bytes` payload.
pub struct ChunkWriter<W: Write> {
    out: W,
    chunk_bytes: usize,
    /// Record bytes not yet framed; fewer than `chunk_bytes` between calls.
    pending: Vec<u8>,
    totals: Totals,
    key_count: u64,
}

impl<W: Write> std::fmt::Debug for ChunkWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkWriter")
            .field("chunk_bytes", &self.chunk_bytes)
            .field("key_count", &self.key_count)
            .finish_non_exhaustive()
    }
}

impl<W: Write> ChunkWriter<W> {
    /// Starts a stream on `out` (writes the magic) with frames of `chunk_bytes` payload.
    ///
    /// # Errors
    /// A write failure.
    pub fn new(mut out: W, chunk_bytes: usize) -> io::Result<Self> {
        out.write_all(MAGIC)?;
        let mut totals = Totals::default();
        totals.add(MAGIC);
        Ok(Self {
            out,
            chunk_bytes: chunk_bytes.max(1),
            pending: Vec::with_capacity(chunk_bytes.max(1)),
            totals,
            key_count: 0,
        })
    }

    /// Appends one record.
    ///
    /// # Errors
    /// [`SnapshotError::BadRecord`] for a column family name over 255 bytes or a record
    /// over [`MAX_RECORD_BYTES`]; a write failure.
    pub fn put(&mut self, cf: &str, key: &[u8], value: &[u8]) -> Result<(), SnapshotError> {
        let cf_len = u8::try_from(cf.len())
            .map_err(|_| SnapshotError::BadRecord(format!("column family name {cf:?}")))?;
        if key.len() > engines::MAX_KEY_BYTES || key.len() + value.len() > MAX_RECORD_BYTES {
            return Err(SnapshotError::BadRecord(format!(
                "record of {} + {} bytes",
                key.len(),
                value.len()
            )));
        }
        self.pending.push(cf_len);
        self.pending.extend_from_slice(cf.as_bytes());
        // Both lengths fit: checked against MAX_KEY_BYTES and MAX_RECORD_BYTES above.
        self.pending
            .extend_from_slice(&(key.len() as u32).to_le_bytes());
        self.pending.extend_from_slice(key);
        self.pending
            .extend_from_slice(&(value.len() as u32).to_le_bytes());
        self.pending.extend_from_slice(value);
        self.key_count += 1;
        let full = self.pending.len() / self.chunk_bytes * self.chunk_bytes;
        if full > 0 {
            for payload in self.pending[..full].chunks(self.chunk_bytes) {
                write_frame(&mut self.out, &mut self.totals, payload)?;
            }
            self.pending.drain(..full);
        }
        Ok(())
    }

    /// Frames what is left, flushes, and returns the output and the stream's totals.
    ///
    /// # Errors
    /// A write failure.
    pub fn finish(mut self) -> io::Result<(W, StreamSummary)> {
        if !self.pending.is_empty() {
            write_frame(&mut self.out, &mut self.totals, &self.pending)?;
        }
        self.out.flush()?;
        Ok((self.out, self.totals.summary(self.key_count)))
    }
}

fn write_frame<W: Write>(out: &mut W, totals: &mut Totals, payload: &[u8]) -> io::Result<()> {
    // A payload is at most `chunk_bytes` (≤ 64 MiB) or the last remainder: it fits a u32.
    let len = (payload.len() as u32).to_le_bytes();
    let mut header = [0u8; FRAME_HEADER_BYTES];
    header[..4].copy_from_slice(&len);
    header[4..].copy_from_slice(&frame_crc(len, payload).to_le_bytes());
    out.write_all(&header)?;
    out.write_all(payload)?;
    totals.add(&header);
    totals.add(payload);
    totals.frame_count += 1;
    Ok(())
}

/// Verifies a stream fed to it in pieces of any size (transport chunks, file reads) and
/// hands out its records, each only after the frames holding it were verified.
pub struct StreamDecoder {
    max_payload: u64,
    max_size: u64,
    magic_seen: usize,
    /// The current frame, header first; shorter than its header plus payload.
    frame: Vec<u8>,
    /// Verified payload bytes that do not yet form a whole record.
    records: Vec<u8>,
    totals: Totals,
    key_count: u64,
}

impl std::fmt::Debug for StreamDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamDecoder")
            .field("size_bytes", &self.totals.size_bytes)
            .field("key_count", &self.key_count)
            .finish_non_exhaustive()
    }
}

impl StreamDecoder {
    /// A decoder for the stream `meta` describes: frames larger than its `chunk_bytes` and
    /// bytes past its `size_bytes` are refused as they arrive.
    #[must_use]
    pub fn new(meta: &SnapshotMeta) -> Self {
        Self {
            max_payload: meta.chunk_bytes,
            max_size: meta.size_bytes,
            magic_seen: 0,
            frame: Vec::new(),
            records: Vec::new(),
            totals: Totals::default(),
            key_count: 0,
        }
    }

    /// Bytes fed so far.
    #[must_use]
    pub fn size_bytes(&self) -> u64 {
        self.totals.size_bytes
    }

    /// Feeds the next bytes of the stream; calls `on_record` for each record completed
    /// by a verified frame.
    ///
    /// # Errors
    /// The first violation of the format, or an error from `on_record`; the stream must
    /// then be dropped.
    pub fn push<E: From<SnapshotError>>(
        &mut self,
        mut bytes: &[u8],
        on_record: &mut dyn FnMut(Record<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let size = self.totals.size_bytes + bytes.len() as u64;
        if size > self.max_size {
            return Err(SnapshotError::TooLarge {
                size_bytes: size,
                max_bytes: self.max_size,
            }
            .into());
        }
        self.totals.add(bytes);
        while self.magic_seen < MAGIC.len() {
            let Some((&b, rest)) = bytes.split_first() else {
                return Ok(());
            };
            if b != MAGIC[self.magic_seen] {
                return Err(SnapshotError::BadMagic.into());
            }
            self.magic_seen += 1;
            bytes = rest;
        }
        while !bytes.is_empty() {
            let want = if self.frame.len() < FRAME_HEADER_BYTES {
                FRAME_HEADER_BYTES
            } else {
                FRAME_HEADER_BYTES + self.payload_len()?
            };
            let take = (want - self.frame.len()).min(bytes.len());
            self.frame.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.frame.len() == FRAME_HEADER_BYTES {
                // Check the length as soon as it is known, before buffering the payload.
                self.payload_len()?;
            }
            if self.frame.len() >= FRAME_HEADER_BYTES
                && self.frame.len() == FRAME_HEADER_BYTES + self.payload_len()?
            {
                self.end_frame(on_record)?;
            }
        }
        Ok(())
    }

    /// The payload length in the current frame's header (which must be complete).
    fn payload_len(&self) -> Result<usize, SnapshotError> {
        let len = u32::from_le_bytes([self.frame[0], self.frame[1], self.frame[2], self.frame[3]]);
        if u64::from(len) > self.max_payload {
            return Err(SnapshotError::FrameTooLarge {
                frame: self.totals.frame_count,
                len: u64::from(len),
                max: self.max_payload,
            });
        }
        Ok(len as usize)
    }

    fn end_frame<E: From<SnapshotError>>(
        &mut self,
        on_record: &mut dyn FnMut(Record<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let len = [self.frame[0], self.frame[1], self.frame[2], self.frame[3]];
        let crc = u32::from_le_bytes([self.frame[4], self.frame[5], self.frame[6], self.frame[7]]);
        let payload = &self.frame[FRAME_HEADER_BYTES..];
        if frame_crc(len, payload) != crc {
            return Err(SnapshotError::FrameChecksum {
                frame: self.totals.frame_count,
            }
            .into());
        }
        self.records.extend_from_slice(payload);
        self.frame.clear();
        self.totals.frame_count += 1;
        let mut at = 0;
        while let Some((record, next)) = parse_record(&self.records[at..])? {
            on_record(record)?;
            self.key_count += 1;
            at += next;
        }
        self.records.drain(..at);
        Ok(())
    }

    /// Ends the stream and returns its totals.
    ///
    /// # Errors
    /// [`SnapshotError::Truncated`] when the stream stopped inside the magic, a frame or
    /// a record.
    pub fn finish(self) -> Result<StreamSummary, SnapshotError> {
        if self.magic_seen < MAGIC.len() || !self.frame.is_empty() || !self.records.is_empty() {
            return Err(SnapshotError::Truncated {
                size_bytes: self.totals.size_bytes,
            });
        }
        Ok(self.totals.summary(self.key_count))
    }
}

/// The first whole record of `bytes` and the bytes it takes, or `None` if `bytes` holds
/// only part of one.
fn parse_record(bytes: &[u8]) -> Result<Option<(Record<'_>, usize)>, SnapshotError> {
    let bad = |m: &str| SnapshotError::BadRecord(m.to_owned());
    let Some((&cf_len, rest)) = bytes.split_first() else {
        return Ok(None);
    };
    let cf_len = usize::from(cf_len);
    let Some((cf, rest)) = rest.split_at_checked(cf_len) else {
        return Ok(None);
    };
    let cf = std::str::from_utf8(cf).map_err(|_| bad("column family is not UTF-8"))?;
    let Some((key_len, rest)) = split_len(rest) else {
        return Ok(None);
    };
    if key_len > engines::MAX_KEY_BYTES {
        return Err(bad("key too long"));
    }
    let Some((key, rest)) = rest.split_at_checked(key_len) else {
        return Ok(None);
    };
    let Some((value_len, rest)) = split_len(rest) else {
        return Ok(None);
    };
    if key_len + value_len > MAX_RECORD_BYTES {
        return Err(bad("record too large"));
    }
    let Some(value) = rest.get(..value_len) else {
        return Ok(None);
    };
    let used = 1 + cf_len + 4 + key_len + 4 + value_len;
    Ok(Some((Record { cf, key, value }, used)))
}

fn split_len(bytes: &[u8]) -> Option<(usize, &[u8])> {
    let (len, rest) = bytes.split_at_checked(4)?;
    let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]);
    Some((len as usize, rest))
}

/// Checks that records lie in a region's ranges, range after range, keys ascending
/// within each: the order generation writes them in.
#[derive(Debug)]
pub struct RecordOrder {
    ranges: Vec<SnapRange>,
    current: usize,
    last_key: Option<Vec<u8>>,
}

impl RecordOrder {
    /// A check against `ranges` (from [`crate::keys::region_snapshot_ranges`]).
    #[must_use]
    pub fn new(ranges: Vec<SnapRange>) -> Self {
        Self {
            ranges,
            current: 0,
            last_key: None,
        }
    }

    /// Checks the next record.
    ///
    /// # Errors
    /// [`SnapshotError::BadRecord`] for a record outside the ranges or out of order.
    pub fn check(&mut self, record: &Record<'_>) -> Result<(), SnapshotError> {
        let found = (self.current..self.ranges.len())
            .find(|&i| self.ranges[i].contains(record.cf, record.key));
        let Some(i) = found else {
            return Err(SnapshotError::BadRecord(format!(
                "key {:?} of {} outside the region's ranges",
                record.key, record.cf
            )));
        };
        if i == self.current && self.last_key.as_deref().is_some_and(|k| record.key <= k) {
            return Err(SnapshotError::BadRecord(format!(
                "key {:?} of {} out of order",
                record.key, record.cf
            )));
        }
        self.current = i;
        let last = self.last_key.get_or_insert_with(Vec::new);
        last.clear();
        last.extend_from_slice(record.key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::CF_DEFAULT;

    type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

    fn records(n: usize) -> Pairs {
        (0..n)
            .map(|i| (format!("z{i:05}").into_bytes(), vec![i as u8; i % 40]))
            .collect()
    }

    fn write(chunk_bytes: usize, recs: &[(Vec<u8>, Vec<u8>)]) -> (Vec<u8>, SnapshotMeta) {
        let mut w = ChunkWriter::new(Vec::new(), chunk_bytes).unwrap();
        for (k, v) in recs {
            w.put(CF_DEFAULT, k, v).unwrap();
        }
        let (bytes, s) = w.finish().unwrap();
        let meta = SnapshotMeta {
            size_bytes: s.size_bytes,
            checksum: s.checksum,
            frame_count: s.frame_count,
            key_count: s.key_count,
            chunk_bytes: chunk_bytes as u64,
            ..Default::default()
        };
        (bytes, meta)
    }

    /// Feeds `bytes` in pieces of `piece` bytes; returns the records or the first error.
    fn read(bytes: &[u8], meta: &SnapshotMeta, piece: usize) -> Result<Pairs, SnapshotError> {
        let mut d = StreamDecoder::new(meta);
        let mut out = Vec::new();
        let mut order = RecordOrder::new(vec![SnapRange {
            cf: CF_DEFAULT,
            start: b"z".to_vec(),
            end: b"{".to_vec(),
        }]);
        for p in bytes.chunks(piece) {
            d.push(p, &mut |r| {
                order.check(&r)?;
                out.push((r.key.to_vec(), r.value.to_vec()));
                Ok::<(), SnapshotError>(())
            })?;
        }
        d.finish()?.check_against(meta)?;
        Ok(out)
    }

    #[test]
    fn records_round_trip_across_frames_and_any_read_size() {
        let recs = records(300);
        for chunk_bytes in [7, 64, 1 << 20] {
            let (bytes, meta) = write(chunk_bytes, &recs);
            if chunk_bytes == 7 {
                assert!(meta.frame_count > 300, "records span frames");
            }
            for piece in [1, 3, 500, bytes.len()] {
                assert_eq!(read(&bytes, &meta, piece).unwrap(), recs);
            }
        }
    }

    #[test]
    fn every_flipped_bit_is_caught() {
        let (bytes, meta) = write(32, &records(20));
        for at in 0..bytes.len() {
            for bit in [0x01, 0x80] {
                let mut bad = bytes.clone();
                bad[at] ^= bit;
                assert!(read(&bad, &meta, 13).is_err(), "flip {bit:#x} at {at}");
            }
        }
    }

    #[test]
    fn truncated_streams_are_caught() {
        let (bytes, meta) = write(32, &records(20));
        for len in 0..bytes.len() {
            let err = read(&bytes[..len], &meta, 64).unwrap_err();
            assert!(
                matches!(
                    err,
                    SnapshotError::Truncated { .. } | SnapshotError::Mismatch(_)
                ),
                "{len}: {err}"
            );
        }
    }

    #[test]
    fn oversized_streams_and_frames_are_refused() {
        let (bytes, meta) = write(32, &records(20));
        let mut longer = bytes.clone();
        longer.extend_from_slice(&bytes[MAGIC.len()..MAGIC.len() + 40]);
        assert!(matches!(
            read(&longer, &meta, 64),
            Err(SnapshotError::TooLarge { .. })
        ));
        // A frame larger than the descriptor allows is refused from its header, before
        // its payload is buffered.
        let small = SnapshotMeta {
            chunk_bytes: 16,
            ..meta.clone()
        };
        let mut d = StreamDecoder::new(&small);
        let err = d
            .push(&bytes[..MAGIC.len() + FRAME_HEADER_BYTES], &mut |_| {
                Ok::<(), SnapshotError>(())
            })
            .unwrap_err();
        assert!(matches!(err, SnapshotError::FrameTooLarge { len: 32, .. }));
    }

    #[test]
    fn swapped_frames_fail_the_stream_checksum() {
        // Two frames of the same length, swapped: each verifies alone, the totals do not.
        let (bytes, meta) = write(
            16,
            &[(b"za".to_vec(), vec![1; 7]), (b"zb".to_vec(), vec![2; 7])],
        );
        let frame = FRAME_HEADER_BYTES + 16;
        let mut swapped = bytes[..MAGIC.len()].to_vec();
        swapped.extend_from_slice(&bytes[MAGIC.len() + frame..MAGIC.len() + 2 * frame]);
        swapped.extend_from_slice(&bytes[MAGIC.len()..MAGIC.len() + frame]);
        swapped.extend_from_slice(&bytes[MAGIC.len() + 2 * frame..]);
        assert_eq!(swapped.len(), bytes.len());
        assert!(read(&swapped, &meta, 64).is_err());
    }

    #[test]
    fn records_outside_the_ranges_or_out_of_order_are_refused() {
        let mut order = RecordOrder::new(vec![SnapRange {
            cf: CF_DEFAULT,
            start: b"zb".to_vec(),
            end: b"zd".to_vec(),
        }]);
        let rec = |key: &'static [u8]| Record {
            cf: CF_DEFAULT,
            key,
            value: b"",
        };
        assert!(order.check(&rec(b"za")).is_err());
        order.check(&rec(b"zb")).unwrap();
        order.check(&rec(b"zc")).unwrap();
        assert!(order.check(&rec(b"zc")).is_err(), "duplicate");
        assert!(order.check(&rec(b"zd")).is_err(), "end is exclusive");
        let other_cf = Record {
            cf: "meta",
            key: b"zc",
            value: b"",
        };
        assert!(order.check(&other_cf).is_err());
    }
}
