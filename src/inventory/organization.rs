//! The accounts of an AWS organization, as `[aws.organization]` selects them: every active
//! account (or those under the listed OUs, child OUs included), include and exclude lists
//! applied, suspended and closing accounts skipped, and the settings of the OUs they sit under.

use std::collections::{BTreeMap, BTreeSet};

use aws_config::SdkConfig;
use aws_sdk_organizations::types::AccountStatus;

use super::{BoxError, pages};
use crate::config::{AccountSettings, AwsAccount, OrganizationConfig};
use crate::metrics::Metrics;

/// One account the organization lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgAccount {
    pub id: String,
    pub name: Option<String>,
    /// From the OUs it sits under: `dedicated_ous` and `units`.
    pub settings: AccountSettings,
    /// Which of the OUs projects bind themselves to it sits under.
    pub ous: BTreeSet<String>,
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
    bound_ous: &BTreeSet<String>,
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
    let mut units = Vec::with_capacity(org.units.len());
    for u in &org.units {
        let members: BTreeSet<String> = under(&client, &u.id, metrics).await?.into_keys().collect();
        units.push((members, &u.settings));
    }
    let mut bound: Vec<(&String, BTreeSet<String>)> = Vec::with_capacity(bound_ous.len());
    for ou in bound_ous {
        bound.push((ou, under(&client, ou, metrics).await?.into_keys().collect()));
    }
    Ok(listed
        .into_iter()
        .filter(|(id, (_, active))| {
            *active
                && (org.include.is_empty() || org.include.contains(id))
                && !org.exclude.contains(id)
        })
        .map(|(id, (name, _))| OrgAccount {
            settings: settings_of(&id, dedicated.contains(&id), &units),
            ous: bound
                .iter()
                .filter(|(_, members)| members.contains(&id))
                .map(|(ou, _)| (*ou).clone())
                .collect(),
            id,
            name,
        })
        .collect())
}

/// The settings of account `id` from the units it sits under: a child OU holds a subset of its
/// parent's accounts, so applying the units from the most accounts to the fewest lets the
/// narrowest OU win each field it sets.
fn settings_of(
    id: &str,
    dedicated: bool,
    units: &[(BTreeSet<String>, &AccountSettings)],
) -> AccountSettings {
    let mut mine: Vec<&(BTreeSet<String>, &AccountSettings)> =
        units.iter().filter(|(m, _)| m.contains(id)).collect();
    mine.sort_by_key(|(m, _)| m.len());
    let mut out = AccountSettings {
        dedicated: dedicated.then_some(true),
        ..AccountSettings::default()
    };
    // Narrowest first: what it sets stays, the wider ones fill the rest.
    for (_, s) in mine {
        out = out.or(s);
    }
    out
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

/// The accounts a pass audits: the organization's (through the role template, with their
/// OUs' settings) and the static ones; a static entry for an organization account wins (its
/// name, role, and each setting it sets). Sorted by id.
pub fn merge(statics: &[AwsAccount], org: &[OrgAccount]) -> Vec<AwsAccount> {
    let mut by_id: BTreeMap<String, AwsAccount> = org
        .iter()
        .map(|a| {
            (
                a.id.clone(),
                AwsAccount {
                    name: a.name.clone(),
                    settings: a.settings.clone(),
                    ous: a.ous.clone(),
                    ..AwsAccount::new(a.id.clone())
                },
            )
        })
        .collect();
    for a in statics {
        let mut mine = a.clone();
        if let Some(o) = by_id.get(&a.id) {
            mine.settings = a.settings.or(&o.settings);
            mine.name = mine.name.or_else(|| o.name.clone());
            mine.ous = o.ous.clone();
        }
        by_id.insert(a.id.clone(), mine);
    }
    by_id.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(dedicated: Option<bool>, armed: Option<bool>, cap: Option<u32>) -> AccountSettings {
        AccountSettings {
            dedicated,
            armed,
            max_deletions_per_pass: cap,
            ..AccountSettings::default()
        }
    }

    fn account(id: &str, settings: AccountSettings) -> AwsAccount {
        AwsAccount {
            name: Some(format!("static {id}")),
            settings,
            ..AwsAccount::new(id)
        }
    }

    fn org(id: &str, settings: AccountSettings) -> OrgAccount {
        OrgAccount {
            id: id.into(),
            name: Some(format!("org {id}")),
            settings,
            ous: BTreeSet::new(),
        }
    }

    /// The OUs projects bind to travel with an organization account, static entry or not.
    #[test]
    fn merged_accounts_keep_the_ous_they_sit_under() {
        let mut under = org("222222222222", AccountSettings::default());
        under.ous = ["ou-ab12-ml".to_owned()].into();
        let mut also = org("111111111111", AccountSettings::default());
        also.ous = ["ou-ab12-web".to_owned()].into();
        let merged = merge(
            &[account("111111111111", AccountSettings::default())],
            &[also, under],
        );
        let ous: Vec<Vec<&str>> = merged
            .iter()
            .map(|a| a.ous.iter().map(String::as_str).collect())
            .collect();
        assert_eq!(ous, [vec!["ou-ab12-web"], vec!["ou-ab12-ml"]]);
    }

    #[test]
    fn static_entries_win_field_by_field_and_the_rest_come_from_the_organization() {
        let merged = merge(
            &[
                account("111111111111", with(Some(false), None, None)),
                account("999999999999", with(Some(true), None, None)),
            ],
            &[
                org("111111111111", with(Some(true), Some(true), Some(7))),
                org("222222222222", with(Some(true), None, None)),
                org("333333333333", AccountSettings::default()),
            ],
        );
        let got: Vec<(&str, &str, bool, bool, Option<u32>)> = merged
            .iter()
            .map(|a| {
                (
                    a.id.as_str(),
                    a.name.as_deref().unwrap_or(""),
                    a.dedicated(),
                    a.reaps(),
                    a.settings.max_deletions_per_pass,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                // The static entry says shared; armed and the cap still come from its OU.
                ("111111111111", "static 111111111111", false, true, Some(7)),
                ("222222222222", "org 222222222222", true, true, None),
                // Shared by default, so report-only.
                ("333333333333", "org 333333333333", false, false, None),
                ("999999999999", "static 999999999999", true, true, None),
            ]
        );
    }

    #[test]
    fn the_narrowest_unit_wins_each_field_it_sets() {
        let parent: BTreeSet<String> = ["a", "b", "c"].map(String::from).into();
        let child: BTreeSet<String> = ["a"].map(String::from).into();
        let wide = with(None, Some(true), Some(50));
        let narrow = with(None, Some(false), None);
        // Listed in either order, the child OU's `armed` wins; the parent's cap fills in.
        for units in [
            vec![(parent.clone(), &wide), (child.clone(), &narrow)],
            vec![(child.clone(), &narrow), (parent.clone(), &wide)],
        ] {
            let a = settings_of("a", false, &units);
            assert_eq!(a, with(None, Some(false), Some(50)));
            let b = settings_of("b", true, &units);
            assert_eq!(b, with(Some(true), Some(true), Some(50)));
        }
        assert_eq!(settings_of("z", false, &[]), AccountSettings::default());
    }
}
