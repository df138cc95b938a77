//! The creator step of a pass: who made the `untagged` and `unknown-lease` resources, from
//! CloudTrail, asked once per resource and at most `creator_lookups_per_pass` a pass.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::task::JoinSet;

use super::Tasks;
use crate::inventory::{RateLimiter, creator};
use crate::model::Arn;

impl Tasks {
    /// Looks up the creators still unknown; a lookup that fails is asked again next pass.
    /// Returns how many were looked up.
    pub(super) async fn look_up_creators(&self) -> u64 {
        let inner = &self.inner;
        let d = &inner.config.discovery;
        if !d.creators || d.creator_lookups_per_pass == 0 {
            return 0;
        }
        let due = match inner
            .store
            .creators_to_look_up(d.creator_lookups_per_pass)
            .await
        {
            Ok(due) => due,
            Err(e) => {
                tracing::error!(error = %crate::error_chain(&e), "cannot read the creators to look up");
                return 0;
            }
        };
        // One limiter per (account, region): CloudTrail's limit is per account and region.
        let mut by_scope: BTreeMap<(String, String), Vec<Arn>> = BTreeMap::new();
        for (arn, account, region) in due {
            by_scope.entry((account, region)).or_default().push(arn);
        }
        let permits = Arc::new(tokio::sync::Semaphore::new(
            inner.config.aws.max_concurrent_walks as usize,
        ));
        let mut lookups = JoinSet::new();
        for ((account, region), arns) in by_scope {
            let (this, permits) = (self.clone(), permits.clone());
            lookups.spawn(async move {
                let _permit = permits.acquire_owned().await;
                this.look_up_in(&account, &region, arns).await
            });
        }
        let mut found = Vec::new();
        while let Some(done) = lookups.join_next().await {
            match done {
                Ok(f) => found.extend(f),
                Err(e) => tracing::error!(error = %e, "a creator lookup task panicked"),
            }
        }
        let n = found.len() as u64;
        if let Err(e) = inner.store.record_creators(found, inner.clock.now()).await {
            tracing::error!(error = %crate::error_chain(&e), "cannot record creators");
        }
        n
    }

    async fn look_up_in(
        &self,
        account: &str,
        region: &str,
        arns: Vec<Arn>,
    ) -> Vec<(Arn, Option<String>)> {
        let inner = &self.inner;
        let conf = match inner.clients.config_for(account, region).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(account, region, error = %e, "no client for creator lookups");
                return Vec::new();
            }
        };
        let limiter = RateLimiter::new(creator::CALLS_PER_SECOND);
        let mut out = Vec::with_capacity(arns.len());
        for arn in arns {
            let outcome = match creator::lookup(&conf, &arn, &limiter, &inner.metrics).await {
                Ok(Some(who)) => {
                    out.push((arn, Some(who)));
                    "found"
                }
                Ok(None) => {
                    out.push((arn, None));
                    "unknown"
                }
                Err(e) => {
                    tracing::warn!(%arn, error = %crate::error_chain(&e), "creator lookup failed; this account and region's lookups are asked again next pass");
                    "error"
                }
            };
            inner
                .metrics
                .creator_lookups
                .with_label_values(&[outcome])
                .inc();
            // One failure (throttled past the retries, no permission, an emulator without
            // CloudTrail) stops this (account, region) for the pass: each further call would
            // spend the same retries to fail alike.
            if outcome == "error" {
                break;
            }
        }
        out
    }
}
