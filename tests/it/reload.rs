//! Live reload of the config and rules, by SIGHUP and by `POST /api/v1/reload`, on the real
//! binary: a new principal, project and schedule take effect without a restart and without
//! failing a request in flight; a broken version is refused and the running one stays.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::cli::spawn_daemon;
use crate::support::{OPERATOR, POLICY, WEB, Workdir, eventually, sample};

const NEW: &str = "reloaded-token";

const NEW_PROJECT: &str = r#"
[[project]]
name = "preview"
lessees = ["ci-preview"]
default_ttl = "1h"
max_ttl = "7d"
grace = "1h"
"#;

async fn call(
    addr: &str,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = reqwest::Client::new()
        .request(method, format!("{addr}{path}"))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("daemon answers");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn metrics(addr: &str) -> String {
    reqwest::get(format!("{addr}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_and_the_api_reload_principals_rules_and_schedules_keeping_the_old_on_error() {
    let work = Workdir::new();
    let (daemon, addr) = spawn_daemon(&work.config_path());
    let acquire = json!({"project": "preview", "task": "pr 7", "owner": "alice@example.com"});
    let (s, _) = call(
        &addr,
        reqwest::Method::POST,
        "/api/v1/leases",
        NEW,
        Some(acquire.clone()),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "not a principal yet");

    // Requests keep flowing through every reload: none may fail.
    let (sent, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let hammer = {
        let (addr, sent, failed) = (addr.clone(), sent.clone(), failed.clone());
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            loop {
                let ok = client
                    .get(format!("{addr}/api/v1/leases?limit=5"))
                    .bearer_auth(WEB)
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == StatusCode::OK);
                sent.fetch_add(1, Ordering::Relaxed);
                if !ok {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };

    // A new principal and project, and a scan schedule every five minutes: SIGHUP.
    let text = std::fs::read_to_string(work.config_path()).expect("config");
    let hash = ephemera::auth::TokenHash::of(NEW).to_hex();
    let text = text.replace(
        "[store]",
        &format!(
            "[[api.principals]]\nname = \"ci-preview\"\nrole = \"lessee\"\nprojects = [\"preview\"]\ntoken_sha256 = \"{hash}\"\n\n[store]"
        ),
    );
    let text = text.replacen("scan = \"0 0 1 1 *\"", "scan = \"*/5 * * * *\"", 1);
    std::fs::write(work.config_path(), &text).expect("write config");
    std::fs::write(
        work.path().join("rules/policy/projects.toml"),
        format!("{POLICY}{NEW_PROJECT}"),
    )
    .expect("write rules");
    let pid = daemon.child.id().to_string();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .expect("kill runs");
    assert!(hup.success());
    eventually(
        "the new principal is known",
        Duration::from_secs(10),
        || {
            let (addr, body) = (addr.clone(), acquire.clone());
            async move {
                call(
                    &addr,
                    reqwest::Method::POST,
                    "/api/v1/leases",
                    NEW,
                    Some(body),
                )
                .await
                .0 == StatusCode::CREATED
            }
        },
    )
    .await;
    let m = metrics(&addr).await;
    assert_eq!(
        sample(&m, "ephemera_task_schedule_interval_seconds{task=\"scan\"}"),
        Some(300.0),
        "the new schedule"
    );
    assert_eq!(
        sample(&m, "ephemera_config_reloads_total{outcome=\"applied\"}"),
        Some(1.0)
    );

    // A broken config: refused, by name and line; the running version stays.
    let broken = text.replacen("max_body_bytes = 4096", "max_body_bytes = \"big\"", 1);
    assert_ne!(broken, text);
    std::fs::write(work.config_path(), &broken).expect("write config");
    let (s, v) = call(&addr, reqwest::Method::POST, "/api/v1/reload", WEB, None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "lessees cannot reload: {v}");
    let (s, v) = call(
        &addr,
        reqwest::Method::POST,
        "/api/v1/reload",
        OPERATOR,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["code"], "reload-invalid", "{v}");
    let msg = v["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("ephemera.toml:") && msg.contains("api.max_body_bytes"),
        "{msg}"
    );
    let (s, _) = call(&addr, reqwest::Method::GET, "/api/v1/leases", NEW, None).await;
    assert_eq!(s, StatusCode::OK, "the running principals stay");
    let m = metrics(&addr).await;
    assert_eq!(
        sample(&m, "ephemera_config_last_reload_successful"),
        Some(0.0)
    );
    assert_eq!(
        sample(&m, "ephemera_config_reloads_total{outcome=\"failed\"}"),
        Some(1.0)
    );

    // Fixed, with a section that only a restart applies: reloaded, and the report says so.
    let fixed = text.replacen(
        "[store]",
        "[enforcement]\nmax_deletions_per_pass = 7\n\n[store]",
        1,
    );
    std::fs::write(work.config_path(), &fixed).expect("write config");
    let (s, v) = call(
        &addr,
        reqwest::Method::POST,
        "/api/v1/reload",
        OPERATOR,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["restart_needed"], json!(["enforcement"]), "{v}");
    assert_eq!(v["projects"], 3, "{v}");
    assert_eq!(
        sample(
            &metrics(&addr).await,
            "ephemera_config_last_reload_successful"
        ),
        Some(1.0)
    );

    hammer.abort();
    assert!(sent.load(Ordering::Relaxed) > 20, "the hammer ran");
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "no request failed across reloads"
    );
    drop(daemon);
}

/// Lease rights follow the principal as it is now: a lessee taken off a project by a reload
/// can neither renew nor release the leases it took there; an operator still can. Its status
/// shows no error texts.
#[tokio::test(flavor = "multi_thread")]
async fn a_lessee_taken_off_a_project_keeps_no_hold_on_its_leases() {
    let work = Workdir::new();
    let (daemon, addr) = spawn_daemon(&work.config_path());
    let (s, lease) = call(
        &addr,
        reqwest::Method::POST,
        "/api/v1/leases",
        WEB,
        Some(json!({"project": "web", "task": "t", "owner": "alice@example.com"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{lease}");
    let id = lease["id"].as_str().expect("id").to_owned();

    // ci-web moves to project data only.
    let text = std::fs::read_to_string(work.config_path()).expect("config");
    let moved = text.replacen(
        "name = \"ci-web\"\nrole = \"lessee\"\nprojects = [\"web\"]",
        "name = \"ci-web\"\nrole = \"lessee\"\nprojects = [\"data\"]",
        1,
    );
    assert_ne!(moved, text, "the fixture names ci-web's projects");
    std::fs::write(work.config_path(), &moved).expect("write config");
    let (s, body) = call(
        &addr,
        reqwest::Method::POST,
        "/api/v1/reload",
        OPERATOR,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");

    for action in ["renew", "heartbeat", "release"] {
        let (s, body) = call(
            &addr,
            reqwest::Method::POST,
            &format!("/api/v1/leases/{id}/{action}"),
            WEB,
            Some(json!({})),
        )
        .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{action}: {body}");
    }
    let (s, body) = call(
        &addr,
        reqwest::Method::POST,
        &format!("/api/v1/leases/{id}/release"),
        OPERATOR,
        Some(json!({})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    drop(daemon);
}
