//! Events about cluster-scoped objects (`DatabaseServer`), written so that `kubectl describe`
//! finds them.
//!
//! `kubectl describe` lists Events in all namespaces whose `involvedObject` (`regarding`) has
//! the object's name, kind, uid and namespace, which for a cluster-scoped object is empty. An
//! `events.k8s.io/v1` Event with such a `regarding` must live in `kube-system` on a 1.20 API
//! server (newer ones also accept `default`), so that is where these go. kube's `Recorder` puts
//! an Event in the namespace of its reference, which would make the reference name one.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::runtime::events::{Event, EventType, Reporter};

/// Where Events about cluster-scoped objects are created.
pub const CLUSTER_SCOPED_EVENTS_NAMESPACE: &str = "kube-system";

/// The Event `event` about the cluster-scoped object `reference`, reported by `reporter`.
pub fn cluster_scoped_event(
    reporter: &Reporter,
    event: &Event,
    reference: &ObjectReference,
    now: k8s_openapi::jiff::Timestamp,
) -> K8sEvent {
    let mut regarding = reference.clone();
    regarding.namespace = None;
    let object = regarding.name.clone().unwrap_or_default();
    K8sEvent {
        metadata: ObjectMeta {
            name: Some(format!("{object}.{:x}", now.as_nanosecond())),
            namespace: Some(CLUSTER_SCOPED_EVENTS_NAMESPACE.to_string()),
            ..ObjectMeta::default()
        },
        action: Some(event.action.clone()),
        reason: Some(event.reason.clone()),
        note: event.note.clone(),
        event_time: Some(MicroTime(now)),
        regarding: Some(regarding),
        related: event.secondary.clone(),
        reporting_controller: Some(reporter.controller.clone()),
        reporting_instance: Some(
            reporter
                .instance
                .clone()
                .unwrap_or_else(|| reporter.controller.clone()),
        ),
        type_: Some(
            match event.type_ {
                EventType::Normal => "Normal",
                EventType::Warning => "Warning",
            }
            .to_string(),
        ),
        ..K8sEvent::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_about_a_cluster_scoped_object_regards_no_namespace_and_lives_in_kube_system() {
        let reporter = Reporter {
            controller: "silo-operator".into(),
            instance: Some("pod-a".into()),
        };
        let event = Event {
            type_: EventType::Warning,
            reason: "InvalidSpec".into(),
            note: Some("spec.managed.image …".into()),
            action: "Reconcile".into(),
            secondary: None,
        };
        let reference = ObjectReference {
            api_version: Some("silo.dev/v1alpha1".into()),
            kind: Some("DatabaseServer".into()),
            name: Some("pg".into()),
            namespace: Some("default".into()),
            uid: Some("u-1".into()),
            ..ObjectReference::default()
        };
        let built = cluster_scoped_event(
            &reporter,
            &event,
            &reference,
            k8s_openapi::jiff::Timestamp::now(),
        );
        assert_eq!(built.metadata.namespace.as_deref(), Some("kube-system"));
        let regarding = built.regarding.unwrap();
        assert_eq!(regarding.namespace, None);
        assert_eq!(regarding.uid.as_deref(), Some("u-1"));
        assert_eq!(regarding.kind.as_deref(), Some("DatabaseServer"));
        assert_eq!(built.type_.as_deref(), Some("Warning"));
        assert_eq!(built.reporting_instance.as_deref(), Some("pod-a"));
        assert!(built.metadata.name.unwrap().starts_with("pg."));
    }
}
