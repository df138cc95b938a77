//! Credentials that die with their lease, end to end on moto's IAM with the real daemon: users,
//! their access keys and roles are listed with their tags every pass and judged by their
//! lease; once the lease is released and the grace is over, a key is deactivated, deleted
//! only after the deactivation grace, and its user after it; a role's sessions are revoked
//! as it is deleted. What must survive is checked in moto and in the proxy's request log: the
//! keys of a running lease and of a person, and a key someone switched back on.

use chrono::TimeDelta;
use reqwest::StatusCode;
use serde_json::Value;

use crate::support::moto::{DEFAULT_ACCOUNT, Moto};
use crate::support::proxy::FaultProxy;
use crate::support::{
    TestDaemon, VIEWER, WEB, Workdir, config_text_with_aws, lease_tags, manual_clock, sample,
};

const US: &str = "us-east-1";

const POLICY: &str = r#"
[[project]]
name = "web"
lessees = ["ci-web", "ci-web-2"]
default_ttl = "2h"
max_ttl = "24h"
grace = "1h"

[project.on]
released = { action = "reap", grace = "30m" }

[[project]]
name = "data"
lessees = ["*"]
default_ttl = "6h"
max_ttl = "3d"
grace = "12h"
"#;

fn iam_tags(lease: &str, task: &str) -> Vec<aws_sdk_iam::types::Tag> {
    lease_tags(lease, "web", task)
        .as_object()
        .expect("tags")
        .iter()
        .map(|(k, v)| {
            aws_sdk_iam::types::Tag::builder()
                .key(k)
                .value(v.as_str().unwrap_or_default())
                .build()
                .expect("tag")
        })
        .collect()
}

/// A user with `tags` and one access key; the key's id.
async fn user_with_key(
    iam: &aws_sdk_iam::Client,
    name: &str,
    tags: Vec<aws_sdk_iam::types::Tag>,
) -> String {
    iam.create_user()
        .user_name(name)
        .set_tags(Some(tags).filter(|t| !t.is_empty()))
        .send()
        .await
        .expect("CreateUser");
    iam.create_access_key()
        .user_name(name)
        .send()
        .await
        .expect("CreateAccessKey")
        .access_key()
        .expect("key")
        .access_key_id()
        .to_owned()
}

/// A user's keys in moto: id → active.
async fn keys(iam: &aws_sdk_iam::Client, user: &str) -> Option<Vec<(String, bool)>> {
    let out = iam.list_access_keys().user_name(user).send().await.ok()?;
    Some(
        out.access_key_metadata()
            .iter()
            .map(|k| {
                (
                    k.access_key_id().unwrap_or_default().to_owned(),
                    k.status() == Some(&aws_sdk_iam::types::StatusType::Active),
                )
            })
            .collect(),
    )
}

fn key_arn(user: &str, key: &str) -> String {
    format!("arn:aws:iam::{DEFAULT_ACCOUNT}:access-key/{user}/{key}")
}

fn user_arn(user: &str) -> String {
    format!("arn:aws:iam::{DEFAULT_ACCOUNT}:user/{user}")
}

async fn resource(d: &TestDaemon, arn: &str) -> Value {
    let (s, page) = d.get("/api/v1/resources?limit=1000", VIEWER).await;
    assert_eq!(s, StatusCode::OK, "{page}");
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|r| r["arn"] == arn)
        .cloned()
        .unwrap_or_else(|| panic!("{arn} not inventoried: {page:#}"))
}

async fn decisions(d: &TestDaemon, arn: &str) -> Vec<(String, String)> {
    crate::reap::decisions(&crate::reap::audit(d).await, arn)
}

/// The deletion plan, and its item for `arn`.
async fn plan_item(d: &TestDaemon, arn: &str) -> (Value, Value) {
    let (_, plan) = d.get("/api/v1/plan", VIEWER).await;
    let item = plan["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["arn"] == arn)
        .cloned()
        .unwrap_or_else(|| panic!("{plan:#}"));
    (plan, item)
}

fn stale(metrics: &str) -> f64 {
    sample(metrics, "ephemera_stale_credentials{project=\"web\"}").unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_released_leases_keys_are_deactivated_then_deleted_and_nothing_else() {
    let moto = Moto::start().await;
    let proxy = FaultProxy::start(&moto.endpoint()).await;
    let work = Workdir::with_config(&config_text_with_aws(&format!(
        "regions = [\"{US}\"]\nendpoint_url = \"{}\"\nemulator = true\nmax_attempts = 1\n\
         [[aws.accounts]]\nid = \"{DEFAULT_ACCOUNT}\"\narmed = true\n\
         [enforcement]\narmed = true\n\
         deletable_types = [\"iam:access-key\", \"iam:user\", \"iam:role\"]\n\
         max_project_share_percent = 100\n\
         deactivation_grace = \"6h\"\n\
         [discovery]\n\
         types = [\"iam:role\", \"iam:instance-profile\", \"iam:user\", \"iam:access-key\"]\n",
        proxy.endpoint()
    )));
    std::fs::write(work.path().join("rules/policy/projects.toml"), POLICY).expect("policy");
    let clock = manual_clock();
    let d = TestDaemon::start_with_clock(&work, clock.clone()).await;
    let doomed = d.acquire(WEB, "web", "preview").await;
    let running = d.acquire(WEB, "web", "nightly").await;
    d.renew(WEB, &running, "24h").await;
    let iam = aws_sdk_iam::Client::new(&moto.sdk_config(US).await);
    let gone_key = user_with_key(&iam, "ci-doomed", iam_tags(&doomed, "preview")).await;
    iam.put_user_policy()
        .user_name("ci-doomed")
        .policy_name("deploy")
        .policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#)
        .send()
        .await
        .expect("PutUserPolicy");
    let switched_on = user_with_key(&iam, "ci-doomed-2", iam_tags(&doomed, "preview")).await;
    let running_key = user_with_key(&iam, "ci-nightly", iam_tags(&running, "nightly")).await;
    let person_key = user_with_key(&iam, "alice", Vec::new()).await;
    // The user the daemon itself runs as (moto answers GetCallerIdentity with `user/moto`),
    // mistakenly tagged with the task's lease: refused at the last moment, key and user.
    let own_key = user_with_key(&iam, "moto", iam_tags(&doomed, "preview")).await;
    iam.create_role()
        .role_name("ci-doomed-role")
        .assume_role_policy_document("{}")
        .set_tags(Some(iam_tags(&doomed, "preview")))
        .send()
        .await
        .expect("CreateRole");
    let role_arn = format!("arn:aws:iam::{DEFAULT_ACCOUNT}:role/ci-doomed-role");

    // Pass 1, both leases running: every credential is found with its user's (or its own)
    // tags and judged leased; the person's, never tagged.
    let run = d.pass().await;
    assert_eq!(run["run"]["outcome"], "success", "{run}");
    // One walk of IAM: roles once, users once (for the users and their keys alike).
    let walks = proxy.bodies("GetAccountAuthorizationDetails");
    assert_eq!(walks.len(), 2, "{walks:?}");
    for filter in ["Filter.member.1=Role", "Filter.member.1=User"] {
        assert_eq!(
            walks.iter().filter(|b| b.contains(filter)).count(),
            1,
            "{walks:?}"
        );
    }
    for arn in [
        key_arn("ci-doomed", &gone_key),
        key_arn("ci-nightly", &running_key),
        user_arn("ci-doomed"),
        role_arn.clone(),
    ] {
        let r = resource(&d, &arn).await;
        assert_eq!(r["verdict"], "leased", "{r:#}");
    }
    let key = resource(&d, &key_arn("ci-doomed", &gone_key)).await;
    assert_eq!(key["resource_type"], "iam:access-key", "{key:#}");
    assert_eq!(key["lease_id"], doomed.as_str(), "{key:#}");
    assert_eq!(
        resource(&d, &key_arn("alice", &person_key)).await["verdict"],
        "untagged"
    );
    assert_eq!(stale(&d.metrics().await), 0.0);

    // The task ends. Pass 2 (no full sweep due: the credentials are listed every pass) sees
    // its credentials released and marks them; they are stale until they go.
    d.release(WEB, &doomed).await;
    clock.advance(TimeDelta::minutes(5));
    let run = d.pass().await;
    assert_eq!(run["run"]["outcome"], "success", "{run}");
    let sweep = &run["walks"][0]["sweep"];
    assert_eq!(sweep["credentials_only"], true, "{run:#}");
    assert_eq!(
        resource(&d, &key_arn("ci-doomed", &gone_key)).await["verdict"],
        "released"
    );
    // Three users, their three keys and the role.
    assert_eq!(stale(&d.metrics().await), 7.0);
    // The plan says the key's first step is a deactivation, and `ephemera plan` shows it.
    let (plan, item) = plan_item(&d, &key_arn("ci-doomed", &gone_key)).await;
    assert_eq!(
        (&item["status"], &item["step"]),
        (&Value::from("scheduled"), &Value::from("deactivate")),
        "{item:#}"
    );
    let view: ephemera::http::dto::PlanView = serde_json::from_value(plan).expect("a plan");
    let table = ephemera::cli::output::plan_table(&view.items, view.armed);
    assert!(
        table
            .lines()
            .any(|l| l.contains(&gone_key) && l.starts_with("scheduled (deactivate)")),
        "{table}"
    );

    // Pass 3, past the grace: the keys are deactivated (not deleted), the role deleted with
    // its sessions revoked first, the users wait for their keys.
    clock.advance(TimeDelta::minutes(31));
    d.pass().await;
    for user in ["ci-doomed", "ci-doomed-2"] {
        assert!(
            keys(&iam, user)
                .await
                .is_some_and(|k| k.len() == 1 && !k[0].1),
            "{user}'s key is there, inactive: {:?}",
            keys(&iam, user).await
        );
    }
    let d1 = decisions(&d, &key_arn("ci-doomed", &gone_key)).await;
    assert!(
        d1.iter()
            .any(|(dec, detail)| dec == "deactivated" && detail.contains("--status Active")),
        "{d1:?}"
    );
    assert!(
        iam.get_role()
            .role_name("ci-doomed-role")
            .send()
            .await
            .is_err()
    );
    let revoke = proxy.bodies("PutRolePolicy");
    assert_eq!(revoke.len(), 1, "{revoke:?}");
    assert!(revoke[0].contains("AWSRevokeOlderSessions"), "{revoke:?}");
    let users = decisions(&d, &user_arn("ci-doomed")).await;
    assert!(
        users
            .iter()
            .any(|(dec, detail)| dec == "skipped" && detail.contains(&gone_key)),
        "the user waits for its key: {users:?}"
    );

    // Someone still needed the second key: they switch it back on.
    iam.update_access_key()
        .user_name("ci-doomed-2")
        .access_key_id(&switched_on)
        .status(aws_sdk_iam::types::StatusType::Active)
        .send()
        .await
        .expect("UpdateAccessKey");

    // An hour on, within the deactivation grace: nothing more happens; the plan shows the
    // deletion at the end of the grace.
    clock.advance(TimeDelta::hours(1));
    d.pass().await;
    assert!(keys(&iam, "ci-doomed").await.is_some_and(|k| k.len() == 1));
    let (_, item) = plan_item(&d, &key_arn("ci-doomed", &gone_key)).await;
    assert_eq!(item["status"], "scheduled", "{item:#}");
    assert_eq!(item["step"], "delete", "{item:#}");
    assert!(item["deactivated_at"].is_string(), "{item:#}");
    assert_eq!(proxy.count("DeleteAccessKey"), 0);

    // Past it: the inactive key is deleted and its user after it, in the same pass; the key
    // switched back on is left alone, and so its user.
    clock.advance(TimeDelta::hours(5) + TimeDelta::minutes(1));
    d.pass().await;
    assert_eq!(keys(&iam, "ci-doomed").await, None, "the user is gone");
    assert!(iam.get_user().user_name("ci-doomed").send().await.is_err());
    assert_eq!(
        keys(&iam, "ci-doomed-2").await,
        Some(vec![(switched_on.clone(), true)])
    );
    let d2 = decisions(&d, &key_arn("ci-doomed-2", &switched_on)).await;
    assert!(
        d2.iter()
            .any(|(dec, detail)| dec == "skipped" && detail.contains("active again")),
        "{d2:?}"
    );
    assert_eq!(
        keys(&iam, "ci-nightly").await,
        Some(vec![(running_key.clone(), true)])
    );
    assert_eq!(
        keys(&iam, "alice").await,
        Some(vec![(person_key.clone(), true)])
    );
    assert_eq!(
        keys(&iam, "moto").await,
        Some(vec![(own_key.clone(), true)])
    );
    for arn in [key_arn("moto", &own_key), user_arn("moto")] {
        let own = decisions(&d, &arn).await;
        assert!(
            own.iter().any(|(dec, detail)| dec == "skipped"
                && detail.contains("the IAM user ephemera itself runs as")),
            "{arn}: {own:?}"
        );
    }
    // The request log: each key deactivated once, one deletion, of the deactivated key only.
    let deactivations = proxy.bodies("UpdateAccessKey");
    assert_eq!(deactivations.len(), 2, "{deactivations:?}");
    assert!(
        !deactivations.iter().any(|b| b.contains(own_key.as_str())),
        "{deactivations:?}"
    );
    for k in [&gone_key, &switched_on] {
        assert_eq!(
            deactivations
                .iter()
                .filter(|b| b.contains(k.as_str()))
                .count(),
            1,
            "{deactivations:?}"
        );
    }
    let deletions = proxy.bodies("DeleteAccessKey");
    assert_eq!(deletions.len(), 1, "{deletions:?}");
    assert!(deletions[0].contains(&gone_key), "{deletions:?}");
    let user_deletions = proxy.bodies("DeleteUser");
    assert_eq!(user_deletions.len(), 1, "{user_deletions:?}");
    assert!(
        user_deletions[0]
            .split('&')
            .any(|p| p == "UserName=ci-doomed"),
        "{user_deletions:?}"
    );

    // The next pass finds them gone: only the second user, the daemon's own and their keys
    // are stale now.
    d.pass().await;
    assert_eq!(stale(&d.metrics().await), 4.0);
    let (s, verify) = d.get("/api/v1/audit/verify", VIEWER).await;
    assert_eq!(s, StatusCode::OK, "{verify}");
    assert_eq!(verify["ok"], true, "{verify}");
}
