//! silo-cluster-dns against the real API server of `tests/env/up`: records appear in the
//! hosts file within 2 s of a change and go when the Service goes. The host's /etc/hosts is
//! never touched: a scratch file stands in for it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Endpoints, Service};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use silo_cluster_dns::{WatchConfig, run};
use silo_testenv::{TestNamespace, kube_client, unique_suffix};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The bound the environment promises for a new or changed Service.
const RESOLVES_WITHIN: Duration = Duration::from_secs(2);
/// The first write waits for the initial lists of a whole (possibly busy) cluster.
const FIRST_WRITE_WITHIN: Duration = Duration::from_secs(15);

const MACHINE_LINES: &str = "127.0.0.1 localhost\n192.0.2.1 machine-own-entry\n";

/// A directory under the system temp dir, removed when dropped.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("silo-cluster-dns-test-{}", unique_suffix()));
        std::fs::create_dir_all(&dir).expect("temp dir is writable");
        Self(dir)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A watcher running on this test's runtime, writing into a scratch directory.
struct RunningWatcher {
    config: WatchConfig,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), silo_cluster_dns::Error>>,
    _scratch: ScratchDir,
}

impl RunningWatcher {
    /// Starts the watcher and waits for its first write (the `kubernetes` Service's record).
    async fn start(client: &Client) -> Self {
        let scratch = ScratchDir::new();
        let etc_hosts = scratch.0.join("etc-hosts");
        std::fs::write(&etc_hosts, MACHINE_LINES).expect("scratch file is writable");
        let config = WatchConfig {
            hosts_dir: scratch.0.join("hosts.d"),
            etc_hosts: Some(etc_hosts),
            cluster_domain: "cluster.local".to_string(),
            min_interval: Duration::from_millis(200),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run(client.clone(), config.clone(), async move {
            let _ = stopped.await;
        }));
        let watcher = Self {
            config,
            stop,
            task,
            _scratch: scratch,
        };
        let first = "kubernetes.default.svc.cluster.local";
        watcher
            .wait_for(FIRST_WRITE_WITHIN, &format!("{first} listed"), |records| {
                !records.addresses_of(first).is_empty()
            })
            .await;
        watcher
    }

    /// Polls both hosts files until `check` holds for each; returns how long it took.
    async fn wait_for(
        &self,
        within: Duration,
        what: &str,
        check: impl Fn(&HostsFile) -> bool,
    ) -> Duration {
        let started = Instant::now();
        let etc_hosts = self.config.etc_hosts.as_deref().expect("set by start");
        loop {
            let served = HostsFile::read(&self.config.hosts_file());
            let host = HostsFile::read(etc_hosts);
            if check(&served) && check(&host) {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < within,
                "not within {within:?}: {what}\nserved file:\n{}\n/etc/hosts stand-in:\n{}",
                served.0,
                host.0
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the watcher and returns what is left of the /etc/hosts stand-in.
    async fn stop(self) -> String {
        let _ = self.stop.send(());
        self.task
            .await
            .expect("watcher task did not panic")
            .expect("watcher ended cleanly");
        let etc_hosts = self.config.etc_hosts.as_deref().expect("set by start");
        std::fs::read_to_string(etc_hosts).expect("stand-in is readable")
    }
}

/// A hosts file as read from disk (empty when absent).
struct HostsFile(String);

impl HostsFile {
    fn read(path: &Path) -> Self {
        Self(std::fs::read_to_string(path).unwrap_or_default())
    }

    fn addresses_of(&self, name: &str) -> BTreeSet<String> {
        self.0
            .lines()
            .filter(|line| !line.trim_start().starts_with('#'))
            .filter_map(|line| {
                let mut fields = line.split_whitespace();
                let address = fields.next()?;
                fields.any(|n| n == name).then(|| address.to_string())
            })
            .collect()
    }
}

fn set(addresses: &[&str]) -> BTreeSet<String> {
    addresses.iter().map(|a| a.to_string()).collect()
}

fn service(name: &str, cluster_ip: Option<&str>) -> Service {
    let mut spec = serde_json::json!({ "ports": [{ "port": 5432 }] });
    if let Some(ip) = cluster_ip {
        spec["clusterIP"] = ip.into();
    }
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Service", "metadata": { "name": name }, "spec": spec
    }))
    .expect("service literal is valid")
}

/// Endpoints of a StatefulSet-like headless Service: `(ip, hostname)` ready and not ready.
fn endpoints(name: &str, ready: &[(&str, &str)], not_ready: &[(&str, &str)]) -> Endpoints {
    let addresses = |list: &[(&str, &str)]| {
        list.iter()
            .map(|(ip, hostname)| serde_json::json!({ "ip": ip, "hostname": hostname }))
            .collect::<Vec<_>>()
    };
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Endpoints", "metadata": { "name": name },
        "subsets": [{
            "addresses": addresses(ready),
            "notReadyAddresses": addresses(not_ready),
            "ports": [{ "port": 5432 }]
        }]
    }))
    .expect("endpoints literal is valid")
}

#[tokio::test]
async fn created_service_resolves_within_two_seconds_and_is_gone_after_deletion() {
    let client = kube_client().await;
    let namespace = TestNamespace::create(&client, "cluster-dns").await;
    let watcher = RunningWatcher::start(&client).await;
    let services = Api::<Service>::namespaced(client.clone(), namespace.name());

    let created = services
        .create(&PostParams::default(), &service("web", None))
        .await
        .expect("service is created");
    let cluster_ip = created
        .spec
        .and_then(|spec| spec.cluster_ip)
        .expect("API server allocated a cluster IP");
    let long = format!("web.{}.svc.cluster.local", namespace.name());
    let short = format!("web.{}.svc", namespace.name());
    let took = watcher
        .wait_for(RESOLVES_WITHIN, &format!("{long} -> {cluster_ip}"), |f| {
            f.addresses_of(&long) == set(&[&cluster_ip])
                && f.addresses_of(&short) == set(&[&cluster_ip])
        })
        .await;
    eprintln!("{long} written {took:?} after the Service was created");

    services
        .delete("web", &DeleteParams::default())
        .await
        .expect("service is deleted");
    watcher
        .wait_for(RESOLVES_WITHIN, &format!("{long} removed"), |f| {
            f.addresses_of(&long).is_empty() && f.addresses_of(&short).is_empty()
        })
        .await;

    let etc_hosts = watcher.stop().await;
    assert_eq!(
        etc_hosts, MACHINE_LINES,
        "the block is gone, the rest as it was"
    );
}

#[tokio::test]
async fn headless_service_resolves_to_ready_endpoints_and_statefulset_pod_names() {
    let client = kube_client().await;
    let namespace = TestNamespace::create(&client, "cluster-dns").await;
    let watcher = RunningWatcher::start(&client).await;
    let ns = namespace.name();
    Api::<Service>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &service("pg", Some("None")))
        .await
        .expect("headless service is created");
    let endpoints_api = Api::<Endpoints>::namespaced(client.clone(), ns);
    let ready = [("10.244.0.5", "pg-0"), ("10.244.0.6", "pg-1")];
    let not_ready = [("10.244.0.7", "pg-2")];
    endpoints_api
        .create(&PostParams::default(), &endpoints("pg", &ready, &not_ready))
        .await
        .expect("endpoints are created");

    let service_name = format!("pg.{ns}.svc.cluster.local");
    let took = watcher
        .wait_for(RESOLVES_WITHIN, "ready endpoints and pod names", |f| {
            f.addresses_of(&service_name) == set(&["10.244.0.5", "10.244.0.6"])
                && f.addresses_of(&format!("pg-0.pg.{ns}.svc.cluster.local"))
                    == set(&["10.244.0.5"])
                && f.addresses_of(&format!("pg-1.pg.{ns}.svc")) == set(&["10.244.0.6"])
                && f.addresses_of(&format!("pg-2.pg.{ns}.svc.cluster.local"))
                    .is_empty()
        })
        .await;
    eprintln!("{service_name} written {took:?} after its Endpoints were created");

    // pg-1 stops being ready: the Service's name and pg-1's own name stop answering with it.
    let changed = endpoints("pg", &ready[..1], &[ready[1], not_ready[0]]);
    endpoints_api
        .patch("pg", &PatchParams::default(), &Patch::Merge(&changed))
        .await
        .expect("endpoints are changed");
    watcher
        .wait_for(RESOLVES_WITHIN, "pg-1 no longer ready", |f| {
            f.addresses_of(&service_name) == set(&["10.244.0.5"])
                && f.addresses_of(&format!("pg-1.pg.{ns}.svc.cluster.local"))
                    .is_empty()
        })
        .await;
    watcher.stop().await;
}
