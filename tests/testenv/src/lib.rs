//! Handles on the real local environment that `tests/env/up` starts: the
//! Kubernetes API server, PostgreSQL, NATS JetStream, (when available) MongoDB, and
//! (with `tests/env/up --node`) a real node that runs pods.
//!
//! Values come from the process environment, or else from
//! `target/silo-env/env.sh`, so `cargo test` works without sourcing it first.
//! When the environment is not up, every helper fails with one line naming the
//! missing variable and the command that starts it.

mod env_file;
mod kubernetes;
mod mongodb;
mod nats;
mod node;
mod postgres;
mod private_nats;

pub use env_file::env_dir;
pub use kubernetes::{TestNamespace, kube_client};
pub use mongodb::{mongodb_url, record_skip};
pub use nats::nats_client;
pub use node::{
    apply, image, image_if_built, node_ip, pod_logs, wait_pod_ready, wait_pod_succeeded,
};
pub use postgres::{TestDatabase, postgres_admin_url};
pub use private_nats::PrivateNats;

/// Reads a variable of the local environment; panics with one clear line when absent.
pub fn require(var: &str) -> String {
    match env_file::lookup(var) {
        Some(value) if !value.is_empty() => value,
        _ => panic!(
            "{var} is not set: start the local environment with `tests/env/up` \
             (it writes target/silo-env/env.sh, which the tests read)"
        ),
    }
}

/// A short random suffix for names of throwaway test objects.
pub fn unique_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..10].to_string()
}
