//! Databases on a shared, external PostgreSQL server.

use std::str::FromStr;

use kube::ResourceExt;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use silo_operator::crd::{Database, DeletionPolicy};
use sqlx::Connection;

use crate::harness::{
    DatabaseFixture, Harness, admin_connection, connect_as, count_on_server, eventually, nudge,
};

const SECRET_KEYS: [&str; 7] = [
    "database", "host", "jdbc-uri", "password", "port", "uri", "username",
];

fn names_of(db: &Database) -> (String, String) {
    let status = db.status.clone().expect("status");
    (
        status.role_name.expect("roleName recorded"),
        status.database_name.expect("databaseName recorded"),
    )
}

#[tokio::test]
async fn each_service_gets_a_database_that_only_its_own_credentials_open() {
    let h = Harness::start("silo-three").await;
    let owners = ["users", "bookings", "payments"];
    for owner in owners {
        h.create(
            &DatabaseFixture::shared_on(&h.server)
                .owner(owner)
                .build(&format!("{owner}-db")),
        )
        .await;
    }
    let mut secrets = Vec::new();
    for owner in owners {
        let db = h.wait_ready(&format!("{owner}-db")).await;
        let status = db.status.clone().unwrap();
        assert_eq!(
            status.secret_name.as_deref(),
            Some(format!("{owner}-db-db").as_str())
        );
        let access = status
            .conditions
            .iter()
            .find(|c| c.type_ == "AccessVerified")
            .expect("AccessVerified present");
        assert_eq!(access.status, "True", "{}", access.message);
        let network = status
            .conditions
            .iter()
            .find(|c| c.type_ == "NetworkIsolated")
            .unwrap();
        assert_eq!(
            (network.status.as_str(), network.reason.as_str()),
            ("False", "External")
        );
        let secret = h.secret(&format!("{owner}-db-db")).await;
        let mut keys: Vec<&str> = secret.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, SECRET_KEYS);
        let (role, database) = names_of(&db);
        assert_eq!(secret["username"], role);
        assert_eq!(secret["database"], database);
        assert_eq!(status.endpoint.unwrap().database, database);
        secrets.push((database, secret));
    }

    for (database, secret) in &secrets {
        let mut own = connect_as(secret, database)
            .await
            .unwrap_or_else(|e| panic!("own login to {database} refused: {e}"));
        sqlx::query("CREATE TABLE items (id bigint PRIMARY KEY)")
            .execute(&mut own)
            .await
            .expect("owner can create a table in its own database");
        own.close().await.unwrap();
    }

    for (i, (_, secret)) in secrets.iter().enumerate() {
        for (j, (other_database, _)) in secrets.iter().enumerate() {
            if i == j {
                continue;
            }
            let refused = connect_as(secret, other_database).await;
            let error = refused.err().unwrap_or_else(|| {
                panic!("{} could connect to {other_database}", secret["username"])
            });
            assert!(
                error.to_string().contains("permission denied"),
                "unexpected error: {error}"
            );
        }
    }
    h.finish().await;
}

#[tokio::test]
async fn a_hand_granted_connect_is_revoked_by_the_next_reconcile() {
    let mut h = Harness::start("silo-drift").await;
    h.create_shared("victim").await;
    h.create_shared("intruder").await;
    let (_, victim_database) = names_of(&h.wait_ready("victim").await);
    let (intruder_role, _) = names_of(&h.wait_ready("intruder").await);
    let intruder_secret = h.secret("intruder-db").await;

    // With the operator stopped, nothing repairs the grant before the test has seen it work.
    h.stop_controller();
    let mut admin = admin_connection().await;
    sqlx::query(&format!(
        "GRANT CONNECT ON DATABASE \"{victim_database}\" TO \"{intruder_role}\""
    ))
    .execute(&mut admin)
    .await
    .unwrap();
    let sneaked_in = connect_as(&intruder_secret, &victim_database).await;
    assert!(
        sneaked_in.is_ok(),
        "the hand-made grant works before repair"
    );
    sneaked_in.unwrap().close().await.unwrap();

    h.start_controller();
    nudge(&h.databases(), "victim", "test.silo.dev/nudge", "1").await;
    eventually("the hand-made grant to be revoked", || async {
        let mut admin = admin_connection().await;
        let can: bool = sqlx::query_scalar("SELECT has_database_privilege($1, $2, 'CONNECT')")
            .bind(&intruder_role)
            .bind(&victim_database)
            .fetch_one(&mut admin)
            .await
            .ok()?;
        (!can).then_some(())
    })
    .await;
    assert!(
        connect_as(&intruder_secret, &victim_database)
            .await
            .is_err()
    );
    let db = h.wait_condition("victim", "AccessVerified", "True").await;
    assert!(
        db.status
            .unwrap()
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    );
    h.finish().await;
}

/// Whether `role` may create in schema `public` of `database` (asked inside that database).
async fn can_create_in_public(database: &str, role: &str) -> bool {
    let options = sqlx::postgres::PgConnectOptions::from_str(&silo_testenv::postgres_admin_url())
        .unwrap()
        .database(database);
    let mut admin = sqlx::PgConnection::connect_with(&options).await.unwrap();
    sqlx::query_scalar("SELECT has_schema_privilege($1, 'public', 'CREATE')")
        .bind(role)
        .fetch_one(&mut admin)
        .await
        .unwrap()
}

#[tokio::test]
async fn schema_public_opened_by_hand_is_closed_again_by_the_next_reconcile() {
    let h = Harness::start("silo-schema").await;
    h.create_shared("owner").await;
    h.create_shared("other").await;
    let (_, database) = names_of(&h.wait_ready("owner").await);
    let (other_role, _) = names_of(&h.wait_ready("other").await);
    assert!(
        !can_create_in_public(&database, &other_role).await,
        "a new database's schema public is closed to other roles"
    );

    let options = sqlx::postgres::PgConnectOptions::from_str(&silo_testenv::postgres_admin_url())
        .unwrap()
        .database(&database);
    let mut inside = sqlx::PgConnection::connect_with(&options).await.unwrap();
    sqlx::query("GRANT CREATE ON SCHEMA public TO PUBLIC")
        .execute(&mut inside)
        .await
        .unwrap();
    inside.close().await.unwrap();
    assert!(can_create_in_public(&database, &other_role).await);

    nudge(&h.databases(), "owner", "test.silo.dev/nudge", "1").await;
    eventually(
        "CREATE on schema public to be revoked from PUBLIC",
        || async { (!can_create_in_public(&database, &other_role).await).then_some(()) },
    )
    .await;
    h.finish().await;
}

#[tokio::test]
async fn a_database_created_before_an_interruption_gets_public_access_revoked() {
    let mut h = Harness::start("silo-interrupted").await;
    h.stop_controller();
    let db = h
        .create(
            &DatabaseFixture::shared_on(&h.server)
                .owner("interrupted")
                .deletion(DeletionPolicy::Delete)
                .build("interrupted"),
        )
        .await;
    let marker = format!("silo:{}", db.uid().expect("uid"));
    let name = silo_operator::names::derive_server_name(
        h.ns(),
        "interrupted",
        silo_operator::names::POSTGRES_IDENTIFIER_LIMIT,
    );
    let bystander = format!("bystander_{}", silo_testenv::unique_suffix());
    // As if an earlier reconcile stopped right after CREATE DATABASE: the role is marked as
    // Silo's, the database not yet, and datacl is NULL, which lets PUBLIC, and so any login
    // such as the bystander, connect.
    let mut admin = admin_connection().await;
    for statement in [
        format!("CREATE ROLE \"{name}\" LOGIN"),
        format!("COMMENT ON ROLE \"{name}\" IS '{marker}'"),
        format!("CREATE DATABASE \"{name}\" OWNER \"{name}\""),
        format!("CREATE ROLE \"{bystander}\" LOGIN"),
    ] {
        sqlx::raw_sql(&statement).execute(&mut admin).await.unwrap();
    }
    let bystander_connects = "SELECT has_database_privilege($1, $2, 'CONNECT')";
    let before: bool = sqlx::query_scalar(bystander_connects)
        .bind(&bystander)
        .bind(&name)
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert!(before, "a fresh database lets every login connect");

    h.start_controller();
    let db = h
        .wait_condition("interrupted", "AccessVerified", "True")
        .await;
    assert_eq!(names_of(&db), (name.clone(), name.clone()));
    let after: bool = sqlx::query_scalar(bystander_connects)
        .bind(&bystander)
        .bind(&name)
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert!(!after, "PUBLIC's CONNECT was revoked");
    h.wait_ready("interrupted").await;
    h.finish().await;
    sqlx::raw_sql(&format!("DROP ROLE \"{bystander}\""))
        .execute(&mut admin)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_role_that_silo_did_not_create_is_not_adopted() {
    let h = Harness::start("silo-nametaken").await;
    let name = silo_operator::names::derive_server_name(
        h.ns(),
        "squatted",
        silo_operator::names::POSTGRES_IDENTIFIER_LIMIT,
    );
    let mut admin = admin_connection().await;
    sqlx::raw_sql(&format!("CREATE ROLE \"{name}\" NOLOGIN SUPERUSER"))
        .execute(&mut admin)
        .await
        .unwrap();
    h.create_shared("squatted").await;
    let db = h.wait_condition("squatted", "Ready", "False").await;
    let ready = db
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.reason, "NameTaken", "{}", ready.message);
    let (login, superuser): (bool, bool) =
        sqlx::query_as("SELECT rolcanlogin, rolsuper FROM pg_roles WHERE rolname = $1")
            .bind(&name)
            .fetch_one(&mut admin)
            .await
            .unwrap();
    assert_eq!(
        (login, superuser),
        (false, true),
        "the foreign role was altered"
    );
    assert_eq!(count_on_server(&name, &name).await, (1, 0));
    h.finish().await;
    sqlx::raw_sql(&format!("DROP ROLE \"{name}\""))
        .execute(&mut admin)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_namespace_named_like_a_reserved_role_prefix_still_gets_a_database() {
    // The namespace is `pg-<suffix>`: a plain derivation would give role `pg_...`, which
    // PostgreSQL refuses to create.
    let h = Harness::start("pg").await;
    h.create(
        &DatabaseFixture::shared_on(&h.server)
            .owner("reserved")
            .deletion(DeletionPolicy::Delete)
            .build("reserved"),
    )
    .await;
    let (role, database) = names_of(&h.wait_ready("reserved").await);
    assert!(!role.starts_with("pg_"), "{role}");
    assert_eq!(count_on_server(&role, &database).await, (1, 1));
    h.finish().await;
}

#[tokio::test]
async fn server_ready_stays_false_until_the_admin_login_is_accepted() {
    let h = Harness::start("silo-badadmin").await;
    let secrets =
        kube::Api::<k8s_openapi::api::core::v1::Secret>::namespaced(h.client.clone(), h.ns());
    let set_admin_password = |password: String| {
        let secrets = secrets.clone();
        async move {
            secrets
                .patch(
                    "pg-admin",
                    &PatchParams::default(),
                    &Patch::Merge(json!({ "stringData": { "password": password } })),
                )
                .await
                .unwrap();
        }
    };
    let good = h.secret("pg-admin").await["password"].clone();
    let wrong = format!("wrong-{}", silo_testenv::unique_suffix());
    set_admin_password(wrong.clone()).await;
    h.create_shared("refused").await;
    let db = h.wait_condition("refused", "ServerReady", "False").await;
    let server_ready = db
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "ServerReady")
        .unwrap();
    assert_eq!(server_ready.reason, "ServerUnreachable");
    assert!(!server_ready.message.contains(&wrong), "password leaked");

    set_admin_password(good).await;
    nudge(&h.databases(), "refused", "test.silo.dev/nudge", "1").await;
    h.wait_condition("refused", "ServerReady", "True").await;
    h.wait_ready("refused").await;
    h.finish().await;
}

#[tokio::test]
async fn a_taken_secret_name_is_retried_and_provisions_once_the_secret_is_gone() {
    let h = Harness::start("silo-taken").await;
    let secrets =
        kube::Api::<k8s_openapi::api::core::v1::Secret>::namespaced(h.client.clone(), h.ns());
    let foreign: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": { "name": "taken-db" },
        "stringData": { "note": "not Silo's" },
    }))
    .unwrap();
    secrets
        .create(&kube::api::PostParams::default(), &foreign)
        .await
        .unwrap();
    h.create(
        &DatabaseFixture::shared_on(&h.server)
            .owner("taken")
            .deletion(DeletionPolicy::Delete)
            .build("taken"),
    )
    .await;
    let db = h.wait_condition("taken", "Ready", "False").await;
    let ready = db
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.reason, "SecretConflict");
    assert!(
        ready.message.contains("spec.credentials.secretName"),
        "{}",
        ready.message
    );

    // No change to the Database: the retry finds the name free.
    secrets
        .delete("taken-db", &Default::default())
        .await
        .unwrap();
    h.wait_ready("taken").await;
    h.finish().await;
}

#[tokio::test]
async fn rotation_sets_a_new_password_and_the_old_one_stops_working() {
    let h = Harness::start("silo-rotate").await;
    h.create_shared("rotating").await;
    let before = h.wait_ready("rotating").await;
    let (_, database) = names_of(&before);
    let old = h.secret("rotating-db").await;
    connect_as(&old, &database)
        .await
        .expect("old password works before rotation");

    nudge(&h.databases(), "rotating", "silo.dev/rotate", "2026-11-24").await;
    let new = eventually("the Secret to carry a new password", || async {
        let secret = h.secret("rotating-db").await;
        (secret["password"] != old["password"]).then_some(secret)
    })
    .await;
    assert_ne!(new["uri"], old["uri"]);
    let refused = connect_as(&old, &database).await;
    assert!(refused.is_err(), "the old password must stop working");
    connect_as(&new, &database)
        .await
        .expect("the new password works")
        .close()
        .await
        .unwrap();
    // The Secret is written before the status: wait for the status of the rotation itself, not
    // for Ready, which was already True before it.
    let api = h.databases();
    let after_status = eventually("the status to record the rotation", || async {
        let status = api.get("rotating").await.ok()?.status?;
        (status.rotation_token.as_deref() == Some("2026-11-24")).then_some(status)
    })
    .await;
    assert!(
        after_status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True"),
        "{:?}",
        after_status.conditions
    );
    assert_ne!(
        after_status.last_rotation,
        before.status.unwrap().last_rotation
    );
    h.finish().await;
}

#[tokio::test]
async fn delete_policy_drops_database_and_role_while_a_client_is_connected() {
    let h = Harness::start("silo-delete").await;
    h.create(
        &DatabaseFixture::shared_on(&h.server)
            .owner("doomed")
            .deletion(DeletionPolicy::Delete)
            .build("doomed"),
    )
    .await;
    let (role, database) = names_of(&h.wait_ready("doomed").await);
    let mut client = connect_as(&h.secret("doomed-db").await, &database)
        .await
        .unwrap();
    sqlx::query("SELECT 1").execute(&mut client).await.unwrap();

    h.delete_and_wait("doomed").await;
    assert_eq!(count_on_server(&role, &database).await, (0, 0));
    assert!(
        sqlx::query("SELECT 1").execute(&mut client).await.is_err(),
        "the connected client was terminated"
    );
    h.finish().await;
}

#[tokio::test]
async fn delete_policy_drops_a_role_that_holds_grants_and_objects_in_another_database() {
    let h = Harness::start("silo-delete-elsewhere").await;
    h.create(
        &DatabaseFixture::shared_on(&h.server)
            .owner("spread")
            .deletion(DeletionPolicy::Delete)
            .build("spread"),
    )
    .await;
    let (role, database) = names_of(&h.wait_ready("spread").await);
    // Someone grants the role something in another database, and gives it a table there.
    let other = silo_testenv::TestDatabase::create().await;
    let pool = other.pool().await;
    for statement in [
        "CREATE TABLE granted (id int)".to_string(),
        format!("GRANT SELECT ON granted TO \"{role}\""),
        "CREATE TABLE owned (id int)".to_string(),
        format!("ALTER TABLE owned OWNER TO \"{role}\""),
    ] {
        sqlx::raw_sql(&statement).execute(&pool).await.unwrap();
    }
    pool.close().await;

    h.delete_and_wait("spread").await;
    assert_eq!(count_on_server(&role, &database).await, (0, 0));
    let pool = other.pool().await;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        tables,
        ["granted"],
        "what the role owned there went with it, nothing else"
    );
    pool.close().await;
    h.finish().await;
}

#[tokio::test]
async fn retain_policy_leaves_database_and_role_on_the_server() {
    let h = Harness::start("silo-retain").await;
    h.create(
        &DatabaseFixture::shared_on(&h.server)
            .owner("kept")
            .deletion(DeletionPolicy::Retain)
            .build("kept"),
    )
    .await;
    let (role, database) = names_of(&h.wait_ready("kept").await);
    h.delete_and_wait("kept").await;
    assert_eq!(count_on_server(&role, &database).await, (1, 1));

    let mut admin = admin_connection().await;
    for statement in [
        format!("DROP DATABASE \"{database}\" WITH (FORCE)"),
        format!("DROP ROLE \"{role}\""),
    ] {
        sqlx::raw_sql(&statement).execute(&mut admin).await.unwrap();
    }
    h.finish().await;
}

#[tokio::test]
async fn an_invalid_spec_is_reported_and_fixing_it_provisions_the_database() {
    let h = Harness::start("silo-invalid").await;
    let both = DatabaseFixture::shared_on(&h.server)
        .owner("confused")
        .with(|spec| {
            spec.server.dedicated = DatabaseFixture::dedicated(spec.engine)
                .build("x")
                .spec
                .server
                .dedicated;
        })
        .build("confused");
    h.create(&both).await;
    let db = h.wait_condition("confused", "Ready", "False").await;
    let ready = db
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.reason, "InvalidSpec");
    assert!(ready.message.contains("spec.server"), "{}", ready.message);
    assert!(
        h.controller_running(),
        "the controller survives an invalid spec"
    );

    h.databases()
        .patch(
            "confused",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "server": { "dedicated": null } } })),
        )
        .await
        .unwrap();
    h.wait_ready("confused").await;
    h.finish().await;
}

#[tokio::test]
async fn changing_the_server_of_a_provisioned_database_is_refused() {
    let h = Harness::start("silo-immutable").await;
    h.create_shared("fixed").await;
    h.wait_ready("fixed").await;
    h.databases()
        .patch(
            "fixed",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "server": { "serverRef": "another" } } })),
        )
        .await
        .unwrap();
    let db = h.wait_condition("fixed", "Ready", "False").await;
    let ready = db
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.reason, "InvalidSpec");
    assert!(
        ready.message.contains("spec.server is immutable"),
        "{}",
        ready.message
    );
    let server = h.server.clone();
    h.databases()
        .patch(
            "fixed",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "server": { "serverRef": server } } })),
        )
        .await
        .unwrap();
    h.wait_ready("fixed").await;
    h.finish().await;
}

#[tokio::test]
async fn a_restarted_operator_converges_without_duplicate_roles() {
    let mut h = Harness::start("silo-restart").await;
    h.create_shared("resumed").await;
    // Stop as soon as the operator has started on it (finalizer added), before it is Ready.
    let api = h.databases();
    eventually("the finalizer to be added", || {
        let api = api.clone();
        async move {
            let db = api.get("resumed").await.ok()?;
            (!db.finalizers().is_empty()).then_some(())
        }
    })
    .await;
    h.stop_controller();
    h.start_controller();
    let db = h.wait_ready("resumed").await;
    let (role, database) = names_of(&db);
    assert_eq!(count_on_server(&role, &database).await, (1, 1));

    // A second restart after provisioning changes nothing on the server.
    h.stop_controller();
    h.start_controller();
    nudge(&api, "resumed", "test.silo.dev/nudge", "again").await;
    let again = h.wait_ready("resumed").await;
    assert_eq!(names_of(&again), (role.clone(), database.clone()));
    assert_eq!(count_on_server(&role, &database).await, (1, 1));
    connect_as(&h.secret("resumed-db").await, &database)
        .await
        .expect("the Secret still opens the database")
        .close()
        .await
        .unwrap();
    h.finish().await;
}

#[tokio::test]
async fn reconciling_a_ready_database_again_writes_nothing() {
    let h = Harness::start("silo-idle").await;
    h.create_shared("idle").await;
    h.wait_ready("idle").await;
    let secrets =
        kube::Api::<k8s_openapi::api::core::v1::Secret>::namespaced(h.client.clone(), h.ns());
    nudge(&h.databases(), "idle", "test.silo.dev/nudge", "1").await;
    let nudged = h.databases().get("idle").await.unwrap();
    let secret_version = secrets.get("idle-db").await.unwrap().resource_version();
    let before = h.database_reconciles();
    // Two more reconciles: the nudge's, and any that a write of it would have caused.
    nudge(&h.databases(), "idle", "test.silo.dev/nudge", "2").await;
    let nudged_again = h.databases().get("idle").await.unwrap();
    eventually("two reconciles after the nudges", || async {
        (h.database_reconciles() >= before + 2).then_some(())
    })
    .await;
    assert_eq!(
        secrets.get("idle-db").await.unwrap().resource_version(),
        secret_version,
        "the Secret was rewritten"
    );
    let after = h.databases().get("idle").await.unwrap();
    assert_eq!(
        after.resource_version(),
        nudged_again.resource_version(),
        "the Database status was rewritten"
    );
    assert_ne!(nudged.resource_version(), nudged_again.resource_version());
    h.finish().await;
}
