//! Node endpoints (`host:port`) and the lazy gRPC channels the clients open to them.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::error::{Error, Result};

/// How long connecting to an endpoint may take before the attempt fails.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How often a client pings a node over a connection with calls open.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// How long a ping may go unanswered before the connection is dropped.
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Splits a comma-separated endpoint list (`host:port,host:port`), trimming spaces.
///
/// ```
/// let e = raftkv_examples::endpoint::parse_list("127.0.0.1:1, 127.0.0.1:2").unwrap();
/// assert_eq!(e, ["127.0.0.1:1", "127.0.0.1:2"]);
/// assert!(raftkv_examples::endpoint::parse_list(" , ").is_err());
/// assert!(raftkv_examples::endpoint::parse_list("localhost").is_err());
/// ```
///
/// # Errors
/// [`Error::InvalidEndpoint`] for an empty list or an entry without a numeric port.
pub fn parse_list(list: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for e in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let port_ok = e
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !port_ok {
            return Err(Error::InvalidEndpoint(format!(
                "{e:?} (expected host:port)"
            )));
        }
        out.push(e.to_string());
    }
    if out.is_empty() {
        return Err(Error::InvalidEndpoint("no endpoints given".into()));
    }
    Ok(out)
}

/// The gRPC endpoint of `addr` (`host:port`); parsing needs no runtime, unlike
/// [`lazy_channel`].
///
/// # Errors
/// [`Error::InvalidEndpoint`] when `addr` is not a valid URI authority.
pub fn endpoint(addr: &str) -> Result<Endpoint> {
    Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|_| Error::InvalidEndpoint(addr.to_string()))
}

/// A channel to `addr` (`host:port`) that connects on first use, so the node may be down
/// when it is made.
///
/// # Errors
/// [`Error::InvalidEndpoint`] when `addr` is not a valid URI authority.
pub fn lazy_channel(addr: &str) -> Result<Channel> {
    Ok(endpoint(addr)?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        // A node that stops answering with its connection still up (paused, or cut off
        // without a reset) breaks the connection after a missed ping, so a long-lived
        // `BatchCommands` stream fails its calls instead of holding them.
        .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
        .connect_lazy())
}
