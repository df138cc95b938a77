//! A small typed client for the daemon's API.

use anyhow::Context;
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::http::dto::{
    AuditList, AuditVerdict, CostRefreshView, CostView, ErrorBody, FindingList, LeaseList,
    LeaseTimeline, LeaseView, PlanView, ReapJobView, ReapPlanView, ReapRequest, RenewRequest,
    ReviewedPlanBody, ScanStarted, ScanView, StatusView,
};
use crate::lease::AcquireRequest;

pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    /// Requests sent again after a connection error, a timeout or a 5xx.
    retried: std::sync::atomic::AtomicU32,
}

// The token stays out of every debug print.
impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

/// Attempts of a request that may be sent again, and the wait before the second (doubling,
/// with jitter): about 4 s in all, enough for a daemon restart or a proxy's hiccup.
const ATTEMPTS: u32 = 5;
const FIRST_WAIT: std::time::Duration = std::time::Duration::from_millis(250);

/// Whether a failed attempt may be sent again: a request of a safe kind (reads, and writes
/// the API makes idempotent: acquire with a key, renew, heartbeat, release) that got no
/// answer, or a 5xx (the daemon's own trouble, not the request's).
fn retryable(kind: Kind, failure: &Failure) -> bool {
    kind == Kind::Idempotent
        && match failure {
            Failure::NoAnswer => true,
            Failure::Status(s) => s.is_server_error(),
        }
}

/// Whether `e` failed on the daemon's certificate (unknown CA, wrong name, expired): no retry
/// can fix that, and the user needs to hear about the CA, not about a lost connection.
fn untrusted_certificate(e: &reqwest::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        // An I/O error hides the error it wraps from `source()` (and the TLS stack wraps
        // rustls' error in two): look inside each.
        let mut inner = Some(err);
        while let Some(i) = inner {
            if let Some(rustls::Error::InvalidCertificate(_)) = i.downcast_ref::<rustls::Error>() {
                return true;
            }
            inner = i
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .map(|i| i as &(dyn std::error::Error + 'static));
        }
        cur = err.source();
    }
    false
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Sent once: a repeat could do the work twice (start a pass, reap, refresh spend).
    Once,
    Idempotent,
}

enum Failure {
    NoAnswer,
    Status(StatusCode),
}

/// An error the API answered with; printed as `CODE (STATUS): message`.
#[derive(Debug, thiserror::Error)]
#[error("{code} ({status}): {message}")]
pub struct ApiFailure {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
}

impl Client {
    /// A client of the API at `addr`; each request gives up after `timeout`. With `ca_file`,
    /// an `https://` daemon's certificate must chain to one of the file's certificates.
    pub fn new(
        addr: &str,
        token: Option<&str>,
        timeout: std::time::Duration,
        ca_file: Option<&std::path::Path>,
    ) -> anyhow::Result<Self> {
        let mut http = reqwest::Client::builder().timeout(timeout);
        if let Some(path) = ca_file {
            let pem = std::fs::read(path)
                .with_context(|| format!("cannot read the CA file {}", path.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("the CA file {} is not PEM", path.display()))?;
            if certs.is_empty() {
                anyhow::bail!("the CA file {} holds no PEM certificate", path.display());
            }
            // Instead of the system's roots, like curl's --cacert: the daemon has one CA, and
            // no public CA should be able to vouch for it.
            http = http.tls_certs_only(certs);
        }
        let http = http.build().context("cannot build the HTTP client")?;
        Ok(Client {
            http,
            base: addr.trim_end_matches('/').to_owned(),
            token: token.map(str::to_owned),
            retried: std::sync::atomic::AtomicU32::new(0),
        })
    }

    /// How many requests were sent again.
    pub fn retried(&self) -> u32 {
        self.retried.load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&dyn erased::Body>,
    ) -> anyhow::Result<T> {
        let kind = if method == Method::GET {
            Kind::Idempotent
        } else {
            Kind::Once
        };
        self.call_as(kind, method, path, query, body).await
    }

    async fn call_as<T: DeserializeOwned>(
        &self,
        kind: Kind,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&dyn erased::Body>,
    ) -> anyhow::Result<T> {
        let url = format!("{}/api/v1{path}", self.base);
        let body = body.map(erased::Body::to_json).transpose()?;
        let mut wait = FIRST_WAIT;
        let mut attempt = 1;
        let (status, bytes) = loop {
            let mut req = self.http.request(method.clone(), &url).query(query);
            if let Some(t) = &self.token {
                req = req.bearer_auth(t);
            }
            if let Some(b) = &body {
                req = req
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(b.clone());
            }
            let answer = match req.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    resp.bytes().await.map(|b| (status, b))
                }
                Err(e) => Err(e),
            };
            let failure = match &answer {
                Ok((s, _)) if s.is_server_error() => Failure::Status(*s),
                Ok(_) => break answer.expect("matched Ok"),
                Err(e) if untrusted_certificate(e) => {
                    return Err(
                        anyhow::Error::new(answer.expect_err("matched Err")).context(format!(
                            "cannot reach ephemera at {}: its TLS certificate is not trusted \
                             (give the CA that signed it with --ca-file or EPHEMERA_CA_FILE)",
                            self.base
                        )),
                    );
                }
                Err(_) => Failure::NoAnswer,
            };
            if attempt >= ATTEMPTS || !retryable(kind, &failure) {
                match answer {
                    Ok(done) => break done,
                    Err(e) => {
                        return Err(anyhow::Error::new(e)
                            .context(format!("cannot reach ephemera at {}", self.base)));
                    }
                }
            }
            // Jitter from the clock's nanoseconds: clients retrying together spread out.
            let jitter = u64::from(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.subsec_nanos()),
            ) % (wait.as_millis() as u64 / 2 + 1);
            let why = match &failure {
                Failure::NoAnswer => "no answer".to_owned(),
                Failure::Status(s) => s.to_string(),
            };
            eprintln!(
                "ephemera: {method} {path}: {why}; retrying ({attempt}/{})",
                ATTEMPTS - 1
            );
            tokio::time::sleep(wait + std::time::Duration::from_millis(jitter)).await;
            self.retried
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            wait *= 2;
            attempt += 1;
        };
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .with_context(|| format!("unexpected response from {url}"));
        }
        let failure = match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(e) => ApiFailure {
                status,
                code: e.code,
                message: e.message,
            },
            Err(_) => ApiFailure {
                status,
                code: "http-error".into(),
                message: String::from_utf8_lossy(&bytes).chars().take(200).collect(),
            },
        };
        Err(failure.into())
    }

    /// Takes a lease; sent again on no answer or a 5xx only with an idempotency key (a retry
    /// then returns the lease the first attempt made, if it made one).
    pub async fn acquire(&self, req: &AcquireRequest) -> anyhow::Result<LeaseView> {
        let kind = if req.key.is_some() {
            Kind::Idempotent
        } else {
            Kind::Once
        };
        self.call_as(kind, Method::POST, "/leases", &[], Some(req))
            .await
    }

    pub async fn renew(&self, id: &str, ttl: Option<String>) -> anyhow::Result<LeaseView> {
        self.call_as(
            Kind::Idempotent,
            Method::POST,
            &format!("/leases/{}/renew", enc(id)),
            &[],
            Some(&RenewRequest { ttl }),
        )
        .await
    }

    /// `heartbeat` or `release`: sent again on no answer or a 5xx (a repeated release answers
    /// `lease-released`, which the caller may take as done when [`Client::retried`]).
    pub async fn post_empty(&self, id: &str, action: &str) -> anyhow::Result<LeaseView> {
        self.call_as(
            Kind::Idempotent,
            Method::POST,
            &format!("/leases/{}/{action}", enc(id)),
            &[],
            None,
        )
        .await
    }

    pub async fn show(&self, id: &str) -> anyhow::Result<LeaseView> {
        self.call(Method::GET, &format!("/leases/{}", enc(id)), &[], None)
            .await
    }

    /// `GET /leases/{id}/timeline`.
    pub async fn timeline(&self, id: &str) -> anyhow::Result<LeaseTimeline> {
        self.call(
            Method::GET,
            &format!("/leases/{}/timeline", enc(id)),
            &[],
            None,
        )
        .await
    }

    pub async fn list(&self, query: &[(&str, String)]) -> anyhow::Result<LeaseList> {
        self.call(Method::GET, "/leases", query, None).await
    }

    /// The on-call plan for `arns`, or for a reviewed plan with what it would refuse
    /// (`POST /reap` with `plan_only`); deletes nothing.
    pub async fn plan_reap(
        &self,
        arns: &[String],
        plan: Option<&ReviewedPlanBody>,
    ) -> anyhow::Result<ReapPlanView> {
        let req = ReapRequest {
            arns: arns.to_vec(),
            plan_only: true,
            plan: plan.cloned(),
        };
        self.call(Method::POST, "/reap", &[], Some(&req)).await
    }

    /// Starts an on-call reap job (`POST /reap`) of `arns` or of a reviewed plan; the daemon
    /// runs it whatever this client does.
    pub async fn start_reap(
        &self,
        arns: &[String],
        plan: Option<&ReviewedPlanBody>,
    ) -> anyhow::Result<ReapJobView> {
        let req = ReapRequest {
            arns: arns.to_vec(),
            plan_only: false,
            plan: plan.cloned(),
        };
        self.call(Method::POST, "/reap", &[], Some(&req)).await
    }

    pub async fn reap_job(&self, id: &str) -> anyhow::Result<ReapJobView> {
        self.call(Method::GET, &format!("/reap/jobs/{}", enc(id)), &[], None)
            .await
    }

    pub async fn findings(&self, query: &[(&str, String)]) -> anyhow::Result<FindingList> {
        self.call(Method::GET, "/findings", query, None).await
    }

    pub async fn plan(&self) -> anyhow::Result<PlanView> {
        self.call(Method::GET, "/plan", &[], None).await
    }

    pub async fn audit(&self, query: &[(&str, String)]) -> anyhow::Result<AuditList> {
        self.call(Method::GET, "/audit", query, None).await
    }

    pub async fn audit_verify(&self, query: &[(&str, String)]) -> anyhow::Result<AuditVerdict> {
        self.call(Method::GET, "/audit/verify", query, None).await
    }

    pub async fn cost(&self, query: &[(&str, String)]) -> anyhow::Result<CostView> {
        self.call(Method::GET, "/cost", query, None).await
    }

    pub async fn refresh_cost(&self) -> anyhow::Result<CostRefreshView> {
        self.call(Method::POST, "/cost/refresh", &[], None).await
    }

    pub async fn status(&self) -> anyhow::Result<StatusView> {
        self.call(Method::GET, "/status", &[], None).await
    }

    pub async fn start_scan(&self) -> anyhow::Result<ScanStarted> {
        self.call(Method::POST, "/scans", &[], None).await
    }

    pub async fn scan(&self, run_id: &str) -> anyhow::Result<ScanView> {
        self.call(Method::GET, &format!("/scans/{}", enc(run_id)), &[], None)
            .await
    }
}

/// Sends `start` again, every second for up to `wait`, while the daemon answers `code` (that
/// work runs already: a scheduled pass or refresh, or another process's), telling the user
/// once. Work that began before the command may have missed what changed just before it, so
/// the command waits to start its own rather than adopt the running one.
pub async fn start_when_free<T, F: std::future::Future<Output = anyhow::Result<T>>>(
    code: &str,
    wait: std::time::Duration,
    mut start: impl FnMut() -> F,
) -> anyhow::Result<T> {
    let until = std::time::Instant::now() + wait;
    let mut told = false;
    loop {
        match start().await {
            Err(e) if std::time::Instant::now() < until => {
                let Some(f) = e.downcast_ref::<ApiFailure>().filter(|f| f.code == code) else {
                    return Err(e);
                };
                if !told {
                    eprintln!(
                        "ephemera: {}; waiting for it to end to start anew",
                        f.message
                    );
                    told = true;
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            other => return other,
        }
    }
}

/// Keeps an id from escaping its path segment.
fn enc(id: &str) -> String {
    id.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

mod erased {
    /// Object-safe "serialisable as JSON".
    pub trait Body {
        fn to_json(&self) -> anyhow::Result<Vec<u8>>;
    }

    impl<T: super::Serialize> Body for T {
        fn to_json(&self) -> anyhow::Result<Vec<u8>> {
            Ok(serde_json::to_vec(self)?)
        }
    }
}
