//! Webhook events: what ephemera tells subscribers happened, as CloudEvents 1.0.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

/// The CloudEvents `source` of every event: one value for every replica, so a receiver's
/// deduplication by (`source`, `id`) holds across a failover.
pub const EVENT_SOURCE: &str = "/ephemera";

/// What happened. Its text (`lease.acquired`) is what filters name; the CloudEvents `type`
/// is `dev.ephemera.` followed by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    LeaseAcquired,
    LeaseExpiring,
    LeaseExpired,
    LeaseRevived,
    LeaseReleased,
    LeaseOverrunning,
    FindingOpened,
    FindingResolved,
    ResourceMarked,
    ResourceDeleted,
    ResourceFailed,
    ResourceSkipped,
    ReaperCapHit,
    WalkIncomplete,
    /// The lifecycle canary went through every stage within its SLO.
    CanarySucceeded,
    /// The lifecycle canary broke at a stage (named in the data).
    CanaryFailed,
}

impl EventKind {
    pub const ALL: [EventKind; 16] = [
        EventKind::LeaseAcquired,
        EventKind::LeaseExpiring,
        EventKind::LeaseExpired,
        EventKind::LeaseRevived,
        EventKind::LeaseReleased,
        EventKind::LeaseOverrunning,
        EventKind::FindingOpened,
        EventKind::FindingResolved,
        EventKind::ResourceMarked,
        EventKind::ResourceDeleted,
        EventKind::ResourceFailed,
        EventKind::ResourceSkipped,
        EventKind::ReaperCapHit,
        EventKind::WalkIncomplete,
        EventKind::CanarySucceeded,
        EventKind::CanaryFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::LeaseAcquired => "lease.acquired",
            EventKind::LeaseExpiring => "lease.expiring",
            EventKind::LeaseExpired => "lease.expired",
            EventKind::LeaseRevived => "lease.revived",
            EventKind::LeaseReleased => "lease.released",
            EventKind::LeaseOverrunning => "lease.overrunning",
            EventKind::FindingOpened => "finding.opened",
            EventKind::FindingResolved => "finding.resolved",
            EventKind::ResourceMarked => "resource.marked",
            EventKind::ResourceDeleted => "resource.deleted",
            EventKind::ResourceFailed => "resource.failed",
            EventKind::ResourceSkipped => "resource.skipped",
            EventKind::ReaperCapHit => "reaper.cap-hit",
            EventKind::WalkIncomplete => "walk.incomplete",
            EventKind::CanarySucceeded => "canary.succeeded",
            EventKind::CanaryFailed => "canary.failed",
        }
    }

    /// The CloudEvents `type`.
    pub fn cloud_type(self) -> String {
        format!("dev.ephemera.{}", self.as_str())
    }
}

/// One state change.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub kind: EventKind,
    /// Unique per occurrence and stable: the same change queued again has the same id.
    pub id: String,
    pub time: DateTime<Utc>,
    /// What it is about (`lease/<id>`, an ARN).
    pub subject: String,
    pub data: Value,
}

impl Event {
    /// An event whose id is its type and `occurrence` (what makes this change unique: a
    /// lease id for an acquire, a finding and attempt for a failed deletion).
    pub fn new(
        kind: EventKind,
        occurrence: &str,
        time: DateTime<Utc>,
        subject: impl Into<String>,
        data: Value,
    ) -> Event {
        Event {
            kind,
            id: format!("{}:{occurrence}", kind.as_str()),
            time,
            subject: subject.into(),
            data,
        }
    }

    /// The event as CloudEvents 1.0 structured JSON.
    pub fn cloud_event(&self) -> Value {
        json!({
            "specversion": "1.0",
            "id": self.id,
            "source": EVENT_SOURCE,
            "type": self.kind.cloud_type(),
            "subject": self.subject,
            "time": self.time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "datacontenttype": "application/json",
            "data": self.data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cloud_event_has_the_required_attributes() {
        let t = DateTime::parse_from_rfc3339("2026-12-06T10:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let e = Event::new(
            EventKind::LeaseAcquired,
            "0193",
            t,
            "lease/0193",
            json!({"project": "web"}),
        );
        let v = e.cloud_event();
        assert_eq!(v["specversion"], "1.0");
        assert_eq!(v["id"], "lease.acquired:0193");
        assert_eq!(v["source"], EVENT_SOURCE);
        assert_eq!(v["type"], "dev.ephemera.lease.acquired");
        assert_eq!(v["subject"], "lease/0193");
        assert_eq!(v["time"], "2026-12-06T10:00:00.000Z");
        assert_eq!(v["data"]["project"], "web");
    }
}
