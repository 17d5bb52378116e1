//! The `silo-cluster-dns` binary: `watch` feeds dnsmasq, `remove-etc-hosts-block` cleans up
//! after a watcher that was killed.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use silo_cluster_dns::{WatchConfig, etc_hosts, run};

/// Cluster DNS records for the local test environment, served by dnsmasq.
#[derive(Debug, Parser)]
#[command(name = "silo-cluster-dns", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Watch Services and Endpoints (KUBECONFIG, or the in-cluster service account) and
    /// keep the hosts files in step until SIGTERM or Ctrl-C, then remove the /etc/hosts block.
    Watch(WatchArgs),
    /// Remove the silo-cluster-dns block from a hosts file (what a killed watcher leaves).
    RemoveEtcHostsBlock {
        /// The hosts file.
        #[arg(long, default_value = "/etc/hosts")]
        etc_hosts: PathBuf,
    },
}

#[derive(Debug, Args)]
struct WatchArgs {
    /// Directory dnsmasq reads with --hostsdir; the records go to cluster.hosts in it.
    #[arg(long)]
    hosts_dir: PathBuf,
    /// Also keep the records in a marked block of this hosts file (the host's /etc/hosts).
    #[arg(long)]
    etc_hosts: Option<PathBuf>,
    /// The cluster's DNS domain (the kubelet's clusterDomain).
    #[arg(long, default_value = "cluster.local", value_parser = clap::builder::NonEmptyStringValueParser::new())]
    cluster_domain: String,
    /// Shortest time between two rewrites, e.g. `200ms`.
    #[arg(long, default_value = "200ms", value_parser = humantime::parse_duration)]
    min_interval: Duration,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Command::Watch(args) => watch(args),
        Command::RemoveEtcHostsBlock { etc_hosts } => etc_hosts::remove_block(&etc_hosts)
            .map(|removed| {
                if removed {
                    tracing::info!(file = %etc_hosts.display(), "cluster records removed");
                }
            })
            .map_err(anyhow::Error::from),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("silo-cluster-dns: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn watch(args: WatchArgs) -> anyhow::Result<()> {
    let config = WatchConfig {
        hosts_dir: args.hosts_dir,
        etc_hosts: args.etc_hosts,
        cluster_domain: args.cluster_domain,
        min_interval: args.min_interval,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let client = kube::Client::try_default().await?;
        run(client, config, termination()).await?;
        Ok(())
    })
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

async fn termination() {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}
