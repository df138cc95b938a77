//! Carrying out the plan: the act step of a pass (mark, plan, would-delete or delete) and
//! on-call reaping, both through the same guards.
//!
//! Architecture Invariant: unarmed, nothing here makes an AWS call at all. Armed, every delete
//! is preceded, for that very resource, by a verified account, a fresh read of its tags and
//! existence, a fresh read of its lease and a re-evaluation; every outcome is in the audit log
//! before the next item starts.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::TimeDelta;
use serde::Serialize;

use super::aws::{self, DeleteError, Deleted, Inspection};
use super::plan::{Controlled, Knowledge, Plan, PlanInput, PlanItem, ReviewedPlan, Status, plan};
use crate::clock::Clock;
use crate::config::{AwsAccount, Config};
use crate::inventory::AwsClients;
use crate::live::Live;
use crate::metrics::{Metrics, Series};
use crate::model::Lease;
use crate::model::{
    Action, Arn, ControllerRef, Decision, Event, EventKind, LeaseId, ReapMode, Verdict,
};
use crate::policy::{Place, Policy, evaluate};
use crate::resource::{AuditEntry, ReapCandidate, ReapSummary, WalkRecord};
use crate::store::{ReapUpdate, Store, StoreError};
use crate::webhook::Webhooks;

/// Who acts, and how.
#[derive(Debug, Clone)]
pub struct Actor {
    /// `scheduler`, or the principal reaping by hand.
    pub name: String,
    pub manual: bool,
    pub run_id: Option<String>,
    /// The holder id of the store's act lock this actor holds: every delete is fenced on it,
    /// so a process that lost the lock (stalled past its expiry) starts no delete.
    pub fence: String,
    /// The digest of the reviewed plan being applied, which every audit record names.
    pub plan: Option<String>,
}

/// What happened to one item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ItemResult {
    pub arn: String,
    pub resource_type: String,
    /// The project its finding claims (teams' summaries are cut by it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    pub outcome: Decision,
    pub detail: String,
}

/// What the act step of a pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReapReport {
    pub armed: bool,
    pub marked: u64,
    /// Past their deadline but held back by a guard.
    pub held: u64,
    pub results: Vec<ItemResult>,
    pub capped: Vec<String>,
}

impl From<&ReapReport> for ReapSummary {
    fn from(r: &ReapReport) -> Self {
        ReapSummary {
            armed: r.armed,
            marked: r.marked,
            would_delete: r.count(Decision::WouldDelete),
            deleted: r.count(Decision::Deleted),
            skipped: r.count(Decision::Skipped),
            failed: r.count(Decision::Failed),
            held: r.held,
            capped: r.capped.clone(),
        }
    }
}

/// Items settled out of the items asked for, shared with whoever follows an on-call reap while
/// it runs.
#[derive(Debug, Default)]
pub struct Progress {
    total: AtomicU64,
    done: AtomicU64,
}

impl Progress {
    /// `(done, total)`.
    pub fn get(&self) -> (u64, u64) {
        (
            self.done.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed),
        )
    }

    fn set_total(&self, n: usize) {
        self.total.store(n as u64, Ordering::Relaxed);
    }

    fn step(&self, n: usize) {
        self.done.fetch_add(n as u64, Ordering::Relaxed);
    }
}

impl ReapReport {
    pub fn count(&self, outcome: Decision) -> u64 {
        self.results.iter().filter(|r| r.outcome == outcome).count() as u64
    }
}

#[derive(Debug, Clone)]
pub struct Reaper {
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
    /// Where deletions, failures and skips are told (nowhere without `[[webhooks]]`).
    webhooks: Webhooks,
    /// Projects `ephemera_marked_resources` was set for, to zero those that empty out.
    marked_series: Series,
}

/// The `reap_state` of a member whose controller's delete started: the next walk that finds
/// it gone confirms it in the audit log.
const GOING_WITH_CONTROLLER: &str = "with-controller";

fn is_controller(c: &ReapCandidate) -> bool {
    ControllerRef::of_resource(&c.arn, &c.account, &c.region).is_some()
}

/// Verdicts a resource may be deleted in; anything else found at the last moment wins.
fn reapable(v: Verdict) -> bool {
    matches!(
        v,
        Verdict::Expired
            | Verdict::Released
            | Verdict::UnknownLease
            | Verdict::Untagged
            | Verdict::UnapprovedImage
    )
}

impl Reaper {
    pub fn new(
        config: Arc<Config>,
        policy: Live<Policy>,
        store: Store,
        clients: AwsClients,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
        webhooks: Webhooks,
    ) -> Self {
        Reaper {
            inner: Arc::new(Inner {
                config,
                policy,
                store,
                clients,
                metrics,
                clock,
                webhooks,
                marked_series: Series::default(),
            }),
        }
    }

    fn owner_key(&self) -> String {
        self.inner.config.tags.owner.clone()
    }

    /// The plan as it stands now (no pass: walk completeness is not known, so not applied).
    pub async fn current_plan(&self) -> Result<Plan, StoreError> {
        let candidates = self.inner.store.reap_candidates(self.owner_key()).await?;
        self.plan_of(candidates, None, false, None).await
    }

    /// Plans `candidates` now, against the live inventory.
    async fn plan_of(
        &self,
        candidates: Vec<ReapCandidate>,
        knowledge: Option<&Knowledge>,
        manual: bool,
        controlled: Option<Controlled>,
    ) -> Result<Plan, StoreError> {
        let now = self.inner.clock.now();
        // The inventory (a scan of every live resource) only matters to the share cap of
        // items that are due.
        let some_due = manual || candidates.iter().any(|c| c.deadline <= now);
        let inventory = if some_due {
            self.inventory().await?
        } else {
            HashMap::new()
        };
        // Only a due controller needs its live members (read through a partial index), unless
        // the caller read them already.
        let controlled = match controlled {
            Some(c) => c,
            None if some_due
                && candidates
                    .iter()
                    .any(|c| c.controller.is_some() || is_controller(c)) =>
            {
                Controlled::of(self.inner.store.live_controlled().await?)
            }
            None => Controlled::default(),
        };
        let suspension = self.inner.store.suspension().await?;
        let suspended = suspension.map(|s| {
            format!(
                "{} (since {}; {} of {} clean passes)",
                s.reason,
                s.since.to_rfc3339(),
                s.clean_passes,
                self.inner.config.store.restore_clean_passes
            )
        });
        Ok(plan(
            candidates,
            PlanInput {
                enforcement: &self.inner.config.enforcement,
                knowledge,
                accounts: &self.accounts(),
                inventory: &inventory,
                suspended: suspended.as_deref(),
                now,
                manual,
                controlled: &controlled,
            },
        ))
    }

    /// What this pass says about lost leases: an open `unknown-lease` finding naming a lease
    /// newer than every lease the store issued means the store forgot leases (a restore from
    /// a backup); that suspends reaping of `unknown-lease` and `released` resources, and a
    /// complete pass without it counts toward lifting a suspension.
    async fn check_restore(&self, walks: &[WalkRecord]) -> Result<(), StoreError> {
        let inner = &self.inner;
        let newer = inner.store.leases_newer_than_the_store().await?;
        let evidence = newer.first().map(|first| {
            format!(
                "{} resources' leases are newer than any this store issued (first {first}): \
                 it may have been restored from a backup",
                newer.len()
            )
        });
        let complete = !walks.is_empty() && walks.iter().all(WalkRecord::is_complete);
        let now = inner.clock.now();
        let before = inner.store.suspension().await?;
        let after = if evidence.is_some() || complete {
            inner
                .store
                .record_restore_evidence(evidence, inner.config.store.restore_clean_passes, now)
                .await?
        } else {
            before.clone()
        };
        match (&before, &after) {
            (None, Some(s)) => {
                tracing::error!(reason = %s.reason, "reaping of unknown-lease and released resources is suspended");
            }
            (Some(_), None) => {
                tracing::warn!("the restore suspension ended after clean passes");
            }
            _ => {}
        }
        inner
            .metrics
            .reaping_suspended
            .set(i64::from(after.is_some()));
        Ok(())
    }

    /// The accounts audited now, by id, with their settings.
    fn accounts(&self) -> HashMap<String, AwsAccount> {
        self.inner
            .clients
            .accounts()
            .into_iter()
            .map(|a| (a.id.clone(), a))
            .collect()
    }

    async fn inventory(&self) -> Result<HashMap<String, u64>, StoreError> {
        let totals = self.inner.store.live_totals(self.inner.clock.now()).await?;
        let mut by_project: HashMap<String, u64> = HashMap::new();
        for ([project, ..], n) in totals.series {
            *by_project.entry(project).or_default() += n;
        }
        Ok(by_project)
    }

    /// The act step of a pass: mark new `reap` findings (queuing their owners a notice), plan,
    /// then record would-delete (unarmed) or delete (armed) what is due. `actor` names who
    /// started the pass in the audit log: `scheduler`, `once`, or an API principal.
    pub async fn act(
        &self,
        run_id: &str,
        walks: &[WalkRecord],
        actor: &str,
        fence: &str,
    ) -> Result<ReapReport, StoreError> {
        let inner = &self.inner;
        let now = inner.clock.now();
        let actor = Actor {
            name: actor.to_owned(),
            manual: false,
            run_id: Some(run_id.to_owned()),
            fence: fence.to_owned(),
            plan: None,
        };
        // A delete the daemon died in the middle of, whose resource a walk has since found
        // gone: it landed, and the audit log says so.
        for c in inner
            .store
            .interrupted_deletes_resolved(self.owner_key())
            .await?
        {
            let how = if c.reap_state.as_deref() == Some(GOING_WITH_CONTROLLER) {
                "confirmed gone by a walk (it went with its controller)"
            } else {
                "confirmed gone by a walk (an interrupted delete had reached AWS)"
            };
            self.audit(
                &actor,
                Subject::Item(&c),
                Decision::Deleted,
                how,
                ReapUpdate::Settled,
            )
            .await?;
        }
        self.check_restore(walks).await?;
        let marked = inner
            .store
            .mark_for_reaping(run_id.to_owned(), now, self.owner_key())
            .await?;
        // Only what is due: the rest is `scheduled`, which no cap, guard or count of this
        // step looks at (`ephemera plan` shows it).
        let candidates = inner
            .store
            .due_reap_candidates(self.owner_key(), now)
            .await?;
        let plan = self
            .plan_of(candidates, Some(&Knowledge::of(walks)), false, None)
            .await?;
        let mut report = ReapReport {
            armed: inner.config.enforcement.armed,
            marked,
            ..ReapReport::default()
        };
        report.capped = self.record_caps(&plan, &actor).await?;
        report.held = plan
            .items
            .iter()
            .filter(|i| matches!(i.status, Status::Held(_)))
            .count() as u64;
        report.results = self.carry_out(&plan, &actor, &Progress::default()).await?;
        // After the deletions, so that what is gone no longer counts as marked.
        self.set_marked_gauge().await;
        Ok(report)
    }

    /// On-call reaping of the given ARNs: their open findings, planned without the deadline,
    /// then, by a caller holding the store's act lock (`fence`; `None`: a plan only, which
    /// records nothing), carried out through every other guard. Every ARN asked for gets one
    /// result; each one refused (no open finding, held by the plan) is also an audit record,
    /// decision `refused`, in the principal's name.
    pub async fn reap_by_hand(
        &self,
        arns: &[String],
        principal: &str,
        fence: Option<&str>,
        reviewed: Option<&ReviewedPlan>,
        progress: &Progress,
    ) -> Result<(Plan, Vec<ItemResult>), StoreError> {
        let inner = &self.inner;
        let now = inner.clock.now();
        // An ARN named twice is one item (one audit record, counted once by the caps).
        let mut seen = HashSet::new();
        let arns: Vec<String> = arns
            .iter()
            .filter(|a| seen.insert(a.as_str()))
            .cloned()
            .collect();
        progress.set_total(arns.len());
        let mut candidates = inner
            .store
            .open_findings_for(arns.clone(), self.owner_key(), now)
            .await?;
        // A controller named by hand brings its live members' findings: it goes with them
        // or not at all, and naming each member of a stack is not on-call's job.
        let mut controlled = None;
        if candidates.iter().any(is_controller) {
            let live = Controlled::of(inner.store.live_controlled().await?);
            let asked: HashSet<&str> = arns.iter().map(String::as_str).collect();
            let members: Vec<String> = candidates
                .iter()
                .filter_map(|c| ControllerRef::of_resource(&c.arn, &c.account, &c.region))
                .flat_map(|r| live.all_members(&r))
                .map(ToString::to_string)
                .filter(|a| !asked.contains(a.as_str()))
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            if !members.is_empty() {
                let more = inner
                    .store
                    .open_findings_for(members, self.owner_key(), now)
                    .await?;
                candidates.extend(more);
            }
            controlled = Some(live);
        }
        for c in &mut candidates {
            // Reaped by hand, the deadline does not apply (the plan is told `manual`).
            c.deadline = c.deadline.min(now);
        }
        let found: HashSet<&str> = candidates.iter().map(|c| c.arn.as_str()).collect();
        let mut missing: Vec<ItemResult> = arns
            .iter()
            .filter(|a| !found.contains(a.as_str()))
            .map(|a| ItemResult {
                arn: a.clone(),
                resource_type: Arn::parse(a).map(|x| x.resource_type()).unwrap_or_default(),
                project: None,
                outcome: Decision::Skipped,
                detail: if reviewed.is_some() {
                    "changed since the plan was written: no open finding now (resolved, or gone)"
                        .into()
                } else {
                    "no open finding for this resource: nothing to reap".into()
                },
            })
            .collect();
        let Some(reviewed) = reviewed else {
            let plan = self.plan_of(candidates, None, true, controlled).await?;
            return self
                .act_by_hand(plan, missing, principal, fence, None, progress)
                .await;
        };
        // Under the act lock (the claim), so nothing changes between this check and the
        // deletes but what the last-moment checks in AWS see.
        let plan = self
            .plan_of(candidates.clone(), None, true, controlled.clone())
            .await?;
        let refused: Vec<(&PlanItem, String)> = plan
            .items
            .iter()
            .filter_map(|i| reviewed.refuses(i).map(|why| (i, why)))
            .collect();
        if refused.is_empty() {
            return self
                .act_by_hand(plan, missing, principal, fence, Some(reviewed), progress)
                .await;
        }
        // A refused controller's members stay too: none is ever deleted alone.
        let out: HashSet<String> = refused
            .iter()
            .flat_map(|(i, _)| {
                std::iter::once(i.candidate.arn.to_string())
                    .chain(i.members.iter().map(|m| m.arn.to_string()))
            })
            .collect();
        for (i, why) in &refused {
            let c = &i.candidate;
            missing.push(ItemResult {
                arn: c.arn.to_string(),
                resource_type: c.resource_type.clone(),
                project: c.project.as_ref().map(ToString::to_string),
                outcome: Decision::Skipped,
                detail: why.clone(),
            });
        }
        candidates.retain(|c| !out.contains(c.arn.as_str()));
        let plan = self.plan_of(candidates, None, true, controlled).await?;
        self.act_by_hand(plan, missing, principal, fence, Some(reviewed), progress)
            .await
    }

    /// Acts on the plan of a reaping by hand (with `fence`; without, it only answers the
    /// plan): `refused` items are recorded as refused, held ones as held, the due ones go.
    async fn act_by_hand(
        &self,
        plan: Plan,
        missing: Vec<ItemResult>,
        principal: &str,
        fence: Option<&str>,
        reviewed: Option<&ReviewedPlan>,
        progress: &Progress,
    ) -> Result<(Plan, Vec<ItemResult>), StoreError> {
        let Some(fence) = fence else {
            return Ok((plan, missing));
        };
        let actor = Actor {
            name: principal.to_owned(),
            manual: true,
            run_id: None,
            fence: fence.to_owned(),
            plan: reviewed.map(|r| r.digest.clone()),
        };
        let mut results = Vec::with_capacity(missing.len() + plan.items.len());
        for r in missing {
            self.audit(
                &actor,
                Subject::Arn(&r.arn),
                Decision::Refused,
                &r.detail,
                ReapUpdate::Decision,
            )
            .await?;
            progress.step(1);
            results.push(r);
        }
        self.record_caps(&plan, &actor).await?;
        for item in &plan.items {
            // By hand nothing is scheduled: what is not due is held, and why.
            let Status::Held(why) = &item.status else {
                continue;
            };
            let c = &item.candidate;
            let detail = format!("held: {why}");
            self.audit(
                &actor,
                Subject::Item(c),
                Decision::Refused,
                &detail,
                ReapUpdate::Decision,
            )
            .await?;
            progress.step(1);
            results.push(ItemResult {
                arn: c.arn.to_string(),
                resource_type: c.resource_type.clone(),
                project: c.project.as_ref().map(ToString::to_string),
                outcome: Decision::Held,
                detail,
            });
        }
        results.append(&mut self.carry_out(&plan, &actor, progress).await?);
        self.set_marked_gauge().await;
        Ok((plan, results))
    }

    /// Sets `ephemera_marked_resources`. It runs after deletions, whose outcomes must still
    /// reach the report and the audit: a store error here is logged, never returned.
    async fn set_marked_gauge(&self) {
        match self.inner.store.marked_by_project().await {
            Ok(by_project) => self.inner.marked_series.set(
                &self.inner.metrics.marked_resources,
                by_project.into_iter().map(|(p, n)| (vec![p], n)).collect(),
            ),
            Err(e) => {
                tracing::error!(error = %crate::error_chain(&e), "cannot recompute the marked gauge")
            }
        }
    }

    async fn record_caps(&self, plan: &Plan, actor: &Actor) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        for cap in &plan.capped {
            self.inner.metrics.reap_capped.inc();
            let detail = format!(
                "{} deletions due, cap {}: none done for {} this pass",
                cap.due, cap.limit, cap.scope
            );
            tracing::warn!(scope = %cap.scope, due = cap.due, limit = cap.limit, "deletion cap hit; reaping halted");
            self.audit(
                actor,
                Subject::Scope(&cap.scope),
                Decision::Capped,
                &detail,
                ReapUpdate::Decision,
            )
            .await?;
            out.push(detail);
        }
        Ok(out)
    }

    /// Appends one decision to the audit log, applying `update` to the item's finding.
    async fn audit(
        &self,
        actor: &Actor,
        about: Subject<'_>,
        decision: Decision,
        detail: &str,
        update: ReapUpdate,
    ) -> Result<i64, StoreError> {
        let (finding, arn, lease_id, verdict) = match about {
            Subject::Item(c) => (
                Some(c.finding_id),
                c.arn.to_string(),
                c.lease_id.clone(),
                Some(c.verdict.as_str().to_owned()),
            ),
            Subject::Scope(scope) | Subject::Arn(scope) => (None, scope.to_owned(), None, None),
        };
        self.inner
            .store
            .record_reap(
                finding,
                AuditEntry {
                    at: self.inner.clock.now(),
                    run_id: actor.run_id.clone(),
                    actor: actor.name.clone(),
                    mode: if actor.manual {
                        ReapMode::Manual
                    } else {
                        ReapMode::Pass
                    },
                    arn,
                    lease_id,
                    verdict,
                    decision,
                    detail: match &actor.plan {
                        Some(digest) => format!("{detail} (reviewed plan {digest})"),
                        None => detail.to_owned(),
                    },
                },
                update,
            )
            .await
    }

    /// Every due item, in plan order: would-delete when unarmed, else the guarded delete. (What
    /// the plan holds back or schedules is in the plan, not repeated here: a mass marking would
    /// otherwise copy every item.)
    async fn carry_out(
        &self,
        plan: &Plan,
        actor: &Actor,
        progress: &Progress,
    ) -> Result<Vec<ItemResult>, StoreError> {
        let armed = self.inner.config.enforcement.armed;
        let mut results = Vec::new();
        let mut settled: HashMap<String, bool> = HashMap::new(); // arn -> deleted this pass?
        let mut accounts: HashMap<String, Result<Identity, String>> = HashMap::new();
        let planned: HashSet<&str> = plan
            .items
            .iter()
            .map(|i| i.candidate.arn.as_str())
            .collect();
        for item in plan.due() {
            let c = &item.candidate;
            let result = if armed {
                self.delete_one(item, actor, &planned, &mut settled, &mut accounts)
                    .await?
            } else {
                self.would_delete(c, item.members.len(), actor).await?
            };
            self.inner
                .metrics
                .reap_actions
                .with_label_values(&[c.resource_type.as_str(), result.outcome.as_str()])
                .inc();
            progress.step(1);
            results.push(result);
        }
        Ok(results)
    }

    async fn would_delete(
        &self,
        c: &ReapCandidate,
        members: usize,
        actor: &Actor,
    ) -> Result<ItemResult, StoreError> {
        let detail = match members {
            0 => "enforcement is not armed".to_owned(),
            n => {
                format!("enforcement is not armed; a controller: its {n} members would go with it")
            }
        };
        // Recorded once per finding, not on every pass it stays due.
        if c.last_decision != Some(Decision::WouldDelete) {
            self.audit(
                actor,
                Subject::Item(c),
                Decision::WouldDelete,
                &detail,
                ReapUpdate::Decision,
            )
            .await?;
        }
        Ok(ItemResult {
            arn: c.arn.to_string(),
            resource_type: c.resource_type.clone(),
            project: c.project.as_ref().map(ToString::to_string),
            outcome: Decision::WouldDelete,
            detail,
        })
    }

    async fn delete_one(
        &self,
        item: &PlanItem,
        actor: &Actor,
        planned: &HashSet<&str>,
        settled: &mut HashMap<String, bool>,
        accounts: &mut HashMap<String, Result<Identity, String>>,
    ) -> Result<ItemResult, StoreError> {
        let c = &item.candidate;
        let outcome = self
            .guarded_delete(c, &item.members, actor, planned, settled, accounts)
            .await;
        let now = self.inner.clock.now();
        let (decision, detail, update) = match &outcome {
            Outcome::Gone(detail) => (Decision::Deleted, detail.clone(), ReapUpdate::Gone),
            Outcome::Deactivated(detail) => (
                Decision::Deactivated,
                detail.clone(),
                ReapUpdate::Deactivated,
            ),
            // A pass that skips an item for the same reason pass after pass records it once
            // and counts the rest; on-call reaping by hand records each time (who asked).
            Outcome::Skipped(why) if actor.manual => {
                (Decision::Skipped, why.clone(), ReapUpdate::Decision)
            }
            Outcome::Skipped(why) => (Decision::Skipped, why.clone(), ReapUpdate::Skipped),
            Outcome::Unmarked(why) => (Decision::Skipped, why.clone(), ReapUpdate::Unmark),
            Outcome::Failed(err) => {
                let backoff = self.backoff(c.attempts);
                (
                    Decision::Failed,
                    err.clone(),
                    ReapUpdate::Failed {
                        retry_at: now + backoff,
                    },
                )
            }
        };
        settled.insert(c.arn.to_string(), decision == Decision::Deleted);
        // A skip repeated pass after pass is told once, as it is audited once.
        let first_skip = actor.manual || c.last_decision != Some(Decision::Skipped);
        self.audit(actor, Subject::Item(c), decision, &detail, update)
            .await?;
        let event = match decision {
            Decision::Deleted => Some((EventKind::ResourceDeleted, c.finding_id.to_string())),
            Decision::Failed => Some((
                EventKind::ResourceFailed,
                format!("{}:{}", c.finding_id, c.attempts + 1),
            )),
            Decision::Skipped if first_skip => Some((
                EventKind::ResourceSkipped,
                format!("{}:{}", c.finding_id, now.timestamp_millis()),
            )),
            _ => None,
        };
        if let Some((kind, occurrence)) = event {
            let data = serde_json::json!({
                "arn": c.arn, "resource_type": c.resource_type, "project": c.project,
                "lease_id": c.lease_id, "owner": c.owner, "verdict": c.verdict,
                "finding_id": c.finding_id, "detail": detail, "by": actor.name,
            });
            let event = Event::new(kind, &occurrence, now, c.arn.to_string(), data);
            self.inner
                .webhooks
                .emit_logged(&self.inner.store, event)
                .await;
        }
        if decision == Decision::Deleted {
            if let Some(ended) = c.lease_ended_at {
                self.inner
                    .metrics
                    .teardown_latency
                    .observe((now - ended).num_milliseconds().max(0) as f64 / 1000.0);
            }
            self.inner
                .store
                .enqueue(
                    crate::model::MailKind::Reaped,
                    c.owner.clone(),
                    format!("reaped:{}", c.finding_id),
                    serde_json::json!({
                        "finding_id": c.finding_id, "arn": c.arn, "verdict": c.verdict,
                        "project": c.project, "lease_id": c.lease_id, "at": now, "detail": detail,
                    }),
                    now,
                )
                .await?;
        }
        Ok(ItemResult {
            arn: c.arn.to_string(),
            resource_type: c.resource_type.clone(),
            project: c.project.as_ref().map(ToString::to_string),
            outcome: decision,
            detail,
        })
    }

    /// Doubling from `retry_backoff`, at most a day.
    fn backoff(&self, attempts: u32) -> TimeDelta {
        let base = self.inner.config.enforcement.retry_backoff.to_chrono();
        crate::model::backoff(base, attempts, TimeDelta::days(1))
    }

    /// Whether `c` is a role ephemera itself assumes (an account's, the organization's): it is
    /// never deleted, whatever its tags say.
    fn is_own_role(&self, c: &ReapCandidate) -> bool {
        if c.resource_type != "iam:role" {
            return false;
        }
        let aws = &self.inner.config.aws;
        let mut own: Vec<String> = self
            .inner
            .clients
            .accounts()
            .iter()
            .filter_map(|a| aws.role_arn(a))
            .collect();
        own.extend(aws.organization.as_ref().and_then(|o| o.role_arn.clone()));
        own.iter().any(|r| same_role(r, c.arn.as_str()))
    }

    /// The last-moment checks of one candidate: its account, a fresh look at it, its tags and
    /// lease now, the rules now. `Ok` with the client and what it depends on when it may go.
    async fn recheck(
        &self,
        c: &ReapCandidate,
        actor: &Actor,
        accounts: &mut HashMap<String, Result<Identity, String>>,
    ) -> Result<(aws_config::SdkConfig, Vec<crate::model::Arn>), Outcome> {
        let inner = &self.inner;
        let arn = &c.arn;
        if self.is_own_role(c) {
            return Err(Outcome::Skipped(
                "refused: a role ephemera itself assumes (deleting it would cut the daemon off)"
                    .into(),
            ));
        }
        let sdk = match inner.clients.config_for(&c.account, &c.region).await {
            Ok(s) => s,
            Err(e) => return Err(Outcome::Skipped(format!("no client for the account: {e}"))),
        };
        if !accounts.contains_key(&c.account) {
            // Logged with its sources once here; the items of the account carry its text.
            let verified = verify_account(&sdk, &c.account).await.map_err(|e| {
                let text = crate::error_chain(&e);
                tracing::error!(account = %c.account, error = %text, "account not verified; nothing deleted in it");
                text
            });
            accounts.insert(c.account.clone(), verified);
        }
        match accounts.get(&c.account) {
            Some(Err(e)) => {
                return Err(Outcome::Skipped(format!(
                    "account {} not verified: {e}",
                    c.account
                )));
            }
            Some(Ok(me)) => {
                if let Some(why) = refuses_own(&c.arn, me) {
                    return Err(Outcome::Skipped(format!("refused: {why}")));
                }
            }
            None => {}
        }
        let (tags, depends_on) = match aws::inspect(&sdk, arn).await {
            // Never deletable (a default VPC, a main route table): recorded as skipped, not
            // as a failure retried with backoff, since no later pass can change the answer.
            Err(DeleteError::Refused(why)) => {
                return Err(Outcome::Skipped(format!("refused: {why}")));
            }
            Err(e) => {
                tracing::warn!(arn = %arn, error = %crate::error_chain(&e), "cannot re-read the resource");
                return Err(Outcome::Failed(format!("re-reading the resource: {e}")));
            }
            Ok(Inspection::Gone) => {
                let how = match c.reap_state.as_deref() {
                    Some("deleting") => "confirmed gone (an interrupted delete had reached AWS)",
                    Some(GOING_WITH_CONTROLLER) => "confirmed gone (it went with its controller)",
                    _ => "already gone",
                };
                return Err(Outcome::Gone(how.into()));
            }
            Ok(Inspection::Live { tags, depends_on }) => (tags, depends_on),
        };
        let keys = &inner.config.tags;
        // Outside a dedicated account the account role may delete only what carries these
        // keys (`ephemera iam-policy`): a delete AWS would refuse is not attempted.
        if !inner.clients.is_dedicated(&c.account)
            && let Some(missing) = keys
                .delete_condition_keys()
                .into_iter()
                .find(|k| tags.get(k).is_none())
        {
            return Err(Outcome::Skipped(format!(
                "no `{missing}` tag, in account {} which is not dedicated to ephemeral work \
                 (aws.accounts.dedicated): the account role may delete only what carries the \
                 identity tags; reported only",
                c.account
            )));
        }
        // The lease as it is now, from the store, not from the start of the pass. Lease ids are
        // compared parsed: the same id spelt another way is the same lease.
        let lease_tag = tags.get(&keys.lease).filter(|v| !v.trim().is_empty());
        if !same_lease_tag(lease_tag, c.lease_id.as_deref()) {
            // Another lease now: the mark was about the old one. Unmarked, so the next pass
            // evaluates it afresh (and marks it again, with a new grace, only if it must).
            return Err(Outcome::Unmarked(format!(
                "lease tag changed since it was marked ({} -> {}); evaluated afresh next pass",
                c.lease_id.as_deref().unwrap_or("none"),
                lease_tag.unwrap_or("none")
            )));
        }
        let lease: Option<Lease> = match lease_tag.and_then(LeaseId::parse_loose) {
            Some(id) => match inner.store.get_lease(id).await {
                Ok(l) => l,
                Err(e) => return Err(Outcome::Failed(format!("re-reading the lease: {e}"))),
            },
            None => None,
        };
        let now = inner.clock.now();
        let ous = inner.clients.ous_of(&c.account);
        let policy = inner.policy.get();
        // The image as it is now: an instance whose AMI was approved meanwhile must survive.
        let image = if policy.images().is_on() {
            match aws::image_of(&sdk, &c.arn).await {
                Ok(i) => i,
                Err(e) => {
                    return Err(Outcome::Failed(format!(
                        "re-reading the image: {}",
                        crate::error_chain(&e)
                    )));
                }
            }
        } else {
            None
        };
        let place = Place {
            account: &c.account,
            ous: &ous,
            resource_type: &c.resource_type,
            image: image.as_ref(),
        };
        let e = evaluate(
            c.arn.as_str(),
            &tags,
            |id| lease.as_ref().filter(|l| l.id == id),
            &policy,
            keys,
            &place,
            now,
        );
        if !reapable(e.verdict) {
            return Err(Outcome::Skipped(format!("now {}: {}", e.verdict, e.reason)));
        }
        // By hand, on-call may reap any reapable verdict but an unapproved image, which only
        // its project's rule may doom; a pass needs the rules to say reap.
        if (!actor.manual || e.verdict == Verdict::UnapprovedImage) && e.rule.action != Action::Reap
        {
            return Err(Outcome::Skipped(format!(
                "rules now say `{}` for a {} resource",
                e.rule.action, e.verdict
            )));
        }
        let owner_tag = tags.get(&keys.owner);
        if !same_owner(owner_tag, c.owner_tag.as_deref()) {
            // A new owner gets the whole grace period and a notice of their own: unmarked
            // here, marked afresh by the next pass.
            return Err(Outcome::Unmarked(format!(
                "owner tag changed since the pass ({} -> {}); marked again next pass",
                c.owner_tag.as_deref().unwrap_or("none"),
                owner_tag.unwrap_or("none")
            )));
        }
        Ok((sdk, depends_on))
    }

    /// The last-moment checks and the delete itself. A controller's `members` are each
    /// re-checked as it is (any that must not go keeps the controller), then marked as going
    /// with it: the next walk that finds one gone confirms it in the audit log.
    async fn guarded_delete(
        &self,
        c: &ReapCandidate,
        members: &[ReapCandidate],
        actor: &Actor,
        planned: &HashSet<&str>,
        settled: &HashMap<String, bool>,
        accounts: &mut HashMap<String, Result<Identity, String>>,
    ) -> Outcome {
        let inner = &self.inner;
        let arn = &c.arn;
        let (sdk, depends_on) = match self.recheck(c, actor, accounts).await {
            Ok(checked) => checked,
            Err(outcome) => return outcome,
        };

        for dep in &depends_on {
            match settled.get(dep.as_str()) {
                Some(true) => continue,
                Some(false) => {
                    return Outcome::Skipped(format!(
                        "held back: {dep}, which uses it, was not deleted"
                    ));
                }
                None => {}
            }
            // Marked but not in this plan (a pass plans only what is due): not due yet. A
            // store error is a failure, never a reason recorded in the audit that is not true.
            let marked = planned.contains(dep.as_str())
                || match inner.store.is_marked(dep.to_string()).await {
                    Ok(m) => m,
                    Err(e) => {
                        return Outcome::Failed(format!(
                            "cannot tell whether {dep}, which uses it, is marked: {}",
                            crate::error_chain(&e)
                        ));
                    }
                };
            return Outcome::Skipped(if marked {
                format!("held back: {dep}, which uses it, is not due yet")
            } else {
                format!("in use by {dep}, which is not marked for deletion")
            });
        }
        // Every member must still be fit to go, as the controller is: one that must not (a
        // new lease, a protect tag) keeps the whole controller.
        let mut going = Vec::with_capacity(members.len());
        for m in members {
            match self.recheck(m, actor, accounts).await {
                Ok(_) => going.push(m.finding_id),
                // Gone already: the walk that found it so resolves it.
                Err(Outcome::Gone(_)) => {}
                Err(
                    Outcome::Skipped(why)
                    | Outcome::Unmarked(why)
                    | Outcome::Failed(why)
                    | Outcome::Deactivated(why),
                ) => {
                    return Outcome::Skipped(format!(
                        "member {} must not go now ({why}); the controller stays with it",
                        m.arn
                    ));
                }
            }
        }
        let outcome = self.delete_now(c, &going, actor, &sdk).await;
        if !going.is_empty() && !matches!(outcome, Outcome::Gone(_)) {
            // The controller stays, so its members do too: nothing of theirs to confirm.
            if let Err(e) = inner.store.clear_going_with(going).await {
                tracing::warn!(arn = %arn, error = %crate::error_chain(&e), "cannot clear the members' going");
            }
        }
        match outcome {
            Outcome::Gone(detail) if !members.is_empty() => Outcome::Gone(format!(
                "{detail}; a controller: its {} members go with it, each confirmed by the next walk",
                members.len()
            )),
            other => other,
        }
    }

    /// Records the delete's start (and the members that go with it) under the act lock, then
    /// deletes.
    async fn delete_now(
        &self,
        c: &ReapCandidate,
        going: &[i64],
        actor: &Actor,
        sdk: &aws_config::SdkConfig,
    ) -> Outcome {
        let (inner, arn) = (&self.inner, &c.arn);
        // Noted in the same transaction that checks the act lock is still ours, the members
        // with it: a crash after the delete still has them confirmed by the next walk.
        let wall = crate::clock::Clock::now(&crate::clock::SystemClock);
        match inner
            .store
            .record_deleting(c.finding_id, going.to_vec(), actor.fence.clone(), wall)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                return Outcome::Skipped(
                    "this process no longer holds the act lock (another took over); not deleted"
                        .into(),
                );
            }
            Err(e) => return Outcome::Failed(format!("cannot record the delete's start: {e}")),
        }
        if super::plan::step(c) == super::plan::Step::Deactivate {
            return self.deactivate_now(c, sdk).await;
        }
        let watch = Watch {
            reaper: self,
            actor,
            c,
        };
        match aws::delete_watched(sdk, arn, &watch).await {
            Ok(Deleted::Deleted) => Outcome::Gone("deleted".into()),
            Ok(Deleted::AlreadyGone) => Outcome::Gone("already gone".into()),
            Err(DeleteError::Unsupported(t)) => Outcome::Skipped(format!("no deleter for {t}")),
            Err(DeleteError::Stopped(why)) => Outcome::Skipped(why),
            Err(DeleteError::Refused(why)) => Outcome::Skipped(format!("refused: {why}")),
            Err(e) => {
                // The audit record keeps the message; the log keeps the SDK's error under it.
                tracing::warn!(arn = %arn, error = %crate::error_chain(&e), "delete failed");
                Outcome::Failed(e.to_string())
            }
        }
    }

    /// The first step of deleting an access key: made inactive, so it stops working at once
    /// but can be switched back on until `enforcement.deactivation_grace` ends.
    async fn deactivate_now(&self, c: &ReapCandidate, sdk: &aws_config::SdkConfig) -> Outcome {
        let grace = self.inner.config.enforcement.deactivation_grace;
        let (user, key) = c.arn.access_key_parts().unwrap_or_default();
        let undo = format!(
            "`aws iam update-access-key --user-name {user} --access-key-id {key} --status Active` \
             switches it back on"
        );
        match aws::deactivate(sdk, &c.arn).await {
            Ok(aws::Deactivation::Deactivated) => Outcome::Deactivated(format!(
                "deactivated; deleted once it has been inactive for {grace} ({undo})"
            )),
            Ok(aws::Deactivation::AlreadyInactive) => Outcome::Deactivated(format!(
                "already inactive; deleted once {grace} has passed ({undo})"
            )),
            Ok(aws::Deactivation::Gone) => Outcome::Gone("already gone".into()),
            Err(DeleteError::Refused(why)) => Outcome::Skipped(format!("refused: {why}")),
            Err(DeleteError::Unsupported(t)) => Outcome::Skipped(format!("no deleter for {t}")),
            Err(e) => {
                tracing::warn!(arn = %c.arn, error = %crate::error_chain(&e), "deactivation failed");
                Outcome::Failed(e.to_string())
            }
        }
    }
}

/// Watches a deletion that goes in batches (a bucket's objects): each batch is an audit record
/// (`emptying`, how many removed so far), and a protect tag or another lease tag that appears
/// meanwhile stops it, as it would have at the last moment.
struct Watch<'a> {
    reaper: &'a Reaper,
    actor: &'a Actor,
    c: &'a ReapCandidate,
}

impl aws::Batches for Watch<'_> {
    fn progress(
        &self,
        removed: u64,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            let detail = format!("{removed} object versions removed so far");
            if let Err(e) = self
                .reaper
                .audit(
                    self.actor,
                    Subject::Item(self.c),
                    Decision::Emptying,
                    &detail,
                    ReapUpdate::Decision,
                )
                .await
            {
                tracing::error!(arn = %self.c.arn, error = %crate::error_chain(&e), "cannot record an emptying batch");
            }
        })
    }

    fn still_doomed(&self, tags: &crate::model::Tags) -> Result<(), String> {
        let keys = &self.reaper.inner.config.tags;
        if tags.get(&keys.protect).is_some() {
            return Err("the protect tag appeared while it was being emptied".into());
        }
        let lease_tag = tags.get(&keys.lease).filter(|v| !v.trim().is_empty());
        if !same_lease_tag(lease_tag, self.c.lease_id.as_deref()) {
            return Err(format!(
                "lease tag changed while it was being emptied ({} -> {})",
                self.c.lease_id.as_deref().unwrap_or("none"),
                lease_tag.unwrap_or("none")
            ));
        }
        Ok(())
    }
}

/// Whether two role ARNs name the same role: same account, same name (IAM role names are
/// unique without regard to case; the path is not part of the identity).
pub(crate) fn same_role(a: &str, b: &str) -> bool {
    let (Ok(a), Ok(b)) = (Arn::parse(a), Arn::parse(b)) else {
        return false;
    };
    same_entity(a.iam_entity("role"), b.iam_entity("role"))
}

/// Whether two IAM entities (account, name) are one: IAM names ignore case.
fn same_entity(a: Option<(&str, &str)>, b: Option<(&str, &str)>) -> bool {
    matches!((a, b), (Some((x, m)), Some((y, n))) if x == y && m.eq_ignore_ascii_case(n))
}

/// Whether the lease tag read at the last moment names the lease the finding was about: both
/// absent, both the same lease id however spelt, or (neither an id) the same trimmed text.
pub(crate) fn same_lease_tag(now: Option<&str>, then: Option<&str>) -> bool {
    match (now, then) {
        (None, None) => true,
        (Some(a), Some(b)) => match (LeaseId::parse_loose(a), LeaseId::parse_loose(b)) {
            (Some(a), Some(b)) => a == b,
            (None, None) => a.trim() == b.trim(),
            _ => false,
        },
        _ => false,
    }
}

/// Whether the owner tag read at the last moment is the owner the resource was marked for:
/// whitespace around it and the case of an address are spelling, not a new owner.
pub(crate) fn same_owner(now: Option<&str>, then: Option<&str>) -> bool {
    let norm = |o: Option<&str>| o.map(|v| v.trim().to_lowercase()).filter(|v| !v.is_empty());
    norm(now) == norm(then)
}

/// What an audit record is about: a planned item, a scope (`pass`, `project:web`), or an ARN
/// asked for by hand that has no open finding.
enum Subject<'a> {
    Item(&'a ReapCandidate),
    Scope(&'a str),
    Arn(&'a str),
}

enum Outcome {
    Gone(String),
    /// An access key made inactive, the first of its two steps (see [`super::plan::step`]).
    Deactivated(String),
    Skipped(String),
    /// Skipped, and the mark cleared so the next pass marks it afresh.
    Unmarked(String),
    Failed(String),
}

/// Why the credentials could not be shown to act in the resource's account.
#[derive(Debug, thiserror::Error)]
enum AccountCheck {
    #[error("GetCallerIdentity failed")]
    Call(#[source] aws::BoxError),
    #[error("credentials act in account {got}, not {want}")]
    Elsewhere { got: String, want: String },
}

/// Who the daemon acts as in an account, learnt when the account is verified: what it must
/// never delete of itself.
#[derive(Debug, Clone, Default)]
struct Identity {
    /// The caller's ARN (`GetCallerIdentity`).
    caller: String,
    /// The access key id it signs with, where the credentials provider gives one.
    key: Option<String>,
}

/// Why `arn` (an IAM user or an access key) must not be deleted because the daemon itself
/// runs on it: the key it signs with, or the user it is (any of that user's keys); `None`
/// otherwise (and for any other type). Users compare by account and name (whose case IAM
/// ignores), keys by id.
fn refuses_own(arn: &Arn, me: &Identity) -> Option<String> {
    let (user, key) = match arn.access_key_parts() {
        Some((user, key)) => ((arn.account(), user), Some(key)),
        None => (arn.iam_entity("user")?, None),
    };
    if key.is_some() && key == me.key.as_deref() {
        return Some("the access key ephemera itself signs with".into());
    }
    let caller = Arn::parse(&me.caller).ok()?;
    same_entity(Some(user), caller.iam_entity("user")).then(|| {
        format!(
            "{} of the IAM user ephemera itself runs as (deleting it would cut the daemon off)",
            if key.is_some() {
                "an access key"
            } else {
                "the user"
            }
        )
    })
}

/// The account the credentials act in must be the one the resource is in; who they are.
async fn verify_account(sdk: &aws_config::SdkConfig, want: &str) -> Result<Identity, AccountCheck> {
    use aws_credential_types::provider::ProvideCredentials as _;
    let got = aws_sdk_sts::Client::new(sdk)
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| AccountCheck::Call(Box::new(e)))?;
    match got.account() {
        Some(a) if a == want => {}
        other => {
            return Err(AccountCheck::Elsewhere {
                got: other.unwrap_or("unknown").to_owned(),
                want: want.to_owned(),
            });
        }
    }
    let key = match sdk.credentials_provider() {
        Some(p) => p
            .provide_credentials()
            .await
            .ok()
            .map(|c| c.access_key_id().to_owned()),
        None => None,
    };
    Ok(Identity {
        caller: got.arn().unwrap_or_default().to_owned(),
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_daemons_own_user_and_key_are_refused() {
        let arn = |s: &str| Arn::parse(s).expect("an ARN");
        let user = "arn:aws:iam::111111111111:user/ci/ephemera";
        // As moto's GetCallerIdentity names it.
        let sts_user = "arn:aws:sts::111111111111:user/ephemera";
        let role = "arn:aws:sts::111111111111:assumed-role/ephemera/session";
        let me = |caller: &str| Identity {
            caller: caller.to_owned(),
            key: Some("AKIAOWN".into()),
        };
        let cases = [
            // (resource, caller, refused)
            (
                "arn:aws:iam::111111111111:access-key/bot/AKIAOWN",
                role,
                true,
            ),
            (
                "arn:aws:iam::111111111111:access-key/bot/AKIAOTHER",
                role,
                false,
            ),
            (
                "arn:aws:iam::111111111111:access-key/ephemera/AKIAOTHER",
                user,
                true,
            ),
            (
                "arn:aws:iam::111111111111:access-key/ephemera/AKIAOTHER",
                role,
                false,
            ),
            (
                "arn:aws:iam::222222222222:access-key/ephemera/AKIAOTHER",
                user,
                false,
            ),
            (
                "arn:aws:iam::111111111111:access-key/ephemera-2/AKIAOTHER",
                user,
                false,
            ),
            ("arn:aws:iam::111111111111:user/ci/ephemera", user, true),
            ("arn:aws:iam::111111111111:user/ephemera", user, true),
            ("arn:aws:iam::111111111111:user/Ephemera", user, true),
            ("arn:aws:iam::111111111111:user/ci/ephemera", sts_user, true),
            (
                "arn:aws:iam::111111111111:access-key/ephemera/AKIAOTHER",
                sts_user,
                true,
            ),
            ("arn:aws:iam::111111111111:user/ci/ephemera", role, false),
            ("arn:aws:iam::222222222222:user/ci/ephemera", user, false),
            ("arn:aws:iam::111111111111:user/ci/bot", user, false),
            ("arn:aws:iam::111111111111:role/ephemera", user, false),
        ];
        for (resource, caller, refused) in cases {
            assert_eq!(
                refuses_own(&arn(resource), &me(caller)).is_some(),
                refused,
                "{resource} as {caller}"
            );
        }
    }

    #[test]
    fn roles_compare_by_account_and_name() {
        let own = "arn:aws:iam::111111111111:role/ephemera-reaper";
        assert!(same_role(own, own));
        assert!(same_role(
            own,
            "arn:aws:iam::111111111111:role/ops/Ephemera-Reaper"
        ));
        assert!(!same_role(
            own,
            "arn:aws:iam::222222222222:role/ephemera-reaper"
        ));
        assert!(!same_role(
            own,
            "arn:aws:iam::111111111111:role/ephemera-reaper-2"
        ));
        assert!(!same_role(
            own,
            "arn:aws:iam::111111111111:instance-profile/ephemera-reaper"
        ));
        assert!(!same_role(own, "not an arn"));
    }

    #[test]
    fn lease_tags_compare_as_ids() {
        let id = "0194e0a1-7c2d-7000-8000-00000000beef";
        let other = "0194e0a1-7c2d-7000-8000-00000000cafe";
        let table: &[(Option<&str>, Option<&str>, bool)] = &[
            (None, None, true),
            (Some(id), Some(id), true),
            (
                Some(" {0194E0A1-7C2D-7000-8000-00000000BEEF} "),
                Some(id),
                true,
            ),
            (
                Some("urn:uuid:0194e0a17c2d7000800000000000beef"),
                Some(id),
                true,
            ),
            (
                Some("urn:uuid:0194e0a1-7c2d-7000-8000-00000000beef"),
                Some(id),
                true,
            ),
            (Some("0194e0a17c2d7000800000000000beef"), Some(id), true),
            (Some(other), Some(id), false),
            (Some(id), None, false),
            (None, Some(id), false),
            (Some("build-7 "), Some("build-7"), true),
            (Some("build-7"), Some("build-8"), false),
            (Some("build-7"), Some(id), false),
        ];
        for (now, then, want) in table {
            assert_eq!(same_lease_tag(*now, *then), *want, "{now:?} vs {then:?}");
        }
    }

    #[test]
    fn owners_compare_as_addresses() {
        let table: &[(Option<&str>, Option<&str>, bool)] = &[
            (None, None, true),
            (Some("alice@example.com"), Some("alice@example.com"), true),
            (Some(" Alice@Example.com"), Some("alice@example.com"), true),
            (Some("bob@example.com"), Some("alice@example.com"), false),
            (Some("alice@example.com"), None, false),
            (None, Some("alice@example.com"), false),
            (Some(" "), None, true),
        ];
        for (now, then, want) in table {
            assert_eq!(same_owner(*now, *then), *want, "{now:?} vs {then:?}");
        }
    }
}
