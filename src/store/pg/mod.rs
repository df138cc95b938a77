//! The PostgreSQL backend: the same domain-shaped calls as the SQLite store, for deployments
//! that run several replicas on one database.
//!
//! Architecture Invariant: the schema keeps SQLite's representation (times as UTC
//! milliseconds in `BIGINT`, JSON as `TEXT`), so both backends read rows the same way; a
//! read-check-write runs in one transaction that holds a row lock or a transaction-scoped
//! advisory lock on what it checks, never on a snapshot another replica may be changing.
//!
//! | file | the calls of |
//! |---|---|
//! | `mod.rs` | the target, the pool, migrations, errors |
//! | `leases` | leases (racing acquires decided in batches, granted in one round trip when the server finds room for them, side by side with other replicas' batches while their projects are far from their quotas; the leases this replica wrote last remembered as written), the registry's heartbeat |
//! | `locks` | the act lock (the leadership lease with its fencing token) |
//! | `chain` | the audit log's keyed hash chain (the append other calls make in their transaction) |
//! | `outbox` | the mail outbox: roll-ups, due messages, delivery marks, dead letters |
//! | `cost` | spend per day |
//! | `teardown` | teardown proof of ended leases |
//! | `reap` | the reaper: deletion marks, the `deleting` state fenced on the act lock, decisions |
//! | `restore` | the restore guard and the registry's last sign of life (no file backup) |
//! | `retention` | the purge of history past its horizon, a bounded batch per transaction |
//! | `inventory` | the audit pass: runs, walks, resources, findings |
//! | `../copy` | `store copy`: a SQLite store moved whole into an empty PostgreSQL one |

mod chain;
mod cost;
mod inventory;
mod leases;
mod locks;
mod outbox;
mod reap;
mod restore;
mod retention;
mod schema;
mod teardown;
mod timeline;
mod tls;

#[cfg(test)]
pub(super) use retention::PLANNED as PURGE_PLANNED;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row, Statement, Transaction};

use super::StoreError;
use crate::config::PgTarget;

/// Most connections one process opens: the lease API's calls are short, and the database's
/// `max_connections` (100 by default) is shared by every replica.
const POOL: usize = 16;

/// A handle on one PostgreSQL store; cloned through an `Arc` by [`super::Store`].
pub(super) struct Pg {
    target: PgTarget,
    /// Used as the URL's `sslmode` says; certificates always verified.
    tls: tls::MakeRustls,
    idle: Mutex<Vec<Conn>>,
    free: Arc<tokio::sync::Semaphore>,
    /// Acquires waiting for the next batch (`leases`); `Some` while a task decides batches.
    acquires: Mutex<Option<Vec<Box<dyn leases::Decide>>>>,
    /// The leases this process wrote last, as stored (`leases`).
    written: leases::Written,
    /// The projects found near their quotas lately (`leases`).
    crowded: leases::Crowded,
}

impl std::fmt::Debug for Pg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pg").field("target", &self.target).finish()
    }
}

impl Pg {
    /// Connects and brings the schema up to date (one replica at a time: the migration holds
    /// an advisory lock, so replicas starting together do not race).
    pub(super) async fn open(target: PgTarget) -> Result<Pg, StoreError> {
        let pg = Pg {
            tls: tls::MakeRustls::new(target.ca()),
            target,
            idle: Mutex::new(Vec::new()),
            free: Arc::new(tokio::sync::Semaphore::new(POOL)),
            acquires: Mutex::new(None),
            written: leases::Written::new(),
            crowded: leases::Crowded::default(),
        };
        let mut c = pg.conn().await?;
        schema::apply(&mut c.conn_mut().client).await?;
        drop(c);
        Ok(pg)
    }

    /// A connection of the pool (a new one when none is idle); waits while all are in use.
    pub(super) async fn conn(&self) -> Result<Pooled<'_>, StoreError> {
        let permit = self
            .free
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::WriterGone)?;
        let idle = {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            // A server restart closes every idle connection: drop those, reconnect below.
            idle.retain(|c| !c.client.is_closed());
            idle.pop()
        };
        let conn = match idle {
            Some(c) => c,
            None => self.connect().await?,
        };
        Ok(Pooled {
            pg: self,
            conn: Some(conn),
            open_tx: false,
            _permit: permit,
        })
    }

    async fn connect(&self) -> Result<Conn, StoreError> {
        let (client, connection) = self
            .target
            .pg_config()
            .connect(self.tls.clone())
            .await
            .map_err(|e| StoreError::Unavailable {
                target: self.target.describe(),
                reason: crate::error_chain(&e),
            })?;
        let target = self.target.describe();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(store = %target, error = %crate::error_chain(&e), "store connection ended");
            }
        });
        Ok(Conn {
            client,
            statements: HashMap::new(),
        })
    }
}

/// Whether a PostgreSQL error means the server is out of reach: the connection broke, or the
/// server is shutting down, starting up or refusing connections (SQLSTATE classes 08 and 57P).
pub(super) fn is_unavailable(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        Some(code) => {
            let c = code.code();
            c.starts_with("08") || c.starts_with("57P")
        }
        // No SQLSTATE: an I/O error on the socket is one; a value that did not convert is not.
        None => std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>()),
    }
}

/// A pooled connection with its prepared statements.
pub(super) struct Conn {
    client: Client,
    statements: HashMap<&'static str, Statement>,
}

/// A connection lent by the pool; back in it on drop unless the server closed it.
pub(super) struct Pooled<'a> {
    pg: &'a Pg,
    conn: Option<Conn>,
    /// A transaction begun by [`Pooled::pipeline_begin`] and not yet ended: dropped now (a
    /// caller gone, an error), the connection is closed rather than lent again, and the server
    /// rolls the transaction back.
    open_tx: bool,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Pooled<'_> {
    fn conn_mut(&mut self) -> &mut Conn {
        self.conn.as_mut().expect("lent until dropped")
    }

    /// Starts a transaction (READ COMMITTED; what it checks it locks).
    pub(super) async fn begin(&mut self) -> Result<Tx<'_>, StoreError> {
        let Conn { client, statements } = self.conn_mut();
        let tx = client.transaction().await?;
        Ok(Tx { tx, statements })
    }

    pub(super) async fn query(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let c = self.conn_mut();
        let s = prepared(&c.client, &mut c.statements, sql).await?;
        Ok(c.client.query(&s, params).await?)
    }

    pub(super) async fn query_opt(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, StoreError> {
        let c = self.conn_mut();
        let s = prepared(&c.client, &mut c.statements, sql).await?;
        Ok(c.client.query_opt(&s, params).await?)
    }

    pub(super) async fn query_one(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, StoreError> {
        let c = self.conn_mut();
        let s = prepared(&c.client, &mut c.statements, sql).await?;
        Ok(c.client.query_one(&s, params).await?)
    }

    /// The connection's prepared statement for `sql` (prepared on first use).
    pub(super) async fn statement(&mut self, sql: &'static str) -> Result<Statement, StoreError> {
        let c = self.conn_mut();
        prepared(&c.client, &mut c.statements, sql).await
    }

    /// The client, for statements sent together: futures polled at once are pipelined (sent
    /// in one go, answered in order), so a transaction's statements cost one round trip.
    /// Joined with `biased;`, so they are sent in the order written; after a failed statement
    /// the later ones of its transaction fail too, so the first error in that order is the
    /// one to report.
    pub(super) fn client(&self) -> &Client {
        &self.conn.as_ref().expect("lent until dropped").client
    }

    /// Marks the start of a transaction whose `BEGIN` the caller pipelines with its first
    /// statements; [`Pooled::pipeline_end`] marks its `COMMIT` or `ROLLBACK` answered.
    pub(super) fn pipeline_begin(&mut self) {
        self.open_tx = true;
    }

    pub(super) fn pipeline_end(&mut self) {
        self.open_tx = false;
    }

    /// A query built at run time (a filter's clauses): prepared unnamed, not cached.
    pub(super) async fn query_dynamic(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        Ok(self.conn_mut().client.query(sql, params).await?)
    }

    pub(super) async fn execute(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        let c = self.conn_mut();
        let s = prepared(&c.client, &mut c.statements, sql).await?;
        Ok(c.client.execute(&s, params).await?)
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take()
            && !c.client.is_closed()
            && !self.open_tx
        {
            self.pg
                .idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(c);
        }
    }
}

/// A transaction on a pooled connection; rolled back when dropped without [`Tx::commit`].
pub(super) struct Tx<'a> {
    tx: Transaction<'a>,
    statements: &'a mut HashMap<&'static str, Statement>,
}

impl Tx<'_> {
    /// Commits. A commit that meets a server going away fails as unavailable (503, retry):
    /// its outcome is unknown to us, and the caller was told nothing was acknowledged.
    pub(super) async fn commit(self) -> Result<(), StoreError> {
        Ok(self.tx.commit().await?)
    }

    pub(super) async fn query_opt(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, StoreError> {
        let s = prepared(&self.tx, self.statements, sql).await?;
        Ok(self.tx.query_opt(&s, params).await?)
    }

    pub(super) async fn query_one(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, StoreError> {
        let s = prepared(&self.tx, self.statements, sql).await?;
        Ok(self.tx.query_one(&s, params).await?)
    }

    pub(super) async fn execute(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        let s = prepared(&self.tx, self.statements, sql).await?;
        Ok(self.tx.execute(&s, params).await?)
    }

    /// A statement built at run time: prepared unnamed, not cached.
    pub(super) async fn query_dynamic(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        Ok(self.tx.query(sql, params).await?)
    }

    pub(super) async fn batch_execute(&mut self, sql: &str) -> Result<(), StoreError> {
        Ok(self.tx.batch_execute(sql).await?)
    }

    pub(super) async fn query(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let s = prepared(&self.tx, self.statements, sql).await?;
        Ok(self.tx.query(&s, params).await?)
    }
}

/// A stored time (UTC milliseconds) read back; an impossible value is a corrupt row.
pub(super) fn time(v: i64) -> Result<chrono::DateTime<chrono::Utc>, StoreError> {
    chrono::DateTime::from_timestamp_millis(v)
        .ok_or_else(|| StoreError::Corrupt(format!("bad time {v}")))
}

/// A stored time that may be absent.
pub(super) fn opt_time(
    v: Option<i64>,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, StoreError> {
    v.map(time).transpose()
}

/// The connection's prepared statement for `sql`, prepared on first use (one round trip
/// saved on every later call).
async fn prepared(
    client: &impl tokio_postgres::GenericClient,
    cache: &mut HashMap<&'static str, Statement>,
    sql: &'static str,
) -> Result<Statement, StoreError> {
    if let Some(s) = cache.get(sql) {
        return Ok(s.clone());
    }
    let s = client.prepare(sql).await?;
    cache.insert(sql, s.clone());
    Ok(s)
}

/// The PostgreSQL server of the tests (`scripts/with-postgres.sh`, which `make test` runs):
/// a fresh database per store, so tests running at once never see each other's rows.
#[cfg(test)]
pub(crate) mod testing {
    use super::PgTarget;

    /// A new, empty database on the test server.
    pub(crate) async fn fresh_target() -> PgTarget {
        let url = std::env::var("EPHEMERA_TEST_POSTGRES").expect(
            "EPHEMERA_TEST_POSTGRES is not set: run the tests with `make test` \
             (or under scripts/with-postgres.sh), which starts a throwaway PostgreSQL",
        );
        let password = std::env::var("EPHEMERA_TEST_POSTGRES_PASSWORD").ok();
        let server = PgTarget::parse(&url, password).expect("test server URL");
        let (client, connection) = server
            .pg_config()
            .connect(tokio_postgres::NoTls)
            .await
            .expect("the test PostgreSQL server answers");
        tokio::spawn(connection);
        let db = format!("t_{}", uuid::Uuid::new_v4().simple());
        client
            .batch_execute(&format!("CREATE DATABASE {db}"))
            .await
            .expect("creates the test database");
        server.with_database(&db)
    }

    /// Polls `waiting` (a query counting sessions that wait for a lock) on `probe` every
    /// 10 ms for up to 10 s, asserting meanwhile that `task` has not finished (`early`: what
    /// that would mean); whether a wait was seen.
    pub(crate) async fn waits<T>(
        probe: &super::Pooled<'_>,
        waiting: &str,
        task: &tokio::task::JoinHandle<T>,
        early: &str,
    ) -> bool {
        for _ in 0..1000 {
            assert!(!task.is_finished(), "{early}");
            let n: i64 = probe
                .client()
                .query_one(waiting, &[])
                .await
                .expect("reads the locks")
                .get(0);
            if n > 0 {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        false
    }

    impl super::Pg {
        /// The rows of `sql`, every value as PostgreSQL's text for it.
        pub(crate) async fn text_rows_for_test(&self, sql: &str) -> Vec<Vec<Option<String>>> {
            let mut c = self.conn().await.expect("a connection");
            let messages = c
                .conn_mut()
                .client
                .simple_query(sql)
                .await
                .expect("the query runs");
            messages
                .iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => {
                        Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect())
                    }
                    _ => None,
                })
                .collect()
        }
    }
}
