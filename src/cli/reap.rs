//! The deletion plan and on-call reaping: `plan`, `reap`.

use super::*;

/// `reap`: shows the plan for the ARNs, asks (unless --yes), then starts a reap job in the
/// daemon and follows it to the end (progress on stderr), and prints the results. The job is
/// the daemon's: interrupting this command stops only the following.
pub(super) async fn reap(
    client: &ClientArgs,
    arns: &[String],
    plan_only: bool,
    yes: bool,
) -> anyhow::Result<ExitCode> {
    use std::io::{BufRead, IsTerminal, Write};
    let api = client.client()?;
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
        eprintln!(
            "error: reap job {id} failed: {}",
            crate::model::printable(e)
        );
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

pub(super) async fn plan(client: ClientArgs) -> anyhow::Result<ExitCode> {
    let api = client.client()?;
    let plan = api.plan().await?;
    match client.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&plan)?),
        Output::Table | Output::Csv => {
            print!("{}", output::plan_table(&plan.items, plan.armed))
        }
    }
    Ok(ExitCode::SUCCESS)
}
