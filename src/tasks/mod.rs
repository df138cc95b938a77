//! Tasks: the audit pass (scan) and the cost refresh, each called alike by the scheduler, the
//! API and the command line, both run by one [`runner`] (lock, run row, trigger, metrics,
//! skipped ticks). The walk of one (account, region) is in [`walk`], the store's act lock as
//! this process holds it in [`lock`].
//!
//! Architecture Invariant: a task takes no input but its trigger, runs one at a time (a second
//! start is refused, a scheduled tick that finds it running is counted as skipped), continues
//! past one walk's failure, and reports a status record; it never retries on its own.

mod creators;
mod lock;
pub mod overrun;
mod purge;
mod runner;
mod walk;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::clock::Clock;
use crate::config::AwsAccount;
use crate::config::Config;
use crate::cost::fetch::CostError;
use crate::cost::refresh::{CostReport, CostTask};
use crate::inventory::{AwsClients, organization};
use crate::live::Live;
use crate::mail::PassDone;
use crate::metrics::{Metrics, Series};
use crate::model::{Event, EventKind, Lease, LeaseId, RunOutcome, TaskName, Verdict};
use crate::policy::Policy;
use crate::reaper::plan::Plan;
use crate::reaper::run::{ItemResult, Progress, Reaper};
use crate::resource::{ReapSummary, ScanReport, WalkRecord};
use crate::store::{HeldBy, Store, StoreError};
use lock::StoreLock;
pub use purge::{PURGE_BATCH, PurgeReport, cutoffs as purge_cutoffs, purge};
use runner::{Run, Runner};
pub use walk::evaluate_page;

#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("a run of this task is already in progress (run {0})")]
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
    policy: Live<Policy>,
    store: Store,
    clients: AwsClients,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    reaper: Reaper,
    cost: CostTask,
    /// Where a pass tells what it opened and resolved, incomplete walks and a cap hit.
    webhooks: crate::webhook::Webhooks,
    /// The runner of the pass; on-call reaping holds its lock too, so the two never race.
    scans: Runner,
    costs: Runner,
    /// Label sets of `ephemera_resources` set by the last pass, to zero those that vanish.
    resource_series: Series,
    stale_series: Series,
    source_series: Series,
    account_series: Series,
    project_series: Series,
    overrun_series: Series,
    p95_series: Series,
    teardown_ratio_series: Series,
    teardown_count_series: Series,
    /// Where each finished pass is sent (the daemon's mailer follows it when `[smtp]` is
    /// configured); without a follower (or in `scan --once`) notices wait in the outbox.
    passes: std::sync::OnceLock<tokio::sync::mpsc::Sender<PassDone>>,
}

impl Tasks {
    pub fn new(
        config: Arc<Config>,
        policy: Live<Policy>,
        store: Store,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let clients = AwsClients::new(config.aws.clone());
        // The daemon checked the secrets at start (`daemon::open`); read again here.
        let webhooks = crate::webhook::Webhooks::new(&config.webhooks).unwrap_or_else(|e| {
            tracing::error!(error = %crate::error_chain(&e), "webhooks off for the reaper");
            crate::webhook::Webhooks::default()
        });
        let reaper = Reaper::new(
            config.clone(),
            policy.clone(),
            store.clone(),
            clients.clone(),
            metrics.clone(),
            clock.clone(),
            webhooks.clone(),
        );
        let cost = CostTask::new(
            config.clone(),
            policy.clone(),
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
                webhooks,
                scans: Runner::new(TaskName::Scan),
                costs: Runner::new(TaskName::Cost),
                resource_series: Series::default(),
                stale_series: Series::default(),
                source_series: Series::default(),
                account_series: Series::default(),
                project_series: Series::default(),
                overrun_series: Series::default(),
                p95_series: Series::default(),
                teardown_ratio_series: Series::default(),
                teardown_count_series: Series::default(),
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
        let run = self.claim_scan(trigger).await?;
        let this = self.clone();
        let (trigger, actor) = (trigger.to_owned(), actor.to_owned());
        let id = run.id.clone();
        tokio::spawn(async move {
            this.scan_claimed(run, &trigger, &actor, true).await;
        });
        Ok(id)
    }

    /// Runs a scan to the end; refused while one runs (here or in another process on the
    /// store). For the scheduler.
    pub async fn run_scan(&self, trigger: &str, actor: &str) -> Result<ScanReport, TaskError> {
        let run = self.claim_scan(trigger).await?;
        Ok(self.scan_claimed(run, trigger, actor, true).await)
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
        let run = loop {
            match self.claim_scan(trigger).await {
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
        Ok(self.scan_claimed(run, trigger, actor, act).await)
    }

    /// A pass always holds the store's act lock, even one that will not act: what it
    /// resolves and marks gone must not interleave with another process's deletes.
    async fn claim_scan(&self, trigger: &str) -> Result<Run, TaskError> {
        let inner = &self.inner;
        inner
            .scans
            .claim(&inner.store, trigger, true, inner.clock.as_ref())
            .await
    }

    /// At start: unless another process is acting on the store, closes the scans a process
    /// that died left `running` (the next pass would, but status should not wait for it).
    pub async fn close_interrupted_runs(&self) {
        let inner = &self.inner;
        match StoreLock::take(&inner.store, "start-up".into()).await {
            Ok(lock) => {
                let now = inner.clock.now();
                if let Err(e) = inner.scans.close_interrupted(&inner.store, now).await {
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
        if let Err(e) = self.run_scan("schedule", "scheduler").await {
            self.inner.scans.tick_refused(&self.inner.metrics, &e);
        }
    }

    async fn scan_claimed(&self, run: Run, trigger: &str, actor: &str, act: bool) -> ScanReport {
        let inner = &self.inner;
        let span = tracing::info_span!("scan", run_id = %run.id, trigger, actor);
        let fence = if act { run.act.as_ref() } else { None };
        // The pass's finding events come after this one (passes never overlap).
        let events_after = if inner.webhooks.wants(EventKind::FindingOpened)
            || inner.webhooks.wants(EventKind::FindingResolved)
            || inner.webhooks.wants(EventKind::ResourceMarked)
        {
            match inner.store.last_finding_event_id().await {
                Ok(id) => Some(id),
                Err(e) => {
                    tracing::error!(error = %crate::error_chain(&e), "no finding webhook events this pass");
                    None
                }
            }
        } else {
            None
        };
        let (mut report, results) = tracing::Instrument::instrument(
            self.scan_inner(run.id.clone(), actor, fence),
            span.clone(),
        )
        .await;
        let end = inner.clock.now();
        report.ended_at = Some(end);
        // The walks are in the walks table (`GET /scans/{id}`); copied into the summary too, an
        // organization's 17,000 of them made a 100 MB value to store with every pass.
        let walks = std::mem::take(&mut report.walks);
        let summary = serde_json::to_value(&report).unwrap_or_default();
        report.walks = walks;
        inner
            .scans
            .finish(
                &inner.store,
                &inner.metrics,
                run,
                report.outcome,
                summary,
                end,
            )
            .await;
        tracing::Instrument::instrument(self.tell_pass(&report, events_after), span.clone()).await;
        if let Some(follower) = inner.passes.get() {
            let done = PassDone {
                report: report.clone(),
                results,
            };
            if follower.send(done).await.is_err() {
                span.in_scope(|| {
                    tracing::warn!("the follower of passes has stopped; no on-call summary")
                });
            }
        }
        span.in_scope(|| {
            tracing::info!(
                outcome = %report.outcome,
                resources = report.resources_seen,
                opened = report.findings_opened,
                resolved = report.findings_resolved,
                incomplete = report.walks.iter().filter(|w| !w.is_complete()).count(),
                audit_head = %report.audit_head.as_ref().map_or("none".into(), |h| h.to_string()),
                "scan finished"
            )
        });
        report
    }

    /// Runtime early warning ([`overrun`]): sets `ephemera_leases_overrunning` and
    /// `ephemera_lease_duration_p95_seconds` from the store's recent releases and the leases
    /// not released (`running`), and, with `tell`, queues `lease.overrunning` once per lease.
    pub async fn judge_runtimes(
        &self,
        running: &[Lease],
        tell: bool,
    ) -> Result<Vec<crate::resource::OverrunningLease>, StoreError> {
        let inner = &self.inner;
        let policy = inner.policy.get();
        let now = inner.clock.now();
        let projects: Vec<String> = policy.projects().map(|p| p.name.to_string()).collect();
        let durations = inner
            .store
            .lease_durations_since(projects, now - overrun::RECENT, overrun::MAX_SAMPLES)
            .await?;
        let verdicts = overrun::judge(&policy, &durations, running, now);
        inner.overrun_series.set(
            &inner.metrics.leases_overrunning,
            verdicts
                .iter()
                .map(|v| {
                    (
                        vec![v.project.to_string()],
                        i64::try_from(v.overrunning.len()).unwrap_or(i64::MAX),
                    )
                })
                .collect(),
        );
        inner.p95_series.replace(
            &inner.metrics.lease_duration_p95,
            verdicts
                .iter()
                .filter_map(|v| {
                    v.p95
                        .map(|d| (vec![v.project.to_string()], d.as_seconds_f64()))
                })
                .collect(),
        );
        let overrunning: Vec<crate::resource::OverrunningLease> = verdicts
            .iter()
            .flat_map(|v| {
                v.overrunning
                    .iter()
                    .map(move |l| crate::resource::OverrunningLease {
                        lease_id: l.id.to_string(),
                        project: l.project.to_string(),
                        task: l.task.clone(),
                        owner: l.owner.clone(),
                        running_seconds: (now - l.created_at).num_seconds(),
                        p95_seconds: v.p95.map_or(0, |d| d.num_seconds()),
                        threshold_seconds: v.threshold.map_or(0, |d| d.num_seconds()),
                    })
            })
            .collect();
        if !tell || !inner.webhooks.wants(EventKind::LeaseOverrunning) {
            return Ok(overrunning);
        }
        let events: Vec<Event> = verdicts
            .iter()
            .flat_map(|v| {
                v.overrunning.iter().map(move |l| {
                    Event::new(
                        EventKind::LeaseOverrunning,
                        &l.id.to_string(),
                        now,
                        format!("lease/{}", l.id),
                        serde_json::json!({
                            "lease_id": l.id.to_string(), "project": l.project.as_str(),
                            "task": l.task, "owner": l.owner, "principal": l.principal,
                            "created_at": l.created_at, "expires_at": l.expires_at,
                            "running_seconds": (now - l.created_at).num_seconds(),
                            "p95_seconds": v.p95.map(|d| d.num_seconds()),
                            "threshold_seconds": v.threshold.map(|d| d.num_seconds()),
                            "samples": v.samples,
                        }),
                    )
                })
            })
            .collect();
        inner.webhooks.emit_all(&inner.store, &events).await?;
        Ok(overrunning)
    }

    /// Queues the webhook events of a finished pass: each finding it opened, resolved or
    /// marked for deletion (its events after `events_after`), each incomplete walk, and a cap
    /// hit. A failure is logged:
    /// the pass itself stands.
    async fn tell_pass(&self, report: &ScanReport, events_after: Option<i64>) {
        let inner = &self.inner;
        let hooks = &inner.webhooks;
        if hooks.is_empty() {
            return;
        }
        let at = report.ended_at.unwrap_or_else(|| inner.clock.now());
        let mut events = Vec::new();
        for w in report.walks.iter().filter(|w| !w.is_complete()) {
            let scope = format!("{}/{}", w.account, w.region);
            events.push(Event::new(
                EventKind::WalkIncomplete,
                &format!("{}:{scope}", report.run_id),
                w.ended_at,
                scope,
                serde_json::json!({
                    "run_id": report.run_id, "account": w.account, "region": w.region,
                    "reason": w.reason, "outcome": w.outcome,
                }),
            ));
        }
        if let Some(reap) = report.reap.as_ref().filter(|r| !r.capped.is_empty()) {
            events.push(Event::new(
                EventKind::ReaperCapHit,
                &report.run_id,
                at,
                format!("run/{}", report.run_id),
                serde_json::json!({"run_id": report.run_id, "capped": reap.capped}),
            ));
        }
        if let Err(e) = hooks.emit_all(&inner.store, &events).await {
            tracing::error!(error = %crate::error_chain(&e), "cannot queue the pass's webhook events");
        }
        let Some(mut after) = events_after else {
            return;
        };
        loop {
            let page = match inner
                .store
                .run_finding_changes(report.run_id.clone(), after, 1000)
                .await
            {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(error = %crate::error_chain(&e), "cannot read the pass's finding changes");
                    return;
                }
            };
            let Some(last) = page.last() else { return };
            after = last.event_id;
            let events: Vec<Event> = page
                .iter()
                .map(|f| {
                    let kind = match f.kind.as_str() {
                        "opened" => EventKind::FindingOpened,
                        "marked" => EventKind::ResourceMarked,
                        _ => EventKind::FindingResolved,
                    };
                    // A finding opens and resolves once, but may be marked again after an
                    // unmark.
                    let occurrence = match kind {
                        EventKind::ResourceMarked => format!("{}:{}", f.finding_id, report.run_id),
                        _ => f.finding_id.to_string(),
                    };
                    Event::new(
                        kind,
                        &occurrence,
                        f.at,
                        f.arn.clone(),
                        serde_json::json!({
                            "finding_id": f.finding_id, "arn": f.arn, "verdict": f.verdict,
                            "detail": f.detail, "project": f.project, "lease_id": f.lease_id,
                            "account": f.account, "region": f.region,
                            "resource_type": f.resource_type, "run_id": report.run_id,
                        }),
                    )
                })
                .collect();
            if let Err(e) = hooks.emit_all(&inner.store, &events).await {
                tracing::error!(error = %crate::error_chain(&e), "cannot queue the pass's finding events");
                return;
            }
        }
    }

    /// One pass and what its act step did; the act step runs when `act` holds the store's act
    /// lock to fence it with.
    async fn scan_inner(
        &self,
        run_id: String,
        actor: &str,
        act: Option<&StoreLock>,
    ) -> (ScanReport, Vec<ItemResult>) {
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
                report.outcome = RunOutcome::Failed;
                return (report, Vec::new());
            }
        };

        // A sweep rides on the pass when its (account, region) was last swept completely an
        // interval ago or more; a store error sweeps everywhere (it only costs calls).
        let discovery = &inner.config.discovery;
        let last_sweeps = if discovery.enabled() {
            inner.store.last_sweeps().await.unwrap_or_else(|e| {
                tracing::warn!(error = %crate::error_chain(&e), "cannot read the last sweeps; sweeping everywhere");
                HashMap::new()
            })
        } else {
            HashMap::new()
        };
        let sweep_due = |account: &str, region: &str| {
            discovery.enabled()
                && last_sweeps
                    .get(&(account.to_owned(), region.to_owned()))
                    .is_none_or(|at| started - *at >= discovery.interval.to_chrono())
        };
        let permits = Arc::new(Semaphore::new(
            inner.config.aws.max_concurrent_walks as usize,
        ));
        let accounts = self.audited_accounts(&mut report).await;
        report.accounts = accounts.len() as u64;
        inner
            .metrics
            .audited_accounts
            .set(i64::try_from(accounts.len()).unwrap_or(i64::MAX));
        let mut walks = JoinSet::new();
        let mut tally = Tally::default();
        for account in &accounts {
            let regions = account.regions(&inner.config.aws.regions);
            for region in regions {
                // A walk is spawned only once it may run: 17,000 walks waiting as spawned tasks
                // held a suspended walk each, 1.4 GB at 1,000 accounts × 17 regions.
                let permit = match permits.clone().acquire_owned().await {
                    Ok(p) => p,
                    Err(_) => break,
                };
                while let Some(done) = walks.try_join_next() {
                    tally.add(done, &mut report);
                }
                let (this, leases, run_id) = (self.clone(), leases.clone(), run_id.clone());
                let due = sweep_due(&account.id, region);
                // Global types (IAM) are swept in the account's first region only.
                let home = regions.first() == Some(region);
                let (account, region) = (account.id.clone(), region.clone());
                walks.spawn(async move {
                    let _permit = permit;
                    this.walk_one(run_id, account, region, leases, due, home)
                        .await
                });
            }
        }
        while let Some(done) = walks.join_next().await {
            tally.add(done, &mut report);
        }
        let verdicts = tally.verdicts;
        report
            .walks
            .sort_by(|a, b| (&a.account, &a.region).cmp(&(&b.account, &b.region)));
        let expected: usize = accounts
            .iter()
            .map(|a| a.regions(&inner.config.aws.regions).len())
            .sum();
        let all_complete = report.walks.len() == expected
            && report.walks.iter().all(WalkRecord::is_complete)
            && report.organization_error.is_none();
        report.outcome = if all_complete {
            RunOutcome::Success
        } else {
            RunOutcome::Partial
        };
        // Only a pass that saw everything can prove a lease's resources gone. Beside the act
        // step, not before it: each reads what the walks wrote, not what the other writes (a
        // resource deleted now is gone after this pass started, so it counts as still there
        // for this pass's teardowns either way), and on PostgreSQL they use two cores.
        let settle = async {
            if !all_complete {
                return;
            }
            match inner
                .store
                .settle_teardowns(started, inner.clock.now())
                .await
            {
                Ok(0) => {}
                Ok(n) => tracing::info!(leases = n, "teardown complete"),
                Err(e) => {
                    tracing::warn!(error = %crate::error_chain(&e), "cannot record teardowns; the next complete pass will")
                }
            }
        };
        // The gauges count live resources (and the teardowns just settled), which the act
        // step changes only by deleting: recomputed beside it, after the settling, and again
        // after it when it deleted something, so a pass that deletes nothing does not wait
        // for a scan of every resource after its act step.
        let gauges = async {
            settle.await;
            self.refresh_gauges().await
        };
        let act_step = async {
            // Before the act step, so the plan, the notices and the summary can name them.
            self.look_up_creators().await;
            match act {
                Some(lock) => match inner
                    .reaper
                    .act(&run_id, &report.walks, actor, lock.fence())
                    .await
                {
                    Ok(r) => Some(r),
                    Err(e) => {
                        tracing::error!(error = %crate::error_chain(&e), "the act step failed; nothing more was deleted");
                        None
                    }
                },
                None => {
                    tracing::info!(
                        "no act step: nothing marked or deleted (scan --once without --act)"
                    );
                    None
                }
            }
        };
        let (mut gauged, acted) = tokio::join!(gauges, act_step);
        // An act step that failed may have deleted some first: counted again too.
        let deleted = act.is_some()
            && acted
                .as_ref()
                .is_none_or(|r| r.count(crate::model::Decision::Deleted) > 0);
        if deleted || gauged.is_err() {
            gauged = self.refresh_gauges().await;
        }
        if let Err(e) = gauged {
            tracing::error!(error = %crate::error_chain(&e), "cannot recompute resource gauges");
        }
        let reap_results = match acted {
            Some(r) => {
                report.reap = Some(ReapSummary::from(&r));
                r.results
            }
            None => Vec::new(),
        };
        report.verdicts = verdicts
            .into_iter()
            .map(|(v, n)| (v.as_str().to_owned(), n))
            .collect();
        let running: Vec<Lease> = leases
            .values()
            .filter(|l| l.released_at.is_none())
            .cloned()
            .collect();
        match self.judge_runtimes(&running, true).await {
            Ok(overrunning) => report.overrunning = overrunning,
            Err(e) => {
                tracing::error!(error = %crate::error_chain(&e), "cannot judge lease runtimes")
            }
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
        (report, reap_results)
    }

    /// The accounts this pass audits: with `[aws.organization]`, read again from AWS
    /// Organizations (so an account created since the last pass is audited from this one) and
    /// merged with the static ones; when that read fails, the accounts of the last read, and
    /// the pass is partial.
    async fn audited_accounts(&self, report: &mut ScanReport) -> Vec<AwsAccount> {
        let inner = &self.inner;
        let Some(org) = &inner.config.aws.organization else {
            return inner.clients.accounts();
        };
        let conf = inner.clients.organization_config().await;
        let bound = inner.policy.get().bound_ous();
        match organization::accounts(&conf, org, &bound, &inner.metrics).await {
            Ok(listed) => {
                let merged = organization::merge(&inner.config.aws.accounts, &listed);
                inner.clients.set_accounts(merged.clone());
                merged
            }
            Err(e) => {
                let reason = crate::error_chain(&e);
                tracing::warn!(%reason, "cannot read the organization's accounts; auditing the last ones known");
                report.organization_error = Some(reason);
                inner.clients.accounts()
            }
        }
    }

    /// Recomputes `ephemera_resources` and `ephemera_expired_resource_hours` from the store;
    /// label sets that vanished since the last pass are set to zero.
    pub async fn refresh_gauges(&self) -> Result<(), StoreError> {
        let inner = &self.inner;
        let totals = inner.store.live_totals(inner.clock.now()).await?;
        inner.stale_series.set(
            &inner.metrics.stale_credentials,
            crate::metrics::stale_credentials(&totals.series),
        );
        inner.resource_series.set(
            &inner.metrics.resources,
            totals
                .series
                .into_iter()
                .map(|(k, n)| (k.to_vec(), i64::try_from(n).unwrap_or(i64::MAX)))
                .collect(),
        );
        inner.source_series.set(
            &inner.metrics.resources_by_source,
            totals
                .by_source
                .into_iter()
                .map(|(k, n)| (k.to_vec(), i64::try_from(n).unwrap_or(i64::MAX)))
                .collect(),
        );
        inner.account_series.set(
            &inner.metrics.account_resources,
            crate::metrics::top_accounts(totals.by_account),
        );
        let now = inner.clock.now();
        let ended = inner
            .store
            .leases_ended_since(now - crate::metrics::TEARDOWN_WINDOW, now)
            .await?;
        let policy = inner.policy.get();
        // Time to be torn down: the longest grace the project gives ended leases, plus a day
        // for the deletion and the pass that confirms it.
        let settle = |project: &str| {
            let p = crate::model::ProjectName::parse(project)
                .ok()
                .and_then(|n| policy.project(&n).cloned());
            [Verdict::Expired, Verdict::Released]
                .into_iter()
                .map(|v| policy.rule_for(p.as_ref(), v, "").grace.to_chrono())
                .max()
                .unwrap_or_default()
                + chrono::TimeDelta::days(1)
        };
        let ratios = crate::metrics::teardown_ratios(
            ended
                .iter()
                .map(|l| (l.project.as_str(), l.ended_at, l.torn_down)),
            now,
            settle,
        );
        inner.teardown_ratio_series.replace(
            &inner.metrics.teardown_success_ratio,
            ratios
                .iter()
                .map(|(p, _, r)| (vec![p.clone()], *r))
                .collect(),
        );
        inner.teardown_count_series.set(
            &inner.metrics.teardown_settled_leases,
            ratios
                .iter()
                .map(|(p, n, _)| (vec![p.clone()], i64::try_from(*n).unwrap_or(i64::MAX)))
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
    pub async fn run_cost(&self, trigger: &str) -> Result<CostRun, TaskError> {
        let inner = &self.inner;
        // Cost Explorer is read, nothing deleted: the refresh needs no act lock.
        let run = inner
            .costs
            .claim(&inner.store, trigger, false, inner.clock.as_ref())
            .await?;
        let run_id = run.id.clone();
        let result = inner.cost.refresh().await;
        let (outcome, summary) = match &result {
            Ok(r) => (
                RunOutcome::Success,
                serde_json::to_value(r).unwrap_or_default(),
            ),
            Err(e) => {
                tracing::error!(error = %crate::error_chain(e), "cost refresh failed");
                (
                    RunOutcome::Failed,
                    serde_json::json!({"error": crate::error_chain(e)}),
                )
            }
        };
        let end = inner.clock.now();
        inner
            .costs
            .finish(&inner.store, &inner.metrics, run, outcome, summary, end)
            .await;
        Ok(CostRun {
            run_id,
            outcome,
            result,
        })
    }

    /// A scheduled cost tick; one that finds a refresh running is skipped and counted.
    pub async fn scheduled_cost(&self) {
        if let Err(e) = self.run_cost("schedule").await {
            self.inner.costs.tick_refused(&self.inner.metrics, &e);
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

    /// The AWS clients of the passes (static and organization accounts).
    pub fn clients(&self) -> &AwsClients {
        &self.inner.clients
    }

    pub fn armed(&self) -> bool {
        self.inner.config.enforcement.armed
    }

    /// The on-call plan for `arns`: only reads, so it neither waits for nor holds back a pass.
    pub async fn plan_reap(
        &self,
        arns: &[String],
        reviewed: Option<&crate::reaper::plan::ReviewedPlan>,
    ) -> Result<(Plan, Vec<ItemResult>), StoreError> {
        self.inner
            .reaper
            .reap_by_hand(arns, "", None, reviewed, &Progress::default())
            .await
    }

    /// Claims on-call reaping: refused while a pass runs (the two would race for the same
    /// items); the claim holds the scan lock, so no pass starts until it is dropped.
    pub async fn claim_reap(&self, principal: &str) -> Result<ReapClaim, TaskError> {
        let held = self
            .inner
            .scans
            .hold(&self.inner.store, Some(format!("reap by {principal}")))
            .await?;
        let lock = held.act.ok_or_else(|| {
            TaskError::Store(StoreError::Corrupt("the act lock was not taken".into()))
        })?;
        Ok(ReapClaim {
            _scan: held.guard,
            lock,
        })
    }

    /// On-call reaping of `arns` in `principal`'s name, under a claim (released at the end);
    /// with `reviewed`, only the plan's items unchanged since it was written.
    pub async fn reap_by_hand(
        &self,
        claim: ReapClaim,
        arns: &[String],
        principal: &str,
        reviewed: Option<&crate::reaper::plan::ReviewedPlan>,
        progress: &Progress,
    ) -> Result<Vec<ItemResult>, StoreError> {
        let r = self
            .inner
            .reaper
            .reap_by_hand(
                arns,
                principal,
                Some(claim.lock.fence()),
                reviewed,
                progress,
            )
            .await;
        claim.lock.release().await;
        Ok(r?.1)
    }

    /// The id of the running scan, if any.
    pub async fn running_scan(&self) -> Option<String> {
        self.inner.scans.running().await
    }
}

/// What the finished walks of a pass add up to, as they finish.
#[derive(Default)]
struct Tally {
    verdicts: BTreeMap<Verdict, u64>,
    /// Region-less ARNs (S3) counted once, whichever walks list them.
    regionless: HashSet<String>,
}

impl Tally {
    fn add(
        &mut self,
        done: Result<walk::WalkTotals, tokio::task::JoinError>,
        report: &mut ScanReport,
    ) {
        let w = match done {
            Ok(w) => w,
            Err(e) => {
                tracing::error!(error = %e, "a walk task panicked");
                return;
            }
        };
        for (v, n) in w.verdicts {
            *self.verdicts.entry(v).or_default() += n;
        }
        for (arn, v) in w.regionless {
            if self.regionless.insert(arn) {
                *self.verdicts.entry(v).or_default() += 1;
            }
        }
        report.resources_seen += w.record.resources + w.swept;
        report.findings_opened += w.opened;
        report.findings_updated += w.updated;
        report.findings_resolved += w.resolved;
        report.resources_gone += w.gone;
        report.walks.push(w.record);
    }
}

/// A cost refresh as run: its run id, how it ended, and its report or why it failed.
#[derive(Debug)]
pub struct CostRun {
    pub run_id: String,
    pub outcome: RunOutcome,
    pub result: Result<CostReport, CostError>,
}

/// The right to reap by hand: no pass runs (here or in another process on the store) while
/// it is held.
#[derive(Debug)]
pub struct ReapClaim {
    _scan: tokio::sync::OwnedMutexGuard<()>,
    lock: StoreLock,
}
