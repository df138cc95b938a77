//! AWS Resource Explorer as the source of never-tagged resources: where an organization keeps
//! an aggregator index, one `tag:none` search per (account, region) instead of a list call per
//! type. The search names every untagged resource of the discovery types it indexes.
//!
//! A search returns at most 1,000 resources in all: when the combined search is not complete
//! (`Count.Complete` false), each type is searched on its own, and a type still over the limit
//! is incomplete for the pass (nothing of it resolved or deleted there).

use std::collections::BTreeMap;

use aws_config::SdkConfig;

use super::pages;
use super::sweep::{Found, SweepError, TypeSweep};
use crate::metrics::Metrics;
use crate::model::{Arn, ResourceType, Tags};

/// The IAM actions of the search (in the index's account).
pub const ACTIONS: &[&str] = &["resource-explorer-2:Search"];

/// The query for the untagged resources of `types` in one (account, region).
pub fn query(account: &str, region: &str, types: &[ResourceType]) -> String {
    // Filters with one key are OR'ed, different keys AND'ed.
    let mut q = format!("tag:none accountid:{account} region:{region}");
    for t in types {
        q.push_str(" resourcetype:");
        q.push_str(t.as_str());
    }
    q
}

/// Every resource the search matches, and whether that is all of them.
async fn search(
    client: &aws_sdk_resourceexplorer2::Client,
    view_arn: Option<&str>,
    query: &str,
    metrics: &Metrics,
) -> Result<(Vec<Arn>, bool), SweepError> {
    let (mut out, mut complete) = (Vec::new(), true);
    pages(
        metrics,
        None,
        ("resource-explorer-2", "Search"),
        |token| {
            client
                .search()
                .query_string(query)
                .set_view_arn(view_arn.map(str::to_owned))
                .max_results(1000)
                .set_next_token(token)
                .send()
        },
        |page| {
            out.extend(
                page.resources()
                    .iter()
                    .filter_map(|r| r.arn().and_then(|a| Arn::parse(a).ok())),
            );
            complete &= page.count().and_then(|c| c.complete()) != Some(false);
            page.next_token().map(str::to_owned)
        },
    )
    .await
    .map_err(|e| SweepError {
        operation: "Search",
        source: Box::new(e),
    })?;
    Ok((out, complete))
}

/// The never-tagged resources of `types` in (account, region), through the index reached with
/// `conf`, one result per type like a sweep's.
pub async fn sweep(
    conf: &SdkConfig,
    view_arn: Option<&str>,
    account: &str,
    region: &str,
    types: &[ResourceType],
    metrics: &Metrics,
) -> Vec<TypeSweep> {
    let client = aws_sdk_resourceexplorer2::Client::new(conf);
    let failed = |e: &SweepError, t: &[ResourceType]| {
        TypeSweep::all_failed(t, e.operation, &crate::error_chain(e.source.as_ref()))
    };
    match search(&client, view_arn, &query(account, region, types), metrics).await {
        Err(e) => failed(&e, types),
        Ok((arns, true)) => by_type(arns, account, region, types),
        Ok((_, false)) => {
            let mut out = Vec::with_capacity(types.len());
            for t in types {
                let one = std::slice::from_ref(t);
                match search(&client, view_arn, &query(account, region, one), metrics).await {
                    Err(e) => out.extend(failed(&e, one)),
                    Ok((_, false)) => out.extend(TypeSweep::all_failed(
                        one,
                        "Search",
                        "more than 1,000 untagged resources of this type: the search cannot list them all",
                    )),
                    Ok((arns, true)) => out.extend(by_type(arns, account, region, one)),
                }
            }
            out
        }
    }
}

/// Sorts what a search found into one result per type; anything of another account, region
/// or type (an index answers for what it indexes) is left out.
fn by_type(arns: Vec<Arn>, account: &str, region: &str, types: &[ResourceType]) -> Vec<TypeSweep> {
    let mut found: BTreeMap<ResourceType, Vec<Found>> =
        types.iter().map(|t| (*t, Vec::new())).collect();
    for arn in arns {
        let Some(t) = ResourceType::parse(&arn.resource_type()) else {
            continue;
        };
        // S3 ARNs carry neither account nor region: the query's filters stand for them.
        let here = arn.account().is_empty() || arn.account() == account;
        let in_region = arn.region().is_empty() || arn.region() == region;
        if let (true, true, Some(list)) = (here, in_region, found.get_mut(&t)) {
            list.push(Found {
                arn,
                tags: Tags::default(),
                created_at: None,
                state: None,
            });
        }
    }
    found
        .into_iter()
        .map(|(resource_type, f)| TypeSweep {
            resource_type,
            result: Ok(f),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_and_the_sorting_by_type() {
        assert_eq!(
            query(
                "111111111111",
                "eu-west-1",
                &[ResourceType::Ec2Volume, ResourceType::SqsQueue]
            ),
            "tag:none accountid:111111111111 region:eu-west-1 resourcetype:ec2:volume resourcetype:sqs:queue"
        );
        let arns = [
            "arn:aws:ec2:eu-west-1:111111111111:volume/vol-1",
            "arn:aws:ec2:eu-west-1:222222222222:volume/vol-other-account",
            "arn:aws:ec2:us-east-1:111111111111:volume/vol-other-region",
            "arn:aws:sqs:eu-west-1:111111111111:q",
            "arn:aws:sns:eu-west-1:111111111111:not-asked-for",
            "arn:aws:ec2:eu-west-1:111111111111:vpc/vpc-1",
        ]
        .map(|a| Arn::parse(a).expect("arn"))
        .to_vec();
        let sorted = by_type(
            arns,
            "111111111111",
            "eu-west-1",
            &[ResourceType::Ec2Volume, ResourceType::SqsQueue],
        );
        let got: Vec<(ResourceType, Vec<String>)> = sorted
            .into_iter()
            .map(|s| {
                let found = s.result.expect("ok");
                (
                    s.resource_type,
                    found.into_iter().map(|f| f.arn.to_string()).collect(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    ResourceType::Ec2Volume,
                    vec!["arn:aws:ec2:eu-west-1:111111111111:volume/vol-1".to_owned()]
                ),
                (
                    ResourceType::SqsQueue,
                    vec!["arn:aws:sqs:eu-west-1:111111111111:q".to_owned()]
                ),
            ]
        );
    }
}
