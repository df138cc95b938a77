//! Application, network and gateway load balancers (Elastic Load Balancing v2) and their
//! target groups. Deleting a load balancer deletes its listeners and rules (they have no
//! deleter of their own); a target group waits for the load balancers that forward to it.
//! Classic load balancers (`loadbalancer/NAME`, no `app/`, `net/` or `gwy/`) share the ARN
//! type name and are refused as unsupported: another API deletes them.

use super::*;

const NO_LB: &[&str] = &["LoadBalancerNotFound"];
const NO_TG: &[&str] = &["TargetGroupNotFound"];
const IN_USE: &[&str] = &["ResourceInUse"];

/// The IAM actions of the calls below, sorted: DescribeLoadBalancers, DescribeTags;
/// DeleteLoadBalancer.
pub(super) const LOAD_BALANCER_ACTIONS: &[&str] = &[
    "elasticloadbalancing:DeleteLoadBalancer",
    "elasticloadbalancing:DescribeLoadBalancers",
    "elasticloadbalancing:DescribeTags",
];

/// The IAM actions of the calls below, sorted: DescribeTargetGroups, DescribeTags;
/// DeleteTargetGroup.
pub(super) const TARGET_GROUP_ACTIONS: &[&str] = &[
    "elasticloadbalancing:DeleteTargetGroup",
    "elasticloadbalancing:DescribeTags",
    "elasticloadbalancing:DescribeTargetGroups",
];

fn client(sdk: &SdkConfig) -> aws_sdk_elasticloadbalancingv2::Client {
    aws_sdk_elasticloadbalancingv2::Client::new(sdk)
}

/// `loadbalancer/{app,net,gwy}/NAME/ID`: a classic load balancer's ARN has no deleter here.
pub(super) fn check_v2(arn: &Arn) -> Result<(), DeleteError> {
    let parts: Vec<&str> = arn.resource().split('/').collect();
    match parts[..] {
        ["loadbalancer", "app" | "net" | "gwy", name, id] if !name.is_empty() && !id.is_empty() => {
            Ok(())
        }
        _ => Err(DeleteError::Unsupported(format!(
            "elasticloadbalancing:{} (a classic load balancer, or not a load balancer)",
            arn.resource()
        ))),
    }
}

/// The resource's current tags; `None` when it is gone.
async fn tags(
    elb: &aws_sdk_elasticloadbalancingv2::Client,
    arn: &Arn,
    not_found: &[&str],
) -> Result<Option<Tags>, DeleteError> {
    match elb
        .describe_tags()
        .resource_arns(arn.as_str())
        .send()
        .await
        .map_err(fail("DescribeTags"))
    {
        Ok(out) => Ok(Some(Tags::from_pairs(
            out.tag_descriptions()
                .iter()
                .filter(|d| d.resource_arn() == Some(arn.as_str()))
                .flat_map(|d| d.tags())
                .filter_map(|t| Some((t.key()?, t.value().unwrap_or_default()))),
        ))),
        Err(f) if f.is(not_found) => Ok(None),
        Err(f) => Err(f.into_error(&[])),
    }
}

/// Whether the load balancer exists.
async fn load_balancer_exists(
    elb: &aws_sdk_elasticloadbalancingv2::Client,
    arn: &Arn,
) -> Result<bool, DeleteError> {
    match elb
        .describe_load_balancers()
        .load_balancer_arns(arn.as_str())
        .send()
        .await
        .map_err(fail("DescribeLoadBalancers"))
    {
        Ok(out) => Ok(out
            .load_balancers()
            .iter()
            .any(|lb| lb.load_balancer_arn() == Some(arn.as_str()))),
        Err(f) if f.is(NO_LB) => Ok(false),
        Err(f) => Err(f.into_error(&[])),
    }
}

pub(super) async fn inspect_load_balancer(
    sdk: &SdkConfig,
    arn: &Arn,
) -> Result<Inspection, DeleteError> {
    check_v2(arn)?;
    let elb = client(sdk);
    if !load_balancer_exists(&elb, arn).await? {
        return Ok(Inspection::Gone);
    }
    Ok(match tags(&elb, arn, NO_LB).await? {
        Some(tags) => live(tags),
        None => Inspection::Gone,
    })
}

pub(super) async fn delete_load_balancer(
    sdk: &SdkConfig,
    arn: &Arn,
) -> Result<Deleted, DeleteError> {
    check_v2(arn)?;
    let elb = client(sdk);
    // DeleteLoadBalancer succeeds on a load balancer that does not exist: looked up first, so
    // that already gone is told apart.
    if !load_balancer_exists(&elb, arn).await? {
        return Ok(Deleted::AlreadyGone);
    }
    let r = elb
        .delete_load_balancer()
        .load_balancer_arn(arn.as_str())
        .send()
        .await
        .map_err(fail("DeleteLoadBalancer"));
    settle(r, NO_LB, IN_USE)
}

/// The load balancers that forward to the target group; `None` when it is gone.
async fn target_group_users(
    elb: &aws_sdk_elasticloadbalancingv2::Client,
    arn: &Arn,
) -> Result<Option<Vec<Arn>>, DeleteError> {
    match elb
        .describe_target_groups()
        .target_group_arns(arn.as_str())
        .send()
        .await
        .map_err(fail("DescribeTargetGroups"))
    {
        Ok(out) => Ok(out
            .target_groups()
            .iter()
            .find(|g| g.target_group_arn() == Some(arn.as_str()))
            .map(|g| {
                g.load_balancer_arns()
                    .iter()
                    .filter_map(|a| Arn::parse(a).ok())
                    .collect()
            })),
        Err(f) if f.is(NO_TG) => Ok(None),
        Err(f) => Err(f.into_error(&[])),
    }
}

pub(super) async fn inspect_target_group(
    sdk: &SdkConfig,
    arn: &Arn,
) -> Result<Inspection, DeleteError> {
    let elb = client(sdk);
    let Some(depends_on) = target_group_users(&elb, arn).await? else {
        return Ok(Inspection::Gone);
    };
    Ok(match tags(&elb, arn, NO_TG).await? {
        Some(tags) => Inspection::Live { tags, depends_on },
        None => Inspection::Gone,
    })
}

pub(super) async fn delete_target_group(
    sdk: &SdkConfig,
    arn: &Arn,
) -> Result<Deleted, DeleteError> {
    let elb = client(sdk);
    // Like DeleteLoadBalancer, DeleteTargetGroup does not say whether the group existed.
    if target_group_users(&elb, arn).await?.is_none() {
        return Ok(Deleted::AlreadyGone);
    }
    let r = elb
        .delete_target_group()
        .target_group_arn(arn.as_str())
        .send()
        .await
        .map_err(fail("DeleteTargetGroup"));
    settle(r, NO_TG, IN_USE)
}

/// The types of this file, whole: how each is inspected and deleted, where it goes in the
/// deletion order, and the IAM actions of its calls (see [`Kind`]).
pub(super) const KINDS: &[Kind] = &[
    Kind {
        ty: ResourceType::ElbLoadBalancer,
        example: "arn:aws:elasticloadbalancing:us-east-1:123456789012:\
                 loadbalancer/app/web/50dc6c495c0c9188",
        rank: 3,
        inspect: |sdk, arn| Box::pin(inspect_load_balancer(sdk, arn)),
        delete: |sdk, arn, _| Box::pin(delete_load_balancer(sdk, arn)),
        actions: LOAD_BALANCER_ACTIONS,
        tag_conditioned: &["elasticloadbalancing:DeleteLoadBalancer"],
    },
    Kind {
        ty: ResourceType::ElbTargetGroup,
        example: "arn:aws:elasticloadbalancing:us-east-1:123456789012:\
                 targetgroup/web/73e2d6bc24d8a067",
        rank: REST,
        inspect: |sdk, arn| Box::pin(inspect_target_group(sdk, arn)),
        delete: |sdk, arn, _| Box::pin(delete_target_group(sdk, arn)),
        actions: TARGET_GROUP_ACTIONS,
        tag_conditioned: &["elasticloadbalancing:DeleteTargetGroup"],
    },
];
