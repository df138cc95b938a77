//! `ephemera iam-policy` held to the calls the code really makes: every AWS request of the
//! deleters and of unarmed and armed passes (recorded on their way to moto) maps to IAM actions
//! the printed policy of the principal that signed it allows (*sufficient*), and every action the
//! tables hold is one of those requests' (*least*).
//!
//! The recorder here sits between the SDK and moto like `proxy::FaultProxy`, and names
//! operations with the proxy's own `operation_of`; it also keeps what IAM authorizes on and the
//! proxy's log does not hold: the SigV4 credential scope (access key, service) and, for the REST
//! services (S3, Lambda) the proxy calls `unknown`, the method and path. It answers
//! `ListCostAllocationTags` itself (moto 5.2.5 does not implement it), as the cost tests do.
//!
//! Armed, the deletes the tag conditions hold (`DeleteIdentityTagged`) are checked against the
//! resource each request targeted: it carried the condition's tags, or the account was a
//! dedicated one whose statement holds no tag condition; a stray missing the lease tag in the
//! shared account is skipped by the reaper, and the documents would refuse its delete.
//!
//! Enforcement by moto itself (`INITIAL_NO_AUTH_ACTION_COUNT`, a user holding the printed
//! policy) was not tried: these tests check the mapping of each recorded request to IAM
//! actions instead (the S3 and Lambda mappings are written out by hand below).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST, TRANSFER_ENCODING};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::TimeDelta;
use ephemera::iam::{self, PolicyDocument, PolicyHolder, Request};
use ephemera::inventory::AwsClients;
use ephemera::model::{Arn, ResourceType};
use ephemera::reaper::aws;
use ephemera::reaper::iam::actions_for;
use serde_json::{Value, json};
use strum::VariantArray;
use tokio::task::JoinHandle;

use crate::cli::run;
use crate::support::moto::{DEFAULT_ACCOUNT, Moto};
use crate::support::proxy::operation_of;
use crate::support::seed::seed;
use crate::support::{OPERATOR, TestDaemon, VIEWER, WEB, Workdir, config_text_with_aws};

const US: &str = "us-east-1";
/// Reached through its own role; Cost Explorer is asked there.
const ROLE_ACCOUNT: &str = "444444444444";
const ROLE_ARN: &str = "arn:aws:iam::444444444444:role/ephemera";
/// The access key of the daemon's own (dummy) credentials; assumed roles get moto's keys.
const OWN_KEY: &str = "testing";
/// Types moto 5.2.5's GetResources never lists, so a pass never sees them.
use crate::support::seed::UNLISTED;

/// One request as IAM sees it.
#[derive(Debug, Clone)]
struct Call {
    access_key: String,
    /// The SigV4 signing name: `ec2`, `s3`, `tagging`, …
    service: String,
    method: Method,
    uri: Uri,
    /// `proxy::operation_of`: the target header's or `Action=`'s operation, else `unknown`.
    operation: String,
    /// `RoleArn=` of an AssumeRole.
    role_arn: Option<String>,
    /// The body as text, and its form values decoded (to find the resource a call names).
    body: String,
}

impl Call {
    fn of(method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Call {
        // `Credential=AKID/DATE/REGION/SERVICE/aws4_request`
        let scope: Vec<String> = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|a| a.split("Credential=").nth(1))
            .and_then(|c| c.split(',').next())
            .map(|c| c.split('/').map(str::to_owned).collect())
            .unwrap_or_default();
        let form = reqwest::Url::parse(&format!("http://x/?{}", String::from_utf8_lossy(body)))
            .ok()
            .and_then(|u| {
                u.query_pairs()
                    .find(|(k, _)| k == "RoleArn")
                    .map(|(_, v)| v.into_owned())
            });
        let text = String::from_utf8_lossy(body).into_owned();
        let decoded: Vec<String> = reqwest::Url::parse(&format!("http://x/?{text}"))
            .map(|u| u.query_pairs().map(|(_, v)| v.into_owned()).collect())
            .unwrap_or_default();
        Call {
            body: format!("{text}\n{}", decoded.join("\n")),
            access_key: scope.first().cloned().unwrap_or_default(),
            service: scope.get(3).cloned().unwrap_or_default(),
            method: method.clone(),
            uri: uri.clone(),
            operation: operation_of(headers, body),
            role_arn: form,
        }
    }

    fn query(&self) -> BTreeMap<String, String> {
        reqwest::Url::parse(&format!("http://x{}", self.uri))
            .map(|u| u.query_pairs().into_owned().collect())
            .unwrap_or_default()
    }

    /// The IAM actions AWS authorizes this request on, or what could not be mapped.
    fn actions(&self) -> Result<Vec<String>, String> {
        let unmapped = || {
            Err(format!(
                "unmapped {} request {} {}",
                self.service, self.method, self.uri
            ))
        };
        let path: Vec<&str> = self
            .uri
            .path()
            .split('/')
            .filter(|s| !s.is_empty())
            .collect();
        match self.service.as_str() {
            // Path-style (the deleter forces it against an endpoint): /BUCKET?subresource.
            "s3" => {
                let q = self.query();
                let op = match (&self.method, path.len()) {
                    _ if q.contains_key("x-id") => q["x-id"].clone(),
                    (&Method::GET, 1) if q.contains_key("location") => "GetBucketLocation".into(),
                    (&Method::GET, 1) if q.contains_key("tagging") => "GetBucketTagging".into(),
                    (&Method::GET, 1) if q.contains_key("versions") => "ListObjectVersions".into(),
                    (&Method::POST, 1) if q.contains_key("delete") => "DeleteObjects".into(),
                    (&Method::DELETE, 1) if q.is_empty() => "DeleteBucket".into(),
                    _ => return unmapped(),
                };
                Ok(match op.as_str() {
                    "ListObjectVersions" => vec!["s3:ListBucketVersions".into()],
                    "DeleteObjects" => {
                        vec!["s3:DeleteObject".into(), "s3:DeleteObjectVersion".into()]
                    }
                    // The one S3 operation whose action is not named after it.
                    "ListBuckets" => vec!["s3:ListAllMyBuckets".into()],
                    other => vec![format!("s3:{other}")],
                })
            }
            // REST: /2015-03-31/functions/NAME.
            "lambda" => match (&self.method, path.as_slice()) {
                // Tags come back only to a caller also allowed ListTags.
                (&Method::GET, [_, "functions", _]) => {
                    Ok(vec!["lambda:GetFunction".into(), "lambda:ListTags".into()])
                }
                (&Method::DELETE, [_, "functions", _]) => Ok(vec!["lambda:DeleteFunction".into()]),
                (&Method::GET, [_, "functions"]) => Ok(vec!["lambda:ListFunctions".into()]),
                _ => unmapped(),
            },
            // REST: /clusters/NAME[/node-groups|fargate-profiles[/NAME]].
            "eks" => {
                let op = match (&self.method, path.as_slice()) {
                    (&Method::GET, ["clusters"]) => "ListClusters",
                    (&Method::GET, ["clusters", _]) => "DescribeCluster",
                    (&Method::DELETE, ["clusters", _]) => "DeleteCluster",
                    (&Method::GET, ["clusters", _, "node-groups"]) => "ListNodegroups",
                    (&Method::GET, ["clusters", _, "node-groups", _]) => "DescribeNodegroup",
                    (&Method::DELETE, ["clusters", _, "node-groups", _]) => "DeleteNodegroup",
                    (&Method::GET, ["clusters", _, "fargate-profiles"]) => "ListFargateProfiles",
                    (&Method::GET, ["clusters", _, "fargate-profiles", _]) => {
                        "DescribeFargateProfile"
                    }
                    _ => return unmapped(),
                };
                Ok(vec![format!("eks:{op}")])
            }
            "" => unmapped(),
            service if self.operation != "unknown" => {
                let prefix = if service == "tagging" { "tag" } else { service };
                Ok(vec![format!("{prefix}:{}", self.operation)])
            }
            _ => unmapped(),
        }
    }
}

/// A recording HTTP forwarder on a loopback port in front of one upstream; stops when dropped.
struct Recorder {
    port: u16,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

struct Shared {
    upstream: String,
    http: reqwest::Client,
    calls: Mutex<Vec<Call>>,
}

impl Recorder {
    async fn start(upstream: &str) -> Recorder {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding a loopback port for the recorder");
        let port = listener.local_addr().expect("bound").port();
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_owned(),
            http: reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(60))
                .build()
                .expect("reqwest client"),
            calls: Mutex::default(),
        });
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(Arc::clone(&shared));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Recorder {
            port,
            shared,
            server,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn calls(&self) -> Vec<Call> {
        self.shared
            .calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn forward(State(shared): State<Arc<Shared>>, request: axum::extract::Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 64 << 20)
        .await
        .unwrap_or_default();
    let call = Call::of(&parts.method, &parts.uri, &parts.headers, &body);
    let canned = call.operation == "ListCostAllocationTags";
    shared
        .calls
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(call);
    if canned {
        return (
            StatusCode::OK,
            [(CONTENT_TYPE, "application/x-amz-json-1.1")],
            r#"{"CostAllocationTags":[]}"#,
        )
            .into_response();
    }
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut headers = parts.headers.clone();
    for h in [HOST, CONTENT_LENGTH, TRANSFER_ENCODING, CONNECTION] {
        headers.remove(h);
    }
    let sent = shared
        .http
        .request(parts.method, format!("{}{target}", shared.upstream))
        .headers(headers)
        .body(body)
        .send()
        .await;
    let upstream = match sent {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let status = upstream.status();
    let mut headers = upstream.headers().clone();
    for h in [CONTENT_LENGTH, TRANSFER_ENCODING, CONNECTION] {
        headers.remove(h);
    }
    let bytes = upstream.bytes().await.unwrap_or_default();
    let mut out = Response::new(Body::from(bytes));
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    out
}

fn tags(lease: &str) -> Value {
    crate::support::lease_tags(lease, "web", "ci 1")
}

/// The actions of `calls`, and the requests that map to none.
fn actions_of(calls: &[Call]) -> (BTreeSet<String>, Vec<String>) {
    let mut actions = BTreeSet::new();
    let mut unmapped = Vec::new();
    for c in calls {
        match c.actions() {
            Ok(a) => actions.extend(a),
            Err(e) => unmapped.push(e),
        }
    }
    (actions, unmapped)
}

/// Each deleter's calls (inspect, the image re-check, an access key's deactivation, delete,
/// inspect again, delete again) against one resource of
/// its type map to exactly its row: nothing the row lacks (sufficient), nothing it has that no
/// call needs (least). Resources are seeded in use where that makes the re-read look up their
/// users, and the bucket holds objects, so every conditional call is made.
#[tokio::test(flavor = "multi_thread")]
async fn every_row_is_exactly_what_its_deleter_calls() {
    let moto = Moto::start().await;
    let recorder = Recorder::start(&moto.endpoint()).await;
    let in_use = [
        "ec2:volume",
        "ec2:security-group",
        "ec2:network-interface",
        "ec2:elastic-ip",
        "iam:role",
        "iam:instance-profile",
        "iam:policy",
        "iam:user",
        // A node group and a Fargate profile, so the cluster's re-read describes both.
        "eks:cluster",
    ];
    let spec: Vec<Value> = ResourceType::VARIANTS
        .iter()
        .map(|t| {
            let mut e = json!({"key": t, "type": t, "tags": tags("doomed")});
            if in_use.contains(&t.as_str()) {
                e["in_use"] = json!(true);
            }
            if *t == ResourceType::S3Bucket {
                e["objects"] = json!(2);
                e["versioned"] = json!(true);
            }
            e
        })
        .collect();
    let seeded = seed(&moto.endpoint(), json!({ "resources": spec })).await;
    let text = config_text_with_aws(&format!(
        "regions = [\"{US}\"]\nendpoint_url = \"{}\"\nemulator = true\nmax_attempts = 1\n\
         [[aws.accounts]]\nid = \"{DEFAULT_ACCOUNT}\"\n",
        recorder.endpoint()
    ));
    let clients = AwsClients::new(Workdir::with_config(&text).config().aws);
    let sdk = clients
        .config_for(DEFAULT_ACCOUNT, US)
        .await
        .expect("sdk config");

    let mut failures = Vec::new();
    for t in ResourceType::VARIANTS {
        let resource = seeded
            .resources
            .iter()
            .find(|r| r.key == t.as_str())
            .unwrap_or_else(|| panic!("seeded {t}"));
        let arn = Arn::parse(&resource.arn).expect("seeded ARN");
        let before = recorder.calls().len();
        // Outcomes do not matter here (an in-use volume stays): only the calls made.
        let first = aws::inspect(&sdk, &arn).await;
        // The re-check of an instance's or launch template's image before a delete (a no-op
        // call-free for other types), as the reaper makes it.
        let _ = aws::image_of(&sdk, &arn).await;
        // An access key's first step (refused, call-free, for other types).
        let _ = aws::deactivate(&sdk, &arn).await;
        let deleted = aws::delete(&sdk, &arn).await;
        let _ = aws::inspect(&sdk, &arn).await;
        let _ = aws::delete(&sdk, &arn).await;
        let calls = recorder.calls()[before..].to_vec();
        let (seen, unmapped) = actions_of(&calls);
        let row: BTreeSet<String> = actions_for(*t).iter().map(|a| (*a).to_owned()).collect();
        let missing: Vec<&String> = seen.difference(&row).collect();
        let unused: Vec<&String> = row.difference(&seen).collect();
        if !missing.is_empty() || !unused.is_empty() || !unmapped.is_empty() {
            failures.push(format!(
                "{t}: called but not in its row {missing:?}; in its row but never called \
                 {unused:?}; unmapped {unmapped:?} (inspect {first:?}, delete {deleted:?})"
            ));
        }
        assert!(
            calls.iter().all(|c| c.access_key == OWN_KEY),
            "{t}: a call with other credentials"
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The config of the pass tests: one account acted in with the daemon's own credentials
/// (dedicated to ephemeral work), one through a role (shared; Cost Explorer is asked there),
/// every type allowlisted.
fn pass_config(endpoint: &str, armed: bool) -> String {
    let types: Vec<String> = ResourceType::VARIANTS
        .iter()
        .map(|t| format!("\"{t}\""))
        .collect();
    config_text_with_aws(&format!(
        r#"regions = ["{US}"]
endpoint_url = "{endpoint}"
emulator = true
max_attempts = 1

[[aws.accounts]]
id = "{DEFAULT_ACCOUNT}"
dedicated = true

[[aws.accounts]]
id = "{ROLE_ACCOUNT}"
assume_role_arn = "{ROLE_ARN}"
armed = true

[cost]
account = "{ROLE_ACCOUNT}"

[enforcement]
armed = {armed}
deletable_types = [{}]
max_project_share_percent = 100
"#,
        types.join(", ")
    ))
}

/// What the pass tests seeded: the resources and the tags each was given, by ARN.
struct Estate {
    resources: Vec<crate::support::seed::SeededResource>,
    tags: BTreeMap<String, BTreeMap<String, String>>,
}

impl Estate {
    /// The seeded resource `call` names (the longest name found in its path or body).
    fn target_of(&self, call: &Call) -> Option<&crate::support::seed::SeededResource> {
        let haystack = format!("{}\n{}", call.uri, call.body);
        self.resources
            .iter()
            .filter(|r| {
                let arn = Arn::parse(&r.arn).expect("seeded ARN");
                haystack.contains(arn.name())
            })
            .max_by_key(|r| Arn::parse(&r.arn).map(|a| a.name().len()).unwrap_or(0))
    }

    fn seeded(&self, key: &str) -> &crate::support::seed::SeededResource {
        self.resources
            .iter()
            .find(|r| r.key == key)
            .unwrap_or_else(|| panic!("seeded {key}"))
    }
}

/// Strays of project web that lost their lease tag (rules reap them): one in the shared role
/// account, one in the dedicated account the daemon acts in directly.
const STRAYS: [(&str, &str); 2] = [
    ("stray-shared", ROLE_ACCOUNT),
    ("stray-dedicated", DEFAULT_ACCOUNT),
];

/// Two passes (the first marks what outlived its lease, the second, past the grace period,
/// acts) and a cost refresh, all through the recorder; returns the config, every request, what
/// was seeded and the audit log.
async fn passes(armed: bool) -> (ephemera::config::Config, Vec<Call>, Estate, Value) {
    let moto = Moto::start().await;
    let recorder = Recorder::start(&moto.endpoint()).await;
    let work = Workdir::with_config(&pass_config(&recorder.endpoint(), armed));
    // Web's untagged resources are reaped too, so the strays are planned for deletion.
    let policy = crate::support::POLICY.replace(
        "expired = { action = \"reap\" }",
        "expired = { action = \"reap\" }\nuntagged = { action = \"reap\", grace = \"1h\" }",
    );
    std::fs::write(work.path().join("rules/policy/projects.toml"), policy).expect("rules");
    let clock = crate::support::manual_clock();
    let d = TestDaemon::start_with_clock(&work, clock.clone()).await;
    let lease = d.acquire(WEB, "web", "ci").await;
    let mut spec: Vec<Value> = ResourceType::VARIANTS
        .iter()
        .filter(|t| !UNLISTED.contains(&t.as_str()))
        .map(|t| {
            let mut e = json!({"key": t, "type": t, "account": ROLE_ACCOUNT, "region": US,
                               "tags": tags(&lease)});
            if *t == ResourceType::S3Bucket {
                e["objects"] = json!(1);
            }
            e
        })
        .collect();
    spec.push(json!({"key": "own", "type": "ec2:volume", "region": US, "tags": tags(&lease)}));
    // An instance profile with no tags: the credentials' listing reads its tags
    // (`ListInstanceProfileTags`), as it would every profile in AWS, whose list gives none.
    spec.push(
        json!({"key": "bare-profile", "type": "iam:instance-profile",
                     "account": ROLE_ACCOUNT, "region": US, "tags": {}}),
    );
    for (key, account) in STRAYS {
        spec.push(
            json!({"key": key, "type": "ec2:volume", "account": account, "region": US,
                         "tags": {"ephemera:project": "web", "ephemera:task": "lost",
                                  "ephemera:owner": "alice@example.com"}}),
        );
    }
    let seeded = seed(&moto.endpoint(), json!({ "resources": spec.clone() })).await;
    let tags_of_key: BTreeMap<String, BTreeMap<String, String>> = spec
        .iter()
        .map(|e| {
            let key = e["key"].as_str().expect("key").to_owned();
            (
                key,
                serde_json::from_value(e["tags"].clone()).expect("tags"),
            )
        })
        .collect();
    let estate = Estate {
        tags: seeded
            .resources
            .iter()
            .map(|r| (r.arn.clone(), tags_of_key[&r.key].clone()))
            .collect(),
        resources: seeded.resources,
    };
    clock.advance(TimeDelta::hours(2) + TimeDelta::minutes(10));
    let first = d.pass().await;
    clock.advance(TimeDelta::hours(1) + TimeDelta::minutes(10));
    let second = d.pass().await;
    let (s, cost) = d.post("/api/v1/cost/refresh", OPERATOR, json!({})).await;
    assert_eq!(s, StatusCode::OK, "cost refresh: {cost}");
    let (s, audit) = d.get("/api/v1/audit?limit=1000", VIEWER).await;
    assert_eq!(s, StatusCode::OK, "audit: {audit}");
    let config = work.config();
    d.stop().await;
    let calls = recorder.calls();
    assert!(
        !calls.is_empty(),
        "no request reached the recorder: {first}\n{second}"
    );
    (config, calls, estate, audit)
}

fn request(principal: PolicyHolder, armed: bool, account: Option<&str>) -> Request<'_> {
    Request {
        principal,
        armed,
        account,
        dedicated: false,
    }
}

/// Every call allowed by the policy of the principal that signed it; the problems otherwise.
fn check_allowed(calls: &[Call], daemon: &PolicyDocument, role: &PolicyDocument) -> Vec<String> {
    let mut problems = Vec::new();
    for c in calls {
        let (who, doc) = if c.access_key == OWN_KEY {
            ("daemon", daemon)
        } else {
            ("account role", role)
        };
        match c.actions() {
            Err(e) => problems.push(e),
            Ok(actions) => {
                for a in actions {
                    if !doc.actions().contains(a.as_str()) {
                        problems.push(format!("{who} policy lacks {a} ({} {})", c.method, c.uri));
                    }
                }
            }
        }
        if let Some(arn) = &c.role_arn {
            let allowed = daemon
                .statement("AssumeRole")
                .is_some_and(|s| s.resources.contains(arn));
            if !allowed {
                problems.push(format!("AssumeRole of {arn} not allowed"));
            }
        }
    }
    problems
}

/// Whether `doc` allows `action` on a resource of `account` carrying `tags`, as IAM evaluates
/// the conditions these documents use (`Null` on `aws:ResourceTag/KEY`, `StringEquals` on
/// `aws:ResourceAccount`): some statement holding the action has no condition, or one the
/// resource meets.
fn allows(
    doc: &PolicyDocument,
    action: &str,
    account: &str,
    tags: &BTreeMap<String, String>,
) -> bool {
    doc.statements
        .iter()
        .filter(|s| s.actions.iter().any(|a| a == action))
        .any(|s| match &s.condition {
            None => true,
            Some(c) => match c.operator {
                "Null" => {
                    let required = c.required_tags();
                    assert_eq!(required.len(), c.keys.len(), "{c:?}");
                    required.iter().all(|k| tags.contains_key(*k))
                }
                "StringEquals" => c.keys.iter().all(|(k, v)| {
                    assert_eq!(k, "aws:ResourceAccount", "{c:?}");
                    v.iter().any(|id| id == account)
                }),
                other => panic!("no evaluation of condition operator {other}"),
            },
        })
}

/// Every delete a tag condition can hold was made on a resource the signing principal's
/// document allows it on, given that resource's tags and account: the conditions refused
/// nothing the reaper did. Returns the problems and how many such deletes were checked.
fn check_conditions(
    calls: &[Call],
    daemon: &PolicyDocument,
    role: &PolicyDocument,
    estate: &Estate,
) -> (Vec<String>, usize) {
    let held: BTreeSet<&str> = ephemera::reaper::iam::reap_actions()
        .flat_map(|(t, _)| ephemera::reaper::iam::tag_conditioned(t).iter().copied())
        .collect();
    let mut problems = Vec::new();
    let mut checked = 0;
    for (i, c) in calls.iter().enumerate() {
        let doc = if c.access_key == OWN_KEY {
            daemon
        } else {
            role
        };
        for a in c.actions().unwrap_or_default() {
            if !held.contains(a.as_str()) {
                continue;
            }
            // A DisassociateRouteTable names the association only: its table is the one the
            // DeleteRouteTable after it deletes (disassociating is part of deleting a table).
            let target = estate.target_of(c).or_else(|| {
                (c.operation == "DisassociateRouteTable")
                    .then(|| {
                        calls[i..]
                            .iter()
                            .find(|d| {
                                d.operation == "DeleteRouteTable" && d.access_key == c.access_key
                            })
                            .and_then(|d| estate.target_of(d))
                    })
                    .flatten()
            });
            let Some(target) = target else {
                problems.push(format!("{a}: no seeded resource in {} {}", c.uri, c.body));
                continue;
            };
            checked += 1;
            if !allows(doc, &a, &target.account, &estate.tags[&target.arn]) {
                problems.push(format!(
                    "{a} of {} ({:?}) would be refused",
                    target.arn, estate.tags[&target.arn]
                ));
            }
        }
    }
    (problems, checked)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unarmed_pass_calls_only_what_the_unarmed_policies_allow() {
    let (config, calls, _, _) = passes(false).await;
    let daemon = iam::policy(&config, &request(PolicyHolder::Daemon, false, None)).expect("daemon");
    let role = iam::policy(
        &config,
        &request(PolicyHolder::AccountRole, false, Some(ROLE_ACCOUNT)),
    )
    .expect("role");
    let problems = check_allowed(&calls, &daemon, &role);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // Both principals walked, the role was assumed, Cost Explorer was asked through it.
    let (seen, _) = actions_of(&calls);
    for a in [
        "tag:GetResources",
        "sts:AssumeRole",
        "ce:GetCostAndUsage",
        "ce:ListCostAllocationTags",
    ] {
        assert!(seen.contains(a), "{a} never called: {seen:?}");
    }
    for own in [true, false] {
        assert!(
            calls
                .iter()
                .any(|c| c.operation == "GetResources" && (c.access_key == OWN_KEY) == own),
            "no walk signed by the {} credentials",
            if own {
                "daemon's own"
            } else {
                "assumed role's"
            }
        );
    }
    assert!(
        !daemon.actions().contains("ce:GetCostAndUsage"),
        "Cost Explorer is the cost account's role's"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_armed_pass_calls_only_what_the_armed_policies_allow_and_needs_all_of_them() {
    let (config, calls, estate, audit) = passes(true).await;
    let daemon = iam::policy(&config, &request(PolicyHolder::Daemon, true, None)).expect("daemon");
    let role = iam::policy(
        &config,
        &request(PolicyHolder::AccountRole, true, Some(ROLE_ACCOUNT)),
    )
    .expect("role");
    let problems = check_allowed(&calls, &daemon, &role);
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // The tag conditions would have refused none of the deletes made (every listed type but
    // S3 has one, and both strays' would be held by one) ...
    let (problems, checked) = check_conditions(&calls, &daemon, &role, &estate);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(checked >= 10, "only {checked} tag-held deletes were made");
    // ... the stray in the dedicated account went (the daemon's document allows it there only),
    // the one in the shared account was skipped at the last moment, never sent to AWS, and
    // the role's document would have refused it, as it would an untagged resource.
    let shared = estate.seeded("stray-shared");
    let dedicated = estate.seeded("stray-dedicated");
    let deleted = |r: &crate::support::seed::SeededResource| {
        calls.iter().any(|c| {
            c.operation == "DeleteVolume" && estate.target_of(c).is_some_and(|t| t.arn == r.arn)
        })
    };
    assert!(
        deleted(dedicated),
        "the dedicated account's stray was not deleted"
    );
    assert!(
        !deleted(shared),
        "the shared account's stray was sent to AWS"
    );
    let skipped = audit["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|r| r["arn"] == shared.arn.as_str() && r["decision"] == "skipped")
        .unwrap_or_else(|| panic!("no skip of the shared stray: {audit}"));
    assert!(
        skipped["detail"].as_str().is_some_and(
            |d| d.contains("no `ephemera:lease-id` tag") && d.contains("not dedicated")
        ),
        "{skipped}"
    );
    let stray_tags = &estate.tags[&shared.arn];
    assert!(!allows(&role, "ec2:DeleteVolume", ROLE_ACCOUNT, stray_tags));
    assert!(!allows(
        &role,
        "ec2:DeleteVolume",
        ROLE_ACCOUNT,
        &BTreeMap::new()
    ));
    assert!(!allows(
        &daemon,
        "ec2:DeleteVolume",
        ROLE_ACCOUNT,
        &BTreeMap::new()
    ));
    assert!(allows(
        &daemon,
        "ec2:DeleteVolume",
        DEFAULT_ACCOUNT,
        &BTreeMap::new()
    ));
    let own_lease = &estate.tags[&estate.seeded("own").arn];
    assert!(allows(&role, "ec2:DeleteVolume", ROLE_ACCOUNT, own_lease));
    // S3's deletes are not held: a bucket's tags are invisible to them.
    assert!(allows(
        &role,
        "s3:DeleteBucket",
        ROLE_ACCOUNT,
        &BTreeMap::new()
    ));

    let (seen, _) = actions_of(&calls);
    // The pass really deleted: every listed type's deleting action was called.
    for t in ResourceType::VARIANTS
        .iter()
        .filter(|t| !UNLISTED.contains(&t.as_str()))
    {
        let row = actions_for(*t);
        let deleting = row
            .iter()
            .find(|a| {
                let n = a.split(':').nth(1).unwrap_or_default();
                ["Delete", "Terminate", "Deregister", "Schedule"]
                    .iter()
                    .any(|v| n.starts_with(v))
            })
            .expect("a deleting action");
        assert!(seen.contains(*deleting), "{t}: {deleting} never called");
    }
    // Least, for the tables besides the rows (those are held to their calls above): every
    // action of the inventory, cost, AssumeRole and account-check tables was needed.
    let rows: BTreeSet<&str> = ephemera::reaper::iam::reap_actions()
        .flat_map(|(_, a)| a.iter().copied())
        .collect();
    let unneeded: Vec<&str> = iam::every_action()
        .into_iter()
        // The Organizations reads need [aws.organization], which this config does not set
        // (`discovery::every_account_of_the_organization_is_audited_from_its_first_pass`).
        // Nor does it search a Resource Explorer index
        // (`discovery::resource_explorer_stands_in_for_the_sweep`).
        .filter(|a| !ephemera::inventory::organization::ACTIONS.contains(a))
        .filter(|a| !ephemera::inventory::explorer::ACTIONS.contains(a))
        .filter(|a| !rows.contains(a) && !seen.contains(*a))
        .collect();
    assert!(unneeded.is_empty(), "never called: {unneeded:?}");
}

/// `ephemera iam-policy` through the real binary.
#[tokio::test(flavor = "multi_thread")]
async fn the_binary_prints_valid_policies_and_names_the_bad_line() {
    let work = Workdir::with_config(&pass_config("http://127.0.0.1:9", false));
    let config = work.config_path();
    let config = config.to_str().expect("utf-8 path");
    let json_of = |o: &std::process::Output| -> Value {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).expect("stdout is JSON")
    };
    let actions = |doc: &Value| -> BTreeSet<String> {
        doc["Statement"]
            .as_array()
            .expect("statements")
            .iter()
            .flat_map(|s| s["Action"].as_array().cloned().unwrap_or_default())
            .filter_map(|a| a.as_str().map(str::to_owned))
            .collect()
    };

    let unarmed = json_of(&run(&["iam-policy", "--config", config], &[]).await);
    assert_eq!(unarmed["Version"], "2012-10-17");
    for s in unarmed["Statement"].as_array().expect("statements") {
        assert_eq!(s["Effect"], "Allow");
        assert!(s["Sid"].is_string() && s["Resource"].is_array(), "{s}");
    }
    assert_eq!(unarmed["Statement"][0]["Sid"], "AssumeRole");
    assert_eq!(unarmed["Statement"][0]["Resource"], json!([ROLE_ARN]));
    // Unarmed, nothing but reads and AssumeRole: no mutating call of any name.
    let reads: BTreeSet<String> = iam::INVENTORY_ACTIONS
        .iter()
        .chain(iam::COST_ACTIONS)
        .chain(iam::discovery_actions().iter())
        .chain(iam::ASSUME_ROLE_ACTIONS)
        .map(|a| (*a).to_owned())
        .collect();
    assert!(
        actions(&unarmed).is_subset(&reads),
        "{:?}",
        actions(&unarmed)
    );

    let armed = json_of(&run(&["iam-policy", "--config", config, "--armed"], &[]).await);
    assert_ne!(armed, unarmed);
    assert!(actions(&armed).contains("ec2:DeleteVolume"));

    // The role of the cost account, through the environment's config.
    let o = run(
        &[
            "iam-policy",
            "--for",
            "account-role",
            "--account",
            ROLE_ACCOUNT,
        ],
        &[("EPHEMERA_CONFIG", config)],
    )
    .await;
    let role = json_of(&o);
    let sids: Vec<&str> = role["Statement"]
        .as_array()
        .expect("statements")
        .iter()
        .filter_map(|s| s["Sid"].as_str())
        .collect();
    assert_eq!(sids, ["Inventory", "Discovery", "CostExplorer"]);

    // A role for an account reached without one is refused, naming it.
    let o = run(
        &[
            "iam-policy",
            "--config",
            config,
            "--for",
            "account-role",
            "--account",
            DEFAULT_ACCOUNT,
        ],
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains(DEFAULT_ACCOUNT));

    // A config error names the file and line, as everywhere.
    let text = pass_config("http://127.0.0.1:9", false).replace(
        "deletable_types = [",
        "deletable_types = [\"ec2:transit-gateway\", ",
    );
    let line = text
        .lines()
        .position(|l| l.contains("\"ec2:transit-gateway\""))
        .expect("the bad line")
        + 1;
    std::fs::write(work.config_path(), &text).expect("write config");
    let o = run(&["iam-policy", "--config", config], &[]).await;
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(o.stdout.is_empty());
    assert!(
        stderr.contains(&format!("ephemera.toml:{line}:"))
            && stderr.contains("ec2:transit-gateway"),
        "{stderr}"
    );
}
