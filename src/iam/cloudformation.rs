//! The account role as a CloudFormation template (`ephemera iam-policy --for account-role
//! --format cloudformation`): the role the daemon assumes in each audited account, its trust in
//! the daemon's principal, and its inline policy — the statements [`super::policy`] prints for
//! an account role, each one that not every account needs under a template condition (Cost
//! Explorer in the cost account; armed; shared or dedicated), so one template serves a whole
//! StackSet.
//!
//! Architecture Invariant: the statements come from the same builder as the JSON documents
//! ([`template_statements`] is tested to select exactly [`super::policy`]'s for every
//! combination of its parameters), and the YAML is written by hand (a few dozen lines, no YAML
//! crate): every scalar is a JSON string (valid YAML), intrinsic functions in their long form
//! (`Fn::If`, `Ref`), so any YAML parser reads it without CloudFormation's short tags.

use std::fmt::Write as _;

use super::{Statement, Untagged, account_statements};
use crate::config::Config;

/// Template conditions that select statements.
pub const IS_COST_ACCOUNT: &str = "IsCostAccount";
pub const IS_ARMED: &str = "IsArmed";
pub const IS_ARMED_SHARED: &str = "IsArmedShared";
pub const IS_ARMED_DEDICATED: &str = "IsArmedDedicated";

/// The account role's statements, each with the template condition that includes it (`None`:
/// always).
pub fn template_statements(config: &Config) -> Vec<(Option<&'static str>, Statement)> {
    let base = account_statements(config, false, false, &Untagged::Refused);
    let with_cost = account_statements(config, true, false, &Untagged::Refused);
    let shared = account_statements(config, false, true, &Untagged::Refused);
    let dedicated = account_statements(config, false, true, &Untagged::Allowed);
    let mut out: Vec<(Option<&'static str>, Statement)> =
        base.iter().cloned().map(|s| (None, s)).collect();
    out.extend(
        with_cost
            .into_iter()
            .filter(|s| !base.contains(s))
            .map(|s| (Some(IS_COST_ACCOUNT), s)),
    );
    for s in shared.iter().filter(|s| !base.contains(s)) {
        let when = if dedicated.contains(s) {
            IS_ARMED
        } else {
            IS_ARMED_SHARED
        };
        out.push((Some(when), s.clone()));
    }
    out.extend(
        dedicated
            .into_iter()
            .filter(|s| !base.contains(s) && !shared.contains(s))
            .map(|s| (Some(IS_ARMED_DEDICATED), s)),
    );
    out
}

/// A YAML node, written in block style; scalars are JSON strings unless plain.
enum Y {
    Str(String),
    Plain(&'static str),
    List(Vec<Y>),
    Map(Vec<(String, Y)>),
}

fn s(v: impl Into<String>) -> Y {
    Y::Str(v.into())
}

fn map<const N: usize>(entries: [(&str, Y); N]) -> Y {
    Y::Map(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
    )
}

fn reference(name: &'static str) -> Y {
    map([("Ref", Y::Plain(name))])
}

fn condition(name: &'static str) -> Y {
    map([("Condition", Y::Plain(name))])
}

/// A JSON string: a YAML double-quoted scalar, whatever it holds.
fn quoted(v: &str) -> String {
    serde_json::to_string(v).expect("a string always serializes")
}

/// A map key: plain when it is a plain word (`Sid`, `Fn::If`), else quoted; so are words YAML
/// would read as null or a boolean (the `Null` condition operator).
fn key(k: &str) -> String {
    let special = ["null", "true", "false", "yes", "no", "on", "off", "y", "n"];
    if !special.contains(&k.to_ascii_lowercase().as_str())
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == ':' || c == '_')
        && k.starts_with(|c: char| c.is_ascii_alphabetic())
        && !k.ends_with(':')
    {
        k.to_owned()
    } else {
        quoted(k)
    }
}

impl Y {
    fn scalar(&self) -> Option<String> {
        match self {
            Y::Str(v) => Some(quoted(v)),
            Y::Plain(v) => Some((*v).to_owned()),
            Y::List(l) if l.is_empty() => Some("[]".into()),
            Y::Map(m) if m.is_empty() => Some("{}".into()),
            _ => None,
        }
    }

    fn write(&self, out: &mut String, indent: usize) {
        let pad = " ".repeat(indent);
        match self {
            Y::Map(entries) => {
                for (k, v) in entries {
                    let k = key(k);
                    match v.scalar() {
                        Some(sc) => {
                            let _ = writeln!(out, "{pad}{k}: {sc}");
                        }
                        None => {
                            let _ = writeln!(out, "{pad}{k}:");
                            v.write(out, indent + 2);
                        }
                    }
                }
            }
            Y::List(items) => {
                for item in items {
                    match (item.scalar(), item) {
                        (Some(sc), _) => {
                            let _ = writeln!(out, "{pad}- {sc}");
                        }
                        (None, Y::Map(_)) => {
                            // The map's first line goes after the dash, the rest under it.
                            let mut inner = String::new();
                            item.write(&mut inner, indent + 2);
                            let _ = write!(out, "{pad}- {}", &inner[indent + 2..]);
                        }
                        (None, _) => {
                            let _ = writeln!(out, "{pad}-");
                            item.write(out, indent + 2);
                        }
                    }
                }
            }
            Y::Str(_) | Y::Plain(_) => {
                let _ = writeln!(out, "{pad}{}", self.scalar().unwrap_or_default());
            }
        }
    }
}

fn statement(st: &Statement) -> Y {
    let mut m = vec![
        ("Sid".to_owned(), s(&st.sid)),
        ("Effect".to_owned(), s("Allow")),
        (
            "Action".to_owned(),
            Y::List(st.actions.iter().map(s).collect()),
        ),
        (
            "Resource".to_owned(),
            Y::List(st.resources.iter().map(s).collect()),
        ),
    ];
    if let Some(c) = &st.condition {
        let keys = c
            .keys
            .iter()
            .map(|(k, v)| {
                let v = match v.as_slice() {
                    [one] => s(one),
                    many => Y::List(many.iter().map(s).collect()),
                };
                (k.clone(), v)
            })
            .collect();
        m.push((
            "Condition".to_owned(),
            Y::Map(vec![(c.operator.to_owned(), Y::Map(keys))]),
        ));
    }
    Y::Map(m)
}

/// `Fn::If` of `when`: the statement, or nothing.
fn statement_when(when: Option<&'static str>, st: &Statement) -> Y {
    match when {
        None => statement(st),
        Some(c) => map([(
            "Fn::If",
            Y::List(vec![Y::Plain(c), statement(st), reference("AWS::NoValue")]),
        )]),
    }
}

fn yes_no(description: &str, default: bool) -> Y {
    map([
        ("Type", Y::Plain("String")),
        ("AllowedValues", Y::List(vec![s("false"), s("true")])),
        ("Default", s(if default { "true" } else { "false" })),
        ("Description", s(description)),
    ])
}

/// The role name of the config's `assume_role_arn_template`, else `ephemera-audit`.
fn role_name(config: &Config) -> &str {
    config
        .aws
        .assume_role_arn_template
        .as_deref()
        .and_then(|t| t.rsplit_once(":role/"))
        .map(|(_, name)| name.rsplit('/').next().unwrap_or(name))
        .filter(|n| !n.is_empty() && !n.contains('{'))
        .unwrap_or("ephemera-audit")
}

/// The template for `config`; `armed` is the default of its `Armed` parameter; `generated_by`
/// is the command line named in its header.
pub fn template(config: &Config, armed: bool, generated_by: &str) -> String {
    let [lease, project] = config.tags.delete_condition_keys();
    let mut out = format!(
        "# ephemera's role in an audited account: the statements of `ephemera iam-policy --for\n\
         # account-role` for one config, armed or not, in a shared or a dedicated account, chosen\n\
         # by the parameters. Generated, do not edit; after changing the config, run again:\n\
         #   {generated_by}\n\
         # StackSet-ready: deploy it to every audited account (service-managed permissions, OU\n\
         # targets), with Dedicated=true for the accounts dedicated to ephemeral work (a stack set\n\
         # of their OUs, or a parameter override), where never-tagged resources are reaped.\n\
         # Armed, deletes outside dedicated accounts need the identity tags `{lease}` and\n\
         # `{project}` ([tags] lease and project) on the resource. They are written in, not\n\
         # parameters: CloudFormation cannot put a parameter into a map key (the condition's\n\
         # aws:ResourceTag/KEY).\n"
    );
    let statements: Vec<Y> = template_statements(config)
        .iter()
        .map(|(when, st)| statement_when(*when, st))
        .collect();
    let doc = map([
        ("AWSTemplateFormatVersion", s("2010-09-09")),
        (
            "Description",
            s(
                "ephemera: the role its daemon assumes in an audited account (inventory, \
               discovery, Cost Explorer in the cost account, and armed, deletion)",
            ),
        ),
        (
            "Parameters",
            map([
                (
                    "DaemonPrincipalArn",
                    map([
                        ("Type", Y::Plain("String")),
                        (
                            "AllowedPattern",
                            s("arn:aws[a-z-]*:iam::[0-9]{12}:[a-z]+/?.*"),
                        ),
                        (
                            "Description",
                            s(
                                "The principal the daemon runs as (its instance profile's or task's \
                               role ARN), trusted to assume this role; \
                               arn:aws:iam::ACCOUNT:root trusts a whole account",
                            ),
                        ),
                    ]),
                ),
                (
                    "RoleName",
                    map([
                        ("Type", Y::Plain("String")),
                        ("Default", s(role_name(config))),
                        (
                            "Description",
                            s("The role's name: the one aws.assume_role_arn_template names"),
                        ),
                    ]),
                ),
                (
                    "Armed",
                    yes_no(
                        "true: the account check and deletion of the allowlisted types \
                         ([enforcement] deletable_types); apply before arming the daemon",
                        armed,
                    ),
                ),
                (
                    "Dedicated",
                    yes_no(
                        "true: the account is dedicated to ephemeral work, so deletes are not \
                         held to the identity tags (never-tagged resources are reaped there)",
                        false,
                    ),
                ),
                (
                    "CostAccountId",
                    map([
                        ("Type", Y::Plain("String")),
                        ("Default", s(config.cost_account().unwrap_or_default())),
                        ("AllowedPattern", s("^([0-9]{12})?$")),
                        (
                            "Description",
                            s(
                                "The account Cost Explorer is asked in ([cost] account): its role \
                               alone may read spend",
                            ),
                        ),
                    ]),
                ),
            ]),
        ),
        (
            "Conditions",
            map([
                (
                    IS_ARMED,
                    map([("Fn::Equals", Y::List(vec![reference("Armed"), s("true")]))]),
                ),
                (
                    "IsDedicated",
                    map([(
                        "Fn::Equals",
                        Y::List(vec![reference("Dedicated"), s("true")]),
                    )]),
                ),
                (
                    IS_ARMED_SHARED,
                    map([(
                        "Fn::And",
                        Y::List(vec![
                            condition(IS_ARMED),
                            map([("Fn::Not", Y::List(vec![condition("IsDedicated")]))]),
                        ]),
                    )]),
                ),
                (
                    IS_ARMED_DEDICATED,
                    map([(
                        "Fn::And",
                        Y::List(vec![condition(IS_ARMED), condition("IsDedicated")]),
                    )]),
                ),
                (
                    IS_COST_ACCOUNT,
                    map([(
                        "Fn::Equals",
                        Y::List(vec![
                            reference("AWS::AccountId"),
                            reference("CostAccountId"),
                        ]),
                    )]),
                ),
            ]),
        ),
        (
            "Resources",
            map([(
                "Role",
                map([
                    ("Type", s("AWS::IAM::Role")),
                    (
                        "Properties",
                        map([
                            ("RoleName", reference("RoleName")),
                            (
                                "Description",
                                s("Assumed by the ephemera daemon (see ephemera iam-policy)"),
                            ),
                            (
                                "AssumeRolePolicyDocument",
                                map([
                                    ("Version", s("2012-10-17")),
                                    (
                                        "Statement",
                                        Y::List(vec![map([
                                            ("Effect", s("Allow")),
                                            (
                                                "Principal",
                                                map([("AWS", reference("DaemonPrincipalArn"))]),
                                            ),
                                            ("Action", s("sts:AssumeRole")),
                                        ])]),
                                    ),
                                ]),
                            ),
                            (
                                "Policies",
                                Y::List(vec![map([
                                    ("PolicyName", s("ephemera")),
                                    (
                                        "PolicyDocument",
                                        map([
                                            ("Version", s("2012-10-17")),
                                            ("Statement", Y::List(statements)),
                                        ]),
                                    ),
                                ])]),
                            ),
                        ]),
                    ),
                ]),
            )]),
        ),
        (
            "Outputs",
            map([(
                "RoleArn",
                map([
                    (
                        "Description",
                        s("The role's ARN, for aws.assume_role_arn(_template)"),
                    ),
                    (
                        "Value",
                        map([("Fn::GetAtt", Y::List(vec![s("Role"), s("Arn")]))]),
                    ),
                ]),
            )]),
        ),
    ]);
    doc.write(&mut out, 0);
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::iam::{PolicyHolder, Request, policy};

    const COST: &str = "111111111111";
    const OTHER: &str = "222222222222";

    fn config(enforcement: &str, cost_dedicated: bool) -> Config {
        let text = format!(
            r#"
[api]
listen = "127.0.0.1:0"
[store]
path = "state/ephemera.db"
[rules]
dir = "rules"
[tags]
lease = "acme:lease"
[aws]
regions = ["us-east-1"]
assume_role_arn_template = "arn:aws:iam::{{account_id}}:role/acme-audit"
[[aws.accounts]]
id = "{COST}"
dedicated = {cost_dedicated}
[aws.organization]
dedicated_ous = ["ou-ab12-cdef3456"]
[schedules]
scan = "*/15 * * * *"
cost = "0 6 * * *"
[cost]
account = "{COST}"
{enforcement}
"#
        );
        Config::parse(Path::new("t.toml"), &text, &|_| None)
            .unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    /// For every value of its parameters, the template's conditions select exactly the
    /// statements `iam-policy --for account-role` prints for such an account.
    #[test]
    fn the_templates_conditions_select_the_printed_policy() {
        for enforcement in [
            "",
            "[enforcement]\ndeletable_types = [\"s3:bucket\", \"ec2:volume\", \"lambda:function\"]",
        ] {
            for cost_dedicated in [false, true] {
                let cfg = config(enforcement, cost_dedicated);
                let statements = template_statements(&cfg);
                for armed in [false, true] {
                    for dedicated in [false, true] {
                        for account in [COST, OTHER] {
                            // The cost account's entry says whether it is dedicated.
                            if account == COST && dedicated != cost_dedicated {
                                continue;
                            }
                            let holds = |c: &str| match c {
                                IS_ARMED => armed,
                                IS_ARMED_SHARED => armed && !dedicated,
                                IS_ARMED_DEDICATED => armed && dedicated,
                                IS_COST_ACCOUNT => account == COST,
                                other => panic!("unknown condition {other}"),
                            };
                            let selected: Vec<&Statement> = statements
                                .iter()
                                .filter(|(when, _)| when.is_none_or(holds))
                                .map(|(_, s)| s)
                                .collect();
                            let printed = policy(
                                &cfg,
                                &Request {
                                    principal: PolicyHolder::AccountRole,
                                    armed,
                                    account: Some(account),
                                    dedicated,
                                },
                            )
                            .expect("policy");
                            let printed: Vec<&Statement> = printed.statements.iter().collect();
                            assert_eq!(
                                selected, printed,
                                "{enforcement:?} armed {armed} dedicated {dedicated} {account}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn the_template_names_the_configs_role_tags_and_cost_account() {
        let cfg = config("[enforcement]\ndeletable_types = [\"ec2:volume\"]", false);
        let t = template(&cfg, true, "ephemera iam-policy …");
        for want in [
            "    Default: \"acme-audit\"\n",
            "    Default: \"111111111111\"\n",
            "\"aws:ResourceTag/acme:lease\": \"false\"",
            "\"aws:ResourceTag/ephemera:project\": \"false\"",
            "                      \"Null\":\n",
            "#   ephemera iam-policy …\n",
        ] {
            assert!(t.contains(want), "{want:?} not in\n{t}");
        }
        // `Armed` defaults to the config's (or --armed's) state.
        assert!(t.contains("  Armed:\n    Type: String\n    AllowedValues:\n      - \"false\"\n      - \"true\"\n    Default: \"true\"\n"));
        assert!(!t.contains('\t'));
    }
}
