//! EKS clusters and managed node groups.
//!
//! A node group is a controller (of an Auto Scaling group and its instances): deleting it is
//! how they are reaped. A cluster waits for its node groups and Fargate profiles (EKS refuses
//! to delete a cluster that has either); a profile has no deleter here, so a cluster with one
//! stays held until someone deletes the profile.

use aws_sdk_eks::types::{ClusterStatus, NodegroupStatus};

use super::*;

const NOT_FOUND: &[&str] = &["ResourceNotFoundException"];
const IN_USE: &[&str] = &["ResourceInUseException"];

/// The IAM actions of the calls below, sorted: DescribeCluster, ListNodegroups,
/// DescribeNodegroup, ListFargateProfiles, DescribeFargateProfile; DeleteCluster.
pub(super) const CLUSTER_ACTIONS: &[&str] = &[
    "eks:DeleteCluster",
    "eks:DescribeCluster",
    "eks:DescribeFargateProfile",
    "eks:DescribeNodegroup",
    "eks:ListFargateProfiles",
    "eks:ListNodegroups",
];

/// The IAM actions of the calls below, sorted: DescribeNodegroup; DeleteNodegroup.
pub(super) const NODEGROUP_ACTIONS: &[&str] = &["eks:DeleteNodegroup", "eks:DescribeNodegroup"];

fn client(sdk: &SdkConfig) -> aws_sdk_eks::Client {
    aws_sdk_eks::Client::new(sdk)
}

/// `cluster/NAME`.
pub(super) fn cluster_name(arn: &Arn) -> Result<&str, DeleteError> {
    match arn.resource().strip_prefix("cluster/") {
        Some(name) if !name.is_empty() && !name.contains('/') => Ok(name),
        _ => Err(DeleteError::Unsupported(format!("eks:{}", arn.resource()))),
    }
}

/// `nodegroup/CLUSTER/NAME/UUID`: the cluster and node group names.
pub(super) fn nodegroup_names(arn: &Arn) -> Result<(&str, &str), DeleteError> {
    let parts: Vec<&str> = arn.resource().split('/').collect();
    match parts[..] {
        ["nodegroup", cluster, name, id]
            if !cluster.is_empty() && !name.is_empty() && !id.is_empty() =>
        {
            Ok((cluster, name))
        }
        _ => Err(DeleteError::Unsupported(format!("eks:{}", arn.resource()))),
    }
}

/// The cluster's tags, `None` when it is gone or being deleted.
async fn cluster_tags(eks: &aws_sdk_eks::Client, name: &str) -> Result<Option<Tags>, DeleteError> {
    match eks
        .describe_cluster()
        .name(name)
        .send()
        .await
        .map_err(fail("DescribeCluster"))
    {
        Ok(out) => Ok(out
            .cluster()
            .filter(|c| c.status() != Some(&ClusterStatus::Deleting))
            .map(|c| map_tags(c.tags()))),
        Err(f) if f.is(NOT_FOUND) => Ok(None),
        Err(f) => Err(f.into_error(&[])),
    }
}

/// Every page of a list call on the cluster: the names it lists, none when the cluster went.
macro_rules! names {
    ($call:expr, $op:literal, $items:ident) => {{
        let mut names = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = match $call
                .set_next_token(token.take())
                .send()
                .await
                .map_err(fail($op))
            {
                Ok(out) => out,
                Err(f) if f.is(NOT_FOUND) => break,
                Err(f) => return Err(f.into_error(&[])),
            };
            names.extend(out.$items().iter().cloned());
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => break,
            }
        }
        names
    }};
}

/// The ARNs of the cluster's node groups and Fargate profiles.
async fn cluster_users(eks: &aws_sdk_eks::Client, name: &str) -> Result<Vec<Arn>, DeleteError> {
    let mut users = Vec::new();
    let groups = names!(
        eks.list_nodegroups().cluster_name(name),
        "ListNodegroups",
        nodegroups
    );
    for group in groups {
        match eks
            .describe_nodegroup()
            .cluster_name(name)
            .nodegroup_name(&group)
            .send()
            .await
            .map_err(fail("DescribeNodegroup"))
        {
            Ok(out) => users.extend(
                out.nodegroup()
                    .and_then(|g| g.nodegroup_arn())
                    .and_then(|a| Arn::parse(a).ok()),
            ),
            Err(f) if f.is(NOT_FOUND) => {}
            Err(f) => return Err(f.into_error(&[])),
        }
    }
    let profiles = names!(
        eks.list_fargate_profiles().cluster_name(name),
        "ListFargateProfiles",
        fargate_profile_names
    );
    for profile in profiles {
        match eks
            .describe_fargate_profile()
            .cluster_name(name)
            .fargate_profile_name(&profile)
            .send()
            .await
            .map_err(fail("DescribeFargateProfile"))
        {
            Ok(out) => users.extend(
                out.fargate_profile()
                    .and_then(|p| p.fargate_profile_arn())
                    .and_then(|a| Arn::parse(a).ok()),
            ),
            Err(f) if f.is(NOT_FOUND) => {}
            Err(f) => return Err(f.into_error(&[])),
        }
    }
    Ok(users)
}

pub(super) async fn inspect_cluster(sdk: &SdkConfig, arn: &Arn) -> Result<Inspection, DeleteError> {
    let name = cluster_name(arn)?;
    let eks = client(sdk);
    let Some(tags) = cluster_tags(&eks, name).await? else {
        return Ok(Inspection::Gone);
    };
    let depends_on = cluster_users(&eks, name).await?;
    Ok(Inspection::Live { tags, depends_on })
}

pub(super) async fn delete_cluster(sdk: &SdkConfig, arn: &Arn) -> Result<Deleted, DeleteError> {
    let name = cluster_name(arn)?;
    let eks = client(sdk);
    let r = eks
        .delete_cluster()
        .name(name)
        .send()
        .await
        .map_err(fail("DeleteCluster"));
    match r {
        // A cluster being deleted answers "in use"; that is a deletion under way.
        Err(f) if f.is(IN_USE) => match cluster_tags(&eks, name).await? {
            None => Ok(Deleted::AlreadyGone),
            Some(_) => Err(f.into_error(IN_USE)),
        },
        r => settle(r, NOT_FOUND, IN_USE),
    }
}

/// The node group's tags, `None` when it is gone, being deleted, or another node group of
/// the same name (its ARN carries another id).
async fn nodegroup_tags(eks: &aws_sdk_eks::Client, arn: &Arn) -> Result<Option<Tags>, DeleteError> {
    let (cluster, name) = nodegroup_names(arn)?;
    match eks
        .describe_nodegroup()
        .cluster_name(cluster)
        .nodegroup_name(name)
        .send()
        .await
        .map_err(fail("DescribeNodegroup"))
    {
        Ok(out) => Ok(out
            .nodegroup()
            .filter(|g| {
                g.nodegroup_arn() == Some(arn.as_str())
                    && g.status() != Some(&NodegroupStatus::Deleting)
            })
            .map(|g| map_tags(g.tags()))),
        Err(f) if f.is(NOT_FOUND) => Ok(None),
        Err(f) => Err(f.into_error(&[])),
    }
}

pub(super) async fn inspect_nodegroup(
    sdk: &SdkConfig,
    arn: &Arn,
) -> Result<Inspection, DeleteError> {
    Ok(match nodegroup_tags(&client(sdk), arn).await? {
        Some(tags) => live(tags),
        None => Inspection::Gone,
    })
}

pub(super) async fn delete_nodegroup(sdk: &SdkConfig, arn: &Arn) -> Result<Deleted, DeleteError> {
    let (cluster, name) = nodegroup_names(arn)?;
    let eks = client(sdk);
    // Looked up first: a node group being deleted, or another of the same name, is not
    // deleted again.
    if nodegroup_tags(&eks, arn).await?.is_none() {
        return Ok(Deleted::AlreadyGone);
    }
    let r = eks
        .delete_nodegroup()
        .cluster_name(cluster)
        .nodegroup_name(name)
        .send()
        .await
        .map_err(fail("DeleteNodegroup"));
    settle(r, NOT_FOUND, IN_USE)
}

/// The types of this file, whole: how each is inspected and deleted, where it goes in the
/// deletion order, and the IAM actions of its calls (see [`Kind`]).
pub(super) const KINDS: &[Kind] = &[
    Kind {
        ty: ResourceType::EksCluster,
        example: "arn:aws:eks:us-east-1:123456789012:cluster/k",
        rank: 3,
        inspect: |sdk, arn| Box::pin(inspect_cluster(sdk, arn)),
        delete: |sdk, arn, _| Box::pin(delete_cluster(sdk, arn)),
        actions: CLUSTER_ACTIONS,
        tag_conditioned: &["eks:DeleteCluster"],
    },
    Kind {
        ty: ResourceType::EksNodegroup,
        example: "arn:aws:eks:us-east-1:123456789012:nodegroup/k/ng/0ac5e6f0-1111-2222",
        rank: 1,
        inspect: |sdk, arn| Box::pin(inspect_nodegroup(sdk, arn)),
        delete: |sdk, arn, _| Box::pin(delete_nodegroup(sdk, arn)),
        actions: NODEGROUP_ACTIONS,
        tag_conditioned: &["eks:DeleteNodegroup"],
    },
];
