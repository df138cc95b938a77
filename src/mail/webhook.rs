//! The webhook deliverer: due `webhook` rows of the outbox POSTed to their endpoints (the
//! events themselves and their signing: [`crate::webhook`]), and due `slack` rows POSTed as
//! Block Kit to `[slack]`'s incoming webhook ([`super::slack`] renders them).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::clock::Clock;
use crate::config::{SlackConfig, SlackTarget};
use crate::metrics::Metrics;
use crate::model::{Event, EventKind, MailKind};
use crate::store::{OutboxRow, Store, StoreError};
use anyhow::Context;

use crate::webhook::{Endpoint, SIGNATURE_HEADER, WebhookError, Webhooks};

/// Longest wait between retries of one event.
const MAX_BACKOFF: TimeDelta = TimeDelta::hours(1);
/// Longest sleep between rounds (a kick or a new leader starts one sooner).
const MAX_TICK: Duration = Duration::from_secs(30);
/// Most rows one round takes.
const ROUND_LIMIT: u32 = 500;
/// `lease.expiring` is told this long before a lease ends.
const EXPIRING_WITHIN: TimeDelta = TimeDelta::minutes(30);
/// `lease.expired` is told for leases that ended at most this long ago (a daemon down longer
/// does not tell older ends).
const EXPIRED_LOOKBACK: TimeDelta = TimeDelta::days(1);
/// Leases read per query when looking for lease ends.
const LEASE_PAGE: u32 = 1000;
/// A claim outlives the attempt's timeout by this much.
const CLAIM_MARGIN: TimeDelta = TimeDelta::seconds(5);
/// An endpoint that refuses an event this many times (a 4xx other than 408 and 429) makes it
/// a dead letter: a receiver that rejects it will not accept it later.
const MAX_REFUSALS: u32 = 3;

/// What one round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RoundReport {
    pub delivered: u64,
    pub failed: u64,
    pub dead: u64,
}

/// The deliverer; cheap to clone.
#[derive(Debug, Clone)]
pub struct Deliverer {
    inner: Arc<Inner>,
}

/// `[slack]` with its incoming webhook's URL, read at start.
pub struct Slack {
    config: SlackConfig,
    url: String,
}

impl std::fmt::Debug for Slack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slack")
            .field("config", &self.config)
            .field("url", &"<redacted>")
            .finish()
    }
}

impl Slack {
    /// Reads the URL now (it is a credential: never logged).
    pub fn new(config: &SlackConfig) -> Result<Slack, WebhookError> {
        let url = config
            .url
            .read()
            .map_err(|(from, why)| WebhookError::Secret {
                name: SLACK.into(),
                from,
                why,
            })?;
        Ok(Slack {
            config: config.clone(),
            url,
        })
    }

    fn post(&self, client: &reqwest::Client, body: &serde_json::Value) -> reqwest::RequestBuilder {
        client
            .post(&self.url)
            .timeout(Duration::from_secs(self.config.timeout.as_secs()))
            .json(body)
    }
}

/// What metrics and logs call Slack's deliveries (a `[[webhooks]]` endpoint cannot take it).
pub const SLACK: &str = "slack";

#[derive(Debug)]
struct Inner {
    webhooks: Webhooks,
    slack: Option<Slack>,
    store: Store,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    client: reqwest::Client,
    round: tokio::sync::Mutex<()>,
    /// Ids of the lease-end events queued by this process (see `tell_lease_ends`).
    told: tokio::sync::Mutex<std::collections::HashSet<String>>,
}

/// The client every delivery goes through: no redirects (a signed event goes where it was
/// configured to go).
fn client() -> Result<reqwest::Client, WebhookError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("ephemera/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(WebhookError::Client)
}

/// The POST of `event` (CloudEvents JSON) to `endpoint`, signed now.
fn signed_post(
    client: &reqwest::Client,
    endpoint: &Endpoint,
    event: &serde_json::Value,
) -> reqwest::RequestBuilder {
    let body = serde_json::to_vec(event).unwrap_or_default();
    let t = crate::clock::Clock::now(&crate::clock::SystemClock).timestamp();
    client
        .post(&endpoint.config.url)
        .timeout(Duration::from_secs(endpoint.config.timeout.as_secs()))
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/cloudevents+json",
        )
        .header(SIGNATURE_HEADER, endpoint.sign(t, &body))
        .body(body)
}

/// `ephemera webhook test --endpoint slack`: a test message to `[slack]`'s on-call target
/// (else its channel), straight; Slack's answer, or why there was none.
pub async fn send_slack_test(config: &SlackConfig) -> anyhow::Result<reqwest::StatusCode> {
    let slack = Slack::new(config)?;
    let target = config
        .oncall
        .clone()
        .unwrap_or_else(|| SlackTarget::Channel("general".into()));
    let mut body = super::slack::message(MailKind::OncallSummary, &serde_json::json!({}), &target);
    body["text"] = "ephemera: a test message from `ephemera webhook test`".into();
    body["blocks"] = serde_json::json!([{"type": "section", "text": {"type": "mrkdwn",
        "text": "A test message from `ephemera webhook test --endpoint slack`: the on-call summary and owner notices will arrive like this."}}]);
    if config.oncall.is_none() {
        body.as_object_mut().map(|o| o.remove("channel"));
    }
    let resp = slack
        .post(&client()?, &body)
        .send()
        .await
        .context("cannot reach the [slack] incoming webhook")?;
    Ok(resp.status())
}

/// `ephemera webhook test`: one signed `dev.ephemera.test` event POSTed to endpoint `name`
/// now, straight (not through the outbox); the endpoint's answer, or why there was none.
pub async fn send_test(webhooks: &Webhooks, name: &str) -> anyhow::Result<reqwest::StatusCode> {
    let endpoint = webhooks
        .endpoint(name)
        .with_context(|| format!("no [[webhooks]] endpoint named `{name}`"))?;
    let now = crate::clock::Clock::now(&crate::clock::SystemClock);
    let event = serde_json::json!({
        "specversion": "1.0",
        "id": format!("test:{}", uuid::Uuid::new_v4()),
        "source": crate::model::EVENT_SOURCE,
        "type": "dev.ephemera.test",
        "subject": "test",
        "time": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "datacontenttype": "application/json",
        "data": {"message": "a test event from `ephemera webhook test`", "endpoint": name},
    });
    let resp = signed_post(&client()?, endpoint, &event)
        .send()
        .await
        .with_context(|| format!("cannot reach {}", endpoint.config.url))?;
    Ok(resp.status())
}

/// One delivery attempt, ready to send.
struct Attempt {
    request: reqwest::RequestBuilder,
    /// The event id, or the Slack message and its target, for the logs.
    what: String,
    retry_backoff: crate::model::HumanDuration,
    give_up_after: crate::model::HumanDuration,
}

/// How one attempt ended.
enum Outcome {
    Delivered,
    /// Worth retrying: no answer, a timeout, a 5xx, 408 or 429.
    Down(String),
    /// The endpoint said no (another 4xx, or a 3xx we do not follow).
    Refused(String),
}

impl Deliverer {
    /// The deliverer of `webhooks` and `slack`; `None` when there are neither.
    pub fn new(
        webhooks: Webhooks,
        slack: Option<&SlackConfig>,
        store: Store,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
    ) -> Result<Option<Deliverer>, WebhookError> {
        if webhooks.is_empty() && slack.is_none() {
            return Ok(None);
        }
        let slack = slack.map(Slack::new).transpose()?;
        let names = webhooks
            .endpoints()
            .iter()
            .map(|e| e.config.name.as_str())
            .chain(slack.as_ref().map(|_| SLACK));
        for name in names {
            for outcome in ["delivered", "failed", "dead"] {
                metrics
                    .webhook_deliveries
                    .with_label_values(&[name, outcome]);
            }
        }
        let client = client()?;
        Ok(Some(Deliverer {
            inner: Arc::new(Inner {
                webhooks,
                slack,
                store,
                metrics,
                clock,
                client,
                round: tokio::sync::Mutex::new(()),
                told: tokio::sync::Mutex::default(),
            }),
        }))
    }

    /// The delivery loop of the daemon, on the leader only: a first round right away that
    /// tries everything pending whatever its back-off, then a round per tick or kick.
    pub async fn run(
        self,
        leadership: crate::leader::Leadership,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let tick = self
            .inner
            .webhooks
            .endpoints()
            .iter()
            .map(|e| e.config.retry_backoff)
            .chain(self.inner.slack.as_ref().map(|s| s.config.retry_backoff))
            .map(|d| Duration::from_secs(d.as_secs()))
            .min()
            .unwrap_or(MAX_TICK)
            .clamp(Duration::from_secs(1), MAX_TICK);
        let mut ignore_backoff = true;
        let mut elections = leadership.changes();
        loop {
            if leadership.is_leader() {
                if let Err(e) = self.round_as(&leadership, ignore_backoff).await {
                    tracing::error!(error = %crate::error_chain(&e), "webhook round failed");
                }
                ignore_backoff = false;
            }
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                _ = crate::webhook::KICK.notified() => {}
                _ = elections.changed() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    /// One round as the only process (tests, one-shot commands).
    pub async fn round(&self, ignore_backoff: bool) -> Result<RoundReport, StoreError> {
        self.round_as(&crate::leader::Leadership::alone(), ignore_backoff)
            .await
    }

    async fn round_as(
        &self,
        leadership: &crate::leader::Leadership,
        ignore_backoff: bool,
    ) -> Result<RoundReport, StoreError> {
        let inner = &self.inner;
        let _round = inner.round.lock().await;
        let now = inner.clock.now();
        if leadership.is_leader() {
            self.tell_lease_ends(now).await?;
        }
        let due = inner
            .store
            .due_messages(
                &[MailKind::Webhook, MailKind::Slack],
                (!ignore_backoff).then_some(now),
                ROUND_LIMIT,
            )
            .await?;
        let mut report = RoundReport::default();
        // An endpoint that is down is not tried again this round: its other events wait.
        let mut down: std::collections::HashSet<String> = std::collections::HashSet::new();
        for row in due {
            let name = if row.kind == MailKind::Slack {
                SLACK.to_owned()
            } else {
                row.recipient.clone().unwrap_or_default()
            };
            if down.contains(&name) || !self.claim(leadership, &row).await? {
                continue;
            }
            match self.deliver(row, &name, now).await? {
                Some(true) => report.delivered += 1,
                Some(false) => {
                    report.failed += 1;
                    down.insert(name);
                }
                None => report.dead += 1,
            }
        }
        // The outbox's gauges (mail and webhooks), kept here too for a deployment without mail.
        let pending = inner.store.outbox_pending().await?;
        let dead = inner.store.dead_letter_count().await?;
        inner
            .metrics
            .outbox_pending
            .set(i64::try_from(pending).unwrap_or(i64::MAX));
        inner
            .metrics
            .outbox_dead
            .set(i64::try_from(dead).unwrap_or(i64::MAX));
        Ok(report)
    }

    /// Queues `lease.expiring` for each lease ending within [`EXPIRING_WITHIN`] (taken for
    /// longer than that) and `lease.expired` for each that ended unreleased within
    /// [`EXPIRED_LOOKBACK`]: once per lease and end (a renewal that moves the end is told
    /// again). State is derived from the clock, so this looks on every round; what was told
    /// is kept in memory, and the outbox's keys make a repeat after a restart a no-op.
    async fn tell_lease_ends(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        let inner = &self.inner;
        let hooks = &inner.webhooks;
        if !hooks.wants(EventKind::LeaseExpiring) && !hooks.wants(EventKind::LeaseExpired) {
            return Ok(());
        }
        // Page by end time (inclusive, so leases ending in the same millisecond as a page's
        // last are read again rather than skipped; the told set drops the repeats).
        let mut leases = Vec::new();
        let mut from = now - EXPIRED_LOOKBACK - TimeDelta::milliseconds(1);
        loop {
            let page = inner
                .store
                .leases_ending_between(from, now + EXPIRING_WITHIN, LEASE_PAGE)
                .await?;
            let full = page.len() == LEASE_PAGE as usize;
            let last = page
                .last()
                .map(|l| l.ends_at() - TimeDelta::milliseconds(1));
            leases.extend(page);
            match last {
                Some(next) if full && next > from => from = next,
                _ => break,
            }
        }
        let mut told = inner.told.lock().await;
        let mut events = Vec::new();
        for l in &leases {
            let ends = l.ends_at();
            let kind = if ends <= now {
                EventKind::LeaseExpired
            } else if l.created_at < ends - EXPIRING_WITHIN {
                EventKind::LeaseExpiring
            } else {
                continue;
            };
            let occurrence = format!("{}:{}", l.id, ends.timestamp_millis());
            let event = Event::new(
                kind,
                &occurrence,
                if kind == EventKind::LeaseExpired {
                    ends
                } else {
                    now
                },
                format!("lease/{}", l.id),
                serde_json::json!({
                    "lease_id": l.id.to_string(), "project": l.project.as_str(),
                    "task": l.task, "owner": l.owner, "principal": l.principal,
                    "created_at": l.created_at, "expires_at": l.expires_at, "ends_at": ends,
                    "last_heartbeat_at": l.last_heartbeat_at,
                }),
            );
            if told.insert(event.id.clone()) {
                events.push(event);
            }
        }
        // Forget what ended before the look-back: it is never asked about again.
        told.retain(|id| {
            id.rsplit(':')
                .next()
                .and_then(|t| t.parse::<i64>().ok())
                .is_none_or(|t| t > (now - EXPIRED_LOOKBACK).timestamp_millis())
        });
        drop(told);
        if let Err(e) = hooks.emit_all(&inner.store, &events).await {
            // Told again next round: forget them.
            let mut told = inner.told.lock().await;
            for ev in &events {
                told.remove(&ev.id);
            }
            return Err(e);
        }
        Ok(())
    }

    /// Whether this process may send row `row` now (see the mailer's claim: the same fence).
    async fn claim(
        &self,
        leadership: &crate::leader::Leadership,
        row: &OutboxRow,
    ) -> Result<bool, StoreError> {
        if !leadership.is_leader() {
            return Ok(false);
        }
        let Some(fence) = leadership.fence() else {
            return Ok(true);
        };
        let timeout = if row.kind == MailKind::Slack {
            self.inner.slack.as_ref().map(|s| s.config.timeout)
        } else {
            row.recipient
                .as_deref()
                .and_then(|n| self.inner.webhooks.endpoint(n))
                .map(|e| e.config.timeout)
        }
        .map_or(TimeDelta::seconds(10), |t| t.to_chrono());
        let wall = crate::clock::Clock::now(&crate::clock::SystemClock);
        self.inner
            .store
            .claim_message(
                row.id,
                crate::leader::LEADER_LOCK,
                fence,
                wall,
                wall + timeout + CLAIM_MARGIN,
            )
            .await
    }

    /// The request that delivers `row` (to endpoint `name`), or why there can be none.
    fn attempt(&self, row: &OutboxRow, name: &str) -> Result<Attempt, String> {
        let inner = &self.inner;
        if row.kind == MailKind::Slack {
            let slack = inner.slack.as_ref().ok_or("no [slack] in the config")?;
            let to = row.recipient.as_deref().unwrap_or_default();
            let target = SlackTarget::parse(to).ok_or(format!("`{to}` is not a Slack target"))?;
            let kind: MailKind = row.payload["message"]
                .as_str()
                .and_then(|k| k.parse().ok())
                .filter(|k| MailKind::MESSAGES.contains(k))
                .ok_or("not a Slack message: no known `message` kind")?;
            let body = super::slack::message(kind, &row.payload["payload"], &target);
            return Ok(Attempt {
                request: slack.post(&inner.client, &body),
                what: format!("{kind} to {to}"),
                retry_backoff: slack.config.retry_backoff,
                give_up_after: slack.config.give_up_after,
            });
        }
        let endpoint = inner
            .webhooks
            .endpoint(name)
            .ok_or_else(|| format!("no webhook `{name}` in the config"))?;
        Ok(Attempt {
            request: signed_post(&inner.client, endpoint, &row.payload),
            what: row.payload["id"].as_str().unwrap_or_default().to_owned(),
            retry_backoff: endpoint.config.retry_backoff,
            give_up_after: endpoint.config.give_up_after,
        })
    }

    /// One attempt: `Some(true)` delivered, `Some(false)` failed (retried later), `None` a
    /// dead letter now.
    async fn deliver(
        &self,
        row: OutboxRow,
        name: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<bool>, StoreError> {
        let inner = &self.inner;
        let attempt = match self.attempt(&row, name) {
            Ok(a) => a,
            Err(why) => {
                // Nobody to deliver to, ever (removed from the config, or unreadable).
                inner
                    .store
                    .mark_failed(row.id, now, why, true, Some(now))
                    .await?;
                inner
                    .metrics
                    .webhook_deliveries
                    .with_label_values(&[name, "dead"])
                    .inc();
                return Ok(None);
            }
        };
        let event_id = attempt.what;
        let outcome = match attempt.request.send().await {
            Ok(resp) => {
                let status = resp.status();
                if status.is_success() {
                    Outcome::Delivered
                } else if status.is_server_error()
                    || status == reqwest::StatusCode::REQUEST_TIMEOUT
                    || status == reqwest::StatusCode::TOO_MANY_REQUESTS
                {
                    Outcome::Down(format!("the endpoint answered {status}"))
                } else {
                    Outcome::Refused(format!("the endpoint answered {status}"))
                }
            }
            Err(e) => Outcome::Down(crate::error_chain(&e)),
        };
        let metric = |outcome: &str| {
            inner
                .metrics
                .webhook_deliveries
                .with_label_values(&[name, outcome])
                .inc();
        };
        let (error, refused) = match outcome {
            Outcome::Delivered => {
                // Should the daemon die before this mark commits, the event goes again after
                // the restart with the same id: at least once, never zero times.
                inner.store.mark_sent(row.id, now).await?;
                metric("delivered");
                tracing::info!(endpoint = %name, event = %event_id, attempts = row.attempts + 1, "webhook delivered");
                return Ok(Some(true));
            }
            Outcome::Down(e) => (e, false),
            Outcome::Refused(e) => (e, true),
        };
        let too_old = now - row.created_at > attempt.give_up_after.to_chrono();
        let dead = too_old || (refused && row.refusals + 1 >= MAX_REFUSALS);
        let retry_at = now
            + crate::model::backoff(attempt.retry_backoff.to_chrono(), row.attempts, MAX_BACKOFF);
        inner
            .store
            .mark_failed(
                row.id,
                retry_at,
                error.clone(),
                refused,
                dead.then_some(now),
            )
            .await?;
        if dead {
            metric("dead");
            tracing::error!(endpoint = %name, event = %event_id, error = %error, attempts = row.attempts + 1, "webhook event not delivered for good: kept as a dead letter (`ephemera mail dead`, `ephemera mail retry`)");
            Ok(None)
        } else {
            metric("failed");
            tracing::warn!(endpoint = %name, event = %event_id, error = %error, attempts = row.attempts + 1, retry_at = %retry_at, "webhook not delivered; will retry");
            Ok(Some(false))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{SecretSource, WebhookConfig};
    use crate::model::{HumanDuration, Lease, LeaseId, ProjectName};
    use crate::store::Quota;

    /// More leases near their end than one page holds: every one is told, once, whatever the
    /// paging; a second round tells nothing again.
    #[tokio::test]
    async fn every_lease_end_is_told_once_across_pages() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("s.db")).await.expect("opens");
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "0123456789abcdef").expect("secret");
        let webhooks = Webhooks::new(&[WebhookConfig {
            name: "ops".into(),
            url: "http://127.0.0.1:9/".into(),
            secret: SecretSource::File(secret),
            events: vec!["lease.expired".into(), "lease.expiring".into()],
            timeout: HumanDuration::from_secs(1),
            retry_backoff: HumanDuration::from_secs(1),
            give_up_after: HumanDuration::from_secs(3600),
        }])
        .expect("webhooks");
        let now = DateTime::parse_from_rfc3339("2026-12-06T12:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let clock = Arc::new(crate::clock::ManualClock::new(now));
        let n = LEASE_PAGE as i64 + 205;
        for i in 0..n {
            // Ended in the last ten hours, several per millisecond-free minute: pages meet ties.
            let ends = now - TimeDelta::minutes(600) + TimeDelta::minutes(i / 3);
            let l = Lease {
                id: LeaseId::generate(),
                project: ProjectName::parse("web").expect("name"),
                task: format!("t{i}"),
                owner: "o@example.com".into(),
                principal: "ci".into(),
                created_at: ends - TimeDelta::hours(2),
                expires_at: ends,
                heartbeat_interval: None,
                last_heartbeat_at: None,
                released_at: None,
                labels: Default::default(),
                regions: vec![],
            };
            store
                .insert_lease(l, now, Quota::<StoreError>::unlimited())
                .await
                .expect("inserts");
        }
        let d = Deliverer::new(
            webhooks,
            None,
            store.clone(),
            Arc::new(Metrics::new()),
            clock,
        )
        .expect("deliverer")
        .expect("endpoints");
        d.tell_lease_ends(now).await.expect("told");
        let queued = |rows: Vec<OutboxRow>| {
            rows.into_iter()
                .filter(|r| r.kind == MailKind::Webhook)
                .count() as i64
        };
        assert_eq!(queued(store.outbox_rows().await.expect("rows")), n);
        d.tell_lease_ends(now).await.expect("told");
        assert_eq!(queued(store.outbox_rows().await.expect("rows")), n, "once");
    }
}
