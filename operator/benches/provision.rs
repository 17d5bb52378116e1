//! Provisioning benchmark (a command, not a timed test):
//!
//! ```sh
//! cargo bench -p silo-operator --bench provision -- --count 200    # or --count 1000
//! ```
//!
//! Creates N `Database`s on one external PostgreSQL `DatabaseServer` (the local one from
//! `tests/env/up`) with the controller running in this process, and prints the time until all
//! are Ready, per-database latency (creation to Ready) p50/p99, and this process's peak RSS. In
//! the same run it measures the floor: the same N `CREATE ROLE` + `CREATE DATABASE` statements
//! sent by plain `psql` sessions, 1, 2, 4 and 8 in parallel, and prints operator/fastest floor.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/integration/harness.rs"]
#[allow(dead_code)]
mod harness;

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::ResourceExt;
use kube::api::{DeleteParams, PostParams};
use silo_operator::crd::DeletionPolicy;

use harness::{DatabaseFixture, Harness};

fn count_arg() -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--count")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(200)
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// The floor: N role+database pairs from `sessions` parallel psql processes.
fn psql_floor(count: usize, sessions: usize, tag: &str) -> Duration {
    let url = silo_testenv::postgres_admin_url();
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
            let mut child = Command::new("psql")
                .args([url.as_str(), "-q", "-v", "ON_ERROR_STOP=1"])
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
    let mut script = String::new();
    for i in 0..count {
        let name = format!("floor_{tag}_{i}");
        script.push_str(&format!(
            "DROP DATABASE \"{name}\";\nDROP ROLE \"{name}\";\n"
        ));
    }
    let mut child = Command::new("psql")
        .args([url.as_str(), "-q"])
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
    took
}

#[tokio::main]
async fn main() {
    let count = count_arg();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let h = Harness::start("silo-bench").await;
    let api = h.databases();
    println!("creating {count} Databases on one external PostgreSQL server");

    let started = Instant::now();
    let created: HashMap<String, Instant> = futures::stream::iter(0..count)
        .map(|i| {
            let api = api.clone();
            let server = h.server.clone();
            async move {
                let name = format!("db-{i}");
                let db = DatabaseFixture::shared_on(&server)
                    .owner(&format!("svc-{i}"))
                    .deletion(DeletionPolicy::Delete)
                    .build(&name);
                api.create(&PostParams::default(), &db).await.unwrap();
                (name, Instant::now())
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;

    let mut ready_at: HashMap<String, Instant> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(60 + count as u64);
    while ready_at.len() < count {
        assert!(Instant::now() < deadline, "not all Databases became Ready");
        for db in api.list(&Default::default()).await.unwrap() {
            let ready = db.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            });
            if ready {
                ready_at.entry(db.name_any()).or_insert_with(Instant::now);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let total = started.elapsed();
    let mut latencies: Vec<Duration> = ready_at
        .iter()
        .map(|(name, at)| at.duration_since(created[name]))
        .collect();
    latencies.sort();
    let rss = peak_rss_mib();

    let tag = silo_testenv::unique_suffix();
    let floors: Vec<(usize, Duration)> = [1, 2, 4, 8]
        .into_iter()
        .map(|sessions| {
            (
                sessions,
                psql_floor(count, sessions, &format!("{tag}_{sessions}")),
            )
        })
        .collect();
    let (best_sessions, best) = floors.iter().min_by_key(|(_, d)| *d).copied().unwrap();

    println!("all {count} Ready after      {:.2} s", total.as_secs_f64());
    println!(
        "latency p50                  {:.2} s",
        percentile(&latencies, 0.50).as_secs_f64()
    );
    println!(
        "latency p99                  {:.2} s",
        percentile(&latencies, 0.99).as_secs_f64()
    );
    println!("peak RSS (operator + bench)  {rss:.1} MiB");
    for (sessions, took) in &floors {
        println!(
            "floor, {sessions} psql session(s)    {:.2} s",
            took.as_secs_f64()
        );
    }
    println!(
        "ratio operator / floor ({best_sessions} sessions)  {:.2}",
        total.as_secs_f64() / best.as_secs_f64()
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
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    h.finish().await;
}
