//! The README's Database section and every file of `examples/`, done the way a user does them
//! on the local environment: the section's shell blocks run in bash and its YAML blocks go to
//! `kubectl apply`, in order, with the operator binary started where the README starts it; then
//! each example is applied with `kubectl apply -f` and waited for with the `kubectl wait` its
//! header documents. A README or an example that no longer works fails this test.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use serde_yaml::Value;
use silo_operator::crd::{Database, DatabaseServer};
use sqlx::Connection;

use crate::crds::example_documents;
use crate::harness::{eventually, eventually_within};

const TEST_NAME: &str =
    "integration::readme_examples::the_readme_database_section_and_every_example_work_as_written";

/// Pods starting, and namespaces draining theirs, on two cores shared with other tests.
const POD_LIMIT: Duration = Duration::from_secs(300);

/// Where the README starts the operator; the test starts the binary there instead.
const OPERATOR_COMMAND: &str = "cargo run -p silo-operator -- ";

/// The image variable of a MongoDB image the node can run (`tests/images/build` makes none).
const MONGODB_IMAGES: &str = "SILO_MONGODB_IMAGE_REPOSITORY";

fn repo_path(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// A fenced block of Markdown.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Block {
    Shell(String),
    Yaml(String),
}

fn block(info: &str, text: String) -> Block {
    match info {
        "sh" | "bash" => Block::Shell(text),
        "yaml" => Block::Yaml(text),
        other => panic!("a README block of unknown language {other:?}"),
    }
}

/// The fenced blocks of the Markdown section whose heading starts with `heading`, in order.
fn section_blocks(markdown: &str, heading: &str) -> Vec<Block> {
    let mut lines = markdown.lines().skip_while(|l| !l.starts_with(heading));
    assert!(lines.next().is_some(), "no section {heading:?}");
    let mut blocks = Vec::new();
    let mut open: Option<(String, Vec<&str>)> = None;
    for line in lines {
        if let Some((info, body)) = open.as_mut() {
            if line.starts_with("```") {
                blocks.push(block(info, body.join("\n") + "\n"));
                open = None;
            } else {
                body.push(line);
            }
        } else if line.starts_with("## ") {
            break;
        } else if let Some(info) = line.strip_prefix("```") {
            open = Some((info.trim().to_string(), Vec::new()));
        }
    }
    blocks
}

/// A README section as one shell session: what runs before the operator starts, the
/// operator's arguments, and what runs after.
#[derive(Debug, PartialEq, Eq)]
struct Walkthrough {
    before: String,
    operator_args: Vec<String>,
    after: String,
}

/// The section's blocks as bash: shell blocks as they are, each YAML block through
/// `kubectl apply -f -`, and the line that starts the operator taken out.
fn walkthrough(blocks: &[Block]) -> Walkthrough {
    let mut script = String::new();
    let mut split: Option<(usize, Vec<String>)> = None;
    for block in blocks {
        match block {
            Block::Shell(text) => {
                for line in text.lines() {
                    match line.trim_start().strip_prefix(OPERATOR_COMMAND) {
                        Some(rest) => {
                            assert!(split.is_none(), "the section starts the operator twice");
                            let args = rest.split('#').next().unwrap_or_default();
                            let args = args.split_whitespace().map(str::to_string).collect();
                            split = Some((script.len(), args));
                        }
                        None => {
                            script.push_str(line);
                            script.push('\n');
                        }
                    }
                }
            }
            Block::Yaml(text) => {
                script.push_str(&format!("kubectl apply -f - <<'YAML'\n{text}YAML\n"));
            }
        }
    }
    let (at, operator_args) = split.expect("the section starts the operator with cargo run");
    Walkthrough {
        before: script[..at].to_string(),
        operator_args,
        after: script[at..].to_string(),
    }
}

/// The `kubectl … wait …` commands of an example's header comment: the state it documents.
fn documented_waits(text: &str) -> Vec<String> {
    text.lines()
        .map_while(|line| line.strip_prefix('#'))
        .map(str::trim)
        .filter(|comment| comment.starts_with("kubectl ") && comment.contains(" wait "))
        .map(str::to_string)
        .collect()
}

/// The README's Database section.
fn readme_database_section() -> Vec<Block> {
    let readme = std::fs::read_to_string(repo_path("README.md")).unwrap();
    section_blocks(&readme, "## Database")
}

/// The example files, sorted, each with its YAML documents.
fn example_files() -> Vec<(PathBuf, Vec<Value>)> {
    let mut files: Vec<(PathBuf, Vec<Value>)> = Vec::new();
    for (path, document) in example_documents() {
        match files.last_mut() {
            Some((last, documents)) if *last == path => documents.push(document),
            _ => files.push((path, vec![document])),
        }
    }
    files
}

fn file_name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn the_readme_database_section_starts_the_operator_once_and_shows_only_examples() {
    let blocks = readme_database_section();
    let walk = walkthrough(&blocks);
    assert_eq!(walk.operator_args, ["run"]);
    assert!(walk.before.contains("kubectl create namespace silo-system"));
    let documents: Vec<Value> = example_documents().into_iter().map(|(_, d)| d).collect();
    for block in &blocks {
        if let Block::Yaml(text) = block {
            let shown: Value = serde_yaml::from_str(text).unwrap();
            assert!(
                documents.contains(&shown),
                "the README shows a resource no file of examples/ holds:\n{text}"
            );
        }
    }
    for (path, _) in example_files() {
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            !documented_waits(&text).is_empty(),
            "{}: its header names no `kubectl wait` for the state it reaches",
            path.display()
        );
    }
}

#[test]
fn a_section_is_read_block_by_block_up_to_the_next_heading() {
    let markdown = "# T\n## Database: x\ntext\n```sh\nkubectl apply -f crds/\ncargo run -p silo-operator -- run --flag  # comment\necho after\n```\n\n```yaml\nkind: A\n```\n## Next\n```sh\nnot this\n```\n";
    let blocks = section_blocks(markdown, "## Database");
    assert_eq!(
        blocks,
        [
            Block::Shell(
                "kubectl apply -f crds/\ncargo run -p silo-operator -- run --flag  # comment\necho after\n"
                    .into()
            ),
            Block::Yaml("kind: A\n".into()),
        ]
    );
    assert_eq!(
        walkthrough(&blocks),
        Walkthrough {
            before: "kubectl apply -f crds/\n".into(),
            operator_args: vec!["run".into(), "--flag".into()],
            after: "echo after\nkubectl apply -f - <<'YAML'\nkind: A\nYAML\n".into(),
        }
    );
    let example = "# About it.\n#   kubectl -n a create secret x\n#   kubectl -n a wait --for=condition=Ready database.silo.dev/x\napiVersion: v1\n# kubectl wait later\n";
    assert_eq!(
        documented_waits(example),
        ["kubectl -n a wait --for=condition=Ready database.silo.dev/x"]
    );
}

/// Runs `script` in bash from the repository root after `source target/silo-env/env.sh` (as
/// the README's quick start has the user do), stopping at the first failing command.
async fn bash(script: &str) -> Output {
    let env = silo_testenv::env_dir().join("env.sh");
    let session = format!("set -euo pipefail\nsource '{}'\n{script}", env.display());
    tokio::process::Command::new("bash")
        .arg("-c")
        .arg(session)
        .current_dir(repo_path(""))
        .stdin(Stdio::null())
        .output()
        .await
        .expect("bash runs")
}

/// Fails with `what`, the session's stderr and `context` unless the session succeeded. Its
/// stdout is never shown: the README prints the login there.
fn assert_ran(what: &str, output: &Output, context: &str) {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{context}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The operator binary, started as the README starts it plus what keeps it off other tests'
/// objects: Databases of the examples' namespace only, and only DatabaseServers without the
/// `silo.dev/test-scope` label that every other test's server carries.
struct Operator {
    child: std::process::Child,
    log: PathBuf,
}

impl Operator {
    fn start(readme_args: &[String], databases_namespace: &str) -> Self {
        let mut args = readme_args.to_vec();
        for (flag, value) in [
            ("--namespace", databases_namespace),
            ("--server-selector", "!silo.dev/test-scope"),
            ("--metrics-addr", "127.0.0.1:0"),
            ("--identity", "readme-examples"),
            ("--lease-name", "silo-readme-examples"),
        ] {
            args.extend([flag.to_string(), value.to_string()]);
        }
        // As the README says for the local environment: servers run the images made for it.
        for (flag, var) in [
            (
                "--postgres-image-repository",
                "SILO_POSTGRES_IMAGE_REPOSITORY",
            ),
            ("--mongodb-image-repository", MONGODB_IMAGES),
        ] {
            if let Some(repository) = silo_testenv::image_if_built(var) {
                args.extend([flag.to_string(), repository]);
            }
        }
        let log = std::env::temp_dir().join(format!("silo-readme-{}.log", std::process::id()));
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_silo-operator"))
            .args(&args)
            .env("KUBECONFIG", silo_testenv::require("KUBECONFIG"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("the operator binary starts");
        Self { child, log }
    }

    /// The operator's last log lines (it never logs a secret).
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(30)..].join("\n");
        format!("operator log (last lines):\n{tail}")
    }

    /// Stops it as a user's Ctrl-C would, so that it releases its Lease.
    async fn stop(mut self) {
        let pid = self.child.id().to_string();
        let _ = tokio::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .await;
        for _ in 0..100 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// What the README and the examples make: namespaces, DatabaseServers, and the names on the
/// local PostgreSQL of the Databases on a shared server (`deletionPolicy: Retain` keeps them).
#[derive(Clone, Debug, Default)]
struct Footprint {
    namespaces: Vec<String>,
    servers: Vec<String>,
    databases_namespace: String,
    retained: Vec<String>,
}

fn footprint(files: &[(PathBuf, Vec<Value>)]) -> Footprint {
    let mut footprint = Footprint::default();
    for document in files.iter().flat_map(|(_, documents)| documents) {
        let name = document["metadata"]["name"].as_str().unwrap().to_string();
        match document["kind"].as_str() {
            Some("Namespace") => footprint.namespaces.push(name),
            Some("DatabaseServer") => footprint.servers.push(name),
            Some("Database") => {
                let namespace = document["metadata"]["namespace"].as_str().unwrap();
                assert!(
                    footprint.databases_namespace.is_empty()
                        || footprint.databases_namespace == namespace,
                    "the examples' Databases share one namespace"
                );
                footprint.databases_namespace = namespace.to_string();
                if document["spec"]["server"]["serverRef"].is_string() {
                    footprint
                        .retained
                        .push(silo_operator::names::derive_server_name(
                            namespace,
                            &name,
                            silo_operator::names::POSTGRES_IDENTIFIER_LIMIT,
                        ));
                }
            }
            _ => {}
        }
    }
    for list in [&mut footprint.namespaces, &mut footprint.servers] {
        list.sort();
        list.dedup();
    }
    footprint
}

/// Deletes `names` and waits until they are gone; strips their finalizers first unless an
/// operator runs to release them.
async fn delete_all<K>(api: &Api<K>, names: &[String], operator_running: bool)
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    for name in names {
        if !operator_running {
            let strip = json!({ "metadata": { "finalizers": null } });
            let _ = api
                .patch(name, &PatchParams::default(), &Patch::Merge(strip))
                .await;
        }
        let _ = api.delete(name, &DeleteParams::background()).await;
    }
    for name in names {
        eventually_within(POD_LIMIT, &format!("{name} to be deleted"), || {
            let api = api.clone();
            async move { api.get_opt(name).await.ok()?.is_none().then_some(()) }
        })
        .await;
    }
}

/// Deletes the examples' Databases, then their servers.
async fn remove_resources(client: &Client, footprint: &Footprint, operator_running: bool) {
    let databases = Api::<Database>::namespaced(client.clone(), &footprint.databases_namespace);
    let names: Vec<String> = match databases.list(&ListParams::default()).await {
        Ok(list) => list.items.iter().map(ResourceExt::name_any).collect(),
        Err(_) => Vec::new(),
    };
    delete_all(&databases, &names, operator_running).await;
    let servers = Api::<DatabaseServer>::all(client.clone());
    delete_all(&servers, &footprint.servers, operator_running).await;
}

/// Deletes the namespaces, and the retained databases and roles on the local PostgreSQL (a
/// next run would find them marked for another Database: `NameTaken`).
async fn remove_namespaces_and_retained(client: &Client, footprint: &Footprint) {
    let namespaces = Api::<Namespace>::all(client.clone());
    delete_all(&namespaces, &footprint.namespaces, true).await;
    let mut admin = crate::harness::admin_connection().await;
    for name in &footprint.retained {
        let name = silo_operator::engine::sql_quote::quote_ident(name).unwrap();
        for statement in [
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            format!("DROP ROLE IF EXISTS {name}"),
        ] {
            sqlx::raw_sql(&statement).execute(&mut admin).await.unwrap();
        }
    }
}

/// The walk through the README and the examples: its operator, and its cleanup, which also
/// runs when an assertion fails half-way.
struct Walk {
    footprint: Footprint,
    operator: Option<Operator>,
    finished: bool,
}

impl Walk {
    fn log_tail(&self) -> String {
        self.operator
            .as_ref()
            .map(Operator::log_tail)
            .unwrap_or_default()
    }

    /// Deletes everything as a user would: Databases and servers with the operator running,
    /// then the operator stopped, then the namespaces.
    async fn finish(mut self, client: &Client) {
        remove_resources(client, &self.footprint, true).await;
        if let Some(operator) = self.operator.take() {
            operator.stop().await;
        }
        remove_namespaces_and_retained(client, &self.footprint).await;
        self.finished = true;
    }
}

impl Drop for Walk {
    fn drop(&mut self) {
        drop(self.operator.take());
        if self.finished {
            return;
        }
        // The test's runtime is blocked inside this drop: clean up from a thread of its own.
        let footprint = self.footprint.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async move {
                let client = silo_testenv::kube_client().await;
                remove_resources(&client, &footprint, false).await;
                remove_namespaces_and_retained(&client, &footprint).await;
                Some(())
            })
        })
        .join();
    }
}

/// Serialises this test across processes: like the README, it uses fixed names (`shop`,
/// `silo-system`, `shared-pg`).
fn exclusive_lock() -> std::fs::File {
    let path = silo_testenv::env_dir().join("readme-examples.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    file.lock().unwrap();
    file
}

/// Whether the example `file` can run here; records its skip otherwise.
fn runnable_here(file: &str, documents: &[Value]) -> bool {
    let name = format!("{TEST_NAME}::{file}");
    let runs_pods = documents.iter().any(|d| {
        d["spec"]["managed"].is_mapping() || d["spec"]["server"]["dedicated"].is_mapping()
    });
    if runs_pods && silo_testenv::node_ip(&name).is_none() {
        return false;
    }
    let mongodb = documents
        .iter()
        .any(|d| d["spec"]["engine"].as_str() == Some("mongodb"));
    if mongodb && silo_testenv::image_if_built(MONGODB_IMAGES).is_none() {
        silo_testenv::record_skip(
            &name,
            "no MongoDB image the node can run (SILO_MONGODB_IMAGE_REPOSITORY is not set)",
        );
        return false;
    }
    true
}

/// Applies, as it is, every example the README did not already apply, then runs the `kubectl
/// wait` each documents. One this environment cannot run is checked by a server-side dry run.
async fn apply_examples(walk: &Walk, files: &[(PathBuf, Vec<Value>)], readme: &Walkthrough) {
    let mut waits = Vec::new();
    for (path, documents) in files {
        let file = file_name(path);
        if !runnable_here(&file, documents) {
            let output = bash(&format!(
                "kubectl apply --dry-run=server -f examples/{file}"
            ))
            .await;
            assert_ran(&format!("a dry run of examples/{file}"), &output, "");
            continue;
        }
        let reference = format!("examples/{file}");
        if !readme.before.contains(&reference) && !readme.after.contains(&reference) {
            let output = bash(&format!("kubectl apply -f {reference}")).await;
            assert_ran(
                &format!("kubectl apply -f {reference}"),
                &output,
                &walk.log_tail(),
            );
        }
        let text = std::fs::read_to_string(path).unwrap();
        waits.extend(
            documented_waits(&text)
                .into_iter()
                .map(|w| (file.clone(), w)),
        );
    }
    for (file, wait) in waits {
        let output = bash(&wait).await;
        assert_ran(
            &format!("examples/{file}: {wait}"),
            &output,
            &walk.log_tail(),
        );
    }
}

/// The namespace and credentials Secret of the Database the README shows.
fn readme_database_secret(blocks: &[Block]) -> (String, String) {
    let database = blocks
        .iter()
        .filter_map(|b| match b {
            Block::Yaml(text) => serde_yaml::from_str::<Value>(text).ok(),
            Block::Shell(_) => None,
        })
        .find(|d| d["kind"].as_str() == Some("Database"))
        .expect("the README shows a Database");
    let field = |value: &Value| value.as_str().unwrap().to_string();
    (
        field(&database["metadata"]["namespace"]),
        field(&database["spec"]["credentials"]["secretName"]),
    )
}

/// The login in Secret `namespace/name` connects (retried: the README rotates it last).
async fn login_connects(client: &Client, namespace: &str, name: &str) {
    let secrets = Api::<Secret>::namespaced(client.clone(), namespace);
    eventually("the login of the README's Database to connect", || {
        let secrets = secrets.clone();
        async move {
            let data = secrets.get(name).await.ok()?.data?;
            let uri = String::from_utf8(data.get("uri")?.0.clone()).ok()?;
            sqlx::PgConnection::connect(&uri)
                .await
                .ok()?
                .close()
                .await
                .ok()
        }
    })
    .await;
}

#[tokio::test]
async fn the_readme_database_section_and_every_example_work_as_written() {
    let _lock = exclusive_lock();
    let client = silo_testenv::kube_client().await;
    let files = example_files();
    let footprint = footprint(&files);
    // What an interrupted earlier run left (its cleanup runs on drop, but a kill skips it).
    remove_resources(&client, &footprint, false).await;
    remove_namespaces_and_retained(&client, &footprint).await;
    let mut walk = Walk {
        footprint,
        operator: None,
        finished: false,
    };

    let blocks = readme_database_section();
    let readme = walkthrough(&blocks);
    let output = bash(&readme.before).await;
    assert_ran("the README up to the operator's start", &output, "");
    walk.operator = Some(Operator::start(
        &readme.operator_args,
        &walk.footprint.databases_namespace,
    ));
    let output = bash(&readme.after).await;
    assert_ran("the README's Database section", &output, &walk.log_tail());
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("postgres://"),
        "the README prints the login's URI"
    );
    let (namespace, secret) = readme_database_secret(&blocks);
    login_connects(&client, &namespace, &secret).await;

    apply_examples(&walk, &files, &readme).await;
    walk.finish(&client).await;
}
