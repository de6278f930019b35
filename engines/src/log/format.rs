//! The on-disk format of the log backend: records, operations and varints.
//!
//! A segment file is a sequence of records:
//!
//! ```text
//! record  = length: u32 LE | crc: u32 LE | kind: u8 | body
//!           (length counts kind + body; crc is the CRC-32 (IEEE) of kind + body)
//! catalog = count: varint | count × (name length: varint | name bytes)
//! batch   = operations until the end of the body
//! op      = 1 | cf: varint | key length: varint | key | value length: varint | value   (put)
//!         | 2 | cf: varint | key length: varint | key                                   (delete)
//!         | 3 | cf: varint | start bound | end bound                                    (delete range)
//! bound   = 0 (unbounded) | 1 | length: varint | key (included) | 2 | length: varint | key (excluded)
//! ```
//!
//! `cf` is a position in the catalog, the list of every column family name the directory
//! has ever held. Every segment starts with a catalog record, so a segment read alone can
//! name its column families, and a catalog record is appended when an open adds names.

use std::ops::Bound;

use crate::key_range::BorrowedRange;
use crate::{Error, Result};

/// Bytes of a record's header: the length and the checksum.
pub(super) const HEADER_BYTES: usize = 8;

/// The kind byte of a catalog record.
pub(super) const KIND_CATALOG: u8 = 1;
/// The kind byte of a write batch record.
pub(super) const KIND_BATCH: u8 = 2;

const OP_PUT: u8 = 1;
const OP_DELETE: u8 = 2;
const OP_DELETE_RANGE: u8 = 3;

const BOUND_UNBOUNDED: u8 = 0;
const BOUND_INCLUDED: u8 = 1;
const BOUND_EXCLUDED: u8 = 2;

/// The header of a record whose kind and body are `kind_and_body_len` bytes with checksum
/// `crc`.
pub(super) fn header(kind_and_body_len: u32, crc: u32) -> [u8; HEADER_BYTES] {
    let mut header = [0; HEADER_BYTES];
    header[..4].copy_from_slice(&kind_and_body_len.to_le_bytes());
    header[4..].copy_from_slice(&crc.to_le_bytes());
    header
}

/// Splits a header into the length of kind + body and the checksum.
pub(super) fn parse_header(header: [u8; HEADER_BYTES]) -> (u32, u32) {
    let [a, b, c, d, e, f, g, h] = header;
    (
        u32::from_le_bytes([a, b, c, d]),
        u32::from_le_bytes([e, f, g, h]),
    )
}

/// The checksum of a record's kind and body.
pub(super) fn checksum(kind: u8, body: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&[kind]);
    hasher.update(body);
    hasher.finalize()
}

/// Appends `value` as a LEB128 varint.
pub(super) fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Appends a put of `key` → `value` in catalog column family `cf`.
pub(super) fn put_op(out: &mut Vec<u8>, cf: u32, key: &[u8], value: &[u8]) {
    out.reserve(1 + 5 + 10 + key.len() + 10 + value.len());
    out.push(OP_PUT);
    put_varint(out, u64::from(cf));
    put_bytes(out, key);
    put_bytes(out, value);
}

/// Appends a delete of `key` in catalog column family `cf`.
pub(super) fn delete_op(out: &mut Vec<u8>, cf: u32, key: &[u8]) {
    out.push(OP_DELETE);
    put_varint(out, u64::from(cf));
    put_bytes(out, key);
}

/// Appends a delete of the (normalized, non-empty) `range` in catalog column family `cf`.
pub(super) fn delete_range_op(out: &mut Vec<u8>, cf: u32, range: BorrowedRange<'_>) {
    out.push(OP_DELETE_RANGE);
    put_varint(out, u64::from(cf));
    for bound in [range.0, range.1] {
        match bound {
            Bound::Unbounded => out.push(BOUND_UNBOUNDED),
            Bound::Included(key) => {
                out.push(BOUND_INCLUDED);
                put_bytes(out, key);
            }
            Bound::Excluded(key) => {
                out.push(BOUND_EXCLUDED);
                put_bytes(out, key);
            }
        }
    }
}

/// Encodes a catalog body.
pub(super) fn catalog(names: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    put_varint(&mut out, names.len() as u64);
    for name in names {
        put_bytes(&mut out, name.as_bytes());
    }
    out
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// One decoded operation of a batch body. Keys borrow from the body; a put's value is
/// given by its position in the body.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Op<'a> {
    /// Put the value at `body[value_at..value_at + value_len]`.
    Put {
        cf: u32,
        key: &'a [u8],
        value_at: usize,
        value_len: usize,
    },
    Delete {
        cf: u32,
        key: &'a [u8],
    },
    DeleteRange {
        cf: u32,
        range: BorrowedRange<'a>,
    },
}

/// Decodes the operations of a batch body in order.
pub(super) struct Ops<'a> {
    body: &'a [u8],
    at: usize,
}

impl<'a> Ops<'a> {
    pub(super) fn new(body: &'a [u8]) -> Self {
        Self { body, at: 0 }
    }

    fn byte(&mut self) -> Result<u8> {
        let byte = *self.body.get(self.at).ok_or_else(truncated)?;
        self.at += 1;
        Ok(byte)
    }

    fn varint(&mut self) -> Result<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Error::Corruption(
            "log record: varint longer than 64 bits".into(),
        ))
    }

    fn cf(&mut self) -> Result<u32> {
        u32::try_from(self.varint()?)
            .map_err(|_| Error::Corruption("log record: column family id out of range".into()))
    }

    /// The position and length of a length-prefixed byte string.
    fn span(&mut self) -> Result<(usize, usize)> {
        let len = usize::try_from(self.varint()?).map_err(|_| truncated())?;
        let at = self.at;
        let end = at.checked_add(len).filter(|end| *end <= self.body.len());
        self.at = end.ok_or_else(truncated)?;
        Ok((at, len))
    }

    fn bytes(&mut self) -> Result<&'a [u8]> {
        let (at, len) = self.span()?;
        Ok(&self.body[at..at + len])
    }

    fn bound(&mut self) -> Result<Bound<&'a [u8]>> {
        match self.byte()? {
            BOUND_UNBOUNDED => Ok(Bound::Unbounded),
            BOUND_INCLUDED => Ok(Bound::Included(self.bytes()?)),
            BOUND_EXCLUDED => Ok(Bound::Excluded(self.bytes()?)),
            other => Err(Error::Corruption(format!(
                "log record: unknown range bound kind {other}"
            ))),
        }
    }

    fn op(&mut self) -> Result<Op<'a>> {
        match self.byte()? {
            OP_PUT => {
                let cf = self.cf()?;
                let key = self.bytes()?;
                let (value_at, value_len) = self.span()?;
                Ok(Op::Put {
                    cf,
                    key,
                    value_at,
                    value_len,
                })
            }
            OP_DELETE => Ok(Op::Delete {
                cf: self.cf()?,
                key: self.bytes()?,
            }),
            OP_DELETE_RANGE => Ok(Op::DeleteRange {
                cf: self.cf()?,
                range: (self.bound()?, self.bound()?),
            }),
            other => Err(Error::Corruption(format!(
                "log record: unknown operation {other}"
            ))),
        }
    }
}

impl<'a> Iterator for Ops<'a> {
    type Item = Result<Op<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.at == self.body.len() {
            return None;
        }
        let op = self.op();
        if op.is_err() {
            // Stop after the first error: the rest of the body cannot be framed.
            self.at = self.body.len();
        }
        Some(op)
    }
}

/// Decodes a catalog body.
pub(super) fn parse_catalog(body: &[u8]) -> Result<Vec<String>> {
    let mut ops = Ops::new(body);
    let count = ops.varint()?;
    let mut names = Vec::new();
    for _ in 0..count {
        let name = ops.bytes()?;
        let name = std::str::from_utf8(name)
            .map_err(|_| Error::Corruption("log catalog: a name is not UTF-8".into()))?;
        names.push(name.to_owned());
    }
    if ops.at != body.len() {
        return Err(Error::Corruption("log catalog: trailing bytes".into()));
    }
    Ok(names)
}

fn truncated() -> Error {
    Error::Corruption("log record: operation runs past the end of its record".into())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn operations_round_trip_in_order() {
        let mut body = Vec::new();
        put_op(&mut body, 0, b"k", b"value");
        delete_op(&mut body, 300, b"gone");
        delete_range_op(
            &mut body,
            1,
            (Bound::Included(&b"a"[..]), Bound::Excluded(&b"b"[..])),
        );
        delete_range_op(&mut body, 2, (Bound::Unbounded, Bound::Unbounded));
        put_op(&mut body, 0, b"empty", b"");
        let ops: Vec<Op<'_>> = Ops::new(&body).collect::<Result<_>>().unwrap();
        let Op::Put {
            value_at,
            value_len,
            ..
        } = ops[0]
        else {
            panic!("first op is a put: {:?}", ops[0]);
        };
        assert_eq!(&body[value_at..value_at + value_len], b"value");
        assert_eq!(
            ops[1],
            Op::Delete {
                cf: 300,
                key: b"gone"
            }
        );
        assert_eq!(
            ops[2],
            Op::DeleteRange {
                cf: 1,
                range: (Bound::Included(&b"a"[..]), Bound::Excluded(&b"b"[..]))
            }
        );
        assert_eq!(
            ops[3],
            Op::DeleteRange {
                cf: 2,
                range: (Bound::Unbounded, Bound::Unbounded)
            }
        );
        assert!(matches!(ops[4], Op::Put { value_len: 0, .. }));
    }

    #[test]
    fn every_truncation_of_a_body_is_refused_not_misread() {
        let mut body = Vec::new();
        put_op(&mut body, 7, b"key", &[9; 200]);
        let boundary = body.len();
        delete_range_op(
            &mut body,
            1,
            (Bound::Excluded(&b"a"[..]), Bound::Included(&b"z"[..])),
        );
        // A cut between two operations leaves a valid, shorter body; the record checksum,
        // not the body, catches that one.
        for cut in (1..body.len()).filter(|cut| *cut != boundary) {
            let result: Result<Vec<Op<'_>>> = Ops::new(&body[..cut]).collect();
            assert!(
                matches!(result, Err(Error::Corruption(_))),
                "cut at {cut}: {result:?}"
            );
        }
    }

    #[test]
    fn catalogs_round_trip_and_varints_are_bounded() {
        let names = vec!["default".to_owned(), "raft".to_owned()];
        assert_eq!(parse_catalog(&catalog(&names)).unwrap(), names);
        let endless = [0xff; 11];
        assert!(matches!(
            Ops::new(&endless).varint(),
            Err(Error::Corruption(_))
        ));
        let (len, crc) = parse_header(header(17, 0xdead_beef));
        assert_eq!((len, crc), (17, 0xdead_beef));
    }
}
