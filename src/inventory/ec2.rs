//! The EC2 shapes every EC2 caller needs: tags into [`Tags`], filters from names and values,
//! SDK times into chrono's. Shared by the walk, the sweep and the reaper's EC2 deleters.

use aws_sdk_ec2::types::Filter;
use chrono::{DateTime, Utc};

use crate::model::Tags;

pub fn tags(tags: &[aws_sdk_ec2::types::Tag]) -> Tags {
    Tags::from_pairs(
        tags.iter()
            .map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default())),
    )
}

pub fn filter(name: &str, values: &[&str]) -> Filter {
    values
        .iter()
        .fold(Filter::builder().name(name), |f, v| f.values(*v))
        .build()
}

/// An SDK time (every SDK crate re-exports the same type) as chrono's.
pub fn time(t: Option<&aws_sdk_ec2::primitives::DateTime>) -> Option<DateTime<Utc>> {
    t.and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
}
