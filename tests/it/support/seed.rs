//! Seeding moto with tagged resources through `tests/peers/seed.py`, for the inventory tests and
//! the demo, and the tests that hold the seeder to its word: what it reports is exactly what the
//! Resource Groups Tagging API lists, per account and region.
//!
//! Architecture Invariant: the seeder only ever talks to the moto endpoint it is given, with the
//! dummy credentials (or the ones moto's STS hands out for another account); it never changes or
//! deletes anything it did not create.
//!
//! moto quirks these tests pin down (moto 5.2.5):
//! - S3 buckets are global: `GetResources` in *any* region of an account lists all of that
//!   account's tagged buckets, whatever region they were created in.
//! - A terminated instance keeps its tags and is still listed by `GetResources` (moto never
//!   forgets it; real AWS shows terminated instances for about an hour).
//! - Untagged resources of the seeded types are never listed (nor "previously tagged" ones), so a
//!   spec entry with empty `tags` is invisible to the tagging API.
//! - Elastic IPs, key pairs, launch templates, VPC endpoints, egress-only internet gateways,
//!   network ACLs and DHCP option sets are never listed, tagged or not; VPCs, subnets, route
//!   tables, internet gateways, NAT gateways (`natgateway/nat-…`) and peering connections are.
//!   ECR repositories, DB subnet groups and IAM entities are never listed either; Secrets
//!   Manager secrets, KMS keys, DB instances, clusters and their manual snapshots are.
//! - Auto Scaling groups and EKS clusters and node groups are never listed either; load
//!   balancers, target groups, ECS clusters, services and task definitions and CloudFormation
//!   stacks are.
//! - `AssumeRole` into any 12-digit account works without the role existing; everything created
//!   with the returned credentials lands in that account.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::Stdio;

use aws_sdk_ec2::types::InstanceStateName;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::support::moto::{DEFAULT_ACCOUNT, Moto};

/// The second account of the two-account test ground.
const AUDIT_ACCOUNT: &str = "210987654321";
/// Types moto 5.2.5's `GetResources` never lists (AWS does); the seeder gives AWS's ARN form.
pub(crate) const UNLISTED: [&str; 19] = [
    "ec2:elastic-ip",
    "ec2:key-pair",
    "ec2:launch-template",
    "ec2:vpc-endpoint",
    "ec2:egress-only-internet-gateway",
    "ec2:network-acl",
    "ec2:dhcp-options",
    "ecr:repository",
    "rds:subgrp",
    "iam:role",
    "iam:instance-profile",
    "iam:policy",
    "iam:oidc-provider",
    "iam:user",
    "iam:access-key",
    "autoscaling:autoScalingGroup",
    // Never tagged at all: AWS keeps no tags on a launch configuration.
    "autoscaling:launchConfiguration",
    "eks:cluster",
    "eks:nodegroup",
];
const US: &str = "us-east-1";
const EU: &str = "eu-west-1";

/// What the seeder created, one entry per resource (a `count` of N gives N entries), in spec
/// order.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seeded {
    pub resources: Vec<SeededResource>,
}

/// One created resource.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeededResource {
    /// The spec entry's `key`; shared by all copies of a `count`.
    pub key: String,
    /// The ARN exactly as moto's `GetResources` lists it.
    pub arn: String,
    pub account: String,
    pub region: String,
    /// The spec's `type`, e.g. `ec2:volume`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The resource's own id (`i-…`, `vol-…`, `snap-…`) or name (bucket, queue, table, …).
    pub id: String,
    /// With `in_use`: the ARNs of the untagged resources made to use it.
    #[serde(default)]
    pub used_by: Vec<String>,
    /// For `ec2:image`: the (untagged) snapshot backing the AMI.
    #[serde(default)]
    pub snapshot_id: Option<String>,
}

/// Creates the resources `spec` describes (see `tests/peers/seed.py` for the format) in the moto
/// server at `moto_endpoint`.
///
/// Panics with the seeder's stderr if it fails.
pub async fn seed(moto_endpoint: &str, spec: Value) -> Seeded {
    run_seeder(moto_endpoint, &spec, &[])
        .await
        .unwrap_or_else(|failure| panic!("seeding moto failed: {failure}"))
}

/// The seeded ARNs grouped by spec key, each group in creation order.
pub fn arns_by_key(seeded: &Seeded) -> HashMap<String, Vec<String>> {
    let mut by_key: HashMap<String, Vec<String>> = HashMap::new();
    for resource in &seeded.resources {
        by_key
            .entry(resource.key.clone())
            .or_default()
            .push(resource.arn.clone());
    }
    by_key
}

/// Runs the seeder with `extra_args`; `Err` carries the exit status and stderr.
async fn run_seeder(endpoint: &str, spec: &Value, extra_args: &[&str]) -> Result<Seeded, String> {
    let python = python();
    assert!(
        python.is_file(),
        "python not found at {}: run `make test` (it creates the virtualenv with moto[server] and \
         boto3) or point EPHEMERA_MOTO_SERVER at the virtualenv's moto_server",
        python.display()
    );
    let mut child = tokio::process::Command::new(&python)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/seed.py"))
        .args(["--endpoint", endpoint])
        .args(extra_args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {}: {e}", python.display()));
    let mut stdin = child.stdin.take().expect("stdin was piped");
    let input = spec.to_string();
    // Feed stdin while collecting the output, so neither pipe can fill up and stall the other.
    let feed = async move {
        stdin.write_all(input.as_bytes()).await?;
        // Dropping stdin closes it: the seeder reads to end of file.
        drop(stdin);
        Ok(())
    };
    let ((), output) =
        tokio::try_join!(feed, child.wait_with_output()).expect("talking to the seeder");
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(format!("seed.py exited with {}:\n{stderr}", output.status));
    }
    let seeded = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "seed.py printed no valid result ({e}); stdout:\n{}\nstderr:\n{stderr}",
            String::from_utf8_lossy(&output.stdout)
        )
    });
    Ok(seeded)
}

/// The virtualenv's python: next to `EPHEMERA_MOTO_SERVER` if set (as `moto` finds the server),
/// else the project's `.venv`.
pub(crate) fn python() -> PathBuf {
    std::env::var_os("EPHEMERA_MOTO_SERVER").map_or_else(
        || PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python")),
        |server| PathBuf::from(server).with_file_name("python"),
    )
}

/// A tagging client acting in `account`: moto's default account directly, any other through
/// `AssumeRole`.
async fn tagging_client(
    moto: &Moto,
    account: &str,
    region: &str,
) -> aws_sdk_resourcegroupstagging::Client {
    let config = moto.sdk_config(region).await;
    if account == DEFAULT_ACCOUNT {
        return aws_sdk_resourcegroupstagging::Client::new(&config);
    }
    let assumed = aws_sdk_sts::Client::new(&config)
        .assume_role()
        .role_arn(format!("arn:aws:iam::{account}:role/seed-test"))
        .role_session_name("seed-test")
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "AssumeRole into {account}: {e:?}; moto log:\n{}",
                moto.log()
            )
        });
    let creds = assumed
        .credentials()
        .expect("AssumeRole returns credentials");
    aws_sdk_resourcegroupstagging::Client::from_conf(
        aws_sdk_resourcegroupstagging::config::Builder::from(&config)
            .credentials_provider(aws_sdk_resourcegroupstagging::config::Credentials::new(
                creds.access_key_id(),
                creds.secret_access_key(),
                Some(creds.session_token().to_owned()),
                None,
                "assume-role",
            ))
            .build(),
    )
}

/// Every ARN `GetResources` lists for `account` in `region`, page by page until the token runs
/// out. Panics on a duplicate, which would mean the pagination is broken.
async fn listed_arns(moto: &Moto, account: &str, region: &str) -> BTreeSet<String> {
    let tagging = tagging_client(moto, account, region).await;
    let mut arns = BTreeSet::new();
    let mut token: Option<String> = None;
    loop {
        let page = tagging
            .get_resources()
            .set_pagination_token(token.take())
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "GetResources in {account}/{region}: {e:?}; moto log:\n{}",
                    moto.log()
                )
            });
        for mapping in page.resource_tag_mapping_list() {
            let arn = mapping
                .resource_arn()
                .expect("GetResources returns ARNs")
                .to_owned();
            assert!(arns.insert(arn.clone()), "{arn} listed twice");
        }
        match page.pagination_token() {
            Some(next) if !next.is_empty() => token = Some(next.to_owned()),
            _ => return arns,
        }
    }
}

/// The one resource seeded under `key`.
fn only<'a>(seeded: &'a Seeded, key: &str) -> &'a SeededResource {
    let found: Vec<_> = seeded.resources.iter().filter(|r| r.key == key).collect();
    let [resource] = found[..] else {
        panic!("expected one resource under {key:?}, got {found:#?}");
    };
    resource
}

/// The ARN moto's `GetResources` lists for a resource of `kind` with `id`.
fn expected_arn(kind: &str, account: &str, region: &str, id: &str) -> String {
    match kind {
        "ec2:instance"
        | "ec2:volume"
        | "ec2:snapshot"
        | "ec2:image"
        | "ec2:security-group"
        | "ec2:network-interface"
        | "ec2:elastic-ip"
        | "ec2:key-pair"
        | "ec2:launch-template"
        | "ec2:vpc"
        | "ec2:subnet"
        | "ec2:route-table"
        | "ec2:internet-gateway"
        | "ec2:natgateway"
        | "ec2:vpc-endpoint"
        | "ec2:egress-only-internet-gateway"
        | "ec2:network-acl"
        | "ec2:dhcp-options"
        | "ec2:vpc-peering-connection" => {
            let type_part = kind.trim_start_matches("ec2:");
            format!("arn:aws:ec2:{region}:{account}:{type_part}/{id}")
        }
        "s3:bucket" => format!("arn:aws:s3:::{id}"),
        "sqs:queue" => format!("arn:aws:sqs:{region}:{account}:{id}"),
        "dynamodb:table" => format!("arn:aws:dynamodb:{region}:{account}:table/{id}"),
        "sns:topic" => format!("arn:aws:sns:{region}:{account}:{id}"),
        "logs:log-group" => format!("arn:aws:logs:{region}:{account}:log-group:{id}"),
        "lambda:function" => format!("arn:aws:lambda:{region}:{account}:function:{id}"),
        other => panic!("no ARN format known for {other}"),
    }
}

fn tags(project: &str) -> Value {
    json!({ "ephemera:project": project, "ephemera:owner": "seed-test" })
}

#[tokio::test(flavor = "multi_thread")]
async fn get_resources_lists_exactly_the_tagged_seeded_arns_per_account_and_region() {
    let moto = Moto::start().await;
    let mut spec = vec![
        json!({"key": "web-instance", "type": "ec2:instance", "tags": tags("web")}),
        json!({"key": "web-volume", "type": "ec2:volume", "tags": tags("web")}),
        json!({"key": "web-snapshot", "type": "ec2:snapshot", "tags": tags("web")}),
        json!({"key": "web-bucket", "type": "s3:bucket", "tags": tags("web")}),
        json!({"key": "web-queue", "type": "sqs:queue", "tags": tags("web")}),
        json!({"key": "web-table", "type": "dynamodb:table", "tags": tags("web")}),
        json!({"key": "web-topic", "type": "sns:topic", "tags": tags("web")}),
        json!({"key": "web-logs", "type": "logs:log-group", "tags": tags("web")}),
        json!({"key": "web-function", "type": "lambda:function", "tags": tags("web")}),
        json!({"key": "web-gone", "type": "ec2:instance", "tags": tags("web"), "terminated": true}),
        json!({"key": "untagged-volume", "type": "ec2:volume", "tags": {}}),
        json!({"key": "web-image", "type": "ec2:image", "tags": tags("web")}),
        json!({"key": "web-group", "type": "ec2:security-group", "tags": tags("web")}),
        json!({"key": "web-eni", "type": "ec2:network-interface", "tags": tags("web")}),
        json!({"key": "web-eip", "type": "ec2:elastic-ip", "tags": tags("web")}),
        json!({"key": "web-key", "type": "ec2:key-pair", "tags": tags("web")}),
        json!({"key": "web-template", "type": "ec2:launch-template", "tags": tags("web")}),
    ];
    for (key, kind) in [
        ("audit-instance", "ec2:instance"),
        ("audit-volume", "ec2:volume"),
        ("audit-bucket", "s3:bucket"),
        ("audit-queue", "sqs:queue"),
    ] {
        spec.push(json!({
            "key": key, "type": kind, "account": AUDIT_ACCOUNT, "region": EU, "tags": tags("audit")
        }));
    }
    let spec_len = spec.len();

    let seeded = seed(&moto.endpoint(), json!({ "resources": spec })).await;

    assert_eq!(seeded.resources.len(), spec_len, "one resource per entry");
    for r in &seeded.resources {
        assert_eq!(
            r.arn,
            expected_arn(&r.kind, &r.account, &r.region, &r.id),
            "ARN of {r:?}"
        );
    }
    let untagged = only(&seeded, "untagged-volume");
    let terminated = only(&seeded, "web-gone");

    for (account, region) in [
        (DEFAULT_ACCOUNT, US),
        (DEFAULT_ACCOUNT, EU),
        (AUDIT_ACCOUNT, US),
        (AUDIT_ACCOUNT, EU),
    ] {
        // S3 buckets are global in moto: an account's tagged buckets are listed in every
        // region, so the audit bucket made in eu-west-1 shows up in us-east-1 too.
        let expected: BTreeSet<String> = seeded
            .resources
            .iter()
            .filter(|r| r.key != untagged.key && r.account == account)
            .filter(|r| !UNLISTED.contains(&r.kind.as_str()))
            .filter(|r| r.region == region || r.kind == "s3:bucket")
            .map(|r| r.arn.clone())
            .collect();

        let listed = listed_arns(&moto, account, region).await;

        assert_eq!(listed, expected, "GetResources in {account}/{region}");
    }

    let listed_home = listed_arns(&moto, DEFAULT_ACCOUNT, US).await;
    for r in seeded
        .resources
        .iter()
        .filter(|r| UNLISTED.contains(&r.kind.as_str()))
    {
        assert!(
            !listed_home.contains(&r.arn),
            "moto 5.2.5 lists no {}: {}",
            r.kind,
            r.arn
        );
    }
    assert!(
        !listed_home.contains(&untagged.arn),
        "moto never lists an untagged resource: {}",
        untagged.arn
    );
    assert!(
        listed_home.contains(&terminated.arn),
        "a terminated instance keeps its tags and stays listed: {}",
        terminated.arn
    );
    // ...and it really is terminated, not merely tagged.
    let ec2 = aws_sdk_ec2::Client::new(&moto.sdk_config(US).await);
    let described = ec2
        .describe_instances()
        .instance_ids(&terminated.id)
        .send()
        .await
        .expect("DescribeInstances");
    let states: Vec<_> = described
        .reservations()
        .iter()
        .flat_map(aws_sdk_ec2::types::Reservation::instances)
        .map(|i| i.state().and_then(|s| s.name()).cloned())
        .collect();
    assert_eq!(states, [Some(InstanceStateName::Terminated)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn count_seeds_distinct_resources_under_one_key_across_pages() {
    // More than moto's 50 resources per GetResources page, so the listing must paginate.
    const VOLUMES: usize = 60;
    const BUCKETS: usize = 3;
    let moto = Moto::start().await;
    let spec = json!({"resources": [
        {"key": "bulk-volumes", "type": "ec2:volume", "tags": tags("bulk"), "count": VOLUMES},
        {"key": "bulk-buckets", "type": "s3:bucket", "region": EU, "tags": tags("bulk"),
         "count": BUCKETS},
    ]});

    // `--verify` makes the seeder itself look every tagged ARN up before it answers.
    let seeded = run_seeder(&moto.endpoint(), &spec, &["--verify"])
        .await
        .unwrap_or_else(|failure| panic!("{failure}"));

    let by_key = arns_by_key(&seeded);
    assert_eq!(
        by_key.keys().cloned().collect::<BTreeSet<_>>(),
        BTreeSet::from(["bulk-volumes".to_owned(), "bulk-buckets".to_owned()])
    );
    let volumes: BTreeSet<_> = by_key["bulk-volumes"].iter().cloned().collect();
    let buckets: BTreeSet<_> = by_key["bulk-buckets"].iter().cloned().collect();
    assert_eq!(volumes.len(), VOLUMES, "distinct volume ARNs");
    assert_eq!(buckets.len(), BUCKETS, "distinct bucket ARNs");
    assert_eq!(
        listed_arns(&moto, DEFAULT_ACCOUNT, US).await,
        volumes.union(&buckets).cloned().collect(),
        "every copy is listed, buckets included although created in {EU}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn seeder_failures_exit_non_zero_naming_the_resource_key() {
    let moto = Moto::start().await;
    // moto refuses more than 50 user tags on an EC2 resource.
    let too_many_tags: serde_json::Map<String, Value> = (0..51)
        .map(|i| (format!("tag-{i}"), Value::from("x")))
        .collect();
    let cases = [
        (
            json!({"resources": [
                {"key": "fine-queue", "type": "sqs:queue"},
                {"key": "overtagged-volume", "type": "ec2:volume", "tags": too_many_tags},
            ]}),
            "exit status: 1",
            "'overtagged-volume'",
        ),
        (
            json!({"resources": [{"key": "odd-thing", "type": "ec2:elephant"}]}),
            "exit status: 2",
            "'odd-thing'",
        ),
        (
            json!({"resources": [{"key": "undead-bucket", "type": "s3:bucket", "terminated": true}]}),
            "exit status: 2",
            "'undead-bucket'",
        ),
    ];
    for (spec, status, key) in cases {
        let failure = run_seeder(&moto.endpoint(), &spec, &[])
            .await
            .expect_err("the seeder must fail");
        assert!(
            failure.contains(status) && failure.contains(key),
            "expected {status} naming {key}, got: {failure}"
        );
    }
}
