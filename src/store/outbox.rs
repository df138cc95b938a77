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

pub(super) fn json(text: &str) -> serde_json::Value {
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

/// The columns [`outbox_row`] reads, as a literal (for `concat!` into static SQL).
macro_rules! outbox_columns {
    () => {
        "id, kind, recipient, dedupe_key, payload, created_at, sent_at, attempts,
     next_attempt_at, last_error, rolled_into, refusals, dead_at"
    };
}
pub(super) use outbox_columns;

const ROW_COLUMNS: &str = outbox_columns!();

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
    /// A mail message kind, or `slack`.
    pub kind: MailKind,
    pub recipient: String,
    pub dedupe_key: String,
    pub payload: serde_json::Value,
    /// The notices it carries.
    pub notices: Vec<i64>,
}

impl Store {
    /// Rolls up every pending notice of `notice_kind` in one transaction: `build` (pure) turns
    /// them into messages (each of its own kind) and names the notices nobody can be told about;
    /// the messages are queued, and each notice is settled (`sent_at = at`) with the message
    /// that carries it, or closed with `last_error`. Returns the ids of the queued messages.
    pub async fn roll_up(
        &self,
        notice_kind: MailKind,
        at: DateTime<Utc>,
        build: impl FnOnce(Vec<Notice>) -> (Vec<Rollup>, Vec<i64>) + Send + 'static,
    ) -> Result<Vec<i64>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.roll_up(notice_kind, at, build).await;
        }
        self.writer()?
            .write(move |c| {
                let notices = pending_notices(c, notice_kind.as_str())?;
                if notices.is_empty() {
                    return Ok(Vec::new());
                }
                let (messages, nobody) = build(notices);
                let mut ids = Vec::with_capacity(messages.len());
                for m in messages {
                    let id = queue(c, m.kind.as_str(), Some(&m.recipient), &m.dedupe_key, &m.payload, at)?;
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
        if let Some(pg) = self.pg() {
            return pg.due_messages(kinds, now, limit).await;
        }
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

    /// Claims unsent message `id` for sending until `until` (wall clock) for the holder of
    /// store lock `lock` whose token is `fence`: true when the lock is still theirs at
    /// `wall_now` and nobody else's claim on the message runs. A replica that lost leadership
    /// (paused, partitioned) claims nothing, so it sends nothing; the new leader skips a
    /// message the old one claimed until that claim runs out. A failed attempt
    /// ([`Store::mark_failed`]) lets go of its claim; a sent message needs none.
    pub async fn claim_message(
        &self,
        id: i64,
        lock: &'static str,
        fence: String,
        wall_now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.claim_message(id, lock, fence, wall_now, until).await;
        }
        self.writer()?
            .write(move |c| {
                let holds: Option<i64> = c
                    .prepare_cached(
                        "SELECT 1 FROM locks WHERE name = ?1 AND holder = ?2 AND expires_at > ?3",
                    )?
                    .query_row(params![lock, fence, ms(wall_now)], |r| r.get(0))
                    .optional()?;
                if holds.is_none() {
                    return Ok(false);
                }
                let n = c
                    .prepare_cached(
                        "UPDATE outbox SET claimed_by = ?2, claimed_until = ?3
                         WHERE id = ?1 AND sent_at IS NULL
                           AND (claimed_until IS NULL OR claimed_until <= ?4 OR claimed_by = ?2)",
                    )?
                    .execute(params![id, fence, ms(until), ms(wall_now)])?;
                Ok(n == 1)
            })
            .await
    }

    /// Records that the SMTP server accepted message `id`. False when it was already marked.
    pub async fn mark_sent(&self, id: i64, at: DateTime<Utc>) -> Result<bool, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.mark_sent(id, at).await;
        }
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
        if let Some(pg) = self.pg() {
            return pg.mark_failed(id, retry_at, error, refused, dead_at).await;
        }
        self.writer()?
            .write(move |c| {
                c.prepare_cached(
                    "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?2, last_error = ?3,
                         claimed_by = NULL, claimed_until = NULL,
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
        if let Some(pg) = self.pg() {
            return pg.dead_letters().await;
        }
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
        if let Some(pg) = self.pg() {
            return pg.dead_letter_count().await;
        }
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
        if let Some(pg) = self.pg() {
            return pg.retry_dead_letters(ids).await;
        }
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
        if let Some(pg) = self.pg() {
            return pg.outbox_pending().await;
        }
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
        if let Some(pg) = self.pg() {
            return pg
                .enqueue(kind, recipient.as_deref(), &dedupe_key, &payload, at)
                .await;
        }
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

    /// Queues `rows` (recipient, dedupe key, payload, time) of `kind` in one transaction,
    /// each unless its dedupe key was queued before; returns how many this call queued.
    pub async fn enqueue_batch(
        &self,
        kind: MailKind,
        rows: Vec<(Option<String>, String, serde_json::Value, DateTime<Utc>)>,
    ) -> Result<u64, StoreError> {
        if rows.is_empty() {
            return Ok(0);
        }
        if let Some(pg) = self.pg() {
            return pg.enqueue_batch(kind, &rows).await;
        }
        self.writer()?
            .write(move |c| {
                let mut queued = 0;
                for (recipient, key, payload, at) in &rows {
                    queued += u64::from(insert(
                        c,
                        kind.as_str(),
                        recipient.as_deref(),
                        key,
                        payload,
                        *at,
                    )?);
                }
                Ok(queued)
            })
            .await
    }

    /// Every outbox row, oldest first (for inspection and tests).
    pub async fn outbox_rows(&self) -> Result<Vec<OutboxRow>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.outbox_rows().await;
        }
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

    /// Leases not released whose end falls after `from` and by `to`, earliest first, at most
    /// `limit` (through the index of leases not yet torn down, which a lease near its end is
    /// not).
    pub async fn leases_ending_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Lease>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.leases_ending_between(from, to, limit).await;
        }
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {LEASE_COLUMNS} FROM leases
                 WHERE teardown_complete_at IS NULL AND ends_at > ?1 AND ends_at <= ?2
                   AND released_at IS NULL
                 ORDER BY ends_at LIMIT ?3"
            ))?;
            let raws = stmt
                .query_map(params![ms(from), ms(to), limit], RawLease::from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            raws.into_iter().map(RawLease::into_lease).collect()
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
        if let Some(pg) = self.pg() {
            return pg.leases_expiring_within(now, window).await;
        }
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

#[cfg(test)]
mod tests {
    use crate::store::Quota;
    use chrono::TimeZone;

    use super::*;
    use crate::model::{DaySpend, LeaseId, ProjectName};

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0)
            .single()
            .expect("time")
    }

    fn lease(task: &str, created: DateTime<Utc>, expires: DateTime<Utc>) -> Lease {
        Lease {
            id: LeaseId::generate(),
            project: ProjectName::parse("web").expect("name"),
            task: task.into(),
            owner: "o@example.com".into(),
            principal: "ci".into(),
            created_at: created,
            expires_at: expires,
            heartbeat_interval: None,
            last_heartbeat_at: None,
            released_at: None,
            labels: Default::default(),
            regions: vec![],
        }
    }

    async fn insert(store: &Store, l: &Lease) {
        store
            .insert_lease(l.clone(), l.created_at, Quota::<StoreError>::unlimited())
            .await
            .expect("inserts");
    }

    /// `leases_ending_between`: unreleased leases whose end falls after `from` and by `to`,
    /// earliest first, at most `limit`; a released lease never, whatever its end.
    #[tokio::test]
    async fn leases_ending_between_bounds_and_order() {
        let dir = tempfile::tempdir().expect("temp dir");
        let m = TimeDelta::minutes;
        for (engine, store) in Store::open_both_for_test(dir.path()).await {
            let t = t0();
            let at = |min: i64| lease(&format!("ends {min}"), t - m(600), t + m(min));
            let (before, first, second, last, after) = (at(-60), at(-59), at(10), at(30), at(31));
            let mut released = at(5);
            released.released_at = Some(t - m(1));
            for l in [&after, &last, &second, &first, &before, &released] {
                insert(&store, l).await;
            }
            let tasks = |ls: Vec<Lease>| ls.into_iter().map(|l| l.task).collect::<Vec<_>>();
            let got = store
                .leases_ending_between(t - m(60), t + m(30), 10)
                .await
                .expect("reads");
            assert_eq!(
                tasks(got),
                ["ends -59", "ends 10", "ends 30"],
                "{engine}: (from, to], earliest first, released left out"
            );
            let got = store
                .leases_ending_between(t - m(60), t + m(30), 2)
                .await
                .expect("reads");
            assert_eq!(tasks(got), ["ends -59", "ends 10"], "{engine}: the limit");
        }
    }

    /// Notices roll up into one message per recipient with what the store knows around them
    /// (the lease's task, its spend so far); the ones nobody can be told about are closed.
    /// A message is claimed only under the live leader lock: the leader claims it, nobody
    /// else can while the claim runs, and once another replica took the lock over the old
    /// leader claims nothing (so it sends nothing), while the new one may claim after the
    /// old claim ran out.
    #[tokio::test]
    async fn messages_are_claimed_under_the_leader_lock() {
        let dir = tempfile::tempdir().expect("temp dir");
        for (engine, store) in Store::open_both_for_test(dir.path()).await {
            eprintln!("{engine}");
            claims_on(store).await;
        }
    }

    async fn claims_on(store: Store) {
        use crate::store::LockHolder;
        const LEADER: &str = "leader";
        let at = t0();
        let ttl = TimeDelta::seconds(15);
        let claim = TimeDelta::seconds(60);
        assert!(
            store
                .enqueue(
                    MailKind::OwnerDigest,
                    Some("oncall@example.com".into()),
                    "m1".into(),
                    serde_json::json!({}),
                    at
                )
                .await
                .expect("queued")
        );
        let id = store
            .due_messages(&MailKind::MESSAGES, None, 10)
            .await
            .expect("due")[0]
            .id;
        let (old, new) = (LockHolder::here("leader"), LockHolder::here("leader"));
        store
            .try_lock(LEADER, old.clone(), at, ttl)
            .await
            .expect("store")
            .expect("free");
        let claim_as = |h: &LockHolder, now: DateTime<Utc>| {
            store.claim_message(id, LEADER, h.id.clone(), now, now + claim)
        };
        assert!(
            claim_as(&old, at).await.expect("store"),
            "the leader claims"
        );
        assert!(
            claim_as(&old, at).await.expect("store"),
            "again: its own claim"
        );
        assert!(
            !claim_as(&new, at).await.expect("store"),
            "not the lock's holder"
        );
        // The old leader stalls past its lease; the new one takes over the lock.
        let later = at + ttl + TimeDelta::seconds(1);
        store
            .try_lock(LEADER, new.clone(), later, ttl)
            .await
            .expect("store")
            .expect("lapsed");
        assert!(
            !claim_as(&old, later).await.expect("store"),
            "a replica that lost leadership claims nothing"
        );
        assert!(
            !claim_as(&new, later).await.expect("store"),
            "the old claim still runs"
        );
        let after = at + claim + TimeDelta::seconds(1);
        store
            .renew_lock(LEADER, new.id.clone(), after, ttl)
            .await
            .expect("store");
        assert!(claim_as(&new, after).await.expect("store"));
        store.mark_sent(id, after).await.expect("sent");
        assert!(
            !claim_as(&new, after).await.expect("store"),
            "a sent message is claimed no more"
        );
    }

    #[tokio::test]
    async fn notices_roll_up_into_messages() {
        let dir = tempfile::tempdir().expect("temp dir");
        for (engine, store) in Store::open_both_for_test(dir.path()).await {
            println!("{engine}");
            notices_roll_up_on(store).await;
        }
    }

    async fn notices_roll_up_on(store: Store) {
        let at = t0();
        let l = lease(
            "nightly",
            at - TimeDelta::hours(2),
            at + TimeDelta::hours(2),
        );
        insert(&store, &l).await;
        let day = at.date_naive();
        let spend = |key: &str, micro_usd| DaySpend {
            day,
            key: key.into(),
            region: "us-east-1".into(),
            micro_usd,
        };
        store
            .save_spend(
                "task",
                vec![(day, true)],
                vec![spend("nightly", 1_500_000), spend("nightly", 250_000)],
                day,
                at,
            )
            .await
            .expect("saves");
        store
            .execute_batch_for_test(
                "INSERT INTO resources (arn, account, region, resource_type, tags, first_seen,
                                        last_seen, verdict, reason, action, grace_s, last_run,
                                        creator)
                 VALUES ('arn:aws:ec2:us-east-1:123456789012:volume/vol-1', '123456789012',
                         'us-east-1', 'ec2:volume', '', 0, 0, 'expired', 'x', 'reap', 0, 'run-1',
                         'alice');
                 INSERT INTO findings (id, arn, verdict, action, reason, account, region,
                                       resource_type, opened_at, updated_at)
                     VALUES (7, 'arn:aws:ec2:us-east-1:123456789012:volume/vol-1', 'expired',
                             'reap', 'x', '123456789012', 'us-east-1', 'ec2:volume', 0, 0);",
            )
            .await;
        for (i, who) in [
            (1, Some("a@example.com")),
            (2, Some("a@example.com")),
            (3, None),
        ] {
            assert!(
                store
                    .enqueue(
                        MailKind::DeletionPlanned,
                        who.map(str::to_owned),
                        format!("planned:{i}"),
                        serde_json::json!({"lease_id": l.id.to_string(), "finding_id": 7, "n": i}),
                        at,
                    )
                    .await
                    .expect("queues")
            );
        }
        assert!(
            !store
                .enqueue(
                    MailKind::DeletionPlanned,
                    None,
                    "planned:1".into(),
                    serde_json::json!({}),
                    at
                )
                .await
                .expect("reads"),
            "a dedupe key queues once"
        );

        let ids = store
            .roll_up(MailKind::DeletionPlanned, at, move |notices| {
                assert_eq!(notices.len(), 3);
                for n in &notices {
                    assert_eq!(n.lease_task.as_deref(), Some("nightly"));
                    assert_eq!(n.spend_usd.as_deref(), Some("1.750000"), "{n:?}");
                    assert_eq!(n.lease_expires_at, Some(at + TimeDelta::hours(2)));
                    assert_eq!(
                        (n.resource_type.as_deref(), n.region.as_deref()),
                        (Some("ec2:volume"), Some("us-east-1"))
                    );
                    assert_eq!(n.account.as_deref(), Some("123456789012"));
                    assert_eq!(n.creator.as_deref(), Some("alice"));
                }
                let (to, nobody): (Vec<_>, Vec<_>) =
                    notices.into_iter().partition(|n| n.recipient.is_some());
                let rollup = Rollup {
                    kind: MailKind::OwnerDigest,
                    recipient: "a@example.com".into(),
                    dedupe_key: "digest:a".into(),
                    payload: serde_json::json!({"count": to.len()}),
                    notices: to.iter().map(|n| n.id).collect(),
                };
                (vec![rollup], nobody.iter().map(|n| n.id).collect())
            })
            .await
            .expect("rolls up");
        assert_eq!(ids.len(), 1);
        let again = store
            .roll_up(MailKind::DeletionPlanned, at, |_| {
                panic!("nothing is pending")
            })
            .await
            .expect("rolls up");
        assert!(again.is_empty());

        let rows = store.outbox_rows().await.expect("reads");
        assert_eq!(rows.len(), 4);
        let rolled: Vec<_> = rows.iter().map(|r| r.rolled_into).collect();
        assert_eq!(rolled, [Some(ids[0]), Some(ids[0]), None, None]);
        assert!(rows[..3].iter().all(|r| r.sent_at == Some(at)));
        assert_eq!(
            rows[2].last_error.as_deref(),
            Some("nobody to tell: no owner and no on-call address")
        );
        assert_eq!(rows[3].kind, MailKind::OwnerDigest);
        assert_eq!(rows[3].payload, serde_json::json!({"count": 2}));
        assert_eq!(store.outbox_pending().await.expect("reads"), 1);
    }

    /// Two replicas rolling up at once take turns: the second finds the notices settled and
    /// queues nothing, even when it would name its message differently.
    #[tokio::test]
    async fn two_replicas_roll_up_a_notice_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        for (engine, a, b) in Store::open_twice_for_test(dir.path()).await {
            println!("{engine}");
            for i in 0..20 {
                a.enqueue(
                    MailKind::Reaped,
                    Some("a@example.com".into()),
                    format!("reaped:{i}"),
                    serde_json::json!({}),
                    t0(),
                )
                .await
                .expect("queues");
            }
            let roll = |store: Store, replica: &'static str| {
                tokio::spawn(async move {
                    store
                        .roll_up(MailKind::Reaped, t0(), move |n| {
                            let rollup = Rollup {
                                kind: MailKind::ReapedNotice,
                                recipient: "a@example.com".into(),
                                dedupe_key: format!("reaped-notice:{replica}"),
                                payload: serde_json::json!({}),
                                notices: n.iter().map(|n| n.id).collect(),
                            };
                            (vec![rollup], vec![])
                        })
                        .await
                        .expect("rolls up")
                })
            };
            let (x, y) = (roll(a.clone(), "a"), roll(b.clone(), "b"));
            let queued = x.await.expect("runs").len() + y.await.expect("runs").len();
            assert_eq!(queued, 1, "{engine}");
            let rows = a.outbox_rows().await.expect("reads");
            assert_eq!(rows.len(), 21, "{engine}");
            let message = rows[20].id;
            assert!(rows[..20].iter().all(|r| r.rolled_into == Some(message)));
        }
    }

    /// A message is due until sent; a failure puts it off until its retry time, a dead letter
    /// waits for `mail retry`.
    #[tokio::test]
    async fn deliveries_mark_messages() {
        let dir = tempfile::tempdir().expect("temp dir");
        for (engine, store) in Store::open_both_for_test(dir.path()).await {
            println!("{engine}");
            deliveries_mark_messages_on(store).await;
        }
    }

    async fn deliveries_mark_messages_on(store: Store) {
        let at = t0();
        const KINDS: &[MailKind] = &[MailKind::OncallSummary];
        for key in ["s1", "s2"] {
            store
                .enqueue(
                    MailKind::OncallSummary,
                    Some("oncall@example.com".into()),
                    key.into(),
                    serde_json::json!({"key": key}),
                    at,
                )
                .await
                .expect("queues");
        }
        let due = store
            .due_messages(KINDS, Some(at), 10)
            .await
            .expect("reads");
        let ids: Vec<i64> = due.iter().map(|r| r.id).collect();
        assert_eq!(ids.len(), 2);
        assert_eq!(
            store
                .due_messages(&[MailKind::OwnerDigest], None, 10)
                .await
                .expect("reads"),
            vec![]
        );
        assert_eq!(
            store
                .due_messages(KINDS, None, 1)
                .await
                .expect("reads")
                .len(),
            1
        );

        store
            .mark_failed(
                ids[0],
                at + TimeDelta::minutes(5),
                "busy".into(),
                true,
                None,
            )
            .await
            .expect("marks");
        let due_now = store
            .due_messages(KINDS, Some(at), 10)
            .await
            .expect("reads");
        assert_eq!(due_now.iter().map(|r| r.id).collect::<Vec<_>>(), [ids[1]]);
        let later = store
            .due_messages(KINDS, Some(at + TimeDelta::minutes(5)), 10)
            .await
            .expect("reads");
        assert_eq!(later.len(), 2);
        assert_eq!(later[0].attempts, 1);
        assert_eq!(later[0].refusals, 1);
        assert_eq!(later[0].last_error.as_deref(), Some("busy"));

        store
            .mark_failed(ids[0], at, "refused".into(), true, Some(at))
            .await
            .expect("marks");
        assert_eq!(store.dead_letter_count().await.expect("reads"), 1);
        let dead = store.dead_letters().await.expect("reads");
        assert_eq!(dead.len(), 1);
        assert_eq!((dead[0].id, dead[0].dead_at), (ids[0], Some(at)));
        assert_eq!(store.outbox_pending().await.expect("reads"), 1);
        assert_eq!(
            store
                .due_messages(KINDS, None, 10)
                .await
                .expect("reads")
                .len(),
            1
        );
        assert_eq!(
            store
                .retry_dead_letters(Some(vec![ids[1]]))
                .await
                .expect("retries"),
            0,
            "not a dead letter"
        );
        assert_eq!(store.retry_dead_letters(None).await.expect("retries"), 1);
        assert_eq!(store.dead_letter_count().await.expect("reads"), 0);
        assert_eq!(
            store
                .due_messages(KINDS, Some(at), 10)
                .await
                .expect("reads")
                .len(),
            2
        );

        assert!(store.mark_sent(ids[0], at).await.expect("marks"));
        assert!(!store.mark_sent(ids[0], at).await.expect("marks"), "once");
        let rows = store.outbox_rows().await.expect("reads");
        assert_eq!((rows[0].sent_at, rows[0].attempts), (Some(at), 3));
        assert_eq!(store.outbox_pending().await.expect("reads"), 1);
    }

    /// A lease expiring within the window is warned about once per expiry; one taken for less
    /// than the window never.
    #[tokio::test]
    async fn leases_expiring_within_the_window_are_warned_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        for (engine, store) in Store::open_both_for_test(dir.path()).await {
            println!("{engine}");
            leases_expiring_on(store).await;
        }
    }

    async fn leases_expiring_on(store: Store) {
        let now = t0();
        let hour = TimeDelta::hours(1);
        let soon = lease("soon", now - hour * 3, now + hour / 2);
        let short = lease("short", now - hour / 4, now + hour / 2);
        let far = lease("far", now - hour * 3, now + hour * 3);
        let ended = lease("ended", now - hour * 3, now - hour / 2);
        for l in [&soon, &short, &far, &ended] {
            insert(&store, l).await;
        }
        let due = store
            .leases_expiring_within(now, hour)
            .await
            .expect("reads");
        assert_eq!(due.iter().map(|l| l.id).collect::<Vec<_>>(), [soon.id]);
        store
            .enqueue(
                MailKind::ExpiryWarning,
                Some(soon.owner.clone()),
                expiry_warning_key(&soon.id.to_string(), soon.expires_at),
                serde_json::json!({}),
                now,
            )
            .await
            .expect("queues");
        assert_eq!(
            store
                .leases_expiring_within(now, hour)
                .await
                .expect("reads"),
            vec![]
        );
    }
}
