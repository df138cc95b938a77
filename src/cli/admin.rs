//! Local commands: the daemon itself, config and rules checks, tokens, a test mail.

use super::*;

pub(super) async fn daemon(c: ConfigArg) -> anyhow::Result<ExitCode> {
    let config = Config::load(&c.config)?;
    let listener = tokio::net::TcpListener::bind(config.api.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.api.listen))?;
    crate::daemon::run(config, listener, shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
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
