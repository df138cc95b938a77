//! The sweep of CloudFormation: every stack not deleted or being deleted, with its tags
//! (DescribeStacks without a name lists them all). Nested stacks are skipped: they go with
//! their root stack, and CloudFormation refuses to delete one on its own.

use aws_sdk_cloudformation::types::StackStatus;

use super::*;

pub(super) async fn stacks(
    ctx: &Ctx<'_>,
    cfn: &aws_sdk_cloudformation::Client,
    limiter: &RateLimiter,
) -> Result<Vec<Found>, SweepError> {
    let mut out = Vec::new();
    list_pages(
        ctx,
        limiter,
        ("cloudformation", "DescribeStacks"),
        |token| cfn.describe_stacks().set_next_token(token).send(),
        |page| {
            for s in page.stacks() {
                let going = matches!(
                    s.stack_status(),
                    Some(StackStatus::DeleteComplete | StackStatus::DeleteInProgress)
                );
                if going || s.parent_id().is_some() {
                    continue;
                }
                if let Some(arn) = s.stack_id().and_then(|a| Arn::parse(a).ok()) {
                    let tags = Tags::from_pairs(
                        s.tags()
                            .iter()
                            .filter_map(|t| Some((t.key()?, t.value().unwrap_or_default()))),
                    );
                    out.push(Found {
                        arn,
                        tags,
                        created_at: time(s.creation_time()),
                        state: None,
                    });
                }
            }
            page.next_token().map(str::to_owned)
        },
    )
    .await?;
    Ok(out)
}
