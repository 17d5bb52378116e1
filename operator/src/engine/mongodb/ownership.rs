//! Which MongoDB users and databases Silo made for a Database, and what it may therefore do
//! with them.
//!
//! MongoDB has no comments, so Silo marks the user it creates: `customData` holds the
//! Database's marker (`silo:<uid>`), which nobody but an administrator can change. A database
//! has no mark of its own; it counts as Silo's while the marked user owns it: Silo creates the
//! user only when no database of that name holds data yet, and drops the database before the
//! user, so a database without a marked user is never Silo's to use or to drop.

use mongodb::bson::{Bson, Document, doc};

/// The `customData` field of a user that holds the marker of the Database it was made for.
pub const MARK_FIELD: &str = "siloDatabase";

/// The `customData` of a user Silo creates for the Database marked `marker`.
pub fn custom_data(marker: &str) -> Document {
    doc! { MARK_FIELD: marker }
}

/// A user of the derived name, as the server holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserFound {
    /// There is none.
    Absent,
    /// Silo made it for this Database.
    Ours,
    /// Someone else made it (or Silo, for another Database).
    Foreign,
}

/// The user in a `usersInfo` reply for one user, judged by its mark.
pub fn user_found(reply: &Document, marker: &str) -> UserFound {
    let users = reply
        .get_array("users")
        .map(Vec::as_slice)
        .unwrap_or_default();
    match users.first().and_then(Bson::as_document) {
        None => UserFound::Absent,
        Some(user) => {
            let mark = user
                .get_document("customData")
                .ok()
                .and_then(|data| data.get_str(MARK_FIELD).ok());
            if mark == Some(marker) {
                UserFound::Ours
            } else {
                UserFound::Foreign
            }
        }
    }
}

/// Whether a `listDatabases` reply (filtered by name) lists a database, i.e. it holds data.
pub fn database_listed(reply: &Document) -> bool {
    reply
        .get_array("databases")
        .is_ok_and(|databases| !databases.is_empty())
}

/// What provisioning may do with the derived names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Nothing of those names exists: create the user (the database follows with its data).
    Create,
    /// The user is Silo's for this Database: keep it as it must be.
    Keep,
    /// Something of those names belongs to someone else: leave it, say what.
    Taken(String),
}

/// What provisioning `user` in `database` may do, given the user found and whether the
/// database holds data.
pub fn claim(found: UserFound, database_holds_data: bool, user: &str, database: &str) -> Claim {
    match (found, database_holds_data) {
        (UserFound::Ours, _) => Claim::Keep,
        (UserFound::Foreign, _) => Claim::Taken(format!(
            "user {user} already exists in database {database} and was not created by Silo for this Database; drop or rename it, or create the Database under another name"
        )),
        (UserFound::Absent, true) => Claim::Taken(format!(
            "database {database} already exists with data and no user Silo created for this Database owns it; drop or rename it, or create the Database under another name"
        )),
        (UserFound::Absent, false) => Claim::Create,
    }
}

/// Whether deprovisioning may drop the database and the user: only when the user is Silo's
/// for this Database. Anything else is left untouched.
pub fn may_drop(found: UserFound) -> bool {
    found == UserFound::Ours
}

#[cfg(test)]
mod tests {
    use super::*;

    const MARK: &str = "silo:0f9c";

    fn reply(users: Vec<Document>) -> Document {
        doc! { "users": users }
    }

    #[test]
    fn a_user_is_ours_only_with_this_databases_mark() {
        let marked =
            doc! { "user": "shop_users", "db": "shop_users", "customData": custom_data(MARK) };
        assert_eq!(user_found(&reply(vec![marked]), MARK), UserFound::Ours);
        let other = doc! { "user": "shop_users", "customData": custom_data("silo:another-uid") };
        assert_eq!(user_found(&reply(vec![other]), MARK), UserFound::Foreign);
        let unmarked = doc! { "user": "shop_users", "db": "shop_users" };
        assert_eq!(user_found(&reply(vec![unmarked]), MARK), UserFound::Foreign);
        let other_data = doc! { "user": "shop_users", "customData": { "team": "billing" } };
        assert_eq!(
            user_found(&reply(vec![other_data]), MARK),
            UserFound::Foreign
        );
        assert_eq!(user_found(&reply(vec![]), MARK), UserFound::Absent);
    }

    #[test]
    fn foreign_users_and_databases_are_refused_and_ours_kept() {
        assert_eq!(claim(UserFound::Absent, false, "u", "d"), Claim::Create);
        assert_eq!(claim(UserFound::Ours, true, "u", "d"), Claim::Keep);
        assert_eq!(claim(UserFound::Ours, false, "u", "d"), Claim::Keep);
        let Claim::Taken(user) = claim(UserFound::Foreign, false, "u", "d") else {
            panic!("a foreign user is refused")
        };
        assert!(
            user.starts_with("user u already exists in database d"),
            "{user}"
        );
        let Claim::Taken(database) = claim(UserFound::Absent, true, "u", "d") else {
            panic!("a database with data and no user of ours is refused")
        };
        assert!(
            database.starts_with("database d already exists"),
            "{database}"
        );
    }

    #[test]
    fn only_what_is_ours_is_dropped() {
        assert!(may_drop(UserFound::Ours));
        assert!(!may_drop(UserFound::Foreign));
        assert!(!may_drop(UserFound::Absent));
    }

    #[test]
    fn a_database_holds_data_when_list_databases_names_it() {
        assert!(database_listed(
            &doc! { "databases": [ { "name": "shop_users" } ], "ok": 1 }
        ));
        assert!(!database_listed(&doc! { "databases": [], "ok": 1 }));
    }
}
