//! Spend per day on PostgreSQL, in integer micro-dollars (`SUM` cast back to `BIGINT`: a sum
//! of `BIGINT` is `NUMERIC` there).

use std::collections::BTreeSet;

use chrono::{DateTime, NaiveDate, Utc};

use super::Pg;
use crate::model::{DaySpend, MicroUsd};
use crate::store::{SpendTotal, StoreError};

fn day(s: &str) -> Result<NaiveDate, StoreError> {
    s.parse()
        .map_err(|_| StoreError::Corrupt(format!("bad day `{s}`")))
}

impl Pg {
    pub(in crate::store) async fn final_spend_days(
        &self,
        dimension: &'static str,
    ) -> Result<BTreeSet<NaiveDate>, StoreError> {
        let mut c = self.conn().await?;
        let rows = c
            .query(
                "SELECT day FROM spend_days WHERE dimension = $1 AND final = 1",
                &[&dimension],
            )
            .await?;
        rows.iter().map(|r| day(r.try_get(0)?)).collect()
    }

    pub(in crate::store) async fn save_spend(
        &self,
        dimension: &'static str,
        days: &[(NaiveDate, bool)],
        rows: &[DaySpend],
        final_before: NaiveDate,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        let mut tx = c.begin().await?;
        // SQLite's single writer kept two refreshes of one dimension apart; here its advisory
        // lock does (two interleaved delete-then-add runs would add a day's rows twice).
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            &[&format!("spend/{dimension}")],
        )
        .await?;
        for (d, estimated) in days {
            tx.execute(
                "DELETE FROM spend WHERE dimension = $1 AND day = $2",
                &[&dimension, &d.to_string()],
            )
            .await?;
            tx.execute(
                "INSERT INTO spend_days (dimension, day, estimated, final, fetched_at)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (dimension, day) DO UPDATE SET estimated = excluded.estimated,
                     final = excluded.final, fetched_at = excluded.fetched_at",
                &[
                    &dimension,
                    &d.to_string(),
                    &i64::from(*estimated),
                    &i64::from(d.to_string() < final_before.to_string()),
                    &at.timestamp_millis(),
                ],
            )
            .await?;
        }
        for r in rows {
            tx.execute(
                "INSERT INTO spend (dimension, day, key, region, micro_usd) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (dimension, day, key, region)
                     DO UPDATE SET micro_usd = spend.micro_usd + excluded.micro_usd",
                &[
                    &dimension,
                    &r.day.to_string(),
                    &r.key,
                    &r.region,
                    &r.micro_usd,
                ],
            )
            .await?;
        }
        tx.commit().await
    }

    pub(in crate::store) async fn spend_totals(
        &self,
        dimension: &'static str,
        since: NaiveDate,
    ) -> Result<Vec<SpendTotal>, StoreError> {
        let mut c = self.conn().await?;
        let rows = c
            .query(
                "SELECT s.key, s.region, SUM(s.micro_usd)::BIGINT,
                        MAX(COALESCE(d.estimated, 0))
                 FROM spend s LEFT JOIN spend_days d ON d.dimension = s.dimension AND d.day = s.day
                 WHERE s.dimension = $1 AND s.day >= $2
                 GROUP BY s.key, s.region ORDER BY s.key, s.region",
                &[&dimension, &since.to_string()],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(SpendTotal {
                    key: r.try_get(0)?,
                    region: r.try_get(1)?,
                    micro_usd: r.try_get(2)?,
                    estimated: r.try_get::<_, i64>(3)? != 0,
                })
            })
            .collect()
    }

    pub(in crate::store) async fn spend_by_day(
        &self,
        dimension: &'static str,
        since: NaiveDate,
    ) -> Result<Vec<(NaiveDate, String, MicroUsd)>, StoreError> {
        let mut c = self.conn().await?;
        let rows = c
            .query(
                "SELECT day, key, SUM(micro_usd)::BIGINT FROM spend
                 WHERE dimension = $1 AND day >= $2 GROUP BY day, key ORDER BY day, key",
                &[&dimension, &since.to_string()],
            )
            .await?;
        rows.iter()
            .map(|r| Ok((day(r.try_get(0)?)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
    }
}
