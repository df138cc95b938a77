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
    /// `repository/NAME`, NAME possibly holding `/`.
    #[strum(serialize = "ecr:repository")]
    EcrRepository,
    #[strum(serialize = "secretsmanager:secret")]
    SecretsmanagerSecret,
    #[strum(serialize = "kms:key")]
    KmsKey,
    /// A DB instance.
    #[strum(serialize = "rds:db")]
    RdsDb,
    #[strum(serialize = "rds:cluster")]
    RdsCluster,
    /// A manual DB snapshot.
    #[strum(serialize = "rds:snapshot")]
    RdsSnapshot,
    #[strum(serialize = "rds:cluster-snapshot")]
    RdsClusterSnapshot,
    /// A DB subnet group, spelt as AWS spells it in ARNs.
    #[strum(serialize = "rds:subgrp")]
    RdsSubnetGroup,
    /// IAM's are global: their ARNs have no region.
    #[strum(serialize = "iam:role")]
    IamRole,
    #[strum(serialize = "iam:instance-profile")]
    IamInstanceProfile,
    /// A customer managed policy.
    #[strum(serialize = "iam:policy")]
    IamPolicy,
    #[strum(serialize = "iam:oidc-provider")]
    IamOidcProvider,
    #[strum(serialize = "iam:user")]
    IamUser,
    /// An IAM user's access key. AWS gives access keys no ARN: ephemera names one
    /// `arn:aws:iam::ACCOUNT:access-key/USER/KEY_ID` (user names hold no `/`), and judges it by
    /// its user's tags.
    #[strum(serialize = "iam:access-key")]
    IamAccessKey,
    /// A cache cluster.
    #[strum(serialize = "elasticache:cluster")]
    ElasticacheCluster,
    #[strum(serialize = "elasticache:replicationgroup")]
    ElasticacheReplicationGroup,
    /// A cache subnet group.
    #[strum(serialize = "elasticache:subnetgroup")]
    ElasticacheSubnetGroup,
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

    /// Whether its resources are global (IAM's): listed once per account, not per region.
    pub fn is_global(self) -> bool {
        self.as_str().starts_with("iam:")
    }

    /// What grants access to an account: listed every pass (not only when a sweep is due), in
    /// each account's first region, so a credential whose lease ended is seen within a pass.
    pub const CREDENTIALS: [ResourceType; 4] = [
        ResourceType::IamRole,
        ResourceType::IamInstanceProfile,
        ResourceType::IamUser,
        ResourceType::IamAccessKey,
    ];
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
}
