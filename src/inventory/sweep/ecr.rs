//! The sweep of ECR: the account's repositories in the region (the registry's own, never
//! another account's pull-through or replicated ones).

use super::*;

pub(super) async fn repositories(
    ctx: &Ctx<'_>,
    ecr: &aws_sdk_ecr::Client,
    limiter: &RateLimiter,
) -> Result<Vec<Found>, SweepError> {
    let mut out = Vec::new();
    list_pages(
        ctx,
        limiter,
        ("ecr", "DescribeRepositories"),
        |token| {
            ecr.describe_repositories()
                .registry_id(ctx.account)
                .set_next_token(token)
                .send()
        },
        |page| {
            for r in page.repositories() {
                if let Some(name) = r.repository_name() {
                    let arn = format!("repository/{name}");
                    out.extend(ctx.found("ecr", &arn, Tags::default(), time(r.created_at())));
                }
            }
            page.next_token().map(str::to_owned)
        },
    )
    .await?;
    Ok(out)
}
