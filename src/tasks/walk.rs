//! The walk of one (account, region) within a pass: pages from inventory are evaluated as they
//! arrive and handed in batches, through a bounded channel, to a persister task that writes
//! them on the store's thread while the walk fetches the next pages.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::Tasks;
use crate::inventory::sweep::TypeSweep;
use crate::inventory::{self, RateLimiter};
use crate::model::{Arn, IdentityTags, Lease, LeaseId, ResourceType, Source, Verdict, WalkOutcome};
use crate::policy::{Place, Policy, Reason, evaluate};
use crate::resource::{Observed, PageChanges, Record, SweepRecord, TypeSweepRecord, WalkRecord};
use crate::store::StoreError;

/// Records per store transaction while a walk streams (ten pages of 100): commits, not SQL,
/// dominate a page-sized write.
const PERSIST_BATCH: usize = 1_000;

/// Why a page could not be handed over: the persister stopped (its own error says why).
#[derive(Debug, thiserror::Error)]
#[error("the store's persister stopped")]
struct PersisterStopped;

/// One page of a walk, evaluated at `now`: the records the store persists. `ous` are the
/// OUs above the walk's account that projects bind themselves to. Pure; the scan and the
/// benchmarks share it.
pub fn evaluate_page(
    page: Vec<Observed>,
    leases: &HashMap<LeaseId, Lease>,
    policy: &Policy,
    keys: &IdentityTags,
    ous: &[String],
    now: DateTime<Utc>,
) -> Vec<Record> {
    page.into_iter()
        .map(|o| {
            let place = Place {
                account: &o.account,
                ous,
                resource_type: &o.resource_type,
                image: o.image.as_ref(),
            };
            let e = evaluate(
                o.arn.as_str(),
                &o.tags,
                |id| leases.get(&id),
                policy,
                keys,
                &place,
                now,
            );
            // Found by a service's own list call with no tags at all: never tagged (the
            // tagging API lists every resource that ever had a tag).
            let reason = if e.reason == Reason::NoTags && o.source != Source::Tagging {
                Reason::NeverTagged
            } else {
                e.reason
            };
            // The image's id in the words of the finding; and when a lease verdict won over
            // the image, the reason still says the image is not approved, so both are seen.
            let reason = match (&o.image, e.unapproved_image) {
                (Some(i), true) if e.verdict == Verdict::UnapprovedImage => {
                    format!("image {} is not in the approved catalog", i.id)
                }
                (Some(i), true) if e.verdict.is_finding() => {
                    format!("{reason}; image {} is not approved either", i.id)
                }
                _ => reason.to_string(),
            };
            Record {
                verdict: e.verdict,
                reason,
                project: e.project.cloned(),
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

/// The persister's task: the findings opened and updated, or why a batch was not written.
type Persister = tokio::task::JoinHandle<Result<(u64, u64), String>>;

/// The task that writes a walk's batches as they arrive, and the channel to hand them over.
/// One batch (three on PostgreSQL: [`crate::store::Store::pages_in_flight`]) may be persisting
/// and one waiting while the walk fetches and evaluates the next pages; another waits for
/// room, so a slow store slows the walk, not memory. The task ends with the findings opened
/// and updated once the sender is dropped and every batch is written, or with the first
/// batch's error.
///
/// `scope`: whether the store holds nothing of the walk's scope yet
/// ([`crate::store::Store::scope_is_new`]), asked once, before the first page is written.
fn persister(
    store: crate::store::Store,
    clock: Arc<dyn crate::clock::Clock>,
    run_id: String,
    scope: NewScope,
) -> (tokio::sync::mpsc::Sender<Vec<Record>>, Persister) {
    let in_flight = store.pages_in_flight();
    let known = Arc::new(tokio::sync::OnceCell::new_with(match &scope {
        NewScope::Known(new) => Some(*new),
        NewScope::Ask { .. } => None,
    }));
    let scope = Arc::new(scope);
    writing_pages(in_flight, move |records| {
        let (store, at, run_id) = (store.clone(), clock.now(), run_id.clone());
        let (known, scope) = (known.clone(), scope.clone());
        async move {
            // The pages in flight wait for the first one's answer: asked after another page
            // of the walk is in, it would say no.
            let new_scope = *known
                .get_or_init(|| async {
                    let NewScope::Ask { account, region } = scope.as_ref() else {
                        return false;
                    };
                    // An error only costs the faster write.
                    store
                        .scope_is_new(account, region)
                        .await
                        .unwrap_or_else(|e| {
                            tracing::debug!(error = %crate::error_chain(&e), "cannot tell whether the scope is new");
                            false
                        })
                })
                .await;
            store.persist_page_as(run_id, at, records, new_scope).await
        }
    })
}

/// Whether a walk's scope is new to the store ([`persister`]).
#[derive(Clone)]
enum NewScope {
    /// To be asked when the first page is written: a walk with no page (most regions of an
    /// organization's accounts) asks nothing.
    Ask { account: String, region: String },
    /// Known (tests).
    #[cfg_attr(not(test), allow(dead_code))]
    Known(bool),
}

/// [`persister`]'s task, with `write` for a batch's write (started when the batch is taken)
/// and at most `in_flight` of them running at once.
fn writing_pages<W, F>(
    in_flight: usize,
    write: W,
) -> (tokio::sync::mpsc::Sender<Vec<Record>>, Persister)
where
    W: Fn(Vec<Record>) -> F + Send + 'static,
    F: Future<Output = Result<PageChanges, StoreError>> + Send + 'static,
{
    let (batches, mut received) = tokio::sync::mpsc::channel::<Vec<Record>>(1);
    let task = tokio::spawn(async move {
        let (mut opened, mut updated) = (0, 0);
        let mut writing = tokio::task::JoinSet::new();
        let mut done = |r: Result<Result<PageChanges, StoreError>, tokio::task::JoinError>| {
            let changes = r
                .map_err(|e| format!("a page's write ended: {e}"))?
                .map_err(|e| crate::error_chain(&e))?;
            opened += changes.opened;
            updated += changes.updated;
            Ok::<_, String>(())
        };
        while let Some(records) = received.recv().await {
            if writing.len() >= in_flight
                && let Some(r) = writing.join_next().await
            {
                done(r)?;
            }
            writing.spawn(write(records));
        }
        while let Some(r) = writing.join_next().await {
            done(r)?;
        }
        Ok((opened, updated))
    });
    (batches, task)
}

impl Tasks {
    pub(super) async fn walk_one(
        &self,
        run_id: String,
        account: String,
        region: String,
        leases: Arc<HashMap<LeaseId, Lease>>,
        sweep_due: bool,
        home: bool,
    ) -> WalkTotals {
        let inner = &self.inner;
        let started = inner.clock.now();
        let limiter = RateLimiter::new(inner.config.aws.calls_per_second);
        let (batches, persister) = persister(
            inner.store.clone(),
            inner.clock.clone(),
            run_id.clone(),
            NewScope::Ask {
                account: account.clone(),
                region: region.clone(),
            },
        );
        let mut totals = WalkTotals::default();
        let mut pending = Vec::<Record>::with_capacity(PERSIST_BATCH);
        let ous = inner.clients.ous_of(&account);
        // One version of the rules for the whole walk, whatever a reload does meanwhile.
        let policy = inner.policy.get();
        let evaluate_now = |page: Vec<Observed>| {
            evaluate_page(
                page,
                &leases,
                &policy,
                &inner.config.tags,
                &ous,
                inner.clock.now(),
            )
        };
        // What the tagging walk listed, by identity, for the sweep to tell what it never would.
        let mut listed: HashSet<(String, String)> = HashSet::new();
        // Credentials are listed every pass in the account's first region, a full sweep or
        // not: a key whose lease ended must not wait hours for the next sweep to be seen.
        let discovery = &inner.config.discovery;
        let credentials: Vec<ResourceType> = discovery
            .types
            .iter()
            .copied()
            .filter(|t| home && ResourceType::CREDENTIALS.contains(t))
            .collect();
        let sweep_types: Vec<ResourceType> = if sweep_due {
            discovery
                .types
                .iter()
                .copied()
                .filter(|t| home || !t.is_global())
                .collect()
        } else {
            credentials.clone()
        };
        let span = tracing::info_span!("walk", account = %account, region = %region);
        let result = tracing::Instrument::instrument(
            inventory::walk_judging_images(
                &inner.clients,
                &account,
                &region,
                &limiter,
                &inner.metrics,
                policy.images().is_on(),
                |page| {
                    if sweep_due {
                        listed.extend(page.iter().map(|o| identity(&o.arn)));
                    } else if !credentials.is_empty() {
                        listed.extend(
                            page.iter()
                                .filter(|o| o.arn.service() == "iam")
                                .map(|o| identity(&o.arn)),
                        );
                    }
                    let records = evaluate_now(page);
                    totals.count(&records);
                    pending.extend(records);
                    let full =
                        (pending.len() >= PERSIST_BATCH).then(|| std::mem::take(&mut pending));
                    let batches = batches.clone();
                    async move {
                        if let Some(records) = full {
                            batches.send(records).await.map_err(|_| PersisterStopped)?;
                        }
                        Ok(())
                    }
                },
            ),
            span.clone(),
        )
        .await;
        // A sweep compares with a complete tagging walk only: against a partial one, tagged
        // resources it missed would be taken for never tagged.
        let mut sweep = None;
        // Failing to read the images of what the sweep found makes the walk incomplete, as it
        // would for what the tagging walk listed.
        let mut images_failed = None;
        if !sweep_types.is_empty() && result.error.is_none() {
            let (record, mut found) = tracing::Instrument::instrument(
                self.sweep_one(&account, &region, &sweep_types, !sweep_due, &listed),
                span.clone(),
            )
            .await;
            if policy.images().is_on()
                && let Err(e) = self
                    .sweep_images(&account, &region, &limiter, &mut found)
                    .await
            {
                images_failed = Some(e);
            }
            let records = evaluate_now(found);
            totals.count(&records);
            totals.swept = records.len() as u64;
            pending.extend(records);
            sweep = Some(record);
        }
        // What the walk saw is persisted either way; a failure here makes the walk incomplete.
        if !pending.is_empty() {
            // A refused send means the persister stopped; its own result says why.
            let _ = batches.send(pending).await;
        }
        drop(batches);
        // The walk's error with its sources, or the persister's when the walk stopped only
        // because the persister had.
        let mut reason = result
            .error
            .as_ref()
            .map(|e| crate::error_chain(e))
            .or(images_failed);
        let persisted = match persister.await {
            Ok(r) => r,
            Err(e) => Err(format!("persist task failed: {e}")),
        };
        match persisted {
            Ok((opened, updated)) => {
                totals.opened = opened;
                totals.updated = updated;
            }
            Err(e) => {
                let stopped = matches!(
                    &result.error,
                    Some(inventory::WalkError::Persist { source, .. })
                        if source.is::<PersisterStopped>()
                );
                if reason.is_none() || stopped {
                    reason = Some(format!("cannot persist pages: {e}"));
                }
            }
        }
        let record = WalkRecord {
            account: account.clone(),
            region: region.clone(),
            started_at: started,
            ended_at: inner.clock.now(),
            outcome: if reason.is_none() {
                WalkOutcome::Complete
            } else {
                WalkOutcome::Incomplete
            },
            reason,
            pages: result.pages,
            resources: result.resources,
            sweep,
        };
        inner
            .metrics
            .walks
            .with_label_values(&[record.outcome.as_str()])
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

    /// Sets the images of the instances and launch templates a sweep found (moto's tagging
    /// API never lists launch templates: there, only the sweep finds them).
    async fn sweep_images(
        &self,
        account: &str,
        region: &str,
        limiter: &RateLimiter,
        found: &mut [Observed],
    ) -> Result<(), String> {
        if !found.iter().any(|o| {
            matches!(
                o.resource_type.as_str(),
                "ec2:instance" | "ec2:launch-template"
            )
        }) {
            return Ok(());
        }
        let inner = &self.inner;
        inventory::images::attach_in(
            &inner.clients,
            account,
            region,
            limiter,
            &inner.metrics,
            found,
        )
        .await
        .map_err(|e| format!("images of swept resources: {}", crate::error_chain(&e)))
    }

    /// Sweeps the discovery types of (account, region): what the tagging walk did not list
    /// (`listed`) comes back as observed resources of source `sweep`. Global types (IAM) only
    /// in the account's `home` region (its first), so each entity is one resource row.
    async fn sweep_one(
        &self,
        account: &str,
        region: &str,
        types: &[ResourceType],
        credentials_only: bool,
        listed: &HashSet<(String, String)>,
    ) -> (SweepRecord, Vec<Observed>) {
        let inner = &self.inner;
        let discovery = &inner.config.discovery;
        let mut record = SweepRecord {
            started_at: inner.clock.now(),
            types: Vec::new(),
            credentials_only,
        };
        let mut observed = Vec::new();
        let explorer = discovery
            .resource_explorer
            .as_ref()
            .filter(|re| re.covers(account));
        // Credentials are listed by IAM itself even where sweeps are searches: an index's
        // results carry no IAM tags, and the lease verdict needs them.
        let (direct, searched): (Vec<ResourceType>, Vec<ResourceType>) = match explorer {
            None => (types.to_vec(), Vec::new()),
            Some(_) => types
                .iter()
                .partition(|t| ResourceType::CREDENTIALS.contains(t)),
        };
        let mut swept = Vec::new();
        if !direct.is_empty() {
            swept.extend(match inner.clients.config_for(account, region).await {
                Err(e) => TypeSweep::all_failed(&direct, "sweep", &crate::error_chain(&e)),
                Ok(conf) => {
                    inventory::sweep::sweep(
                        &conf,
                        account,
                        region,
                        &direct,
                        discovery.calls_per_second,
                        &inner.metrics,
                    )
                    .await
                }
            });
        }
        if let Some(re) = explorer.filter(|_| !searched.is_empty()) {
            // The index's account, not the walked one, is asked (through its role).
            swept.extend(
                match inner.clients.config_for(&re.account, &re.region).await {
                    Err(e) => TypeSweep::all_failed(&searched, "Search", &crate::error_chain(&e)),
                    Ok(index) => {
                        inventory::explorer::sweep(
                            &index,
                            re.view_arn.as_deref(),
                            account,
                            region,
                            &searched,
                            &inner.metrics,
                        )
                        .await
                    }
                },
            );
        }
        swept.sort_by_key(|s| s.resource_type);
        for t in swept {
            let outcome = match &t.result {
                Ok(_) => WalkOutcome::Complete,
                Err(_) => WalkOutcome::Incomplete,
            };
            inner
                .metrics
                .sweeps
                .with_label_values(&[t.resource_type.as_str(), outcome.as_str()])
                .inc();
            let mut r = TypeSweepRecord {
                resource_type: t.resource_type,
                outcome,
                reason: None,
                listed: 0,
                not_in_tagging: 0,
            };
            match t.result {
                Err(e) => {
                    let reason = crate::error_chain(&e);
                    tracing::warn!(resource_type = %t.resource_type, %reason, "sweep incomplete: nothing of this type is resolved or deleted here this pass");
                    r.reason = Some(reason);
                }
                Ok(found) => {
                    r.listed = found.len() as u64;
                    // Never tagged: missing from the tagging walk *and* without tags where the
                    // list call reads them (IAM's credentials, listed every pass, mostly carry some).
                    let mut untagged = 0u64;
                    for f in found {
                        if listed.contains(&identity(&f.arn)) {
                            continue;
                        }
                        r.not_in_tagging += 1;
                        untagged += u64::from(f.tags.is_empty());
                        observed.push(Observed {
                            account: account.to_owned(),
                            region: region.to_owned(),
                            resource_type: f.arn.resource_type(),
                            arn: f.arn,
                            tags: f.tags,
                            state: f.state,
                            source: if searched.contains(&t.resource_type) {
                                Source::ResourceExplorer
                            } else {
                                Source::Sweep
                            },
                            created_at: f.created_at,
                            image: None,
                        });
                    }
                    inner
                        .metrics
                        .never_tagged_found
                        .with_label_values(&[t.resource_type.as_str()])
                        .inc_by(untagged);
                }
            }
            record.types.push(r);
        }
        (record, observed)
    }
}

/// A resource's identity within one (account, region): its service and resource part. Not the
/// ARN's text, which may spell the partition or account differently (snapshots and images are
/// listed without an account by some calls).
fn identity(arn: &Arn) -> (String, String) {
    (arn.service().to_owned(), arn.resource().to_owned())
}

#[derive(Debug, Default)]
pub(super) struct WalkTotals {
    pub record: WalkRecord,
    pub opened: u64,
    pub updated: u64,
    pub resolved: u64,
    pub gone: u64,
    /// Live resources seen, by verdict; those of region-less ARNs (S3 buckets, which an
    /// emulator lists in every region's walk) apart, for the pass to count each once.
    pub verdicts: BTreeMap<Verdict, u64>,
    pub regionless: Vec<(String, Verdict)>,
    /// Resources only the sweep found.
    pub swept: u64,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::model::TaskName;
    use crate::store::Store;
    use crate::store::inventory_tests::{record, t0};

    /// The persister writes every batch handed to it and sums the findings they opened, on
    /// both engines, a new scope's pages as any.
    #[tokio::test]
    async fn the_persister_writes_every_batch_and_sums_what_they_opened() {
        let ask = NewScope::Ask {
            account: "123456789012".into(),
            region: "us-east-1".into(),
        };
        for scope in [NewScope::Known(false), NewScope::Known(true), ask] {
            let dir = tempfile::tempdir().expect("temp dir");
            for (engine, store) in Store::open_both_for_test(dir.path()).await {
                persister_writes(engine, store, scope.clone()).await;
            }
        }
    }

    async fn persister_writes(engine: &str, store: Store, scope: NewScope) {
        {
            store
                .start_run("r1".into(), TaskName::Scan, "cron".into(), t0())
                .await
                .expect("run");
            let clock = Arc::new(ManualClock::new(t0()));
            let (batches, task) = persister(store.clone(), clock, "r1".into(), scope);
            for b in 0..5 {
                let batch = (0..1000)
                    .map(|i| {
                        let verdict = if i % 2 == 0 {
                            Verdict::Untagged
                        } else {
                            Verdict::Leased
                        };
                        record(&format!("i-{b}-{i:04}"), "us-east-1", verdict, None)
                    })
                    .collect();
                batches.send(batch).await.expect("the persister takes it");
            }
            drop(batches);
            let written = task.await.expect("joins").expect("every batch written");
            assert_eq!(written, (2500, 0), "{engine}");
            let totals = store.live_totals(t0()).await.expect("totals");
            let live: u64 = totals.by_source.iter().map(|(_, n)| n).sum();
            assert_eq!(live, 5000, "{engine}: every resource of every batch");
        }
    }

    /// A pass writes three pages of a walk at once on PostgreSQL, one on SQLite: each page's
    /// write is held before it reaches the store until that many are held, then no other
    /// starts while they are (the runtime runs every other task meanwhile), and once let go
    /// every page is written.
    #[tokio::test]
    async fn a_walk_writes_as_many_pages_at_once_as_its_store_takes() {
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        let dir = tempfile::tempdir().expect("temp dir");
        for (engine, store) in Store::open_both_for_test(dir.path()).await {
            let at_once = if engine == "postgres" { 3 } else { 1 };
            assert_eq!(store.pages_in_flight(), at_once, "{engine}");
            store
                .start_run("r1".into(), TaskName::Scan, "cron".into(), t0())
                .await
                .expect("run");
            let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
            let gate = Arc::new(tokio::sync::Semaphore::new(0));
            let (batches, task) = writing_pages(store.pages_in_flight(), {
                let (store, running, most, gate) =
                    (store.clone(), running.clone(), most.clone(), gate.clone());
                move |records| {
                    let (store, running, most, gate) =
                        (store.clone(), running.clone(), most.clone(), gate.clone());
                    async move {
                        most.fetch_max(running.fetch_add(1, SeqCst) + 1, SeqCst);
                        gate.acquire().await.expect("open").forget();
                        let written = store.persist_page("r1".into(), t0(), records).await;
                        running.fetch_sub(1, SeqCst);
                        written
                    }
                }
            });
            let pages = 6;
            let sender = tokio::spawn(async move {
                for p in 0..pages {
                    let page = (0..100)
                        .map(|i| {
                            record(
                                &format!("i-{p}-{i:03}"),
                                "us-east-1",
                                Verdict::Untagged,
                                None,
                            )
                        })
                        .collect();
                    batches.send(page).await.expect("the persister takes it");
                }
            });
            let mut turns = 0;
            while running.load(SeqCst) < at_once {
                turns += 1;
                assert!(turns < 100_000, "{engine}: never {at_once} pages at once");
                tokio::task::yield_now().await;
            }
            for _ in 0..1_000 {
                tokio::task::yield_now().await;
            }
            assert_eq!(
                most.load(SeqCst),
                at_once,
                "{engine}: no more pages at once"
            );
            gate.add_permits(pages);
            sender.await.expect("every page handed over");
            let written = task.await.expect("joins").expect("every page written");
            assert_eq!(written, (600, 0), "{engine}");
            assert_eq!(most.load(SeqCst), at_once, "{engine}");
        }
    }
}
