//! OIDC ID tokens as API credentials, against the daemon and a local issuer: a good token
//! leases as its principal with the owner from its claim; expired, foreign-audience,
//! unknown-key and unmatched tokens are 401; a rotated key is taken after a refetch while
//! forged key ids do not hammer the issuer; an issuer down at start is fetched once it is up;
//! a reload changes issuers without a restart; static tokens work alongside.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::oidc::{Issuer, SigningKey, free_addr};
use crate::support::{OPERATOR, POLICY, TestDaemon, WEB, Workdir, config_text, eventually_ok};

const AUDIENCE: &str = "ephemera";

/// The test config plus an issuer at `url` and a principal `gh-web` matching `acme/web` on
/// branches, owned by the token's `actor`.
fn workdir(url: &str) -> Workdir {
    let oidc = format!(
        r#"
[[api.oidc_issuers]]
name = "test"
issuer = "{url}"
audience = "{AUDIENCE}"
# Short, so rotation and recovery tests need not wait half a minute.
refetch_interval_seconds = 1

[[api.principals]]
name = "gh-web"
role = "lessee"
projects = ["web"]
oidc = {{ issuer = "test", claims = {{ repository = "acme/web", ref = "refs/heads/*" }} }}
owner_claim = "actor"
"#
    );
    let text = config_text().replacen(
        "max_body_bytes = 4096\n",
        &format!("max_body_bytes = 4096\n{oidc}"),
        1,
    );
    let work = Workdir::with_config(&text);
    let policy = POLICY.replacen(
        r#"lessees = ["ci-web", "ci-web-2"]"#,
        r#"lessees = ["ci-web", "ci-web-2", "gh-web"]"#,
        1,
    );
    assert_ne!(policy, POLICY);
    std::fs::write(work.path().join("rules/policy/projects.toml"), policy).expect("policy");
    work
}

/// A GitHub-like token's claims from `iss`, valid for five minutes from now.
fn claims(iss: &str) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({
        "iss": iss, "aud": AUDIENCE, "iat": now, "nbf": now - 5, "exp": now + 300,
        "sub": "repo:acme/web:ref:refs/heads/main", "repository": "acme/web",
        "ref": "refs/heads/main", "actor": "octocat", "run_id": "4242",
    })
}

fn with(mut v: Value, key: &str, value: Value) -> Value {
    v[key] = value;
    v
}

async fn acquire(d: &TestDaemon, token: &str, body: Value) -> (StatusCode, Value) {
    d.post("/api/v1/leases", token, body).await
}

fn ownerless(task: &str) -> Value {
    json!({"project": "web", "task": task})
}

#[tokio::test(flavor = "multi_thread")]
async fn an_id_token_leases_with_its_actor_as_owner_and_static_tokens_still_work() {
    let (rsa, ec) = (SigningKey::rs256("rsa-1"), SigningKey::es256("ec-1"));
    let issuer = Issuer::start(&[&rsa, &ec]).await;
    let work = workdir(&issuer.url);
    let d = TestDaemon::start(&work).await;

    for key in [&rsa, &ec] {
        let token = key.sign(&claims(&issuer.url));
        let (s, lease) = acquire(&d, &token, ownerless(&format!("pr {}", key.alg()))).await;
        assert_eq!(s, StatusCode::CREATED, "{}: {lease}", key.alg());
        assert_eq!(lease["owner"], "octocat", "{lease}");
        assert_eq!(lease["principal"], "gh-web", "{lease}");
        assert_eq!(lease["tags"]["ephemera:owner"], "octocat", "{lease}");
    }
    // An owner in the body wins over the claim.
    let token = ec.sign(&claims(&issuer.url));
    let (s, lease) = acquire(
        &d,
        &token,
        json!({"project": "web", "task": "pr 3", "owner": "alice@example.com"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{lease}");
    assert_eq!(lease["owner"], "alice@example.com");
    // Another job of the same repository (another actor) may release it: same principal.
    let other_job = ec.sign(&with(claims(&issuer.url), "actor", json!("hubot")));
    let id = lease["id"].as_str().expect("id");
    d.release(&other_job, id).await;

    // A static token still works, and without a default owner `owner` stays required.
    let (s, body) = acquire(&d, WEB, ownerless("static")).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["code"], "invalid-request");
    assert!(
        body["message"].as_str().unwrap_or("").contains("owner"),
        "{body}"
    );
    d.acquire(WEB, "web", "static").await;

    // A token of the right repository whose owner claim is absent: the body must name one.
    let no_actor = {
        let mut c = claims(&issuer.url);
        c.as_object_mut().expect("object").remove("actor");
        rsa.sign(&c)
    };
    let (s, body) = acquire(&d, &no_actor, ownerless("no actor")).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_id_tokens_get_401_without_echoing_the_token() {
    let key = SigningKey::es256("ec-1");
    let issuer = Issuer::start(&[&key]).await;
    let work = workdir(&issuer.url);
    let d = TestDaemon::start(&work).await;
    let stranger = SigningKey::es256("stranger");
    let impostor = SigningKey::es256("ec-1"); // a known kid, another key
    let now = chrono::Utc::now().timestamp();
    let good = claims(&issuer.url);
    // (what, token, a part of the expected message)
    let table = [
        (
            "expired",
            key.sign(&with(
                with(good.clone(), "exp", json!(now - 3600)),
                "iat",
                json!(now - 7200),
            )),
            "the token has expired",
        ),
        (
            "another audience",
            key.sign(&with(good.clone(), "aud", json!("sts.amazonaws.com"))),
            "audience does not include `ephemera`",
        ),
        (
            "a key not in the JWKS",
            stranger.sign(&good),
            "key id is not in the key set",
        ),
        (
            "a known kid, another key",
            impostor.sign(&good),
            "signature does not verify",
        ),
        (
            "another repository",
            key.sign(&with(good.clone(), "repository", json!("acme/other"))),
            "no principal matches the token's claims",
        ),
        (
            "a tag, not a branch",
            key.sign(&with(good.clone(), "ref", json!("refs/tags/v1"))),
            "no principal matches the token's claims",
        ),
        (
            "another issuer",
            key.sign(&with(
                good.clone(),
                "iss",
                json!("https://evil.example.com"),
            )),
            "issuer is not one of the configured",
        ),
        (
            "alg none",
            key.sign_with_header(&json!({"alg": "none", "kid": "ec-1"}), &good),
            "algorithm is not allowed",
        ),
        (
            "HS256",
            key.sign_with_header(&json!({"alg": "HS256", "kid": "ec-1"}), &good),
            "algorithm is not allowed",
        ),
        (
            "JWT-shaped garbage",
            "aaaa.bbbb.cccc".to_owned(),
            "malformed ID token",
        ),
    ];
    for (what, token, message) in table {
        let (s, body) = acquire(&d, &token, ownerless(what)).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{what}: {body}");
        assert_eq!(body["code"], "unauthenticated", "{what}: {body}");
        let text = body["message"].as_str().unwrap_or("");
        assert!(text.contains(message), "{what}: {body}");
        assert!(
            !body.to_string().contains(&token),
            "{what} echoes the token"
        );
    }
    // The good one still passes after all that.
    let (s, body) = acquire(&d, &key.sign(&good), ownerless("good")).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    // Each counted once by what came of it (bounded outcomes; the reasons are in the log).
    let text = d.metrics().await;
    let count = |o: &str| {
        crate::support::sample(
            &text,
            &format!("ephemera_oidc_tokens_total{{outcome=\"{o}\"}}"),
        )
    };
    assert_eq!(count("refused"), Some(8.0), "{text}");
    assert_eq!(count("no-principal"), Some(2.0));
    assert_eq!(count("accepted"), Some(1.0));
    assert_eq!(count("unavailable"), Some(0.0));
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_key_is_taken_after_a_refetch_and_forged_kids_do_not_hammer_the_issuer() {
    let old = SigningKey::es256("2026-01");
    let issuer = Issuer::start(&[&old]).await;
    let work = workdir(&issuer.url);
    let d = TestDaemon::start(&work).await;
    let (s, body) = acquire(&d, &old.sign(&claims(&issuer.url)), ownerless("old")).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(issuer.fetches(), 1, "fetched once, on first use");

    // Forged key ids in a burst: at most one refetch per interval (1 s here), not one each.
    let before = issuer.fetches();
    for i in 0..20 {
        let forged = SigningKey::es256(&format!("forged-{i}"));
        let (s, _) = acquire(&d, &forged.sign(&claims(&issuer.url)), ownerless("forged")).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    let after = issuer.fetches();
    assert!(
        after - before <= 2,
        "20 forged kids made {} fetches",
        after - before
    );

    // The issuer rotates: the new key is taken once the daemon fetches again.
    let new = SigningKey::rs256("2026-02");
    issuer.serve_keys(&[&new]);
    eventually_ok(
        "a token of the rotated-in key is accepted",
        Duration::from_secs(10),
        || async {
            let (s, body) = acquire(&d, &new.sign(&claims(&issuer.url)), ownerless("new")).await;
            if s == StatusCode::CREATED {
                Ok(())
            } else {
                Err(format!("{s}: {body}"))
            }
        },
    )
    .await;
    // The rotated-out key no longer verifies.
    let (s, body) = acquire(&d, &old.sign(&claims(&issuer.url)), ownerless("old")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{body}");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_issuer_down_at_start_is_used_once_it_is_up() {
    let addr = free_addr().await;
    let url = format!("http://{addr}");
    let work = workdir(&url);
    // The daemon starts without reaching the issuer.
    let d = TestDaemon::start(&work).await;
    let key = SigningKey::es256("ec-1");
    let (s, body) = acquire(&d, &key.sign(&claims(&url)), ownerless("down")).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["code"], "oidc-unavailable", "{body}");
    assert_eq!(
        crate::support::sample(
            &d.metrics().await,
            "ephemera_oidc_tokens_total{outcome=\"unavailable\"}"
        ),
        Some(1.0)
    );
    // Static tokens are not held up by it.
    d.acquire(WEB, "web", "static while down").await;

    let issuer = Issuer::start_on(addr, &[&key]).await;
    eventually_ok(
        "the issuer's keys are fetched once it is up",
        Duration::from_secs(10),
        || async {
            let (s, body) = acquire(&d, &key.sign(&claims(&issuer.url)), ownerless("up")).await;
            if s == StatusCode::CREATED {
                Ok(())
            } else {
                Err(format!("{s}: {body}"))
            }
        },
    )
    .await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_changes_the_issuers_without_a_restart() {
    let key = SigningKey::es256("ec-1");
    let issuer = Issuer::start(&[&key]).await;
    let work = workdir(&issuer.url);
    let d = TestDaemon::start(&work).await;
    let for_other = key.sign(&with(claims(&issuer.url), "aud", json!("other")));
    let (s, body) = acquire(&d, &for_other, ownerless("before")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{body}");

    let text = std::fs::read_to_string(work.config_path()).expect("config");
    let changed = text.replacen(
        &format!("audience = \"{AUDIENCE}\""),
        "audience = \"other\"",
        1,
    );
    assert_ne!(changed, text);
    std::fs::write(work.config_path(), changed).expect("write config");
    let (s, report) = d.post("/api/v1/reload", OPERATOR, json!({})).await;
    assert_eq!(s, StatusCode::OK, "{report}");
    assert_eq!(report["restart_needed"], json!([]), "{report}");

    let (s, body) = acquire(&d, &for_other, ownerless("after")).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let (s, body) = acquire(&d, &key.sign(&claims(&issuer.url)), ownerless("old aud")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{body}");
    d.stop().await;
}
