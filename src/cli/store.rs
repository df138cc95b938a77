//! The store itself: `store backup`, `store restore`, `store confirm` (read and written
//! directly through `--config`, like `audit verify --config`).

use super::*;

/// The store the config names; a SQLite file is never created (a mistyped path is an error,
/// not a new, empty store that verifies as an intact log).
pub(super) async fn existing_store(config: &Config) -> anyhow::Result<crate::store::Store> {
    if let Some(path) = config.store.sqlite_path() {
        anyhow::ensure!(path.exists(), "no store at {}", path.display());
    }
    Ok(crate::store::Store::open_at(&config.store.location).await?)
}

/// The SQLite file of `store backup` and `store restore`: a PostgreSQL store is backed up and
/// restored with PostgreSQL's own tools.
fn sqlite_file(config: &Config, what: &str) -> anyhow::Result<PathBuf> {
    config
        .store
        .sqlite_path()
        .map(PathBuf::from)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "the store is PostgreSQL ({}): {what} it with pg_dump and pg_restore (or the \
             database service's snapshots), see the README's runbook",
                config.store.location
            )
        })
}

pub(super) async fn backup(config: ConfigArg, to: PathBuf) -> anyhow::Result<ExitCode> {
    let config = Config::load(&config.config)?;
    let path = sqlite_file(&config, "back up")?;
    anyhow::ensure!(
        !to.exists(),
        "{} exists: back up to a new file",
        to.display()
    );
    let store = existing_store(&config).await?;
    store.backup_to(to.clone()).await?;
    let bytes = std::fs::metadata(&to).map(|m| m.len()).unwrap_or_default();
    println!(
        "backed up {} to {} ({bytes} bytes)",
        path.display(),
        to.display()
    );
    println!(
        "keep the audit key ({}) with your backups, apart from them",
        config.audit.key
    );
    Ok(ExitCode::SUCCESS)
}

/// How recently a serving daemon records that it is alive (every 2 s): a store written to
/// this recently has a daemon on it.
const ALIVE_WITHIN: chrono::TimeDelta = chrono::TimeDelta::seconds(5);

pub(super) async fn restore(config: ConfigArg, from: PathBuf) -> anyhow::Result<ExitCode> {
    let config = Config::load(&config.config)?;
    let path = sqlite_file(&config, "restore")?;
    anyhow::ensure!(from.exists(), "no backup at {}", from.display());
    let now = chrono::Utc::now();
    let mut kept = None;
    let mut last_alive = None;
    if path.exists() {
        let store = crate::store::Store::open(&path).await?;
        last_alive = store.last_alive().await?;
        if let Some(at) = last_alive
            && now - at < ALIVE_WITHIN
        {
            anyhow::bail!(
                "a daemon is serving from {} (alive {}s ago): stop it first",
                path.display(),
                (now - at).num_seconds()
            );
        }
        store.close().await;
        // The current store is kept, whole, beside it: a restore loses nothing.
        let aside = |p: &std::path::Path| {
            let mut s = p.as_os_str().to_owned();
            s.push(format!(".before-restore-{}", now.format("%Y%m%dT%H%M%SZ")));
            PathBuf::from(s)
        };
        for suffix in ["", "-wal", "-shm"] {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            let p = PathBuf::from(p);
            if p.exists() {
                std::fs::rename(&p, aside(&p))
                    .with_context(|| format!("moving {} aside", p.display()))?;
            }
        }
        kept = Some(aside(&path));
    }
    std::fs::copy(&from, &path)?;
    std::fs::File::open(&path)?.sync_all()?;
    let store = crate::store::Store::open(&path).await?;
    if let Some(at) = last_alive {
        store.set_last_alive(at).await?;
    }
    store
        .suspend_reaping(
            format!(
                "the store was restored from {} at {}",
                from.display(),
                now.to_rfc3339()
            ),
            now,
        )
        .await?;
    println!("restored {} from {}", path.display(), from.display());
    if let Some(k) = kept {
        println!("the store it replaced is kept as {}", k.display());
    }
    println!(
        "reaping of unknown-lease and released resources is suspended until `ephemera store \
         confirm`, or {} complete passes in a row find no lease newer than the store knows",
        config.store.restore_clean_passes
    );
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn confirm(config: ConfigArg) -> anyhow::Result<ExitCode> {
    let config = Config::load(&config.config)?;
    let store = existing_store(&config).await?;
    let by = std::env::var("USER").unwrap_or_else(|_| "cli".into());
    match store.confirm_restore(by, chrono::Utc::now()).await? {
        Some(s) => println!(
            "confirmed: reaping of unknown-lease and released resources resumes (suspended since {}: {})",
            s.since.to_rfc3339(),
            s.reason
        ),
        None => println!("nothing was suspended"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `mail dead`: the dead letters, one per line.
pub(super) async fn dead_letters(config: ConfigArg) -> anyhow::Result<ExitCode> {
    let config = Config::load(&config.config)?;
    let store = existing_store(&config).await?;
    let rows: Vec<Vec<String>> = store
        .dead_letters()
        .await?
        .into_iter()
        .map(|r| {
            vec![
                r.id.to_string(),
                r.kind.to_string(),
                r.recipient.unwrap_or_default(),
                r.attempts.to_string(),
                r.dead_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
                r.last_error.unwrap_or_default(),
            ]
        })
        .collect();
    print!(
        "{}",
        super::output::table(
            &["ID", "KIND", "TO", "ATTEMPTS", "DEAD_AT", "LAST_ERROR"],
            &rows
        )
    );
    Ok(ExitCode::SUCCESS)
}

/// `mail retry`: dead letters queued again.
pub(super) async fn retry_dead_letters(
    config: ConfigArg,
    ids: Option<Vec<i64>>,
) -> anyhow::Result<ExitCode> {
    let config = Config::load(&config.config)?;
    let store = existing_store(&config).await?;
    let asked = ids.as_ref().map(Vec::len);
    let n = store.retry_dead_letters(ids).await?;
    println!("{n} dead letter(s) queued again");
    // Naming an id that is not a dead letter is a mistake worth an exit code.
    Ok(match asked {
        Some(a) if a as u64 != n => ExitCode::FAILURE,
        _ => ExitCode::SUCCESS,
    })
}

pub(super) async fn copy(config: ConfigArg, from: PathBuf) -> anyhow::Result<ExitCode> {
    let config = Config::load(&config.config)?;
    anyhow::ensure!(
        config.store.sqlite_path().is_none(),
        "the config's store is SQLite ({}): copy needs a config whose [store] url names the \
         PostgreSQL database to fill",
        config.store.location
    );
    anyhow::ensure!(from.exists(), "no store at {}", from.display());
    // Read, never created: the copied chain must verify under the key that wrote it.
    let key = crate::audit::AuditKey::load(&config.audit.key)?;
    let source = crate::store::Store::open(&from).await?;
    if let Some(at) = source.last_alive().await?
        && chrono::Utc::now() - at < ALIVE_WITHIN
    {
        anyhow::bail!(
            "a daemon is serving from {} (alive {}s ago): stop it first",
            from.display(),
            (chrono::Utc::now() - at).num_seconds()
        );
    }
    let keyed = source.clone().with_audit_key(key.clone());
    let records = keyed
        .audit_verify(None)
        .await?
        .map_err(|b| anyhow::anyhow!("the source's audit chain does not verify: {b:?}"))?;
    let head = keyed.audit_head().await?;
    let target = crate::store::Store::open_at(&config.store.location)
        .await?
        .with_audit_key(key);
    let bar = output::Progress::new("copying");
    let copied = target
        .copy_from(&source, &from, &|table, n, of| bar.step(table, n, of))
        .await;
    bar.finish();
    let copied = copied?;
    for (table, n) in &copied.tables {
        println!("{table:>16}  {n} rows");
    }
    let verdict = target.audit_verify(head.clone()).await?;
    anyhow::ensure!(
        verdict == Ok(records) && target.audit_head().await? == head,
        "the copied audit chain does not verify as the source's did ({records} records, head \
         {head:?}): {verdict:?}; the copy stays in {} for inspection",
        config.store.location
    );
    println!(
        "copied {} into {}; the audit chain verifies ({records} records, the same head)",
        from.display(),
        config.store.location,
    );
    Ok(ExitCode::SUCCESS)
}
