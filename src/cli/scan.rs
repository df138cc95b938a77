//! Passes: `scan` (through the daemon, or `--once` right here), `findings`, `status`.

use super::*;
use crate::http::dto::WalkView;

/// `scan --once`: one pass in this process, then the CI verdict.
pub(super) async fn scan_once(
    config: &std::path::Path,
    fail_on: &[crate::model::Verdict],
    max: Option<u64>,
    out: Output,
    act: bool,
    wait: std::time::Duration,
) -> anyhow::Result<ExitCode> {
    let parts = crate::daemon::open(
        Config::load(config)?,
        std::sync::Arc::new(crate::clock::SystemClock),
    )
    .await?;
    let report = parts.tasks.run_scan_once("cli", "once", act, wait).await?;
    match out {
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Output::Table | Output::Csv => {
            let walks: Vec<WalkView> = report.walks.iter().cloned().map(WalkView::from).collect();
            print!("{}", output::scan_report(&report, &walks))
        }
    }
    let flagged: u64 = fail_on
        .iter()
        .filter_map(|v| report.verdicts.get(v.as_str()))
        .sum();
    if report.outcome == crate::model::RunOutcome::Failed {
        eprintln!("error: the scan failed; see the log");
        return Ok(ExitCode::FAILURE);
    }
    if let Some(max) = max
        && flagged > max
    {
        eprintln!(
            "error: {flagged} resources are {} (at most {max} allowed)",
            fail_on
                .iter()
                .map(|v| v.as_str())
                .collect::<Vec<_>>()
                .join("/")
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// `scan` through the daemon.
/// With `wait`, a pass or reaping already running (the daemon's or another process's on its
/// store) is waited for, up to `lock_wait`, and then this one started.
pub(super) async fn scan_remote(
    client: ClientArgs,
    wait: bool,
    lock_wait: std::time::Duration,
) -> anyhow::Result<ExitCode> {
    let api = client.client()?;
    let started = if wait {
        client::start_when_free("scan-running", lock_wait, || api.start_scan()).await?
    } else {
        api.start_scan().await?
    };
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
                    print!("{}", output::scan_report(&report, &run.walks))
                }
            }
            // A CI step that waits for a pass fails with it; a partial pass (some walks
            // incomplete) did its work where it could, and says so.
            return Ok(match run.run.outcome {
                RunOutcome::Failed | RunOutcome::Interrupted => {
                    eprintln!(
                        "ephemera: scan {run_id} {} (see `ephemera status`)",
                        if run.run.outcome == RunOutcome::Failed {
                            "failed"
                        } else {
                            "was interrupted (the daemon stopped)"
                        }
                    );
                    ExitCode::FAILURE
                }
                RunOutcome::Partial => {
                    eprintln!(
                        "ephemera: scan {run_id} was partial: some walks were incomplete \
                         (see `ephemera status`)"
                    );
                    ExitCode::SUCCESS
                }
                _ => ExitCode::SUCCESS,
            });
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "scan {run_id} still running after an hour"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

pub(super) async fn findings(args: FindingsArgs) -> anyhow::Result<ExitCode> {
    let FindingsArgs {
        client,
        verdict,
        project,
        region,
        account,
        resource_type,
        all,
        limit,
        cursor,
    } = args;
    let api = client.client()?;
    let mut q: Vec<(&str, String)> = vec![("limit", limit.to_string()), ("all", all.to_string())];
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

pub(super) async fn status(client: ClientArgs) -> anyhow::Result<ExitCode> {
    let api = client.client()?;
    let status = api.status().await?;
    match client.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&status)?),
        Output::Table | Output::Csv => print!("{}", output::status_table(&status)),
    }
    Ok(ExitCode::SUCCESS)
}
