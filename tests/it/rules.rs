//! The rules shipped in `rules/` pass their own test cases, and `ephemera rules test`
//! reports failures with their place and a non-zero exit.

use std::path::Path;

use ephemera::policy::Policy;

/// Runs the test cases written in the repository's rules files, as `cargo test` must.
#[test]
fn shipped_rules_pass_their_own_cases() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let policy = Policy::load(&dir).expect("shipped rules load");
    let report = policy.run_cases();
    assert!(
        report.outcomes.len() >= 5,
        "the shipped rules should carry test cases"
    );
    assert_eq!(report.failed(), 0, "\n{report}");
}

#[test]
fn rules_test_command_reports_failures() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("policy")).expect("mkdir");
    let file = dir.path().join("policy/p.toml");
    let text = r#"[[project]]
name = "web"
lessees = ["ci"]
default_ttl = "2h"
max_ttl = "24h"
grace = "1h"

[[test]]
name = "passes"
principal = "ci"
project = "web"
expect = "granted"

[[test]]
name = "expects the wrong thing"
principal = "ci"
project = "web"
ttl = "30h"
expect = "granted"
"#;
    std::fs::write(&file, text).expect("write rules");
    let run = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_ephemera"))
            .args(["rules", "test", "--rules"])
            .arg(dir.path())
            .output()
            .expect("binary runs")
    };
    let o = run();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains(&format!("ok    {}:8 passes", file.display())),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "FAIL  {}:14 expects the wrong thing: expected granted, got ttl-above-max",
            file.display()
        )),
        "{out}"
    );
    assert!(out.ends_with("1 passed, 1 failed\n"), "{out}");

    std::fs::write(
        &file,
        text.replace(
            "ttl = \"30h\"\nexpect = \"granted\"",
            "ttl = \"30h\"\nexpect = \"ttl-above-max\"",
        ),
    )
    .expect("write");
    let o = run();
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).ends_with("2 passed, 0 failed\n"));
}
