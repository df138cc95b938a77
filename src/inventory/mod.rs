//! Inventory: walks the Resource Groups Tagging API of one (account, region), page by page.
//!
//! Architecture Invariant: the only module (with the reaper, later) that sees AWS SDK types;
//! everything leaves as [`crate::resource::Observed`], and an SDK error only as the boxed
//! source of a [`WalkError`]. Pages are handed on as they arrive; a walk holds at most two (the
//! one being persisted and the next one being fetched). A walk never retries on its own beyond
//! the SDK's retry policy: a failed page ends the walk `incomplete` with the reason.

mod client;
pub mod creator;
pub mod ec2;
pub mod explorer;
pub mod images;
mod limiter;
pub mod organization;
pub mod sweep;

use std::collections::HashMap;
use std::future::Future;

use aws_sdk_resourcegroupstagging::error::ProvideErrorMetadata;

pub use client::{AwsClients, UnknownAccount};
pub use limiter::RateLimiter;

use crate::metrics::Metrics;
use crate::model::{Arn, Source, Tags};
use crate::resource::Observed;

/// How a walk ended.
#[derive(Debug, Default)]
pub struct WalkResult {
    pub pages: u64,
    pub resources: u64,
    /// Set when the walk is incomplete.
    pub error: Option<WalkError>,
}

/// An error kept as the source of another.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a walk ended incomplete. The SDK's error (or the page handler's) is the source; the
/// message names the step, so [`crate::error_chain`] reads `GetResources page 3: service
/// error: …`.
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    /// No credentials or role for the account.
    #[error(transparent)]
    UnknownAccount(#[from] UnknownAccount),
    /// A GetResources call failed.
    #[error("GetResources page {page}")]
    Page {
        page: u64,
        #[source]
        source: BoxError,
    },
    /// A DescribeInstances call (the states of a page's instances) failed.
    #[error("DescribeInstances")]
    InstanceStates {
        #[source]
        source: BoxError,
    },
    /// Reading the images of the page's instances or launch templates failed.
    #[error("images")]
    Images(#[source] images::ImagesError),
    /// The page handler (the store) failed.
    #[error("cannot persist page {page}")]
    Persist {
        page: u64,
        #[source]
        source: BoxError,
    },
}

const THROTTLE_CODES: [&str; 5] = [
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "RequestThrottled",
];

/// Counts one SDK call's final outcome (after the SDK's own retries).
fn count<T, E: ProvideErrorMetadata>(
    metrics: &Metrics,
    service: &str,
    operation: &str,
    r: &Result<T, E>,
) {
    let outcome = match r {
        Ok(_) => "ok",
        Err(e) if e.code().is_some_and(|c| THROTTLE_CODES.contains(&c)) => {
            metrics.aws_throttled.inc();
            "throttled"
        }
        Err(_) => "error",
    };
    metrics
        .aws_requests
        .with_label_values(&[service, operation, outcome])
        .inc();
}

/// Walks every tagged resource of `account` in `region`, calling `on_page` with each page as it
/// arrives. `on_page` failing (the store) also ends the walk incomplete, its error the source of
/// [`WalkError::Persist`].
pub async fn walk<F, Fut>(
    clients: &AwsClients,
    account: &str,
    region: &str,
    limiter: &RateLimiter,
    metrics: &Metrics,
    on_page: F,
) -> WalkResult
where
    F: FnMut(Vec<Observed>) -> Fut,
    Fut: Future<Output = Result<(), BoxError>>,
{
    walk_judging_images(clients, account, region, limiter, metrics, false, on_page).await
}

/// [`walk`], and when `images` (the rules hold an image catalog) each page's instances and
/// launch templates carry their [`crate::model::Image`] ([`images::ImageLookup`]).
pub async fn walk_judging_images<F, Fut>(
    clients: &AwsClients,
    account: &str,
    region: &str,
    limiter: &RateLimiter,
    metrics: &Metrics,
    images: bool,
    mut on_page: F,
) -> WalkResult
where
    F: FnMut(Vec<Observed>) -> Fut,
    Fut: Future<Output = Result<(), BoxError>>,
{
    let mut result = WalkResult::default();
    let conf = match clients.config_for(account, region).await {
        Ok(c) => c,
        Err(e) => {
            result.error = Some(e.into());
            return result;
        }
    };
    let tagging = aws_sdk_resourcegroupstagging::Client::new(&conf);
    let ec2 = aws_sdk_ec2::Client::new(&conf);
    let ending = tokio::sync::OnceCell::new();
    let lookup = images.then(|| images::ImageLookup::new(ec2.clone(), limiter, metrics));
    let fetch = |token: Option<String>, n: u64| {
        fetch_page(
            &tagging,
            &ec2,
            &ending,
            lookup.as_ref(),
            account,
            region,
            limiter,
            metrics,
            token,
            n,
        )
    };
    let mut next = fetch(None, 1).await;
    loop {
        let (observed, token) = match next {
            Ok(page) => page,
            Err(e) => {
                result.error = Some(e);
                return result;
            }
        };
        result.pages += 1;
        result.resources += observed.len() as u64;
        // Persist this page while the next one is on its way (one page ahead, no more).
        let (persisted, fetched) = match token {
            Some(t) => {
                let (p, f) = tokio::join!(on_page(observed), fetch(Some(t), result.pages + 1));
                (p, Some(f))
            }
            None => (on_page(observed).await, None),
        };
        if let Err(source) = persisted {
            result.error = Some(WalkError::Persist {
                page: result.pages,
                source,
            });
            return result;
        }
        match fetched {
            Some(f) => next = f,
            None => return result,
        }
    }
}

/// Fetches page `n` (at `token`), converted, ending EC2 instances marked; returns it
/// and the next token (none at the end: AWS ends with an empty token, moto with none).
#[allow(clippy::too_many_arguments)]
async fn fetch_page(
    tagging: &aws_sdk_resourcegroupstagging::Client,
    ec2: &aws_sdk_ec2::Client,
    ending: &tokio::sync::OnceCell<HashMap<String, String>>,
    lookup: Option<&images::ImageLookup<'_>>,
    account: &str,
    region: &str,
    limiter: &RateLimiter,
    metrics: &Metrics,
    token: Option<String>,
    n: u64,
) -> Result<(Vec<Observed>, Option<String>), WalkError> {
    limiter.wait().await;
    let r = tagging
        .get_resources()
        .resources_per_page(100)
        .set_pagination_token(token)
        .send()
        .await;
    count(metrics, "tagging", "GetResources", &r);
    let page = r.map_err(|e| WalkError::Page {
        page: n,
        source: e.into(),
    })?;
    let mut observed: Vec<Observed> = Vec::with_capacity(page.resource_tag_mapping_list().len());
    for m in page.resource_tag_mapping_list() {
        let Some(arn) = m.resource_arn().and_then(|a| Arn::parse(a).ok()) else {
            continue;
        };
        let tags = Tags::from_pairs(m.tags().iter().map(|t| (t.key(), t.value())));
        observed.push(Observed {
            account: account.to_owned(),
            // S3 ARNs carry no region; such resources belong to the walk that saw them.
            region: if arn.region().is_empty() {
                region.to_owned()
            } else {
                arn.region().to_owned()
            },
            resource_type: arn.resource_type(),
            arn,
            tags,
            state: None,
            source: Source::Tagging,
            created_at: None,
            image: None,
        });
    }
    instance_states(ec2, limiter, metrics, ending, &mut observed).await?;
    if let Some(lookup) = lookup {
        lookup
            .attach(&mut observed)
            .await
            .map_err(WalkError::Images)?;
    }
    let token = page
        .pagination_token()
        .filter(|t| !t.is_empty())
        .map(str::to_owned);
    Ok((observed, token))
}

/// The EC2 instances of one (account, region) that are ending (`shutting-down` or
/// `terminated`, which EC2 keeps listing for a while) and their state: one filtered, paginated
/// DescribeInstances per walk instead of one per page, as most instances are live.
async fn ending_instances(
    ec2: &aws_sdk_ec2::Client,
    limiter: &RateLimiter,
    metrics: &Metrics,
) -> Result<HashMap<String, String>, WalkError> {
    let mut states: HashMap<String, String> = HashMap::new();
    pages(
        metrics,
        Some(limiter),
        ("ec2", "DescribeInstances"),
        |token| {
            ec2.describe_instances()
                .filters(ec2::filter(
                    "instance-state-name",
                    &["shutting-down", "terminated"],
                ))
                .set_next_token(token)
                .send()
        },
        |out| {
            for i in out.reservations().iter().flat_map(|r| r.instances()) {
                if let (Some(id), Some(state)) = (i.instance_id(), i.state().and_then(|s| s.name()))
                {
                    states.insert(id.to_owned(), state.as_str().to_owned());
                }
            }
            out.next_token().map(str::to_owned)
        },
    )
    .await
    .map_err(|e| WalkError::InstanceStates { source: e.into() })?;
    Ok(states)
}

/// Every page of one paginated call, in order. `call` is given each page's token (none for the
/// first), after its turn at `limiter` when there is one, and each answer is counted in
/// `ephemera_aws_requests_total`; `take` keeps what a page holds and returns the page's next
/// token. The last page is the one without a token (AWS ends with an empty one, moto with none).
pub(crate) async fn pages<P, E, Fut>(
    metrics: &Metrics,
    limiter: Option<&RateLimiter>,
    (service, operation): (&str, &str),
    mut call: impl FnMut(Option<String>) -> Fut,
    mut take: impl FnMut(P) -> Option<String>,
) -> Result<(), E>
where
    Fut: Future<Output = Result<P, E>>,
    E: ProvideErrorMetadata,
{
    let mut token = None;
    loop {
        if let Some(l) = limiter {
            l.wait().await;
        }
        let r = call(token).await;
        count(metrics, service, operation, &r);
        token = take(r?).filter(|t| !t.is_empty());
        if token.is_none() {
            return Ok(());
        }
    }
}

/// Marks the ending EC2 instances of a page with their state; the others are live (state
/// unknown to the walk: the reaper reads it again before any delete). The ending set is read
/// once per walk, at the first page that lists an instance.
async fn instance_states(
    ec2: &aws_sdk_ec2::Client,
    limiter: &RateLimiter,
    metrics: &Metrics,
    ending: &tokio::sync::OnceCell<HashMap<String, String>>,
    page: &mut [Observed],
) -> Result<(), WalkError> {
    if !page.iter().any(|o| o.resource_type == "ec2:instance") {
        return Ok(());
    }
    let ending = ending
        .get_or_try_init(|| ending_instances(ec2, limiter, metrics))
        .await?;
    for o in page
        .iter_mut()
        .filter(|o| o.resource_type == "ec2:instance")
    {
        o.state = ending.get(o.arn.resource_id()).cloned();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A walk's reason (stored with the walk, shown by `scan`) is the step, then its sources.
    #[test]
    fn walk_errors_name_the_step_and_keep_the_source() {
        let page = WalkError::Page {
            page: 3,
            source: Box::new(std::io::Error::other("throttled")),
        };
        assert_eq!(crate::error_chain(&page), "GetResources page 3: throttled");
        let states = WalkError::InstanceStates {
            source: "timed out".into(),
        };
        assert_eq!(crate::error_chain(&states), "DescribeInstances: timed out");
        let persist = WalkError::Persist {
            page: 2,
            source: "the store's persister stopped".into(),
        };
        assert_eq!(
            crate::error_chain(&persist),
            "cannot persist page 2: the store's persister stopped"
        );
        // Transparent: the text it always had, and no second copy of it as a source.
        let account = WalkError::from(UnknownAccount("111111111111".into()));
        assert_eq!(
            crate::error_chain(&account),
            "account 111111111111 is not configured"
        );
    }
}
