//! Serving a process's metrics to Prometheus: installs the `metrics` facade's global
//! recorder and an HTTP endpoint that renders everything recorded through it (raft-store's
//! `raftstore_*` metrics and the server's `raftkv_rpc_*` ones, see
//! [`rpc_metrics`](crate::rpc_metrics)).
//!
//! Histograms whose names end in `_seconds` are exported as Prometheus histograms with
//! [`LATENCY_BUCKETS_SECONDS`]; other histograms as summaries (quantiles).

use std::net::SocketAddr;

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder};

use crate::error::{Error, Result};

/// Bucket bounds for latency histograms: 100 µs to 10 s.
pub const LATENCY_BUCKETS_SECONDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Installs the global recorder and serves it on `addr` (any path; `/health` answers
/// liveness). Call once per process, inside a tokio runtime.
///
/// # Errors
/// [`Error::Metrics`] when the address cannot be bound (e.g. it is in use) or a recorder
/// is already installed.
pub fn serve(addr: SocketAddr) -> Result<()> {
    let fail = |e: BuildError| Error::Metrics {
        addr: addr.to_string(),
        reason: e.to_string(),
    };
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS_SECONDS)
        .map_err(fail)?
        .install()
        .map_err(fail)?;
    describe();
    Ok(())
}

/// The help texts of the metrics this crate records.
fn describe() {
    metrics::describe_counter!(
        "raftkv_rpc_requests_total",
        "Client RPCs received, by service and method."
    );
    metrics::describe_histogram!(
        "raftkv_rpc_duration_seconds",
        metrics::Unit::Seconds,
        "Time to answer a client RPC, by service and method."
    );
    metrics::describe_gauge!("raftkv_rpc_in_flight", "Client RPCs being served.");
    metrics::describe_counter!(
        "raftkv_server_busy_total",
        "Requests shed with ServerIsBusy (full mailbox, too many uncommitted bytes)."
    );
}
