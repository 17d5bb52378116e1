//! The `Service` controller against the local API server: what it creates and owns, the specs
//! it refuses, and how it follows other Services' `dependsOn`.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Service as KubeService, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde_json::{Value, json};
use silo_operator::crd::{Database, Service};

use crate::harness::{DatabaseFixture, Harness, count_on_server, described_events, eventually};
use crate::service_fixture::{
    ServiceFixture, create_service, delete_services, service_condition, services, wait_service,
    wait_service_condition,
};

/// The pod environment of Deployment `name`, as JSON.
async fn pod_env(h: &Harness, name: &str) -> Option<Vec<Value>> {
    let deployment = Api::<Deployment>::namespaced(h.client.clone(), h.ns())
        .get_opt(name)
        .await
        .ok()??;
    let value = serde_json::to_value(deployment).ok()?;
    value["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .cloned()
}

fn env_value(env: &[Value], name: &str) -> Option<String> {
    env.iter()
        .find(|var| var["name"] == name)
        .and_then(|var| var["value"].as_str().map(str::to_string))
}

/// The ingress peers of NetworkPolicy `name`'s first rule, as JSON.
async fn policy(h: &Harness, name: &str) -> Option<Value> {
    let policy = Api::<NetworkPolicy>::namespaced(h.client.clone(), h.ns())
        .get_opt(name)
        .await
        .ok()??;
    serde_json::to_value(policy).ok()
}

fn controlled_by<K: Resource>(object: &K, service: &Service) -> bool {
    object.owner_references().iter().any(|r| {
        r.controller == Some(true)
            && r.kind == "Service"
            && Some(&r.uid) == service.metadata.uid.as_ref()
    })
}

#[tokio::test]
async fn a_service_gets_its_workload_and_a_database_of_its_own_all_owned_by_it() {
    let h = Harness::start("silo-svc").await;
    let service = create_service(
        &h,
        &ServiceFixture::new()
            .replicas(0)
            .database_on(&h.server)
            .with("broker", json!({ "url": "nats://nats.messaging.svc:4222" }))
            .build("user-service"),
    )
    .await;
    let ready = wait_service_condition(&h, "user-service", "Ready", "True", "Ready").await;
    assert_eq!(ready.observed_generation, Some(1));
    let status = services(&h)
        .get("user-service")
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!(
        status.endpoint.as_deref(),
        Some(format!("http://user-service.{}.svc:8080", h.ns()).as_str())
    );
    let database = status.database.unwrap();
    assert_eq!(database.name, "user-service-db");
    assert_eq!(database.secret.as_deref(), Some("user-service-db"));
    let isolated = service_condition(&services(&h).get("user-service").await.unwrap(), "Isolated");
    assert_eq!(isolated.unwrap().reason, "DatabaseLevelOnly");

    let client = &h.client;
    let db = h.databases().get("user-service-db").await.unwrap();
    assert_eq!(db.spec.owner, "user-service");
    assert!(controlled_by(&db, &service));
    let deployment = Api::<Deployment>::namespaced(client.clone(), h.ns())
        .get("user-service")
        .await
        .unwrap();
    assert!(controlled_by(&deployment, &service));
    for owned in [
        controlled_by(
            &Api::<ServiceAccount>::namespaced(client.clone(), h.ns())
                .get("user-service")
                .await
                .unwrap(),
            &service,
        ),
        controlled_by(
            &Api::<KubeService>::namespaced(client.clone(), h.ns())
                .get("user-service")
                .await
                .unwrap(),
            &service,
        ),
        controlled_by(
            &Api::<NetworkPolicy>::namespaced(client.clone(), h.ns())
                .get("user-service")
                .await
                .unwrap(),
            &service,
        ),
    ] {
        assert!(owned);
    }
    let env = pod_env(&h, "user-service").await.unwrap();
    let database_url = env.iter().find(|v| v["name"] == "DATABASE_URL").unwrap();
    assert_eq!(
        database_url["valueFrom"]["secretKeyRef"],
        json!({ "name": "user-service-db", "key": "uri" })
    );
    assert_eq!(
        env_value(&env, "BROKER_URL").as_deref(),
        Some("nats://nats.messaging.svc:4222")
    );
    let annotations = deployment
        .spec
        .unwrap()
        .template
        .metadata
        .unwrap()
        .annotations
        .unwrap();
    assert_eq!(
        annotations.get("silo.dev/credentials-rotation"),
        db.status.unwrap().last_rotation.as_ref()
    );

    // Deleting the Service deletes what it owns; its Database (deletionPolicy Delete) drops
    // the data on the server.
    let recorded = h
        .databases()
        .get("user-service-db")
        .await
        .unwrap()
        .status
        .unwrap();
    let (role, name) = (recorded.role_name.unwrap(), recorded.database_name.unwrap());
    assert_eq!(count_on_server(&role, &name).await, (1, 1));
    delete_services(&h).await;
    assert_eq!(count_on_server(&role, &name).await, (0, 0));
    eventually("the Deployment to be garbage-collected", || {
        let api = Api::<Deployment>::namespaced(client.clone(), h.ns());
        async move {
            api.get_opt("user-service")
                .await
                .ok()?
                .is_none()
                .then_some(())
        }
    })
    .await;
    h.finish().await;
}

#[tokio::test]
async fn a_credential_rotation_rolls_the_pods() {
    let h = Harness::start("silo-svc-rot").await;
    create_service(
        &h,
        &ServiceFixture::new()
            .replicas(0)
            .database_on(&h.server)
            .build("booking-service"),
    )
    .await;
    wait_service_condition(&h, "booking-service", "Ready", "True", "Ready").await;
    let deployments = Api::<Deployment>::namespaced(h.client.clone(), h.ns());
    let rotation = |d: &Deployment| {
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
    let before = rotation(&deployments.get("booking-service").await.unwrap()).unwrap();
    crate::harness::nudge(&h.databases(), "booking-service-db", "silo.dev/rotate", "1").await;
    let after = eventually("the pod template to carry the new rotation", || {
        let deployments = deployments.clone();
        let before = before.clone();
        async move {
            let now = rotation(&deployments.get("booking-service").await.ok()?)?;
            (now != before).then_some(now)
        }
    })
    .await;
    let db = h.databases().get("booking-service-db").await.unwrap();
    assert_eq!(db.status.unwrap().last_rotation, Some(after));
    delete_services(&h).await;
    h.finish().await;
}

/// Creates `service`, waits for `InvalidSpec` naming `field`, and checks that nothing was
/// created for it and that exactly one Event tells it.
async fn refused(h: &Harness, service: Service, field: &str) {
    let name = service.name_any();
    let created = create_service(h, &service).await;
    let condition = wait_service_condition(h, &name, "Ready", "False", "InvalidSpec").await;
    assert!(
        condition.message.contains(field),
        "{name}: {field} not named in {:?}",
        condition.message
    );
    let client = &h.client;
    assert!(
        Api::<Deployment>::namespaced(client.clone(), h.ns())
            .get_opt(&name)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        Api::<NetworkPolicy>::namespaced(client.clone(), h.ns())
            .get_opt(&name)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        h.databases()
            .get_opt(&format!("{name}-db"))
            .await
            .unwrap()
            .is_none()
    );
    let uid = created.metadata.uid.clone().unwrap();
    let events = eventually(&format!("the InvalidSpec Event of {name}"), || async {
        let events = described_events(client, "Service", h.ns(), &name, &uid).await;
        let refusals: Vec<_> = events
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("InvalidSpec"))
            .collect();
        (!refusals.is_empty()).then_some(refusals)
    })
    .await;
    assert_eq!(events.len(), 1, "{name}: {events:?}");
    assert_eq!(
        events[0].count.unwrap_or(1),
        1,
        "{name}: told more than once"
    );
}

#[tokio::test]
async fn invalid_specs_are_refused_naming_the_field_once_and_nothing_is_created() {
    let h = Harness::start("silo-svc-invalid").await;
    let server = h.server.clone();
    refused(
        &h,
        ServiceFixture::new()
            .with("port", json!(70000))
            .build("far-port"),
        "spec.port 70000 is out of range",
    )
    .await;
    refused(
        &h,
        ServiceFixture::new()
            .with("image", json!("Shop/App:1"))
            .database_on(&server)
            .build("bad-image"),
        "spec.image",
    )
    .await;
    refused(
        &h,
        ServiceFixture::new()
            .depends_on("narcissus")
            .build("narcissus"),
        "spec.dependsOn[0] names this service itself",
    )
    .await;
    refused(
        &h,
        ServiceFixture::new()
            .with(
                "env",
                json!([{ "name": "A", "value": "1" }, { "name": "A", "value": "2" }]),
            )
            .build("twice"),
        "spec.env[1].name A appears twice",
    )
    .await;
    h.create(
        &DatabaseFixture::shared_on(&server)
            .owner("someone-else")
            .build("theirs"),
    )
    .await;
    refused(
        &h,
        ServiceFixture::new()
            .with("database", json!({ "ref": "theirs" }))
            .build("borrower"),
        "spec.database.ref: Database theirs belongs to service someone-else",
    )
    .await;
    create_service(
        &h,
        &ServiceFixture::new().depends_on("chicken").build("egg"),
    )
    .await;
    refused(
        &h,
        ServiceFixture::new().depends_on("egg").build("chicken"),
        "chicken → egg → chicken",
    )
    .await;
    wait_service_condition(&h, "egg", "Ready", "False", "InvalidSpec").await;

    // No hot loop: refused Services wait for a change, so the reconciles come to rest.
    eventually("the service reconciles to come to rest for 3 s", || async {
        let before = h.reconciles("service");
        tokio::time::sleep(Duration::from_secs(3)).await;
        (h.reconciles("service") == before).then_some(())
    })
    .await;

    // Breaking the cycle on one side releases the other.
    services(&h)
        .patch(
            "egg",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "dependsOn": null, "replicas": 0 } })),
        )
        .await
        .unwrap();
    wait_service(&h, "chicken", "no longer InvalidSpec", |s| {
        service_condition(s, "Ready").filter(|c| c.reason != "InvalidSpec")
    })
    .await;
    delete_services(&h).await;
    h.finish().await;
}

#[tokio::test]
async fn dependencies_are_wired_both_ways_and_follow_changes() {
    let h = Harness::start("silo-svc-deps").await;
    // Created before the service it calls: it waits for it.
    create_service(
        &h,
        &ServiceFixture::new()
            .replicas(0)
            .depends_on("user-service")
            .build("booking-service"),
    )
    .await;
    wait_service_condition(
        &h,
        "booking-service",
        "Ready",
        "False",
        "DependencyNotFound",
    )
    .await;
    create_service(&h, &ServiceFixture::new().replicas(0).build("user-service")).await;
    let url = format!("http://user-service.{}.svc:8080", h.ns());
    eventually("USER_SERVICE_URL in booking-service's pods", || async {
        let env = pod_env(&h, "booking-service").await?;
        (env_value(&env, "USER_SERVICE_URL")? == url).then_some(())
    })
    .await;
    let admits_booking = |policy: &Value| {
        policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]["silo.dev/service"]
            == "booking-service"
    };
    eventually("user-service to admit booking-service", || async {
        admits_booking(&policy(&h, "user-service").await?).then_some(())
    })
    .await;

    // The called service moves to another port: the caller's URL and egress follow.
    services(&h)
        .patch(
            "user-service",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "port": 9090 } })),
        )
        .await
        .unwrap();
    let moved = format!("http://user-service.{}.svc:9090", h.ns());
    eventually("USER_SERVICE_URL to follow the port", || async {
        let env = pod_env(&h, "booking-service").await?;
        (env_value(&env, "USER_SERVICE_URL")? == moved).then_some(())
    })
    .await;
    let booking = policy(&h, "booking-service").await.unwrap();
    let egress_ports: Vec<i64> = booking["spec"]["egress"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|rule| rule["ports"][0]["port"].as_i64())
        .collect();
    assert!(egress_ports.contains(&9090), "{egress_ports:?}");

    // The caller stops calling: the called service stops admitting it.
    services(&h)
        .patch(
            "booking-service",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "dependsOn": null } })),
        )
        .await
        .unwrap();
    eventually("user-service to stop admitting booking-service", || async {
        let ingress = policy(&h, "user-service").await?["spec"]["ingress"].clone();
        (ingress == json!([]) || ingress.is_null()).then_some(())
    })
    .await;
    delete_services(&h).await;
    h.finish().await;
}

#[tokio::test]
async fn an_object_in_the_way_is_never_taken_over() {
    let h = Harness::start("silo-svc-conflict").await;
    let theirs: Database = DatabaseFixture::shared_on(&h.server)
        .owner("squatter")
        .build("squatter-db");
    h.create(&theirs).await;
    create_service(
        &h,
        &ServiceFixture::new()
            .replicas(0)
            .database_on(&h.server)
            .build("squatter"),
    )
    .await;
    let conflict = wait_service_condition(&h, "squatter", "Ready", "False", "NameConflict").await;
    assert!(
        conflict.message.contains("squatter-db"),
        "{}",
        conflict.message
    );
    let db = h.databases().get("squatter-db").await.unwrap();
    assert!(db.owner_references().is_empty(), "not adopted");
    delete_services(&h).await;
    h.finish().await;
}
