//! The audit pipeline alone, without moto: the real walk (`ephemera::inventory::walk`, AWS SDK
//! and all) against a loopback tagging-API stand-in that replays GetResources pages generated
//! on request, then evaluation and the real store on disk.
//!
//! Target: ≥ 100,000 resources/s walked, evaluated and persisted on one core, with memory flat
//! as the count grows (VmRSS sampled at 10%, 50% and 100% of the walk). The stand-in answers
//! GetResources only, so the configs turn off the sweeps and creator lookups (`[discovery]`);
//! `org_scale` measures those.
//!
//! Phases, each over the same N resources (default 1,000,000 in pages of 100):
//! 1. walk alone: pages fetched and converted, dropped by a no-op `on_page`;
//! 2. evaluate + persist alone: pages built in memory (no HTTP), evaluated, `persist_page`d
//!    one after another into a fresh store, then `finish_walk`;
//!    2b. the same with 1,000 resources per `persist_page` call (ten pages per transaction),
//!    to show what larger commits would buy;
//! 3. the pipeline: walk → evaluate → `persist_page` (one page persisted while the next is
//!    fetched, as `Tasks::walk_one` does) into a fresh store, then `finish_walk`;
//! 4. the same pipeline again over the store of phase 3 (a steady-state pass: every resource
//!    already known, findings unchanged);
//! 5. the daemon's own `Tasks::run_scan` over a fresh store, and 6. again (a second pass).
//!
//! Two probes come first: what `RateLimiter::wait` costs when no wait is due, and a 4 KiB
//! append + fdatasync on the store's disk (the floor of one commit with `synchronous = FULL`).
//!
//! The walk and evaluation run on a current-thread tokio runtime (the "one core"); the store's
//! writer thread and this bench's page server run on threads of their own, so CPU time per
//! thread is printed for each phase. The config's rate limit (15 calls/s at most, i.e. 1,500
//! resources/s) would dominate; the walk here is given `RateLimiter::new(1_000_000)`.
//!
//! `BENCH_STORE=postgres` (under `scripts/with-postgres.sh`) runs phases 2–6 on PostgreSQL.
//!
//! `cargo bench --bench pipeline` (env: BENCH_RESOURCES, BENCH_LEASES, BENCH_PHASES: a comma
//! list of the phases to run, e.g. `2b,5`; default all; 6 needs 5 and 4 needs 3).

mod common;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, TimeZone, Utc};
use common::{ACCOUNT, Counts, REGION, cpu_split, mb, status_kb, thread_cpu};
use ephemera::config::Config;
use ephemera::inventory::{AwsClients, RateLimiter, walk};
use ephemera::metrics::Metrics;
use ephemera::model::IdentityTags;
use ephemera::model::Lease;
use ephemera::model::LeaseId;
use ephemera::policy::Policy;
use ephemera::resource::WalkRecord;
use ephemera::store::Store;

const TARGET: &str = "ResourceGroupsTaggingAPI_20170126.GetResources";

/// The page server's state: everything needed to render any page from its start index.
struct Pages {
    total: u64,
    lease_ids: Vec<String>,
    requests: AtomicU64,
}

impl Pages {
    /// The GetResources answer holding resources `start..start + n` (JSON written by hand:
    /// the synthetic ARNs and tags hold no character that needs escaping).
    fn render(&self, start: u64, n: u64) -> String {
        let end = (start + n).min(self.total);
        let mut out = String::with_capacity(320 * (end - start) as usize + 64);
        out.push_str("{\"PaginationToken\":\"");
        if end < self.total {
            let _ = write!(out, "i-{end}");
        }
        out.push_str("\",\"ResourceTagMappingList\":[");
        for i in start..end {
            let r = common::resource(i, &self.lease_ids, true);
            if i > start {
                out.push(',');
            }
            let _ = write!(out, "{{\"ResourceARN\":\"{}\",\"Tags\":[", r.arn);
            for (j, (k, v)) in r.tags.iter().enumerate() {
                if j > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{{\"Key\":\"{k}\",\"Value\":\"{v}\"}}");
            }
            out.push_str("]}");
        }
        out.push_str("]}");
        out
    }
}

fn amz_json(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/x-amz-json-1.1")],
        body,
    )
        .into_response()
}

async fn get_resources(State(p): State<Arc<Pages>>, headers: HeaderMap, body: Bytes) -> Response {
    p.requests.fetch_add(1, Ordering::Relaxed);
    if headers.get("x-amz-target").and_then(|v| v.to_str().ok()) != Some(TARGET) {
        return amz_json(
            StatusCode::BAD_REQUEST,
            r#"{"__type":"UnknownOperationException","message":"bench server only answers GetResources"}"#.into(),
        );
    }
    let req: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let per_page = req["ResourcesPerPage"].as_u64().unwrap_or(50).clamp(1, 100);
    let start = req["PaginationToken"]
        .as_str()
        .and_then(|t| t.strip_prefix("i-")?.parse().ok())
        .unwrap_or(0);
    amz_json(StatusCode::OK, p.render(start, per_page))
}

/// Runs the page server on a thread (and current-thread runtime) of its own; returns its port
/// and a sender that stops it.
fn start_server(
    pages: Arc<Pages>,
) -> (
    u16,
    std::thread::JoinHandle<()>,
    tokio::sync::oneshot::Sender<()>,
) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let handle = std::thread::Builder::new()
        .name("bench-server".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("server runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                let app = axum::Router::new()
                    .route("/", axum::routing::post(get_resources))
                    .with_state(pages);
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = rx.await;
                    })
                    .await
                    .expect("server runs");
            });
        })
        .expect("spawn server thread");
    (port, handle, tx)
}

/// VmRSS samples taken as the walk passes given resource counts.
struct RssProbe {
    marks: Vec<u64>,
    samples: RefCell<Vec<(u64, u64)>>,
    seen: Cell<u64>,
}

impl RssProbe {
    fn new(total: u64) -> Self {
        RssProbe {
            marks: (1..=10).map(|k| total * k / 10).collect(),
            samples: RefCell::new(Vec::new()),
            seen: Cell::new(0),
        }
    }

    fn add(&self, n: usize) {
        let before = self.seen.get();
        let after = before + n as u64;
        self.seen.set(after);
        if self.marks.iter().any(|&m| before < m && m <= after) {
            self.samples.borrow_mut().push((after, status_kb("VmRSS")));
        }
    }

    /// `at 100000: 31.2 MB, at 500000: …` for the 10%, 50% and 100% marks, and the spread of
    /// all ten.
    fn line(&self) -> String {
        let s = self.samples.borrow();
        let pick = |k: usize| {
            let mark = self.marks[k - 1];
            s.iter()
                .find(|(n, _)| *n >= mark)
                .map_or("-".into(), |(n, kb)| format!("at {n}: {:.1} MB", mb(*kb)))
        };
        let lo = s.iter().map(|x| x.1).min().unwrap_or(0);
        let hi = s.iter().map(|x| x.1).max().unwrap_or(0);
        format!(
            "VmRSS {}, {}, {} (min {:.1} / max {:.1} MB over {} samples)",
            pick(1),
            pick(5),
            pick(10),
            mb(lo),
            mb(hi),
            s.len()
        )
    }
}

fn db_size(dir: &Path) -> f64 {
    ["ephemera.db", "ephemera.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
        .map(|m| m.len())
        .sum::<u64>() as f64
        / (1024.0 * 1024.0)
}

fn rate(n: u64, d: Duration) -> String {
    format!("{:.0}", n as f64 / d.as_secs_f64().max(1e-9))
}

/// Everything a phase needs.
struct Bench {
    total: u64,
    aws: ephemera::config::AwsConfig,
    leases: HashMap<LeaseId, Lease>,
    lease_ids: Vec<String>,
    policy: Policy,
    keys: IdentityTags,
    now: DateTime<Utc>,
}

impl Bench {
    /// Phase 1: the walk with a no-op `on_page`.
    async fn walk_only(&self) {
        let clients = AwsClients::new(self.aws.clone());
        let limiter = RateLimiter::new(1_000_000);
        let metrics = Metrics::new();
        let probe = RssProbe::new(self.total);
        let cpu = thread_cpu();
        let t = Instant::now();
        let result = walk(&clients, ACCOUNT, REGION, &limiter, &metrics, |page| {
            probe.add(page.len());
            drop(page);
            std::future::ready(Ok(()))
        })
        .await;
        let took = t.elapsed();
        assert!(result.error.is_none(), "walk failed: {:?}", result.error);
        assert_eq!(result.resources, self.total, "walk saw every resource");
        println!(
            "pipeline: [1 walk alone] {} resources in {} pages: {:.2} s, {} resources/s ({:.0} µs/page)",
            result.resources,
            result.pages,
            took.as_secs_f64(),
            rate(result.resources, took),
            took.as_secs_f64() * 1e6 / result.pages as f64,
        );
        println!(
            "pipeline: [1 walk alone] CPU: {}",
            cpu_split(&cpu, &thread_cpu())
        );
        println!("pipeline: [1 walk alone] {}", probe.line());
    }

    /// Phase 2: evaluate + persist, pages of 100 built in memory, `batch` resources handed to
    /// each `persist_page` call (one transaction each, as nothing else writes meanwhile).
    async fn eval_persist_only(&self, label: &str, dir: &Path, batch: usize) {
        let store = common::open_store(dir).await;
        let run_id = uuid::Uuid::now_v7().to_string();
        store
            .start_run(
                run_id.clone(),
                ephemera::model::TaskName::Scan,
                "bench".into(),
                self.now,
            )
            .await
            .expect("run row");
        let mut counts = Counts::default();
        let (mut gen_t, mut eval_t, mut persist_t) =
            (Duration::ZERO, Duration::ZERO, Duration::ZERO);
        let (mut opened, mut pages, mut calls) = (0u64, 0u64, 0u64);
        let probe = RssProbe::new(self.total);
        let cpu = thread_cpu();
        let started = Instant::now();
        let mut start = 0u64;
        let mut pending = Vec::with_capacity(batch);
        while start < self.total {
            let end = (start + 100).min(self.total);
            let t = Instant::now();
            let page: Vec<_> = (start..end)
                .map(|i| common::resource(i, &self.lease_ids, true).observed())
                .collect();
            gen_t += t.elapsed();
            probe.add(page.len());
            let t = Instant::now();
            pending.extend(common::evaluate_page(
                page,
                &self.leases,
                &self.policy,
                &self.keys,
                self.now,
                &mut counts,
            ));
            eval_t += t.elapsed();
            pages += 1;
            start = end;
            if pending.len() >= batch || start >= self.total {
                let records = std::mem::replace(&mut pending, Vec::with_capacity(batch));
                let t = Instant::now();
                let changes = store
                    .persist_page(run_id.clone(), self.now, records)
                    .await
                    .expect("persist");
                persist_t += t.elapsed();
                opened += changes.opened;
                calls += 1;
            }
        }
        let loop_t = started.elapsed();
        let t = Instant::now();
        let walk_changes = store
            .finish_walk(run_id.clone(), self.walk_record(pages, self.now))
            .await
            .expect("finish walk");
        let finish_t = t.elapsed();
        let work = loop_t - gen_t;
        println!(
            "pipeline: [{label}] {} resources: {:.2} s excluding page generation ({:.2} s) = {} resources/s; evaluate {:.2} s ({} resources/s), persist_page {:.2} s ({} resources/s, {:.2} ms per call of {batch}), {} findings opened",
            self.total,
            work.as_secs_f64(),
            gen_t.as_secs_f64(),
            rate(self.total, work),
            eval_t.as_secs_f64(),
            rate(self.total, eval_t),
            persist_t.as_secs_f64(),
            rate(self.total, persist_t),
            persist_t.as_secs_f64() * 1e3 / calls as f64,
            opened,
        );
        println!(
            "pipeline: [{label}] finish_walk {:.2} s (gone {}, resolved {}); store {:.0} MB on disk",
            finish_t.as_secs_f64(),
            walk_changes.gone,
            walk_changes.resolved,
            db_size(dir),
        );
        println!(
            "pipeline: [{label}] CPU: {}",
            cpu_split(&cpu, &thread_cpu())
        );
        println!("pipeline: [{label}] verdicts: {}", counts.line());
        println!("pipeline: [{label}] {}", probe.line());
    }

    fn walk_record(&self, pages: u64, at: DateTime<Utc>) -> WalkRecord {
        WalkRecord {
            account: ACCOUNT.into(),
            region: REGION.into(),
            started_at: at,
            ended_at: at,
            outcome: ephemera::model::WalkOutcome::Complete,
            reason: None,
            pages,
            resources: self.total,
            sweep: None,
        }
    }

    /// Phases 3 and 4: walk → evaluate → persist, as `Tasks::walk_one` does it.
    async fn pipeline(&self, label: &str, store: &Store, dir: &Path, now: DateTime<Utc>) {
        let clients = AwsClients::new(self.aws.clone());
        let limiter = RateLimiter::new(1_000_000);
        let metrics = Metrics::new();
        let run_id = uuid::Uuid::now_v7().to_string();
        store
            .start_run(
                run_id.clone(),
                ephemera::model::TaskName::Scan,
                "bench".into(),
                now,
            )
            .await
            .expect("run row");
        let probe = RssProbe::new(self.total);
        let counts = RefCell::new(Counts::default());
        let eval_t = Cell::new(Duration::ZERO);
        let persist_t = Cell::new(Duration::ZERO);
        let opened = Cell::new(0u64);
        let updated = Cell::new(0u64);
        let cpu = thread_cpu();
        let t = Instant::now();
        let result = walk(&clients, ACCOUNT, REGION, &limiter, &metrics, |page| {
            probe.add(page.len());
            let t = Instant::now();
            let records = common::evaluate_page(
                page,
                &self.leases,
                &self.policy,
                &self.keys,
                now,
                &mut counts.borrow_mut(),
            );
            eval_t.set(eval_t.get() + t.elapsed());
            let store = store.clone();
            let run_id = run_id.clone();
            let (persist_t, opened, updated) = (&persist_t, &opened, &updated);
            async move {
                let t = Instant::now();
                let changes = store.persist_page(run_id, now, records).await?;
                persist_t.set(persist_t.get() + t.elapsed());
                opened.set(opened.get() + changes.opened);
                updated.set(updated.get() + changes.updated);
                Ok(())
            }
        })
        .await;
        let walk_t = t.elapsed();
        assert!(result.error.is_none(), "walk failed: {:?}", result.error);
        assert_eq!(result.resources, self.total, "walk saw every resource");
        let t = Instant::now();
        let changes = store
            .finish_walk(run_id, self.walk_record(result.pages, now))
            .await
            .expect("finish walk");
        let finish_t = t.elapsed();
        let total_t = walk_t + finish_t;
        println!(
            "pipeline: [{label}] {} resources walked+evaluated+persisted in {:.2} s = {} resources/s; with finish_walk ({:.2} s): {:.2} s = {} resources/s",
            result.resources,
            walk_t.as_secs_f64(),
            rate(result.resources, walk_t),
            finish_t.as_secs_f64(),
            total_t.as_secs_f64(),
            rate(result.resources, total_t),
        );
        println!(
            "pipeline: [{label}] inside: evaluate {:.2} s on the walk's thread; persist_page awaited {:.2} s in total ({:.2} ms/page, overlapping the next fetch); findings opened {}, updated {}, resolved {}, gone {}; store {:.0} MB on disk",
            eval_t.get().as_secs_f64(),
            persist_t.get().as_secs_f64(),
            persist_t.get().as_secs_f64() * 1e3 / result.pages as f64,
            opened.get(),
            updated.get(),
            changes.resolved,
            changes.gone,
            db_size(dir),
        );
        println!(
            "pipeline: [{label}] CPU: {}",
            cpu_split(&cpu, &thread_cpu())
        );
        println!("pipeline: [{label}] verdicts: {}", counts.borrow().line());
        println!("pipeline: [{label}] {}", probe.line());
    }
}

/// What `RateLimiter::wait` costs when no wait is due: the walk calls it before every page.
async fn probe_limiter(calls: u32) {
    let limiter = RateLimiter::new(1_000_000);
    let t = Instant::now();
    for _ in 0..calls {
        limiter.wait().await;
    }
    let per = t.elapsed() / calls;
    let t = Instant::now();
    for _ in 0..calls {
        tokio::time::sleep_until(tokio::time::Instant::now()).await;
    }
    let sleep_now = t.elapsed() / calls;
    println!(
        "pipeline: probe: RateLimiter::new(1_000_000).wait() takes {:.0} µs per call with nothing to wait for (tokio sleep_until(now) alone: {:.0} µs)",
        per.as_secs_f64() * 1e6,
        sleep_now.as_secs_f64() * 1e6,
    );
}

/// This disk's commit cost: a 4 KiB append + fdatasync, as a WAL commit with
/// `synchronous = FULL` does once per transaction.
fn probe_fsync(dir: &Path) {
    use std::io::Write as _;
    let path = dir.join("fsync-probe");
    let mut f = std::fs::File::create(&path).expect("probe file");
    let block = [0u8; 4096];
    let n = 200u32;
    let t = Instant::now();
    for _ in 0..n {
        f.write_all(&block).expect("write");
        f.sync_data().expect("fdatasync");
    }
    let per = t.elapsed() / n;
    let _ = std::fs::remove_file(&path);
    println!(
        "pipeline: probe: 4 KiB append + fdatasync on the store's disk: {:.2} ms",
        per.as_secs_f64() * 1e3
    );
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Phase 5: the daemon's own pass (`Tasks::run_scan`: walk, evaluate, batched persist,
/// finish, gauges) against the stand-in, with the rate limit lifted (allowed for emulators).
async fn bench_real_pass(
    port: u16,
    bench: &Bench,
    dir: &Path,
    now: DateTime<Utc>,
    second_pass: bool,
) {
    let dir = dir.join("phase5");
    let store = common::store_sections(common::on_postgres(), &dir).await;
    let config_path = common::write_workdir_on(
        &dir,
        &format!(
            "regions = [\"{REGION}\"]\nendpoint_url = \"http://127.0.0.1:{port}\"\nemulator = true\ncalls_per_second = 10000\nmax_attempts = 1\n\n[[aws.accounts]]\nid = \"{ACCOUNT}\"\n\n[discovery]\ntypes = []\ncreators = false\n"
        ),
        &store,
    );
    let config = Arc::new(Config::load(&config_path).expect("bench config"));
    let store = Store::open_at(&config.store.location)
        .await
        .expect("store opens")
        .with_audit_key(
            ephemera::audit::AuditKey::load_or_create(&config.audit.key)
                .expect("audit key")
                .0,
        );
    for l in bench.leases.values() {
        store
            .insert_lease(
                l.clone(),
                now,
                ephemera::store::Quota::<ephemera::store::StoreError>::unlimited(),
            )
            .await
            .expect("lease stored");
    }
    let policy = ephemera::live::Live::new(Policy::load(&config.rules.dir).expect("bench rules"));
    let tasks = ephemera::tasks::Tasks::new(
        config,
        policy,
        store,
        Arc::new(Metrics::new()),
        Arc::new(ephemera::clock::ManualClock::new(now)),
    );
    let cpu = thread_cpu();
    let t = Instant::now();
    let report = tasks.run_scan("bench", "bench").await.expect("scan runs");
    let took = t.elapsed();
    assert_eq!(
        report.outcome,
        ephemera::model::RunOutcome::Success,
        "{report:?}"
    );
    println!(
        "pipeline: [5 Tasks::run_scan, fresh store] {} resources walked, evaluated, persisted, findings opened ({}) and gauges recomputed in {:.2} s = {} resources/s",
        report.resources_seen,
        report.findings_opened,
        took.as_secs_f64(),
        rate(report.resources_seen, took),
    );
    let cpu_after = thread_cpu();
    println!(
        "pipeline: [5 Tasks::run_scan] CPU: {}; {}",
        cpu_split(&cpu, &cpu_after),
        one_core(report.resources_seen, &cpu, &cpu_after)
    );
    println!(
        "pipeline: [5 Tasks::run_scan] VmHWM so far {:.1} MB",
        mb(status_kb("VmHWM"))
    );
    if !second_pass {
        return;
    }
    let cpu = thread_cpu();
    let t = Instant::now();
    let report = tasks.run_scan("bench", "bench").await.expect("scan runs");
    let took = t.elapsed();
    println!(
        "pipeline: [6 Tasks::run_scan, second pass] {} resources in {:.2} s = {} resources/s",
        report.resources_seen,
        took.as_secs_f64(),
        rate(report.resources_seen, took),
    );
    let cpu_after = thread_cpu();
    println!(
        "pipeline: [6 Tasks::run_scan] CPU: {}; {}",
        cpu_split(&cpu, &cpu_after),
        one_core(report.resources_seen, &cpu, &cpu_after)
    );
}

/// The rate one core would reach: resources over the CPU time of every thread of ours (the
/// walk's, the store writer's, the blocking pool's), the page server's left out.
fn one_core(
    resources: u64,
    before: &std::collections::BTreeMap<(String, u32), f64>,
    after: &std::collections::BTreeMap<(String, u32), f64>,
) -> String {
    let cpu = common::cpu_total_except(before, after, &["bench-server"]);
    format!(
        "one core: {:.2} s of CPU = {} resources/s",
        cpu,
        (resources as f64 / cpu.max(1e-9)) as u64
    )
}

fn main() {
    // `cargo test --benches` runs benches with --bench absent; do a tiny run then.
    let quick = !std::env::args().any(|a| a == "--bench");
    let total = if quick {
        2_000
    } else {
        common::env_u64("BENCH_RESOURCES", 1_000_000)
    };
    let n_leases = if quick {
        100
    } else {
        common::env_u64("BENCH_LEASES", 10_000) as usize
    };
    let phases = std::env::var("BENCH_PHASES").unwrap_or_else(|_| "1,2,2b,3,4,5,6".into());
    let phase = |p: &str| phases.split(',').any(|x| x.trim() == p);
    let now = Utc
        .with_ymd_and_hms(2026, 3, 1, 12, 0, 0)
        .single()
        .expect("valid time");

    let leases = common::leases(n_leases, now);
    let lease_ids: Vec<String> = leases.iter().map(|l| l.id.to_string()).collect();
    let pages = Arc::new(Pages {
        total,
        lease_ids: lease_ids.clone(),
        requests: AtomicU64::new(0),
    });
    let (port, server, stop) = start_server(pages.clone());

    let tmp = common::bench_tmp();
    let config_path = common::write_workdir(
        tmp.path(),
        &format!(
            "regions = [\"{REGION}\"]\nendpoint_url = \"http://127.0.0.1:{port}\"\nemulator = true\ncalls_per_second = 15\nmax_attempts = 1\n\n[[aws.accounts]]\nid = \"{ACCOUNT}\"\n\n[discovery]\ntypes = []\ncreators = false\n"
        ),
    );
    let config = Config::load(&config_path).expect("bench config");
    let bench = Bench {
        total,
        aws: config.aws.clone(),
        leases: common::lease_map(leases),
        lease_ids,
        policy: Policy::load(&config.rules.dir).expect("bench rules"),
        keys: config.tags.clone(),
        now,
    };
    println!(
        "pipeline: {total} volumes in pages of 100 from a loopback GetResources stand-in, {n_leases} leases; walk on a current-thread runtime; VmRSS {:.1} MB at start; load average {}",
        mb(status_kb("VmRSS")),
        loadavg()
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        probe_limiter(if quick { 20 } else { 2_000 }).await;
        probe_fsync(tmp.path());
        if phase("1") {
            bench.walk_only().await;
        }
        if phase("2") {
            let dir2 = tmp.path().join("phase2");
            bench
                .eval_persist_only("2 evaluate+persist alone", &dir2, 100)
                .await;
            let _ = std::fs::remove_dir_all(&dir2);
        }
        if phase("2b") {
            let dir2b = tmp.path().join("phase2b");
            bench
                .eval_persist_only("2b evaluate+persist alone, batched", &dir2b, 1_000)
                .await;
            let _ = std::fs::remove_dir_all(&dir2b);
        }

        if phase("3") {
            let dir3 = tmp.path().join("phase3");
            let store = common::open_store(&dir3).await;
            bench
                .pipeline("3 pipeline, fresh store", &store, &dir3, now)
                .await;
            if phase("4") {
                bench
                    .pipeline(
                        "4 pipeline, second pass",
                        &store,
                        &dir3,
                        now + chrono::TimeDelta::minutes(1),
                    )
                    .await;
            }
            let _ = std::fs::remove_dir_all(&dir3);
        }
        if phase("5") {
            bench_real_pass(port, &bench, tmp.path(), now, phase("6")).await;
        }
    });
    println!(
        "pipeline: page server answered {} requests; VmHWM {:.1} MB for the whole run; load average {} at the end",
        pages.requests.load(Ordering::Relaxed),
        mb(status_kb("VmHWM")),
        loadavg()
    );
    let _ = stop.send(());
    server.join().expect("server thread joins");
}
