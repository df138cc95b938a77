//! The HTTP API against a real daemon: status codes, role rules, concurrency, restarts,
//! metrics.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::TimeDelta;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{
    DATA, OPERATOR, TestDaemon, VIEWER, WEB, WEB2, Workdir, manual_clock, sample,
};

fn acquire_body(project: &str, extra: Value) -> String {
    let mut body = json!({"project": project, "task": "build-7", "owner": "alice@example.com"});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    body.to_string()
}

/// Each bad input gets its status and stable code.
#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_the_fitting_status_and_code() {
    let work = Workdir::new();
    let d = TestDaemon::start(&work).await;
    let web_lease = d.acquire(WEB, "web", "t1").await;
    let released = d.acquire(WEB, "web", "t2").await;
    let (s, _) = d
        .call(
            "POST",
            &format!("/api/v1/leases/{released}/release"),
            Some(WEB),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let big = format!(
        "{{\"project\":\"web\",\"task\":\"t\",\"owner\":\"{}\"}}",
        "a".repeat(5000)
    );

    // (method, path, token, body, status, code, message must contain)
    let leases = "/api/v1/leases";
    let renew_web = format!("/api/v1/leases/{web_lease}/renew");
    let release_released = format!("/api/v1/leases/{released}/release");
    let beat_released = format!("/api/v1/leases/{released}/heartbeat");
    type Row<'a> = (
        &'a str,
        &'a str,
        Option<&'a str>,
        Option<String>,
        u16,
        &'a str,
        &'a str,
    );
    let table: Vec<Row<'_>> = vec![
        (
            "POST",
            leases,
            Some(WEB),
            Some(acquire_body("web", json!({"ttl": "-1h"}))),
            422,
            "invalid-request",
            "ttl: invalid duration `-1h`",
        ),
        (
            "POST",
            leases,
            Some(WEB),
            Some(acquire_body("web", json!({"ttl": "forever"}))),
            422,
            "invalid-request",
            "ttl: invalid duration `forever`",
        ),
        (
            "POST",
            leases,
            Some(WEB),
            Some(acquire_body("web", json!({"ttl": "48h"}))),
            422,
            "ttl-above-max",
            "max_ttl of 24h",
        ),
        (
            "POST",
            leases,
            Some(WEB),
            Some(acquire_body("web", json!({"regions": ["sa-east-1"]}))),
            422,
            "region-not-allowed",
            "sa-east-1",
        ),
        (
            "POST",
            leases,
            Some(WEB),
            Some(acquire_body("web", json!({"heartbeat_interval": "3h"}))),
            422,
            "heartbeat-above-ttl",
            "3h",
        ),
        (
            "POST",
            leases,
            Some(WEB),
            Some(acquire_body("nosuch", json!({}))),
            403,
            "project-forbidden",
            "nosuch",
        ),
        (
            "POST",
            leases,
            Some(OPERATOR),
            Some(acquire_body("nosuch", json!({}))),
            422,
            "unknown-project",
            "nosuch",
        ),
        (
            "POST",
            leases,
            Some(WEB),
            Some(acquire_body("data", json!({}))),
            403,
            "project-forbidden",
            "`data`",
        ),
        (
            "POST",
            leases,
            Some(VIEWER),
            Some(acquire_body("web", json!({}))),
            403,
            "project-forbidden",
            "dashboards",
        ),
        (
            "POST",
            leases,
            Some(WEB),
            Some("{\"project\": \"web\",".into()),
            400,
            "malformed-json",
            "not valid JSON",
        ),
        (
            "POST",
            leases,
            Some(WEB),
            Some(acquire_body("web", json!({"colour": "red"}))),
            422,
            "invalid-request",
            "unknown field `colour`",
        ),
        (
            "POST",
            leases,
            Some(WEB),
            Some("{\"project\": \"web\"}".into()),
            422,
            "invalid-request",
            "missing field `task`",
        ),
        (
            "POST",
            leases,
            Some(WEB),
            Some(acquire_body("web", json!({"owner": ""}))),
            422,
            "invalid-request",
            "owner must not be empty",
        ),
        (
            "POST",
            leases,
            Some(WEB),
            Some(big),
            413,
            "body-too-large",
            "size limit",
        ),
        (
            "POST",
            leases,
            None,
            Some(acquire_body("web", json!({}))),
            401,
            "unauthenticated",
            "Authorization",
        ),
        (
            "POST",
            leases,
            Some("not-a-token"),
            Some(acquire_body("web", json!({}))),
            401,
            "unauthenticated",
            "unknown token",
        ),
        (
            "GET",
            leases,
            None,
            None,
            401,
            "unauthenticated",
            "Authorization",
        ),
        (
            "POST",
            &renew_web,
            Some(WEB2),
            None,
            403,
            "forbidden",
            "belongs to principal `ci-web`",
        ),
        (
            "POST",
            &renew_web,
            Some(VIEWER),
            None,
            403,
            "forbidden",
            "belongs to principal `ci-web`",
        ),
        (
            "POST",
            &renew_web,
            Some(WEB),
            Some("{\"ttl\": \"30h\"}".into()),
            422,
            "ttl-above-max",
            "max_ttl of 24h",
        ),
        (
            "POST",
            "/api/v1/leases/0194e0a1-0000-7000-8000-000000000000/release",
            Some(OPERATOR),
            None,
            404,
            "lease-not-found",
            "0194e0a1",
        ),
        (
            "GET",
            "/api/v1/leases/not-an-id",
            Some(OPERATOR),
            None,
            404,
            "lease-not-found",
            "not-an-id",
        ),
        (
            "POST",
            &release_released,
            Some(WEB),
            None,
            409,
            "lease-released",
            "already released",
        ),
        (
            "POST",
            &beat_released,
            Some(WEB),
            None,
            409,
            "lease-released",
            "already released",
        ),
        (
            "GET",
            "/api/v1/leases?state=zombie",
            Some(OPERATOR),
            None,
            400,
            "invalid-query",
            "zombie",
        ),
        (
            "GET",
            "/api/v1/leases?limit=0",
            Some(OPERATOR),
            None,
            400,
            "invalid-query",
            "limit",
        ),
        (
            "GET",
            "/api/v1/audit?limit=0",
            Some(OPERATOR),
            None,
            400,
            "invalid-query",
            "limit",
        ),
        (
            "GET",
            "/api/v1/findings?limit=5000",
            Some(OPERATOR),
            None,
            400,
            "invalid-query",
            "limit",
        ),
        (
            "GET",
            "/api/v1/leases?cursor=xyz",
            Some(OPERATOR),
            None,
            400,
            "invalid-query",
            "cursor",
        ),
        (
            "GET",
            "/api/v1/leases?project=data",
            Some(WEB),
            None,
            403,
            "forbidden",
            "data",
        ),
        (
            "GET",
            "/api/v1/nothing-here",
            Some(OPERATOR),
            None,
            404,
            "not-found",
            "no such endpoint",
        ),
        (
            "DELETE",
            leases,
            Some(OPERATOR),
            None,
            405,
            "method-not-allowed",
            "not allowed",
        ),
    ];
    for (method, path, token, body, status, code, msg) in table {
        let (got, body_json) = d.call(method, path, token, body.as_deref()).await;
        let what = format!("{method} {path} as {token:?}: {body_json}");
        assert_eq!(got.as_u16(), status, "{what}");
        assert_eq!(body_json["code"], code, "{what}");
        let message = body_json["message"].as_str().unwrap_or_default();
        assert!(message.contains(msg), "{what}: message lacks {msg:?}");
    }
    // A refused request changed nothing: still exactly one active and one released lease.
    let (_, list) = d.get("/api/v1/leases", OPERATOR).await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(2), "{list}");
}

/// Acquire → heartbeat → renew → release, and the state math, with a clock we move.
#[tokio::test(flavor = "multi_thread")]
async fn lease_lifecycle_over_time() {
    // A webhook endpoint hears of the revival (the lease-end rounds run on this clock too).
    let hook = crate::support::webhook::Receiver::start("a-secret-of-sixteen-chars");
    let work = Workdir::with_config(&format!(
        "{}\n[[webhooks]]\nname = \"ops\"\nurl = \"{}\"\nsecret_file = \"hook.secret\"\n\
         events = [\"lease.revived\"]\nretry_backoff = \"1s\"\n",
        crate::support::config_text(),
        hook.url()
    ));
    std::fs::write(work.path().join("hook.secret"), "a-secret-of-sixteen-chars").expect("secret");
    let clock = manual_clock();
    let d = TestDaemon::start_with_clock(&work, clock.clone()).await;

    let (s, l) = d
        .post(
            "/api/v1/leases",
            WEB,
            json!({"project": "web", "task": "deploy 12", "owner": "bob@example.com", "ttl": "90m",
                   "heartbeat_interval": "10m", "labels": {"pr": "12"}, "regions": ["us-east-1"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{l}");
    let id = l["id"].as_str().expect("id").to_owned();
    assert_eq!(l["state"], "active");
    assert_eq!(l["created_at"], "2026-03-01T09:00:00.000Z");
    assert_eq!(l["expires_at"], "2026-03-01T10:30:00.000Z");
    assert_eq!(
        l["ends_at"], "2026-03-01T09:10:00.000Z",
        "heartbeat deadline comes first"
    );
    assert_eq!(l["principal"], "ci-web");
    assert_eq!(l["labels"]["pr"], "12");
    assert_eq!(
        l["tags"],
        json!({"ephemera:lease-id": id, "ephemera:project": "web", "ephemera:task": "deploy 12", "ephemera:owner": "bob@example.com"})
    );

    clock.advance(TimeDelta::minutes(8));
    let (s, l) = d
        .post(&format!("/api/v1/leases/{id}/heartbeat"), WEB, json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{l}");
    assert_eq!(l["ends_at"], "2026-03-01T09:18:00.000Z");

    clock.advance(TimeDelta::minutes(7));
    let l = d.renew(WEB, &id, "24h").await;
    assert_eq!(l["expires_at"], "2026-03-02T09:15:00.000Z");
    assert_eq!(l["last_heartbeat_at"], "2026-03-01T09:15:00.000Z");

    // Miss a heartbeat: the lease expires although expires_at is a day away.
    clock.advance(TimeDelta::minutes(10));
    let (_, l) = d.get(&format!("/api/v1/leases/{id}"), WEB).await;
    assert_eq!(l["state"], "expired", "{l}");
    // Its lessee comes back within the grace (1h for web): the beat revives it, counted.
    let (s, l) = d
        .post(&format!("/api/v1/leases/{id}/heartbeat"), WEB, json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{l}");
    assert_eq!(l["state"], "active", "{l}");
    assert_eq!(
        sample(
            &d.metrics().await,
            "ephemera_lease_revivals_total{project=\"web\"}"
        ),
        Some(1.0)
    );
    let revived = crate::support::eventually_some(
        "lease.revived",
        std::time::Duration::from_secs(20),
        || {
            let got = hook.received();
            async move { (!got.is_empty()).then_some(got) }
        },
    )
    .await;
    assert_eq!(revived[0]["ok"], true, "{revived:?}");
    assert_eq!(revived[0]["event"]["type"], "dev.ephemera.lease.revived");
    assert_eq!(revived[0]["event"]["subject"], format!("lease/{id}"));
    // Missed again, and silent past the grace: expired for good.
    clock.advance(TimeDelta::minutes(10) + TimeDelta::hours(1));
    let (_, l) = d.get(&format!("/api/v1/leases/{id}"), WEB).await;
    assert_eq!(l["state"], "expired", "{l}");
    let (s, e) = d
        .post(&format!("/api/v1/leases/{id}/heartbeat"), WEB, json!({}))
        .await;
    assert_eq!(
        (s.as_u16(), e["code"].as_str()),
        (409, Some("lease-expired"))
    );
    let (s, e) = d
        .post(&format!("/api/v1/leases/{id}/renew"), WEB, json!({}))
        .await;
    assert_eq!(
        (s.as_u16(), e["code"].as_str()),
        (409, Some("lease-expired"))
    );
    let (_, list) = d.get("/api/v1/leases?state=expired", OPERATOR).await;
    assert_eq!(list["items"][0]["id"], id.as_str());

    // An expired lease can still be released, once.
    let (s, l) = d
        .post(&format!("/api/v1/leases/{id}/release"), WEB, json!({}))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(l["state"], "released");
    assert_eq!(l["released_at"], "2026-03-01T10:35:00.000Z");

    // A plain lease without heartbeats expires at expires_at, not a millisecond before.
    let id2 = d.acquire(WEB, "web", "plain").await;
    clock.advance(TimeDelta::hours(2) - TimeDelta::milliseconds(1));
    let (_, l) = d.get(&format!("/api/v1/leases/{id2}"), WEB).await;
    assert_eq!(l["state"], "active");
    clock.advance(TimeDelta::milliseconds(1));
    let (_, l) = d.get(&format!("/api/v1/leases/{id2}"), WEB).await;
    assert_eq!(l["state"], "expired");
}

/// Lessees see and change only their own; viewers only read; operators do everything.
#[tokio::test(flavor = "multi_thread")]
async fn role_rules() {
    let work = Workdir::new();
    let d = TestDaemon::start(&work).await;
    let web = d.acquire(WEB, "web", "w").await;
    let data = d.acquire(DATA, "data", "d").await;

    let ids = |v: &Value| -> HashSet<String> {
        v["items"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|l| l["id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (_, all) = d.get("/api/v1/leases", VIEWER).await;
    assert_eq!(ids(&all), HashSet::from([web.clone(), data.clone()]));
    let (_, mine) = d.get("/api/v1/leases", WEB).await;
    assert_eq!(
        ids(&mine),
        HashSet::from([web.clone()]),
        "a lessee sees only its projects"
    );
    let (_, mine) = d.get("/api/v1/leases", WEB2).await;
    assert_eq!(
        ids(&mine),
        HashSet::from([web.clone()]),
        "same project, other principal: visible"
    );
    let (s, _) = d.get(&format!("/api/v1/leases/{data}"), WEB).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = d.get(&format!("/api/v1/leases/{data}"), VIEWER).await;
    assert_eq!(s, StatusCode::OK);

    // Other lessee in the same project may not change it; the operator may.
    let (s, _) = d
        .post(&format!("/api/v1/leases/{web}/heartbeat"), WEB2, json!({}))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = d
        .post(&format!("/api/v1/leases/{data}/release"), VIEWER, json!({}))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    d.renew(OPERATOR, &web, "3h").await;
    let (s, l) = d
        .post(
            &format!("/api/v1/leases/{data}/release"),
            OPERATOR,
            json!({}),
        )
        .await;
    assert_eq!((s, l["state"].as_str()), (StatusCode::OK, Some("released")));
    // Filters: project, state, owner.
    let (_, l) = d
        .get("/api/v1/leases?project=data&state=released", OPERATOR)
        .await;
    assert_eq!(ids(&l), HashSet::from([data.clone()]));
    let (_, l) = d
        .get("/api/v1/leases?owner=nobody%40example.com", OPERATOR)
        .await;
    assert_eq!(ids(&l), HashSet::new());
}

/// 64 clients acquire and release at once: every lease is stored once, none is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_clients_lose_and_duplicate_nothing() {
    let work = Workdir::new();
    let d = Arc::new(TestDaemon::start(&work).await);
    const CLIENTS: usize = 64;
    const ROUNDS: usize = 10;
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let d = d.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for r in 0..ROUNDS {
                let id = d
                    .acquire(DATA, "data", &format!("client-{c}-round-{r}"))
                    .await;
                let (s, l) = d
                    .post(&format!("/api/v1/leases/{id}/release"), DATA, json!({}))
                    .await;
                assert_eq!(s, StatusCode::OK, "{l}");
                ids.push(id);
            }
            ids
        }));
    }
    let mut acquired = Vec::new();
    for t in tasks {
        acquired.extend(t.await.expect("client task"));
    }
    let unique: HashSet<_> = acquired.iter().cloned().collect();
    assert_eq!(
        unique.len(),
        CLIENTS * ROUNDS,
        "duplicate lease ids handed out"
    );

    // Page through everything the store holds.
    let mut stored = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/leases?limit=97&cursor={c}"),
            None => "/api/v1/leases?limit=97".to_owned(),
        };
        let (s, page) = d.get(&path, OPERATOR).await;
        assert_eq!(s, StatusCode::OK, "{page}");
        for l in page["items"].as_array().expect("items") {
            assert_eq!(l["state"], "released", "{l}");
            stored.push(l["id"].as_str().expect("id").to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(
        stored.len(),
        CLIENTS * ROUNDS,
        "lost or duplicated leases in the store"
    );
    assert_eq!(stored.iter().cloned().collect::<HashSet<_>>(), unique);
    let m = d.metrics().await;
    assert_eq!(
        sample(&m, r#"ephemera_leases{project="data",state="released"}"#),
        Some(640.0)
    );
    assert_eq!(
        sample(
            &m,
            r#"ephemera_lease_operations_total{operation="release",outcome="ok"}"#
        ),
        Some(640.0)
    );
}

/// The quota holds under a race: with 10 slots and 64 simultaneous acquires, exactly 10 win.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quota_holds_under_concurrent_acquires() {
    let work = Workdir::new();
    let d = Arc::new(TestDaemon::start(&work).await);
    let mut tasks = Vec::new();
    for c in 0..64 {
        let d = d.clone();
        tasks.push(tokio::spawn(async move {
            let body = json!({"project": "web", "task": format!("race-{c}"), "owner": "alice@example.com"});
            let (s, b) = d.post("/api/v1/leases", WEB, body).await;
            (s, b["code"].as_str().map(str::to_owned))
        }));
    }
    let mut won = 0;
    for t in tasks {
        match t.await.expect("client task") {
            (StatusCode::CREATED, _) => won += 1,
            (StatusCode::CONFLICT, Some(code)) => assert_eq!(code, "quota-exceeded"),
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!(won, 10);
    let (_, l) = d
        .get("/api/v1/leases?project=web&state=active", OPERATOR)
        .await;
    assert_eq!(l["items"].as_array().map(Vec::len), Some(10));
}

/// Stopping and starting the daemon on the same store keeps every lease and its state.
#[tokio::test(flavor = "multi_thread")]
async fn restart_keeps_every_lease() {
    let work = Workdir::new();
    let d = TestDaemon::start(&work).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(d.acquire(WEB, "web", &format!("t{i}")).await);
    }
    let (s, _) = d
        .post(
            &format!("/api/v1/leases/{}/release", ids[0]),
            WEB,
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, before) = d.get("/api/v1/leases", OPERATOR).await;
    d.stop().await;

    let d = TestDaemon::start(&work).await;
    let (_, after) = d.get("/api/v1/leases", OPERATOR).await;
    assert_eq!(before, after);
    assert_eq!(after["items"].as_array().map(Vec::len), Some(5));
    // The restarted daemon still enforces ownership and state.
    let (s, e) = d
        .post(
            &format!("/api/v1/leases/{}/release", ids[0]),
            WEB,
            json!({}),
        )
        .await;
    assert_eq!(
        (s.as_u16(), e["code"].as_str()),
        (409, Some("lease-released"))
    );
    let (s, _) = d
        .post(&format!("/api/v1/leases/{}/renew", ids[1]), WEB2, json!({}))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

/// Readiness needs a store that can take writes: while another process holds the write lock
/// (past the busy timeout), /readyz is 503 `store-unavailable`; once it lets go, ready again.
#[tokio::test(flavor = "multi_thread")]
async fn readyz_is_503_while_the_store_cannot_take_writes() {
    let work = Workdir::new();
    let d = TestDaemon::start(&work).await;
    let raw = rusqlite::Connection::open(work.path().join("state/ephemera.db")).expect("open");
    raw.execute_batch("BEGIN IMMEDIATE")
        .expect("take the write lock");
    let (s, r) = d.call("GET", "/readyz", None, None).await;
    assert_eq!(
        (s, r["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("store-unavailable")),
        "{r}"
    );
    raw.execute_batch("ROLLBACK").expect("let go");
    let (s, r) = d.call("GET", "/readyz", None, None).await;
    assert_eq!((s, r["status"].as_str()), (StatusCode::OK, Some("ready")));
}

/// Health, readiness and metrics, including zeroed series and route patterns.
#[tokio::test(flavor = "multi_thread")]
async fn health_and_metrics() {
    let work = Workdir::new();
    let d = TestDaemon::start(&work).await;
    let (s, h) = d.call("GET", "/healthz", None, None).await;
    assert_eq!((s, h["status"].as_str()), (StatusCode::OK, Some("ok")));
    let (s, r) = d.call("GET", "/readyz", None, None).await;
    assert_eq!((s, r["status"].as_str()), (StatusCode::OK, Some("ready")));

    let id = d.acquire(WEB, "web", "m").await;
    let _ = d
        .post(
            &format!("/api/v1/leases/{id}/renew"),
            WEB,
            json!({"ttl": "99h"}),
        )
        .await;
    let _ = d
        .post(&format!("/api/v1/leases/{id}/release"), WEB, json!({}))
        .await;
    let _ = d.acquire(WEB, "web", "still running").await;

    let m = d.metrics().await;
    let s = |k: &str| sample(&m, k);
    assert_eq!(
        s(r#"ephemera_leases{project="web",state="active"}"#),
        Some(1.0)
    );
    assert_eq!(
        s(r#"ephemera_leases{project="web",state="released"}"#),
        Some(1.0)
    );
    assert_eq!(
        s(r#"ephemera_leases{project="data",state="active"}"#),
        Some(0.0),
        "known projects are zero-filled"
    );
    assert_eq!(
        s(r#"ephemera_lease_operations_total{operation="acquire",outcome="ok"}"#),
        Some(2.0)
    );
    assert_eq!(
        s(r#"ephemera_lease_operations_total{operation="renew",outcome="ttl-above-max"}"#),
        Some(1.0)
    );
    assert_eq!(
        s(
            r#"ephemera_http_requests_total{method="POST",route="/api/v1/leases/{id}/release",status="200"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        s(r#"ephemera_http_request_duration_seconds_count{method="POST",route="/api/v1/leases"}"#),
        Some(2.0)
    );
    let build = format!(
        "ephemera_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(s(&build), Some(1.0));
    assert!(!m.contains(&id), "a lease id leaked into a metric label");
}

/// 32 simultaneous releases of one lease: exactly one wins, the rest get 409, and the
/// losers' failed writes leave the winner's record intact (each write rolls back alone).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_releases_release_once() {
    let work = Workdir::new();
    let d = Arc::new(TestDaemon::start(&work).await);
    let id = d.acquire(WEB, "web", "race").await;
    let others: Vec<String> = futures_join((0..8).map(|i| {
        let d = d.clone();
        async move { d.acquire(WEB, "web", &format!("bystander-{i}")).await }
    }))
    .await;
    let answers = futures_join((0..32).map(|_| {
        let d = d.clone();
        let id = id.clone();
        async move {
            let (s, b) = d
                .post(&format!("/api/v1/leases/{id}/release"), WEB, json!({}))
                .await;
            (s.as_u16(), b)
        }
    }))
    .await;
    let ok: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == 200)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(ok.len(), 1, "{answers:?}");
    assert!(
        answers
            .iter()
            .all(|(s, b)| *s == 200 || (*s == 409 && b["code"] == "lease-released"))
    );
    let (_, l) = d.get(&format!("/api/v1/leases/{id}"), WEB).await;
    assert_eq!(l["released_at"], ok[0]["released_at"]);
    for o in others {
        let (_, l) = d.get(&format!("/api/v1/leases/{o}"), WEB).await;
        assert_eq!(l["state"], "active", "{l}");
    }
}

/// Runs futures concurrently on the runtime and collects their outputs in order.
async fn futures_join<F, T>(futs: impl Iterator<Item = F>) -> Vec<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.expect("task joins"));
    }
    out
}

/// The API describes itself without a token, and what it serves is the committed document.
#[tokio::test(flavor = "multi_thread")]
async fn the_openapi_document_is_served_without_a_token() {
    let work = Workdir::new();
    let d = TestDaemon::start(&work).await;
    let resp = reqwest::get(d.url("/api/v1/openapi.json"))
        .await
        .expect("answers");
    assert_eq!(resp.status(), StatusCode::OK);
    let served = resp.text().await.expect("text");
    let committed = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json"),
    )
    .expect("docs/openapi.json");
    assert_eq!(served, committed);
    let doc: Value = serde_json::from_str(&served).expect("JSON");
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1"))
    );
    assert!(doc["paths"]["/api/v1/leases"]["post"].is_object());
    d.stop().await;
}

/// A principal listing two token hashes (a rotation in progress) accepts both as itself;
/// a token nobody lists is still refused.
#[tokio::test(flavor = "multi_thread")]
async fn two_static_tokens_on_one_principal_both_work() {
    let one = ephemera::auth::TokenHash::of(WEB).to_hex();
    let old = format!("token_sha256 = \"{one}\"");
    let text = crate::support::config_text();
    assert!(text.contains(&old), "test config lacks the ci-web hash");
    let next = ephemera::auth::TokenHash::of("ci-web-rotated").to_hex();
    let work = Workdir::with_config(&text.replacen(
        &old,
        &format!("tokens_sha256 = [\"{one}\", \"{next}\"]"),
        1,
    ));
    let d = TestDaemon::start(&work).await;
    let a = d.acquire(WEB, "web", "old-token").await;
    let b = d.acquire("ci-web-rotated", "web", "new-token").await;
    for id in [&a, &b] {
        let (s, lease) = d.get(&format!("/api/v1/leases/{id}"), OPERATOR).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(lease["principal"], "ci-web", "{lease}");
    }
    let (s, _) = d.get("/api/v1/leases", "ci-web-unknown").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

/// Slow and idle clients cannot hold the server: connections that never finish their headers
/// are closed after `header_read_timeout`, and past `max_connections` a new connection is
/// closed at once; the lease API answers again as soon as the slots free.
#[tokio::test(flavor = "multi_thread")]
async fn slow_header_connections_are_capped_and_timed_out() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let text = crate::support::config_text().replacen(
        "max_body_bytes = 4096",
        "max_body_bytes = 4096\nheader_read_timeout = \"1s\"\nmax_connections = 8",
        1,
    );
    let work = Workdir::with_config(&text);
    let d = TestDaemon::start(&work).await;
    let addr = d.base().trim_start_matches("http://").to_owned();
    // Eight connections that send half a request and then nothing.
    let mut slow = Vec::new();
    for _ in 0..8 {
        let mut s = tokio::net::TcpStream::connect(&addr)
            .await
            .expect("connect");
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("half a request");
        slow.push(s);
    }
    // The ninth is closed at accept: the server never answers it.
    let mut ninth = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    ninth
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .ok();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), ninth.read(&mut buf))
        .await
        .expect("closed, not left hanging")
        .unwrap_or(0);
    assert_eq!(n, 0, "no answer past max_connections");
    // The slow ones are closed by the header-read timeout (hyper answers 408 or just closes).
    for s in &mut slow {
        let mut rest = Vec::new();
        tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut rest))
            .await
            .expect("closed by the server")
            .ok();
        let text = String::from_utf8_lossy(&rest);
        assert!(
            rest.is_empty() || text.starts_with("HTTP/1.1 408"),
            "{text}"
        );
    }
    // Slots free: the lease API answers.
    crate::support::eventually(
        "the API answers",
        std::time::Duration::from_secs(5),
        || async {
            d.http
                .get(d.url("/api/v1/leases"))
                .bearer_auth(WEB)
                .send()
                .await
                .is_ok_and(|r| r.status() == StatusCode::OK)
        },
    )
    .await;
    d.stop().await;
}

/// A lessee sees whether a pass's walks were complete, never why not (AWS error texts name
/// accounts and roles); a viewer sees the reason. Here every walk fails: AWS is a closed port.
#[tokio::test(flavor = "multi_thread")]
async fn lessees_see_passes_without_error_texts() {
    let work = Workdir::new();
    let d = TestDaemon::start(&work).await;
    let run = d.pass().await;
    let id = run["run"]["id"].as_str().expect("run id").to_owned();
    let (s, viewer) = d.get(&format!("/api/v1/scans/{id}"), VIEWER).await;
    assert_eq!(s, StatusCode::OK, "{viewer}");
    let reason = viewer["walks"][0]["reason"]
        .as_str()
        .expect("a failed walk says why");
    assert_ne!(reason, ephemera::http::dto::HIDDEN);
    for path in [format!("/api/v1/scans/{id}"), "/api/v1/status".to_owned()] {
        let (s, lessee) = d.get(&path, WEB).await;
        assert_eq!(s, StatusCode::OK, "{lessee}");
        let text = lessee.to_string();
        assert!(!text.contains(reason), "{path}: {text}");
        assert!(text.contains(ephemera::http::dto::HIDDEN), "{path}: {text}");
    }
    d.stop().await;
}
