//! Leases on PostgreSQL: replicas racing for one project's quota serialise on the project's
//! lock in the database, not on a process, held for the server's work alone when the quota
//! has room; a change of one lease (a release, a renewal) is written only over the row
//! version it was decided on, so of racing changes each decides on what the one before it
//! wrote.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use hashlink::LruCache;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::Pg;
use crate::model::{Lease, LeaseEvent, LeaseId, LeaseState};
use crate::store::{
    LEASE_COLUMNS, LeaseFilter, Page, Quota, RawLease, StoreError, lease_columns, ms, next_cursor,
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

/// How a batch was decided ([`Pg::decide_batch`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    /// Granted in one round trip: its projects had room.
    OneRoundTrip,
    /// On counts and keys read under its projects' locks.
    UnderLocks,
}

/// Most acquires decided in one transaction.
const ACQUIRE_BATCH: usize = 256;

/// What became of one acquire of a batch.
pub(super) enum Decision {
    /// Its key names an active lease: that one, nothing written.
    Existing(Box<Lease>),
    /// Within the quota: its lease goes in with the batch's commit.
    Granted,
    /// The quota was full with this many leases active (the batch's grants before it
    /// counted).
    Refused(u64),
}

/// One queued acquire, its caller's types erased so acquires share a queue.
pub(super) trait Decide: Send {
    /// The lease it would insert.
    fn lease(&self) -> &Lease;
    fn now(&self) -> DateTime<Utc>;
    fn key(&self) -> Option<&str>;
    /// The most leases of its project that may be active, if any.
    fn max(&self) -> Option<u64>;
    /// Whether its lease fits beside `active` leases of its project ([`Quota::fits`]).
    fn fits(&self, active: u64) -> bool;
    /// Records what became of it; a decision made again (on what was read under the
    /// project's lock) replaces it.
    fn decided(&mut self, d: Decision);
    fn is_granted(&self) -> bool;
    /// Tells the caller, once the batch's transaction committed (or failed).
    fn answer(&mut self, committed: Result<(), StoreError>);
}

struct Pending<E> {
    lease: Lease,
    key: Option<String>,
    now: DateTime<Utc>,
    quota: Option<Quota<E>>,
    decision: Option<Decision>,
    reply: Option<tokio::sync::oneshot::Sender<Result<(Lease, bool), E>>>,
}

impl<E> Decide for Pending<E>
where
    E: From<StoreError> + Send,
{
    fn lease(&self) -> &Lease {
        &self.lease
    }

    fn now(&self) -> DateTime<Utc> {
        self.now
    }

    fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    fn max(&self) -> Option<u64> {
        self.quota.as_ref().and_then(Quota::max)
    }

    fn fits(&self, active: u64) -> bool {
        self.quota.as_ref().is_none_or(|q| q.fits(active))
    }

    fn decided(&mut self, d: Decision) {
        self.decision = Some(d);
    }

    fn is_granted(&self) -> bool {
        matches!(self.decision, Some(Decision::Granted))
    }

    fn answer(&mut self, committed: Result<(), StoreError>) {
        let Some(reply) = self.reply.take() else {
            return;
        };
        let r = match (committed, self.decision.take()) {
            (Err(e), _) => Err(E::from(e)),
            (Ok(()), Some(Decision::Existing(l))) => Ok((*l, true)),
            (Ok(()), Some(Decision::Granted)) => Ok((self.lease.clone(), false)),
            (Ok(()), Some(Decision::Refused(active))) => Err(self
                .quota
                .take()
                .and_then(|q| q.refusal(active))
                .unwrap_or_else(|| {
                    E::from(StoreError::Corrupt(format!(
                        "an acquire was refused with {active} active leases, within its quota"
                    )))
                })),
            (Ok(()), None) => Err(E::from(StoreError::Corrupt(
                "an acquire of the batch was left undecided".to_owned(),
            ))),
        };
        // The caller may have gone (a client that hung up); its lease stands like any other.
        let _ = reply.send(r);
    }
}

/// What a batch read: the active leases with its keys, and how many leases of each of its
/// projects are active.
#[derive(Default)]
struct Seen {
    keyed: HashMap<(String, String), Vec<Lease>>,
    active: HashMap<String, u64>,
}

impl Seen {
    fn of(keyed: &[Row], counts: &[Row]) -> Result<Self, StoreError> {
        let mut seen = Seen::default();
        for r in keyed {
            let lease = lease_of(r)?;
            let k: String = r.try_get(12)?;
            seen.keyed
                .entry((lease.project.as_str().to_owned(), k))
                .or_default()
                .push(lease);
        }
        for r in counts {
            let n: i64 = r.try_get(1)?;
            seen.active
                .insert(r.try_get(0)?, u64::try_from(n).unwrap_or(0));
        }
        Ok(seen)
    }

    /// Decides each acquire of `batch` in order on what was read, counting the grants before
    /// it. Returns, for each project with grants under a quota, the most leases that may be
    /// active beside them (the least over its grants of the quota less the grants up to and
    /// including that one): the grants stand as long as no more than that are. `None` when it
    /// refused one.
    fn decide(mut self, batch: &mut [Box<dyn Decide>]) -> Option<HashMap<String, u64>> {
        let mut room: HashMap<String, u64> = HashMap::new();
        let mut refused = false;
        let mut grants: HashMap<String, u64> = HashMap::new();
        for p in batch.iter_mut() {
            let now = p.now();
            let project = p.lease().project.as_str().to_owned();
            let existing = p.key().and_then(|k| {
                self.keyed
                    .get(&(project.clone(), k.to_owned()))
                    .and_then(|ls| ls.iter().find(|l| l.ends_at() > now))
                    .cloned()
            });
            if let Some(l) = existing {
                p.decided(Decision::Existing(Box::new(l)));
                continue;
            }
            let active = self.active.entry(project.clone()).or_default();
            if !p.fits(*active) {
                p.decided(Decision::Refused(*active));
                refused = true;
                continue;
            }
            *active += 1;
            p.decided(Decision::Granted);
            let granted = grants.entry(project.clone()).or_default();
            *granted += 1;
            if let Some(max) = p.max() {
                let beside = max.saturating_sub(*granted);
                let r = room.entry(project.clone()).or_insert(beside);
                *r = (*r).min(beside);
            }
            if let Some(k) = p.key() {
                self.keyed
                    .entry((project, k.to_owned()))
                    .or_default()
                    .push(p.lease().clone());
            }
        }
        (!refused).then_some(room)
    }
}

/// Inserts the granted leases of a batch in one statement ($1–$15: [`LeaseRows::refs`]), all
/// of them or none: none when a project of `$16` has more than its `$17` leases active at
/// `$18` (counted now, not when they were decided), or when a lease with one of their keys
/// has become active. Both conditions are one-time filters (they do not look at the row
/// being inserted), so the statement inserts every row or none. The keys are looked up only
/// when `$19` says a row has one: unguarded, a plan made while the table was small (a
/// prepared statement's generic plan, kept until the next `ANALYZE`) scanned every lease,
/// ended ones included, for each batch, keys or not.
const INSERT_LEASES: &str = "WITH g AS (
        SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
            $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], $11::text[],
            $12::text[], $13::bigint[], $14::text[], $15::bigint[])
        AS g(project, id, task, owner, principal, created_at, expires_at, heartbeat_interval_s,
             last_heartbeat_at, released_at, labels, regions, ends_at, idem_key, decided_at)
    )
    INSERT INTO leases (id, project, task, owner, principal, created_at, expires_at,
        heartbeat_interval_s, last_heartbeat_at, released_at, labels, regions, ends_at, idem_key)
    SELECT id, project, task, owner, principal, created_at, expires_at, heartbeat_interval_s,
        last_heartbeat_at, released_at, labels, regions, ends_at, idem_key
    FROM g
    WHERE NOT EXISTS (
            SELECT 1 FROM unnest($16::text[], $17::bigint[]) AS q(project, room)
            WHERE (SELECT COUNT(*) FROM leases l WHERE l.project = q.project
                   AND l.released_at IS NULL AND l.ends_at > $18) > q.room)
        AND (NOT $19::bool OR NOT EXISTS (
            SELECT 1 FROM g JOIN leases l ON l.project = g.project AND l.idem_key = g.idem_key
            WHERE l.released_at IS NULL AND l.ends_at > g.decided_at))";

/// The active leases of a batch's projects with its keys ($1 projects, $2 keys, $3 since).
const ACTIVE_BY_KEY: &str = concat!(
    "SELECT ",
    lease_columns!(),
    ", idem_key FROM leases WHERE project = ANY($1) AND idem_key = ANY($2)
     AND released_at IS NULL AND ends_at > $3"
);

/// How many leases of each of a batch's projects are active ($1 projects, $2 since).
const COUNT_ACTIVE: &str = "SELECT project, COUNT(*) FROM leases
    WHERE project = ANY($1) AND released_at IS NULL AND ends_at > $2
    GROUP BY project";

/// Takes the locks named in $1 until the transaction ends, each shared where $2 says so and
/// exclusive otherwise, in the arrays' order (a function scan yields them in order).
const LOCK_QUOTAS: &str =
    "SELECT CASE WHEN s THEN pg_advisory_xact_lock_shared(hashtextextended(n, 0))
                 ELSE pg_advisory_xact_lock(hashtextextended(n, 0)) END
    FROM unnest($1::text[], $2::bool[]) AS l(n, s)";

/// The lock of `project`'s quota decisions across replicas: held exclusive by a decision under
/// the locks (and by a replica of a version before [`QUOTA_SLOTS`], which took only this
/// one), shared by batches granted side by side.
fn quota_lock(project: &str) -> String {
    format!("lease-quota/{project}")
}

/// Batches whose grants leave their project far from its quota are granted side by side, up
/// to this many at once per project: each holds the project's [`quota_lock`] shared and one
/// of this many slot locks exclusive. A decision under the locks holds the quota lock
/// exclusive, so it waits for them and they for it.
const QUOTA_SLOTS: u64 = 4;

/// Most grants of one project a batch holding a slot inserts.
const SLOT_GRANTS: u64 = 16;

/// The room a batch granted side by side leaves for the holders of the other slots: the
/// server inserts its `g` grants of a project only if `count + g + SLOT_RESERVE <= max`
/// (`count` as its statement's snapshot shows it). Why that is enough, though the batches
/// side by side cannot see each other's rows: take the last-committing batch X of a project
/// that would take it over its quota, and among the batches that committed after X's
/// snapshot, unseen by it, the one Y with the latest snapshot. Every other batch unseen by Y
/// that committed before X took its snapshot before Y's, so it held a slot at Y's snapshot,
/// other than Y's and X's: at most `QUOTA_SLOTS - 2` of them, each of at most
/// [`SLOT_GRANTS`]. Y's own check counted what it saw plus its grants plus a slot's worth for
/// each other slot, X's among them, so all of it fits. With no such Y (or Y's snapshot
/// before X's), X's check bounds the same way the batches holding a slot at its snapshot.
/// A decision under the locks runs alone for the project, on a count that sees everything.
const SLOT_RESERVE: u64 = (QUOTA_SLOTS - 1) * SLOT_GRANTS;

/// The lock of `slot` of `project`'s quota ([`QUOTA_SLOTS`]).
fn slot_lock(project: &str, slot: u64) -> String {
    format!("lease-quota/{project}/{slot}")
}

/// The lock of `key` among `project`'s acquires granted side by side (a decision under the
/// locks excludes them all through the project's [`quota_lock`]).
fn key_lock(project: &str, key: &str) -> String {
    format!("lease-key/{project}/{key}")
}

/// How long a project stays [`Crowded`] after a batch granted side by side found no room.
const CROWDED_FOR: std::time::Duration = std::time::Duration::from_secs(10);

/// The projects whose batch granted side by side found no room lately ([`CROWDED_FOR`]): near
/// their quotas, where the room left for the other slots ([`SLOT_RESERVE`]) is wanting. Their
/// batches hold the quota lock exclusive instead, granted in one round trip while the quota
/// has room, rather than failing side by side and then being decided under the locks.
#[derive(Default)]
pub(super) struct Crowded(Mutex<HashMap<String, std::time::Instant>>);

impl Crowded {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, std::time::Instant>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `project` was found crowded less than [`CROWDED_FOR`] before `now`.
    fn is(&self, project: &str, now: std::time::Instant) -> bool {
        self.lock()
            .get(project)
            .is_some_and(|since| now.saturating_duration_since(*since) < CROWDED_FOR)
    }

    /// Marks `projects` crowded from `now`, forgetting those marked [`CROWDED_FOR`] or more
    /// before.
    fn mark<'a>(&self, projects: impl IntoIterator<Item = &'a str>, now: std::time::Instant) {
        let mut crowded = self.lock();
        crowded.retain(|_, since| now.saturating_duration_since(*since) < CROWDED_FOR);
        for p in projects {
            crowded.insert(p.to_owned(), now);
        }
    }
}

/// The locks a batch granted in one round trip takes (each name with whether it is shared),
/// in one order every batch and decision follows so that none waits for another in a cycle
/// (names sorted), and the room the server must find for each project with a quota. A
/// project far from its quota with a few grants is granted side by side ([`SLOT_RESERVE`]);
/// one near it, or with more grants, holds its quota lock exclusive as a decision does. A
/// project with keys but no quota has nothing to count: its quota lock shared (so a
/// decision under the locks waits for it) and a lock per key. A project `crowded` says is
/// near its quota holds the lock exclusive whatever its room. Also answers the projects with
/// a quota granted side by side. The slot is `draw` (any number) modulo [`QUOTA_SLOTS`].
fn one_round_trip_locks<'a>(
    batch: &'a [Box<dyn Decide>],
    room: &HashMap<String, u64>,
    draw: u64,
    crowded: impl Fn(&str) -> bool,
) -> (BTreeMap<String, bool>, HashMap<String, u64>, Vec<&'a str>) {
    // Never more slots than the reserve leaves room for, whatever was drawn.
    let slot = draw % QUOTA_SLOTS;
    // Each project's grants (all of them: what a slot's holder inserts is bounded, whatever
    // the policy said of each), whether one has a quota or a key, and its keys.
    let mut grants: BTreeMap<&'a str, (u64, bool, Vec<&'a str>)> = BTreeMap::new();
    for p in batch.iter().filter(|p| p.is_granted()) {
        let (n, locked, keys) = grants.entry(p.lease().project.as_str()).or_default();
        *n += 1;
        *locked |= p.max().is_some() || p.key().is_some();
        keys.extend(p.key());
    }
    let mut locks = BTreeMap::new();
    let mut rooms = HashMap::new();
    let mut side_by_side = Vec::new();
    for (project, (n, locked, keys)) in grants {
        // Grants of a project with neither a quota nor a key stand whatever else is written.
        if !locked {
            continue;
        }
        let beside = match room.get(project) {
            Some(&r) if n <= SLOT_GRANTS && r >= SLOT_RESERVE && !crowded(project) => {
                locks.insert(slot_lock(project, slot), false);
                rooms.insert(project.to_owned(), r - SLOT_RESERVE);
                side_by_side.push(project);
                true
            }
            Some(&r) => {
                rooms.insert(project.to_owned(), r);
                false
            }
            None => true,
        };
        locks.insert(quota_lock(project), beside);
        if beside {
            for k in keys {
                locks.insert(key_lock(project, k), false);
            }
        }
    }
    (locks, rooms, side_by_side)
}

/// The earliest `now` of a batch's acquires, in ms: a lease ending in between counts as active
/// (the safe side of a quota), and is checked against each acquire's own `now` for its key.
fn since(batch: &[Box<dyn Decide>]) -> i64 {
    batch
        .iter()
        .map(|p| p.now().timestamp_millis())
        .min()
        .unwrap_or_default()
}

/// What a batch's reads under the locks ask for: its projects (sorted, each once), its keys,
/// and [`since`].
fn read_args(batch: &[Box<dyn Decide>]) -> (Vec<&str>, Vec<&str>, i64) {
    let projects = batch
        .iter()
        .map(|p| p.lease().project.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let keys = batch.iter().filter_map(|p| p.key()).collect();
    (projects, keys, since(batch))
}

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
    decided: Vec<i64>,
}

impl<'a> LeaseRows<'a> {
    /// The granted leases of `batch`.
    fn of(batch: &'a [Box<dyn Decide>]) -> Result<Self, StoreError> {
        let mut r = LeaseRows::default();
        for p in batch.iter().filter(|p| p.is_granted()) {
            let l = p.lease();
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
            r.keys.push(p.key());
            r.decided.push(p.now().timestamp_millis());
        }
        Ok(r)
    }

    /// Whether a lease has a key ([`INSERT_LEASES`]'s `$19`).
    fn keyed(&self) -> bool {
        self.keys.iter().any(Option::is_some)
    }

    fn refs(&self) -> [&(dyn ToSql + Sync); 15] {
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
            &self.decided,
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

    /// Takes a lease of `lease`'s project if `quota` has room for it beside the leases active
    /// at `now`; with `key` naming an active lease of the project, returns that one (`true`).
    ///
    /// Acquires of one project are decided one at a time across replicas (the quota must see
    /// every lease granted before it), so each replica gathers the acquires that arrive while
    /// a batch is being decided, whatever their projects, and decides them together: one
    /// transaction, one commit for the lot, each project's acquires in arrival order
    /// ([`Pg::decide_batch`]). Nothing is acknowledged before that commit.
    pub(in crate::store) async fn insert_lease_keyed<E>(
        self: &Arc<Self>,
        lease: Lease,
        key: Option<String>,
        now: DateTime<Utc>,
        quota: Quota<E>,
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
                    Ok(_) => Ok(()),
                    Err(e) => Err(self.shared(e)),
                });
            }
        }
    }

    /// Decides `batch` in one round trip when its projects have room for it: granted as if no
    /// lease were active (an acquire with a key the batch granted before it answered with
    /// that lease), its leases are inserted under their projects' locks only if the quotas
    /// and keys still allow them, checked by the server against the leases active then
    /// ([`INSERT_LEASES`]). The locks are held for the server's work alone, not across a
    /// round trip to this process. Otherwise (a quota without room, a key in use) nothing is
    /// inserted and the batch is decided on what is read under the locks
    /// ([`Pg::decide_locked`]), so every refusal and every answer with a lease made before
    /// the batch is decided there. Answers which of the two decided it.
    async fn decide_batch(&self, batch: &mut [Box<dyn Decide>]) -> Result<Path, StoreError> {
        let mut c = self.conn().await?;
        if let Some(room) = Seen::default().decide(batch)
            && self.insert_if_room(&mut c, batch, &room).await?
        {
            return Ok(Path::OneRoundTrip);
        }
        self.decide_locked(&mut c, batch).await?;
        Ok(Path::UnderLocks)
    }

    /// Inserts the grants of `batch` under their projects' locks if each project has no more
    /// than its `room` of other leases active and none of their keys has become active; true
    /// when they are in, false when nothing was written.
    async fn insert_if_room(
        &self,
        c: &mut super::Pooled<'_>,
        // `&mut` though only read: a shared reference held across an await would need `Sync`.
        batch: &mut [Box<dyn Decide>],
        room: &HashMap<String, u64>,
    ) -> Result<bool, StoreError> {
        // A slot drawn at random for each batch, so that two replicas' batches share one
        // only now and then (they then take turns, as under the quota lock).
        let draw = uuid::Uuid::new_v4().as_u64_pair().0;
        let (locks, room, side_by_side) = one_round_trip_locks(batch, room, draw, |p| {
            self.crowded.is(p, std::time::Instant::now())
        });
        let (names, shared): (Vec<String>, Vec<bool>) = locks.into_iter().unzip();
        let begin = c.statement("BEGIN").await?;
        let lock = c.statement(LOCK_QUOTAS).await?;
        let insert = c.statement(INSERT_LEASES).await?;
        let commit = c.statement("COMMIT").await?;
        let since = since(batch);
        let rows = LeaseRows::of(batch)?;
        let (room_projects, rooms): (Vec<&str>, Vec<i64>) = room
            .iter()
            .map(|(p, r)| (p.as_str(), i64::try_from(*r).unwrap_or(i64::MAX)))
            .unzip();
        let mut values = rows.refs().to_vec();
        let keyed = rows.keyed();
        values.extend::<[&(dyn ToSql + Sync); 4]>([&room_projects, &rooms, &since, &keyed]);
        // One round trip: the locks, the insert and the commit.
        c.pipeline_begin();
        let (_, _, inserted, _) = {
            let client = c.client();
            let lock_args: [&(dyn ToSql + Sync); 2] = [&names, &shared];
            tokio::try_join!(
                biased;
                client.execute(&begin, &[]),
                client.query(&lock, &lock_args),
                client.execute(&insert, &values),
                client.execute(&commit, &[]),
            )?
        };
        c.pipeline_end();
        drop(rows);
        let all_in = self.inserted(batch, inserted)?;
        // A key found in use fails the insert too: its projects then only hold their lock
        // exclusive for a while, which is never wrong, just not side by side.
        if !all_in {
            self.crowded.mark(side_by_side, std::time::Instant::now());
        }
        Ok(all_in)
    }

    /// Whether all of `batch`'s grants were inserted (then remembered as written); false when
    /// none were. Some but not all cannot be ([`INSERT_LEASES`]'s conditions hold for all rows or
    /// none), and is an error rather than acknowledged.
    fn inserted(&self, batch: &[Box<dyn Decide>], inserted: u64) -> Result<bool, StoreError> {
        let n = batch.iter().filter(|p| p.is_granted()).count() as u64;
        if inserted == 0 && n > 0 {
            return Ok(false);
        }
        if inserted != n {
            return Err(StoreError::Commit(format!(
                "{inserted} of a batch's {n} granted leases were inserted"
            )));
        }
        for p in batch.iter().filter(|p| p.is_granted()) {
            if let Ok(params) = lease_params(p.lease()) {
                self.written.remember(&params);
            }
        }
        Ok(true)
    }

    /// One transaction for `batch`: the lock of each of its projects, their active counts
    /// and keyed leases read under them, each acquire decided in order, the granted ones
    /// inserted together.
    async fn decide_locked(
        &self,
        c: &mut super::Pooled<'_>,
        batch: &mut [Box<dyn Decide>],
    ) -> Result<(), StoreError> {
        let begin = c.statement("BEGIN").await?;
        let lock = c.statement(LOCK_QUOTAS).await?;
        let by_key = c.statement(ACTIVE_BY_KEY).await?;
        let count = c.statement(COUNT_ACTIVE).await?;
        let insert = c.statement(INSERT_LEASES).await?;
        let commit = c.statement("COMMIT").await?;
        let (projects, keys, since) = read_args(batch);
        // Every replica takes a batch's project locks in the same (sorted) order, so two
        // batches sharing projects wait for each other instead of deadlocking.
        let lock_names: Vec<String> = projects.iter().map(|p| quota_lock(p)).collect();
        let exclusive = vec![false; lock_names.len()];
        // Two round trips: BEGIN, the locks and both reads; the insert and COMMIT. One
        // decision of a project at a time, across replicas: the count and the insert must
        // see every lease granted before them (READ COMMITTED alone would let two replicas
        // count the same nine and both grant the tenth); the reads run after the locks.
        c.pipeline_begin();
        let (_, _, rows, counts) = {
            let client = c.client();
            let lock_args: [&(dyn ToSql + Sync); 2] = [&lock_names, &exclusive];
            let key_args: [&(dyn ToSql + Sync); 3] = [&projects, &keys, &since];
            let count_args: [&(dyn ToSql + Sync); 2] = [&projects, &since];
            tokio::try_join!(
                biased;
                client.execute(&begin, &[]),
                client.query(&lock, &lock_args),
                client.query(&by_key, &key_args),
                client.query(&count, &count_args),
            )?
        };
        // Under the locks nothing can change what was read: no room to check again.
        Seen::of(&rows, &counts)?.decide(batch);
        let granted = LeaseRows::of(batch)?;
        let nothing: (Vec<&str>, Vec<i64>) = (Vec::new(), Vec::new());
        let mut values = granted.refs().to_vec();
        let keyed = granted.keyed();
        values.extend::<[&(dyn ToSql + Sync); 4]>([&nothing.0, &nothing.1, &since, &keyed]);
        let (inserted, _) = {
            let client = c.client();
            // A failed insert makes the COMMIT a rollback, and the insert's error is returned.
            tokio::try_join!(
                biased;
                client.execute(&insert, &values),
                client.execute(&commit, &[])
            )?
        };
        c.pipeline_end();
        drop(granted);
        if self.inserted(batch, inserted)? {
            return Ok(());
        }
        Err(StoreError::Commit(
            "a batch's grants were not inserted under their projects' locks".to_owned(),
        ))
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
    use chrono::TimeDelta;

    use super::*;
    use crate::model::HumanDuration;
    use crate::store::{Store, StoreLocation};

    type Answer = tokio::sync::oneshot::Receiver<Result<(Lease, bool), StoreError>>;

    /// An acquire of `lease` queued as a batch holds it.
    fn pending(lease: Lease, key: Option<&str>, max: Option<u64>) -> (Box<dyn Decide>, Answer) {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let quota = match max {
            Some(max) => Quota::at_most(max, move |active| {
                StoreError::Corrupt(format!("full: {active} of {max}"))
            }),
            None => Quota::unlimited(),
        };
        let p = Pending {
            now: lease.created_at,
            lease,
            key: key.map(str::to_owned),
            quota: Some(quota),
            decision: None,
            reply: Some(reply),
        };
        (Box::new(p), answer)
    }

    /// Answers each acquire of `batch` as after a commit; what each caller is told.
    async fn answers(
        batch: Vec<Box<dyn Decide>>,
        answers: Vec<Answer>,
    ) -> Vec<Result<bool, String>> {
        for mut p in batch {
            p.answer(Ok(()));
        }
        let mut told = Vec::new();
        for a in answers {
            told.push(match a.await.expect("answered") {
                Ok((_, existing)) => Ok(existing),
                Err(e) => Err(e.to_string()),
            });
        }
        told
    }

    /// A batch decided on what was read, in order: an acquire whose key names a lease still
    /// active at its own `now` is answered with that lease, one whose keyed lease ended exactly
    /// then is granted anew (a lease is expired from its end on), and a later acquire with a
    /// key the batch granted gets that grant; grants count against the quota one by one, the
    /// room left beside them is the quota less the batch's grants, and a refusal leaves none.
    #[tokio::test]
    async fn a_batch_is_decided_in_order_on_what_was_read() {
        let t0 = crate::store::inventory::tests::t0();
        let lease =
            |project: &str, task: &str, at| crate::store::tests::hour_lease(project, task, at);
        let ended = lease("web", "ended", t0 - TimeDelta::hours(1));
        let live = lease("web", "live", t0 - TimeDelta::minutes(30));
        assert_eq!(ended.ends_at(), t0);
        let seen = || Seen {
            keyed: HashMap::from([
                (("web".to_owned(), "ended".to_owned()), vec![ended.clone()]),
                (("web".to_owned(), "live".to_owned()), vec![live.clone()]),
            ]),
            active: HashMap::from([("web".to_owned(), 1), ("api".to_owned(), 2)]),
        };

        let (p1, a1) = pending(lease("web", "t1", t0), Some("ended"), Some(4));
        let (p2, a2) = pending(lease("web", "t2", t0), Some("live"), Some(4));
        let (p3, a3) = pending(lease("web", "t3", t0), None, Some(4));
        let (p4, a4) = pending(lease("web", "t4", t0), Some("ended"), Some(4));
        let mut batch = vec![p1, p2, p3, p4];
        let room = seen().decide(&mut batch).expect("nothing refused");
        assert_eq!(room, HashMap::from([("web".to_owned(), 2)]));
        assert_eq!(
            answers(batch, vec![a1, a2, a3, a4]).await,
            [Ok(false), Ok(true), Ok(false), Ok(true)]
        );

        // Two of three active: the first grant fills the quota, the second is refused.
        let (p1, a1) = pending(lease("api", "t1", t0), None, Some(3));
        let (p2, a2) = pending(lease("api", "t2", t0), None, Some(3));
        let mut batch = vec![p1, p2];
        assert_eq!(seen().decide(&mut batch), None);
        assert_eq!(
            answers(batch, vec![a1, a2]).await,
            [
                Ok(false),
                Err("corrupt row in the store: full: 3 of 3".to_owned())
            ]
        );
    }

    /// A batch's grants, decided as if no lease were active, go in only if their projects
    /// have room for them at the insert: with one lease active and a quota of three, two
    /// grants do (the room is exactly used up); with another replica's lease more, nothing is
    /// written and the batch decided under the lock grants one and refuses the other. A lease
    /// with a grant's key already active leaves nothing written too, and the acquire decided
    /// under the lock is answered with that lease. A whole batch is granted in one round trip
    /// while its quota has room, and decided under the locks once it has none.
    #[tokio::test]
    async fn grants_go_in_only_if_their_projects_have_room() {
        let target = StoreLocation::Postgres(Box::new(super::super::testing::fresh_target().await));
        let (a, b) = (
            Store::open_at(&target).await.expect("opens"),
            Store::open_at(&target).await.expect("opens"),
        );
        let t0 = crate::store::inventory::tests::t0();
        let lease = |project: &str, task: &str| crate::store::tests::hour_lease(project, task, t0);
        let pg = a.pg().expect("postgres");
        let mut c = pg.conn().await.expect("connects");
        let active = |project: &'static str| {
            let store = a.clone();
            async move {
                let c = store
                    .pg()
                    .expect("postgres")
                    .conn()
                    .await
                    .expect("connects");
                let n: i64 = c
                    .client()
                    .query_one(
                        "SELECT COUNT(*) FROM leases WHERE project = $1",
                        &[&project],
                    )
                    .await
                    .expect("counts")
                    .get(0);
                n
            }
        };
        for project in ["web", "api"] {
            b.insert_lease(
                lease(project, "first"),
                t0,
                Quota::<StoreError>::unlimited(),
            )
            .await
            .expect("inserted");
        }

        // A quota of three, one lease active: two grants leave room for one other lease.
        let (p1, a1) = pending(lease("web", "t1"), None, Some(3));
        let (p2, a2) = pending(lease("web", "t2"), None, Some(3));
        let mut batch = vec![p1, p2];
        let room = Seen::default().decide(&mut batch).expect("room for all");
        assert_eq!(room.get("web"), Some(&1));
        assert!(
            pg.insert_if_room(&mut c, &mut batch, &room)
                .await
                .expect("writes")
        );
        assert_eq!(answers(batch, vec![a1, a2]).await, [Ok(false), Ok(false)]);
        assert_eq!(active("web").await, 3);

        // The same, and another replica takes a lease between the read and the insert.
        let (p1, a1) = pending(lease("api", "t1"), None, Some(3));
        let (p2, a2) = pending(lease("api", "t2"), None, Some(3));
        let mut batch = vec![p1, p2];
        let room = Seen::default().decide(&mut batch).expect("room for all");
        b.insert_lease(
            lease("api", "between"),
            t0,
            Quota::<StoreError>::unlimited(),
        )
        .await
        .expect("inserted");
        assert!(
            !pg.insert_if_room(&mut c, &mut batch, &room)
                .await
                .expect("writes")
        );
        assert_eq!(active("api").await, 2, "nothing written");
        pg.decide_locked(&mut c, &mut batch).await.expect("decides");
        assert_eq!(
            answers(batch, vec![a1, a2]).await,
            [
                Ok(false),
                Err("corrupt row in the store: full: 3 of 3".to_owned())
            ]
        );
        assert_eq!(active("api").await, 3);

        // No quota, a key: another replica's lease with that key comes in between.
        let (p, answer) = pending(lease("keyed", "t1"), Some("k"), None);
        let mut batch = vec![p];
        let room = Seen::default().decide(&mut batch).expect("room for all");
        let theirs = b
            .insert_lease_keyed(
                lease("keyed", "t2"),
                Some("k".to_owned()),
                t0,
                Quota::<StoreError>::unlimited(),
            )
            .await
            .expect("inserted");
        assert!(!theirs.1, "a new lease");
        assert!(
            !pg.insert_if_room(&mut c, &mut batch, &room)
                .await
                .expect("writes")
        );
        pg.decide_locked(&mut c, &mut batch).await.expect("decides");
        assert_eq!(answers(batch, vec![answer]).await, [Ok(true)]);
        assert_eq!(active("keyed").await, 1);

        // A whole batch: granted in one round trip while the quota has room (web holds three
        // of four), decided under the locks once it has none.
        let (p, answer) = pending(lease("web", "t3"), None, Some(4));
        let mut batch = vec![p];
        assert_eq!(
            pg.decide_batch(&mut batch).await.expect("decides"),
            Path::OneRoundTrip
        );
        assert_eq!(answers(batch, vec![answer]).await, [Ok(false)]);
        let (p, answer) = pending(lease("web", "t4"), None, Some(4));
        let mut batch = vec![p];
        assert_eq!(
            pg.decide_batch(&mut batch).await.expect("decides"),
            Path::UnderLocks
        );
        assert_eq!(
            answers(batch, vec![answer]).await,
            [Err("corrupt row in the store: full: 4 of 4".to_owned())]
        );
        assert_eq!(active("web").await, 4);
    }

    /// The locks and room of a batch granted in one round trip, by project: far from its
    /// quota with at most [`SLOT_GRANTS`] grants, side by side (the quota lock shared, the
    /// batch's slot exclusive, the room less [`SLOT_RESERVE`]); closer or with more grants,
    /// the quota lock exclusive and the whole room; keys without a quota, the quota lock
    /// shared and a lock per key; neither, no lock. Names sorted, each once.
    #[test]
    fn a_batch_far_from_its_quotas_takes_a_slot() {
        let t0 = crate::store::inventory::tests::t0();
        let plan = |acquires: &[(&str, Option<&str>, Option<u64>)]| {
            let mut batch: Vec<Box<dyn Decide>> = acquires
                .iter()
                .enumerate()
                .map(|(i, (project, key, max))| {
                    let lease = crate::store::tests::hour_lease(project, &format!("t{i}"), t0);
                    pending(lease, *key, *max).0
                })
                .collect();
            let room = Seen::default().decide(&mut batch).expect("room");
            let (locks, room, _) = one_round_trip_locks(&batch, &room, 6, |p| p == "crowded");
            let mut room: Vec<(String, u64)> = room.into_iter().collect();
            room.sort();
            (locks.into_iter().collect::<Vec<_>>(), room)
        };
        let lock = |name: &str, shared: bool| (name.to_owned(), shared);
        let room = |project: &str, n: u64| (project.to_owned(), n);

        // Two grants under 1,000: side by side, in slot 6 mod 4. Under 50, the room left (48)
        // is the reserve exactly: still side by side, with nothing to spare; under 49,
        // exclusive.
        assert_eq!(
            plan(&[("wide", None, Some(1000)), ("wide", None, Some(1000))]),
            (
                vec![
                    lock("lease-quota/wide", true),
                    lock("lease-quota/wide/2", false)
                ],
                vec![room("wide", 998 - SLOT_RESERVE)]
            )
        );
        assert_eq!(SLOT_RESERVE, 48);
        assert_eq!(
            plan(&[("edge", None, Some(50)), ("edge", None, Some(50))]),
            (
                vec![
                    lock("lease-quota/edge", true),
                    lock("lease-quota/edge/2", false)
                ],
                vec![room("edge", 0)]
            )
        );
        assert_eq!(
            plan(&[("edge", None, Some(49)), ("edge", None, Some(49))]),
            (
                vec![lock("lease-quota/edge", false)],
                vec![room("edge", 47)]
            )
        );
        // Far from its quota but found crowded lately: exclusive.
        assert_eq!(
            plan(&[("crowded", None, Some(1000)), ("crowded", None, Some(1000))]),
            (
                vec![lock("lease-quota/crowded", false)],
                vec![room("crowded", 998)]
            )
        );
        // Sixteen grants side by side, seventeen not.
        let many = |n: usize| vec![("wide", None, Some(1000)); n];
        assert_eq!(plan(&many(16)).1, vec![room("wide", 984 - SLOT_RESERVE)]);
        assert_eq!(
            plan(&many(17)),
            (
                vec![lock("lease-quota/wide", false)],
                vec![room("wide", 983)]
            )
        );
        // Keys: without a quota, a lock per key beside the shared quota lock; under a quota
        // near full, the exclusive quota lock covers them; side by side, both. A project with
        // neither takes no lock, and every name comes once, sorted.
        assert_eq!(
            plan(&[
                ("keys", Some("b"), None),
                ("keys", Some("a"), None),
                ("keys", Some("b"), None),
                ("full", Some("a"), Some(3)),
                ("free", None, None),
                ("wide", Some("a"), Some(1000)),
            ]),
            (
                vec![
                    lock("lease-key/keys/a", false),
                    lock("lease-key/keys/b", false),
                    lock("lease-key/wide/a", false),
                    lock("lease-quota/full", false),
                    lock("lease-quota/keys", true),
                    lock("lease-quota/wide", true),
                    lock("lease-quota/wide/2", false),
                ],
                vec![room("full", 2), room("wide", 999 - SLOT_RESERVE)]
            )
        );
    }

    /// A project is crowded for [`CROWDED_FOR`] from when it was marked, not a moment longer,
    /// and marking forgets the projects whose time is up.
    #[test]
    fn a_project_is_crowded_for_a_while() {
        let crowded = Crowded::default();
        let t = std::time::Instant::now();
        crowded.mark(["a"], t);
        crowded.mark(["c"], t + CROWDED_FOR / 2);
        assert!(crowded.is("a", t + CROWDED_FOR - std::time::Duration::from_nanos(1)));
        assert!(!crowded.is("a", t + CROWDED_FOR));
        assert!(!crowded.is("b", t));
        crowded.mark(["b"], t + CROWDED_FOR);
        let mut kept: Vec<String> = crowded.lock().keys().cloned().collect();
        kept.sort();
        assert_eq!(kept, ["b", "c"]);
    }

    /// A batch granted side by side goes in only if its project has room for it and for a
    /// slot's worth of grants of each other slot: under a quota of 50 with one lease active, a
    /// grant does in one round trip (1 + 1 + 48 = 50); with two active it does not, and the
    /// decision under the lock grants it; the project, found crowded, then holds its quota
    /// lock exclusive and is granted in one round trip again. Batches of three replicas racing
    /// for a quota of 60, side by side while it has room and under the lock near it, grant it
    /// exactly.
    #[tokio::test]
    async fn batches_side_by_side_leave_room_for_the_other_slots() {
        let target = StoreLocation::Postgres(Box::new(super::super::testing::fresh_target().await));
        let mut replicas = Vec::new();
        for _ in 0..3 {
            replicas.push(Store::open_at(&target).await.expect("opens"));
        }
        let t0 = crate::store::inventory::tests::t0();
        let lease = |project: &str, task: &str| crate::store::tests::hour_lease(project, task, t0);
        let pg = replicas[0].pg().expect("postgres");
        replicas[1]
            .insert_lease(lease("web", "first"), t0, Quota::<StoreError>::unlimited())
            .await
            .expect("inserted");
        // The third batch comes after the second found the project crowded: it holds the
        // quota lock exclusive, in one round trip again while the quota has room.
        for (task, path) in [
            ("t1", Path::OneRoundTrip),
            ("t2", Path::UnderLocks),
            ("t3", Path::OneRoundTrip),
        ] {
            let (p, answer) = pending(lease("web", task), None, Some(50));
            let mut batch = vec![p];
            assert_eq!(
                pg.decide_batch(&mut batch).await.expect("decides"),
                path,
                "{task}"
            );
            assert_eq!(answers(batch, vec![answer]).await, [Ok(false)], "{task}");
        }

        // 3 replicas × 40 acquires racing for a quota of 60 of "api".
        let mut calls = tokio::task::JoinSet::new();
        for i in 0..120 {
            let (store, lease) = (replicas[i % 3].clone(), lease("api", &format!("r{i}")));
            calls.spawn(async move {
                let quota = Quota::at_most(60, |active| {
                    StoreError::Corrupt(format!("full: {active} of 60"))
                });
                store.insert_lease(lease, t0, quota).await.is_ok()
            });
        }
        let mut granted = 0;
        while let Some(ok) = calls.join_next().await {
            granted += usize::from(ok.expect("joins"));
        }
        assert_eq!(granted, 60);
        let c = pg.conn().await.expect("connects");
        let stored: i64 = c
            .client()
            .query_one("SELECT COUNT(*) FROM leases WHERE project = 'api'", &[])
            .await
            .expect("counts")
            .get(0);
        assert_eq!(stored, 60);
    }

    /// A batch granted side by side waits while a project's quota lock is held exclusive, as a
    /// decision under the locks holds it and as a replica of a version before the slots took
    /// it for every batch: during a rolling upgrade the two never count side by side.
    #[tokio::test]
    async fn a_batch_side_by_side_waits_for_the_quota_lock_held_exclusive() {
        let target = StoreLocation::Postgres(Box::new(super::super::testing::fresh_target().await));
        let store = Store::open_at(&target).await.expect("opens");
        let t0 = crate::store::inventory::tests::t0();
        let pg = store.pg().expect("postgres");
        let holder = pg.conn().await.expect("connects");
        holder
            .client()
            .batch_execute("BEGIN")
            .await
            .expect("begins");
        holder
            .client()
            .execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                &[&quota_lock("web")],
            )
            .await
            .expect("locks");
        let acquire = tokio::spawn({
            let store = store.clone();
            let lease = crate::store::tests::hour_lease("web", "t1", t0);
            async move {
                let quota = Quota::at_most(1000, |active| {
                    StoreError::Corrupt(format!("full: {active} of 1000"))
                });
                store.insert_lease(lease, t0, quota).await
            }
        });
        // Until the server shows the batch waiting for an advisory lock of this database, it
        // must not have been answered.
        let probe = pg.conn().await.expect("connects");
        let waited = super::super::testing::waits(
            &probe,
            "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
               AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            &acquire,
            "granted under the exclusive lock",
        )
        .await;
        assert!(waited, "the batch never waited for the lock");
        holder
            .client()
            .batch_execute("COMMIT")
            .await
            .expect("commits");
        acquire
            .await
            .expect("joins")
            .expect("granted once the lock is free");
    }

    /// What a replica remembers of a lease it wrote is the row exactly, as a read gives it
    /// back (times to the millisecond, the interval to the second), after an acquire and after
    /// a change, so its next change is written from memory (decided once: no read); a change
    /// by another replica in between is not written over (decided again on the row read).
    #[tokio::test]
    async fn a_written_lease_is_remembered_as_stored() {
        let target = StoreLocation::Postgres(Box::new(super::super::testing::fresh_target().await));
        let store = Store::open_at(&target).await.expect("opens");
        let t0 = crate::store::inventory::tests::t0() + TimeDelta::nanoseconds(123_456_789);
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
            .insert_lease(lease, t0, Quota::<StoreError>::unlimited())
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
