//! The cost task: fetch what can still change, store it, and export spend, top tasks and waste
//! from the store.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Datelike, NaiveDate, TimeDelta, Utc};
use serde::Serialize;

use super::fetch::{self, CostError};
use super::{MicroUsd, refresh_start, usd_f64};
use crate::clock::Clock;
use crate::config::Config;
use crate::inventory::AwsClients;
use crate::live::Live;
use crate::metrics::{Metrics, Series};
use crate::model::Lease;
use crate::policy::Policy;
use crate::store::Store;

/// The two groupings the API allows per request: each identity tag by region.
const DIMENSIONS: [&str; 2] = ["project", "task"];

/// What one refresh did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CostReport {
    /// Per grouping, the first day asked for (the last is today).
    pub fetched_from: BTreeMap<String, NaiveDate>,
    pub requests: u64,
    /// Identity tags Cost Explorer does not have active, when that was checked.
    pub inactive_tags: Vec<String>,
}

#[derive(Debug)]
pub struct CostTask {
    config: Arc<Config>,
    store: Store,
    clients: AwsClients,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    /// Label sets each gauge was given, to zero those that vanish.
    /// The projects the rules define: the only `project` label values spend gets.
    policy: Live<Policy>,
    spend_series: Series,
    task_series: Series,
    waste_series: Series,
    /// When the cost allocation tags were last checked, and whether all were active.
    tags_checked: std::sync::Mutex<Option<DateTime<Utc>>>,
}

/// `YYYY-MM-01` of `day`'s month.
fn month_start(day: NaiveDate) -> NaiveDate {
    day.with_day(1).unwrap_or(day)
}

impl CostTask {
    pub fn new(
        config: Arc<Config>,
        policy: Live<Policy>,
        store: Store,
        clients: AwsClients,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        CostTask {
            config,
            policy,
            store,
            clients,
            metrics,
            clock,
            spend_series: Series::default(),
            task_series: Series::default(),
            waste_series: Series::default(),
            tags_checked: std::sync::Mutex::new(None),
        }
    }

    /// The first day any export needs: the month's first, or the rolling window's.
    fn from(&self, today: NaiveDate) -> NaiveDate {
        let rolling = today - TimeDelta::days(i64::from(self.config.cost.rolling_days()) - 1);
        month_start(today).min(rolling)
    }

    /// Fetches each grouping from the first day not stored as final, stores it, checks the
    /// cost allocation tags when spend looks unattributed, and re-exports.
    pub async fn refresh(&self) -> Result<CostReport, CostError> {
        let now = self.clock.now();
        let today = now.date_naive();
        let cost = &self.config.cost;
        let account = self
            .config
            .cost_account()
            .map(str::to_owned)
            .ok_or_else(|| CostError::Invalid("no account to ask Cost Explorer in".into()))?;
        // Cost Explorer has one endpoint, in us-east-1.
        let sdk = match &cost.role_arn {
            Some(role) => self.clients.config_as(Some(role), "us-east-1").await,
            None => self.clients.config_for(&account, "us-east-1").await?,
        };
        let mut report = CostReport::default();
        let final_before = today - TimeDelta::days(i64::from(cost.recent_days));
        let mut tagged_spend = false;
        for (dimension, tag_key) in DIMENSIONS.iter().zip([
            self.config.tags.project.as_str(),
            self.config.tags.task.as_str(),
        ]) {
            let finals = self
                .store
                .final_spend_days(dimension)
                .await
                .map_err(CostError::Store)?;
            let start = refresh_start(today, self.from(today), &finals, cost.recent_days);
            let metrics = &self.metrics;
            let fetched = fetch::cost_by_tag_and_region(
                &sdk,
                tag_key,
                cost.metric.as_str(),
                start,
                today,
                || {
                    metrics.ce_requests.inc();
                    metrics.ce_cost_usd.inc_by(0.01);
                },
            )
            .await?;
            report.requests += fetched.requests;
            report.fetched_from.insert((*dimension).to_owned(), start);
            tagged_spend |= fetched
                .rows
                .iter()
                .any(|r| !r.key.is_empty() && r.micro_usd != 0);
            // Every day asked for is stored, with no spend when the answer had none for it.
            let mut days = Vec::new();
            let mut d = start;
            while d <= today {
                let estimated = fetched
                    .days
                    .iter()
                    .find(|(x, _)| *x == d)
                    .is_some_and(|(_, e)| *e);
                days.push((d, estimated));
                d += TimeDelta::days(1);
            }
            self.store
                .save_spend(dimension, days, fetched.rows, final_before, now)
                .await
                .map_err(CostError::Store)?;
            tracing::info!(grouping = dimension, from = %start, to = %today, requests = fetched.requests, "spend fetched");
        }
        report.inactive_tags = self.check_tags(&sdk, now, tagged_spend).await;
        self.export().await.map_err(CostError::Store)?;
        Ok(report)
    }

    /// ListCostAllocationTags is billed like every Cost Explorer request, so it is asked only
    /// when spend reads as unattributed (none carries a tag value), at most once a day: a
    /// healthy steady state makes no such request.
    async fn check_tags(
        &self,
        sdk: &aws_config::SdkConfig,
        now: DateTime<Utc>,
        tagged_spend: bool,
    ) -> Vec<String> {
        let keys = [
            self.config.tags.project.as_str(),
            self.config.tags.task.as_str(),
        ];
        if tagged_spend {
            for k in keys {
                self.metrics.cost_tag_active.with_label_values(&[k]).set(1);
            }
            return Vec::new();
        }
        let recent = self
            .tags_checked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|at| now - at < TimeDelta::days(1));
        if recent {
            return Vec::new();
        }
        self.metrics.ce_requests.inc();
        self.metrics.ce_cost_usd.inc_by(0.01);
        match fetch::allocation_tags_active(sdk, &keys).await {
            Ok(states) => {
                let inactive: Vec<String> = states
                    .iter()
                    .filter(|(_, a)| !a)
                    .map(|(k, _)| k.clone())
                    .collect();
                for (k, active) in &states {
                    self.metrics
                        .cost_tag_active
                        .with_label_values(&[k])
                        .set(i64::from(*active));
                }
                if !inactive.is_empty() {
                    tracing::warn!(
                        tags = ?inactive,
                        "cost allocation tags are not active: Cost Explorer reports their spend as untagged, so spend per project and task reads $0; activate them in the Billing console (Cost allocation tags), then request a backfill there (or `aws ce start-cost-allocation-tag-backfill --backfill-from DATE`, up to 12 months back) to attribute past spend"
                    );
                }
                *self.tags_checked.lock().unwrap_or_else(|p| p.into_inner()) = Some(now);
                inactive
            }
            Err(e) => {
                tracing::warn!(error = %crate::error_chain(&e), "cannot check the cost allocation tags");
                Vec::new()
            }
        }
    }

    /// Recomputes the spend gauges from the store (no Cost Explorer call).
    pub async fn export(&self) -> Result<(), crate::store::StoreError> {
        let today = self.clock.now().date_naive();
        let cost = &self.config.cost;
        let rolling_label = format!("{}d", cost.rolling_days());
        let rolling_from = today - TimeDelta::days(i64::from(cost.rolling_days()) - 1);
        let windows = [
            ("month".to_owned(), month_start(today)),
            (rolling_label.clone(), rolling_from),
        ];
        let name = |k: &str| {
            if k.is_empty() {
                "untagged".to_owned()
            } else {
                k.to_owned()
            }
        };

        let policy = self.policy.get();
        let mut spend = Vec::new();
        for (label, since) in &windows {
            let totals = self.store.spend_totals("project", *since).await?;
            let folded = fold_projects(
                totals
                    .iter()
                    .map(|t| (t.key.as_str(), t.region.as_str(), t.micro_usd)),
                |p| {
                    crate::model::ProjectName::parse(p)
                        .ok()
                        .is_some_and(|n| policy.project(&n).is_some())
                },
            );
            for ((project, region), m) in folded {
                spend.push((vec![project, region, label.clone()], usd_f64(m)));
            }
        }
        self.spend_series.set(&self.metrics.spend_usd, spend);

        // Each window's task totals, read once: the rolling one also ranks the top tasks,
        // whose set is used for the month's series too.
        let mut task_totals = Vec::new();
        for (label, since) in &windows {
            task_totals.push((label, self.store.spend_totals("task", *since).await?));
        }
        let mut by_task: BTreeMap<String, MicroUsd> = BTreeMap::new();
        for (_, totals) in task_totals.iter().filter(|(l, _)| **l == rolling_label) {
            for t in totals {
                *by_task.entry(name(&t.key)).or_default() += t.micro_usd;
            }
        }
        let mut ranked: Vec<(&String, &MicroUsd)> = by_task
            .iter()
            .filter(|(k, _)| k.as_str() != "untagged")
            .collect();
        ranked.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let top: BTreeSet<String> = ranked
            .iter()
            .take(cost.top_tasks as usize)
            .map(|(k, _)| (*k).clone())
            .collect();
        let mut tasks = Vec::new();
        for (label, totals) in task_totals {
            let mut folded: BTreeMap<String, MicroUsd> = BTreeMap::new();
            for t in totals {
                let k = name(&t.key);
                let k = if k == "untagged" || top.contains(&k) {
                    k
                } else {
                    "other".to_owned()
                };
                *folded.entry(k).or_default() += t.micro_usd;
            }
            for (k, m) in folded {
                tasks.push((vec![k, label.clone()], usd_f64(m)));
            }
        }
        self.task_series.set(&self.metrics.task_spend_usd, tasks);

        let leases = self.store.all_leases().await?;
        let by_day = self.store.spend_by_day("task", rolling_from).await?;
        let waste = waste_by_project(&by_day, &leases);
        self.waste_series.set(
            &self.metrics.waste_usd,
            waste
                .into_iter()
                .map(|(p, m)| (vec![p], usd_f64(m)))
                .collect(),
        );
        Ok(())
    }
}

/// Spend per (project label, region): a project the rules define keeps its name, an empty
/// tag is `untagged`, anything else anyone tagged is summed as `other` (a tag value is not a
/// bounded label).
pub fn fold_projects<'a>(
    totals: impl IntoIterator<Item = (&'a str, &'a str, MicroUsd)>,
    known: impl Fn(&str) -> bool,
) -> BTreeMap<(String, String), MicroUsd> {
    let mut out: BTreeMap<(String, String), MicroUsd> = BTreeMap::new();
    for (key, region, micro) in totals {
        let label = if key.is_empty() {
            "untagged"
        } else if known(key) {
            key
        } else {
            "other"
        };
        *out.entry((label.to_owned(), region.to_owned()))
            .or_default() += micro;
    }
    out
}

/// Spend of a task after its lease ended (expired or released), per project of the lease.
/// A task's spend on a day counts in proportion to the part of the day after the last of its
/// leases ended; a task with a lease still active at the end of the day wastes nothing then.
pub fn waste_by_project(
    by_day: &[(NaiveDate, String, MicroUsd)],
    leases: &[Lease],
) -> BTreeMap<String, MicroUsd> {
    // Per task: the project and the moment its last lease stops (maybe still ahead).
    let mut ends: HashMap<&str, (String, DateTime<Utc>)> = HashMap::new();
    for l in leases {
        let end = l.released_at.unwrap_or_else(|| l.ends_at());
        let e = ends
            .entry(l.task.as_str())
            .or_insert_with(|| (l.project.to_string(), end));
        if end > e.1 {
            *e = (l.project.to_string(), end);
        }
    }
    let mut out: BTreeMap<String, MicroUsd> = BTreeMap::new();
    for (day, task, micro) in by_day {
        let Some((project, end)) = ends.get(task.as_str()) else {
            continue;
        };
        let Some(day_start) = day.and_hms_opt(0, 0, 0).map(|t| t.and_utc()) else {
            continue;
        };
        let day_end = day_start + TimeDelta::days(1);
        if *end >= day_end {
            continue;
        }
        let after = (day_end - (*end).max(day_start)).num_seconds();
        // Integer shares of the day: no float touches money.
        let wasted = i128::from(*micro) * i128::from(after) / 86_400;
        *out.entry(project.clone()).or_default() +=
            MicroUsd::try_from(wasted).unwrap_or(MicroUsd::MAX);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{HumanDuration, LeaseId, ProjectName};

    fn lease(task: &str, project: &str, end: &str, released: bool) -> Lease {
        let end: DateTime<Utc> = end.parse().expect("time");
        Lease {
            id: LeaseId::generate(),
            project: ProjectName::parse(project).expect("project"),
            task: task.into(),
            owner: "a@example.com".into(),
            principal: "ci".into(),
            created_at: end - TimeDelta::hours(2),
            expires_at: end,
            heartbeat_interval: None::<HumanDuration>,
            last_heartbeat_at: None,
            released_at: released.then_some(end),
            labels: Default::default(),
            regions: Vec::new(),
        }
    }

    #[test]
    fn waste_is_the_spend_after_the_lease_ended() {
        let d = |s: &str| s.parse::<NaiveDate>().expect("date");
        let leases = vec![
            // Expired at noon on the 2nd: half of the 2nd and all of the 3rd are waste.
            lease("build 1", "web", "2026-03-02T12:00:00Z", false),
            // Released on the 1st, leased again (same task) until the 5th: nothing wasted
            // before the 5th.
            lease("etl", "data", "2026-03-01T06:00:00Z", true),
            lease("etl", "data", "2026-03-05T00:00:00Z", false),
        ];
        let by_day = vec![
            (d("2026-03-01"), "build 1".to_owned(), 1_000_000),
            (d("2026-03-02"), "build 1".to_owned(), 1_000_000),
            (d("2026-03-03"), "build 1".to_owned(), 2_000_001),
            (d("2026-03-02"), "etl".to_owned(), 5_000_000),
            (d("2026-03-05"), "etl".to_owned(), 3_000_000),
            (d("2026-03-02"), "no lease".to_owned(), 9_000_000),
        ];
        let w = waste_by_project(&by_day, &leases);
        assert_eq!(w.get("web"), Some(&(500_000 + 2_000_001)));
        assert_eq!(w.get("data"), Some(&3_000_000));
        assert_eq!(
            w.len(),
            2,
            "spend of tasks without a lease is not counted: {w:?}"
        );
    }
}

#[cfg(test)]
mod label_tests {
    use super::*;

    #[test]
    fn spend_labels_are_the_rules_projects_untagged_and_other() {
        let got = fold_projects(
            [
                ("web", "us-east-1", 5),
                ("", "us-east-1", 2),
                ("anything-anyone-tagged", "us-east-1", 3),
                ("x\u{1b}[31m", "us-east-1", 4),
                ("web", "eu-west-1", 1),
            ],
            |p| p == "web",
        );
        let want: BTreeMap<(String, String), MicroUsd> = [
            (("other".into(), "us-east-1".into()), 7),
            (("untagged".into(), "us-east-1".into()), 2),
            (("web".into(), "eu-west-1".into()), 1),
            (("web".into(), "us-east-1".into()), 5),
        ]
        .into();
        assert_eq!(got, want);
    }
}
