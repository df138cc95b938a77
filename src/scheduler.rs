//! Cron scheduling of tasks (tokio-cron-scheduler, UTC). A tick that finds its task still
//! running is skipped and counted, never queued.

use anyhow::Context;
use tokio_cron_scheduler::{Job, JobScheduler};

use crate::config::Schedules;
use crate::tasks::Tasks;

/// Starts the scheduler with the scan job; the caller shuts it down.
pub async fn start(tasks: Tasks, schedules: &Schedules) -> anyhow::Result<JobScheduler> {
    let sched = JobScheduler::new()
        .await
        .context("cannot create the scheduler")?;
    let scan = Job::new_async(schedules.scan.with_seconds.as_str(), move |_id, _sched| {
        let tasks = tasks.clone();
        Box::pin(async move { tasks.scheduled_scan().await })
    })
    .with_context(|| format!("cannot schedule scan `{}`", schedules.scan.expr))?;
    sched.add(scan).await.context("cannot add the scan job")?;
    sched.start().await.context("cannot start the scheduler")?;
    tracing::info!(scan = %schedules.scan.expr, "scheduler started (UTC)");
    Ok(sched)
}
