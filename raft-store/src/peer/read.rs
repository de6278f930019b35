//! Linearizable reads through ReadIndex: no log write, one round per batch of reads.

use engines::{Direction, Engine};
use raft_core::ReadState;
use tracing::debug;

use super::{Peer, PendingRead, error_response};
use crate::error::{Error, Result};
use crate::keys::{self, CF_DEFAULT};
use crate::msg::Callback;
use crate::pb::raft_cmdpb::{
    CmdType, GetResponse, KvPair, RaftCmdRequest, RaftCmdResponse, Response, ScanResponse,
    SnapResponse,
};
use crate::region_check::check_epoch;

impl<ER: Engine, EK: Engine> Peer<ER, EK> {
    /// Starts one ReadIndex round for every read that arrived since the last call.
    pub fn flush_reads(&mut self) {
        if self.read_batch.is_empty() {
            return;
        }
        let commands = std::mem::take(&mut self.read_batch);
        if !self.is_leader() {
            let err = self.not_leader();
            for (_, cb) in commands {
                cb(error_response(&err));
            }
            return;
        }
        let id = self.next_read_id;
        self.next_read_id += 1;
        match self.raft_group.read_index(id.to_be_bytes().to_vec().into()) {
            Ok(()) => self.pending_reads.push_back(PendingRead {
                id,
                commands,
                read_index: None,
            }),
            Err(e) => {
                debug!(region_id = self.region_id(), "read index refused: {e}");
                let err = self.not_leader();
                for (_, cb) in commands {
                    cb(error_response(&err));
                }
            }
        }
    }

    /// Records the read indexes confirmed by the Raft group.
    pub fn on_read_states(&mut self, states: Vec<ReadState>) {
        for rs in states {
            let Ok(id) = <[u8; 8]>::try_from(&rs.request_ctx[..]).map(u64::from_be_bytes) else {
                continue;
            };
            if let Some(read) = self.pending_reads.iter_mut().find(|r| r.id == id) {
                read.read_index = Some(rs.index);
            }
        }
    }

    /// Fails every read waiting for a round this peer can no longer complete.
    pub fn on_leadership_lost(&mut self) {
        let err = self.not_leader();
        for read in self.pending_reads.drain(..) {
            for (_, cb) in read.commands {
                cb(error_response(&err));
            }
        }
    }

    /// Serves, in order, the reads whose read index has been applied.
    ///
    /// # Errors
    /// An engine failure.
    pub fn serve_reads(&mut self, answers: &mut Vec<(Callback, RaftCmdResponse)>) -> Result<()> {
        if self.is_applying_snapshot() {
            // The engine holds part of a snapshot: nothing may be read from it.
            return Ok(());
        }
        let applied = self.raft_group.store().applied_index();
        while self
            .pending_reads
            .front()
            .is_some_and(|r| r.read_index.is_some_and(|i| i <= applied))
        {
            let read = self.pending_reads.pop_front().expect("front exists");
            for (req, cb) in read.commands {
                let resp = match self.execute_read(&req) {
                    Ok(resp) => resp,
                    Err(e @ (Error::EpochNotMatch { .. } | Error::Other(_))) => error_response(&e),
                    Err(e) => return Err(e),
                };
                answers.push((cb, resp));
            }
        }
        Ok(())
    }

    fn execute_read(&self, req: &RaftCmdRequest) -> Result<RaftCmdResponse> {
        let region = self.region();
        // A split may have moved the keys away between the request and now.
        check_epoch(req, region)?;
        let engine = self.raft_group.store().kv_engine();
        let mut responses = Vec::with_capacity(req.requests.len());
        for r in &req.requests {
            let mut resp = Response {
                cmd_type: r.cmd_type,
                ..Default::default()
            };
            match r.cmd_type() {
                CmdType::Get => {
                    let g = r
                        .get
                        .as_ref()
                        .ok_or_else(|| Error::Other("Get without a body".into()))?;
                    check_cf(&g.cf)?;
                    let value = engine.get(CF_DEFAULT, &keys::data_key(&g.key))?;
                    resp.get = Some(GetResponse {
                        found: value.is_some(),
                        value: value.unwrap_or_default().into(),
                    });
                }
                CmdType::Scan => {
                    let s = r
                        .scan
                        .as_ref()
                        .ok_or_else(|| Error::Other("Scan without a body".into()))?;
                    check_cf(&s.cf)?;
                    let start = keys::data_key(&s.start_key);
                    let end = keys::data_end_key(&s.end_key);
                    let limit = if s.limit == 0 {
                        usize::MAX
                    } else {
                        s.limit as usize
                    };
                    let direction = if s.reverse {
                        Direction::Reverse
                    } else {
                        Direction::Forward
                    };
                    let mut pairs = Vec::new();
                    engine.scan(
                        CF_DEFAULT,
                        start.as_slice()..end.as_slice(),
                        direction,
                        |k, v| {
                            let key = keys::origin_key(k).unwrap_or(k).to_vec().into();
                            let value = if s.key_only {
                                Default::default()
                            } else {
                                v.to_vec().into()
                            };
                            pairs.push(KvPair { key, value });
                            pairs.len() < limit
                        },
                    )?;
                    resp.scan = Some(Box::new(ScanResponse { pairs }));
                }
                CmdType::Snap => {
                    resp.snap = Some(Box::new(SnapResponse {
                        region: Some(region.clone()),
                    }))
                }
                other => return Err(Error::Other(format!("{other:?} is not a read"))),
            }
            responses.push(resp);
        }
        Ok(RaftCmdResponse {
            responses,
            ..Default::default()
        })
    }
}

fn check_cf(cf: &str) -> Result<()> {
    match cf {
        "" | CF_DEFAULT => Ok(()),
        other => Err(Error::Other(format!("unknown column family {other:?}"))),
    }
}
