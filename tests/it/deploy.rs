//! The deployment recipes in `deploy/` name this build and commands it accepts, and work as
//! shipped: the Containerfile builds with Cargo.toml's `rust-version` and carries no rules of its
//! own (without mounted ones the daemon refuses to start, naming them); the systemd unit passes
//! `systemd-analyze verify` and keeps what the daemon writes under its state directory, its
//! config check passes on a valid config; and the daemon command of the unit and of the image
//! parses. The image
//! itself is not built here (no container runtime on the test machines). The account role's
//! CloudFormation template is the one `ephemera iam-policy` generates from the example config.

use std::path::{Path, PathBuf};

use ephemera::audit::AuditKeySource;
use ephemera::config::{Config, EXAMPLE, STATE_DIR_ENV};

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
    // In the unit's environment, its state directory moved into the test's.
    let state = work.path().join("state-dir");
    let env: Vec<(String, String)> = unit_env(&unit)
        .into_iter()
        .map(|(k, v)| {
            let v = if k == STATE_DIR_ENV {
                state.display().to_string()
            } else {
                v
            };
            (k, v)
        })
        .collect();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let o = run(&pre, &env).await;
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

/// The value of the unit's (or image's) single `KEY=VALUE` line starting with `prefix`.
fn line_value<'a>(text: &'a str, prefix: &str) -> &'a str {
    let found: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .collect();
    assert_eq!(found.len(), 1, "one {prefix} line: {found:?}");
    found[0].trim()
}

/// The unit's `Environment=NAME=VALUE` pairs.
fn unit_env(unit: &str) -> Vec<(String, String)> {
    unit.lines()
        .filter_map(|l| l.strip_prefix("Environment="))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The example config, installed where the unit reads it, in the unit's environment: what
/// the daemon writes lands in the state directory (the only writable place under
/// `ProtectSystem=strict`), the rules beside the config.
#[test]
fn the_unit_keeps_the_store_and_key_under_its_state_directory() {
    let unit = read("deploy/systemd/ephemera.service");
    let state = format!("/var/lib/{}", line_value(&unit, "StateDirectory="));
    let config_dir = format!("/etc/{}", line_value(&unit, "ConfigurationDirectory="));
    assert_eq!(line_value(&unit, "ProtectSystem="), "strict");
    assert!(
        !unit.contains("ReadWritePaths="),
        "only the state directory is writable"
    );
    assert_eq!(line_value(&unit, "WorkingDirectory="), state);
    assert!(DEPLOYED_CONFIG.starts_with(&format!("{config_dir}/")));
    let env = unit_env(&unit);
    assert!(
        env.contains(&(STATE_DIR_ENV.to_owned(), state.clone())),
        "{STATE_DIR_ENV} is not {state}: {env:?}"
    );
    let lookup = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let c = Config::parse(Path::new(DEPLOYED_CONFIG), EXAMPLE, &lookup).expect("example");
    assert!(
        c.store.sqlite_path().expect("sqlite").starts_with(&state),
        "{}",
        c.store.location
    );
    let AuditKeySource::File(key) = &c.audit.key else {
        panic!("the example keeps its key in a file");
    };
    assert!(key.starts_with(&state), "{}", key.display());
    assert!(
        c.rules.dir.starts_with(&config_dir),
        "{}",
        c.rules.dir.display()
    );
}

/// `systemd-analyze verify` (with the binary path pointed at this build) finds nothing to say.
#[tokio::test(flavor = "multi_thread")]
async fn systemd_analyze_verifies_the_unit() {
    let Some(analyze) = which("systemd-analyze") else {
        eprintln!("systemd-analyze is not installed: the unit is not verified here");
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let unit = read("deploy/systemd/ephemera.service")
        .replace("/usr/local/bin/ephemera", env!("CARGO_BIN_EXE_ephemera"));
    let path = dir.path().join("ephemera.service");
    std::fs::write(&path, unit).expect("write unit");
    let o = tokio::process::Command::new(analyze)
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .await
        .expect("systemd-analyze runs");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && stderr.trim().is_empty(), "{stderr}");
}

/// `program` on the PATH.
fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// The image holds no rules (nor config); its state directory is its volume. Started with a
/// config mounted but no rules, the daemon refuses, naming the rules directory, and writes
/// nothing; with the rules mounted too, the config checks out.
#[tokio::test(flavor = "multi_thread")]
async fn the_image_carries_no_rules_and_refuses_to_start_without_mounted_ones() {
    let containerfile = read("deploy/Containerfile");
    for l in containerfile.lines().filter(|l| l.starts_with("COPY ")) {
        assert!(
            !l.contains("rules") && !l.contains("ephemera.toml") && !l.contains("/etc/"),
            "the image carries config or rules: {l}"
        );
    }
    let volume = line_value(&containerfile, "VOLUME ");
    let state = line_value(&containerfile, &format!("ENV {STATE_DIR_ENV}="));
    assert_eq!(volume, format!("[\"{state}\"]"));
    assert!(
        containerfile
            .lines()
            .any(|l| l == format!("WORKDIR {state}")),
        "the image does not run in its state directory"
    );

    // The mounts, in a temp dir: /etc/ephemera (the config only) and the volume.
    let root = tempfile::tempdir().expect("temp dir");
    let etc = root.path().join("etc/ephemera");
    let volume = root.path().join("var/lib/ephemera");
    std::fs::create_dir_all(&etc).expect("etc");
    std::fs::create_dir_all(&volume).expect("volume");
    let config = etc.join("ephemera.toml");
    std::fs::write(&config, EXAMPLE).expect("config");
    let config = config.to_str().expect("utf-8 path");
    let state_env = [(STATE_DIR_ENV, volume.to_str().expect("utf-8 path"))];
    let o = run(&["daemon", "--config", config], &state_env).await;
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("{}/rules/policy", etc.display()))
            && stderr.contains("cannot read rules"),
        "{stderr}"
    );
    let written: Vec<PathBuf> = std::fs::read_dir(&etc)
        .expect("etc")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(
        written,
        [etc.join("ephemera.toml")],
        "wrote into the config mount"
    );

    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/policy");
    std::fs::create_dir_all(etc.join("rules/policy")).expect("rules dir");
    for f in std::fs::read_dir(&rules).expect("rules") {
        let f = f.expect("entry").path();
        std::fs::copy(
            &f,
            etc.join("rules/policy").join(f.file_name().expect("name")),
        )
        .expect("copy rule");
    }
    let o = run(&["config", "check", "--config", config], &state_env).await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}
