//! Webhooks end to end with the real binary: lease events arrive at a real HTTP receiver as
//! CloudEvents whose signatures the receiver checks with its own HMAC code; an endpoint that
//! is down gets the same event later, also after the daemon was SIGKILLed with it pending; an
//! endpoint that refuses makes a dead letter; filters hold.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use chrono::TimeDelta;

use crate::cli::spawn_daemon;
use crate::reap::POLICY;
use crate::support::moto::Moto;
use crate::support::seed::{arns_by_key, seed};
use crate::support::webhook::Receiver;
use crate::support::{
    DATA, TestDaemon, WEB, Workdir, config_text, config_text_with_aws, eventually, sample,
};

const SECRET: &str = "a-webhook-secret-of-some-length";

fn hooks(lease: &Receiver, resources: &Receiver, refusing: &Receiver) -> String {
    format!(
        "\n[[webhooks]]\nname = \"leases\"\nurl = \"{}\"\nsecret_file = \"hook.secret\"\n\
         events = [\"lease.*\"]\nretry_backoff = \"1s\"\n\
         \n[[webhooks]]\nname = \"resources\"\nurl = \"{}\"\nsecret_file = \"hook.secret\"\n\
         events = [\"resource.*\", \"reaper.cap-hit\"]\nretry_backoff = \"1s\"\n\
         \n[[webhooks]]\nname = \"refusing\"\nurl = \"{}\"\nsecret_file = \"hook.secret\"\n\
         events = [\"lease.released\"]\nretry_backoff = \"1s\"\n",
        lease.url(),
        resources.url(),
        refusing.url()
    )
}

async fn acquire(http: &reqwest::Client, base: &str, task: &str) -> String {
    let r = http
        .post(format!("{base}/api/v1/leases"))
        .bearer_auth(WEB)
        .json(&json!({"project": "web", "task": task, "owner": "alice@example.com"}))
        .send()
        .await
        .expect("acquire sent");
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = r.json().await.expect("json");
    v["id"].as_str().expect("an id").to_owned()
}

async fn release(http: &reqwest::Client, base: &str, id: &str) {
    let r = http
        .post(format!("{base}/api/v1/leases/{id}/release"))
        .bearer_auth(WEB)
        .send()
        .await
        .expect("release sent");
    assert_eq!(r.status(), StatusCode::OK);
}

/// The event ids the receiver accepted (signature and shape good), in arrival order.
fn accepted_ids(r: &Receiver) -> Vec<String> {
    r.received()
        .iter()
        .filter(|x| x["ok"] == true)
        .map(|x| x["event"]["id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn metric(http: &reqwest::Client, base: &str, series: &str) -> f64 {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    sample(&text, series).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_events_arrive_signed_once_the_endpoint_is_back_even_after_a_kill() {
    let mut leases = Receiver::start(SECRET);
    let resources = Receiver::start(SECRET);
    let mut refusing = Receiver::stopped(SECRET);
    refusing.answering(Some(410));
    refusing.restart();
    // The receiver's check is not vacuous: a body signed with another secret is refused.
    let http = reqwest::Client::new();
    let forged = http
        .post(leases.url())
        .header("Content-Type", "application/cloudevents+json")
        .header(
            "X-Ephemera-Signature",
            format!(
                "t={},v1={}",
                chrono::Utc::now().timestamp(),
                "00".repeat(32)
            ),
        )
        .body("{}")
        .send()
        .await
        .expect("sent");
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);

    let work = Workdir::with_config(&(config_text() + &hooks(&leases, &resources, &refusing)));
    std::fs::write(work.path().join("hook.secret"), format!("{SECRET}\n")).expect("secret");
    let (daemon, base) = spawn_daemon(&work.config_path());

    let a = acquire(&http, &base, "first").await;
    release(&http, &base, &a).await;
    let (acquired_a, released_a) = (format!("lease.acquired:{a}"), format!("lease.released:{a}"));
    eventually(
        "both events of the first lease arrive",
        Duration::from_secs(20),
        || {
            let ids = accepted_ids(&leases);
            let ok = ids.contains(&acquired_a) && ids.contains(&released_a);
            async move { ok }
        },
    )
    .await;
    let got = leases.received();
    let first = got
        .iter()
        .find(|x| x["event"]["id"] == acquired_a.as_str())
        .expect("the acquire");
    assert_eq!(first["ok"], true, "{first}");
    let e = &first["event"];
    assert_eq!(e["type"], "dev.ephemera.lease.acquired");
    assert_eq!(e["source"], "/ephemera");
    assert_eq!(e["subject"], format!("lease/{a}"));
    assert_eq!(e["data"]["project"], "web");
    assert_eq!(e["data"]["task"], "first");
    assert_eq!(e["data"]["owner"], "alice@example.com");

    // An endpoint that refuses (410) is tried three times, then keeps a dead letter.
    eventually(
        "the refused event is a dead letter",
        Duration::from_secs(30),
        || {
            let (http, base) = (http.clone(), base.clone());
            async move {
                metric(
                    &http,
                    &base,
                    r#"ephemera_webhook_deliveries_total{endpoint="refusing",outcome="dead"}"#,
                )
                .await
                    == 1.0
            }
        },
    )
    .await;
    let refused = refusing.received();
    assert_eq!(refused.len(), 3, "three attempts: {refused:?}");
    assert!(
        refused
            .iter()
            .all(|x| x["ok"] == true && x["event"]["id"] == released_a.as_str()),
        "{refused:?}"
    );

    // The endpoint goes down; a second lease's event waits, and is retried.
    leases.stop();
    let b = acquire(&http, &base, "second").await;
    eventually(
        "delivery to the downed endpoint fails and is retried",
        Duration::from_secs(20),
        || {
            let (http, base) = (http.clone(), base.clone());
            async move {
                metric(
                    &http,
                    &base,
                    r#"ephemera_webhook_deliveries_total{endpoint="leases",outcome="failed"}"#,
                )
                .await
                    >= 2.0
            }
        },
    )
    .await;
    // SIGKILL with the event pending; the endpoint comes back; a new process delivers it.
    drop(daemon);
    leases.restart();
    let (_daemon, _base) = spawn_daemon(&work.config_path());
    let acquired_b = format!("lease.acquired:{b}");
    eventually(
        "the pending event arrives after the restart",
        Duration::from_secs(20),
        || {
            let ok = accepted_ids(&leases).contains(&acquired_b);
            async move { ok }
        },
    )
    .await;

    // Everything that arrived was signed right and shaped right; each event arrived (at
    // least once, and here exactly once: each was marked delivered before the kill).
    let all = leases.received();
    let refused: Vec<&Value> = all.iter().filter(|x| x["ok"] != true).collect();
    assert_eq!(
        refused.len(),
        1,
        "only the forged request was refused: {all:?}"
    );
    assert_eq!(refused[0]["why"], "bad signature");
    let mut ids = accepted_ids(&leases);
    ids.sort();
    let mut want = vec![acquired_a, released_a, acquired_b];
    want.sort();
    assert_eq!(ids, want);
    // The filter: lease events never reach an endpoint that asked for resource events.
    assert!(
        resources.received().is_empty(),
        "{:?}",
        resources.received()
    );
}

/// The ids of the accepted events of `kind` (`lease.expired`, …).
fn ids_of(r: &Receiver, kind: &str) -> Vec<String> {
    accepted_ids(r)
        .into_iter()
        .filter(|id| id.starts_with(&format!("{kind}:")))
        .collect()
}

/// A lease's whole life in events, on the lease clock: expiring 30 minutes before its end,
/// expired, its volume's finding opened and the volume marked by a pass, deleted by the next
/// one past the grace, the finding resolved by the one after; each event once, each signed.
#[tokio::test(flavor = "multi_thread")]
async fn a_lease_and_its_resource_are_told_from_expiry_to_deletion() {
    let moto = Moto::start().await;
    let hook = Receiver::start(SECRET);
    let text = format!(
        "{}\n[[webhooks]]\nname = \"all\"\nurl = \"{}\"\nsecret_file = \"hook.secret\"\n\
         retry_backoff = \"1s\"\n",
        config_text_with_aws(&format!(
            "regions = [\"us-east-1\"]\nendpoint_url = \"{}\"\nemulator = true\nmax_attempts = 1\n\n\
             [[aws.accounts]]\nid = \"123456789012\"\narmed = true\n\n\
             [enforcement]\narmed = true\ndeletable_types = [\"ec2:volume\"]\nmax_project_share_percent = 100\n",
            moto.endpoint()
        )),
        hook.url()
    );
    let work = Workdir::with_config(&text);
    std::fs::write(work.path().join("rules/policy/projects.toml"), POLICY).expect("policy");
    std::fs::write(work.path().join("hook.secret"), SECRET).expect("secret");
    let clock = crate::support::manual_clock();
    let d = TestDaemon::start_with_clock(&work, clock.clone()).await;

    let doomed = d.acquire(WEB, "web", "build 7").await;
    let seeded = seed(
        &moto.endpoint(),
        json!({"resources": [
            {"key": "vol", "type": "ec2:volume", "tags": {
                "ephemera:lease-id": doomed, "ephemera:project": "web",
                "ephemera:task": "build 7", "ephemera:owner": "alice@example.com"}}
        ]}),
    )
    .await;
    let vol = arns_by_key(&seeded)["vol"][0].clone();
    let wait = Duration::from_secs(20);
    eventually("lease.acquired", wait, || {
        let ok = ids_of(&hook, "lease.acquired") == [format!("lease.acquired:{doomed}")];
        async move { ok }
    })
    .await;

    // 1h40m into its 2h: expiring.
    clock.advance(TimeDelta::minutes(100));
    eventually("lease.expiring", wait, || {
        let ok = ids_of(&hook, "lease.expiring").len() == 1;
        async move { ok }
    })
    .await;
    // 2h20m: expired; a pass opens the volume's finding and marks it (deadline +1h).
    clock.advance(TimeDelta::minutes(40));
    eventually("lease.expired", wait, || {
        let ok = ids_of(&hook, "lease.expired").len() == 1;
        async move { ok }
    })
    .await;
    let run = d.pass().await;
    assert_eq!(run["run"]["summary"]["reap"]["marked"], 1, "{run}");
    eventually("finding.opened and resource.marked", wait, || {
        let ok = ids_of(&hook, "finding.opened").len() == 1
            && ids_of(&hook, "resource.marked").len() == 1;
        async move { ok }
    })
    .await;
    // 3h20m: past the deadline, the next pass deletes it.
    clock.advance(TimeDelta::hours(1));
    let run = d.pass().await;
    assert_eq!(run["run"]["summary"]["reap"]["deleted"], 1, "{run}");
    eventually("resource.deleted", wait, || {
        let ok = ids_of(&hook, "resource.deleted").len() == 1;
        async move { ok }
    })
    .await;
    // The next pass finds the volume gone and resolves its finding; one more, and the
    // rounds in between, tell nothing again.
    d.pass().await;
    eventually("finding.resolved", wait, || {
        let ok = ids_of(&hook, "finding.resolved").len() == 1;
        async move { ok }
    })
    .await;
    d.pass().await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let got = hook.received();
    assert!(got.iter().all(|x| x["ok"] == true), "{got:?}");
    let kinds: Vec<String> = got
        .iter()
        .map(|x| x["event"]["type"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        kinds,
        [
            "dev.ephemera.lease.acquired",
            "dev.ephemera.lease.expiring",
            "dev.ephemera.lease.expired",
            "dev.ephemera.finding.opened",
            "dev.ephemera.resource.marked",
            "dev.ephemera.resource.deleted",
            "dev.ephemera.finding.resolved",
        ],
        "each once, in order"
    );
    let event = |t: &str| {
        got.iter()
            .find(|x| x["event"]["type"] == t)
            .map(|x| x["event"].clone())
            .expect("present")
    };
    assert_eq!(
        event("dev.ephemera.lease.expired")["data"]["lease_id"],
        doomed
    );
    assert_eq!(
        event("dev.ephemera.lease.expired")["time"],
        "2026-03-01T11:00:00.000Z"
    );
    let opened = event("dev.ephemera.finding.opened");
    assert_eq!(opened["subject"], vol.as_str());
    assert_eq!(opened["data"]["verdict"], "expired");
    assert_eq!(opened["data"]["lease_id"], doomed);
    let deleted = event("dev.ephemera.resource.deleted");
    assert_eq!(deleted["data"]["arn"], vol.as_str());
    assert_eq!(deleted["data"]["project"], "web");
    assert_eq!(
        deleted["data"]["by"], "oncall",
        "the pass was asked for by on-call"
    );
    d.stop().await;
}

/// Runtime early warning: twenty leases of `data` ran 10 minutes each (p95 10 minutes, so
/// 20 minutes at the default factor of 2). An active lease at 15 minutes is not overrunning;
/// at 25 minutes it is: counted by `ephemera_leases_overrunning`, told once to the webhooks.
/// A released one never is.
#[tokio::test(flavor = "multi_thread")]
async fn an_overrunning_lease_is_counted_and_told_once() {
    let hook = Receiver::start(SECRET);
    let text = format!(
        "{}\n[[webhooks]]\nname = \"runtime\"\nurl = \"{}\"\nsecret_file = \"hook.secret\"\n\
         events = [\"lease.overrunning\"]\nretry_backoff = \"1s\"\n",
        config_text(),
        hook.url()
    );
    let work = Workdir::with_config(&text);
    std::fs::write(work.path().join("hook.secret"), SECRET).expect("secret");
    let clock = crate::support::manual_clock();
    let d = TestDaemon::start_with_clock(&work, clock.clone()).await;
    crate::support::ten_minute_history(&d, &clock).await;
    let long = d.acquire(DATA, "data", "etl 20").await;
    let short = d.acquire(DATA, "data", "etl 21").await;

    clock.advance(TimeDelta::minutes(15));
    d.pass().await;
    let m = d.metrics().await;
    assert_eq!(
        sample(&m, r#"ephemera_lease_duration_p95_seconds{project="data"}"#),
        Some(600.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, r#"ephemera_leases_overrunning{project="data"}"#),
        Some(0.0)
    );
    assert_eq!(
        sample(&m, r#"ephemera_leases_overrunning{project="web"}"#),
        Some(0.0),
        "a project with too few releases has no p95 and flags nothing"
    );
    assert_eq!(
        sample(&m, r#"ephemera_lease_duration_p95_seconds{project="web"}"#),
        None
    );

    clock.advance(TimeDelta::minutes(10));
    d.release(DATA, &short).await;
    d.pass().await;
    let m = d.metrics().await;
    assert_eq!(
        sample(&m, r#"ephemera_leases_overrunning{project="data"}"#),
        Some(1.0)
    );
    let id = format!("lease.overrunning:{long}");
    eventually("lease.overrunning arrives", Duration::from_secs(20), || {
        let ok = accepted_ids(&hook).contains(&id);
        async move { ok }
    })
    .await;
    d.pass().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got = hook.received();
    assert_eq!(got.len(), 1, "told once: {got:?}");
    let data = &got[0]["event"]["data"];
    assert_eq!(data["lease_id"], long.as_str());
    assert_eq!(data["project"], "data");
    assert_eq!(data["running_seconds"], 1500);
    assert_eq!(data["p95_seconds"], 600);
    assert_eq!(data["threshold_seconds"], 1200);
    assert_eq!(data["samples"], 21, "the short one's release counts too");
    d.stop().await;
}

/// `ephemera webhook test`: a signed test event straight to the endpoint (no daemon), which
/// the receiver accepts with its own check; an endpoint answering 410 makes exit 1; an
/// unknown endpoint is named.
#[tokio::test(flavor = "multi_thread")]
async fn webhook_test_sends_one_signed_event() {
    let hook = Receiver::start(SECRET);
    let mut gone = Receiver::stopped(SECRET);
    gone.answering(Some(410));
    gone.restart();
    let text = format!(
        "{}\n[[webhooks]]\nname = \"ops\"\nurl = \"{}\"\nsecret_file = \"hook.secret\"\n\
         \n[[webhooks]]\nname = \"gone\"\nurl = \"{}\"\nsecret_file = \"hook.secret\"\n",
        config_text(),
        hook.url(),
        gone.url()
    );
    let work = Workdir::with_config(&text);
    std::fs::write(work.path().join("hook.secret"), SECRET).expect("secret");
    let cfg = work.config_path();
    let cfg = cfg.to_str().expect("utf-8");
    let o = crate::cli::run(
        &["webhook", "test", "--endpoint", "ops", "--config", cfg],
        &[],
    )
    .await;
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("webhook `ops` answered 204"), "{out}");
    let got = hook.received();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["ok"], true, "{got:?}");
    assert_eq!(got[0]["event"]["type"], "dev.ephemera.test");

    let o = crate::cli::run(
        &["webhook", "test", "--endpoint", "gone", "--config", cfg],
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("answered 410 Gone"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let o = crate::cli::run(
        &["webhook", "test", "--endpoint", "nope", "--config", cfg],
        &[],
    )
    .await;
    assert_ne!(o.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no [[webhooks]] endpoint named `nope`"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
