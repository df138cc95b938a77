//! `ephemera iam-policy`: prints the least-privilege IAM policy for the config, for the
//! daemon's own credentials or for the role it assumes in each audited account.
//!
//! Architecture Invariant: local and offline — reads the config file (through the one loader,
//! so errors name FILE:LINE) and prints; no AWS call, no daemon. The document is
//! [`crate::iam::policy`]'s; stdout holds only the JSON, hints go to stderr.

use std::process::ExitCode;

use clap::{Args, ValueEnum};

use crate::config::Config;
use crate::iam::{self, PolicyHolder, Request};

use super::ConfigArg;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum PolicyFor {
    /// The daemon's own credentials: sts:AssumeRole on the configured role ARNs, and what
    /// accounts reached without a role need.
    Daemon,
    /// The role assumed in each audited account (`assume_role_arn`, `assume_role_arn_template`).
    AccountRole,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum PolicyFormat {
    /// The IAM policy document.
    Json,
    /// With `--for account-role`: a CloudFormation template (StackSet-ready) of the role, its
    /// trust in the daemon's principal and its policy, armed, dedicated and the cost account
    /// chosen by parameters.
    Cloudformation,
}

#[derive(Debug, Args)]
pub(super) struct IamPolicyArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Include what deleting needs: the account check and, for each type in `[enforcement]
    /// deletable_types` only, its re-read and delete actions. Implied by `armed = true`.
    #[arg(long)]
    armed: bool,
    /// Whose policy to print.
    #[arg(long = "for", value_enum, default_value = "daemon")]
    principal: PolicyFor,
    /// With `--for account-role`: the policy for this account's role (adds Cost Explorer when it
    /// is the `[cost] account`). Without it: the role of any other audited account.
    #[arg(long)]
    account: Option<String>,
    /// With `--for account-role`: the role of an account dedicated to ephemeral work, whose
    /// deletes are not held to the identity tags (never-tagged resources are reaped there).
    /// Implied by `--account` naming an `[[aws.accounts]]` entry with `dedicated = true`; say it
    /// for an account of `[aws.organization] dedicated_ous`.
    #[arg(long)]
    dedicated: bool,
    /// What to print.
    #[arg(long, value_enum, default_value = "json")]
    format: PolicyFormat,
}

pub(super) fn run(args: IamPolicyArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(&args.config.config)?;
    let principal = match args.principal {
        PolicyFor::Daemon => PolicyHolder::Daemon,
        PolicyFor::AccountRole => PolicyHolder::AccountRole,
    };
    anyhow::ensure!(
        (args.account.is_none() && !args.dedicated) || principal == PolicyHolder::AccountRole,
        "--account and --dedicated go with --for account-role"
    );
    if args.format == PolicyFormat::Cloudformation {
        anyhow::ensure!(
            principal == PolicyHolder::AccountRole && args.account.is_none() && !args.dedicated,
            "--format cloudformation goes with --for account-role, without --account or \
             --dedicated (the template's parameters choose those)"
        );
        let armed = args.armed || config.enforcement.armed;
        let command = format!(
            "ephemera iam-policy --for account-role --format cloudformation --config {}{}",
            args.config.config.display(),
            if args.armed { " --armed" } else { "" }
        );
        print!(
            "{}",
            iam::cloudformation::template(&config, armed, &command)
        );
        return Ok(ExitCode::SUCCESS);
    }
    let doc = iam::policy(
        &config,
        &Request {
            principal,
            armed: args.armed,
            account: args.account.as_deref(),
            dedicated: args.dedicated,
        },
    )?;
    print!("{}", doc.to_json());
    let roles = config
        .aws
        .accounts
        .iter()
        .filter(|a| config.aws.role_arn(a).is_some())
        .count();
    match principal {
        PolicyHolder::Daemon if roles > 0 => eprintln!(
            "note: {roles} account(s) are reached through a role; its policy: \
             ephemera iam-policy --for account-role{}",
            if args.armed { " --armed" } else { "" }
        ),
        PolicyHolder::AccountRole if args.account.is_none() => {
            let dedicated: Vec<&str> = config
                .aws
                .accounts
                .iter()
                .filter(|a| a.dedicated() && config.aws.role_arn(a).is_some())
                .map(|a| a.id.as_str())
                .collect();
            if !args.dedicated && !dedicated.is_empty() {
                eprintln!(
                    "note: deletes here are held to the identity tags; account(s) {} are \
                     dedicated to ephemeral work and their role deletes never-tagged resources \
                     too: --account ID (or --dedicated)",
                    dedicated.join(", ")
                );
            }
            if let Some(cost) = config.cost_account() {
                let behind_role = config
                    .aws
                    .accounts
                    .iter()
                    .any(|a| a.id == cost && config.aws.role_arn(a).is_some());
                if behind_role {
                    eprintln!(
                        "note: Cost Explorer is asked in account {cost}; its role's policy: \
                         --account {cost}"
                    );
                }
            }
        }
        _ => {}
    }
    Ok(ExitCode::SUCCESS)
}
