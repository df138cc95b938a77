//! A small typed client for the daemon's API.

use anyhow::Context;
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::http::dto::{
    AuditList, AuditVerdict, CostRefreshView, CostView, ErrorBody, FindingList, LeaseList,
    LeaseView, PlanView, ReapJobView, ReapPlanView, ReapRequest, RenewRequest, ScanStarted,
    ScanView, StatusView,
};
use crate::lease::AcquireRequest;

#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
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
    pub fn new(addr: &str, token: Option<&str>) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Client {
            http,
            base: addr.trim_end_matches('/').to_owned(),
            token: token.map(str::to_owned),
        })
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&dyn erased::Body>,
    ) -> anyhow::Result<T> {
        let url = format!("{}/api/v1{path}", self.base);
        let mut req = self.http.request(method, &url).query(query);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b.to_json()?);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach ephemera at {}", self.base))?;
        let status = resp.status();
        let bytes = resp.bytes().await.context("cannot read the response")?;
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

    pub async fn acquire(&self, req: &AcquireRequest) -> anyhow::Result<LeaseView> {
        self.call(Method::POST, "/leases", &[], Some(req)).await
    }

    pub async fn renew(&self, id: &str, ttl: Option<String>) -> anyhow::Result<LeaseView> {
        self.call(
            Method::POST,
            &format!("/leases/{}/renew", enc(id)),
            &[],
            Some(&RenewRequest { ttl }),
        )
        .await
    }

    pub async fn post_empty(&self, id: &str, action: &str) -> anyhow::Result<LeaseView> {
        self.call(
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

    pub async fn list(&self, query: &[(&str, String)]) -> anyhow::Result<LeaseList> {
        self.call(Method::GET, "/leases", query, None).await
    }

    /// The on-call plan for `arns` (`POST /reap` with `plan_only`); deletes nothing.
    pub async fn plan_reap(&self, arns: &[String]) -> anyhow::Result<ReapPlanView> {
        let req = ReapRequest {
            arns: arns.to_vec(),
            plan_only: true,
        };
        self.call(Method::POST, "/reap", &[], Some(&req)).await
    }

    /// Starts an on-call reap job (`POST /reap`); the daemon runs it whatever this client does.
    pub async fn start_reap(&self, arns: &[String]) -> anyhow::Result<ReapJobView> {
        let req = ReapRequest {
            arns: arns.to_vec(),
            plan_only: false,
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
