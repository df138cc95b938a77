//! The wrong-deletion suite: the real binary, armed, on the emulator, with one-second graces,
//! in the situations where a janitor deletes what it must not. Each scenario asserts what
//! still exists in moto and how many delete calls each resource got (from the proxy's request
//! log), not only what ephemera says it did.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Timelike;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::cli::{DaemonProcess, run, spawn_daemon};
use crate::reap::exists;
use crate::support::moto::Moto;
use crate::support::proxy::{Fault, FaultProxy};
use crate::support::seed::{SeededResource, seed};
use crate::support::webhook::Receiver;
use crate::support::{OPERATOR, WEB, Workdir, config_text_with_aws, eventually, eventually_some};

const A: &str = "123456789012";

/// Every `web` verdict that may be reaped is, one second after it is marked (`data` only
/// exists for the test principals).
const POLICY: &str = r#"
[[project]]
name = "web"
lessees = ["ci-web", "ci-web-2"]
default_ttl = "2h"
max_ttl = "24h"
grace = "1s"
max_active_leases = 20
allowed_regions = ["us-east-1", "eu-west-1"]

[project.on]
expired = { action = "reap", grace = "1s" }
released = { action = "reap", grace = "1s" }
unknown-lease = { action = "reap", grace = "1s" }

[[project]]
name = "data"
lessees = ["*"]
default_ttl = "6h"
max_ttl = "3d"
grace = "1h"
"#;

/// The test ground: moto behind the fault proxy, a work dir with an armed config.
struct Ground {
    moto: Moto,
    proxy: FaultProxy,
    work: Workdir,
}

impl Ground {
    async fn new() -> Ground {
        Ground::with("armed = true").await
    }

    /// The ground with account A's own settings (`""`: shared, so report-only) and
    /// `enforcement` as in [`Ground::with`].
    async fn with(enforcement: &str) -> Ground {
        Ground::with_account("armed = true", enforcement).await
    }

    /// The ground with `enforcement` at the end of the `[enforcement]` section (say
    /// `armed = false`, another cap, or an `[enforcement.window]` table), and `account` in
    /// account A's entry.
    async fn with_account(account: &str, enforcement: &str) -> Ground {
        let moto = Moto::start().await;
        let proxy = FaultProxy::start(&moto.endpoint()).await;
        let work = Workdir::with_config(&config_text_with_aws(&format!(
            r#"regions = ["us-east-1"]
endpoint_url = "{}"
emulator = true
max_attempts = 1

[[aws.accounts]]
id = "{A}"
{account}

[enforcement]
deletable_types = ["ec2:volume", "s3:bucket"]
max_project_share_percent = 100
{enforcement}
"#,
            proxy.endpoint()
        )));
        std::fs::write(work.path().join("rules/policy/projects.toml"), POLICY).expect("policy");
        Ground { moto, proxy, work }
    }

    fn config(&self) -> String {
        self.work.config_path().to_str().expect("utf-8").to_owned()
    }

    /// Volumes, one per `(key, tags)`, in account A.
    async fn volumes(&self, specs: &[(&str, Value)]) -> HashMap<String, SeededResource> {
        let resources: Vec<Value> = specs
            .iter()
            .map(
                |(key, tags)| json!({"key": key, "account": A, "type": "ec2:volume", "tags": tags}),
            )
            .collect();
        seed(&self.moto.endpoint(), json!({ "resources": resources }))
            .await
            .resources
            .into_iter()
            .map(|r| (r.key.clone(), r))
            .collect()
    }

    /// DeleteVolume calls per volume id, from the proxy's request log.
    fn deletes(&self) -> HashMap<String, usize> {
        let mut n = HashMap::new();
        for body in self.proxy.bodies("DeleteVolume") {
            let id = body
                .split('&')
                .find_map(|kv| kv.strip_prefix("VolumeId="))
                .unwrap_or("?")
                .to_owned();
            *n.entry(id).or_default() += 1;
        }
        n
    }

    /// Sets one tag on a resource straight in moto (a person or a task changing it).
    async fn retag(&self, id: &str, key: &str, value: &str) {
        let ec2 = aws_sdk_ec2::Client::new(&self.moto.sdk_config("us-east-1").await);
        ec2.create_tags()
            .resources(id)
            .tags(
                aws_sdk_ec2::types::Tag::builder()
                    .key(key)
                    .value(value)
                    .build(),
            )
            .send()
            .await
            .expect("retag in moto");
    }

    /// Asserts that each of `gone` got exactly one delete call and is gone, and that each of
    /// `kept` got none and is still there.
    async fn check(&self, gone: &[&SeededResource], kept: &[&SeededResource]) {
        let deletes = self.deletes();
        for r in gone {
            assert_eq!(
                deletes.get(&r.id),
                Some(&1),
                "{} ({}): one delete: {deletes:?}",
                r.key,
                r.id
            );
            assert!(
                !exists(&self.moto, A, &r.arn).await,
                "{} is gone from moto",
                r.key
            );
        }
        for r in kept {
            assert_eq!(
                deletes.get(&r.id),
                None,
                "{} ({}) got no delete: {deletes:?}",
                r.key,
                r.id
            );
            assert!(
                exists(&self.moto, A, &r.arn).await,
                "{} is still in moto",
                r.key
            );
        }
    }
}

/// A running daemon binary and its address.
struct Daemon {
    process: DaemonProcess,
    addr: String,
}

impl Daemon {
    fn start(g: &Ground) -> Daemon {
        let (process, addr) = spawn_daemon(&g.work.config_path());
        Daemon { process, addr }
    }

    fn env(&self) -> [(&str, &str); 2] {
        [
            ("EPHEMERA_ADDR", self.addr.as_str()),
            ("EPHEMERA_TOKEN", OPERATOR),
        ]
    }

    /// A pass through the daemon, to its end (after any pass or reaping already running): its
    /// report.
    async fn pass(&self) -> Value {
        let out = run(&["scan", "--wait", "--output", "json"], &self.env()).await;
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).expect("scan json");
        v["run"]["summary"].clone()
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = reqwest::Client::new()
            .request(method, format!("{}{path}", self.addr))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("daemon answers");
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn acquire(&self, body: Value) -> String {
        let (s, v) = self
            .call(reqwest::Method::POST, "/api/v1/leases", WEB, Some(body))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["id"].as_str().expect("id").to_owned()
    }

    /// The audit records of `arn` with decision `deleted`.
    async fn deleted_records(&self, arn: &str) -> usize {
        records(self, arn)
            .await
            .iter()
            .filter(|(decision, _)| decision == "deleted")
            .count()
    }
}

fn tags(lease: &str) -> Value {
    crate::support::lease_tags(lease, "web", "ci 1")
}

/// Waits out the one-second grace.
async fn past_grace() {
    tokio::time::sleep(Duration::from_millis(1300)).await;
}

/// Scenarios 1-9: an active lease's id in every spelling AWS stores is that lease (kept);
/// a lease nobody knows, in any spelling, and a tag that is no lease id at all are reaped,
/// each exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn a_lease_id_in_any_spelling_is_that_lease() {
    let g = Ground::new().await;
    let d = Daemon::start(&g);
    let id = d
        .acquire(json!({"project": "web", "task": "ci 1", "owner": "alice@example.com"}))
        .await;
    let upper = id.to_uppercase();
    let simple = id.replace('-', "");
    let unknown = "0194e0a1-0000-7000-8000-00000000dead";
    let v = g
        .volumes(&[
            ("canonical", tags(&id)),
            ("upper", tags(&upper)),
            ("braced", tags(&format!("{{{id}}}"))),
            ("urn", tags(&format!("urn:uuid:{id}"))),
            ("urn-upper", tags(&format!("URN:UUID:{upper}"))),
            ("simple", tags(&simple)),
            ("padded", tags(&format!(" {id} "))),
            (
                "unknown-braced",
                tags(&format!("{{{}}}", unknown.to_uppercase())),
            ),
            ("not-an-id", tags("build-42")),
        ])
        .await;
    d.pass().await;
    past_grace().await;
    let report = d.pass().await;
    assert_eq!(report["reap"]["deleted"], 2, "{report}");
    let kept: Vec<&SeededResource> = [
        "canonical",
        "upper",
        "braced",
        "urn",
        "urn-upper",
        "simple",
        "padded",
    ]
    .iter()
    .map(|k| &v[*k])
    .collect();
    g.check(&[&v["unknown-braced"], &v["not-an-id"]], &kept)
        .await;
    let (_, findings) = d
        .call(
            reqwest::Method::GET,
            "/api/v1/findings?limit=100&all=true",
            OPERATOR,
            None,
        )
        .await;
    let why: Vec<&str> = findings["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|f| f["arn"] == v["not-an-id"].arn)
        .filter_map(|f| f["reason"].as_str())
        .collect();
    assert!(why.contains(&"lease tag is not a lease id"), "{findings:#}");
    for r in [&v["unknown-braced"], &v["not-an-id"]] {
        assert_eq!(d.deleted_records(&r.arn).await, 1);
    }
}

/// Each beat's time and status (0: no answer).
type Beats = Arc<Mutex<Vec<(std::time::Instant, u16)>>>;

/// Beats `lease` every 1.5 s against whatever address `addr` holds, recording each status.
fn beat(addr: Arc<Mutex<String>>, lease: String) -> (tokio::task::JoinHandle<()>, Beats) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let h = tokio::spawn(async move {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(1))
            .build()
            .expect("client");
        loop {
            let base = addr.lock().expect("addr").clone();
            let status = match http
                .post(format!("{base}/api/v1/leases/{lease}/heartbeat"))
                .bearer_auth(WEB)
                .send()
                .await
            {
                Ok(r) => r.status().as_u16(),
                Err(_) => 0,
            };
            log.lock()
                .expect("log")
                .push((std::time::Instant::now(), status));
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
    });
    (h, seen)
}

/// Scenarios 10-11: the daemon is stopped (SIGTERM, then in a second run SIGKILL) for three
/// heartbeat intervals while the lessee keeps beating; after the restart its beats succeed,
/// the lease is active, and nothing of it is marked or deleted.
async fn downtime_is_not_the_lessees_fault(signal: &str) {
    let g = Ground::new().await;
    let mut d = Daemon::start(&g);
    let lease = d
        .acquire(
            json!({"project": "web", "task": "ci 1", "owner": "alice@example.com",
                         "heartbeat_interval": "5s"}),
        )
        .await;
    let v = g.volumes(&[("leased", tags(&lease))]).await;
    let addr = Arc::new(Mutex::new(d.addr.clone()));
    let (beater, seen) = beat(addr.clone(), lease.clone());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pid = d.process.child.id().to_string();
    let status = std::process::Command::new("kill")
        .args([signal, &pid])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let _ = d.process.wait();
    tokio::time::sleep(Duration::from_secs(15)).await;
    let restarted = std::time::Instant::now();
    d = Daemon::start(&g);
    *addr.lock().expect("addr") = d.addr.clone();
    tokio::time::sleep(Duration::from_secs(4)).await;
    d.pass().await;
    past_grace().await;
    let report = d.pass().await;
    beater.abort();
    let after: Vec<u16> = seen
        .lock()
        .expect("log")
        .iter()
        .filter(|(at, _)| *at > restarted + Duration::from_millis(500))
        .map(|(_, s)| *s)
        .filter(|s| *s != 0)
        .collect();
    assert!(after.len() >= 3, "beats after the restart: {after:?}");
    assert!(
        after.iter().all(|s| *s == 200),
        "every beat after the restart is accepted: {after:?}"
    );
    let (_, l) = d
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/leases/{lease}"),
            WEB,
            None,
        )
        .await;
    assert_eq!(l["state"], "active", "{l}");
    assert_eq!(report["reap"]["marked"], 0, "{report}");
    assert_eq!(report["verdicts"]["expired"], Value::Null, "{report}");
    g.check(&[], &[&v["leased"]]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_downtime_is_not_the_lessees_fault() {
    downtime_is_not_the_lessees_fault("-TERM").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_downtime_is_not_the_lessees_fault() {
    downtime_is_not_the_lessees_fault("-KILL").await;
}

/// Scenario 12: the daemon's armed pass and `scan --once --act` on the same store, started
/// together: one waits for the other (`--once` waits; the daemon refuses with 409 while the
/// other holds the store's act lock, and `scan --wait` then waits), every resource is deleted
/// once, with one `deleted` record, and nothing gone is marked again.
#[tokio::test(flavor = "multi_thread")]
async fn a_pass_and_scan_once_act_racing_delete_each_resource_once() {
    let g = Ground::new().await;
    let d = Daemon::start(&g);
    let unknown = "0194e0a1-0000-7000-8000-00000000dead";
    let specs: Vec<(String, Value)> = (0..24)
        .map(|i| (format!("doomed-{i}"), tags(unknown)))
        .collect();
    let specs: Vec<(&str, Value)> = specs.iter().map(|(k, t)| (k.as_str(), t.clone())).collect();
    let v = g.volumes(&specs).await;
    d.pass().await;
    past_grace().await;
    // Slow deletes, so the two would overlap if nothing kept them apart.
    g.proxy.set_fault(
        "DeleteVolume",
        Fault::Delay(Duration::from_millis(150)),
        None,
    );
    let config = g.config();
    let args = [
        "scan", "--once", "--act", "--config", &config, "--output", "json",
    ];
    let once = run(&args, &[]);
    let (by_daemon, by_once) = tokio::join!(d.pass(), once);
    assert_eq!(
        by_once.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&by_once.stderr)
    );
    let once_report: Value = serde_json::from_slice(&by_once.stdout).expect("json");
    let deleted = by_daemon["reap"]["deleted"].as_u64().unwrap_or(0)
        + once_report["reap"]["deleted"].as_u64().unwrap_or(0);
    assert_eq!(deleted, 24, "daemon {by_daemon}\nonce {once_report}");
    let all: Vec<&SeededResource> = v.values().collect();
    g.check(&all, &[]).await;
    let report = d.pass().await;
    assert_eq!(
        report["reap"]["marked"], 0,
        "nothing gone is marked again: {report}"
    );
    for r in &all {
        assert_eq!(d.deleted_records(&r.arn).await, 1, "{}", r.arn);
    }
}

/// Scenario 13: `scan --once` without `--act` is an audit step: armed and due, it deletes
/// nothing and marks nothing; with `--act` it does.
#[tokio::test(flavor = "multi_thread")]
async fn scan_once_deletes_only_when_asked_to_act() {
    let g = Ground::new().await;
    let v = g
        .volumes(&[("doomed", tags("0194e0a1-0000-7000-8000-00000000dead"))])
        .await;
    let config = g.config();
    let audit = |act: bool| {
        let config = config.clone();
        async move {
            let mut args = vec![
                "scan",
                "--once",
                "--config",
                config.as_str(),
                "--output",
                "json",
            ];
            if act {
                args.push("--act");
            }
            let out = run(&args, &[]).await;
            assert_eq!(
                out.status.code(),
                Some(0),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            serde_json::from_slice::<Value>(&out.stdout).expect("json")
        }
    };
    let r = audit(false).await;
    assert_eq!(r["reap"], Value::Null, "no act step: {r}");
    past_grace().await;
    let r = audit(false).await;
    assert_eq!(r["verdicts"]["unknown-lease"], 1, "{r}");
    g.check(&[], &[&v["doomed"]]).await;
    audit(true).await; // marks
    past_grace().await;
    let r = audit(true).await;
    assert_eq!(r["reap"]["deleted"], 1, "{r}");
    g.check(&[&v["doomed"]], &[]).await;
}

/// Scenarios 14-20: what changes during the grace, seen at the last moment. A protect tag,
/// a new owner (marked afresh, for the new owner's own grace), a lease tag now naming an
/// active lease, or naming another unknown lease (re-marked, then reaped after a new grace:
/// never skipped forever), keep the resource this pass; the same lease id respelt is no
/// change; an untouched one and a type not allowed for deletion are the controls.
#[tokio::test(flavor = "multi_thread")]
async fn changes_during_the_grace_win_at_the_last_moment() {
    let g = Ground::new().await;
    let d = Daemon::start(&g);
    let active = d
        .acquire(json!({"project": "web", "task": "ci 1", "owner": "alice@example.com"}))
        .await;
    let x = "0194e0a1-0000-7000-8000-0000000000aa";
    let z = "0194e0a1-0000-7000-8000-0000000000bb";
    let v = g
        .volumes(&[
            ("untouched", tags(x)),
            ("protected", tags(x)),
            ("new-owner", tags(x)),
            ("now-leased", tags(x)),
            ("other-unknown", tags(x)),
            ("respelt", tags(x)),
        ])
        .await;
    let queue = seed(
        &g.moto.endpoint(),
        json!({"resources": [{"key": "queue", "account": A, "type": "sqs:queue", "tags": tags(x)}]}),
    )
    .await
    .resources
    .remove(0);
    let first = d.pass().await;
    assert_eq!(first["reap"]["marked"], 7, "{first}");
    g.retag(&v["protected"].id, "ephemera:protect", "true")
        .await;
    g.retag(&v["new-owner"].id, "ephemera:owner", "bob@example.com")
        .await;
    g.retag(&v["now-leased"].id, "ephemera:lease-id", &active)
        .await;
    g.retag(&v["other-unknown"].id, "ephemera:lease-id", z)
        .await;
    g.retag(&v["respelt"].id, "ephemera:lease-id", &x.to_uppercase())
        .await;
    past_grace().await;
    let second = d.pass().await;
    g.check(
        &[&v["untouched"], &v["respelt"]],
        &[
            &v["protected"],
            &v["new-owner"],
            &v["now-leased"],
            &v["other-unknown"],
        ],
    )
    .await;
    let sqs = g.proxy.count("DeleteQueue");
    assert_eq!(
        sqs, 0,
        "a type not allowed for deletion gets no call: {second}"
    );
    assert!(exists(&g.moto, A, &queue.arn).await);
    // The new owner and the other lease are marked afresh: a full grace, then reaped.
    let third = d.pass().await;
    assert_eq!(
        second["reap"]["marked"], 1,
        "the other lease, afresh: {second}"
    );
    assert_eq!(third["reap"]["marked"], 1, "the new owner, afresh: {third}");
    past_grace().await;
    d.pass().await;
    g.check(
        &[
            &v["untouched"],
            &v["respelt"],
            &v["new-owner"],
            &v["other-unknown"],
        ],
        &[&v["protected"], &v["now-leased"]],
    )
    .await;
}

/// A bucket of 2,500 objects tagged with a lease nobody knows, marked, and past its grace.
async fn doomed_bucket(g: &Ground, d: &Daemon) -> SeededResource {
    let bucket = seed(
        &g.moto.endpoint(),
        json!({"resources": [{"key": "bucket", "account": A, "type": "s3:bucket",
                              "tags": tags("0194e0a1-0000-7000-8000-0000000000cc"), "objects": 2500}]}),
    )
    .await
    .resources
    .remove(0);
    let first = d.pass().await;
    assert_eq!(first["reap"]["marked"], 1, "{first}");
    past_grace().await;
    bucket
}

async fn s3(g: &Ground) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::from(&g.moto.sdk_config("us-east-1").await)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

async fn objects_left(g: &Ground, bucket: &str) -> usize {
    let s3 = s3(g).await;
    let mut n = 0;
    let mut token = None;
    loop {
        let page = s3
            .list_objects_v2()
            .bucket(bucket)
            .set_continuation_token(token)
            .send()
            .await
            .expect("list objects");
        n += page.contents().len();
        token = page.next_continuation_token().map(str::to_owned);
        if token.is_none() {
            return n;
        }
    }
}

/// The audit records of `arn` as `(decision, detail)`.
async fn records(d: &Daemon, arn: &str) -> Vec<(String, String)> {
    let out = run(
        &["audit", "list", "--output", "json", "--limit", "1000"],
        &d.env(),
    )
    .await;
    let page: Value = serde_json::from_slice(&out.stdout).expect("audit json");
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|r| r["arn"] == arn)
        .map(|r| {
            (
                r["decision"].as_str().unwrap_or_default().to_owned(),
                r["detail"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Scenario 21: a protect tag put on a bucket while it is being emptied stops the emptying
/// after the batch in flight: the bucket and the rest of its objects stay, and each batch
/// removed is in the audit log.
#[tokio::test(flavor = "multi_thread")]
async fn a_bucket_protected_while_it_is_emptied_keeps_the_rest() {
    let hook = Receiver::start(HOOK_SECRET);
    let g = Ground::with(&format!(
        "armed = true\n{}",
        hook_section(&hook, "resource.*")
    ))
    .await;
    std::fs::write(g.work.path().join("hook.secret"), HOOK_SECRET).expect("secret");
    let d = Daemon::start(&g);
    let bucket = doomed_bucket(&g, &d).await;
    // The first batch is slow: the protect tag arrives while it is in flight.
    g.proxy.set_fault(
        "DeleteObjects",
        Fault::Delay(Duration::from_secs(2)),
        Some(1),
    );
    let addr = d.addr.clone();
    let pass = tokio::spawn(async move {
        run(
            &["scan", "--wait", "--output", "json"],
            &[
                ("EPHEMERA_ADDR", addr.as_str()),
                ("EPHEMERA_TOKEN", OPERATOR),
            ],
        )
        .await
    });
    eventually("a DeleteObjects call", Duration::from_secs(10), || async {
        g.proxy.count("DeleteObjects") > 0
    })
    .await;
    assert_eq!(
        g.proxy.count("DeleteObjects"),
        1,
        "the first batch is in flight"
    );
    let s3 = s3(&g).await;
    let mut tag_set: Vec<aws_sdk_s3::types::Tag> = s3
        .get_bucket_tagging()
        .bucket(&bucket.id)
        .send()
        .await
        .expect("tags")
        .tag_set()
        .to_vec();
    tag_set.push(
        aws_sdk_s3::types::Tag::builder()
            .key("ephemera:protect")
            .value("keep")
            .build()
            .expect("tag"),
    );
    s3.put_bucket_tagging()
        .bucket(&bucket.id)
        .tagging(
            aws_sdk_s3::types::Tagging::builder()
                .set_tag_set(Some(tag_set))
                .build()
                .expect("tagging"),
        )
        .send()
        .await
        .expect("protect the bucket");
    let out = pass.await.expect("pass task");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        g.proxy.count("DeleteObjects"),
        1,
        "no batch after the protection"
    );
    assert_eq!(g.proxy.count("DeleteBucket"), 0);
    assert!(exists(&g.moto, A, &bucket.arn).await, "the bucket stays");
    assert_eq!(objects_left(&g, &bucket.id).await, 1500);
    let r = records(&d, &bucket.arn).await;
    assert!(
        r.contains(&(
            "emptying".into(),
            "1000 object versions removed so far".into()
        )),
        "{r:?}"
    );
    assert!(
        r.iter()
            .any(|(d, why)| d == "skipped" && why.contains("protect tag appeared")),
        "{r:?}"
    );
    assert!(!r.iter().any(|(d, _)| d == "deleted"), "{r:?}");
    // The webhook hears of the mark, then of the skip with why, and of no deletion.
    let got = hook_events(&hook, 2).await;
    assert_eq!(
        got[0]["event"]["type"], "dev.ephemera.resource.marked",
        "{got:?}"
    );
    let e = &got[1]["event"];
    assert_eq!(e["type"], "dev.ephemera.resource.skipped", "{got:?}");
    assert_eq!(e["subject"], bucket.arn.as_str(), "{got:?}");
    assert!(
        e["data"]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("protect tag appeared")),
        "{got:?}"
    );
    assert!(
        !got.iter()
            .any(|x| x["event"]["type"] == "dev.ephemera.resource.deleted"),
        "{got:?}"
    );
}

/// Scenario 22: a daemon killed while it empties a bucket leaves the batches it removed in the
/// audit log, and its pass is closed as `interrupted` when the daemon starts again; the next
/// pass resumes and deletes the bucket, once.
#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_emptying_is_recorded_and_resumed() {
    let g = Ground::new().await;
    let mut d = Daemon::start(&g);
    let bucket = doomed_bucket(&g, &d).await;
    // The first batch is slow; while it is in flight, the tag check after it is made to hang,
    // so the daemon is killed between two batches.
    g.proxy.set_fault(
        "DeleteObjects",
        Fault::Delay(Duration::from_secs(1)),
        Some(1),
    );
    let started = run(&["scan", "--output", "json"], &d.env()).await;
    assert_eq!(started.status.code(), Some(0));
    let killed_run = serde_json::from_slice::<Value>(&started.stdout).expect("json")["run_id"]
        .as_str()
        .expect("run id")
        .to_owned();
    eventually("a DeleteObjects call", Duration::from_secs(10), || async {
        g.proxy.count("DeleteObjects") > 0
    })
    .await;
    assert_eq!(
        g.proxy.count("DeleteObjects"),
        1,
        "the first batch is in flight"
    );
    g.proxy.set_fault(
        "GetBucketTagging",
        Fault::Delay(Duration::from_secs(30)),
        None,
    );
    let first_batch = (
        "emptying".to_owned(),
        "1000 object versions removed so far".to_owned(),
    );
    eventually(
        "the first batch on record",
        Duration::from_secs(10),
        || async { records(&d, &bucket.arn).await.contains(&first_batch) },
    )
    .await;
    d.process.child.kill().expect("SIGKILL");
    let _ = d.process.wait();
    g.proxy.clear_faults();
    assert_eq!(
        objects_left(&g, &bucket.id).await,
        1500,
        "killed between two batches"
    );
    d = Daemon::start(&g);
    // The killed pass is closed as interrupted at start, not left `running`.
    let (_, killed) = d
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/scans/{killed_run}"),
            OPERATOR,
            None,
        )
        .await;
    assert_eq!(killed["run"]["outcome"], "interrupted", "{killed}");
    let report = d.pass().await;
    assert_eq!(report["reap"]["deleted"], 1, "{report}");
    assert_eq!(g.proxy.count("DeleteBucket"), 1);
    assert!(!exists(&g.moto, A, &bucket.arn).await, "the bucket is gone");
    assert_eq!(d.deleted_records(&bucket.arn).await, 1);
}

/// Five volumes of a lease nobody knows, marked by a first pass and past their grace.
async fn five_doomed(g: &Ground, d: &Daemon) -> Vec<SeededResource> {
    let specs: Vec<(String, Value)> = (0..5)
        .map(|i| {
            (
                format!("doomed-{i}"),
                tags("0194e0a1-0000-7000-8000-00000000dead"),
            )
        })
        .collect();
    let specs: Vec<(&str, Value)> = specs.iter().map(|(k, t)| (k.as_str(), t.clone())).collect();
    let v = g.volumes(&specs).await;
    let first = d.pass().await;
    assert_eq!(first["reap"]["marked"], 5, "{first}");
    past_grace().await;
    v.into_values().collect()
}

/// AWS calls that change something, from the proxy's log.
fn mutating_calls(g: &Ground) -> Vec<String> {
    g.proxy
        .requests()
        .into_iter()
        .map(|r| r.operation)
        .filter(|op| {
            [
                "Delete",
                "Terminate",
                "Deregister",
                "Release",
                "Detach",
                "Disassociate",
                "Schedule",
                "Remove",
                "Put",
                "Create",
                // Deactivating an access key.
                "Update",
            ]
            .iter()
            .any(|verb| op.starts_with(verb))
        })
        .collect()
}

/// Scenario 23: unarmed, the due items are recorded as would-delete and no AWS call that
/// changes anything is made.
#[tokio::test(flavor = "multi_thread")]
async fn unarmed_nothing_is_changed_in_aws() {
    let g = Ground::with("armed = false").await;
    let d = Daemon::start(&g);
    let doomed = five_doomed(&g, &d).await;
    let report = d.pass().await;
    assert_eq!(report["reap"]["would_delete"], 5, "{report}");
    let kept: Vec<&SeededResource> = doomed.iter().collect();
    g.check(&[], &kept).await;
    assert_eq!(mutating_calls(&g), Vec::<String>::new());
}

/// A shared account (neither dedicated nor armed by its own settings) is report-only, armed
/// enforcement or not: nothing is deleted there and the plan says why; with a per-account cap
/// below what is due, the account deletes nothing either.
#[tokio::test(flavor = "multi_thread")]
async fn a_shared_account_is_report_only_and_an_account_cap_holds_it() {
    for (account, why) in [
        ("", "is report-only"),
        (
            "armed = true\nmax_deletions_per_pass = 4",
            "max_deletions_per_pass = 4",
        ),
    ] {
        let g = Ground::with_account(account, "armed = true").await;
        let d = Daemon::start(&g);
        let doomed = five_doomed(&g, &d).await;
        let report = d.pass().await;
        assert_eq!(report["reap"]["deleted"], 0, "{account}: {report}");
        let kept: Vec<&SeededResource> = doomed.iter().collect();
        g.check(&[], &kept).await;
        assert_eq!(mutating_calls(&g), Vec::<String>::new(), "{account}");
        let out = run(&["plan", "--output", "json"], &d.env()).await;
        let plan: Value = serde_json::from_slice(&out.stdout).expect("plan json");
        let items = plan["items"].as_array().expect("items");
        assert_eq!(items.len(), 5, "{plan}");
        for i in items {
            assert_eq!(i["status"], "held", "{plan}");
            let held = i["held_reason"].as_str().unwrap_or_default();
            assert!(held.contains(why), "{account}: {held}");
        }
    }
}

/// Scenario 24: more due than `max_deletions_per_pass`: the pass deletes none of them.
#[tokio::test(flavor = "multi_thread")]
async fn over_the_pass_cap_nothing_is_deleted() {
    let hook = Receiver::start(HOOK_SECRET);
    let g = Ground::with(&format!(
        "armed = true\nmax_deletions_per_pass = 4\n{}",
        hook_section(&hook, "reaper.*")
    ))
    .await;
    std::fs::write(g.work.path().join("hook.secret"), HOOK_SECRET).expect("secret");
    let d = Daemon::start(&g);
    let doomed = five_doomed(&g, &d).await;
    let report = d.pass().await;
    assert_eq!(
        report["reap"]["capped"].as_array().map(Vec::len),
        Some(1),
        "{report}"
    );
    let kept: Vec<&SeededResource> = doomed.iter().collect();
    g.check(&[], &kept).await;
    // The webhook is told, once, with what was capped.
    let got = hook_events(&hook, 1).await;
    let e = &got[0]["event"];
    assert_eq!(e["type"], "dev.ephemera.reaper.cap-hit", "{got:?}");
    assert_eq!(e["data"]["capped"], report["reap"]["capped"], "{got:?}");
}

const HOOK_SECRET: &str = "a-webhook-secret-for-the-safety-ground";

/// A `[[webhooks]]` table for `hook`, taking `events` (the secret in `hook.secret`).
fn hook_section(hook: &Receiver, events: &str) -> String {
    format!(
        "\n[[webhooks]]\nname = \"ops\"\nurl = \"{}\"\nsecret_file = \"hook.secret\"\n\
         events = [\"{events}\"]\nretry_backoff = \"1s\"\n",
        hook.url()
    )
}

/// The first `n` requests `hook` received, once it has them; each signed and shaped right.
async fn hook_events(hook: &Receiver, n: usize) -> Vec<Value> {
    let got = eventually_some("webhook events", Duration::from_secs(20), || {
        let got = hook.received();
        async move { (got.len() >= n).then_some(got) }
    })
    .await;
    assert!(got.iter().all(|x| x["ok"] == true), "{got:?}");
    got
}

/// A deletion AWS keeps refusing (throttled past the SDK's retries) is recorded failed and
/// kept for a later pass; each failure is told to the webhooks once, and nothing is deleted.
#[tokio::test(flavor = "multi_thread")]
async fn failed_deletions_are_told_to_the_webhooks() {
    let hook = Receiver::start(HOOK_SECRET);
    let g = Ground::with(&format!(
        "armed = true\n{}",
        hook_section(&hook, "resource.failed")
    ))
    .await;
    std::fs::write(g.work.path().join("hook.secret"), HOOK_SECRET).expect("secret");
    let d = Daemon::start(&g);
    let doomed = five_doomed(&g, &d).await;
    g.proxy.set_fault("DeleteVolume", Fault::Throttle, None);
    let report = d.pass().await;
    assert_eq!(report["reap"]["failed"], 5, "{report}");
    for r in &doomed {
        assert!(exists(&g.moto, A, &r.arn).await, "{} stays", r.arn);
    }
    let got = hook_events(&hook, 5).await;
    let mut subjects: Vec<&str> = got
        .iter()
        .map(|x| {
            assert_eq!(x["event"]["type"], "dev.ephemera.resource.failed", "{x}");
            x["event"]["subject"].as_str().unwrap_or_default()
        })
        .collect();
    subjects.sort_unstable();
    let mut want: Vec<&str> = doomed.iter().map(|r| r.arn.as_str()).collect();
    want.sort_unstable();
    assert_eq!(subjects, want, "one event per volume");
}

/// Scenario 25: a walk throttled to incompletion in the pass that would delete: nothing of
/// that account and region is deleted; the next complete pass deletes each once.
#[tokio::test(flavor = "multi_thread")]
async fn an_incomplete_walk_deletes_nothing() {
    let hook = Receiver::start(HOOK_SECRET);
    let g = Ground::with(&format!(
        "armed = true\n{}",
        hook_section(&hook, "walk.incomplete")
    ))
    .await;
    std::fs::write(g.work.path().join("hook.secret"), HOOK_SECRET).expect("secret");
    let d = Daemon::start(&g);
    let doomed = five_doomed(&g, &d).await;
    g.proxy.set_fault("GetResources", Fault::Throttle, None);
    let report = d.pass().await;
    assert_eq!(report["outcome"], "partial", "{report}");
    let kept: Vec<&SeededResource> = doomed.iter().collect();
    g.check(&[], &kept).await;
    // The webhook hears of the incomplete walk, with why.
    let got = hook_events(&hook, 1).await;
    let e = &got[0]["event"];
    assert_eq!(e["type"], "dev.ephemera.walk.incomplete", "{got:?}");
    assert_eq!(e["data"]["outcome"], "incomplete", "{got:?}");
    assert!(
        e["data"]["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{got:?}"
    );
    g.proxy.clear_faults();
    d.pass().await;
    g.check(&kept, &[]).await;
}

/// Scenario 26: outside the deletion window nothing is deleted.
#[tokio::test(flavor = "multi_thread")]
async fn outside_the_window_nothing_is_deleted() {
    // A one-hour window twelve hours away from now, whatever the hour.
    let hour = (chrono::Utc::now().hour() + 12) % 24;
    let g = Ground::with(&format!(
        "armed = true\n[enforcement.window]\nstart_hour = {hour}\nend_hour = {}",
        hour + 1
    ))
    .await;
    let d = Daemon::start(&g);
    let doomed = five_doomed(&g, &d).await;
    let report = d.pass().await;
    assert_eq!(report["reap"]["deleted"], 0, "{report}");
    let kept: Vec<&SeededResource> = doomed.iter().collect();
    g.check(&[], &kept).await;
}

/// The ground for a restore: a lease in the backup (`old`), one made after it (`forgotten`),
/// a volume of each, the old lease released after the backup; the daemon stopped. Returns the
/// ground, the backup and the volumes.
async fn restore_ground() -> (Ground, PathBuf, HashMap<String, SeededResource>) {
    let g = Ground::new().await;
    let mut d = Daemon::start(&g);
    let lease = json!({"project": "web", "task": "ci 1", "owner": "alice@example.com"});
    let old = d.acquire(lease.clone()).await;
    let backup = g.work.path().join("backup.db");
    let out = run(
        &[
            "store",
            "backup",
            "--config",
            &g.config(),
            backup.to_str().expect("utf-8"),
        ],
        &[],
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let forgotten = d.acquire(lease).await;
    let v = g
        .volumes(&[("forgotten", tags(&forgotten)), ("old", tags(&old))])
        .await;
    let (s, _) = d
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/leases/{old}/release"),
            WEB,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let pid = d.process.child.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let _ = d.process.wait();
    (g, backup, v)
}

/// Why the plan holds the item of `arn`, or its status.
async fn plan_status(d: &Daemon, arn: &str) -> String {
    let out = run(&["plan", "--output", "json"], &d.env()).await;
    let plan: Value = serde_json::from_slice(&out.stdout).expect("plan json");
    plan["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["arn"] == arn)
        .map(|i| format!("{} {}", i["status"], i["held_reason"]))
        .unwrap_or_else(|| format!("not in the plan: {plan}"))
}

/// `ephemera store restore` of an old backup while a lease made since has resources: that
/// lease is unknown to the restored store, yet nothing of it is deleted (reaping of
/// unknown-lease and released resources is suspended, the plan and a gauge say so), until an
/// operator confirms; the store it replaced is kept beside it.
#[tokio::test(flavor = "multi_thread")]
async fn a_restored_store_deletes_nothing_of_the_leases_it_forgot() {
    let (g, backup, v) = restore_ground().await;
    // The daemon wrote that it was alive within the last 2 s: a restore waits for that to age.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let out = run(
        &[
            "store",
            "restore",
            "--config",
            &g.config(),
            backup.to_str().expect("utf-8"),
        ],
        &[],
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("is suspended until `ephemera store confirm`"),
        "{stdout}"
    );
    let kept = std::fs::read_dir(g.work.path().join("state"))
        .expect("state dir")
        .filter_map(Result::ok)
        .any(|e| e.file_name().to_string_lossy().contains(".before-restore-"));
    assert!(kept, "the replaced store is kept");

    let d = Daemon::start(&g);
    let first = d.pass().await;
    assert_eq!(
        first["reap"]["marked"], 1,
        "the forgotten lease's volume: {first}"
    );
    past_grace().await;
    let second = d.pass().await;
    assert_eq!(second["reap"]["deleted"], 0, "{second}");
    g.check(&[], &[&v["forgotten"], &v["old"]]).await;
    assert_eq!(mutating_calls(&g), Vec::<String>::new());
    let held = plan_status(&d, &v["forgotten"].arn).await;
    assert!(
        held.contains("suspended: the store was restored from"),
        "{held}"
    );
    let text = reqwest::get(format!("{}/metrics", d.addr))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert_eq!(
        crate::support::sample(&text, "ephemera_reaping_suspended"),
        Some(1.0)
    );

    // The operator confirms: the forgotten lease is truly unknown now, and its volume goes;
    // the old lease is active in the restored store, so its volume stays.
    let out = run(&["store", "confirm", "--config", &g.config()], &[]).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("confirmed"));
    let third = d.pass().await;
    assert_eq!(third["reap"]["deleted"], 1, "{third}");
    g.check(&[&v["forgotten"]], &[&v["old"]]).await;
}

/// A backup copied over the store by hand (no `store restore`): the first pass finds a
/// resource naming a lease newer than any the store issued, and suspends the same way.
#[tokio::test(flavor = "multi_thread")]
async fn a_store_copied_back_by_hand_is_caught_by_its_newer_leases() {
    let (g, backup, v) = restore_ground().await;
    let store = g.work.path().join("state/ephemera.db");
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", store.display()));
    }
    std::fs::copy(&backup, &store).expect("copied back");
    let d = Daemon::start(&g);
    d.pass().await;
    past_grace().await;
    let second = d.pass().await;
    assert_eq!(second["reap"]["deleted"], 0, "{second}");
    g.check(&[], &[&v["forgotten"], &v["old"]]).await;
    let held = plan_status(&d, &v["forgotten"].arn).await;
    assert!(
        held.contains("leases are newer than any this store issued"),
        "{held}"
    );
}
