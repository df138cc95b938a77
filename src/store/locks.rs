//! Locks that live in the store: whatever deletes (a pass's act step, on-call reaping) holds
//! one, in any process, so two processes of ours on one store never act at once.
//!
//! Architecture Invariant: lock times are wall-clock times (passed in by the caller from the
//! system clock, never a test's manual clock): a lock is about real processes and real time.

use chrono::{DateTime, TimeDelta, Utc};
use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError, from_ms, ms};

/// The lock held by a pass (the whole of it: walks, findings and the act step) and by
/// on-call reaping.
pub const ACT_LOCK: &str = "act";

/// Who holds (or wants) a lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockHolder {
    /// Unique per claim (a UUID).
    pub id: String,
    pub host: String,
    pub pid: u32,
    /// What it does, for the message of whoever is refused: `scan run 0194…`, `reap by oncall`.
    pub what: String,
}

impl LockHolder {
    /// A holder in this process, doing `what`.
    pub fn here(what: impl Into<String>) -> Self {
        LockHolder {
            id: uuid::Uuid::now_v7().to_string(),
            host: this_host(),
            pid: std::process::id(),
            what: what.into(),
        }
    }
}

/// A lock someone else holds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} (process {pid} on {host}, since {since}) holds the `{name}` lock")]
pub struct HeldBy {
    pub name: String,
    pub what: String,
    pub host: String,
    pub pid: u32,
    pub since: DateTime<Utc>,
}

fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

/// Whether a process of this host is known to be gone. Only where `/proc` shows processes
/// (Linux); elsewhere nothing is known and the lock's expiry decides.
pub(super) fn dead_here(host: &str, pid: u32) -> bool {
    host == this_host()
        && std::path::Path::new("/proc/self").exists()
        && !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

impl Store {
    /// Takes lock `name` for `holder` until `now + ttl`, unless another holder has it: it is
    /// free, expired, or held by a process of this host that is gone (killed). Returns who
    /// holds it otherwise.
    pub async fn try_lock(
        &self,
        name: &'static str,
        holder: LockHolder,
        now: DateTime<Utc>,
        ttl: TimeDelta,
    ) -> Result<Result<(), HeldBy>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.try_lock(name, holder, now, ttl).await;
        }
        self.writer()?
            .write(move |c| {
                let current: Option<(String, String, u32, String, i64, i64)> = c
                    .prepare_cached(
                        "SELECT holder, host, pid, what, acquired_at, expires_at FROM locks WHERE name = ?1",
                    )?
                    .query_row([name], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
                    })
                    .optional()?;
                if let Some((id, host, pid, what, since, expires)) = current
                    && id != holder.id
                    && expires > ms(now)
                    && !dead_here(&host, pid)
                {
                    return Ok(Err(HeldBy {
                        name: name.to_owned(),
                        what,
                        host,
                        pid,
                        since: from_ms(since)?,
                    }));
                }
                c.prepare_cached(
                    "INSERT INTO locks (name, holder, host, pid, what, acquired_at, expires_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, host = excluded.host,
                         pid = excluded.pid, what = excluded.what, acquired_at = excluded.acquired_at,
                         expires_at = excluded.expires_at",
                )?
                .execute(params![
                    name,
                    holder.id,
                    holder.host,
                    holder.pid,
                    holder.what,
                    ms(now),
                    ms(now + ttl)
                ])?;
                Ok(Ok(()))
            })
            .await
    }

    /// Extends a held lock to `now + ttl`. False when `holder` no longer holds it (it expired
    /// and another took it): the caller must stop what the lock guards.
    pub async fn renew_lock(
        &self,
        name: &'static str,
        holder: String,
        now: DateTime<Utc>,
        ttl: TimeDelta,
    ) -> Result<bool, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.renew_lock(name, holder, now, ttl).await;
        }
        self.writer()?
            .write(move |c| {
                let n = c
                    .prepare_cached(
                        "UPDATE locks SET expires_at = ?3 WHERE name = ?1 AND holder = ?2",
                    )?
                    .execute(params![name, holder, ms(now + ttl)])?;
                Ok(n == 1)
            })
            .await
    }

    /// Lets go of a lock (a no-op when `holder` no longer holds it).
    pub async fn unlock(&self, name: &'static str, holder: String) -> Result<(), StoreError> {
        if let Some(pg) = self.pg() {
            return pg.unlock(name, holder).await;
        }
        self.writer()?
            .write(move |c| {
                c.prepare_cached("DELETE FROM locks WHERE name = ?1 AND holder = ?2")?
                    .execute(params![name, holder])?;
                Ok(())
            })
            .await
    }

    /// Closes the runs of `task` left `running` by a process that died: called by whoever has
    /// just taken the task's lock, so no other run of it can be in progress. Returns their ids.
    pub async fn close_interrupted_runs(
        &self,
        task: crate::model::TaskName,
        at: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.close_interrupted_runs(task, at).await;
        }
        self.writer()?
            .write(move |c| {
                let ids: Vec<String> = c
                    .prepare_cached("SELECT id FROM runs WHERE task = ?1 AND outcome IS NULL")?
                    .query_map([task], |r| r.get(0))?
                    .collect::<Result<_, _>>()?;
                c.prepare_cached(
                    "UPDATE runs SET outcome = ?3, ended_at = ?2
                     WHERE task = ?1 AND outcome IS NULL",
                )?
                .execute(params![
                    task,
                    ms(at),
                    crate::model::RunOutcome::Interrupted
                ])?;
                Ok(ids)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, SystemClock};

    #[tokio::test]
    async fn one_holder_at_a_time_and_the_dead_lose_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        for (engine, a, b) in Store::open_twice_for_test(dir.path()).await {
            eprintln!("{engine}");
            one_holder_at_a_time(a, b).await;
        }
    }

    async fn one_holder_at_a_time(a: Store, b: Store) {
        let now = SystemClock.now();
        let ttl = TimeDelta::seconds(60);
        let first = LockHolder::here("scan run 1");
        let second = LockHolder::here("scan run 2");
        assert_eq!(
            a.try_lock(ACT_LOCK, first.clone(), now, ttl)
                .await
                .expect("store"),
            Ok(())
        );
        let refused = b
            .try_lock(ACT_LOCK, second.clone(), now, ttl)
            .await
            .expect("store")
            .expect_err("held by the first");
        assert_eq!(refused.what, "scan run 1");
        assert_eq!(refused.pid, std::process::id());
        // The same holder may take it again (idempotent), and renew it.
        assert_eq!(
            a.try_lock(ACT_LOCK, first.clone(), now, ttl)
                .await
                .expect("store"),
            Ok(())
        );
        assert!(
            a.renew_lock(ACT_LOCK, first.id.clone(), now, ttl)
                .await
                .expect("store")
        );
        assert!(
            !b.renew_lock(ACT_LOCK, second.id.clone(), now, ttl)
                .await
                .expect("store")
        );
        // Expired: the next claimant takes it, and the first can no longer renew.
        let later = now + ttl + TimeDelta::seconds(1);
        assert_eq!(
            b.try_lock(ACT_LOCK, second.clone(), later, ttl)
                .await
                .expect("store"),
            Ok(())
        );
        assert!(
            !a.renew_lock(ACT_LOCK, first.id.clone(), later, ttl)
                .await
                .expect("store")
        );
        b.unlock(ACT_LOCK, second.id.clone()).await.expect("store");
        // A holder on this host whose process is gone loses it at once, unexpired.
        let dead = LockHolder {
            pid: u32::MAX - 1,
            ..LockHolder::here("killed scan")
        };
        assert_eq!(
            a.try_lock(ACT_LOCK, dead, now, ttl).await.expect("store"),
            Ok(())
        );
        assert_eq!(
            b.try_lock(ACT_LOCK, second.clone(), now, ttl)
                .await
                .expect("store"),
            Ok(())
        );
        // One on another host keeps it until it expires.
        let remote = LockHolder {
            host: "elsewhere".into(),
            pid: u32::MAX - 1,
            ..LockHolder::here("scan on another host")
        };
        b.unlock(ACT_LOCK, second.id.clone()).await.expect("store");
        assert_eq!(
            a.try_lock(ACT_LOCK, remote, now, ttl).await.expect("store"),
            Ok(())
        );
        assert!(
            b.try_lock(ACT_LOCK, second, now, ttl)
                .await
                .expect("store")
                .is_err()
        );
    }

    /// A delete starts only under the act lock: the note that it starts is refused to a
    /// holder whose lock has lapsed (another took over), and to anyone once it expired.
    #[tokio::test]
    async fn a_delete_is_fenced_on_the_lock() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("s.db")).await.expect("opens");
        store
            .writer()
            .expect("sqlite")
            .write(|c| {
                c.execute_batch(
                    "INSERT INTO resources (arn, account, region, resource_type, tags, first_seen,
                         last_seen, verdict, reason, action, grace_s, last_run)
                     VALUES ('arn:x', 'a', 'r', 'ec2:volume', '', 0, 0, 'expired', 'x', 'reap', 0, 'run');
                     INSERT INTO findings (id, arn, verdict, action, reason, account, region,
                         resource_type, opened_at, updated_at)
                     VALUES (7, 'arn:x', 'expired', 'reap', 'x', 'a', 'r', 'ec2:volume', 0, 0);",
                )?;
                Ok::<(), StoreError>(())
            })
            .await
            .expect("a finding");
        let now = SystemClock.now();
        let ttl = TimeDelta::seconds(60);
        let (first, second) = (LockHolder::here("pass 1"), LockHolder::here("pass 2"));
        store
            .try_lock(ACT_LOCK, first.clone(), now, ttl)
            .await
            .expect("store")
            .expect("free");
        assert!(
            store
                .record_deleting(7, Vec::new(), first.id.clone(), now)
                .await
                .expect("store")
        );
        assert!(
            !store
                .record_deleting(7, Vec::new(), second.id.clone(), now)
                .await
                .expect("store"),
            "not its lock"
        );
        // The first stalls past its expiry; the second takes over.
        let later = now + ttl + TimeDelta::seconds(1);
        assert!(
            !store
                .record_deleting(7, Vec::new(), first.id.clone(), later)
                .await
                .expect("store"),
            "lapsed"
        );
        store
            .try_lock(ACT_LOCK, second.clone(), later, ttl)
            .await
            .expect("store")
            .expect("lapsed lock");
        assert!(
            !store
                .record_deleting(7, Vec::new(), first.id.clone(), later)
                .await
                .expect("store"),
            "taken over"
        );
        assert!(
            store
                .record_deleting(7, Vec::new(), second.id.clone(), later)
                .await
                .expect("store")
        );
    }
}
