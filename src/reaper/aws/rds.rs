//! RDS: DB instances, DB clusters, manual DB and cluster snapshots, DB subnet groups.
//!
//! Instances and clusters are deleted with no final snapshot and without their automated
//! backups: what an ended lease held is ephemeral data, and a final snapshot would be one more
//! thing to leak. An instance or cluster in `deleting` is gone to inspect: AWS finishes that
//! deletion on its own, nothing ephemera does can change it. A cluster depends on its member
//! instances (AWS refuses to delete it before them); a member depends on nothing. A subnet
//! group's users are not looked up (no DescribeDBInstances filter finds them short of listing
//! every instance): AWS's `InvalidDBSubnetGroupStateFault` reports it in use. Automated
//! snapshots (`rds:…` names) go with their instance and are refused.

use aws_sdk_rds::types::Tag;

use super::*;

const NO_INSTANCE: &[&str] = &["DBInstanceNotFound", "DBInstanceNotFoundFault"];
const NO_CLUSTER: &[&str] = &["DBClusterNotFoundFault"];
const NO_SNAPSHOT: &[&str] = &["DBSnapshotNotFound", "DBSnapshotNotFoundFault"];
const NO_CLUSTER_SNAPSHOT: &[&str] = &["DBClusterSnapshotNotFoundFault"];
const NO_SUBNET_GROUP: &[&str] = &["DBSubnetGroupNotFoundFault"];
const INSTANCE_BUSY: &[&str] = &["InvalidDBInstanceState", "InvalidDBInstanceStateFault"];
const CLUSTER_BUSY: &[&str] = &["InvalidDBClusterStateFault"];
const SNAPSHOT_BUSY: &[&str] = &["InvalidDBSnapshotState", "InvalidDBSnapshotStateFault"];
const CLUSTER_SNAPSHOT_BUSY: &[&str] = &["InvalidDBClusterSnapshotStateFault"];
const SUBNET_GROUP_IN_USE: &[&str] = &["InvalidDBSubnetGroupStateFault"];

/// The IAM actions of the calls below, sorted, one table a type.
pub(super) const DB_ACTIONS: &[&str] = &["rds:DeleteDBInstance", "rds:DescribeDBInstances"];
pub(super) const CLUSTER_ACTIONS: &[&str] = &["rds:DeleteDBCluster", "rds:DescribeDBClusters"];
pub(super) const SNAPSHOT_ACTIONS: &[&str] = &["rds:DeleteDBSnapshot", "rds:DescribeDBSnapshots"];
pub(super) const CLUSTER_SNAPSHOT_ACTIONS: &[&str] = &[
    "rds:DeleteDBClusterSnapshot",
    "rds:DescribeDBClusterSnapshots",
];
pub(super) const SUBNET_GROUP_ACTIONS: &[&str] = &[
    "rds:DeleteDBSubnetGroup",
    "rds:DescribeDBSubnetGroups",
    "rds:ListTagsForResource",
];

/// `KIND:NAME` → NAME, the whole rest (RDS names hold no `:`, but automated snapshots'
/// `rds:…` do, and are refused).
pub(super) fn name<'a>(arn: &'a Arn, kind: &str) -> Result<&'a str, DeleteError> {
    match arn
        .resource()
        .strip_prefix(kind)
        .and_then(|r| r.strip_prefix(':'))
    {
        Some(name) if name.starts_with("rds:") => Err(DeleteError::Refused(format!(
            "{arn} is an automated snapshot (it goes with its instance or cluster)"
        ))),
        Some(name) if !name.is_empty() => Ok(name),
        _ => Err(DeleteError::Unsupported(format!("rds:{}", arn.resource()))),
    }
}

fn client(sdk: &SdkConfig) -> aws_sdk_rds::Client {
    aws_sdk_rds::Client::new(sdk)
}

fn rds_tags(tags: &[Tag]) -> Tags {
    Tags::from_pairs(
        tags.iter()
            .filter_map(|t| Some((t.key()?, t.value().unwrap_or_default()))),
    )
}

/// A status AWS finishes on its own.
fn is_deleting(status: Option<&str>) -> bool {
    status == Some("deleting")
}

/// The instance's status and tags, `None` when it does not exist.
async fn instance(
    rds: &aws_sdk_rds::Client,
    id: &str,
) -> Result<Option<(Option<String>, Tags)>, DeleteError> {
    match rds
        .describe_db_instances()
        .db_instance_identifier(id)
        .send()
        .await
        .map_err(fail("DescribeDBInstances"))
    {
        Ok(out) => Ok(out.db_instances().first().map(|i| {
            (
                i.db_instance_status().map(str::to_owned),
                rds_tags(i.tag_list()),
            )
        })),
        Err(f) if f.is(NO_INSTANCE) => Ok(None),
        Err(f) => Err(f.into_error(&[])),
    }
}

pub(super) async fn inspect_db(sdk: &SdkConfig, arn: &Arn) -> Result<Inspection, DeleteError> {
    match instance(&client(sdk), name(arn, "db")?).await? {
        Some((status, tags)) if !is_deleting(status.as_deref()) => Ok(live(tags)),
        _ => Ok(Inspection::Gone),
    }
}

pub(super) async fn delete_db(sdk: &SdkConfig, arn: &Arn) -> Result<Deleted, DeleteError> {
    let id = name(arn, "db")?;
    let rds = client(sdk);
    let r = rds
        .delete_db_instance()
        .db_instance_identifier(id)
        .skip_final_snapshot(true)
        .delete_automated_backups(true)
        .send()
        .await
        .map_err(fail("DeleteDBInstance"));
    match r {
        // Already deleting (an earlier call's): that deletion is under way.
        Err(f) if f.is(INSTANCE_BUSY) => match instance(&rds, id).await? {
            None => Ok(Deleted::AlreadyGone),
            Some((status, _)) if is_deleting(status.as_deref()) => Ok(Deleted::AlreadyGone),
            Some(_) => Err(f.into_error(INSTANCE_BUSY)),
        },
        r => settle(r, NO_INSTANCE, INSTANCE_BUSY),
    }
}

/// The cluster's status, tags and member instances, `None` when it does not exist.
async fn cluster(
    rds: &aws_sdk_rds::Client,
    id: &str,
) -> Result<Option<(Option<String>, Tags, Vec<String>)>, DeleteError> {
    match rds
        .describe_db_clusters()
        .db_cluster_identifier(id)
        .send()
        .await
        .map_err(fail("DescribeDBClusters"))
    {
        Ok(out) => Ok(out.db_clusters().first().map(|c| {
            let members = c
                .db_cluster_members()
                .iter()
                .filter_map(|m| m.db_instance_identifier())
                .map(str::to_owned)
                .collect();
            (
                c.status().map(str::to_owned),
                rds_tags(c.tag_list()),
                members,
            )
        })),
        Err(f) if f.is(NO_CLUSTER) => Ok(None),
        Err(f) => Err(f.into_error(&[])),
    }
}

pub(super) async fn inspect_cluster(sdk: &SdkConfig, arn: &Arn) -> Result<Inspection, DeleteError> {
    match cluster(&client(sdk), name(arn, "cluster")?).await? {
        Some((status, tags, members)) if !is_deleting(status.as_deref()) => Ok(Inspection::Live {
            tags,
            depends_on: members
                .iter()
                .map(|m| sibling(arn, "rds", &format!("db:{m}")))
                .collect(),
        }),
        _ => Ok(Inspection::Gone),
    }
}

pub(super) async fn delete_cluster(sdk: &SdkConfig, arn: &Arn) -> Result<Deleted, DeleteError> {
    let id = name(arn, "cluster")?;
    let rds = client(sdk);
    let r = rds
        .delete_db_cluster()
        .db_cluster_identifier(id)
        .skip_final_snapshot(true)
        .delete_automated_backups(true)
        .send()
        .await
        .map_err(fail("DeleteDBCluster"));
    match r {
        // Members left (in use), or already deleting.
        Err(f) if f.is(CLUSTER_BUSY) => match cluster(&rds, id).await? {
            None => Ok(Deleted::AlreadyGone),
            Some((status, _, _)) if is_deleting(status.as_deref()) => Ok(Deleted::AlreadyGone),
            Some(_) => Err(f.into_error(CLUSTER_BUSY)),
        },
        r => settle(r, NO_CLUSTER, CLUSTER_BUSY),
    }
}

pub(super) async fn inspect_snapshot(
    sdk: &SdkConfig,
    arn: &Arn,
) -> Result<Inspection, DeleteError> {
    match client(sdk)
        .describe_db_snapshots()
        .db_snapshot_identifier(name(arn, "snapshot")?)
        .send()
        .await
        .map_err(fail("DescribeDBSnapshots"))
    {
        Ok(out) => Ok(match out.db_snapshots().first() {
            Some(s) if !is_deleting(s.status()) => live(rds_tags(s.tag_list())),
            _ => Inspection::Gone,
        }),
        Err(f) if f.is(NO_SNAPSHOT) => Ok(Inspection::Gone),
        Err(f) => Err(f.into_error(&[])),
    }
}

pub(super) async fn delete_snapshot(sdk: &SdkConfig, arn: &Arn) -> Result<Deleted, DeleteError> {
    let r = client(sdk)
        .delete_db_snapshot()
        .db_snapshot_identifier(name(arn, "snapshot")?)
        .send()
        .await
        .map_err(fail("DeleteDBSnapshot"));
    settle(r, NO_SNAPSHOT, SNAPSHOT_BUSY)
}

pub(super) async fn inspect_cluster_snapshot(
    sdk: &SdkConfig,
    arn: &Arn,
) -> Result<Inspection, DeleteError> {
    match client(sdk)
        .describe_db_cluster_snapshots()
        .db_cluster_snapshot_identifier(name(arn, "cluster-snapshot")?)
        .send()
        .await
        .map_err(fail("DescribeDBClusterSnapshots"))
    {
        Ok(out) => Ok(match out.db_cluster_snapshots().first() {
            Some(s) if !is_deleting(s.status()) => live(rds_tags(s.tag_list())),
            _ => Inspection::Gone,
        }),
        Err(f) if f.is(NO_CLUSTER_SNAPSHOT) => Ok(Inspection::Gone),
        Err(f) => Err(f.into_error(&[])),
    }
}

pub(super) async fn delete_cluster_snapshot(
    sdk: &SdkConfig,
    arn: &Arn,
) -> Result<Deleted, DeleteError> {
    let r = client(sdk)
        .delete_db_cluster_snapshot()
        .db_cluster_snapshot_identifier(name(arn, "cluster-snapshot")?)
        .send()
        .await
        .map_err(fail("DeleteDBClusterSnapshot"));
    settle(r, NO_CLUSTER_SNAPSHOT, CLUSTER_SNAPSHOT_BUSY)
}

pub(super) async fn inspect_subnet_group(
    sdk: &SdkConfig,
    arn: &Arn,
) -> Result<Inspection, DeleteError> {
    let rds = client(sdk);
    match rds
        .describe_db_subnet_groups()
        .db_subnet_group_name(name(arn, "subgrp")?)
        .send()
        .await
        .map_err(fail("DescribeDBSubnetGroups"))
    {
        Ok(out) if out.db_subnet_groups().is_empty() => return Ok(Inspection::Gone),
        Ok(_) => {}
        Err(f) if f.is(NO_SUBNET_GROUP) => return Ok(Inspection::Gone),
        Err(f) => return Err(f.into_error(&[])),
    }
    // DescribeDBSubnetGroups gives no tags.
    match rds
        .list_tags_for_resource()
        .resource_name(arn.as_str())
        .send()
        .await
        .map_err(fail("ListTagsForResource"))
    {
        Ok(out) => Ok(live(rds_tags(out.tag_list()))),
        Err(f) if f.is(NO_SUBNET_GROUP) => Ok(Inspection::Gone),
        Err(f) => Err(f.into_error(&[])),
    }
}

pub(super) async fn delete_subnet_group(
    sdk: &SdkConfig,
    arn: &Arn,
) -> Result<Deleted, DeleteError> {
    let r = client(sdk)
        .delete_db_subnet_group()
        .db_subnet_group_name(name(arn, "subgrp")?)
        .send()
        .await
        .map_err(fail("DeleteDBSubnetGroup"));
    settle(r, NO_SUBNET_GROUP, SUBNET_GROUP_IN_USE)
}

/// The types of this file, whole: how each is inspected and deleted, where it goes in the
/// deletion order, and the IAM actions of its calls (see [`Kind`]).
pub(super) const KINDS: &[Kind] = &[
    Kind {
        ty: ResourceType::RdsDb,
        example: "arn:aws:rds:us-east-1:123456789012:db:db-1",
        rank: 3,
        inspect: |sdk, arn| Box::pin(inspect_db(sdk, arn)),
        delete: |sdk, arn, _| Box::pin(delete_db(sdk, arn)),
        actions: DB_ACTIONS,
        tag_conditioned: &["rds:DeleteDBInstance"],
    },
    Kind {
        ty: ResourceType::RdsCluster,
        example: "arn:aws:rds:us-east-1:123456789012:cluster:c-1",
        rank: 4,
        inspect: |sdk, arn| Box::pin(inspect_cluster(sdk, arn)),
        delete: |sdk, arn, _| Box::pin(delete_cluster(sdk, arn)),
        actions: CLUSTER_ACTIONS,
        tag_conditioned: &["rds:DeleteDBCluster"],
    },
    Kind {
        ty: ResourceType::RdsSnapshot,
        example: "arn:aws:rds:us-east-1:123456789012:snapshot:s-1",
        rank: REST,
        inspect: |sdk, arn| Box::pin(inspect_snapshot(sdk, arn)),
        delete: |sdk, arn, _| Box::pin(delete_snapshot(sdk, arn)),
        actions: SNAPSHOT_ACTIONS,
        tag_conditioned: &["rds:DeleteDBSnapshot"],
    },
    Kind {
        ty: ResourceType::RdsClusterSnapshot,
        example: "arn:aws:rds:us-east-1:123456789012:cluster-snapshot:cs-1",
        rank: REST,
        inspect: |sdk, arn| Box::pin(inspect_cluster_snapshot(sdk, arn)),
        delete: |sdk, arn, _| Box::pin(delete_cluster_snapshot(sdk, arn)),
        actions: CLUSTER_SNAPSHOT_ACTIONS,
        tag_conditioned: &["rds:DeleteDBClusterSnapshot"],
    },
    Kind {
        ty: ResourceType::RdsSubnetGroup,
        example: "arn:aws:rds:us-east-1:123456789012:subgrp:g-1",
        rank: 5,
        inspect: |sdk, arn| Box::pin(inspect_subnet_group(sdk, arn)),
        delete: |sdk, arn, _| Box::pin(delete_subnet_group(sdk, arn)),
        actions: SUBNET_GROUP_ACTIONS,
        tag_conditioned: &["rds:DeleteDBSubnetGroup"],
    },
];
