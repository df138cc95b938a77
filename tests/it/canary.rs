//! The lifecycle canary end to end with the real binary, on moto, with passes every two
//! seconds on the scheduler (the canary never starts one): armed, the reaper deletes its
//! queue; unarmed, the canary deletes it itself; with no pass to see it, the lifecycle breaks
//! at `seen`, says so, and leaves nothing behind. What is not the canary's survives, whatever
//! its name.

use std::time::Duration;

use serde_json::Value;

use crate::cli::spawn_daemon;
use crate::support::moto::Moto;
use crate::support::webhook::Receiver;
use crate::support::{Workdir, config_text_with_aws, eventually, sample};

const SECRET: &str = "a-webhook-secret-of-some-length";

const RULES: &str = r#"
[[project]]
name = "canary"
lessees = ["ephemera-canary"]
default_ttl = "1h"
max_ttl = "2h"
grace = "1s"

[project.on]
released = { action = "reap" }

[[project]]
name = "web"
lessees = ["ci-web"]
default_ttl = "2h"
max_ttl = "24h"
grace = "1s"

[project.on]
released = { action = "reap" }
untagged = { action = "reap" }

[[project]]
name = "data"
lessees = ["*"]
default_ttl = "6h"
max_ttl = "3d"
grace = "1h"
"#;

const PLACE: &str = "123456789012/us-east-1";
const LABELS: &str = r#"account="123456789012",region="us-east-1""#;

/// A workdir on `moto`: passes every 2 s (or never), armed or not for `sqs:queue`, the canary
/// every 5 s with `slo`, its events to `hook`.
fn canary_work(moto: &Moto, armed: bool, passes: bool, slo: &str, hook: &Receiver) -> Workdir {
    let enforcement = if armed {
        "[enforcement]\narmed = true\ndeletable_types = [\"sqs:queue\"]\nmax_project_share_percent = 100\n"
    } else {
        "[enforcement]\narmed = false\n"
    };
    let mut text = config_text_with_aws(&format!(
        "regions = [\"us-east-1\"]\nendpoint_url = \"{}\"\nemulator = true\nmax_attempts = 1\n\n\
         [[aws.accounts]]\nid = \"123456789012\"\narmed = true\n\n{enforcement}",
        moto.endpoint()
    ));
    if passes {
        text = text.replacen("scan = \"0 0 1 1 *\"", "scan = \"*/2 * * * * *\"", 1);
    }
    text.push_str(&format!(
        "\n[canary]\nproject = \"canary\"\ntargets = [\"{PLACE}\"]\nevery = \"10s\"\nslo = \"{slo}\"\n\
         \n[[webhooks]]\nname = \"canary\"\nurl = \"{}\"\nsecret_file = \"hook.secret\"\n\
         events = [\"canary.*\"]\nretry_backoff = \"1s\"\n",
        hook.url()
    ));
    let work = Workdir::with_config(&text);
    std::fs::write(work.path().join("rules/policy/projects.toml"), RULES).expect("rules");
    std::fs::write(work.path().join("hook.secret"), SECRET).expect("secret");
    work
}

/// The queue names in moto, sorted.
async fn queues(moto: &Moto) -> Vec<String> {
    let sqs = aws_sdk_sqs::Client::new(&moto.sdk_config("us-east-1").await);
    let mut names: Vec<String> = sqs
        .list_queues()
        .send()
        .await
        .expect("ListQueues")
        .queue_urls()
        .iter()
        .filter_map(|u| u.rsplit('/').next().map(str::to_owned))
        .collect();
    names.sort();
    names
}

/// What is not the canary's: a leased queue of `web`, and a queue named like the canary's
/// without its tag.
async fn bystanders(moto: &Moto) {
    let sqs = aws_sdk_sqs::Client::new(&moto.sdk_config("us-east-1").await);
    sqs.create_queue()
        .queue_name("ephemera-canary-impostor")
        .send()
        .await
        .expect("impostor");
    sqs.create_queue()
        .queue_name("web-build")
        .tags("ephemera:project", "web")
        .tags("ephemera:owner", "alice@example.com")
        .send()
        .await
        .expect("web queue");
}

async fn metrics(base: &str) -> String {
    reqwest::get(format!("{base}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

/// The canary events the receiver accepted.
fn events(hook: &Receiver) -> Vec<Value> {
    hook.received()
        .into_iter()
        .filter(|x| x["ok"] == true)
        .map(|x| x["event"].clone())
        .collect()
}

async fn went_through(base: &str, last_stage: &str) -> String {
    let up = format!("ephemera_canary_up{{{LABELS}}}");
    eventually("a lifecycle goes through", Duration::from_secs(90), || {
        let base = base.to_owned();
        let up = up.clone();
        async move { sample(&metrics(&base).await, &up) == Some(1.0) }
    })
    .await;
    let m = metrics(base).await;
    for stage in [
        "acquire", "create", "tags", "release", "seen", "flagged", last_stage,
    ] {
        let s = format!("ephemera_canary_stage_seconds{{{LABELS},stage=\"{stage}\"}}");
        assert!(sample(&m, &s).is_some(), "{s} in\n{m}");
    }
    let last = format!("ephemera_canary_last_success_timestamp_seconds{{{LABELS}}}");
    assert!(sample(&m, &last).is_some_and(|t| t > 1.7e9), "{m}");
    m
}

/// Armed for `sqs:queue`: the scheduled passes see the canary's queue, judge it released,
/// and the reaper deletes it; `canary.succeeded` names every stage; the bystanders survive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_armed_canary_is_reaped_by_the_reaper() {
    let moto = Moto::start().await;
    bystanders(&moto).await;
    let hook = Receiver::start(SECRET);
    let work = canary_work(&moto, true, true, "60s", &hook);
    let (_daemon, base) = spawn_daemon(&work.config_path());
    let m = went_through(&base, "reaped").await;
    assert!(
        sample(
            &m,
            &format!("ephemera_canary_stage_seconds{{{LABELS},stage=\"cleaned\"}}")
        )
        .is_none(),
        "the reaper deleted it, not the canary: {m}"
    );
    assert_eq!(
        sample(
            &m,
            &format!("ephemera_canary_success_max_age_seconds{{{LABELS}}}")
        ),
        Some(70.0),
        "every × targets + slo"
    );
    eventually("canary.succeeded arrives", Duration::from_secs(20), || {
        let ok = events(&hook)
            .iter()
            .any(|e| e["type"] == "dev.ephemera.canary.succeeded");
        async move { ok }
    })
    .await;
    let ok = events(&hook)
        .into_iter()
        .find(|e| e["type"] == "dev.ephemera.canary.succeeded")
        .expect("succeeded");
    assert_eq!(ok["subject"], format!("canary/{PLACE}"));
    assert!(ok["data"]["stages"]["reaped"].is_number(), "{ok}");
    // Its queue is gone; what was not its own is not.
    let left = queues(&moto).await;
    assert_eq!(
        left,
        ["ephemera-canary-impostor", "web-build"],
        "only the canary's queue went"
    );
    // The reaper deleted it (the audit log names it, by the scheduled pass), not the canary.
    let out = crate::cli::run(
        &["audit", "list", "--decision", "deleted", "--output", "json"],
        &[
            ("EPHEMERA_ADDR", base.as_str()),
            ("EPHEMERA_TOKEN", crate::support::OPERATOR),
        ],
    )
    .await;
    let page: Value = serde_json::from_slice(&out.stdout).expect("audit json");
    let items = page["items"].as_array().expect("items");
    assert!(!items.is_empty(), "{page}");
    assert!(
        items.iter().all(|i| i["arn"]
            .as_str()
            .is_some_and(|a| a.contains(":ephemera-canary-") && !a.ends_with("impostor"))),
        "{page}"
    );
}

/// Not armed: once the passes flagged its queue, the canary deletes it itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unarmed_canary_cleans_up_after_itself() {
    let moto = Moto::start().await;
    bystanders(&moto).await;
    let hook = Receiver::start(SECRET);
    let work = canary_work(&moto, false, true, "60s", &hook);
    let (_daemon, base) = spawn_daemon(&work.config_path());
    went_through(&base, "cleaned").await;
    assert_eq!(
        queues(&moto).await,
        ["ephemera-canary-impostor", "web-build"]
    );
}

/// No pass ever runs: the lifecycle breaks at `seen` within its SLO, says so in the metrics
/// and a `canary.failed` event, and leaves no queue (and no active lease) behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_without_passes_breaks_at_seen_and_leaves_nothing() {
    let moto = Moto::start().await;
    bystanders(&moto).await;
    let hook = Receiver::start(SECRET);
    let work = canary_work(&moto, true, false, "10s", &hook);
    let (_daemon, base) = spawn_daemon(&work.config_path());
    let failed = format!("ephemera_canary_failures_total{{{LABELS},stage=\"seen\"}}");
    eventually(
        "the lifecycle breaks at seen",
        Duration::from_secs(60),
        || {
            let (base, failed) = (base.clone(), failed.clone());
            async move { sample(&metrics(&base).await, &failed).is_some_and(|n| n >= 1.0) }
        },
    )
    .await;
    let m = metrics(&base).await;
    assert_eq!(
        sample(&m, &format!("ephemera_canary_up{{{LABELS}}}")),
        Some(0.0),
        "{m}"
    );
    eventually("canary.failed arrives", Duration::from_secs(20), || {
        let ok = events(&hook)
            .iter()
            .any(|e| e["type"] == "dev.ephemera.canary.failed");
        async move { ok }
    })
    .await;
    let failed = events(&hook)
        .into_iter()
        .find(|e| e["type"] == "dev.ephemera.canary.failed")
        .expect("failed");
    assert_eq!(failed["data"]["stage"], "seen", "{failed}");
    assert!(
        failed["data"]["why"]
            .as_str()
            .is_some_and(|w| w.contains("never seen by a pass")),
        "{failed}"
    );
    assert_eq!(
        queues(&moto).await,
        ["ephemera-canary-impostor", "web-build"],
        "the broken lifecycle's queue was deleted"
    );
    let m = metrics(&base).await;
    assert_eq!(
        sample(&m, r#"ephemera_leases{project="canary",state="active"}"#).unwrap_or(0.0),
        0.0,
        "its lease was released: {m}"
    );
}
