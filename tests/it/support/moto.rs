//! A moto server per test: the AWS emulator every AWS-facing test talks to.
//!
//! Architecture Invariant: a `Moto` only ever points SDK clients at its own loopback port, with
//! static dummy credentials; nothing here reads the environment's credentials or reaches real AWS.
//! Each `Moto` owns exactly one child process and kills only that child when dropped.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sts::config::Credentials;
use tempfile::TempDir;

/// The account moto answers for when a request carries no assumed-role credentials.
pub const DEFAULT_ACCOUNT: &str = "123456789012";

/// How long a fresh moto server may take to answer HTTP; it usually needs well under a second.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const READY_POLL: Duration = Duration::from_millis(50);

/// Attempts at starting, each on a freshly picked port, in case another process takes the port
/// between our probe and moto's bind.
const START_ATTEMPTS: usize = 3;

/// A running moto server on a loopback port of its own, killed on drop.
#[derive(Debug)]
pub struct Moto {
    child: Child,
    port: u16,
    log_path: PathBuf,
    // Holds the log file's directory until the server is gone.
    _dir: TempDir,
}

impl Moto {
    /// Starts a moto server and waits until it answers HTTP.
    ///
    /// Panics (with the server's log) if the virtualenv is missing or the server never gets ready.
    pub async fn start() -> Moto {
        let binary = server_binary();
        assert!(
            binary.is_file(),
            "moto server not found at {}: run `make test` (it creates the virtualenv with \
             moto[server]) or point EPHEMERA_MOTO_SERVER at a moto_server binary",
            binary.display()
        );
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("a reqwest client with default TLS settings builds");

        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            match Self::try_start(&binary, &http).await {
                Ok(moto) => return moto,
                Err(failure) => failures.push(failure),
            }
        }
        panic!(
            "moto server did not start after {START_ATTEMPTS} attempts:\n{}",
            failures.join("\n")
        );
    }

    /// One attempt: spawn on a free port and poll until ready. `Err` carries the reason and log
    /// when the child exited early (e.g. it lost the port); a timeout panics right away.
    async fn try_start(binary: &Path, http: &reqwest::Client) -> Result<Moto, String> {
        let dir = tempfile::tempdir().expect("creating a temp dir for the moto log");
        let log_path = dir.path().join("moto.log");
        let log = File::create(&log_path).expect("creating the moto log file");
        let port = free_port();
        let child = Command::new(binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("cloning the moto log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", binary.display()));
        // From here on `Drop` cleans up the child, whichever way this attempt ends.
        let mut moto = Moto {
            child,
            port,
            log_path,
            _dir: dir,
        };

        let ready_url = format!("{}/moto-api/", moto.endpoint());
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = moto
                .child
                .try_wait()
                .expect("polling the moto child's status")
            {
                return Err(format!(
                    "moto on port {port} exited early ({status}); log:\n{}",
                    moto.log()
                ));
            }
            if let Ok(response) = http.get(&ready_url).send().await
                && response.status().is_success()
            {
                return Ok(moto);
            }
            assert!(
                Instant::now() < deadline,
                "moto on port {port} not ready after {READY_TIMEOUT:?}; log:\n{}",
                moto.log()
            );
            tokio::time::sleep(READY_POLL).await;
        }
    }

    /// The base URL, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// SDK config for clients of this server: its endpoint, `region`, and the static dummy
    /// credentials `testing`/`testing`, so neither the environment's credentials nor a
    /// FIPS/dual-stack setting can leak in.
    pub async fn sdk_config(&self, region: &str) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(self.endpoint())
            .region(Region::new(region.to_owned()))
            .credentials_provider(Credentials::new(
                "testing",
                "testing",
                None,
                None,
                "moto-test",
            ))
            .use_fips(false)
            .use_dual_stack(false)
            .load()
            .await
    }

    /// Forgets every resource in every account and region of this server.
    pub async fn reset(&self) {
        let response = reqwest::Client::new()
            .post(format!("{}/moto-api/reset", self.endpoint()))
            .send()
            .await
            .expect("sending the moto reset request");
        assert!(
            response.status().is_success(),
            "moto reset answered {}; log:\n{}",
            response.status(),
            self.log()
        );
    }

    /// Everything the server wrote to stdout and stderr so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path)
            .unwrap_or_else(|e| format!("<cannot read {}: {e}>", self.log_path.display()))
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        // The child may already have exited; either way reap it so no zombie outlives the test.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The moto_server binary: `EPHEMERA_MOTO_SERVER`, else the project's virtualenv.
fn server_binary() -> PathBuf {
    std::env::var_os("EPHEMERA_MOTO_SERVER").map_or_else(
        || {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/.venv/bin/moto_server"
            ))
        },
        PathBuf::from,
    )
}

/// A loopback port that was free a moment ago (the OS picks it; we release it for the peer).
pub(crate) fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
    listener
        .local_addr()
        .expect("a bound listener has a local address")
        .port()
}
