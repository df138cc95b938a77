//! The audit pass on PostgreSQL: runs, walks, resources, findings.
//!
//! A pass runs only on the replica that holds the act lock, and one at a time there, so the
//! pass's writes need no lock across replicas beyond that one. Within the pass, though, the
//! walks of several (account, region) persist at once, and so do several pages of one walk
//! (one server backend alone bounds the pass to what one core can write). Pages take
//! [`PASS_WRITES`] shared and a walk's end takes it alone, so a walk ends with no page
//! half-written. Two pages in flight may name one resource: a bucket listed by two regions'
//! walks, or an ARN a paginated listing repeats. Their updates take turns on the row; should
//! both insert it or open its finding, or lock two such rows in opposite orders, PostgreSQL
//! refuses one (a unique violation of the resources' key or of `findings_open_by_arn`, a
//! deadlock) and that page is written again, now seeing what the other wrote: one resource,
//! one finding, as SQLite's single writer gives. The act step, the other writer of open
//! findings, runs in the same pass after its walks; retention deletes only resolved findings,
//! which the pass never reads.
//!
//! The pass writes up to millions of resources: a page goes in a fixed handful of statements,
//! each carrying the whole page as arrays (`UNNEST`), never a statement per resource.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use chrono::{DateTime, Utc};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::leases::lease_of;
use super::{Pg, Tx, opt_time, time};
use crate::model::{
    Action, Arn, ControllerRef, Lease, ProjectName, RunOutcome, Source, TaskName, Verdict,
    WalkOutcome,
};
use crate::resource::{
    Finding, PageChanges, Record, RunRecord, StoredResource, WalkChanges, WalkRecord,
};
use crate::store::inventory::{
    AuditFilter, Engine, ListingArg, LiveTotals, Strays, change_of, corrupt, finding_listing,
    finding_select, live_totals_of, resource_listing,
};
use crate::store::{StoreError, lease_columns, ms, next_cursor, stored_tags};

/// The advisory lock pages take shared and a walk's end alone (see the module doc).
const PASS_WRITES: &str = "inventory/pass-writes";

/// Takes [`PASS_WRITES`] until `tx` ends: shared for a page, alone for a walk's end.
async fn pass_writes(tx: &mut Tx<'_>, alone: bool) -> Result<(), StoreError> {
    let sql = if alone {
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))"
    } else {
        "SELECT pg_advisory_xact_lock_shared(hashtextextended($1, 0))"
    };
    tx.execute(sql, &[&PASS_WRITES]).await?;
    Ok(())
}

/// How often a page is written again after racing another page over the same resource.
const PAGE_RACE_RETRIES: u32 = 8;

/// Whether `e` is a page's race with another page in flight over the same resource: the open
/// finding the other opened first, or a deadlock over rows both upsert.
fn is_page_race(e: &StoreError) -> bool {
    use tokio_postgres::error::SqlState;
    match e {
        StoreError::Pg(p) => p.code().is_some_and(|c| {
            *c == SqlState::UNIQUE_VIOLATION || *c == SqlState::T_R_DEADLOCK_DETECTED
        }),
        _ => false,
    }
}

/// A word of the domain read back through its parser.
fn word<T: FromStr>(what: &str, text: &str) -> Result<T, StoreError> {
    text.parse().map_err(|_| corrupt(what, text))
}

/// `id, task, trigger, started_at, ended_at, outcome, summary`.
fn run_of(r: &Row) -> Result<RunRecord, StoreError> {
    let task: String = r.try_get(1)?;
    let outcome: Option<String> = r.try_get(5)?;
    let summary: String = r.try_get(6)?;
    Ok(RunRecord {
        id: r.try_get(0)?,
        task: word::<TaskName>("task", &task)?,
        trigger: r.try_get(2)?,
        started_at: time(r.try_get(3)?)?,
        ended_at: opt_time(r.try_get(4)?)?,
        outcome: outcome
            .map(|o| word::<RunOutcome>("run outcome", &o))
            .transpose()?
            .unwrap_or_default(),
        summary: serde_json::from_str(&summary).map_err(|_| corrupt("run summary", &summary))?,
    })
}

fn verdict_of(text: &str) -> Result<Verdict, StoreError> {
    Verdict::parse(text).ok_or_else(|| corrupt("verdict", text))
}

fn action_of(text: &str) -> Result<Action, StoreError> {
    Action::parse(text).ok_or_else(|| corrupt("action", text))
}

fn arn_of(text: &str) -> Result<Arn, StoreError> {
    Arn::parse(text).map_err(|_| corrupt("arn", text))
}

fn project_of(text: Option<String>) -> Result<Option<ProjectName>, StoreError> {
    text.map(|p| ProjectName::parse(&p).map_err(|_| corrupt("project", &p)))
        .transpose()
}

/// The columns of a resource listing (`resource_select!` in the SQLite store).
fn resource_of(r: &Row) -> Result<StoredResource, StoreError> {
    let tags: String = r.try_get(4)?;
    let source: String = r.try_get(14)?;
    Ok(StoredResource {
        arn: arn_of(r.try_get(0)?)?,
        account: r.try_get(1)?,
        region: r.try_get(2)?,
        resource_type: r.try_get(3)?,
        tags: stored_tags(&tags).map_err(|_| corrupt("tags", &tags))?,
        first_seen: time(r.try_get(5)?)?,
        last_seen: time(r.try_get(6)?)?,
        gone_at: opt_time(r.try_get(7)?)?,
        state: r.try_get(8)?,
        verdict: verdict_of(r.try_get(9)?)?,
        reason: r.try_get(10)?,
        project: project_of(r.try_get(11)?)?,
        action: action_of(r.try_get(12)?)?,
        lease_id: r.try_get(13)?,
        source: word::<Source>("source", &source)?,
        created_at: opt_time(r.try_get(15)?)?,
        creator: r.try_get(16)?,
    })
}

/// The columns of [`finding_select`].
fn finding_of(r: &Row) -> Result<Finding, StoreError> {
    let source: Option<String> = r.try_get(14)?;
    Ok(Finding {
        id: r.try_get(0)?,
        arn: arn_of(r.try_get(1)?)?,
        verdict: verdict_of(r.try_get(2)?)?,
        action: action_of(r.try_get(3)?)?,
        reason: r.try_get(4)?,
        project: project_of(r.try_get(5)?)?,
        lease_id: r.try_get(6)?,
        account: r.try_get(7)?,
        region: r.try_get(8)?,
        resource_type: r.try_get(9)?,
        opened_at: time(r.try_get(10)?)?,
        updated_at: time(r.try_get(11)?)?,
        resolved_at: opt_time(r.try_get(12)?)?,
        resolution: r.try_get(13)?,
        source: source
            .map(|s| word::<Source>("source", &s))
            .transpose()?
            .unwrap_or(Source::Tagging),
        created_at: opt_time(r.try_get(15)?)?,
        creator: r.try_get(16)?,
    })
}

/// A listing's arguments as PostgreSQL binds them.
fn pg_args(args: &[ListingArg]) -> Vec<&(dyn ToSql + Sync)> {
    args.iter()
        .map(|a| match a {
            ListingArg::Text(t) => t as &(dyn ToSql + Sync),
            ListingArg::Texts(ts) => ts as &(dyn ToSql + Sync),
            ListingArg::Int(i) => i as &(dyn ToSql + Sync),
        })
        .collect()
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl Pg {
    pub(in crate::store) async fn start_run(
        &self,
        id: String,
        task: TaskName,
        trigger: String,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.conn()
            .await?
            .execute(
                "INSERT INTO runs (id, task, trigger, started_at) VALUES ($1, $2, $3, $4)",
                &[&id, &task.as_str(), &trigger, &ms(at)],
            )
            .await?;
        Ok(())
    }

    pub(in crate::store) async fn finish_run(
        &self,
        id: String,
        at: DateTime<Utc>,
        outcome: RunOutcome,
        summary: serde_json::Value,
    ) -> Result<(), StoreError> {
        self.conn()
            .await?
            .execute(
                "UPDATE runs SET ended_at = $2, outcome = $3, summary = $4 WHERE id = $1",
                &[&id, &ms(at), &outcome.as_str(), &summary.to_string()],
            )
            .await?;
        Ok(())
    }

    pub(in crate::store) async fn latest_runs(&self) -> Result<Vec<RunRecord>, StoreError> {
        let rows = self
            .conn()
            .await?
            .query(
                // Ids are UUIDv7 (time-ordered): they break a tie of runs started in the same
                // millisecond, as on SQLite.
                "SELECT DISTINCT ON (task) id, task, trigger, started_at, ended_at, outcome, summary
                 FROM runs ORDER BY task, started_at DESC, id DESC",
                &[],
            )
            .await?;
        rows.iter().map(run_of).collect()
    }

    pub(in crate::store) async fn last_successes(
        &self,
    ) -> Result<Vec<(TaskName, DateTime<Utc>)>, StoreError> {
        let rows = self
            .conn()
            .await?
            .query(
                "SELECT task, MAX(ended_at) FROM runs
                 WHERE outcome = $1 AND ended_at IS NOT NULL GROUP BY task ORDER BY task",
                &[&RunOutcome::Success.as_str()],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let task: String = r.try_get(0)?;
                Ok((word::<TaskName>("task", &task)?, time(r.try_get(1)?)?))
            })
            .collect()
    }

    pub(in crate::store) async fn get_run(
        &self,
        id: String,
    ) -> Result<Option<RunRecord>, StoreError> {
        self.conn()
            .await?
            .query_opt(
                "SELECT id, task, trigger, started_at, ended_at, outcome, summary
                 FROM runs WHERE id = $1",
                &[&id],
            )
            .await?
            .map(|r| run_of(&r))
            .transpose()
    }

    pub(in crate::store) async fn walks_of(
        &self,
        run_id: String,
    ) -> Result<Vec<WalkRecord>, StoreError> {
        let rows = self
            .conn()
            .await?
            .query(
                "SELECT account, region, started_at, ended_at, outcome, reason, pages, resources,
                        sweep
                 FROM walks WHERE run_id = $1 ORDER BY account, region",
                &[&run_id],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let outcome: String = r.try_get(4)?;
                let sweep: Option<String> = r.try_get(8)?;
                Ok(WalkRecord {
                    account: r.try_get(0)?,
                    region: r.try_get(1)?,
                    started_at: time(r.try_get(2)?)?,
                    ended_at: time(r.try_get(3)?)?,
                    outcome: word::<WalkOutcome>("walk outcome", &outcome)?,
                    reason: r.try_get(5)?,
                    pages: count(r.try_get(6)?),
                    resources: count(r.try_get(7)?),
                    sweep: sweep
                        .map(|text| {
                            serde_json::from_str(&text).map_err(|_| corrupt("sweep", &text))
                        })
                        .transpose()?,
                })
            })
            .collect()
    }

    pub(in crate::store) async fn strays_opened_in(
        &self,
        run_id: String,
        limit: u32,
    ) -> Result<Strays, StoreError> {
        macro_rules! opened {
            () => {
                " JOIN finding_events e ON e.finding_id = f.id
                 WHERE e.run_id = $1 AND e.kind = 'opened'
                   AND f.verdict IN ('untagged', 'unknown-lease')"
            };
        }
        let mut c = self.conn().await?;
        let total: i64 = c
            .query_one(
                concat!("SELECT COUNT(*) FROM findings f", opened!()),
                &[&run_id],
            )
            .await?
            .try_get(0)?;
        let rows = c
            .query(
                concat!(finding_select!(), opened!(), " ORDER BY f.id LIMIT $2"),
                &[&run_id, &i64::from(limit)],
            )
            .await?;
        let listed = rows.iter().map(finding_of).collect::<Result<Vec<_>, _>>()?;
        let more = count(total).saturating_sub(listed.len() as u64);
        Ok(Strays { listed, more })
    }

    pub(in crate::store) async fn opened_in_projects(
        &self,
        run_id: String,
        projects: Vec<String>,
        limit: u32,
    ) -> Result<Strays, StoreError> {
        macro_rules! opened {
            () => {
                " JOIN finding_events e ON e.finding_id = f.id
                 WHERE e.run_id = $1 AND e.kind = 'opened' AND f.project = ANY($2)"
            };
        }
        let mut c = self.conn().await?;
        let total: i64 = c
            .query_one(
                concat!("SELECT COUNT(*) FROM findings f", opened!()),
                &[&run_id, &projects],
            )
            .await?
            .try_get(0)?;
        let rows = c
            .query(
                concat!(finding_select!(), opened!(), " ORDER BY f.id LIMIT $3"),
                &[&run_id, &projects, &i64::from(limit)],
            )
            .await?;
        let listed = rows.iter().map(finding_of).collect::<Result<Vec<_>, _>>()?;
        let more = count(total).saturating_sub(listed.len() as u64);
        Ok(Strays { listed, more })
    }

    pub(in crate::store) async fn creators_to_look_up(
        &self,
        limit: u32,
    ) -> Result<Vec<(Arn, String, String)>, StoreError> {
        let rows = self
            .conn()
            .await?
            .query(
                "SELECT r.arn, r.account, r.region FROM findings f JOIN resources r ON r.arn = f.arn
                 WHERE f.resolved_at IS NULL AND f.verdict IN ('untagged', 'unknown-lease')
                   AND r.gone_at IS NULL AND r.creator_checked_at IS NULL
                 ORDER BY f.id LIMIT $1",
                &[&i64::from(limit)],
            )
            .await?;
        rows.iter()
            .map(|r| Ok((arn_of(r.try_get(0)?)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
    }

    pub(in crate::store) async fn record_creators(
        &self,
        found: Vec<(Arn, Option<String>)>,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        // One statement for the batch; an ARN given twice keeps its last creator, as the
        // SQLite loop of updates does (an `UPDATE … FROM` would pick either).
        let mut last: HashMap<&str, usize> = HashMap::new();
        for (i, (arn, _)) in found.iter().enumerate() {
            last.insert(arn.as_str(), i);
        }
        let (arns, creators): (Vec<&str>, Vec<Option<&str>>) = found
            .iter()
            .enumerate()
            .filter(|(i, (arn, _))| last.get(arn.as_str()) == Some(i))
            .map(|(_, (arn, creator))| (arn.as_str(), creator.as_deref()))
            .unzip();
        self.conn()
            .await?
            .execute(
                "UPDATE resources r SET creator = u.creator, creator_checked_at = $3
                 FROM UNNEST($1::text[], $2::text[]) AS u(arn, creator)
                 WHERE r.arn = u.arn",
                &[&arns, &creators, &ms(at)],
            )
            .await?;
        Ok(())
    }

    pub(in crate::store) async fn last_sweeps(
        &self,
    ) -> Result<HashMap<(String, String), DateTime<Utc>>, StoreError> {
        let rows = self
            .conn()
            .await?
            .query(
                "SELECT account, region, MAX(swept_at) FROM walks
                 WHERE swept_at IS NOT NULL GROUP BY account, region",
                &[],
            )
            .await?;
        rows.iter()
            .map(|r| Ok(((r.try_get(0)?, r.try_get(1)?), time(r.try_get(2)?)?)))
            .collect()
    }

    pub(in crate::store) async fn all_leases(&self) -> Result<Vec<Lease>, StoreError> {
        let rows = self
            .conn()
            .await?
            .query(concat!("SELECT ", lease_columns!(), " FROM leases"), &[])
            .await?;
        rows.iter().map(lease_of).collect()
    }

    /// See [`crate::store::Store::persist_page`]. One transaction; per batch of distinct ARNs
    /// (a whole page unless an ARN repeats in it) one statement upserts the resources, one
    /// reads their open findings, at most three more open, update and unmark findings, and
    /// one records their events. Why arrays: a statement per resource costs a round trip and
    /// an executor start each, so the pass would be bound by latency rather than by the
    /// server's row work; a page of a thousand as one `UNNEST` costs that work and little else.
    ///
    /// Only the act lock's holder runs a pass, so nothing but the pass's own pages writes
    /// these resources or their open findings meanwhile: the open findings are read without
    /// `FOR UPDATE` (a row lock per open finding, written on every pass, would guard against
    /// no writer that can run), and a page that raced another over one resource is written
    /// again (see the module doc).
    pub(in crate::store) async fn persist_page(
        &self,
        run_id: String,
        at: DateTime<Utc>,
        records: Vec<Record>,
    ) -> Result<PageChanges, StoreError> {
        let mut attempt = 0;
        loop {
            match self.persist_page_once(&run_id, at, &records).await {
                Err(e) if attempt < PAGE_RACE_RETRIES && is_page_race(&e) => {
                    attempt += 1;
                    tracing::debug!(attempt, error = %crate::error_chain(&e), "a page raced another over a resource; writing it again");
                }
                done => return done,
            }
        }
    }

    async fn persist_page_once(
        &self,
        run_id: &str,
        at: DateTime<Utc>,
        records: &[Record],
    ) -> Result<PageChanges, StoreError> {
        let mut c = self.conn().await?;
        let mut tx = c.begin().await?;
        pass_writes(&mut tx, false).await?;
        let mut changes = PageChanges::default();
        for batch in distinct_arns(records) {
            upsert_resources(&mut tx, batch, at, run_id).await?;
            let done = open_or_update(&mut tx, batch, at, run_id).await?;
            changes.opened += done.opened;
            changes.updated += done.updated;
        }
        tx.commit().await?;
        Ok(changes)
    }

    /// See [`crate::store::Store::finish_walk`]: one transaction of at most four statements,
    /// each over the walk's whole scope (set-based, never a statement per resource or
    /// finding). Only the act lock's holder runs a pass, and [`PASS_WRITES`], taken alone,
    /// waits for the pages in flight: no other lock is taken.
    pub(in crate::store) async fn finish_walk(
        &self,
        run_id: String,
        walk: WalkRecord,
    ) -> Result<WalkChanges, StoreError> {
        let sweep = walk
            .sweep
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("cannot encode a sweep: {e}")))?;
        let swept_at = walk
            .sweep
            .as_ref()
            .filter(|s| s.is_complete() && !s.credentials_only)
            .map(|s| ms(s.started_at));
        let ended = ms(walk.ended_at);
        let mut c = self.conn().await?;
        let mut tx = c.begin().await?;
        pass_writes(&mut tx, true).await?;
        tx.execute(
            "INSERT INTO walks (run_id, account, region, started_at, ended_at, outcome, reason,
                                pages, resources, sweep, swept_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            &[
                &run_id,
                &walk.account,
                &walk.region,
                &ms(walk.started_at),
                &ended,
                &walk.outcome.as_str(),
                &walk.reason,
                &i64::try_from(walk.pages).unwrap_or(i64::MAX),
                &i64::try_from(walk.resources).unwrap_or(i64::MAX),
                &sweep,
                &swept_at,
            ],
        )
        .await?;
        if !walk.is_complete() {
            tx.commit().await?;
            return Ok(WalkChanges::default());
        }
        let tagging = Source::Tagging.as_str();
        // Each source marks gone only what it lists: the tagging walk its own, a type's
        // complete sweep what it found before and no longer lists.
        let mut gone = tx
            .execute(
                "UPDATE resources SET gone_at = $4
                 WHERE account = $1 AND region = $2 AND last_run != $3 AND gone_at IS NULL
                   AND source = $5",
                &[&walk.account, &walk.region, &run_id, &ended, &tagging],
            )
            .await?;
        let swept: Vec<&str> = walk
            .sweep
            .iter()
            .flat_map(|s| &s.types)
            .filter(|t| t.outcome == WalkOutcome::Complete)
            .map(|t| t.resource_type.as_str())
            .collect();
        if !swept.is_empty() {
            gone += tx
                .execute(
                    // Found by a sweep or a search: either lists what the other did.
                    "UPDATE resources SET gone_at = $4
                     WHERE account = $1 AND region = $2 AND last_run != $3 AND gone_at IS NULL
                       AND source != $5 AND resource_type = ANY($6)",
                    &[
                        &walk.account,
                        &walk.region,
                        &run_id,
                        &ended,
                        &tagging,
                        &swept,
                    ],
                )
                .await?;
        }
        // Resolves and records the events in one statement.
        let resolved = tx
            .execute(
                "WITH resolved AS (
                     UPDATE findings f SET resolved_at = $3, updated_at = $3,
                            resolution = CASE WHEN r.state = 'terminated' THEN 'terminated'
                                              WHEN r.gone_at IS NOT NULL THEN 'gone'
                                              ELSE 'now ' || r.verdict END
                     FROM resources r
                     WHERE r.arn = f.arn AND f.resolved_at IS NULL
                       AND r.account = $1 AND r.region = $2
                       AND (r.gone_at IS NOT NULL OR r.state = 'terminated'
                            OR r.verdict IN ('leased', 'protected'))
                     RETURNING f.id, f.verdict, f.resolution
                 )
                 INSERT INTO finding_events (finding_id, run_id, at, kind, verdict, detail)
                 SELECT id, $4, $3, 'resolved', verdict, resolution FROM resolved ORDER BY id",
                &[&walk.account, &walk.region, &ended, &run_id],
            )
            .await?;
        tx.commit().await?;
        Ok(WalkChanges { gone, resolved })
    }

    /// See [`crate::store::Store::live_totals`]. Aggregated by the server (a hash aggregate,
    /// no sort): shipping every live row to the client, as SQLite's in-process scan can
    /// afford, would cost more than the counting.
    pub(in crate::store) async fn live_totals(
        &self,
        now: DateTime<Utc>,
    ) -> Result<LiveTotals, StoreError> {
        let rows = self
            .conn()
            .await?
            .query(
                "SELECT COALESCE(project, 'unknown'), region, resource_type, verdict, source,
                        account, COUNT(*),
                        SUM(CASE WHEN verdict IN ('expired', 'released', 'unknown-lease')
                                 THEN GREATEST($1 - COALESCE(lease_ended_at, first_seen), 0)
                                 ELSE 0 END)::BIGINT
                 FROM resources WHERE gone_at IS NULL
                 GROUP BY 1, 2, 3, 4, 5, 6",
                &[&ms(now)],
            )
            .await?;
        let mut counts = Vec::with_capacity(rows.len());
        let mut waste_ms: HashMap<String, i64> = HashMap::new();
        for r in &rows {
            let key: [String; 6] = [
                r.try_get(0)?,
                r.try_get(1)?,
                r.try_get(2)?,
                r.try_get(3)?,
                r.try_get(4)?,
                r.try_get(5)?,
            ];
            let n: i64 = r.try_get(6)?;
            if matches!(key[3].as_str(), "expired" | "released" | "unknown-lease") {
                let waste: i64 = r.try_get(7)?;
                *waste_ms.entry(key[0].clone()).or_default() += waste;
            }
            counts.push((key, count(n)));
        }
        Ok(live_totals_of(counts, waste_ms))
    }

    pub(in crate::store) async fn list_resources(
        &self,
        f: AuditFilter,
    ) -> Result<(Vec<StoredResource>, Option<String>), StoreError> {
        let (sql, args, limit) = resource_listing(&f, Engine::Postgres);
        let rows = self
            .conn()
            .await?
            .query_dynamic(&sql, &pg_args(&args))
            .await?;
        let mut items = rows
            .iter()
            .map(resource_of)
            .collect::<Result<Vec<_>, _>>()?;
        let next = next_cursor(&mut items, limit, |r| r.arn.to_string());
        Ok((items, next))
    }

    pub(in crate::store) async fn list_findings(
        &self,
        f: AuditFilter,
    ) -> Result<(Vec<Finding>, Option<String>), StoreError> {
        let (sql, args, limit) = finding_listing(&f, Engine::Postgres)?;
        let rows = self
            .conn()
            .await?
            .query_dynamic(&sql, &pg_args(&args))
            .await?;
        let mut items = rows.iter().map(finding_of).collect::<Result<Vec<_>, _>>()?;
        let next = next_cursor(&mut items, limit, |f| f.id.to_string());
        Ok((items, next))
    }

    pub(in crate::store) async fn get_finding(
        &self,
        id: i64,
    ) -> Result<Option<Finding>, StoreError> {
        self.conn()
            .await?
            .query_opt(concat!(finding_select!(), " WHERE f.id = $1"), &[&id])
            .await?
            .map(|r| finding_of(&r))
            .transpose()
    }

    pub(in crate::store) async fn last_finding_event_id(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn()
            .await?
            .query_one(
                "SELECT COALESCE(MAX(id), 0)::BIGINT FROM finding_events",
                &[],
            )
            .await?
            .try_get(0)?)
    }

    pub(in crate::store) async fn run_finding_changes(
        &self,
        run_id: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<crate::store::FindingChange>, StoreError> {
        let rows = self
            .conn()
            .await?
            .query(
                "SELECT e.id, e.finding_id, e.kind, e.verdict, e.detail, e.at, f.arn, f.project,
                        f.lease_id, f.account, f.region, f.resource_type
                 FROM finding_events e JOIN findings f ON f.id = e.finding_id
                 WHERE e.id > $1 AND e.run_id = $2 AND e.kind IN ('opened', 'resolved', 'marked')
                 ORDER BY e.id LIMIT $3",
                &[&after, &run_id, &i64::from(limit)],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(crate::store::FindingChange {
                    event_id: r.try_get(0)?,
                    finding_id: r.try_get(1)?,
                    kind: r.try_get(2)?,
                    verdict: r.try_get(3)?,
                    detail: r.try_get(4)?,
                    at: time(r.try_get(5)?)?,
                    arn: r.try_get(6)?,
                    project: r.try_get(7)?,
                    lease_id: r.try_get(8)?,
                    account: r.try_get(9)?,
                    region: r.try_get(10)?,
                    resource_type: r.try_get(11)?,
                })
            })
            .collect()
    }

    pub(in crate::store) async fn finding_events(
        &self,
        id: i64,
    ) -> Result<Vec<(DateTime<Utc>, String, String, String)>, StoreError> {
        let rows = self
            .conn()
            .await?
            .query(
                "SELECT at, kind, verdict, detail FROM finding_events
                 WHERE finding_id = $1 ORDER BY id",
                &[&id],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    time(r.try_get(0)?)?,
                    r.try_get(1)?,
                    r.try_get(2)?,
                    r.try_get(3)?,
                ))
            })
            .collect()
    }
}

/// `records` cut into runs in which no ARN repeats (one run, unless the page lists a
/// resource twice): PostgreSQL's upsert cannot change one row twice in a statement, and the
/// second sighting must see what the first wrote, as SQLite's record-by-record loop does.
fn distinct_arns(records: &[Record]) -> Vec<&[Record]> {
    let mut batches = Vec::new();
    let mut seen: HashSet<&str> = HashSet::new();
    let mut start = 0;
    for (i, r) in records.iter().enumerate() {
        if !seen.insert(r.observed.arn.as_str()) {
            batches.push(&records[start..i]);
            seen.clear();
            seen.insert(r.observed.arn.as_str());
            start = i;
        }
    }
    if start < records.len() {
        batches.push(&records[start..]);
    }
    batches
}

/// Upserts a batch of resources (distinct ARNs) in one statement, with the SQLite upsert's
/// rules for a row that exists.
async fn upsert_resources(
    tx: &mut Tx<'_>,
    batch: &[Record],
    at: DateTime<Utc>,
    run_id: &str,
) -> Result<(), StoreError> {
    let at = ms(at);
    let mut arn = Vec::with_capacity(batch.len());
    let mut account = Vec::with_capacity(batch.len());
    let mut region = Vec::with_capacity(batch.len());
    let mut resource_type = Vec::with_capacity(batch.len());
    let mut tags = Vec::with_capacity(batch.len());
    let mut gone_at = Vec::with_capacity(batch.len());
    let mut state = Vec::with_capacity(batch.len());
    let mut verdict = Vec::with_capacity(batch.len());
    let mut reason = Vec::with_capacity(batch.len());
    let mut project = Vec::with_capacity(batch.len());
    let mut action = Vec::with_capacity(batch.len());
    let mut grace_s = Vec::with_capacity(batch.len());
    let mut lease_id = Vec::with_capacity(batch.len());
    let mut lease_ended_at = Vec::with_capacity(batch.len());
    let mut source = Vec::with_capacity(batch.len());
    let mut created_at = Vec::with_capacity(batch.len());
    let mut controller = Vec::with_capacity(batch.len());
    for r in batch {
        let o = &r.observed;
        arn.push(o.arn.as_str());
        account.push(o.account.as_str());
        region.push(o.region.as_str());
        resource_type.push(o.resource_type.as_str());
        tags.push(o.tags.packed());
        // A terminated instance is gone the moment we learn it; a resource seen again is back.
        gone_at.push(o.is_terminated().then_some(at));
        state.push(o.state.as_deref());
        verdict.push(r.verdict.as_str());
        reason.push(r.reason.as_str());
        project.push(r.project.as_ref().map(ProjectName::as_str));
        action.push(r.action.as_str());
        grace_s.push(i64::try_from(r.grace.as_secs()).unwrap_or(i64::MAX));
        lease_id.push(r.lease_id.as_deref());
        lease_ended_at.push(r.lease_ended_at.map(ms));
        source.push(o.source.as_str());
        created_at.push(o.created_at.map(ms));
        controller.push(ControllerRef::of_tags(&o.tags, &o.account, &o.region).map(|c| c.stored()));
    }
    // Rows that exist are updated and only the others inserted, in one statement: a plain
    // insert of a new row costs about two thirds of `ON CONFLICT`'s speculative one, and a
    // first pass inserts every row. A row another page in flight inserts meanwhile is not in
    // this statement's snapshot: its insert here is a unique violation, and the page is
    // written again (see the module doc), now updating it.
    tx.execute(
        "WITH p AS (
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                                  $6::bigint[], $7::text[], $8::text[], $9::text[], $10::text[],
                                  $11::text[], $12::bigint[], $13::text[], $14::bigint[],
                                  $15::text[], $16::bigint[], $17::text[])
                 AS p(arn, account, region, resource_type, tags, gone_at, state, verdict, reason,
                      project, action, grace_s, lease_id, lease_ended_at, source, created_at,
                      controller)
         ),
         updated AS (
             UPDATE resources r SET
                 -- Region-less ARNs (S3) may be listed by several regions' walks (an emulator
                 -- lists every bucket everywhere): the smallest region name wins, so the owner
                 -- is stable.
                 region = LEAST(r.region, p.region),
                 tags = p.tags, last_seen = $18,
                 gone_at = CASE WHEN p.gone_at IS NULL THEN NULL
                                ELSE COALESCE(r.gone_at, p.gone_at) END,
                 state = p.state, verdict = p.verdict, reason = p.reason, project = p.project,
                 action = p.action, grace_s = p.grace_s, lease_id = p.lease_id,
                 lease_ended_at = p.lease_ended_at, last_run = $19, source = p.source,
                 controller = p.controller, created_at = COALESCE(p.created_at, r.created_at)
             FROM p WHERE r.arn = p.arn
             RETURNING r.arn
         )
         INSERT INTO resources (arn, account, region, resource_type, tags, first_seen, last_seen,
                                gone_at, state, verdict, reason, project, action, grace_s, lease_id,
                                lease_ended_at, last_run, source, created_at, controller)
         SELECT arn, account, region, resource_type, tags, $18, $18, gone_at, state, verdict,
                reason, project, action, grace_s, lease_id, lease_ended_at, $19, source,
                created_at, controller
         FROM p WHERE NOT EXISTS (SELECT 1 FROM updated u WHERE u.arn = p.arn)",
        &[
            &arn,
            &account,
            &region,
            &resource_type,
            &tags,
            &gone_at,
            &state,
            &verdict,
            &reason,
            &project,
            &action,
            &grace_s,
            &lease_id,
            &lease_ended_at,
            &source,
            &created_at,
            &controller,
            &at,
            &run_id,
        ],
    )
    .await?;
    Ok(())
}

/// Opens findings for a batch's flagged resources that have none, updates those whose
/// verdict, action or lease changed (unmarking those about another lease), and records one
/// event for each, in record order, as SQLite's loop does: finding and event ids come out in
/// the same order.
async fn open_or_update(
    tx: &mut Tx<'_>,
    batch: &[Record],
    at: DateTime<Utc>,
    run_id: &str,
) -> Result<PageChanges, StoreError> {
    let flagged: Vec<&Record> = batch
        .iter()
        .filter(|r| r.verdict.is_finding() && !r.observed.is_terminated())
        .collect();
    let mut changes = PageChanges::default();
    if flagged.is_empty() {
        return Ok(changes);
    }
    let at = ms(at);
    let arns: Vec<&str> = flagged.iter().map(|r| r.observed.arn.as_str()).collect();
    let open = tx
        .query(
            "SELECT id, arn, verdict, action, lease_id FROM findings
             WHERE arn = ANY($1) AND resolved_at IS NULL",
            &[&arns],
        )
        .await?;
    let mut open_by_arn: HashMap<String, (i64, String, String, Option<String>)> = HashMap::new();
    for row in &open {
        open_by_arn.insert(
            row.try_get(1)?,
            (
                row.try_get(0)?,
                row.try_get(2)?,
                row.try_get(3)?,
                row.try_get(4)?,
            ),
        );
    }

    /// An event to record: of a finding already open, or of the one opened for an ARN.
    enum Of<'a> {
        Id(i64),
        Opened(&'a str),
    }
    let mut events: Vec<(Of<'_>, &str, &str, String)> = Vec::with_capacity(flagged.len());
    let mut new: Vec<&Record> = Vec::new();
    let mut updated: Vec<(i64, &Record)> = Vec::new();
    let mut unmark: Vec<i64> = Vec::new();
    for r in &flagged {
        match open_by_arn.get(r.observed.arn.as_str()) {
            Some((id, verdict, action, lease_id)) => {
                let Some(change) = change_of(verdict, action, lease_id.as_deref(), r) else {
                    continue;
                };
                updated.push((*id, r));
                if change.lease_changed {
                    unmark.push(*id);
                }
                events.push((Of::Id(*id), "updated", r.verdict.as_str(), change.detail));
            }
            None => {
                new.push(r);
                events.push((
                    Of::Opened(r.observed.arn.as_str()),
                    "opened",
                    r.verdict.as_str(),
                    r.reason.clone(),
                ));
            }
        }
    }
    changes.opened = new.len() as u64;
    changes.updated = updated.len() as u64;

    let mut opened: HashMap<String, i64> = HashMap::new();
    if !new.is_empty() {
        let column = |f: fn(&Record) -> &str| new.iter().map(|r| f(r)).collect::<Vec<&str>>();
        let projects: Vec<Option<&str>> = new
            .iter()
            .map(|r| r.project.as_ref().map(ProjectName::as_str))
            .collect();
        let leases: Vec<Option<&str>> = new.iter().map(|r| r.lease_id.as_deref()).collect();
        let rows = tx
            .query(
                // In the page's order (`ORDINALITY`), so ids are assigned as SQLite assigns them.
                "INSERT INTO findings (arn, verdict, action, reason, project, lease_id, account,
                                       region, resource_type, opened_at, updated_at)
                 SELECT arn, verdict, action, reason, project, lease_id, account, region,
                        resource_type, $10, $10
                 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                             $6::text[], $7::text[], $8::text[], $9::text[]) WITH ORDINALITY
                      AS p(arn, verdict, action, reason, project, lease_id, account, region,
                           resource_type, n)
                 ORDER BY n
                 RETURNING id, arn",
                &[
                    &column(|r| r.observed.arn.as_str()),
                    &column(|r| r.verdict.as_str()),
                    &column(|r| r.action.as_str()),
                    &column(|r| r.reason.as_str()),
                    &projects,
                    &leases,
                    &column(|r| r.observed.account.as_str()),
                    &column(|r| r.observed.region.as_str()),
                    &column(|r| r.observed.resource_type.as_str()),
                    &at,
                ],
            )
            .await?;
        for row in &rows {
            opened.insert(row.try_get(1)?, row.try_get(0)?);
        }
    }
    if !updated.is_empty() {
        let ids: Vec<i64> = updated.iter().map(|(id, _)| *id).collect();
        let column =
            |f: fn(&Record) -> &str| updated.iter().map(|(_, r)| f(r)).collect::<Vec<&str>>();
        let projects: Vec<Option<&str>> = updated
            .iter()
            .map(|(_, r)| r.project.as_ref().map(ProjectName::as_str))
            .collect();
        let leases: Vec<Option<&str>> =
            updated.iter().map(|(_, r)| r.lease_id.as_deref()).collect();
        tx.execute(
            "UPDATE findings f SET verdict = u.verdict, action = u.action, reason = u.reason,
                                   project = u.project, lease_id = u.lease_id, updated_at = $7
             FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
                  AS u(id, verdict, action, reason, project, lease_id)
             WHERE f.id = u.id",
            &[
                &ids,
                &column(|r| r.verdict.as_str()),
                &column(|r| r.action.as_str()),
                &column(|r| r.reason.as_str()),
                &projects,
                &leases,
                &at,
            ],
        )
        .await?;
    }
    if !unmark.is_empty() {
        // A finding now about another lease loses its mark: the next act step marks it
        // afresh (full grace, a notice to the new owner) if it still must go.
        tx.execute(
            "UPDATE findings SET deadline = NULL, reap_state = NULL, last_decision = NULL,
                                 attempts = 0, next_attempt_at = NULL, deactivated_at = NULL, last_error = NULL,
                                 marked_owner = NULL
             WHERE id = ANY($1) AND deadline IS NOT NULL",
            &[&unmark],
        )
        .await?;
    }
    if events.is_empty() {
        return Ok(changes);
    }
    let mut finding_ids = Vec::with_capacity(events.len());
    for (of, ..) in &events {
        finding_ids.push(match of {
            Of::Id(id) => *id,
            Of::Opened(arn) => *opened
                .get(*arn)
                .ok_or_else(|| StoreError::Corrupt(format!("no finding came back for {arn}")))?,
        });
    }
    let kinds: Vec<&str> = events.iter().map(|e| e.1).collect();
    let verdicts: Vec<&str> = events.iter().map(|e| e.2).collect();
    let details: Vec<&str> = events.iter().map(|e| e.3.as_str()).collect();
    tx.execute(
        "INSERT INTO finding_events (finding_id, run_id, at, kind, verdict, detail)
         SELECT finding_id, $5, $6, kind, verdict, detail
         FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[]) WITH ORDINALITY
              AS e(finding_id, kind, verdict, detail, n)
         ORDER BY n",
        &[&finding_ids, &kinds, &verdicts, &details, &run_id, &at],
    )
    .await?;
    Ok(changes)
}
