//! Append-only schema migrations. Never edit a shipped entry: add a new one at the end.
//! `PRAGMA user_version` records how many have been applied.

use rusqlite::Connection;

use super::StoreError;

const MIGRATIONS: &[&str] = &[
    // 1: leases. Times are UTC milliseconds since the epoch. `ends_at` is derived (the earlier
    // of expiry and heartbeat deadline) and kept so state queries stay index-only.
    "CREATE TABLE leases (
        id                   TEXT PRIMARY KEY,
        project              TEXT NOT NULL,
        task                 TEXT NOT NULL,
        owner                TEXT NOT NULL,
        principal            TEXT NOT NULL,
        created_at           INTEGER NOT NULL,
        expires_at           INTEGER NOT NULL,
        heartbeat_interval_s INTEGER,
        last_heartbeat_at    INTEGER,
        released_at          INTEGER,
        ends_at              INTEGER NOT NULL,
        labels               TEXT NOT NULL DEFAULT '{}',
        regions              TEXT NOT NULL DEFAULT '[]'
    ) STRICT;
    CREATE INDEX leases_by_project_state ON leases (project, released_at, ends_at);
    CREATE INDEX leases_by_owner ON leases (owner);",
];

pub(super) fn apply(conn: &mut Connection) -> Result<(), StoreError> {
    let known = MIGRATIONS.len() as i64;
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > known {
        return Err(StoreError::TooNew { found, known });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}
