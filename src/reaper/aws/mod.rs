//! Per-type AWS deleters: [`inspect`] takes a fresh look at one resource right before it is
//! deleted (is it still there, what tags does it carry now, what must go first), [`delete`]
//! deletes it.
//!
//! Architecture Invariant: the only place that issues mutating AWS calls, and every call is
//! idempotent: deleting what is already gone answers [`Deleted::AlreadyGone`], never an error.
//! A deleter deletes exactly the resource its ARN names (an S3 bucket's objects are part of the
//! bucket); it never deletes, detaches or disassociates a dependency — those are reported in
//! [`Inspection::Live`]'s `depends_on` for the caller to order, and a deletion they block fails
//! with [`DeleteError::InUse`]. Detaching an internet gateway from its VPC and removing a route
//! table's associations are part of deleting the gateway or table (the attachments have no ARN
//! of their own); the VPC and subnets are never touched. What AWS made and ephemera never
//! deletes on its own (default VPC and subnets, main route tables, default network ACLs) is
//! refused, [`DeleteError::Refused`], by inspect and delete alike. Controllers are deleted with
//! what they control, by AWS, as their own deletion: an Auto Scaling group's instances, an EKS
//! node group's Auto Scaling group, an ECS service's tasks, a CloudFormation stack's members
//! (the only deleter that waits, for the stack's final status). No call retries beyond the
//! SDK's retry policy. SDK types do not leave this module.

use std::collections::HashMap;

use aws_config::{Region, SdkConfig};
use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_ec2::types::{Filter, ImageState, InstanceStateName, VolumeState};

use crate::model::{Arn, ResourceType, Tags};

mod autoscaling;
mod cloudformation;
mod dynamodb;
mod ec2;
mod ecs;
mod eks;
mod elbv2;
mod lambda;
mod logs;
mod s3;
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
    /// subnet, a main route table, a default network ACL (they go with their VPC, or never).
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
    fn progress(&self, removed: u64) -> impl std::future::Future<Output = ()> + Send;
    /// Whether the work may go on, given the resource's tags as they are now; the reason to
    /// stop otherwise.
    fn still_doomed(&self, tags: &Tags) -> Result<(), String>;
}

/// Batches that never stop and record nothing.
#[derive(Debug)]
pub struct Unwatched;

impl Batches for Unwatched {
    async fn progress(&self, _removed: u64) {}
    fn still_doomed(&self, _tags: &Tags) -> Result<(), String> {
        Ok(())
    }
}

/// Looks at the resource `arn` names, through the service that owns it, with `sdk` (the config
/// for the resource's account and region).
pub async fn inspect(sdk: &SdkConfig, arn: &Arn) -> Result<Inspection, DeleteError> {
    use ResourceType::*;
    let id = arn.resource_id();
    // Exhaustive: a type added to `ResourceType` does not compile until it can be inspected.
    match deletable(arn)? {
        Ec2Instance => ec2::inspect_instance(&ec2::client(sdk), id).await,
        Ec2Volume => ec2::inspect_volume(&ec2::client(sdk), arn, id).await,
        Ec2Snapshot => ec2::inspect_snapshot(&ec2::client(sdk), arn, id).await,
        Ec2Image => ec2::inspect_image(&ec2::client(sdk), id).await,
        Ec2SecurityGroup => ec2::inspect_security_group(&ec2::client(sdk), arn, id).await,
        Ec2NetworkInterface => ec2::inspect_network_interface(&ec2::client(sdk), arn, id).await,
        Ec2ElasticIp => ec2::inspect_address(&ec2::client(sdk), arn, id).await,
        Ec2KeyPair => ec2::inspect_key_pair(&ec2::client(sdk), id).await,
        Ec2LaunchTemplate => ec2::inspect_launch_template(&ec2::client(sdk), id).await,
        Ec2Vpc => vpc::inspect_vpc(&ec2::client(sdk), arn, id).await,
        Ec2Subnet => vpc::inspect_subnet(&ec2::client(sdk), arn, id).await,
        Ec2RouteTable => vpc::inspect_route_table(&ec2::client(sdk), id).await,
        Ec2InternetGateway => vpc::inspect_internet_gateway(&ec2::client(sdk), arn, id).await,
        Ec2NatGateway => vpc::inspect_nat_gateway(&ec2::client(sdk), id).await,
        Ec2VpcEndpoint => vpc::inspect_vpc_endpoint(&ec2::client(sdk), id).await,
        Ec2EgressOnlyInternetGateway => {
            vpc::inspect_egress_only_gateway(&ec2::client(sdk), id).await
        }
        Ec2NetworkAcl => vpc::inspect_network_acl(&ec2::client(sdk), arn, id).await,
        Ec2DhcpOptions => vpc::inspect_dhcp_options(&ec2::client(sdk), arn, id).await,
        Ec2VpcPeeringConnection => vpc::inspect_peering(&ec2::client(sdk), id).await,
        S3Bucket => s3::inspect(sdk, id).await,
        SqsQueue => sqs::inspect(sdk, arn).await,
        SnsTopic => sns::inspect(sdk, arn).await,
        DynamodbTable => dynamodb::inspect(sdk, arn).await,
        LambdaFunction => lambda::inspect(sdk, arn).await,
        LogsLogGroup => logs::inspect(sdk, arn).await,
        AutoscalingGroup => autoscaling::inspect_group(sdk, arn).await,
        AutoscalingLaunchConfiguration => autoscaling::inspect_launch_configuration(sdk, arn).await,
        ElbLoadBalancer => elbv2::inspect_load_balancer(sdk, arn).await,
        ElbTargetGroup => elbv2::inspect_target_group(sdk, arn).await,
        EcsCluster => ecs::inspect_cluster(sdk, arn).await,
        EcsService => ecs::inspect_service(sdk, arn).await,
        EcsTaskDefinition => ecs::inspect_task_definition(sdk, arn).await,
        EksCluster => eks::inspect_cluster(sdk, arn).await,
        EksNodegroup => eks::inspect_nodegroup(sdk, arn).await,
        CloudformationStack => cloudformation::inspect_stack(sdk, arn).await,
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
pub async fn delete_watched<B: Batches>(
    sdk: &SdkConfig,
    arn: &Arn,
    watch: &B,
) -> Result<Deleted, DeleteError> {
    use ResourceType::*;
    let id = arn.resource_id();
    // Exhaustive: a type added to `ResourceType` does not compile until it can be deleted.
    match deletable(arn)? {
        Ec2Instance => ec2::terminate_instance(&ec2::client(sdk), id).await,
        Ec2Volume => ec2::delete_volume(&ec2::client(sdk), id).await,
        Ec2Snapshot => ec2::delete_snapshot(&ec2::client(sdk), id).await,
        Ec2Image => ec2::deregister_image(&ec2::client(sdk), id).await,
        Ec2SecurityGroup => ec2::delete_security_group(&ec2::client(sdk), id).await,
        Ec2NetworkInterface => ec2::delete_network_interface(&ec2::client(sdk), id).await,
        Ec2ElasticIp => ec2::release_address(&ec2::client(sdk), id).await,
        Ec2KeyPair => ec2::delete_key_pair(&ec2::client(sdk), id).await,
        Ec2LaunchTemplate => ec2::delete_launch_template(&ec2::client(sdk), id).await,
        Ec2Vpc => vpc::delete_vpc(&ec2::client(sdk), id).await,
        Ec2Subnet => vpc::delete_subnet(&ec2::client(sdk), id).await,
        Ec2RouteTable => vpc::delete_route_table(&ec2::client(sdk), id).await,
        Ec2InternetGateway => vpc::delete_internet_gateway(&ec2::client(sdk), id).await,
        Ec2NatGateway => vpc::delete_nat_gateway(&ec2::client(sdk), id).await,
        Ec2VpcEndpoint => vpc::delete_vpc_endpoint(&ec2::client(sdk), id).await,
        Ec2EgressOnlyInternetGateway => {
            vpc::delete_egress_only_gateway(&ec2::client(sdk), id).await
        }
        Ec2NetworkAcl => vpc::delete_network_acl(&ec2::client(sdk), id).await,
        Ec2DhcpOptions => vpc::delete_dhcp_options(&ec2::client(sdk), id).await,
        Ec2VpcPeeringConnection => vpc::delete_peering(&ec2::client(sdk), id).await,
        S3Bucket => s3::delete(sdk, id, watch).await,
        SqsQueue => sqs::delete(sdk, arn).await,
        SnsTopic => sns::delete(sdk, arn).await,
        DynamodbTable => dynamodb::delete(sdk, arn).await,
        LambdaFunction => lambda::delete(sdk, arn).await,
        LogsLogGroup => logs::delete(sdk, arn).await,
        AutoscalingGroup => autoscaling::delete_group(sdk, arn).await,
        AutoscalingLaunchConfiguration => autoscaling::delete_launch_configuration(sdk, arn).await,
        ElbLoadBalancer => elbv2::delete_load_balancer(sdk, arn).await,
        ElbTargetGroup => elbv2::delete_target_group(sdk, arn).await,
        EcsCluster => ecs::delete_cluster(sdk, arn).await,
        EcsService => ecs::delete_service(sdk, arn).await,
        EcsTaskDefinition => ecs::delete_task_definition(sdk, arn).await,
        EksCluster => eks::delete_cluster(sdk, arn).await,
        EksNodegroup => eks::delete_nodegroup(sdk, arn).await,
        CloudformationStack => cloudformation::delete_stack(sdk, arn).await,
    }
}

/// The IAM actions of the calls [`inspect`] and [`delete`] make for `t`, as IAM names them,
/// sorted: each table sits next to its calls in the service's file. [`super::iam`] hands them
/// to the printed policy.
pub fn iam_actions(t: ResourceType) -> &'static [&'static str] {
    use ResourceType::*;
    // Exhaustive: a type added to `ResourceType` does not compile until its calls have actions.
    match t {
        Ec2Instance => ec2::INSTANCE_ACTIONS,
        Ec2Volume => ec2::VOLUME_ACTIONS,
        Ec2Snapshot => ec2::SNAPSHOT_ACTIONS,
        Ec2Image => ec2::IMAGE_ACTIONS,
        Ec2SecurityGroup => ec2::SECURITY_GROUP_ACTIONS,
        Ec2NetworkInterface => ec2::NETWORK_INTERFACE_ACTIONS,
        Ec2ElasticIp => ec2::ADDRESS_ACTIONS,
        Ec2KeyPair => ec2::KEY_PAIR_ACTIONS,
        Ec2LaunchTemplate => ec2::LAUNCH_TEMPLATE_ACTIONS,
        Ec2Vpc => vpc::VPC_ACTIONS,
        Ec2Subnet => vpc::SUBNET_ACTIONS,
        Ec2RouteTable => vpc::ROUTE_TABLE_ACTIONS,
        Ec2InternetGateway => vpc::INTERNET_GATEWAY_ACTIONS,
        Ec2NatGateway => vpc::NAT_GATEWAY_ACTIONS,
        Ec2VpcEndpoint => vpc::VPC_ENDPOINT_ACTIONS,
        Ec2EgressOnlyInternetGateway => vpc::EGRESS_ONLY_GATEWAY_ACTIONS,
        Ec2NetworkAcl => vpc::NETWORK_ACL_ACTIONS,
        Ec2DhcpOptions => vpc::DHCP_OPTIONS_ACTIONS,
        Ec2VpcPeeringConnection => vpc::PEERING_ACTIONS,
        S3Bucket => s3::ACTIONS,
        SqsQueue => sqs::ACTIONS,
        SnsTopic => sns::ACTIONS,
        DynamodbTable => dynamodb::ACTIONS,
        LambdaFunction => lambda::ACTIONS,
        LogsLogGroup => logs::ACTIONS,
        AutoscalingGroup => autoscaling::GROUP_ACTIONS,
        AutoscalingLaunchConfiguration => autoscaling::LAUNCH_CONFIGURATION_ACTIONS,
        ElbLoadBalancer => elbv2::LOAD_BALANCER_ACTIONS,
        ElbTargetGroup => elbv2::TARGET_GROUP_ACTIONS,
        EcsCluster => ecs::CLUSTER_ACTIONS,
        EcsService => ecs::SERVICE_ACTIONS,
        EcsTaskDefinition => ecs::TASK_DEFINITION_ACTIONS,
        EksCluster => eks::CLUSTER_ACTIONS,
        EksNodegroup => eks::NODEGROUP_ACTIONS,
        CloudformationStack => cloudformation::ACTIONS,
    }
}

/// The deleting actions of `t`'s row that AWS authorizes on the resource's own tags
/// (`aws:ResourceTag/${TagKey}`, per the Service Authorization Reference), so the printed
/// policy can allow them only on resources that carry the identity tags. The rest of the row
/// (reads, and deletes whose service cannot condition on the resource's tags) stays
/// unconditioned.
pub fn iam_tag_conditioned(t: ResourceType) -> &'static [&'static str] {
    use ResourceType::*;
    // Exhaustive: a type added to `ResourceType` does not compile until this is decided for it.
    match t {
        Ec2Instance => &["ec2:TerminateInstances"],
        Ec2Volume => &["ec2:DeleteVolume"],
        Ec2Snapshot => &["ec2:DeleteSnapshot"],
        Ec2Image => &["ec2:DeregisterImage"],
        Ec2SecurityGroup => &["ec2:DeleteSecurityGroup"],
        Ec2NetworkInterface => &["ec2:DeleteNetworkInterface"],
        Ec2ElasticIp => &["ec2:ReleaseAddress"],
        Ec2KeyPair => &["ec2:DeleteKeyPair"],
        Ec2LaunchTemplate => &["ec2:DeleteLaunchTemplate"],
        Ec2Vpc => &["ec2:DeleteVpc"],
        Ec2Subnet => &["ec2:DeleteSubnet"],
        // Disassociating and detaching are part of deleting these two, and authorized on the
        // same tags (the route table's, the gateway's).
        Ec2RouteTable => &["ec2:DeleteRouteTable", "ec2:DisassociateRouteTable"],
        Ec2InternetGateway => &["ec2:DeleteInternetGateway", "ec2:DetachInternetGateway"],
        Ec2NatGateway => &["ec2:DeleteNatGateway"],
        Ec2VpcEndpoint => &["ec2:DeleteVpcEndpoints"],
        Ec2EgressOnlyInternetGateway => &["ec2:DeleteEgressOnlyInternetGateway"],
        Ec2NetworkAcl => &["ec2:DeleteNetworkAcl"],
        Ec2DhcpOptions => &["ec2:DeleteDhcpOptions"],
        Ec2VpcPeeringConnection => &["ec2:DeleteVpcPeeringConnection"],
        // DeleteBucket sees a bucket's tags only on buckets with S3's ABAC switched on (off by
        // default, and not something a lessee's Terraform does); DeleteObject and
        // DeleteObjectVersion see the object's tags, never the bucket's. Conditioned, they
        // would refuse every bucket we must delete.
        S3Bucket => &[],
        SqsQueue => &["sqs:DeleteQueue"],
        SnsTopic => &["sns:DeleteTopic"],
        DynamodbTable => &["dynamodb:DeleteTable"],
        LambdaFunction => &["lambda:DeleteFunction"],
        LogsLogGroup => &["logs:DeleteLogGroup"],
        AutoscalingGroup => &["autoscaling:DeleteAutoScalingGroup"],
        // A launch configuration carries no tags: IAM has none to condition on.
        AutoscalingLaunchConfiguration => &[],
        ElbLoadBalancer => &["elasticloadbalancing:DeleteLoadBalancer"],
        ElbTargetGroup => &["elasticloadbalancing:DeleteTargetGroup"],
        EcsCluster => &["ecs:DeleteCluster"],
        EcsService => &["ecs:DeleteService"],
        // DeregisterTaskDefinition supports no resource-level permissions (Resource "*"), so
        // no condition on the revision's tags.
        EcsTaskDefinition => &[],
        EksCluster => &["eks:DeleteCluster"],
        EksNodegroup => &["eks:DeleteNodegroup"],
        // The stack's own tags; the member deletions CloudFormation makes on our behalf are
        // authorized (and conditioned) per member.
        CloudformationStack => &["cloudformation:DeleteStack"],
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    use strum::VariantArray;

    /// An ARN of each deletable type as AWS spells it.
    fn arn_of_each_type() -> Vec<(ResourceType, Arn)> {
        use ResourceType::*;
        [
            (
                Ec2Instance,
                "arn:aws:ec2:us-east-1:123456789012:instance/i-0abc",
            ),
            (Ec2Volume, "arn:aws:ec2:us-east-1:123456789012:volume/vol-1"),
            (
                Ec2Snapshot,
                "arn:aws:ec2:us-east-1:123456789012:snapshot/snap-1",
            ),
            (Ec2Image, "arn:aws:ec2:us-east-1:123456789012:image/ami-1"),
            (
                Ec2SecurityGroup,
                "arn:aws:ec2:us-east-1:123456789012:security-group/sg-1",
            ),
            (
                Ec2NetworkInterface,
                "arn:aws:ec2:us-east-1:123456789012:network-interface/eni-1",
            ),
            (
                Ec2ElasticIp,
                "arn:aws:ec2:us-east-1:123456789012:elastic-ip/eipalloc-1",
            ),
            (
                Ec2KeyPair,
                "arn:aws:ec2:us-east-1:123456789012:key-pair/key-1",
            ),
            (
                Ec2LaunchTemplate,
                "arn:aws:ec2:us-east-1:123456789012:launch-template/lt-1",
            ),
            (Ec2Vpc, "arn:aws:ec2:us-east-1:123456789012:vpc/vpc-1"),
            (
                Ec2Subnet,
                "arn:aws:ec2:us-east-1:123456789012:subnet/subnet-1",
            ),
            (
                Ec2RouteTable,
                "arn:aws:ec2:us-east-1:123456789012:route-table/rtb-1",
            ),
            (
                Ec2InternetGateway,
                "arn:aws:ec2:us-east-1:123456789012:internet-gateway/igw-1",
            ),
            (
                Ec2NatGateway,
                "arn:aws:ec2:us-east-1:123456789012:natgateway/nat-1",
            ),
            (
                Ec2VpcEndpoint,
                "arn:aws:ec2:us-east-1:123456789012:vpc-endpoint/vpce-1",
            ),
            (
                Ec2EgressOnlyInternetGateway,
                "arn:aws:ec2:us-east-1:123456789012:egress-only-internet-gateway/eigw-1",
            ),
            (
                Ec2NetworkAcl,
                "arn:aws:ec2:us-east-1:123456789012:network-acl/acl-1",
            ),
            (
                Ec2DhcpOptions,
                "arn:aws:ec2:us-east-1:123456789012:dhcp-options/dopt-1",
            ),
            (
                Ec2VpcPeeringConnection,
                "arn:aws:ec2:us-east-1:123456789012:vpc-peering-connection/pcx-1",
            ),
            (S3Bucket, "arn:aws:s3:::bucket-1"),
            (SqsQueue, "arn:aws:sqs:us-east-1:123456789012:q"),
            (SnsTopic, "arn:aws:sns:us-east-1:123456789012:t"),
            (
                DynamodbTable,
                "arn:aws:dynamodb:us-east-1:123456789012:table/t",
            ),
            (
                LambdaFunction,
                "arn:aws:lambda:us-east-1:123456789012:function:f",
            ),
            (
                LogsLogGroup,
                "arn:aws:logs:us-east-1:123456789012:log-group:/aws/x",
            ),
            (
                AutoscalingGroup,
                "arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:\
                 0f2a7c1e-1111-2222-3333-444455556666:autoScalingGroupName/asg-1",
            ),
            (
                AutoscalingLaunchConfiguration,
                "arn:aws:autoscaling:us-east-1:123456789012:launchConfiguration:\
                 0f2a7c1e-1111-2222-3333-444455556666:launchConfigurationName/lc-1",
            ),
            (
                ElbLoadBalancer,
                "arn:aws:elasticloadbalancing:us-east-1:123456789012:\
                 loadbalancer/app/web/50dc6c495c0c9188",
            ),
            (
                ElbTargetGroup,
                "arn:aws:elasticloadbalancing:us-east-1:123456789012:\
                 targetgroup/web/73e2d6bc24d8a067",
            ),
            (EcsCluster, "arn:aws:ecs:us-east-1:123456789012:cluster/c"),
            (EcsService, "arn:aws:ecs:us-east-1:123456789012:service/c/s"),
            (
                EcsTaskDefinition,
                "arn:aws:ecs:us-east-1:123456789012:task-definition/web:3",
            ),
            (EksCluster, "arn:aws:eks:us-east-1:123456789012:cluster/k"),
            (
                EksNodegroup,
                "arn:aws:eks:us-east-1:123456789012:nodegroup/k/ng/0ac5e6f0-1111-2222",
            ),
            (
                CloudformationStack,
                "arn:aws:cloudformation:us-east-1:123456789012:stack/st/0f2a7c1e-1111",
            ),
        ]
        .into_iter()
        .map(|(t, a)| (t, Arn::parse(a).expect("valid")))
        .collect()
    }

    /// Each type's name is what its ARNs yield, and such an ARN reaches its deleter; one row
    /// per type, so a new type fails here until it has one. Another type is refused by name.
    /// (That each type has a deleter, IAM actions and a deletion rank at all is the
    /// compiler's: those are exhaustive matches.)
    #[test]
    fn every_type_is_what_its_arns_yield_and_reaches_its_deleter() {
        let rows = arn_of_each_type();
        let types: Vec<ResourceType> = rows.iter().map(|(t, _)| *t).collect();
        assert_eq!(types, ResourceType::VARIANTS, "one row per type, in order");
        for (t, arn) in rows {
            assert_eq!(arn.resource_type(), t.as_str(), "{arn}");
            assert_eq!(deletable(&arn).ok(), Some(t), "{arn}");
        }
        let tgw =
            Arn::parse("arn:aws:ec2:us-east-1:123456789012:transit-gateway/tgw-1").expect("valid");
        assert!(
            matches!(deletable(&tgw), Err(DeleteError::Unsupported(t)) if t == "ec2:transit-gateway")
        );
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
                has(&["Delete", "Terminate", "Deregister", "Release"]),
                "{t}: no deleting action"
            );
        }
    }

    /// The types none of whose deletes AWS authorizes on the resource's tags (see
    /// [`iam_tag_conditioned`]).
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
                .filter(|a| {
                    let name = a.split(':').nth(1).unwrap_or_default();
                    // Detaching and disassociating are part of deleting an internet
                    // gateway and a route table.
                    [
                        "Delete",
                        "Terminate",
                        "Deregister",
                        "Release",
                        "Detach",
                        "Disassociate",
                    ]
                    .iter()
                    .any(|v| name.starts_with(v))
                })
                .collect();
            let conditioned = iam_tag_conditioned(*t);
            assert!(
                conditioned.iter().all(|a| deletes.contains(a)),
                "{t}: {conditioned:?} not among its deletes {deletes:?}"
            );
            if UNCONDITIONED.contains(t) {
                assert!(conditioned.is_empty(), "{t}");
            } else {
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
        let t = arn("arn:aws:dynamodb:us-east-1:1:table/t1");
        assert_eq!(dynamodb::table_name(&t).ok(), Some("t1"));
        let stream = arn("arn:aws:dynamodb:us-east-1:1:table/t1/stream/2024");
        assert!(matches!(
            dynamodb::table_name(&stream),
            Err(DeleteError::Unsupported(_))
        ));
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
        let vol = arn("arn:aws-cn:ec2:cn-north-1:1:volume/vol-1");
        assert_eq!(
            sibling(&vol, "ec2", "instance/i-1").as_str(),
            "arn:aws-cn:ec2:cn-north-1:1:instance/i-1"
        );
    }
}
