//! The retention purge on PostgreSQL: the same batches as SQLite's (see `store::retention`
//! for what each keeps), one statement each (two for leases: their events too).
//!
//! SQLite ran each batch alone on its writer thread; here other replicas write beside it.
//! Each `DELETE` checks again, on the newest version of the row it deletes (READ COMMITTED
//! re-reads a row changed under it), the row's own conditions (resolved, gone, ended, sent),
//! so a row brought back to life by a concurrent write is kept. A row that something starts
//! to name during the batch is protected by its foreign key where there is one (a walk of a
//! run, a roll-up into a message: the later of the two fails). Findings and their events have
//! none here (migration 26), and need none: a pass opens a finding in the transaction that
//! upserts its resource, whose row lock makes this purge wait and re-read the row (seen
//! again, so kept); events are written for open findings and as one resolves, never for
//! one resolved past the horizon. Lease events have none either (migration 27): a batch of
//! leases deletes their events in the same transaction. Otherwise (mail naming a
//! long-resolved finding, a resource naming a lease ended past the horizon) the outcome is
//! the one of the purge running first.

use chrono::{DateTime, Utc};

use super::Pg;
use crate::model::{MailKind, PurgedTable};
use crate::store::retention::Batch;
use crate::store::{StoreError, ms};

/// A finding that may go (`$1`: its cut-off): resolved before it, no delete in flight, not
/// the newest, named by no unsent mail (a notice's payload names its finding).
macro_rules! finding_goes {
    () => {
        "f.resolved_at IS NOT NULL AND f.resolved_at < $1
         AND (f.reap_state IS NULL OR f.reap_state NOT IN ('deleting', 'with-controller'))
         AND f.id < (SELECT MAX(id) FROM findings)
         AND f.id NOT IN (SELECT (payload::jsonb ->> 'finding_id')::BIGINT FROM outbox
                          WHERE sent_at IS NULL AND (payload::jsonb ->> 'finding_id') IS NOT NULL)"
    };
}

/// The runs kept whatever their age: each task's latest, and its latest success.
macro_rules! kept_runs {
    () => {
        "SELECT id FROM (
             SELECT (SELECT id FROM runs WHERE task = t.task
                     ORDER BY started_at DESC, id DESC LIMIT 1) AS id
             FROM (SELECT DISTINCT task FROM runs) t
             UNION ALL
             SELECT (SELECT id FROM runs WHERE task = t.task AND outcome = 'success'
                     ORDER BY ended_at DESC NULLS LAST, id DESC LIMIT 1)
             FROM (SELECT DISTINCT task FROM runs) t) kept
         WHERE id IS NOT NULL"
    };
}

const FINDING_EVENTS: &str = concat!(
    "DELETE FROM finding_events WHERE id IN (
         SELECT e.id FROM findings f JOIN finding_events e ON e.finding_id = f.id
         WHERE ",
    finding_goes!(),
    " LIMIT $2)"
);

const FINDINGS: &str = concat!(
    "DELETE FROM findings WHERE id IN (
         SELECT f.id FROM findings f
         WHERE ",
    finding_goes!(),
    " AND NOT EXISTS (SELECT 1 FROM finding_events e WHERE e.finding_id = f.id)
         LIMIT $2)
     AND resolved_at < $1
     AND (reap_state IS NULL OR reap_state NOT IN ('deleting', 'with-controller'))"
);

const RESOURCES: &str = "DELETE FROM resources WHERE arn IN (
         SELECT r.arn FROM resources r
         WHERE r.gone_at IS NOT NULL AND r.gone_at < $1
           AND NOT EXISTS (SELECT 1 FROM findings f WHERE f.arn = r.arn)
         LIMIT $2)
     AND gone_at < $1";

const WALKS: &str = concat!(
    "DELETE FROM walks WHERE id IN (
         SELECT w.id FROM runs r JOIN walks w ON w.run_id = r.id
         WHERE r.ended_at IS NOT NULL AND r.ended_at < $1
           AND r.id NOT IN (",
    kept_runs!(),
    ")
           AND (w.swept_at IS NULL
                OR w.swept_at < (SELECT MAX(w2.swept_at) FROM walks w2
                                 WHERE w2.account = w.account AND w2.region = w.region
                                   AND w2.swept_at IS NOT NULL))
         LIMIT $2)"
);

const RUNS: &str = concat!(
    "DELETE FROM runs WHERE id IN (
         SELECT r.id FROM runs r
         WHERE r.ended_at IS NOT NULL AND r.ended_at < $1
           AND r.id NOT IN (",
    kept_runs!(),
    ")
           AND NOT EXISTS (SELECT 1 FROM walks w WHERE w.run_id = r.id)
         LIMIT $2)
     AND ended_at < $1"
);

/// `$1`: done with (sent, rolled up, closed) before; `$2`: dead before; either may be NULL.
const OUTBOX: &str = "DELETE FROM outbox WHERE id IN (
         SELECT o.id FROM outbox o
         WHERE (o.sent_at < $1 OR (o.sent_at IS NULL AND o.dead_at < $2))
           AND o.id < (SELECT MAX(id) FROM outbox)
           AND NOT EXISTS (SELECT 1 FROM outbox n WHERE n.rolled_into = o.id)
           AND NOT (o.kind = $3 AND EXISTS (
               SELECT 1 FROM leases l WHERE l.id = o.payload::jsonb ->> 'lease_id'
                 AND l.released_at IS NULL AND l.ends_at > $4))
         LIMIT $5)
     AND (sent_at < $1 OR (sent_at IS NULL AND dead_at < $2))";

const LEASES: &str = "DELETE FROM leases WHERE id IN (
         SELECT l.id FROM leases l
         WHERE LEAST(COALESCE(l.released_at, l.ends_at), l.ends_at) < $1
           AND l.id < (SELECT MAX(id) FROM leases)
           AND l.id NOT IN (SELECT lease_id FROM resources
                            WHERE gone_at IS NULL AND lease_id IS NOT NULL)
           AND l.id NOT IN (SELECT lease_id FROM findings
                            WHERE resolved_at IS NULL AND lease_id IS NOT NULL)
         LIMIT $2)
     AND LEAST(COALESCE(released_at, ends_at), ends_at) < $1
     RETURNING id";

/// The events of the leases [`LEASES`] deleted (no foreign key cascades to them here, see
/// migration 27). A statement of its own, after that one in its transaction, so its snapshot
/// holds every event written before the lease rows were locked; a write after that found the
/// row gone and wrote no event.
const LEASE_EVENTS: &str = "DELETE FROM lease_events WHERE lease_id = ANY($1)";

/// The batches whose plans the tests check, with what each plan must show: the indexes
/// read, and for leases one hashed list of each subquery (not a scan per lease).
#[cfg(test)]
pub(in crate::store) const PLANNED: [(&str, &str, &[&str]); 3] = [
    (
        "resources",
        RESOURCES,
        &["resources_gone", "findings_by_arn"],
    ),
    ("findings", FINDINGS, &["findings_resolved"]),
    ("leases", LEASES, &["hashed SubPlan"]),
];

impl Pg {
    pub(in crate::store) async fn purge_batch(
        &self,
        batch: Batch,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64, StoreError> {
        let limit = i64::from(limit);
        let mut c = self.conn().await?;
        let (sql, cut) = match batch {
            Batch::FindingEvents(t) => (FINDING_EVENTS, t),
            Batch::Findings(t) => (FINDINGS, t),
            Batch::Resources(t) => (RESOURCES, t),
            Batch::Walks(t) => (WALKS, t),
            Batch::Runs(t) => (RUNS, t),
            Batch::Leases(t) => {
                let mut tx = c.begin().await?;
                let ids: Vec<String> = tx
                    .query(LEASES, &[&t, &limit])
                    .await?
                    .iter()
                    .map(|r| r.try_get(0))
                    .collect::<Result<_, _>>()?;
                if !ids.is_empty() {
                    tx.execute(LEASE_EVENTS, &[&ids]).await?;
                }
                tx.commit().await?;
                return Ok(ids.len() as u64);
            }
            Batch::Outbox { sent, dead } => {
                let warning = MailKind::ExpiryWarning.as_str();
                return c
                    .execute(OUTBOX, &[&sent, &dead, &warning, &ms(now), &limit])
                    .await;
            }
        };
        c.execute(sql, &[&cut, &limit]).await
    }

    pub(in crate::store) async fn row_count(&self, table: PurgedTable) -> Result<u64, StoreError> {
        let mut c = self.conn().await?;
        let rows = c
            .query_dynamic(&format!("SELECT COUNT(*) FROM {table}"), &[])
            .await?;
        let n: i64 = rows
            .first()
            .ok_or_else(|| StoreError::Corrupt("a count without a row".into()))?
            .try_get(0)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}
