//! The reaper against moto: an armed pass deletes what is doomed and every guard keeps what it
//! must; unarmed, the same plan is recorded as would-delete and no AWS call is made.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use ephemera::clock::ManualClock;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::moto::Moto;
use crate::support::proxy::{Fault, FaultProxy};
use crate::support::seed::{arns_by_key, seed};
use crate::support::{
    OPERATOR, TestDaemon, VIEWER, WEB, Workdir, config_text_with_aws, manual_clock, sample,
};

const A: &str = "123456789012";
/// Walked through its own role: verified.
const B: &str = "444444444444";

pub(crate) const POLICY: &str = r#"
[[project]]
name = "web"
lessees = ["ci-web", "ci-web-2"]
default_ttl = "2h"
max_ttl = "24h"
grace = "1h"
max_active_leases = 20
allowed_regions = ["us-east-1", "eu-west-1"]

[project.on]
expired = { action = "reap" }
released = { action = "reap" }

[[project]]
name = "data"
lessees = ["*"]
default_ttl = "6h"
max_ttl = "3d"
grace = "1h"

[project.on]
expired = { action = "reap" }
"#;

/// Both shared, armed by their own settings.
const ACCOUNTS: &str = r#"
[[aws.accounts]]
id = "123456789012"
armed = true

[[aws.accounts]]
id = "444444444444"
assume_role_arn = "arn:aws:iam::444444444444:role/ephemera"
armed = true
"#;

fn config(endpoint: &str, accounts: &str, enforcement: &str) -> String {
    config_text_with_aws(&format!(
        r#"regions = ["us-east-1", "eu-west-1"]
endpoint_url = "{endpoint}"
emulator = true
max_attempts = 1
{accounts}
[enforcement]
{enforcement}
"#
    ))
}

fn workdir(endpoint: &str, accounts: &str, enforcement: &str) -> Workdir {
    let work = Workdir::with_config(&config(endpoint, accounts, enforcement));
    std::fs::write(work.dir.path().join("rules/policy/projects.toml"), POLICY)
        .expect("write policy");
    work
}

/// A daemon with `enforcement` on a manual clock, and a `web` lease that has expired by the
/// clock's time (acquired, then 2h10m later; the default ttl is 2h).
async fn with_expired_lease(
    endpoint: &str,
    accounts: &str,
    enforcement: &str,
) -> (Workdir, Arc<ManualClock>, TestDaemon, String) {
    let work = workdir(endpoint, accounts, enforcement);
    let clock = manual_clock();
    let d = TestDaemon::start_with_clock(&work, clock.clone()).await;
    let expired = d.acquire(WEB, "web", "expired").await;
    clock.advance(TimeDelta::hours(2) + TimeDelta::minutes(10));
    (work, clock, d, expired)
}

fn tags(lease: &str, project: &str) -> Value {
    crate::support::lease_tags(lease, project, "ci 1")
}

pub(crate) async fn audit(d: &TestDaemon) -> Vec<Value> {
    let (s, page) = d.get("/api/v1/audit?limit=1000", VIEWER).await;
    assert_eq!(s, StatusCode::OK, "{page}");
    page["items"].as_array().expect("items").clone()
}

/// The audit decisions recorded for `arn`, in order.
pub(crate) fn decisions(records: &[Value], arn: &str) -> Vec<(String, String)> {
    records
        .iter()
        .filter(|r| r["arn"] == arn)
        .map(|r| {
            (
                r["decision"].as_str().unwrap_or_default().to_owned(),
                r["detail"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Starts an on-call reap job as the operator (202, with its `Location`) and follows it to
/// the end; returns the finished job.
pub(crate) async fn reap_job(d: &TestDaemon, arns: &[&str]) -> Value {
    let resp = d
        .http
        .post(d.url("/api/v1/reap"))
        .bearer_auth(OPERATOR)
        .json(&json!({ "arns": arns }))
        .send()
        .await
        .expect("reap request sent");
    let status = resp.status();
    let location = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let job: Value = resp.json().await.expect("job document");
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let id = job["job_id"].as_str().expect("job id");
    assert_eq!(location, Some(format!("/api/v1/reap/jobs/{id}")));
    wait_job(d, id).await
}

/// Polls reap job `id` (as the viewer) until it is no longer running (at most a minute).
async fn wait_job(d: &TestDaemon, id: &str) -> Value {
    let what = format!("reap job {id} finishes");
    crate::support::eventually_some(&what, Duration::from_secs(60), || async {
        let (s, job) = d.get(&format!("/api/v1/reap/jobs/{id}"), VIEWER).await;
        assert_eq!(s, StatusCode::OK, "{job}");
        (job["state"] != "running").then_some(job)
    })
    .await
}

/// Whether moto still has the resource in `account` (any account: reached through a role,
/// which moto lets the default account assume in itself), asked through the deleters' own
/// re-read.
pub(crate) async fn exists(moto: &Moto, account: &str, arn: &str) -> bool {
    // Straight at this test's moto (no proxy), parsed in memory: a file shared by the tests
    // running in parallel could point one test's look at another's emulator.
    let text = config(
        &moto.endpoint(),
        &format!(
            "[[aws.accounts]]\nid = \"{account}\"\nassume_role_arn = \"arn:aws:iam::{account}:role/ephemera\"\n"
        ),
        "armed = false",
    );
    let aws = ephemera::config::Config::parse(std::path::Path::new("look.toml"), &text, &|_| None)
        .expect("config")
        .aws;
    let region = ephemera::model::Arn::parse(arn)
        .ok()
        .map(|a| a.region().to_owned())
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "us-east-1".into());
    let sdk = ephemera::inventory::AwsClients::new(aws)
        .config_for(account, &region)
        .await
        .expect("sdk config");
    let arn = ephemera::model::Arn::parse(arn).expect("arn");
    match ephemera::reaper::aws::inspect(&sdk, &arn)
        .await
        .expect("inspect")
    {
        ephemera::reaper::aws::Inspection::Gone => false,
        ephemera::reaper::aws::Inspection::Live { .. } => true,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn armed_pass_deletes_the_doomed_and_every_guard_holds() {
    let moto = Moto::start().await;
    let proxy = FaultProxy::start(&moto.endpoint()).await;
    let work = workdir(
        &proxy.endpoint(),
        ACCOUNTS,
        r#"armed = true
deletable_types = ["ec2:volume", "sqs:queue"]
max_deletions_per_pass = 20
max_project_share_percent = 80
"#,
    );
    let clock = manual_clock();
    let d = TestDaemon::start_with_clock(&work, clock.clone()).await;

    // Leases at t0: after 2h10m, `expired` and `renewed` have expired (default ttl 2h), `data`
    // too (ttl 1h); `active` runs 10h; `old` is released, and `new` replaces it.
    let expired = d.acquire(WEB, "web", "expired").await;
    let renewed = d.acquire(WEB, "web", "renewed").await;
    let active = d.acquire(WEB, "web", "active").await;
    let old = d.acquire(WEB, "web", "old").await;
    d.renew(WEB, &active, "10h").await;
    let data = d
        .acquire_with(
            crate::support::DATA,
            json!({"project": "data", "task": "etl", "owner": "bob@example.com", "ttl": "1h"}),
        )
        .await;
    d.release(WEB, &old).await;
    clock.advance(TimeDelta::hours(2) + TimeDelta::minutes(10));
    let new = d.acquire(WEB, "web", "new").await;

    let mut protected = tags(&expired, "web");
    protected["ephemera:protect"] = json!("keep");
    let seeded = seed(
        &moto.endpoint(),
        json!({"resources": [
            {"key": "doomed-vol", "account": A, "type": "ec2:volume", "tags": tags(&expired, "web")},
            {"key": "doomed-queue", "account": A, "type": "sqs:queue", "tags": tags(&expired, "web")},
            {"key": "doomed-b", "account": B, "type": "ec2:volume", "tags": tags(&expired, "web")},
            {"key": "leased", "account": A, "type": "ec2:volume", "tags": tags(&active, "web")},
            {"key": "protected", "account": A, "type": "ec2:volume", "tags": protected},
            {"key": "renewed", "account": A, "type": "ec2:volume", "tags": tags(&renewed, "web")},
            {"key": "retagged", "account": A, "type": "ec2:volume", "tags": tags(&old, "web")},
            {"key": "newly-protected", "account": A, "type": "ec2:volume", "tags": tags(&expired, "web")},
            {"key": "owner-changed", "account": A, "type": "ec2:volume", "tags": tags(&expired, "web")},
            {"key": "incomplete", "account": A, "region": "eu-west-1", "type": "ec2:volume", "tags": tags(&expired, "web")},
            {"key": "not-allowlisted", "account": A, "type": "dynamodb:table", "tags": tags(&expired, "web")},
            {"key": "capped", "account": A, "type": "ec2:volume", "tags": tags(&data, "data"), "count": 5}
        ]}),
    )
    .await;
    let by_key = arns_by_key(&seeded);
    let arn = |key: &str| by_key[key][0].clone();

    // ---- pass 1: everything is marked; nothing is due yet -----------------------------------
    let run = d.pass().await;
    assert_eq!(run["run"]["outcome"], "success", "{run}");
    let reap = &run["run"]["summary"]["reap"];
    assert_eq!(reap["deleted"], 0, "{run}");
    // 9 doomed or guarded ones of web, and the 5 of data.
    assert_eq!(reap["marked"], 14, "{run}");
    let (s, plan) = d.get("/api/v1/plan", VIEWER).await;
    assert_eq!(s, StatusCode::OK, "{plan}");
    let items = plan["items"].as_array().expect("items");
    assert!(items.iter().all(|i| i["status"] == "scheduled"), "{plan}");
    assert!(
        items
            .iter()
            .all(|i| i["arn"] != arn("leased") && i["arn"] != arn("protected")),
        "leased and protected resources are never marked: {plan}"
    );
    // Lessees see the plan of their own projects only.
    for (token, project, n) in [(WEB, "web", 9), (crate::support::DATA, "data", 5)] {
        let (s, mine) = d.get("/api/v1/plan", token).await;
        assert_eq!(s, StatusCode::OK, "{mine}");
        let mine = mine["items"].as_array().expect("items");
        assert_eq!(mine.len(), n, "{project}: {mine:?}");
        assert!(mine.iter().all(|i| i["project"] == project), "{mine:?}");
    }
    let finding_id = d.get("/api/v1/findings?limit=100", VIEWER).await.1["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|f| f["arn"] == arn("doomed-vol").as_str())
        .map(|f| f["id"].clone())
        .expect("finding");
    let (_, finding) = d
        .get(&format!("/api/v1/findings/{finding_id}"), VIEWER)
        .await;
    let events = finding["events"].as_array().expect("events");
    assert_eq!(
        events.last().map(|e| e["kind"].clone()),
        Some(json!("marked")),
        "{finding}"
    );
    assert!(
        audit(&d).await.is_empty(),
        "marking decides no deletion: the audit log is empty"
    );

    // ---- pass 2, past the deadline: the last-moment changes land while it is about to act ---
    clock.advance(TimeDelta::hours(1) + TimeDelta::minutes(5));
    proxy.set_fault_in("GetResources", "eu-west-1", Fault::Throttle, None);
    proxy.set_fault(
        "GetCallerIdentity",
        Fault::Delay(Duration::from_secs(4)),
        Some(1),
    );
    let deletes_before = proxy.count("DeleteVolume");
    let (s, started) = d.post("/api/v1/scans", OPERATOR, json!({})).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{started}");
    let run_id = started["run_id"].as_str().expect("run id").to_owned();
    crate::support::eventually("the act step starts", Duration::from_secs(10), || async {
        proxy.count("GetCallerIdentity") > 0
    })
    .await;
    assert_eq!(proxy.count("GetCallerIdentity"), 1, "the act step started");
    assert_eq!(proxy.count("DeleteVolume"), deletes_before);
    let ec2 = aws_sdk_ec2::Client::new(&moto.sdk_config("us-east-1").await);
    let id_of = |key: &str| {
        seeded
            .resources
            .iter()
            .find(|r| r.key == key)
            .expect("seeded")
            .id
            .clone()
    };
    ec2.create_tags()
        .resources(id_of("retagged"))
        .tags(
            aws_sdk_ec2::types::Tag::builder()
                .key("ephemera:lease-id")
                .value(&new)
                .build(),
        )
        .send()
        .await
        .expect("retag");
    ec2.create_tags()
        .resources(id_of("newly-protected"))
        .tags(
            aws_sdk_ec2::types::Tag::builder()
                .key("ephemera:protect")
                .value("hands off")
                .build(),
        )
        .send()
        .await
        .expect("protect");
    ec2.create_tags()
        .resources(id_of("owner-changed"))
        .tags(
            aws_sdk_ec2::types::Tag::builder()
                .key("ephemera:owner")
                .value("carol@example.com")
                .build(),
        )
        .send()
        .await
        .expect("new owner");
    // The registry refuses to renew an expired lease, so the renewal the pass missed is made
    // at a moment the lease was still running: the clock steps back, renews, steps forward.
    let back = TimeDelta::hours(2);
    clock.advance(-back);
    d.renew(WEB, &renewed, "10h").await;
    clock.advance(back);
    let run = d.wait_scan(&run_id).await;
    assert_eq!(run["run"]["outcome"], "partial", "{run}");

    let records = audit(&d).await;
    let last = |key: &str| {
        decisions(&records, &arn(key))
            .last()
            .cloned()
            .unwrap_or_default()
    };
    for key in ["doomed-vol", "doomed-queue", "doomed-b"] {
        assert_eq!(last(key).0, "deleted", "{key}: {records:#?}");
    }
    for (key, why) in [
        ("renewed", "now leased"),
        ("retagged", "lease tag changed"),
        ("newly-protected", "now protected"),
        ("owner-changed", "owner tag changed"),
    ] {
        let (decision, detail) = last(key);
        assert_eq!(decision, "skipped", "{key}: {records:#?}");
        assert!(detail.contains(why), "{key}: {detail}");
    }
    assert!(
        records
            .iter()
            .any(|r| r["decision"] == "capped" && r["arn"] == "project:data"),
        "{records:#?}"
    );
    let (_, plan) = d.get("/api/v1/plan", VIEWER).await;
    let reason_of = |a: &str| {
        plan["items"]
            .as_array()
            .expect("items")
            .iter()
            .find(|i| i["arn"] == a)
            .map(|i| i["held_reason"].as_str().unwrap_or_default().to_owned())
            .unwrap_or_default()
    };
    assert!(
        reason_of(&arn("not-allowlisted")).contains("report only"),
        "{plan}"
    );

    // The emulator agrees: the doomed are gone, every other one is still there.
    assert!(!exists(&moto, A, &arn("doomed-vol")).await);
    assert!(!exists(&moto, A, &arn("doomed-queue")).await);
    assert!(!exists(&moto, B, &arn("doomed-b")).await);
    for key in [
        "leased",
        "protected",
        "renewed",
        "retagged",
        "newly-protected",
        "owner-changed",
        "incomplete",
        "not-allowlisted",
    ] {
        assert!(exists(&moto, A, &arn(key)).await, "{key} survived");
    }
    for a in &by_key["capped"] {
        assert!(exists(&moto, A, a).await, "over the cap: {a} survived");
    }

    let m = d.metrics().await;
    assert_eq!(
        sample(
            &m,
            r#"ephemera_reap_actions_total{outcome="deleted",resource_type="ec2:volume"}"#
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &m,
            r#"ephemera_reap_actions_total{outcome="deleted",resource_type="sqs:queue"}"#
        ),
        Some(1.0)
    );
    assert_eq!(sample(&m, "ephemera_reap_capped_total"), Some(1.0));
    assert_eq!(
        sample(&m, "ephemera_teardown_latency_seconds_count"),
        Some(3.0)
    );
    assert!(sample(&m, r#"ephemera_marked_resources{project="data"}"#) == Some(5.0));
    // The resource gauges were counted beside the act step and again after its deletions:
    // the deleted queue (the only one) is no longer live.
    assert_eq!(
        sample(
            &m,
            r#"ephemera_resources{project="web",region="us-east-1",resource_type="sqs:queue",verdict="expired"}"#
        ),
        Some(0.0)
    );
    // The gauge is set after the deletions: it counts what the plan still holds, per project.
    let (_, plan) = d.get("/api/v1/plan", VIEWER).await;
    let mut planned: BTreeMap<String, f64> = BTreeMap::new();
    for i in plan["items"].as_array().expect("items") {
        *planned
            .entry(i["project"].as_str().unwrap_or("unknown").to_owned())
            .or_default() += 1.0;
    }
    for (project, n) in &planned {
        assert_eq!(
            sample(
                &m,
                &format!(r#"ephemera_marked_resources{{project="{project}"}}"#)
            ),
            Some(*n),
            "{project}: {plan}"
        );
    }
    assert!(planned.contains_key("web"), "{plan}");
    // A project's cap names the project: a lessee of web does not see data's.
    assert_eq!(plan["capped"][0]["scope"], "project:data", "{plan}");
    let (_, web_plan) = d.get("/api/v1/plan", WEB).await;
    assert_eq!(web_plan["capped"], json!([]), "{web_plan}");

    let (_, verify) = d.get("/api/v1/audit/verify", VIEWER).await;
    assert_eq!(verify["ok"], true, "{verify}");

    // ---- pass 3, all walks complete: the eu volume goes; nothing is deleted twice -------------
    proxy.clear_faults();
    let before = proxy.count("DeleteVolume");
    let run = d.pass().await;
    assert_eq!(run["run"]["outcome"], "success", "{run}");
    assert_eq!(
        proxy.count("DeleteVolume") - before,
        1,
        "only the volume of the once-incomplete walk is deleted now"
    );
    let (_, plan) = d.get("/api/v1/plan", VIEWER).await;
    let new_owner = plan["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["arn"] == arn("owner-changed").as_str())
        .cloned()
        .expect("marked again");
    assert_eq!(
        new_owner["status"], "scheduled",
        "a new owner gets the whole grace: {plan}"
    );
    assert_eq!(new_owner["owner_tag"], "carol@example.com", "{plan}");
    assert!(!exists(&moto, A, &arn("incomplete")).await);
    let records = audit(&d).await;
    assert_eq!(
        decisions(&records, &arn("doomed-vol"))
            .iter()
            .filter(|(d, _)| d == "deleted")
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unarmed_pass_records_would_delete_once_and_calls_nothing() {
    let moto = Moto::start().await;
    let proxy = FaultProxy::start(&moto.endpoint()).await;
    let (work, clock, d, expired) = with_expired_lease(
        &proxy.endpoint(),
        ACCOUNTS,
        "armed = false\ndeletable_types = [\"ec2:volume\"]\n",
    )
    .await;
    let seeded = seed(
        &moto.endpoint(),
        json!({"resources": [
            {"key": "doomed", "account": A, "type": "ec2:volume", "tags": tags(&expired, "web")}
        ]}),
    )
    .await;
    let doomed = arns_by_key(&seeded)["doomed"][0].clone();

    d.pass().await;
    clock.advance(TimeDelta::hours(2));
    let seen_before = proxy.requests().len();
    let run = d.pass().await;
    assert_eq!(run["run"]["summary"]["reap"]["would_delete"], 1, "{run}");
    // The pass publishes the chain's head; the API verifies the chain against it.
    let head = run["run"]["summary"]["audit_head"]
        .as_str()
        .expect("a published head")
        .to_owned();
    d.pass().await;
    let (_, verify) = d
        .get(&format!("/api/v1/audit/verify?head={head}"), VIEWER)
        .await;
    assert_eq!(verify["ok"], true, "{verify}");
    let forged = format!(
        "{}:{}",
        head.split(':').next().unwrap_or("1"),
        "0".repeat(64)
    );
    let (_, verify) = d
        .get(&format!("/api/v1/audit/verify?head={forged}"), VIEWER)
        .await;
    assert_eq!(verify["ok"], false, "{verify}");

    let ops: std::collections::BTreeSet<String> = proxy.requests()[seen_before..]
        .iter()
        .map(|r| r.operation.clone())
        .collect();
    // IAM's credentials are listed every pass.
    let allowed: std::collections::BTreeSet<String> = [
        "GetResources",
        "DescribeInstances",
        "AssumeRole",
        "GetAccountAuthorizationDetails",
        "ListInstanceProfiles",
        "ListInstanceProfileTags",
        "ListAccessKeys",
    ]
    .map(String::from)
    .into();
    assert!(
        ops.is_subset(&allowed),
        "unarmed passes call only the inventory's read-only operations: {ops:?}"
    );
    assert!(exists(&moto, A, &doomed).await);
    let records = audit(&d).await;
    let would: Vec<_> = decisions(&records, &doomed)
        .into_iter()
        .filter(|(d, _)| d == "would-delete")
        .collect();
    assert_eq!(would.len(), 1, "recorded once across passes: {records:#?}");
    // The owner was queued one notice when the volume was marked (the mailer sends it).
    let store = ephemera::store::Store::open(&work.dir.path().join("state/ephemera.db"))
        .await
        .expect("store");
    let outbox: Vec<_> = store
        .outbox_rows()
        .await
        .expect("outbox")
        .into_iter()
        .filter(|r| r.sent_at.is_none())
        .collect();
    assert_eq!(outbox.len(), 1, "{outbox:?}");
    assert_eq!(outbox[0].kind, ephemera::model::MailKind::DeletionPlanned);
    assert_eq!(outbox[0].recipient.as_deref(), Some("alice@example.com"));
    assert_eq!(outbox[0].payload["arn"], doomed.as_str());
    let (_, plan) = d.get("/api/v1/plan", VIEWER).await;
    assert_eq!(plan["armed"], false);
    assert_eq!(plan["items"][0]["status"], "due", "{plan}");
    assert_eq!(plan["items"][0]["owner"], "alice@example.com", "{plan}");
    let m = d.metrics().await;
    assert_eq!(
        sample(
            &m,
            r#"ephemera_reap_actions_total{outcome="would-delete",resource_type="ec2:volume"}"#
        ),
        Some(2.0),
        "counted on each pass it is due"
    );
}

/// Seeds a volume in account A under the expired lease, runs the marking pass and then a pass
/// past the deadline; returns the volume's ARN and the second pass.
async fn doomed_past_deadline(
    d: &TestDaemon,
    clock: &ManualClock,
    moto: &Moto,
    expired: &str,
) -> (String, Value) {
    let seeded = seed(
        &moto.endpoint(),
        json!({"resources": [
            {"key": "doomed", "account": A, "type": "ec2:volume", "tags": tags(expired, "web")}
        ]}),
    )
    .await;
    d.pass().await;
    clock.advance(TimeDelta::hours(2));
    let run = d.pass().await;
    (arns_by_key(&seeded)["doomed"][0].clone(), run)
}

/// The daemon's own credentials act in moto's default account, but the config calls it
/// 333333333333 (a typo in the account id): STS says otherwise, so nothing is deleted.
#[tokio::test(flavor = "multi_thread")]
async fn an_unverified_account_loses_nothing() {
    let moto = Moto::start().await;
    let (_work, clock, d, expired) = with_expired_lease(
        &moto.endpoint(),
        "\n[[aws.accounts]]\nid = \"333333333333\"\narmed = true\n",
        "armed = true\ndeletable_types = [\"ec2:volume\"]\n",
    )
    .await;
    let (doomed, run) = doomed_past_deadline(&d, &clock, &moto, &expired).await;
    assert_eq!(run["run"]["summary"]["reap"]["skipped"], 1, "{run}");
    let records = audit(&d).await;
    let (decision, detail) = decisions(&records, &doomed)
        .last()
        .cloned()
        .unwrap_or_default();
    assert_eq!(decision, "skipped", "{records:#?}");
    assert!(
        detail.contains("account 333333333333 not verified") && detail.contains(A),
        "{detail}"
    );
    assert!(exists(&moto, A, &doomed).await, "the volume survived");
}

/// A pass that skips an item for the reason it skipped it last time appends no audit record:
/// the first skip is recorded, the repeats are counted on the finding, and the plan shows how
/// many and when the latest was.
#[tokio::test(flavor = "multi_thread")]
async fn repeated_skips_are_recorded_once_and_counted() {
    let moto = Moto::start().await;
    let (_work, clock, d, expired) = with_expired_lease(
        &moto.endpoint(),
        "\n[[aws.accounts]]\nid = \"333333333333\"\narmed = true\n",
        "armed = true\ndeletable_types = [\"ec2:volume\"]\n",
    )
    .await;
    let (doomed, run) = doomed_past_deadline(&d, &clock, &moto, &expired).await;
    assert_eq!(run["run"]["summary"]["reap"]["skipped"], 1, "{run}");
    let mut last_at = None;
    for _ in 0..3 {
        clock.advance(TimeDelta::minutes(15));
        let run = d.pass().await;
        assert_eq!(
            run["run"]["summary"]["reap"]["skipped"], 1,
            "skipped again: {run}"
        );
        last_at = Some(ephemera::clock::Clock::now(clock.as_ref()).timestamp_millis());
    }
    let records = audit(&d).await;
    let skips: Vec<_> = decisions(&records, &doomed)
        .into_iter()
        .filter(|(decision, _)| decision == "skipped")
        .collect();
    assert_eq!(skips.len(), 1, "four skips, one record: {records:#?}");
    let (_, plan) = d.get("/api/v1/plan", VIEWER).await;
    let item = &plan["items"][0];
    assert_eq!(item["arn"], doomed.as_str(), "{plan}");
    assert_eq!(item["skip_count"], 4, "{plan}");
    let shown = item["last_skipped_at"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.timestamp_millis());
    assert_eq!(shown, last_at, "{plan}");
    let (s, verify) = d.get("/api/v1/audit/verify", VIEWER).await;
    assert_eq!(
        (s, verify["ok"].clone()),
        (StatusCode::OK, json!(true)),
        "{verify}"
    );
}

/// Deletions only inside the window: the clock's Sunday is outside a Monday-to-Saturday one.
#[tokio::test(flavor = "multi_thread")]
async fn outside_the_deletion_window_nothing_is_deleted() {
    let moto = Moto::start().await;
    let (_work, clock, d, expired) = with_expired_lease(
        &moto.endpoint(),
        ACCOUNTS,
        "armed = true\ndeletable_types = [\"ec2:volume\"]\n\n[enforcement.window]\ndays = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\", \"sat\"]\n",
    )
    .await;
    let (doomed, run) = doomed_past_deadline(&d, &clock, &moto, &expired).await;
    assert_eq!(run["run"]["summary"]["reap"]["held"], 1, "{run}");
    assert_eq!(run["run"]["summary"]["reap"]["deleted"], 0, "{run}");
    let (_, plan) = d.get("/api/v1/plan", VIEWER).await;
    assert_eq!(plan["items"][0]["arn"], doomed.as_str(), "{plan}");
    assert_eq!(
        plan["items"][0]["held_reason"], "outside the deletion window",
        "{plan}"
    );
    assert!(exists(&moto, A, &doomed).await, "the volume survived");
}

/// Instances go before the volumes they hold; a failed instance holds back only its volume
/// (an unrelated volume still goes), is retried after the back-off, and once terminated it is
/// never deleted again nor flagged again.
#[tokio::test(flavor = "multi_thread")]
async fn dependency_order_failure_holds_back_dependents_and_retries_after_backoff() {
    let moto = Moto::start().await;
    let proxy = FaultProxy::start(&moto.endpoint()).await;
    let (_work, clock, d, expired) =
        with_expired_lease(&proxy.endpoint(), ACCOUNTS, "armed = true\ndeletable_types = [\"ec2:instance\", \"ec2:volume\"]\nretry_backoff = \"15m\"\nmax_project_share_percent = 100\n").await;
    let seeded = seed(
        &moto.endpoint(),
        json!({"resources": [
            {"key": "attached", "account": A, "type": "ec2:volume", "tags": tags(&expired, "web"), "in_use": true},
            {"key": "loner", "account": A, "type": "ec2:volume", "tags": tags(&expired, "web")}
        ]}),
    )
    .await;
    let by_key = arns_by_key(&seeded);
    let (attached, loner) = (by_key["attached"][0].clone(), by_key["loner"][0].clone());
    let instance_arn = seeded
        .resources
        .iter()
        .find(|r| r.key == "attached")
        .and_then(|r| r.used_by.first().cloned())
        .expect("the volume's instance");
    let instance_id = instance_arn.rsplit('/').next().expect("id").to_owned();
    // The instance holding the volume belongs to the same expired lease.
    let ec2 = aws_sdk_ec2::Client::new(&moto.sdk_config("us-east-1").await);
    let mut req = ec2.create_tags().resources(&instance_id);
    for (k, v) in tags(&expired, "web").as_object().expect("tags") {
        req = req.tags(
            aws_sdk_ec2::types::Tag::builder()
                .key(k)
                .value(v.as_str().expect("value"))
                .build(),
        );
    }
    req.send().await.expect("tag the instance");

    let run = d.pass().await;
    assert_eq!(run["run"]["summary"]["reap"]["marked"], 3, "{run}");
    clock.advance(TimeDelta::hours(1) + TimeDelta::minutes(5));

    // Pass 2: terminating fails; its volume waits; the loner goes.
    proxy.set_fault("TerminateInstances", Fault::ServerError, None);
    let run = d.pass().await;
    let reap = &run["run"]["summary"]["reap"];
    assert_eq!(
        (
            reap["deleted"].clone(),
            reap["failed"].clone(),
            reap["skipped"].clone()
        ),
        (json!(1), json!(1), json!(1)),
        "{run}"
    );
    let records = audit(&d).await;
    let last = |arn: &str| decisions(&records, arn).last().cloned().unwrap_or_default();
    assert_eq!(last(&instance_arn).0, "failed", "{records:#?}");
    assert!(
        last(&instance_arn).1.contains("TerminateInstances"),
        "{records:#?}"
    );
    assert_eq!(last(&attached).0, "skipped");
    assert!(
        last(&attached).1.contains("held back") && last(&attached).1.contains(&instance_id),
        "{records:#?}"
    );
    assert_eq!(last(&loner).0, "deleted");
    assert!(exists(&moto, A, &instance_arn).await && exists(&moto, A, &attached).await);
    assert!(!exists(&moto, A, &loner).await);

    // Pass 3, inside the back-off: the instance waits, and so does its volume.
    proxy.clear_faults();
    clock.advance(TimeDelta::minutes(5));
    let terminations = proxy.count("TerminateInstances");
    let run = d.pass().await;
    assert_eq!(proxy.count("TerminateInstances"), terminations, "{run}");
    let (_, plan) = d.get("/api/v1/plan", VIEWER).await;
    let instance_item = plan["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["arn"] == instance_arn.as_str())
        .cloned()
        .expect("instance in plan");
    assert!(
        instance_item["held_reason"]
            .as_str()
            .is_some_and(|r| r.contains("retrying after")),
        "{plan}"
    );
    assert_eq!(instance_item["attempts"], 1, "{plan}");

    // Pass 4, after the back-off: instance first, then its volume.
    clock.advance(TimeDelta::minutes(15));
    let run = d.pass().await;
    assert_eq!(run["run"]["summary"]["reap"]["deleted"], 2, "{run}");
    let records = audit(&d).await;
    let seq_of = |arn: &str| {
        records
            .iter()
            .filter(|r| r["arn"] == arn && r["decision"] == "deleted")
            .map(|r| r["seq"].as_i64().expect("seq"))
            .next_back()
            .expect("deleted record")
    };
    assert!(
        seq_of(&instance_arn) < seq_of(&attached),
        "instance before its volume"
    );
    assert!(!exists(&moto, A, &instance_arn).await && !exists(&moto, A, &attached).await);

    // Pass 5: the terminated instance is still listed by the tagging API, but it is gone:
    // not flagged again, not terminated again.
    let terminations = proxy.count("TerminateInstances");
    let run = d.pass().await;
    assert_eq!(run["run"]["summary"]["findings_opened"], 0, "{run}");
    assert_eq!(proxy.count("TerminateInstances"), terminations);
    let (_, open) = d.get("/api/v1/findings?limit=100", VIEWER).await;
    assert_eq!(open["items"], json!([]), "{open}");
    assert_eq!(
        sample(
            &d.metrics().await,
            r#"ephemera_reap_actions_total{outcome="failed",resource_type="ec2:instance"}"#
        ),
        Some(1.0)
    );
}

/// On-call reaping: operators only, the same guards but the deadline, a plan first, a
/// confirmation unless `--yes`, a result table, and the actor in the audit log.
#[tokio::test(flavor = "multi_thread")]
async fn on_call_reaping_through_the_api_and_the_cli() {
    let moto = Moto::start().await;
    let work = workdir(
        &moto.endpoint(),
        ACCOUNTS,
        "armed = true\ndeletable_types = [\"ec2:volume\"]\n",
    );
    let clock = manual_clock();
    let d = TestDaemon::start_with_clock(&work, clock.clone()).await;
    let expired = d.acquire(WEB, "web", "expired").await;
    let active = d.acquire(WEB, "web", "active").await;
    d.renew(WEB, &active, "10h").await;
    clock.advance(TimeDelta::hours(2) + TimeDelta::minutes(10));
    let seeded = seed(
        &moto.endpoint(),
        json!({"resources": [
            {"key": "first", "account": A, "type": "ec2:volume", "tags": tags(&expired, "web")},
            {"key": "second", "account": A, "type": "ec2:volume", "tags": tags(&expired, "web")},
            {"key": "leased", "account": A, "type": "ec2:volume", "tags": tags(&active, "web")},
            {"key": "queue", "account": A, "type": "sqs:queue", "tags": tags(&expired, "web")}
        ]}),
    )
    .await;
    let by_key = arns_by_key(&seeded);
    let arn = |k: &str| by_key[k][0].clone();
    // Marked, with the deadline an hour ahead.
    d.pass().await;

    for (token, want) in [
        (WEB, StatusCode::FORBIDDEN),
        (VIEWER, StatusCode::FORBIDDEN),
    ] {
        let (s, body) = d
            .post("/api/v1/reap", token, json!({"arns": [arn("first")]}))
            .await;
        assert_eq!(s, want, "{body}");
    }
    for bad in [json!({"arns": []}), json!({"arns": ["not-an-arn"]})] {
        let (s, body) = d.post("/api/v1/reap", OPERATOR, bad).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["code"], "invalid-request", "{body}");
    }
    let (s, planned) = d
        .post(
            "/api/v1/reap",
            OPERATOR,
            json!({"arns": [arn("first"), arn("leased")], "plan_only": true}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{planned}");
    assert_eq!(planned["plan"][0]["arn"], arn("first").as_str());
    assert_eq!(
        planned["plan"][0]["status"], "due",
        "the deadline does not apply: {planned}"
    );
    assert_eq!(planned["results"][0]["arn"], arn("leased").as_str());
    assert!(
        planned["results"][0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("no open finding")),
        "{planned}"
    );
    assert!(
        exists(&moto, A, &arn("first")).await,
        "plan only deletes nothing"
    );

    let addr = d.base();
    let env = [
        ("EPHEMERA_ADDR", addr.as_str()),
        ("EPHEMERA_TOKEN", OPERATOR),
    ];
    // Without --yes, anything but `yes` stops it.
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ephemera"))
        .args(["reap", &arn("second")])
        .env_clear()
        .envs(env)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("cli runs");
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(b"no\n").await.expect("answer");
    }
    let out = child.wait_with_output().await.expect("cli ends");
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&arn("second")) && stdout.contains("due"),
        "the plan is shown: {stdout}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing done"));
    assert!(exists(&moto, A, &arn("second")).await);

    let out = crate::cli::run(&["reap", &arn("first"), "--plan-only"], &env).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("STATUS") && stdout.contains(&arn("first")),
        "{stdout}"
    );
    assert!(
        exists(&moto, A, &arn("first")).await,
        "--plan-only deletes nothing"
    );

    let out = crate::cli::run(&["reap", &arn("first"), "--yes"], &env).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("OUTCOME") && stdout.contains("deleted") && stdout.contains(&arn("first")),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("reap job") && stderr.contains("1 resource(s)"),
        "progress without a terminal: plain lines: {stderr}"
    );
    assert!(!exists(&moto, A, &arn("first")).await);
    assert!(exists(&moto, A, &arn("second")).await && exists(&moto, A, &arn("leased")).await);

    let out = crate::cli::run(
        &["audit", "list", "--decision", "deleted", "--output", "json"],
        &env,
    )
    .await;
    assert_eq!(out.status.code(), Some(0));
    let page: Value = serde_json::from_slice(&out.stdout).expect("json");
    let items = page["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{page}");
    assert_eq!(items[0]["mode"], "manual");
    assert_eq!(items[0]["actor"], "oncall");
    assert_eq!(items[0]["arn"], arn("first").as_str());

    // Every refusal is an audit record in the principal's name: an ARN with no open finding,
    // and an item the plan holds (a type that is not deletable).
    let job = reap_job(&d, &[&arn("leased"), &arn("queue")]).await;
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(
        (&job["done"], &job["total"]),
        (&json!(2), &json!(2)),
        "{job}"
    );
    assert_eq!(job["principal"], "oncall", "{job}");
    let outcomes: BTreeMap<String, String> = job["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| {
            (
                r["arn"].as_str().expect("arn").to_owned(),
                r["outcome"].as_str().expect("outcome").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        outcomes.get(&arn("leased")).map(String::as_str),
        Some("skipped"),
        "{job}"
    );
    assert_eq!(
        outcomes.get(&arn("queue")).map(String::as_str),
        Some("held"),
        "{job}"
    );
    let records = audit(&d).await;
    for (key, why) in [
        ("leased", "no open finding"),
        ("queue", "not in enforcement.deletable_types"),
    ] {
        let refusals: Vec<&Value> = records
            .iter()
            .filter(|r| r["arn"] == arn(key).as_str() && r["decision"] == "refused")
            .collect();
        assert_eq!(refusals.len(), 1, "one refusal for {key}: {records:?}");
        assert_eq!(refusals[0]["actor"], "oncall", "{:?}", refusals[0]);
        assert_eq!(refusals[0]["mode"], "manual", "{:?}", refusals[0]);
        assert!(
            refusals[0]["detail"]
                .as_str()
                .is_some_and(|d| d.contains(why)),
            "{:?}",
            refusals[0]
        );
    }
    assert!(exists(&moto, A, &arn("leased")).await && exists(&moto, A, &arn("queue")).await);

    // A job is its starter's, the operators' and the viewers'; to a lessee it does not exist.
    let job_path = format!("/api/v1/reap/jobs/{}", job["job_id"].as_str().expect("id"));
    let (s, body) = d.get(&job_path, WEB).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["code"], "reap-job-not-found", "{body}");
    let (s, body) = d.get(&job_path, OPERATOR).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (s, body) = d.get("/api/v1/reap/jobs/no-such-job", OPERATOR).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["code"], "reap-job-not-found", "{body}");

    // `--output json`: the final job document, the same wire type the server answers with.
    let out = crate::cli::run(&["reap", &arn("leased"), "--yes", "--output", "json"], &env).await;
    assert_eq!(out.status.code(), Some(1), "nothing deleted: exit 1");
    let job: ephemera::http::dto::ReapJobView =
        serde_json::from_slice(&out.stdout).expect("job document");
    assert_eq!(job.state, ephemera::http::dto::ReapJobState::Done);
    assert_eq!((job.done, job.total, job.results.len()), (1, 1, 1));
    assert_eq!(job.results[0].outcome, ephemera::model::Decision::Skipped);

    let out = crate::cli::run(&["scan", "--wait"], &env).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("reaper (armed): 0 marked, 0 would-delete, 0 deleted"),
        "{stdout}"
    );
    let out = crate::cli::run(&["plan"], &env).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&arn("second")) && stdout.contains("scheduled"),
        "{stdout}"
    );
    let out = crate::cli::run(&["audit", "verify"], &env).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("audit log intact"));
}

/// SIGKILL in the middle of an armed pass (deletes slowed down by the proxy), then a restart:
/// nothing is deleted twice, every deletion is in the audit log once, and the chain verifies;
/// then one record altered on disk is found and named by `audit verify`.
#[tokio::test(flavor = "multi_thread")]
async fn sigkill_mid_reaping_loses_no_record_and_deletes_nothing_twice() {
    let moto = Moto::start().await;
    let proxy = FaultProxy::start(&moto.endpoint()).await;
    let (work, doomed) = five_doomed_volumes(&moto, &proxy).await;
    let config = work.config_path();
    let scan = |addr: String| async move {
        let out = crate::cli::run(
            &["scan", "--wait", "--output", "json"],
            &[
                ("EPHEMERA_ADDR", addr.as_str()),
                ("EPHEMERA_TOKEN", OPERATOR),
            ],
        )
        .await;
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };

    let (mut daemon, addr) = crate::cli::spawn_daemon(&config);
    scan(addr.clone()).await; // marks all five
    tokio::time::sleep(Duration::from_millis(1500)).await;
    proxy.set_fault("DeleteVolume", Fault::Delay(Duration::from_secs(3)), None);
    let started = crate::cli::run(
        &["scan"],
        &[
            ("EPHEMERA_ADDR", addr.as_str()),
            ("EPHEMERA_TOKEN", OPERATOR),
        ],
    )
    .await;
    assert_eq!(started.status.code(), Some(0));
    crate::support::eventually("a delete is in flight", Duration::from_secs(10), || async {
        proxy.count("DeleteVolume") > 0
    })
    .await;
    assert_eq!(proxy.count("DeleteVolume"), 1, "one delete is in flight");
    daemon.child.kill().expect("SIGKILL");
    let _ = daemon.wait();
    // Let the delete in flight land in moto before the restart looks again.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    proxy.clear_faults();

    let (mut daemon, addr) = crate::cli::spawn_daemon(&config);
    scan(addr.clone()).await;
    assert_eq!(
        proxy.count("DeleteVolume"),
        5,
        "five volumes, five deletes: the interrupted one is not deleted again"
    );
    for a in &doomed {
        assert!(!exists(&moto, A, a).await, "{a} is gone");
    }
    let env = [
        ("EPHEMERA_ADDR", addr.as_str()),
        ("EPHEMERA_TOKEN", OPERATOR),
    ];
    let out = crate::cli::run(
        &["audit", "list", "--output", "json", "--limit", "1000"],
        &env,
    )
    .await;
    let page: Value = serde_json::from_slice(&out.stdout).expect("json");
    let records = page["items"].as_array().expect("items").clone();
    for a in &doomed {
        let deleted: Vec<_> = decisions(&records, a)
            .into_iter()
            .filter(|(d, _)| d == "deleted")
            .collect();
        assert_eq!(deleted.len(), 1, "{a}: {records:#?}");
    }
    assert!(
        records.iter().any(|r| r["detail"]
            .as_str()
            .is_some_and(|d| d.contains("interrupted delete"))),
        "the interrupted delete is settled as such: {records:#?}"
    );
    let out = crate::cli::run(&["audit", "verify"], &env).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    daemon.child.kill().expect("stop");
    let _ = daemon.wait();

    // Offline, straight from the store: intact; then one record is altered on disk.
    let config_arg = config.to_str().expect("utf-8");
    let out = crate::cli::run(&["audit", "verify", "--config", config_arg], &[]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let db = work.dir.path().join("state/ephemera.db");
    let raw = rusqlite::Connection::open(&db).expect("open store");
    raw.execute(
        "UPDATE audit_log SET decision = 'skipped' WHERE seq = 3",
        [],
    )
    .expect("tamper");
    drop(raw);
    let out = crate::cli::run(&["audit", "verify", "--config", config_arg], &[]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("BROKEN at record 3") && stdout.contains("edited"),
        "{stdout}"
    );

    // A config naming no store is an error, and verifying does not create one.
    let elsewhere = crate::support::Workdir::new();
    let out = crate::cli::run(
        &[
            "audit",
            "verify",
            "--config",
            elsewhere.config_path().to_str().expect("utf-8"),
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nothing to verify"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!elsewhere.path().join("state/ephemera.db").exists());
}

/// More deletions due in one account than `max_deletions_per_pass` (each account's cap unless
/// it sets its own): the pass deletes none of them, says so in the audit log, and counts it.
#[tokio::test(flavor = "multi_thread")]
async fn over_the_pass_cap_nothing_is_deleted() {
    let moto = Moto::start().await;
    let (_work, clock, d, expired) = with_expired_lease(
        &moto.endpoint(),
        ACCOUNTS,
        "armed = true\ndeletable_types = [\"ec2:volume\"]\nmax_deletions_per_pass = 2\nmax_project_share_percent = 100\n",
    )
    .await;
    let seeded = seed(
        &moto.endpoint(),
        json!({"resources": [
            {"key": "doomed", "account": A, "type": "ec2:volume", "tags": tags(&expired, "web"), "count": 3}
        ]}),
    )
    .await;
    d.pass().await;
    clock.advance(TimeDelta::hours(2));
    let run = d.pass().await;
    let reap = &run["run"]["summary"]["reap"];
    assert_eq!(reap["deleted"], 0, "{run}");
    assert_eq!(reap["held"], 3, "{run}");
    let records = audit(&d).await;
    let capped: Vec<_> = records
        .iter()
        .filter(|r| r["decision"] == "capped")
        .collect();
    assert_eq!(capped.len(), 1, "{records:#?}");
    assert_eq!(capped[0]["arn"], format!("account:{A}"));
    assert!(
        capped[0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("3 deletions due, cap 2")),
        "{capped:?}"
    );
    assert_eq!(
        sample(&d.metrics().await, "ephemera_reap_capped_total"),
        Some(1.0)
    );
    for a in &arns_by_key(&seeded)["doomed"] {
        assert!(exists(&moto, A, a).await, "{a} survived the cap");
    }
}

/// A crash right after noting a delete but before the call: if a walk then finds the resource
/// leased again (so it is plainly there), the note is dropped and no deletion is recorded.
#[tokio::test(flavor = "multi_thread")]
async fn a_noted_delete_that_never_ran_is_not_recorded_as_deleted() {
    let moto = Moto::start().await;
    let (work, clock, d, expired) = with_expired_lease(
        &moto.endpoint(),
        ACCOUNTS,
        "armed = true\ndeletable_types = [\"ec2:volume\"]\n",
    )
    .await;
    let seeded = seed(
        &moto.endpoint(),
        json!({"resources": [
            {"key": "kept", "account": A, "type": "ec2:volume", "tags": tags(&expired, "web")}
        ]}),
    )
    .await;
    let kept = arns_by_key(&seeded)["kept"][0].clone();
    d.pass().await; // marked
    // As if the daemon died between noting the delete and making the call.
    let db = work.dir.path().join("state/ephemera.db");
    let raw = rusqlite::Connection::open(&db).expect("store");
    let noted = raw
        .execute(
            "UPDATE findings SET reap_state = 'deleting' WHERE arn = ?1 AND resolved_at IS NULL",
            [&kept],
        )
        .expect("note");
    assert_eq!(noted, 1);
    // The task takes a new lease and re-tags the volume with it.
    let fresh = d.acquire(WEB, "web", "again").await;
    let ec2 = aws_sdk_ec2::Client::new(&moto.sdk_config("us-east-1").await);
    let id = seeded.resources[0].id.clone();
    ec2.create_tags()
        .resources(id)
        .tags(
            aws_sdk_ec2::types::Tag::builder()
                .key("ephemera:lease-id")
                .value(&fresh)
                .build(),
        )
        .send()
        .await
        .expect("retag");
    clock.advance(TimeDelta::minutes(5));
    d.pass().await;
    let records = audit(&d).await;
    assert!(
        decisions(&records, &kept)
            .iter()
            .all(|(d, _)| d != "deleted"),
        "{records:#?}"
    );
    let state: Option<String> = raw
        .query_row(
            "SELECT reap_state FROM findings WHERE arn = ?1",
            [&kept],
            |r| r.get(0),
        )
        .expect("finding");
    assert_eq!(state, None, "the stale note is dropped");
    assert!(exists(&moto, A, &kept).await);
}

/// On-call reaping waits for no pass: while one runs it is refused, so the two never race
/// for the same items.
#[tokio::test(flavor = "multi_thread")]
async fn reaping_by_hand_is_refused_while_a_pass_runs() {
    let moto = Moto::start().await;
    let proxy = FaultProxy::start(&moto.endpoint()).await;
    let (_work, _clock, d, _expired) = with_expired_lease(
        &proxy.endpoint(),
        ACCOUNTS,
        "armed = true\ndeletable_types = [\"ec2:volume\"]\n",
    )
    .await;
    proxy.set_fault(
        "GetResources",
        Fault::Delay(Duration::from_secs(2)),
        Some(1),
    );
    let (s, started) = d.post("/api/v1/scans", OPERATOR, json!({})).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{started}");
    let arn = format!("arn:aws:ec2:us-east-1:{A}:volume/vol-0123456789abcdef0");
    let (s, body) = d
        .post("/api/v1/reap", OPERATOR, json!({"arns": [arn]}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "scan-running");
    // A plan only reads: it is answered while the pass runs. An ARN named twice is one item.
    let (s, body) = d
        .post(
            "/api/v1/reap",
            OPERATOR,
            json!({"arns": [arn, arn], "plan_only": true}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "a plan during the pass: {body}");
    assert_eq!(body["results"].as_array().map(Vec::len), Some(1), "{body}");
    let (_, run) = d
        .get(
            &format!(
                "/api/v1/scans/{}",
                started["run_id"].as_str().expect("run id")
            ),
            VIEWER,
        )
        .await;
    assert_eq!(
        run["run"]["outcome"], "running",
        "the pass was still running: {run}"
    );
    d.wait_scan(started["run_id"].as_str().expect("run id"))
        .await;
    let (s, body) = d
        .post("/api/v1/reap", OPERATOR, json!({"arns": [arn]}))
        .await;
    assert_eq!(
        s,
        StatusCode::ACCEPTED,
        "after the pass it is taken: {body}"
    );
    let job = wait_job(&d, body["job_id"].as_str().expect("job id")).await;
    assert_eq!(job["state"], "done", "{job}");
}

/// On-call reaping is the daemon's job, not the request's: a client that goes away right
/// after the 202 (here one whose every request times out long before the deletes could end)
/// cancels nothing. Each resource is deleted, once. (Reaping inside the request, the timeout
/// cut the request, and the deletion with it, after the first slowed delete.)
#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_goes_away_cancels_no_reap() {
    let moto = Moto::start().await;
    let proxy = FaultProxy::start(&moto.endpoint()).await;
    let (_work, _clock, d, expired) = with_expired_lease(
        &proxy.endpoint(),
        ACCOUNTS,
        "armed = true\ndeletable_types = [\"ec2:volume\"]\nmax_project_share_percent = 100\n",
    )
    .await;
    let seeded = seed(
        &moto.endpoint(),
        json!({"resources": [
            {"key": "doomed", "account": A, "type": "ec2:volume", "tags": tags(&expired, "web"), "count": 3}
        ]}),
    )
    .await;
    let arns = arns_by_key(&seeded)["doomed"].clone();
    assert_eq!(arns.len(), 3);
    // Marked, with the deadline an hour ahead: reaped by hand, the deadline does not apply.
    d.pass().await;
    assert_eq!(proxy.count("DeleteVolume"), 0);
    proxy.set_fault(
        "DeleteVolume",
        Fault::Delay(Duration::from_millis(800)),
        None,
    );

    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .expect("client");
    let resp = impatient
        .post(d.url("/api/v1/reap"))
        .bearer_auth(OPERATOR)
        .json(&json!({ "arns": arns }))
        .send()
        .await
        .expect("the reap request is answered before the client's 500 ms timeout");
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let job: Value = resp.json().await.expect("job document");
    assert_eq!(job["state"], "running", "{job}");
    // The client, its connection with it, goes away.
    drop(impatient);

    let job = wait_job(&d, job["job_id"].as_str().expect("job id")).await;
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(
        (&job["done"], &job["total"]),
        (&json!(3), &json!(3)),
        "{job}"
    );
    let results = job["results"].as_array().expect("results");
    assert!(
        results.len() == 3 && results.iter().all(|r| r["outcome"] == "deleted"),
        "{job}"
    );
    for arn in &arns {
        assert!(!exists(&moto, A, arn).await, "{arn} is gone");
        let volume = arn.rsplit('/').next().expect("volume id");
        let calls = proxy
            .bodies("DeleteVolume")
            .iter()
            .filter(|b| b.contains(volume))
            .count();
        assert_eq!(calls, 1, "one DeleteVolume for {volume}");
    }
    assert_eq!(proxy.count("DeleteVolume"), 3);
}

/// Every pass names who started it in the audit log: the API principal for `POST /scans`
/// (`oncall`), `scheduler` for a tick.
#[tokio::test(flavor = "multi_thread")]
async fn a_pass_records_who_started_it() {
    let moto = Moto::start().await;
    let (work, clock, d, expired) = with_expired_lease(
        &moto.endpoint(),
        ACCOUNTS,
        "armed = true\ndeletable_types = [\"ec2:volume\"]\n",
    )
    .await;
    let volume = |key: &str| {
        json!({"resources": [
            {"key": key, "account": A, "type": "ec2:volume", "tags": tags(&expired, "web")}
        ]})
    };
    let by_api = arns_by_key(&seed(&moto.endpoint(), volume("api")).await)["api"][0].clone();
    d.pass().await;
    clock.advance(TimeDelta::hours(1) + TimeDelta::minutes(1));
    let run = d.pass().await;
    assert_eq!(run["run"]["summary"]["reap"]["deleted"], 1, "{run}");
    assert_eq!(run["run"]["summary"]["actor"], "oncall", "{run}");
    let deleted: Vec<Value> = audit(&d)
        .await
        .into_iter()
        .filter(|r| r["arn"] == by_api.as_str() && r["decision"] == "deleted")
        .collect();
    assert_eq!(deleted.len(), 1, "{deleted:?}");
    assert_eq!(
        (&deleted[0]["actor"], &deleted[0]["mode"]),
        (&json!("oncall"), &json!("pass")),
        "{deleted:?}"
    );
    d.stop().await;

    // The scheduler's tick, on the same store and clock.
    let by_tick = arns_by_key(&seed(&moto.endpoint(), volume("tick")).await)["tick"][0].clone();
    let parts = ephemera::daemon::open(work.config(), clock.clone())
        .await
        .expect("daemon parts");
    parts.tasks.scheduled_scan().await;
    clock.advance(TimeDelta::hours(1) + TimeDelta::minutes(1));
    parts.tasks.scheduled_scan().await;
    let (records, _) = parts
        .store
        .audit_list(ephemera::store::AuditQuery {
            arn: Some(by_tick.clone()),
            decision: Some("deleted".into()),
            run_id: None,
            after: None,
            limit: 10,
        })
        .await
        .expect("audit");
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].entry.actor, "scheduler", "{records:?}");
    assert!(!exists(&moto, A, &by_tick).await);
}

/// Teardown proof: a lease that left nothing is torn down by the first complete pass after
/// its end; one whose volume the reaper deletes only by the pass after the deletion (the
/// absence confirmed by a walk, not taken from the delete call); one whose volume is protected
/// never. `lease show` and the teardown ratio say so; the protected volume survives.
#[tokio::test(flavor = "multi_thread")]
async fn teardown_is_proven_by_a_later_complete_pass() {
    let moto = Moto::start().await;
    let work = workdir(
        &moto.endpoint(),
        "[[aws.accounts]]\nid = \"123456789012\"\narmed = true\n",
        "armed = true\ndeletable_types = [\"ec2:volume\"]\nmax_project_share_percent = 100\n",
    );
    let clock = manual_clock();
    let d = TestDaemon::start_with_clock(&work, clock.clone()).await;
    let empty = d.acquire(WEB, "web", "empty").await;
    let reaped = d.acquire(WEB, "web", "reaped").await;
    let kept = d.acquire(WEB, "web", "kept").await;
    let mut protected = tags(&kept, "web");
    protected["ephemera:protect"] = json!("keep");
    let seeded = seed(
        &moto.endpoint(),
        json!({"resources": [
            {"key": "vol", "type": "ec2:volume", "tags": tags(&reaped, "web")},
            {"key": "keep", "type": "ec2:volume", "tags": protected}
        ]}),
    )
    .await;
    let arns = arns_by_key(&seeded);
    let torn_down = |id: String| {
        let d = &d;
        async move {
            let (s, l) = d.get(&format!("/api/v1/leases/{id}"), VIEWER).await;
            assert_eq!(s, StatusCode::OK, "{l}");
            l["teardown_complete_at"].as_str().map(str::to_owned)
        }
    };

    // Active leases are never torn down, whatever they hold.
    d.pass().await;
    assert_eq!(torn_down(empty.clone()).await, None);

    for id in [&empty, &reaped, &kept] {
        d.release(WEB, id).await;
    }
    clock.advance(TimeDelta::minutes(1));
    d.pass().await;
    let first = torn_down(empty.clone()).await.expect("nothing left behind");
    assert_eq!(torn_down(reaped.clone()).await, None, "its volume is live");

    // Past the 1h grace of `released`: the pass deletes the volume, but that pass started
    // before the deletion, so it proves nothing yet.
    clock.advance(TimeDelta::hours(2));
    let run = d.pass().await;
    assert_eq!(run["run"]["summary"]["reap"]["deleted"], 1, "{run}");
    assert!(!exists(&moto, A, &arns["vol"][0]).await);
    assert_eq!(torn_down(reaped.clone()).await, None, "not confirmed yet");
    clock.advance(TimeDelta::minutes(1));
    d.pass().await;
    assert!(
        torn_down(reaped.clone()).await.is_some(),
        "confirmed by a later walk"
    );
    assert_eq!(torn_down(kept.clone()).await, None);
    assert!(
        exists(&moto, A, &arns["keep"][0]).await,
        "the protected volume survives"
    );
    assert_eq!(torn_down(empty.clone()).await, Some(first), "recorded once");

    // A day and more later the three leases are settled: two of three torn down.
    clock.advance(TimeDelta::hours(26));
    d.pass().await;
    let m = d.metrics().await;
    assert_eq!(
        sample(&m, r#"ephemera_teardown_settled_leases{project="web"}"#),
        Some(3.0)
    );
    let ratio = sample(&m, r#"ephemera_teardown_success_ratio{project="web"}"#).expect("ratio");
    assert!((ratio - 2.0 / 3.0).abs() < 1e-9, "{ratio}");
    d.stop().await;
}

/// An armed workdir (volumes deletable, no project share cap) whose rules reap resources of a
/// lease nobody knows a second after they are marked (the real binary runs on the wall clock),
/// and five such volumes seeded in moto; returns the workdir and their ARNs.
async fn five_doomed_volumes(moto: &Moto, proxy: &FaultProxy) -> (Workdir, Vec<String>) {
    let work = workdir(
        &proxy.endpoint(),
        ACCOUNTS,
        "armed = true\ndeletable_types = [\"ec2:volume\"]\nmax_project_share_percent = 100\n",
    );
    std::fs::write(
        work.dir.path().join("rules/policy/projects.toml"),
        POLICY.replace(
            "released = { action = \"reap\" }",
            "released = { action = \"reap\" }\nunknown-lease = { action = \"reap\", grace = \"1s\" }",
        ),
    )
    .expect("policy");
    let unknown = "0194e0a1-0000-7000-8000-00000000dead";
    let seeded = seed(
        &moto.endpoint(),
        json!({"resources": [
            {"key": "doomed", "account": A, "type": "ec2:volume", "tags": tags(unknown, "web"), "count": 5}
        ]}),
    )
    .await;
    (work, arns_by_key(&seeded)["doomed"].clone())
}

/// Two replicas on PostgreSQL: the leader is killed (SIGKILL) with a delete in flight; the
/// other replica leads, its pass settles the interrupted delete and deletes the rest, each
/// volume exactly once, and the audit chain verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_killed_mid_reaping_is_replaced_and_deletes_nothing_twice() {
    let moto = Moto::start().await;
    let proxy = FaultProxy::start(&moto.endpoint()).await;
    let (work, doomed) = five_doomed_volumes(&moto, &proxy).await;
    let url = crate::support::postgres::fresh_database().await;
    let text = std::fs::read_to_string(work.config_path()).expect("config");
    let store = "[store]\npath = \"state/ephemera.db\"\n";
    assert!(text.contains(store));
    std::fs::write(
        work.config_path(),
        text.replacen(
            store,
            &crate::support::postgres::store_sections(&url, &work.path().join("audit.key")),
            1,
        ),
    )
    .expect("config on PostgreSQL");
    let password = std::env::var(crate::support::postgres::PASSWORD_ENV).unwrap_or_default();
    let cli = |addr: String, args: &'static [&'static str]| {
        let password = password.clone();
        async move {
            crate::cli::run(
                args,
                &[
                    ("EPHEMERA_ADDR", addr.as_str()),
                    ("EPHEMERA_TOKEN", OPERATOR),
                    (crate::support::postgres::PASSWORD_ENV, password.as_str()),
                ],
            )
            .await
        }
    };
    let mut replicas = [
        crate::cli::spawn_daemon(&work.config_path()),
        crate::cli::spawn_daemon(&work.config_path()),
    ];
    let http = reqwest::Client::new();
    let all: Vec<String> = replicas.iter().map(|(_, b)| b.clone()).collect();
    let bases = |skip: Option<usize>| -> Vec<Option<String>> {
        all.iter()
            .enumerate()
            .map(|(i, b)| (Some(i) != skip).then(|| b.clone()))
            .collect()
    };
    let leading = |bases: Vec<Option<String>>| {
        let http = http.clone();
        async move {
            let bases: Vec<Option<&str>> = bases.iter().map(Option::as_deref).collect();
            crate::ha::leader_among(&http, &bases).await
        }
    };
    let leader = leading(bases(None)).await;
    let base = replicas[leader].1.clone();
    let out = cli(base.clone(), &["scan", "--wait", "--output", "json"]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    proxy.set_fault("DeleteVolume", Fault::Delay(Duration::from_secs(3)), None);
    let out = cli(base.clone(), &["scan"]).await;
    assert_eq!(out.status.code(), Some(0));
    crate::support::eventually("a delete is in flight", Duration::from_secs(10), || async {
        proxy.count("DeleteVolume") > 0
    })
    .await;
    assert_eq!(proxy.count("DeleteVolume"), 1, "one delete is in flight");
    replicas[leader].0.child.kill().expect("SIGKILL");
    let _ = replicas[leader].0.wait();
    tokio::time::sleep(Duration::from_millis(3500)).await;
    proxy.clear_faults();

    let next = leading(bases(Some(leader))).await;
    assert_ne!(next, leader);
    let base = replicas[next].1.clone();
    let out = cli(base.clone(), &["scan", "--wait", "--output", "json"]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        proxy.count("DeleteVolume"),
        5,
        "five volumes, five deletes: the interrupted one is not deleted again"
    );
    for a in &doomed {
        assert!(!exists(&moto, A, a).await, "{a} is gone");
    }
    let out = cli(
        base.clone(),
        &["audit", "list", "--output", "json", "--limit", "1000"],
    )
    .await;
    let page: Value = serde_json::from_slice(&out.stdout).expect("json");
    let records = page["items"].as_array().expect("items").clone();
    for a in &doomed {
        let deleted = decisions(&records, a)
            .into_iter()
            .filter(|(d, _)| d == "deleted")
            .count();
        assert_eq!(deleted, 1, "{a}: {records:#?}");
    }
    let out = cli(base.clone(), &["audit", "verify"]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A reviewed plan applied exactly: `ephemera plan --out` writes every marked item with a
/// digest of its state; after one item was tagged with a live lease and another's expired
/// lease was released (and a pass saw both), `ephemera reap --plan` deletes only the unchanged
/// one and refuses (and lists) the others. Moto and the proxy's log show one delete; the audit
/// records name the plan's digest; an edited plan is refused by the CLI and by the API.
#[tokio::test(flavor = "multi_thread")]
async fn a_reviewed_plan_deletes_exactly_what_did_not_change() {
    let moto = Moto::start().await;
    let proxy = FaultProxy::start(&moto.endpoint()).await;
    let work = workdir(
        &proxy.endpoint(),
        ACCOUNTS,
        "armed = true\ndeletable_types = [\"ec2:volume\"]\nmax_project_share_percent = 100\n",
    );
    let clock = manual_clock();
    let d = TestDaemon::start_with_clock(&work, clock.clone()).await;
    let expired = d.acquire(WEB, "web", "expired").await;
    let other = d.acquire(WEB, "web", "other").await;
    let active = d.acquire(WEB, "web", "active").await;
    d.renew(WEB, &active, "10h").await;
    clock.advance(TimeDelta::hours(2) + TimeDelta::minutes(10));
    let seeded = seed(
        &moto.endpoint(),
        json!({"resources": [
            {"key": "same", "account": A, "type": "ec2:volume", "tags": tags(&expired, "web")},
            {"key": "released", "account": A, "type": "ec2:volume", "tags": tags(&expired, "web")},
            {"key": "verdict", "account": A, "type": "ec2:volume", "tags": tags(&other, "web")},
            {"key": "leased", "account": A, "type": "ec2:volume", "tags": tags(&active, "web")}
        ]}),
    )
    .await;
    let by_key = arns_by_key(&seeded);
    let arn = |k: &str| by_key[k][0].clone();
    // Marked, the deadline an hour ahead: the pass deletes nothing.
    d.pass().await;

    let addr = d.base();
    let env = [
        ("EPHEMERA_ADDR", addr.as_str()),
        ("EPHEMERA_TOKEN", OPERATOR),
    ];
    let plan_path = work.dir.path().join("plan.json");
    let plan_arg = plan_path.display().to_string();
    let out = crate::cli::run(&["plan", "--out", &plan_arg], &env).await;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let file: Value =
        serde_json::from_str(&std::fs::read_to_string(&plan_path).expect("plan written"))
            .expect("plan json");
    let digest = file["digest"].as_str().expect("digest").to_owned();
    assert!(
        stderr.contains("3 item(s), 0 due now") && stderr.contains(&digest),
        "{stderr}"
    );
    let planned: Vec<&str> = file["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["arn"].as_str().expect("arn"))
        .collect();
    assert_eq!(planned.len(), 3, "{file}");
    for k in ["same", "released", "verdict"] {
        assert!(planned.contains(&arn(k).as_str()), "{k} planned: {file}");
    }

    // After the review: one volume now carries the live lease; the other's expired lease is
    // released, so its finding's verdict moves from expired to released.
    let ec2 = aws_sdk_ec2::Client::new(&moto.sdk_config("us-east-1").await);
    let id_of = |key: &str| {
        seeded
            .resources
            .iter()
            .find(|r| r.key == key)
            .expect("seeded")
            .id
            .clone()
    };
    ec2.create_tags()
        .resources(id_of("released"))
        .tags(
            aws_sdk_ec2::types::Tag::builder()
                .key("ephemera:lease-id")
                .value(&active)
                .build(),
        )
        .send()
        .await
        .expect("retag");
    let (s, body) = d
        .post(&format!("/api/v1/leases/{other}/release"), WEB, json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    d.pass().await;

    // An edited plan: refused by the CLI before it asks the daemon, and by the API.
    let mut edited = file.clone();
    edited["items"][0]["state_digest"] = json!(format!("sha256:{}", "0".repeat(64)));
    let edited_path = work.dir.path().join("edited.json");
    std::fs::write(&edited_path, edited.to_string()).expect("write");
    let out = crate::cli::run(
        &[
            "reap",
            "--plan",
            &edited_path.display().to_string(),
            "--yes",
        ],
        &env,
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the file was edited"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let items: Vec<Value> = edited["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| json!({"arn": i["arn"], "state_digest": i["state_digest"]}))
        .collect();
    let (s, body) = d
        .post(
            "/api/v1/reap",
            OPERATOR,
            json!({"plan": {"digest": digest, "items": items}}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["code"], "plan-digest-mismatch", "{body}");
    let (s, body) = d
        .post(
            "/api/v1/reap",
            OPERATOR,
            json!({"arns": [arn("same")], "plan": {"digest": digest, "items": items}}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["code"], "invalid-request", "{body}");

    let deletes_before = proxy.count("DeleteVolume");
    let out = crate::cli::run(&["reap", "--plan", &plan_arg, "--yes"], &env).await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "two refused: exit 1\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = |k: &str| {
        stdout
            .lines()
            .find(|l| l.contains(&arn(k)))
            .unwrap_or_else(|| panic!("{k} listed: {stdout}"))
            .to_owned()
    };
    assert!(line("same").contains("deleted"), "{stdout}");
    assert!(
        line("released").contains("skipped") && line("released").contains("changed since the plan"),
        "{stdout}"
    );
    assert!(
        line("verdict").contains("skipped")
            && line("verdict").contains("changed since the plan was written (now released"),
        "{stdout}"
    );

    // What is gone and what survived, from moto itself and from the proxy's log.
    assert!(
        !exists(&moto, A, &arn("same")).await,
        "the unchanged item is gone"
    );
    for k in ["released", "verdict", "leased"] {
        assert!(exists(&moto, A, &arn(k)).await, "{k} survived");
    }
    assert_eq!(
        proxy.count("DeleteVolume") - deletes_before,
        1,
        "one delete call"
    );

    let records = audit(&d).await;
    let named = |key: &str, decision: &str| {
        records
            .iter()
            .filter(|r| r["arn"] == arn(key).as_str() && r["decision"] == decision)
            .filter(|r| {
                r["detail"]
                    .as_str()
                    .is_some_and(|x| x.contains(&format!("(reviewed plan {digest})")))
            })
            .count()
    };
    assert_eq!(named("same", "deleted"), 1, "{records:?}");
    assert_eq!(named("released", "refused"), 1, "{records:?}");
    assert_eq!(named("verdict", "refused"), 1, "{records:?}");
    let out = crate::cli::run(&["audit", "verify"], &env).await;
    assert_eq!(out.status.code(), Some(0));
}
