//! Group commit: one thread owns the write connection and commits queued writes together.
//!
//! With `synchronous = FULL` every commit waits for the disk; one commit per request would cap
//! the lease API at the disk's fsync rate. Writes that arrive while a commit is in flight are
//! run in the next transaction, each inside its own savepoint (so one failing write rolls back
//! only itself), and answered only after that transaction is durable.
//!
//! Architecture Invariant: a caller told success has its write committed; a caller told an
//! error has none of it persisted. When SQLite rolls the whole transaction back (disk full,
//! I/O error), the writes after the failure do not run, and every write of the batch is told
//! the commit failed.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError};

use rusqlite::Connection;

use super::StoreError;

/// Most writes folded into one transaction.
const MAX_BATCH: usize = 256;
/// Queue depth before writers wait (back-pressure instead of unbounded memory).
const QUEUE: usize = 4096;

/// Runs inside the batch transaction (or, with `false`, is told the transaction could not
/// start); returns what to do once the commit outcome is known.
type Job = Box<dyn FnOnce(&Connection, bool) -> Finish + Send>;
type Finish = Box<dyn FnOnce(Option<String>) + Send>;

#[derive(Debug, Clone)]
pub(super) struct Writer {
    jobs: SyncSender<Job>,
    /// The writer thread, joined by [`Writer::close`] so the connection is closed (and the
    /// WAL checkpointed and removed) before the caller goes on.
    thread: std::sync::Arc<std::sync::Mutex<Option<std::thread::JoinHandle<()>>>>,
}

impl Writer {
    /// Starts the writer thread; it ends when every `Writer` handle is dropped.
    pub(super) fn start(conn: Connection) -> std::io::Result<Writer> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(QUEUE);
        let thread = std::thread::Builder::new()
            .name("ephemera-store-writer".into())
            .spawn(move || run(conn, rx))?;
        Ok(Writer {
            jobs: tx,
            thread: std::sync::Arc::new(std::sync::Mutex::new(Some(thread))),
        })
    }

    /// Ends the writer thread and waits until its connection is closed, when this is the
    /// last handle; with other handles alive it only lets go of this one.
    pub(super) async fn close(self) {
        let Writer { jobs, thread } = self;
        drop(jobs);
        let Some(thread) = std::sync::Arc::into_inner(thread) else {
            return;
        };
        let handle = thread.into_inner().unwrap_or_else(|p| p.into_inner());
        if let Some(handle) = handle {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
    }

    /// Runs `f` in the next batch; resolves once its effects are committed (or with its error,
    /// in which case none of its effects persist).
    pub(super) async fn write<T, E>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel::<Result<T, E>>();
        let job = job(f, tx);
        let job = match self.jobs.try_send(job) {
            Ok(()) => None,
            Err(TrySendError::Full(job)) => Some(job),
            Err(TrySendError::Disconnected(_)) => return Err(E::from(StoreError::WriterGone)),
        };
        if let Some(job) = job {
            // Queue full: wait for room on a blocking thread, not on the async one.
            let jobs = self.jobs.clone();
            tokio::task::spawn_blocking(move || jobs.send(job))
                .await
                .map_err(|e| E::from(StoreError::Join(e)))?
                .map_err(|_| E::from(StoreError::WriterGone))?;
        }
        rx.await
            .unwrap_or_else(|_| Err(E::from(StoreError::WriterGone)))
    }
}

/// A queued write: runs `f` in its own savepoint when the batch's transaction is live, and
/// tells `tx` the outcome once the commit's is known.
fn job<T, E>(
    f: impl FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    tx: tokio::sync::oneshot::Sender<Result<T, E>>,
) -> Job
where
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
{
    Box::new(move |conn, in_tx| {
        let outcome = if in_tx {
            // A panicking write (a bug) must not end the thread every other write goes
            // through: its savepoint is rolled back and its caller told, the batch goes on.
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| in_savepoint(conn, f)))
                .unwrap_or_else(|_| {
                    let _ = conn.execute_batch("ROLLBACK TO job; RELEASE job");
                    Err(Some(E::from(StoreError::Panicked)))
                })
        } else {
            Err(None)
        };
        Box::new(move |commit_error: Option<String>| {
            let result = match (outcome, commit_error) {
                (Ok(v), None) => Ok(v),
                (Ok(_), Some(e)) | (Err(None), Some(e)) => Err(E::from(StoreError::Commit(e))),
                (Err(None), None) => Err(E::from(StoreError::Commit(
                    "transaction did not start".into(),
                ))),
                (Err(Some(e)), _) => Err(e),
            };
            // The caller may have gone away (request cancelled); nothing to tell then.
            let _ = tx.send(result);
        })
    })
}

/// Runs `f` inside a savepoint; on error rolls the savepoint back. `Err(None)` means the
/// savepoint itself failed.
fn in_savepoint<T, E>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T, E>,
) -> Result<T, Option<E>>
where
    E: From<StoreError>,
{
    let sql = |s: &str| {
        conn.execute_batch(s)
            .map_err(|e| Some(E::from(StoreError::Sql(e))))
    };
    sql("SAVEPOINT job")?;
    match f(conn) {
        Ok(v) => {
            sql("RELEASE job")?;
            Ok(v)
        }
        Err(e) => {
            sql("ROLLBACK TO job")?;
            sql("RELEASE job")?;
            Err(Some(e))
        }
    }
}

fn run(conn: Connection, rx: Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let began = conn.execute_batch("BEGIN IMMEDIATE");
        let in_tx = began.is_ok();
        // A write that failed badly enough (disk full, I/O error) can make SQLite roll back the
        // whole transaction. The writes after it must not run then: their savepoints would
        // open and commit transactions of their own while the batch reports failure.
        let finishers: Vec<Finish> = batch
            .into_iter()
            .map(|job| {
                let live = in_tx && !conn.is_autocommit();
                job(&conn, live)
            })
            .collect();
        let commit_error = match began {
            Err(e) => Some(format!("cannot begin: {e}")),
            Ok(()) => match conn.execute_batch("COMMIT") {
                Ok(()) => None,
                Err(e) => {
                    let _ = conn.execute_batch("ROLLBACK");
                    Some(e.to_string())
                }
            },
        };
        if let Some(e) = &commit_error {
            tracing::error!(error = %e, "store commit failed; the batch's writes were rolled back");
        }
        for finish in finishers {
            finish(commit_error.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One batch of writes where one fills the disk (SQLite's `max_page_count`): every caller
    /// is told the truth — told success only if its row is there, told an error only if it
    /// is not — and nothing runs outside the batch's transaction.
    #[test]
    fn a_failed_batch_tells_every_caller_the_truth() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("t.db");
        let conn = Connection::open(&path).expect("open");
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; CREATE TABLE t (k TEXT PRIMARY KEY, v BLOB NOT NULL);",
        )
        .expect("schema");
        let pages: i64 = conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .expect("page count");
        conn.execute_batch(&format!("PRAGMA max_page_count = {}", pages + 2))
            .expect("cap");
        let insert = |k: &'static str, size: usize| {
            move |c: &Connection| {
                c.execute(
                    "INSERT INTO t (k, v) VALUES (?1, zeroblob(?2))",
                    rusqlite::params![k, size as i64],
                )
                .map(|_| ())
                .map_err(StoreError::Sql)
            }
        };
        let (jobs, rx) = std::sync::mpsc::sync_channel::<Job>(8);
        let mut answers = Vec::new();
        for (k, size) in [("before", 10), ("huge", 1 << 20), ("after", 10)] {
            let (tx, answer) = tokio::sync::oneshot::channel::<Result<(), StoreError>>();
            jobs.send(job(insert(k, size), tx)).expect("queued");
            answers.push((k, answer));
        }
        drop(jobs);
        // The three were queued before the writer looked: one batch.
        run(conn, rx);
        let check = Connection::open(&path).expect("reopen");
        let persisted = |k: &str| -> bool {
            check
                .query_row("SELECT COUNT(*) FROM t WHERE k = ?1", [k], |r| {
                    r.get::<_, i64>(0)
                })
                .expect("count")
                == 1
        };
        for (k, mut answer) in answers {
            let told = answer.try_recv().expect("answered");
            assert_eq!(
                told.is_ok(),
                persisted(k),
                "{k}: told {told:?}, persisted {}",
                persisted(k)
            );
        }
        assert!(
            !persisted("huge"),
            "the write that filled the disk is not there"
        );
    }
}
