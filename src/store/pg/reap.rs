//! The reaper's calls on PostgreSQL: deletion marks, the `deleting` state fenced on the act
//! lock, and each decision appended to the audit chain in the transaction of its finding.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::Pg;
use super::chain::append_audit_tx;
use crate::audit::AuditKey;
use crate::model::{Arn, ControllerRef, MailKind};
use crate::resource::{AuditEntry, ReapCandidate};
use crate::store::reap::{Mark, RawCandidate, ToMark, candidates_sql, to_mark};
use crate::store::{ACT_LOCK, ReapUpdate, StoreError, ms};

impl RawCandidate {
    fn from_pg(r: &Row) -> Result<Self, StoreError> {
        Ok(RawCandidate {
            finding_id: r.try_get(0)?,
            arn: r.try_get(1)?,
            account: r.try_get(2)?,
            region: r.try_get(3)?,
            resource_type: r.try_get(4)?,
            project: r.try_get(5)?,
            verdict: r.try_get(6)?,
            reason: r.try_get(7)?,
            lease_id: r.try_get(8)?,
            lease_owner: r.try_get(9)?,
            tags: r.try_get(10)?,
            deadline: r.try_get(11)?,
            lease_ended_at: r.try_get(12)?,
            attempts: r.try_get(13)?,
            next_attempt_at: r.try_get(14)?,
            reap_state: r.try_get(15)?,
            last_decision: r.try_get(16)?,
            marked_owner: r.try_get(17)?,
            source: r.try_get(18)?,
            created_at: r.try_get(19)?,
            creator: r.try_get(20)?,
            skip_count: r.try_get(21)?,
            last_skipped_at: r.try_get(22)?,
            deactivated_at: r.try_get(23)?,
        })
    }
}

fn candidates_of(rows: &[Row], owner_key: &str) -> Result<Vec<ReapCandidate>, StoreError> {
    rows.iter()
        .map(|r| RawCandidate::from_pg(r)?.into_candidate(owner_key))
        .collect()
}

/// The candidate queries, built once (so each connection prepares them once).
static MARKED: LazyLock<String> =
    LazyLock::new(|| candidates_sql("f.resolved_at IS NULL AND f.deadline IS NOT NULL", "$1"));
static DUE: LazyLock<String> = LazyLock::new(|| {
    candidates_sql(
        "f.resolved_at IS NULL AND f.deadline IS NOT NULL AND f.deadline <= $2",
        "$1",
    )
});
static OPEN_OF_ARN: LazyLock<String> =
    LazyLock::new(|| candidates_sql("f.resolved_at IS NULL AND f.arn = $2", "$1"));
static INTERRUPTED: LazyLock<String> = LazyLock::new(|| {
    candidates_sql(
        "f.reap_state IN ('deleting', 'with-controller') AND f.resolved_at IS NOT NULL",
        "$1",
    )
});

/// The open `reap` findings not yet marked. Not locked: [`WRITE_MARKS`] marks each only if it
/// is still so when written.
const TO_MARK: &str = to_mark!();

/// Writes the marks of one pass in one statement: each finding's deadline, only while it is
/// still an open, unmarked `reap` finding of the verdict its mark was decided on (under READ
/// COMMITTED the `UPDATE` re-checks a row another transaction changed meanwhile), and for
/// those marked their `deletion-planned` notices and `marked` events, in mark order. Answers
/// how many were marked.
const WRITE_MARKS: &str = "WITH m AS (
        SELECT * FROM unnest($1::BIGINT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::TEXT[],
                             $6::TEXT[], $7::TEXT[], $8::TEXT[]) WITH ORDINALITY
            AS m(id, deadline, owner_tag, recipient, dedupe_key, payload, verdict, detail, n)
    ), marked AS (
        UPDATE findings SET deadline = m.deadline, marked_owner = m.owner_tag
        FROM m
        WHERE findings.id = m.id AND findings.resolved_at IS NULL
          AND findings.action = 'reap' AND findings.deadline IS NULL
          AND findings.verdict = m.verdict
        RETURNING findings.id
    ), noticed AS (
        INSERT INTO outbox (kind, recipient, dedupe_key, payload, created_at)
        SELECT $9, m.recipient, m.dedupe_key, m.payload, $10
        FROM m JOIN marked ON marked.id = m.id
        ORDER BY m.n
        ON CONFLICT (dedupe_key) DO NOTHING
    ), recorded AS (
        -- A transition of the finding (no deletion is decided yet), so it goes with the
        -- finding's other events, not into the reaper's audit chain.
        INSERT INTO finding_events (finding_id, run_id, at, kind, verdict, detail)
        SELECT m.id, $11, $10, 'marked', m.verdict, m.detail
        FROM m JOIN marked ON marked.id = m.id
        ORDER BY m.n
    )
    SELECT COUNT(*) FROM marked";

/// Fewest marks a pass writes in two halves side by side ([`Pg::mark_for_reaping`]).
const MARKS_SPLIT: usize = 4_096;

/// The marks' columns in [`WRITE_MARKS`]'s order (`$1`–`$8`), one array each.
struct MarkColumns<'a> {
    ids: Vec<i64>,
    deadlines: Vec<i64>,
    owner_tags: Vec<&'a str>,
    owners: Vec<Option<&'a str>>,
    keys: Vec<&'a str>,
    payloads: Vec<&'a str>,
    verdicts: Vec<&'a str>,
    details: Vec<&'a str>,
}

impl<'a> MarkColumns<'a> {
    fn of(marks: &'a [Mark]) -> Self {
        MarkColumns {
            ids: marks.iter().map(|m| m.id).collect(),
            deadlines: marks.iter().map(|m| m.deadline).collect(),
            owner_tags: marks.iter().map(|m| m.owner_tag.as_str()).collect(),
            owners: marks.iter().map(|m| m.owner.as_deref()).collect(),
            keys: marks.iter().map(|m| m.dedupe_key.as_str()).collect(),
            payloads: marks.iter().map(|m| m.payload.as_str()).collect(),
            verdicts: marks.iter().map(|m| m.verdict.as_str()).collect(),
            details: marks.iter().map(|m| m.detail.as_str()).collect(),
        }
    }

    /// [`WRITE_MARKS`]'s parameters: the columns, then the notices' kind, the time and the run.
    fn params<'p>(
        &'p self,
        kind: &'p &'p str,
        at: &'p i64,
        run_id: &'p String,
    ) -> [&'p (dyn ToSql + Sync); 11] {
        [
            &self.ids,
            &self.deadlines,
            &self.owner_tags,
            &self.owners,
            &self.keys,
            &self.payloads,
            &self.verdicts,
            &self.details,
            kind,
            at,
            run_id,
        ]
    }
}

fn to_mark(r: &Row) -> Result<ToMark, StoreError> {
    Ok((
        r.try_get(0)?,
        r.try_get(1)?,
        r.try_get(2)?,
        r.try_get(3)?,
        r.try_get(4)?,
        r.try_get(5)?,
        r.try_get(6)?,
        r.try_get(7)?,
        r.try_get(8)?,
    ))
}

impl Pg {
    pub(in crate::store) async fn withdraw_stale_plans(
        &self,
        at: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut c = self.conn().await?;
        c.execute(
            "UPDATE outbox SET sent_at = $1,
                    last_error = 'withdrawn: no longer planned for deletion at that deadline'
             WHERE kind = $2 AND sent_at IS NULL
               AND EXISTS (SELECT 1 FROM findings f
                           WHERE f.id = (outbox.payload::jsonb ->> 'finding_id')::BIGINT)
               AND NOT EXISTS (SELECT 1 FROM findings f
                               WHERE f.id = (outbox.payload::jsonb ->> 'finding_id')::BIGINT
                                 AND f.resolved_at IS NULL AND f.deadline IS NOT NULL
                                 AND outbox.dedupe_key = $2 || ':' || f.id || ':' || f.deadline)",
            &[&ms(at), &MailKind::DeletionPlanned.as_str()],
        )
        .await
    }

    pub(in crate::store) async fn mark_for_reaping(
        &self,
        run_id: String,
        at: DateTime<Utc>,
        owner_key: String,
    ) -> Result<u64, StoreError> {
        let mut c = self.conn().await?;
        let mut tx = c.begin().await?;
        // Replicas mark one at a time (the second finds the first's marks).
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('reap-marks', 0))",
            &[],
        )
        .await?;
        tx.execute(
            "UPDATE findings SET deadline = NULL, reap_state = NULL, last_decision = NULL,
                                 attempts = 0, next_attempt_at = NULL, deactivated_at = NULL, last_error = NULL,
                                 marked_owner = NULL, skip_seq = NULL, skip_count = 0,
                                 last_skipped_at = NULL
             WHERE resolved_at IS NULL AND action != 'reap' AND deadline IS NOT NULL",
            &[],
        )
        .await?;
        let marks = tx
            .query(TO_MARK, &[])
            .await?
            .iter()
            .map(|r| Mark::of(to_mark(r)?, at, &owner_key))
            .collect::<Result<Vec<_>, _>>()?;
        if marks.is_empty() {
            tx.commit().await?;
            return Ok(0);
        }
        // A pass may mark thousands at a time: the write takes them all as arrays. From
        // MARKS_SPLIT on, in two halves side by side: the second on a connection of its own,
        // in its own transaction, so the server gives each half a core. Each finding's mark,
        // notice and event stay in one statement, and a half committed without the other is
        // only marks the next pass would make anyway (each written only over an unmarked
        // finding, so a replica marking next finds them marked).
        let half = if marks.len() >= MARKS_SPLIT {
            marks.len() / 2
        } else {
            marks.len()
        };
        let (first, second) = (
            MarkColumns::of(&marks[..half]),
            MarkColumns::of(&marks[half..]),
        );
        let (kind, at) = (MailKind::DeletionPlanned.as_str(), ms(at));
        let (first, second) = (
            first.params(&kind, &at, &run_id),
            second.params(&kind, &at, &run_id),
        );
        let marked: i64 = if half == marks.len() {
            tx.query_one(WRITE_MARKS, &first).await?.try_get(0)?
        } else {
            let mut other = self.conn().await?;
            let (a, b) = tokio::try_join!(
                tx.query_one(WRITE_MARKS, &first),
                other.query_one(WRITE_MARKS, &second),
            )?;
            a.try_get::<_, i64>(0)? + b.try_get::<_, i64>(0)?
        };
        tx.commit().await?;
        Ok(u64::try_from(marked).unwrap_or(0))
    }

    pub(in crate::store) async fn reap_candidates(
        &self,
        owner_key: String,
    ) -> Result<Vec<ReapCandidate>, StoreError> {
        let mut c = self.conn().await?;
        let rows = c.query(MARKED.as_str(), &[&0_i64]).await?;
        candidates_of(&rows, &owner_key)
    }

    pub(in crate::store) async fn due_reap_candidates(
        &self,
        owner_key: String,
        now: DateTime<Utc>,
    ) -> Result<Vec<ReapCandidate>, StoreError> {
        let mut c = self.conn().await?;
        let rows = c.query(DUE.as_str(), &[&0_i64, &ms(now)]).await?;
        candidates_of(&rows, &owner_key)
    }

    pub(in crate::store) async fn live_controlled(
        &self,
    ) -> Result<Vec<(Arn, ControllerRef)>, StoreError> {
        let mut c = self.conn().await?;
        let rows = c
            .query(
                "SELECT arn, account, region, controller FROM resources
                 WHERE controller IS NOT NULL AND gone_at IS NULL",
                &[],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let (arn, account, region, text): (String, String, String, String) =
                    (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?);
                let corrupt = |what: &str, v: &str| {
                    StoreError::Corrupt(format!("resource {arn}: bad {what} `{v}`"))
                };
                let controller = ControllerRef::from_stored(&text, &account, &region)
                    .ok_or_else(|| corrupt("controller", &text))?;
                let parsed = Arn::parse(&arn).map_err(|_| corrupt("arn", &arn))?;
                Ok((parsed, controller))
            })
            .collect()
    }

    pub(in crate::store) async fn marked_by_project(
        &self,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let mut c = self.conn().await?;
        let rows = c
            .query(
                "SELECT COALESCE(project, 'unknown'), COUNT(*) FROM findings
                 WHERE resolved_at IS NULL AND deadline IS NOT NULL GROUP BY 1",
                &[],
            )
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    pub(in crate::store) async fn is_marked(&self, arn: String) -> Result<bool, StoreError> {
        let mut c = self.conn().await?;
        let row = c
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM findings
                    WHERE arn = $1 AND resolved_at IS NULL AND deadline IS NOT NULL)",
                &[&arn],
            )
            .await?;
        Ok(row.try_get(0)?)
    }

    pub(in crate::store) async fn open_findings_for(
        &self,
        arns: Vec<String>,
        owner_key: String,
        now: DateTime<Utc>,
    ) -> Result<Vec<ReapCandidate>, StoreError> {
        let mut c = self.conn().await?;
        let mut out = Vec::new();
        // One look-up per ARN, in the order given (an ARN has at most one open finding).
        for arn in &arns {
            let rows = c.query(OPEN_OF_ARN.as_str(), &[&ms(now), arn]).await?;
            out.extend(candidates_of(&rows, &owner_key)?);
        }
        Ok(out)
    }

    pub(in crate::store) async fn interrupted_deletes_resolved(
        &self,
        owner_key: String,
    ) -> Result<Vec<ReapCandidate>, StoreError> {
        let mut c = self.conn().await?;
        let mut tx = c.begin().await?;
        tx.execute(
            "UPDATE findings SET reap_state = NULL
             WHERE reap_state IN ('deleting', 'with-controller') AND resolved_at IS NOT NULL
               AND resolution NOT IN ('gone', 'terminated')",
            &[],
        )
        .await?;
        let rows = tx.query(INTERRUPTED.as_str(), &[&0_i64]).await?;
        tx.commit().await?;
        candidates_of(&rows, &owner_key)
    }

    pub(in crate::store) async fn record_deleting(
        &self,
        finding_id: i64,
        members: Vec<i64>,
        fence: String,
        wall_now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut c = self.conn().await?;
        let mut tx = c.begin().await?;
        // The share lock on the lock's row holds off a takeover (its claim updates the row)
        // until this commits; a takeover that committed first is what this reads, so the
        // fence fails. Either way the note is written only under the fence's lock.
        let held = tx
            .query_opt(
                "SELECT 1 FROM locks WHERE name = $1 AND holder = $2 AND expires_at > $3
                 FOR SHARE",
                &[&ACT_LOCK, &fence, &ms(wall_now)],
            )
            .await?;
        if held.is_none() {
            return Ok(false);
        }
        let n = tx
            .execute(
                "UPDATE findings SET reap_state = 'deleting' WHERE id = $1",
                &[&finding_id],
            )
            .await?;
        if n != 1 {
            return Ok(false);
        }
        if !members.is_empty() {
            tx.execute(
                "UPDATE findings SET reap_state = 'with-controller'
                 WHERE id = ANY($1) AND resolved_at IS NULL",
                &[&members],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    pub(in crate::store) async fn clear_going_with(&self, ids: Vec<i64>) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        c.execute(
            "UPDATE findings SET reap_state = NULL
             WHERE id = ANY($1) AND reap_state = 'with-controller' AND resolved_at IS NULL",
            &[&ids],
        )
        .await?;
        Ok(())
    }

    pub(in crate::store) async fn record_reap(
        &self,
        key: std::sync::Arc<AuditKey>,
        finding_id: Option<i64>,
        entry: AuditEntry,
        update: ReapUpdate,
    ) -> Result<i64, StoreError> {
        let mut c = self.conn().await?;
        let mut tx = c.begin().await?;
        let at = ms(entry.at);
        let decision = entry.decision.as_str();
        if let (Some(id), ReapUpdate::Skipped) = (finding_id, &update) {
            // The update locks the finding's row: two replicas counting one skip take turns.
            let first = tx
                .query_opt(
                    "UPDATE findings SET skip_count = skip_count + 1, last_skipped_at = $2
                     WHERE id = $1 AND last_decision = $3 AND skip_seq IS NOT NULL
                       AND (SELECT detail FROM audit_log WHERE seq = findings.skip_seq) = $4
                     RETURNING skip_seq",
                    &[&id, &at, &decision, &entry.detail],
                )
                .await?;
            if let Some(row) = first {
                let first: i64 = row.try_get(0)?;
                tx.commit().await?;
                return Ok(first);
            }
        }
        let seq = append_audit_tx(&mut tx, &key, &entry).await?;
        let Some(id) = finding_id else {
            tx.commit().await?;
            return Ok(seq);
        };
        if update != ReapUpdate::Skipped {
            // Any other decision ends a run of skips: the next one is recorded.
            tx.execute(
                "UPDATE findings SET skip_seq = NULL, skip_count = 0, last_skipped_at = NULL
                 WHERE id = $1 AND skip_seq IS NOT NULL",
                &[&id],
            )
            .await?;
        }
        match &update {
            ReapUpdate::Skipped => {
                tx.execute(
                    "UPDATE findings SET last_decision = $2, skip_seq = $3, skip_count = 1,
                                         last_skipped_at = $4
                     WHERE id = $1",
                    &[&id, &decision, &seq, &at],
                )
                .await?;
            }
            ReapUpdate::Decision => {
                tx.execute(
                    "UPDATE findings SET last_decision = $2 WHERE id = $1",
                    &[&id, &decision],
                )
                .await?;
            }
            ReapUpdate::Gone => {
                tx.execute(
                    "UPDATE findings SET reap_state = 'deleted', last_decision = $2,
                                         resolved_at = $3, updated_at = $3, resolution = 'deleted'
                     WHERE id = $1",
                    &[&id, &decision, &at],
                )
                .await?;
                tx.execute(
                    "UPDATE resources SET gone_at = COALESCE(gone_at, $2)
                     WHERE arn = (SELECT arn FROM findings WHERE id = $1)",
                    &[&id, &at],
                )
                .await?;
                tx.execute(
                    "INSERT INTO finding_events (finding_id, run_id, at, kind, verdict, detail)
                     SELECT id, $2, $3, 'resolved', verdict, 'deleted' FROM findings WHERE id = $1",
                    &[&id, &entry.run_id, &at],
                )
                .await?;
            }
            ReapUpdate::Unmark => {
                tx.execute(
                    "UPDATE findings SET deadline = NULL, reap_state = NULL, last_decision = $2,
                                         attempts = 0, next_attempt_at = NULL, deactivated_at = NULL, marked_owner = NULL
                     WHERE id = $1",
                    &[&id, &decision],
                )
                .await?;
            }
            ReapUpdate::Settled => {
                tx.execute(
                    "UPDATE findings SET reap_state = 'deleted', last_decision = $2 WHERE id = $1",
                    &[&id, &decision],
                )
                .await?;
            }
            ReapUpdate::Deactivated => {
                tx.execute(
                    "UPDATE findings SET reap_state = NULL, last_decision = $2, deactivated_at = $3,
                                         attempts = 0, next_attempt_at = NULL, last_error = NULL
                     WHERE id = $1",
                    &[&id, &decision, &at],
                )
                .await?;
            }
            ReapUpdate::Failed { retry_at } => {
                tx.execute(
                    "UPDATE findings SET reap_state = NULL, last_decision = $2,
                                         attempts = attempts + 1, next_attempt_at = $3,
                                         last_error = $4
                     WHERE id = $1",
                    &[&id, &decision, &ms(*retry_at), &entry.detail],
                )
                .await?;
            }
        }
        tx.commit().await?;
        Ok(seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    /// A mark is written only over the finding it was decided on: one marked meanwhile, no
    /// longer to reap, resolved, or of another verdict is left as it is, with no notice and no
    /// event.
    #[tokio::test]
    async fn marks_are_written_only_over_what_they_were_decided_on() {
        let store = Store::open_test_postgres().await;
        let finding = |id: i64, verdict: &str, action: &str, deadline: &str, resolved: &str| {
            format!(
                "INSERT INTO findings (id, arn, verdict, action, reason, account, region,
                     resource_type, opened_at, updated_at, deadline, resolved_at)
                 VALUES ({id}, 'arn:aws:ec2:us-east-1:123456789012:volume/vol-{id}', '{verdict}',
                     '{action}', 'r', '123456789012', 'us-east-1', 'ec2:volume', 0, 0,
                     {deadline}, {resolved});"
            )
        };
        store
            .execute_batch_for_test(
                &[
                    finding(1, "expired", "reap", "NULL", "NULL"),
                    finding(2, "expired", "reap", "5", "NULL"),
                    finding(3, "expired", "report", "NULL", "NULL"),
                    finding(4, "expired", "reap", "NULL", "7"),
                    finding(5, "released", "reap", "NULL", "NULL"),
                ]
                .concat(),
            )
            .await;
        let pg = store.pg().expect("postgres");
        let mut c = pg.conn().await.expect("connects");
        let marks: Vec<Mark> = (1..=5)
            .map(|i| Mark {
                id: i,
                deadline: 100,
                owner_tag: format!("tag{i}"),
                owner: Some(format!("owner{i}")),
                dedupe_key: format!("key{i}"),
                payload: "{}".into(),
                verdict: "expired".into(),
                detail: format!("detail{i}"),
            })
            .collect();
        let columns = MarkColumns::of(&marks);
        let marked: i64 = c
            .query_one(
                WRITE_MARKS,
                &columns.params(
                    &MailKind::DeletionPlanned.as_str(),
                    &50,
                    &"run-1".to_owned(),
                ),
            )
            .await
            .expect("writes")
            .try_get(0)
            .expect("a count");
        assert_eq!(marked, 1);
        let s = |v: &str| Some(v.to_owned());
        assert_eq!(
            store
                .text_rows_for_test("SELECT id, deadline, marked_owner FROM findings ORDER BY id")
                .await,
            [
                vec![s("1"), s("100"), s("tag1")],
                vec![s("2"), s("5"), None],
                vec![s("3"), None, None],
                vec![s("4"), None, None],
                vec![s("5"), None, None],
            ]
        );
        assert_eq!(
            store
                .text_rows_for_test("SELECT recipient, dedupe_key FROM outbox")
                .await,
            [vec![s("owner1"), s("key1")]]
        );
        assert_eq!(
            store
                .text_rows_for_test("SELECT finding_id, kind, detail FROM finding_events")
                .await,
            [vec![s("1"), s("marked"), s("detail1")]]
        );
    }

    /// A pass's marks from `MARKS_SPLIT` on are written in two halves side by side: every
    /// finding is marked once, with one notice and one event, and the count is of both.
    #[tokio::test]
    async fn many_marks_are_written_in_two_halves_each_once() {
        let store = Store::open_test_postgres().await;
        let n = MARKS_SPLIT + 5;
        store
            .execute_batch_for_test(&format!(
                "INSERT INTO resources (arn, account, region, resource_type, tags, first_seen,
                     last_seen, verdict, reason, action, grace_s, last_run)
                 SELECT 'arn:aws:ec2:us-east-1:123456789012:volume/vol-' || i, '123456789012',
                     'us-east-1', 'ec2:volume', '{{}}', 0, 0, 'expired', 'r', 'reap', 3600, 'run-0'
                 FROM generate_series(1, {n}) i;
                 INSERT INTO findings (id, arn, verdict, action, reason, account, region,
                     resource_type, opened_at, updated_at)
                 SELECT i, 'arn:aws:ec2:us-east-1:123456789012:volume/vol-' || i, 'expired',
                     'reap', 'r', '123456789012', 'us-east-1', 'ec2:volume', 0, 0
                 FROM generate_series(1, {n}) i;"
            ))
            .await;
        let at = DateTime::from_timestamp_millis(1_000_000).expect("a time");
        let marked = store
            .mark_for_reaping("run-1".into(), at, "owner".into())
            .await
            .expect("marks");
        assert_eq!(marked, n as u64);
        let count = |sql: &str| {
            let store = store.clone();
            let sql = sql.to_owned();
            async move { store.text_rows_for_test(&sql).await[0][0].clone() }
        };
        let n = Some(n.to_string());
        assert_eq!(
            count("SELECT COUNT(*) FROM findings WHERE deadline = 1000000 + 3600000").await,
            n
        );
        assert_eq!(
            count("SELECT COUNT(DISTINCT dedupe_key) FROM outbox").await,
            n
        );
        assert_eq!(count("SELECT COUNT(*) FROM outbox").await, n);
        assert_eq!(
            count("SELECT COUNT(DISTINCT finding_id) FROM finding_events WHERE kind = 'marked'")
                .await,
            n
        );
        assert_eq!(count("SELECT COUNT(*) FROM finding_events").await, n);
        assert_eq!(
            store
                .mark_for_reaping("run-2".into(), at, "owner".into())
                .await
                .expect("marks"),
            0,
            "marked once"
        );
    }
}
