//! Test helpers: a real daemon in-process on port 0 with its own temp dir and store, a small
//! HTTP client for it, and the one poll helper ([`eventually`] and its kin). The peers the
//! tests run against live beside it: [`moto`] (the AWS emulator), [`proxy`] (a recording,
//! fault-injecting proxy in front of it), [`seed`] (an estate to audit), [`smtp`] (a real
//! SMTP server) and [`oidc`] (a local OIDC issuer that signs ID tokens).

pub mod moto;
pub mod oidc;
pub mod postgres;
pub mod proxy;
pub mod seed;
pub mod smtp;
pub mod webhook;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use ephemera::auth::TokenHash;
use ephemera::clock::{Clock, ManualClock, SystemClock};
use ephemera::config::Config;
use reqwest::StatusCode;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const OPERATOR: &str = "op-token";
pub const WEB: &str = "web-token";
pub const WEB2: &str = "web2-token";
pub const DATA: &str = "data-token";
pub const VIEWER: &str = "viewer-token";

/// The policy every test daemon runs with.
pub const POLICY: &str = r#"
[[project]]
name = "web"
lessees = ["ci-web", "ci-web-2"]
default_ttl = "2h"
max_ttl = "24h"
grace = "1h"
max_active_leases = 10
allowed_regions = ["us-east-1", "eu-west-1"]

[project.on]
expired = { action = "reap" }

[[project]]
name = "data"
lessees = ["*"]
default_ttl = "6h"
max_ttl = "3d"
grace = "12h"
"#;

/// The identity tags of a resource a task under `lease` made (owner alice).
pub fn lease_tags(lease: &str, project: &str, task: &str) -> Value {
    serde_json::json!({"ephemera:lease-id": lease, "ephemera:project": project,
                       "ephemera:task": task, "ephemera:owner": "alice@example.com"})
}

/// A config for a test daemon in `dir`, with the test principals.
pub fn config_text() -> String {
    config_text_with_aws(
        "regions = [\"us-east-1\", \"eu-west-1\"]\n\
         # Tests never reach real AWS: a closed loopback port unless a test points this at moto.\n\
         endpoint_url = \"http://127.0.0.1:9\"\n\
         emulator = true\n\n\
         [[aws.accounts]]\n\
         id = \"123456789012\"\n",
    )
}

/// The test config with `aws` as the body of its `[aws]` section.
pub fn config_text_with_aws(aws: &str) -> String {
    let h = |t: &str| TokenHash::of(t).to_hex();
    format!(
        r#"
[api]
listen = "127.0.0.1:0"
max_body_bytes = 4096

[[api.principals]]
name = "oncall"
role = "operator"
token_sha256 = "{op}"

[[api.principals]]
name = "ci-web"
role = "lessee"
projects = ["web"]
token_sha256 = "{web}"

[[api.principals]]
name = "ci-web-2"
role = "lessee"
projects = ["web"]
token_sha256 = "{web2}"

[[api.principals]]
name = "ci-data"
role = "lessee"
projects = ["data"]
token_sha256 = "{data}"

[[api.principals]]
name = "dashboards"
role = "viewer"
token_sha256 = "{viewer}"

[store]
path = "state/ephemera.db"

[rules]
dir = "rules"

[aws]
{aws}
[schedules]
# Never fires during a test (tests trigger passes explicitly).
scan = "0 0 1 1 *"
cost = "0 6,14,22 * * *"
"#,
        op = h(OPERATOR),
        web = h(WEB),
        web2 = h(WEB2),
        data = h(DATA),
        viewer = h(VIEWER),
    )
}

/// A temp dir holding `ephemera.toml` and `rules/policy/projects.toml`.
pub struct Workdir {
    pub dir: tempfile::TempDir,
}

impl Workdir {
    pub fn new() -> Workdir {
        Workdir::with_config(&config_text())
    }

    pub fn with_config(config: &str) -> Workdir {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("rules/policy")).expect("rules dir");
        std::fs::write(dir.path().join("rules/policy/projects.toml"), POLICY)
            .expect("write policy");
        std::fs::write(dir.path().join("ephemera.toml"), config).expect("write config");
        Workdir { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.path().join("ephemera.toml")
    }

    pub fn config(&self) -> Config {
        Config::load(&self.config_path()).expect("test config is valid")
    }
}

/// Twenty leases of `data` (token DATA) that ran ten minutes each on `clock`: the history
/// that gives the project a p95 lease duration of ten minutes (runtime early warning).
pub async fn ten_minute_history(d: &TestDaemon, clock: &ManualClock) {
    let mut done = Vec::new();
    for i in 0..20 {
        done.push(d.acquire(DATA, "data", &format!("etl {i}")).await);
    }
    clock.advance(chrono::TimeDelta::minutes(10));
    for id in &done {
        d.release(DATA, id).await;
    }
}

/// A daemon running in this process.
pub struct TestDaemon {
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

/// A fixed start time for tests that move the clock.
pub fn manual_clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0)
            .single()
            .expect("valid time"),
    ))
}

impl TestDaemon {
    pub async fn start(work: &Workdir) -> TestDaemon {
        TestDaemon::start_with_clock(work, Arc::new(SystemClock)).await
    }

    pub async fn start_with_clock(work: &Workdir, clock: Arc<dyn Clock>) -> TestDaemon {
        let config = work.config();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind port 0");
        let addr = listener.local_addr().expect("bound address");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(ephemera::daemon::serve(
            config,
            listener,
            async {
                let _ = rx.await;
            },
            clock,
        ));
        let http = reqwest::Client::new();
        let d = TestDaemon {
            addr,
            http,
            stop: Some(tx),
            task: Some(task),
        };
        // Ready once /readyz answers (the store is open by then).
        for _ in 0..200 {
            if let Ok(r) = d.http.get(d.url("/readyz")).send().await
                && r.status() == StatusCode::OK
            {
                return d;
            }
            if d.task.as_ref().is_some_and(|t| t.is_finished()) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        // Say why when it stopped on its own (a bad rules file, a store it cannot open).
        let mut d = d;
        if let Some(task) = d.task.take().filter(|t| t.is_finished()) {
            match task.await {
                Ok(Err(e)) => panic!("daemon did not start: {e:#}"),
                other => panic!("daemon stopped at start: {other:?}"),
            }
        }
        panic!("daemon did not become ready");
    }

    /// Stops the daemon and waits for it to finish.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await
                .expect("daemon task joins")
                .expect("daemon ran cleanly");
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sends a request; returns the status and the JSON body (Null when empty or not JSON).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (StatusCode, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("valid method");
        let mut req = self.http.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_owned());
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status();
        let bytes = resp.bytes().await.expect("body read");
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call("POST", path, Some(token), Some(&body.to_string()))
            .await
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call("GET", path, Some(token), None).await
    }

    /// Acquires a lease for alice and returns its id, failing the test otherwise.
    pub async fn acquire(&self, token: &str, project: &str, task: &str) -> String {
        self.acquire_with(
            token,
            serde_json::json!({"project": project, "task": task, "owner": "alice@example.com"}),
        )
        .await
    }

    /// Acquires a lease with the request `body` and returns its id, failing the test otherwise.
    pub async fn acquire_with(&self, token: &str, body: Value) -> String {
        let (status, lease) = self.post("/api/v1/leases", token, body).await;
        assert_eq!(status, StatusCode::CREATED, "{lease}");
        lease["id"].as_str().expect("lease id").to_owned()
    }

    /// Renews lease `id` as `token` for `ttl`, which must succeed; returns the renewed lease.
    pub async fn renew(&self, token: &str, id: &str, ttl: &str) -> Value {
        let (s, body) = self
            .post(
                &format!("/api/v1/leases/{id}/renew"),
                token,
                serde_json::json!({"ttl": ttl}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "renew {id}: {body}");
        body
    }

    pub async fn metrics(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("metrics answered")
            .text()
            .await
            .expect("metrics text")
    }

    /// Releases lease `id` as `token`, which must succeed.
    pub async fn release(&self, token: &str, id: &str) {
        let (s, body) = self
            .post(
                &format!("/api/v1/leases/{id}/release"),
                token,
                serde_json::json!({}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "release {id}: {body}");
    }

    /// Starts a pass through the API (`POST /scans`) and waits for its end; returns the run.
    pub async fn pass(&self) -> Value {
        let (s, started) = self
            .post("/api/v1/scans", OPERATOR, serde_json::json!({}))
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{started}");
        let id = started["run_id"].as_str().expect("run id").to_owned();
        self.wait_scan(&id).await
    }

    /// Waits for the pass `id` to end (at most a minute); returns the run.
    pub async fn wait_scan(&self, id: &str) -> Value {
        for _ in 0..1200 {
            let (_, run) = self.get(&format!("/api/v1/scans/{id}"), VIEWER).await;
            if run["run"]["outcome"] != "running" {
                return run;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("scan {id} did not finish");
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// The value of one sample in a Prometheus text exposition, if present.
pub fn sample(metrics: &str, name_and_labels: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        let (key, value) = l.rsplit_once(' ')?;
        (key == name_and_labels).then(|| value.parse().ok())?
    })
}

/// Polls `check` every 25 ms until it holds; panics naming `what` when `within` has passed
/// first (never gives up silently). The one poll loop of the tests.
pub async fn eventually<F, Fut>(what: &str, within: std::time::Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    eventually_some(what, within, || {
        let held = check();
        async move { held.await.then_some(()) }
    })
    .await
}

/// Polls `check` every 25 ms until it returns a value, and returns it; panics naming `what`
/// when `within` has passed first.
pub async fn eventually_some<T, F, Fut>(what: &str, within: std::time::Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    eventually_ok(what, within, || {
        let got = check();
        async move { got.await.ok_or_else(String::new) }
    })
    .await
}

/// Polls `check` every 25 ms until it returns `Ok`, and returns its value; panics naming
/// `what` and what `check` last saw (its `Err`) when `within` has passed first.
pub async fn eventually_ok<T, F, Fut>(what: &str, within: std::time::Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let last = match check().await {
            Ok(v) => return v,
            Err(last) => last,
        };
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {within:?}: {what}\n{last}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}
