//! The deleters of controllers and their kin against moto, one moto per service: each type is
//! inspected (live, with the tags it was created with and what must go first), deleted once,
//! found gone, deleted again as already gone, and its identically-typed twin survives.
//! Dependencies are checked where they exist: a target group waits for the load balancer that
//! forwards to it, an ECS cluster for its service, an EKS cluster for its node group; a stack's
//! deletion removes its member; an Auto Scaling group's deletion terminates its instance.
//! (`deleters.rs` runs every type, these included, through its generic life cycle too.)
//!
//! moto 5.2.5 cannot play these faithfully:
//! - DeleteStack completes at once (`DELETE_COMPLETE` on the next read; AWS takes minutes), and
//!   no stack deletion ever fails: `DELETE_FAILED` is played by canned DescribeStacks and
//!   DeleteStack answers from the fault proxy.
//! - DeleteCluster (EKS) of a cluster with a node group is refused (`ResourceInUseException`,
//!   as AWS does): checked. Deleting an ECS cluster with an active service or a target group a
//!   listener forwards to is not exercised: the order rests on `depends_on`, which is checked.
//! - A deleted EKS node group or cluster is gone at once (AWS: `DELETING` for minutes).
//! - ListServices keeps listing a deleted (`INACTIVE`) service (AWS lists active and draining
//!   ones only), so an ECS cluster's `depends_on` still names it; pinned.
//! - A target group keeps a deleted load balancer's ARN in `LoadBalancerArns` (AWS drops it
//!   with the listener), so its `depends_on` still names the load balancer; pinned.
//! - GetResources lists no Auto Scaling group, launch configuration or EKS resource (the sweep
//!   finds them).

use aws_config::SdkConfig;
use ephemera::model::{Arn, Tags};
use ephemera::reaper::aws::{self, DeleteError, Deleted, Inspection};

use crate::deleters::{clients, sdk};
use crate::support::moto::{DEFAULT_ACCOUNT, Moto};
use crate::support::proxy::{Fault, FaultProxy};

const US: &str = "us-east-1";
const AMI: &str = "ami-12c6146b";

fn arn(s: &str) -> Arn {
    Arn::parse(s).unwrap_or_else(|e| panic!("{e}"))
}

fn lease(name: &str) -> Tags {
    Tags::from_pairs([("ephemera:lease-id", name), ("ephemera:project", "web")])
}

fn pairs(name: &str) -> [(&'static str, String); 2] {
    [
        ("ephemera:lease-id", name.to_owned()),
        ("ephemera:project", "web".to_owned()),
    ]
}

fn live(tags: Tags, depends_on: &[&Arn]) -> Inspection {
    Inspection::Live {
        tags,
        depends_on: depends_on.iter().map(|a| (*a).clone()).collect(),
    }
}

/// The deleters' config: the daemon's own client builder over `moto`.
async fn deleters_sdk(moto: &Moto) -> SdkConfig {
    sdk(&clients(moto), DEFAULT_ACCOUNT, US).await
}

/// The whole life of one deletion: `doomed` is `first`, deleted, gone, already gone; `twin`
/// is `twin_after` after.
async fn life(
    sdk: &SdkConfig,
    doomed: &Arn,
    first: Inspection,
    twin: &Arn,
    twin_after: Inspection,
) {
    let ok = |what: &str, r: Result<Inspection, DeleteError>| {
        r.unwrap_or_else(|e| panic!("{what} {doomed}: {e}"))
    };
    assert_eq!(
        ok("inspect", aws::inspect(sdk, doomed).await),
        first,
        "{doomed}"
    );
    assert_eq!(
        aws::delete(sdk, doomed).await.expect("first delete"),
        Deleted::Deleted,
        "{doomed}"
    );
    assert_eq!(
        ok("inspect", aws::inspect(sdk, doomed).await),
        Inspection::Gone,
        "{doomed}"
    );
    assert_eq!(
        aws::delete(sdk, doomed).await.expect("second delete"),
        Deleted::AlreadyGone,
        "{doomed}"
    );
    assert_eq!(
        ok("inspect twin", aws::inspect(sdk, twin).await),
        twin_after,
        "{twin}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_auto_scaling_group_goes_with_its_instances_and_a_launch_configuration_untagged() {
    let moto = Moto::start().await;
    let direct = moto.sdk_config(US).await;
    let asg = aws_sdk_autoscaling::Client::new(&direct);
    let ec2 = aws_sdk_ec2::Client::new(&direct);
    let sdk = deleters_sdk(&moto).await;
    let mut groups = Vec::new();
    for name in ["doomed", "twin"] {
        asg.create_launch_configuration()
            .launch_configuration_name(format!("{name}-lc"))
            .image_id(AMI)
            .instance_type("t2.micro")
            .send()
            .await
            .expect("CreateLaunchConfiguration");
        let tags = pairs(name).map(|(k, v)| {
            aws_sdk_autoscaling::types::Tag::builder()
                .resource_id(name)
                .resource_type("auto-scaling-group")
                .key(k)
                .value(v)
                .propagate_at_launch(false)
                .build()
        });
        asg.create_auto_scaling_group()
            .auto_scaling_group_name(name)
            .launch_configuration_name(format!("{name}-lc"))
            .min_size(1)
            .max_size(1)
            .desired_capacity(1)
            .availability_zones(format!("{US}a"))
            .set_tags(Some(tags.to_vec()))
            .send()
            .await
            .expect("CreateAutoScalingGroup");
        let out = asg
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(name)
            .send()
            .await
            .expect("DescribeAutoScalingGroups");
        let group = &out.auto_scaling_groups()[0];
        let instance = group.instances()[0]
            .instance_id()
            .expect("an instance")
            .to_owned();
        let configs = asg
            .describe_launch_configurations()
            .launch_configuration_names(format!("{name}-lc"))
            .send()
            .await
            .expect("DescribeLaunchConfigurations");
        groups.push((
            arn(group.auto_scaling_group_arn().expect("ARN")),
            instance,
            arn(configs.launch_configurations()[0]
                .launch_configuration_arn()
                .expect("ARN")),
        ));
    }
    let [
        (doomed, doomed_instance, doomed_lc),
        (twin, twin_instance, twin_lc),
    ] = &groups[..]
    else {
        unreachable!("two groups")
    };
    let state = |id: String| {
        let ec2 = ec2.clone();
        async move {
            ec2.describe_instances()
                .instance_ids(id)
                .send()
                .await
                .expect("DescribeInstances")
                .reservations()[0]
                .instances()[0]
                .state()
                .and_then(|s| s.name())
                .map(|n| n.as_str().to_owned())
                .unwrap_or_default()
        }
    };

    life(
        &sdk,
        doomed,
        live(lease("doomed"), &[]),
        twin,
        live(lease("twin"), &[]),
    )
    .await;
    // ForceDelete took the group's instance with it; the twin's runs on.
    assert!(
        ["shutting-down", "terminated"].contains(&state(doomed_instance.clone()).await.as_str()),
        "the doomed group's instance survived"
    );
    assert_eq!(state(twin_instance.clone()).await, "running");
    // A group of the same name made again is another group: its ARN is not the doomed one's.
    assert_eq!(
        aws::inspect(
            &sdk,
            &arn(&doomed.as_str().replace(
                doomed.as_str().split(':').nth(6).expect("the group's id"),
                "00000000-0000-0000-0000-000000000000"
            ))
        )
        .await
        .expect("inspect"),
        Inspection::Gone
    );

    // A launch configuration has no tags: live with none.
    let untagged = || live(Tags::default(), &[]);
    life(&sdk, doomed_lc, untagged(), twin_lc, untagged()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_target_group_waits_for_the_load_balancer_that_forwards_to_it() {
    let moto = Moto::start().await;
    let direct = moto.sdk_config(US).await;
    let ec2 = aws_sdk_ec2::Client::new(&direct);
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&direct);
    let sdk = deleters_sdk(&moto).await;
    let vpc = ec2
        .create_vpc()
        .cidr_block("10.0.0.0/16")
        .send()
        .await
        .expect("CreateVpc")
        .vpc()
        .and_then(|v| v.vpc_id())
        .expect("vpc id")
        .to_owned();
    let mut subnets = Vec::new();
    for (n, zone) in [(1, "a"), (2, "b")] {
        let s = ec2
            .create_subnet()
            .vpc_id(&vpc)
            .cidr_block(format!("10.0.{n}.0/24"))
            .availability_zone(format!("{US}{zone}"))
            .send()
            .await
            .expect("CreateSubnet");
        subnets.push(
            s.subnet()
                .and_then(|s| s.subnet_id())
                .expect("id")
                .to_owned(),
        );
    }
    let tags = |name: &str| {
        pairs(name).map(|(k, v)| {
            aws_sdk_elasticloadbalancingv2::types::Tag::builder()
                .key(k)
                .value(v)
                .build()
        })
    };
    let mut made = Vec::new();
    for name in ["doomed", "twin"] {
        let lb = elb
            .create_load_balancer()
            .name(format!("{name}-lb"))
            .set_subnets(Some(subnets.clone()))
            .set_tags(Some(tags(name).to_vec()))
            .send()
            .await
            .expect("CreateLoadBalancer");
        let lb = arn(lb.load_balancers()[0].load_balancer_arn().expect("ARN"));
        let tg = elb
            .create_target_group()
            .name(format!("{name}-tg"))
            .protocol(aws_sdk_elasticloadbalancingv2::types::ProtocolEnum::Http)
            .port(80)
            .vpc_id(&vpc)
            .set_tags(Some(tags(name).to_vec()))
            .send()
            .await
            .expect("CreateTargetGroup");
        let tg = arn(tg.target_groups()[0].target_group_arn().expect("ARN"));
        made.push((lb, tg));
    }
    let [(doomed_lb, doomed_tg), (twin_lb, twin_tg)] = &made[..] else {
        unreachable!("two of each")
    };
    elb.create_listener()
        .load_balancer_arn(doomed_lb.as_str())
        .protocol(aws_sdk_elasticloadbalancingv2::types::ProtocolEnum::Http)
        .port(80)
        .default_actions(
            aws_sdk_elasticloadbalancingv2::types::Action::builder()
                .r#type(aws_sdk_elasticloadbalancingv2::types::ActionTypeEnum::Forward)
                .target_group_arn(doomed_tg.as_str())
                .build(),
        )
        .send()
        .await
        .expect("CreateListener");

    // The target group waits for the load balancer whose listener forwards to it.
    assert_eq!(
        aws::inspect(&sdk, doomed_tg).await.expect("inspect"),
        live(lease("doomed"), &[doomed_lb])
    );
    life(
        &sdk,
        doomed_lb,
        live(lease("doomed"), &[]),
        twin_lb,
        live(lease("twin"), &[]),
    )
    .await;
    // The listener went with its load balancer, so AWS lists no load balancer for the group
    // any more; moto keeps the deleted one's ARN (pinned here: the reaper would hold the group
    // back on moto, never on AWS).
    let stale = live(lease("doomed"), &[doomed_lb]);
    life(&sdk, doomed_tg, stale, twin_tg, live(lease("twin"), &[])).await;
    // A classic load balancer's ARN shares the type name but has no deleter.
    let classic = arn(&format!(
        "arn:aws:elasticloadbalancing:{US}:{DEFAULT_ACCOUNT}:loadbalancer/classic-1"
    ));
    assert!(matches!(
        aws::delete(&sdk, &classic).await,
        Err(DeleteError::Unsupported(_))
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ecs_cluster_waits_for_its_service_and_a_revision_is_deregistered() {
    let moto = Moto::start().await;
    let direct = moto.sdk_config(US).await;
    let ecs = aws_sdk_ecs::Client::new(&direct);
    let sdk = deleters_sdk(&moto).await;
    let tags = |name: &str| {
        pairs(name).map(|(k, v)| aws_sdk_ecs::types::Tag::builder().key(k).value(v).build())
    };
    let mut made = Vec::new();
    for name in ["doomed", "twin"] {
        let cluster = ecs
            .create_cluster()
            .cluster_name(name)
            .set_tags(Some(tags(name).to_vec()))
            .send()
            .await
            .expect("CreateCluster");
        let cluster = arn(cluster
            .cluster()
            .and_then(|c| c.cluster_arn())
            .expect("ARN"));
        let task = ecs
            .register_task_definition()
            .family(name)
            .container_definitions(
                aws_sdk_ecs::types::ContainerDefinition::builder()
                    .name("app")
                    .image("busybox")
                    .memory(128)
                    .build(),
            )
            .set_tags(Some(tags(name).to_vec()))
            .send()
            .await
            .expect("RegisterTaskDefinition");
        let task = arn(task
            .task_definition()
            .and_then(|t| t.task_definition_arn())
            .expect("ARN"));
        let service = ecs
            .create_service()
            .cluster(cluster.as_str())
            .service_name(format!("{name}-service"))
            .task_definition(task.as_str())
            .desired_count(1)
            .set_tags(Some(tags(name).to_vec()))
            .send()
            .await
            .expect("CreateService");
        let service = arn(service
            .service()
            .and_then(|s| s.service_arn())
            .expect("ARN"));
        made.push((cluster, service, task));
    }
    let [
        (cluster, service, task),
        (twin_cluster, twin_service, twin_task),
    ] = &made[..]
    else {
        unreachable!("two of each")
    };
    assert_eq!(
        service.resource(),
        "service/doomed/doomed-service",
        "the long ARN format"
    );

    // The cluster waits for its service.
    assert_eq!(
        aws::inspect(&sdk, cluster).await.expect("inspect"),
        live(lease("doomed"), &[service])
    );
    life(
        &sdk,
        service,
        live(lease("doomed"), &[]),
        twin_service,
        live(lease("twin"), &[]),
    )
    .await;
    // AWS's ListServices no longer lists a deleted (INACTIVE) service; moto's does, so the
    // cluster still names it (pinned: the reaper would hold the cluster back on moto only).
    let stale = live(lease("doomed"), &[service]);
    let twin_after = live(lease("twin"), &[twin_service]);
    life(&sdk, cluster, stale, twin_cluster, twin_after).await;
    life(
        &sdk,
        task,
        live(lease("doomed"), &[]),
        twin_task,
        live(lease("twin"), &[]),
    )
    .await;
    // The short ARN format names no cluster: refused, not guessed.
    let short = arn(&format!(
        "arn:aws:ecs:{US}:{DEFAULT_ACCOUNT}:service/doomed-service"
    ));
    assert!(matches!(
        aws::inspect(&sdk, &short).await,
        Err(DeleteError::Unsupported(_))
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_eks_cluster_waits_for_its_node_group() {
    let moto = Moto::start().await;
    let direct = moto.sdk_config(US).await;
    let eks = aws_sdk_eks::Client::new(&direct);
    let sdk = deleters_sdk(&moto).await;
    let role = format!("arn:aws:iam::{DEFAULT_ACCOUNT}:role/eks");
    let subnets = ["subnet-1", "subnet-2"].map(str::to_owned).to_vec();
    let mut made = Vec::new();
    for name in ["doomed", "twin"] {
        let tags = pairs(name)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        let cluster = eks
            .create_cluster()
            .name(name)
            .role_arn(&role)
            .resources_vpc_config(
                aws_sdk_eks::types::VpcConfigRequest::builder()
                    .set_subnet_ids(Some(subnets.clone()))
                    .build(),
            )
            .set_tags(Some(tags))
            .send()
            .await
            .expect("CreateCluster");
        let cluster = arn(cluster.cluster().and_then(|c| c.arn()).expect("ARN"));
        let tags = pairs(name)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        let group = eks
            .create_nodegroup()
            .cluster_name(name)
            .nodegroup_name(format!("{name}-ng"))
            .node_role(&role)
            .set_subnets(Some(subnets.clone()))
            .set_tags(Some(tags))
            .send()
            .await
            .expect("CreateNodegroup");
        let group = arn(group
            .nodegroup()
            .and_then(|g| g.nodegroup_arn())
            .expect("ARN"));
        made.push((cluster, group));
    }
    let [(cluster, group), (twin_cluster, twin_group)] = &made[..] else {
        unreachable!("two of each")
    };

    assert_eq!(
        aws::inspect(&sdk, cluster).await.expect("inspect"),
        live(lease("doomed"), &[group])
    );
    // EKS refuses to delete a cluster that has a node group.
    assert!(
        matches!(
            aws::delete(&sdk, cluster).await,
            Err(DeleteError::InUse { .. })
        ),
        "a cluster with a node group was deleted"
    );
    life(
        &sdk,
        group,
        live(lease("doomed"), &[]),
        twin_group,
        live(lease("twin"), &[]),
    )
    .await;
    let twin_after = live(lease("twin"), &[twin_group]);
    life(
        &sdk,
        cluster,
        live(lease("doomed"), &[]),
        twin_cluster,
        twin_after,
    )
    .await;
}

/// One stack of one SQS queue, tagged as `name`; its ARN and the queue's URL.
async fn stack_of_one_queue(
    cfn: &aws_sdk_cloudformation::Client,
    sqs: &aws_sdk_sqs::Client,
    name: &str,
) -> (Arn, String) {
    let template = r#"{"Resources": {"Member": {"Type": "AWS::SQS::Queue",
        "Properties": {"QueueName": "QUEUE"}}}}"#
        .replace("QUEUE", &format!("{name}-member"));
    let tags = pairs(name).map(|(k, v)| {
        aws_sdk_cloudformation::types::Tag::builder()
            .key(k)
            .value(v)
            .build()
    });
    let out = cfn
        .create_stack()
        .stack_name(name)
        .template_body(template)
        .set_tags(Some(tags.to_vec()))
        .send()
        .await
        .expect("CreateStack");
    let url = sqs
        .get_queue_url()
        .queue_name(format!("{name}-member"))
        .send()
        .await
        .expect("the stack made its queue")
        .queue_url()
        .expect("url")
        .to_owned();
    (arn(out.stack_id().expect("stack id")), url)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stack_goes_with_its_member_and_a_failed_deletion_says_why() {
    let moto = Moto::start().await;
    let direct = moto.sdk_config(US).await;
    let cfn = aws_sdk_cloudformation::Client::new(&direct);
    let sqs = aws_sdk_sqs::Client::new(&direct);
    let sdk = deleters_sdk(&moto).await;
    let (doomed, doomed_queue) = stack_of_one_queue(&cfn, &sqs, "doomed").await;
    let (twin, twin_queue) = stack_of_one_queue(&cfn, &sqs, "twin").await;

    life(
        &sdk,
        &doomed,
        live(lease("doomed"), &[]),
        &twin,
        live(lease("twin"), &[]),
    )
    .await;
    let attributes = |url: String| sqs.get_queue_attributes().queue_url(url).send();
    assert!(
        attributes(doomed_queue).await.is_err(),
        "the stack's queue survived it"
    );
    assert!(
        attributes(twin_queue).await.is_ok(),
        "the twin's queue went"
    );

    // DELETE_FAILED (moto never fails a deletion): canned answers from the proxy.
    let proxy = FaultProxy::start(&moto.endpoint()).await;
    proxy.set_fault("DescribeStacks", Fault::Respond(200, DELETE_FAILED), None);
    proxy.set_fault("DeleteStack", Fault::Respond(200, DELETE_STACK), None);
    let failing = arn(FAILING_STACK);
    let canned = proxy.sdk_config(US, 1).await;
    assert_eq!(
        aws::inspect(&canned, &failing).await.expect("inspect"),
        live(Tags::from_pairs([("ephemera:project", "web")]), &[]),
        "a stack whose deletion failed is still there"
    );
    let err = aws::delete(&canned, &failing)
        .await
        .expect_err("a failed deletion is an error");
    assert!(
        matches!(&err, DeleteError::Aws { message, .. }
            if message.contains("The following resource(s) failed to delete: [Bucket]")),
        "{err}"
    );
    assert_eq!(proxy.count("DeleteStack"), 1);
}

const FAILING_STACK: &str = "arn:aws:cloudformation:us-east-1:123456789012:stack/failing/0f2a7c1e-0000-4000-8000-000000000001";

/// What DescribeStacks answers for a stack whose deletion failed (the shape AWS documents).
const DELETE_FAILED: &str = r#"<DescribeStacksResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/">
  <DescribeStacksResult>
    <Stacks>
      <member>
        <StackId>arn:aws:cloudformation:us-east-1:123456789012:stack/failing/0f2a7c1e-0000-4000-8000-000000000001</StackId>
        <StackName>failing</StackName>
        <CreationTime>2026-01-01T00:00:00Z</CreationTime>
        <StackStatus>DELETE_FAILED</StackStatus>
        <StackStatusReason>The following resource(s) failed to delete: [Bucket]. </StackStatusReason>
        <Tags>
          <member><Key>ephemera:project</Key><Value>web</Value></member>
        </Tags>
      </member>
    </Stacks>
  </DescribeStacksResult>
  <ResponseMetadata><RequestId>canned-1</RequestId></ResponseMetadata>
</DescribeStacksResponse>"#;

const DELETE_STACK: &str = r#"<DeleteStackResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/">
  <ResponseMetadata><RequestId>canned-2</RequestId></ResponseMetadata>
</DeleteStackResponse>"#;
