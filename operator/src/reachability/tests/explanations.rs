//! Explanations: which policies open a connection, which direction refuses it.

use serde_json::json;

use super::*;

fn reference(namespace: &str, name: &str) -> PolicyRef {
    PolicyRef {
        namespace: namespace.into(),
        name: name.into(),
    }
}

/// `shop/db` fenced by Silo's policy, plus a hand-written allow-all that re-opens it.
fn database_with_hand_written_allow_all() -> Cluster {
    cluster(
        &[namespace("shop", &[]), namespace("other", &[])],
        &[
            pod("shop", "db").labels(&[("app", "db")]),
            pod("shop", "owner").labels(&[("silo.dev/service", "owner")]),
            pod("other", "intruder"),
        ],
        &[
            policy(
                json!({"metadata": {"name": "db-fence", "namespace": "shop"},
                "spec": {"podSelector": {"matchLabels": {"app": "db"}}, "policyTypes": ["Ingress"],
                         "ingress": [{"from": [{"podSelector": {"matchLabels": {"silo.dev/service": "owner"}}}],
                                      "ports": [{"port": 5432}]}]}}),
            ),
            policy(
                json!({"metadata": {"name": "allow-everything", "namespace": "shop"},
                "spec": {"podSelector": {}, "ingress": [{}]}}),
            ),
        ],
    )
}

#[test]
fn an_allowed_connection_names_every_policy_that_admits_it() {
    let cluster = database_with_hand_written_allow_all();
    let owner = explain(&cluster, "shop/owner", "shop/db", 5432);
    assert_eq!(
        owner.ingress,
        DirectionVerdict::AllowedBy {
            policies: vec![
                reference("shop", "allow-everything"),
                reference("shop", "db-fence")
            ],
        }
    );
    assert_eq!(owner.egress, DirectionVerdict::NotIsolated);
    let intruder = explain(&cluster, "other/intruder", "shop/db", 5432);
    assert_eq!(
        intruder.opened_by(),
        [&reference("shop", "allow-everything")]
    );
    assert_eq!(
        intruder.to_string(),
        "egress allowed: no policy selects the pod; ingress allowed by shop/allow-everything"
    );
}

#[test]
fn a_denied_connection_names_the_direction_and_the_isolating_policies() {
    let cluster = cluster(
        &[namespace("shop", &[])],
        &[
            pod("shop", "db").labels(&[("app", "db")]),
            pod("shop", "client"),
        ],
        &[policy(
            json!({"metadata": {"name": "db-fence", "namespace": "shop"},
            "spec": {"podSelector": {"matchLabels": {"app": "db"}}, "ingress": []}}),
        )],
    );
    let verdict = explain(&cluster, "shop/client", "shop/db", 5432);
    assert_eq!(verdict.denied_directions(), [Direction::Ingress]);
    assert_eq!(
        verdict.ingress,
        DirectionVerdict::Denied {
            isolated_by: vec![reference("shop", "db-fence")]
        }
    );
    assert!(verdict.opened_by().is_empty());
    assert_eq!(
        verdict.ingress.to_string(),
        "denied: isolated by shop/db-fence and no rule admits it"
    );
}

#[test]
fn a_connection_nothing_isolates_is_opened_by_no_policy() {
    let cluster = cluster(
        &[namespace("shop", &[])],
        &[pod("shop", "a"), pod("shop", "b")],
        &[],
    );
    let verdict = explain(&cluster, "shop/a", "shop/b", 80);
    assert!(verdict.is_allowed());
    assert!(verdict.opened_by().is_empty());
    assert_eq!(verdict.ingress, DirectionVerdict::NotIsolated);
}

#[test]
fn sources_reaching_a_pod_lists_every_other_pod_that_gets_through() {
    let cluster = database_with_hand_written_allow_all();
    let db = cluster.pod("shop", "db").unwrap();
    let sources: Vec<String> = cluster
        .sources_reaching(db, 5432, Protocol::Tcp)
        .iter()
        .map(|(pod, _)| pod.key())
        .collect();
    assert_eq!(sources, ["other/intruder", "shop/owner"]);
}

#[test]
fn verdicts_serialize_with_their_outcome_and_policies() {
    let cluster = database_with_hand_written_allow_all();
    let verdict = explain(&cluster, "other/intruder", "shop/db", 5432);
    assert_eq!(
        serde_json::to_value(&verdict).unwrap(),
        json!({
            "egress": {"outcome": "notIsolated"},
            "ingress": {"outcome": "allowedBy",
                        "policies": [{"namespace": "shop", "name": "allow-everything"}]},
        })
    );
    let denied = DirectionVerdict::Denied {
        isolated_by: vec![reference("shop", "db-fence")],
    };
    assert_eq!(
        serde_json::to_value(&denied).unwrap(),
        json!({"outcome": "denied", "isolatedBy": [{"namespace": "shop", "name": "db-fence"}]})
    );
    let exempt = DirectionVerdict::Exempt {
        reason: Exemption::SelfConnection,
    };
    assert_eq!(
        serde_json::to_value(&exempt).unwrap(),
        json!({"outcome": "exempt", "reason": "selfConnection"})
    );
}
