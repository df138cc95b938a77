//! The sweep of Secrets Manager: ListSecrets gives each secret's ARN and tags; secrets
//! already scheduled for deletion are left out (the call's default), they go on their own.

use super::*;

pub(super) async fn secrets(
    ctx: &Ctx<'_>,
    sm: &aws_sdk_secretsmanager::Client,
    limiter: &RateLimiter,
) -> Result<Vec<Found>, SweepError> {
    let mut out = Vec::new();
    list_pages(
        ctx,
        limiter,
        ("secretsmanager", "ListSecrets"),
        |token| sm.list_secrets().set_next_token(token).send(),
        |page| {
            for s in page.secret_list() {
                let Some(arn) = s.arn().and_then(|a| Arn::parse(a).ok()) else {
                    continue;
                };
                if s.deleted_date().is_some() {
                    continue;
                }
                let tags = Tags::from_pairs(
                    s.tags()
                        .iter()
                        .filter_map(|t| Some((t.key()?, t.value().unwrap_or_default()))),
                );
                out.push(Found {
                    arn,
                    tags,
                    created_at: time(s.created_date()),
                    state: None,
                });
            }
            page.next_token().map(str::to_owned)
        },
    )
    .await?;
    Ok(out)
}
