//! Leases on PostgreSQL: every read-check-write locks what it checks, so replicas racing for
//! one project's quota or one lease's release serialise on the database, not on a process.

use chrono::{DateTime, Utc};
use tokio_postgres::Row;

use super::{Pg, Tx};
use crate::model::{Lease, LeaseId, LeaseState};
use crate::store::{
    LEASE_COLUMNS, LeaseFilter, Page, RawLease, StoreError, lease_columns, ms, next_cursor,
};

impl RawLease {
    fn from_pg(r: &Row) -> Result<Self, StoreError> {
        Ok(RawLease {
            id: r.try_get(0)?,
            project: r.try_get(1)?,
            task: r.try_get(2)?,
            owner: r.try_get(3)?,
            principal: r.try_get(4)?,
            created_at: r.try_get(5)?,
            expires_at: r.try_get(6)?,
            heartbeat_interval_s: r.try_get(7)?,
            last_heartbeat_at: r.try_get(8)?,
            released_at: r.try_get(9)?,
            labels: r.try_get(10)?,
            regions: r.try_get(11)?,
        })
    }
}

pub(super) fn lease_of(r: &Row) -> Result<Lease, StoreError> {
    RawLease::from_pg(r)?.into_lease()
}

async fn write_lease(tx: &mut Tx<'_>, l: &Lease, insert: bool) -> Result<(), StoreError> {
    let labels =
        serde_json::to_string(&l.labels).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let regions =
        serde_json::to_string(&l.regions).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let sql = if insert {
        "INSERT INTO leases (id, project, task, owner, principal, created_at, expires_at,
            heartbeat_interval_s, last_heartbeat_at, released_at, labels, regions, ends_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
    } else {
        "UPDATE leases SET project = $2, task = $3, owner = $4, principal = $5, created_at = $6,
            expires_at = $7, heartbeat_interval_s = $8, last_heartbeat_at = $9, released_at = $10,
            labels = $11, regions = $12, ends_at = $13
         WHERE id = $1"
    };
    let heartbeat = l
        .heartbeat_interval
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    tx.execute(
        sql,
        &[
            &l.id.to_string(),
            &l.project.as_str(),
            &l.task,
            &l.owner,
            &l.principal,
            &l.created_at.timestamp_millis(),
            &l.expires_at.timestamp_millis(),
            &heartbeat,
            &l.last_heartbeat_at.map(|t| t.timestamp_millis()),
            &l.released_at.map(|t| t.timestamp_millis()),
            &labels,
            &regions,
            &l.ends_at().timestamp_millis(),
        ],
    )
    .await?;
    Ok(())
}

impl Pg {
    pub(in crate::store) async fn ping(&self) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        c.query_one("SELECT version FROM schema_version WHERE id = 1", &[])
            .await?;
        Ok(())
    }

    pub(in crate::store) async fn insert_lease_keyed<E>(
        &self,
        lease: Lease,
        key: Option<String>,
        now: DateTime<Utc>,
        quota: impl FnOnce(u64) -> Result<(), E>,
    ) -> Result<(Lease, bool), E>
    where
        E: From<StoreError>,
    {
        let mut c = self.conn().await?;
        let mut tx = c.begin().await?;
        // One acquire of a project at a time, across replicas: the count below and the insert
        // must see every lease granted before it (READ COMMITTED alone would let two replicas
        // count the same nine and both grant the tenth).
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            &[&format!("lease-quota/{}", lease.project.as_str())],
        )
        .await?;
        let now_ms = now.timestamp_millis();
        if let Some(k) = &key {
            let existing = tx
                .query_opt(
                    concat!(
                        "SELECT ",
                        lease_columns!(),
                        " FROM leases WHERE project = $1 AND idem_key = $2
                         AND released_at IS NULL AND ends_at > $3"
                    ),
                    &[&lease.project.as_str(), k, &now_ms],
                )
                .await?;
            if let Some(row) = existing {
                return Ok((lease_of(&row)?, true));
            }
        }
        let active: i64 = tx
            .query_one(
                "SELECT COUNT(*) FROM leases
                 WHERE project = $1 AND released_at IS NULL AND ends_at > $2",
                &[&lease.project.as_str(), &now_ms],
            )
            .await?
            .try_get(0)
            .map_err(StoreError::from)?;
        quota(u64::try_from(active).unwrap_or(0))?;
        write_lease(&mut tx, &lease, true).await?;
        if let Some(k) = &key {
            tx.execute(
                "UPDATE leases SET idem_key = $1 WHERE id = $2",
                &[k, &lease.id.to_string()],
            )
            .await?;
        }
        tx.commit().await?;
        Ok((lease, false))
    }

    pub(in crate::store) async fn update_lease<E>(
        &self,
        id: LeaseId,
        f: impl FnOnce(&mut Lease) -> Result<(), E>,
    ) -> Result<Option<Lease>, E>
    where
        E: From<StoreError>,
    {
        let mut c = self.conn().await?;
        let mut tx = c.begin().await?;
        // The row lock makes racing renewals and releases of one lease take turns: the second
        // reads what the first wrote (a released lease), and `f` refuses it.
        let row = tx
            .query_opt(
                concat!(
                    "SELECT ",
                    lease_columns!(),
                    " FROM leases WHERE id = $1 FOR UPDATE"
                ),
                &[&id.to_string()],
            )
            .await?;
        let Some(row) = row else { return Ok(None) };
        let mut lease = lease_of(&row)?;
        f(&mut lease)?;
        write_lease(&mut tx, &lease, false).await?;
        tx.commit().await?;
        Ok(Some(lease))
    }

    pub(in crate::store) async fn registry_serving(
        &self,
        wall_now: DateTime<Utc>,
        lease_now: DateTime<Utc>,
        credit: bool,
        min_gap: chrono::TimeDelta,
    ) -> Result<Option<(chrono::TimeDelta, u64)>, StoreError> {
        let mut c = self.conn().await?;
        let mut tx = c.begin().await?;
        // The row lock orders replicas: one credits a gap, the next sees the time it wrote.
        let last: Option<i64> = tx
            .query_opt("SELECT at FROM registry_alive WHERE id = 1 FOR UPDATE", &[])
            .await?
            .map(|r| r.try_get(0))
            .transpose()?;
        tx.execute(
            "INSERT INTO registry_alive (id, at) VALUES (1, $1)
             ON CONFLICT (id) DO UPDATE SET at = GREATEST(registry_alive.at, excluded.at)",
            &[&ms(wall_now)],
        )
        .await?;
        let Some(last) = last else {
            tx.commit().await?;
            return Ok(None);
        };
        let gap = chrono::TimeDelta::milliseconds(ms(wall_now) - last);
        if !credit || gap <= min_gap {
            tx.commit().await?;
            return Ok(None);
        }
        let g = gap.num_milliseconds();
        let n = tx
            .execute(
                "UPDATE leases SET
                     expires_at = expires_at + $1,
                     ends_at = ends_at + $1,
                     last_heartbeat_at = CASE WHEN heartbeat_interval_s IS NULL
                         THEN last_heartbeat_at
                         ELSE COALESCE(last_heartbeat_at, created_at) + $1 END
                 WHERE released_at IS NULL AND ends_at > $2",
                &[&g, &(ms(lease_now) - g)],
            )
            .await?;
        tx.commit().await?;
        Ok(Some((gap, n)))
    }

    pub(in crate::store) async fn get_lease(
        &self,
        id: LeaseId,
    ) -> Result<Option<Lease>, StoreError> {
        let mut c = self.conn().await?;
        c.query_opt(
            concat!("SELECT ", lease_columns!(), " FROM leases WHERE id = $1"),
            &[&id.to_string()],
        )
        .await?
        .map(|r| lease_of(&r))
        .transpose()
    }

    pub(in crate::store) async fn list_leases(
        &self,
        f: LeaseFilter,
        now: DateTime<Utc>,
    ) -> Result<Page<Lease>, StoreError> {
        use tokio_postgres::types::ToSql;
        let mut sql = format!("SELECT {LEASE_COLUMNS} FROM leases WHERE 1 = 1");
        let mut args: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
        let mut arg = |sql: &mut String, clause: &str, v: Box<dyn ToSql + Sync + Send>| {
            args.push(v);
            sql.push_str(&clause.replace('?', &format!("${}", args.len())));
        };
        if let Some(p) = &f.project {
            arg(
                &mut sql,
                " AND project = ?",
                Box::new(p.as_str().to_owned()),
            );
        }
        if let Some(ps) = &f.projects_in {
            let list: Vec<String> = ps.iter().map(|p| p.as_str().to_owned()).collect();
            arg(&mut sql, " AND project = ANY(?)", Box::new(list));
        }
        if let Some(o) = &f.owner {
            arg(&mut sql, " AND owner = ?", Box::new(o.clone()));
        }
        let now_ms = now.timestamp_millis();
        match f.state {
            Some(LeaseState::Released) => sql.push_str(" AND released_at IS NOT NULL"),
            Some(LeaseState::Active) => arg(
                &mut sql,
                " AND released_at IS NULL AND ends_at > ?",
                Box::new(now_ms),
            ),
            Some(LeaseState::Expired) => arg(
                &mut sql,
                " AND released_at IS NULL AND ends_at <= ?",
                Box::new(now_ms),
            ),
            None => {}
        }
        if let Some(b) = f.before {
            arg(&mut sql, " AND id < ?", Box::new(b.to_string()));
        }
        let limit = f.limit.clamp(1, 1000);
        arg(
            &mut sql,
            " ORDER BY id DESC LIMIT ?",
            Box::new(i64::from(limit + 1)),
        );
        let params: Vec<&(dyn ToSql + Sync)> = args
            .iter()
            .map(|b| b.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let mut c = self.conn().await?;
        let rows = c.query_dynamic(&sql, &params).await?;
        let mut items = rows.iter().map(lease_of).collect::<Result<Vec<_>, _>>()?;
        let next = next_cursor(&mut items, limit, |l| l.id);
        Ok(Page { items, next })
    }

    pub(in crate::store) async fn count_leases(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<(String, LeaseState, u64)>, StoreError> {
        let mut c = self.conn().await?;
        let rows = c
            .query(
                "SELECT project,
                        CASE WHEN released_at IS NOT NULL THEN 'released'
                             WHEN ends_at <= $1 THEN 'expired'
                             ELSE 'active' END AS state,
                        COUNT(*)
                 FROM leases GROUP BY project, state",
                &[&now.timestamp_millis()],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let project: String = r.try_get(0)?;
                let state: String = r.try_get(1)?;
                let n: i64 = r.try_get(2)?;
                let state =
                    LeaseState::parse(&state).ok_or_else(|| StoreError::Corrupt(state.clone()))?;
                Ok((project, state, u64::try_from(n).unwrap_or(0)))
            })
            .collect()
    }

    pub(in crate::store) async fn count_leases_ending_within(
        &self,
        now: DateTime<Utc>,
        windows: Vec<(String, chrono::TimeDelta)>,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let mut c = self.conn().await?;
        let mut out = Vec::with_capacity(windows.len());
        for (project, window) in windows {
            let until = (now + window).timestamp_millis();
            let n: i64 = c
                .query_one(
                    "SELECT COUNT(*) FROM leases
                     WHERE project = $1 AND released_at IS NULL AND ends_at > $2 AND ends_at <= $3",
                    &[&project, &now.timestamp_millis(), &until],
                )
                .await?
                .try_get(0)?;
            out.push((project, u64::try_from(n).unwrap_or(0)));
        }
        Ok(out)
    }
}
