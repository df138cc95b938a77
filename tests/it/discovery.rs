//! Never-tagged discovery against moto: the sweep finds what the tagging API never lists, a
//! never-tagged resource is reaped only in an account dedicated to ephemeral work, a failed
//! sweep holds back its type, and a pass between sweeps loses nothing.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{TimeDelta, Utc};
use ephemera::clock::ManualClock;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::reap::exists;
use crate::support::moto::Moto;
use crate::support::proxy::{Fault, FaultProxy};
use crate::support::seed::{arns_by_key, seed};
use crate::support::smtp::Smtp;
use crate::support::{
    OPERATOR, TestDaemon, VIEWER, WEB, Workdir, config_text_with_aws, eventually, sample,
};

/// Reached with the daemon's own credentials; marked dedicated to ephemeral work.
const DEDICATED: &str = "123456789012";
/// Reached through a role; shared with long-lived infrastructure (the default).
const SHARED: &str = "444444444444";

/// Untagged resources are reaped after an hour, whatever account they are in.
const RULES: &str = r#"
[defaults]
grace = "1h"
[defaults.on]
untagged = { action = "reap", grace = "1h" }

[[project]]
name = "web"
lessees = ["ci-web"]
default_ttl = "10h"
max_ttl = "24h"
grace = "1h"

[[project]]
name = "data"
lessees = ["ci-data"]
default_ttl = "1h"
max_ttl = "1h"
grace = "1h"
"#;

/// Who made them, as the recorded CloudTrail answer says (moto has no LookupEvents): one
/// RunInstances by a CI runner's role, one later CreateTags by someone else.
const CREATOR: &str = "arn:aws:sts::123456789012:assumed-role/ci-runner/job-42";
const LOOKUP_EVENTS: &str = r#"{"Events": [
  {"EventId": "e2", "EventName": "CreateTags", "EventTime": 1764900100, "Username": "ops",
   "CloudTrailEvent": "{\"userIdentity\": {\"arn\": \"arn:aws:iam::123456789012:user/ops\"}}"},
  {"EventId": "e1", "EventName": "RunInstances", "EventTime": 1764900000, "Username": "job-42",
   "CloudTrailEvent": "{\"userIdentity\": {\"type\": \"AssumedRole\", \"arn\": \"arn:aws:sts::123456789012:assumed-role/ci-runner/job-42\"}}"}
]}"#;

fn workdir(endpoint: &str, smtp: &Smtp) -> Workdir {
    let work = Workdir::with_config(&config_text_with_aws(&format!(
        r#"regions = ["us-east-1"]
endpoint_url = "{endpoint}"
emulator = true
max_attempts = 1

[[aws.accounts]]
id = "{DEDICATED}"
dedicated = true

[[aws.accounts]]
id = "{SHARED}"
assume_role_arn = "arn:aws:iam::{SHARED}:role/ephemera"
# Armed, so that only the never-tagged guard holds its resources.
armed = true

[discovery]
interval = "1h"

[enforcement]
armed = true
deletable_types = ["ec2:instance", "ec2:volume", "sqs:queue", "s3:bucket"]
max_deletions_per_pass = 50
max_project_share_percent = 100

{smtp}
"#,
        smtp = smtp.section("oncall = [\"oncall@example.com\"]\nretry_backoff = \"1s\"")
    )));
    std::fs::write(work.path().join("rules/policy/projects.toml"), RULES).expect("rules");
    work
}

async fn by_arn(d: &TestDaemon, path: &str) -> HashMap<String, Value> {
    let (s, page) = d.get(path, VIEWER).await;
    assert_eq!(s, StatusCode::OK, "{page}");
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| (i["arn"].as_str().expect("arn").to_owned(), i.clone()))
        .collect()
}

/// The walk of `account`'s sweep in a pass's report.
fn sweep_of<'a>(run: &'a Value, account: &str) -> &'a Value {
    let walk = run["walks"]
        .as_array()
        .expect("walks")
        .iter()
        .find(|w| w["account"] == account)
        .unwrap_or_else(|| panic!("no walk of {account}: {run}"));
    &walk["sweep"]
}

#[tokio::test(flavor = "multi_thread")]
async fn never_tagged_resources_are_found_and_reaped_only_in_dedicated_accounts() {
    let moto = Moto::start().await;
    let proxy = FaultProxy::start(&moto.endpoint()).await;
    proxy.set_fault("LookupEvents", Fault::Respond(200, LOOKUP_EVENTS), None);
    let smtp = Smtp::plain();
    let work = workdir(&proxy.endpoint(), &smtp);
    // The wall clock: moto stamps creation times with it, and the grace counts from them.
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let d = TestDaemon::start_with_clock(&work, clock.clone()).await;
    let lease = d.acquire(WEB, "web", "keep").await;

    let mut spec = vec![
        json!({"key": "leased", "account": DEDICATED, "type": "ec2:volume",
                               "tags": crate::support::lease_tags(&lease, "web", "ci 1")}),
    ];
    for account in [DEDICATED, SHARED] {
        for t in ["ec2:volume", "ec2:instance", "sqs:queue", "s3:bucket"] {
            spec.push(json!({"key": format!("{account}-{t}"), "account": account, "type": t}));
        }
    }
    let seeded = arns_by_key(&seed(&moto.endpoint(), json!({ "resources": spec })).await);
    let arn = |account: &str, t: &str| seeded[&format!("{account}-{t}")][0].clone();
    let never_tagged: Vec<(String, String)> = [DEDICATED, SHARED]
        .iter()
        .flat_map(|a| {
            ["ec2:volume", "ec2:instance", "sqs:queue", "s3:bucket"]
                .map(|t| (a.to_string(), arn(a, t)))
        })
        .collect();

    // ---- first pass: the sweep finds them all, the tagging walk none of them -----------------
    clock.advance(TimeDelta::minutes(1));
    let first = d.pass().await;
    assert_eq!(first["run"]["outcome"], "success", "{first}");
    for account in [DEDICATED, SHARED] {
        let sweep = sweep_of(&first, account);
        let types = sweep["types"].as_array().expect("every type swept");
        let every = <ephemera::model::ResourceType as strum::VariantArray>::VARIANTS.len();
        assert_eq!(types.len(), every, "{sweep}");
        assert!(types.iter().all(|t| t["outcome"] == "complete"), "{sweep}");
    }
    let resources = by_arn(&d, "/api/v1/resources?limit=1000").await;
    for (account, a) in &never_tagged {
        let r = &resources
            .get(a)
            .unwrap_or_else(|| panic!("{a} not found: {resources:?}"));
        assert_eq!(r["source"], "sweep", "{r}");
        assert_eq!(r["verdict"], "untagged", "{r}");
        assert_eq!(r["reason"], "never tagged", "{r}");
        assert_eq!(r["account"], account.as_str(), "{r}");
        if !a.contains(":sqs:") {
            let created: chrono::DateTime<Utc> =
                serde_json::from_value(r["created_at"].clone()).expect("a creation time");
            assert!((Utc::now() - created).num_minutes().abs() < 10, "{r}");
        }
    }
    let leased = &resources[&seeded["leased"][0]];
    assert_eq!(leased["source"], "tagging", "{leased}");
    assert_eq!(leased["verdict"], "leased", "{leased}");
    let findings = by_arn(&d, "/api/v1/findings?limit=1000").await;
    for (_, a) in &never_tagged {
        assert_eq!(findings[a]["source"], "sweep", "{}", findings[a]);
        assert_eq!(findings[a]["reason"], "never tagged");
        assert_eq!(findings[a]["creator"], CREATOR, "{}", findings[a]);
    }
    // Asked once per resource: the untagged and unknown-lease findings, nothing else.
    let lookups = proxy.count("LookupEvents");
    assert!(lookups >= never_tagged.len(), "{lookups}");
    assert!(
        resources
            .values()
            .all(|r| r["verdict"] == "leased" || r["creator"] == CREATOR),
        "{resources:?}"
    );
    // The on-call summary names who made them.
    let line = format!(
        "{} (untagged, never tagged): created by {CREATOR}",
        never_tagged[0].1
    );
    eventually(
        "the on-call summary",
        std::time::Duration::from_secs(20),
        || {
            let (smtp, line) = (&smtp, &line);
            async move {
                smtp.messages()
                    .iter()
                    .any(|m| m.kind() == "oncall-summary" && m.text().contains(line.as_str()))
            }
        },
    )
    .await;
    let m = d.metrics().await;
    assert_eq!(
        sample(
            &m,
            r#"ephemera_sweeps_total{outcome="complete",resource_type="ec2:volume"}"#
        ),
        Some(2.0)
    );
    assert!(
        sample(
            &m,
            r#"ephemera_never_tagged_found_total{resource_type="sqs:queue"}"#
        )
        .is_some_and(|n| n >= 2.0)
    );

    // ---- a pass inside the interval does not sweep, and loses nothing the sweep found --------
    clock.advance(TimeDelta::minutes(5));
    let between = d.pass().await;
    assert_eq!(
        proxy.count("LookupEvents"),
        lookups,
        "a creator is asked once"
    );
    // Only the credentials are listed, as every pass lists them.
    let listed = sweep_of(&between, DEDICATED);
    assert_eq!(listed["credentials_only"], true, "{between}");
    let types: Vec<&str> = listed["types"]
        .as_array()
        .expect("types")
        .iter()
        .filter_map(|t| t["resource_type"].as_str())
        .collect();
    assert_eq!(
        types,
        [
            "iam:role",
            "iam:instance-profile",
            "iam:user",
            "iam:access-key"
        ],
        "{between}"
    );
    let resources = by_arn(&d, "/api/v1/resources?limit=1000").await;
    for (_, a) in &never_tagged {
        assert!(
            resources.contains_key(a),
            "{a} marked gone by a pass that did not sweep"
        );
    }

    // ---- past the grace, with the volume sweep throttled: that type waits ---------------------
    clock.advance(TimeDelta::hours(2));
    proxy.set_fault("DescribeVolumes", Fault::Throttle, None);
    let throttled = d.pass().await;
    let sweep = sweep_of(&throttled, DEDICATED);
    let volumes = sweep["types"]
        .as_array()
        .expect("types")
        .iter()
        .find(|t| t["resource_type"] == "ec2:volume")
        .expect("volumes swept");
    assert_eq!(volumes["outcome"], "incomplete", "{sweep}");
    assert!(
        volumes["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("DescribeVolumes")),
        "{volumes}"
    );
    let (s, plan) = d.get("/api/v1/plan", VIEWER).await;
    assert_eq!(s, StatusCode::OK, "{plan}");
    let items: HashMap<String, Value> = plan["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| (i["arn"].as_str().expect("arn").to_owned(), i.clone()))
        .collect();
    for t in ["ec2:volume", "ec2:instance", "sqs:queue", "s3:bucket"] {
        let held = &items[&arn(SHARED, t)];
        assert_eq!(held["source"], "sweep", "{held}");
        assert_eq!(held["tagless"], true, "{held}");
        assert_eq!(held["creator"], CREATOR, "{held}");
    }
    assert!(exists(&moto, DEDICATED, &arn(DEDICATED, "ec2:volume")).await);
    for t in ["ec2:instance", "sqs:queue", "s3:bucket"] {
        assert!(
            !exists(&moto, DEDICATED, &arn(DEDICATED, t)).await,
            "{t} in the dedicated account outlived its grace"
        );
    }
    let audit = d.get("/api/v1/audit?limit=1000", VIEWER).await.1;
    let held_volume = audit["items"]
        .as_array()
        .expect("items")
        .iter()
        .any(|r| r["arn"] == arn(DEDICATED, "ec2:volume"));
    assert!(!held_volume, "a volume was decided on without its sweep");

    // ---- the sweep recovers: the volume goes; the shared account keeps everything ------------
    proxy.clear_faults();
    clock.advance(TimeDelta::minutes(1));
    let recovered = d.pass().await;
    assert!(
        sweep_of(&recovered, DEDICATED)["types"]
            .as_array()
            .expect("types")
            .iter()
            .all(|t| t["outcome"] == "complete"),
        "{recovered}"
    );
    assert!(!exists(&moto, DEDICATED, &arn(DEDICATED, "ec2:volume")).await);
    for t in ["ec2:volume", "ec2:instance", "sqs:queue", "s3:bucket"] {
        assert!(
            exists(&moto, SHARED, &arn(SHARED, t)).await,
            "{t} was deleted in the shared account"
        );
    }
    assert!(exists(&moto, DEDICATED, &seeded["leased"][0]).await);
    // The proxy saw deletes of exactly the dedicated account's four, and nothing else.
    let deletes: Vec<String> = proxy
        .requests()
        .into_iter()
        .filter(|r| {
            ["Delete", "Terminate"]
                .iter()
                .any(|v| r.operation.starts_with(v))
                && r.operation != "DeleteObjects"
        })
        .map(|r| r.operation)
        .collect();
    let mut ops = deletes.clone();
    ops.sort();
    assert_eq!(
        ops,
        [
            "DeleteBucket",
            "DeleteQueue",
            "DeleteVolume",
            "TerminateInstances"
        ],
        "{deletes:?}"
    );
    // The plan says why the shared account's are held.
    let (_, plan) = d.get("/api/v1/plan", OPERATOR).await;
    let held: Vec<&Value> = plan["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|i| i["account"] == SHARED)
        .collect();
    assert_eq!(held.len(), 4, "{plan}");
    for i in held {
        assert_eq!(i["status"], "held", "{i}");
        let why = i["held_reason"].as_str().expect("why");
        assert!(
            why.contains("not dedicated to ephemeral work") && why.contains(SHARED),
            "{why}"
        );
    }
    d.stop().await;
}

/// Accounts from the emulator's Organizations: the ones under a dedicated OU may lose their
/// never-tagged resources, the others keep them; a suspended and an excluded account are not
/// audited; an account created between two passes is audited from the second.
#[tokio::test(flavor = "multi_thread")]
async fn every_account_of_the_organization_is_audited_from_its_first_pass() {
    let moto = Moto::start().await;
    let proxy = FaultProxy::start(&moto.endpoint()).await;
    let sdk = proxy.sdk_config("us-east-1", 1).await;
    let orgs = aws_sdk_organizations::Client::new(&sdk);
    orgs.create_organization()
        .feature_set(aws_sdk_organizations::types::OrganizationFeatureSet::All)
        .send()
        .await
        .expect("organization");
    let root = orgs.list_roots().send().await.expect("roots").roots()[0]
        .id()
        .expect("root id")
        .to_owned();
    let sandbox = orgs
        .create_organizational_unit()
        .parent_id(&root)
        .name("sandbox")
        .send()
        .await
        .expect("ou")
        .organizational_unit()
        .and_then(|u| u.id())
        .expect("ou id")
        .to_owned();
    let create = |name: &'static str| {
        let orgs = orgs.clone();
        async move {
            orgs.create_account()
                .account_name(name)
                .email(format!("{name}@example.com"))
                .send()
                .await
                .expect("account")
                .create_account_status()
                .and_then(|s| s.account_id())
                .expect("account id")
                .to_owned()
        }
    };
    let ci = create("ci").await;
    orgs.move_account()
        .account_id(&ci)
        .source_parent_id(&root)
        .destination_parent_id(&sandbox)
        .send()
        .await
        .expect("move");
    let shared = create("shared").await;
    let closed = create("closed").await;
    orgs.close_account()
        .account_id(&closed)
        .send()
        .await
        .expect("close");
    let excluded = create("excluded").await;

    let work = Workdir::with_config(&config_text_with_aws(&format!(
        r#"regions = ["us-east-1"]
endpoint_url = "{endpoint}"
emulator = true
max_attempts = 1
assume_role_arn_template = "arn:aws:iam::{{account_id}}:role/ephemera"

[aws.organization]
exclude = ["{excluded}"]
dedicated_ous = ["{sandbox}"]

# Every account armed (shared ones still keep what was never tagged); the sandbox OU's walk
# two regions.
[[aws.organization.units]]
id = "{root}"
armed = true

[[aws.organization.units]]
id = "{sandbox}"
regions = ["us-east-1", "eu-west-1"]

[discovery]
types = ["sqs:queue", "ec2:volume", "ec2:instance", "s3:bucket", "iam:role"]
interval = "1h"

[enforcement]
armed = true
deletable_types = ["ec2:volume", "sqs:queue", "ec2:instance", "s3:bucket"]
max_deletions_per_pass = 50
max_project_share_percent = 100
"#,
        endpoint = proxy.endpoint()
    )));
    std::fs::write(work.path().join("rules/policy/projects.toml"), RULES).expect("rules");
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let d = TestDaemon::start_with_clock(&work, clock.clone()).await;

    let untagged = |account: &str, key: &str| {
        [
            json!({"key": format!("{key}-queue"), "account": account, "type": "sqs:queue"}),
            json!({"key": format!("{key}-volume"), "account": account, "type": "ec2:volume"}),
            json!({"key": format!("{key}-instance"), "account": account, "type": "ec2:instance"}),
            json!({"key": format!("{key}-bucket"), "account": account, "type": "s3:bucket"}),
        ]
    };
    let spec: Vec<Value> = [
        untagged(&ci, "ci"),
        untagged(&shared, "shared"),
        untagged(&excluded, "excluded"),
    ]
    .into_iter()
    .flatten()
    .collect();
    let seeded = arns_by_key(&seed(&moto.endpoint(), json!({ "resources": spec })).await);
    let one = |k: &str| seeded[k][0].clone();

    clock.advance(TimeDelta::minutes(1));
    let first = d.pass().await;
    let walked = |run: &Value| -> Vec<String> {
        let mut v: Vec<String> = run["walks"]
            .as_array()
            .expect("walks")
            .iter()
            .map(|w| w["account"].as_str().expect("account").to_owned())
            .collect();
        v.sort();
        v
    };
    let mut want = vec![DEDICATED.to_owned(), ci.clone(), ci.clone(), shared.clone()];
    want.sort();
    assert_eq!(
        walked(&first),
        want,
        "the management account, ci (in two regions, from its OU's settings) and shared: {first}"
    );
    assert_eq!(first["run"]["outcome"], "success", "{first}");
    // IAM is global: swept in ci's first region only, so each role is one resource.
    for w in first["walks"]
        .as_array()
        .expect("walks")
        .iter()
        .filter(|w| w["account"] == ci.as_str())
    {
        let types: Vec<&str> = w["sweep"]["types"]
            .as_array()
            .expect("swept types")
            .iter()
            .filter_map(|t| t["resource_type"].as_str())
            .collect();
        assert_eq!(
            types.contains(&"iam:role"),
            w["region"] == "us-east-1",
            "{w}"
        );
        assert!(types.contains(&"sqs:queue"), "{w}");
    }
    let resources = by_arn(&d, "/api/v1/resources?limit=1000").await;
    for k in ["ci", "shared"]
        .iter()
        .flat_map(|a| ["queue", "volume", "instance", "bucket"].map(move |t| format!("{a}-{t}")))
    {
        assert_eq!(resources[&one(&k)]["reason"], "never tagged", "{k}");
    }
    assert!(
        !resources.contains_key(&one("excluded-queue")),
        "excluded is not audited"
    );
    assert_eq!(
        sample(&d.metrics().await, "ephemera_audited_accounts"),
        Some(3.0)
    );

    // A new account between two passes is audited from the next one.
    let newcomer = create("newcomer").await;
    seed(
        &moto.endpoint(),
        json!({"resources": [{"key": "new-queue", "account": newcomer, "type": "sqs:queue"}]}),
    )
    .await;
    clock.advance(TimeDelta::hours(2));
    let second = d.pass().await;
    assert!(walked(&second).contains(&newcomer), "{second}");
    let resources = by_arn(&d, "/api/v1/resources?limit=1000").await;
    let new_queue = resources
        .values()
        .find(|r| r["account"] == newcomer.as_str() && r["resource_type"] == "sqs:queue")
        .unwrap_or_else(|| panic!("the newcomer's queue: {resources:?}"));
    assert_eq!(new_queue["reason"], "never tagged");

    // Past the grace: the sandbox OU's account is dedicated, the others are shared.
    for t in ["queue", "volume", "instance", "bucket"] {
        let (ci_one, shared_one) = (one(&format!("ci-{t}")), one(&format!("shared-{t}")));
        assert!(
            !exists(&moto, &ci, &ci_one).await,
            "{t} kept in the dedicated OU"
        );
        assert!(
            exists(&moto, &shared, &shared_one).await,
            "{t} deleted in a shared account"
        );
    }
    assert!(exists(&moto, &excluded, &one("excluded-queue")).await);
    let (_, plan) = d.get("/api/v1/plan", VIEWER).await;
    let held: Vec<&Value> = plan["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|i| i["account"] == shared.as_str() && i["resource_type"] != "iam:role")
        .collect();
    assert_eq!(held.len(), 4, "{plan}");
    assert!(held.iter().all(|i| i["status"] == "held"), "{plan}");
    // The organization was read through the proxy, once per pass at least.
    assert!(proxy.count("ListAccounts") >= 2);
    assert!(proxy.count("ListAccountsForParent") >= 2);
    d.stop().await;
}

/// Where an aggregator index exists, one `tag:none` search stands in for the per-service list
/// calls (moto has no Resource Explorer: its answers are recorded, served by the proxy): what it
/// names is found, never tagged, and reaped in a dedicated account like a sweep's; a search over
/// its 1,000-result limit leaves its types incomplete.
#[tokio::test(flavor = "multi_thread")]
async fn resource_explorer_stands_in_for_the_sweep() {
    let moto = Moto::start().await;
    let proxy = FaultProxy::start(&moto.endpoint()).await;
    let smtp = Smtp::stopped(crate::support::smtp::Tls::None, None);
    let text = std::fs::read_to_string(workdir(&proxy.endpoint(), &smtp).config_path())
        .expect("config")
        .replace(
            "[discovery]\ninterval = \"1h\"",
            &format!(
                "[discovery]\ninterval = \"1h\"\ntypes = [\"ec2:volume\", \"sqs:queue\"]\n\n\
                 [discovery.resource_explorer]\naccount = \"{DEDICATED}\"\nregion = \"us-east-1\"\n\
                 accounts = [\"{DEDICATED}\"]"
            ),
        );
    assert!(text.contains("resource_explorer"), "{text}");
    let work = Workdir::with_config(&text);
    std::fs::write(work.path().join("rules/policy/projects.toml"), RULES).expect("rules");
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let d = TestDaemon::start_with_clock(&work, clock.clone()).await;
    let seeded = arns_by_key(
        &seed(
            &moto.endpoint(),
            json!({"resources": [
                {"key": "volume", "account": DEDICATED, "type": "ec2:volume"},
                {"key": "queue", "account": DEDICATED, "type": "sqs:queue"},
            ]}),
        )
        .await,
    );
    let (volume, queue) = (seeded["volume"][0].clone(), seeded["queue"][0].clone());
    let answer = |complete: bool, arns: &[&str]| -> &'static str {
        let resources: Vec<Value> = arns
            .iter()
            .map(|a| json!({"Arn": a, "OwningAccountId": DEDICATED, "Region": "us-east-1"}))
            .collect();
        let body = json!({"Resources": resources,
                          "Count": {"Complete": complete, "TotalResources": arns.len()}});
        Box::leak(body.to_string().into_boxed_str())
    };
    proxy.set_fault(
        "Search",
        Fault::Respond(
            200,
            answer(
                true,
                &[
                    &volume,
                    &queue,
                    // Another account's, which the index also holds: not this walk's.
                    "arn:aws:ec2:us-east-1:999999999999:volume/vol-0elsewhere",
                ],
            ),
        ),
        None,
    );

    clock.advance(TimeDelta::minutes(1));
    let first = d.pass().await;
    assert_eq!(first["run"]["outcome"], "success", "{first}");
    let resources = by_arn(&d, "/api/v1/resources?limit=1000").await;
    for a in [&volume, &queue] {
        assert_eq!(
            resources[a]["source"], "resource-explorer",
            "{}",
            resources[a]
        );
        assert_eq!(resources[a]["reason"], "never tagged", "{}", resources[a]);
    }
    assert!(
        !resources.keys().any(|a| a.contains("vol-0elsewhere")),
        "{resources:?}"
    );
    // The search stood in for the list calls of the account it covers; the other swept.
    assert!(proxy.count("Search") >= 1);
    let sweeps_of_shared = sweep_of(&first, SHARED)["types"]
        .as_array()
        .expect("the shared account is swept")
        .len();
    assert_eq!(sweeps_of_shared, 2);
    assert_eq!(
        proxy.count("ListQueues"),
        1,
        "one ListQueues, the shared account's"
    );

    // Over the limit: both types incomplete, nothing of them decided on this pass.
    proxy.set_fault(
        "Search",
        Fault::Respond(200, answer(false, &[&volume])),
        None,
    );
    clock.advance(TimeDelta::hours(2));
    let over = d.pass().await;
    let types = sweep_of(&over, DEDICATED)["types"].clone();
    for t in types.as_array().expect("types") {
        assert_eq!(t["outcome"], "incomplete", "{types}");
        assert!(
            t["reason"]
                .as_str()
                .is_some_and(|r| r.contains("more than 1,000")),
            "{types}"
        );
    }
    assert!(
        exists(&moto, DEDICATED, &volume).await,
        "deleted on an incomplete search"
    );
    assert!(
        exists(&moto, DEDICATED, &queue).await,
        "deleted on an incomplete search"
    );

    // Complete again: the dedicated account's never-tagged resources go, found by the search.
    proxy.set_fault(
        "Search",
        Fault::Respond(200, answer(true, &[&volume, &queue])),
        None,
    );
    clock.advance(TimeDelta::minutes(1));
    let last = d.pass().await;
    assert_eq!(last["run"]["outcome"], "success", "{last}");
    assert!(!exists(&moto, DEDICATED, &volume).await);
    assert!(!exists(&moto, DEDICATED, &queue).await);
    d.stop().await;
}
