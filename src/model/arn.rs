//! ARNs: the parts of a resource's name that inventory and metrics need.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An AWS resource ARN, with the parts inventory and metrics need.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Arn(String);

impl Arn {
    /// Accepts `arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.splitn(6, ':').collect();
        if parts.len() == 6
            && parts[0] == "arn"
            && !parts[1].is_empty()
            && !parts[2].is_empty()
            && !parts[5].is_empty()
        {
            Ok(Arn(s.to_owned()))
        } else {
            Err(format!("`{s}` is not an ARN"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn part(&self, i: usize) -> &str {
        self.0.splitn(6, ':').nth(i).unwrap_or_default()
    }

    /// `aws`, `aws-cn`, `aws-us-gov`.
    pub fn partition(&self) -> &str {
        self.part(1)
    }

    /// The account and name of an IAM entity of `kind` (`role`, `user`): the name is the last
    /// part of `KIND/PATH/NAME`; `None` for any other ARN. An `sts` ARN counts too: that is how
    /// `GetCallerIdentity` names a user on some emulators (moto), where AWS says `iam`.
    pub fn iam_entity(&self, kind: &str) -> Option<(&str, &str)> {
        if !matches!(self.service(), "iam" | "sts") {
            return None;
        }
        let rest = self.resource().strip_prefix(kind)?.strip_prefix('/')?;
        let name = rest.rsplit('/').next().filter(|n| !n.is_empty())?;
        Some((self.account(), name))
    }

    /// The name ephemera gives an access key of the IAM user `user` (its ARN), which AWS gives
    /// none: `arn:PARTITION:iam::ACCOUNT:access-key/USER_NAME/KEY_ID` (user names hold no `/`).
    pub fn access_key(user: &Arn, key_id: &str) -> Option<Arn> {
        let (account, name) = user.iam_entity("user")?;
        Arn::parse(&format!(
            "arn:{}:iam::{account}:access-key/{name}/{key_id}",
            user.partition(),
        ))
        .ok()
        .filter(|a| a.access_key_parts().is_some())
    }

    /// An access key's (user name, key id), from the name [`Arn::access_key`] gives it.
    pub fn access_key_parts(&self) -> Option<(&str, &str)> {
        if self.service() != "iam" {
            return None;
        }
        let (user, key) = self
            .resource()
            .strip_prefix("access-key/")?
            .split_once('/')?;
        (!user.is_empty() && !key.is_empty() && !key.contains('/')).then_some((user, key))
    }

    pub fn service(&self) -> &str {
        self.part(2)
    }

    /// Empty for global resources such as S3 buckets.
    pub fn region(&self) -> &str {
        self.part(3)
    }

    /// Empty for S3 buckets.
    pub fn account(&self) -> &str {
        self.part(4)
    }

    /// The resource part after the account: `instance/i-0abc`, `my-bucket`, `table/t`.
    pub fn resource(&self) -> &str {
        self.part(5)
    }

    /// `service:type`, e.g. `ec2:instance`, `s3:bucket`, `sqs:queue`, `logs:log-group`: a
    /// bounded set, fit for a metric label.
    pub fn resource_type(&self) -> String {
        let service = self.service();
        let implicit = match service {
            "s3" if !self.resource().contains('/') => Some("bucket"),
            "sqs" => Some("queue"),
            "sns" => Some("topic"),
            _ => None,
        };
        let kind = implicit.unwrap_or_else(|| {
            let r = self.resource();
            r.split(['/', ':']).next().unwrap_or(r)
        });
        format!("{service}:{kind}")
    }

    /// The name a resource goes by: its id or name (`i-0abc`, the bucket, queue, table, topic
    /// or function name), and a log group's whole name, slashes included
    /// (`/aws/lambda/x`, not `x`). What CloudTrail files its events under and what allowlist
    /// name patterns match.
    pub fn name(&self) -> &str {
        match self.service() {
            "logs" => self
                .resource()
                .strip_prefix("log-group:")
                .unwrap_or(self.resource()),
            _ => self.resource_id(),
        }
    }

    /// The last part of the resource: the id or name (`i-0abc`, `my-bucket`).
    pub fn resource_id(&self) -> &str {
        let r = self.resource();
        r.rsplit(['/', ':']).next().unwrap_or(r)
    }
}

impl fmt::Display for Arn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An access key's name is made from its user's ARN (path dropped, partition and account
    /// kept) and read back; nothing else reads as an access key.
    #[test]
    fn access_keys_are_named_from_their_user_and_read_back() {
        let arn = |s: &str| Arn::parse(s).expect("an ARN");
        let user = arn("arn:aws-cn:iam::111111111111:user/ci/runner-42");
        let key = Arn::access_key(&user, "AKIA1").expect("named");
        assert_eq!(
            key.as_str(),
            "arn:aws-cn:iam::111111111111:access-key/runner-42/AKIA1"
        );
        assert_eq!(key.access_key_parts(), Some(("runner-42", "AKIA1")));
        assert_eq!(key.resource_type(), "iam:access-key");
        assert_eq!(
            Arn::access_key(&arn("arn:aws:iam::1:role/r"), "AKIA1"),
            None
        );
        assert_eq!(Arn::access_key(&user, "AKIA/1"), None);
        for other in [
            "arn:aws:iam::1:user/u",
            "arn:aws:iam::1:access-key/u",
            "arn:aws:iam::1:access-key//AKIA1",
            "arn:aws:iam::1:access-key/u/",
            "arn:aws:s3:::access-key/u/AKIA1",
        ] {
            assert_eq!(arn(other).access_key_parts(), None, "{other}");
        }
    }

    /// An IAM entity's account and name, its path dropped; of its own kind only.
    #[test]
    fn iam_entities_are_named_by_account_and_last_part() {
        let arn = |s: &str| Arn::parse(s).expect("an ARN");
        let table = [
            (
                "arn:aws:iam::1:user/ci/runner",
                "user",
                Some(("1", "runner")),
            ),
            ("arn:aws:iam::1:user/runner", "user", Some(("1", "runner"))),
            ("arn:aws:iam::1:role/ops/r", "role", Some(("1", "r"))),
            ("arn:aws:iam::1:role/r", "user", None),
            ("arn:aws:iam::1:users/r", "user", None),
            ("arn:aws:iam::1:user/ci/", "user", None),
            ("arn:aws:sts::1:assumed-role/r/s", "role", None),
            ("arn:aws:sts::1:user/moto", "user", Some(("1", "moto"))),
            ("arn:aws:s3:::user/x", "user", None),
        ];
        for (a, kind, expected) in table {
            assert_eq!(arn(a).iam_entity(kind), expected, "{a} as {kind}");
        }
    }

    /// The name CloudTrail files events under and allowlist patterns match.
    #[test]
    fn names_are_ids_and_whole_log_group_names() {
        let name = |a: &str| Arn::parse(a).expect("arn").name().to_owned();
        assert_eq!(name("arn:aws:ec2:us-east-1:1:instance/i-0abc"), "i-0abc");
        assert_eq!(name("arn:aws:s3:::my-bucket"), "my-bucket");
        assert_eq!(name("arn:aws:sqs:us-east-1:1:jobs"), "jobs");
        assert_eq!(name("arn:aws:lambda:us-east-1:1:function:f"), "f");
        assert_eq!(
            name("arn:aws:logs:us-east-1:1:log-group:/aws/lambda/f"),
            "/aws/lambda/f"
        );
    }

    #[test]
    fn arn_parts_and_types() {
        let check = |arn: &str, ty: &str, id: &str, region: &str, account: &str| {
            let a = Arn::parse(arn).expect("valid arn");
            assert_eq!(a.resource_type(), ty, "{arn}");
            assert_eq!(a.resource_id(), id, "{arn}");
            assert_eq!(a.region(), region, "{arn}");
            assert_eq!(a.account(), account, "{arn}");
        };
        check(
            "arn:aws:ec2:us-east-1:123456789012:instance/i-0abc",
            "ec2:instance",
            "i-0abc",
            "us-east-1",
            "123456789012",
        );
        check(
            "arn:aws:ec2:eu-west-1:123456789012:volume/vol-1",
            "ec2:volume",
            "vol-1",
            "eu-west-1",
            "123456789012",
        );
        check("arn:aws:s3:::my-bucket", "s3:bucket", "my-bucket", "", "");
        check(
            "arn:aws:sqs:us-east-1:123456789012:jobs",
            "sqs:queue",
            "jobs",
            "us-east-1",
            "123456789012",
        );
        check(
            "arn:aws:sns:us-east-1:123456789012:alerts",
            "sns:topic",
            "alerts",
            "us-east-1",
            "123456789012",
        );
        check(
            "arn:aws:dynamodb:us-east-1:123456789012:table/t1",
            "dynamodb:table",
            "t1",
            "us-east-1",
            "123456789012",
        );
        check(
            "arn:aws:lambda:us-east-1:123456789012:function:f",
            "lambda:function",
            "f",
            "us-east-1",
            "123456789012",
        );
        check(
            "arn:aws:logs:us-east-1:123456789012:log-group:/aws/x",
            "logs:log-group",
            "x",
            "us-east-1",
            "123456789012",
        );
        // The VPC family, as the tagging API and IAM spell them (NAT gateways `natgateway`).
        for (resource, ty, id) in [
            ("vpc/vpc-0a1", "ec2:vpc", "vpc-0a1"),
            ("subnet/subnet-0a1", "ec2:subnet", "subnet-0a1"),
            ("route-table/rtb-0a1", "ec2:route-table", "rtb-0a1"),
            (
                "internet-gateway/igw-0a1",
                "ec2:internet-gateway",
                "igw-0a1",
            ),
            ("natgateway/nat-0a1", "ec2:natgateway", "nat-0a1"),
            ("vpc-endpoint/vpce-0a1", "ec2:vpc-endpoint", "vpce-0a1"),
            (
                "egress-only-internet-gateway/eigw-0a1",
                "ec2:egress-only-internet-gateway",
                "eigw-0a1",
            ),
            ("network-acl/acl-0a1", "ec2:network-acl", "acl-0a1"),
            ("dhcp-options/dopt-0a1", "ec2:dhcp-options", "dopt-0a1"),
            (
                "vpc-peering-connection/pcx-0a1",
                "ec2:vpc-peering-connection",
                "pcx-0a1",
            ),
        ] {
            check(
                &format!("arn:aws:ec2:eu-west-1:123456789012:{resource}"),
                ty,
                id,
                "eu-west-1",
                "123456789012",
            );
            let a = Arn::parse(&format!("arn:aws:ec2:eu-west-1:123456789012:{resource}"))
                .expect("valid arn");
            assert_eq!(a.name(), id, "{resource}");
        }
        assert!(Arn::parse("arn:aws:s3").is_err());
        assert!(Arn::parse("i-0abc").is_err());
    }
}
