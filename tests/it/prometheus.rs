//! What users see in Prometheus and Grafana: the lease metrics the Leases dashboard needs, the
//! dashboards' own conventions, and an end-to-end run against a real Prometheus (Debian's
//! `prometheus` package) scraping a daemon that has something in every metric, in which every
//! panel of `dashboards/*.json`, every template variable and every recording rule of
//! `rules/prometheus/*.yml` must return data.
//!
//! Architecture Invariant: a `Prometheus` listens on 127.0.0.1 only, scrapes only the daemon it
//! was given, and kills only its own child process (on drop). Nothing here hard-codes a panel
//! list: the dashboards and the rules files are parsed, so a new panel is checked as it lands.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chrono::TimeDelta;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::cost::{day, queue};
use crate::support::moto::Moto;
use crate::support::moto::free_port;
use crate::support::proxy::{Fault, FaultProxy};
use crate::support::seed::seed;
use crate::support::smtp::Smtp;
use crate::support::{
    DATA, OPERATOR, TestDaemon, WEB, Workdir, config_text_with_aws, lease_tags, manual_clock,
    sample,
};

// ---- the lease metrics ------------------------------------------------------------------------

/// web has its own warning window and a quota; data takes the default window (1h) and has none.
const LEASE_POLICY: &str = r#"
[[project]]
name = "web"
lessees = ["ci-web", "ci-web-2"]
default_ttl = "2h"
max_ttl = "24h"
grace = "1h"
max_active_leases = 7
warning_window = "30m"

[[project]]
name = "data"
lessees = ["*"]
default_ttl = "6h"
max_ttl = "3d"
grace = "12h"
"#;

async fn lease(d: &TestDaemon, token: &str, project: &str, extra: Value) -> String {
    let mut body = json!({"project": project, "task": "t", "owner": "alice@example.com"});
    for (k, v) in extra.as_object().expect("an object of extra fields") {
        body[k] = v.clone();
    }
    d.acquire_with(token, body).await
}

/// Labelled counters whose label values are known at start exist at 0 from the first scrape,
/// so the first event of each (a first incomplete walk, a first deletion of a type, a first
/// mail of a kind) shows as an increase; types outside `deletable_types` get no series.
#[tokio::test(flavor = "multi_thread")]
async fn known_counter_series_start_at_zero() {
    let config = format!(
        "{}\n[enforcement]\ndeletable_types = [\"ec2:volume\"]\n",
        crate::support::config_text()
    );
    let work = Workdir::with_config(&config);
    let d = TestDaemon::start(&work).await;
    let m = d.metrics().await;
    for series in [
        r#"ephemera_walks_total{outcome="incomplete"}"#,
        r#"ephemera_walks_total{outcome="complete"}"#,
        r#"ephemera_emails_sent_total{kind="owner-digest"}"#,
        r#"ephemera_emails_sent_total{kind="oncall-summary"}"#,
        r#"ephemera_reap_actions_total{outcome="deleted",resource_type="ec2:volume"}"#,
        r#"ephemera_reap_actions_total{outcome="failed",resource_type="ec2:volume"}"#,
        r#"ephemera_task_runs_total{outcome="partial",task="scan"}"#,
        r#"ephemera_task_runs_total{outcome="failed",task="cost"}"#,
        r#"ephemera_sweeps_total{outcome="incomplete",resource_type="lambda:function"}"#,
        r#"ephemera_never_tagged_found_total{resource_type="ec2:volume"}"#,
        r#"ephemera_store_purged_rows_total{table="leases"}"#,
        r#"ephemera_store_purged_rows_total{table="finding_events"}"#,
    ] {
        assert_eq!(sample(&m, series), Some(0.0), "{series} in\n{m}");
    }
    assert!(
        !m.lines()
            .any(|l| l.starts_with("ephemera_reap_actions_total") && l.contains("sqs:queue")),
        "only deletable types get reap series:\n{m}"
    );
}

/// `ephemera_leases_expiring` counts active leases ending (expiry or missed heartbeat) within
/// their own project's window; `ephemera_lease_quota` is `max_active_leases` of projects with
/// one; `ephemera_lease_duration_seconds` observes acquire → release, expired leases included
/// once released, and every policy project's series exists before its first release.
#[tokio::test(flavor = "multi_thread")]
async fn lease_metrics_expiring_quota_and_duration() {
    let work = Workdir::new();
    std::fs::write(work.path().join("rules/policy/projects.toml"), LEASE_POLICY).expect("policy");
    let clock = manual_clock();
    let d = TestDaemon::start_with_clock(&work, clock.clone()).await;
    let m = d.metrics().await;
    for p in ["web", "data"] {
        let s = |k: &str| sample(&m, &format!("{k}{{project=\"{p}\"}}"));
        assert_eq!(s("ephemera_leases_expiring"), Some(0.0), "{p}: {m}");
        assert_eq!(s("ephemera_lease_duration_seconds_count"), Some(0.0), "{p}");
    }
    assert_eq!(
        sample(&m, r#"ephemera_lease_quota{project="web"}"#),
        Some(7.0)
    );
    assert!(
        !m.contains("ephemera_lease_quota{project=\"data\"}"),
        "no quota, no series: {m}"
    );

    // web (window 30m): 20m and a 10m heartbeat are expiring, 45m and 2h are not; a released
    // 10m lease is not active. data (default window 1h): 50m is expiring, 2h is not.
    let short = lease(&d, WEB, "web", json!({"ttl": "20m"})).await;
    lease(
        &d,
        WEB,
        "web",
        json!({"ttl": "2h", "heartbeat_interval": "10m"}),
    )
    .await;
    lease(&d, WEB, "web", json!({"ttl": "45m"})).await;
    let long = lease(&d, WEB, "web", json!({"ttl": "2h"})).await;
    let released = lease(&d, WEB, "web", json!({"ttl": "10m"})).await;
    lease(&d, DATA, "data", json!({"ttl": "50m"})).await;
    lease(&d, DATA, "data", json!({"ttl": "2h"})).await;
    d.release(WEB, &released).await;
    let m = d.metrics().await;
    let expiring =
        |m: &str, p: &str| sample(m, &format!("ephemera_leases_expiring{{project=\"{p}\"}}"));
    assert_eq!(expiring(&m, "web"), Some(2.0), "{m}");
    assert_eq!(expiring(&m, "data"), Some(1.0), "{m}");
    assert_eq!(
        sample(
            &m,
            r#"ephemera_lease_duration_seconds_count{project="web"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, r#"ephemera_lease_duration_seconds_sum{project="web"}"#),
        Some(0.0),
        "released the moment it was taken"
    );

    // 30 minutes on: the 20m and the heartbeat lease have expired; 45m ends within 15m; data's
    // 50m within 20m, its 2h in 90m (outside the hour).
    clock.advance(TimeDelta::minutes(30));
    let m = d.metrics().await;
    assert_eq!(expiring(&m, "web"), Some(1.0), "{m}");
    assert_eq!(expiring(&m, "data"), Some(1.0), "{m}");

    // Releasing the 2h lease and the expired 20m one after 30 minutes: two observations of
    // 1800 s, in the 30m bucket and not below it.
    for id in [&long, &short] {
        d.release(WEB, id).await;
    }
    let m = d.metrics().await;
    let h = |k: &str| sample(&m, &format!("ephemera_lease_duration_seconds_{k}"));
    assert_eq!(h(r#"count{project="web"}"#), Some(3.0), "{m}");
    assert_eq!(h(r#"sum{project="web"}"#), Some(3600.0));
    assert_eq!(h(r#"bucket{project="web",le="900"}"#), Some(1.0));
    assert_eq!(h(r#"bucket{project="web",le="1800"}"#), Some(3.0));
    assert_eq!(h(r#"count{project="data"}"#), Some(0.0));
    assert_eq!(
        expiring(&m, "web"),
        Some(1.0),
        "released leases are not expiring"
    );
}

// ---- the dashboards' conventions --------------------------------------------------------------

fn dashboards_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards")
}

/// Every `dashboards/*.json`, by file name.
fn dashboards() -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dashboards_dir())
        .expect("dashboards/ exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|f| {
            let name = f
                .file_name()
                .expect("file name")
                .to_string_lossy()
                .into_owned();
            let text = std::fs::read_to_string(&f).expect("dashboard readable");
            let v: Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: not JSON: {e}"));
            (name, v)
        })
        .collect()
}

/// Every panel of a dashboard, rows' collapsed panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for p in list.as_array().into_iter().flatten() {
            if p["type"] != "row" {
                out.push(p);
            }
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// One query of one panel: where it is (for messages) and its expression.
#[derive(Debug, Clone)]
struct PanelQuery {
    at: String,
    expr: String,
}

fn panel_queries(file: &str, dashboard: &Value) -> Vec<PanelQuery> {
    let mut out = Vec::new();
    for p in panels(dashboard) {
        for t in p["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = t["expr"].as_str() {
                out.push(PanelQuery {
                    at: format!(
                        "{file}: panel {:?} ({})",
                        p["title"].as_str().unwrap_or_default(),
                        t["refId"].as_str().unwrap_or("?")
                    ),
                    expr: expr.to_owned(),
                });
            }
        }
    }
    out
}

/// A template variable's query, written as a string or as the newer `{query: …}` object.
fn variable_query(v: &Value) -> Option<&str> {
    v["query"].as_str().or_else(|| v["query"]["query"].as_str())
}

/// `label_values(metric, label)` (or `label_values(label)`) → (metric, label).
fn label_values(query: &str) -> Option<(Option<String>, String)> {
    let inner = query
        .trim()
        .strip_prefix("label_values(")?
        .strip_suffix(')')?;
    match inner.rsplit_once(',') {
        Some((metric, label)) => Some((Some(metric.trim().to_owned()), label.trim().to_owned())),
        None => Some((None, inner.trim().to_owned())),
    }
}

/// Grafana's conventions every dashboard keeps, checked without a Prometheus: importable (uid,
/// title, schema ≥ 36), a `datasource` variable every panel and query uses, units and
/// descriptions on every panel, and time windows only from Grafana's interval variables.
#[test]
fn dashboards_keep_the_conventions() {
    let all = dashboards();
    let names: BTreeSet<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
    for want in ["overview.json", "leases.json", "reaper.json", "health.json"] {
        assert!(names.contains(want), "dashboards/{want} missing: {names:?}");
    }
    let mut uids = BTreeSet::new();
    let mut problems = Vec::new();
    for (file, d) in &all {
        let mut bad = |what: String| problems.push(format!("{file}: {what}"));
        if d["schemaVersion"].as_u64().unwrap_or(0) < 36 {
            bad("schemaVersion below 36".into());
        }
        match d["uid"].as_str() {
            Some(u) if !u.is_empty() && u.len() <= 40 => {
                if !uids.insert(u.to_owned()) {
                    bad(format!("uid {u} used twice"));
                }
            }
            _ => bad("no uid (at most 40 characters)".into()),
        }
        if d["title"].as_str().unwrap_or_default().is_empty() {
            bad("no title".into());
        }
        if !d["id"].is_null() {
            bad("`id` must be null in a dashboard meant for import".into());
        }
        let vars = d["templating"]["list"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if !vars.iter().any(|v| {
            v["name"] == "datasource" && v["type"] == "datasource" && v["query"] == "prometheus"
        }) {
            bad("no `datasource` variable of type datasource, query prometheus".into());
        }
        for v in vars.iter().filter(|v| v["type"] == "query") {
            let name = v["name"].as_str().unwrap_or("?");
            if v["datasource"]["uid"] != "${datasource}" {
                bad(format!(
                    "variable {name}: datasource is not ${{datasource}}"
                ));
            }
            if variable_query(v).and_then(label_values).is_none() {
                bad(format!(
                    "variable {name}: not a label_values(metric, label) query"
                ));
            }
            if v["includeAll"] == true && v["allValue"] != ".*" {
                bad(format!("variable {name}: All should be `.*`"));
            }
        }
        let mut ids = BTreeSet::new();
        for p in panels(d) {
            let title = p["title"].as_str().unwrap_or("?");
            let mut bad = |what: &str| problems.push(format!("{file}: panel {title:?}: {what}"));
            if !ids.insert(p["id"].as_u64().unwrap_or(0)) {
                bad("duplicate or missing id");
            }
            if p["datasource"]["uid"] != "${datasource}" {
                bad("datasource is not ${datasource}");
            }
            if p["description"].as_str().unwrap_or_default().len() < 20 {
                bad("no description");
            }
            if p["fieldConfig"]["defaults"]["unit"]
                .as_str()
                .unwrap_or_default()
                .is_empty()
            {
                bad("no unit");
            }
            let targets = p["targets"].as_array().cloned().unwrap_or_default();
            if targets.is_empty() {
                bad("no query");
            }
            for t in &targets {
                let expr = t["expr"].as_str().unwrap_or_default();
                if expr.is_empty() {
                    bad("a target without expr");
                }
                if t["datasource"]["uid"] != "${datasource}" {
                    bad("a target whose datasource is not ${datasource}");
                }
                // Range selectors come from Grafana's variables, never a fixed `[5m]`.
                for (i, _) in expr.match_indices('[') {
                    let rest = &expr[i + 1..];
                    if !(rest.starts_with("$__rate_interval]") || rest.starts_with("$__range]")) {
                        bad(&format!(
                            "range selector other than [$__rate_interval] or [$__range] in {expr}"
                        ));
                    }
                }
                if expr.contains("rate(") && !expr.contains("$__rate_interval") {
                    bad(&format!("rate() without $__rate_interval in {expr}"));
                }
                if expr.contains("vector(") {
                    bad(&format!(
                        "a `vector()` fallback hides missing data in {expr}"
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ---- a real Prometheus ------------------------------------------------------------------------

/// A Prometheus server on a loopback port with a temporary TSDB, scraping the daemons every
/// second and evaluating the given rules files every second; killed on drop.
#[derive(Debug)]
struct Prometheus {
    child: Child,
    port: u16,
    http: reqwest::Client,
    dir: TempDir,
}

impl Prometheus {
    /// Starts Prometheus on a free loopback port and waits until it is ready.
    async fn start(targets: &[SocketAddr], rules: &[RulesFile]) -> Prometheus {
        let binary = std::env::var_os("EPHEMERA_PROMETHEUS")
            .map_or_else(|| PathBuf::from("/usr/bin/prometheus"), PathBuf::from);
        assert!(
            binary.is_file(),
            "prometheus not found at {}: run `make test` (its setup installs Debian's \
             prometheus package) or point EPHEMERA_PROMETHEUS at a prometheus binary",
            binary.display()
        );
        let mut failures = Vec::new();
        // Another process may take the port between our probe and Prometheus' bind: retry.
        for _ in 0..3 {
            match Prometheus::try_start(&binary, targets, rules).await {
                Ok(p) => return p,
                Err(e) => failures.push(e),
            }
        }
        panic!("prometheus did not start:\n{}", failures.join("\n"));
    }

    async fn try_start(
        binary: &Path,
        targets: &[SocketAddr],
        rules: &[RulesFile],
    ) -> Result<Prometheus, String> {
        let dir = tempfile::tempdir().expect("temp dir for prometheus");
        // JSON is YAML: the paths need no quoting of our own.
        let rule_files = Value::from(
            rules
                .iter()
                .map(|r| r.path.display().to_string())
                .collect::<Vec<_>>(),
        );
        let targets = Value::from(targets.iter().map(|t| t.to_string()).collect::<Vec<_>>());
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files: {rule_files}\n\
             scrape_configs:\n  - job_name: ephemera\n    metrics_path: /metrics\n    \
             static_configs:\n      - targets: {targets}\n"
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("prometheus config");
        let log = File::create(dir.path().join("prometheus.log")).expect("log file");
        let port = free_port();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", binary.display()));
        // From here on `Drop` kills the child, whichever way this ends.
        let mut p = Prometheus {
            child,
            port,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("http client"),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = p.child.try_wait().expect("child status") {
                return Err(format!("exited ({status}); log:\n{}", p.log()));
            }
            if let Ok(r) = p.http.get(p.url("/-/ready")).send().await
                && r.status().is_success()
            {
                return Ok(p);
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready after 30s; log:\n{}",
                p.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// A GET of the HTTP API; `data` of a `success` answer, else the error.
    async fn api(&self, path: &str, query: &[(&str, String)]) -> Result<Value, String> {
        let r = self
            .http
            .get(self.url(path))
            .query(query)
            .send()
            .await
            .map_err(|e| format!("{path}: {e}"))?;
        let body: Value = r.json().await.map_err(|e| format!("{path}: {e}"))?;
        if body["status"] == "success" {
            Ok(body["data"].clone())
        } else {
            Err(format!(
                "{}: {}",
                body["errorType"].as_str().unwrap_or("error"),
                body["error"].as_str().unwrap_or_default()
            ))
        }
    }

    /// How a range query over `[start, end]` at a 1 s step came out: `None` when at least one
    /// series has at least one finite value, else why not.
    async fn lacks_data(&self, expr: &str, start: f64, end: f64) -> Option<String> {
        let q = [
            ("query", expr.to_owned()),
            ("start", format!("{start:.3}")),
            ("end", format!("{end:.3}")),
            ("step", "1".to_owned()),
        ];
        match self.api("/api/v1/query_range", &q).await {
            Err(e) => Some(e),
            Ok(data) => {
                let series = data["result"].as_array().cloned().unwrap_or_default();
                let finite = series.iter().any(|s| {
                    s["values"].as_array().into_iter().flatten().any(|v| {
                        v[1].as_str()
                            .and_then(|x| x.parse::<f64>().ok())
                            .is_some_and(f64::is_finite)
                    })
                });
                (!finite).then(|| {
                    if series.is_empty() {
                        "no series".to_owned()
                    } else {
                        format!("{} series, none with a finite value", series.len())
                    }
                })
            }
        }
    }
}

impl Prometheus {
    /// Waits until Prometheus has scraped the daemon after this moment, so that what happened
    /// before is one sample and what happens next another (as passes minutes apart would be).
    async fn scraped(&self) {
        let since = unix_now();
        crate::support::eventually_ok(
            "prometheus scrapes the daemon",
            Duration::from_secs(30),
            || async {
                // `timestamp()` straight on the selector: the sample's own time (the scrape's).
                let last = self
                    .api(
                        "/api/v1/query",
                        &[(
                            "query",
                            "timestamp(up{job=\"ephemera\"}) and up{job=\"ephemera\"} == 1"
                                .to_owned(),
                        )],
                    )
                    .await;
                let at = last.as_ref().ok().and_then(|d| {
                    d["result"][0]["value"][1]
                        .as_str()
                        .and_then(|v| v.parse::<f64>().ok())
                });
                if at.is_some_and(|t| t > since) {
                    return Ok(());
                }
                Err(format!("last answer: {last:?}; log:\n{}", self.log()))
            },
        )
        .await
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
}

/// A rules file of `rules/prometheus/`, parsed.
#[derive(Debug)]
struct RulesFile {
    path: PathBuf,
    doc: Value,
}

/// The rules files of `rules/prometheus/*.yml`, parsed as YAML (PyYAML of the test
/// virtualenv); none when there is none. Files without `groups` (promtool's unit tests, which
/// may sit beside the rules) are not rules files and are left out.
fn rules_files() -> Vec<RulesFile> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/prometheus");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .collect();
    files.sort();
    // The checks below loop over what is parsed here: nothing parsed would pass them all.
    assert!(!files.is_empty(), "no rules files in {}", dir.display());
    let python = crate::support::seed::python();
    let out = Command::new(&python)
        .args([
            "-c",
            "import json, sys, yaml\n\
             json.dump([yaml.safe_load(open(f)) for f in sys.argv[1:]], sys.stdout)",
        ])
        .args(&files)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{} (make test creates the virtualenv): {e}",
                python.display()
            )
        });
    assert!(
        out.status.success(),
        "cannot parse the rules files: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs: Vec<Value> = serde_json::from_slice(&out.stdout).expect("json");
    files
        .into_iter()
        .zip(docs)
        .filter(|(_, doc)| doc.get("groups").is_some())
        .map(|(path, doc)| RulesFile { path, doc })
        .collect()
}

/// The `record:` names of the rules files, each with its file's name.
fn recording_rules(files: &[RulesFile]) -> Vec<(String, String)> {
    let mut records = Vec::new();
    for f in files {
        let file = f
            .path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        for g in f.doc["groups"].as_array().into_iter().flatten() {
            for r in g["rules"].as_array().into_iter().flatten() {
                if let Some(name) = r["record"].as_str() {
                    records.push((file.clone(), name.to_owned()));
                }
            }
        }
    }
    records
}

/// Replaces Grafana's variables in `expr`: the built-in intervals fitting a 1 s scrape (the
/// `$__rate_interval` Grafana computes for it is 4 × the scrape interval), the range of the
/// query, and the template variables' values. Longer names first, so `$__range_ms` is not read
/// as `$__range`.
fn substitute(expr: &str, vars: &BTreeMap<String, String>) -> String {
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    let mut out = expr.to_owned();
    for n in names {
        out = out
            .replace(&format!("${{{n}}}"), &vars[n])
            .replace(&format!("${n}"), &vars[n]);
    }
    out
}

/// Polls the daemon's own exposition until `ok` holds for it.
async fn until_metrics(d: &TestDaemon, what: &str, ok: impl Fn(&str) -> bool) {
    crate::support::eventually_ok(what, Duration::from_secs(30), || async {
        let m = d.metrics().await;
        if ok(&m) { Ok(()) } else { Err(m) }
    })
    .await
}

/// A daemon with something in every metric — leases in every state, a refused acquire, two
/// passes with findings, marks, deletions, a capped project, an incomplete (throttled) walk,
/// mail sent and then failing with mail pending, a Cost Explorer refresh with spend, waste and
/// top tasks — scraped by a real Prometheus: every dashboard panel's query, every template
/// variable and every recording rule returns data, and every rule group is healthy.
#[tokio::test(flavor = "multi_thread")]
async fn every_dashboard_panel_and_recording_rule_has_data_in_prometheus() {
    let moto = Moto::start().await;
    let proxy = FaultProxy::start(&moto.endpoint()).await;
    let mut smtp = Smtp::plain();
    let text = format!(
        "{}{}",
        config_text_with_aws(&format!(
            r#"regions = ["us-east-1", "eu-west-1"]
endpoint_url = "{}"
emulator = true
max_attempts = 1

[[aws.accounts]]
id = "123456789012"
armed = true

[enforcement]
armed = true
deletable_types = ["ec2:volume", "sqs:queue"]
max_deletions_per_pass = 20
max_project_share_percent = 80

[cost]
rolling_window = "7d"
recent_days = 3
top_tasks = 2
"#,
            proxy.endpoint()
        )),
        smtp.section("oncall = [\"oncall@example.com\"]\nretry_backoff = \"1s\"")
    );
    let work = Workdir::with_config(&text);
    std::fs::write(
        work.path().join("rules/policy/projects.toml"),
        crate::reap::POLICY,
    )
    .expect("policy");
    // A catalog that approves none of the images seeded: the unapproved-image panel's series.
    std::fs::write(
        work.path().join("rules/policy/images.toml"),
        "[[images]]\nids = [\"ami-0000000000000aaaa\"]\nreason = \"the golden image\"\n",
    )
    .expect("catalog");
    let clock = manual_clock();
    let d = TestDaemon::start_with_clock(&work, clock.clone()).await;

    let rules = rules_files();
    let prom = Prometheus::start(&[d.addr], &rules).await;
    let start = unix_now();
    // Everything below happens after the first scrape, so counters and histograms that rise
    // show as an increase (rate() needs an earlier sample).
    prom.scraped().await;

    // ---- leases in every state, at 09:00 + … (default ttl: web 2h) ----------------------------
    let expired = d.acquire(WEB, "web", "build 1").await;
    let released = d.acquire(WEB, "web", "build 2").await;
    let active = d.acquire(WEB, "web", "deploy 3").await;
    d.renew(WEB, &active, "10h").await;
    let etl = d
        .acquire_with(
            DATA,
            json!({"project": "data", "task": "etl", "owner": "bob@example.com", "ttl": "1h"}),
        )
        .await;
    let (s, refused) = d
        .post(
            "/api/v1/leases",
            WEB,
            json!({"project": "web", "task": "t", "owner": "alice@example.com", "ttl": "48h"}),
        )
        .await;
    assert_eq!(refused["code"], "ttl-above-max", "{s}: {refused}");
    clock.advance(TimeDelta::hours(1));
    d.release(WEB, &released).await;
    // 11:10: build 1 and etl have expired; two short leases are expiring (window 1h).
    clock.advance(TimeDelta::minutes(70));
    let expiring = d
        .acquire_with(
            WEB,
            json!({"project": "web", "task": "preview 4", "owner": "alice@example.com", "ttl": "50m"}),
        )
        .await;
    d.acquire_with(
        DATA,
        json!({"project": "data", "task": "load", "owner": "bob@example.com", "ttl": "40m"}),
    )
    .await;

    prom.scraped().await;

    // ---- resources: one of each verdict; eu-west-1 will be throttled in pass 2 ------------------
    seed(
        &moto.endpoint(),
        json!({"resources": [
            {"key": "doomed-vol", "type": "ec2:volume", "tags": lease_tags(&expired, "web", "build 1")},
            {"key": "doomed-queue", "type": "sqs:queue", "tags": lease_tags(&expired, "web", "build 1")},
            {"key": "released", "type": "ec2:volume", "tags": lease_tags(&released, "web", "build 2")},
            {"key": "leased", "type": "ec2:volume", "tags": lease_tags(&active, "web", "deploy 3")},
            {"key": "unapproved", "type": "ec2:instance", "tags": lease_tags(&active, "web", "deploy 3")},
            {"key": "expiring", "type": "ec2:volume", "tags": lease_tags(&expiring, "web", "preview 4")},
            {"key": "unknown", "type": "ec2:volume",
             "tags": lease_tags("0194e0a1-0000-7000-8000-00000000dead", "web", "gone 5")},
            {"key": "untagged", "type": "ec2:volume", "tags": {"team": "platform"}},
            {"key": "eu", "region": "eu-west-1", "type": "ec2:volume", "tags": lease_tags(&expired, "web", "build 1")},
            {"key": "capped", "type": "ec2:volume", "tags": lease_tags(&etl, "data", "etl"), "count": 5}
        ]}),
    )
    .await;

    // ---- pass 1 (11:10): findings, marks; mail goes out ----------------------------------------
    let run = d.pass().await;
    assert_eq!(run["run"]["outcome"], "success", "{run}");
    assert!(
        run["run"]["summary"]["reap"]["marked"].as_u64() >= Some(9),
        "{run}"
    );
    until_metrics(&d, "mail of pass 1 delivered", |m| {
        sample(m, "ephemera_outbox_pending") == Some(0.0)
            && m.contains("ephemera_emails_sent_total{")
    })
    .await;
    prom.scraped().await;

    // ---- pass 2 (12:15, past the deadlines): deletes, caps data, one walk throttled; the relay
    // is down, so its mail fails and waits in the outbox --------------------------------------
    smtp.stop();
    clock.advance(TimeDelta::minutes(65));
    proxy.set_fault_in("GetResources", "eu-west-1", Fault::Throttle, None);
    let run = d.pass().await;
    assert_eq!(run["run"]["outcome"], "partial", "{run}");
    assert!(
        run["run"]["summary"]["reap"]["deleted"].as_u64() >= Some(3),
        "{run}"
    );
    until_metrics(&d, "mail of pass 2 pending after a failure", |m| {
        sample(m, "ephemera_email_failures_total") >= Some(1.0)
            && sample(m, "ephemera_outbox_pending") > Some(0.0)
    })
    .await;
    prom.scraped().await;

    // ---- spend: one refresh against canned Cost Explorer results --------------------------------
    let p = "ephemera:project$";
    let t = "ephemera:task$";
    queue(
        &moto,
        vec![
            json!({"ResultsByTime": [
                day("2026-02-27", "2026-02-28", false, &[(&format!("{p}web"), "us-east-1", "12.5"), (p, "eu-west-1", "2")]),
                day("2026-03-01", "2026-03-02", true, &[(&format!("{p}web"), "us-east-1", "4"), (&format!("{p}data"), "eu-west-1", "3")]),
            ], "DimensionValueAttributes": []}),
            json!({"ResultsByTime": [
                day("2026-02-27", "2026-02-28", false, &[(&format!("{t}deploy 3"), "us-east-1", "12.5"), (t, "eu-west-1", "2")]),
                day("2026-03-01", "2026-03-02", true, &[
                    (&format!("{t}build 1"), "us-east-1", "2.4"),
                    (&format!("{t}build 2"), "us-east-1", "1.6"),
                    (&format!("{t}etl"), "eu-west-1", "3"),
                ]),
            ], "DimensionValueAttributes": []}),
        ],
    )
    .await;
    let (s, body) = d.post("/api/v1/cost/refresh", OPERATOR, json!({})).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let m = d.metrics().await;
    assert!(
        sample(&m, r#"ephemera_waste_usd{project="web"}"#) > Some(0.0),
        "waste: {m}"
    );
    assert_eq!(sample(&m, "ephemera_reap_capped_total"), Some(1.0), "{m}");

    // ---- a day later, the ended leases have had time to be torn down: the teardown ratio ----
    proxy.clear_faults();
    clock.advance(TimeDelta::hours(27));
    d.pass().await;
    until_metrics(&d, "the teardown ratio", |m| {
        sample(m, r#"ephemera_teardown_settled_leases{project="web"}"#) > Some(0.0)
    })
    .await;
    prom.scraped().await;

    // ---- what Prometheus has: polled until everything has data (or 30 s have passed) -------
    let dashboards: Vec<DashboardQueries> = dashboards()
        .iter()
        .map(|(file, d)| DashboardQueries::of(file, d))
        .collect();
    let queries: usize = dashboards.iter().map(|d| d.queries.len()).sum();
    let variables: usize = dashboards.iter().map(|d| d.variables.len()).sum();
    assert!(
        queries >= 40,
        "the four dashboards hold more than {queries} queries"
    );
    let records = recording_rules(&rules);
    assert!(!records.is_empty(), "no recording rules parsed");
    // Polled to a deadline, then the failures (if any) are reported with their context.
    let deadline = Instant::now() + Duration::from_secs(30);
    let failures = loop {
        let failures = check(&prom, start, &dashboards, &records).await;
        if failures.is_empty() || Instant::now() > deadline {
            break failures;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(
        failures.is_empty(),
        "of {queries} panel queries, {variables} variables and {} recording rules, these lack \
         data:\n{}\n\nprometheus log:\n{}",
        records.len(),
        failures.join("\n"),
        prom.log()
    );
}

/// A template variable: `label_values(metric, label)`, and the value for All (if it has one).
#[derive(Debug)]
struct Variable {
    name: String,
    all: Option<String>,
    metric: Option<String>,
    label: String,
}

/// What one dashboard asks of Prometheus.
#[derive(Debug)]
struct DashboardQueries {
    file: String,
    variables: Vec<Variable>,
    queries: Vec<PanelQuery>,
}

impl DashboardQueries {
    fn of(file: &str, d: &Value) -> DashboardQueries {
        let variables = d["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|v| v["type"] != "datasource")
            .map(|v| {
                let name = v["name"].as_str().unwrap_or("?").to_owned();
                assert_eq!(
                    v["type"], "query",
                    "{file}: variable {name}: only query variables are supported"
                );
                let (metric, label) = variable_query(v)
                    .and_then(label_values)
                    .unwrap_or_else(|| panic!("{file}: variable {name}: not label_values(…)"));
                let all = (v["includeAll"] == true)
                    .then(|| v["allValue"].as_str().unwrap_or(".*").to_owned());
                Variable {
                    name,
                    all,
                    metric,
                    label,
                }
            })
            .collect();
        DashboardQueries {
            file: file.to_owned(),
            variables,
            queries: panel_queries(file, d),
        }
    }
}

/// Everything that lacks data in Prometheus now, over the time since `start`: template
/// variables, panel queries (with Grafana's variables filled in as Grafana would for a 1 s
/// scrape: `$__rate_interval` is 4 × the scrape interval), recording rules, and the health of
/// every rule group.
async fn check(
    prom: &Prometheus,
    start: f64,
    dashboards: &[DashboardQueries],
    records: &[(String, String)],
) -> Vec<String> {
    let end = unix_now();
    let mut failures = Vec::new();
    let range = format!("{}s", (end - start).ceil() + 1.0);
    for d in dashboards {
        let mut env = BTreeMap::from([
            ("__rate_interval".to_owned(), "4s".to_owned()),
            ("__interval".to_owned(), "1s".to_owned()),
            ("__interval_ms".to_owned(), "1000".to_owned()),
            ("__range".to_owned(), range.clone()),
        ]);
        for v in &d.variables {
            let mut q = vec![
                ("start", format!("{start:.3}")),
                ("end", format!("{end:.3}")),
            ];
            if let Some(m) = &v.metric {
                q.push(("match[]", m.clone()));
            }
            let first = match prom
                .api(&format!("/api/v1/label/{}/values", v.label), &q)
                .await
            {
                Ok(values) if values.as_array().is_some_and(|a| !a.is_empty()) => {
                    values[0].as_str().unwrap_or_default().to_owned()
                }
                other => {
                    failures.push(format!(
                        "{}: variable {}: label_values gives nothing: {other:?}",
                        d.file, v.name
                    ));
                    String::new()
                }
            };
            env.insert(v.name.clone(), v.all.clone().unwrap_or(first));
        }
        for q in &d.queries {
            let expr = substitute(&q.expr, &env);
            if expr.contains('$') {
                failures.push(format!("{}: unknown variable left in {expr}", q.at));
            } else if let Some(why) = prom.lacks_data(&expr, start, end).await {
                failures.push(format!("{}: {why}: {expr}", q.at));
            }
        }
    }
    for (file, name) in records {
        if let Some(why) = prom.lacks_data(name, start, end).await {
            failures.push(format!("{file}: recording rule {name}: {why}"));
        }
    }
    match prom.api("/api/v1/rules", &[]).await {
        Err(e) => failures.push(format!("/api/v1/rules: {e}")),
        Ok(data) => {
            let mut loaded = BTreeSet::new();
            for g in data["groups"].as_array().into_iter().flatten() {
                for r in g["rules"].as_array().into_iter().flatten() {
                    let name = r["name"].as_str().unwrap_or("?");
                    if r["type"] == "recording" {
                        loaded.insert(name.to_owned());
                    }
                    let err = r["lastError"].as_str().unwrap_or_default();
                    if r["health"] != "ok" || !err.is_empty() {
                        failures.push(format!(
                            "rule group {}: rule {name}: health {} {err}",
                            g["name"], r["health"]
                        ));
                    }
                }
            }
            let parsed: BTreeSet<String> = records.iter().map(|(_, n)| n.clone()).collect();
            if loaded != parsed {
                failures.push(format!(
                    "prometheus loaded the recording rules {loaded:?}, the files hold {parsed:?}"
                ));
            }
        }
    }
    failures
}

/// Two replicas on one PostgreSQL store, both scraped by a real Prometheus: the estate-wide
/// series come from the leader alone, so a `sum` counts each lease once; every replica's own
/// series are there with its `instance`; and when the leader stops, the other takes over and
/// the sum neither doubles nor goes blank.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_count_the_estate_once_across_a_failover() {
    let url = crate::support::postgres::fresh_database().await;
    let work = crate::ha::replica_workdir(&url);
    let a = TestDaemon::start(&work).await;
    let b = TestDaemon::start(&work).await;
    lease(&a, WEB, "web", json!({})).await;
    lease(&b, WEB, "web", json!({})).await;
    let prom = Prometheus::start(&[a.addr, b.addr], &[]).await;
    let query = |expr: &'static str| {
        let prom = &prom;
        async move {
            prom.api("/api/v1/query", &[("query", expr.to_owned())])
                .await
                .ok()
                .and_then(|d| {
                    let r = d["result"].as_array().cloned().unwrap_or_default();
                    (r.len() == 1)
                        .then(|| {
                            r[0]["value"][1]
                                .as_str()
                                .and_then(|v| v.parse::<f64>().ok())
                        })
                        .flatten()
                })
        }
    };
    let active = "sum(ephemera_leases{project=\"web\",state=\"active\"})";
    crate::support::eventually_ok(
        "Prometheus sees one leader and each lease once",
        Duration::from_secs(40),
        || async {
            let got = (
                query("sum(ephemera_leader)").await,
                query("count(up{job=\"ephemera\"} == 1)").await,
                query(active).await,
                query("count(count by (instance) (ephemera_lease_operations_total))").await,
            );
            if got == (Some(1.0), Some(2.0), Some(2.0), Some(2.0)) {
                Ok(())
            } else {
                Err(format!(
                    "(leaders, targets up, active leases, instances with operations): {got:?}"
                ))
            }
        },
    )
    .await;
    // The leader goes (a deploy: it hands over); the other leads and exports the estate.
    let leading_a = sample(&a.metrics().await, "ephemera_leader") == Some(1.0);
    let (gone, stays) = if leading_a { (a, b) } else { (b, a) };
    gone.stop().await;
    crate::support::eventually_ok(
        "the other replica leads and the estate is counted once",
        Duration::from_secs(40),
        || async {
            let m = stays.metrics().await;
            let got = (
                sample(&m, "ephemera_leader"),
                query("sum(ephemera_leader)").await,
                query(active).await,
            );
            if got == (Some(1.0), Some(1.0), Some(2.0)) {
                Ok(())
            } else {
                Err(format!("(leads, leaders, active leases): {got:?}"))
            }
        },
    )
    .await;
}
