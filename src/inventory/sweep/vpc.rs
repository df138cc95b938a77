//! The sweep of EC2's VPC family. Skipped on purpose, because AWS made them and they go with
//! (or are) the default VPC: the default VPC and its default subnets, each VPC's main route
//! table and default network ACL, and the DHCP option set the default VPC uses. NAT gateways,
//! VPC endpoints and peering connections that are gone or going are skipped too.

use super::*;

/// Every page of one describe call: each of the page's `$items` turned into a [`Found`] by
/// `$keep` (`None` skips it).
macro_rules! sweep_pages {
    ($ctx:expr, $limiter:expr, $op:literal, $request:expr, $items:ident, $keep:expr) => {{
        let mut out = Vec::new();
        list_pages($ctx, $limiter, ("ec2", $op), $request, |page| {
            for item in page.$items() {
                out.extend($keep(item));
            }
            page.next_token().map(str::to_owned)
        })
        .await?;
        Ok(out)
    }};
}

pub(super) async fn vpcs(
    ctx: &Ctx<'_>,
    ec2: &aws_sdk_ec2::Client,
    limiter: &RateLimiter,
) -> Result<Vec<Found>, SweepError> {
    sweep_pages!(
        ctx,
        limiter,
        "DescribeVpcs",
        |token| ec2.describe_vpcs().set_next_token(token).send(),
        vpcs,
        |v: &aws_sdk_ec2::types::Vpc| match (v.is_default(), v.vpc_id()) {
            (Some(true), _) | (_, None) => None,
            (_, Some(id)) => ctx.found("ec2", &format!("vpc/{id}"), ec2_tags(v.tags()), None),
        }
    )
}

pub(super) async fn subnets(
    ctx: &Ctx<'_>,
    ec2: &aws_sdk_ec2::Client,
    limiter: &RateLimiter,
) -> Result<Vec<Found>, SweepError> {
    sweep_pages!(
        ctx,
        limiter,
        "DescribeSubnets",
        |token| ec2.describe_subnets().set_next_token(token).send(),
        subnets,
        |s: &aws_sdk_ec2::types::Subnet| match (s.default_for_az(), s.subnet_id()) {
            (Some(true), _) | (_, None) => None,
            (_, Some(id)) => ctx.found("ec2", &format!("subnet/{id}"), ec2_tags(s.tags()), None),
        }
    )
}

pub(super) async fn route_tables(
    ctx: &Ctx<'_>,
    ec2: &aws_sdk_ec2::Client,
    limiter: &RateLimiter,
) -> Result<Vec<Found>, SweepError> {
    sweep_pages!(
        ctx,
        limiter,
        "DescribeRouteTables",
        |token| ec2.describe_route_tables().set_next_token(token).send(),
        route_tables,
        |t: &aws_sdk_ec2::types::RouteTable| {
            let main = t.associations().iter().any(|a| a.main() == Some(true));
            match (main, t.route_table_id()) {
                (true, _) | (_, None) => None,
                (false, Some(id)) => ctx.found(
                    "ec2",
                    &format!("route-table/{id}"),
                    ec2_tags(t.tags()),
                    None,
                ),
            }
        }
    )
}

pub(super) async fn internet_gateways(
    ctx: &Ctx<'_>,
    ec2: &aws_sdk_ec2::Client,
    limiter: &RateLimiter,
) -> Result<Vec<Found>, SweepError> {
    sweep_pages!(
        ctx,
        limiter,
        "DescribeInternetGateways",
        |token| ec2
            .describe_internet_gateways()
            .set_next_token(token)
            .send(),
        internet_gateways,
        |g: &aws_sdk_ec2::types::InternetGateway| {
            g.internet_gateway_id().and_then(|id| {
                ctx.found(
                    "ec2",
                    &format!("internet-gateway/{id}"),
                    ec2_tags(g.tags()),
                    None,
                )
            })
        }
    )
}

pub(super) async fn nat_gateways(
    ctx: &Ctx<'_>,
    ec2: &aws_sdk_ec2::Client,
    limiter: &RateLimiter,
) -> Result<Vec<Found>, SweepError> {
    sweep_pages!(
        ctx,
        limiter,
        "DescribeNatGateways",
        |token| {
            ec2.describe_nat_gateways()
                .filter(filter("state", &["pending", "available"]))
                .set_next_token(token)
                .send()
        },
        nat_gateways,
        |n: &aws_sdk_ec2::types::NatGateway| {
            n.nat_gateway_id().and_then(|id| {
                let created = time(n.create_time());
                ctx.found(
                    "ec2",
                    &format!("natgateway/{id}"),
                    ec2_tags(n.tags()),
                    created,
                )
            })
        }
    )
}

pub(super) async fn vpc_endpoints(
    ctx: &Ctx<'_>,
    ec2: &aws_sdk_ec2::Client,
    limiter: &RateLimiter,
) -> Result<Vec<Found>, SweepError> {
    let ending = ["deleting", "deleted", "rejected", "failed", "expired"];
    sweep_pages!(
        ctx,
        limiter,
        "DescribeVpcEndpoints",
        |token| ec2.describe_vpc_endpoints().set_next_token(token).send(),
        vpc_endpoints,
        |e: &aws_sdk_ec2::types::VpcEndpoint| {
            let gone = e.state().is_some_and(|s| ending.contains(&s.as_str()));
            match (gone, e.vpc_endpoint_id()) {
                (true, _) | (_, None) => None,
                (false, Some(id)) => {
                    let created = time(e.creation_timestamp());
                    ctx.found(
                        "ec2",
                        &format!("vpc-endpoint/{id}"),
                        ec2_tags(e.tags()),
                        created,
                    )
                }
            }
        }
    )
}

pub(super) async fn egress_only_gateways(
    ctx: &Ctx<'_>,
    ec2: &aws_sdk_ec2::Client,
    limiter: &RateLimiter,
) -> Result<Vec<Found>, SweepError> {
    sweep_pages!(
        ctx,
        limiter,
        "DescribeEgressOnlyInternetGateways",
        |token| {
            ec2.describe_egress_only_internet_gateways()
                .set_next_token(token)
                .send()
        },
        egress_only_internet_gateways,
        |g: &aws_sdk_ec2::types::EgressOnlyInternetGateway| {
            g.egress_only_internet_gateway_id().and_then(|id| {
                let arn = format!("egress-only-internet-gateway/{id}");
                ctx.found("ec2", &arn, ec2_tags(g.tags()), None)
            })
        }
    )
}

pub(super) async fn network_acls(
    ctx: &Ctx<'_>,
    ec2: &aws_sdk_ec2::Client,
    limiter: &RateLimiter,
) -> Result<Vec<Found>, SweepError> {
    sweep_pages!(
        ctx,
        limiter,
        "DescribeNetworkAcls",
        |token| ec2.describe_network_acls().set_next_token(token).send(),
        network_acls,
        |a: &aws_sdk_ec2::types::NetworkAcl| match (a.is_default(), a.network_acl_id()) {
            (Some(true), _) | (_, None) => None,
            (_, Some(id)) => {
                ctx.found(
                    "ec2",
                    &format!("network-acl/{id}"),
                    ec2_tags(a.tags()),
                    None,
                )
            }
        }
    )
}

/// The sets of DHCP options, but the one the default VPC uses (found first, with
/// DescribeVpcs): AWS made it, and it goes only with the default VPC.
pub(super) async fn dhcp_options(
    ctx: &Ctx<'_>,
    ec2: &aws_sdk_ec2::Client,
    limiter: &RateLimiter,
) -> Result<Vec<Found>, SweepError> {
    let mut defaults: Vec<String> = Vec::new();
    list_pages(
        ctx,
        limiter,
        ("ec2", "DescribeVpcs"),
        |token| {
            ec2.describe_vpcs()
                .filters(filter("is-default", &["true"]))
                .set_next_token(token)
                .send()
        },
        |page| {
            defaults.extend(
                page.vpcs()
                    .iter()
                    .filter_map(|v| v.dhcp_options_id())
                    .map(str::to_owned),
            );
            page.next_token().map(str::to_owned)
        },
    )
    .await?;
    sweep_pages!(
        ctx,
        limiter,
        "DescribeDhcpOptions",
        |token| ec2.describe_dhcp_options().set_next_token(token).send(),
        dhcp_options,
        |d: &aws_sdk_ec2::types::DhcpOptions| match d.dhcp_options_id() {
            Some(id) if !defaults.iter().any(|x| x == id) => {
                ctx.found(
                    "ec2",
                    &format!("dhcp-options/{id}"),
                    ec2_tags(d.tags()),
                    None,
                )
            }
            _ => None,
        }
    )
}

pub(super) async fn peering_connections(
    ctx: &Ctx<'_>,
    ec2: &aws_sdk_ec2::Client,
    limiter: &RateLimiter,
) -> Result<Vec<Found>, SweepError> {
    let ended = ["deleted", "deleting", "rejected", "failed", "expired"];
    sweep_pages!(
        ctx,
        limiter,
        "DescribeVpcPeeringConnections",
        |token| {
            ec2.describe_vpc_peering_connections()
                .set_next_token(token)
                .send()
        },
        vpc_peering_connections,
        |p: &aws_sdk_ec2::types::VpcPeeringConnection| {
            let code = p.status().and_then(|s| s.code());
            let gone = code.is_some_and(|c| ended.contains(&c.as_str()));
            match (gone, p.vpc_peering_connection_id()) {
                (true, _) | (_, None) => None,
                (false, Some(id)) => {
                    let arn = format!("vpc-peering-connection/{id}");
                    ctx.found("ec2", &arn, ec2_tags(p.tags()), None)
                }
            }
        }
    )
}
