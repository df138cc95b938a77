//! Store calls of the cost task: spend per day, kept in integer micro-dollars.

use std::collections::BTreeSet;

use chrono::{DateTime, NaiveDate, Utc};
use rusqlite::params;

use super::{Store, StoreError};
use crate::model::{DaySpend, MicroUsd};

/// Spend of one key (tag value, or region) since a day, summed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpendTotal {
    pub key: String,
    pub region: String,
    pub micro_usd: MicroUsd,
    /// Whether any day in the sum was still an estimate.
    pub estimated: bool,
}

fn day(s: &str) -> rusqlite::Result<NaiveDate> {
    s.parse().map_err(|_| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            format!("bad day `{s}`").into(),
        )
    })
}

impl Store {
    /// The days of `dimension` stored as final (never fetched again).
    pub async fn final_spend_days(
        &self,
        dimension: &'static str,
    ) -> Result<BTreeSet<NaiveDate>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.final_spend_days(dimension).await;
        }
        self.read(move |c| {
            let mut stmt =
                c.prepare_cached("SELECT day FROM spend_days WHERE dimension = ?1 AND final = 1")?;
            let days = stmt
                .query_map([dimension], |r| day(&r.get::<_, String>(0)?))?
                .collect::<Result<BTreeSet<_>, _>>()?;
            Ok(days)
        })
        .await
    }

    /// Replaces what is stored for each day in `days` of `dimension` with `rows` (one
    /// transaction: a crash leaves the old figures, never half of the new ones); a day before
    /// `final_before` is stored as final.
    pub async fn save_spend(
        &self,
        dimension: &'static str,
        days: Vec<(NaiveDate, bool)>,
        rows: Vec<DaySpend>,
        final_before: NaiveDate,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if let Some(pg) = self.pg() {
            return pg
                .save_spend(dimension, &days, &rows, final_before, at)
                .await;
        }
        self.writer()?
            .write(move |c| {
                for (d, estimated) in &days {
                    let d = d.to_string();
                    c.prepare_cached("DELETE FROM spend WHERE dimension = ?1 AND day = ?2")?
                        .execute(params![dimension, d])?;
                    c.prepare_cached(
                        "INSERT INTO spend_days (dimension, day, estimated, final, fetched_at)
                         VALUES (?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT (dimension, day) DO UPDATE SET estimated = excluded.estimated,
                             final = excluded.final, fetched_at = excluded.fetched_at",
                    )?
                    .execute(params![
                        dimension,
                        d,
                        estimated,
                        d < final_before.to_string(),
                        at.timestamp_millis()
                    ])?;
                }
                let mut insert = c.prepare_cached(
                    "INSERT INTO spend (dimension, day, key, region, micro_usd) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (dimension, day, key, region) DO UPDATE SET micro_usd = micro_usd + excluded.micro_usd",
                )?;
                for r in &rows {
                    insert.execute(params![dimension, r.day.to_string(), r.key, r.region, r.micro_usd])?;
                }
                Ok(())
            })
            .await
    }

    /// Spend of `dimension` from `since` (inclusive), summed per (key, region).
    pub async fn spend_totals(
        &self,
        dimension: &'static str,
        since: NaiveDate,
    ) -> Result<Vec<SpendTotal>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.spend_totals(dimension, since).await;
        }
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT s.key, s.region, SUM(s.micro_usd),
                        MAX(COALESCE(d.estimated, 0))
                 FROM spend s LEFT JOIN spend_days d ON d.dimension = s.dimension AND d.day = s.day
                 WHERE s.dimension = ?1 AND s.day >= ?2
                 GROUP BY s.key, s.region ORDER BY s.key, s.region",
            )?;
            let rows = stmt
                .query_map(params![dimension, since.to_string()], |r| {
                    Ok(SpendTotal {
                        key: r.get(0)?,
                        region: r.get(1)?,
                        micro_usd: r.get(2)?,
                        estimated: r.get::<_, i64>(3)? != 0,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// Spend of `dimension` per (day, key) from `since`, regions summed.
    pub async fn spend_by_day(
        &self,
        dimension: &'static str,
        since: NaiveDate,
    ) -> Result<Vec<(NaiveDate, String, MicroUsd)>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.spend_by_day(dimension, since).await;
        }
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT day, key, SUM(micro_usd) FROM spend
                 WHERE dimension = ?1 AND day >= ?2 GROUP BY day, key ORDER BY day, key",
            )?;
            let rows = stmt
                .query_map(params![dimension, since.to_string()], |r| {
                    Ok((day(&r.get::<_, String>(0)?)?, r.get(1)?, r.get(2)?))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().expect("a day")
    }

    fn spend(day: &str, key: &str, region: &str, micro_usd: MicroUsd) -> DaySpend {
        DaySpend {
            day: d(day),
            key: key.into(),
            region: region.into(),
            micro_usd,
        }
    }

    /// A day saved again replaces what was stored for it; days before `final_before` become
    /// final; totals add regions and days up exactly, and say when a day was an estimate.
    #[tokio::test]
    async fn spend_is_replaced_per_day_and_summed_exactly() {
        let dir = tempfile::tempdir().expect("temp dir");
        for (engine, store) in Store::open_both_for_test(dir.path()).await {
            println!("{engine}");
            spend_on(store).await;
        }
    }

    async fn spend_on(store: Store) {
        let at = Utc
            .with_ymd_and_hms(2026, 3, 3, 6, 0, 0)
            .single()
            .expect("time");
        let days = |e: bool| vec![(d("2026-03-01"), false), (d("2026-03-02"), e)];
        store
            .save_spend(
                "task",
                days(true),
                vec![
                    spend("2026-03-01", "a", "us-east-1", 1),
                    spend("2026-03-02", "a", "us-east-1", 5_000_000_000_000),
                ],
                d("2026-03-02"),
                at,
            )
            .await
            .expect("saves");
        store
            .save_spend(
                "task",
                days(true),
                vec![
                    spend("2026-03-01", "a", "us-east-1", 1_000_000),
                    spend("2026-03-01", "a", "us-east-1", 500_000),
                    spend("2026-03-01", "a", "eu-west-1", 2),
                    spend("2026-03-02", "a", "us-east-1", 4_000_000_000_000),
                    spend("2026-03-02", "b", "us-east-1", 7),
                ],
                d("2026-03-02"),
                at,
            )
            .await
            .expect("saves again");
        assert_eq!(
            store.final_spend_days("task").await.expect("reads"),
            BTreeSet::from([d("2026-03-01")])
        );
        assert!(
            store
                .final_spend_days("region")
                .await
                .expect("reads")
                .is_empty()
        );
        let total = |key: &str, region: &str, micro_usd, estimated| SpendTotal {
            key: key.into(),
            region: region.into(),
            micro_usd,
            estimated,
        };
        assert_eq!(
            store
                .spend_totals("task", d("2026-03-01"))
                .await
                .expect("reads"),
            [
                total("a", "eu-west-1", 2, false),
                total("a", "us-east-1", 4_000_001_500_000, true),
                total("b", "us-east-1", 7, true),
            ]
        );
        assert_eq!(
            store
                .spend_totals("task", d("2026-03-02"))
                .await
                .expect("reads")
                .len(),
            2
        );
        assert_eq!(
            store
                .spend_by_day("task", d("2026-03-01"))
                .await
                .expect("reads"),
            [
                (d("2026-03-01"), "a".to_owned(), 1_500_002),
                (d("2026-03-02"), "a".to_owned(), 4_000_000_000_000),
                (d("2026-03-02"), "b".to_owned(), 7),
            ]
        );
    }
}
