//! Teardown proof: an ended lease is torn down once a pass whose every walk was complete,
//! started after the lease ended and after each of its resources was last known gone, saw
//! none of them.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError, from_ms, ms};
use crate::model::LeaseId;

/// One ended lease, for the teardown ratio: its project, when it ended, whether its
/// teardown is complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndedLease {
    pub project: String,
    pub ended_at: DateTime<Utc>,
    pub torn_down: bool,
}

impl Store {
    /// Records teardown complete at `at` for every ended lease none of whose resources is
    /// live, where the confirming pass (all walks complete) started at `pass_started`: the
    /// lease must have ended, and each resource gone, before that, so that the pass's walks
    /// are what confirmed them absent (a resource they list again is live once more). A lease
    /// that left nothing behind is torn down by the first such pass after its end.
    pub async fn settle_teardowns(
        &self,
        pass_started: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        self.writer()?
            .write(move |c| {
                let n = c
                    .prepare_cached(
                        "UPDATE leases SET teardown_complete_at = ?2
                         WHERE teardown_complete_at IS NULL
                           AND MIN(COALESCE(released_at, ends_at), ends_at) <= ?1
                           AND id NOT IN (
                               SELECT lease_id FROM resources
                               WHERE lease_id IS NOT NULL
                                 AND (gone_at IS NULL OR gone_at > ?1))",
                    )?
                    .execute(params![ms(pass_started), ms(at)])?;
                Ok(n as u64)
            })
            .await
    }

    /// When lease `id`'s teardown was proven complete, if it was.
    pub async fn teardown_complete_at(
        &self,
        id: LeaseId,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.read(move |c| {
            let v: Option<Option<i64>> = c
                .prepare_cached("SELECT teardown_complete_at FROM leases WHERE id = ?1")?
                .query_row([id.to_string()], |r| r.get(0))
                .optional()?;
            v.flatten()
                .map(from_ms)
                .transpose()
                .map_err(StoreError::from)
        })
        .await
    }

    /// Leases that ended at or after `since` (and by now), for the teardown ratio.
    pub async fn leases_ended_since(
        &self,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<EndedLease>, StoreError> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT project, MIN(COALESCE(released_at, ends_at), ends_at) AS ended,
                        teardown_complete_at IS NOT NULL
                 FROM leases WHERE ended >= ?1 AND ended <= ?2",
            )?;
            let rows = stmt
                .query_map(params![ms(since), ms(now)], |r| {
                    Ok(EndedLease {
                        project: r.get(0)?,
                        ended_at: from_ms(r.get(1)?)?,
                        torn_down: r.get(2)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }
}
