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
pub(super) fn keyed_hash(key: &AuditKey, seq: i64, prev_hash: &str, e: &AuditEntry) -> String {
    key.mac_hex(canonical(seq, prev_hash, e).as_bytes())
}

/// The `arn` of the checkpoint record (found through the ARN index).
pub(super) const CHAIN_ARN: &str = "ephemera:audit-chain";

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

/// Whether the chain already ends keyed although the note of the keyed start is gone (the
/// row was removed): a second checkpoint would only blur what `verify` reports.
pub(super) fn ends_keyed(key: &AuditKey, head_hash: &str, last: Option<&AuditRecord>) -> bool {
    last.is_some_and(|r| {
        r.hash == head_hash && keyed_hash(key, r.seq, &r.prev_hash, &r.entry) == r.hash
    })
}

/// The keyed `chain-keyed` checkpoint that follows records 1 to `last` of an older store.
pub(super) fn checkpoint_entry(key: &AuditKey, last: i64, at: DateTime<Utc>) -> AuditEntry {
    AuditEntry {
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
    }
}

/// The seq and `prev_hash` of the record after the head `head`.
pub(super) fn next_link(head: Option<(i64, String)>) -> (i64, String) {
    head.map_or((1, GENESIS.to_owned()), |(s, h)| (s + 1, h))
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
    let last_record = c
        .prepare_cached(&format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq = ?1"
        ))?
        .query_row([last], audit_row)
        .optional()?;
    if ends_keyed(key, &last_hash, last_record.as_ref()) {
        return Ok(());
    }
    let checkpoint = checkpoint_entry(key, last, at);
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
    let (seq, prev) = next_link(head(c)?);
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

/// The columns [`audit_row`] reads, as a literal (for `concat!` into static SQL).
macro_rules! audit_columns {
    () => {
        "seq, at, run_id, actor, mode, arn, lease_id, verdict, decision, detail, prev_hash, hash"
    };
}
pub(super) use audit_columns;

pub(super) const AUDIT_COLUMNS: &str = audit_columns!();

impl Store {
    /// Audit records, oldest first, with the cursor of the next page.
    pub async fn audit_list(
        &self,
        q: AuditQuery,
    ) -> Result<(Vec<AuditRecord>, Option<i64>), StoreError> {
        if let Some(pg) = self.pg() {
            return pg.audit_list(q).await;
        }
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
        if let Some(pg) = self.pg() {
            return pg.start_keyed_audit_chain(&key, at).await;
        }
        self.writer()?
            .write(move |c| start_keyed(c, &key, at))
            .await
    }

    /// The public id of the key the chain is keyed with (as noted when it was keyed), `None`
    /// for a chain not keyed yet.
    pub async fn audit_key_id(&self) -> Result<Option<String>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.audit_key_id().await;
        }
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
        if let Some(pg) = self.pg() {
            return pg.audit_head().await;
        }
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
        if let Some(pg) = self.pg() {
            return pg.audit_verify(&key, published.as_ref()).await;
        }
        self.read(move |c| verify_chain(c, &key, published.as_ref()))
            .await
    }
}

/// `audit_chain`'s row: (unkeyed_until, keyed_from, key_id).
pub(super) type ChainNote = (i64, Option<i64>, Option<String>);

/// The walk of `verify` over the records in seq order, the same on both engines: the engine
/// reads, this checks.
pub(super) struct ChainWalk<'a> {
    key: &'a AuditKey,
    published: Option<&'a AuditHead>,
    /// The seq of the first `chain-keyed` checkpoint, if any.
    checkpoint: Option<i64>,
    chain: Option<ChainNote>,
    expected: i64,
    prev: String,
}

impl<'a> ChainWalk<'a> {
    pub(super) fn new(
        key: &'a AuditKey,
        published: Option<&'a AuditHead>,
        checkpoint: Option<i64>,
        chain: Option<ChainNote>,
    ) -> Self {
        ChainWalk {
            key,
            published,
            checkpoint,
            chain,
            expected: 1,
            prev: GENESIS.to_owned(),
        }
    }

    /// Checks the next record: its place, its link, its hash (plain SHA-256 before the
    /// checkpoint, keyed from there; at the checkpoint if there is one, its own MAC is checked,
    /// so a forged one breaks there) and the published head at its seq.
    pub(super) fn step(&mut self, rec: AuditRecord) -> Result<(), AuditBreak> {
        let broken = |seq: i64, problem: String| Err(AuditBreak { seq, problem });
        if rec.seq != self.expected {
            return broken(self.expected, "missing (removed)".into());
        }
        if rec.prev_hash != self.prev {
            return broken(
                rec.seq,
                "does not follow the record before it (inserted, or one before it removed)".into(),
            );
        }
        let key = self.key;
        let unkeyed = self.checkpoint.is_some_and(|cp| rec.seq < cp);
        let want = if unkeyed {
            unkeyed_hash(rec.seq, &rec.prev_hash, &rec.entry)
        } else {
            keyed_hash(key, rec.seq, &rec.prev_hash, &rec.entry)
        };
        if want != rec.hash {
            let problem = if unkeyed {
                "edited (its hash does not match its content)".to_owned()
            } else if unkeyed_hash(rec.seq, &rec.prev_hash, &rec.entry) == rec.hash {
                match &self.chain {
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
                match &self.chain {
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
        if let Some(h) = self.published.filter(|h| h.seq == rec.seq)
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
        self.prev = rec.hash;
        self.expected += 1;
        Ok(())
    }

    /// After the last record: the published head and the head row against the chain's end.
    /// Ok(number of records); for an empty log, the caller then asks [`empty_but_decided`].
    pub(super) fn end(self, head: Option<(i64, String)>) -> Result<u64, AuditBreak> {
        let broken = |seq: i64, problem: String| Err(AuditBreak { seq, problem });
        let last = self.expected - 1;
        if let Some(h) = self.published.filter(|h| h.seq > last) {
            return broken(
                last + 1,
                format!(
                    "missing: the chain ends at record {last}, before the published head {h} (the tail \
                     was removed)"
                ),
            );
        }
        match head {
            None if last == 0 => {}
            Some((seq, hash)) if seq == last && hash == self.prev => {}
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
            if let Some((until, keyed_from, _)) = &self.chain
                && (*until > 0 || keyed_from.is_some())
            {
                return broken(
                    1,
                    "missing: the log is empty, but the store records that its chain was started \
                     (emptied)"
                        .into(),
                );
            }
        }
        Ok(last as u64)
    }
}

/// An empty log is broken when `decided` findings carry reaper decisions.
pub(super) fn empty_but_decided(decided: i64) -> Result<(), AuditBreak> {
    if decided > 0 {
        return Err(AuditBreak {
            seq: 1,
            problem: format!(
                "missing: the log is empty, but {decided} findings carry reaper decisions \
                 (emptied)"
            ),
        });
    }
    Ok(())
}

fn verify_chain(
    c: &Connection,
    key: &AuditKey,
    published: Option<&AuditHead>,
) -> Result<Result<u64, AuditBreak>, StoreError> {
    let checkpoint: Option<i64> = c
        .query_row(
            "SELECT min(seq) FROM audit_log WHERE arn = ?1 AND decision = ?2",
            params![CHAIN_ARN, Decision::ChainKeyed],
            |r| r.get(0),
        )
        .optional()?
        .flatten();
    let chain: Option<ChainNote> = c
        .query_row(
            "SELECT unkeyed_until, keyed_from, key_id FROM audit_chain WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let mut walk = ChainWalk::new(key, published, checkpoint, chain);
    let mut stmt = c.prepare(&format!(
        "SELECT {AUDIT_COLUMNS} FROM audit_log ORDER BY seq"
    ))?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        if let Err(b) = walk.step(audit_row(row)?) {
            return Ok(Err(b));
        }
    }
    let n = match walk.end(head(c)?) {
        Ok(n) => n,
        Err(b) => return Ok(Err(b)),
    };
    if n == 0 {
        let decided: i64 = c.query_row(
            "SELECT count(*) FROM findings WHERE last_decision IS NOT NULL",
            [],
            |r| r.get(0),
        )?;
        if let Err(b) = empty_but_decided(decided) {
            return Ok(Err(b));
        }
    }
    Ok(Ok(n))
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

    /// `store`, keyed, holding `n` records.
    async fn keyed(store: Store, n: i64) -> Store {
        let store = store.with_audit_key(key(1));
        for i in 1..=n {
            let seq = append_one(&store, entry(i)).await;
            assert_eq!(seq, i, "a new store is keyed from record 1, no checkpoint");
        }
        store
    }

    /// Runs SQL as it is (the tampering of the tests), on either engine.
    async fn sql(store: &Store, sql: impl Into<String>) {
        store.execute_batch_for_test(&sql.into()).await;
    }

    /// What a thief with the file but not the key does: rewrites each record from `from` on
    /// with `hash` (the content of `from` edited first), links them up and moves the head.
    async fn rewrite_from(
        store: &Store,
        from: i64,
        hash: impl Fn(i64, &str, &AuditEntry) -> String,
    ) {
        let (records, _) = store
            .audit_list(AuditQuery {
                limit: 1000,
                ..Default::default()
            })
            .await
            .expect("lists");
        let mut edit =
            format!("UPDATE audit_log SET detail = 'nothing to see' WHERE seq = {from};");
        let mut prev = GENESIS.to_owned();
        for mut r in records {
            if r.seq == from {
                r.entry.detail = "nothing to see".into();
            }
            if r.seq >= from {
                let h = hash(r.seq, &prev, &r.entry);
                edit.push_str(&format!(
                    "UPDATE audit_log SET prev_hash = '{prev}', hash = '{h}' WHERE seq = {};
                     UPDATE audit_head SET seq = {}, hash = '{h}';",
                    r.seq, r.seq
                ));
                prev = h;
            } else {
                prev = r.hash;
            }
        }
        sql(store, edit).await;
    }

    /// Appends one record as a reap does (on PostgreSQL, in a transaction of its own until
    /// `record_reap` runs there).
    async fn append_one(store: &Store, e: AuditEntry) -> i64 {
        if let Some(pg) = store.pg() {
            let key = store.audit_key().expect("keyed");
            return pg.append_audit(&key, &e).await.expect("appended");
        }
        store
            .record_reap(None, e, ReapUpdate::Decision)
            .await
            .expect("appended")
    }

    /// Two replicas (or processes) appending at once take turns: every record gets its own
    /// seq and links to the one before it.
    #[tokio::test]
    async fn appends_from_two_handles_make_one_chain() {
        let dir = tempfile::tempdir().expect("temp dir");
        for (engine, a, b) in Store::open_twice_for_test(dir.path()).await {
            println!("{engine}");
            let (a, b) = (a.with_audit_key(key(1)), b.with_audit_key(key(1)));
            let write = |store: Store, from: i64| {
                tokio::spawn(async move {
                    for i in from..from + 20 {
                        append_one(&store, entry(i)).await;
                    }
                })
            };
            let (x, y) = (write(a.clone(), 0), write(b.clone(), 100));
            x.await.expect("appends");
            y.await.expect("appends");
            assert_eq!(verify(&a, None).await, Ok(40), "{engine}");
            assert_eq!(
                a.audit_head().await.expect("reads").map(|h| h.seq),
                Some(40),
                "{engine}"
            );
        }
    }

    /// An edit with every later hash recomputed, as the unkeyed chain allowed, is caught: without
    /// the key, and with a key that is not the chain's.
    #[tokio::test]
    async fn a_rewrite_without_the_key_is_caught() {
        let dir = tempfile::tempdir().expect("temp dir");
        for (engine, store) in Store::open_both_for_test(dir.path()).await {
            println!("{engine}");
            a_rewrite_without_the_key_is_caught_on(store).await;
        }
    }

    async fn a_rewrite_without_the_key_is_caught_on(store: Store) {
        let store = keyed(store, 5).await;
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
        for (engine, store) in Store::open_both_for_test(dir.path()).await {
            println!("{engine}");
            a_cut_tail_is_caught_on(store).await;
        }
    }

    async fn a_cut_tail_is_caught_on(store: Store) {
        let store = keyed(store, 3).await;
        let h3 = store.audit_head().await.expect("reads").expect("a head");
        assert_eq!(h3.seq, 3);
        for i in 4..=5 {
            append_one(&store, entry(i)).await;
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
        let (a, b) = (
            tempfile::tempdir().expect("temp dir"),
            tempfile::tempdir().expect("temp dir"),
        );
        let fresh = Store::open_both_for_test(a.path()).await;
        let stores = Store::open_both_for_test(b.path()).await;
        for ((engine, fresh), (_, store)) in fresh.into_iter().zip(stores) {
            println!("{engine}");
            an_emptied_log_is_not_ok_on(fresh, store).await;
        }
    }

    async fn an_emptied_log_is_not_ok_on(fresh: Store, store: Store) {
        let fresh = fresh.with_audit_key(key(1));
        fresh
            .start_keyed_audit_chain(Utc::now())
            .await
            .expect("starts");
        assert_eq!(
            verify(&fresh, None).await,
            Ok(0),
            "a new store is empty and intact"
        );

        let store = keyed(store, 3).await;
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
        let sqlite = old_sqlite_store(&dir.path().join("old.db")).await;
        an_old_store_verifies_on(sqlite).await;
        println!("postgres");
        an_old_store_verifies_on(old_postgres_store().await).await;
    }

    /// Records 1 to 3 as the code before the keyed chain wrote them (plain SHA-256).
    fn old_records() -> Vec<(i64, AuditEntry, String, String)> {
        let mut prev = GENESIS.to_owned();
        (1..=3)
            .map(|seq| {
                let e = entry(seq);
                let hash = unkeyed_hash(seq, &prev, &e);
                let link = std::mem::replace(&mut prev, hash.clone());
                (seq, e, link, hash)
            })
            .collect()
    }

    /// A SQLite store of schema 8 holding the old records, then migrated.
    async fn old_sqlite_store(path: &std::path::Path) -> Store {
        println!("sqlite");
        {
            let mut c = Connection::open(path).expect("old store");
            super::super::migrations::apply_first(&mut c, 8).expect("the schema before keying");
            for (seq, e, prev, hash) in old_records() {
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
            }
        }
        Store::open(path).await.expect("migrates")
    }

    /// A PostgreSQL store holding the old records, as a copy of a migrated old store would be
    /// (its `audit_chain` row says records 1 to 3 are unkeyed).
    async fn old_postgres_store() -> Store {
        let store = Store::open_test_postgres().await;
        let mut text = String::new();
        for (seq, e, prev, hash) in old_records() {
            text.push_str(&format!(
                "INSERT INTO audit_log (seq, at, run_id, actor, mode, arn, lease_id, verdict, decision, detail, prev_hash, hash)
                 VALUES ({seq}, {}, 'run-1', '{}', '{}', '{}', NULL, 'expired', '{}', '{}', '{prev}', '{hash}');
                 INSERT INTO audit_head (id, seq, hash) VALUES (1, {seq}, '{hash}')
                 ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash;",
                ms(e.at),
                e.actor,
                e.mode.as_str(),
                e.arn,
                e.decision.as_str(),
                e.detail
            ));
        }
        text.push_str("INSERT INTO audit_chain (id, unkeyed_until) VALUES (1, 3);");
        sql(&store, text).await;
        store
    }

    async fn an_old_store_verifies_on(store: Store) {
        let store = store.with_audit_key(key(1));
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
            assert_eq!(append_one(&store, entry(i)).await, i);
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
