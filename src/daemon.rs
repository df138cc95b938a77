//! The daemon: wires config, policy, store, registry and HTTP together and serves until told
//! to stop.
//!
//! Architecture Invariant: `serve` takes an already-bound listener and a shutdown future, so
//! tests run real daemons on port 0 in-process; nothing here reads global state.

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::audit::{AuditKey, AuditKeyError, AuditKeySource};
use crate::auth::Principals;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::http::{self, AppState};
use crate::lease::LeaseRegistry;
use crate::live::Live;
use crate::metrics::Metrics;
use crate::policy::Policy;
use crate::store::Store;
use crate::tasks::Tasks;

/// Loads the policy the config points at and checks the two agree.
pub fn load_policy(config: &Config) -> anyhow::Result<Policy> {
    let policy = Policy::load(&config.rules.dir)?;
    policy.check_config(config).map_err(anyhow::Error::msg)?;
    Ok(policy)
}

/// What the daemon and `scan --once` both stand on: the validated policy, the open store,
/// the metrics and the task runner.
#[derive(Debug)]
pub struct Parts {
    pub config: Arc<Config>,
    pub policy: Live<Policy>,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub tasks: Tasks,
}

/// Loads the policy, opens the store and builds the tasks; touches no network.
pub async fn open(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Parts> {
    let policy = Live::new(load_policy(&config)?);
    let store = Store::open_at(&config.store.location)
        .await
        .with_context(|| format!("cannot open the store at {}", config.store.location))?;
    let key = audit_key(&config, store.audit_key_id().await?)?;
    let store = store.with_audit_key(key);
    store
        .start_keyed_audit_chain(clock.now())
        .await
        .context("cannot start the keyed audit chain")?;
    let metrics = Arc::new(Metrics::new());
    metrics.start_known_series(&config.enforcement.deletable_types, &config.discovery.types);
    let config = Arc::new(config);
    let tasks = Tasks::new(
        config.clone(),
        policy.clone(),
        store.clone(),
        metrics.clone(),
        clock,
    );
    Ok(Parts {
        config,
        policy,
        store,
        metrics,
        tasks,
    })
}

/// The audit chain's key: read, or created when missing and the store's chain was never keyed
/// (`chain_key_id`: the id of the key that keyed it). Refuses a missing or different key for a
/// keyed chain: a new key could verify none of it, and would break the chain at once.
fn audit_key(config: &Config, chain_key_id: Option<String>) -> anyhow::Result<AuditKey> {
    let source = &config.audit.key;
    let key = match (AuditKey::load(source), &chain_key_id) {
        (Err(AuditKeyError::Missing { .. }), Some(id)) => anyhow::bail!(
            "no audit key at {source}, but the store's audit chain is keyed with key id {id}: \
             restore that key (a new one could verify none of the log)"
        ),
        (Err(AuditKeyError::Missing { .. }), None) => {
            let (key, created) = AuditKey::load_or_create(source)?;
            if let (true, AuditKeySource::File(path)) = (created, source) {
                tracing::warn!(
                    key_file = %path.display(),
                    "created a new audit key: BACK IT UP, and keep the copy away from the \
                     store's backups; without it the audit log cannot be verified, and whoever \
                     holds it can rewrite the log"
                );
            }
            key
        }
        (other, _) => other?,
    };
    if let Some(id) = chain_key_id.filter(|id| *id != key.id()) {
        anyhow::bail!(
            "the audit key at {source} has key id {}, but the store's audit chain is keyed with \
             key id {id}: configure that key",
            key.id()
        );
    }
    Ok(key)
}

/// Runs the daemon on `listener` with the system clock until `shutdown` resolves.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve(config, listener, shutdown, Arc::new(SystemClock)).await
}

/// Like [`run`], with an injected clock.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<()> {
    let Parts {
        config,
        policy,
        store,
        metrics,
        tasks,
    } = open(config, clock.clone()).await?;
    let webhooks =
        crate::webhook::Webhooks::new(&config.webhooks).context("cannot set up webhooks")?;
    let leases = LeaseRegistry::new(
        store.clone(),
        policy.clone(),
        config.tags.clone(),
        clock.clone(),
        metrics.clone(),
    )
    .with_webhooks(webhooks.clone());
    tasks.close_interrupted_runs().await;
    // Gauges reflect the store from the start, not only after the first pass.
    read_estate_gauges(&tasks, &store, &metrics).await;
    let mailer = crate::mail::Mailer::new(
        &config,
        policy.clone(),
        store.clone(),
        metrics.clone(),
        clock.clone(),
    )
    .context("cannot set up mail")?;
    // Before anything acts on a lease (mail, passes, the API): the time we were down is not
    // the lessees' to pay, and that includes the start-up above (it can take seconds on a
    // busy host), so it is credited here, right before serving, not when the store opened.
    credit_downtime(&store, &metrics, clock.as_ref(), true).await;
    let (stop_alive, alive_stopped) = tokio::sync::watch::channel(false);
    let alive_loop = tokio::spawn(keep_alive(
        store.clone(),
        metrics.clone(),
        clock.clone(),
        alive_stopped,
    ));
    // Of the replicas on one store, the leader alone runs the scheduled passes, cost
    // refreshes, mail delivery and the purge (on SQLite, the only process leads).
    let (stop_leading, leading_stopped) = tokio::sync::watch::channel(false);
    let (leadership, leader_loop) =
        crate::leader::start(store.clone(), metrics.clone(), leading_stopped);
    // A replica that takes over exports the estate from the store at once, not after its
    // first pass: a dashboard does not go blank on failover.
    let mut elections = leadership.changes();
    let estate_loop = {
        let (tasks, store, metrics) = (tasks.clone(), store.clone(), metrics.clone());
        tokio::spawn(async move {
            while elections.changed().await.is_ok() {
                if *elections.borrow_and_update() {
                    read_estate_gauges(&tasks, &store, &metrics).await;
                }
            }
        })
    };
    let (stop_mail, mail_stopped) = tokio::sync::watch::channel(false);
    let mail_loop = mailer.map(|m| {
        if let Some(passes) = tasks.follow_passes() {
            tokio::spawn(m.clone().follow(passes));
        }
        match m.transport() {
            Some(t) => tracing::info!(relay = %t.relay(), "mail delivery on"),
            None => tracing::info!("notices on (Slack only: no [smtp])"),
        }
        tokio::spawn(m.run(leadership.clone(), mail_stopped))
    });
    let (stop_hooks, hooks_stopped) = tokio::sync::watch::channel(false);
    let hook_loop = crate::mail::webhook::Deliverer::new(
        webhooks.clone(),
        config.slack.as_ref(),
        store.clone(),
        metrics.clone(),
        clock.clone(),
    )
    .context("cannot set up webhook delivery")?
    .map(|d| {
        tracing::info!(
            endpoints = config.webhooks.len(),
            slack = config.slack.is_some(),
            "webhook delivery on"
        );
        tokio::spawn(d.run(leadership.clone(), hooks_stopped))
    });
    let (stop_canary, canary_stopped) = tokio::sync::watch::channel(false);
    let canary_loop = match &config.canary {
        Some(c) => {
            // Its own project, so its resources are never anyone else's: it must exist.
            let known = crate::model::ProjectName::parse(&c.project)
                .ok()
                .is_some_and(|p| policy.get().project(&p).is_some());
            anyhow::ensure!(
                known,
                "{}: [canary] project `{}` is not a project of the rules in {}",
                config.path.display(),
                c.project,
                config.rules.dir.display()
            );
            let canary = crate::canary::Canary::new(
                &config,
                c.clone(),
                policy.clone(),
                leases.clone(),
                tasks.clients().clone(),
                store.clone(),
                metrics.clone(),
                webhooks.clone(),
            );
            tracing::info!(
                targets = c.targets.len(),
                every = %c.every,
                slo = %c.slo,
                "lifecycle canary on"
            );
            Some(tokio::spawn(canary.run(leadership.clone(), canary_stopped)))
        }
        None => None,
    };
    let scheduler = crate::scheduler::start(
        tasks.clone(),
        leadership.clone(),
        &config.schedules,
        &metrics,
        clock.now(),
    )
    .await?;
    let (stop_purge, purge_stopped) = tokio::sync::watch::channel(false);
    let purge_loop = tokio::spawn(purge_loop(
        tasks.clone(),
        leadership.clone(),
        std::time::Duration::from_secs(config.retention.purge_every.as_secs()),
        purge_stopped,
    ));
    let reap_jobs = crate::jobs::ReapJobs::new(tasks.clone(), clock.clone());
    let principals = Live::new(Principals::new(config.principals.clone()));
    let oidc = crate::oidc::Oidc::new(&config.oidc_issuers, clock.clone())
        .context("cannot set up the OIDC client")?;
    // The files were checked when the config was validated; read again for the key itself.
    let server_cert = config
        .api
        .tls
        .as_ref()
        .map(|t| crate::tls::load(&t.cert, &t.key).map(crate::tls::ServerCert::new))
        .transpose()
        .context("cannot set up TLS for the API")?;
    let reloader = Arc::new(Reloader {
        running: tokio::sync::Mutex::new(Running {
            config: config.clone(),
            scheduler,
        }),
        server_cert: server_cert.clone(),
        principals: principals.clone(),
        oidc: oidc.clone(),
        policy: policy.clone(),
        tasks: tasks.clone(),
        leadership: leadership.clone(),
        metrics: metrics.clone(),
        clock: clock.clone(),
    });
    let hangups = tokio::spawn(reload_on_sighup(reloader.clone()));
    let state = AppState {
        leases,
        principals,
        oidc,
        metrics,
        store,
        tasks,
        reap_jobs: reap_jobs.clone(),
        leadership: leadership.clone(),
        reload: Some(reloader.clone()),
    };
    let api = &config.api;
    let app = http::router(
        state,
        http::RequestLimits {
            max_body_bytes: api.max_body_bytes,
            request_timeout: std::time::Duration::from_secs(api.request_timeout.as_secs()),
            max_concurrent_requests: api.max_concurrent_requests as usize,
        },
    );
    let limits = http::serve::Limits {
        header_read_timeout: std::time::Duration::from_secs(api.header_read_timeout.as_secs()),
        max_connections: api.max_connections as usize,
    };
    let addr = listener
        .local_addr()
        .context("listener has no local address")?;
    tracing::info!(
        %addr,
        tls = server_cert.is_some(),
        config = %config.path.display(),
        store = %config.store.location,
        projects = policy.get().projects().count(),
        principals = config.principals.len(),
        armed = config.enforcement.armed,
        "ephemera daemon serving"
    );
    // A request in flight at shutdown gets the request timeout to finish.
    let drain = std::time::Duration::from_secs(api.request_timeout.as_secs() + 1);
    let tls = server_cert.map(|c| tokio_rustls::TlsAcceptor::from(c.server_config()));
    let served = http::serve::serve(listener, app, limits, tls, shutdown, drain)
        .await
        .context("http server failed");
    // An on-call reap in progress is finished, not cut off, when the daemon stops on purpose.
    reap_jobs.drain().await;
    hangups.abort();
    if let Err(e) = reloader.running.lock().await.scheduler.shutdown().await {
        tracing::warn!(error = %e, "scheduler did not stop cleanly");
    }
    // A purge in progress stops between batches (each is its own commit).
    let _ = stop_purge.send(true);
    let _ = purge_loop.await;
    // A send in progress finishes (bounded by the SMTP timeout) before the daemon exits.
    let _ = stop_mail.send(true);
    if let Some(h) = mail_loop
        && let Err(e) = h.await
    {
        tracing::warn!(error = %e, "mail delivery did not stop cleanly");
    }
    let _ = stop_canary.send(true);
    if let Some(h) = canary_loop {
        let _ = h.await;
    }
    let _ = stop_hooks.send(true);
    if let Some(h) = hook_loop
        && let Err(e) = h.await
    {
        tracing::warn!(error = %e, "webhook delivery did not stop cleanly");
    }
    // Nothing of the leader's runs any more: hand leadership over at once.
    let _ = stop_leading.send(true);
    let _ = leader_loop.await;
    estate_loop.abort();
    // The last beat marks when serving stopped, so the next start credits exactly the gap.
    let _ = stop_alive.send(true);
    let _ = alive_loop.await;
    served?;
    tracing::info!("ephemera daemon stopped");
    Ok(())
}

/// Sets the estate-wide gauges from the store: resources, spend, and when each task last
/// succeeded (a restart, or a new leader, must not look like a task that never succeeded to
/// the staleness alerts).
async fn read_estate_gauges(tasks: &crate::tasks::Tasks, store: &Store, metrics: &Metrics) {
    if let Err(e) = tasks.refresh_gauges().await {
        tracing::error!(error = %crate::error_chain(&e), "cannot compute resource gauges");
    }
    if let Err(e) = tasks.export_spend().await {
        tracing::error!(error = %crate::error_chain(&e), "cannot compute spend gauges");
    }
    let running = store.all_leases().await.map(|ls| {
        ls.into_iter()
            .filter(|l| l.released_at.is_none())
            .collect::<Vec<_>>()
    });
    if let Err(e) = match running {
        Ok(r) => tasks.judge_runtimes(&r, false).await.map(drop),
        Err(e) => Err(e),
    } {
        tracing::error!(error = %crate::error_chain(&e), "cannot judge lease runtimes");
    }
    match store.last_successes().await {
        Ok(done) => {
            for (task, at) in done {
                metrics.task_succeeded(task, at);
            }
        }
        Err(e) => tracing::error!(error = %crate::error_chain(&e), "cannot read the last runs"),
    }
}

/// How often the daemon records that it serves, and the smallest gap credited as downtime
/// at start (a restart within it costs a lessee nothing its heartbeat slack cannot absorb).
const ALIVE_EVERY: std::time::Duration = std::time::Duration::from_secs(2);
const MIN_DOWNTIME: chrono::TimeDelta = chrono::TimeDelta::seconds(2);

/// Records that the registry serves; with `credit`, credits the time since it last did to
/// the leases it could not serve. A failure is logged: the next success credits the gap.
async fn credit_downtime(
    store: &Store,
    metrics: &Metrics,
    clock: &dyn Clock,
    credit: bool,
) -> bool {
    // The gap is measured on the wall clock (real downtime), the leases moved on theirs.
    let wall = SystemClock.now();
    match store
        .registry_serving(wall, clock.now(), credit, MIN_DOWNTIME)
        .await
    {
        Ok(Some((gap, n))) => {
            metrics
                .downtime_credited
                .inc_by(u64::try_from(gap.num_seconds()).unwrap_or(0));
            tracing::warn!(
                downtime_s = gap.num_milliseconds() as f64 / 1000.0,
                leases = n,
                "the registry was not serving; the deadlines of the leases active when it stopped move by that time"
            );
            true
        }
        Ok(None) => true,
        Err(e) => {
            tracing::error!(error = %crate::error_chain(&e), "cannot record that the registry serves");
            false
        }
    }
}

/// Beats every [`ALIVE_EVERY`] until stopped; after a beat that could not be written (the
/// store was failing, and with it every heartbeat), the next one credits the gap.
async fn keep_alive(
    store: Store,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut failed = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(ALIVE_EVERY) => {}
            _ = stop.changed() => {
                credit_downtime(&store, &metrics, clock.as_ref(), false).await;
                return;
            }
        }
        failed = !credit_downtime(&store, &metrics, clock.as_ref(), failed).await;
    }
}

/// The first purge runs this long after start (or after `every`, if sooner): not at once, so
/// a daemon restarted in a loop does not purge on every start, and start-up work goes first.
const PURGE_FIRST_AFTER: std::time::Duration = std::time::Duration::from_secs(120);

/// Purges the store to `[retention]` shortly after start and then every `every` (on the
/// leader), until stopped.
async fn purge_loop(
    tasks: crate::tasks::Tasks,
    leadership: crate::leader::Leadership,
    every: std::time::Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut wait = PURGE_FIRST_AFTER.min(every);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
        if leadership.is_leader() {
            tokio::select! {
                _ = tasks.purge() => {}
                _ = stop.changed() => return,
            }
        }
        wait = every;
    }
}

/// What a reload replaces and what it compares with.
struct Running {
    config: Arc<Config>,
    scheduler: tokio_cron_scheduler::JobScheduler,
}

/// Live reload (SIGHUP, `POST /api/v1/reload`): reads the config file again and its rules,
/// validates both, and only then applies principals, the rules (projects, quotas, allowlist,
/// audit rules), the schedules and the API's certificate and key; on any error the running
/// version stays. Other sections take effect at the next start (the report names those that
/// changed).
struct Reloader {
    /// Also serializes reloads: two at once would race on the scheduler.
    running: tokio::sync::Mutex<Running>,
    /// The API's certificate when it serves HTTPS; `None` for plain HTTP.
    server_cert: Option<crate::tls::ServerCert>,
    principals: Live<Principals>,
    oidc: crate::oidc::Oidc,
    policy: Live<Policy>,
    tasks: Tasks,
    leadership: crate::leader::Leadership,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader").finish_non_exhaustive()
    }
}

impl Reloader {
    async fn apply(&self, by: &str) -> Result<http::dto::ReloadReport, String> {
        let mut running = self.running.lock().await;
        let path = running.config.path.clone();
        let new = Config::load(&path).map_err(|e| crate::error_chain(&e))?;
        let policy = load_policy(&new).map_err(|e| format!("{e:#}"))?;
        // Read again even when the paths are the same: renewing a certificate in place (an
        // ACME client, cert-manager) is the reason to reload. Validating the config checked
        // the pair; a file replaced since then fails here, before anything is applied.
        let new_cert = match (&self.server_cert, &new.api.tls) {
            (Some(_), Some(files)) => Some(
                crate::tls::load(&files.cert, &files.key).map_err(|e| crate::error_chain(&e))?,
            ),
            _ => None,
        };
        let schedules_changed = new.schedules.scan.expr != running.config.schedules.scan.expr
            || new.schedules.cost.expr != running.config.schedules.cost.expr;
        if schedules_changed {
            // The new scheduler first: a cron that cannot be scheduled leaves the old running.
            let fresh = crate::scheduler::start(
                self.tasks.clone(),
                self.leadership.clone(),
                &new.schedules,
                &self.metrics,
                self.clock.now(),
            )
            .await
            .map_err(|e| format!("{e:#}"))?;
            let mut old = std::mem::replace(&mut running.scheduler, fresh);
            if let Err(e) = old.shutdown().await {
                tracing::warn!(error = %e, "the old scheduler did not stop cleanly");
            }
        }
        let restart_needed = restart_needed(&running.config, &new, self.server_cert.is_some());
        let report = http::dto::ReloadReport {
            config: path.display().to_string(),
            principals: new.principals.len() as u64,
            projects: policy.projects().count() as u64,
            schedules_changed,
            tls_reloaded: new_cert.is_some(),
            restart_needed: restart_needed.iter().map(|s| (*s).to_owned()).collect(),
        };
        crate::lease::set_quota_gauges(&self.metrics, &policy);
        self.principals
            .set(Arc::new(Principals::new(new.principals.clone())));
        self.oidc.replace(&new.oidc_issuers);
        self.policy.set(Arc::new(policy));
        if let (Some(cert), Some(key)) = (&self.server_cert, new_cert) {
            cert.replace(key);
        }
        running.config = Arc::new(new);
        tracing::info!(
            by,
            principals = report.principals,
            projects = report.projects,
            schedules_changed,
            tls_reloaded = report.tls_reloaded,
            "config and rules reloaded"
        );
        if !restart_needed.is_empty() {
            tracing::warn!(sections = ?restart_needed, "these config sections changed and take effect at the next start");
        }
        Ok(report)
    }
}

impl http::Reload for Reloader {
    fn reload(&self, by: String) -> http::ReloadFuture<'_> {
        Box::pin(async move {
            let result = self.apply(&by).await;
            let outcome = if result.is_ok() { "applied" } else { "failed" };
            self.metrics
                .config_reloads
                .with_label_values(&[outcome])
                .inc();
            self.metrics
                .config_last_reload_successful
                .set(i64::from(result.is_ok()));
            if let Err(e) = &result {
                tracing::error!(by, error = %e, "reload refused; the running config and rules stay");
            }
            result
        })
    }
}

/// The sections of `new` that differ from `old` and that a reload does not apply; `serving_tls`
/// tells whether the listener speaks TLS (`old` may be a reload that asked for a restart).
fn restart_needed(old: &Config, new: &Config, serving_tls: bool) -> Vec<&'static str> {
    let differs =
        |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| format!("{a:?}") != format!("{b:?}");
    // The certificate's files are read again on every reload, so only turning TLS on or off
    // (another kind of listener) waits for a restart: until then, every reload says so.
    let without_tls = |api: &crate::config::ApiConfig| crate::config::ApiConfig {
        tls: None,
        ..api.clone()
    };
    let mut out = Vec::new();
    for (name, changed) in [
        (
            "api",
            differs(&without_tls(&old.api), &without_tls(&new.api)),
        ),
        ("api.tls", serving_tls != new.api.tls.is_some()),
        ("store", differs(&old.store, &new.store)),
        ("audit", differs(&old.audit, &new.audit)),
        ("rules.dir", old.rules.dir != new.rules.dir),
        ("tags", differs(&old.tags, &new.tags)),
        ("aws", differs(&old.aws, &new.aws)),
        ("discovery", differs(&old.discovery, &new.discovery)),
        ("smtp", differs(&old.smtp, &new.smtp)),
        ("cost", differs(&old.cost, &new.cost)),
        ("enforcement", differs(&old.enforcement, &new.enforcement)),
        ("retention", old.retention != new.retention),
    ] {
        if changed {
            out.push(name);
        }
    }
    out
}

/// Reloads on every SIGHUP until aborted.
async fn reload_on_sighup(reloader: Arc<Reloader>) {
    use http::Reload;
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; reload through POST /api/v1/reload");
        return;
    };
    while hup.recv().await.is_some() {
        let _ = reloader.reload("sighup".into()).await;
    }
}
