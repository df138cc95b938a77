//! The reaper's audit log: records chained with HMAC-SHA256 under a key from outside the
//! store (see [`crate::audit`]), listed and verified.
//!
//! The chain: record `n` carries `prev_hash` (record `n-1`'s hash, zeros for record 1) and
//! `hash` = HMAC(key, [n, prev_hash, fields…]). A store made before the chain was keyed keeps
//! its records 1..k as they were (plain SHA-256) and continues with a keyed `chain-keyed`
//! checkpoint at k+1, whose MAC covers record k's hash and so pins every record before it.
//!
//! Architecture Invariant: records are only ever appended (by [`append`], inside the
//! transaction that applies the decision to its finding); nothing here updates or deletes one.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};
use sha2::{Digest, Sha256};

use super::{Store, StoreError, from_ms, ms};
use crate::audit::{AuditHead, AuditKey};
use crate::model::{Decision, ReapMode};
use crate::resource::{AuditBreak, AuditEntry, AuditRecord};

/// Filters of `audit list`.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub arn: Option<String>,
    pub decision: Option<String>,
    pub run_id: Option<String>,
    /// Records after this seq (the cursor of the previous page).
    pub after: Option<i64>,
    pub limit: u32,
}

/// A record as hashed: its chain position, the previous hash and every field, as a JSON array
/// (unambiguous, whatever the fields hold).
fn canonical(seq: i64, prev_hash: &str, e: &AuditEntry) -> String {
    serde_json::json!([
        seq,
        prev_hash,
        ms(e.at),
        e.run_id,
        e.actor,
        e.mode,
        e.arn,
        e.lease_id,
        e.verdict,
        e.decision,
        e.detail,
    ])
    .to_string()
}

/// The hash of a record written before the chain was keyed: plain SHA-256, which anyone who
/// can write the file can recompute. Kept to verify those records, never to write new ones.
fn unkeyed_hash(seq: i64, prev_hash: &str, e: &AuditEntry) -> String {
    hex::encode(Sha256::digest(canonical(seq, prev_hash, e).as_bytes()))
}

/// The hash of a record in the keyed chain: HMAC-SHA256 under the audit key.
fn keyed_hash(key: &AuditKey, seq: i64, prev_hash: &str, e: &AuditEntry) -> String {
    key.mac_hex(canonical(seq, prev_hash, e).as_bytes())
}

/// The `arn` of the checkpoint record (found through the ARN index).
const CHAIN_ARN: &str = "ephemera:audit-chain";

/// The first record's `prev_hash`.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The chain's head row (seq, hash), if any record was ever appended.
fn head(c: &Connection) -> Result<Option<(i64, String)>, StoreError> {
    Ok(
        c.prepare_cached("SELECT seq, hash FROM audit_head WHERE id = 1")?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?,
    )
}

/// Starts the keyed chain if it has not started (inside the caller's transaction): a store
/// with records from before keying gets a keyed `chain-keyed` checkpoint after them. A store
/// without records needs none: its first append keys it from record 1.
fn start_keyed(c: &Connection, key: &AuditKey, at: DateTime<Utc>) -> Result<(), StoreError> {
    let keyed_from: Option<Option<i64>> = c
        .prepare_cached("SELECT keyed_from FROM audit_chain WHERE id = 1")?
        .query_row([], |r| r.get(0))
        .optional()?;
    if let Some(Some(_)) = keyed_from {
        return Ok(());
    }
    let Some((last, last_hash)) = head(c)? else {
        return Ok(());
    };
    // The note of the keyed start is gone but the chain already ends keyed (the row was
    // removed): a second checkpoint would only blur what `verify` reports.
    let last_record = c
        .prepare_cached(&format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq = ?1"
        ))?
        .query_row([last], audit_row)
        .optional()?;
    if last_record.is_some_and(|r| {
        r.hash == last_hash && keyed_hash(key, r.seq, &r.prev_hash, &r.entry) == r.hash
    }) {
        return Ok(());
    }
    let checkpoint = AuditEntry {
        at,
        run_id: None,
        actor: "ephemera".into(),
        mode: ReapMode::Checkpoint,
        arn: CHAIN_ARN.into(),
        lease_id: None,
        verdict: None,
        decision: Decision::ChainKeyed,
        detail: format!(
            "records 1 to {last} are chained with unkeyed SHA-256; from this one on, \
             with HMAC-SHA256 under audit key {}",
            key.id()
        ),
    };
    let seq = insert_record(c, key, &checkpoint)?;
    keyed_from_here(c, key, seq)
}

/// Notes where the keyed chain starts (evidence that a chain was started, and the key's id).
fn keyed_from_here(c: &Connection, key: &AuditKey, seq: i64) -> Result<(), StoreError> {
    c.prepare_cached(
        "INSERT INTO audit_chain (id, unkeyed_until, keyed_from, key_id) VALUES (1, ?1 - 1, ?1, ?2)
         ON CONFLICT (id) DO UPDATE SET keyed_from = excluded.keyed_from, key_id = excluded.key_id",
    )?
    .execute(params![seq, key.id()])?;
    Ok(())
}

/// Appends one keyed record to the chain (inside the caller's transaction), starting the keyed
/// chain first if needed.
pub(super) fn append(c: &Connection, key: &AuditKey, e: &AuditEntry) -> Result<i64, StoreError> {
    start_keyed(c, key, e.at)?;
    let seq = insert_record(c, key, e)?;
    if seq == 1 {
        keyed_from_here(c, key, 1)?;
    }
    Ok(seq)
}

fn insert_record(c: &Connection, key: &AuditKey, e: &AuditEntry) -> Result<i64, StoreError> {
    let (seq, prev) = head(c)?.map_or((1, GENESIS.to_owned()), |(s, h)| (s + 1, h));
    let hash = keyed_hash(key, seq, &prev, e);
    c.prepare_cached(
        "INSERT INTO audit_log (seq, at, run_id, actor, mode, arn, lease_id, verdict, decision, detail, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?
    .execute(params![
        seq, ms(e.at), e.run_id, e.actor, e.mode, e.arn, e.lease_id, e.verdict, e.decision, e.detail, prev, hash
    ])?;
    c.prepare_cached(
        "INSERT INTO audit_head (id, seq, hash) VALUES (1, ?1, ?2)
         ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
    )?
    .execute(params![seq, hash])?;
    Ok(seq)
}

fn audit_row(r: &Row<'_>) -> rusqlite::Result<AuditRecord> {
    Ok(AuditRecord {
        seq: r.get(0)?,
        entry: AuditEntry {
            at: from_ms(r.get(1)?)?,
            run_id: r.get(2)?,
            actor: r.get(3)?,
            mode: r.get(4)?,
            arn: r.get(5)?,
            lease_id: r.get(6)?,
            verdict: r.get(7)?,
            decision: r.get(8)?,
            detail: r.get(9)?,
        },
        prev_hash: r.get(10)?,
        hash: r.get(11)?,
    })
}

const AUDIT_COLUMNS: &str =
    "seq, at, run_id, actor, mode, arn, lease_id, verdict, decision, detail, prev_hash, hash";

impl Store {
    /// Audit records, oldest first, with the cursor of the next page.
    pub async fn audit_list(
        &self,
        q: AuditQuery,
    ) -> Result<(Vec<AuditRecord>, Option<i64>), StoreError> {
        self.read(move |c| {
            let mut sql = format!("SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq > ?1");
            let mut args: Vec<String> = Vec::new();
            for (col, v) in [
                ("arn", &q.arn),
                ("decision", &q.decision),
                ("run_id", &q.run_id),
            ] {
                if let Some(v) = v {
                    args.push(v.clone());
                    sql.push_str(&format!(" AND {col} = ?{}", args.len() + 1));
                }
            }
            let limit = q.limit.clamp(1, 1000);
            sql.push_str(&format!(" ORDER BY seq LIMIT {}", limit + 1));
            let mut stmt = c.prepare(&sql)?;
            let mut params: Vec<&dyn rusqlite::ToSql> = vec![];
            let after = q.after.unwrap_or(0);
            params.push(&after);
            for a in &args {
                params.push(a);
            }
            let mut rows = stmt
                .query_map(params.as_slice(), audit_row)?
                .collect::<Result<Vec<_>, _>>()?;
            let next = super::next_cursor(&mut rows, limit, |r| r.seq);
            Ok((rows, next))
        })
        .await
    }

    /// Starts the keyed chain now if it has not started: after the records of an older store,
    /// the keyed `chain-keyed` checkpoint. The daemon calls it at start-up.
    pub async fn start_keyed_audit_chain(&self, at: DateTime<Utc>) -> Result<(), StoreError> {
        let key = self.audit_key()?;
        self.writer()?
            .write(move |c| start_keyed(c, &key, at))
            .await
    }

    /// The public id of the key the chain is keyed with (as noted when it was keyed), `None`
    /// for a chain not keyed yet.
    pub async fn audit_key_id(&self) -> Result<Option<String>, StoreError> {
        self.read(|c| {
            Ok(
                c.query_row("SELECT key_id FROM audit_chain WHERE id = 1", [], |r| {
                    r.get(0)
                })
                .optional()?
                .flatten(),
            )
        })
        .await
    }

    /// The chain's head (the last record's seq and hash), to publish; `None` before the first
    /// record.
    pub async fn audit_head(&self) -> Result<Option<AuditHead>, StoreError> {
        self.read(|c| Ok(head(c)?.map(|(seq, hash)| AuditHead { seq, hash })))
            .await
    }

    /// Walks the whole chain: Ok(number of records) when every record's hash, link and place
    /// check out, the head matches the last one and, given a head `published` earlier, its
    /// record is there with that hash; else the first break. Records before a `chain-keyed`
    /// checkpoint are checked with plain SHA-256, every other one with the key. An empty log
    /// is broken when the store shows a chain was there (its head row, its keyed start, or
    /// findings that carry reaper decisions).
    pub async fn audit_verify(
        &self,
        published: Option<AuditHead>,
    ) -> Result<Result<u64, AuditBreak>, StoreError> {
        let key = self.audit_key()?;
        self.read(move |c| verify_chain(c, &key, published.as_ref()))
            .await
    }
}

fn verify_chain(
    c: &Connection,
    key: &AuditKey,
    published: Option<&AuditHead>,
) -> Result<Result<u64, AuditBreak>, StoreError> {
    let broken = |seq: i64, problem: String| Ok(Err(AuditBreak { seq, problem }));
    // Where the key starts: at the checkpoint if there is one (its own MAC is checked below,
    // so a forged one breaks there), else at record 1.
    let checkpoint: Option<i64> = c
        .query_row(
            "SELECT min(seq) FROM audit_log WHERE arn = ?1 AND decision = ?2",
            params![CHAIN_ARN, Decision::ChainKeyed],
            |r| r.get(0),
        )
        .optional()?
        .flatten();
    let chain: Option<(i64, Option<i64>, Option<String>)> = c
        .query_row(
            "SELECT unkeyed_until, keyed_from, key_id FROM audit_chain WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let mut stmt = c.prepare(&format!(
        "SELECT {AUDIT_COLUMNS} FROM audit_log ORDER BY seq"
    ))?;
    let mut rows = stmt.query([])?;
    let (mut expected, mut prev) = (1i64, GENESIS.to_owned());
    while let Some(row) = rows.next()? {
        let rec = audit_row(row)?;
        if rec.seq != expected {
            return broken(expected, "missing (removed)".into());
        }
        if rec.prev_hash != prev {
            return broken(
                rec.seq,
                "does not follow the record before it (inserted, or one before it removed)".into(),
            );
        }
        let unkeyed = checkpoint.is_some_and(|cp| rec.seq < cp);
        let want = if unkeyed {
            unkeyed_hash(rec.seq, &rec.prev_hash, &rec.entry)
        } else {
            keyed_hash(key, rec.seq, &rec.prev_hash, &rec.entry)
        };
        if want != rec.hash {
            let problem = if unkeyed {
                "edited (its hash does not match its content)".to_owned()
            } else if unkeyed_hash(rec.seq, &rec.prev_hash, &rec.entry) == rec.hash {
                match &chain {
                    Some((until, None, _)) if rec.seq <= *until => format!(
                        "chained without the key, and no keyed checkpoint follows: a store from \
                         before the keyed chain (records 1 to {until}) that the daemon has not \
                         started on since, or its keyed records were removed"
                    ),
                    _ => "hashed without the key where the chain is keyed (rewritten by someone \
                          without the key)"
                        .to_owned(),
                }
            } else {
                match &chain {
                    Some((_, _, Some(id))) if *id != key.id() => format!(
                        "does not verify with this key (key id {}; the store names key id {id}): \
                         the wrong key, or edited",
                        key.id()
                    ),
                    _ => "edited (its hash does not match its content)".to_owned(),
                }
            };
            return broken(rec.seq, problem);
        }
        if let Some(h) = published.filter(|h| h.seq == rec.seq)
            && h.hash != rec.hash
        {
            return broken(
                rec.seq,
                format!(
                    "does not match the published head {h} (the chain was rewritten at or before \
                     this record)"
                ),
            );
        }
        prev = rec.hash;
        expected += 1;
    }
    let last = expected - 1;
    if let Some(h) = published.filter(|h| h.seq > last) {
        return broken(
            last + 1,
            format!(
                "missing: the chain ends at record {last}, before the published head {h} (the tail \
                 was removed)"
            ),
        );
    }
    let head = head(c)?;
    match head {
        None if last == 0 => {}
        Some((seq, hash)) if seq == last && hash == prev => {}
        Some((seq, _)) if seq > last => {
            return broken(last + 1, "missing (the tail was removed)".into());
        }
        _ => {
            return broken(
                last,
                "the chain's head does not match its last record".into(),
            );
        }
    }
    if last == 0 {
        // Nothing left to check a record against: look for what an intact empty log never has.
        if let Some((until, keyed_from, _)) = &chain
            && (*until > 0 || keyed_from.is_some())
        {
            return broken(
                1,
                "missing: the log is empty, but the store records that its chain was started \
                 (emptied)"
                    .into(),
            );
        }
        let decided: i64 = c.query_row(
            "SELECT count(*) FROM findings WHERE last_decision IS NOT NULL",
            [],
            |r| r.get(0),
        )?;
        if decided > 0 {
            return broken(
                1,
                format!(
                    "missing: the log is empty, but {decided} findings carry reaper decisions \
                     (emptied)"
                ),
            );
        }
    }
    Ok(Ok(last as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ReapUpdate;
    use chrono::TimeZone;

    fn key(byte: u8) -> AuditKey {
        AuditKey::from_hex(&format!("{byte:02x}").repeat(32)).expect("a 32-byte key")
    }

    fn entry(i: i64) -> AuditEntry {
        AuditEntry {
            at: Utc
                .timestamp_opt(1_772_366_400 + i, 0)
                .single()
                .expect("time"),
            run_id: Some("run-1".into()),
            actor: "scheduler".into(),
            mode: ReapMode::Pass,
            arn: format!("arn:aws:ec2:us-east-1:123456789012:volume/vol-{i}"),
            lease_id: None,
            verdict: Some("expired".into()),
            decision: Decision::WouldDelete,
            detail: format!("record {i}"),
        }
    }

    fn broken(seq: i64, problem: &str) -> Result<u64, AuditBreak> {
        Err(AuditBreak {
            seq,
            problem: problem.into(),
        })
    }

    /// The first `problem` of a verify, with the `seq`, or `Ok(records)`.
    async fn verify(store: &Store, head: Option<&AuditHead>) -> Result<u64, AuditBreak> {
        store.audit_verify(head.cloned()).await.expect("reads")
    }

    /// A keyed store holding `n` records.
    async fn keyed(dir: &tempfile::TempDir, n: i64) -> Store {
        let store = Store::open(&dir.path().join("s.db"))
            .await
            .expect("opens")
            .with_audit_key(key(1));
        for i in 1..=n {
            let seq = store
                .record_reap(None, entry(i), ReapUpdate::Decision)
                .await
                .expect("appended");
            assert_eq!(seq, i, "a new store is keyed from record 1, no checkpoint");
        }
        store
    }

    async fn sql(store: &Store, sql: &'static str) {
        store
            .writer()
            .expect("sqlite")
            .write(move |c| Ok::<_, StoreError>(c.execute_batch(sql)?))
            .await
            .expect("tampered");
    }

    /// What a thief with the file but not the key does: rewrites each record from `from` on
    /// with `hash` (the content of `from` edited first), links them up and moves the head.
    async fn rewrite_from(
        store: &Store,
        from: i64,
        hash: impl Fn(i64, &str, &AuditEntry) -> String + Send + 'static,
    ) {
        store
            .writer()
            .expect("sqlite")
            .write(move |c| {
                c.execute(
                    "UPDATE audit_log SET detail = 'nothing to see' WHERE seq = ?1",
                    [from],
                )?;
                let recs: Vec<AuditRecord> = c
                    .prepare(&format!(
                        "SELECT {AUDIT_COLUMNS} FROM audit_log ORDER BY seq"
                    ))?
                    .query_map([], audit_row)?
                    .collect::<Result<_, _>>()?;
                let mut prev = GENESIS.to_owned();
                for r in recs {
                    if r.seq >= from {
                        let h = hash(r.seq, &prev, &r.entry);
                        c.execute(
                            "UPDATE audit_log SET prev_hash = ?2, hash = ?3 WHERE seq = ?1",
                            params![r.seq, prev, h],
                        )?;
                        c.execute(
                            "UPDATE audit_head SET seq = ?1, hash = ?2",
                            params![r.seq, h],
                        )?;
                        prev = h;
                    } else {
                        prev = r.hash;
                    }
                }
                Ok::<_, StoreError>(())
            })
            .await
            .expect("rewritten");
    }

    /// An edit with every later hash recomputed, as the unkeyed chain allowed, is caught: without
    /// the key, and with a key that is not the chain's.
    #[tokio::test]
    async fn a_rewrite_without_the_key_is_caught() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = keyed(&dir, 5).await;
        assert_eq!(verify(&store, None).await, Ok(5));
        let other = store.clone().with_audit_key(key(2));
        assert!(
            verify(&other, None)
                .await
                .is_err_and(|b| b.seq == 1 && b.problem.contains("does not verify with this key")),
            "another key does not verify the chain"
        );

        rewrite_from(&store, 3, unkeyed_hash).await;
        assert_eq!(
            verify(&store, None).await,
            broken(
                3,
                "hashed without the key where the chain is keyed (rewritten by someone without the key)"
            )
        );
        let wrong = key(2);
        rewrite_from(&store, 3, move |s, p, e| keyed_hash(&wrong, s, p, e)).await;
        assert_eq!(
            verify(&store, None).await,
            broken(3, "edited (its hash does not match its content)")
        );
    }

    /// The tail cut and the head row moved back verifies on its own (nothing in the file
    /// says otherwise), but not against the head published after the pass.
    #[tokio::test]
    async fn a_cut_tail_is_caught_against_a_published_head() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = keyed(&dir, 3).await;
        let h3 = store.audit_head().await.expect("reads").expect("a head");
        assert_eq!(h3.seq, 3);
        for i in 4..=5 {
            store
                .record_reap(None, entry(i), ReapUpdate::Decision)
                .await
                .expect("appended");
        }
        let h5 = store.audit_head().await.expect("reads").expect("a head");
        assert_eq!(verify(&store, Some(&h3)).await, Ok(5));
        assert_eq!(verify(&store, Some(&h5)).await, Ok(5));
        let forged = AuditHead {
            seq: 3,
            hash: "ab".repeat(32),
        };
        assert_eq!(
            verify(&store, Some(&forged)).await.map_err(|b| b.seq),
            Err(3)
        );

        sql(
            &store,
            "DELETE FROM audit_log WHERE seq > 3;
             UPDATE audit_head SET seq = 3, hash = (SELECT hash FROM audit_log WHERE seq = 3);",
        )
        .await;
        assert_eq!(
            verify(&store, None).await,
            Ok(3),
            "undetectable from the file alone"
        );
        assert_eq!(verify(&store, Some(&h3)).await, Ok(3));
        assert_eq!(
            verify(&store, Some(&h5)).await,
            broken(
                4,
                &format!(
                    "missing: the chain ends at record 3, before the published head {h5} \
                     (the tail was removed)"
                )
            )
        );
    }

    /// Emptied tables are not an intact empty log: the store's keyed start says a chain was
    /// there, and so do findings that carry reaper decisions; a published head says so too.
    #[tokio::test]
    async fn an_emptied_log_is_not_ok() {
        let dir = tempfile::tempdir().expect("temp dir");
        let fresh = Store::open(&dir.path().join("fresh.db"))
            .await
            .expect("opens")
            .with_audit_key(key(1));
        fresh
            .start_keyed_audit_chain(Utc::now())
            .await
            .expect("starts");
        assert_eq!(
            verify(&fresh, None).await,
            Ok(0),
            "a new store is empty and intact"
        );

        let store = keyed(&dir, 3).await;
        let h3 = store.audit_head().await.expect("reads").expect("a head");
        sql(&store, "DELETE FROM audit_log; DELETE FROM audit_head;").await;
        assert_eq!(
            verify(&store, None).await,
            broken(
                1,
                "missing: the log is empty, but the store records that its chain was started (emptied)"
            )
        );
        sql(
            &store,
            "DELETE FROM audit_chain;
             INSERT INTO resources (arn, account, region, resource_type, tags, first_seen, last_seen,
                                    verdict, reason, action, grace_s, last_run)
                 VALUES ('arn:aws:ec2:us-east-1:123456789012:volume/vol-1', '123456789012',
                         'us-east-1', 'ec2:volume', '', 0, 0, 'expired', 'x', 'reap', 0, 'run-1');
             INSERT INTO findings (arn, verdict, action, reason, account, region, resource_type,
                                   opened_at, updated_at, last_decision)
                 VALUES ('arn:aws:ec2:us-east-1:123456789012:volume/vol-1', 'expired', 'reap', 'x',
                         '123456789012', 'us-east-1', 'ec2:volume', 0, 0, 'would-delete');",
        )
        .await;
        assert_eq!(
            verify(&store, None).await,
            broken(
                1,
                "missing: the log is empty, but 1 findings carry reaper decisions (emptied)"
            )
        );
        assert_eq!(verify(&store, Some(&h3)).await.map_err(|b| b.seq), Err(1));
    }

    /// A store from before the keyed chain (records hashed with plain SHA-256 by the old
    /// code) keeps verifying up to a keyed checkpoint, and the chain goes on keyed from there;
    /// its old records stay pinned by the checkpoint's MAC.
    #[tokio::test]
    async fn an_old_store_verifies_to_its_checkpoint_and_continues_keyed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("old.db");
        {
            let mut c = Connection::open(&path).expect("old store");
            super::super::migrations::apply_first(&mut c, 8).expect("the schema before keying");
            let mut prev = GENESIS.to_owned();
            for seq in 1..=3 {
                let e = entry(seq);
                let hash = unkeyed_hash(seq, &prev, &e);
                c.execute(
                    "INSERT INTO audit_log (seq, at, run_id, actor, mode, arn, lease_id, verdict, decision, detail, prev_hash, hash)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                    params![seq, ms(e.at), e.run_id, e.actor, e.mode, e.arn, e.lease_id, e.verdict, e.decision, e.detail, prev, hash],
                )
                .expect("old record");
                c.execute(
                    "INSERT INTO audit_head (id, seq, hash) VALUES (1, ?1, ?2)
                     ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
                    params![seq, hash],
                )
                .expect("old head");
                prev = hash;
            }
        }
        let store = Store::open(&path)
            .await
            .expect("migrates")
            .with_audit_key(key(1));
        let old_head = store.audit_head().await.expect("reads").expect("a head");
        assert!(
            verify(&store, None).await.is_err_and(|b| b.seq == 1
                && b.problem
                    .starts_with("chained without the key, and no keyed checkpoint follows")),
            "not ok before the keyed chain starts"
        );

        store
            .start_keyed_audit_chain(entry(4).at)
            .await
            .expect("starts");
        store
            .start_keyed_audit_chain(entry(4).at)
            .await
            .expect("once only");
        for i in 5..=6 {
            assert_eq!(
                store
                    .record_reap(None, entry(i), ReapUpdate::Decision)
                    .await
                    .expect("appended"),
                i
            );
        }
        assert_eq!(verify(&store, Some(&old_head)).await, Ok(6));
        let (records, _) = store
            .audit_list(AuditQuery {
                limit: 10,
                ..Default::default()
            })
            .await
            .expect("lists");
        let checkpoint = &records[3];
        assert_eq!(checkpoint.entry.decision, Decision::ChainKeyed);
        assert_eq!(checkpoint.prev_hash, records[2].hash);
        assert!(
            checkpoint.entry.detail.contains("records 1 to 3"),
            "{checkpoint:?}"
        );
        assert_eq!(
            checkpoint.hash,
            keyed_hash(&key(1), 4, &checkpoint.prev_hash, &checkpoint.entry)
        );

        // An old record rewritten with plain SHA-256, as the old chain allowed: the checkpoint's
        // MAC still names the old hash.
        rewrite_from(&store, 2, unkeyed_hash).await;
        let got = verify(&store, None).await;
        assert!(got.as_ref().is_err_and(|b| b.seq <= 4), "{got:?}");
        sql(&store, "DELETE FROM audit_log WHERE seq > 3;").await;
        rewrite_from(&store, 2, unkeyed_hash).await;
        sql(
            &store,
            "UPDATE audit_chain SET keyed_from = NULL, key_id = NULL;",
        )
        .await;
        assert!(
            verify(&store, None).await.is_err_and(|b| b.seq == 1),
            "cut back to the unkeyed records: not ok"
        );
    }
}
