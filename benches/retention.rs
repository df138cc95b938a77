//! The store over months: 90 simulated days of one daily pass over 100,000 live resources with
//! 5% daily churn, with the retention purge running after each pass, against the same days
//! with nothing purged. Reports the pass time and the file's size (database + WAL) along the
//! way: with retention both must level off; without, the file grows with history.
//!
//! The world, driven through the store's API as a pass drives it (no AWS, no HTTP): resources
//! come in leases of 10; each day the oldest 5% of resources go and as many new ones appear,
//! their leases acquired the day they appear and released the day they go (a fifth of them a
//! day early, so their resources show `released` for a pass and open findings that resolve the
//! next day); 4% of resources carry no tags (`untagged`: a finding for their whole life). Each
//! day one message per released lease is queued and sent. The pass is `start_run`, the
//! evaluation and `persist_page` of every page of 100, `finish_walk`, `finish_run`; the purge
//! is `ephemera::tasks::purge` with the shipped `[retention]` defaults (BENCH_HORIZON=`30d`
//! sets every horizon to that instead).
//!
//! `cargo bench --bench retention` (env: BENCH_RESOURCES (100000), BENCH_DAYS (90),
//! BENCH_CHURN_PERCENT (5), BENCH_HORIZON, BENCH_BASELINE=0 to skip the run without
//! retention). `cargo test --benches` runs a tiny world (2,000 resources, 12 days, 2-day
//! horizons) that checks the purge keeps the live set whole.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use common::{ACCOUNT, Counts, REGION};
use ephemera::config::{Horizon, Retention};
use ephemera::model::{
    HumanDuration, IdentityTags, Lease, LeaseId, MailKind, ProjectName, RunOutcome, TaskName,
    WalkOutcome,
};
use ephemera::policy::Policy;
use ephemera::resource::{Observed, WalkRecord};
use ephemera::store::{Quota, Store, StoreError};

const PER_LEASE: u64 = 10;

struct World {
    live: u64,
    per_day: u64,
    days: u64,
    start: DateTime<Utc>,
    policy: Policy,
    keys: IdentityTags,
    /// Lease ids by lease number (`resource / PER_LEASE`), made as they are first needed.
    ids: HashMap<u64, LeaseId>,
}

/// One day's figures.
#[derive(Debug, Clone, Copy, Default)]
struct Day {
    pass: Duration,
    purge: Duration,
    purged: u64,
    opened: u64,
    /// The database file, and its WAL (bounded by SQLite's checkpoints, not by retention).
    db_mb: f64,
    wal_mb: f64,
}

impl World {
    /// Resources live on `day`: `[day * per_day, day * per_day + live)`.
    fn live_range(&self, day: u64) -> std::ops::Range<u64> {
        day * self.per_day..day * self.per_day + self.live
    }

    /// The day lease `j`'s resources go (and the lease is released); a fifth a day earlier.
    fn release_day(&self, j: u64) -> u64 {
        let gone = j * PER_LEASE / self.per_day + 1;
        if common::mix(j ^ 0x5e1ea5e).is_multiple_of(5) {
            gone.saturating_sub(1).max(1)
        } else {
            gone
        }
    }

    fn first_day(&self, j: u64) -> u64 {
        (j * PER_LEASE + 1)
            .saturating_sub(self.live)
            .div_ceil(self.per_day)
    }

    fn observed(&self, i: u64) -> Observed {
        let arn = ephemera::model::Arn::parse(&format!(
            "arn:aws:ec2:{REGION}:{ACCOUNT}:volume/vol-0{i:016x}"
        ))
        .expect("synthetic ARNs are valid");
        let j = i / PER_LEASE;
        let tags = if common::mix(i) % 100 < 4 {
            ephemera::model::Tags::default()
        } else {
            let p = format!("p{:02}", j % common::PROJECTS as u64);
            let lease = self.ids[&j].to_string();
            ephemera::model::Tags::from_pairs([
                ("ephemera:lease-id", lease.as_str()),
                ("ephemera:project", p.as_str()),
                ("ephemera:task", "nightly / build"),
                ("ephemera:owner", "ci-bot@example.com"),
                ("Name", "preview"),
            ])
        };
        Observed {
            account: ACCOUNT.into(),
            region: REGION.into(),
            resource_type: arn.resource_type(),
            arn,
            tags,
            state: None,
            source: ephemera::model::Source::Tagging,
            created_at: None,
            image: None,
        }
    }

    fn lease(&self, j: u64, now: DateTime<Utc>) -> Lease {
        Lease {
            id: self.ids[&j],
            project: ProjectName::parse(&format!("p{:02}", j % common::PROJECTS as u64))
                .expect("valid"),
            task: "nightly / build".into(),
            owner: "ci-bot@example.com".into(),
            principal: "bench".into(),
            created_at: now,
            expires_at: now + TimeDelta::days(60),
            heartbeat_interval: None,
            last_heartbeat_at: None,
            released_at: None,
            labels: Default::default(),
            regions: vec![REGION.into()],
        }
    }

    /// Runs every day; returns each day's figures.
    async fn run(&mut self, dir: &Path, retention: Option<&Retention>) -> Vec<Day> {
        let store = Store::open(&dir.join("ephemera.db"))
            .await
            .expect("store opens");
        let mut leases: HashMap<LeaseId, Lease> = HashMap::new();
        let mut out = Vec::new();
        for day in 0..self.days {
            let now = self.start + TimeDelta::days(day as i64);
            let range = self.live_range(day);
            // Leases: new ones for the resources that appear today, releases for those going.
            let (first_lease, last_lease) = (range.start / PER_LEASE, range.end / PER_LEASE);
            let mut new = Vec::new();
            for j in first_lease..last_lease {
                self.ids.entry(j).or_insert_with(LeaseId::generate);
                if !leases.contains_key(&self.ids[&j]) && self.first_day(j) <= day {
                    let l = self.lease(j, now);
                    leases.insert(l.id, l.clone());
                    new.push(l);
                }
            }
            let mut tasks = tokio::task::JoinSet::new();
            for l in new {
                let store = store.clone();
                tasks.spawn(async move {
                    store
                        .insert_lease(l, now, Quota::<StoreError>::unlimited())
                        .await
                        .expect("lease stored");
                });
            }
            let releasing: Vec<u64> = (first_lease.saturating_sub(self.per_day / PER_LEASE * 2)
                ..last_lease)
                .filter(|&j| self.release_day(j) == day && self.ids.contains_key(&j))
                .collect();
            for &j in &releasing {
                let id = self.ids[&j];
                if let Some(l) = leases.get_mut(&id) {
                    l.released_at = Some(now);
                }
                let store = store.clone();
                tasks.spawn(async move {
                    store
                        .update_lease(id, move |l| {
                            l.released_at = Some(now);
                            Ok::<_, StoreError>(Vec::new())
                        })
                        .await
                        .expect("lease released");
                });
            }
            while tasks.join_next().await.is_some() {}
            // Yesterday's released leases are only history for evaluation.
            leases.retain(|_, l| l.released_at.is_none_or(|r| r >= now - TimeDelta::days(2)));

            let t = Instant::now();
            let opened = self.pass(&store, &leases, now, range).await;
            let pass = t.elapsed();
            self.mail(&store, releasing.len() as u64, day, now).await;

            let (mut purge, mut purged) = (Duration::ZERO, 0);
            if let Some(r) = retention {
                let t = Instant::now();
                let cut = ephemera::tasks::purge_cutoffs(r, now);
                let report = ephemera::tasks::purge(&store, cut, now, &|_, _| {}).await;
                assert!(report.errors.is_empty(), "{:?}", report.errors);
                purge = t.elapsed();
                purged = report.total();
            }
            out.push(Day {
                pass,
                purge,
                purged,
                opened,
                db_mb: file_mb(&dir.join("ephemera.db")),
                wal_mb: file_mb(&dir.join("ephemera.db-wal")),
            });
        }
        // The live set is whole: every resource seen today is still there.
        let live = store
            .row_count(ephemera::model::PurgedTable::Resources)
            .await
            .expect("count");
        assert!(
            live >= self.live,
            "{live} resource rows, {} live",
            self.live
        );
        store.close().await;
        out
    }

    /// One pass over the live range; returns the findings it opened.
    async fn pass(
        &self,
        store: &Store,
        leases: &HashMap<LeaseId, Lease>,
        now: DateTime<Utc>,
        range: std::ops::Range<u64>,
    ) -> u64 {
        let run_id = uuid::Uuid::now_v7().to_string();
        store
            .start_run(run_id.clone(), TaskName::Scan, "bench".into(), now)
            .await
            .expect("run row");
        let mut counts = Counts::default();
        let (mut opened, mut pages) = (0, 0);
        let mut i = range.start;
        while i < range.end {
            let end = (i + 100).min(range.end);
            let page: Vec<Observed> = (i..end).map(|k| self.observed(k)).collect();
            let records =
                common::evaluate_page(page, leases, &self.policy, &self.keys, now, &mut counts);
            opened += store
                .persist_page(run_id.clone(), now, records)
                .await
                .expect("persist")
                .opened;
            pages += 1;
            i = end;
        }
        store
            .finish_walk(
                run_id.clone(),
                WalkRecord {
                    account: ACCOUNT.into(),
                    region: REGION.into(),
                    started_at: now,
                    ended_at: now,
                    outcome: WalkOutcome::Complete,
                    reason: None,
                    pages,
                    resources: range.end - range.start,
                    sweep: None,
                },
            )
            .await
            .expect("finish walk");
        store
            .finish_run(run_id, now, RunOutcome::Success, serde_json::json!({}))
            .await
            .expect("finish run");
        opened
    }

    /// `n` messages queued and sent.
    async fn mail(&self, store: &Store, n: u64, day: u64, now: DateTime<Utc>) {
        let mut tasks = tokio::task::JoinSet::new();
        for k in 0..n {
            let store = store.clone();
            tasks.spawn(async move {
                store
                    .enqueue(
                        MailKind::OwnerDigest,
                        Some("ci-bot@example.com".into()),
                        format!("bench:{day}:{k}"),
                        serde_json::json!({"day": day, "n": k}),
                        now,
                    )
                    .await
                    .expect("queued");
            });
        }
        while tasks.join_next().await.is_some() {}
        let due = store
            .due_messages(&[MailKind::OwnerDigest], None, u32::MAX)
            .await
            .expect("due");
        let mut tasks = tokio::task::JoinSet::new();
        for m in due {
            let store = store.clone();
            tasks.spawn(async move { store.mark_sent(m.id, now).await.expect("sent") });
        }
        while tasks.join_next().await.is_some() {}
    }
}

fn file_mb(path: &Path) -> f64 {
    std::fs::metadata(path).map_or(0.0, |m| m.len() as f64 / (1024.0 * 1024.0))
}

fn horizon(text: &str) -> Retention {
    let h = Horizon::parse(text).expect("a horizon");
    Retention {
        gone_resources: h,
        resolved_findings: h,
        runs: h,
        sent_mail: h,
        dead_mail: Horizon::Never,
        ended_leases: h,
        purge_every: HumanDuration::from_secs(3600),
    }
}

fn report(label: &str, days: &[Day]) {
    let at = |d: usize| days[d.min(days.len() - 1)];
    let every = (days.len() / 9).max(1);
    let mut marks: Vec<usize> = (0..days.len()).step_by(every).collect();
    if marks.last() != Some(&(days.len() - 1)) {
        marks.push(days.len() - 1);
    }
    for d in marks {
        let x = at(d);
        println!(
            "retention: [{label}] day {:>3}: pass {:>6.0} ms, purge {:>5.0} ms ({:>6} rows), findings opened {:>5}, database {:>6.1} MB (WAL {:.1} MB)",
            d + 1,
            x.pass.as_secs_f64() * 1e3,
            x.purge.as_secs_f64() * 1e3,
            x.purged,
            x.opened,
            x.db_mb,
            x.wal_mb
        );
    }
    let mean = |r: std::ops::Range<usize>| {
        let n = r.len().max(1) as f64;
        days[r].iter().map(|d| d.pass.as_secs_f64()).sum::<f64>() * 1e3 / n
    };
    let n = days.len();
    let week = 7.min(n);
    println!(
        "retention: [{label}] pass mean days 2-{}: {:.0} ms; last {week} days: {:.0} ms; database max {:.1} MB, at the end {:.1} MB",
        week + 1,
        mean(1..(week + 1).min(n)),
        mean(n - week..n),
        days.iter().map(|d| d.db_mb).fold(0.0, f64::max),
        days[n - 1].db_mb,
    );
}

fn main() {
    // `cargo test --benches` runs benches with --bench absent; do a tiny run then.
    let quick = !std::env::args().any(|a| a == "--bench");
    let (live, days_n, churn) = if quick {
        (2_000, 12, 5)
    } else {
        (
            common::env_u64("BENCH_RESOURCES", 100_000),
            common::env_u64("BENCH_DAYS", 90),
            common::env_u64("BENCH_CHURN_PERCENT", 5),
        )
    };
    let per_day = (live * churn / 100).max(PER_LEASE) / PER_LEASE * PER_LEASE;
    let live = live / per_day * per_day;
    let retention = if quick {
        horizon("2d")
    } else {
        std::env::var("BENCH_HORIZON")
            .ok()
            .map_or_else(Retention::default, |h| horizon(&h))
    };
    let baseline = !quick && common::env_u64("BENCH_BASELINE", 1) == 1;
    let start = Utc
        .with_ymd_and_hms(2026, 1, 1, 6, 0, 0)
        .single()
        .expect("valid time");
    println!(
        "retention: {live} live resources, {per_day} ({churn}%) gone and new each day, {days_n} days of one pass a day; retention: gone_resources {}, resolved_findings {}, runs {}, sent_mail {}, ended_leases {}",
        retention.gone_resources,
        retention.resolved_findings,
        retention.runs,
        retention.sent_mail,
        retention.ended_leases
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let world = |policy| World {
            live,
            per_day,
            days: days_n,
            start,
            policy,
            keys: IdentityTags::default(),
            ids: HashMap::new(),
        };
        let tmp = common::bench_tmp();
        let dir = tmp.path().join("with");
        std::fs::create_dir_all(&dir).expect("dir");
        let with = world(common::policy()).run(&dir, Some(&retention)).await;
        report("purged", &with);
        if baseline {
            let dir = tmp.path().join("without");
            std::fs::create_dir_all(&dir).expect("dir");
            let without = world(common::policy()).run(&dir, None).await;
            report("kept", &without);
        }
        if quick {
            let end = with.last().map_or(0.0, |d| d.db_mb);
            assert!(
                with.iter().map(|d| d.purged).sum::<u64>() > 0,
                "the tiny world purges something"
            );
            println!("retention: tiny run ok ({end:.1} MB)");
        }
    });
}
