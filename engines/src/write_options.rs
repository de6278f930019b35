//! Options of one write.

/// Options of one [`Engine::write`](crate::Engine::write).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct WriteOptions {
    /// When `true`, the write returns only after the batch, and every write acknowledged
    /// before it, is durable on stable storage (survives power loss).
    ///
    /// When `false`, the batch survives a crash of the process on disk backends but may be
    /// lost on power loss or an OS crash, until a later synced write or
    /// [`Engine::sync`](crate::Engine::sync). Either way the batch is atomic.
    pub sync: bool,
}

impl WriteOptions {
    /// Options of a synced (durable) write.
    #[must_use]
    pub const fn synced() -> Self {
        Self { sync: true }
    }

    /// Options of an unsynced write.
    #[must_use]
    pub const fn unsynced() -> Self {
        Self { sync: false }
    }
}
