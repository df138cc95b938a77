//! The least-privilege IAM policies for a config: what `ephemera iam-policy` prints.
//!
//! Two principals make ephemera's AWS calls, so there are two documents:
//!
//! - [`PolicyHolder::AccountRole`] — the role ephemera assumes in each audited account
//!   (`assume_role_arn` / `assume_role_arn_template`): the inventory reads, Cost Explorer in the
//!   `[cost] account` only, and — armed — the account check and each allowlisted type's re-read
//!   and delete.
//! - [`PolicyHolder::Daemon`] — the daemon's own credentials (instance profile, task role, …):
//!   `sts:AssumeRole` on exactly the configured role ARNs, plus everything an account reached
//!   *without* a role needs, since the daemon's own credentials act there.
//!
//! Architecture Invariant: pure — no I/O, no AWS call. Every action comes from a table next to
//! the code that makes the call: [`INVENTORY_ACTIONS`] (the walk), [`sweep::actions`] (the
//! never-tagged discovery, for the `[discovery] types`), [`creator::ACTIONS`] (who made it),
//! [`organization::ACTIONS`], [`explorer::ACTIONS`], [`COST_ACTIONS`]
//! ([`crate::cost::fetch`]), [`crate::reaper::iam`] (the deleters and the account check). No
//! wildcard action is ever printed; resources are `*` except for `sts:AssumeRole`, because the
//! read calls take no resource ARN and the deleters act on whatever the plan names.
//!
//! Least privilege by tag: armed, the deleting actions whose service authorizes on the
//! resource's own tags ([`crate::reaper::iam::tag_conditioned`]) go in one statement,
//! `DeleteIdentityTagged`, allowed only on resources carrying the identity tags
//! ([`crate::model::IdentityTags::delete_condition_keys`]), so AWS itself refuses to delete
//! anything else. The rest of each type's row (its reads, and S3's deletes, which cannot be
//! conditioned on a bucket's tags) stays in the type's own `Reap…` statement. An account
//! dedicated to ephemeral work, where never-tagged resources are reaped, gets the same
//! actions unconditioned instead (`DeleteInDedicatedAccount`; for the daemon's own
//! credentials, `DeleteInDedicatedAccounts`, held to those accounts by `aws:ResourceAccount`).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

pub mod cloudformation;

use crate::config::Config;
use crate::inventory::{creator, explorer, organization, sweep};
use crate::model::ResourceType;
use crate::reaper::iam::{VERIFY_ACCOUNT_ACTIONS, actions_for, tag_conditioned};

/// The walk of one (account, region): `GetResources`, and one `DescribeInstances` (filtered to
/// ending instances) when a page lists an instance.
pub const INVENTORY_ACTIONS: &[&str] = &[
    "ec2:DescribeImages",
    "ec2:DescribeInstances",
    "ec2:DescribeLaunchTemplateVersions",
    "tag:GetResources",
];

/// The spend fetch: `GetCostAndUsage`, and `ListCostAllocationTags` when spend looks
/// unattributed.
pub const COST_ACTIONS: &[&str] = &["ce:GetCostAndUsage", "ce:ListCostAllocationTags"];

/// The assumption of each account's role, by the daemon's own credentials.
pub const ASSUME_ROLE_ACTIONS: &[&str] = &["sts:AssumeRole"];

/// Whose policy to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyHolder {
    /// The daemon's own credentials.
    Daemon,
    /// The role assumed in an audited account.
    AccountRole,
}

/// Why a policy cannot be made for the request.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IamError {
    #[error("account {account} is not in [[aws.accounts]] of {config}")]
    UnknownAccount { account: String, config: String },
    #[error(
        "account {account} has no role to assume (no assume_role_arn, no assume_role_arn_template): \
         the daemon's own credentials act there, so its permissions are in --for daemon"
    )]
    NoRole { account: String },
    #[error(
        "account {account} is not dedicated to ephemeral work in {config} \
         (aws.accounts.dedicated): its role may delete only what carries the identity tags"
    )]
    NotDedicated { account: String, config: String },
    #[error(
        "{config} dedicates no account to ephemeral work (aws.accounts.dedicated, \
         aws.organization.dedicated_ous): no role deletes never-tagged resources"
    )]
    NoDedicated { config: String },
}

/// One IAM policy statement (always `Allow`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Statement {
    #[serde(rename = "Sid")]
    pub sid: String,
    #[serde(rename = "Effect")]
    effect: &'static str,
    /// Sorted, unique.
    #[serde(rename = "Action")]
    pub actions: Vec<String>,
    /// `["*"]` or sorted, unique ARNs.
    #[serde(rename = "Resource")]
    pub resources: Vec<String>,
    #[serde(rename = "Condition", skip_serializing_if = "Option::is_none")]
    pub condition: Option<Condition>,
}

/// A statement's `Condition`: one operator, its keys and their values (one value is written
/// as a string, several as a list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub operator: &'static str,
    pub keys: BTreeMap<String, Vec<String>>,
}

impl Condition {
    /// The resource carries every one of `tag_keys` (any value).
    pub fn tagged<'a>(tag_keys: impl IntoIterator<Item = &'a str>) -> Condition {
        Condition {
            operator: "Null",
            keys: tag_keys
                .into_iter()
                .map(|k| (format!("aws:ResourceTag/{k}"), vec!["false".to_owned()]))
                .collect(),
        }
    }

    /// The resource belongs to one of `accounts`.
    fn in_accounts<'a>(accounts: impl IntoIterator<Item = &'a str>) -> Condition {
        let ids: BTreeSet<String> = accounts.into_iter().map(str::to_owned).collect();
        Condition {
            operator: "StringEquals",
            keys: [("aws:ResourceAccount".to_owned(), ids.into_iter().collect())].into(),
        }
    }

    /// The tag keys a `Null`-is-false condition requires on the resource.
    pub fn required_tags(&self) -> Vec<&str> {
        if self.operator != "Null" {
            return Vec::new();
        }
        self.keys
            .iter()
            .filter(|(_, v)| v.as_slice() == ["false"])
            .filter_map(|(k, _)| k.strip_prefix("aws:ResourceTag/"))
            .collect()
    }
}

impl Serialize for Condition {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        struct Values<'a>(&'a [String]);
        impl Serialize for Values<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                match self.0 {
                    [one] => s.serialize_str(one),
                    many => many.serialize(s),
                }
            }
        }
        struct Keys<'a>(&'a BTreeMap<String, Vec<String>>);
        impl Serialize for Keys<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_map(self.0.iter().map(|(k, v)| (k, Values(v))))
            }
        }
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry(self.operator, &Keys(&self.keys))?;
        m.end()
    }
}

impl Statement {
    fn allow<'a>(
        sid: impl Into<String>,
        actions: impl IntoIterator<Item = &'a str>,
        resources: impl IntoIterator<Item = String>,
    ) -> Statement {
        let actions: BTreeSet<String> = actions.into_iter().map(str::to_owned).collect();
        let resources: BTreeSet<String> = resources.into_iter().collect();
        Statement {
            sid: sid.into(),
            effect: "Allow",
            actions: actions.into_iter().collect(),
            resources: resources.into_iter().collect(),
            condition: None,
        }
    }

    fn when(mut self, condition: Condition) -> Statement {
        self.condition = Some(condition);
        self
    }

    fn anywhere<'a>(sid: impl Into<String>, actions: impl IntoIterator<Item = &'a str>) -> Self {
        Statement::allow(sid, actions, ["*".to_owned()])
    }
}

/// An IAM policy document (`Version` 2012-10-17), statements in a fixed order: AssumeRole,
/// Inventory, Discovery (when `[discovery]` sweeps or looks up creators), CostExplorer,
/// VerifyAccount, one `Reap…` per allowlisted type by type name, DeleteIdentityTagged or
/// DeleteInDedicatedAccount (DeleteInDedicatedAccounts), then Organizations and
/// ResourceExplorer where the document's principal makes those reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyDocument {
    #[serde(rename = "Version")]
    version: &'static str,
    #[serde(rename = "Statement")]
    pub statements: Vec<Statement>,
}

impl PolicyDocument {
    /// Every action the document allows.
    pub fn actions(&self) -> BTreeSet<&str> {
        self.statements
            .iter()
            .flat_map(|s| s.actions.iter().map(String::as_str))
            .collect()
    }

    /// The statement named `sid`.
    pub fn statement(&self, sid: &str) -> Option<&Statement> {
        self.statements.iter().find(|s| s.sid == sid)
    }

    /// Pretty JSON with a final newline.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("plain strings always serialize");
        s.push('\n');
        s
    }
}

/// What to print: whose policy, whether armed (the flag or `[enforcement] armed`), and for
/// [`PolicyHolder::AccountRole`] which account (`None`: the role of any audited account that is
/// not the Cost Explorer account) and whether it is dedicated to ephemeral work (implied for
/// an `[[aws.accounts]]` entry marked `dedicated`; to be said for an account of a
/// `dedicated_ous` OU, which only the organization knows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    pub principal: PolicyHolder,
    pub armed: bool,
    pub account: Option<&'a str>,
    pub dedicated: bool,
}

/// Where the deleting actions that can be held to the identity tags may delete untagged
/// resources too.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Untagged<'a> {
    /// Nowhere: only what carries the identity tags (an account shared with other work).
    Refused,
    /// Everywhere the principal acts (the role of a dedicated account).
    Allowed,
    /// In these accounts only (the daemon's own credentials, acting in several).
    AllowedIn(Vec<&'a str>),
}

/// `Reap` and the type in CamelCase: `ec2:security-group` → `ReapEc2SecurityGroup`.
pub fn reap_sid(resource_type: &str) -> String {
    let mut sid = String::from("Reap");
    for word in resource_type.split([':', '-', '_']) {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            sid.extend(first.to_uppercase());
            sid.push_str(chars.as_str());
        }
    }
    sid
}

/// The account of `[discovery.resource_explorer]`'s index, if one is configured.
fn explorer_account(config: &Config) -> Option<&str> {
    config
        .discovery
        .resource_explorer
        .as_ref()
        .map(|re| re.account.as_str())
}

/// The search of a Resource Explorer index, in the index's account.
fn explorer_statement() -> Statement {
    Statement::anywhere("ResourceExplorer", explorer::ACTIONS.iter().copied())
}

/// The reads of `[aws.organization]`'s account listing.
fn cost_statement() -> Statement {
    Statement::anywhere("CostExplorer", COST_ACTIONS.iter().copied())
}

fn organizations_statement() -> Statement {
    Statement::anywhere("Organizations", organization::ACTIONS.iter().copied())
}

/// The statements the principal acting in an account needs there: inventory, Cost Explorer
/// when it is the cost account, and armed, the account check and the allowlisted types' rows,
/// their tag-conditioned deletes held to the identity tags unless `untagged` says otherwise.
fn account_statements(
    config: &Config,
    with_cost: bool,
    armed: bool,
    untagged: &Untagged<'_>,
) -> Vec<Statement> {
    let mut out = vec![Statement::anywhere(
        "Inventory",
        INVENTORY_ACTIONS.iter().copied(),
    )];
    let d = &config.discovery;
    if d.enabled() || d.creators {
        let creators = if d.creators { creator::ACTIONS } else { &[] };
        out.push(Statement::anywhere(
            "Discovery",
            d.types
                .iter()
                .flat_map(|t| sweep::actions(*t).iter().copied())
                .chain(creators.iter().copied()),
        ));
    }
    if with_cost {
        out.push(cost_statement());
    }
    // By name, so the statements keep their order whatever the order of the type's variants.
    let types: BTreeMap<&str, ResourceType> = config
        .enforcement
        .deletable_types
        .iter()
        .map(|t| (t.as_str(), *t))
        .collect();
    if armed && !types.is_empty() {
        out.push(Statement::anywhere(
            "VerifyAccount",
            VERIFY_ACCOUNT_ACTIONS.iter().copied(),
        ));
        let mut conditioned: Vec<&str> = Vec::new();
        for (name, t) in types {
            let by_tag = tag_conditioned(t);
            conditioned.extend(by_tag);
            out.push(Statement::anywhere(
                reap_sid(name),
                actions_for(t)
                    .iter()
                    .copied()
                    .filter(|a| !by_tag.contains(a)),
            ));
        }
        if !conditioned.is_empty() {
            let tagged = Statement::anywhere("DeleteIdentityTagged", conditioned.iter().copied())
                .when(Condition::tagged(config.tags.delete_condition_keys()));
            match untagged {
                Untagged::Refused => out.push(tagged),
                Untagged::Allowed => out.push(Statement::anywhere(
                    "DeleteInDedicatedAccount",
                    conditioned.iter().copied(),
                )),
                Untagged::AllowedIn(accounts) => {
                    out.push(tagged);
                    out.push(
                        Statement::anywhere("DeleteInDedicatedAccounts", conditioned)
                            .when(Condition::in_accounts(accounts.iter().copied())),
                    );
                }
            }
        }
    }
    out
}

/// The policy `request` asks for, for `config`.
pub fn policy(config: &Config, request: &Request<'_>) -> Result<PolicyDocument, IamError> {
    let armed = request.armed || config.enforcement.armed;
    let cost = config.cost_account();
    let config_name = || config.path.display().to_string();
    let statements = match request.principal {
        PolicyHolder::AccountRole => {
            // The Cost Explorer reader of `[cost] role_arn`, in an account that is not
            // audited, reads spend and nothing else.
            if let Some(id) = request.account
                && config.cost.role_arn.is_some()
                && cost == Some(id)
                && !config.aws.accounts.iter().any(|a| a.id == id)
            {
                return Ok(PolicyDocument {
                    version: "2012-10-17",
                    statements: vec![cost_statement()],
                });
            }
            let mut dedicated = request.dedicated;
            if dedicated
                && !config.aws.accounts.iter().any(|a| a.dedicated())
                && config.aws.organization.as_ref().is_none_or(|o| {
                    o.dedicated_ous.is_empty()
                        && !o.units.iter().any(|u| u.settings.dedicated == Some(true))
                })
            {
                return Err(IamError::NoDedicated {
                    config: config_name(),
                });
            }
            if let Some(id) = request.account {
                match config.aws.accounts.iter().find(|a| a.id == id) {
                    Some(acc) if config.aws.role_arn(acc).is_none() => {
                        return Err(IamError::NoRole {
                            account: id.to_owned(),
                        });
                    }
                    // A static entry that says for itself wins over the organization's OUs
                    // (without an organization, not saying is saying shared).
                    Some(acc)
                        if request.dedicated
                            && !acc
                                .settings
                                .dedicated
                                .unwrap_or(config.aws.organization.is_some()) =>
                    {
                        return Err(IamError::NotDedicated {
                            account: id.to_owned(),
                            config: config_name(),
                        });
                    }
                    Some(acc) => dedicated = acc.settings.dedicated.unwrap_or(request.dedicated),
                    // Any account of an organization may be audited, through the template.
                    None if config.aws.organization.is_some() => {}
                    None => {
                        return Err(IamError::UnknownAccount {
                            account: id.to_owned(),
                            config: config_name(),
                        });
                    }
                }
            }
            let with_cost = request.account.is_some() && request.account == cost;
            let untagged = if dedicated {
                Untagged::Allowed
            } else {
                Untagged::Refused
            };
            let mut out = account_statements(config, with_cost, armed, &untagged);
            // The role that reads Organizations lives in one account (management or delegated
            // administrator): its document holds the Organizations reads.
            let org_account = config
                .aws
                .organization
                .as_ref()
                .and_then(|o| o.role_account());
            if request.account.is_some() && request.account == org_account {
                out.push(organizations_statement());
            }
            if request.account.is_some() && request.account == explorer_account(config) {
                out.push(explorer_statement());
            }
            out
        }
        PolicyHolder::Daemon => {
            let mut roles: BTreeSet<String> = config
                .aws
                .accounts
                .iter()
                .filter_map(|a| config.aws.role_arn(a))
                .collect();
            let org = config.aws.organization.as_ref();
            if let Some(org) = org {
                // The organization's accounts, whichever it lists: the template for any account.
                if let Some(t) = &config.aws.assume_role_arn_template {
                    roles.insert(t.replace("{account_id}", "*"));
                }
                roles.extend(org.role_arn.clone());
            }
            roles.extend(config.cost.role_arn.clone());
            let direct: Vec<&str> = config
                .aws
                .accounts
                .iter()
                .filter(|a| config.aws.role_arn(a).is_none())
                .map(|a| a.id.as_str())
                .collect();
            let dedicated: Vec<&str> = config
                .aws
                .accounts
                .iter()
                .filter(|a| a.dedicated() && direct.contains(&a.id.as_str()))
                .map(|a| a.id.as_str())
                .collect();
            let untagged = if dedicated.is_empty() {
                Untagged::Refused
            } else {
                Untagged::AllowedIn(dedicated)
            };
            let mut out = Vec::new();
            if !roles.is_empty() {
                out.push(Statement::allow(
                    "AssumeRole",
                    ASSUME_ROLE_ACTIONS.iter().copied(),
                    roles,
                ));
            }
            if !direct.is_empty() {
                let with_cost = cost.is_some_and(|c| direct.contains(&c));
                out.extend(account_statements(config, with_cost, armed, &untagged));
            }
            if org.is_some_and(|o| o.role_arn.is_none()) {
                out.push(organizations_statement());
            }
            if explorer_account(config).is_some_and(|a| direct.contains(&a)) {
                out.push(explorer_statement());
            }
            out
        }
    };
    Ok(PolicyDocument {
        version: "2012-10-17",
        statements,
    })
}

/// Every type's sweep actions and the creator lookup (the `Discovery` statement with the
/// default `[discovery]`).
pub fn discovery_actions() -> Vec<&'static str> {
    use strum::VariantArray;
    ResourceType::VARIANTS
        .iter()
        .flat_map(|t| sweep::actions(*t).iter().copied())
        .chain(creator::ACTIONS.iter().copied())
        .collect()
}

/// The actions of every policy this module can print (armed, every type allowlisted): the
/// union of its tables.
pub fn every_action() -> BTreeSet<&'static str> {
    INVENTORY_ACTIONS
        .iter()
        .chain(COST_ACTIONS)
        .chain(ASSUME_ROLE_ACTIONS)
        .chain(VERIFY_ACCOUNT_ACTIONS)
        .chain(discovery_actions().iter())
        .chain(organization::ACTIONS)
        .chain(explorer::ACTIONS)
        .chain(crate::reaper::iam::reap_actions().flat_map(|(_, a)| a.iter()))
        .copied()
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use strum::VariantArray;

    use super::*;

    const A: &str = "111111111111";
    const B: &str = "222222222222";
    const C: &str = "333333333333";

    /// A config with the given `[aws]` accounts (and template line) and extra sections.
    fn config(aws: &str, rest: &str) -> Config {
        let text = format!(
            r#"
[api]
listen = "127.0.0.1:0"

[store]
path = "state/ephemera.db"

[rules]
dir = "rules"

[aws]
regions = ["us-east-1"]
{aws}
[schedules]
scan = "*/15 * * * *"
cost = "0 6 * * *"
{rest}
"#
        );
        Config::parse(Path::new("t.toml"), &text, &|_| None)
            .unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    fn accounts_with_template() -> String {
        format!(
            "assume_role_arn_template = \"arn:aws:iam::{{account_id}}:role/ephemera-audit\"\n\
             [[aws.accounts]]\nid = \"{A}\"\n\
             [[aws.accounts]]\nid = \"{B}\"\nassume_role_arn = \"arn:aws:iam::{B}:role/custom\"\n"
        )
    }

    fn all_types() -> String {
        let quoted: Vec<String> = ResourceType::VARIANTS
            .iter()
            .map(|t| format!("\"{t}\""))
            .collect();
        format!("deletable_types = [{}]", quoted.join(", "))
    }

    fn role(armed: bool, account: Option<&str>) -> Request<'_> {
        Request {
            principal: PolicyHolder::AccountRole,
            armed,
            account,
            dedicated: false,
        }
    }

    fn daemon(armed: bool) -> Request<'static> {
        Request {
            principal: PolicyHolder::Daemon,
            armed,
            account: None,
            dedicated: false,
        }
    }

    fn sids(doc: &PolicyDocument) -> Vec<&str> {
        doc.statements.iter().map(|s| s.sid.as_str()).collect()
    }

    #[test]
    fn policies_by_principal_mode_and_account() {
        struct Case {
            name: &'static str,
            aws: String,
            rest: String,
            request: Request<'static>,
            sids: &'static [&'static str],
        }
        let roles = accounts_with_template();
        let direct = format!("[[aws.accounts]]\nid = \"{A}\"\n");
        let mixed = format!(
            "[[aws.accounts]]\nid = \"{A}\"\n\
             [[aws.accounts]]\nid = \"{B}\"\nassume_role_arn = \"arn:aws:iam::{B}:role/r\"\n"
        );
        let allow_two = "[enforcement]\ndeletable_types = [\"s3:bucket\", \"ec2:volume\"]\n";
        let armed_two = "[enforcement]\narmed = true\ndeletable_types = [\"ec2:volume\"]\n";
        let cases = [
            Case {
                name: "role of a non-cost account, unarmed",
                aws: roles.clone(),
                rest: String::new(),
                request: role(false, None),
                sids: &["Inventory", "Discovery"],
            },
            Case {
                name: "role of the cost account (first account by default)",
                aws: roles.clone(),
                rest: String::new(),
                request: role(false, Some(A)),
                sids: &["Inventory", "Discovery", "CostExplorer"],
            },
            Case {
                name: "[cost] role_arn: its account's role reads spend only, unaudited",
                aws: roles.clone(),
                rest: "[cost]\nrole_arn = \"arn:aws:iam::999999999999:role/cost\"\n".into(),
                request: role(false, Some("999999999999")),
                sids: &["CostExplorer"],
            },
            Case {
                name: "[cost] role_arn: the first account no longer reads spend",
                aws: roles.clone(),
                rest: "[cost]\nrole_arn = \"arn:aws:iam::999999999999:role/cost\"\n".into(),
                request: role(false, Some(A)),
                sids: &["Inventory", "Discovery"],
            },
            Case {
                name: "role of another account than [cost] account",
                aws: roles.clone(),
                rest: format!("[cost]\naccount = \"{B}\"\n"),
                request: role(false, Some(A)),
                sids: &["Inventory", "Discovery"],
            },
            Case {
                name: "--armed adds only the allowlisted types, sorted by type",
                aws: roles.clone(),
                rest: allow_two.into(),
                request: role(true, None),
                sids: &[
                    "Inventory",
                    "Discovery",
                    "VerifyAccount",
                    "ReapEc2Volume",
                    "ReapS3Bucket",
                    "DeleteIdentityTagged",
                ],
            },
            Case {
                name: "unarmed with an allowlist: no reap statements",
                aws: roles.clone(),
                rest: allow_two.into(),
                request: role(false, None),
                sids: &["Inventory", "Discovery"],
            },
            Case {
                name: "[enforcement] armed = true counts as --armed",
                aws: roles.clone(),
                rest: armed_two.into(),
                request: role(false, None),
                sids: &[
                    "Inventory",
                    "Discovery",
                    "VerifyAccount",
                    "ReapEc2Volume",
                    "DeleteIdentityTagged",
                ],
            },
            Case {
                name: "armed with nothing allowlisted makes no call: nothing to add",
                aws: roles.clone(),
                rest: String::new(),
                request: role(true, None),
                sids: &["Inventory", "Discovery"],
            },
            Case {
                name: "[discovery] types = [], creators = false: no Discovery statement",
                aws: roles.clone(),
                rest: "[discovery]\ntypes = []\ncreators = false\n".into(),
                request: role(false, None),
                sids: &["Inventory"],
            },
            Case {
                name: "daemon with every account behind a role: AssumeRole only",
                aws: roles.clone(),
                rest: allow_two.into(),
                request: daemon(true),
                sids: &["AssumeRole"],
            },
            Case {
                name: "daemon acting in its own account directly holds that account's needs",
                aws: direct.clone(),
                rest: allow_two.into(),
                request: daemon(true),
                sids: &[
                    "Inventory",
                    "Discovery",
                    "CostExplorer",
                    "VerifyAccount",
                    "ReapEc2Volume",
                    "ReapS3Bucket",
                    "DeleteIdentityTagged",
                ],
            },
            Case {
                name: "daemon, one direct account and one role, cost in the role's account",
                aws: mixed.clone(),
                rest: format!("[cost]\naccount = \"{B}\"\n"),
                request: daemon(false),
                sids: &["AssumeRole", "Inventory", "Discovery"],
            },
        ];
        for c in cases {
            let cfg = config(&c.aws, &c.rest);
            let doc = policy(&cfg, &c.request).unwrap_or_else(|e| panic!("{}: {e}", c.name));
            assert_eq!(sids(&doc), c.sids, "{}", c.name);
            let armed = c.request.armed || cfg.enforcement.armed;
            if !armed {
                let deletes: Vec<&str> = doc
                    .actions()
                    .into_iter()
                    .filter(|a| crate::reaper::aws::changes_something(a))
                    .collect();
                assert!(deletes.is_empty(), "{}: unarmed allows {deletes:?}", c.name);
            }
            for s in &doc.statements {
                assert!(
                    s.sid.chars().all(|ch| ch.is_ascii_alphanumeric()),
                    "{}: sid {}",
                    c.name,
                    s.sid
                );
                let mut sorted = s.actions.clone();
                sorted.sort();
                assert_eq!(sorted, s.actions, "{}: {} sorted", c.name, s.sid);
            }
        }
    }

    #[test]
    fn assume_role_names_exactly_the_configured_role_arns() {
        let aws = format!(
            "{}[[aws.accounts]]\nid = \"{C}\"\nname = \"same role twice is listed once\"\n\
             assume_role_arn = \"arn:aws:iam::{C}:role/ephemera-audit\"\n",
            accounts_with_template()
        );
        let doc = policy(&config(&aws, ""), &daemon(false)).expect("policy");
        let assume = doc.statement("AssumeRole").expect("AssumeRole statement");
        assert_eq!(assume.actions, ["sts:AssumeRole"]);
        assert_eq!(
            assume.resources,
            [
                format!("arn:aws:iam::{A}:role/ephemera-audit"),
                format!("arn:aws:iam::{B}:role/custom"),
                format!("arn:aws:iam::{C}:role/ephemera-audit"),
            ]
        );
        // Every other statement is resource-less (`*`); no action is a wildcard.
        let doc = policy(
            &config(
                &accounts_with_template(),
                &format!("[enforcement]\n{}", all_types()),
            ),
            &role(true, Some(A)),
        )
        .expect("policy");
        for s in &doc.statements {
            assert_eq!(s.resources, ["*"], "{}", s.sid);
            assert!(s.actions.iter().all(|a| !a.contains('*')), "{}", s.sid);
        }
    }

    #[test]
    fn armed_reap_statements_are_the_table_rows_and_nothing_else() {
        let cfg = config(
            &accounts_with_template(),
            &format!("[enforcement]\n{}", all_types()),
        );
        let doc = policy(&cfg, &role(true, Some(A))).expect("policy");
        let tagged = doc
            .statement("DeleteIdentityTagged")
            .expect("tagged deletes");
        for t in ResourceType::VARIANTS {
            let s = doc
                .statement(&reap_sid(t.as_str()))
                .unwrap_or_else(|| panic!("{t}"));
            let by_tag = tag_conditioned(*t);
            let rest: Vec<&str> = actions_for(*t)
                .iter()
                .copied()
                .filter(|a| !by_tag.contains(a))
                .collect();
            assert_eq!(s.actions, rest, "{t}");
            assert!(s.condition.is_none(), "{t}");
            for a in by_tag {
                assert!(tagged.actions.iter().any(|x| x == a), "{t}: {a}");
            }
        }
        // The whole armed, cost-account document is every table's actions minus AssumeRole,
        // which only the daemon's own credentials use, and the Organizations reads (no
        // `[aws.organization]` here).
        let mut want = every_action();
        want.remove("sts:AssumeRole");
        for a in organization::ACTIONS.iter().chain(explorer::ACTIONS) {
            want.remove(a);
        }
        assert_eq!(doc.actions(), want);
        let unarmed = policy(&cfg, &role(false, Some(A))).expect("policy");
        assert_eq!(
            unarmed.actions(),
            INVENTORY_ACTIONS
                .iter()
                .chain(COST_ACTIONS)
                .chain(discovery_actions().iter())
                .copied()
                .collect()
        );
    }

    #[test]
    fn account_errors_name_the_account() {
        let cfg = config(&format!("[[aws.accounts]]\nid = \"{A}\"\n"), "");
        assert_eq!(
            policy(&cfg, &role(false, Some(C))),
            Err(IamError::UnknownAccount {
                account: C.into(),
                config: "t.toml".into()
            })
        );
        assert_eq!(
            policy(&cfg, &role(false, Some(A))),
            Err(IamError::NoRole { account: A.into() })
        );
    }

    #[test]
    fn json_is_a_stable_iam_document() {
        let cfg = config(
            &accounts_with_template(),
            "[discovery]\ntypes = [\"sqs:queue\", \"ec2:volume\"]\n\
             [enforcement]\ndeletable_types = [\"sqs:queue\"]\n",
        );
        let json = policy(&cfg, &role(true, None)).expect("policy").to_json();
        let expected = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Sid": "Inventory",
      "Effect": "Allow",
      "Action": [
        "ec2:DescribeImages",
        "ec2:DescribeInstances",
        "ec2:DescribeLaunchTemplateVersions",
        "tag:GetResources"
      ],
      "Resource": [
        "*"
      ]
    },
    {
      "Sid": "Discovery",
      "Effect": "Allow",
      "Action": [
        "cloudtrail:LookupEvents",
        "ec2:DescribeVolumes",
        "sqs:ListQueues"
      ],
      "Resource": [
        "*"
      ]
    },
    {
      "Sid": "VerifyAccount",
      "Effect": "Allow",
      "Action": [
        "sts:GetCallerIdentity"
      ],
      "Resource": [
        "*"
      ]
    },
    {
      "Sid": "ReapSqsQueue",
      "Effect": "Allow",
      "Action": [
        "sqs:GetQueueUrl",
        "sqs:ListQueueTags"
      ],
      "Resource": [
        "*"
      ]
    },
    {
      "Sid": "DeleteIdentityTagged",
      "Effect": "Allow",
      "Action": [
        "sqs:DeleteQueue"
      ],
      "Resource": [
        "*"
      ],
      "Condition": {
        "Null": {
          "aws:ResourceTag/ephemera:lease-id": "false",
          "aws:ResourceTag/ephemera:project": "false"
        }
      }
    }
  ]
}
"#;
        assert_eq!(json, expected);
    }

    /// With `[aws.organization]`: the daemon may assume the template's role in any account and
    /// reads Organizations itself, or through the organization role, whose account's document
    /// then holds the reads; any account may be asked about.
    #[test]
    fn organization_reads_go_to_whoever_reads_the_organization() {
        let template =
            "assume_role_arn_template = \"arn:aws:iam::{account_id}:role/ephemera-audit\"\n";
        let own = config(&format!("{template}[aws.organization]\n"), "");
        let daemon_doc = policy(&own, &daemon(false)).expect("daemon");
        assert_eq!(sids(&daemon_doc), ["AssumeRole", "Organizations"]);
        assert_eq!(
            daemon_doc
                .statement("AssumeRole")
                .expect("assume")
                .resources,
            ["arn:aws:iam::*:role/ephemera-audit"]
        );
        assert_eq!(
            daemon_doc
                .statement("Organizations")
                .expect("reads")
                .actions,
            organization::ACTIONS.to_vec()
        );
        let any = policy(&own, &role(false, Some(C))).expect("any account of the organization");
        assert_eq!(sids(&any), ["Inventory", "Discovery"]);

        let mgmt = "999999999999";
        let through = config(
            &format!(
                "{template}[aws.organization]\nrole_arn = \"arn:aws:iam::{mgmt}:role/org-read\"\n"
            ),
            "",
        );
        let daemon_doc = policy(&through, &daemon(false)).expect("daemon");
        assert_eq!(sids(&daemon_doc), ["AssumeRole"]);
        assert_eq!(
            daemon_doc
                .statement("AssumeRole")
                .expect("assume")
                .resources,
            [
                "arn:aws:iam::*:role/ephemera-audit",
                "arn:aws:iam::999999999999:role/org-read"
            ]
        );
        let mgmt_doc = policy(&through, &role(false, Some(mgmt))).expect("management");
        assert_eq!(sids(&mgmt_doc), ["Inventory", "Discovery", "Organizations"]);
        let other = policy(&through, &role(false, Some(C))).expect("member");
        assert_eq!(sids(&other), ["Inventory", "Discovery"]);
    }

    /// The index's account searches it; no other account's document says so.
    #[test]
    fn the_index_account_searches_resource_explorer() {
        let cfg = config(
            &accounts_with_template(),
            &format!("[discovery.resource_explorer]\naccount = \"{B}\"\nregion = \"us-east-1\"\n"),
        );
        let index = policy(&cfg, &role(false, Some(B))).expect("index account");
        assert_eq!(sids(&index), ["Inventory", "Discovery", "ResourceExplorer"]);
        assert_eq!(
            index.statement("ResourceExplorer").expect("search").actions,
            ["resource-explorer-2:Search"]
        );
        let other = policy(&cfg, &role(false, Some(A))).expect("another account");
        assert!(other.statement("ResourceExplorer").is_none());
        let direct = config(
            &format!("[[aws.accounts]]\nid = \"{A}\"\n"),
            &format!("[discovery.resource_explorer]\naccount = \"{A}\"\nregion = \"us-east-1\"\n"),
        );
        let daemon_doc = policy(&direct, &daemon(false)).expect("daemon");
        assert!(daemon_doc.statement("ResourceExplorer").is_some());
    }

    /// Shared accounts delete only what carries the configured lease and project tags; a
    /// dedicated account's role deletes the same actions unconditioned; the daemon's own
    /// credentials, acting in a dedicated account directly, may do so there only. S3's deletes
    /// are never conditioned (AWS cannot see a bucket's tags there).
    #[test]
    fn deletes_are_held_to_the_identity_tags_outside_dedicated_accounts() {
        let tags = "[tags]\nlease = \"acme:lease\"\nproject = \"acme:project\"\n";
        let enforcement = "[enforcement]\ndeletable_types = [\"ec2:volume\", \"s3:bucket\"]\n";
        let aws = format!(
            "assume_role_arn_template = \"arn:aws:iam::{{account_id}}:role/ephemera-audit\"\n\
             [[aws.accounts]]\nid = \"{A}\"\n\
             [[aws.accounts]]\nid = \"{B}\"\ndedicated = true\n"
        );
        let cfg = config(&aws, &format!("{tags}{enforcement}"));
        let shared = policy(&cfg, &role(true, Some(A))).expect("shared");
        let tagged = shared.statement("DeleteIdentityTagged").expect("tagged");
        assert_eq!(tagged.actions, ["ec2:DeleteVolume"]);
        let condition = tagged.condition.as_ref().expect("a condition");
        assert_eq!(condition.required_tags(), ["acme:lease", "acme:project"]);
        assert!(shared.statement("DeleteInDedicatedAccount").is_none());
        let s3 = shared.statement("ReapS3Bucket").expect("s3");
        assert!(s3.actions.iter().any(|a| a == "s3:DeleteBucket") && s3.condition.is_none());

        // The dedicated account, by its entry or by --dedicated; its actions are the shared
        // account's, none of them conditioned.
        for req in [
            role(true, Some(B)),
            Request {
                dedicated: true,
                ..role(true, None)
            },
        ] {
            let doc = policy(&cfg, &req).expect("dedicated");
            assert!(doc.statement("DeleteIdentityTagged").is_none());
            let any = doc.statement("DeleteInDedicatedAccount").expect("any tags");
            assert_eq!(any.actions, ["ec2:DeleteVolume"]);
            assert!(doc.statements.iter().all(|s| s.condition.is_none()));
            let mut shared_actions = shared.actions();
            shared_actions.remove("ce:GetCostAndUsage");
            shared_actions.remove("ce:ListCostAllocationTags");
            assert_eq!(doc.actions(), shared_actions);
        }
        assert_eq!(
            policy(
                &cfg,
                &Request {
                    dedicated: true,
                    ..role(true, Some(A))
                }
            ),
            Err(IamError::NotDedicated {
                account: A.into(),
                config: "t.toml".into()
            })
        );
        let none = config(&accounts_with_template(), enforcement);
        assert_eq!(
            policy(
                &none,
                &Request {
                    dedicated: true,
                    ..role(true, None)
                }
            ),
            Err(IamError::NoDedicated {
                config: "t.toml".into()
            })
        );

        // The daemon's own credentials in a dedicated account and a shared one.
        let direct = config(
            &format!(
                "[[aws.accounts]]\nid = \"{A}\"\n[[aws.accounts]]\nid = \"{B}\"\ndedicated = true\n"
            ),
            &format!("{tags}{enforcement}"),
        );
        let doc = policy(&direct, &daemon(true)).expect("daemon");
        let json: serde_json::Value = serde_json::from_str(&doc.to_json()).expect("json");
        let by_sid = |sid: &str| {
            json["Statement"]
                .as_array()
                .and_then(|a| a.iter().find(|s| s["Sid"] == sid))
                .cloned()
                .unwrap_or_else(|| panic!("{sid}"))
        };
        assert_eq!(
            by_sid("DeleteIdentityTagged")["Condition"],
            serde_json::json!({"Null": {"aws:ResourceTag/acme:lease": "false",
                                        "aws:ResourceTag/acme:project": "false"}})
        );
        assert_eq!(
            by_sid("DeleteInDedicatedAccounts")["Condition"],
            serde_json::json!({"StringEquals": {"aws:ResourceAccount": B}})
        );
        let no_dedicated = config(
            &format!("[[aws.accounts]]\nid = \"{A}\"\n"),
            &format!("{tags}{enforcement}"),
        );
        let doc = policy(&no_dedicated, &daemon(true)).expect("daemon");
        assert!(doc.statement("DeleteIdentityTagged").is_some());
        assert!(doc.statement("DeleteInDedicatedAccounts").is_none());
    }

    #[test]
    fn reap_sids() {
        assert_eq!(reap_sid("ec2:security-group"), "ReapEc2SecurityGroup");
        assert_eq!(reap_sid("s3:bucket"), "ReapS3Bucket");
        assert_eq!(reap_sid("logs:log-group"), "ReapLogsLogGroup");
    }
}
