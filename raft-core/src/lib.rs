//! The Raft consensus state machine of raftkv.
