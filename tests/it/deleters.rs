//! The reaper's per-type deleters against moto: every supported type is inspected (live, with
//! the tags it was seeded with), deleted once, found gone, deleted again as already gone — and
//! its seeded twin is left alone. Dependencies (attached volumes, security groups in use, AMI
//! snapshots, ENIs and elastic IPs on instances) show up in `depends_on` and block deletion
//! where moto enforces it; the second account is reached through AssumeRole.
//!
//! moto 5.2.5 behaviours these tests rely on or work around:
//! - DeleteVolume of an attached volume: `VolumeInUse`; DeleteSnapshot of an AMI's snapshot:
//!   `InvalidSnapshot.InUse` (enforced, as AWS does).
//! - DeleteSecurityGroup of a group in use, DeleteNetworkInterface of an attached interface and
//!   ReleaseAddress of an associated address all succeed (AWS refuses the first two with
//!   `DependencyViolation` / `InvalidNetworkInterface.InUse` and the third with
//!   `InvalidIPAddress.InUse`); the tests therefore only check `depends_on` for those (the
//!   leniency itself was checked by hand with boto3, not pinned by a test).
//! - GetResources never lists elastic IPs, key pairs or launch templates (AWS does; pinned in
//!   `seed.rs`); their deleters are tested with the ARNs AWS would list.
//! - DeleteCacheSubnetGroup is not implemented: ElastiCache subnet groups are left out of the
//!   every-type test (`deleters_data.rs` tests their deletes on recorded answers).
//! - S3 ListObjectVersions with a marker naming a deleted key answers an empty page, so the
//!   bucket deleter lists from the start after each page it deletes.

use std::collections::BTreeMap;

use aws_config::SdkConfig;
use ephemera::inventory::AwsClients;
use ephemera::model::{Arn, ResourceType, Tags};
use ephemera::reaper::aws::{self, DeleteError, Deleted, Inspection};
use serde_json::{Value, json};
use strum::VariantArray;

use crate::support::moto::{DEFAULT_ACCOUNT, Moto};
use crate::support::seed::{Seeded, SeededResource, seed};
use crate::support::{Workdir, config_text_with_aws};

/// The second account, reached only through the role template.
const OTHER_ACCOUNT: &str = "210987654321";
const US: &str = "us-east-1";
const EU: &str = "eu-west-1";

/// The daemon's own client builder over `moto`; every account through
/// `assume_role_arn_template` (moto's default account assumes a role in itself).
pub(crate) fn clients(moto: &Moto) -> AwsClients {
    let aws = format!(
        r#"regions = ["{US}", "{EU}"]
endpoint_url = "{endpoint}"
emulator = true
max_attempts = 2
assume_role_arn_template = "arn:aws:iam::{{account_id}}:role/ephemera-reaper"

[[aws.accounts]]
id = "{DEFAULT_ACCOUNT}"

[[aws.accounts]]
id = "{OTHER_ACCOUNT}"
"#,
        endpoint = moto.endpoint()
    );
    AwsClients::new(
        Workdir::with_config(&config_text_with_aws(&aws))
            .config()
            .aws,
    )
}

pub(crate) async fn sdk(clients: &AwsClients, account: &str, region: &str) -> SdkConfig {
    clients
        .config_for(account, region)
        .await
        .unwrap_or_else(|e| panic!("config for {account}/{region}: {e}"))
}

fn tags(lease: &str) -> Value {
    json!({"ephemera:lease-id": lease, "ephemera:project": "web", "ephemera:owner": "ci-web"})
}

fn as_tags(value: &Value) -> Tags {
    let map: BTreeMap<String, String> =
        serde_json::from_value(value.clone()).expect("tags are a string map");
    Tags::from_pairs(map.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

fn arn(s: &str) -> Arn {
    Arn::parse(s).unwrap_or_else(|e| panic!("{e}"))
}

fn only<'a>(seeded: &'a Seeded, key: &str) -> &'a SeededResource {
    let found: Vec<_> = seeded.resources.iter().filter(|r| r.key == key).collect();
    let [resource] = found[..] else {
        panic!("expected one resource under {key:?}, got {found:#?}");
    };
    resource
}

async fn inspect(sdk: &SdkConfig, arn: &Arn, moto: &Moto) -> Inspection {
    aws::inspect(sdk, arn)
        .await
        .unwrap_or_else(|e| panic!("inspect {arn}: {e}; moto log:\n{}", tail(moto)))
}

async fn delete(sdk: &SdkConfig, arn: &Arn, moto: &Moto) -> Deleted {
    aws::delete(sdk, arn)
        .await
        .unwrap_or_else(|e| panic!("delete {arn}: {e}; moto log:\n{}", tail(moto)))
}

/// The end of moto's log, enough to see the failing request.
fn tail(moto: &Moto) -> String {
    let log = moto.log();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

fn live(tags: Tags, depends_on: &[&str]) -> Inspection {
    Inspection::Live {
        tags,
        depends_on: depends_on.iter().map(|a| arn(a)).collect(),
    }
}

/// The whole life of one deletion: `doomed` is live with `doomed_tags`, deleted, gone, and
/// already gone the second time; `survivor` is live with `survivor_tags` before and after.
/// Returns what went wrong, so one run reports every type.
async fn check(
    sdk: &SdkConfig,
    doomed: &SeededResource,
    doomed_tags: &Tags,
    survivor: &SeededResource,
    survivor_tags: &Tags,
) -> Vec<String> {
    fn differs<T: std::fmt::Debug + PartialEq, E: std::fmt::Display>(
        got: Result<T, E>,
        want: T,
    ) -> Option<String> {
        match got {
            Ok(got) if got == want => None,
            Ok(got) => Some(format!("got {got:?}, want {want:?}")),
            Err(e) => Some(format!("failed: {e}; want {want:?}")),
        }
    }
    let (d, s) = (arn(&doomed.arn), arn(&survivor.arn));
    let survivor_live = || live(survivor_tags.clone(), &[]);
    let steps = [
        (
            "type",
            differs(Ok::<_, String>(d.resource_type()), doomed.kind.clone()),
        ),
        (
            "survivor before",
            differs(aws::inspect(sdk, &s).await, survivor_live()),
        ),
        (
            "first inspect",
            differs(aws::inspect(sdk, &d).await, live(doomed_tags.clone(), &[])),
        ),
        // An access key is deactivated first; an active one is never deleted.
        (
            "deactivate",
            match doomed.kind.as_str() {
                "iam:access-key" => match aws::delete(sdk, &d).await {
                    Ok(done) => Some(format!("an active key was deleted: {done:?}")),
                    Err(_) => differs(
                        aws::deactivate(sdk, &d).await,
                        aws::Deactivation::Deactivated,
                    ),
                },
                _ => None,
            },
        ),
        (
            "first delete",
            differs(aws::delete(sdk, &d).await, Deleted::Deleted),
        ),
        (
            "inspect after delete",
            differs(aws::inspect(sdk, &d).await, Inspection::Gone),
        ),
        (
            "second delete",
            differs(aws::delete(sdk, &d).await, Deleted::AlreadyGone),
        ),
        (
            "survivor after",
            differs(aws::inspect(sdk, &s).await, survivor_live()),
        ),
    ];
    steps
        .into_iter()
        .filter_map(|(step, failure)| {
            failure.map(|f| format!("{} ({}): {step}: {f}", doomed.kind, doomed.arn))
        })
        .collect()
}

/// Types moto 5.2.5 cannot delete at all (no DeleteCacheSubnetGroup): their deletes are
/// tested on recorded answers in `deleters_data.rs`.
const UNDELETABLE: [ResourceType; 1] = [ResourceType::ElasticacheSubnetGroup];

#[tokio::test(flavor = "multi_thread")]
async fn every_type_is_deleted_once_then_already_gone_and_its_twin_survives() {
    let moto = Moto::start().await;
    let clients = clients(&moto);
    let mut spec = Vec::new();
    for kind in ResourceType::VARIANTS
        .iter()
        .filter(|k| !UNDELETABLE.contains(k))
    {
        spec.push(json!({"key": format!("doomed {kind}"), "type": kind, "tags": tags("doomed")}));
        spec.push(
            json!({"key": format!("survivor {kind}"), "type": kind, "tags": tags("survivor")}),
        );
    }
    // Plain objects in both buckets: the doomed one must be emptied first, the survivor's stay.
    for entry in &mut spec {
        if entry["type"] == "s3:bucket" {
            entry["objects"] = json!(3);
        }
    }
    // An untagged table: live with no tags, not an error.
    spec.push(json!({"key": "untagged", "type": "dynamodb:table"}));
    let seeded = seed(&moto.endpoint(), json!({ "resources": spec })).await;
    let sdk = sdk(&clients, DEFAULT_ACCOUNT, US).await;

    let mut failures = Vec::new();
    for kind in ResourceType::VARIANTS
        .iter()
        .filter(|k| !UNDELETABLE.contains(k))
    {
        let doomed = only(&seeded, &format!("doomed {kind}"));
        let survivor = only(&seeded, &format!("survivor {kind}"));
        // AWS keeps no tags on a launch configuration (the seeder makes it untagged).
        let tags = |lease: &str| match kind {
            ResourceType::AutoscalingLaunchConfiguration => Tags::default(),
            _ => as_tags(&tags(lease)),
        };
        failures.extend(check(&sdk, doomed, &tags("doomed"), survivor, &tags("survivor")).await);
    }
    assert!(
        failures.is_empty(),
        "{} failure(s):\n{}\nmoto log tail:\n{}",
        failures.len(),
        failures.join("\n"),
        tail(&moto)
    );

    let untagged = arn(&only(&seeded, "untagged").arn);
    assert_eq!(
        inspect(&sdk, &untagged, &moto).await,
        live(Tags::default(), &[])
    );
    // The survivor bucket kept its objects.
    let survivor_bucket = only(&seeded, "survivor s3:bucket");
    let s3 = s3_client(&moto).await;
    let listed = s3
        .list_objects_v2()
        .bucket(&survivor_bucket.id)
        .send()
        .await
        .expect("ListObjectsV2 of the survivor bucket");
    assert_eq!(listed.key_count(), Some(3));
}

/// Volumes and queues in the second account, through the role template; the default
/// account's config neither sees nor deletes them.
#[tokio::test(flavor = "multi_thread")]
async fn second_account_through_assume_role_and_no_reach_across_accounts() {
    let moto = Moto::start().await;
    let clients = clients(&moto);
    let mut spec = Vec::new();
    for kind in ["ec2:volume", "sqs:queue", "dynamodb:table"] {
        for who in ["doomed", "survivor"] {
            spec.push(json!({
                "key": format!("{who} {kind}"), "type": kind, "account": OTHER_ACCOUNT,
                "region": EU, "tags": tags(who)
            }));
        }
    }
    let seeded = seed(&moto.endpoint(), json!({ "resources": spec })).await;
    let other = sdk(&clients, OTHER_ACCOUNT, EU).await;
    let home = sdk(&clients, DEFAULT_ACCOUNT, EU).await;

    let mut failures = Vec::new();
    for kind in ["ec2:volume", "sqs:queue", "dynamodb:table"] {
        let doomed = only(&seeded, &format!("doomed {kind}"));
        let survivor = only(&seeded, &format!("survivor {kind}"));
        // From the wrong account the resource does not exist, and "deleting" it touches nothing.
        let survivor_arn = arn(&survivor.arn);
        assert_eq!(
            inspect(&home, &survivor_arn, &moto).await,
            Inspection::Gone,
            "{kind} seen from the default account"
        );
        failures.extend(
            check(
                &other,
                doomed,
                &as_tags(&tags("doomed")),
                survivor,
                &as_tags(&tags("survivor")),
            )
            .await,
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // The same volume ARN handed to the default account's config: no such volume there.
    let survivor_volume = arn(&only(&seeded, "survivor ec2:volume").arn);
    assert_eq!(
        delete(&home, &survivor_volume, &moto).await,
        Deleted::AlreadyGone
    );
    assert!(
        matches!(
            inspect(&other, &survivor_volume, &moto).await,
            Inspection::Live { .. }
        ),
        "the other account's volume survives a delete from the wrong account"
    );
}

async fn s3_client(moto: &Moto) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::from(&moto.sdk_config(US).await)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// Object versions, delete markers and plain objects, more than one ListObjectVersions page
/// (1000) of them, in a bucket made in another region than the config's.
#[tokio::test(flavor = "multi_thread")]
async fn versioned_bucket_over_a_page_of_versions_is_emptied_then_deleted() {
    let moto = Moto::start().await;
    let clients = clients(&moto);
    let seeded = seed(
        &moto.endpoint(),
        json!({"resources": [
            {"key": "doomed", "type": "s3:bucket", "region": EU, "tags": tags("doomed"),
             "objects": 1001, "versioned": true},
            {"key": "survivor", "type": "s3:bucket", "tags": tags("survivor"),
             "objects": 2, "versioned": true},
        ]}),
    )
    .await;
    let doomed = only(&seeded, "doomed");
    let survivor = only(&seeded, "survivor");
    let s3 = s3_client(&moto).await;
    let versions = |bucket: String| {
        let s3 = s3.clone();
        async move {
            let out = s3
                .list_object_versions()
                .bucket(bucket)
                .send()
                .await
                .expect("ListObjectVersions");
            (
                out.versions().len(),
                out.delete_markers().len(),
                out.is_truncated(),
            )
        }
    };
    // 1001 plain objects (version `null`), 3 versions of one key, 1 version plus a delete
    // marker of another: 1006 entries, so the deleter must follow a second page. Keys sort,
    // so `deleted` (a version and its marker) opens the first page of 1000.
    assert_eq!(
        versions(doomed.id.clone()).await,
        (999, 1, Some(true)),
        "first page"
    );
    let sdk = sdk(&clients, DEFAULT_ACCOUNT, US).await;
    let doomed_arn = arn(&doomed.arn);

    assert_eq!(
        inspect(&sdk, &doomed_arn, &moto).await,
        live(as_tags(&tags("doomed")), &[])
    );
    assert_eq!(delete(&sdk, &doomed_arn, &moto).await, Deleted::Deleted);
    assert_eq!(inspect(&sdk, &doomed_arn, &moto).await, Inspection::Gone);
    assert_eq!(delete(&sdk, &doomed_arn, &moto).await, Deleted::AlreadyGone);
    assert_eq!(
        inspect(&sdk, &arn(&survivor.arn), &moto).await,
        live(as_tags(&tags("survivor")), &[])
    );
    // 2 plain + 3 + 1 versions, 1 delete marker: untouched.
    assert_eq!(versions(survivor.id.clone()).await, (6, 1, Some(false)));
}

#[tokio::test(flavor = "multi_thread")]
async fn attached_volume_depends_on_its_instance_and_is_in_use_until_it_is_terminated() {
    let moto = Moto::start().await;
    let clients = clients(&moto);
    let seeded = seed(
        &moto.endpoint(),
        json!({"resources": [
            {"key": "volume", "type": "ec2:volume", "tags": tags("doomed"), "in_use": true},
        ]}),
    )
    .await;
    let volume = only(&seeded, "volume");
    let [instance] = &volume.used_by[..] else {
        panic!("one instance uses the volume: {volume:?}");
    };
    let (volume, instance) = (arn(&volume.arn), arn(instance));
    let sdk = sdk(&clients, DEFAULT_ACCOUNT, US).await;

    assert_eq!(
        inspect(&sdk, &volume, &moto).await,
        live(as_tags(&tags("doomed")), &[instance.as_str()])
    );
    // moto enforces this one, like AWS: VolumeInUse.
    let refused = aws::delete(&sdk, &volume).await;
    assert!(
        // The SDK's own error is kept as the source, for the log.
        matches!(&refused, Err(DeleteError::InUse { message: m, source: Some(_) }) if m.contains("VolumeInUse")),
        "{refused:?}"
    );
    assert_eq!(delete(&sdk, &instance, &moto).await, Deleted::Deleted);
    assert_eq!(inspect(&sdk, &instance, &moto).await, Inspection::Gone);
    assert_eq!(
        inspect(&sdk, &volume, &moto).await,
        live(as_tags(&tags("doomed")), &[])
    );
    assert_eq!(delete(&sdk, &volume, &moto).await, Deleted::Deleted);
    assert_eq!(inspect(&sdk, &volume, &moto).await, Inspection::Gone);
}

#[tokio::test(flavor = "multi_thread")]
async fn snapshot_backing_an_ami_depends_on_it_and_is_in_use_until_it_is_deregistered() {
    let moto = Moto::start().await;
    let clients = clients(&moto);
    let seeded = seed(
        &moto.endpoint(),
        json!({"resources": [{"key": "image", "type": "ec2:image", "tags": tags("doomed")}]}),
    )
    .await;
    let image = only(&seeded, "image");
    let snapshot_id = image
        .snapshot_id
        .as_deref()
        .expect("moto backs every AMI with a snapshot");
    let image = arn(&image.arn);
    let snapshot = arn(&format!(
        "arn:aws:ec2:{US}:{DEFAULT_ACCOUNT}:snapshot/{snapshot_id}"
    ));
    let sdk = sdk(&clients, DEFAULT_ACCOUNT, US).await;

    // The backing snapshot carries no tags of its own.
    assert_eq!(
        inspect(&sdk, &snapshot, &moto).await,
        live(Tags::default(), &[image.as_str()])
    );
    // moto enforces this one, like AWS: InvalidSnapshot.InUse.
    let refused = aws::delete(&sdk, &snapshot).await;
    assert!(
        matches!(&refused, Err(DeleteError::InUse { message: m, source: Some(_) }) if m.contains("InvalidSnapshot.InUse")),
        "{refused:?}"
    );
    assert_eq!(delete(&sdk, &image, &moto).await, Deleted::Deleted);
    assert_eq!(
        inspect(&sdk, &snapshot, &moto).await,
        live(Tags::default(), &[])
    );
    assert_eq!(delete(&sdk, &snapshot, &moto).await, Deleted::Deleted);
    assert_eq!(inspect(&sdk, &snapshot, &moto).await, Inspection::Gone);
}

/// A security group used by an instance and by an unattached interface depends on both (the
/// instance's own primary interface goes with the instance); an interface and an elastic IP on
/// an instance depend on it. moto lets all three be deleted while in use (AWS does not), so
/// only `depends_on` is checked before the users are gone.
#[tokio::test(flavor = "multi_thread")]
async fn group_interface_and_address_in_use_depend_on_their_users() {
    let moto = Moto::start().await;
    let clients = clients(&moto);
    let seeded = seed(
        &moto.endpoint(),
        json!({"resources": [
            {"key": "group", "type": "ec2:security-group", "tags": tags("g"), "in_use": true},
            {"key": "eni", "type": "ec2:network-interface", "tags": tags("e"), "in_use": true},
            {"key": "eip", "type": "ec2:elastic-ip", "tags": tags("a"), "in_use": true},
        ]}),
    )
    .await;
    let sdk = sdk(&clients, DEFAULT_ACCOUNT, US).await;

    for (key, lease) in [("group", "g"), ("eni", "e"), ("eip", "a")] {
        let resource = only(&seeded, key);
        let users: Vec<&str> = resource.used_by.iter().map(String::as_str).collect();
        assert!(!users.is_empty(), "{resource:?}");
        let this = arn(&resource.arn);
        assert_eq!(
            inspect(&sdk, &this, &moto).await,
            live(as_tags(&tags(lease)), &users),
            "{key}"
        );
        // The reaper's order: users first, then the resource.
        for user in &users {
            assert_eq!(
                delete(&sdk, &arn(user), &moto).await,
                Deleted::Deleted,
                "{user}"
            );
        }
        assert_eq!(
            inspect(&sdk, &this, &moto).await,
            live(as_tags(&tags(lease)), &[]),
            "{key} once its users are gone"
        );
        assert_eq!(delete(&sdk, &this, &moto).await, Deleted::Deleted, "{key}");
        assert_eq!(inspect(&sdk, &this, &moto).await, Inspection::Gone, "{key}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn terminated_instance_is_gone_and_deleting_it_is_already_gone() {
    let moto = Moto::start().await;
    let clients = clients(&moto);
    let seeded = seed(
        &moto.endpoint(),
        json!({"resources": [
            {"key": "gone", "type": "ec2:instance", "tags": tags("gone"), "terminated": true},
        ]}),
    )
    .await;
    let instance = arn(&only(&seeded, "gone").arn);
    let sdk = sdk(&clients, DEFAULT_ACCOUNT, US).await;

    assert_eq!(inspect(&sdk, &instance, &moto).await, Inspection::Gone);
    assert_eq!(delete(&sdk, &instance, &moto).await, Deleted::AlreadyGone);
    // An id moto never heard of: the same answers.
    let unknown = arn(&format!(
        "arn:aws:ec2:{US}:{DEFAULT_ACCOUNT}:instance/i-0123456789abcdef0"
    ));
    assert_eq!(inspect(&sdk, &unknown, &moto).await, Inspection::Gone);
    assert_eq!(delete(&sdk, &unknown, &moto).await, Deleted::AlreadyGone);
}

#[tokio::test(flavor = "multi_thread")]
async fn unsupported_types_are_refused_before_any_call() {
    // A closed port: any call would fail as `Aws`, not `Unsupported`.
    let moto_less = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url("http://127.0.0.1:9")
        .region(aws_config::Region::new(US))
        .credentials_provider(aws_sdk_sts::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .load()
        .await;
    for (s, ty) in [
        ("arn:aws:iam::123456789012:group/ci", "iam:group"),
        (
            "arn:aws:ec2:us-east-1:123456789012:transit-gateway/tgw-1",
            "ec2:transit-gateway",
        ),
        (
            "arn:aws:lambda:us-east-1:123456789012:function:f:7",
            "lambda:function:f:7",
        ),
        (
            "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/2026",
            "dynamodb:table/t/stream/2026",
        ),
    ] {
        let a = arn(s);
        let inspected = aws::inspect(&moto_less, &a).await;
        assert!(
            matches!(&inspected, Err(DeleteError::Unsupported(t)) if t == ty),
            "inspect {s}: {inspected:?}"
        );
        let deleted = aws::delete(&moto_less, &a).await;
        assert!(
            matches!(&deleted, Err(DeleteError::Unsupported(t)) if t == ty),
            "delete {s}: {deleted:?}"
        );
    }
    assert_eq!(ResourceType::parse("ec2:transit-gateway"), None);
}

/// AWS returns a function's tags only to callers also allowed `lambda:ListTags`; others get a
/// `TagsError` and no tags. moto always returns the tags, so the proxy answers GetFunction the
/// way AWS answers such a caller: the function must not read as untagged (which is reapable).
#[tokio::test(flavor = "multi_thread")]
async fn lambda_tags_unreadable_is_an_error_not_untagged() {
    let moto = Moto::start().await;
    let seeded = seed(
        &moto.endpoint(),
        json!({"resources": [{"key": "fn", "type": "lambda:function", "tags": tags("l-1")}]}),
    )
    .await;
    let function = arn(&only(&seeded, "fn").arn);
    let proxy = crate::support::proxy::FaultProxy::start(&moto.endpoint()).await;
    let aws = format!(
        "regions = [\"{US}\"]\nendpoint_url = \"{}\"\nemulator = true\nmax_attempts = 1\n\n\
         [[aws.accounts]]\nid = \"{DEFAULT_ACCOUNT}\"\n",
        proxy.endpoint()
    );
    let clients = AwsClients::new(
        Workdir::with_config(&config_text_with_aws(&aws))
            .config()
            .aws,
    );
    let sdk = sdk(&clients, DEFAULT_ACCOUNT, US).await;
    // Through the proxy, untouched: live with its tags (so the stand-in below is the only change).
    assert_eq!(
        inspect(&sdk, &function, &moto).await,
        live(as_tags(&tags("l-1")), &[])
    );
    proxy.set_fault(
        "GetFunction",
        crate::support::proxy::Fault::Respond(
            200,
            r#"{"Configuration": {"FunctionName": "f"},
                "TagsError": {"ErrorCode": "AccessDeniedException",
                              "Message": "not authorized to perform: lambda:ListTags"}}"#,
        ),
        None,
    );
    match aws::inspect(&sdk, &function).await {
        Err(DeleteError::Aws { message: msg, .. }) => assert!(
            msg.contains("tags unreadable") && msg.contains("lambda:ListTags"),
            "{msg}"
        ),
        other => panic!("expected an error, got {other:?}"),
    }
    assert_eq!(proxy.count("GetFunction"), 2);
}

/// A tagged EC2 resource id's ARN in the default account and `US`, as the tagging API spells it.
fn ec2_arn(kind: &str, id: &str) -> Arn {
    arn(&format!("arn:aws:ec2:{US}:{DEFAULT_ACCOUNT}:{kind}/{id}"))
}

pub(crate) fn ec2_tags(value: &Value) -> Vec<aws_sdk_ec2::types::Tag> {
    let map: BTreeMap<String, String> =
        serde_json::from_value(value.clone()).expect("tags are a string map");
    map.into_iter()
        .map(|(k, v)| aws_sdk_ec2::types::Tag::builder().key(k).value(v).build())
        .collect()
}

/// A whole VPC as an ephemeral environment leaves it, every member tagged; plus what AWS (and
/// moto) made with it, untagged: the main route table, default security group and network ACL.
pub(crate) struct Family {
    /// Every tagged member, by what it is.
    pub(crate) members: BTreeMap<&'static str, Arn>,
    pub(crate) main_route_table: Arn,
    pub(crate) default_acl: Arn,
    /// An untagged VPC next to it, with a subnet and an attached internet gateway.
    pub(crate) neighbour: [Arn; 3],
}

/// Builds the family straight on moto (not through the proxy the reaping goes through).
pub(crate) async fn build_family(ec2: &aws_sdk_ec2::Client, tagged: &Value) -> Family {
    use aws_sdk_ec2::types::VpcEndpointType;
    let tag = |id: &str| {
        let req = ec2
            .create_tags()
            .resources(id)
            .set_tags(Some(ec2_tags(tagged)));
        async move { req.send().await.expect("CreateTags") }
    };
    let vpc = ec2
        .create_vpc()
        .cidr_block("10.1.0.0/16")
        .send()
        .await
        .expect("CreateVpc")
        .vpc
        .and_then(|v| v.vpc_id)
        .expect("vpc id");
    let subnet = |cidr: &'static str, vpc: String| async move {
        ec2.create_subnet()
            .vpc_id(vpc)
            .cidr_block(cidr)
            .availability_zone(format!("{US}a"))
            .send()
            .await
            .expect("CreateSubnet")
            .subnet
            .and_then(|s| s.subnet_id)
            .expect("subnet id")
    };
    let (public, private) = (
        subnet("10.1.1.0/24", vpc.clone()).await,
        subnet("10.1.2.0/24", vpc.clone()).await,
    );
    let igw = ec2
        .create_internet_gateway()
        .send()
        .await
        .expect("CreateInternetGateway")
        .internet_gateway
        .and_then(|g| g.internet_gateway_id)
        .expect("igw id");
    ec2.attach_internet_gateway()
        .internet_gateway_id(&igw)
        .vpc_id(&vpc)
        .send()
        .await
        .expect("AttachInternetGateway");
    let table = ec2
        .create_route_table()
        .vpc_id(&vpc)
        .send()
        .await
        .expect("CreateRouteTable")
        .route_table
        .and_then(|t| t.route_table_id)
        .expect("rtb id");
    ec2.associate_route_table()
        .route_table_id(&table)
        .subnet_id(&public)
        .send()
        .await
        .expect("AssociateRouteTable");
    ec2.create_route()
        .route_table_id(&table)
        .destination_cidr_block("0.0.0.0/0")
        .gateway_id(&igw)
        .send()
        .await
        .expect("CreateRoute");
    let allocation = ec2
        .allocate_address()
        .domain(aws_sdk_ec2::types::DomainType::Vpc)
        .send()
        .await
        .expect("AllocateAddress")
        .allocation_id
        .expect("allocation id");
    let nat = ec2
        .create_nat_gateway()
        .subnet_id(&private)
        .allocation_id(&allocation)
        .send()
        .await
        .expect("CreateNatGateway")
        .nat_gateway
        .and_then(|n| n.nat_gateway_id)
        .expect("nat id");
    let endpoint = ec2
        .create_vpc_endpoint()
        .vpc_id(&vpc)
        .service_name(format!("com.amazonaws.{US}.s3"))
        .vpc_endpoint_type(VpcEndpointType::Gateway)
        .route_table_ids(&table)
        .send()
        .await
        .expect("CreateVpcEndpoint")
        .vpc_endpoint
        .and_then(|e| e.vpc_endpoint_id)
        .expect("vpce id");
    let group = ec2
        .create_security_group()
        .vpc_id(&vpc)
        .group_name("family-web")
        .description("the family's web tier")
        .send()
        .await
        .expect("CreateSecurityGroup")
        .group_id
        .expect("sg id");
    let eigw = ec2
        .create_egress_only_internet_gateway()
        .vpc_id(&vpc)
        .send()
        .await
        .expect("CreateEgressOnlyInternetGateway")
        .egress_only_internet_gateway
        .and_then(|g| g.egress_only_internet_gateway_id)
        .expect("eigw id");
    let acl = ec2
        .create_network_acl()
        .vpc_id(&vpc)
        .send()
        .await
        .expect("CreateNetworkAcl")
        .network_acl
        .and_then(|a| a.network_acl_id)
        .expect("acl id");
    // The private subnet moves from the default ACL to the family's.
    let acls = ec2
        .describe_network_acls()
        .filters(filter("vpc-id", &vpc))
        .send()
        .await
        .expect("DescribeNetworkAcls");
    let default_acl = acls
        .network_acls()
        .iter()
        .find(|a| a.is_default() == Some(true))
        .expect("the VPC's default ACL");
    let association = default_acl
        .associations()
        .iter()
        .find(|a| a.subnet_id() == Some(private.as_str()))
        .and_then(|a| a.network_acl_association_id())
        .expect("the private subnet's ACL association");
    ec2.replace_network_acl_association()
        .association_id(association)
        .network_acl_id(&acl)
        .send()
        .await
        .expect("ReplaceNetworkAclAssociation");
    let default_acl = default_acl.network_acl_id().expect("acl id").to_owned();
    let dhcp = ec2
        .create_dhcp_options()
        .dhcp_configurations(
            aws_sdk_ec2::types::NewDhcpConfiguration::builder()
                .key("domain-name")
                .values("family.internal")
                .build(),
        )
        .send()
        .await
        .expect("CreateDhcpOptions")
        .dhcp_options
        .and_then(|d| d.dhcp_options_id)
        .expect("dopt id");
    ec2.associate_dhcp_options()
        .dhcp_options_id(&dhcp)
        .vpc_id(&vpc)
        .send()
        .await
        .expect("AssociateDhcpOptions");
    let main_route_table = ec2
        .describe_route_tables()
        .filters(filter("vpc-id", &vpc))
        .filters(filter("association.main", "true"))
        .send()
        .await
        .expect("DescribeRouteTables")
        .route_tables()
        .first()
        .and_then(|t| t.route_table_id())
        .expect("the VPC's main route table")
        .to_owned();

    // The neighbour: untagged, never the reaper's.
    let neighbour = ec2
        .create_vpc()
        .cidr_block("10.2.0.0/16")
        .send()
        .await
        .expect("CreateVpc")
        .vpc
        .and_then(|v| v.vpc_id)
        .expect("vpc id");
    let neighbour_subnet = ec2
        .create_subnet()
        .vpc_id(&neighbour)
        .cidr_block("10.2.1.0/24")
        .send()
        .await
        .expect("CreateSubnet")
        .subnet
        .and_then(|s| s.subnet_id)
        .expect("subnet id");
    let neighbour_igw = ec2
        .create_internet_gateway()
        .send()
        .await
        .expect("CreateInternetGateway")
        .internet_gateway
        .and_then(|g| g.internet_gateway_id)
        .expect("igw id");
    ec2.attach_internet_gateway()
        .internet_gateway_id(&neighbour_igw)
        .vpc_id(&neighbour)
        .send()
        .await
        .expect("AttachInternetGateway");
    // Peered with the neighbour: the connection is the family's, the neighbour is not.
    let peering = ec2
        .create_vpc_peering_connection()
        .vpc_id(&vpc)
        .peer_vpc_id(&neighbour)
        .send()
        .await
        .expect("CreateVpcPeeringConnection")
        .vpc_peering_connection
        .and_then(|p| p.vpc_peering_connection_id)
        .expect("pcx id");

    let members = [
        ("vpc", "vpc", vpc),
        ("public subnet", "subnet", public),
        ("private subnet", "subnet", private),
        ("internet gateway", "internet-gateway", igw),
        ("route table", "route-table", table),
        ("elastic ip", "elastic-ip", allocation),
        ("nat gateway", "natgateway", nat),
        ("endpoint", "vpc-endpoint", endpoint),
        ("security group", "security-group", group),
        ("egress-only gateway", "egress-only-internet-gateway", eigw),
        ("network acl", "network-acl", acl),
        ("dhcp options", "dhcp-options", dhcp),
        ("peering", "vpc-peering-connection", peering),
    ];
    let mut by_name = BTreeMap::new();
    for (name, kind, id) in members {
        tag(&id).await;
        by_name.insert(name, ec2_arn(kind, &id));
    }
    Family {
        members: by_name,
        main_route_table: ec2_arn("route-table", &main_route_table),
        default_acl: ec2_arn("network-acl", &default_acl),
        neighbour: [
            ec2_arn("vpc", &neighbour),
            ec2_arn("subnet", &neighbour_subnet),
            ec2_arn("internet-gateway", &neighbour_igw),
        ],
    }
}

/// What AWS does when a subnet is deleted and moto 5.2.5 does not: its ACL association goes
/// (here: back to the VPC's default ACL, the only move moto offers).
pub(crate) async fn release_dead_acl_associations(
    ec2: &aws_sdk_ec2::Client,
    acl: &Arn,
    default_acl: &Arn,
) {
    let out = ec2
        .describe_network_acls()
        .network_acl_ids(acl.resource_id())
        .send()
        .await
        .expect("DescribeNetworkAcls");
    let associations: Vec<String> = out
        .network_acls()
        .iter()
        .flat_map(|a| a.associations())
        .filter_map(|a| a.network_acl_association_id().map(str::to_owned))
        .collect();
    assert!(!associations.is_empty(), "the dead association moto keeps");
    for association in associations {
        ec2.replace_network_acl_association()
            .association_id(association)
            .network_acl_id(default_acl.resource_id())
            .send()
            .await
            .expect("ReplaceNetworkAclAssociation");
    }
}

pub(crate) fn filter(name: &str, value: &str) -> aws_sdk_ec2::types::Filter {
    aws_sdk_ec2::types::Filter::builder()
        .name(name)
        .values(value)
        .build()
}

/// A whole tagged VPC is reaped the way the reaper goes (by rank, each member re-read right
/// before its delete, held while anything it depends on is alive): every member's live
/// dependants are named and already gone when its turn comes, the deletes reach AWS in a valid
/// order, every member is gone from moto's own listings afterwards (and already gone when
/// deleted again), and the untagged neighbour VPC, peered with it, is untouched. The defaults
/// AWS made (main route table, default ACL, security group) go with the VPC; the region's
/// default VPC and its subnets are refused even when tagged.
///
/// moto 5.2.5 differs from AWS here: a NAT gateway is `deleted` at once (AWS: `deleting` for a
/// minute, holding its subnet and address meanwhile — the reaper then retries them on a later
/// pass) and keeps its interface, address still associated (AWS deletes the interface); a
/// VPC's DHCP option set is deleted with the VPC (AWS keeps it, and it is reaped after); and
/// DeleteSubnet, DeleteVpc and DetachInternetGateway enforce few of AWS's dependency checks,
/// so the order is checked on what the deleters asked for, not on what moto refused.
#[tokio::test(flavor = "multi_thread")]
async fn a_tagged_vpc_is_reaped_whole_in_dependency_order_and_its_neighbour_survives() {
    let moto = Moto::start().await;
    let direct = aws_sdk_ec2::Client::new(&moto.sdk_config(US).await);
    let family_tags = tags("family");
    let family = build_family(&direct, &family_tags).await;
    let proxy = crate::support::proxy::FaultProxy::start(&moto.endpoint()).await;
    let aws_text = format!(
        "regions = [\"{US}\"]\nendpoint_url = \"{}\"\nemulator = true\nmax_attempts = 1\n\n\
         [[aws.accounts]]\nid = \"{DEFAULT_ACCOUNT}\"\n",
        proxy.endpoint()
    );
    let clients = AwsClients::new(
        Workdir::with_config(&config_text_with_aws(&aws_text))
            .config()
            .aws,
    );
    let sdk = sdk(&clients, DEFAULT_ACCOUNT, US).await;
    let m = |name: &str| family.members[name].clone();

    // Who waits for whom, as inspect tells it before anything is deleted.
    let depends_on = |inspection: Inspection| match inspection {
        Inspection::Live { tags, depends_on } => {
            assert_eq!(tags, as_tags(&family_tags));
            let mut d: Vec<String> = depends_on.iter().map(|a| a.to_string()).collect();
            d.sort();
            d
        }
        Inspection::Gone => panic!("gone before reaping"),
    };
    let sorted = |names: &[&str]| {
        let mut v: Vec<String> = names.iter().map(|n| m(n).to_string()).collect();
        v.sort();
        v
    };
    for (member, want) in [
        (
            "vpc",
            sorted(&[
                "public subnet",
                "private subnet",
                "internet gateway",
                "egress-only gateway",
                "route table",
                "security group",
                "network acl",
                "nat gateway",
                "endpoint",
            ]),
        ),
        ("private subnet", sorted(&["nat gateway"])),
        ("public subnet", Vec::new()),
        ("internet gateway", sorted(&["nat gateway"])),
        ("elastic ip", sorted(&["nat gateway"])),
        ("network acl", sorted(&["private subnet"])),
        ("dhcp options", sorted(&["vpc"])),
        ("route table", Vec::new()),
        ("nat gateway", Vec::new()),
        ("endpoint", Vec::new()),
        ("peering", Vec::new()),
    ] {
        assert_eq!(
            depends_on(inspect(&sdk, &m(member), &moto).await),
            want,
            "{member}"
        );
    }

    // What AWS made is never deleted on its own, tagged or not.
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
    let default_subnet = direct
        .describe_subnets()
        .filters(filter("vpc-id", &default_vpc))
        .send()
        .await
        .expect("DescribeSubnets")
        .subnets()
        .first()
        .and_then(|s| s.subnet_id())
        .expect("a default subnet")
        .to_owned();
    direct
        .create_tags()
        .resources(&default_vpc)
        .resources(&default_subnet)
        .set_tags(Some(ec2_tags(&family_tags)))
        .send()
        .await
        .expect("tag the defaults");
    for refused in [
        ec2_arn("vpc", &default_vpc),
        ec2_arn("subnet", &default_subnet),
        family.main_route_table.clone(),
        family.default_acl.clone(),
    ] {
        let inspected = aws::inspect(&sdk, &refused).await;
        assert!(
            matches!(&inspected, Err(DeleteError::Refused(why)) if why.contains(refused.resource_id())),
            "inspect {refused}: {inspected:?}"
        );
        let deleted = aws::delete(&sdk, &refused).await;
        assert!(
            matches!(&deleted, Err(DeleteError::Refused(_))),
            "delete {refused}: {deleted:?}"
        );
    }

    // Reaped as the reaper goes: by rank (then ARN), re-read right before each delete.
    let mut order: Vec<(String, Arn)> = family
        .members
        .iter()
        .map(|(name, a)| ((*name).to_owned(), a.clone()))
        .collect();
    order.sort_by_key(|(_, a)| {
        (
            aws::kind(ResourceType::parse(&a.resource_type()).expect("a deletable type")).rank,
            a.clone(),
        )
    });
    let mut gone: Vec<Arn> = Vec::new();
    for (name, member) in &order {
        match inspect(&sdk, member, &moto).await {
            Inspection::Live { depends_on, .. } => {
                let waiting: Vec<&Arn> = depends_on.iter().filter(|d| !gone.contains(d)).collect();
                assert!(
                    waiting.is_empty(),
                    "{name} comes before {waiting:?}, which it depends on"
                );
                if name == "network acl" {
                    // moto keeps a deleted subnet's ACL association (AWS drops it with the
                    // subnet), so the ACL is in use there until the association is moved.
                    let refused = aws::delete(&sdk, member).await;
                    assert!(
                        matches!(&refused, Err(DeleteError::InUse { message, .. }) if message.contains("DependencyViolation")),
                        "moto now drops a deleted subnet's ACL association? {refused:?}"
                    );
                    release_dead_acl_associations(&direct, member, &family.default_acl).await;
                }
                assert_eq!(
                    delete(&sdk, member, &moto).await,
                    Deleted::Deleted,
                    "{name}"
                );
            }
            // moto deletes a VPC's DHCP option set with it (AWS does not).
            Inspection::Gone if name == "dhcp options" => {}
            Inspection::Gone => panic!("{name} gone before its turn"),
        }
        gone.push(member.clone());
    }
    let first_round = proxy.requests();
    for (name, member) in &order {
        assert_eq!(
            inspect(&sdk, member, &moto).await,
            Inspection::Gone,
            "{name}"
        );
        assert_eq!(
            delete(&sdk, member, &moto).await,
            Deleted::AlreadyGone,
            "{name} deleted again"
        );
    }

    // The deletes of the first round reached AWS in an order AWS accepts.
    let mutating: Vec<String> = first_round
        .into_iter()
        .map(|r| r.operation)
        .filter(|op| {
            ["Delete", "Release", "Detach", "Disassociate"]
                .iter()
                .any(|v| op.starts_with(v))
        })
        .collect();
    let first = |op: &str| {
        mutating
            .iter()
            .position(|o| o == op)
            .unwrap_or_else(|| panic!("no {op} in {mutating:?}"))
    };
    let last = |op: &str| {
        mutating
            .iter()
            .rposition(|o| o == op)
            .unwrap_or_else(|| panic!("no {op} in {mutating:?}"))
    };
    for (before, after) in [
        ("DeleteNatGateway", "ReleaseAddress"),
        ("DeleteNatGateway", "DeleteSubnet"),
        ("DeleteNatGateway", "DetachInternetGateway"),
        ("DeleteVpcEndpoints", "DeleteRouteTable"),
        ("DisassociateRouteTable", "DeleteRouteTable"),
        ("DetachInternetGateway", "DeleteInternetGateway"),
        ("DeleteSubnet", "DeleteNetworkAcl"),
        ("DeleteSubnet", "DeleteVpc"),
        ("DeleteRouteTable", "DeleteVpc"),
        ("DeleteSecurityGroup", "DeleteVpc"),
        ("DeleteNetworkAcl", "DeleteVpc"),
        ("DeleteInternetGateway", "DeleteVpc"),
        ("DeleteEgressOnlyInternetGateway", "DeleteVpc"),
        ("DeleteVpcPeeringConnection", "DeleteVpc"),
    ] {
        assert!(
            last(before) < first(after),
            "{before} after {after}: {mutating:?}"
        );
    }
    assert_eq!(
        mutating.iter().filter(|o| *o == "DeleteSubnet").count(),
        2,
        "{mutating:?}"
    );

    // moto's own listings: nothing of the family is left, the neighbour is whole.
    let vpcs: Vec<String> = direct
        .describe_vpcs()
        .send()
        .await
        .expect("DescribeVpcs")
        .vpcs()
        .iter()
        .filter_map(|v| v.vpc_id().map(str::to_owned))
        .collect();
    assert!(
        !vpcs.contains(&m("vpc").resource_id().to_owned()),
        "{vpcs:?}"
    );
    assert!(vpcs.contains(&family.neighbour[0].resource_id().to_owned()));
    let subnets: Vec<String> = direct
        .describe_subnets()
        .send()
        .await
        .expect("DescribeSubnets")
        .subnets()
        .iter()
        .filter_map(|s| s.subnet_id().map(str::to_owned))
        .collect();
    for name in ["public subnet", "private subnet"] {
        assert!(
            !subnets.contains(&m(name).resource_id().to_owned()),
            "{name}"
        );
    }
    assert!(subnets.contains(&family.neighbour[1].resource_id().to_owned()));
    let gateways = direct
        .describe_internet_gateways()
        .send()
        .await
        .expect("DescribeInternetGateways");
    let igw_ids: Vec<&str> = gateways
        .internet_gateways()
        .iter()
        .filter_map(|g| g.internet_gateway_id())
        .collect();
    assert!(!igw_ids.contains(&m("internet gateway").resource_id()));
    let neighbour_igw = gateways
        .internet_gateways()
        .iter()
        .find(|g| g.internet_gateway_id() == Some(family.neighbour[2].resource_id()))
        .expect("the neighbour's gateway");
    assert_eq!(
        neighbour_igw.attachments().first().and_then(|a| a.vpc_id()),
        Some(family.neighbour[0].resource_id()),
        "still attached to the neighbour"
    );
    let tables = direct
        .describe_route_tables()
        .send()
        .await
        .expect("DescribeRouteTables");
    let table_ids: Vec<&str> = tables
        .route_tables()
        .iter()
        .filter_map(|t| t.route_table_id())
        .collect();
    assert!(!table_ids.contains(&m("route table").resource_id()));
    assert!(!table_ids.contains(&family.main_route_table.resource_id()));
    let addresses = direct
        .describe_addresses()
        .send()
        .await
        .expect("DescribeAddresses");
    assert!(
        addresses
            .addresses()
            .iter()
            .all(|a| a.allocation_id() != Some(m("elastic ip").resource_id()))
    );
    let nats = direct
        .describe_nat_gateways()
        .send()
        .await
        .expect("DescribeNatGateways");
    assert!(
        nats.nat_gateways()
            .iter()
            .filter(|n| n.nat_gateway_id() == Some(m("nat gateway").resource_id()))
            .all(|n| n.state().map(|s| s.as_str()) == Some("deleted"))
    );
    let endpoints = direct
        .describe_vpc_endpoints()
        .send()
        .await
        .expect("DescribeVpcEndpoints");
    assert!(
        endpoints
            .vpc_endpoints()
            .iter()
            .filter(|e| e.vpc_endpoint_id() == Some(m("endpoint").resource_id()))
            .all(|e| e.state().map(|s| s.as_str()) == Some("deleted"))
    );
    let groups = direct
        .describe_security_groups()
        .send()
        .await
        .expect("DescribeSecurityGroups");
    assert!(
        groups
            .security_groups()
            .iter()
            .all(|g| g.vpc_id() != Some(m("vpc").resource_id())),
        "the family's groups, default one included, are gone"
    );
    let acls = direct
        .describe_network_acls()
        .send()
        .await
        .expect("DescribeNetworkAcls");
    assert!(
        acls.network_acls()
            .iter()
            .all(|a| a.network_acl_id() != Some(m("network acl").resource_id()))
    );
    let eigws = direct
        .describe_egress_only_internet_gateways()
        .send()
        .await
        .expect("DescribeEgressOnlyInternetGateways");
    assert!(eigws.egress_only_internet_gateways().iter().all(
        |g| g.egress_only_internet_gateway_id() != Some(m("egress-only gateway").resource_id())
    ));
    let dhcp = direct
        .describe_dhcp_options()
        .send()
        .await
        .expect("DescribeDhcpOptions");
    assert!(
        dhcp.dhcp_options()
            .iter()
            .all(|d| d.dhcp_options_id() != Some(m("dhcp options").resource_id()))
    );
    let peerings = direct
        .describe_vpc_peering_connections()
        .send()
        .await
        .expect("DescribeVpcPeeringConnections");
    assert!(
        peerings
            .vpc_peering_connections()
            .iter()
            .filter(|p| p.vpc_peering_connection_id() == Some(m("peering").resource_id()))
            .all(|p| p.status().and_then(|s| s.code()).map(|c| c.as_str()) == Some("deleted"))
    );
}
