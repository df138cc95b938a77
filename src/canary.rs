//! The synthetic lifecycle canary (`[canary]`): proves, in production and continuously, that a
//! task following the lease protocol is seen, flagged and cleaned up.
//!
//! Each lifecycle, in one (account, region) at a time, on the leader only:
//! 1. **acquire** a lease in the canary's own project;
//! 2. **create** an SQS queue (free while empty) through the AWS API, as a task runner would,
//!    tagged with the lease's identity tags and [`CANARY_TAG`];
//! 3. **tags**: read the queue's tags back: each identity tag is there, with its value;
//! 4. **release** the lease;
//! 5. **seen**: a pass records the queue in the store (the scheduled passes: the canary
//!    never starts one, so it proves the schedule too);
//! 6. **flagged**: a pass judges it `released`, under the canary's lease;
//! 7. **reaped** (armed for it: enforcement armed, the account reaping, `sqs:queue`
//!    deletable and the project's `released` action `reap`): the reaper deletes the queue,
//!    and AWS no longer has it; or **cleaned** (not armed for it): the canary deletes its
//!    queue itself, through the reaper's own deleter, once detection is proven.
//!
//! Each stage is timed (`ephemera_canary_stage_seconds`); the whole must end within `slo`. A
//! lifecycle that does not is broken at the stage it was waiting for: counted
//! (`ephemera_canary_failures_total{stage}`), `ephemera_canary_up` 0, logged, and told to the
//! webhooks (`canary.failed`, with the stage).
//!
//! Architecture Invariant: the canary deletes only queues it can prove are its own: named
//! `ephemera-canary-…`, carrying [`CANARY_TAG`], in the canary project. Leftovers of a
//! lifecycle cut short (a restart, a failover) are deleted by the next one in that place.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use tokio::time::Instant;

use crate::auth::{Principal, Role};
use crate::config::{CanaryConfig, CanaryTarget, Enforcement};
use crate::inventory::AwsClients;
use crate::lease::{AcquireRequest, LeaseRegistry};
use crate::live::Live;
use crate::metrics::Metrics;
use crate::model::{Action, Arn, Event, EventKind, IdentityTags, ResourceType, Verdict};
use crate::policy::Policy;
use crate::reaper::aws::Inspection;
use crate::store::{AuditFilter, Store};
use crate::webhook::Webhooks;

/// The tag that marks a canary's own resources (its value: the canary's place).
pub const CANARY_TAG: &str = "ephemera:canary";
/// The name prefix of a canary's queues.
pub const QUEUE_PREFIX: &str = "ephemera-canary-";
/// The principal the canary leases as (an operator: it may lease in any project).
pub const PRINCIPAL: &str = "ephemera-canary";
/// How often a waiting stage looks again.
const POLL: Duration = Duration::from_secs(1);

/// A lifecycle's stages, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr, strum::Display)]
#[strum(serialize_all = "kebab-case")]
pub enum Stage {
    Acquire,
    Create,
    Tags,
    Release,
    Seen,
    Flagged,
    Reaped,
    Cleaned,
}

/// Where and why a lifecycle broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    pub stage: Stage,
    pub why: String,
}

/// A lifecycle that went through: each stage and how long it took.
pub type Timings = Vec<(Stage, Duration)>;

/// The canary; cheap to clone.
#[derive(Debug, Clone)]
pub struct Canary {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: CanaryConfig,
    enforcement: Enforcement,
    tags: IdentityTags,
    policy: Live<Policy>,
    leases: LeaseRegistry,
    clients: AwsClients,
    store: Store,
    metrics: Arc<Metrics>,
    webhooks: Webhooks,
}

impl Canary {
    /// `clients` are the passes' own: the same accounts (an organization's too) and the same
    /// credentials and connection caches.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: &crate::config::Config,
        canary: CanaryConfig,
        policy: Live<Policy>,
        leases: LeaseRegistry,
        clients: AwsClients,
        store: Store,
        metrics: Arc<Metrics>,
        webhooks: Webhooks,
    ) -> Canary {
        let max_age = canary.every.as_secs() * canary.targets.len() as u64 + canary.slo.as_secs();
        for t in &canary.targets {
            metrics
                .canary_max_age
                .with_label_values(&[t.account.as_str(), t.region.as_str()])
                .set(max_age as f64);
        }
        Canary {
            inner: Arc::new(Inner {
                enforcement: config.enforcement.clone(),
                tags: config.tags.clone(),
                clients,
                config: canary,
                policy,
                leases,
                store,
                metrics,
                webhooks,
            }),
        }
    }

    /// Whether the reaper is expected to delete the canary's queue in `account`: otherwise
    /// the canary deletes it itself, after detection is proven.
    pub fn reaper_deletes(&self, account: &str) -> bool {
        let inner = &self.inner;
        let policy = inner.policy.get();
        let project = crate::model::ProjectName::parse(&inner.config.project)
            .ok()
            .and_then(|p| policy.project(&p).cloned());
        let rule = policy.rule_for(
            project.as_ref(),
            Verdict::Released,
            ResourceType::SqsQueue.as_str(),
        );
        inner.enforcement.armed
            && inner
                .enforcement
                .deletable_types
                .contains(&ResourceType::SqsQueue)
            && inner
                .clients
                .accounts()
                .iter()
                .any(|a| a.id == account && a.reaps())
            && rule.action == Action::Reap
    }

    /// The loop of the daemon: while this replica leads, a lifecycle in each target in turn,
    /// then a pause of `every`; until `stop` turns true (a lifecycle in progress is dropped:
    /// the next one cleans up after it).
    pub async fn run(
        self,
        leadership: crate::leader::Leadership,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let every = Duration::from_secs(self.inner.config.every.as_secs());
        let mut elections = leadership.changes();
        loop {
            for t in self.inner.config.targets.clone() {
                if !leadership.is_leader() {
                    break;
                }
                // A replica that stops leading drops its lifecycle: the new leader's cleans up.
                tokio::select! {
                    _ = self.once(&t) => {}
                    _ = elections.wait_for(|leads| !*leads) => break,
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    /// One lifecycle in `t`, recorded in the metrics, the log and the webhooks.
    pub async fn once(&self, t: &CanaryTarget) -> Result<Timings, Broken> {
        let inner = &self.inner;
        let labels = [t.account.as_str(), t.region.as_str()];
        let started = crate::clock::Clock::now(&crate::clock::SystemClock);
        let r = self.lifecycle(t).await;
        let ended = crate::clock::Clock::now(&crate::clock::SystemClock);
        let m = &inner.metrics;
        let (kind, mut data) = match &r {
            Ok(timings) => {
                for (stage, d) in timings {
                    let stage: &str = stage.into();
                    m.canary_stage_seconds
                        .with_label_values(&[labels[0], labels[1], stage])
                        .set(d.as_secs_f64());
                }
                m.canary_last_success
                    .with_label_values(&labels)
                    .set(ended.timestamp() as f64);
                m.canary_up.with_label_values(&labels).set(1);
                tracing::info!(target_place = %t, seconds = (ended - started).num_seconds(), "canary lifecycle went through");
                let stages: BTreeMap<String, f64> = timings
                    .iter()
                    .map(|(s, d)| (s.to_string(), d.as_secs_f64()))
                    .collect();
                (
                    EventKind::CanarySucceeded,
                    serde_json::json!({"stages": stages}),
                )
            }
            Err(b) => {
                let stage: &str = b.stage.into();
                m.canary_failures
                    .with_label_values(&[labels[0], labels[1], stage])
                    .inc();
                m.canary_up.with_label_values(&labels).set(0);
                tracing::error!(target_place = %t, stage, why = %b.why, "canary lifecycle broke");
                (
                    EventKind::CanaryFailed,
                    serde_json::json!({"stage": stage, "why": b.why}),
                )
            }
        };
        data["account"] = t.account.clone().into();
        data["region"] = t.region.clone().into();
        data["started_at"] = serde_json::json!(started);
        let event = Event::new(
            kind,
            &format!("{t}:{}", started.timestamp_millis()),
            ended,
            format!("canary/{t}"),
            data,
        );
        inner.webhooks.emit_logged(&inner.store, event).await;
        r
    }

    async fn lifecycle(&self, t: &CanaryTarget) -> Result<Timings, Broken> {
        let inner = &self.inner;
        let deadline = Instant::now() + Duration::from_secs(inner.config.slo.as_secs());
        let broken = |stage: Stage| move |why: String| Broken { stage, why };
        let sdk = inner
            .clients
            .config_for(&t.account, &t.region)
            .await
            .map_err(|e| broken(Stage::Create)(e.to_string()))?;
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        self.clean_leftovers(&sdk, &sqs, t).await;
        let mut timings = Vec::new();
        let mut clock = Instant::now();
        let mut lap = |stage: Stage, timings: &mut Timings| {
            timings.push((stage, clock.elapsed()));
            clock = Instant::now();
        };
        let who = principal();

        let lease = inner
            .leases
            .acquire(
                &who,
                AcquireRequest {
                    project: inner.config.project.clone(),
                    task: format!("canary {t}"),
                    owner: Some(PRINCIPAL.to_owned()),
                    key: None,
                    ttl: None,
                    heartbeat_interval: None,
                    labels: BTreeMap::new(),
                    regions: vec![t.region.clone()],
                },
            )
            .await
            .map_err(|e| broken(Stage::Acquire)(e.to_string()))?
            .lease;
        lap(Stage::Acquire, &mut timings);

        let mut tags = lease.identity_tags(&inner.tags);
        tags.insert(CANARY_TAG.to_owned(), t.to_string());
        let name = format!("{QUEUE_PREFIX}{}", lease.id);
        let made = async {
            let url = sqs
                .create_queue()
                .queue_name(&name)
                .set_tags(Some(tags.clone().into_iter().collect()))
                .send()
                .await
                .map_err(|e| format!("CreateQueue: {}", crate::error_chain(&e)))?
                .queue_url
                .ok_or("CreateQueue returned no URL")?;
            let arn = sqs
                .get_queue_attributes()
                .queue_url(&url)
                .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                .send()
                .await
                .map_err(|e| format!("GetQueueAttributes: {}", crate::error_chain(&e)))?
                .attributes
                .and_then(|a| {
                    a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                        .cloned()
                })
                .ok_or("GetQueueAttributes returned no QueueArn")?;
            let arn = Arn::parse(&arn).map_err(|e| format!("queue ARN `{arn}`: {e}"))?;
            Ok::<_, String>((url, arn))
        }
        .await;
        let (url, arn) = match made {
            Ok(m) => m,
            Err(why) => {
                self.abandon(&who, &lease.id.to_string(), None, &sdk).await;
                return Err(broken(Stage::Create)(why));
            }
        };
        lap(Stage::Create, &mut timings);

        let r = self
            .after_create(
                t,
                &sdk,
                &sqs,
                &who,
                &lease,
                &url,
                &arn,
                &tags,
                deadline,
                &mut timings,
                &mut lap,
            )
            .await;
        if r.is_err() {
            self.abandon(&who, &lease.id.to_string(), Some(&arn), &sdk)
                .await;
        }
        r.map(|()| timings)
    }

    /// Stages 3 to 7, once the queue exists.
    #[allow(clippy::too_many_arguments)]
    async fn after_create(
        &self,
        t: &CanaryTarget,
        sdk: &SdkConfig,
        sqs: &aws_sdk_sqs::Client,
        who: &Principal,
        lease: &crate::model::Lease,
        url: &str,
        arn: &Arn,
        tags: &BTreeMap<String, String>,
        deadline: Instant,
        timings: &mut Timings,
        lap: &mut impl FnMut(Stage, &mut Timings),
    ) -> Result<(), Broken> {
        let inner = &self.inner;
        let broken = |stage: Stage| move |why: String| Broken { stage, why };
        let got = sqs
            .list_queue_tags()
            .queue_url(url)
            .send()
            .await
            .map_err(|e| {
                broken(Stage::Tags)(format!("ListQueueTags: {}", crate::error_chain(&e)))
            })?;
        let got = got.tags.unwrap_or_default();
        for (k, v) in tags {
            if got.get(k) != Some(v) {
                return Err(broken(Stage::Tags)(format!(
                    "tag `{k}` not applied: the queue has {:?}",
                    got.get(k)
                )));
            }
        }
        lap(Stage::Tags, timings);

        inner
            .leases
            .release(who, &lease.id.to_string())
            .await
            .map_err(|e| broken(Stage::Release)(e.to_string()))?;
        lap(Stage::Release, timings);

        let mut seen = false;
        loop {
            let stage = if seen { Stage::Flagged } else { Stage::Seen };
            if let Some(r) = self
                .stored(t, arn)
                .await
                .map_err(|e| broken(stage)(crate::error_chain(&e)))?
            {
                if !seen {
                    seen = true;
                    lap(Stage::Seen, timings);
                }
                let ours = r
                    .lease_id
                    .as_deref()
                    .and_then(crate::model::LeaseId::parse_loose)
                    == Some(lease.id);
                if r.verdict == Verdict::Released && ours {
                    lap(Stage::Flagged, timings);
                    break;
                }
            }
            if Instant::now() >= deadline {
                return Err(broken(stage)(if seen {
                    "seen, but never judged released under the canary's lease within the SLO".into()
                } else {
                    "never seen by a pass within the SLO".into()
                }));
            }
            tokio::time::sleep(POLL).await;
        }

        let stage = if self.reaper_deletes(&t.account) {
            Stage::Reaped
        } else {
            // Detection is proven: the canary cleans up after itself, with the reaper's own
            // deleter (what an armed reaper would call).
            crate::reaper::aws::delete(sdk, arn)
                .await
                .map_err(|e| broken(Stage::Cleaned)(crate::error_chain(&e)))?;
            Stage::Cleaned
        };
        loop {
            match crate::reaper::aws::inspect(sdk, arn).await {
                Ok(Inspection::Gone) => break,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %crate::error_chain(&e), "canary: cannot look at its queue")
                }
            }
            if Instant::now() >= deadline {
                return Err(broken(stage)(match stage {
                    Stage::Reaped => "never deleted by the reaper within the SLO".into(),
                    _ => "still there after the canary deleted it".into(),
                }));
            }
            tokio::time::sleep(POLL).await;
        }
        lap(stage, timings);
        Ok(())
    }

    /// The store's record of the canary's queue `arn` (compared as parsed ARNs).
    async fn stored(
        &self,
        t: &CanaryTarget,
        arn: &Arn,
    ) -> Result<Option<crate::resource::StoredResource>, crate::store::StoreError> {
        let (items, _) = self
            .inner
            .store
            .list_resources(AuditFilter {
                project: Some(self.inner.config.project.clone()),
                account: Some(t.account.clone()),
                region: Some(t.region.clone()),
                resource_type: Some(ResourceType::SqsQueue.as_str().to_owned()),
                include_closed: true,
                limit: 1000,
                ..AuditFilter::default()
            })
            .await?;
        Ok(items.into_iter().find(|r| &r.arn == arn))
    }

    /// After a broken lifecycle: the lease released and the queue deleted (each if there),
    /// so nothing of the canary's outlives it. Best effort: the next lifecycle's clean-up and
    /// the lease's own end catch what this misses.
    async fn abandon(&self, who: &Principal, lease: &str, arn: Option<&Arn>, sdk: &SdkConfig) {
        // An already released lease answers `Ended`: nothing to say.
        if let Err(e) = self.inner.leases.release(who, lease).await
            && !matches!(e, crate::lease::LeaseError::Ended(_))
        {
            tracing::debug!(error = %e, "canary: lease not released after a broken lifecycle");
        }
        if let Some(arn) = arn
            && let Err(e) = crate::reaper::aws::delete(sdk, arn).await
        {
            tracing::warn!(error = %crate::error_chain(&e), %arn, "canary: cannot delete its queue after a broken lifecycle");
        }
    }

    /// Deletes the canary queues left in `t` by lifecycles cut short: named with the prefix
    /// and tagged [`CANARY_TAG`] for this place (both: a queue merely named alike is not
    /// ours).
    async fn clean_leftovers(&self, sdk: &SdkConfig, sqs: &aws_sdk_sqs::Client, t: &CanaryTarget) {
        let urls = match sqs
            .list_queues()
            .queue_name_prefix(QUEUE_PREFIX)
            .send()
            .await
        {
            Ok(out) => out.queue_urls.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(error = %crate::error_chain(&e), "canary: cannot list its leftovers");
                return;
            }
        };
        for url in urls {
            let Ok(tags) = sqs.list_queue_tags().queue_url(&url).send().await else {
                continue;
            };
            if tags
                .tags()
                .and_then(|m| m.get(CANARY_TAG))
                .map(String::as_str)
                != Some(t.to_string().as_str())
            {
                continue;
            }
            let Some(name) = url.rsplit('/').next() else {
                continue;
            };
            let Ok(arn) = Arn::parse(&format!("arn:aws:sqs:{}:{}:{name}", t.region, t.account))
            else {
                continue;
            };
            match crate::reaper::aws::delete(sdk, &arn).await {
                Ok(_) => tracing::info!(%arn, "canary: deleted a leftover of an earlier lifecycle"),
                Err(e) => {
                    tracing::warn!(error = %crate::error_chain(&e), %arn, "canary: cannot delete a leftover")
                }
            }
        }
    }
}

/// The operator the canary leases as.
fn principal() -> Principal {
    Principal {
        name: PRINCIPAL.into(),
        role: Role::Operator,
        projects: Default::default(),
        tokens: Vec::new(),
        oidc: None,
        owner_claim: None,
        default_owner: None,
    }
}
