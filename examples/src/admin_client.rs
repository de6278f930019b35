//! A client of the `Admin` service over a set of node endpoints: every node's status, the
//! leader of a region, and leadership transfer.

use std::time::Duration;

use tonic::transport::Channel;

use crate::error::{Error, Result};
use crate::proto::kvrpc::admin_client::AdminClient as AdminStub;
use crate::proto::kvrpc::{RegionStatus, StatusRequest, StatusResponse, TransferLeaderRequest};

/// How often [`AdminClient::transfer_leader`] polls the nodes while it waits.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// The leader of a region as the nodes report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leader {
    /// The leader's store id.
    pub store_id: u64,
    /// The endpoint that reported leading.
    pub endpoint: String,
    /// The leader's term.
    pub term: u64,
}

impl StatusResponse {
    /// The status of `region_id` if the answering store leads it.
    #[must_use]
    pub fn led_region(&self, region_id: u64) -> Option<&RegionStatus> {
        self.regions
            .iter()
            .find(|r| r.is_leader && r.region.as_ref().is_some_and(|i| i.id == region_id))
    }
}

/// An `Admin` client; each call asks one node or all of them, within a timeout.
#[derive(Debug, Clone)]
pub struct AdminClient {
    endpoints: Vec<(String, AdminStub<Channel>)>,
    timeout: Duration,
}

impl AdminClient {
    /// A client of the nodes at `endpoints` (`host:port`); connections are lazy.
    ///
    /// # Errors
    /// [`Error::InvalidEndpoint`] for an unparsable address or an empty list.
    pub fn connect<S: AsRef<str>>(endpoints: impl IntoIterator<Item = S>) -> Result<Self> {
        let endpoints = endpoints
            .into_iter()
            .map(|e| {
                let addr = e.as_ref().to_string();
                let stub = AdminStub::new(crate::endpoint::lazy_channel(&addr)?);
                Ok((addr, stub))
            })
            .collect::<Result<Vec<_>>>()?;
        if endpoints.is_empty() {
            return Err(Error::InvalidEndpoint("no endpoints given".into()));
        }
        Ok(Self {
            endpoints,
            timeout: Duration::from_secs(5),
        })
    }

    /// The same client with another per-node timeout (default 5 s).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The endpoints, in the order given.
    pub fn endpoints(&self) -> impl Iterator<Item = &str> {
        self.endpoints.iter().map(|(e, _)| e.as_str())
    }

    /// The status of the node at `endpoint` (an index into [`endpoints`](Self::endpoints)).
    ///
    /// # Errors
    /// [`Error::Timeout`] when it does not answer in time, [`Error::Server`] when it
    /// answers with an error or the call fails.
    ///
    /// # Panics
    /// If `endpoint` is out of range (a caller bug).
    pub async fn status(&self, endpoint: usize) -> Result<StatusResponse> {
        let (addr, stub) = &self.endpoints[endpoint];
        let mut stub = stub.clone();
        let resp = tokio::time::timeout(self.timeout, stub.status(StatusRequest {}))
            .await
            .map_err(|_| Error::Timeout {
                attempts: 1,
                last: format!("{addr}: no answer within {:?}", self.timeout),
            })?
            .map_err(|s| Error::Server(format!("{addr}: {}", s.message())))?
            .into_inner();
        if !resp.error.is_empty() {
            return Err(Error::Server(format!("{addr}: {}", resp.error)));
        }
        Ok(resp)
    }

    /// Every node's status (asked concurrently), in endpoint order.
    pub async fn status_all(&self) -> Vec<(String, Result<StatusResponse>)> {
        let asks: Vec<_> = (0..self.endpoints.len())
            .map(|i| {
                let this = self.clone();
                tokio::spawn(async move { this.status(i).await })
            })
            .collect();
        let mut out = Vec::with_capacity(asks.len());
        for ((addr, _), ask) in self.endpoints.iter().zip(asks) {
            let answer = ask
                .await
                .unwrap_or_else(|e| Err(Error::Server(format!("{addr}: status task failed: {e}"))));
            out.push((addr.clone(), answer));
        }
        out
    }

    /// The leader of `region_id` among the nodes that answer: the one reporting
    /// `is_leader` with the highest term (a deposed leader may not know it yet).
    pub async fn leader(&self, region_id: u64) -> Option<Leader> {
        self.status_all()
            .await
            .into_iter()
            .filter_map(|(endpoint, status)| {
                let status = status.ok()?;
                let term = status.led_region(region_id)?.term;
                Some(Leader {
                    store_id: status.store_id,
                    endpoint,
                    term,
                })
            })
            .max_by_key(|l| l.term)
    }

    /// Moves the leadership of `region_id` to store `to_store_id` and waits, at most
    /// `deadline`, until that store reports leading it. Returns `(from, to)` store ids
    /// (equal when `to_store_id` already led).
    ///
    /// # Errors
    /// [`Error::Server`] when the transfer is refused (no such peer or region),
    /// [`Error::Timeout`] when no leader is found or the new one does not take over in
    /// time.
    pub async fn transfer_leader(
        &self,
        region_id: u64,
        to_store_id: u64,
        deadline: Duration,
    ) -> Result<(u64, u64)> {
        let deadline = tokio::time::Instant::now() + deadline;
        let mut from = None;
        let mut last = String::from("no node among the endpoints leads the region");
        let mut attempts = 0;
        while tokio::time::Instant::now() < deadline {
            let Some(leader) = self.leader(region_id).await else {
                tokio::time::sleep(POLL_INTERVAL).await;
                continue;
            };
            let from = *from.get_or_insert(leader.store_id);
            if leader.store_id == to_store_id {
                return Ok((from, to_store_id));
            }
            // Ask again after each election timeout's worth of polls: a transfer that
            // raft dropped (the target lagged) is retried.
            if attempts == 0 || attempts % 20 == 0 {
                let i = self
                    .endpoints
                    .iter()
                    .position(|(e, _)| *e == leader.endpoint)
                    .expect("the leader's endpoint comes from this client's list");
                let mut stub = self.endpoints[i].1.clone();
                let req = TransferLeaderRequest {
                    region_id,
                    to_store_id,
                };
                match tokio::time::timeout(self.timeout, stub.transfer_leader(req)).await {
                    Err(_) => last = format!("{}: no answer", leader.endpoint),
                    Ok(Err(status)) => last = format!("{}: {}", leader.endpoint, status.message()),
                    Ok(Ok(resp)) => {
                        let resp = resp.into_inner();
                        if !resp.error.is_empty() {
                            return Err(Error::Server(resp.error));
                        }
                        if let Some(e) = resp.region_error {
                            last = format!("{}: {}", leader.endpoint, e.message);
                        }
                    }
                }
            }
            attempts += 1;
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        Err(Error::Timeout { attempts, last })
    }
}
