//! Group commit: one thread owns the write connection and commits queued writes together.
//!
//! With `synchronous = FULL` every commit waits for the disk; one commit per request would cap
//! the lease API at the disk's fsync rate. Writes that arrive while a commit is in flight are
//! run in the next transaction, each inside its own savepoint (so one failing write rolls back
//! only itself), and answered only after that transaction is durable.

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
}

impl Writer {
    /// Starts the writer thread; it ends when every `Writer` handle is dropped.
    pub(super) fn start(conn: Connection) -> std::io::Result<Writer> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(QUEUE);
        std::thread::Builder::new()
            .name("ephemera-store-writer".into())
            .spawn(move || run(conn, rx))?;
        Ok(Writer { jobs: tx })
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
        let job: Job = Box::new(move |conn, in_tx| {
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
        });
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
        let finishers: Vec<Finish> = batch.into_iter().map(|job| job(&conn, in_tx)).collect();
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
