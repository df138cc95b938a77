//! A lease's story: the changes the registry records beside the lease row (which keeps only
//! the latest state), and the entries of its timeline, gathered from every table that names it.
//!
//! Architecture Invariant: pure. [`lease_changes`] takes `now`; the store records what it
//! returns in the lease change's own transaction.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::{HumanDuration, Lease, MailKind, MicroUsd};

/// A change of a lease worth a row of its own (`lease_events`), with the principal that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseEvent {
    pub at: DateTime<Utc>,
    pub principal: String,
    pub change: LeaseChange,
}

/// What changed. Stored as its `kind` and, whole, as JSON (`detail`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum LeaseChange {
    /// `expires_at` moved from `from` to `to`.
    Renewed {
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    },
    /// A beat (or a renewal, which counts as one) came `gap_ms` after the previous one, more
    /// than half the heartbeat interval; `revived` when the gap reached the interval (the lease
    /// had lapsed and came back within the grace).
    HeartbeatGap {
        gap_ms: i64,
        interval: HumanDuration,
        revived: bool,
    },
    Released,
}

impl LeaseChange {
    /// The stored `kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            LeaseChange::Renewed { .. } => "renewed",
            LeaseChange::HeartbeatGap { .. } => "heartbeat-gap",
            LeaseChange::Released => "released",
        }
    }

    /// The stored `detail`: the change whole, as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a lease change serialises")
    }

    pub fn from_json(detail: &str) -> Option<LeaseChange> {
        serde_json::from_str(detail).ok()
    }
}

/// The events a lease change made: `before` became `after` at `now`.
///
/// A heartbeat is not a row (a busy lease beats every few seconds); a beat that came more than
/// half an interval after the previous one is: `lease run` beats every third of the interval,
/// so a healthy runner never writes one, and one that came close to losing its lease shows
/// before it actually does.
pub fn lease_changes(before: &Lease, after: &Lease, now: DateTime<Utc>) -> Vec<LeaseChange> {
    let mut out = Vec::new();
    if before.released_at.is_none() && after.released_at.is_some() {
        out.push(LeaseChange::Released);
        return out;
    }
    if let Some(interval) = after.heartbeat_interval
        && after.last_heartbeat_at != before.last_heartbeat_at
    {
        let previous = before.last_heartbeat_at.unwrap_or(before.created_at);
        let gap = now - previous;
        let i = interval.to_chrono();
        if gap * 2 > i {
            out.push(LeaseChange::HeartbeatGap {
                gap_ms: gap.num_milliseconds(),
                interval,
                revived: gap >= i,
            });
        }
    }
    if after.expires_at != before.expires_at {
        out.push(LeaseChange::Renewed {
            from: before.expires_at,
            to: after.expires_at,
        });
    }
    out
}

/// Resources of one type in one region, counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceGroup {
    pub resource_type: String,
    pub region: String,
    pub count: u64,
}

/// One entry of a lease's timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineEntry {
    pub at: DateTime<Utc>,
    pub event: TimelineEvent,
}

/// What happened. Resources, findings and deletions come grouped by type and region (and, for
/// findings and deletions, by pass): 500 volumes are one entry, not 500.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimelineEvent {
    Acquired {
        principal: String,
        expires_at: DateTime<Utc>,
        heartbeat_interval: Option<HumanDuration>,
    },
    Renewed {
        principal: String,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    },
    HeartbeatGap {
        principal: String,
        gap: TimeDelta,
        interval: HumanDuration,
        revived: bool,
    },
    /// The lease lapsed unreleased: by a missed heartbeat, or at `expires_at`.
    Expired {
        by_heartbeat: bool,
    },
    /// `principal` is unknown for a lease released before its events were recorded.
    Released {
        principal: Option<String>,
    },
    ResourcesFirstSeen(ResourceGroup),
    /// The latest sighting of the group; `live` of them were still there.
    ResourcesLastSeen {
        group: ResourceGroup,
        live: u64,
    },
    /// A finding transition (`opened`, `updated`, `marked`, `resolved`) of a pass.
    Finding {
        change: String,
        verdict: String,
        group: ResourceGroup,
        detail: String,
    },
    /// A message went out: an expiry warning, or a digest carrying `count` notices.
    NoticeSent {
        notice: MailKind,
        message: MailKind,
        recipient: String,
        count: u64,
    },
    /// An audit record of the reaper about the lease's resources (deleted, would-delete,
    /// skipped, failed, refused).
    Deletion {
        decision: String,
        group: ResourceGroup,
    },
    TeardownComplete,
    /// What Cost Explorer attributed to the lease's task tag from the day it was acquired, as
    /// of the latest fetch.
    Spend {
        micro_usd: MicroUsd,
        estimated: bool,
    },
}

impl TimelineEvent {
    /// The entry's kind as the API spells it.
    pub fn kind(&self) -> String {
        match self {
            TimelineEvent::Acquired { .. } => "acquired".into(),
            TimelineEvent::Renewed { .. } => "renewed".into(),
            TimelineEvent::HeartbeatGap { .. } => "heartbeat-gap".into(),
            TimelineEvent::Expired { .. } => "expired".into(),
            TimelineEvent::Released { .. } => "released".into(),
            TimelineEvent::ResourcesFirstSeen(_) => "resources-first-seen".into(),
            TimelineEvent::ResourcesLastSeen { .. } => "resources-last-seen".into(),
            TimelineEvent::Finding { change, .. } => format!("finding-{change}"),
            TimelineEvent::NoticeSent { .. } => "notice-sent".into(),
            TimelineEvent::Deletion { .. } => "deletion".into(),
            TimelineEvent::TeardownComplete => "teardown-complete".into(),
            TimelineEvent::Spend { .. } => "spend".into(),
        }
    }

    /// The order of entries at the same instant: the lease's own story first, what was seen
    /// and done about its resources after, spend last.
    fn rank(&self) -> u8 {
        match self {
            TimelineEvent::Acquired { .. } => 0,
            TimelineEvent::HeartbeatGap { .. } => 1,
            TimelineEvent::Renewed { .. } => 2,
            TimelineEvent::Expired { .. } => 3,
            TimelineEvent::Released { .. } => 4,
            TimelineEvent::ResourcesFirstSeen(_) => 5,
            TimelineEvent::ResourcesLastSeen { .. } => 6,
            TimelineEvent::Finding { .. } => 7,
            TimelineEvent::NoticeSent { .. } => 8,
            TimelineEvent::Deletion { .. } => 9,
            TimelineEvent::TeardownComplete => 10,
            TimelineEvent::Spend { .. } => 11,
        }
    }

    /// One line for people.
    pub fn summary(&self) -> String {
        let group = |g: &ResourceGroup| format!("{} {} in {}", g.count, g.resource_type, g.region);
        let t = |at: &DateTime<Utc>| at.format("%Y-%m-%d %H:%M:%SZ").to_string();
        match self {
            TimelineEvent::Acquired {
                principal,
                expires_at,
                heartbeat_interval,
            } => {
                let hb = heartbeat_interval
                    .map(|i| format!(", heartbeat every {i}"))
                    .unwrap_or_default();
                format!("by {principal}, until {}{hb}", t(expires_at))
            }
            TimelineEvent::Renewed {
                principal,
                from,
                to,
            } => format!("by {principal}: end {} -> {}", t(from), t(to)),
            TimelineEvent::HeartbeatGap {
                principal,
                gap,
                interval,
                revived,
            } => format!(
                "{} since the previous beat (interval {interval}) from {principal}{}",
                gap_text(*gap),
                if *revived {
                    "; the lease had lapsed and was revived"
                } else {
                    ""
                }
            ),
            TimelineEvent::Expired { by_heartbeat: true } => "missed its heartbeat".into(),
            TimelineEvent::Expired {
                by_heartbeat: false,
            } => "reached its end".into(),
            TimelineEvent::Released { principal: Some(p) } => format!("by {p}"),
            TimelineEvent::Released { principal: None } => String::new(),
            TimelineEvent::ResourcesFirstSeen(g) => format!("{} first seen", group(g)),
            TimelineEvent::ResourcesLastSeen { group: g, live } => {
                format!("{} last seen ({live} still there)", group(g))
            }
            TimelineEvent::Finding {
                verdict,
                group: g,
                detail,
                ..
            } => {
                let detail = if detail.is_empty() {
                    String::new()
                } else {
                    format!(": {detail}")
                };
                format!("{verdict}, {}{detail}", group(g))
            }
            TimelineEvent::NoticeSent {
                notice,
                message,
                recipient,
                count,
            } => {
                if notice == message {
                    format!("{message} to {recipient}")
                } else {
                    format!("{message} to {recipient}: {count} {notice}")
                }
            }
            TimelineEvent::Deletion { decision, group: g } => format!("{decision}: {}", group(g)),
            TimelineEvent::TeardownComplete => "every resource confirmed gone".into(),
            TimelineEvent::Spend {
                micro_usd,
                estimated,
            } => format!(
                "${} so far{}",
                super::format_usd(*micro_usd),
                if *estimated { " (estimated)" } else { "" }
            ),
        }
    }

    /// The text that orders entries of one instant and rank (a stable tie-break).
    fn tie_break(&self) -> String {
        match self {
            TimelineEvent::ResourcesFirstSeen(g)
            | TimelineEvent::ResourcesLastSeen { group: g, .. } => {
                format!("{}\u{0}{}", g.resource_type, g.region)
            }
            TimelineEvent::Finding {
                change,
                verdict,
                group: g,
                detail,
            } => {
                // A pass opens a finding before it marks or resolves it.
                let step = ["opened", "updated", "marked", "resolved"]
                    .iter()
                    .position(|c| c == change)
                    .unwrap_or(4);
                format!(
                    "{step}{change}\u{0}{verdict}\u{0}{}\u{0}{}\u{0}{detail}",
                    g.resource_type, g.region
                )
            }
            TimelineEvent::NoticeSent {
                notice,
                message,
                recipient,
                ..
            } => format!("{message}\u{0}{notice}\u{0}{recipient}"),
            TimelineEvent::Deletion { decision, group: g } => {
                format!("{decision}\u{0}{}\u{0}{}", g.resource_type, g.region)
            }
            _ => String::new(),
        }
    }
}

/// `90s`, `12m30s`, `2h5m`: how late a beat was, to the second.
fn gap_text(gap: TimeDelta) -> String {
    let s = gap.num_seconds().max(0);
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    match (h, m, s) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, m, _) => format!("{h}h{m}m"),
    }
}

/// Sorts `entries` chronologically; entries of one instant by kind, then by what they are
/// about, so two reads of the same history list it alike.
pub fn sort_timeline(entries: &mut [TimelineEntry]) {
    entries.sort_by_cached_key(|e| (e.at, e.event.rank(), e.event.tie_break()));
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::TimeZone;

    use super::*;
    use crate::model::{LeaseId, ProjectName};

    fn t(m: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .expect("valid")
            + TimeDelta::minutes(m)
    }

    fn lease(hb: Option<&str>) -> Lease {
        Lease {
            id: LeaseId::generate(),
            project: ProjectName::parse("web").expect("valid"),
            task: "t".into(),
            owner: "o@example.com".into(),
            principal: "ci".into(),
            created_at: t(0),
            expires_at: t(120),
            heartbeat_interval: hb.map(|s| HumanDuration::parse(s).expect("valid")),
            last_heartbeat_at: None,
            released_at: None,
            labels: BTreeMap::new(),
            regions: vec![],
        }
    }

    fn grace() -> HumanDuration {
        HumanDuration::parse("1h").expect("valid")
    }

    /// Which operations at which minute make which events (10m heartbeat interval unless
    /// said; the previous beat at minute 0).
    #[test]
    fn changes_of_each_operation() {
        // (heartbeat interval, op, minute, kinds)
        type Row<'a> = (Option<&'a str>, &'a str, i64, &'a [&'a str]);
        let table: &[Row<'_>] = &[
            (Some("10m"), "beat", 3, &[]),
            (Some("10m"), "beat", 5, &[]),
            (Some("10m"), "beat", 6, &["heartbeat-gap"]),
            (Some("10m"), "beat", 12, &["heartbeat-gap"]),
            (Some("10m"), "renew", 2, &["renewed"]),
            (Some("10m"), "renew", 8, &["heartbeat-gap", "renewed"]),
            (None, "renew", 30, &["renewed"]),
            (Some("10m"), "release", 30, &["released"]),
            (None, "release", 3, &["released"]),
        ];
        for (hb, op, m, want) in table {
            let before = lease(*hb);
            let mut after = before.clone();
            let now = t(*m);
            match *op {
                "beat" => {
                    after.heartbeat(now, grace()).expect("beats");
                }
                "renew" => {
                    after
                        .renew(now, HumanDuration::parse("3h").expect("valid"), grace())
                        .expect("renews");
                }
                _ => after.release(now).expect("releases"),
            }
            let got: Vec<&str> = lease_changes(&before, &after, now)
                .iter()
                .map(LeaseChange::kind)
                .collect();
            assert_eq!(&got, want, "{hb:?} {op} at {m}");
        }
    }

    #[test]
    fn a_gap_says_how_long_and_whether_it_revived() {
        let before = lease(Some("10m"));
        let mut after = before.clone();
        after.heartbeat(t(12), grace()).expect("revives");
        let got = lease_changes(&before, &after, t(12));
        assert_eq!(
            got,
            [LeaseChange::HeartbeatGap {
                gap_ms: 12 * 60_000,
                interval: HumanDuration::parse("10m").expect("valid"),
                revived: true
            }]
        );
        // A renewal: old and new end.
        let mut renewed = before.clone();
        renewed
            .renew(t(7), HumanDuration::parse("3h").expect("valid"), grace())
            .expect("renews");
        let got = lease_changes(&before, &renewed, t(7));
        assert_eq!(
            got[1],
            LeaseChange::Renewed {
                from: t(120),
                to: t(187)
            }
        );
        assert!(matches!(
            got[0],
            LeaseChange::HeartbeatGap { revived: false, .. }
        ));
        // The stored form reads back.
        for c in got {
            assert_eq!(LeaseChange::from_json(&c.to_json()), Some(c));
        }
    }

    #[test]
    fn entries_sort_by_time_then_kind_then_subject() {
        let g = |ty: &str| ResourceGroup {
            resource_type: ty.into(),
            region: "us-east-1".into(),
            count: 1,
        };
        let mut entries = vec![
            TimelineEntry {
                at: t(5),
                event: TimelineEvent::ResourcesFirstSeen(g("sqs:queue")),
            },
            TimelineEntry {
                at: t(5),
                event: TimelineEvent::ResourcesFirstSeen(g("ec2:volume")),
            },
            TimelineEntry {
                at: t(5),
                event: TimelineEvent::Released { principal: None },
            },
            TimelineEntry {
                at: t(0),
                event: TimelineEvent::TeardownComplete,
            },
        ];
        sort_timeline(&mut entries);
        let kinds: Vec<String> = entries
            .iter()
            .map(|e| format!("{} {}", e.event.kind(), e.event.summary()))
            .collect();
        assert_eq!(
            kinds,
            [
                "teardown-complete every resource confirmed gone",
                "released ",
                "resources-first-seen 1 ec2:volume in us-east-1 first seen",
                "resources-first-seen 1 sqs:queue in us-east-1 first seen",
            ]
        );
    }
}
