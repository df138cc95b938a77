//! The reaper's audit log: chained with HMAC-SHA256 under a key outside the store, and `audit
//! verify` names the record that was edited, removed or inserted behind the daemon's back, and
//! a tail cut back against a head published earlier.

use chrono::{TimeZone, Utc};
use ephemera::resource::{AuditBreak, AuditEntry};
use ephemera::store::{ReapUpdate, Store};

fn entry(i: u32) -> AuditEntry {
    AuditEntry {
        at: Utc
            .with_ymd_and_hms(2026, 3, 1, 12, 0, i)
            .single()
            .expect("time"),
        run_id: Some("run-1".into()),
        actor: "scheduler".into(),
        mode: ephemera::model::ReapMode::Pass,
        arn: format!("arn:aws:ec2:us-east-1:123456789012:volume/vol-{i}"),
        lease_id: None,
        verdict: Some("expired".into()),
        decision: ephemera::model::Decision::WouldDelete,
        detail: format!("record {i}"),
    }
}

/// A store holding five chained records, and a raw connection to tamper with it.
async fn chain() -> (tempfile::TempDir, Store, rusqlite::Connection) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("ephemera.db");
    let key = ephemera::audit::AuditKey::from_hex(&"42".repeat(32)).expect("key");
    let store = Store::open(&path)
        .await
        .expect("store opens")
        .with_audit_key(key);
    for i in 1..=5 {
        let seq = store
            .record_reap(None, entry(i), ReapUpdate::Decision)
            .await
            .expect("appended");
        assert_eq!(seq, i64::from(i));
    }
    let raw = rusqlite::Connection::open(&path).expect("raw connection");
    (dir, store, raw)
}

fn broken(seq: i64, problem: &str) -> Result<u64, AuditBreak> {
    Err(AuditBreak {
        seq,
        problem: problem.into(),
    })
}

#[tokio::test]
async fn verify_passes_an_intact_chain_and_names_each_kind_of_tampering() {
    let (_dir, store, raw) = chain().await;
    assert_eq!(store.audit_verify(None).await.expect("reads"), Ok(5));
    let (list, next) = store
        .audit_list(ephemera::store::AuditQuery {
            limit: 2,
            ..Default::default()
        })
        .await
        .expect("lists");
    assert_eq!(list.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(
        list[1].prev_hash, list[0].hash,
        "each record links the one before"
    );
    assert_eq!(next, Some(2));

    // Edited: one field of record 3.
    raw.execute(
        "UPDATE audit_log SET detail = 'nothing to see' WHERE seq = 3",
        [],
    )
    .expect("tamper");
    assert_eq!(
        store.audit_verify(None).await.expect("reads"),
        broken(3, "edited (its hash does not match its content)")
    );
    raw.execute("UPDATE audit_log SET detail = 'record 3' WHERE seq = 3", [])
        .expect("restore");
    assert_eq!(store.audit_verify(None).await.expect("reads"), Ok(5));

    // Removed from the middle.
    raw.execute(
        "CREATE TABLE saved AS SELECT * FROM audit_log WHERE seq = 4",
        [],
    )
    .expect("save");
    raw.execute("DELETE FROM audit_log WHERE seq = 4", [])
        .expect("remove");
    assert_eq!(
        store.audit_verify(None).await.expect("reads"),
        broken(4, "missing (removed)")
    );
    raw.execute("INSERT INTO audit_log SELECT * FROM saved", [])
        .expect("put back");
    assert_eq!(store.audit_verify(None).await.expect("reads"), Ok(5));

    // Removed at the tail: the head still names record 5.
    raw.execute("DELETE FROM audit_log WHERE seq = 5", [])
        .expect("remove tail");
    assert_eq!(
        store.audit_verify(None).await.expect("reads"),
        broken(5, "missing (the tail was removed)")
    );

    // Renumbered to hide the gap: record 5's slot filled by a copy of 4 (wrong link, wrong hash).
    raw.execute(
        "INSERT INTO audit_log (seq, at, run_id, actor, mode, arn, lease_id, verdict, decision, detail, prev_hash, hash)
         SELECT 5, at, run_id, actor, mode, arn, lease_id, verdict, decision, detail, prev_hash, hash FROM saved",
        [],
    )
    .expect("insert");
    assert_eq!(
        store
            .audit_verify(None)
            .await
            .expect("reads")
            .map_err(|b| b.seq),
        Err(5),
        "a forged record is named"
    );
}

/// The real binary end to end: the daemon's first start creates the key (mode 0600, a WARN to
/// back it up) and the next start reuses it; `audit verify --head SEQ:HASH`, through the API
/// and offline, catches a tail cut back with its head row moved to match (which the file alone
/// cannot show); an emptied log is not intact; and offline verify never makes a key.
#[tokio::test(flavor = "multi_thread")]
async fn verify_against_a_published_head_with_the_real_binary() {
    use crate::cli::{run, spawn_daemon};
    use crate::support::{VIEWER, Workdir};

    let work = Workdir::new();
    let config = work.config_path();
    let config_arg = config.to_str().expect("utf-8");
    let key_path = work.path().join("state/audit.key");
    assert!(!key_path.exists());
    let (mut daemon, addr) = spawn_daemon(&config);
    let key_text = std::fs::read_to_string(&key_path).expect("the first start made a key");
    assert_eq!(key_text.trim().len(), 64, "32 bytes as hex");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_path)
            .expect("key file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // Records appended beside the daemon, with the key it made; heads taken as a pass
    // publishes them.
    let cfg = work.config();
    let key = ephemera::audit::AuditKey::load(&cfg.audit.key).expect("key");
    let store = Store::open_at(&cfg.store.location)
        .await
        .expect("store")
        .with_audit_key(key);
    let mut heads = Vec::new();
    for i in 1..=5 {
        store
            .record_reap(None, entry(i), ReapUpdate::Decision)
            .await
            .expect("appended");
        heads.push(store.audit_head().await.expect("head").expect("a head"));
    }
    let (h3, h5) = (heads[2].to_string(), heads[4].to_string());
    let env = [("EPHEMERA_ADDR", addr.as_str()), ("EPHEMERA_TOKEN", VIEWER)];
    let out = run(&["audit", "verify", "--head", &h5], &env).await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("audit log intact: 5 records"), "{stdout}");
    assert!(
        stdout.contains(&format!("published head {h5} found")),
        "{stdout}"
    );

    // The tail cut back and the head row moved to match.
    let db = work.path().join("state/ephemera.db");
    let raw = rusqlite::Connection::open(&db).expect("open store");
    raw.execute_batch(
        "DELETE FROM audit_log WHERE seq > 3;
         UPDATE audit_head SET seq = 3, hash = (SELECT hash FROM audit_log WHERE seq = 3);",
    )
    .expect("cut the tail");
    let out = run(&["audit", "verify"], &env).await;
    assert_eq!(out.status.code(), Some(0), "the file alone cannot show it");
    let out = run(&["audit", "verify", "--head", &h3], &env).await;
    assert_eq!(out.status.code(), Some(0), "an older head is still there");
    for args in [
        vec!["audit", "verify", "--head", h5.as_str()],
        vec![
            "audit",
            "verify",
            "--config",
            config_arg,
            "--head",
            h5.as_str(),
        ],
    ] {
        let out = run(&args, &env).await;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stdout}");
        assert!(
            stdout.contains("audit log BROKEN at record 4: missing: the chain ends at record 3")
                && stdout.contains(&format!("before the published head {h5}")),
            "{args:?}: {stdout}"
        );
    }
    let out = run(&["audit", "verify", "--head", "5"], &env).await;
    assert_eq!(
        out.status.code(),
        Some(2),
        "a head without its hash is a usage error"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("expected SEQ:HASH"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A restart reuses the key, and says nothing about creating one.
    daemon.child.kill().expect("stop");
    let (_, logs) = daemon.wait();
    assert!(
        logs.contains("created a new audit key: BACK IT UP"),
        "the first start warns: {logs}"
    );
    assert!(!logs.contains(key_text.trim()), "the key is never logged");
    let (mut daemon, _) = spawn_daemon(&config);
    daemon.child.kill().expect("stop");
    let (_, logs) = daemon.wait();
    assert!(!logs.contains("created a new audit key"), "{logs}");
    assert_eq!(
        std::fs::read_to_string(&key_path).expect("key"),
        key_text,
        "reused"
    );

    // Emptied: not "intact, 0 records".
    raw.execute_batch("DELETE FROM audit_log; DELETE FROM audit_head;")
        .expect("empty");
    let out = run(&["audit", "verify", "--config", config_arg], &[]).await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("BROKEN at record 1: missing: the log is empty"),
        "{stdout}"
    );

    // Offline, without the key: a clear error, and no new key that would verify nothing.
    std::fs::remove_file(&key_path).expect("key moved away");
    let out = run(&["audit", "verify", "--config", config_arg], &[]).await;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("no audit key"), "{stderr}");
    assert!(!key_path.exists());
}

/// A keyed chain is never handed a new key: with its key lost, or another key configured, the
/// daemon refuses to start (a new key could verify none of the log and would break the chain
/// at its next record); with the key back, it starts.
#[tokio::test]
async fn a_daemon_refuses_a_lost_or_other_key_for_a_keyed_chain() {
    let work = crate::support::Workdir::new();
    let clock = std::sync::Arc::new(ephemera::clock::SystemClock);
    let open = || ephemera::daemon::open(work.config(), clock.clone());
    let parts = open().await.expect("the first start makes a key");
    parts
        .store
        .record_reap(None, entry(1), ReapUpdate::Decision)
        .await
        .expect("appended");
    drop(parts);
    let key_path = work.path().join("state/audit.key");
    let key_text = std::fs::read_to_string(&key_path).expect("key");

    std::fs::remove_file(&key_path).expect("key lost");
    let err = open()
        .await
        .err()
        .map(|e| format!("{e:#}"))
        .expect("no key, keyed chain: refused");
    assert!(err.contains("restore that key"), "{err}");
    assert!(!key_path.exists(), "no new key was made");

    std::fs::write(&key_path, "17".repeat(32)).expect("another key");
    let err = open()
        .await
        .err()
        .map(|e| format!("{e:#}"))
        .expect("another key: refused");
    assert!(err.contains("configure that key"), "{err}");

    std::fs::write(&key_path, &key_text).expect("key restored");
    let parts = open().await.expect("starts with its key");
    assert_eq!(parts.store.audit_verify(None).await.expect("reads"), Ok(1));
}
