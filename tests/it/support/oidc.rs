//! A local OIDC issuer on a free loopback port: a discovery document, a JWKS the test can
//! swap (key rotation), a count of JWKS fetches, and signing keys to mint ID tokens with.
//! ES256 keys are generated per test; the RS256 key is the test-only fixture (ring cannot
//! generate RSA keys).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RSA_PKCS1_SHA256, RsaKeyPair,
    RsaPublicKeyComponents,
};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

const RSA_PKCS8: &[u8] = include_bytes!("../../fixtures/oidc-test-rsa.pk8");

/// A key an issuer signs with.
pub struct SigningKey {
    pub kid: String,
    pair: Pair,
}

enum Pair {
    Es(EcdsaKeyPair),
    Rs(RsaKeyPair),
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

impl SigningKey {
    /// A fresh P-256 key.
    pub fn es256(kid: &str) -> SigningKey {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("generate a P-256 key");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .expect("load the P-256 key");
        SigningKey {
            kid: kid.to_owned(),
            pair: Pair::Es(pair),
        }
    }

    /// The fixture RSA key (2048 bits).
    pub fn rs256(kid: &str) -> SigningKey {
        SigningKey {
            kid: kid.to_owned(),
            pair: Pair::Rs(RsaKeyPair::from_pkcs8(RSA_PKCS8).expect("the fixture RSA key")),
        }
    }

    pub fn alg(&self) -> &'static str {
        match self.pair {
            Pair::Es(_) => "ES256",
            Pair::Rs(_) => "RS256",
        }
    }

    /// The public key as a JWK.
    pub fn jwk(&self) -> Value {
        match &self.pair {
            Pair::Es(k) => {
                let point = k.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256", "kid": self.kid, "use": "sig", "alg": "ES256",
                       "x": b64(&point[1..33]), "y": b64(&point[33..])})
            }
            Pair::Rs(k) => {
                let c = RsaPublicKeyComponents::<Vec<u8>>::from(k.public());
                json!({"kty": "RSA", "kid": self.kid, "use": "sig", "alg": "RS256",
                       "n": b64(&c.n), "e": b64(&c.e)})
            }
        }
    }

    /// A token with `header` (as given) over `claims`.
    pub fn sign_with_header(&self, header: &Value, claims: &Value) -> String {
        let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
        let rng = SystemRandom::new();
        let sig = match &self.pair {
            Pair::Es(k) => k
                .sign(&rng, input.as_bytes())
                .expect("sign")
                .as_ref()
                .to_vec(),
            Pair::Rs(k) => {
                let mut sig = vec![0; k.public().modulus_len()];
                k.sign(&RSA_PKCS1_SHA256, &rng, input.as_bytes(), &mut sig)
                    .expect("sign");
                sig
            }
        };
        format!("{input}.{}", b64(sig))
    }

    /// An ID token over `claims`, its header naming this key.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_with_header(
            &json!({"alg": self.alg(), "kid": self.kid, "typ": "JWT"}),
            claims,
        )
    }
}

#[derive(Clone)]
struct Served {
    url: String,
    jwks: Arc<Mutex<Value>>,
    fetches: Arc<AtomicU64>,
}

/// A running issuer; stops when dropped.
pub struct Issuer {
    pub url: String,
    served: Served,
    task: JoinHandle<()>,
}

/// A free loopback address, for an issuer that starts after the daemon.
pub async fn free_addr() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind port 0");
    l.local_addr().expect("bound address")
}

impl Issuer {
    /// An issuer on a free port serving `keys`.
    pub async fn start(keys: &[&SigningKey]) -> Issuer {
        Issuer::start_on(free_addr().await, keys).await
    }

    /// An issuer on `addr` (a port from [`free_addr`]) serving `keys`.
    pub async fn start_on(addr: SocketAddr, keys: &[&SigningKey]) -> Issuer {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("bind the issuer's port");
        let url = format!("http://{addr}");
        let served = Served {
            url: url.clone(),
            jwks: Arc::new(Mutex::new(Value::Null)),
            fetches: Arc::new(AtomicU64::new(0)),
        };
        let app = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(|State(s): State<Served>| async move {
                    Json(
                        json!({"issuer": s.url, "jwks_uri": format!("{}/jwks", s.url),
                                "id_token_signing_alg_values_supported": ["RS256", "ES256"]}),
                    )
                }),
            )
            .route(
                "/jwks",
                get(|State(s): State<Served>| async move {
                    s.fetches.fetch_add(1, Ordering::SeqCst);
                    let keys = s.jwks.lock().expect("jwks lock").clone();
                    Json(keys)
                }),
            )
            .with_state(served.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let issuer = Issuer { url, served, task };
        issuer.serve_keys(keys);
        issuer
    }

    /// Replaces the key set (a rotation).
    pub fn serve_keys(&self, keys: &[&SigningKey]) {
        let doc = json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()});
        *self.served.jwks.lock().expect("jwks lock") = doc;
    }

    /// How many times the JWKS was fetched.
    pub fn fetches(&self) -> u64 {
        self.served.fetches.load(Ordering::SeqCst)
    }
}

impl Drop for Issuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
