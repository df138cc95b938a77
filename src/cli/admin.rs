//! Local commands: the daemon itself, config and rules checks, tokens, a test mail.

use super::*;

pub(super) async fn daemon(c: ConfigArg) -> anyhow::Result<ExitCode> {
    let config = Config::load(&c.config)?;
    raise_open_files(config.api.max_connections);
    let listener = tokio::net::TcpListener::bind(config.api.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.api.listen))?;
    crate::daemon::run(config, listener, shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// Descriptors the daemon needs besides the API's connections: the store, AWS and SMTP
/// clients, logs.
const SPARE_FILES: u64 = 1024;

/// Raises the soft limit on open files to what `max_connections` needs, up to the hard
/// limit: systemd and most shells start processes at a soft 1024, below the default cap,
/// and past the limit accept fails for every client (the lease API's too), not only for
/// the excess.
fn raise_open_files(max_connections: u32) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let want = u64::from(max_connections) + SPARE_FILES;
    let limit = getrlimit(Resource::Nofile);
    let current = limit.current.unwrap_or(u64::MAX);
    if current >= want {
        return;
    }
    let to = limit.maximum.map_or(want, |hard| hard.min(want));
    if to > current {
        let raised = Rlimit {
            current: Some(to),
            maximum: limit.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!(error = %e, "cannot raise the open-file limit");
            return;
        }
        tracing::info!(from = current, to, "raised the open-file limit");
    }
    if to < want {
        tracing::warn!(
            limit = to,
            max_connections,
            "the open-file limit is below max_connections + {SPARE_FILES}: raise it \
             (LimitNOFILE=, ulimit -Hn) or lower [api] max_connections"
        );
    }
}

pub(super) async fn config_check(c: ConfigArg) -> anyhow::Result<ExitCode> {
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

pub(super) fn config_example() -> anyhow::Result<ExitCode> {
    print!("{}", config::EXAMPLE);
    Ok(ExitCode::SUCCESS)
}

pub(super) fn rules_test(rules: Option<PathBuf>, config: ConfigArg) -> anyhow::Result<ExitCode> {
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

pub(super) fn token_new() -> anyhow::Result<ExitCode> {
    let token = format!(
        "eph_{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    println!("{token}\n{}", crate::auth::TokenHash::of(&token).to_hex());
    Ok(ExitCode::SUCCESS)
}

pub(super) fn token_hash() -> anyhow::Result<ExitCode> {
    let mut token = String::new();
    std::io::stdin()
        .read_to_string(&mut token)
        .context("cannot read the token from stdin")?;
    let token = token.trim();
    anyhow::ensure!(!token.is_empty(), "no token on stdin");
    println!("{}", crate::auth::TokenHash::of(token).to_hex());
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn mail_test(to: String, config: ConfigArg) -> anyhow::Result<ExitCode> {
    let config = Config::load(&config.config)?;
    let smtp = config
        .smtp
        .as_ref()
        .with_context(|| format!("{}: no [smtp] section to send with", config.path.display()))?;
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

pub(super) async fn webhook_test(endpoint: String, config: ConfigArg) -> anyhow::Result<ExitCode> {
    let config = Config::load(&config.config)?;
    let status = match (&config.slack, endpoint.as_str()) {
        (Some(slack), crate::mail::webhook::SLACK) => {
            crate::mail::webhook::send_slack_test(slack).await?
        }
        _ => {
            let webhooks = crate::webhook::Webhooks::new(&config.webhooks)?;
            crate::mail::webhook::send_test(&webhooks, &endpoint).await?
        }
    };
    println!("webhook `{endpoint}` answered {status}");
    Ok(if status.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
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
