//! Prometheus metrics: one registry per daemon, passed explicitly (no global registry, so
//! tests can run several daemons in one process).
//!
//! Architecture Invariant: every label comes from a bounded set (project, state, operation,
//! outcome code, route pattern, method, status, region, resource type, verdict, task, email
//! kind, store table). No
//! lease id, ARN or resource id is ever a label.

use prometheus::core::Collector;
use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use strum::VariantArray;

use crate::model::{
    Decision, MailKind, PurgedTable, ResourceType, RunOutcome, TaskName, WalkOutcome,
};

#[derive(Debug)]
pub struct Metrics {
    pub registry: Registry,
    /// `ephemera_leases{project,state}`, recomputed from the store on each scrape.
    pub leases: IntGaugeVec,
    /// `ephemera_leases_expiring{project}`: active leases ending within the project's warning
    /// window, recomputed on scrape; `ephemera_lease_quota{project}`: `max_active_leases`, set
    /// once from policy at start.
    pub leases_expiring: IntGaugeVec,
    pub lease_quota: IntGaugeVec,
    /// `ephemera_lease_duration_seconds{project}`: acquire to release, observed on release.
    pub lease_duration: HistogramVec,
    /// `ephemera_lease_operations_total{operation,outcome}`; outcome is `ok` or an error code.
    pub lease_operations: IntCounterVec,
    /// `ephemera_leases_overrunning{project}`: active leases older than the project's recent
    /// p95 lease duration times its `overrun_factor` (after each pass).
    pub leases_overrunning: IntGaugeVec,
    /// `ephemera_lease_duration_p95_seconds{project}`: that p95 (projects with enough
    /// released leases in the last 14 days).
    pub lease_duration_p95: GaugeVec,
    /// `ephemera_lease_revivals_total{project}`: leases lapsed by heartbeat that their lessee
    /// revived within the grace.
    pub lease_revivals: IntCounterVec,
    /// `ephemera_downtime_credited_seconds_total`: time the registry was not serving, added
    /// to the deadlines of the leases active when it stopped.
    pub downtime_credited: IntCounter,
    /// `ephemera_oidc_tokens_total{outcome}`: ID tokens presented to the API, by what came of
    /// them ([`OIDC_OUTCOMES`]; the reason of a refusal is logged at debug).
    pub oidc_tokens: IntCounterVec,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub store_errors: IntCounterVec,
    /// `ephemera_resources{project,region,resource_type,verdict}`, recomputed after each pass.
    pub resources: IntGaugeVec,
    pub findings_opened: IntCounter,
    pub findings_resolved: IntCounter,
    pub scan_duration: Histogram,
    /// `ephemera_walks_total{outcome}`: complete or incomplete.
    pub walks: IntCounterVec,
    /// `ephemera_sweeps_total{resource_type,outcome}`: each type's sweep of an (account,
    /// region), complete or incomplete.
    pub sweeps: IntCounterVec,
    /// `ephemera_never_tagged_found_total{resource_type}`: what sweeps found that the tagging
    /// walk did not list, with no tags (where the list call reads tags).
    pub never_tagged_found: IntCounterVec,
    /// `ephemera_creator_lookups_total{outcome}`: CloudTrail lookups of who made a resource
    /// (found, unknown, error).
    pub creator_lookups: IntCounterVec,
    pub aws_requests: IntCounterVec,
    pub aws_throttled: IntCounter,
    /// `ephemera_expired_resource_hours{project}`.
    pub expired_resource_hours: GaugeVec,
    pub task_last_success: GaugeVec,
    /// `ephemera_task_schedule_interval_seconds{task}`: the cron's longest gap (scheduler).
    pub task_schedule_interval: GaugeVec,
    /// Ticks skipped because the previous run of the task was still going.
    pub task_skipped: IntCounterVec,
    pub task_runs: IntCounterVec,
    /// `ephemera_reap_actions_total{resource_type,outcome}`: would-delete, deleted, skipped,
    /// failed.
    pub reap_actions: IntCounterVec,
    /// Passes (or projects within one) whose deletions a cap halted.
    pub reap_capped: IntCounter,
    /// Lease end to confirmed gone.
    pub teardown_latency: Histogram,
    /// `ephemera_marked_resources{project}`: open findings marked for deletion.
    pub marked_resources: IntGaugeVec,
    /// Billed Cost Explorer requests, and what they cost ($0.01 each).
    pub ce_requests: IntCounter,
    pub ce_cost_usd: prometheus::Counter,
    /// `ephemera_spend_usd{project,region,window}`.
    pub spend_usd: GaugeVec,
    /// `ephemera_task_spend_usd{task,window}`: the top tasks, the rest as `other`.
    pub task_spend_usd: GaugeVec,
    /// `ephemera_waste_usd{project}`: spend after the task's lease ended.
    pub waste_usd: GaugeVec,
    /// `ephemera_cost_allocation_tag_active{tag}`: 1 active, 0 not (attribution reads $0).
    pub cost_tag_active: IntGaugeVec,
    /// `ephemera_emails_sent_total{kind}`: messages the SMTP server accepted.
    pub emails_sent: IntCounterVec,
    /// Failed send attempts (each is retried after a back-off).
    pub email_failures: IntCounter,
    /// `ephemera_webhook_deliveries_total{endpoint,outcome}`: delivery attempts of webhook
    /// events: `delivered` (a 2xx), `failed` (retried later), `dead` (a dead letter now).
    pub webhook_deliveries: IntCounterVec,
    /// `ephemera_stale_credentials{project}`: live IAM entities whose lease ended or is
    /// unknown (see [`stale_credentials`]).
    pub stale_credentials: IntGaugeVec,
    /// `ephemera_canary_stage_seconds{account,region,stage}`: how long each stage of the
    /// last lifecycle canary took (see [`crate::canary`]).
    pub canary_stage_seconds: GaugeVec,
    /// `ephemera_canary_last_success_timestamp_seconds{account,region}`.
    pub canary_last_success: GaugeVec,
    /// `ephemera_canary_up{account,region}`: 1 when the last lifecycle went through, 0 when
    /// it broke.
    pub canary_up: IntGaugeVec,
    /// `ephemera_canary_success_max_age_seconds{account,region}`: the longest a working
    /// canary goes between successes (its interval over all targets plus its SLO).
    pub canary_max_age: GaugeVec,
    /// `ephemera_canary_failures_total{account,region,stage}`: lifecycles broken, by the
    /// stage that broke.
    pub canary_failures: IntCounterVec,
    /// Outbox rows not done with: unsent messages and notices not yet rolled up.
    pub outbox_pending: IntGauge,
    /// `ephemera_resources_by_source{source,verdict}`: live resources by how inventory found
    /// them (tagging, sweep, resource-explorer).
    pub resources_by_source: IntGaugeVec,
    /// `ephemera_audited_accounts`: accounts the last pass audited (static and organization).
    pub audited_accounts: IntGauge,
    /// `ephemera_outbox_dead`: messages the relay refused for good, kept until `mail retry`.
    pub outbox_dead: IntGauge,
    /// `ephemera_teardown_success_ratio{project}`: of the leases that ended within
    /// [`TEARDOWN_WINDOW`] and have had time to be torn down, the share proven torn down.
    pub teardown_success_ratio: GaugeVec,
    /// `ephemera_teardown_settled_leases{project}`: how many leases that ratio is over.
    pub teardown_settled_leases: IntGaugeVec,
    /// `ephemera_account_resources{account,verdict}`: live resources per account, for the
    /// [`TOP_ACCOUNTS`] accounts with the most flagged ones; the rest summed as `other`.
    pub account_resources: IntGaugeVec,
    /// `ephemera_config_reloads_total{outcome}`: reloads of the config and rules (SIGHUP or
    /// the API), `applied` or `failed`.
    pub config_reloads: IntCounterVec,
    /// `ephemera_config_last_reload_successful`: 0 while the last reload was refused (the
    /// running version is older than the files).
    pub config_last_reload_successful: IntGauge,
    /// `ephemera_reaping_suspended`: 1 while a restore holds reaping of unknown-lease and
    /// released resources.
    pub reaping_suspended: IntGauge,
    /// `ephemera_leader`: 1 while this replica leads (see [`crate::leader`]).
    pub leader: IntGauge,
    /// `ephemera_store_purged_rows_total{table}`: rows the retention purge deleted.
    pub store_purged_rows: IntCounterVec,
    /// `ephemera_store_purge_last_success_timestamp_seconds`: when a purge last finished
    /// with every table purged.
    pub store_purge_last_success: prometheus::Gauge,
}

fn reg<C: Collector + Clone + 'static>(r: &Registry, c: C) -> C {
    r.register(Box::new(c.clone()))
        .expect("metric names are unique");
    c
}

/// Series about the whole estate rather than one process: read from the store, the same on
/// every replica. Only the leader exports them (see [`Metrics::render_for`]), so dashboards
/// and alerts neither count them once per replica nor lose them on failover (the new leader
/// reads them from the store when it takes over). Per-process series (requests, lease
/// operations, AWS calls, reloads, `ephemera_leader`) come from every replica, with the
/// `instance` label of the scrape.
pub const ESTATE_WIDE: &[&str] = &[
    "ephemera_account_resources",
    "ephemera_audited_accounts",
    "ephemera_canary_last_success_timestamp_seconds",
    "ephemera_canary_stage_seconds",
    "ephemera_canary_success_max_age_seconds",
    "ephemera_canary_up",
    "ephemera_cost_allocation_tag_active",
    "ephemera_expired_resource_hours",
    "ephemera_lease_quota",
    "ephemera_leases",
    "ephemera_leases_expiring",
    "ephemera_leases_overrunning",
    "ephemera_lease_duration_p95_seconds",
    "ephemera_marked_resources",
    "ephemera_outbox_dead",
    "ephemera_outbox_pending",
    "ephemera_reaping_suspended",
    "ephemera_resources",
    "ephemera_resources_by_source",
    "ephemera_spend_usd",
    "ephemera_stale_credentials",
    "ephemera_store_purge_last_success_timestamp_seconds",
    "ephemera_task_last_success_timestamp_seconds",
    "ephemera_task_schedule_interval_seconds",
    "ephemera_task_spend_usd",
    "ephemera_teardown_settled_leases",
    "ephemera_teardown_success_ratio",
    "ephemera_waste_usd",
];

/// What came of an ID token: verified and matched to a principal; refused (bad signature,
/// expired, wrong audience, …); verified but matching no one principal; or not checkable
/// because the issuer's keys could not be fetched (503).
pub const OIDC_OUTCOMES: [&str; 4] = ["accepted", "refused", "no-principal", "unavailable"];

fn counters(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    reg(
        r,
        IntCounterVec::new(Opts::new(name, help), labels).expect("valid static metric"),
    )
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    reg(r, IntCounter::new(name, help).expect("valid static metric"))
}

fn int_gauges(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    reg(
        r,
        IntGaugeVec::new(Opts::new(name, help), labels).expect("valid static metric"),
    )
}

fn gauges(r: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    reg(
        r,
        GaugeVec::new(Opts::new(name, help), labels).expect("valid static metric"),
    )
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        let build_info = int_gauges(
            &r,
            "ephemera_build_info",
            "Always 1; labels carry the build's version",
            &["version"],
        );
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        Metrics {
            leases: int_gauges(
                &r,
                "ephemera_leases",
                "Leases by project and state (active, expired, released)",
                &["project", "state"],
            ),
            leases_expiring: int_gauges(
                &r,
                "ephemera_leases_expiring",
                "Active leases ending within their project's warning window",
                &["project"],
            ),
            lease_quota: int_gauges(
                &r,
                "ephemera_lease_quota",
                "The project's max_active_leases (projects with a quota only)",
                &["project"],
            ),
            lease_duration: reg(
                &r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "ephemera_lease_duration_seconds",
                        "From acquire to release, observed when a lease is released",
                    )
                    // 1m, 5m, 15m, 30m, 1h, 2h, 4h, 8h, 12h, 1d, 2d, 3d, 7d, 14d.
                    .buckets(vec![
                        60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 43200.0,
                        86400.0, 172800.0, 259200.0, 604800.0, 1209600.0,
                    ]),
                    &["project"],
                )
                .expect("valid static metric"),
            ),
            lease_operations: counters(
                &r,
                "ephemera_lease_operations_total",
                "Lease operations by operation and outcome (ok or the error code)",
                &["operation", "outcome"],
            ),
            leases_overrunning: int_gauges(
                &r,
                "ephemera_leases_overrunning",
                "Active leases older than the project's recent p95 lease duration times its overrun_factor",
                &["project"],
            ),
            lease_duration_p95: reg(
                &r,
                GaugeVec::new(
                    Opts::new(
                        "ephemera_lease_duration_p95_seconds",
                        "The p95 duration of the project's leases released in the last 14 days (20 at least)",
                    ),
                    &["project"],
                )
                .expect("valid static metric"),
            ),
            lease_revivals: counters(
                &r,
                "ephemera_lease_revivals_total",
                "Leases lapsed by a missed heartbeat that their lessee revived within the grace",
                &["project"],
            ),
            downtime_credited: counter(
                &r,
                "ephemera_downtime_credited_seconds_total",
                "Time the registry was not serving, credited to the deadlines of the leases active when it stopped",
            ),
            oidc_tokens: counters(
                &r,
                "ephemera_oidc_tokens_total",
                "ID tokens presented to the API by outcome (accepted, refused, no-principal, unavailable)",
                &["outcome"],
            ),
            http_requests: counters(
                &r,
                "ephemera_http_requests_total",
                "HTTP requests by route pattern, method and status",
                &["route", "method", "status"],
            ),
            http_duration: reg(
                &r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "ephemera_http_request_duration_seconds",
                        "HTTP request latency by route pattern and method",
                    )
                    .buckets(vec![
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                        5.0,
                    ]),
                    &["route", "method"],
                )
                .expect("valid static metric"),
            ),
            store_errors: counters(
                &r,
                "ephemera_store_errors_total",
                "Store failures by operation",
                &["operation"],
            ),
            resources: int_gauges(
                &r,
                "ephemera_resources",
                "Live resources by project (unknown when none), region, type and verdict, as of the last pass",
                &["project", "region", "resource_type", "verdict"],
            ),
            findings_opened: counter(&r, "ephemera_findings_opened_total", "Findings opened"),
            findings_resolved: counter(&r, "ephemera_findings_resolved_total", "Findings resolved"),
            scan_duration: reg(
                &r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "ephemera_scan_duration_seconds",
                        "Duration of audit passes",
                    )
                    .buckets(vec![
                        1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 3600.0,
                    ]),
                )
                .expect("valid static metric"),
            ),
            walks: counters(
                &r,
                "ephemera_walks_total",
                "Inventory walks of (account, region) by outcome",
                &["outcome"],
            ),
            sweeps: counters(
                &r,
                "ephemera_sweeps_total",
                "Sweeps of one resource type in an (account, region) by its service's list call, by outcome",
                &["resource_type", "outcome"],
            ),
            never_tagged_found: counters(
                &r,
                "ephemera_never_tagged_found_total",
                "Resources a sweep found that the tagging walk did not list and that carry no tags (never tagged), by type",
                &["resource_type"],
            ),
            creator_lookups: counters(
                &r,
                "ephemera_creator_lookups_total",
                "CloudTrail lookups of who made an untagged or unknown-lease resource, by outcome (found, unknown, error)",
                &["outcome"],
            ),
            aws_requests: counters(
                &r,
                "ephemera_aws_requests_total",
                "AWS API calls by service, operation and final outcome (ok, throttled, error)",
                &["service", "operation", "outcome"],
            ),
            aws_throttled: counter(
                &r,
                "ephemera_aws_throttled_total",
                "AWS calls that failed throttled after the SDK's retries",
            ),
            expired_resource_hours: gauges(
                &r,
                "ephemera_expired_resource_hours",
                "Hours since lease end summed over live expired, released and unknown-lease resources",
                &["project"],
            ),
            task_last_success: gauges(
                &r,
                "ephemera_task_last_success_timestamp_seconds",
                "When each task last finished successfully (Unix seconds)",
                &["task"],
            ),
            task_schedule_interval: gauges(
                &r,
                "ephemera_task_schedule_interval_seconds",
                "Nominal interval of each scheduled task: the longest gap between fires of its cron over the next week",
                &["task"],
            ),
            task_skipped: counters(
                &r,
                "ephemera_task_skipped_total",
                "Scheduled ticks skipped because the task was still running",
                &["task"],
            ),
            task_runs: counters(
                &r,
                "ephemera_task_runs_total",
                "Task runs by outcome",
                &["task", "outcome"],
            ),
            reap_actions: counters(
                &r,
                "ephemera_reap_actions_total",
                "Reaper decisions by resource type and outcome (would-delete, deleted, skipped, failed)",
                &["resource_type", "outcome"],
            ),
            reap_capped: counter(
                &r,
                "ephemera_reap_capped_total",
                "Times a deletion cap halted reaping (for a pass, an account or a project)",
            ),
            account_resources: int_gauges(
                &r,
                "ephemera_account_resources",
                "Live resources by account and verdict, as of the last pass: the accounts with the most flagged resources one by one, the rest summed as account=\"other\"",
                &["account", "verdict"],
            ),
            config_reloads: counters(
                &r,
                "ephemera_config_reloads_total",
                "Reloads of the config and rules (SIGHUP or POST /api/v1/reload) by outcome (applied, failed)",
                &["outcome"],
            ),
            config_last_reload_successful: reg(
                &r,
                IntGauge::new(
                    "ephemera_config_last_reload_successful",
                    "0 while the last reload of the config and rules was refused (the daemon runs the version before)",
                )
                .expect("valid metric"),
            ),
            store_purged_rows: counters(
                &r,
                "ephemera_store_purged_rows_total",
                "Rows the retention purge deleted, by table",
                &["table"],
            ),
            store_purge_last_success: reg(
                &r,
                prometheus::Gauge::new(
                    "ephemera_store_purge_last_success_timestamp_seconds",
                    "When the retention purge last finished with every table purged",
                )
                .expect("valid metric"),
            ),
            leader: reg(
                &r,
                IntGauge::new(
                    "ephemera_leader",
                    "1 while this replica leads: it runs the scheduled passes, cost refreshes, mail delivery and the purge",
                )
                .expect("valid metric"),
            ),
            reaping_suspended: reg(
                &r,
                IntGauge::new(
                    "ephemera_reaping_suspended",
                    "1 while reaping of unknown-lease and released resources is suspended after a restore",
                )
                .expect("valid metric"),
            ),
            teardown_latency: reg(
                &r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "ephemera_teardown_latency_seconds",
                        "From lease end to the resource confirmed gone by the reaper",
                    )
                    .buckets(vec![
                        60.0,
                        300.0,
                        900.0,
                        3600.0,
                        3.0 * 3600.0,
                        6.0 * 3600.0,
                        12.0 * 3600.0,
                        86400.0,
                        3.0 * 86400.0,
                        7.0 * 86400.0,
                    ]),
                )
                .expect("valid static metric"),
            ),
            marked_resources: int_gauges(
                &r,
                "ephemera_marked_resources",
                "Live resources marked for deletion (open reap findings with a deadline)",
                &["project"],
            ),
            ce_requests: counter(
                &r,
                "ephemera_ce_requests_total",
                "Billed Cost Explorer API requests",
            ),
            ce_cost_usd: reg(
                &r,
                prometheus::Counter::new(
                    "ephemera_ce_cost_usd_total",
                    "What the Cost Explorer requests cost ($0.01 each)",
                )
                .expect("valid static metric"),
            ),
            spend_usd: gauges(
                &r,
                "ephemera_spend_usd",
                "Spend by project tag (untagged: no project tag) and region over a window (month to date, or the rolling window)",
                &["project", "region", "window"],
            ),
            task_spend_usd: gauges(
                &r,
                "ephemera_task_spend_usd",
                "Spend of the top tasks by task tag (the rest summed as other) over a window",
                &["task", "window"],
            ),
            waste_usd: gauges(
                &r,
                "ephemera_waste_usd",
                "Spend of tasks after their lease expired or was released, over the rolling window",
                &["project"],
            ),
            cost_tag_active: int_gauges(
                &r,
                "ephemera_cost_allocation_tag_active",
                "Whether an identity tag is an active cost allocation tag (0: its spend reads as untagged)",
                &["tag"],
            ),
            emails_sent: counters(
                &r,
                "ephemera_emails_sent_total",
                "Emails accepted by the SMTP server, by kind",
                &["kind"],
            ),
            email_failures: counter(
                &r,
                "ephemera_email_failures_total",
                "Failed attempts at sending an email (retried after a back-off)",
            ),
            webhook_deliveries: counters(
                &r,
                "ephemera_webhook_deliveries_total",
                "Webhook delivery attempts by endpoint and outcome (delivered, failed and retried, dead)",
                &["endpoint", "outcome"],
            ),
            stale_credentials: int_gauges(
                &r,
                "ephemera_stale_credentials",
                "Live IAM entities (roles, instance profiles, policies, OIDC providers) whose lease ended or is unknown",
                &["project"],
            ),
            canary_stage_seconds: reg(
                &r,
                GaugeVec::new(
                    Opts::new(
                        "ephemera_canary_stage_seconds",
                        "How long each stage of the last lifecycle canary took",
                    ),
                    &["account", "region", "stage"],
                )
                .expect("valid static metric"),
            ),
            canary_last_success: reg(
                &r,
                GaugeVec::new(
                    Opts::new(
                        "ephemera_canary_last_success_timestamp_seconds",
                        "When the lifecycle canary last went through every stage within its SLO",
                    ),
                    &["account", "region"],
                )
                .expect("valid static metric"),
            ),
            canary_up: int_gauges(
                &r,
                "ephemera_canary_up",
                "1 when the last lifecycle canary went through, 0 when it broke",
                &["account", "region"],
            ),
            canary_max_age: reg(
                &r,
                GaugeVec::new(
                    Opts::new(
                        "ephemera_canary_success_max_age_seconds",
                        "The longest a working canary goes between successes",
                    ),
                    &["account", "region"],
                )
                .expect("valid static metric"),
            ),
            canary_failures: counters(
                &r,
                "ephemera_canary_failures_total",
                "Lifecycle canaries broken, by the stage that broke",
                &["account", "region", "stage"],
            ),
            outbox_pending: reg(
                &r,
                IntGauge::new(
                    "ephemera_outbox_pending",
                    "Outbox rows not done with: unsent emails and notices not yet rolled up",
                )
                .expect("valid static metric"),
            ),
            resources_by_source: reg(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "ephemera_resources_by_source",
                        "Live resources by how inventory found them (tagging walk, sweep of never-tagged resources, Resource Explorer) and verdict",
                    ),
                    &["source", "verdict"],
                )
                .expect("valid static metric"),
            ),
            audited_accounts: reg(
                &r,
                IntGauge::new(
                    "ephemera_audited_accounts",
                    "Accounts the last pass audited: the static ones and those AWS Organizations listed",
                )
                .expect("valid static metric"),
            ),
            outbox_dead: reg(
                &r,
                IntGauge::new(
                    "ephemera_outbox_dead",
                    "Dead letters: messages the SMTP relay refused for good (or that cannot be built), kept unsent until `ephemera mail retry`",
                )
                .expect("valid static metric"),
            ),
            teardown_success_ratio: gauges(
                &r,
                "ephemera_teardown_success_ratio",
                "Of the leases that ended in the last 7 days and had time to be torn down, the share whose every resource a complete pass confirmed gone",
                &["project"],
            ),
            teardown_settled_leases: int_gauges(
                &r,
                "ephemera_teardown_settled_leases",
                "Leases ephemera_teardown_success_ratio is computed over",
                &["project"],
            ),
            registry: r,
        }
    }

    /// Records that `task` last succeeded at `at`.
    pub fn task_succeeded(&self, task: TaskName, at: chrono::DateTime<chrono::Utc>) {
        self.task_last_success
            .with_label_values(&[task.as_str()])
            .set(at.timestamp_millis() as f64 / 1000.0);
    }

    /// Creates, at 0, the series of labelled counters whose label values are known before
    /// anything happens: Prometheus sees no increase in a series' first sample, so a counter
    /// born on its first event would hide that event from `increase()` and `rate()`.
    pub fn start_known_series(&self, deletable_types: &[ResourceType], swept: &[ResourceType]) {
        for outcome in WalkOutcome::VARIANTS {
            self.walks.with_label_values(&[outcome.as_str()]);
            for t in swept {
                self.sweeps
                    .with_label_values(&[t.as_str(), outcome.as_str()]);
            }
        }
        for t in swept {
            self.never_tagged_found.with_label_values(&[t.as_str()]);
        }
        for outcome in ["applied", "failed"] {
            self.config_reloads.with_label_values(&[outcome]);
        }
        for outcome in OIDC_OUTCOMES {
            self.oidc_tokens.with_label_values(&[outcome]);
        }
        self.config_last_reload_successful.set(1);
        for outcome in ["found", "unknown", "error"] {
            self.creator_lookups.with_label_values(&[outcome]);
        }
        for kind in MailKind::MESSAGES {
            self.emails_sent.with_label_values(&[kind.as_str()]);
        }
        for table in PurgedTable::VARIANTS {
            self.store_purged_rows.with_label_values(&[table.as_str()]);
        }
        for t in deletable_types {
            for outcome in [
                Decision::WouldDelete,
                Decision::Deleted,
                Decision::Skipped,
                Decision::Failed,
            ] {
                self.reap_actions
                    .with_label_values(&[t.as_str(), outcome.as_str()]);
            }
        }
        use {RunOutcome::*, TaskName::*};
        for (task, outcome) in [
            (Scan, Success),
            (Scan, Partial),
            (Scan, Failed),
            (Cost, Success),
            (Cost, Failed),
        ] {
            self.task_runs
                .with_label_values(&[task.as_str(), outcome.as_str()]);
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        self.render_for(true)
    }

    /// The text exposition format as a replica exports it: the leader everything, a follower
    /// all but the [`ESTATE_WIDE`] series (the leader's; a sum over replicas counts each
    /// once).
    pub fn render_for(&self, leader: bool) -> String {
        let mut families = self.registry.gather();
        if !leader {
            families.retain(|f| !ESTATE_WIDE.contains(&f.name()));
        }
        let mut buf = Vec::new();
        // Encoding into a Vec only fails on invalid metric data, which the types rule out.
        if let Err(e) = TextEncoder::new().encode(&families, &mut buf) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// The label sets a recomputed gauge was given, so that a set which vanishes reads zero for
/// [`ZEROED_UPDATES`] updates (a dashboard sees it drop, not freeze at its last value) and is
/// then removed: label sets churned by tasks and accounts must not pile up forever.
#[derive(Debug, Default)]
pub struct Series(std::sync::Mutex<std::collections::BTreeMap<Vec<String>, u32>>);

/// Updates a vanished label set is kept at zero before it is removed.
pub const ZEROED_UPDATES: u32 = 3;

/// How far back the teardown ratio looks.
pub const TEARDOWN_WINDOW: chrono::TimeDelta = chrono::TimeDelta::days(7);

/// Per project, of the leases `(project, ended at, torn down)` that ended within
/// [`TEARDOWN_WINDOW`] before `now` and at least `settle(project)` ago (time for the grace,
/// the deletion and the confirming pass): how many, and the share torn down.
pub fn teardown_ratios<'a>(
    ended: impl IntoIterator<Item = (&'a str, chrono::DateTime<chrono::Utc>, bool)>,
    now: chrono::DateTime<chrono::Utc>,
    settle: impl Fn(&str) -> chrono::TimeDelta,
) -> Vec<(String, u64, f64)> {
    let mut by_project: std::collections::BTreeMap<&str, (u64, u64)> = Default::default();
    for (project, at, done) in ended {
        if at < now - TEARDOWN_WINDOW || at > now - settle(project) {
            continue;
        }
        let e = by_project.entry(project).or_default();
        e.0 += 1;
        e.1 += u64::from(done);
    }
    by_project
        .into_iter()
        .map(|(p, (n, done))| (p.to_owned(), n, done as f64 / n as f64))
        .collect()
}

/// Accounts exported one by one in `ephemera_account_resources`; the rest are `other`. A
/// static config lists fewer; an organization of hundreds would make a series per account.
pub const TOP_ACCOUNTS: usize = 50;

/// `ephemera_stale_credentials{project}` from the live `[project, region, type, verdict]`
/// counts: IAM entities (every `iam:` type: roles, instance profiles, users, access keys,
/// policies, OIDC providers) whose lease ended or is unknown, which can still grant access.
pub fn stale_credentials(series: &[([String; 4], u64)]) -> Vec<(Vec<String>, i64)> {
    use std::collections::BTreeMap;
    let mut out: BTreeMap<Vec<String>, i64> = BTreeMap::new();
    for ([project, _, resource_type, verdict], n) in series {
        let stale = matches!(
            crate::model::Verdict::parse(verdict),
            Some(
                crate::model::Verdict::Expired
                    | crate::model::Verdict::Released
                    | crate::model::Verdict::UnknownLease
            )
        );
        if stale && resource_type.starts_with("iam:") {
            *out.entry(vec![project.clone()]).or_default() += i64::try_from(*n).unwrap_or(i64::MAX);
        }
    }
    out.into_iter().collect()
}

/// Folds `[account, verdict]` counts to the [`TOP_ACCOUNTS`] accounts with the most flagged
/// resources (verdicts that open findings; ties by total, then id), the rest into `other`.
pub fn top_accounts(counts: Vec<([String; 2], u64)>) -> Vec<(Vec<String>, i64)> {
    use std::collections::{BTreeMap, HashMap};
    let mut rank: HashMap<&str, (u64, u64)> = HashMap::new();
    for ([account, verdict], n) in &counts {
        let r = rank.entry(account.as_str()).or_default();
        let flagged = crate::model::Verdict::parse(verdict).is_some_and(|v| v.is_finding());
        if flagged {
            r.0 += n;
        }
        r.1 += n;
    }
    let mut order: Vec<(&str, (u64, u64))> = rank.into_iter().collect();
    order.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let kept: std::collections::HashSet<String> = order
        .iter()
        .take(TOP_ACCOUNTS)
        .map(|(a, _)| (*a).to_owned())
        .collect();
    let mut out: BTreeMap<Vec<String>, i64> = BTreeMap::new();
    for ([account, verdict], n) in counts {
        let account = if kept.contains(&account) {
            account
        } else {
            "other".to_owned()
        };
        *out.entry(vec![account, verdict]).or_default() += i64::try_from(n).unwrap_or(i64::MAX);
    }
    out.into_iter().collect()
}

impl Series {
    /// Sets `gauge` to `values`; a label set given before but not now reads zero for
    /// [`ZEROED_UPDATES`] updates, then is removed.
    pub fn set<P: prometheus::core::Atomic>(
        &self,
        gauge: &prometheus::core::GenericGaugeVec<P>,
        values: Vec<(Vec<String>, P::T)>,
    ) {
        self.update(gauge, values, ZEROED_UPDATES);
    }

    /// Like [`Series::set`], but label sets that vanished are removed at once rather than
    /// zeroed: for a ratio, zero is a value (everything failed), not an absence.
    pub fn replace(&self, gauge: &GaugeVec, values: Vec<(Vec<String>, f64)>) {
        self.update(gauge, values, 0);
    }

    /// Sets `values`; a vanished label set reads zero for `zeroed` updates, then is removed.
    fn update<P: prometheus::core::Atomic>(
        &self,
        gauge: &prometheus::core::GenericGaugeVec<P>,
        values: Vec<(Vec<String>, P::T)>,
        zeroed: u32,
    ) {
        use prometheus::core::Number;
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let now: std::collections::BTreeSet<Vec<String>> =
            values.iter().map(|(k, _)| k.clone()).collect();
        seen.retain(|k, absent| {
            if now.contains(k) {
                *absent = 0;
                return true;
            }
            *absent += 1;
            if *absent > zeroed {
                // Already gone from the registry is fine.
                let _ = gauge.remove_label_values(&labels(k));
                false
            } else {
                gauge.with_label_values(&labels(k)).set(P::T::from_i64(0));
                true
            }
        });
        for (k, v) in values {
            gauge.with_label_values(&labels(&k)).set(v);
            seen.entry(k).or_insert(0);
        }
    }
}

fn labels(k: &[String]) -> Vec<&str> {
    k.iter().map(String::as_str).collect()
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A follower's exposition leaves out exactly the estate-wide series, each of which
    /// exists (a misspelt name would filter nothing).
    #[test]
    fn a_follower_exports_no_estate_wide_series() {
        let m = Metrics::new();
        m.start_known_series(&[], &[]);
        m.resources
            .with_label_values(&["web", "eu-west-1", "sqs:queue", "expired"])
            .set(3);
        m.task_succeeded(crate::model::TaskName::Scan, chrono::Utc::now());
        m.lease_operations
            .with_label_values(&["acquire", "ok"])
            .inc();
        let names = |text: &str| -> std::collections::BTreeSet<String> {
            text.lines()
                .filter_map(|l| l.strip_prefix("# TYPE "))
                .filter_map(|l| l.split(' ').next())
                .map(str::to_owned)
                .collect()
        };
        let all = names(&m.render_for(true));
        let follower = names(&m.render_for(false));
        for name in ESTATE_WIDE {
            assert!(!follower.contains(*name), "{name}");
        }
        let left_out: Vec<&String> = all.difference(&follower).collect();
        assert!(
            left_out.iter().all(|n| ESTATE_WIDE.contains(&n.as_str())),
            "{left_out:?}"
        );
        assert!(left_out.iter().any(|n| *n == "ephemera_resources"));
        assert!(follower.contains("ephemera_leader"));
        assert!(follower.contains("ephemera_lease_operations_total"));
        // Vectors without a series are not gathered: a name must be one this file defines
        // (once in the list, once where it is registered).
        for name in ESTATE_WIDE {
            assert!(
                include_str!("metrics.rs")
                    .matches(&format!("\"{name}\",\n"))
                    .count()
                    >= 2,
                "{name} is not a metric"
            );
        }
    }

    #[test]
    fn teardown_ratio_counts_settled_leases_in_the_window() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-03-10T00:00:00Z")
            .expect("valid")
            .to_utc();
        let ago = |h: i64| now - chrono::TimeDelta::hours(h);
        let ended = [
            ("web", ago(25), true),
            ("web", ago(30), false),
            ("web", ago(24 * 7), true), // the window's first instant counts
            ("web", ago(24 * 7 + 1), false), // too old
            ("web", ago(23), false),    // not settled yet (24h for web)
            ("data", ago(47), true),    // not settled yet (48h for data)
            ("data", ago(48), false),   // settled: exactly 48h ago
        ];
        let settle = |p: &str| chrono::TimeDelta::hours(if p == "data" { 48 } else { 24 });
        let got = teardown_ratios(ended.iter().map(|(p, t, d)| (*p, *t, *d)), now, settle);
        assert_eq!(
            got,
            vec![
                ("data".to_owned(), 1, 0.0),
                ("web".to_owned(), 3, 2.0 / 3.0)
            ]
        );
    }

    /// Tasks come and go on every update: the gauge holds the live ones plus at most the
    /// last [`ZEROED_UPDATES`] updates' departed ones, at zero, never the whole history.
    #[test]
    fn churned_label_sets_are_zeroed_then_dropped() {
        let m = Metrics::new();
        let s = Series::default();
        let count = |m: &Metrics| {
            m.render()
                .lines()
                .filter(|l| l.starts_with("ephemera_task_spend_usd{"))
                .count()
        };
        for i in 0..50 {
            s.set(
                &m.task_spend_usd,
                vec![(vec![format!("task-{i}"), "7d".into()], 1.0)],
            );
        }
        assert_eq!(count(&m), 1 + ZEROED_UPDATES as usize);
        let text = m.render();
        assert!(text.contains("task=\"task-48\",window=\"7d\"} 0"), "{text}");
        assert!(!text.contains("task=\"task-45\""), "{text}");
        // One that comes back is live again, and counts from zero absences.
        s.set(
            &m.task_spend_usd,
            vec![(vec!["task-47".into(), "7d".into()], 2.0)],
        );
        assert!(m.render().contains("task=\"task-47\",window=\"7d\"} 2"));
    }

    #[test]
    fn replaced_series_drop_what_vanished() {
        let m = Metrics::new();
        let s = Series::default();
        s.replace(
            &m.teardown_success_ratio,
            vec![(vec!["web".into()], 0.5), (vec!["data".into()], 1.0)],
        );
        s.replace(&m.teardown_success_ratio, vec![(vec!["web".into()], 0.75)]);
        let text = m.render();
        assert!(
            text.contains("ephemera_teardown_success_ratio{project=\"web\"} 0.75"),
            "{text}"
        );
        assert!(!text.contains("project=\"data\""), "{text}");
    }

    /// The accounts with the most flagged resources are kept one by one (ties: more
    /// resources, then the smaller id); the rest are summed per verdict into `other`.
    #[test]
    fn accounts_beyond_the_top_are_folded_into_other() {
        let id = |i: usize| format!("{i:012}");
        let mut counts = Vec::new();
        for i in 0..TOP_ACCOUNTS + 3 {
            // Account i has i expired resources and 100 leased ones.
            counts.push(([id(i), "expired".to_owned()], i as u64));
            counts.push(([id(i), "leased".to_owned()], 100));
        }
        let got = top_accounts(counts);
        let accounts: std::collections::BTreeSet<&str> =
            got.iter().map(|(k, _)| k[0].as_str()).collect();
        assert_eq!(accounts.len(), TOP_ACCOUNTS + 1, "the top and `other`");
        for i in 3..TOP_ACCOUNTS + 3 {
            assert!(accounts.contains(id(i).as_str()), "{i} is in the top");
        }
        let other = |verdict: &str| {
            got.iter()
                .find(|(k, _)| k[0] == "other" && k[1] == verdict)
                .map(|(_, n)| *n)
        };
        // Accounts 0, 1 and 2 have the fewest flagged: 0 + 1 + 2 expired, 300 leased.
        assert_eq!(other("expired"), Some(3));
        assert_eq!(other("leased"), Some(300));
        // Flagged resources rank first: one account of many resources, none flagged, is folded
        // before accounts of one flagged resource each.
        let kept = |counts: Vec<([String; 2], u64)>| -> std::collections::BTreeSet<String> {
            top_accounts(counts)
                .into_iter()
                .map(|(k, _)| k[0].clone())
                .filter(|a| a != "other")
                .collect()
        };
        let mut quiet_but_big = vec![([id(0), "leased".to_owned()], 1000)];
        for i in 1..=TOP_ACCOUNTS {
            quiet_but_big.push(([id(i), "expired".to_owned()], 1));
        }
        let k = kept(quiet_but_big);
        assert!(!k.contains(&id(0)) && k.len() == TOP_ACCOUNTS, "{k:?}");
        // Equal flagged: more resources in all rank first, then the smaller id.
        let mut even = Vec::new();
        for i in 0..=TOP_ACCOUNTS {
            even.push(([id(i), "expired".to_owned()], 1));
        }
        even.push(([id(TOP_ACCOUNTS), "leased".to_owned()], 5));
        let k = kept(even);
        assert!(k.contains(&id(TOP_ACCOUNTS)), "more in all: {k:?}");
        assert!(
            !k.contains(&id(TOP_ACCOUNTS - 1)),
            "the largest id of the rest is folded"
        );
        // A few accounts: every one of them, no `other`.
        let few = top_accounts(vec![([id(1), "expired".into()], 2)]);
        assert_eq!(few, vec![(vec![id(1), "expired".to_owned()], 2)]);
    }

    /// IAM entities of ended or unknown leases count, per project; leased, protected and
    /// untagged ones, and other types, do not.
    #[test]
    fn stale_credentials_are_iam_entities_of_ended_leases() {
        let row = |p: &str, t: &str, v: &str, n: u64| {
            ([p.to_owned(), String::new(), t.to_owned(), v.to_owned()], n)
        };
        let got = stale_credentials(&[
            row("web", "iam:role", "expired", 2),
            row("web", "iam:instance-profile", "released", 1),
            row("web", "iam:role", "leased", 5),
            row("web", "iam:role", "protected", 1),
            row("web", "ec2:volume", "expired", 9),
            row("data", "iam:policy", "unknown-lease", 3),
            row("data", "iam:role", "untagged", 4),
            row("ml", "iam:role", "expiring", 1),
        ]);
        assert_eq!(
            got,
            vec![(vec!["data".to_owned()], 3), (vec!["web".to_owned()], 3)]
        );
    }
}
