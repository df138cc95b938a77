//! `ephemera lease run` and the CI integrations in `integrations/`: the GitHub Actions
//! composite action and the GitLab CI template, each run as its CI would run it (the YAML read
//! by PyYAML, inputs and variables substituted, its shell script executed) against a real
//! daemon, with the real CLI binary.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::{TestDaemon, WEB, Workdir};

const BIN: &str = env!("CARGO_BIN_EXE_ephemera");

/// A YAML file of the repository as JSON, read by PyYAML (the test virtualenv's, from moto).
fn yaml(rel: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    let out = Command::new(crate::support::seed::python())
        .args([
            "-c",
            "import sys, json, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
        ])
        .arg(&path)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{rel}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

/// What a run of an integration left: its exit code, stderr, and what the command under the
/// lease wrote of its environment (`NAME=value` lines).
struct Ran {
    code: Option<i32>,
    stderr: String,
    seen: BTreeMap<String, String>,
}

/// The command the integrations run under the lease: writes the lease's environment to
/// `seen`, checks the Terraform variables file when there is one, then exits 3 (or sleeps,
/// to be signalled).
fn probe(seen: &Path, tfvars: Option<&Path>, sleep: bool) -> String {
    let seen = seen.display();
    let check = tfvars.map_or(String::new(), |f| {
        format!(
            "grep -q ephemera_tags '{}' && echo TFVARS=ok >> '{seen}'; ",
            f.display()
        )
    });
    format!(
        "for v in EPHEMERA_LEASE_ID EPHEMERA_PROJECT EPHEMERA_TASK EPHEMERA_TAGS TF_VAR_ephemera_lease_id TF_VAR_ephemera_tags; do \
         printf '%s=%s\\n' \"$v\" \"$(printenv $v || true)\" >> '{seen}'; done; {check}{}",
        if sleep { "sleep 30" } else { "exit 3" }
    )
}

fn read_seen(path: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Runs `script` with `shell` and `env` (nothing else of this process's environment but
/// PATH); with `term_after`, sends SIGTERM to it after that long.
fn run_script(
    shell: &[&str],
    script: &str,
    env: &BTreeMap<String, String>,
    term_after: Option<Duration>,
) -> (Option<i32>, String) {
    let child = Command::new(shell[0])
        .args(&shell[1..])
        .arg(script)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("shell runs");
    if let Some(after) = term_after {
        std::thread::sleep(after);
        let s = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(s.success());
    }
    let out = child.wait_with_output().expect("shell ends");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The GitHub composite action's one step, as the runner would run it: `${{ inputs.x }}`
/// replaced by `inputs` (or the input's default, whose `${{ github.x }}` is replaced too) in
/// the step's `env`, and its `run` executed by `bash -e` with that env.
fn github_action(
    inputs: &BTreeMap<&str, String>,
    env: &BTreeMap<String, String>,
    term_after: Option<Duration>,
    seen: &Path,
) -> Ran {
    let action = yaml("integrations/github-actions/lease-run/action.yml");
    assert_eq!(action["runs"]["using"], "composite");
    let declared = action["inputs"].as_object().expect("inputs");
    for name in inputs.keys() {
        assert!(
            declared.contains_key(*name),
            "the action has no input `{name}`"
        );
    }
    let github: BTreeMap<&str, &str> = [
        ("github.repository", "acme/shop"),
        ("github.run_id", "4711"),
        ("github.job", "preview"),
    ]
    .into();
    let expand = |text: &str| -> String {
        let mut out = text.to_owned();
        for (k, v) in &github {
            out = out.replace(&format!("${{{{ {k} }}}}"), v);
        }
        for (name, spec) in declared {
            let value = inputs
                .get(name.as_str())
                .cloned()
                .unwrap_or_else(|| spec["default"].as_str().unwrap_or_default().to_owned());
            let value = github
                .iter()
                .fold(value, |v, (k, g)| v.replace(&format!("${{{{ {k} }}}}"), g));
            out = out.replace(&format!("${{{{ inputs.{name} }}}}"), &value);
        }
        assert!(!out.contains("${{"), "unreplaced expression in {out}");
        out
    };
    let steps = action["runs"]["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 1, "one step");
    let step = &steps[0];
    assert_eq!(step["shell"], "bash");
    let mut all = env.clone();
    for (k, v) in step["env"].as_object().expect("env") {
        all.insert(k.clone(), expand(v.as_str().expect("a string")));
    }
    let (code, stderr) = run_script(
        &["bash", "-e", "-c"],
        step["run"].as_str().expect("run"),
        &all,
        term_after,
    );
    Ran {
        code,
        stderr,
        seen: read_seen(seen),
    }
}

/// The GitLab template's `.ephemera-lease` job extended by a job setting `variables`: its
/// variables (the template's, then the job's, with `$CI_…` expanded) and its script run by
/// `sh -e`, as a GitLab shell executor would.
fn gitlab_job(
    variables: &BTreeMap<&str, String>,
    env: &BTreeMap<String, String>,
    term_after: Option<Duration>,
    seen: &Path,
) -> Ran {
    let template = yaml("integrations/gitlab/ephemera-lease.gitlab-ci.yml");
    let job = &template[".ephemera-lease"];
    let ci: BTreeMap<&str, &str> = [
        ("CI_PROJECT_PATH", "acme/shop"),
        ("CI_PIPELINE_ID", "815"),
        ("CI_JOB_NAME", "deploy-preview"),
    ]
    .into();
    let mut all = env.clone();
    for (k, v) in ci.iter() {
        all.insert((*k).to_owned(), (*v).to_owned());
    }
    let declared = job["variables"].as_object().expect("variables");
    for name in variables.keys() {
        assert!(
            declared.contains_key(*name),
            "the template has no variable `{name}`"
        );
    }
    for (k, v) in declared {
        let v = variables
            .get(k.as_str())
            .cloned()
            .unwrap_or_else(|| v.as_str().expect("a string").to_owned());
        let v = ci
            .iter()
            .fold(v, |v, (c, x)| v.replace(&format!("${c}"), x));
        all.insert(k.clone(), v);
    }
    let script: Vec<&str> = job["script"]
        .as_array()
        .expect("script")
        .iter()
        .map(|l| l.as_str().expect("a line"))
        .collect();
    let (code, stderr) = run_script(&["sh", "-e", "-c"], &script.join("\n"), &all, term_after);
    Ran {
        code,
        stderr,
        seen: read_seen(seen),
    }
}

async fn lease_state(d: &TestDaemon, id: &str) -> String {
    let (s, lease) = d.get(&format!("/api/v1/leases/{id}"), WEB).await;
    assert_eq!(s, StatusCode::OK, "{lease}");
    lease["state"].as_str().expect("state").to_owned()
}

/// Both integrations, each against a real daemon: the command sees the lease's tags (and the
/// Terraform file), its exit status is the job's, the lease is released after it; SIGTERM to
/// the job is passed on and the lease still released; with the registry unreachable the job
/// fails without running the command, or with `proceed` runs it without a lease.
#[tokio::test(flavor = "multi_thread")]
async fn the_ci_integrations_run_commands_under_a_lease() {
    let work = Workdir::new();
    let d = TestDaemon::start(&work).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let env: BTreeMap<String, String> = [
        ("EPHEMERA_ADDR".to_owned(), d.base()),
        ("EPHEMERA_TOKEN".to_owned(), WEB.to_owned()),
        ("EPHEMERA_BIN".to_owned(), BIN.to_owned()),
    ]
    .into();
    for ci in ["github", "gitlab"] {
        let seen = dir.path().join(format!("{ci}.seen"));
        let tfvars = dir.path().join(format!("{ci}.auto.tfvars"));
        let run = |probe: String,
                   extra: &[(&'static str, String)],
                   env: &BTreeMap<String, String>,
                   term: Option<Duration>| {
            let _ = std::fs::remove_file(&seen);
            if ci == "github" {
                let mut inputs: BTreeMap<&str, String> = [
                    ("project", "web".to_owned()),
                    ("owner", "alice@example.com".to_owned()),
                    ("run", probe),
                    ("ephemera", BIN.to_owned()),
                ]
                .into();
                for (k, v) in extra {
                    inputs.insert(k, v.clone());
                }
                github_action(&inputs, env, term, &seen)
            } else {
                let mut vars: BTreeMap<&str, String> = [
                    ("EPHEMERA_PROJECT", "web".to_owned()),
                    ("EPHEMERA_OWNER", "alice@example.com".to_owned()),
                    ("EPHEMERA_RUN", probe),
                ]
                .into();
                for (k, v) in extra {
                    let k = match *k {
                        "tfvars" => "EPHEMERA_TFVARS",
                        "ttl" => "EPHEMERA_TTL",
                        "if-unavailable" => "EPHEMERA_IF_UNAVAILABLE",
                        other => panic!("no GitLab variable for {other}"),
                    };
                    vars.insert(k, v.clone());
                }
                gitlab_job(&vars, env, term, &seen)
            }
        };

        // The command sees the lease; its status is the job's; the lease ends with it.
        let ran = run(
            probe(&seen, Some(&tfvars), false),
            &[
                ("tfvars", tfvars.display().to_string()),
                ("ttl", "1h".into()),
            ],
            &env,
            None,
        );
        assert_eq!(
            ran.code,
            Some(3),
            "{ci}: the command's status: {}",
            ran.stderr
        );
        let id = ran
            .seen
            .get("EPHEMERA_LEASE_ID")
            .cloned()
            .unwrap_or_default();
        assert!(!id.is_empty(), "{ci}: {:?} {}", ran.seen, ran.stderr);
        assert_eq!(ran.seen["EPHEMERA_PROJECT"], "web");
        let task = if ci == "github" {
            "acme/shop/4711/preview"
        } else {
            "acme/shop/815/deploy-preview"
        };
        assert_eq!(ran.seen["EPHEMERA_TASK"], task, "{ci}");
        assert_eq!(ran.seen["TF_VAR_ephemera_lease_id"], id);
        let tags: BTreeMap<String, String> =
            serde_json::from_str(&ran.seen["TF_VAR_ephemera_tags"]).expect("tags json");
        assert_eq!(tags.get("ephemera:lease-id"), Some(&id), "{ci}: {tags:?}");
        assert_eq!(ran.seen["EPHEMERA_TAGS"], ran.seen["TF_VAR_ephemera_tags"]);
        assert_eq!(
            ran.seen.get("TFVARS").map(String::as_str),
            Some("ok"),
            "{ci}"
        );
        assert!(
            !tfvars.exists(),
            "{ci}: the variables file is removed after"
        );
        assert_eq!(lease_state(&d, &id).await, "released", "{ci}");
        assert!(
            ran.stderr.contains(&format!("lease {id} released")),
            "{ci}: {}",
            ran.stderr
        );

        // SIGTERM to the job (a cancelled pipeline): passed on, the lease still released.
        let ran = run(
            probe(&seen, None, true),
            &[],
            &env,
            Some(Duration::from_secs(3)),
        );
        assert_eq!(ran.code, Some(128 + 15), "{ci}: {}", ran.stderr);
        let id = ran
            .seen
            .get("EPHEMERA_LEASE_ID")
            .cloned()
            .unwrap_or_default();
        assert!(!id.is_empty(), "{ci}: {}", ran.stderr);
        assert_eq!(lease_state(&d, &id).await, "released", "{ci}");

        // The registry out of reach: fail (the command never runs) or proceed without a lease.
        let mut down = env.clone();
        down.insert("EPHEMERA_ADDR".into(), "http://127.0.0.1:9".into());
        down.insert("EPHEMERA_TIMEOUT".into(), "2s".into());
        let ran = run(probe(&seen, None, false), &[], &down, None);
        assert_eq!(ran.code, Some(1), "{ci}: {}", ran.stderr);
        assert!(
            ran.seen.is_empty(),
            "{ci}: the command did not run: {:?}",
            ran.seen
        );
        assert!(
            ran.stderr.contains("not running the command"),
            "{ci}: {}",
            ran.stderr
        );
        let ran = run(
            probe(&seen, None, false),
            &[("if-unavailable", "proceed".into())],
            &down,
            None,
        );
        assert_eq!(ran.code, Some(3), "{ci}: {}", ran.stderr);
        assert_eq!(
            ran.seen.get("EPHEMERA_LEASE_ID").map(String::as_str),
            Some(""),
            "{ci}"
        );
        assert!(
            ran.stderr.contains("WITHOUT a lease"),
            "{ci}: {}",
            ran.stderr
        );
    }
}

/// `lease run` fails on what the registry refuses (a project it does not know), even with
/// `--if-unavailable proceed`, without running the command; a command that cannot be found
/// exits 127 with the lease released.
#[tokio::test(flavor = "multi_thread")]
async fn lease_run_fails_on_a_refusal_and_releases_on_a_missing_command() {
    let work = Workdir::new();
    let d = TestDaemon::start(&work).await;
    let base = d.base();
    let env = [("EPHEMERA_ADDR", base.as_str()), ("EPHEMERA_TOKEN", WEB)];
    let out = crate::cli::run(
        &[
            "lease",
            "run",
            "--project",
            "data",
            "--task",
            "t",
            "--owner",
            "alice@example.com",
            "--if-unavailable",
            "proceed",
            "--",
            "true",
        ],
        &env,
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not running the command"), "{stderr}");

    let out = crate::cli::run(
        &[
            "lease",
            "run",
            "--project",
            "web",
            "--task",
            "t",
            "--owner",
            "alice@example.com",
            "--",
            "/no/such/command",
        ],
        &env,
    )
    .await;
    assert_eq!(out.status.code(), Some(127));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let id = stderr
        .split("lease ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("the lease is named")
        .to_owned();
    assert_eq!(lease_state(&d, &id).await, "released", "{stderr}");
}
