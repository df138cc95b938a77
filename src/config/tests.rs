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
        "\ntimeout = \"30s\"",
        "\ntimeout = \"forever\"",
        "forever",
        "field `smtp.timeout`: invalid duration `forever`",
    );
    check_bad(
        "header_read_timeout = \"10s\"",
        "header_read_timeout = \"1h\"",
        "header_read_timeout = \"1h\"",
        "field `api.header_read_timeout`: must be 1s to 300s",
    );
    check_bad(
        "max_connections = 4096",
        "max_connections = 2",
        "max_connections = 2",
        "field `api.max_connections`: must be 8 to 1000000",
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

/// `[retention]`: bad horizons name their line and field; left out, every default holds.
#[test]
fn retention_horizons_are_checked_and_default() {
    check_bad(
        "runs = \"30d\"",
        "runs = \"0\"",
        "runs = \"0\"",
        "field `retention.runs`: `0` is ambiguous",
    );
    check_bad(
        "sent_mail = \"30d\"",
        "sent_mail = \"6h\"",
        "sent_mail = \"6h\"",
        "field `retention.sent_mail`: `6h` is shorter than a day",
    );
    check_bad(
        "purge_every = \"1h\"",
        "purge_every = \"2d\"",
        "purge_every = \"2d\"",
        "field `retention.purge_every`: must be 1m to 1d",
    );
    check_bad(
        "dead_mail = \"never\"",
        "dead_mails = \"never\"",
        "dead_mails",
        "unknown field `dead_mails`",
    );
    let example = parse(EXAMPLE).expect("example");
    assert_eq!(
        example.retention,
        Retention::default(),
        "the example shows the defaults"
    );
    let start = EXAMPLE
        .find("[retention]")
        .expect("example has [retention]");
    let end = start + EXAMPLE[start..].find("purge_every").expect("purge_every");
    let end = end + EXAMPLE[end..].find('\n').expect("line end");
    let without = format!("{}{}", &EXAMPLE[..start], &EXAMPLE[end..]);
    let c = parse(&without).expect("valid without [retention]");
    assert_eq!(c.retention, Retention::default());
    let never = EXAMPLE.replacen("runs = \"30d\"", "runs = \"never\"", 1);
    assert_eq!(parse(&never).expect("never").retention.runs, Horizon::Never);
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
        "\"fri\"]\nstart_hour",
        "\"friday\"]\nstart_hour",
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

/// `[store] url` selects PostgreSQL: the password from the environment or a file, never in
/// the URL, and nowhere in what the config prints; every refusal names its line and field.
#[test]
fn a_postgres_store_takes_its_password_from_outside_the_config() {
    let sqlite = "path = \"state/ephemera.db\"\n";
    let pg = "url = \"postgres://ephemera@db.internal:5433/ephemera\"\n";
    let keyed =
        |text: String| text.replacen("key_file = \"state/audit.key\"", "key_env = \"AK\"", 1);
    let env = |name: &str| match name {
        "PGPW" => Some("s3cret-pw".to_owned()),
        "AK" => Some("ab".repeat(32)),
        _ => None,
    };
    let with = |store: &str| keyed(EXAMPLE.replacen(sqlite, store, 1));
    let c = Config::parse(
        Path::new("/etc/ephemera/e.toml"),
        &with(&format!("{pg}password_env = \"PGPW\"\n")),
        &env,
    )
    .expect("a PostgreSQL store");
    let StoreLocation::Postgres(target) = &c.store.location else {
        panic!("{:?}", c.store.location)
    };
    assert_eq!(
        target.describe(),
        "postgres://ephemera@db.internal:5433/ephemera"
    );
    assert!(
        !format!("{c:?}").contains("s3cret-pw"),
        "the password is never shown"
    );
    assert_eq!(c.store.sqlite_path(), None);

    let dir = tempfile::tempdir().expect("temp dir");
    let pw_file = dir.path().join("pw");
    std::fs::write(&pw_file, "from-a-file\n").expect("writes");
    let from_file = format!("{pg}password_file = \"{}\"\n", pw_file.display());
    Config::parse(Path::new("/etc/ephemera/e.toml"), &with(&from_file), &env)
        .expect("a password file");

    for (store, line_of, want) in [
        (
            format!("{sqlite}{pg}"),
            "url =",
            "field `store.url`: set path (SQLite) or url (PostgreSQL), not both",
        ),
        (
            "url = \"postgres://ephemera:hunter2@db/ephemera\"\n".to_owned(),
            "url =",
            "field `store.url`: the URL carries a password",
        ),
        (
            "url = \"postgres://ephemera@db\"\n".to_owned(),
            "url =",
            "field `store.url`: the URL names no database",
        ),
        (
            "url = \"mysql:/x\"\n".to_owned(),
            "url =",
            "field `store.url`: not a PostgreSQL connection URL",
        ),
        (
            format!("{pg}password_env = \"UNSET\"\n"),
            "password_env",
            "field `store.password_env`: environment variable `UNSET` is not set",
        ),
        (
            format!("{pg}password_file = \"/nonexistent/pw\"\n"),
            "password_file",
            "field `store.password_file`: cannot read /nonexistent/pw",
        ),
        (
            format!("{sqlite}password_env = \"PGPW\"\n"),
            "password_env",
            "field `store.password_env`: password_env is for a PostgreSQL url",
        ),
    ] {
        let text = with(&store);
        let err = Config::parse(Path::new("/etc/ephemera/e.toml"), &text, &env).expect_err(&store);
        let line = text
            .lines()
            .position(|l| l.starts_with(line_of))
            .expect("marker line")
            + 1;
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!("/etc/ephemera/e.toml:{line}:")),
            "{msg}"
        );
        assert!(msg.contains(want), "{msg} lacks {want}");
        assert!(!msg.contains("hunter2"), "{msg}");
    }

    // Without an explicit audit key each replica would make its own.
    let text = EXAMPLE.replacen(sqlite, pg, 1).replacen(
        "[audit]\nkey_file = \"state/audit.key\"\n",
        "",
        1,
    );
    let err = Config::parse(Path::new("/etc/ephemera/e.toml"), &text, &env)
        .expect_err("a PostgreSQL store with the default key file");
    assert!(
        err.to_string()
            .contains("a PostgreSQL store needs [audit] key_env or key_file"),
        "{err}"
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
    let short = |name: &str| (name == "EPHEMERA_AUDIT_KEY").then(|| "abcd".to_owned());
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
    assert!(c.aws.accounts[0].dedicated(), "the example's ci account");
    assert!(
        !c.aws.accounts[1].dedicated(),
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
        "types = [\"ec2:transit-gateway\"]",
        "types = [\"ec2:transit-gateway\"]",
        "no deleter for `ec2:transit-gateway`",
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

/// Each account, and each OU of an organization, may set regions, arming, a cap and a
/// window with a time zone; bad values are refused with the field named.
#[test]
fn account_and_unit_settings() {
    let c = parse(EXAMPLE).expect("example");
    let (ci, preview) = (&c.aws.accounts[0], &c.aws.accounts[1]);
    assert!(
        ci.dedicated() && ci.reaps(),
        "dedicated accounts reap by default"
    );
    assert_eq!(ci.regions(&c.aws.regions), c.aws.regions.as_slice());
    assert!(
        !preview.dedicated() && preview.reaps(),
        "armed by its setting"
    );
    assert_eq!(preview.regions(&c.aws.regions), c.aws.regions.as_slice());
    let own = parse(&EXAMPLE.replacen(
        "# regions = [\"eu-west-1\"]",
        "regions = [\"eu-west-1\"]",
        1,
    ))
    .expect("own regions");
    assert_eq!(
        own.aws.accounts[1].regions(&own.aws.regions),
        ["eu-west-1".to_owned()]
    );
    assert_eq!(preview.settings.max_deletions_per_pass, Some(20));
    let w = preview.settings.window.as_ref().expect("its own window");
    let at = |s: &str| s.parse::<chrono::DateTime<chrono::Utc>>().expect("time");
    // 08:00 in Berlin is 07:00 UTC in winter and 06:00 UTC in summer.
    assert!(w.contains(at("2026-03-02T07:00:00Z")));
    assert!(!w.contains(at("2026-03-02T06:59:59Z")));
    assert!(w.contains(at("2026-07-06T06:00:00Z")));
    let shared = parse(&EXAMPLE.replacen("armed = true                   # shared", "# shared", 1))
        .expect("valid");
    assert!(
        !shared.aws.accounts[1].reaps(),
        "shared accounts are report-only by default"
    );

    check_bad(
        "time_zone = \"Europe/Berlin\"",
        "time_zone = \"Mars/Olympus\"",
        "Mars/Olympus",
        "`Mars/Olympus` is not an IANA time zone",
    );
    check_bad(
        "# time_zone = \"America/New_York\"",
        "time_zone = \"EST5EDT-ish\"",
        "EST5EDT-ish",
        "field `enforcement.window.time_zone`",
    );
    check_bad(
        "armed = true                   # shared",
        "armed = \"yes\"",
        "armed = \"yes\"",
        "armed",
    );
    let check = |find: &str, replace: &str, want: &str| {
        let text = EXAMPLE.replacen(find, replace, 1);
        assert_ne!(text, EXAMPLE, "{find} not in example");
        let err = parse(&text).expect_err(want).to_string();
        assert!(err.contains(want), "{err} lacks {want}");
    };
    check(
        "# regions = [\"eu-west-1\"]",
        "regions = [\"mars-1\"]",
        "field `aws.accounts.regions`: account 210987654321: `mars-1` is not an AWS region",
    );
    check(
        "# regions = [\"eu-west-1\"]",
        "regions = []",
        "list at least one region",
    );
    check(
        "start_hour = 8, end_hour = 18",
        "start_hour = 18, end_hour = 8",
        "field `aws.accounts.window`: account 210987654321: needs 0 <= start_hour < end_hour",
    );
    let org = "# [aws.organization]\n";
    let with_units = |units: &str| {
        EXAMPLE.replacen(
            org,
            &format!("[aws.organization]\n{units}\n# [aws.organization]\n"),
            1,
        )
    };
    let c = parse(&with_units(
        "[[aws.organization.units]]\nid = \"ou-ab12-sandbox1\"\narmed = false\nregions = [\"us-east-1\"]\n",
    ))
    .expect("units");
    let units = &c.aws.organization.expect("organization").units;
    assert_eq!(units[0].id, "ou-ab12-sandbox1");
    assert_eq!(units[0].settings.armed, Some(false));
    for (units, want) in [
        (
            "[[aws.organization.units]]\nid = \"sandbox\"\n",
            "field `aws.organization.units.id`: `sandbox` is not an OU id",
        ),
        (
            "[[aws.organization.units]]\nid = \"ou-a-1\"\n[[aws.organization.units]]\nid = \"ou-a-1\"\n",
            "OU `ou-a-1` has settings twice",
        ),
        (
            "[[aws.organization.units]]\nid = \"ou-a-1\"\nregions = [\"x\"]\n",
            "field `aws.organization.units.regions`: ou-a-1: `x` is not an AWS region",
        ),
        (
            "[[aws.organization.units]]\nid = \"ou-a-1\"\ndedicatd = true\n",
            "unknown field `dedicatd`",
        ),
    ] {
        let err = parse(&with_units(units)).expect_err(want).to_string();
        assert!(err.contains(want), "{err} lacks {want}");
    }
}

/// Cost Explorer may be asked through a role of its own, in an account that is not audited.
#[test]
fn a_cost_role_apart_from_the_audited_accounts() {
    let role = "# role_arn = \"arn:aws:iam::999999999999:role/ephemera-cost\"";
    let c = parse(&EXAMPLE.replacen(role, &role[2..], 1)).expect("valid");
    assert_eq!(c.cost_account(), Some("999999999999"));
    assert!(!c.aws.accounts.iter().any(|a| a.id == "999999999999"));
    check_bad(
        role,
        "role_arn = \"arn:aws:iam::999999999999:user/cost\"",
        "user/cost",
        "field `cost.role_arn`: `arn:aws:iam::999999999999:user/cost` is not an IAM role ARN",
    );
    let both = EXAMPLE.replacen(role, &role[2..], 1).replacen(
        "# account = \"123456789012\"",
        "account = \"123456789012\"",
        1,
    );
    let err = parse(&both).expect_err("both").to_string();
    assert!(err.contains("not both"), "{err}");
}

/// `EPHEMERA_STATE_DIR` moves what the daemon writes (relative store and audit key paths) out
/// of the config's directory; the rules stay beside the config, absolute paths stay put, and a
/// relative state directory is refused by name.
#[test]
fn the_state_dir_holds_relative_store_and_key_paths() {
    let path = Path::new("/etc/ephemera/ephemera.toml");
    let env = |name: &str| (name == STATE_DIR_ENV).then(|| "/var/lib/ephemera".to_owned());
    let c = Config::parse(path, EXAMPLE, &env).expect("example with a state dir");
    assert_eq!(
        c.store.sqlite_path().expect("sqlite"),
        PathBuf::from("/var/lib/ephemera/state/ephemera.db")
    );
    assert_eq!(
        c.audit.key,
        crate::audit::AuditKeySource::File(PathBuf::from("/var/lib/ephemera/state/audit.key"))
    );
    assert_eq!(c.rules.dir, PathBuf::from("/etc/ephemera/rules"));
    let absolute = EXAMPLE.replacen("path = \"state/ephemera.db\"", "path = \"/srv/e.db\"", 1);
    let c = Config::parse(path, &absolute, &env).expect("absolute store");
    assert_eq!(
        c.store.sqlite_path().expect("sqlite"),
        PathBuf::from("/srv/e.db")
    );
    let relative = |name: &str| (name == STATE_DIR_ENV).then(|| "state".to_owned());
    let err = Config::parse(path, EXAMPLE, &relative).expect_err("relative state dir");
    assert!(
        err.to_string().contains("EPHEMERA_STATE_DIR") && err.to_string().contains("absolute"),
        "{err}"
    );
    let c = Config::parse(path, EXAMPLE, &|_| None).expect("example");
    assert_eq!(
        c.store.sqlite_path().expect("sqlite"),
        PathBuf::from("/etc/ephemera/state/ephemera.db")
    );
}

/// The example with its commented OIDC issuers and principals switched on.
fn example_with_oidc() -> String {
    let mut out = Vec::new();
    let mut in_block = false;
    for line in EXAMPLE.lines() {
        if line == "# [[api.oidc_issuers]]" {
            in_block = true;
        }
        if line.starts_with("[store]") {
            in_block = false;
        }
        out.push(if in_block {
            line.strip_prefix("# ")
                .or_else(|| line.strip_prefix('#'))
                .unwrap_or(line)
        } else {
            line
        });
    }
    out.join("\n")
}

#[test]
fn the_examples_oidc_principals_are_valid() {
    let text = example_with_oidc();
    assert_ne!(text, EXAMPLE, "the example has an OIDC block");
    let c = parse(&text).expect("the example's OIDC block is valid");
    let names: Vec<&str> = c.oidc_issuers.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["github", "gitlab"]);
    let github = &c.oidc_issuers[0];
    assert_eq!(
        github.algorithms,
        [JwsAlgorithm::Rs256, JwsAlgorithm::Es256]
    );
    assert_eq!(
        (github.leeway_seconds, github.refetch_interval_seconds),
        (60, 30)
    );
    assert_eq!(
        github.discovery_url(),
        "https://token.actions.githubusercontent.com/.well-known/openid-configuration"
    );
    let web = c
        .principals
        .iter()
        .find(|p| p.name == "gh-web")
        .expect("gh-web");
    assert!(web.tokens.is_empty());
    assert_eq!(web.owner_claim.as_deref(), Some("actor"));
    let m = web.oidc.as_ref().expect("oidc");
    assert_eq!(m.issuer, "github");
    assert_eq!(
        m.claims.keys().map(String::as_str).collect::<Vec<_>>(),
        ["ref", "repository"]
    );
}

#[test]
fn oidc_errors_name_the_line_and_field() {
    let text = example_with_oidc();
    // (find, replace, the error's line holds, field, message part)
    let table = [
        (
            "oidc = { issuer = \"github\"",
            "oidc = { issuer = \"gitub\"",
            "gitub",
            "api.principals.oidc.issuer",
            "issuer `gitub`, which no [[api.oidc_issuers]] entry defines (known: github, gitlab)",
        ),
        (
            "audience = \"ephemera\"\n\n[[api.oidc_issuers]]",
            "audience = \"ephemera\"\nalgorithms = [\"RS256\", \"HS256\"]\n\n[[api.oidc_issuers]]",
            "HS256",
            "api.oidc_issuers.algorithms",
            "`HS256` is not allowed",
        ),
        (
            "audience = \"ephemera\"\n\n[[api.oidc_issuers]]",
            "audience = \"ephemera\"\nalgorithms = [\"none\"]\n\n[[api.oidc_issuers]]",
            "[\"none\"]",
            "api.oidc_issuers.algorithms",
            "`none` is not allowed",
        ),
        (
            "issuer = \"https://gitlab.com\"",
            "issuer = \"http://gitlab.com\"",
            "http://gitlab.com",
            "api.oidc_issuers.issuer",
            "must be an https:// address",
        ),
        (
            "claims = { repository = \"acme/web\", ref = \"refs/heads/*\" }",
            "claims = {}",
            "claims = {}",
            "api.principals.oidc.claims",
            "must match at least one claim",
        ),
        (
            "claims = { project_path = \"acme/data\", ref_protected = \"true\" }",
            "claims = { project_path = \"\" }",
            "project_path",
            "api.principals.oidc.claims",
            "must not be empty",
        ),
        (
            "name = \"dashboards\"\nrole = \"viewer\"\n",
            "name = \"dashboards\"\nrole = \"viewer\"\nowner_claim = \"actor\"\n",
            "owner_claim",
            "api.principals.owner_claim",
            "owner_claim needs `oidc`",
        ),
        (
            "issuer = \"gitlab\", claims = { project_path = \"acme/data\", ref_protected = \"true\" }",
            "issuer = \"github\", claims = { repository = \"acme/web\", ref = \"refs/heads/*\" }",
            "name = \"gl-data\"",
            "api.principals.oidc.claims",
            "the same issuer and claims as another principal",
        ),
    ];
    for (find, replace, at, field, message) in table {
        let bad = text.replacen(find, replace, 1);
        assert_ne!(bad, text, "{find} not in the example");
        let err = parse(&bad).expect_err(find).to_string();
        let line = bad
            .lines()
            .position(|l| l.contains(at))
            .expect("the marker is in the text")
            + 1;
        assert!(
            err.starts_with(&format!("/etc/ephemera/e.toml:{line}:"))
                && err.contains(&format!("field `{field}`"))
                && err.contains(message),
            "{find}: {err}"
        );
    }
    // A principal with neither a token nor `oidc`.
    let bare = text.replacen(
        "oidc = { issuer = \"github\", claims = { repository = \"acme/web\", ref = \"refs/heads/*\" } }\nowner_claim = \"actor\"\n",
        "",
        1,
    );
    assert_ne!(bare, text);
    let err = parse(&bare).expect_err("no credential").to_string();
    assert!(err.contains("or `oidc`, or both"), "{err}");
}

/// The example's commented `[api.tls]` section, and the test certificates' directory.
const TLS_COMMENTED: &str =
    "# [api.tls]\n# cert = \"/etc/ephemera/tls/api.pem\"\n# key = \"/etc/ephemera/tls/api.key\"";
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

#[test]
fn api_tls_paths_resolve_against_the_config_and_the_pair_is_checked() {
    assert!(EXAMPLE.contains(TLS_COMMENTED), "example lacks [api.tls]");
    assert_eq!(parse(EXAMPLE).expect("example").api.tls, None, "plain HTTP");
    let text = EXAMPLE.replacen(
        TLS_COMMENTED,
        "[api.tls]\ncert = \"tls-test-cert.pem\"\nkey = \"tls-test-key.pem\"",
        1,
    );
    let path = Path::new(FIXTURES).join("e.toml");
    let c = Config::parse(&path, &text, &no_env).expect("a matching pair");
    assert_eq!(
        c.api.tls,
        Some(ApiTls {
            cert: Path::new(FIXTURES).join("tls-test-cert.pem"),
            key: Path::new(FIXTURES).join("tls-test-key.pem"),
        })
    );
}

#[test]
fn bad_api_tls_names_the_field_and_the_file() {
    let tls = |cert: &str, key: &str| format!("[api.tls]\ncert = \"{cert}\"\nkey = \"{key}\"");
    let (cert, key, other) = (
        format!("{FIXTURES}/tls-test-cert.pem"),
        format!("{FIXTURES}/tls-test-key.pem"),
        format!("{FIXTURES}/tls-test-other-key.pem"),
    );
    check_bad(
        TLS_COMMENTED,
        &format!("[api.tls]\ncert = \"{cert}\""),
        "[api.tls]",
        "missing field `key`",
    );
    check_bad(
        TLS_COMMENTED,
        &format!("{}\nca = \"x.pem\"", tls(&cert, &key)),
        "ca = \"x.pem\"",
        "unknown field `ca`",
    );
    check_bad(
        TLS_COMMENTED,
        &tls("/nonexistent/api.pem", &key),
        "cert = \"/nonexistent",
        "field `api.tls.cert`: cannot read /nonexistent/api.pem: No such file",
    );
    check_bad(
        TLS_COMMENTED,
        &tls(&cert, "/nonexistent/api.key"),
        "key = \"/nonexistent",
        "field `api.tls.key`: cannot read /nonexistent/api.key: No such file",
    );
    check_bad(
        TLS_COMMENTED,
        &tls(&key, &key),
        "cert = \"",
        &format!("field `api.tls.cert`: {key} holds no PEM certificate"),
    );
    check_bad(
        TLS_COMMENTED,
        &tls(&cert, &cert),
        "key = \"",
        &format!("field `api.tls.key`: {cert} holds no PEM private key"),
    );
    check_bad(
        TLS_COMMENTED,
        &tls(&cert, &other),
        "key = \"",
        &format!(
            "field `api.tls.key`: the private key in {other} does not belong to the certificate in {cert}"
        ),
    );
}

/// `[[webhooks]]`: defaults, and each bad value named by file, line and field.
#[test]
fn webhooks_are_checked_and_default() {
    let hook = "\n[[webhooks]]\nname = \"ops\"\nurl = \"https://hooks.example.com/e\"\n\
                secret_env = \"HOOK_SECRET\"\n";
    let env = |n: &str| (n == "HOOK_SECRET").then(|| "0123456789abcdef".to_owned());
    let text = format!("{EXAMPLE}{hook}");
    let c = Config::parse(Path::new("/etc/ephemera/e.toml"), &text, &env).expect("valid");
    assert_eq!(c.webhooks.len(), 1);
    let w = &c.webhooks[0];
    assert_eq!(w.events, ["*"]);
    assert_eq!(w.secret, SecretSource::Env("HOOK_SECRET".into()));
    assert_eq!(
        (
            w.timeout.as_secs(),
            w.retry_backoff.as_secs(),
            w.give_up_after.as_secs()
        ),
        (10, 30, 86_400)
    );
    for (find, replace, want) in [
        (
            "name = \"ops\"",
            "name = \"Ops Team\"",
            "field `webhooks.name`: must be 1 to 64",
        ),
        (
            "url = \"https://hooks.example.com/e\"",
            "url = \"http://hooks.example.com/e\"",
            "field `webhooks.url`: `http://hooks.example.com/e` must be an https:// address",
        ),
        (
            "secret_env = \"HOOK_SECRET\"",
            "secret_env = \"OTHER\"",
            "field `webhooks.secret_env`: environment variable `OTHER` must hold a secret",
        ),
        (
            "secret_env = \"HOOK_SECRET\"",
            "secret_env = \"HOOK_SECRET\"\nevents = [\"lease.created\"]",
            "field `webhooks.events`: `lease.created` matches no event",
        ),
        (
            "secret_env = \"HOOK_SECRET\"",
            "secret_env = \"HOOK_SECRET\"\nretry_backoff = \"2h\"",
            "field `webhooks.retry_backoff`: must be",
        ),
    ] {
        let bad = text.replacen(find, replace, 1);
        assert_ne!(bad, text, "{find}");
        let err = Config::parse(Path::new("/etc/ephemera/e.toml"), &bad, &env)
            .expect_err(replace)
            .to_string();
        let marker = replace
            .lines()
            .last()
            .expect("a line")
            .split(" = ")
            .next()
            .expect("key");
        let line = bad
            .lines()
            .enumerate()
            .filter(|(_, l)| l.starts_with(marker))
            .map(|(i, _)| i + 1)
            .last()
            .expect("marker line");
        assert!(
            err.starts_with(&format!("/etc/ephemera/e.toml:{line}:")),
            "{err} (line {line})"
        );
        assert!(err.contains(want), "{err} lacks {want}");
    }
    let twice = format!("{text}{hook}");
    let err = Config::parse(Path::new("/etc/ephemera/e.toml"), &twice, &env)
        .expect_err("twice")
        .to_string();
    assert!(err.contains("webhook `ops` is defined twice"), "{err}");
    let unsigned = text.replacen("secret_env = \"HOOK_SECRET\"\n", "", 1);
    let err = Config::parse(Path::new("/etc/ephemera/e.toml"), &unsigned, &env)
        .expect_err("unsigned")
        .to_string();
    assert!(err.contains("every webhook is signed"), "{err}");
}

/// `[slack]`: the URL from the environment (never the file), owners keyed ignoring case, and
/// each bad value named by file, line and field, without echoing the URL.
#[test]
fn slack_is_checked_and_defaults() {
    let slack = "\n[slack]\nurl_env = \"SLACK_URL\"\noncall = \"#ops\"\n\
                 [slack.owners]\n\"Alice@Example.com\" = \"@U024BE7LH\"\n\"bob@example.com\" = \"#data\"\n";
    let secret_url = "https://hooks.slack.com/services/T0/B0/secret-part";
    let env = |n: &str| match n {
        "SLACK_URL" => Some(secret_url.to_owned()),
        "PLAIN_URL" => Some("http://hooks.slack.com/services/T0/B0/secret-part".to_owned()),
        _ => None,
    };
    let text = format!("{EXAMPLE}{slack}");
    let c = Config::parse(Path::new("/etc/ephemera/e.toml"), &text, &env).expect("valid");
    let s = c.slack.expect("slack");
    assert_eq!(s.url, SecretSource::Env("SLACK_URL".into()));
    assert_eq!(s.oncall, crate::config::SlackTarget::parse("#ops"));
    assert_eq!(
        s.target_of("ALICE@example.COM").map(ToString::to_string),
        Some("@U024BE7LH".into())
    );
    assert_eq!(s.target_of("carol@example.com"), None);
    assert_eq!((s.timeout.as_secs(), s.retry_backoff.as_secs()), (10, 30));
    for (find, replace, want) in [
        (
            "url_env = \"SLACK_URL\"",
            "url_env = \"PLAIN_URL\"",
            "field `slack.url_env`: environment variable `PLAIN_URL` must hold an incoming webhook URL: https://",
        ),
        (
            "oncall = \"#ops\"",
            "oncall = \"ops\"",
            "field `slack.oncall`: `ops` must be a channel (`#name`) or a person",
        ),
        (
            "\"bob@example.com\" = \"#data\"",
            "\"bob@example.com\" = \"data\"",
            "field `slack.owners`: `data` must be a channel",
        ),
        (
            "\"bob@example.com\" = \"#data\"",
            "\"bob\" = \"#data\"",
            "field `slack.owners`: `bob` is not an e-mail address",
        ),
        (
            "\"bob@example.com\" = \"#data\"",
            "\"alice@example.com\" = \"#data\"",
            "`alice@example.com` is listed twice",
        ),
        (
            "oncall = \"#ops\"",
            "oncall = \"#ops\"\nretry_backoff = \"2h\"",
            "field `slack.retry_backoff`: must be",
        ),
    ] {
        let bad = text.replacen(find, replace, 1);
        assert_ne!(bad, text, "{find}");
        let err = Config::parse(Path::new("/etc/ephemera/e.toml"), &bad, &env)
            .expect_err(replace)
            .to_string();
        let marker = replace
            .lines()
            .last()
            .expect("a line")
            .split(" = ")
            .next()
            .expect("key");
        let line = bad
            .lines()
            .enumerate()
            .filter(|(_, l)| l.starts_with(marker))
            .map(|(i, _)| i + 1)
            .last()
            .expect("marker line");
        assert!(
            err.starts_with(&format!("/etc/ephemera/e.toml:{line}:")),
            "{err} (line {line})"
        );
        assert!(err.contains(want), "{err} lacks {want}");
        assert!(
            !err.contains("secret-part"),
            "the URL is never echoed: {err}"
        );
    }
    let no_url = text.replacen("url_env = \"SLACK_URL\"\n", "", 1);
    let err = Config::parse(Path::new("/etc/ephemera/e.toml"), &no_url, &env)
        .expect_err("no url")
        .to_string();
    assert!(
        err.contains("field `slack.url_env`: the incoming webhook's URL is a credential: set url_env or url_file"),
        "{err}"
    );
    // A webhook cannot take the name Slack's deliveries are counted under.
    let hook =
        "\n[[webhooks]]\nname = \"slack\"\nurl = \"https://h.example.com/e\"\nsecret_env = \"S\"\n";
    let env2 = |n: &str| (n == "S").then(|| "0123456789abcdef".to_owned());
    let err = Config::parse(
        Path::new("/etc/ephemera/e.toml"),
        &format!("{EXAMPLE}{hook}"),
        &env2,
    )
    .expect_err("reserved")
    .to_string();
    assert!(err.contains("`slack` is reserved"), "{err}");
}

/// `[canary]`: defaults, and each bad value named by file, line and field.
#[test]
fn canary_is_checked_and_defaults() {
    let canary = "\n[canary]\nproject = \"canary-prod\"\ntargets = [\"123456789012/us-east-1\", \"210987654321/eu-west-1\"]\n";
    let text = format!("{EXAMPLE}{canary}");
    let c = parse(&text).expect("valid").canary.expect("canary");
    assert_eq!(c.project, "canary-prod");
    assert_eq!(
        c.targets
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["123456789012/us-east-1", "210987654321/eu-west-1"]
    );
    assert_eq!((c.every.as_secs(), c.slo.as_secs()), (3600, 1800));
    for (find, replace, want, marker) in [
        (
            "project = \"canary-prod\"",
            "project = \"Not A Name\"",
            "field `canary.project`: `Not A Name` is not a project name",
            "project",
        ),
        (
            "\"210987654321/eu-west-1\"]",
            "\"210987654321\"]",
            "field `canary.targets`: `210987654321` is not \"ACCOUNT/REGION\"",
            "targets",
        ),
        (
            "\"210987654321/eu-west-1\"]",
            "\"999999999999/eu-west-1\"]",
            "field `canary.targets`: account 999999999999 is not in [[aws.accounts]]",
            "targets",
        ),
        (
            "\"210987654321/eu-west-1\"]",
            "\"210987654321/ap-south-1\"]",
            "field `canary.targets`: region ap-south-1 is not in aws.regions",
            "targets",
        ),
        (
            "\"210987654321/eu-west-1\"]",
            "\"123456789012/us-east-1\"]",
            "123456789012/us-east-1 is listed twice",
            "targets",
        ),
        (
            "\ntargets = [",
            "\nslo = \"2d\"\ntargets = [",
            "field `canary.slo`: must be",
            "slo",
        ),
    ] {
        let bad = text.replacen(find, replace, 1);
        assert_ne!(bad, text, "{find}");
        let err = parse(&bad).expect_err(replace).to_string();
        let line = bad
            .lines()
            .enumerate()
            .filter(|(_, l)| l.starts_with(marker))
            .map(|(i, _)| i + 1)
            .last()
            .expect("marker line");
        assert!(err.contains(&format!(":{line}:")), "{err} (line {line})");
        assert!(err.contains(want), "{err} lacks {want}");
    }
}
