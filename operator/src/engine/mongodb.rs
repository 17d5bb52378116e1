//! MongoDB provisioning with the official driver, connected as the server's administrator.

use mongodb::Client;
use mongodb::bson::{Bson, Document, doc};
use mongodb::options::{ClientOptions, Credential, ServerAddress, Tls, TlsOptions};

use super::{AdminConnection, Engine, EngineError, ProvisionReport, ServerNames};
use crate::crd::TlsMode;
use crate::password::Password;

const ADMIN_DATABASE: &str = "admin";
/// Built-in roles that reach every database; held by administrators, never revoked here.
const CLUSTER_WIDE_ROLES: &[&str] = &[
    "root",
    "readAnyDatabase",
    "readWriteAnyDatabase",
    "dbAdminAnyDatabase",
    "userAdminAnyDatabase",
    "__system",
];
const NOT_YET_INITIALIZED: i32 = 94;

/// Provisions on one MongoDB server.
pub struct MongoEngine {
    admin: AdminConnection,
    client: Client,
}

fn client_options(
    admin: &AdminConnection,
    username: &str,
    password: &Password,
    auth_source: &str,
) -> ClientOptions {
    let mut options = ClientOptions::default();
    options.hosts = vec![ServerAddress::Tcp {
        host: admin.host.clone(),
        port: Some(admin.port),
    }];
    options.credential = Some(
        Credential::builder()
            .username(username.to_string())
            .password(password.expose().to_string())
            .source(auth_source.to_string())
            .build(),
    );
    options.direct_connection = Some(true);
    options.app_name = Some("silo-operator".to_string());
    options.server_selection_timeout = Some(std::time::Duration::from_secs(10));
    options.tls = match admin.tls {
        TlsMode::Disable => None,
        TlsMode::Require => Some(Tls::Enabled(
            TlsOptions::builder()
                .allow_invalid_certificates(true)
                .build(),
        )),
        TlsMode::VerifyFull => Some(Tls::Enabled(TlsOptions::default())),
    };
    options
}

fn command(action: &'static str) -> impl Fn(mongodb::error::Error) -> EngineError {
    move |e| EngineError::Command {
        action,
        message: e.to_string(),
    }
}

impl MongoEngine {
    /// Connects (lazily) as `admin`.
    pub fn new(admin: AdminConnection) -> Result<Self, EngineError> {
        let options = client_options(&admin, &admin.username, &admin.password, ADMIN_DATABASE);
        let client =
            Client::with_options(options).map_err(|e| EngineError::AdminConnect(e.to_string()))?;
        Ok(Self { admin, client })
    }

    /// For a server the operator runs: initiates its single-member replica set once, so that
    /// services can use multi-document transactions.
    pub async fn initiate_replica_set(&self, member_host: &str) -> Result<(), EngineError> {
        let admin = self.client.database(ADMIN_DATABASE);
        match admin.run_command(doc! { "replSetGetStatus": 1 }).await {
            Ok(_) => Ok(()),
            Err(e) if command_error_code(&e) == Some(NOT_YET_INITIALIZED) => {
                admin
                    .run_command(doc! {
                        "replSetInitiate": {
                            "_id": "rs0",
                            "members": [ { "_id": 0, "host": format!("{member_host}:{}", self.admin.port) } ]
                        }
                    })
                    .await
                    .map_err(command("initiating the replica set"))?;
                Ok(())
            }
            Err(e) => Err(command("reading the replica set status")(e)),
        }
    }

    async fn user_exists(&self, names: &ServerNames) -> Result<bool, EngineError> {
        let reply = self
            .client
            .database(&names.database)
            .run_command(doc! { "usersInfo": { "user": &names.role, "db": &names.database } })
            .await
            .map_err(command("reading the user"))?;
        Ok(reply
            .get_array("users")
            .map(|users| !users.is_empty())
            .unwrap_or(false))
    }

    /// Revokes from every other user any role on the service's database, including custom roles
    /// whose privileges reach it.
    async fn revoke_foreign_roles(
        &self,
        names: &ServerNames,
        report: &mut ProvisionReport,
    ) -> Result<Vec<String>, EngineError> {
        let reply = self
            .client
            .database(ADMIN_DATABASE)
            .run_command(doc! { "usersInfo": { "forAllDBs": true } })
            .await
            .map_err(command("listing users"))?;
        let mut remaining = Vec::new();
        for user in reply.get_array("users").into_iter().flatten() {
            let Some(user) = user.as_document() else {
                continue;
            };
            let name = user.get_str("user").unwrap_or_default().to_string();
            let user_db = user.get_str("db").unwrap_or_default().to_string();
            if exempt_from_access_check(&name, &user_db, names, &self.admin.username) {
                continue;
            }
            let mut holds_cluster_wide = false;
            let mut to_revoke = Vec::new();
            for role in user.get_array("roles").into_iter().flatten() {
                let Some(role) = role.as_document() else {
                    continue;
                };
                let role_name = role.get_str("role").unwrap_or_default();
                let role_db = role.get_str("db").unwrap_or_default();
                if CLUSTER_WIDE_ROLES.contains(&role_name) {
                    // Not revoked (it may be another administrator), but measured below.
                    holds_cluster_wide = true;
                    continue;
                }
                if role_db == names.database
                    || self
                        .role_reaches(role_name, role_db, &names.database)
                        .await?
                {
                    to_revoke.push(doc! { "role": role_name, "db": role_db });
                }
            }
            if to_revoke.is_empty() && !holds_cluster_wide {
                continue;
            }
            if !to_revoke.is_empty() {
                let revoked = to_revoke.len();
                self.client
                    .database(&user_db)
                    .run_command(doc! { "revokeRolesFromUser": &name, "roles": to_revoke })
                    .await
                    .map_err(command("revoking a role from a user"))?;
                report.repaired.push(format!(
                    "revoked {revoked} role(s) reaching the database from user {user_db}.{name}"
                ));
            }
            if self
                .role_reaches_user(&name, &user_db, &names.database)
                .await?
            {
                remaining.push(format!("{user_db}.{name}"));
            }
        }
        Ok(remaining)
    }

    /// Whether the custom role `role`@`role_db` grants privileges on `database`.
    async fn role_reaches(
        &self,
        role: &str,
        role_db: &str,
        database: &str,
    ) -> Result<bool, EngineError> {
        let reply = self
            .client
            .database(role_db)
            .run_command(doc! {
                "rolesInfo": { "role": role, "db": role_db },
                "showPrivileges": true,
                "showBuiltinRoles": false,
            })
            .await
            .map_err(command("reading a role"))?;
        Ok(privileges_reach(&reply, "inheritedPrivileges", database))
    }

    /// Whether `user`@`user_db` still holds privileges on `database` after revocation.
    async fn role_reaches_user(
        &self,
        user: &str,
        user_db: &str,
        database: &str,
    ) -> Result<bool, EngineError> {
        let reply = self
            .client
            .database(user_db)
            .run_command(
                doc! { "usersInfo": { "user": user, "db": user_db }, "showPrivileges": true },
            )
            .await
            .map_err(command("reading a user's privileges"))?;
        Ok(privileges_reach(&reply, "inheritedPrivileges", database))
    }

    async fn can_log_in(&self, names: &ServerNames, password: &Password) -> bool {
        let options = client_options(&self.admin, &names.role, password, &names.database);
        let Ok(client) = Client::with_options(options) else {
            return false;
        };
        let ok = client
            .database(&names.database)
            .run_command(doc! { "listCollections": 1, "nameOnly": true })
            .await
            .is_ok();
        client.shutdown().await;
        ok
    }
}

/// Whether any privilege in the `key` array of the first entry of `users`/`roles` names `database`
/// (or every database, `db: ""`).
/// Whether `user`@`user_db` is left out of the foreign-access check: only the service's own
/// user and the configured administrator (authenticating against `admin`) are.
fn exempt_from_access_check(
    user: &str,
    user_db: &str,
    names: &ServerNames,
    admin_username: &str,
) -> bool {
    let is_owner = user == names.role && user_db == names.database;
    let is_admin = user == admin_username && user_db == ADMIN_DATABASE;
    is_owner || is_admin
}

fn privileges_reach(reply: &Document, key: &str, database: &str) -> bool {
    let entries = reply
        .get_array("roles")
        .or_else(|_| reply.get_array("users"))
        .cloned()
        .unwrap_or_default();
    entries.iter().filter_map(Bson::as_document).any(|entry| {
        entry
            .get_array(key)
            .map(|privileges| {
                privileges
                    .iter()
                    .filter_map(Bson::as_document)
                    .filter_map(|p| p.get_document("resource").ok())
                    .any(|r| matches!(r.get_str("db"), Ok(db) if db == database || db.is_empty()))
            })
            .unwrap_or(false)
    })
}

fn command_error_code(error: &mongodb::error::Error) -> Option<i32> {
    match error.kind.as_ref() {
        mongodb::error::ErrorKind::Command(c) => Some(c.code),
        _ => None,
    }
}

impl Engine for MongoEngine {
    async fn server_version(&self) -> Result<String, EngineError> {
        let reply = self
            .client
            .database(ADMIN_DATABASE)
            .run_command(doc! { "buildInfo": 1 })
            .await
            .map_err(|e| EngineError::AdminConnect(e.to_string()))?;
        Ok(reply.get_str("version").unwrap_or("unknown").to_string())
    }

    async fn provision(
        &self,
        names: &ServerNames,
        password: &Password,
        set_password: bool,
    ) -> Result<ProvisionReport, EngineError> {
        let mut report = ProvisionReport::default();
        let database = self.client.database(&names.database);
        let roles = vec![doc! { "role": "readWrite", "db": &names.database }];
        if self.user_exists(names).await? {
            // Resetting the role list each time removes anything granted to the user by hand.
            let mut update = doc! { "updateUser": &names.role, "roles": roles };
            if set_password {
                update.insert("pwd", password.expose());
            }
            database
                .run_command(update)
                .await
                .map_err(command("updating the user"))?;
        } else {
            let create = doc! {
                "createUser": &names.role,
                "pwd": password.expose(),
                "roles": roles,
                "mechanisms": ["SCRAM-SHA-256"],
            };
            match database.run_command(create).await {
                Ok(_) => report.role_created = true,
                // 51003: created by an interrupted earlier pass.
                Err(e) if command_error_code(&e) == Some(51003) => {}
                Err(e) => return Err(command("creating the user")(e)),
            }
        }
        report.password_set = set_password || report.role_created;
        let remaining = self.revoke_foreign_roles(names, &mut report).await?;
        if !self.can_log_in(names, password).await {
            database
                .run_command(doc! { "updateUser": &names.role, "pwd": password.expose() })
                .await
                .map_err(command("resetting the user's password"))?;
            if !self.can_log_in(names, password).await {
                return Err(EngineError::LoginFailed(format!(
                    "user {} cannot authenticate against database {}",
                    names.role, names.database
                )));
            }
            report.password_set = true;
        }
        report.remaining_access = remaining;
        Ok(report)
    }

    async fn deprovision(&self, names: &ServerNames) -> Result<(), EngineError> {
        let admin = self.client.database(ADMIN_DATABASE);
        let _ = admin
            .run_command(doc! {
                "killAllSessionsByPattern": [ { "users": [ { "user": &names.role, "db": &names.database } ] } ]
            })
            .await;
        let database = self.client.database(&names.database);
        if self.user_exists(names).await? {
            database
                .run_command(doc! { "dropUser": &names.role })
                .await
                .map_err(command("dropping the user"))?;
        }
        database
            .drop()
            .await
            .map_err(command("dropping the database"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_owner_and_the_configured_admin_are_exempt_from_the_access_check() {
        let names = ServerNames {
            database: "shop_users".into(),
            role: "shop_users".into(),
            marker: "silo:uid".into(),
        };
        assert!(exempt_from_access_check(
            "shop_users",
            "shop_users",
            &names,
            "root"
        ));
        assert!(exempt_from_access_check("root", "admin", &names, "root"));
        // A user of the admin's name defined in another database is someone else.
        assert!(!exempt_from_access_check(
            "root",
            "shop_orders",
            &names,
            "root"
        ));
        // Another administrator is measured like everyone else.
        assert!(!exempt_from_access_check("ops", "admin", &names, "root"));
        assert!(!exempt_from_access_check(
            "shop_users",
            "admin",
            &names,
            "root"
        ));
    }

    #[test]
    fn privileges_on_the_database_or_on_every_database_count_as_reaching_it() {
        let reply = doc! { "roles": [ { "inheritedPrivileges": [
            { "resource": { "db": "other", "collection": "" }, "actions": ["find"] },
            { "resource": { "db": "shop_users", "collection": "" }, "actions": ["find"] },
        ] } ] };
        assert!(privileges_reach(
            &reply,
            "inheritedPrivileges",
            "shop_users"
        ));
        assert!(!privileges_reach(
            &reply,
            "inheritedPrivileges",
            "shop_orders"
        ));
        let any = doc! { "users": [ { "inheritedPrivileges": [
            { "resource": { "db": "", "collection": "" }, "actions": ["find"] },
        ] } ] };
        assert!(privileges_reach(&any, "inheritedPrivileges", "shop_orders"));
    }
}
