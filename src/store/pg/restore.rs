//! The restore guard on PostgreSQL, and the registry's last sign of life. A backup of a
//! PostgreSQL store is the database's own (`pg_dump`), not a file ephemera copies.

use chrono::{DateTime, Utc};
use tokio_postgres::Row;

use super::{Pg, Tx};
use crate::model::LeaseId;
use crate::store::restore::{NAMED_UNKNOWN, newer_than_the_store, time};
use crate::store::{StoreError, Suspension, ms};

/// Every write of the guard takes this lock first: a confirmation reads the suspension it
/// ends and evidence counts clean passes, each a read-check-write of the one guard row (which
/// may not exist yet, so there is no row to lock).
async fn lock_guard(tx: &mut Tx<'_>) -> Result<(), StoreError> {
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('restore-guard', 0))",
        &[],
    )
    .await?;
    Ok(())
}

const SUSPENSION: &str = "SELECT suspended_since, reason, clean_passes FROM restore_guard
     WHERE id = 1 AND suspended_since IS NOT NULL";

fn suspension_of(r: &Row) -> Result<Suspension, StoreError> {
    let clean: i64 = r.try_get(2)?;
    Ok(Suspension {
        since: time(r.try_get(0)?),
        reason: r.try_get(1)?,
        clean_passes: u32::try_from(clean)
            .map_err(|_| StoreError::Corrupt(format!("restore guard: clean_passes {clean}")))?,
    })
}

async fn read_suspension(tx: &mut Tx<'_>) -> Result<Option<Suspension>, StoreError> {
    tx.query_opt(SUSPENSION, &[])
        .await?
        .as_ref()
        .map(suspension_of)
        .transpose()
}

async fn suspend(tx: &mut Tx<'_>, reason: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
    // The first suspension's time and reason stay; fresh evidence only restarts the count.
    tx.execute(
        "INSERT INTO restore_guard (id, suspended_since, reason, clean_passes)
         VALUES (1, $1, $2, 0)
         ON CONFLICT (id) DO UPDATE SET
             suspended_since = COALESCE(restore_guard.suspended_since, excluded.suspended_since),
             reason = CASE WHEN restore_guard.suspended_since IS NULL THEN excluded.reason
                           ELSE restore_guard.reason END,
             clean_passes = 0",
        &[&ms(now), &reason],
    )
    .await?;
    Ok(())
}

impl Pg {
    pub(in crate::store) async fn last_alive(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let mut c = self.conn().await?;
        let row = c
            .query_opt("SELECT at FROM registry_alive WHERE id = 1", &[])
            .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?.map(time))
    }

    pub(in crate::store) async fn set_last_alive(
        &self,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        c.execute(
            "INSERT INTO registry_alive (id, at) VALUES (1, $1)
             ON CONFLICT (id) DO UPDATE SET at = excluded.at",
            &[&ms(at)],
        )
        .await?;
        Ok(())
    }

    pub(in crate::store) async fn suspension(&self) -> Result<Option<Suspension>, StoreError> {
        let mut c = self.conn().await?;
        c.query_opt(SUSPENSION, &[])
            .await?
            .as_ref()
            .map(suspension_of)
            .transpose()
    }

    pub(in crate::store) async fn suspend_reaping(
        &self,
        reason: String,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        let mut tx = c.begin().await?;
        lock_guard(&mut tx).await?;
        suspend(&mut tx, &reason, now).await?;
        tx.commit().await
    }

    pub(in crate::store) async fn confirm_restore(
        &self,
        by: String,
        now: DateTime<Utc>,
    ) -> Result<Option<Suspension>, StoreError> {
        let mut c = self.conn().await?;
        let mut tx = c.begin().await?;
        lock_guard(&mut tx).await?;
        let ended = read_suspension(&mut tx).await?;
        tx.execute(
            "INSERT INTO restore_guard (id, confirmed_at, confirmed_by) VALUES (1, $1, $2)
             ON CONFLICT (id) DO UPDATE SET suspended_since = NULL, reason = NULL,
                 clean_passes = 0, confirmed_at = $1, confirmed_by = $2",
            &[&ms(now), &by],
        )
        .await?;
        tx.commit().await?;
        Ok(ended)
    }

    pub(in crate::store) async fn record_restore_evidence(
        &self,
        evidence: Option<String>,
        clean_needed: u32,
        now: DateTime<Utc>,
    ) -> Result<Option<Suspension>, StoreError> {
        let mut c = self.conn().await?;
        let mut tx = c.begin().await?;
        lock_guard(&mut tx).await?;
        if let Some(why) = evidence {
            suspend(&mut tx, &why, now).await?;
        } else {
            tx.execute(
                "UPDATE restore_guard SET clean_passes = clean_passes + 1
                 WHERE id = 1 AND suspended_since IS NOT NULL",
                &[],
            )
            .await?;
            // Lifted without an operator: nothing is acknowledged (no horizon moves).
            tx.execute(
                "UPDATE restore_guard SET suspended_since = NULL, reason = NULL,
                     clean_passes = 0, confirmed_by = 'clean passes'
                 WHERE id = 1 AND suspended_since IS NOT NULL AND clean_passes >= $1",
                &[&i64::from(clean_needed)],
            )
            .await?;
        }
        let still = read_suspension(&mut tx).await?;
        tx.commit().await?;
        Ok(still)
    }

    pub(in crate::store) async fn leases_newer_than_the_store(
        &self,
    ) -> Result<Vec<LeaseId>, StoreError> {
        let mut c = self.conn().await?;
        let newest: Option<String> = c
            .query_one("SELECT max(id) FROM leases", &[])
            .await?
            .try_get(0)?;
        let confirmed: Option<i64> = c
            .query_opt("SELECT confirmed_at FROM restore_guard WHERE id = 1", &[])
            .await?
            .map(|r| r.try_get(0))
            .transpose()?
            .flatten();
        let named = c
            .query(NAMED_UNKNOWN, &[])
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<Vec<String>, _>>()?;
        Ok(newer_than_the_store(newest.as_deref(), confirmed, named))
    }
}
