//! Prometheus metrics: one registry per daemon, passed explicitly (no global registry, so
//! tests can run several daemons in one process).
//!
//! Architecture Invariant: every label comes from a bounded set (project, state, operation,
//! outcome code, route pattern, method, status). No lease id, ARN or resource id is ever a label.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

#[derive(Debug)]
pub struct Metrics {
    pub registry: Registry,
    /// `ephemera_leases{project,state}`, recomputed from the store on each scrape.
    pub leases: IntGaugeVec,
    /// `ephemera_lease_operations_total{operation,outcome}`; outcome is `ok` or an error code.
    pub lease_operations: IntCounterVec,
    /// `ephemera_http_requests_total{route,method,status}`.
    pub http_requests: IntCounterVec,
    /// `ephemera_http_request_duration_seconds{route,method}`.
    pub http_duration: HistogramVec,
    /// `ephemera_store_errors_total{operation}`: failures of the store seen by the API.
    pub store_errors: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let leases = IntGaugeVec::new(
            Opts::new(
                "ephemera_leases",
                "Leases by project and state (active, expired, released)",
            ),
            &["project", "state"],
        )
        .expect("static metric definition is valid");
        let lease_operations = IntCounterVec::new(
            Opts::new(
                "ephemera_lease_operations_total",
                "Lease operations by operation and outcome (ok or the error code)",
            ),
            &["operation", "outcome"],
        )
        .expect("static metric definition is valid");
        let http_requests = IntCounterVec::new(
            Opts::new(
                "ephemera_http_requests_total",
                "HTTP requests by route pattern, method and status",
            ),
            &["route", "method", "status"],
        )
        .expect("static metric definition is valid");
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "ephemera_http_request_duration_seconds",
                "HTTP request latency by route pattern and method",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["route", "method"],
        )
        .expect("static metric definition is valid");
        let store_errors = IntCounterVec::new(
            Opts::new("ephemera_store_errors_total", "Store failures by operation"),
            &["operation"],
        )
        .expect("static metric definition is valid");
        let build_info = IntGaugeVec::new(
            Opts::new(
                "ephemera_build_info",
                "Always 1; labels carry the build's version",
            ),
            &["version"],
        )
        .expect("static metric definition is valid");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);

        for c in [
            Box::new(leases.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(lease_operations.clone()),
            Box::new(http_requests.clone()),
            Box::new(http_duration.clone()),
            Box::new(store_errors.clone()),
            Box::new(build_info),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        Metrics {
            registry,
            leases,
            lease_operations,
            http_requests,
            http_duration,
            store_errors,
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec only fails on invalid metric data, which the types rule out.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
