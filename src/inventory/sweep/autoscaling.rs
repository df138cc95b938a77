//! The sweep of Auto Scaling: groups (with their tags) and launch configurations (which have
//! none). Groups already being deleted are skipped.

use super::*;

/// A resource whose list call gives its ARN, as the tagging API gives it.
fn found_arn(arn: Option<&str>, tags: Tags, created_at: Option<DateTime<Utc>>) -> Option<Found> {
    Some(Found {
        arn: Arn::parse(arn?).ok()?,
        tags,
        created_at,
        state: None,
    })
}

pub(super) async fn groups(
    ctx: &Ctx<'_>,
    asg: &aws_sdk_autoscaling::Client,
    limiter: &RateLimiter,
) -> Result<Vec<Found>, SweepError> {
    let mut out = Vec::new();
    list_pages(
        ctx,
        limiter,
        ("autoscaling", "DescribeAutoScalingGroups"),
        |token| {
            asg.describe_auto_scaling_groups()
                .set_next_token(token)
                .send()
        },
        |page| {
            for g in page.auto_scaling_groups() {
                if g.status() == Some("Delete in progress") {
                    continue;
                }
                let tags = Tags::from_pairs(
                    g.tags()
                        .iter()
                        .filter_map(|t| Some((t.key()?, t.value().unwrap_or_default()))),
                );
                out.extend(found_arn(
                    g.auto_scaling_group_arn(),
                    tags,
                    time(g.created_time()),
                ));
            }
            page.next_token().map(str::to_owned)
        },
    )
    .await?;
    Ok(out)
}

pub(super) async fn launch_configurations(
    ctx: &Ctx<'_>,
    asg: &aws_sdk_autoscaling::Client,
    limiter: &RateLimiter,
) -> Result<Vec<Found>, SweepError> {
    let mut out = Vec::new();
    list_pages(
        ctx,
        limiter,
        ("autoscaling", "DescribeLaunchConfigurations"),
        |token| {
            asg.describe_launch_configurations()
                .set_next_token(token)
                .send()
        },
        |page| {
            for c in page.launch_configurations() {
                out.extend(found_arn(
                    c.launch_configuration_arn(),
                    Tags::default(),
                    time(c.created_time()),
                ));
            }
            page.next_token().map(str::to_owned)
        },
    )
    .await?;
    Ok(out)
}
