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
        if let Some(pg) = self.pg() {
            return pg.settle_teardowns(pass_started, at).await;
        }
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
        if let Some(pg) = self.pg() {
            return pg.teardown_complete_at(id).await;
        }
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
        if let Some(pg) = self.pg() {
            return pg.leases_ended_since(since, now).await;
        }
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

#[cfg(test)]
mod tests {
    use crate::store::Quota;
    use chrono::{TimeDelta, TimeZone};

    use super::*;
    use crate::model::{Lease, ProjectName};

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0)
            .single()
            .expect("time")
    }

    fn lease(expires: DateTime<Utc>, released: Option<DateTime<Utc>>) -> Lease {
        Lease {
            id: LeaseId::generate(),
            project: ProjectName::parse("web").expect("name"),
            task: "t".into(),
            owner: "o@example.com".into(),
            principal: "ci".into(),
            created_at: t0() - TimeDelta::hours(1),
            expires_at: expires,
            heartbeat_interval: None,
            last_heartbeat_at: None,
            released_at: released,
            labels: Default::default(),
            regions: vec![],
        }
    }

    /// A lease is torn down by a pass that started after it ended and after each of its
    /// resources was gone; one with a resource still live, or gone after the pass started,
    /// waits; one not ended yet waits.
    #[tokio::test]
    async fn a_pass_after_the_end_settles_teardowns() {
        let dir = tempfile::tempdir().expect("temp dir");
        for (engine, store) in Store::open_both_for_test(dir.path()).await {
            println!("{engine}");
            settles_on(store).await;
        }
    }

    async fn settles_on(store: Store) {
        let t = t0();
        let m = TimeDelta::minutes;
        let clean = lease(t + m(60), Some(t));
        let gone_before = lease(t, None);
        let live = lease(t, None);
        let gone_late = lease(t, None);
        let running = lease(t + m(60), None);
        for l in [&clean, &gone_before, &live, &gone_late, &running] {
            store
                .insert_lease(l.clone(), l.created_at, Quota::<StoreError>::unlimited())
                .await
                .expect("inserts");
        }
        let pass = t + m(10);
        let mut rows = String::new();
        for (i, (l, gone)) in [
            (&gone_before, Some(t + m(5))),
            (&live, None),
            (&gone_late, Some(t + m(11))),
        ]
        .into_iter()
        .enumerate()
        {
            rows.push_str(&format!(
                "INSERT INTO resources (arn, account, region, resource_type, tags, first_seen,
                                        last_seen, verdict, reason, action, grace_s, last_run,
                                        lease_id, gone_at)
                 VALUES ('arn:aws:ec2:us-east-1:123456789012:volume/vol-{i}', '123456789012',
                         'us-east-1', 'ec2:volume', '', 0, 0, 'expired', 'x', 'reap', 0, 'run-1',
                         '{}', {});",
                l.id,
                gone.map_or("NULL".to_owned(), |g| ms(g).to_string())
            ));
        }
        store.execute_batch_for_test(&rows).await;

        let at = t + m(20);
        assert_eq!(store.settle_teardowns(pass, at).await.expect("settles"), 2);
        for (l, want) in [
            (&clean, Some(at)),
            (&gone_before, Some(at)),
            (&live, None),
            (&gone_late, None),
            (&running, None),
        ] {
            assert_eq!(
                store.teardown_complete_at(l.id).await.expect("reads"),
                want,
                "{l:?}"
            );
        }
        assert_eq!(
            store.settle_teardowns(pass, at).await.expect("settles"),
            0,
            "once"
        );
        assert_eq!(
            store
                .teardown_complete_at(LeaseId::generate())
                .await
                .expect("reads"),
            None
        );

        let mut ended = store
            .leases_ended_since(t - m(1), t + m(30))
            .await
            .expect("reads");
        ended.sort_by_key(|e| (e.ended_at, !e.torn_down));
        let got: Vec<_> = ended.iter().map(|e| (e.ended_at, e.torn_down)).collect();
        assert_eq!(
            got,
            [(t, true), (t, true), (t, false), (t, false)],
            "the running lease has not ended"
        );
    }
}
