//! The raftkv Transport trait and its implementations (in-process channel, gRPC).
