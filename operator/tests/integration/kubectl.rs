//! What `kubectl` shows about Silo's objects: `describe` with their Events, `get` with the
//! columns of the CRDs (printed by the API server: `kubectl get` asks for a Table).

use kube::api::PostParams;
use kube::{Api, ResourceExt};
use serde_json::json;
use silo_operator::crd::DatabaseServer;

use crate::harness::{DatabaseFixture, Harness, described_events, eventually};

#[tokio::test]
async fn a_database_servers_events_show_in_kubectl_describe() {
    let h = Harness::start("silo-describe").await;
    let servers = Api::<DatabaseServer>::all(h.client.clone());
    let name = format!("bad-{}", h.ns());
    let invalid: DatabaseServer = serde_json::from_value(json!({
        "apiVersion": "silo.dev/v1alpha1",
        "kind": "DatabaseServer",
        "metadata": { "name": name, "labels": { "silo.dev/test-scope": h.ns() } },
        "spec": { "engine": "postgres" },
    }))
    .unwrap();
    let created = servers
        .create(&PostParams::default(), &invalid)
        .await
        .unwrap();
    let uid = created.uid().unwrap();
    let shown = eventually("describe to show the server's InvalidSpec Event", || {
        let client = h.client.clone();
        let (name, uid) = (name.clone(), uid.clone());
        async move {
            let events = described_events(&client, "DatabaseServer", "", &name, &uid).await;
            events
                .into_iter()
                .find(|e| e.reason.as_deref() == Some("InvalidSpec"))
        }
    })
    .await;
    assert_eq!(shown.type_.as_deref(), Some("Warning"));
    assert!(
        shown
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("exactly one of managed or external"),
        "{shown:?}"
    );
    servers.delete(&name, &Default::default()).await.unwrap();
    h.wait_server_gone(&name).await;
    h.finish().await;
}

/// The column names and rows `kubectl get` would print for the list at `path`.
async fn table(client: &kube::Client, path: &str) -> (Vec<String>, Vec<Vec<serde_json::Value>>) {
    let request = axum::http::Request::get(path)
        .header(
            "Accept",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        )
        .body(Vec::new())
        .unwrap();
    let text = client.request_text(request).await.unwrap();
    let table: serde_json::Value = serde_json::from_str(&text).unwrap();
    let columns = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    let rows = table["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["cells"].as_array().unwrap().clone())
        .collect();
    (columns, rows)
}

/// The row whose first cell (the name) is `name`, as column → text.
fn row_named(
    (columns, rows): &(Vec<String>, Vec<Vec<serde_json::Value>>),
    name: &str,
) -> std::collections::BTreeMap<String, String> {
    let row = rows
        .iter()
        .find(|cells| cells[0] == name)
        .unwrap_or_else(|| panic!("no row {name} in {rows:?}"));
    columns
        .iter()
        .cloned()
        .zip(
            row.iter()
                .map(|c| c.as_str().map_or_else(|| c.to_string(), str::to_string)),
        )
        .collect()
}

#[tokio::test]
async fn kubectl_get_shows_server_type_host_and_the_reason_of_ready() {
    let h = Harness::start("silo-columns").await;
    h.create_shared("orders").await;
    h.create(
        &DatabaseFixture::shared_on("missing-server")
            .owner("lost")
            .build("lost"),
    )
    .await;
    h.wait_ready("orders").await;
    h.wait_condition("lost", "Ready", "False").await;

    let databases = table(
        &h.client,
        &format!("/apis/silo.dev/v1alpha1/namespaces/{}/databases", h.ns()),
    )
    .await;
    assert_eq!(
        databases.0,
        [
            "Name", "Engine", "Owner", "Server", "Ready", "Reason", "Secret", "Age"
        ]
    );
    let orders = row_named(&databases, "orders");
    assert_eq!(orders["Server"], h.server);
    assert_eq!(
        (orders["Ready"].as_str(), orders["Reason"].as_str()),
        ("True", "Ready")
    );
    let lost = row_named(&databases, "lost");
    assert_eq!(lost["Server"], "missing-server");
    assert_eq!(
        (lost["Ready"].as_str(), lost["Reason"].as_str()),
        ("False", "ServerNotFound")
    );

    let servers = table(&h.client, "/apis/silo.dev/v1alpha1/databaseservers").await;
    assert_eq!(
        servers.0,
        [
            "Name", "Engine", "Type", "Host", "Ready", "Reason", "Version", "Age"
        ]
    );
    let server = row_named(&servers, &h.server);
    assert_eq!(server["Type"], "external");
    assert_eq!(server["Host"], "127.0.0.1");
    assert_eq!(
        (server["Ready"].as_str(), server["Reason"].as_str()),
        ("True", "Ready")
    );
    h.finish().await;
}

/// Every object in `schema` below `path`: its path and the names of its properties (array
/// items are looked through, as `kubectl explain` does).
fn object_paths(path: &str, schema: &serde_json::Value, out: &mut Vec<(String, Vec<String>)>) {
    if let Some(items) = schema.get("items") {
        return object_paths(path, items, out);
    }
    let Some(properties) = schema.get("properties").and_then(|p| p.as_object()) else {
        return;
    };
    if !path.is_empty() {
        out.push((path.to_string(), properties.keys().cloned().collect()));
    }
    for (name, nested) in properties {
        let nested_path = if path.is_empty() {
            name.clone()
        } else {
            format!("{path}.{name}")
        };
        // Objects kubectl leaves to Kubernetes' own explanation (resources, conditions'
        // metadata) have no properties of ours; metadata is the API server's.
        if nested_path != "metadata" {
            object_paths(&nested_path, nested, out);
        }
    }
}

/// Which of `fields` the `kubectl explain` output `text` does not list with a type.
fn unexplained(text: &str, fields: &[String]) -> Vec<String> {
    fields
        .iter()
        .filter(|field| {
            !text.lines().any(|line| {
                let mut parts = line.split_whitespace();
                parts.next() == Some(field.as_str())
                    && parts
                        .next()
                        .is_some_and(|kind| kind != "<>" && kind.len() > 2)
            })
        })
        .cloned()
        .collect()
}

fn kubectl_explain(api_version: &str, target: &str) -> String {
    let output = std::process::Command::new("kubectl")
        .args(["explain", target, "--api-version", api_version])
        .env("KUBECONFIG", silo_testenv::require("KUBECONFIG"))
        .output()
        .expect("kubectl runs (tests/env/up installs it)");
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test]
async fn kubectl_explain_shows_every_nested_field_of_every_crd() {
    let client = silo_testenv::kube_client().await;
    crate::harness::install_crds(&client).await;
    for crd in silo_operator::crd::all_crds() {
        let plural = crd.spec.names.plural.clone();
        let version = &crd.spec.versions[0];
        let api_version = format!("{}/{}", crd.spec.group, version.name);
        let schema = serde_json::to_value(
            version
                .schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref())
                .unwrap(),
        )
        .unwrap();
        let mut objects = Vec::new();
        object_paths("", &schema, &mut objects);
        assert!(objects.iter().any(|(path, _)| path == "spec"), "{plural}");
        for (path, fields) in objects {
            let target = format!("{plural}.{path}");
            // The API server publishes a changed CRD's schema a few seconds after it.
            let missing = eventually(
                &format!("kubectl explain {target} to list {fields:?}"),
                || {
                    let (api_version, target, fields) =
                        (api_version.clone(), target.clone(), fields.clone());
                    async move {
                        let text = tokio::task::spawn_blocking(move || {
                            kubectl_explain(&api_version, &target)
                        })
                        .await
                        .unwrap();
                        let missing = unexplained(&text, &fields);
                        missing.is_empty().then_some(missing)
                    }
                },
            )
            .await;
            assert!(missing.is_empty());
        }
    }
}

#[test]
fn an_explained_field_needs_a_type() {
    let text = "FIELDS:\n   dedicated\t<>\n     A server.\n\n   serverRef\t<string>\n";
    assert_eq!(
        unexplained(
            text,
            &["dedicated".into(), "serverRef".into(), "absent".into()]
        ),
        ["dedicated", "absent"]
    );
}
