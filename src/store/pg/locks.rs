//! The act lock on PostgreSQL: the leadership lease of a replicated deployment. Its holder id
//! is the fencing token: every write of the act step names it and checks, under a share lock
//! on the lock's row, that it still holds the lock (see `reap`).

use chrono::{DateTime, TimeDelta, Utc};

use super::Pg;
use crate::store::locks::dead_here;
use crate::store::{HeldBy, LockHolder, StoreError, from_ms, ms};

impl Pg {
    pub(in crate::store) async fn try_lock(
        &self,
        name: &'static str,
        holder: LockHolder,
        now: DateTime<Utc>,
        ttl: TimeDelta,
    ) -> Result<Result<(), HeldBy>, StoreError> {
        let mut c = self.conn().await?;
        let mut tx = c.begin().await?;
        // Takes the row (or, for a lock never held, the name) for this transaction, so two
        // replicas claiming at once take turns and the second sees the first's claim.
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            &[&format!("lock/{name}")],
        )
        .await?;
        let current = tx
            .query_opt(
                "SELECT holder, host, pid, what, acquired_at, expires_at FROM locks
                 WHERE name = $1 FOR UPDATE",
                &[&name],
            )
            .await?;
        if let Some(r) = current {
            let id: String = r.try_get(0)?;
            let host: String = r.try_get(1)?;
            let pid: i64 = r.try_get(2)?;
            let pid = u32::try_from(pid).unwrap_or(0);
            let expires: i64 = r.try_get(5)?;
            if id != holder.id && expires > ms(now) && !dead_here(&host, pid) {
                return Ok(Err(HeldBy {
                    name: name.to_owned(),
                    what: r.try_get(3)?,
                    host,
                    pid,
                    since: from_ms(r.try_get(4)?)?,
                }));
            }
        }
        tx.execute(
            "INSERT INTO locks (name, holder, host, pid, what, acquired_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, host = excluded.host,
                 pid = excluded.pid, what = excluded.what, acquired_at = excluded.acquired_at,
                 expires_at = excluded.expires_at",
            &[
                &name,
                &holder.id,
                &holder.host,
                &i64::from(holder.pid),
                &holder.what,
                &ms(now),
                &ms(now + ttl),
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(Ok(()))
    }

    pub(in crate::store) async fn renew_lock(
        &self,
        name: &'static str,
        holder: String,
        now: DateTime<Utc>,
        ttl: TimeDelta,
    ) -> Result<bool, StoreError> {
        let mut c = self.conn().await?;
        let n = c
            .execute(
                "UPDATE locks SET expires_at = $3 WHERE name = $1 AND holder = $2",
                &[&name, &holder, &ms(now + ttl)],
            )
            .await?;
        Ok(n == 1)
    }

    pub(in crate::store) async fn unlock(
        &self,
        name: &'static str,
        holder: String,
    ) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        c.execute(
            "DELETE FROM locks WHERE name = $1 AND holder = $2",
            &[&name, &holder],
        )
        .await?;
        Ok(())
    }

    pub(in crate::store) async fn close_interrupted_runs(
        &self,
        task: crate::model::TaskName,
        at: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError> {
        let mut c = self.conn().await?;
        let rows = c
            .query(
                "UPDATE runs SET outcome = $3, ended_at = $2
                 WHERE task = $1 AND outcome IS NULL RETURNING id",
                &[
                    &task.as_str(),
                    &ms(at),
                    &crate::model::RunOutcome::Interrupted.as_str(),
                ],
            )
            .await?;
        rows.iter()
            .map(|r| r.try_get(0).map_err(StoreError::from))
            .collect()
    }
}
