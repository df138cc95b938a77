//! The lease registry: acquire, renew, heartbeat, release (the state math is
//! [`crate::model::Lease`]'s).
//!
//! Architecture Invariant: [`LeaseRegistry`] is
//! the only writer of leases, and every read-check-write it does is atomic in the store (one
//! transaction; on PostgreSQL a change of one lease is written only over the row version it
//! was decided on), so two callers can never both take the last slot of a quota or both
//! release the same lease.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tracing::{Instrument, info, info_span};

use crate::auth::Principal;
use crate::clock::Clock;
use crate::live::Live;
use crate::metrics::Metrics;
use crate::model::{
    Event, EventKind, HumanDuration, IdentityTags, Lease, LeaseEnded, LeaseEvent, LeaseId,
    LeaseState, ProjectName, TimelineEntry, check_tag_value,
};
use crate::policy::{AcquireAsk, Caller, Denial, Policy};
use crate::store::{LeaseFilter, Page, Quota, Store, StoreError};
use crate::webhook::Webhooks;

/// An acquire request, as the API and CLI send it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"project": "web", "task": "build-42", "owner": "alice@example.com", "ttl": "2h", "heartbeat_interval": "10m", "regions": ["us-east-1"], "key": "org/repo#pr-123"}))]
pub struct AcquireRequest {
    pub project: String,
    pub task: String,
    /// Who to mail about it. May be left out by a principal signed in with an ID token whose
    /// `owner_claim` names one (a GitHub `actor`, a GitLab `user_login`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Idempotency key: while a lease of the project acquired with this key is active, the
    /// same key returns that lease (same id, same tags) instead of a new one, so a retry or
    /// a re-run never duplicates. Also read from an `Idempotency-Key` header.
    #[serde(default)]
    pub key: Option<String>,
    /// Defaults to the project's default TTL.
    #[serde(default)]
    pub ttl: Option<String>,
    /// When set, the lease expires if no heartbeat arrives within this interval.
    #[serde(default)]
    pub heartbeat_interval: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Regions the task will create resources in (checked against the project's policy).
    #[serde(default)]
    pub regions: Vec<String>,
}

/// A lease taken, or the active one its key named.
#[derive(Debug, Clone)]
pub struct Acquired {
    pub lease: Lease,
    /// The key named an active lease: this is that one, nothing new was made.
    pub existing: bool,
}

/// Why a lease operation failed. Each variant has a stable code (see [`LeaseError::code`]).
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error(transparent)]
    Denied(#[from] Denial),
    #[error("no lease {0}")]
    NotFound(String),
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Ended(#[from] LeaseEnded),
    /// The key names an active lease of another task or owner.
    #[error("key `{key}` belongs to active lease {lease} of task `{task}`, owner `{owner}`")]
    KeyConflict {
        key: String,
        lease: LeaseId,
        task: String,
        owner: String,
    },
    #[error("the lease store failed")]
    Store(#[from] StoreError),
}

impl LeaseError {
    pub fn code(&self) -> &'static str {
        match self {
            LeaseError::Invalid { .. } => "invalid-request",
            LeaseError::Denied(d) => d.code(),
            LeaseError::NotFound(_) => "lease-not-found",
            LeaseError::Forbidden(_) => "forbidden",
            LeaseError::Ended(LeaseEnded::Expired(_)) => "lease-expired",
            LeaseError::Ended(LeaseEnded::Released(_)) => "lease-released",
            LeaseError::KeyConflict { .. } => "idempotency-key-conflict",
            LeaseError::Store(e) if e.is_unavailable() => "store-unavailable",
            LeaseError::Store(_) => "internal",
        }
    }
}

fn invalid(field: &'static str, message: impl Into<String>) -> LeaseError {
    LeaseError::Invalid {
        field,
        message: message.into(),
    }
}

fn parse_duration(
    field: &'static str,
    v: &Option<String>,
) -> Result<Option<HumanDuration>, LeaseError> {
    v.as_deref()
        .map(|s| HumanDuration::parse(s).map_err(|m| invalid(field, format!("{field}: {m}"))))
        .transpose()
}

/// Checks the parts of a request that do not depend on policy.
fn validate(
    req: &AcquireRequest,
) -> Result<(ProjectName, Option<HumanDuration>, Option<HumanDuration>), LeaseError> {
    let project = ProjectName::parse(&req.project)
        .map_err(|m| invalid("project", format!("project: {m}")))?;
    check_tag_value("task", &req.task).map_err(|m| invalid("task", m))?;
    match &req.owner {
        Some(owner) => check_tag_value("owner", owner).map_err(|m| invalid("owner", m))?,
        None => {
            return Err(invalid(
                "owner",
                "owner: missing (only a principal signed in with an ID token that carries its owner claim may leave it out)",
            ));
        }
    }
    let ttl = parse_duration("ttl", &req.ttl)?;
    let hb = parse_duration("heartbeat_interval", &req.heartbeat_interval)?;
    if req.labels.len() > 32 {
        return Err(invalid("labels", "at most 32 labels"));
    }
    for (k, v) in &req.labels {
        if k.is_empty() || k.len() > 128 || v.len() > 256 {
            return Err(invalid(
                "labels",
                format!("label `{k}`: keys are 1 to 128 bytes, values up to 256"),
            ));
        }
    }
    if req.regions.len() > 32 {
        return Err(invalid("regions", "at most 32 regions"));
    }
    if let Some(k) = &req.key
        && (k.trim().is_empty() || k.len() > 200 || k.chars().any(char::is_control))
    {
        return Err(invalid("key", "key: 1 to 200 bytes, no control characters"));
    }
    Ok((project, ttl, hb))
}

/// The lease service used by the API (and through it, the CLI).
#[derive(Debug, Clone)]
pub struct LeaseRegistry {
    store: Store,
    policy: Live<Policy>,
    tags: IdentityTags,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    gauges: Arc<GaugeState>,
    /// Where acquires, releases and revivals are told (nowhere without `[[webhooks]]`).
    webhooks: Webhooks,
}

/// How fresh the lease gauges are, so that scrapes share their counting (see
/// [`LeaseRegistry::fresh_gauges`]).
#[derive(Debug, Default)]
struct GaugeState {
    /// Lease operations answered so far: a refresh that began at a lower count may miss one.
    ops: std::sync::atomic::AtomicU64,
    last: tokio::sync::Mutex<Option<Refreshed>>,
}

#[derive(Debug, Clone, Copy)]
pub struct Refreshed {
    began: std::time::Instant,
    /// The lease clock when it began (states follow that clock).
    at: DateTime<Utc>,
    ops: u64,
}

/// Held while `/metrics` renders, so no refresh resets the gauges under it.
pub type GaugeLock<'a> = tokio::sync::MutexGuard<'a, Option<Refreshed>>;

/// Lease gauges computed within this, with no lease operation since, are served as they are:
/// expiry follows the clock, so they are at most this stale.
const GAUGES_FRESH_FOR: std::time::Duration = std::time::Duration::from_secs(1);

impl LeaseRegistry {
    pub fn new(
        store: Store,
        policy: Live<Policy>,
        tags: IdentityTags,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
    ) -> Self {
        set_quota_gauges(&metrics, &policy.get());
        LeaseRegistry {
            store,
            policy,
            tags,
            clock,
            metrics,
            gauges: Arc::default(),
            webhooks: Webhooks::default(),
        }
    }

    /// Tells `webhooks` of every acquire, release and revival.
    pub fn with_webhooks(mut self, webhooks: Webhooks) -> Self {
        self.webhooks = webhooks;
        self
    }

    /// Queues a webhook event about `lease` (after its change committed: a crash in between
    /// loses the event, never the change).
    async fn tell(&self, kind: EventKind, occurrence: &str, at: DateTime<Utc>, lease: &Lease) {
        if self.webhooks.is_empty() {
            return;
        }
        let data = serde_json::json!({
            "lease_id": lease.id.to_string(), "project": lease.project.as_str(),
            "task": lease.task, "owner": lease.owner, "principal": lease.principal,
            "created_at": lease.created_at, "expires_at": lease.expires_at,
            "released_at": lease.released_at, "regions": lease.regions, "labels": lease.labels,
        });
        let event = Event::new(kind, occurrence, at, format!("lease/{}", lease.id), data);
        self.webhooks.emit_logged(&self.store, event).await;
    }

    pub fn tags(&self) -> &IdentityTags {
        &self.tags
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    fn count(&self, op: &'static str, r: &Result<Lease, LeaseError>) {
        self.gauges
            .ops
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let outcome = match r {
            Ok(_) => "ok",
            Err(e) => e.code(),
        };
        self.metrics
            .lease_operations
            .with_label_values(&[op, outcome])
            .inc();
    }

    /// Takes a lease; with a key that names an active lease of the project, returns that one
    /// (`existing`).
    pub async fn acquire(
        &self,
        who: &Principal,
        req: AcquireRequest,
    ) -> Result<Acquired, LeaseError> {
        let id = LeaseId::generate();
        let span = info_span!("lease", op = "acquire", lease_id = %id, project = %req.project, principal = %who.name);
        let r = self
            .acquire_inner(who, req, id)
            .instrument(span.clone())
            .await;
        let (r, existing) = match r {
            Ok(a) => (Ok(a.lease), a.existing),
            Err(e) => (Err(e), false),
        };
        self.count("acquire", &r);
        if let Ok(l) = &r
            && !existing
        {
            self.tell(EventKind::LeaseAcquired, &l.id.to_string(), l.created_at, l)
                .await;
        }
        span.in_scope(|| {
            log_outcome(
                if existing {
                    "acquire (existing, by key)"
                } else {
                    "acquire"
                },
                &r,
            )
        });
        r.map(|lease| Acquired { lease, existing })
    }

    async fn acquire_inner(
        &self,
        who: &Principal,
        req: AcquireRequest,
        id: LeaseId,
    ) -> Result<Acquired, LeaseError> {
        let mut req = req;
        // An ID token's owner claim stands in for a missing owner; one given in the body wins.
        if req.owner.is_none() {
            req.owner.clone_from(&who.default_owner);
        }
        let (project, ttl, heartbeat) = validate(&req)?;
        if !who.can_write() || !who.can_see(project.as_str()) {
            return Err(Denial::NotALessee {
                principal: who.name.clone(),
                project,
            }
            .into());
        }
        let caller = Caller {
            name: &who.name,
            role: who.role,
        };
        let ask = AcquireAsk {
            project: &project,
            ttl,
            heartbeat,
            regions: &req.regions,
            owner: req.owner.as_deref().unwrap_or_default(),
        };
        // Decide everything but the quota now; the quota is decided inside the insert.
        let policy = self.policy.get();
        let grant = policy.decide_acquire(caller, &ask, 0)?;
        let now = self.clock.now();
        let lease = Lease {
            id,
            project: project.clone(),
            task: req.task,
            owner: req.owner.unwrap_or_default(),
            principal: who.name.clone(),
            created_at: now,
            expires_at: now + grant.ttl.to_chrono(),
            heartbeat_interval: heartbeat,
            last_heartbeat_at: None,
            released_at: None,
            labels: req.labels,
            regions: req.regions,
        };
        let (task, owner) = (lease.task.clone(), lease.owner.clone());
        let key = req.key.map(|k| k.trim().to_owned());
        let quota = match grant.max_active_leases {
            Some(max) => Quota::at_most(u64::from(max), move |active| {
                LeaseError::from(Denial::QuotaExceeded {
                    project,
                    active,
                    max,
                })
            }),
            None => Quota::unlimited(),
        };
        let (stored, existing) = self
            .store
            .insert_lease_keyed(lease, key.clone(), now, quota)
            .await?;
        // The same key for another task or owner is a mistake to surface, not a lease to share.
        if existing && (stored.task != task || stored.owner != owner) {
            return Err(LeaseError::KeyConflict {
                key: key.unwrap_or_default(),
                lease: stored.id,
                task: stored.task,
                owner: stored.owner,
            });
        }
        Ok(Acquired {
            lease: stored,
            existing,
        })
    }

    pub async fn renew(
        &self,
        who: &Principal,
        id: &str,
        ttl: Option<String>,
    ) -> Result<Lease, LeaseError> {
        let span = info_span!("lease", op = "renew", lease_id = %id, principal = %who.name);
        let r = async {
            let ttl = parse_duration("ttl", &ttl)?;
            let policy = self.policy.get();
            self.change(who, id, move |lease, now| {
                let ttl = policy.decide_renew(&lease.project, ttl)?;
                Ok(lease.renew(now, ttl, revival_grace(&policy, lease))?)
            })
            .await
        }
        .instrument(span.clone())
        .await;
        self.count("renew", &r);
        span.in_scope(|| log_outcome("renew", &r));
        r
    }

    pub async fn heartbeat(&self, who: &Principal, id: &str) -> Result<Lease, LeaseError> {
        let span = info_span!("lease", op = "heartbeat", lease_id = %id, principal = %who.name);
        let policy = self.policy.get();
        let r = self
            .change(who, id, move |lease, now| {
                Ok(lease.heartbeat(now, revival_grace(&policy, lease))?)
            })
            .instrument(span.clone())
            .await;
        self.count("heartbeat", &r);
        // Heartbeats are frequent by design: logged at debug, failures at info.
        span.in_scope(|| match &r {
            Ok(_) => tracing::debug!("lease heartbeat ok"),
            Err(e) => info!(code = e.code(), error = %e, "lease heartbeat refused"),
        });
        r
    }

    pub async fn release(&self, who: &Principal, id: &str) -> Result<Lease, LeaseError> {
        let span = info_span!("lease", op = "release", lease_id = %id, principal = %who.name);
        let r = self
            .change(who, id, |lease, now| {
                Ok(lease.release(now).map(|()| false)?)
            })
            .instrument(span.clone())
            .await;
        self.count("release", &r);
        // Only releases are observed (an expired lease too, once released): expiry is no event
        // (state is derived from the clock when read), so observing it would need a sweep and a
        // stored mark against counting twice after a restart.
        if let Ok(l) = &r
            && let Some(released) = l.released_at
        {
            self.metrics
                .lease_duration
                .with_label_values(&[l.project.as_str()])
                .observe((released - l.created_at).as_seconds_f64().max(0.0));
            self.tell(EventKind::LeaseReleased, &l.id.to_string(), released, l)
                .await;
        }
        span.in_scope(|| log_outcome("release", &r));
        r
    }

    /// Runs a read-check-write on one lease, atomically (see
    /// [`crate::store::Store::update_lease`]: `f` may be asked again about a row another write
    /// changed meanwhile). `f` says whether it revived a lease lapsed by heartbeat, which is
    /// logged and counted.
    async fn change(
        &self,
        who: &Principal,
        id: &str,
        mut f: impl FnMut(&mut Lease, DateTime<Utc>) -> Result<bool, LeaseError> + Send + 'static,
    ) -> Result<Lease, LeaseError> {
        let lease_id: LeaseId = id
            .parse()
            .map_err(|_| LeaseError::NotFound(id.to_owned()))?;
        let who = who.clone();
        let clock = self.clock.clone();
        let revived = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = revived.clone();
        let lease = self
            .store
            .update_lease(lease_id, move |lease| {
                if !who.may_change_lease_of(&lease.principal) {
                    return Err(LeaseError::Forbidden(format!(
                        "lease {} belongs to principal `{}`; only it or an operator may change it",
                        lease.id, lease.principal
                    )));
                }
                // Rights are those of now: a lessee taken off a project keeps no hold on the
                // leases it took there (an operator may still end them).
                if !who.can_see(lease.project.as_str()) {
                    return Err(LeaseError::Forbidden(format!(
                        "principal `{}` may no longer lease in project `{}`",
                        who.name, lease.project
                    )));
                }
                // Read the clock after the row so `now` is ordered with the write (a write in
                // between makes the store ask again, with a later clock).
                let now = clock.now();
                let before = lease.clone();
                let r = f(lease, now)?;
                flag.store(r, std::sync::atomic::Ordering::Relaxed);
                // What the row alone would forget (renewals, late beats, who released it) is
                // recorded with the change, in its transaction.
                Ok(crate::model::lease_changes(&before, lease, now)
                    .into_iter()
                    .map(|change| LeaseEvent {
                        at: now,
                        principal: who.name.clone(),
                        change,
                    })
                    .collect())
            })
            .await?
            .ok_or_else(|| LeaseError::NotFound(id.to_owned()))?;
        if revived.load(std::sync::atomic::Ordering::Relaxed) {
            self.metrics
                .lease_revivals
                .with_label_values(&[lease.project.as_str()])
                .inc();
            tracing::warn!(lease_id = %lease.id, project = %lease.project, owner = %lease.owner,
                "lease revived: it had missed its heartbeat, and its lessee came back within the grace");
            let at = lease.last_heartbeat_at.unwrap_or_else(|| self.clock.now());
            let occurrence = format!("{}:{}", lease.id, at.timestamp_millis());
            self.tell(EventKind::LeaseRevived, &occurrence, at, &lease)
                .await;
        }
        Ok(lease)
    }

    pub async fn get(&self, who: &Principal, id: &str) -> Result<Lease, LeaseError> {
        let lease_id: LeaseId = id
            .parse()
            .map_err(|_| LeaseError::NotFound(id.to_owned()))?;
        let lease = self
            .store
            .get_lease(lease_id)
            .await?
            .ok_or_else(|| LeaseError::NotFound(id.to_owned()))?;
        if !who.can_see(lease.project.as_str()) {
            return Err(LeaseError::Forbidden(format!(
                "principal `{}` may not see leases of project `{}`",
                who.name, lease.project
            )));
        }
        Ok(lease)
    }

    /// Lease `id`'s timeline (see [`Store::lease_timeline`]), for whoever may see the lease
    /// (as [`LeaseRegistry::get`]).
    pub async fn timeline(
        &self,
        who: &Principal,
        id: LeaseId,
    ) -> Result<(Lease, Vec<TimelineEntry>), LeaseError> {
        let lease = self.get(who, &id.to_string()).await?;
        let now = self.clock.now();
        let entries = self
            .store
            .lease_timeline(lease.id, now)
            .await?
            // Purged between the two reads.
            .ok_or_else(|| LeaseError::NotFound(id.to_string()))?;
        Ok((lease, entries))
    }

    /// Lists leases the caller may see. Lessees are confined to their projects.
    pub async fn list(
        &self,
        who: &Principal,
        mut filter: LeaseFilter,
    ) -> Result<Page<Lease>, LeaseError> {
        if let Some(p) = &filter.project {
            if !who.can_see(p.as_str()) {
                return Err(LeaseError::Forbidden(format!(
                    "principal `{}` may not see leases of project `{p}`",
                    who.name
                )));
            }
        } else if who.role == crate::auth::Role::Lessee {
            filter.projects_in = Some(who.projects.iter().cloned().collect());
        }
        Ok(self.store.list_leases(filter, self.clock.now()).await?)
    }

    /// The lease gauges, recomputed unless that is known to change nothing; hold the lock
    /// while rendering. Scrapes share the counting: one waiting behind a refresh that began
    /// after it arrived takes that refresh's result (it saw every operation answered before),
    /// and one arriving within [`GAUGES_FRESH_FOR`] of a refresh with no lease operation
    /// since counts nothing. So a flood of scrapes runs at most one count at a time.
    pub async fn fresh_gauges(&self) -> (GaugeLock<'_>, Result<(), StoreError>) {
        let arrived = std::time::Instant::now();
        let mut last = self.gauges.last.lock().await;
        let ops = self.gauges.ops.load(std::sync::atomic::Ordering::SeqCst);
        if let Some(r) = *last {
            let since = self.clock.now() - r.at;
            // A clock that went back fails `to_std`: counted again.
            let quiet = r.ops == ops
                && r.began.elapsed() < GAUGES_FRESH_FOR
                && since.to_std().is_ok_and(|d| d < GAUGES_FRESH_FOR);
            if r.began >= arrived || quiet {
                return (last, Ok(()));
            }
        }
        let began = std::time::Instant::now();
        let at = self.clock.now();
        let r = self.refresh_gauges().await;
        // A failed count leaves the last good one standing, and the next scrape tries again.
        if r.is_ok() {
            *last = Some(Refreshed { began, at, ops });
        }
        (last, r)
    }

    /// Recomputes `ephemera_leases{project,state}` and `ephemera_leases_expiring{project}`;
    /// projects known to policy always get their series (zero when empty).
    async fn refresh_gauges(&self) -> Result<(), StoreError> {
        let now = self.clock.now();
        let policy = self.policy.get();
        let windows = policy
            .projects()
            .map(|p| {
                let window = policy.warning_window(Some(p)).to_chrono();
                (p.name.as_str().to_owned(), window)
            })
            .collect();
        for (project, n) in self.store.count_leases_ending_within(now, windows).await? {
            self.metrics
                .leases_expiring
                .with_label_values(&[project.as_str()])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        let counts = self.store.count_leases(now).await?;
        let g = &self.metrics.leases;
        g.reset();
        for p in policy.projects() {
            for st in LeaseState::ALL {
                g.with_label_values(&[p.name.as_str(), st.as_str()]).set(0);
            }
        }
        for (project, state, n) in counts {
            g.with_label_values(&[project.as_str(), state.as_str()])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        Ok(())
    }
}

/// Every policy project's duration series exists from the start (the first release then
/// shows as an increase: rate() needs a sample before it), and its quota is exported; set
/// again on reload.
pub fn set_quota_gauges(metrics: &Metrics, policy: &Policy) {
    metrics.lease_quota.reset();
    for p in policy.projects() {
        metrics.lease_duration.with_label_values(&[p.name.as_str()]);
        if let Some(max) = p.max_active_leases {
            metrics
                .lease_quota
                .with_label_values(&[p.name.as_str()])
                .set(i64::from(max));
        }
    }
}

/// How long after a missed heartbeat a lessee may revive its lease: the shortest grace its
/// project's rules give an expired lease's resources, of any type (nothing of it can be
/// deleted before that).
fn revival_grace(policy: &Policy, lease: &Lease) -> HumanDuration {
    let project = policy.project(&lease.project);
    let expired = crate::model::Verdict::Expired;
    let base = policy.rule_for(project, expired, "").grace;
    project
        .into_iter()
        .flat_map(|p| p.on_type.keys())
        .map(|t| policy.rule_for(project, expired, t).grace)
        .fold(base, |a, b| if b < a { b } else { a })
}

fn log_outcome(op: &str, r: &Result<Lease, LeaseError>) {
    match r {
        Ok(l) => info!(
            lease_id = %l.id,
            project = %l.project,
            task = %l.task,
            owner = %l.owner,
            expires_at = %l.expires_at.to_rfc3339(),
            "lease {op} ok"
        ),
        Err(LeaseError::Store(e)) => {
            tracing::error!(error = %crate::error_chain(e), "lease {op} failed")
        }
        Err(e) => info!(code = e.code(), error = %e, "lease {op} refused"),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashMap};

    use super::*;

    /// Scrapes share the counting: with no lease operation and within a second nothing is
    /// counted again; an operation, or the lease clock moving, makes the next scrape count.
    #[tokio::test]
    async fn scrapes_count_leases_again_only_after_a_change() {
        let dir = tempfile::tempdir().expect("temp dir");
        for (engine, store) in Store::open_both_for_test(dir.path()).await {
            eprintln!("{engine}");
            scrapes_count_again_only_after_a_change(store).await;
        }
    }

    const WEB: &str = "[[project]]\nname = \"web\"\nlessees = [\"*\"]\ndefault_ttl = \"1h\"\nmax_ttl = \"1d\"\ngrace = \"1h\"\n";

    fn registry_on(
        store: Store,
        rules: &str,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
    ) -> LeaseRegistry {
        let policy = Policy::parse([(std::path::Path::new("t.toml"), rules)]).expect("rules");
        LeaseRegistry::new(
            store,
            Live::new(policy),
            IdentityTags::default(),
            clock,
            metrics,
        )
    }

    fn lessee() -> crate::auth::Principal {
        crate::auth::Principal {
            name: "ci".into(),
            role: crate::auth::Role::Lessee,
            projects: [ProjectName::parse("web").expect("name")].into(),
            tokens: vec![],
            oidc: None,
            owner_claim: None,
            default_owner: None,
        }
    }

    fn web_request() -> AcquireRequest {
        AcquireRequest {
            project: "web".into(),
            task: "t".into(),
            owner: Some("o@example.com".into()),
            ttl: Some("1h".into()),
            ..Default::default()
        }
    }

    async fn scrapes_count_again_only_after_a_change(store: Store) {
        let clock = Arc::new(crate::clock::ManualClock::new(Utc::now()));
        let metrics = Arc::new(Metrics::new());
        let registry = registry_on(store.clone(), WEB, clock.clone(), metrics.clone());
        let active = || metrics.leases.with_label_values(&["web", "active"]).get();
        let scrape = || async {
            let (_lock, r) = registry.fresh_gauges().await;
            r.expect("counted");
        };
        let who = lessee();
        let take = || async {
            registry
                .acquire(&who, web_request())
                .await
                .expect("acquired")
                .lease
        };
        scrape().await;
        assert_eq!(active(), 0);
        let lease = take().await;
        scrape().await;
        assert_eq!(active(), 1, "an operation makes the next scrape count");

        // A lease written behind the registry's back is not counted while nothing changed...
        let mut other = lease.clone();
        other.id = LeaseId::generate();
        store
            .insert_lease(other, clock.now(), Quota::<StoreError>::unlimited())
            .await
            .expect("inserted");
        scrape().await;
        assert_eq!(active(), 1, "a quiet second counts nothing again");
        // ...and is once the lease clock moves past the freshness window.
        clock.advance(chrono::TimeDelta::seconds(2));
        scrape().await;
        assert_eq!(active(), 2);

        // The lease gauges are no older than the freshness window on the real clock either.
        let mut third = lease.clone();
        third.id = LeaseId::generate();
        store
            .insert_lease(third, clock.now(), Quota::<StoreError>::unlimited())
            .await
            .expect("inserted");
        tokio::time::sleep(GAUGES_FRESH_FOR + std::time::Duration::from_millis(50)).await;
        scrape().await;
        assert_eq!(active(), 3);
    }

    /// The ids of every lease in `store`.
    async fn stored_ids(store: &Store) -> BTreeSet<LeaseId> {
        store
            .list_leases(
                LeaseFilter {
                    limit: 1000,
                    ..Default::default()
                },
                Utc::now(),
            )
            .await
            .expect("lists")
            .items
            .into_iter()
            .map(|l| l.id)
            .collect()
    }

    /// Replicas on one PostgreSQL store (each its own handle, pool and registry, as three
    /// processes would be) race 64 acquires for a quota of 10: exactly 10 are granted, and the
    /// store holds exactly those. Then 32 racing releases of one lease: exactly one wins.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn replicas_race_for_a_quota_and_a_release() {
        let target = Store::test_postgres_location().await;
        let rules = format!("{WEB}max_active_leases = 10\n");
        let clock: Arc<dyn Clock> = Arc::new(crate::clock::SystemClock);
        let mut replicas = Vec::new();
        for _ in 0..3 {
            let store = Store::open_at(&target).await.expect("opens");
            replicas.push(Arc::new(registry_on(
                store,
                &rules,
                clock.clone(),
                Arc::new(Metrics::new()),
            )));
        }
        let who = Arc::new(lessee());
        let start = Arc::new(tokio::sync::Barrier::new(64));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..64 {
            let (registry, who, start) = (replicas[i % 3].clone(), who.clone(), start.clone());
            tasks.spawn(async move {
                start.wait().await;
                registry.acquire(&who, web_request()).await
            });
        }
        let (mut granted, mut refused) = (Vec::new(), 0);
        while let Some(r) = tasks.join_next().await {
            match r.expect("task") {
                Ok(a) => granted.push(a.lease.id),
                Err(e) => {
                    assert_eq!(e.code(), "quota-exceeded", "{e}");
                    refused += 1;
                }
            }
        }
        assert_eq!((granted.len(), refused), (10, 54));
        let store = Store::open_at(&target).await.expect("opens");
        let stored: Vec<LeaseId> = stored_ids(&store).await.into_iter().collect();
        granted.sort();
        assert_eq!(
            stored, granted,
            "the store holds exactly the granted leases"
        );

        let one = granted[0].to_string();
        let start = Arc::new(tokio::sync::Barrier::new(32));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..32 {
            let (registry, who, start, id) = (
                replicas[i % 3].clone(),
                who.clone(),
                start.clone(),
                one.clone(),
            );
            tasks.spawn(async move {
                start.wait().await;
                registry.release(&who, &id).await.map(|l| l.id)
            });
        }
        let (mut won, mut lost) = (0, 0);
        while let Some(r) = tasks.join_next().await {
            match r.expect("task") {
                Ok(_) => won += 1,
                Err(e) => {
                    assert_eq!(e.code(), "lease-released", "{e}");
                    lost += 1;
                }
            }
        }
        assert_eq!((won, lost), (1, 31));
    }

    /// Racing acquires with keys and without, against a quota of 10, through two handles on
    /// each engine (two replicas; on PostgreSQL each decides a project's acquires in batches):
    /// every caller of one key gets the same lease, exactly 10 distinct leases are granted,
    /// the rest are refused for the quota, and the store holds exactly the granted ones.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn racing_keyed_acquires_share_a_lease_within_the_quota() {
        let dir = tempfile::tempdir().expect("temp dir");
        let rules = format!("{WEB}max_active_leases = 10\n");
        let clock: Arc<dyn Clock> = Arc::new(crate::clock::SystemClock);
        for (engine, store, other) in Store::open_twice_for_test(dir.path()).await {
            eprintln!("{engine}");
            let registries: Vec<_> = [store.clone(), other]
                .into_iter()
                .map(|s| {
                    Arc::new(registry_on(
                        s,
                        &rules,
                        clock.clone(),
                        Arc::new(Metrics::new()),
                    ))
                })
                .collect();
            let who = Arc::new(lessee());
            let start = Arc::new(tokio::sync::Barrier::new(64));
            let mut tasks = tokio::task::JoinSet::new();
            for i in 0..64 {
                let registry = registries[i % registries.len()].clone();
                let (who, start) = (who.clone(), start.clone());
                // A quarter with key "a", a quarter with "b", half without a key.
                let key = ["a", "b", "", ""][i % 4];
                tasks.spawn(async move {
                    let mut req = web_request();
                    req.key = (!key.is_empty()).then(|| key.to_owned());
                    start.wait().await;
                    (key, registry.acquire(&who, req).await)
                });
            }
            let mut by_key: HashMap<&str, BTreeSet<LeaseId>> = HashMap::new();
            let mut granted = BTreeSet::new();
            while let Some(r) = tasks.join_next().await {
                match r.expect("task") {
                    (key, Ok(a)) => {
                        granted.insert(a.lease.id);
                        if !key.is_empty() {
                            by_key.entry(key).or_default().insert(a.lease.id);
                        }
                    }
                    (_, Err(e)) => assert_eq!(e.code(), "quota-exceeded", "{e}"),
                }
            }
            for (key, ids) in &by_key {
                assert_eq!(ids.len(), 1, "{engine}: one lease for key {key}: {ids:?}");
            }
            assert_eq!(granted.len(), 10, "{engine}: the quota, exactly");
            let stored = stored_ids(&store).await;
            assert_eq!(
                stored, granted,
                "{engine}: the store holds the granted leases"
            );
        }
    }

    #[test]
    fn request_validation() {
        let ok = AcquireRequest {
            project: "web".into(),
            task: "t".into(),
            owner: Some("o@example.com".into()),
            ..Default::default()
        };
        assert!(validate(&ok).is_ok());
        let bad = |f: fn(&mut AcquireRequest), field: &str| {
            let mut r = ok.clone();
            f(&mut r);
            match validate(&r) {
                Err(LeaseError::Invalid { field: got, .. }) => assert_eq!(got, field),
                other => panic!("expected invalid {field}, got {other:?}"),
            }
        };
        bad(|r| r.ttl = Some("-1h".into()), "ttl");
        bad(|r| r.ttl = Some("forever".into()), "ttl");
        bad(
            |r| r.heartbeat_interval = Some("soon".into()),
            "heartbeat_interval",
        );
        bad(|r| r.project = "No Such".into(), "project");
        bad(|r| r.owner = Some(String::new()), "owner");
        bad(|r| r.owner = None, "owner");
        bad(|r| r.task = "a;b".into(), "task");
    }
}
