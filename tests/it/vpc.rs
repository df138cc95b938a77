//! The VPC family through the daemon's own passes: a tagged VPC whose lease expired is marked,
//! then reaped in dependency order by an armed pass; a member that fails holds back only what
//! depends on it, and goes (with them) on a later pass; the default VPC, tagged, is refused.
//! The members' own deleters are in `deleters.rs` (with moto's infidelities listed there).

use chrono::TimeDelta;
use reqwest::StatusCode;
use serde_json::Value;

use crate::deleters::{build_family, ec2_tags, filter, release_dead_acl_associations};
use crate::reap::{POLICY, exists};
use crate::support::moto::{DEFAULT_ACCOUNT, Moto};
use crate::support::proxy::FaultProxy;
use crate::support::{TestDaemon, VIEWER, WEB, Workdir, config_text_with_aws, manual_clock};

const US: &str = "us-east-1";
const FAMILY: &str = "\"ec2:vpc\", \"ec2:subnet\", \"ec2:route-table\", \
    \"ec2:internet-gateway\", \"ec2:natgateway\", \"ec2:vpc-endpoint\", \
    \"ec2:egress-only-internet-gateway\", \"ec2:network-acl\", \"ec2:dhcp-options\", \
    \"ec2:vpc-peering-connection\", \"ec2:elastic-ip\", \"ec2:security-group\"";

/// The last audit decision and detail of each ARN, and the sequence number of its last
/// `deleted` record.
async fn last_decisions(d: &TestDaemon) -> Vec<Value> {
    let (s, page) = d.get("/api/v1/audit?limit=1000", VIEWER).await;
    assert_eq!(s, StatusCode::OK, "{page}");
    page["items"].as_array().expect("items").clone()
}

fn last<'a>(records: &'a [Value], arn: &str) -> (&'a str, &'a str, i64) {
    records
        .iter()
        .filter(|r| r["arn"] == arn)
        .map(|r| {
            (
                r["decision"].as_str().unwrap_or_default(),
                r["detail"].as_str().unwrap_or_default(),
                r["seq"].as_i64().unwrap_or_default(),
            )
        })
        .next_back()
        .unwrap_or_else(|| panic!("no record of {arn}: {records:#?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_vpc_is_reaped_by_passes_in_order_and_a_failure_holds_back_only_its_users() {
    let moto = Moto::start().await;
    let proxy = FaultProxy::start(&moto.endpoint()).await;
    let work = Workdir::with_config(&config_text_with_aws(&format!(
        "regions = [\"{US}\"]\nendpoint_url = \"{}\"\nemulator = true\nmax_attempts = 1\n\
         [[aws.accounts]]\nid = \"{DEFAULT_ACCOUNT}\"\narmed = true\n\
         [enforcement]\narmed = true\ndeletable_types = [{FAMILY}]\n\
         retry_backoff = \"15m\"\nmax_project_share_percent = 100\n",
        proxy.endpoint()
    )));
    std::fs::write(work.dir.path().join("rules/policy/projects.toml"), POLICY).expect("policy");
    let clock = manual_clock();
    let d = TestDaemon::start_with_clock(&work, clock.clone()).await;
    let lease = d.acquire(WEB, "web", "preview").await;
    clock.advance(TimeDelta::hours(2) + TimeDelta::minutes(10));

    let direct = aws_sdk_ec2::Client::new(&moto.sdk_config(US).await);
    let tags = crate::support::lease_tags(&lease, "web", "ci 1");
    let family = build_family(&direct, &tags).await;
    // The region's default VPC, tagged as if the environment owned it: refused all the same.
    let default_vpc = direct
        .describe_vpcs()
        .filters(filter("is-default", "true"))
        .send()
        .await
        .expect("DescribeVpcs")
        .vpcs()
        .first()
        .and_then(|v| v.vpc_id())
        .expect("moto's default VPC")
        .to_owned();
    direct
        .create_tags()
        .resources(&default_vpc)
        .set_tags(Some(ec2_tags(&tags)))
        .send()
        .await
        .expect("tag the default VPC");
    let default_vpc = format!("arn:aws:ec2:{US}:{DEFAULT_ACCOUNT}:vpc/{default_vpc}");
    let arn = |name: &str| family.members[name].to_string();

    // Pass 1 marks every member (the tagging walk lists some, the sweep the rest) and the
    // default VPC.
    let run = d.pass().await;
    assert_eq!(run["run"]["outcome"], "success", "{run}");
    let (_, plan) = d.get("/api/v1/plan", VIEWER).await;
    let planned: Vec<&str> = plan["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["arn"].as_str())
        .collect();
    for (name, member) in &family.members {
        assert!(
            planned.contains(&member.as_str()),
            "{name} not planned: {plan}"
        );
    }
    assert!(planned.contains(&default_vpc.as_str()), "{plan}");

    // Pass 2, past the grace: everything goes but the ACL (moto keeps the private subnet's
    // dead association), the VPC and DHCP options that depend on it, and the default VPC.
    clock.advance(TimeDelta::hours(1) + TimeDelta::minutes(5));
    let run = d.pass().await;
    let records = last_decisions(&d).await;
    let acl = arn("network acl");
    assert_eq!(last(&records, &acl).0, "failed", "{records:#?}");
    for held in ["vpc", "dhcp options"] {
        let (decision, detail, _) = last(&records, &arn(held));
        assert_eq!(decision, "skipped", "{held}: {run}");
        assert!(detail.contains("held back"), "{held}: {detail}");
    }
    let (decision, detail, _) = last(&records, &default_vpc);
    assert_eq!(decision, "skipped", "{detail}");
    assert!(
        detail.starts_with("refused:") && detail.contains("default VPC"),
        "{detail}"
    );
    let deleted_at = |records: &[Value], name: &str| {
        let (decision, detail, seq) = last(records, &arn(name));
        assert_eq!(decision, "deleted", "{name}: {detail}");
        seq
    };
    for (before, after) in [
        ("nat gateway", "elastic ip"),
        ("nat gateway", "private subnet"),
        ("nat gateway", "internet gateway"),
        ("endpoint", "route table"),
        ("elastic ip", "internet gateway"),
        ("route table", "internet gateway"),
        ("public subnet", "egress-only gateway"),
        ("security group", "internet gateway"),
        ("peering", "security group"),
    ] {
        assert!(
            deleted_at(&records, before) < deleted_at(&records, after),
            "{before} after {after}"
        );
    }
    assert!(exists(&moto, DEFAULT_ACCOUNT, &arn("vpc")).await);

    // Pass 3, past the ACL's back-off, the association gone as AWS would have it: the ACL,
    // then the VPC; moto deleted the DHCP options with the VPC (AWS keeps them, and they go
    // next), which the pass confirms gone.
    release_dead_acl_associations(&direct, &family.members["network acl"], &family.default_acl)
        .await;
    clock.advance(TimeDelta::minutes(16));
    d.pass().await;
    let records = last_decisions(&d).await;
    assert!(deleted_at(&records, "network acl") < deleted_at(&records, "vpc"));
    let (decision, detail, _) = last(&records, &arn("dhcp options"));
    assert_eq!((decision, detail), ("deleted", "already gone"));
    for (name, member) in &family.members {
        assert!(
            !exists(&moto, DEFAULT_ACCOUNT, member.as_str()).await,
            "{name} survived"
        );
    }
    for neighbour in &family.neighbour {
        assert!(
            exists(&moto, DEFAULT_ACCOUNT, neighbour.as_str()).await,
            "{neighbour}"
        );
    }
    let default_vpc_arn = ephemera::model::Arn::parse(&default_vpc).expect("arn");
    let still = direct
        .describe_vpcs()
        .vpc_ids(default_vpc_arn.resource_id())
        .send()
        .await
        .expect("the default VPC is still there");
    assert_eq!(still.vpcs().len(), 1);
    d.stop().await;
}
