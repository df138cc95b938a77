//! Store calls of the audit pass: runs, walks, resources, findings.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rusqlite::{CachedStatement, Connection, OptionalExtension, Row, params};

use super::{Store, StoreError, bad, from_ms, ms, opt_time_at, stored_tags, time_at, verdict_at};
use crate::model::{Action, ControllerRef, RunOutcome, Source, TaskName, Verdict, WalkOutcome};
use crate::resource::{
    Finding, PageChanges, Record, RunRecord, StoredResource, WalkChanges, WalkRecord,
};

/// Filters shared by resource and finding listings.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub verdict: Option<Verdict>,
    pub project: Option<String>,
    pub region: Option<String>,
    pub account: Option<String>,
    pub resource_type: Option<String>,
    /// Confines the listing to these projects (set for lessees).
    pub projects_in: Option<Vec<String>>,
    /// Findings: include resolved ones. Resources: include gone ones.
    pub include_closed: bool,
    /// Cursor from the previous page.
    pub after: Option<String>,
    pub limit: u32,
}

/// The untagged and unknown-lease findings a pass opened: the first ones, and how many more.
#[derive(Debug, Clone, Default)]
pub struct Strays {
    pub listed: Vec<Finding>,
    pub more: u64,
}

/// See [`Store::live_totals`].
#[derive(Debug, Default)]
pub struct LiveTotals {
    /// `[project, region, resource_type, verdict]` and how many live resources have them.
    pub series: Vec<([String; 4], u64)>,
    /// Project and its expired-resource hours.
    pub expired_hours: Vec<(String, f64)>,
    /// `[source, verdict]` and how many live resources have them.
    pub by_source: Vec<([String; 2], u64)>,
    /// `[account, verdict]` and how many live resources have them.
    pub by_account: Vec<([String; 2], u64)>,
}

pub(super) fn corrupt(what: &str, v: &str) -> StoreError {
    StoreError::Corrupt(format!("bad {what} `{v}`"))
}

impl Store {
    pub async fn start_run(
        &self,
        id: String,
        task: TaskName,
        trigger: String,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if let Some(pg) = self.pg() {
            return pg.start_run(id, task, trigger, at).await;
        }
        self.writer()?
            .write(move |c| {
                c.prepare_cached(
                    "INSERT INTO runs (id, task, trigger, started_at, marks_resolvable)
                     VALUES (?1, ?2, ?3, ?4, 1)",
                )?
                .execute(params![id, task, trigger, ms(at)])?;
                Ok(())
            })
            .await
    }

    pub async fn finish_run(
        &self,
        id: String,
        at: DateTime<Utc>,
        outcome: RunOutcome,
        summary: serde_json::Value,
    ) -> Result<(), StoreError> {
        if let Some(pg) = self.pg() {
            return pg.finish_run(id, at, outcome, summary).await;
        }
        self.writer()?
            .write(move |c| {
                c.prepare_cached(
                    "UPDATE runs SET ended_at = ?2, outcome = ?3, summary = ?4 WHERE id = ?1",
                )?
                .execute(params![id, ms(at), outcome, summary.to_string()])?;
                Ok(())
            })
            .await
    }

    /// The latest run of each task.
    pub async fn latest_runs(&self) -> Result<Vec<RunRecord>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.latest_runs().await;
        }
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, task, trigger, started_at, ended_at, outcome, summary FROM runs r
                 -- Ids are UUIDv7 (time-ordered): they break a tie of runs started in the
                 -- same millisecond, which would otherwise both count as the latest.
                 WHERE id = (SELECT id FROM runs WHERE task = r.task
                             ORDER BY started_at DESC, id DESC LIMIT 1)
                 ORDER BY task",
            )?;
            Ok(stmt
                .query_map([], run_row)?
                .collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// When each task last finished successfully: `(task, ended_at)`.
    pub async fn last_successes(&self) -> Result<Vec<(TaskName, DateTime<Utc>)>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.last_successes().await;
        }
        let rows: Vec<(TaskName, i64)> = self
            .read(|c| {
                let mut stmt = c.prepare_cached(
                    "SELECT task, MAX(ended_at) FROM runs
                     WHERE outcome = ?1 AND ended_at IS NOT NULL GROUP BY task ORDER BY task",
                )?;
                Ok::<_, StoreError>(
                    stmt.query_map([RunOutcome::Success], |r| Ok((r.get(0)?, r.get(1)?)))?
                        .collect::<Result<Vec<_>, _>>()?,
                )
            })
            .await?;
        rows.into_iter()
            .map(|(task, at)| Ok((task, from_ms(at)?)))
            .collect()
    }

    pub async fn get_run(&self, id: String) -> Result<Option<RunRecord>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.get_run(id).await;
        }
        self.read(move |c| {
            Ok(c
                .prepare_cached("SELECT id, task, trigger, started_at, ended_at, outcome, summary FROM runs WHERE id = ?1")?
                .query_row([id], run_row)
                .optional()?)
        })
        .await
    }

    pub async fn walks_of(&self, run_id: String) -> Result<Vec<WalkRecord>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.walks_of(run_id).await;
        }
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT account, region, started_at, ended_at, outcome, reason, pages, resources, sweep
                 FROM walks WHERE run_id = ?1 ORDER BY account, region",
            )?;
            let rows = stmt
                .query_map([run_id], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, WalkOutcome>(4)?,
                        r.get::<_, Option<String>>(5)?,
                        r.get::<_, i64>(6)?,
                        r.get::<_, i64>(7)?,
                        r.get::<_, Option<String>>(8)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter()
                .map(
                    |(account, region, s, e, outcome, reason, pages, resources, sweep)| {
                        let sweep = sweep
                            .map(|text| {
                                serde_json::from_str(&text).map_err(|_| corrupt("sweep", &text))
                            })
                            .transpose()?;
                        Ok(WalkRecord {
                            account,
                            region,
                            started_at: from_ms(s)?,
                            ended_at: from_ms(e)?,
                            outcome,
                            reason,
                            pages: u64::try_from(pages).unwrap_or(0),
                            resources: u64::try_from(resources).unwrap_or(0),
                            sweep,
                        })
                    },
                )
                .collect()
        })
        .await
    }

    /// The `untagged` and `unknown-lease` findings run `run_id` opened, the first `limit` of
    /// them (with their resource's source and creator) and how many more.
    pub async fn strays_opened_in(&self, run_id: String, limit: u32) -> Result<Strays, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.strays_opened_in(run_id, limit).await;
        }
        self.read(move |c| {
            let opened = "JOIN finding_events e ON e.finding_id = f.id
                 WHERE e.run_id = ?1 AND e.kind = 'opened' AND f.verdict IN ('untagged', 'unknown-lease')";
            let total: i64 = c
                .prepare_cached(&format!("SELECT COUNT(*) FROM findings f {opened}"))?
                .query_row([&run_id], |r| r.get(0))?;
            let mut stmt =
                c.prepare_cached(&format!("{FINDING_SELECT} {opened} ORDER BY f.id LIMIT ?2"))?;
            let listed = stmt
                .query_map(params![run_id, limit], finding_row)?
                .collect::<Result<Vec<_>, _>>()?;
            let more = u64::try_from(total).unwrap_or(0).saturating_sub(listed.len() as u64);
            Ok(Strays { listed, more })
        })
        .await
    }

    /// The findings a pass opened that claim one of `projects` (a team's share of the pass):
    /// the first `limit`, and how many more.
    pub async fn opened_in_projects(
        &self,
        run_id: String,
        projects: Vec<String>,
        limit: u32,
    ) -> Result<Strays, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.opened_in_projects(run_id, projects, limit).await;
        }
        let projects = serde_json::to_string(&projects).unwrap_or_else(|_| "[]".into());
        self.read(move |c| {
            let opened = "JOIN finding_events e ON e.finding_id = f.id
                 WHERE e.run_id = ?1 AND e.kind = 'opened'
                   AND f.project IN (SELECT value FROM json_each(?2))";
            let total: i64 = c
                .prepare_cached(&format!("SELECT COUNT(*) FROM findings f {opened}"))?
                .query_row(params![run_id, projects], |r| r.get(0))?;
            let mut stmt =
                c.prepare_cached(&format!("{FINDING_SELECT} {opened} ORDER BY f.id LIMIT ?3"))?;
            let listed = stmt
                .query_map(params![run_id, projects, limit], finding_row)?
                .collect::<Result<Vec<_>, _>>()?;
            let more = u64::try_from(total)
                .unwrap_or(0)
                .saturating_sub(listed.len() as u64);
            Ok(Strays { listed, more })
        })
        .await
    }

    /// Up to `limit` live resources of open `untagged` or `unknown-lease` findings whose creator
    /// was never asked: `(arn, account, region)`, oldest finding first.
    pub async fn creators_to_look_up(
        &self,
        limit: u32,
    ) -> Result<Vec<(crate::model::Arn, String, String)>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.creators_to_look_up(limit).await;
        }
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT r.arn, r.account, r.region FROM findings f JOIN resources r ON r.arn = f.arn
                 WHERE f.resolved_at IS NULL AND f.verdict IN ('untagged', 'unknown-lease')
                   AND r.gone_at IS NULL AND r.creator_checked_at IS NULL
                 ORDER BY f.id LIMIT ?1",
            )?;
            let rows = stmt
                .query_map([limit], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// Records who made these resources (`None`: CloudTrail does not know) as asked at `at`.
    pub async fn record_creators(
        &self,
        found: Vec<(crate::model::Arn, Option<String>)>,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if let Some(pg) = self.pg() {
            return pg.record_creators(found, at).await;
        }
        self.writer()?
            .write(move |c| {
                let mut stmt = c.prepare_cached(
                    "UPDATE resources SET creator = ?2, creator_checked_at = ?3 WHERE arn = ?1",
                )?;
                for (arn, creator) in &found {
                    stmt.execute(params![arn, creator, ms(at)])?;
                }
                Ok(())
            })
            .await
    }

    /// When each (account, region) last started a sweep in which every type completed.
    pub async fn last_sweeps(
        &self,
    ) -> Result<HashMap<(String, String), DateTime<Utc>>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.last_sweeps().await;
        }
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT account, region, MAX(swept_at) FROM walks
                 WHERE swept_at IS NOT NULL GROUP BY account, region",
            )?;
            let rows = stmt
                .query_map([], |r| Ok(((r.get(0)?, r.get(1)?), time_at(r, 2)?)))?
                .collect::<Result<HashMap<_, _>, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// Every lease, for evaluation (the registry is small next to the inventory).
    pub async fn all_leases(&self) -> Result<Vec<crate::model::Lease>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.all_leases().await;
        }
        self.read(|c| {
            let sql = format!("SELECT {} FROM leases", super::LEASE_COLUMNS);
            let mut stmt = c.prepare(&sql)?;
            let raws = stmt
                .query_map([], super::RawLease::from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            raws.into_iter().map(super::RawLease::into_lease).collect()
        })
        .await
    }

    /// How many [`Store::persist_page`] calls of one walk may run at once: SQLite has one
    /// writer, so one (pages in order); PostgreSQL three, so other server backends write while
    /// one waits for its commit's flush or for us (pages racing over one resource are written
    /// again; see `pg::inventory`). Three, not two: measured on 2 cores (docs/development.md).
    pub fn pages_in_flight(&self) -> usize {
        if self.pg().is_some() { 3 } else { 1 }
    }

    /// Whether the store holds no resource of `account`/`region`, gone ones included: the
    /// scope's first walk, whose pages [`Store::persist_page_as`] writes faster. SQLite
    /// answers false without asking (it has no faster way to write them).
    pub async fn scope_is_new(&self, account: &str, region: &str) -> Result<bool, StoreError> {
        match self.pg() {
            Some(pg) => pg.scope_is_new(account, region).await,
            None => Ok(false),
        }
    }

    /// [`Store::persist_page`] for a walk that found its scope new or not
    /// ([`Store::scope_is_new`]): the same rows and findings either way; a new scope's page is
    /// written on PostgreSQL first as if none of its resources were stored (a plain insert, no
    /// read of open findings), and again the usual way should one be there after all (another
    /// walk's, or a page repeating an ARN).
    pub async fn persist_page_as(
        &self,
        run_id: String,
        at: DateTime<Utc>,
        records: Vec<Record>,
        new_scope: bool,
    ) -> Result<PageChanges, StoreError> {
        match self.pg() {
            Some(pg) => pg.persist_page(run_id, at, records, new_scope).await,
            None => self.persist_page(run_id, at, records).await,
        }
    }

    /// Upserts one page of evaluated resources and opens or updates their findings, in one
    /// transaction. Resolving is left to [`Store::finish_walk`] (only complete walks resolve).
    pub async fn persist_page(
        &self,
        run_id: String,
        at: DateTime<Utc>,
        records: Vec<Record>,
    ) -> Result<PageChanges, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.persist_page(run_id, at, records, false).await;
        }
        self.writer()?
            .write(move |c| {
                let mut changes = PageChanges::default();
                // Statements looked up once per batch: the cache hashes and compares the whole
                // SQL text on each lookup, which per record cost more than the upsert itself.
                let mut st = PageStatements::prepare(c)?;
                for r in &records {
                    upsert_resource(&mut st.upsert, r, at, &run_id)?;
                    if r.verdict.is_finding() && !r.observed.is_terminated() {
                        match open_or_update(c, &mut st, &run_id, r, at)? {
                            Some(true) => changes.opened += 1,
                            Some(false) => changes.updated += 1,
                            None => {}
                        }
                    }
                }
                Ok(changes)
            })
            .await
    }

    /// Records a walk. A complete walk also marks what it did not see as gone and resolves the
    /// findings of resources in its scope that are gone, terminated or no longer flagged; an
    /// incomplete walk changes nothing else.
    pub async fn finish_walk(
        &self,
        run_id: String,
        walk: WalkRecord,
    ) -> Result<WalkChanges, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.finish_walk(run_id, walk).await;
        }
        self.writer()?
            .write(move |c| {
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
                c.prepare_cached(
                    "INSERT INTO walks (run_id, account, region, started_at, ended_at, outcome, reason, pages, resources,
                                        sweep, swept_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                )?
                .execute(params![
                    run_id,
                    walk.account,
                    walk.region,
                    ms(walk.started_at),
                    ms(walk.ended_at),
                    walk.outcome,
                    walk.reason,
                    i64::try_from(walk.pages).unwrap_or(i64::MAX),
                    i64::try_from(walk.resources).unwrap_or(i64::MAX),
                    sweep,
                    swept_at,
                ])?;
                if !walk.is_complete() {
                    return Ok(WalkChanges::default());
                }
                // Each source marks gone only what it lists: the tagging walk its own, a
                // type's complete sweep what it found before and no longer lists.
                let mut gone = c
                    .prepare_cached(
                        "UPDATE resources SET gone_at = ?4, resolve_pending = 1
                         WHERE account = ?1 AND region = ?2 AND last_run != ?3 AND gone_at IS NULL
                           AND source = ?5",
                    )?
                    .execute(params![walk.account, walk.region, run_id, ms(walk.ended_at), Source::Tagging])?;
                for t in walk.sweep.iter().flat_map(|s| &s.types) {
                    if t.outcome != WalkOutcome::Complete {
                        continue;
                    }
                    gone += c
                        .prepare_cached(
                            // Found by a sweep or a search: either lists what the other did.
                            "UPDATE resources SET gone_at = ?4, resolve_pending = 1
                             WHERE account = ?1 AND region = ?2 AND last_run != ?3 AND gone_at IS NULL
                               AND source != ?5 AND resource_type = ?6",
                        )?
                        .execute(params![
                            walk.account,
                            walk.region,
                            run_id,
                            ms(walk.ended_at),
                            Source::Tagging,
                            t.resource_type.as_str()
                        ])?;
                }
                // A run of an earlier build since the last walk's end (migration 29): its pages
                // marked nothing, so every row that may have a finding to resolve is marked.
                let unaware = c
                    .prepare_cached(
                        "UPDATE runs SET marks_resolvable = 1 WHERE marks_resolvable IS NULL",
                    )?
                    .execute([])?;
                if unaware > 0 {
                    c.prepare_cached(MARK_RESOLVABLE)?.execute([])?;
                }
                // Only the rows a page or the gone-marking above marked can have a finding to
                // resolve (migration 28); the state is checked again all the same.
                let stale: Vec<(i64, String, String)> = c
                    .prepare_cached(
                        "SELECT f.id, f.verdict,
                                CASE WHEN r.state = 'terminated' THEN 'terminated'
                                     WHEN r.gone_at IS NOT NULL THEN 'gone'
                                     ELSE 'now ' || r.verdict END
                         FROM resources r JOIN findings f ON f.arn = r.arn AND f.resolved_at IS NULL
                         WHERE r.account = ?1 AND r.region = ?2 AND r.resolve_pending = 1
                           AND (r.gone_at IS NOT NULL OR r.state = 'terminated'
                                OR r.verdict IN ('leased', 'protected'))
                         ORDER BY f.id",
                    )?
                    .query_map(params![walk.account, walk.region], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect::<Result<_, _>>()?;
                c.prepare_cached(
                    "UPDATE resources SET resolve_pending = 0
                     WHERE account = ?1 AND region = ?2 AND resolve_pending = 1",
                )?
                .execute(params![walk.account, walk.region])?;
                for (id, verdict, why) in &stale {
                    c.prepare_cached("UPDATE findings SET resolved_at = ?2, updated_at = ?2, resolution = ?3 WHERE id = ?1")?
                        .execute(params![id, ms(walk.ended_at), why])?;
                    event(c, *id, &run_id, walk.ended_at, "resolved", verdict, why)?;
                }
                Ok(WalkChanges {
                    gone: gone as u64,
                    resolved: stale.len() as u64,
                })
            })
            .await
    }

    /// What the resource gauges show, from one scan of the live resources: counts per (project
    /// or `unknown`, region, type, verdict), and per project the hours since lease end (or, for
    /// unknown leases, since first seen) summed over expired, released and unknown-lease ones.
    /// Aggregated here rather than by SQL `GROUP BY`, whose sort cost more than the scan.
    pub async fn live_totals(&self, now: DateTime<Utc>) -> Result<LiveTotals, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.live_totals(now).await;
        }
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT COALESCE(project, 'unknown'), region, resource_type, verdict,
                        COALESCE(lease_ended_at, first_seen), source, account
                 FROM resources WHERE gone_at IS NULL",
            )?;
            let mut rows = stmt.query([])?;
            let mut counts: HashMap<String, u64> = HashMap::new();
            let mut waste_ms: HashMap<String, i64> = HashMap::new();
            let mut key = String::new();
            let now = ms(now);
            while let Some(r) = rows.next()? {
                let text = |i: usize| r.get_ref(i).and_then(|v| Ok(v.as_str()?));
                let (project, verdict) = (text(0)?, text(3)?);
                // One count per (project, region, type, verdict, source): both gauges are sums
                // of it, so a row costs one lookup and no allocation once its key is known.
                key.clear();
                for part in [project, text(1)?, text(2)?, verdict, text(5)?, text(6)?] {
                    key.push_str(part);
                    key.push('\u{1f}');
                }
                match counts.get_mut(key.as_str()) {
                    Some(n) => *n += 1,
                    None => {
                        counts.insert(key.clone(), 1);
                    }
                }
                if matches!(verdict, "expired" | "released" | "unknown-lease") {
                    let since: i64 = r.get(4)?;
                    let hours = (now - since).max(0);
                    match waste_ms.get_mut(project) {
                        Some(sum) => *sum += hours,
                        None => {
                            waste_ms.insert(project.to_owned(), hours);
                        }
                    }
                }
            }
            let counts = counts.into_iter().map(|(k, n)| {
                let mut parts = k.split('\u{1f}').map(str::to_owned);
                (std::array::from_fn(|_| parts.next().unwrap_or_default()), n)
            });
            Ok(live_totals_of(counts, waste_ms))
        })
        .await
    }

    pub async fn list_resources(
        &self,
        f: AuditFilter,
    ) -> Result<(Vec<StoredResource>, Option<String>), StoreError> {
        if let Some(pg) = self.pg() {
            return pg.list_resources(f).await;
        }
        self.read(move |c| {
            let (sql, args, limit) = resource_listing(&f, Engine::Sqlite);
            let mut stmt = c.prepare(&sql)?;
            let mut items = stmt
                .query_map(rusqlite::params_from_iter(sqlite_args(args)), resource_row)?
                .collect::<Result<Vec<_>, _>>()?;
            let next = super::next_cursor(&mut items, limit, |r| r.arn.to_string());
            Ok((items, next))
        })
        .await
    }

    pub async fn list_findings(
        &self,
        f: AuditFilter,
    ) -> Result<(Vec<Finding>, Option<String>), StoreError> {
        if let Some(pg) = self.pg() {
            return pg.list_findings(f).await;
        }
        self.read(move |c| {
            let (sql, args, limit) = finding_listing(&f, Engine::Sqlite)?;
            let mut stmt = c.prepare(&sql)?;
            let mut items = stmt
                .query_map(rusqlite::params_from_iter(sqlite_args(args)), finding_row)?
                .collect::<Result<Vec<_>, _>>()?;
            let next = super::next_cursor(&mut items, limit, |f| f.id.to_string());
            Ok((items, next))
        })
        .await
    }

    pub async fn get_finding(&self, id: i64) -> Result<Option<Finding>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.get_finding(id).await;
        }
        self.read(move |c| {
            Ok(
                c.prepare_cached(&format!("{FINDING_SELECT} WHERE f.id = ?1"))?
                    .query_row([id], finding_row)
                    .optional()?,
            )
        })
        .await
    }

    /// The id of the newest finding event (0 with none): a pass's events come after it.
    pub async fn last_finding_event_id(&self) -> Result<i64, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.last_finding_event_id().await;
        }
        self.read(|c| {
            Ok(
                c.query_row("SELECT COALESCE(MAX(id), 0) FROM finding_events", [], |r| {
                    r.get(0)
                })?,
            )
        })
        .await
    }

    /// Findings opened, resolved and marked for deletion by run `run_id`, from the finding event after `after` on,
    /// oldest first, at most `limit` (page on with the last one's `event_id`).
    pub async fn run_finding_changes(
        &self,
        run_id: String,
        after: i64,
        limit: u32,
    ) -> Result<Vec<FindingChange>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.run_finding_changes(&run_id, after, limit).await;
        }
        self.read(move |c| {
            let mut stmt = c.prepare_cached(RUN_FINDING_CHANGES)?;
            let rows = stmt
                .query_map(params![after, run_id, limit], |r| {
                    Ok((
                        FindingChange {
                            event_id: r.get(0)?,
                            finding_id: r.get(1)?,
                            kind: r.get(2)?,
                            verdict: r.get(3)?,
                            detail: r.get(4)?,
                            at: Utc::now(),
                            arn: r.get(6)?,
                            project: r.get(7)?,
                            lease_id: r.get(8)?,
                            account: r.get(9)?,
                            region: r.get(10)?,
                            resource_type: r.get(11)?,
                        },
                        r.get::<_, i64>(5)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter()
                .map(|(mut f, at)| {
                    f.at = from_ms(at)?;
                    Ok(f)
                })
                .collect()
        })
        .await
    }

    /// The transitions of one finding: (at, kind, verdict, detail).
    pub async fn finding_events(
        &self,
        id: i64,
    ) -> Result<Vec<(DateTime<Utc>, String, String, String)>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.finding_events(id).await;
        }
        self.read(move |c| {
            let mut stmt = c.prepare_cached("SELECT at, kind, verdict, detail FROM finding_events WHERE finding_id = ?1 ORDER BY id")?;
            let rows = stmt
                .query_map([id], |r| Ok((r.get::<_, i64>(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter().map(|(t, k, v, d)| Ok((from_ms(t)?, k, v, d))).collect()
        })
        .await
    }
}

/// A finding opened, resolved or marked for deletion by a pass, with what it is about.
#[derive(Debug, Clone, PartialEq)]
pub struct FindingChange {
    pub event_id: i64,
    pub finding_id: i64,
    /// `opened`, `resolved` or `marked`.
    pub kind: String,
    pub verdict: String,
    pub detail: String,
    pub at: DateTime<Utc>,
    pub arn: String,
    pub project: Option<String>,
    pub lease_id: Option<String>,
    pub account: String,
    pub region: String,
    pub resource_type: String,
}

/// [`Store::run_finding_changes`]'s statement (PostgreSQL's has `$n` placeholders).
const RUN_FINDING_CHANGES: &str =
    "SELECT e.id, e.finding_id, e.kind, e.verdict, e.detail, e.at, f.arn, f.project,
            f.lease_id, f.account, f.region, f.resource_type
     FROM finding_events e JOIN findings f ON f.id = e.finding_id
     WHERE e.id > ?1 AND e.run_id = ?2 AND e.kind IN ('opened', 'resolved', 'marked')
     ORDER BY e.id LIMIT ?3";

/// A finding's columns in [`finding_row`]'s order, its resource's source, creation time and
/// creator after them; `f` is the finding, `r` its resource.
macro_rules! finding_select {
    () => {
        "SELECT f.id, f.arn, f.verdict, f.action, f.reason, f.project, f.lease_id, f.account, f.region,
                f.resource_type, f.opened_at, f.updated_at, f.resolved_at, f.resolution,
                r.source, r.created_at, r.creator
         FROM findings f LEFT JOIN resources r ON r.arn = f.arn"
    };
}
pub(super) use finding_select;

const FINDING_SELECT: &str = finding_select!();

/// [`LiveTotals`] from the count of live resources per `[project, region, resource_type,
/// verdict, source, account]` and the expired milliseconds per project.
pub(super) fn live_totals_of(
    counts: impl IntoIterator<Item = ([String; 6], u64)>,
    waste_ms: HashMap<String, i64>,
) -> LiveTotals {
    let mut series: HashMap<[String; 4], u64> = HashMap::new();
    let mut by_source: HashMap<[String; 2], u64> = HashMap::new();
    let mut by_account: HashMap<[String; 2], u64> = HashMap::new();
    for ([project, region, kind, verdict, source, account], n) in counts {
        *by_source.entry([source, verdict.clone()]).or_default() += n;
        *by_account.entry([account, verdict.clone()]).or_default() += n;
        *series.entry([project, region, kind, verdict]).or_default() += n;
    }
    let expired_hours = waste_ms
        .into_iter()
        .map(|(p, total)| (p, total as f64 / 3_600_000.0))
        .collect();
    LiveTotals {
        series: series.into_iter().collect(),
        expired_hours,
        by_source: by_source.into_iter().collect(),
        by_account: by_account.into_iter().collect(),
    }
}

/// The engine a listing's SQL is written for: they differ in placeholders and in how a list
/// of values is bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Engine {
    Sqlite,
    Postgres,
}

impl Engine {
    /// The placeholder of the `n`th argument.
    fn arg(self, n: usize) -> String {
        match self {
            Engine::Sqlite => format!("?{n}"),
            Engine::Postgres => format!("${n}"),
        }
    }

    /// `column` is one of the list bound as the `n`th argument.
    fn one_of(self, column: &str, n: usize) -> String {
        match self {
            Engine::Sqlite => format!("{column} IN (SELECT value FROM json_each(?{n}))"),
            Engine::Postgres => format!("{column} = ANY(${n})"),
        }
    }
}

/// An argument of a listing, bound by each engine its own way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ListingArg {
    Text(String),
    Texts(Vec<String>),
    Int(i64),
}

fn sqlite_args(args: Vec<ListingArg>) -> Vec<rusqlite::types::Value> {
    args.into_iter()
        .map(|a| match a {
            ListingArg::Text(t) => t.into(),
            ListingArg::Texts(ts) => serde_json::to_string(&ts)
                .unwrap_or_else(|_| "[]".into())
                .into(),
            ListingArg::Int(i) => i.into(),
        })
        .collect()
}

/// The columns of [`resource_row`], in its order.
macro_rules! resource_select {
    () => {
        "SELECT arn, account, region, resource_type, tags, first_seen, last_seen, gone_at, state,
                verdict, reason, project, action, lease_id, source, created_at, creator FROM resources"
    };
}

/// A page of [`Store::list_resources`]: its SQL, arguments and size.
pub(super) fn resource_listing(f: &AuditFilter, e: Engine) -> (String, Vec<ListingArg>, u32) {
    let (mut sql, mut args) = where_clause(concat!(resource_select!(), " WHERE 1 = 1"), "", f, e);
    if !f.include_closed {
        sql.push_str(" AND gone_at IS NULL");
    }
    if let Some(a) = &f.after {
        args.push(ListingArg::Text(a.clone()));
        sql.push_str(&format!(" AND arn > {}", e.arg(args.len())));
    }
    let limit = f.limit.clamp(1, 1000);
    sql.push_str(&format!(" ORDER BY arn LIMIT {}", limit + 1));
    (sql, args, limit)
}

/// A page of [`Store::list_findings`]: its SQL, arguments and size.
pub(super) fn finding_listing(
    f: &AuditFilter,
    e: Engine,
) -> Result<(String, Vec<ListingArg>, u32), StoreError> {
    let (mut sql, mut args) = where_clause(concat!(finding_select!(), " WHERE 1 = 1"), "f.", f, e);
    if !f.include_closed {
        sql.push_str(" AND f.resolved_at IS NULL");
    }
    if let Some(a) = &f.after {
        let id: i64 = a.parse().map_err(|_| corrupt("cursor", a))?;
        args.push(ListingArg::Int(id));
        sql.push_str(&format!(" AND f.id > {}", e.arg(args.len())));
    }
    let limit = f.limit.clamp(1, 1000);
    sql.push_str(&format!(" ORDER BY f.id LIMIT {}", limit + 1));
    Ok((sql, args, limit))
}

/// `base` with the filter's conditions on the columns of `qualifier` (`""` or `"f."`).
fn where_clause(
    base: &str,
    qualifier: &str,
    f: &AuditFilter,
    e: Engine,
) -> (String, Vec<ListingArg>) {
    let mut sql = base.to_owned();
    let mut args = Vec::new();
    for (col, v) in [
        ("verdict", f.verdict.map(|v| v.as_str().to_owned())),
        ("project", f.project.clone()),
        ("region", f.region.clone()),
        ("account", f.account.clone()),
        ("resource_type", f.resource_type.clone()),
    ] {
        if let Some(v) = v {
            args.push(ListingArg::Text(v));
            sql.push_str(&format!(" AND {qualifier}{col} = {}", e.arg(args.len())));
        }
    }
    if let Some(ps) = &f.projects_in {
        args.push(ListingArg::Texts(ps.clone()));
        sql.push_str(&format!(
            " AND {}",
            e.one_of(&format!("{qualifier}project"), args.len())
        ));
    }
    (sql, args)
}

/// Marks every row that may have a finding to resolve (a resource gone, terminated or fine),
/// as migration 28 did: after a pass of a build that did not mark them (migration 29).
pub(super) const MARK_RESOLVABLE: &str = "UPDATE resources SET resolve_pending = 1
    WHERE resolve_pending = 0
      AND (gone_at IS NOT NULL OR state = 'terminated' OR verdict IN ('leased', 'protected'))
      AND EXISTS (SELECT 1 FROM findings f WHERE f.arn = resources.arn AND f.resolved_at IS NULL)";

/// The statements `persist_page` runs per record.
struct PageStatements<'c> {
    upsert: CachedStatement<'c>,
    open_finding: CachedStatement<'c>,
    insert_finding: CachedStatement<'c>,
    update_finding: CachedStatement<'c>,
    unmark: CachedStatement<'c>,
    event: CachedStatement<'c>,
}

impl<'c> PageStatements<'c> {
    fn prepare(c: &'c Connection) -> rusqlite::Result<Self> {
        Ok(PageStatements {
            upsert: c.prepare_cached(
                "INSERT INTO resources (arn, account, region, resource_type, tags, first_seen, last_seen, gone_at,
                                state, verdict, reason, project, action, grace_s, lease_id, lease_ended_at, last_run,
                                source, created_at, controller)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)
         ON CONFLICT (arn) DO UPDATE SET
             -- Region-less ARNs (S3) may be listed by several regions' walks (an emulator lists
             -- every bucket everywhere): the smallest region name wins, so the owner is stable.
             region = MIN(resources.region, excluded.region),
             tags = excluded.tags, last_seen = excluded.last_seen,
             gone_at = CASE WHEN excluded.gone_at IS NULL THEN NULL ELSE COALESCE(resources.gone_at, excluded.gone_at) END,
             state = excluded.state, verdict = excluded.verdict, reason = excluded.reason,
             project = excluded.project, action = excluded.action, grace_s = excluded.grace_s,
             lease_id = excluded.lease_id, lease_ended_at = excluded.lease_ended_at,
             last_run = excluded.last_run, source = excluded.source,
             controller = excluded.controller,
             created_at = COALESCE(excluded.created_at, resources.created_at),
             -- Fine now (or terminated) after being flagged: its finding, if open, is the
             -- walk's end's to resolve (migration 28). A new row has no finding to resolve.
             resolve_pending = CASE WHEN excluded.verdict IN ('leased', 'protected')
                                         OR excluded.state = 'terminated'
                                    THEN resources.resolve_pending = 1
                                         OR (resources.verdict NOT IN ('leased', 'protected')
                                             AND resources.state IS NOT 'terminated')
                                    ELSE 0 END",
            )?,
            open_finding: c.prepare_cached(
                "SELECT id, verdict, action, lease_id FROM findings WHERE arn = ?1 AND resolved_at IS NULL",
            )?,
            insert_finding: c.prepare_cached(
                "INSERT INTO findings (arn, verdict, action, reason, project, lease_id, account, region, resource_type,
                                       opened_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)",
            )?,
            update_finding: c.prepare_cached(
                "UPDATE findings SET verdict = ?2, action = ?3, reason = ?4, project = ?5, lease_id = ?6, updated_at = ?7
                 WHERE id = ?1",
            )?,
            // A finding now about another lease loses its mark: the next act step marks it
            // afresh (full grace, a notice to the new owner) if it still must go.
            unmark: c.prepare_cached(
                "UPDATE findings SET deadline = NULL, reap_state = NULL, last_decision = NULL,
                                     attempts = 0, next_attempt_at = NULL, deactivated_at = NULL, last_error = NULL,
                                     marked_owner = NULL
                 WHERE id = ?1 AND deadline IS NOT NULL",
            )?,
            event: c.prepare_cached(INSERT_EVENT)?,
        })
    }
}

fn upsert_resource(
    upsert: &mut CachedStatement<'_>,
    r: &Record,
    at: DateTime<Utc>,
    run_id: &str,
) -> Result<(), StoreError> {
    let o = &r.observed;
    // A terminated instance is gone the moment we learn it; a resource seen again is back.
    let gone_at = o.is_terminated().then(|| ms(at));
    upsert.execute(params![
        o.arn.as_str(),
        o.account,
        o.region,
        o.resource_type,
        o.tags.packed(),
        ms(at),
        gone_at,
        o.state,
        r.verdict.as_str(),
        r.reason,
        r.project,
        r.action.as_str(),
        i64::try_from(r.grace.as_secs()).unwrap_or(i64::MAX),
        r.lease_id,
        r.lease_ended_at.map(ms),
        run_id,
        o.source,
        o.created_at.map(ms),
        ControllerRef::of_tags(&o.tags, &o.account, &o.region).map(|c| c.stored()),
    ])?;
    Ok(())
}

/// Opens a finding (Some(true)), updates one whose verdict or action changed (Some(false)),
/// or leaves an unchanged one alone (None).
fn open_or_update(
    c: &Connection,
    st: &mut PageStatements<'_>,
    run_id: &str,
    r: &Record,
    at: DateTime<Utc>,
) -> Result<Option<bool>, StoreError> {
    let o = &r.observed;
    let open: Option<(i64, String, String, Option<String>)> = st
        .open_finding
        .query_row([o.arn.as_str()], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })
        .optional()?;
    match open {
        Some((id, verdict, action, lease_id)) => {
            let Some(change) = change_of(&verdict, &action, lease_id.as_deref(), r) else {
                return Ok(None);
            };
            st.update_finding.execute(params![
                id,
                r.verdict.as_str(),
                r.action.as_str(),
                r.reason,
                r.project,
                r.lease_id,
                ms(at)
            ])?;
            if change.lease_changed {
                st.unmark.execute([id])?;
            }
            st.event.execute(params![
                id,
                run_id,
                ms(at),
                "updated",
                r.verdict.as_str(),
                change.detail
            ])?;
            Ok(Some(false))
        }
        None => {
            st.insert_finding.execute(params![
                o.arn.as_str(),
                r.verdict.as_str(),
                r.action.as_str(),
                r.reason,
                r.project,
                r.lease_id,
                o.account,
                o.region,
                o.resource_type,
                ms(at),
            ])?;
            let id = c.last_insert_rowid();
            st.event.execute(params![
                id,
                run_id,
                ms(at),
                "opened",
                r.verdict.as_str(),
                r.reason
            ])?;
            Ok(Some(true))
        }
    }
}

/// How a page's record changes the open finding of its resource (whose verdict, action and
/// lease id were these): `None` when it does not.
pub(super) struct Change {
    /// The `updated` event's detail.
    pub(super) detail: String,
    /// The finding is now about another lease: it loses its mark.
    pub(super) lease_changed: bool,
}

pub(super) fn change_of(
    verdict: &str,
    action: &str,
    lease_id: Option<&str>,
    r: &Record,
) -> Option<Change> {
    // Both sides are canonical (`evaluate_page` writes a lease id in one spelling).
    let lease_changed = lease_id != r.lease_id.as_deref();
    if verdict == r.verdict.as_str() && action == r.action.as_str() && !lease_changed {
        return None;
    }
    let mut detail = format!(
        "{verdict}/{action} -> {}/{}: {}",
        r.verdict, r.action, r.reason
    );
    if lease_changed {
        detail.push_str(&format!(
            "; lease tag {} -> {}",
            lease_id.unwrap_or("none"),
            r.lease_id.as_deref().unwrap_or("none")
        ));
    }
    Some(Change {
        detail,
        lease_changed,
    })
}

/// Records one transition of a finding.
pub(super) const INSERT_EVENT: &str = "INSERT INTO finding_events (finding_id, run_id, at, kind, verdict, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

fn event(
    c: &Connection,
    finding: i64,
    run_id: &str,
    at: DateTime<Utc>,
    kind: &str,
    verdict: &str,
    detail: &str,
) -> Result<(), StoreError> {
    c.prepare_cached(INSERT_EVENT)?.execute(params![
        finding,
        run_id,
        ms(at),
        kind,
        verdict,
        detail
    ])?;
    Ok(())
}

fn action_at(r: &Row<'_>, col: usize) -> rusqlite::Result<Action> {
    let v: String = r.get(col)?;
    Action::parse(&v).ok_or_else(|| bad(col, "action", &v))
}

/// `id, task, trigger, started_at, ended_at, outcome, summary`.
fn run_row(r: &Row<'_>) -> rusqlite::Result<RunRecord> {
    let summary: String = r.get(6)?;
    Ok(RunRecord {
        id: r.get(0)?,
        task: r.get(1)?,
        trigger: r.get(2)?,
        started_at: time_at(r, 3)?,
        ended_at: opt_time_at(r, 4)?,
        outcome: r.get::<_, Option<RunOutcome>>(5)?.unwrap_or_default(),
        summary: serde_json::from_str(&summary).map_err(|_| bad(6, "run summary", &summary))?,
    })
}

/// `arn, account, region, resource_type, tags, first_seen, last_seen, gone_at, state, verdict,
/// reason, project, action, lease_id, source, created_at, creator`.
fn resource_row(r: &Row<'_>) -> rusqlite::Result<StoredResource> {
    let tags: String = r.get(4)?;
    Ok(StoredResource {
        arn: r.get(0)?,
        account: r.get(1)?,
        region: r.get(2)?,
        resource_type: r.get(3)?,
        tags: stored_tags(&tags).map_err(|_| bad(4, "tags", &tags))?,
        first_seen: time_at(r, 5)?,
        last_seen: time_at(r, 6)?,
        gone_at: opt_time_at(r, 7)?,
        state: r.get(8)?,
        verdict: verdict_at(r, 9)?,
        reason: r.get(10)?,
        project: r.get(11)?,
        action: action_at(r, 12)?,
        lease_id: r.get(13)?,
        source: r.get(14)?,
        created_at: opt_time_at(r, 15)?,
        creator: r.get(16)?,
    })
}

/// `id, arn, verdict, action, reason, project, lease_id, account, region, resource_type,
/// opened_at, updated_at, resolved_at, resolution`, then its resource's `source, created_at,
/// creator` ([`FINDING_SELECT`]).
fn finding_row(r: &Row<'_>) -> rusqlite::Result<Finding> {
    Ok(Finding {
        id: r.get(0)?,
        arn: r.get(1)?,
        verdict: verdict_at(r, 2)?,
        action: action_at(r, 3)?,
        reason: r.get(4)?,
        project: r.get(5)?,
        lease_id: r.get(6)?,
        account: r.get(7)?,
        region: r.get(8)?,
        resource_type: r.get(9)?,
        opened_at: time_at(r, 10)?,
        updated_at: time_at(r, 11)?,
        resolved_at: opt_time_at(r, 12)?,
        resolution: r.get(13)?,
        source: r.get::<_, Option<Source>>(14)?.unwrap_or(Source::Tagging),
        created_at: opt_time_at(r, 15)?,
        creator: r.get(16)?,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use crate::config::StoreLocation;
    use crate::store::Quota;
    use chrono::{TimeDelta, TimeZone};

    use super::*;
    use crate::model::{Arn, HumanDuration, Lease, LeaseId, ProjectName, ResourceType, Tags};
    use crate::resource::{Observed, SweepRecord, TypeSweepRecord};

    const ACCOUNT: &str = "123456789012";

    pub(crate) fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .expect("time")
    }

    /// A resource of (ACCOUNT, `region`) evaluated as `verdict`; `name` makes its ARN.
    pub(crate) fn record(
        name: &str,
        region: &str,
        verdict: Verdict,
        lease: Option<&str>,
    ) -> Record {
        let arn = if name.starts_with("bucket") {
            format!("arn:aws:s3:::{name}")
        } else {
            format!("arn:aws:ec2:{region}:{ACCOUNT}:instance/{name}")
        };
        Record {
            observed: Observed {
                arn: Arn::parse(&arn).expect("arn"),
                account: ACCOUNT.into(),
                region: region.into(),
                resource_type: if name.starts_with("bucket") {
                    "s3:bucket".into()
                } else {
                    "ec2:instance".into()
                },
                tags: Tags::from_pairs([("Name", name)]),
                state: None,
                source: Source::Tagging,
                created_at: None,
                image: None,
            },
            verdict,
            reason: format!("{name} is {verdict}"),
            project: lease.map(|_| ProjectName::parse("web").expect("name")),
            action: if verdict == Verdict::Untagged {
                Action::Reap
            } else {
                Action::Notify
            },
            grace: HumanDuration::from_secs(3600),
            lease_id: lease.map(str::to_owned),
            lease_ended_at: lease.map(|_| t0() - TimeDelta::hours(2)),
        }
    }

    /// Sets a finding's deletion deadline, as the act step's marking does.
    async fn mark(store: &Store, id: i64) {
        if let Some(pg) = store.pg() {
            let mut c = pg.conn().await.expect("connection");
            c.execute("UPDATE findings SET deadline = 1 WHERE id = $1", &[&id])
                .await
                .expect("marks");
            return;
        }
        store
            .writer()
            .expect("sqlite")
            .write(move |c| {
                c.execute("UPDATE findings SET deadline = 1 WHERE id = ?1", [id])?;
                Ok::<_, StoreError>(())
            })
            .await
            .expect("marks");
    }

    async fn deadline(store: &Store, id: i64) -> Option<i64> {
        if let Some(pg) = store.pg() {
            let mut c = pg.conn().await.expect("connection");
            return c
                .query_one("SELECT deadline FROM findings WHERE id = $1", &[&id])
                .await
                .expect("reads")
                .get(0);
        }
        store
            .read(move |c| {
                c.query_row("SELECT deadline FROM findings WHERE id = ?1", [id], |r| {
                    r.get(0)
                })
                .map_err(StoreError::from)
            })
            .await
            .expect("reads")
    }

    fn finding_of<'a>(fs: &'a [Finding], name: &str) -> &'a Finding {
        fs.iter()
            .find(|f| f.arn.as_str().ends_with(name))
            .unwrap_or_else(|| panic!("a finding of {name}"))
    }

    fn filter(f: impl FnOnce(&mut AuditFilter)) -> AuditFilter {
        let mut filter = AuditFilter {
            limit: 100,
            ..AuditFilter::default()
        };
        f(&mut filter);
        filter
    }

    /// Two passes over one account: what they open, update, mark gone and resolve, and every
    /// listing of the result. Returns a transcript the engines must agree on.
    async fn two_passes(store: Store) -> Vec<String> {
        let mut out = Vec::new();
        let (t1, t2) = (t0(), t0() + TimeDelta::hours(1));
        store
            .start_run("r1".into(), TaskName::Scan, "cron".into(), t1)
            .await
            .expect("run 1");
        let mut gone_now = record("i-d", "us-east-1", Verdict::Expired, Some("L1"));
        gone_now.observed.state = Some("terminated".into());
        let mut swept = record("i-h", "us-east-1", Verdict::Leased, Some("L2"));
        swept.observed.source = Source::Sweep;
        let first = vec![
            record("i-a", "us-east-1", Verdict::Untagged, None),
            record("i-b", "us-east-1", Verdict::Expired, Some("L1")),
            record("i-c", "us-east-1", Verdict::Leased, Some("L2")),
            gone_now,
            // Listed by two regions' walks, in one page: one resource, one finding.
            record("bucket-e", "us-west-2", Verdict::UnknownLease, None),
            record("bucket-e", "eu-west-1", Verdict::UnknownLease, None),
            record("i-f", "us-east-1", Verdict::Untagged, None),
            record("i-g", "us-east-1", Verdict::Untagged, None),
            swept,
        ];
        let changes = store
            .persist_page("r1".into(), t1, first)
            .await
            .expect("page 1");
        assert_eq!(
            changes,
            PageChanges {
                opened: 5,
                updated: 0
            }
        );
        let strays = store
            .strays_opened_in("r1".into(), 2)
            .await
            .expect("strays");
        assert_eq!(strays.listed.len(), 2);
        assert!(strays.listed[0].arn.as_str().ends_with("i-a"));
        assert_eq!(strays.more, 2, "bucket-e, i-f, i-g");
        let web = store
            .opened_in_projects("r1".into(), vec!["web".into()], 10)
            .await
            .expect("web's");
        assert_eq!(web.listed.len(), 1);
        assert_eq!(web.more, 0);
        let b = web.listed[0].clone();
        assert!(b.arn.as_str().ends_with("i-b"));
        mark(&store, b.id).await;

        store
            .start_run("r2".into(), TaskName::Scan, "api".into(), t2)
            .await
            .expect("run 2");
        let second = vec![
            record("i-a", "us-east-1", Verdict::Untagged, None),
            record("i-b", "us-east-1", Verdict::Expired, Some("L3")),
            record("i-c", "us-east-1", Verdict::Protected, Some("L2")),
            record("i-g", "us-east-1", Verdict::Leased, Some("L2")),
        ];
        let changes = store
            .persist_page("r2".into(), t2, second)
            .await
            .expect("page 2");
        assert_eq!(
            changes,
            PageChanges {
                opened: 0,
                updated: 1
            }
        );
        assert_eq!(
            deadline(&store, b.id).await,
            None,
            "another lease: unmarked"
        );
        let walk = |region: &str, outcome: WalkOutcome| WalkRecord {
            account: ACCOUNT.into(),
            region: region.into(),
            started_at: t2,
            ended_at: t2 + TimeDelta::minutes(1),
            outcome,
            reason: (outcome != WalkOutcome::Complete).then(|| "throttled".into()),
            pages: 1,
            resources: 4,
            sweep: None,
        };
        let incomplete = store
            .finish_walk("r2".into(), walk("eu-west-1", WalkOutcome::Incomplete))
            .await
            .expect("walk eu");
        assert_eq!(incomplete, WalkChanges::default());
        let mut complete = walk("us-east-1", WalkOutcome::Complete);
        complete.sweep = Some(SweepRecord {
            started_at: t2,
            credentials_only: false,
            types: vec![TypeSweepRecord {
                resource_type: ResourceType::Ec2Instance,
                outcome: WalkOutcome::Complete,
                reason: None,
                listed: 3,
                not_in_tagging: 0,
            }],
        });
        let changes = store
            .finish_walk("r2".into(), complete.clone())
            .await
            .expect("walk us");
        assert_eq!(
            changes,
            WalkChanges {
                gone: 2,
                resolved: 2
            },
            "i-f, i-h; i-f, i-g"
        );
        let walks = store.walks_of("r2".into()).await.expect("walks");
        assert_eq!(walks.len(), 2);
        assert_eq!(walks[1], complete);
        let sweeps = store.last_sweeps().await.expect("sweeps");
        assert_eq!(
            sweeps.into_iter().collect::<Vec<_>>(),
            vec![((ACCOUNT.to_owned(), "us-east-1".to_owned()), t2)]
        );
        // A later pass that listed only the credentials is no sweep: the next one stays due
        // from the last full sweep.
        // (Recorded as an incomplete walk of the first run, so that it resolves nothing.)
        let mut credentials = walk("us-east-1", WalkOutcome::Incomplete);
        credentials.started_at = t2 + TimeDelta::hours(1);
        credentials.sweep = Some(SweepRecord {
            started_at: t2 + TimeDelta::hours(1),
            credentials_only: true,
            types: Vec::new(),
        });
        store
            .finish_walk("r1".into(), credentials)
            .await
            .expect("walk us");
        let sweeps = store.last_sweeps().await.expect("sweeps");
        assert_eq!(
            sweeps.into_iter().collect::<Vec<_>>(),
            vec![((ACCOUNT.to_owned(), "us-east-1".to_owned()), t2)]
        );

        let (all, next) = store
            .list_findings(filter(|f| f.include_closed = true))
            .await
            .expect("findings");
        assert_eq!(next, None);
        assert_eq!(all.len(), 5);
        let f = finding_of(&all, "i-f");
        assert_eq!(f.resolution.as_deref(), Some("gone"));
        assert_eq!(f.resolved_at, Some(complete.ended_at));
        let g = finding_of(&all, "i-g");
        assert_eq!(g.resolution.as_deref(), Some("now leased"));
        let b = finding_of(&all, "i-b");
        assert_eq!(b.lease_id.as_deref(), Some("L3"));
        assert_eq!(b.updated_at, t2);
        let events = store.finding_events(b.id).await.expect("events");
        let kinds: Vec<_> = events.iter().map(|e| e.1.as_str()).collect();
        assert_eq!(kinds, ["opened", "updated"]);
        assert_eq!(
            events[1].3,
            "expired/notify -> expired/notify: i-b is expired; lease tag L1 -> L3"
        );
        let events = store.finding_events(g.id).await.expect("events");
        assert_eq!(events[1].1, "resolved");
        assert_eq!(events[1].2, "untagged");
        assert_eq!(
            store.get_finding(g.id).await.expect("get").as_ref(),
            Some(g)
        );
        assert_eq!(store.get_finding(999).await.expect("get"), None);

        // Pages of open findings, a filter, a team's share.
        let (page, next) = store
            .list_findings(filter(|f| f.limit = 2))
            .await
            .expect("page");
        assert_eq!(page.len(), 2);
        let (rest, last) = store
            .list_findings(filter(|f| {
                f.limit = 2;
                f.after = next.clone();
            }))
            .await
            .expect("rest");
        assert_eq!((rest.len(), last), (1, None));
        let (untagged, _) = store
            .list_findings(filter(|f| {
                f.verdict = Some(Verdict::Untagged);
                f.include_closed = true;
            }))
            .await
            .expect("untagged");
        assert_eq!(untagged.len(), 3);
        let (team, _) = store
            .list_findings(filter(|f| {
                f.projects_in = Some(vec!["web".into(), "x".into()])
            }))
            .await
            .expect("team");
        assert_eq!(team.len(), 1);

        // Resources: live ones by ARN, gone ones on request, the S3 bucket in its smallest region.
        let (live, _) = store.list_resources(filter(|_| {})).await.expect("live");
        let names: Vec<_> = live
            .iter()
            .map(|r| r.arn.as_str().rsplit(['/', ':']).next().unwrap_or_default())
            .collect();
        assert_eq!(names, ["i-a", "i-b", "i-c", "i-g", "bucket-e"]);
        assert_eq!(live[4].region, "eu-west-1");
        let (page, next) = store
            .list_resources(filter(|f| {
                f.limit = 3;
                f.include_closed = true;
                f.region = Some("us-east-1".into());
            }))
            .await
            .expect("page");
        assert_eq!(page.len(), 3);
        let (rest, _) = store
            .list_resources(filter(|f| {
                f.include_closed = true;
                f.region = Some("us-east-1".into());
                f.after = next.clone();
            }))
            .await
            .expect("rest");
        assert_eq!(rest.len(), 4, "7 in us-east-1, i-d, i-f and i-h gone");
        assert!(rest.iter().chain(&page).any(|r| r.gone_at == Some(t1)));

        // Creators: asked once.
        let ask = store.creators_to_look_up(10).await.expect("to ask");
        let asked: Vec<_> = ask.iter().map(|(a, ..)| a.to_string()).collect();
        assert_eq!(ask.len(), 2, "{asked:?}");
        store
            .record_creators(
                vec![
                    (ask[0].0.clone(), Some("bob".into())),
                    (ask[1].0.clone(), None),
                    (ask[0].0.clone(), Some("alice".into())),
                ],
                t2,
            )
            .await
            .expect("creators");
        assert!(
            store
                .creators_to_look_up(10)
                .await
                .expect("asked")
                .is_empty()
        );
        let a = store
            .get_finding(ask_id(&all, &ask[0].0))
            .await
            .expect("get")
            .expect("found");
        assert_eq!(a.creator.as_deref(), Some("alice"));

        // Gauges.
        let mut totals = store.live_totals(t2).await.expect("totals");
        totals.series.sort();
        totals.by_account.sort();
        totals.by_source.sort();
        totals.expired_hours.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            totals.expired_hours,
            vec![("unknown".to_owned(), 1.0), ("web".to_owned(), 3.0)]
        );
        assert_eq!(
            totals.by_account,
            vec![
                ([ACCOUNT.to_owned(), "expired".to_owned()], 1),
                ([ACCOUNT.to_owned(), "leased".to_owned()], 1),
                ([ACCOUNT.to_owned(), "protected".to_owned()], 1),
                ([ACCOUNT.to_owned(), "unknown-lease".to_owned()], 1),
                ([ACCOUNT.to_owned(), "untagged".to_owned()], 1),
            ]
        );
        out.push(format!("{:?}", totals.series));
        out.push(format!("{:?}", totals.by_source));

        // Runs.
        store
            .finish_run(
                "r1".into(),
                t1 + TimeDelta::minutes(5),
                RunOutcome::Success,
                serde_json::json!({"walks": 1}),
            )
            .await
            .expect("finish");
        let latest = store.latest_runs().await.expect("latest");
        assert_eq!(latest.len(), 1);
        assert_eq!(latest[0].id, "r2");
        assert_eq!(latest[0].outcome, RunOutcome::default());
        let r1 = store.get_run("r1".into()).await.expect("get").expect("r1");
        assert_eq!(r1.summary, serde_json::json!({"walks": 1}));
        assert_eq!(r1.trigger, "cron");
        assert_eq!(
            store.last_successes().await.expect("successes"),
            vec![(TaskName::Scan, t1 + TimeDelta::minutes(5))]
        );
        assert_eq!(store.get_run("nope".into()).await.expect("get"), None);

        let lease = Lease {
            id: LeaseId::generate(),
            project: ProjectName::parse("web").expect("name"),
            task: "t".into(),
            owner: "o@example.com".into(),
            principal: "ci".into(),
            created_at: t1,
            expires_at: t2,
            heartbeat_interval: None,
            last_heartbeat_at: None,
            released_at: None,
            labels: Default::default(),
            regions: vec![],
        };
        store
            .insert_lease(lease.clone(), t1, Quota::<StoreError>::unlimited())
            .await
            .expect("lease");
        assert_eq!(store.all_leases().await.expect("leases"), vec![lease]);

        let (all, _) = store
            .list_findings(filter(|f| f.include_closed = true))
            .await
            .expect("findings");
        for f in &all {
            out.push(format!("{f:?}"));
            out.push(format!(
                "{:?}",
                store.finding_events(f.id).await.expect("events")
            ));
        }
        let (resources, _) = store
            .list_resources(filter(|f| f.include_closed = true))
            .await
            .expect("resources");
        out.extend(resources.iter().map(|r| format!("{r:?}")));
        out
    }

    fn ask_id(findings: &[Finding], arn: &Arn) -> i64 {
        findings
            .iter()
            .find(|f| &f.arn == arn)
            .map(|f| f.id)
            .expect("a finding of the ARN")
    }

    /// Walks of two regions persist at once, both listing the same buckets (region-less ARNs):
    /// each bucket gets one finding, as when SQLite's writer ran the pages in turn. Four sets
    /// of new buckets, each raced twice, so PostgreSQL's pages do race (both opening a
    /// bucket's finding, or locking two buckets in opposite orders) and one is written again.
    async fn concurrent_walks(store: Store) {
        let at = t0();
        store
            .start_run("r1".into(), TaskName::Scan, "cron".into(), at)
            .await
            .expect("run");
        let page = |region: &str, set: usize| {
            let mut page: Vec<Record> = (0..200)
                .map(|i| {
                    record(
                        &format!("bucket-{set}-{i:03}"),
                        region,
                        Verdict::UnknownLease,
                        None,
                    )
                })
                .collect();
            if region == "eu-west-1" {
                page.reverse();
            }
            page
        };
        for set in 0..4 {
            for round in 0..2 {
                let (a, b) = tokio::join!(
                    store.persist_page("r1".into(), at, page("us-west-2", set)),
                    store.persist_page("r1".into(), at, page("eu-west-1", set)),
                );
                let (a, b) = (a.expect("page a"), b.expect("page b"));
                let expected = if round == 0 { 200 } else { 0 };
                assert_eq!(a.opened + b.opened, expected, "set {set}, round {round}");
            }
        }
        let (open, _) = store
            .list_findings(filter(|f| f.limit = 1000))
            .await
            .expect("findings");
        assert_eq!(open.len(), 800);
        let (resources, _) = store
            .list_resources(filter(|f| f.limit = 1000))
            .await
            .expect("resources");
        assert_eq!(resources.len(), 800);
        assert!(resources.iter().all(|r| r.region == "eu-west-1"));
    }

    #[tokio::test]
    async fn concurrent_walks_give_a_shared_resource_one_finding() {
        let dir = tempfile::tempdir().expect("temp dir");
        for (engine, store) in Store::open_both_for_test(dir.path()).await {
            eprintln!("{engine}");
            concurrent_walks(store).await;
        }
    }

    #[tokio::test]
    async fn two_passes_open_update_and_resolve_alike_on_both_engines() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut transcripts = Vec::new();
        for (engine, store) in Store::open_both_for_test(dir.path()).await {
            eprintln!("{engine}");
            transcripts.push(two_passes(store).await);
        }
        assert_eq!(transcripts[0], transcripts[1], "sqlite, then postgres");
    }

    /// Pages of a walk of us-east-1, written as a new scope's or the usual way, including
    /// the ones a new scope's write gets wrong at first: a bucket another region's walk stored,
    /// an ARN the page repeats, an open finding whose resource row is gone (PostgreSQL). Gives each page's
    /// changes, then the rows, findings and finding events (by ARN: PostgreSQL's ids skip what
    /// a refused write took).
    async fn pages_of_a_walk(store: &Store, new_scope: bool) -> Vec<String> {
        let at = t0();
        start_runs(store, &[("r1", at)]).await;
        let write = |records: Vec<Record>| async move {
            let written = store.persist_page_as("r1".into(), at, records, new_scope);
            format!("{:?}", written.await.expect("a page"))
        };
        let mut out = vec![
            write(vec![
                record("bucket-a", "us-west-2", Verdict::UnknownLease, None),
                record("i-lost", "us-west-2", Verdict::Untagged, None),
            ])
            .await,
        ];
        // Only PostgreSQL's findings have no foreign key to their resource (migration 26).
        if store.pg().is_some() {
            store
                .execute_batch_for_test("DELETE FROM resources WHERE arn LIKE '%i-lost'")
                .await;
        }
        let mut repeated = record("i-d", "us-east-1", Verdict::Expired, Some("L1"));
        repeated.reason = "listed twice".into();
        for page in [
            vec![
                record("i-a", "us-east-1", Verdict::Untagged, None),
                record("i-b", "us-east-1", Verdict::Leased, Some("L1")),
            ],
            vec![
                record("i-c", "us-east-1", Verdict::Untagged, None),
                record("bucket-a", "us-east-1", Verdict::Untagged, None),
            ],
            vec![
                record("i-d", "us-east-1", Verdict::Untagged, None),
                repeated,
            ],
            vec![record("i-lost", "us-west-2", Verdict::Expired, Some("L1"))],
        ] {
            out.push(write(page).await);
        }
        for sql in [
            "SELECT * FROM resources ORDER BY arn",
            "SELECT arn, verdict, action, reason, project, lease_id, account, region,
                    resource_type, opened_at, updated_at, resolved_at, deadline
             FROM findings ORDER BY arn, id",
            "SELECT f.arn, e.run_id, e.at, e.kind, e.verdict, e.detail
             FROM finding_events e JOIN findings f ON f.id = e.finding_id ORDER BY f.arn, e.id",
        ] {
            out.extend(
                store
                    .text_rows_for_test(sql)
                    .await
                    .iter()
                    .map(|r| format!("{r:?}")),
            );
        }
        out
    }

    /// A walk that found its scope new writes its pages as any walk would, on both engines;
    /// only PostgreSQL sees a scope as new, and only while it holds nothing of it.
    #[tokio::test]
    async fn a_new_scopes_pages_are_written_as_any_page() {
        let (a, b) = (
            tempfile::tempdir().expect("dir"),
            tempfile::tempdir().expect("dir"),
        );
        let usual = Store::open_both_for_test(a.path()).await;
        let new = Store::open_both_for_test(b.path()).await;
        for ((engine, usual), (_, new)) in usual.into_iter().zip(new) {
            eprintln!("{engine}");
            let is_new = |region: &'static str| {
                let new = new.clone();
                async move { new.scope_is_new(ACCOUNT, region).await.expect("asks") }
            };
            let pg = engine == "postgres";
            assert_eq!(is_new("us-east-1").await, pg);
            let expected = pages_of_a_walk(&usual, false).await;
            assert_eq!(pages_of_a_walk(&new, true).await, expected);
            assert!(expected[0].contains("opened: 2"), "{expected:?}");
            assert!(!is_new("us-east-1").await);
            assert!(!is_new("us-west-2").await);
            assert_eq!(is_new("eu-west-1").await, pg);
            // Gone rows count: the scope was walked before.
            new.execute_batch_for_test("UPDATE resources SET gone_at = 1")
                .await;
            assert!(!is_new("us-east-1").await);
        }
    }

    /// A walk of (ACCOUNT, `region`) at `at`.
    fn walk_at(region: &str, at: DateTime<Utc>, outcome: WalkOutcome) -> WalkRecord {
        WalkRecord {
            account: ACCOUNT.into(),
            region: region.into(),
            started_at: at,
            ended_at: at + TimeDelta::minutes(1),
            outcome,
            reason: (outcome != WalkOutcome::Complete).then(|| "throttled".into()),
            pages: 1,
            resources: 1,
            sweep: None,
        }
    }

    /// `(name, resolution)` of every finding, open ones with no resolution, by name.
    async fn resolutions(store: &Store) -> Vec<(String, Option<String>)> {
        let (all, _) = store
            .list_findings(filter(|f| f.include_closed = true))
            .await
            .expect("findings");
        let mut out: Vec<_> = all
            .iter()
            .map(|f| {
                let name = f.arn.as_str().rsplit('/').next().unwrap_or_default();
                (name.to_owned(), f.resolution.clone())
            })
            .collect();
        out.sort();
        out
    }

    async fn pending_rows(store: &Store) -> Vec<Vec<Option<String>>> {
        store
            .text_rows_for_test("SELECT arn FROM resources WHERE resolve_pending = 1 ORDER BY arn")
            .await
    }

    /// A row of [`pending_rows`]: the ARN of instance `name` in `region`.
    fn instance(region: &str, name: &str) -> Vec<Option<String>> {
        vec![Some(format!(
            "arn:aws:ec2:{region}:{ACCOUNT}:instance/{name}"
        ))]
    }

    /// An entry of [`resolutions`].
    fn resolution(name: &str, r: Option<&str>) -> (String, Option<String>) {
        (name.to_owned(), r.map(str::to_owned))
    }

    fn changes(gone: u64, resolved: u64) -> WalkChanges {
        WalkChanges { gone, resolved }
    }

    /// Starts scan runs `runs`, each at its time.
    async fn start_runs(store: &Store, runs: &[(&str, DateTime<Utc>)]) {
        for (run, at) in runs {
            store
                .start_run((*run).into(), TaskName::Scan, "cron".into(), *at)
                .await
                .expect("a run");
        }
    }

    /// A resource found fine (or terminated) while a walk failed keeps its finding open until
    /// a complete walk of its scope, however fine it stays meanwhile; one flagged again
    /// before the walk's end keeps it; a complete walk resolves nothing twice.
    async fn resolved_at_a_complete_walk(store: Store) {
        let t = |h: i64| t0() + TimeDelta::hours(h);
        let runs = [
            ("r1", t(1)),
            ("r2", t(2)),
            ("r3", t(3)),
            ("r4", t(4)),
            ("r5", t(5)),
        ];
        start_runs(&store, &runs).await;
        let page = |run: &str, h, records| store.persist_page(run.into(), t(h), records);
        let end = |run: &str, region: &str, h, outcome| {
            store.finish_walk(run.into(), walk_at(region, t(h), outcome))
        };
        let (complete, incomplete) = (WalkOutcome::Complete, WalkOutcome::Incomplete);
        let flagged = |name| record(name, "us-east-1", Verdict::Untagged, None);
        let fine = |name| record(name, "us-east-1", Verdict::Leased, Some("L1"));
        let e = |verdict, lease| vec![record("i-e", "eu-west-1", verdict, lease)];
        let e_arn = instance("eu-west-1", "i-e");
        let mut terminated = flagged("i-b");
        terminated.observed.state = Some("terminated".into());

        let east = ["i-a", "i-b", "i-c", "i-d"].map(flagged).to_vec();
        page("r1", 1, east).await.expect("r1");
        page("r1", 1, e(Verdict::Untagged, None))
            .await
            .expect("r1 eu");
        let ended = end("r1", "us-east-1", 1, complete).await.expect("r1 walk");
        assert_eq!(ended, changes(0, 0));
        assert_eq!(
            pending_rows(&store).await,
            Vec::<Vec<Option<String>>>::new()
        );

        // A failed walk: i-a leased, i-b terminated, i-c leased then flagged again.
        let first = vec![fine("i-a"), terminated.clone(), fine("i-c")];
        page("r2", 2, first).await.expect("r2");
        let second = vec![flagged("i-c"), flagged("i-d")];
        page("r2", 2, second).await.expect("r2 page 2");
        page("r2", 2, e(Verdict::Leased, Some("L1")))
            .await
            .expect("r2 eu");
        let ended = end("r2", "us-east-1", 2, incomplete)
            .await
            .expect("r2 walk");
        assert_eq!(ended, changes(0, 0));
        assert_eq!(
            pending_rows(&store).await,
            vec![
                e_arn.clone(),
                instance("us-east-1", "i-a"),
                instance("us-east-1", "i-b"),
            ]
        );
        assert!(resolutions(&store).await.iter().all(|(_, r)| r.is_none()));

        // Seen as they were: i-a's row no longer changes from flagged to fine, yet the
        // complete walk resolves it; i-d is fine now; eu-west-1's walk has not ended.
        let again = vec![fine("i-a"), terminated, flagged("i-c"), fine("i-d")];
        page("r3", 3, again).await.expect("r3");
        page("r3", 3, e(Verdict::Leased, Some("L1")))
            .await
            .expect("r3 eu");
        let ended = end("r3", "us-east-1", 3, complete).await.expect("r3 walk");
        assert_eq!(ended, changes(0, 3));
        assert_eq!(
            resolutions(&store).await,
            vec![
                resolution("i-a", Some("now leased")),
                resolution("i-b", Some("terminated")),
                resolution("i-c", None),
                resolution("i-d", Some("now leased")),
                resolution("i-e", None),
            ]
        );
        assert_eq!(pending_rows(&store).await, vec![e_arn]);
        let ended = end("r3", "eu-west-1", 3, complete)
            .await
            .expect("r3 eu walk");
        assert_eq!(ended, changes(0, 1));

        // Nothing listed: what was there is gone, and only i-c had a finding left.
        let ended = end("r4", "us-east-1", 4, complete).await.expect("r4 walk");
        assert_eq!(
            ended,
            changes(3, 1),
            "i-a, i-c, i-d gone (i-b was); i-c resolved"
        );
        assert_eq!(
            resolutions(&store).await[2],
            resolution("i-c", Some("gone"))
        );
        assert_eq!(
            pending_rows(&store).await,
            Vec::<Vec<Option<String>>>::new()
        );
        let ended = end("r5", "us-east-1", 5, complete).await.expect("r5 walk");
        assert_eq!(ended, changes(0, 0));
    }

    #[tokio::test]
    async fn a_finding_is_resolved_by_the_first_complete_walk_after_it_is_fine() {
        let dir = tempfile::tempdir().expect("temp dir");
        for (engine, store) in Store::open_both_for_test(dir.path()).await {
            eprintln!("{engine}");
            resolved_at_a_complete_walk(store).await;
        }
    }

    /// A store written before migrations 28 and 29: a finding open on a resource now leased
    /// and one on a resource gone are the next complete walk's to resolve, as before.
    #[tokio::test]
    async fn migration_28_leaves_open_findings_to_the_next_complete_walk() {
        let dir = tempfile::tempdir().expect("temp dir");
        let locations = [
            StoreLocation::Sqlite(dir.path().join("s.db")),
            Store::test_postgres_location().await,
        ];
        for at in &locations {
            eprintln!("{at}");
            let store = Store::open_at(at).await.expect("opens");
            let flagged = |name| record(name, "us-east-1", Verdict::Untagged, None);
            start_runs(&store, &[("r1", t0()), ("r2", t0())]).await;
            store
                .persist_page(
                    "r1".into(),
                    t0(),
                    ["i-a", "i-b", "i-c"].map(flagged).to_vec(),
                )
                .await
                .expect("r1");
            // As an older build left them: i-a found leased, i-b gone, their findings open.
            let version = if store.pg().is_some() {
                "UPDATE schema_version SET version = 27"
            } else {
                "PRAGMA user_version = 27"
            };
            store
                .execute_batch_for_test(&format!(
                    "DROP INDEX runs_unaware_of_marks;
                     ALTER TABLE runs DROP COLUMN marks_resolvable;
                     DROP INDEX resources_resolve_pending;
                     ALTER TABLE resources DROP COLUMN resolve_pending;
                     {version};
                     UPDATE resources SET verdict = 'leased' WHERE arn LIKE '%/i-a';
                     UPDATE resources SET gone_at = 1 WHERE arn LIKE '%/i-b';"
                ))
                .await;
            drop(store);
            let store = Store::open_at(at).await.expect("migrates");
            let t1 = t0() + TimeDelta::hours(1);
            store
                .persist_page(
                    "r2".into(),
                    t1,
                    vec![
                        record("i-a", "us-east-1", Verdict::Leased, Some("L1")),
                        flagged("i-c"),
                    ],
                )
                .await
                .expect("r2");
            assert_eq!(
                store
                    .finish_walk("r2".into(), walk_at("us-east-1", t1, WalkOutcome::Complete))
                    .await
                    .expect("r2 walk"),
                changes(0, 2)
            );
            assert_eq!(
                resolutions(&store).await,
                vec![
                    resolution("i-a", Some("now leased")),
                    resolution("i-b", Some("gone")),
                    resolution("i-c", None),
                ]
            );
        }
    }

    /// During a rolling upgrade a replica of a build before migration 28 runs a pass whose
    /// walk fails after its page found a flagged resource fine: nothing marked it, yet the
    /// next complete walk of this build resolves its finding (migration 29).
    #[tokio::test]
    async fn a_pass_of_an_earlier_build_leaves_no_finding_open_for_good() {
        let dir = tempfile::tempdir().expect("temp dir");
        for (engine, store) in Store::open_both_for_test(dir.path()).await {
            eprintln!("{engine}");
            let (t1, t2) = (t0(), t0() + TimeDelta::hours(2));
            start_runs(&store, &[("r1", t1), ("r2", t2)]).await;
            // This build's runs say so: their walks' ends need not mark every row again.
            let unaware = "SELECT COUNT(*) FROM runs WHERE marks_resolvable IS NULL";
            let none = vec![vec![Some("0".to_owned())]];
            assert_eq!(store.text_rows_for_test(unaware).await, none);
            let flagged = |name| record(name, "us-east-1", Verdict::Untagged, None);
            store
                .persist_page("r1".into(), t1, vec![flagged("i-a"), flagged("i-b")])
                .await
                .expect("r1");
            // The earlier build's run, its page over i-a, and no walk's end (it failed).
            store
                .execute_batch_for_test(
                    "INSERT INTO runs (id, task, trigger, started_at) VALUES ('old', 'scan', 'cron', 1);
                     UPDATE resources SET verdict = 'leased', last_run = 'old' WHERE arn LIKE '%/i-a';",
                )
                .await;
            let seen = vec![
                record("i-a", "us-east-1", Verdict::Leased, Some("L1")),
                flagged("i-b"),
            ];
            store.persist_page("r2".into(), t2, seen).await.expect("r2");
            let ended = store
                .finish_walk("r2".into(), walk_at("us-east-1", t2, WalkOutcome::Complete))
                .await
                .expect("r2 walk");
            assert_eq!(ended, changes(0, 1));
            assert_eq!(
                resolutions(&store).await,
                vec![
                    resolution("i-a", Some("now leased")),
                    resolution("i-b", None)
                ]
            );
            assert_eq!(store.text_rows_for_test(unaware).await, none);
        }
    }
}
