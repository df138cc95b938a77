//! The audit pass against moto: inventory of two accounts and two regions, verdicts,
//! findings and their transitions, metrics, and what an incomplete walk must not do.

use std::collections::HashMap;
use std::time::Duration;

use chrono::TimeDelta;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::moto::Moto;
use crate::support::proxy::{Fault, FaultProxy};
use crate::support::seed::{arns_by_key, seed};
use crate::support::{
    OPERATOR, TestDaemon, VIEWER, WEB, Workdir, config_text_with_aws, manual_clock, sample,
};

const A: &str = "123456789012";
const B: &str = "210987654321";

fn aws_section(endpoint: &str) -> String {
    format!(
        r#"regions = ["us-east-1", "eu-west-1"]
endpoint_url = "{endpoint}"
emulator = true
max_attempts = 2

[[aws.accounts]]
id = "{A}"

[[aws.accounts]]
id = "{B}"
assume_role_arn = "arn:aws:iam::{B}:role/ephemera-audit"
"#
    )
}

fn tags(lease: &str, project: &str) -> Value {
    crate::support::lease_tags(lease, project, "ci 1")
}

/// Starts a scan through the API a minute later and waits for its end; returns the run.
async fn scan(d: &TestDaemon, clock: &ephemera::clock::ManualClock) -> Value {
    clock.advance(TimeDelta::minutes(1));
    d.pass().await
}

/// Live resources by ARN → (verdict, action, state).
async fn resources(d: &TestDaemon) -> HashMap<String, Value> {
    let (s, page) = d.get("/api/v1/resources?limit=1000&all=true", VIEWER).await;
    assert_eq!(s, StatusCode::OK, "{page}");
    let items = page["items"].as_array().expect("items");
    let by_arn: HashMap<String, Value> = items
        .iter()
        .map(|r| (r["arn"].as_str().expect("arn").to_owned(), r.clone()))
        .collect();
    assert_eq!(by_arn.len(), items.len(), "an ARN is listed twice: {page}");
    by_arn
}

async fn open_findings(d: &TestDaemon) -> HashMap<String, Value> {
    let (s, page) = d.get("/api/v1/findings?limit=1000", VIEWER).await;
    assert_eq!(s, StatusCode::OK, "{page}");
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|f| (f["arn"].as_str().expect("arn").to_owned(), f.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_pass_verdicts_findings_transitions_and_incomplete_walks() {
    let moto = Moto::start().await;
    let proxy = FaultProxy::start(&moto.endpoint()).await;
    let work = Workdir::with_config(&config_text_with_aws(&aws_section(&proxy.endpoint())));
    let clock = manual_clock();
    let d = TestDaemon::start_with_clock(&work, clock.clone()).await;

    // Leases at t0; two hours later: one expired, one released, one expiring, one active.
    let expired = d.acquire(WEB, "web", "expired").await;
    let released = d.acquire(WEB, "web", "released").await;
    d.release(WEB, &released).await;
    let renew = |id: String, ttl: &'static str| {
        let d = &d;
        async move {
            let (s, l) = d
                .post(
                    &format!("/api/v1/leases/{id}/renew"),
                    WEB,
                    json!({"ttl": ttl}),
                )
                .await;
            assert_eq!(s, StatusCode::OK, "{l}");
        }
    };
    let expiring = d.acquire(WEB, "web", "expiring").await;
    renew(expiring.clone(), "2h30m").await;
    let active = d.acquire(WEB, "web", "active").await;
    renew(active.clone(), "10h").await;
    clock.advance(TimeDelta::hours(2) + TimeDelta::minutes(10));

    let unknown = "0194e0a1-0000-7000-8000-00000000dead";
    let partial =
        json!({"ephemera:lease-id": active, "ephemera:project": "web", "ephemera:task": "ci 1"});
    let seeded = seed(
        &moto.endpoint(),
        json!({"resources": [
            {"key": "leased", "account": A, "region": "us-east-1", "type": "ec2:instance", "tags": tags(&active, "web")},
            {"key": "expired", "account": A, "region": "us-east-1", "type": "ec2:volume", "tags": tags(&expired, "web")},
            {"key": "expired-eu", "account": A, "region": "eu-west-1", "type": "ec2:volume", "tags": tags(&expired, "web")},
            {"key": "terminated", "account": A, "region": "us-east-1", "type": "ec2:instance", "tags": tags(&expired, "web"), "terminated": true},
            {"key": "released", "account": A, "region": "us-east-1", "type": "sqs:queue", "tags": tags(&released, "web")},
            {"key": "released-b", "account": B, "region": "us-east-1", "type": "ec2:volume", "tags": tags(&released, "web")},
            {"key": "expiring", "account": A, "region": "eu-west-1", "type": "dynamodb:table", "tags": tags(&expiring, "web")},
            {"key": "unknown", "account": A, "region": "us-east-1", "type": "dynamodb:table", "tags": tags(unknown, "web")},
            {"key": "untagged", "account": A, "region": "us-east-1", "type": "ec2:snapshot", "tags": partial},
            {"key": "protected", "account": A, "region": "us-east-1", "type": "s3:bucket", "tags": {"ephemera:protect": "shared", "team": "platform"}},
            {"key": "leased-b", "account": B, "region": "eu-west-1", "type": "ec2:volume", "tags": tags(&active, "web")}
        ]}),
    )
    .await;
    let arn = |key: &str| arns_by_key(&seeded)[key][0].clone();

    // ---- first pass: everything complete --------------------------------------------------
    let run = scan(&d, &clock).await;
    assert_eq!(run["run"]["outcome"], "success", "{run}");
    let walks = run["walks"].as_array().expect("walks");
    assert_eq!(walks.len(), 4, "{run}");
    assert!(walks.iter().all(|w| w["outcome"] == "complete"), "{run}");
    // Each resource counted once, though moto lists the bucket in both regions' walks.
    assert_eq!(
        run["run"]["summary"]["verdicts"],
        json!({"leased": 2, "expired": 2, "released": 2, "expiring": 1, "unknown-lease": 1, "untagged": 1, "protected": 1}),
        "{run}"
    );

    let res = resources(&d).await;
    let want = [
        ("leased", "leased", A),
        ("expired", "expired", A),
        ("expired-eu", "expired", A),
        ("released", "released", A),
        ("released-b", "released", B),
        ("expiring", "expiring", A),
        ("unknown", "unknown-lease", A),
        ("untagged", "untagged", A),
        ("protected", "protected", A),
        ("leased-b", "leased", B),
    ];
    // Tags come back from the store as AWS gave them (well-known keys are packed inside).
    let leased_tags = &res[&arn("leased")]["tags"];
    assert_eq!(leased_tags["ephemera:project"], "web", "{leased_tags}");
    assert_eq!(
        leased_tags["ephemera:owner"], "alice@example.com",
        "{leased_tags}"
    );
    assert_eq!(leased_tags["ephemera:task"], "ci 1", "{leased_tags}");
    for (key, verdict, account) in want {
        let r = &res[&arn(key)];
        assert_eq!(r["verdict"], verdict, "{key}: {r}");
        assert_eq!(r["account"], account, "{key}: {r}");
        assert_eq!(r["gone_at"], Value::Null, "{key}: {r}");
    }
    assert_eq!(
        res[&arn("expired")]["action"],
        "reap",
        "the web policy reaps expired resources"
    );
    assert_eq!(
        res[&arn("untagged")]["reason"],
        "identity tag `owner` is missing"
    );
    let term = &res[&arn("terminated")];
    assert_eq!(term["state"], "terminated", "{term}");
    assert_ne!(
        term["gone_at"],
        Value::Null,
        "a terminated instance is not a live resource"
    );
    assert_eq!(res.len(), 11, "{:?}", res.keys().collect::<Vec<_>>());

    let open = open_findings(&d).await;
    let mut flagged: Vec<&str> = [
        "expired",
        "expired-eu",
        "released",
        "released-b",
        "expiring",
        "unknown",
        "untagged",
    ]
    .to_vec();
    flagged.sort_unstable();
    let mut got: Vec<&str> = [
        "leased",
        "expired",
        "expired-eu",
        "terminated",
        "released",
        "released-b",
        "expiring",
        "unknown",
        "untagged",
        "protected",
        "leased-b",
    ]
    .into_iter()
    .filter(|k| open.contains_key(&arn(k)))
    .collect();
    got.sort_unstable();
    assert_eq!(got, flagged);
    assert_eq!(open[&arn("unknown")]["project"], "web");
    // Lessees see the findings of their projects only.
    let (_, mine) = d.get("/api/v1/findings?limit=1000", WEB).await;
    assert_eq!(mine["items"].as_array().map(Vec::len), Some(7), "{mine}");
    let (_, theirs) = d
        .get("/api/v1/findings?limit=1000", crate::support::DATA)
        .await;
    assert_eq!(
        theirs["items"].as_array().map(Vec::len),
        Some(0),
        "{theirs}"
    );
    let (s, _) = d.get("/api/v1/resources?project=data", WEB).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (_, visible) = d.get("/api/v1/resources?limit=1000", WEB).await;
    assert!(
        visible["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|r| r["project"] == "web"),
        "the unowned bucket is not a lessee's to see: {visible}"
    );

    let m = d.metrics().await;
    let s = |k: &str| sample(&m, k);
    assert_eq!(
        s(
            r#"ephemera_resources{project="web",region="us-east-1",resource_type="ec2:volume",verdict="expired"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        s(
            r#"ephemera_resources{project="web",region="us-east-1",resource_type="ec2:volume",verdict="released"}"#
        ),
        Some(1.0)
    );
    // moto lists the bucket in both regions; the smallest region name owns it.
    assert_eq!(
        s(
            r#"ephemera_resources{project="unknown",region="eu-west-1",resource_type="s3:bucket",verdict="protected"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        s(
            r#"ephemera_resources{project="web",region="us-east-1",resource_type="ec2:instance",verdict="expired"}"#
        ),
        None,
        "terminated instances are not counted"
    );
    assert_eq!(s(r#"ephemera_walks_total{outcome="complete"}"#), Some(4.0));
    assert_eq!(s("ephemera_findings_opened_total"), Some(7.0));
    assert_eq!(
        s(
            r#"ephemera_aws_requests_total{operation="GetResources",outcome="ok",service="tagging"}"#
        ),
        Some(4.0)
    );
    assert!(
        s(r#"ephemera_task_last_success_timestamp_seconds{task="scan"}"#)
            .is_some_and(|t| t > 1.7e9)
    );
    // Expired-resource hours at the scan (t0 + 2h11m): 2 expired volumes (11 minutes past the 2h
    // lease's end), 2 released ones (released at t0), and the unknown-lease table since first
    // seen (0h).
    let hours = s(r#"ephemera_expired_resource_hours{project="web"}"#).expect("hours");
    assert!(
        (hours - (2.0 * 11.0 + 2.0 * 131.0) / 60.0).abs() < 0.01,
        "{hours}"
    );
    assert!(
        !m.contains(&active) && !m.contains("arn:aws"),
        "an id or ARN leaked into a label"
    );

    // ---- second pass: protect one, untag another (moto then stops listing it) ---------------
    let tagging = |account: &'static str, region: &'static str| {
        let moto = &moto;
        async move {
            let conf = moto.sdk_config(region).await;
            let conf = if account == A {
                conf
            } else {
                let creds = aws_sdk_sts::Client::new(&conf)
                    .assume_role()
                    .role_arn(format!("arn:aws:iam::{account}:role/x"))
                    .role_session_name("t")
                    .send()
                    .await
                    .expect("assume role");
                let c = creds.credentials().expect("credentials");
                conf.into_builder()
                    .credentials_provider(aws_sdk_sts::config::SharedCredentialsProvider::new(
                        aws_sdk_sts::config::Credentials::new(
                            c.access_key_id(),
                            c.secret_access_key(),
                            Some(c.session_token().to_owned()),
                            None,
                            "t",
                        ),
                    ))
                    .build()
            };
            aws_sdk_resourcegroupstagging::Client::new(&conf)
        }
    };
    let t = tagging(A, "us-east-1").await;
    t.tag_resources()
        .resource_arn_list(arn("expired"))
        .tags("ephemera:protect", "kept for the post-mortem")
        .send()
        .await
        .expect("tag");
    t.untag_resources()
        .resource_arn_list(arn("unknown"))
        .set_tag_keys(Some(
            [
                "ephemera:lease-id",
                "ephemera:project",
                "ephemera:task",
                "ephemera:owner",
            ]
            .map(String::from)
            .to_vec(),
        ))
        .send()
        .await
        .expect("untag");
    let run = scan(&d, &clock).await;
    assert_eq!(run["run"]["outcome"], "success", "{run}");
    let res = resources(&d).await;
    assert_eq!(res[&arn("expired")]["verdict"], "protected");
    assert_ne!(
        res[&arn("unknown")]["gone_at"],
        Value::Null,
        "unseen by a complete walk: gone"
    );
    let (_, closed) = d.get("/api/v1/findings?all=true&limit=1000", VIEWER).await;
    let by_arn: HashMap<String, Value> = closed["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|f| (f["arn"].as_str().expect("arn").to_owned(), f.clone()))
        .collect();
    assert_eq!(by_arn[&arn("expired")]["resolution"], "now protected");
    let id = by_arn[&arn("expired")]["id"].as_i64().expect("finding id");
    let (_, detail) = d.get(&format!("/api/v1/findings/{id}"), VIEWER).await;
    let kinds: Vec<(&str, &str)> = detail["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap_or_default(),
                e["verdict"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    // Its rule says reap, so the pass that opened it also marked it for deletion.
    assert_eq!(
        kinds,
        [
            ("opened", "expired"),
            ("marked", "expired"),
            ("resolved", "expired")
        ],
        "{detail}"
    );
    assert_eq!(by_arn[&arn("unknown")]["resolution"], "gone");
    assert_eq!(
        sample(&d.metrics().await, "ephemera_findings_resolved_total"),
        Some(2.0)
    );

    // ---- third pass: GetResources throttled everywhere: nothing gone, nothing resolved ------
    t.untag_resources()
        .resource_arn_list(arn("untagged"))
        .set_tag_keys(Some(
            [
                "ephemera:lease-id",
                "ephemera:project",
                "ephemera:task",
                "ephemera:owner",
            ]
            .map(String::from)
            .to_vec(),
        ))
        .send()
        .await
        .expect("untag");
    proxy.set_fault("GetResources", Fault::Throttle, None);
    let run = scan(&d, &clock).await;
    assert_eq!(run["run"]["outcome"], "partial", "{run}");
    for w in run["walks"].as_array().expect("walks") {
        assert_eq!(w["outcome"], "incomplete", "{w}");
        assert!(
            w["reason"]
                .as_str()
                .is_some_and(|r| r.contains("ThrottlingException")),
            "{w}"
        );
    }
    let res = resources(&d).await;
    assert_eq!(
        res[&arn("untagged")]["gone_at"],
        Value::Null,
        "an incomplete walk marks nothing gone"
    );
    assert!(
        open_findings(&d).await.contains_key(&arn("untagged")),
        "an incomplete walk resolves nothing"
    );
    let m = d.metrics().await;
    assert_eq!(
        sample(&m, r#"ephemera_walks_total{outcome="incomplete"}"#),
        Some(4.0)
    );
    assert_eq!(sample(&m, "ephemera_findings_resolved_total"), Some(2.0));
    assert!(sample(&m, "ephemera_aws_throttled_total").is_some_and(|n| n >= 4.0));
    let (_, status) = d.get("/api/v1/status", VIEWER).await;
    assert_eq!(status["tasks"][0]["outcome"], "partial", "{status}");

    // A connection dropped mid-walk is as incomplete as a throttle.
    proxy.set_fault("GetResources", Fault::Drop, None);
    let run = scan(&d, &clock).await;
    assert_eq!(run["run"]["outcome"], "partial", "{run}");
    assert!(open_findings(&d).await.contains_key(&arn("untagged")));

    // ---- recovery: a complete pass catches up ------------------------------------------------
    proxy.clear_faults();
    let run = scan(&d, &clock).await;
    assert_eq!(run["run"]["outcome"], "success", "{run}");
    assert_ne!(
        resources(&d).await[&arn("untagged")]["gone_at"],
        Value::Null
    );
    assert!(!open_findings(&d).await.contains_key(&arn("untagged")));
    // Vanished label sets are zeroed, not left stale.
    let m = d.metrics().await;
    assert_eq!(
        sample(
            &m,
            r#"ephemera_resources{project="web",region="us-east-1",resource_type="ec2:snapshot",verdict="untagged"}"#
        ),
        Some(0.0)
    );
}

/// A daemon whose AWS calls go through a fault proxy in front of moto (keep all four alive).
async fn daemon_behind_proxy() -> (Moto, FaultProxy, Workdir, TestDaemon) {
    let moto = Moto::start().await;
    let proxy = FaultProxy::start(&moto.endpoint()).await;
    let work = Workdir::with_config(&config_text_with_aws(&aws_section(&proxy.endpoint())));
    let d = TestDaemon::start(&work).await;
    (moto, proxy, work, d)
}

/// Two scans never overlap: a second start while one runs is refused with 409.
#[tokio::test(flavor = "multi_thread")]
async fn scans_never_overlap() {
    let (_moto, proxy, _work, d) = daemon_behind_proxy().await;
    proxy.set_fault(
        "GetResources",
        Fault::Delay(Duration::from_millis(700)),
        None,
    );
    let (s, first) = d.post("/api/v1/scans", OPERATOR, json!({})).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{first}");
    let (s, second) = d.post("/api/v1/scans", OPERATOR, json!({})).await;
    assert_eq!(
        (s.as_u16(), second["code"].as_str()),
        (409, Some("scan-running")),
        "{second}"
    );
    assert!(
        second["message"]
            .as_str()
            .is_some_and(|m| m.contains(first["run_id"].as_str().expect("id")))
    );
    let (s, _) = d.post("/api/v1/scans", WEB, json!({})).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "lessees may not start scans");
}

/// `scan --wait` meeting a pass already running (a scheduled one, say) waits for it to end and
/// then runs its own, which began after the command; with a short `--lock-wait` it gives up.
#[tokio::test(flavor = "multi_thread")]
async fn scan_wait_waits_for_a_running_pass_then_runs_its_own() {
    let (_moto, proxy, _work, d) = daemon_behind_proxy().await;
    // Long enough for both commands to be refused: a refusal comes after a claim has waited
    // 2 s for the run to finish.
    proxy.set_fault(
        "GetResources",
        Fault::Delay(Duration::from_secs(8)),
        Some(1),
    );
    let (s, first) = d.post("/api/v1/scans", OPERATOR, json!({})).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{first}");
    let first = first["run_id"].as_str().expect("run id").to_owned();
    let base = format!("http://{}", d.addr);
    let env = [
        ("EPHEMERA_ADDR", base.as_str()),
        ("EPHEMERA_TOKEN", OPERATOR),
    ];
    let out = run_bin(&["scan", "--wait", "--lock-wait", "1s"], &env).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("scan-running (409 Conflict)"), "{stderr}");
    let out = run_bin(&["scan", "--wait", "--output", "json"], &env).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "a scan is already running (run {first}); waiting for it to end"
        )),
        "{stderr}"
    );
    let own: Value = serde_json::from_slice(&out.stdout).expect("scan json");
    assert_ne!(own["run"]["id"].as_str(), Some(first.as_str()), "{own}");
    let (_, first_run) = d.get(&format!("/api/v1/scans/{first}"), OPERATOR).await;
    let at = |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str().expect("a time"));
    let ended = at(&first_run["run"]["ended_at"]).expect("the first ended");
    let began = at(&own["run"]["started_at"]).expect("own start");
    assert!(
        began >= ended,
        "own pass began {began}, before the first ended {ended}"
    );
}

async fn run_bin(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_ephemera"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().await.expect("binary runs")
}

/// `ephemera scan --once` for a CI audit step: one pass in-process, exit 1 over the threshold;
/// then `findings` and `status` through a daemon on the same store.
#[tokio::test(flavor = "multi_thread")]
async fn scan_once_gates_ci_and_findings_and_status_show_it() {
    let moto = Moto::start().await;
    let aws = format!(
        "regions = [\"us-east-1\"]\nendpoint_url = \"{}\"\nemulator = true\n\n[[aws.accounts]]\nid = \"{A}\"\n",
        moto.endpoint()
    );
    let work = Workdir::with_config(&config_text_with_aws(&aws));
    let unknown = "0194e0a1-0000-7000-8000-00000000beef";
    let seeded = seed(
        &moto.endpoint(),
        json!({"resources": [
            {"key": "orphan", "account": A, "region": "us-east-1", "type": "ec2:volume", "tags": tags(unknown, "web"), "count": 2},
            {"key": "untagged", "account": A, "region": "us-east-1", "type": "sqs:queue", "tags": {"team": "x"}}
        ]}),
    )
    .await;
    let cfg = work.config_path();
    let cfg = cfg.to_str().expect("utf-8");

    let o = run_bin(
        &[
            "scan",
            "--once",
            "--config",
            cfg,
            "--fail-on",
            "unknown-lease",
            "--max",
            "1",
        ],
        &[],
    )
    .await;
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert!(
        err.contains("2 resources are unknown-lease (at most 1 allowed)"),
        "{err}"
    );
    assert!(out.contains(": success"), "{out}");
    assert!(out.contains("unknown-lease  2"), "{out}");

    let o = run_bin(
        &[
            "scan",
            "--once",
            "--config",
            cfg,
            "--fail-on",
            "unknown-lease,untagged",
            "--max",
            "3",
            "--output",
            "json",
        ],
        &[],
    )
    .await;
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let report: Value = serde_json::from_slice(&o.stdout).expect("json report");
    assert_eq!(
        report["verdicts"],
        json!({"unknown-lease": 2, "untagged": 1})
    );
    assert_eq!(
        report["findings_opened"], 0,
        "the second pass finds the findings already open"
    );

    let o = run_bin(
        &["scan", "--once", "--config", cfg, "--fail-on", "zombie"],
        &[],
    )
    .await;
    // A usage error, from the argument parser: exit 2, naming the value and the verdicts.
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("zombie") && err.contains("unknown-lease"),
        "{err}"
    );

    // The daemon on the same store serves what the CLI passes found.
    let d = TestDaemon::start(&work).await;
    let env = [
        ("EPHEMERA_ADDR", d.base()),
        ("EPHEMERA_TOKEN", VIEWER.to_owned()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let o = run_bin(&["findings", "--verdict", "unknown-lease"], &env).await;
    let table = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(table.starts_with("VERDICT"), "{table}");
    for a in &arns_by_key(&seeded)["orphan"] {
        assert!(table.contains(a.as_str()), "{table}");
    }
    assert_eq!(table.lines().count(), 3, "{table}");
    let o = run_bin(&["status"], &env).await;
    let status = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success());
    assert!(status.contains("scan  success"), "{status}");
    assert!(
        status.contains(&format!("{A}  us-east-1  complete  3")),
        "{status}"
    );
}

/// A scheduled tick that finds a scan running is skipped and counted, not queued.
#[tokio::test(flavor = "multi_thread")]
async fn a_tick_during_a_scan_is_skipped_and_counted() {
    let moto = Moto::start().await;
    let proxy = FaultProxy::start(&moto.endpoint()).await;
    let work = Workdir::with_config(&config_text_with_aws(&aws_section(&proxy.endpoint())));
    let config = std::sync::Arc::new(work.config());
    let policy = ephemera::live::Live::new(ephemera::daemon::load_policy(&config).expect("policy"));
    let store = ephemera::store::Store::open_at(&config.store.location)
        .await
        .expect("store")
        .with_audit_key(
            ephemera::audit::AuditKey::load_or_create(&config.audit.key)
                .expect("audit key")
                .0,
        );
    let metrics = std::sync::Arc::new(ephemera::metrics::Metrics::new());
    let tasks = ephemera::tasks::Tasks::new(
        config,
        policy,
        store,
        metrics.clone(),
        std::sync::Arc::new(ephemera::clock::SystemClock),
    );
    proxy.set_fault(
        "GetResources",
        Fault::Delay(Duration::from_millis(800)),
        None,
    );
    let run_id = tasks
        .start_scan("test", "test")
        .await
        .expect("first scan starts");
    tasks.scheduled_scan().await;
    assert_eq!(metrics.task_skipped.with_label_values(&["scan"]).get(), 1);
    assert_eq!(tasks.running_scan().await, Some(run_id));
}

/// EC2 states cost one call per (account, region), not one per page: 150 leased instances
/// over two GetResources pages and one terminated instance are walked with a single filtered
/// DescribeInstances, the terminated one is known as such and not live, the rest are live.
#[tokio::test(flavor = "multi_thread")]
async fn instance_states_take_one_call_per_walk() {
    let moto = Moto::start().await;
    let proxy = FaultProxy::start(&moto.endpoint()).await;
    let work = Workdir::with_config(&config_text_with_aws(&aws_section(&proxy.endpoint())));
    let clock = manual_clock();
    let d = TestDaemon::start_with_clock(&work, clock.clone()).await;
    let lease = d.acquire(WEB, "web", "many").await;
    let seeded = seed(
        &moto.endpoint(),
        json!({"resources": [
            {"key": "live", "account": A, "region": "us-east-1", "type": "ec2:instance", "tags": tags(&lease, "web"), "count": 150},
            {"key": "gone", "account": A, "region": "us-east-1", "type": "ec2:instance", "tags": tags(&lease, "web"), "terminated": true}
        ]}),
    )
    .await;
    // The walk's look for ending instances, not the sweep's list of live ones.
    let ending_states = || {
        proxy
            .bodies("DescribeInstances")
            .iter()
            .filter(|b| b.contains("shutting-down"))
            .count()
    };
    let before = ending_states();
    let pages_before = proxy.count("GetResources");
    let run = scan(&d, &clock).await;
    assert_eq!(run["run"]["outcome"], "success", "{run}");
    assert!(
        proxy.count("GetResources") - pages_before >= 5,
        "four walks, the one with instances over several pages"
    );
    assert_eq!(
        ending_states() - before,
        1,
        "one DescribeInstances for the only walk that lists instances"
    );
    let res = resources(&d).await;
    let gone = &res[&arns_by_key(&seeded)["gone"][0]];
    assert_eq!(gone["state"], "terminated", "{gone}");
    let live = &arns_by_key(&seeded)["live"];
    assert_eq!(live.len(), 150);
    for arn in live {
        let r = &res[arn];
        assert_eq!(r["verdict"], "leased", "{r}");
        assert!(
            r["state"].is_null(),
            "a live instance's state is not read: {r}"
        );
    }
    d.stop().await;
}
