//! The sweep of Elastic Load Balancing v2: load balancers (application, network, gateway)
//! and target groups. Their list calls give no tags (DescribeTags is one more call per 20),
//! so a resource the tagging walk did not return is taken to have none.

use super::*;

pub(super) async fn load_balancers(
    ctx: &Ctx<'_>,
    elb: &aws_sdk_elasticloadbalancingv2::Client,
    limiter: &RateLimiter,
) -> Result<Vec<Found>, SweepError> {
    let mut out = Vec::new();
    list_pages(
        ctx,
        limiter,
        ("elasticloadbalancing", "DescribeLoadBalancers"),
        |marker| elb.describe_load_balancers().set_marker(marker).send(),
        |page| {
            for lb in page.load_balancers() {
                if let Some(arn) = lb.load_balancer_arn().and_then(|a| Arn::parse(a).ok()) {
                    out.push(Found {
                        arn,
                        tags: Tags::default(),
                        created_at: time(lb.created_time()),
                        state: None,
                    });
                }
            }
            page.next_marker().map(str::to_owned)
        },
    )
    .await?;
    Ok(out)
}

pub(super) async fn target_groups(
    ctx: &Ctx<'_>,
    elb: &aws_sdk_elasticloadbalancingv2::Client,
    limiter: &RateLimiter,
) -> Result<Vec<Found>, SweepError> {
    let mut out = Vec::new();
    list_pages(
        ctx,
        limiter,
        ("elasticloadbalancing", "DescribeTargetGroups"),
        |marker| elb.describe_target_groups().set_marker(marker).send(),
        |page| {
            for tg in page.target_groups() {
                if let Some(arn) = tg.target_group_arn().and_then(|a| Arn::parse(a).ok()) {
                    out.push(Found {
                        arn,
                        tags: Tags::default(),
                        created_at: None,
                        state: None,
                    });
                }
            }
            page.next_marker().map(str::to_owned)
        },
    )
    .await?;
    Ok(out)
}
