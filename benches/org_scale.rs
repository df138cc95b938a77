//! One full audit pass over an organization: 1,000 accounts × 17 regions (17,000 walks, about a
//! million tagged resources, a few large accounts), against an in-bench AWS that answers every
//! call the pass makes with realistic latency and throttling:
//!
//! - each call waits 50–100 ms (uniform) before it is answered;
//! - each (account, region) holds a token bucket of 15 calls a second (burst 15): past it, the
//!   call is refused as throttled, as AWS does, and the SDK's retry takes over;
//! - AssumeRole (per account, from the role template) waits the same; Organizations
//!   ListAccounts pages 20 accounts at a time, as AWS does;
//! - the tagging API pages 100 resources; every sweep call of the default `[discovery]` (15
//!   list calls per account and region) is answered, empty: what it would find is never-tagged
//!   and beside the point here, what it costs is not.
//!
//! Reported: the pass's wall clock (target: under 5 minutes), peak RSS (VmHWM) against the
//! number of accounts (run with BENCH_ACCOUNTS=100 and 1000 to see it flat), and the calls the
//! pass made next to the floor: ⌈resources/100⌉ GetResources per (account, region), 15 sweep
//! calls per (account, region), one AssumeRole per account, ⌈accounts/20⌉ ListAccounts.
//!
//! `cargo bench --bench org_scale` (env: BENCH_ACCOUNTS (1000), BENCH_REGIONS (17),
//! BENCH_RESOURCES (1000000), BENCH_LARGE (10 accounts holding half the resources),
//! BENCH_CONCURRENCY (the config's `max_concurrent_walks`; default: the config's default),
//! BENCH_LATENCY_MS (50-100)).

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use ephemera::clock::{Clock, SystemClock};
use ephemera::config::Config;
use ephemera::metrics::Metrics;
use ephemera::policy::Policy;
use ephemera::store::{Quota, Store, StoreError};
use ephemera::tasks::Tasks;
use tokio::sync::Mutex;

const REGIONS: [&str; 17] = [
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "ca-central-1",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "eu-central-1",
    "eu-north-1",
    "ap-south-1",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-southeast-1",
    "ap-southeast-2",
    "sa-east-1",
];

/// The organization the fake AWS holds.
struct Estate {
    accounts: Vec<String>,
    regions: usize,
    /// Resources per (account index, region index).
    per_large: u64,
    per_small: u64,
    large: usize,
    lease: String,
    latency: (u64, u64),
}

impl Estate {
    fn resources_in(&self, account: &str) -> u64 {
        let i = self
            .accounts
            .iter()
            .position(|a| a == account)
            .unwrap_or(usize::MAX);
        if i < self.large {
            self.per_large
        } else {
            self.per_small
        }
    }

    fn total(&self) -> u64 {
        let large = self.large.min(self.accounts.len()) as u64;
        let small = self.accounts.len() as u64 - large;
        (large * self.per_large + small * self.per_small) * self.regions as u64
    }
}

/// A token bucket per (account, region): 15 a second, burst 15.
#[derive(Default)]
struct Buckets(Mutex<HashMap<(String, String), (f64, Instant)>>);

impl Buckets {
    async fn take(&self, account: &str, region: &str) -> bool {
        let mut b = self.0.lock().await;
        let now = Instant::now();
        let (tokens, at) = b
            .entry((account.to_owned(), region.to_owned()))
            .or_insert((15.0, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * 15.0).min(15.0);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

struct Fake {
    estate: Estate,
    buckets: Buckets,
    calls: Mutex<HashMap<String, u64>>,
    throttled: AtomicU64,
    seed: AtomicU64,
}

fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51afd7ed558ccd);
    x ^= x >> 33;
    x
}

/// `Credential=AKID/DATE/REGION/SERVICE/aws4_request`.
fn scope(headers: &HeaderMap) -> (String, String, String) {
    let c: Vec<String> = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.split("Credential=").nth(1))
        .and_then(|c| c.split(',').next())
        .map(|c| c.split('/').map(str::to_owned).collect())
        .unwrap_or_default();
    let get = |i: usize| c.get(i).cloned().unwrap_or_default();
    (get(0), get(2), get(3))
}

fn form(body: &[u8], key: &str) -> Option<String> {
    let url = reqwest::Url::parse(&format!("http://x/?{}", String::from_utf8_lossy(body))).ok()?;
    url.query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

fn xml(body: String) -> Response {
    ([("content-type", "text/xml")], body).into_response()
}

fn json(body: String) -> Response {
    ([("content-type", "application/x-amz-json-1.1")], body).into_response()
}

async fn handle(
    State(fake): State<Arc<Fake>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (key, region, service) = scope(&headers);
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .map(|t| t.rsplit('.').next().unwrap_or(t).to_owned());
    let operation = target
        .clone()
        .or_else(|| form(&body, "Action"))
        .unwrap_or_else(|| format!("{method} {}", uri.path()));
    // The account is in the access key the fake STS handed out (`ASIA` + 12 digits).
    let account = key.strip_prefix("ASIA").unwrap_or("management").to_owned();
    *fake
        .calls
        .lock()
        .await
        .entry(operation.clone())
        .or_default() += 1;
    let (lo, hi) = fake.estate.latency;
    let wait = lo + mix(fake.seed.fetch_add(1, Ordering::Relaxed)) % (hi - lo + 1);
    tokio::time::sleep(Duration::from_millis(wait)).await;
    if service != "sts" && service != "organizations" && !fake.buckets.take(&account, &region).await
    {
        fake.throttled.fetch_add(1, Ordering::Relaxed);
        return match service.as_str() {
            "ec2" | "sns" => (
                StatusCode::SERVICE_UNAVAILABLE,
                xml("<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>slow down</Message></Error></Errors></Response>".into()),
            )
                .into_response(),
            _ => (
                StatusCode::BAD_REQUEST,
                json(r#"{"__type":"ThrottlingException","message":"slow down"}"#.into()),
            )
                .into_response(),
        };
    }
    match (service.as_str(), operation.as_str()) {
        ("sts", "AssumeRole") => {
            let role = form(&body, "RoleArn").unwrap_or_default();
            let acct = role.split(':').nth(4).unwrap_or("000000000000");
            let exp = (Utc::now() + chrono::TimeDelta::hours(1)).to_rfc3339();
            xml(format!(
                "<AssumeRoleResponse><AssumeRoleResult><Credentials><AccessKeyId>ASIA{acct}</AccessKeyId><SecretAccessKey>s</SecretAccessKey><SessionToken>t</SessionToken><Expiration>{exp}</Expiration></Credentials><AssumedRoleUser><Arn>{role}/ephemera</Arn><AssumedRoleId>AROA:ephemera</AssumedRoleId></AssumedRoleUser></AssumeRoleResult></AssumeRoleResponse>"
            ))
        }
        ("organizations", "ListAccounts") => {
            let req: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let start: usize = req["NextToken"].as_str().and_then(|t| t.parse().ok()).unwrap_or(0);
            let all = &fake.estate.accounts;
            let end = (start + 20).min(all.len());
            let accounts: Vec<serde_json::Value> = all[start..end]
                .iter()
                .map(|a| serde_json::json!({"Id": a, "Name": format!("acct-{a}"), "Status": "ACTIVE", "State": "ACTIVE"}))
                .collect();
            let mut out = serde_json::json!({"Accounts": accounts});
            if end < all.len() {
                out["NextToken"] = end.to_string().into();
            }
            json(out.to_string())
        }
        ("tagging", "GetResources") => {
            let req: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let start: u64 = req["PaginationToken"].as_str().and_then(|t| t.parse().ok()).unwrap_or(0);
            let total = fake.estate.resources_in(&account);
            let end = (start + 100).min(total);
            let lease = &fake.estate.lease;
            let list: Vec<serde_json::Value> = (start..end)
                .map(|i| {
                    // One in ten is an instance (its walk asks EC2 once for ending ones).
                    let arn = if i % 10 == 0 {
                        format!("arn:aws:ec2:{region}:{account}:instance/i-{i:017x}")
                    } else {
                        format!("arn:aws:ec2:{region}:{account}:volume/vol-{i:017x}")
                    };
                    serde_json::json!({"ResourceARN": arn, "Tags": [
                        {"Key": "ephemera:lease-id", "Value": lease},
                        {"Key": "ephemera:project", "Value": "p00"},
                        {"Key": "ephemera:task", "Value": "org bench"},
                        {"Key": "ephemera:owner", "Value": "bench@example.com"},
                    ]})
                })
                .collect();
            let token = if end < total { end.to_string() } else { String::new() };
            json(serde_json::json!({"ResourceTagMappingList": list, "PaginationToken": token}).to_string())
        }
        ("ec2", op) => xml(format!("<{op}Response><requestId>r</requestId></{op}Response>")),
        ("sns", "ListTopics") => xml("<ListTopicsResponse><ListTopicsResult><Topics/></ListTopicsResult></ListTopicsResponse>".into()),
        ("s3", _) => xml("<ListAllMyBucketsResult><Buckets/></ListAllMyBucketsResult>".into()),
        ("sqs", _) => ([("content-type", "application/x-amz-json-1.0")], "{}").into_response(),
        ("dynamodb", _) => ([("content-type", "application/x-amz-json-1.0")], r#"{"TableNames":[]}"#).into_response(),
        ("lambda", _) => ([("content-type", "application/json")], r#"{"Functions":[]}"#).into_response(),
        ("logs", _) => json(r#"{"logGroups":[]}"#.into()),
        _ => (StatusCode::NOT_IMPLEMENTED, format!("no fake for {service} {operation}")).into_response(),
    }
}

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    // `cargo test --benches` runs benches with --bench absent: a tiny organization then.
    let quick = !std::env::args().any(|a| a == "--bench");
    let (d_accounts, d_regions, d_resources, d_large) = if quick {
        (4, 2, 2_000, 1)
    } else {
        (1000, 17, 1_000_000, 10)
    };
    let accounts = common::env_u64("BENCH_ACCOUNTS", d_accounts) as usize;
    let regions = (common::env_u64("BENCH_REGIONS", d_regions) as usize).clamp(1, REGIONS.len());
    let resources = common::env_u64("BENCH_RESOURCES", d_resources);
    let large = (common::env_u64("BENCH_LARGE", d_large) as usize).min(accounts);
    let concurrency = std::env::var("BENCH_CONCURRENCY").ok();
    let latency = std::env::var("BENCH_LATENCY_MS")
        .ok()
        .and_then(|v| {
            let (a, b) = v.split_once('-')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        })
        .unwrap_or((50, 100));
    // Half the resources in the large accounts, half spread over the rest.
    let walks_large = (large * regions).max(1) as u64;
    let walks_small = ((accounts - large) * regions).max(1) as u64;
    let per_large = if large > 0 {
        resources / 2 / walks_large
    } else {
        0
    };
    let per_small = (resources - per_large * walks_large) / walks_small;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let tmp = common::bench_tmp();
    rt.block_on(async {
        let account_ids: Vec<String> = (0..accounts).map(|i| format!("{:012}", 100_000_000_000u64 + i as u64)).collect();
        let now: DateTime<Utc> = SystemClock.now();
        let mut leases = common::leases(1, now);
        leases[0].expires_at = now + chrono::TimeDelta::hours(10);
        leases[0].released_at = None;
        leases[0].heartbeat_interval = None;
        let lease = leases[0].clone();
        let fake = Arc::new(Fake {
            estate: Estate {
                accounts: account_ids.clone(),
                regions,
                per_large,
                per_small,
                large,
                lease: lease.id.to_string(),
                latency,
            },
            buckets: Buckets::default(),
            calls: Mutex::new(HashMap::new()),
            throttled: AtomicU64::new(0),
            seed: AtomicU64::new(1),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let app = axum::Router::new().fallback(handle).with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });

        let region_list: Vec<String> = REGIONS[..regions].iter().map(|r| format!("\"{r}\"")).collect();
        let concurrency_line = concurrency.map(|c| format!("max_concurrent_walks = {c}\n")).unwrap_or_default();
        let config_path = common::write_workdir(
            tmp.path(),
            &format!(
                "regions = [{}]\nendpoint_url = \"{endpoint}\"\nemulator = true\nmax_attempts = 10\n\
                 assume_role_arn_template = \"arn:aws:iam::{{account_id}}:role/ephemera-audit\"\n{concurrency_line}\n\
                 [aws.organization]\n",
                region_list.join(", ")
            ),
        );
        let config = Arc::new(Config::load(&config_path).expect("bench config"));
        let policy = Arc::new(Policy::load(&config.rules.dir).expect("bench rules"));
        let store = Store::open_at(&config.store.location).await.expect("store opens").with_audit_key(
            ephemera::audit::AuditKey::load_or_create(&config.audit.key).expect("audit key").0,
        );
        store
            .insert_lease(lease, now, Quota::<StoreError>::unlimited())
            .await
            .expect("insert lease");
        let metrics = Arc::new(Metrics::new());
        let tasks = Tasks::new(config.clone(), ephemera::live::Live::from_arc(policy), store, metrics, Arc::new(SystemClock));
        let rss_before = vm_hwm_kib();
        println!(
            "org_scale: {accounts} accounts x {regions} regions = {} walks, {} resources ({large} large accounts with {per_large} per region, the rest {per_small}), latency {}-{} ms, 15 calls/s per (account, region), max_concurrent_walks = {}",
            accounts * regions,
            fake.estate.total(),
            latency.0,
            latency.1,
            config.aws.max_concurrent_walks
        );
        let t = Instant::now();
        let report = tasks.run_scan("bench", "bench").await.expect("the pass runs");
        let took = t.elapsed();
        let calls = fake.calls.lock().await.clone();
        let total_calls: u64 = calls.values().sum();
        let by_op_calls = calls.clone();
        let walks = (accounts * regions) as u64;
        let pages: u64 = account_ids
            .iter()
            .map(|a| fake.estate.resources_in(a).div_ceil(100).max(1) * regions as u64)
            .sum();
        let floor = pages + walks * 15 + accounts as u64 + (accounts as u64).div_ceil(20);
        let incomplete = report.walks.iter().filter(|w| !w.is_complete()).count();
        println!(
            "org_scale: pass {:.1} s ({}), {} resources seen, {} walks ({incomplete} incomplete), {} accounts",
            took.as_secs_f64(),
            report.outcome,
            report.resources_seen,
            report.walks.len(),
            report.accounts
        );
        let mut by_op: Vec<(String, u64)> = by_op_calls.into_iter().collect();
        by_op.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        println!(
            "org_scale: {total_calls} AWS calls (throttled and retried: {}) against a floor of {floor} ({pages} GetResources + {} sweep + {accounts} AssumeRole + {} ListAccounts); busiest: {}",
            fake.throttled.load(Ordering::Relaxed),
            walks * 15,
            (accounts as u64).div_ceil(20),
            by_op.iter().take(6).map(|(o, n)| format!("{o} {n}")).collect::<Vec<_>>().join(", ")
        );
        assert_eq!(incomplete, 0, "every walk completes against the fake");
        assert_eq!(report.resources_seen, fake.estate.total(), "every resource is seen");
        assert_eq!(
            calls.get("AssumeRole").copied().unwrap_or(0),
            accounts as u64,
            "one AssumeRole per account, whatever the regions"
        );
        println!(
            "org_scale: peak RSS {} MiB (before the pass {} MiB)",
            vm_hwm_kib() / 1024,
            rss_before / 1024
        );
    });
}
