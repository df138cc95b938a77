//! The reaper's audit log: hash-chained, and `audit verify` names the record that was edited,
//! removed or inserted behind the daemon's back.

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
        mode: "pass".into(),
        arn: format!("arn:aws:ec2:us-east-1:123456789012:volume/vol-{i}"),
        lease_id: None,
        verdict: Some("expired".into()),
        decision: "would-delete".into(),
        detail: format!("record {i}"),
    }
}

/// A store holding five chained records, and a raw connection to tamper with it.
async fn chain() -> (tempfile::TempDir, Store, rusqlite::Connection) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("ephemera.db");
    let store = Store::open(&path).await.expect("store opens");
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
    assert_eq!(store.audit_verify().await.expect("reads"), Ok(5));
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
        store.audit_verify().await.expect("reads"),
        broken(3, "edited (its hash does not match its content)")
    );
    raw.execute("UPDATE audit_log SET detail = 'record 3' WHERE seq = 3", [])
        .expect("restore");
    assert_eq!(store.audit_verify().await.expect("reads"), Ok(5));

    // Removed from the middle.
    raw.execute(
        "CREATE TABLE saved AS SELECT * FROM audit_log WHERE seq = 4",
        [],
    )
    .expect("save");
    raw.execute("DELETE FROM audit_log WHERE seq = 4", [])
        .expect("remove");
    assert_eq!(
        store.audit_verify().await.expect("reads"),
        broken(4, "missing (removed)")
    );
    raw.execute("INSERT INTO audit_log SELECT * FROM saved", [])
        .expect("put back");
    assert_eq!(store.audit_verify().await.expect("reads"), Ok(5));

    // Removed at the tail: the head still names record 5.
    raw.execute("DELETE FROM audit_log WHERE seq = 5", [])
        .expect("remove tail");
    assert_eq!(
        store.audit_verify().await.expect("reads"),
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
            .audit_verify()
            .await
            .expect("reads")
            .map_err(|b| b.seq),
        Err(5),
        "a forged record is named"
    );
}
