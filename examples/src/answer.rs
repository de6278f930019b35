//! The two error fields every `kvrpc` response carries — `region_error` (typed, for the
//! client to act on) and `error` (a message) — for the service that answers with them and
//! the client that reads them.

use crate::error::Error;
use crate::proto::kvrpc::{self, RegionError};

/// A `kvrpc` response, seen through its error fields.
pub(crate) trait Answer: Default {
    fn region_error(&self) -> Option<&RegionError>;
    fn error(&self) -> &str;
    /// The typed error behind a non-empty [`error`](Self::error), if the response has one.
    fn typed_error(&self) -> Option<Error> {
        None
    }
    /// A response carrying `e` alone.
    fn with_region_error(e: RegionError) -> Self;
}

macro_rules! answer {
    ($($response:ty),* $(,)?) => {$(
        impl Answer for $response {
            fn region_error(&self) -> Option<&RegionError> {
                self.region_error.as_ref()
            }
            fn error(&self) -> &str {
                &self.error
            }
            fn with_region_error(e: RegionError) -> Self {
                Self {
                    region_error: Some(e),
                    ..Default::default()
                }
            }
        }
    )*};
}

answer!(
    kvrpc::RawGetResponse,
    kvrpc::RawPutResponse,
    kvrpc::RawDeleteResponse,
    kvrpc::RawScanResponse,
    kvrpc::RawBatchGetResponse,
    kvrpc::RawBatchPutResponse,
    kvrpc::RawDeleteRangeResponse,
    kvrpc::RawCompareAndSwapResponse,
    kvrpc::TransferLeaderResponse,
    kvrpc::AddPeerResponse,
    kvrpc::RemovePeerResponse,
);

impl Answer for kvrpc::SplitRegionResponse {
    fn region_error(&self) -> Option<&RegionError> {
        self.region_error.as_ref()
    }
    fn error(&self) -> &str {
        &self.error
    }
    fn typed_error(&self) -> Option<Error> {
        let e = self.invalid_split_key.as_ref()?;
        Some(Error::InvalidSplitKey {
            region_id: e.region.as_ref().map_or(0, |r| r.id),
            key: e.key.clone(),
            problem: e.problem(),
        })
    }
    fn with_region_error(e: RegionError) -> Self {
        Self {
            region_error: Some(e),
            ..Default::default()
        }
    }
}
