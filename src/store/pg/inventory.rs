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
use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, Statement};

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
    AuditFilter, Engine, ListingArg, LiveTotals, MARK_RESOLVABLE, Strays, change_of, corrupt,
    finding_listing, finding_select, live_totals_of, resource_listing,
};
use crate::store::{StoreError, lease_columns, ms, next_cursor, stored_tags};

/// The advisory lock pages take shared and a walk's end alone (see the module doc).
const PASS_WRITES: &str = "inventory/pass-writes";

/// Takes [`PASS_WRITES`] shared until the transaction ends: a page's.
const PASS_WRITES_SHARED: &str = "SELECT pg_advisory_xact_lock_shared(hashtextextended($1, 0))";

/// Takes [`PASS_WRITES`] alone until `tx` ends: a walk's end.
async fn pass_writes_alone(tx: &mut Tx<'_>) -> Result<(), StoreError> {
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        &[&PASS_WRITES],
    )
    .await?;
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
                "INSERT INTO runs (id, task, trigger, started_at, marks_resolvable)
                 VALUES ($1, $2, $3, $4, 1)",
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

    /// See [`crate::store::Store::scope_is_new`]: a probe of `resources_by_scope`.
    pub(in crate::store) async fn scope_is_new(
        &self,
        account: &str,
        region: &str,
    ) -> Result<bool, StoreError> {
        let row = self
            .conn()
            .await?
            .query_one(
                "SELECT NOT EXISTS (SELECT 1 FROM resources WHERE account = $1 AND region = $2)",
                &[&account, &region],
            )
            .await?;
        Ok(row.try_get(0)?)
    }

    /// See [`crate::store::Store::persist_page`]. One transaction; per batch of distinct ARNs
    /// (a whole page unless an ARN repeats in it) one statement upserts the resources, one
    /// reads their open findings, and at most three more open findings and record their
    /// events, update findings and unmark them, all pipelined (see `persist_page_once`).
    /// Why arrays: a statement per resource costs a round trip and an executor start each,
    /// so the pass would be bound by latency rather than by the server's row work; a page of
    /// a thousand as one `UNNEST` costs that work and little else.
    ///
    /// Only the act lock's holder runs a pass, so nothing but the pass's own pages writes
    /// these resources or their open findings meanwhile: the open findings are read without
    /// `FOR UPDATE` (a row lock per open finding, written on every pass, would guard against
    /// no writer that can run), and a page that raced another over one resource is written
    /// again (see the module doc).
    ///
    /// `new_scope`: the walk found the store holding no resource of its scope, so the page is
    /// first written as if none of its resources were stored yet (see [`PageMode`]); a
    /// resource or an open finding that is there after all makes that write a unique
    /// violation, and the page is written again the usual way.
    pub(in crate::store) async fn persist_page(
        &self,
        run_id: String,
        at: DateTime<Utc>,
        records: Vec<Record>,
        new_scope: bool,
    ) -> Result<PageChanges, StoreError> {
        let mut attempt = 0;
        let mut mode = if new_scope {
            PageMode::AllNew
        } else {
            PageMode::Upsert
        };
        loop {
            match self.persist_page_once(&run_id, at, &records, mode).await {
                Err(e) if attempt < PAGE_RACE_RETRIES && is_page_race(&e) => {
                    attempt += 1;
                    mode = PageMode::Upsert;
                    tracing::debug!(attempt, error = %crate::error_chain(&e), "a page raced another over a resource; writing it again");
                }
                done => return done,
            }
        }
    }

    /// One page in two round trips per batch of distinct ARNs (one batch unless an ARN
    /// repeats in the page): `BEGIN`, the shared lock, the resources' upsert and the read of
    /// their open findings sent together; then the findings' writes, with the `COMMIT` after
    /// the last batch's. Why pipelined: a page of eight statements one after another waited
    /// for eight answers, and with the 2 cores busy each answer waits for its turn on one.
    async fn persist_page_once(
        &self,
        run_id: &str,
        at: DateTime<Utc>,
        records: &[Record],
        mode: PageMode,
    ) -> Result<PageChanges, StoreError> {
        let mut c = self.conn().await?;
        let s = PageStatements::prepare(&mut c).await?;
        let at = ms(at);
        let mut changes = PageChanges::default();
        let batches = distinct_arns(records);
        c.pipeline_begin();
        for (i, batch) in batches.iter().enumerate() {
            let flagged: Vec<&Record> = batch
                .iter()
                .filter(|r| r.verdict.is_finding() && !r.observed.is_terminated())
                .collect();
            let arns: Vec<&str> = flagged.iter().map(|r| r.observed.arn.as_str()).collect();
            let open = {
                let columns = ResourceColumns::of(batch, at);
                let upsert_args = columns.params(&at, &run_id);
                let client = c.client();
                let first = i == 0;
                let read = async {
                    if arns.is_empty() || mode == PageMode::AllNew {
                        return Ok(Vec::new());
                    }
                    client.query(&s.open_findings, &[&arns]).await
                };
                let lock_args: [&(dyn ToSql + Sync); 1] = [&PASS_WRITES];
                // The transaction's start goes with the first batch's statements. Every answer
                // is awaited and the first error in statement order returned: after a failed
                // statement the later ones fail too ("transaction is aborted"), and which of
                // those a `try_join!` would see first is up to its polling.
                let (begun, locked, upserted, open) = tokio::join!(
                    biased;
                    send_if(client, first, &s.begin, &[]),
                    send_if(client, first, &s.pass_writes, &lock_args),
                    client.execute(
                        match mode {
                            PageMode::Upsert => &s.upsert,
                            PageMode::AllNew => &s.insert_new,
                        },
                        &upsert_args
                    ),
                    read
                );
                begun?;
                locked?;
                upserted?;
                open?
            };
            let writes = FindingWrites::of(&flagged, &open)?;
            changes.opened += writes.new.len() as u64;
            changes.updated += writes.updated.len() as u64;
            let last = i + 1 == batches.len();
            writes.send(c.client(), &s, at, &run_id, last).await?;
        }
        c.pipeline_end();
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
        pass_writes_alone(&mut tx).await?;
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
                "UPDATE resources SET gone_at = $4, resolve_pending = 1
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
                    "UPDATE resources SET gone_at = $4, resolve_pending = 1
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
        // A run of an earlier build since the last walk's end (migration 29): its pages
        // marked nothing, so every row that may have a finding to resolve is marked.
        let unaware = tx
            .execute(
                "UPDATE runs SET marks_resolvable = 1 WHERE marks_resolvable IS NULL",
                &[],
            )
            .await?;
        if unaware > 0 {
            tx.execute(MARK_RESOLVABLE, &[]).await?;
        }
        // Resolves and records the events in one statement. Only the rows a page or the
        // gone-marking above marked can have a finding to resolve (migration 28); they are
        // unmarked, and their state checked again all the same.
        let resolved = tx
            .execute(
                "WITH pending AS (
                     UPDATE resources SET resolve_pending = 0
                     WHERE account = $1 AND region = $2 AND resolve_pending = 1
                     RETURNING arn, state, gone_at, verdict
                 ),
                 resolved AS (
                     UPDATE findings f SET resolved_at = $3, updated_at = $3,
                            resolution = CASE WHEN r.state = 'terminated' THEN 'terminated'
                                              WHEN r.gone_at IS NOT NULL THEN 'gone'
                                              ELSE 'now ' || r.verdict END
                     FROM pending r
                     WHERE r.arn = f.arn AND f.resolved_at IS NULL
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
        let mut c = self.conn().await?;
        let mut tx = c.begin().await?;
        // A hash aggregate whatever the statistics say: a table never analysed yet (a first
        // pass over a fresh store) reads as a few rows, and the planner sorted 1M rows on
        // disk in three processes (1.2 s against 0.4 s, and three times the CPU, beside the
        // act step).
        tx.batch_execute("SET LOCAL enable_sort = off").await?;
        let rows = tx
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
        tx.commit().await?;
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

/// A batch's resources as one array per column, in [`UPSERT_RESOURCES`]' order (`$1`–`$17`).
struct ResourceColumns<'a> {
    arn: Vec<&'a str>,
    account: Vec<&'a str>,
    region: Vec<&'a str>,
    resource_type: Vec<&'a str>,
    tags: Vec<&'a str>,
    gone_at: Vec<Option<i64>>,
    state: Vec<Option<&'a str>>,
    verdict: Vec<&'a str>,
    reason: Vec<&'a str>,
    project: Vec<Option<&'a str>>,
    action: Vec<&'a str>,
    grace_s: Vec<i64>,
    lease_id: Vec<Option<&'a str>>,
    lease_ended_at: Vec<Option<i64>>,
    source: Vec<&'a str>,
    created_at: Vec<Option<i64>>,
    controller: Vec<Option<String>>,
}

impl<'a> ResourceColumns<'a> {
    fn of(batch: &'a [Record], at: i64) -> Self {
        let mut c = ResourceColumns {
            arn: Vec::with_capacity(batch.len()),
            account: Vec::with_capacity(batch.len()),
            region: Vec::with_capacity(batch.len()),
            resource_type: Vec::with_capacity(batch.len()),
            tags: Vec::with_capacity(batch.len()),
            gone_at: Vec::with_capacity(batch.len()),
            state: Vec::with_capacity(batch.len()),
            verdict: Vec::with_capacity(batch.len()),
            reason: Vec::with_capacity(batch.len()),
            project: Vec::with_capacity(batch.len()),
            action: Vec::with_capacity(batch.len()),
            grace_s: Vec::with_capacity(batch.len()),
            lease_id: Vec::with_capacity(batch.len()),
            lease_ended_at: Vec::with_capacity(batch.len()),
            source: Vec::with_capacity(batch.len()),
            created_at: Vec::with_capacity(batch.len()),
            controller: Vec::with_capacity(batch.len()),
        };
        for r in batch {
            let o = &r.observed;
            c.arn.push(o.arn.as_str());
            c.account.push(o.account.as_str());
            c.region.push(o.region.as_str());
            c.resource_type.push(o.resource_type.as_str());
            c.tags.push(o.tags.packed());
            // A terminated instance is gone the moment we learn it; a resource seen again is
            // back.
            c.gone_at.push(o.is_terminated().then_some(at));
            c.state.push(o.state.as_deref());
            c.verdict.push(r.verdict.as_str());
            c.reason.push(r.reason.as_str());
            c.project.push(r.project.as_ref().map(ProjectName::as_str));
            c.action.push(r.action.as_str());
            c.grace_s
                .push(i64::try_from(r.grace.as_secs()).unwrap_or(i64::MAX));
            c.lease_id.push(r.lease_id.as_deref());
            c.lease_ended_at.push(r.lease_ended_at.map(ms));
            c.source.push(o.source.as_str());
            c.created_at.push(o.created_at.map(ms));
            c.controller
                .push(ControllerRef::of_tags(&o.tags, &o.account, &o.region).map(|c| c.stored()));
        }
        c
    }

    /// [`UPSERT_RESOURCES`]' parameters: the columns, then the time and the run.
    fn params<'p>(&'p self, at: &'p i64, run_id: &'p &'p str) -> [&'p (dyn ToSql + Sync); 19] {
        [
            &self.arn,
            &self.account,
            &self.region,
            &self.resource_type,
            &self.tags,
            &self.gone_at,
            &self.state,
            &self.verdict,
            &self.reason,
            &self.project,
            &self.action,
            &self.grace_s,
            &self.lease_id,
            &self.lease_ended_at,
            &self.source,
            &self.created_at,
            &self.controller,
            at,
            run_id,
        ]
    }
}

/// A page's resources as rows `p`, from the arrays `$1`–`$17` of [`ResourceColumns`].
macro_rules! page_resources {
    () => {
        "UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[],
                $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::bigint[],
                $13::text[], $14::bigint[], $15::text[], $16::bigint[], $17::text[])
         AS p(arn, account, region, resource_type, tags, gone_at, state, verdict, reason,
              project, action, grace_s, lease_id, lease_ended_at, source, created_at,
              controller) "
    };
}

/// Inserts rows `p` (seen first and last at `$18`, by run `$19`); the `FROM` is the caller's.
macro_rules! insert_page_resources {
    () => {
        "INSERT INTO resources (arn, account, region, resource_type, tags, first_seen,
                                last_seen, gone_at, state, verdict, reason, project, action,
                                grace_s, lease_id, lease_ended_at, last_run, source,
                                created_at, controller)
         SELECT arn, account, region, resource_type, tags, $18, $18, gone_at, state, verdict,
                reason, project, action, grace_s, lease_id, lease_ended_at, $19, source,
                created_at, controller "
    };
}

/// Upserts a batch of resources (distinct ARNs) with the SQLite upsert's rules for a row that
/// exists: rows that exist are updated and only the others inserted, in one statement. A plain
/// insert of a new row costs about two thirds of `ON CONFLICT`'s speculative one, and a
/// first pass inserts every row. A row another page in flight inserts meanwhile is not in
/// this statement's snapshot: its insert here is a unique violation, and the page is
/// written again (see the module doc), now updating it.
const UPSERT_RESOURCES: &str = concat!(
    "WITH p AS (SELECT * FROM ",
    page_resources!(),
    "
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
             controller = p.controller, created_at = COALESCE(p.created_at, r.created_at),
             -- Fine now (or terminated) after being flagged: its finding, if open, is the
             -- walk's end's to resolve (migration 28). A new row has no finding to resolve.
             resolve_pending = CASE
                 WHEN p.verdict IN ('leased', 'protected') OR p.state = 'terminated'
                 THEN CASE WHEN r.resolve_pending = 1
                                OR (r.verdict NOT IN ('leased', 'protected')
                                    AND r.state IS DISTINCT FROM 'terminated')
                           THEN 1 ELSE 0 END
                 ELSE 0 END
         FROM p WHERE r.arn = p.arn
         RETURNING r.arn
     )
     ",
    insert_page_resources!(),
    "FROM p WHERE NOT EXISTS (SELECT 1 FROM updated u WHERE u.arn = p.arn)"
);

/// How a page's first attempt writes its resources.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum PageMode {
    /// [`UPSERT_RESOURCES`], and the open findings read.
    Upsert,
    /// As if nothing of the page were stored: [`INSERT_NEW_RESOURCES`], and no open finding
    /// read, so every flagged resource opens one. Where that is wrong, a row or an open finding
    /// is there, and its unique index refuses the write (see `persist_page`). Why: on a scope's
    /// first walk every row is new, and the upsert's update half, which probes the key and
    /// keeps the page's rows for it, was a sixth of the server's time there (`perf`).
    AllNew,
}

/// [`UPSERT_RESOURCES`] for a batch none of whose resources is stored: its insert half alone.
const INSERT_NEW_RESOURCES: &str = concat!(insert_page_resources!(), "FROM ", page_resources!());

/// The open findings of a batch's flagged resources.
const OPEN_FINDINGS: &str = "SELECT id, arn, verdict, action, lease_id FROM findings
     WHERE arn = ANY($1) AND resolved_at IS NULL";

/// Opens the findings of a batch's resources that have none and records the batch's events
/// (`$12`–`$16`: of a finding already open, or, with no id, of the one opened for an ARN), in
/// one statement. Both in record order (`ORDINALITY`), so finding and event ids are assigned
/// as SQLite assigns them.
const OPEN_AND_RECORD: &str = "WITH opened AS (
         INSERT INTO findings (arn, verdict, action, reason, project, lease_id, account, region,
                               resource_type, opened_at, updated_at)
         SELECT arn, verdict, action, reason, project, lease_id, account, region, resource_type,
                $10, $10
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                     $7::text[], $8::text[], $9::text[]) WITH ORDINALITY
              AS p(arn, verdict, action, reason, project, lease_id, account, region,
                   resource_type, n)
         ORDER BY n
         RETURNING id, arn
     )
     INSERT INTO finding_events (finding_id, run_id, at, kind, verdict, detail)
     SELECT COALESCE(e.finding_id, o.id), $11, $10, e.kind, e.verdict, e.detail
     FROM UNNEST($12::bigint[], $13::text[], $14::text[], $15::text[], $16::text[])
          WITH ORDINALITY AS e(finding_id, arn, kind, verdict, detail, n)
          LEFT JOIN opened o ON e.finding_id IS NULL AND o.arn = e.arn
     ORDER BY e.n";

/// Writes the changed verdicts, actions and leases of open findings.
const UPDATE_FINDINGS: &str = "UPDATE findings f SET verdict = u.verdict, action = u.action,
         reason = u.reason, project = u.project, lease_id = u.lease_id, updated_at = $7
     FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
          AS u(id, verdict, action, reason, project, lease_id)
     WHERE f.id = u.id";

/// A finding now about another lease loses its mark: the next act step marks it afresh (full
/// grace, a notice to the new owner) if it still must go.
const UNMARK_FINDINGS: &str = "UPDATE findings SET deadline = NULL, reap_state = NULL,
         last_decision = NULL, attempts = 0, next_attempt_at = NULL, deactivated_at = NULL,
         last_error = NULL, marked_owner = NULL
     WHERE id = ANY($1) AND deadline IS NOT NULL";

/// A page's statements, prepared on the connection.
struct PageStatements {
    begin: Statement,
    pass_writes: Statement,
    upsert: Statement,
    insert_new: Statement,
    open_findings: Statement,
    open_and_record: Statement,
    update_findings: Statement,
    unmark: Statement,
    commit: Statement,
}

impl PageStatements {
    async fn prepare(c: &mut super::Pooled<'_>) -> Result<Self, StoreError> {
        Ok(PageStatements {
            begin: c.statement("BEGIN").await?,
            pass_writes: c.statement(PASS_WRITES_SHARED).await?,
            upsert: c.statement(UPSERT_RESOURCES).await?,
            insert_new: c.statement(INSERT_NEW_RESOURCES).await?,
            open_findings: c.statement(OPEN_FINDINGS).await?,
            open_and_record: c.statement(OPEN_AND_RECORD).await?,
            update_findings: c.statement(UPDATE_FINDINGS).await?,
            unmark: c.statement(UNMARK_FINDINGS).await?,
            commit: c.statement("COMMIT").await?,
        })
    }
}

/// What a batch's flagged resources change in their findings, decided on their open findings
/// as read, as SQLite's record-by-record loop decides it.
struct FindingWrites<'a> {
    /// Resources with no open finding: one is opened for each.
    new: Vec<&'a Record>,
    /// Open findings whose verdict, action or lease changed, by id.
    updated: Vec<(i64, &'a Record)>,
    /// Of those, the ones now about another lease.
    unmark: Vec<i64>,
    /// One event per finding opened or updated, in record order: the finding's id (none: the
    /// one opened for the ARN), the ARN, the kind, the verdict and the detail.
    events: Vec<(Option<i64>, &'a str, &'static str, &'a str, String)>,
}

impl<'a> FindingWrites<'a> {
    fn of(flagged: &[&'a Record], open: &[Row]) -> Result<Self, StoreError> {
        let mut open_by_arn: HashMap<String, (i64, String, String, Option<String>)> =
            HashMap::with_capacity(open.len());
        for row in open {
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
        let mut w = FindingWrites {
            new: Vec::new(),
            updated: Vec::new(),
            unmark: Vec::new(),
            events: Vec::with_capacity(flagged.len()),
        };
        for r in flagged {
            let arn = r.observed.arn.as_str();
            match open_by_arn.get(arn) {
                Some((id, verdict, action, lease_id)) => {
                    let Some(change) = change_of(verdict, action, lease_id.as_deref(), r) else {
                        continue;
                    };
                    w.updated.push((*id, r));
                    if change.lease_changed {
                        w.unmark.push(*id);
                    }
                    w.events
                        .push((Some(*id), arn, "updated", r.verdict.as_str(), change.detail));
                }
                None => {
                    w.new.push(r);
                    w.events
                        .push((None, arn, "opened", r.verdict.as_str(), r.reason.clone()));
                }
            }
        }
        Ok(w)
    }

    /// Sends the writes together, then `COMMIT` when `commit`; answers when all are answered.
    async fn send(
        &self,
        client: &tokio_postgres::Client,
        s: &PageStatements,
        at: i64,
        run_id: &&str,
        commit: bool,
    ) -> Result<(), StoreError> {
        let new = |f: fn(&Record) -> &str| self.new.iter().map(|r| f(r)).collect::<Vec<&str>>();
        let new_projects: Vec<Option<&str>> = self
            .new
            .iter()
            .map(|r| r.project.as_ref().map(ProjectName::as_str))
            .collect();
        let new_leases: Vec<Option<&str>> =
            self.new.iter().map(|r| r.lease_id.as_deref()).collect();
        let (new_arns, new_verdicts, new_actions, new_reasons) = (
            new(|r| r.observed.arn.as_str()),
            new(|r| r.verdict.as_str()),
            new(|r| r.action.as_str()),
            new(|r| r.reason.as_str()),
        );
        let (new_accounts, new_regions, new_types) = (
            new(|r| r.observed.account.as_str()),
            new(|r| r.observed.region.as_str()),
            new(|r| r.observed.resource_type.as_str()),
        );
        let event_ids: Vec<Option<i64>> = self.events.iter().map(|e| e.0).collect();
        let event_arns: Vec<&str> = self.events.iter().map(|e| e.1).collect();
        let kinds: Vec<&str> = self.events.iter().map(|e| e.2).collect();
        let verdicts: Vec<&str> = self.events.iter().map(|e| e.3).collect();
        let details: Vec<&str> = self.events.iter().map(|e| e.4.as_str()).collect();
        let record_args: [&(dyn ToSql + Sync); 16] = [
            &new_arns,
            &new_verdicts,
            &new_actions,
            &new_reasons,
            &new_projects,
            &new_leases,
            &new_accounts,
            &new_regions,
            &new_types,
            &at,
            run_id,
            &event_ids,
            &event_arns,
            &kinds,
            &verdicts,
            &details,
        ];
        let updated = |f: fn(&Record) -> &str| {
            self.updated
                .iter()
                .map(|(_, r)| f(r))
                .collect::<Vec<&str>>()
        };
        let ids: Vec<i64> = self.updated.iter().map(|(id, _)| *id).collect();
        let updated_projects: Vec<Option<&str>> = self
            .updated
            .iter()
            .map(|(_, r)| r.project.as_ref().map(ProjectName::as_str))
            .collect();
        let updated_leases: Vec<Option<&str>> = self
            .updated
            .iter()
            .map(|(_, r)| r.lease_id.as_deref())
            .collect();
        let (updated_verdicts, updated_actions, updated_reasons) = (
            updated(|r| r.verdict.as_str()),
            updated(|r| r.action.as_str()),
            updated(|r| r.reason.as_str()),
        );
        let update_args: [&(dyn ToSql + Sync); 7] = [
            &ids,
            &updated_verdicts,
            &updated_actions,
            &updated_reasons,
            &updated_projects,
            &updated_leases,
            &at,
        ];
        let unmark_args: [&(dyn ToSql + Sync); 1] = [&self.unmark];
        // Each future sends its statement when first polled, in this order, and the server
        // answers in order: one round trip for the lot. A failed statement makes the later
        // ones fail ("transaction is aborted") and the `COMMIT` a rollback: every answer is
        // awaited and the first error in statement order returned.
        let (recorded, updated, unmarked, committed) = tokio::join!(
            biased;
            send_if(
                client,
                !self.events.is_empty(),
                &s.open_and_record,
                &record_args
            ),
            send_if(
                client,
                !self.updated.is_empty(),
                &s.update_findings,
                &update_args
            ),
            send_if(client, !self.unmark.is_empty(), &s.unmark, &unmark_args),
            send_if(client, commit, &s.commit, &[]),
        );
        recorded?;
        updated?;
        unmarked?;
        committed?;
        Ok(())
    }
}

/// `statement` if `on` (sent when first polled, so futures polled together are pipelined).
async fn send_if(
    client: &tokio_postgres::Client,
    on: bool,
    statement: &Statement,
    args: &[&(dyn ToSql + Sync)],
) -> Result<(), tokio_postgres::Error> {
    if on {
        client.execute(statement, args).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::inventory::tests::{record, t0};
    use crate::store::{Store, StoreLocation};

    /// A page that meets another transaction's uncommitted insert of one of its resources
    /// waits for it, fails on the resources' key in the middle of its pipelined statements,
    /// and is written again, now updating that resource: one row, one finding each, and the
    /// pool serves the next page.
    #[tokio::test]
    async fn a_page_racing_another_over_a_resource_is_written_again() {
        let target = StoreLocation::Postgres(Box::new(super::super::testing::fresh_target().await));
        let store = Store::open_at(&target).await.expect("opens");
        let t1 = t0();
        let pg = store.pg().expect("postgres");
        let holder = pg.conn().await.expect("connects");
        let raced = record("i-raced", "us-east-1", Verdict::Untagged, None);
        holder
            .client()
            .batch_execute("BEGIN")
            .await
            .expect("begins");
        holder
            .client()
            .execute(
                "INSERT INTO resources (arn, account, region, resource_type, tags, first_seen,
                                        last_seen, verdict, reason, action, grace_s, last_run)
                 VALUES ($1, $2, 'us-east-1', 'ec2:instance', '', 0, 0, 'leased', 'r', 'none',
                         0, 'other')",
                &[&raced.observed.arn.as_str(), &raced.observed.account],
            )
            .await
            .expect("inserts");
        let page = tokio::spawn({
            let store = store.clone();
            let records = vec![
                record("i-first", "us-east-1", Verdict::Untagged, None),
                raced,
                record("i-last", "us-east-1", Verdict::Untagged, None),
            ];
            async move { store.persist_page("r1".into(), t1, records).await }
        });
        let probe = pg.conn().await.expect("connects");
        let waited = super::super::testing::waits(
            &probe,
            "SELECT COUNT(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
             WHERE l.locktype = 'transactionid' AND NOT l.granted
               AND a.datname = current_database()",
            &page,
            "written past an uncommitted insert",
        )
        .await;
        assert!(waited, "the page never waited for the other insert");
        holder
            .client()
            .batch_execute("COMMIT")
            .await
            .expect("commits");
        let changes = page.await.expect("joins").expect("written again");
        assert_eq!(changes.opened, 3);
        let rows = probe
            .client()
            .query(
                "SELECT arn, last_run, verdict FROM resources ORDER BY arn",
                &[],
            )
            .await
            .expect("reads resources");
        let rows: Vec<(String, String, String)> = rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        assert_eq!(rows.len(), 3, "{rows:?}");
        assert!(
            rows.iter()
                .all(|(_, run, verdict)| run == "r1" && verdict == "untagged"),
            "the raced row updated by the page written again: {rows:?}"
        );
        let open: i64 = probe
            .client()
            .query_one(
                "SELECT COUNT(*) FROM findings WHERE resolved_at IS NULL",
                &[],
            )
            .await
            .expect("counts findings")
            .get(0);
        assert_eq!(open, 3);
        let next = store
            .persist_page(
                "r2".into(),
                t1,
                vec![record("i-first", "us-east-1", Verdict::Untagged, None)],
            )
            .await
            .expect("the next page is written");
        assert_eq!((next.opened, next.updated), (0, 0));
    }
}
