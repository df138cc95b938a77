//! The sweep of RDS: instances and clusters (those not already deleting), manual DB and
//! cluster snapshots (automated ones go with their instance), DB subnet groups but the
//! `default` one. The describe calls return tags, but for subnet groups.

use aws_sdk_rds::types::Tag;

use super::*;

fn rds_tags(tags: &[Tag]) -> Tags {
    Tags::from_pairs(
        tags.iter()
            .filter_map(|t| Some((t.key()?, t.value().unwrap_or_default()))),
    )
}

/// Every page of one describe call: each of the page's `$items` turned into a [`Found`] by
/// `$keep` (`None` skips it); RDS pages with `Marker`.
macro_rules! rds_pages {
    ($ctx:expr, $limiter:expr, $op:literal, $request:expr, $items:ident, $keep:expr) => {{
        let mut out = Vec::new();
        list_pages($ctx, $limiter, ("rds", $op), $request, |page| {
            for item in page.$items() {
                out.extend($keep(item));
            }
            page.marker().map(str::to_owned)
        })
        .await?;
        Ok(out)
    }};
}

pub(super) async fn instances(
    ctx: &Ctx<'_>,
    rds: &aws_sdk_rds::Client,
    limiter: &RateLimiter,
) -> Result<Vec<Found>, SweepError> {
    rds_pages!(
        ctx,
        limiter,
        "DescribeDBInstances",
        |marker| rds.describe_db_instances().set_marker(marker).send(),
        db_instances,
        |i: &aws_sdk_rds::types::DbInstance| match i.db_instance_identifier() {
            Some(id) if i.db_instance_status() != Some("deleting") => ctx.found(
                "rds",
                &format!("db:{id}"),
                rds_tags(i.tag_list()),
                time(i.instance_create_time()),
            ),
            _ => None,
        }
    )
}

pub(super) async fn clusters(
    ctx: &Ctx<'_>,
    rds: &aws_sdk_rds::Client,
    limiter: &RateLimiter,
) -> Result<Vec<Found>, SweepError> {
    rds_pages!(
        ctx,
        limiter,
        "DescribeDBClusters",
        |marker| rds.describe_db_clusters().set_marker(marker).send(),
        db_clusters,
        |c: &aws_sdk_rds::types::DbCluster| match c.db_cluster_identifier() {
            Some(id) if c.status() != Some("deleting") => ctx.found(
                "rds",
                &format!("cluster:{id}"),
                rds_tags(c.tag_list()),
                time(c.cluster_create_time()),
            ),
            _ => None,
        }
    )
}

pub(super) async fn snapshots(
    ctx: &Ctx<'_>,
    rds: &aws_sdk_rds::Client,
    limiter: &RateLimiter,
) -> Result<Vec<Found>, SweepError> {
    rds_pages!(
        ctx,
        limiter,
        "DescribeDBSnapshots",
        |marker| {
            rds.describe_db_snapshots()
                .snapshot_type("manual")
                .set_marker(marker)
                .send()
        },
        db_snapshots,
        |s: &aws_sdk_rds::types::DbSnapshot| s.db_snapshot_identifier().and_then(|id| {
            ctx.found(
                "rds",
                &format!("snapshot:{id}"),
                rds_tags(s.tag_list()),
                time(s.snapshot_create_time()),
            )
        })
    )
}

pub(super) async fn cluster_snapshots(
    ctx: &Ctx<'_>,
    rds: &aws_sdk_rds::Client,
    limiter: &RateLimiter,
) -> Result<Vec<Found>, SweepError> {
    rds_pages!(
        ctx,
        limiter,
        "DescribeDBClusterSnapshots",
        |marker| {
            rds.describe_db_cluster_snapshots()
                .snapshot_type("manual")
                .set_marker(marker)
                .send()
        },
        db_cluster_snapshots,
        |s: &aws_sdk_rds::types::DbClusterSnapshot| s.db_cluster_snapshot_identifier().and_then(
            |id| ctx.found(
                "rds",
                &format!("cluster-snapshot:{id}"),
                rds_tags(s.tag_list()),
                time(s.snapshot_create_time()),
            )
        )
    )
}

pub(super) async fn subnet_groups(
    ctx: &Ctx<'_>,
    rds: &aws_sdk_rds::Client,
    limiter: &RateLimiter,
) -> Result<Vec<Found>, SweepError> {
    rds_pages!(
        ctx,
        limiter,
        "DescribeDBSubnetGroups",
        |marker| rds.describe_db_subnet_groups().set_marker(marker).send(),
        db_subnet_groups,
        |g: &aws_sdk_rds::types::DbSubnetGroup| match g.db_subnet_group_name() {
            Some(name) if name != "default" => {
                ctx.found("rds", &format!("subgrp:{name}"), Tags::default(), None)
            }
            _ => None,
        }
    )
}
