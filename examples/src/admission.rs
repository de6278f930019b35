//! Admission control of a node's `Kv` service: at most [`ServerLimits::max_requests_in_flight`]
//! client requests, holding at most [`ServerLimits::max_request_bytes_in_flight`] request
//! bytes, are served at once. A request past either limit is answered at once with
//! `ServerIsBusy` (and a backoff hint) and never reaches the raft worker, so what a node
//! holds for its clients stays bounded however many of them there are.
//!
//! Two atomic counters, updated by compare-and-swap: no lock on the request path. The
//! gauges `raftkv_admission_requests_in_flight` and `raftkv_admission_bytes_in_flight`
//! follow them; refusals count in `raftkv_server_busy_total`. A
//! [`Permit`] holds its share of both until it is dropped — when the handler hands its
//! answer to gRPC, or when the call is cancelled.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};

/// The backoff a `ServerIsBusy` answer from admission control asks the client for: about
/// one commit round on a loaded disk, so the requests admitted meanwhile can finish.
pub const BUSY_BACKOFF_MS: u64 = 20;

/// The bounds on what a node's gRPC server takes in from clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerLimits {
    /// `Kv` requests served at once; past it, `ServerIsBusy`.
    pub max_requests_in_flight: usize,
    /// Encoded bytes of the `Kv` requests served at once; past it, `ServerIsBusy`. A single
    /// request larger than this is still admitted when nothing else is in flight, so it
    /// is never refused for ever.
    pub max_request_bytes_in_flight: usize,
    /// HTTP/2 streams (calls) one client connection may have open at once; further calls
    /// wait in the client. Together with the message size limit this bounds what a
    /// connection makes the server decode before admission sees it.
    pub max_concurrent_streams: u32,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_requests_in_flight: 8192,
            max_request_bytes_in_flight: 64 << 20,
            max_concurrent_streams: 1024,
        }
    }
}

impl ServerLimits {
    /// Checks that every limit lets something through.
    ///
    /// # Errors
    /// The name of the first limit that is 0.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_requests_in_flight == 0 {
            return Err("max_requests_in_flight must be greater than 0".into());
        }
        if self.max_request_bytes_in_flight == 0 {
            return Err("max_request_bytes_in_flight must be greater than 0".into());
        }
        if self.max_concurrent_streams == 0 {
            return Err("max_concurrent_streams must be greater than 0".into());
        }
        Ok(())
    }
}

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// [`ServerLimits::max_requests_in_flight`] requests are being served.
    Requests,
    /// The request's bytes would pass [`ServerLimits::max_request_bytes_in_flight`].
    Bytes,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Requests => "too many requests in flight",
            Self::Bytes => "too many request bytes in flight",
        })
    }
}

/// The requests and bytes a node is serving, against its limits.
#[derive(Debug)]
pub struct Admission {
    max_requests: usize,
    max_bytes: usize,
    requests: AtomicUsize,
    bytes: AtomicUsize,
    /// Requests refused so far.
    refused: AtomicU64,
}

impl Admission {
    /// Counters at zero, with the limits of `limits`.
    #[must_use]
    pub fn new(limits: &ServerLimits) -> Arc<Self> {
        Arc::new(Self {
            max_requests: limits.max_requests_in_flight,
            max_bytes: limits.max_request_bytes_in_flight,
            requests: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
        })
    }

    /// Admits a request of `bytes` encoded bytes, or says which limit it would pass.
    ///
    /// # Errors
    /// [`Refused`] when a limit is reached; nothing is counted then.
    pub fn try_admit(self: &Arc<Self>, bytes: usize) -> Result<Permit, Refused> {
        let max_requests = self.max_requests;
        if self
            .requests
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max_requests).then_some(n + 1)
            })
            .is_err()
        {
            return Err(self.refuse(Refused::Requests));
        }
        let max_bytes = self.max_bytes;
        if self
            .bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                // Alone, any request fits: a huge one waits for the others, not for ever.
                (b == 0 || b.saturating_add(bytes) <= max_bytes).then_some(b.saturating_add(bytes))
            })
            .is_err()
        {
            self.requests.fetch_sub(1, Ordering::AcqRel);
            return Err(self.refuse(Refused::Bytes));
        }
        metrics::gauge!("raftkv_admission_requests_in_flight").increment(1.0);
        metrics::gauge!("raftkv_admission_bytes_in_flight").increment(bytes as f64);
        Ok(Permit {
            admission: self.clone(),
            bytes,
        })
    }

    fn refuse(&self, why: Refused) -> Refused {
        self.refused.fetch_add(1, Ordering::Relaxed);
        why
    }

    /// Requests admitted and not yet answered.
    #[must_use]
    pub fn requests_in_flight(&self) -> usize {
        self.requests.load(Ordering::Acquire)
    }

    /// Bytes of the requests admitted and not yet answered.
    #[must_use]
    pub fn bytes_in_flight(&self) -> usize {
        self.bytes.load(Ordering::Acquire)
    }

    /// Requests refused since the node started.
    #[must_use]
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// One admitted request's share of the limits, given back when dropped.
#[derive(Debug)]
pub struct Permit {
    admission: Arc<Admission>,
    bytes: usize,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.admission.bytes.fetch_sub(self.bytes, Ordering::AcqRel);
        self.admission.requests.fetch_sub(1, Ordering::AcqRel);
        metrics::gauge!("raftkv_admission_requests_in_flight").decrement(1.0);
        metrics::gauge!("raftkv_admission_bytes_in_flight").decrement(self.bytes as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(requests: usize, bytes: usize) -> Arc<Admission> {
        Admission::new(&ServerLimits {
            max_requests_in_flight: requests,
            max_request_bytes_in_flight: bytes,
            ..ServerLimits::default()
        })
    }

    #[test]
    fn the_request_limit_refuses_until_a_permit_is_dropped() {
        let a = admission(2, 1 << 20);
        let p1 = a.try_admit(10);
        let p2 = a.try_admit(10);
        assert!(p1.is_ok() && p2.is_ok());
        assert_eq!(a.try_admit(10).err(), Some(Refused::Requests));
        assert_eq!((a.requests_in_flight(), a.bytes_in_flight()), (2, 20));
        drop(p1);
        assert!(a.try_admit(10).is_ok(), "a freed slot admits again");
        assert_eq!(a.refused(), 1);
        drop(p2);
        assert_eq!((a.requests_in_flight(), a.bytes_in_flight()), (0, 0));
    }

    #[test]
    fn the_byte_limit_counts_sizes_and_a_lone_huge_request_passes() {
        let a = admission(100, 100);
        let p1 = a.try_admit(60);
        assert!(p1.is_ok());
        assert_eq!(a.try_admit(50).err(), Some(Refused::Bytes));
        // A refusal by bytes gives its request slot back.
        assert_eq!(a.requests_in_flight(), 1);
        let p2 = a.try_admit(40);
        assert!(p2.is_ok());
        drop((p1, p2));
        let huge = a.try_admit(1000);
        assert!(
            huge.is_ok(),
            "alone, a request over the byte limit is admitted"
        );
        assert_eq!(a.try_admit(1).err(), Some(Refused::Bytes));
    }

    #[test]
    fn a_zero_limit_is_a_config_error() {
        let mut limits = ServerLimits::default();
        assert_eq!(limits.validate(), Ok(()));
        limits.max_concurrent_streams = 0;
        assert!(
            limits
                .validate()
                .is_err_and(|e| e.contains("max_concurrent_streams"))
        );
    }
}
