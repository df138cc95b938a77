//! `[enforcement]`: arming, deletable types, caps and the deletion window.

use serde::Deserialize;
use toml::Spanned;

use super::spans::span_in;
use crate::diagnostic::{FileError, Source};
use crate::model::{HumanDuration, ResourceType};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Enforcement {
    /// Off by default: nothing is ever deleted unless this is `true`.
    #[serde(default)]
    pub armed: bool,
    /// Resource types (`ec2:volume`, as findings show them) that may be deleted; a type not
    /// listed is report-only. Empty by default: every type is report-only until listed.
    #[serde(default)]
    pub deletable_types: Vec<ResourceType>,
    /// A pass that would delete more than this deletes nothing (and says so).
    #[serde(default = "default_max_deletions")]
    pub max_deletions_per_pass: u32,
    /// A project whose due deletions exceed this share of its live inventory has none of
    /// them done that pass.
    #[serde(default = "default_max_share")]
    pub max_project_share_percent: u32,
    /// First retry delay after a failed delete; it doubles with each failure, up to a day.
    #[serde(default = "default_retry_backoff")]
    pub retry_backoff: HumanDuration,
    /// When deletions may happen (UTC); any time when absent.
    #[serde(default)]
    pub window: Option<DeletionWindow>,
}

impl Default for Enforcement {
    fn default() -> Self {
        Enforcement {
            armed: false,
            deletable_types: Vec::new(),
            max_deletions_per_pass: default_max_deletions(),
            max_project_share_percent: default_max_share(),
            retry_backoff: default_retry_backoff(),
            window: None,
        }
    }
}

fn default_max_deletions() -> u32 {
    100
}

fn default_max_share() -> u32 {
    50
}

fn default_retry_backoff() -> HumanDuration {
    HumanDuration::from_secs(15 * 60)
}

/// Days of the week and hours of the day (UTC) in which deletions may run.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeletionWindow {
    /// All days when empty.
    #[serde(default)]
    pub days: Vec<Weekday>,
    /// First hour in the window, 0–23.
    #[serde(default)]
    pub start_hour: u32,
    /// First hour after the window, 1–24 (`start_hour = 9`, `end_hour = 17`: 09:00–16:59).
    #[serde(default = "default_end_hour")]
    pub end_hour: u32,
}

fn default_end_hour() -> u32 {
    24
}

/// A day of a deletion window, written `mon` … `sun`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, strum::EnumString, strum::IntoStaticStr, strum::VariantArray,
)]
#[strum(serialize_all = "lowercase")]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Weekday {
    pub fn of(day: chrono::Weekday) -> Self {
        use strum::VariantArray;
        Weekday::VARIANTS[day.num_days_from_monday() as usize]
    }
}

impl<'de> Deserialize<'de> for Weekday {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        super::one_of(d, |v, known| format!("`{v}` is not one of {known}"))
    }
}

impl DeletionWindow {
    /// Whether `t` falls inside the window.
    pub fn contains(&self, t: chrono::DateTime<chrono::Utc>) -> bool {
        use chrono::{Datelike, Timelike};
        let day = Weekday::of(t.weekday());
        (self.days.is_empty() || self.days.contains(&day))
            && (self.start_hour..self.end_hour).contains(&t.hour())
    }
}

pub(super) fn validate_enforcement(
    src: &Source<'_>,
    e: &Spanned<Enforcement>,
) -> Result<(), FileError> {
    // A table's span covers its header only; its keys follow it.
    let span = e.span().start..src.text.len();
    let en = e.get_ref();
    if en.max_project_share_percent == 0 || en.max_project_share_percent > 100 {
        return Err(src.error_for(
            span_in(src, span.clone(), "max_project_share_percent"),
            "enforcement.max_project_share_percent",
            "must be 1 to 100",
        ));
    }
    if let Some(w) = &en.window
        && (w.start_hour > 23 || w.end_hour > 24 || w.start_hour >= w.end_hour)
    {
        return Err(src.error_for(
            span_in(src, span.clone(), "end_hour"),
            "enforcement.window",
            "needs 0 <= start_hour < end_hour <= 24",
        ));
    }
    Ok(())
}
