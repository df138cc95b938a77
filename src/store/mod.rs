//! The store: SQLite in WAL mode with foreign keys and append-only migrations.
//!
//! Architecture Invariant: this is the only module that knows SQL. Its interface is
//! domain-shaped (leases in, leases out, checks run inside a transaction) so that a
//! PostgreSQL store can take its place. Every call runs on a blocking thread; the
//! connection is never held across an `.await`.
//!
//! | file | the calls of |
//! |---|---|
//! | `mod.rs` | opening, leases, the registry's heartbeat, row helpers |
//! | `inventory` | the audit pass: runs, walks, resources, findings |
//! | `reap` | the reaper: deletion marks, the fenced `deleting` state, decisions |
//! | `chain` | the audit log: the keyed hash chain (append, list, verify) |
//! | `locks` | the act lock held across processes |
//! | `outbox` | mail: notices, messages, roll-up |
//! | `cost` | spend per day |
//! | `copy` | `store copy`: a SQLite store moved whole into an empty PostgreSQL one |
//! | `timeline` | a lease's story: its events and what every other table says of it, one snapshot |
//! | `pg` | the PostgreSQL backend of the same calls |
//! | `retention` | the purge of history past its horizon, a bounded batch per write |
//! | `migrations`, `writer` | the schema; the one writer thread with group commit |

mod chain;
mod copy;
mod cost;
mod inventory;
mod locks;
mod migrations;
mod outbox;
mod pg;
mod reap;
mod restore;
mod retention;
mod teardown;
mod timeline;
mod writer;

/// The store's test records, for tests of the tasks that write them.
#[cfg(test)]
pub(crate) use inventory::tests as inventory_tests;

pub use crate::config::{PgTarget, StoreLocation, TargetError};
pub use chain::AuditQuery;
pub use copy::{Copied, CopyError};
pub use cost::SpendTotal;
pub use inventory::{AuditFilter, FindingChange, LiveTotals, Strays};
pub use locks::{ACT_LOCK, HeldBy, LockHolder};
pub use outbox::{Notice, OutboxRow, Rollup, expiry_warning_key};
pub use reap::ReapUpdate;
pub use restore::Suspension;
pub use retention::PurgeCutoffs;
pub use teardown::EndedLease;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::audit::AuditKey;
use crate::model::{HumanDuration, LeaseId, ProjectName};
use crate::model::{Lease, LeaseEvent, LeaseState};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open store {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("cannot create the store's directory {path}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "store schema version {found} is newer than this build knows ({known}); refusing to touch it"
    )]
    TooNew { found: i64, known: i64 },
    #[error("store query failed")]
    Sql(#[from] rusqlite::Error),
    #[error("corrupt row in the store: {0}")]
    Corrupt(String),
    #[error("store worker thread failed")]
    Join(#[from] tokio::task::JoinError),
    #[error("store commit failed: {0}")]
    Commit(String),
    #[error("the store's writer thread has stopped")]
    WriterGone,
    #[error("a store write panicked (a bug); its changes were rolled back")]
    Panicked,
    #[error("cannot start the store's writer thread")]
    Spawn(#[source] std::io::Error),
    #[error("the store at {target} is unavailable: {reason}")]
    Unavailable { target: String, reason: String },
    #[error("store query failed")]
    Pg(#[from] tokio_postgres::Error),
    #[error("this operation is not available on a PostgreSQL store")]
    NotOnPostgres,
    #[error(
        "a PostgreSQL store is backed up by the database's own tools (pg_dump, restored with pg_restore), not by ephemera"
    )]
    BackupWithPgDump,
    #[error(
        "the store was opened without the audit key: audit records can be neither written nor verified"
    )]
    NoAuditKey,
}

impl StoreError {
    /// Whether the store could not be reached (a database down, restarting or refusing
    /// connections), as opposed to a failed statement: callers answer 503 and retry later.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Unavailable { .. } => true,
            StoreError::Pg(e) => pg::is_unavailable(e),
            _ => false,
        }
    }
}

/// Filters for listing leases.
#[derive(Debug, Clone, Default)]
pub struct LeaseFilter {
    pub project: Option<ProjectName>,
    /// Confines the listing to these projects (set for lessees).
    pub projects_in: Option<Vec<ProjectName>>,
    pub state: Option<LeaseState>,
    pub owner: Option<String>,
    /// Cursor: return leases older than this one.
    pub before: Option<LeaseId>,
    pub limit: u32,
}

/// One page of a listing, newest first; `next` is the cursor for the following page.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<LeaseId>,
}

/// How many leases of a project may be active at once, and what an acquire beyond that is
/// told. A limit the store can read (not a closure it can only ask): a PostgreSQL replica
/// checks it again inside the insert, against the count at that moment.
pub struct Quota<E> {
    limit: Option<(u64, Refusal<E>)>,
}

type Refusal<E> = Box<dyn FnOnce(u64) -> E + Send>;

impl<E> std::fmt::Debug for Quota<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quota").field("max", &self.max()).finish()
    }
}

impl<E> Quota<E> {
    /// No limit.
    pub fn unlimited() -> Self {
        Quota { limit: None }
    }

    /// At most `max` active; an acquire beyond gets `refuse(active)`.
    pub fn at_most(max: u64, refuse: impl FnOnce(u64) -> E + Send + 'static) -> Self {
        Quota {
            limit: Some((max, Box::new(refuse))),
        }
    }

    /// The most leases of the project that may be active, if any.
    pub(crate) fn max(&self) -> Option<u64> {
        self.limit.as_ref().map(|(max, _)| *max)
    }

    /// Whether one more lease fits beside `active` ones.
    pub(crate) fn fits(&self, active: u64) -> bool {
        self.max().is_none_or(|max| active < max)
    }

    /// The refusal of an acquire that found `active` leases (none when it would fit).
    pub(crate) fn refusal(self, active: u64) -> Option<E> {
        if self.fits(active) {
            return None;
        }
        self.limit.map(|(_, refuse)| refuse(active))
    }

    /// Ok when one more lease fits beside `active` ones, else the refusal.
    fn check(self, active: u64) -> Result<(), E> {
        self.refusal(active).map_or(Ok(()), Err)
    }
}

/// Handle to the store; cheap to clone. On SQLite, writes go through one writer thread
/// (group commit, see [`writer`]) and reads use a pool of connections that see only committed
/// data; on PostgreSQL, a pool of connections serves both (see [`pg`]).
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
    /// The key of the audit chain's MACs (see [`crate::audit`]); never stored in the file.
    audit_key: Option<Arc<AuditKey>>,
}

#[derive(Debug, Clone)]
enum Backend {
    Sqlite {
        readers: Arc<ReadPool>,
        writer: writer::Writer,
    },
    Postgres(Arc<pg::Pg>),
}

impl Store {
    /// Opens (creating if needed) the store and brings its schema up to date.
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || Store::open_blocking(&path)).await?
    }

    /// Opens the store wherever it lives: a SQLite file, or a PostgreSQL database (connecting
    /// and bringing its schema up to date).
    pub async fn open_at(at: &StoreLocation) -> Result<Store, StoreError> {
        match at {
            StoreLocation::Sqlite(path) => Store::open(path).await,
            StoreLocation::Postgres(target) => Ok(Store {
                backend: Backend::Postgres(Arc::new(pg::Pg::open(target.as_ref().clone()).await?)),
                audit_key: None,
            }),
        }
    }

    /// A store on a fresh database of the test PostgreSQL server.
    #[cfg(test)]
    pub(crate) async fn test_postgres_location() -> StoreLocation {
        StoreLocation::Postgres(Box::new(pg::testing::fresh_target().await))
    }

    /// A store on a fresh database of the test PostgreSQL server.
    #[cfg(test)]
    pub(crate) async fn open_test_postgres() -> Store {
        let target = pg::testing::fresh_target().await;
        Store::open_at(&StoreLocation::Postgres(Box::new(target)))
            .await
            .expect("opens the PostgreSQL store")
    }

    /// The stores every store test runs against: SQLite (a file in `dir`) and PostgreSQL.
    #[cfg(test)]
    pub(crate) async fn open_both_for_test(dir: &Path) -> [(&'static str, Store); 2] {
        [
            (
                "sqlite",
                Store::open(&dir.join("s.db")).await.expect("opens"),
            ),
            ("postgres", Store::open_test_postgres().await),
        ]
    }

    /// Two handles on one store (two processes, or two replicas), on each engine.
    #[cfg(test)]
    pub(crate) async fn open_twice_for_test(dir: &Path) -> [(&'static str, Store, Store); 2] {
        let path = dir.join("s.db");
        let target = StoreLocation::Postgres(Box::new(pg::testing::fresh_target().await));
        let pg = || async { Store::open_at(&target).await.expect("opens") };
        [
            (
                "sqlite",
                Store::open(&path).await.expect("opens"),
                Store::open(&path).await.expect("a second handle"),
            ),
            ("postgres", pg().await, pg().await),
        ]
    }

    /// Runs `sql` (statements separated by `;`, written for both engines) in one go.
    #[cfg(test)]
    pub(crate) async fn execute_batch_for_test(&self, sql: &str) {
        if let Some(pg) = self.pg() {
            return pg.batch_execute_for_test(sql).await.expect("the SQL runs");
        }
        let sql = sql.to_owned();
        self.writer()
            .expect("sqlite")
            .write(move |c| Ok::<_, StoreError>(c.execute_batch(&sql)?))
            .await
            .expect("the SQL runs");
    }

    /// The rows of `sql` (written for both engines), every value as text (`None` for NULL).
    #[cfg(test)]
    pub(crate) async fn text_rows_for_test(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        if let Some(pg) = self.pg() {
            return pg.text_rows_for_test(sql).await;
        }
        let sql = sql.to_owned();
        self.read(move |c| {
            let mut stmt = c.prepare(&sql)?;
            let n = stmt.column_count();
            let rows = stmt
                .query_map([], |r| {
                    (0..n)
                        .map(|i| {
                            Ok(match r.get::<_, rusqlite::types::Value>(i)? {
                                rusqlite::types::Value::Null => None,
                                rusqlite::types::Value::Integer(v) => Some(v.to_string()),
                                rusqlite::types::Value::Real(v) => Some(v.to_string()),
                                rusqlite::types::Value::Text(t) => Some(t),
                                rusqlite::types::Value::Blob(b) => Some(format!("{b:?}")),
                            })
                        })
                        .collect::<rusqlite::Result<Vec<_>>>()
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok::<_, StoreError>(rows)
        })
        .await
        .expect("the query runs")
    }

    #[cfg(test)]
    fn sqlite_readers(&self) -> &ReadPool {
        match &self.backend {
            Backend::Sqlite { readers, .. } => readers,
            Backend::Postgres(_) => panic!("a SQLite store"),
        }
    }

    /// The PostgreSQL backend, when this store is one.
    fn pg(&self) -> Option<&pg::Pg> {
        match &self.backend {
            Backend::Postgres(pg) => Some(pg),
            Backend::Sqlite { .. } => None,
        }
    }

    /// The SQLite writer; a call not (yet) written for PostgreSQL fails there.
    fn writer(&self) -> Result<&writer::Writer, StoreError> {
        match &self.backend {
            Backend::Sqlite { writer, .. } => Ok(writer),
            Backend::Postgres(_) => Err(StoreError::NotOnPostgres),
        }
    }

    /// Closes the store when this is its last handle: once this returns, no connection of it
    /// is open and SQLite has folded the WAL back into the file (as `store restore` needs
    /// before it moves the files).
    pub async fn close(self) {
        if let Backend::Sqlite { readers, writer } = self.backend {
            drop(readers);
            writer.close().await;
        }
    }

    fn open_blocking(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
                path: dir.to_owned(),
                source,
            })?;
        }
        let open_err = |source| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        let mut conn = Connection::open(path).map_err(open_err)?;
        // WAL lets readers run beside the writer; FULL makes every commit durable
        // (power loss included), which leases need more than raw speed. A new store gets 16 KiB
        // pages (an existing one keeps its own): the pass writes a million rows through the WAL
        // and again at checkpoint, a page per write call, and 4 KiB pages cost it a quarter of
        // its CPU time in those calls (the pipeline bench: 5.6 s of store CPU at 4 KiB, 4.4 s at
        // 16 KiB), while the lease API stays far above its target (26k operations/s, from 34k).
        conn.execute_batch(
            "PRAGMA page_size = 16384;
             PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA foreign_keys = ON;
             PRAGMA busy_timeout = 5000;",
        )
        .map_err(open_err)?;
        migrations::apply(&mut conn)?;
        let readers = ReadPool::open(path, READERS).map_err(open_err)?;
        Ok(Store {
            backend: Backend::Sqlite {
                readers: Arc::new(readers),
                writer: writer::Writer::start(conn).map_err(StoreError::Spawn)?,
            },
            audit_key: None,
        })
    }

    /// The store, with the key that chains (and verifies) its audit records.
    pub fn with_audit_key(mut self, key: AuditKey) -> Store {
        self.audit_key = Some(Arc::new(key));
        self
    }

    fn audit_key(&self) -> Result<Arc<AuditKey>, StoreError> {
        self.audit_key.clone().ok_or(StoreError::NoAuditKey)
    }

    /// Runs a read on a blocking thread with one of the pool's reader connections; waits
    /// (without holding a thread) while all of them are busy.
    async fn read<T, E>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let readers = match &self.backend {
            Backend::Sqlite { readers, .. } => readers.clone(),
            Backend::Postgres(_) => return Err(E::from(StoreError::NotOnPostgres)),
        };
        let permit = readers
            .free
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| E::from(StoreError::WriterGone))?;
        tokio::task::spawn_blocking(move || {
            // Declared first, dropped last: the connection is back before the permit.
            let _permit = permit;
            let mut conn = readers.lend();
            f(&mut conn)
        })
        .await
        .map_err(|e| E::from(StoreError::Join(e)))?
    }

    /// Whether the store can serve: the reader reads the schema from the file (`SELECT 1`
    /// would not touch it), and the writer thread takes the write lock and commits an empty
    /// transaction (which writes nothing). A dead writer thread fails here, not at the next
    /// lease request.
    pub async fn ping(&self) -> Result<(), StoreError> {
        if let Some(pg) = self.pg() {
            return pg.ping().await;
        }
        self.read(|c| {
            c.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))?;
            Ok::<_, StoreError>(())
        })
        .await?;
        self.writer()?.write(|_| Ok::<_, StoreError>(())).await
    }

    /// Inserts a new lease if its project's `quota` has room for it beside the leases active
    /// at `now`; the count and the insert are one atomic step.
    pub async fn insert_lease<E>(
        &self,
        lease: Lease,
        now: DateTime<Utc>,
        quota: Quota<E>,
    ) -> Result<Lease, E>
    where
        E: From<StoreError> + Send + 'static,
    {
        self.insert_lease_keyed(lease, None, now, quota)
            .await
            .map(|(l, _)| l)
    }

    /// Like [`Store::insert_lease`], with an idempotency key: when a lease of the project with
    /// `key` is active at `now`, that lease is returned (`true`) and nothing is written; the
    /// look-up and the insert are one atomic step, so two racing acquires make one lease.
    pub async fn insert_lease_keyed<E>(
        &self,
        lease: Lease,
        key: Option<String>,
        now: DateTime<Utc>,
        quota: Quota<E>,
    ) -> Result<(Lease, bool), E>
    where
        E: From<StoreError> + Send + 'static,
    {
        if let Backend::Postgres(pg) = &self.backend {
            return pg.insert_lease_keyed(lease, key, now, quota).await;
        }
        self.writer()?
            .write(move |tx| {
                if let Some(k) = &key {
                    let sql = format!(
                        "SELECT {LEASE_COLUMNS} FROM leases WHERE project = ?1 AND idem_key = ?2
                         AND released_at IS NULL AND ends_at > ?3"
                    );
                    let existing = tx
                        .prepare_cached(&sql)
                        .and_then(|mut s| {
                            s.query_row(
                                params![lease.project.as_str(), k, now.timestamp_millis()],
                                RawLease::from_row,
                            )
                            .optional()
                        })
                        .map_err(StoreError::from)?;
                    if let Some(raw) = existing {
                        return Ok((raw.into_lease()?, true));
                    }
                }
                let active: i64 = tx
                    .query_row(
                        "SELECT COUNT(*) FROM leases
                     WHERE project = ?1 AND released_at IS NULL AND ends_at > ?2",
                        params![lease.project.as_str(), now.timestamp_millis()],
                        |r| r.get(0),
                    )
                    .map_err(StoreError::from)?;
                quota.check(u64::try_from(active).unwrap_or(0))?;
                write_lease(tx, &lease, true)?;
                if let Some(k) = &key {
                    tx.execute(
                        "UPDATE leases SET idem_key = ?1 WHERE id = ?2",
                        params![k, lease.id.to_string()],
                    )
                    .map_err(StoreError::from)?;
                }
                Ok((lease, false))
            })
            .await
    }

    /// Reads a lease, lets `f` change it, and writes it back with the events `f` returns
    /// (appended to `lease_events`), atomically: on SQLite in one transaction, on PostgreSQL
    /// only if the row is still as read, else `f` is asked again about the row as it is now
    /// (so `f` may run more than once; what it returns last is written). `Ok(None)` when
    /// there is no such lease; an error from `f` writes nothing.
    pub async fn update_lease<E>(
        &self,
        id: LeaseId,
        mut f: impl FnMut(&mut Lease) -> Result<Vec<LeaseEvent>, E> + Send + 'static,
    ) -> Result<Option<Lease>, E>
    where
        E: From<StoreError> + Send + 'static,
    {
        if let Some(pg) = self.pg() {
            return pg.update_lease(id, f).await;
        }
        self.writer()?
            .write(move |tx| {
                let Some(mut lease) = read_lease(tx, id)? else {
                    return Ok(None);
                };
                let events = f(&mut lease)?;
                write_lease(tx, &lease, false)?;
                if !events.is_empty() {
                    let mut insert = tx
                        .prepare_cached(
                            "INSERT INTO lease_events (lease_id, at, kind, principal, detail)
                             VALUES (?1, ?2, ?3, ?4, ?5)",
                        )
                        .map_err(StoreError::from)?;
                    let id = lease.id.to_string();
                    for e in &events {
                        insert
                            .execute(params![
                                id,
                                ms(e.at),
                                e.change.kind(),
                                e.principal,
                                e.change.to_json()
                            ])
                            .map_err(StoreError::from)?;
                    }
                }
                Ok(Some(lease))
            })
            .await
    }

    /// Records that the registry serves at `wall_now` (wall-clock time). With `credit`, the
    /// time since it last did is the registry's own downtime: when it exceeds `min_gap`,
    /// every lease still active when it stopped (unreleased, ending after `lease_now - gap`
    /// on the leases' clock) has its deadlines (`expires_at`, the last heartbeat, `ends_at`)
    /// moved by that gap, so no lessee is charged for time it could not reach us. Returns the
    /// gap credited and to how many leases.
    pub async fn registry_serving(
        &self,
        wall_now: DateTime<Utc>,
        lease_now: DateTime<Utc>,
        credit: bool,
        min_gap: chrono::TimeDelta,
    ) -> Result<Option<(chrono::TimeDelta, u64)>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg
                .registry_serving(wall_now, lease_now, credit, min_gap)
                .await;
        }
        self.writer()?
            .write(move |c| {
                let last: Option<i64> = c
                    .prepare_cached("SELECT at FROM registry_alive WHERE id = 1")?
                    .query_row([], |r| r.get(0))
                    .optional()?;
                c.prepare_cached(
                    "INSERT INTO registry_alive (id, at) VALUES (1, ?1)
                     ON CONFLICT (id) DO UPDATE SET at = MAX(at, excluded.at)",
                )?
                .execute([ms(wall_now)])?;
                let Some(last) = last else { return Ok(None) };
                let gap = chrono::TimeDelta::milliseconds(ms(wall_now) - last);
                if !credit || gap <= min_gap {
                    return Ok(None);
                }
                let g = gap.num_milliseconds();
                let n = c
                    .prepare_cached(
                        "UPDATE leases SET
                             expires_at = expires_at + ?1,
                             ends_at = ends_at + ?1,
                             last_heartbeat_at = CASE WHEN heartbeat_interval_s IS NULL
                                 THEN last_heartbeat_at
                                 ELSE COALESCE(last_heartbeat_at, created_at) + ?1 END
                         WHERE released_at IS NULL AND ends_at > ?2",
                    )?
                    .execute(params![g, ms(lease_now) - g])?;
                Ok(Some((gap, n as u64)))
            })
            .await
    }

    pub async fn get_lease(&self, id: LeaseId) -> Result<Option<Lease>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.get_lease(id).await;
        }
        self.read(move |c| read_lease(c, id)).await
    }

    pub async fn list_leases(
        &self,
        filter: LeaseFilter,
        now: DateTime<Utc>,
    ) -> Result<Page<Lease>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.list_leases(filter, now).await;
        }
        self.read(move |c| list_leases(c, &filter, now)).await
    }

    /// Number of leases per (project, state) at `now`.
    pub async fn count_leases(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<(String, LeaseState, u64)>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.count_leases(now).await;
        }
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT project,
                        CASE WHEN released_at IS NOT NULL THEN 'released'
                             WHEN ends_at <= ?1 THEN 'expired'
                             ELSE 'active' END AS state,
                        COUNT(*)
                 FROM leases GROUP BY project, state",
            )?;
            let rows = stmt.query_map([now.timestamp_millis()], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (project, state, n) = row?;
                let state =
                    LeaseState::parse(&state).ok_or_else(|| StoreError::Corrupt(state.clone()))?;
                out.push((project, state, u64::try_from(n).unwrap_or(0)));
            }
            Ok(out)
        })
        .await
    }

    /// Per project, how long its leases released since `since` ran (release minus creation,
    /// in milliseconds), the newest `limit` of them; one indexed read per project.
    pub async fn lease_durations_since(
        &self,
        projects: Vec<String>,
        since: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<(String, Vec<i64>)>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.lease_durations_since(projects, since, limit).await;
        }
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT released_at - created_at FROM leases
                 WHERE project = ?1 AND released_at >= ?2
                 ORDER BY released_at DESC LIMIT ?3",
            )?;
            let mut out = Vec::with_capacity(projects.len());
            for project in projects {
                let durations = stmt
                    .query_map(params![project, since.timestamp_millis(), limit], |r| {
                        r.get(0)
                    })?
                    .collect::<Result<Vec<i64>, _>>()?;
                out.push((project, durations));
            }
            Ok(out)
        })
        .await
    }

    /// Per project, the leases active at `now` that end within its window
    /// (`now < ends_at <= now + window`); one indexed count per project.
    pub async fn count_leases_ending_within(
        &self,
        now: DateTime<Utc>,
        windows: Vec<(String, chrono::TimeDelta)>,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.count_leases_ending_within(now, windows).await;
        }
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT COUNT(*) FROM leases
                 WHERE project = ?1 AND released_at IS NULL AND ends_at > ?2 AND ends_at <= ?3",
            )?;
            let mut out = Vec::with_capacity(windows.len());
            for (project, window) in windows {
                let until = (now + window).timestamp_millis();
                let n: i64 = stmt
                    .query_row(params![project, now.timestamp_millis(), until], |r| {
                        r.get(0)
                    })?;
                out.push((project, u64::try_from(n).unwrap_or(0)));
            }
            Ok(out)
        })
        .await
    }
}

/// Reader connections: the lease API's reads must not queue behind a pass's long read or a
/// flood of scrapes (WAL lets each see the last commit without blocking the writer).
const READERS: usize = 4;

/// A fixed set of read-only connections; a semaphore permit entitles its holder to one.
#[derive(Debug)]
struct ReadPool {
    idle: Mutex<Vec<Connection>>,
    free: Arc<tokio::sync::Semaphore>,
}

impl ReadPool {
    fn open(path: &Path, n: usize) -> rusqlite::Result<ReadPool> {
        let mut idle = Vec::with_capacity(n);
        for _ in 0..n {
            let c = Connection::open(path)?;
            c.execute_batch("PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;")?;
            idle.push(c);
        }
        Ok(ReadPool {
            idle: Mutex::new(idle),
            free: Arc::new(tokio::sync::Semaphore::new(n)),
        })
    }

    /// An idle connection, back in the pool when the guard drops (a panicking read included:
    /// SQLite finalizes what it had open, and the connection stays usable).
    /// The caller holds a permit, so one is idle.
    fn lend(&self) -> Lent<'_> {
        let conn = self
            .idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()
            .expect("a permit means an idle reader");
        Lent {
            pool: self,
            conn: Some(conn),
        }
    }
}

struct Lent<'a> {
    pool: &'a ReadPool,
    conn: Option<Connection>,
}

impl std::ops::Deref for Lent<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn.as_ref().expect("lent until dropped")
    }
}

impl std::ops::DerefMut for Lent<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        self.conn.as_mut().expect("lent until dropped")
    }
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            self.pool
                .idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(c);
        }
    }
}

/// The columns [`RawLease`] reads, as a literal (for `concat!` into static SQL).
macro_rules! lease_columns {
    () => {
        "id, project, task, owner, principal, created_at, expires_at,
        heartbeat_interval_s, last_heartbeat_at, released_at, labels, regions"
    };
}
pub(crate) use lease_columns;

pub(super) const LEASE_COLUMNS: &str = lease_columns!();

fn write_lease(c: &Connection, l: &Lease, insert: bool) -> Result<(), StoreError> {
    let labels =
        serde_json::to_string(&l.labels).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let regions =
        serde_json::to_string(&l.regions).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let sql = if insert {
        "INSERT INTO leases (id, project, task, owner, principal, created_at, expires_at,
            heartbeat_interval_s, last_heartbeat_at, released_at, labels, regions, ends_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
    } else {
        "UPDATE leases SET project = ?2, task = ?3, owner = ?4, principal = ?5, created_at = ?6,
            expires_at = ?7, heartbeat_interval_s = ?8, last_heartbeat_at = ?9, released_at = ?10,
            labels = ?11, regions = ?12, ends_at = ?13
         WHERE id = ?1"
    };
    c.prepare_cached(sql)?.execute(params![
        l.id.to_string(),
        l.project.as_str(),
        l.task,
        l.owner,
        l.principal,
        l.created_at.timestamp_millis(),
        l.expires_at.timestamp_millis(),
        l.heartbeat_interval
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
        l.last_heartbeat_at.map(|t| t.timestamp_millis()),
        l.released_at.map(|t| t.timestamp_millis()),
        labels,
        regions,
        l.ends_at().timestamp_millis(),
    ])?;
    Ok(())
}

fn read_lease(c: &Connection, id: LeaseId) -> Result<Option<Lease>, StoreError> {
    let sql = format!("SELECT {LEASE_COLUMNS} FROM leases WHERE id = ?1");
    let raw = c
        .prepare_cached(&sql)?
        .query_row([id.to_string()], RawLease::from_row)
        .optional()?;
    raw.map(RawLease::into_lease).transpose()
}

fn list_leases(
    c: &Connection,
    f: &LeaseFilter,
    now: DateTime<Utc>,
) -> Result<Page<Lease>, StoreError> {
    let mut sql = format!("SELECT {LEASE_COLUMNS} FROM leases WHERE 1 = 1");
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    let mut arg = |sql: &mut String, clause: &str, v: rusqlite::types::Value| {
        args.push(v);
        sql.push_str(&clause.replace('?', &format!("?{}", args.len())));
    };
    if let Some(p) = &f.project {
        arg(&mut sql, " AND project = ?", p.as_str().to_owned().into());
    }
    if let Some(ps) = &f.projects_in {
        sql.push_str(" AND project IN (SELECT value FROM json_each(");
        let list = serde_json::to_string(&ps.iter().map(ProjectName::as_str).collect::<Vec<_>>())
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        arg(&mut sql, "?))", list.into());
    }
    if let Some(o) = &f.owner {
        arg(&mut sql, " AND owner = ?", o.clone().into());
    }
    let now_ms = now.timestamp_millis();
    match f.state {
        Some(LeaseState::Released) => sql.push_str(" AND released_at IS NOT NULL"),
        Some(LeaseState::Active) => arg(
            &mut sql,
            " AND released_at IS NULL AND ends_at > ?",
            now_ms.into(),
        ),
        Some(LeaseState::Expired) => arg(
            &mut sql,
            " AND released_at IS NULL AND ends_at <= ?",
            now_ms.into(),
        ),
        None => {}
    }
    if let Some(b) = f.before {
        arg(&mut sql, " AND id < ?", b.to_string().into());
    }
    // One extra row tells whether another page follows.
    let limit = f.limit.clamp(1, 1000);
    arg(
        &mut sql,
        " ORDER BY id DESC LIMIT ?",
        i64::from(limit + 1).into(),
    );
    let mut stmt = c.prepare(&sql)?;
    let raws = stmt
        .query_map(rusqlite::params_from_iter(args), RawLease::from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    let mut items = raws
        .into_iter()
        .map(RawLease::into_lease)
        .collect::<Result<Vec<_>, _>>()?;
    let next = next_cursor(&mut items, limit, |l| l.id);
    Ok(Page { items, next })
}

/// Times are stored as UTC milliseconds since the epoch.
pub(super) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// Tags as stored: packed since migration 3; rows last written before it hold JSON.
pub(super) fn stored_tags(text: &str) -> Result<crate::model::Tags, serde_json::Error> {
    if text.starts_with('{') {
        serde_json::from_str(text)
    } else {
        Ok(crate::model::Tags::from_packed(text))
    }
}

/// The domain's words as SQL text: written by their name, read back through their parser (a
/// text no word has is a conversion failure naming it).
macro_rules! sql_words {
    ($($t:ty),+) => {$(
        impl rusqlite::types::ToSql for $t {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(rusqlite::types::ToSqlOutput::from(self.as_str()))
            }
        }

        impl rusqlite::types::FromSql for $t {
            fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
                let text = v.as_str()?;
                text.parse().map_err(|_| {
                    rusqlite::types::FromSqlError::Other(
                        format!("bad {} `{text}`", stringify!($t)).into(),
                    )
                })
            }
        }
    )+};
}

/// The domain's names as SQL text, read back through their parsers.
macro_rules! sql_names {
    ($($t:ty),+) => {$(
        impl rusqlite::types::ToSql for $t {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(rusqlite::types::ToSqlOutput::from(self.to_string()))
            }
        }

        impl rusqlite::types::FromSql for $t {
            fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
                let text = v.as_str()?;
                <$t>::parse(text).map_err(|e| {
                    rusqlite::types::FromSqlError::Other(
                        format!("bad {} `{text}`: {e}", stringify!($t)).into(),
                    )
                })
            }
        }
    )+};
}

sql_names!(crate::model::Arn, crate::model::ProjectName);

sql_words!(
    crate::model::TaskName,
    crate::model::RunOutcome,
    crate::model::WalkOutcome,
    crate::model::Decision,
    crate::model::ReapMode,
    crate::model::MailKind,
    crate::model::Source
);

/// A column that does not decode to its domain type: reported as a conversion failure.
pub(super) fn bad(col: usize, what: &str, v: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        col,
        rusqlite::types::Type::Text,
        format!("bad {what} `{v}`").into(),
    )
}

pub(super) fn time_at(r: &Row<'_>, col: usize) -> rusqlite::Result<DateTime<Utc>> {
    let v: i64 = r.get(col)?;
    DateTime::from_timestamp_millis(v).ok_or_else(|| bad(col, "time", &v.to_string()))
}

pub(super) fn opt_time_at(r: &Row<'_>, col: usize) -> rusqlite::Result<Option<DateTime<Utc>>> {
    match r.get::<_, Option<i64>>(col)? {
        None => Ok(None),
        Some(v) => DateTime::from_timestamp_millis(v)
            .map(Some)
            .ok_or_else(|| bad(col, "time", &v.to_string())),
    }
}

pub(super) fn verdict_at(r: &Row<'_>, col: usize) -> rusqlite::Result<crate::model::Verdict> {
    let v: String = r.get(col)?;
    crate::model::Verdict::parse(&v).ok_or_else(|| bad(col, "verdict", &v))
}

/// A stored time read back; an impossible value is a conversion failure of the row.
pub(super) fn from_ms(v: i64) -> rusqlite::Result<DateTime<Utc>> {
    DateTime::from_timestamp_millis(v).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Integer,
            format!("bad time {v}").into(),
        )
    })
}

/// Listings fetch one row more than `limit` to tell whether another page follows: drops it
/// and returns the cursor of the last row kept, if so.
pub(super) fn next_cursor<T, C>(
    items: &mut Vec<T>,
    limit: u32,
    cursor: impl Fn(&T) -> C,
) -> Option<C> {
    if items.len() <= limit as usize {
        return None;
    }
    items.truncate(limit as usize);
    items.last().map(cursor)
}

/// A lease row before its columns are checked.
pub(super) struct RawLease {
    id: String,
    project: String,
    task: String,
    owner: String,
    principal: String,
    created_at: i64,
    expires_at: i64,
    heartbeat_interval_s: Option<i64>,
    last_heartbeat_at: Option<i64>,
    released_at: Option<i64>,
    labels: String,
    regions: String,
}

impl RawLease {
    pub(super) fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(RawLease {
            id: r.get(0)?,
            project: r.get(1)?,
            task: r.get(2)?,
            owner: r.get(3)?,
            principal: r.get(4)?,
            created_at: r.get(5)?,
            expires_at: r.get(6)?,
            heartbeat_interval_s: r.get(7)?,
            last_heartbeat_at: r.get(8)?,
            released_at: r.get(9)?,
            labels: r.get(10)?,
            regions: r.get(11)?,
        })
    }

    pub(super) fn into_lease(self) -> Result<Lease, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("lease {}: bad {what}", self.id));
        let time =
            |ms: i64, what: &str| DateTime::from_timestamp_millis(ms).ok_or_else(|| corrupt(what));
        Ok(Lease {
            id: self.id.parse().map_err(|_| corrupt("id"))?,
            project: ProjectName::parse(&self.project).map_err(|_| corrupt("project"))?,
            created_at: time(self.created_at, "created_at")?,
            expires_at: time(self.expires_at, "expires_at")?,
            heartbeat_interval: self
                .heartbeat_interval_s
                .map(|s| {
                    u64::try_from(s)
                        .map(HumanDuration::from_secs)
                        .map_err(|_| corrupt("heartbeat_interval_s"))
                })
                .transpose()?,
            last_heartbeat_at: self
                .last_heartbeat_at
                .map(|t| time(t, "last_heartbeat_at"))
                .transpose()?,
            released_at: self
                .released_at
                .map(|t| time(t, "released_at"))
                .transpose()?,
            labels: serde_json::from_str(&self.labels).map_err(|_| corrupt("labels"))?,
            regions: serde_json::from_str(&self.regions).map_err(|_| corrupt("regions"))?,
            task: self.task,
            owner: self.owner,
            principal: self.principal,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A long read (a pass's, a scrape's) holds one reader; the lease API's reads use another
    /// instead of queueing behind it. A panicking read gives its connection back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_do_not_queue_behind_a_long_read_and_survive_panics() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("s.db")).await.expect("opens");
        for _ in 0..READERS + 1 {
            let r = store
                .read(|_| -> Result<(), StoreError> { panic!("a bug in a read") })
                .await;
            assert!(matches!(r, Err(StoreError::Join(_))), "{r:?}");
        }
        let (release, held) = std::sync::mpsc::channel::<()>();
        let long = tokio::spawn({
            let store = store.clone();
            async move {
                store
                    .read(move |c| {
                        let n: i64 =
                            c.query_row("SELECT count(*) FROM leases", [], |r| r.get(0))?;
                        held.recv().expect("released");
                        Ok::<_, StoreError>(n)
                    })
                    .await
            }
        });
        for _ in 0..READERS * 3 {
            let now = Utc::now();
            let counted =
                tokio::time::timeout(std::time::Duration::from_secs(10), store.count_leases(now))
                    .await
                    .expect("not queued behind the long read");
            assert_eq!(counted.expect("reads"), vec![]);
        }
        release.send(()).expect("long read waits");
        assert_eq!(long.await.expect("joins").expect("reads"), 0);
    }

    /// `close` returns only once the store's connections are closed: the WAL is folded back
    /// and removed, so `store restore` can move the files without racing the writer thread;
    /// with another handle alive it closes nothing.
    #[tokio::test]
    async fn close_waits_for_the_connections_to_end() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("s.db");
        let wal = dir.path().join("s.db-wal");
        let store = Store::open(&path).await.expect("opens");
        store.set_last_alive(Utc::now()).await.expect("writes");
        let other = store.clone();
        store.close().await;
        assert!(wal.exists(), "another handle keeps the store open");
        other
            .set_last_alive(Utc::now())
            .await
            .expect("still writes");
        other.close().await;
        assert!(!wal.exists(), "the WAL outlived close");
        for _ in 0..20 {
            let store = Store::open(&path).await.expect("opens");
            store.set_last_alive(Utc::now()).await.expect("writes");
            store.close().await;
            assert!(!wal.exists(), "the WAL outlived close");
        }
    }

    /// Acquires of two projects racing in one batch keep each project's quota and each key
    /// its own, on both engines (PostgreSQL decides them in one transaction).
    #[tokio::test]
    async fn acquires_of_two_projects_keep_their_own_quota_and_keys() {
        let dir = tempfile::tempdir().expect("temp dir");
        for (engine, store) in Store::open_both_for_test(dir.path()).await {
            quotas_and_keys_per_project(engine, store).await;
        }
    }

    /// A new lease of `project` for `task`, taken at `t0` for an hour.
    pub(super) fn hour_lease(project: &str, task: &str, t0: DateTime<Utc>) -> Lease {
        Lease {
            id: LeaseId::generate(),
            project: ProjectName::parse(project).expect("name"),
            task: task.into(),
            owner: "o@example.com".into(),
            principal: "ci".into(),
            created_at: t0,
            expires_at: t0 + chrono::TimeDelta::hours(1),
            heartbeat_interval: None,
            last_heartbeat_at: None,
            released_at: None,
            labels: Default::default(),
            regions: vec![],
        }
    }

    async fn quotas_and_keys_per_project(engine: &str, store: Store) {
        use chrono::TimeZone;
        let t0 = Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .expect("time");
        let lease = |project: &str, task: &str| hour_lease(project, task, t0);
        let at_most = |max: u64| {
            Quota::at_most(max, move |active| {
                StoreError::Corrupt(format!("quota: {active} of {max}"))
            })
        };
        // Acquires spawned together, so they queue for one batch: `(project, quota, key)`.
        let race = |acquires: Vec<(&'static str, u64, Option<&'static str>)>| {
            let mut calls = tokio::task::JoinSet::new();
            for (i, (p, max, key)) in acquires.into_iter().enumerate() {
                let (store, lease) = (store.clone(), lease(p, &format!("t{i}")));
                calls.spawn(async move {
                    let r = store
                        .insert_lease_keyed(lease, key.map(str::to_owned), t0, at_most(max))
                        .await;
                    (p, r.map(|(l, existing)| (l.id, existing)).ok())
                });
            }
            async move {
                let mut granted: Vec<(&str, LeaseId, bool)> = Vec::new();
                while let Some(done) = calls.join_next().await {
                    if let (p, Some((id, existing))) = done.expect("joins") {
                        granted.push((p, id, existing));
                    }
                }
                granted
            }
        };
        let new_in = |granted: &[(&str, LeaseId, bool)], project: &str| {
            granted
                .iter()
                .filter(|(p, _, existing)| *p == project && !existing)
                .count()
        };

        // 12 acquires of web (at most 5) among 12 of data (at most 100).
        let granted = race([("web", 5, None), ("data", 100, None)].repeat(12)).await;
        assert_eq!(new_in(&granted, "web"), 5, "{engine}");
        assert_eq!(new_in(&granted, "data"), 12, "{engine}");
        // One key in both projects, each sent twice: one lease per project, each twin
        // answered with its own project's.
        let granted = race([("web", 10, Some("k")), ("data", 100, Some("k"))].repeat(2)).await;
        assert_eq!(granted.len(), 4, "{engine}: {granted:?}");
        for project in ["web", "data"] {
            let ids: std::collections::BTreeSet<LeaseId> = granted
                .iter()
                .filter(|(p, ..)| *p == project)
                .map(|(_, id, _)| *id)
                .collect();
            assert_eq!(ids.len(), 1, "{engine}: {project}'s twins share a lease");
            assert_eq!(new_in(&granted, project), 1, "{engine}: {project}");
        }
    }

    /// Changes of many leases racing through one handle: each is written with its own events
    /// or refused alone, and of racing changes of one lease each sees what the one before it
    /// wrote, so none is lost.
    #[tokio::test]
    async fn racing_changes_each_write_their_own_lease() {
        use chrono::{TimeDelta, TimeZone};
        let dir = tempfile::tempdir().expect("temp dir");
        let t0 = Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .expect("time");
        for (engine, store) in Store::open_both_for_test(dir.path()).await {
            let mut ids = Vec::new();
            for i in 0..20 {
                let lease = hour_lease("web", &format!("t{i}"), t0);
                ids.push(lease.id);
                store
                    .insert_lease(lease, t0, Quota::<StoreError>::unlimited())
                    .await
                    .expect("inserted");
            }
            let change = |id: LeaseId, what: u32| {
                let store = store.clone();
                async move {
                    store
                        .update_lease(id, move |l| {
                            let before = l.clone();
                            match what {
                                // A release.
                                0 => l.released_at = Some(t0 + TimeDelta::minutes(1)),
                                // A refusal: nothing written.
                                1 => return Err(StoreError::Corrupt("refused".into())),
                                // One more to a count kept in a label.
                                _ => {
                                    let n: u32 = l
                                        .labels
                                        .get("n")
                                        .map_or(0, |n| n.parse().expect("a count"));
                                    l.labels.insert("n".into(), (n + 1).to_string());
                                    l.expires_at += TimeDelta::minutes(1);
                                }
                            }
                            Ok(crate::model::lease_changes(&before, l, t0)
                                .into_iter()
                                .map(|change| LeaseEvent {
                                    at: t0,
                                    principal: "ci".into(),
                                    change,
                                })
                                .collect())
                        })
                        .await
                }
            };
            // Connections opened beforehand, so the changes below overlap rather than wait,
            // one after another, for a connection each.
            let mut reads = tokio::task::JoinSet::new();
            for id in ids.iter().cycle().take(32) {
                let (store, id) = (store.clone(), *id);
                reads.spawn(async move { store.get_lease(id).await });
            }
            while let Some(done) = reads.join_next().await {
                done.expect("joins").expect("reads");
            }
            let mut calls = tokio::task::JoinSet::new();
            for (i, id) in ids.iter().enumerate().take(18) {
                calls.spawn(change(*id, u32::from(i % 2 == 1)));
            }
            for _ in 0..12 {
                calls.spawn(change(ids[19], 2));
            }
            calls.spawn(change(LeaseId::generate(), 0));
            let mut answers = (0, 0, 0);
            while let Some(done) = calls.join_next().await {
                match done.expect("joins") {
                    Ok(Some(_)) => answers.0 += 1,
                    Ok(None) => answers.1 += 1,
                    Err(_) => answers.2 += 1,
                }
            }
            assert_eq!(
                answers,
                (9 + 12, 1, 9),
                "{engine}: written, unknown, refused"
            );
            for (i, id) in ids.iter().enumerate().take(18) {
                let l = store.get_lease(*id).await.expect("reads").expect("there");
                assert_eq!(l.released_at.is_some(), i % 2 == 0, "{engine}: lease {i}");
            }
            let counted = store
                .get_lease(ids[19])
                .await
                .expect("reads")
                .expect("there");
            assert_eq!(
                counted.labels.get("n").map(String::as_str),
                Some("12"),
                "{engine}"
            );
            assert_eq!(counted.expires_at, t0 + TimeDelta::minutes(72), "{engine}");
            let events = store
                .text_rows_for_test("SELECT lease_id, kind FROM lease_events ORDER BY id")
                .await;
            let kinds = |id: LeaseId| -> Vec<String> {
                events
                    .iter()
                    .filter(|r| r[0].as_deref() == Some(id.to_string().as_str()))
                    .filter_map(|r| r[1].clone())
                    .collect()
            };
            for (i, id) in ids.iter().enumerate().take(18) {
                let want: Vec<String> = if i % 2 == 0 {
                    vec!["released".into()]
                } else {
                    vec![]
                };
                assert_eq!(kinds(*id), want, "{engine}: lease {i}");
            }
            assert_eq!(kinds(ids[19]), vec!["renewed".to_owned(); 12], "{engine}");
        }
    }

    /// A change through one handle (a replica) of a lease it wrote last, after another handle
    /// changed it, is decided on the row as the other left it: never written over what it
    /// remembers, nor refused on it.
    #[tokio::test]
    async fn a_change_is_decided_on_what_another_replica_wrote() {
        use chrono::{TimeDelta, TimeZone};
        let dir = tempfile::tempdir().expect("temp dir");
        let t0 = Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .expect("time");
        for (engine, a, b) in Store::open_twice_for_test(dir.path()).await {
            let lease = hour_lease("web", "t", t0);
            let id = lease.id;
            a.insert_lease(lease, t0, Quota::<StoreError>::unlimited())
                .await
                .expect("inserted");
            // One more minute, refused unless the lease ends at least 90 minutes after t0.
            let renew = |at_least: i64| {
                move |l: &mut Lease| {
                    if l.expires_at < t0 + TimeDelta::minutes(at_least) {
                        return Err(StoreError::Corrupt("ends too soon".into()));
                    }
                    l.expires_at += TimeDelta::minutes(1);
                    Ok(vec![])
                }
            };
            let by_b = b
                .update_lease(id, move |l| {
                    l.expires_at = t0 + TimeDelta::hours(2);
                    l.labels.insert("by".into(), "b".into());
                    Ok::<_, StoreError>(vec![])
                })
                .await
                .expect("b writes");
            assert!(by_b.is_some(), "{engine}");
            // `a` acquired the lease ending at t0 + 1h: had it decided on that, it would refuse.
            let by_a = a
                .update_lease(id, renew(90))
                .await
                .expect("a writes")
                .expect("there");
            assert_eq!(by_a.expires_at, t0 + TimeDelta::minutes(121), "{engine}");
            assert_eq!(
                by_a.labels.get("by").map(String::as_str),
                Some("b"),
                "{engine}"
            );
            // Now `a` wrote it last; `b` moves it back, and `a` must refuse on that.
            b.update_lease(id, move |l| {
                l.expires_at = t0 + TimeDelta::hours(1);
                Ok::<_, StoreError>(vec![])
            })
            .await
            .expect("b writes");
            let refused = a.update_lease(id, renew(90)).await;
            assert!(
                matches!(refused, Err(StoreError::Corrupt(_))),
                "{engine}: {refused:?}"
            );
            let stored = b.get_lease(id).await.expect("reads").expect("there");
            assert_eq!(stored.expires_at, t0 + TimeDelta::hours(1), "{engine}");
            assert_eq!(
                stored.labels.get("by").map(String::as_str),
                Some("b"),
                "{engine}"
            );
        }
    }

    /// The registry's downtime moves the deadlines of the leases active when it stopped (on
    /// the leases' clock), by the gap on the wall clock; a gap within `min_gap`, a first start,
    /// or a beat told not to credit moves nothing; released and already lapsed leases never.
    #[tokio::test]
    async fn registry_downtime_is_credited_to_the_leases_active_when_it_stopped() {
        let dir = tempfile::tempdir().expect("temp dir");
        for (engine, store) in Store::open_both_for_test(dir.path()).await {
            eprintln!("{engine}");
            downtime_is_credited(store).await;
        }
    }

    async fn downtime_is_credited(store: Store) {
        use chrono::{TimeDelta, TimeZone};
        let t0 = Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .expect("time");
        let lease = |end_min: i64, released: bool| Lease {
            id: LeaseId::generate(),
            project: ProjectName::parse("web").expect("name"),
            task: "t".into(),
            owner: "o@example.com".into(),
            principal: "ci".into(),
            created_at: t0,
            expires_at: t0 + TimeDelta::minutes(end_min),
            heartbeat_interval: None,
            last_heartbeat_at: None,
            released_at: released.then_some(t0),
            labels: Default::default(),
            regions: vec![],
        };
        let (active, lapsed, released) = (lease(60, false), lease(5, false), lease(60, true));
        for l in [&active, &lapsed, &released] {
            store
                .insert_lease(l.clone(), t0, Quota::<StoreError>::unlimited())
                .await
                .expect("insert");
        }
        let min_gap = TimeDelta::seconds(2);
        let wall = t0 + TimeDelta::minutes(10);
        // First start: nothing to credit.
        assert_eq!(
            store
                .registry_serving(wall, wall, true, min_gap)
                .await
                .expect("store"),
            None
        );
        // A beat within the gap, or one not crediting: nothing.
        let soon = wall + TimeDelta::seconds(2);
        assert_eq!(
            store
                .registry_serving(soon, soon, true, min_gap)
                .await
                .expect("store"),
            None
        );
        let later = soon + TimeDelta::minutes(1);
        assert_eq!(
            store
                .registry_serving(later, later, false, min_gap)
                .await
                .expect("store"),
            None
        );
        // Down 15 minutes: the active lease moves by 15 minutes, the others do not.
        let back = later + TimeDelta::minutes(15);
        let credited = store
            .registry_serving(back, back, true, min_gap)
            .await
            .expect("store");
        assert_eq!(credited, Some((TimeDelta::minutes(15), 1)));
        let get = |id| store.get_lease(id);
        assert_eq!(
            get(active.id)
                .await
                .expect("store")
                .expect("lease")
                .expires_at,
            active.expires_at + TimeDelta::minutes(15)
        );
        assert_eq!(
            get(lapsed.id)
                .await
                .expect("store")
                .expect("lease")
                .expires_at,
            lapsed.expires_at
        );
        assert_eq!(
            get(released.id)
                .await
                .expect("store")
                .expect("lease")
                .expires_at,
            released.expires_at
        );
    }
    use crate::model::Tags;

    /// Rows written before migration 3 hold JSON tags; both forms read back the same (the
    /// reaper's owner lookup reads them through here too).
    #[test]
    fn stored_tags_read_json_and_packed_alike() {
        let tags = Tags::from_pairs([("ephemera:owner", "alice@example.com"), ("team", "web")]);
        let json = serde_json::to_string(&tags).expect("json");
        assert!(json.starts_with('{'), "{json}");
        assert_eq!(stored_tags(&json).expect("json form"), tags);
        assert_eq!(stored_tags(tags.packed()).expect("packed form"), tags);
        assert_eq!(
            stored_tags(&json).expect("json form").get("ephemera:owner"),
            Some("alice@example.com")
        );
        assert!(stored_tags("{not json").is_err());
    }

    /// A write that panics (a bug) is rolled back and answered with an error; the writer
    /// thread and the writes queued with it go on.
    #[tokio::test]
    async fn a_panicking_write_is_rolled_back_and_the_writer_goes_on() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("s.db")).await.expect("opens");
        let write = |sql: &'static str| {
            store.writer().expect("sqlite").write(move |c| {
                c.execute_batch(sql)?;
                Ok::<_, StoreError>(())
            })
        };
        write("CREATE TABLE t (v TEXT)").await.expect("table");
        let (before, died, after) = tokio::join!(
            write("INSERT INTO t VALUES ('before')"),
            store
                .writer()
                .expect("sqlite")
                .write(|c| -> Result<(), StoreError> {
                    c.execute_batch("INSERT INTO t VALUES ('from the panicking write')")?;
                    panic!("a write that panics")
                }),
            write("INSERT INTO t VALUES ('after')"),
        );
        before.expect("the write before commits");
        assert!(matches!(died, Err(StoreError::Panicked)), "{died:?}");
        after.expect("the write after commits");
        store.ping().await.expect("still ready");
        let rows: Vec<String> = store
            .read(|c| {
                c.prepare("SELECT v FROM t ORDER BY rowid")?
                    .query_map([], |r| r.get(0))?
                    .collect::<Result<_, _>>()
                    .map_err(StoreError::from)
            })
            .await
            .expect("rows");
        assert_eq!(rows, ["before", "after"]);
    }

    fn page_size(store: &Store) -> i64 {
        let conn = store.sqlite_readers().lend();
        conn.query_row("PRAGMA page_size", [], |r| r.get(0))
            .expect("page size")
    }

    /// A new store gets 16 KiB pages; one made with SQLite's default 4 KiB (every store before
    /// the change) still opens, migrates and keeps its pages and rows.
    #[tokio::test]
    async fn new_stores_get_16_kib_pages_and_old_ones_keep_theirs() {
        let dir = tempfile::tempdir().expect("temp dir");
        let fresh = Store::open(&dir.path().join("new.db"))
            .await
            .expect("opens");
        assert_eq!(page_size(&fresh), 16384);

        let old_path = dir.path().join("old.db");
        {
            let c = Connection::open(&old_path).expect("old store");
            c.execute_batch(
                "PRAGMA page_size = 4096; PRAGMA journal_mode = WAL;
                 CREATE TABLE kept (v TEXT); INSERT INTO kept VALUES ('still here');",
            )
            .expect("old schema");
        }
        let old = Store::open(&old_path).await.expect("an old store opens");
        assert_eq!(page_size(&old), 4096);
        let conn = old.sqlite_readers().lend();
        let kept: String = conn
            .query_row("SELECT v FROM kept", [], |r| r.get(0))
            .expect("row kept");
        assert_eq!(kept, "still here");
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .expect("version");
        assert!(version > 0, "migrations ran on the old store");
    }
}
