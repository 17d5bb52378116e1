//! Integration tests of the operator against the local API server and PostgreSQL from
//! `tests/env/up`, with the controllers running inside the test process.

// Tests may unwrap (the workspace lint is for library code); helpers here are test code too.
#![allow(clippy::unwrap_used)]

mod access_cli;
mod access_measure;
mod booking_system;
mod crds;
mod forgetting;
mod harness;
mod kubectl;
mod leader_election;
mod managed;
mod mongodb;
mod names;
mod operator_binary;
mod postgres_shared;
mod rbac;
mod rbac_audit;
mod readme_examples;
mod running_servers;
mod server_deletion;
mod server_settings;
mod service_fixture;
mod service_isolation;
mod services;
