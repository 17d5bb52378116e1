//! Leader election on a real `coordination.k8s.io` Lease.

use std::time::Duration;

use silo_operator::leader::{ElectionConfig, LeaderElector, LeaseError};

use crate::harness::eventually;

fn candidate(
    client: &kube::Client,
    namespace: &str,
    identity: &str,
    lease: Duration,
) -> LeaderElector {
    let mut config = ElectionConfig::new(namespace, "silo-operator-leader", identity);
    config.lease_duration = lease;
    LeaderElector::new(client.clone(), config)
}

#[tokio::test]
async fn only_one_candidate_holds_the_lease_until_it_releases_it() {
    let client = silo_testenv::kube_client().await;
    let ns = silo_testenv::TestNamespace::create(&client, "silo-lease").await;
    let long = Duration::from_secs(300);
    let a = candidate(&client, ns.name(), "replica-a", long);
    let b = candidate(&client, ns.name(), "replica-b", long);

    assert!(
        a.try_acquire_or_renew().await.unwrap(),
        "the first candidate takes a free lease"
    );
    assert!(
        !b.try_acquire_or_renew().await.unwrap(),
        "the second must wait"
    );
    assert!(a.try_acquire_or_renew().await.unwrap(), "the holder renews");
    assert!(
        !b.try_acquire_or_renew().await.unwrap(),
        "still held by the first"
    );

    a.release().await.unwrap();
    assert!(
        b.try_acquire_or_renew().await.unwrap(),
        "a released lease is taken at once"
    );
    assert!(
        !a.try_acquire_or_renew().await.unwrap(),
        "and the old leader now waits"
    );
}

#[tokio::test]
async fn candidates_racing_for_a_free_lease_produce_exactly_one_leader() {
    let client = silo_testenv::kube_client().await;
    let ns = silo_testenv::TestNamespace::create(&client, "silo-race").await;
    let candidates: Vec<LeaderElector> = (0..6)
        .map(|i| {
            candidate(
                &client,
                ns.name(),
                &format!("replica-{i}"),
                Duration::from_secs(300),
            )
        })
        .collect();
    let results =
        futures::future::join_all(candidates.iter().map(|c| c.try_acquire_or_renew())).await;
    let winners = results
        .into_iter()
        .filter(|r| matches!(r, Ok(true)))
        .count();
    assert_eq!(winners, 1);
}

#[tokio::test]
async fn a_lease_that_is_not_renewed_is_taken_over_after_it_expires() {
    let client = silo_testenv::kube_client().await;
    let ns = silo_testenv::TestNamespace::create(&client, "silo-expiry").await;
    let short = Duration::from_secs(1);
    let a = candidate(&client, ns.name(), "replica-a", short);
    let b = candidate(&client, ns.name(), "replica-b", short);
    assert!(a.try_acquire_or_renew().await.unwrap());
    // `a` stops renewing, as a crashed leader would.
    eventually("the standby to take over the expired lease", || async {
        b.try_acquire_or_renew().await.ok()?.then_some(())
    })
    .await;
    assert!(!a.try_acquire_or_renew().await.unwrap());
}

#[tokio::test]
async fn a_missing_lease_namespace_is_named_with_the_fix() {
    let client = silo_testenv::kube_client().await;
    let namespace = format!("silo-absent-{}", std::process::id());
    let elector = candidate(&client, &namespace, "replica-a", Duration::from_secs(15));
    let error = elector.try_acquire_or_renew().await.unwrap_err();
    assert_eq!(
        error,
        LeaseError::NamespaceMissing {
            namespace: namespace.clone(),
            name: "silo-operator-leader".into(),
        }
    );
    let message = error.to_string();
    assert!(
        message.contains(&format!("kubectl create namespace {namespace}"))
            && message.contains("--operator-namespace"),
        "{message}"
    );
}
