//! Per-type AWS deleters: [`inspect`] takes a fresh look at one resource right before it is
//! deleted (is it still there, what tags does it carry now, what must go first), [`delete`]
//! deletes it.
//!
//! Architecture Invariant: the only place that issues mutating AWS calls, and every call is
//! idempotent: deleting what is already gone answers [`Deleted::AlreadyGone`], never an error.
//! A deleter deletes exactly the resource its ARN names (an S3 bucket's objects are part of the
//! bucket); it never deletes, detaches or disassociates a dependency — those are reported in
//! [`Inspection::Live`]'s `depends_on` for the caller to order, and a deletion they block fails
//! with [`DeleteError::InUse`]. No call retries beyond the SDK's retry policy. SDK types do not
//! leave this module.

use std::collections::HashMap;

use aws_config::{Region, SdkConfig};
use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_ec2::types::{Filter, ImageState, InstanceStateName, VolumeState};

use crate::model::{Arn, Tags};

/// What a fresh look at one resource, right before deleting it, found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inspection {
    /// Not there any more (or an EC2 instance in `terminated` state): nothing to delete.
    Gone,
    /// Alive, with its current tags (as AWS returns them now) and the ARNs of live resources
    /// that must be deleted before it can be.
    Live { tags: Tags, depends_on: Vec<Arn> },
}

/// How a deletion ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    /// This call deleted it (or, for EC2 instances, started its termination).
    Deleted,
    /// It was gone before this call.
    AlreadyGone,
}

#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    /// No deleter for this type.
    #[error("resource type `{0}` has no deleter")]
    Unsupported(String),
    /// Still in use / a dependency violation (retry on a later pass).
    #[error("in use: {0}")]
    InUse(String),
    /// Any other AWS or transport error (message includes the AWS error code when there is one).
    #[error("{0}")]
    Aws(String),
    /// A deleter working in batches was told to stop between two (see [`Batches`]).
    #[error("stopped: {0}")]
    Stopped(String),
}

/// What a deleter that works in batches (a bucket's objects, then the bucket) consults
/// between two batches: it records the progress, then re-reads the resource's tags and asks
/// whether the work may go on.
pub trait Batches: Sync {
    /// Records that `removed` parts are gone so far (the audit log, so an emptying that is
    /// interrupted is visible, and the next pass resumes it).
    fn progress(&self, removed: u64) -> impl std::future::Future<Output = ()> + Send;
    /// Whether the work may go on, given the resource's tags as they are now; the reason to
    /// stop otherwise.
    fn still_doomed(&self, tags: &Tags) -> Result<(), String>;
}

/// Batches that never stop and record nothing.
#[derive(Debug)]
pub struct Unwatched;

impl Batches for Unwatched {
    async fn progress(&self, _removed: u64) {}
    fn still_doomed(&self, _tags: &Tags) -> Result<(), String> {
        Ok(())
    }
}

/// The resource types (as `Arn::resource_type()` spells them) this module can inspect and
/// delete.
pub const DELETABLE_TYPES: &[&str] = &[
    "ec2:instance",
    "ec2:volume",
    "ec2:snapshot",
    "ec2:image",
    "ec2:security-group",
    "ec2:network-interface",
    "ec2:elastic-ip",
    "ec2:key-pair",
    "ec2:launch-template",
    "s3:bucket",
    "sqs:queue",
    "sns:topic",
    "dynamodb:table",
    "lambda:function",
    "logs:log-group",
];

/// Looks at the resource `arn` names, through the service that owns it, with `sdk` (the config
/// for the resource's account and region).
pub async fn inspect(sdk: &SdkConfig, arn: &Arn) -> Result<Inspection, DeleteError> {
    let id = arn.resource_id();
    match arn.resource_type().as_str() {
        "ec2:instance" => ec2::inspect_instance(&ec2::client(sdk), id).await,
        "ec2:volume" => ec2::inspect_volume(&ec2::client(sdk), arn, id).await,
        "ec2:snapshot" => ec2::inspect_snapshot(&ec2::client(sdk), arn, id).await,
        "ec2:image" => ec2::inspect_image(&ec2::client(sdk), id).await,
        "ec2:security-group" => ec2::inspect_security_group(&ec2::client(sdk), arn, id).await,
        "ec2:network-interface" => ec2::inspect_network_interface(&ec2::client(sdk), arn, id).await,
        "ec2:elastic-ip" => ec2::inspect_address(&ec2::client(sdk), arn, id).await,
        "ec2:key-pair" => ec2::inspect_key_pair(&ec2::client(sdk), id).await,
        "ec2:launch-template" => ec2::inspect_launch_template(&ec2::client(sdk), id).await,
        "s3:bucket" => s3::inspect(sdk, id).await,
        "sqs:queue" => sqs::inspect(sdk, arn).await,
        "sns:topic" => sns::inspect(sdk, arn).await,
        "dynamodb:table" => dynamodb::inspect(sdk, arn).await,
        "lambda:function" => lambda::inspect(sdk, arn).await,
        "logs:log-group" => logs::inspect(sdk, arn).await,
        other => Err(DeleteError::Unsupported(other.to_owned())),
    }
}

/// Deletes the resource `arn` names with `sdk` (the config for its account and region).
/// Idempotent: a resource already gone answers [`Deleted::AlreadyGone`].
pub async fn delete(sdk: &SdkConfig, arn: &Arn) -> Result<Deleted, DeleteError> {
    delete_watched(sdk, arn, &Unwatched).await
}

/// Like [`delete`], consulting `watch` between the batches of a deleter that works in
/// batches (an S3 bucket's objects).
pub async fn delete_watched<B: Batches>(
    sdk: &SdkConfig,
    arn: &Arn,
    watch: &B,
) -> Result<Deleted, DeleteError> {
    let id = arn.resource_id();
    match arn.resource_type().as_str() {
        "ec2:instance" => ec2::terminate_instance(&ec2::client(sdk), id).await,
        "ec2:volume" => ec2::delete_volume(&ec2::client(sdk), id).await,
        "ec2:snapshot" => ec2::delete_snapshot(&ec2::client(sdk), id).await,
        "ec2:image" => ec2::deregister_image(&ec2::client(sdk), id).await,
        "ec2:security-group" => ec2::delete_security_group(&ec2::client(sdk), id).await,
        "ec2:network-interface" => ec2::delete_network_interface(&ec2::client(sdk), id).await,
        "ec2:elastic-ip" => ec2::release_address(&ec2::client(sdk), id).await,
        "ec2:key-pair" => ec2::delete_key_pair(&ec2::client(sdk), id).await,
        "ec2:launch-template" => ec2::delete_launch_template(&ec2::client(sdk), id).await,
        "s3:bucket" => s3::delete(sdk, id, watch).await,
        "sqs:queue" => sqs::delete(sdk, arn).await,
        "sns:topic" => sns::delete(sdk, arn).await,
        "dynamodb:table" => dynamodb::delete(sdk, arn).await,
        "lambda:function" => lambda::delete(sdk, arn).await,
        "logs:log-group" => logs::delete(sdk, arn).await,
        other => Err(DeleteError::Unsupported(other.to_owned())),
    }
}

/// One failed AWS call, reduced to what the deleters branch on.
#[derive(Debug)]
struct Failure {
    code: Option<String>,
    /// `Operation: Code: message`, or the whole error chain when AWS gave no code (transport).
    message: String,
}

impl Failure {
    fn of<E>(operation: &str, e: &E) -> Failure
    where
        E: ProvideErrorMetadata + std::error::Error,
    {
        let code = e.code().map(str::to_owned);
        let message = match (&code, e.message()) {
            (Some(c), Some(m)) => format!("{operation}: {c}: {m}"),
            (Some(c), None) => format!("{operation}: {c}"),
            (None, _) => format!("{operation}: {}", DisplayErrorContext(e)),
        };
        Failure { code, message }
    }

    fn is(&self, codes: &[&str]) -> bool {
        self.code.as_deref().is_some_and(|c| codes.contains(&c))
    }

    /// [`DeleteError::InUse`] for one of `in_use`, else [`DeleteError::Aws`].
    fn into_error(self, in_use: &[&str]) -> DeleteError {
        if self.is(in_use) {
            DeleteError::InUse(self.message)
        } else {
            DeleteError::Aws(self.message)
        }
    }
}

/// `map_err` shorthand: `.map_err(fail("DeleteVolume"))`.
fn fail<E>(operation: &'static str) -> impl Fn(E) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error,
{
    move |e| Failure::of(operation, &e)
}

/// The answer of a deleting call: gone before for one of `not_found`, in use for one of
/// `in_use`.
fn settle<T>(
    result: Result<T, Failure>,
    not_found: &[&str],
    in_use: &[&str],
) -> Result<Deleted, DeleteError> {
    match result {
        Ok(_) => Ok(Deleted::Deleted),
        Err(f) if f.is(not_found) => Ok(Deleted::AlreadyGone),
        Err(f) => Err(f.into_error(in_use)),
    }
}

fn live(tags: Tags) -> Inspection {
    Inspection::Live {
        tags,
        depends_on: Vec::new(),
    }
}

fn map_tags(tags: Option<&HashMap<String, String>>) -> Tags {
    Tags::from_pairs(
        tags.into_iter()
            .flatten()
            .map(|(k, v)| (k.as_str(), v.as_str())),
    )
}

/// `arn:PARTITION:SERVICE:REGION:ACCOUNT:resource` in the partition, region and account of
/// `of`, formatted as the tagging API formats it.
fn sibling(of: &Arn, service: &str, resource: &str) -> Arn {
    let partition = of.as_str().split(':').nth(1).unwrap_or("aws");
    Arn::parse(&format!(
        "arn:{partition}:{service}:{}:{}:{resource}",
        of.region(),
        of.account()
    ))
    .expect("built from a parsed ARN's non-empty parts and a non-empty resource")
}

mod ec2 {
    use super::*;

    pub(super) fn client(sdk: &SdkConfig) -> aws_sdk_ec2::Client {
        aws_sdk_ec2::Client::new(sdk)
    }

    const INSTANCE_NOT_FOUND: &[&str] = &["InvalidInstanceID.NotFound"];
    const VOLUME_NOT_FOUND: &[&str] = &["InvalidVolume.NotFound"];
    const SNAPSHOT_NOT_FOUND: &[&str] = &["InvalidSnapshot.NotFound"];
    // `Unavailable` is a recently deregistered AMI.
    const IMAGE_NOT_FOUND: &[&str] = &["InvalidAMIID.NotFound", "InvalidAMIID.Unavailable"];
    const GROUP_NOT_FOUND: &[&str] = &["InvalidGroup.NotFound"];
    const ENI_NOT_FOUND: &[&str] = &["InvalidNetworkInterfaceID.NotFound"];
    const ADDRESS_NOT_FOUND: &[&str] = &["InvalidAllocationID.NotFound"];
    // AWS answers `InvalidLaunchTemplateId.NotFound`; moto 5.2.5 `...Name.NotFoundException`.
    const TEMPLATE_NOT_FOUND: &[&str] = &[
        "InvalidLaunchTemplateId.NotFound",
        "InvalidLaunchTemplateName.NotFoundException",
    ];
    const DEPENDENCY: &str = "DependencyViolation";

    fn tags(tags: &[aws_sdk_ec2::types::Tag]) -> Tags {
        Tags::from_pairs(
            tags.iter()
                .map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default())),
        )
    }

    fn filter(name: &str, values: &[&str]) -> Filter {
        values
            .iter()
            .fold(Filter::builder().name(name), |f, v| f.values(*v))
            .build()
    }

    fn instance_is_live(i: &aws_sdk_ec2::types::Instance) -> bool {
        !matches!(
            i.state().and_then(|s| s.name()),
            Some(InstanceStateName::Terminated | InstanceStateName::ShuttingDown)
        )
    }

    /// States of an instance that is not on its way out (what [`inspect_instance`] calls live).
    const LIVE_INSTANCE_STATES: &[&str] = &["pending", "running", "stopping", "stopped"];

    /// The ARNs of the live instances matching `filters`, all pages.
    async fn live_instances(
        ec2: &aws_sdk_ec2::Client,
        of: &Arn,
        filters: Vec<Filter>,
    ) -> Result<Vec<Arn>, DeleteError> {
        let mut pages = ec2
            .describe_instances()
            .set_filters(Some(filters))
            .filters(filter("instance-state-name", LIVE_INSTANCE_STATES))
            .into_paginator()
            .send();
        let mut arns = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page
                .map_err(fail("DescribeInstances"))
                .map_err(|f| f.into_error(&[]))?;
            for i in page.reservations().iter().flat_map(|r| r.instances()) {
                if let (Some(id), true) = (i.instance_id(), instance_is_live(i)) {
                    arns.push(sibling(of, "ec2", &format!("instance/{id}")));
                }
            }
        }
        Ok(arns)
    }

    pub(super) async fn inspect_instance(
        ec2: &aws_sdk_ec2::Client,
        id: &str,
    ) -> Result<Inspection, DeleteError> {
        let out = match ec2
            .describe_instances()
            .instance_ids(id)
            .send()
            .await
            .map_err(fail("DescribeInstances"))
        {
            Ok(out) => out,
            Err(f) if f.is(INSTANCE_NOT_FOUND) => return Ok(Inspection::Gone),
            Err(f) => return Err(f.into_error(&[])),
        };
        let instance = out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find(|i| i.instance_id() == Some(id));
        Ok(match instance {
            Some(i) if instance_is_live(i) => live(tags(i.tags())),
            _ => Inspection::Gone,
        })
    }

    /// Terminates; an instance already terminated or shutting down is already gone
    /// (TerminateInstances answers for it with its previous state).
    pub(super) async fn terminate_instance(
        ec2: &aws_sdk_ec2::Client,
        id: &str,
    ) -> Result<Deleted, DeleteError> {
        let out = match ec2
            .terminate_instances()
            .instance_ids(id)
            .send()
            .await
            .map_err(fail("TerminateInstances"))
        {
            Ok(out) => out,
            Err(f) if f.is(INSTANCE_NOT_FOUND) => return Ok(Deleted::AlreadyGone),
            Err(f) => return Err(f.into_error(&[])),
        };
        let previous = out
            .terminating_instances()
            .iter()
            .find(|c| c.instance_id() == Some(id))
            .and_then(|c| c.previous_state())
            .and_then(|s| s.name());
        Ok(match previous {
            Some(InstanceStateName::Terminated | InstanceStateName::ShuttingDown) => {
                Deleted::AlreadyGone
            }
            _ => Deleted::Deleted,
        })
    }

    pub(super) async fn inspect_volume(
        ec2: &aws_sdk_ec2::Client,
        arn: &Arn,
        id: &str,
    ) -> Result<Inspection, DeleteError> {
        let out = match ec2
            .describe_volumes()
            .volume_ids(id)
            .send()
            .await
            .map_err(fail("DescribeVolumes"))
        {
            Ok(out) => out,
            Err(f) if f.is(VOLUME_NOT_FOUND) => return Ok(Inspection::Gone),
            Err(f) => return Err(f.into_error(&[])),
        };
        let Some(volume) = out
            .volumes()
            .iter()
            .find(|v| v.volume_id() == Some(id))
            .filter(|v| {
                !matches!(
                    v.state(),
                    Some(VolumeState::Deleting | VolumeState::Deleted)
                )
            })
        else {
            return Ok(Inspection::Gone);
        };
        let attached: Vec<&str> = volume
            .attachments()
            .iter()
            .filter_map(|a| a.instance_id())
            .collect();
        let depends_on = if attached.is_empty() {
            Vec::new()
        } else {
            live_instances(ec2, arn, vec![filter("instance-id", &attached)]).await?
        };
        Ok(Inspection::Live {
            tags: tags(volume.tags()),
            depends_on,
        })
    }

    pub(super) async fn delete_volume(
        ec2: &aws_sdk_ec2::Client,
        id: &str,
    ) -> Result<Deleted, DeleteError> {
        let r = ec2
            .delete_volume()
            .volume_id(id)
            .send()
            .await
            .map_err(fail("DeleteVolume"));
        settle(r, VOLUME_NOT_FOUND, &["VolumeInUse", DEPENDENCY])
    }

    pub(super) async fn inspect_snapshot(
        ec2: &aws_sdk_ec2::Client,
        arn: &Arn,
        id: &str,
    ) -> Result<Inspection, DeleteError> {
        let out = match ec2
            .describe_snapshots()
            .snapshot_ids(id)
            .send()
            .await
            .map_err(fail("DescribeSnapshots"))
        {
            Ok(out) => out,
            Err(f) if f.is(SNAPSHOT_NOT_FOUND) => return Ok(Inspection::Gone),
            Err(f) => return Err(f.into_error(&[])),
        };
        let Some(snapshot) = out.snapshots().iter().find(|s| s.snapshot_id() == Some(id)) else {
            return Ok(Inspection::Gone);
        };
        // The account's own AMIs, matched on their block device mappings here: moto 5.2.5 does
        // not implement the `block-device-mapping.snapshot-id` filter, and an account owns few
        // AMIs.
        let mut pages = ec2.describe_images().owners("self").into_paginator().send();
        let mut depends_on = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page
                .map_err(fail("DescribeImages"))
                .map_err(|f| f.into_error(&[]))?;
            for image in page.images() {
                let backs = image
                    .block_device_mappings()
                    .iter()
                    .any(|m| m.ebs().and_then(|e| e.snapshot_id()) == Some(id));
                let registered = !matches!(image.state(), Some(ImageState::Deregistered));
                if let (true, true, Some(image_id)) = (backs, registered, image.image_id()) {
                    depends_on.push(sibling(arn, "ec2", &format!("image/{image_id}")));
                }
            }
        }
        Ok(Inspection::Live {
            tags: tags(snapshot.tags()),
            depends_on,
        })
    }

    pub(super) async fn delete_snapshot(
        ec2: &aws_sdk_ec2::Client,
        id: &str,
    ) -> Result<Deleted, DeleteError> {
        let r = ec2
            .delete_snapshot()
            .snapshot_id(id)
            .send()
            .await
            .map_err(fail("DeleteSnapshot"));
        settle(
            r,
            SNAPSHOT_NOT_FOUND,
            &["InvalidSnapshot.InUse", DEPENDENCY],
        )
    }

    pub(super) async fn inspect_image(
        ec2: &aws_sdk_ec2::Client,
        id: &str,
    ) -> Result<Inspection, DeleteError> {
        let out = match ec2
            .describe_images()
            .image_ids(id)
            .send()
            .await
            .map_err(fail("DescribeImages"))
        {
            Ok(out) => out,
            Err(f) if f.is(IMAGE_NOT_FOUND) => return Ok(Inspection::Gone),
            Err(f) => return Err(f.into_error(&[])),
        };
        // A deregistered AMI may still be described for a while (moto: with an empty list).
        Ok(
            match out.images().iter().find(|i| i.image_id() == Some(id)) {
                Some(i) if !matches!(i.state(), Some(ImageState::Deregistered)) => {
                    live(tags(i.tags()))
                }
                _ => Inspection::Gone,
            },
        )
    }

    /// Deregisters the AMI. Its backing snapshots stay: they are resources of their own (and
    /// reaped as such when tagged), and a deleter deletes only what its ARN names.
    pub(super) async fn deregister_image(
        ec2: &aws_sdk_ec2::Client,
        id: &str,
    ) -> Result<Deleted, DeleteError> {
        let r = ec2
            .deregister_image()
            .image_id(id)
            .send()
            .await
            .map_err(fail("DeregisterImage"));
        settle(r, IMAGE_NOT_FOUND, &[DEPENDENCY])
    }

    pub(super) async fn inspect_security_group(
        ec2: &aws_sdk_ec2::Client,
        arn: &Arn,
        id: &str,
    ) -> Result<Inspection, DeleteError> {
        let out = match ec2
            .describe_security_groups()
            .group_ids(id)
            .send()
            .await
            .map_err(fail("DescribeSecurityGroups"))
        {
            Ok(out) => out,
            Err(f) if f.is(GROUP_NOT_FOUND) => return Ok(Inspection::Gone),
            Err(f) => return Err(f.into_error(&[])),
        };
        let Some(group) = out
            .security_groups()
            .iter()
            .find(|g| g.group_id() == Some(id))
        else {
            return Ok(Inspection::Gone);
        };
        let mut depends_on =
            live_instances(ec2, arn, vec![filter("instance.group-id", &[id])]).await?;
        // Interfaces attached to an instance go with it (the instance stands for them above);
        // the others (unattached, or attached to no instance) must be deleted themselves.
        let mut pages = ec2
            .describe_network_interfaces()
            .filters(filter("group-id", &[id]))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page
                .map_err(fail("DescribeNetworkInterfaces"))
                .map_err(|f| f.into_error(&[]))?;
            for eni in page.network_interfaces() {
                let on_instance = eni
                    .attachment()
                    .and_then(|a| a.instance_id())
                    .is_some_and(|i| !i.is_empty());
                if let (false, Some(eni_id)) = (on_instance, eni.network_interface_id()) {
                    depends_on.push(sibling(arn, "ec2", &format!("network-interface/{eni_id}")));
                }
            }
        }
        Ok(Inspection::Live {
            tags: tags(group.tags()),
            depends_on,
        })
    }

    pub(super) async fn delete_security_group(
        ec2: &aws_sdk_ec2::Client,
        id: &str,
    ) -> Result<Deleted, DeleteError> {
        let r = ec2
            .delete_security_group()
            .group_id(id)
            .send()
            .await
            .map_err(fail("DeleteSecurityGroup"));
        settle(r, GROUP_NOT_FOUND, &[DEPENDENCY, "InvalidGroup.InUse"])
    }

    pub(super) async fn inspect_network_interface(
        ec2: &aws_sdk_ec2::Client,
        arn: &Arn,
        id: &str,
    ) -> Result<Inspection, DeleteError> {
        let out = match ec2
            .describe_network_interfaces()
            .network_interface_ids(id)
            .send()
            .await
            .map_err(fail("DescribeNetworkInterfaces"))
        {
            Ok(out) => out,
            Err(f) if f.is(ENI_NOT_FOUND) => return Ok(Inspection::Gone),
            Err(f) => return Err(f.into_error(&[])),
        };
        let Some(eni) = out
            .network_interfaces()
            .iter()
            .find(|e| e.network_interface_id() == Some(id))
        else {
            return Ok(Inspection::Gone);
        };
        let instance = eni
            .attachment()
            .and_then(|a| a.instance_id())
            .filter(|i| !i.is_empty());
        let depends_on = match instance {
            Some(i) => live_instances(ec2, arn, vec![filter("instance-id", &[i])]).await?,
            None => Vec::new(),
        };
        Ok(Inspection::Live {
            tags: tags(eni.tag_set()),
            depends_on,
        })
    }

    pub(super) async fn delete_network_interface(
        ec2: &aws_sdk_ec2::Client,
        id: &str,
    ) -> Result<Deleted, DeleteError> {
        let r = ec2
            .delete_network_interface()
            .network_interface_id(id)
            .send()
            .await
            .map_err(fail("DeleteNetworkInterface"));
        settle(
            r,
            ENI_NOT_FOUND,
            &["InvalidNetworkInterface.InUse", DEPENDENCY],
        )
    }

    /// An elastic IP, by allocation id. Associated with an instance, it depends on the
    /// instance (terminating it frees the address); associated with an interface of no
    /// instance, on that interface. We never disassociate: that would cut off a live user.
    pub(super) async fn inspect_address(
        ec2: &aws_sdk_ec2::Client,
        arn: &Arn,
        id: &str,
    ) -> Result<Inspection, DeleteError> {
        let out = match ec2
            .describe_addresses()
            .allocation_ids(id)
            .send()
            .await
            .map_err(fail("DescribeAddresses"))
        {
            Ok(out) => out,
            Err(f) if f.is(ADDRESS_NOT_FOUND) => return Ok(Inspection::Gone),
            Err(f) => return Err(f.into_error(&[])),
        };
        let Some(address) = out
            .addresses()
            .iter()
            .find(|a| a.allocation_id() == Some(id))
        else {
            return Ok(Inspection::Gone);
        };
        // moto answers "" rather than nothing for an unassociated address.
        let instance = address.instance_id().filter(|i| !i.is_empty());
        let eni = address.network_interface_id().filter(|i| !i.is_empty());
        let depends_on = match (instance, eni) {
            (Some(i), _) => live_instances(ec2, arn, vec![filter("instance-id", &[i])]).await?,
            (None, Some(e)) => vec![sibling(arn, "ec2", &format!("network-interface/{e}"))],
            (None, None) => Vec::new(),
        };
        Ok(Inspection::Live {
            tags: tags(address.tags()),
            depends_on,
        })
    }

    pub(super) async fn release_address(
        ec2: &aws_sdk_ec2::Client,
        id: &str,
    ) -> Result<Deleted, DeleteError> {
        let r = ec2
            .release_address()
            .allocation_id(id)
            .send()
            .await
            .map_err(fail("ReleaseAddress"));
        settle(
            r,
            ADDRESS_NOT_FOUND,
            &["InvalidIPAddress.InUse", DEPENDENCY],
        )
    }

    /// The key pair with id `id` (`key-…`, as its ARN names it), looked up with the
    /// `key-pair-id` filter: moto 5.2.5 ignores `KeyPairIds`, and a filter answers an empty list
    /// rather than an error for a missing key.
    async fn key_pair(
        ec2: &aws_sdk_ec2::Client,
        id: &str,
    ) -> Result<Option<aws_sdk_ec2::types::KeyPairInfo>, DeleteError> {
        let out = ec2
            .describe_key_pairs()
            .filters(filter("key-pair-id", &[id]))
            .send()
            .await
            .map_err(fail("DescribeKeyPairs"))
            .map_err(|f| f.into_error(&[]))?;
        Ok(out
            .key_pairs()
            .iter()
            .find(|k| k.key_pair_id() == Some(id))
            .cloned())
    }

    pub(super) async fn inspect_key_pair(
        ec2: &aws_sdk_ec2::Client,
        id: &str,
    ) -> Result<Inspection, DeleteError> {
        Ok(match key_pair(ec2, id).await? {
            Some(k) => live(tags(k.tags())),
            None => Inspection::Gone,
        })
    }

    /// Deletes by name, found from the id: moto 5.2.5 ignores `KeyPairId` in DeleteKeyPair
    /// (AWS accepts either). DeleteKeyPair itself succeeds for a missing key, hence the look-up.
    pub(super) async fn delete_key_pair(
        ec2: &aws_sdk_ec2::Client,
        id: &str,
    ) -> Result<Deleted, DeleteError> {
        let Some(name) = key_pair(ec2, id).await?.and_then(|k| k.key_name) else {
            return Ok(Deleted::AlreadyGone);
        };
        let r = ec2
            .delete_key_pair()
            .key_name(name)
            .send()
            .await
            .map_err(fail("DeleteKeyPair"));
        settle(r, &["InvalidKeyPair.NotFound"], &[])
    }

    pub(super) async fn inspect_launch_template(
        ec2: &aws_sdk_ec2::Client,
        id: &str,
    ) -> Result<Inspection, DeleteError> {
        let out = match ec2
            .describe_launch_templates()
            .launch_template_ids(id)
            .send()
            .await
            .map_err(fail("DescribeLaunchTemplates"))
        {
            Ok(out) => out,
            Err(f) if f.is(TEMPLATE_NOT_FOUND) => return Ok(Inspection::Gone),
            Err(f) => return Err(f.into_error(&[])),
        };
        // moto answers an empty list for a missing id.
        Ok(
            match out
                .launch_templates()
                .iter()
                .find(|t| t.launch_template_id() == Some(id))
            {
                Some(t) => live(tags(t.tags())),
                None => Inspection::Gone,
            },
        )
    }

    pub(super) async fn delete_launch_template(
        ec2: &aws_sdk_ec2::Client,
        id: &str,
    ) -> Result<Deleted, DeleteError> {
        let r = ec2
            .delete_launch_template()
            .launch_template_id(id)
            .send()
            .await
            .map_err(fail("DeleteLaunchTemplate"));
        settle(r, TEMPLATE_NOT_FOUND, &[])
    }
}

mod s3 {
    use aws_sdk_s3::types::{Delete, ObjectIdentifier};

    use super::*;

    const NO_BUCKET: &[&str] = &["NoSuchBucket"];

    /// Keys per ListObjectVersions page and per DeleteObjects call (both AWS maxima).
    const PAGE: i32 = 1000;

    /// A client for the bucket's own region (S3 redirects requests sent to another region), or
    /// `None` when the bucket does not exist. Path-style addressing when an endpoint is set:
    /// an emulator on a loopback port has no per-bucket host names.
    async fn client_for_bucket(
        sdk: &SdkConfig,
        bucket: &str,
    ) -> Result<Option<aws_sdk_s3::Client>, DeleteError> {
        let base = aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(sdk.endpoint_url().is_some())
            .build();
        let s3 = aws_sdk_s3::Client::from_conf(base.clone());
        let location = match s3
            .get_bucket_location()
            .bucket(bucket)
            .send()
            .await
            .map_err(fail("GetBucketLocation"))
        {
            Ok(out) => out,
            Err(f) if f.is(NO_BUCKET) => return Ok(None),
            Err(f) => return Err(f.into_error(&[])),
        };
        // No constraint is us-east-1; `EU` is the legacy name of eu-west-1.
        let region = match location.location_constraint().map(|c| c.as_str()) {
            None | Some("") => "us-east-1",
            Some("EU") => "eu-west-1",
            Some(other) => other,
        };
        if sdk.region().map(Region::as_ref) == Some(region) {
            return Ok(Some(s3));
        }
        let conf = base
            .to_builder()
            .region(Region::new(region.to_owned()))
            .build();
        Ok(Some(aws_sdk_s3::Client::from_conf(conf)))
    }

    pub(super) async fn inspect(sdk: &SdkConfig, bucket: &str) -> Result<Inspection, DeleteError> {
        let Some(s3) = client_for_bucket(sdk, bucket).await? else {
            return Ok(Inspection::Gone);
        };
        match tags_of(&s3, bucket).await {
            Ok(tags) => Ok(live(tags)),
            Err(f) if f.is(NO_BUCKET) => Ok(Inspection::Gone),
            Err(f) => Err(f.into_error(&[])),
        }
    }

    /// The bucket's tags (none when it has no tag set).
    async fn tags_of(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<Tags, Failure> {
        match s3
            .get_bucket_tagging()
            .bucket(bucket)
            .send()
            .await
            .map_err(fail("GetBucketTagging"))
        {
            Ok(out) => Ok(Tags::from_pairs(
                out.tag_set().iter().map(|t| (t.key(), t.value())),
            )),
            Err(f) if f.is(&["NoSuchTagSet"]) => Ok(Tags::default()),
            Err(f) => Err(f),
        }
    }

    /// Empties the bucket (every object version and delete marker — which covers the plain
    /// objects of an unversioned bucket, listed with version `null`), then deletes it.
    pub(super) async fn delete<B: Batches>(
        sdk: &SdkConfig,
        bucket: &str,
        watch: &B,
    ) -> Result<Deleted, DeleteError> {
        let Some(s3) = client_for_bucket(sdk, bucket).await? else {
            return Ok(Deleted::AlreadyGone);
        };
        match empty(&s3, bucket, watch).await {
            Ok(()) => {}
            // Gone while we emptied it (another pass, or its owner, got there first).
            Err(Stop::Failed(f)) if f.is(NO_BUCKET) => return Ok(Deleted::AlreadyGone),
            Err(Stop::Failed(f)) => return Err(f.into_error(&[])),
            Err(Stop::Told(why)) => return Err(DeleteError::Stopped(why)),
        }
        let r = s3
            .delete_bucket()
            .bucket(bucket)
            .send()
            .await
            .map_err(fail("DeleteBucket"));
        // Not empty after emptying: someone is still writing to it.
        settle(r, NO_BUCKET, &["BucketNotEmpty", "OperationAborted"])
    }

    /// Deletes a page of versions at a time, listing from the start again after each: what was
    /// deleted is gone from the listing, and moto 5.2.5 answers a page whose marker names a
    /// deleted key with nothing (AWS treats markers as positions), which would stop short.
    async fn empty<B: Batches>(
        s3: &aws_sdk_s3::Client,
        bucket: &str,
        watch: &B,
    ) -> Result<(), Stop> {
        let mut previous_first: Option<(String, Option<String>)> = None;
        let mut removed: u64 = 0;
        loop {
            let page = s3
                .list_object_versions()
                .bucket(bucket)
                .max_keys(PAGE)
                .send()
                .await
                .map_err(fail("ListObjectVersions"))?;
            let versions = page.versions().iter().map(|v| (v.key(), v.version_id()));
            let markers = page
                .delete_markers()
                .iter()
                .map(|m| (m.key(), m.version_id()));
            let entries: Vec<(String, Option<String>)> = versions
                .chain(markers)
                .filter_map(|(key, version)| Some((key?.to_owned(), version.map(str::to_owned))))
                .collect();
            // After a batch (and before the bucket itself goes): the bucket's tags read again (a
            // protection or another lease added meanwhile wins, as it would at the last moment).
            if removed > 0 {
                let tags = tags_of(s3, bucket).await?;
                watch.still_doomed(&tags).map_err(Stop::Told)?;
            }
            let Some(first) = entries.first().cloned() else {
                return Ok(());
            };
            // A version that outlives its successful deletion (say, under a legal hold that
            // DeleteObjects did not report): stop rather than loop.
            if previous_first.as_ref() == Some(&first) {
                return Err(Stop::Failed(Failure {
                    code: None,
                    message: format!(
                        "DeleteObjects: {:?} version {:?} is still listed after its deletion",
                        first.0, first.1
                    ),
                }));
            }
            let batch = entries.len() as u64;
            previous_first = Some(first);
            let objects = entries
                .into_iter()
                .filter_map(|(key, version)| {
                    ObjectIdentifier::builder()
                        .key(key)
                        .set_version_id(version)
                        .build()
                        .ok()
                })
                .collect();
            delete_objects(s3, bucket, objects)
                .await
                .map_err(Stop::Failed)?;
            removed += batch;
            watch.progress(removed).await;
        }
    }

    /// Why emptying ended early: an AWS call failed, or the watcher said stop.
    enum Stop {
        Failed(Failure),
        Told(String),
    }

    impl From<Failure> for Stop {
        fn from(f: Failure) -> Self {
            Stop::Failed(f)
        }
    }

    /// Deletes up to [`PAGE`] object versions in one call; a per-key error fails the whole.
    async fn delete_objects(
        s3: &aws_sdk_s3::Client,
        bucket: &str,
        objects: Vec<ObjectIdentifier>,
    ) -> Result<(), Failure> {
        if objects.is_empty() {
            return Ok(());
        }
        let delete = Delete::builder()
            .set_objects(Some(objects))
            .quiet(true)
            .build()
            .map_err(|e| Failure {
                code: None,
                message: format!("DeleteObjects: {e}"),
            })?;
        let out = s3
            .delete_objects()
            .bucket(bucket)
            .delete(delete)
            .send()
            .await
            .map_err(fail("DeleteObjects"))?;
        match out.errors().first() {
            None => Ok(()),
            Some(e) => Err(Failure {
                code: e.code().map(str::to_owned),
                message: format!(
                    "DeleteObjects: {} of the keys failed, first {:?} version {:?}: {}: {}",
                    out.errors().len(),
                    e.key().unwrap_or_default(),
                    e.version_id().unwrap_or_default(),
                    e.code().unwrap_or_default(),
                    e.message().unwrap_or_default()
                ),
            }),
        }
    }
}

mod sqs {
    use super::*;

    // The JSON protocol answers `QueueDoesNotExist`, the query protocol (and moto) the legacy
    // code.
    const NO_QUEUE: &[&str] = &[
        "AWS.SimpleQueueService.NonExistentQueue",
        "QueueDoesNotExist",
    ];

    /// The queue's URL, or `None` when it does not exist.
    async fn url(sqs: &aws_sdk_sqs::Client, arn: &Arn) -> Result<Option<String>, DeleteError> {
        match sqs
            .get_queue_url()
            .queue_name(arn.resource_id())
            .queue_owner_aws_account_id(arn.account())
            .send()
            .await
            .map_err(fail("GetQueueUrl"))
        {
            Ok(out) => Ok(out.queue_url().map(str::to_owned)),
            Err(f) if f.is(NO_QUEUE) => Ok(None),
            Err(f) => Err(f.into_error(&[])),
        }
    }

    pub(super) async fn inspect(sdk: &SdkConfig, arn: &Arn) -> Result<Inspection, DeleteError> {
        let sqs = aws_sdk_sqs::Client::new(sdk);
        let Some(url) = url(&sqs, arn).await? else {
            return Ok(Inspection::Gone);
        };
        match sqs
            .list_queue_tags()
            .queue_url(url)
            .send()
            .await
            .map_err(fail("ListQueueTags"))
        {
            Ok(out) => Ok(live(map_tags(out.tags()))),
            Err(f) if f.is(NO_QUEUE) => Ok(Inspection::Gone),
            Err(f) => Err(f.into_error(&[])),
        }
    }

    pub(super) async fn delete(sdk: &SdkConfig, arn: &Arn) -> Result<Deleted, DeleteError> {
        let sqs = aws_sdk_sqs::Client::new(sdk);
        let Some(url) = url(&sqs, arn).await? else {
            return Ok(Deleted::AlreadyGone);
        };
        let r = sqs
            .delete_queue()
            .queue_url(url)
            .send()
            .await
            .map_err(fail("DeleteQueue"));
        settle(r, NO_QUEUE, &[])
    }
}

mod sns {
    use super::*;

    const NO_TOPIC: &[&str] = &["NotFound", "ResourceNotFound"];

    /// Whether the topic exists; DeleteTopic succeeds for a missing topic, so deleting asks
    /// first.
    async fn exists(sns: &aws_sdk_sns::Client, arn: &Arn) -> Result<bool, DeleteError> {
        match sns
            .get_topic_attributes()
            .topic_arn(arn.as_str())
            .send()
            .await
            .map_err(fail("GetTopicAttributes"))
        {
            Ok(_) => Ok(true),
            Err(f) if f.is(NO_TOPIC) => Ok(false),
            Err(f) => Err(f.into_error(&[])),
        }
    }

    pub(super) async fn inspect(sdk: &SdkConfig, arn: &Arn) -> Result<Inspection, DeleteError> {
        let sns = aws_sdk_sns::Client::new(sdk);
        if !exists(&sns, arn).await? {
            return Ok(Inspection::Gone);
        }
        match sns
            .list_tags_for_resource()
            .resource_arn(arn.as_str())
            .send()
            .await
            .map_err(fail("ListTagsForResource"))
        {
            Ok(out) => Ok(live(Tags::from_pairs(
                out.tags().iter().map(|t| (t.key(), t.value())),
            ))),
            Err(f) if f.is(NO_TOPIC) => Ok(Inspection::Gone),
            Err(f) => Err(f.into_error(&[])),
        }
    }

    pub(super) async fn delete(sdk: &SdkConfig, arn: &Arn) -> Result<Deleted, DeleteError> {
        let sns = aws_sdk_sns::Client::new(sdk);
        if !exists(&sns, arn).await? {
            return Ok(Deleted::AlreadyGone);
        }
        let r = sns
            .delete_topic()
            .topic_arn(arn.as_str())
            .send()
            .await
            .map_err(fail("DeleteTopic"));
        settle(r, NO_TOPIC, &[])
    }
}

mod dynamodb {
    use aws_sdk_dynamodb::types::TableStatus;

    use super::*;

    const NO_TABLE: &[&str] = &["ResourceNotFoundException"];
    const IN_USE: &[&str] = &["ResourceInUseException"];

    /// `table/NAME`; the ARNs of a table's streams, indexes and backups go deeper and are not
    /// tables.
    pub(super) fn table_name(arn: &Arn) -> Result<&str, DeleteError> {
        match arn.resource().strip_prefix("table/") {
            Some(name) if !name.is_empty() && !name.contains('/') => Ok(name),
            _ => Err(DeleteError::Unsupported(format!(
                "dynamodb:{}",
                arn.resource()
            ))),
        }
    }

    /// The table's status, `None` when it does not exist.
    async fn status(
        ddb: &aws_sdk_dynamodb::Client,
        name: &str,
    ) -> Result<Option<TableStatus>, DeleteError> {
        match ddb
            .describe_table()
            .table_name(name)
            .send()
            .await
            .map_err(fail("DescribeTable"))
        {
            Ok(out) => Ok(Some(
                out.table()
                    .and_then(|t| t.table_status())
                    .cloned()
                    .unwrap_or(TableStatus::Active),
            )),
            Err(f) if f.is(NO_TABLE) => Ok(None),
            Err(f) => Err(f.into_error(&[])),
        }
    }

    pub(super) async fn inspect(sdk: &SdkConfig, arn: &Arn) -> Result<Inspection, DeleteError> {
        let name = table_name(arn)?;
        let ddb = aws_sdk_dynamodb::Client::new(sdk);
        match status(&ddb, name).await? {
            None | Some(TableStatus::Deleting) => return Ok(Inspection::Gone),
            Some(_) => {}
        }
        let mut pairs = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = match ddb
                .list_tags_of_resource()
                .resource_arn(arn.as_str())
                .set_next_token(token.take())
                .send()
                .await
                .map_err(fail("ListTagsOfResource"))
            {
                Ok(out) => out,
                Err(f) if f.is(NO_TABLE) => return Ok(Inspection::Gone),
                Err(f) => return Err(f.into_error(&[])),
            };
            pairs.extend(
                out.tags()
                    .iter()
                    .map(|t| (t.key().to_owned(), t.value().to_owned())),
            );
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => break,
            }
        }
        Ok(live(Tags::from_pairs(
            pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )))
    }

    pub(super) async fn delete(sdk: &SdkConfig, arn: &Arn) -> Result<Deleted, DeleteError> {
        let name = table_name(arn)?;
        let ddb = aws_sdk_dynamodb::Client::new(sdk);
        let r = ddb
            .delete_table()
            .table_name(name)
            .send()
            .await
            .map_err(fail("DeleteTable"));
        match r {
            // A table already being deleted answers "in use"; that is a deletion under way.
            Err(f) if f.is(IN_USE) => match status(&ddb, name).await? {
                None | Some(TableStatus::Deleting) => Ok(Deleted::AlreadyGone),
                Some(_) => Err(f.into_error(IN_USE)),
            },
            r => settle(r, NO_TABLE, IN_USE),
        }
    }
}

mod lambda {
    use super::*;

    const NO_FUNCTION: &[&str] = &["ResourceNotFoundException"];

    /// `function:NAME`; a qualified ARN (`function:NAME:VERSION` or `:ALIAS`) names a version
    /// or alias, which this module does not delete.
    pub(super) fn function_name(arn: &Arn) -> Result<&str, DeleteError> {
        match arn.resource().strip_prefix("function:") {
            Some(name) if !name.is_empty() && !name.contains(':') => Ok(name),
            _ => Err(DeleteError::Unsupported(format!(
                "lambda:{}",
                arn.resource()
            ))),
        }
    }

    pub(super) async fn inspect(sdk: &SdkConfig, arn: &Arn) -> Result<Inspection, DeleteError> {
        let name = function_name(arn)?;
        match aws_sdk_lambda::Client::new(sdk)
            .get_function()
            .function_name(name)
            .send()
            .await
            .map_err(fail("GetFunction"))
        {
            // Without lambda:ListTags AWS answers with no tags and a TagsError instead: reading
            // that as "untagged" would make a leased function look reapable.
            Ok(out) => match out.tags_error() {
                Some(e) => Err(DeleteError::Aws(format!(
                    "GetFunction: tags unreadable: {}: {}",
                    e.error_code(),
                    e.message()
                ))),
                None => Ok(live(map_tags(out.tags()))),
            },
            Err(f) if f.is(NO_FUNCTION) => Ok(Inspection::Gone),
            Err(f) => Err(f.into_error(&[])),
        }
    }

    pub(super) async fn delete(sdk: &SdkConfig, arn: &Arn) -> Result<Deleted, DeleteError> {
        let name = function_name(arn)?;
        let r = aws_sdk_lambda::Client::new(sdk)
            .delete_function()
            .function_name(name)
            .send()
            .await
            .map_err(fail("DeleteFunction"));
        settle(r, NO_FUNCTION, &["ResourceConflictException"])
    }
}

mod logs {
    use super::*;

    const NO_GROUP: &[&str] = &["ResourceNotFoundException"];

    /// `log-group:NAME`, also as `log-group:NAME:*` (DescribeLogGroups' form). Log group
    /// names may contain `/`, so `Arn::resource_id` would cut them.
    pub(super) fn group_name(arn: &Arn) -> Result<&str, DeleteError> {
        let name = arn.resource().strip_prefix("log-group:");
        match name.map(|n| n.strip_suffix(":*").unwrap_or(n)) {
            Some(n) if !n.is_empty() && !n.contains(':') => Ok(n),
            _ => Err(DeleteError::Unsupported(format!("logs:{}", arn.resource()))),
        }
    }

    pub(super) async fn inspect(sdk: &SdkConfig, arn: &Arn) -> Result<Inspection, DeleteError> {
        let name = group_name(arn)?;
        let logs = aws_sdk_cloudwatchlogs::Client::new(sdk);
        // Groups come sorted by name, so the group itself, if it exists, is the first one with
        // its name as prefix.
        let out = logs
            .describe_log_groups()
            .log_group_name_prefix(name)
            .limit(1)
            .send()
            .await
            .map_err(fail("DescribeLogGroups"))
            .map_err(|f| f.into_error(&[]))?;
        let exists = out
            .log_groups()
            .iter()
            .any(|g| g.log_group_name() == Some(name));
        if !exists {
            return Ok(Inspection::Gone);
        }
        // Tagging takes the ARN without the `:*` DescribeLogGroups' `arn` carries; moto answers
        // a missing group with no tags rather than an error, hence the look above.
        let tag_arn = sibling(arn, "logs", &format!("log-group:{name}"));
        match logs
            .list_tags_for_resource()
            .resource_arn(tag_arn.as_str())
            .send()
            .await
            .map_err(fail("ListTagsForResource"))
        {
            Ok(out) => Ok(live(map_tags(out.tags()))),
            Err(f) if f.is(NO_GROUP) => Ok(Inspection::Gone),
            Err(f) => Err(f.into_error(&[])),
        }
    }

    pub(super) async fn delete(sdk: &SdkConfig, arn: &Arn) -> Result<Deleted, DeleteError> {
        let name = group_name(arn)?;
        let r = aws_sdk_cloudwatchlogs::Client::new(sdk)
            .delete_log_group()
            .log_group_name(name)
            .send()
            .await
            .map_err(fail("DeleteLogGroup"));
        // A concurrent change to the group: try again on a later pass.
        settle(r, NO_GROUP, &["OperationAbortedException"])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deletable_types_are_what_arns_of_those_types_yield() {
        let cases = [
            "arn:aws:ec2:us-east-1:123456789012:instance/i-0abc",
            "arn:aws:ec2:us-east-1:123456789012:volume/vol-1",
            "arn:aws:ec2:us-east-1:123456789012:snapshot/snap-1",
            "arn:aws:ec2:us-east-1:123456789012:image/ami-1",
            "arn:aws:ec2:us-east-1:123456789012:security-group/sg-1",
            "arn:aws:ec2:us-east-1:123456789012:network-interface/eni-1",
            "arn:aws:ec2:us-east-1:123456789012:elastic-ip/eipalloc-1",
            "arn:aws:ec2:us-east-1:123456789012:key-pair/key-1",
            "arn:aws:ec2:us-east-1:123456789012:launch-template/lt-1",
            "arn:aws:s3:::bucket-1",
            "arn:aws:sqs:us-east-1:123456789012:q",
            "arn:aws:sns:us-east-1:123456789012:t",
            "arn:aws:dynamodb:us-east-1:123456789012:table/t",
            "arn:aws:lambda:us-east-1:123456789012:function:f",
            "arn:aws:logs:us-east-1:123456789012:log-group:/aws/x",
        ];
        let types: Vec<String> = cases
            .iter()
            .map(|a| Arn::parse(a).expect("valid").resource_type())
            .collect();
        assert_eq!(types, DELETABLE_TYPES);
    }

    #[test]
    fn names_inside_arns() {
        let arn = |s: &str| Arn::parse(s).expect("valid");
        let logs = arn("arn:aws:logs:us-east-1:1:log-group:/aws/lambda/f");
        assert_eq!(logs::group_name(&logs).ok(), Some("/aws/lambda/f"));
        let logs_star = arn("arn:aws:logs:us-east-1:1:log-group:/a/b:*");
        assert_eq!(logs::group_name(&logs_star).ok(), Some("/a/b"));
        let f = arn("arn:aws:lambda:us-east-1:1:function:f");
        assert_eq!(lambda::function_name(&f).ok(), Some("f"));
        let version = arn("arn:aws:lambda:us-east-1:1:function:f:3");
        assert!(matches!(
            lambda::function_name(&version),
            Err(DeleteError::Unsupported(_))
        ));
        let t = arn("arn:aws:dynamodb:us-east-1:1:table/t1");
        assert_eq!(dynamodb::table_name(&t).ok(), Some("t1"));
        let stream = arn("arn:aws:dynamodb:us-east-1:1:table/t1/stream/2024");
        assert!(matches!(
            dynamodb::table_name(&stream),
            Err(DeleteError::Unsupported(_))
        ));
        let vol = arn("arn:aws-cn:ec2:cn-north-1:1:volume/vol-1");
        assert_eq!(
            sibling(&vol, "ec2", "instance/i-1").as_str(),
            "arn:aws-cn:ec2:cn-north-1:1:instance/i-1"
        );
    }
}
