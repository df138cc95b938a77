//! Leadership: of the replicas on one store, exactly one runs the singleton work (scheduled
//! passes and their act step, the cost refresh, mail delivery, the purge). Every replica
//! serves the API.
//!
//! The leader holds the store lock [`LEADER_LOCK`] and renews it every [`RENEW`]; it lapses
//! [`TTL`] after the last renewal, or at once when its holder is a process of this host that is
//! gone. Its holder id is the fencing token: mail is claimed under it (see `mail`), and every
//! delete is fenced on the act lock its pass holds, so a replica that stalled past its lease
//! (paused, partitioned) and resumes cannot send or delete after another took over.
//!
//! Architecture Invariant: a replica believes it leads only until the monotonic clock passes
//! its last renewal plus [`TTL`] minus [`RENEW`]; a process that was stopped wakes up a
//! follower, before it has renewed anything.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::TimeDelta;

use crate::clock::{Clock, SystemClock};
use crate::metrics::Metrics;
use crate::store::{LockHolder, Store};

/// The store lock of the leader.
pub const LEADER_LOCK: &str = "leader";
/// How long leadership lasts without a renewal.
pub const TTL: TimeDelta = TimeDelta::seconds(15);
/// How often the leader renews (and a follower tries to take over).
pub const RENEW: Duration = Duration::from_secs(5);

/// Whether this process leads, and its fencing token while it does. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Leadership {
    state: Arc<std::sync::Mutex<State>>,
    /// True from each won election to the next loss (see [`Leadership::changes`]).
    changes: Arc<tokio::sync::watch::Sender<bool>>,
}

#[derive(Debug)]
enum State {
    /// Not in a replicated daemon (a one-shot command, a test): always leads, no fence.
    Alone,
    Follower,
    Leader {
        fence: String,
        until: Instant,
    },
}

impl Leadership {
    /// Leads without a lock: one-shot commands and tests that run tasks directly.
    pub fn alone() -> Leadership {
        Leadership {
            state: Arc::new(std::sync::Mutex::new(State::Alone)),
            changes: Arc::new(tokio::sync::watch::channel(true).0),
        }
    }

    fn follower() -> Leadership {
        Leadership {
            state: Arc::new(std::sync::Mutex::new(State::Follower)),
            changes: Arc::new(tokio::sync::watch::channel(false).0),
        }
    }

    /// Follows elections: the value turns true when this process starts leading (what the
    /// leader alone keeps, such as the estate-wide gauges, is then read afresh) and false
    /// when it stops.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<bool> {
        self.changes.subscribe()
    }

    /// Whether this process leads now.
    pub fn is_leader(&self) -> bool {
        match &*self.state.lock().unwrap_or_else(|p| p.into_inner()) {
            State::Alone => true,
            State::Follower => false,
            State::Leader { until, .. } => Instant::now() < *until,
        }
    }

    /// The fencing token while this process leads; `None` when alone (nothing to fence) or
    /// when it does not lead.
    pub fn fence(&self) -> Option<String> {
        match &*self.state.lock().unwrap_or_else(|p| p.into_inner()) {
            State::Leader { fence, until } if Instant::now() < *until => Some(fence.clone()),
            _ => None,
        }
    }

    fn set(&self, s: State) -> (bool, bool) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let was = matches!(&*state, State::Leader { until, .. } if Instant::now() < *until);
        *state = s;
        let is = matches!(&*state, State::Leader { .. });
        if was != is {
            self.changes.send_replace(is);
        }
        (was, is)
    }
}

/// Runs for election until `stop` fires, then lets go of the lock (a deploy hands over at
/// once instead of after [`TTL`]).
pub fn start(
    store: Store,
    metrics: Arc<Metrics>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> (Leadership, tokio::task::JoinHandle<()>) {
    let leadership = Leadership::follower();
    let me = LockHolder::here("leader");
    let l = leadership.clone();
    let task = tokio::spawn(async move {
        loop {
            // The deadline counts from before the claim: the store's TTL runs from its `now`.
            let asked = Instant::now();
            let now = SystemClock.now();
            let outcome = store.try_lock(LEADER_LOCK, me.clone(), now, TTL).await;
            let (was, is) = match outcome {
                Ok(Ok(())) => {
                    let ttl = TTL.to_std().unwrap_or_default();
                    l.set(State::Leader {
                        fence: me.id.clone(),
                        until: asked + ttl.saturating_sub(RENEW),
                    })
                }
                Ok(Err(held)) => {
                    let r = l.set(State::Follower);
                    if r.0 {
                        tracing::warn!(%held, "lost leadership");
                    }
                    r
                }
                Err(e) => {
                    tracing::error!(error = %crate::error_chain(&e), "cannot renew leadership; following until the store answers");
                    l.set(State::Follower)
                }
            };
            if is && !was {
                tracing::info!(fence = %me.id, "leading: this replica runs passes, cost refreshes, mail and the purge");
            }
            metrics.leader.set(i64::from(is));
            tokio::select! {
                _ = tokio::time::sleep(RENEW) => {}
                _ = stop.changed() => break,
            }
        }
        l.set(State::Follower);
        metrics.leader.set(0);
        if let Err(e) = store.unlock(LEADER_LOCK, me.id.clone()).await {
            tracing::warn!(error = %crate::error_chain(&e), "cannot hand over leadership; it lapses on its own");
        }
    });
    (leadership, task)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two replicas on one store: exactly one leads, and `ephemera_leader` says which; when
    /// the leader stops, it hands over and the other leads within one renewal.
    #[tokio::test]
    async fn one_replica_leads_and_hands_over_when_it_stops() {
        let dir = tempfile::tempdir().expect("temp dir");
        for (engine, a, b) in Store::open_twice_for_test(dir.path()).await {
            eprintln!("{engine}");
            let (ma, mb) = (Arc::new(Metrics::new()), Arc::new(Metrics::new()));
            let (stop_a, a_stopped) = tokio::sync::watch::channel(false);
            let (stop_b, b_stopped) = tokio::sync::watch::channel(false);
            let (la, ta) = start(a, ma.clone(), a_stopped);
            // The first claim is the first's: the second starts after it.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let (lb, tb) = start(b, mb.clone(), b_stopped);
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert!(la.is_leader() && la.fence().is_some());
            assert!(!lb.is_leader() && lb.fence().is_none());
            assert_eq!((ma.leader.get(), mb.leader.get()), (1, 0));

            let _ = stop_a.send(true);
            ta.await.expect("a stops");
            assert!(!la.is_leader());
            assert_eq!(ma.leader.get(), 0);
            tokio::time::sleep(RENEW + Duration::from_millis(500)).await;
            assert!(lb.is_leader(), "the second leads once the first let go");
            assert_ne!(lb.fence(), la.fence());
            assert_eq!(mb.leader.get(), 1);
            let _ = stop_b.send(true);
            tb.await.expect("b stops");
        }
    }

    /// A leader whose monotonic deadline passed (it was stopped, or the store did not answer
    /// in time) believes it leads no more, before it has renewed anything.
    #[test]
    fn leadership_ends_at_its_deadline_without_a_renewal() {
        let l = Leadership::follower();
        l.set(State::Leader {
            fence: "f".into(),
            until: Instant::now() + Duration::from_millis(50),
        });
        assert_eq!(l.fence().as_deref(), Some("f"));
        std::thread::sleep(Duration::from_millis(80));
        assert!(!l.is_leader());
        assert_eq!(l.fence(), None);
        assert!(Leadership::alone().is_leader());
        assert_eq!(Leadership::alone().fence(), None);
    }
}
