//! The sweep of EKS: clusters (by name: their ARN is `cluster/NAME`) and the managed node
//! groups of each, described one by one (a node group's ARN carries an id that only
//! DescribeNodegroup gives; it gives the tags too).

use super::*;

/// The names of the region's clusters.
async fn cluster_names(
    ctx: &Ctx<'_>,
    eks: &aws_sdk_eks::Client,
    limiter: &RateLimiter,
) -> Result<Vec<String>, SweepError> {
    let mut names = Vec::new();
    list_pages(
        ctx,
        limiter,
        ("eks", "ListClusters"),
        |token| eks.list_clusters().set_next_token(token).send(),
        |page| {
            names.extend(page.clusters().iter().cloned());
            page.next_token().map(str::to_owned)
        },
    )
    .await?;
    Ok(names)
}

pub(super) async fn clusters(
    ctx: &Ctx<'_>,
    eks: &aws_sdk_eks::Client,
    limiter: &RateLimiter,
) -> Result<Vec<Found>, SweepError> {
    let names = cluster_names(ctx, eks, limiter).await?;
    Ok(names
        .iter()
        .filter_map(|n| ctx.found("eks", &format!("cluster/{n}"), Tags::default(), None))
        .collect())
}

pub(super) async fn nodegroups(
    ctx: &Ctx<'_>,
    eks: &aws_sdk_eks::Client,
    limiter: &RateLimiter,
) -> Result<Vec<Found>, SweepError> {
    let mut out = Vec::new();
    for cluster in cluster_names(ctx, eks, limiter).await? {
        let mut groups = Vec::new();
        list_pages(
            ctx,
            limiter,
            ("eks", "ListNodegroups"),
            |token| {
                eks.list_nodegroups()
                    .cluster_name(&cluster)
                    .set_next_token(token)
                    .send()
            },
            |page| {
                groups.extend(page.nodegroups().iter().cloned());
                page.next_token().map(str::to_owned)
            },
        )
        .await?;
        for group in groups {
            list_pages(
                ctx,
                limiter,
                ("eks", "DescribeNodegroup"),
                |_| {
                    eks.describe_nodegroup()
                        .cluster_name(&cluster)
                        .nodegroup_name(&group)
                        .send()
                },
                |page| {
                    if let Some(g) = page.nodegroup()
                        && let Some(arn) = g.nodegroup_arn().and_then(|a| Arn::parse(a).ok())
                    {
                        let tags = Tags::from_pairs(
                            g.tags()
                                .into_iter()
                                .flatten()
                                .map(|(k, v)| (k.as_str(), v.as_str())),
                        );
                        out.push(Found {
                            arn,
                            tags,
                            created_at: time(g.created_at()),
                            state: None,
                        });
                    }
                    None
                },
            )
            .await?;
        }
    }
    Ok(out)
}
