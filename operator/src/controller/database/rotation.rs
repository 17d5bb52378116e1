//! When a `Database`'s password changes: on request (`silo.dev/rotate`) or on schedule
//! (`spec.credentials.rotateEvery`), and when to look again.

use std::time::Duration;

use kube::ResourceExt;

use crate::crd::{Database, DatabaseStatus};

/// Setting this annotation to a new value rotates the password.
pub const ROTATE_ANNOTATION: &str = "silo.dev/rotate";

/// Why the password changes in this pass.
#[derive(Debug, PartialEq, Eq)]
pub enum Rotation {
    /// `silo.dev/rotate` carries a value not honoured yet.
    Annotation,
    /// `rotateEvery` has elapsed since the last rotation.
    Schedule,
}

impl Rotation {
    /// Why, in words, for Events and logs.
    pub fn cause(&self) -> &'static str {
        match self {
            Rotation::Annotation => "requested with the silo.dev/rotate annotation",
            Rotation::Schedule => "spec.credentials.rotateEvery elapsed",
        }
    }
}

/// Whether (and why) the password of `db` changes now.
pub fn rotation_due(
    db: &Database,
    status: &DatabaseStatus,
    rotate_every: Option<Duration>,
    now: jiff::Timestamp,
) -> Option<Rotation> {
    let requested = db.annotations().get(ROTATE_ANNOTATION);
    if requested.is_some() && requested != status.rotation_token.as_ref() {
        return Some(Rotation::Annotation);
    }
    let last: jiff::Timestamp = status.last_rotation.as_deref()?.parse().ok()?;
    let every = rotate_every?;
    let elapsed = now.duration_since(last);
    (elapsed >= jiff::SignedDuration::try_from(every).ok()?).then_some(Rotation::Schedule)
}

fn time_until_rotation(
    status: &DatabaseStatus,
    rotate_every: Option<Duration>,
    now: jiff::Timestamp,
) -> Option<Duration> {
    let last: jiff::Timestamp = status.last_rotation.as_deref()?.parse().ok()?;
    let due = last
        .checked_add(jiff::SignedDuration::try_from(rotate_every?).ok()?)
        .ok()?;
    Duration::try_from(due.duration_since(now)).ok()
}

/// When a healthy Database is looked at again: the next drift check, or its next rotation if
/// that comes first.
pub fn next_check(
    status: &DatabaseStatus,
    rotate_every: Option<Duration>,
    now: jiff::Timestamp,
    drift_interval: Duration,
) -> Duration {
    time_until_rotation(status, rotate_every, now).map_or(drift_interval, |until| {
        until.max(Duration::from_secs(1)).min(drift_interval)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::database::test_database;

    #[test]
    fn a_new_annotation_value_requests_rotation_once() {
        let mut db = test_database();
        db.annotations_mut()
            .insert(ROTATE_ANNOTATION.into(), "1".into());
        let now = jiff::Timestamp::now();
        let mut status = DatabaseStatus::default();
        assert_eq!(
            rotation_due(&db, &status, None, now),
            Some(Rotation::Annotation)
        );
        status.rotation_token = Some("1".into());
        assert_eq!(rotation_due(&db, &status, None, now), None);
    }

    #[test]
    fn rotation_is_due_when_the_period_has_elapsed() {
        let db = test_database();
        let now = jiff::Timestamp::now();
        let status = DatabaseStatus {
            last_rotation: Some((now - jiff::SignedDuration::from_hours(2)).to_string()),
            ..Default::default()
        };
        let hour = Some(Duration::from_secs(3600));
        let day = Some(Duration::from_secs(86400));
        assert_eq!(
            rotation_due(&db, &status, hour, now),
            Some(Rotation::Schedule)
        );
        assert_eq!(rotation_due(&db, &status, day, now), None);
        let until = time_until_rotation(&status, day, now).unwrap();
        assert!(until > Duration::from_secs(21 * 3600) && until <= Duration::from_secs(22 * 3600));
    }

    #[test]
    fn the_next_check_is_the_drift_interval_or_the_next_rotation_if_sooner() {
        let now = jiff::Timestamp::now();
        let drift = Duration::from_secs(300);
        let status = DatabaseStatus {
            last_rotation: Some((now - jiff::SignedDuration::from_secs(3540)).to_string()),
            ..Default::default()
        };
        let hour = Some(Duration::from_secs(3600));
        let next = next_check(&status, hour, now, drift);
        assert!(next <= Duration::from_secs(60) && next >= Duration::from_secs(59));
        assert_eq!(next_check(&status, None, now, drift), drift);
        let overdue = DatabaseStatus {
            last_rotation: Some((now - jiff::SignedDuration::from_hours(2)).to_string()),
            ..Default::default()
        };
        assert_eq!(next_check(&overdue, hour, now, drift), drift);
    }
}
