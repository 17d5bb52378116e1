//! The names a `Database` uses on its server, and the mark that says Silo made them.

use kube::ResourceExt;

use crate::crd::{Database, DatabaseStatus, Engine};
use crate::engine::ServerNames;
use crate::names::{MONGODB_DATABASE_LIMIT, POSTGRES_IDENTIFIER_LIMIT, derive_server_name};

fn name_limit(engine: Engine) -> usize {
    match engine {
        Engine::Postgres => POSTGRES_IDENTIFIER_LIMIT,
        Engine::Mongodb => MONGODB_DATABASE_LIMIT,
    }
}

/// The names on the server: recorded ones if any, otherwise derived.
pub fn server_names(db: &Database, status: &DatabaseStatus) -> ServerNames {
    let derived = derive_server_name(
        &db.namespace().unwrap_or_default(),
        &db.name_any(),
        name_limit(db.spec.engine),
    );
    ServerNames {
        database: status
            .database_name
            .clone()
            .unwrap_or_else(|| derived.clone()),
        role: status.role_name.clone().unwrap_or(derived),
        marker: ownership_marker(db),
    }
}

/// The comment Silo puts on what it creates for `db`, so that it never adopts anything else.
pub fn ownership_marker(db: &Database) -> String {
    format!("silo:{}", db.metadata.uid.as_deref().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::database::test_database;

    #[test]
    fn recorded_names_win_over_derivation() {
        let mut db = test_database();
        db.metadata.namespace = Some("shop".into());
        let status = DatabaseStatus {
            database_name: Some("recorded_db".into()),
            role_name: Some("recorded_role".into()),
            ..Default::default()
        };
        let names = server_names(&db, &status);
        assert_eq!(names.database, "recorded_db");
        assert_eq!(names.role, "recorded_role");
        assert_eq!(
            server_names(&db, &DatabaseStatus::default()).role,
            "shop_users"
        );
    }
}
