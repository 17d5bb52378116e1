//! Database-per-service in practice: each service gets a role and a database the way the
//! operator creates them, and no service's credentials open another service's database.

use crate::support::{
    UserServiceStandIn, base_config, booking_body, json, nats_url, private_namespace,
};
use booking_service::{Application, BookingConfig};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};
use std::str::FromStr;

/// A role and a database owned by it, closed to PUBLIC; dropped at the end.
struct ServiceDatabase {
    role: String,
    password: String,
    database: String,
}

fn admin_options() -> PgConnectOptions {
    PgConnectOptions::from_str(&silo_testenv::postgres_admin_url()).unwrap()
}

impl ServiceDatabase {
    async fn create(admin: &mut PgConnection, service: &str) -> Self {
        let suffix = silo_testenv::unique_suffix();
        let this = Self {
            role: format!("{service}_{suffix}"),
            password: uuid::Uuid::new_v4().simple().to_string(),
            database: format!("{service}db_{suffix}"),
        };
        // Identifiers are generated (quoted anyway); the password is a generated literal.
        for statement in [
            format!(
                "CREATE ROLE \"{}\" LOGIN PASSWORD '{}'",
                this.role, this.password
            ),
            format!(
                "CREATE DATABASE \"{}\" OWNER \"{}\"",
                this.database, this.role
            ),
            format!("REVOKE ALL ON DATABASE \"{}\" FROM PUBLIC", this.database),
        ] {
            sqlx::query(&statement).execute(&mut *admin).await.unwrap();
        }
        this
    }

    fn options_for(&self, database: &str) -> PgConnectOptions {
        admin_options()
            .username(&self.role)
            .password(&self.password)
            .database(database)
    }

    fn url(&self) -> String {
        self.options_for(&self.database).to_url_lossy().to_string()
    }

    async fn drop_with(self, admin: &mut PgConnection) {
        let _ = sqlx::query(&format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            self.database
        ))
        .execute(&mut *admin)
        .await;
        let _ = sqlx::query(&format!("DROP ROLE IF EXISTS \"{}\"", self.role))
            .execute(&mut *admin)
            .await;
    }
}

#[tokio::test]
async fn each_services_credentials_are_refused_by_the_other_services_databases() {
    let mut admin = PgConnection::connect_with(&admin_options()).await.unwrap();
    let mut services = Vec::new();
    for service in ["user", "booking", "payment"] {
        services.push(ServiceDatabase::create(&mut admin, service).await);
    }
    for own in &services {
        for other in &services {
            let attempt = PgConnection::connect_with(&own.options_for(&other.database)).await;
            if own.database == other.database {
                attempt.unwrap().close().await.unwrap();
            } else {
                let error = attempt
                    .err()
                    .unwrap_or_else(|| panic!("{} opened {}", own.role, other.database));
                assert!(
                    error.to_string().contains("permission denied for database"),
                    "{}: {error}",
                    own.role
                );
            }
        }
    }

    // booking-service runs on nothing more than its own role: it migrates and serves.
    let users = UserServiceStandIn::start().await;
    let booking = &services[1];
    let app = Application::build(BookingConfig {
        base: base_config(&booking.url(), &nats_url()),
        user_service_url: users.url(),
        namespace: private_namespace(),
        startup_timeout: std::time::Duration::from_secs(30),
    })
    .await
    .unwrap();
    let (_, token) = users.add_user("ada@example.com");
    let response = reqwest::Client::new()
        .post(format!("http://{}/api/bookings", app.address()))
        .bearer_auth(token)
        .json(&booking_body("10"))
        .send()
        .await
        .unwrap();
    let (status, body) = json(response).await;
    assert_eq!(status, 201, "{body}");
    app.stop().await;
    users.stop().await;

    for service in services {
        service.drop_with(&mut admin).await;
    }
}
