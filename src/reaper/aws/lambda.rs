//! Lambda functions.

use super::*;

const NO_FUNCTION: &[&str] = &["ResourceNotFoundException"];

/// `function:NAME`; a qualified ARN (`function:NAME:VERSION` or `:ALIAS`) names a version
/// or alias, which this module does not delete.
pub(super) fn function_name(arn: &Arn) -> Result<&str, DeleteError> {
    match arn.resource().strip_prefix("function:") {
        Some(name) if !name.is_empty() && !name.contains(':') => Ok(name),
        _ => Err(DeleteError::Unsupported(format!(
            "lambda:{}",
            arn.resource()
        ))),
    }
}

/// The IAM actions of the calls below, sorted: GetFunction; DeleteFunction. GetFunction returns a
/// function's tags only to a caller also allowed `lambda:ListTags`; without it the re-read fails
/// (AWS withholds the tags) and nothing is deleted.
pub(super) const ACTIONS: &[&str] = &[
    "lambda:DeleteFunction",
    "lambda:GetFunction",
    "lambda:ListTags",
];

pub(super) async fn inspect(sdk: &SdkConfig, arn: &Arn) -> Result<Inspection, DeleteError> {
    let name = function_name(arn)?;
    match aws_sdk_lambda::Client::new(sdk)
        .get_function()
        .function_name(name)
        .send()
        .await
        .map_err(fail("GetFunction"))
    {
        // Without lambda:ListTags AWS answers with no tags and a TagsError instead: reading
        // that as "untagged" would make a leased function look reapable.
        Ok(out) => match out.tags_error() {
            Some(e) => Err(DeleteError::Aws {
                message: format!(
                    "GetFunction: tags unreadable: {}: {}",
                    e.error_code(),
                    e.message()
                ),
                source: None,
            }),
            None => Ok(live(map_tags(out.tags()))),
        },
        Err(f) if f.is(NO_FUNCTION) => Ok(Inspection::Gone),
        Err(f) => Err(f.into_error(&[])),
    }
}

pub(super) async fn delete(sdk: &SdkConfig, arn: &Arn) -> Result<Deleted, DeleteError> {
    let name = function_name(arn)?;
    let r = aws_sdk_lambda::Client::new(sdk)
        .delete_function()
        .function_name(name)
        .send()
        .await
        .map_err(fail("DeleteFunction"));
    settle(r, NO_FUNCTION, &["ResourceConflictException"])
}

/// The types of this file, whole: how each is inspected and deleted, where it goes in the
/// deletion order, and the IAM actions of its calls (see [`Kind`]).
pub(super) const KINDS: &[Kind] = &[Kind {
    ty: ResourceType::LambdaFunction,
    example: "arn:aws:lambda:us-east-1:123456789012:function:f",
    rank: 0,
    inspect: |sdk, arn| Box::pin(inspect(sdk, arn)),
    delete: |sdk, arn, _| Box::pin(delete(sdk, arn)),
    actions: ACTIONS,
    tag_conditioned: &["lambda:DeleteFunction"],
}];
