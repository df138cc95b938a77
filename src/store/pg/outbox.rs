//! The mail outbox on PostgreSQL: notices rolled up into messages, due messages, the marks a
//! delivery leaves, dead letters.
//!
//! Architecture Invariant: a roll-up of one notice kind runs in one transaction that holds an
//! advisory lock on that kind, so two replicas never roll the same notices into two messages;
//! every other write is one statement whose `WHERE` re-checks what it changes.

use chrono::{DateTime, TimeDelta, Utc};
use tokio_postgres::Row;

use super::leases::lease_of;
use super::{Pg, Tx};
use crate::model::{Lease, MailKind};
use crate::store::lease_columns;
use crate::store::outbox::{Notice, OutboxRow, Rollup, json, outbox_columns};
use crate::store::{StoreError, from_ms, ms};

/// Queues a row (kind, recipient, dedupe key, payload, created at) unless its dedupe key is
/// taken: the one statement every producer of the outbox uses (as `outbox::INSERT_OUTBOX`).
pub(in crate::store) const INSERT_OUTBOX: &str =
    "INSERT INTO outbox (kind, recipient, dedupe_key, payload, created_at)
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (dedupe_key) DO NOTHING";

fn opt_time(v: Option<i64>) -> Result<Option<DateTime<Utc>>, StoreError> {
    Ok(v.map(from_ms).transpose()?)
}

fn count(v: i64, what: &str) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("bad outbox {what} {v}")))
}

fn outbox_row(r: &Row) -> Result<OutboxRow, StoreError> {
    let kind: String = r.try_get(1)?;
    let payload: String = r.try_get(4)?;
    Ok(OutboxRow {
        id: r.try_get(0)?,
        kind: kind
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("bad mail kind `{kind}`")))?,
        recipient: r.try_get(2)?,
        dedupe_key: r.try_get(3)?,
        payload: json(&payload),
        created_at: from_ms(r.try_get(5)?)?,
        sent_at: opt_time(r.try_get(6)?)?,
        attempts: count(r.try_get(7)?, "attempts")?,
        next_attempt_at: opt_time(r.try_get(8)?)?,
        last_error: r.try_get(9)?,
        rolled_into: r.try_get(10)?,
        refusals: count(r.try_get(11)?, "refusals")?,
        dead_at: opt_time(r.try_get(12)?)?,
    })
}

fn outbox_rows(rows: &[Row]) -> Result<Vec<OutboxRow>, StoreError> {
    rows.iter().map(outbox_row).collect()
}

/// Queues one row unless its dedupe key is taken, inside the caller's transaction; true when
/// this call queued it.
pub(in crate::store) async fn insert_outbox_tx(
    tx: &mut Tx<'_>,
    kind: &str,
    recipient: Option<&str>,
    dedupe_key: &str,
    payload: &serde_json::Value,
    at: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let n = tx
        .execute(
            INSERT_OUTBOX,
            &[
                &kind,
                &recipient,
                &dedupe_key,
                &payload.to_string(),
                &ms(at),
            ],
        )
        .await?;
    Ok(n == 1)
}

/// Queues one row unless its dedupe key is taken; returns the id of the row holding the key.
async fn queue(
    tx: &mut Tx<'_>,
    kind: &str,
    recipient: Option<&str>,
    dedupe_key: &str,
    payload: &serde_json::Value,
    at: DateTime<Utc>,
) -> Result<i64, StoreError> {
    insert_outbox_tx(tx, kind, recipient, dedupe_key, payload, at).await?;
    let row = tx
        .query_opt(
            "SELECT id FROM outbox WHERE dedupe_key = $1",
            &[&dedupe_key],
        )
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("outbox row `{dedupe_key}` vanished")))?;
    Ok(row.try_get(0)?)
}

async fn pending_notices(tx: &mut Tx<'_>, kind: &str) -> Result<Vec<Notice>, StoreError> {
    // As on SQLite: spend summed once per task; a finding id in the payload is a number (or
    // digits in a string, which SQLite's affinity also matches), anything else matches none.
    let rows = tx
        .query(
            "WITH task_spend AS (SELECT key, SUM(micro_usd)::BIGINT AS usd FROM spend
                                 WHERE dimension = 'task' GROUP BY key),
                  n AS (SELECT id, recipient, payload, payload::jsonb AS doc FROM outbox
                        WHERE kind = $1 AND sent_at IS NULL)
             SELECT n.id, n.recipient, n.payload, r.resource_type, r.account, r.region, l.task,
                    l.expires_at, ts.usd, r.creator
             FROM n
             LEFT JOIN findings f ON f.id = CASE WHEN n.doc ->> 'finding_id' ~ '^[0-9]{1,18}$'
                                                 THEN (n.doc ->> 'finding_id')::BIGINT END
             LEFT JOIN resources r ON r.arn = f.arn
             LEFT JOIN leases l ON l.id = n.doc ->> 'lease_id'
             LEFT JOIN task_spend ts ON ts.key = l.task
             ORDER BY n.id",
            &[&kind],
        )
        .await?;
    rows.iter()
        .map(|r| {
            let payload: String = r.try_get(2)?;
            Ok(Notice {
                id: r.try_get(0)?,
                recipient: r.try_get(1)?,
                payload: json(&payload),
                resource_type: r.try_get(3)?,
                account: r.try_get(4)?,
                region: r.try_get(5)?,
                lease_task: r.try_get(6)?,
                lease_expires_at: opt_time(r.try_get(7)?)?,
                spend_usd: r
                    .try_get::<_, Option<i64>>(8)?
                    .map(crate::model::format_usd),
                creator: r.try_get(9)?,
            })
        })
        .collect()
}

impl Pg {
    pub(in crate::store) async fn roll_up(
        &self,
        notice_kind: MailKind,
        at: DateTime<Utc>,
        build: impl FnOnce(Vec<Notice>) -> (Vec<Rollup>, Vec<i64>),
    ) -> Result<Vec<i64>, StoreError> {
        let mut c = self.conn().await?;
        let mut tx = c.begin().await?;
        // SQLite's single writer made the read of the notices and their settling one step; here
        // the kind's advisory lock does, so a second replica waits and then finds them settled.
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            &[&format!("outbox/roll-up/{notice_kind}")],
        )
        .await?;
        let notices = pending_notices(&mut tx, notice_kind.as_str()).await?;
        if notices.is_empty() {
            return Ok(Vec::new());
        }
        let (messages, nobody) = build(notices);
        let mut ids = Vec::with_capacity(messages.len());
        for m in messages {
            let id = queue(
                &mut tx,
                m.kind.as_str(),
                Some(&m.recipient),
                &m.dedupe_key,
                &m.payload,
                at,
            )
            .await?;
            tx.execute(
                "UPDATE outbox SET sent_at = $2, rolled_into = $3
                 WHERE id = ANY($1) AND sent_at IS NULL",
                &[&m.notices, &ms(at), &id],
            )
            .await?;
            ids.push(id);
        }
        tx.execute(
            "UPDATE outbox SET sent_at = $2,
                 last_error = 'nobody to tell: no owner and no on-call address'
             WHERE id = ANY($1) AND sent_at IS NULL",
            &[&nobody, &ms(at)],
        )
        .await?;
        tx.commit().await?;
        Ok(ids)
    }

    pub(in crate::store) async fn due_messages(
        &self,
        kinds: &'static [MailKind],
        now: Option<DateTime<Utc>>,
        limit: u32,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let kinds: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
        let mut c = self.conn().await?;
        let rows = c
            .query(
                concat!(
                    "SELECT ",
                    outbox_columns!(),
                    " FROM outbox
                     WHERE sent_at IS NULL AND dead_at IS NULL AND kind = ANY($1)
                       AND ($2::BIGINT IS NULL OR next_attempt_at IS NULL OR next_attempt_at <= $2)
                     ORDER BY id LIMIT $3"
                ),
                &[&kinds, &now.map(ms), &i64::from(limit)],
            )
            .await?;
        outbox_rows(&rows)
    }

    pub(in crate::store) async fn claim_message(
        &self,
        id: i64,
        lock: &'static str,
        fence: String,
        wall_now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut c = self.conn().await?;
        let mut tx = c.begin().await?;
        // The share lock holds off a takeover of the lock until this claim commits: the new
        // leader's election waits for it, or this claim sees the new holder.
        let holds = tx
            .query_opt(
                "SELECT 1 FROM locks WHERE name = $1 AND holder = $2 AND expires_at > $3
                 FOR SHARE",
                &[&lock, &fence, &ms(wall_now)],
            )
            .await?;
        if holds.is_none() {
            return Ok(false);
        }
        let n = tx
            .execute(
                "UPDATE outbox SET claimed_by = $2, claimed_until = $3
                 WHERE id = $1 AND sent_at IS NULL
                   AND (claimed_until IS NULL OR claimed_until <= $4 OR claimed_by = $2)",
                &[&id, &fence, &ms(until), &ms(wall_now)],
            )
            .await?;
        tx.commit().await?;
        Ok(n == 1)
    }

    pub(in crate::store) async fn mark_sent(
        &self,
        id: i64,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut c = self.conn().await?;
        let n = c
            .execute(
                "UPDATE outbox SET sent_at = $2, attempts = attempts + 1, last_error = NULL
                 WHERE id = $1 AND sent_at IS NULL",
                &[&id, &ms(at)],
            )
            .await?;
        Ok(n == 1)
    }

    pub(in crate::store) async fn mark_failed(
        &self,
        id: i64,
        retry_at: DateTime<Utc>,
        error: String,
        refused: bool,
        dead_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        c.execute(
            "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $2, last_error = $3,
                 claimed_by = NULL, claimed_until = NULL,
                               refusals = refusals + $4, dead_at = $5
             WHERE id = $1 AND sent_at IS NULL",
            &[
                &id,
                &ms(retry_at),
                &error,
                &i64::from(refused),
                &dead_at.map(ms),
            ],
        )
        .await?;
        Ok(())
    }

    pub(in crate::store) async fn dead_letters(&self) -> Result<Vec<OutboxRow>, StoreError> {
        let mut c = self.conn().await?;
        let rows = c
            .query(
                concat!(
                    "SELECT ",
                    outbox_columns!(),
                    " FROM outbox WHERE sent_at IS NULL AND dead_at IS NOT NULL ORDER BY id"
                ),
                &[],
            )
            .await?;
        outbox_rows(&rows)
    }

    pub(in crate::store) async fn dead_letter_count(&self) -> Result<u64, StoreError> {
        let mut c = self.conn().await?;
        let n: i64 = c
            .query_one(
                "SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL AND dead_at IS NOT NULL",
                &[],
            )
            .await?
            .try_get(0)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    pub(in crate::store) async fn retry_dead_letters(
        &self,
        ids: Option<Vec<i64>>,
    ) -> Result<u64, StoreError> {
        let mut c = self.conn().await?;
        c.execute(
            "UPDATE outbox SET dead_at = NULL, refusals = 0, next_attempt_at = NULL
             WHERE sent_at IS NULL AND dead_at IS NOT NULL
               AND ($1::BIGINT[] IS NULL OR id = ANY($1))",
            &[&ids],
        )
        .await
    }

    pub(in crate::store) async fn outbox_pending(&self) -> Result<u64, StoreError> {
        let mut c = self.conn().await?;
        let n: i64 = c
            .query_one(
                "SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL AND dead_at IS NULL",
                &[],
            )
            .await?
            .try_get(0)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    pub(in crate::store) async fn enqueue(
        &self,
        kind: MailKind,
        recipient: Option<&str>,
        dedupe_key: &str,
        payload: &serde_json::Value,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut c = self.conn().await?;
        let n = c
            .execute(
                INSERT_OUTBOX,
                &[
                    &kind.as_str(),
                    &recipient,
                    &dedupe_key,
                    &payload.to_string(),
                    &ms(at),
                ],
            )
            .await?;
        Ok(n == 1)
    }

    pub(in crate::store) async fn enqueue_batch(
        &self,
        kind: MailKind,
        rows: &[(Option<String>, String, serde_json::Value, DateTime<Utc>)],
    ) -> Result<u64, StoreError> {
        let mut c = self.conn().await?;
        let mut tx = c.begin().await?;
        let mut queued = 0;
        for (recipient, key, payload, at) in rows {
            queued += tx
                .execute(
                    INSERT_OUTBOX,
                    &[
                        &kind.as_str(),
                        recipient,
                        key,
                        &payload.to_string(),
                        &ms(*at),
                    ],
                )
                .await?;
        }
        tx.commit().await?;
        Ok(queued)
    }

    pub(in crate::store) async fn outbox_rows(&self) -> Result<Vec<OutboxRow>, StoreError> {
        let mut c = self.conn().await?;
        let rows = c
            .query(
                concat!("SELECT ", outbox_columns!(), " FROM outbox ORDER BY id"),
                &[],
            )
            .await?;
        outbox_rows(&rows)
    }

    pub(in crate::store) async fn leases_ending_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Lease>, StoreError> {
        let mut c = self.conn().await?;
        let rows = c
            .query(
                concat!(
                    "SELECT ",
                    lease_columns!(),
                    " FROM leases
                     WHERE teardown_complete_at IS NULL AND ends_at > $1 AND ends_at <= $2
                       AND released_at IS NULL
                     ORDER BY ends_at LIMIT $3"
                ),
                &[&ms(from), &ms(to), &i64::from(limit)],
            )
            .await?;
        rows.iter().map(lease_of).collect()
    }

    pub(in crate::store) async fn leases_expiring_within(
        &self,
        now: DateTime<Utc>,
        window: TimeDelta,
    ) -> Result<Vec<Lease>, StoreError> {
        let mut c = self.conn().await?;
        let rows = c
            .query(
                concat!(
                    "SELECT ",
                    lease_columns!(),
                    " FROM leases
                     WHERE released_at IS NULL AND ends_at > $1 AND expires_at <= $1::BIGINT + $2::BIGINT
                       AND created_at < expires_at - $2::BIGINT
                       AND NOT EXISTS (SELECT 1 FROM outbox
                                       WHERE dedupe_key = $3::TEXT || ':' || leases.id || ':'
                                                          || leases.expires_at::TEXT)
                     ORDER BY expires_at"
                ),
                &[
                    &ms(now),
                    &window.num_milliseconds(),
                    &MailKind::ExpiryWarning.as_str(),
                ],
            )
            .await?;
        rows.iter().map(lease_of).collect()
    }
}
