//! Leases on PostgreSQL: replicas racing for one project's quota serialise on the project's
//! lock in the database, not on a process; a change of one lease (a release, a renewal) is
//! written only over the row version it was decided on, so of racing changes each decides on
//! what the one before it wrote.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use hashlink::LruCache;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::Pg;
use crate::model::{Lease, LeaseEvent, LeaseId, LeaseState};
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

/// A lease's row as [`lease_of`] reads it, with the version it was read at (`xmin`, the
/// transaction that wrote it: any later write of the row changes it).
const READ_LEASE_VERSION: &str = concat!(
    "SELECT ",
    lease_columns!(),
    ", xmin::text AS version FROM leases WHERE id = $1"
);

/// Writes a lease back over its row where `$cond` holds, with the change's events
/// (`lease_events`, one array per column, so any number of them, none too, at the parameters
/// `$events` names): the parameters of [`LeaseParams::refs`] first. One statement, its own
/// transaction; it answers 1 when written, 0 when the row had changed (or gone) and nothing
/// was. Under READ COMMITTED an `UPDATE` that meets a row another transaction is changing
/// waits for it and re-checks its condition on the row that transaction left.
macro_rules! write_lease {
    ($cond:literal, $events:literal) => {
        concat!(
            "WITH changed AS (
                UPDATE leases SET project = $2, task = $3, owner = $4, principal = $5,
                    created_at = $6, expires_at = $7, heartbeat_interval_s = $8,
                    last_heartbeat_at = $9, released_at = $10, labels = $11, regions = $12,
                    ends_at = $13
                WHERE id = $1 AND ",
            $cond,
            "
                RETURNING id
            ), recorded AS (
                INSERT INTO lease_events (lease_id, at, kind, principal, detail)
                SELECT changed.id, e.at, e.kind, e.principal, e.detail
                FROM changed, UNNEST(",
            $events,
            ") WITH ORDINALITY AS e (at, kind, principal, detail, n)
                ORDER BY e.n
            )
            SELECT COUNT(*) FROM changed"
        )
    };
}

/// [`write_lease!`] over the row version read (`$14`), events at `$15`–`$18`.
const WRITE_LEASE_IF_UNCHANGED: &str = write_lease!(
    "xmin::text = $14",
    "$15::BIGINT[], $16::TEXT[], $17::TEXT[], $18::TEXT[]"
);

/// [`write_lease!`] over a row that still holds what this process remembers writing (`$14`–
/// `$25`: the remembered lease's [`LeaseParams::refs`] but its id), events at `$26`–`$29`. The
/// row's content, not its version: a version (`xmin`, a transaction id) may be given again
/// after a failover to a standby that had not received the last transactions, or a restore,
/// while writing over a row that holds what the change was decided on is right whatever
/// happened in between.
const WRITE_LEASE_IF_AS_REMEMBERED: &str = write_lease!(
    "(project, task, owner, principal, created_at, expires_at, heartbeat_interval_s,
      last_heartbeat_at, released_at, labels, regions, ends_at)
     IS NOT DISTINCT FROM ($14::TEXT, $15::TEXT, $16::TEXT, $17::TEXT, $18::BIGINT,
      $19::BIGINT, $20::BIGINT, $21::BIGINT, $22::BIGINT, $23::TEXT, $24::TEXT, $25::BIGINT)",
    "$26::BIGINT[], $27::TEXT[], $28::TEXT[], $29::TEXT[]"
);

/// Most leases whose last write this process remembers in [`Written`].
const WRITTEN: usize = 16_384;

/// The leases this process wrote last (acquired, released, renewed), each as stored: a change
/// of one of them is written straight over the row if it still holds that
/// ([`WRITE_LEASE_IF_AS_REMEMBERED`]), one statement instead of a read and a write. When
/// another write changed the row in between (another replica's, the reaper's), nothing is
/// written and the change reads the row as usual.
pub(super) struct Written(Mutex<LruCache<LeaseId, Lease>>);

impl Written {
    pub(super) fn new() -> Self {
        Written(Mutex::new(LruCache::new(WRITTEN)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<LeaseId, Lease>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, id: LeaseId) -> Option<Lease> {
        self.lock().get(&id).cloned()
    }

    /// Remembers the lease written from `params`, as stored. Called after the commit, so it
    /// cannot fail the call: a lease it cannot read back is left out (its next change reads).
    fn remember(&self, params: &LeaseParams) {
        if let Ok(lease) = params.stored() {
            self.lock().insert(lease.id, lease);
        }
    }

    fn forget(&self, id: LeaseId) {
        self.lock().remove(&id);
    }
}

/// Most times [`Pg::update_lease`] reads a lease again after another write changed it
/// between its read and its write; each such time another change was written.
const UPDATE_ATTEMPTS: usize = 64;

/// The events of a change, in [`WRITE_LEASE_IF_UNCHANGED`] (which takes the lease id of its
/// row).
struct EventParams {
    at: Vec<i64>,
    kind: Vec<String>,
    principal: Vec<String>,
    detail: Vec<String>,
}

impl EventParams {
    fn of(events: &[LeaseEvent]) -> Self {
        EventParams {
            at: events.iter().map(|e| ms(e.at)).collect(),
            kind: events.iter().map(|e| e.change.kind().to_owned()).collect(),
            principal: events.iter().map(|e| e.principal.clone()).collect(),
            detail: events.iter().map(|e| e.change.to_json()).collect(),
        }
    }

    fn refs(&self) -> [&(dyn ToSql + Sync); 4] {
        [&self.at, &self.kind, &self.principal, &self.detail]
    }
}

/// A lease's columns, in the order of [`WRITE_LEASE_IF_UNCHANGED`].
struct LeaseParams {
    id: String,
    project: String,
    task: String,
    owner: String,
    principal: String,
    times: [i64; 3],
    heartbeat: Option<i64>,
    last_heartbeat: Option<i64>,
    released: Option<i64>,
    labels: String,
    regions: String,
}

impl LeaseParams {
    fn refs(&self) -> [&(dyn ToSql + Sync); 13] {
        [
            &self.id,
            &self.project,
            &self.task,
            &self.owner,
            &self.principal,
            &self.times[0],
            &self.times[1],
            &self.heartbeat,
            &self.last_heartbeat,
            &self.released,
            &self.labels,
            &self.regions,
            &self.times[2],
        ]
    }

    /// The lease as a read of the row written from these parameters gives it back (times to
    /// the millisecond, the heartbeat interval to the second).
    fn stored(&self) -> Result<Lease, StoreError> {
        RawLease {
            id: self.id.clone(),
            project: self.project.clone(),
            task: self.task.clone(),
            owner: self.owner.clone(),
            principal: self.principal.clone(),
            created_at: self.times[0],
            expires_at: self.times[1],
            heartbeat_interval_s: self.heartbeat,
            last_heartbeat_at: self.last_heartbeat,
            released_at: self.released,
            labels: self.labels.clone(),
            regions: self.regions.clone(),
        }
        .into_lease()
    }
}

fn lease_params(l: &Lease) -> Result<LeaseParams, StoreError> {
    Ok(LeaseParams {
        id: l.id.to_string(),
        project: l.project.as_str().to_owned(),
        task: l.task.clone(),
        owner: l.owner.clone(),
        principal: l.principal.clone(),
        times: [
            l.created_at.timestamp_millis(),
            l.expires_at.timestamp_millis(),
            l.ends_at().timestamp_millis(),
        ],
        heartbeat: l
            .heartbeat_interval
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
        last_heartbeat: l.last_heartbeat_at.map(|t| t.timestamp_millis()),
        released: l.released_at.map(|t| t.timestamp_millis()),
        labels: serde_json::to_string(&l.labels).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        regions: serde_json::to_string(&l.regions)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
    })
}

/// Most acquires decided in one transaction.
const ACQUIRE_BATCH: usize = 256;

/// What became of one acquire of a batch.
enum Decision<E> {
    /// Its key names an active lease: that one, nothing written.
    Existing(Box<Lease>),
    /// Within the quota: its lease goes in with the batch's commit.
    Granted,
    /// The quota (or the policy behind it) said no.
    Refused(E),
}

/// One queued acquire, its caller's types erased so acquires share a queue.
pub(super) trait Decide: Send {
    fn project(&self) -> &str;
    fn now(&self) -> DateTime<Utc>;
    fn key(&self) -> Option<&str>;
    /// Asks the caller's quota with `active` leases; true when it grants.
    fn decide(&mut self, active: u64) -> bool;
    /// The lease to insert and its key (after `decide` granted).
    fn granted(&self) -> (&Lease, Option<&str>);
    /// Answers with an active lease of the same key.
    fn existing(&mut self, lease: Lease);
    /// Tells the caller, once the batch's transaction committed (or failed).
    fn answer(&mut self, committed: Result<(), StoreError>);
}

struct Pending<F, E> {
    lease: Lease,
    key: Option<String>,
    now: DateTime<Utc>,
    quota: Option<F>,
    decision: Option<Decision<E>>,
    reply: Option<tokio::sync::oneshot::Sender<Result<(Lease, bool), E>>>,
}

impl<F, E> Decide for Pending<F, E>
where
    F: FnOnce(u64) -> Result<(), E> + Send,
    E: From<StoreError> + Send,
{
    fn project(&self) -> &str {
        self.lease.project.as_str()
    }

    fn now(&self) -> DateTime<Utc> {
        self.now
    }

    fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    fn decide(&mut self, active: u64) -> bool {
        let Some(quota) = self.quota.take() else {
            return false;
        };
        let d = match quota(active) {
            Ok(()) => Decision::Granted,
            Err(e) => Decision::Refused(e),
        };
        let granted = matches!(d, Decision::Granted);
        self.decision = Some(d);
        granted
    }

    fn granted(&self) -> (&Lease, Option<&str>) {
        (&self.lease, self.key.as_deref())
    }

    fn existing(&mut self, lease: Lease) {
        self.decision = Some(Decision::Existing(Box::new(lease)));
    }

    fn answer(&mut self, committed: Result<(), StoreError>) {
        let Some(reply) = self.reply.take() else {
            return;
        };
        let r = match (committed, self.decision.take()) {
            (Err(e), _) => Err(E::from(e)),
            (Ok(()), Some(Decision::Existing(l))) => Ok((*l, true)),
            (Ok(()), Some(Decision::Granted)) => Ok((self.lease.clone(), false)),
            (Ok(()), Some(Decision::Refused(e))) => Err(e),
            (Ok(()), None) => Err(E::from(StoreError::Corrupt(
                "an acquire of the batch was left undecided".to_owned(),
            ))),
        };
        // The caller may have gone (a client that hung up); its lease stands like any other.
        let _ = reply.send(r);
    }
}

/// Inserts the granted leases of a batch in one statement: the parameters of
/// [`LeaseRows::refs`].
const INSERT_LEASES: &str = "INSERT INTO leases (id, project, task, owner, principal,
        created_at, expires_at, heartbeat_interval_s, last_heartbeat_at, released_at, labels,
        regions, ends_at, idem_key)
    SELECT id, project, task, owner, principal, created_at, expires_at, heartbeat_interval_s,
        last_heartbeat_at, released_at, labels, regions, ends_at, idem_key
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[],
        $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], $11::text[], $12::text[],
        $13::bigint[], $14::text[])
        AS g(project, id, task, owner, principal, created_at, expires_at, heartbeat_interval_s,
             last_heartbeat_at, released_at, labels, regions, ends_at, idem_key)";

/// The columns of new leases, one array each.
#[derive(Default)]
struct LeaseRows<'a> {
    projects: Vec<&'a str>,
    ids: Vec<String>,
    tasks: Vec<&'a str>,
    owners: Vec<&'a str>,
    principals: Vec<&'a str>,
    created: Vec<i64>,
    expires: Vec<i64>,
    heartbeats: Vec<Option<i64>>,
    last_heartbeats: Vec<Option<i64>>,
    released: Vec<Option<i64>>,
    labels: Vec<String>,
    regions: Vec<String>,
    ends: Vec<i64>,
    keys: Vec<Option<&'a str>>,
}

impl<'a> LeaseRows<'a> {
    fn of(granted: &'a [(Lease, Option<String>)]) -> Result<Self, StoreError> {
        let mut r = LeaseRows::default();
        for (l, key) in granted {
            r.projects.push(l.project.as_str());
            r.ids.push(l.id.to_string());
            r.tasks.push(&l.task);
            r.owners.push(&l.owner);
            r.principals.push(&l.principal);
            r.created.push(l.created_at.timestamp_millis());
            r.expires.push(l.expires_at.timestamp_millis());
            r.heartbeats.push(
                l.heartbeat_interval
                    .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
            );
            r.last_heartbeats
                .push(l.last_heartbeat_at.map(|t| t.timestamp_millis()));
            r.released.push(l.released_at.map(|t| t.timestamp_millis()));
            r.labels.push(
                serde_json::to_string(&l.labels).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            );
            r.regions.push(
                serde_json::to_string(&l.regions)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            );
            r.ends.push(l.ends_at().timestamp_millis());
            r.keys.push(key.as_deref());
        }
        Ok(r)
    }

    fn refs(&self) -> [&(dyn ToSql + Sync); 14] {
        [
            &self.projects,
            &self.ids,
            &self.tasks,
            &self.owners,
            &self.principals,
            &self.created,
            &self.expires,
            &self.heartbeats,
            &self.last_heartbeats,
            &self.released,
            &self.labels,
            &self.regions,
            &self.ends,
            &self.keys,
        ]
    }
}

impl Pg {
    /// One batch's failure told to each of its callers: unavailable stays unavailable (503,
    /// retry), anything else is a failed commit.
    fn shared(&self, e: &StoreError) -> StoreError {
        if e.is_unavailable() {
            StoreError::Unavailable {
                target: self.target.describe(),
                reason: crate::error_chain(e),
            }
        } else {
            StoreError::Commit(crate::error_chain(e))
        }
    }
}

impl Pg {
    pub(in crate::store) async fn ping(&self) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        c.query_one("SELECT version FROM schema_version WHERE id = 1", &[])
            .await?;
        Ok(())
    }

    /// Takes a lease of `lease`'s project after `quota` accepts the number active at `now`;
    /// with `key` naming an active lease of the project, returns that one (`true`).
    ///
    /// Acquires of one project are decided one at a time across replicas (the quota must see
    /// every lease granted before it), so each replica gathers the acquires that arrive while
    /// a batch is being decided, whatever their projects, and decides them together: one
    /// transaction, one commit for the lot, each project's acquires in arrival order. Nothing
    /// is acknowledged before that commit.
    pub(in crate::store) async fn insert_lease_keyed<E>(
        self: &Arc<Self>,
        lease: Lease,
        key: Option<String>,
        now: DateTime<Utc>,
        quota: impl FnOnce(u64) -> Result<(), E> + Send + 'static,
    ) -> Result<(Lease, bool), E>
    where
        E: From<StoreError> + Send + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let pending: Box<dyn Decide> = Box::new(Pending {
            lease,
            key,
            now,
            quota: Some(quota),
            decision: None,
            reply: Some(reply),
        });
        let start = {
            let mut queue = self.acquires.lock().unwrap_or_else(|p| p.into_inner());
            match queue.as_mut() {
                Some(queue) => {
                    queue.push(pending);
                    false
                }
                None => {
                    *queue = Some(vec![pending]);
                    true
                }
            }
        };
        if start {
            // Its own task: a caller that gives up (a client gone) must not strand the queue.
            tokio::spawn(Arc::clone(self).decide_acquires());
        }
        answer.await.map_err(|_| E::from(StoreError::WriterGone))?
    }

    /// Decides the queued acquires, batch after batch, until none is left.
    async fn decide_acquires(self: Arc<Self>) {
        // Should this task end early (a panic), the queue goes with it: waiting callers get
        // an error instead of waiting for ever, and the next acquire starts a new task.
        struct Forget<'a>(&'a Pg);
        impl Drop for Forget<'_> {
            fn drop(&mut self) {
                *self.0.acquires.lock().unwrap_or_else(|p| p.into_inner()) = None;
            }
        }
        let _forget = Forget(&self);
        loop {
            let mut batch: Vec<Box<dyn Decide>> = {
                let mut queue = self.acquires.lock().unwrap_or_else(|p| p.into_inner());
                let Some(waiting) = queue.as_mut().filter(|q| !q.is_empty()) else {
                    *queue = None;
                    return;
                };
                let n = waiting.len().min(ACQUIRE_BATCH);
                waiting.drain(..n).collect()
            };
            let outcome = self.decide_batch(&mut batch).await;
            for mut p in batch {
                p.answer(match &outcome {
                    Ok(()) => Ok(()),
                    Err(e) => Err(self.shared(e)),
                });
            }
        }
    }

    /// One transaction for `batch`: the lock of each of its projects, their active counts
    /// and keyed leases read once, each acquire decided in order, the granted ones inserted
    /// together.
    async fn decide_batch(&self, batch: &mut [Box<dyn Decide>]) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        let begin = c.statement("BEGIN").await?;
        // A function scan yields the array in order, so the locks are taken in that order.
        let lock = c
            .statement(
                "SELECT pg_advisory_xact_lock(hashtextextended(n, 0)) FROM unnest($1::text[]) n",
            )
            .await?;
        let by_key = c
            .statement(concat!(
                "SELECT ",
                lease_columns!(),
                ", idem_key FROM leases WHERE project = ANY($1) AND idem_key = ANY($2)
                 AND released_at IS NULL AND ends_at > $3"
            ))
            .await?;
        let count = c
            .statement(
                "SELECT project, COUNT(*) FROM leases
                 WHERE project = ANY($1) AND released_at IS NULL AND ends_at > $2
                 GROUP BY project",
            )
            .await?;
        let insert = c.statement(INSERT_LEASES).await?;
        let commit = c.statement("COMMIT").await?;
        // The earliest `now` of the batch: a lease ending in between counts as active (the
        // safe side of a quota) and is checked against each acquire's own `now` for its key.
        let since = batch
            .iter()
            .map(|p| p.now().timestamp_millis())
            .min()
            .unwrap_or_default();
        let keys: Vec<&str> = batch.iter().filter_map(|p| p.key()).collect();
        // Every replica takes a batch's project locks in the same (sorted) order, so two
        // batches sharing projects wait for each other instead of deadlocking.
        let projects: Vec<&str> = batch
            .iter()
            .map(|p| p.project())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let lock_names: Vec<String> = projects
            .iter()
            .map(|p| format!("lease-quota/{p}"))
            .collect();
        // Two round trips for the batch: BEGIN, the locks and both reads; the insert and
        // COMMIT. One acquire of a project at a time, across replicas: the count and the
        // insert must see every lease granted before them (READ COMMITTED alone would let two
        // replicas count the same nine and both grant the tenth); the reads run after the
        // locks.
        c.pipeline_begin();
        let (_, _, rows, counts) = {
            let client = c.client();
            let lock_args: [&(dyn ToSql + Sync); 1] = [&lock_names];
            let key_args: [&(dyn ToSql + Sync); 3] = [&projects, &keys, &since];
            let count_args: [&(dyn ToSql + Sync); 2] = [&projects, &since];
            tokio::try_join!(
                client.execute(&begin, &[]),
                client.query(&lock, &lock_args),
                client.query(&by_key, &key_args),
                client.query(&count, &count_args),
            )?
        };
        let mut keyed: HashMap<(String, String), Vec<Lease>> = HashMap::new();
        for r in &rows {
            let lease = lease_of(r)?;
            let k: String = r.try_get(12)?;
            keyed
                .entry((lease.project.as_str().to_owned(), k))
                .or_default()
                .push(lease);
        }
        let mut active: HashMap<String, u64> = HashMap::new();
        for r in &counts {
            let n: i64 = r.try_get(1)?;
            active.insert(r.try_get(0)?, u64::try_from(n).unwrap_or(0));
        }
        let mut granted = Vec::new();
        for p in batch.iter_mut() {
            let now = p.now();
            let project = p.project().to_owned();
            let existing = p.key().and_then(|k| {
                keyed
                    .get(&(project.clone(), k.to_owned()))
                    .and_then(|ls| ls.iter().find(|l| l.ends_at() > now))
                    .cloned()
            });
            if let Some(l) = existing {
                p.existing(l);
                continue;
            }
            let active = active.entry(project).or_default();
            if p.decide(*active) {
                *active += 1;
                let (lease, key) = p.granted();
                if let Some(k) = key {
                    keyed
                        .entry((lease.project.as_str().to_owned(), k.to_owned()))
                        .or_default()
                        .push(lease.clone());
                }
                granted.push((lease.clone(), key.map(str::to_owned)));
            }
        }
        {
            let client = c.client();
            if granted.is_empty() {
                client.execute(&commit, &[]).await?;
            } else {
                let rows = LeaseRows::of(&granted)?;
                let values = rows.refs();
                // A failed insert makes the COMMIT a rollback, and the insert's error is
                // returned.
                tokio::try_join!(
                    client.execute(&insert, &values),
                    client.execute(&commit, &[])
                )?;
                for (lease, _) in &granted {
                    if let Ok(params) = lease_params(lease) {
                        self.written.remember(&params);
                    }
                }
            }
        }
        c.pipeline_end();
        Ok(())
    }

    /// Reads lease `id`, lets `f` change it, and writes it back with `f`'s events if the row
    /// is still as read; if another write came in between, reads it again and asks `f` again
    /// (so racing releases of one lease: one writes, the others read it released and `f`
    /// refuses). Two statements and no lock held between them, instead of a transaction
    /// holding the row's lock across a round trip to this process; one when this process
    /// wrote the lease last ([`Written`]) and nothing has written it since.
    pub(in crate::store) async fn update_lease<E>(
        &self,
        id: LeaseId,
        mut f: impl FnMut(&mut Lease) -> Result<Vec<LeaseEvent>, E>,
    ) -> Result<Option<Lease>, E>
    where
        E: From<StoreError>,
    {
        let mut c = self.conn().await?;
        if let Some(mut lease) = self.written.get(id) {
            let remembered = lease_params(&lease)?;
            // Only a change is taken from memory: a refusal (say, "already released") is
            // decided again on the row as read, which may have moved on since.
            if let Ok(events) = f(&mut lease) {
                let write = c.statement(WRITE_LEASE_IF_AS_REMEMBERED).await?;
                if self
                    .write_over(&mut c, &write, &lease, &remembered.refs()[1..], &events)
                    .await?
                {
                    return Ok(Some(lease));
                }
            }
            self.written.forget(id);
        }
        let read = c.statement(READ_LEASE_VERSION).await?;
        let write = c.statement(WRITE_LEASE_IF_UNCHANGED).await?;
        let id_text = id.to_string();
        for _ in 0..UPDATE_ATTEMPTS {
            let Some(row) = c
                .client()
                .query_opt(&read, &[&id_text])
                .await
                .map_err(StoreError::from)?
            else {
                return Ok(None);
            };
            let mut lease = lease_of(&row)?;
            let version: String = row.try_get("version").map_err(StoreError::from)?;
            let events = f(&mut lease)?;
            if self
                .write_over(&mut c, &write, &lease, &[&version], &events)
                .await?
            {
                return Ok(Some(lease));
            }
        }
        Err(E::from(StoreError::Commit(format!(
            "lease {id} changed under each of {UPDATE_ATTEMPTS} attempts to change it"
        ))))
    }

    /// Writes `lease` with `events` through `write` (a [`write_lease!`]) where `condition`
    /// (its parameters after the lease's) holds, and remembers it as stored; `false` when the
    /// row had changed and nothing was written.
    async fn write_over(
        &self,
        c: &mut super::Pooled<'_>,
        write: &tokio_postgres::Statement,
        lease: &Lease,
        condition: &[&(dyn ToSql + Sync)],
        events: &[LeaseEvent],
    ) -> Result<bool, StoreError> {
        let params = lease_params(lease)?;
        let events = EventParams::of(events);
        let mut values: Vec<&(dyn ToSql + Sync)> = params.refs().to_vec();
        values.extend_from_slice(condition);
        values.extend(events.refs());
        let written: i64 = c.client().query_one(write, &values).await?.try_get(0)?;
        if written != 1 {
            return Ok(false);
        }
        self.written.remember(&params);
        Ok(true)
    }

    pub(in crate::store) async fn lease_durations_since(
        &self,
        projects: Vec<String>,
        since: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<(String, Vec<i64>)>, StoreError> {
        let mut c = self.conn().await?;
        let mut out = Vec::with_capacity(projects.len());
        for project in projects {
            let rows = c
                .query(
                    "SELECT released_at - created_at FROM leases
                     WHERE project = $1 AND released_at >= $2
                     ORDER BY released_at DESC LIMIT $3",
                    &[&project, &since.timestamp_millis(), &i64::from(limit)],
                )
                .await?;
            let durations = rows
                .iter()
                .map(|r| r.try_get::<_, i64>(0))
                .collect::<Result<Vec<_>, _>>()?;
            out.push((project, durations));
        }
        Ok(out)
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

#[cfg(test)]
mod tests {
    use chrono::{TimeDelta, TimeZone};

    use super::*;
    use crate::model::HumanDuration;
    use crate::store::{Store, StoreLocation};

    /// What a replica remembers of a lease it wrote is the row exactly, as a read gives it
    /// back (times to the millisecond, the interval to the second), after an acquire and after
    /// a change, so its next change is written from memory (decided once: no read); a change
    /// by another replica in between is not written over (decided again on the row read).
    #[tokio::test]
    async fn a_written_lease_is_remembered_as_stored() {
        let target = StoreLocation::Postgres(Box::new(super::super::testing::fresh_target().await));
        let store = Store::open_at(&target).await.expect("opens");
        let t0 = Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .expect("time")
            + TimeDelta::nanoseconds(123_456_789);
        let lease = Lease {
            heartbeat_interval: Some(HumanDuration::from_secs(300)),
            last_heartbeat_at: Some(t0),
            labels: [("k".to_owned(), "v".to_owned())].into(),
            regions: vec!["us-east-1".into()],
            ..crate::store::tests::hour_lease("web", "t", t0)
        };
        let id = lease.id;
        let remembered_as_stored = |what: &'static str| {
            let store = store.clone();
            async move {
                let remembered = store
                    .pg()
                    .expect("postgres")
                    .written
                    .get(id)
                    .unwrap_or_else(|| panic!("{what}: remembered"));
                let stored = store.get_lease(id).await.expect("reads").expect("there");
                assert_eq!(remembered, stored, "{what}");
            }
        };
        store
            .insert_lease(lease, t0, |_| Ok::<(), StoreError>(()))
            .await
            .expect("inserted");
        remembered_as_stored("acquired").await;
        // How many times a change was decided.
        let decided = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let decisions = || decided.swap(0, std::sync::atomic::Ordering::SeqCst);
        let beat = t0 + TimeDelta::nanoseconds(987_654_321);
        let counter = Arc::clone(&decided);
        store
            .update_lease(id, move |l| {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                l.last_heartbeat_at = Some(beat);
                l.released_at = Some(beat);
                Ok::<_, StoreError>(vec![])
            })
            .await
            .expect("writes")
            .expect("there");
        assert_eq!(decisions(), 1, "written from memory");
        remembered_as_stored("changed").await;
        // Another replica's write leaves this one's memory behind; the next change reads.
        let other = Store::open_at(&target).await.expect("opens");
        other
            .update_lease(id, |l| {
                l.labels.insert("by".into(), "other".into());
                Ok::<_, StoreError>(vec![])
            })
            .await
            .expect("writes");
        assert!(other.pg().expect("postgres").written.get(id).is_some());
        let counter = Arc::clone(&decided);
        store
            .update_lease(id, move |l| {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                l.labels.insert("then".into(), "this".into());
                Ok::<_, StoreError>(vec![])
            })
            .await
            .expect("writes");
        let labels = store
            .get_lease(id)
            .await
            .expect("reads")
            .expect("there")
            .labels;
        assert_eq!(
            labels.get("by").map(String::as_str),
            Some("other"),
            "not written over"
        );
        assert_eq!(labels.get("then").map(String::as_str), Some("this"));
        assert_eq!(decisions(), 2, "from memory, then on the row read");
        remembered_as_stored("changed after another").await;
    }
}
