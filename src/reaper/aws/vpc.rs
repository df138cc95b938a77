//! EC2's VPC family: VPCs, subnets, route tables, internet and egress-only internet gateways,
//! NAT gateways, VPC endpoints, network ACLs, DHCP option sets and peering connections.
//!
//! Each inspect lists in `depends_on` the live resources AWS refuses to delete it before
//! (a VPC's subnets, gateways, endpoints, NAT gateways, non-main route tables, non-default
//! security groups and network ACLs, free interfaces; a subnet's instances, interfaces, NAT
//! gateways and interface endpoints; a network ACL's subnets; a DHCP option set's VPCs), named
//! as the tagging API names them, so the reaper holds it until they are gone.
//!
//! Two deliberate exceptions to "a deleter never detaches or disassociates", because AWS has
//! no delete that takes the attachment along and neither attachment is a resource of its own
//! (no ARN, no tags, nothing the reaper could order):
//! - deleting an internet gateway detaches it from its VPC first;
//! - deleting a route table removes its subnet and gateway associations first.
//!
//! Never deleted, even when tagged: the default VPC and its default subnets, a VPC's main
//! route table (it goes with its VPC) and default network ACL (likewise). Both inspect and
//! delete answer [`DeleteError::Refused`] for them, so a direct call is refused as surely as
//! a pass.

use aws_sdk_ec2::types::{NatGateway, RouteTable, VpcEndpoint};

use super::ec2::live_instances;
use super::*;
use crate::inventory::ec2::{filter, tags};

const VPC_NOT_FOUND: &[&str] = &["InvalidVpcID.NotFound"];
const SUBNET_NOT_FOUND: &[&str] = &["InvalidSubnetID.NotFound"];
const ROUTE_TABLE_NOT_FOUND: &[&str] = &["InvalidRouteTableID.NotFound"];
const ASSOCIATION_NOT_FOUND: &[&str] = &["InvalidAssociationID.NotFound"];
const IGW_NOT_FOUND: &[&str] = &["InvalidInternetGatewayID.NotFound"];
// `Gateway.NotAttached`: detached meanwhile, which is what detaching wanted.
const NOT_ATTACHED: &[&str] = &["Gateway.NotAttached"];
// AWS answers `NatGatewayNotFound` (and `InvalidNatGatewayID.NotFound` for a malformed id).
const NAT_NOT_FOUND: &[&str] = &["NatGatewayNotFound", "InvalidNatGatewayID.NotFound"];
const ENDPOINT_NOT_FOUND: &[&str] = &["InvalidVpcEndpointId.NotFound"];
// AWS answers `InvalidEgressOnlyInternetGatewayId.NotFound`, moto 5.2.5 `InvalidGatewayID.NotFound`.
const EIGW_NOT_FOUND: &[&str] = &[
    "InvalidEgressOnlyInternetGatewayId.NotFound",
    "InvalidGatewayID.NotFound",
];
// moto 5.2.5 answers DescribeNetworkAcls of a missing id with the route table's code.
const ACL_NOT_FOUND: &[&str] = &[
    "InvalidNetworkAclID.NotFound",
    "InvalidRouteTableID.NotFound",
];
// AWS spells both; moto 5.2.5 the first.
const DHCP_NOT_FOUND: &[&str] = &[
    "InvalidDhcpOptionID.NotFound",
    "InvalidDhcpOptionsID.NotFound",
];
// AWS answers `...ID.NotFound`, moto 5.2.5 `...Id.NotFound`.
const PEERING_NOT_FOUND: &[&str] = &[
    "InvalidVpcPeeringConnectionID.NotFound",
    "InvalidVpcPeeringConnectionId.NotFound",
];
const DEPENDENCY: &str = "DependencyViolation";

/// NAT gateway states that still hold their subnet, addresses and interface. `deleting` is
/// counted as gone, as a `shutting-down` instance is: its deletion has begun, and what it
/// still holds answers `InUse` and is retried on a later pass.
const LIVE_NAT_STATES: &[&str] = &["pending", "available"];

/// Endpoint states that are gone or on their way out.
const ENDING_ENDPOINT_STATES: &[&str] = &["deleting", "deleted", "rejected", "failed", "expired"];

/// Peering connection states that are gone (AWS keeps them listed for a while).
const ENDED_PEERING_STATES: &[&str] = &["deleted", "deleting", "rejected", "failed", "expired"];

fn refused(what: &str, id: &str, why: &str) -> DeleteError {
    DeleteError::Refused(format!("{what} {id} is {why}"))
}

const DEFAULT_VPC: &str = "the region's default VPC, which ephemera never deletes";
const DEFAULT_SUBNET: &str = "a default subnet of the default VPC, which ephemera never deletes";
const MAIN_TABLE: &str = "its VPC's main route table, which goes only with its VPC";
const DEFAULT_ACL: &str = "its VPC's default network ACL, which goes only with its VPC";

fn arn_of(of: &Arn, kind: &str, id: &str) -> Arn {
    sibling(of, "ec2", &format!("{kind}/{id}"))
}

/// `DescribeX` of one id: the item, `None` for one of `not_found` or an answer without it.
macro_rules! describe_one {
    ($call:expr, $op:literal, $not_found:expr, $items:ident, $id_of:ident, $id:expr) => {
        match $call.send().await.map_err(fail($op)) {
            Ok(out) => Ok(out
                .$items()
                .iter()
                .find(|x| x.$id_of() == Some($id))
                .cloned()),
            Err(f) if f.is($not_found) => Ok(None),
            Err(f) => Err(f.into_error(&[])),
        }
    };
}

/// Every item of a paginated describe call, or the call's error.
macro_rules! all_items {
    ($call:expr, $op:literal) => {
        $call
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(fail($op))
            .map_err(|f| f.into_error(&[]))
    };
}

// ---------------------------------------------------------------------------------------- VPC

/// The IAM actions of the calls below, sorted: DescribeVpcs, and the describes of what lives
/// in it; DeleteVpc.
pub(super) const VPC_ACTIONS: &[&str] = &[
    "ec2:DeleteVpc",
    "ec2:DescribeEgressOnlyInternetGateways",
    "ec2:DescribeInternetGateways",
    "ec2:DescribeNatGateways",
    "ec2:DescribeNetworkAcls",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeRouteTables",
    "ec2:DescribeSecurityGroups",
    "ec2:DescribeSubnets",
    "ec2:DescribeVpcEndpoints",
    "ec2:DescribeVpcs",
];

async fn vpc(
    ec2: &aws_sdk_ec2::Client,
    id: &str,
) -> Result<Option<aws_sdk_ec2::types::Vpc>, DeleteError> {
    describe_one!(
        ec2.describe_vpcs().vpc_ids(id),
        "DescribeVpcs",
        VPC_NOT_FOUND,
        vpcs,
        vpc_id,
        id
    )
}

pub(super) async fn inspect_vpc(
    ec2: &aws_sdk_ec2::Client,
    arn: &Arn,
    id: &str,
) -> Result<Inspection, DeleteError> {
    let Some(v) = vpc(ec2, id).await? else {
        return Ok(Inspection::Gone);
    };
    if v.is_default() == Some(true) {
        return Err(refused("VPC", id, DEFAULT_VPC));
    }
    Ok(Inspection::Live {
        tags: tags(v.tags()),
        depends_on: vpc_dependants(ec2, arn, id).await?,
    })
}

/// What must go before the VPC can. Not listed, because they go with the VPC: its main route
/// table, default security group and default network ACL; and its peering connections
/// (AWS deletes them with either VPC; a tagged one is reaped first anyway, by rank).
/// Instances are not listed either: each is in a subnet, which lists it.
async fn vpc_dependants(
    ec2: &aws_sdk_ec2::Client,
    arn: &Arn,
    vpc_id: &str,
) -> Result<Vec<Arn>, DeleteError> {
    let in_vpc = || filter("vpc-id", &[vpc_id]);
    let mut deps = Vec::new();
    for s in all_items!(ec2.describe_subnets().filters(in_vpc()), "DescribeSubnets")? {
        deps.extend(s.subnet_id().map(|i| arn_of(arn, "subnet", i)));
    }
    for g in all_items!(
        ec2.describe_internet_gateways()
            .filters(filter("attachment.vpc-id", &[vpc_id])),
        "DescribeInternetGateways"
    )? {
        deps.extend(
            g.internet_gateway_id()
                .map(|i| arn_of(arn, "internet-gateway", i)),
        );
    }
    // No filter on the attached VPC (AWS has none): every gateway, matched here.
    for g in all_items!(
        ec2.describe_egress_only_internet_gateways(),
        "DescribeEgressOnlyInternetGateways"
    )? {
        let attached = g.attachments().iter().any(|a| a.vpc_id() == Some(vpc_id));
        if let (true, Some(i)) = (attached, g.egress_only_internet_gateway_id()) {
            deps.push(arn_of(arn, "egress-only-internet-gateway", i));
        }
    }
    for t in all_items!(
        ec2.describe_route_tables().filters(in_vpc()),
        "DescribeRouteTables"
    )? {
        if let (false, Some(i)) = (is_main(&t), t.route_table_id()) {
            deps.push(arn_of(arn, "route-table", i));
        }
    }
    for g in all_items!(
        ec2.describe_security_groups().filters(in_vpc()),
        "DescribeSecurityGroups"
    )? {
        if let (false, Some(i)) = (g.group_name() == Some("default"), g.group_id()) {
            deps.push(arn_of(arn, "security-group", i));
        }
    }
    for a in all_items!(
        ec2.describe_network_acls().filters(in_vpc()),
        "DescribeNetworkAcls"
    )? {
        if let (false, Some(i)) = (a.is_default() == Some(true), a.network_acl_id()) {
            deps.push(arn_of(arn, "network-acl", i));
        }
    }
    let nats = nat_gateways(ec2, filter("vpc-id", &[vpc_id])).await?;
    let endpoints: Vec<VpcEndpoint> = vpc_endpoints(ec2)
        .await?
        .into_iter()
        .filter(|e| e.vpc_id() == Some(vpc_id))
        .collect();
    deps.extend(free_interfaces(ec2, arn, in_vpc(), &nats, &endpoints).await?);
    deps.extend(nat_arns(arn, &nats));
    deps.extend(
        endpoints
            .iter()
            .filter_map(|e| e.vpc_endpoint_id())
            .map(|i| arn_of(arn, "vpc-endpoint", i)),
    );
    Ok(deps)
}

pub(super) async fn delete_vpc(
    ec2: &aws_sdk_ec2::Client,
    id: &str,
) -> Result<Deleted, DeleteError> {
    // Looked at first, so the default VPC is refused however the call came.
    match vpc(ec2, id).await? {
        None => return Ok(Deleted::AlreadyGone),
        Some(v) if v.is_default() == Some(true) => {
            return Err(refused("VPC", id, DEFAULT_VPC));
        }
        Some(_) => {}
    }
    let r = ec2
        .delete_vpc()
        .vpc_id(id)
        .send()
        .await
        .map_err(fail("DeleteVpc"));
    settle(r, VPC_NOT_FOUND, &[DEPENDENCY])
}

/// The NAT gateways matching `f` in any state, all pages: the live ones are dependants, and
/// every one names the interface it owns (moto 5.2.5 keeps a deleted gateway's interface, with
/// its address, where AWS deletes both with the gateway).
async fn nat_gateways(
    ec2: &aws_sdk_ec2::Client,
    f: Filter,
) -> Result<Vec<NatGateway>, DeleteError> {
    all_items!(ec2.describe_nat_gateways().filter(f), "DescribeNatGateways")
}

fn is_live_nat(n: &NatGateway) -> bool {
    n.state()
        .is_some_and(|s| LIVE_NAT_STATES.contains(&s.as_str()))
}

/// The ARNs of the live ones of `nats`.
fn nat_arns<'a>(of: &'a Arn, nats: &'a [NatGateway]) -> impl Iterator<Item = Arn> + 'a {
    nats.iter()
        .filter(|n| is_live_nat(n))
        .filter_map(|n| n.nat_gateway_id())
        .map(|i| arn_of(of, "natgateway", i))
}

/// The account's VPC endpoints that are not on their way out (DescribeVpcEndpoints has no
/// `vpc-id` filter in moto 5.2.5, and an account holds few endpoints: matched by the caller).
async fn vpc_endpoints(ec2: &aws_sdk_ec2::Client) -> Result<Vec<VpcEndpoint>, DeleteError> {
    Ok(
        all_items!(ec2.describe_vpc_endpoints(), "DescribeVpcEndpoints")?
            .into_iter()
            .filter(|e| {
                !e.state()
                    .is_some_and(|s| ENDING_ENDPOINT_STATES.contains(&s.as_str()))
            })
            .collect(),
    )
}

/// The interfaces matching `f` that must be deleted themselves: not an instance's (the
/// instance stands for it, through its subnet), not a NAT gateway's or an endpoint's (those
/// stand for theirs, and AWS deletes it with them), known by the owner's list or, in AWS, by
/// the interface's type.
async fn free_interfaces(
    ec2: &aws_sdk_ec2::Client,
    of: &Arn,
    f: Filter,
    nats: &[NatGateway],
    endpoints: &[VpcEndpoint],
) -> Result<Vec<Arn>, DeleteError> {
    let owned: Vec<&str> = nats
        .iter()
        .flat_map(|n| n.nat_gateway_addresses())
        .filter_map(|a| a.network_interface_id())
        .chain(
            endpoints
                .iter()
                .flat_map(|e| e.network_interface_ids())
                .map(String::as_str),
        )
        .collect();
    let mut arns = Vec::new();
    for eni in all_items!(
        ec2.describe_network_interfaces().filters(f),
        "DescribeNetworkInterfaces"
    )? {
        let on_instance = eni
            .attachment()
            .and_then(|a| a.instance_id())
            .is_some_and(|i| !i.is_empty());
        let managed = eni.interface_type().is_some_and(|t| {
            matches!(
                t,
                aws_sdk_ec2::types::NetworkInterfaceType::NatGateway
                    | aws_sdk_ec2::types::NetworkInterfaceType::VpcEndpoint
            )
        });
        match eni.network_interface_id() {
            Some(i) if !on_instance && !managed && !owned.contains(&i) => {
                arns.push(arn_of(of, "network-interface", i));
            }
            _ => {}
        }
    }
    Ok(arns)
}

// ------------------------------------------------------------------------------------- subnet

/// The IAM actions of the calls below, sorted: DescribeSubnets, and the describes of what lives
/// in it; DeleteSubnet.
pub(super) const SUBNET_ACTIONS: &[&str] = &[
    "ec2:DeleteSubnet",
    "ec2:DescribeInstances",
    "ec2:DescribeNatGateways",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSubnets",
    "ec2:DescribeVpcEndpoints",
];

async fn subnet(
    ec2: &aws_sdk_ec2::Client,
    id: &str,
) -> Result<Option<aws_sdk_ec2::types::Subnet>, DeleteError> {
    describe_one!(
        ec2.describe_subnets().subnet_ids(id),
        "DescribeSubnets",
        SUBNET_NOT_FOUND,
        subnets,
        subnet_id,
        id
    )
}

fn is_default_subnet(s: &aws_sdk_ec2::types::Subnet) -> bool {
    s.default_for_az() == Some(true)
}

pub(super) async fn inspect_subnet(
    ec2: &aws_sdk_ec2::Client,
    arn: &Arn,
    id: &str,
) -> Result<Inspection, DeleteError> {
    let Some(s) = subnet(ec2, id).await? else {
        return Ok(Inspection::Gone);
    };
    if is_default_subnet(&s) {
        return Err(refused("subnet", id, DEFAULT_SUBNET));
    }
    let in_subnet = || filter("subnet-id", &[id]);
    let mut depends_on = live_instances(ec2, arn, vec![in_subnet()]).await?;
    let nats = nat_gateways(ec2, in_subnet()).await?;
    let endpoints: Vec<VpcEndpoint> = vpc_endpoints(ec2)
        .await?
        .into_iter()
        .filter(|e| e.subnet_ids().iter().any(|s| s == id))
        .collect();
    depends_on.extend(free_interfaces(ec2, arn, in_subnet(), &nats, &endpoints).await?);
    depends_on.extend(nat_arns(arn, &nats));
    depends_on.extend(
        endpoints
            .iter()
            .filter_map(|e| e.vpc_endpoint_id())
            .map(|i| arn_of(arn, "vpc-endpoint", i)),
    );
    Ok(Inspection::Live {
        tags: tags(s.tags()),
        depends_on,
    })
}

pub(super) async fn delete_subnet(
    ec2: &aws_sdk_ec2::Client,
    id: &str,
) -> Result<Deleted, DeleteError> {
    match subnet(ec2, id).await? {
        None => return Ok(Deleted::AlreadyGone),
        Some(s) if is_default_subnet(&s) => {
            return Err(refused("subnet", id, DEFAULT_SUBNET));
        }
        Some(_) => {}
    }
    let r = ec2
        .delete_subnet()
        .subnet_id(id)
        .send()
        .await
        .map_err(fail("DeleteSubnet"));
    settle(r, SUBNET_NOT_FOUND, &[DEPENDENCY])
}

// -------------------------------------------------------------------------------- route table

/// The IAM actions of the calls below, sorted: DescribeRouteTables;
/// DisassociateRouteTable (its associations, part of deleting it), DeleteRouteTable.
pub(super) const ROUTE_TABLE_ACTIONS: &[&str] = &[
    "ec2:DeleteRouteTable",
    "ec2:DescribeRouteTables",
    "ec2:DisassociateRouteTable",
];

async fn route_table(
    ec2: &aws_sdk_ec2::Client,
    id: &str,
) -> Result<Option<RouteTable>, DeleteError> {
    describe_one!(
        ec2.describe_route_tables().route_table_ids(id),
        "DescribeRouteTables",
        ROUTE_TABLE_NOT_FOUND,
        route_tables,
        route_table_id,
        id
    )
}

fn is_main(t: &RouteTable) -> bool {
    t.associations().iter().any(|a| a.main() == Some(true))
}

/// A main route table is refused rather than reported in use: AWS deletes it with its VPC and
/// nothing the reaper could delete first would ever free it.
pub(super) async fn inspect_route_table(
    ec2: &aws_sdk_ec2::Client,
    id: &str,
) -> Result<Inspection, DeleteError> {
    Ok(match route_table(ec2, id).await? {
        None => Inspection::Gone,
        Some(t) if is_main(&t) => return Err(refused("route table", id, MAIN_TABLE)),
        Some(t) => live(tags(t.tags())),
    })
}

/// Disassociates the table from its subnets and gateways, then deletes it: an association is
/// part of the table (it has no ARN or tags of its own), and a subnet left without one falls
/// back to its VPC's main table, as AWS intends.
pub(super) async fn delete_route_table(
    ec2: &aws_sdk_ec2::Client,
    id: &str,
) -> Result<Deleted, DeleteError> {
    let Some(t) = route_table(ec2, id).await? else {
        return Ok(Deleted::AlreadyGone);
    };
    if is_main(&t) {
        return Err(refused("route table", id, MAIN_TABLE));
    }
    for association in t
        .associations()
        .iter()
        .filter_map(|a| a.route_table_association_id())
    {
        let r = ec2
            .disassociate_route_table()
            .association_id(association)
            .send()
            .await
            .map_err(fail("DisassociateRouteTable"));
        match r {
            Ok(_) => {}
            Err(f) if f.is(ASSOCIATION_NOT_FOUND) => {}
            Err(f) => return Err(f.into_error(&[DEPENDENCY])),
        }
    }
    let r = ec2
        .delete_route_table()
        .route_table_id(id)
        .send()
        .await
        .map_err(fail("DeleteRouteTable"));
    settle(r, ROUTE_TABLE_NOT_FOUND, &[DEPENDENCY])
}

// --------------------------------------------------------------------------- internet gateway

/// The IAM actions of the calls below, sorted: DescribeInternetGateways, DescribeNatGateways
/// (the public NAT gateways of its VPC); DetachInternetGateway (part of deleting it),
/// DeleteInternetGateway.
pub(super) const INTERNET_GATEWAY_ACTIONS: &[&str] = &[
    "ec2:DeleteInternetGateway",
    "ec2:DescribeInternetGateways",
    "ec2:DescribeNatGateways",
    "ec2:DetachInternetGateway",
];

async fn internet_gateway(
    ec2: &aws_sdk_ec2::Client,
    id: &str,
) -> Result<Option<aws_sdk_ec2::types::InternetGateway>, DeleteError> {
    describe_one!(
        ec2.describe_internet_gateways().internet_gateway_ids(id),
        "DescribeInternetGateways",
        IGW_NOT_FOUND,
        internet_gateways,
        internet_gateway_id,
        id
    )
}

fn attached_vpcs(g: &aws_sdk_ec2::types::InternetGateway) -> Vec<&str> {
    g.attachments().iter().filter_map(|a| a.vpc_id()).collect()
}

/// A gateway attached to a VPC depends on the NAT gateways of that VPC: AWS refuses to detach
/// a gateway while the VPC has public addresses mapped, and a NAT gateway's address is one.
pub(super) async fn inspect_internet_gateway(
    ec2: &aws_sdk_ec2::Client,
    arn: &Arn,
    id: &str,
) -> Result<Inspection, DeleteError> {
    let Some(g) = internet_gateway(ec2, id).await? else {
        return Ok(Inspection::Gone);
    };
    let vpcs = attached_vpcs(&g);
    let depends_on = if vpcs.is_empty() {
        Vec::new()
    } else {
        let nats = nat_gateways(ec2, filter("vpc-id", &vpcs)).await?;
        nat_arns(arn, &nats).collect()
    };
    Ok(Inspection::Live {
        tags: tags(g.tags()),
        depends_on,
    })
}

/// Detaches the gateway from its VPC, then deletes it. Detaching is part of deleting the
/// gateway (AWS has no delete that detaches, and the attachment is no resource of its own);
/// it never touches the VPC.
pub(super) async fn delete_internet_gateway(
    ec2: &aws_sdk_ec2::Client,
    id: &str,
) -> Result<Deleted, DeleteError> {
    let Some(g) = internet_gateway(ec2, id).await? else {
        return Ok(Deleted::AlreadyGone);
    };
    for vpc_id in attached_vpcs(&g) {
        let r = ec2
            .detach_internet_gateway()
            .internet_gateway_id(id)
            .vpc_id(vpc_id)
            .send()
            .await
            .map_err(fail("DetachInternetGateway"));
        match r {
            Ok(_) => {}
            Err(f) if f.is(NOT_ATTACHED) => {}
            Err(f) if f.is(IGW_NOT_FOUND) => return Ok(Deleted::AlreadyGone),
            Err(f) => return Err(f.into_error(&[DEPENDENCY])),
        }
    }
    let r = ec2
        .delete_internet_gateway()
        .internet_gateway_id(id)
        .send()
        .await
        .map_err(fail("DeleteInternetGateway"));
    settle(r, IGW_NOT_FOUND, &[DEPENDENCY])
}

// -------------------------------------------------------------- egress-only internet gateway

/// The IAM actions of the calls below, sorted: DescribeEgressOnlyInternetGateways;
/// DeleteEgressOnlyInternetGateway.
pub(super) const EGRESS_ONLY_GATEWAY_ACTIONS: &[&str] = &[
    "ec2:DeleteEgressOnlyInternetGateway",
    "ec2:DescribeEgressOnlyInternetGateways",
];

async fn egress_only_gateway(
    ec2: &aws_sdk_ec2::Client,
    id: &str,
) -> Result<Option<aws_sdk_ec2::types::EgressOnlyInternetGateway>, DeleteError> {
    describe_one!(
        ec2.describe_egress_only_internet_gateways()
            .egress_only_internet_gateway_ids(id),
        "DescribeEgressOnlyInternetGateways",
        EIGW_NOT_FOUND,
        egress_only_internet_gateways,
        egress_only_internet_gateway_id,
        id
    )
}

pub(super) async fn inspect_egress_only_gateway(
    ec2: &aws_sdk_ec2::Client,
    id: &str,
) -> Result<Inspection, DeleteError> {
    Ok(match egress_only_gateway(ec2, id).await? {
        Some(g) => live(tags(g.tags())),
        None => Inspection::Gone,
    })
}

/// Deleting an egress-only gateway detaches it in the same call (AWS has no detach for it).
pub(super) async fn delete_egress_only_gateway(
    ec2: &aws_sdk_ec2::Client,
    id: &str,
) -> Result<Deleted, DeleteError> {
    let r = ec2
        .delete_egress_only_internet_gateway()
        .egress_only_internet_gateway_id(id)
        .send()
        .await
        .map_err(fail("DeleteEgressOnlyInternetGateway"));
    settle(r, EIGW_NOT_FOUND, &[DEPENDENCY])
}

// -------------------------------------------------------------------------------- NAT gateway

/// The IAM actions of the calls below, sorted: DescribeNatGateways (also before deleting: a
/// deleted one stays listed, and deleting it again is no error); DeleteNatGateway.
pub(super) const NAT_GATEWAY_ACTIONS: &[&str] =
    &["ec2:DeleteNatGateway", "ec2:DescribeNatGateways"];

/// The NAT gateway `id` if it is live (pending or available).
async fn live_nat_gateway(
    ec2: &aws_sdk_ec2::Client,
    id: &str,
) -> Result<Option<NatGateway>, DeleteError> {
    let found = describe_one!(
        ec2.describe_nat_gateways().nat_gateway_ids(id),
        "DescribeNatGateways",
        NAT_NOT_FOUND,
        nat_gateways,
        nat_gateway_id,
        id
    )?;
    Ok(found.filter(|n| {
        n.state()
            .is_some_and(|s| LIVE_NAT_STATES.contains(&s.as_str()))
    }))
}

pub(super) async fn inspect_nat_gateway(
    ec2: &aws_sdk_ec2::Client,
    id: &str,
) -> Result<Inspection, DeleteError> {
    Ok(match live_nat_gateway(ec2, id).await? {
        Some(n) => live(tags(n.tags())),
        None => Inspection::Gone,
    })
}

/// Starts the deletion (AWS takes a minute or so, `deleting`, then `deleted`); its Elastic IP
/// stays, a resource of its own.
pub(super) async fn delete_nat_gateway(
    ec2: &aws_sdk_ec2::Client,
    id: &str,
) -> Result<Deleted, DeleteError> {
    if live_nat_gateway(ec2, id).await?.is_none() {
        return Ok(Deleted::AlreadyGone);
    }
    let r = ec2
        .delete_nat_gateway()
        .nat_gateway_id(id)
        .send()
        .await
        .map_err(fail("DeleteNatGateway"));
    settle(r, NAT_NOT_FOUND, &[DEPENDENCY])
}

// ------------------------------------------------------------------------------- VPC endpoint

/// The IAM actions of the calls below, sorted: DescribeVpcEndpoints (also before deleting: a
/// deleted one stays listed); DeleteVpcEndpoints.
pub(super) const VPC_ENDPOINT_ACTIONS: &[&str] =
    &["ec2:DeleteVpcEndpoints", "ec2:DescribeVpcEndpoints"];

async fn live_vpc_endpoint(
    ec2: &aws_sdk_ec2::Client,
    id: &str,
) -> Result<Option<VpcEndpoint>, DeleteError> {
    let found = describe_one!(
        ec2.describe_vpc_endpoints().vpc_endpoint_ids(id),
        "DescribeVpcEndpoints",
        ENDPOINT_NOT_FOUND,
        vpc_endpoints,
        vpc_endpoint_id,
        id
    )?;
    Ok(found.filter(|e| {
        !e.state()
            .is_some_and(|s| ENDING_ENDPOINT_STATES.contains(&s.as_str()))
    }))
}

pub(super) async fn inspect_vpc_endpoint(
    ec2: &aws_sdk_ec2::Client,
    id: &str,
) -> Result<Inspection, DeleteError> {
    Ok(match live_vpc_endpoint(ec2, id).await? {
        Some(e) => live(tags(e.tags())),
        None => Inspection::Gone,
    })
}

/// Deletes the endpoint (an interface endpoint's interfaces go with it; a gateway
/// endpoint's routes too). DeleteVpcEndpoints answers per id in `Unsuccessful`, not with an
/// error.
pub(super) async fn delete_vpc_endpoint(
    ec2: &aws_sdk_ec2::Client,
    id: &str,
) -> Result<Deleted, DeleteError> {
    if live_vpc_endpoint(ec2, id).await?.is_none() {
        return Ok(Deleted::AlreadyGone);
    }
    let out = match ec2
        .delete_vpc_endpoints()
        .vpc_endpoint_ids(id)
        .send()
        .await
        .map_err(fail("DeleteVpcEndpoints"))
    {
        Ok(out) => out,
        Err(f) if f.is(ENDPOINT_NOT_FOUND) => return Ok(Deleted::AlreadyGone),
        Err(f) => return Err(f.into_error(&[DEPENDENCY])),
    };
    let Some(error) = out
        .unsuccessful()
        .iter()
        .find(|u| u.resource_id() == Some(id))
        .and_then(|u| u.error())
    else {
        return Ok(Deleted::Deleted);
    };
    let code = error.code().unwrap_or_default();
    let failure = Failure {
        code: Some(code.to_owned()),
        message: format!(
            "DeleteVpcEndpoints: {code}: {}",
            error.message().unwrap_or_default()
        ),
        source: None,
    };
    settle::<()>(Err(failure), ENDPOINT_NOT_FOUND, &[DEPENDENCY])
}

// -------------------------------------------------------------------------------- network ACL

/// The IAM actions of the calls below, sorted: DescribeNetworkAcls; DeleteNetworkAcl.
pub(super) const NETWORK_ACL_ACTIONS: &[&str] =
    &["ec2:DeleteNetworkAcl", "ec2:DescribeNetworkAcls"];

async fn network_acl(
    ec2: &aws_sdk_ec2::Client,
    id: &str,
) -> Result<Option<aws_sdk_ec2::types::NetworkAcl>, DeleteError> {
    describe_one!(
        ec2.describe_network_acls().network_acl_ids(id),
        "DescribeNetworkAcls",
        ACL_NOT_FOUND,
        network_acls,
        network_acl_id,
        id
    )
}

/// A network ACL depends on the subnets associated with it: AWS moves a subnet only by
/// replacing its association (a change to the subnet, not to the ACL), and a deleted subnet
/// takes its association along.
pub(super) async fn inspect_network_acl(
    ec2: &aws_sdk_ec2::Client,
    arn: &Arn,
    id: &str,
) -> Result<Inspection, DeleteError> {
    let Some(a) = network_acl(ec2, id).await? else {
        return Ok(Inspection::Gone);
    };
    if a.is_default() == Some(true) {
        return Err(refused("network ACL", id, DEFAULT_ACL));
    }
    let depends_on = a
        .associations()
        .iter()
        .filter_map(|s| s.subnet_id())
        .map(|s| arn_of(arn, "subnet", s))
        .collect();
    Ok(Inspection::Live {
        tags: tags(a.tags()),
        depends_on,
    })
}

pub(super) async fn delete_network_acl(
    ec2: &aws_sdk_ec2::Client,
    id: &str,
) -> Result<Deleted, DeleteError> {
    match network_acl(ec2, id).await? {
        None => return Ok(Deleted::AlreadyGone),
        Some(a) if a.is_default() == Some(true) => {
            return Err(refused("network ACL", id, DEFAULT_ACL));
        }
        Some(_) => {}
    }
    let r = ec2
        .delete_network_acl()
        .network_acl_id(id)
        .send()
        .await
        .map_err(fail("DeleteNetworkAcl"));
    settle(r, ACL_NOT_FOUND, &[DEPENDENCY])
}

// ------------------------------------------------------------------------------- DHCP options

/// The IAM actions of the calls below, sorted: DescribeDhcpOptions, DescribeVpcs (the VPCs
/// using it); DeleteDhcpOptions.
pub(super) const DHCP_OPTIONS_ACTIONS: &[&str] = &[
    "ec2:DeleteDhcpOptions",
    "ec2:DescribeDhcpOptions",
    "ec2:DescribeVpcs",
];

/// A DHCP option set depends on the VPCs using it: AWS refuses to delete one in use, and
/// moving a VPC to another set is a change to the VPC. The set the default VPC uses is
/// therefore never deleted (the default VPC never is).
pub(super) async fn inspect_dhcp_options(
    ec2: &aws_sdk_ec2::Client,
    arn: &Arn,
    id: &str,
) -> Result<Inspection, DeleteError> {
    let found = describe_one!(
        ec2.describe_dhcp_options().dhcp_options_ids(id),
        "DescribeDhcpOptions",
        DHCP_NOT_FOUND,
        dhcp_options,
        dhcp_options_id,
        id
    )?;
    let Some(set) = found else {
        return Ok(Inspection::Gone);
    };
    let depends_on = all_items!(
        ec2.describe_vpcs()
            .filters(filter("dhcp-options-id", &[id])),
        "DescribeVpcs"
    )?
    .iter()
    .filter_map(|v| v.vpc_id())
    .map(|v| arn_of(arn, "vpc", v))
    .collect();
    Ok(Inspection::Live {
        tags: tags(set.tags()),
        depends_on,
    })
}

pub(super) async fn delete_dhcp_options(
    ec2: &aws_sdk_ec2::Client,
    id: &str,
) -> Result<Deleted, DeleteError> {
    let r = ec2
        .delete_dhcp_options()
        .dhcp_options_id(id)
        .send()
        .await
        .map_err(fail("DeleteDhcpOptions"));
    settle(r, DHCP_NOT_FOUND, &[DEPENDENCY])
}

// --------------------------------------------------------------------- VPC peering connection

/// The IAM actions of the calls below, sorted: DescribeVpcPeeringConnections (also before
/// deleting: a deleted one stays listed, and deleting it again is no error in moto);
/// DeleteVpcPeeringConnection.
pub(super) const PEERING_ACTIONS: &[&str] = &[
    "ec2:DeleteVpcPeeringConnection",
    "ec2:DescribeVpcPeeringConnections",
];

async fn live_peering(
    ec2: &aws_sdk_ec2::Client,
    id: &str,
) -> Result<Option<aws_sdk_ec2::types::VpcPeeringConnection>, DeleteError> {
    let found = describe_one!(
        ec2.describe_vpc_peering_connections()
            .vpc_peering_connection_ids(id),
        "DescribeVpcPeeringConnections",
        PEERING_NOT_FOUND,
        vpc_peering_connections,
        vpc_peering_connection_id,
        id
    )?;
    Ok(found.filter(|p| {
        !p.status()
            .and_then(|s| s.code())
            .is_some_and(|c| ENDED_PEERING_STATES.contains(&c.as_str()))
    }))
}

pub(super) async fn inspect_peering(
    ec2: &aws_sdk_ec2::Client,
    id: &str,
) -> Result<Inspection, DeleteError> {
    Ok(match live_peering(ec2, id).await? {
        Some(p) => live(tags(p.tags())),
        None => Inspection::Gone,
    })
}

/// Deletes the peering connection (either side's owner may); routes through it turn
/// blackholes in their tables, which stay.
pub(super) async fn delete_peering(
    ec2: &aws_sdk_ec2::Client,
    id: &str,
) -> Result<Deleted, DeleteError> {
    if live_peering(ec2, id).await?.is_none() {
        return Ok(Deleted::AlreadyGone);
    }
    let r = ec2
        .delete_vpc_peering_connection()
        .vpc_peering_connection_id(id)
        .send()
        .await
        .map_err(fail("DeleteVpcPeeringConnection"));
    settle(r, PEERING_NOT_FOUND, &[DEPENDENCY])
}

/// The types of this file, whole: how each is inspected and deleted, where it goes in the
/// deletion order, and the IAM actions of its calls (see [`Kind`]).
pub(super) const KINDS: &[Kind] = &[
    Kind {
        ty: ResourceType::Ec2Vpc,
        example: "arn:aws:ec2:us-east-1:123456789012:vpc/vpc-1",
        rank: 9,
        inspect: |sdk, arn| {
            Box::pin(async move { inspect_vpc(&ec2::client(sdk), arn, arn.resource_id()).await })
        },
        delete: |sdk, arn, _| {
            Box::pin(async move { delete_vpc(&ec2::client(sdk), arn.resource_id()).await })
        },
        actions: VPC_ACTIONS,
        tag_conditioned: &["ec2:DeleteVpc"],
    },
    Kind {
        ty: ResourceType::Ec2Subnet,
        example: "arn:aws:ec2:us-east-1:123456789012:subnet/subnet-1",
        rank: 7,
        inspect: |sdk, arn| {
            Box::pin(async move { inspect_subnet(&ec2::client(sdk), arn, arn.resource_id()).await })
        },
        delete: |sdk, arn, _| {
            Box::pin(async move { delete_subnet(&ec2::client(sdk), arn.resource_id()).await })
        },
        actions: SUBNET_ACTIONS,
        tag_conditioned: &["ec2:DeleteSubnet"],
    },
    Kind {
        ty: ResourceType::Ec2RouteTable,
        example: "arn:aws:ec2:us-east-1:123456789012:route-table/rtb-1",
        rank: 7,
        inspect: |sdk, arn| {
            Box::pin(async move { inspect_route_table(&ec2::client(sdk), arn.resource_id()).await })
        },
        delete: |sdk, arn, _| {
            Box::pin(async move { delete_route_table(&ec2::client(sdk), arn.resource_id()).await })
        },
        actions: ROUTE_TABLE_ACTIONS,
        // Disassociating and detaching are part of deleting these two, and authorized on the
        // same tags (the route table's, the gateway's).
        tag_conditioned: &["ec2:DeleteRouteTable", "ec2:DisassociateRouteTable"],
    },
    Kind {
        ty: ResourceType::Ec2InternetGateway,
        example: "arn:aws:ec2:us-east-1:123456789012:internet-gateway/igw-1",
        rank: 8,
        inspect: |sdk, arn| {
            Box::pin(async move {
                inspect_internet_gateway(&ec2::client(sdk), arn, arn.resource_id()).await
            })
        },
        delete: |sdk, arn, _| {
            Box::pin(
                async move { delete_internet_gateway(&ec2::client(sdk), arn.resource_id()).await },
            )
        },
        actions: INTERNET_GATEWAY_ACTIONS,
        tag_conditioned: &["ec2:DeleteInternetGateway", "ec2:DetachInternetGateway"],
    },
    Kind {
        ty: ResourceType::Ec2NatGateway,
        example: "arn:aws:ec2:us-east-1:123456789012:natgateway/nat-1",
        rank: 4,
        inspect: |sdk, arn| {
            Box::pin(async move { inspect_nat_gateway(&ec2::client(sdk), arn.resource_id()).await })
        },
        delete: |sdk, arn, _| {
            Box::pin(async move { delete_nat_gateway(&ec2::client(sdk), arn.resource_id()).await })
        },
        actions: NAT_GATEWAY_ACTIONS,
        tag_conditioned: &["ec2:DeleteNatGateway"],
    },
    Kind {
        ty: ResourceType::Ec2VpcEndpoint,
        example: "arn:aws:ec2:us-east-1:123456789012:vpc-endpoint/vpce-1",
        rank: 4,
        inspect: |sdk, arn| {
            Box::pin(
                async move { inspect_vpc_endpoint(&ec2::client(sdk), arn.resource_id()).await },
            )
        },
        delete: |sdk, arn, _| {
            Box::pin(async move { delete_vpc_endpoint(&ec2::client(sdk), arn.resource_id()).await })
        },
        actions: VPC_ENDPOINT_ACTIONS,
        tag_conditioned: &["ec2:DeleteVpcEndpoints"],
    },
    Kind {
        ty: ResourceType::Ec2EgressOnlyInternetGateway,
        example: "arn:aws:ec2:us-east-1:123456789012:egress-only-internet-gateway/eigw-1",
        rank: 8,
        inspect: |sdk, arn| {
            Box::pin(async move {
                inspect_egress_only_gateway(&ec2::client(sdk), arn.resource_id()).await
            })
        },
        delete: |sdk, arn, _| {
            Box::pin(async move {
                delete_egress_only_gateway(&ec2::client(sdk), arn.resource_id()).await
            })
        },
        actions: EGRESS_ONLY_GATEWAY_ACTIONS,
        tag_conditioned: &["ec2:DeleteEgressOnlyInternetGateway"],
    },
    Kind {
        ty: ResourceType::Ec2NetworkAcl,
        example: "arn:aws:ec2:us-east-1:123456789012:network-acl/acl-1",
        rank: 8,
        inspect: |sdk, arn| {
            Box::pin(
                async move { inspect_network_acl(&ec2::client(sdk), arn, arn.resource_id()).await },
            )
        },
        delete: |sdk, arn, _| {
            Box::pin(async move { delete_network_acl(&ec2::client(sdk), arn.resource_id()).await })
        },
        actions: NETWORK_ACL_ACTIONS,
        tag_conditioned: &["ec2:DeleteNetworkAcl"],
    },
    Kind {
        ty: ResourceType::Ec2DhcpOptions,
        example: "arn:aws:ec2:us-east-1:123456789012:dhcp-options/dopt-1",
        rank: 10,
        inspect: |sdk, arn| {
            Box::pin(async move {
                inspect_dhcp_options(&ec2::client(sdk), arn, arn.resource_id()).await
            })
        },
        delete: |sdk, arn, _| {
            Box::pin(async move { delete_dhcp_options(&ec2::client(sdk), arn.resource_id()).await })
        },
        actions: DHCP_OPTIONS_ACTIONS,
        tag_conditioned: &["ec2:DeleteDhcpOptions"],
    },
    Kind {
        ty: ResourceType::Ec2VpcPeeringConnection,
        example: "arn:aws:ec2:us-east-1:123456789012:vpc-peering-connection/pcx-1",
        rank: 4,
        inspect: |sdk, arn| {
            Box::pin(async move { inspect_peering(&ec2::client(sdk), arn.resource_id()).await })
        },
        delete: |sdk, arn, _| {
            Box::pin(async move { delete_peering(&ec2::client(sdk), arn.resource_id()).await })
        },
        actions: PEERING_ACTIONS,
        tag_conditioned: &["ec2:DeleteVpcPeeringConnection"],
    },
];
