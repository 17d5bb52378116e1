//! Per-object state (failure streaks, the phase gauge, what was written, admin connections)
//! is dropped when its object disappears, by whichever path: through its finalizer, deleted
//! without one (a finalizer removed by hand, a server outside the finalizer's reach), or
//! deleted while the watch was down, which the next listing shows.

use std::collections::HashSet;

use kube::Resource;
use kube::runtime::reflector::Store;
use kube::runtime::watcher;

use super::{Context, object_key};

/// Forgets what `ctx` keeps about objects of kind `K` that `event` shows gone: the deleted
/// object, or, when a (re)listing completes, every object `store` no longer holds.
pub fn forget_gone<K>(ctx: &Context, store: &Store<K>, event: &watcher::Event<K>)
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    match event {
        watcher::Event::Delete(object) => ctx.forget(&object_key(object)),
        watcher::Event::InitDone => {
            let live: HashSet<String> = store
                .state()
                .iter()
                .map(|object| object_key(object.as_ref()))
                .collect();
            let prefix = format!("{}/", K::kind(&()));
            ctx.retain_objects(|key| !key.starts_with(&prefix) || live.contains(key));
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::http::{Request, Response};
    use kube::Client;
    use kube::client::Body;
    use kube::runtime::reflector;

    use super::*;
    use crate::controller::OperatorConfig;
    use crate::crd::{Database, DatabaseSpec, DeletionPolicy, Engine, ServerBinding};
    use crate::metrics::{Metrics, Phase};

    fn database(name: &str) -> Database {
        let mut db = Database::new(
            name,
            DatabaseSpec {
                engine: Engine::Postgres,
                owner: "svc".into(),
                server: ServerBinding {
                    server_ref: Some("pg".into()),
                    dedicated: None,
                },
                deletion_policy: DeletionPolicy::Retain,
                credentials: Default::default(),
            },
        );
        db.metadata.namespace = Some("shop".into());
        db
    }

    #[tokio::test]
    async fn a_relisting_forgets_the_databases_deleted_while_the_watch_was_down() {
        let (service, _handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let metrics = Arc::new(Metrics::default());
        let ctx = Context::new(
            Client::new(service, "default"),
            OperatorConfig::default(),
            metrics.clone(),
        );
        for name in ["kept", "deleted"] {
            ctx.metrics
                .set_phase(&format!("Database/shop/{name}"), Some(Phase::Ready));
        }
        // Another kind's state is not this listing's business.
        ctx.next_backoff("Service/shop/web");
        let (store, mut writer) = reflector::store::<Database>();
        for event in [
            watcher::Event::Init,
            watcher::Event::InitApply(database("kept")),
            watcher::Event::InitDone,
        ] {
            writer.apply_watcher_event(&event);
        }
        forget_gone(&ctx, &store, &watcher::Event::InitDone);
        let text = metrics.encode().unwrap();
        assert!(text.contains("silo_databases{phase=\"Ready\"} 1"), "{text}");
        assert_eq!(
            ctx.next_backoff("Service/shop/web"),
            std::time::Duration::from_secs(2),
            "the Service's failure streak is kept"
        );
    }
}
