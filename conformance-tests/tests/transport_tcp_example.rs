//! The example custom transport (`examples/tcp_transport.rs`) passes the transport suite.

#[allow(dead_code)]
#[path = "../examples/tcp_transport.rs"]
mod tcp_transport;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use conformance_tests::transport::TransportHarness;
use parking_lot::Mutex;
use tcp_transport::{MAX_FRAME_BYTES, TcpTransport};
use transport::{FrameSink, StaticResolver, StoreId, Transport};

/// Stores on loopback, found through a shared resolver.
#[derive(Default)]
struct TcpHarness {
    resolver: Arc<StaticResolver>,
    running: Mutex<HashMap<StoreId, Arc<TcpTransport>>>,
}

#[async_trait]
impl TransportHarness for TcpHarness {
    async fn start(&self, store: StoreId, sink: Arc<dyn FrameSink>) -> Arc<dyn Transport> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        self.resolver
            .insert(store, listener.local_addr().expect("addr").to_string());
        let transport = Arc::new(TcpTransport::start(
            store,
            listener,
            self.resolver.clone(),
            sink,
        ));
        self.running.lock().insert(store, transport.clone());
        transport
    }

    async fn stop(&self, store: StoreId) {
        let transport = self.running.lock().remove(&store);
        if let Some(transport) = transport {
            transport.close().await;
        }
    }

    fn max_frame_bytes(&self) -> Option<usize> {
        Some(MAX_FRAME_BYTES)
    }
}

conformance_tests::transport_suite!(TcpHarness::default());
