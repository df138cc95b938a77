//! Property tests for every parser of outside input: whatever the text, each answers a value
//! or a clear error, never a panic; and what parses round-trips where a canonical form exists.
//! The API's query strings and path ids are sent to a daemon in this process: 200 or a 4xx
//! with a stable code, never a 5xx.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::OnceLock;

use ephemera::model::{
    Arn, HumanDuration, LeaseId, ProjectName, check_tag_value, parse_amount, printable,
};
use proptest::prelude::*;

/// Text with the characters that trip parsers: digits, units, separators, signs, exponents,
/// quotes, brackets, controls and non-ASCII.
fn tricky() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just("0".to_owned()),
            Just("9".to_owned()),
            Just("e".to_owned()),
            Just("E".to_owned()),
            Just("-".to_owned()),
            Just("+".to_owned()),
            Just(".".to_owned()),
            Just(":".to_owned()),
            Just("/".to_owned()),
            Just("*".to_owned()),
            Just("=".to_owned()),
            Just("\"".to_owned()),
            Just("[".to_owned()),
            Just("]".to_owned()),
            Just("{".to_owned()),
            Just("\n".to_owned()),
            Just("\u{1b}".to_owned()),
            Just("\u{202e}".to_owned()),
            Just("é".to_owned()),
            Just("h".to_owned()),
            Just("m".to_owned()),
            Just("s".to_owned()),
            Just("arn:aws:".to_owned()),
            Just("urn:uuid:".to_owned()),
            "[a-z0-9]{1,12}".prop_map(|s| s),
            any::<char>().prop_map(|c| c.to_string()),
        ],
        0..40,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn durations_parse_or_explain(s in tricky()) {
        match HumanDuration::parse(&s) {
            Ok(d) => prop_assert_eq!(HumanDuration::parse(&d.to_string()), Ok(d)),
            Err(e) => prop_assert!(!e.is_empty()),
        }
    }

    #[test]
    fn amounts_parse_or_explain(s in tricky(), exp in any::<i32>()) {
        let _ = parse_amount(&s);
        // Any exponent, however large, answers at once (linear in the text).
        let _ = parse_amount(&format!("{s}e{exp}"));
        let _ = parse_amount(&format!("0.{s}e{exp}"));
    }

    #[test]
    fn arns_parse_or_explain(s in tricky()) {
        if let Ok(a) = Arn::parse(&s) {
            let _ = (a.resource_type(), a.name(), a.region(), a.resource_id());
        }
    }

    #[test]
    fn lease_ids_parse_loosely_and_print_canonically(s in tricky()) {
        if let Some(id) = LeaseId::parse_loose(&s) {
            prop_assert_eq!(LeaseId::parse_loose(&id.to_string()), Some(id));
        }
        let _ = s.parse::<LeaseId>();
    }

    #[test]
    fn names_and_tag_values_parse_or_explain(s in tricky()) {
        let _ = ProjectName::parse(&s);
        let _ = check_tag_value("owner", &s);
        let p = printable(&s);
        prop_assert!(!p.chars().any(|c| c.is_control()));
    }

    #[test]
    fn config_text_never_panics(s in tricky(), at in 0usize..64) {
        let base = ephemera::config::EXAMPLE;
        let cut = base.char_indices().map(|(i, _)| i).nth(at * 97).unwrap_or(base.len());
        let text = format!("{}{s}{}", &base[..cut], &base[cut..]);
        let _ = ephemera::config::Config::parse(Path::new("/etc/ephemera/e.toml"), &text, &|_| None);
    }

    #[test]
    fn rules_text_never_panics(s in tricky()) {
        let text = format!("[[project]]\nname = \"{s}\"\nlessees = [\"{s}\"]\ndefault_ttl = \"{s}\"\nmax_ttl = \"2h\"\ngrace = \"1h\"\n[handles]\n\"{s}\" = \"{s}\"\n");
        let _ = ephemera::policy::Policy::parse([(Path::new("r.toml"), text.as_str())]);
        let _ = ephemera::policy::Policy::parse([(Path::new("r.toml"), s.as_str())]);
    }

    #[test]
    fn acquire_bodies_never_panic(s in tricky()) {
        let _ = serde_json::from_str::<ephemera::lease::AcquireRequest>(&s);
        let body = format!("{{\"project\":\"{s}\",\"task\":\"{s}\",\"owner\":\"{s}\",\"ttl\":\"{s}\"}}");
        let _ = serde_json::from_str::<ephemera::lease::AcquireRequest>(&body);
    }
}

/// The keys the API's queries take (and a few they do not), for query strings built of
/// tricky values.
const QUERY_KEYS: &[&str] = &[
    "limit",
    "cursor",
    "project",
    "state",
    "owner",
    "verdict",
    "region",
    "account",
    "resource_type",
    "all",
    "arn",
    "decision",
    "run_id",
    "head",
    "by",
    "since",
    "unknown",
];

/// The GET endpoints that read a query string, and two that read a path id.
const QUERY_PATHS: &[&str] = &[
    "/api/v1/leases",
    "/api/v1/resources",
    "/api/v1/findings",
    "/api/v1/audit",
    "/api/v1/audit/verify",
    "/api/v1/cost",
    "/api/v1/leases/",
    "/api/v1/scans/",
];

/// One daemon for every case (in this process, on loopback, on an empty store), and the
/// runtime it serves on.
type Api = (
    tokio::runtime::Runtime,
    SocketAddr,
    reqwest::Client,
    tempfile::TempDir,
);

fn api() -> &'static Api {
    static API: OnceLock<Api> = OnceLock::new();
    API.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("rules/policy")).expect("rules dir");
        std::fs::write(
            dir.path().join("rules/policy/p.toml"),
            "[[project]]\nname = \"web\"\nlessees = [\"*\"]\ndefault_ttl = \"1h\"\nmax_ttl = \"1d\"\ngrace = \"1h\"\n",
        )
        .expect("rules");
        let config = format!(
            "[api]\nlisten = \"127.0.0.1:0\"\n[[api.principals]]\nname = \"op\"\nrole = \"operator\"\ntoken_sha256 = \"{}\"\n\
             [store]\npath = \"e.db\"\n[rules]\ndir = \"rules\"\n[aws]\nregions = [\"us-east-1\"]\n\
             [[aws.accounts]]\nid = \"123456789012\"\n[schedules]\nscan = \"0 0 1 1 *\"\ncost = \"0 0 1 1 *\"\n",
            ephemera::auth::TokenHash::of("prop-token").to_hex()
        );
        let path = dir.path().join("e.toml");
        std::fs::write(&path, config).expect("config");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let addr = rt.block_on(async {
            let config = ephemera::config::Config::load(&path).expect("config loads");
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("addr");
            tokio::spawn(ephemera::daemon::run(config, listener, std::future::pending()));
            let http = reqwest::Client::new();
            for _ in 0..500 {
                if http.get(format!("http://{addr}/readyz")).send().await.is_ok() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            addr
        });
        (rt, addr, reqwest::Client::new(), dir)
    })
}

/// Percent-encodes what a URL cannot carry raw; leaves `%`, `&`, `=` and `+` as they are
/// half the time, so broken escapes and separators reach the parser too.
fn url_text(s: &str, raw: bool) -> String {
    s.chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '.' | '_' | '~' => c.to_string(),
            '%' | '&' | '=' | '+' if raw => c.to_string(),
            c => {
                let mut b = [0u8; 4];
                c.encode_utf8(&mut b)
                    .bytes()
                    .map(|x| format!("%{x:02X}"))
                    .collect()
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Whatever the query string (or path id), the API answers 200 or 4xx with a stable
    /// error code, never a 5xx or a dropped connection.
    #[test]
    fn query_strings_get_an_answer_or_a_stable_error(
        path in prop::sample::select(QUERY_PATHS),
        pairs in prop::collection::vec((prop::sample::select(QUERY_KEYS), tricky(), any::<bool>()), 0..4),
        id in tricky(),
    ) {
        let (rt, addr, http, _) = api();
        let query: Vec<String> = pairs
            .iter()
            .map(|(k, v, raw)| format!("{k}={}", url_text(v, *raw)))
            .collect();
        let path = if path.ends_with('/') { format!("{path}{}", url_text(&id, false)) } else { (*path).to_owned() };
        let url = format!("http://{addr}{path}?{}", query.join("&"));
        let (status, body) = rt.block_on(async {
            let r = http
                .get(&url)
                .bearer_auth("prop-token")
                .send()
                .await
                .expect("answered");
            let status = r.status().as_u16();
            (status, r.text().await.unwrap_or_default())
        });
        prop_assert!(status == 200 || (400..500).contains(&status), "{url}: {status} {body}");
        if status != 200 {
            let v: serde_json::Value = serde_json::from_str(&body).expect("an error body is JSON");
            prop_assert!(v["code"].as_str().is_some_and(|c| !c.is_empty()), "{url}: {body}");
        }
    }
}
