//! A lease's timeline (`GET /api/v1/leases/{id}/timeline`, `ephemera lease show ID
//! --timeline`): a lease run through acquire, renew, a late heartbeat, resources seen by a pass
//! against moto, a finding and its release tells that story in order, through the API and the
//! real binary alike; and the route answers by the rules of `GET /leases/{id}`.

use chrono::TimeDelta;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::cli::run;
use crate::support::moto::{DEFAULT_ACCOUNT, Moto};
use crate::support::seed::seed;
use crate::support::{
    DATA, OPERATOR, TestDaemon, VIEWER, WEB, Workdir, config_text_with_aws, lease_tags,
    manual_clock,
};

/// The entries of `timeline` of `kind`.
fn of_kind<'a>(timeline: &'a Value, kind: &str) -> Vec<&'a Value> {
    timeline["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["kind"] == kind)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lease_tells_its_story_through_the_api_and_the_cli() {
    let moto = Moto::start().await;
    let work = Workdir::with_config(&config_text_with_aws(&format!(
        "regions = [\"us-east-1\"]\nendpoint_url = \"{}\"\nemulator = true\nmax_attempts = 1\n\
         [[aws.accounts]]\nid = \"{DEFAULT_ACCOUNT}\"\n",
        moto.endpoint()
    )));
    let clock = manual_clock();
    let d = TestDaemon::start_with_clock(&work, clock.clone()).await;
    let id = d
        .acquire_with(
            WEB,
            json!({"project": "web", "task": "preview 7", "owner": "alice@example.com",
                   "ttl": "2h", "heartbeat_interval": "10m", "regions": ["us-east-1"]}),
        )
        .await;
    clock.advance(TimeDelta::minutes(2));
    d.renew(WEB, &id, "3h").await;
    // A beat on time is no event; one 14 minutes after the last (deadline 10) revives it.
    clock.advance(TimeDelta::minutes(3));
    let beat = || async {
        let (s, l) = d
            .post(&format!("/api/v1/leases/{id}/heartbeat"), WEB, json!({}))
            .await;
        assert_eq!(s, StatusCode::OK, "{l}");
    };
    beat().await;
    clock.advance(TimeDelta::minutes(14));
    beat().await;

    // Two volumes under the lease, seen by a pass.
    seed(
        &moto.endpoint(),
        json!({"resources": [{"key": "v", "type": "ec2:volume",
                              "tags": lease_tags(&id, "web", "preview 7"), "count": 2}]}),
    )
    .await;
    clock.advance(TimeDelta::minutes(1));
    let run1 = d.pass().await;
    assert_eq!(run1["run"]["outcome"], "success", "{run1}");
    // Silent past its deadline and the grace: expired for good; the next pass flags them.
    clock.advance(TimeDelta::minutes(10) + TimeDelta::hours(1));
    let run2 = d.pass().await;
    assert_eq!(run2["run"]["outcome"], "success", "{run2}");
    clock.advance(TimeDelta::minutes(1));
    d.release(WEB, &id).await;

    let (s, tl) = d.get(&format!("/api/v1/leases/{id}/timeline"), WEB).await;
    assert_eq!(s, StatusCode::OK, "{tl}");
    assert_eq!(tl["lease_id"], id.as_str());
    assert_eq!(tl["state"], "released");
    // The story, in order (what each kind says is checked below). The first pass saw the
    // volumes inside the warning window (`expiring`); the second, expired, and marked them.
    let kinds: Vec<&str> = tl["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(
        kinds,
        [
            "acquired",
            "renewed",
            "heartbeat-gap",
            "resources-first-seen",
            "finding-opened",
            "expired",
            "resources-last-seen",
            "finding-updated",
            "finding-marked",
            "released",
        ],
        "{tl:#}"
    );
    let at = |kind: &str| of_kind(&tl, kind)[0]["at"].as_str().expect("at").to_owned();
    assert_eq!(at("acquired"), "2026-03-01T09:00:00.000Z");
    let renewed = of_kind(&tl, "renewed")[0];
    assert_eq!(renewed["at"], "2026-03-01T09:02:00.000Z");
    assert_eq!(renewed["from"], "2026-03-01T11:00:00.000Z");
    assert_eq!(renewed["to"], "2026-03-01T12:02:00.000Z");
    assert_eq!(renewed["principal"], "ci-web");
    // One gap only: the beat on time wrote nothing.
    let gaps = of_kind(&tl, "heartbeat-gap");
    assert_eq!(gaps.len(), 1, "{tl:#}");
    assert_eq!(gaps[0]["at"], "2026-03-01T09:19:00.000Z");
    assert_eq!(gaps[0]["gap_seconds"], 14 * 60);
    assert_eq!(gaps[0]["revived"], true);
    let first = of_kind(&tl, "resources-first-seen");
    assert_eq!(first.len(), 1, "two volumes are one entry: {tl:#}");
    assert_eq!(
        (
            &first[0]["resource_type"],
            &first[0]["region"],
            &first[0]["count"]
        ),
        (&json!("ec2:volume"), &json!("us-east-1"), &json!(2))
    );
    assert_eq!(first[0]["at"], "2026-03-01T09:20:00.000Z");
    let last = of_kind(&tl, "resources-last-seen");
    assert_eq!(
        (&last[0]["count"], &last[0]["live"]),
        (&json!(2), &json!(2))
    );
    assert_eq!(last[0]["at"], "2026-03-01T10:30:00.000Z");
    let expired = of_kind(&tl, "expired");
    assert_eq!(expired[0]["at"], "2026-03-01T09:29:00.000Z");
    assert_eq!(expired[0]["by_heartbeat"], true);
    let finding = |kind: &str| {
        let f = of_kind(&tl, kind)[0];
        (
            f["at"].as_str().unwrap_or_default().to_owned(),
            f["verdict"].as_str().unwrap_or_default().to_owned(),
            f["count"].as_u64().unwrap_or_default(),
        )
    };
    assert_eq!(
        finding("finding-opened"),
        ("2026-03-01T09:20:00.000Z".into(), "expiring".into(), 2)
    );
    assert_eq!(
        finding("finding-updated"),
        ("2026-03-01T10:30:00.000Z".into(), "expired".into(), 2)
    );
    assert_eq!(
        finding("finding-marked"),
        ("2026-03-01T10:30:00.000Z".into(), "expired".into(), 2)
    );
    assert!(
        of_kind(&tl, "finding-marked")[0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("deletion planned for 2026-03-01T11:30:00")),
        "{tl:#}"
    );
    let released = of_kind(&tl, "released");
    assert_eq!(released[0]["at"], "2026-03-01T10:31:00.000Z");
    assert_eq!(released[0]["principal"], "ci-web");

    // The real binary: the same body as JSON, and a table of it.
    let base = d.base();
    let env = [("EPHEMERA_ADDR", base.as_str()), ("EPHEMERA_TOKEN", WEB)];
    let o = run(
        &["lease", "show", &id, "--timeline", "--output", "json"],
        &env,
    )
    .await;
    assert!(o.status.success(), "{o:?}");
    let cli: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(cli, tl);
    let o = run(&["lease", "show", &id, "--timeline"], &env).await;
    assert!(o.status.success(), "{o:?}");
    let table = String::from_utf8_lossy(&o.stdout).into_owned();
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("TIME") && lines[0].contains("EVENT") && lines[0].contains("DETAIL"),
        "{table}"
    );
    assert_eq!(
        lines.len(),
        1 + tl["entries"].as_array().expect("entries").len()
    );
    let row = |kind: &str| {
        lines
            .iter()
            .find(|l| l.split_whitespace().nth(1) == Some(kind))
            .unwrap_or_else(|| panic!("no {kind} row in\n{table}"))
            .to_string()
    };
    assert!(
        row("resources-first-seen").contains("2 ec2:volume in us-east-1 first seen"),
        "{table}"
    );
    assert!(row("renewed").contains("2026-03-01 12:02:00Z"), "{table}");
    assert!(row("heartbeat-gap").contains("14m"), "{table}");
    // And the lease itself still shows as before without the flag.
    let o = run(&["lease", "show", &id, "--output", "json"], &env).await;
    let plain: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(plain["id"], id.as_str());
    d.stop().await;
}

/// The timeline answers as `GET /leases/{id}` does for who may see what; a malformed id is a
/// 400, an unknown one a 404; a beat late by more than half the interval is a gap, not revived.
#[tokio::test(flavor = "multi_thread")]
async fn the_timeline_route_answers_like_lease_show() {
    let work = Workdir::new();
    let clock = manual_clock();
    let d = TestDaemon::start_with_clock(&work, clock.clone()).await;
    let id = d
        .acquire_with(
            WEB,
            json!({"project": "web", "task": "t", "owner": "alice@example.com",
                   "heartbeat_interval": "10m"}),
        )
        .await;
    for m in [3, 7] {
        clock.advance(TimeDelta::minutes(m));
        let (s, l) = d
            .post(&format!("/api/v1/leases/{id}/heartbeat"), WEB, json!({}))
            .await;
        assert_eq!(s, StatusCode::OK, "{l}");
    }
    let path = format!("/api/v1/leases/{id}/timeline");
    for token in [WEB, OPERATOR, VIEWER] {
        let (s, tl) = d.get(&path, token).await;
        assert_eq!(s, StatusCode::OK, "{token}: {tl}");
        let gaps = of_kind(&tl, "heartbeat-gap");
        assert_eq!(gaps.len(), 1, "{tl:#}");
        assert_eq!(gaps[0]["gap_seconds"], 7 * 60);
        assert_eq!(gaps[0]["revived"], false);
        assert_eq!(gaps[0]["heartbeat_interval"], "10m");
    }
    // Another project's lessee may not see it, as with the lease.
    let (s, e) = d.get(&path, DATA).await;
    let (s2, _) = d.get(&format!("/api/v1/leases/{id}"), DATA).await;
    assert_eq!(
        (s, s2),
        (StatusCode::FORBIDDEN, StatusCode::FORBIDDEN),
        "{e}"
    );
    let (s, _) = d.call("GET", &path, None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, e) = d
        .get(
            "/api/v1/leases/0194e0a1-0000-7000-8000-000000000000/timeline",
            OPERATOR,
        )
        .await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("lease-not-found"))
    );
    let (s, e) = d.get("/api/v1/leases/not-a-lease/timeline", OPERATOR).await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid-lease-id"))
    );
    d.stop().await;
}
