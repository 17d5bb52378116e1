//! What wakes a reconcile: changes somebody asked for, not the operator's own status writes.
//!
//! Every status write of the operator is itself a watch event; reconciling on it would run each
//! object two or three times per change. The predicates below hash only what a user changes.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};

use crate::crd::{Database, DatabaseServer};

fn hash_of(value: impl Hash) -> u64 {
    let mut hasher = DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

/// Drops `managedFields` from a watched copy: nobody reads them and they double its size.
pub fn trim<K: Resource>(obj: &mut K) {
    obj.meta_mut().managed_fields = None;
}

/// What a reconcile of a `Database` acts on: its spec (generation), deletion and annotations
/// (a rotation request is one; changing any other asks for a check now). Not its finalizers:
/// the pass that adds the operator's finalizer also provisions, so the watch event of that
/// write must not wake another; a finalizer removed by hand is put back by the next drift check.
pub fn database_intent(db: &Database) -> Option<u64> {
    Some(hash_of((
        db.meta().generation,
        db.meta().deletion_timestamp.is_some(),
        db.annotations(),
    )))
}

/// What a reconcile of a `DatabaseServer` acts on: its spec, finalizers and deletion.
pub fn server_intent(server: &DatabaseServer) -> Option<u64> {
    Some(hash_of((
        server.meta().generation,
        server.finalizers(),
        server.meta().deletion_timestamp.is_some(),
    )))
}

/// What a server needs to know of a `Database` on it.
fn placement(db: &Database) -> u64 {
    hash_of((
        db.spec.server.server_ref.as_deref(),
        db.spec.owner.as_str(),
        db.meta().deletion_timestamp.is_some(),
    ))
}

/// Passes on a `Database` when its placement first appears, changes, or the object goes away.
#[derive(Default)]
pub struct PlacementFilter {
    seen: HashMap<ObjectRef<Database>, u64>,
}

impl PlacementFilter {
    /// The object to pass on for `event`, if any.
    pub fn admit<'a>(&mut self, event: &'a watcher::Event<Database>) -> Option<&'a Database> {
        match event {
            // A re-list may hide deletions: start over, every listed object passes once.
            watcher::Event::Init => {
                self.seen.clear();
                None
            }
            watcher::Event::InitDone => None,
            watcher::Event::Apply(db) | watcher::Event::InitApply(db) => {
                let hash = placement(db);
                let previous = self.seen.insert(ObjectRef::from_obj(db), hash);
                (previous != Some(hash)).then_some(db)
            }
            watcher::Event::Delete(db) => {
                self.seen.remove(&ObjectRef::from_obj(db));
                Some(db)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::database::ROTATE_ANNOTATION;
    use crate::crd::{DatabaseSpec, DatabaseStatus, DeletionPolicy, Engine, ServerBinding};

    fn database(server: &str, owner: &str) -> Database {
        let mut db = Database::new(
            "users",
            DatabaseSpec {
                engine: Engine::Postgres,
                owner: owner.into(),
                server: ServerBinding {
                    server_ref: Some(server.into()),
                    dedicated: None,
                },
                deletion_policy: DeletionPolicy::Retain,
                credentials: Default::default(),
            },
        );
        db.metadata.namespace = Some("shop".into());
        db.metadata.generation = Some(1);
        db
    }

    #[test]
    fn status_and_finalizer_writes_do_not_change_the_intent_but_spec_deletion_and_rotation_do() {
        let db = database("pg", "user-service");
        let base = database_intent(&db);

        let mut with_status = db.clone();
        with_status.status = Some(DatabaseStatus {
            database_name: Some("shop_users".into()),
            ..Default::default()
        });
        with_status.metadata.resource_version = Some("42".into());
        assert_eq!(database_intent(&with_status), base);

        let mut new_generation = db.clone();
        new_generation.metadata.generation = Some(2);
        assert_ne!(database_intent(&new_generation), base);

        let mut finalized = db.clone();
        finalized.metadata.finalizers = Some(vec!["silo.dev/database-cleanup".into()]);
        assert_eq!(database_intent(&finalized), base);

        let mut deleted = finalized.clone();
        deleted.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now()),
        );
        assert_ne!(database_intent(&deleted), base);

        let mut rotate = db.clone();
        rotate
            .annotations_mut()
            .insert(ROTATE_ANNOTATION.into(), "1".into());
        assert_ne!(database_intent(&rotate), base);

        let mut labelled = db.clone();
        labelled.labels_mut().insert("team".into(), "a".into());
        assert_eq!(database_intent(&labelled), base);
    }

    #[test]
    fn a_server_hears_of_placement_changes_and_deletions_only() {
        let mut filter = PlacementFilter::default();
        let db = database("pg", "user-service");
        assert!(filter.admit(&watcher::Event::Apply(db.clone())).is_some());

        let mut status_only = db.clone();
        status_only.status = Some(DatabaseStatus::default());
        assert!(filter.admit(&watcher::Event::Apply(status_only)).is_none());

        let moved = database("pg2", "user-service");
        assert!(
            filter
                .admit(&watcher::Event::Apply(moved.clone()))
                .is_some()
        );
        let new_owner = database("pg2", "booking-service");
        assert!(
            filter
                .admit(&watcher::Event::Apply(new_owner.clone()))
                .is_some()
        );

        assert!(
            filter
                .admit(&watcher::Event::Delete(new_owner.clone()))
                .is_some()
        );
        // Seen again after a deletion (re-created with the same name): passes again.
        assert!(
            filter
                .admit(&watcher::Event::Apply(new_owner.clone()))
                .is_some()
        );

        // A re-list passes every object once more.
        assert!(filter.admit(&watcher::Event::Init).is_none());
        assert!(
            filter
                .admit(&watcher::Event::InitApply(new_owner.clone()))
                .is_some()
        );
        assert!(filter.admit(&watcher::Event::InitDone).is_none());
        assert!(filter.admit(&watcher::Event::Apply(new_owner)).is_none());
    }

    #[test]
    fn trimmed_copies_have_no_managed_fields() {
        let mut db = database("pg", "user-service");
        db.metadata.managed_fields = Some(vec![Default::default()]);
        trim(&mut db);
        assert!(db.metadata.managed_fields.is_none());
    }
}
