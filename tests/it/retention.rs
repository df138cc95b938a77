//! The daemon's retention purge: its loop runs on its own (the store-level rules of what is
//! kept are tested in `store::retention`).

use std::time::Duration;

use chrono::TimeDelta;
use reqwest::StatusCode;

use crate::support::{OPERATOR, TestDaemon, WEB, Workdir, eventually, manual_clock, sample};

/// A running daemon purges on its own, within `purge_every` of starting: a lease ended past
/// `ended_leases` (and past the teardown window) is gone; the newest lease, ended too, is
/// kept (its id guards restores); the purge is counted and timestamped.
#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_purges_ended_leases_on_its_own() {
    let text = format!(
        "{}\n[retention]\nended_leases = \"1d\"\npurge_every = \"1m\"\n",
        crate::support::config_text()
    );
    let work = Workdir::with_config(&text);
    let clock = manual_clock();
    let d = TestDaemon::start_with_clock(&work, clock.clone()).await;
    let old = d.acquire(WEB, "web", "old").await;
    let newest = d.acquire(WEB, "web", "newest").await;
    d.release(WEB, &old).await;
    d.release(WEB, &newest).await;
    clock.advance(TimeDelta::days(10));
    eventually("a purge has run", Duration::from_secs(120), || async {
        sample(
            &d.metrics().await,
            "ephemera_store_purge_last_success_timestamp_seconds",
        )
        .is_some_and(|t| t > 0.0)
    })
    .await;
    let (s, _) = d.get(&format!("/api/v1/leases/{old}"), OPERATOR).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "the old lease is purged");
    let (s, _) = d.get(&format!("/api/v1/leases/{newest}"), OPERATOR).await;
    assert_eq!(s, StatusCode::OK, "the newest lease is kept");
    assert_eq!(
        sample(
            &d.metrics().await,
            "ephemera_store_purged_rows_total{table=\"leases\"}"
        ),
        Some(1.0)
    );
    d.stop().await;
}
