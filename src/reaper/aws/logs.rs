//! CloudWatch Logs log groups.

use super::*;

const NO_GROUP: &[&str] = &["ResourceNotFoundException"];

/// `log-group:NAME`, also as `log-group:NAME:*` (DescribeLogGroups' form). Log group
/// names may contain `/`, so `Arn::resource_id` would cut them.
pub(super) fn group_name(arn: &Arn) -> Result<&str, DeleteError> {
    let name = arn.resource().strip_prefix("log-group:");
    match name.map(|n| n.strip_suffix(":*").unwrap_or(n)) {
        Some(n) if !n.is_empty() && !n.contains(':') => Ok(n),
        _ => Err(DeleteError::Unsupported(format!("logs:{}", arn.resource()))),
    }
}

/// The IAM actions of the calls below, sorted: DescribeLogGroups, ListTagsForResource;
/// DeleteLogGroup.
pub(super) const ACTIONS: &[&str] = &[
    "logs:DeleteLogGroup",
    "logs:DescribeLogGroups",
    "logs:ListTagsForResource",
];

pub(super) async fn inspect(sdk: &SdkConfig, arn: &Arn) -> Result<Inspection, DeleteError> {
    let name = group_name(arn)?;
    let logs = aws_sdk_cloudwatchlogs::Client::new(sdk);
    // Groups come sorted by name, so the group itself, if it exists, is the first one with
    // its name as prefix.
    let out = logs
        .describe_log_groups()
        .log_group_name_prefix(name)
        .limit(1)
        .send()
        .await
        .map_err(fail("DescribeLogGroups"))
        .map_err(|f| f.into_error(&[]))?;
    let exists = out
        .log_groups()
        .iter()
        .any(|g| g.log_group_name() == Some(name));
    if !exists {
        return Ok(Inspection::Gone);
    }
    // Tagging takes the ARN without the `:*` DescribeLogGroups' `arn` carries; moto answers
    // a missing group with no tags rather than an error, hence the look above.
    let tag_arn = sibling(arn, "logs", &format!("log-group:{name}"));
    match logs
        .list_tags_for_resource()
        .resource_arn(tag_arn.as_str())
        .send()
        .await
        .map_err(fail("ListTagsForResource"))
    {
        Ok(out) => Ok(live(map_tags(out.tags()))),
        Err(f) if f.is(NO_GROUP) => Ok(Inspection::Gone),
        Err(f) => Err(f.into_error(&[])),
    }
}

pub(super) async fn delete(sdk: &SdkConfig, arn: &Arn) -> Result<Deleted, DeleteError> {
    let name = group_name(arn)?;
    let r = aws_sdk_cloudwatchlogs::Client::new(sdk)
        .delete_log_group()
        .log_group_name(name)
        .send()
        .await
        .map_err(fail("DeleteLogGroup"));
    // A concurrent change to the group: try again on a later pass.
    settle(r, NO_GROUP, &["OperationAbortedException"])
}

/// The types of this file, whole: how each is inspected and deleted, where it goes in the
/// deletion order, and the IAM actions of its calls (see [`Kind`]).
pub(super) const KINDS: &[Kind] = &[Kind {
    ty: ResourceType::LogsLogGroup,
    example: "arn:aws:logs:us-east-1:123456789012:log-group:/aws/x",
    rank: REST,
    inspect: |sdk, arn| Box::pin(inspect(sdk, arn)),
    delete: |sdk, arn, _| Box::pin(delete(sdk, arn)),
    actions: ACTIONS,
    tag_conditioned: &["logs:DeleteLogGroup"],
}];
