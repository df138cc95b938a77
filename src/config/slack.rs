//! `[slack]`: a Slack (or Slack-compatible: Mattermost, Rocket.Chat) incoming webhook that
//! receives the on-call summary and the owner notices as Block Kit messages.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::webhooks::{SecretSource, duration_within, secret_source};
use crate::diagnostic::{FileError, Source};
use crate::model::HumanDuration;

/// Where a message goes in the workspace: a channel (`#name`) or a person (`@name`, or a
/// member id such as `@U024BE7LH`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum SlackTarget {
    Channel(String),
    Person(String),
}

impl SlackTarget {
    /// `#name` or `@name`: 1 to 80 of letters, digits, `.`, `_` and `-` after the sign.
    pub fn parse(s: &str) -> Option<SlackTarget> {
        let s = s.trim();
        let (sign, name) = s.split_at_checked(1)?;
        let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if name.is_empty() || name.len() > 80 || !name.chars().all(valid) {
            return None;
        }
        match sign {
            "#" => Some(SlackTarget::Channel(name.to_owned())),
            "@" => Some(SlackTarget::Person(name.to_owned())),
            _ => None,
        }
    }

    /// A member id (`U…` or `W…`, upper case and digits), which Slack mentions as `<@ID>`.
    pub fn member_id(&self) -> Option<&str> {
        match self {
            SlackTarget::Person(n)
                if n.len() >= 9
                    && (n.starts_with('U') || n.starts_with('W'))
                    && n.chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()) =>
            {
                Some(n)
            }
            _ => None,
        }
    }
}

impl std::fmt::Display for SlackTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SlackTarget::Channel(n) => write!(f, "#{n}"),
            SlackTarget::Person(n) => write!(f, "@{n}"),
        }
    }
}

/// The validated `[slack]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlackConfig {
    /// The incoming webhook's URL is a credential: it is read from here, never kept in the
    /// config.
    pub url: SecretSource,
    /// Where the on-call summary and notices about resources nobody owns go.
    pub oncall: Option<SlackTarget>,
    /// E-mail address (lower case) → where that owner's notices go. An owner not listed gets
    /// mail only.
    pub owners: BTreeMap<String, SlackTarget>,
    pub timeout: HumanDuration,
    pub retry_backoff: HumanDuration,
    pub give_up_after: HumanDuration,
}

impl SlackConfig {
    /// Where the notices of `address` go, if the owners table lists it.
    pub fn target_of(&self, address: &str) -> Option<&SlackTarget> {
        self.owners.get(&address_key(address))
    }
}

/// An address as the owners table keys it: trimmed, lower case (mail systems treat the local
/// part case-insensitively in practice, and owners are typed by hand).
pub fn address_key(a: &str) -> String {
    a.trim().to_lowercase()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSlack {
    #[serde(default)]
    url_env: Option<Spanned<String>>,
    #[serde(default)]
    url_file: Option<Spanned<PathBuf>>,
    #[serde(default)]
    oncall: Option<Spanned<String>>,
    #[serde(default)]
    owners: BTreeMap<Spanned<String>, Spanned<String>>,
    #[serde(default)]
    timeout: Option<Spanned<HumanDuration>>,
    #[serde(default)]
    retry_backoff: Option<Spanned<HumanDuration>>,
    #[serde(default)]
    give_up_after: Option<Spanned<HumanDuration>>,
}

const TARGET_FORM: &str =
    "must be a channel (`#name`) or a person (`@name`, or a member id such as `@U024BE7LH`)";

pub(super) fn resolve_slack(
    src: &Source<'_>,
    raw: Spanned<RawSlack>,
    resolve: &dyn Fn(&Path) -> PathBuf,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<SlackConfig, FileError> {
    let header = raw.span();
    let r = raw.into_inner();
    let url = secret_source(
        src,
        header,
        "slack.url",
        r.url_env,
        r.url_file,
        "the incoming webhook's URL is a credential",
        resolve,
        env,
        // The URL is a secret: the message names what it must be, never what it is.
        &|s| {
            super::oidc::check_url(s).map_err(|_| {
                "an incoming webhook URL: https:// (http:// only to 127.0.0.1 or localhost)"
                    .to_owned()
            })
        },
    )?;
    let target = |s: &Spanned<String>, field: &str| {
        SlackTarget::parse(s.get_ref()).ok_or_else(|| {
            src.error_for(s.span(), field, format!("`{}` {TARGET_FORM}", s.get_ref()))
        })
    };
    let oncall = r
        .oncall
        .as_ref()
        .map(|o| target(o, "slack.oncall"))
        .transpose()?;
    let mut owners = BTreeMap::new();
    for (address, to) in &r.owners {
        if address.get_ref().trim().parse::<lettre::Address>().is_err() {
            return Err(src.error_for(
                address.span(),
                "slack.owners",
                format!("`{}` is not an e-mail address", address.get_ref()),
            ));
        }
        let to = target(to, "slack.owners")?;
        if owners.insert(address_key(address.get_ref()), to).is_some() {
            return Err(src.error_for(
                address.span(),
                "slack.owners",
                format!(
                    "`{}` is listed twice (addresses are compared ignoring case)",
                    address.get_ref()
                ),
            ));
        }
    }
    Ok(SlackConfig {
        url,
        oncall,
        owners,
        timeout: duration_within(src, r.timeout, "slack.timeout", 10, (1, 120))?,
        retry_backoff: duration_within(src, r.retry_backoff, "slack.retry_backoff", 30, (1, 3600))?,
        give_up_after: duration_within(
            src,
            r.give_up_after,
            "slack.give_up_after",
            86_400,
            (60, 30 * 86_400),
        )?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_a_channel_or_a_person() {
        for (s, want) in [
            ("#oncall", Some(SlackTarget::Channel("oncall".into()))),
            (
                " #team-data ",
                Some(SlackTarget::Channel("team-data".into())),
            ),
            ("@alice", Some(SlackTarget::Person("alice".into()))),
            ("@U024BE7LH", Some(SlackTarget::Person("U024BE7LH".into()))),
            ("oncall", None),
            ("#", None),
            ("@", None),
            ("", None),
            ("#with space", None),
            ("#<!channel>", None),
        ] {
            assert_eq!(SlackTarget::parse(s), want, "{s:?}");
        }
        let id = |s: &str| SlackTarget::parse(s).and_then(|t| t.member_id().map(str::to_owned));
        assert_eq!(id("@U024BE7LH").as_deref(), Some("U024BE7LH"));
        assert_eq!(id("@W012A3CDE").as_deref(), Some("W012A3CDE"));
        assert_eq!(id("@Ualice"), None);
        assert_eq!(id("@alice"), None);
        assert_eq!(id("#U024BE7LH"), None);
        assert_eq!(id("@U0123"), None, "too short for a member id");
        assert_eq!(
            SlackTarget::parse("@U024BE7LH").map(|t| t.to_string()),
            Some("@U024BE7LH".into())
        );
    }
}
