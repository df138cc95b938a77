//! Cron scheduling of tasks (tokio-cron-scheduler, UTC). A tick that finds its task still
//! running is skipped and counted, never queued.

use anyhow::Context;
use tokio_cron_scheduler::{Job, JobScheduler};

use crate::config::Schedules;
use crate::tasks::Tasks;

/// Starts the scheduler with the scan and cost jobs; the caller shuts it down.
pub async fn start(tasks: Tasks, schedules: &Schedules) -> anyhow::Result<JobScheduler> {
    let sched = JobScheduler::new()
        .await
        .context("cannot create the scheduler")?;
    let scan_tasks = tasks.clone();
    let scan = Job::new_async(schedules.scan.with_seconds.as_str(), move |_id, _sched| {
        let tasks = scan_tasks.clone();
        Box::pin(async move { tasks.scheduled_scan().await })
    })
    .with_context(|| format!("cannot schedule scan `{}`", schedules.scan.expr))?;
    sched.add(scan).await.context("cannot add the scan job")?;
    let cost = Job::new_async(schedules.cost.with_seconds.as_str(), move |_id, _sched| {
        let tasks = tasks.clone();
        Box::pin(async move { tasks.scheduled_cost().await })
    })
    .with_context(|| format!("cannot schedule cost `{}`", schedules.cost.expr))?;
    sched.add(cost).await.context("cannot add the cost job")?;
    sched.start().await.context("cannot start the scheduler")?;
    tracing::info!(scan = %schedules.scan.expr, cost = %schedules.cost.expr, "scheduler started (UTC)");
    Ok(sched)
}
