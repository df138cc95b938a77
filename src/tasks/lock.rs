//! The store's act lock as this process holds it: renewed in the background until released,
//! and the fence every delete under it carries.

use super::TaskError;
use crate::store::{ACT_LOCK, LockHolder, Store};

/// How long a store lock lasts unless renewed, and how often its holder renews it.
const LOCK_TTL: chrono::TimeDelta = chrono::TimeDelta::seconds(60);
const LOCK_RENEW: std::time::Duration = std::time::Duration::from_secs(15);

/// The store's act lock, held by this process and renewed in the background until released.
/// Its times are the wall clock's: the lock is about processes, not a test's manual clock.
#[derive(Debug)]
pub(crate) struct StoreLock {
    store: Store,
    holder: String,
    renewer: tokio::task::JoinHandle<()>,
}

impl StoreLock {
    pub(super) async fn take(store: &Store, what: String) -> Result<StoreLock, TaskError> {
        let holder = LockHolder::here(what);
        let id = holder.id.clone();
        let wall = crate::clock::SystemClock;
        store
            .try_lock(ACT_LOCK, holder, crate::clock::Clock::now(&wall), LOCK_TTL)
            .await??;
        let (s, h) = (store.clone(), id.clone());
        let renewer = tokio::spawn(async move {
            loop {
                tokio::time::sleep(LOCK_RENEW).await;
                match s
                    .renew_lock(
                        ACT_LOCK,
                        h.clone(),
                        crate::clock::Clock::now(&wall),
                        LOCK_TTL,
                    )
                    .await
                {
                    Ok(true) => {}
                    // Every delete is fenced on the lock: losing it stops them.
                    Ok(false) => {
                        tracing::error!(
                            "the act lock was taken over (this process stalled past its expiry); no more deletes"
                        );
                        return;
                    }
                    Err(e) => {
                        tracing::error!(error = %crate::error_chain(&e), "cannot renew the act lock")
                    }
                }
            }
        });
        Ok(StoreLock {
            store: store.clone(),
            holder: id,
            renewer,
        })
    }

    /// What every delete under this lock is fenced with.
    pub(crate) fn fence(&self) -> &str {
        &self.holder
    }

    pub(super) async fn release(self) {
        self.renewer.abort();
        if let Err(e) = self.store.unlock(ACT_LOCK, self.holder.clone()).await {
            tracing::error!(error = %crate::error_chain(&e), "cannot release the act lock; it expires on its own");
        }
    }
}

impl Drop for StoreLock {
    /// A pass that ends without `release` (a panic) stops renewing: the lock then expires.
    fn drop(&mut self) {
        self.renewer.abort();
    }
}
