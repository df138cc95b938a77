//! The audit log's keyed hash chain on PostgreSQL: the same records and hashes as on SQLite
//! (the pure pieces live in `store::chain`).
//!
//! Architecture Invariant: every append takes the chain's advisory transaction lock before it
//! reads the head, in the transaction that inserts the record, so replicas appending at once
//! take turns and never write two records with one seq (or one `prev_hash`). Nothing here
//! updates or deletes a record.

use chrono::{DateTime, Utc};
use tokio_postgres::Row;

use super::{Pg, Tx};
use crate::audit::{AuditHead, AuditKey};
use crate::model::Decision;
use crate::resource::{AuditBreak, AuditEntry, AuditRecord};
use crate::store::chain::{
    AuditQuery, CHAIN_ARN, ChainNote, ChainWalk, audit_columns, checkpoint_entry,
    empty_but_decided, ends_keyed, keyed_hash, next_link,
};
use crate::store::next_cursor;
use crate::store::{StoreError, from_ms, ms};

/// The advisory lock every writer of the chain holds until its transaction ends (a lock on
/// `audit_head`'s row would not cover a chain without a head row yet).
const CHAIN_LOCK: &str = "SELECT pg_advisory_xact_lock(hashtextextended('audit-chain', 0))";

pub(super) fn audit_record(r: &Row) -> Result<AuditRecord, StoreError> {
    let word = |i: usize| -> Result<String, StoreError> { Ok(r.try_get(i)?) };
    let mode = word(4)?;
    let decision = word(8)?;
    Ok(AuditRecord {
        seq: r.try_get(0)?,
        entry: AuditEntry {
            at: from_ms(r.try_get(1)?)?,
            run_id: r.try_get(2)?,
            actor: r.try_get(3)?,
            mode: mode
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("bad audit mode `{mode}`")))?,
            arn: r.try_get(5)?,
            lease_id: r.try_get(6)?,
            verdict: r.try_get(7)?,
            decision: decision
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("bad audit decision `{decision}`")))?,
            detail: r.try_get(9)?,
        },
        prev_hash: r.try_get(10)?,
        hash: r.try_get(11)?,
    })
}

async fn head(tx: &mut Tx<'_>) -> Result<Option<(i64, String)>, StoreError> {
    let row = tx
        .query_opt("SELECT seq, hash FROM audit_head WHERE id = 1", &[])
        .await?;
    Ok(match row {
        Some(r) => Some((r.try_get(0)?, r.try_get(1)?)),
        None => None,
    })
}

/// Appends one keyed record to the chain inside the caller's transaction (which must commit
/// it), starting the keyed chain first if needed; returns the record's seq. The chain's lock
/// is held from here to the end of `tx`.
#[allow(dead_code, reason = "outside tests, only the PostgreSQL reap calls it")]
pub(in crate::store) async fn append_audit_tx(
    tx: &mut Tx<'_>,
    key: &AuditKey,
    e: &AuditEntry,
) -> Result<i64, StoreError> {
    start_keyed_tx(tx, key, e.at).await?;
    let seq = insert_record(tx, key, e).await?;
    if seq == 1 {
        keyed_from_here(tx, key, 1).await?;
    }
    Ok(seq)
}

/// Starts the keyed chain if it has not started (see `store::chain::start_keyed`), holding the
/// chain's lock, so two replicas starting at once write one checkpoint.
async fn start_keyed_tx(
    tx: &mut Tx<'_>,
    key: &AuditKey,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    tx.execute(CHAIN_LOCK, &[]).await?;
    let keyed_from = tx
        .query_opt("SELECT keyed_from FROM audit_chain WHERE id = 1", &[])
        .await?
        .map(|r| r.try_get::<_, Option<i64>>(0))
        .transpose()?;
    if let Some(Some(_)) = keyed_from {
        return Ok(());
    }
    let Some((last, last_hash)) = head(tx).await? else {
        return Ok(());
    };
    let last_record = tx
        .query_opt(
            concat!(
                "SELECT ",
                audit_columns!(),
                " FROM audit_log WHERE seq = $1"
            ),
            &[&last],
        )
        .await?
        .map(|r| audit_record(&r))
        .transpose()?;
    if ends_keyed(key, &last_hash, last_record.as_ref()) {
        return Ok(());
    }
    let seq = insert_record(tx, key, &checkpoint_entry(key, last, at)).await?;
    keyed_from_here(tx, key, seq).await
}

async fn keyed_from_here(tx: &mut Tx<'_>, key: &AuditKey, seq: i64) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO audit_chain (id, unkeyed_until, keyed_from, key_id) VALUES (1, $1::BIGINT - 1, $1, $2)
         ON CONFLICT (id) DO UPDATE SET keyed_from = excluded.keyed_from, key_id = excluded.key_id",
        &[&seq, &key.id().to_string()],
    )
    .await?;
    Ok(())
}

async fn insert_record(tx: &mut Tx<'_>, key: &AuditKey, e: &AuditEntry) -> Result<i64, StoreError> {
    let (seq, prev) = next_link(head(tx).await?);
    let hash = keyed_hash(key, seq, &prev, e);
    tx.execute(
        "INSERT INTO audit_log (seq, at, run_id, actor, mode, arn, lease_id, verdict, decision, detail, prev_hash, hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        &[
            &seq,
            &ms(e.at),
            &e.run_id,
            &e.actor,
            &e.mode.as_str(),
            &e.arn,
            &e.lease_id,
            &e.verdict,
            &e.decision.as_str(),
            &e.detail,
            &prev,
            &hash,
        ],
    )
    .await?;
    tx.execute(
        "INSERT INTO audit_head (id, seq, hash) VALUES (1, $1, $2)
         ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
        &[&seq, &hash],
    )
    .await?;
    Ok(seq)
}

impl Pg {
    pub(in crate::store) async fn start_keyed_audit_chain(
        &self,
        key: &AuditKey,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        let mut tx = c.begin().await?;
        start_keyed_tx(&mut tx, key, at).await?;
        tx.commit().await
    }

    pub(in crate::store) async fn audit_key_id(&self) -> Result<Option<String>, StoreError> {
        let mut c = self.conn().await?;
        let row = c
            .query_opt("SELECT key_id FROM audit_chain WHERE id = 1", &[])
            .await?;
        Ok(match row {
            Some(r) => r.try_get(0)?,
            None => None,
        })
    }

    pub(in crate::store) async fn audit_head(&self) -> Result<Option<AuditHead>, StoreError> {
        let mut c = self.conn().await?;
        let row = c
            .query_opt("SELECT seq, hash FROM audit_head WHERE id = 1", &[])
            .await?;
        Ok(match row {
            Some(r) => Some(AuditHead {
                seq: r.try_get(0)?,
                hash: r.try_get(1)?,
            }),
            None => None,
        })
    }

    pub(in crate::store) async fn audit_list(
        &self,
        q: AuditQuery,
    ) -> Result<(Vec<AuditRecord>, Option<i64>), StoreError> {
        let after = q.after.unwrap_or(0);
        let mut sql = format!("SELECT {} FROM audit_log WHERE seq > $1", audit_columns!());
        let mut args: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&after];
        for (col, v) in [
            ("arn", &q.arn),
            ("decision", &q.decision),
            ("run_id", &q.run_id),
        ] {
            if let Some(v) = v {
                args.push(v);
                sql.push_str(&format!(" AND {col} = ${}", args.len()));
            }
        }
        let limit = q.limit.clamp(1, 1000);
        sql.push_str(&format!(" ORDER BY seq LIMIT {}", limit + 1));
        let mut c = self.conn().await?;
        let mut rows = c
            .query_dynamic(&sql, &args)
            .await?
            .iter()
            .map(audit_record)
            .collect::<Result<Vec<_>, _>>()?;
        let next = next_cursor(&mut rows, limit, |r| r.seq);
        Ok((rows, next))
    }

    /// Walks the chain in one snapshot (REPEATABLE READ), a page of records at a time, so
    /// appends committed meanwhile neither show up half nor move the head under the walk.
    pub(in crate::store) async fn audit_verify(
        &self,
        key: &AuditKey,
        published: Option<&AuditHead>,
    ) -> Result<Result<u64, AuditBreak>, StoreError> {
        const PAGE: i64 = 5000;
        let mut c = self.conn().await?;
        let mut tx = c.begin().await?;
        tx.execute(
            "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY",
            &[],
        )
        .await?;
        let checkpoint: Option<i64> = tx
            .query_one(
                "SELECT min(seq) FROM audit_log WHERE arn = $1 AND decision = $2",
                &[&CHAIN_ARN, &Decision::ChainKeyed.as_str()],
            )
            .await?
            .try_get(0)?;
        let chain: Option<ChainNote> = match tx
            .query_opt(
                "SELECT unkeyed_until, keyed_from, key_id FROM audit_chain WHERE id = 1",
                &[],
            )
            .await?
        {
            Some(r) => Some((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)),
            None => None,
        };
        let mut walk = ChainWalk::new(key, published, checkpoint, chain);
        let mut after = 0i64;
        loop {
            let rows = tx
                .query(
                    concat!(
                        "SELECT ",
                        audit_columns!(),
                        " FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2"
                    ),
                    &[&after, &PAGE],
                )
                .await?;
            for r in &rows {
                let rec = audit_record(r)?;
                after = rec.seq;
                if let Err(b) = walk.step(rec) {
                    return Ok(Err(b));
                }
            }
            if (rows.len() as i64) < PAGE {
                break;
            }
        }
        let n = match walk.end(head(&mut tx).await?) {
            Ok(n) => n,
            Err(b) => return Ok(Err(b)),
        };
        if n == 0 {
            let decided: i64 = tx
                .query_one(
                    "SELECT count(*) FROM findings WHERE last_decision IS NOT NULL",
                    &[],
                )
                .await?
                .try_get(0)?;
            if let Err(b) = empty_but_decided(decided) {
                return Ok(Err(b));
            }
        }
        Ok(Ok(n))
    }

    /// Appends one record in a transaction of its own (the tests' way to fill the chain
    /// before `record_reap` runs on PostgreSQL).
    #[cfg(test)]
    pub(in crate::store) async fn append_audit(
        &self,
        key: &AuditKey,
        e: &AuditEntry,
    ) -> Result<i64, StoreError> {
        let mut c = self.conn().await?;
        let mut tx = c.begin().await?;
        let seq = append_audit_tx(&mut tx, key, e).await?;
        tx.commit().await?;
        Ok(seq)
    }

    /// Runs SQL text as it is (the tests' tampering with the tables).
    #[cfg(test)]
    pub(in crate::store) async fn batch_execute_for_test(
        &self,
        sql: &str,
    ) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        Ok(c.conn_mut().client.batch_execute(sql).await?)
    }
}
