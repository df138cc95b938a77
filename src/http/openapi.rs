//! The OpenAPI 3.1 document of the API, generated from the handlers' `#[utoipa::path]`
//! attributes and the DTOs' schemas; served at `/api/v1/openapi.json` and committed as
//! `docs/openapi.json` (a test keeps the two equal: `UPDATE_OPENAPI=1 cargo test --lib
//! openapi` rewrites the file).

use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use super::*;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ephemera",
        description = "Leases for ephemeral cloud environments, the audit pass's findings, the \
                       deletion plan, on-call reaping, the audit log and spend. Every `/api/v1` \
                       route but this document takes `Authorization: Bearer TOKEN`; errors \
                       answer `{code, message}` with a stable code."
    ),
    paths(
        healthz,
        readyz,
        metrics,
        openapi,
        leases::acquire,
        leases::list,
        leases::show,
        leases::timeline,
        leases::renew,
        leases::heartbeat,
        leases::release,
        scans::start_scan,
        scans::show_scan,
        scans::status,
        findings::list_resources,
        findings::list_findings,
        findings::show_finding,
        reap::show_plan,
        reap::reap,
        reap::show_reap_job,
        audit::list_audit,
        audit::verify_audit,
        cost::show_cost,
        cost::refresh_cost,
        reload::reload,
    ),
    modifiers(&BearerToken),
    security(("bearer" = []))
)]
#[derive(Debug)]
pub struct ApiDoc;

#[derive(Debug)]
struct BearerToken;

impl utoipa::Modify for BearerToken {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
    }
}

/// The document, as served and committed.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The document as pretty JSON with a final newline (the committed file's form).
pub fn document_json() -> String {
    document()
        .to_pretty_json()
        .map(|mut s| {
            s.push('\n');
            s
        })
        .unwrap_or_default()
}

/// The API's own description; no token needed.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "meta", security(()),
    responses((status = 200, description = "This document", content_type = "application/json")))]
pub(super) async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        document_json(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use super::*;

    /// `(METHOD, path)` of every route the router registers, read from its source: the
    /// `/api/v1` nest's `.route(..)` calls and the top level's.
    fn routed() -> BTreeSet<(String, String)> {
        let src =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http/mod.rs"))
                .expect("http/mod.rs");
        let router = &src[src.find("pub fn router(").expect("the router")..];
        let router = &router[..router.find("\n}\n").expect("its end")];
        let nest = router.find(".nest(\"/api/v1\"").expect("the api nest");
        let mut out = BTreeSet::new();
        for (at, _) in router.match_indices(".route(\"") {
            let rest = &router[at + ".route(\"".len()..];
            let path = &rest[..rest.find('"').expect("path ends")];
            let call = &rest[..rest.find(")\n").unwrap_or(rest.len())];
            let prefix = if at < nest { "/api/v1" } else { "" };
            for method in ["get", "post", "put", "delete", "patch"] {
                if call.contains(&format!("{method}(")) {
                    out.insert((method.to_uppercase(), format!("{prefix}{path}")));
                }
            }
        }
        out
    }

    fn documented() -> BTreeSet<(String, String)> {
        let doc = serde_json::to_value(document()).expect("serialises");
        let mut out = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("path item").keys() {
                out.insert((method.to_uppercase(), path.clone()));
            }
        }
        out
    }

    #[test]
    fn every_route_is_documented_and_nothing_else() {
        let routed = routed();
        assert!(routed.len() >= 20, "the route parser found {routed:?}");
        assert!(routed.contains(&("GET".into(), "/api/v1/leases/{id}".into())));
        assert!(routed.contains(&("GET".into(), "/api/v1/leases/{id}/timeline".into())));
        let documented = documented();
        let undocumented: Vec<_> = routed.difference(&documented).collect();
        let unrouted: Vec<_> = documented.difference(&routed).collect();
        assert!(
            undocumented.is_empty() && unrouted.is_empty(),
            "routes without a #[utoipa::path] in ApiDoc: {undocumented:?}; documented but not routed: {unrouted:?}"
        );
    }

    /// Every example in the document parses into the type it documents.
    #[test]
    fn documented_examples_parse() {
        let doc = serde_json::to_value(document()).expect("serialises");
        let schemas = doc["components"]["schemas"].as_object().expect("schemas");
        type Check = fn(serde_json::Value) -> Result<(), serde_json::Error>;
        fn check<T: serde::de::DeserializeOwned>(
            v: serde_json::Value,
        ) -> Result<(), serde_json::Error> {
            serde_json::from_value::<T>(v).map(|_| ())
        }
        let checks: &[(&str, Check)] = &[
            ("AcquireRequest", check::<crate::lease::AcquireRequest>),
            ("RenewRequest", check::<dto::RenewRequest>),
            ("ErrorBody", check::<dto::ErrorBody>),
            ("Health", check::<dto::Health>),
            ("ScanStarted", check::<dto::ScanStarted>),
            ("ReapRequest", check::<dto::ReapRequest>),
            ("AuditVerdict", check::<dto::AuditVerdict>),
            ("CostView", check::<dto::CostView>),
            ("ReloadReport", check::<dto::ReloadReport>),
            ("TimelineEntryView", check::<dto::TimelineEntryView>),
        ];
        let mut with_example = BTreeSet::new();
        for (name, schema) in schemas {
            if let Some(example) = schema
                .get("example")
                .or_else(|| schema.get("examples").and_then(|e| e.get(0)))
            {
                with_example.insert(name.as_str());
                let (_, parse) = checks
                    .iter()
                    .find(|(n, _)| n == name)
                    .unwrap_or_else(|| panic!("{name} has an example but no check here"));
                parse(example.clone()).unwrap_or_else(|e| panic!("{name}'s example: {e}"));
            }
        }
        let checked: BTreeSet<&str> = checks.iter().map(|(n, _)| *n).collect();
        assert_eq!(with_example, checked, "every checked type shows an example");
    }

    /// The committed `docs/openapi.json` is the document the code generates.
    #[test]
    fn the_committed_document_is_current() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json");
        let generated = document_json();
        assert!(
            generated.contains("\"openapi\": \"3.1"),
            "an OpenAPI 3.1 document"
        );
        if std::env::var_os("UPDATE_OPENAPI").is_some() {
            std::fs::write(&path, &generated).expect("docs/openapi.json written");
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "docs/openapi.json is stale: run `UPDATE_OPENAPI=1 cargo test --lib openapi` and commit it"
        );
    }
}
