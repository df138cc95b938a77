//! The command line: `ephemera daemon`, local checks (`config`, `rules`, `token`), and an
//! API client for everything else.
//!
//! Exit codes: 0 success, 1 failure (including an API error or a failed check), 2 usage error.
//!
//! Architecture Invariant: client commands only talk HTTP to a daemon; they never open the
//! store, so the CLI works the same against a local or a remote daemon.

mod admin;
mod audit;
mod client;
mod cost;
mod iam_policy;
mod lease;
pub mod output;
mod reap;
mod scan;
mod store;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

use crate::config::{self, Config};
use crate::http::dto::{LeaseView, ReapJobState};
use crate::lease::AcquireRequest;
use crate::logging::{self, LogFormat};
use crate::model::{Decision, RunOutcome};
use crate::resource::ScanReport;
use client::Client;

#[derive(Debug, Parser)]
#[command(
    name = "ephemera",
    version,
    about = "Keeps ephemeral cloud environments honest"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value = "human")]
    log_format: LogFormat,
    /// Log filter (e.g. `debug`, `ephemera=debug,info`); overrides RUST_LOG.
    #[arg(long, global = true)]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct ConfigArg {
    /// Config file.
    #[arg(long, env = "EPHEMERA_CONFIG", default_value = "ephemera.toml")]
    config: PathBuf,
}

#[derive(Debug, Args)]
struct ClientArgs {
    /// Address of the daemon's API.
    #[arg(
        long,
        env = "EPHEMERA_ADDR",
        default_value = "http://127.0.0.1:9477",
        global = true
    )]
    addr: String,
    /// Bearer token for the API (shows in the process list: prefer --token-file or the
    /// environment).
    #[arg(long, env = "EPHEMERA_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// A file holding the bearer token (surrounding whitespace ignored); wins over --token.
    #[arg(long, env = "EPHEMERA_TOKEN_FILE", global = true)]
    token_file: Option<std::path::PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table", global = true)]
    output: Output,
    /// PEM file of the CA certificate(s) that signed the daemon's certificate (an `https://`
    /// address): trusted instead of the system's roots, so only that CA can vouch for the
    /// daemon.
    #[arg(long, env = "EPHEMERA_CA_FILE", global = true)]
    ca_file: Option<PathBuf>,
    /// Give up on one request after this long (`30s`, `2m`); reads and lease calls are tried
    /// again, with back-off, after a timeout, a lost connection or a 5xx.
    #[arg(long, env = "EPHEMERA_TIMEOUT", default_value = "30s", global = true, value_parser = timeout_arg)]
    timeout: std::time::Duration,
}

impl ClientArgs {
    fn client(&self) -> anyhow::Result<Client> {
        let from_file = match &self.token_file {
            Some(path) => {
                let t = std::fs::read_to_string(path).map_err(|e| {
                    anyhow::anyhow!("cannot read the token file {}: {e}", path.display())
                })?;
                let t = t.trim().to_owned();
                if t.is_empty() {
                    anyhow::bail!("the token file {} is empty", path.display());
                }
                Some(t)
            }
            None => None,
        };
        Client::new(
            &self.addr,
            from_file.as_deref().or(self.token.as_deref()),
            self.timeout,
            self.ca_file.as_deref(),
        )
    }
}

fn timeout_arg(s: &str) -> Result<std::time::Duration, String> {
    let d = crate::model::HumanDuration::parse(s)?;
    if d.as_secs() == 0 || d.as_secs() > 3600 {
        return Err("from 1s to 1h".into());
    }
    Ok(std::time::Duration::from_secs(d.as_secs()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Table,
    Json,
    /// `cost` only; other commands print a table.
    Csv,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TagFormat {
    /// Shell `export` lines.
    Env,
    /// A JSON map of tag key to value.
    Json,
    /// A Terraform variables file (save as `ephemera.auto.tfvars`): `ephemera_lease_id` and
    /// `ephemera_tags`, for a provider's `default_tags { tags = var.ephemera_tags }`.
    Terraform,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon (API, metrics, and later the scheduled passes).
    Daemon(ConfigArg),
    /// Validate or print configuration.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Work with the policy rules.
    #[command(subcommand)]
    Rules(RulesCmd),
    /// Make and hash API tokens.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Print the least-privilege IAM policy (JSON) for the config: the daemon's own, or the role
    /// it assumes in each account.
    IamPolicy(iam_policy::IamPolicyArgs),
    /// Print a shell completion script (`ephemera completions bash > /etc/bash_completion.d/ephemera`).
    Completions {
        #[arg(value_enum)]
        shell: CompletionShell,
    },
    /// Print the man page (roff), or with --dir write one page per command into DIR.
    Man {
        /// Write ephemera.1 and ephemera-COMMAND.1 here instead of printing ephemera.1.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Run an audit pass: through the daemon, or with --once right here (a CI audit step).
    Scan {
        #[command(flatten)]
        client: ClientArgs,
        /// Run one pass in this process, without a daemon (uses --config and its store).
        #[arg(long)]
        once: bool,
        #[arg(long, env = "EPHEMERA_CONFIG", default_value = "ephemera.toml")]
        config: PathBuf,
        /// With --once: verdicts counted against --max (comma-separated).
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "expired,released,unknown-lease",
            value_parser = verdict_arg
        )]
        fail_on: Vec<crate::model::Verdict>,
        /// With --once: exit 1 when more resources than this have a --fail-on verdict.
        #[arg(long)]
        max: Option<u64>,
        /// Through the daemon: wait until the pass ends and print its summary (a pass
        /// already running is waited for, up to --lock-wait, and then this one started).
        #[arg(long)]
        wait: bool,
        /// With --once: also run the act step (mark, and delete when armed). Without it a
        /// one-shot pass only audits: it marks nothing and deletes nothing.
        #[arg(long, requires = "once")]
        act: bool,
        /// With --once or --wait: how long to wait for a pass or reaping already running
        /// (the daemon's, or another process's on the same store) to end before giving up
        /// (e.g. `30s`, `10m`).
        #[arg(long, default_value = "10m", value_parser = parse_human_duration)]
        lock_wait: crate::model::HumanDuration,
    },
    /// List findings (open ones unless --all).
    Findings(FindingsArgs),
    /// The last run of each task, and how the last scan's walks ended.
    Status {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The deletion plan: marked resources in the order they would go, and why any wait.
    Plan {
        #[command(flatten)]
        client: ClientArgs,
        /// Also write the plan to this file for review, with a digest of every item's state
        /// (apply it with `reap --plan FILE`).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// On-call reaping: delete these resources now, through every guard but the deadline.
    Reap {
        #[command(flatten)]
        client: ClientArgs,
        /// ARNs of resources with open findings.
        #[arg(required_unless_present = "plan", conflicts_with = "plan")]
        arns: Vec<String>,
        /// Reap exactly the items of a plan written by `plan --out`, each only while its state
        /// is unchanged (the others are refused and listed), through every guard but the
        /// deadline.
        #[arg(long, value_name = "FILE")]
        plan: Option<PathBuf>,
        /// Show what would happen and stop.
        #[arg(long)]
        plan_only: bool,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// The reaper's audit log.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Back up and restore the store (directly, through --config).
    #[command(subcommand)]
    Store(StoreCmd),
    /// Spend from the daemon's store (fetched from Cost Explorer on `[schedules] cost`).
    Cost {
        #[command(flatten)]
        client: ClientArgs,
        /// project, task or region.
        #[arg(long, default_value = "project")]
        by: String,
        /// Whole days back including today (`30d`), or a first day (`2026-03-01`).
        #[arg(long, default_value = "30d")]
        since: String,
        /// Refresh from Cost Explorer first (operator token; billed, about $0.02).
        #[arg(long)]
        refresh: bool,
    },
    /// Email through the configured `[smtp]` relay.
    #[command(subcommand)]
    Mail(MailCmd),
    /// The configured `[[webhooks]]` endpoints.
    #[command(subcommand)]
    Webhook(WebhookCmd),
    /// Acquire, renew, heartbeat, release and inspect leases (through the API).
    Lease {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: LeaseCmd,
    },
}

/// `findings`: filters and paging.
#[derive(Debug, Args)]
struct FindingsArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[arg(long)]
    verdict: Option<String>,
    #[arg(long)]
    project: Option<String>,
    #[arg(long)]
    region: Option<String>,
    #[arg(long)]
    account: Option<String>,
    /// e.g. ec2:instance, s3:bucket.
    #[arg(long = "type")]
    resource_type: Option<String>,
    /// Include resolved findings.
    #[arg(long)]
    all: bool,
    #[arg(long, default_value_t = 100)]
    limit: u32,
    #[arg(long)]
    cursor: Option<String>,
}

#[derive(Debug, Subcommand)]
enum AuditCmd {
    /// List audit records, oldest first.
    List {
        #[command(flatten)]
        client: ClientArgs,
        #[arg(long)]
        arn: Option<String>,
        /// would-delete, deleted, skipped, failed, capped.
        #[arg(long)]
        decision: Option<String>,
        #[arg(long)]
        run: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Check the keyed hash chain; exits 1 and names the record when it is broken. With
    /// --config, reads the store and the audit key directly (the daemon need not run).
    Verify {
        #[command(flatten)]
        client: ClientArgs,
        #[arg(long)]
        config: Option<PathBuf>,
        /// A head published earlier (a pass's log line or on-call summary), as SEQ:HASH: that
        /// record must still be there with that hash, so a removed tail is caught.
        #[arg(long, value_name = "SEQ:HASH", value_parser = clap::value_parser!(crate::audit::AuditHead))]
        head: Option<crate::audit::AuditHead>,
    },
}

#[derive(Debug, Subcommand)]
enum MailCmd {
    /// Send a test message through `[smtp]` now, straight to the relay (no daemon needed).
    Test {
        /// Recipient address.
        #[arg(long)]
        to: String,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// List the dead letters: messages the relay refused for good (read from the store).
    Dead(ConfigArg),
    /// Queue dead letters again (the daemon sends them on its next round).
    Retry {
        /// The dead letters' ids (from `mail dead`).
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        ids: Vec<i64>,
        /// Every dead letter.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCmd {
    /// Check the config file and the policy it points at; prints FILE:LINE:COL on error.
    Check(ConfigArg),
    /// Print the annotated example config.
    Example,
}

#[derive(Debug, Subcommand)]
enum WebhookCmd {
    /// POST a signed test event (`dev.ephemera.test`) to an endpoint now, straight (no daemon
    /// needed); prints its answer, and exits 1 unless it is a 2xx.
    Test {
        /// The endpoint's `name`.
        #[arg(long)]
        endpoint: String,
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(Debug, Subcommand)]
enum RulesCmd {
    /// Run the test cases written in the rules files.
    Test {
        /// Rules directory (holding policy/); defaults to the one the config names.
        #[arg(long)]
        rules: Option<PathBuf>,
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(Debug, Subcommand)]
enum StoreCmd {
    /// A consistent copy of the store in a new file, while the daemon serves.
    Backup {
        #[command(flatten)]
        config: ConfigArg,
        /// The new file.
        to: PathBuf,
    },
    /// Replace the store with a backup (the daemon stopped; the current store is kept beside
    /// it). Reaping of unknown-lease and released resources is then suspended.
    Restore {
        #[command(flatten)]
        config: ConfigArg,
        /// The backup file.
        from: PathBuf,
    },
    /// Confirm a restored store's leases are right: the suspension of reaping ends.
    Confirm {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Move a SQLite store into the empty PostgreSQL store the config names (`[store] url`),
    /// in one transaction, then verify the copied audit chain with the config's audit key.
    /// Stop the daemon on the SQLite store first.
    Copy {
        #[command(flatten)]
        config: ConfigArg,
        /// The SQLite store (`ephemera.db`) to copy.
        #[arg(long)]
        from: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCmd {
    /// Print a new random token and, on the next line, its SHA-256 for `token_sha256`.
    New,
    /// Read a token on stdin and print its SHA-256.
    Hash,
}

#[derive(Debug, Subcommand)]
enum LeaseCmd {
    /// Take a lease; prints the lease, or with --format the tags to apply.
    Acquire {
        #[command(flatten)]
        spec: LeaseSpec,
        /// Expire the lease if no heartbeat arrives within this interval.
        #[arg(long)]
        heartbeat_interval: Option<String>,
        /// Print only the identity tags, in this format.
        #[arg(long, value_enum)]
        format: Option<TagFormat>,
    },
    /// Extend a lease to now + TTL.
    Renew {
        id: String,
        #[arg(long)]
        ttl: Option<String>,
    },
    /// Tell the daemon the task is alive.
    Heartbeat { id: String },
    /// End a lease.
    Release { id: String },
    /// List leases, newest first.
    List {
        #[arg(long)]
        project: Option<String>,
        /// active, expired or released.
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        owner: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Cursor printed by the previous page.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Show one lease.
    Show {
        id: String,
        /// Its whole story instead, oldest first: acquired, renewals, heartbeat gaps, its
        /// end, its resources first and last seen, findings and marks, mail sent, deletions,
        /// teardown complete, spend so far.
        #[arg(long)]
        timeline: bool,
    },
    /// Take a lease, run CMD with its tags in the environment while heartbeating, release it
    /// when CMD ends (also on failure or a signal), and exit with CMD's status. The TTL is
    /// not extended while CMD runs: ask for what the task needs.
    Run {
        #[command(flatten)]
        spec: LeaseSpec,
        /// The lease expires this long after the last heartbeat; heartbeats go every third of
        /// it, so a runner that dies without releasing frees its lease soon.
        #[arg(long, default_value = "5m")]
        heartbeat_interval: String,
        /// Also write the lease's Terraform variables to this file (`ephemera.auto.tfvars`
        /// in a Terraform root module is loaded by itself); removed when CMD ends.
        #[arg(long, value_name = "FILE")]
        tfvars: Option<PathBuf>,
        /// When the registry cannot be reached (no answer or 5xx after retries): `fail` (exit
        /// 1 without running CMD) or `proceed` (run CMD without a lease, and say so).
        #[arg(long, value_enum, default_value_t = IfUnavailable::Fail)]
        if_unavailable: IfUnavailable,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<String>,
    },
}

/// What a lease is asked for with, shared by `lease acquire` and `lease run`.
#[derive(Debug, Args)]
struct LeaseSpec {
    #[arg(long)]
    project: String,
    #[arg(long)]
    task: String,
    /// Who answers for what the task creates (an email address). May be left out when the
    /// token is an ID token whose principal has an `owner_claim`.
    #[arg(long)]
    owner: Option<String>,
    /// Idempotency key (`org/repo#pr-123`): while a lease of the project taken with it is
    /// active, the same key returns that lease, so re-runs share one. Without it, a key is
    /// made for this invocation so its own retries never take two.
    #[arg(long)]
    key: Option<String>,
    /// Time to live, e.g. 90m, 2h, 7d (default: the project's default TTL).
    #[arg(long)]
    ttl: Option<String>,
    /// A label KEY=VALUE (repeatable).
    #[arg(long = "label", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// A region the task will use (repeatable).
    #[arg(long = "region")]
    regions: Vec<String>,
}

impl LeaseSpec {
    /// The acquire request, with a key made for this invocation when none was given: its
    /// retries are then safe (the first attempt may have made the lease without the answer
    /// arriving).
    fn request(self, heartbeat_interval: Option<String>) -> AcquireRequest {
        AcquireRequest {
            project: self.project,
            task: self.task,
            owner: self.owner,
            ttl: self.ttl,
            heartbeat_interval,
            labels: self.labels.into_iter().collect::<BTreeMap<_, _>>(),
            regions: self.regions,
            key: Some(
                self.key
                    .unwrap_or_else(|| format!("cli:{}", uuid::Uuid::new_v4())),
            ),
        }
    }
}

/// `completions`: the shells a script is made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

/// `lease run --if-unavailable`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum IfUnavailable {
    Fail,
    Proceed,
}

/// A verdict as `--fail-on` takes it; clap reports a wrong one as a usage error (exit 2).
fn verdict_arg(s: &str) -> Result<crate::model::Verdict, String> {
    crate::model::Verdict::parse(s).ok_or_else(|| {
        let known: Vec<&str> = crate::model::Verdict::ALL
            .iter()
            .map(|v| v.as_str())
            .collect();
        format!("not a verdict; one of {}", known.join(", "))
    })
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("`{s}` is not KEY=VALUE"))
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        // clap exits 0 for --help/--version and 2 for usage errors.
        Err(e) => e.exit(),
    };
    let log_level = cli.log_level.clone().or_else(|| match cli.command {
        // Client commands keep the terminal quiet unless asked.
        Command::Daemon(_) => None,
        _ => Some(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into())),
    });
    if let Err(e) = logging::init(cli.log_format, log_level.as_deref()) {
        eprintln!("error: {e:#}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            // API messages may quote tag values and labels: no raw control characters.
            eprintln!(
                "error: {}",
                crate::model::printable_lines(&format!("{e:#}"))
            );
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Daemon(c) => admin::daemon(c).await,
        Command::Config(ConfigCmd::Check(c)) => admin::config_check(c).await,
        Command::Config(ConfigCmd::Example) => admin::config_example(),
        Command::Rules(RulesCmd::Test { rules, config }) => admin::rules_test(rules, config),
        Command::IamPolicy(args) => iam_policy::run(args),
        Command::Completions { shell } => {
            print!("{}", completions(shell));
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { dir: None } => {
            std::io::stdout().write_all(&man_page(Cli::command())?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { dir: Some(dir) } => {
            for (name, page) in man_pages()? {
                let path = dir.join(format!("{name}.1"));
                std::fs::write(&path, page)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                println!("{}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Store(StoreCmd::Backup { config, to }) => store::backup(config, to).await,
        Command::Store(StoreCmd::Restore { config, from }) => store::restore(config, from).await,
        Command::Store(StoreCmd::Confirm { config }) => store::confirm(config).await,
        Command::Store(StoreCmd::Copy { config, from }) => store::copy(config, from).await,
        Command::Token(TokenCmd::New) => admin::token_new(),
        Command::Token(TokenCmd::Hash) => admin::token_hash(),
        Command::Mail(MailCmd::Test { to, config }) => admin::mail_test(to, config).await,
        Command::Webhook(WebhookCmd::Test { endpoint, config }) => {
            admin::webhook_test(endpoint, config).await
        }
        Command::Mail(MailCmd::Dead(config)) => store::dead_letters(config).await,
        Command::Mail(MailCmd::Retry { ids, all, config }) => {
            store::retry_dead_letters(config, (!all).then_some(ids)).await
        }
        Command::Lease { client, command } => lease::lease(client, command).await,
        Command::Scan {
            client,
            once,
            config,
            fail_on,
            max,
            wait,
            act,
            lock_wait,
        } => {
            let lock_wait = std::time::Duration::from_secs(lock_wait.as_secs());
            if once {
                scan::scan_once(&config, &fail_on, max, client.output, act, lock_wait).await
            } else {
                scan::scan_remote(client, wait, lock_wait).await
            }
        }
        Command::Findings(args) => scan::findings(args).await,
        Command::Plan { client, out } => reap::plan(client, out).await,
        Command::Reap {
            client,
            arns,
            plan: Some(path),
            plan_only,
            yes,
        } => {
            debug_assert!(arns.is_empty(), "clap: `arns` conflicts with `--plan`");
            reap::reap_reviewed(&client, &path, plan_only, yes).await
        }
        Command::Reap {
            client,
            arns,
            plan: None,
            plan_only,
            yes,
        } => reap::reap(&client, &arns, plan_only, yes).await,
        Command::Audit(AuditCmd::List {
            client,
            arn,
            decision,
            run,
            limit,
            cursor,
        }) => audit::list(client, arn, decision, run, limit, cursor).await,
        Command::Audit(AuditCmd::Verify {
            client,
            config,
            head,
        }) => audit::verify(client, config, head).await,
        Command::Cost {
            client,
            by,
            since,
            refresh,
        } => cost::cost(client, by, since, refresh).await,
        Command::Status { client } => scan::status(client).await,
    }
}

fn parse_human_duration(s: &str) -> Result<crate::model::HumanDuration, String> {
    crate::model::HumanDuration::parse(s)
}

/// The completion script for `shell`, made from the argument definitions themselves.
fn completions(shell: CompletionShell) -> String {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    match shell {
        CompletionShell::Bash => {
            clap_complete::generate(clap_complete::Shell::Bash, &mut cmd, "ephemera", &mut out)
        }
        CompletionShell::Zsh => {
            clap_complete::generate(clap_complete::Shell::Zsh, &mut cmd, "ephemera", &mut out)
        }
        CompletionShell::Fish => {
            clap_complete::generate(clap_complete::Shell::Fish, &mut cmd, "ephemera", &mut out)
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One man page (roff) of `cmd`.
fn man_page(cmd: clap::Command) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd).render(&mut out)?;
    Ok(out)
}

/// `ephemera.1` and one page per command (`ephemera-lease`, `ephemera-lease-run`, …), named
/// as `man` finds them.
fn man_pages() -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    fn walk(
        cmd: &clap::Command,
        name: &str,
        out: &mut Vec<(String, Vec<u8>)>,
    ) -> anyhow::Result<()> {
        let page = cmd
            .clone()
            .name(name.to_owned())
            .bin_name(name.replace('-', " "));
        out.push((name.to_owned(), man_page(page)?));
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            walk(sub, &format!("{name}-{}", sub.get_name()), out)?;
        }
        Ok(())
    }
    let mut cmd = Cli::command();
    cmd.build();
    let mut out = Vec::new();
    walk(&cmd, "ephemera", &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The completion scripts and man pages come from the argument definitions: every command
    /// and a late addition's options are in them, for each shell.
    #[test]
    fn completions_and_man_pages_cover_every_command() {
        let cmd = Cli::command();
        let names: Vec<&str> = cmd.get_subcommands().map(|c| c.get_name()).collect();
        assert!(names.len() > 10, "{names:?}");
        for shell in [
            CompletionShell::Bash,
            CompletionShell::Zsh,
            CompletionShell::Fish,
        ] {
            let script = completions(shell);
            for name in &names {
                assert!(script.contains(name), "{shell:?} completes `{name}`");
            }
            for option in ["--if-unavailable", "--plan", "--tfvars"] {
                assert!(
                    script.contains(option.trim_start_matches('-')),
                    "{shell:?}: {option}"
                );
            }
        }
        assert!(completions(CompletionShell::Bash).contains("complete -F"));
        assert!(completions(CompletionShell::Fish).contains("complete -c ephemera"));
        assert!(completions(CompletionShell::Zsh).starts_with("#compdef ephemera"));

        let top = String::from_utf8(man_page(Cli::command()).expect("renders")).expect("utf-8");
        assert!(top.contains(".TH ephemera 1"), "{top}");
        for name in &names {
            assert!(
                top.contains(&format!("ephemera\\-{}(1)", name.replace('-', "\\-"))),
                "ephemera.1 lists {name}: {top}"
            );
        }
        let pages = man_pages().expect("renders");
        let run = pages
            .iter()
            .find(|(n, _)| n == "ephemera-lease-run")
            .expect("a page for lease run");
        let run = String::from_utf8_lossy(&run.1);
        assert!(
            run.contains("if\\-unavailable") && run.contains(".TH ephemera-lease-run 1"),
            "{run}"
        );
        assert_eq!(
            pages.len(),
            pages
                .iter()
                .map(|(n, _)| n)
                .collect::<std::collections::BTreeSet<_>>()
                .len(),
            "one page per command"
        );
    }
}
