//! SQS queues.

use super::*;

// The JSON protocol answers `QueueDoesNotExist`, the query protocol (and moto) the legacy
// code.
const NO_QUEUE: &[&str] = &[
    "AWS.SimpleQueueService.NonExistentQueue",
    "QueueDoesNotExist",
];

/// The IAM actions of the calls below, sorted: GetQueueUrl, ListQueueTags; DeleteQueue.
pub(super) const ACTIONS: &[&str] = &["sqs:DeleteQueue", "sqs:GetQueueUrl", "sqs:ListQueueTags"];

/// The queue's URL, or `None` when it does not exist.
async fn url(sqs: &aws_sdk_sqs::Client, arn: &Arn) -> Result<Option<String>, DeleteError> {
    match sqs
        .get_queue_url()
        .queue_name(arn.resource_id())
        .queue_owner_aws_account_id(arn.account())
        .send()
        .await
        .map_err(fail("GetQueueUrl"))
    {
        Ok(out) => Ok(out.queue_url().map(str::to_owned)),
        Err(f) if f.is(NO_QUEUE) => Ok(None),
        Err(f) => Err(f.into_error(&[])),
    }
}

pub(super) async fn inspect(sdk: &SdkConfig, arn: &Arn) -> Result<Inspection, DeleteError> {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let Some(url) = url(&sqs, arn).await? else {
        return Ok(Inspection::Gone);
    };
    match sqs
        .list_queue_tags()
        .queue_url(url)
        .send()
        .await
        .map_err(fail("ListQueueTags"))
    {
        Ok(out) => Ok(live(map_tags(out.tags()))),
        Err(f) if f.is(NO_QUEUE) => Ok(Inspection::Gone),
        Err(f) => Err(f.into_error(&[])),
    }
}

pub(super) async fn delete(sdk: &SdkConfig, arn: &Arn) -> Result<Deleted, DeleteError> {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let Some(url) = url(&sqs, arn).await? else {
        return Ok(Deleted::AlreadyGone);
    };
    let r = sqs
        .delete_queue()
        .queue_url(url)
        .send()
        .await
        .map_err(fail("DeleteQueue"));
    settle(r, NO_QUEUE, &[])
}

/// The types of this file, whole: how each is inspected and deleted, where it goes in the
/// deletion order, and the IAM actions of its calls (see [`Kind`]).
pub(super) const KINDS: &[Kind] = &[Kind {
    ty: ResourceType::SqsQueue,
    example: "arn:aws:sqs:us-east-1:123456789012:q",
    rank: REST,
    inspect: |sdk, arn| Box::pin(inspect(sdk, arn)),
    delete: |sdk, arn, _| Box::pin(delete(sdk, arn)),
    actions: ACTIONS,
    tag_conditioned: &["sqs:DeleteQueue"],
}];
