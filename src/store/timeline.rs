//! A lease's timeline: the lease row, its recorded events, and what every other table says of
//! it (resources, findings, mail, the audit log, teardown, spend), read in one snapshot and
//! assembled into [`TimelineEntry`]s.
//!
//! The statements are written once for both engines: `$1`, `$2` are PostgreSQL's placeholders
//! and SQLite's named parameters, numbered by first appearance (so each statement names `$1`
//! before `$2`). Resources are found by a scan (there is deliberately no index of resources by
//! lease, see migration 22); findings by `findings_by_lease`; the mail of those findings by its
//! dedupe keys (`deletion-planned:FINDING:…`, `reaped:FINDING`, `expiry-warning:LEASE:…`),
//! the outbox's unique index.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::{LEASE_COLUMNS, RawLease, Store, StoreError, from_ms};
use crate::model::{
    Lease, LeaseChange, LeaseId, MailKind, MicroUsd, ResourceGroup, TimelineEntry, TimelineEvent,
    sort_timeline,
};

pub(super) const EVENTS: &str =
    "SELECT at, principal, detail FROM lease_events WHERE lease_id = $1 ORDER BY at, id";

pub(super) const RESOURCES: &str =
    "SELECT resource_type, region, COUNT(*), MIN(first_seen), MAX(last_seen),
        SUM(CASE WHEN gone_at IS NULL THEN 1 ELSE 0 END)
    FROM resources WHERE lease_id = $1
    GROUP BY resource_type, region";

/// Finding transitions per pass, kind, verdict, type and region; a mark's or a resolution's
/// detail (the deadline, why it resolved) kept, an update's left out.
pub(super) const FINDINGS: &str = "SELECT e.kind, e.verdict, f.resource_type, f.region,
        CASE WHEN e.kind IN ('marked', 'resolved') THEN e.detail ELSE '' END,
        MIN(e.at), COUNT(*)
    FROM findings f JOIN finding_events e ON e.finding_id = f.id
    WHERE f.lease_id = $1
    GROUP BY e.run_id, e.kind, e.verdict, f.resource_type, f.region,
        CASE WHEN e.kind IN ('marked', 'resolved') THEN e.detail ELSE '' END";

/// Mail that went out about the lease: its expiry warnings (sent themselves), and the messages
/// that carried its findings' notices (a notice's own `sent_at` is only when it was rolled
/// up). The kinds are [`MailKind`]'s stored names, which never change.
pub(super) const NOTICES: &str = "SELECT o.kind, COALESCE(m.kind, o.kind),
        COALESCE(m.recipient, o.recipient, ''),
        CASE WHEN o.kind = 'expiry-warning' THEN o.sent_at ELSE m.sent_at END AS sent,
        COUNT(*)
    FROM outbox o LEFT JOIN outbox m ON m.id = o.rolled_into
    WHERE o.id IN (
            SELECT id FROM outbox
            WHERE dedupe_key >= 'expiry-warning:' || $1 || ':'
              AND dedupe_key < 'expiry-warning:' || $1 || ';'
            UNION ALL
            SELECT n.id FROM findings f JOIN outbox n
                ON n.dedupe_key >= 'deletion-planned:' || f.id || ':'
               AND n.dedupe_key < 'deletion-planned:' || f.id || ';'
            WHERE f.lease_id = $1
            UNION ALL
            SELECT n.id FROM findings f JOIN outbox n ON n.dedupe_key = 'reaped:' || f.id
            WHERE f.lease_id = $1)
      AND CASE WHEN o.kind = 'expiry-warning' THEN o.sent_at ELSE m.sent_at END IS NOT NULL
    GROUP BY o.kind, COALESCE(m.kind, o.kind), COALESCE(m.recipient, o.recipient, ''),
        CASE WHEN o.kind = 'expiry-warning' THEN o.sent_at ELSE m.sent_at END";

/// The reaper's audit records about the lease's resources, per pass, decision, type and
/// region: what was (or would have been) deleted, skipped at the last moment, failed or
/// refused (marks and holds are the findings' story).
pub(super) const AUDIT: &str = "SELECT a.decision, COALESCE(r.resource_type, ''),
        COALESCE(r.region, ''), MIN(a.at), COUNT(*)
    FROM audit_log a LEFT JOIN resources r ON r.arn = a.arn
    WHERE a.arn IN (SELECT arn FROM findings WHERE lease_id = $1) AND a.lease_id = $1
      AND a.decision IN ('would-delete', 'deleted', 'skipped', 'failed', 'refused')
    GROUP BY a.run_id, a.decision, COALESCE(r.resource_type, ''), COALESCE(r.region, '')";

/// Spend of the lease's task tag from the day it was acquired (`$1`, `$2`: the day, the task),
/// and when the latest of those days was fetched.
pub(super) const SPEND: &str = "SELECT CAST(SUM(s.micro_usd) AS BIGINT),
        MAX(COALESCE(d.estimated, 0)), MAX(d.fetched_at)
    FROM spend s LEFT JOIN spend_days d ON d.dimension = s.dimension AND d.day = s.day
    WHERE s.dimension = 'task' AND s.day >= $1 AND s.key = $2";

/// What the statements read, before assembly (times in ms).
#[derive(Debug, Default)]
pub(super) struct Rows {
    /// (at, principal, detail)
    pub events: Vec<(i64, String, String)>,
    /// (type, region, count, first seen, last seen, live)
    pub resources: Vec<(String, String, i64, i64, i64, i64)>,
    /// (kind, verdict, type, region, detail, at, count)
    pub findings: Vec<(String, String, String, String, String, i64, i64)>,
    /// (notice kind, message kind, recipient, sent at, count)
    pub notices: Vec<(String, String, String, i64, i64)>,
    /// (decision, type, region, at, count)
    pub audit: Vec<(String, String, String, i64, i64)>,
    /// (micro-dollars, estimated, fetched at)
    pub spend: Option<(MicroUsd, bool, Option<i64>)>,
}

fn time(v: i64) -> Result<DateTime<Utc>, StoreError> {
    Ok(from_ms(v)?)
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// The first day whose spend counts toward the lease, as the spend table spells days.
pub(super) fn first_day(lease: &Lease) -> String {
    lease.created_at.date_naive().to_string()
}

/// The timeline of `lease` from what was read, sorted.
pub(super) fn assemble(
    lease: &Lease,
    teardown: Option<DateTime<Utc>>,
    rows: Rows,
    now: DateTime<Utc>,
) -> Result<Vec<TimelineEntry>, StoreError> {
    // The row holds the latest end; the first renewal remembers the one it was acquired with.
    let first_end = rows
        .events
        .iter()
        .find_map(|(_, _, d)| match LeaseChange::from_json(d) {
            Some(LeaseChange::Renewed { from, .. }) => Some(from),
            _ => None,
        })
        .unwrap_or(lease.expires_at);
    let mut out = vec![TimelineEntry {
        at: lease.created_at,
        event: TimelineEvent::Acquired {
            principal: lease.principal.clone(),
            expires_at: first_end,
            heartbeat_interval: lease.heartbeat_interval,
        },
    }];
    let mut released_by = None;
    for (at, principal, detail) in rows.events {
        let at = time(at)?;
        let change = LeaseChange::from_json(&detail)
            .ok_or_else(|| StoreError::Corrupt(format!("lease event `{detail}`")))?;
        let event = match change {
            LeaseChange::Renewed { from, to } => TimelineEvent::Renewed {
                principal,
                from,
                to,
            },
            LeaseChange::HeartbeatGap {
                gap_ms,
                interval,
                revived,
            } => TimelineEvent::HeartbeatGap {
                principal,
                gap: chrono::TimeDelta::milliseconds(gap_ms),
                interval,
                revived,
            },
            LeaseChange::Released => {
                released_by = Some(principal);
                continue;
            }
        };
        out.push(TimelineEntry { at, event });
    }
    // The row says when it ended; its event (when recorded) says who ended it.
    let end = lease.ends_at();
    if now >= end && lease.released_at.is_none_or(|r| r > end) {
        out.push(TimelineEntry {
            at: end,
            event: TimelineEvent::Expired {
                by_heartbeat: end < lease.expires_at,
            },
        });
    }
    if let Some(at) = lease.released_at {
        out.push(TimelineEntry {
            at,
            event: TimelineEvent::Released {
                principal: released_by,
            },
        });
    }
    for (resource_type, region, n, first, last, live) in rows.resources {
        let group = ResourceGroup {
            resource_type,
            region,
            count: count(n),
        };
        out.push(TimelineEntry {
            at: time(first)?,
            event: TimelineEvent::ResourcesFirstSeen(group.clone()),
        });
        out.push(TimelineEntry {
            at: time(last)?,
            event: TimelineEvent::ResourcesLastSeen {
                group,
                live: count(live),
            },
        });
    }
    for (change, verdict, resource_type, region, detail, at, n) in rows.findings {
        out.push(TimelineEntry {
            at: time(at)?,
            event: TimelineEvent::Finding {
                change,
                verdict,
                group: ResourceGroup {
                    resource_type,
                    region,
                    count: count(n),
                },
                detail,
            },
        });
    }
    for (notice, message, recipient, at, n) in rows.notices {
        let kind = |k: &str| {
            k.parse::<MailKind>()
                .map_err(|_| StoreError::Corrupt(format!("mail kind `{k}`")))
        };
        out.push(TimelineEntry {
            at: time(at)?,
            event: TimelineEvent::NoticeSent {
                notice: kind(&notice)?,
                message: kind(&message)?,
                recipient,
                count: count(n),
            },
        });
    }
    for (decision, resource_type, region, at, n) in rows.audit {
        out.push(TimelineEntry {
            at: time(at)?,
            event: TimelineEvent::Deletion {
                decision,
                group: ResourceGroup {
                    resource_type,
                    region,
                    count: count(n),
                },
            },
        });
    }
    if let Some(at) = teardown {
        out.push(TimelineEntry {
            at,
            event: TimelineEvent::TeardownComplete,
        });
    }
    if let Some((micro_usd, estimated, fetched)) = rows.spend {
        // As of the latest fetch, never before the lease (a day's first fetch may precede it).
        let at = fetched.map(time).transpose()?.unwrap_or(now);
        out.push(TimelineEntry {
            at: at.max(lease.created_at),
            event: TimelineEvent::Spend {
                micro_usd,
                estimated,
            },
        });
    }
    sort_timeline(&mut out);
    Ok(out)
}

impl Store {
    /// Lease `id`'s story, chronologically: acquired, renewals, late heartbeats, its end,
    /// its resources first and last seen (by type and region), findings and marks, mail sent,
    /// the reaper's audit records, teardown complete, spend so far. `None`: no such lease.
    /// One snapshot of the store; resources are found by a scan of them.
    pub async fn lease_timeline(
        &self,
        id: LeaseId,
        now: DateTime<Utc>,
    ) -> Result<Option<Vec<TimelineEntry>>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.lease_timeline(id, now).await;
        }
        self.read(move |c| {
            // One read transaction: every statement sees the same moment.
            let tx = c.transaction()?;
            let sql =
                format!("SELECT {LEASE_COLUMNS}, teardown_complete_at FROM leases WHERE id = ?1");
            let key = id.to_string();
            let Some((raw, teardown)) = tx
                .prepare_cached(&sql)?
                .query_row([&key], |r| {
                    Ok((RawLease::from_row(r)?, r.get::<_, Option<i64>>(12)?))
                })
                .optional()?
            else {
                return Ok(None);
            };
            let lease = raw.into_lease()?;
            let teardown = teardown.map(time).transpose()?;
            let events = tx
                .prepare_cached(EVENTS)?
                .query_map([&key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<_, _>>()?;
            let resources = tx
                .prepare_cached(RESOURCES)?
                .query_map([&key], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                })?
                .collect::<Result<_, _>>()?;
            let findings = tx
                .prepare_cached(FINDINGS)?
                .query_map([&key], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                    ))
                })?
                .collect::<Result<_, _>>()?;
            let notices = tx
                .prepare_cached(NOTICES)?
                .query_map([&key], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })?
                .collect::<Result<_, _>>()?;
            let audit = tx
                .prepare_cached(AUDIT)?
                .query_map([&key], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })?
                .collect::<Result<_, _>>()?;
            let spend = tx
                .prepare_cached(SPEND)?
                .query_row(params![first_day(&lease), lease.task], |r| {
                    let usd: Option<i64> = r.get(0)?;
                    Ok(usd.map(|u| {
                        Ok::<_, rusqlite::Error>((u, r.get::<_, i64>(1)? != 0, r.get(2)?))
                    }))
                })?
                .transpose()?;
            tx.finish()?;
            let rows = Rows {
                events,
                resources,
                findings,
                notices,
                audit,
                spend,
            };
            Ok(Some(assemble(&lease, teardown, rows, now)?))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use crate::store::Quota;
    use std::collections::BTreeMap;

    use chrono::{TimeDelta, TimeZone};

    use super::*;
    use crate::model::{HumanDuration, LeaseEvent, ProjectName, lease_changes};

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0)
            .single()
            .expect("valid")
    }

    fn at(m: i64) -> DateTime<Utc> {
        t0() + TimeDelta::minutes(m)
    }

    fn lease(task: &str) -> Lease {
        Lease {
            id: LeaseId::generate(),
            project: ProjectName::parse("web").expect("valid"),
            task: task.into(),
            owner: "alice@example.com".into(),
            principal: "ci".into(),
            created_at: t0(),
            expires_at: at(120),
            heartbeat_interval: Some(HumanDuration::parse("10m").expect("valid")),
            last_heartbeat_at: None,
            released_at: None,
            labels: BTreeMap::new(),
            regions: vec![],
        }
    }

    /// Changes lease `id` at minute `m` as `who`, recording what the registry would.
    async fn change(
        store: &Store,
        id: LeaseId,
        m: i64,
        who: &str,
        mut f: impl FnMut(&mut Lease, DateTime<Utc>) + Send + 'static,
    ) {
        let who = who.to_owned();
        store
            .update_lease(id, move |l| {
                let before = l.clone();
                f(l, at(m));
                Ok::<_, StoreError>(
                    lease_changes(&before, l, at(m))
                        .into_iter()
                        .map(|change| LeaseEvent {
                            at: at(m),
                            principal: who.clone(),
                            change,
                        })
                        .collect(),
                )
            })
            .await
            .expect("updated")
            .expect("the lease exists");
    }

    /// One lease's whole story on each engine: its own events, its resources grouped by type
    /// and region, its finding's transitions, the mail that went out, the reaper's record,
    /// teardown and spend, in order; nothing of another lease; and its events purged with it.
    #[tokio::test]
    async fn a_lease_tells_its_whole_story_on_both_engines() {
        let dir = tempfile::tempdir().expect("temp dir");
        for (engine, store) in Store::open_both_for_test(dir.path()).await {
            whole_story(engine, store).await;
        }
    }

    async fn whole_story(engine: &str, store: Store) {
        let grace = HumanDuration::parse("1h").expect("valid");
        let (mut l, mut other) = (lease("build-7"), lease("build-8"));
        // The other lease is the newest (which the purge never takes).
        if l.id > other.id {
            std::mem::swap(&mut l.id, &mut other.id);
        }
        let (id, other_id) = (l.id, other.id);
        for x in [l, other] {
            store
                .insert_lease(x, t0(), Quota::<StoreError>::unlimited())
                .await
                .expect("inserted");
        }
        let ttl = HumanDuration::parse("3h").expect("valid");
        change(&store, id, 2, "ci", move |l, now| {
            l.renew(now, ttl, grace).expect("renews");
        })
        .await;
        // Beats on time write nothing; a late one (12 minutes after the renewal) does.
        change(&store, id, 6, "ci", move |l, now| {
            l.heartbeat(now, grace).expect("beats");
        })
        .await;
        change(&store, id, 8, "ci", move |l, now| {
            l.heartbeat(now, grace).expect("beats");
        })
        .await;
        change(&store, id, 20, "ci", move |l, now| {
            l.heartbeat(now, grace).expect("revives");
        })
        .await;
        change(&store, id, 50, "oncall", |l, now| {
            l.release(now).expect("releases");
        })
        .await;
        change(&store, other_id, 3, "ci", move |l, now| {
            l.renew(now, ttl, grace).expect("renews");
        })
        .await;

        let ms = |m: i64| at(m).timestamp_millis();
        let vol = |n: u32| format!("arn:aws:ec2:us-east-1:123456789012:volume/vol-{n}");
        let resource =
            |arn: &str, ty: &str, region: &str, first: i64, gone: &str, lease: LeaseId| {
                format!(
                    "INSERT INTO resources (arn, account, region, resource_type, tags, first_seen,
                     last_seen, gone_at, verdict, reason, action, grace_s, lease_id, last_run)
                 VALUES ('{arn}', '123456789012', '{region}', '{ty}', '{{}}', {}, {}, {gone},
                     'released', 'r', 'reap', 0, '{lease}', 'r2');",
                    ms(first),
                    ms(40)
                )
            };
        let gone = ms(41).to_string();
        let deadline = ms(45 + 60);
        let sql = [
            resource(&vol(1), "ec2:volume", "us-east-1", 5, "NULL", id),
            resource(&vol(2), "ec2:volume", "us-east-1", 5, "NULL", id),
            resource(&vol(3), "ec2:volume", "us-east-1", 7, &gone, id),
            resource(
                "arn:aws:sqs:eu-west-1:123456789012:q",
                "sqs:queue",
                "eu-west-1",
                6,
                "NULL",
                id,
            ),
            resource(&vol(9), "ec2:volume", "us-east-1", 1, "NULL", other_id),
            format!(
                "INSERT INTO findings (id, arn, verdict, action, reason, lease_id, account, region,
                     resource_type, opened_at, updated_at, deadline)
                 VALUES (1, '{}', 'released', 'reap', 'r', '{id}', '123456789012', 'us-east-1',
                     'ec2:volume', {m45}, {m45}, {deadline}),
                        (2, '{}', 'released', 'reap', 'r', '{id}', '123456789012', 'us-east-1',
                     'ec2:volume', {m45}, {m45}, {deadline}),
                        (3, '{}', 'expired', 'reap', 'r', '{other_id}', '123456789012',
                     'us-east-1', 'ec2:volume', {m45}, {m45}, NULL);
                 INSERT INTO finding_events (finding_id, run_id, at, kind, verdict, detail)
                 VALUES (1, 'r2', {m45}, 'opened', 'released', 'x'),
                        (2, 'r2', {m45}, 'opened', 'released', 'x'),
                        (1, 'r2', {m45}, 'marked', 'released', 'deletion planned'),
                        (2, 'r2', {m45}, 'marked', 'released', 'deletion planned'),
                        (3, 'r2', {m45}, 'opened', 'expired', 'x');",
                vol(1),
                vol(2),
                vol(9),
                m45 = ms(45),
            ),
            format!(
                "INSERT INTO outbox (id, kind, recipient, dedupe_key, payload, created_at, sent_at)
                 VALUES (11, 'owner-digest', 'alice@example.com', 'digest-1', '{{}}', {m46}, {m47}),
                        (12, 'expiry-warning', 'alice@example.com', 'expiry-warning:{id}:1', '{{}}',
                         {m29}, {m30}),
                        (13, 'expiry-warning', 'alice@example.com', 'expiry-warning:{other_id}:1',
                         '{{}}', {m29}, {m30}),
                        (14, 'expiry-warning', 'alice@example.com', 'expiry-warning:{id}:2', '{{}}',
                         {m29}, NULL);
                 INSERT INTO outbox (id, kind, recipient, dedupe_key, payload, created_at, sent_at,
                     rolled_into)
                 VALUES (15, 'deletion-planned', 'alice@example.com', 'deletion-planned:1:{deadline}',
                         '{{}}', {m45}, {m46}, 11),
                        (16, 'deletion-planned', 'alice@example.com', 'deletion-planned:2:{deadline}',
                         '{{}}', {m45}, {m46}, 11),
                        (17, 'deletion-planned', 'alice@example.com', 'deletion-planned:3:1',
                         '{{}}', {m45}, {m46}, 11);",
                m29 = ms(29),
                m30 = ms(30),
                m45 = ms(45),
                m46 = ms(46),
                m47 = ms(47),
            ),
            format!(
                "INSERT INTO audit_log (seq, at, run_id, actor, mode, arn, lease_id, verdict,
                     decision, detail, prev_hash, hash)
                 VALUES (1, {}, 'r3', 'scheduler', 'pass', '{}', '{id}', 'released', 'deleted',
                         'ok', 'p', 'h'),
                        (2, {}, 'r3', 'scheduler', 'pass', '{}', '{id}', 'released', 'held',
                         'window', 'p', 'h');
                 UPDATE leases SET teardown_complete_at = {} WHERE id = '{id}';
                 INSERT INTO spend (day, dimension, key, region, micro_usd)
                 VALUES ('2026-03-01', 'task', 'build-7', 'us-east-1', 1250000),
                        ('2026-03-01', 'task', 'build-7', 'eu-west-1', 500000),
                        ('2026-02-28', 'task', 'build-7', 'us-east-1', 9000000),
                        ('2026-03-01', 'task', 'build-8', 'us-east-1', 7000000);
                 INSERT INTO spend_days (dimension, day, estimated, final, fetched_at)
                 VALUES ('task', '2026-03-01', 1, 0, {});",
                ms(60),
                vol(1),
                ms(61),
                vol(2),
                ms(70),
                ms(80),
            ),
        ];
        store.execute_batch_for_test(&sql.concat()).await;

        let got: Vec<(i64, String, String)> = store
            .lease_timeline(id, at(90))
            .await
            .expect("reads")
            .expect("the lease exists")
            .into_iter()
            .map(|e| {
                (
                    (e.at - t0()).num_minutes(),
                    e.event.kind(),
                    e.event.summary(),
                )
            })
            .collect();
        let want: &[(i64, &str, &str)] = &[
            (
                0,
                "acquired",
                "by ci, until 2026-03-01 11:00:00Z, heartbeat every 10m",
            ),
            (
                2,
                "renewed",
                "by ci: end 2026-03-01 11:00:00Z -> 2026-03-01 12:02:00Z",
            ),
            (
                5,
                "resources-first-seen",
                "3 ec2:volume in us-east-1 first seen",
            ),
            (
                6,
                "resources-first-seen",
                "1 sqs:queue in eu-west-1 first seen",
            ),
            (
                20,
                "heartbeat-gap",
                "12m since the previous beat (interval 10m) from ci; the lease had lapsed and was revived",
            ),
            (30, "expired", "missed its heartbeat"),
            (30, "notice-sent", "expiry-warning to alice@example.com"),
            (
                40,
                "resources-last-seen",
                "3 ec2:volume in us-east-1 last seen (2 still there)",
            ),
            (
                40,
                "resources-last-seen",
                "1 sqs:queue in eu-west-1 last seen (1 still there)",
            ),
            (45, "finding-opened", "released, 2 ec2:volume in us-east-1"),
            (
                45,
                "finding-marked",
                "released, 2 ec2:volume in us-east-1: deletion planned",
            ),
            (
                47,
                "notice-sent",
                "owner-digest to alice@example.com: 2 deletion-planned",
            ),
            (50, "released", "by oncall"),
            (60, "deletion", "deleted: 1 ec2:volume in us-east-1"),
            (70, "teardown-complete", "every resource confirmed gone"),
            (80, "spend", "$1.750000 so far (estimated)"),
        ];
        let want: Vec<(i64, String, String)> = want
            .iter()
            .map(|(m, k, s)| (*m, (*k).to_owned(), (*s).to_owned()))
            .collect();
        assert_eq!(got, want, "{engine}");

        assert_eq!(
            store
                .lease_timeline(LeaseId::generate(), at(90))
                .await
                .expect("reads"),
            None,
            "{engine}: no such lease"
        );

        // The purge takes the lease's events with it; the other lease keeps its own.
        let events = || async {
            store
                .text_rows_for_test("SELECT lease_id FROM lease_events ORDER BY id")
                .await
                .into_iter()
                .map(|r| r[0].clone().unwrap_or_default())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            events().await.len(),
            4,
            "{engine}: renewed, gap, released, other's renewal"
        );
        store
            .execute_batch_for_test(&format!(
                "UPDATE findings SET resolved_at = {gone} WHERE lease_id = '{id}';
                 UPDATE resources SET gone_at = {gone} WHERE lease_id = '{id}';"
            ))
            .await;
        let cutoffs = crate::store::PurgeCutoffs {
            ended_leases: Some(at(24 * 60)),
            ..Default::default()
        };
        let purged = store
            .purge_batch(crate::model::PurgedTable::Leases, cutoffs, at(24 * 60), 100)
            .await
            .expect("purges");
        assert_eq!(
            purged, 1,
            "{engine}: the ended lease (the other is the newest)"
        );
        assert_eq!(events().await, [other_id.to_string()], "{engine}");
    }
}
