//! The config's tests: the example, every section's errors with their positions.

use super::*;
use crate::auth::TokenHash;
use crate::model::HumanDuration;

fn no_env(_: &str) -> Option<String> {
    None
}

fn parse(text: &str) -> Result<Config, FileError> {
    Config::parse(Path::new("/etc/ephemera/e.toml"), text, &no_env)
}

#[test]
fn the_shipped_example_is_valid() {
    let c = parse(EXAMPLE).expect("example config must be valid");
    assert!(!c.enforcement.armed, "the example must be unarmed");
    assert_eq!(c.tags, IdentityTags::default());
    assert_eq!(c.rules.dir, Path::new("/etc/ephemera/rules"));
    assert!(c.principals.iter().any(|p| p.role == Role::Operator));
}

/// Replaces one line of the example and checks the error names the line and the field.
fn check_bad(find: &str, replace: &str, want_line_of: &str, want: &str) {
    assert!(EXAMPLE.contains(find), "example lacks {find:?}");
    let text = EXAMPLE.replacen(find, replace, 1);
    let err = parse(&text).expect_err(replace);
    let line = text
        .lines()
        .position(|l| l.contains(want_line_of))
        .expect("marker line present")
        + 1;
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("/etc/ephemera/e.toml:{line}:")),
        "{msg}"
    );
    assert!(msg.contains(want), "{msg} lacks {want}");
}

#[test]
fn bad_values_name_file_line_and_field() {
    check_bad(
        "armed = false",
        "armd = false",
        "armd = false",
        "unknown field `armd`",
    );
    check_bad(
        "scan = \"*/15 * * * *\"",
        "scan = \"every 15 minutes\"",
        "every 15 minutes",
        "field `schedules.scan`: invalid cron",
    );
    check_bad(
        "timeout = \"30s\"",
        "timeout = \"forever\"",
        "forever",
        "field `smtp.timeout`: invalid duration `forever`",
    );
    check_bad(
        "listen = \"127.0.0.1:9477\"",
        "listen = \"localhost-ish\"",
        "localhost-ish",
        "field `api.listen`",
    );
    check_bad(
        "role = \"viewer\"",
        "role = \"admin\"",
        "\"admin\"",
        "unknown variant `admin`",
    );
}

/// The example with its first principal's token taken from the environment.
fn example_with_token_env() -> String {
    let hash =
        "token_sha256 = \"61112491d046c3f6f8ab801f170d9b2d0c734a17ceff60dee92123fb507cfc3f\"";
    assert!(EXAMPLE.contains(hash), "example lacks the operator hash");
    EXAMPLE.replacen(hash, "token_env = \"EPHEMERA_TOKEN_ONCALL\"", 1)
}

#[test]
fn several_token_hashes_overlap_a_rotation() {
    use sha2::Digest as _;
    let old = "61112491d046c3f6f8ab801f170d9b2d0c734a17ceff60dee92123fb507cfc3f";
    let new = TokenHash::of("next");
    let new_hex = hex::encode(sha2::Sha256::digest(b"next"));
    let text = EXAMPLE.replacen(
        &format!("token_sha256 = \"{old}\""),
        &format!("tokens_sha256 = [\"{old}\", \"{new_hex}\"]"),
        1,
    );
    let c = parse(&text).expect("a list of hashes is valid");
    let oncall = c.principals.iter().find(|p| p.name == "oncall");
    let tokens = oncall.map(|p| p.tokens.clone()).unwrap_or_default();
    assert_eq!(tokens.len(), 2);
    assert_eq!(tokens[1], new);
    let principals = crate::auth::Principals::new(c.principals.clone());
    assert_eq!(
        principals.authenticate("next").map(|p| p.name.as_str()),
        Some("oncall")
    );

    let empty = EXAMPLE.replacen(
        &format!("token_sha256 = \"{old}\""),
        "tokens_sha256 = []",
        1,
    );
    let err = parse(&empty).expect_err("empty list").to_string();
    assert!(err.contains("needs exactly one of"), "{err}");
    let bad = EXAMPLE.replacen(
        &format!("token_sha256 = \"{old}\""),
        &format!("tokens_sha256 = [\"{old}\", \"zz\"]"),
        1,
    );
    let err = parse(&bad).expect_err("bad hex").to_string();
    assert!(err.contains("api.principals.tokens_sha256"), "{err}");
}

#[test]
fn token_from_env_is_hashed() {
    let text = example_with_token_env();
    let env = |name: &str| (name == "EPHEMERA_TOKEN_ONCALL").then(|| "s3cret".to_owned());
    let c = Config::parse(Path::new("e.toml"), &text, &env).expect("valid with env set");
    let oncall = c.principals.iter().find(|p| p.name == "oncall");
    assert_eq!(
        oncall.map(|p| p.tokens.clone()),
        Some(vec![TokenHash::of("s3cret")])
    );
    assert!(!format!("{c:?}").contains("s3cret"));

    let err = parse(&text).expect_err("variable unset").to_string();
    let line = text
        .lines()
        .position(|l| l.contains("EPHEMERA_TOKEN_ONCALL"))
        .expect("present")
        + 1;
    assert!(
        err.starts_with(&format!("/etc/ephemera/e.toml:{line}:13: field `api.principals.token_env`: environment variable `EPHEMERA_TOKEN_ONCALL` is not set")),
        "{err}"
    );
}

#[test]
fn principal_rules() {
    let check = |find: &str, replace: &str, want: &str| {
        let text = EXAMPLE.replacen(find, replace, 1);
        assert_ne!(text, EXAMPLE, "{find} not in example");
        let err = parse(&text).expect_err(want).to_string();
        assert!(err.contains(want), "{err} lacks {want}");
    };
    check(
        "name = \"ci-data\"",
        "name = \"ci-web\"",
        "principal `ci-web` is defined twice",
    );
    check(
        "projects = [\"data\", \"ml\"]\n",
        "",
        "lessee `ci-data` must list the projects",
    );
    check(
        "role = \"viewer\"",
        "role = \"viewer\"\nprojects = [\"web\"]",
        "projects only apply to lessees",
    );
    check(
        "7aa7f3fc07d86ae8bfb566d5c2674e310bce9246f756b95be832a4c6bd6bddbc",
        "7b8e529dd9274f660fcaee9a7a46d5d0eebb4d7f0834c39d2405584aae83decb",
        "shares a token",
    );
    check(
        "token_sha256 = \"db2c",
        "token_sha256 = \"zz2c",
        "expected 64 hex digits",
    );
    check(
        "id = \"210987654321\"",
        "id = \"2109876\"",
        "not a 12-digit AWS account id",
    );
    check(
        "regions = [\"us-east-1\", \"eu-west-1\"]",
        "regions = [\"us-east-1\", \"Europe\"]",
        "`Europe` is not an AWS region",
    );
    check(
        "from = \"ephemera@example.com\"",
        "from = \"ephemera\"",
        "field `smtp.from`",
    );
    check(
        "lease = \"ephemera:lease-id\"",
        "lease = \"aws:lease\"",
        "reserved `aws:` prefix",
    );
}

#[test]
fn bad_enforcement_names_the_line_of_the_value() {
    check_bad(
        "\"sqs:queue\"]",
        "\"sqs:queues\"]",
        "sqs:queues",
        "field `enforcement.deletable_types`: no deleter for `sqs:queues`",
    );
    check_bad(
        "max_project_share_percent = 50",
        "max_project_share_percent = 0",
        "max_project_share_percent = 0",
        "must be 1 to 100",
    );
    check_bad(
        "\"fri\"]",
        "\"friday\"]",
        "friday",
        "field `enforcement.window.days`: `friday` is not one of mon",
    );
    check_bad(
        "end_hour = 17",
        "end_hour = 9",
        "end_hour = 9",
        "needs 0 <= start_hour < end_hour <= 24",
    );
}

#[test]
fn bad_cost_settings_name_the_line() {
    check_bad(
        "metric = \"UnblendedCost\"",
        "metric = \"Unblended\"",
        "metric = \"Unblended\"",
        "field `cost.metric`: must be one of UnblendedCost",
    );
    check_bad(
        "# account = \"123456789012\"",
        "account = \"999999999999\"",
        "account = \"999999999999\"",
        "field `cost.account`: account 999999999999 is not one of [[aws.accounts]]",
    );
    check_bad(
        "rolling_window = \"30d\"",
        "rolling_window = \"36h\"",
        "rolling_window = \"36h\"",
        "whole days",
    );
    check_bad(
        "top_tasks = 20",
        "top_tasks = 0",
        "top_tasks = 0",
        "field `cost.top_tasks`: 1 to 1000",
    );
    let c = parse(EXAMPLE).expect("example");
    assert_eq!(c.cost.rolling_days(), 30);
    assert_eq!(c.cost.metric, CostMetric::UnblendedCost);
}

#[test]
fn enforcement_defaults_are_safe() {
    let text = EXAMPLE
        .split("[enforcement]")
        .next()
        .expect("example has text before [enforcement]");
    let c = parse(text).expect("valid without [enforcement]");
    assert!(!c.enforcement.armed);
    assert!(
        c.enforcement.deletable_types.is_empty(),
        "nothing deletable unless listed"
    );
    assert!(c.enforcement.window.is_none());
    let c = parse(EXAMPLE).expect("example");
    let w = c.enforcement.window.expect("example has a window");
    let at = |s: &str| s.parse::<chrono::DateTime<chrono::Utc>>().expect("time");
    assert!(w.contains(at("2026-03-02T09:00:00Z")), "Monday 09:00");
    assert!(w.contains(at("2026-03-02T16:59:59Z")));
    assert!(!w.contains(at("2026-03-02T17:00:00Z")));
    assert!(!w.contains(at("2026-03-01T12:00:00Z")), "Sunday");
}

#[test]
fn bad_smtp_names_the_line_of_the_value() {
    // The key is found among the keys: `port` inside the host's name is not it.
    check_bad(
        "host = \"127.0.0.1\"\nport = 25",
        "host = \"report.example.com\"\nport = 0",
        "port = 0",
        "field `smtp.port`: must be 1 to 65535",
    );
    check_bad(
        "warn_before = \"30m\"",
        "warn_before = \"soon\"",
        "soon",
        "field `smtp.warn_before`: invalid duration `soon`",
    );
    check_bad(
        "warn_before = \"30m\"",
        "warn_before = \"30s\"",
        "warn_before = \"30s\"",
        "field `smtp.warn_before`: must be at least 1m",
    );
    check_bad(
        "oncall = [\"oncall@example.com\"]",
        "oncall = [\"oncall@example.com\", \"pager\"]",
        "\"pager\"",
        "field `smtp.oncall`: `pager` is not an email address",
    );
    check_bad(
        "tls = \"none\"",
        "tls = \"ssl\"",
        "\"ssl\"",
        "unknown variant `ssl`",
    );
    check_bad(
        "# username = \"ephemera\"",
        "username = \"ephemera\"\npassword_env = \"SMTP_PW_UNSET\"",
        "password_env = \"SMTP_PW_UNSET\"",
        "field `smtp.password_env`: environment variable `SMTP_PW_UNSET` is not set",
    );
    check_bad(
        "# ca_file = \"/etc/ephemera/relay-ca.pem\"",
        "ca_file = \"/nonexistent/ca.pem\"",
        "ca_file = \"/nonexistent",
        "field `smtp.ca_file`: cannot read /nonexistent/ca.pem",
    );
    check_bad(
        "# [smtp.quiet_hours]\n# start_hour = 22\n# end_hour = 7",
        "[smtp.quiet_hours]\nstart_hour = 22\nend_hour = 22",
        "start_hour = 22",
        "field `smtp.quiet_hours`: needs start_hour and end_hour",
    );
}

#[test]
fn audit_key_source_defaults_next_to_the_store_and_is_checked() {
    use crate::audit::AuditKeySource;
    let c = parse(EXAMPLE).expect("example");
    assert_eq!(
        c.audit.key,
        AuditKeySource::File(PathBuf::from("/etc/ephemera/state/audit.key"))
    );
    let without = EXAMPLE.replacen("[audit]\nkey_file = \"state/audit.key\"\n", "", 1);
    assert_ne!(without, EXAMPLE);
    let c = parse(&without).expect("no [audit]");
    assert_eq!(
        c.audit.key,
        AuditKeySource::File(PathBuf::from("/etc/ephemera/state/audit.key"))
    );
    check_bad(
        "key_file = \"state/audit.key\"",
        "key_env = \"EPHEMERA_AUDIT_KEY_UNSET\"",
        "key_env = \"EPHEMERA_AUDIT_KEY_UNSET\"",
        "field `audit.key_env`: environment variable `EPHEMERA_AUDIT_KEY_UNSET` is not set",
    );
    check_bad(
        "key_file = \"state/audit.key\"",
        "key_file = \"k\"\nkey_env = \"K\"",
        "key_env = \"K\"",
        "field `audit.key_env`: set key_env or key_file, not both",
    );
    let text = EXAMPLE.replacen(
        "key_file = \"state/audit.key\"",
        "key_env = \"EPHEMERA_AUDIT_KEY\"",
        1,
    );
    let key = "5a".repeat(32);
    let env = |name: &str| (name == "EPHEMERA_AUDIT_KEY").then(|| key.clone());
    let c = Config::parse(Path::new("e.toml"), &text, &env).expect("key from env");
    assert_eq!(
        c.audit.key,
        AuditKeySource::Env("EPHEMERA_AUDIT_KEY".into())
    );
    assert!(!format!("{c:?}").contains(&key), "the key is not kept");
    let short = |_: &str| Some("abcd".to_owned());
    let err = Config::parse(Path::new("e.toml"), &text, &short).expect_err("short key");
    assert!(err.to_string().contains("at least 32 are needed"), "{err}");
}

#[test]
fn smtp_password_needs_tls_and_is_not_kept() {
    let text = EXAMPLE.replacen(
        "# username = \"ephemera\"",
        "username = \"ephemera\"\npassword_env = \"SMTP_PW\"",
        1,
    );
    let env = |name: &str| (name == "SMTP_PW").then(|| "hunter2".to_owned());
    let err = Config::parse(Path::new("e.toml"), &text, &env)
        .expect_err("password over plain SMTP")
        .to_string();
    assert!(
        err.contains("field `smtp.tls`: a password is only sent over TLS"),
        "{err}"
    );
    let text = text.replacen("tls = \"none\"", "tls = \"starttls\"", 1);
    let c = Config::parse(Path::new("e.toml"), &text, &env).expect("valid over starttls");
    let smtp = c.smtp.expect("smtp");
    assert_eq!(smtp.password_env.as_deref(), Some("SMTP_PW"));
    assert!(!format!("{smtp:?}").contains("hunter2"));
    assert_eq!(smtp.warn_before, HumanDuration::from_secs(30 * 60));
}

#[test]
fn quiet_hours_may_wrap_midnight() {
    let at = |s: &str| s.parse::<chrono::DateTime<chrono::Utc>>().expect("time");
    let night = QuietHours {
        start_hour: 22,
        end_hour: 7,
    };
    for (t, quiet) in [
        ("2026-03-02T21:59:59Z", false),
        ("2026-03-02T22:00:00Z", true),
        ("2026-03-03T03:00:00Z", true),
        ("2026-03-03T06:59:59Z", true),
        ("2026-03-03T07:00:00Z", false),
    ] {
        assert_eq!(night.contains(at(t)), quiet, "{t}");
    }
    let lunch = QuietHours {
        start_hour: 12,
        end_hour: 13,
    };
    assert!(lunch.contains(at("2026-03-02T12:30:00Z")));
    assert!(!lunch.contains(at("2026-03-02T13:00:00Z")));
}

#[test]
fn discovery_defaults_and_bad_values_name_the_line() {
    let c = parse(EXAMPLE).expect("example");
    use strum::VariantArray;
    assert_eq!(
        c.discovery.types,
        crate::model::ResourceType::VARIANTS.to_vec()
    );
    assert_eq!(c.discovery.interval, HumanDuration::from_secs(6 * 3600));
    assert!(c.aws.accounts[0].dedicated, "the example's ci account");
    assert!(
        !c.aws.accounts[1].dedicated,
        "accounts are shared by default"
    );
    check_bad(
        "calls_per_second = 5 ",
        "calls_per_second = 500 ",
        "calls_per_second = 500",
        "field `discovery.calls_per_second`: must be 1 to 20",
    );
    check_bad(
        "# types = [\"ec2:instance\", \"ec2:volume\", \"s3:bucket\"]",
        "types = [\"ec2:volume\", \"ec2:volume\"]",
        "types = [\"ec2:volume\", \"ec2:volume\"]",
        "field `discovery.types`: `ec2:volume` is listed twice",
    );
    check_bad(
        "# types = [\"ec2:instance\", \"ec2:volume\", \"s3:bucket\"]",
        "types = [\"ec2:vpc\"]",
        "types = [\"ec2:vpc\"]",
        "no deleter for `ec2:vpc`",
    );
    check_bad(
        "dedicated = true",
        "dedicated = \"yes\"",
        "dedicated = \"yes\"",
        "dedicated",
    );
    let off = parse(&EXAMPLE.replacen(
        "# types = [\"ec2:instance\", \"ec2:volume\", \"s3:bucket\"]",
        "types = []",
        1,
    ))
    .expect("sweeps off");
    assert!(!off.discovery.enabled());
}
