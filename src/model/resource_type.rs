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
}

impl ResourceType {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The type of a resource whose ARN names `text`; `None` for a type with no deleter.
    pub fn parse(text: &str) -> Option<Self> {
        text.parse().ok()
    }

    /// Deletion order: lower goes first. What uses a thing goes before it (instances before
    /// their volumes and security groups, AMIs before their snapshots, interfaces before
    /// security groups). Exhaustive, so a new type must say where it goes.
    pub fn rank(self) -> u8 {
        use ResourceType::*;
        match self {
            Ec2Instance | LambdaFunction => 0,
            Ec2Image | Ec2NetworkInterface | Ec2ElasticIp => 1,
            Ec2Volume | Ec2KeyPair | Ec2LaunchTemplate | S3Bucket | SqsQueue | SnsTopic
            | DynamodbTable | LogsLogGroup => 2,
            Ec2Snapshot | Ec2SecurityGroup => 3,
        }
    }
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
        assert_eq!(ResourceType::parse("ec2:vpc"), None);
        assert_eq!(ResourceType::parse("EC2:instance"), None);
        let err = serde_json::from_str::<ResourceType>("\"sqs:queues\"").expect_err("unknown");
        assert!(
            err.to_string().contains("no deleter for `sqs:queues`"),
            "{err}"
        );
    }
}
