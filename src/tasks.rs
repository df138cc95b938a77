//! Tasks: the audit pass (scan), one function called alike by the scheduler, the API and
//! `ephemera scan --once`.
//!
//! Architecture Invariant: a task takes no input but its trigger, runs one at a time (a second
//! start is refused, a scheduled tick that finds it running is counted as skipped), continues
//! past one walk's failure, and reports a status record; it never retries on its own.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::{Mutex, Semaphore};
use tokio::task::JoinSet;

use crate::clock::Clock;
use crate::config::Config;
use crate::cost::refresh::{CostReport, CostTask};
use crate::inventory::{self, AwsClients, RateLimiter};
use crate::mail::PassDone;
use crate::metrics::{Metrics, Series};
use crate::model::IdentityTags;
use crate::model::Lease;
use crate::model::{LeaseId, Verdict};
use crate::policy::{Policy, evaluate};
use crate::reaper::plan::Plan;
use crate::reaper::run::{ItemResult, Progress, Reaper};
use crate::resource::{Observed, ReapSummary, Record, ScanReport, WalkRecord};
use crate::store::{ACT_LOCK, HeldBy, LockHolder, Store, StoreError};

/// One page of a walk, evaluated at `now`: the records the store persists. Pure; the scan
/// and the benchmarks share it.
pub fn evaluate_page(
    page: Vec<Observed>,
    leases: &HashMap<LeaseId, Lease>,
    policy: &Policy,
    keys: &IdentityTags,
    now: DateTime<Utc>,
) -> Vec<Record> {
    page.into_iter()
        .map(|o| {
            let e = evaluate(
                o.arn.as_str(),
                &o.tags,
                |id| leases.get(&id),
                policy,
                keys,
                now,
            );
            Record {
                verdict: e.verdict,
                reason: e.reason.to_string(),
                project: e.project.map(|p| p.to_string()),
                action: e.rule.action,
                grace: e.rule.grace,
                // The canonical spelling when the tag is a lease id, so findings join leases.
                lease_id: e
                    .lease_id
                    .map(|id| id.to_string())
                    .or_else(|| e.lease_tag.map(|t| t.trim().to_owned())),
                lease_ended_at: e.lease_ended_at,
                observed: o,
            }
        })
        .collect()
}

/// Records per store transaction while a walk streams (ten pages of 100).
const PERSIST_BATCH: usize = 1_000;

#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("a scan is already running (run {0})")]
    AlreadyRunning(String),
    /// Another process on the same store holds the lock this step needs.
    #[error("another process is acting on this store: {0}")]
    Busy(#[from] HeldBy),
    #[error("the store failed")]
    Store(#[from] StoreError),
}

/// Everything a pass needs.
#[derive(Debug, Clone)]
pub struct Tasks {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: Arc<Config>,
    policy: Arc<Policy>,
    store: Store,
    clients: AwsClients,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    reaper: Reaper,
    cost: CostTask,
    /// Held while a cost refresh runs, so two never overlap.
    cost_lock: Arc<Mutex<()>>,
    /// The run id of the scan in progress.
    running: Mutex<Option<String>>,
    /// Held for the whole of a scan, so two never overlap.
    scan_lock: Arc<Mutex<()>>,
    /// Label sets of `ephemera_resources` set by the last pass, to zero those that vanish.
    resource_series: Series,
    project_series: Series,
    /// Where each finished pass is sent (the daemon's mailer follows it when `[smtp]` is
    /// configured); without a follower (or in `scan --once`) notices wait in the outbox.
    passes: std::sync::OnceLock<tokio::sync::mpsc::Sender<PassDone>>,
}

impl Tasks {
    pub fn new(
        config: Arc<Config>,
        policy: Arc<Policy>,
        store: Store,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let clients = AwsClients::new(config.aws.clone());
        let reaper = Reaper::new(
            config.clone(),
            policy.clone(),
            store.clone(),
            clients.clone(),
            metrics.clone(),
            clock.clone(),
        );
        let cost = CostTask::new(
            config.clone(),
            store.clone(),
            clients.clone(),
            metrics.clone(),
            clock.clone(),
        );
        Tasks {
            inner: Arc::new(Inner {
                config,
                policy,
                store,
                clients,
                metrics,
                clock,
                reaper,
                cost,
                cost_lock: Arc::new(Mutex::new(())),
                running: Mutex::new(None),
                scan_lock: Arc::new(Mutex::new(())),
                resource_series: Series::default(),
                project_series: Series::default(),
                passes: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Every pass from now on, as it finishes, for one follower (the first caller; `None`
    /// for later ones). Bounded: a follower that falls 8 passes behind holds the next pass
    /// at its end rather than losing its report.
    pub fn follow_passes(&self) -> Option<tokio::sync::mpsc::Receiver<PassDone>> {
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        self.inner.passes.set(tx).ok().map(|()| rx)
    }

    /// Starts a scan in the background; refused while one runs. Returns the run id. `actor`
    /// names who started it in the audit log.
    pub async fn start_scan(&self, trigger: &str, actor: &str) -> Result<String, TaskError> {
        let claim = self.claim(trigger).await?;
        let this = self.clone();
        let (trigger, actor) = (trigger.to_owned(), actor.to_owned());
        let id = claim.run_id.clone();
        tokio::spawn(async move {
            this.scan_locked(claim, &trigger, &actor, true).await;
        });
        Ok(id)
    }

    /// Runs a scan to the end; refused while one runs (here or in another process on the
    /// store). For the scheduler.
    pub async fn run_scan(&self, trigger: &str, actor: &str) -> Result<ScanReport, TaskError> {
        let claim = self.claim(trigger).await?;
        Ok(self.scan_locked(claim, trigger, actor, true).await)
    }

    /// `scan --once`: one pass that waits up to `wait` for another process's pass or reaping
    /// on the same store to end, then runs; its act step (marking, deleting) only when `act`.
    pub async fn run_scan_once(
        &self,
        trigger: &str,
        actor: &str,
        act: bool,
        wait: std::time::Duration,
    ) -> Result<ScanReport, TaskError> {
        let until = std::time::Instant::now() + wait;
        let mut told = false;
        let claim = loop {
            match self.claim(trigger).await {
                Err(TaskError::Busy(held)) if std::time::Instant::now() < until => {
                    if !told {
                        tracing::warn!(%held, "waiting for the other process to finish");
                        told = true;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
                other => break other?,
            }
        };
        Ok(self.scan_locked(claim, trigger, actor, act).await)
    }

    /// Takes the scan lock and the store's act lock (or says who holds them), closes the runs
    /// a killed process left `running`, names the new run and records its start, so the run
    /// can be looked up as soon as its id is known.
    async fn claim(&self, trigger: &str) -> Result<Claim, TaskError> {
        let mut running = self.inner.running.lock().await;
        let guard = self.inner.scan_lock.clone().try_lock_owned().map_err(|_| {
            TaskError::AlreadyRunning(running.clone().unwrap_or_else(|| "unknown".into()))
        })?;
        let run_id = uuid::Uuid::now_v7().to_string();
        let lock = StoreLock::take(&self.inner.store, format!("scan run {run_id}")).await?;
        // Holding the act lock, no other pass runs anywhere: a run still `running` was left by
        // a process that died.
        let now = self.inner.clock.now();
        self.close_interrupted(now).await?;
        self.inner
            .store
            .start_run(run_id.clone(), "scan", trigger.to_owned(), now)
            .await?;
        *running = Some(run_id.clone());
        Ok(Claim {
            _guard: guard,
            lock,
            run_id,
        })
    }

    /// Closes (and logs) the scans a process that died left `running`; the caller holds the
    /// act lock, so none of them can be in progress.
    async fn close_interrupted(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        for id in self.inner.store.close_interrupted_runs("scan", now).await? {
            tracing::warn!(run_id = %id, "a scan left running by a process that stopped is closed as interrupted");
        }
        Ok(())
    }

    /// At start: unless another process is acting on the store, closes the scans a process
    /// that died left `running` (the next pass would, but status should not wait for it).
    pub async fn close_interrupted_runs(&self) {
        match StoreLock::take(&self.inner.store, "start-up".into()).await {
            Ok(lock) => {
                if let Err(e) = self.close_interrupted(self.inner.clock.now()).await {
                    tracing::error!(error = %crate::error_chain(&e), "cannot close interrupted runs")
                }
                lock.release().await;
            }
            Err(TaskError::Busy(held)) => {
                tracing::info!(%held, "another process is acting on the store; its runs are its own")
            }
            Err(e) => {
                tracing::error!(error = %crate::error_chain(&e), "cannot close interrupted runs")
            }
        }
    }

    /// A scheduled tick: runs the scan unless one is running, which is counted as skipped.
    pub async fn scheduled_scan(&self) {
        match self.run_scan("schedule", "scheduler").await {
            Ok(_) => {}
            Err(TaskError::AlreadyRunning(id)) => {
                self.inner
                    .metrics
                    .task_skipped
                    .with_label_values(&["scan"])
                    .inc();
                tracing::warn!(running = %id, "scan tick skipped: the previous scan is still running");
            }
            Err(TaskError::Busy(held)) => {
                self.inner
                    .metrics
                    .task_skipped
                    .with_label_values(&["scan"])
                    .inc();
                tracing::warn!(%held, "scan tick skipped: another process is acting on the store");
            }
            Err(e) => tracing::error!(error = %crate::error_chain(&e), "scan failed"),
        }
    }

    async fn scan_locked(&self, claim: Claim, trigger: &str, actor: &str, act: bool) -> ScanReport {
        let run_id = claim.run_id.clone();
        let span = tracing::info_span!("scan", run_id = %run_id, trigger, actor);
        let report = tracing::Instrument::instrument(
            self.scan_inner(run_id.clone(), actor, act.then_some(&claim.lock)),
            span,
        )
        .await;
        *self.inner.running.lock().await = None;
        claim.lock.release().await;
        let m = &self.inner.metrics;
        m.task_runs
            .with_label_values(&["scan", &report.outcome])
            .inc();
        if report.outcome == "success"
            && let Some(end) = report.ended_at
        {
            m.task_succeeded("scan", end);
        }
        report
    }

    /// One pass; its act step runs when `act` holds the store's act lock to fence it with.
    async fn scan_inner(&self, run_id: String, actor: &str, act: Option<&StoreLock>) -> ScanReport {
        let inner = &self.inner;
        let started = inner.clock.now();
        let mut report = ScanReport {
            run_id: run_id.clone(),
            actor: actor.to_owned(),
            started_at: Some(started),
            ..ScanReport::default()
        };
        let timer = std::time::Instant::now();
        let leases = match inner.store.all_leases().await {
            Ok(l) => Arc::new(
                l.into_iter()
                    .map(|l| (l.id, l))
                    .collect::<HashMap<LeaseId, Lease>>(),
            ),
            Err(e) => {
                tracing::error!(error = %crate::error_chain(&e), "cannot load leases; scan abandoned");
                report.outcome = "failed".into();
                self.finish(&mut report).await;
                return report;
            }
        };

        let permits = Arc::new(Semaphore::new(
            inner.config.aws.max_concurrent_walks as usize,
        ));
        let mut walks = JoinSet::new();
        for account in &inner.config.aws.accounts {
            for region in &inner.config.aws.regions {
                let (this, permits, leases, run_id) = (
                    self.clone(),
                    permits.clone(),
                    leases.clone(),
                    run_id.clone(),
                );
                let (account, region) = (account.id.clone(), region.clone());
                walks.spawn(async move {
                    let _permit = permits.acquire_owned().await;
                    this.walk_one(run_id, account, region, leases).await
                });
            }
        }
        let mut verdicts: BTreeMap<Verdict, u64> = BTreeMap::new();
        let mut regionless: HashSet<String> = HashSet::new();
        while let Some(done) = walks.join_next().await {
            match done {
                Ok(w) => {
                    for (v, n) in w.verdicts {
                        *verdicts.entry(v).or_default() += n;
                    }
                    for (arn, v) in w.regionless {
                        if regionless.insert(arn) {
                            *verdicts.entry(v).or_default() += 1;
                        }
                    }
                    report.resources_seen += w.record.resources;
                    report.findings_opened += w.opened;
                    report.findings_updated += w.updated;
                    report.findings_resolved += w.resolved;
                    report.resources_gone += w.gone;
                    report.walks.push(w.record);
                }
                Err(e) => tracing::error!(error = %e, "a walk task panicked"),
            }
        }
        report
            .walks
            .sort_by(|a, b| (&a.account, &a.region).cmp(&(&b.account, &b.region)));
        let all_complete = report.walks.len()
            == inner.config.aws.accounts.len() * inner.config.aws.regions.len()
            && report.walks.iter().all(WalkRecord::is_complete);
        report.outcome = if all_complete { "success" } else { "partial" }.into();
        let mut reap_results = Vec::new();
        match act {
            Some(lock) => match inner
                .reaper
                .act(&run_id, &report.walks, actor, lock.fence())
                .await
            {
                Ok(r) => {
                    report.reap = Some(ReapSummary::from(&r));
                    reap_results = r.results;
                }
                Err(e) => {
                    tracing::error!(error = %crate::error_chain(&e), "the act step failed; nothing more was deleted");
                }
            },
            None => {
                tracing::info!("no act step: nothing marked or deleted (scan --once without --act)")
            }
        }
        report.verdicts = verdicts
            .into_iter()
            .map(|(v, n)| (v.as_str().to_owned(), n))
            .collect();
        if let Err(e) = self.refresh_gauges().await {
            tracing::error!(error = %crate::error_chain(&e), "cannot recompute resource gauges");
        }
        inner
            .metrics
            .scan_duration
            .observe(timer.elapsed().as_secs_f64());
        match inner.store.audit_head().await {
            Ok(head) => report.audit_head = head,
            Err(e) => {
                tracing::error!(error = %crate::error_chain(&e), "cannot read the audit head")
            }
        }
        self.finish(&mut report).await;
        if let Some(follower) = inner.passes.get() {
            let done = PassDone {
                report: report.clone(),
                results: reap_results.clone(),
            };
            if follower.send(done).await.is_err() {
                tracing::warn!("the follower of passes has stopped; no on-call summary");
            }
        }
        tracing::info!(
            outcome = %report.outcome,
            resources = report.resources_seen,
            opened = report.findings_opened,
            resolved = report.findings_resolved,
            incomplete = report.walks.iter().filter(|w| !w.is_complete()).count(),
            audit_head = %report.audit_head.as_ref().map_or("none".into(), |h| h.to_string()),
            "scan finished"
        );
        report
    }

    async fn finish(&self, report: &mut ScanReport) {
        let end = self.inner.clock.now();
        report.ended_at = Some(end);
        let summary = serde_json::to_value(&*report).unwrap_or_default();
        let outcome: &'static str = match report.outcome.as_str() {
            "success" => "success",
            "partial" => "partial",
            _ => "failed",
        };
        if let Err(e) = self
            .inner
            .store
            .finish_run(report.run_id.clone(), end, outcome, summary)
            .await
        {
            tracing::error!(error = %crate::error_chain(&e), "cannot record the scan's end");
        }
    }

    async fn walk_one(
        &self,
        run_id: String,
        account: String,
        region: String,
        leases: Arc<HashMap<LeaseId, Lease>>,
    ) -> WalkTotals {
        let inner = &self.inner;
        let started = inner.clock.now();
        let limiter = RateLimiter::new(inner.config.aws.calls_per_second);
        // Uncontended (pages of one walk are sequential); a Mutex only because the walk is Send.
        // Records are buffered up to PERSIST_BATCH so each store transaction carries ten pages,
        // not one: commits, not SQL, dominate a page-sized write.
        let totals = std::sync::Mutex::new(WalkTotals::default());
        let pending = std::sync::Mutex::new(Vec::<Record>::with_capacity(PERSIST_BATCH));
        // One batch may be persisting on the store's thread while the walk fetches and
        // evaluates the next pages; the walk waits for it before handing over another.
        type Inflight = tokio::task::JoinHandle<Result<crate::resource::PageChanges, String>>;
        let inflight: std::sync::Mutex<Option<Inflight>> = std::sync::Mutex::new(None);
        let settle = |h: Option<Inflight>| {
            let totals = &totals;
            async move {
                let Some(h) = h else { return Ok(()) };
                let changes = h.await.map_err(|e| format!("persist task failed: {e}"))??;
                let mut t = totals.lock().unwrap_or_else(|p| p.into_inner());
                t.opened += changes.opened;
                t.updated += changes.updated;
                Ok::<_, String>(())
            }
        };
        let spawn_persist = |records: Vec<Record>| -> Inflight {
            let store = inner.store.clone();
            let now = inner.clock.now();
            let run_id = run_id.clone();
            tokio::spawn(async move {
                store
                    .persist_page(run_id, now, records)
                    .await
                    .map_err(|e| crate::error_chain(&e))
            })
        };
        let span = tracing::info_span!("walk", account = %account, region = %region);
        let mut result = tracing::Instrument::instrument(
            inventory::walk(
                &inner.clients,
                &account,
                &region,
                &limiter,
                &inner.metrics,
                |page| {
                    let records = evaluate_page(
                        page,
                        &leases,
                        &inner.policy,
                        &inner.config.tags,
                        inner.clock.now(),
                    );
                    totals
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .count(&records);
                    let full = {
                        let mut buf = pending.lock().unwrap_or_else(|p| p.into_inner());
                        buf.extend(records);
                        (buf.len() >= PERSIST_BATCH).then(|| std::mem::take(&mut *buf))
                    };
                    let previous = full
                        .as_ref()
                        .and_then(|_| inflight.lock().unwrap_or_else(|p| p.into_inner()).take());
                    let settled = settle(previous);
                    let inflight = &inflight;
                    async move {
                        settled.await?;
                        if let Some(records) = full {
                            *inflight.lock().unwrap_or_else(|p| p.into_inner()) =
                                Some(spawn_persist(records));
                        }
                        Ok(())
                    }
                },
            ),
            span.clone(),
        )
        .await;
        // What the walk saw is persisted either way; a failure here makes the walk incomplete.
        let last = inflight.lock().unwrap_or_else(|p| p.into_inner()).take();
        let rest = std::mem::take(&mut *pending.lock().unwrap_or_else(|p| p.into_inner()));
        let mut flushed = settle(last).await;
        if flushed.is_ok() && !rest.is_empty() {
            flushed = settle(Some(spawn_persist(rest))).await;
        }
        if let Err(e) = flushed
            && result.error.is_none()
        {
            result.error = Some(format!("cannot persist pages: {e}"));
        }
        let mut totals = totals.into_inner().unwrap_or_else(|p| p.into_inner());
        let record = WalkRecord {
            account: account.clone(),
            region: region.clone(),
            started_at: started,
            ended_at: inner.clock.now(),
            outcome: if result.error.is_none() {
                "complete"
            } else {
                "incomplete"
            }
            .into(),
            reason: result.error.clone(),
            pages: result.pages,
            resources: result.resources,
        };
        inner
            .metrics
            .walks
            .with_label_values(&[&record.outcome])
            .inc();
        inner.metrics.findings_opened.inc_by(totals.opened);
        if let Some(reason) = &record.reason {
            span.in_scope(|| tracing::warn!(%reason, "walk incomplete: nothing is marked gone or resolved for it"));
        }
        match inner.store.finish_walk(run_id, record.clone()).await {
            Ok(changes) => {
                totals.gone = changes.gone;
                totals.resolved = changes.resolved;
                inner.metrics.findings_resolved.inc_by(changes.resolved);
            }
            Err(e) => span.in_scope(
                || tracing::error!(error = %crate::error_chain(&e), "cannot record the walk"),
            ),
        }
        totals.record = record;
        totals
    }

    /// Recomputes `ephemera_resources` and `ephemera_expired_resource_hours` from the store;
    /// label sets that vanished since the last pass are set to zero.
    pub async fn refresh_gauges(&self) -> Result<(), StoreError> {
        let inner = &self.inner;
        let totals = inner.store.live_totals(inner.clock.now()).await?;
        inner.resource_series.set(
            &inner.metrics.resources,
            totals
                .series
                .into_iter()
                .map(|(k, n)| (k.to_vec(), i64::try_from(n).unwrap_or(i64::MAX)))
                .collect(),
        );
        inner.project_series.set(
            &inner.metrics.expired_resource_hours,
            totals
                .expired_hours
                .into_iter()
                .map(|(p, h)| (vec![p], h))
                .collect(),
        );
        Ok(())
    }

    /// One cost refresh, recorded as a run of task `cost`; refused while one runs.
    pub async fn run_cost(
        &self,
        trigger: &str,
    ) -> Result<(String, Result<CostReport, String>), TaskError> {
        let inner = &self.inner;
        let _guard = inner
            .cost_lock
            .clone()
            .try_lock_owned()
            .map_err(|_| TaskError::AlreadyRunning("cost".into()))?;
        let run_id = uuid::Uuid::now_v7().to_string();
        inner
            .store
            .start_run(
                run_id.clone(),
                "cost",
                trigger.to_owned(),
                inner.clock.now(),
            )
            .await?;
        let result = inner.cost.refresh().await;
        let end = inner.clock.now();
        let (outcome, summary) = match &result {
            Ok(r) => ("success", serde_json::to_value(r).unwrap_or_default()),
            Err(e) => {
                tracing::error!(error = %e, "cost refresh failed");
                ("failed", serde_json::json!({"error": e.to_string()}))
            }
        };
        inner
            .store
            .finish_run(run_id.clone(), end, outcome, summary)
            .await?;
        inner
            .metrics
            .task_runs
            .with_label_values(&["cost", outcome])
            .inc();
        if outcome == "success" {
            inner.metrics.task_succeeded("cost", end);
        }
        Ok((run_id, result.map_err(|e| e.to_string())))
    }

    /// A scheduled cost tick; one that finds a refresh running is skipped and counted.
    pub async fn scheduled_cost(&self) {
        match self.run_cost("schedule").await {
            Ok(_) => {}
            Err(TaskError::AlreadyRunning(_)) => {
                self.inner
                    .metrics
                    .task_skipped
                    .with_label_values(&["cost"])
                    .inc();
                tracing::warn!("cost tick skipped: the previous refresh is still running");
            }
            Err(e) => tracing::error!(error = %crate::error_chain(&e), "cost refresh failed"),
        }
    }

    /// Today (UTC) by the daemon's clock.
    pub fn today(&self) -> chrono::NaiveDate {
        self.inner.clock.now().date_naive()
    }

    /// Spend gauges from what the store holds (at start-up; no Cost Explorer call).
    pub async fn export_spend(&self) -> Result<(), StoreError> {
        self.inner.cost.export().await
    }

    /// The reaper, for the plan.
    pub fn reaper(&self) -> &Reaper {
        &self.inner.reaper
    }

    pub fn armed(&self) -> bool {
        self.inner.config.enforcement.armed
    }

    /// The on-call plan for `arns`: only reads, so it neither waits for nor holds back a pass.
    pub async fn plan_reap(&self, arns: &[String]) -> Result<(Plan, Vec<ItemResult>), StoreError> {
        self.inner
            .reaper
            .reap_by_hand(arns, "", None, &Progress::default())
            .await
    }

    /// Claims on-call reaping: refused while a pass runs (the two would race for the same
    /// items); the claim holds the scan lock, so no pass starts until it is dropped.
    pub async fn claim_reap(&self, principal: &str) -> Result<ReapClaim, TaskError> {
        let running = self.inner.running.lock().await;
        let guard = self.inner.scan_lock.clone().try_lock_owned().map_err(|_| {
            TaskError::AlreadyRunning(running.clone().unwrap_or_else(|| "unknown".into()))
        })?;
        drop(running);
        let lock = StoreLock::take(&self.inner.store, format!("reap by {principal}")).await?;
        Ok(ReapClaim { _scan: guard, lock })
    }

    /// On-call reaping of `arns` in `principal`'s name, under a claim (released at the end).
    pub async fn reap_by_hand(
        &self,
        claim: ReapClaim,
        arns: &[String],
        principal: &str,
        progress: &Progress,
    ) -> Result<Vec<ItemResult>, StoreError> {
        let r = self
            .inner
            .reaper
            .reap_by_hand(arns, principal, Some(claim.lock.fence()), progress)
            .await;
        claim.lock.release().await;
        Ok(r?.1)
    }

    /// The id of the running scan, if any.
    pub async fn running_scan(&self) -> Option<String> {
        self.inner.running.lock().await.clone()
    }
}

/// A claimed scan: the in-process lock, the store's act lock and the run's id.
struct Claim {
    _guard: tokio::sync::OwnedMutexGuard<()>,
    lock: StoreLock,
    run_id: String,
}

/// How long a store lock lasts unless renewed, and how often its holder renews it.
const LOCK_TTL: chrono::TimeDelta = chrono::TimeDelta::seconds(60);
const LOCK_RENEW: std::time::Duration = std::time::Duration::from_secs(15);

/// The store's act lock, held by this process and renewed in the background until released.
/// Its times are the wall clock's: the lock is about processes, not a test's manual clock.
#[derive(Debug)]
pub(crate) struct StoreLock {
    store: Store,
    holder: String,
    renewer: tokio::task::JoinHandle<()>,
}

impl StoreLock {
    async fn take(store: &Store, what: String) -> Result<StoreLock, TaskError> {
        let holder = LockHolder::here(what);
        let id = holder.id.clone();
        let wall = crate::clock::SystemClock;
        store
            .try_lock(ACT_LOCK, holder, crate::clock::Clock::now(&wall), LOCK_TTL)
            .await??;
        let (s, h) = (store.clone(), id.clone());
        let renewer = tokio::spawn(async move {
            loop {
                tokio::time::sleep(LOCK_RENEW).await;
                match s
                    .renew_lock(
                        ACT_LOCK,
                        h.clone(),
                        crate::clock::Clock::now(&wall),
                        LOCK_TTL,
                    )
                    .await
                {
                    Ok(true) => {}
                    // Every delete is fenced on the lock: losing it stops them.
                    Ok(false) => {
                        tracing::error!(
                            "the act lock was taken over (this process stalled past its expiry); no more deletes"
                        );
                        return;
                    }
                    Err(e) => {
                        tracing::error!(error = %crate::error_chain(&e), "cannot renew the act lock")
                    }
                }
            }
        });
        Ok(StoreLock {
            store: store.clone(),
            holder: id,
            renewer,
        })
    }

    /// What every delete under this lock is fenced with.
    pub(crate) fn fence(&self) -> &str {
        &self.holder
    }

    async fn release(self) {
        self.renewer.abort();
        if let Err(e) = self.store.unlock(ACT_LOCK, self.holder.clone()).await {
            tracing::error!(error = %crate::error_chain(&e), "cannot release the act lock; it expires on its own");
        }
    }
}

impl Drop for StoreLock {
    /// A pass that ends without `release` (a panic) stops renewing: the lock then expires.
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

/// The right to reap by hand: no pass runs (here or in another process on the store) while
/// it is held.
#[derive(Debug)]
pub struct ReapClaim {
    _scan: tokio::sync::OwnedMutexGuard<()>,
    lock: StoreLock,
}

#[derive(Debug, Default)]
struct WalkTotals {
    record: WalkRecord,
    opened: u64,
    updated: u64,
    resolved: u64,
    gone: u64,
    /// Live resources seen, by verdict; those of region-less ARNs (S3 buckets, which an
    /// emulator lists in every region's walk) apart, for the pass to count each once.
    verdicts: BTreeMap<Verdict, u64>,
    regionless: Vec<(String, Verdict)>,
}

impl WalkTotals {
    fn count(&mut self, records: &[Record]) {
        for r in records.iter().filter(|r| !r.observed.is_terminated()) {
            if r.observed.arn.region().is_empty() {
                self.regionless
                    .push((r.observed.arn.as_str().to_owned(), r.verdict));
            } else {
                *self.verdicts.entry(r.verdict).or_default() += 1;
            }
        }
    }
}
