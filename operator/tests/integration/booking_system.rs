//! The booking system as three Service resources with real pods on the local node, applied
//! from examples/booking-system with kubectl as a user does: each
//! service gets its own PostgreSQL, its credentials, its broker and its dependency wired in;
//! a booking made through booking-service's ClusterIP ends CONFIRMED; a credential rotation
//! rolls booking-service's two pods onto the new password while a client loop sees no failed
//! request; the access report shows who reaches
//! whom. Skipped, visibly, without a node.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::Api;
use serde_json::{Value, json};
use silo_operator::access::{AccessReport, Inventory, render, report};
use silo_operator::crd::DatabaseServer;
use silo_operator::reachability::Scope;
use sqlx::Connection;

use crate::harness::Harness;
use crate::service_fixture::{delete_services, services};

/// Starting three PostgreSQL servers, NATS and three services on two cores takes a while.
const START_LIMIT: Duration = Duration::from_secs(240);

/// The example the README points to, as a user applies it with kubectl: namespace
/// `booking` becomes the test's, the images those `tests/images/build` made.
const EXAMPLE: &str = "examples/booking-system/booking-system.yaml";

async fn apply_example(h: &Harness) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/booking-system/booking-system.yaml"
    );
    let example = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{EXAMPLE}: {e}"));
    let ns = h.ns();
    let mut manifest = example
        .replace("namespace: booking\n", &format!("namespace: {ns}\n"))
        .replace("  name: booking\n", &format!("  name: {ns}\n"))
        .replace(".booking.svc:", &format!(".{ns}.svc:"))
        .replace(
            "image: nats:2.9.10",
            &format!("image: {}", silo_testenv::image("SILO_NATS_IMAGE")),
        );
    for (name, var) in [
        ("user-service", "SILO_USER_SERVICE_IMAGE"),
        ("booking-service", "SILO_BOOKING_SERVICE_IMAGE"),
        ("payment-service", "SILO_PAYMENT_SERVICE_IMAGE"),
    ] {
        let local = silo_testenv::image(var);
        manifest = manifest.replace(
            &format!("image: silo/{name}:0.1.0"),
            &format!("image: {local}"),
        );
    }
    assert!(
        !manifest.contains("booking.svc"),
        "{EXAMPLE} names namespace booking in a way the test does not rewrite"
    );
    let mut child = tokio::process::Command::new("kubectl")
        .args(["apply", "-f", "-"])
        .env("KUBECONFIG", silo_testenv::require("KUBECONFIG"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl runs (tests/env/up installs it)");
    let mut stdin = child.stdin.take().unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stdin, manifest.as_bytes())
        .await
        .unwrap();
    drop(stdin);
    let output = child.wait_with_output().await.unwrap();
    assert!(
        output.status.success(),
        "kubectl apply -f {EXAMPLE}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Waits (up to [`START_LIMIT`]) until Service `name` is Ready; shows its status if not.
async fn wait_ready(h: &Harness, name: &str) {
    let api = services(h);
    let deadline = tokio::time::Instant::now() + START_LIMIT;
    loop {
        let service = api.get(name).await.unwrap();
        let conditions = service.status.clone().unwrap_or_default().conditions;
        if conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Service {name} not Ready within {START_LIMIT:?}: {conditions:#?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// `POST`s `body` to `url` (with `token`), expecting `status`; returns the JSON answer.
async fn post(url: &str, token: Option<&str>, body: Value, status: u16) -> Value {
    let client = reqwest::Client::new();
    let mut request = client.post(url).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    assert_eq!(response.status().as_u16(), status, "POST {url}");
    response.json().await.unwrap()
}

/// A confirmed booking and the token of the user who made it.
struct Booked {
    token: String,
    id: String,
}

/// Registers a user, books as that user through booking-service's ClusterIP, and waits for
/// the saga (payment charged) to confirm the booking.
async fn book_and_wait_for_confirmation(user_url: &str, booking_url: &str) -> Booked {
    let user = json!({ "username": "ada", "email": "ada@example.com",
                       "password": "correct horse battery", "fullName": "Ada Lovelace" });
    post(&format!("{user_url}/api/users/register"), None, user, 201).await;
    let login = json!({ "username": "ada", "password": "correct horse battery" });
    let session = post(&format!("{user_url}/api/users/login"), None, login, 200).await;
    let token = session["token"].as_str().unwrap().to_string();
    let order = json!({ "eventName": "RustConf", "ticketCount": 2, "totalAmount": "150.00" });
    let booking = post(
        &format!("{booking_url}/api/bookings"),
        Some(&token),
        order,
        201,
    )
    .await;
    let id = booking["id"].as_str().unwrap().to_string();
    let client = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let current: Value = client
            .get(format!("{booking_url}/api/bookings/{id}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if current["status"] == "CONFIRMED" {
            return Booked { token, id };
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "booking {id} not CONFIRMED: {current}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// What a client reading `booking` in a loop saw: answers, and failures (status or transport).
#[derive(Debug, Default)]
struct ClientLoop {
    answered: u32,
    failures: Vec<String>,
}

/// Reads `booking` through booking-service's ClusterIP until `stop` fires, as fast as one
/// client does (a new connection now and then, as clients' pools recycle them).
async fn read_in_a_loop(
    url: String,
    booking: Booked,
    stop: tokio::sync::watch::Receiver<bool>,
) -> ClientLoop {
    let mut seen = ClientLoop::default();
    let mut client = reqwest::Client::new();
    while !*stop.borrow() {
        if seen.answered % 20 == 0 {
            client = reqwest::Client::new();
        }
        let answer = client
            .get(format!("{url}/api/bookings/{}", booking.id))
            .bearer_auth(&booking.token)
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        match answer {
            Ok(response) if response.status().is_success() => seen.answered += 1,
            Ok(response) => seen.failures.push(format!("status {}", response.status())),
            Err(error) => seen.failures.push(format!("{error:?}")),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    seen
}

/// A rotation of booking-service's credentials rolls its two pods, which come back Ready on
/// the new password, while a client reading through the ClusterIP sees no failed request;
/// the old password no longer logs in.
async fn rotation_rolls_the_pods_onto_the_new_password(h: &Harness, booking: Booked) {
    let url = format!("http://booking-service.{}.svc:8080", h.ns());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let client_loop = tokio::spawn(read_in_a_loop(url, booking, stopped));
    let old_uri = h.secret("booking-service-db").await["uri"].clone();
    let deployments = Api::<Deployment>::namespaced(h.client.clone(), h.ns());
    let template = |d: &Deployment| {
        d.spec
            .as_ref()?
            .template
            .metadata
            .as_ref()?
            .annotations
            .as_ref()?
            .get("silo.dev/credentials-rotation")
            .cloned()
    };
    let before = template(&deployments.get("booking-service").await.unwrap());
    crate::harness::nudge(&h.databases(), "booking-service-db", "silo.dev/rotate", "1").await;
    let deadline = tokio::time::Instant::now() + START_LIMIT;
    loop {
        let deployment = deployments.get("booking-service").await.unwrap();
        let status = deployment.status.clone().unwrap_or_default();
        let rolled = template(&deployment) != before
            && status.observed_generation == deployment.metadata.generation
            && status.updated_replicas == Some(2)
            && status.available_replicas == Some(2)
            && status.replicas == Some(2);
        if rolled {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "booking-service did not roll onto the new password: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    wait_ready(h, "booking-service").await;
    // The old pods are gone only once their drain and shutdown are over.
    wait_for_pods(h, "booking-service", 2).await;
    stop.send_replace(true);
    let seen = client_loop.await.unwrap();
    println!(
        "client loop during the roll: {} answered, {} failed",
        seen.answered,
        seen.failures.len()
    );
    assert!(
        seen.failures.is_empty(),
        "requests failed during the roll: {:?}",
        seen.failures
    );
    assert!(seen.answered > 0, "the client loop never got an answer");
    let refused = sqlx::PgConnection::connect(&old_uri).await;
    assert!(refused.is_err(), "the old password still logs in");
}

/// The README shows booking-service's document of the example verbatim, and the access
/// table as `table` (this run's) without its NAMESPACE column.
fn readme_shows(table: &str) {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/booking-system/booking-system.yaml"
    );
    let example = std::fs::read_to_string(path).unwrap();
    let booking = example
        .split("---\n")
        .find(|doc| doc.contains("kind: Service\n") && doc.contains("name: booking-service\n"))
        .expect("the example declares booking-service");
    assert!(
        readme.contains(booking),
        "README.md does not show {EXAMPLE}'s booking-service:\n{booking}"
    );
    let column = table.find("SERVICE").expect("a SERVICE column");
    let shown: String = table
        .lines()
        .map(|line| format!("{}\n", line.get(column..).unwrap_or("").trim_end()))
        .collect();
    assert!(
        readme.contains(&shown),
        "README.md does not show this access table:\n{shown}"
    );
}

/// Waits until exactly `count` pods of Service `name` exist (terminating ones included).
async fn wait_for_pods(h: &Harness, name: &str, count: usize) {
    let pods = Api::<Pod>::namespaced(h.client.clone(), h.ns());
    let selector = format!("silo.dev/service={name}");
    let deadline = tokio::time::Instant::now() + START_LIMIT;
    loop {
        let listed = pods
            .list(&kube::api::ListParams::default().labels(&selector))
            .await
            .unwrap();
        if listed.items.len() == count {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} still has {} pods",
            listed.items.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The access report over what is in the cluster now, for the test namespace.
async fn access_report(h: &Harness) -> AccessReport {
    let client = &h.client;
    let ns = h.ns();
    let inventory = Inventory {
        services: services(h).list(&Default::default()).await.unwrap().items,
        databases: h.databases().list(&Default::default()).await.unwrap().items,
        servers: Api::<DatabaseServer>::all(client.clone())
            .list(&Default::default())
            .await
            .unwrap()
            .items,
        pods: Api::<Pod>::all(client.clone())
            .list(&Default::default())
            .await
            .unwrap()
            .items,
        namespaces: Api::<Namespace>::all(client.clone())
            .list(&Default::default())
            .await
            .unwrap()
            .items,
        policies: Api::<NetworkPolicy>::all(client.clone())
            .list(&Default::default())
            .await
            .unwrap()
            .items,
    };
    let scope = Scope::Namespaces([ns.to_string()].into());
    // Measured as a cluster whose operator runs in silo-system (this one runs in the test).
    report(&inventory, &scope, "silo-system")
}

#[tokio::test]
async fn the_booking_system_runs_as_three_services_and_a_booking_is_confirmed() {
    let test = "the_booking_system_runs_as_three_services_and_a_booking_is_confirmed";
    if silo_testenv::node_ip(test).is_none() {
        return;
    }
    let mut h = Harness::start("silo-booking").await;
    h.use_local_images();
    apply_example(&h).await;
    for name in ["user-service", "booking-service", "payment-service"] {
        wait_ready(&h, name).await;
    }
    let ns = h.ns().to_string();
    let booked = book_and_wait_for_confirmation(
        &format!("http://user-service.{ns}.svc:8080"),
        &format!("http://booking-service.{ns}.svc:8080"),
    )
    .await;

    rotation_rolls_the_pods_onto_the_new_password(&h, booked).await;

    let access = access_report(&h).await;
    // What `silo-operator access` prints for this namespace: the README shows it.
    let table = render(&access);
    println!("{table}");
    readme_shows(&table);
    let report = serde_json::to_value(&access).unwrap();
    let entry = |name: &str| {
        report["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .cloned()
            .unwrap()
    };
    let user = entry("user-service");
    let callers = &user["callers"]["allowed"];
    assert_eq!(
        callers,
        &json!([
            format!("{ns}/booking-service"),
            format!("{ns}/payment-service")
        ]),
        "{report:#}"
    );
    let booking = entry("booking-service");
    assert!(
        booking["callers"]["denied"]
            .as_array()
            .unwrap()
            .contains(&json!(format!("{ns}/user-service"))),
        "{report:#}"
    );
    for name in ["user-service", "booking-service", "payment-service"] {
        let database = &entry(name)["database"];
        assert_eq!(database["isolated"], true, "{name}: {report:#}");
        assert_eq!(
            database["callers"]["allowed"],
            json!([format!("{ns}/{name}")]),
            "{name}: {report:#}"
        );
    }
    delete_services(&h).await;
    h.finish().await;
}
