//! Approved images end to end: moto's own AMIs (owners and names as EC2 describes them) and an
//! AMI moto never registered (a deregistered one: known by its id alone), judged by the
//! `[[images]]` catalog in a pass; an armed project that reaps unapproved images terminates
//! those instances in moto and leaves the approved ones running.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::moto::Moto;
use crate::support::seed::seed;
use crate::support::{
    OPERATOR, TestDaemon, VIEWER, WEB, Workdir, config_text_with_aws, lease_tags, manual_clock,
};

const POLICY: &str = r#"
[[project]]
name = "web"
lessees = ["ci-web", "ci-web-2"]
default_ttl = "2h"
max_ttl = "24h"
grace = "1h"

[project.on]
unapproved-image = { action = "reap", grace = "30m" }

[[project]]
name = "data"
lessees = ["*"]
default_ttl = "6h"
max_ttl = "3d"
grace = "1h"
"#;

/// moto's stock AMIs: Amazon Linux (owner 137112412989), Ubuntu 16.04 and 14.04 (owner
/// 099720109477), Windows (801119661308); and an id moto never registered.
const AMAZON_LINUX: &str = "ami-760aaa0f";
const XENIAL: &str = "ami-785db401";
const TRUSTY: &str = "ami-1e749f67";
const WINDOWS: &str = "ami-12c6146b";
const GONE: &str = "ami-0000000000000aaaa";

const CATALOG: &str = r#"
[[images]]
ids = ["ami-0000000000000aaaa"]
reason = "the golden image, deregistered since: approved by id alone"

[[images]]
owners = ["137112412989"]
reason = "Amazon Linux from its publisher"

[[images]]
owners = ["099720109477"]
names = ["ubuntu/images/*-16.04-*"]
reason = "Ubuntu 16.04 from Canonical"

[[images]]
ids = ["ami-12c6146b"]
reason = "Windows until the end of 2025"
expires = "2026-01-01"
"#;

async fn findings(d: &TestDaemon) -> Vec<Value> {
    let (s, page) = d.get("/api/v1/findings?limit=100", VIEWER).await;
    assert_eq!(s, StatusCode::OK, "{page}");
    page["items"].as_array().expect("items").clone()
}

/// The state moto gives the instance `id`.
async fn state(ec2: &aws_sdk_ec2::Client, id: &str) -> String {
    let out = ec2
        .describe_instances()
        .instance_ids(id)
        .send()
        .await
        .expect("describe");
    out.reservations()[0].instances()[0]
        .state()
        .and_then(|s| s.name())
        .map(|n| n.as_str().to_owned())
        .expect("a state")
}

#[tokio::test(flavor = "multi_thread")]
async fn unapproved_images_open_findings_and_an_armed_project_reaps_them() {
    let moto = Moto::start().await;
    let work = Workdir::with_config(&config_text_with_aws(&format!(
        r#"regions = ["us-east-1"]
endpoint_url = "{}"
emulator = true
max_attempts = 1

[[aws.accounts]]
id = "123456789012"
armed = true

[enforcement]
armed = true
deletable_types = ["ec2:instance"]
max_deletions_per_pass = 20
max_project_share_percent = 100
"#,
        moto.endpoint()
    )));
    std::fs::write(work.path().join("rules/policy/projects.toml"), POLICY).expect("policy");
    std::fs::write(work.path().join("rules/policy/images.toml"), CATALOG).expect("catalog");
    let clock = manual_clock();
    let d = TestDaemon::start_with_clock(&work, clock.clone()).await;
    let lease = d.acquire(WEB, "web", "preview").await;
    d.renew(WEB, &lease, "24h").await;
    let tags = lease_tags(&lease, "web", "preview");
    let seeded = seed(
        &moto.endpoint(),
        json!({"resources": [
            {"key": "by-id", "type": "ec2:instance", "tags": tags, "image_id": GONE},
            {"key": "by-owner", "type": "ec2:instance", "tags": tags, "image_id": AMAZON_LINUX},
            {"key": "by-name", "type": "ec2:instance", "tags": tags, "image_id": XENIAL},
            {"key": "wrong-name", "type": "ec2:instance", "tags": tags, "image_id": TRUSTY},
            {"key": "expired-entry", "type": "ec2:instance", "tags": tags, "image_id": WINDOWS},
        ]}),
    )
    .await;
    let id = |key: &str| {
        let r = seeded
            .resources
            .iter()
            .find(|r| r.key == key)
            .expect("seeded");
        (r.arn.clone(), r.id.clone())
    };

    // Pass 1: the two unapproved instances open `unapproved-image`, marked for the project's
    // grace; the approved ones (by id while deregistered, by owner, by owner and name) do not.
    let run = d.pass().await;
    assert_eq!(run["run"]["outcome"], "success", "{run}");
    let open = findings(&d).await;
    let flagged: Vec<(&str, &str)> = open
        .iter()
        .map(|f| {
            (
                f["arn"].as_str().unwrap_or_default(),
                f["verdict"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    let mut want = vec![
        (id("wrong-name").0, "unapproved-image"),
        (id("expired-entry").0, "unapproved-image"),
    ];
    want.sort();
    let mut got: Vec<(String, &str)> = flagged.iter().map(|(a, v)| ((*a).to_owned(), *v)).collect();
    got.sort();
    assert_eq!(got, want, "{open:?}");
    for f in &open {
        assert_eq!(f["action"], "reap", "{f}");
        assert_eq!(f["project"], "web", "{f}");
        assert_eq!(f["lease_id"], lease.as_str(), "{f}");
    }
    let reason = open
        .iter()
        .find(|f| f["arn"] == id("wrong-name").0.as_str())
        .map(|f| f["reason"].clone());
    assert_eq!(
        reason,
        Some(json!(format!(
            "image {TRUSTY} is not in the approved catalog"
        )))
    );
    let m = d.metrics().await;
    let sample = |s: &str| crate::support::sample(&m, s);
    assert_eq!(
        sample(
            r#"ephemera_resources{project="web",region="us-east-1",resource_type="ec2:instance",verdict="unapproved-image"}"#
        ),
        Some(2.0),
        "{m}"
    );
    assert_eq!(
        sample(
            r#"ephemera_resources{project="web",region="us-east-1",resource_type="ec2:instance",verdict="leased"}"#
        ),
        Some(3.0),
        "{m}"
    );

    // Trusty is approved after the mark, with no pass since (its finding still says
    // unapproved-image): on-call's reap of it re-reads the image, judges it approved now, and
    // skips it.
    let approved =
        format!("{CATALOG}\n[[images]]\nids = [\"{TRUSTY}\"]\nreason = \"approved late\"\n");
    std::fs::write(work.path().join("rules/policy/images.toml"), approved).expect("catalog");
    let (s, report) = d.post("/api/v1/reload", OPERATOR, json!({})).await;
    assert_eq!(s, StatusCode::OK, "{report}");
    let job = crate::reap::reap_job(&d, &[&id("wrong-name").0]).await;
    let result = &job["results"][0];
    assert_eq!(result["outcome"], "skipped", "{job}");
    assert!(
        result["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("now leased")),
        "{job}"
    );
    let ec2 = aws_sdk_ec2::Client::new(&moto.sdk_config("us-east-1").await);
    assert_eq!(state(&ec2, &id("wrong-name").1).await, "running");

    // Pass 2, past the grace (the lease still runs): the unapproved instance is terminated in
    // moto, the approved ones (Trusty now too) keep running.
    clock.advance(chrono::TimeDelta::minutes(45));
    let run = d.pass().await;
    assert_eq!(run["run"]["summary"]["reap"]["deleted"], 1, "{run}");
    let s = state(&ec2, &id("expired-entry").1).await;
    assert!(
        s == "terminated" || s == "shutting-down",
        "expired-entry: {s}"
    );
    for key in ["by-id", "by-owner", "by-name", "wrong-name"] {
        assert_eq!(state(&ec2, &id(key).1).await, "running", "{key}");
    }
    let (s, _) = d.get("/api/v1/findings?limit=100", OPERATOR).await;
    assert_eq!(s, StatusCode::OK);
}
