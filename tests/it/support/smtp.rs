//! A real SMTP server per test: `tests/peers/smtp_server.py` (aiosmtpd from the test
//! virtualenv) on a free loopback port, keeping every accepted message as a JSON file that
//! Python's own `email` package parsed.
//!
//! Architecture Invariant: the server listens on 127.0.0.1 only; each `Smtp` owns one child
//! process at a time and kills only that child (on `stop` and on drop).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;
use tempfile::TempDir;

use crate::support::moto::free_port;
use crate::support::seed::python;

/// How long to wait for the server to start or for messages to arrive.
const WAIT: Duration = Duration::from_secs(30);

/// One message as the server received and parsed it.
#[derive(Debug, Clone, Deserialize)]
pub struct Received {
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    pub subject: String,
    pub message_id: String,
    pub kind: Option<String>,
    pub content_type: String,
    pub text: Option<String>,
    pub html: Option<String>,
    pub tls: bool,
    pub auth: Option<String>,
}

impl Received {
    pub fn text(&self) -> &str {
        self.text.as_deref().unwrap_or_default()
    }

    pub fn html(&self) -> &str {
        self.html.as_deref().unwrap_or_default()
    }

    pub fn kind(&self) -> &str {
        self.kind.as_deref().unwrap_or_default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    None,
    Starttls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Implicit,
}

/// A running (or stopped) SMTP server; its port, messages and certificates outlive restarts.
#[derive(Debug)]
pub struct Smtp {
    child: Option<Child>,
    pub port: u16,
    tls: Tls,
    auth: Option<(String, String)>,
    dir: TempDir,
    /// Recipients ending with this are refused for good (550).
    refuse: Option<String>,
}

impl Smtp {
    /// A plain server (no TLS, no AUTH).
    pub fn plain() -> Smtp {
        Smtp::start(Tls::None, None)
    }

    /// STARTTLS required, then AUTH with `user`/`password`.
    pub fn starttls_auth(user: &str, password: &str) -> Smtp {
        Smtp::start(Tls::Starttls, Some((user.into(), password.into())))
    }

    pub fn start(tls: Tls, auth: Option<(String, String)>) -> Smtp {
        let mut s = Smtp::stopped(tls, auth);
        s.restart();
        s
    }

    /// Picks a port but does not start the server (a relay that is down).
    pub fn stopped(tls: Tls, auth: Option<(String, String)>) -> Smtp {
        let dir = tempfile::tempdir().expect("temp dir for the SMTP server");
        Smtp {
            child: None,
            port: free_port(),
            tls,
            auth,
            dir,
            refuse: None,
        }
    }

    /// A plain server that answers 550 to every recipient ending with `suffix`.
    pub fn refusing(suffix: &str) -> Smtp {
        let mut s = Smtp::stopped(Tls::None, None);
        s.refuse = Some(suffix.into());
        s.restart();
        s
    }

    /// Starts the server (again) on its port, with the same message and certificate dirs.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "server already running");
        let python = python();
        assert!(
            python.is_file(),
            "{} not found: run `make test` (it creates the virtualenv with aiosmtpd)",
            python.display()
        );
        let deadline = Instant::now() + WAIT;
        loop {
            let mut cmd = Command::new(&python);
            cmd.arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/peers/smtp_server.py"
            ))
            .args(["--port", &self.port.to_string()])
            .arg("--dir")
            .arg(self.messages_dir());
            if self.tls != Tls::None {
                cmd.args(["--tls", self.tls_name(), "--cert-dir"])
                    .arg(self.dir.path().join("certs"));
            }
            if let Some((u, p)) = &self.auth {
                cmd.args(["--auth", &format!("{u}:{p}")]);
            }
            if let Some(r) = &self.refuse {
                cmd.args(["--refuse", r]);
            }
            let mut child = cmd
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("the SMTP server starts");
            let out = child.stdout.take().expect("stdout piped");
            let mut line = String::new();
            // READY, or EOF when it could not start (the port taken again, say).
            let _ = BufReader::new(out).read_line(&mut line);
            if line.trim() == "READY" {
                self.child = Some(child);
                return;
            }
            let _ = child.kill();
            let output = child.wait_with_output().expect("server exits");
            assert!(
                Instant::now() < deadline,
                "SMTP server on port {} did not start: {}",
                self.port,
                String::from_utf8_lossy(&output.stderr)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills the server (SIGKILL): the relay is down until `restart`.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn messages_dir(&self) -> PathBuf {
        self.dir.path().join("messages")
    }

    /// The CA certificate the client must trust (STARTTLS servers).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("certs/ca.pem")
    }

    /// Every message received so far, in arrival order.
    pub fn messages(&self) -> Vec<Received> {
        let Ok(entries) = std::fs::read_dir(self.messages_dir()) else {
            return Vec::new();
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|f| {
                serde_json::from_str(&std::fs::read_to_string(f).expect("message file"))
                    .expect("message json")
            })
            .collect()
    }

    /// Waits until at least `n` messages arrived; returns all of them.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = Instant::now() + WAIT;
        loop {
            let m = self.messages();
            if m.len() >= n {
                return m;
            }
            assert!(
                Instant::now() < deadline,
                "{n} messages expected, {} arrived: {m:#?}",
                m.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The server's `--tls` and the config's `tls` value alike.
    fn tls_name(&self) -> &'static str {
        match self.tls {
            Tls::None => "none",
            Tls::Starttls => "starttls",
            Tls::Implicit => "implicit",
        }
    }

    /// An `[smtp]` section for this server; `extra` lines are appended.
    pub fn section(&self, extra: &str) -> String {
        let tls = self.tls_name();
        format!(
            "[smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"{tls}\"\nfrom = \"ephemera@example.com\"\ntimeout = \"10s\"\n{extra}\n",
            self.port
        )
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        self.stop();
    }
}
