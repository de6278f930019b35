//! Decoding the log entry that carries many commands (`RaftCmdBatch`).

use bytes::{Buf as _, Bytes};
use prost::DecodeError;
use prost::Message as _;
use prost::encoding::{DecodeContext, WireType, decode_key, decode_varint, skip_field};

use crate::pb::raft_cmdpb::RaftCmdRequest;

/// Why a batch did not decode.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BatchDecodeError {
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
pub(crate) fn decode(data: Bytes) -> Result<Vec<RaftCmdRequest>, BatchDecodeError> {
    let count = CommandSlices(data.clone()).try_fold(0, |n, slice| slice.map(|_| n + 1))?;
    let mut commands = Vec::with_capacity(count);
    for slice in CommandSlices(data) {
        commands.push(RaftCmdRequest::decode(slice?)?);
    }
    Ok(commands)
}

/// The encoded commands of a batch, one slice of its buffer each, in order; fields other
/// than `commands` are skipped, as prost skips unknown fields. After an error it yields
/// nothing more.
struct CommandSlices(Bytes);

impl Iterator for CommandSlices {
    type Item = Result<Bytes, BatchDecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        let slice = self.next_slice().transpose();
        if matches!(slice, Some(Err(_))) {
            self.0.clear();
        }
        slice
    }
}

impl CommandSlices {
    fn next_slice(&mut self) -> Result<Option<Bytes>, BatchDecodeError> {
        let buf = &mut self.0;
        while buf.has_remaining() {
            let (field, wire_type) = decode_key(buf)?;
            if field != COMMANDS_FIELD {
                skip_field(wire_type, field, buf, DecodeContext::default())?;
                continue;
            }
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
            return Ok(Some(buf.split_to(len as usize)));
        }
        Ok(None)
    }
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
