//! `silo-operator access`: who can reach each Service and its database, and the pod-to-pod
//! matrix, both evaluated over the NetworkPolicies, Pods and Namespaces in the cluster.

mod report;
mod table;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;

use clap::{Args, Subcommand, ValueEnum};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::ListParams;
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

pub use report::{AccessReport, DatabaseAccess, Inventory, Reach, ServiceAccess, report};
pub use table::render;

use crate::crd::{Database, DatabaseServer, Service};
use crate::reachability::{Cluster, Protocol, Scope};

/// `silo-operator access [--namespace N]... [--output table|json]`, or `access pods ...`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AccessArgs {
    #[command(subcommand)]
    command: Option<AccessCommand>,
    /// Report the Services of this namespace (repeat for more; default: every namespace).
    #[arg(long = "namespace", short = 'n')]
    namespaces: Vec<String>,
    /// `table` or `json`.
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    output: ReportFormat,
    /// The operator's namespace: its pods are expected to reach every database.
    #[arg(long, env = "POD_NAMESPACE", default_value = "silo-system")]
    operator_namespace: String,
}

#[derive(Debug, Subcommand)]
enum AccessCommand {
    /// Print whether each pod can connect to each pod (itself included) on one port, as JSON:
    /// {"port":80,"protocol":"TCP","matrix":{"<ns>/<from>":{"<ns>/<to>":true,...},...}}.
    Pods(PodsArgs),
}

#[derive(Debug, Args)]
struct PodsArgs {
    /// The pods of this namespace (repeat for more; default: every namespace).
    #[arg(long = "namespace", short = 'n')]
    namespaces: Vec<String>,
    /// Destination port.
    #[arg(long)]
    port: u16,
    /// TCP, UDP or SCTP.
    #[arg(long, default_value = "TCP", value_parser = protocol)]
    protocol: Protocol,
    /// Only `json`.
    #[arg(long, short = 'o', value_enum, default_value = "json")]
    output: MatrixFormat,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ReportFormat {
    Table,
    Json,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum MatrixFormat {
    Json,
}

fn protocol(text: &str) -> Result<Protocol, String> {
    text.parse()
        .map_err(|e: crate::reachability::UnknownProtocol| e.to_string())
}

fn scope(namespaces: &[String]) -> Scope {
    if namespaces.is_empty() {
        Scope::AllNamespaces
    } else {
        Scope::Namespaces(namespaces.iter().cloned().collect::<BTreeSet<_>>())
    }
}

/// Runs `access` with the client of `KUBECONFIG` (or the in-cluster service account) and
/// prints the result.
pub async fn run(args: AccessArgs) -> anyhow::Result<()> {
    let client = Client::try_default().await?;
    let text = match args.command {
        Some(AccessCommand::Pods(pods)) => pod_matrix(&client, &pods).await?,
        None => {
            let scope = scope(&args.namespaces);
            let inventory = inventory(&client, &args.namespaces).await?;
            let report = report(&inventory, &scope, &args.operator_namespace);
            match args.output {
                ReportFormat::Table => render(&report),
                ReportFormat::Json => serde_json::to_string_pretty(&report)? + "\n",
            }
        }
    };
    print!("{text}");
    Ok(())
}

async fn pod_matrix(client: &Client, args: &PodsArgs) -> anyhow::Result<String> {
    let MatrixFormat::Json = args.output;
    let namespaces = list(Api::<Namespace>::all(client.clone())).await?;
    // Only the selected pods are sources and targets, and only the policies of their
    // namespaces select them.
    let pods = list_in::<Pod>(client, &args.namespaces).await?;
    let policies = list_in::<NetworkPolicy>(client, &args.namespaces).await?;
    let cluster = Cluster::new(&namespaces, &pods, &policies);
    let matrix = cluster.matrix(&scope(&args.namespaces), args.port, args.protocol);
    Ok(serde_json::to_string(&matrix)? + "\n")
}

/// What a report needs: the Services and Databases of `namespaces`, and every server, Pod,
/// Namespace and NetworkPolicy (any pod may be a caller).
async fn inventory(client: &Client, namespaces: &[String]) -> anyhow::Result<Inventory> {
    Ok(Inventory {
        services: list_in::<Service>(client, namespaces).await?,
        // Every Database: the others on a shared server are its expected callers.
        databases: list_in::<Database>(client, &[]).await?,
        servers: list(Api::<DatabaseServer>::all(client.clone())).await?,
        pods: list_in::<Pod>(client, &[]).await?,
        namespaces: list(Api::<Namespace>::all(client.clone())).await?,
        policies: list_in::<NetworkPolicy>(client, &[]).await?,
    })
}

async fn list<K>(api: Api<K>) -> anyhow::Result<Vec<K>>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    Ok(api.list(&ListParams::default()).await?.items)
}

/// Objects of `namespaces` (every namespace when empty).
async fn list_in<K>(client: &Client, namespaces: &[String]) -> anyhow::Result<Vec<K>>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    if namespaces.is_empty() {
        return list(Api::<K>::all(client.clone())).await;
    }
    let mut all = Vec::new();
    for namespace in namespaces {
        all.extend(list(Api::<K>::namespaced(client.clone(), namespace)).await?);
    }
    Ok(all)
}
