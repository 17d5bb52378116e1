//! Which MongoDB users besides the owner can reach a service's database, and what the access
//! check does about each: decisions only, from the replies of `usersInfo` and `rolesInfo`.
//!
//! MongoDB 7 semantics: a user holds roles, never privileges of its own; a role grants
//! privileges (`{resource, actions}`) and inherits other roles. A privilege reaches a
//! database's data when its resource covers the database's documents and one of its actions
//! reads, changes or destroys them, or hands them to someone else (taking over a login of that
//! database, granting a role there). Cluster resources, `system.*` collections and actions
//! such as `serverStatus`, `collStats` or `enableSharding` do not: `clusterMonitor` and
//! `clusterManager` hold privileges on `{db: "", collection: ""}` without reaching any data.
//!
//! Revoked: every role defined on the service's database, and every custom role of another
//! database that reaches the data by itself (its own privileges, a role of the service's
//! database it inherits, or an inherited custom role that does). Never revoked: built-in roles
//! of other databases (`clusterMonitor`, `clusterManager`, `clusterAdmin`, `backup`,
//! `restore`, `readAnyDatabase`, `root`, …), nor custom roles that reach the data only
//! through one of those; their holders that do reach the data are reported, with the roles
//! left in place.

use std::collections::{BTreeMap, BTreeSet};

use mongodb::bson::{Bson, Document};

use crate::engine::ServerNames;

/// The database the configured administrator authenticates against.
pub const ADMIN_DATABASE: &str = "admin";

/// Actions that read, change or destroy documents, or that give someone a login or a role on
/// the database.
const DATA_ACTIONS: &[&str] = &[
    "find",
    "changeStream",
    "insert",
    "update",
    "remove",
    "dropCollection",
    "dropDatabase",
    "renameCollectionSameDB",
    "convertToCapped",
    "emptycapped",
    "changePassword",
    "createUser",
    "grantRole",
    "anyAction",
];

/// Built-in roles that every database has; they act on their own database only.
const DATABASE_ROLES: &[&str] = &["read", "readWrite", "dbAdmin", "dbOwner", "userAdmin"];

/// Built-in roles of the `admin` database (MongoDB 7).
const ADMIN_ROLES: &[&str] = &[
    "clusterAdmin",
    "clusterManager",
    "clusterMonitor",
    "hostManager",
    "enableSharding",
    "directShardOperations",
    "backup",
    "restore",
    "readAnyDatabase",
    "readWriteAnyDatabase",
    "userAdminAnyDatabase",
    "dbAdminAnyDatabase",
    "root",
    "__system",
    "__queryableBackup",
    "searchCoordinator",
];

/// A role, named with the database it is defined on.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RoleName {
    /// Role name.
    pub role: String,
    /// Database the role is defined on.
    pub db: String,
}

impl RoleName {
    fn from_document(entry: &Document) -> Option<Self> {
        Some(Self {
            role: entry.get_str("role").ok()?.to_string(),
            db: entry.get_str("db").ok()?.to_string(),
        })
    }
}

impl std::fmt::Display for RoleName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.role, self.db)
    }
}

/// Whether `role` is built into MongoDB rather than created by someone.
pub fn is_builtin(role: &RoleName) -> bool {
    DATABASE_ROLES.contains(&role.role.as_str())
        || (role.db == "admin" && ADMIN_ROLES.contains(&role.role.as_str()))
}

/// A user from `usersInfo` and the roles granted to it directly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserGrants {
    /// User name.
    pub user: String,
    /// Database the user is defined on (where it authenticates).
    pub db: String,
    /// Roles granted to it directly.
    pub roles: Vec<RoleName>,
}

impl UserGrants {
    /// `db.user`, the name the reports use.
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.db, self.user)
    }
}

/// A role from `rolesInfo` with `showPrivileges`.
#[derive(Clone, Debug, PartialEq)]
pub struct RoleInfo {
    /// Its name.
    pub name: RoleName,
    /// Built into MongoDB (the reply's `isBuiltin`, or a built-in name).
    pub builtin: bool,
    /// Its own privileges.
    pub privileges: Vec<Document>,
    /// Every role it inherits, directly or not.
    pub inherited_roles: Vec<RoleName>,
    /// Its privileges and those of every role it inherits.
    pub inherited_privileges: Vec<Document>,
}

fn documents(entry: &Document, key: &str) -> Vec<Document> {
    entry
        .get_array(key)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(Bson::as_document)
        .cloned()
        .collect()
}

/// Whether `user`@`user_db` is left out of the access check: only the service's own user and
/// the configured administrator (authenticating against `admin`) are.
pub fn exempt_from_access_check(
    user: &str,
    user_db: &str,
    names: &ServerNames,
    admin_username: &str,
) -> bool {
    let is_owner = user == names.role && user_db == names.database;
    let is_admin = user == admin_username && user_db == ADMIN_DATABASE;
    is_owner || is_admin
}

/// The users of a `usersInfo` reply with their direct roles.
pub fn users_of(reply: &Document) -> Vec<UserGrants> {
    documents(reply, "users")
        .iter()
        .filter_map(|user| {
            Some(UserGrants {
                user: user.get_str("user").ok()?.to_string(),
                db: user.get_str("db").ok()?.to_string(),
                roles: documents(user, "roles")
                    .iter()
                    .filter_map(RoleName::from_document)
                    .collect(),
            })
        })
        .collect()
}

/// The roles of a `rolesInfo` reply (with `showPrivileges`), by name.
pub fn roles_of(reply: &Document) -> BTreeMap<RoleName, RoleInfo> {
    documents(reply, "roles")
        .iter()
        .filter_map(|role| {
            let name = RoleName::from_document(role)?;
            let info = RoleInfo {
                builtin: role.get_bool("isBuiltin").unwrap_or(false) || is_builtin(&name),
                privileges: documents(role, "privileges"),
                inherited_roles: documents(role, "inheritedRoles")
                    .iter()
                    .filter_map(RoleName::from_document)
                    .collect(),
                inherited_privileges: documents(role, "inheritedPrivileges"),
                name: name.clone(),
            };
            Some((name, info))
        })
        .collect()
}

/// Whether a privilege's `resource` covers documents of `database`: that database or every
/// database (`db: ""`), on all its non-system collections (`collection: ""`), a named
/// non-system collection, or a time-series collection's buckets; or any resource at all.
fn resource_covers(resource: &Document, database: &str) -> bool {
    if resource.get_bool("anyResource").unwrap_or(false) {
        return true;
    }
    match resource.get_str("db") {
        Ok(db) if db.is_empty() || db == database => {
            resource.contains_key("system_buckets")
                || resource
                    .get_str("collection")
                    .is_ok_and(|collection| !collection.starts_with("system."))
        }
        _ => false,
    }
}

/// Whether `privilege` (`{resource, actions}`) reaches the data of `database`.
pub fn privilege_reaches_data(privilege: &Document, database: &str) -> bool {
    let Ok(resource) = privilege.get_document("resource") else {
        return false;
    };
    let actions = privilege
        .get_array("actions")
        .map(Vec::as_slice)
        .unwrap_or_default();
    resource_covers(resource, database)
        && actions
            .iter()
            .filter_map(Bson::as_str)
            .any(|action| DATA_ACTIONS.contains(&action))
}

fn any_reaches(privileges: &[Document], database: &str) -> bool {
    privileges
        .iter()
        .any(|p| privilege_reaches_data(p, database))
}

/// The roles whose privileges must be read to judge `users`: those they hold on other
/// databases, except built-in roles of a database (`readWrite@other` never reaches this one).
/// Each once.
pub fn roles_to_look_up(users: &[UserGrants], database: &str) -> Vec<RoleName> {
    users
        .iter()
        .flat_map(|u| &u.roles)
        .filter(|r| r.db != database && !DATABASE_ROLES.contains(&r.role.as_str()))
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Custom roles that the looked-up custom roles inherit and that are not known yet: their own
/// privileges decide whether the roles inheriting them reach the data.
pub fn inherited_custom_roles(
    known: &BTreeMap<RoleName, RoleInfo>,
    database: &str,
) -> Vec<RoleName> {
    known
        .values()
        .filter(|info| !info.builtin)
        .flat_map(|info| &info.inherited_roles)
        .filter(|r| r.db != database && !is_builtin(r) && !known.contains_key(r))
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Whether the custom role `info` reaches `database`'s data by itself: through its own
/// privileges, a role of `database` it inherits, or an inherited custom role whose own
/// privileges do. Reach only through inherited built-in roles does not count.
pub fn custom_role_reaches(
    info: &RoleInfo,
    known: &BTreeMap<RoleName, RoleInfo>,
    database: &str,
) -> bool {
    any_reaches(&info.privileges, database)
        || info.inherited_roles.iter().any(|inherited| {
            inherited.db == database
                || known
                    .get(inherited)
                    .is_some_and(|other| !other.builtin && any_reaches(&other.privileges, database))
        })
}

/// What the access check does about one user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessPlan {
    /// The user.
    pub user: UserGrants,
    /// Roles revoked from it.
    pub revoke: Vec<RoleName>,
    /// Roles reaching the data that are left in place (built-in ones, and custom roles that
    /// reach only through built-in ones).
    pub left: Vec<RoleName>,
}

/// For each of `users` holding a role that reaches `database`: what to revoke and what is
/// left. `known` holds the looked-up roles (see [`roles_to_look_up`]).
pub fn plan_access(
    users: &[UserGrants],
    known: &BTreeMap<RoleName, RoleInfo>,
    database: &str,
) -> Vec<AccessPlan> {
    users
        .iter()
        .filter_map(|user| {
            let mut plan = AccessPlan {
                user: user.clone(),
                revoke: Vec::new(),
                left: Vec::new(),
            };
            for role in &user.roles {
                if role.db == database {
                    plan.revoke.push(role.clone());
                    continue;
                }
                let Some(info) = known.get(role) else {
                    continue;
                };
                if !info.builtin && custom_role_reaches(info, known, database) {
                    plan.revoke.push(role.clone());
                } else if any_reaches(&info.inherited_privileges, database) {
                    plan.left.push(role.clone());
                }
            }
            (!plan.revoke.is_empty() || !plan.left.is_empty()).then_some(plan)
        })
        .collect()
}

/// The users of a `usersInfo` reply (with `showPrivileges`, after the revocations) whose
/// privileges still reach `database`, each as `db.user`, naming the roles `plans` left them.
pub fn remaining_access(reply: &Document, plans: &[AccessPlan], database: &str) -> Vec<String> {
    documents(reply, "users")
        .iter()
        .filter(|user| any_reaches(&documents(user, "inheritedPrivileges"), database))
        .map(|user| {
            let (name, db) = (
                user.get_str("user").unwrap_or_default(),
                user.get_str("db").unwrap_or_default(),
            );
            let left: Vec<String> = plans
                .iter()
                .filter(|p| p.user.user == name && p.user.db == db)
                .flat_map(|p| p.left.iter().map(RoleName::to_string))
                .collect();
            if left.is_empty() {
                format!("{db}.{name}")
            } else {
                format!("{db}.{name} (roles left in place: {})", left.join(", "))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use mongodb::bson::doc;

    use super::*;

    const DB: &str = "shop_users";

    fn role(role: &str, db: &str) -> RoleName {
        RoleName {
            role: role.into(),
            db: db.into(),
        }
    }

    fn user(name: &str, db: &str, roles: &[RoleName]) -> UserGrants {
        UserGrants {
            user: name.into(),
            db: db.into(),
            roles: roles.to_vec(),
        }
    }

    /// MongoDB 7's built-in roles of `admin` as `rolesInfo` shows them (the privileges that
    /// matter here; the real lists are longer).
    fn builtin_roles() -> Document {
        doc! { "roles": [
            { "role": "clusterMonitor", "db": "admin", "isBuiltin": true, "inheritedRoles": [],
              "privileges": [
                { "resource": { "cluster": true }, "actions": ["serverStatus", "replSetGetStatus", "listDatabases"] },
                { "resource": { "db": "", "collection": "" }, "actions": ["collStats", "dbStats", "indexStats", "useUUID"] },
                { "resource": { "db": "", "collection": "system.profile" }, "actions": ["find"] },
                { "resource": { "db": "config", "collection": "" }, "actions": ["find"] },
              ],
              "inheritedPrivileges": [
                { "resource": { "cluster": true }, "actions": ["serverStatus", "replSetGetStatus", "listDatabases"] },
                { "resource": { "db": "", "collection": "" }, "actions": ["collStats", "dbStats", "indexStats", "useUUID"] },
                { "resource": { "db": "", "collection": "system.profile" }, "actions": ["find"] },
                { "resource": { "db": "config", "collection": "" }, "actions": ["find"] },
              ] },
            { "role": "clusterManager", "db": "admin", "isBuiltin": true, "inheritedRoles": [],
              "privileges": [
                { "resource": { "db": "", "collection": "" }, "actions": ["enableSharding", "moveChunk", "splitVector"] },
              ],
              "inheritedPrivileges": [
                { "resource": { "db": "", "collection": "" }, "actions": ["enableSharding", "moveChunk", "splitVector"] },
              ] },
            { "role": "clusterAdmin", "db": "admin", "isBuiltin": true,
              "inheritedRoles": [ { "role": "clusterManager", "db": "admin" }, { "role": "clusterMonitor", "db": "admin" } ],
              "privileges": [ { "resource": { "db": "", "collection": "" }, "actions": ["dropDatabase"] } ],
              "inheritedPrivileges": [
                { "resource": { "db": "", "collection": "" }, "actions": ["dropDatabase", "enableSharding", "collStats"] },
              ] },
            { "role": "backup", "db": "admin", "isBuiltin": true, "inheritedRoles": [],
              "privileges": [ { "resource": { "db": "", "collection": "" }, "actions": ["find", "listCollections", "listIndexes"] } ],
              "inheritedPrivileges": [ { "resource": { "db": "", "collection": "" }, "actions": ["find", "listCollections", "listIndexes"] } ] },
            { "role": "restore", "db": "admin", "isBuiltin": true, "inheritedRoles": [],
              "privileges": [ { "resource": { "db": "", "collection": "" }, "actions": ["insert", "update", "dropCollection"] } ],
              "inheritedPrivileges": [ { "resource": { "db": "", "collection": "" }, "actions": ["insert", "update", "dropCollection"] } ] },
        ] }
    }

    /// Custom roles of `admin`: one reading the service's database itself, one inheriting
    /// `read` on it, one inheriting the first, one wrapping `backup`, one for dashboards.
    fn custom_roles() -> Document {
        doc! { "roles": [
            { "role": "reporting", "db": "admin", "isBuiltin": false, "inheritedRoles": [],
              "privileges": [ { "resource": { "db": DB, "collection": "orders" }, "actions": ["find"] } ],
              "inheritedPrivileges": [ { "resource": { "db": DB, "collection": "orders" }, "actions": ["find"] } ] },
            { "role": "support", "db": "admin", "isBuiltin": false, "privileges": [],
              "inheritedRoles": [ { "role": "read", "db": DB } ],
              "inheritedPrivileges": [ { "resource": { "db": DB, "collection": "" }, "actions": ["find"] } ] },
            { "role": "analyst", "db": "admin", "isBuiltin": false, "privileges": [],
              "inheritedRoles": [ { "role": "reporting", "db": "admin" } ],
              "inheritedPrivileges": [ { "resource": { "db": DB, "collection": "orders" }, "actions": ["find"] } ] },
            { "role": "nightlyBackup", "db": "admin", "isBuiltin": false, "privileges": [],
              "inheritedRoles": [ { "role": "backup", "db": "admin" } ],
              "inheritedPrivileges": [ { "resource": { "db": "", "collection": "" }, "actions": ["find"] } ] },
            { "role": "dashboards", "db": "admin", "isBuiltin": false, "inheritedRoles": [],
              "privileges": [ { "resource": { "cluster": true }, "actions": ["serverStatus"] } ],
              "inheritedPrivileges": [ { "resource": { "cluster": true }, "actions": ["serverStatus"] } ] },
        ] }
    }

    fn known() -> BTreeMap<RoleName, RoleInfo> {
        let mut known = roles_of(&builtin_roles());
        known.extend(roles_of(&custom_roles()));
        known
    }

    #[test]
    fn only_the_owner_and_the_configured_admin_are_exempt_from_the_access_check() {
        let names = ServerNames {
            database: DB.into(),
            role: DB.into(),
            marker: "silo:uid".into(),
        };
        assert!(exempt_from_access_check(DB, DB, &names, "root"));
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
        assert!(!exempt_from_access_check(DB, "admin", &names, "root"));
    }

    #[test]
    fn a_privilege_reaches_the_data_with_a_data_action_on_the_databases_documents() {
        let reaches = |resource: Document, actions: &[&str]| {
            privilege_reaches_data(&doc! { "resource": resource, "actions": actions }, DB)
        };
        assert!(reaches(doc! { "db": DB, "collection": "" }, &["find"]));
        assert!(reaches(
            doc! { "db": DB, "collection": "orders" },
            &["update"]
        ));
        assert!(reaches(doc! { "db": "", "collection": "" }, &["insert"]));
        assert!(reaches(
            doc! { "db": DB, "system_buckets": "metrics" },
            &["find"]
        ));
        assert!(reaches(doc! { "anyResource": true }, &["anyAction"]));
        assert!(reaches(
            doc! { "db": "", "collection": "" },
            &["dropDatabase"]
        ));
        assert!(reaches(
            doc! { "db": DB, "collection": "" },
            &["changePassword"]
        ));
        // Statistics, sharding and the profiler are no data; nor are other databases.
        assert!(!reaches(
            doc! { "db": "", "collection": "" },
            &["collStats", "dbStats"]
        ));
        assert!(!reaches(
            doc! { "db": "", "collection": "" },
            &["enableSharding", "moveChunk"]
        ));
        assert!(!reaches(
            doc! { "db": "", "collection": "system.profile" },
            &["find"]
        ));
        assert!(!reaches(
            doc! { "db": "shop_orders", "collection": "" },
            &["find"]
        ));
        assert!(!reaches(
            doc! { "cluster": true },
            &["serverStatus", "listDatabases"]
        ));
        assert!(!reaches(doc! { "db": DB, "collection": "" }, &[]));
    }

    #[test]
    fn built_in_roles_are_told_by_name_and_database() {
        for builtin in [
            role("read", DB),
            role("readWrite", "other"),
            role("dbOwner", "other"),
            role("clusterMonitor", "admin"),
            role("backup", "admin"),
            role("root", "admin"),
        ] {
            assert!(is_builtin(&builtin), "{builtin}");
        }
        assert!(!is_builtin(&role("reporting", "admin")));
        // Cluster roles exist only in `admin`: one of that name elsewhere is someone's own.
        assert!(!is_builtin(&role("backup", "shop_orders")));
        let reported = roles_of(
            &doc! { "roles": [ { "role": "newBuiltin", "db": "admin", "isBuiltin": true } ] },
        );
        assert!(reported[&role("newBuiltin", "admin")].builtin);
    }

    #[test]
    fn monitoring_and_cluster_management_roles_are_neither_revoked_nor_reported() {
        let users = [user(
            "monitor",
            "admin",
            &[
                role("clusterMonitor", "admin"),
                role("clusterManager", "admin"),
                role("dashboards", "admin"),
            ],
        )];
        assert_eq!(plan_access(&users, &known(), DB), []);
    }

    #[test]
    fn backup_restore_and_cluster_admin_are_left_in_place_and_reported() {
        let users = [
            user("backup", "admin", &[role("backup", "admin")]),
            user(
                "restore",
                "admin",
                &[role("restore", "admin"), role("clusterMonitor", "admin")],
            ),
            user("ops", "admin", &[role("clusterAdmin", "admin")]),
            user("nightly", "admin", &[role("nightlyBackup", "admin")]),
        ];
        let plans = plan_access(&users, &known(), DB);
        let summary: Vec<(&str, usize, Vec<RoleName>)> = plans
            .iter()
            .map(|p| (p.user.user.as_str(), p.revoke.len(), p.left.clone()))
            .collect();
        assert_eq!(
            summary,
            [
                ("backup", 0, vec![role("backup", "admin")]),
                ("restore", 0, vec![role("restore", "admin")]),
                ("ops", 0, vec![role("clusterAdmin", "admin")]),
                // A custom role that reaches only through a built-in one is left too.
                ("nightly", 0, vec![role("nightlyBackup", "admin")]),
            ]
        );
    }

    #[test]
    fn roles_of_the_database_and_custom_roles_reaching_it_are_revoked() {
        let users = [
            user(
                "shop_orders",
                "shop_orders",
                &[role("readWrite", "shop_orders"), role("read", DB)],
            ),
            user(
                "reporter",
                "admin",
                &[role("reporting", "admin"), role("clusterMonitor", "admin")],
            ),
            user("helpdesk", "admin", &[role("support", "admin")]),
            user("analyst", "admin", &[role("analyst", "admin")]),
            user(
                "shop_carts",
                "shop_carts",
                &[role("readWrite", "shop_carts")],
            ),
        ];
        let plans = plan_access(&users, &known(), DB);
        let revoked: Vec<(&str, Vec<RoleName>)> = plans
            .iter()
            .map(|p| (p.user.user.as_str(), p.revoke.clone()))
            .collect();
        assert_eq!(
            revoked,
            [
                ("shop_orders", vec![role("read", DB)]),
                ("reporter", vec![role("reporting", "admin")]),
                ("helpdesk", vec![role("support", "admin")]),
                ("analyst", vec![role("analyst", "admin")]),
            ]
        );
        assert!(plans.iter().all(|p| p.left.is_empty()));
    }

    #[test]
    fn only_roles_that_may_reach_the_database_are_looked_up_and_each_once() {
        let users = [
            user(
                "a",
                "shop_a",
                &[
                    role("readWrite", "shop_a"),
                    role("read", DB),
                    role("reporting", "admin"),
                ],
            ),
            user(
                "b",
                "admin",
                &[
                    role("reporting", "admin"),
                    role("backup", "admin"),
                    role("mine", DB),
                ],
            ),
        ];
        assert_eq!(
            roles_to_look_up(&users, DB),
            [role("backup", "admin"), role("reporting", "admin")]
        );
        let mut known = roles_of(&custom_roles());
        known.remove(&role("reporting", "admin"));
        assert_eq!(
            inherited_custom_roles(&known, DB),
            [role("reporting", "admin")],
            "analyst inherits it; read@{DB} and backup@admin need no look-up"
        );
    }

    #[test]
    fn what_still_reaches_the_data_is_reported_with_the_roles_left_in_place() {
        let users = [
            user("backup", "admin", &[role("backup", "admin")]),
            user("shop_orders", "shop_orders", &[role("read", DB)]),
        ];
        let plans = plan_access(&users, &known(), DB);
        let measured = doc! { "users": [
            { "user": "backup", "db": "admin", "inheritedPrivileges": [
                { "resource": { "db": "", "collection": "" }, "actions": ["find"] },
            ] },
            { "user": "shop_orders", "db": "shop_orders", "inheritedPrivileges": [
                { "resource": { "db": "shop_orders", "collection": "" }, "actions": ["find"] },
            ] },
            { "user": "stale", "db": "admin", "inheritedPrivileges": [
                { "resource": { "db": DB, "collection": "" }, "actions": ["insert"] },
            ] },
        ] };
        assert_eq!(
            remaining_access(&measured, &plans, DB),
            [
                "admin.backup (roles left in place: backup@admin)",
                "admin.stale"
            ]
        );
    }

    #[test]
    fn users_are_read_with_their_direct_roles() {
        let reply = doc! { "users": [
            { "user": "shop_users", "db": DB, "roles": [ { "role": "readWrite", "db": DB } ] },
            { "user": "broken" },
        ] };
        assert_eq!(users_of(&reply), [user(DB, DB, &[role("readWrite", DB)])]);
    }
}
