//! Inbox helpers: run an event's effect and record `(consumer, event_id)` in
//! the same transaction, so a redelivered event is skipped.

pub mod mongo;
pub mod postgres;
