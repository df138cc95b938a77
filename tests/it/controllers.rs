//! Controllers through the daemon's own passes: an Auto Scaling group whose lease expired goes
//! whole — one DeleteAutoScalingGroup, never a TerminateInstances of its instances — and each
//! instance is confirmed gone by the next walk; a group one of whose instances now carries a
//! live lease is held whole, nothing of it touched. What survived and what went is read from
//! moto's own state, what was called from the proxy's request log.
//!
//! moto 5.2.5 tags an Auto Scaling group's instances with `aws:autoscaling:groupName` (as AWS
//! does) and terminates them on a forced delete.

use chrono::TimeDelta;
use reqwest::StatusCode;
use serde_json::Value;

use crate::reap::{POLICY, exists, reap_job};
use crate::support::moto::{DEFAULT_ACCOUNT, Moto};
use crate::support::proxy::FaultProxy;
use crate::support::{TestDaemon, VIEWER, WEB, Workdir, config_text_with_aws, manual_clock};

const US: &str = "us-east-1";
const AMI: &str = "ami-12c6146b";

/// Makes a group of `size` instances named `name`, tagged with `tags` (propagated to its
/// instances); its ARN and its instances' ARNs.
async fn group(
    asg: &aws_sdk_autoscaling::Client,
    ec2: &aws_sdk_ec2::Client,
    name: &str,
    size: i32,
    tags: &[(String, String)],
) -> (String, Vec<String>) {
    asg.create_launch_configuration()
        .launch_configuration_name(format!("{name}-lc"))
        .image_id(AMI)
        .instance_type("t2.micro")
        .send()
        .await
        .expect("CreateLaunchConfiguration");
    let tags: Vec<_> = tags
        .iter()
        .map(|(k, v)| {
            aws_sdk_autoscaling::types::Tag::builder()
                .resource_id(name)
                .resource_type("auto-scaling-group")
                .key(k)
                .value(v)
                .propagate_at_launch(true)
                .build()
        })
        .collect();
    asg.create_auto_scaling_group()
        .auto_scaling_group_name(name)
        .launch_configuration_name(format!("{name}-lc"))
        .min_size(size)
        .max_size(size)
        .desired_capacity(size)
        .availability_zones(format!("{US}a"))
        .set_tags(Some(tags))
        .send()
        .await
        .expect("CreateAutoScalingGroup");
    let out = asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(name)
        .send()
        .await
        .expect("DescribeAutoScalingGroups");
    let g = &out.auto_scaling_groups()[0];
    let ids: Vec<String> = g
        .instances()
        .iter()
        .filter_map(|i| i.instance_id().map(str::to_owned))
        .collect();
    assert_eq!(ids.len(), size as usize, "moto launched the group");
    // Each instance carries the group's name, as AWS tags it.
    let described = ec2
        .describe_instances()
        .set_instance_ids(Some(ids.clone()))
        .send()
        .await
        .expect("DescribeInstances");
    for i in described.reservations().iter().flat_map(|r| r.instances()) {
        assert!(
            i.tags()
                .iter()
                .any(|t| t.key() == Some("aws:autoscaling:groupName") && t.value() == Some(name)),
            "{i:?}"
        );
    }
    let arns = ids
        .iter()
        .map(|id| format!("arn:aws:ec2:{US}:{DEFAULT_ACCOUNT}:instance/{id}"))
        .collect();
    (g.auto_scaling_group_arn().expect("ARN").to_owned(), arns)
}

async fn audit(d: &TestDaemon) -> Vec<Value> {
    let (s, page) = d.get("/api/v1/audit?limit=1000", VIEWER).await;
    assert_eq!(s, StatusCode::OK, "{page}");
    page["items"].as_array().expect("items").clone()
}

fn decisions<'a>(records: &'a [Value], arn: &str) -> Vec<(&'a str, &'a str)> {
    records
        .iter()
        .filter(|r| r["arn"] == arn)
        .map(|r| {
            (
                r["decision"].as_str().unwrap_or_default(),
                r["detail"].as_str().unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_auto_scaling_group_goes_whole_and_its_instances_never_alone() {
    let moto = Moto::start().await;
    let proxy = FaultProxy::start(&moto.endpoint()).await;
    let work = Workdir::with_config(&config_text_with_aws(&format!(
        "regions = [\"{US}\"]\nendpoint_url = \"{}\"\nemulator = true\nmax_attempts = 1\n\
         [[aws.accounts]]\nid = \"{DEFAULT_ACCOUNT}\"\narmed = true\n\
         [enforcement]\narmed = true\n\
         deletable_types = [\"autoscaling:autoScalingGroup\", \"ec2:instance\"]\n\
         max_project_share_percent = 100\n",
        proxy.endpoint()
    )));
    std::fs::write(work.dir.path().join("rules/policy/projects.toml"), POLICY).expect("policy");
    let clock = manual_clock();
    let d = TestDaemon::start_with_clock(&work, clock.clone()).await;
    let doomed_lease = d.acquire(WEB, "web", "preview").await;
    let held_lease = d.acquire(WEB, "web", "preview 2").await;
    let direct = moto.sdk_config(US).await;
    let asg = aws_sdk_autoscaling::Client::new(&direct);
    let ec2 = aws_sdk_ec2::Client::new(&direct);
    let tags = |lease: &str, task: &str| -> Vec<(String, String)> {
        crate::support::lease_tags(lease, "web", task)
            .as_object()
            .expect("tags")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
            .collect()
    };
    let (doomed, doomed_instances) =
        group(&asg, &ec2, "doomed", 2, &tags(&doomed_lease, "ci 1")).await;
    let (held, held_instances) = group(&asg, &ec2, "held", 2, &tags(&held_lease, "ci 2")).await;
    // Both leases lapse; then one instance of `held` is taken over by a lease still running.
    clock.advance(TimeDelta::hours(2) + TimeDelta::minutes(10));
    let live_lease = d.acquire(WEB, "web", "preview 3").await;
    let taken = held_instances[0].rsplit('/').next().expect("id").to_owned();
    let lease_key = "ephemera:lease-id";
    ec2.create_tags()
        .resources(&taken)
        .tags(
            aws_sdk_ec2::types::Tag::builder()
                .key(lease_key)
                .value(&live_lease)
                .build(),
        )
        .send()
        .await
        .expect("CreateTags");

    // Pass 1 marks both groups and the instances still under the lapsed leases.
    let run = d.pass().await;
    assert_eq!(run["run"]["outcome"], "success", "{run}");
    // Pass 2, past the grace: `doomed` goes whole, `held` waits whole.
    clock.advance(TimeDelta::hours(1) + TimeDelta::minutes(5));
    let (_, plan) = d.get("/api/v1/plan", VIEWER).await;
    let item = |arn: &str| -> Value {
        plan["items"]
            .as_array()
            .expect("items")
            .iter()
            .find(|i| i["arn"] == arn)
            .cloned()
            .unwrap_or_else(|| panic!("{arn} not in the plan: {plan:#}"))
    };
    let doomed_item = item(&doomed);
    let members: Vec<&str> = doomed_item["members"]
        .as_array()
        .map(|m| m.iter().filter_map(|x| x["arn"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(members.len(), 2, "{plan:#}");
    for i in &doomed_instances {
        assert!(members.contains(&i.as_str()), "{i}: {plan:#}");
    }
    let held_item = item(&held);
    assert_eq!(held_item["status"], "held", "{held_item:#}");
    assert!(
        held_item["held_reason"]
            .as_str()
            .is_some_and(|r| r.contains(&held_instances[0]) && r.contains("every member is due")),
        "{held_item:#}"
    );
    let before = proxy.requests().len();
    d.pass().await;
    let ops: Vec<String> = proxy.requests()[before..]
        .iter()
        .map(|s| s.operation.clone())
        .collect();
    assert_eq!(
        ops.iter()
            .filter(|o| *o == "DeleteAutoScalingGroup")
            .count(),
        1,
        "{ops:?}"
    );
    assert!(!ops.iter().any(|o| o == "TerminateInstances"), "{ops:?}");
    let records = audit(&d).await;
    let doomed_records = decisions(&records, &doomed);
    assert!(
        doomed_records
            .iter()
            .any(|(d, detail)| *d == "deleted" && detail.contains("its 2 members go with it")),
        "{doomed_records:?}"
    );
    assert!(
        !exists(&moto, DEFAULT_ACCOUNT, &doomed).await,
        "the group went"
    );
    for i in &doomed_instances {
        assert!(!exists(&moto, DEFAULT_ACCOUNT, i).await, "{i} went with it");
        assert!(
            decisions(&records, i).is_empty(),
            "no record of its own yet"
        );
    }
    // Nothing of `held` was touched.
    assert!(exists(&moto, DEFAULT_ACCOUNT, &held).await);
    for i in &held_instances {
        assert!(exists(&moto, DEFAULT_ACCOUNT, i).await, "{i} survived");
    }
    assert!(decisions(&records, &held).is_empty(), "{records:#?}");

    // By hand, a member alone is refused. The group named alone brings its members' open
    // findings (the one under the live lease too, whose warning finding by hand counts as
    // due), re-checks each at the last moment, and stays with the one that must not go.
    let job = reap_job(&d, &[&held_instances[1]]).await;
    let results = job["results"].as_array().expect("results");
    assert_eq!(results.len(), 1, "{job:#}");
    assert_eq!(results[0]["outcome"], "held", "{job:#}");
    assert!(
        results[0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("never alone")),
        "{job:#}"
    );
    let job = reap_job(&d, &[&held]).await;
    let held_result = job["results"]
        .as_array()
        .expect("results")
        .iter()
        .find(|r| r["arn"] == held.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("no result for the group: {job:#}"));
    assert_eq!(held_result["outcome"], "skipped", "{job:#}");
    assert!(
        held_result["detail"].as_str().is_some_and(|d| d
            .contains(&format!("member {} must not go now", held_instances[0]))
            && d.contains("the controller stays")),
        "{job:#}"
    );
    assert!(exists(&moto, DEFAULT_ACCOUNT, &held).await);
    for i in &held_instances {
        assert!(exists(&moto, DEFAULT_ACCOUNT, i).await, "{i} survived");
    }

    // Pass 3's walk finds the members gone: each gets its own confirmation.
    d.pass().await;
    let records = audit(&d).await;
    for i in &doomed_instances {
        assert_eq!(
            decisions(&records, i),
            [(
                "deleted",
                "confirmed gone by a walk (it went with its controller)"
            )],
            "{i}"
        );
    }
    assert!(exists(&moto, DEFAULT_ACCOUNT, &held).await);
    let (s, verify) = d.get("/api/v1/audit/verify", VIEWER).await;
    assert_eq!(s, StatusCode::OK, "{verify}");
    assert_eq!(verify["ok"], true, "{verify}");
}
