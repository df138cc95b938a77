//! The sweep of ElastiCache: cache clusters (members of a replication group are left to
//! their group), replication groups, cache subnet groups but the `default` one; none not
//! already deleting. The describe calls give no tags.

use super::*;

fn going(status: Option<&str>) -> bool {
    matches!(status, Some("deleting" | "deleted"))
}

pub(super) async fn clusters(
    ctx: &Ctx<'_>,
    ec: &aws_sdk_elasticache::Client,
    limiter: &RateLimiter,
) -> Result<Vec<Found>, SweepError> {
    let mut out = Vec::new();
    list_pages(
        ctx,
        limiter,
        ("elasticache", "DescribeCacheClusters"),
        |marker| ec.describe_cache_clusters().set_marker(marker).send(),
        |page| {
            for c in page.cache_clusters() {
                if let Some(id) = c.cache_cluster_id()
                    && c.replication_group_id().is_none()
                    && !going(c.cache_cluster_status())
                {
                    let created = time(c.cache_cluster_create_time());
                    let arn = format!("cluster:{id}");
                    out.extend(ctx.found("elasticache", &arn, Tags::default(), created));
                }
            }
            page.marker().map(str::to_owned)
        },
    )
    .await?;
    Ok(out)
}

pub(super) async fn replication_groups(
    ctx: &Ctx<'_>,
    ec: &aws_sdk_elasticache::Client,
    limiter: &RateLimiter,
) -> Result<Vec<Found>, SweepError> {
    let mut out = Vec::new();
    list_pages(
        ctx,
        limiter,
        ("elasticache", "DescribeReplicationGroups"),
        |marker| ec.describe_replication_groups().set_marker(marker).send(),
        |page| {
            for g in page.replication_groups() {
                if let Some(id) = g.replication_group_id()
                    && !going(g.status())
                {
                    let created = time(g.replication_group_create_time());
                    let arn = format!("replicationgroup:{id}");
                    out.extend(ctx.found("elasticache", &arn, Tags::default(), created));
                }
            }
            page.marker().map(str::to_owned)
        },
    )
    .await?;
    Ok(out)
}

pub(super) async fn subnet_groups(
    ctx: &Ctx<'_>,
    ec: &aws_sdk_elasticache::Client,
    limiter: &RateLimiter,
) -> Result<Vec<Found>, SweepError> {
    let mut out = Vec::new();
    list_pages(
        ctx,
        limiter,
        ("elasticache", "DescribeCacheSubnetGroups"),
        |marker| ec.describe_cache_subnet_groups().set_marker(marker).send(),
        |page| {
            for g in page.cache_subnet_groups() {
                if let Some(name) = g.cache_subnet_group_name()
                    && name != "default"
                {
                    let arn = format!("subnetgroup:{name}");
                    out.extend(ctx.found("elasticache", &arn, Tags::default(), None));
                }
            }
            page.marker().map(str::to_owned)
        },
    )
    .await?;
    Ok(out)
}
