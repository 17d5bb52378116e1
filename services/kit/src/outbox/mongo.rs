//! The MongoDB outbox (written later in this file).
