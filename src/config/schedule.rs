//! `[schedules]`: cron expressions, UTC.

use serde::Deserialize;

/// A validated cron expression, UTC: 5 fields (minute hour day month weekday), or 6 with
/// seconds first. Validated with the scheduler's own parser and rules (day-of-month and
/// day-of-week must both match).
#[derive(Debug, Clone)]
pub struct CronSchedule {
    /// As written.
    pub expr: String,
    /// With a seconds field, as the scheduler takes it.
    pub with_seconds: String,
}

impl CronSchedule {
    pub fn parse(expr: &str) -> Result<Self, String> {
        let fields = expr.split_whitespace().count();
        let with_seconds = match fields {
            5 => format!("0 {}", expr.trim()),
            6 => expr.trim().to_owned(),
            _ => {
                return Err(format!(
                    "invalid cron expression `{expr}`: expected 5 fields (minute hour day month weekday) or 6 with seconds first"
                ));
            }
        };
        parse_with_seconds(&with_seconds)
            .map_err(|e| format!("invalid cron expression `{expr}`: {e}"))?;
        Ok(CronSchedule {
            expr: expr.to_owned(),
            with_seconds,
        })
    }

    /// The parsed cron (validated when the config was read).
    pub fn cron(&self) -> Result<croner::Cron, croner::errors::CronError> {
        parse_with_seconds(&self.with_seconds)
    }
}

/// The one set of parser settings for schedules: seconds first, day of month and day of week
/// both required to match.
fn parse_with_seconds(expr: &str) -> Result<croner::Cron, croner::errors::CronError> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .dom_and_dow(true)
        .build()
        .parse(expr)
}

impl<'de> Deserialize<'de> for CronSchedule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let expr = String::deserialize(d)?;
        CronSchedule::parse(&expr).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedules {
    /// The audit pass.
    pub scan: CronSchedule,
    /// The Cost Explorer refresh.
    pub cost: CronSchedule,
}
