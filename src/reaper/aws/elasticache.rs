//! ElastiCache: cache clusters, replication groups and cache subnet groups.
//!
//! Deleted with no final snapshot (ephemeral data, as RDS's). A cluster or group in `deleting`
//! is gone: AWS finishes it on its own. A replication group goes before its member clusters
//! (deleting the group deletes them; AWS refuses to delete a member alone), so a member
//! cluster depends on its group. A subnet group's users are not looked up:
//! `CacheSubnetGroupInUse` reports it in use.

use aws_sdk_elasticache::types::Tag;

use super::*;

const NO_CLUSTER: &[&str] = &["CacheClusterNotFound", "CacheClusterNotFoundFault"];
const NO_GROUP: &[&str] = &["ReplicationGroupNotFoundFault"];
const NO_SUBNET_GROUP: &[&str] = &["CacheSubnetGroupNotFoundFault"];
const CLUSTER_BUSY: &[&str] = &["InvalidCacheClusterState", "InvalidCacheClusterStateFault"];
const GROUP_BUSY: &[&str] = &[
    "InvalidReplicationGroupState",
    "InvalidReplicationGroupStateFault",
];
const SUBNET_GROUP_IN_USE: &[&str] = &["CacheSubnetGroupInUse"];

/// The IAM actions of the calls below, sorted, one table a type.
pub(super) const CLUSTER_ACTIONS: &[&str] = &[
    "elasticache:DeleteCacheCluster",
    "elasticache:DescribeCacheClusters",
    "elasticache:ListTagsForResource",
];
pub(super) const REPLICATION_GROUP_ACTIONS: &[&str] = &[
    "elasticache:DeleteReplicationGroup",
    "elasticache:DescribeReplicationGroups",
    "elasticache:ListTagsForResource",
];
pub(super) const SUBNET_GROUP_ACTIONS: &[&str] = &[
    "elasticache:DeleteCacheSubnetGroup",
    "elasticache:DescribeCacheSubnetGroups",
    "elasticache:ListTagsForResource",
];

fn client(sdk: &SdkConfig) -> aws_sdk_elasticache::Client {
    aws_sdk_elasticache::Client::new(sdk)
}

/// `KIND:NAME` → NAME.
fn name<'a>(arn: &'a Arn, kind: &str) -> Result<&'a str, DeleteError> {
    match arn
        .resource()
        .strip_prefix(kind)
        .and_then(|r| r.strip_prefix(':'))
    {
        Some(name) if !name.is_empty() => Ok(name),
        _ => Err(DeleteError::Unsupported(format!(
            "elasticache:{}",
            arn.resource()
        ))),
    }
}

/// The resource's tags; `None` when it is gone (`not_found`).
async fn tags(
    ec: &aws_sdk_elasticache::Client,
    arn: &Arn,
    not_found: &[&str],
) -> Result<Option<Tags>, DeleteError> {
    match ec
        .list_tags_for_resource()
        .resource_name(arn.as_str())
        .send()
        .await
        .map_err(fail("ListTagsForResource"))
    {
        Ok(out) => Ok(Some(Tags::from_pairs(out.tag_list().iter().filter_map(
            |t: &Tag| Some((t.key()?, t.value().unwrap_or_default())),
        )))),
        Err(f) if f.is(not_found) => Ok(None),
        Err(f) => Err(f.into_error(&[])),
    }
}

fn is_deleting(status: Option<&str>) -> bool {
    matches!(status, Some("deleting" | "deleted"))
}

/// The cluster's status and replication group, `None` when it does not exist.
async fn cluster(
    ec: &aws_sdk_elasticache::Client,
    id: &str,
) -> Result<Option<(Option<String>, Option<String>)>, DeleteError> {
    match ec
        .describe_cache_clusters()
        .cache_cluster_id(id)
        .send()
        .await
        .map_err(fail("DescribeCacheClusters"))
    {
        Ok(out) => Ok(out.cache_clusters().first().map(|c| {
            (
                c.cache_cluster_status().map(str::to_owned),
                c.replication_group_id().map(str::to_owned),
            )
        })),
        Err(f) if f.is(NO_CLUSTER) => Ok(None),
        Err(f) => Err(f.into_error(&[])),
    }
}

pub(super) async fn inspect_cluster(sdk: &SdkConfig, arn: &Arn) -> Result<Inspection, DeleteError> {
    let ec = client(sdk);
    let group = match cluster(&ec, name(arn, "cluster")?).await? {
        Some((status, group)) if !is_deleting(status.as_deref()) => group,
        _ => return Ok(Inspection::Gone),
    };
    let Some(tags) = tags(&ec, arn, NO_CLUSTER).await? else {
        return Ok(Inspection::Gone);
    };
    Ok(Inspection::Live {
        tags,
        depends_on: group
            .iter()
            .map(|g| sibling(arn, "elasticache", &format!("replicationgroup:{g}")))
            .collect(),
    })
}

pub(super) async fn delete_cluster(sdk: &SdkConfig, arn: &Arn) -> Result<Deleted, DeleteError> {
    let id = name(arn, "cluster")?;
    let ec = client(sdk);
    // A cluster already deleting is refused by AWS and accepted again by moto: look first.
    match cluster(&ec, id).await? {
        Some((status, _)) if !is_deleting(status.as_deref()) => {}
        _ => return Ok(Deleted::AlreadyGone),
    }
    let r = ec
        .delete_cache_cluster()
        .cache_cluster_id(id)
        .send()
        .await
        .map_err(fail("DeleteCacheCluster"));
    settle(r, NO_CLUSTER, CLUSTER_BUSY)
}

/// The group's status, `None` when it does not exist.
async fn replication_group(
    ec: &aws_sdk_elasticache::Client,
    id: &str,
) -> Result<Option<Option<String>>, DeleteError> {
    match ec
        .describe_replication_groups()
        .replication_group_id(id)
        .send()
        .await
        .map_err(fail("DescribeReplicationGroups"))
    {
        Ok(out) => Ok(out
            .replication_groups()
            .first()
            .map(|g| g.status().map(str::to_owned))),
        Err(f) if f.is(NO_GROUP) => Ok(None),
        Err(f) => Err(f.into_error(&[])),
    }
}

pub(super) async fn inspect_replication_group(
    sdk: &SdkConfig,
    arn: &Arn,
) -> Result<Inspection, DeleteError> {
    let ec = client(sdk);
    match replication_group(&ec, name(arn, "replicationgroup")?).await? {
        Some(status) if !is_deleting(status.as_deref()) => {}
        _ => return Ok(Inspection::Gone),
    }
    Ok(tags(&ec, arn, NO_GROUP)
        .await?
        .map_or(Inspection::Gone, live))
}

pub(super) async fn delete_replication_group(
    sdk: &SdkConfig,
    arn: &Arn,
) -> Result<Deleted, DeleteError> {
    let id = name(arn, "replicationgroup")?;
    let ec = client(sdk);
    match replication_group(&ec, id).await? {
        Some(status) if !is_deleting(status.as_deref()) => {}
        _ => return Ok(Deleted::AlreadyGone),
    }
    let r = ec
        .delete_replication_group()
        .replication_group_id(id)
        .retain_primary_cluster(false)
        .send()
        .await
        .map_err(fail("DeleteReplicationGroup"));
    settle(r, NO_GROUP, GROUP_BUSY)
}

pub(super) async fn inspect_subnet_group(
    sdk: &SdkConfig,
    arn: &Arn,
) -> Result<Inspection, DeleteError> {
    let ec = client(sdk);
    match ec
        .describe_cache_subnet_groups()
        .cache_subnet_group_name(name(arn, "subnetgroup")?)
        .send()
        .await
        .map_err(fail("DescribeCacheSubnetGroups"))
    {
        Ok(out) if out.cache_subnet_groups().is_empty() => return Ok(Inspection::Gone),
        Ok(_) => {}
        Err(f) if f.is(NO_SUBNET_GROUP) => return Ok(Inspection::Gone),
        Err(f) => return Err(f.into_error(&[])),
    }
    Ok(tags(&ec, arn, NO_SUBNET_GROUP)
        .await?
        .map_or(Inspection::Gone, live))
}

pub(super) async fn delete_subnet_group(
    sdk: &SdkConfig,
    arn: &Arn,
) -> Result<Deleted, DeleteError> {
    let r = client(sdk)
        .delete_cache_subnet_group()
        .cache_subnet_group_name(name(arn, "subnetgroup")?)
        .send()
        .await
        .map_err(fail("DeleteCacheSubnetGroup"));
    settle(r, NO_SUBNET_GROUP, SUBNET_GROUP_IN_USE)
}

/// The types of this file, whole: how each is inspected and deleted, where it goes in the
/// deletion order, and the IAM actions of its calls (see [`Kind`]).
pub(super) const KINDS: &[Kind] = &[
    Kind {
        ty: ResourceType::ElasticacheCluster,
        example: "arn:aws:elasticache:us-east-1:123456789012:cluster:c-1",
        rank: 4,
        inspect: |sdk, arn| Box::pin(inspect_cluster(sdk, arn)),
        delete: |sdk, arn, _| Box::pin(delete_cluster(sdk, arn)),
        actions: CLUSTER_ACTIONS,
        tag_conditioned: &["elasticache:DeleteCacheCluster"],
    },
    Kind {
        ty: ResourceType::ElasticacheReplicationGroup,
        example: "arn:aws:elasticache:us-east-1:123456789012:replicationgroup:rg-1",
        rank: 3,
        inspect: |sdk, arn| Box::pin(inspect_replication_group(sdk, arn)),
        delete: |sdk, arn, _| Box::pin(delete_replication_group(sdk, arn)),
        actions: REPLICATION_GROUP_ACTIONS,
        tag_conditioned: &["elasticache:DeleteReplicationGroup"],
    },
    Kind {
        ty: ResourceType::ElasticacheSubnetGroup,
        example: "arn:aws:elasticache:us-east-1:123456789012:subnetgroup:g-1",
        rank: 5,
        inspect: |sdk, arn| Box::pin(inspect_subnet_group(sdk, arn)),
        delete: |sdk, arn, _| Box::pin(delete_subnet_group(sdk, arn)),
        actions: SUBNET_GROUP_ACTIONS,
        tag_conditioned: &["elasticache:DeleteCacheSubnetGroup"],
    },
];
