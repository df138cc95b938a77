//! The command line: `ephemera daemon`, local checks (`config`, `rules`, `token`), and an
//! API client for everything else.
//!
//! Exit codes: 0 success, 1 failure (including an API error or a failed check), 2 usage error.
//!
//! Architecture Invariant: client commands only talk HTTP to a daemon; they never open the
//! store, so the CLI works the same against a local or a remote daemon.

mod client;
mod iam_policy;
pub mod output;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};

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
    /// Bearer token for the API.
    #[arg(long, env = "EPHEMERA_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table", global = true)]
    output: Output,
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
    /// A Terraform AWS provider `default_tags` block.
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
            default_value = "expired,released,unknown-lease"
        )]
        fail_on: Vec<String>,
        /// With --once: exit 1 when more resources than this have a --fail-on verdict.
        #[arg(long)]
        max: Option<u64>,
        /// Through the daemon: wait until the pass ends and print its summary.
        #[arg(long)]
        wait: bool,
        /// With --once: also run the act step (mark, and delete when armed). Without it a
        /// one-shot pass only audits: it marks nothing and deletes nothing.
        #[arg(long, requires = "once")]
        act: bool,
        /// With --once: how long to wait for another process's pass or reaping on the same
        /// store to end before giving up (e.g. `30s`, `10m`).
        #[arg(long, default_value = "10m", value_parser = parse_human_duration)]
        lock_wait: crate::model::HumanDuration,
    },
    /// List findings (open ones unless --all).
    Findings {
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
    },
    /// The last run of each task, and how the last scan's walks ended.
    Status {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The deletion plan: marked resources in the order they would go, and why any wait.
    Plan {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// On-call reaping: delete these resources now, through every guard but the deadline.
    Reap {
        #[command(flatten)]
        client: ClientArgs,
        /// ARNs of resources with open findings.
        #[arg(required = true)]
        arns: Vec<String>,
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
    /// Acquire, renew, heartbeat, release and inspect leases (through the API).
    Lease {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: LeaseCmd,
    },
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
}

#[derive(Debug, Subcommand)]
enum ConfigCmd {
    /// Check the config file and the policy it points at; prints FILE:LINE:COL on error.
    Check(ConfigArg),
    /// Print the annotated example config.
    Example,
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
        #[arg(long)]
        project: String,
        #[arg(long)]
        task: String,
        /// Who answers for what the task creates (an email address).
        #[arg(long)]
        owner: String,
        /// Time to live, e.g. 90m, 2h, 7d (default: the project's default TTL).
        #[arg(long)]
        ttl: Option<String>,
        /// Expire the lease if no heartbeat arrives within this interval.
        #[arg(long)]
        heartbeat_interval: Option<String>,
        /// A label KEY=VALUE (repeatable).
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        /// A region the task will use (repeatable).
        #[arg(long = "region")]
        regions: Vec<String>,
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
    Show { id: String },
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
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Daemon(c) => daemon(c).await,
        Command::Config(ConfigCmd::Check(c)) => {
            let config = Config::load(&c.config)?;
            let policy = crate::daemon::load_policy(&config)?;
            println!(
                "ok: {} ({} principals, {} projects, {} accounts × {} regions, enforcement {})",
                config.path.display(),
                config.principals.len(),
                policy.projects().count(),
                config.aws.accounts.len(),
                config.aws.regions.len(),
                if config.enforcement.armed {
                    "ARMED"
                } else {
                    "off"
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Config(ConfigCmd::Example) => {
            print!("{}", config::EXAMPLE);
            Ok(ExitCode::SUCCESS)
        }
        Command::Rules(RulesCmd::Test { rules, config }) => {
            let dir = match rules {
                Some(d) => d,
                None => Config::load(&config.config)?.rules.dir,
            };
            let policy = crate::policy::Policy::load(&dir)?;
            let report = policy.run_cases();
            print!("{report}");
            Ok(if report.failed() == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::IamPolicy(args) => iam_policy::run(args),
        Command::Token(TokenCmd::New) => {
            let token = format!(
                "eph_{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            );
            println!("{token}\n{}", crate::auth::TokenHash::of(&token).to_hex());
            Ok(ExitCode::SUCCESS)
        }
        Command::Token(TokenCmd::Hash) => {
            let mut token = String::new();
            std::io::stdin()
                .read_to_string(&mut token)
                .context("cannot read the token from stdin")?;
            let token = token.trim();
            anyhow::ensure!(!token.is_empty(), "no token on stdin");
            println!("{}", crate::auth::TokenHash::of(token).to_hex());
            Ok(ExitCode::SUCCESS)
        }
        Command::Mail(MailCmd::Test { to, config }) => {
            let config = Config::load(&config.config)?;
            let smtp = config.smtp.as_ref().with_context(|| {
                format!("{}: no [smtp] section to send with", config.path.display())
            })?;
            anyhow::ensure!(
                crate::mail::is_address(&to),
                "--to: `{to}` is not an email address"
            );
            crate::mail::send_test(
                smtp,
                &to,
                crate::clock::Clock::now(&crate::clock::SystemClock),
            )
            .await
            .with_context(|| format!("cannot send the test message to {to}"))?;
            println!(
                "sent a test message to {to} through {}:{}",
                smtp.host, smtp.port
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Lease { client, command } => lease(client, command).await,
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
            if once {
                let wait = std::time::Duration::from_secs(lock_wait.as_secs());
                scan_once(&config, &fail_on, max, client.output, act, wait).await
            } else {
                scan_remote(client, wait).await
            }
        }
        Command::Findings {
            client,
            verdict,
            project,
            region,
            account,
            resource_type,
            all,
            limit,
            cursor,
        } => {
            let api = Client::new(&client.addr, client.token.as_deref())?;
            let mut q: Vec<(&str, String)> =
                vec![("limit", limit.to_string()), ("all", all.to_string())];
            for (k, v) in [
                ("verdict", verdict),
                ("project", project),
                ("region", region),
                ("account", account),
                ("resource_type", resource_type),
                ("cursor", cursor),
            ] {
                if let Some(v) = v {
                    q.push((k, v));
                }
            }
            let page = api.findings(&q).await?;
            match client.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&page)?),
                Output::Table | Output::Csv => {
                    print!("{}", output::findings_table(&page));
                    if let Some(c) = &page.next_cursor {
                        eprintln!("more: --cursor {c}");
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Plan { client } => {
            let api = Client::new(&client.addr, client.token.as_deref())?;
            let plan = api.plan().await?;
            match client.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&plan)?),
                Output::Table | Output::Csv => {
                    print!("{}", output::plan_table(&plan.items, plan.armed))
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Reap {
            client,
            arns,
            plan_only,
            yes,
        } => reap(&client, &arns, plan_only, yes).await,
        Command::Audit(AuditCmd::List {
            client,
            arn,
            decision,
            run,
            limit,
            cursor,
        }) => {
            let api = Client::new(&client.addr, client.token.as_deref())?;
            let mut q: Vec<(&str, String)> = vec![("limit", limit.to_string())];
            for (k, v) in [
                ("arn", arn),
                ("decision", decision),
                ("run_id", run),
                ("cursor", cursor),
            ] {
                if let Some(v) = v {
                    q.push((k, v));
                }
            }
            let page = api.audit(&q).await?;
            match client.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&page)?),
                Output::Table | Output::Csv => {
                    print!("{}", output::audit_table(&page));
                    if let Some(c) = &page.next_cursor {
                        eprintln!("more: --cursor {c}");
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit(AuditCmd::Verify {
            client,
            config,
            head,
        }) => {
            let verdict = match config {
                Some(path) => {
                    let config = Config::load(&path)?;
                    // Opening creates a missing store: a mistyped path would verify as an
                    // intact empty log.
                    anyhow::ensure!(
                        config.store.path.exists(),
                        "no store at {}: nothing to verify",
                        config.store.path.display()
                    );
                    // Read, never created: a verifier that made a new key would check nothing.
                    let key = crate::audit::AuditKey::load(&config.audit.key)?;
                    let store = crate::store::Store::open(&config.store.path)
                        .await?
                        .with_audit_key(key);
                    crate::http::dto::AuditVerdict::from(store.audit_verify(head.clone()).await?)
                }
                None => {
                    let q: Vec<(&str, String)> =
                        head.iter().map(|h| ("head", h.to_string())).collect();
                    Client::new(&client.addr, client.token.as_deref())?
                        .audit_verify(&q)
                        .await?
                }
            };
            match client.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&verdict)?),
                Output::Table | Output::Csv if verdict.ok => {
                    println!(
                        "audit log intact: {} records",
                        verdict.records.unwrap_or_default()
                    );
                    if let Some(h) = &head {
                        println!("published head {h} found in the chain");
                    }
                }
                Output::Table | Output::Csv => println!(
                    "audit log BROKEN at record {}: {}",
                    verdict.broken_at.unwrap_or_default(),
                    verdict.problem.as_deref().unwrap_or("?")
                ),
            }
            Ok(if verdict.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Cost {
            client,
            by,
            since,
            refresh,
        } => {
            let api = Client::new(&client.addr, client.token.as_deref())?;
            if refresh {
                api.refresh_cost().await?;
            }
            let spend = api.cost(&[("by", by.clone()), ("since", since)]).await?;
            match client.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&spend)?),
                Output::Csv => print!("{}", output::cost_csv(&spend)?),
                Output::Table => print!("{}", output::cost_table(&spend)),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { client } => {
            let api = Client::new(&client.addr, client.token.as_deref())?;
            let status = api.status().await?;
            match client.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&status)?),
                Output::Table | Output::Csv => print!("{}", output::status_table(&status)),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `reap`: shows the plan for the ARNs, asks (unless --yes), then starts a reap job in the
/// daemon and follows it to the end (progress on stderr), and prints the results. The job is
/// the daemon's: interrupting this command stops only the following.
async fn reap(
    client: &ClientArgs,
    arns: &[String],
    plan_only: bool,
    yes: bool,
) -> anyhow::Result<ExitCode> {
    use std::io::{BufRead, IsTerminal, Write};
    let api = Client::new(&client.addr, client.token.as_deref())?;
    if plan_only || !yes {
        let planned = api.plan_reap(arns).await?;
        if plan_only {
            match client.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&planned)?),
                Output::Table | Output::Csv => print!("{}", output::reap_plan_table(&planned)),
            }
            return Ok(ExitCode::SUCCESS);
        }
        print!("{}", output::reap_plan_table(&planned));
        let armed = planned.armed;
        eprint!(
            "{} {} resource(s)? Type `yes` to go on: ",
            if armed {
                "Delete"
            } else {
                "Record would-delete for (enforcement is not armed)"
            },
            arns.len()
        );
        std::io::stderr().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if answer.trim() != "yes" {
            eprintln!("nothing done");
            return Ok(ExitCode::FAILURE);
        }
    }
    let tty = std::io::stderr().is_terminal();
    let mut job = api.start_reap(arns).await?;
    let id = job.job_id.clone();
    if !tty {
        eprintln!("reap job {id} started: {} resource(s)", job.total);
    }
    let mut shown = None;
    while job.state == ReapJobState::Running {
        if shown != Some(job.done) {
            if tty {
                eprint!("\r[{}/{}] reaping (job {id}) ...", job.done, job.total);
            } else if shown.is_some() || job.done > 0 {
                eprintln!("{}/{} done", job.done, job.total);
            }
            shown = Some(job.done);
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        job = api.reap_job(&id).await?;
    }
    if tty {
        eprintln!("\r[{}/{}] reaping (job {id}) ... done", job.done, job.total);
    }
    match client.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&job)?),
        Output::Table | Output::Csv => print!("{}", output::reap_results_table(&job.results)),
    }
    if let Some(e) = &job.error {
        eprintln!("error: reap job {id} failed: {e}");
        return Ok(ExitCode::FAILURE);
    }
    let failed = job.results.iter().any(|r| {
        matches!(
            r.outcome,
            Decision::Failed | Decision::Skipped | Decision::Held
        )
    });
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `scan --once`: one pass in this process, then the CI verdict.
async fn scan_once(
    config: &std::path::Path,
    fail_on: &[String],
    max: Option<u64>,
    out: Output,
    act: bool,
    wait: std::time::Duration,
) -> anyhow::Result<ExitCode> {
    for v in fail_on {
        anyhow::ensure!(
            crate::model::Verdict::parse(v).is_some(),
            "--fail-on: `{v}` is not a verdict"
        );
    }
    let parts = crate::daemon::open(
        Config::load(config)?,
        std::sync::Arc::new(crate::clock::SystemClock),
    )
    .await?;
    let report = parts.tasks.run_scan_once("cli", "once", act, wait).await?;
    match out {
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Output::Table | Output::Csv => print!("{}", output::scan_report(&report)),
    }
    let flagged: u64 = fail_on.iter().filter_map(|v| report.verdicts.get(v)).sum();
    if report.outcome == crate::model::RunOutcome::Failed {
        eprintln!("error: the scan failed; see the log");
        return Ok(ExitCode::FAILURE);
    }
    if let Some(max) = max
        && flagged > max
    {
        eprintln!(
            "error: {flagged} resources are {} (at most {max} allowed)",
            fail_on.join("/")
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// `scan` through the daemon.
async fn scan_remote(client: ClientArgs, wait: bool) -> anyhow::Result<ExitCode> {
    let api = Client::new(&client.addr, client.token.as_deref())?;
    let started = api.start_scan().await?;
    let run_id = started.run_id.clone();
    if !wait {
        match client.output {
            Output::Json => println!("{}", serde_json::to_string_pretty(&started)?),
            Output::Table | Output::Csv => println!("scan started: run {run_id}"),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3600);
    loop {
        let run = api.scan(&run_id).await?;
        if run.run.outcome != RunOutcome::Running {
            match client.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&run)?),
                Output::Table | Output::Csv => {
                    let report: ScanReport = serde_json::from_value(run.run.summary.clone())
                        .context("the run's summary is not a scan report")?;
                    print!("{}", output::scan_report(&report))
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "scan {run_id} still running after an hour"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

async fn daemon(c: ConfigArg) -> anyhow::Result<ExitCode> {
    let config = Config::load(&c.config)?;
    let listener = tokio::net::TcpListener::bind(config.api.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.api.listen))?;
    crate::daemon::run(config, listener, shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown requested");
}

async fn lease(args: ClientArgs, cmd: LeaseCmd) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.addr, args.token.as_deref())?;
    let mut out = std::io::stdout().lock();
    let show = |out: &mut dyn Write, l: &LeaseView| -> anyhow::Result<()> {
        match args.output {
            Output::Json => writeln!(out, "{}", serde_json::to_string_pretty(l)?)?,
            Output::Table | Output::Csv => write!(out, "{}", output::lease_details(l))?,
        }
        Ok(())
    };
    match cmd {
        LeaseCmd::Acquire {
            project,
            task,
            owner,
            ttl,
            heartbeat_interval,
            labels,
            regions,
            format,
        } => {
            let req = AcquireRequest {
                project,
                task,
                owner,
                ttl,
                heartbeat_interval,
                labels: labels.into_iter().collect::<BTreeMap<_, _>>(),
                regions,
            };
            let l = client.acquire(&req).await?;
            match format {
                Some(TagFormat::Env) => write!(out, "{}", output::tags_env(&l))?,
                Some(TagFormat::Json) => write!(out, "{}", output::tags_json(&l.tags))?,
                Some(TagFormat::Terraform) => write!(out, "{}", output::tags_terraform(&l.tags))?,
                None => show(&mut out, &l)?,
            }
        }
        LeaseCmd::Renew { id, ttl } => show(&mut out, &client.renew(&id, ttl).await?)?,
        LeaseCmd::Heartbeat { id } => show(&mut out, &client.post_empty(&id, "heartbeat").await?)?,
        LeaseCmd::Release { id } => show(&mut out, &client.post_empty(&id, "release").await?)?,
        LeaseCmd::Show { id } => show(&mut out, &client.show(&id).await?)?,
        LeaseCmd::List {
            project,
            state,
            owner,
            limit,
            cursor,
        } => {
            let mut q: Vec<(&str, String)> = vec![("limit", limit.to_string())];
            for (k, v) in [
                ("project", project),
                ("state", state),
                ("owner", owner),
                ("cursor", cursor),
            ] {
                if let Some(v) = v {
                    q.push((k, v));
                }
            }
            let page = client.list(&q).await?;
            match args.output {
                Output::Json => writeln!(out, "{}", serde_json::to_string_pretty(&page)?)?,
                Output::Table | Output::Csv => {
                    write!(out, "{}", output::lease_table(&page.items))?;
                    if let Some(c) = &page.next_cursor {
                        eprintln!("more: --cursor {c}");
                    }
                }
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn parse_human_duration(s: &str) -> Result<crate::model::HumanDuration, String> {
    crate::model::HumanDuration::parse(s)
}
