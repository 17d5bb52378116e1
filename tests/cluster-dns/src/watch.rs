//! The watch loop: Services and Endpoints from the API server into the hosts files.

use std::fmt::Debug;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::time::Duration;

use futures::{Stream, StreamExt, TryStreamExt, future, stream};
use k8s_openapi::api::core::v1::{Endpoints, Service};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::records::ClusterRecords;
use crate::replace_file::replace_file;
use crate::{Error, etc_hosts};

/// The file the watcher keeps inside the hosts directory.
pub const HOSTS_FILE_NAME: &str = "cluster.hosts";

/// After a failed write the watcher tries again this much later, change or not.
const RETRY_AFTER_FAILED_WRITE: Duration = Duration::from_secs(1);

/// Where the watcher writes and how often.
#[derive(Debug, Clone)]
pub struct WatchConfig {
    /// The directory dnsmasq reads with `--hostsdir`; it gets [`HOSTS_FILE_NAME`].
    pub hosts_dir: PathBuf,
    /// A hosts file (the host's /etc/hosts) that gets the same records in a marked block.
    pub etc_hosts: Option<PathBuf>,
    /// The cluster's DNS domain, normally `cluster.local`.
    pub cluster_domain: String,
    /// The shortest time between two rewrites.
    pub min_interval: Duration,
}

impl WatchConfig {
    /// The hosts file dnsmasq serves.
    pub fn hosts_file(&self) -> PathBuf {
        self.hosts_dir.join(HOSTS_FILE_NAME)
    }
}

/// Watches Services and Endpoints in all namespaces and rewrites the hosts files whenever
/// their records change (at most once per `min_interval`; nothing is written before both
/// have been listed once). When `shutdown` completes, removes the /etc/hosts block and
/// returns.
pub async fn run(
    client: Client,
    config: WatchConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    std::fs::create_dir_all(&config.hosts_dir).map_err(|source| Error::WriteFile {
        path: config.hosts_dir.clone(),
        source,
    })?;
    let (services, service_changes) = reflect::<Service>(client.clone(), Watched::Services);
    let (endpoints, endpoint_changes) = reflect::<Endpoints>(client, Watched::Endpoints);
    let mut changes = pin!(stream::select(service_changes, endpoint_changes));
    let mut shutdown = pin!(shutdown);
    let mut publisher = Publisher::new(config);
    let mut listed = Listed::default();
    let mut due: Option<Instant> = None;
    let outcome = loop {
        tokio::select! {
            () = &mut shutdown => break Ok(()),
            change = changes.next() => {
                let Some(change) = change else { break Err(Error::WatchEnded) };
                listed.note(change);
                if listed.all() && due.is_none() {
                    due = Some(publisher.next_write_at());
                }
            }
            () = sleep_until(due) => {
                let records = ClusterRecords::build(
                    services.state().iter().map(AsRef::as_ref),
                    endpoints.state().iter().map(AsRef::as_ref),
                    &publisher.config.cluster_domain,
                );
                due = publisher.publish(&records);
            }
        }
    };
    publisher.withdraw();
    outcome
}

/// Which watch a change came from.
#[derive(Debug, Clone, Copy)]
enum Watched {
    Services,
    Endpoints,
}

/// What a watch event means for the hosts files.
#[derive(Debug, Clone, Copy)]
enum Change {
    /// An object was created, changed or deleted.
    Object,
    /// A full list (the first, or a re-list after a broken watch) is in the store.
    Listed(Watched),
}

/// Whether each watch has filled its store once.
#[derive(Debug, Default)]
struct Listed {
    services: bool,
    endpoints: bool,
}

impl Listed {
    fn note(&mut self, change: Change) {
        match change {
            Change::Object => {}
            Change::Listed(Watched::Services) => self.services = true,
            Change::Listed(Watched::Endpoints) => self.endpoints = true,
        }
    }

    fn all(&self) -> bool {
        self.services && self.endpoints
    }
}

/// A store of every `K` in the cluster and the stream that keeps it filled, as changes.
fn reflect<K>(client: Client, watched: Watched) -> (Store<K>, impl Stream<Item = Change>)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (store, writer) = reflector::store();
    // Only spec, subsets and names matter; the rest need not stay in memory.
    let events = watcher(Api::<K>::all(client), watcher::Config::default())
        .default_backoff()
        .map_ok(|event| {
            event.modify(|object| {
                object.managed_fields_mut().clear();
                object.annotations_mut().clear();
            })
        });
    let changes = reflector::reflector(writer, events)
        .filter_map(move |event| future::ready(classify(watched, event)));
    (store, changes)
}

fn classify<K>(watched: Watched, event: watcher::Result<watcher::Event<K>>) -> Option<Change> {
    match event {
        Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) => Some(Change::Object),
        Ok(watcher::Event::InitDone) => Some(Change::Listed(watched)),
        // The store swaps in a new list only at InitDone.
        Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => None,
        Err(error) => {
            warn!(?watched, %error, "watch failed; retrying with backoff");
            None
        }
    }
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(at) => tokio::time::sleep_until(at).await,
        None => future::pending().await,
    }
}

/// Writes the records where the configuration says, skipping writes that change nothing.
struct Publisher {
    config: WatchConfig,
    last_lines: Option<String>,
    last_write: Option<Instant>,
}

impl Publisher {
    fn new(config: WatchConfig) -> Self {
        Self {
            config,
            last_lines: None,
            last_write: None,
        }
    }

    /// Now, or `min_interval` after the last write if that is later.
    fn next_write_at(&self) -> Instant {
        let now = Instant::now();
        self.last_write
            .map(|last| last + self.config.min_interval)
            .filter(|at| *at > now)
            .unwrap_or(now)
    }

    /// Writes the records if they changed; returns when to try again after a failure.
    fn publish(&mut self, records: &ClusterRecords) -> Option<Instant> {
        let lines = records.to_hosts_lines();
        if self.last_lines.as_ref() == Some(&lines) {
            return None;
        }
        match self.write(&lines) {
            Ok(()) => {
                info!(
                    names = records.name_count(),
                    file = %self.config.hosts_file().display(),
                    "cluster records written"
                );
                self.last_lines = Some(lines);
                self.last_write = Some(Instant::now());
                None
            }
            Err(error) => {
                warn!(%error, "cannot write the cluster records; trying again");
                Some(Instant::now() + RETRY_AFTER_FAILED_WRITE)
            }
        }
    }

    fn write(&self, lines: &str) -> Result<(), Error> {
        let hosts_file = self.config.hosts_file();
        let contents = format!(
            "# Written by silo-cluster-dns from the cluster's Services and Endpoints; \
             replaced on every change.\n{lines}"
        );
        replace_file(&hosts_file, &contents).map_err(|source| Error::WriteFile {
            path: hosts_file.clone(),
            source,
        })?;
        if let Some(etc_hosts) = &self.config.etc_hosts {
            etc_hosts::write_block(etc_hosts, lines)?;
        }
        Ok(())
    }

    /// Takes the records out of /etc/hosts again, so nothing stale outlives the watcher.
    fn withdraw(&self) {
        if let Some(etc_hosts) = &self.config.etc_hosts {
            report_withdrawal(etc_hosts, etc_hosts::remove_block(etc_hosts));
        }
    }
}

fn report_withdrawal(path: &Path, outcome: Result<bool, Error>) {
    match outcome {
        Ok(true) => info!(file = %path.display(), "cluster records removed"),
        Ok(false) => {}
        Err(error) => warn!(%error, "cannot remove the cluster records"),
    }
}
