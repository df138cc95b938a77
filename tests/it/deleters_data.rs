//! The deleters of the data and platform services against moto: ECR repositories, Secrets
//! Manager secrets, KMS keys, RDS, IAM roles, instance profiles, policies and OIDC providers,
//! ElastiCache clusters, replication groups and subnet groups. For each type: inspect finds it live with the tags it was created
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
//! - IAM: DeletePolicy deletes a policy still attached (AWS: `DeleteConflict`), a recorded
//!   answer again. Service-linked roles are made by moto and refused here before any call.
//! - ElastiCache: a deleted cluster or replication group stays `deleting` for ever and a second
//!   delete succeeds again (AWS: gone in minutes; `InvalidCacheClusterState`); a replication
//!   group's member clusters are names only, never clusters DescribeCacheClusters knows, so a
//!   member's dependency on its group is a recorded answer; DeleteCacheSubnetGroup is not
//!   implemented, so its deletes are recorded answers (its inspect is moto's).

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
        Self::answering(content_type, vec![("", status, body)]).await
    }

    /// Answers each operation of `answers` (`(operation, status, body)`) with its own, any
    /// other with the one for `""`.
    async fn answering(
        content_type: &'static str,
        answers: Vec<(&'static str, u16, String)>,
    ) -> Canned {
        let answers = Arc::new(answers);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding a loopback port");
        let endpoint = format!("http://{}", listener.local_addr().expect("bound"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
            let (log, answers) = (Arc::clone(&log), Arc::clone(&answers));
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
                let op = target.or(action).unwrap_or_default();
                let (_, status, body) = answers
                    .iter()
                    .find(|(o, _, _)| *o == op)
                    .or_else(|| answers.iter().find(|(o, _, _)| o.is_empty()))
                    .cloned()
                    .unwrap_or(("", 500, String::new()));
                log.lock().expect("not poisoned").push(op);
                (
                    axum::http::StatusCode::from_u16(status).expect("a status code"),
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

const TRUST: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
const POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:ListBucket","Resource":"*"}]}"#;

/// Roles (with a path, a managed and an inline policy, in an instance profile), instance
/// profiles (holding another lease's role, which stays), customer managed policies (with a
/// second version; in use while attached) and OIDC providers. Service-linked roles and AWS
/// managed policies are refused.
#[tokio::test(flavor = "multi_thread")]
async fn iam_roles_profiles_policies_and_providers_go_in_order() {
    let moto = Moto::start().await;
    let sdk = sdk(&moto.endpoint()).await;
    let iam = aws_sdk_iam::Client::new(&sdk);
    let tags = |lease: &str| -> Vec<aws_sdk_iam::types::Tag> {
        lease_tags(lease)
            .into_iter()
            .map(|(k, v)| {
                aws_sdk_iam::types::Tag::builder()
                    .key(k)
                    .value(v)
                    .build()
                    .expect("tag")
            })
            .collect()
    };
    let mut policies = Vec::new();
    for lease in ["doomed", "twin"] {
        let out = iam
            .create_policy()
            .policy_name(format!("{lease}-policy"))
            .path("/ci/")
            .policy_document(POLICY)
            .set_tags(Some(tags(lease)))
            .send()
            .await
            .expect("create policy");
        policies.push(arn(out.policy().and_then(|p| p.arn()).expect("arn")));
    }
    iam.create_policy_version()
        .policy_arn(policies[0].as_str())
        .policy_document(POLICY)
        .set_as_default(false)
        .send()
        .await
        .expect("a second version");
    let mut roles = Vec::new();
    for lease in ["doomed", "twin"] {
        let out = iam
            .create_role()
            .role_name(format!("{lease}-role"))
            .path("/ci/")
            .assume_role_policy_document(TRUST)
            .set_tags(Some(tags(lease)))
            .send()
            .await
            .expect("create role");
        roles.push(arn(out.role().map(|r| r.arn()).expect("arn")));
    }
    let mut profiles = Vec::new();
    for lease in ["doomed", "twin"] {
        let out = iam
            .create_instance_profile()
            .instance_profile_name(format!("{lease}-profile"))
            .set_tags(Some(tags(lease)))
            .send()
            .await
            .expect("create instance profile");
        profiles.push(arn(out.instance_profile().map(|p| p.arn()).expect("arn")));
    }
    // The doomed role: its policy attached, an inline one, in the twin's profile. The twin
    // role: in the doomed profile.
    iam.attach_role_policy()
        .role_name("doomed-role")
        .policy_arn(policies[0].as_str())
        .send()
        .await
        .expect("attach");
    iam.put_role_policy()
        .role_name("doomed-role")
        .policy_name("inline")
        .policy_document(POLICY)
        .send()
        .await
        .expect("inline policy");
    for (profile, role) in [
        ("twin-profile", "doomed-role"),
        ("doomed-profile", "twin-role"),
    ] {
        iam.add_role_to_instance_profile()
            .instance_profile_name(profile)
            .role_name(role)
            .send()
            .await
            .expect("add role to profile");
    }
    let mut providers = Vec::new();
    for lease in ["doomed", "twin"] {
        let out = iam
            .create_open_id_connect_provider()
            .url(format!("https://{lease}.example.com/id/1"))
            .client_id_list("sts.amazonaws.com")
            .thumbprint_list("a".repeat(40))
            .set_tags(Some(tags(lease)))
            .send()
            .await
            .expect("create provider");
        providers.push(arn(out.open_id_connect_provider_arn().expect("arn")));
    }

    let mut problems = Vec::new();
    problems.extend(check(&sdk, &roles[0], live("doomed", &[]), &roles[1]).await);
    // Its deletion took the role out of the twin's profile, which stays.
    let twin_profile = iam
        .get_instance_profile()
        .instance_profile_name("twin-profile")
        .send()
        .await
        .expect("the twin's profile stays");
    assert!(
        twin_profile
            .instance_profile()
            .is_some_and(|p| p.roles().is_empty()),
        "{twin_profile:?}"
    );
    problems.extend(check(&sdk, &profiles[0], live("doomed", &[]), &profiles[1]).await);
    problems.extend(check(&sdk, &policies[0], live("doomed", &[]), &policies[1]).await);
    problems.extend(check(&sdk, &providers[0], live("doomed", &[]), &providers[1]).await);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The profile's deletion left the other lease's role alone.
    assert_eq!(
        aws::inspect(&sdk, &roles[1]).await.expect("inspect"),
        live("twin", &[])
    );

    // Refused, by inspect and delete alike: a service-linked role, an AWS managed policy.
    let linked = iam
        .create_service_linked_role()
        .aws_service_name("rds.amazonaws.com")
        .send()
        .await
        .expect("a service-linked role");
    let linked = arn(linked.role().map(|r| r.arn()).expect("arn"));
    let managed = arn("arn:aws:iam::aws:policy/ReadOnlyAccess");
    for refused in [&linked, &managed] {
        assert!(
            matches!(
                aws::inspect(&sdk, refused).await,
                Err(DeleteError::Refused(_))
            ),
            "inspect {refused}"
        );
        assert!(
            matches!(
                aws::delete(&sdk, refused).await,
                Err(DeleteError::Refused(_))
            ),
            "delete {refused}"
        );
    }
    iam.get_role()
        .role_name(linked.resource_id())
        .send()
        .await
        .expect("the service-linked role stays");
}

const IAM_XMLNS: &str = "https://iam.amazonaws.com/doc/2010-05-08/";

/// A policy still attached to something is in use, as AWS answers (moto deletes it): never
/// detached from what holds it.
#[tokio::test(flavor = "multi_thread")]
async fn an_attached_policy_is_in_use() {
    let versions = format!(
        "<ListPolicyVersionsResponse xmlns=\"{IAM_XMLNS}\"><ListPolicyVersionsResult>\
         <Versions><member><VersionId>v1</VersionId><IsDefaultVersion>true</IsDefaultVersion>\
         </member></Versions><IsTruncated>false</IsTruncated></ListPolicyVersionsResult>\
         </ListPolicyVersionsResponse>"
    );
    let conflict = format!(
        "<ErrorResponse xmlns=\"{IAM_XMLNS}\"><Error><Type>Sender</Type><Code>DeleteConflict\
         </Code><Message>Cannot delete a policy attached to entities.</Message></Error>\
         <RequestId>r-1</RequestId></ErrorResponse>"
    );
    let canned = Canned::answering(
        "text/xml",
        vec![
            ("ListPolicyVersions", 200, versions),
            ("DeletePolicy", 409, conflict),
        ],
    )
    .await;
    let sdk = sdk(&canned.endpoint).await;
    let policy = arn("arn:aws:iam::123456789012:policy/ci/web");
    let r = aws::delete(&sdk, &policy).await;
    assert!(matches!(r, Err(DeleteError::InUse { .. })), "{r:?}");
    assert_eq!(canned.seen(), ["ListPolicyVersions", "DeletePolicy"]);
}

const ELASTICACHE_XMLNS: &str = "http://elasticache.amazonaws.com/doc/2015-02-02/";

/// Cache clusters and replication groups, each with a twin: live with their tags, deleted
/// (no final snapshot), gone while AWS deletes them. A subnet group is inspected on moto.
#[tokio::test(flavor = "multi_thread")]
async fn cache_clusters_and_replication_groups_are_deleted_once_and_their_twins_stay() {
    let moto = Moto::start().await;
    let sdk = sdk(&moto.endpoint()).await;
    let ec = aws_sdk_elasticache::Client::new(&sdk);
    let tags = |lease: &str| -> Vec<aws_sdk_elasticache::types::Tag> {
        lease_tags(lease)
            .into_iter()
            .map(|(k, v)| {
                aws_sdk_elasticache::types::Tag::builder()
                    .key(k)
                    .value(v)
                    .build()
            })
            .collect()
    };
    let mut clusters = Vec::new();
    let mut groups = Vec::new();
    let mut subnet_groups = Vec::new();
    let subnet = aws_sdk_ec2::Client::new(&sdk)
        .describe_subnets()
        .send()
        .await
        .expect("default subnets")
        .subnets()
        .first()
        .and_then(|s| s.subnet_id())
        .expect("a default subnet")
        .to_owned();
    for lease in ["doomed", "twin"] {
        let out = ec
            .create_cache_cluster()
            .cache_cluster_id(format!("{lease}-cache"))
            .engine("redis")
            .cache_node_type("cache.t3.micro")
            .num_cache_nodes(1)
            .set_tags(Some(tags(lease)))
            .send()
            .await
            .expect("create cache cluster");
        clusters.push(arn(out.cache_cluster().and_then(|c| c.arn()).expect("arn")));
        let out = ec
            .create_replication_group()
            .replication_group_id(format!("{lease}-group"))
            .replication_group_description("test")
            .engine("redis")
            .cache_node_type("cache.t3.micro")
            .set_tags(Some(tags(lease)))
            .send()
            .await
            .expect("create replication group");
        groups.push(arn(out
            .replication_group()
            .and_then(|g| g.arn())
            .expect("arn")));
        let out = ec
            .create_cache_subnet_group()
            .cache_subnet_group_name(format!("{lease}-cache-subnets"))
            .cache_subnet_group_description("test")
            .subnet_ids(&subnet)
            .set_tags(Some(tags(lease)))
            .send()
            .await
            .expect("create cache subnet group");
        subnet_groups.push(arn(out
            .cache_subnet_group()
            .and_then(|g| g.arn())
            .expect("arn")));
    }
    let mut problems = Vec::new();
    problems.extend(check(&sdk, &groups[0], live("doomed", &[]), &groups[1]).await);
    problems.extend(check(&sdk, &clusters[0], live("doomed", &[]), &clusters[1]).await);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    for (group, lease) in subnet_groups.iter().zip(["doomed", "twin"]) {
        assert_eq!(
            aws::inspect(&sdk, group).await.expect("inspect"),
            live(lease, &[])
        );
    }
}

/// A replication group's member cluster waits for its group (as DescribeCacheClusters
/// answers for one); a cache subnet group is deleted, already gone, or in use, as AWS
/// answers each.
#[tokio::test(flavor = "multi_thread")]
async fn a_member_cluster_waits_for_its_group_and_subnet_group_deletes_settle() {
    let member = format!(
        "<DescribeCacheClustersResponse xmlns=\"{ELASTICACHE_XMLNS}\">\
         <DescribeCacheClustersResult><CacheClusters><CacheCluster>\
         <CacheClusterId>rg-1-001</CacheClusterId><CacheClusterStatus>available\
         </CacheClusterStatus><ReplicationGroupId>rg-1</ReplicationGroupId></CacheCluster>\
         </CacheClusters></DescribeCacheClustersResult></DescribeCacheClustersResponse>"
    );
    let tags = format!(
        "<ListTagsForResourceResponse xmlns=\"{ELASTICACHE_XMLNS}\"><ListTagsForResourceResult>\
         <TagList><Tag><Key>ephemera:lease-id</Key><Value>doomed</Value></Tag>\
         <Tag><Key>ephemera:project</Key><Value>web</Value></Tag>\
         <Tag><Key>ephemera:owner</Key><Value>ci-web</Value></Tag></TagList>\
         </ListTagsForResourceResult></ListTagsForResourceResponse>"
    );
    let canned = Canned::answering(
        "text/xml",
        vec![
            ("DescribeCacheClusters", 200, member),
            ("ListTagsForResource", 200, tags),
        ],
    )
    .await;
    let sdk = sdk(&canned.endpoint).await;
    let cluster = arn("arn:aws:elasticache:us-east-1:123456789012:cluster:rg-1-001");
    let group = arn("arn:aws:elasticache:us-east-1:123456789012:replicationgroup:rg-1");
    assert_eq!(
        aws::inspect(&sdk, &cluster).await.expect("inspect"),
        live("doomed", &[&group])
    );

    let subnet_group = arn("arn:aws:elasticache:us-east-1:123456789012:subnetgroup:g-1");
    let error = |code: &str| {
        format!(
            "<ErrorResponse xmlns=\"{ELASTICACHE_XMLNS}\"><Error><Type>Sender</Type>\
             <Code>{code}</Code><Message>{code}</Message></Error><RequestId>r-1</RequestId>\
             </ErrorResponse>"
        )
    };
    let deleted = format!(
        "<DeleteCacheSubnetGroupResponse xmlns=\"{ELASTICACHE_XMLNS}\"><ResponseMetadata>\
         <RequestId>r-1</RequestId></ResponseMetadata></DeleteCacheSubnetGroupResponse>"
    );
    for (status, body, want) in [
        (200, deleted, "Ok(Deleted)"),
        (
            404,
            error("CacheSubnetGroupNotFoundFault"),
            "Ok(AlreadyGone)",
        ),
        (400, error("CacheSubnetGroupInUse"), "InUse"),
    ] {
        let canned = Canned::start(status, "text/xml", body).await;
        let sdk = self::sdk(&canned.endpoint).await;
        let got = match aws::delete(&sdk, &subnet_group).await {
            Err(DeleteError::InUse { .. }) => "InUse".to_owned(),
            other => format!("{:?}", other.map_err(|e| e.to_string())),
        };
        assert_eq!(got, want);
        assert_eq!(canned.seen(), ["DeleteCacheSubnetGroup"]);
    }
}
