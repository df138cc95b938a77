//! Who made a resource: CloudTrail's event history (LookupEvents by resource name, the last 90
//! days), asked at most once per resource, for `untagged` and `unknown-lease` findings.

use aws_config::SdkConfig;
use aws_sdk_cloudtrail::types::{LookupAttribute, LookupAttributeKey};
use serde::Deserialize;

use super::{BoxError, RateLimiter, count};
use crate::metrics::Metrics;
use crate::model::Arn;

/// CloudTrail answers LookupEvents at 2 calls per second per account and region.
pub const CALLS_PER_SECOND: u32 = 2;

/// The IAM action of the lookup.
pub const ACTIONS: &[&str] = &["cloudtrail:LookupEvents"];

/// A lookup that failed (throttled past the retries, no permission): asked again next pass.
#[derive(Debug, thiserror::Error)]
#[error("LookupEvents")]
pub struct LookupError(#[source] pub BoxError);

/// One event of the history, as the lookup returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub name: String,
    pub time: Option<i64>,
    pub username: Option<String>,
    /// The event record (JSON text) whose `userIdentity.arn` names the caller.
    pub record: Option<String>,
}

#[derive(Deserialize)]
struct Record {
    #[serde(rename = "userIdentity")]
    user_identity: Option<Identity>,
}

#[derive(Deserialize)]
struct Identity {
    arn: Option<String>,
}

/// The creator among a resource's events: the caller of its earliest creating event (`Create…`,
/// `Run…`, `Register…`, `Allocate…`, `Import…`, `Copy…`), by its identity's ARN, else the
/// user name CloudTrail gives.
pub fn creator_of(events: &[Event]) -> Option<String> {
    const CREATING: [&str; 6] = ["Create", "Run", "Register", "Allocate", "Import", "Copy"];
    let first = events
        .iter()
        .filter(|e| CREATING.iter().any(|p| e.name.starts_with(p)))
        .min_by_key(|e| e.time.unwrap_or(i64::MAX))?;
    first
        .record
        .as_deref()
        .and_then(|r| serde_json::from_str::<Record>(r).ok())
        .and_then(|r| r.user_identity)
        .and_then(|i| i.arn)
        .or_else(|| first.username.clone())
        .filter(|c| !c.trim().is_empty())
}

/// Looks up who made `arn` in its (account, region) through `conf`; `Ok(None)` when the history
/// has no creating event for it (older than 90 days, or filed under another name).
pub async fn lookup(
    conf: &SdkConfig,
    arn: &Arn,
    limiter: &RateLimiter,
    metrics: &Metrics,
) -> Result<Option<String>, LookupError> {
    let client = aws_sdk_cloudtrail::Client::new(conf);
    limiter.wait().await;
    let r = client
        .lookup_events()
        .lookup_attributes(
            LookupAttribute::builder()
                .attribute_key(LookupAttributeKey::ResourceName)
                .attribute_value(arn.name())
                .build()
                .map_err(|e| LookupError(Box::new(e)))?,
        )
        .max_results(50)
        .send()
        .await;
    count(metrics, "cloudtrail", "LookupEvents", &r);
    let out = r.map_err(|e| LookupError(Box::new(e)))?;
    let events: Vec<Event> = out
        .events()
        .iter()
        .map(|e| Event {
            name: e.event_name().unwrap_or_default().to_owned(),
            time: e.event_time().map(|t| t.secs()),
            username: e.username().map(str::to_owned),
            record: e.cloud_trail_event().map(str::to_owned),
        })
        .collect();
    Ok(creator_of(&events))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: &str, time: i64, arn: Option<&str>, user: Option<&str>) -> Event {
        Event {
            name: name.into(),
            time: Some(time),
            username: user.map(str::to_owned),
            record: arn.map(|a| format!(r#"{{"eventVersion":"1.08","userIdentity":{{"type":"AssumedRole","arn":"{a}"}}}}"#)),
        }
    }

    #[test]
    fn the_earliest_creating_events_caller_made_it() {
        let ci = "arn:aws:sts::111111111111:assumed-role/ci-runner/job-42";
        let events = [
            event("AttachVolume", 50, Some("arn:aws:iam::1:user/ops"), None),
            event("CreateTags", 30, Some("arn:aws:iam::1:user/ops"), None),
            event("CreateVolume", 10, Some(ci), Some("job-42")),
            event("DeleteVolume", 5, Some("arn:aws:iam::1:user/x"), None),
        ];
        // CreateTags is a `Create…` too, but later than the creation itself.
        assert_eq!(creator_of(&events).as_deref(), Some(ci));
        // No identity ARN in the record: the user name.
        let bare = [event("RunInstances", 1, None, Some("alice"))];
        assert_eq!(creator_of(&bare).as_deref(), Some("alice"));
        // Nothing that creates: unknown.
        assert_eq!(
            creator_of(&[event("AttachVolume", 1, Some(ci), None)]),
            None
        );
        assert_eq!(creator_of(&[]), None);
    }
}
