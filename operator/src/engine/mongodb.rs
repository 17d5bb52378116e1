//! MongoDB provisioning with the official driver, connected as the server's administrator.

use std::collections::BTreeSet;

use mongodb::Client;
use mongodb::bson::{Bson, Document, doc};
use mongodb::options::{ClientOptions, Credential, ServerAddress, Tls, TlsOptions};

use super::connection_cache::ConnectionCache;
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

/// Admin clients shared by every reconcile, one per server. A `Client` owns a connection pool
/// and server monitors, so one per reconcile would reconnect and re-authenticate each time.
#[derive(Default)]
pub struct MongoClientCache {
    clients: ConnectionCache<Client>,
}

impl MongoClientCache {
    /// The client of `server` (the key of the object naming it) for `admin`, created lazily
    /// (it connects on first use). Any change of what it connects with (host, port, login,
    /// password, TLS mode) replaces it, so there is never more than one per server.
    pub fn client(&self, server: &str, admin: &AdminConnection) -> Result<Client, EngineError> {
        let lookup = self.clients.get(server, &admin.fingerprint(), || {
            let options = client_options(admin, &admin.username, &admin.password, ADMIN_DATABASE);
            Client::with_options(options).map_err(|e| EngineError::AdminConnect(e.to_string()))
        })?;
        if let Some(old) = lookup.replaced {
            tokio::spawn(async move { old.shutdown().await });
        }
        Ok(lookup.current)
    }

    /// Shuts down and drops the client of `server`, which is gone.
    pub fn forget(&self, server: &str) {
        if let Some(old) = self.clients.forget(server) {
            tokio::spawn(async move { old.shutdown().await });
        }
    }

    /// Shuts down and drops the clients of the servers `keep` says no to (they are gone).
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        for old in self.clients.retain(keep) {
            tokio::spawn(async move { old.shutdown().await });
        }
    }

    /// How many servers have a client.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// Whether no server has a client.
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }
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
    /// An engine using `client` (from [`MongoClientCache`]) as `admin`.
    pub fn new(admin: AdminConnection, client: Client) -> Self {
        Self { admin, client }
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
    /// whose privileges reach it; returns the users that can still reach it, measured from the
    /// server. A fixed number of reads however many users there are: every user with its roles,
    /// the privileges of all those roles at once, and the privileges of the users that needed a
    /// look afterwards; plus one revocation per user that had something revoked.
    async fn revoke_foreign_roles(
        &self,
        names: &ServerNames,
        report: &mut ProvisionReport,
    ) -> Result<Vec<String>, EngineError> {
        let admin = self.client.database(ADMIN_DATABASE);
        let reply = admin
            .run_command(doc! { "usersInfo": { "forAllDBs": true } })
            .await
            .map_err(command("listing users"))?;
        let users: Vec<UserGrants> = users_of(&reply)
            .into_iter()
            .filter(|u| !exempt_from_access_check(&u.user, &u.db, names, &self.admin.username))
            .collect();
        let to_expand = roles_to_expand(&users, &names.database);
        let reaching = if to_expand.is_empty() {
            BTreeSet::new()
        } else {
            let roles: Vec<Document> = to_expand
                .iter()
                .map(|r| doc! { "role": &r.role, "db": &r.db })
                .collect();
            let reply = admin
                .run_command(doc! { "rolesInfo": roles, "showPrivileges": true })
                .await
                .map_err(command("reading roles"))?;
            roles_reaching(&reply, &names.database)
        };
        let plans = plan_access(&users, &reaching, &names.database);
        for plan in &plans {
            if plan.revoke.is_empty() {
                continue;
            }
            let roles: Vec<Document> = plan
                .revoke
                .iter()
                .map(|r| doc! { "role": &r.role, "db": &r.db })
                .collect();
            self.client
                .database(&plan.db)
                .run_command(doc! { "revokeRolesFromUser": &plan.user, "roles": roles })
                .await
                .map_err(command("revoking a role from a user"))?;
            report.repaired.push(format!(
                "revoked {} role(s) reaching the database from user {}.{}",
                plan.revoke.len(),
                plan.db,
                plan.user
            ));
        }
        if plans.is_empty() {
            return Ok(Vec::new());
        }
        let checked: Vec<Document> = plans
            .iter()
            .map(|p| doc! { "user": &p.user, "db": &p.db })
            .collect();
        let reply = admin
            .run_command(doc! { "usersInfo": checked, "showPrivileges": true })
            .await
            .map_err(command("reading users' privileges"))?;
        Ok(users_reaching(&reply, &names.database))
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

/// A role, named with the database it is defined on.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct RoleName {
    role: String,
    db: String,
}

/// A user from `usersInfo` and the roles granted to it directly.
#[derive(Clone, Debug, PartialEq, Eq)]
struct UserGrants {
    user: String,
    db: String,
    roles: Vec<RoleName>,
}

/// What the access check does about one user.
#[derive(Clone, Debug, PartialEq, Eq)]
struct AccessPlan {
    user: String,
    db: String,
    /// Roles reaching the database, revoked.
    revoke: Vec<RoleName>,
    /// Holds a role reaching every database: not revoked (it may be another administrator),
    /// but measured.
    cluster_wide: bool,
}

fn role_name(entry: &Document) -> Option<RoleName> {
    Some(RoleName {
        role: entry.get_str("role").ok()?.to_string(),
        db: entry.get_str("db").ok()?.to_string(),
    })
}

/// The users of a `usersInfo` reply with their direct roles.
fn users_of(reply: &Document) -> Vec<UserGrants> {
    let entries = reply
        .get_array("users")
        .map(Vec::as_slice)
        .unwrap_or_default();
    entries
        .iter()
        .filter_map(Bson::as_document)
        .filter_map(|user| {
            Some(UserGrants {
                user: user.get_str("user").ok()?.to_string(),
                db: user.get_str("db").ok()?.to_string(),
                roles: user
                    .get_array("roles")
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(Bson::as_document)
                    .filter_map(role_name)
                    .collect(),
            })
        })
        .collect()
}

fn is_cluster_wide(role: &RoleName) -> bool {
    CLUSTER_WIDE_ROLES.contains(&role.role.as_str())
}

/// The roles held by `users` whose privileges must be looked up to know whether they reach
/// `database`: not those defined on it (they do) nor the cluster-wide ones (they do, and are
/// measured per user). Each role once.
fn roles_to_expand(users: &[UserGrants], database: &str) -> Vec<RoleName> {
    users
        .iter()
        .flat_map(|u| &u.roles)
        .filter(|r| r.db != database && !is_cluster_wide(r))
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// The roles of a `rolesInfo` reply (with `showPrivileges`) whose privileges reach `database`.
fn roles_reaching(reply: &Document, database: &str) -> BTreeSet<RoleName> {
    reply
        .get_array("roles")
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(Bson::as_document)
        .filter(|role| privileges_reach(role, database))
        .filter_map(role_name)
        .collect()
}

/// For each of `users` that holds a role reaching `database` (defined on it, in `reaching`, or
/// cluster-wide): what to revoke.
fn plan_access(
    users: &[UserGrants],
    reaching: &BTreeSet<RoleName>,
    database: &str,
) -> Vec<AccessPlan> {
    users
        .iter()
        .filter_map(|u| {
            let cluster_wide = u.roles.iter().any(is_cluster_wide);
            let revoke: Vec<RoleName> = u
                .roles
                .iter()
                .filter(|r| !is_cluster_wide(r) && (r.db == database || reaching.contains(r)))
                .cloned()
                .collect();
            (cluster_wide || !revoke.is_empty()).then(|| AccessPlan {
                user: u.user.clone(),
                db: u.db.clone(),
                revoke,
                cluster_wide,
            })
        })
        .collect()
}

/// The users (`db.user`) of a `usersInfo` reply (with `showPrivileges`) whose privileges reach
/// `database`.
fn users_reaching(reply: &Document, database: &str) -> Vec<String> {
    reply
        .get_array("users")
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(Bson::as_document)
        .filter(|user| privileges_reach(user, database))
        .map(|user| {
            format!(
                "{}.{}",
                user.get_str("db").unwrap_or_default(),
                user.get_str("user").unwrap_or_default()
            )
        })
        .collect()
}

/// Whether any of the `inheritedPrivileges` of a user or role names `database`, every database
/// (`db: ""`) or any resource.
fn privileges_reach(entry: &Document, database: &str) -> bool {
    entry
        .get_array("inheritedPrivileges")
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(Bson::as_document)
        .filter_map(|p| p.get_document("resource").ok())
        .any(|r| {
            matches!(r.get_str("db"), Ok(db) if db == database || db.is_empty())
                || r.get_bool("anyResource").unwrap_or(false)
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
    fn privileges_on_the_database_on_every_database_or_on_any_resource_reach_it() {
        let role = doc! { "role": "reporting", "db": "admin", "inheritedPrivileges": [
            { "resource": { "db": "other", "collection": "" }, "actions": ["find"] },
            { "resource": { "db": "shop_users", "collection": "" }, "actions": ["find"] },
        ] };
        assert!(privileges_reach(&role, "shop_users"));
        assert!(!privileges_reach(&role, "shop_orders"));
        let every = doc! { "inheritedPrivileges": [
            { "resource": { "db": "", "collection": "" }, "actions": ["find"] },
        ] };
        assert!(privileges_reach(&every, "shop_orders"));
        let any = doc! { "inheritedPrivileges": [ { "resource": { "anyResource": true }, "actions": ["anyAction"] } ] };
        assert!(privileges_reach(&any, "shop_orders"));
        let cluster = doc! { "inheritedPrivileges": [ { "resource": { "cluster": true }, "actions": ["serverStatus"] } ] };
        assert!(!privileges_reach(&cluster, "shop_orders"));
    }

    fn role(role: &str, db: &str) -> RoleName {
        RoleName {
            role: role.into(),
            db: db.into(),
        }
    }

    /// A `usersInfo: {forAllDBs: true}` reply: the owner, the admin, an intruder granted read
    /// on the database, a user with a custom role, another administrator, a bystander.
    fn all_users() -> Document {
        doc! { "users": [
            { "user": "shop_users", "db": "shop_users", "roles": [ { "role": "readWrite", "db": "shop_users" } ] },
            { "user": "root", "db": "admin", "roles": [ { "role": "root", "db": "admin" } ] },
            { "user": "shop_orders", "db": "shop_orders", "roles": [
                { "role": "readWrite", "db": "shop_orders" },
                { "role": "read", "db": "shop_users" },
            ] },
            { "user": "reporter", "db": "admin", "roles": [ { "role": "reporting", "db": "admin" } ] },
            { "user": "ops", "db": "admin", "roles": [ { "role": "readAnyDatabase", "db": "admin" } ] },
            { "user": "shop_carts", "db": "shop_carts", "roles": [
                { "role": "readWrite", "db": "shop_carts" },
                { "role": "reporting", "db": "admin" },
                { "role": "auditing", "db": "admin" },
            ] },
        ] }
    }

    fn foreign_users() -> Vec<UserGrants> {
        let names = ServerNames {
            database: "shop_users".into(),
            role: "shop_users".into(),
            marker: "silo:uid".into(),
        };
        users_of(&all_users())
            .into_iter()
            .filter(|u| !exempt_from_access_check(&u.user, &u.db, &names, "root"))
            .collect()
    }

    #[test]
    fn only_roles_of_other_databases_are_looked_up_and_each_once() {
        let users = foreign_users();
        assert_eq!(
            users.len(),
            4,
            "the owner and the configured admin are left out"
        );
        assert_eq!(
            roles_to_expand(&users, "shop_users"),
            [
                role("auditing", "admin"),
                role("readWrite", "shop_carts"),
                role("readWrite", "shop_orders"),
                role("reporting", "admin"),
            ]
        );
    }

    #[test]
    fn roles_reaching_the_database_are_revoked_and_cluster_wide_holders_are_measured() {
        let users = foreign_users();
        let roles_info = doc! { "roles": [
            { "role": "reporting", "db": "admin", "inheritedPrivileges": [
                { "resource": { "db": "shop_users", "collection": "" }, "actions": ["find"] },
            ] },
            { "role": "auditing", "db": "admin", "inheritedPrivileges": [
                { "resource": { "db": "shop_orders", "collection": "" }, "actions": ["find"] },
            ] },
            { "role": "readWrite", "db": "shop_orders", "inheritedPrivileges": [
                { "resource": { "db": "shop_orders", "collection": "" }, "actions": ["find"] },
            ] },
        ] };
        let reaching = roles_reaching(&roles_info, "shop_users");
        assert_eq!(reaching, BTreeSet::from([role("reporting", "admin")]));
        let plans = plan_access(&users, &reaching, "shop_users");
        let summary: Vec<(&str, Vec<RoleName>, bool)> = plans
            .iter()
            .map(|p| (p.user.as_str(), p.revoke.clone(), p.cluster_wide))
            .collect();
        assert_eq!(
            summary,
            [
                ("shop_orders", vec![role("read", "shop_users")], false),
                ("reporter", vec![role("reporting", "admin")], false),
                ("ops", vec![], true),
                ("shop_carts", vec![role("reporting", "admin")], false),
            ]
        );
    }

    #[test]
    fn users_whose_privileges_still_reach_the_database_are_reported_by_qualified_name() {
        let checked = doc! { "users": [
            { "user": "shop_orders", "db": "shop_orders", "inheritedPrivileges": [
                { "resource": { "db": "shop_orders", "collection": "" }, "actions": ["find"] },
            ] },
            { "user": "ops", "db": "admin", "inheritedPrivileges": [
                { "resource": { "db": "", "collection": "" }, "actions": ["find"] },
            ] },
        ] };
        assert_eq!(users_reaching(&checked, "shop_users"), ["admin.ops"]);
    }

    #[tokio::test]
    async fn one_client_per_server_replaced_when_what_it_connects_with_changes() {
        let cache = MongoClientCache::default();
        let admin = AdminConnection {
            host: "mongo.example".into(),
            port: 27017,
            username: "root".into(),
            password: Password::from_secret_value("first".into()),
            tls: TlsMode::VerifyFull,
        };
        let server = "DatabaseServer//mongo";
        cache.client(server, &admin).unwrap();
        cache.client(server, &admin).unwrap();
        let changed = AdminConnection {
            password: Password::from_secret_value("second".into()),
            tls: TlsMode::Disable,
            host: "mongo2.example".into(),
            ..admin.clone()
        };
        cache.client(server, &changed).unwrap();
        assert_eq!(cache.clients.len(), 1, "one client per server");
        cache.client("DatabaseServer//other", &admin).unwrap();
        assert_eq!(cache.clients.len(), 2);
        cache.forget(server);
        assert_eq!(cache.clients.len(), 1);
    }
}
