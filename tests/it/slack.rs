//! Slack end to end: the on-call summary and the owner notices arrive at a real HTTP receiver
//! playing a Slack incoming webhook, which checks every body against Block Kit's limits with
//! its own code (`tests/peers/webhook_receiver.py --slack`); owners are mapped from their
//! address to a target by `[slack.owners]`; no `[smtp]` is needed.

use std::time::Duration;

use chrono::TimeDelta;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::cli::spawn_daemon;
use crate::reap::POLICY;
use crate::support::moto::Moto;
use crate::support::seed::{arns_by_key, seed};
use crate::support::webhook::Receiver;
use crate::support::{TestDaemon, WEB, Workdir, config_text_with_aws, eventually};

/// `[slack]` posting to `hook`, its URL in `slack.url`: alice's notices to her member id,
/// bob's to #data-team, the on-call summary to #ops.
fn slack_section(hook: &Receiver) -> String {
    format!(
        "\n[slack]\nurl_file = \"slack.url\"\noncall = \"#ops\"\nretry_backoff = \"1s\"\n\
         [slack.owners]\n\"Alice@Example.com\" = \"@U024BE7LH\"\n\"bob@example.com\" = \"#data-team\"\n\
         # (the URL itself: {})\n",
        hook.url()
    )
}

/// The messages the receiver accepted (Block Kit valid), in arrival order.
fn accepted(r: &Receiver) -> Vec<Value> {
    r.received()
        .into_iter()
        .filter(|x| x["ok"] == true)
        .map(|x| x["event"].clone())
        .collect()
}

/// A message's header text, and all its text joined.
fn header(m: &Value) -> String {
    m["blocks"][0]["text"]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn all_text(m: &Value) -> String {
    m["blocks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|b| b.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// On the lease clock, with Slack alone: alice's expiry warning mentions her; the pass that
/// marks her volume sends her a digest and on-call a summary; the pass that deletes it sends
/// her a deletion notice and on-call a summary; each once, each valid Block Kit.
#[tokio::test(flavor = "multi_thread")]
async fn notices_and_summaries_arrive_as_block_kit_without_smtp() {
    let moto = Moto::start().await;
    let hook = Receiver::start_slack();
    let text = config_text_with_aws(&format!(
        "regions = [\"us-east-1\"]\nendpoint_url = \"{}\"\nemulator = true\nmax_attempts = 1\n\n\
         [[aws.accounts]]\nid = \"123456789012\"\narmed = true\n\n\
         [enforcement]\narmed = true\ndeletable_types = [\"ec2:volume\"]\nmax_project_share_percent = 100\n",
        moto.endpoint()
    )) + &slack_section(&hook);
    assert!(!text.contains("[smtp]"));
    let work = Workdir::with_config(&text);
    std::fs::write(work.path().join("rules/policy/projects.toml"), POLICY).expect("policy");
    std::fs::write(work.path().join("slack.url"), format!("{}\n", hook.url())).expect("url");
    let clock = crate::support::manual_clock();
    let d = TestDaemon::start_with_clock(&work, clock.clone()).await;

    let lease = d.acquire(WEB, "web", "build 7").await;
    let seeded = seed(
        &moto.endpoint(),
        json!({"resources": [
            {"key": "vol", "type": "ec2:volume", "tags": {
                "ephemera:lease-id": lease, "ephemera:project": "web",
                "ephemera:task": "build 7", "ephemera:owner": "alice@example.com"}}
        ]}),
    )
    .await;
    let vol = arns_by_key(&seeded)["vol"][0].clone();
    let wait = Duration::from_secs(30);
    let arrived = |n: usize| {
        let hook = &hook;
        move || {
            let ok = accepted(hook).len() >= n;
            async move { ok }
        }
    };

    // 1h40m into its 2h: the warning (30 minutes before, the default).
    clock.advance(TimeDelta::minutes(100));
    eventually("the expiry warning", wait, arrived(1)).await;
    // 2h20m: expired; a pass marks the volume (deletion in an hour).
    clock.advance(TimeDelta::minutes(40));
    let run = d.pass().await;
    assert_eq!(run["run"]["summary"]["reap"]["marked"], 1, "{run}");
    eventually("the digest and the summary", wait, arrived(3)).await;
    // 3h20m: the next pass deletes it.
    clock.advance(TimeDelta::hours(1));
    let run = d.pass().await;
    assert_eq!(run["run"]["summary"]["reap"]["deleted"], 1, "{run}");
    eventually("the deletion notice and the summary", wait, arrived(5)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    let got = hook.received();
    assert!(
        got.iter().all(|x| x["ok"] == true),
        "every body is valid Block Kit: {got:?}"
    );
    let msgs = accepted(&hook);
    let mut seen: Vec<(String, String)> = msgs
        .iter()
        .map(|m| {
            (
                m["channel"].as_str().unwrap_or_default().to_owned(),
                header(m),
            )
        })
        .collect();
    // The warning comes first; the rest in pairs whose order within a pass is free.
    seen[1..3].sort();
    seen[3..].sort();
    let s = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    assert_eq!(
        seen,
        [
            s("@U024BE7LH", "Lease expires soon"),
            s("#ops", "Audit pass: success"),
            s("@U024BE7LH", "1 resource planned for deletion"),
            s("#ops", "Audit pass: success"),
            s("@U024BE7LH", "1 resource deleted"),
        ],
        "each once: {msgs:?}"
    );
    let of = |channel: &str, head: &str| {
        msgs.iter()
            .find(|m| m["channel"] == channel && header(m) == head)
            .cloned()
            .expect("present")
    };
    let warning = of("@U024BE7LH", "Lease expires soon");
    assert!(
        warning["text"]
            .as_str()
            .expect("text")
            .starts_with("<@U024BE7LH> "),
        "{warning}"
    );
    let w = all_text(&warning);
    assert!(w.contains(&format!("ephemera lease renew {lease}")), "{w}");
    let digest = all_text(&of("@U024BE7LH", "1 resource planned for deletion"));
    assert!(digest.contains(&vol), "{digest}");
    assert!(digest.contains(&format!("lease `{lease}`")), "{digest}");
    let deleted = all_text(&of("@U024BE7LH", "1 resource deleted"));
    assert!(deleted.contains(&vol), "{deleted}");
    let summaries: Vec<String> = msgs
        .iter()
        .filter(|m| m["channel"] == "#ops")
        .map(all_text)
        .collect();
    assert!(
        summaries[0].contains("*Planned deletions*\\n1"),
        "{}",
        summaries[0]
    );
    assert!(summaries[1].contains("*Deleted*\\n1"), "{}", summaries[1]);
    // Slack's deliveries are counted with the webhooks'.
    let metrics = d.metrics().await;
    assert_eq!(
        crate::support::sample(
            &metrics,
            r#"ephemera_webhook_deliveries_total{endpoint="slack",outcome="delivered"}"#
        ),
        Some(5.0),
        "{metrics}"
    );
    d.stop().await;
}

/// The real binary with Slack alone, on moto: a lease of `owner` tagging one volume is
/// released, and a pass marks the volume (released → reap, after the grace).
async fn binary_marks_a_released_volume(
    hook: &Receiver,
    owner: &str,
) -> (Moto, Workdir, crate::cli::DaemonProcess, String, String) {
    let moto = Moto::start().await;
    let text = config_text_with_aws(&format!(
        "regions = [\"us-east-1\"]\nendpoint_url = \"{}\"\nemulator = true\nmax_attempts = 1\n\n\
         [[aws.accounts]]\nid = \"123456789012\"\narmed = true\n\n\
         [enforcement]\narmed = true\ndeletable_types = [\"ec2:volume\"]\nmax_project_share_percent = 100\n",
        moto.endpoint()
    )) + &slack_section(hook);
    let work = Workdir::with_config(&text);
    std::fs::write(work.path().join("rules/policy/projects.toml"), POLICY).expect("policy");
    std::fs::write(work.path().join("slack.url"), hook.url()).expect("url");
    let (daemon, base) = spawn_daemon(&work.config_path());
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{base}/api/v1/leases"))
        .bearer_auth(WEB)
        .json(&json!({"project": "web", "task": "deploy", "owner": owner}))
        .send()
        .await
        .expect("acquire sent");
    assert_eq!(r.status(), StatusCode::CREATED);
    let lease = r.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let seeded = seed(
        &moto.endpoint(),
        json!({"resources": [
            {"key": "vol", "type": "ec2:volume", "tags": {
                "ephemera:lease-id": lease, "ephemera:project": "web",
                "ephemera:task": "deploy", "ephemera:owner": owner}}
        ]}),
    )
    .await;
    let vol = arns_by_key(&seeded)["vol"][0].clone();
    let r = http
        .post(format!("{base}/api/v1/leases/{lease}/release"))
        .bearer_auth(WEB)
        .send()
        .await
        .expect("release sent");
    assert_eq!(r.status(), StatusCode::OK);
    let r = http
        .post(format!("{base}/api/v1/scans"))
        .bearer_auth(crate::support::OPERATOR)
        .json(&json!({}))
        .send()
        .await
        .expect("scan sent");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    (moto, work, daemon, base, vol)
}

/// The real binary, Slack alone: the owner's target (mapped ignoring the address's case) gets
/// the digest of the pass that marked her volume, and #ops its summary; `webhook test
/// --endpoint slack` posts a test message to #ops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_tells_a_mapped_owner_and_oncall_on_slack() {
    let hook = Receiver::start_slack();
    let (_moto, work, _daemon, _base, vol) =
        binary_marks_a_released_volume(&hook, "alice@example.com").await;
    eventually(
        "the digest and the summary",
        Duration::from_secs(60),
        || {
            let ok = accepted(&hook).len() >= 2;
            async move { ok }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got = hook.received();
    assert!(got.iter().all(|x| x["ok"] == true), "{got:?}");
    let mut seen: Vec<(String, String)> = accepted(&hook)
        .iter()
        .map(|m| {
            (
                m["channel"].as_str().unwrap_or_default().to_owned(),
                header(m),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("#ops".to_owned(), "Audit pass: success".to_owned()),
            (
                "@U024BE7LH".to_owned(),
                "1 resource planned for deletion".to_owned()
            ),
        ]
    );
    let digest = accepted(&hook)
        .into_iter()
        .find(|m| m["channel"] == "@U024BE7LH")
        .expect("digest");
    assert!(all_text(&digest).contains(&vol), "{digest}");
    assert!(all_text(&digest).contains("*released*"), "{digest}");

    let cfg = work.config_path();
    let cfg = cfg.to_str().expect("utf-8");
    let o = crate::cli::run(
        &["webhook", "test", "--endpoint", "slack", "--config", cfg],
        &[],
    )
    .await;
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("webhook `slack` answered 200"), "{out}");
    let got = hook.received();
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[2]["ok"], true, "{got:?}");
    assert_eq!(got[2]["event"]["channel"], "#ops");
}

/// A Slack that refuses every message (400) gets each three times, then each is a dead
/// letter, counted; an owner with no Slack target (and no mail) is told through on-call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_slack_makes_dead_letters() {
    let mut hook = Receiver::stopped_slack();
    hook.answering(Some(400));
    hook.restart();
    let (_moto, _work, _daemon, base, _vol) =
        binary_marks_a_released_volume(&hook, "carol@example.com").await;
    let http = reqwest::Client::new();
    let dead = r#"ephemera_webhook_deliveries_total{endpoint="slack",outcome="dead"}"#;
    eventually("the dead letters", Duration::from_secs(90), || {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let text = http
                .get(format!("{base}/metrics"))
                .send()
                .await
                .expect("metrics")
                .text()
                .await
                .expect("text");
            crate::support::sample(&text, dead) == Some(2.0)
        }
    })
    .await;
    let got = hook.received();
    assert_eq!(got.len(), 6, "three tries each: {got:?}");
    assert!(got.iter().all(|x| x["ok"] == true), "valid, only refused");
    assert!(
        got.iter().all(|x| x["event"]["channel"] == "#ops"),
        "carol has no target: her digest goes to on-call too: {got:?}"
    );
    assert!(
        got.iter().any(|x| x["event"]
            .to_string()
            .contains("on-call: carol@example.com has no Slack target in [slack.owners]")),
        "{got:?}"
    );
}
