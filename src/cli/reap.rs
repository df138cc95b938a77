//! The deletion plan and on-call reaping: `plan`, `reap`.

use super::*;
use crate::http::dto::{
    CapView, PlanItemView, PlanStatus, PlanView, ReapJobView, ReviewedItem, ReviewedPlanBody,
};

/// `reap`: shows the plan for the ARNs, asks (unless --yes), then starts a reap job in the
/// daemon and follows it to the end (progress on stderr), and prints the results. The job is
/// the daemon's: interrupting this command stops only the following.
pub(super) async fn reap(
    client: &ClientArgs,
    arns: &[String],
    plan_only: bool,
    yes: bool,
) -> anyhow::Result<ExitCode> {
    let api = client.client()?;
    if plan_only || !yes {
        let planned = api.plan_reap(arns, None).await?;
        if plan_only {
            match client.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&planned)?),
                Output::Table | Output::Csv => print!("{}", output::reap_plan_table(&planned)),
            }
            return Ok(ExitCode::SUCCESS);
        }
        print!("{}", output::reap_plan_table(&planned));
        if !confirmed(planned.armed, arns.len(), "")? {
            return Ok(ExitCode::FAILURE);
        }
    }
    let job = api.start_reap(arns, None).await?;
    follow(client, &api, job).await
}

/// Asks on the terminal whether to go on with `n` resources; says so when not.
fn confirmed(armed: bool, n: usize, what: &str) -> anyhow::Result<bool> {
    use std::io::{BufRead, Write};
    eprint!(
        "{} {n} resource(s){what}? Type `yes` to go on: ",
        if armed {
            "Delete"
        } else {
            "Record would-delete for (enforcement is not armed)"
        },
    );
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    let yes = answer.trim() == "yes";
    if !yes {
        eprintln!("nothing done");
    }
    Ok(yes)
}

/// Follows a reap job to its end (progress on stderr) and prints its results; fails when an
/// item was not deleted (failed, skipped, refused or held) or the job failed.
async fn follow(
    client: &ClientArgs,
    api: &client::Client,
    mut job: ReapJobView,
) -> anyhow::Result<ExitCode> {
    use std::io::IsTerminal;
    let tty = std::io::stderr().is_terminal();
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

pub(super) async fn plan(
    client: ClientArgs,
    out: Option<std::path::PathBuf>,
) -> anyhow::Result<ExitCode> {
    let api = client.client()?;
    let plan = api.plan().await?;
    match client.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&plan)?),
        Output::Table | Output::Csv => {
            print!("{}", output::plan_table(&plan.items, plan.armed))
        }
    }
    if let Some(path) = out {
        let file = PlanFile::of(plan);
        write_new_file(&path, &serde_json::to_vec_pretty(&file)?)?;
        eprintln!(
            "wrote {}: {} item(s), {} due now, plan {}; after review, `ephemera reap --plan {}` reaps exactly those still unchanged",
            path.display(),
            file.items.len(),
            file.due(),
            file.digest,
            path.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A plan as `ephemera plan --out` writes it: every marked item for review. `reap --plan`
/// reaps them by hand (the deadline does not apply, every other guard does), each only while
/// its state digest is unchanged.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanFile {
    /// [`PLAN_FORMAT`].
    format: String,
    written_at: chrono::DateTime<chrono::Utc>,
    armed: bool,
    /// Of the items' ARNs and state digests ([`crate::reaper::plan::plan_digest`]).
    digest: String,
    items: Vec<PlanItemView>,
    capped: Vec<CapView>,
}

const PLAN_FORMAT: &str = "ephemera-plan/1";

impl PlanFile {
    fn of(plan: PlanView) -> Self {
        let mut file = PlanFile {
            format: PLAN_FORMAT.into(),
            written_at: chrono::Utc::now(),
            armed: plan.armed,
            digest: String::new(),
            items: plan.items,
            capped: plan.capped,
        };
        file.digest = crate::reaper::plan::plan_digest(
            file.items
                .iter()
                .map(|i| (i.arn.as_str(), i.state_digest.as_str())),
        );
        file
    }

    fn due(&self) -> usize {
        self.items
            .iter()
            .filter(|i| i.status == PlanStatus::Due)
            .count()
    }

    /// What the daemon is sent: the items and the digest the file claims.
    fn body(&self) -> ReviewedPlanBody {
        ReviewedPlanBody {
            digest: self.digest.clone(),
            items: self
                .items
                .iter()
                .map(|i| ReviewedItem {
                    arn: i.arn.clone(),
                    state_digest: i.state_digest.clone(),
                })
                .collect(),
        }
    }

    /// The plan in `path`, refused when it is not one or its digest is not its due items'.
    fn read(path: &std::path::Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the plan {}", path.display()))?;
        let file: PlanFile = serde_json::from_str(&text).with_context(|| {
            format!(
                "{}: not a plan written by `ephemera plan --out`",
                path.display()
            )
        })?;
        anyhow::ensure!(
            file.format == PLAN_FORMAT,
            "{}: format `{}`, this version reads `{PLAN_FORMAT}`",
            path.display(),
            file.format
        );
        let body = file.body();
        let items = body
            .items
            .iter()
            .map(|i| (i.arn.clone(), i.state_digest.clone()))
            .collect();
        crate::reaper::plan::ReviewedPlan::new(&body.digest, items)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Ok(file)
    }
}

/// Writes `bytes` to `path` whole or not at all: a temporary file beside it, synced, then
/// renamed over it (removed if anything fails first).
fn write_new_file(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let name = path
        .file_name()
        .with_context(|| format!("{} is not a file name", path.display()))?;
    let tmp = path.with_file_name(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write {}", path.display()));
    }
    Ok(())
}

/// `reap --plan FILE`: reaps exactly the reviewed plan's items by hand, each only while its
/// state is what the plan pinned; the daemon refuses (and this lists) the others.
pub(super) async fn reap_reviewed(
    client: &ClientArgs,
    path: &std::path::Path,
    plan_only: bool,
    yes: bool,
) -> anyhow::Result<ExitCode> {
    let file = PlanFile::read(path)?;
    let body = file.body();
    if body.items.is_empty() {
        eprintln!(
            "{}: the plan holds no item: nothing to reap",
            path.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let api = client.client()?;
    if plan_only || !yes {
        let checked = api.plan_reap(&[], Some(&body)).await?;
        if plan_only {
            match client.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&checked)?),
                Output::Table | Output::Csv => print!("{}", output::reap_plan_table(&checked)),
            }
            return Ok(ExitCode::SUCCESS);
        }
        print!("{}", output::reap_plan_table(&checked));
        let what = format!(" under the reviewed plan {}", file.digest);
        if !confirmed(checked.armed, body.items.len(), &what)? {
            return Ok(ExitCode::FAILURE);
        }
    }
    let job = api.start_reap(&[], Some(&body)).await?;
    follow(client, &api, job).await
}
