//! A lease's timeline on PostgreSQL (see `store::timeline`): the same statements, in one
//! read-only transaction at repeatable read, so every statement sees one snapshot.

use chrono::{DateTime, Utc};

use super::Pg;
use super::leases::lease_of;
use crate::model::{LeaseId, TimelineEntry};
use crate::store::timeline::{
    AUDIT, EVENTS, FINDINGS, NOTICES, RESOURCES, Rows, SPEND, assemble, first_day,
};
use crate::store::{StoreError, from_ms, lease_columns};

impl Pg {
    pub(in crate::store) async fn lease_timeline(
        &self,
        id: LeaseId,
        now: DateTime<Utc>,
    ) -> Result<Option<Vec<TimelineEntry>>, StoreError> {
        let mut c = self.conn().await?;
        let mut tx = c.begin().await?;
        tx.batch_execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await?;
        let key = id.to_string();
        let Some(row) = tx
            .query_opt(
                concat!(
                    "SELECT ",
                    lease_columns!(),
                    ", teardown_complete_at FROM leases WHERE id = $1"
                ),
                &[&key],
            )
            .await?
        else {
            return Ok(None);
        };
        let lease = lease_of(&row)?;
        let teardown = row
            .try_get::<_, Option<i64>>(12)?
            .map(from_ms)
            .transpose()?;
        let mut rows = Rows::default();
        for r in tx.query(EVENTS, &[&key]).await? {
            rows.events
                .push((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?));
        }
        for r in tx.query(RESOURCES, &[&key]).await? {
            rows.resources.push((
                r.try_get(0)?,
                r.try_get(1)?,
                r.try_get(2)?,
                r.try_get(3)?,
                r.try_get(4)?,
                r.try_get(5)?,
            ));
        }
        for r in tx.query(FINDINGS, &[&key]).await? {
            rows.findings.push((
                r.try_get(0)?,
                r.try_get(1)?,
                r.try_get(2)?,
                r.try_get(3)?,
                r.try_get(4)?,
                r.try_get(5)?,
                r.try_get(6)?,
            ));
        }
        for r in tx.query(NOTICES, &[&key]).await? {
            rows.notices.push((
                r.try_get(0)?,
                r.try_get(1)?,
                r.try_get(2)?,
                r.try_get(3)?,
                r.try_get(4)?,
            ));
        }
        for r in tx.query(AUDIT, &[&key]).await? {
            rows.audit.push((
                r.try_get(0)?,
                r.try_get(1)?,
                r.try_get(2)?,
                r.try_get(3)?,
                r.try_get(4)?,
            ));
        }
        let r = tx
            .query_one(SPEND, &[&first_day(&lease), &lease.task])
            .await?;
        rows.spend = r
            .try_get::<_, Option<i64>>(0)?
            .map(|usd| {
                Ok::<_, StoreError>((
                    usd,
                    r.try_get::<_, Option<i64>>(1)?.unwrap_or(0) != 0,
                    r.try_get(2)?,
                ))
            })
            .transpose()?;
        tx.commit().await?;
        Ok(Some(assemble(&lease, teardown, rows, now)?))
    }
}
