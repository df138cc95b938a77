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
    /// How long an access key stays deactivated (the reversible first step of deleting one)
    /// before it is deleted; its owner may switch it back on meanwhile.
    #[serde(default = "default_deactivation_grace")]
    pub deactivation_grace: HumanDuration,
    /// When deletions may happen (in its `time_zone`, UTC by default); any time when absent.
    /// An account or OU may set its own.
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
            deactivation_grace: default_deactivation_grace(),
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

// A day: a task that still needed its key finds out within a working day, and the key is
// still there to switch back on.
fn default_deactivation_grace() -> HumanDuration {
    HumanDuration::from_secs(24 * 3600)
}

/// Days of the week and hours of the day in which deletions may run, on the clock of
/// `time_zone` (UTC when absent).
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
    /// An IANA time zone (`Europe/Berlin`): the window follows its local time, daylight
    /// saving included, so "working hours" stay working hours all year.
    #[serde(default)]
    pub time_zone: Option<TimeZone>,
}

/// An IANA time zone name, parsed when the config is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeZone(pub chrono_tz::Tz);

impl<'de> Deserialize<'de> for TimeZone {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        name.parse::<chrono_tz::Tz>().map(TimeZone).map_err(|_| {
            serde::de::Error::custom(format!(
                "`{name}` is not an IANA time zone (like Europe/Berlin or UTC)"
            ))
        })
    }
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
        let local = t.with_timezone(&self.time_zone.map_or(chrono_tz::UTC, |z| z.0));
        let day = Weekday::of(local.weekday());
        (self.days.is_empty() || self.days.contains(&day))
            && (self.start_hour..self.end_hour).contains(&local.hour())
    }

    /// What is wrong with the hours, if anything.
    pub(super) fn check(&self) -> Result<(), &'static str> {
        if self.start_hour > 23 || self.end_hour > 24 || self.start_hour >= self.end_hour {
            return Err("needs 0 <= start_hour < end_hour <= 24");
        }
        Ok(())
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
    if let Some(Err(m)) = en.window.as_ref().map(DeletionWindow::check) {
        return Err(src.error_for(
            span_in(src, span.clone(), "end_hour"),
            "enforcement.window",
            m,
        ));
    }
    Ok(())
}
