//! The accounts of an AWS organization, as `[aws.organization]` selects them: every active
//! account (or those under the listed OUs, child OUs included), include and exclude lists
//! applied, suspended and closing accounts skipped, and which of them sit under a dedicated OU.

use std::collections::{BTreeMap, BTreeSet};

use aws_config::SdkConfig;
use aws_sdk_organizations::types::AccountStatus;

use super::{BoxError, pages};
use crate::config::{AwsAccount, OrganizationConfig};
use crate::metrics::Metrics;

/// One account the organization lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgAccount {
    pub id: String,
    pub name: Option<String>,
    /// Under one of `dedicated_ous`.
    pub dedicated: bool,
}

/// An Organizations call that failed: the pass keeps the accounts it knew.
#[derive(Debug, thiserror::Error)]
#[error("{operation}")]
pub struct OrgError {
    pub operation: &'static str,
    #[source]
    pub source: BoxError,
}

fn failed<E>(operation: &'static str) -> impl FnOnce(E) -> OrgError
where
    E: std::error::Error + Send + Sync + 'static,
{
    move |e| OrgError {
        operation,
        source: Box::new(e),
    }
}

/// Lists the organization's accounts through `conf` (the management account's or a delegated
/// administrator's credentials), sorted by id.
pub async fn accounts(
    conf: &SdkConfig,
    org: &OrganizationConfig,
    metrics: &Metrics,
) -> Result<Vec<OrgAccount>, OrgError> {
    let client = aws_sdk_organizations::Client::new(conf);
    let mut listed = Listed::new();
    if org.ous.is_empty() {
        pages(
            metrics,
            None,
            ("organizations", "ListAccounts"),
            |token| client.list_accounts().set_next_token(token).send(),
            |page| {
                keep(&mut listed, page.accounts());
                page.next_token().map(str::to_owned)
            },
        )
        .await
        .map_err(failed("ListAccounts"))?;
    } else {
        for ou in &org.ous {
            listed.extend(under(&client, ou, metrics).await?);
        }
    }
    let mut dedicated: BTreeSet<String> = BTreeSet::new();
    for ou in &org.dedicated_ous {
        dedicated.extend(under(&client, ou, metrics).await?.into_keys());
    }
    Ok(listed
        .into_iter()
        .filter(|(id, (_, active))| {
            *active
                && (org.include.is_empty() || org.include.contains(id))
                && !org.exclude.contains(id)
        })
        .map(|(id, (name, _))| OrgAccount {
            dedicated: dedicated.contains(&id),
            id,
            name,
        })
        .collect())
}

/// Suspended (closed) and closing accounts are not audited: nothing can be deleted there, and
/// their resources are gone with them.
fn active(a: &aws_sdk_organizations::types::Account) -> bool {
    // `status` is deprecated in favour of `state`; emulators and older APIs still send only it.
    #[allow(deprecated)]
    let status = a.status();
    match a.state() {
        Some(state) => state.as_str() == "ACTIVE",
        None => status == Some(&AccountStatus::Active),
    }
}

/// Accounts by id: their name and whether they are active.
type Listed = BTreeMap<String, (Option<String>, bool)>;

fn keep(listed: &mut Listed, accounts: &[aws_sdk_organizations::types::Account]) {
    for a in accounts {
        if let Some(id) = a.id() {
            listed.insert(id.to_owned(), (a.name().map(str::to_owned), active(a)));
        }
    }
}

/// Every account under `parent`, child OUs included (depth first).
async fn under(
    client: &aws_sdk_organizations::Client,
    parent: &str,
    metrics: &Metrics,
) -> Result<Listed, OrgError> {
    let mut out = Listed::new();
    let mut parents = vec![parent.to_owned()];
    while let Some(p) = parents.pop() {
        pages(
            metrics,
            None,
            ("organizations", "ListAccountsForParent"),
            |token| {
                client
                    .list_accounts_for_parent()
                    .parent_id(&p)
                    .set_next_token(token)
                    .send()
            },
            |page| {
                keep(&mut out, page.accounts());
                page.next_token().map(str::to_owned)
            },
        )
        .await
        .map_err(failed("ListAccountsForParent"))?;
        let mut children = Vec::new();
        pages(
            metrics,
            None,
            ("organizations", "ListOrganizationalUnitsForParent"),
            |token| {
                client
                    .list_organizational_units_for_parent()
                    .parent_id(&p)
                    .set_next_token(token)
                    .send()
            },
            |page| {
                children.extend(
                    page.organizational_units()
                        .iter()
                        .filter_map(|u| u.id().map(str::to_owned)),
                );
                page.next_token().map(str::to_owned)
            },
        )
        .await
        .map_err(failed("ListOrganizationalUnitsForParent"))?;
        parents.extend(children);
    }
    Ok(out)
}

/// The IAM actions of the calls above.
pub const ACTIONS: &[&str] = &[
    "organizations:ListAccounts",
    "organizations:ListAccountsForParent",
    "organizations:ListOrganizationalUnitsForParent",
];

/// The accounts a pass audits: the organization's (through the role template, dedicated when
/// under a dedicated OU) and the static ones; a static entry for an organization account wins
/// (its name, role and `dedicated`). Sorted by id.
pub fn merge(statics: &[AwsAccount], org: &[OrgAccount]) -> Vec<AwsAccount> {
    let mut by_id: BTreeMap<String, AwsAccount> = org
        .iter()
        .map(|a| {
            (
                a.id.clone(),
                AwsAccount {
                    id: a.id.clone(),
                    name: a.name.clone(),
                    assume_role_arn: None,
                    dedicated: a.dedicated,
                },
            )
        })
        .collect();
    for a in statics {
        by_id.insert(a.id.clone(), a.clone());
    }
    by_id.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(id: &str, dedicated: bool) -> AwsAccount {
        AwsAccount {
            id: id.into(),
            name: Some(format!("static {id}")),
            assume_role_arn: None,
            dedicated,
        }
    }

    fn org(id: &str, dedicated: bool) -> OrgAccount {
        OrgAccount {
            id: id.into(),
            name: Some(format!("org {id}")),
            dedicated,
        }
    }

    #[test]
    fn static_entries_win_and_the_rest_come_from_the_organization() {
        let merged = merge(
            &[
                account("111111111111", false),
                account("999999999999", true),
            ],
            &[
                org("111111111111", true),
                org("222222222222", true),
                org("333333333333", false),
            ],
        );
        let got: Vec<(&str, &str, bool)> = merged
            .iter()
            .map(|a| (a.id.as_str(), a.name.as_deref().unwrap_or(""), a.dedicated))
            .collect();
        assert_eq!(
            got,
            [
                ("111111111111", "static 111111111111", false),
                ("222222222222", "org 222222222222", true),
                ("333333333333", "org 333333333333", false),
                ("999999999999", "static 999999999999", true),
            ]
        );
    }
}
