//! Slack messages: the mailer's messages (on-call and team summaries, owner digests, deletion
//! notices, expiry warnings) rendered as Block Kit, for an incoming webhook. Pure: the
//! deliverer ([`crate::mail::webhook`]) posts what [`message`] builds.
//!
//! Block Kit's limits are kept by construction: at most [`MAX_BLOCKS`] blocks, a header of
//! at most 150 characters, a section's text of at most 3,000 and at most 10 fields; longer
//! lists are cut and counted ("… and 12 more").

use serde_json::{Value, json};

use crate::config::SlackTarget;
use crate::model::MailKind;

/// Most blocks Slack takes in one message.
pub const MAX_BLOCKS: usize = 50;
/// Longest text of a section block.
pub const MAX_SECTION: usize = 3000;
/// Longest text of a header block.
pub const MAX_HEADER: usize = 150;
/// Resources a digest or notice lists one by one (a section each).
const ITEMS_LISTED: usize = 15;
/// Lines a list inside one section shows.
const LINES_LISTED: usize = 10;

/// The JSON body of the incoming-webhook POST that carries message `kind` (with its mail
/// payload) to `target`.
///
/// The body names the target in `channel`: Slack's legacy webhooks and the compatible chats
/// (Mattermost, Rocket.Chat) route by it; a Slack app's webhook posts to its own channel and
/// ignores it, so a person given by member id is also mentioned at the top.
pub fn message(kind: MailKind, payload: &Value, target: &SlackTarget) -> Value {
    let (text, mut blocks) = match kind {
        MailKind::ExpiryWarning => expiry_warning(payload),
        MailKind::OwnerDigest => digest(payload, Digest::Planned),
        MailKind::ReapedNotice => digest(payload, Digest::Deleted),
        MailKind::OncallSummary => pass_summary(payload),
        MailKind::TeamSummary => team_summary(payload),
        other => (
            format!("ephemera: {other}"),
            vec![section(&format!("ephemera: {other}"))],
        ),
    };
    let text = match target.member_id() {
        Some(id) => {
            blocks.insert(1.min(blocks.len()), section(&format!("<@{id}>")));
            format!("<@{id}> {text}")
        }
        None => text,
    };
    blocks.truncate(MAX_BLOCKS);
    json!({
        "channel": target.to_string(),
        "text": text,
        "blocks": blocks,
        "unfurl_links": false,
        "unfurl_media": false,
    })
}

/// `&`, `<` and `>` escaped, as Slack's mrkdwn needs (they start links and mentions).
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `s` cut to `max` characters, an ellipsis marking the cut.
fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

fn header(text: &str) -> Value {
    json!({"type": "header", "text": {"type": "plain_text", "text": cut(text, MAX_HEADER), "emoji": true}})
}

fn section(mrkdwn: &str) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": cut(mrkdwn, MAX_SECTION)}})
}

/// A section of label/value fields (at most 10, as Slack allows).
fn fields(pairs: &[(&str, String)]) -> Value {
    let fields: Vec<Value> = pairs
        .iter()
        .take(10)
        .map(|(k, v)| json!({"type": "mrkdwn", "text": cut(&format!("*{k}*\n{v}"), 2000)}))
        .collect();
    json!({"type": "section", "fields": fields})
}

fn context(mrkdwn: &str) -> Value {
    json!({"type": "context", "elements": [{"type": "mrkdwn", "text": cut(mrkdwn, MAX_SECTION)}]})
}

fn divider() -> Value {
    json!({"type": "divider"})
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_default()
}

fn count(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or(0)
}

/// A time from a payload as Slack's date token (shown in the reader's time zone), falling back
/// to UTC text; `-` when absent.
fn when(v: &Value) -> String {
    match v
        .as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
    {
        Some(t) => format!(
            "<!date^{}^{{date_short_pretty}} {{time}}|{}>",
            t.timestamp(),
            t.with_timezone(&chrono::Utc).format("%Y-%m-%d %H:%M UTC")
        ),
        None => "-".into(),
    }
}

/// `n thing` or `n things`.
fn plural(n: usize, thing: &str) -> String {
    format!("{n} {thing}{}", if n == 1 { "" } else { "s" })
}

/// A bulleted list of at most [`LINES_LISTED`] lines, then how many more there were.
fn bullets(title: &str, lines: &[String], more: u64) -> String {
    let mut s = format!("*{title}*");
    for l in lines.iter().take(LINES_LISTED) {
        s.push_str("\n• ");
        s.push_str(l);
    }
    let more = more + lines.len().saturating_sub(LINES_LISTED) as u64;
    if more > 0 {
        s.push_str(&format!("\n… and {more} more"));
    }
    s
}

fn expiry_warning(p: &Value) -> (String, Vec<Value>) {
    let (id, task, project) = (
        str_of(p, "lease_id"),
        str_of(p, "task"),
        str_of(p, "project"),
    );
    let text =
        format!("ephemera: your lease for task \"{task}\" in project {project} expires soon");
    let blocks = vec![
        header("Lease expires soon"),
        section(&format!(
            "Your lease for task *{}* in project *{}* expires {}. Once it does, the resources \
             tagged with it are flagged and, where the project's policy says so, deleted after \
             the grace period.",
            esc(task),
            esc(project),
            when(&p["expires_at"])
        )),
        fields(&[
            ("Lease", format!("`{}`", esc(id))),
            ("Project", esc(project)),
            ("Task", esc(task)),
            ("Expires", when(&p["expires_at"])),
        ]),
        section(&format!(
            "Still needed? Extend it: `ephemera lease renew {} --ttl {}`\nDone? Release it: `ephemera lease release {}`",
            esc(id),
            esc(str_of(p, "renew_ttl")),
            esc(id)
        )),
        context(&format!(
            "You get this as {}, {} before the lease expires.",
            esc(str_of(p, "reason")),
            esc(str_of(p, "warn_before"))
        )),
    ];
    (text, blocks)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Digest {
    Planned,
    Deleted,
}

/// An owner digest (deletions planned) or a deletion notice (deletions done).
fn digest(p: &Value, what: Digest) -> (String, Vec<Value>) {
    let items = p["items"].as_array().cloned().unwrap_or_default();
    let unowned = p["unowned"].as_bool().unwrap_or(false);
    let n = plural(items.len(), "resource");
    let (title, text, intro) = match what {
        Digest::Planned => (
            format!("{n} planned for deletion"),
            format!("ephemera: {n} planned for deletion"),
            format!(
                "ephemera plans to delete {n}{}. Nothing is deleted before its planned time, \
                 and only if it is still flagged then.",
                if unowned {
                    " that nobody owns (no lease and no owner tag), so this comes to on-call"
                } else {
                    " of yours"
                }
            ),
        ),
        Digest::Deleted => (
            format!("{n} deleted"),
            format!("ephemera: {n} deleted"),
            format!(
                "ephemera deleted {n}{}.",
                if unowned {
                    " that nobody owned (no lease and no owner tag), so this comes to on-call"
                } else {
                    " of yours"
                }
            ),
        ),
    };
    let mut blocks = vec![header(&title), section(&intro)];
    for i in items.iter().take(ITEMS_LISTED) {
        let lease = match (i["lease_id"].as_str(), i["task"].as_str()) {
            (Some(l), Some(t)) => format!("lease `{}` (task \"{}\")", esc(l), esc(t)),
            (Some(l), None) => format!("lease `{}`", esc(l)),
            _ => "no lease".into(),
        };
        let project = i["project"]
            .as_str()
            .map(|p| format!(" (project {})", esc(p)))
            .unwrap_or_default();
        let last = match what {
            Digest::Planned => format!(
                "deletion planned {} · spend so far {}",
                when(&i["deadline"]),
                i["spend_usd"]
                    .as_str()
                    .map(|s| format!("{} USD", esc(s)))
                    .or_else(|| i["spend_usd"].as_f64().map(|f| format!("{f} USD")))
                    .unwrap_or_else(|| "none recorded yet".into())
            ),
            Digest::Deleted => format!("deleted {}: {}", when(&i["at"]), esc(str_of(i, "detail"))),
        };
        let creator = i["creator"]
            .as_str()
            .map(|c| format!(" · created by {}", esc(c)))
            .unwrap_or_default();
        blocks.push(section(&format!(
            "`{}`\n{} in {}, account {} · *{}*{project}\n{lease} · {last}{creator}",
            esc(str_of(i, "arn")),
            esc(i["resource_type"].as_str().unwrap_or("unknown")),
            esc(i["region"].as_str().unwrap_or("?")),
            esc(i["account"].as_str().unwrap_or("?")),
            esc(str_of(i, "verdict")),
        )));
    }
    if items.len() > ITEMS_LISTED {
        blocks.push(context(&format!(
            "… and {} more: `ephemera findings`",
            items.len() - ITEMS_LISTED
        )));
    }
    let overrunning: Vec<String> = p["overrunning"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|o| {
            format!(
                "lease `{}` (project {}, task \"{}\") has run {}; its project's leases usually take {} (p95), and past {} one is overrunning. Stuck? `ephemera lease release {}`",
                esc(str_of(o, "lease_id")),
                esc(str_of(o, "project")),
                esc(str_of(o, "task")),
                esc(str_of(o, "running")),
                esc(str_of(o, "p95")),
                esc(str_of(o, "threshold")),
                esc(str_of(o, "lease_id")),
            )
        })
        .collect();
    if !overrunning.is_empty() {
        blocks.push(section(&bullets(
            "Running longer than usual",
            &overrunning,
            0,
        )));
    }
    match what {
        Digest::Planned => {
            let mut keep: Vec<String> = p["leases"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|l| {
                    format!(
                        "extend the lease: `ephemera lease renew {} --ttl {}`",
                        esc(str_of(l, "lease_id")),
                        esc(str_of(l, "renew_ttl"))
                    )
                })
                .collect();
            keep.push(format!(
                "or protect a resource for good: tag it `{}` (any value). A renewed lease or a protection tag found at the last moment always wins.",
                esc(str_of(p, "protect_tag"))
            ));
            blocks.push(section(&bullets("To keep them", &keep, 0)));
        }
        Digest::Deleted => blocks.push(context(
            "Every deletion is in the audit log: `ephemera audit list --arn ARN`",
        )),
    }
    let reasons: Vec<String> = p["reasons"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r.as_str().map(esc))
        .collect();
    if !reasons.is_empty() {
        blocks.push(context(&format!(
            "You get this as: {}.",
            reasons.join("; ")
        )));
    }
    (text, keep_last(blocks))
}

/// `blocks` within [`MAX_BLOCKS`], keeping the last (what to do, why it came) over items.
fn keep_last(mut blocks: Vec<Value>) -> Vec<Value> {
    while blocks.len() > MAX_BLOCKS {
        blocks.remove(blocks.len() / 2);
    }
    blocks
}

fn pass_summary(p: &Value) -> (String, Vec<Value>) {
    let reap = &p["reap"];
    let outcome = str_of(p, "outcome");
    let run = str_of(p, "run_id");
    let armed = reap["armed"].as_bool().unwrap_or(false);
    let text = format!(
        "ephemera: audit pass {run} ended {outcome}: {} findings opened, {} deleted, {} failed",
        count(p, "findings_opened"),
        count(reap, "deleted"),
        count(reap, "failed")
    );
    let mut blocks = vec![
        header(&format!("Audit pass: {outcome}")),
        section(&format!(
            "Pass `{}` ended *{}* {}.",
            esc(run),
            esc(outcome),
            when(&p["ended_at"])
        )),
        fields(&[
            ("Resources seen", count(p, "resources_seen").to_string()),
            ("Findings opened", count(p, "findings_opened").to_string()),
            (
                "Findings resolved",
                count(p, "findings_resolved").to_string(),
            ),
            ("Planned deletions", count(reap, "marked").to_string()),
            ("Deleted", count(reap, "deleted").to_string()),
            (
                "Would delete",
                format!(
                    "{}{}",
                    count(reap, "would_delete"),
                    if armed { "" } else { " (unarmed)" }
                ),
            ),
            ("Skipped", count(reap, "skipped").to_string()),
            ("Failed", count(reap, "failed").to_string()),
        ]),
    ];
    if let Some(v) = p["verdicts"].as_object().filter(|v| !v.is_empty()) {
        let list: Vec<String> = v
            .iter()
            .map(|(k, n)| format!("{} {}", esc(k), n.as_u64().unwrap_or(0)))
            .collect();
        blocks.push(context(&format!("Verdicts: {}", list.join(" · "))));
    }
    let lines = |key: &str, line: &dyn Fn(&Value) -> String| -> Vec<String> {
        p[key].as_array().into_iter().flatten().map(line).collect()
    };
    let capped: Vec<String> = reap["capped"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| esc(c.as_str().unwrap_or_default()))
        .collect();
    if !capped.is_empty() {
        blocks.push(section(&bullets(
            ":warning: Reaping was halted by a cap",
            &capped,
            0,
        )));
    }
    let strays = lines("strays", &|s| {
        format!(
            "`{}` ({}{}): {}",
            esc(str_of(s, "arn")),
            esc(str_of(s, "verdict")),
            if str_of(s, "source") == "sweep" {
                ", never tagged"
            } else {
                ""
            },
            s["creator"]
                .as_str()
                .map(|c| format!("created by {}", esc(c)))
                .unwrap_or_else(|| "creator not known yet".into())
        )
    });
    if !strays.is_empty() {
        blocks.push(section(&bullets(
            "Found without a lease's tags",
            &strays,
            count(p, "strays_more"),
        )));
    }
    let walks = lines("incomplete_walks", &|w| {
        format!(
            "account {}, region {}: {}",
            esc(str_of(w, "account")),
            esc(str_of(w, "region")),
            esc(str_of(w, "reason"))
        )
    });
    if !walks.is_empty() {
        blocks.push(section(&bullets(
            "Incomplete walks (nothing there is resolved, marked gone or deleted until one completes)",
            &walks,
            0,
        )));
    }
    let failures = lines("failures", &|f| {
        format!("`{}`: {}", esc(str_of(f, "arn")), esc(str_of(f, "detail")))
    });
    if !failures.is_empty() {
        blocks.push(section(&bullets(
            "Failed deletions (retried after the back-off)",
            &failures,
            0,
        )));
    }
    blocks.push(divider());
    let mut look = format!(
        "Look closer: `ephemera status` · `ephemera findings` · `ephemera plan` · `ephemera audit list --run {}`",
        esc(run)
    );
    if let Some(head) = p["audit_head"].as_str() {
        look.push_str(&format!(
            "\nAudit chain head: `{}` (`ephemera audit verify --head {}`)",
            esc(head),
            esc(head)
        ));
    }
    blocks.push(context(&look));
    (text, blocks)
}

fn team_summary(p: &Value) -> (String, Vec<Value>) {
    let team = str_of(p, "team");
    let run = str_of(p, "run_id");
    let projects: Vec<String> = p["projects"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(esc))
        .collect();
    let text = format!("ephemera: team {team}'s share of audit pass {run}");
    let mut blocks = vec![
        header(&format!(
            "Team {team}: audit pass ended {}",
            str_of(p, "outcome")
        )),
        section(&format!(
            "Pass `{}` ended {}. What it found and did in your projects ({}).",
            esc(run),
            when(&p["ended_at"]),
            projects.join(", ")
        )),
    ];
    let findings: Vec<String> = p["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            format!(
                "`{}`: {} in project {}, action {}{}{}",
                esc(str_of(f, "arn")),
                esc(str_of(f, "verdict")),
                esc(str_of(f, "project")),
                esc(str_of(f, "action")),
                f["lease_id"]
                    .as_str()
                    .map(|l| format!(", lease `{}`", esc(l)))
                    .unwrap_or_default(),
                f["creator"]
                    .as_str()
                    .map(|c| format!(", created by {}", esc(c)))
                    .unwrap_or_default(),
            )
        })
        .collect();
    if !findings.is_empty() {
        blocks.push(section(&bullets(
            "New findings",
            &findings,
            count(p, "findings_more"),
        )));
    }
    for (key, title) in [
        ("deleted", "Deleted"),
        (
            "would_delete",
            "Would be deleted (enforcement is not armed)",
        ),
        ("failed", "Failed deletions (retried after the back-off)"),
    ] {
        let list: Vec<String> = p[key]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| {
                let detail = d["detail"]
                    .as_str()
                    .filter(|_| key == "failed")
                    .map(|x| format!(": {}", esc(x)))
                    .unwrap_or_default();
                format!(
                    "`{}` (project {}){detail}",
                    esc(str_of(d, "arn")),
                    esc(str_of(d, "project"))
                )
            })
            .collect();
        if !list.is_empty() {
            blocks.push(section(&bullets(title, &list, 0)));
        }
    }
    blocks.push(context(&format!(
        "You get this as on-call of team {}. Look closer: `ephemera findings` · `ephemera audit list --run {}`",
        esc(team),
        esc(run)
    )));
    (text, blocks)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every block of `m` within Block Kit's limits; returns all its text, joined.
    fn checked(m: &Value) -> String {
        let blocks = m["blocks"].as_array().expect("blocks");
        assert!(
            !blocks.is_empty() && blocks.len() <= MAX_BLOCKS,
            "{}",
            blocks.len()
        );
        assert!(!m["text"].as_str().expect("fallback text").is_empty());
        let mut all = String::new();
        for b in blocks {
            match b["type"].as_str().expect("type") {
                "header" => {
                    let t = b["text"]["text"].as_str().expect("header text");
                    assert!(t.chars().count() <= MAX_HEADER);
                    all.push_str(t);
                }
                "section" => {
                    if let Some(t) = b["text"]["text"].as_str() {
                        assert!(t.chars().count() <= MAX_SECTION);
                        all.push_str(t);
                    }
                    if let Some(f) = b["fields"].as_array() {
                        assert!(f.len() <= 10);
                        for f in f {
                            all.push_str(f["text"].as_str().expect("field"));
                        }
                    }
                }
                "context" => {
                    for e in b["elements"].as_array().expect("elements") {
                        all.push_str(e["text"].as_str().expect("element"));
                    }
                }
                "divider" => {}
                t => panic!("unexpected block {t}"),
            }
            all.push('\n');
        }
        all
    }

    fn item(i: usize) -> Value {
        json!({
            "arn": format!("arn:aws:ec2:eu-west-1:123456789012:volume/vol-{i:04}"),
            "resource_type": "ec2:volume", "region": "eu-west-1", "account": "123456789012",
            "verdict": "expired", "project": "web", "lease_id": "lease-1", "task": "build <1>",
            "deadline": "2026-12-06T13:00:00Z", "spend_usd": "1.25", "creator": null,
        })
    }

    #[test]
    fn a_long_digest_keeps_within_block_kit_and_counts_the_rest() {
        let items: Vec<Value> = (0..40).map(item).collect();
        let p = json!({
            "recipient": "a@example.com", "unowned": false, "items": items,
            "leases": [{"lease_id": "lease-1", "renew_ttl": "2h"}],
            "protect_tag": "ephemera:protect", "reasons": ["owner a@example.com"],
            "overrunning": [],
        });
        let m = message(
            MailKind::OwnerDigest,
            &p,
            &SlackTarget::Channel("web".into()),
        );
        let text = checked(&m);
        assert_eq!(m["channel"], "#web");
        assert!(text.contains("40 resources planned for deletion"), "{text}");
        assert!(
            text.contains("vol-0014") && !text.contains("vol-0015"),
            "{text}"
        );
        assert!(text.contains("… and 25 more"), "{text}");
        assert!(
            text.contains("ephemera lease renew lease-1 --ttl 2h"),
            "{text}"
        );
        assert!(text.contains("1.25 USD"), "{text}");
        // Text from the estate is escaped: it cannot open a link or a mention.
        assert!(
            text.contains("build &lt;1&gt;") && !text.contains("<1>"),
            "{text}"
        );
        assert!(text.contains("<!date^1796562000^"), "{text}");
    }

    #[test]
    fn a_member_id_is_mentioned_and_a_handle_is_not() {
        let p = json!({
            "lease_id": "l-1", "project": "web", "task": "t", "owner": "a@example.com",
            "expires_at": "2026-12-06T13:00:00Z", "warn_before": "30m", "renew_ttl": "2h",
            "reason": "owner a@example.com",
        });
        let m = message(
            MailKind::ExpiryWarning,
            &p,
            &SlackTarget::Person("U024BE7LH".into()),
        );
        let text = checked(&m);
        assert!(text.contains("<@U024BE7LH>"), "{text}");
        assert!(
            m["text"]
                .as_str()
                .expect("text")
                .starts_with("<@U024BE7LH> ")
        );
        assert_eq!(m["channel"], "@U024BE7LH");
        let m = message(
            MailKind::ExpiryWarning,
            &p,
            &SlackTarget::Person("alice".into()),
        );
        assert!(!checked(&m).contains("<@"));
        assert!(checked(&m).contains("ephemera lease release l-1"));
    }

    #[test]
    fn a_pass_summary_shows_its_counts_and_lists() {
        let strays: Vec<Value> = (0..12)
            .map(|i| json!({"arn": format!("arn:s{i}"), "verdict": "untagged", "source": "sweep", "creator": "bob"}))
            .collect();
        let p = json!({
            "run_id": "r-1", "outcome": "succeeded", "ended_at": "2026-12-06T12:00:00Z",
            "resources_seen": 120, "findings_opened": 14, "findings_resolved": 2,
            "verdicts": {"expired": 2, "untagged": 12},
            "reap": {"armed": false, "marked": 3, "deleted": 0, "would_delete": 2, "skipped": 1, "failed": 0, "capped": ["max 10 per pass"]},
            "incomplete_walks": [{"account": "1", "region": "eu-west-1", "reason": "throttled"}],
            "strays": strays, "strays_more": 5, "audit_head": "abc", "failures": [],
        });
        let m = message(
            MailKind::OncallSummary,
            &p,
            &SlackTarget::Channel("oncall".into()),
        );
        let text = checked(&m);
        for want in [
            "*Resources seen*\n120",
            "*Findings opened*\n14",
            "*Would delete*\n2 (unarmed)",
            "max 10 per pass",
            "`arn:s9` (untagged, never tagged): created by bob",
            "… and 7 more",
            "account 1, region eu-west-1: throttled",
            "ephemera audit verify --head abc",
        ] {
            assert!(text.contains(want), "{want} in {text}");
        }
        assert!(!text.contains("arn:s10"), "{text}");
    }

    #[test]
    fn a_team_summary_names_the_team_and_its_lists() {
        let p = json!({
            "team": "web-platform", "projects": ["web"], "run_id": "r-1",
            "outcome": "succeeded", "ended_at": "2026-12-06T12:00:00Z",
            "findings": [{"arn": "arn:f", "verdict": "expired", "project": "web", "action": "reap", "lease_id": "l-1", "creator": null}],
            "findings_more": 0, "deleted": [{"arn": "arn:d", "project": "web", "detail": "ok"}],
            "would_delete": [], "failed": [{"arn": "arn:x", "project": "web", "detail": "throttled"}],
        });
        let text = checked(&message(
            MailKind::TeamSummary,
            &p,
            &SlackTarget::Channel("web".into()),
        ));
        for want in [
            "Team web-platform",
            "`arn:f`: expired in project web, action reap, lease `l-1`",
            "*Deleted*\n• `arn:d` (project web)",
            "`arn:x` (project web): throttled",
        ] {
            assert!(text.contains(want), "{want} in {text}");
        }
        assert!(!text.contains("Would be deleted"), "{text}");
    }

    #[test]
    fn cut_keeps_to_the_limit() {
        assert_eq!(cut("abc", 3), "abc");
        assert_eq!(cut("abcd", 3), "ab…");
        assert_eq!(cut(&"é".repeat(10), 4).chars().count(), 4);
    }
}
