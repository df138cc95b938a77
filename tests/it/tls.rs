//! HTTPS for the API (`[api.tls]`), on the real binary: the CLI trusts the daemon through
//! `--ca-file` or `EPHEMERA_CA_FILE` and refuses it otherwise; plain HTTP to the TLS port
//! gets no answer; SIGHUP swaps the certificate for new connections and keeps the old one
//! when the new pair is broken; a connection that never says hello is closed after the
//! header-read timeout like one that never sends its headers.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::cli::{run, spawn_daemon};
use crate::support::{DATA, OPERATOR, Workdir, eventually, sample};

/// A throwaway CA and a server certificate it signed for 127.0.0.1 and localhost (the SMTP
/// peer's generator, so both peers' certificates are made alike).
struct Certs {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn certificates(dir: &Path) -> Certs {
    std::fs::create_dir_all(dir).expect("cert dir");
    let peers = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers");
    let made = Command::new(crate::support::seed::python())
        .args([
            "-c",
            "import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); \
             from smtp_server import certificates; certificates(Path(sys.argv[2]))",
            peers,
        ])
        .arg(dir)
        .status()
        .expect("python runs");
    assert!(made.success(), "certificates made");
    Certs {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    }
}

/// The test config with `[api.tls]` on `tls/api.pem` and `tls/api.key` (relative to the
/// config), holding a copy of `certs`; `api_extra` goes into `[api]`.
fn tls_workdir(certs: &Certs, api_extra: &str) -> Workdir {
    let text = crate::support::config_text().replacen(
        "max_body_bytes = 4096",
        &format!(
            "max_body_bytes = 4096\n{api_extra}\n[api.tls]\ncert = \"tls/api.pem\"\nkey = \"tls/api.key\"\n"
        ),
        1,
    );
    let work = Workdir::with_config(&text);
    install(&work, certs);
    work
}

/// Copies `certs` over the files the config names.
fn install(work: &Workdir, certs: &Certs) {
    let dir = work.path().join("tls");
    std::fs::create_dir_all(&dir).expect("tls dir");
    std::fs::copy(&certs.cert, dir.join("api.pem")).expect("copy cert");
    std::fs::copy(&certs.key, dir.join("api.key")).expect("copy key");
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `lease list` against `addr` as the operator, with `env` added.
async fn list(addr: &str, env: &[(&str, &str)]) -> Output {
    let mut all = vec![("EPHEMERA_ADDR", addr), ("EPHEMERA_TOKEN", OPERATOR)];
    all.extend_from_slice(env);
    run(&["lease", "list", "--timeout", "5s"], &all).await
}

/// A reqwest client that trusts only `ca`.
fn trusting(ca: &Path) -> reqwest::Client {
    let pem = std::fs::read(ca).expect("read CA");
    reqwest::Client::builder()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(&pem).expect("CA PEM"))
        .build()
        .expect("client")
}

fn send_hup(pid: u32) {
    let hup = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(hup.success());
}

/// The lease API over HTTPS with the CLI: the CA from the flag or the environment is
/// trusted; without it the certificate is refused, by name; plain HTTP gets no API answer.
#[tokio::test(flavor = "multi_thread")]
async fn the_cli_leases_over_https_with_the_ca_it_is_given() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let certs = certificates(&tmp.path().join("a"));
    let work = tls_workdir(&certs, "");
    let (daemon, plain) = spawn_daemon(&work.config_path());
    let host = plain.trim_start_matches("http://").to_owned();
    let addr = format!("https://{host}");
    let ca = certs.ca.to_str().expect("utf-8");

    let o = run(
        &[
            "lease",
            "acquire",
            "--project",
            "data",
            "--task",
            "tls",
            "--owner",
            "d@example.com",
            "--output",
            "json",
            "--ca-file",
            ca,
        ],
        &[("EPHEMERA_ADDR", &addr), ("EPHEMERA_TOKEN", DATA)],
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let lease: Value = serde_json::from_slice(&o.stdout).expect("lease json");
    let id = lease["id"].as_str().expect("id").to_owned();
    let o = run(
        &["lease", "release", &id],
        &[
            ("EPHEMERA_ADDR", &addr),
            ("EPHEMERA_TOKEN", DATA),
            ("EPHEMERA_CA_FILE", ca),
        ],
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(
        &[
            "lease",
            "list",
            "--state",
            "released",
            "--output",
            "json",
            "--ca-file",
            ca,
        ],
        &[("EPHEMERA_ADDR", &addr), ("EPHEMERA_TOKEN", OPERATOR)],
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains(&id));

    // Without the CA: the system's roots do not know it; said at once, not after retries.
    let started = Instant::now();
    let o = list(&addr, &[]).await;
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("certificate is not trusted") && err.contains("--ca-file"),
        "{err}"
    );
    assert!(!err.contains("retrying"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3), "no retries");
    // A CA file that is not one.
    let o = list(
        &addr,
        &[("EPHEMERA_CA_FILE", certs.key.to_str().expect("utf-8"))],
    )
    .await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("holds no PEM certificate"),
        "{}",
        stderr(&o)
    );

    // Plain HTTP to the TLS port: no HTTP answer, the connection is closed.
    let mut s = tokio::net::TcpStream::connect(&host)
        .await
        .expect("connect");
    s.write_all(b"GET /api/v1/leases HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got))
        .await
        .expect("closed by the server")
        .ok();
    assert!(
        !got.starts_with(b"HTTP/"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    let o = list(&plain, &[("EPHEMERA_CA_FILE", ca)]).await;
    assert_eq!(o.status.code(), Some(1), "http:// to the TLS port fails");
    drop(daemon);

    // A key that cannot be read: the daemon does not start, and names the file.
    std::fs::remove_file(work.path().join("tls/api.key")).expect("remove key");
    let o = run(
        &[
            "daemon",
            "--config",
            work.config_path().to_str().expect("utf-8"),
        ],
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("field `api.tls.key`") && err.contains("tls/api.key"),
        "{err}"
    );
}

/// SIGHUP reads the certificate and key again: new connections get the new certificate (a
/// client trusting only the new CA gets in, one trusting only the old does not); a broken
/// key is refused, counted as a failed reload, logged with its file, and the certificate
/// already serving stays.
#[tokio::test(flavor = "multi_thread")]
async fn sighup_swaps_the_certificate_and_keeps_it_when_the_new_key_is_broken() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let old = certificates(&tmp.path().join("old"));
    let new = certificates(&tmp.path().join("new"));
    let work = tls_workdir(&old, "");
    let (mut daemon, plain) = spawn_daemon(&work.config_path());
    let addr = plain.replacen("http://", "https://", 1);
    let (old_ca, new_ca) = (
        old.ca.to_str().expect("utf-8"),
        new.ca.to_str().expect("utf-8"),
    );
    assert!(
        list(&addr, &[("EPHEMERA_CA_FILE", old_ca)])
            .await
            .status
            .success()
    );
    assert_eq!(
        list(&addr, &[("EPHEMERA_CA_FILE", new_ca)])
            .await
            .status
            .code(),
        Some(1),
        "the new CA vouches for nothing yet"
    );

    install(&work, &new);
    send_hup(daemon.child.id());
    eventually(
        "the new certificate serves",
        Duration::from_secs(10),
        || async {
            list(&addr, &[("EPHEMERA_CA_FILE", new_ca)])
                .await
                .status
                .success()
        },
    )
    .await;
    let o = list(&addr, &[("EPHEMERA_CA_FILE", old_ca)]).await;
    assert_eq!(o.status.code(), Some(1), "the old certificate is gone");
    assert!(
        stderr(&o).contains("certificate is not trusted"),
        "{}",
        stderr(&o)
    );
    let metrics = || async {
        trusting(&new.ca)
            .get(format!("{addr}/metrics"))
            .send()
            .await
            .expect("metrics over https")
            .text()
            .await
            .expect("text")
    };
    let m = metrics().await;
    assert_eq!(
        sample(&m, "ephemera_config_reloads_total{outcome=\"applied\"}"),
        Some(1.0)
    );

    // A broken key: refused, the new certificate keeps serving.
    let key = work.path().join("tls/api.key");
    std::fs::write(&key, "-----BEGIN PRIVATE KEY-----\nbroken\n").expect("break key");
    send_hup(daemon.child.id());
    eventually("the reload fails", Duration::from_secs(10), || async {
        sample(
            &metrics().await,
            "ephemera_config_reloads_total{outcome=\"failed\"}",
        ) == Some(1.0)
    })
    .await;
    assert_eq!(
        sample(&metrics().await, "ephemera_config_last_reload_successful"),
        Some(0.0)
    );
    assert!(
        list(&addr, &[("EPHEMERA_CA_FILE", new_ca)])
            .await
            .status
            .success()
    );

    // Turning TLS off is a restart: the reload applies the rest and says so; HTTPS stays.
    let text = std::fs::read_to_string(work.config_path()).expect("config");
    let off = text.replacen(
        "[api.tls]\ncert = \"tls/api.pem\"\nkey = \"tls/api.key\"\n",
        "",
        1,
    );
    assert_ne!(off, text, "the fixture has [api.tls]");
    std::fs::write(work.config_path(), off).expect("write config");
    // Said again by the next reload: the listener still speaks TLS until the restart.
    for _ in 0..2 {
        let answer = trusting(&new.ca)
            .post(format!("{addr}/api/v1/reload"))
            .bearer_auth(OPERATOR)
            .send()
            .await
            .expect("reload over https");
        assert_eq!(answer.status(), reqwest::StatusCode::OK);
        let report: Value = answer.json().await.expect("report");
        assert_eq!(
            report["restart_needed"],
            serde_json::json!(["api.tls"]),
            "{report}"
        );
        assert_eq!(report["tls_reloaded"], false, "{report}");
    }
    assert!(
        list(&addr, &[("EPHEMERA_CA_FILE", new_ca)])
            .await
            .status
            .success()
    );

    // The operator reads which file, from the log.
    let _ = daemon.child.kill();
    let (_, logs) = daemon.wait();
    assert!(
        logs.lines().any(|l| l.contains("config and rules reloaded")
            && l.contains("\"tls_reloaded\":true")
            && l.contains("\"by\":\"sighup\"")),
        "{logs}"
    );
    let refused = logs
        .lines()
        .find(|l| l.contains("reload refused"))
        .unwrap_or_else(|| panic!("no refused reload in the log:\n{logs}"));
    assert!(
        refused.contains(&key.display().to_string()) && refused.contains("api.tls.key"),
        "{refused}"
    );
}

/// Connections that open TCP and never send a ClientHello hold a slot only until the
/// header-read timeout: past `max_connections` the next is closed at once, the silent ones
/// are closed after about a second, and then the API answers over HTTPS again.
#[tokio::test(flavor = "multi_thread")]
async fn a_connection_without_a_client_hello_is_closed_after_the_header_read_timeout() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let certs = certificates(&tmp.path().join("a"));
    let work = tls_workdir(&certs, "header_read_timeout = \"1s\"\nmax_connections = 8");
    let (daemon, plain) = spawn_daemon(&work.config_path());
    let host = plain.trim_start_matches("http://").to_owned();
    let opened = Instant::now();
    let mut silent = Vec::new();
    for _ in 0..8 {
        silent.push(
            tokio::net::TcpStream::connect(&host)
                .await
                .expect("connect"),
        );
    }
    let mut ninth = tokio::net::TcpStream::connect(&host)
        .await
        .expect("connect");
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), ninth.read(&mut buf))
        .await
        .expect("the ninth is closed, not left hanging")
        .unwrap_or(0);
    assert_eq!(n, 0, "nothing past max_connections");
    for s in &mut silent {
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
            .await
            .expect("closed by the server within the timeout")
            .ok();
    }
    assert!(
        opened.elapsed() >= Duration::from_millis(900),
        "closed by the timeout, not at once: {:?}",
        opened.elapsed()
    );
    let client = trusting(&certs.ca);
    let url = format!("https://{host}/healthz");
    eventually(
        "the API answers over https",
        Duration::from_secs(5),
        || async {
            client
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        },
    )
    .await;
    drop(daemon);
}

/// TLS to PostgreSQL on the real binary, against a server that refuses plain connections:
/// with `sslmode=require` and `[store] ca_file` the daemon serves leases over sessions the
/// server counts as TLS; without the CA it does not start, and says the certificate is not
/// trusted; `sslmode=disable` is refused by the server.
#[tokio::test(flavor = "multi_thread")]
async fn the_store_reaches_postgresql_over_verified_tls() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let certs = certificates(&tmp.path().join("pg"));
    let server = crate::support::postgres::PrivateServer::start_tls(&certs.cert, &certs.key);
    let config = |url: &str, ca: Option<&Path>| {
        let work = crate::ha::replica_workdir(url);
        let text = std::fs::read_to_string(work.config_path()).expect("config");
        // Trust authentication: the private server takes no password.
        let mut text = text.replacen(
            &format!(
                "password_env = \"{}\"\n",
                crate::support::postgres::PASSWORD_ENV
            ),
            "",
            1,
        );
        if let Some(ca) = ca {
            text = text.replacen(
                "[store]\n",
                &format!("[store]\nca_file = \"{}\"\n", ca.display()),
                1,
            );
        }
        std::fs::write(work.config_path(), text).expect("write config");
        work
    };
    let tls_url = format!("{}?sslmode=require", server.url());

    let work = config(&tls_url, Some(&certs.ca));
    let (daemon, base) = spawn_daemon(&work.config_path());
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{base}/api/v1/leases"))
        .bearer_auth(DATA)
        .json(&serde_json::json!({"project": "data", "task": "tls", "owner": "d@example.com"}))
        .send()
        .await
        .expect("acquire sent");
    assert_eq!(r.status(), reqwest::StatusCode::CREATED);
    let sessions = server.psql(
        "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl) \
         FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE a.application_name = 'ephemera'",
    );
    let (on, off) = sessions.split_once('|').expect("two counts");
    assert!(on.parse::<u32>().expect("count") >= 1, "{sessions}");
    assert_eq!(off, "0", "{sessions}");
    drop(daemon);

    // Without the CA (the test CA is in no system store), or without TLS: no start.
    for (work, want) in [
        (
            config(&tls_url, None),
            "invalid peer certificate: UnknownIssuer",
        ),
        (
            config(&format!("{}?sslmode=disable", server.url()), None),
            "no encryption",
        ),
    ] {
        let out = tokio::time::timeout(
            Duration::from_secs(60),
            tokio::process::Command::new(env!("CARGO_BIN_EXE_ephemera"))
                .args(["daemon", "--config"])
                .arg(work.config_path())
                .env_remove("RUST_LOG")
                .output(),
        )
        .await
        .expect("the daemon gives up within a minute")
        .expect("the daemon runs");
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(err.contains(want), "{want} in {err}");
    }
}
