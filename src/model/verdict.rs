//! The verdicts a pass reaches and the actions rules take.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What a pass concludes about one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Its lease is active.
    Leased,
    /// Its lease is active but ends inside the warning window.
    Expiring,
    /// Its lease is past `expires_at`, or missed its heartbeat.
    Expired,
    /// Its lease was released but the resource is still alive.
    Released,
    /// Its lease tag names no lease we know.
    UnknownLease,
    /// A required identity tag is missing (or the tag list is empty).
    Untagged,
    /// An exclusion tag or an allowlist entry keeps it out of reach.
    Protected,
    /// It claims a project (by its lease or its project tag) that may not have resources in
    /// its account: reported, never reaped, whatever its lease says.
    Misplaced,
    /// An EC2 instance or launch template whose AMI no `[[images]]` entry approves (only while
    /// the rules hold a catalog); the lease verdicts that open findings of their own win over it.
    UnapprovedImage,
}

impl Verdict {
    pub const ALL: [Verdict; 9] = [
        Verdict::Leased,
        Verdict::Expiring,
        Verdict::Expired,
        Verdict::Released,
        Verdict::UnknownLease,
        Verdict::Untagged,
        Verdict::Protected,
        Verdict::Misplaced,
        Verdict::UnapprovedImage,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Leased => "leased",
            Verdict::Expiring => "expiring",
            Verdict::Expired => "expired",
            Verdict::Released => "released",
            Verdict::UnknownLease => "unknown-lease",
            Verdict::Untagged => "untagged",
            Verdict::Protected => "protected",
            Verdict::Misplaced => "misplaced",
            Verdict::UnapprovedImage => "unapproved-image",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Verdict::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Whether this verdict opens a finding. Leased and protected resources are fine.
    pub fn is_finding(self) -> bool {
        !matches!(self, Verdict::Leased | Verdict::Protected)
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What policy does with a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Recorded and shown; nobody is bothered.
    Report,
    /// The owner (or on-call) is told.
    Notify,
    /// Deleted after the grace period, when enforcement is armed.
    Reap,
}

impl Action {
    pub const ALL: [Action; 3] = [Action::Report, Action::Notify, Action::Reap];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Report => "report",
            Action::Notify => "notify",
            Action::Reap => "reap",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Action::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_names_round_trip() {
        for v in Verdict::ALL {
            assert_eq!(Verdict::parse(v.as_str()), Some(v));
        }
        assert!(!Verdict::Leased.is_finding());
        assert!(!Verdict::Protected.is_finding());
        assert!(Verdict::UnknownLease.is_finding());
        assert!(Verdict::UnapprovedImage.is_finding());
        assert_eq!(
            Verdict::parse("unapproved-image"),
            Some(Verdict::UnapprovedImage)
        );
    }
}
