//! Spend from Cost Explorer against moto, whose GetCostAndUsage answers come from a queue
//! (`/moto-api/static/ce/cost-and-usage-results`): each new distinct request takes the next
//! result, so these tests depend on the order of calls, which is: project grouping (every page),
//! then task grouping.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::moto::Moto;
use crate::support::proxy::{Fault, FaultProxy};
use crate::support::{
    OPERATOR, TestDaemon, VIEWER, WEB, Workdir, config_text_with_aws, manual_clock, sample,
};

fn config(endpoint: &str) -> String {
    config_text_with_aws(&format!(
        r#"regions = ["us-east-1"]
endpoint_url = "{endpoint}"
emulator = true
max_attempts = 1

[[aws.accounts]]
id = "123456789012"

[cost]
rolling_window = "7d"
recent_days = 3
top_tasks = 2
"#
    ))
}

/// One day of a GetCostAndUsage answer: `(tag key$value, region, amount)` groups.
pub(crate) fn day(start: &str, end: &str, estimated: bool, groups: &[(&str, &str, &str)]) -> Value {
    json!({
        "TimePeriod": {"Start": start, "End": end},
        "Total": {},
        "Groups": groups.iter().map(|(k, r, a)| json!({
            "Keys": [k, r],
            "Metrics": {"UnblendedCost": {"Amount": a, "Unit": "USD"}}
        })).collect::<Vec<_>>(),
        "Estimated": estimated
    })
}

pub(crate) async fn queue(moto: &Moto, results: Vec<Value>) {
    let resp = reqwest::Client::new()
        .post(format!(
            "{}/moto-api/static/ce/cost-and-usage-results",
            moto.endpoint()
        ))
        .json(&json!({"results": results}))
        .send()
        .await
        .expect("moto answers");
    assert_eq!(resp.status().as_u16(), 201);
}

async fn refresh(d: &TestDaemon) -> Value {
    let (s, body) = d.post("/api/v1/cost/refresh", OPERATOR, json!({})).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    body
}

/// `{key: usd}` of a `/cost` answer.
fn usd_by(body: &Value, by: &str) -> std::collections::BTreeMap<String, String> {
    body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| {
            (
                i[by].as_str().expect("key").to_owned(),
                i["usd"].as_str().expect("usd").to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn spend_is_parsed_stored_exported_and_refreshed_incrementally() {
    let moto = Moto::start().await;
    let proxy = FaultProxy::start(&moto.endpoint()).await;
    let work = Workdir::with_config(&config(&proxy.endpoint()));
    // 2026-03-01 09:00: the month began today; the 7-day window began on 02-23.
    let clock = manual_clock();
    let d = TestDaemon::start_with_clock(&work, clock.clone()).await;
    // `build 1`'s lease was released at 09:00: the rest of the day's spend is waste.
    let build1 = d.acquire(WEB, "web", "build 1").await;
    d.release(WEB, &build1).await;

    let p = "ephemera:project$";
    let t = "ephemera:task$";
    queue(
        &moto,
        vec![
            // Project grouping, two pages.
            json!({"ResultsByTime": [
                day("2026-02-23", "2026-02-24", false, &[
                    (&format!("{p}web"), "us-east-1", "10.5"),
                    (p, "us-east-1", "1.25"),
                    (&format!("{p}data"), "eu-west-1", "3"),
                ]),
            ], "NextPageToken": "page-2", "DimensionValueAttributes": []}),
            json!({"ResultsByTime": [
                day("2026-02-24", "2026-02-25", false, &[(&format!("{p}web"), "eu-west-1", "2.0000005")]),
                day("2026-03-01", "2026-03-02", true, &[(&format!("{p}web"), "us-east-1", "4")]),
            ], "DimensionValueAttributes": []}),
            // Task grouping.
            json!({"ResultsByTime": [
                day("2026-02-23", "2026-02-24", false, &[
                    (&format!("{t}build 1"), "us-east-1", "6"),
                    (&format!("{t}build 2"), "us-east-1", "4.5"),
                    (&format!("{t}etl"), "eu-west-1", "3"),
                    (t, "us-east-1", "1.25"),
                ]),
                day("2026-02-24", "2026-02-25", false, &[(&format!("{t}build 1"), "eu-west-1", "2.0000005")]),
                day("2026-03-01", "2026-03-02", true, &[
                    (&format!("{t}build 1"), "us-east-1", "2.4"),
                    (&format!("{t}build 3"), "us-east-1", "4"),
                ]),
            ], "DimensionValueAttributes": []}),
        ],
    )
    .await;

    let first = refresh(&d).await;
    assert_eq!(first["report"]["requests"], 3, "{first}");
    assert_eq!(
        first["report"]["fetched_from"],
        json!({"project": "2026-02-23", "task": "2026-02-23"})
    );
    assert_eq!(proxy.count("GetCostAndUsage"), 3);
    assert_eq!(
        proxy.count("ListCostAllocationTags"),
        0,
        "tagged spend: no need to ask (and pay) whether the tags are active"
    );

    let (s, by_project) = d.get("/api/v1/cost?by=project&since=7d", VIEWER).await;
    assert_eq!(s, StatusCode::OK, "{by_project}");
    assert_eq!(
        usd_by(&by_project, "project"),
        [
            ("web", "16.500001"),
            ("data", "3.000000"),
            ("untagged", "1.250000")
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .into()
    );
    assert_eq!(by_project["total_usd"], "20.750001");
    assert_eq!(
        by_project["items"][0]["estimated"], true,
        "today's spend is an estimate"
    );
    assert_eq!(by_project["items"][1]["estimated"], false);
    let (_, by_region) = d.get("/api/v1/cost?by=region&since=7d", VIEWER).await;
    assert_eq!(
        usd_by(&by_region, "region"),
        [("us-east-1", "15.750000"), ("eu-west-1", "5.000001")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into()
    );
    let (_, month) = d
        .get("/api/v1/cost?by=project&since=2026-03-01", VIEWER)
        .await;
    assert_eq!(month["total_usd"], "4.000000", "{month}");

    // A lessee sees its own projects, and no task or region breakdown.
    let (_, mine) = d.get("/api/v1/cost?by=project", WEB).await;
    assert_eq!(usd_by(&mine, "project").keys().collect::<Vec<_>>(), ["web"]);
    let (s, _) = d.get("/api/v1/cost?by=task", WEB).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    for bad in ["by=owner", "since=yesterday", "since=36h"] {
        let (s, body) = d.get(&format!("/api/v1/cost?{bad}"), VIEWER).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["code"], "invalid-query");
    }
    let (s, _) = d.post("/api/v1/cost/refresh", VIEWER, json!({})).await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    let m = d.metrics().await;
    let g = |k: &str| sample(&m, k);
    assert_eq!(
        g(r#"ephemera_spend_usd{project="web",region="us-east-1",window="month"}"#),
        Some(4.0)
    );
    assert_eq!(
        g(r#"ephemera_spend_usd{project="web",region="us-east-1",window="7d"}"#),
        Some(14.5)
    );
    assert_eq!(
        g(r#"ephemera_spend_usd{project="untagged",region="us-east-1",window="7d"}"#),
        Some(1.25)
    );
    // Top two tasks by the 7-day spend; build 3 and etl are folded into `other`.
    assert_eq!(
        g(r#"ephemera_task_spend_usd{task="build 1",window="7d"}"#),
        Some(10.400001)
    );
    assert_eq!(
        g(r#"ephemera_task_spend_usd{task="build 2",window="7d"}"#),
        Some(4.5)
    );
    assert_eq!(
        g(r#"ephemera_task_spend_usd{task="other",window="7d"}"#),
        Some(7.0)
    );
    assert_eq!(
        g(r#"ephemera_task_spend_usd{task="untagged",window="7d"}"#),
        Some(1.25)
    );
    assert_eq!(
        g(r#"ephemera_task_spend_usd{task="build 3",window="7d"}"#),
        None
    );
    // Released at 09:00: 15 of the day's 24 hours of build 1's $2.40 are waste.
    assert_eq!(g(r#"ephemera_waste_usd{project="web"}"#), Some(1.5));
    assert_eq!(g("ephemera_ce_requests_total"), Some(3.0));
    assert_eq!(g("ephemera_ce_cost_usd_total"), Some(0.03));

    // The CLI, as CSV and as a table.
    let env = [
        ("EPHEMERA_ADDR", d.base()),
        ("EPHEMERA_TOKEN", VIEWER.to_owned()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = crate::cli::run(
        &["cost", "--by", "task", "--since", "7d", "--output", "csv"],
        &env,
    )
    .await;
    assert_eq!(out.status.code(), Some(0));
    let csv = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        csv.lines().take(3).collect::<Vec<_>>(),
        [
            "task,usd,estimated",
            "build 1,10.400001,true",
            "build 2,4.500000,false"
        ]
    );
    let out = crate::cli::run(&["cost", "--since", "2026-02-23"], &env).await;
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("PROJECT")
            && table.contains("16.500001")
            && table.contains("total 20.750001 USD"),
        "{table}"
    );

    // ---- later the same day: only the window that can still change is asked again -------
    clock.advance(chrono::TimeDelta::hours(8));
    queue(
        &moto,
        vec![
            json!({"ResultsByTime": [
                day("2026-03-01", "2026-03-02", false, &[(&format!("{p}web"), "us-east-1", "5")]),
            ], "DimensionValueAttributes": []}),
            json!({"ResultsByTime": [
                day("2026-03-01", "2026-03-02", false, &[
                    (&format!("{t}build 1"), "us-east-1", "2.4"),
                    (&format!("{t}build 3"), "us-east-1", "5"),
                ]),
            ], "DimensionValueAttributes": []}),
        ],
    )
    .await;
    let second = refresh(&d).await;
    assert_eq!(second["report"]["requests"], 2, "{second}");
    assert_eq!(
        second["report"]["fetched_from"],
        json!({"project": "2026-02-26", "task": "2026-02-26"}),
        "final days are never fetched again"
    );
    let bodies = proxy.bodies("GetCostAndUsage");
    assert_eq!(bodies.len(), 5);
    for b in &bodies[3..] {
        let req: Value = serde_json::from_str(b).expect("json body");
        assert_eq!(
            req["TimePeriod"],
            json!({"Start": "2026-02-26", "End": "2026-03-02"}),
            "{b}"
        );
        assert_eq!(req["Granularity"], "DAILY");
        assert_eq!(req["Metrics"], json!(["UnblendedCost"]));
    }
    let first_body: Value = serde_json::from_str(&bodies[0]).expect("json");
    assert_eq!(
        first_body["GroupBy"],
        json!([{"Type": "TAG", "Key": "ephemera:project"}, {"Type": "DIMENSION", "Key": "REGION"}])
    );
    let (_, month) = d
        .get("/api/v1/cost?by=project&since=2026-03-01", VIEWER)
        .await;
    assert_eq!(
        month["total_usd"], "5.000000",
        "a revised day replaces what was stored"
    );
    assert_eq!(month["items"][0]["estimated"], false);
    let m = d.metrics().await;
    assert_eq!(sample(&m, "ephemera_ce_requests_total"), Some(5.0));
    assert_eq!(
        sample(
            &m,
            r#"ephemera_spend_usd{project="web",region="us-east-1",window="month"}"#
        ),
        Some(5.0)
    );
    let last = r#"ephemera_task_last_success_timestamp_seconds{task="cost"}"#;
    let before = sample(&m, last).expect("a successful refresh sets it");
    // A restarted daemon exports the stored last success before its first run, so the
    // staleness alerts do not see a task that never succeeded.
    d.stop().await;
    clock.advance(chrono::TimeDelta::hours(1));
    let d = TestDaemon::start_with_clock(&work, clock.clone()).await;
    assert_eq!(sample(&d.metrics().await, last), Some(before));
}

/// Spend that carries no tag value at all is what inactive cost allocation tags look like:
/// then (and at most once a day) ListCostAllocationTags is asked, and the answer is a metric.
/// moto does not implement that call, so the test proxy answers it as Cost Explorer would.
#[tokio::test(flavor = "multi_thread")]
async fn inactive_cost_allocation_tags_are_reported() {
    let moto = Moto::start().await;
    let proxy = FaultProxy::start(&moto.endpoint()).await;
    let work = Workdir::with_config(&config(&proxy.endpoint()));
    let clock = manual_clock();
    let d = TestDaemon::start_with_clock(&work, clock.clone()).await;
    proxy.set_fault(
        "ListCostAllocationTags",
        Fault::Respond(
            200,
            r#"{"CostAllocationTags":[{"TagKey":"ephemera:project","Type":"UserDefined","Status":"Inactive"},{"TagKey":"ephemera:task","Type":"UserDefined","Status":"Active"}]}"#,
        ),
        None,
    );
    let untagged = |k: &str| json!({"ResultsByTime": [day("2026-02-28", "2026-03-01", false, &[(k, "us-east-1", "7")])], "DimensionValueAttributes": []});
    queue(
        &moto,
        vec![untagged("ephemera:project$"), untagged("ephemera:task$")],
    )
    .await;
    let r = refresh(&d).await;
    assert_eq!(
        r["report"]["inactive_tags"],
        json!(["ephemera:project"]),
        "{r}"
    );
    assert_eq!(proxy.count("ListCostAllocationTags"), 1);
    let m = d.metrics().await;
    assert_eq!(
        sample(
            &m,
            r#"ephemera_cost_allocation_tag_active{tag="ephemera:project"}"#
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &m,
            r#"ephemera_cost_allocation_tag_active{tag="ephemera:task"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, "ephemera_ce_requests_total"),
        Some(3.0),
        "the check is billed too"
    );
    let (_, spend) = d.get("/api/v1/cost?by=project", VIEWER).await;
    assert_eq!(usd_by(&spend, "project")["untagged"], "7.000000");

    // The same day again: no second check.
    clock.advance(chrono::TimeDelta::hours(8));
    refresh(&d).await;
    assert_eq!(proxy.count("ListCostAllocationTags"), 1);

    // When Cost Explorer fails, `ephemera cost --refresh` says so (the runbook's first look)
    // and `ephemera status` shows the failed run.
    proxy.set_fault("GetCostAndUsage", Fault::ServerError, None);
    let base = d.base();
    let env = [
        ("EPHEMERA_ADDR", base.as_str()),
        ("EPHEMERA_TOKEN", OPERATOR),
    ];
    let out = crate::cli::run(&["cost", "--refresh"], &env).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cost-explorer-failed") && stderr.contains("GetCostAndUsage"),
        "{stderr}"
    );
    // Not a terminal: the wait is said once before and once after, with how long it took.
    assert!(
        stderr.contains("refreshing spend from Cost Explorer ...\n")
            && stderr.contains("refreshing spend from Cost Explorer: "),
        "{stderr}"
    );
    let out = crate::cli::run(&["status", "--output", "json"], &env).await;
    let status: Value = serde_json::from_slice(&out.stdout).expect("json");
    let cost_run = status["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .find(|t| t["task"] == "cost")
        .cloned()
        .expect("cost run listed");
    assert_eq!(cost_run["outcome"], "failed", "{status}");
}

/// Two refreshes never overlap (each is billed): the second is refused while the first runs,
/// and `cost --refresh` meeting it waits for it to end, then refreshes anew.
#[tokio::test(flavor = "multi_thread")]
async fn a_refresh_while_one_runs_is_refused() {
    let moto = Moto::start().await;
    let proxy = FaultProxy::start(&moto.endpoint()).await;
    let work = Workdir::with_config(&config(&proxy.endpoint()));
    let d = TestDaemon::start_with_clock(&work, manual_clock()).await;
    proxy.set_fault(
        "GetCostAndUsage",
        // A refusal comes after a claim has waited 2 s for the run to finish; the command's
        // first attempt must still find this one running.
        Fault::Delay(std::time::Duration::from_secs(6)),
        Some(1),
    );
    let first = {
        let (base, token) = (d.base(), OPERATOR);
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(format!("{base}/api/v1/cost/refresh"))
                .bearer_auth(token)
                .send()
                .await
                .expect("first refresh answered")
                .status()
        })
    };
    crate::support::eventually(
        "the first refresh reaches Cost Explorer",
        std::time::Duration::from_secs(10),
        || async { proxy.count("GetCostAndUsage") > 0 },
    )
    .await;
    let (s, body) = d.post("/api/v1/cost/refresh", OPERATOR, json!({})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "cost-running");
    let calls_of_the_first = proxy.count("GetCostAndUsage");
    let base = d.base();
    let env = [
        ("EPHEMERA_ADDR", base.as_str()),
        ("EPHEMERA_TOKEN", OPERATOR),
    ];
    let out = crate::cli::run(&["cost", "--refresh", "--output", "json"], &env).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("a cost refresh is already running; waiting for it to end"),
        "{stderr}"
    );
    assert_eq!(first.await.expect("joins").as_u16(), 200);
    assert!(
        proxy.count("GetCostAndUsage") > calls_of_the_first,
        "the command refreshed anew after the first"
    );
}
