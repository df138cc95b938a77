//! EC2: instances, volumes, snapshots, AMIs, security groups, network interfaces, Elastic IPs,
//! key pairs, launch templates. The VPC family is in `vpc.rs`.

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

use crate::inventory::ec2::{filter, tags};

fn instance_is_live(i: &aws_sdk_ec2::types::Instance) -> bool {
    !matches!(
        i.state().and_then(|s| s.name()),
        Some(InstanceStateName::Terminated | InstanceStateName::ShuttingDown)
    )
}

/// States of an instance that is not on its way out (what [`inspect_instance`] calls live).
const LIVE_INSTANCE_STATES: &[&str] = &["pending", "running", "stopping", "stopped"];

/// The ARNs of the live instances matching `filters`, all pages.
pub(super) async fn live_instances(
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

/// The IAM actions of the calls below, sorted: DescribeImages (the image approval checked
/// again before a delete); DescribeInstances; TerminateInstances.
pub(super) const INSTANCE_ACTIONS: &[&str] = &[
    "ec2:DescribeImages",
    "ec2:DescribeInstances",
    "ec2:TerminateInstances",
];

/// The image the instance `id` runs, or the default version of launch template `id`
/// launches, as EC2 says now; `None` when it is gone or names none. An AMI EC2 no longer
/// describes is known by its id alone.
pub(super) async fn image_of(
    ec2: &aws_sdk_ec2::Client,
    ty: ResourceType,
    id: &str,
) -> Result<Option<crate::model::Image>, DeleteError> {
    let ami = match ty {
        ResourceType::Ec2Instance => {
            let out = match ec2
                .describe_instances()
                .instance_ids(id)
                .send()
                .await
                .map_err(fail("DescribeInstances"))
            {
                Ok(out) => out,
                Err(f) if f.is(INSTANCE_NOT_FOUND) => return Ok(None),
                Err(f) => return Err(f.into_error(&[])),
            };
            out.reservations()
                .iter()
                .flat_map(|r| r.instances())
                .find(|i| i.instance_id() == Some(id))
                .and_then(|i| i.image_id().map(str::to_owned))
        }
        ResourceType::Ec2LaunchTemplate => {
            let out = match ec2
                .describe_launch_template_versions()
                .launch_template_id(id)
                .versions("$Default")
                .send()
                .await
                .map_err(fail("DescribeLaunchTemplateVersions"))
            {
                Ok(out) => out,
                Err(f) if f.is(TEMPLATE_NOT_FOUND) => return Ok(None),
                Err(f) => return Err(f.into_error(&[])),
            };
            out.launch_template_versions()
                .iter()
                .find_map(|v| v.launch_template_data().and_then(|d| d.image_id()))
                .map(str::to_owned)
        }
        _ => None,
    };
    let Some(ami) = ami else { return Ok(None) };
    // A filter, not `ImageIds`: a deregistered AMI is an empty answer, not an error.
    let out = ec2
        .describe_images()
        .filters(filter("image-id", &[ami.as_str()]))
        .include_deprecated(true)
        .include_disabled(true)
        .send()
        .await
        .map_err(fail("DescribeImages"))
        .map_err(|f| f.into_error(&[]))?;
    Ok(Some(
        out.images()
            .iter()
            .find(|i| i.image_id() == Some(ami.as_str()))
            .map_or_else(
                || crate::model::Image::by_id(ami.clone()),
                |i| crate::model::Image {
                    id: ami.clone(),
                    owner: i.owner_id().map(str::to_owned),
                    owner_alias: i.image_owner_alias().map(str::to_owned),
                    name: i.name().map(str::to_owned),
                },
            ),
    ))
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

/// The IAM actions of the calls below, sorted: DescribeVolumes, DescribeInstances (the instances it
/// is attached to); DeleteVolume.
pub(super) const VOLUME_ACTIONS: &[&str] = &[
    "ec2:DeleteVolume",
    "ec2:DescribeInstances",
    "ec2:DescribeVolumes",
];

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

/// The IAM actions of the calls below, sorted: DescribeSnapshots, DescribeImages (the account's
/// AMIs it backs); DeleteSnapshot.
pub(super) const SNAPSHOT_ACTIONS: &[&str] = &[
    "ec2:DeleteSnapshot",
    "ec2:DescribeImages",
    "ec2:DescribeSnapshots",
];

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

/// The IAM actions of the calls below, sorted: DescribeImages; DeregisterImage.
pub(super) const IMAGE_ACTIONS: &[&str] = &["ec2:DeregisterImage", "ec2:DescribeImages"];

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
            Some(i) if !matches!(i.state(), Some(ImageState::Deregistered)) => live(tags(i.tags())),
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

/// The IAM actions of the calls below, sorted: DescribeSecurityGroups, DescribeInstances and
/// DescribeNetworkInterfaces (its users); DeleteSecurityGroup.
pub(super) const SECURITY_GROUP_ACTIONS: &[&str] = &[
    "ec2:DeleteSecurityGroup",
    "ec2:DescribeInstances",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSecurityGroups",
];

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
    let mut depends_on = live_instances(ec2, arn, vec![filter("instance.group-id", &[id])]).await?;
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

/// The IAM actions of the calls below, sorted: DescribeNetworkInterfaces, DescribeInstances (its
/// instance); DeleteNetworkInterface.
pub(super) const NETWORK_INTERFACE_ACTIONS: &[&str] = &[
    "ec2:DeleteNetworkInterface",
    "ec2:DescribeInstances",
    "ec2:DescribeNetworkInterfaces",
];

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

/// The IAM actions of the calls below, sorted: DescribeAddresses, DescribeInstances (its
/// instance), DescribeNatGateways (a NAT gateway holding it); ReleaseAddress.
pub(super) const ADDRESS_ACTIONS: &[&str] = &[
    "ec2:DescribeAddresses",
    "ec2:DescribeInstances",
    "ec2:DescribeNatGateways",
    "ec2:ReleaseAddress",
];

/// An elastic IP, by allocation id. Associated with an instance, it depends on the
/// instance (terminating it frees the address); held by a live NAT gateway, on the gateway
/// (its interface is the gateway's, deleted with it); associated with another interface of no
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
    // Asked whatever the association says: moto and AWS report a NAT gateway's address as
    // associated with the gateway's interface, or with nothing while it is pending, and an
    // account holds few NAT gateways.
    let nat = nat_holding(ec2, id).await?;
    let depends_on = match (instance, nat, eni) {
        (Some(i), _, _) => live_instances(ec2, arn, vec![filter("instance-id", &[i])]).await?,
        (None, Some((n, true)), _) => vec![sibling(arn, "ec2", &format!("natgateway/{n}"))],
        // A NAT gateway on its way out frees the address itself (AWS answers InUse until it
        // has; moto 5.2.5 never does, and releases it anyway).
        (None, Some((_, false)), _) => Vec::new(),
        (None, None, Some(e)) => vec![sibling(arn, "ec2", &format!("network-interface/{e}"))],
        (None, None, None) => Vec::new(),
    };
    Ok(Inspection::Live {
        tags: tags(address.tags()),
        depends_on,
    })
}

/// The NAT gateway holding the address `allocation_id`, in any state, and whether it is live
/// (pending or available).
async fn nat_holding(
    ec2: &aws_sdk_ec2::Client,
    allocation_id: &str,
) -> Result<Option<(String, bool)>, DeleteError> {
    let mut pages = ec2.describe_nat_gateways().into_paginator().send();
    let mut ending = None;
    while let Some(page) = pages.next().await {
        let page = page
            .map_err(fail("DescribeNatGateways"))
            .map_err(|f| f.into_error(&[]))?;
        for n in page.nat_gateways() {
            let holds = n
                .nat_gateway_addresses()
                .iter()
                .any(|a| a.allocation_id() == Some(allocation_id));
            let live = n
                .state()
                .is_some_and(|s| matches!(s.as_str(), "pending" | "available"));
            match (holds, live, n.nat_gateway_id()) {
                (true, true, Some(nat_id)) => return Ok(Some((nat_id.to_owned(), true))),
                (true, false, Some(nat_id)) => ending = Some((nat_id.to_owned(), false)),
                _ => {}
            }
        }
    }
    Ok(ending)
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

/// The IAM actions of the calls below, sorted: DescribeKeyPairs (also before deleting: the name
/// from the id); DeleteKeyPair.
pub(super) const KEY_PAIR_ACTIONS: &[&str] = &["ec2:DeleteKeyPair", "ec2:DescribeKeyPairs"];

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

/// The IAM actions of the calls below, sorted: DescribeLaunchTemplates; DeleteLaunchTemplate;
/// DescribeLaunchTemplateVersions and DescribeImages (the image approval checked again).
pub(super) const LAUNCH_TEMPLATE_ACTIONS: &[&str] = &[
    "ec2:DeleteLaunchTemplate",
    "ec2:DescribeImages",
    "ec2:DescribeLaunchTemplateVersions",
    "ec2:DescribeLaunchTemplates",
];

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

/// The types of this file, whole: how each is inspected and deleted, where it goes in the
/// deletion order, and the IAM actions of its calls (see [`Kind`]).
pub(super) const KINDS: &[Kind] = &[
    Kind {
        ty: ResourceType::Ec2Instance,
        example: "arn:aws:ec2:us-east-1:123456789012:instance/i-0abc",
        rank: 3,
        inspect: |sdk, arn| {
            Box::pin(async move { inspect_instance(&client(sdk), arn.resource_id()).await })
        },
        delete: |sdk, arn, _| {
            Box::pin(async move { terminate_instance(&client(sdk), arn.resource_id()).await })
        },
        actions: INSTANCE_ACTIONS,
        tag_conditioned: &["ec2:TerminateInstances"],
    },
    Kind {
        ty: ResourceType::Ec2Volume,
        example: "arn:aws:ec2:us-east-1:123456789012:volume/vol-1",
        rank: REST,
        inspect: |sdk, arn| {
            Box::pin(async move { inspect_volume(&client(sdk), arn, arn.resource_id()).await })
        },
        delete: |sdk, arn, _| {
            Box::pin(async move { delete_volume(&client(sdk), arn.resource_id()).await })
        },
        actions: VOLUME_ACTIONS,
        tag_conditioned: &["ec2:DeleteVolume"],
    },
    Kind {
        ty: ResourceType::Ec2Snapshot,
        example: "arn:aws:ec2:us-east-1:123456789012:snapshot/snap-1",
        rank: 7,
        inspect: |sdk, arn| {
            Box::pin(async move { inspect_snapshot(&client(sdk), arn, arn.resource_id()).await })
        },
        delete: |sdk, arn, _| {
            Box::pin(async move { delete_snapshot(&client(sdk), arn.resource_id()).await })
        },
        actions: SNAPSHOT_ACTIONS,
        tag_conditioned: &["ec2:DeleteSnapshot"],
    },
    Kind {
        ty: ResourceType::Ec2Image,
        example: "arn:aws:ec2:us-east-1:123456789012:image/ami-1",
        rank: 4,
        inspect: |sdk, arn| {
            Box::pin(async move { inspect_image(&client(sdk), arn.resource_id()).await })
        },
        delete: |sdk, arn, _| {
            Box::pin(async move { deregister_image(&client(sdk), arn.resource_id()).await })
        },
        actions: IMAGE_ACTIONS,
        tag_conditioned: &["ec2:DeregisterImage"],
    },
    Kind {
        ty: ResourceType::Ec2SecurityGroup,
        example: "arn:aws:ec2:us-east-1:123456789012:security-group/sg-1",
        rank: 7,
        inspect: |sdk, arn| {
            Box::pin(
                async move { inspect_security_group(&client(sdk), arn, arn.resource_id()).await },
            )
        },
        delete: |sdk, arn, _| {
            Box::pin(async move { delete_security_group(&client(sdk), arn.resource_id()).await })
        },
        actions: SECURITY_GROUP_ACTIONS,
        tag_conditioned: &["ec2:DeleteSecurityGroup"],
    },
    Kind {
        ty: ResourceType::Ec2NetworkInterface,
        example: "arn:aws:ec2:us-east-1:123456789012:network-interface/eni-1",
        rank: 4,
        inspect: |sdk, arn| {
            Box::pin(async move {
                inspect_network_interface(&client(sdk), arn, arn.resource_id()).await
            })
        },
        delete: |sdk, arn, _| {
            Box::pin(async move { delete_network_interface(&client(sdk), arn.resource_id()).await })
        },
        actions: NETWORK_INTERFACE_ACTIONS,
        tag_conditioned: &["ec2:DeleteNetworkInterface"],
    },
    Kind {
        ty: ResourceType::Ec2ElasticIp,
        example: "arn:aws:ec2:us-east-1:123456789012:elastic-ip/eipalloc-1",
        rank: 5,
        inspect: |sdk, arn| {
            Box::pin(async move { inspect_address(&client(sdk), arn, arn.resource_id()).await })
        },
        delete: |sdk, arn, _| {
            Box::pin(async move { release_address(&client(sdk), arn.resource_id()).await })
        },
        actions: ADDRESS_ACTIONS,
        tag_conditioned: &["ec2:ReleaseAddress"],
    },
    Kind {
        ty: ResourceType::Ec2KeyPair,
        example: "arn:aws:ec2:us-east-1:123456789012:key-pair/key-1",
        rank: REST,
        inspect: |sdk, arn| {
            Box::pin(async move { inspect_key_pair(&client(sdk), arn.resource_id()).await })
        },
        delete: |sdk, arn, _| {
            Box::pin(async move { delete_key_pair(&client(sdk), arn.resource_id()).await })
        },
        actions: KEY_PAIR_ACTIONS,
        tag_conditioned: &["ec2:DeleteKeyPair"],
    },
    Kind {
        ty: ResourceType::Ec2LaunchTemplate,
        example: "arn:aws:ec2:us-east-1:123456789012:launch-template/lt-1",
        rank: REST,
        inspect: |sdk, arn| {
            Box::pin(async move { inspect_launch_template(&client(sdk), arn.resource_id()).await })
        },
        delete: |sdk, arn, _| {
            Box::pin(async move { delete_launch_template(&client(sdk), arn.resource_id()).await })
        },
        actions: LAUNCH_TEMPLATE_ACTIONS,
        tag_conditioned: &["ec2:DeleteLaunchTemplate"],
    },
];
