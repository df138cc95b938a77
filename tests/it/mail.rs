//! Email against a real SMTP server (aiosmtpd): every kind reaches its recipient with both
//! parts, once; an outage and a SIGKILL lose nothing and duplicate nothing; quiet hours hold
//! mail back; `ephemera mail test` over plain SMTP and STARTTLS + AUTH.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use ephemera::clock::ManualClock;
use ephemera::mail::Mailer;
use ephemera::model::MailKind;
use reqwest::StatusCode;
use serde_json::{Value, json};

// The reaper tests' policy: web reaps expired and released resources after an hour.
use crate::cli::{run, spawn_daemon};
use crate::reap::POLICY;
use crate::support::moto::Moto;
use crate::support::seed::{arns_by_key, seed};
use crate::support::smtp::{Received, Smtp, Tls};
use crate::support::{
    DATA, OPERATOR, TestDaemon, WEB, Workdir, config_text, config_text_with_aws, sample,
};

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Implicit TLS (SMTPS) with AUTH: the relay speaks TLS from the first byte; trusted through
/// `ca_file`, the test message is delivered over TLS and authenticated.
#[tokio::test(flavor = "multi_thread")]
async fn mail_test_over_implicit_tls_with_auth() {
    let smtps = Smtp::start(Tls::Implicit, Some(("ephemera".into(), "s3cret".into())));
    let section = smtps.section(&format!(
        "username = \"ephemera\"\npassword_env = \"SMTP_PW\"\nca_file = \"{}\"",
        smtps.ca_file().display()
    ));
    let work = Workdir::with_config(&format!("{}{}", config_text(), section));
    let cfg = work.config_path();
    let o = run(
        &[
            "mail",
            "test",
            "--to",
            "ops@example.com",
            "--config",
            cfg.to_str().expect("utf-8"),
        ],
        &[("SMTP_PW", "s3cret")],
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let m = smtps.wait_for(1).await;
    assert!(m[0].tls, "sent over TLS");
    assert_eq!(m[0].auth.as_deref(), Some("ephemera"));
    assert_eq!(m[0].rcpt_tos, ["ops@example.com"]);
}

/// At `trace`, every crate logging, `mail test` with AUTH writes neither the password nor its
/// AUTH PLAIN or LOGIN encoding anywhere.
#[tokio::test(flavor = "multi_thread")]
async fn mail_test_at_trace_level_never_logs_the_password() {
    use base64::Engine as _;
    let smtps = Smtp::start(Tls::Implicit, Some(("ephemera".into(), "s3cret-pw".into())));
    let section = smtps.section(&format!(
        "username = \"ephemera\"\npassword_env = \"SMTP_PW\"\nca_file = \"{}\"",
        smtps.ca_file().display()
    ));
    let work = Workdir::with_config(&format!("{}{}", config_text(), section));
    let cfg = work.config_path();
    let o = run(
        &[
            "--log-level",
            "trace",
            "mail",
            "test",
            "--to",
            "ops@example.com",
            "--config",
            cfg.to_str().expect("utf-8"),
        ],
        &[("SMTP_PW", "s3cret-pw")],
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    smtps.wait_for(1).await;
    let b64 = base64::engine::general_purpose::STANDARD;
    let all = format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
    assert!(
        all.contains("TRACE") || all.contains("DEBUG"),
        "trace logging is on: {all}"
    );
    for secret in [
        "s3cret-pw".to_owned(),
        b64.encode("\0ephemera\0s3cret-pw"),
        b64.encode("s3cret-pw"),
    ] {
        assert!(!all.contains(&secret), "`{secret}` in the output:\n{all}");
    }
}

/// `mail test` sends one multipart/alternative message through a plain relay, and through a
/// STARTTLS + AUTH relay whose private CA is trusted by `ca_file`; an untrusted certificate,
/// a wrong password and a bad `[smtp]` value are refused with the reason.
#[tokio::test(flavor = "multi_thread")]
async fn mail_test_over_plain_and_starttls_with_auth() {
    let plain = Smtp::plain();
    let work = Workdir::with_config(&format!("{}{}", config_text(), plain.section("")));
    let cfg = work.config_path();
    let cfg = cfg.to_str().expect("utf-8");
    let o = run(
        &["mail", "test", "--to", "ops@example.com", "--config", cfg],
        &[],
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let m = plain.wait_for(1).await;
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].rcpt_tos, ["ops@example.com"]);
    assert_eq!(m[0].mail_from, "ephemera@example.com");
    assert_eq!(m[0].subject, "[ephemera] test message");
    assert_eq!(m[0].content_type, "multipart/alternative");
    assert!(m[0].text().contains("ephemera mail test"), "{:?}", m[0]);
    assert!(
        m[0].html().contains("<code>ephemera mail test</code>"),
        "{:?}",
        m[0]
    );
    assert!(!m[0].tls);

    let secure = Smtp::starttls_auth("ephemera", "s3cret pass");
    let section = |extra: &str| {
        secure.section(&format!(
            "username = \"ephemera\"\npassword_env = \"SMTP_PW\"\n{extra}"
        ))
    };
    let ca = format!("ca_file = \"{}\"", secure.ca_file().display());
    std::fs::write(
        work.config_path(),
        format!("{}{}", config_text(), section(&ca)),
    )
    .expect("config");
    let o = run(
        &["mail", "test", "--to", "ops@example.com", "--config", cfg],
        &[("SMTP_PW", "s3cret pass")],
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let m = secure.wait_for(1).await;
    assert!(m[0].tls, "sent after STARTTLS");
    assert_eq!(m[0].auth.as_deref(), Some("ephemera"));
    assert_eq!(m[0].rcpt_tos, ["ops@example.com"]);
    assert!(m[0].text().contains("STARTTLS"), "{}", m[0].text());

    // A wrong password: refused, nothing delivered, the password never printed.
    let o = run(
        &["mail", "test", "--to", "ops@example.com", "--config", cfg],
        &[("SMTP_PW", "wrong horse")],
    )
    .await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("cannot send the test message to ops@example.com")
            && stderr(&o).contains("535"),
        "the reason, the server's 535, is named: {}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains("wrong horse"), "{}", stderr(&o));

    // Without ca_file the private CA is not trusted: the certificate is refused.
    std::fs::write(
        work.config_path(),
        format!("{}{}", config_text(), section("")),
    )
    .expect("config");
    let o = run(
        &["mail", "test", "--to", "ops@example.com", "--config", cfg],
        &[("SMTP_PW", "s3cret pass")],
    )
    .await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).to_lowercase().contains("certificate"),
        "{}",
        stderr(&o)
    );
    assert_eq!(secure.messages().len(), 1, "nothing more was delivered");

    // A relay that is down: refused, with the reason.
    let down = Smtp::stopped(Tls::None, None);
    std::fs::write(
        work.config_path(),
        format!("{}{}", config_text(), down.section("")),
    )
    .expect("config");
    let o = run(
        &["mail", "test", "--to", "ops@example.com", "--config", cfg],
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).to_lowercase().contains("connection refused"),
        "{}",
        stderr(&o)
    );

    // A bad value names the file, the line and the field.
    let text = format!(
        "{}{}",
        config_text(),
        plain.section("warn_before = \"whenever\"")
    );
    std::fs::write(work.config_path(), &text).expect("config");
    let line = text
        .lines()
        .position(|l| l.contains("whenever"))
        .expect("line")
        + 1;
    let o = run(
        &["mail", "test", "--to", "ops@example.com", "--config", cfg],
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(1));
    let want = format!("{cfg}:{line}:15: field `smtp.warn_before`: invalid duration `whenever`");
    assert!(stderr(&o).contains(&want), "{}", stderr(&o));
}

/// Counts received messages by (kind, recipient).
fn by_kind_and_recipient(m: &[Received]) -> BTreeMap<(String, String), usize> {
    let mut out = BTreeMap::new();
    for r in m {
        for to in &r.rcpt_tos {
            *out.entry((r.kind().to_owned(), to.clone())).or_default() += 1;
        }
    }
    out
}

/// Waits until the daemon's outbox is empty (every message accepted by the server).
async fn drained(d: &TestDaemon) {
    crate::support::eventually("the outbox drains", Duration::from_secs(30), || async {
        sample(&d.metrics().await, "ephemera_outbox_pending") == Some(0.0)
    })
    .await;
}

/// The whole life of a lease in mail, through a daemon on a manual clock against moto:
/// a pre-expiry warning with the renew command (again after a renewal moves the expiry),
/// the owner digest of planned deletions, the on-call summary, the deletion notice — each
/// to its recipient once, with text and HTML parts; passes with nothing new send nothing.
#[tokio::test(flavor = "multi_thread")]
async fn every_kind_reaches_its_recipient_once() {
    let moto = Moto::start().await;
    let smtp = Smtp::plain();
    let text = format!(
        "{}{}",
        config_text_with_aws(&format!(
            "regions = [\"us-east-1\"]\nendpoint_url = \"{}\"\nemulator = true\nmax_attempts = 1\n\n\
             [[aws.accounts]]\nid = \"123456789012\"\narmed = true\n\n\
             [enforcement]\narmed = true\ndeletable_types = [\"ec2:volume\"]\nmax_project_share_percent = 100\n",
            moto.endpoint()
        )),
        smtp.section(
            "oncall = [\"oncall@example.com\"]\nwarn_before = \"30m\"\nretry_backoff = \"1s\""
        )
    );
    let work = Workdir::with_config(&text);
    std::fs::write(work.path().join("rules/policy/projects.toml"), POLICY).expect("policy");
    let clock = crate::support::manual_clock();
    let d = TestDaemon::start_with_clock(&work, clock.clone()).await;

    // t0: two leases of 2h; a 20m one (shorter than the warning window: never warned).
    let doomed = d.acquire(WEB, "web", "build 7").await;
    let renewed = d.acquire(WEB, "web", "deploy 8").await;
    let (s, short) = d
        .post(
            "/api/v1/leases",
            WEB,
            json!({"project": "web", "task": "quick", "owner": "carol@example.com", "ttl": "20m"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{short}");
    let seeded = seed(
        &moto.endpoint(),
        json!({"resources": [
            {"key": "vol", "type": "ec2:volume", "tags": {
                "ephemera:lease-id": doomed, "ephemera:project": "web",
                "ephemera:task": "build 7", "ephemera:owner": "alice@example.com"}},
            {"key": "vol2", "type": "ec2:volume", "tags": {
                "ephemera:lease-id": doomed, "ephemera:project": "web",
                "ephemera:task": "build 7", "ephemera:owner": "alice@example.com"}}
        ]}),
    )
    .await;
    let arns = arns_by_key(&seeded);
    let (vol, vol2) = (arns["vol"][0].clone(), arns["vol2"][0].clone());

    // t0+1h40m: both 2h leases are inside the 30m window: one warning each, with the command.
    clock.advance(TimeDelta::minutes(100));
    let m = smtp.wait_for(2).await;
    for r in &m {
        assert_eq!(r.kind(), "expiry-warning");
        assert_eq!(r.rcpt_tos, ["alice@example.com"]);
        assert_eq!(r.content_type, "multipart/alternative");
        assert!(
            r.subject.contains("expires at 2026-03-01 11:00 UTC"),
            "{}",
            r.subject
        );
    }
    let cmds: BTreeSet<String> = m
        .iter()
        .map(|r| {
            r.text()
                .lines()
                .find(|l| l.contains("ephemera lease renew"))
                .expect("renew command")
                .trim()
                .to_owned()
        })
        .collect();
    assert_eq!(
        cmds,
        BTreeSet::from([
            format!("ephemera lease renew {doomed} --ttl 2h"),
            format!("ephemera lease renew {renewed} --ttl 2h"),
        ])
    );
    assert!(
        m[0].html().contains("<pre>ephemera lease renew"),
        "{}",
        m[0].html()
    );

    // Renewing (at t0+1h40m, for 2h) moves the expiry to 12:40: a new warning once that is
    // 30m away.
    d.renew(WEB, &renewed, "2h").await;

    // What Cost Explorer says `build 7` has cost so far (the project grouping has nothing):
    // the digest shows it.
    crate::cost::queue(
        &moto,
        vec![
            json!({"ResultsByTime": [], "DimensionValueAttributes": []}),
            json!({"ResultsByTime": [crate::cost::day("2026-03-01", "2026-03-02", true, &[
                ("ephemera:task$build 7", "us-east-1", "3.5"),
                ("ephemera:task$deploy 8", "us-east-1", "1"),
            ])], "DimensionValueAttributes": []}),
        ],
    )
    .await;
    let (s, refreshed) = d
        .post("/api/v1/cost/refresh", crate::support::OPERATOR, json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{refreshed}");

    // t0+2h20m: `doomed` expired. The pass marks both volumes (deadline +1h): one digest to
    // alice for both, and the on-call summary.
    clock.advance(TimeDelta::minutes(40));
    let run = d.pass().await;
    assert_eq!(run["run"]["summary"]["reap"]["marked"], 2, "{run}");
    let run_id = run["run"]["id"].as_str().expect("run id").to_owned();
    let m = smtp.wait_for(4).await;
    let digest = m
        .iter()
        .find(|r| r.kind() == "owner-digest")
        .expect("digest");
    assert_eq!(digest.rcpt_tos, ["alice@example.com"]);
    assert_eq!(
        digest.subject,
        "[ephemera] 2 resources planned for deletion"
    );
    for arn in [&vol, &vol2] {
        assert!(digest.text().contains(arn.as_str()), "{}", digest.text());
        // The HTML part escapes `/` as an entity.
        let escaped = arn.replace('/', "&#x2f;");
        assert!(digest.html().contains(&escaped), "{}", digest.html());
    }
    assert!(
        digest
            .text()
            .contains("verdict           expired (project web)"),
        "{}",
        digest.text()
    );
    assert!(
        digest
            .text()
            .contains("planned deletion  2026-03-01 12:20 UTC"),
        "{}",
        digest.text()
    );
    assert!(
        digest.text().contains("spend so far      3.500000 USD"),
        "{}",
        digest.text()
    );
    assert!(
        digest
            .text()
            .contains(&format!("ephemera lease renew {doomed} --ttl 2h"))
    );
    assert!(
        digest.text().contains("tag it ephemera:protect"),
        "{}",
        digest.text()
    );
    let summary = m
        .iter()
        .find(|r| r.kind() == "oncall-summary")
        .expect("summary");
    assert_eq!(summary.rcpt_tos, ["oncall@example.com"]);
    assert!(
        summary.subject.contains("2 planned deletions"),
        "{}",
        summary.subject
    );
    assert!(summary.text().contains(&run_id), "{}", summary.text());
    assert!(
        summary.text().contains("planned deletions   2"),
        "{}",
        summary.text()
    );
    assert!(summary.html().contains(&run_id));

    // A pass with nothing new queues nothing.
    drained(&d).await;
    let store_path = work.path().join("state/ephemera.db");
    let rows_before = outbox_len(&store_path).await;
    d.pass().await;
    drained(&d).await;
    assert_eq!(outbox_len(&store_path).await, rows_before, "nothing queued");

    // t0+3h20m: the renewed lease is 20m from its new expiry: warned again. The volumes are
    // past their deadline: deleted, one notice to alice for both, and a summary.
    clock.advance(TimeDelta::hours(1));
    let run = d.pass().await;
    assert_eq!(run["run"]["summary"]["reap"]["deleted"], 2, "{run}");
    let m = smtp.wait_for(7).await;
    let notice = m
        .iter()
        .find(|r| r.kind() == "reaped-notice")
        .expect("notice");
    assert_eq!(notice.rcpt_tos, ["alice@example.com"]);
    assert_eq!(notice.subject, "[ephemera] 2 resources deleted");
    assert!(
        notice.text().contains(&vol) && notice.text().contains(&vol2),
        "{}",
        notice.text()
    );
    let warnings: Vec<&Received> = m.iter().filter(|r| r.kind() == "expiry-warning").collect();
    assert_eq!(warnings.len(), 3, "{warnings:#?}");
    assert!(warnings[2].text().contains(&renewed) && warnings[2].subject.contains("12:40 UTC"));

    drained(&d).await;
    d.pass().await;
    drained(&d).await;
    let m = smtp.messages();
    let counts = by_kind_and_recipient(&m);
    assert_eq!(
        counts,
        BTreeMap::from([
            (("expiry-warning".into(), "alice@example.com".into()), 3),
            (("oncall-summary".into(), "oncall@example.com".into()), 2),
            (("owner-digest".into(), "alice@example.com".into()), 1),
            (("reaped-notice".into(), "alice@example.com".into()), 1),
        ]),
        "{m:#?}"
    );
    let ids: BTreeSet<&str> = m.iter().map(|r| r.message_id.as_str()).collect();
    assert_eq!(ids.len(), m.len(), "no message twice");
    let metrics = d.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            r#"ephemera_emails_sent_total{kind="owner-digest"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &metrics,
            r#"ephemera_emails_sent_total{kind="expiry-warning"}"#
        ),
        Some(3.0)
    );
    assert_eq!(sample(&metrics, "ephemera_email_failures_total"), Some(0.0));
    d.stop().await;
}

async fn outbox_len(path: &std::path::Path) -> usize {
    let store = ephemera::store::Store::open(path).await.expect("store");
    store.outbox_rows().await.expect("rows").len()
}

/// A mailer on a manual clock over the config in `work`, with the store it works on.
async fn mailer(work: &Workdir, clock: Arc<ManualClock>) -> (Mailer, ephemera::store::Store) {
    let (m, store, _) = mailer_with_metrics(work, clock).await;
    (m, store)
}

/// [`mailer`], with the metrics it updates.
async fn mailer_with_metrics(
    work: &Workdir,
    clock: Arc<ManualClock>,
) -> (
    Mailer,
    ephemera::store::Store,
    Arc<ephemera::metrics::Metrics>,
) {
    let config = work.config();
    let parts = ephemera::daemon::open(config.clone(), clock.clone())
        .await
        .expect("parts");
    let m = Mailer::new(
        &config,
        parts.policy.clone(),
        parts.store.clone(),
        parts.metrics.clone(),
        clock,
    )
    .expect("transport")
    .expect("[smtp] configured");
    (m, parts.store, parts.metrics)
}

/// A deletion-planned notice as the reaper queues it.
async fn notice(
    store: &ephemera::store::Store,
    kind: &str,
    id: i64,
    to: Option<&str>,
    at: DateTime<Utc>,
) {
    let queued = store
        .enqueue(
            kind.parse().expect("a mail kind"),
            to.map(str::to_owned),
            format!("{kind}:{id}"),
            json!({"finding_id": id, "arn": format!("arn:aws:sqs:us-east-1:123456789012:q{id}"),
                   "verdict": "expired", "project": "web", "lease_id": null,
                   "deadline": at + TimeDelta::hours(1), "at": at, "detail": "deleted"}),
            at,
        )
        .await
        .expect("enqueue");
    assert!(queued);
}

/// The relay goes down mid-run and comes back: every queued message is delivered exactly
/// once (counted at the server), failed attempts back off, nothing is marked sent early.
#[tokio::test(flavor = "multi_thread")]
async fn smtp_outage_then_recovery_delivers_each_message_exactly_once() {
    let mut smtp = Smtp::plain();
    let work = Workdir::with_config(&format!(
        "{}{}",
        config_text(),
        smtp.section("oncall = [\"oncall@example.com\"]\nretry_backoff = \"1m\"")
    ));
    let clock = crate::support::manual_clock();
    let t0 = clock_now(&clock);
    let (m, store) = mailer(&work, clock.clone()).await;

    // Up: alice's two notices roll up into one digest.
    notice(&store, "deletion-planned", 1, Some("alice@example.com"), t0).await;
    notice(&store, "deletion-planned", 2, Some("alice@example.com"), t0).await;
    let r = m.round(false).await.expect("round");
    assert_eq!((r.sent, r.failed, r.pending), (1, 0, 0), "{r:?}");
    assert_eq!(smtp.messages().len(), 1);

    // Down mid-run: more mail queues; the attempt fails and backs off; nothing marked sent.
    smtp.stop();
    notice(&store, "deletion-planned", 3, Some("bob@example.com"), t0).await;
    notice(&store, "deletion-planned", 4, Some("bob@example.com"), t0).await;
    notice(&store, "reaped", 5, Some("carol@example.com"), t0).await;
    notice(&store, "deletion-planned", 6, None, t0).await;
    let r = m.round(false).await.expect("round");
    assert_eq!(
        (r.sent, r.failed),
        (0, 1),
        "stops at the first refused connection: {r:?}"
    );
    let r = m.round(false).await.expect("round");
    assert_eq!(
        (r.sent, r.failed),
        (0, 1),
        "the next message is tried: {r:?}"
    );
    clock.advance(TimeDelta::seconds(30));
    let r = m.round(false).await.expect("round");
    assert_eq!((r.sent, r.failed), (0, 1), "{r:?}");
    let rows = store.outbox_rows().await.expect("rows");
    let messages: Vec<_> = rows.iter().filter(|r| !r.kind.is_notice()).collect();
    assert_eq!(messages.len(), 4, "{messages:#?}");
    assert!(
        messages[1..]
            .iter()
            .all(|r| r.sent_at.is_none() && r.attempts == 1 && r.last_error.is_some()),
        "{messages:#?}"
    );
    assert!(
        messages[1..]
            .iter()
            .all(|r| r.next_attempt_at == Some(t0 + TimeDelta::minutes(1))
                || r.next_attempt_at == Some(t0 + TimeDelta::seconds(30) + TimeDelta::minutes(1))),
        "{messages:#?}"
    );

    // Still backing off: a round sends nothing and tries nothing.
    let r = m.round(false).await.expect("round");
    assert_eq!((r.sent, r.failed, r.pending), (0, 0, 3), "{r:?}");

    // Back up, past the back-off: each message goes exactly once.
    smtp.restart();
    clock.advance(TimeDelta::minutes(2));
    let r = m.round(false).await.expect("round");
    assert_eq!((r.sent, r.failed, r.pending), (3, 0, 0), "{r:?}");
    let r = m.round(true).await.expect("round");
    assert_eq!((r.sent, r.failed, r.pending), (0, 0, 0), "{r:?}");
    let got = smtp.messages();
    assert_eq!(
        by_kind_and_recipient(&got),
        BTreeMap::from([
            (("owner-digest".into(), "alice@example.com".into()), 1),
            (("owner-digest".into(), "bob@example.com".into()), 1),
            (("owner-digest".into(), "oncall@example.com".into()), 1),
            (("reaped-notice".into(), "carol@example.com".into()), 1),
        ]),
        "{got:#?}"
    );
    let unowned = got
        .iter()
        .find(|r| r.rcpt_tos == ["oncall@example.com"])
        .expect("unowned");
    assert!(
        unowned.subject.ends_with("(no owner)"),
        "{}",
        unowned.subject
    );
    assert!(unowned.text().contains("q6"), "{}", unowned.text());
}

fn clock_now(clock: &ManualClock) -> DateTime<Utc> {
    ephemera::clock::Clock::now(clock)
}

/// A plain relay, quiet hours 22:00-07:00, and a clock at 23:00.
fn quiet_night() -> (Smtp, Workdir, Arc<ManualClock>) {
    let smtp = Smtp::plain();
    let work = Workdir::with_config(&format!(
        "{}{}",
        config_text(),
        smtp.section("\n[smtp.quiet_hours]\nstart_hour = 22\nend_hour = 7")
    ));
    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2026, 3, 1, 23, 0, 0)
            .single()
            .expect("time"),
    ));
    (smtp, work, clock)
}

/// Quiet hours hold everything back, notices too (so a night's burst is one digest), and
/// everything goes out when they end.
#[tokio::test(flavor = "multi_thread")]
async fn quiet_hours_hold_mail_until_they_end() {
    let (smtp, work, clock) = quiet_night();
    let t0 = clock_now(&clock);
    let (m, store) = mailer(&work, clock.clone()).await;
    notice(&store, "deletion-planned", 1, Some("alice@example.com"), t0).await;
    let r = m.round(true).await.expect("round");
    assert!(r.quiet && r.sent == 0 && r.pending == 1, "{r:?}");
    clock.advance(TimeDelta::hours(3));
    notice(&store, "deletion-planned", 2, Some("alice@example.com"), t0).await;
    let r = m.round(true).await.expect("round");
    assert!(r.quiet && r.sent == 0 && r.pending == 2, "{r:?}");
    assert!(smtp.messages().is_empty());

    clock.advance(TimeDelta::hours(5)); // 07:00
    let r = m.round(false).await.expect("round");
    assert_eq!((r.quiet, r.sent, r.pending), (false, 1, 0), "{r:?}");
    let got = smtp.messages();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].subject,
        "[ephemera] 2 resources planned for deletion"
    );
}

/// A deletion planned in the night and called off before quiet hours end (the lease renewed,
/// the finding resolved, or marked again with another deadline) is not announced in the
/// morning digest: its notice is withdrawn, and only what is still planned goes out.
#[tokio::test(flavor = "multi_thread")]
async fn a_deletion_called_off_in_quiet_hours_is_not_announced() {
    let (smtp, work, clock) = quiet_night();
    let t0 = clock_now(&clock);
    let deadline = t0 + TimeDelta::hours(6);
    let (m, store) = mailer(&work, clock.clone()).await;
    let arn = |id: i64| format!("arn:aws:ec2:us-east-1:123456789012:volume/vol-{id}");
    // Findings as passes leave them: 1 still marked for `deadline`; 2 resolved (lease
    // renewed); 3 marked again for a later deadline; 4 open, its mark cleared (protected).
    let raw = rusqlite::Connection::open(work.path().join("state/ephemera.db")).expect("open");
    for (id, resolved, marked) in [
        (1, None, Some(deadline)),
        (2, Some(t0), Some(deadline)),
        (3, None, Some(deadline + TimeDelta::hours(1))),
        (4, None, None),
    ] {
        raw.execute(
            "INSERT INTO resources (arn, account, region, resource_type, tags, first_seen, last_seen,
                                    verdict, reason, action, grace_s, last_run)
             VALUES (?1, '123456789012', 'us-east-1', 'ec2:volume', '{}', ?2, ?2, 'expired',
                     'lease expired', 'reap', 3600, 'run')",
            rusqlite::params![arn(id), t0.timestamp_millis()],
        )
        .expect("resource");
        raw.execute(
            "INSERT INTO findings (id, arn, verdict, action, reason, project, account, region,
                                   resource_type, opened_at, updated_at, resolved_at, deadline)
             VALUES (?1, ?2, 'expired', 'reap', 'lease expired', 'web', '123456789012',
                     'us-east-1', 'ec2:volume', ?3, ?3, ?4, ?5)",
            rusqlite::params![
                id,
                arn(id),
                t0.timestamp_millis(),
                resolved.map(|t: DateTime<Utc>| t.timestamp_millis()),
                marked.map(|t: DateTime<Utc>| t.timestamp_millis())
            ],
        )
        .expect("finding");
        let queued = store
            .enqueue(
                MailKind::DeletionPlanned,
                Some("alice@example.com".into()),
                format!("deletion-planned:{id}:{}", deadline.timestamp_millis()),
                json!({"finding_id": id, "arn": arn(id), "verdict": "expired",
                       "project": "web", "lease_id": null, "deadline": deadline}),
                t0,
            )
            .await
            .expect("enqueue");
        assert!(queued);
    }
    let r = m.round(true).await.expect("round");
    assert!(r.quiet && r.sent == 0, "{r:?}");

    clock.advance(TimeDelta::hours(8)); // 07:00
    let r = m.round(false).await.expect("round");
    assert_eq!((r.quiet, r.sent, r.pending), (false, 1, 0), "{r:?}");
    let got = smtp.messages();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].subject, "[ephemera] 1 resource planned for deletion");
    let text = got[0].text();
    assert!(text.contains(&arn(1)), "{text}");
    for id in [2, 3, 4] {
        assert!(!text.contains(&arn(id)), "{text}");
    }
    let rows = store.outbox_rows().await.expect("rows");
    for id in [2, 3, 4] {
        let row = rows
            .iter()
            .find(|r| r.kind == MailKind::DeletionPlanned && r.payload["finding_id"] == id)
            .expect("notice");
        assert!(
            row.last_error
                .as_deref()
                .is_some_and(|e| e.starts_with("withdrawn")),
            "{row:?}"
        );
    }
}

/// SIGKILL of the daemon binary while mail is pending (the relay is down): after a restart,
/// with the relay back, the mail is delivered — once.
#[tokio::test(flavor = "multi_thread")]
async fn pending_mail_is_delivered_after_sigkill_and_restart() {
    let mut smtp = Smtp::stopped(Tls::None, None);
    // The test config's AWS endpoint is a closed port: the pass's walks are incomplete,
    // which is news for on-call.
    let work = Workdir::with_config(&format!(
        "{}{}",
        config_text().replace("emulator = true", "emulator = true\nmax_attempts = 1"),
        smtp.section("oncall = [\"oncall@example.com\"]\nretry_backoff = \"1s\"")
    ));
    let (mut daemon, addr) = spawn_daemon(&work.config_path());
    let http = reqwest::Client::new();
    let started: Value = http
        .post(format!("{addr}/api/v1/scans"))
        .bearer_auth(OPERATOR)
        .json(&json!({}))
        .send()
        .await
        .expect("scan")
        .json()
        .await
        .expect("json");
    let run_id = started["run_id"].as_str().expect("run id").to_owned();
    // Wait until the summary is queued and an attempt at it failed.
    crate::support::eventually(
        "the summary is queued and an attempt at it failed",
        Duration::from_secs(30),
        || async {
            let last = http
                .get(format!("{addr}/metrics"))
                .send()
                .await
                .expect("metrics")
                .text()
                .await
                .expect("text");
            sample(&last, "ephemera_email_failures_total").is_some_and(|n| n >= 1.0)
                && sample(&last, "ephemera_outbox_pending").is_some_and(|n| n >= 1.0)
        },
    )
    .await;
    daemon.child.kill().expect("SIGKILL");
    daemon.wait();
    assert!(smtp.messages().is_empty());

    smtp.restart();
    let (_daemon, _addr) = spawn_daemon(&work.config_path());
    let got = smtp.wait_for(1).await;
    assert_eq!(got[0].kind(), "oncall-summary");
    assert_eq!(got[0].rcpt_tos, ["oncall@example.com"]);
    assert!(got[0].text().contains(&run_id), "{}", got[0].text());
    assert!(
        got[0].text().contains("Incomplete walks"),
        "{}",
        got[0].text()
    );
    // Drained, and sent once.
    let store = ephemera::store::Store::open(&work.path().join("state/ephemera.db"))
        .await
        .expect("store");
    crate::support::eventually("the outbox drains", Duration::from_secs(30), || async {
        store.outbox_pending().await.expect("pending") == 0
    })
    .await;
    let rows = store.outbox_rows().await.expect("rows");
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert!(
        rows[0].sent_at.is_some() && rows[0].attempts >= 2,
        "{rows:#?}"
    );
    assert_eq!(smtp.messages().len(), 1);
}

/// The mailer asks for leases to warn on every round (every few seconds): a lease already
/// warned for its current expiry is not handed back, so rounds do not re-queue (a write each)
/// what the outbox holds; a renewal that moves the expiry makes it due again.
#[tokio::test(flavor = "multi_thread")]
async fn a_warned_lease_is_not_asked_for_again_until_its_expiry_moves() {
    let smtp = Smtp::plain();
    let work = Workdir::with_config(&format!(
        "{}{}",
        config_text(),
        smtp.section("warn_before = \"30m\"")
    ));
    let clock = crate::support::manual_clock();
    let (m, store) = mailer(&work, clock.clone()).await;
    let config = work.config();
    let parts = ephemera::daemon::open(config.clone(), clock.clone())
        .await
        .expect("parts");
    let registry = ephemera::lease::LeaseRegistry::new(
        store.clone(),
        parts.policy.clone(),
        config.tags.clone(),
        clock.clone(),
        parts.metrics.clone(),
    );
    let operator = ephemera::auth::Principal {
        name: "oncall".into(),
        role: ephemera::auth::Role::Operator,
        projects: BTreeSet::new(),
        tokens: vec![ephemera::auth::TokenHash::of("t")],
        oidc: None,
        owner_claim: None,
        default_owner: None,
    };
    let lease = registry
        .acquire(
            &operator,
            ephemera::lease::AcquireRequest {
                project: "web".into(),
                task: "build 1".into(),
                owner: Some("alice@example.com".into()),
                ttl: Some("2h".into()),
                ..Default::default()
            },
        )
        .await
        .expect("acquired")
        .lease;
    let window = TimeDelta::minutes(30);
    clock.advance(TimeDelta::minutes(100));
    let now = clock_now(&clock);
    let due = store
        .leases_expiring_within(now, window)
        .await
        .expect("read");
    assert_eq!(due.len(), 1, "inside the window: {due:?}");
    assert_eq!(m.queue_expiry_warnings(now).await.expect("queued"), 1);
    let due = store
        .leases_expiring_within(now, window)
        .await
        .expect("read");
    assert!(due.is_empty(), "warned already: {due:?}");
    assert_eq!(m.queue_expiry_warnings(now).await.expect("queued"), 0);

    registry
        .renew(&operator, &lease.id.to_string(), Some("25m".into()))
        .await
        .expect("renewed");
    let due = store
        .leases_expiring_within(now, window)
        .await
        .expect("read");
    assert_eq!(due.len(), 1, "a new expiry is warned again: {due:?}");
}

/// The directory of the mail routing test: a handle with an address, a team that owns `web`
/// with a member who has no address of their own.
const TEAMS: &str = r#"
[handles]
octocat = "octo@example.com"

[[team]]
name = "web-platform"
mail = ["web@example.com"]
oncall = ["web-oncall@example.com"]
projects = ["web"]
members = ["hubot"]
"#;

/// Owners as handles, members and strangers, through a daemon on a manual clock against moto:
/// expiry warnings and digests reach the handle's address, the team's mail for a member, and
/// the on-call of the project's team for an owner nobody can reach; the team's on-call gets
/// its share of the pass; the global on-call still gets the whole summary. Each once.
#[tokio::test(flavor = "multi_thread")]
async fn teams_and_handles_route_warnings_digests_and_summaries() {
    let moto = Moto::start().await;
    let smtp = Smtp::plain();
    let text = format!(
        "{}{}",
        config_text_with_aws(&format!(
            "regions = [\"us-east-1\"]\nendpoint_url = \"{}\"\nemulator = true\nmax_attempts = 1\n\n\
             [[aws.accounts]]\nid = \"123456789012\"\narmed = true\n\n\
             [enforcement]\narmed = true\ndeletable_types = [\"ec2:volume\"]\nmax_project_share_percent = 100\n",
            moto.endpoint()
        )),
        smtp.section(
            "oncall = [\"oncall@example.com\"]\nwarn_before = \"30m\"\nretry_backoff = \"1s\""
        )
    );
    let work = Workdir::with_config(&text);
    std::fs::write(work.path().join("rules/policy/projects.toml"), POLICY).expect("policy");
    std::fs::write(work.path().join("rules/policy/teams.toml"), TEAMS).expect("teams");
    let clock = crate::support::manual_clock();
    let d = TestDaemon::start_with_clock(&work, clock.clone()).await;

    let mut leases = BTreeMap::new();
    for (owner, task) in [
        ("OctoCat", "t-handle"),
        ("hubot", "t-member"),
        ("stranger", "t-none"),
    ] {
        let id = d
            .acquire_with(WEB, json!({"project": "web", "task": task, "owner": owner}))
            .await;
        leases.insert(task, (id, owner));
    }
    let resources: Vec<Value> = leases
        .iter()
        .map(|(task, (id, owner))| {
            json!({"key": task, "type": "ec2:volume", "tags": {
                "ephemera:lease-id": id, "ephemera:project": "web", "ephemera:task": task,
                "ephemera:owner": owner}})
        })
        .collect();
    let seeded = seed(&moto.endpoint(), json!({ "resources": resources })).await;
    let arns = arns_by_key(&seeded);

    // t0+1h40m: every lease is 20m from its end; each warning goes where its owner routes.
    clock.advance(TimeDelta::minutes(100));
    let m = smtp.wait_for(3).await;
    let mut warned: Vec<(String, String)> = m
        .iter()
        .map(|r| {
            assert_eq!(r.kind(), "expiry-warning");
            let task = ["t-handle", "t-member", "t-none"]
                .into_iter()
                .find(|t| r.text().contains(*t))
                .expect("names its task");
            (task.to_owned(), r.rcpt_tos.join(","))
        })
        .collect();
    warned.sort();
    assert_eq!(
        warned,
        [
            ("t-handle".to_owned(), "octo@example.com".to_owned()),
            ("t-member".to_owned(), "web@example.com".to_owned()),
            ("t-none".to_owned(), "web-oncall@example.com".to_owned()),
        ]
    );
    let to_oncall = m
        .iter()
        .find(|r| r.rcpt_tos == ["web-oncall@example.com"])
        .expect("warning to the team's on-call");
    assert!(
        to_oncall
            .text()
            .contains("on-call of team web-platform, which owns project web"),
        "{}",
        to_oncall.text()
    );

    // t0+2h20m: every lease expired; the pass marks the three volumes.
    clock.advance(TimeDelta::minutes(40));
    let run = d.pass().await;
    assert_eq!(run["run"]["summary"]["reap"]["marked"], 3, "{run}");
    let run_id = run["run"]["id"].as_str().expect("run id").to_owned();
    // Three warnings, three digests, the on-call summary and the team's.
    let m = smtp.wait_for(8).await;
    let digest_to = |to: &str| {
        m.iter()
            .find(|r| r.kind() == "owner-digest" && r.rcpt_tos == [to])
            .unwrap_or_else(|| panic!("a digest to {to}: {m:#?}"))
    };
    assert!(
        digest_to("octo@example.com")
            .text()
            .contains(&arns["t-handle"][0])
    );
    let member = digest_to("web@example.com");
    assert!(
        member.text().contains(&arns["t-member"][0]),
        "{}",
        member.text()
    );
    assert!(
        member.text().contains("for its member hubot"),
        "{}",
        member.text()
    );
    let stray = digest_to("web-oncall@example.com");
    assert!(
        stray.text().contains(&arns["t-none"][0]),
        "{}",
        stray.text()
    );
    assert!(stray.subject.ends_with("(no owner)"), "{}", stray.subject);
    let team = m
        .iter()
        .find(|r| r.kind() == "team-summary")
        .expect("the team's summary");
    assert_eq!(team.rcpt_tos, ["web-oncall@example.com"]);
    assert!(team.text().contains(&run_id), "{}", team.text());
    for key in ["t-handle", "t-member", "t-none"] {
        assert!(team.text().contains(&arns[key][0]), "{}", team.text());
    }

    // t0+3h20m: deleted; the team's summary lists the deletions.
    clock.advance(TimeDelta::hours(1));
    let run = d.pass().await;
    assert_eq!(run["run"]["summary"]["reap"]["deleted"], 3, "{run}");
    smtp.wait_for(13).await;
    drained(&d).await;
    let m = smtp.messages();
    let counts = by_kind_and_recipient(&m);
    assert_eq!(
        counts,
        BTreeMap::from([
            (("expiry-warning".into(), "octo@example.com".into()), 1),
            (("expiry-warning".into(), "web@example.com".into()), 1),
            (
                ("expiry-warning".into(), "web-oncall@example.com".into()),
                1
            ),
            (("oncall-summary".into(), "oncall@example.com".into()), 2),
            (("owner-digest".into(), "octo@example.com".into()), 1),
            (("owner-digest".into(), "web@example.com".into()), 1),
            (("owner-digest".into(), "web-oncall@example.com".into()), 1),
            (("reaped-notice".into(), "octo@example.com".into()), 1),
            (("reaped-notice".into(), "web@example.com".into()), 1),
            (("reaped-notice".into(), "web-oncall@example.com".into()), 1),
            (("team-summary".into(), "web-oncall@example.com".into()), 2),
        ]),
        "{m:#?}"
    );
    let last = m
        .iter()
        .rfind(|r| r.kind() == "team-summary")
        .expect("second team summary");
    assert!(last.text().contains("Deleted:"), "{}", last.text());
    d.stop().await;
}

/// With `unknown_owners = "refuse"`, an acquire whose owner nobody can be reached by is 422
/// `unknown-owner`; handles, teams, members and addresses are leased.
#[tokio::test(flavor = "multi_thread")]
async fn strict_rules_refuse_unknown_owners() {
    let work = Workdir::with_config(&config_text());
    std::fs::write(
        work.path().join("rules/policy/teams.toml"),
        format!("{TEAMS}\n[defaults]\nunknown_owners = \"refuse\"\n"),
    )
    .expect("teams");
    let d = TestDaemon::start(&work).await;
    for owner in ["OCTOCAT", "web-platform", "hubot", "a@example.com"] {
        d.acquire_with(WEB, json!({"project": "web", "task": "t", "owner": owner}))
            .await;
    }
    let (s, body) = d
        .post(
            "/api/v1/leases",
            WEB,
            json!({"project": "web", "task": "t", "owner": "stranger"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["code"], "unknown-owner", "{body}");
    d.stop().await;
}

/// A relay that refuses a mailbox for good (550): after three refusals the message is a dead
/// letter — not sent, not retried, counted in `ephemera_outbox_dead`, listed by `mail dead` —
/// while the other mail goes out; `mail retry` queues it again. An outage never kills mail.
#[tokio::test(flavor = "multi_thread")]
async fn refused_mail_becomes_a_dead_letter_until_retried() {
    let smtp = Smtp::refusing("@refused.example");
    let work = Workdir::with_config(&format!(
        "{}{}",
        config_text(),
        smtp.section("retry_backoff = \"1m\"")
    ));
    let clock = crate::support::manual_clock();
    let t0 = clock_now(&clock);
    let (m, store, metrics) = mailer_with_metrics(&work, clock.clone()).await;
    notice(
        &store,
        "deletion-planned",
        1,
        Some("bad@refused.example"),
        t0,
    )
    .await;
    notice(&store, "deletion-planned", 2, Some("good@example.com"), t0).await;

    let r = m.round(false).await.expect("round");
    assert_eq!((r.sent, r.failed, r.pending), (1, 1, 1), "{r:?}");
    for _ in 0..2 {
        clock.advance(TimeDelta::hours(2));
        m.round(false).await.expect("round");
    }
    let r = m.round(true).await.expect("round");
    assert_eq!(
        (r.sent, r.failed, r.pending),
        (0, 0, 0),
        "dead, not pending: {r:?}"
    );
    assert_eq!(store.dead_letter_count().await.expect("count"), 1);
    let dead = store.dead_letters().await.expect("dead");
    assert_eq!(dead[0].recipient.as_deref(), Some("bad@refused.example"));
    assert_eq!((dead[0].attempts, dead[0].refusals), (3, 3));
    assert_eq!(
        sample(&metrics.render(), "ephemera_outbox_dead"),
        Some(1.0),
        "the gauge"
    );
    let cfg = work.config_path();
    let cfg = cfg.to_str().expect("utf-8");
    let o = run(&["mail", "dead", "--config", cfg], &[]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let listed = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        listed.contains("bad@refused.example") && listed.contains("550"),
        "{listed}"
    );
    let o = run(&["mail", "retry", "--all", "--config", cfg], &[]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(store.dead_letter_count().await.expect("count"), 0);
    let r = m.round(false).await.expect("round");
    assert_eq!(
        (r.sent, r.failed, r.pending),
        (0, 1, 1),
        "tried again: {r:?}"
    );
    // Naming something that is not a dead letter fails.
    let o = run(&["mail", "retry", "424242", "--config", cfg], &[]).await;
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(smtp.messages().len(), 1, "only good@ got mail");
}

/// Runtime early warning in the owner's digest: alice's `data` lease runs past twice the
/// project's p95 (twenty leases of 10 minutes); when a pass marks a volume of her expired `web`
/// lease, her digest carries a line for the overrunning lease, and her next digest (another
/// lease's volume, an hour later) does not repeat it.
#[tokio::test(flavor = "multi_thread")]
async fn an_overrunning_lease_rides_on_its_owners_next_digest() {
    let moto = Moto::start().await;
    let smtp = Smtp::plain();
    let text = format!(
        "{}{}",
        config_text_with_aws(&format!(
            "regions = [\"us-east-1\"]\nendpoint_url = \"{}\"\nemulator = true\nmax_attempts = 1\n\n\
             [[aws.accounts]]\nid = \"123456789012\"\n",
            moto.endpoint()
        )),
        smtp.section("oncall = [\"oncall@example.com\"]\nretry_backoff = \"1s\"")
    );
    let work = Workdir::with_config(&text);
    std::fs::write(work.path().join("rules/policy/projects.toml"), POLICY).expect("policy");
    let clock = crate::support::manual_clock();
    let d = TestDaemon::start_with_clock(&work, clock.clone()).await;
    crate::support::ten_minute_history(&d, &clock).await;
    let long = d.acquire(DATA, "data", "etl 20").await;
    let doomed = d.acquire(WEB, "web", "build 7").await;
    let (s, later) = d
        .post(
            "/api/v1/leases",
            WEB,
            json!({"project": "web", "task": "build 8", "owner": "alice@example.com", "ttl": "3h"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{later}");
    let later = later["id"].as_str().expect("id").to_owned();
    seed(
        &moto.endpoint(),
        json!({"resources": [
            {"key": "vol", "type": "ec2:volume", "tags": {
                "ephemera:lease-id": doomed, "ephemera:project": "web",
                "ephemera:task": "build 7", "ephemera:owner": "alice@example.com"}},
            {"key": "vol2", "type": "ec2:volume", "tags": {
                "ephemera:lease-id": later, "ephemera:project": "web",
                "ephemera:task": "build 8", "ephemera:owner": "alice@example.com"}}
        ]}),
    )
    .await;
    // 2h10m: `doomed` (2h) expired, `long` has run 2h (past 20 minutes).
    clock.advance(TimeDelta::minutes(120));
    let run = d.pass().await;
    assert_eq!(run["run"]["summary"]["reap"]["marked"], 1, "{run}");
    assert_eq!(
        run["run"]["summary"]["overrunning"][0]["lease_id"],
        long.as_str(),
        "{run}"
    );
    let m = smtp.wait_for(2).await;
    let digest = m
        .iter()
        .find(|r| r.kind() == "owner-digest")
        .expect("digest");
    assert_eq!(digest.rcpt_tos, ["alice@example.com"]);
    let text = digest.text();
    assert!(text.contains("Running longer than usual"), "{text}");
    assert!(
        text.contains(&format!(
            "lease {long} (project data, task \"etl 20\") has run 2h"
        )),
        "{text}"
    );
    assert!(
        text.contains("usually take 10m (p95), and past 20m"),
        "{text}"
    );
    assert!(
        digest
            .html()
            .contains(&format!("ephemera lease release {long}")),
        "{}",
        digest.html()
    );

    // 3h20m: `later` (3h) expired too; its volume's digest does not tell `long` again.
    clock.advance(TimeDelta::minutes(70));
    let run = d.pass().await;
    assert_eq!(run["run"]["summary"]["reap"]["marked"], 1, "{run}");
    let m = smtp.wait_for(4).await;
    let digests: Vec<&Received> = m.iter().filter(|r| r.kind() == "owner-digest").collect();
    assert_eq!(digests.len(), 2, "{m:#?}");
    let second = digests
        .iter()
        .find(|r| r.text().contains(&later))
        .expect("the second digest");
    assert!(
        !second.text().contains("Running longer than usual"),
        "{}",
        second.text()
    );
    d.stop().await;
}
