//! ECR repositories. A repository's images are part of it: it is deleted with `force`, images
//! and all, as a bucket is with its objects.

use super::*;

const NO_REPOSITORY: &[&str] = &["RepositoryNotFoundException"];

/// The IAM actions of the calls below, sorted: DescribeRepositories, ListTagsForResource;
/// DeleteRepository.
pub(super) const REPOSITORY_ACTIONS: &[&str] = &[
    "ecr:DeleteRepository",
    "ecr:DescribeRepositories",
    "ecr:ListTagsForResource",
];

/// `repository/NAME`, where NAME may hold `/` (`team/app`): the whole rest, not the last
/// segment [`Arn::resource_id`] gives.
pub(super) fn repository_name(arn: &Arn) -> Result<&str, DeleteError> {
    match arn.resource().strip_prefix("repository/") {
        Some(name) if !name.is_empty() => Ok(name),
        _ => Err(DeleteError::Unsupported(format!("ecr:{}", arn.resource()))),
    }
}

pub(super) async fn inspect_repository(
    sdk: &SdkConfig,
    arn: &Arn,
) -> Result<Inspection, DeleteError> {
    let name = repository_name(arn)?;
    let ecr = aws_sdk_ecr::Client::new(sdk);
    match ecr
        .describe_repositories()
        .registry_id(arn.account())
        .repository_names(name)
        .send()
        .await
        .map_err(fail("DescribeRepositories"))
    {
        Ok(out) if out.repositories().is_empty() => return Ok(Inspection::Gone),
        Ok(_) => {}
        Err(f) if f.is(NO_REPOSITORY) => return Ok(Inspection::Gone),
        Err(f) => return Err(f.into_error(&[])),
    }
    match ecr
        .list_tags_for_resource()
        .resource_arn(arn.as_str())
        .send()
        .await
        .map_err(fail("ListTagsForResource"))
    {
        Ok(out) => Ok(live(Tags::from_pairs(
            out.tags().iter().map(|t| (t.key(), t.value())),
        ))),
        Err(f) if f.is(NO_REPOSITORY) => Ok(Inspection::Gone),
        Err(f) => Err(f.into_error(&[])),
    }
}

pub(super) async fn delete_repository(sdk: &SdkConfig, arn: &Arn) -> Result<Deleted, DeleteError> {
    let name = repository_name(arn)?;
    let r = aws_sdk_ecr::Client::new(sdk)
        .delete_repository()
        .registry_id(arn.account())
        .repository_name(name)
        .force(true)
        .send()
        .await
        .map_err(fail("DeleteRepository"));
    settle(r, NO_REPOSITORY, &[])
}

/// The types of this file, whole: how each is inspected and deleted, where it goes in the
/// deletion order, and the IAM actions of its calls (see [`Kind`]).
pub(super) const KINDS: &[Kind] = &[Kind {
    ty: ResourceType::EcrRepository,
    example: "arn:aws:ecr:us-east-1:123456789012:repository/team/app",
    rank: REST,
    inspect: |sdk, arn| Box::pin(inspect_repository(sdk, arn)),
    delete: |sdk, arn, _| Box::pin(delete_repository(sdk, arn)),
    actions: REPOSITORY_ACTIONS,
    tag_conditioned: &["ecr:DeleteRepository"],
}];
