//! Provisioning on database engines.

pub mod sql_quote;
