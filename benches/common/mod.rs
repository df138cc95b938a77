//! Shared by the audit-pass benchmarks (`evaluate`, `pipeline`, `pass_vs_awscli`): a
//! deterministic synthetic world (policy, leases, resources by index), the evaluate-and-record
//! step of a pass, and readers of this process's memory and per-thread CPU time.
//!
//! Each bench compiles this module on its own, so not every bench uses every item.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use chrono::{DateTime, TimeDelta, Utc};
use ephemera::model::IdentityTags;
use ephemera::model::Lease;
use ephemera::model::{HumanDuration, LeaseId, ProjectName, Source, Tags, Verdict};
use ephemera::policy::Policy;
use ephemera::resource::{Observed, Record};

pub const ACCOUNT: &str = "123456789012";
pub const REGION: &str = "us-east-1";
pub const PROJECTS: usize = 20;

/// splitmix64: a fixed, dependency-free mix, so resource `i` is the same in every run and
/// a page can be generated on its own.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The rules the benches evaluate against: the repository's defaults (warning window, default
/// actions, one allowlisted bucket) plus twenty projects with their own rules, and an allowlist
/// with a prefix entry matching the 1% of synthetic resources named `vol-golden…` (an id moto
/// never makes, so seeded volumes stay out of it).
pub fn policy_text() -> String {
    let mut s = String::from(
        r#"[defaults]
warning_window = "1h"
grace = "24h"

[defaults.on]
expiring = { action = "notify" }
expired = { action = "notify" }
released = { action = "notify" }
unknown-lease = { action = "notify", grace = "48h" }
untagged = { action = "report" }

[[allow]]
arn = "arn:aws:s3:::ephemera-shared-terraform-state"
reason = "shared Terraform state bucket used by every preview environment"
expires = "2099-06-30"

[[allow]]
arn = "arn:aws:ec2:us-east-1:123456789012:volume/vol-golden*"
reason = "shared golden volumes"
expires = "2099-06-30"
"#,
    );
    for n in 0..8 {
        s.push_str(&format!(
            "\n[[allow]]\narn = \"arn:aws:dynamodb:us-east-1:123456789012:table/shared-{n}\"\nreason = \"shared table\"\nexpires = \"2099-06-30\"\n"
        ));
    }
    for p in 0..PROJECTS {
        s.push_str(&format!(
            "\n[[project]]\nname = \"p{p:02}\"\nlessees = [\"*\"]\ndefault_ttl = \"2h\"\nmax_ttl = \"3d\"\ngrace = \"{}h\"\nmax_active_leases = 100000\n",
            1 + p % 12
        ));
        if p % 2 == 0 {
            s.push_str("warning_window = \"30m\"\n");
        }
        if p % 3 == 0 {
            s.push_str("\n[project.on]\nexpired = { action = \"reap\" }\nreleased = { action = \"reap\", grace = \"15m\" }\n");
        }
    }
    s
}

pub fn policy() -> Policy {
    let text = policy_text();
    Policy::parse([(Path::new("bench/policy.toml"), text.as_str())]).expect("bench policy parses")
}

/// `n` leases at `now`: 75% active, 5% ending within the warning window, 10% expired (half of
/// them by a missed heartbeat), 10% released.
pub fn leases(n: usize, now: DateTime<Utc>) -> Vec<Lease> {
    (0..n)
        .map(|i| {
            let h = mix(i as u64 ^ 0x1ea5e);
            let project = ProjectName::parse(&format!("p{:02}", i % PROJECTS)).expect("valid");
            let mut l = Lease {
                id: LeaseId::generate(),
                project,
                task: format!("pipeline {} / build", i % 5000),
                owner: format!("ci-bot-{}@example.com", i % 50),
                principal: "bench".into(),
                created_at: now - TimeDelta::hours(1),
                expires_at: now + TimeDelta::minutes(120 + (h % 1320) as i64),
                heartbeat_interval: None,
                last_heartbeat_at: None,
                released_at: None,
                labels: BTreeMap::new(),
                regions: vec![REGION.into()],
            };
            if i % 4 == 0 {
                l.labels.insert("pr".into(), format!("{}", 1000 + i % 9000));
            }
            match (h >> 32) % 100 {
                0..75 => {}
                75..80 => l.expires_at = now + TimeDelta::minutes(5 + (h % 20) as i64),
                80..85 => l.expires_at = now - TimeDelta::minutes(1 + (h % 600) as i64),
                85..90 => {
                    l.heartbeat_interval = Some(HumanDuration::from_secs(300));
                    l.last_heartbeat_at = Some(now - TimeDelta::minutes(20));
                }
                _ => l.released_at = Some(now - TimeDelta::minutes(1 + (h % 600) as i64)),
            }
            l
        })
        .collect()
}

/// Leases keyed by id, as the scan task holds them.
pub fn lease_map(leases: Vec<Lease>) -> HashMap<LeaseId, Lease> {
    leases.into_iter().map(|l| (l.id, l)).collect()
}

/// One synthetic resource: its ARN and tags (identity tags plus `Name`).
#[derive(Debug)]
pub struct Synth {
    pub arn: String,
    pub tags: Vec<(&'static str, String)>,
}

/// Resource `i`. `lease_ids` are the ids the lease tags name. Mix: 85% carry a known lease
/// (the verdict then follows the lease's state), 5% an unknown lease id, 4% no tags, 3% lack
/// the owner tag, 2% carry the protect tag, 1% are allowlisted by ARN prefix. With
/// `volumes_only`, every ARN is an EC2 volume (what the tagging-API pages hold in the
/// pipeline benches); otherwise types vary.
pub fn resource(i: u64, lease_ids: &[String], volumes_only: bool) -> Synth {
    let h = mix(i);
    let kind = h % 100;
    let arn = if kind == 14 {
        format!("arn:aws:ec2:{REGION}:{ACCOUNT}:volume/vol-golden{i:016x}")
    } else if volumes_only {
        format!("arn:aws:ec2:{REGION}:{ACCOUNT}:volume/vol-0{i:016x}")
    } else {
        match i % 8 {
            0..=2 => format!("arn:aws:ec2:{REGION}:{ACCOUNT}:volume/vol-0{i:016x}"),
            3..=4 => format!("arn:aws:ec2:{REGION}:{ACCOUNT}:instance/i-0{i:016x}"),
            5 => format!("arn:aws:s3:::preview-artifacts-{i}"),
            6 => format!("arn:aws:sqs:{REGION}:{ACCOUNT}:preview-jobs-{i}"),
            _ => format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/preview-{i}"),
        }
    };
    if (5..9).contains(&kind) {
        return Synth { arn, tags: vec![] };
    }
    let lease = if kind < 5 {
        // Well-formed, but in no registry.
        format!(
            "0194e0a1-{:04x}-7000-8000-{:012x}",
            h >> 48,
            i & 0xffff_ffff_ffff
        )
    } else {
        lease_ids[((h >> 20) % lease_ids.len() as u64) as usize].clone()
    };
    let mut tags = vec![
        ("ephemera:lease-id", lease),
        (
            "ephemera:project",
            format!("p{:02}", (h >> 8) % PROJECTS as u64),
        ),
        (
            "ephemera:task",
            format!("pipeline {} / build", (h >> 12) % 5000),
        ),
        ("Name", format!("preview-{i}")),
    ];
    if kind != 9 && kind != 10 && kind != 11 {
        tags.push((
            "ephemera:owner",
            format!("ci-bot-{}@example.com", (h >> 16) % 50),
        ));
    }
    if kind == 12 || kind == 13 {
        tags.push(("ephemera:protect", "true".into()));
    }
    Synth { arn, tags }
}

impl Synth {
    pub fn packed_tags(&self) -> Tags {
        Tags::from_pairs(self.tags.iter().map(|(k, v)| (*k, v.as_str())))
    }

    /// As a walk would hand it over.
    pub fn observed(&self) -> Observed {
        let arn = ephemera::model::Arn::parse(&self.arn).expect("synthetic ARNs are valid");
        Observed {
            account: ACCOUNT.into(),
            region: REGION.into(),
            resource_type: arn.resource_type(),
            arn,
            tags: self.packed_tags(),
            state: None,
            source: Source::Tagging,
            created_at: None,
            image: None,
        }
    }
}

/// Verdict counts, indexed like [`Verdict::ALL`].
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts(pub [u64; Verdict::ALL.len()]);

impl Counts {
    pub fn add(&mut self, v: Verdict) {
        self.0[v as usize] += 1;
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    pub fn line(&self) -> String {
        Verdict::ALL
            .iter()
            .zip(self.0)
            .map(|(v, n)| format!("{v} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The scan task's per-page step (`ephemera::tasks::evaluate_page`), with the verdicts counted
/// (terminated instances left out, as the scan does).
pub fn evaluate_page(
    page: Vec<Observed>,
    leases: &HashMap<LeaseId, Lease>,
    policy: &Policy,
    keys: &IdentityTags,
    now: DateTime<Utc>,
    counts: &mut Counts,
) -> Vec<Record> {
    let records = ephemera::tasks::evaluate_page(page, leases, policy, keys, &[], now);
    for r in records.iter().filter(|r| !r.observed.is_terminated()) {
        counts.add(r.verdict);
    }
    records
}

/// A `VmXxx:` figure of /proc/self/status, in kB.
pub fn status_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

pub fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

/// Kernel clock ticks per second for /proc's CPU times (USER_HZ, 100 on Linux everywhere
/// that matters; `getconf CLK_TCK`).
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU seconds (user + system) used so far by each live thread of this process, by
/// (thread name, thread id).
pub fn thread_cpu() -> BTreeMap<(String, u32), f64> {
    let mut out = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for t in tasks.flatten() {
        let Some(tid) = t.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid … field 14 utime, 15 stime; comm may hold spaces.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_owned();
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        let ticks: u64 = [11, 12]
            .iter()
            .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
            .sum();
        out.insert((name, tid), ticks as f64 / TICKS_PER_SECOND);
    }
    out
}

/// CPU seconds spent between two [`thread_cpu`] snapshots, summed by thread name, largest
/// first, as `name 1.23 s` items (under 0.05 s left out). A thread that ended in between is
/// not counted; one that started in between counts in full.
pub fn cpu_split(
    before: &BTreeMap<(String, u32), f64>,
    after: &BTreeMap<(String, u32), f64>,
) -> String {
    let mut by_name: BTreeMap<&str, f64> = BTreeMap::new();
    for (k, a) in after {
        *by_name.entry(k.0.as_str()).or_default() += a - before.get(k).copied().unwrap_or(0.0);
    }
    let mut v: Vec<(&str, f64)> = by_name.into_iter().filter(|(_, d)| *d >= 0.05).collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1));
    if v.is_empty() {
        return "(under 0.05 s everywhere)".into();
    }
    v.iter()
        .map(|(k, d)| format!("{k} {d:.2} s"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// CPU seconds spent between two [`thread_cpu`] readings by all threads but those named in
/// `except` (e.g. a bench's stand-in server, which is not ours to count).
pub fn cpu_total_except(
    before: &BTreeMap<(String, u32), f64>,
    after: &BTreeMap<(String, u32), f64>,
    except: &[&str],
) -> f64 {
    after
        .iter()
        .filter(|(k, _)| !except.contains(&k.0.as_str()))
        .map(|(k, a)| a - before.get(k).copied().unwrap_or(0.0))
        .sum()
}

/// A config with the lease_http bench's principal and `aws` as the body of `[aws]`, and
/// `rules/policy/bench.toml` holding [`policy_text`]; returns the config's path.
pub fn write_workdir(dir: &Path, aws: &str) -> std::path::PathBuf {
    write_workdir_on(dir, aws, "[store]\npath = \"ephemera.db\"\n")
}

/// Whether `BENCH_STORE=postgres` asks for the PostgreSQL store (on the server of
/// `scripts/with-postgres.sh`) instead of SQLite.
pub fn on_postgres() -> bool {
    std::env::var("BENCH_STORE").as_deref() == Ok("postgres")
}

/// The `[store]` (and, for PostgreSQL, `[audit]`) sections of a bench config in `dir`: a
/// SQLite file, or a fresh database on the test PostgreSQL server with the audit key every
/// replica shares.
pub async fn store_sections(postgres: bool, dir: &Path) -> String {
    if !postgres {
        return "[store]\npath = \"ephemera.db\"\n".into();
    }
    let url = std::env::var("EPHEMERA_TEST_POSTGRES")
        .expect("EPHEMERA_TEST_POSTGRES: run under scripts/with-postgres.sh");
    let password = std::env::var("EPHEMERA_TEST_POSTGRES_PASSWORD").ok();
    let mut config: tokio_postgres::Config = url.parse().expect("URL");
    if let Some(p) = &password {
        config.password(p.as_str());
    }
    let (client, conn) = config
        .connect(tokio_postgres::NoTls)
        .await
        .expect("the PostgreSQL server answers");
    tokio::spawn(conn);
    let db = format!("bench_{}", uuid::Uuid::new_v4().simple());
    client
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .await
        .expect("create database");
    std::fs::create_dir_all(dir).expect("mkdir");
    let key = dir.join("audit.key");
    std::fs::write(&key, "5e".repeat(32)).expect("key");
    let mut base = url.rsplit_once('/').expect("database in URL").0.to_owned();
    let delay = std::env::var("BENCH_DB_DELAY_US")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&us| us > 0);
    if let Some(us) = delay {
        let host = config.get_hosts().first().cloned();
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let Some(tokio_postgres::config::Host::Tcp(host)) = host else {
            panic!("BENCH_DB_DELAY_US needs a TCP server");
        };
        let proxy = delaying_proxy(
            format!("{host}:{port}"),
            std::time::Duration::from_micros(us),
        );
        base = base.replace(&format!(":{port}"), &format!(":{}", proxy.port()));
    }
    let password = if password.is_some() {
        "password_env = \"EPHEMERA_TEST_POSTGRES_PASSWORD\"\n"
    } else {
        ""
    };
    format!(
        "[store]\nurl = \"{base}/{db}\"\n{password}[audit]\nkey_file = \"{}\"\n",
        key.display()
    )
}

/// A TCP proxy on loopback to `target` that delays what it forwards each way by `delay` (a
/// database that far away: `BENCH_DB_DELAY_US`). Threads, not tasks, so the delay is not
/// rounded to the runtime timer's millisecond; bytes keep their order.
pub fn delaying_proxy(target: String, delay: std::time::Duration) -> std::net::SocketAddr {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::time::Instant;
    fn pump(mut from: TcpStream, mut to: TcpStream, delay: std::time::Duration) {
        let (tx, rx) = std::sync::mpsc::channel::<(Instant, Vec<u8>)>();
        std::thread::spawn(move || {
            for (read_at, bytes) in rx {
                let due = read_at + delay;
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                if to.write_all(&bytes).is_err() {
                    break;
                }
            }
            let _ = to.shutdown(std::net::Shutdown::Write);
        });
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 || tx.send((Instant::now(), buf[..n].to_vec())).is_err() {
                break;
            }
        }
    }
    let listener = TcpListener::bind("127.0.0.1:0").expect("proxy bind");
    let addr = listener.local_addr().expect("proxy addr");
    std::thread::spawn(move || {
        for inbound in listener.incoming() {
            let Ok(inbound) = inbound else { continue };
            let Ok(outbound) = TcpStream::connect(&target) else {
                continue;
            };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            let (i2, o2) = (
                inbound.try_clone().expect("clone"),
                outbound.try_clone().expect("clone"),
            );
            std::thread::spawn(move || pump(inbound, outbound, delay));
            std::thread::spawn(move || pump(o2, i2, delay));
        }
    });
    addr
}

/// A store in `dir` for a bench phase: SQLite, or a fresh PostgreSQL database with
/// `BENCH_STORE=postgres`.
pub async fn open_store(dir: &Path) -> ephemera::store::Store {
    if !on_postgres() {
        return ephemera::store::Store::open(&dir.join("ephemera.db"))
            .await
            .expect("store opens");
    }
    let path = write_workdir_on(
        dir,
        "regions = [\"us-east-1\"]\n\n[[aws.accounts]]\nid = \"123456789012\"\n",
        &store_sections(true, dir).await,
    );
    let config = ephemera::config::Config::load(&path).expect("bench config");
    ephemera::store::Store::open_at(&config.store.location)
        .await
        .expect("store opens")
}

/// [`write_workdir`] with the given `[store]` sections.
pub fn write_workdir_on(dir: &Path, aws: &str, store: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("rules/policy")).expect("mkdir rules");
    std::fs::write(dir.join("rules/policy/bench.toml"), policy_text()).expect("write policy");
    let config = format!(
        r#"
[api]
listen = "127.0.0.1:0"
[[api.principals]]
name = "bench"
role = "lessee"
projects = ["p00"]
token_sha256 = "{}"
{store}
[rules]
dir = "rules"
[aws]
{aws}
[schedules]
scan = "0 0 1 1 *"
cost = "0 6 * * *"
"#,
        ephemera::auth::TokenHash::of("bench-token").to_hex()
    );
    let path = dir.join("ephemera.toml");
    std::fs::write(&path, config).expect("write config");
    path
}

/// Where benches keep their stores: on the real disk next to the build, not in a tmpfs.
/// Cargo sets `CARGO_TARGET_TMPDIR` when it compiles a bench (not when it runs one).
pub fn bench_tmp() -> tempfile::TempDir {
    let base = option_env!("CARGO_TARGET_TMPDIR")
        .map(str::to_owned)
        .or_else(|| std::env::var("CARGO_TARGET_TMPDIR").ok())
        .unwrap_or_else(|| std::env::temp_dir().display().to_string());
    tempfile::tempdir_in(base).expect("temp dir")
}

/// The `p` quantile (0..=1) of `sorted` latencies, by nearest rank.
pub fn percentile(sorted: &[std::time::Duration], p: f64) -> std::time::Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
