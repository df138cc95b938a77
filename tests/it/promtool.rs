//! The Prometheus rules in `rules/prometheus/`: valid for the real `promtool`, their unit tests
//! pass, every alert has a test case that fires it and one that does not, and they read only
//! metrics the daemon defines; plus the one metric the staleness alerts divide by.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{TestDaemon, Workdir, manual_clock, sample};

const RULES: &str = "rules/prometheus/ephemera.rules.yml";
const TESTS: &str = "rules/prometheus/tests";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `promtool` from Debian's prometheus package (`scripts/setup-peers.sh`), or
/// `EPHEMERA_PROMTOOL`.
fn promtool(args: &[&str]) {
    let bin = std::env::var("EPHEMERA_PROMTOOL").unwrap_or_else(|_| "promtool".into());
    let out = Command::new(&bin)
        .args(args)
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{bin}` ({e}): run scripts/setup-peers.sh"));
    assert!(
        out.status.success(),
        "`promtool {}` failed ({}):\n{}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The unit-test files, relative to the repository root, in name order.
fn test_files() -> Vec<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join(TESTS))
        .expect("rules/prometheus/tests exists")
        .map(|e| e.expect("readable dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no promtool tests in {TESTS}");
    files
        .iter()
        .map(|p| {
            let name = p.file_name().expect("a file name").to_string_lossy();
            format!("{TESTS}/{name}")
        })
        .collect()
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("cannot read {rel}: {e}"))
}

/// The value after `key:` on a line, unquoted, if the trimmed line (less a list dash) starts
/// with it.
fn value_of<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let line = line.trim();
    let line = line.strip_prefix("- ").unwrap_or(line);
    let rest = line.strip_prefix(key)?.strip_prefix(':')?.trim();
    Some(rest.trim_matches(|c| c == '"' || c == '\''))
}

/// Alert names in the rules file (`- alert: Name`).
fn alerts(rules: &str) -> BTreeSet<String> {
    rules
        .lines()
        .filter_map(|l| value_of(l, "alert"))
        .map(str::to_owned)
        .collect()
}

/// Alert names the test cases expect to fire (`exp_alerts:` with a list under it) and to stay
/// quiet (`exp_alerts: []`). Each `alert_rule_test` item names `alertname` before
/// `exp_alerts`.
fn cases(file: &str, text: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut firing, mut quiet) = (BTreeSet::new(), BTreeSet::new());
    let mut current: Option<String> = None;
    for (n, line) in text.lines().enumerate() {
        if value_of(line, "eval_time").is_some() {
            current = None;
        } else if let Some(name) = value_of(line, "alertname") {
            current = Some(name.to_owned());
        } else if let Some(rest) = value_of(line, "exp_alerts") {
            let name = current.clone().unwrap_or_else(|| {
                panic!("{file}:{}: write `alertname` before `exp_alerts`", n + 1)
            });
            match rest {
                "[]" => quiet.insert(name),
                "" => firing.insert(name),
                other => panic!("{file}:{}: unexpected `exp_alerts: {other}`", n + 1),
            };
        }
    }
    (firing, quiet)
}

#[test]
fn promtool_accepts_the_rules_file() {
    promtool(&["check", "rules", RULES]);
}

#[test]
fn promtool_unit_tests_of_the_rules_pass() {
    let files = test_files();
    let mut args = vec!["test", "rules"];
    args.extend(files.iter().map(String::as_str));
    promtool(&args);
}

/// promtool passes a test that expects no alert from a rule that does not exist, and a rules
/// file whose alert is never tested; this closes both gaps.
#[test]
fn every_alert_has_a_firing_and_a_quiet_test_case() {
    let defined = alerts(&read(RULES));
    assert!(defined.len() >= 9, "too few alerts found: {defined:?}");
    let (mut firing, mut quiet) = (BTreeSet::new(), BTreeSet::new());
    for f in test_files() {
        let (fi, q) = cases(&f, &read(&f));
        firing.extend(fi);
        quiet.extend(q);
    }
    let untested: Vec<_> = defined.difference(&firing).collect();
    assert!(
        untested.is_empty(),
        "alerts no test expects to fire: {untested:?}"
    );
    let never_quiet: Vec<_> = defined.difference(&quiet).collect();
    assert!(
        never_quiet.is_empty(),
        "alerts no test expects to stay quiet: {never_quiet:?}"
    );
    let unknown: Vec<_> = firing
        .union(&quiet)
        .filter(|a| !defined.contains(*a))
        .collect();
    assert!(
        unknown.is_empty(),
        "tests of alerts not in {RULES}: {unknown:?}"
    );
}

/// promtool cannot catch a misspelt metric (the test series would carry the same spelling):
/// every `ephemera_*` name the rules read must be one `src/metrics.rs` registers.
#[test]
fn rules_read_only_metrics_the_daemon_registers() {
    let rules = read(RULES);
    let registered = read("src/metrics.rs");
    let mut names = BTreeSet::new();
    let mut rest = rules.as_str();
    while let Some(i) = rest.find("ephemera_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(&tail[..end]);
        rest = &tail[end..];
    }
    assert!(
        names.contains("ephemera_task_schedule_interval_seconds"),
        "{names:?}"
    );
    let unknown: Vec<_> = names
        .iter()
        .filter(|n| !registered.contains(&format!("\"{n}\"")))
        .collect();
    assert!(
        unknown.is_empty(),
        "metrics not registered in src/metrics.rs: {unknown:?}"
    );
}

/// Every alert's `runbook` annotation points at a row of the runbook (docs/operations.md)
/// that exists, one per alert.
#[test]
fn every_alert_links_to_its_runbook_row() {
    let rules = read(RULES);
    let runbook = read("docs/operations.md");
    let anchors: Vec<&str> = rules
        .lines()
        .filter_map(|l| value_of(l, "runbook"))
        .collect();
    assert_eq!(anchors.len(), alerts(&rules).len(), "{anchors:?}");
    for a in anchors {
        let name = a
            .strip_prefix("docs/operations.md#")
            .unwrap_or_else(|| panic!("runbook `{a}` is not an anchor of docs/operations.md"));
        assert!(
            runbook.contains(&format!("<a name=\"{name}\"></a>")),
            "docs/operations.md has no runbook row `{name}`"
        );
    }
}

/// The staleness alerts compare a task's last success with twice this; the test config's
/// crons are `0 0 1 1 *` (scan: a year, 2027 to 2028, from the clock's 2026-03-01) and
/// `0 6,14,22 * * *` (cost: 8h).
#[tokio::test(flavor = "multi_thread")]
async fn daemon_exports_each_task_schedule_interval() {
    let work = Workdir::new();
    let d = TestDaemon::start_with_clock(&work, manual_clock()).await;
    let m = d.metrics().await;
    assert_eq!(
        sample(&m, "ephemera_task_schedule_interval_seconds{task=\"cost\"}"),
        Some(8.0 * 3600.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, "ephemera_task_schedule_interval_seconds{task=\"scan\"}"),
        Some(365.0 * 86400.0),
        "{m}"
    );
    d.stop().await;
}
