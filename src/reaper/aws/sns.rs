//! SNS topics.

use super::*;

const NO_TOPIC: &[&str] = &["NotFound", "ResourceNotFound"];

/// The IAM actions of the calls below, sorted: GetTopicAttributes, ListTagsForResource;
/// DeleteTopic.
pub(super) const ACTIONS: &[&str] = &[
    "sns:DeleteTopic",
    "sns:GetTopicAttributes",
    "sns:ListTagsForResource",
];

/// Whether the topic exists; DeleteTopic succeeds for a missing topic, so deleting asks
/// first.
async fn exists(sns: &aws_sdk_sns::Client, arn: &Arn) -> Result<bool, DeleteError> {
    match sns
        .get_topic_attributes()
        .topic_arn(arn.as_str())
        .send()
        .await
        .map_err(fail("GetTopicAttributes"))
    {
        Ok(_) => Ok(true),
        Err(f) if f.is(NO_TOPIC) => Ok(false),
        Err(f) => Err(f.into_error(&[])),
    }
}

pub(super) async fn inspect(sdk: &SdkConfig, arn: &Arn) -> Result<Inspection, DeleteError> {
    let sns = aws_sdk_sns::Client::new(sdk);
    if !exists(&sns, arn).await? {
        return Ok(Inspection::Gone);
    }
    match sns
        .list_tags_for_resource()
        .resource_arn(arn.as_str())
        .send()
        .await
        .map_err(fail("ListTagsForResource"))
    {
        Ok(out) => Ok(live(Tags::from_pairs(
            out.tags().iter().map(|t| (t.key(), t.value())),
        ))),
        Err(f) if f.is(NO_TOPIC) => Ok(Inspection::Gone),
        Err(f) => Err(f.into_error(&[])),
    }
}

pub(super) async fn delete(sdk: &SdkConfig, arn: &Arn) -> Result<Deleted, DeleteError> {
    let sns = aws_sdk_sns::Client::new(sdk);
    if !exists(&sns, arn).await? {
        return Ok(Deleted::AlreadyGone);
    }
    let r = sns
        .delete_topic()
        .topic_arn(arn.as_str())
        .send()
        .await
        .map_err(fail("DeleteTopic"));
    settle(r, NO_TOPIC, &[])
}

/// The types of this file, whole: how each is inspected and deleted, where it goes in the
/// deletion order, and the IAM actions of its calls (see [`Kind`]).
pub(super) const KINDS: &[Kind] = &[Kind {
    ty: ResourceType::SnsTopic,
    example: "arn:aws:sns:us-east-1:123456789012:t",
    rank: REST,
    inspect: |sdk, arn| Box::pin(inspect(sdk, arn)),
    delete: |sdk, arn, _| Box::pin(delete(sdk, arn)),
    actions: ACTIONS,
    tag_conditioned: &["sns:DeleteTopic"],
}];
