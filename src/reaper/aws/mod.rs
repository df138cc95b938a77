//! Per-type AWS deleters: [`inspect`] takes a fresh look at one resource right before it is
//! deleted (is it still there, what tags does it carry now, what must go first), [`delete`]
//! deletes it.
//!
//! Architecture Invariant: the only place that issues mutating AWS calls, and every call is
//! idempotent: deleting what is already gone answers [`Deleted::AlreadyGone`], never an error.
//! A deleter deletes exactly the resource its ARN names (an S3 bucket's objects are part of the
//! bucket, an ECR repository's images of the repository); it never deletes, detaches or
//! disassociates a dependency — those are reported in [`Inspection::Live`]'s `depends_on` for
//! the caller to order, and a deletion they block fails with [`DeleteError::InUse`]. What has
//! no ARN or tags the reaper could order is part of deleting its owner: detaching an internet
//! gateway from its VPC and removing a route table's associations; detaching an IAM role's
//! managed policies, deleting its inline ones and removing it from instance profiles; removing
//! an instance profile's roles; deleting a policy's old versions. The VPC, subnets, the
//! detached policies and the roles removed from a profile are never touched, and a policy still
//! attached is in use. Deletions AWS only schedules (KMS keys, secrets: 7 days) count as done,
//! and what AWS is already deleting or has scheduled is gone. What AWS made and ephemera never
//! deletes on its own (default VPC and subnets, main route tables, default network ACLs,
//! AWS-managed KMS keys, service-linked and Identity Center roles, AWS managed policies,
//! automated RDS snapshots) is refused, [`DeleteError::Refused`], by inspect and delete alike.
//! Controllers are deleted with what they control, by AWS, as their own deletion: an Auto
//! Scaling group's instances, an EKS node group's Auto Scaling group, an ECS service's tasks, a
//! CloudFormation stack's members (the only deleter that waits, for the stack's final status).
//! No call retries beyond the SDK's retry policy. SDK types do not leave this module.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::LazyLock;

use aws_config::{Region, SdkConfig};
use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_ec2::types::{Filter, ImageState, InstanceStateName, VolumeState};

use crate::model::{Arn, ResourceType, Tags};

mod autoscaling;
mod cloudformation;
mod dynamodb;
mod ec2;
mod ecr;
mod ecs;
mod eks;
mod elasticache;
mod elbv2;
mod iam_entities;
mod kms;
mod lambda;
mod logs;
mod rds;
mod s3;
mod secretsmanager;
mod sns;
mod sqs;
mod vpc;

/// What a fresh look at one resource, right before deleting it, found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inspection {
    /// Not there any more (or an EC2 instance in `terminated` state): nothing to delete.
    Gone,
    /// Alive, with its current tags (as AWS returns them now) and the ARNs of live resources
    /// that must be deleted before it can be.
    Live { tags: Tags, depends_on: Vec<Arn> },
}

/// How a deletion ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    /// This call deleted it (or, for EC2 instances, started its termination).
    Deleted,
    /// It was gone before this call.
    AlreadyGone,
}

#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    /// No deleter for this type.
    #[error("resource type `{0}` has no deleter")]
    Unsupported(String),
    /// Still in use / a dependency violation (retry on a later pass).
    #[error("in use: {message}")]
    InUse {
        message: String,
        #[source]
        source: Option<BoxError>,
    },
    /// Any other AWS or transport error (message includes the AWS error code when there is
    /// one); the SDK's error, when there is one, is its source.
    #[error("{message}")]
    Aws {
        message: String,
        #[source]
        source: Option<BoxError>,
    },
    /// A resource ephemera never deletes, whatever its tags say: a default VPC, a default
    /// subnet, a main route table, a default network ACL (they go with their VPC, or never);
    /// an AWS-managed KMS key, a service-linked or Identity Center role, an AWS managed policy,
    /// an automated RDS snapshot (their service owns them).
    #[error("refused: {0}")]
    Refused(String),
    /// A deleter working in batches was told to stop between two (see [`Batches`]).
    #[error("stopped: {0}")]
    Stopped(String),
}

/// What a deleter that works in batches (a bucket's objects, then the bucket) consults
/// between two batches: it records the progress, then re-reads the resource's tags and asks
/// whether the work may go on.
pub trait Batches: Sync {
    /// Records that `removed` parts are gone so far (the audit log, so an emptying that is
    /// interrupted is visible, and the next pass resumes it).
    fn progress(&self, removed: u64) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
    /// Whether the work may go on, given the resource's tags as they are now; the reason to
    /// stop otherwise.
    fn still_doomed(&self, tags: &Tags) -> Result<(), String>;
}

/// Batches that never stop and record nothing.
#[derive(Debug)]
pub struct Unwatched;

impl Batches for Unwatched {
    fn progress(&self, _removed: u64) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async {})
    }
    fn still_doomed(&self, _tags: &Tags) -> Result<(), String> {
        Ok(())
    }
}

/// A call of a deleter, boxed so that every type's sits in one table.
pub type Call<'a, T> = Pin<Box<dyn Future<Output = Result<T, DeleteError>> + Send + 'a>>;

/// How a type is inspected: [`inspect`].
pub type InspectFn = for<'a> fn(&'a SdkConfig, &'a Arn) -> Call<'a, Inspection>;

/// How a type is deleted: [`delete_watched`] (`watch` matters to deleters that work in
/// batches).
pub type DeleteFn = for<'a> fn(&'a SdkConfig, &'a Arn, &'a dyn Batches) -> Call<'a, Deleted>;

/// One deletable type, whole: everything the reaper and the printed IAM policy need of it sits
/// in one entry of its service's file (`KINDS`). Adding a type is its `ResourceType` variant,
/// one entry, its sweep lister (`inventory::sweep`, which lists in a lower layer) and its
/// tests; `every_type_has_exactly_one_kind` fails until the entry is there.
#[derive(Debug)]
pub struct Kind {
    pub ty: ResourceType,
    /// An ARN of the type as the Resource Groups Tagging API spells it.
    pub example: &'static str,
    /// Deletion order: lower goes first. What uses a thing, or controls it, goes before it.
    pub rank: u8,
    pub inspect: InspectFn,
    pub delete: DeleteFn,
    /// The IAM actions of the calls `inspect` and `delete` make, as IAM names them, sorted.
    pub actions: &'static [&'static str],
    /// The deleting actions of `actions` that AWS authorizes on the resource's own tags
    /// (`aws:ResourceTag/${TagKey}`, per the Service Authorization Reference), so the printed
    /// policy can allow them only on resources that carry the identity tags. The rest (reads,
    /// and deletes whose service cannot condition on the resource's tags) stays unconditioned.
    pub tag_conditioned: &'static [&'static str],
}

/// The rank of the types that depend on nothing else ephemera deletes. The order around it:
/// controllers first, outermost first — stacks (0), node groups and ECS services (1), Auto
/// Scaling groups (2); then instances, functions, DB instances, replication groups, load
/// balancers and EKS clusters (3); AMIs, interfaces, NAT gateways, endpoints, peerings, DB
/// clusters, cache clusters and instance profiles (4); Elastic IPs, after the NAT gateway or
/// interface they are associated with, subnet groups and roles (5); the rest (6); snapshots,
/// security groups, subnets, route tables and KMS keys (7); network ACLs, which their subnets'
/// deletion frees, and gateways, after what routes through them (8); VPCs (9); the DHCP
/// option sets they use (10).
pub const REST: u8 = 6;

/// Every service's types.
const SERVICES: &[&[Kind]] = &[
    ec2::KINDS,
    vpc::KINDS,
    s3::KINDS,
    sqs::KINDS,
    sns::KINDS,
    dynamodb::KINDS,
    lambda::KINDS,
    logs::KINDS,
    ecr::KINDS,
    secretsmanager::KINDS,
    kms::KINDS,
    rds::KINDS,
    iam_entities::KINDS,
    elasticache::KINDS,
    autoscaling::KINDS,
    elbv2::KINDS,
    ecs::KINDS,
    eks::KINDS,
    cloudformation::KINDS,
];

/// Every deletable type's entry.
pub fn kinds() -> impl Iterator<Item = &'static Kind> {
    SERVICES.iter().flat_map(|s| s.iter())
}

/// The entry of `t`.
pub fn kind(t: ResourceType) -> &'static Kind {
    static BY_TYPE: LazyLock<HashMap<ResourceType, &'static Kind>> =
        LazyLock::new(|| kinds().map(|k| (k.ty, k)).collect());
    BY_TYPE
        .get(&t)
        .expect("every type has an entry (`every_type_has_exactly_one_kind`)")
}

/// Looks at the resource `arn` names, through the service that owns it, with `sdk` (the config
/// for the resource's account and region).
pub async fn inspect(sdk: &SdkConfig, arn: &Arn) -> Result<Inspection, DeleteError> {
    (kind(deletable(arn)?).inspect)(sdk, arn).await
}

pub use iam_entities::Deactivation;

/// The first, reversible step of deleting an access key (see [`crate::reaper::plan::step`]):
/// it is made inactive. Refused for any other type.
pub async fn deactivate(sdk: &SdkConfig, arn: &Arn) -> Result<Deactivation, DeleteError> {
    match deletable(arn)? {
        ResourceType::IamAccessKey => iam_entities::deactivate_access_key(sdk, arn).await,
        t => Err(DeleteError::Refused(format!(
            "{t} has no deactivation; only access keys do"
        ))),
    }
}

/// The image an EC2 instance runs or a launch template launches, as EC2 says now (`None` for
/// other types, when it is gone, or when it names none): what the catalog judges again right
/// before a delete.
pub async fn image_of(
    sdk: &SdkConfig,
    arn: &Arn,
) -> Result<Option<crate::model::Image>, DeleteError> {
    match ResourceType::parse(&arn.resource_type()) {
        Some(t @ (ResourceType::Ec2Instance | ResourceType::Ec2LaunchTemplate)) => {
            ec2::image_of(&ec2::client(sdk), t, arn.resource_id()).await
        }
        _ => Ok(None),
    }
}

/// The type of the resource `arn` names, if it has a deleter.
fn deletable(arn: &Arn) -> Result<ResourceType, DeleteError> {
    let t = arn.resource_type();
    ResourceType::parse(&t).ok_or(DeleteError::Unsupported(t))
}

/// Deletes the resource `arn` names with `sdk` (the config for its account and region).
/// Idempotent: a resource already gone answers [`Deleted::AlreadyGone`].
pub async fn delete(sdk: &SdkConfig, arn: &Arn) -> Result<Deleted, DeleteError> {
    delete_watched(sdk, arn, &Unwatched).await
}

/// Like [`delete`], consulting `watch` between the batches of a deleter that works in
/// batches (an S3 bucket's objects).
pub async fn delete_watched(
    sdk: &SdkConfig,
    arn: &Arn,
    watch: &dyn Batches,
) -> Result<Deleted, DeleteError> {
    (kind(deletable(arn)?).delete)(sdk, arn, watch).await
}

/// The IAM actions of the calls [`inspect`] and [`delete`] make for `t` ([`Kind::actions`]).
/// [`super::iam`] hands them to the printed policy.
pub fn iam_actions(t: ResourceType) -> &'static [&'static str] {
    kind(t).actions
}

/// The deleting actions of `t` that AWS authorizes on the resource's own tags
/// ([`Kind::tag_conditioned`]).
pub fn iam_tag_conditioned(t: ResourceType) -> &'static [&'static str] {
    kind(t).tag_conditioned
}

/// An error kept as the source of another.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// One failed AWS call: what the deleters branch on, and the SDK's error itself.
#[derive(Debug)]
struct Failure {
    code: Option<String>,
    /// `Operation: Code: message`, or the whole error chain when AWS gave no code (transport).
    message: String,
    /// The SDK's error; none where the failure is ours (a call that succeeded, but said no).
    source: Option<BoxError>,
}

impl Failure {
    fn of<E>(operation: &str, e: E) -> Failure
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let code = e.code().map(str::to_owned);
        let message = match (&code, e.message()) {
            (Some(c), Some(m)) => format!("{operation}: {c}: {m}"),
            (Some(c), None) => format!("{operation}: {c}"),
            (None, _) => format!("{operation}: {}", DisplayErrorContext(&e)),
        };
        Failure {
            code,
            message,
            source: Some(Box::new(e)),
        }
    }

    fn is(&self, codes: &[&str]) -> bool {
        self.code.as_deref().is_some_and(|c| codes.contains(&c))
    }

    /// [`DeleteError::InUse`] for one of `in_use`, else [`DeleteError::Aws`].
    fn into_error(self, in_use: &[&str]) -> DeleteError {
        if self.is(in_use) {
            DeleteError::InUse {
                message: self.message,
                source: self.source,
            }
        } else {
            DeleteError::Aws {
                message: self.message,
                source: self.source,
            }
        }
    }
}

/// `map_err` shorthand: `.map_err(fail("DeleteVolume"))`.
fn fail<E>(operation: &'static str) -> impl Fn(E) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    move |e| Failure::of(operation, e)
}

/// The answer of a deleting call: gone before for one of `not_found`, in use for one of
/// `in_use`.
fn settle<T>(
    result: Result<T, Failure>,
    not_found: &[&str],
    in_use: &[&str],
) -> Result<Deleted, DeleteError> {
    match result {
        Ok(_) => Ok(Deleted::Deleted),
        Err(f) if f.is(not_found) => Ok(Deleted::AlreadyGone),
        Err(f) => Err(f.into_error(in_use)),
    }
}

fn live(tags: Tags) -> Inspection {
    Inspection::Live {
        tags,
        depends_on: Vec::new(),
    }
}

fn map_tags(tags: Option<&HashMap<String, String>>) -> Tags {
    Tags::from_pairs(
        tags.into_iter()
            .flatten()
            .map(|(k, v)| (k.as_str(), v.as_str())),
    )
}

/// `arn:PARTITION:SERVICE:REGION:ACCOUNT:resource` in the partition, region and account of
/// `of`, formatted as the tagging API formats it.
fn sibling(of: &Arn, service: &str, resource: &str) -> Arn {
    let partition = of.as_str().split(':').nth(1).unwrap_or("aws");
    Arn::parse(&format!(
        "arn:{partition}:{service}:{}:{}:{resource}",
        of.region(),
        of.account()
    ))
    .expect("built from a parsed ARN's non-empty parts and a non-empty resource")
}

/// Whether an IAM action (`service:Name`) changes something the way the deleters' calls do:
/// deleting and its kin (detaching and disassociating are part of deleting an internet gateway
/// and a route table), putting (a role's session revocation), and deactivating an access key
/// (its first step). The tests of what an unarmed policy allows and of the tag-conditioned
/// rows share it.
#[cfg(test)]
pub(crate) fn changes_something(action: &str) -> bool {
    let name = action.split(':').nth(1).unwrap_or_default();
    name == "UpdateAccessKey"
        || [
            "Put",
            "Delete",
            "Terminate",
            "Deregister",
            "Release",
            "Detach",
            "Disassociate",
            "Schedule",
            "Remove",
        ]
        .iter()
        .any(|v| name.starts_with(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    use strum::VariantArray;

    /// The registry is whole: each type has exactly one entry, whose example ARN yields the
    /// type and reaches its deleter. Another type is refused by name.
    #[test]
    fn every_type_has_exactly_one_kind() {
        let mut seen: HashMap<ResourceType, usize> = HashMap::new();
        for k in kinds() {
            *seen.entry(k.ty).or_default() += 1;
            let arn = Arn::parse(k.example).expect("a valid example");
            assert_eq!(arn.resource_type(), k.ty.as_str(), "{arn}");
            assert_eq!(deletable(&arn).ok(), Some(k.ty), "{arn}");
            assert!(std::ptr::eq(kind(k.ty), k), "{}", k.ty);
        }
        for t in ResourceType::VARIANTS {
            assert_eq!(
                seen.get(t),
                Some(&1),
                "{t}: one entry in its service's KINDS"
            );
        }
        let tgw =
            Arn::parse("arn:aws:ec2:us-east-1:123456789012:transit-gateway/tgw-1").expect("valid");
        assert!(
            matches!(deletable(&tgw), Err(DeleteError::Unsupported(t)) if t == "ec2:transit-gateway")
        );
    }

    /// Each type's place in the deletion order: users and controllers before what they use.
    #[test]
    fn ranks_put_users_before_what_they_use() {
        use ResourceType::*;
        let rank = |t: ResourceType| kind(t).rank;
        for (first, then) in [
            (Ec2Instance, Ec2Volume),
            (Ec2Instance, Ec2SecurityGroup),
            (Ec2Image, Ec2Snapshot),
            (Ec2NetworkInterface, Ec2SecurityGroup),
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
            (CloudformationStack, AutoscalingGroup),
            (CloudformationStack, EksNodegroup),
            (EksNodegroup, AutoscalingGroup),
            (EksNodegroup, EksCluster),
            (EcsService, EcsCluster),
            (EcsService, EcsTaskDefinition),
            (AutoscalingGroup, Ec2Instance),
            (AutoscalingGroup, AutoscalingLaunchConfiguration),
            (AutoscalingGroup, Ec2LaunchTemplate),
            (ElbLoadBalancer, ElbTargetGroup),
            (ElbLoadBalancer, Ec2SecurityGroup),
            (EksCluster, Ec2Subnet),
            (RdsDb, RdsCluster),
            (RdsCluster, RdsSubnetGroup),
            (RdsSubnetGroup, Ec2Subnet),
            (ElasticacheReplicationGroup, ElasticacheCluster),
            (ElasticacheCluster, ElasticacheSubnetGroup),
            (Ec2Instance, IamInstanceProfile),
            (IamInstanceProfile, IamRole),
            (LambdaFunction, IamRole),
            (IamRole, IamPolicy),
            (SecretsmanagerSecret, KmsKey),
            (RdsDb, KmsKey),
        ] {
            assert!(rank(first) < rank(then), "{first} before {then}");
        }
        assert_eq!(rank(S3Bucket), REST);
    }

    #[test]
    fn every_types_iam_actions_are_sorted_concrete_actions_of_its_own_service() {
        for t in ResourceType::VARIANTS {
            let actions = iam_actions(*t);
            let mut sorted = actions.to_vec();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted, actions, "{t}: sorted and unique");
            let service = t.as_str().split(':').next().unwrap_or_default();
            for a in actions {
                let (prefix, name) = a.split_once(':').unwrap_or_default();
                assert_eq!(prefix, service, "{t}: {a} is another service's");
                assert!(
                    !name.is_empty()
                        && !name.contains('*')
                        && name.starts_with(|c: char| c.is_ascii_uppercase()),
                    "{t}: `{a}` is not one concrete action"
                );
            }
        }
    }

    /// Every type's calls can look (the re-read before deleting) and delete.
    #[test]
    fn every_types_iam_actions_can_look_and_delete() {
        for t in ResourceType::VARIANTS {
            let has = |verbs: &[&str]| {
                iam_actions(*t).iter().any(|a| {
                    let name = a.split(':').nth(1).unwrap_or_default();
                    verbs.iter().any(|v| name.starts_with(v))
                })
            };
            assert!(has(&["Describe", "Get", "List"]), "{t}: no reading action");
            assert!(
                // KMS has no delete: it schedules one.
                has(&["Delete", "Terminate", "Deregister", "Release", "Schedule"]),
                "{t}: no deleting action"
            );
        }
    }

    /// The types none of whose deletes AWS authorizes on the resource's tags (see
    /// [`Kind::tag_conditioned`]).
    const UNCONDITIONED: [ResourceType; 3] = [
        ResourceType::S3Bucket,
        ResourceType::AutoscalingLaunchConfiguration,
        ResourceType::EcsTaskDefinition,
    ];

    /// The tag-conditioned actions are deleting actions of the type's own row; every deleting
    /// action of a row is conditioned except those of [`UNCONDITIONED`] types.
    #[test]
    fn tag_conditioned_actions_are_the_rows_deletes_but_a_few() {
        for t in ResourceType::VARIANTS {
            let row = iam_actions(*t);
            let deletes: Vec<&str> = row
                .iter()
                .copied()
                .filter(|a| changes_something(a))
                .collect();
            let conditioned = iam_tag_conditioned(*t);
            assert!(
                conditioned.iter().all(|a| deletes.contains(a)),
                "{t}: {conditioned:?} not among its deletes {deletes:?}"
            );
            if UNCONDITIONED.contains(t) {
                assert!(conditioned.is_empty(), "{t}");
            } else {
                // Authorized on the instance profile and the group only, whatever row they
                // are in.
                let unconditioned = [
                    "iam:RemoveRoleFromInstanceProfile",
                    "iam:RemoveUserFromGroup",
                ];
                let deletes: Vec<&str> = deletes
                    .into_iter()
                    .filter(|a| !unconditioned.contains(a))
                    .collect();
                assert_eq!(conditioned, deletes, "{t}");
            }
        }
    }

    #[test]
    fn names_inside_arns() {
        let arn = |s: &str| Arn::parse(s).expect("valid");
        let logs = arn("arn:aws:logs:us-east-1:1:log-group:/aws/lambda/f");
        assert_eq!(logs::group_name(&logs).ok(), Some("/aws/lambda/f"));
        let logs_star = arn("arn:aws:logs:us-east-1:1:log-group:/a/b:*");
        assert_eq!(logs::group_name(&logs_star).ok(), Some("/a/b"));
        let f = arn("arn:aws:lambda:us-east-1:1:function:f");
        assert_eq!(lambda::function_name(&f).ok(), Some("f"));
        let version = arn("arn:aws:lambda:us-east-1:1:function:f:3");
        assert!(matches!(
            lambda::function_name(&version),
            Err(DeleteError::Unsupported(_))
        ));
        let repo = arn("arn:aws:ecr:us-east-1:1:repository/team/app");
        assert_eq!(ecr::repository_name(&repo).ok(), Some("team/app"));
        let db = arn("arn:aws:rds:us-east-1:1:db:db-1");
        assert_eq!(rds::name(&db, "db").ok(), Some("db-1"));
        let automated = arn("arn:aws:rds:us-east-1:1:snapshot:rds:db-1-2024-01-01-00-00");
        assert!(matches!(
            rds::name(&automated, "snapshot"),
            Err(DeleteError::Refused(_))
        ));
        let role = arn("arn:aws:iam::1:role/ci/deploy");
        assert_eq!(
            iam_entities::entity_name(&role, "role").ok(),
            Some("deploy")
        );
        let linked =
            arn("arn:aws:iam::1:role/aws-service-role/rds.amazonaws.com/AWSServiceRoleForRDS");
        assert!(matches!(
            iam_entities::entity_name(&linked, "role"),
            Err(DeleteError::Refused(_))
        ));
        for org in [
            "arn:aws:iam::1:role/OrganizationAccountAccessRole",
            "arn:aws:iam::1:role/organizationaccountaccessrole",
            "arn:aws:iam::1:role/AWSControlTowerExecution",
            "arn:aws:iam::1:role/stacksets-exec-0a1b",
        ] {
            assert!(
                matches!(
                    iam_entities::entity_name(&arn(org), "role"),
                    Err(DeleteError::Refused(_))
                ),
                "{org}"
            );
        }
        let policy = arn("arn:aws:iam::1:policy/OrganizationAccountAccessRole");
        assert!(iam_entities::entity_name(&policy, "policy").is_ok());
        let t = arn("arn:aws:dynamodb:us-east-1:1:table/t1");
        assert_eq!(dynamodb::table_name(&t).ok(), Some("t1"));
        let stream = arn("arn:aws:dynamodb:us-east-1:1:table/t1/stream/2024");
        assert!(matches!(
            dynamodb::table_name(&stream),
            Err(DeleteError::Unsupported(_))
        ));
        let vol = arn("arn:aws-cn:ec2:cn-north-1:1:volume/vol-1");
        assert_eq!(
            sibling(&vol, "ec2", "instance/i-1").as_str(),
            "arn:aws-cn:ec2:cn-north-1:1:instance/i-1"
        );
        let classic = arn("arn:aws:elasticloadbalancing:us-east-1:1:loadbalancer/web");
        assert!(matches!(
            elbv2::check_v2(&classic),
            Err(DeleteError::Unsupported(_))
        ));
        let nlb = arn("arn:aws:elasticloadbalancing:us-east-1:1:loadbalancer/net/n/1f");
        assert!(elbv2::check_v2(&nlb).is_ok());
        let service = arn("arn:aws:ecs:us-east-1:1:service/c1/s1");
        assert_eq!(ecs::service_names(&service).ok(), Some(("c1", "s1")));
        let short = arn("arn:aws:ecs:us-east-1:1:service/s1");
        assert!(matches!(
            ecs::service_names(&short),
            Err(DeleteError::Unsupported(_))
        ));
        let ng = arn("arn:aws:eks:us-east-1:1:nodegroup/k1/ng1/0ac5");
        assert_eq!(eks::nodegroup_names(&ng).ok(), Some(("k1", "ng1")));
        let k = arn("arn:aws:eks:us-east-1:1:cluster/k1");
        assert_eq!(eks::cluster_name(&k).ok(), Some("k1"));
        let stack = arn("arn:aws:cloudformation:us-east-1:1:stack/st/0f2a");
        assert!(cloudformation::check_stack(&stack).is_ok());
        let stackset = arn("arn:aws:cloudformation:us-east-1:1:stackset/ss:0f2a");
        assert!(cloudformation::check_stack(&stackset).is_err());
    }
}
