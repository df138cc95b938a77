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
/// Instances on Amazon Linux seeded first: more than a page of moto's GetResources.
const FILLER: usize = 60;

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

# Not `ec2:image`, whose sweep is a DescribeImages of its own.
[discovery]
types = ["ec2:instance", "ec2:launch-template"]
creators = false

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
            // Pages of Amazon Linux first, so the other images turn up pages later.
            {"key": "filler", "type": "ec2:instance", "tags": tags, "image_id": AMAZON_LINUX, "count": FILLER},
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
        Some(3.0 + FILLER as f64),
        "{m}"
    );
    // The walk's first page with an instance described the images of every listed instance:
    // one DescribeImages for five AMIs spread over several pages.
    assert!(
        run["walks"][0]["pages"].as_u64().is_some_and(|p| p > 1),
        "{run}"
    );
    assert_eq!(
        sample(
            r#"ephemera_aws_requests_total{operation="DescribeImages",outcome="ok",service="ec2"}"#
        ),
        Some(1.0),
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

/// Every resource the API lists, by ARN.
async fn resources(d: &TestDaemon) -> std::collections::HashMap<String, Value> {
    let (s, page) = d.get("/api/v1/resources?limit=1000", VIEWER).await;
    assert_eq!(s, StatusCode::OK, "{page}");
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|r| (r["arn"].as_str().expect("arn").to_owned(), r.clone()))
        .collect()
}

/// Templates on an unapproved AMI: more than the 15 moto's DescribeLaunchTemplateVersions
/// answers without `MaxResults`, so a listing that did not ask for more would miss one.
const UNAPPROVED: usize = 16;

/// Launch templates and never-tagged instances, which in moto only the sweep finds (its tagging
/// API lists no launch template, and nothing lists a resource that never had a tag). A leased
/// template whose default version launches an unapproved AMI opens `unapproved-image` and,
/// armed, is deleted past the grace; the templates on approved AMIs stay. A never-tagged
/// instance on an unapproved AMI in an account dedicated to ephemeral work stays `untagged`
/// (that verdict's own rule decides its fate), its reason naming the image; one on an approved
/// AMI says only "never tagged". The sweep's images are described together: one DescribeImages.
#[tokio::test(flavor = "multi_thread")]
async fn launch_templates_and_never_tagged_instances_have_their_images_judged() {
    let moto = Moto::start().await;
    let work = Workdir::with_config(&config_text_with_aws(&format!(
        r#"regions = ["us-east-1"]
endpoint_url = "{}"
emulator = true
max_attempts = 1

[[aws.accounts]]
id = "123456789012"
armed = true
dedicated = true

[discovery]
types = ["ec2:instance", "ec2:launch-template"]
interval = "30m"
creators = false

[enforcement]
armed = true
deletable_types = ["ec2:instance", "ec2:launch-template"]
max_deletions_per_pass = 20
max_project_share_percent = 100
"#,
        moto.endpoint()
    )));
    let policy = format!("{POLICY}\n[defaults.on]\nuntagged = {{ action = \"report\" }}\n");
    std::fs::write(work.path().join("rules/policy/projects.toml"), policy).expect("policy");
    std::fs::write(work.path().join("rules/policy/images.toml"), CATALOG).expect("catalog");
    let clock = manual_clock();
    let d = TestDaemon::start_with_clock(&work, clock.clone()).await;
    let lease = d.acquire(WEB, "web", "preview").await;
    d.renew(WEB, &lease, "24h").await;
    let tags = lease_tags(&lease, "web", "preview");
    let seeded = seed(
        &moto.endpoint(),
        json!({"resources": [
            {"key": "lt-unapproved", "type": "ec2:launch-template", "tags": tags, "image_id": TRUSTY, "count": UNAPPROVED},
            {"key": "lt-by-name", "type": "ec2:launch-template", "tags": tags, "image_id": XENIAL},
            {"key": "lt-by-id", "type": "ec2:launch-template", "tags": tags, "image_id": GONE},
            {"key": "never-tagged-unapproved", "type": "ec2:instance", "image_id": WINDOWS},
            {"key": "never-tagged-approved", "type": "ec2:instance", "image_id": AMAZON_LINUX},
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
    let unapproved_templates: Vec<String> = seeded
        .resources
        .iter()
        .filter(|r| r.key == "lt-unapproved")
        .map(|r| r.arn.clone())
        .collect();
    assert_eq!(unapproved_templates.len(), UNAPPROVED);

    // Pass 1 sweeps: the templates on Trusty are `unapproved-image`, marked for the project's
    // grace; the never-tagged instances are `untagged`, the one on the expired Windows entry
    // saying so.
    let run = d.pass().await;
    assert_eq!(run["run"]["outcome"], "success", "{run}");
    let open: Vec<Value> = findings(&d).await;
    let finding = |key: &str| {
        open.iter()
            .find(|f| f["arn"] == id(key).0.as_str())
            .cloned()
            .unwrap_or(Value::Null)
    };
    for arn in &unapproved_templates {
        let lt = open
            .iter()
            .find(|f| f["arn"] == arn.as_str())
            .unwrap_or_else(|| panic!("{arn} not flagged: {open:?}"));
        assert_eq!(lt["verdict"], "unapproved-image", "{lt}");
        assert_eq!(lt["action"], "reap", "{lt}");
        assert_eq!(lt["project"], "web", "{lt}");
        assert_eq!(lt["source"], "sweep", "{lt}");
        assert_eq!(
            lt["reason"],
            format!("image {TRUSTY} is not in the approved catalog"),
            "{lt}"
        );
    }
    for key in ["lt-by-name", "lt-by-id"] {
        assert!(finding(key).is_null(), "{key}: {}", finding(key));
    }
    let unapproved = finding("never-tagged-unapproved");
    assert_eq!(unapproved["verdict"], "untagged", "{unapproved}");
    assert_eq!(unapproved["action"], "report", "{unapproved}");
    assert_eq!(
        unapproved["reason"],
        format!("never tagged; image {WINDOWS} is not approved either"),
        "{unapproved}"
    );
    let approved = finding("never-tagged-approved");
    assert_eq!(approved["verdict"], "untagged", "{approved}");
    assert_eq!(approved["reason"], "never tagged", "{approved}");
    assert_eq!(open.len(), UNAPPROVED + 2, "{open:?}");
    let seen = resources(&d).await;
    for key in ["lt-by-name", "lt-by-id"] {
        let r = &seen[&id(key).0];
        assert_eq!(
            (&r["verdict"], &r["source"]),
            (&json!("leased"), &json!("sweep")),
            "{r}"
        );
    }
    let m = d.metrics().await;
    let sample = |s: &str| crate::support::sample(&m, s);
    assert_eq!(
        sample(
            r#"ephemera_resources{project="web",region="us-east-1",resource_type="ec2:launch-template",verdict="unapproved-image"}"#
        ),
        Some(UNAPPROVED as f64),
        "{m}"
    );
    assert_eq!(
        sample(
            r#"ephemera_resources{project="web",region="us-east-1",resource_type="ec2:launch-template",verdict="leased"}"#
        ),
        Some(2.0),
        "{m}"
    );
    // Four distinct AMIs, one call; one listing of every template's default version.
    for op in ["DescribeImages", "DescribeLaunchTemplateVersions"] {
        assert_eq!(
            sample(&format!(
                r#"ephemera_aws_requests_total{{operation="{op}",outcome="ok",service="ec2"}}"#
            )),
            Some(1.0),
            "{op}: {m}"
        );
    }

    // Pass 2, past the grace (the lease still runs; the sweep is due again): the templates on
    // Trusty are deleted in moto; the other templates and both never-tagged instances stay.
    clock.advance(chrono::TimeDelta::minutes(45));
    let run = d.pass().await;
    assert_eq!(run["run"]["outcome"], "success", "{run}");
    assert_eq!(
        run["run"]["summary"]["reap"]["deleted"], UNAPPROVED,
        "{run}"
    );
    for arn in &unapproved_templates {
        assert!(
            !crate::reap::exists(&moto, "123456789012", arn).await,
            "{arn} outlived its grace"
        );
    }
    for key in ["lt-by-name", "lt-by-id"] {
        assert!(
            crate::reap::exists(&moto, "123456789012", &id(key).0).await,
            "{key} was deleted"
        );
    }
    let ec2 = aws_sdk_ec2::Client::new(&moto.sdk_config("us-east-1").await);
    for key in ["never-tagged-unapproved", "never-tagged-approved"] {
        assert_eq!(state(&ec2, &id(key).1).await, "running", "{key}");
    }
}
