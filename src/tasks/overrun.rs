//! Runtime early warning: per project, how long its leases ran recently (released ones, from
//! the store), and which active leases are older than that project's p95 times its
//! `overrun_factor` (a task that balloons in runtime, noticed before its lease ends).
//!
//! Pure: the pass hands it the durations and the active leases; gauges and events are the
//! caller's.

use chrono::{DateTime, TimeDelta, Utc};

use crate::model::{Lease, ProjectName};
use crate::policy::Policy;

/// How far back released leases count as recent.
pub const RECENT: TimeDelta = TimeDelta::days(14);
/// Fewer released leases than this in [`RECENT`]: no p95, nothing flagged (too little to
/// know what normal is).
pub const MIN_SAMPLES: usize = 20;
/// At most this many of a project's newest released leases are read.
pub const MAX_SAMPLES: u32 = 10_000;

/// One project's verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectRuntime {
    pub project: ProjectName,
    pub samples: usize,
    /// The p95 of the recent durations (nearest rank); `None` below [`MIN_SAMPLES`].
    pub p95: Option<TimeDelta>,
    /// p95 × the project's factor: an active lease older than this overruns.
    pub threshold: Option<TimeDelta>,
    /// The active leases past the threshold, oldest first.
    pub overrunning: Vec<Lease>,
}

/// The nearest-rank p95 of `durations` (milliseconds, any order); `None` when empty.
pub fn p95(durations: &[i64]) -> Option<i64> {
    if durations.is_empty() {
        return None;
    }
    let mut sorted = durations.to_vec();
    sorted.sort_unstable();
    // Nearest rank: the smallest value with at least 95% of the samples at or below it.
    let rank = (sorted.len() * 95).div_ceil(100);
    Some(sorted[rank.max(1) - 1])
}

/// Every policy project's runtime verdict at `now`: `durations` per project (milliseconds of
/// recent released leases), `active` the leases not released (ended ones are not running).
pub fn judge(
    policy: &Policy,
    durations: &[(String, Vec<i64>)],
    active: &[Lease],
    now: DateTime<Utc>,
) -> Vec<ProjectRuntime> {
    policy
        .projects()
        .map(|p| {
            let recent: &[i64] = durations
                .iter()
                .find(|(name, _)| name == p.name.as_str())
                .map_or(&[], |(_, d)| d.as_slice());
            let p95 = (recent.len() >= MIN_SAMPLES)
                .then(|| p95(recent))
                .flatten()
                .map(TimeDelta::milliseconds);
            let threshold =
                p95.map(|d| d * i32::try_from(p.overrun_permille).unwrap_or(i32::MAX) / 1000);
            let mut overrunning: Vec<Lease> = match threshold {
                None => Vec::new(),
                Some(t) => active
                    .iter()
                    .filter(|l| {
                        l.project == p.name
                            && l.released_at.is_none()
                            && l.ends_at() > now
                            && now - l.created_at > t
                    })
                    .cloned()
                    .collect(),
            };
            overrunning.sort_by_key(|l| l.created_at);
            ProjectRuntime {
                project: p.name.clone(),
                samples: recent.len(),
                p95,
                threshold,
                overrunning,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::LeaseId;

    #[test]
    fn p95_is_the_nearest_rank() {
        assert_eq!(p95(&[]), None);
        assert_eq!(p95(&[7]), Some(7));
        let hundred: Vec<i64> = (1..=100).collect();
        assert_eq!(p95(&hundred), Some(95));
        let twenty: Vec<i64> = (1..=20).rev().collect();
        assert_eq!(p95(&twenty), Some(19), "rank ceil(0.95 * 20) = 19");
        let twenty_one: Vec<i64> = (1..=21).collect();
        assert_eq!(p95(&twenty_one), Some(20), "rank ceil(19.95) = 20");
    }

    fn policy(extra: &str) -> Policy {
        let text = format!(
            "[[project]]\nname = \"web\"\nlessees = [\"*\"]\ndefault_ttl = \"1d\"\nmax_ttl = \"1w\"\ngrace = \"1h\"\n{extra}\n\
             [[project]]\nname = \"data\"\nlessees = [\"*\"]\ndefault_ttl = \"1d\"\nmax_ttl = \"1w\"\ngrace = \"1h\"\n"
        );
        Policy::parse([(std::path::Path::new("p.toml"), text.as_str())]).expect("policy")
    }

    fn lease(project: &str, age_min: i64, now: DateTime<Utc>) -> Lease {
        Lease {
            id: LeaseId::generate(),
            project: ProjectName::parse(project).expect("name"),
            task: "t".into(),
            owner: "o@example.com".into(),
            principal: "ci".into(),
            created_at: now - TimeDelta::minutes(age_min),
            expires_at: now + TimeDelta::hours(10),
            heartbeat_interval: None,
            last_heartbeat_at: None,
            released_at: None,
            labels: Default::default(),
            regions: vec![],
        }
    }

    /// Twenty leases of 1..=20 minutes: p95 19 minutes, twice that 38. Active leases of 38
    /// minutes are not past it, 39 are; another project's, a released one and one ended (or
    /// ending this instant) never count; a factor of 1.5 moves the line; nineteen samples flag nothing.
    #[test]
    fn flags_active_leases_past_p95_times_the_factor() {
        let now = DateTime::parse_from_rfc3339("2026-12-06T12:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let minutes: Vec<i64> = (1..=20).map(|m| m * 60_000).collect();
        let durations = vec![("web".to_owned(), minutes.clone())];
        let at_line = lease("web", 38, now);
        let past = lease("web", 39, now);
        let mut released = lease("web", 90, now);
        released.released_at = Some(now - TimeDelta::minutes(1));
        let mut ended = lease("web", 90, now);
        ended.expires_at = now - TimeDelta::minutes(1);
        // Ending this very instant: ended, not running.
        let mut ending = lease("web", 90, now);
        ending.expires_at = now;
        let other = lease("data", 500, now);
        let active = vec![
            at_line.clone(),
            past.clone(),
            released,
            ended,
            ending,
            other,
        ];
        let web = |r: Vec<ProjectRuntime>| {
            r.into_iter()
                .find(|p| p.project.as_str() == "web")
                .expect("web")
        };
        let r = web(judge(&policy(""), &durations, &active, now));
        assert_eq!(r.samples, 20);
        assert_eq!(r.p95, Some(TimeDelta::minutes(19)));
        assert_eq!(r.threshold, Some(TimeDelta::minutes(38)));
        assert_eq!(
            r.overrunning.iter().map(|l| l.id).collect::<Vec<_>>(),
            [past.id]
        );

        let r = web(judge(
            &policy("overrun_factor = 1.5"),
            &durations,
            &active,
            now,
        ));
        assert_eq!(r.threshold, Some(TimeDelta::seconds(19 * 90)));
        assert_eq!(
            r.overrunning.iter().map(|l| l.id).collect::<Vec<_>>(),
            [past.id, at_line.id],
            "oldest first"
        );

        let few = vec![("web".to_owned(), minutes[..19].to_vec())];
        let r = web(judge(&policy(""), &few, &active, now));
        assert_eq!((r.samples, r.p95, r.overrunning.len()), (19, None, 0));

        let all = judge(&policy(""), &durations, &active, now);
        let data = all
            .iter()
            .find(|p| p.project.as_str() == "data")
            .expect("data");
        assert_eq!((data.samples, data.p95), (0, None), "no samples of its own");
    }

    #[test]
    fn the_factor_is_checked() {
        for bad in ["overrun_factor = 0.5", "overrun_factor = 101.0"] {
            let text = format!(
                "[[project]]\nname = \"web\"\nlessees = [\"*\"]\ndefault_ttl = \"1d\"\nmax_ttl = \"1w\"\ngrace = \"1h\"\n{bad}\n"
            );
            let err = Policy::parse([(std::path::Path::new("p.toml"), text.as_str())])
                .expect_err(bad)
                .to_string();
            assert!(
                err.starts_with(
                    "p.toml:7:18: field `project.overrun_factor`: must be 1.0 to 100.0"
                ),
                "{err}"
            );
        }
    }
}
