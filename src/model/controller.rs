//! Controllers: resources that own others and act on them when they are touched alone. An
//! instance of an Auto Scaling group comes back when it is terminated; a resource of a
//! CloudFormation stack deleted alone leaves the stack drifted and its next update failing; a
//! node group's instances belong to it, and an ECS service's tasks to it. Such a member is
//! reaped only by deleting its controller, never piecemeal.
//!
//! A member names its controller through the tags AWS puts on it; a controller is known by its
//! own ARN. [`ControllerRef`] is what both come to, compared parsed (kind, account, region,
//! name), never as raw text.

use std::fmt;

use serde::Serialize;

use super::{Arn, Tags};

/// The kinds of controller, outermost first: a resource that names several (an instance of a
/// node group made by a stack) belongs to the first, since deleting it deletes the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ControllerKind {
    Stack,
    NodeGroup,
    AutoScalingGroup,
    EcsService,
}

impl ControllerKind {
    pub const ALL: [ControllerKind; 4] = [
        ControllerKind::Stack,
        ControllerKind::NodeGroup,
        ControllerKind::AutoScalingGroup,
        ControllerKind::EcsService,
    ];

    /// The resource type of the controller, as its ARN names it.
    pub fn resource_type(self) -> &'static str {
        match self {
            ControllerKind::Stack => "cloudformation:stack",
            ControllerKind::NodeGroup => "eks:nodegroup",
            ControllerKind::AutoScalingGroup => "autoscaling:autoScalingGroup",
            ControllerKind::EcsService => "ecs:service",
        }
    }

    /// The kind whose [`resource_type`](Self::resource_type) is `text`.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.resource_type() == text)
    }
}

/// The tag keys AWS puts on what a controller made (CloudFormation on every resource of a
/// stack, Auto Scaling on its instances, EKS on a node group's group and instances, ECS on a
/// service's tasks when managed tags are on).
pub const STACK_ID: &str = "aws:cloudformation:stack-id";
pub const ASG_NAME: &str = "aws:autoscaling:groupName";
pub const EKS_CLUSTER: &str = "eks:cluster-name";
pub const EKS_NODEGROUP: &str = "eks:nodegroup-name";
pub const ECS_CLUSTER: &str = "aws:ecs:clusterName";
pub const ECS_SERVICE: &str = "aws:ecs:serviceName";

/// One controller: its kind, where it lives, and its name there (a stack's ARN, a group's
/// name, `cluster/name` for a node group or an ECS service).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ControllerRef {
    pub kind: ControllerKind,
    pub account: String,
    pub region: String,
    pub name: String,
}

impl fmt::Display for ControllerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            // A stack's name is already its whole ARN.
            ControllerKind::Stack => f.write_str(&self.name),
            k => write!(
                f,
                "{} {} in {}/{}",
                k.resource_type(),
                self.name,
                self.account,
                self.region
            ),
        }
    }
}

/// A tag's value, trimmed; `None` when absent or blank.
fn present(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|v| !v.is_empty())
}

impl ControllerRef {
    fn new(kind: ControllerKind, account: &str, region: &str, name: String) -> Self {
        ControllerRef {
            kind,
            account: account.to_owned(),
            region: region.to_owned(),
            name,
        }
    }

    /// How the store keeps it beside its member (whose row holds the account and region):
    /// `TYPE NAME`.
    pub fn stored(&self) -> String {
        format!("{} {}", self.kind.resource_type(), self.name)
    }

    /// Reads back [`stored`](Self::stored) for a member in (`account`, `region`).
    pub fn from_stored(text: &str, account: &str, region: &str) -> Option<Self> {
        let (kind, name) = text.split_once(' ')?;
        Some(Self::new(
            ControllerKind::parse(kind)?,
            account,
            region,
            name.to_owned(),
        ))
    }

    /// The controller the tags of a resource in (`account`, `region`) name, outermost first.
    /// A stack id that is not a stack ARN of this account and region names none (a copied
    /// tag is not a controller).
    pub fn of_tags(tags: &Tags, account: &str, region: &str) -> Option<Self> {
        // One scan of the tags for the six keys: a lookup each was a tenth of a pass's own
        // CPU (every page's rows are asked, most of them naming no controller).
        let [stack, eks_cluster, eks_group, asg, ecs_cluster, ecs_service] = tags
            .get_many([
                STACK_ID,
                EKS_CLUSTER,
                EKS_NODEGROUP,
                ASG_NAME,
                ECS_CLUSTER,
                ECS_SERVICE,
            ])
            .map(present);
        if let Some(id) = stack {
            let arn = Arn::parse(id).ok()?;
            let own = arn.resource_type() == ControllerKind::Stack.resource_type()
                && arn.account() == account
                && arn.region() == region;
            return own.then(|| Self::new(ControllerKind::Stack, account, region, id.to_owned()));
        }
        if let (Some(cluster), Some(group)) = (eks_cluster, eks_group) {
            let name = format!("{cluster}/{group}");
            return Some(Self::new(ControllerKind::NodeGroup, account, region, name));
        }
        if let Some(group) = asg {
            let name = group.to_owned();
            return Some(Self::new(
                ControllerKind::AutoScalingGroup,
                account,
                region,
                name,
            ));
        }
        if let (Some(cluster), Some(service)) = (ecs_cluster, ecs_service) {
            let name = format!("{cluster}/{service}");
            return Some(Self::new(ControllerKind::EcsService, account, region, name));
        }
        None
    }

    /// The controller `arn` is itself, if it is one: the name its members' tags give it.
    pub fn of_resource(arn: &Arn, account: &str, region: &str) -> Option<Self> {
        let r = arn.resource();
        let (kind, name) = match arn.resource_type().as_str() {
            "cloudformation:stack" => (ControllerKind::Stack, arn.as_str().to_owned()),
            // nodegroup/CLUSTER/NAME/UUID
            "eks:nodegroup" => {
                let mut parts = r.splitn(4, '/').skip(1);
                let (cluster, group) = (parts.next()?, parts.next()?);
                (ControllerKind::NodeGroup, format!("{cluster}/{group}"))
            }
            // autoScalingGroup:UUID:autoScalingGroupName/NAME
            "autoscaling:autoScalingGroup" => {
                let (_, name) = r.split_once(":autoScalingGroupName/")?;
                (ControllerKind::AutoScalingGroup, name.to_owned())
            }
            // service/CLUSTER/NAME (the long form; the old short form names no cluster)
            "ecs:service" => {
                let mut parts = r.splitn(3, '/').skip(1);
                let (cluster, service) = (parts.next()?, parts.next()?);
                (ControllerKind::EcsService, format!("{cluster}/{service}"))
            }
            _ => return None,
        };
        (!name.is_empty()).then(|| Self::new(kind, account, region, name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "123456789012";
    const R: &str = "us-east-1";
    const STACK: &str = "arn:aws:cloudformation:us-east-1:123456789012:stack/web/6f1c-11ee";

    fn arn(s: &str) -> Arn {
        Arn::parse(s).expect("arn")
    }

    #[test]
    fn members_and_controllers_meet_on_the_same_ref() {
        let cases = [
            (
                Tags::from_pairs([(STACK_ID, STACK), (ASG_NAME, "web-asg")]),
                STACK,
            ),
            (
                Tags::from_pairs([
                    (EKS_CLUSTER, "ci"),
                    (EKS_NODEGROUP, "ng-1"),
                    (ASG_NAME, "eks-ng-1-abc"),
                ]),
                "arn:aws:eks:us-east-1:123456789012:nodegroup/ci/ng-1/7a-b2",
            ),
            (
                Tags::from_pairs([(ASG_NAME, "web-asg")]),
                "arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:9e-1f:autoScalingGroupName/web-asg",
            ),
            (
                Tags::from_pairs([(ECS_CLUSTER, "ci"), (ECS_SERVICE, "api")]),
                "arn:aws:ecs:us-east-1:123456789012:service/ci/api",
            ),
        ];
        for (tags, controller) in cases {
            let member = ControllerRef::of_tags(&tags, A, R).expect("names a controller");
            let own = ControllerRef::of_resource(&arn(controller), A, R).expect("is one");
            assert_eq!(member, own, "{controller}");
            let back = ControllerRef::from_stored(&member.stored(), A, R);
            assert_eq!(back.as_ref(), Some(&member), "{controller}");
        }
    }

    #[test]
    fn what_names_no_controller() {
        assert_eq!(ControllerRef::from_stored("ec2:instance x", A, R), None);
        assert_eq!(ControllerRef::from_stored("ecs:service", A, R), None);
        let none = |tags: Tags| ControllerRef::of_tags(&tags, A, R);
        assert_eq!(none(Tags::from_pairs([("team", "web")])), None);
        assert_eq!(none(Tags::from_pairs([(ASG_NAME, "  ")])), None);
        // Half of a pair is not a controller (the group alone still is).
        assert_eq!(none(Tags::from_pairs([(EKS_NODEGROUP, "ng")])), None);
        assert_eq!(none(Tags::from_pairs([(ECS_SERVICE, "api")])), None);
        // A stack id of another account or region, or not a stack ARN, names none — and
        // hides no weaker controller tag next to it.
        for bad in [
            "arn:aws:cloudformation:eu-west-1:123456789012:stack/web/1",
            "arn:aws:cloudformation:us-east-1:210987654321:stack/web/1",
            "arn:aws:sqs:us-east-1:123456789012:stack",
            "web",
        ] {
            let tags = Tags::from_pairs([(STACK_ID, bad), (ASG_NAME, "web-asg")]);
            assert_eq!(ControllerRef::of_tags(&tags, A, R), None, "{bad}");
        }
        for not_one in [
            "arn:aws:ec2:us-east-1:123456789012:instance/i-1",
            "arn:aws:ecs:us-east-1:123456789012:service/api",
            "arn:aws:ecs:us-east-1:123456789012:cluster/ci",
            "arn:aws:eks:us-east-1:123456789012:cluster/ci",
            "arn:aws:autoscaling:us-east-1:123456789012:launchConfiguration:1:launchConfigurationName/x",
        ] {
            assert_eq!(
                ControllerRef::of_resource(&arn(not_one), A, R),
                None,
                "{not_one}"
            );
        }
    }

    #[test]
    fn outermost_wins_and_places_differ() {
        let tags = Tags::from_pairs([
            (ECS_CLUSTER, "ci"),
            (ECS_SERVICE, "api"),
            (ASG_NAME, "g"),
            (EKS_CLUSTER, "ci"),
            (EKS_NODEGROUP, "ng"),
        ]);
        let r = ControllerRef::of_tags(&tags, A, R).expect("one");
        assert_eq!(r.kind, ControllerKind::NodeGroup);
        let asg = Tags::from_pairs([(ASG_NAME, "g")]);
        assert_ne!(
            ControllerRef::of_tags(&asg, A, R),
            ControllerRef::of_tags(&asg, A, "eu-west-1"),
            "the same name in another region is another group"
        );
        assert_eq!(
            ControllerRef::of_tags(&asg, A, R).expect("one").to_string(),
            "autoscaling:autoScalingGroup g in 123456789012/us-east-1"
        );
    }
}
