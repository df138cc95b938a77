//! Secrets Manager secrets, called by their full ARN (`secret:NAME-6RANDOM`).
//!
//! Deleting schedules the deletion with AWS's shortest recovery window but one, 7 days, never
//! `ForceDeleteWithoutRecovery`: a secret of an ended lease costs cents a week, and a wrong
//! deletion stays reversible (`RestoreSecret`) for that week. A secret scheduled for deletion
//! (`DeletedDate` set) is gone: AWS finishes it on its own.

use super::*;

const NO_SECRET: &[&str] = &["ResourceNotFoundException"];

/// The recovery window of a deletion, in days.
pub(super) const RECOVERY_WINDOW_DAYS: i64 = 7;

/// The IAM actions of the calls below, sorted: DescribeSecret; DeleteSecret.
pub(super) const SECRET_ACTIONS: &[&str] = &[
    "secretsmanager:DeleteSecret",
    "secretsmanager:DescribeSecret",
];

/// The secret's tags, `None` when it does not exist or is scheduled for deletion.
async fn describe(
    sm: &aws_sdk_secretsmanager::Client,
    arn: &Arn,
) -> Result<Option<Tags>, DeleteError> {
    match sm
        .describe_secret()
        .secret_id(arn.as_str())
        .send()
        .await
        .map_err(fail("DescribeSecret"))
    {
        Ok(out) if out.deleted_date().is_some() => Ok(None),
        Ok(out) => {
            Ok(Some(Tags::from_pairs(out.tags().iter().filter_map(|t| {
                Some((t.key()?, t.value().unwrap_or_default()))
            }))))
        }
        Err(f) if f.is(NO_SECRET) => Ok(None),
        Err(f) => Err(f.into_error(&[])),
    }
}

pub(super) async fn inspect_secret(sdk: &SdkConfig, arn: &Arn) -> Result<Inspection, DeleteError> {
    let sm = aws_sdk_secretsmanager::Client::new(sdk);
    Ok(describe(&sm, arn).await?.map_or(Inspection::Gone, live))
}

pub(super) async fn delete_secret(sdk: &SdkConfig, arn: &Arn) -> Result<Deleted, DeleteError> {
    let sm = aws_sdk_secretsmanager::Client::new(sdk);
    // Scheduling a secret already scheduled is an error (`InvalidRequestException`), not a
    // no-op: look first.
    if describe(&sm, arn).await?.is_none() {
        return Ok(Deleted::AlreadyGone);
    }
    let r = sm
        .delete_secret()
        .secret_id(arn.as_str())
        .recovery_window_in_days(RECOVERY_WINDOW_DAYS)
        .send()
        .await
        .map_err(fail("DeleteSecret"));
    settle(r, NO_SECRET, &[])
}

/// The types of this file, whole: how each is inspected and deleted, where it goes in the
/// deletion order, and the IAM actions of its calls (see [`Kind`]).
pub(super) const KINDS: &[Kind] = &[Kind {
    ty: ResourceType::SecretsmanagerSecret,
    example: "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-pass-AbCdEf",
    rank: REST,
    inspect: |sdk, arn| Box::pin(inspect_secret(sdk, arn)),
    delete: |sdk, arn, _| Box::pin(delete_secret(sdk, arn)),
    actions: SECRET_ACTIONS,
    tag_conditioned: &["secretsmanager:DeleteSecret"],
}];
