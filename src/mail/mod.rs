//! Email: pre-expiry warnings, owner digests of planned deletions, deletion notices and the
//! on-call summary, delivered from the store's outbox through the `[smtp]` relay.
//!
//! How a message travels:
//! 1. Something is **queued** in the outbox, deduplicated by key: the reaper's notices
//!    (`deletion-planned` per marked finding, `reaped` per deletion), an `expiry-warning` per
//!    (lease, expiry) by [`Mailer::queue_expiry_warnings`], an `oncall-summary` per (pass,
//!    address) by [`Mailer::queue_pass_summary`].
//! 2. Notices are **rolled up**, in one transaction, into one `owner-digest` or
//!    `reaped-notice` per recipient (a burst of findings for one owner is one message); a
//!    notice with no owner goes to the `[smtp] oncall` addresses.
//! 3. The **deliverer** ([`Mailer::round`]) sends due messages one by one and marks each sent
//!    only after the SMTP server accepted it; a failure counts an attempt and backs off
//!    (doubling from `retry_backoff`, at most an hour). Nothing is rolled up or sent in quiet
//!    hours; everything pending goes out after them.
//!
//! Architecture Invariant: a row is never marked sent before the server accepted it, so an
//! outage or a crash loses nothing. The one duplicate left is a crash (or a lost store write)
//! between the server's acceptance and the mark: that message is sent again after the restart
//! (at least once, at that instant). The resend carries the same Message-ID, so mail clients
//! and servers that deduplicate by it show it once. Rendering is pure ([`render`]); only
//! [`transport`] talks SMTP; only the store knows the outbox's SQL.

pub mod render;
pub mod slack;
pub mod transport;
pub mod webhook;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::clock::Clock;
use crate::config::{Config, SlackConfig, SlackTarget, SmtpConfig};
use crate::live::Live;
use crate::metrics::Metrics;
use crate::model::{MailKind, ProjectName};
use crate::policy::{Policy, Via};
use crate::reaper::run::ItemResult;
use crate::resource::{OverrunningLease, ScanReport};
use crate::store::{Notice, OutboxRow, Rollup, Store, StoreError, Strays};
use render::{Renderer, build_message};
use transport::{SmtpTransport, TransportError};

/// Longest wait between attempts at one message.
const MAX_BACKOFF: TimeDelta = TimeDelta::hours(1);
/// Most messages one round tries to send.
const ROUND_LIMIT: u32 = 200;
/// Longest pause of the delivery loop between rounds.
const MAX_TICK: Duration = Duration::from_secs(30);
/// How long a claim on a message outlasts the SMTP timeout of its send.
const CLAIM_MARGIN: chrono::TimeDelta = chrono::TimeDelta::seconds(30);

/// What one delivery round did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RoundReport {
    /// Inside quiet hours: nothing was rolled up or sent.
    pub quiet: bool,
    pub warnings_queued: u64,
    pub messages_rolled_up: u64,
    pub sent: u64,
    pub failed: u64,
    /// Rows left unsent after the round.
    pub pending: u64,
}

/// A finished pass, as the tasks hand it to the mailer: its report and what its act step did.
#[derive(Debug, Clone)]
pub struct PassDone {
    pub report: ScanReport,
    pub results: Vec<ItemResult>,
}

/// The mailer; cheap to clone.
#[derive(Debug, Clone)]
pub struct Mailer {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// `[smtp]`; without it, messages go to Slack only.
    smtp: Option<SmtpConfig>,
    /// `[slack]`: messages for Slack are queued here and sent by the webhook deliverer.
    slack: Option<SlackConfig>,
    /// The lifecycle canary's project: its leases, notices and findings are never told (a
    /// canary every half hour would otherwise mail on-call every half hour).
    quiet_project: Option<String>,
    protect_tag: String,
    policy: Live<Policy>,
    store: Store,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    transport: Option<SmtpTransport>,
    renderer: Renderer,
    /// Held for a whole round, so two never overlap.
    round: tokio::sync::Mutex<()>,
    /// Wakes the delivery loop early (after a pass queued mail).
    kick: tokio::sync::Notify,
    /// The leases the last pass found overrunning, and those already told in a digest: each
    /// gets one line in its owner's next digest (in memory: a restart may tell one again).
    overrunning: std::sync::Mutex<(Vec<OverrunningLease>, BTreeSet<String>)>,
}

impl Mailer {
    /// The mailer of `[smtp]` and `[slack]`; `None` without either. Reads the SMTP password
    /// now.
    pub fn new(
        config: &Config,
        policy: Live<Policy>,
        store: Store,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
    ) -> Result<Option<Mailer>, TransportError> {
        if config.smtp.is_none() && config.slack.is_none() {
            return Ok(None);
        }
        let transport = config.smtp.as_ref().map(SmtpTransport::new).transpose()?;
        Ok(Some(Mailer {
            inner: Arc::new(Inner {
                smtp: config.smtp.clone(),
                slack: config.slack.clone(),
                quiet_project: config.canary.as_ref().map(|c| c.project.clone()),
                protect_tag: config.tags.protect.clone(),
                policy,
                store,
                metrics,
                clock,
                transport,
                renderer: Renderer::new(),
                round: tokio::sync::Mutex::new(()),
                kick: tokio::sync::Notify::new(),
                overrunning: std::sync::Mutex::default(),
            }),
        }))
    }

    /// Asks the delivery loop for a round now.
    pub fn kick(&self) {
        self.inner.kick.notify_one();
    }

    /// The delivery loop of the daemon: a first round right away that tries every pending
    /// message whatever its back-off (a restart is a fresh start, often after the relay was
    /// fixed), then a round on every tick (the back-off, at most 30 s) or kick, until `stop`
    /// turns true. A round in progress finishes first.
    pub async fn run(
        self,
        leadership: crate::leader::Leadership,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        // Slack's back-off too: its messages are rolled up here before its deliverer sends them.
        let inner = &self.inner;
        let tick = [
            inner.smtp.as_ref().map(|s| s.retry_backoff),
            inner.slack.as_ref().map(|s| s.retry_backoff),
        ]
        .into_iter()
        .flatten()
        .map(|d| Duration::from_secs(d.as_secs()))
        .min()
        .unwrap_or(MAX_TICK)
        .clamp(Duration::from_secs(1), MAX_TICK);
        let mut ignore_backoff = true;
        let mut elections = leadership.changes();
        loop {
            // Only the leader delivers; a follower's round waits for its turn to lead.
            if leadership.is_leader() {
                if let Err(e) = self.round_as(&leadership, ignore_backoff).await {
                    tracing::error!(error = %crate::error_chain(&e), "mail round failed");
                }
                ignore_backoff = false;
            }
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                _ = self.inner.kick.notified() => {}
                // A replica that starts leading delivers at once (at start, that is the first
                // election, a moment after this loop began).
                _ = elections.changed() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    /// One round: queue due expiry warnings, then (outside quiet hours) roll notices up and
    /// send what is due (everything unsent with `ignore_backoff`).
    pub async fn round(&self, ignore_backoff: bool) -> Result<RoundReport, StoreError> {
        self.round_as(&crate::leader::Leadership::alone(), ignore_backoff)
            .await
    }

    /// A round as `leadership` allows: each message is claimed under the leader's fencing
    /// token before it is sent (alone, nothing needs claiming), and a replica that no longer
    /// leads sends nothing more.
    async fn round_as(
        &self,
        leadership: &crate::leader::Leadership,
        ignore_backoff: bool,
    ) -> Result<RoundReport, StoreError> {
        let inner = &self.inner;
        let _round = inner.round.lock().await;
        let now = inner.clock.now();
        let mut report = RoundReport {
            warnings_queued: self.queue_expiry_warnings(now).await?,
            ..RoundReport::default()
        };
        let quiet = inner.smtp.as_ref().and_then(|s| s.quiet_hours);
        if quiet.is_some_and(|q| q.contains(now)) {
            report.quiet = true;
        } else {
            report.messages_rolled_up = self.roll_up(now).await?;
        }
        if let (false, Some(smtp), Some(transport)) = (report.quiet, &inner.smtp, &inner.transport)
        {
            let due = inner
                .store
                .due_messages(
                    &MailKind::MESSAGES,
                    (!ignore_backoff).then_some(now),
                    ROUND_LIMIT,
                )
                .await?;
            for row in due {
                if !self.claim(leadership, smtp, row.id).await? {
                    continue;
                }
                match self.deliver(smtp, transport, row, now).await? {
                    Delivery::Sent => report.sent += 1,
                    Delivery::Failed { relay_down } => {
                        report.failed += 1;
                        // The rest would fail the same way; they wait for the next round.
                        if relay_down {
                            break;
                        }
                    }
                }
            }
        }
        report.pending = inner.store.outbox_pending().await?;
        let dead = inner.store.dead_letter_count().await?;
        inner
            .metrics
            .outbox_dead
            .set(i64::try_from(dead).unwrap_or(i64::MAX));
        inner
            .metrics
            .outbox_pending
            .set(i64::try_from(report.pending).unwrap_or(i64::MAX));
        if report.failed == 0 && !report.quiet {
            inner
                .metrics
                .task_succeeded(crate::model::TaskName::Mail, now);
        }
        Ok(report)
    }

    /// Queues an `expiry-warning` for each lease expiring within `warn_before` (once per
    /// lease and expiry: a renewal that moves the expiry earns a new warning).
    pub async fn queue_expiry_warnings(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let inner = &self.inner;
        let leases = inner
            .store
            .leases_expiring_within(now, self.warn_before().to_chrono())
            .await?;
        let mut queued = 0;
        let policy = inner.policy.get();
        for l in leases {
            if inner.quiet_project.as_deref() == Some(l.project.as_str()) {
                continue;
            }
            // The owner as an address, handle, team or member; else the project's team. A
            // lease nobody can be found for gets no warning (on-call is not told of renewals).
            let Some(route) = policy
                .directory()
                .route(Some(&l.owner), Some(l.project.as_str()))
            else {
                tracing::warn!(lease_id = %l.id, owner = %l.owner, "lease owner cannot be reached (not an address, handle or team); no expiry warning");
                continue;
            };
            let payload = json!({
                "lease_id": l.id.to_string(),
                "project": l.project.as_str(),
                "task": l.task,
                "owner": l.owner,
                "expires_at": l.expires_at,
                "warn_before": self.warn_before().to_string(),
                "renew_ttl": renew_ttl(&policy, l.project.as_str()),
                "reason": route_reason(&route.via, l.project.as_str(), &l.owner),
            });
            let base = crate::store::expiry_warning_key(&l.id.to_string(), l.expires_at);
            // The first recipient keeps the key warnings had before routing existed, so an
            // upgrade does not warn twice.
            let key = |i: usize, to: &str| {
                if i == 0 {
                    base.clone()
                } else {
                    format!("{base}:{to}")
                }
            };
            if inner.smtp.is_some() {
                queued += self
                    .enqueue_each(MailKind::ExpiryWarning, &route.to, key, &payload, now)
                    .await?;
            }
            // Without mail, the first Slack row takes the mail's key: the look-up above skips
            // leases warned under it, so a warned lease is not read again every round.
            let first = inner.smtp.is_none().then(|| base.clone());
            queued += self
                .enqueue_slack(
                    MailKind::ExpiryWarning,
                    self.slack_targets(&route.to),
                    (&base, first),
                    &payload,
                    now,
                )
                .await?;
        }
        Ok(queued)
    }

    /// Follows the passes until their sender is gone: queues each one's on-call summary and
    /// wakes the deliverer.
    pub async fn follow(self, mut passes: tokio::sync::mpsc::Receiver<PassDone>) {
        while let Some(p) = passes.recv().await {
            self.set_overrunning(p.report.overrunning.clone());
            match self.queue_pass_summary(&p.report, &p.results).await {
                Ok(_) => self.kick(),
                Err(e) => {
                    tracing::error!(error = %crate::error_chain(&e), "cannot queue the on-call summary")
                }
            }
        }
    }

    /// Queues the on-call summary of a pass (one per address), when the pass found, planned,
    /// deleted or failed something, or a walk was incomplete. Returns how many were queued.
    pub async fn queue_pass_summary(
        &self,
        report: &ScanReport,
        failures: &[ItemResult],
    ) -> Result<u64, StoreError> {
        let inner = &self.inner;
        // Strays are findings the pass opened: none opened, none to look for.
        let strays = if report.findings_opened > 0 {
            inner
                .store
                .strays_opened_in(report.run_id.clone(), STRAYS_LISTED)
                .await?
        } else {
            Strays::default()
        };
        let quiet_only = match &inner.quiet_project {
            Some(p) => self.only_quiet(report, failures, p).await?,
            None => false,
        };
        let Some(payload) = pass_summary(report, failures, &strays, quiet_only) else {
            return Ok(0);
        };
        let at = report.ended_at.unwrap_or_else(|| inner.clock.now());
        let oncall = inner.smtp.as_ref().map_or(&[][..], |s| &s.oncall[..]);
        let mut queued = self
            .enqueue_each(
                MailKind::OncallSummary,
                oncall,
                |_, to| format!("{}:{}:{to}", MailKind::OncallSummary, report.run_id),
                &payload,
                at,
            )
            .await?;
        let oncall_key = format!("{}:{}", MailKind::OncallSummary, report.run_id);
        queued += self
            .enqueue_slack(
                MailKind::OncallSummary,
                inner
                    .slack
                    .as_ref()
                    .and_then(|s| s.oncall.clone())
                    .into_iter()
                    .collect(),
                (&oncall_key, None),
                &payload,
                at,
            )
            .await?;
        let policy = inner.policy.get();
        for team in policy.directory().teams.values() {
            if team.oncall.is_empty() || team.projects.is_empty() {
                continue;
            }
            let projects: Vec<String> = team.projects.iter().map(ToString::to_string).collect();
            let opened = if report.findings_opened > 0 {
                inner
                    .store
                    .opened_in_projects(report.run_id.clone(), projects, STRAYS_LISTED)
                    .await?
            } else {
                Strays::default()
            };
            let Some(payload) = team_summary(team, report, failures, &opened) else {
                continue;
            };
            let key = format!("{}:{}:{}", MailKind::TeamSummary, team.name, report.run_id);
            if inner.smtp.is_some() {
                queued += self
                    .enqueue_each(
                        MailKind::TeamSummary,
                        &team.oncall,
                        |_, to| format!("{key}:{to}"),
                        &payload,
                        at,
                    )
                    .await?;
            }
            queued += self
                .enqueue_slack(
                    MailKind::TeamSummary,
                    self.slack_targets(&team.oncall),
                    (&key, None),
                    &payload,
                    at,
                )
                .await?;
        }
        Ok(queued)
    }

    /// Whether every finding the pass opened or marked, and every deletion it decided, was in
    /// project `quiet` (the canary's): then those are no news.
    async fn only_quiet(
        &self,
        report: &ScanReport,
        results: &[ItemResult],
        quiet: &str,
    ) -> Result<bool, StoreError> {
        const LOOKED_AT: u32 = 10_000;
        if results.iter().any(|r| r.project.as_deref() != Some(quiet)) {
            return Ok(false);
        }
        let changes = self
            .inner
            .store
            .run_finding_changes(report.run_id.clone(), 0, LOOKED_AT)
            .await?;
        // More than were read: news, whatever they are.
        Ok(changes.len() < LOOKED_AT as usize
            && changes
                .iter()
                .all(|c| c.kind == "resolved" || c.project.as_deref() == Some(quiet)))
    }

    /// Queues one `kind` message per address of `to`, each under the dedupe key `key` gives
    /// it (index, address); returns how many were new.
    async fn enqueue_each(
        &self,
        kind: MailKind,
        to: &[String],
        key: impl Fn(usize, &str) -> String,
        payload: &Value,
        at: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut queued = 0;
        for (i, addr) in to.iter().enumerate() {
            if self
                .inner
                .store
                .enqueue(kind, Some(addr.clone()), key(i, addr), payload.clone(), at)
                .await?
            {
                queued += 1;
            }
        }
        Ok(queued)
    }

    /// How long before a lease expires its owner is warned: `[smtp] warn_before`, or its
    /// default for Slack alone.
    fn warn_before(&self) -> crate::model::HumanDuration {
        self.inner
            .smtp
            .as_ref()
            .map_or_else(crate::config::default_warn_before, |s| s.warn_before)
    }

    /// The Slack targets the owners table maps `addresses` to (each once); none without
    /// `[slack]`.
    fn slack_targets(&self, addresses: &[String]) -> BTreeSet<SlackTarget> {
        let Some(slack) = &self.inner.slack else {
            return BTreeSet::new();
        };
        addresses
            .iter()
            .filter_map(|a| slack.target_of(a).cloned())
            .collect()
    }

    /// Queues one `slack` row per target: message `kind` with `payload`, keyed by `key` and
    /// the target (the first by `first` instead, when given); returns how many were new (and
    /// wakes the deliverer for them).
    async fn enqueue_slack(
        &self,
        kind: MailKind,
        targets: BTreeSet<SlackTarget>,
        (key, mut first): (&str, Option<String>),
        payload: &Value,
        at: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut queued = 0;
        for t in targets {
            let t = t.to_string();
            if self
                .inner
                .store
                .enqueue(
                    MailKind::Slack,
                    Some(t.clone()),
                    first
                        .take()
                        .unwrap_or_else(|| format!("{}:{key}:{t}", MailKind::Slack)),
                    slack_payload(kind, payload.clone()),
                    at,
                )
                .await?
            {
                queued += 1;
            }
        }
        if queued > 0 {
            crate::webhook::KICK.notify_one();
        }
        Ok(queued)
    }

    /// The leases a pass found overrunning (replacing the last pass's); those not told yet
    /// get a line in their owner's next digest.
    pub fn set_overrunning(&self, leases: Vec<OverrunningLease>) {
        let mut o = self
            .inner
            .overrunning
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // Told ones no longer overrunning are forgotten: one overrunning again is told again.
        let still: BTreeSet<String> = leases.iter().map(|l| l.lease_id.clone()).collect();
        o.1.retain(|id| still.contains(id));
        o.0 = leases;
    }

    async fn roll_up(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let inner = &self.inner;
        let withdrawn = inner.store.withdraw_stale_plans(now).await?;
        if withdrawn > 0 {
            tracing::info!(withdrawn, "deletion notices withdrawn: no longer planned");
        }
        let mut n = 0;
        let untold: Vec<OverrunningLease> = {
            let o = inner.overrunning.lock().unwrap_or_else(|p| p.into_inner());
            o.0.iter()
                .filter(|l| !o.1.contains(&l.lease_id))
                .cloned()
                .collect()
        };
        let told = Arc::new(std::sync::Mutex::new(Vec::new()));
        for (notice, message) in [
            (MailKind::DeletionPlanned, MailKind::OwnerDigest),
            (MailKind::Reaped, MailKind::ReapedNotice),
        ] {
            let ctx = RollupContext {
                message_kind: message,
                quiet_project: inner.quiet_project.clone(),
                mail: inner.smtp.is_some(),
                oncall: inner
                    .smtp
                    .as_ref()
                    .map(|s| s.oncall.clone())
                    .unwrap_or_default(),
                slack: inner.slack.clone(),
                protect_tag: inner.protect_tag.clone(),
                policy: inner.policy.get(),
                overrunning: if message == MailKind::OwnerDigest {
                    untold.clone()
                } else {
                    Vec::new()
                },
            };
            let told = told.clone();
            n += inner
                .store
                .roll_up(notice, now, move |notices| {
                    let (rollups, nobody, lines) = roll_up_notices(&ctx, notices);
                    told.lock().unwrap_or_else(|p| p.into_inner()).extend(lines);
                    (rollups, nobody)
                })
                .await?
                .len() as u64;
        }
        if n > 0 && inner.slack.is_some() {
            crate::webhook::KICK.notify_one();
        }
        let told = std::mem::take(&mut *told.lock().unwrap_or_else(|p| p.into_inner()));
        if !told.is_empty() {
            let mut o = inner.overrunning.lock().unwrap_or_else(|p| p.into_inner());
            o.1.extend(told);
        }
        Ok(n)
    }

    /// Whether this process may send message `id` now: alone, always; as leader, when its
    /// claim under the fencing token holds (for the SMTP timeout and a margin); as a follower,
    /// never.
    async fn claim(
        &self,
        leadership: &crate::leader::Leadership,
        smtp: &SmtpConfig,
        id: i64,
    ) -> Result<bool, StoreError> {
        if !leadership.is_leader() {
            return Ok(false);
        }
        let Some(fence) = leadership.fence() else {
            return Ok(true);
        };
        // Claims are about processes: wall-clock times, like the lock they are fenced on.
        let wall = crate::clock::Clock::now(&crate::clock::SystemClock);
        let until = wall + smtp.timeout.to_chrono() + CLAIM_MARGIN;
        let claimed = self
            .inner
            .store
            .claim_message(id, crate::leader::LEADER_LOCK, fence, wall, until)
            .await?;
        if !claimed {
            tracing::info!(
                id,
                "not sending: another replica has it, or this one no longer leads"
            );
        }
        Ok(claimed)
    }

    async fn deliver(
        &self,
        smtp: &SmtpConfig,
        transport: &SmtpTransport,
        row: OutboxRow,
        now: DateTime<Utc>,
    ) -> Result<Delivery, StoreError> {
        let to = row.recipient.clone().unwrap_or_default();
        // Instrumented, not entered: an entered span must not be held across an `.await`.
        let span = tracing::info_span!("mail", id = row.id, kind = %row.kind, to = %to);
        tracing::Instrument::instrument(self.deliver_in_span(smtp, transport, row, to, now), span)
            .await
    }

    async fn deliver_in_span(
        &self,
        smtp: &SmtpConfig,
        transport: &SmtpTransport,
        row: OutboxRow,
        to: String,
        now: DateTime<Utc>,
    ) -> Result<Delivery, StoreError> {
        let inner = &self.inner;
        let message = inner
            .renderer
            .render(row.kind.as_str(), &row.payload)
            .and_then(|r| {
                build_message(
                    row.kind.as_str(),
                    &smtp.from,
                    &to,
                    message_id(&row, &smtp.from),
                    now,
                    r,
                )
            });
        let (error, failure) = match message {
            Err(e) => (crate::error_chain(&e), Failure::Unsendable),
            Ok(message) => match transport.send(message).await {
                Ok(()) => {
                    // The server has the message. Should the daemon die before this mark is
                    // committed, the row is still unsent and goes out again after the restart
                    // (same Message-ID): at least once at this instant, never zero times.
                    if !inner.store.mark_sent(row.id, now).await? {
                        tracing::warn!("message was already marked sent");
                    }
                    inner
                        .metrics
                        .emails_sent
                        .with_label_values(&[row.kind.as_str()])
                        .inc();
                    tracing::info!(attempts = row.attempts + 1, "mail sent");
                    return Ok(Delivery::Sent);
                }
                Err(e) => (
                    crate::error_chain(&e),
                    match (e.answered, e.permanent) {
                        (false, _) => Failure::Down,
                        (true, permanent) => Failure::Refused { permanent },
                    },
                ),
            },
        };
        let relay_down = matches!(
            failure,
            Failure::Down | Failure::Refused { permanent: false }
        );
        let dead = dead_letter(failure, row.refusals);
        let retry_at =
            now + crate::model::backoff(smtp.retry_backoff.to_chrono(), row.attempts, MAX_BACKOFF);
        inner.metrics.email_failures.inc();
        if dead {
            tracing::error!(error = %error, attempts = row.attempts + 1, "mail refused for good: kept as a dead letter (`ephemera mail dead`, `ephemera mail retry`)");
        } else if relay_down {
            tracing::warn!(error = %error, attempts = row.attempts + 1, retry_at = %retry_at, "mail not sent; will retry");
        } else {
            tracing::error!(error = %error, attempts = row.attempts + 1, retry_at = %retry_at, "mail refused; fix the address or the relay (retried hourly at most)");
        }
        inner
            .store
            .mark_failed(
                row.id,
                retry_at,
                error,
                matches!(failure, Failure::Refused { .. }),
                dead.then_some(now),
            )
            .await?;
        Ok(Delivery::Failed { relay_down })
    }

    /// The SMTP transport; `None` for Slack alone.
    pub fn transport(&self) -> Option<&SmtpTransport> {
        self.inner.transport.as_ref()
    }
}

enum Delivery {
    Sent,
    Failed { relay_down: bool },
}

/// Why a message was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// It cannot be rendered or built (a bad address): trying again cannot help.
    Unsendable,
    /// The relay answered no: for good (5xx) or for now (4xx).
    Refused { permanent: bool },
    /// The relay could not be reached (no connection, a timeout, TLS).
    Down,
}

/// A relay that refuses a message this many times for good (5xx) makes it a dead letter: a
/// misconfigured relay (a wrong password answers 5xx too) gets a few chances to be fixed.
const PERMANENT_REFUSALS: u32 = 3;
/// Refusals for now (4xx) before a message is a dead letter.
const MAX_REFUSALS: u32 = 10;

/// Whether this failure, after `refusals` earlier ones, makes the message a dead letter. An
/// outage never does: mail waits for the relay however long it is down.
fn dead_letter(failure: Failure, refusals: u32) -> bool {
    match failure {
        Failure::Unsendable => true,
        Failure::Refused { permanent: true } => refusals + 1 >= PERMANENT_REFUSALS,
        Failure::Refused { permanent: false } => refusals + 1 >= MAX_REFUSALS,
        Failure::Down => false,
    }
}

/// A Message-ID fixed per outbox row: `<kind.id.hash@domain-of-from>`.
fn message_id(row: &OutboxRow, from: &str) -> String {
    let digest = hex::encode(Sha256::digest(row.dedupe_key.as_bytes()));
    let domain = from.rsplit_once('@').map_or("ephemera.invalid", |(_, d)| d);
    format!("<{}.{}.{}@{domain}>", row.kind, row.id, &digest[..16])
}

/// Whether lettre will take `a` as an address.
pub fn is_address(a: &str) -> bool {
    crate::policy::is_address(a)
}

/// The `--ttl` to suggest when renewing a lease of `project`: the project's default.
fn renew_ttl(policy: &Policy, project: &str) -> String {
    ProjectName::parse(project)
        .ok()
        .and_then(|p| policy.project(&p).map(|p| p.default_ttl.to_string()))
        .unwrap_or_else(|| "2h".into())
}

/// Why a message reached its reader, in words for the message.
fn route_reason(via: &Via, project: &str, owner: &str) -> String {
    match via {
        Via::Address => format!("owner {owner}"),
        Via::Handle { handle } => format!("owner {handle} (handle)"),
        Via::Team { team } => format!("owner team {team}"),
        Via::Member { handle, team } => {
            format!("team {team}, for its member {handle} (no address of their own)")
        }
        Via::ProjectTeam { team } => {
            format!("on-call of team {team}, which owns project {project} (no owner to reach)")
        }
    }
}

/// What the pure roll-up needs besides the notices.
#[derive(Debug)]
struct RollupContext {
    message_kind: MailKind,
    /// Notices of this project (the canary's) are told to nobody.
    quiet_project: Option<String>,
    /// Whether mail is sent (`[smtp]`): without it, notices are rolled up for Slack only.
    mail: bool,
    oncall: Vec<String>,
    /// `[slack]`: owners' notices go to the target their address maps to as well, and unowned
    /// ones to its on-call target.
    slack: Option<SlackConfig>,
    protect_tag: String,
    policy: Arc<Policy>,
    /// Overrunning leases not told yet: a line each in the digest of a recipient their owner
    /// routes to (digests only).
    overrunning: Vec<OverrunningLease>,
}

/// How a rolled-up message travels. Mail sorts first, so mail keeps its order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Channel {
    Mail,
    Slack,
}

/// One message per (channel, recipient) from pending notices; notices without a usable owner
/// go to every on-call address and to Slack's on-call target (flagged `unowned`), or nowhere
/// when there is none (returned apart). Without mail, a notice whose owner has no Slack target
/// goes to Slack's on-call target too, with that reason (else nowhere).
/// A digest also carries a line for each overrunning lease whose owner routes to its
/// recipient; the ids of the leases so told come back third.
fn roll_up_notices(
    ctx: &RollupContext,
    notices: Vec<Notice>,
) -> (Vec<Rollup>, Vec<i64>, Vec<String>) {
    // Per (channel, unowned, recipient): its notices, and why each route reached it.
    type Group = (Vec<Notice>, BTreeSet<String>);
    let mut groups: BTreeMap<(Channel, bool, String), Group> = BTreeMap::new();
    let mut nobody = Vec::new();
    let directory = ctx.policy.directory();
    let slack_of = |to: &str| {
        ctx.slack
            .as_ref()
            .and_then(|s| s.target_of(to))
            .map(ToString::to_string)
    };
    for n in notices {
        let project = n.payload["project"].as_str();
        if project.is_some() && project == ctx.quiet_project.as_deref() {
            nobody.push(n.id);
            continue;
        }
        let owner = n.recipient.as_deref();
        let mut reached = false;
        match directory.route(owner, project) {
            Some(route) => {
                let why = route_reason(
                    &route.via,
                    project.unwrap_or_default(),
                    owner.unwrap_or_default(),
                );
                let unowned = route.via.unowned();
                let addresses = route.to.clone();
                for to in route.to {
                    let slack = slack_of(&to);
                    let mail = ctx.mail.then_some((Channel::Mail, to));
                    for key in mail.into_iter().chain(slack.map(|t| (Channel::Slack, t))) {
                        let e = groups.entry((key.0, unowned, key.1)).or_default();
                        e.0.push(n.clone());
                        e.1.insert(why.clone());
                        reached = true;
                    }
                }
                // Slack alone, and the owner is not in its table: on-call hears of it rather
                // than nobody.
                let oncall = ctx.slack.as_ref().and_then(|s| s.oncall.as_ref());
                if let (false, false, Some(t)) = (reached, ctx.mail, oncall) {
                    let e = groups
                        .entry((Channel::Slack, unowned, t.to_string()))
                        .or_default();
                    e.0.push(n.clone());
                    e.1.insert(format!(
                        "on-call: {} has no Slack target in [slack.owners] ({why})",
                        addresses.join(", ")
                    ));
                    reached = true;
                }
            }
            None => {
                let mail = ctx
                    .oncall
                    .iter()
                    .filter(|_| ctx.mail)
                    .map(|to| (Channel::Mail, to.clone()));
                let slack = ctx
                    .slack
                    .as_ref()
                    .and_then(|s| s.oncall.as_ref())
                    .map(|t| (Channel::Slack, t.to_string()));
                for (channel, to) in mail.chain(slack) {
                    groups
                        .entry((channel, true, to))
                        .or_default()
                        .0
                        .push(n.clone());
                    reached = true;
                }
            }
        }
        if !reached {
            nobody.push(n.id);
        }
    }
    // Per owned recipient with a digest: the overrunning leases of owners routed to it.
    let mut lines: BTreeMap<(Channel, String), Vec<Value>> = BTreeMap::new();
    let mut told = Vec::new();
    for l in &ctx.overrunning {
        let Some(route) = directory.route(Some(&l.owner), Some(&l.project)) else {
            continue;
        };
        if route.via.unowned() {
            continue;
        }
        let line = json!({
            "lease_id": l.lease_id, "project": l.project, "task": l.task,
            "running": short_duration(l.running_seconds),
            "p95": short_duration(l.p95_seconds),
            "threshold": short_duration(l.threshold_seconds),
        });
        let mut any = false;
        for to in route.to {
            let slack = slack_of(&to).map(|t| (Channel::Slack, t));
            for key in std::iter::once((Channel::Mail, to)).chain(slack) {
                if groups.contains_key(&(key.0, false, key.1.clone())) {
                    let l = lines.entry(key).or_default();
                    // Two addresses mapped to one channel: one line there.
                    if !l.contains(&line) {
                        l.push(line.clone());
                    }
                    any = true;
                }
            }
        }
        if any {
            told.push(l.lease_id.clone());
        }
    }
    let rollups = groups
        .into_iter()
        .map(|((channel, unowned, recipient), (notices, why))| {
            let first = notices.first().map_or(0, |n| n.id);
            let items: Vec<Value> = notices.iter().map(item).collect();
            let leases: BTreeSet<(String, String)> = notices
                .iter()
                .filter_map(|n| {
                    let lease = n.payload["lease_id"].as_str()?;
                    let project = n.payload["project"].as_str().unwrap_or_default();
                    Some((lease.to_owned(), renew_ttl(&ctx.policy, project)))
                })
                .collect();
            let key = format!(
                "{}:{}{recipient}:{first}",
                ctx.message_kind,
                if unowned { "unowned:" } else { "" }
            );
            let payload = json!({
                "recipient": recipient,
                "unowned": unowned,
                "items": items,
                "leases": leases.into_iter().map(|(lease_id, renew_ttl)| json!({"lease_id": lease_id, "renew_ttl": renew_ttl})).collect::<Vec<_>>(),
                "protect_tag": ctx.protect_tag,
                "reasons": why,
                "overrunning": if unowned { Vec::new() } else { lines.get(&(channel, recipient.clone())).cloned().unwrap_or_default() },
            });
            let notices = notices.iter().map(|n| n.id).collect();
            match channel {
                Channel::Mail => Rollup {
                    kind: ctx.message_kind,
                    dedupe_key: key,
                    payload,
                    notices,
                    recipient,
                },
                Channel::Slack => Rollup {
                    kind: MailKind::Slack,
                    dedupe_key: format!("{}:{key}", MailKind::Slack),
                    payload: slack_payload(ctx.message_kind, payload),
                    notices,
                    recipient,
                },
            }
        })
        .collect();
    (rollups, nobody, told)
}

/// A `slack` outbox row's payload: the message's kind and its mail payload (rendered as Block
/// Kit when it is sent, as mail is rendered when sent).
fn slack_payload(kind: MailKind, payload: Value) -> Value {
    json!({"message": kind.as_str(), "payload": payload})
}

/// `25m`, `1h40m`, `2d3h`: a running time for a digest line.
fn short_duration(secs: i64) -> String {
    let m = secs.max(0) / 60;
    match (m / 1440, (m % 1440) / 60, m % 60) {
        (0, 0, m) => format!("{m}m"),
        (0, h, 0) => format!("{h}h"),
        (0, h, m) => format!("{h}h{m}m"),
        (d, 0, _) => format!("{d}d"),
        (d, h, _) => format!("{d}d{h}h"),
    }
}

/// One resource line of a digest or deletion notice: the notice's payload with what the store
/// knows around it.
fn item(n: &Notice) -> Value {
    let mut v = n.payload.clone();
    if let Some(o) = v.as_object_mut() {
        o.insert("resource_type".into(), json!(n.resource_type));
        o.insert("account".into(), json!(n.account));
        o.insert("region".into(), json!(n.region));
        o.insert("task".into(), json!(n.lease_task));
        // The task's spend from the store; templates say "not available yet" without it.
        o.insert("spend_usd".into(), json!(n.spend_usd));
        o.insert("creator".into(), json!(n.creator));
        for key in ["lease_id", "project", "deadline", "at", "detail"] {
            o.entry(key).or_insert(Value::Null);
        }
    }
    v
}

/// How many untagged and unknown-lease findings a summary names (the rest are counted).
const STRAYS_LISTED: u32 = 20;

/// The on-call summary's payload, or `None` when the pass has nothing to report.
pub fn pass_summary(
    report: &ScanReport,
    failures: &[ItemResult],
    strays: &Strays,
    quiet_only: bool,
) -> Option<Value> {
    let reap = report.reap.clone().unwrap_or_default();
    let incomplete: Vec<Value> = report
        .walks
        .iter()
        .filter(|w| !w.is_complete())
        .map(|w| json!({"account": w.account, "region": w.region, "reason": w.reason.clone().unwrap_or_default()}))
        .collect();
    // With `quiet_only`, what the pass found and did was the canary's own: no news.
    let found = report.findings_opened > 0 || reap.marked > 0 || reap.deleted > 0;
    let newsworthy = (found && !quiet_only)
        || reap.failed > 0
        || !reap.capped.is_empty()
        || !incomplete.is_empty()
        || report.outcome == crate::model::RunOutcome::Failed;
    if !newsworthy {
        return None;
    }
    Some(json!({
        "run_id": report.run_id,
        "outcome": report.outcome,
        "ended_at": report.ended_at,
        "resources_seen": report.resources_seen,
        "findings_opened": report.findings_opened,
        "findings_resolved": report.findings_resolved,
        "verdicts": report.verdicts,
        "reap": reap,
        "incomplete_walks": incomplete,
        "strays": strays.listed.iter().map(|f| json!({
            "arn": f.arn, "verdict": f.verdict, "source": f.source, "creator": f.creator,
        })).collect::<Vec<_>>(),
        "strays_more": strays.more,
        "audit_head": report.audit_head.as_ref().map(ToString::to_string),
        "failures": failures
            .iter()
            .filter(|f| f.outcome == crate::model::Decision::Failed)
            .map(|f| json!({"arn": f.arn, "detail": f.detail}))
            .collect::<Vec<_>>(),
    }))
}

/// A team's share of a pass: the findings opened in its projects and what the act step did
/// to them; `None` when the pass touched none of its projects.
pub fn team_summary(
    team: &crate::policy::Team,
    report: &ScanReport,
    results: &[ItemResult],
    opened: &Strays,
) -> Option<Value> {
    let ours: Vec<&ItemResult> = results
        .iter()
        .filter(|r| {
            r.project
                .as_deref()
                .is_some_and(|p| team.projects.iter().any(|t| t.as_str() == p))
        })
        .collect();
    let of = |d: crate::model::Decision| -> Vec<Value> {
        ours.iter()
            .filter(|r| r.outcome == d)
            .map(|r| json!({"arn": r.arn, "project": r.project, "detail": r.detail}))
            .collect()
    };
    let deleted = of(crate::model::Decision::Deleted);
    let failed = of(crate::model::Decision::Failed);
    let would_delete = of(crate::model::Decision::WouldDelete);
    if opened.listed.is_empty()
        && deleted.is_empty()
        && failed.is_empty()
        && would_delete.is_empty()
    {
        return None;
    }
    Some(json!({
        "team": team.name,
        "projects": team.projects.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "run_id": report.run_id,
        "outcome": report.outcome,
        "ended_at": report.ended_at,
        "findings": opened.listed.iter().map(|f| json!({
            "arn": f.arn, "verdict": f.verdict, "project": f.project, "action": f.action,
            "lease_id": f.lease_id, "creator": f.creator,
        })).collect::<Vec<_>>(),
        "findings_more": opened.more,
        "deleted": deleted,
        "would_delete": would_delete,
        "failed": failed,
    }))
}

/// `ephemera mail test`: one message straight through the relay (no store, no daemon).
pub async fn send_test(
    smtp: &SmtpConfig,
    to: &str,
    now: DateTime<Utc>,
) -> Result<(), anyhow::Error> {
    let transport = SmtpTransport::new(smtp)?;
    let tls = match smtp.tls {
        crate::config::SmtpTls::None => "plain",
        crate::config::SmtpTls::Starttls => "STARTTLS",
        crate::config::SmtpTls::Implicit => "implicit TLS",
    };
    let rendered = Renderer::new().render(
        "test",
        &json!({"relay": transport.relay(), "tls": tls, "at": now}),
    )?;
    let domain = smtp
        .from
        .rsplit_once('@')
        .map_or("ephemera.invalid", |(_, d)| d);
    let id = format!("<test.{}@{domain}>", uuid::Uuid::new_v4());
    let message = build_message("test", &smtp.from, to, id, now, rendered)?;
    transport.send(message).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Decision;

    const RULES: &str = r#"
[[project]]
name = "web"
lessees = ["*"]
default_ttl = "2h"
max_ttl = "24h"
grace = "1h"

[[project]]
name = "data"
lessees = ["*"]
default_ttl = "2h"
max_ttl = "24h"
grace = "1h"

[handles]
octocat = "octo@example.com"

[[team]]
name = "web-platform"
mail = ["web@example.com"]
oncall = ["web-oncall@example.com"]
projects = ["web"]
members = ["hubot"]
"#;

    fn policy() -> Arc<Policy> {
        Arc::new(Policy::parse([(std::path::Path::new("t.toml"), RULES)]).expect("valid rules"))
    }

    fn notice(id: i64, owner: Option<&str>, project: Option<&str>) -> Notice {
        Notice {
            id,
            recipient: owner.map(str::to_owned),
            payload: json!({"arn": format!("arn:{id}"), "project": project}),
            resource_type: None,
            account: None,
            region: None,
            lease_task: None,
            lease_expires_at: None,
            spend_usd: None,
            creator: None,
        }
    }

    #[test]
    fn notices_roll_up_by_routed_recipient() {
        let ctx = |oncall: &[&str]| RollupContext {
            message_kind: MailKind::OwnerDigest,
            quiet_project: None,
            mail: true,
            slack: None,
            oncall: oncall.iter().map(|s| (*s).to_owned()).collect(),
            protect_tag: "ephemera:protect".into(),
            policy: policy(),
            overrunning: Vec::new(),
        };
        let notices = vec![
            notice(1, Some("a@example.com"), Some("web")),
            notice(2, Some("OctoCat"), Some("data")),
            notice(3, Some("octocat"), Some("web")),
            notice(4, Some("hubot"), Some("data")),
            notice(5, Some("web-platform"), None),
            notice(6, Some("stranger"), Some("web")),
            notice(7, None, Some("data")),
            notice(8, Some("stranger"), None),
        ];
        let (rollups, nobody, _) = roll_up_notices(&ctx(&["oncall@example.com"]), notices.clone());
        let got: Vec<(String, bool, Vec<i64>)> = rollups
            .iter()
            .map(|r| {
                (
                    r.recipient.clone(),
                    r.payload["unowned"] == true,
                    r.notices.clone(),
                )
            })
            .collect();
        let want = vec![
            ("a@example.com".to_owned(), false, vec![1]),
            ("octo@example.com".to_owned(), false, vec![2, 3]),
            // A member without an address, and the team itself, reach the team's mail.
            ("web@example.com".to_owned(), false, vec![4, 5]),
            // No reachable owner: the project's team on-call, else the global on-call.
            ("oncall@example.com".to_owned(), true, vec![7, 8]),
            ("web-oncall@example.com".to_owned(), true, vec![6]),
        ];
        assert_eq!(got, want);
        assert!(nobody.is_empty());
        let web = &rollups[2].payload["reasons"];
        assert_eq!(
            web,
            &json!([
                "owner team web-platform",
                "team web-platform, for its member hubot (no address of their own)"
            ])
        );
        // Without a global on-call, what no team owns reaches nobody (and is set apart).
        let (rollups, nobody, _) = roll_up_notices(&ctx(&[]), notices.clone());
        assert_eq!(nobody, vec![7, 8]);
        assert_eq!(rollups.len(), 4);
        // The canary's project is told to nobody, whoever owns its notices.
        let quiet = RollupContext {
            quiet_project: Some("data".into()),
            ..ctx(&["oncall@example.com"])
        };
        let (rollups, nobody, _) = roll_up_notices(&quiet, notices);
        assert_eq!(nobody, vec![2, 4, 7]);
        assert!(
            rollups
                .iter()
                .all(|r| r.notices.iter().all(|n| ![2, 4, 7].contains(n))),
            "{rollups:?}"
        );
    }

    /// An overrunning lease gets a line in the digest of the recipient its owner routes to,
    /// only when that recipient gets a digest now; an owner with none this round is told
    /// later (not returned as told); an unowned digest carries none.
    #[test]
    fn overrunning_leases_ride_on_their_owners_digest() {
        let over = |id: &str, owner: &str, project: &str| OverrunningLease {
            lease_id: id.into(),
            project: project.into(),
            task: "etl".into(),
            owner: owner.into(),
            running_seconds: 6000,
            p95_seconds: 1500,
            threshold_seconds: 3000,
        };
        let ctx = RollupContext {
            message_kind: MailKind::OwnerDigest,
            quiet_project: None,
            mail: true,
            slack: None,
            oncall: vec!["oncall@example.com".into()],
            protect_tag: "ephemera:protect".into(),
            policy: policy(),
            overrunning: vec![
                over("L1", "a@example.com", "web"),
                over("L2", "OctoCat", "data"),
                over("L3", "b@example.com", "web"),
            ],
        };
        let notices = vec![
            notice(1, Some("a@example.com"), Some("web")),
            notice(2, Some("octocat"), Some("web")),
            notice(3, None, Some("data")),
        ];
        let (rollups, _, told) = roll_up_notices(&ctx, notices);
        assert_eq!(told, ["L1", "L2"]);
        let lines = |to: &str| {
            rollups
                .iter()
                .find(|r| r.recipient == to)
                .map(|r| r.payload["overrunning"].clone())
                .expect("a digest")
        };
        assert_eq!(
            lines("a@example.com"),
            json!([{"lease_id": "L1", "project": "web", "task": "etl", "running": "1h40m",
                    "p95": "25m", "threshold": "50m"}])
        );
        assert_eq!(lines("octo@example.com")[0]["lease_id"], "L2");
        assert_eq!(lines("oncall@example.com"), json!([]));
    }

    #[test]
    fn short_durations() {
        for (secs, want) in [
            (0, "0m"),
            (59, "0m"),
            (1500, "25m"),
            (3600, "1h"),
            (6000, "1h40m"),
            (86_400, "1d"),
            (97_200, "1d3h"),
        ] {
            assert_eq!(short_duration(secs), want);
        }
    }

    #[test]
    fn dead_letters_come_from_refusals_never_from_outages() {
        use Failure::*;
        for (failure, before, dead) in [
            (Unsendable, 0, true),
            (Refused { permanent: true }, 0, false),
            (Refused { permanent: true }, 1, false),
            (Refused { permanent: true }, 2, true),
            (Refused { permanent: false }, 8, false),
            (Refused { permanent: false }, 9, true),
            (Down, 0, false),
            (Down, 1_000, false),
        ] {
            assert_eq!(
                dead_letter(failure, before),
                dead,
                "{failure:?} after {before}"
            );
        }
    }

    #[test]
    fn a_team_summary_holds_only_its_projects() {
        let policy = policy();
        let team = &policy.directory().teams["web-platform"];
        let report = ScanReport {
            run_id: "R1".into(),
            ..ScanReport::default()
        };
        let result = |arn: &str, project: Option<&str>, outcome| ItemResult {
            arn: arn.into(),
            resource_type: "ec2:volume".into(),
            project: project.map(str::to_owned),
            outcome,
            detail: String::new(),
        };
        let results = vec![
            result("w-del", Some("web"), Decision::Deleted),
            result("w-fail", Some("web"), Decision::Failed),
            result("d-del", Some("data"), Decision::Deleted),
            result("none", None, Decision::Deleted),
        ];
        let s = team_summary(team, &report, &results, &Strays::default()).expect("news");
        assert_eq!(
            s["deleted"],
            json!([{"arn": "w-del", "project": "web", "detail": ""}])
        );
        assert_eq!(s["failed"][0]["arn"], "w-fail");
        assert_eq!(s["team"], "web-platform");
        // Nothing in its projects: no message.
        let others = &results[2..];
        assert!(team_summary(team, &report, others, &Strays::default()).is_none());
    }

    /// With `[slack]`, a notice also goes to the target its routed address maps to (one
    /// message per target, however many addresses map to it), unowned ones to Slack's
    /// on-call; without `[smtp]`, Slack alone, and a notice no channel reaches is set apart.
    #[test]
    fn notices_roll_up_for_slack_by_mapped_address() {
        let slack = SlackConfig {
            url: crate::config::SecretSource::Env("X".into()),
            oncall: SlackTarget::parse("#ops"),
            owners: [
                ("a@example.com", "@U024BE7LH"),
                ("octo@example.com", "#web"),
                ("web@example.com", "#web"),
            ]
            .into_iter()
            .map(|(a, t)| (a.to_owned(), SlackTarget::parse(t).expect("target")))
            .collect(),
            timeout: crate::model::HumanDuration::from_secs(1),
            retry_backoff: crate::model::HumanDuration::from_secs(1),
            give_up_after: crate::model::HumanDuration::from_secs(60),
        };
        let ctx = |mail: bool| RollupContext {
            message_kind: MailKind::ReapedNotice,
            quiet_project: None,
            mail,
            oncall: vec!["oncall@example.com".into()],
            slack: Some(slack.clone()),
            protect_tag: "ephemera:protect".into(),
            policy: policy(),
            overrunning: Vec::new(),
        };
        let notices = vec![
            notice(1, Some("A@Example.com"), Some("web")),
            notice(2, Some("octocat"), Some("data")),
            notice(3, Some("web-platform"), None),
            notice(4, Some("b@example.com"), Some("web")),
            notice(5, Some("stranger"), None),
        ];
        let got = |rollups: &[Rollup]| -> Vec<(MailKind, String, bool, Vec<i64>)> {
            rollups
                .iter()
                .map(|r| {
                    let p = if r.kind == MailKind::Slack {
                        assert_eq!(r.payload["message"], "reaped-notice");
                        assert!(r.dedupe_key.starts_with("slack:reaped-notice:"));
                        &r.payload["payload"]
                    } else {
                        &r.payload
                    };
                    (
                        r.kind,
                        r.recipient.clone(),
                        p["unowned"] == true,
                        r.notices.clone(),
                    )
                })
                .collect()
        };
        let (rollups, nobody, _) = roll_up_notices(&ctx(false), notices.clone());
        assert_eq!(
            got(&rollups),
            vec![
                // b@ has no Slack target and there is no mail: on-call hears of it.
                (MailKind::Slack, "#ops".into(), false, vec![4]),
                (MailKind::Slack, "#web".into(), false, vec![2, 3]),
                (MailKind::Slack, "@U024BE7LH".into(), false, vec![1]),
                (MailKind::Slack, "#ops".into(), true, vec![5]),
            ]
        );
        assert_eq!(
            rollups[0].payload["payload"]["reasons"],
            json!([
                "on-call: b@example.com has no Slack target in [slack.owners] (owner b@example.com)"
            ])
        );
        assert!(nobody.is_empty());
        // Without a Slack on-call target, nobody hears of it (set apart, closed).
        let mut alone = ctx(false);
        alone.slack.as_mut().expect("slack").oncall = None;
        let (rollups, nobody, _) = roll_up_notices(&alone, notices.clone());
        assert_eq!(nobody, vec![4, 5]);
        assert_eq!(rollups.len(), 2);
        let (rollups, nobody, _) = roll_up_notices(&ctx(true), notices);
        let mail: Vec<_> = got(&rollups)
            .into_iter()
            .filter(|r| r.0 == MailKind::ReapedNotice)
            .map(|r| (r.1, r.3))
            .collect();
        assert_eq!(
            mail,
            vec![
                ("A@Example.com".into(), vec![1]),
                ("b@example.com".into(), vec![4]),
                ("octo@example.com".into(), vec![2]),
                ("web@example.com".into(), vec![3]),
                ("oncall@example.com".into(), vec![5]),
            ]
        );
        assert_eq!(rollups.len(), 8, "five mails and three Slack messages");
        assert!(nobody.is_empty());
    }

    /// A pass whose findings and deletions were all the canary's is no news; a failed deletion,
    /// a cap or an incomplete walk still is.
    #[test]
    fn a_pass_of_the_canary_alone_is_no_news() {
        let report = |reap: crate::resource::ReapSummary| ScanReport {
            run_id: "R1".into(),
            findings_opened: 1,
            reap: Some(reap),
            ..ScanReport::default()
        };
        let none = Strays::default();
        let marked = crate::resource::ReapSummary {
            marked: 1,
            deleted: 1,
            ..Default::default()
        };
        assert!(pass_summary(&report(marked.clone()), &[], &none, false).is_some());
        assert!(pass_summary(&report(marked.clone()), &[], &none, true).is_none());
        for news in [
            crate::resource::ReapSummary {
                failed: 1,
                ..marked.clone()
            },
            crate::resource::ReapSummary {
                capped: vec!["project:canary".into()],
                ..marked.clone()
            },
        ] {
            assert!(pass_summary(&report(news), &[], &none, true).is_some());
        }
    }
}
