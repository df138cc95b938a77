//! The audit log: `audit list`, `audit verify`.

use super::*;

pub(super) async fn list(
    client: ClientArgs,
    arn: Option<String>,
    decision: Option<String>,
    run: Option<String>,
    limit: u32,
    cursor: Option<String>,
) -> anyhow::Result<ExitCode> {
    let api = client.client()?;
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

pub(super) async fn verify(
    client: ClientArgs,
    config: Option<PathBuf>,
    head: Option<crate::audit::AuditHead>,
) -> anyhow::Result<ExitCode> {
    let verdict = match config {
        Some(path) => {
            let config = Config::load(&path)?;
            // Opening creates a missing SQLite store: a mistyped path would verify as an
            // intact empty log.
            if let Some(path) = config.store.sqlite_path() {
                anyhow::ensure!(
                    path.exists(),
                    "no store at {}: nothing to verify",
                    path.display()
                );
            }
            // Read, never created: a verifier that made a new key would check nothing.
            let key = crate::audit::AuditKey::load(&config.audit.key)?;
            let store = super::store::existing_store(&config)
                .await?
                .with_audit_key(key);
            crate::http::dto::AuditVerdict::from(store.audit_verify(head.clone()).await?)
        }
        None => {
            let q: Vec<(&str, String)> = head.iter().map(|h| ("head", h.to_string())).collect();
            client.client()?.audit_verify(&q).await?
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
