//! Webhooks: ephemera's state changes as CloudEvents 1.0 (structured JSON), signed with
//! HMAC-SHA256, delivered at least once from the outbox the mail goes through.
//!
//! An event is queued as one outbox row (kind `webhook`) per `[[webhooks]]` endpoint whose
//! filter takes it, keyed by endpoint and event id, so queueing the same event twice queues it
//! once. The deliverer ([`crate::mail::webhook`]) runs on the leader: it claims each due row under the
//! leader's fencing token, POSTs it, and marks it sent on a 2xx; a failure is retried with a
//! doubling back-off, and a row refused for good (a 4xx other than 408 and 429) or still
//! undelivered after the endpoint's `give_up_after` becomes a dead letter (`ephemera mail
//! dead`, `ephemera mail retry`, which list and retry the whole outbox).
//!
//! A retry sends the same event (same `id`) with a fresh signature: receivers deduplicate by
//! `id`, and check that the signature's time is recent.
//!
//! Architecture Invariant: a secret is read once, at start, and never logged or stored.

use std::sync::Arc;

use hmac::{KeyInit, Mac};
use sha2::Sha256;

use crate::config::WebhookConfig;
use crate::model::{Event, MailKind};
use crate::store::{Store, StoreError};

/// Wakes the deliverer when events were queued (one per process: a spurious wake is one
/// extra round that finds nothing due).
pub(crate) static KICK: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// The header carrying the signature: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">`.
pub const SIGNATURE_HEADER: &str = "X-Ephemera-Signature";

/// The `X-Ephemera-Signature` value of `body` signed at `t` (Unix seconds).
pub fn signature(secret: &[u8], t: i64, body: &[u8]) -> String {
    let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(secret)
        .expect("HMAC takes a key of any length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook `{name}`: cannot read its secret from {from}: {why}")]
    Secret {
        name: String,
        from: String,
        why: String,
    },
    #[error("cannot build the webhook HTTP client")]
    Client(#[source] reqwest::Error),
}

/// A configured endpoint with its secret.
pub(crate) struct Endpoint {
    pub(crate) config: WebhookConfig,
    secret: Vec<u8>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("config", &self.config)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl Endpoint {
    pub(crate) fn sign(&self, t: i64, body: &[u8]) -> String {
        signature(&self.secret, t, body)
    }
}

/// The endpoints events go to; cheap to clone. With none configured, emitting queues nothing.
#[derive(Debug, Clone, Default)]
pub struct Webhooks {
    endpoints: Arc<Vec<Endpoint>>,
}

impl Webhooks {
    /// The endpoints of `[[webhooks]]`, their secrets read now.
    pub fn new(configs: &[WebhookConfig]) -> Result<Webhooks, WebhookError> {
        let mut endpoints = Vec::with_capacity(configs.len());
        for c in configs {
            let secret = c
                .secret
                .read()
                .map(String::into_bytes)
                .map_err(|(from, why)| WebhookError::Secret {
                    name: c.name.clone(),
                    from,
                    why,
                })?;
            endpoints.push(Endpoint {
                config: c.clone(),
                secret,
            });
        }
        Ok(Webhooks {
            endpoints: Arc::new(endpoints),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    pub(crate) fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    pub(crate) fn endpoint(&self, name: &str) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.config.name == name)
    }

    /// Queues `event` for every endpoint that wants it; returns how many rows were queued
    /// (none for an event queued before).
    pub async fn emit(&self, store: &Store, event: &Event) -> Result<u64, StoreError> {
        self.emit_all(store, std::slice::from_ref(event)).await
    }

    /// Queues `events` for the endpoints that want them, in one transaction.
    pub async fn emit_all(&self, store: &Store, events: &[Event]) -> Result<u64, StoreError> {
        let rows: Vec<_> = events
            .iter()
            .flat_map(|event| {
                self.endpoints
                    .iter()
                    .filter(|e| e.config.wants(event.kind))
                    .map(move |e| {
                        (
                            Some(e.config.name.clone()),
                            format!("{}/{}", e.config.name, event.id),
                            event.cloud_event(),
                            event.time,
                        )
                    })
            })
            .collect();
        let queued = store.enqueue_batch(MailKind::Webhook, rows).await?;
        if queued > 0 {
            KICK.notify_one();
        }
        Ok(queued)
    }

    /// Whether some endpoint takes events of `kind` (so a caller can skip building them).
    pub fn wants(&self, kind: crate::model::EventKind) -> bool {
        self.endpoints.iter().any(|e| e.config.wants(kind))
    }

    /// Like [`Webhooks::emit`], for callers whose own work is done: a failure to queue is
    /// logged, not returned (the state change it reports has happened either way).
    pub async fn emit_logged(&self, store: &Store, event: Event) {
        if self.is_empty() {
            return;
        }
        if let Err(e) = self.emit(store, &event).await {
            tracing::error!(event = %event.id, error = %crate::error_chain(&e), "cannot queue a webhook event");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SecretSource;
    use crate::model::EventKind;

    fn endpoint(events: &[&str]) -> WebhookConfig {
        WebhookConfig {
            name: "e".into(),
            url: "http://127.0.0.1:1/".into(),
            secret: SecretSource::Env("X".into()),
            events: events.iter().map(|s| s.to_string()).collect(),
            timeout: crate::model::HumanDuration::from_secs(1),
            retry_backoff: crate::model::HumanDuration::from_secs(1),
            give_up_after: crate::model::HumanDuration::from_secs(60),
        }
    }

    #[test]
    fn filters_take_all_a_group_or_a_type() {
        use EventKind::*;
        for (filter, kind, wants) in [
            (&["*"][..], LeaseAcquired, true),
            (&["lease.*"], LeaseReleased, true),
            (&["lease.*"], ResourceDeleted, false),
            (&["resource.deleted"], ResourceDeleted, true),
            (&["resource.deleted"], ResourceFailed, false),
            (&["reaper.*", "walk.incomplete"], WalkIncomplete, true),
            (&["lease"], LeaseAcquired, false),
            (&["leas.*"], LeaseAcquired, false),
        ] {
            assert_eq!(
                endpoint(filter).wants(kind),
                wants,
                "{filter:?} {}",
                kind.as_str()
            );
        }
    }

    /// The signature of a known key, time and body (computed independently with Python's
    /// `hmac.new(b"0123456789abcdef", b"1700000000.{}", hashlib.sha256).hexdigest()`).
    #[test]
    fn signature_is_hmac_sha256_of_time_dot_body() {
        assert_eq!(
            signature(b"0123456789abcdef", 1_700_000_000, b"{}"),
            "t=1700000000,v1=e4f8e2ecae2295b2ddb2f0b5584c8275e226c0ebe9b3b819e70156bb67122e3e"
        );
    }
}
