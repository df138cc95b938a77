//! Lease acquire + release over HTTP on loopback with 64 concurrent clients.
//!
//! Target (issue 2): ≥ 2,000 operations/s with p99 ≤ 20 ms; on PostgreSQL (issue 18), ≥ 5,000
//! operations/s with p99 ≤ 20 ms with one and with three replicas. An operation is one HTTP
//! call (an acquire or a release); the pair rate is printed too. The daemons run in this
//! process (each with its own store handle and pool), on a real on-disk store (SQLite: WAL,
//! synchronous = FULL; PostgreSQL: the server `scripts/with-postgres.sh` starts), so clients,
//! daemons and the database share the cores. Clients go to the replicas in turn.
//!
//! `cargo bench --bench lease_http` (env: BENCH_CLIENTS, BENCH_PAIRS_PER_CLIENT, BENCH_WARMUP,
//! BENCH_STORE=sqlite|postgres, BENCH_REPLICAS, BENCH_PROJECTS; postgres needs
//! EPHEMERA_TEST_POSTGRES and its password variable, as under `scripts/with-postgres.sh`, and
//! figures come with `EPHEMERA_TEST_POSTGRES_FSYNC=on`). The tiny run of `cargo test
//! --benches` does SQLite, and PostgreSQL with three replicas when a server is there.
//!
//! Each client first makes BENCH_WARMUP pairs (default 10; 0 in the tiny run) that are neither
//! timed nor counted, and the clock starts when all have: the replicas open their pools'
//! connections then (a connection's start, a process forked and a SCRAM exchange, costs the
//! server milliseconds of CPU once per replica start), as a replica in service has done long
//! before.
//!
//! BENCH_PROJECTS (default 1) spreads the clients over that many projects, each with its
//! quota. The quota check locks the project; a PostgreSQL replica decides the acquires waiting
//! for it in one batch, whatever their projects, taking each project's lock. The latency of
//! acquires and releases is printed apart too. BENCH_NO_QUOTA=1 leaves the projects without a
//! quota (nor keys), so no acquire takes a lock: what the locks cost, measured.
//!
//! BENCH_DB_DELAY_US (PostgreSQL) puts a proxy between the replicas and the server that holds
//! what it forwards each way that many microseconds: a database further away than loopback,
//! as a managed one is. The proxy's threads share the cores too.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::percentile;
use ephemera::auth::TokenHash;
use ephemera::config::Config;

const TOKEN: &str = "bench-token";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The name of project `i` of the bench.
fn project(i: usize) -> String {
    if i == 0 {
        "bench".to_owned()
    } else {
        format!("bench{i}")
    }
}

fn write_workdir(dir: &std::path::Path, store: &str, projects: usize) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("rules/policy")).expect("mkdir rules");
    // BENCH_NO_QUOTA: projects without a quota, so no acquire takes a project's lock.
    let quota = match std::env::var_os("BENCH_NO_QUOTA") {
        Some(_) => "",
        None => "max_active_leases = 10000\n",
    };
    let policy: String = (0..projects)
        .map(|i| {
            format!(
                "[[project]]\nname = \"{}\"\nlessees = [\"*\"]\ndefault_ttl = \"1h\"\nmax_ttl = \"1d\"\ngrace = \"1h\"\n{}",
                project(i),
                quota
            )
        })
        .collect();
    std::fs::write(dir.join("rules/policy/bench.toml"), policy).expect("write policy");
    let config = format!(
        r#"
[api]
listen = "127.0.0.1:0"
[[api.principals]]
name = "bench"
role = "lessee"
projects = [{projects}]
token_sha256 = "{}"
{store}
[rules]
dir = "rules"
[aws]
regions = ["us-east-1"]
[[aws.accounts]]
id = "123456789012"
[schedules]
scan = "*/15 * * * *"
cost = "0 6 * * *"
"#,
        TokenHash::of(TOKEN).to_hex(),
        projects = (0..projects)
            .map(|i| format!("\"{}\"", project(i)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let path = dir.join("ephemera.toml");
    std::fs::write(&path, config).expect("write config");
    path
}

fn main() {
    // `cargo test --benches` runs benches with --bench absent; do a tiny run then.
    let quick = !std::env::args().any(|a| a == "--bench");
    let clients = env_usize("BENCH_CLIENTS", 64);
    let pairs = if quick {
        2
    } else {
        env_usize("BENCH_PAIRS_PER_CLIENT", 250)
    };
    let warmup = if quick {
        0
    } else {
        env_usize("BENCH_WARMUP", 10)
    };
    let have_postgres = std::env::var("EPHEMERA_TEST_POSTGRES").is_ok();
    let runs: Vec<(bool, usize)> = match std::env::var("BENCH_STORE").as_deref() {
        Ok("postgres") => vec![(true, env_usize("BENCH_REPLICAS", 1))],
        Ok("sqlite") => vec![(false, 1)],
        _ if quick && have_postgres => vec![(false, 1), (true, 3)],
        _ => vec![(false, 1)],
    };
    let projects = env_usize("BENCH_PROJECTS", 1).max(1);
    for (postgres, replicas) in runs {
        run(postgres, replicas, clients, (warmup, pairs), projects);
    }
}

/// `pairs`: untimed (warm-up) and timed pairs per client.
fn run(
    postgres: bool,
    replicas: usize,
    clients: usize,
    (warmup, pairs): (usize, usize),
    projects: usize,
) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // The store lives on the real disk next to the build, not in a tmpfs.
    let base = std::env::var("CARGO_TARGET_TMPDIR")
        .unwrap_or_else(|_| std::env::temp_dir().display().to_string());
    let dir = tempfile::tempdir_in(base).expect("temp dir");

    rt.block_on(async move {
        let store = common::store_sections(postgres, dir.path()).await;
        let config_path = write_workdir(dir.path(), &store, projects);
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(clients)
            .build()
            .expect("client");
        let mut servers = Vec::new();
        let mut urls = Vec::new();
        for _ in 0..replicas {
            let config = Config::load(&config_path).expect("bench config");
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("addr");
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
            let server = tokio::spawn(ephemera::daemon::run(config, listener, async {
                let _ = stop_rx.await;
            }));
            // Wait until the API answers.
            for _ in 0..500 {
                if http.get(format!("http://{addr}/readyz")).send().await.is_ok() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            servers.push((stop_tx, server));
            urls.push(Arc::new(format!("http://{addr}/api/v1/leases")));
        }

        let warm = Arc::new(tokio::sync::Barrier::new(clients));
        let start = Arc::new(std::sync::OnceLock::new());
        let mut tasks = Vec::with_capacity(clients);
        for c in 0..clients {
            let http = http.clone();
            let url = urls[c % replicas].clone();
            let project = project(c % projects);
            let (warm, start) = (warm.clone(), start.clone());
            tasks.push(tokio::spawn(async move {
                // (acquire, release) latencies.
                let mut lat = (Vec::with_capacity(pairs), Vec::with_capacity(pairs));
                for i in 0..warmup + pairs {
                    if i == warmup {
                        if warm.wait().await.is_leader() {
                            start.set(Instant::now()).expect("started once");
                        }
                        lat.0.clear();
                        lat.1.clear();
                    }
                    let body = format!(r#"{{"project":"{project}","task":"c{c}-{i}","owner":"bench@example.com"}}"#);
                    let t = Instant::now();
                    let resp = http
                        .post(url.as_str())
                        .bearer_auth(TOKEN)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await
                        .expect("acquire sent");
                    assert_eq!(resp.status().as_u16(), 201, "acquire failed");
                    let v: serde_json::Value = resp.json().await.expect("lease json");
                    lat.0.push(t.elapsed());
                    let id = v["id"].as_str().expect("id").to_owned();
                    let t = Instant::now();
                    let resp = http
                        .post(format!("{url}/{id}/release"))
                        .bearer_auth(TOKEN)
                        .send()
                        .await
                        .expect("release sent");
                    assert_eq!(resp.status().as_u16(), 200, "release failed");
                    let _ = resp.bytes().await;
                    lat.1.push(t.elapsed());
                }
                lat
            }));
        }
        let (mut acquires, mut releases) = (Vec::new(), Vec::new());
        for t in tasks {
            let (a, r) = t.await.expect("client task");
            acquires.extend(a);
            releases.extend(r);
        }
        let elapsed = start.get().expect("started").elapsed();
        let mut all: Vec<Duration> = acquires.iter().chain(&releases).copied().collect();
        all.sort();
        acquires.sort();
        releases.sort();
        let ops = all.len() as f64 / elapsed.as_secs_f64();
        let on = match (postgres, projects) {
            (true, 1) => format!("PostgreSQL, {replicas} replica(s)"),
            (true, p) => format!("PostgreSQL, {replicas} replica(s), {p} projects"),
            (false, 1) => "SQLite".to_owned(),
            (false, p) => format!("SQLite, {p} projects"),
        };
        println!(
            "lease_http ({on}): {clients} clients, {} acquire+release pairs in {:.2} s",
            all.len() / 2,
            elapsed.as_secs_f64()
        );
        println!(
            "lease_http ({on}): {:.0} operations/s ({:.0} pairs/s); latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            ops,
            ops / 2.0,
            percentile(&all, 0.50).as_secs_f64() * 1e3,
            percentile(&all, 0.99).as_secs_f64() * 1e3,
            all.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
        );
        println!(
            "lease_http ({on}): acquire p50 {:.2} ms, p99 {:.2} ms; release p50 {:.2} ms, p99 {:.2} ms",
            percentile(&acquires, 0.50).as_secs_f64() * 1e3,
            percentile(&acquires, 0.99).as_secs_f64() * 1e3,
            percentile(&releases, 0.50).as_secs_f64() * 1e3,
            percentile(&releases, 0.99).as_secs_f64() * 1e3,
        );
        for (stop_tx, server) in servers {
            let _ = stop_tx.send(());
            server.await.expect("server joins").expect("server ran");
        }
    });
}
