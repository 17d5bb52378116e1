//! Command line: `silo-operator run`, `silo-operator crd` and `silo-operator access`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tokio::sync::watch;

use crate::controller::{OperatorConfig, run_controllers_with};
use crate::health::{Readiness, serve};
use crate::image::ImageRepositories;
use crate::leader::{ElectionConfig, LeaderElector};
use crate::metrics::Metrics;

/// Where `/healthz`, `/readyz` and `/metrics` are served by default: a port of its own, apart
/// from the services' 8080, so that the operator and a service can run side by side.
pub const DEFAULT_METRICS_ADDR: &str = "0.0.0.0:9095";

/// Silo: a database of its own for every service.
#[derive(Debug, Parser)]
#[command(name = "silo-operator", version)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the controllers (uses KUBECONFIG, or the in-cluster service account).
    Run(RunArgs),
    /// Print the CRDs as YAML, or write them into a directory.
    Crd {
        /// Write one file per CRD into this directory instead of printing.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
    /// Who can reach each Service and its database (or, with `pods`, each pod), under the
    /// NetworkPolicies in the cluster.
    Access(crate::access::AccessArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Watch Databases in this namespace only (default: all namespaces).
    #[arg(long, env = "SILO_WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Reconcile only DatabaseServers matching this label selector.
    #[arg(long, env = "SILO_SERVER_SELECTOR")]
    server_selector: Option<String>,
    /// Address of /healthz, /readyz and /metrics (not 8080: the services listen there).
    #[arg(long, env = "SILO_METRICS_ADDR", default_value = DEFAULT_METRICS_ADDR)]
    metrics_addr: SocketAddr,
    /// Reconciles running at once per controller.
    #[arg(long, env = "SILO_CONCURRENCY", default_value_t = 16)]
    concurrency: u16,
    /// Admin connections per database server: the most admin statements running there at
    /// once. Each CREATE DATABASE copies a whole database; a few at once keep a server busy,
    /// more slow every one of them down.
    #[arg(long, env = "SILO_ADMIN_POOL_SIZE", default_value_t = 3)]
    admin_pool_size: u32,
    /// Log format.
    #[arg(long, env = "SILO_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    /// The operator's own namespace (server NetworkPolicies admit it; holds the leader Lease).
    #[arg(long, env = "POD_NAMESPACE", default_value = "silo-system")]
    operator_namespace: String,
    /// This replica's identity in the leader Lease and in Events (default: host name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Name of the leader-election Lease.
    #[arg(long, env = "SILO_LEASE_NAME", default_value = "silo-operator-leader")]
    lease_name: String,
    /// How often a healthy object is checked again for drift, e.g. `5m`.
    #[arg(long, env = "SILO_DRIFT_INTERVAL", default_value = "5m", value_parser = humantime::parse_duration)]
    drift_interval: Duration,
    /// Repository of the PostgreSQL image a server runs when its spec names no image (tagged
    /// with the version), e.g. a mirror in a private registry.
    #[arg(long, env = "SILO_POSTGRES_IMAGE_REPOSITORY", default_value = "postgres", value_parser = image_repository)]
    postgres_image_repository: String,
    /// Repository of the MongoDB image a server runs when its spec names no image (tagged with
    /// the version).
    #[arg(long, env = "SILO_MONGODB_IMAGE_REPOSITORY", default_value = "mongo", value_parser = image_repository)]
    mongodb_image_repository: String,
}

/// An image repository such as `registry.example.com/mirror/postgres` (no tag).
fn image_repository(text: &str) -> Result<String, String> {
    crate::image::parse_repository(text).map_err(|why| format!("image repository {text:?} {why}"))
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Crd { out_dir } => print_or_write_crds(out_dir),
        Command::Run(args) => block_on(run(args)),
        Command::Access(args) => block_on(crate::access::run(args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("silo-operator: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn block_on(task: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(task))
}

fn print_or_write_crds(out_dir: Option<PathBuf>) -> anyhow::Result<()> {
    match out_dir {
        Some(dir) => crate::crd_yaml::write_crds(&dir),
        None => {
            for (_, text) in crate::crd_yaml::crd_files()? {
                println!("---\n{text}");
            }
            Ok(())
        }
    }
}

/// Logs go to stderr, coloured only when stderr is a terminal (a file or a log collector gets
/// no escape codes).
fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn termination() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}

/// The controllers' settings from the command line; `identity` names this replica in Events.
fn operator_config(args: RunArgs, identity: String) -> OperatorConfig {
    OperatorConfig {
        namespace: args.namespace,
        server_selector: args.server_selector,
        operator_namespace: args.operator_namespace,
        concurrency: args.concurrency,
        drift_interval: args.drift_interval,
        admin_pool_size: args.admin_pool_size,
        instance: Some(identity),
        images: ImageRepositories {
            postgres: args.postgres_image_repository,
            mongodb: args.mongodb_image_repository,
        },
        ..OperatorConfig::default()
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    init_logging(args.log_format);
    let client = kube::Client::try_default().await?;
    let identity = args
        .identity
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("silo-operator-{}", std::process::id()));
    let metrics = Arc::new(Metrics::default());
    let readiness = Arc::new(Readiness::default());
    let (stop, stopped) = watch::channel(false);

    let mut stop_http = stopped.clone();
    let http = tokio::spawn(serve(
        args.metrics_addr,
        metrics.clone(),
        readiness.clone(),
        async move {
            let _ = stop_http.wait_for(|s| *s).await;
        },
    ));
    // Standbys are ready too: they serve health and take over when the leader goes.
    readiness.set(true);

    let elector = LeaderElector::new(
        client.clone(),
        ElectionConfig::new(&args.operator_namespace, &args.lease_name, &identity),
    );
    tracing::info!(%identity, lease = %args.lease_name, "waiting to become leader");
    tokio::select! {
        () = elector.acquire() => {},
        () = termination() => {
            let _ = stop.send(true);
            let _ = http.await;
            return Ok(());
        }
    }
    tracing::info!(%identity, "became leader; starting controllers");
    metrics.set_leader(true);

    let config = operator_config(args, identity);
    let mut controllers = tokio::spawn(run_controllers_with(
        client,
        config,
        metrics.clone(),
        stopped.clone(),
    ));
    let outcome = tokio::select! {
        () = elector.hold() => {
            // Another replica may act as soon as our lease runs out: stop at once.
            controllers.abort();
            Err(anyhow::anyhow!("lost leadership; exiting so that a standby takes over"))
        }
        () = termination() => {
            tracing::info!("terminating: letting running reconciles finish");
            let _ = stop.send(true);
            if tokio::time::timeout(Duration::from_secs(20), &mut controllers).await.is_err() {
                controllers.abort();
            }
            if let Err(e) = elector.release().await {
                tracing::warn!(error = %e, "cannot release the leader Lease");
            }
            Ok(())
        }
        _ = &mut controllers => Err(anyhow::anyhow!("controllers stopped unexpectedly")),
    };
    metrics.set_leader(false);
    let _ = stop.send(true);
    let _ = http.await;
    outcome
}
