//! Idempotent acquires: a key names one active lease per project, whatever the retries; the
//! CLI sends a lease call again when the answer does not come, and `scan --wait` fails with a
//! failed pass.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::cli::run;
use crate::support::{OPERATOR, TestDaemon, WEB, WEB2, Workdir};

fn acquire(key: &str, task: &str) -> Value {
    json!({"project": "web", "task": task, "owner": "alice@example.com", "key": key})
}

async fn active_with(d: &TestDaemon, task: &str) -> Vec<Value> {
    let (s, v) = d
        .get(
            "/api/v1/leases?project=web&state=active&limit=100",
            OPERATOR,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|l| l["task"] == task)
        .cloned()
        .collect()
}

/// One key, one active lease: a second acquire with it answers 200 with the same lease (and
/// tags); sixteen racing acquires make one; another task or owner with the key is a 409; a
/// released lease frees its key; the same key in another project is another lease; a key may
/// also come as an `Idempotency-Key` header; a bad key is refused.
#[tokio::test(flavor = "multi_thread")]
async fn a_key_names_one_active_lease() {
    let work = Workdir::new();
    let d = Arc::new(TestDaemon::start(&work).await);
    let (s, first) = d
        .post("/api/v1/leases", WEB, acquire("repo#pr-1", "preview 1"))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{first}");
    let (s, again) = d
        .post("/api/v1/leases", WEB2, acquire("repo#pr-1", "preview 1"))
        .await;
    assert_eq!(s, StatusCode::OK, "the same key: that lease: {again}");
    assert_eq!(
        (&again["id"], &again["tags"]),
        (&first["id"], &first["tags"])
    );

    let racers: Vec<_> = (0..16)
        .map(|_| {
            let d = d.clone();
            tokio::spawn(async move {
                d.post("/api/v1/leases", WEB, acquire("repo#pr-2", "preview 2"))
                    .await
            })
        })
        .collect();
    let mut created = 0;
    for r in racers {
        let (s, v) = r.await.expect("joins");
        assert!(s == StatusCode::CREATED || s == StatusCode::OK, "{s} {v}");
        created += usize::from(s == StatusCode::CREATED);
    }
    assert_eq!(created, 1, "one of the racers made it");
    assert_eq!(active_with(&d, "preview 2").await.len(), 1);

    let (s, v) = d
        .post("/api/v1/leases", WEB, acquire("repo#pr-1", "another task"))
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["code"], "idempotency-key-conflict", "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap_or_default()
            .contains(first["id"].as_str().unwrap_or("?")),
        "{v}"
    );

    let id = first["id"].as_str().expect("id");
    let (s, _) = d
        .post(&format!("/api/v1/leases/{id}/release"), WEB, json!({}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, fresh) = d
        .post("/api/v1/leases", WEB, acquire("repo#pr-1", "preview 1"))
        .await;
    assert_eq!(
        s,
        StatusCode::CREATED,
        "a released lease frees its key: {fresh}"
    );
    assert_ne!(fresh["id"], first["id"]);

    let data = json!({"project": "data", "task": "preview 1", "owner": "alice@example.com", "key": "repo#pr-1"});
    let (s, other) = d.post("/api/v1/leases", OPERATOR, data).await;
    assert_eq!(s, StatusCode::CREATED, "keys are per project: {other}");

    let by_header = |key: &'static str| {
        let d = d.clone();
        async move {
            let resp = d
                .http
                .post(format!("http://{}/api/v1/leases", d.addr))
                .bearer_auth(WEB)
                .header("Idempotency-Key", key)
                .json(&json!({"project": "web", "task": "preview 3", "owner": "alice@example.com"}))
                .send()
                .await
                .expect("answers");
            (resp.status(), resp.json::<Value>().await.expect("json"))
        }
    };
    let (s1, a) = by_header("repo#pr-3").await;
    let (s2, b) = by_header("repo#pr-3").await;
    assert_eq!((s1, s2), (StatusCode::CREATED, StatusCode::OK));
    assert_eq!(a["id"], b["id"]);

    let (s, v) = d
        .post("/api/v1/leases", WEB, acquire(" ", "preview 4"))
        .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid-request")),
        "{v}"
    );
}

/// A proxy that passes everything through, but for the first `POST /api/v1/leases`: that one
/// reaches the daemon, whose answer is held past the client's timeout and then dropped.
async fn swallowing_proxy(upstream: std::net::SocketAddr) -> (String, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let addr = format!("http://{}", listener.local_addr().expect("addr"));
    let swallowed = Arc::new(AtomicBool::new(false));
    let flag = swallowed.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let flag = flag.clone();
            tokio::spawn(async move {
                let mut server = TcpStream::connect(upstream).await.expect("upstream");
                const ACQUIRE: &[u8] = b"POST /api/v1/leases ";
                let mut head = vec![0_u8; 64];
                let mut n = 0;
                // The request line may arrive in pieces: peek until it can be told.
                for _ in 0..100 {
                    n = client.peek(&mut head).await.unwrap_or(0);
                    if n >= ACQUIRE.len() || n == 0 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                let is_acquire = head[..n].starts_with(ACQUIRE);
                if is_acquire && !flag.swap(true, Ordering::SeqCst) {
                    // Forward the request, read the daemon's answer, and never pass it on.
                    let mut buf = vec![0_u8; 64 * 1024];
                    let n = client.read(&mut buf).await.unwrap_or(0);
                    server.write_all(&buf[..n]).await.expect("forwards");
                    let _ = server.read(&mut buf).await;
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    return;
                }
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            });
        }
    });
    (addr, swallowed)
}

/// The first acquire's answer never comes (the lease was made); the CLI times out, sends it
/// again with the same key, and prints that lease: one lease, not two.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_times_out_mid_request_retries_into_the_same_lease() {
    let work = Workdir::new();
    let d = TestDaemon::start(&work).await;
    let (addr, swallowed) = swallowing_proxy(d.addr).await;
    let env = [("EPHEMERA_ADDR", addr.as_str()), ("EPHEMERA_TOKEN", WEB)];
    for (task, key) in [("build 9", Some("ci#9")), ("build 10", None)] {
        swallowed.store(false, Ordering::SeqCst);
        let mut args = vec![
            "lease",
            "acquire",
            "--project",
            "web",
            "--task",
            task,
            "--owner",
            "alice@example.com",
            "--timeout",
            "1s",
            "--output",
            "json",
        ];
        if let Some(k) = key {
            args.extend(["--key", k]);
        }
        let out = run(&args, &env).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        assert!(
            swallowed.load(Ordering::SeqCst),
            "the first answer was swallowed"
        );
        assert!(stderr.contains("retrying (1/4)"), "{stderr}");
        let printed: Value = serde_json::from_slice(&out.stdout).expect("lease json");
        let active = active_with(&d, task).await;
        assert_eq!(active.len(), 1, "one lease for {task}: {active:?}");
        assert_eq!(printed["id"], active[0]["id"]);
    }
}

/// `scan --wait` exits 1 when the pass failed (here the store's leases cannot be read), and
/// 0 when it succeeded.
#[tokio::test(flavor = "multi_thread")]
async fn scan_wait_fails_with_a_failed_pass() {
    let work = Workdir::new();
    let d = TestDaemon::start(&work).await;
    let addr = format!("http://{}", d.addr);
    let env = [
        ("EPHEMERA_ADDR", addr.as_str()),
        ("EPHEMERA_TOKEN", OPERATOR),
    ];
    let out = run(&["scan", "--wait"], &env).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let db = rusqlite::Connection::open(work.path().join("state/ephemera.db")).expect("opens");
    db.execute_batch("ALTER TABLE leases RENAME TO leases_hidden")
        .expect("hides the leases");
    let out = run(&["scan", "--wait"], &env).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("failed (see `ephemera status`)"),
        "{stderr}"
    );
}
