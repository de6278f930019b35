//! Decoding the log entry that carries many commands (`RaftCmdBatch`).

use bytes::{Buf as _, Bytes};
use prost::DecodeError;
use prost::Message as _;
use prost::encoding::{DecodeContext, WireType, decode_key, decode_varint, skip_field};

use crate::pb::raft_cmdpb::RaftCmdRequest;

/// Why a batch did not decode.
#[derive(Debug, thiserror::Error)]
pub enum BatchDecodeError {
    /// The protobuf decoder refused the framing or a command.
    #[error(transparent)]
    Protobuf(#[from] DecodeError),
    /// The `commands` field is not length-delimited, or runs past the batch.
    #[error("command batch: {0}")]
    Framing(&'static str),
}

/// The `commands` field's number in `RaftCmdBatch`.
const COMMANDS_FIELD: u32 = 1;

/// Decodes the commands of an encoded `RaftCmdBatch`, as `RaftCmdBatch::decode` would,
/// with two differences that matter on the apply path: the vector is sized once, from a
/// first pass over the framing (decoding pushes one command at a time, and a batch of
/// thousands of commands regrew it a dozen times per entry), and each command is decoded
/// from its own slice of `data`, so its keys and values share the entry's buffer.
///
/// # Errors
/// Why a malformed batch or command did not decode; on error nothing is returned, as
/// with `RaftCmdBatch::decode`.
pub fn decode(data: Bytes) -> Result<Vec<RaftCmdRequest>, BatchDecodeError> {
    let mut commands = Vec::with_capacity(count(data.clone())?);
    let mut buf = data;
    while buf.has_remaining() {
        let (field, wire_type) = decode_key(&mut buf)?;
        if field == COMMANDS_FIELD {
            let command = delimited(&mut buf, wire_type)?;
            commands.push(RaftCmdRequest::decode(command)?);
        } else {
            skip_field(wire_type, field, &mut buf, DecodeContext::default())?;
        }
    }
    Ok(commands)
}

/// How many commands the batch holds, checking its framing (not the commands).
fn count(mut buf: Bytes) -> Result<usize, BatchDecodeError> {
    let mut n = 0;
    while buf.has_remaining() {
        let (field, wire_type) = decode_key(&mut buf)?;
        if field == COMMANDS_FIELD {
            delimited(&mut buf, wire_type)?;
            n += 1;
        } else {
            skip_field(wire_type, field, &mut buf, DecodeContext::default())?;
        }
    }
    Ok(n)
}

/// Splits the length-delimited value at the front of `buf` off it.
fn delimited(buf: &mut Bytes, wire_type: WireType) -> Result<Bytes, BatchDecodeError> {
    if wire_type != WireType::LengthDelimited {
        return Err(BatchDecodeError::Framing(
            "the commands field is not length-delimited",
        ));
    }
    let len = decode_varint(buf)?;
    if len > buf.remaining() as u64 {
        return Err(BatchDecodeError::Framing("a command runs past the batch"));
    }
    // `len` fits in usize: it is at most `buf.remaining()`.
    Ok(buf.split_to(len as usize))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::raft_cmdpb::{PutRequest, RaftCmdBatch, Request};

    fn command(key: &[u8]) -> RaftCmdRequest {
        RaftCmdRequest {
            requests: vec![Request {
                put: Some(PutRequest {
                    key: key.to_vec().into(),
                    value: b"value".to_vec().into(),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn decodes_what_the_generated_code_encodes() {
        let batch = RaftCmdBatch {
            commands: (0..100u32).map(|i| command(&i.to_be_bytes())).collect(),
        };
        let data = Bytes::from(batch.encode_to_vec());
        let commands = decode(data).expect("a well-formed batch");
        assert_eq!(commands, batch.commands);
        assert_eq!(commands.capacity(), 100);
        assert!(decode(Bytes::new()).expect("an empty batch").is_empty());
    }

    #[test]
    fn malformed_batches_are_refused_like_the_generated_decoder_refuses_them() {
        let batch = RaftCmdBatch {
            commands: vec![command(b"a"), command(b"b")],
        };
        let data = batch.encode_to_vec();
        for cut in 1..data.len() {
            let truncated = Bytes::copy_from_slice(&data[..cut]);
            assert_eq!(
                decode(truncated.clone()).is_err(),
                RaftCmdBatch::decode(truncated).is_err(),
                "cut at {cut}"
            );
        }
        // Field 1 with the varint wire type.
        assert!(decode(Bytes::from_static(&[0x08, 0x01])).is_err());
        assert!(RaftCmdBatch::decode(Bytes::from_static(&[0x08, 0x01])).is_err());
        // An unknown field is skipped, as prost skips it.
        let mut with_unknown = vec![0x10, 0x07];
        with_unknown.extend_from_slice(&data);
        assert_eq!(
            decode(Bytes::from(with_unknown)).expect("unknown fields are skipped"),
            batch.commands
        );
    }
}
