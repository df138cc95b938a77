//! On-call reap jobs: `POST /api/v1/reap` starts one, the daemon runs it, anyone allowed
//! follows it (`GET /api/v1/reap/jobs/{id}`).
//!
//! Architecture Invariant: a job is a task owned by the daemon, never by the request that
//! started it: a client that disconnects, times out or crashes cancels nothing. Jobs are kept
//! in memory only (the last [`KEEP`]): every outcome is already in the audit log, which is what
//! survives a restart; a job a restart forgets is answered `reap-job-not-found`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::reaper::run::{ItemResult, Progress};
use crate::tasks::{TaskError, Tasks};

/// How many jobs are remembered; the oldest finished ones are forgotten first.
pub const KEEP: usize = 100;

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Running,
    Done,
    /// The store failed part way; what was done is in the audit log.
    Failed,
}

/// A job as it stands.
#[derive(Debug, Clone)]
pub struct JobSnapshot {
    /// Random (UUID v4): not guessable from another job's id.
    pub id: String,
    /// Who started it.
    pub principal: String,
    pub state: JobState,
    pub armed: bool,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    /// Items settled, of `total`.
    pub done: u64,
    pub total: u64,
    /// One per ARN asked for, once the job is done.
    pub results: Vec<ItemResult>,
    pub error: Option<String>,
}

#[derive(Debug)]
struct Job {
    id: String,
    principal: String,
    started_at: DateTime<Utc>,
    total: u64,
    progress: Arc<Progress>,
    end: Mutex<Option<End>>,
}

#[derive(Debug)]
struct End {
    at: DateTime<Utc>,
    results: Result<Vec<ItemResult>, String>,
}

impl Job {
    fn snapshot(&self, armed: bool) -> JobSnapshot {
        let (done, total) = self.progress.get();
        let end = self.end.lock().unwrap_or_else(|p| p.into_inner());
        let (state, results, error) = match end.as_ref().map(|e| &e.results) {
            None => (JobState::Running, vec![], None),
            Some(Ok(r)) => (JobState::Done, r.clone(), None),
            Some(Err(e)) => (JobState::Failed, vec![], Some(e.clone())),
        };
        JobSnapshot {
            id: self.id.clone(),
            principal: self.principal.clone(),
            state,
            armed,
            started_at: self.started_at,
            ended_at: end.as_ref().map(|e| e.at),
            done,
            // Known once the job has read its ARNs; until then, what was asked for.
            total: if total == 0 { self.total } else { total },
            results,
            error,
        }
    }

    fn running(&self) -> bool {
        self.end.lock().unwrap_or_else(|p| p.into_inner()).is_none()
    }
}

/// The jobs of this daemon.
#[derive(Debug, Clone)]
pub struct ReapJobs {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    tasks: Tasks,
    clock: Arc<dyn Clock>,
    jobs: Mutex<VecDeque<Arc<Job>>>,
    handles: Mutex<Vec<JoinHandle<()>>>,
}

impl ReapJobs {
    pub fn new(tasks: Tasks, clock: Arc<dyn Clock>) -> Self {
        ReapJobs {
            inner: Arc::new(Inner {
                tasks,
                clock,
                jobs: Mutex::new(VecDeque::new()),
                handles: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Starts reaping `arns` in `principal`'s name (with `reviewed`, as that plan allows);
    /// refused (before anything is started) while a pass runs.
    pub async fn start(
        &self,
        arns: Vec<String>,
        reviewed: Option<crate::reaper::plan::ReviewedPlan>,
        principal: &str,
    ) -> Result<JobSnapshot, TaskError> {
        let inner = &self.inner;
        let claim = inner.tasks.claim_reap(principal).await?;
        let job = Arc::new(Job {
            id: uuid::Uuid::new_v4().to_string(),
            principal: principal.to_owned(),
            started_at: inner.clock.now(),
            total: arns.iter().collect::<std::collections::HashSet<_>>().len() as u64,
            progress: Arc::new(Progress::default()),
            end: Mutex::new(None),
        });
        self.remember(job.clone());
        let this = self.clone();
        let (task_job, principal) = (job.clone(), principal.to_owned());
        let span = tracing::info_span!("reap_job", job = %job.id, principal = %principal);
        let handle = tokio::spawn(tracing::Instrument::instrument(
            async move {
                let results = this
                    .inner
                    .tasks
                    .reap_by_hand(claim, &arns, &principal, reviewed.as_ref(), &task_job.progress)
                    .await
                    .map_err(|e| {
                        tracing::error!(error = %crate::error_chain(&e), "on-call reaping failed part way");
                        "the store failed part way; see the daemon's log and the audit log".to_owned()
                    });
                if results.is_ok() {
                    tracing::info!("on-call reaping done");
                }
                *task_job.end.lock().unwrap_or_else(|p| p.into_inner()) = Some(End {
                    at: this.inner.clock.now(),
                    results,
                });
            },
            span,
        ));
        let mut handles = inner.handles.lock().unwrap_or_else(|p| p.into_inner());
        handles.retain(|h| !h.is_finished());
        handles.push(handle);
        drop(handles);
        Ok(job.snapshot(inner.tasks.armed()))
    }

    /// Keeps `job`, forgetting the oldest finished jobs beyond [`KEEP`].
    fn remember(&self, job: Arc<Job>) {
        let mut jobs = self.inner.jobs.lock().unwrap_or_else(|p| p.into_inner());
        jobs.push_back(job);
        while jobs.len() > KEEP {
            match jobs.iter().position(|j| !j.running()) {
                Some(i) => {
                    jobs.remove(i);
                }
                None => break,
            }
        }
    }

    /// The job `id` as it stands, if it is remembered.
    pub fn get(&self, id: &str) -> Option<JobSnapshot> {
        let jobs = self.inner.jobs.lock().unwrap_or_else(|p| p.into_inner());
        jobs.iter()
            .find(|j| j.id == id)
            .map(|j| j.snapshot(self.inner.tasks.armed()))
    }

    /// Waits for the running jobs to end (at shutdown: a job is never cut off half way by
    /// the daemon stopping on purpose).
    pub async fn drain(&self) {
        let handles =
            std::mem::take(&mut *self.inner.handles.lock().unwrap_or_else(|p| p.into_inner()));
        for h in handles {
            if let Err(e) = h.await {
                tracing::error!(error = %e, "a reap job panicked");
            }
        }
    }
}
