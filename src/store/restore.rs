//! Backups, restores and the guard that keeps a restored store from deleting.
//!
//! A store restored from a backup has forgotten every lease created since: their resources
//! are `unknown-lease`, and rules that reap those would delete live work. So a restore (by
//! `ephemera store restore`, or found by its evidence: a resource naming a lease id newer than
//! any the store issued) suspends reaping of `unknown-lease` and `released` resources until an
//! operator confirms, or until enough complete passes in a row find no such evidence.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError, ms};
use crate::model::LeaseId;

/// Reaping of `unknown-lease` and `released` resources is suspended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suspension {
    pub since: DateTime<Utc>,
    pub reason: String,
    /// Complete passes in a row since the last evidence of lost leases.
    pub clean_passes: u32,
}

fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

fn read_suspension(c: &rusqlite::Connection) -> Result<Option<Suspension>, StoreError> {
    Ok(c.prepare_cached(
        "SELECT suspended_since, reason, clean_passes FROM restore_guard
         WHERE id = 1 AND suspended_since IS NOT NULL",
    )?
    .query_row([], |r| {
        Ok(Suspension {
            since: time(r.get(0)?),
            reason: r.get(1)?,
            clean_passes: r.get(2)?,
        })
    })
    .optional()?)
}

fn suspend(c: &rusqlite::Connection, reason: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
    // The first suspension's time and reason stay; fresh evidence only restarts the count.
    c.prepare_cached(
        "INSERT INTO restore_guard (id, suspended_since, reason, clean_passes)
         VALUES (1, ?1, ?2, 0)
         ON CONFLICT (id) DO UPDATE SET
             suspended_since = COALESCE(suspended_since, excluded.suspended_since),
             reason = CASE WHEN suspended_since IS NULL THEN excluded.reason ELSE reason END,
             clean_passes = 0",
    )?
    .execute(params![ms(now), reason])?;
    Ok(())
}

impl Store {
    /// A consistent copy of the whole store at `to` (SQLite's `VACUUM INTO`: online, the
    /// daemon keeps serving); `to` must not exist yet.
    pub async fn backup_to(&self, to: std::path::PathBuf) -> Result<(), StoreError> {
        self.read(move |c| {
            let target = to.to_str().ok_or_else(|| {
                StoreError::Corrupt(format!("{} is not a UTF-8 path", to.display()))
            })?;
            c.execute("VACUUM INTO ?1", [target])?;
            Ok(())
        })
        .await
    }

    /// When a serving daemon last recorded that it was alive (wall clock).
    pub async fn last_alive(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.read(|c| {
            Ok(
                c.prepare_cached("SELECT at FROM registry_alive WHERE id = 1")?
                    .query_row([], |r| r.get::<_, i64>(0))
                    .optional()?
                    .map(time),
            )
        })
        .await
    }

    /// Sets when a daemon was last alive on this store (a restore carries over the replaced
    /// store's, so the daemon's real downtime, not the backup's age, is credited to leases).
    pub async fn set_last_alive(&self, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.writer()?
            .write(move |c| {
                c.prepare_cached(
                    "INSERT INTO registry_alive (id, at) VALUES (1, ?1)
                     ON CONFLICT (id) DO UPDATE SET at = excluded.at",
                )?
                .execute([ms(at)])?;
                Ok(())
            })
            .await
    }

    /// The suspension in force, if any.
    pub async fn suspension(&self) -> Result<Option<Suspension>, StoreError> {
        self.read(|c| read_suspension(c)).await
    }

    /// Suspends reaping of `unknown-lease` and `released` resources (kept as it is when one
    /// is in force already, but its count of clean passes starts again).
    pub async fn suspend_reaping(
        &self,
        reason: String,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.writer()?
            .write(move |c| suspend(c, &reason, now))
            .await
    }

    /// An operator confirmed the store is right: the suspension ends. Returns the one that
    /// ended, if any.
    pub async fn confirm_restore(
        &self,
        by: String,
        now: DateTime<Utc>,
    ) -> Result<Option<Suspension>, StoreError> {
        self.writer()?
            .write(move |c| {
                let ended = read_suspension(c)?;
                c.prepare_cached(
                    "INSERT INTO restore_guard (id, confirmed_at, confirmed_by) VALUES (1, ?1, ?2)
                     ON CONFLICT (id) DO UPDATE SET suspended_since = NULL, reason = NULL,
                         clean_passes = 0, confirmed_at = ?1, confirmed_by = ?2",
                )?
                .execute(params![ms(now), by])?;
                Ok(ended)
            })
            .await
    }

    /// Records what a complete pass found: `evidence` of lost leases (why, if any) suspends
    /// (or keeps suspended, counting from zero again); none counts a clean pass, and
    /// `clean_needed` of them in a row end the suspension. Returns the suspension still in
    /// force.
    pub async fn record_restore_evidence(
        &self,
        evidence: Option<String>,
        clean_needed: u32,
        now: DateTime<Utc>,
    ) -> Result<Option<Suspension>, StoreError> {
        self.writer()?
            .write(move |c| {
                if let Some(why) = evidence {
                    suspend(c, &why, now)?;
                    return read_suspension(c);
                }
                c.prepare_cached(
                    "UPDATE restore_guard SET clean_passes = clean_passes + 1
                     WHERE id = 1 AND suspended_since IS NOT NULL",
                )?
                .execute([])?;
                // Lifted without an operator: nothing is acknowledged (no horizon moves).
                c.prepare_cached(
                    "UPDATE restore_guard SET suspended_since = NULL, reason = NULL,
                         clean_passes = 0, confirmed_by = 'clean passes'
                     WHERE id = 1 AND suspended_since IS NOT NULL AND clean_passes >= ?1",
                )?
                .execute(params![clean_needed])?;
                read_suspension(c)
            })
            .await
    }

    /// Lease ids named by open `unknown-lease` findings that are newer than every lease this
    /// store issued (by the time in their UUIDv7) and than the last confirmation: leases it
    /// should know and does not, as after a restore. Ids that are no UUIDv7 (made up, or from
    /// elsewhere) are not evidence; nor, once an operator confirmed, those made before.
    pub async fn leases_newer_than_the_store(&self) -> Result<Vec<LeaseId>, StoreError> {
        self.read(|c| {
            let newest: Option<String> = c
                .prepare_cached("SELECT max(id) FROM leases")?
                .query_row([], |r| r.get(0))?;
            let confirmed: Option<i64> = c
                .prepare_cached("SELECT confirmed_at FROM restore_guard WHERE id = 1")?
                .query_row([], |r| r.get(0))
                .optional()?
                .flatten();
            let horizon = newest
                .as_deref()
                .and_then(LeaseId::parse_loose)
                .and_then(LeaseId::created_at)
                .max(confirmed.map(time));
            let mut stmt = c.prepare_cached(
                "SELECT DISTINCT lease_id FROM findings
                 WHERE resolved_at IS NULL AND verdict = 'unknown-lease' AND lease_id IS NOT NULL",
            )?;
            let ids = stmt.query_map([], |r| r.get::<_, String>(0))?;
            let mut out = Vec::new();
            for id in ids {
                let Some(id) = LeaseId::parse_loose(&id?) else {
                    continue;
                };
                // A store that never issued a lease has nothing to compare with (a new
                // install seeing made-up or foreign ids); only a restore marks it.
                let newer = matches!((id.created_at(), horizon), (Some(t), Some(h)) if t > h);
                if newer {
                    out.push(id);
                }
            }
            Ok(out)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeDelta, TimeZone};

    use super::*;

    /// Evidence suspends (the first reason and time stay) and restarts the count; clean
    /// passes lift the suspension only at the number asked; an operator's confirmation ends
    /// it at once; a backup is a store that opens with the same leases.
    #[tokio::test]
    async fn the_guard_suspends_counts_clean_passes_and_ends_on_confirmation() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("s.db")).await.expect("opens");
        let t0 = Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .expect("time");
        let at = |m: i64| t0 + TimeDelta::minutes(m);
        assert_eq!(store.suspension().await.expect("store"), None);
        // Clean passes with nothing suspended change nothing.
        let none = store
            .record_restore_evidence(None, 2, at(0))
            .await
            .expect("store");
        assert_eq!(none, None);
        store
            .suspend_reaping("restored".into(), at(1))
            .await
            .expect("store");
        assert_eq!(
            store.suspension().await.expect("store").map(|s| s.reason),
            Some("restored".into())
        );
        let s = |clean| {
            Some(Suspension {
                since: at(1),
                reason: "restored".into(),
                clean_passes: clean,
            })
        };
        let got = store.record_restore_evidence(None, 2, at(2)).await;
        assert_eq!(got.expect("store"), s(1));
        // Evidence keeps the first reason and time, and counts from zero again.
        let got = store
            .record_restore_evidence(Some("newer leases".into()), 2, at(3))
            .await;
        assert_eq!(got.expect("store"), s(0));
        let got = store.record_restore_evidence(None, 2, at(4)).await;
        assert_eq!(got.expect("store"), s(1));
        let got = store.record_restore_evidence(None, 2, at(5)).await;
        assert_eq!(got.expect("store"), None, "lifted at the second clean pass");

        store
            .suspend_reaping("again".into(), at(6))
            .await
            .expect("store");
        let ended = store.confirm_restore("alice".into(), at(7)).await;
        assert_eq!(
            ended.expect("store").map(|s| s.reason),
            Some("again".into())
        );
        assert_eq!(store.suspension().await.expect("store"), None);
        assert_eq!(
            store
                .confirm_restore("alice".into(), at(8))
                .await
                .expect("store"),
            None
        );

        store.set_last_alive(at(9)).await.expect("store");
        assert_eq!(store.last_alive().await.expect("store"), Some(at(9)));
        let copy = dir.path().join("backup.db");
        store.backup_to(copy.clone()).await.expect("backup");
        let restored = Store::open(&copy).await.expect("the backup opens");
        assert_eq!(restored.last_alive().await.expect("store"), Some(at(9)));
        assert!(store.backup_to(copy).await.is_err(), "never over a file");
    }

    /// Evidence is an open unknown-lease finding naming a UUIDv7 newer than every lease the
    /// store issued and than the last confirmation; older ids, ids of no UUIDv7, resolved
    /// findings and a store that issued nothing are not.
    #[tokio::test]
    async fn leases_newer_than_the_store_are_evidence() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("s.db")).await.expect("opens");
        // Ids made at known times: the first 48 bits of a UUIDv7 are its milliseconds.
        let id_at = |ms: u64| {
            format!(
                "{:08x}-{:04x}-7000-8000-000000000001",
                ms >> 16,
                ms & 0xffff
            )
        };
        let t = 1_750_000_000_000_u64;
        let (issued, older, newer, v4) = (
            id_at(t),
            id_at(t - 1000),
            id_at(t + 1000),
            "0b6a7c35-2f3f-4a8e-9d6a-1c2b3d4e5f60".to_owned(),
        );
        let rows = [
            (&older, false),
            (&newer, false),
            (&v4, false),
            (&newer, true),
        ];
        let sql_rows = rows.map(|(id, resolved)| (id.clone(), resolved));
        store
            .writer()
            .expect("sqlite")
            .write(move |c| {
                for (i, (lease, resolved)) in sql_rows.iter().enumerate() {
                    let arn = format!("arn:aws:sqs:us-east-1:1:q{i}");
                    c.execute(
                        "INSERT INTO resources (arn, account, region, resource_type, tags, first_seen,
                             last_seen, verdict, reason, action, grace_s, last_run)
                         VALUES (?1, '1', 'us-east-1', 'sqs:queue', '', 0, 0, 'unknown-lease',
                             'r', 'reap', 0, 'run')",
                        [&arn],
                    )?;
                    c.execute(
                        "INSERT INTO findings (arn, verdict, action, reason, lease_id, account,
                             region, resource_type, opened_at, updated_at, resolved_at)
                         VALUES (?1, 'unknown-lease', 'reap', 'r', ?2, '1', 'us-east-1',
                             'sqs:queue', 0, 0, ?3)",
                        rusqlite::params![arn, lease, resolved.then_some(1)],
                    )?;
                }
                Ok::<_, StoreError>(())
            })
            .await
            .expect("rows");
        assert!(
            store
                .leases_newer_than_the_store()
                .await
                .expect("store")
                .is_empty(),
            "a store that issued no lease has nothing to compare with"
        );
        let lease = issued.clone();
        store
            .writer()
            .expect("sqlite")
            .write(move |c| {
                c.execute(
                    "INSERT INTO leases (id, project, task, owner, principal, created_at,
                         expires_at, ends_at) VALUES (?1, 'web', 't', 'o', 'p', 0, 0, 0)",
                    [&lease],
                )?;
                Ok::<_, StoreError>(())
            })
            .await
            .expect("lease");
        let got = store.leases_newer_than_the_store().await.expect("store");
        assert_eq!(got, vec![LeaseId::parse_loose(&newer).expect("id")]);
        // Confirmed after that lease was made: no longer evidence.
        let after = DateTime::from_timestamp_millis((t + 2000) as i64).expect("time");
        store
            .confirm_restore("op".into(), after)
            .await
            .expect("store");
        assert!(
            store
                .leases_newer_than_the_store()
                .await
                .expect("store")
                .is_empty()
        );
    }
}
