//! PostgreSQL for the tests: a fresh database on the shared throwaway server that
//! `scripts/with-postgres.sh` starts (and `make test` runs under), or a server of one test's
//! own to stop and start under a daemon.

use std::path::{Path, PathBuf};

/// The environment variable the test configs name as `password_env`.
pub const PASSWORD_ENV: &str = "EPHEMERA_TEST_POSTGRES_PASSWORD";

/// The URL (without password) of a new, empty database on the shared test server.
pub async fn fresh_database() -> String {
    let url = std::env::var("EPHEMERA_TEST_POSTGRES").expect(
        "EPHEMERA_TEST_POSTGRES is not set: run the tests with `make test` (or under \
         scripts/with-postgres.sh), which starts a throwaway PostgreSQL",
    );
    let mut config: tokio_postgres::Config = url.parse().expect("test server URL");
    if let Ok(p) = std::env::var(PASSWORD_ENV) {
        config.password(p);
    }
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .expect("the test PostgreSQL server answers");
    tokio::spawn(connection);
    let db = format!("it_{}", uuid::Uuid::new_v4().simple());
    client
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .await
        .expect("creates the test database");
    let base = url.rsplit_once('/').expect("URL with a database").0;
    format!("{base}/{db}")
}

/// The `[store]` and `[audit]` sections of a replica's config: the database `url`, the
/// password from [`PASSWORD_ENV`], and one audit key file all replicas share.
pub fn store_sections(url: &str, key_file: &Path) -> String {
    if !key_file.exists() {
        std::fs::write(key_file, "3c".repeat(32)).expect("writes the audit key");
    }
    format!(
        "[store]\nurl = \"{url}\"\npassword_env = \"{PASSWORD_ENV}\"\n\n[audit]\nkey_file = \"{}\"\n",
        key_file.display()
    )
}

/// A PostgreSQL server of one test's own (trust authentication on loopback), from Debian's
/// binaries; stopped when dropped.
pub struct PrivateServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
}

impl PrivateServer {
    pub fn start() -> PrivateServer {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("Debian's postgresql package (scripts/setup-peers.sh installs it)")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|b| b.join("initdb").exists())
            .max()
            .expect("an initdb under /usr/lib/postgresql");
        let dir = tempfile::tempdir().expect("temp dir");
        if as_root() {
            run("chown", &["postgres", &dir.path().display().to_string()]);
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let server = PrivateServer { dir, bin, port };
        server.as_postgres(
            "initdb",
            &[
                "-D",
                &server.data(),
                "-U",
                "ephemera",
                "--auth=trust",
                "--no-locale",
            ],
        );
        server.start_again();
        server
    }

    /// A server that takes TLS only (a plain connection is rejected), presenting `cert`
    /// (for 127.0.0.1 and localhost) with `key`.
    pub fn start_tls(cert: &Path, key: &Path) -> PrivateServer {
        let server = PrivateServer::start();
        server.stop();
        let data = PathBuf::from(server.data());
        std::fs::copy(cert, data.join("server.crt")).expect("copies the certificate");
        std::fs::copy(key, data.join("server.key")).expect("copies the key");
        let mut conf = std::fs::read_to_string(data.join("postgresql.conf")).expect("conf");
        conf.push_str("\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        std::fs::write(data.join("postgresql.conf"), conf).expect("conf");
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n",
        )
        .expect("hba");
        let key = data.join("server.key").display().to_string();
        run("chmod", &["600", &key]);
        if as_root() {
            run("chown", &["-R", "postgres", &server.data()]);
        }
        server.start_again();
        server
    }

    /// What `psql` prints for `sql` (unaligned, tuples only), over TLS.
    pub fn psql(&self, sql: &str) -> String {
        let out = std::process::Command::new(self.bin.join("psql"))
            .arg(format!(
                "host=127.0.0.1 port={} user=ephemera dbname=postgres sslmode=require",
                self.port
            ))
            .args(["-At", "-c", sql])
            .output()
            .expect("psql runs");
        assert!(
            out.status.success(),
            "psql: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// `postgres://ephemera@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://ephemera@127.0.0.1:{}/postgres", self.port)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn as_postgres(&self, tool: &str, args: &[&str]) {
        let tool = self.bin.join(tool).display().to_string();
        if as_root() {
            let mut all = vec!["-u", "postgres", "--", &tool];
            all.extend_from_slice(args);
            run("runuser", &all);
        } else {
            run(&tool, args);
        }
    }

    pub fn start_again(&self) {
        let log = self.dir.path().join("log").display().to_string();
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        self.as_postgres(
            "pg_ctl",
            &["-D", &self.data(), "-l", &log, "-w", "start", "-o", &opts],
        );
    }

    /// Stops the server at once (`-m immediate`: no clean shutdown, as a crash).
    pub fn stop(&self) {
        self.as_postgres(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        if Path::new(&self.data()).join("postmaster.pid").exists() {
            self.stop();
        }
    }
}

fn as_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn run(cmd: &str, args: &[&str]) {
    let out = std::process::Command::new(cmd)
        .args(args)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
