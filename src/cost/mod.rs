//! Spend from Cost Explorer: fetched incrementally on its own schedule, kept in the store as
//! integer micro-dollars, joined with leases for waste, exported per project, region and task.
//!
//! Architecture Invariant: Cost Explorer is billed per request ($0.01), so it is called only by
//! the cost task (cron or an operator's refresh), never by a scrape or an API read; days that
//! can no longer change are fetched once. Money is never a float until it becomes a metric.

pub mod fetch;
pub mod refresh;

use std::collections::BTreeSet;

use chrono::{NaiveDate, TimeDelta};

pub use crate::model::{MicroUsd, format_usd, parse_amount, usd_f64};

/// The value of a `TAG` group key: `ephemera:project$web` → `web`; `ephemera:project$` (spend
/// without the tag) → the empty string. `None` when the key is not a tag key.
pub fn tag_value(key: &str) -> Option<&str> {
    key.split_once('$').map(|(_, v)| v)
}

/// Where a refresh starts: the earliest day since `from` that is not stored as final, and
/// never later than the start of the window that can still change (`today` and the
/// `recent_days` before it). The refresh runs to `today` inclusive.
pub fn refresh_start(
    today: NaiveDate,
    from: NaiveDate,
    final_days: &BTreeSet<NaiveDate>,
    recent_days: u32,
) -> NaiveDate {
    let recent = today - TimeDelta::days(i64::from(recent_days));
    let mut day = from;
    while day < recent && final_days.contains(&day) {
        day += TimeDelta::days(1);
    }
    day.min(recent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_keys() {
        assert_eq!(tag_value("ephemera:project$web"), Some("web"));
        assert_eq!(tag_value("ephemera:project$"), Some(""));
        assert_eq!(tag_value("ephemera:task$build 12$x"), Some("build 12$x"));
        assert_eq!(tag_value("us-east-1"), None);
    }

    #[test]
    fn refresh_window() {
        let d = |s: &str| s.parse::<NaiveDate>().expect("date");
        let today = d("2026-03-10");
        let none = BTreeSet::new();
        // First run: everything since `from`.
        assert_eq!(
            refresh_start(today, d("2026-02-08"), &none, 3),
            d("2026-02-08")
        );
        // Final up to the window: only the last three days and today.
        let finals: BTreeSet<NaiveDate> = (0..27)
            .map(|i| d("2026-02-08") + TimeDelta::days(i))
            .collect();
        assert_eq!(*finals.last().expect("days"), d("2026-03-06"));
        assert_eq!(
            refresh_start(today, d("2026-02-08"), &finals, 3),
            d("2026-03-07")
        );
        // A gap (the daemon was down) is fetched again from its first day.
        let mut gap = finals.clone();
        gap.remove(&d("2026-03-01"));
        assert_eq!(
            refresh_start(today, d("2026-02-08"), &gap, 3),
            d("2026-03-01")
        );
        // A `from` inside the window starts the window.
        assert_eq!(
            refresh_start(today, d("2026-03-09"), &none, 3),
            d("2026-03-07")
        );
    }
}
