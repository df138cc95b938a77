//! Several replicas of the real binary on one PostgreSQL store: every replica serves the lease
//! API with the quota and the release decided once, exactly one leads (and exports the
//! estate-wide series), a killed or stopped leader is replaced, and a database restart is a
//! 503 `store-unavailable` that heals by itself, losing no acknowledged lease.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::cli::{DaemonProcess, spawn_daemon};
use crate::support::postgres::{PrivateServer, fresh_database, store_sections};
use crate::support::{DATA, WEB, Workdir, config_text, eventually, eventually_some, sample};

/// A workdir whose config points at the PostgreSQL database `url`.
pub(crate) fn replica_workdir(url: &str) -> Workdir {
    let work = Workdir::new();
    let key = work.path().join("audit.key");
    let text = config_text().replacen(
        "[store]\npath = \"state/ephemera.db\"\n",
        &store_sections(url, &key),
        1,
    );
    assert!(
        text.contains("[store]\nurl"),
        "the test config has the store"
    );
    std::fs::write(work.config_path(), text).expect("write config");
    work
}

struct Replica {
    process: DaemonProcess,
    base: String,
}

fn start_replicas(work: &Workdir, n: usize) -> Vec<Replica> {
    (0..n)
        .map(|_| {
            let (process, base) = spawn_daemon(&work.config_path());
            Replica { process, base }
        })
        .collect()
}

async fn metrics_of(http: &reqwest::Client, base: &str) -> Option<String> {
    let r = http.get(format!("{base}/metrics")).send().await.ok()?;
    r.text().await.ok()
}

/// The index of the one replica among `replicas` that says it leads (`skip` are not asked:
/// killed or stopped), once exactly one does.
async fn the_leader(http: &reqwest::Client, replicas: &[Replica], skip: &[usize]) -> usize {
    let bases: Vec<Option<&str>> = replicas
        .iter()
        .enumerate()
        .map(|(i, r)| (!skip.contains(&i)).then_some(r.base.as_str()))
        .collect();
    leader_among(http, &bases).await
}

/// The index of the one daemon of `bases` (`None`: not asked) whose `/metrics` says it leads,
/// once exactly one does.
pub(crate) async fn leader_among(http: &reqwest::Client, bases: &[Option<&str>]) -> usize {
    eventually_some(
        "exactly one replica leads",
        Duration::from_secs(40),
        || async {
            let mut leading = Vec::new();
            for (i, base) in bases.iter().enumerate() {
                let Some(base) = base else { continue };
                let m = metrics_of(http, base).await.unwrap_or_default();
                if sample(&m, "ephemera_leader") == Some(1.0) {
                    leading.push(i);
                }
            }
            (leading.len() == 1).then(|| leading[0])
        },
    )
    .await
}

/// Sends `sig` (`-STOP`, `-CONT`) to the process `pid` this test started.
fn send_signal(pid: u32, sig: &str) {
    let s = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(s.success(), "kill {sig}");
}

async fn call(http: &reqwest::Client, base: &str, path: &str, body: Value) -> (StatusCode, Value) {
    call_as(http, WEB, base, path, body).await
}

async fn call_as(
    http: &reqwest::Client,
    token: &str,
    base: &str,
    path: &str,
    body: Value,
) -> (StatusCode, Value) {
    let r = http
        .post(format!("{base}{path}"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("answered");
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// 64 clients spread over three replicas race for a quota of 10: exactly 10 leases are
/// granted; 32 racing releases of one lease: exactly one wins. One replica leads and alone
/// exports the lease gauges, which count each lease once.
///
/// Racing beside them, 32 acquires of another project (no quota) with 16 idempotency keys
/// each sent twice, the same keys as 16 of the quota's racers: a replica decides acquires of
/// both projects in one batch, and each project's quota and keys stay its own (16 leases, each
/// key's twin answered with its lease, none taken for the other project's).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_grant_a_quota_once_and_one_leads() {
    let url = fresh_database().await;
    let work = replica_workdir(&url);
    let replicas = start_replicas(&work, 3);
    let http = reqwest::Client::new();
    let leader = the_leader(&http, &replicas, &[]).await;

    let start = std::sync::Arc::new(tokio::sync::Barrier::new(96));
    let mut racers = tokio::task::JoinSet::new();
    for i in 0..96 {
        let (http, base, start) = (http.clone(), replicas[i % 3].base.clone(), start.clone());
        racers.spawn(async move {
            start.wait().await;
            let (token, body) = if i < 64 {
                let key = format!("k{i}");
                (
                    WEB,
                    json!({"project": "web", "task": format!("t{i}"),
                             "owner": "alice@example.com", "key": key}),
                )
            } else {
                let key = format!("k{}", i % 16);
                (
                    DATA,
                    json!({"project": "data", "task": key, "owner": "bob@example.com",
                              "key": key}),
                )
            };
            (
                i,
                call_as(&http, token, &base, "/api/v1/leases", body).await,
            )
        });
    }
    let mut granted = Vec::new();
    let mut refused = 0;
    let mut data: std::collections::HashMap<String, Vec<(StatusCode, String)>> =
        std::collections::HashMap::new();
    while let Some(r) = racers.join_next().await {
        let (i, (status, body)) = r.expect("racer");
        if i >= 64 {
            assert_eq!(body["project"], "data", "{body}");
            data.entry(body["task"].as_str().expect("task").to_owned())
                .or_default()
                .push((status, body["id"].as_str().expect("id").to_owned()));
            continue;
        }
        match status {
            StatusCode::CREATED => granted.push(body["id"].as_str().expect("id").to_owned()),
            StatusCode::CONFLICT => {
                assert_eq!(body["code"], "quota-exceeded", "{body}");
                refused += 1;
            }
            other => panic!("acquire: {other} {body}"),
        }
    }
    assert_eq!((granted.len(), refused), (10, 54));
    assert_eq!(data.len(), 16, "one lease per key of the other project");
    for (key, mut answers) in data {
        answers.sort();
        assert_eq!(
            answers.iter().map(|a| a.0).collect::<Vec<_>>(),
            [StatusCode::OK, StatusCode::CREATED],
            "{key}: one acquire takes the lease, its twin is answered with it"
        );
        assert_eq!(answers[0].1, answers[1].1, "{key}: the same lease");
        assert!(!granted.contains(&answers[0].1), "{key}: not web's lease");
    }

    let one = granted[0].clone();
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(32));
    let mut releases = tokio::task::JoinSet::new();
    for i in 0..32 {
        let (http, base, start, id) = (
            http.clone(),
            replicas[i % 3].base.clone(),
            start.clone(),
            one.clone(),
        );
        releases.spawn(async move {
            start.wait().await;
            call(
                &http,
                &base,
                &format!("/api/v1/leases/{id}/release"),
                json!({}),
            )
            .await
        });
    }
    let (mut won, mut lost) = (0, 0);
    while let Some(r) = releases.join_next().await {
        let (status, body) = r.expect("releaser");
        match status {
            StatusCode::OK => won += 1,
            StatusCode::CONFLICT => {
                assert_eq!(body["code"], "lease-released", "{body}");
                lost += 1;
            }
            other => panic!("release: {other} {body}"),
        }
    }
    assert_eq!((won, lost), (1, 31));

    // The estate-wide series come from the leader alone, counted once.
    for (i, r) in replicas.iter().enumerate() {
        let m = metrics_of(&http, &r.base).await.expect("metrics");
        let active = sample(&m, "ephemera_leases{project=\"web\",state=\"active\"}");
        if i == leader {
            assert_eq!(active, Some(9.0), "{m}");
            assert_eq!(sample(&m, "ephemera_leader"), Some(1.0));
        } else {
            assert_eq!(active, None, "a follower exports no lease gauges");
            assert!(!m.contains("\nephemera_leases{"), "{m}");
            assert_eq!(sample(&m, "ephemera_leader"), Some(0.0));
            assert!(
                m.contains("ephemera_lease_operations_total{"),
                "its own operations it does export"
            );
        }
    }
}

/// The leader killed (SIGKILL): another replica leads within twice the leadership's lifetime
/// and exports the estate at once; the dead one's lock is not waited out on its own host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_is_replaced() {
    let url = fresh_database().await;
    let work = replica_workdir(&url);
    let mut replicas = start_replicas(&work, 2);
    let http = reqwest::Client::new();
    let (s, _) = call(
        &http,
        &replicas[0].base,
        "/api/v1/leases",
        json!({"project": "web", "task": "t", "owner": "alice@example.com"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let leader = the_leader(&http, &replicas, &[]).await;
    replicas[leader].process.child.kill().expect("SIGKILL");
    let killed_at = std::time::Instant::now();
    let next = the_leader(&http, &replicas, &[leader]).await;
    assert_ne!(next, leader);
    assert!(
        killed_at.elapsed() < 2 * ephemera::leader::TTL.to_std().expect("ttl"),
        "took over in {:?}",
        killed_at.elapsed()
    );
    let m = metrics_of(&http, &replicas[next].base)
        .await
        .expect("metrics");
    assert_eq!(
        sample(&m, "ephemera_leases{project=\"web\",state=\"active\"}"),
        Some(1.0),
        "the new leader exports the estate from the store"
    );
}

/// The leader stopped (SIGSTOP) past its lifetime: the other replica takes over; continued
/// (SIGCONT), the old leader wakes up a follower and does not take leadership back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_leader_wakes_up_a_follower() {
    let url = fresh_database().await;
    let work = replica_workdir(&url);
    let replicas = start_replicas(&work, 2);
    let http = reqwest::Client::new();
    let leader = the_leader(&http, &replicas, &[]).await;
    let pid = replicas[leader].process.child.id();
    let signal = |sig: &str| send_signal(pid, sig);
    signal("-STOP");
    let next = the_leader(&http, &replicas, &[leader]).await;
    signal("-CONT");
    // Awake, the old leader says it follows (and its scrape leaves out the estate), and it
    // stays a follower through its next renewals.
    tokio::time::sleep(ephemera::leader::RENEW * 2).await;
    let old = metrics_of(&http, &replicas[leader].base)
        .await
        .expect("metrics");
    assert_eq!(sample(&old, "ephemera_leader"), Some(0.0), "{old}");
    assert_eq!(the_leader(&http, &replicas, &[]).await, next);
}

/// PostgreSQL stopped under traffic: the API answers 503 `store-unavailable` (never a 500),
/// `/readyz` follows the store, service comes back by itself once the database is back, and
/// every lease the API acknowledged is still there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_restart_is_unavailable_then_heals_losing_nothing() {
    let server = PrivateServer::start();
    let work = replica_workdir(&server.url());
    // Trust authentication: the private server takes no password.
    let text = std::fs::read_to_string(work.config_path()).expect("config");
    std::fs::write(
        work.config_path(),
        text.replacen(
            &format!(
                "password_env = \"{}\"\n",
                crate::support::postgres::PASSWORD_ENV
            ),
            "",
            1,
        ),
    )
    .expect("write config");
    let replicas = start_replicas(&work, 1);
    let base = replicas[0].base.clone();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = {
        let (http, base, stop) = (http.clone(), base.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut acked, mut unavailable, mut other) = (Vec::new(), 0, Vec::new());
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                let (s, body) = call_as(
                    &http,
                    DATA,
                    &base,
                    "/api/v1/leases",
                    json!({"project": "data", "task": format!("t{i}"), "owner": "alice@example.com"}),
                )
                .await;
                match s {
                    StatusCode::CREATED => {
                        acked.push(body["id"].as_str().expect("id").to_owned());
                        // Release the odd ones: both kinds of write must survive.
                        if i % 2 == 1 {
                            let id = acked.last().cloned().unwrap_or_default();
                            let (s, b) = call_as(
                                &http,
                                DATA,
                                &base,
                                &format!("/api/v1/leases/{id}/release"),
                                json!({}),
                            )
                            .await;
                            if s == StatusCode::SERVICE_UNAVAILABLE {
                                assert_eq!(b["code"], "store-unavailable", "{b}");
                                unavailable += 1;
                            } else if s != StatusCode::OK {
                                other.push(format!("release {s} {b}"));
                            }
                        }
                    }
                    StatusCode::SERVICE_UNAVAILABLE => {
                        assert_eq!(body["code"], "store-unavailable", "{body}");
                        unavailable += 1;
                    }
                    s => other.push(format!("acquire {s} {body}")),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (acked, unavailable, other)
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.stop();
    let readyz = || async {
        http.get(format!("{base}/readyz"))
            .send()
            .await
            .map(|r| r.status())
            .ok()
    };
    eventually(
        "/readyz says unavailable",
        Duration::from_secs(20),
        || async { readyz().await == Some(StatusCode::SERVICE_UNAVAILABLE) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    server.start_again();
    eventually(
        "/readyz says ready again",
        Duration::from_secs(30),
        || async { readyz().await == Some(StatusCode::OK) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (acked, unavailable, other) = traffic.await.expect("traffic");
    if !other.is_empty() {
        let mut replicas = replicas;
        let _ = replicas[0].process.child.kill();
        let (_, logs) = replicas[0].process.wait();
        let errors: Vec<&str> = logs.lines().filter(|l| l.contains("ERROR")).collect();
        panic!(
            "only 201, 200 and 503: {other:?}; the daemon's errors:\n{}",
            errors.join("\n")
        );
    }
    assert!(unavailable > 0, "some calls met the stopped database");
    assert!(
        acked.len() > 10,
        "traffic before and after: {}",
        acked.len()
    );
    for id in &acked {
        let r = http
            .get(format!("{base}/api/v1/leases/{id}"))
            .bearer_auth(DATA)
            .send()
            .await
            .expect("answered");
        assert_eq!(
            r.status(),
            StatusCode::OK,
            "acknowledged lease {id} is kept"
        );
    }
}

/// A SQLite store moves into PostgreSQL with `ephemera store copy`: leases in their states
/// and the audit chain verify there, a daemon on the copy serves them, and a second copy into
/// the now full database is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_copy_moves_a_sqlite_store_into_postgres() {
    let old = Workdir::new();
    let (mut daemon, base) = spawn_daemon(&old.config_path());
    let http = reqwest::Client::new();
    let mut ids = Vec::new();
    for i in 0..3 {
        let (s, body) = call(
            &http,
            &base,
            "/api/v1/leases",
            json!({"project": "web", "task": format!("t{i}"), "owner": "alice@example.com"}),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
        ids.push(body["id"].as_str().expect("id").to_owned());
    }
    let (s, _) = call(
        &http,
        &base,
        &format!("/api/v1/leases/{}/release", ids[0]),
        json!({}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    daemon.child.kill().expect("stop the SQLite daemon");
    daemon.wait();
    // `store copy` refuses a store a daemon was alive on in the last 5 s.
    tokio::time::sleep(Duration::from_millis(5500)).await;

    let url = fresh_database().await;
    let new = Workdir::new();
    let key = old.path().join("state/audit.key");
    assert!(key.exists(), "the SQLite daemon made its key");
    std::fs::write(
        new.config_path(),
        config_text().replacen(
            "[store]\npath = \"state/ephemera.db\"\n",
            &store_sections(&url, &key),
            1,
        ),
    )
    .expect("write config");
    let password = std::env::var(crate::support::postgres::PASSWORD_ENV).unwrap_or_default();
    let env = [(crate::support::postgres::PASSWORD_ENV, password.as_str())];
    let from = old.path().join("state/ephemera.db");
    let (cfg, from) = (
        new.config_path().display().to_string(),
        from.display().to_string(),
    );
    let copy = crate::cli::run(&["store", "copy", "--config", &cfg, "--from", &from], &env).await;
    let out = String::from_utf8_lossy(&copy.stdout).into_owned();
    assert_eq!(
        copy.status.code(),
        Some(0),
        "{out}{}",
        String::from_utf8_lossy(&copy.stderr)
    );
    assert!(out.contains("the audit chain verifies"), "{out}");
    assert!(out.contains("leases  3 rows"), "{out}");
    // Progress on stderr: not a terminal, a line as each table starts.
    let err = String::from_utf8_lossy(&copy.stderr);
    assert!(err.contains("copying leases: 3 rows"), "{err}");
    let verify = crate::cli::run(&["audit", "verify", "--config", &cfg], &env).await;
    assert_eq!(
        verify.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );

    let (_pg_daemon, pg_base) = spawn_daemon(&new.config_path());
    for (i, id) in ids.iter().enumerate() {
        let r = http
            .get(format!("{pg_base}/api/v1/leases/{id}"))
            .bearer_auth(WEB)
            .send()
            .await
            .expect("answered");
        assert_eq!(r.status(), StatusCode::OK);
        let lease: Value = r.json().await.expect("json");
        let want = if i == 0 { "released" } else { "active" };
        assert_eq!(lease["state"], want, "{lease}");
    }

    let again = crate::cli::run(&["store", "copy", "--config", &cfg, "--from", &from], &env).await;
    assert_eq!(again.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("copy into an empty database"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}

/// Mail across failovers, through a real SMTP server: warnings queued while the relay is down
/// are sent once by the replica that took over from a stopped (SIGSTOP) leader; woken
/// (SIGCONT), the old leader sends nothing, even what is queued after; once the new leader is
/// killed (SIGKILL) the old one delivers again. Each warning arrives exactly once, the outbox
/// holds one sent row for each, and the audit chain verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_is_sent_once_across_a_stopped_and_a_killed_leader() {
    use crate::support::smtp::{Smtp, Tls};

    let mut smtp = Smtp::stopped(Tls::None, None);
    let url = fresh_database().await;
    let work = replica_workdir(&url);
    let text = std::fs::read_to_string(work.config_path()).expect("config");
    std::fs::write(
        work.config_path(),
        format!(
            "{text}{}",
            smtp.section("warn_before = \"1h\"\nretry_backoff = \"1s\"")
        ),
    )
    .expect("write config");
    let mut replicas = start_replicas(&work, 2);
    let http = reqwest::Client::new();
    let acquire = |base: String, owner: &'static str| {
        let http = http.clone();
        async move {
            let (s, body) = call(
                &http,
                &base,
                "/api/v1/leases",
                // A lease shorter than the warning window is never warned: this one enters
                // the window 2 s after it is granted.
                json!({"project": "web", "task": owner, "owner": owner, "ttl": "3602s"}),
            )
            .await;
            assert_eq!(s, StatusCode::CREATED, "{body}");
        }
    };
    let first = the_leader(&http, &replicas, &[]).await;
    for owner in [
        "a@example.com",
        "b@example.com",
        "c@example.com",
        "d@example.com",
    ] {
        acquire(replicas[1 - first].base.clone(), owner).await;
    }
    // The leader queued the four warnings and failed at the relay.
    eventually(
        "the leader queued four warnings and failed to send",
        Duration::from_secs(30),
        || async {
            let m = metrics_of(&http, &replicas[first].base)
                .await
                .unwrap_or_default();
            sample(&m, "ephemera_outbox_pending") == Some(4.0)
                && sample(&m, "ephemera_email_failures_total").is_some_and(|n| n >= 1.0)
        },
    )
    .await;
    assert!(smtp.messages().is_empty());

    let pid = replicas[first].process.child.id();
    let signal = |sig: &str| send_signal(pid, sig);
    signal("-STOP");
    smtp.restart();
    let second = the_leader(&http, &replicas, &[first]).await;
    assert_eq!(second, 1 - first);
    let warnings = |smtp: &Smtp| {
        smtp.messages()
            .into_iter()
            .filter(|m| m.kind() == "expiry-warning")
            .collect::<Vec<_>>()
    };
    eventually(
        "the new leader sends the four warnings",
        Duration::from_secs(90),
        || async { warnings(&smtp).len() >= 4 },
    )
    .await;

    signal("-CONT");
    acquire(replicas[second].base.clone(), "e@example.com").await;
    eventually(
        "the fifth warning is sent",
        Duration::from_secs(30),
        || async { warnings(&smtp).len() >= 5 },
    )
    .await;
    // The woken replica follows through several of its rounds and renewals, sending nothing.
    tokio::time::sleep(ephemera::leader::RENEW * 2).await;
    let old = metrics_of(&http, &replicas[first].base)
        .await
        .expect("metrics");
    assert_eq!(sample(&old, "ephemera_leader"), Some(0.0), "{old}");
    assert!(
        !old.lines()
            .any(|l| l.starts_with("ephemera_emails_sent_total{") && !l.ends_with(" 0")),
        "the old leader sent nothing: {old}"
    );

    replicas[second].process.child.kill().expect("SIGKILL");
    let third = the_leader(&http, &replicas, &[second]).await;
    assert_eq!(third, first);
    acquire(replicas[first].base.clone(), "f@example.com").await;
    eventually(
        "the sixth warning is sent",
        Duration::from_secs(60),
        || async { warnings(&smtp).len() >= 6 },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    let all = smtp.messages();
    let mut ids: Vec<&str> = all.iter().map(|m| m.message_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), all.len(), "no message twice: {all:#?}");
    let mut to: Vec<String> = warnings(&smtp)
        .iter()
        .flat_map(|m| m.rcpt_tos.clone())
        .collect();
    to.sort();
    assert_eq!(
        to,
        ["a", "b", "c", "d", "e", "f"].map(|w| format!("{w}@example.com")),
        "each warning once"
    );
    let store = ephemera::store::Store::open_at(&work.config().store.location)
        .await
        .expect("store");
    let rows = store.outbox_rows().await.expect("rows");
    let sent: Vec<_> = rows
        .iter()
        .filter(|r| r.kind == ephemera::model::MailKind::ExpiryWarning)
        .collect();
    assert_eq!(sent.len(), 6, "{rows:#?}");
    assert!(sent.iter().all(|r| r.sent_at.is_some()), "{rows:#?}");

    let password = std::env::var(crate::support::postgres::PASSWORD_ENV).unwrap_or_default();
    let cfg = work.config_path().display().to_string();
    let verify = crate::cli::run(
        &["audit", "verify", "--config", &cfg],
        &[(crate::support::postgres::PASSWORD_ENV, password.as_str())],
    )
    .await;
    assert_eq!(
        verify.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
}
