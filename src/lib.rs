//! ephemera keeps ephemeral cloud environments honest: task runners take a **lease** before
//! they create AWS resources and tag what they create with the lease's identity; ephemera
//! records the leases, inventories tagged resources, flags what outlived its lease, reaps it
//! when armed, exports spend and mails the owners.
//!
//! # Code map
//!
//! | module | what it holds |
//! |---|---|
//! | [`model`] | the domain's words, one file per concept: [`model::LeaseId`], [`model::ProjectName`], [`model::HumanDuration`] (`90m`, `2h`, `7d`), tags and [`model::IdentityTags`], ARNs, verdicts, [`model::Image`] (an AMI as described), [`model::Lease`] and its state math, a lease's story ([`model::TimelineEntry`]), [`model::MailKind`], money ([`model::MicroUsd`]), [`model::ResourceType`] |
//! | [`diagnostic`] | `FILE:LINE:COL: field `x`: …` errors for config and rules |
//! | [`config`] | the TOML config, validated once, one file per section (`aws`, `smtp`, `cost`, `enforcement`, `retention`, `schedule`, `principals`, `tls` for `[api.tls]`); errors point at the value through the document's spans (`spans`); the embedded example |
//! | [`audit`] | the audit chain's key (from `[audit]`, created once by the daemon, redacted in `Debug`) and its published head `SEQ:HASH` |
//! | [`auth`] | principals, roles (lessee, operator, viewer), hashed bearer tokens, OIDC claim patterns (`*` globs) and the pick of the one principal a verified ID token's claims match |
//! | [`oidc`] | OIDC ID tokens (GitHub Actions, GitLab CI) as bearer tokens: JWT parsing, RS256/ES256 signatures (ring) by each issuer's JWKS (fetched lazily, cached, refetched on an unknown key id at most once per interval), `iss`/`aud`/`exp`/`nbf`/`iat` with leeway; never prints a token |
//! | [`policy`] | `rules/policy/*.toml`: leasing and audit rules (per project, per resource type, the accounts and OUs a project may live in), pure decisions and evaluation (verdicts), the approved-image catalog (`[[images]]`: [`policy::Catalog`]), owner routing (handles, teams: [`policy::Directory`]), in-file test cases |
//! | [`lease`] | the [`lease::LeaseRegistry`] service: acquire, renew, beat, release, quotas; each change records its events (renewals, heartbeat gaps, the release: [`model::lease_changes`]) in its transaction; a lease's timeline |
//! | [`store`] | SQLite (WAL, `synchronous = FULL`, 16 KiB pages, foreign keys, append-only migrations); writes go through one group-commit writer thread; or PostgreSQL (`store::pg`: a connection pool, the same calls, one migration sequence, advisory locks and row versions where SQLite had its one writer; TLS through rustls with the certificate always verified, `store::pg::tls`) for several replicas; `store copy` from one to the other in `store::copy`; the act lock that keeps two processes from acting at once; the audit chain (append, list, verify) in `store::chain`; teardown proof of ended leases in `store::teardown`; a lease's timeline (its recorded `lease_events` and what every other table says of it, one snapshot) in `store::timeline`; backups and the restore guard in `store::restore`; the retention purge (a bounded batch per write, children before parents) in `store::retention`; the only module that knows SQL |
//! | [`leader`] | leadership of the replicas on one store: the `leader` store lock, renewed; the one replica that holds it runs passes, cost refreshes, mail and the purge; its holder id fences mail |
//! | [`metrics`] | the Prometheus registry and every metric |
//! | [`http`] | the axum API under `/api/v1`, `/healthz`, `/readyz`, `/metrics`, one file per resource plus `error` (status and stable code, in one place) and `extract`; the accept loop with its limits (header-read timeout, connection cap) and the TLS handshake in [`http::serve`], the request timeout and in-flight cap as middleware; one JSON type per body in [`http::dto`], shared with the CLI client; the OpenAPI 3.1 document ([`http::openapi`], served at `/api/v1/openapi.json`, committed as `docs/openapi.json`) |
//! | [`daemon`] | wiring: `serve(config, listener, shutdown, clock)` |
//! | [`resource`] | plain records of the audit pass: observed resources, evaluations, findings, walks, runs, a pass's report |
//! | [`inventory`] | the AWS walk (tagging API, EC2 instance states, the images of instances and launch templates while the rules hold a catalog: [`inventory::images`]), the sweep of never-tagged resources by each service's list call ([`inventory::sweep`]; IAM's credentials — roles, instance profiles, users, access keys — with their tags, every pass), client builder, rate limit; the only home of SDK types (a failed walk's [`inventory::WalkError`] keeps the SDK's error as its source) |
//! | [`cost`] | spend: Cost Explorer calls, the incremental refresh (final days never refetched), spend/top-task/waste exports; money as integer micro-dollars |
//! | [`reaper`] | deletion: the pure plan (order by each type's rank, controllers folded with their members ([`model::ControllerRef`]), each account's arming, cap and window, the pass and project caps, allowlist, reviewed plans' state digests, an access key's two steps: deactivate, then delete after `deactivation_grace`), the act step and on-call reaping with their last-moment checks, the registry of deletable types ([`reaper::aws::Kind`]: one entry per type in its service's file under [`reaper::aws`] with its inspect and delete calls, rank, example ARN and the IAM actions of its calls, gathered by [`reaper::iam`]; EC2's VPC family in a file of its own, IAM's in `iam_entities`; SDK errors kept as sources); unarmed, no AWS call |
//! | [`canary`] | the synthetic lifecycle canary (`[canary]`): a lease, a tagged SQS queue made through the AWS API, the lease released, then the scheduled passes must see and flag it and the reaper (or the canary) delete it; each stage timed, a broken one named in metrics, log and a `canary.failed` event; deletes only queues it can prove are its own |
//! | [`iam`] | the least-privilege IAM policies `ephemera iam-policy` prints (daemon principal, account role), built only from the action tables next to the calls, deletes held to the identity tags by condition outside dedicated accounts; the account role as a StackSet-ready CloudFormation template ([`iam::cloudformation`]) — pure |
//! | [`jobs`] | on-call reap jobs: started by `POST /api/v1/reap`, run by the daemon (a client that goes away cancels nothing), the last 100 kept in memory |
//! | [`tasks`] | the pass (walks, evaluation, findings, the reaper's act step, gauges) and the cost refresh, both through one runner (lock, run row, outcome, metrics, skipped ticks); a walk's pages reach the store through a bounded channel to a persister task (one page written at a time on SQLite, three on PostgreSQL, a new scope's as plain inserts first); the retention purge (`[retention]`'s horizons to cut-offs, batches, `ephemera_store_purged_rows_total`), run by the daemon hourly |
//! | [`mail`] | email from the store's outbox: expiry warnings, owner digests, deletion notices, on-call summary; templates ([`mail::render`], pure), SMTP ([`mail::transport`], lettre), roll-up, delivery with back-off and quiet hours; a row is marked sent only after the server accepted it; the webhook deliverer ([`mail::webhook`]: due events and Slack messages POSTed, fenced like mail, back-off, dead letters); Slack's Block Kit ([`mail::slack`], pure), with or without `[smtp]` |
//! | [`webhook`] | webhooks: `[[webhooks]]` endpoints with their secrets, events (the vocabulary is [`model::EventKind`]) queued as outbox rows per endpoint that wants them, the HMAC-SHA256 signature |
//! | [`scheduler`] | cron (tokio-cron-scheduler, UTC) |
//! | [`cli`] | the `ephemera` command line: the argument surface in `cli/mod.rs`, one file per command group (`admin`, `lease` with `lease run`, `scan`, `reap`, `audit`, `cost`, `iam_policy`, `store`), a typed API client (`client`) and terminal rendering (`output`: comfy-table, csv, shlex) |
//! | [`clock`] | the only reader of the wall clock |
//! | [`live`] | a value replaced whole on reload (config, rules, principals); readers keep the version they took |
//! | [`logging`] | tracing set-up (human or JSON) |
//! | [`tls`] | the API's certificate and key (PEM files, checked to match) and the holder handshakes read them from, swapped on reload; rustls with aws-lc-rs |
//!
//! # Layers
//!
//! A module imports only modules of a lower layer (the unit test in `src/layering.rs` reads
//! every `crate::` path and fails on one that goes sideways or up), so the module graph has no
//! cycle. Types two layers share live in the lower one: a lease's record and state math, the
//! identity tags, mail kinds, money and resource types in [`model`]; a pass's report in
//! [`resource`]. The mailer is fed finished passes through a bounded channel
//! ([`tasks::Tasks::follow_passes`]), so [`tasks`] does not know it.
//!
//! | layer | name | modules |
//! |---|---|---|
//! | 0 | foundation | [`audit`], [`clock`], [`diagnostic`], [`live`], [`logging`], [`tls`] |
//! | 1 | domain words | [`model`] |
//! | 2 | domain records | [`auth`], [`resource`] |
//! | 3 | settings | [`config`] |
//! | 4 | rules | [`policy`] |
//! | 5 | infrastructure | [`metrics`], [`oidc`], [`store`] |
//! | 6 | events | [`webhook`] |
//! | 7 | services | [`inventory`], [`leader`], [`lease`] |
//! | 8 | spend and deletion | [`cost`], [`reaper`] |
//! | 9 | consumers of a pass | [`canary`], [`iam`], [`mail`] |
//! | 10 | task runner | [`tasks`] |
//! | 11 | schedulers | [`jobs`], [`scheduler`] |
//! | 12 | API | [`http`] |
//! | 13 | wiring | [`daemon`] |
//! | 14 | command line | [`cli`] |
//!
//! # Invariants
//!
//! - Pure code (lease state math, policy decisions, evaluation) takes `now`; only [`clock`]
//!   reads the wall clock.
//! - Only [`store`] knows SQL; its calls run on blocking threads (reads) or the writer thread
//!   (writes) and never hold a connection across `.await`. Read-check-write sequences (quota,
//!   renew, release) are atomic (one transaction; on PostgreSQL acquires go in only if the
//!   server, under the project's lock, still finds room for them, and a renewal or release
//!   writes only over the row version it read, or over what this process's last write of it
//!   left), and
//!   the API answers only after the commit is durable.
//! - Only [`http`] knows axum and JSON DTOs; errors map to a status and a stable code in one place.
//! - Metric labels come from bounded sets; no lease id, ARN or resource id is ever a label.
//! - Tokens are hashed the moment they are read, and ID tokens are verified, never stored;
//!   nothing prints one. The audit key never
//!   leaves [`audit`] in clear.
//! - A lease id is parsed ([`model::LeaseId::parse_loose`]) before it is compared; never
//!   compared as a string.
//! - Whatever deletes (a pass, on-call reaping) holds the store's act lock, in any process, and
//!   every delete is fenced on it.
//! - UTC everywhere; durations are written `90m`, `2h`, `7d`.

pub mod audit;
pub mod auth;
pub mod canary;
pub mod cli;
pub mod clock;
pub mod config;
pub mod cost;
pub mod daemon;
pub mod diagnostic;
pub mod http;
pub mod iam;
pub mod inventory;
pub mod jobs;
#[cfg(test)]
mod layering;
pub mod leader;
pub mod lease;
pub mod live;
pub mod logging;
pub mod mail;
pub mod metrics;
pub mod model;
pub mod oidc;
pub mod policy;
pub mod reaper;
pub mod resource;
pub mod scheduler;
pub mod store;
pub mod tasks;
pub mod tls;
pub mod webhook;

/// An error and its sources, joined by `: `, for logging once where handled.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

// Every binary that links the library (the daemon, tests, benches) allocates through mimalloc:
// the pass allocates records on the walk's thread and frees them on the store's, which glibc's
// arenas serialise on a lock.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
