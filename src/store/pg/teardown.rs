//! Teardown proof on PostgreSQL (see `store::teardown`): one statement each, so nothing to
//! lock beyond the rows the `UPDATE` takes.

use chrono::{DateTime, Utc};

use super::Pg;
use crate::model::LeaseId;
use crate::store::teardown::EndedLease;
use crate::store::{StoreError, from_ms, ms};

impl Pg {
    pub(in crate::store) async fn settle_teardowns(
        &self,
        pass_started: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut c = self.conn().await?;
        // The ended leases first, then one scan of resources hashing only those: written as
        // `id NOT IN (SELECT lease_id FROM resources …)`, PostgreSQL materialises the
        // subquery when its hash would not fit in `work_mem` and walks it again for every
        // ended lease (15 s for 10,000 ended leases over 1M resources, against 0.8 s so).
        c.execute(
            "WITH ended AS MATERIALIZED (
                 SELECT id FROM leases
                 WHERE teardown_complete_at IS NULL
                   AND LEAST(COALESCE(released_at, ends_at), ends_at) <= $1
             ), kept AS (
                 SELECT DISTINCT r.lease_id FROM resources r JOIN ended e ON e.id = r.lease_id
                 WHERE r.gone_at IS NULL OR r.gone_at > $1
             )
             UPDATE leases l SET teardown_complete_at = $2
             FROM ended e
             WHERE l.id = e.id AND l.teardown_complete_at IS NULL
               AND NOT EXISTS (SELECT 1 FROM kept k WHERE k.lease_id = e.id)",
            &[&ms(pass_started), &ms(at)],
        )
        .await
    }

    pub(in crate::store) async fn teardown_complete_at(
        &self,
        id: LeaseId,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let mut c = self.conn().await?;
        let row = c
            .query_opt(
                "SELECT teardown_complete_at FROM leases WHERE id = $1",
                &[&id.to_string()],
            )
            .await?;
        let v: Option<i64> = match row {
            Some(r) => r.try_get(0)?,
            None => None,
        };
        Ok(v.map(from_ms).transpose()?)
    }

    pub(in crate::store) async fn leases_ended_since(
        &self,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<EndedLease>, StoreError> {
        let mut c = self.conn().await?;
        let rows = c
            .query(
                "SELECT project, ended, torn_down FROM (
                     SELECT project, LEAST(COALESCE(released_at, ends_at), ends_at) AS ended,
                            teardown_complete_at IS NOT NULL AS torn_down
                     FROM leases) l
                 WHERE ended >= $1 AND ended <= $2",
                &[&ms(since), &ms(now)],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(EndedLease {
                    project: r.try_get(0)?,
                    ended_at: from_ms(r.try_get(1)?)?,
                    torn_down: r.try_get(2)?,
                })
            })
            .collect()
    }
}
