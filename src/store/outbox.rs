//! Store calls of the mailer: notices rolled up into messages, due messages, and the marks a
//! delivery leaves (sent, or failed with the time of the next attempt).
//!
//! The outbox holds two sorts of rows. **Notices** (`deletion-planned`, `reaped`) are queued by
//! the reaper, one per resource; they are never sent themselves but rolled up, per recipient,
//! into one **message**. Messages (`expiry-warning`, `owner-digest`, `oncall-summary`,
//! `reaped-notice`) are what the deliverer sends. Which kinds are which is the mailer's
//! business: the calls here take the kinds as arguments.

use chrono::{DateTime, TimeDelta, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::{LEASE_COLUMNS, RawLease, Store, StoreError, from_ms, ms};
use crate::model::{Lease, MailKind};

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or(serde_json::Value::Null)
}

/// One row of the outbox, as the deliverer and the tests see it.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    pub id: i64,
    pub kind: MailKind,
    pub recipient: Option<String>,
    pub dedupe_key: String,
    pub payload: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub attempts: u32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    /// For a notice: the message that carries it.
    pub rolled_into: Option<i64>,
    /// Failed attempts the relay answered (refused), as opposed to outages.
    pub refusals: u32,
    /// When it became a dead letter: not sent, not retried until `mail retry`.
    pub dead_at: Option<DateTime<Utc>>,
}

const ROW_COLUMNS: &str = "id, kind, recipient, dedupe_key, payload, created_at, sent_at, attempts,
     next_attempt_at, last_error, rolled_into, refusals, dead_at";

fn outbox_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<OutboxRow> {
    let payload: String = r.get(4)?;
    Ok(OutboxRow {
        id: r.get(0)?,
        kind: r.get(1)?,
        recipient: r.get(2)?,
        dedupe_key: r.get(3)?,
        payload: json(&payload),
        created_at: from_ms(r.get(5)?)?,
        sent_at: r.get::<_, Option<i64>>(6)?.map(from_ms).transpose()?,
        attempts: r.get(7)?,
        next_attempt_at: r.get::<_, Option<i64>>(8)?.map(from_ms).transpose()?,
        last_error: r.get(9)?,
        rolled_into: r.get(10)?,
        refusals: r.get(11)?,
        dead_at: r.get::<_, Option<i64>>(12)?.map(from_ms).transpose()?,
    })
}

/// A pending notice with what the store knows around it (the finding's resource, its lease).
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub id: i64,
    pub recipient: Option<String>,
    pub payload: serde_json::Value,
    pub resource_type: Option<String>,
    pub account: Option<String>,
    pub region: Option<String>,
    pub lease_task: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// Spend of the resource's lease so far, in USD as a decimal string (money is never a
    /// float): what Cost Explorer attributed to its task; `None` when no spend is stored for it.
    pub spend_usd: Option<String>,
    /// Who made the resource, from CloudTrail, where known.
    pub creator: Option<String>,
}

/// One message made from notices.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollup {
    pub recipient: String,
    pub dedupe_key: String,
    pub payload: serde_json::Value,
    /// The notices it carries.
    pub notices: Vec<i64>,
}

impl Store {
    /// Rolls up every pending notice of `notice_kind` in one transaction: `build` (pure) turns
    /// them into messages of `message_kind` and names the notices nobody can be told about;
    /// the messages are queued, and each notice is settled (`sent_at = at`) with the message
    /// that carries it, or closed with `last_error`. Returns the ids of the queued messages.
    pub async fn roll_up(
        &self,
        notice_kind: MailKind,
        message_kind: MailKind,
        at: DateTime<Utc>,
        build: impl FnOnce(Vec<Notice>) -> (Vec<Rollup>, Vec<i64>) + Send + 'static,
    ) -> Result<Vec<i64>, StoreError> {
        self.writer()?
            .write(move |c| {
                let notices = pending_notices(c, notice_kind.as_str())?;
                if notices.is_empty() {
                    return Ok(Vec::new());
                }
                let (messages, nobody) = build(notices);
                let mut ids = Vec::with_capacity(messages.len());
                for m in messages {
                    let id = queue(c, message_kind.as_str(), Some(&m.recipient), &m.dedupe_key, &m.payload, at)?;
                    for n in &m.notices {
                        c.prepare_cached(
                            "UPDATE outbox SET sent_at = ?2, rolled_into = ?3
                             WHERE id = ?1 AND sent_at IS NULL",
                        )?
                        .execute(params![n, ms(at), id])?;
                    }
                    ids.push(id);
                }
                for n in nobody {
                    c.prepare_cached(
                        "UPDATE outbox SET sent_at = ?2, last_error = 'nobody to tell: no owner and no on-call address'
                         WHERE id = ?1 AND sent_at IS NULL",
                    )?
                    .execute(params![n, ms(at)])?;
                }
                Ok(ids)
            })
            .await
    }

    /// Unsent messages of `kinds` that are due at `now` (every unsent one when `now` is
    /// `None`), oldest first, at most `limit`.
    pub async fn due_messages(
        &self,
        kinds: &'static [MailKind],
        now: Option<DateTime<Utc>>,
        limit: u32,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        self.read(move |c| {
            let kinds =
                serde_json::to_string(&kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>())
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {ROW_COLUMNS} FROM outbox
                 WHERE sent_at IS NULL AND dead_at IS NULL AND kind IN (SELECT value FROM json_each(?1))
                   AND (?2 IS NULL OR next_attempt_at IS NULL OR next_attempt_at <= ?2)
                 ORDER BY id LIMIT ?3"
            ))?;
            let rows = stmt
                .query_map(params![kinds, now.map(ms), limit], outbox_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// Records that the SMTP server accepted message `id`. False when it was already marked.
    pub async fn mark_sent(&self, id: i64, at: DateTime<Utc>) -> Result<bool, StoreError> {
        self.writer()?
            .write(move |c| {
                let n = c
                    .prepare_cached(
                        "UPDATE outbox SET sent_at = ?2, attempts = attempts + 1, last_error = NULL
                         WHERE id = ?1 AND sent_at IS NULL",
                    )?
                    .execute(params![id, ms(at)])?;
                Ok(n == 1)
            })
            .await
    }

    /// Records a failed attempt at message `id`: the next one is not before `retry_at`.
    pub async fn mark_failed(
        &self,
        id: i64,
        retry_at: DateTime<Utc>,
        error: String,
        refused: bool,
        dead_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        self.writer()?
            .write(move |c| {
                c.prepare_cached(
                    "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?2, last_error = ?3,
                                       refusals = refusals + ?4, dead_at = ?5
                     WHERE id = ?1 AND sent_at IS NULL",
                )?
                .execute(params![id, ms(retry_at), error, i64::from(refused), dead_at.map(ms)])?;
                Ok(())
            })
            .await
    }

    /// The dead letters, oldest first.
    pub async fn dead_letters(&self) -> Result<Vec<OutboxRow>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {ROW_COLUMNS} FROM outbox WHERE sent_at IS NULL AND dead_at IS NOT NULL ORDER BY id"
            ))?;
            let rows = stmt
                .query_map([], outbox_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// How many dead letters there are.
    pub async fn dead_letter_count(&self) -> Result<u64, StoreError> {
        self.read(|c| {
            let n: i64 = c
                .prepare_cached(
                    "SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL AND dead_at IS NOT NULL",
                )?
                .query_row([], |r| r.get(0))?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }

    /// Queues dead letters again (`ids`, or every one with `None`): sent on the next round,
    /// with their refusals forgotten. Returns how many.
    pub async fn retry_dead_letters(&self, ids: Option<Vec<i64>>) -> Result<u64, StoreError> {
        let ids = ids.map(|i| serde_json::to_string(&i).unwrap_or_else(|_| "[]".into()));
        self.writer()?
            .write(move |c| {
                let n = c
                    .prepare_cached(
                        "UPDATE outbox SET dead_at = NULL, refusals = 0, next_attempt_at = NULL
                         WHERE sent_at IS NULL AND dead_at IS NOT NULL
                           AND (?1 IS NULL OR id IN (SELECT value FROM json_each(?1)))",
                    )?
                    .execute(params![ids])?;
                Ok(n as u64)
            })
            .await
    }

    /// Rows not yet done with: messages not accepted by the SMTP server, notices not rolled up.
    pub async fn outbox_pending(&self) -> Result<u64, StoreError> {
        self.read(|c| {
            let n: i64 = c
                .prepare_cached(
                    "SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL AND dead_at IS NULL",
                )?
                .query_row([], |r| r.get(0))?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }

    /// Queues a notification unless one with the same `dedupe_key` was queued before; true
    /// when this call queued it.
    pub async fn enqueue(
        &self,
        kind: MailKind,
        recipient: Option<String>,
        dedupe_key: String,
        payload: serde_json::Value,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.writer()?
            .write(move |c| {
                insert(
                    c,
                    kind.as_str(),
                    recipient.as_deref(),
                    &dedupe_key,
                    &payload,
                    at,
                )
            })
            .await
    }

    /// Every outbox row, oldest first (for inspection and tests).
    pub async fn outbox_rows(&self) -> Result<Vec<OutboxRow>, StoreError> {
        self.read(|c| {
            let mut stmt =
                c.prepare_cached(&format!("SELECT {ROW_COLUMNS} FROM outbox ORDER BY id"))?;
            let rows = stmt
                .query_map([], outbox_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// Leases to warn at `now`: not released, not ended, expiring within `window`,
    /// longer-lived than the window (a lease taken for less than the window never warns), and
    /// not warned yet for this expiry (the mailer asks on every round).
    pub async fn leases_expiring_within(
        &self,
        now: DateTime<Utc>,
        window: TimeDelta,
    ) -> Result<Vec<Lease>, StoreError> {
        self.read(move |c| {
            let w = window.num_milliseconds();
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {LEASE_COLUMNS} FROM leases
                 WHERE released_at IS NULL AND ends_at > ?1 AND expires_at <= ?1 + ?2
                   AND created_at < expires_at - ?2
                   AND NOT EXISTS (SELECT 1 FROM outbox
                                   WHERE dedupe_key = ?3 || ':' || leases.id || ':' || leases.expires_at)
                 ORDER BY expires_at"
            ))?;
            let raws = stmt
                .query_map(params![ms(now), w, MailKind::ExpiryWarning.as_str()], RawLease::from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            raws.into_iter().map(RawLease::into_lease).collect()
        })
        .await
    }
}

/// The dedupe key of the warning before `lease` expires at `expires_at`; a renewal that moves
/// the expiry makes a new one. `leases_expiring_within` spells the same key in SQL.
pub fn expiry_warning_key(lease: &str, expires_at: DateTime<Utc>) -> String {
    format!("{}:{lease}:{}", MailKind::ExpiryWarning, ms(expires_at))
}

/// Queues a row (kind, recipient, dedupe key, payload, created at) unless its dedupe key is
/// taken: the one statement every producer of the outbox uses.
pub(super) const INSERT_OUTBOX: &str =
    "INSERT INTO outbox (kind, recipient, dedupe_key, payload, created_at)
     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (dedupe_key) DO NOTHING";

/// Queues one row unless its dedupe key is taken; true when this call queued it.
fn insert(
    c: &Connection,
    kind: &str,
    recipient: Option<&str>,
    dedupe_key: &str,
    payload: &serde_json::Value,
    at: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let n = c.prepare_cached(INSERT_OUTBOX)?.execute(params![
        kind,
        recipient,
        dedupe_key,
        payload.to_string(),
        ms(at)
    ])?;
    Ok(n == 1)
}

/// Queues one row unless its dedupe key is taken; returns the id of the row holding the key.
fn queue(
    c: &Connection,
    kind: &str,
    recipient: Option<&str>,
    dedupe_key: &str,
    payload: &serde_json::Value,
    at: DateTime<Utc>,
) -> Result<i64, StoreError> {
    insert(c, kind, recipient, dedupe_key, payload, at)?;
    let id = c
        .prepare_cached("SELECT id FROM outbox WHERE dedupe_key = ?1")?
        .query_row([dedupe_key], |r| r.get(0))
        .optional()?
        .ok_or_else(|| StoreError::Corrupt(format!("outbox row `{dedupe_key}` vanished")))?;
    Ok(id)
}

fn pending_notices(c: &Connection, kind: &str) -> Result<Vec<Notice>, StoreError> {
    // Spend so far: what Cost Explorer attributed to the lease's task tag, every stored day
    // (NULL when nothing is stored for it); summed once per task, not once per notice (the
    // spend key leads with the day, so a per-notice sum scanned every task's days).
    let mut stmt = c.prepare_cached(
        "WITH task_spend AS (SELECT key, SUM(micro_usd) AS usd FROM spend
                             WHERE dimension = 'task' GROUP BY key)
         SELECT o.id, o.recipient, o.payload, r.resource_type, r.account, r.region, l.task,
                l.expires_at, ts.usd, r.creator
         FROM outbox o
         LEFT JOIN findings f ON f.id = json_extract(o.payload, '$.finding_id')
         LEFT JOIN resources r ON r.arn = f.arn
         LEFT JOIN leases l ON l.id = json_extract(o.payload, '$.lease_id')
         LEFT JOIN task_spend ts ON ts.key = l.task
         WHERE o.kind = ?1 AND o.sent_at IS NULL
         ORDER BY o.id",
    )?;
    let rows = stmt
        .query_map([kind], |r| {
            let payload: String = r.get(2)?;
            Ok(Notice {
                id: r.get(0)?,
                recipient: r.get(1)?,
                payload: json(&payload),
                resource_type: r.get(3)?,
                account: r.get(4)?,
                region: r.get(5)?,
                lease_task: r.get(6)?,
                lease_expires_at: r.get::<_, Option<i64>>(7)?.map(from_ms).transpose()?,
                spend_usd: r.get::<_, Option<i64>>(8)?.map(crate::model::format_usd),
                creator: r.get(9)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}
