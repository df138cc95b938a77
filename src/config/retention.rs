//! `[retention]`: how long the store keeps history it no longer needs to act on.
//!
//! Architecture Invariant: nothing here names the audit log or spend: the audit chain is
//! evidence (kept whole so it verifies), and spend rows are replaced, never added, so neither
//! has a horizon.

use serde::Deserialize;
use toml::Spanned;

use super::spans::span_in;
use crate::diagnostic::{FileError, Source};
use crate::model::HumanDuration;

/// How long a kind of row is kept once it is history: `never` (kept forever) or a duration of
/// at least a day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Horizon {
    /// Never purged.
    Never,
    /// Purged once it has been history for this long.
    After(HumanDuration),
}

/// The shortest horizon accepted: below a day, a resource a walk briefly missed would lose its
/// row (and first-seen time) while it is still around, and nobody could look at yesterday.
pub const MIN_HORIZON_SECS: u64 = 86_400;

impl Horizon {
    pub fn parse(text: &str) -> Result<Horizon, String> {
        let t = text.trim();
        if t == "never" {
            return Ok(Horizon::Never);
        }
        // "0" could mean "at once" or "never"; neither reading is safe to guess.
        if t.starts_with('0')
            && t.trim_end_matches(['s', 'm', 'h', 'd', 'w'])
                .trim_matches('0')
                .is_empty()
        {
            return Err(format!(
                "`{text}` is ambiguous: write `never` to keep these rows forever, or a duration of at least 1d"
            ));
        }
        let d = HumanDuration::parse(t)?;
        if d.as_secs() < MIN_HORIZON_SECS {
            return Err(format!(
                "`{text}` is shorter than a day: write a duration of at least 1d, or `never`"
            ));
        }
        Ok(Horizon::After(d))
    }

    /// The duration, when rows are purged at all.
    pub fn after(self) -> Option<HumanDuration> {
        match self {
            Horizon::Never => None,
            Horizon::After(d) => Some(d),
        }
    }
}

impl std::fmt::Display for Horizon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Horizon::Never => f.write_str("never"),
            Horizon::After(d) => d.fmt(f),
        }
    }
}

impl<'de> Deserialize<'de> for Horizon {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Horizon::parse(&text).map_err(serde::de::Error::custom)
    }
}

fn days(n: u64) -> Horizon {
    Horizon::After(HumanDuration::from_secs(n * 86_400))
}

/// `[retention]`. A key left out takes its default; the section left out takes every default
/// (retention is on unless each horizon is set to `never`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// Resources gone from AWS (and their rows' last tags), kept this long after they went;
    /// a gone resource is purged only once it has no finding left.
    #[serde(default = "default_gone_resources")]
    pub gone_resources: Horizon,
    /// Resolved findings with their transitions (`finding_events`), kept this long after they
    /// resolved.
    #[serde(default = "default_resolved_findings")]
    pub resolved_findings: Horizon,
    /// Runs of tasks (passes, cost refreshes) with their walks, kept this long after they
    /// ended.
    #[serde(default = "default_runs")]
    pub runs: Horizon,
    /// Outbox rows done with (messages the relay accepted, notices rolled up or closed), kept
    /// this long after that.
    #[serde(default = "default_sent_mail")]
    pub sent_mail: Horizon,
    /// Dead letters (messages the relay refused for good), kept this long after they died.
    #[serde(default = "default_dead_mail")]
    pub dead_mail: Horizon,
    /// Released or ended leases, kept this long after they ended (and never while a live
    /// resource or an open finding names them, nor inside the teardown ratio's window).
    #[serde(default = "default_ended_leases")]
    pub ended_leases: Horizon,
    /// How often the purge runs (it also runs once a few minutes after start).
    #[serde(default = "default_purge_every")]
    pub purge_every: HumanDuration,
}

// A month of gone resources and runs answers "what was there, what did the pass see" for any
// incident still being talked about; findings and leases, which name owners and say who had
// what, are kept a quarter (a typical access review or chargeback period).
fn default_gone_resources() -> Horizon {
    days(30)
}

fn default_resolved_findings() -> Horizon {
    days(90)
}

fn default_runs() -> Horizon {
    days(30)
}

fn default_sent_mail() -> Horizon {
    days(30)
}

// A dead letter is an operator's to-do (`ephemera mail retry`), not history: never dropped
// unread by default.
fn default_dead_mail() -> Horizon {
    Horizon::Never
}

fn default_ended_leases() -> Horizon {
    days(90)
}

fn default_purge_every() -> HumanDuration {
    HumanDuration::from_secs(3_600)
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            gone_resources: default_gone_resources(),
            resolved_findings: default_resolved_findings(),
            runs: default_runs(),
            sent_mail: default_sent_mail(),
            dead_mail: default_dead_mail(),
            ended_leases: default_ended_leases(),
            purge_every: default_purge_every(),
        }
    }
}

pub(super) fn validate_retention(
    src: &Source<'_>,
    r: &Spanned<Retention>,
) -> Result<(), FileError> {
    // A table's span covers its header only; its keys follow it.
    let span = r.span().start..src.text.len();
    let every = r.get_ref().purge_every.as_secs();
    if !(60..=86_400).contains(&every) {
        return Err(src.error_for(
            span_in(src, span, "purge_every"),
            "retention.purge_every",
            "must be 1m to 1d",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn horizons_read_never_or_a_day_and_more() {
        let d = |s: u64| Ok(Horizon::After(HumanDuration::from_secs(s)));
        for (text, want) in [
            ("never", Ok(Horizon::Never)),
            ("30d", d(30 * 86_400)),
            ("1d", d(86_400)),
            ("24h", d(86_400)),
            ("2w", d(14 * 86_400)),
        ] {
            assert_eq!(Horizon::parse(text), want, "{text}");
        }
        for (text, why) in [
            ("0", "ambiguous"),
            ("0d", "ambiguous"),
            ("00h", "ambiguous"),
            ("12h", "shorter than a day"),
            ("forever", "invalid duration"),
            ("", "invalid duration"),
        ] {
            let err = Horizon::parse(text).expect_err(text);
            assert!(err.contains(why), "{text}: {err}");
        }
    }
}
