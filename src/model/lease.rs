//! Leases as records and their state math.
//!
//! Architecture Invariant: [`Lease`] methods are pure: they take `now` and read no clock.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{HumanDuration, IdentityTags, LeaseId, ProjectName};

/// Why a lease can no longer change: it lapsed or was released.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseEnded {
    #[error("lease {0} has expired; acquire a new one")]
    Expired(LeaseId),
    #[error("lease {0} is already released")]
    Released(LeaseId),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LeaseState {
    Active,
    Expired,
    Released,
}

impl LeaseState {
    pub const ALL: [LeaseState; 3] = [
        LeaseState::Active,
        LeaseState::Expired,
        LeaseState::Released,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LeaseState::Active => "active",
            LeaseState::Expired => "expired",
            LeaseState::Released => "released",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        LeaseState::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

/// A lease as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub id: LeaseId,
    pub project: ProjectName,
    pub task: String,
    pub owner: String,
    /// The API principal that acquired it; only it (or an operator) may change it.
    pub principal: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub heartbeat_interval: Option<HumanDuration>,
    pub last_heartbeat_at: Option<DateTime<Utc>>,
    pub released_at: Option<DateTime<Utc>>,
    pub labels: BTreeMap<String, String>,
    pub regions: Vec<String>,
}

impl Lease {
    /// When the lease lapses if no heartbeat arrives: one interval after the last beat (or
    /// after creation). Runners should beat well inside the interval.
    pub fn heartbeat_deadline(&self) -> Option<DateTime<Utc>> {
        self.heartbeat_interval
            .map(|i| self.last_heartbeat_at.unwrap_or(self.created_at) + i.to_chrono())
    }

    /// The moment the lease stops being active, release aside: the earlier of `expires_at`
    /// and the heartbeat deadline.
    pub fn ends_at(&self) -> DateTime<Utc> {
        match self.heartbeat_deadline() {
            Some(hb) if hb < self.expires_at => hb,
            _ => self.expires_at,
        }
    }

    pub fn state(&self, now: DateTime<Utc>) -> LeaseState {
        if self.released_at.is_some() {
            LeaseState::Released
        } else if now >= self.ends_at() {
            LeaseState::Expired
        } else {
            LeaseState::Active
        }
    }

    /// Whether, at `now`, the lease has lapsed only by a missed heartbeat (not by `expires_at`,
    /// not released) less than `grace` ago: its lessee may still revive it by beating or
    /// renewing. A late beat is a lessee's (or a network's) hiccup, not the end of its task,
    /// and nothing of it can have been deleted within the grace.
    pub fn revivable(&self, now: DateTime<Utc>, grace: HumanDuration) -> bool {
        let ends = self.ends_at();
        self.released_at.is_none()
            && ends < self.expires_at
            && now >= ends
            && now < self.expires_at
            && now < ends + grace.to_chrono()
    }

    /// Ok(true) when the lease was revived (see [`Lease::revivable`]), Ok(false) when it was
    /// active; else why it cannot change.
    fn ensure_active(
        &mut self,
        now: DateTime<Utc>,
        grace: HumanDuration,
    ) -> Result<bool, LeaseEnded> {
        if self.revivable(now, grace) {
            self.last_heartbeat_at = Some(now);
            return Ok(true);
        }
        match self.state(now) {
            LeaseState::Active => Ok(false),
            LeaseState::Expired => Err(LeaseEnded::Expired(self.id)),
            LeaseState::Released => Err(LeaseEnded::Released(self.id)),
        }
    }

    /// Extends the lease to `now + ttl`; a renewal also counts as a heartbeat (and revives a
    /// lease lapsed by heartbeat within `grace`). Returns whether it was revived.
    pub fn renew(
        &mut self,
        now: DateTime<Utc>,
        ttl: HumanDuration,
        grace: HumanDuration,
    ) -> Result<bool, LeaseEnded> {
        let revived = self.ensure_active(now, grace)?;
        self.expires_at = now + ttl.to_chrono();
        if self.heartbeat_interval.is_some() {
            self.last_heartbeat_at = Some(now);
        }
        Ok(revived)
    }

    /// Records a beat (reviving a lease lapsed by heartbeat within `grace`). Returns whether
    /// it was revived.
    pub fn heartbeat(
        &mut self,
        now: DateTime<Utc>,
        grace: HumanDuration,
    ) -> Result<bool, LeaseEnded> {
        let revived = self.ensure_active(now, grace)?;
        self.last_heartbeat_at = Some(now);
        Ok(revived)
    }

    /// Ends the lease. An expired lease may still be released (the task finished late);
    /// a released one may not be released again.
    pub fn release(&mut self, now: DateTime<Utc>) -> Result<(), LeaseEnded> {
        if self.released_at.is_some() {
            return Err(LeaseEnded::Released(self.id));
        }
        self.released_at = Some(now);
        Ok(())
    }

    /// The tags a task applies to what it creates under this lease.
    pub fn identity_tags(&self, keys: &IdentityTags) -> BTreeMap<String, String> {
        BTreeMap::from([
            (keys.lease.clone(), self.id.to_string()),
            (keys.project.clone(), self.project.to_string()),
            (keys.task.clone(), self.task.clone()),
            (keys.owner.clone(), self.owner.clone()),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(h: i64, m: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .expect("valid")
            + chrono::TimeDelta::minutes(h * 60 + m)
    }

    fn d(s: &str) -> HumanDuration {
        HumanDuration::parse(s).expect("valid fixture")
    }

    const NO_GRACE: HumanDuration = HumanDuration::ZERO;

    fn lease(hb: Option<&str>) -> Lease {
        Lease {
            id: LeaseId::generate(),
            project: ProjectName::parse("web").expect("valid"),
            task: "build-1".into(),
            owner: "alice@example.com".into(),
            principal: "ci".into(),
            created_at: t(0, 0),
            expires_at: t(2, 0),
            heartbeat_interval: hb.map(d),
            last_heartbeat_at: None,
            released_at: None,
            labels: BTreeMap::new(),
            regions: vec![],
        }
    }

    #[test]
    fn state_over_time() {
        use LeaseState::*;
        // (heartbeat interval, beats at (h, m), now (h, m), state)
        type Row<'a> = (Option<&'a str>, &'a [(i64, i64)], (i64, i64), LeaseState);
        let table: &[Row<'_>] = &[
            (None, &[], (0, 0), Active),
            (None, &[], (1, 59), Active),
            (None, &[], (2, 0), Expired),
            (None, &[], (30, 0), Expired),
            (Some("10m"), &[], (0, 9), Active),
            (Some("10m"), &[], (0, 10), Expired),
            (Some("10m"), &[(0, 8)], (0, 17), Active),
            (Some("10m"), &[(0, 8)], (0, 18), Expired),
            (Some("10m"), &[(0, 8), (0, 16), (0, 24)], (0, 33), Active),
            // Heartbeats never stretch a lease past expires_at.
            (Some("3h"), &[(1, 55)], (2, 0), Expired),
        ];
        for (hb, beats, now, want) in table {
            let mut l = lease(*hb);
            for b in *beats {
                l.heartbeat(t(b.0, b.1), NO_GRACE)
                    .expect("beat while active");
            }
            assert_eq!(
                l.state(t(now.0, now.1)),
                *want,
                "hb {hb:?} beats {beats:?} now {now:?}"
            );
        }
    }

    #[test]
    fn transitions() {
        let mut l = lease(Some("10m"));
        l.renew(t(0, 5), d("4h"), NO_GRACE)
            .expect("active lease renews");
        assert_eq!(l.expires_at, t(4, 5));
        assert_eq!(
            l.last_heartbeat_at,
            Some(t(0, 5)),
            "renew counts as a heartbeat"
        );
        // Missed heartbeat: renew and heartbeat refused, release allowed once.
        assert!(matches!(
            l.renew(t(0, 20), d("1h"), NO_GRACE),
            Err(LeaseEnded::Expired(_))
        ));
        assert!(matches!(
            l.heartbeat(t(0, 20), NO_GRACE),
            Err(LeaseEnded::Expired(_))
        ));
        l.release(t(0, 21)).expect("expired lease can be released");
        assert_eq!(l.state(t(0, 22)), LeaseState::Released);
        assert!(matches!(l.release(t(0, 22)), Err(LeaseEnded::Released(_))));
        assert!(matches!(
            l.heartbeat(t(0, 22), d("1h")),
            Err(LeaseEnded::Released(_))
        ));
        assert!(matches!(
            l.renew(t(0, 22), d("1h"), d("1h")),
            Err(LeaseEnded::Released(_))
        ));
    }

    /// A lease lapsed by heartbeat comes back with its lessee's next beat or renewal within
    /// the grace, at the boundary included before and excluded after; never one that ran
    /// out its `expires_at` or was released.
    #[test]
    fn revival_within_the_grace() {
        // Heartbeat every 10m from 0:00 (deadline 0:10), expires 2:00, grace 30m.
        let grace = d("30m");
        // (now, revived?)
        type Row = ((i64, i64), Result<bool, ()>);
        let table: &[Row] = &[
            ((0, 9), Ok(false)),
            ((0, 10), Ok(true)),
            ((0, 39), Ok(true)),
            ((0, 40), Err(())),
            ((3, 0), Err(())),
        ];
        for (now, want) in table {
            for op in ["beat", "renew"] {
                let mut l = lease(Some("10m"));
                let at = t(now.0, now.1);
                let got = match op {
                    "beat" => l.heartbeat(at, grace),
                    _ => l.renew(at, d("1h"), grace),
                };
                match (want, got) {
                    (Ok(w), Ok(g)) => {
                        assert_eq!(*w, g, "{op} at {now:?}");
                        assert_eq!(l.state(at), LeaseState::Active, "{op} at {now:?}");
                        assert_eq!(l.last_heartbeat_at, Some(at));
                    }
                    (Err(_), Err(LeaseEnded::Expired(_))) => {}
                    (w, g) => panic!("{op} at {now:?}: want {w:?}, got {g:?}"),
                }
            }
        }
        // Lapsed by expires_at (the heartbeat deadline is later): not revivable.
        let mut l = lease(Some("10m"));
        l.last_heartbeat_at = Some(t(1, 55));
        assert!(!l.revivable(t(2, 1), grace));
        assert!(matches!(
            l.heartbeat(t(2, 1), grace),
            Err(LeaseEnded::Expired(_))
        ));
        // Lapsed by heartbeat, but expires_at passed within the grace: not revivable either.
        let mut l = lease(Some("10m"));
        l.last_heartbeat_at = Some(t(1, 45));
        assert!(l.revivable(t(1, 59), grace));
        assert!(!l.revivable(t(2, 0), grace));
        // Released: never.
        let mut l = lease(Some("10m"));
        l.release(t(0, 5)).expect("releases");
        assert!(!l.revivable(t(0, 15), grace));
    }

    #[test]
    fn identity_tags_use_configured_keys() {
        let l = lease(None);
        let keys = IdentityTags {
            lease: "x:lease".into(),
            ..IdentityTags::default()
        };
        let tags = l.identity_tags(&keys);
        assert_eq!(tags.get("x:lease"), Some(&l.id.to_string()));
        assert_eq!(
            tags.get("ephemera:owner").map(String::as_str),
            Some("alice@example.com")
        );
        assert_eq!(tags.len(), 4);
    }
}
