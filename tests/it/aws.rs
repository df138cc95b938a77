//! Smoke tests proving the AWS SDK for Rust works against moto: STS identity in two accounts,
//! and an EC2 instance tagged by a lease that the tagging API finds by project.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
use aws_sdk_resourcegroupstagging::types::TagFilter;
use aws_sdk_sts::config::Credentials;

use crate::support::moto::{DEFAULT_ACCOUNT, Moto};

const REGION: &str = "us-east-1";
/// The second account of the two-account test ground.
const AUDIT_ACCOUNT: &str = "210987654321";
/// One of the AMIs moto ships by default in every region.
const AMI: &str = "ami-12c6146b";

#[tokio::test(flavor = "multi_thread")]
async fn sts_caller_identity_is_motos_default_account() {
    let moto = Moto::start().await;
    let sts = aws_sdk_sts::Client::new(&moto.sdk_config(REGION).await);

    let identity = sts
        .get_caller_identity()
        .send()
        .await
        .unwrap_or_else(|e| panic!("GetCallerIdentity: {e:?}; moto log:\n{}", moto.log()));

    assert_eq!(identity.account(), Some(DEFAULT_ACCOUNT));
}

#[tokio::test(flavor = "multi_thread")]
async fn assume_role_into_second_account_yields_that_accounts_identity() {
    let moto = Moto::start().await;
    let config = moto.sdk_config(REGION).await;
    let sts = aws_sdk_sts::Client::new(&config);
    let role_arn = format!("arn:aws:iam::{AUDIT_ACCOUNT}:role/ephemera-audit");

    let assumed = sts
        .assume_role()
        .role_arn(&role_arn)
        .role_session_name("ephemera-test")
        .send()
        .await
        .unwrap_or_else(|e| panic!("AssumeRole: {e:?}; moto log:\n{}", moto.log()));
    assert_eq!(
        assumed.assumed_role_user().map(|u| u.arn()),
        Some(
            format!("arn:aws:sts::{AUDIT_ACCOUNT}:assumed-role/ephemera-audit/ephemera-test")
                .as_str()
        )
    );
    let creds = assumed
        .credentials()
        .expect("AssumeRole returns credentials");
    assert_ne!(
        creds.access_key_id(),
        "testing",
        "assumed credentials are fresh ones"
    );

    let audit_sts = aws_sdk_sts::Client::from_conf(
        aws_sdk_sts::config::Builder::from(&config)
            .credentials_provider(Credentials::new(
                creds.access_key_id(),
                creds.secret_access_key(),
                Some(creds.session_token().to_owned()),
                None,
                "assume-role",
            ))
            .build(),
    );
    let identity = audit_sts
        .get_caller_identity()
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "GetCallerIdentity as role: {e:?}; moto log:\n{}",
                moto.log()
            )
        });

    assert_eq!(identity.account(), Some(AUDIT_ACCOUNT));
    // The original credentials still answer for the default account: the accounts are distinct.
    let own = sts
        .get_caller_identity()
        .send()
        .await
        .expect("GetCallerIdentity with the base credentials");
    assert_eq!(own.account(), Some(DEFAULT_ACCOUNT));
}

#[tokio::test(flavor = "multi_thread")]
async fn tagging_api_finds_leased_instance_by_project_with_all_lease_tags() {
    let moto = Moto::start().await;
    let config = moto.sdk_config(REGION).await;
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let tagging = aws_sdk_resourcegroupstagging::Client::new(&config);

    let images = ec2
        .describe_images()
        .image_ids(AMI)
        .send()
        .await
        .unwrap_or_else(|e| panic!("DescribeImages: {e:?}; moto log:\n{}", moto.log()));
    assert_eq!(
        images
            .images()
            .iter()
            .map(|i| i.image_id())
            .collect::<Vec<_>>(),
        [Some(AMI)],
        "moto knows the AMI the tests launch"
    );

    let web_tags = lease_tags("lease-web-1", "web");
    let web = run_instance(&ec2, &web_tags).await;
    let data = run_instance(&ec2, &lease_tags("lease-data-1", "data")).await;
    // Launched only so the queries below have something they must not match.
    let _untagged = run_instance(&ec2, &[]).await;

    let found = resources_matching(&tagging, "ephemera:project", &["web"]).await;
    assert_eq!(
        found,
        BTreeMap::from([(
            instance_arn(&web),
            web_tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        )])
    );

    let unknown = resources_matching(&tagging, "ephemera:project", &["no-such-project"]).await;
    assert_eq!(unknown, BTreeMap::new());

    // Any value of the lease tag: both leased instances, never the one we left untagged.
    let leased = resources_matching(&tagging, "ephemera:lease-id", &[]).await;
    assert_eq!(
        leased.into_keys().collect::<BTreeSet<_>>(),
        BTreeSet::from([instance_arn(&web), instance_arn(&data)])
    );

    // A reset really forgets: the same query now finds nothing.
    moto.reset().await;
    let after_reset = resources_matching(&tagging, "ephemera:project", &["web"]).await;
    assert_eq!(after_reset, BTreeMap::new());
}

/// The four tags a lease puts on what it launches.
fn lease_tags(lease_id: &str, project: &str) -> [(&'static str, String); 4] {
    [
        ("ephemera:lease-id", lease_id.to_owned()),
        ("ephemera:project", project.to_owned()),
        ("ephemera:task", "smoke".to_owned()),
        ("ephemera:owner", "ci-web".to_owned()),
    ]
}

/// Launches one instance of [`AMI`] carrying `tags` and returns its id.
async fn run_instance(ec2: &aws_sdk_ec2::Client, tags: &[(&str, String)]) -> String {
    let mut request = ec2
        .run_instances()
        .image_id(AMI)
        .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
        .min_count(1)
        .max_count(1);
    if !tags.is_empty() {
        let spec = tags.iter().fold(
            TagSpecification::builder().resource_type(ResourceType::Instance),
            |spec, (key, value)| spec.tags(Tag::builder().key(*key).value(value).build()),
        );
        request = request.tag_specifications(spec.build());
    }
    let output = request.send().await.expect("RunInstances");
    let [instance] = output.instances() else {
        panic!(
            "RunInstances with count 1 returned {:?}",
            output.instances()
        );
    };
    instance
        .instance_id()
        .expect("a launched instance has an id")
        .to_owned()
}

fn instance_arn(instance_id: &str) -> String {
    format!("arn:aws:ec2:{REGION}:{DEFAULT_ACCOUNT}:instance/{instance_id}")
}

/// Every resource whose tag `key` has one of `values` (any value if empty), as ARN -> tags,
/// across all pages.
async fn resources_matching(
    tagging: &aws_sdk_resourcegroupstagging::Client,
    key: &str,
    values: &[&str],
) -> BTreeMap<String, BTreeMap<String, String>> {
    let filter = values
        .iter()
        .fold(TagFilter::builder().key(key), |f, v| f.values(*v))
        .build();
    let mappings = tagging
        .get_resources()
        .tag_filters(filter)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .expect("GetResources");
    mappings
        .into_iter()
        .map(|m| {
            let arn = m
                .resource_arn()
                .expect("GetResources returns ARNs")
                .to_owned();
            let tags = m
                .tags()
                .iter()
                .map(|t| (t.key().to_owned(), t.value().to_owned()))
                .collect();
            (arn, tags)
        })
        .collect()
}
