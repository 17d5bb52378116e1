//! Provisioning benchmark behind `tests/bench/provision` (a command, not a timed test):
//!
//! ```sh
//! tests/bench/provision                 # 200 Databases
//! tests/bench/provision --count 1000
//! ```
//!
//! Runs the release `silo-operator` binary as its own process (so that its peak RSS is its
//! own), scoped to a fresh namespace with an external PostgreSQL `DatabaseServer` (the local one
//! from `tests/env/up`), creates N `Database`s and prints: the time until all are Ready,
//! per-database latency (creation to Ready) p50/p99, the operator's peak RSS, and what the
//! operator does once everything is Ready (reconciles and CPU over an idle window). In the same
//! run it measures the floor: the same N `CREATE ROLE` + `CREATE DATABASE` statements sent by
//! plain `psql` sessions, 1, 2, 4 and 8 in parallel, and prints operator / fastest floor.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/integration/harness.rs"]
#[allow(dead_code)]
mod harness;

use std::collections::HashMap;
use std::io::Write;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use silo_operator::crd::{Database, DeletionPolicy};

use harness::{DatabaseFixture, Harness};

const IDLE_WINDOW: Duration = Duration::from_secs(15);

fn count_arg() -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--count")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(200)
}

/// `VmHWM` (peak resident set) of process `pid`, in MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// CPU time (user + system) process `pid` has used so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime and stime are 14th and 15th.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields
        .get(11..13)
        .map(|f| f.iter().filter_map(|t| t.parse::<u64>().ok()).sum())
        .unwrap_or(0);
    // Linux reports clock ticks of 1/100 s on every platform this runs on.
    Duration::from_millis(ticks * 10)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// A `psql` for the admin login, the password in the environment, not on the command line.
fn psql() -> Command {
    let mut url = url::Url::parse(&silo_testenv::postgres_admin_url()).expect("admin URL parses");
    let password = percent_encoding::percent_decode_str(url.password().unwrap_or_default())
        .decode_utf8_lossy()
        .to_string();
    url.set_password(None).expect("URL takes no password");
    let mut command = Command::new("psql");
    command.arg(url.as_str()).env("PGPASSWORD", password);
    command
}

/// The floor: N role+database pairs from `sessions` parallel psql processes; how long they
/// took and how many cores were busy meanwhile.
fn psql_floor(count: usize, sessions: usize, tag: &str) -> (Duration, f64) {
    let ticks = busy_ticks();
    let started = Instant::now();
    let children: Vec<_> = (0..sessions)
        .map(|s| {
            let mut script = String::new();
            for i in (s..count).step_by(sessions) {
                let name = format!("floor_{tag}_{i}");
                script.push_str(&format!(
                    "CREATE ROLE \"{name}\" LOGIN PASSWORD 'x';\nCREATE DATABASE \"{name}\" OWNER \"{name}\";\n"
                ));
            }
            let mut child = psql()
                .args(["-q", "-v", "ON_ERROR_STOP=1"])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .expect("psql runs");
            child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
            child
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success(), "psql failed");
    }
    let took = started.elapsed();
    let cores = busy_cores(ticks, took);
    eprintln!("floor, {sessions} session(s): {:.2} s", took.as_secs_f64());
    let mut script = String::new();
    for i in 0..count {
        let name = format!("floor_{tag}_{i}");
        script.push_str(&format!(
            "DROP DATABASE \"{name}\";\nDROP ROLE \"{name}\";\n"
        ));
    }
    let mut child = psql()
        .arg("-q")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    child.wait().unwrap();
    (took, cores)
}

/// Busy CPU ticks of the whole machine so far (user, nice, system, irq, softirq, steal).
fn busy_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| fields.get(i))
        .sum()
}

/// How many cores were busy, on average, over `took` since `ticks_before`.
fn busy_cores(ticks_before: u64, took: Duration) -> f64 {
    // Linux reports clock ticks of 1/100 s on every platform this runs on.
    (busy_ticks() - ticks_before) as f64 / 100.0 / took.as_secs_f64()
}

/// What one Database costs the API server, from a Database the operator made Ready: its
/// status and its credentials Secret, replayed by [`api_floor`].
struct ApiTemplate {
    status: serde_json::Value,
    secret: Secret,
}

impl ApiTemplate {
    async fn of(h: &Harness, name: &str) -> Self {
        let db = h.databases().get(name).await.unwrap();
        let status = serde_json::to_value(db.status.expect("a Ready Database has status")).unwrap();
        let secret_name = status["secretName"].as_str().unwrap().to_string();
        let mut secret = Api::<Secret>::namespaced(h.client.clone(), h.ns())
            .get(&secret_name)
            .await
            .unwrap();
        secret.metadata = Default::default();
        secret.metadata.labels = Some(
            [
                ("app.kubernetes.io/managed-by", "silo"),
                ("silo.dev/owner", "floor"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        );
        Self { status, secret }
    }
}

/// The Kubernetes side of the floor: the API writes the issue asks for per Database (the
/// object, its finalizer, its credentials Secret, its status and one Event), sent straight to
/// the API server `concurrency` at a time, with no operator and no database server.
async fn api_floor(
    client: &Client,
    template: &ApiTemplate,
    count: usize,
    concurrency: usize,
) -> (Duration, f64) {
    let namespace = silo_testenv::TestNamespace::create(client, "silo-apifloor").await;
    let ns = namespace.name().to_string();
    let databases = Api::<Database>::namespaced(client.clone(), &ns);
    let secrets = Api::<Secret>::namespaced(client.clone(), &ns);
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "silo-bench".into(),
            instance: None,
        },
    );
    let apply = PatchParams::apply("silo-bench").force();
    let ticks = busy_ticks();
    let started = Instant::now();
    futures::stream::iter(0..count)
        .for_each_concurrent(concurrency, |i| {
            let (databases, secrets, recorder, apply, ns) = (
                databases.clone(),
                secrets.clone(),
                recorder.clone(),
                apply.clone(),
                ns.clone(),
            );
            async move {
                let name = format!("db-{i}");
                let db = DatabaseFixture::shared_on("api-floor")
                    .owner(&format!("svc-{i}"))
                    .build(&name);
                let db = databases.create(&PostParams::default(), &db).await.unwrap();
                databases
                    .patch(
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"metadata": {"finalizers": ["silo.dev/api-floor"]}})),
                    )
                    .await
                    .unwrap();
                let mut secret = template.secret.clone();
                secret.metadata.name = Some(format!("{name}-db"));
                secret.metadata.namespace = Some(ns.clone());
                secret.metadata.owner_references = db.controller_owner_ref(&()).map(|r| vec![r]);
                secrets
                    .patch(&format!("{name}-db"), &apply, &Patch::Apply(&secret))
                    .await
                    .unwrap();
                let status = json!({
                    "apiVersion": Database::api_version(&()),
                    "kind": Database::kind(&()),
                    "status": template.status,
                });
                databases
                    .patch_status(&name, &apply, &Patch::Apply(&status))
                    .await
                    .unwrap();
                let event = Event {
                    type_: EventType::Normal,
                    reason: "Provisioned".into(),
                    note: Some("database and role created on the server".into()),
                    action: "Provision".into(),
                    secondary: None,
                };
                recorder.publish(&event, &db.object_ref(&())).await.unwrap();
            }
        })
        .await;
    let took = started.elapsed();
    let cores = busy_cores(ticks, took);
    futures::stream::iter(0..count)
        .for_each_concurrent(16, |i| {
            let databases = databases.clone();
            async move {
                let _ = databases
                    .patch(
                        &format!("db-{i}"),
                        &PatchParams::default(),
                        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
                    )
                    .await;
            }
        })
        .await;
    drop(namespace);
    (took, cores)
}

/// Starts the operator binary scoped to the harness's namespace and server.
fn spawn_operator(h: &Harness, metrics_port: u16) -> Child {
    let binary = std::env::var("SILO_OPERATOR_BIN").unwrap_or_else(|_| {
        format!(
            "{}/../target/release/silo-operator",
            env!("CARGO_MANIFEST_DIR")
        )
    });
    let log = std::fs::File::create(silo_testenv::env_dir().join("logs/bench-operator.log"))
        .expect("operator log file");
    Command::new(&binary)
        .args([
            "run",
            "--namespace",
            h.ns(),
            "--server-selector",
            &format!("silo.dev/test-scope={}", h.ns()),
            "--operator-namespace",
            h.ns(),
            "--metrics-addr",
            &format!("127.0.0.1:{metrics_port}"),
            "--identity",
            "bench",
        ])
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {binary} (build it with cargo build --release -p silo-operator): {e}"
            )
        })
}

/// The operator's `silo_reconciles_total` for `controller`, from its /metrics.
async fn reconciles(metrics_port: u16, controller: &str) -> u64 {
    let body = reqwest_lite(metrics_port, "/metrics").await;
    let prefix = format!("silo_reconciles_total{{controller=\"{controller}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// A plain HTTP/1.0 GET on localhost (the bench needs nothing more).
async fn reqwest_lite(port: u16, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return String::new();
    };
    let request = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return String::new();
    }
    let mut body = String::new();
    let _ = stream.read_to_string(&mut body).await;
    body
}

#[tokio::main]
async fn main() {
    let count = count_arg();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let mut h = Harness::start("silo-bench").await;
    // The operator under test is the release binary, not the harness's in-process controller.
    h.stop_controller();
    let metrics_port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut operator = spawn_operator(&h, metrics_port);
    let pid = operator.id();
    let api = h.databases();
    println!("creating {count} Databases on one external PostgreSQL server (operator pid {pid})");

    // Ready times come from a watch, so that measuring adds no polling load.
    let ready_watch = {
        let api = api.clone();
        tokio::spawn(async move {
            let mut ready_at: HashMap<String, Instant> = HashMap::new();
            let mut stream = watcher(api, watcher::Config::default())
                .applied_objects()
                .boxed();
            while ready_at.len() < count {
                let Some(db) = stream.try_next().await.ok().flatten() else {
                    continue;
                };
                let ready = db.status.as_ref().is_some_and(|s| {
                    s.conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True")
                });
                if ready && !ready_at.contains_key(&db.name_any()) {
                    ready_at.insert(db.name_any(), Instant::now());
                    if ready_at.len().is_multiple_of(100) {
                        eprintln!("{} of {count} Ready", ready_at.len());
                    }
                }
            }
            ready_at
        })
    };

    let started = Instant::now();
    let created: HashMap<String, Instant> = futures::stream::iter(0..count)
        .map(|i| {
            let api = api.clone();
            let server = h.server.clone();
            async move {
                let name = format!("db-{i}");
                let db: Database = DatabaseFixture::shared_on(&server)
                    .owner(&format!("svc-{i}"))
                    .deletion(DeletionPolicy::Delete)
                    .build(&name);
                let at = Instant::now();
                api.create(&PostParams::default(), &db).await.unwrap();
                (name, at)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let limit = Duration::from_secs(120 + count as u64);
    let ready_at = tokio::time::timeout(limit, ready_watch)
        .await
        .expect("not all Databases became Ready in time")
        .unwrap();
    let total = ready_at.values().max().unwrap().duration_since(started);
    let mut latencies: Vec<Duration> = ready_at
        .iter()
        .map(|(name, at)| at.duration_since(created[name]))
        .collect();
    latencies.sort();
    let rss = peak_rss_mib(pid);

    // Idle: once everything is Ready, nothing should run.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let reconciles_before = reconciles(metrics_port, "database").await;
    let cpu_before = cpu_time(pid);
    tokio::time::sleep(IDLE_WINDOW).await;
    let idle_reconciles = reconciles(metrics_port, "database").await - reconciles_before;
    let idle_cpu = cpu_time(pid).saturating_sub(cpu_before);
    let total_reconciles = reconciles(metrics_port, "database").await;

    let tag = silo_testenv::unique_suffix();
    let floors: Vec<(usize, Duration, f64)> = [1, 2, 4, 8]
        .into_iter()
        .map(|sessions| {
            let (took, cores) = psql_floor(count, sessions, &format!("{tag}_{sessions}"));
            (sessions, took, cores)
        })
        .collect();
    let (best_sessions, best, _) = floors.iter().min_by_key(|(_, d, _)| *d).copied().unwrap();

    let template = ApiTemplate::of(&h, "db-0").await;
    let mut api_floors = Vec::new();
    for concurrency in [4, 16, 64] {
        let (took, cores) = api_floor(&h.client, &template, count, concurrency).await;
        eprintln!(
            "API floor, {concurrency} at once: {:.2} s",
            took.as_secs_f64()
        );
        api_floors.push((concurrency, took, cores));
        // Let the namespace's deletion finish before the next round.
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let (api_concurrency, api_best, _) = api_floors
        .iter()
        .min_by_key(|(_, d, _)| *d)
        .copied()
        .unwrap();

    println!(
        "all {count} Ready after           {:.2} s",
        total.as_secs_f64()
    );
    println!(
        "latency p50 (create → Ready)      {:.3} s",
        percentile(&latencies, 0.50).as_secs_f64()
    );
    println!(
        "latency p99 (create → Ready)      {:.3} s",
        percentile(&latencies, 0.99).as_secs_f64()
    );
    println!(
        "database reconciles in all        {total_reconciles} ({:.2} per Database)",
        total_reconciles as f64 / count as f64
    );
    println!("operator peak RSS                 {rss:.1} MiB");
    println!(
        "idle {} s: reconciles {idle_reconciles}, operator CPU {:.0} ms ({:.2}% of one core)",
        IDLE_WINDOW.as_secs(),
        idle_cpu.as_secs_f64() * 1000.0,
        100.0 * idle_cpu.as_secs_f64() / IDLE_WINDOW.as_secs_f64()
    );
    for (sessions, took, cores) in &floors {
        println!(
            "floor, {sessions} psql session(s)         {:.2} s   ({cores:.1} cores busy)",
            took.as_secs_f64()
        );
    }
    println!(
        "ratio operator / floor ({best_sessions} sessions)  {:.2}",
        total.as_secs_f64() / best.as_secs_f64()
    );
    for (concurrency, took, cores) in &api_floors {
        println!(
            "API floor, {concurrency:>2} at once            {:.2} s   ({cores:.1} cores busy)",
            took.as_secs_f64()
        );
    }
    // Both floors keep every core busy, and the operator has to do the work of both on the
    // same cores: it cannot finish sooner than their sum.
    let bound = best + api_best;
    println!(
        "PostgreSQL floor + API floor ({api_concurrency} at once) {:.2} s: ratio {:.2} at best on this machine",
        bound.as_secs_f64(),
        bound.as_secs_f64() / best.as_secs_f64()
    );

    for db in api.list(&Default::default()).await.unwrap() {
        let _ = api.delete(&db.name_any(), &DeleteParams::default()).await;
    }
    let cleanup_deadline = Instant::now() + Duration::from_secs(60 + count as u64);
    while !api
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .is_empty()
    {
        if Instant::now() > cleanup_deadline {
            eprintln!("warning: not every Database was deleted");
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The operator is still running: deleting the server waits for it.
    h.finish().await;
    let _ = operator.kill();
    let _ = operator.wait();
}
