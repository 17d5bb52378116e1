//! The booking system as three Service resources with real pods on the local node: each
//! service gets its own PostgreSQL, its credentials, its broker and its dependency wired in;
//! a booking made through booking-service's ClusterIP ends CONFIRMED; a credential rotation
//! rolls booking-service's two pods onto the new password; the access report shows who reaches
//! whom. Skipped, visibly, without a node.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service as KubeService};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::Api;
use serde_json::{Value, json};
use silo_operator::access::{AccessReport, Inventory, render, report};
use silo_operator::crd::{DatabaseServer, Service};
use silo_operator::reachability::Scope;
use sqlx::Connection;

use crate::harness::Harness;
use crate::service_fixture::{ServiceFixture, create_service, delete_services, services};

/// Starting three PostgreSQL servers, NATS and three services on two cores takes a while.
const START_LIMIT: Duration = Duration::from_secs(240);

/// A NATS server with JetStream in the test namespace, at `nats.<namespace>.svc:4222`.
async fn start_nats(h: &Harness) {
    silo_testenv::apply::<Pod>(
        &h.client,
        h.ns(),
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": { "name": "nats", "labels": { "app": "nats" } },
            "spec": {
                "containers": [{
                    "name": "nats", "image": silo_testenv::image("SILO_NATS_IMAGE"),
                    "ports": [{ "name": "client", "containerPort": 4222, "protocol": "TCP" }],
                    "volumeMounts": [{ "name": "data", "mountPath": "/data" }],
                }],
                "volumes": [{ "name": "data", "emptyDir": {} }],
            },
        }),
    )
    .await;
    silo_testenv::apply::<KubeService>(
        &h.client,
        h.ns(),
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": { "name": "nats" },
            "spec": { "selector": { "app": "nats" }, "ports": [{ "port": 4222, "targetPort": 4222, "protocol": "TCP" }] },
        }),
    )
    .await;
}

/// One of the booking system's services: a dedicated PostgreSQL 15 of its own, the broker,
/// its dependencies.
fn booking_system_service(h: &Harness, image_var: &str, depends_on: &[&str]) -> ServiceFixture {
    let mut fixture = ServiceFixture::new()
        .with("image", json!(silo_testenv::image(image_var)))
        .with(
            "database",
            json!({ "template": {
                "engine": "postgres",
                "server": { "dedicated": { "version": "15", "storage": { "size": "64Mi" } } },
                "deletionPolicy": "Delete",
            } }),
        )
        .with(
            "broker",
            json!({ "url": format!("nats://nats.{}.svc:4222", h.ns()) }),
        );
    for dependency in depends_on {
        fixture = fixture.depends_on(dependency);
    }
    fixture
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

/// Registers a user, books as that user through booking-service's ClusterIP, and waits for
/// the saga (payment charged) to confirm the booking.
async fn book_and_wait_for_confirmation(user_url: &str, booking_url: &str) {
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
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "booking {id} not CONFIRMED: {current}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A rotation of booking-service's credentials rolls its two pods, which come back Ready on
/// the new password; the old one no longer logs in.
async fn rotation_rolls_the_pods_onto_the_new_password(h: &Harness) {
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
    let refused = sqlx::PgConnection::connect(&old_uri).await;
    assert!(refused.is_err(), "the old password still logs in");
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
    start_nats(&h).await;
    for (name, image, depends_on) in [
        ("user-service", "SILO_USER_SERVICE_IMAGE", &[][..]),
        (
            "booking-service",
            "SILO_BOOKING_SERVICE_IMAGE",
            &["user-service"][..],
        ),
        (
            "payment-service",
            "SILO_PAYMENT_SERVICE_IMAGE",
            &["user-service"][..],
        ),
    ] {
        let replicas = if name == "booking-service" { 2 } else { 1 };
        let service: Service = booking_system_service(&h, image, depends_on)
            .replicas(replicas)
            .build(name);
        create_service(&h, &service).await;
    }
    for name in ["user-service", "booking-service", "payment-service"] {
        wait_ready(&h, name).await;
    }
    let ns = h.ns().to_string();
    book_and_wait_for_confirmation(
        &format!("http://user-service.{ns}.svc:8080"),
        &format!("http://booking-service.{ns}.svc:8080"),
    )
    .await;

    rotation_rolls_the_pods_onto_the_new_password(&h).await;

    let access = access_report(&h).await;
    // What `silo-operator access` prints for this namespace (the README shows it).
    println!("{}", render(&access));
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
