//! ECS clusters, services and task definitions.
//!
//! A service is a controller of tasks: deleting it with `force` scales it to nothing and
//! deletes it in one call, which is how its tasks are reaped. A cluster waits for its active
//! services. A task definition is deregistered (AWS's only way to retire a revision; an
//! `INACTIVE` revision is gone for ephemera).

use aws_sdk_ecs::types::{ClusterField, ServiceField, TaskDefinitionField, TaskDefinitionStatus};

use super::*;

const NO_CLUSTER: &[&str] = &["ClusterNotFoundException"];
const NO_SERVICE: &[&str] = &[
    "ClusterNotFoundException",
    "ServiceNotFoundException",
    "ServiceNotActiveException",
];
const CLUSTER_IN_USE: &[&str] = &[
    "ClusterContainsContainerInstancesException",
    "ClusterContainsServicesException",
    "ClusterContainsTasksException",
    "UpdateInProgressException",
];

/// The IAM actions of the calls below, sorted: DescribeClusters, ListServices; DeleteCluster.
pub(super) const CLUSTER_ACTIONS: &[&str] = &[
    "ecs:DeleteCluster",
    "ecs:DescribeClusters",
    "ecs:ListServices",
];

/// The IAM actions of the calls below, sorted: DescribeServices; DeleteService.
pub(super) const SERVICE_ACTIONS: &[&str] = &["ecs:DeleteService", "ecs:DescribeServices"];

/// The IAM actions of the calls below, sorted: DescribeTaskDefinition;
/// DeregisterTaskDefinition.
pub(super) const TASK_DEFINITION_ACTIONS: &[&str] =
    &["ecs:DeregisterTaskDefinition", "ecs:DescribeTaskDefinition"];

fn client(sdk: &SdkConfig) -> aws_sdk_ecs::Client {
    aws_sdk_ecs::Client::new(sdk)
}

fn ecs_tags(tags: &[aws_sdk_ecs::types::Tag]) -> Tags {
    Tags::from_pairs(
        tags.iter()
            .filter_map(|t| Some((t.key()?, t.value().unwrap_or_default()))),
    )
}

/// `service/CLUSTER/NAME`: the cluster and service names of a service's ARN in the long
/// format. The old short format (`service/NAME`) does not say its cluster and is refused.
pub(super) fn service_names(arn: &Arn) -> Result<(&str, &str), DeleteError> {
    let parts: Vec<&str> = arn.resource().split('/').collect();
    match parts[..] {
        ["service", cluster, name] if !cluster.is_empty() && !name.is_empty() => {
            Ok((cluster, name))
        }
        _ => Err(DeleteError::Unsupported(format!(
            "ecs:{} (a service ARN in the short format names no cluster)",
            arn.resource()
        ))),
    }
}

/// The cluster's tags, `None` when it is gone (missing, or `INACTIVE`: a deleted cluster is
/// still described for a while).
async fn cluster_tags(ecs: &aws_sdk_ecs::Client, arn: &Arn) -> Result<Option<Tags>, DeleteError> {
    let out = ecs
        .describe_clusters()
        .clusters(arn.as_str())
        .include(ClusterField::Tags)
        .send()
        .await
        .map_err(fail("DescribeClusters"))
        .map_err(|f| f.into_error(&[]))?;
    Ok(out
        .clusters()
        .iter()
        .find(|c| c.cluster_arn() == Some(arn.as_str()) && c.status() != Some("INACTIVE"))
        .map(|c| ecs_tags(c.tags())))
}

/// The ARNs of the cluster's services (ListServices lists the active and draining ones).
async fn cluster_services(ecs: &aws_sdk_ecs::Client, arn: &Arn) -> Result<Vec<Arn>, DeleteError> {
    let mut services = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let out = match ecs
            .list_services()
            .cluster(arn.as_str())
            .set_next_token(token.take())
            .send()
            .await
            .map_err(fail("ListServices"))
        {
            Ok(out) => out,
            // Gone between the two calls: nothing in it.
            Err(f) if f.is(NO_CLUSTER) => return Ok(Vec::new()),
            Err(f) => return Err(f.into_error(&[])),
        };
        services.extend(out.service_arns().iter().filter_map(|a| Arn::parse(a).ok()));
        match out.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_owned()),
            _ => return Ok(services),
        }
    }
}

pub(super) async fn inspect_cluster(sdk: &SdkConfig, arn: &Arn) -> Result<Inspection, DeleteError> {
    let ecs = client(sdk);
    let Some(tags) = cluster_tags(&ecs, arn).await? else {
        return Ok(Inspection::Gone);
    };
    let depends_on = cluster_services(&ecs, arn).await?;
    Ok(Inspection::Live { tags, depends_on })
}

pub(super) async fn delete_cluster(sdk: &SdkConfig, arn: &Arn) -> Result<Deleted, DeleteError> {
    let ecs = client(sdk);
    // DeleteCluster of an INACTIVE cluster succeeds again: looked up first.
    if cluster_tags(&ecs, arn).await?.is_none() {
        return Ok(Deleted::AlreadyGone);
    }
    let r = ecs
        .delete_cluster()
        .cluster(arn.as_str())
        .send()
        .await
        .map_err(fail("DeleteCluster"));
    settle(r, NO_CLUSTER, CLUSTER_IN_USE)
}

/// The service's tags, `None` when it is gone (missing, or `INACTIVE`; a `DRAINING` service
/// is being deleted, so gone too).
async fn service_tags(ecs: &aws_sdk_ecs::Client, arn: &Arn) -> Result<Option<Tags>, DeleteError> {
    let (cluster, _) = service_names(arn)?;
    match ecs
        .describe_services()
        .cluster(cluster)
        .services(arn.as_str())
        .include(ServiceField::Tags)
        .send()
        .await
        .map_err(fail("DescribeServices"))
    {
        Ok(out) => Ok(out
            .services()
            .iter()
            .find(|s| s.service_arn() == Some(arn.as_str()) && s.status() == Some("ACTIVE"))
            .map(|s| ecs_tags(s.tags()))),
        Err(f) if f.is(NO_CLUSTER) => Ok(None),
        Err(f) => Err(f.into_error(&[])),
    }
}

pub(super) async fn inspect_service(sdk: &SdkConfig, arn: &Arn) -> Result<Inspection, DeleteError> {
    Ok(match service_tags(&client(sdk), arn).await? {
        Some(tags) => live(tags),
        None => Inspection::Gone,
    })
}

pub(super) async fn delete_service(sdk: &SdkConfig, arn: &Arn) -> Result<Deleted, DeleteError> {
    let (cluster, _) = service_names(arn)?;
    let ecs = client(sdk);
    // A draining service is being deleted already: looked up first.
    if service_tags(&ecs, arn).await?.is_none() {
        return Ok(Deleted::AlreadyGone);
    }
    let r = ecs
        .delete_service()
        .cluster(cluster)
        .service(arn.as_str())
        .force(true)
        .send()
        .await
        .map_err(fail("DeleteService"));
    settle(r, NO_SERVICE, &[])
}

/// The task definition's tags, `None` when it is gone (never registered, deleted, or
/// deregistered: `INACTIVE`).
async fn task_definition_tags(
    ecs: &aws_sdk_ecs::Client,
    arn: &Arn,
) -> Result<Option<Tags>, DeleteError> {
    match ecs
        .describe_task_definition()
        .task_definition(arn.as_str())
        .include(TaskDefinitionField::Tags)
        .send()
        .await
        .map_err(fail("DescribeTaskDefinition"))
    {
        Ok(out) => Ok(match out.task_definition().and_then(|t| t.status()) {
            Some(TaskDefinitionStatus::Active) | None => Some(ecs_tags(out.tags())),
            Some(_) => None,
        }),
        // A revision that does not exist answers a plain ClientException.
        Err(f) if f.is(&["ClientException"]) && unknown_revision(&f) => Ok(None),
        Err(f) => Err(f.into_error(&[])),
    }
}

/// Whether a ClientException says the task definition does not exist.
fn unknown_revision(f: &Failure) -> bool {
    ["Unable to describe task definition", "Revision is missing"]
        .iter()
        .any(|m| f.message.contains(m))
}

pub(super) async fn inspect_task_definition(
    sdk: &SdkConfig,
    arn: &Arn,
) -> Result<Inspection, DeleteError> {
    Ok(match task_definition_tags(&client(sdk), arn).await? {
        Some(tags) => live(tags),
        None => Inspection::Gone,
    })
}

pub(super) async fn delete_task_definition(
    sdk: &SdkConfig,
    arn: &Arn,
) -> Result<Deleted, DeleteError> {
    let ecs = client(sdk);
    // Deregistering an INACTIVE revision succeeds again: looked up first.
    if task_definition_tags(&ecs, arn).await?.is_none() {
        return Ok(Deleted::AlreadyGone);
    }
    let r = ecs
        .deregister_task_definition()
        .task_definition(arn.as_str())
        .send()
        .await
        .map_err(fail("DeregisterTaskDefinition"));
    match r {
        Err(f) if f.is(&["ClientException"]) && unknown_revision(&f) => Ok(Deleted::AlreadyGone),
        r => settle(r, &[], &[]),
    }
}

/// The types of this file, whole: how each is inspected and deleted, where it goes in the
/// deletion order, and the IAM actions of its calls (see [`Kind`]).
pub(super) const KINDS: &[Kind] = &[
    Kind {
        ty: ResourceType::EcsCluster,
        example: "arn:aws:ecs:us-east-1:123456789012:cluster/c",
        rank: REST,
        inspect: |sdk, arn| Box::pin(inspect_cluster(sdk, arn)),
        delete: |sdk, arn, _| Box::pin(delete_cluster(sdk, arn)),
        actions: CLUSTER_ACTIONS,
        tag_conditioned: &["ecs:DeleteCluster"],
    },
    Kind {
        ty: ResourceType::EcsService,
        example: "arn:aws:ecs:us-east-1:123456789012:service/c/s",
        rank: 1,
        inspect: |sdk, arn| Box::pin(inspect_service(sdk, arn)),
        delete: |sdk, arn, _| Box::pin(delete_service(sdk, arn)),
        actions: SERVICE_ACTIONS,
        tag_conditioned: &["ecs:DeleteService"],
    },
    Kind {
        ty: ResourceType::EcsTaskDefinition,
        example: "arn:aws:ecs:us-east-1:123456789012:task-definition/web:3",
        rank: REST,
        inspect: |sdk, arn| Box::pin(inspect_task_definition(sdk, arn)),
        delete: |sdk, arn, _| Box::pin(delete_task_definition(sdk, arn)),
        actions: TASK_DEFINITION_ACTIONS,
        // DeregisterTaskDefinition supports no resource-level permissions (Resource "*"), so
        // no condition on the revision's tags.
        tag_conditioned: &[],
    },
];
