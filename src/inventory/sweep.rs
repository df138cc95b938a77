//! The sweep of one (account, region): each deletable type listed by its service's own call,
//! to find what the Resource Groups Tagging API never lists — resources that were never
//! tagged.
//!
//! What a list call says of a resource's tags is kept (EC2's describe calls, Secrets Manager's
//! ListSecrets, RDS's describe calls but DescribeDBSubnetGroups, Auto Scaling groups, EKS node
//! groups, CloudFormation stacks, and IAM's roles, users and access keys (their user's)
//! return them); where it says nothing (S3, SQS, SNS, DynamoDB, Lambda, CloudWatch Logs, ECR,
//! KMS, IAM policies and OIDC providers, ElastiCache, load balancers and target
//! groups, ECS, EKS clusters) a resource the
//! tagging walk did not return is taken to have none. The reaper reads its tags again before
//! any delete, so a resource the tagging API was merely slow to list is never deleted as
//! untagged.
//!
//! What is skipped on purpose, because it goes with something else: the default security group
//! of each VPC (deleted with its VPC, never on its own), the default VPC's own parts and each
//! VPC's main route table and default network ACL (see `sweep/vpc.rs`), volumes attached to an instance and
//! network interfaces in use (they go with what uses them; once detached they are swept), and
//! instances already ending. Snapshots and images are those the account owns (`self`).

use aws_config::SdkConfig;
use aws_sdk_resourcegroupstagging::error::ProvideErrorMetadata;
use chrono::{DateTime, Utc};

use super::ec2::{filter, tags as ec2_tags, time};
use super::{BoxError, RateLimiter, pages};
use crate::metrics::Metrics;
use crate::model::{Arn, ResourceType, Tags};

mod autoscaling;
mod cloudformation;
mod ecr;
mod ecs;
mod eks;
mod elasticache;
mod elbv2;
mod iam;
mod kms;
mod rds;
mod secretsmanager;
mod vpc;

/// One resource a list call returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub arn: Arn,
    /// Its tags as the list call gave them; empty when the call gives none.
    pub tags: Tags,
    /// Launch or create time, where the call gives one.
    pub created_at: Option<DateTime<Utc>>,
    /// EC2 instances: their state.
    pub state: Option<String>,
}

/// A list call that failed: the type's knowledge in this (account, region) is incomplete.
#[derive(Debug, thiserror::Error)]
#[error("{operation}")]
pub struct SweepError {
    pub operation: &'static str,
    #[source]
    pub source: BoxError,
}

/// The sweep of one type.
#[derive(Debug)]
pub struct TypeSweep {
    pub resource_type: ResourceType,
    pub result: Result<Vec<Found>, SweepError>,
}

impl TypeSweep {
    /// Each of `types` failed alike, for `reason` (a failure shared by every type: no client
    /// for the account, one search for all).
    pub fn all_failed(
        types: &[ResourceType],
        operation: &'static str,
        reason: &str,
    ) -> Vec<TypeSweep> {
        types
            .iter()
            .map(|t| TypeSweep {
                resource_type: *t,
                result: Err(SweepError {
                    operation,
                    source: reason.into(),
                }),
            })
            .collect()
    }
}

/// The AWS partition of a region.
pub fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// The (account, region) a sweep lists, and where its calls are counted.
struct Ctx<'a> {
    account: &'a str,
    region: &'a str,
    metrics: &'a Metrics,
}

impl Ctx<'_> {
    /// A resource of this (account, region), its ARN in the tagging API's form; `None` for an
    /// empty id or name.
    fn found(
        &self,
        service: &str,
        resource: &str,
        tags: Tags,
        created_at: Option<DateTime<Utc>>,
    ) -> Option<Found> {
        let (p, r, a) = (partition(self.region), self.region, self.account);
        let arn = Arn::parse(&format!("arn:{p}:{service}:{r}:{a}:{resource}")).ok()?;
        Some(Found {
            arn,
            tags,
            created_at,
            state: None,
        })
    }
}

/// Every page of one list call, counted and spaced at `limiter`; a failure names the call.
async fn list_pages<P, E, Fut>(
    ctx: &Ctx<'_>,
    limiter: &RateLimiter,
    call: (&str, &'static str),
    request: impl FnMut(Option<String>) -> Fut,
    take: impl FnMut(P) -> Option<String>,
) -> Result<(), SweepError>
where
    Fut: std::future::Future<Output = Result<P, E>>,
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    pages(ctx.metrics, Some(limiter), call, request, take)
        .await
        .map_err(|e| SweepError {
            operation: call.1,
            source: Box::new(e),
        })
}

/// Sweeps `types` in one (account, region) through `conf`: services side by side, each
/// service's types one after another at `per_second` calls per second.
pub async fn sweep(
    conf: &SdkConfig,
    account: &str,
    region: &str,
    types: &[ResourceType],
    per_second: u32,
    metrics: &Metrics,
) -> Vec<TypeSweep> {
    let ctx = Ctx {
        account,
        region,
        metrics,
    };
    let of = |service: &str| -> Vec<ResourceType> {
        types
            .iter()
            .copied()
            .filter(|t| t.as_str().split(':').next() == Some(service))
            .collect()
    };
    let ec2 = aws_sdk_ec2::Client::new(conf);
    let s3 = aws_sdk_s3::Client::new(conf);
    let sqs = aws_sdk_sqs::Client::new(conf);
    let sns = aws_sdk_sns::Client::new(conf);
    let dynamodb = aws_sdk_dynamodb::Client::new(conf);
    let lambda = aws_sdk_lambda::Client::new(conf);
    let logs = aws_sdk_cloudwatchlogs::Client::new(conf);
    let ecr = aws_sdk_ecr::Client::new(conf);
    let secretsmanager = aws_sdk_secretsmanager::Client::new(conf);
    let kms = aws_sdk_kms::Client::new(conf);
    let rds = aws_sdk_rds::Client::new(conf);
    let iam = aws_sdk_iam::Client::new(conf);
    let elasticache = aws_sdk_elasticache::Client::new(conf);
    let autoscaling = aws_sdk_autoscaling::Client::new(conf);
    let elbv2 = aws_sdk_elasticloadbalancingv2::Client::new(conf);
    let ecs = aws_sdk_ecs::Client::new(conf);
    let eks = aws_sdk_eks::Client::new(conf);
    let cloudformation = aws_sdk_cloudformation::Client::new(conf);
    let clients = Clients {
        ec2: &ec2,
        s3: &s3,
        sqs: &sqs,
        sns: &sns,
        dynamodb: &dynamodb,
        lambda: &lambda,
        logs: &logs,
        ecr: &ecr,
        secretsmanager: &secretsmanager,
        kms: &kms,
        rds: &rds,
        iam: &iam,
        elasticache: &elasticache,
        autoscaling: &autoscaling,
        elbv2: &elbv2,
        ecs: &ecs,
        eks: &eks,
        cloudformation: &cloudformation,
        iam_users: tokio::sync::OnceCell::new(),
    };
    let service = |service: &'static str| {
        let (ctx, clients, types) = (&ctx, &clients, of(service));
        async move {
            // One limiter per service: a slow or throttled service does not hold back the others.
            let limiter = RateLimiter::new(per_second);
            let mut out = Vec::with_capacity(types.len());
            for t in types {
                // Boxed: the match over every type makes a large future, and eighteen services
                // joined inline overflowed a worker thread's stack in debug builds.
                let result = Box::pin(list(ctx, clients, &limiter, t)).await;
                out.push(TypeSweep {
                    resource_type: t,
                    result,
                });
            }
            out
        }
    };
    let (a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p, q, r) = tokio::join!(
        service("ec2"),
        service("s3"),
        service("sqs"),
        service("sns"),
        service("dynamodb"),
        service("lambda"),
        service("logs"),
        service("ecr"),
        service("secretsmanager"),
        service("kms"),
        service("rds"),
        service("iam"),
        service("elasticache"),
        service("autoscaling"),
        service("elasticloadbalancing"),
        service("ecs"),
        service("eks"),
        service("cloudformation"),
    );
    let mut all: Vec<TypeSweep> = [a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p, q, r]
        .into_iter()
        .flatten()
        .collect();
    all.sort_by_key(|s| s.resource_type);
    all
}

struct Clients<'a> {
    ec2: &'a aws_sdk_ec2::Client,
    s3: &'a aws_sdk_s3::Client,
    sqs: &'a aws_sdk_sqs::Client,
    sns: &'a aws_sdk_sns::Client,
    dynamodb: &'a aws_sdk_dynamodb::Client,
    lambda: &'a aws_sdk_lambda::Client,
    logs: &'a aws_sdk_cloudwatchlogs::Client,
    ecr: &'a aws_sdk_ecr::Client,
    secretsmanager: &'a aws_sdk_secretsmanager::Client,
    kms: &'a aws_sdk_kms::Client,
    rds: &'a aws_sdk_rds::Client,
    iam: &'a aws_sdk_iam::Client,
    elasticache: &'a aws_sdk_elasticache::Client,
    autoscaling: &'a aws_sdk_autoscaling::Client,
    elbv2: &'a aws_sdk_elasticloadbalancingv2::Client,
    ecs: &'a aws_sdk_ecs::Client,
    eks: &'a aws_sdk_eks::Client,
    cloudformation: &'a aws_sdk_cloudformation::Client,
    /// IAM's users with their tags, listed once for both `iam:user` and `iam:access-key`.
    iam_users: tokio::sync::OnceCell<Vec<Found>>,
}

/// How each type is listed. Exhaustive: a new deletable type must say how it is swept.
async fn list(
    ctx: &Ctx<'_>,
    c: &Clients<'_>,
    limiter: &RateLimiter,
    t: ResourceType,
) -> Result<Vec<Found>, SweepError> {
    use ResourceType::*;
    match t {
        Ec2Instance => instances(ctx, c.ec2, limiter).await,
        Ec2Volume => volumes(ctx, c.ec2, limiter).await,
        Ec2Snapshot => snapshots(ctx, c.ec2, limiter).await,
        Ec2Image => images(ctx, c.ec2, limiter).await,
        Ec2SecurityGroup => security_groups(ctx, c.ec2, limiter).await,
        Ec2NetworkInterface => network_interfaces(ctx, c.ec2, limiter).await,
        Ec2ElasticIp => addresses(ctx, c.ec2, limiter).await,
        Ec2KeyPair => key_pairs(ctx, c.ec2, limiter).await,
        Ec2LaunchTemplate => launch_templates(ctx, c.ec2, limiter).await,
        Ec2Vpc => vpc::vpcs(ctx, c.ec2, limiter).await,
        Ec2Subnet => vpc::subnets(ctx, c.ec2, limiter).await,
        Ec2RouteTable => vpc::route_tables(ctx, c.ec2, limiter).await,
        Ec2InternetGateway => vpc::internet_gateways(ctx, c.ec2, limiter).await,
        Ec2NatGateway => vpc::nat_gateways(ctx, c.ec2, limiter).await,
        Ec2VpcEndpoint => vpc::vpc_endpoints(ctx, c.ec2, limiter).await,
        Ec2EgressOnlyInternetGateway => vpc::egress_only_gateways(ctx, c.ec2, limiter).await,
        Ec2NetworkAcl => vpc::network_acls(ctx, c.ec2, limiter).await,
        Ec2DhcpOptions => vpc::dhcp_options(ctx, c.ec2, limiter).await,
        Ec2VpcPeeringConnection => vpc::peering_connections(ctx, c.ec2, limiter).await,
        S3Bucket => buckets(ctx, c.s3, limiter).await,
        SqsQueue => queues(ctx, c.sqs, limiter).await,
        SnsTopic => topics(ctx, c.sns, limiter).await,
        DynamodbTable => tables(ctx, c.dynamodb, limiter).await,
        LambdaFunction => functions(ctx, c.lambda, limiter).await,
        LogsLogGroup => log_groups(ctx, c.logs, limiter).await,
        EcrRepository => ecr::repositories(ctx, c.ecr, limiter).await,
        SecretsmanagerSecret => secretsmanager::secrets(ctx, c.secretsmanager, limiter).await,
        KmsKey => kms::keys(ctx, c.kms, limiter).await,
        RdsDb => rds::instances(ctx, c.rds, limiter).await,
        RdsCluster => rds::clusters(ctx, c.rds, limiter).await,
        RdsSnapshot => rds::snapshots(ctx, c.rds, limiter).await,
        RdsClusterSnapshot => rds::cluster_snapshots(ctx, c.rds, limiter).await,
        RdsSubnetGroup => rds::subnet_groups(ctx, c.rds, limiter).await,
        IamRole => iam::roles(ctx, c.iam, limiter).await,
        IamInstanceProfile => iam::instance_profiles(ctx, c.iam, limiter).await,
        IamPolicy => iam::policies(ctx, c.iam, limiter).await,
        IamOidcProvider => iam::oidc_providers(ctx, c.iam, limiter).await,
        IamUser => iam::users(ctx, c, limiter).await,
        IamAccessKey => iam::access_keys(ctx, c, limiter).await,
        ElasticacheCluster => elasticache::clusters(ctx, c.elasticache, limiter).await,
        ElasticacheReplicationGroup => {
            elasticache::replication_groups(ctx, c.elasticache, limiter).await
        }
        ElasticacheSubnetGroup => elasticache::subnet_groups(ctx, c.elasticache, limiter).await,
        AutoscalingGroup => autoscaling::groups(ctx, c.autoscaling, limiter).await,
        AutoscalingLaunchConfiguration => {
            autoscaling::launch_configurations(ctx, c.autoscaling, limiter).await
        }
        ElbLoadBalancer => elbv2::load_balancers(ctx, c.elbv2, limiter).await,
        ElbTargetGroup => elbv2::target_groups(ctx, c.elbv2, limiter).await,
        EcsCluster => ecs::clusters(ctx, c.ecs, limiter).await,
        EcsService => ecs::services(ctx, c.ecs, limiter).await,
        EcsTaskDefinition => ecs::task_definitions(ctx, c.ecs, limiter).await,
        EksCluster => eks::clusters(ctx, c.eks, limiter).await,
        EksNodegroup => eks::nodegroups(ctx, c.eks, limiter).await,
        CloudformationStack => cloudformation::stacks(ctx, c.cloudformation, limiter).await,
    }
}

/// The IAM actions of each type's list call, next to the calls. Exhaustive, like [`list`].
pub fn actions(t: ResourceType) -> &'static [&'static str] {
    use ResourceType::*;
    match t {
        Ec2Instance => &["ec2:DescribeInstances"],
        Ec2Volume => &["ec2:DescribeVolumes"],
        Ec2Snapshot => &["ec2:DescribeSnapshots"],
        Ec2Image => &["ec2:DescribeImages"],
        Ec2SecurityGroup => &["ec2:DescribeSecurityGroups"],
        Ec2NetworkInterface => &["ec2:DescribeNetworkInterfaces"],
        Ec2ElasticIp => &["ec2:DescribeAddresses"],
        Ec2KeyPair => &["ec2:DescribeKeyPairs"],
        Ec2LaunchTemplate => &["ec2:DescribeLaunchTemplates"],
        Ec2Vpc => &["ec2:DescribeVpcs"],
        Ec2Subnet => &["ec2:DescribeSubnets"],
        Ec2RouteTable => &["ec2:DescribeRouteTables"],
        Ec2InternetGateway => &["ec2:DescribeInternetGateways"],
        Ec2NatGateway => &["ec2:DescribeNatGateways"],
        Ec2VpcEndpoint => &["ec2:DescribeVpcEndpoints"],
        Ec2EgressOnlyInternetGateway => &["ec2:DescribeEgressOnlyInternetGateways"],
        Ec2NetworkAcl => &["ec2:DescribeNetworkAcls"],
        // The default VPC's set is skipped: DescribeVpcs finds it.
        Ec2DhcpOptions => &["ec2:DescribeDhcpOptions", "ec2:DescribeVpcs"],
        Ec2VpcPeeringConnection => &["ec2:DescribeVpcPeeringConnections"],
        // ListBuckets is authorised by the action named for it.
        S3Bucket => &["s3:ListAllMyBuckets"],
        SqsQueue => &["sqs:ListQueues"],
        SnsTopic => &["sns:ListTopics"],
        DynamodbTable => &["dynamodb:ListTables"],
        LambdaFunction => &["lambda:ListFunctions"],
        LogsLogGroup => &["logs:DescribeLogGroups"],
        EcrRepository => &["ecr:DescribeRepositories"],
        SecretsmanagerSecret => &["secretsmanager:ListSecrets"],
        // ListKeys names the keys only: each is described to skip AWS-managed ones.
        KmsKey => &["kms:DescribeKey", "kms:ListKeys"],
        RdsDb => &["rds:DescribeDBInstances"],
        RdsCluster => &["rds:DescribeDBClusters"],
        RdsSnapshot => &["rds:DescribeDBSnapshots"],
        RdsClusterSnapshot => &["rds:DescribeDBClusterSnapshots"],
        RdsSubnetGroup => &["rds:DescribeDBSubnetGroups"],
        // Roles and users with their tags, a page of 1,000 at a time.
        IamRole => &["iam:GetAccountAuthorizationDetails"],
        // The tags of a profile the list gave none for.
        IamInstanceProfile => &["iam:ListInstanceProfileTags", "iam:ListInstanceProfiles"],
        IamPolicy => &["iam:ListPolicies"],
        IamOidcProvider => &["iam:ListOpenIDConnectProviders"],
        IamUser => &["iam:GetAccountAuthorizationDetails"],
        // Each user's keys.
        IamAccessKey => &["iam:GetAccountAuthorizationDetails", "iam:ListAccessKeys"],
        ElasticacheCluster => &["elasticache:DescribeCacheClusters"],
        ElasticacheReplicationGroup => &["elasticache:DescribeReplicationGroups"],
        ElasticacheSubnetGroup => &["elasticache:DescribeCacheSubnetGroups"],
        AutoscalingGroup => &["autoscaling:DescribeAutoScalingGroups"],
        AutoscalingLaunchConfiguration => &["autoscaling:DescribeLaunchConfigurations"],
        ElbLoadBalancer => &["elasticloadbalancing:DescribeLoadBalancers"],
        ElbTargetGroup => &["elasticloadbalancing:DescribeTargetGroups"],
        EcsCluster => &["ecs:ListClusters"],
        // Each cluster's services.
        EcsService => &["ecs:ListClusters", "ecs:ListServices"],
        EcsTaskDefinition => &["ecs:ListTaskDefinitions"],
        EksCluster => &["eks:ListClusters"],
        // Each cluster's node groups, described for their ARN.
        EksNodegroup => &[
            "eks:DescribeNodegroup",
            "eks:ListClusters",
            "eks:ListNodegroups",
        ],
        CloudformationStack => &["cloudformation:DescribeStacks"],
    }
}

async fn instances(
    ctx: &Ctx<'_>,
    ec2: &aws_sdk_ec2::Client,
    limiter: &RateLimiter,
) -> Result<Vec<Found>, SweepError> {
    let mut out = Vec::new();
    let live = ["pending", "running", "stopping", "stopped"];
    list_pages(
        ctx,
        limiter,
        ("ec2", "DescribeInstances"),
        |token| {
            ec2.describe_instances()
                .filters(filter("instance-state-name", &live))
                .set_next_token(token)
                .send()
        },
        |page| {
            for i in page.reservations().iter().flat_map(|r| r.instances()) {
                let Some(id) = i.instance_id() else { continue };
                let created = time(i.launch_time());
                if let Some(mut f) = ctx.found(
                    "ec2",
                    &format!("instance/{id}"),
                    ec2_tags(i.tags()),
                    created,
                ) {
                    f.state = i
                        .state()
                        .and_then(|s| s.name())
                        .map(|s| s.as_str().to_owned());
                    out.push(f);
                }
            }
            page.next_token().map(str::to_owned)
        },
    )
    .await?;
    Ok(out)
}

async fn volumes(
    ctx: &Ctx<'_>,
    ec2: &aws_sdk_ec2::Client,
    limiter: &RateLimiter,
) -> Result<Vec<Found>, SweepError> {
    let mut out = Vec::new();
    list_pages(
        ctx,
        limiter,
        ("ec2", "DescribeVolumes"),
        |token| {
            ec2.describe_volumes()
                .filters(filter("status", &["creating", "available", "error"]))
                .set_next_token(token)
                .send()
        },
        |page| {
            for v in page.volumes() {
                if let Some(id) = v.volume_id() {
                    let (tags, created) = (ec2_tags(v.tags()), time(v.create_time()));
                    out.extend(ctx.found("ec2", &format!("volume/{id}"), tags, created));
                }
            }
            page.next_token().map(str::to_owned)
        },
    )
    .await?;
    Ok(out)
}

async fn snapshots(
    ctx: &Ctx<'_>,
    ec2: &aws_sdk_ec2::Client,
    limiter: &RateLimiter,
) -> Result<Vec<Found>, SweepError> {
    let mut out = Vec::new();
    list_pages(
        ctx,
        limiter,
        ("ec2", "DescribeSnapshots"),
        |token| {
            ec2.describe_snapshots()
                .owner_ids("self")
                .set_next_token(token)
                .send()
        },
        |page| {
            for s in page.snapshots() {
                // `self` already asks for these; checked again because an emulator answers with
                // the public snapshots behind its stock images too.
                if let Some(id) = s.snapshot_id()
                    && s.owner_id().is_none_or(|o| o == ctx.account)
                {
                    let (tags, created) = (ec2_tags(s.tags()), time(s.start_time()));
                    out.extend(ctx.found("ec2", &format!("snapshot/{id}"), tags, created));
                }
            }
            page.next_token().map(str::to_owned)
        },
    )
    .await?;
    Ok(out)
}

async fn images(
    ctx: &Ctx<'_>,
    ec2: &aws_sdk_ec2::Client,
    limiter: &RateLimiter,
) -> Result<Vec<Found>, SweepError> {
    let mut out = Vec::new();
    list_pages(
        ctx,
        limiter,
        ("ec2", "DescribeImages"),
        |token| {
            ec2.describe_images()
                .owners("self")
                .set_next_token(token)
                .send()
        },
        |page| {
            for i in page.images() {
                if let Some(id) = i.image_id() {
                    let created = i
                        .creation_date()
                        .and_then(|d| DateTime::parse_from_rfc3339(d).ok())
                        .map(|d| d.with_timezone(&Utc));
                    out.extend(ctx.found(
                        "ec2",
                        &format!("image/{id}"),
                        ec2_tags(i.tags()),
                        created,
                    ));
                }
            }
            page.next_token().map(str::to_owned)
        },
    )
    .await?;
    Ok(out)
}

async fn security_groups(
    ctx: &Ctx<'_>,
    ec2: &aws_sdk_ec2::Client,
    limiter: &RateLimiter,
) -> Result<Vec<Found>, SweepError> {
    let mut out = Vec::new();
    list_pages(
        ctx,
        limiter,
        ("ec2", "DescribeSecurityGroups"),
        |token| ec2.describe_security_groups().set_next_token(token).send(),
        |page| {
            for g in page.security_groups() {
                // Each VPC's default group goes with its VPC and cannot be deleted on its own.
                if let Some(id) = g.group_id()
                    && g.group_name() != Some("default")
                {
                    let arn = format!("security-group/{id}");
                    out.extend(ctx.found("ec2", &arn, ec2_tags(g.tags()), None));
                }
            }
            page.next_token().map(str::to_owned)
        },
    )
    .await?;
    Ok(out)
}

async fn network_interfaces(
    ctx: &Ctx<'_>,
    ec2: &aws_sdk_ec2::Client,
    limiter: &RateLimiter,
) -> Result<Vec<Found>, SweepError> {
    let mut out = Vec::new();
    list_pages(
        ctx,
        limiter,
        ("ec2", "DescribeNetworkInterfaces"),
        |token| {
            ec2.describe_network_interfaces()
                .filters(filter("status", &["available"]))
                .set_next_token(token)
                .send()
        },
        |page| {
            for n in page.network_interfaces() {
                if let Some(id) = n.network_interface_id() {
                    let arn = format!("network-interface/{id}");
                    out.extend(ctx.found("ec2", &arn, ec2_tags(n.tag_set()), None));
                }
            }
            page.next_token().map(str::to_owned)
        },
    )
    .await?;
    Ok(out)
}

/// One call, no pages.
async fn addresses(
    ctx: &Ctx<'_>,
    ec2: &aws_sdk_ec2::Client,
    limiter: &RateLimiter,
) -> Result<Vec<Found>, SweepError> {
    let mut out = Vec::new();
    list_pages(
        ctx,
        limiter,
        ("ec2", "DescribeAddresses"),
        |_| ec2.describe_addresses().send(),
        |page| {
            for a in page.addresses() {
                if let Some(id) = a.allocation_id() {
                    let arn = format!("elastic-ip/{id}");
                    out.extend(ctx.found("ec2", &arn, ec2_tags(a.tags()), None));
                }
            }
            None
        },
    )
    .await?;
    Ok(out)
}

/// One call, no pages.
async fn key_pairs(
    ctx: &Ctx<'_>,
    ec2: &aws_sdk_ec2::Client,
    limiter: &RateLimiter,
) -> Result<Vec<Found>, SweepError> {
    let mut out = Vec::new();
    list_pages(
        ctx,
        limiter,
        ("ec2", "DescribeKeyPairs"),
        |_| ec2.describe_key_pairs().send(),
        |page| {
            for k in page.key_pairs() {
                if let Some(id) = k.key_pair_id() {
                    let (tags, created) = (ec2_tags(k.tags()), time(k.create_time()));
                    out.extend(ctx.found("ec2", &format!("key-pair/{id}"), tags, created));
                }
            }
            None
        },
    )
    .await?;
    Ok(out)
}

async fn launch_templates(
    ctx: &Ctx<'_>,
    ec2: &aws_sdk_ec2::Client,
    limiter: &RateLimiter,
) -> Result<Vec<Found>, SweepError> {
    let mut out = Vec::new();
    list_pages(
        ctx,
        limiter,
        ("ec2", "DescribeLaunchTemplates"),
        // 200 a page (AWS's most): without it moto 5.2.5 answers 15 and no next token.
        |token| {
            ec2.describe_launch_templates()
                .max_results(200)
                .set_next_token(token)
                .send()
        },
        |page| {
            for t in page.launch_templates() {
                if let Some(id) = t.launch_template_id() {
                    let (tags, created) = (ec2_tags(t.tags()), time(t.create_time()));
                    let arn = format!("launch-template/{id}");
                    out.extend(ctx.found("ec2", &arn, tags, created));
                }
            }
            page.next_token().map(str::to_owned)
        },
    )
    .await?;
    Ok(out)
}

/// The buckets located in this walk's region (ListBuckets filtered by region): a bucket is
/// compared with the tagging walk of the one region it lives in, with no walk waiting for
/// another.
async fn buckets(
    ctx: &Ctx<'_>,
    s3: &aws_sdk_s3::Client,
    limiter: &RateLimiter,
) -> Result<Vec<Found>, SweepError> {
    let mut out = Vec::new();
    list_pages(
        ctx,
        limiter,
        ("s3", "ListBuckets"),
        |token| {
            s3.list_buckets()
                .bucket_region(ctx.region)
                .max_buckets(1000)
                .set_continuation_token(token)
                .send()
        },
        |page| {
            for b in page.buckets() {
                let arn = b.name().and_then(|n| {
                    Arn::parse(&format!("arn:{}:s3:::{n}", partition(ctx.region))).ok()
                });
                if let Some(arn) = arn {
                    out.push(Found {
                        arn,
                        tags: Tags::default(),
                        created_at: time(b.creation_date()),
                        state: None,
                    });
                }
            }
            page.continuation_token().map(str::to_owned)
        },
    )
    .await?;
    Ok(out)
}

async fn queues(
    ctx: &Ctx<'_>,
    sqs: &aws_sdk_sqs::Client,
    limiter: &RateLimiter,
) -> Result<Vec<Found>, SweepError> {
    let mut out = Vec::new();
    list_pages(
        ctx,
        limiter,
        ("sqs", "ListQueues"),
        |token| {
            sqs.list_queues()
                .max_results(1000)
                .set_next_token(token)
                .send()
        },
        |page| {
            // https://sqs.REGION.amazonaws.com/ACCOUNT/NAME: the name is the last segment.
            for name in page
                .queue_urls()
                .iter()
                .filter_map(|u| u.rsplit('/').next())
            {
                out.extend(ctx.found("sqs", name, Tags::default(), None));
            }
            page.next_token().map(str::to_owned)
        },
    )
    .await?;
    Ok(out)
}

async fn topics(
    ctx: &Ctx<'_>,
    sns: &aws_sdk_sns::Client,
    limiter: &RateLimiter,
) -> Result<Vec<Found>, SweepError> {
    let mut out = Vec::new();
    list_pages(
        ctx,
        limiter,
        ("sns", "ListTopics"),
        |token| sns.list_topics().set_next_token(token).send(),
        |page| {
            for arn in page
                .topics()
                .iter()
                .filter_map(|t| t.topic_arn().and_then(|a| Arn::parse(a).ok()))
            {
                out.push(Found {
                    arn,
                    tags: Tags::default(),
                    created_at: None,
                    state: None,
                });
            }
            page.next_token().map(str::to_owned)
        },
    )
    .await?;
    Ok(out)
}

async fn tables(
    ctx: &Ctx<'_>,
    dynamodb: &aws_sdk_dynamodb::Client,
    limiter: &RateLimiter,
) -> Result<Vec<Found>, SweepError> {
    let mut out = Vec::new();
    list_pages(
        ctx,
        limiter,
        ("dynamodb", "ListTables"),
        |start| {
            dynamodb
                .list_tables()
                .set_exclusive_start_table_name(start)
                .send()
        },
        |page| {
            for name in page.table_names() {
                let arn = format!("table/{name}");
                out.extend(ctx.found("dynamodb", &arn, Tags::default(), None));
            }
            page.last_evaluated_table_name().map(str::to_owned)
        },
    )
    .await?;
    Ok(out)
}

async fn functions(
    ctx: &Ctx<'_>,
    lambda: &aws_sdk_lambda::Client,
    limiter: &RateLimiter,
) -> Result<Vec<Found>, SweepError> {
    let mut out = Vec::new();
    list_pages(
        ctx,
        limiter,
        ("lambda", "ListFunctions"),
        |marker| lambda.list_functions().set_marker(marker).send(),
        |page| {
            for name in page.functions().iter().filter_map(|f| f.function_name()) {
                let arn = format!("function:{name}");
                out.extend(ctx.found("lambda", &arn, Tags::default(), None));
            }
            page.next_marker().map(str::to_owned)
        },
    )
    .await?;
    Ok(out)
}

async fn log_groups(
    ctx: &Ctx<'_>,
    logs: &aws_sdk_cloudwatchlogs::Client,
    limiter: &RateLimiter,
) -> Result<Vec<Found>, SweepError> {
    let mut out = Vec::new();
    list_pages(
        ctx,
        limiter,
        ("logs", "DescribeLogGroups"),
        |token| logs.describe_log_groups().set_next_token(token).send(),
        |page| {
            for g in page.log_groups() {
                if let Some(name) = g.log_group_name() {
                    // The tagging API's form: no `:*` after the name.
                    let created = g
                        .creation_time()
                        .and_then(DateTime::<Utc>::from_timestamp_millis);
                    let arn = format!("log-group:{name}");
                    out.extend(ctx.found("logs", &arn, Tags::default(), created));
                }
            }
            page.next_token().map(str::to_owned)
        },
    )
    .await?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_and_arns_take_the_tagging_apis_form() {
        assert_eq!(partition("us-east-1"), "aws");
        assert_eq!(partition("cn-north-1"), "aws-cn");
        assert_eq!(partition("us-gov-west-1"), "aws-us-gov");
        let metrics = Metrics::new();
        let ctx = Ctx {
            account: "111111111111",
            region: "eu-west-1",
            metrics: &metrics,
        };
        let arn = |service: &str, resource: &str| {
            ctx.found(service, resource, Tags::default(), None)
                .expect("an ARN")
                .arn
        };
        let log = arn("logs", "log-group:/aws/lambda/x");
        assert_eq!(
            log.as_str(),
            "arn:aws:logs:eu-west-1:111111111111:log-group:/aws/lambda/x"
        );
        assert_eq!(log.resource_type(), "logs:log-group");
        assert!(ctx.found("sqs", "", Tags::default(), None).is_none());
        let q = arn("sqs", "jobs");
        assert_eq!(q.resource_type(), "sqs:queue");
        assert_eq!(arn("ec2", "instance/i-1").resource_type(), "ec2:instance");
    }
}
