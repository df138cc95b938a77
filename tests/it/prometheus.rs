//! What users see in Prometheus and Grafana: the lease metrics the Leases dashboard needs.

use chrono::TimeDelta;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{DATA, TestDaemon, WEB, Workdir, manual_clock, sample};

// ---- the lease metrics ------------------------------------------------------------------------

/// web has its own warning window and a quota; data takes the default window (1h) and has none.
const LEASE_POLICY: &str = r#"
[[project]]
name = "web"
lessees = ["ci-web", "ci-web-2"]
default_ttl = "2h"
max_ttl = "24h"
grace = "1h"
max_active_leases = 7
warning_window = "30m"

[[project]]
name = "data"
lessees = ["*"]
default_ttl = "6h"
max_ttl = "3d"
grace = "12h"
"#;

async fn lease(d: &TestDaemon, token: &str, project: &str, extra: Value) -> String {
    let mut body = json!({"project": project, "task": "t", "owner": "alice@example.com"});
    for (k, v) in extra.as_object().expect("an object of extra fields") {
        body[k] = v.clone();
    }
    let (s, l) = d.post("/api/v1/leases", token, body).await;
    assert_eq!(s, StatusCode::CREATED, "{l}");
    l["id"].as_str().expect("lease id").to_owned()
}

/// `ephemera_leases_expiring` counts active leases ending (expiry or missed heartbeat) within
/// their own project's window; `ephemera_lease_quota` is `max_active_leases` of projects with
/// one; `ephemera_lease_duration_seconds` observes acquire → release, expired leases included
/// once released, and every policy project's series exists before its first release.
#[tokio::test(flavor = "multi_thread")]
async fn lease_metrics_expiring_quota_and_duration() {
    let work = Workdir::new();
    std::fs::write(work.path().join("rules/policy/projects.toml"), LEASE_POLICY).expect("policy");
    let clock = manual_clock();
    let d = TestDaemon::start_with_clock(&work, clock.clone()).await;
    let m = d.metrics().await;
    for p in ["web", "data"] {
        let s = |k: &str| sample(&m, &format!("{k}{{project=\"{p}\"}}"));
        assert_eq!(s("ephemera_leases_expiring"), Some(0.0), "{p}: {m}");
        assert_eq!(s("ephemera_lease_duration_seconds_count"), Some(0.0), "{p}");
    }
    assert_eq!(
        sample(&m, r#"ephemera_lease_quota{project="web"}"#),
        Some(7.0)
    );
    assert!(
        !m.contains("ephemera_lease_quota{project=\"data\"}"),
        "no quota, no series: {m}"
    );

    // web (window 30m): 20m and a 10m heartbeat are expiring, 45m and 2h are not; a released
    // 10m lease is not active. data (default window 1h): 50m is expiring, 2h is not.
    let short = lease(&d, WEB, "web", json!({"ttl": "20m"})).await;
    lease(
        &d,
        WEB,
        "web",
        json!({"ttl": "2h", "heartbeat_interval": "10m"}),
    )
    .await;
    lease(&d, WEB, "web", json!({"ttl": "45m"})).await;
    let long = lease(&d, WEB, "web", json!({"ttl": "2h"})).await;
    let released = lease(&d, WEB, "web", json!({"ttl": "10m"})).await;
    lease(&d, DATA, "data", json!({"ttl": "50m"})).await;
    lease(&d, DATA, "data", json!({"ttl": "2h"})).await;
    let (s, _) = d
        .post(
            &format!("/api/v1/leases/{released}/release"),
            WEB,
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let m = d.metrics().await;
    let expiring =
        |m: &str, p: &str| sample(m, &format!("ephemera_leases_expiring{{project=\"{p}\"}}"));
    assert_eq!(expiring(&m, "web"), Some(2.0), "{m}");
    assert_eq!(expiring(&m, "data"), Some(1.0), "{m}");
    assert_eq!(
        sample(
            &m,
            r#"ephemera_lease_duration_seconds_count{project="web"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, r#"ephemera_lease_duration_seconds_sum{project="web"}"#),
        Some(0.0),
        "released the moment it was taken"
    );

    // 30 minutes on: the 20m and the heartbeat lease have expired; 45m ends within 15m; data's
    // 50m within 20m, its 2h in 90m (outside the hour).
    clock.advance(TimeDelta::minutes(30));
    let m = d.metrics().await;
    assert_eq!(expiring(&m, "web"), Some(1.0), "{m}");
    assert_eq!(expiring(&m, "data"), Some(1.0), "{m}");

    // Releasing the 2h lease and the expired 20m one after 30 minutes: two observations of
    // 1800 s, in the 30m bucket and not below it.
    for id in [&long, &short] {
        let (s, body) = d
            .post(&format!("/api/v1/leases/{id}/release"), WEB, json!({}))
            .await;
        assert_eq!(s, StatusCode::OK, "{body}");
    }
    let m = d.metrics().await;
    let h = |k: &str| sample(&m, &format!("ephemera_lease_duration_seconds_{k}"));
    assert_eq!(h(r#"count{project="web"}"#), Some(3.0), "{m}");
    assert_eq!(h(r#"sum{project="web"}"#), Some(3600.0));
    assert_eq!(h(r#"bucket{project="web",le="900"}"#), Some(1.0));
    assert_eq!(h(r#"bucket{project="web",le="1800"}"#), Some(3.0));
    assert_eq!(h(r#"count{project="data"}"#), Some(0.0));
    assert_eq!(
        expiring(&m, "web"),
        Some(1.0),
        "released leases are not expiring"
    );
}
