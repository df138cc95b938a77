//! Messages from templates: `templates/mail/<kind>.subject`, `.txt` and `.html` (the HTML
//! ones extend `layout.html` and are HTML-escaped automatically), embedded in the binary.
//!
//! Architecture Invariant: pure. A message is a function of its kind, its payload and the
//! sender; no clock, no store, no network.

use std::time::SystemTime;

use chrono::{DateTime, Utc};
use lettre::Message;
use lettre::message::{Mailbox, MultiPart, header};
use minijinja::{Environment, Value};

/// Every template, by name.
const TEMPLATES: &[(&str, &str)] = &[
    (
        "layout.html",
        include_str!("../../templates/mail/layout.html"),
    ),
    (
        "expiry-warning.subject",
        include_str!("../../templates/mail/expiry-warning.subject"),
    ),
    (
        "expiry-warning.txt",
        include_str!("../../templates/mail/expiry-warning.txt"),
    ),
    (
        "expiry-warning.html",
        include_str!("../../templates/mail/expiry-warning.html"),
    ),
    (
        "owner-digest.subject",
        include_str!("../../templates/mail/owner-digest.subject"),
    ),
    (
        "owner-digest.txt",
        include_str!("../../templates/mail/owner-digest.txt"),
    ),
    (
        "owner-digest.html",
        include_str!("../../templates/mail/owner-digest.html"),
    ),
    (
        "reaped-notice.subject",
        include_str!("../../templates/mail/reaped-notice.subject"),
    ),
    (
        "reaped-notice.txt",
        include_str!("../../templates/mail/reaped-notice.txt"),
    ),
    (
        "reaped-notice.html",
        include_str!("../../templates/mail/reaped-notice.html"),
    ),
    (
        "oncall-summary.subject",
        include_str!("../../templates/mail/oncall-summary.subject"),
    ),
    (
        "oncall-summary.txt",
        include_str!("../../templates/mail/oncall-summary.txt"),
    ),
    (
        "oncall-summary.html",
        include_str!("../../templates/mail/oncall-summary.html"),
    ),
    (
        "team-summary.subject",
        include_str!("../../templates/mail/team-summary.subject"),
    ),
    (
        "team-summary.txt",
        include_str!("../../templates/mail/team-summary.txt"),
    ),
    (
        "team-summary.html",
        include_str!("../../templates/mail/team-summary.html"),
    ),
    (
        "test.subject",
        include_str!("../../templates/mail/test.subject"),
    ),
    ("test.txt", include_str!("../../templates/mail/test.txt")),
    ("test.html", include_str!("../../templates/mail/test.html")),
];

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("cannot render the {kind} message")]
    Template {
        kind: String,
        #[source]
        source: minijinja::Error,
    },
    #[error("`{0}` is not an email address")]
    Address(String),
    #[error("cannot build the {kind} message")]
    Build {
        kind: String,
        #[source]
        source: lettre::error::Error,
    },
}

/// A message's three rendered parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// The template set; cheap to share.
#[derive(Debug)]
pub struct Renderer {
    env: Environment<'static>,
}

impl Default for Renderer {
    fn default() -> Self {
        Renderer::new()
    }
}

impl Renderer {
    pub fn new() -> Renderer {
        let mut env = Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        let mut syntax = minijinja::syntax::SyntaxConfig::builder();
        syntax.trim_blocks(true).lstrip_blocks(true);
        env.set_syntax(syntax.build().expect("the default delimiters are valid"));
        env.add_filter("utc", utc);
        // Tag values and AWS messages reach mail: no control or bidi character goes out raw,
        // in the text parts and the subject as in the (also HTML-escaped) HTML part.
        env.set_formatter(|out, state, value| match value.as_str() {
            Some(s) if !value.is_safe() => minijinja::escape_formatter(
                out,
                state,
                &Value::from(crate::model::printable(s).into_owned()),
            ),
            _ => minijinja::escape_formatter(out, state, value),
        });
        for (name, source) in TEMPLATES {
            env.add_template(name, source)
                .expect("the embedded templates parse (checked by a unit test)");
        }
        Renderer { env }
    }

    /// Renders the subject, text and HTML of a `kind` message from its payload.
    pub fn render(&self, kind: &str, payload: &serde_json::Value) -> Result<Rendered, RenderError> {
        let ctx = Value::from(minijinja::value::Serde(payload));
        let part = |ext: &str| {
            self.env
                .get_template(&format!("{kind}.{ext}"))
                .and_then(|t| t.render(ctx.clone()))
                .map_err(|source| RenderError::Template {
                    kind: kind.to_owned(),
                    source,
                })
        };
        Ok(Rendered {
            subject: part("subject")?.trim().to_owned(),
            text: part("txt")?,
            html: part("html")?,
        })
    }
}

/// A `YYYY-MM-DD HH:MM UTC` rendering of an RFC 3339 time (anything else is shown as is).
fn utc(value: String) -> String {
    value
        .parse::<DateTime<Utc>>()
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or(value)
}

/// The MIME message: multipart/alternative with the text part first, the HTML part second,
/// and a Message-ID fixed by the caller (the same on every attempt, so a resend after a crash
/// is recognisable as the same message).
pub fn build_message(
    kind: &str,
    from: &str,
    to: &str,
    message_id: String,
    date: DateTime<Utc>,
    rendered: Rendered,
) -> Result<Message, RenderError> {
    let from: Mailbox = from
        .parse()
        .map_err(|_| RenderError::Address(from.to_owned()))?;
    let to: Mailbox = to
        .parse()
        .map_err(|_| RenderError::Address(to.to_owned()))?;
    Message::builder()
        .from(from)
        .to(to)
        .subject(rendered.subject)
        .message_id(Some(message_id))
        .date(SystemTime::from(date))
        .header(KindHeader(kind.to_owned()))
        .multipart(MultiPart::alternative_plain_html(
            rendered.text,
            rendered.html,
        ))
        .map_err(|source| RenderError::Build {
            kind: kind.to_owned(),
            source,
        })
}

/// `X-Ephemera-Kind: owner-digest`: lets mail filters (and tests) sort messages by kind.
#[derive(Debug, Clone)]
struct KindHeader(String);

impl header::Header for KindHeader {
    fn name() -> header::HeaderName {
        header::HeaderName::new_from_ascii_str("X-Ephemera-Kind")
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(KindHeader(s.to_owned()))
    }

    fn display(&self) -> header::HeaderValue {
        header::HeaderValue::new(Self::name(), self.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn samples() -> Vec<(&'static str, serde_json::Value)> {
        let item = json!({
            "finding_id": 7, "arn": "arn:aws:ec2:us-east-1:123456789012:volume/vol-1",
            "verdict": "expired", "project": "web", "lease_id": "L1",
            "deadline": "2026-03-01T12:00:00Z", "at": "2026-03-01T12:05:00Z",
            "detail": "deleted <for good>", "resource_type": "ec2:volume",
            "account": "123456789012", "region": "us-east-1", "task": "build 7",
            "spend_usd": null,
            "creator": "arn:aws:sts::123456789012:assumed-role/ci-runner/job-<7>",
        });
        vec![
            (
                "expiry-warning",
                json!({
                    "lease_id": "L1", "project": "web", "task": "build <7>", "owner": "a@example.com",
                    "expires_at": "2026-03-01T11:00:00Z", "warn_before": "30m", "renew_ttl": "2h",
                }),
            ),
            (
                "owner-digest",
                json!({
                    "recipient": "a@example.com", "unowned": false, "items": [item.clone()],
                    "leases": [{"lease_id": "L1", "renew_ttl": "2h"}], "protect_tag": "ephemera:protect",
                }),
            ),
            (
                "reaped-notice",
                json!({
                    "recipient": "a@example.com", "unowned": true, "items": [item],
                    "leases": [], "protect_tag": "ephemera:protect",
                }),
            ),
            (
                "oncall-summary",
                json!({
                    "run_id": "R1", "outcome": "partial", "ended_at": "2026-03-01T12:00:00Z",
                    "resources_seen": 3, "findings_opened": 1, "findings_resolved": 0,
                    "verdicts": {"expired": 1, "leased": 2},
                    "reap": {"armed": false, "marked": 1, "would_delete": 0, "deleted": 0, "skipped": 0, "failed": 0, "held": 0, "capped": []},
                    "incomplete_walks": [{"account": "123456789012", "region": "eu-west-1", "reason": "throttled"}],
                    "audit_head": "12:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                    "failures": [],
                    "strays": [
                        {"arn": "arn:aws:ec2:us-east-1:123456789012:volume/vol-2", "verdict": "untagged",
                         "source": "sweep", "creator": "arn:aws:sts::123456789012:assumed-role/ci-runner/job-<8>"},
                        {"arn": "arn:aws:sqs:us-east-1:123456789012:q", "verdict": "unknown-lease",
                         "source": "tagging", "creator": null},
                    ],
                    "strays_more": 3,
                }),
            ),
            (
                "team-summary",
                json!({
                    "team": "web-platform", "projects": ["web"], "run_id": "R1", "outcome": "success",
                    "ended_at": "2026-03-01T12:00:00Z",
                    "findings": [{"arn": "arn:aws:sqs:us-east-1:123456789012:q<7>", "verdict": "expired",
                                  "project": "web", "action": "reap", "lease_id": "L1", "creator": null}],
                    "findings_more": 2,
                    "deleted": [{"arn": "arn:aws:ec2:us-east-1:123456789012:volume/vol-1", "project": "web", "detail": "deleted <for good>"}],
                    "would_delete": [], "failed": [],
                }),
            ),
            (
                "test",
                json!({"relay": "127.0.0.1:25", "tls": "plain", "at": "2026-03-01T12:00:00Z"}),
            ),
        ]
    }

    /// A tag value with terminal escapes or a bidi override reaches no part of a message raw.
    /// An item doomed for its image tells its owner that a renewal will not keep it.
    #[test]
    fn an_unapproved_image_in_a_digest_says_how_to_keep_it() {
        let r = Renderer::new();
        let mut payload = samples()[1].1.clone();
        let said = "renewing the lease does not";
        let d = r.render("owner-digest", &payload).expect("renders");
        assert!(
            !d.text.contains(said) && !d.html.contains(said),
            "{}",
            d.text
        );
        payload["items"][0]["verdict"] = "unapproved-image".into();
        let d = r.render("owner-digest", &payload).expect("renders");
        assert!(
            d.text.contains("verdict           unapproved-image"),
            "{}",
            d.text
        );
        assert!(d.text.contains(said) && d.html.contains(said), "{}", d.text);
    }

    #[test]
    fn control_characters_are_escaped_in_every_part() {
        let r = Renderer::new();
        let mut payload = samples()[0].1.clone();
        payload["task"] = json!("build\u{1b}[31m\u{202E}gnp.exe");
        let m = r.render("expiry-warning", &payload).expect("renders");
        for (part, text) in [
            ("subject", &m.subject),
            ("text", &m.text),
            ("html", &m.html),
        ] {
            assert!(
                !text.contains('\u{1b}') && !text.contains('\u{202E}'),
                "{part}: {text:?}"
            );
        }
        assert!(
            m.text.contains("build\\u{1b}[31m\\u{202e}gnp.exe"),
            "{}",
            m.text
        );
    }

    #[test]
    fn every_kind_renders_text_and_escaped_html() {
        let r = Renderer::new();
        for (kind, payload) in samples() {
            let m = r
                .render(kind, &payload)
                .unwrap_or_else(|e| panic!("{kind}: {}", crate::error_chain(&e)));
            assert!(
                m.subject.starts_with("[ephemera] "),
                "{kind}: {}",
                m.subject
            );
            assert!(!m.subject.contains('\n'), "{kind}: {}", m.subject);
            assert!(m.html.contains("<html"), "{kind}");
            assert!(
                !m.html.contains("<7>") && !m.html.contains("<for good>"),
                "{kind}: HTML is escaped"
            );
        }
        let w = r
            .render("expiry-warning", &samples()[0].1)
            .expect("renders");
        assert!(
            w.text.contains("ephemera lease renew L1 --ttl 2h"),
            "{}",
            w.text
        );
        assert!(w.text.contains("2026-03-01 11:00 UTC"), "{}", w.text);
        assert!(
            w.text.contains("build <7>"),
            "text is not escaped: {}",
            w.text
        );
        let d = r.render("owner-digest", &samples()[1].1).expect("renders");
        assert!(
            d.text.contains(
                "created by        arn:aws:sts::123456789012:assumed-role/ci-runner/job-<7>"
            ),
            "{}",
            d.text
        );
        let summary = r
            .render("oncall-summary", &samples()[3].1)
            .expect("renders");
        for line in [
            "  - arn:aws:ec2:us-east-1:123456789012:volume/vol-2 (untagged, never tagged): created by arn:aws:sts::123456789012:assumed-role/ci-runner/job-<8>",
            "  - arn:aws:sqs:us-east-1:123456789012:q (unknown-lease): creator not known yet",
            "  … and 3 more (ephemera findings)",
        ] {
            assert!(summary.text.contains(line), "{line}\n{}", summary.text);
        }
        assert!(
            d.text
                .contains("spend so far      none recorded for its task yet"),
            "{}",
            d.text
        );
        assert!(
            d.text.contains("planned deletion  2026-03-01 12:00 UTC"),
            "{}",
            d.text
        );
        assert!(d.text.contains("tag it ephemera:protect"), "{}", d.text);
        let s = r
            .render("oncall-summary", &samples()[3].1)
            .expect("renders");
        assert!(
            s.text
                .contains("account 123456789012, region eu-west-1: throttled"),
            "{}",
            s.text
        );
        assert!(
            s.text.contains("ephemera audit verify --head 12:9f86d081"),
            "the published head: {}",
            s.text
        );
    }

    #[test]
    fn a_missing_field_is_an_error_not_an_empty_string() {
        let e = Renderer::new()
            .render("expiry-warning", &json!({"lease_id": "L1"}))
            .expect_err("strict undefined");
        assert!(crate::error_chain(&e).contains("expiry-warning"));
    }
}
