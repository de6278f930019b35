//! Storage engine traits of raftkv and their backends (memory, fjall, heed).
