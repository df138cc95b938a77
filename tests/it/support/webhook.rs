//! A real webhook receiver per test: `tests/peers/webhook_receiver.py` (Python's own `hmac`
//! and `json`, written apart from the sender) on a free loopback port, keeping every request
//! it received, with its verdict on the signature and the CloudEvents shape, as a JSON file.
//!
//! Architecture Invariant: the receiver listens on 127.0.0.1 only; each `Receiver` owns one
//! child process at a time and kills only that child (on `stop` and on drop).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use crate::support::moto::free_port;
use crate::support::seed::python;

pub struct Receiver {
    pub port: u16,
    /// Plays a Slack incoming webhook (Block Kit checked, no signature).
    slack: bool,
    dir: TempDir,
    status: Option<u16>,
    child: Option<Child>,
}

impl Receiver {
    /// A receiver signing with `secret`, running.
    pub fn start(secret: &str) -> Receiver {
        let mut r = Receiver::stopped(secret);
        r.restart();
        r
    }

    /// A Slack incoming webhook, running: it checks each body against Block Kit's limits.
    pub fn start_slack() -> Receiver {
        let mut r = Receiver::stopped_slack();
        r.restart();
        r
    }

    /// A Slack incoming webhook not yet running.
    pub fn stopped_slack() -> Receiver {
        let mut r = Receiver::stopped("unused");
        r.slack = true;
        r
    }

    /// A receiver not yet running (its port and secret fixed).
    pub fn stopped(secret: &str) -> Receiver {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("secret"), secret).expect("write secret");
        Receiver {
            port: free_port(),
            slack: false,
            dir,
            status: None,
            child: None,
        }
    }

    /// Answers `status` to every request from the next start on.
    pub fn answering(&mut self, status: Option<u16>) {
        self.status = status;
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "receiver already running");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut cmd = Command::new(python());
            cmd.arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/peers/webhook_receiver.py"
            ))
            .args(["--port", &self.port.to_string()])
            .arg("--dir")
            .arg(self.dir.path().join("received"));
            if self.slack {
                cmd.arg("--slack");
            } else {
                cmd.arg("--secret-file").arg(self.dir.path().join("secret"));
            }
            if let Some(s) = self.status {
                cmd.args(["--status", &s.to_string()]);
            }
            let mut child = cmd
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("the webhook receiver starts");
            let mut line = String::new();
            let _ = BufReader::new(child.stdout.take().expect("stdout piped")).read_line(&mut line);
            if line.trim() == "READY" {
                self.child = Some(child);
                return;
            }
            let _ = child.kill();
            let out = child.wait_with_output().expect("receiver exits");
            assert!(
                Instant::now() < deadline,
                "webhook receiver on port {} did not start: {}",
                self.port,
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills the receiver (SIGKILL): the endpoint is down until `restart`.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Every request received so far, in arrival order: `{ok, why, event, signature, path}`.
    pub fn received(&self) -> Vec<Value> {
        let dir: PathBuf = self.dir.path().join("received");
        let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|d| {
                d.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| {
                        p.extension().is_some_and(|x| x == "json")
                            && !p
                                .file_name()
                                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                    })
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
            .iter()
            .map(|p| {
                serde_json::from_str(&std::fs::read_to_string(p).expect("read"))
                    .expect("a record is JSON")
            })
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}
