//! Cluster DNS for the local test environment's node: `silo-cluster-dns` watches Services
//! and Endpoints on the API server and keeps a hosts file that dnsmasq serves (it reloads
//! files in its `--hostsdir` on change), plus, for processes on the host itself, the same
//! records in a marked block of /etc/hosts. Part of the test environment, not of Silo.
//!
//! Records: `<service>.<namespace>.svc.<domain>` (and `<service>.<namespace>.svc`) to a
//! ClusterIP Service's cluster IPs or to a headless Service's ready endpoints, and
//! `<hostname>.<service>.<namespace>.svc.<domain>` to an endpoint with a hostname (a
//! StatefulSet pod).

use std::io;
use std::path::PathBuf;

pub mod etc_hosts;
pub mod records;
mod replace_file;
pub mod watch;

pub use records::ClusterRecords;
pub use watch::{HOSTS_FILE_NAME, WatchConfig, run};

/// What can go wrong while keeping the hosts files.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A hosts file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A hosts file (or the hosts directory) could not be written.
    #[error("cannot write {}: {source}", path.display())]
    WriteFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The watch streams ended, which they never do while the client lives.
    #[error("the watch on Services and Endpoints ended")]
    WatchEnded,
}
