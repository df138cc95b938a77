//! The sweep of ECS: clusters, the services of each cluster, and active task definition
//! revisions. The list calls give ARNs only (no tags).

use super::*;

fn untagged(arns: &[String], out: &mut Vec<Found>) {
    out.extend(arns.iter().filter_map(|a| {
        Some(Found {
            arn: Arn::parse(a).ok()?,
            tags: Tags::default(),
            created_at: None,
            state: None,
        })
    }));
}

pub(super) async fn clusters(
    ctx: &Ctx<'_>,
    ecs: &aws_sdk_ecs::Client,
    limiter: &RateLimiter,
) -> Result<Vec<Found>, SweepError> {
    let mut out = Vec::new();
    list_pages(
        ctx,
        limiter,
        ("ecs", "ListClusters"),
        |token| ecs.list_clusters().set_next_token(token).send(),
        |page| {
            untagged(page.cluster_arns(), &mut out);
            page.next_token().map(str::to_owned)
        },
    )
    .await?;
    Ok(out)
}

pub(super) async fn services(
    ctx: &Ctx<'_>,
    ecs: &aws_sdk_ecs::Client,
    limiter: &RateLimiter,
) -> Result<Vec<Found>, SweepError> {
    let mut out = Vec::new();
    for cluster in clusters(ctx, ecs, limiter).await? {
        list_pages(
            ctx,
            limiter,
            ("ecs", "ListServices"),
            |token| {
                ecs.list_services()
                    .cluster(cluster.arn.as_str())
                    .set_next_token(token)
                    .send()
            },
            |page| {
                untagged(page.service_arns(), &mut out);
                page.next_token().map(str::to_owned)
            },
        )
        .await?;
    }
    Ok(out)
}

pub(super) async fn task_definitions(
    ctx: &Ctx<'_>,
    ecs: &aws_sdk_ecs::Client,
    limiter: &RateLimiter,
) -> Result<Vec<Found>, SweepError> {
    let mut out = Vec::new();
    list_pages(
        ctx,
        limiter,
        ("ecs", "ListTaskDefinitions"),
        |token| {
            ecs.list_task_definitions()
                .status(aws_sdk_ecs::types::TaskDefinitionStatus::Active)
                .set_next_token(token)
                .send()
        },
        |page| {
            untagged(page.task_definition_arns(), &mut out);
            page.next_token().map(str::to_owned)
        },
    )
    .await?;
    Ok(out)
}
