//! The retention purge as a task: `[retention]`'s horizons turned into cut-offs, each table
//! purged in batches of [`PURGE_BATCH`] rows (one write each, children before parents), the
//! counts exported and logged once.
//!
//! Architecture Invariant: the purge takes no lock and no run row (it is idempotent, and two
//! processes purging one store delete each row once between them); it continues past one
//! table's failure, and never waits on the pass: each batch is one small write in the writer's
//! queue like any other.

use chrono::{DateTime, Utc};
use strum::VariantArray;

use super::Tasks;
use crate::config::{Horizon, Retention};
use crate::model::PurgedTable;
use crate::store::{PurgeCutoffs, Store, StoreError};

/// Rows deleted per write: small enough that a lease call queued behind it waits a few
/// milliseconds, not the length of the whole purge.
pub const PURGE_BATCH: u32 = 500;

/// What one purge did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurgeReport {
    /// Rows deleted, per table, in purge order.
    pub purged: Vec<(PurgedTable, u64)>,
    /// The tables that failed, with the error chain (the others were purged).
    pub errors: Vec<(PurgedTable, String)>,
}

impl PurgeReport {
    pub fn total(&self) -> u64 {
        self.purged.iter().map(|(_, n)| n).sum()
    }
}

/// The cut-offs at `now`: each horizon before `now`. Leases are held at least
/// [`crate::metrics::TEARDOWN_WINDOW`] after they ended, whatever their horizon, since the
/// teardown ratio reads the leases ended within it.
pub fn cutoffs(r: &Retention, now: DateTime<Utc>) -> PurgeCutoffs {
    let at = |h: Horizon| h.after().map(|d| now - d.to_chrono());
    PurgeCutoffs {
        gone_resources: at(r.gone_resources),
        resolved_findings: at(r.resolved_findings),
        runs: at(r.runs),
        sent_mail: at(r.sent_mail),
        dead_mail: at(r.dead_mail),
        ended_leases: at(r.ended_leases).map(|t| t.min(now - crate::metrics::TEARDOWN_WINDOW)),
    }
}

/// Purges every table down to its cut-off, [`PURGE_BATCH`] rows per write, calling `counted`
/// after each batch.
pub async fn purge(
    store: &Store,
    cutoffs: PurgeCutoffs,
    now: DateTime<Utc>,
    counted: &(dyn Fn(PurgedTable, u64) + Sync),
) -> PurgeReport {
    let mut report = PurgeReport::default();
    for &table in PurgedTable::VARIANTS {
        let mut total = 0;
        let outcome: Result<(), StoreError> = async {
            loop {
                let n = store.purge_batch(table, cutoffs, now, PURGE_BATCH).await?;
                total += n;
                counted(table, n);
                if n == 0 {
                    return Ok(());
                }
                // Let whatever queued behind this batch (a lease call, a pass's page) go first.
                tokio::task::yield_now().await;
            }
        }
        .await;
        report.purged.push((table, total));
        if let Err(e) = outcome {
            report.errors.push((table, crate::error_chain(&e)));
        }
    }
    report
}

impl Tasks {
    /// Purges the store to `[retention]` at the clock's now; logs one line and exports the
    /// counts.
    pub async fn purge(&self) -> PurgeReport {
        let inner = &self.inner;
        let now = inner.clock.now();
        let cut = cutoffs(&inner.config.retention, now);
        let metrics = &inner.metrics;
        let counted = |t: PurgedTable, n: u64| {
            metrics
                .store_purged_rows
                .with_label_values(&[t.as_str()])
                .inc_by(n);
        };
        let started = std::time::Instant::now();
        let report = purge(&inner.store, cut, now, &counted).await;
        let count = |t: PurgedTable| {
            report
                .purged
                .iter()
                .find(|(x, _)| *x == t)
                .map_or(0, |(_, n)| *n)
        };
        let took_s = started.elapsed().as_secs_f64();
        if report.errors.is_empty() {
            metrics
                .store_purge_last_success
                .set(now.timestamp_millis() as f64 / 1000.0);
            tracing::info!(
                total = report.total(),
                resources = count(PurgedTable::Resources),
                findings = count(PurgedTable::Findings),
                finding_events = count(PurgedTable::FindingEvents),
                runs = count(PurgedTable::Runs),
                walks = count(PurgedTable::Walks),
                outbox = count(PurgedTable::Outbox),
                leases = count(PurgedTable::Leases),
                took_s,
                "store purged to its retention"
            );
        } else {
            for (table, e) in &report.errors {
                tracing::warn!(table = table.as_str(), error = %e, "cannot purge a table; the next purge tries again");
            }
            tracing::info!(
                total = report.total(),
                failed = report.errors.len(),
                took_s,
                "store partly purged to its retention"
            );
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::HumanDuration;
    use chrono::TimeDelta;

    /// Leases are never cut inside the teardown ratio's window, however short their horizon;
    /// `never` keeps a kind whole.
    #[test]
    fn lease_cutoff_stays_outside_the_teardown_window() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).expect("time");
        let mut r = Retention {
            ended_leases: Horizon::After(HumanDuration::from_secs(86_400)),
            runs: Horizon::Never,
            ..Retention::default()
        };
        let c = cutoffs(&r, now);
        assert_eq!(
            c.ended_leases,
            Some(now - crate::metrics::TEARDOWN_WINDOW),
            "a 1d horizon still keeps the window"
        );
        assert_eq!(c.runs, None);
        assert_eq!(c.dead_mail, None, "dead letters are kept by default");
        assert_eq!(c.gone_resources, Some(now - TimeDelta::days(30)));
        r.ended_leases = Horizon::After(HumanDuration::from_secs(90 * 86_400));
        assert_eq!(
            cutoffs(&r, now).ended_leases,
            Some(now - TimeDelta::days(90))
        );
    }
}
