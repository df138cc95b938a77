use chrono::TimeZone;
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RSA_PKCS1_SHA256, RsaKeyPair,
    RsaPublicKeyComponents,
};
use serde_json::json;

use super::*;
use crate::clock::ManualClock;

/// The test-only RSA key also used by the integration tests.
const RSA_PKCS8: &[u8] = include_bytes!("../../tests/fixtures/oidc-test-rsa.pk8");
const ISS: &str = "https://token.actions.example.com";
const NOW: i64 = 1_772_355_600; // 2026-03-01T09:00:00Z

fn issuer() -> OidcIssuer {
    OidcIssuer {
        name: "github".into(),
        issuer: ISS.into(),
        audience: "ephemera".into(),
        jwks_url: None,
        algorithms: vec![JwsAlgorithm::Rs256, JwsAlgorithm::Es256],
        leeway_seconds: 60,
        refetch_interval_seconds: 30,
    }
}

fn enc(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

enum Signer {
    Es(EcdsaKeyPair),
    Rs(RsaKeyPair),
}

impl Signer {
    fn es256() -> Signer {
        let rng = SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("generate");
        Signer::Es(
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
                .expect("load"),
        )
    }

    fn rs256() -> Signer {
        Signer::Rs(RsaKeyPair::from_pkcs8(RSA_PKCS8).expect("fixture key"))
    }

    fn alg(&self) -> &'static str {
        match self {
            Signer::Es(_) => "ES256",
            Signer::Rs(_) => "RS256",
        }
    }

    fn key(&self) -> Key {
        match self {
            Signer::Es(k) => Key::P256 {
                point: k.public_key().as_ref().to_vec(),
            },
            Signer::Rs(k) => {
                let c = RsaPublicKeyComponents::<Vec<u8>>::from(k.public());
                Key::Rsa { n: c.n, e: c.e }
            }
        }
    }

    fn sign_raw(&self, header: &Value, payload: &Value) -> String {
        let input = format!("{}.{}", enc(header), enc(payload));
        let rng = SystemRandom::new();
        let sig = match self {
            Signer::Es(k) => k
                .sign(&rng, input.as_bytes())
                .expect("sign")
                .as_ref()
                .to_vec(),
            Signer::Rs(k) => {
                let mut sig = vec![0; k.public().modulus_len()];
                k.sign(&RSA_PKCS1_SHA256, &rng, input.as_bytes(), &mut sig)
                    .expect("sign");
                sig
            }
        };
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    fn sign(&self, kid: &str, payload: &Value) -> String {
        self.sign_raw(
            &json!({"alg": self.alg(), "kid": kid, "typ": "JWT"}),
            payload,
        )
    }
}

fn claims() -> Value {
    json!({
        "iss": ISS, "aud": "ephemera", "iat": NOW - 10, "nbf": NOW - 10, "exp": NOW + 300,
        "repository": "acme/web", "ref": "refs/heads/main", "actor": "octocat",
        "run_number": 7,
    })
}

fn with(mut v: Value, key: &str, value: Value) -> Value {
    v[key] = value;
    v
}

fn without(mut v: Value, key: &str) -> Value {
    v.as_object_mut().expect("object").remove(key);
    v
}

fn at(secs: i64) -> Arc<ManualClock> {
    Arc::new(ManualClock::new(
        Utc.timestamp_opt(secs, 0).single().expect("valid"),
    ))
}

/// A verifier for [`issuer`] at `now` holding `signers` under `kid-0`, `kid-1`, …
fn verifier(now: i64, signers: &[&Signer]) -> Oidc {
    let oidc = Oidc::new(&[issuer()], at(now)).expect("client");
    for (i, s) in signers.iter().enumerate() {
        oidc.seed("github", &format!("kid-{i}"), s.key());
    }
    oidc
}

#[tokio::test]
async fn good_tokens_of_both_algorithms_verify_and_yield_string_claims() {
    let (es, rs) = (Signer::es256(), Signer::rs256());
    let oidc = verifier(NOW, &[&es, &rs]);
    for (kid, s) in [("kid-0", &es), ("kid-1", &rs)] {
        let v = oidc.verify(&s.sign(kid, &claims())).await;
        let v = v.unwrap_or_else(|e| panic!("{}: {e}", s.alg()));
        assert_eq!(v.issuer, "github");
        assert_eq!(
            v.claims.get("repository").map(String::as_str),
            Some("acme/web")
        );
        assert_eq!(v.claims.get("actor").map(String::as_str), Some("octocat"));
        // Only string claims are matched on.
        assert!(!v.claims.contains_key("run_number"));
    }
}

#[tokio::test]
async fn refused_tokens_say_why_and_never_echo_the_token() {
    let (es, other) = (Signer::es256(), Signer::es256());
    let oidc = verifier(NOW, &[&es]);
    let good = claims();
    let none_header = json!({"alg": "none", "kid": "kid-0"});
    let hs_header = json!({"alg": "HS256", "kid": "kid-0"});
    let rs_on_ec = json!({"alg": "RS256", "kid": "kid-0"});
    let signed = es.sign("kid-0", &good);
    let (head, _) = signed.rsplit_once('.').expect("three parts");
    let tampered = {
        let mut parts: Vec<String> = signed.split('.').map(str::to_owned).collect();
        parts[1] = enc(&with(good.clone(), "repository", json!("acme/evil")));
        parts.join(".")
    };
    // (what, token, expected error)
    let table: Vec<(&str, String, OidcError)> = vec![
        (
            "alg none",
            format!("{}.{}.", enc(&none_header), enc(&good)),
            OidcError::AlgorithmNotAllowed("github".into()),
        ),
        (
            "alg none, any signature",
            es.sign_raw(&none_header, &good),
            OidcError::AlgorithmNotAllowed("github".into()),
        ),
        (
            "HS256",
            es.sign_raw(&hs_header, &good),
            OidcError::AlgorithmNotAllowed("github".into()),
        ),
        (
            "RS256 header on an EC key",
            es.sign_raw(&rs_on_ec, &good),
            OidcError::KeyMismatch,
        ),
        (
            "another key under a known kid",
            other.sign("kid-0", &good),
            OidcError::BadSignature,
        ),
        ("tampered payload", tampered, OidcError::BadSignature),
        (
            "signature cut off",
            format!("{head}.AAAA"),
            OidcError::BadSignature,
        ),
        (
            "unknown kid",
            es.sign("kid-9", &good),
            OidcError::UnknownKey("github".into()),
        ),
        (
            "no kid",
            es.sign_raw(&json!({"alg": "ES256"}), &good),
            OidcError::Malformed("the header has no `kid`"),
        ),
        (
            "other issuer",
            es.sign(
                "kid-0",
                &with(good.clone(), "iss", json!("https://evil.example.com")),
            ),
            OidcError::UnknownIssuer,
        ),
        (
            "no iss",
            es.sign("kid-0", &without(good.clone(), "iss")),
            OidcError::Malformed("the payload has no `iss`"),
        ),
        (
            "wrong aud",
            es.sign(
                "kid-0",
                &with(good.clone(), "aud", json!("sts.amazonaws.com")),
            ),
            OidcError::WrongAudience("ephemera".into()),
        ),
        (
            "aud list without ours",
            es.sign("kid-0", &with(good.clone(), "aud", json!(["a", "b"]))),
            OidcError::WrongAudience("ephemera".into()),
        ),
        (
            "no aud",
            es.sign("kid-0", &without(good.clone(), "aud")),
            OidcError::WrongAudience("ephemera".into()),
        ),
        (
            "no exp",
            es.sign("kid-0", &without(good.clone(), "exp")),
            OidcError::Malformed("the payload has no numeric `exp`"),
        ),
        (
            "crit header",
            es.sign_raw(
                &json!({"alg": "ES256", "kid": "kid-0", "crit": ["x"]}),
                &good,
            ),
            OidcError::Malformed("critical header extensions are not supported"),
        ),
        (
            "two parts",
            "abc.def".into(),
            OidcError::Malformed("not three dot-separated parts"),
        ),
        (
            "header not JSON",
            format!("{}.{}.AAAA", URL_SAFE_NO_PAD.encode("nope"), enc(&good)),
            OidcError::Malformed("the header is not a JSON object"),
        ),
        (
            "not base64",
            "a!b.c.d".into(),
            OidcError::Malformed("the header is not base64url"),
        ),
        (
            "too long",
            format!("{}.{}.x", "a".repeat(MAX_TOKEN_BYTES), "b"),
            OidcError::Malformed("longer than 16 KiB"),
        ),
    ];
    for (what, token, want) in table {
        let got = oidc.verify(&token).await;
        assert_eq!(got.as_ref().err(), Some(&want), "{what}");
        let message = want.to_string();
        for part in token.split('.').filter(|p| p.len() > 8) {
            assert!(!message.contains(part), "{what}: {message}");
        }
    }
}

#[tokio::test]
async fn an_audience_list_that_holds_ours_is_accepted() {
    let es = Signer::es256();
    let oidc = verifier(NOW, &[&es]);
    let token = es.sign(
        "kid-0",
        &with(claims(), "aud", json!(["other", "ephemera"])),
    );
    assert!(oidc.verify(&token).await.is_ok());
}

#[test]
fn times_are_checked_with_leeway() {
    let iss = issuer(); // 60 s leeway
    let exp = NOW + 300;
    let payload = |p: Value| p.as_object().expect("object").clone();
    // (what, payload, seconds after NOW, expected)
    let table: Vec<(&str, Value, i64, Result<(), OidcError>)> = vec![
        ("fresh", claims(), 0, Ok(())),
        ("just past exp, inside leeway", claims(), 300 + 59, Ok(())),
        (
            "past exp by the leeway",
            claims(),
            300 + 60,
            Err(OidcError::Expired),
        ),
        ("long expired", claims(), 3600, Err(OidcError::Expired)),
        (
            "nbf ahead within leeway",
            with(claims(), "nbf", json!(NOW + 60)),
            0,
            Ok(()),
        ),
        (
            "nbf ahead beyond leeway",
            with(claims(), "nbf", json!(NOW + 61)),
            0,
            Err(OidcError::NotYetValid),
        ),
        (
            "iat ahead beyond leeway",
            with(claims(), "iat", json!(NOW + 120)),
            0,
            Err(OidcError::IssuedInFuture),
        ),
        (
            "fractional exp",
            with(claims(), "exp", json!(exp as f64 + 0.5)),
            0,
            Ok(()),
        ),
        (
            "no nbf or iat",
            without(without(claims(), "nbf"), "iat"),
            0,
            Ok(()),
        ),
        (
            "exp not a number",
            with(claims(), "exp", json!("soon")),
            0,
            Err(OidcError::Malformed("the payload has no numeric `exp`")),
        ),
    ];
    for (what, p, after, want) in table {
        let now = Utc.timestamp_opt(NOW + after, 0).single().expect("valid");
        let got = check_claims(&payload(p), &iss, now).map(|_| ());
        assert_eq!(got, want, "{what}");
    }
    let no_leeway = OidcIssuer {
        leeway_seconds: 0,
        ..issuer()
    };
    let now = Utc.timestamp_opt(exp, 0).single().expect("valid");
    assert_eq!(
        check_claims(&payload(claims()), &no_leeway, now).map(|_| ()),
        Err(OidcError::Expired),
        "exp is exclusive"
    );
}

#[tokio::test]
async fn the_allow_list_is_per_issuer() {
    let rs = Signer::rs256();
    let only_es = OidcIssuer {
        algorithms: vec![JwsAlgorithm::Es256],
        ..issuer()
    };
    let oidc = Oidc::new(&[only_es], at(NOW)).expect("client");
    oidc.seed("github", "kid-0", rs.key());
    assert_eq!(
        oidc.verify(&rs.sign("kid-0", &claims())).await,
        Err(OidcError::AlgorithmNotAllowed("github".into()))
    );
}

#[test]
fn jwt_shapes_and_jwks_parsing() {
    assert!(looks_like_jwt("eyJh.eyJi.c2ln"));
    for not in [
        "",
        "a.b",
        "a.b.c.d",
        "a..c",
        "a.b.c d",
        "a+b.c.d",
        "plain-static-token",
    ] {
        assert!(!looks_like_jwt(not), "{not:?}");
    }
    let (es, rs) = (Signer::es256(), Signer::rs256());
    let (Key::P256 { point }, Key::Rsa { n, e }) = (es.key(), rs.key()) else {
        panic!("key kinds");
    };
    let b = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
    let doc = json!({"keys": [
        {"kty": "EC", "crv": "P-256", "kid": "ec", "x": b(&point[1..33]), "y": b(&point[33..]), "alg": "ES256", "use": "sig"},
        {"kty": "RSA", "kid": "rsa", "n": b(&n), "e": b(&e)},
        {"kty": "RSA", "kid": "enc", "n": b(&n), "e": b(&e), "use": "enc"},
        {"kty": "RSA", "n": b(&n), "e": b(&e)},
        {"kty": "EC", "crv": "P-384", "kid": "p384", "x": "AA", "y": "AA"},
        {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
    ]});
    let keys = parse_jwks(&doc);
    let mut kids: Vec<&str> = keys.keys().map(String::as_str).collect();
    kids.sort_unstable();
    assert_eq!(kids, ["ec", "rsa"]);
    assert_eq!(keys["ec"].key, es.key());
    assert_eq!(keys["rsa"].key, rs.key());
    assert_eq!(keys["ec"].alg.as_deref(), Some("ES256"));
    assert!(!format!("{:?}", keys["rsa"]).contains(&b(&n)));
}

/// Discovery must name the configured issuer exactly; a document for another issuer (even
/// one differing by a trailing slash) or for none supplies no keys.
#[test]
fn discovery_names_the_configured_issuer_or_is_refused() {
    let issuer = "https://token.actions.githubusercontent.com";
    let doc = |iss: Option<&str>| {
        let mut d = json!({"jwks_uri": format!("{issuer}/.well-known/jwks")});
        if let Some(i) = iss {
            d["issuer"] = json!(i);
        }
        d
    };
    assert_eq!(
        discovered_jwks_uri(&doc(Some(issuer)), issuer),
        Ok(format!("{issuer}/.well-known/jwks"))
    );
    for other in [
        "https://token.actions.githubusercontent.com/",
        "https://evil.example.com",
        "",
    ] {
        let e = discovered_jwks_uri(&doc(Some(other)), issuer).expect_err(other);
        assert!(e.contains("names issuer"), "{e}");
    }
    let e = discovered_jwks_uri(&doc(None), issuer).expect_err("no issuer");
    assert!(e.contains("no `issuer`"), "{e}");
    let e = discovered_jwks_uri(&json!({"issuer": issuer}), issuer).expect_err("no keys");
    assert!(e.contains("no `jwks_uri`"), "{e}");
}
