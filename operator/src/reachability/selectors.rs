//! Label selectors (`matchLabels` and `matchExpressions`) as Kubernetes evaluates them.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

/// Whether `labels` satisfy `selector`: every `matchLabels` pair and every `matchExpressions`
/// requirement must hold, so the empty selector `{}` selects everything.
///
/// A requirement the API server would reject (an unknown operator, `In`/`NotIn` without values,
/// `Exists`/`DoesNotExist` with values) matches nothing, as a selector that fails to parse
/// selects nothing in Kubernetes' own `LabelSelectorAsSelector` callers.
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let pairs_match = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(key, value)| labels.get(key) == Some(value));
    pairs_match
        && selector
            .match_expressions
            .iter()
            .flatten()
            .all(|requirement| requirement_matches(requirement, labels))
}

fn requirement_matches(
    requirement: &LabelSelectorRequirement,
    labels: &BTreeMap<String, String>,
) -> bool {
    let values = requirement.values.as_deref().unwrap_or_default();
    let value = labels.get(&requirement.key);
    match requirement.operator.as_str() {
        "In" => !values.is_empty() && value.is_some_and(|value| values.contains(value)),
        "NotIn" => !values.is_empty() && value.is_none_or(|value| !values.contains(value)),
        "Exists" => values.is_empty() && value.is_some(),
        "DoesNotExist" => values.is_empty() && value.is_none(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selector(value: serde_json::Value) -> LabelSelector {
        serde_json::from_value(value).expect("a valid LabelSelector")
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn the_empty_selector_selects_everything() {
        let empty = selector(serde_json::json!({}));
        assert!(selector_matches(&empty, &labels(&[])));
        assert!(selector_matches(&empty, &labels(&[("app", "web")])));
    }

    #[test]
    fn match_labels_require_every_pair() {
        let web_prod = selector(serde_json::json!({"matchLabels": {"app": "web", "env": "prod"}}));
        assert!(selector_matches(
            &web_prod,
            &labels(&[("app", "web"), ("env", "prod"), ("x", "y")])
        ));
        assert!(!selector_matches(&web_prod, &labels(&[("app", "web")])));
        assert!(!selector_matches(
            &web_prod,
            &labels(&[("app", "web"), ("env", "dev")])
        ));
    }

    #[test]
    fn in_requires_the_label_with_one_of_the_values() {
        let tier = selector(serde_json::json!({"matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["front", "back"]}
        ]}));
        assert!(selector_matches(&tier, &labels(&[("tier", "back")])));
        assert!(!selector_matches(&tier, &labels(&[("tier", "db")])));
        assert!(!selector_matches(&tier, &labels(&[])));
    }

    #[test]
    fn not_in_is_satisfied_by_an_absent_label() {
        let not_db = selector(serde_json::json!({"matchExpressions": [
            {"key": "tier", "operator": "NotIn", "values": ["db"]}
        ]}));
        assert!(selector_matches(&not_db, &labels(&[])));
        assert!(selector_matches(&not_db, &labels(&[("tier", "web")])));
        assert!(!selector_matches(&not_db, &labels(&[("tier", "db")])));
    }

    #[test]
    fn exists_and_does_not_exist_look_only_at_the_key() {
        let exists = selector(serde_json::json!({"matchExpressions": [
            {"key": "canary", "operator": "Exists"}
        ]}));
        let absent = selector(serde_json::json!({"matchExpressions": [
            {"key": "canary", "operator": "DoesNotExist"}
        ]}));
        assert!(selector_matches(&exists, &labels(&[("canary", "")])));
        assert!(!selector_matches(&exists, &labels(&[])));
        assert!(selector_matches(&absent, &labels(&[])));
        assert!(!selector_matches(&absent, &labels(&[("canary", "true")])));
    }

    #[test]
    fn match_labels_and_expressions_are_and_ed() {
        let both = selector(serde_json::json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["prod"]}],
        }));
        assert!(selector_matches(
            &both,
            &labels(&[("app", "web"), ("env", "dev")])
        ));
        assert!(!selector_matches(
            &both,
            &labels(&[("app", "web"), ("env", "prod")])
        ));
        assert!(!selector_matches(&both, &labels(&[("env", "dev")])));
    }

    #[test]
    fn a_requirement_the_api_server_would_reject_matches_nothing() {
        for requirement in [
            serde_json::json!({"key": "a", "operator": "In", "values": []}),
            serde_json::json!({"key": "a", "operator": "Exists", "values": ["x"]}),
            serde_json::json!({"key": "a", "operator": "Gt", "values": ["1"]}),
        ] {
            let invalid = selector(serde_json::json!({"matchExpressions": [requirement]}));
            assert!(!selector_matches(&invalid, &labels(&[("a", "x")])));
            assert!(!selector_matches(&invalid, &labels(&[])));
        }
    }
}
