//! The retention purge: deletes history past its horizon, a bounded batch per write, children
//! before their parents (foreign keys are on).
//!
//! Architecture Invariant: the purge never touches the audit log, its head or chain rows, nor
//! spend; and never a row something still acts on: a resource not gone, a finding open or
//! with a delete in flight (`deleting`, `with-controller`) or named by unsent mail, an unsent
//! outbox row (dead letters only by their own horizon), a lease a live resource or an open
//! finding names, the latest run of each task and its latest success, the walk holding each
//! (account, region)'s last sweep. The newest finding, outbox row and lease are never
//! deleted: SQLite gives a new row the largest id plus one, and dedupe keys and the restore
//! guard read those ids, so one must never come back.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};

use super::{Store, StoreError, ms};
use crate::model::{MailKind, PurgedTable};

/// Rows that became history before these times are purged; `None` keeps that kind forever.
/// Leases' cut-off is the caller's to hold outside the teardown ratio's window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeCutoffs {
    pub gone_resources: Option<DateTime<Utc>>,
    pub resolved_findings: Option<DateTime<Utc>>,
    pub runs: Option<DateTime<Utc>>,
    pub sent_mail: Option<DateTime<Utc>>,
    pub dead_mail: Option<DateTime<Utc>>,
    pub ended_leases: Option<DateTime<Utc>>,
}

/// A finding that may go (`?1`: its cut-off): resolved before it, no delete in flight, not
/// the newest, named by no unsent mail (a notice's payload names its finding).
const FINDING_GOES: &str = "f.resolved_at IS NOT NULL AND f.resolved_at < ?1
    AND (f.reap_state IS NULL OR f.reap_state NOT IN ('deleting', 'with-controller'))
    AND f.id < (SELECT MAX(id) FROM findings)
    AND f.id NOT IN (SELECT json_extract(payload, '$.finding_id') FROM outbox
                     WHERE sent_at IS NULL AND json_extract(payload, '$.finding_id') IS NOT NULL)";

/// The runs kept whatever their age: each task's latest, and its latest success (what
/// `ephemera status` and the staleness alerts read after a restart).
const KEPT_RUNS: &str = "SELECT id FROM (
        SELECT (SELECT id FROM runs WHERE task = t.task ORDER BY started_at DESC, id DESC LIMIT 1) AS id
        FROM (SELECT DISTINCT task FROM runs) t
        UNION ALL
        SELECT (SELECT id FROM runs WHERE task = t.task AND outcome = 'success'
                ORDER BY ended_at DESC, id DESC LIMIT 1)
        FROM (SELECT DISTINCT task FROM runs) t)
    WHERE id IS NOT NULL";

fn purge_findings_events(c: &Connection, cut: i64, limit: u32) -> Result<usize, StoreError> {
    Ok(c.prepare_cached(&format!(
        "DELETE FROM finding_events WHERE id IN (
             SELECT e.id FROM findings f JOIN finding_events e ON e.finding_id = f.id
             WHERE {FINDING_GOES} LIMIT ?2)"
    ))?
    .execute(params![cut, limit])?)
}

fn purge_findings(c: &Connection, cut: i64, limit: u32) -> Result<usize, StoreError> {
    Ok(c.prepare_cached(&format!(
        "DELETE FROM findings WHERE id IN (
             SELECT f.id FROM findings f
             WHERE {FINDING_GOES}
               AND NOT EXISTS (SELECT 1 FROM finding_events e WHERE e.finding_id = f.id)
             LIMIT ?2)"
    ))?
    .execute(params![cut, limit])?)
}

/// Gone before the cut-off and named by no finding (a resource with findings waits for them).
fn purge_resources(c: &Connection, cut: i64, limit: u32) -> Result<usize, StoreError> {
    Ok(c.prepare_cached(
        "DELETE FROM resources WHERE rowid IN (
             SELECT r.rowid FROM resources r
             WHERE r.gone_at IS NOT NULL AND r.gone_at < ?1
               AND NOT EXISTS (SELECT 1 FROM findings f WHERE f.arn = r.arn)
             LIMIT ?2)",
    )?
    .execute(params![cut, limit])?)
}

/// Walks of runs that ended before the cut-off, but not those of kept runs nor the walk
/// holding its (account, region)'s last sweep (the next sweep is due an interval after it).
fn purge_walks(c: &Connection, cut: i64, limit: u32) -> Result<usize, StoreError> {
    Ok(c.prepare_cached(&format!(
        "DELETE FROM walks WHERE id IN (
             SELECT w.id FROM runs r JOIN walks w ON w.run_id = r.id
             WHERE r.ended_at IS NOT NULL AND r.ended_at < ?1
               AND r.id NOT IN ({KEPT_RUNS})
               AND (w.swept_at IS NULL
                    OR w.swept_at < (SELECT MAX(w2.swept_at) FROM walks w2
                                     WHERE w2.account = w.account AND w2.region = w.region
                                       AND w2.swept_at IS NOT NULL))
             LIMIT ?2)"
    ))?
    .execute(params![cut, limit])?)
}

fn purge_runs(c: &Connection, cut: i64, limit: u32) -> Result<usize, StoreError> {
    Ok(c.prepare_cached(&format!(
        "DELETE FROM runs WHERE id IN (
             SELECT r.id FROM runs r
             WHERE r.ended_at IS NOT NULL AND r.ended_at < ?1
               AND r.id NOT IN ({KEPT_RUNS})
               AND NOT EXISTS (SELECT 1 FROM walks w WHERE w.run_id = r.id)
             LIMIT ?2)"
    ))?
    .execute(params![cut, limit])?)
}

/// Outbox rows done with before `sent` (`?1`, sent or rolled up or closed) or dead before
/// `dead` (`?2`). Never the newest, never a message a notice is rolled into (the notices go
/// first, and were done with no later than it), never the warning of a lease still running
/// (its dedupe key is what keeps it from being warned twice).
fn purge_outbox(
    c: &Connection,
    sent: Option<i64>,
    dead: Option<i64>,
    now: i64,
    limit: u32,
) -> Result<usize, StoreError> {
    Ok(c.prepare_cached(
        "DELETE FROM outbox WHERE id IN (
             SELECT o.id FROM outbox o
             WHERE ((?1 IS NOT NULL AND o.sent_at IS NOT NULL AND o.sent_at < ?1)
                    OR (?2 IS NOT NULL AND o.sent_at IS NULL AND o.dead_at IS NOT NULL
                        AND o.dead_at < ?2))
               AND o.id < (SELECT MAX(id) FROM outbox)
               AND NOT EXISTS (SELECT 1 FROM outbox n WHERE n.rolled_into = o.id)
               AND NOT (o.kind = ?3 AND EXISTS (
                   SELECT 1 FROM leases l WHERE l.id = json_extract(o.payload, '$.lease_id')
                     AND l.released_at IS NULL AND l.ends_at > ?4))
             LIMIT ?5)",
    )?
    .execute(params![
        sent,
        dead,
        MailKind::ExpiryWarning.as_str(),
        now,
        limit
    ])?)
}

/// Leases that ended before the cut-off that no live resource and no open finding names, and
/// not the newest (the restore guard compares new lease ids against it).
fn purge_leases(c: &Connection, cut: i64, limit: u32) -> Result<usize, StoreError> {
    Ok(c.prepare_cached(
        "DELETE FROM leases WHERE rowid IN (
             SELECT l.rowid FROM leases l
             WHERE MIN(COALESCE(l.released_at, l.ends_at), l.ends_at) < ?1
               AND l.id < (SELECT MAX(id) FROM leases)
               AND l.id NOT IN (SELECT lease_id FROM resources
                                WHERE gone_at IS NULL AND lease_id IS NOT NULL)
               AND l.id NOT IN (SELECT lease_id FROM findings
                                WHERE resolved_at IS NULL AND lease_id IS NOT NULL)
             LIMIT ?2)",
    )?
    .execute(params![cut, limit])?)
}

/// One batch of the purge: a table and its cut-off (ms); `Outbox` has two, one of them set.
#[derive(Debug, Clone, Copy)]
pub(super) enum Batch {
    FindingEvents(i64),
    Findings(i64),
    Resources(i64),
    Walks(i64),
    Runs(i64),
    Outbox {
        sent: Option<i64>,
        dead: Option<i64>,
    },
    Leases(i64),
}

impl Batch {
    /// The batch `table` purges under `cutoffs`; `None` when that table is kept forever.
    pub(super) fn of(table: PurgedTable, cutoffs: PurgeCutoffs) -> Option<Batch> {
        let cut = |t: Option<DateTime<Utc>>| t.map(ms);
        match table {
            PurgedTable::FindingEvents => cut(cutoffs.resolved_findings).map(Batch::FindingEvents),
            PurgedTable::Findings => cut(cutoffs.resolved_findings).map(Batch::Findings),
            PurgedTable::Resources => cut(cutoffs.gone_resources).map(Batch::Resources),
            PurgedTable::Walks => cut(cutoffs.runs).map(Batch::Walks),
            PurgedTable::Runs => cut(cutoffs.runs).map(Batch::Runs),
            PurgedTable::Outbox => {
                let (sent, dead) = (cut(cutoffs.sent_mail), cut(cutoffs.dead_mail));
                (sent.is_some() || dead.is_some()).then_some(Batch::Outbox { sent, dead })
            }
            PurgedTable::Leases => cut(cutoffs.ended_leases).map(Batch::Leases),
        }
    }
}

impl Store {
    /// Deletes at most `limit` rows of `table` that are past their cut-off, in one write (so
    /// the writer never holds a long transaction); returns how many. Zero means none of that
    /// table is left to purge now.
    pub async fn purge_batch(
        &self,
        table: PurgedTable,
        cutoffs: PurgeCutoffs,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64, StoreError> {
        let Some(batch) = Batch::of(table, cutoffs) else {
            return Ok(0);
        };
        if let Some(pg) = self.pg() {
            return pg.purge_batch(batch, now, limit).await;
        }
        self.writer()?
            .write(move |c| {
                let n = match batch {
                    Batch::FindingEvents(t) => purge_findings_events(c, t, limit)?,
                    Batch::Findings(t) => purge_findings(c, t, limit)?,
                    Batch::Resources(t) => purge_resources(c, t, limit)?,
                    Batch::Walks(t) => purge_walks(c, t, limit)?,
                    Batch::Runs(t) => purge_runs(c, t, limit)?,
                    Batch::Outbox { sent, dead } => purge_outbox(c, sent, dead, ms(now), limit)?,
                    Batch::Leases(t) => purge_leases(c, t, limit)?,
                };
                Ok(n as u64)
            })
            .await
    }

    /// Rows per table (the purge's tests and bench; `table` from [`PurgedTable`]).
    pub async fn row_count(&self, table: PurgedTable) -> Result<u64, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.row_count(table).await;
        }
        self.read(move |c| {
            let n: i64 = c.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditKey;
    use crate::model::{Decision, ReapMode};
    use crate::resource::AuditEntry;
    use crate::store::ReapUpdate;
    use chrono::TimeDelta;

    const NOW: i64 = 1_800_000_000_000;
    const DAY: i64 = 86_400_000;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp_millis(NOW).expect("time")
    }

    /// Every kind 30 days; dead letters kept (the defaults' shape).
    fn thirty_days() -> PurgeCutoffs {
        let t = Some(now() - TimeDelta::days(30));
        PurgeCutoffs {
            gone_resources: t,
            resolved_findings: t,
            runs: t,
            sent_mail: t,
            dead_mail: None,
            ended_leases: t,
        }
    }

    /// A store holding one row for each case the purge must delete or keep; the name of each
    /// row says which. Times are days before [`NOW`].
    async fn world(store: Store) -> Store {
        let store = store.with_audit_key(AuditKey::from_hex(&"07".repeat(32)).expect("key"));
        let d = |days: i64| NOW - days * DAY;
        let sql = format!(
            "INSERT INTO leases (id, project, task, owner, principal, created_at, expires_at, released_at, ends_at) VALUES
               ('l-gone-free', 'p', 't', 'o', 'ci', {old}, {old2}, {old}, {old2}),
               ('l-live-resource', 'p', 't', 'o', 'ci', {old}, {old2}, {old}, {old2}),
               ('l-open-finding', 'p', 't', 'o', 'ci', {old}, {old2}, {old}, {old2}),
               ('l-in-window', 'p', 't', 'o', 'ci', {old}, {d3}, {d3}, {d3}),
               ('l-expired-old', 'p', 't', 'o', 'ci', {old}, {old}, NULL, {old}),
               ('l-active', 'p', 't', 'o', 'ci', {old}, {future}, NULL, {future}),
               ('z-newest', 'p', 't', 'o', 'ci', {old}, {old}, {old}, {old});
             INSERT INTO resources (arn, account, region, resource_type, tags, first_seen, last_seen,
                                    gone_at, verdict, reason, action, grace_s, lease_id, last_run) VALUES
               ('r-gone-free', 'a', 'r', 'ec2:volume', '', {old}, {old}, {old}, 'released', '', 'report', 0, 'l-gone-free', 'x'),
               ('r-gone-old-finding', 'a', 'r', 'ec2:volume', '', {old}, {old}, {old}, 'released', '', 'report', 0, NULL, 'x'),
               ('r-gone-recent-finding', 'a', 'r', 'ec2:volume', '', {old}, {old}, {old}, 'released', '', 'report', 0, NULL, 'x'),
               ('r-gone-open-finding', 'a', 'r', 'ec2:volume', '', {old}, {old}, {old}, 'expired', '', 'reap', 0, 'l-open-finding', 'x'),
               ('r-gone-deleting', 'a', 'r', 'ec2:volume', '', {old}, {old}, {old}, 'expired', '', 'reap', 0, NULL, 'x'),
               ('r-gone-mailed', 'a', 'r', 'ec2:volume', '', {old}, {old}, {old}, 'expired', '', 'reap', 0, NULL, 'x'),
               ('r-gone-newest', 'a', 'r', 'ec2:volume', '', {old}, {old}, {old}, 'expired', '', 'reap', 0, NULL, 'x'),
               ('r-live', 'a', 'r', 'ec2:volume', '', {old}, {d1}, NULL, 'released', '', 'report', 0, 'l-live-resource', 'x'),
               ('r-gone-recent', 'a', 'r', 'ec2:volume', '', {old}, {d3}, {d3}, 'released', '', 'report', 0, NULL, 'x');
             INSERT INTO findings (id, arn, verdict, action, reason, account, region, resource_type,
                                   opened_at, updated_at, resolved_at, lease_id, reap_state, deadline) VALUES
               (1, 'r-gone-old-finding', 'released', 'report', '', 'a', 'r', 'ec2:volume', {old}, {old}, {old}, NULL, NULL, NULL),
               (2, 'r-gone-recent-finding', 'released', 'report', '', 'a', 'r', 'ec2:volume', {old}, {d3}, {d3}, NULL, NULL, NULL),
               (3, 'r-gone-open-finding', 'expired', 'reap', '', 'a', 'r', 'ec2:volume', {old}, {old}, NULL, 'l-open-finding', NULL, {old}),
               (4, 'r-gone-deleting', 'expired', 'reap', '', 'a', 'r', 'ec2:volume', {old}, {old}, {old}, NULL, 'deleting', {old}),
               (5, 'r-gone-mailed', 'expired', 'reap', '', 'a', 'r', 'ec2:volume', {old}, {old}, {old}, NULL, NULL, {old}),
               (6, 'r-gone-newest', 'expired', 'reap', '', 'a', 'r', 'ec2:volume', {old}, {old}, {old}, NULL, NULL, {old});
             INSERT INTO finding_events (finding_id, at, kind, verdict, detail) VALUES
               (1, {old}, 'opened', 'released', ''), (1, {old}, 'resolved', 'released', ''),
               (2, {d3}, 'resolved', 'released', ''), (3, {old}, 'opened', 'expired', ''),
               (4, {old}, 'opened', 'expired', ''), (5, {old}, 'opened', 'expired', ''),
               (6, {old}, 'opened', 'expired', '');
             INSERT INTO runs (id, task, trigger, started_at, ended_at, outcome) VALUES
               ('run-old', 'scan', 'cron', {old}, {old}, 'success'),
               ('run-old-swept', 'scan', 'cron', {old}, {old}, 'success'),
               ('run-last-success', 'scan', 'cron', {d99}, {d99}, 'success'),
               ('run-latest', 'scan', 'cron', {d98}, {d98}, 'partial'),
               ('run-unfinished', 'cost', 'cron', {old}, NULL, NULL);
             INSERT INTO walks (run_id, account, region, started_at, ended_at, outcome, pages, resources, swept_at) VALUES
               ('run-old', 'a', 'r', {old}, {old}, 'complete', 1, 1, NULL),
               ('run-old', 'a', 'r2', {old}, {old}, 'complete', 1, 1, {old}),
               ('run-old-swept', 'a', 'r2', {old}, {old}, 'complete', 1, 1, {old} + 1),
               ('run-last-success', 'a', 'r', {d99}, {d99}, 'complete', 1, 1, NULL),
               ('run-latest', 'a', 'r', {d98}, {d98}, 'incomplete', 1, 1, NULL);
             INSERT INTO outbox (id, kind, recipient, dedupe_key, payload, created_at, sent_at, rolled_into, dead_at) VALUES
               (1, 'owner-digest', 'o', 'o-sent', '{{}}', {old}, {old}, NULL, NULL),
               (2, 'reaped-notice', 'o', 'o-message', '{{}}', {old}, {old}, NULL, NULL),
               (3, 'reaped', 'o', 'o-notice', '{{\"finding_id\": 1}}', {old}, {old}, 2, NULL),
               (4, 'deletion-planned', 'o', 'o-pending', '{{\"finding_id\": 5}}', {old}, NULL, NULL, NULL),
               (5, 'owner-digest', 'o', 'o-dead', '{{}}', {old}, NULL, NULL, {old}),
               (6, 'expiry-warning', 'o', 'o-warned-active', '{{\"lease_id\": \"l-active\"}}', {old}, {old}, NULL, NULL),
               (7, 'owner-digest', 'o', 'o-sent-recent', '{{}}', {d3}, {d3}, NULL, NULL),
               (8, 'owner-digest', 'o', 'o-newest', '{{}}', {old}, {old}, NULL, NULL);",
            old = d(100),
            old2 = d(100) + 1,
            d1 = d(1),
            d3 = d(3),
            d98 = d(98),
            d99 = d(99),
            future = NOW + DAY,
        );
        store.execute_batch_for_test(&sql).await;
        // Audit records naming rows the purge deletes: the chain must not care.
        for (i, (arn, lease)) in [
            ("r-gone-old-finding", None),
            ("r-gone-free", Some("l-gone-free")),
        ]
        .into_iter()
        .enumerate()
        {
            store
                .record_reap(
                    Some(1),
                    AuditEntry {
                        at: now() - TimeDelta::days(100 - i as i64),
                        run_id: Some("run-old".into()),
                        actor: "scheduler".into(),
                        mode: ReapMode::Pass,
                        arn: arn.into(),
                        lease_id: lease.map(Into::into),
                        verdict: Some("released".into()),
                        decision: Decision::WouldDelete,
                        detail: "would delete".into(),
                    },
                    ReapUpdate::Decision,
                )
                .await
                .expect("audited");
        }
        store
    }

    async fn ids(store: &Store, sql: &'static str) -> Vec<String> {
        store
            .text_rows_for_test(sql)
            .await
            .into_iter()
            .map(|r| r[0].clone().unwrap_or_default())
            .collect()
    }

    /// Every test's body runs against each engine, on a fresh [`world`].
    async fn on_both<F: std::future::Future<Output = ()>>(check: impl Fn(Store) -> F) {
        let dir = tempfile::tempdir().expect("temp dir");
        for (engine, store) in Store::open_both_for_test(dir.path()).await {
            eprintln!("{engine}");
            check(world(store).await).await;
        }
    }

    async fn purge_all(store: &Store, cut: PurgeCutoffs, limit: u32) -> Vec<(PurgedTable, u64)> {
        use strum::VariantArray;
        let mut out = Vec::new();
        for &t in PurgedTable::VARIANTS {
            let mut total = 0;
            loop {
                let n = store
                    .purge_batch(t, cut, now(), limit)
                    .await
                    .expect("purged");
                assert!(
                    n <= u64::from(limit),
                    "{t}: {n} rows in one batch of {limit}"
                );
                total += n;
                if n == 0 {
                    break;
                }
            }
            out.push((t, total));
        }
        out
    }

    /// What may go goes and what must stay stays, table by table; foreign keys hold, the
    /// audit chain still verifies, and a second purge finds nothing.
    #[tokio::test]
    async fn purge_deletes_history_and_keeps_what_is_live() {
        on_both(purge_deletes_history_and_keeps_what_is_live_on).await;
    }

    async fn purge_deletes_history_and_keeps_what_is_live_on(store: Store) {
        let purged = purge_all(&store, thirty_days(), 1).await;
        assert_eq!(
            purged,
            vec![
                (PurgedTable::FindingEvents, 2),
                (PurgedTable::Findings, 1),
                (PurgedTable::Resources, 2),
                (PurgedTable::Walks, 2),
                (PurgedTable::Runs, 1),
                (PurgedTable::Outbox, 3),
                (PurgedTable::Leases, 2),
            ]
        );
        assert_eq!(
            ids(&store, "SELECT id FROM leases ORDER BY id").await,
            [
                "l-active",
                "l-in-window",
                "l-live-resource",
                "l-open-finding",
                "z-newest"
            ],
            "gone: the ended lease nothing names, and the one that merely expired"
        );
        assert_eq!(
            ids(&store, "SELECT arn FROM resources ORDER BY arn").await,
            [
                "r-gone-deleting",
                "r-gone-mailed",
                "r-gone-newest",
                "r-gone-open-finding",
                "r-gone-recent",
                "r-gone-recent-finding",
                "r-live"
            ],
            "gone: the old gone resource, and the one whose finding went first"
        );
        assert_eq!(
            ids(&store, "SELECT id FROM findings ORDER BY id").await,
            ["2", "3", "4", "5", "6"],
            "kept: resolved lately, open, deleting, named by a pending notice, the newest"
        );
        assert_eq!(
            ids(
                &store,
                "SELECT DISTINCT finding_id FROM finding_events ORDER BY 1"
            )
            .await,
            ["2", "3", "4", "5", "6"]
        );
        assert_eq!(
            ids(&store, "SELECT id FROM runs ORDER BY id").await,
            [
                "run-last-success",
                "run-latest",
                "run-old-swept",
                "run-unfinished"
            ],
            "kept: the latest, the latest success, the last sweep's, the unfinished"
        );
        assert_eq!(
            ids(
                &store,
                "SELECT run_id || '/' || region FROM walks ORDER BY 1"
            )
            .await,
            ["run-last-success/r", "run-latest/r", "run-old-swept/r2"]
        );
        assert_eq!(
            ids(&store, "SELECT dedupe_key FROM outbox ORDER BY id").await,
            [
                "o-pending",
                "o-dead",
                "o-warned-active",
                "o-sent-recent",
                "o-newest"
            ],
            "gone: the sent message, and the rolled-up notice before its message"
        );
        // PostgreSQL has no foreign keys on findings and their events (migration 26): every
        // finding still names a resource, and every event a finding.
        assert_eq!(
            ids(
                &store,
                "SELECT 'finding ' || f.id FROM findings f
                 WHERE NOT EXISTS (SELECT 1 FROM resources r WHERE r.arn = f.arn)
                 UNION ALL
                 SELECT 'event ' || e.id FROM finding_events e
                 WHERE NOT EXISTS (SELECT 1 FROM findings f WHERE f.id = e.finding_id)"
            )
            .await,
            Vec::<String>::new()
        );
        if store.pg().is_none() {
            // PostgreSQL checks its other foreign keys at each statement; SQLite is asked.
            assert!(
                ids(&store, "SELECT \"table\" FROM pragma_foreign_key_check")
                    .await
                    .is_empty()
            );
        }
        assert_eq!(
            store.audit_verify(None).await.expect("reads"),
            Ok(2),
            "the chain verifies without the rows its records name"
        );
        assert_eq!(store.row_count(PurgedTable::Findings).await.expect("n"), 5);
        let again = purge_all(&store, thirty_days(), 500).await;
        assert!(again.iter().all(|(_, n)| *n == 0), "{again:?}");
    }

    /// Dead letters go only by their own horizon; `None` everywhere purges nothing.
    #[tokio::test]
    async fn dead_letters_and_never_follow_their_own_horizon() {
        on_both(dead_letters_and_never_follow_their_own_horizon_on).await;
    }

    async fn dead_letters_and_never_follow_their_own_horizon_on(store: Store) {
        let nothing = purge_all(&store, PurgeCutoffs::default(), 500).await;
        assert!(nothing.iter().all(|(_, n)| *n == 0), "{nothing:?}");
        let dead_only = PurgeCutoffs {
            dead_mail: Some(now() - TimeDelta::days(30)),
            ..PurgeCutoffs::default()
        };
        let purged = purge_all(&store, dead_only, 500).await;
        assert_eq!(
            purged
                .iter()
                .filter(|(_, n)| *n > 0)
                .copied()
                .collect::<Vec<_>>(),
            [(PurgedTable::Outbox, 1)]
        );
        assert!(
            !ids(&store, "SELECT dedupe_key FROM outbox")
                .await
                .contains(&"o-dead".to_owned())
        );
    }

    /// The purge's look-ups go through their indexes, not over all of history.
    #[tokio::test]
    async fn purge_reads_through_its_indexes() {
        on_both(purge_reads_through_its_indexes_on).await;
    }

    async fn purge_reads_through_its_indexes_on(store: Store) {
        if store.pg().is_some() {
            for (what, sql, want) in crate::store::pg::PURGE_PLANNED {
                let sql = sql.replace("$2", "1").replace("$1", "0");
                // An empty table is read whole whatever its indexes: with scans of whole
                // tables priced out, the plan shows whether the indexes serve the query.
                let steps = store
                    .text_rows_for_test(&format!(
                        "BEGIN; SET LOCAL enable_seqscan = off; EXPLAIN {sql}; COMMIT"
                    ))
                    .await
                    .into_iter()
                    .filter_map(|r| r[0].clone())
                    .collect::<Vec<_>>()
                    .join(" | ");
                for index in want {
                    assert!(steps.contains(index), "{what}: {steps}");
                }
            }
            return;
        }
        let plan = |sql: String| {
            let store = store.clone();
            async move {
                store
                    .read(move |c| {
                        let sql = sql.replace("?1", "0").replace("?2", "1");
                        let mut stmt = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
                        let steps = stmt
                            .query_map([], |r| r.get::<_, String>(3))?
                            .collect::<Result<Vec<_>, _>>()?;
                        Ok::<_, StoreError>(steps.join(" | "))
                    })
                    .await
                    .expect("plan")
            }
        };
        for (what, sql, want) in [
            (
                "resources",
                "SELECT r.rowid FROM resources r WHERE r.gone_at IS NOT NULL AND r.gone_at < ?1
                   AND NOT EXISTS (SELECT 1 FROM findings f WHERE f.arn = r.arn) LIMIT ?2"
                    .to_owned(),
                ["resources_gone", "findings_by_arn"].as_slice(),
            ),
            (
                "findings",
                format!("SELECT f.id FROM findings f WHERE {FINDING_GOES} LIMIT ?2"),
                ["findings_resolved"].as_slice(),
            ),
            (
                "leases",
                "SELECT l.rowid FROM leases l
                 WHERE MIN(COALESCE(l.released_at, l.ends_at), l.ends_at) < ?1
                   AND l.id NOT IN (SELECT lease_id FROM resources WHERE gone_at IS NULL AND lease_id IS NOT NULL)
                   AND l.id NOT IN (SELECT lease_id FROM findings WHERE resolved_at IS NULL AND lease_id IS NOT NULL)
                 LIMIT ?2"
                    .to_owned(),
                // One list of each (a scan per statement, not one per lease).
                ["LIST SUBQUERY"].as_slice(),
            ),
        ] {
            let steps = plan(sql).await;
            for index in want {
                assert!(steps.contains(index), "{what}: {steps}");
            }
        }
    }
}
