//! The PostgreSQL access measurement behind `AccessVerified`, against the local server: it must
//! find every login that can reach a database, however the privilege got there.

use std::str::FromStr;

use silo_operator::crd::TlsMode;
use silo_operator::engine::postgres::{PoolCache, PostgresEngine};
use silo_operator::engine::{AdminConnection, ServerNames};
use silo_operator::password::Password;
use sqlx::postgres::PgConnectOptions;

use crate::harness::admin_connection;

async fn run(sql: &str) {
    let mut admin = admin_connection().await;
    sqlx::raw_sql(sql)
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

fn engine() -> PostgresEngine {
    let options = PgConnectOptions::from_str(&silo_testenv::postgres_admin_url()).unwrap();
    let url = url::Url::parse(&silo_testenv::postgres_admin_url()).unwrap();
    let password = percent_encoding::percent_decode_str(url.password().unwrap_or_default())
        .decode_utf8_lossy()
        .to_string();
    let admin = AdminConnection {
        host: options.get_host().to_string(),
        port: options.get_port(),
        username: options.get_username().to_string(),
        password: Password::from_secret_value(password),
        tls: TlsMode::Disable,
    };
    let pool = PoolCache::default().pool("DatabaseServer//local", &admin, 2);
    PostgresEngine::new(admin, pool)
}

#[tokio::test]
async fn every_login_that_can_reach_the_database_is_found_and_no_other() {
    let s = silo_testenv::unique_suffix();
    let (owner, database) = (format!("m_owner_{s}"), format!("m_db_{s}"));
    let (group, member, owner_member, bystander, superuser) = (
        format!("m_group_{s}"),
        format!("m_member_{s}"),
        format!("m_ownermember_{s}"),
        format!("m_bystander_{s}"),
        format!("m_super_{s}"),
    );
    run(&format!(
        "CREATE ROLE \"{owner}\" LOGIN; CREATE ROLE \"{group}\" NOLOGIN; \
         CREATE ROLE \"{member}\" LOGIN; CREATE ROLE \"{owner_member}\" LOGIN; \
         CREATE ROLE \"{bystander}\" LOGIN; CREATE ROLE \"{superuser}\" LOGIN SUPERUSER"
    ))
    .await;
    run(&format!("CREATE DATABASE \"{database}\" OWNER \"{owner}\"")).await;
    let engine = engine();
    let names = ServerNames {
        database: database.clone(),
        role: owner.clone(),
        marker: String::new(),
    };
    let measured = || async { engine.measure_foreign_access(&names).await.unwrap() };

    // A fresh database lets PUBLIC connect: every non-superuser login but the owner.
    let open = measured().await;
    for role in [&member, &owner_member, &bystander] {
        assert!(
            open.contains(role),
            "{role} reaches a fresh database: {open:?}"
        );
    }
    assert!(!open.contains(&owner) && !open.contains(&superuser));

    run(&format!(
        "REVOKE ALL ON DATABASE \"{database}\" FROM PUBLIC"
    ))
    .await;
    assert_eq!(
        measured().await,
        Vec::<String>::new(),
        "closed to all but the owner"
    );

    // Through a group that was granted CONNECT.
    run(&format!(
        "GRANT CONNECT ON DATABASE \"{database}\" TO \"{group}\"; GRANT \"{group}\" TO \"{member}\""
    ))
    .await;
    assert_eq!(measured().await, vec![member.clone()]);

    // Through membership in the owner role.
    run(&format!("GRANT \"{owner}\" TO \"{owner_member}\"")).await;
    let mut expected = vec![member.clone(), owner_member.clone()];
    expected.sort();
    assert_eq!(measured().await, expected);

    // TEMPORARY to PUBLIC reaches everybody again.
    run(&format!(
        "GRANT TEMPORARY ON DATABASE \"{database}\" TO PUBLIC"
    ))
    .await;
    assert!(measured().await.contains(&bystander));

    run(&format!("DROP DATABASE \"{database}\"")).await;
    run(&format!(
        "DROP ROLE \"{member}\", \"{owner_member}\", \"{bystander}\", \"{superuser}\", \"{group}\", \"{owner}\""
    ))
    .await;
}
