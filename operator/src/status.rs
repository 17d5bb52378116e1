//! Conditions: built so that `lastTransitionTime` only moves when the status does.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Condition types of a `Database` and a `DatabaseServer`.
pub mod types {
    /// Everything below holds.
    pub const READY: &str = "Ready";
    /// The server is reachable and usable.
    pub const SERVER_READY: &str = "ServerReady";
    /// The database and role exist on the server.
    pub const PROVISIONED: &str = "Provisioned";
    /// The credentials Secret is written and its login works.
    pub const CREDENTIALS_READY: &str = "CredentialsReady";
    /// Which network isolation applies.
    pub const NETWORK_ISOLATED: &str = "NetworkIsolated";
    /// The catalog shows no access but the owner's.
    pub const ACCESS_VERIFIED: &str = "AccessVerified";
    /// The operator can connect to the server.
    pub const REACHABLE: &str = "Reachable";
}

/// A condition of `type_`, keeping the previous transition time when the status is unchanged.
pub fn condition(
    previous: &[Condition],
    type_: &str,
    ok: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
) -> Condition {
    let status = if ok { "True" } else { "False" };
    let last_transition_time = find(previous, type_)
        .filter(|c| c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| Time(k8s_openapi::jiff::Timestamp::now()));
    Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time,
    }
}

/// The condition of `type_`, if present.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the condition of `type_` is present and `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == "True")
}

/// Replaces (or adds) `new` in `conditions`, by type.
pub fn upsert(conditions: &mut Vec<Condition>, new: Condition) {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(existing) => *existing = new,
        None => conditions.push(new),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_is_kept_while_status_is_unchanged_and_moves_on_change() {
        let first = condition(&[], types::READY, false, "Waiting", "w", Some(1));
        let old_time = Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        let previous = vec![Condition {
            last_transition_time: old_time.clone(),
            ..first
        }];
        let same = condition(&previous, types::READY, false, "StillWaiting", "w", Some(2));
        assert_eq!(same.last_transition_time, old_time);
        let changed = condition(&previous, types::READY, true, "Ready", "ok", Some(2));
        assert_ne!(changed.last_transition_time, old_time);
    }

    #[test]
    fn upsert_replaces_by_type() {
        let mut conditions = vec![condition(&[], types::READY, false, "A", "", None)];
        upsert(
            &mut conditions,
            condition(&[], types::READY, true, "B", "", None),
        );
        upsert(
            &mut conditions,
            condition(&[], types::PROVISIONED, true, "C", "", None),
        );
        assert_eq!(conditions.len(), 2);
        assert!(is_true(&conditions, types::READY));
    }
}
