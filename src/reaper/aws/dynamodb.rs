//! DynamoDB tables.

use aws_sdk_dynamodb::types::TableStatus;

use super::*;

const NO_TABLE: &[&str] = &["ResourceNotFoundException"];
const IN_USE: &[&str] = &["ResourceInUseException"];

/// `table/NAME`; the ARNs of a table's streams, indexes and backups go deeper and are not
/// tables.
pub(super) fn table_name(arn: &Arn) -> Result<&str, DeleteError> {
    match arn.resource().strip_prefix("table/") {
        Some(name) if !name.is_empty() && !name.contains('/') => Ok(name),
        _ => Err(DeleteError::Unsupported(format!(
            "dynamodb:{}",
            arn.resource()
        ))),
    }
}

/// The IAM actions of the calls below, sorted: DescribeTable, ListTagsOfResource; DeleteTable
/// (DescribeTable again when in use).
pub(super) const ACTIONS: &[&str] = &[
    "dynamodb:DeleteTable",
    "dynamodb:DescribeTable",
    "dynamodb:ListTagsOfResource",
];

/// The table's status, `None` when it does not exist.
async fn status(
    ddb: &aws_sdk_dynamodb::Client,
    name: &str,
) -> Result<Option<TableStatus>, DeleteError> {
    match ddb
        .describe_table()
        .table_name(name)
        .send()
        .await
        .map_err(fail("DescribeTable"))
    {
        Ok(out) => Ok(Some(
            out.table()
                .and_then(|t| t.table_status())
                .cloned()
                .unwrap_or(TableStatus::Active),
        )),
        Err(f) if f.is(NO_TABLE) => Ok(None),
        Err(f) => Err(f.into_error(&[])),
    }
}

pub(super) async fn inspect(sdk: &SdkConfig, arn: &Arn) -> Result<Inspection, DeleteError> {
    let name = table_name(arn)?;
    let ddb = aws_sdk_dynamodb::Client::new(sdk);
    match status(&ddb, name).await? {
        None | Some(TableStatus::Deleting) => return Ok(Inspection::Gone),
        Some(_) => {}
    }
    let mut pairs = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let out = match ddb
            .list_tags_of_resource()
            .resource_arn(arn.as_str())
            .set_next_token(token.take())
            .send()
            .await
            .map_err(fail("ListTagsOfResource"))
        {
            Ok(out) => out,
            Err(f) if f.is(NO_TABLE) => return Ok(Inspection::Gone),
            Err(f) => return Err(f.into_error(&[])),
        };
        pairs.extend(
            out.tags()
                .iter()
                .map(|t| (t.key().to_owned(), t.value().to_owned())),
        );
        match out.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_owned()),
            _ => break,
        }
    }
    Ok(live(Tags::from_pairs(
        pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    )))
}

pub(super) async fn delete(sdk: &SdkConfig, arn: &Arn) -> Result<Deleted, DeleteError> {
    let name = table_name(arn)?;
    let ddb = aws_sdk_dynamodb::Client::new(sdk);
    let r = ddb
        .delete_table()
        .table_name(name)
        .send()
        .await
        .map_err(fail("DeleteTable"));
    match r {
        // A table already being deleted answers "in use"; that is a deletion under way.
        Err(f) if f.is(IN_USE) => match status(&ddb, name).await? {
            None | Some(TableStatus::Deleting) => Ok(Deleted::AlreadyGone),
            Some(_) => Err(f.into_error(IN_USE)),
        },
        r => settle(r, NO_TABLE, IN_USE),
    }
}

/// The types of this file, whole: how each is inspected and deleted, where it goes in the
/// deletion order, and the IAM actions of its calls (see [`Kind`]).
pub(super) const KINDS: &[Kind] = &[Kind {
    ty: ResourceType::DynamodbTable,
    example: "arn:aws:dynamodb:us-east-1:123456789012:table/t",
    rank: REST,
    inspect: |sdk, arn| Box::pin(inspect(sdk, arn)),
    delete: |sdk, arn, _| Box::pin(delete(sdk, arn)),
    actions: ACTIONS,
    tag_conditioned: &["dynamodb:DeleteTable"],
}];
