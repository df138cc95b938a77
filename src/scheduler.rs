//! Cron scheduling of tasks (tokio-cron-scheduler, UTC). A tick that finds its task still
//! running is skipped and counted, never queued. Each task's nominal interval is exported as
//! `ephemera_task_schedule_interval_seconds`, which the staleness alerts divide by.

use anyhow::Context;
use chrono::{DateTime, TimeDelta, Utc};
use tokio_cron_scheduler::{Job, JobScheduler};

use crate::config::{CronSchedule, Schedules};
use crate::leader::Leadership;
use crate::metrics::Metrics;
use crate::model::TaskName;
use crate::tasks::Tasks;

/// Fires looked at by [`nominal_interval`] at most (a week of a per-second cron is 604,800).
const MAX_FIRES: usize = 10_000;

/// The nominal interval of `cron` as seen from `from`: the longest gap between two consecutive
/// fires in the week after `from`, and at least the gap between the next two fires (so a
/// monthly cron has one); `None` when it fires fewer than twice more.
///
/// The longest gap rather than the next one, because alerts fire at twice this interval: with
/// the next gap, an irregular cron (`0 9 * * 1-5`: 24h, then 72h over the weekend) would look
/// stale every weekend; a week covers every weekday pattern.
pub fn nominal_interval(cron: &CronSchedule, from: DateTime<Utc>) -> Option<TimeDelta> {
    let cron = cron.cron().ok()?;
    let horizon = from + TimeDelta::days(7);
    let mut prev = cron.find_next_occurrence(&from, false).ok()?;
    let mut longest: Option<TimeDelta> = None;
    // Not croner's `iter_after`: it skips the second right after each fire.
    for _ in 1..MAX_FIRES {
        let Ok(next) = cron.find_next_occurrence(&prev, false) else {
            break;
        };
        let gap = next - prev;
        longest = Some(longest.map_or(gap, |l| l.max(gap)));
        if next > horizon {
            break;
        }
        prev = next;
    }
    longest
}

/// Sets `ephemera_task_schedule_interval_seconds{task}` for each scheduled task.
fn export_intervals(metrics: &Metrics, schedules: &Schedules, now: DateTime<Utc>) {
    for (task, cron) in [
        (TaskName::Scan, &schedules.scan),
        (TaskName::Cost, &schedules.cost),
    ] {
        match nominal_interval(cron, now) {
            Some(gap) => metrics
                .task_schedule_interval
                .with_label_values(&[task.as_str()])
                .set(gap.num_milliseconds() as f64 / 1000.0),
            None => {
                tracing::warn!(%task, cron = %cron.expr, "the cron fires fewer than twice more: no schedule interval exported")
            }
        }
    }
}

/// Whether this replica runs `task`'s tick: only the leader does (the others' ticks are no
/// skip: nothing of theirs was due).
fn leads(leadership: &Leadership, task: TaskName) -> bool {
    let leads = leadership.is_leader();
    if !leads {
        tracing::debug!(%task, "not leading: the leader runs this tick");
    }
    leads
}

/// Starts the scheduler with the scan and cost jobs, which run on the leader only; the caller
/// shuts it down.
pub async fn start(
    tasks: Tasks,
    leadership: Leadership,
    schedules: &Schedules,
    metrics: &Metrics,
    now: DateTime<Utc>,
) -> anyhow::Result<JobScheduler> {
    export_intervals(metrics, schedules, now);
    let sched = JobScheduler::new()
        .await
        .context("cannot create the scheduler")?;
    let scan_tasks = tasks.clone();
    let scan_leader = leadership.clone();
    let scan = Job::new_async(schedules.scan.with_seconds.as_str(), move |_id, _sched| {
        let (tasks, leader) = (scan_tasks.clone(), scan_leader.clone());
        Box::pin(async move {
            if leads(&leader, TaskName::Scan) {
                tasks.scheduled_scan().await
            }
        })
    })
    .with_context(|| format!("cannot schedule scan `{}`", schedules.scan.expr))?;
    sched.add(scan).await.context("cannot add the scan job")?;
    let cost = Job::new_async(schedules.cost.with_seconds.as_str(), move |_id, _sched| {
        let (tasks, leader) = (tasks.clone(), leadership.clone());
        Box::pin(async move {
            if leads(&leader, TaskName::Cost) {
                tasks.scheduled_cost().await
            }
        })
    })
    .with_context(|| format!("cannot schedule cost `{}`", schedules.cost.expr))?;
    sched.add(cost).await.context("cannot add the cost job")?;
    sched.start().await.context("cannot start the scheduler")?;
    tracing::info!(scan = %schedules.scan.expr, cost = %schedules.cost.expr, "scheduler started (UTC)");
    Ok(sched)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// The interval of `cron` seen from `from` (RFC 3339), in seconds.
    fn check(cron: &str, from: &str, want: Option<i64>) {
        let from = DateTime::parse_from_rfc3339(from)
            .expect("valid time")
            .with_timezone(&Utc);
        let cron = CronSchedule::parse(cron).expect("valid cron");
        let got = nominal_interval(&cron, from).map(|d| d.num_seconds());
        assert_eq!(got, want, "{} from {from}", cron.expr);
    }

    #[test]
    fn interval_is_the_longest_gap_over_the_next_week() {
        const H: i64 = 3600;
        const D: i64 = 24 * H;
        // Regular: the gap between any two fires.
        check("*/15 * * * *", "2026-03-01T09:07:00Z", Some(15 * 60));
        check("0 * * * *", "2026-03-01T09:00:00Z", Some(H));
        check("*/30 * * * * *", "2026-03-01T09:00:00Z", Some(30));
        // Irregular within a day: 8h, 8h, 8h; and 4h then 20h, whichever fire comes next.
        check("0 6,14,22 * * *", "2026-03-01T07:00:00Z", Some(8 * H));
        check("0 6,10 * * *", "2026-03-01T07:00:00Z", Some(20 * H));
        check("0 6,10 * * *", "2026-03-01T11:00:00Z", Some(20 * H));
        // Weekdays only: the weekend gap, seen from a Tuesday (2026-03-03) as from a Saturday.
        check("0 9 * * 1-5", "2026-03-03T10:00:00Z", Some(3 * D));
        check("0 9 * * 1-5", "2026-03-07T10:00:00Z", Some(3 * D));
        // Rarer than weekly: the gap between the next two fires.
        check("0 0 1 * *", "2026-03-15T00:00:00Z", Some(30 * D)); // April 1 to May 1
        check("0 0 1 1 *", "2026-03-01T09:00:00Z", Some(365 * D)); // 2027 to 2028
        // A leap day: 2028-02-29 to 2032-02-29.
        check(
            "0 0 29 2 *",
            "2026-03-01T00:00:00Z",
            Some((365 * 3 + 366) * D),
        );
    }

    #[test]
    fn a_per_second_cron_stops_at_the_fire_limit() {
        let from = Utc
            .with_ymd_and_hms(2026, 3, 1, 9, 0, 0)
            .single()
            .expect("valid time");
        let cron = CronSchedule::parse("* * * * * *").expect("valid cron");
        assert_eq!(nominal_interval(&cron, from), Some(TimeDelta::seconds(1)));
    }
}
