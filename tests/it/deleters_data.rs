//! The deleters of the data and platform services against moto: ECR repositories, Secrets
//! Manager secrets, KMS keys. For each type: inspect finds it live with the tags it was created
//! with and what must go first, delete deletes it, inspect finds it gone, a second delete finds
//! it already gone, and an identically-typed twin is untouched. One moto per service group.
//!
//! moto 5.2.5 cannot play these faithfully, so the paths are tested with recorded responses
//! from a canned responder on 127.0.0.1 instead:
//! - KMS: no API makes an AWS-managed key (`KeyManager = AWS`), so its refusal is tested on a
//!   recorded DescribeKey answer. ScheduleKeyDeletion takes a key id only (AWS: id or ARN),
//!   and leaves `PendingDeletionWindowInDays` unset.
//! - RDS: instances and clusters are deleted at once (AWS: `deleting` for minutes), so an
//!   instance in `deleting` is a recorded DescribeDBInstances answer; DeleteDBSubnetGroup never
//!   says a group is in use (AWS: `InvalidDBSubnetGroupStateFault`), a recorded answer too.
//!   DeleteDBCluster of a cluster with members is refused as AWS does.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_config::SdkConfig;
use ephemera::inventory::AwsClients;
use ephemera::model::{Arn, Tags};
use ephemera::reaper::aws::{self, DeleteError, Deleted, Inspection};

use crate::support::moto::{DEFAULT_ACCOUNT, Moto};
use crate::support::{Workdir, config_text_with_aws};

const US: &str = "us-east-1";

/// The daemon's own client builder over `endpoint`, for the default account in `US`.
async fn sdk(endpoint: &str) -> SdkConfig {
    let text = config_text_with_aws(&format!(
        "regions = [\"{US}\"]\nendpoint_url = \"{endpoint}\"\nemulator = true\nmax_attempts = 1\n\
         [[aws.accounts]]\nid = \"{DEFAULT_ACCOUNT}\"\n"
    ));
    AwsClients::new(Workdir::with_config(&text).config().aws)
        .config_for(DEFAULT_ACCOUNT, US)
        .await
        .expect("sdk config")
}

fn arn(s: &str) -> Arn {
    Arn::parse(s).unwrap_or_else(|e| panic!("{e}"))
}

/// The identity tags of `lease`, as a map and as [`Tags`].
fn lease_tags(lease: &str) -> BTreeMap<String, String> {
    [
        ("ephemera:lease-id", lease),
        ("ephemera:project", "web"),
        ("ephemera:owner", "ci-web"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn as_tags(map: &BTreeMap<String, String>) -> Tags {
    Tags::from_pairs(map.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

fn live(lease: &str, depends_on: &[&Arn]) -> Inspection {
    Inspection::Live {
        tags: as_tags(&lease_tags(lease)),
        depends_on: depends_on.iter().map(|a| (*a).clone()).collect(),
    }
}

/// The whole life of one deletion: `doomed` is inspected as `want`, deleted, gone, already
/// gone the second time; `twin` is live with its own lease's tags before and after. Returns
/// what went wrong, so one run reports every type.
async fn check(sdk: &SdkConfig, doomed: &Arn, want: Inspection, twin: &Arn) -> Vec<String> {
    let mut problems = Vec::new();
    let mut expect = |step: &str, got: String, want: String| {
        if got != want {
            problems.push(format!("{doomed} {step}: got {got}, want {want}"));
        }
    };
    let twin_live = format!("{:?}", Ok::<_, ()>(live("twin", &[])));
    let show = |r: Result<Inspection, DeleteError>| format!("{:?}", r.map_err(|e| e.to_string()));
    let shown = |r: Result<Deleted, DeleteError>| format!("{:?}", r.map_err(|e| e.to_string()));
    expect(
        "twin before",
        show(aws::inspect(sdk, twin).await),
        twin_live.clone(),
    );
    expect(
        "inspect",
        show(aws::inspect(sdk, doomed).await),
        format!("{:?}", Ok::<_, ()>(want)),
    );
    expect(
        "delete",
        shown(aws::delete(sdk, doomed).await),
        format!("{:?}", Ok::<_, ()>(Deleted::Deleted)),
    );
    expect(
        "inspect after",
        show(aws::inspect(sdk, doomed).await),
        format!("{:?}", Ok::<_, ()>(Inspection::Gone)),
    );
    expect(
        "delete again",
        shown(aws::delete(sdk, doomed).await),
        format!("{:?}", Ok::<_, ()>(Deleted::AlreadyGone)),
    );
    expect("twin after", show(aws::inspect(sdk, twin).await), twin_live);
    problems
}

/// A repository whose name holds a slash and whose images go with it, a secret (deleted with
/// a 7-day recovery window, then gone), a KMS key (scheduled for deletion, then gone).
#[tokio::test(flavor = "multi_thread")]
async fn repositories_secrets_and_keys_are_deleted_once_and_their_twins_stay() {
    let moto = Moto::start().await;
    let sdk = sdk(&moto.endpoint()).await;
    let tag_list = |lease: &str| lease_tags(lease).into_iter();

    let ecr = aws_sdk_ecr::Client::new(&sdk);
    let mut repos = Vec::new();
    for (name, lease) in [("team/doomed", "doomed"), ("team/twin", "twin")] {
        let out = ecr
            .create_repository()
            .repository_name(name)
            .set_tags(Some(
                tag_list(lease)
                    .map(|(k, v)| {
                        aws_sdk_ecr::types::Tag::builder()
                            .key(k)
                            .value(v)
                            .build()
                            .expect("tag")
                    })
                    .collect(),
            ))
            .send()
            .await
            .expect("create repository");
        let arn = arn(out
            .repository()
            .and_then(|r| r.repository_arn())
            .expect("arn"));
        repos.push(arn);
    }
    // An image: the repository is deleted with it (`force`).
    ecr.put_image()
        .repository_name("team/doomed")
        .image_manifest(r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":1,"digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000"},"layers":[]}"#)
        .image_tag("v1")
        .send()
        .await
        .expect("put image");

    let sm = aws_sdk_secretsmanager::Client::new(&sdk);
    let mut secrets = Vec::new();
    for lease in ["doomed", "twin"] {
        let out = sm
            .create_secret()
            .name(format!("db-pass-{lease}"))
            .secret_string("s3cret")
            .set_tags(Some(
                tag_list(lease)
                    .map(|(k, v)| {
                        aws_sdk_secretsmanager::types::Tag::builder()
                            .key(k)
                            .value(v)
                            .build()
                    })
                    .collect(),
            ))
            .send()
            .await
            .expect("create secret");
        secrets.push(arn(out.arn().expect("arn")));
    }

    let kms = aws_sdk_kms::Client::new(&sdk);
    let mut keys = Vec::new();
    for lease in ["doomed", "twin"] {
        let out = kms
            .create_key()
            .set_tags(Some(
                tag_list(lease)
                    .map(|(k, v)| {
                        aws_sdk_kms::types::Tag::builder()
                            .tag_key(k)
                            .tag_value(v)
                            .build()
                            .expect("tag")
                    })
                    .collect(),
            ))
            .send()
            .await
            .expect("create key");
        keys.push(arn(out.key_metadata().and_then(|m| m.arn()).expect("arn")));
    }

    let mut problems = Vec::new();
    for pair in [&repos, &secrets, &keys] {
        problems.extend(check(&sdk, &pair[0], live("doomed", &[]), &pair[1]).await);
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // What a deletion left behind: the secret is scheduled with a 7-day window, the key
    // pending deletion with one, not destroyed.
    let secret = sm
        .describe_secret()
        .secret_id(secrets[0].as_str())
        .send()
        .await
        .expect("a secret scheduled for deletion is still described");
    let deleted = secret.deleted_date().expect("scheduled").secs();
    assert!(
        deleted > chrono::Utc::now().timestamp() + 6 * 86_400,
        "{secret:?}"
    );
    let key = kms
        .describe_key()
        .key_id(keys[0].as_str())
        .send()
        .await
        .expect("describe key");
    let meta = key.key_metadata().expect("metadata");
    assert_eq!(
        meta.key_state(),
        Some(&aws_sdk_kms::types::KeyState::PendingDeletion)
    );
    // moto leaves the window itself unset; the date says it.
    let deletion = meta.deletion_date().expect("a deletion date").secs();
    assert!(
        deletion > chrono::Utc::now().timestamp() + 6 * 86_400,
        "{meta:?}"
    );
}

/// A responder on a loopback port that answers every request with one recorded body, and
/// keeps the operation each request named (`X-Amz-Target` or `Action=`); stops when dropped.
struct Canned {
    endpoint: String,
    seen: Arc<Mutex<Vec<String>>>,
    server: tokio::task::JoinHandle<()>,
}

impl Canned {
    async fn start(status: u16, content_type: &'static str, body: String) -> Canned {
        let status = axum::http::StatusCode::from_u16(status).expect("a status code");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding a loopback port");
        let endpoint = format!("http://{}", listener.local_addr().expect("bound"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
            let (log, body) = (Arc::clone(&log), body.clone());
            async move {
                let target = request
                    .headers()
                    .get("x-amz-target")
                    .and_then(|v| v.to_str().ok())
                    .map(|t| t.rsplit('.').next().unwrap_or(t).to_owned());
                let bytes = axum::body::to_bytes(request.into_body(), 1 << 20)
                    .await
                    .unwrap_or_default();
                let action = String::from_utf8_lossy(&bytes)
                    .split('&')
                    .find_map(|p| p.strip_prefix("Action=").map(str::to_owned));
                log.lock()
                    .expect("not poisoned")
                    .push(target.or(action).unwrap_or_default());
                (
                    status,
                    [(axum::http::header::CONTENT_TYPE, content_type)],
                    body,
                )
            }
        });
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Canned {
            endpoint,
            seen,
            server,
        }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().expect("not poisoned").clone()
    }
}

impl Drop for Canned {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// An AWS-managed key (`aws/s3`'s), as DescribeKey answers for one: refused by inspect and
/// delete alike, and nothing but the look is sent.
#[tokio::test(flavor = "multi_thread")]
async fn an_aws_managed_key_is_refused_without_a_scheduling_call() {
    let key = "arn:aws:kms:us-east-1:123456789012:key/0b5e5c4a-1111-2222-3333-444455556666";
    let body = serde_json::json!({"KeyMetadata": {
        "AWSAccountId": DEFAULT_ACCOUNT, "Arn": key,
        "KeyId": "0b5e5c4a-1111-2222-3333-444455556666", "KeyManager": "AWS",
        "KeyState": "Enabled", "Enabled": true, "Description": "Default key for S3"}});
    let canned = Canned::start(200, "application/x-amz-json-1.1", body.to_string()).await;
    let sdk = sdk(&canned.endpoint).await;
    let key = arn(key);
    assert!(
        matches!(aws::inspect(&sdk, &key).await, Err(DeleteError::Refused(_))),
        "inspect"
    );
    assert!(
        matches!(aws::delete(&sdk, &key).await, Err(DeleteError::Refused(_))),
        "delete"
    );
    assert_eq!(canned.seen(), ["DescribeKey", "DescribeKey"]);
}

const RDS_XMLNS: &str = "http://rds.amazonaws.com/doc/2014-10-31/";

/// A cluster with one member instance, an instance and both kinds of manual snapshot, and
/// a subnet group, each with a twin: the cluster depends on its member and is refused while
/// it lives; the snapshots are independent of what they were taken of.
#[tokio::test(flavor = "multi_thread")]
async fn rds_instances_clusters_snapshots_and_subnet_groups_go_in_order() {
    let moto = Moto::start().await;
    let sdk = sdk(&moto.endpoint()).await;
    let rds = aws_sdk_rds::Client::new(&sdk);
    let tags = |lease: &str| -> Vec<aws_sdk_rds::types::Tag> {
        lease_tags(lease)
            .into_iter()
            .map(|(k, v)| aws_sdk_rds::types::Tag::builder().key(k).value(v).build())
            .collect()
    };
    let subnets: Vec<String> = aws_sdk_ec2::Client::new(&sdk)
        .describe_subnets()
        .send()
        .await
        .expect("default subnets")
        .subnets()
        .iter()
        .filter_map(|s| s.subnet_id().map(str::to_owned))
        .collect();
    let mut groups = Vec::new();
    for lease in ["doomed", "twin"] {
        let out = rds
            .create_db_subnet_group()
            .db_subnet_group_name(format!("{lease}-subnets"))
            .db_subnet_group_description("test")
            .set_subnet_ids(Some(subnets.clone()))
            .set_tags(Some(tags(lease)))
            .send()
            .await
            .expect("create subnet group");
        groups.push(arn(out
            .db_subnet_group()
            .and_then(|g| g.db_subnet_group_arn())
            .expect("arn")));
    }
    let mut clusters = Vec::new();
    for lease in ["doomed", "twin"] {
        let out = rds
            .create_db_cluster()
            .db_cluster_identifier(format!("{lease}-cluster"))
            .engine("aurora-postgresql")
            .master_username("admin")
            .master_user_password("password123")
            .set_tags(Some(tags(lease)))
            .send()
            .await
            .expect("create cluster");
        clusters.push(arn(out
            .db_cluster()
            .and_then(|c| c.db_cluster_arn())
            .expect("arn")));
    }
    let mut instances = Vec::new();
    for (lease, cluster) in [("doomed", Some("doomed-cluster")), ("twin", None)] {
        let mut create = rds
            .create_db_instance()
            .db_instance_identifier(format!("{lease}-db"))
            .db_instance_class("db.t3.micro")
            .db_subnet_group_name(format!("{lease}-subnets"))
            .set_tags(Some(tags(lease)));
        create = match cluster {
            Some(c) => create.engine("aurora-postgresql").db_cluster_identifier(c),
            None => create
                .engine("postgres")
                .allocated_storage(20)
                .master_username("admin")
                .master_user_password("password123"),
        };
        let out = create.send().await.expect("create instance");
        instances.push(arn(out
            .db_instance()
            .and_then(|i| i.db_instance_arn())
            .expect("arn")));
    }
    let mut snapshots = Vec::new();
    for lease in ["doomed", "twin"] {
        let out = rds
            .create_db_snapshot()
            .db_snapshot_identifier(format!("{lease}-snapshot"))
            .db_instance_identifier("twin-db")
            .set_tags(Some(tags(lease)))
            .send()
            .await
            .expect("create snapshot");
        snapshots.push(arn(out
            .db_snapshot()
            .and_then(|s| s.db_snapshot_arn())
            .expect("arn")));
    }
    let mut cluster_snapshots = Vec::new();
    for lease in ["doomed", "twin"] {
        let out = rds
            .create_db_cluster_snapshot()
            .db_cluster_snapshot_identifier(format!("{lease}-cluster-snapshot"))
            .db_cluster_identifier("twin-cluster")
            .set_tags(Some(tags(lease)))
            .send()
            .await
            .expect("create cluster snapshot");
        cluster_snapshots.push(arn(out
            .db_cluster_snapshot()
            .and_then(|s| s.db_cluster_snapshot_arn())
            .expect("arn")));
    }

    // The cluster waits for its member, and AWS (and moto) refuses it before.
    assert_eq!(
        aws::inspect(&sdk, &clusters[0])
            .await
            .expect("inspect cluster"),
        live("doomed", &[&instances[0]])
    );
    let refused = aws::delete(&sdk, &clusters[0]).await;
    assert!(
        matches!(refused, Err(DeleteError::InUse { .. })),
        "{refused:?}"
    );

    let mut problems = Vec::new();
    // The member first, then its cluster; the twins are a standalone instance and an empty
    // cluster.
    problems.extend(check(&sdk, &instances[0], live("doomed", &[]), &instances[1]).await);
    problems.extend(check(&sdk, &clusters[0], live("doomed", &[]), &clusters[1]).await);
    problems.extend(check(&sdk, &snapshots[0], live("doomed", &[]), &snapshots[1]).await);
    problems.extend(
        check(
            &sdk,
            &cluster_snapshots[0],
            live("doomed", &[]),
            &cluster_snapshots[1],
        )
        .await,
    );
    problems.extend(check(&sdk, &groups[0], live("doomed", &[]), &groups[1]).await);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // Deleting the instance took no final snapshot.
    let left = rds.describe_db_snapshots().send().await.expect("snapshots");
    let names: Vec<&str> = left
        .db_snapshots()
        .iter()
        .filter_map(|s| s.db_snapshot_identifier())
        .filter(|n| !n.starts_with("rds:"))
        .collect();
    assert_eq!(names, ["twin-snapshot"]);
}

/// An instance AWS is deleting is gone to inspect (AWS finishes it on its own).
#[tokio::test(flavor = "multi_thread")]
async fn an_rds_instance_being_deleted_is_gone() {
    let body = format!(
        "<DescribeDBInstancesResponse xmlns=\"{RDS_XMLNS}\"><DescribeDBInstancesResult>\
         <DBInstances><DBInstance><DBInstanceIdentifier>db-1</DBInstanceIdentifier>\
         <DBInstanceStatus>deleting</DBInstanceStatus></DBInstance></DBInstances>\
         </DescribeDBInstancesResult></DescribeDBInstancesResponse>"
    );
    let canned = Canned::start(200, "text/xml", body).await;
    let sdk = sdk(&canned.endpoint).await;
    let db = arn("arn:aws:rds:us-east-1:123456789012:db:db-1");
    assert_eq!(
        aws::inspect(&sdk, &db).await.expect("inspect"),
        Inspection::Gone
    );
}

/// A subnet group an instance still uses is in use, as AWS answers for it (moto deletes it).
#[tokio::test(flavor = "multi_thread")]
async fn a_db_subnet_group_in_use_is_reported_in_use() {
    let body = format!(
        "<ErrorResponse xmlns=\"{RDS_XMLNS}\"><Error><Type>Sender</Type>\
         <Code>InvalidDBSubnetGroupStateFault</Code><Message>Cannot delete the subnet group \
         'g-1' because at least one database instance: db-1 is still using it.</Message>\
         </Error><RequestId>r-1</RequestId></ErrorResponse>"
    );
    let canned = Canned::start(400, "text/xml", body).await;
    let sdk = sdk(&canned.endpoint).await;
    let group = arn("arn:aws:rds:us-east-1:123456789012:subgrp:g-1");
    let r = aws::delete(&sdk, &group).await;
    assert!(matches!(r, Err(DeleteError::InUse { .. })), "{r:?}");
    assert_eq!(canned.seen(), ["DeleteDBSubnetGroup"]);
}
