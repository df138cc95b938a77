//! KMS keys. There is no immediate delete: deleting schedules the key's deletion with the
//! shortest window AWS allows, 7 days (a wrong deletion can be cancelled that long), and a key
//! pending deletion is gone. AWS-managed keys (`aws/s3`…) are refused. Aliases naming the key
//! are left alone: AWS deletes them with the key when its window ends, and they cost nothing.

use aws_sdk_kms::types::{KeyManagerType, KeyMetadata, KeyState};

use super::*;

const NO_KEY: &[&str] = &["NotFoundException"];

/// The deletion window, in days: the minimum AWS allows.
pub(super) const PENDING_WINDOW_DAYS: i32 = 7;

/// The IAM actions of the calls below, sorted: DescribeKey, ListResourceTags;
/// ScheduleKeyDeletion.
pub(super) const KEY_ACTIONS: &[&str] = &[
    "kms:DescribeKey",
    "kms:ListResourceTags",
    "kms:ScheduleKeyDeletion",
];

/// Whether a key in `state` is gone or going on its own.
pub(super) fn is_going(state: Option<&KeyState>) -> bool {
    matches!(
        state,
        Some(KeyState::PendingDeletion | KeyState::PendingReplicaDeletion)
    )
}

/// The key's metadata, `None` when it does not exist or is pending deletion; AWS-managed
/// keys refused.
async fn describe(
    kms: &aws_sdk_kms::Client,
    arn: &Arn,
) -> Result<Option<KeyMetadata>, DeleteError> {
    let meta = match kms
        .describe_key()
        .key_id(arn.as_str())
        .send()
        .await
        .map_err(fail("DescribeKey"))
    {
        Ok(out) => out.key_metadata,
        Err(f) if f.is(NO_KEY) => None,
        Err(f) => return Err(f.into_error(&[])),
    };
    match meta {
        Some(m) if is_going(m.key_state()) => Ok(None),
        Some(m) if m.key_manager() == Some(&KeyManagerType::Aws) => {
            Err(DeleteError::Refused(format!("{arn} is an AWS-managed key")))
        }
        m => Ok(m),
    }
}

pub(super) async fn inspect_key(sdk: &SdkConfig, arn: &Arn) -> Result<Inspection, DeleteError> {
    let kms = aws_sdk_kms::Client::new(sdk);
    if describe(&kms, arn).await?.is_none() {
        return Ok(Inspection::Gone);
    }
    let mut pairs = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let out = match kms
            .list_resource_tags()
            .key_id(arn.as_str())
            .set_marker(marker.take())
            .send()
            .await
            .map_err(fail("ListResourceTags"))
        {
            Ok(out) => out,
            Err(f) if f.is(NO_KEY) => return Ok(Inspection::Gone),
            Err(f) => return Err(f.into_error(&[])),
        };
        pairs.extend(
            out.tags()
                .iter()
                .map(|t| (t.tag_key().to_owned(), t.tag_value().to_owned())),
        );
        match (out.truncated(), out.next_marker()) {
            (true, Some(m)) => marker = Some(m.to_owned()),
            _ => break,
        }
    }
    Ok(live(Tags::from_pairs(
        pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    )))
}

pub(super) async fn delete_key(sdk: &SdkConfig, arn: &Arn) -> Result<Deleted, DeleteError> {
    let kms = aws_sdk_kms::Client::new(sdk);
    // Scheduling a key already pending deletion is an error (`KMSInvalidStateException`), and
    // an AWS-managed key is refused before any call that could change it: look first.
    if describe(&kms, arn).await?.is_none() {
        return Ok(Deleted::AlreadyGone);
    }
    // By id, not ARN: AWS takes either, moto 5.2.5 only the id (the call goes to the key's own
    // account and region, so the id names the same key).
    let r = kms
        .schedule_key_deletion()
        .key_id(arn.resource_id())
        .pending_window_in_days(PENDING_WINDOW_DAYS)
        .send()
        .await
        .map_err(fail("ScheduleKeyDeletion"));
    settle(r, NO_KEY, &[])
}

/// The types of this file, whole: how each is inspected and deleted, where it goes in the
/// deletion order, and the IAM actions of its calls (see [`Kind`]).
pub(super) const KINDS: &[Kind] = &[Kind {
    ty: ResourceType::KmsKey,
    example: "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    rank: 7,
    inspect: |sdk, arn| Box::pin(inspect_key(sdk, arn)),
    delete: |sdk, arn, _| Box::pin(delete_key(sdk, arn)),
    actions: KEY_ACTIONS,
    tag_conditioned: &["kms:ScheduleKeyDeletion"],
}];
