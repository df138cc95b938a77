//! CloudFormation stacks. Deleting a stack deletes its members (what it created carries the
//! tag `aws:cloudformation:stack-id` = the stack's ARN), with ephemera's own credentials
//! unless the stack has a service role: a member the reaper's policy may not delete fails the
//! stack's deletion, and the stack's own reason says which.
//!
//! The deleter waits for the outcome: `DeleteStack` only starts the work, and a stack that
//! ends `DELETE_FAILED` must be reported as a failure, not as deleted. It polls DescribeStacks
//! by the stack's ARN (unlike its name, the ARN keeps answering for a deleted stack, with
//! `DELETE_COMPLETE`) every [`POLL`], for at most [`WAIT`].

use std::time::Duration;

use aws_sdk_cloudformation::types::StackStatus;

use super::*;

/// How often the deletion's progress is read.
const POLL: Duration = Duration::from_secs(2);
/// How long a deletion is waited for: most stacks of ephemeral environments go in a minute or
/// two; one slower than this (a CloudFront distribution, say) is read again on the next pass.
const WAIT: Duration = Duration::from_secs(5 * 60);

/// The IAM actions of the calls below, sorted: DescribeStacks; DeleteStack (DescribeStacks
/// again while waiting).
pub(super) const ACTIONS: &[&str] = &[
    "cloudformation:DeleteStack",
    "cloudformation:DescribeStacks",
];

/// What DescribeStacks says of the stack: its status, reason and tags; `None` when it does
/// not exist (by name: deleted; by ARN: never was).
struct Stack {
    status: StackStatus,
    reason: Option<String>,
    tags: Tags,
}

/// `stack/NAME/UUID`.
pub(super) fn check_stack(arn: &Arn) -> Result<(), DeleteError> {
    let parts: Vec<&str> = arn.resource().split('/').collect();
    match parts[..] {
        ["stack", name, id] if !name.is_empty() && !id.is_empty() => Ok(()),
        _ => Err(DeleteError::Unsupported(format!(
            "cloudformation:{}",
            arn.resource()
        ))),
    }
}

async fn describe(
    cfn: &aws_sdk_cloudformation::Client,
    arn: &Arn,
) -> Result<Option<Stack>, DeleteError> {
    match cfn
        .describe_stacks()
        .stack_name(arn.as_str())
        .send()
        .await
        .map_err(fail("DescribeStacks"))
    {
        Ok(out) => Ok(out
            .stacks()
            .iter()
            .find(|s| s.stack_id() == Some(arn.as_str()))
            .map(|s| Stack {
                status: s
                    .stack_status()
                    .cloned()
                    .unwrap_or(StackStatus::CreateComplete),
                reason: s.stack_status_reason().map(str::to_owned),
                tags: Tags::from_pairs(
                    s.tags()
                        .iter()
                        .filter_map(|t| Some((t.key()?, t.value().unwrap_or_default()))),
                ),
            })),
        // "Stack with id … does not exist".
        Err(f) if f.is(&["ValidationError"]) && f.message.contains("does not exist") => Ok(None),
        Err(f) => Err(f.into_error(&[])),
    }
}

/// Gone, or going: deleted, or being deleted (its members are going with it).
fn gone(stack: &Option<Stack>) -> bool {
    match stack {
        None => true,
        Some(s) => matches!(
            s.status,
            StackStatus::DeleteComplete | StackStatus::DeleteInProgress
        ),
    }
}

pub(super) async fn inspect_stack(sdk: &SdkConfig, arn: &Arn) -> Result<Inspection, DeleteError> {
    check_stack(arn)?;
    let cfn = aws_sdk_cloudformation::Client::new(sdk);
    let stack = describe(&cfn, arn).await?;
    if gone(&stack) {
        return Ok(Inspection::Gone);
    }
    Ok(stack.map_or(Inspection::Gone, |s| live(s.tags)))
}

pub(super) async fn delete_stack(sdk: &SdkConfig, arn: &Arn) -> Result<Deleted, DeleteError> {
    check_stack(arn)?;
    let cfn = aws_sdk_cloudformation::Client::new(sdk);
    let before = describe(&cfn, arn).await?;
    let outcome = match &before {
        None => return Ok(Deleted::AlreadyGone),
        Some(s) if s.status == StackStatus::DeleteComplete => return Ok(Deleted::AlreadyGone),
        // Someone else's deletion under way: waited for like ours, but not ours.
        Some(s) if s.status == StackStatus::DeleteInProgress => Deleted::AlreadyGone,
        Some(_) => {
            cfn.delete_stack()
                .stack_name(arn.as_str())
                .send()
                .await
                .map_err(fail("DeleteStack"))
                .map_err(|f| f.into_error(&[]))?;
            Deleted::Deleted
        }
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match describe(&cfn, arn).await? {
            None => return Ok(outcome),
            Some(s) => match s.status {
                StackStatus::DeleteComplete => return Ok(outcome),
                StackStatus::DeleteFailed => {
                    return Err(DeleteError::Aws {
                        message: format!(
                            "stack deletion failed: {}",
                            s.reason.as_deref().unwrap_or("no reason given")
                        ),
                        source: None,
                    });
                }
                // In progress, or not yet seen to have started.
                _ => {}
            },
        }
        if tokio::time::Instant::now() + POLL > deadline {
            return Err(DeleteError::Aws {
                message: format!(
                    "stack still DELETE_IN_PROGRESS after {} s; read again on the next pass",
                    WAIT.as_secs()
                ),
                source: None,
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The types of this file, whole: how each is inspected and deleted, where it goes in the
/// deletion order, and the IAM actions of its calls (see [`Kind`]).
pub(super) const KINDS: &[Kind] = &[Kind {
    ty: ResourceType::CloudformationStack,
    example: "arn:aws:cloudformation:us-east-1:123456789012:stack/st/0f2a7c1e-1111",
    rank: 0,
    inspect: |sdk, arn| Box::pin(inspect_stack(sdk, arn)),
    delete: |sdk, arn, _| Box::pin(delete_stack(sdk, arn)),
    actions: ACTIONS,
    // The stack's own tags; the member deletions CloudFormation makes on our behalf are
    // authorized (and conditioned) per member.
    tag_conditioned: &["cloudformation:DeleteStack"],
}];
