//! The words of runs, walks and the reaper: how a task or a walk ended, what the reaper decided
//! about an item. Their kebab-case texts are what the store keeps, the API shows and metrics
//! label; they never change.

use serde::{Deserialize, Serialize};

/// Derives the string forms every word here shares (text in the store, JSON, metric labels).
macro_rules! word {
    ($(#[$m:meta])* pub enum $name:ident { $($(#[$vm:meta])* $v:ident),+ $(,)? }) => {
        $(#[$m])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
            strum::Display, strum::EnumString, strum::IntoStaticStr, strum::VariantArray,
        )]
        #[serde(rename_all = "kebab-case")]
        #[strum(serialize_all = "kebab-case")]
        pub enum $name { $($(#[$vm])* $v),+ }

        impl $name {
            pub fn as_str(self) -> &'static str {
                self.into()
            }
        }
    };
}

word! {
    /// A task the daemon runs and records as runs.
    pub enum TaskName {
        /// The audit pass: walks, evaluation, findings, the act step.
        Scan,
        /// The spend refresh from Cost Explorer.
        Cost,
        /// Mail delivery: a loop, not runs; only its last successful round is exported.
        Mail,
    }
}

word! {
    /// How a run ended (or that it has not yet).
    pub enum RunOutcome {
        Running,
        /// Everything done (for a scan: every walk complete).
        Success,
        /// A scan with some walk incomplete.
        Partial,
        Failed,
        /// Left `running` by a process that stopped; closed by the next claimant.
        Interrupted,
    }
}

word! {
    /// How inventory learnt of a resource: the Resource Groups Tagging API (`tagging`, which
    /// never lists a resource that was never tagged), a service's own list call (`sweep`), or
    /// an AWS Resource Explorer index (`resource-explorer`).
    pub enum Source {
        Tagging,
        Sweep,
        ResourceExplorer,
    }
}

word! {
    /// How the walk of one (account, region) ended: an incomplete walk resolves and deletes
    /// nothing of its (account, region).
    pub enum WalkOutcome {
        Complete,
        Incomplete,
    }
}

word! {
    /// What the reaper decided or did about one item (or a cap's scope), as the audit log and
    /// the reap results say it.
    pub enum Decision {
        /// Unarmed, due: would have been deleted.
        WouldDelete,
        Deleted,
        /// A guard stopped it at the last moment.
        Skipped,
        /// The delete call failed; retried after a back-off.
        Failed,
        /// An access key made inactive, the reversible first step of deleting it: deleted
        /// once `enforcement.deactivation_grace` has passed.
        Deactivated,
        /// Due, but held back by the plan (report-only type, incomplete walk, window, cap).
        Held,
        /// Asked for by hand and refused.
        Refused,
        /// A deletion cap stopped a whole scope.
        Capped,
        /// A batch of a bucket's objects removed before the bucket.
        Emptying,
        /// Marked for deletion at a deadline.
        Marked,
        /// The checkpoint record from which an older store's chain is keyed.
        ChainKeyed,
    }
}

word! {
    /// Who an audit record's deletion step belongs to.
    pub enum ReapMode {
        /// The act step of a pass.
        Pass,
        /// On-call reaping by hand.
        Manual,
        /// The chain's own checkpoint record.
        Checkpoint,
    }
}

/// A table the retention purge deletes from, in the order it does (children before their
/// parents); the `table` label of `ephemera_store_purged_rows_total`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    strum::Display,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
#[strum(serialize_all = "snake_case")]
pub enum PurgedTable {
    FindingEvents,
    Findings,
    Resources,
    Walks,
    Runs,
    Outbox,
    Leases,
}

impl PurgedTable {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// A run is `running` until it records how it ended.
impl Default for RunOutcome {
    fn default() -> Self {
        RunOutcome::Running
    }
}

/// A walk is complete only once it says so.
impl Default for WalkOutcome {
    fn default() -> Self {
        WalkOutcome::Incomplete
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strum::VariantArray;

    fn texts<T: Copy + Into<&'static str>>(all: &[T]) -> Vec<&'static str> {
        all.iter().map(|v| (*v).into()).collect()
    }

    /// The stored texts: changing one would orphan every row that holds it.
    #[test]
    fn words_keep_their_stored_texts() {
        assert_eq!(texts(TaskName::VARIANTS), ["scan", "cost", "mail"]);
        assert_eq!(
            texts(RunOutcome::VARIANTS),
            ["running", "success", "partial", "failed", "interrupted"]
        );
        assert_eq!(texts(WalkOutcome::VARIANTS), ["complete", "incomplete"]);
        assert_eq!(
            texts(Source::VARIANTS),
            ["tagging", "sweep", "resource-explorer"]
        );
        assert_eq!(
            texts(Decision::VARIANTS),
            [
                "would-delete",
                "deleted",
                "skipped",
                "failed",
                "deactivated",
                "held",
                "refused",
                "capped",
                "emptying",
                "marked",
                "chain-keyed"
            ]
        );
        assert_eq!(texts(ReapMode::VARIANTS), ["pass", "manual", "checkpoint"]);
        assert_eq!(
            texts(PurgedTable::VARIANTS),
            [
                "finding_events",
                "findings",
                "resources",
                "walks",
                "runs",
                "outbox",
                "leases"
            ]
        );
        for d in Decision::VARIANTS {
            assert_eq!(d.as_str().parse::<Decision>().ok(), Some(*d));
            assert_eq!(
                serde_json::to_value(d).ok(),
                Some(serde_json::Value::from(d.as_str()))
            );
        }
        assert!("complete ".parse::<WalkOutcome>().is_err());
    }
}
