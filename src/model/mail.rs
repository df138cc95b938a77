//! The kinds of rows in the mail outbox: notices (queued by the reaper and the store, rolled up
//! into messages, never sent themselves) and messages (sent).

/// What an outbox row is. Its text (`expiry-warning`, …) is what the store keeps, the metrics
/// label and the name of the row's templates.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
#[strum(serialize_all = "kebab-case")]
pub enum MailKind {
    /// A message: warns a lease's owner before it expires.
    ExpiryWarning,
    /// A notice: a resource is marked for deletion at a deadline (rolled into an owner digest).
    DeletionPlanned,
    /// A notice: a resource was deleted (rolled into a reaped notice).
    Reaped,
    /// A message: the resources of one owner that will be deleted, and when.
    OwnerDigest,
    /// A message: the resources of one owner that were deleted.
    ReapedNotice,
    /// A message: a pass's summary for on-call.
    OncallSummary,
    /// A message: a team's share of a pass (its projects), for the team's on-call.
    TeamSummary,
    /// A webhook delivery: one event to one `[[webhooks]]` endpoint (the recipient), sent by
    /// the webhook deliverer, never by the mailer.
    Webhook,
    /// A Slack message: one message (its kind and payload) to one Slack target (the
    /// recipient), sent through `[slack]` by the webhook deliverer.
    Slack,
}

impl MailKind {
    /// The kinds that are sent (the rest are notices, rolled up into these).
    pub const MESSAGES: [MailKind; 5] = [
        MailKind::ExpiryWarning,
        MailKind::OwnerDigest,
        MailKind::ReapedNotice,
        MailKind::OncallSummary,
        MailKind::TeamSummary,
    ];

    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn is_notice(self) -> bool {
        !MailKind::MESSAGES.contains(&self) && !matches!(self, MailKind::Webhook | MailKind::Slack)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strum::VariantArray;

    /// The texts are stored in the outbox and name templates: they must never change.
    #[test]
    fn kinds_keep_their_stored_names() {
        let names: Vec<&str> = MailKind::VARIANTS.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "expiry-warning",
                "deletion-planned",
                "reaped",
                "owner-digest",
                "reaped-notice",
                "oncall-summary",
                "team-summary",
                "webhook",
                "slack"
            ]
        );
        for k in MailKind::VARIANTS {
            assert_eq!(k.as_str().parse::<MailKind>().ok(), Some(*k));
            assert_eq!(k.to_string(), k.as_str());
        }
        assert!(MailKind::Reaped.is_notice() && MailKind::DeletionPlanned.is_notice());
        assert!(!MailKind::OncallSummary.is_notice() && !MailKind::TeamSummary.is_notice());
        for k in [MailKind::Webhook, MailKind::Slack] {
            assert!(!k.is_notice() && !MailKind::MESSAGES.contains(&k), "{k}");
        }
    }
}
