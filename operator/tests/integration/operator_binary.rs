//! The operator binary as users run it: what it logs (one INFO line per action, WARN for every
//! failure, never a secret, no colour codes when stderr is no terminal, a missing Lease
//! namespace once with the fix) and the metrics it serves.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::Api;
use serde_json::json;
use silo_operator::crd::DatabaseServer;

use crate::harness::{Harness, admin_connection, eventually, nudge, server_not_ready};

/// Collects every log line of this test process (nextest runs each test in its own process).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    fn install() -> Self {
        let logs = Logs::default();
        let sink = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_env_filter(tracing_subscriber::EnvFilter::new("silo_operator=info"))
            .with_writer(move || sink.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("one subscriber per test process");
        logs
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    fn lines_with(&self, level: &str, needle: &str) -> Vec<String> {
        self.text()
            .lines()
            .filter(|l| l.contains(level) && l.contains(needle))
            .map(str::to_string)
            .collect()
    }
}

impl Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn every_action_is_one_info_line_and_every_failure_a_warning_without_secrets() {
    let logs = Logs::install();
    let h = Harness::start("silo-logs").await;
    h.create_shared("logged").await;
    let db = h.wait_ready("logged").await;
    let database = db.status.unwrap().database_name.unwrap();
    let key = format!("Database/{}/logged", h.ns());
    let first_password = h.secret("logged-db").await["password"].clone();

    nudge(&h.databases(), "logged", "silo.dev/rotate", "1").await;
    let rotated = eventually("the rotation", || {
        let h = &h;
        let first = first_password.clone();
        async move {
            let now = h.secret("logged-db").await["password"].clone();
            (now != first).then_some(now)
        }
    })
    .await;

    // Drift: someone opens the database to everybody; the next pass repairs it.
    let mut admin = admin_connection().await;
    sqlx::raw_sql(&format!(
        "GRANT CONNECT ON DATABASE \"{database}\" TO PUBLIC"
    ))
    .execute(&mut admin)
    .await
    .unwrap();
    nudge(&h.databases(), "logged", "silo.dev/check-now", "1").await;
    eventually("a drift repair to be logged", || async {
        (!logs.lines_with("INFO", "drift repaired").is_empty()).then_some(())
    })
    .await;
    h.delete_and_wait("logged").await;

    // A server that refuses the admin login: a warning, not silence.
    let wrong: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": { "name": "wrong-admin", "namespace": h.ns() },
        "stringData": { "username": "silo_nobody", "password": "wrong-password-123" },
    }))
    .unwrap();
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(h.client.clone(), h.ns())
        .create(&Default::default(), &wrong)
        .await
        .unwrap();
    let servers = Api::<DatabaseServer>::all(h.client.clone());
    let mut spec = serde_json::to_value(servers.get(&h.server).await.unwrap().spec).unwrap();
    spec["external"]["adminSecretRef"]["name"] = json!("wrong-admin");
    let unreachable = format!("refused-{}", h.ns());
    let server: DatabaseServer = serde_json::from_value(json!({
        "apiVersion": "silo.dev/v1alpha1", "kind": "DatabaseServer",
        "metadata": { "name": unreachable, "labels": { "silo.dev/test-scope": h.ns() } },
        "spec": spec,
    }))
    .unwrap();
    servers.create(&Default::default(), &server).await.unwrap();
    server_not_ready(&h.client, &unreachable, "ServerUnreachable").await;
    eventually("the unreachable server to be warned about", || async {
        (!logs.lines_with("WARN", &unreachable).is_empty()).then_some(())
    })
    .await;
    servers
        .delete(&unreachable, &Default::default())
        .await
        .unwrap();
    h.wait_server_gone(&unreachable).await;
    let admin_password = h.secret("pg-admin").await["password"].clone();
    h.finish().await;

    for (what, count) in [
        ("provisioned", 1),
        ("password rotated", 1),
        ("deleted: deletionPolicy Delete", 1),
    ] {
        let found = logs.lines_with("INFO", what);
        let mine: Vec<&String> = found.iter().filter(|l| l.contains(&key)).collect();
        assert_eq!(mine.len(), count, "{what}: {}", logs.text());
    }
    let repaired = logs.lines_with("INFO", "drift repaired");
    assert!(
        repaired
            .iter()
            .any(|l| l.contains(&key) && l.contains("PUBLIC")),
        "the repair says what it repaired: {repaired:?}"
    );
    let warned = logs.lines_with("WARN", &unreachable);
    assert!(
        warned.iter().any(|l| l.contains("ServerUnreachable")),
        "{warned:?}"
    );
    let text = logs.text();
    for secret in [
        &first_password,
        &rotated,
        &admin_password,
        &"wrong-password-123".to_string(),
    ] {
        assert!(
            !text.contains(secret.as_str()),
            "a password reached the log"
        );
    }
    assert!(!text.contains("Status {"), "no debug dumps: {text}");
}

#[tokio::test]
async fn the_binary_reports_a_missing_lease_namespace_once_without_colour() {
    let namespace = format!("silo-absent-{}", std::process::id());
    let mut child = Command::new(env!("CARGO_BIN_EXE_silo-operator"))
        .args([
            "run",
            "--operator-namespace",
            &namespace,
            "--metrics-addr",
            "127.0.0.1:0",
            "--identity",
            "logs-test",
        ])
        .env("KUBECONFIG", silo_testenv::require("KUBECONFIG"))
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the operator binary starts");
    // Several retry periods (2 s each) of waiting for the Lease.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains('\u{1b}'),
        "colour codes on a non-terminal: {stderr:?}"
    );
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains(&format!("kubectl create namespace {namespace}"))
            && errors[0].contains("--operator-namespace"),
        "{stderr}"
    );
    assert!(!stderr.contains("WARN"), "{stderr}");
}

/// `GET path` from `127.0.0.1:port`, the body if it answered.
async fn http_get(port: u16, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    Some(response.split_once("\r\n\r\n")?.1.to_string())
}

#[tokio::test]
async fn the_binary_exports_leader_build_and_process_metrics() {
    let client = silo_testenv::kube_client().await;
    let ns = silo_testenv::TestNamespace::create(&client, "silo-metrics").await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_silo-operator"))
        .args([
            "run",
            "--namespace",
            ns.name(),
            "--server-selector",
            &format!("silo.dev/test-scope={}", ns.name()),
            "--operator-namespace",
            ns.name(),
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
            "--identity",
            "metrics-test",
        ])
        .env("KUBECONFIG", silo_testenv::require("KUBECONFIG"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the operator binary starts");
    let text = eventually("the operator to report itself leader", || async {
        let text = http_get(port, "/metrics").await?;
        text.contains("silo_leader 1").then_some(text)
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        text.contains(&format!(
            "silo_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )),
        "{text}"
    );
    for name in [
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
    ] {
        assert!(text.contains(name), "{name}: {text}");
    }
}

#[test]
fn the_default_metrics_port_is_not_the_services_port() {
    let kit = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../services/kit/src/config.rs"),
    )
    .unwrap();
    let services: std::net::SocketAddr = kit
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("pub const DEFAULT_LISTEN_ADDR: &str = \"")
        })
        .and_then(|rest| rest.strip_suffix("\";"))
        .expect("services/kit declares DEFAULT_LISTEN_ADDR")
        .parse()
        .unwrap();
    let operator: std::net::SocketAddr = silo_operator::cli::DEFAULT_METRICS_ADDR.parse().unwrap();
    assert_ne!(operator.port(), services.port());
}
