//! The images EC2 instances run and launch templates launch, for the approved-image catalog:
//! one listing of live instances and one of every template's default version per walk, then
//! DescribeImages for every AMI id a listing names, 100 a call, each id once per walk: the
//! first page holding an instance (or a template) describes the images of them all, so a walk
//! makes ⌈distinct AMIs / 100⌉ calls whatever the pages hold.
//!
//! Architecture Invariant: never a call per resource. An AMI EC2 no longer describes
//! (deregistered, or no longer shared with the account) leaves as an [`Image`] known by its id
//! alone. A failed call fails the walk (the caller makes it incomplete): judging without the
//! images would resolve findings on a guess.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::OnceCell;

use super::ec2::filter;
use super::{BoxError, RateLimiter, pages};
use crate::metrics::Metrics;
use crate::model::Image;
use crate::resource::Observed;

/// Ids per DescribeImages call (as `image-id` filter values, which, unlike `ImageIds`, answer
/// for the ids that exist instead of failing the whole call on one deregistered AMI).
const IDS_PER_CALL: usize = 100;

const INSTANCE: &str = "ec2:instance";
const TEMPLATE: &str = "ec2:launch-template";

/// A call of the lookup that failed: the operation, the SDK's error as the source.
#[derive(Debug, thiserror::Error)]
#[error("{operation}")]
pub struct ImagesError {
    pub operation: &'static str,
    #[source]
    pub source: BoxError,
}

fn failed<E: std::error::Error + Send + Sync + 'static>(
    operation: &'static str,
) -> impl FnOnce(E) -> ImagesError {
    move |e| ImagesError {
        operation,
        source: Box::new(e),
    }
}

/// What one walk (or sweep) of an (account, region) knows of images so far.
#[derive(Debug)]
pub struct ImageLookup<'a> {
    ec2: aws_sdk_ec2::Client,
    limiter: &'a RateLimiter,
    metrics: &'a Metrics,
    /// Instance id → AMI id, of live instances.
    instances: OnceCell<HashMap<String, String>>,
    /// Launch template id → the AMI id of its default version.
    templates: OnceCell<HashMap<String, String>>,
    /// AMI id → the image as described (or known by id alone).
    described: Mutex<HashMap<String, Image>>,
    /// Whether the AMIs of every listed instance, and of every listed template, were asked for.
    instances_asked: AtomicBool,
    templates_asked: AtomicBool,
}

impl<'a> ImageLookup<'a> {
    pub fn new(ec2: aws_sdk_ec2::Client, limiter: &'a RateLimiter, metrics: &'a Metrics) -> Self {
        ImageLookup {
            ec2,
            limiter,
            metrics,
            instances: OnceCell::new(),
            templates: OnceCell::new(),
            described: Mutex::new(HashMap::new()),
            instances_asked: AtomicBool::new(false),
            templates_asked: AtomicBool::new(false),
        }
    }

    /// Sets `image` on the page's instances and launch templates. An instance missing from
    /// the listing (launched since, or ending) and a template naming no image are left without.
    pub async fn attach(&self, page: &mut [Observed]) -> Result<(), ImagesError> {
        let mut wanted: Vec<(usize, String)> = Vec::new();
        // The AMIs of whole listings, described together the first time a page needs one.
        let mut listed: Vec<String> = Vec::new();
        if page.iter().any(|o| o.resource_type == INSTANCE) {
            let map = self
                .instances
                .get_or_try_init(|| self.instance_images())
                .await?;
            if !self.instances_asked.swap(true, Ordering::Relaxed) {
                listed.extend(map.values().cloned());
            }
            for (i, o) in page.iter().enumerate() {
                if o.resource_type == INSTANCE
                    && !o.is_terminated()
                    && let Some(ami) = map.get(o.arn.resource_id())
                {
                    wanted.push((i, ami.clone()));
                }
            }
        }
        if page.iter().any(|o| o.resource_type == TEMPLATE) {
            let map = self
                .templates
                .get_or_try_init(|| self.template_images())
                .await?;
            if !self.templates_asked.swap(true, Ordering::Relaxed) {
                listed.extend(map.values().cloned());
            }
            for (i, o) in page.iter().enumerate() {
                if o.resource_type == TEMPLATE
                    && let Some(ami) = map.get(o.arn.resource_id())
                {
                    wanted.push((i, ami.clone()));
                }
            }
        }
        if wanted.is_empty() {
            return Ok(());
        }
        let mut missing: Vec<String> = {
            let described = self
                .described
                .lock()
                .expect("never poisoned: no panics inside");
            listed
                .into_iter()
                .chain(wanted.iter().map(|(_, id)| id.clone()))
                .filter(|id| !described.contains_key(id))
                .collect()
        };
        missing.sort();
        missing.dedup();
        for batch in missing.chunks(IDS_PER_CALL) {
            let found = describe(&self.ec2, self.limiter, self.metrics, batch).await?;
            let mut described = self
                .described
                .lock()
                .expect("never poisoned: no panics inside");
            for id in batch {
                let image = found
                    .get(id)
                    .cloned()
                    .unwrap_or_else(|| Image::by_id(id.clone()));
                described.insert(id.clone(), image);
            }
        }
        let described = self
            .described
            .lock()
            .expect("never poisoned: no panics inside");
        for (i, id) in wanted {
            page[i].image = Some(
                described
                    .get(&id)
                    .cloned()
                    .unwrap_or_else(|| Image::by_id(id)),
            );
        }
        Ok(())
    }

    async fn instance_images(&self) -> Result<HashMap<String, String>, ImagesError> {
        let mut out = HashMap::new();
        pages(
            self.metrics,
            Some(self.limiter),
            ("ec2", "DescribeInstances"),
            |token| {
                self.ec2
                    .describe_instances()
                    .filters(filter(
                        "instance-state-name",
                        &["pending", "running", "stopping", "stopped"],
                    ))
                    .set_next_token(token)
                    .send()
            },
            |page| {
                for i in page.reservations().iter().flat_map(|r| r.instances()) {
                    if let (Some(id), Some(ami)) = (i.instance_id(), i.image_id()) {
                        out.insert(id.to_owned(), ami.to_owned());
                    }
                }
                page.next_token().map(str::to_owned)
            },
        )
        .await
        .map_err(failed("DescribeInstances"))?;
        Ok(out)
    }

    async fn template_images(&self) -> Result<HashMap<String, String>, ImagesError> {
        let mut out = HashMap::new();
        pages(
            self.metrics,
            Some(self.limiter),
            ("ec2", "DescribeLaunchTemplateVersions"),
            |token| {
                // `$Default` without a template id: the default version of every template in
                // one paginated call, 200 a page (AWS's most; moto answers 15 without it, and
                // never more than one page).
                self.ec2
                    .describe_launch_template_versions()
                    .versions("$Default")
                    .max_results(200)
                    .set_next_token(token)
                    .send()
            },
            |page| {
                for v in page.launch_template_versions() {
                    if let (Some(id), Some(ami)) = (
                        v.launch_template_id(),
                        v.launch_template_data().and_then(|d| d.image_id()),
                    ) {
                        out.insert(id.to_owned(), ami.to_owned());
                    }
                }
                page.next_token().map(str::to_owned)
            },
        )
        .await
        .map_err(failed("DescribeLaunchTemplateVersions"))?;
        Ok(out)
    }
}

/// Sets the images of `found`'s instances and launch templates, as seen from `account` in
/// `region` (for resources found by a sweep, outside a walk's own lookup).
pub async fn attach_in(
    clients: &super::AwsClients,
    account: &str,
    region: &str,
    limiter: &RateLimiter,
    metrics: &Metrics,
    found: &mut [Observed],
) -> Result<(), super::WalkError> {
    let conf = clients.config_for(account, region).await?;
    ImageLookup::new(aws_sdk_ec2::Client::new(&conf), limiter, metrics)
        .attach(found)
        .await
        .map_err(super::WalkError::Images)
}

/// The images of `ids` EC2 describes to this account (deprecated and disabled ones included:
/// they still run instances), by id. Ids it does not describe are absent.
pub async fn describe(
    ec2: &aws_sdk_ec2::Client,
    limiter: &RateLimiter,
    metrics: &Metrics,
    ids: &[String],
) -> Result<HashMap<String, Image>, ImagesError> {
    let values: Vec<&str> = ids.iter().map(String::as_str).collect();
    let mut out = HashMap::new();
    pages(
        metrics,
        Some(limiter),
        ("ec2", "DescribeImages"),
        |token| {
            ec2.describe_images()
                .filters(filter("image-id", &values))
                .include_deprecated(true)
                .include_disabled(true)
                .set_next_token(token)
                .send()
        },
        |page| {
            for i in page.images() {
                if let Some(id) = i.image_id() {
                    out.insert(
                        id.to_owned(),
                        Image {
                            id: id.to_owned(),
                            owner: i.owner_id().map(str::to_owned),
                            owner_alias: i.image_owner_alias().map(str::to_owned),
                            name: i.name().map(str::to_owned),
                        },
                    );
                }
            }
            page.next_token().map(str::to_owned)
        },
    )
    .await
    .map_err(failed("DescribeImages"))?;
    Ok(out)
}
