//! The real `ephemera` binary: client commands against a running daemon, local checks,
//! exit codes, and the daemon's own start-up and logs.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::{DATA, OPERATOR, TestDaemon, WEB, Workdir};

const BIN: &str = env!("CARGO_BIN_EXE_ephemera");

/// Runs the binary with a clean environment (no inherited EPHEMERA_* or RUST_LOG).
pub(crate) async fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().await.expect("binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The lease subcommands end to end, including every tag format.
#[tokio::test(flavor = "multi_thread")]
async fn lease_commands_against_a_daemon() {
    let work = Workdir::new();
    let d = TestDaemon::start(&work).await;
    let base = d.base();
    let env = [("EPHEMERA_ADDR", base.as_str()), ("EPHEMERA_TOKEN", WEB)];

    // --format terraform prints a variables file: the lease id and the four identity tags.
    let o = run(
        &[
            "lease",
            "acquire",
            "--project",
            "web",
            "--task",
            "plan 7",
            "--owner",
            "alice@example.com",
            "--format",
            "terraform",
        ],
        &env,
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let tf = stdout(&o);
    let lines: Vec<&str> = tf.lines().collect();
    let tf_id = lines[0]
        .strip_prefix("ephemera_lease_id = \"")
        .and_then(|l| l.strip_suffix('"'))
        .unwrap_or_else(|| panic!("{tf}"))
        .to_owned();
    assert_eq!(lines[1], "ephemera_tags = {");
    assert_eq!(lines[2], format!("  \"ephemera:lease-id\" = \"{tf_id}\""));
    assert_eq!(lines[3], "  \"ephemera:owner\"    = \"alice@example.com\"");
    assert_eq!(lines[4], "  \"ephemera:project\"  = \"web\"");
    assert_eq!(lines[5], "  \"ephemera:task\"     = \"plan 7\"");
    assert_eq!(&lines[6..], ["}"]);

    // --format json: a map of tags.
    let o = run(
        &[
            "lease",
            "acquire",
            "--project",
            "web",
            "--task",
            "t2",
            "--owner",
            "bob@example.com",
            "--format",
            "json",
        ],
        &env,
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let tags: Value = serde_json::from_slice(&o.stdout).expect("json tags");
    assert_eq!(tags["ephemera:project"], "web");
    assert_eq!(tags["ephemera:owner"], "bob@example.com");
    assert_eq!(tags.as_object().map(|m| m.len()), Some(4));

    // --format env: export lines a shell can evaluate.
    let o = run(
        &[
            "lease",
            "acquire",
            "--project",
            "web",
            "--task",
            "deploy web/42 @ 10:00 +1 x=y",
            "--owner",
            "carol@example.com",
            "--ttl",
            "3h",
            "--format",
            "env",
        ],
        &env,
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let script = format!(
        "{}\nprintf '%s|%s|%s' \"$EPHEMERA_TASK\" \"$EPHEMERA_OWNER\" \"$EPHEMERA_TAGS\"",
        stdout(&o)
    );
    let sh = Command::new("sh")
        .arg("-c")
        .arg(&script)
        .output()
        .expect("sh runs");
    let evaluated = String::from_utf8_lossy(&sh.stdout).into_owned();
    let parts: Vec<&str> = evaluated.splitn(3, '|').collect();
    assert_eq!(
        &parts[..2],
        ["deploy web/42 @ 10:00 +1 x=y", "carol@example.com"],
        "{evaluated}"
    );
    let tags: Value = serde_json::from_str(parts[2]).expect("EPHEMERA_TAGS is JSON");
    assert_eq!(tags["ephemera:task"], "deploy web/42 @ 10:00 +1 x=y");

    // list / show / heartbeat / renew / release, table and JSON output.
    let o = run(&["lease", "list"], &env).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let table = stdout(&o);
    assert!(table.starts_with("ID "), "{table}");
    assert_eq!(table.lines().count(), 4, "{table}");
    assert!(table.contains(&tf_id));

    let o = run(&["lease", "show", &tf_id, "--output", "json"], &env).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let shown: Value = serde_json::from_slice(&o.stdout).expect("json lease");
    assert_eq!(shown["id"], tf_id.as_str());
    assert_eq!(shown["state"], "active");

    let o = run(&["lease", "heartbeat", &tf_id], &env).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("last_heartbeat_at"), "{}", stdout(&o));
    let o = run(
        &["lease", "renew", &tf_id, "--ttl", "5h", "--output", "json"],
        &env,
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let renewed: Value = serde_json::from_slice(&o.stdout).expect("json lease");
    assert_ne!(renewed["expires_at"], shown["expires_at"]);
    let o = run(&["lease", "release", &tf_id], &env).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("released"), "{}", stdout(&o));

    let o = run(
        &["lease", "list", "--state", "released", "--output", "json"],
        &env,
    )
    .await;
    let page: Value = serde_json::from_slice(&o.stdout).expect("json list");
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1));

    // Flags work as well as the environment.
    let o = run(
        &[
            "lease",
            "list",
            "--addr",
            &base,
            "--token",
            OPERATOR,
            "--project",
            "web",
            "--limit",
            "1",
        ],
        &[],
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).lines().count(), 2);
    assert!(stderr(&o).contains("more: --cursor "), "{}", stderr(&o));
}

/// Exit codes: 1 for a refused or failed call (with the API's code), 2 for usage errors.
#[tokio::test(flavor = "multi_thread")]
async fn exit_codes() {
    let work = Workdir::new();
    let d = TestDaemon::start(&work).await;
    let base = d.base();
    let env = [("EPHEMERA_ADDR", base.as_str()), ("EPHEMERA_TOKEN", WEB)];

    let o = run(
        &[
            "lease",
            "acquire",
            "--project",
            "web",
            "--task",
            "t",
            "--owner",
            "a@example.com",
            "--ttl",
            "48h",
        ],
        &env,
    )
    .await;
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o).trim(),
        "error: ttl-above-max (422 Unprocessable Entity): ttl 48h exceeds the max_ttl of 24h for project `web`"
    );

    let o = run(
        &[
            "lease",
            "acquire",
            "--project",
            "data",
            "--task",
            "t",
            "--owner",
            "a@example.com",
        ],
        &env,
    )
    .await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("project-forbidden (403"),
        "{}",
        stderr(&o)
    );

    let o = run(&["lease", "list"], &[("EPHEMERA_ADDR", base.as_str())]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("unauthenticated (401"),
        "{}",
        stderr(&o)
    );

    let o = run(
        &["lease", "show", "0194e0a1-0000-7000-8000-000000000000"],
        &env,
    )
    .await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("lease-not-found (404"),
        "{}",
        stderr(&o)
    );

    // Nothing listens on port 9 of loopback.
    let o = run(
        &["lease", "list"],
        &[
            ("EPHEMERA_ADDR", "http://127.0.0.1:9"),
            ("EPHEMERA_TOKEN", WEB),
        ],
    )
    .await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("cannot reach ephemera at http://127.0.0.1:9"),
        "{}",
        stderr(&o)
    );

    for usage in [
        &["lease", "acquire", "--project", "web"][..],
        &[
            "lease",
            "acquire",
            "--project",
            "web",
            "--task",
            "t",
            "--owner",
            "o",
            "--format",
            "yaml",
        ],
        &[
            "lease",
            "acquire",
            "--project",
            "web",
            "--task",
            "t",
            "--owner",
            "o",
            "--label",
            "novalue",
        ],
        &["no-such-command"],
        &[],
    ] {
        let o = run(usage, &env).await;
        assert_eq!(o.status.code(), Some(2), "{usage:?}: {}", stderr(&o));
    }
    let o = run(&["--help"], &[]).await;
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("lease"));
}

/// `config check` and `config example`: good files pass, bad ones name file, line and field.
#[tokio::test(flavor = "multi_thread")]
async fn config_check() {
    let work = Workdir::new();
    let cfg = work.config_path();
    let cfg = cfg.to_str().expect("utf-8 path");
    let o = run(&["config", "check", "--config", cfg], &[]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with(&format!("ok: {cfg} (5 principals, 2 projects")),
        "{}",
        stdout(&o)
    );

    // The shipped example, as it is, next to the shipped rules.
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/ephemera.example.toml");
    let o = run(&["config", "check", "--config", example], &[]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("enforcement off"));
    let o = run(&["config", "example"], &[]).await;
    assert_eq!(
        stdout(&o),
        std::fs::read_to_string(example).expect("example readable")
    );

    // (replace, with, expected error after the path)
    let text = crate::support::config_text();
    let cases = [
        (
            "max_body_bytes = 4096",
            "max_body_bytes = 4096\nmax_bodybytes = 1",
            ":5:1: unknown field `max_bodybytes`",
        ),
        (
            "scan = \"0 0 1 1 *\"",
            "scan = \"0 0 1 1\"",
            ": field `schedules.scan`: invalid cron expression",
        ),
        (
            "role = \"viewer\"",
            "role = \"watcher\"",
            ": unknown variant `watcher`",
        ),
        (
            "[store]\npath = \"state/ephemera.db\"\n",
            "",
            ": missing field `store`",
        ),
    ];
    for (find, replace, want) in cases {
        assert!(text.contains(find), "fixture lacks {find}");
        std::fs::write(work.config_path(), text.replacen(find, replace, 1)).expect("write config");
        let o = run(&["config", "check", "--config", cfg], &[]).await;
        assert_eq!(o.status.code(), Some(1), "{replace}");
        let err = stderr(&o);
        assert!(err.starts_with(&format!("error: {cfg}:")), "{err}");
        assert!(err.contains(want), "{err} lacks {want}");
    }

    // A bad rules file is caught by config check too, with its own path and line.
    std::fs::write(work.config_path(), &text).expect("write config");
    let policy = work.path().join("rules/policy/projects.toml");
    let rules = std::fs::read_to_string(&policy).expect("policy");
    std::fs::write(
        &policy,
        rules.replacen("max_ttl = \"24h\"", "max_ttl = \"24 hours\"", 1),
    )
    .expect("write policy");
    let o = run(&["config", "check", "--config", cfg], &[]).await;
    assert_eq!(o.status.code(), Some(1));
    let want = format!(
        "{}:6:11: field `project.max_ttl`: invalid duration `24 hours`",
        policy.display()
    );
    assert!(stderr(&o).contains(&want), "{}", stderr(&o));

    // A lessee scoped to a project no policy defines is refused.
    std::fs::write(&policy, &rules).expect("write policy");
    std::fs::write(
        work.config_path(),
        text.replacen("projects = [\"data\"]", "projects = [\"dta\"]", 1),
    )
    .expect("write");
    let o = run(&["config", "check", "--config", cfg], &[]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("principal `ci-data` names project `dta`"),
        "{}",
        stderr(&o)
    );
}

/// A daemon process this test started; killed (by its own handle) if the test fails early.
/// Its stderr is drained by a thread, so a chatty daemon never blocks on a full pipe.
pub(crate) struct DaemonProcess {
    pub(crate) child: Child,
    logs: Option<std::thread::JoinHandle<String>>,
}

impl DaemonProcess {
    /// Waits for the process to exit; returns its status and everything it logged.
    pub(crate) fn wait(&mut self) -> (std::process::ExitStatus, String) {
        let status = self.child.wait().expect("daemon exits");
        let logs = self
            .logs
            .take()
            .map(|h| h.join().expect("log reader joins"))
            .unwrap_or_default();
        (status, logs)
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the real daemon binary with JSON logs; returns it and the address it logged.
pub(crate) fn spawn_daemon(config: &Path) -> (DaemonProcess, String) {
    spawn_daemon_with(config, &[])
}

/// [`spawn_daemon`] with global options (`--log-level trace`, say) before the subcommand.
pub(crate) fn spawn_daemon_with(config: &Path, global: &[&str]) -> (DaemonProcess, String) {
    spawn_daemon_under(&[], config, global)
}

/// [`spawn_daemon_with`] run through `wrapper` (a command that executes its arguments, such
/// as `prlimit --nofile=…`).
pub(crate) fn spawn_daemon_under(
    wrapper: &[&str],
    config: &Path,
    global: &[&str],
) -> (DaemonProcess, String) {
    let mut cmd = match wrapper.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(BIN);
            c
        }
        None => Command::new(BIN),
    };
    let mut child = cmd
        .args(global)
        .args([
            "daemon",
            "--log-format",
            "json",
            "--config",
            config.to_str().expect("utf-8"),
        ])
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("daemon starts");
    let mut err = BufReader::new(child.stderr.take().expect("stderr piped"));
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let logs = std::thread::spawn(move || {
        let mut all = String::new();
        let mut line = String::new();
        let mut tx = Some(tx);
        while err.read_line(&mut line).unwrap_or(0) > 0 {
            if let Some(t) = &tx
                && let Ok(v) = serde_json::from_str::<Value>(&line)
                && v["fields"]["message"] == "ephemera daemon serving"
            {
                let _ = t.send(v["fields"]["addr"].as_str().unwrap_or_default().to_owned());
                tx = None;
            }
            all.push_str(&line);
            line.clear();
        }
        all
    });
    let mut daemon = DaemonProcess {
        child,
        logs: Some(logs),
    };
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(addr) => (daemon, format!("http://{addr}")),
        Err(_) => {
            let _ = daemon.child.kill();
            let (_, logs) = daemon.wait();
            panic!("daemon did not log its address; its log:\n{logs}");
        }
    }
}

/// Started with a soft open-file limit of 256 (as shells and systemd start services, at a
/// lower number), the daemon raises it to `max_connections` + 1024 within the hard limit;
/// with a hard limit too low for that, it raises what it can and warns.
#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_raises_its_open_file_limit_for_its_connections() {
    let soft = |d: &DaemonProcess| -> u64 {
        let limits =
            std::fs::read_to_string(format!("/proc/{}/limits", d.child.id())).expect("limits");
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .expect("open files line");
        line.split_whitespace()
            .nth(3)
            .expect("soft")
            .parse()
            .expect("number")
    };
    let work = Workdir::new();
    let (mut d, _) =
        spawn_daemon_under(&["prlimit", "--nofile=256:20000"], &work.config_path(), &[]);
    assert_eq!(
        soft(&d),
        4096 + 1024,
        "the default max_connections, with room"
    );
    let _ = d.child.kill();
    let (_, logs) = d.wait();
    assert!(logs.contains("raised the open-file limit"), "{logs}");

    let (mut d, _) =
        spawn_daemon_under(&["prlimit", "--nofile=256:2000"], &work.config_path(), &[]);
    assert_eq!(soft(&d), 2000, "up to the hard limit");
    let _ = d.child.kill();
    let (_, logs) = d.wait();
    assert!(
        logs.contains("the open-file limit is below max_connections"),
        "{logs}"
    );
}

/// The daemon binary: JSON logs carry one span per request and the lease id, so one lease
/// can be followed from acquire to release; SIGTERM stops it cleanly.
#[tokio::test(flavor = "multi_thread")]
async fn daemon_binary_logs_json_spans_with_the_lease_id() {
    let work = Workdir::new();
    let (mut child, addr) = spawn_daemon(&work.config_path());
    let env = [("EPHEMERA_ADDR", addr.as_str()), ("EPHEMERA_TOKEN", DATA)];
    let o = run(
        &[
            "lease",
            "acquire",
            "--project",
            "data",
            "--task",
            "nightly",
            "--owner",
            "d@example.com",
            "--output",
            "json",
        ],
        &env,
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let id = serde_json::from_slice::<Value>(&o.stdout).expect("lease json")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let o = run(&["lease", "release", &id], &env).await;
    assert!(o.status.success(), "{}", stderr(&o));

    // SIGTERM: graceful stop, exit 0.
    let pid = child.child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let (status, rest) = child.wait();
    assert_eq!(status.code(), Some(0));
    let lines: Vec<Value> = rest
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let about_lease: Vec<&Value> = lines
        .iter()
        .filter(|l| l["span"]["lease_id"] == id.as_str())
        .collect();
    let messages: Vec<&str> = about_lease
        .iter()
        .filter_map(|l| l["fields"]["message"].as_str())
        .collect();
    assert_eq!(messages, ["lease acquire ok", "lease release ok"], "{rest}");
    for l in &about_lease {
        let spans = l["spans"].as_array().expect("span list");
        assert_eq!(spans[0]["name"], "request", "{l}");
        assert_eq!(spans[0]["principal"], "ci-data", "{l}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "ephemera daemon stopped"),
        "{rest}"
    );
    assert!(!rest.contains(DATA), "a token leaked into the logs");
}

/// The daemon refuses to start on bad config or bad rules, naming the place.
#[tokio::test(flavor = "multi_thread")]
async fn daemon_refuses_bad_config_and_rules() {
    let work = Workdir::new();
    let policy = work.path().join("rules/policy/extra.toml");
    std::fs::write(&policy, "[[project]]\nname = \"web\"\n").expect("write");
    let o = run(
        &[
            "daemon",
            "--config",
            work.config_path().to_str().expect("utf-8"),
        ],
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(&format!(
            "{}:1:1: missing field `lessees`",
            policy.display()
        )),
        "{}",
        stderr(&o)
    );

    // A bad cron in the config: refused with the config's file, line and field.
    std::fs::remove_file(&policy).expect("remove extra policy");
    let text =
        crate::support::config_text().replace("scan = \"0 0 1 1 *\"", "scan = \"every 15m\"");
    std::fs::write(work.config_path(), &text).expect("write config");
    let line = text
        .lines()
        .position(|l| l.contains("every 15m"))
        .expect("marker")
        + 1;
    let o = run(
        &[
            "daemon",
            "--config",
            work.config_path().to_str().expect("utf-8"),
        ],
        &[],
    )
    .await;
    assert_eq!(o.status.code(), Some(1));
    let want = format!(
        "{}:{line}:8: field `schedules.scan`: invalid cron expression `every 15m`",
        work.config_path().display()
    );
    assert!(stderr(&o).contains(&want), "{}", stderr(&o));
}

/// SIGKILL mid-traffic: every lease the API acknowledged is there after a restart, and the
/// store is usable (nothing half-written).
#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_leases_survive_sigkill() {
    let work = Workdir::new();
    let (mut daemon, addr) = spawn_daemon(&work.config_path());
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let url = format!("{addr}/api/v1/leases");
    // Writers keep going while the daemon is killed; only acknowledged ids count.
    let mut writers = Vec::new();
    for w in 0..8 {
        let (http, url) = (http.clone(), url.clone());
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0.. {
                let body = serde_json::json!({"project": "data", "task": format!("w{w}-{i}"), "owner": "k@example.com"});
                match http.post(&url).bearer_auth(DATA).json(&body).send().await {
                    Ok(r) if r.status().as_u16() == 201 => match r.json::<Value>().await {
                        Ok(v) => acked.push(v["id"].as_str().expect("id").to_owned()),
                        Err(_) => break,
                    },
                    _ => break,
                }
            }
            acked
        }));
    }
    // Kill once a good number of leases went through.
    crate::support::eventually(
        "200 leases went through",
        Duration::from_secs(20),
        || async {
            let page: Value = http
                .get(format!("{url}?limit=1000"))
                .bearer_auth(OPERATOR)
                .send()
                .await
                .expect("list")
                .json()
                .await
                .expect("json");
            page["items"].as_array().map_or(0, Vec::len) >= 200
        },
    )
    .await;
    daemon.child.kill().expect("SIGKILL");
    daemon.wait();
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await.expect("writer joins"));
    }
    assert!(
        acked.len() >= 200,
        "only {} leases before the kill",
        acked.len()
    );

    let (_daemon, addr) = spawn_daemon(&work.config_path());
    let mut stored = std::collections::HashSet::new();
    let mut cursor = String::new();
    loop {
        let page: Value = http
            .get(format!("{addr}/api/v1/leases?limit=1000{cursor}"))
            .bearer_auth(OPERATOR)
            .send()
            .await
            .expect("list")
            .json()
            .await
            .expect("json");
        for l in page["items"].as_array().expect("items") {
            stored.insert(l["id"].as_str().expect("id").to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    let lost: Vec<&String> = acked.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged leases lost: {lost:?}",
        lost.len()
    );
    // The restarted daemon writes fine.
    let r = http
        .post(format!("{addr}/api/v1/leases"))
        .bearer_auth(DATA)
        .json(&serde_json::json!({"project": "data", "task": "after", "owner": "k@example.com"}))
        .send()
        .await
        .expect("acquire after restart");
    assert_eq!(r.status().as_u16(), 201);
}

/// `token new` prints a token and its hash; `token hash` reproduces the hash from stdin.
#[tokio::test(flavor = "multi_thread")]
async fn token_new_and_hash_agree() {
    let o = run(&["token", "new"], &[]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].starts_with("eph_") && lines[0].len() > 40, "{out}");
    assert_eq!(lines[1], ephemera::auth::TokenHash::of(lines[0]).to_hex());
    let mut child = tokio::process::Command::new(BIN)
        .args(["token", "hash"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("binary runs");
    let mut stdin = child.stdin.take().expect("stdin piped");
    tokio::io::AsyncWriteExt::write_all(&mut stdin, format!("{}\n", lines[0]).as_bytes())
        .await
        .expect("write token");
    drop(stdin);
    let o = child.wait_with_output().await.expect("hash runs");
    assert_eq!(stdout(&o).trim(), lines[1]);
}

/// At `trace`, every crate logging, the daemon writes no bearer token (nor its hash) while
/// requests with good and bad tokens come and go.
#[tokio::test(flavor = "multi_thread")]
async fn daemon_at_trace_level_never_logs_a_token() {
    let work = Workdir::new();
    let (mut daemon, addr) = spawn_daemon_with(&work.config_path(), &["--log-level", "trace"]);
    let client = reqwest::Client::new();
    let wrong = "not-a-token-0123456789";
    for token in [WEB, OPERATOR, wrong] {
        let r = client
            .post(format!("{addr}/api/v1/leases"))
            .bearer_auth(token)
            .json(&serde_json::json!({"project": "web", "task": "t", "owner": "a@example.com"}))
            .send()
            .await
            .expect("daemon answers");
        assert!(r.status().as_u16() < 500, "{}", r.status());
    }
    let _ = daemon.child.kill();
    let (_, logs) = daemon.wait();
    // Verbose crates log at debug and trace: this run must see below info.
    assert!(
        logs.contains("\"level\":\"TRACE\"") || logs.contains("\"level\":\"DEBUG\""),
        "verbose logging is on:\n{logs}"
    );
    for token in [WEB, OPERATOR, wrong] {
        assert!(!logs.contains(token), "token in the log:\n{logs}");
        let hash = ephemera::auth::TokenHash::of(token).to_hex();
        assert!(!logs.contains(&hash), "token hash in the log");
    }
}

/// `--token-file` (and `EPHEMERA_TOKEN_FILE`) authenticate like `EPHEMERA_TOKEN`, and win over
/// it; an empty or missing file is a clear error.
#[tokio::test(flavor = "multi_thread")]
async fn the_token_can_come_from_a_file() {
    let work = Workdir::new();
    let d = TestDaemon::start(&work).await;
    let base = d.base();
    let file = work.path().join("token");
    std::fs::write(&file, format!("  {WEB}\n")).expect("token file");
    let path = file.to_str().expect("utf-8");
    let list = ["lease", "list"];
    let o = run(
        &[&list[..], &["--token-file", path]].concat(),
        &[
            ("EPHEMERA_ADDR", base.as_str()),
            ("EPHEMERA_TOKEN", "wrong"),
        ],
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(
        &list,
        &[
            ("EPHEMERA_ADDR", base.as_str()),
            ("EPHEMERA_TOKEN_FILE", path),
        ],
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::write(&file, "\n").expect("empty");
    let o = run(
        &list,
        &[
            ("EPHEMERA_ADDR", base.as_str()),
            ("EPHEMERA_TOKEN_FILE", path),
        ],
    )
    .await;
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("is empty"), "{}", stderr(&o));
}
