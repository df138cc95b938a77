//! Webhooks end to end with the real binary: lease events arrive at a real HTTP receiver as
//! CloudEvents whose signatures the receiver checks with its own HMAC code; an endpoint that
//! is down gets the same event later, also after the daemon was SIGKILLed with it pending; an
//! endpoint that refuses makes a dead letter; filters hold.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::cli::spawn_daemon;
use crate::support::webhook::Receiver;
use crate::support::{WEB, Workdir, config_text, eventually, sample};

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
