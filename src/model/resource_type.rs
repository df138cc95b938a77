//! The resource types ephemera can delete.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A type ephemera has a deleter for, named as its ARN names it (`service:type`). Resources
/// of other types are still inventoried and reported (their type is the ARN's text); only
/// these can be allowed in `enforcement.deletable_types`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
pub enum ResourceType {
    #[strum(serialize = "ec2:instance")]
    Ec2Instance,
    #[strum(serialize = "ec2:volume")]
    Ec2Volume,
    #[strum(serialize = "ec2:snapshot")]
    Ec2Snapshot,
    #[strum(serialize = "ec2:image")]
    Ec2Image,
    #[strum(serialize = "ec2:security-group")]
    Ec2SecurityGroup,
    #[strum(serialize = "ec2:network-interface")]
    Ec2NetworkInterface,
    #[strum(serialize = "ec2:elastic-ip")]
    Ec2ElasticIp,
    #[strum(serialize = "ec2:key-pair")]
    Ec2KeyPair,
    #[strum(serialize = "ec2:launch-template")]
    Ec2LaunchTemplate,
    #[strum(serialize = "ec2:vpc")]
    Ec2Vpc,
    #[strum(serialize = "ec2:subnet")]
    Ec2Subnet,
    #[strum(serialize = "ec2:route-table")]
    Ec2RouteTable,
    #[strum(serialize = "ec2:internet-gateway")]
    Ec2InternetGateway,
    /// Spelt as AWS spells it in ARNs (`natgateway/nat-…`), so an ARN names its type.
    #[strum(serialize = "ec2:natgateway")]
    Ec2NatGateway,
    #[strum(serialize = "ec2:vpc-endpoint")]
    Ec2VpcEndpoint,
    #[strum(serialize = "ec2:egress-only-internet-gateway")]
    Ec2EgressOnlyInternetGateway,
    #[strum(serialize = "ec2:network-acl")]
    Ec2NetworkAcl,
    #[strum(serialize = "ec2:dhcp-options")]
    Ec2DhcpOptions,
    #[strum(serialize = "ec2:vpc-peering-connection")]
    Ec2VpcPeeringConnection,
    #[strum(serialize = "s3:bucket")]
    S3Bucket,
    #[strum(serialize = "sqs:queue")]
    SqsQueue,
    #[strum(serialize = "sns:topic")]
    SnsTopic,
    #[strum(serialize = "dynamodb:table")]
    DynamodbTable,
    #[strum(serialize = "lambda:function")]
    LambdaFunction,
    #[strum(serialize = "logs:log-group")]
    LogsLogGroup,
    /// Spelt as AWS spells it in ARNs (`autoScalingGroup:UUID:autoScalingGroupName/NAME`).
    #[strum(serialize = "autoscaling:autoScalingGroup")]
    AutoscalingGroup,
    #[strum(serialize = "autoscaling:launchConfiguration")]
    AutoscalingLaunchConfiguration,
    /// An application, network or gateway load balancer (`loadbalancer/app/NAME/ID`); a
    /// classic one (`loadbalancer/NAME`) shares the type name but has no deleter.
    #[strum(serialize = "elasticloadbalancing:loadbalancer")]
    ElbLoadBalancer,
    #[strum(serialize = "elasticloadbalancing:targetgroup")]
    ElbTargetGroup,
    #[strum(serialize = "ecs:cluster")]
    EcsCluster,
    #[strum(serialize = "ecs:service")]
    EcsService,
    #[strum(serialize = "ecs:task-definition")]
    EcsTaskDefinition,
    #[strum(serialize = "eks:cluster")]
    EksCluster,
    #[strum(serialize = "eks:nodegroup")]
    EksNodegroup,
    #[strum(serialize = "cloudformation:stack")]
    CloudformationStack,
}

impl ResourceType {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The type of a resource whose ARN names `text`; `None` for a type with no deleter.
    pub fn parse(text: &str) -> Option<Self> {
        text.parse().ok()
    }

    /// Deletion order: lower goes first. Controllers go before what they control: a
    /// CloudFormation stack first (deleting it deletes its members), then EKS node groups and
    /// ECS services (they own an Auto Scaling group, tasks), then Auto Scaling groups (they
    /// own instances and would replace one deleted before them). Then what uses a thing goes
    /// before it (instances before their volumes and security groups, AMIs before their
    /// snapshots, interfaces before security groups, load balancers before their target
    /// groups, node groups and services before their clusters), and a VPC's contents before
    /// the VPC: NAT gateways and endpoints before the Elastic IPs and subnets they hold,
    /// subnets before the network ACLs they are associated with, gateways after what routes
    /// through them, the VPC after all of them and the DHCP option set it uses after it.
    /// Exhaustive, so a new type must say where it goes.
    pub fn rank(self) -> u8 {
        use ResourceType::*;
        match self {
            CloudformationStack => 0,
            EksNodegroup | EcsService => 1,
            AutoscalingGroup => 2,
            Ec2Instance | LambdaFunction | ElbLoadBalancer | EksCluster => 3,
            Ec2Image
            | Ec2NetworkInterface
            | Ec2NatGateway
            | Ec2VpcEndpoint
            | Ec2VpcPeeringConnection => 4,
            // After the NAT gateway or interface it is associated with.
            Ec2ElasticIp => 5,
            Ec2Volume | Ec2KeyPair | Ec2LaunchTemplate | S3Bucket | SqsQueue | SnsTopic
            | DynamodbTable | LogsLogGroup => Self::REST,
            // After the groups, load balancers and services that use them.
            AutoscalingLaunchConfiguration | ElbTargetGroup | EcsCluster | EcsTaskDefinition => {
                Self::REST
            }
            Ec2Snapshot | Ec2SecurityGroup | Ec2Subnet | Ec2RouteTable => 7,
            // A network ACL waits for its subnets (their deletion frees it); a gateway
            // for the route tables and NAT gateways that use it.
            Ec2NetworkAcl | Ec2InternetGateway | Ec2EgressOnlyInternetGateway => 8,
            Ec2Vpc => 9,
            Ec2DhcpOptions => 10,
        }
    }

    /// The rank of the types that depend on nothing else ephemera deletes.
    pub const REST: u8 = 6;
}

impl Serialize for ResourceType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ResourceType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        ResourceType::parse(&text).ok_or_else(|| {
            use strum::VariantArray;
            let known: Vec<&str> = ResourceType::VARIANTS.iter().map(|t| t.as_str()).collect();
            serde::de::Error::custom(format!(
                "no deleter for `{text}`; known: {}",
                known.join(", ")
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strum::VariantArray;

    #[test]
    fn names_round_trip_and_unknown_types_are_none() {
        for t in ResourceType::VARIANTS {
            assert_eq!(ResourceType::parse(t.as_str()), Some(*t));
            assert_eq!(t.to_string(), t.as_str());
            let json = serde_json::to_string(t).expect("serialises");
            assert_eq!(serde_json::from_str::<ResourceType>(&json).ok(), Some(*t));
        }
        assert_eq!(ResourceType::parse("ec2:transit-gateway"), None);
        assert_eq!(
            ResourceType::parse("ec2:nat-gateway"),
            None,
            "AWS spells it natgateway"
        );
        assert_eq!(ResourceType::parse("EC2:instance"), None);
        let err = serde_json::from_str::<ResourceType>("\"sqs:queues\"").expect_err("unknown");
        assert!(
            err.to_string().contains("no deleter for `sqs:queues`"),
            "{err}"
        );
    }

    /// Each type's place in the deletion order: controllers (stack, node group and service,
    /// Auto Scaling group) first; the VPC family's as the issue asks: what runs in a VPC, then
    /// addresses, then subnets and tables, then gateways, then the VPC.
    #[test]
    fn ranks_put_users_before_what_they_use() {
        use ResourceType::*;
        let order: [&[ResourceType]; 11] = [
            &[CloudformationStack],
            &[EksNodegroup, EcsService],
            &[AutoscalingGroup],
            &[Ec2Instance, LambdaFunction, ElbLoadBalancer, EksCluster],
            &[
                Ec2Image,
                Ec2NetworkInterface,
                Ec2NatGateway,
                Ec2VpcEndpoint,
                Ec2VpcPeeringConnection,
            ],
            &[Ec2ElasticIp],
            &[
                Ec2Volume,
                Ec2KeyPair,
                Ec2LaunchTemplate,
                S3Bucket,
                SqsQueue,
                SnsTopic,
                DynamodbTable,
                LogsLogGroup,
                AutoscalingLaunchConfiguration,
                ElbTargetGroup,
                EcsCluster,
                EcsTaskDefinition,
            ],
            &[Ec2Snapshot, Ec2SecurityGroup, Ec2Subnet, Ec2RouteTable],
            &[
                Ec2NetworkAcl,
                Ec2InternetGateway,
                Ec2EgressOnlyInternetGateway,
            ],
            &[Ec2Vpc],
            &[Ec2DhcpOptions],
        ];
        let listed: usize = order.iter().map(|r| r.len()).sum();
        assert_eq!(listed, ResourceType::VARIANTS.len(), "every type once");
        for (rank, types) in order.iter().enumerate() {
            for t in *types {
                assert_eq!(usize::from(t.rank()), rank, "{t}");
            }
        }
        // The pairs the reaper relies on, spelt out.
        for (first, then) in [
            (Ec2NatGateway, Ec2ElasticIp),
            (Ec2NatGateway, Ec2Subnet),
            (Ec2VpcEndpoint, Ec2RouteTable),
            (Ec2NetworkInterface, Ec2Subnet),
            (Ec2Instance, Ec2Subnet),
            (Ec2Subnet, Ec2NetworkAcl),
            (Ec2RouteTable, Ec2InternetGateway),
            (Ec2ElasticIp, Ec2InternetGateway),
            (Ec2InternetGateway, Ec2Vpc),
            (Ec2EgressOnlyInternetGateway, Ec2Vpc),
            (Ec2SecurityGroup, Ec2Vpc),
            (Ec2Vpc, Ec2DhcpOptions),
            // Controllers before what they control, users before what they use.
            (CloudformationStack, EksNodegroup),
            (CloudformationStack, AutoscalingGroup),
            (CloudformationStack, Ec2Instance),
            (EksNodegroup, AutoscalingGroup),
            (EksNodegroup, EksCluster),
            (EcsService, EcsCluster),
            (EcsService, EcsTaskDefinition),
            (EcsService, ElbTargetGroup),
            (AutoscalingGroup, Ec2Instance),
            (AutoscalingGroup, Ec2LaunchTemplate),
            (AutoscalingGroup, AutoscalingLaunchConfiguration),
            (AutoscalingGroup, Ec2SecurityGroup),
            (AutoscalingGroup, ElbTargetGroup),
            (ElbLoadBalancer, ElbTargetGroup),
            (ElbLoadBalancer, Ec2SecurityGroup),
            (ElbLoadBalancer, Ec2Subnet),
            (EksCluster, Ec2SecurityGroup),
            (EksCluster, Ec2Subnet),
        ] {
            assert!(first.rank() < then.rank(), "{first} before {then}");
        }
        assert_eq!(S3Bucket.rank(), ResourceType::REST);
    }
}
