//! The one runner of the daemon's tasks: a task runs one at a time in this process (and, when
//! it acts, in any process on the store), each run is a row with its trigger and outcome, and
//! its end is counted in `ephemera_task_runs_total{task,outcome}` and, on success, in the last
//! success gauge; a scheduled tick that finds it running is counted as skipped.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::TaskError;
use super::lock::StoreLock;
use crate::metrics::Metrics;
use crate::model::{RunOutcome, TaskName};
use crate::store::Store;

/// The runner of one task.
#[derive(Debug)]
pub(super) struct Runner {
    task: TaskName,
    /// Held for the whole of a run, so two never overlap in this process.
    lock: Arc<Mutex<()>>,
    /// The id of the run in progress.
    running: Mutex<Option<String>>,
}

/// How long a claim waits for a run that is finishing to let go of its locks.
const FINISHING: std::time::Duration = std::time::Duration::from_secs(2);

/// A claimed run: while it lives no other run of its task starts here (nor, when it holds the
/// store's act lock, in another process).
#[derive(Debug)]
pub(super) struct Run {
    pub id: String,
    /// The store's act lock, for a task that acts.
    pub act: Option<StoreLock>,
    _guard: OwnedMutexGuard<()>,
}

/// The in-process lock of a task and, when asked for, the store's act lock.
#[derive(Debug)]
pub(super) struct Held {
    pub guard: OwnedMutexGuard<()>,
    pub act: Option<StoreLock>,
}

impl Runner {
    pub fn new(task: TaskName) -> Self {
        Runner {
            task,
            lock: Arc::new(Mutex::new(())),
            running: Mutex::new(None),
        }
    }

    /// Takes the task's lock (refused while a run is in progress) and, with `act`, the store's
    /// act lock for `what` (refused while another process holds it).
    pub async fn hold(&self, store: &Store, act: Option<String>) -> Result<Held, TaskError> {
        // A run is recorded as finished before its locks are let go (so the next claimant
        // cannot close it as interrupted); whoever saw it finish and asks at once waits for
        // that moment instead of being refused.
        let guard = match tokio::time::timeout(FINISHING, self.lock.clone().lock_owned()).await {
            Ok(guard) => guard,
            Err(_) => {
                let running = self.running.lock().await.clone();
                return Err(TaskError::AlreadyRunning(
                    running.unwrap_or_else(|| "unknown".into()),
                ));
            }
        };
        let act = match act {
            Some(what) => Some(StoreLock::take(store, what).await?),
            None => None,
        };
        Ok(Held { guard, act })
    }

    /// Claims a run: holds the locks, closes the runs a stopped process left `running` when
    /// it holds the act lock (no other process can be running one then), and records the
    /// run's start so it can be looked up as soon as its id is known.
    pub async fn claim(
        &self,
        store: &Store,
        trigger: &str,
        acts: bool,
        clock: &dyn crate::clock::Clock,
    ) -> Result<Run, TaskError> {
        let id = uuid::Uuid::now_v7().to_string();
        let held = self
            .hold(store, acts.then(|| format!("{} run {id}", self.task)))
            .await?;
        // Read once the locks are held: a claim may have waited for the run before to end.
        let now = clock.now();
        if held.act.is_some() {
            self.close_interrupted(store, now).await?;
        }
        store
            .start_run(id.clone(), self.task, trigger.to_owned(), now)
            .await?;
        *self.running.lock().await = Some(id.clone());
        Ok(Run {
            id,
            act: held.act,
            _guard: held.guard,
        })
    }

    /// Closes (and logs) the runs of this task a process that stopped left `running`; the
    /// caller holds the act lock, so none of them can be in progress.
    pub async fn close_interrupted(
        &self,
        store: &Store,
        now: DateTime<Utc>,
    ) -> Result<(), crate::store::StoreError> {
        for id in store.close_interrupted_runs(self.task, now).await? {
            tracing::warn!(task = %self.task, run_id = %id, "a run left running by a process that stopped is closed as interrupted");
        }
        Ok(())
    }

    /// Ends a run: records its outcome and summary, counts it, releases its locks.
    pub async fn finish(
        &self,
        store: &Store,
        metrics: &Metrics,
        run: Run,
        outcome: RunOutcome,
        summary: serde_json::Value,
        end: DateTime<Utc>,
    ) {
        if let Err(e) = store
            .finish_run(run.id.clone(), end, outcome, summary)
            .await
        {
            tracing::error!(task = %self.task, error = %crate::error_chain(&e), "cannot record the run's end");
        }
        *self.running.lock().await = None;
        if let Some(lock) = run.act {
            lock.release().await;
        }
        metrics
            .task_runs
            .with_label_values(&[self.task.as_str(), outcome.as_str()])
            .inc();
        if outcome == RunOutcome::Success {
            metrics.task_succeeded(self.task, end);
        }
    }

    /// What a scheduled tick does when it could not claim a run: a run in progress (here or,
    /// for the act lock, elsewhere) skips the tick, counted; anything else is an error.
    pub fn tick_refused(&self, metrics: &Metrics, e: &TaskError) {
        let task = self.task;
        match e {
            TaskError::AlreadyRunning(id) => {
                metrics
                    .task_skipped
                    .with_label_values(&[task.as_str()])
                    .inc();
                tracing::warn!(%task, running = %id, "tick skipped: the previous run is still running");
            }
            TaskError::Busy(held) => {
                metrics
                    .task_skipped
                    .with_label_values(&[task.as_str()])
                    .inc();
                tracing::warn!(%task, %held, "tick skipped: another process is acting on the store");
            }
            TaskError::Store(e) => {
                tracing::error!(%task, error = %crate::error_chain(e), "tick failed")
            }
        }
    }

    /// The id of the run in progress, if any.
    pub async fn running(&self) -> Option<String> {
        self.running.lock().await.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, SystemClock};

    fn count(metrics: &Metrics, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = metrics.render();
        let want: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")))
            .find(|l| want.iter().all(|w| l.contains(w.as_str())))
            .and_then(|l| l.rsplit(' ').next())
            .map_or(0.0, |v| v.parse().expect("a sample value"))
    }

    /// One run at a time per task, each a row with its outcome, counted once; a refused
    /// tick is counted as skipped; the act lock is held by a run that acts and freed at its end.
    #[tokio::test]
    async fn one_run_at_a_time_recorded_counted_and_released() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("s.db")).await.expect("opens");
        let metrics = Metrics::new();
        let now = SystemClock.now();
        let scans = Runner::new(TaskName::Scan);
        let costs = Runner::new(TaskName::Cost);

        let run = scans
            .claim(&store, "test", true, &SystemClock)
            .await
            .expect("free");
        assert!(run.act.is_some(), "a run that acts holds the act lock");
        assert_eq!(scans.running().await.as_deref(), Some(run.id.as_str()));
        let again = scans.claim(&store, "test", true, &SystemClock).await;
        let Err(refused) = again else {
            panic!("a second scan started")
        };
        assert!(matches!(&refused, TaskError::AlreadyRunning(id) if *id == run.id));
        scans.tick_refused(&metrics, &refused);
        assert_eq!(
            count(&metrics, "ephemera_task_skipped_total", &[("task", "scan")]),
            1.0
        );
        // Another task runs beside it; one that does not act takes no act lock.
        let cost = costs
            .claim(&store, "test", false, &SystemClock)
            .await
            .expect("own lock");
        assert!(cost.act.is_none());
        // Across processes: the act lock is taken, so a pass elsewhere is busy.
        let elsewhere = Runner::new(TaskName::Scan);
        assert!(matches!(
            elsewhere.claim(&store, "test", true, &SystemClock).await,
            Err(TaskError::Busy(_))
        ));

        let id = run.id.clone();
        scans
            .finish(
                &store,
                &metrics,
                run,
                RunOutcome::Partial,
                serde_json::json!({}),
                now,
            )
            .await;
        costs
            .finish(
                &store,
                &metrics,
                cost,
                RunOutcome::Success,
                serde_json::json!({}),
                now,
            )
            .await;
        let row = store
            .get_run(id)
            .await
            .expect("store")
            .expect("the run's row");
        assert_eq!(
            (row.task, row.outcome),
            (TaskName::Scan, RunOutcome::Partial)
        );
        assert_eq!(scans.running().await, None);
        let runs = |task, outcome| {
            count(
                &metrics,
                "ephemera_task_runs_total",
                &[("task", task), ("outcome", outcome)],
            )
        };
        assert_eq!(runs("scan", "partial"), 1.0);
        assert_eq!(runs("cost", "success"), 1.0);
        let text = metrics.render();
        assert!(text.contains("ephemera_task_last_success_timestamp_seconds{task=\"cost\"}"));
        assert!(!text.contains("ephemera_task_last_success_timestamp_seconds{task=\"scan\"}"));
        // Both locks are free again, here and for another process.
        let next = elsewhere
            .claim(&store, "test", true, &SystemClock)
            .await
            .expect("free again");
        assert!(next.act.is_some());
    }

    /// A run is recorded finished before its locks are let go; a claim made in between (a
    /// client that saw the run end and asked at once) waits for them instead of a refusal, and
    /// the finished run keeps its outcome.
    #[tokio::test]
    async fn a_claim_waits_for_a_finishing_run() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("s.db")).await.expect("opens");
        let metrics = Metrics::new();
        let now = SystemClock.now();
        let scans = std::sync::Arc::new(Runner::new(TaskName::Scan));
        let run = scans
            .claim(&store, "test", true, &SystemClock)
            .await
            .expect("free");
        let first = run.id.clone();

        let (s, st) = (scans.clone(), store.clone());
        let next = tokio::spawn(async move { s.claim(&st, "test", true, &SystemClock).await });
        // The test runtime has one thread: the claim now waits on the task's lock.
        tokio::task::yield_now().await;
        assert!(!next.is_finished(), "the claim waits while the run lives");
        scans
            .finish(
                &store,
                &metrics,
                run,
                RunOutcome::Success,
                serde_json::json!({}),
                now,
            )
            .await;
        let next = next
            .await
            .expect("joins")
            .expect("claimed once the run let go");
        assert!(next.act.is_some());
        let row = store.get_run(first).await.expect("store").expect("row");
        assert_eq!(
            row.outcome,
            RunOutcome::Success,
            "not closed as interrupted"
        );
    }
}
