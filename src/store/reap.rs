//! Store calls of the reaper: deletion marks on findings, the outbox, and each decision
//! appended to the audit chain ([`super::chain`]) in the same transaction as its finding.

use chrono::{DateTime, TimeDelta, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::chain::append;
use super::{Store, StoreError, bad, ms, stored_tags};
use crate::model::{Arn, ControllerRef, MailKind, ProjectName, Tags, Verdict};
use crate::resource::{AuditEntry, ReapCandidate};

/// What a recorded decision does to its finding, in the same transaction as the audit record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReapUpdate {
    /// Only remember the decision (so a repeat of it is recorded once).
    Decision,
    /// Confirmed gone: the finding resolves and the resource is marked gone.
    Gone,
    /// An interrupted delete confirmed after its finding was already resolved.
    Settled,
    /// Clear the mark: the next pass marks the finding afresh (new deadline, new notice).
    Unmark,
    /// A pass skipped it: recorded once for a run of skips for one reason; a repeat appends
    /// no record, it counts on the finding (`skip_count`, `last_skipped_at`).
    Skipped,
    /// The attempt failed; try again from `retry_at`.
    Failed { retry_at: DateTime<Utc> },
    /// An access key was deactivated: the first step of its deletion is done, the second
    /// waits `enforcement.deactivation_grace` from the record's time.
    Deactivated,
}

/// A finding to mark: id, ARN, grace (s), packed tags, lease owner, lease id, verdict, project,
/// creation time (ms).
pub(super) type ToMark = (
    i64,
    String,
    i64,
    String,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
    Option<i64>,
);

/// The owner: the lease's, else the owner tag's.
fn owner_of(lease_owner: Option<String>, tags: &Tags, owner_key: &str) -> Option<String> {
    lease_owner.or_else(|| {
        tags.get(owner_key)
            .filter(|v| !v.trim().is_empty())
            .map(str::to_owned)
    })
}

/// The query of reap candidates: findings matching `filter` (over `findings f`); `p1` is the
/// placeholder of the deadline an unmarked finding reads as (`?1` or `$1`). Both engines read
/// its rows through [`RawCandidate`].
pub(super) fn candidates_sql(filter: &str, p1: &str) -> String {
    format!(
        "SELECT f.id, f.arn, r.account, r.region, r.resource_type, f.project, f.verdict,
                f.reason, f.lease_id, l.owner, r.tags, COALESCE(f.deadline, {p1}), r.lease_ended_at,
                f.attempts, f.next_attempt_at, f.reap_state, f.last_decision, f.marked_owner,
                r.source, r.created_at, r.creator, f.skip_count, f.last_skipped_at,
                f.deactivated_at
         FROM findings f JOIN resources r ON r.arn = f.arn
         LEFT JOIN leases l ON l.id = f.lease_id
         WHERE {filter}
         ORDER BY COALESCE(f.deadline, {p1}), f.arn"
    )
}

/// A row of [`candidates_sql`] before its columns are checked.
pub(super) struct RawCandidate {
    pub(super) finding_id: i64,
    pub(super) arn: String,
    pub(super) account: String,
    pub(super) region: String,
    pub(super) resource_type: String,
    pub(super) project: Option<String>,
    pub(super) verdict: String,
    pub(super) reason: String,
    pub(super) lease_id: Option<String>,
    pub(super) lease_owner: Option<String>,
    pub(super) tags: String,
    pub(super) deadline: i64,
    pub(super) lease_ended_at: Option<i64>,
    pub(super) attempts: i64,
    pub(super) next_attempt_at: Option<i64>,
    pub(super) reap_state: Option<String>,
    pub(super) last_decision: Option<String>,
    pub(super) marked_owner: Option<String>,
    pub(super) source: String,
    pub(super) created_at: Option<i64>,
    pub(super) creator: Option<String>,
    pub(super) skip_count: i64,
    pub(super) last_skipped_at: Option<i64>,
    pub(super) deactivated_at: Option<i64>,
}

impl RawCandidate {
    fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(RawCandidate {
            finding_id: r.get(0)?,
            arn: r.get(1)?,
            account: r.get(2)?,
            region: r.get(3)?,
            resource_type: r.get(4)?,
            project: r.get(5)?,
            verdict: r.get(6)?,
            reason: r.get(7)?,
            lease_id: r.get(8)?,
            lease_owner: r.get(9)?,
            tags: r.get(10)?,
            deadline: r.get(11)?,
            lease_ended_at: r.get(12)?,
            attempts: r.get(13)?,
            next_attempt_at: r.get(14)?,
            reap_state: r.get(15)?,
            last_decision: r.get(16)?,
            marked_owner: r.get(17)?,
            source: r.get(18)?,
            created_at: r.get(19)?,
            creator: r.get(20)?,
            skip_count: r.get(21)?,
            last_skipped_at: r.get(22)?,
            deactivated_at: r.get(23)?,
        })
    }

    pub(super) fn into_candidate(self, owner_key: &str) -> Result<ReapCandidate, StoreError> {
        let id = self.finding_id;
        let corrupt =
            |what: &str, v: &str| StoreError::Corrupt(format!("finding {id}: bad {what} `{v}`"));
        let time = |what: &str, ms: i64| {
            DateTime::from_timestamp_millis(ms).ok_or_else(|| corrupt(what, &ms.to_string()))
        };
        let opt_time = |what: &str, ms: Option<i64>| ms.map(|t| time(what, t)).transpose();
        let count =
            |what: &str, n: i64| u32::try_from(n).map_err(|_| corrupt(what, &n.to_string()));
        let tags = stored_tags(&self.tags).map_err(|_| corrupt("tags", &self.tags))?;
        let controller = ControllerRef::of_tags(&tags, &self.account, &self.region);
        Ok(ReapCandidate {
            finding_id: id,
            arn: Arn::parse(&self.arn).map_err(|_| corrupt("arn", &self.arn))?,
            resource_type: self.resource_type,
            project: self
                .project
                .map(|p| ProjectName::parse(&p).map_err(|_| corrupt("project", &p)))
                .transpose()?,
            verdict: Verdict::parse(&self.verdict)
                .ok_or_else(|| corrupt("verdict", &self.verdict))?,
            reason: self.reason,
            lease_id: self.lease_id,
            owner: owner_of(self.lease_owner, &tags, owner_key),
            // The owner it was marked for; unmarked (or marked before the column), the last
            // walk's.
            owner_tag: match self.marked_owner {
                Some(o) => Some(o).filter(|o| !o.is_empty()),
                None => tags.get(owner_key).map(str::to_owned),
            },
            deadline: time("deadline", self.deadline)?,
            lease_ended_at: opt_time("lease_ended_at", self.lease_ended_at)?,
            attempts: count("attempts", self.attempts)?,
            next_attempt_at: opt_time("next_attempt_at", self.next_attempt_at)?,
            reap_state: self.reap_state,
            deactivated_at: opt_time("deactivated_at", self.deactivated_at)?,
            last_decision: self
                .last_decision
                .map(|d| d.parse().map_err(|_| corrupt("last_decision", &d)))
                .transpose()?,
            tagless: tags.is_empty(),
            controller,
            source: self
                .source
                .parse()
                .map_err(|_| corrupt("source", &self.source))?,
            created_at: opt_time("created_at", self.created_at)?,
            creator: self.creator,
            skip_count: count("skip_count", self.skip_count)?,
            last_skipped_at: opt_time("last_skipped_at", self.last_skipped_at)?,
            account: self.account,
            region: self.region,
        })
    }
}

/// Findings matching `filter` (over `findings f`), as reap candidates; `?1` is the
/// deadline an unmarked finding reads as, `?2…` are `args`.
fn candidates(
    c: &Connection,
    filter: &str,
    args: &[&dyn rusqlite::ToSql],
    unmarked_deadline: i64,
    owner_key: &str,
) -> Result<Vec<ReapCandidate>, StoreError> {
    let mut stmt = c.prepare_cached(&candidates_sql(filter, "?1"))?;
    let mut params: Vec<&dyn rusqlite::ToSql> = vec![&unmarked_deadline];
    params.extend_from_slice(args);
    let rows = stmt
        .query_map(params.as_slice(), RawCandidate::from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter()
        .map(|raw| raw.into_candidate(owner_key))
        .collect()
}

fn withdraw_stale_plans(c: &Connection, at: DateTime<Utc>) -> Result<usize, StoreError> {
    Ok(c.prepare_cached(
        "UPDATE outbox SET sent_at = ?1,
                last_error = 'withdrawn: no longer planned for deletion at that deadline'
         WHERE kind = ?2 AND sent_at IS NULL
           AND EXISTS (SELECT 1 FROM findings f WHERE f.id = json_extract(outbox.payload, '$.finding_id'))
           AND NOT EXISTS (SELECT 1 FROM findings f
                           WHERE f.id = json_extract(outbox.payload, '$.finding_id')
                             AND f.resolved_at IS NULL AND f.deadline IS NOT NULL
                             AND outbox.dedupe_key = ?2 || ':' || f.id || ':' || f.deadline)",
    )?
    .execute(params![ms(at), MailKind::DeletionPlanned.as_str()])?)
}

/// When a finding marked at `at` is due: the rule's grace after the mark, except that an
/// untagged resource whose creation time is known is due the grace after its creation (so
/// "untagged for 7 days" counts its age), never before the mark.
fn deadline_of(
    at: DateTime<Utc>,
    grace_s: i64,
    verdict: &str,
    created_ms: Option<i64>,
) -> DateTime<Utc> {
    let grace = TimeDelta::seconds(grace_s);
    let created = created_ms.and_then(DateTime::from_timestamp_millis);
    match created {
        Some(created) if verdict == Verdict::Untagged.as_str() => (created + grace).max(at),
        _ => at + grace,
    }
}

/// What marking one finding writes: its deadline (ms) and the owner tag it was marked for,
/// the `deletion-planned` notice (recipient, dedupe key, payload), the `marked` event.
pub(super) struct Mark {
    pub(super) id: i64,
    pub(super) deadline: i64,
    pub(super) owner_tag: String,
    pub(super) owner: Option<String>,
    pub(super) dedupe_key: String,
    pub(super) payload: String,
    pub(super) verdict: String,
    pub(super) detail: String,
}

impl Mark {
    pub(super) fn of(row: ToMark, at: DateTime<Utc>, owner_key: &str) -> Result<Mark, StoreError> {
        let (id, arn, grace_s, tags, lease_owner, lease_id, verdict, project, created) = row;
        let deadline = deadline_of(at, grace_s, &verdict, created);
        let tags = stored_tags(&tags)
            .map_err(|_| StoreError::Corrupt(format!("resource {arn}: bad tags `{tags}`")))?;
        let payload = serde_json::json!({
            "finding_id": id, "arn": arn, "verdict": verdict, "project": project,
            "lease_id": lease_id, "deadline": deadline,
        });
        Ok(Mark {
            id,
            deadline: ms(deadline),
            owner_tag: tags.get(owner_key).unwrap_or_default().to_owned(),
            owner: owner_of(lease_owner, &tags, owner_key),
            // The notice queued for each mark: keyed by finding and deadline.
            dedupe_key: format!("{}:{id}:{}", MailKind::DeletionPlanned, ms(deadline)),
            payload: payload.to_string(),
            verdict,
            detail: format!("deletion planned for {}", deadline.to_rfc3339()),
        })
    }
}

/// The open `reap` findings not yet marked, read through the `findings_to_mark` index (a
/// literal, for `concat!` into PostgreSQL's locking read).
macro_rules! to_mark {
    () => {
        "SELECT f.id, f.arn, r.grace_s, r.tags, l.owner, f.lease_id, f.verdict, f.project, r.created_at
         FROM findings f JOIN resources r ON r.arn = f.arn
         LEFT JOIN leases l ON l.id = f.lease_id
         WHERE f.resolved_at IS NULL AND f.action = 'reap' AND f.deadline IS NULL
         ORDER BY f.id"
    };
}
pub(super) use to_mark;

const TO_MARK: &str = to_mark!();

impl Store {
    /// Closes the pending `deletion-planned` notices whose finding no longer carries that mark
    /// (its lease was renewed, it was protected or resolved, or it was marked again with
    /// another deadline), so that a digest held back (quiet hours) does not announce a
    /// deletion that is off. A notice whose finding row does not exist is left alone. Returns
    /// how many were withdrawn.
    pub async fn withdraw_stale_plans(&self, at: DateTime<Utc>) -> Result<u64, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.withdraw_stale_plans(at).await;
        }
        self.writer()?
            .write(move |c| Ok(withdraw_stale_plans(c, at)? as u64))
            .await
    }

    /// Marks every open `reap` finding that has no deadline yet (deadline = `at` + the rule's
    /// grace), queues its owner a `deletion-planned` notification and records a `marked` event
    /// of the finding; clears
    /// the mark of findings whose action is no longer `reap`. Returns how many were marked.
    pub async fn mark_for_reaping(
        &self,
        run_id: String,
        at: DateTime<Utc>,
        owner_key: String,
    ) -> Result<u64, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.mark_for_reaping(run_id, at, owner_key).await;
        }
        self.writer()?
            .write(move |c| {
                c.prepare_cached(
                    "UPDATE findings SET deadline = NULL, reap_state = NULL, last_decision = NULL,
                                         attempts = 0, next_attempt_at = NULL, deactivated_at = NULL, last_error = NULL,
                                         marked_owner = NULL, skip_seq = NULL, skip_count = 0,
                                         last_skipped_at = NULL
                     WHERE resolved_at IS NULL AND action != 'reap' AND deadline IS NOT NULL",
                )?
                .execute([])?;
                let rows: Vec<ToMark> = c
                    .prepare_cached(TO_MARK)?
                    .query_map([], |r| {
                        Ok((
                            r.get(0)?,
                            r.get(1)?,
                            r.get(2)?,
                            r.get(3)?,
                            r.get(4)?,
                            r.get(5)?,
                            r.get(6)?,
                            r.get(7)?,
                            r.get(8)?,
                        ))
                    })?
                    .collect::<Result<_, _>>()?;
                let marked = rows.len() as u64;
                // Looked up once: a pass may mark thousands at a time.
                let mut set_deadline = c.prepare_cached(
                    "UPDATE findings SET deadline = ?2, marked_owner = ?3 WHERE id = ?1",
                )?;
                let mut notice = c.prepare_cached(super::outbox::INSERT_OUTBOX)?;
                // A transition of the finding (no deletion is decided yet), so it goes with the
                // finding's other events, not into the reaper's audit chain.
                let mut event = c.prepare_cached(super::inventory::INSERT_EVENT)?;
                for row in rows {
                    let m = Mark::of(row, at, &owner_key)?;
                    set_deadline.execute(params![m.id, m.deadline, m.owner_tag])?;
                    notice.execute(params![
                        MailKind::DeletionPlanned.as_str(),
                        m.owner,
                        m.dedupe_key,
                        m.payload,
                        ms(at)
                    ])?;
                    event.execute(params![m.id, run_id, ms(at), "marked", m.verdict, m.detail])?;
                }
                Ok(marked)
            })
            .await
    }

    /// Every open finding marked for deletion, earliest deadline first.
    pub async fn reap_candidates(
        &self,
        owner_key: String,
    ) -> Result<Vec<ReapCandidate>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.reap_candidates(owner_key).await;
        }
        self.read(move |c| {
            candidates(
                c,
                "f.resolved_at IS NULL AND f.deadline IS NOT NULL",
                &[],
                0,
                &owner_key,
            )
        })
        .await
    }

    /// The marked findings whose deadline has come (`deadline <= now`), earliest first: what
    /// a pass's act step plans. Found through the deadline index, so a pass with thousands
    /// marked and none due reads nothing.
    pub async fn due_reap_candidates(
        &self,
        owner_key: String,
        now: DateTime<Utc>,
    ) -> Result<Vec<ReapCandidate>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.due_reap_candidates(owner_key, now).await;
        }
        self.read(move |c| {
            candidates(
                c,
                "f.resolved_at IS NULL AND f.deadline IS NOT NULL AND f.deadline <= ?2",
                &[&ms(now)],
                0,
                &owner_key,
            )
        })
        .await
    }

    /// Every live resource whose tags name a controller, with that controller: what a
    /// controller's deletion would take with it. Read through `resources_controlled`.
    pub async fn live_controlled(&self) -> Result<Vec<(Arn, ControllerRef)>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.live_controlled().await;
        }
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT arn, account, region, controller FROM resources
                 WHERE controller IS NOT NULL AND gone_at IS NULL",
            )?;
            let rows = stmt
                .query_map([], |r| {
                    let text: String = r.get(3)?;
                    let (account, region): (String, String) = (r.get(1)?, r.get(2)?);
                    let controller = ControllerRef::from_stored(&text, &account, &region)
                        .ok_or_else(|| bad(3, "controller", &text))?;
                    Ok((r.get(0)?, controller))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// Open findings marked for deletion, by project (`unknown` for none).
    pub async fn marked_by_project(&self) -> Result<Vec<(String, i64)>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.marked_by_project().await;
        }
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT COALESCE(project, 'unknown'), COUNT(*) FROM findings
                 WHERE resolved_at IS NULL AND deadline IS NOT NULL GROUP BY 1",
            )?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// Whether `arn` has an open finding marked for deletion.
    pub async fn is_marked(&self, arn: String) -> Result<bool, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.is_marked(arn).await;
        }
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT 1 FROM findings
                 WHERE arn = ?1 AND resolved_at IS NULL AND deadline IS NOT NULL",
            )?;
            Ok(stmt.exists([arn])?)
        })
        .await
    }

    /// The open findings of these ARNs, marked or not (an unmarked one's deadline reads as
    /// `now`), for reaping by hand.
    pub async fn open_findings_for(
        &self,
        arns: Vec<String>,
        owner_key: String,
        now: DateTime<Utc>,
    ) -> Result<Vec<ReapCandidate>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.open_findings_for(arns, owner_key, now).await;
        }
        self.read(move |c| {
            let mut out = Vec::new();
            for arn in &arns {
                out.extend(candidates(
                    c,
                    "f.resolved_at IS NULL AND f.arn = ?2",
                    &[arn],
                    ms(now),
                    &owner_key,
                )?);
            }
            Ok(out)
        })
        .await
    }

    /// Findings whose delete was started but never recorded (the daemon died) and that a walk
    /// has since resolved because the resource was gone (or terminated): the delete did land.
    /// Those a walk resolved for another reason (now leased or protected: the resource is
    /// there, so the call never reached AWS) just lose the `deleting` note.
    pub async fn interrupted_deletes_resolved(
        &self,
        owner_key: String,
    ) -> Result<Vec<ReapCandidate>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.interrupted_deletes_resolved(owner_key).await;
        }
        self.writer()?
            .write(move |c| {
                c.prepare_cached(
                    "UPDATE findings SET reap_state = NULL
                     WHERE reap_state IN ('deleting', 'with-controller') AND resolved_at IS NOT NULL
                       AND resolution NOT IN ('gone', 'terminated')",
                )?
                .execute([])?;
                candidates(
                    c,
                    "f.reap_state IN ('deleting', 'with-controller') AND f.resolved_at IS NOT NULL",
                    &[],
                    0,
                    &owner_key,
                )
            })
            .await
    }

    /// Notes that a delete call is about to start (so a crash before its outcome is known is
    /// settled by the next pass's re-read), and that the findings `members` go with it (a
    /// controller's: the next walk that finds one gone confirms it,
    /// [`Self::interrupted_deletes_resolved`]), if `fence` still holds the act lock at
    /// `wall_now` (wall-clock time); false, and nothing noted, when it does not: the delete
    /// must not run.
    pub async fn record_deleting(
        &self,
        finding_id: i64,
        members: Vec<i64>,
        fence: String,
        wall_now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        if let Some(pg) = self.pg() {
            return pg
                .record_deleting(finding_id, members, fence, wall_now)
                .await;
        }
        self.writer()?
            .write(move |c| {
                let n = c
                    .prepare_cached(
                        "UPDATE findings SET reap_state = 'deleting' WHERE id = ?1
                           AND EXISTS (SELECT 1 FROM locks WHERE name = ?2 AND holder = ?3
                                                            AND expires_at > ?4)",
                    )?
                    .execute(params![finding_id, super::ACT_LOCK, fence, ms(wall_now)])?;
                if n != 1 {
                    return Ok(false);
                }
                let mut going = c.prepare_cached(
                    "UPDATE findings SET reap_state = 'with-controller'
                     WHERE id = ?1 AND resolved_at IS NULL",
                )?;
                for id in members {
                    going.execute([id])?;
                }
                Ok(true)
            })
            .await
    }

    /// Undoes what [`Self::record_deleting`] noted of members whose controller stayed.
    pub async fn clear_going_with(&self, ids: Vec<i64>) -> Result<(), StoreError> {
        if let Some(pg) = self.pg() {
            return pg.clear_going_with(ids).await;
        }
        self.writer()?
            .write(move |c| {
                let mut clear = c.prepare_cached(
                    "UPDATE findings SET reap_state = NULL
                     WHERE id = ?1 AND reap_state = 'with-controller' AND resolved_at IS NULL",
                )?;
                for id in ids {
                    clear.execute([id])?;
                }
                Ok(())
            })
            .await
    }

    /// Appends a decision to the audit log and applies `update` to the finding, atomically.
    /// Returns the record's seq; for a skip that repeats the finding's last one (same
    /// detail, nothing else decided in between), the seq of that first record, counted on the
    /// finding instead of appended.
    pub async fn record_reap(
        &self,
        finding_id: Option<i64>,
        entry: AuditEntry,
        update: ReapUpdate,
    ) -> Result<i64, StoreError> {
        let key = self.audit_key()?;
        if let Some(pg) = self.pg() {
            return pg.record_reap(key, finding_id, entry, update).await;
        }
        self.writer()?
            .write(move |c| {
                let at = ms(entry.at);
                if let (Some(id), ReapUpdate::Skipped) = (finding_id, &update) {
                    let first: Option<i64> = c
                        .prepare_cached(
                            "UPDATE findings SET skip_count = skip_count + 1, last_skipped_at = ?2
                             WHERE id = ?1 AND last_decision = ?3 AND skip_seq IS NOT NULL
                               AND (SELECT detail FROM audit_log WHERE seq = findings.skip_seq) = ?4
                             RETURNING skip_seq",
                        )?
                        .query_row(params![id, at, entry.decision, entry.detail], |r| r.get(0))
                        .optional()?;
                    if let Some(first) = first {
                        return Ok(first);
                    }
                }
                let seq = append(c, &key, &entry)?;
                let Some(id) = finding_id else {
                    return Ok(seq);
                };
                if update != ReapUpdate::Skipped {
                    // Any other decision ends a run of skips: the next one is recorded.
                    c.prepare_cached(
                        "UPDATE findings SET skip_seq = NULL, skip_count = 0, last_skipped_at = NULL
                         WHERE id = ?1 AND skip_seq IS NOT NULL",
                    )?
                    .execute([id])?;
                }
                match &update {
                    ReapUpdate::Skipped => {
                        c.prepare_cached(
                            "UPDATE findings SET last_decision = ?2, skip_seq = ?3, skip_count = 1,
                                                 last_skipped_at = ?4
                             WHERE id = ?1",
                        )?
                        .execute(params![id, entry.decision, seq, at])?;
                    }
                    ReapUpdate::Decision => {
                        c.prepare_cached("UPDATE findings SET last_decision = ?2 WHERE id = ?1")?
                            .execute(params![id, entry.decision])?;
                    }
                    ReapUpdate::Gone => {
                        c.prepare_cached(
                            "UPDATE findings SET reap_state = 'deleted', last_decision = ?2,
                                                 resolved_at = ?3, updated_at = ?3, resolution = 'deleted'
                             WHERE id = ?1",
                        )?
                        .execute(params![id, entry.decision, at])?;
                        c.prepare_cached(
                            "UPDATE resources SET gone_at = COALESCE(gone_at, ?2)
                             WHERE arn = (SELECT arn FROM findings WHERE id = ?1)",
                        )?
                        .execute(params![id, at])?;
                        c.prepare_cached(
                            "INSERT INTO finding_events (finding_id, run_id, at, kind, verdict, detail)
                             SELECT id, ?2, ?3, 'resolved', verdict, 'deleted' FROM findings WHERE id = ?1",
                        )?
                        .execute(params![id, entry.run_id, at])?;
                    }
                    ReapUpdate::Unmark => {
                        c.prepare_cached(
                            "UPDATE findings SET deadline = NULL, reap_state = NULL, last_decision = ?2,
                                                 attempts = 0, next_attempt_at = NULL, deactivated_at = NULL, marked_owner = NULL
                             WHERE id = ?1",
                        )?
                        .execute(params![id, entry.decision])?;
                    }
                    ReapUpdate::Settled => {
                        c.prepare_cached(
                            "UPDATE findings SET reap_state = 'deleted', last_decision = ?2 WHERE id = ?1",
                        )?
                        .execute(params![id, entry.decision])?;
                    }
                    ReapUpdate::Deactivated => {
                        c.prepare_cached(
                            "UPDATE findings SET reap_state = NULL, last_decision = ?2, deactivated_at = ?3,
                                                 attempts = 0, next_attempt_at = NULL, last_error = NULL
                             WHERE id = ?1",
                        )?
                        .execute(params![id, entry.decision, at])?;
                    }
                    ReapUpdate::Failed { retry_at } => {
                        c.prepare_cached(
                            "UPDATE findings SET reap_state = NULL, last_decision = ?2, attempts = attempts + 1,
                                                 next_attempt_at = ?3, last_error = ?4
                             WHERE id = ?1",
                        )?
                        .execute(params![id, entry.decision, ms(*retry_at), entry.detail])?;
                    }
                }
                Ok(seq)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An untagged resource's age counts toward its grace (from its creation, never before the
    /// mark); any other verdict, or an unknown age, counts from the mark.
    #[test]
    fn an_untagged_resources_age_counts_toward_its_grace() {
        let at = DateTime::from_timestamp(1_800_000_000, 0).expect("time");
        let day = 86_400;
        let ms = |t: DateTime<Utc>| t.timestamp_millis();
        let untagged = Verdict::Untagged.as_str();
        // Created 10 days ago, 7 days' grace: due at the mark, not in the past.
        let old = ms(at - TimeDelta::days(10));
        assert_eq!(deadline_of(at, 7 * day, untagged, Some(old)), at);
        // Created 2 days ago: due 5 days after the mark.
        let young = ms(at - TimeDelta::days(2));
        assert_eq!(
            deadline_of(at, 7 * day, untagged, Some(young)),
            at + TimeDelta::days(5)
        );
        // Age unknown, or another verdict: the grace runs from the mark.
        assert_eq!(
            deadline_of(at, 7 * day, untagged, None),
            at + TimeDelta::days(7)
        );
        assert_eq!(
            deadline_of(at, 7 * day, "expired", Some(young)),
            at + TimeDelta::days(7)
        );
    }

    /// Skips of one finding for one reason are one audit record and a count; a new reason, or
    /// another decision in between, starts a new record. Checked through the skips `(detail,
    /// update)` each expecting (records in the log, skip_count).
    #[tokio::test]
    async fn repeated_skips_are_one_record_and_a_count() {
        let dir = tempfile::tempdir().expect("temp dir");
        let key = || crate::audit::AuditKey::from_hex(&"05".repeat(32)).expect("key");
        for (engine, store) in Store::open_both_for_test(dir.path()).await {
            eprintln!("{engine}");
            skips_counted(store.with_audit_key(key())).await;
        }
    }

    async fn skips_counted(store: Store) {
        use crate::model::{Decision, ReapMode};
        store
            .execute_batch_for_test(
                "INSERT INTO resources (arn, account, region, resource_type, tags, first_seen,
                     last_seen, verdict, reason, action, grace_s, last_run)
                 VALUES ('arn:aws:ec2:us-east-1:123456789012:volume/vol-1', 'a', 'r',
                     'ec2:volume', '', 0, 0, 'expired', '', 'reap', 0, 'x');
                 INSERT INTO findings (id, arn, verdict, action, reason, account, region,
                     resource_type, opened_at, updated_at, deadline)
                 VALUES (1, 'arn:aws:ec2:us-east-1:123456789012:volume/vol-1', 'expired',
                     'reap', '', 'a', 'r', 'ec2:volume', 0, 0, 0);",
            )
            .await;
        let t0 = DateTime::from_timestamp(1_800_000_000, 0).expect("time");
        let steps = [
            (
                "account not verified",
                Decision::Skipped,
                ReapUpdate::Skipped,
                1,
                1,
            ),
            (
                "account not verified",
                Decision::Skipped,
                ReapUpdate::Skipped,
                1,
                2,
            ),
            (
                "account not verified",
                Decision::Skipped,
                ReapUpdate::Skipped,
                1,
                3,
            ),
            (
                "held back: i-1 was not deleted",
                Decision::Skipped,
                ReapUpdate::Skipped,
                2,
                1,
            ),
            (
                "held back: i-1 was not deleted",
                Decision::Skipped,
                ReapUpdate::Skipped,
                2,
                2,
            ),
            (
                "boom",
                Decision::Failed,
                ReapUpdate::Failed { retry_at: t0 },
                3,
                0,
            ),
            (
                "held back: i-1 was not deleted",
                Decision::Skipped,
                ReapUpdate::Skipped,
                4,
                1,
            ),
            ("by hand", Decision::Skipped, ReapUpdate::Decision, 5, 0),
            ("by hand", Decision::Skipped, ReapUpdate::Skipped, 6, 1),
        ];
        for (i, (detail, decision, update, records, count)) in steps.into_iter().enumerate() {
            let at = t0 + TimeDelta::minutes(15 * i as i64);
            let entry = AuditEntry {
                at,
                run_id: Some(format!("run-{i}")),
                actor: "scheduler".into(),
                mode: ReapMode::Pass,
                arn: "arn:aws:ec2:us-east-1:123456789012:volume/vol-1".into(),
                lease_id: None,
                verdict: Some("expired".into()),
                decision,
                detail: detail.into(),
            };
            let seq = store
                .record_reap(Some(1), entry, update)
                .await
                .expect("recorded");
            let row = store
                .text_rows_for_test(
                    "SELECT (SELECT COUNT(*) FROM audit_log), (SELECT MAX(seq) FROM audit_log),
                            skip_count, last_skipped_at FROM findings WHERE id = 1",
                )
                .await;
            let num = |col: usize| -> Option<i64> {
                row[0][col].as_deref().map(|v| v.parse().expect("a number"))
            };
            let (n, max, skips, last) = (num(0), num(1), num(2), num(3));
            let (n, max, skips) = (n.expect("count"), max.expect("max"), skips.expect("skips"));
            assert_eq!((n, skips), (records, count), "step {i}: {detail}");
            let counted = count > 1;
            assert!(counted || seq == max, "step {i}: a new record is returned");
            let want_last = (count > 0).then(|| at.timestamp_millis());
            assert_eq!(last, want_last, "step {i}: when the latest skip was");
        }
        assert_eq!(store.audit_verify(None).await.expect("reads"), Ok(6));
    }

    /// The marking look-up runs every pass: it must read the unmarked `reap` findings through
    /// their index, not every finding ever opened.
    #[tokio::test]
    async fn marking_reads_through_its_index() {
        let dir = tempfile::tempdir().expect("temp dir");
        for (engine, store) in Store::open_both_for_test(dir.path()).await {
            eprintln!("{engine}");
            let Some(_) = store.pg() else {
                let plan = store
                    .text_rows_for_test(&format!("EXPLAIN QUERY PLAN {TO_MARK}"))
                    .await;
                let plan: Vec<String> = plan.into_iter().filter_map(|r| r[3].clone()).collect();
                assert!(
                    plan.iter()
                        .any(|step| step.contains("USING INDEX findings_to_mark")),
                    "{plan:?}"
                );
                assert!(!plan.iter().any(|step| step == "SCAN f"), "{plan:?}");
                continue;
            };
            // An empty table is read whole whatever its indexes: with scans of whole tables
            // priced out, the plan shows whether the index serves the query at all.
            let plan = store
                .text_rows_for_test(&format!(
                    "BEGIN; SET LOCAL enable_seqscan = off; EXPLAIN {TO_MARK}; COMMIT"
                ))
                .await;
            let plan: Vec<String> = plan.into_iter().filter_map(|r| r[0].clone()).collect();
            assert!(
                plan.iter()
                    .any(|step| step.contains("using findings_to_mark on findings f")),
                "{plan:?}"
            );
        }
    }

    /// The reaper's round on a store: marking (a notice and an event per mark, a stale mark
    /// cleared), the candidates it reads, a withdrawn plan, the controlled resources, the
    /// fenced `deleting` note with its controller's members, and interrupted deletes settled.
    #[tokio::test]
    async fn marks_candidates_and_the_fenced_delete() {
        let dir = tempfile::tempdir().expect("temp dir");
        let key = || crate::audit::AuditKey::from_hex(&"06".repeat(32)).expect("key");
        for (engine, store) in Store::open_both_for_test(dir.path()).await {
            eprintln!("{engine}");
            reaper_round(store.with_audit_key(key())).await;
        }
    }

    async fn reaper_round(store: Store) {
        use crate::clock::{Clock, SystemClock};
        use crate::model::{Decision, ReapMode};
        use crate::store::{ACT_LOCK, LockHolder};
        let arn = |n: &str| format!("arn:aws:ec2:us-east-1:123456789012:volume/vol-{n}");
        let (a, b, c, d, e) = (arn("a"), arn("b"), arn("c"), arn("d"), arn("e"));
        let resource = |arn: &str, tags: &str, controller: &str| {
            format!(
                "INSERT INTO resources (arn, account, region, resource_type, tags, first_seen,
                     last_seen, verdict, reason, action, grace_s, last_run, controller)
                 VALUES ('{arn}', '123456789012', 'us-east-1', 'ec2:volume', '{tags}', 0, 0,
                     'expired', '', 'reap', 3600, 'x', {controller});"
            )
        };
        let finding = |id: i64, arn: &str, action: &str, rest: &str| {
            format!(
                "INSERT INTO findings (id, arn, verdict, action, reason, account, region,
                     resource_type, opened_at, updated_at, project, deadline, resolved_at,
                     resolution, reap_state)
                 VALUES ({id}, '{arn}', 'expired', '{action}', 'r', '123456789012', 'us-east-1',
                     'ec2:volume', 0, 0, {rest});"
            )
        };
        let asg = "autoscaling:autoScalingGroup web";
        store
            .execute_batch_for_test(
                &[
                    resource(&a, r#"{"ephemera:owner":"alice@example.com"}"#, "NULL"),
                    resource(&b, "", "NULL"),
                    resource(&c, "", "NULL"),
                    resource(&d, "", "NULL"),
                    resource(&e, "", &format!("'{asg}'")),
                    // To mark; marked before but no longer to reap; deletes interrupted and
                    // confirmed by a walk (gone) or not (leased); a controller's member.
                    finding(1, &a, "reap", "'web', NULL, NULL, NULL, NULL"),
                    finding(2, &b, "report", "NULL, 5, NULL, NULL, NULL"),
                    finding(3, &c, "reap", "NULL, 5, 9, 'gone', 'deleting'"),
                    finding(4, &d, "reap", "NULL, 5, 9, 'leased', 'deleting'"),
                    finding(5, &e, "report", "NULL, NULL, NULL, NULL, NULL"),
                ]
                .concat(),
            )
            .await;
        let owner = || "ephemera:owner".to_owned();
        let t0 = DateTime::from_timestamp(1_800_000_000, 0).expect("time");
        let due = t0 + TimeDelta::hours(1);
        let text = |sql: &'static str| {
            let store = store.clone();
            async move { store.text_rows_for_test(sql).await }
        };

        assert_eq!(
            store
                .mark_for_reaping("run-1".into(), t0, owner())
                .await
                .expect("marks"),
            1
        );
        assert!(store.is_marked(a.clone()).await.expect("reads"));
        assert!(
            !store.is_marked(b.clone()).await.expect("reads"),
            "the stale mark is cleared"
        );
        assert_eq!(
            store.marked_by_project().await.expect("reads"),
            [("web".to_owned(), 1)]
        );
        let marked = store.reap_candidates(owner()).await.expect("reads");
        assert_eq!(marked.len(), 1, "{marked:?}");
        let m = &marked[0];
        assert_eq!(
            (m.finding_id, m.arn.to_string(), m.deadline),
            (1, a.clone(), due)
        );
        assert_eq!(m.owner.as_deref(), Some("alice@example.com"));
        assert_eq!(m.owner_tag.as_deref(), Some("alice@example.com"));
        assert_eq!(m.project.as_ref().map(|p| p.as_str()), Some("web"));
        assert_eq!((m.attempts, m.skip_count, m.tagless), (0, 0, false));
        assert!(
            store
                .due_reap_candidates(owner(), t0)
                .await
                .expect("reads")
                .is_empty()
        );
        assert_eq!(
            store
                .due_reap_candidates(owner(), due)
                .await
                .expect("reads")
                .len(),
            1
        );
        let planned_key = format!("deletion-planned:1:{}", due.timestamp_millis());
        let s = |v: &str| Some(v.to_owned());
        assert_eq!(
            text("SELECT recipient, dedupe_key, sent_at FROM outbox").await,
            [vec![s("alice@example.com"), s(&planned_key), None]]
        );
        assert_eq!(
            text("SELECT finding_id, run_id, kind FROM finding_events").await,
            [vec![s("1"), s("run-1"), s("marked")]]
        );
        assert_eq!(
            store
                .mark_for_reaping("run-2".into(), due, owner())
                .await
                .expect("marks"),
            0,
            "marked once"
        );

        // The plan holds: nothing withdrawn. Unmarked: its notice is withdrawn, once.
        assert_eq!(store.withdraw_stale_plans(t0).await.expect("withdraws"), 0);
        let entry = AuditEntry {
            at: t0,
            run_id: Some("run-1".into()),
            actor: "scheduler".into(),
            mode: ReapMode::Pass,
            arn: a.clone(),
            lease_id: None,
            verdict: Some("expired".into()),
            decision: Decision::Skipped,
            detail: "renewed".into(),
        };
        // A deactivation (an access key's first step) is remembered with its time, keeps the
        // mark, and resets the attempts; an unmark forgets it with the mark.
        store
            .record_reap(
                Some(1),
                AuditEntry {
                    decision: Decision::Deactivated,
                    detail: "deactivated".into(),
                    ..entry.clone()
                },
                ReapUpdate::Deactivated,
            )
            .await
            .expect("recorded");
        let m = store.reap_candidates(owner()).await.expect("reads");
        assert_eq!(
            m.iter()
                .map(|c| (c.finding_id, c.deactivated_at, c.last_decision, c.deadline))
                .collect::<Vec<_>>(),
            [(1, Some(t0), Some(Decision::Deactivated), due)]
        );
        store
            .record_reap(Some(1), entry, ReapUpdate::Unmark)
            .await
            .expect("recorded");
        assert!(!store.is_marked(a.clone()).await.expect("reads"));
        assert_eq!(
            text("SELECT deactivated_at FROM findings WHERE id = 1").await,
            [vec![None]]
        );
        assert_eq!(store.withdraw_stale_plans(t0).await.expect("withdraws"), 1);
        assert_eq!(store.withdraw_stale_plans(t0).await.expect("withdraws"), 0);
        assert_eq!(
            store
                .mark_for_reaping("run-3".into(), due, owner())
                .await
                .expect("marks"),
            1
        );

        let controlled = store.live_controlled().await.expect("reads");
        let want = ControllerRef::from_stored(asg, "123456789012", "us-east-1").expect("stored");
        assert_eq!(controlled, [(Arn::parse(&e).expect("arn"), want)]);
        let by_hand = store
            .open_findings_for(vec![e.clone(), arn("none"), a.clone()], owner(), t0)
            .await
            .expect("reads");
        let found: Vec<_> = by_hand.iter().map(|c| (c.finding_id, c.deadline)).collect();
        assert_eq!(
            found,
            [(5, t0), (1, due + TimeDelta::hours(1))],
            "in the order asked"
        );

        // Fenced on the act lock; the members go with it, and come back when it stays.
        let now = SystemClock.now();
        let holder = LockHolder::here("pass");
        store
            .try_lock(ACT_LOCK, holder.clone(), now, TimeDelta::seconds(60))
            .await
            .expect("store")
            .expect("free");
        let other = LockHolder::here("another pass");
        assert!(
            !store
                .record_deleting(1, vec![5], other.id, now)
                .await
                .expect("store"),
            "not its lock"
        );
        assert!(
            !store
                .record_deleting(99, vec![5], holder.id.clone(), now)
                .await
                .expect("store"),
            "no such finding"
        );
        let states = || text("SELECT id, reap_state FROM findings WHERE id IN (1, 5) ORDER BY id");
        assert_eq!(states().await, [vec![s("1"), None], vec![s("5"), None]]);
        assert!(
            store
                .record_deleting(1, vec![5], holder.id.clone(), now)
                .await
                .expect("store")
        );
        assert_eq!(
            states().await,
            [
                vec![s("1"), s("deleting")],
                vec![s("5"), s("with-controller")]
            ]
        );
        store.clear_going_with(vec![5]).await.expect("clears");
        assert_eq!(
            states().await,
            [vec![s("1"), s("deleting")], vec![s("5"), None]]
        );
        // The holder stalls past its expiry and another takes over: the first is fenced out.
        let later = now + TimeDelta::seconds(61);
        let (first, second) = (holder.id.clone(), LockHolder::here("the next pass"));
        assert!(
            !store
                .record_deleting(1, vec![], first.clone(), later)
                .await
                .expect("store"),
            "lapsed"
        );
        store
            .try_lock(ACT_LOCK, second.clone(), later, TimeDelta::seconds(60))
            .await
            .expect("store")
            .expect("lapsed lock");
        assert!(
            !store
                .record_deleting(1, vec![], first, later)
                .await
                .expect("store"),
            "taken over"
        );
        assert!(
            store
                .record_deleting(1, vec![], second.id, later)
                .await
                .expect("store")
        );

        let settled = store
            .interrupted_deletes_resolved(owner())
            .await
            .expect("reads");
        assert_eq!(
            settled.iter().map(|c| c.finding_id).collect::<Vec<_>>(),
            [3]
        );
        assert_eq!(
            text("SELECT reap_state FROM findings WHERE id = 4").await,
            [vec![None]],
            "a walk found it there: the delete never landed"
        );
    }

    /// On PostgreSQL a takeover can run beside the fenced write: one that has claimed the
    /// lock's row but not committed holds the note back, and once it commits the fence fails.
    #[tokio::test]
    async fn a_takeover_in_flight_holds_back_the_fenced_write() {
        use crate::clock::{Clock, SystemClock};
        use crate::store::{ACT_LOCK, LockHolder};
        let store = Store::open_test_postgres().await;
        store
            .execute_batch_for_test(
                "INSERT INTO resources (arn, account, region, resource_type, tags, first_seen,
                     last_seen, verdict, reason, action, grace_s, last_run)
                 VALUES ('arn:x', 'a', 'r', 'ec2:volume', '', 0, 0, 'expired', 'x', 'reap', 0, 'x');
                 INSERT INTO findings (id, arn, verdict, action, reason, account, region,
                     resource_type, opened_at, updated_at)
                 VALUES (7, 'arn:x', 'expired', 'reap', 'x', 'a', 'r', 'ec2:volume', 0, 0);",
            )
            .await;
        let now = SystemClock.now();
        let holder = LockHolder::here("pass");
        store
            .try_lock(ACT_LOCK, holder.clone(), now, TimeDelta::seconds(60))
            .await
            .expect("store")
            .expect("free");
        let pg = store.pg().expect("postgres");
        let mut thief = pg.conn().await.expect("a connection");
        let mut takeover = thief.begin().await.expect("a transaction");
        takeover
            .execute(
                "UPDATE locks SET holder = 'the next pass' WHERE name = $1",
                &[&ACT_LOCK],
            )
            .await
            .expect("claims the row");
        let fenced = tokio::spawn({
            let store = store.clone();
            async move { store.record_deleting(7, vec![], holder.id, now).await }
        });
        // Waits (on the database's state, not a clock) until the fenced write queues behind
        // the takeover's row lock.
        let waiting = async {
            loop {
                let rows = store
                    .text_rows_for_test(
                        "SELECT count(*) FROM pg_stat_activity
                         WHERE wait_event_type = 'Lock' AND query LIKE '%FROM locks%FOR SHARE%'",
                    )
                    .await;
                if rows[0][0].as_deref() == Some("1") {
                    break;
                }
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), waiting)
            .await
            .expect("the fenced write waits for the takeover");
        assert!(!fenced.is_finished());
        takeover.commit().await.expect("the takeover commits");
        drop(thief);
        let written = fenced.await.expect("joins").expect("store");
        assert!(!written, "the takeover committed first: no note");
        assert_eq!(
            store
                .text_rows_for_test("SELECT reap_state FROM findings WHERE id = 7")
                .await,
            [vec![None]]
        );
    }
}
