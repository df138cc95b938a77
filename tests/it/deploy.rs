//! The deployment recipes in `deploy/` name this build and commands it accepts: the
//! Containerfile builds with Cargo.toml's `rust-version`, the systemd unit's config check passes
//! on a valid config, and the daemon command of the unit and of the image parses. The image
//! itself is not built here (no container runtime on the test machines). The account role's
//! CloudFormation template is the one `ephemera iam-policy` generates from the example config.

use std::path::Path;

use crate::cli::run;
use crate::support::Workdir;

/// The path every recipe gives the config; tests put a real one in its place.
const DEPLOYED_CONFIG: &str = "/etc/ephemera/ephemera.toml";

fn read(path: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The arguments of a command line of a recipe (program dropped), the config path replaced.
fn args_of(command: &[String], config: &Path) -> Vec<String> {
    command
        .iter()
        .map(|a| match a.as_str() {
            DEPLOYED_CONFIG => config.display().to_string(),
            _ => a.clone(),
        })
        .collect()
}

#[test]
fn the_containerfile_builds_with_the_declared_rust_version() {
    let cargo = read("Cargo.toml");
    let version = cargo
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = \"")?.strip_suffix('"'))
        .expect("Cargo.toml declares rust-version");
    let image = format!("/rust:{version}-");
    assert!(
        read("deploy/Containerfile")
            .lines()
            .any(|l| l.starts_with("FROM ") && l.contains(&image)),
        "the build stage is not on {image}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_units_and_the_images_commands_are_ones_the_binary_runs() {
    let work = Workdir::new();
    let config = work.config_path();
    let unit = read("deploy/systemd/ephemera.service");
    let exec = |key: &str| -> Vec<String> {
        let line = unit
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("the unit has no {key}"));
        let mut words = line.split_whitespace().map(str::to_owned);
        assert_eq!(words.next().as_deref(), Some("/usr/local/bin/ephemera"));
        words.collect()
    };

    let pre = args_of(&exec("ExecStartPre="), &config);
    let pre: Vec<&str> = pre.iter().map(String::as_str).collect();
    assert_eq!(pre[..2], ["config", "check"]);
    let o = run(&pre, &[]).await;
    assert!(
        o.status.success(),
        "{pre:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );

    let containerfile = read("deploy/Containerfile");
    let cmd: Vec<String> = containerfile
        .lines()
        .find_map(|l| l.strip_prefix("CMD "))
        .map(|json| serde_json::from_str(json).expect("CMD in exec form"))
        .expect("the image has a CMD");
    for daemon in [exec("ExecStart="), cmd] {
        // `--help` so the command parses but does not start serving.
        let mut args = args_of(&daemon, &config);
        assert_eq!(args[0], "daemon", "{args:?}");
        args.push("--help".into());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = run(&args, &[]).await;
        assert!(
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains("--config"),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

/// `deploy/cloudformation/account-role.yaml` is exactly what `iam-policy --format
/// cloudformation` makes of the example config (whose statements are the printed policy's,
/// unit `iam::cloudformation::tests`): a change to the action tables, the conditions or the
/// example config that is not regenerated fails here.
#[tokio::test(flavor = "multi_thread")]
async fn the_account_role_template_is_what_iam_policy_generates() {
    const COMMAND: &[&str] = &[
        "iam-policy",
        "--for",
        "account-role",
        "--format",
        "cloudformation",
        "--config",
        "ephemera.example.toml",
    ];
    let o = run(COMMAND, &[]).await;
    let generated = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let committed = read("deploy/cloudformation/account-role.yaml");
    assert!(
        generated == committed,
        "deploy/cloudformation/account-role.yaml is stale; regenerate it with\n  ephemera {} \
         > deploy/cloudformation/account-role.yaml",
        COMMAND.join(" ")
    );
    assert!(committed.contains(&format!("#   ephemera {}\n", COMMAND.join(" "))));
    for want in [
        "  DaemonPrincipalArn:\n",
        "  Dedicated:\n",
        "  RoleArn:\n",
        "\"aws:ResourceTag/ephemera:lease-id\": \"false\"",
        "- Sid: \"DeleteInDedicatedAccount\"",
    ] {
        assert!(committed.contains(want), "{want:?}");
    }
    // Only the role template's parameters choose: the command refuses what would fix them.
    let mut with_account = COMMAND.to_vec();
    with_account.extend(["--account", "123456789012"]);
    let o = run(&with_account, &[]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--format cloudformation"));
}
