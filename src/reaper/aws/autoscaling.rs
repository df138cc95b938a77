//! Auto Scaling groups and launch configurations.
//!
//! A group is a controller: deleting it (`ForceDelete`) terminates its instances, which is how
//! they are reaped — an instance deleted on its own is replaced. A launch configuration has
//! no tags (AWS keeps none on it): its inspection is `Live` with no tags, so only a rule for
//! untagged resources ever reaps one, and a group using it makes its deletion `InUse` (groups
//! rank before it).

use super::*;

/// AWS answers a name it does not know with a `ValidationError` ("… name not found").
const VALIDATION: &[&str] = &["ValidationError"];
const IN_USE: &[&str] = &["ResourceInUse", "ScalingActivityInProgress"];

/// The IAM actions of the calls below, sorted: DescribeAutoScalingGroups;
/// DeleteAutoScalingGroup.
pub(super) const GROUP_ACTIONS: &[&str] = &[
    "autoscaling:DeleteAutoScalingGroup",
    "autoscaling:DescribeAutoScalingGroups",
];

/// The IAM actions of the calls below, sorted: DescribeLaunchConfigurations;
/// DeleteLaunchConfiguration.
pub(super) const LAUNCH_CONFIGURATION_ACTIONS: &[&str] = &[
    "autoscaling:DeleteLaunchConfiguration",
    "autoscaling:DescribeLaunchConfigurations",
];

fn client(sdk: &SdkConfig) -> aws_sdk_autoscaling::Client {
    aws_sdk_autoscaling::Client::new(sdk)
}

/// Whether a `ValidationError` says the named thing does not exist.
fn not_found(f: &Failure) -> bool {
    f.is(VALIDATION) && f.message.contains("not found")
}

/// The tags of the group `arn` names, `None` when it is gone, being deleted, or a group of
/// the same name that is not this one (its ARN carries another id).
async fn group_tags(
    asg: &aws_sdk_autoscaling::Client,
    arn: &Arn,
) -> Result<Option<Tags>, DeleteError> {
    let out = asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(arn.resource_id())
        .send()
        .await
        .map_err(fail("DescribeAutoScalingGroups"))
        .map_err(|f| f.into_error(&[]))?;
    let Some(group) = out
        .auto_scaling_groups()
        .iter()
        .find(|g| g.auto_scaling_group_arn() == Some(arn.as_str()))
    else {
        return Ok(None);
    };
    if group.status() == Some("Delete in progress") {
        return Ok(None);
    }
    Ok(Some(Tags::from_pairs(group.tags().iter().filter_map(
        |t| Some((t.key()?, t.value().unwrap_or_default())),
    ))))
}

pub(super) async fn inspect_group(sdk: &SdkConfig, arn: &Arn) -> Result<Inspection, DeleteError> {
    Ok(match group_tags(&client(sdk), arn).await? {
        Some(tags) => live(tags),
        None => Inspection::Gone,
    })
}

pub(super) async fn delete_group(sdk: &SdkConfig, arn: &Arn) -> Result<Deleted, DeleteError> {
    let asg = client(sdk);
    // Looked up first: a group of the same name that is not this one is never deleted.
    if group_tags(&asg, arn).await?.is_none() {
        return Ok(Deleted::AlreadyGone);
    }
    let r = asg
        .delete_auto_scaling_group()
        .auto_scaling_group_name(arn.resource_id())
        .force_delete(true)
        .send()
        .await
        .map_err(fail("DeleteAutoScalingGroup"));
    match r {
        Err(f) if not_found(&f) => Ok(Deleted::AlreadyGone),
        r => settle(r, &[], IN_USE),
    }
}

/// Whether the launch configuration `arn` names exists (and is this one, not another of the
/// same name).
async fn launch_configuration_exists(
    asg: &aws_sdk_autoscaling::Client,
    arn: &Arn,
) -> Result<bool, DeleteError> {
    let out = asg
        .describe_launch_configurations()
        .launch_configuration_names(arn.resource_id())
        .send()
        .await
        .map_err(fail("DescribeLaunchConfigurations"))
        .map_err(|f| f.into_error(&[]))?;
    Ok(out
        .launch_configurations()
        .iter()
        .any(|c| c.launch_configuration_arn() == Some(arn.as_str())))
}

pub(super) async fn inspect_launch_configuration(
    sdk: &SdkConfig,
    arn: &Arn,
) -> Result<Inspection, DeleteError> {
    Ok(if launch_configuration_exists(&client(sdk), arn).await? {
        live(Tags::default())
    } else {
        Inspection::Gone
    })
}

pub(super) async fn delete_launch_configuration(
    sdk: &SdkConfig,
    arn: &Arn,
) -> Result<Deleted, DeleteError> {
    let asg = client(sdk);
    if !launch_configuration_exists(&asg, arn).await? {
        return Ok(Deleted::AlreadyGone);
    }
    let r = asg
        .delete_launch_configuration()
        .launch_configuration_name(arn.resource_id())
        .send()
        .await
        .map_err(fail("DeleteLaunchConfiguration"));
    match r {
        Err(f) if not_found(&f) => Ok(Deleted::AlreadyGone),
        r => settle(r, &[], IN_USE),
    }
}

/// The types of this file, whole: how each is inspected and deleted, where it goes in the
/// deletion order, and the IAM actions of its calls (see [`Kind`]).
pub(super) const KINDS: &[Kind] = &[
    Kind {
        ty: ResourceType::AutoscalingGroup,
        example: "arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:\
                 0f2a7c1e-1111-2222-3333-444455556666:autoScalingGroupName/asg-1",
        rank: 2,
        inspect: |sdk, arn| Box::pin(inspect_group(sdk, arn)),
        delete: |sdk, arn, _| Box::pin(delete_group(sdk, arn)),
        actions: GROUP_ACTIONS,
        tag_conditioned: &["autoscaling:DeleteAutoScalingGroup"],
    },
    Kind {
        ty: ResourceType::AutoscalingLaunchConfiguration,
        example: "arn:aws:autoscaling:us-east-1:123456789012:launchConfiguration:\
                 0f2a7c1e-1111-2222-3333-444455556666:launchConfigurationName/lc-1",
        rank: REST,
        inspect: |sdk, arn| Box::pin(inspect_launch_configuration(sdk, arn)),
        delete: |sdk, arn, _| Box::pin(delete_launch_configuration(sdk, arn)),
        actions: LAUNCH_CONFIGURATION_ACTIONS,
        // A launch configuration carries no tags: IAM has none to condition on.
        tag_conditioned: &[],
    },
];
