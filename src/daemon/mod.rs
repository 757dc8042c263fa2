//! `rostersync daemon`: runs every connector on its schedule until stopped.
//!
//! `scheduler` decides when runs start (one task per connector, a semaphore for
//! `max_concurrent_runs`, retries, catch-up); `runner` is what a run is; `http` serves
//! `/healthz` and `/metrics`; `notify` posts to the webhook. This file wires them to the
//! configuration and to the signals: SIGHUP reloads, SIGTERM/SIGINT stop.

pub mod clock;
pub mod health;
pub mod http;
pub mod metrics;
pub mod notify;
pub mod runner;
pub mod scheduler;
mod shares;
pub mod status_page;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Semaphore;

use crate::config::{self, Config, ConfigError};
use crate::exit::{Classify, Exit};
use crate::state::{self, StateError};
use metrics::Metrics;
use runner::{Runner, SyncRunner};
use scheduler::{Scheduler, Shared};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("{0}")]
    Listen(String),
    #[error("cannot install the signal handlers: {0}")]
    Signals(std::io::Error),
}

/// A wrapped module error keeps its own classification (a state store that cannot be
/// reached is a connection error, exit 3, not "other").
impl Classify for DaemonError {
    fn exit(&self) -> Exit {
        match self {
            DaemonError::Config(e) => e.exit(),
            DaemonError::State(e) => e.exit(),
            DaemonError::Refused(_) => Exit::Config,
            DaemonError::Listen(_) | DaemonError::Signals(_) => Exit::Other,
        }
    }
    fn retriable(&self) -> bool {
        match self {
            DaemonError::State(e) => e.retriable(),
            _ => false,
        }
    }
}

/// What a configuration (re)load means for the scheduler.
#[derive(Debug)]
pub enum Reload {
    /// Keep everything as it is; each line is one problem.
    Keep(Vec<String>),
    /// Schedule exactly `connectors`. `kept` are connectors whose new definition has
    /// problems: their previous one keeps running. `problems` are logged.
    Apply { cfg: Box<Config>, connectors: crate::config::Connectors, kept: Vec<String>, problems: Vec<String> },
}

/// Decides what to do with a freshly loaded configuration. Pure, so it is table-tested.
/// A problem that touches no single connector (the platform, the state store, TOML
/// syntax) keeps the whole previous configuration; a broken connector keeps its previous
/// definition if it had one, and is left out if it is new.
pub fn plan_reload(current: &crate::config::Connectors, loaded: Result<Config, ConfigError>) -> Reload {
    let cfg = match loaded {
        Ok(c) => c,
        Err(e) => return Reload::Keep(vec![e.to_string()]),
    };
    let problems: Vec<String> = cfg.problems.iter().map(|p| p.to_string()).collect();
    if cfg.problems.iter().any(|p| p.connector.is_none()) {
        return Reload::Keep(problems);
    }
    let mut connectors = cfg.connectors.clone();
    let mut kept = Vec::new();
    for name in &cfg.broken {
        if let Some(old) = current.get(name) {
            connectors.insert(name.clone(), old.clone());
            kept.push(name.clone());
        }
    }
    Reload::Apply { cfg: Box::new(cfg), connectors, kept, problems }
}

/// Checks the environment the connectors run in (variables, key and secret files,
/// known_hosts), logs each problem, and tells `/healthz` which connectors cannot run. The
/// connectors stay scheduled: a file put in place later is found by the next run. `kept`
/// are refused connectors whose previous definition keeps running (a reload).
fn preflight(cfg: &Config, health: &health::Health, kept: &[String]) {
    let findings = crate::preflight::environment(cfg, &crate::preflight::System);
    for f in &findings {
        match &f.connector {
            Some(c) => tracing::error!(connector = %c, "{f} (its runs will fail until this is fixed)"),
            None => tracing::error!("{f} (every connector's runs will fail until this is fixed)"),
        }
    }
    let mut blocked = crate::preflight::blocked(cfg, &findings);
    for k in kept {
        blocked.remove(k);
    }
    if !blocked.is_empty() {
        tracing::error!(
            "connectors that cannot run: {}; `rostersync check` says why",
            blocked.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    health.set(cfg.connectors.len() + cfg.broken.len(), blocked);
}

/// How the daemon stopped.
#[derive(Debug, Default)]
pub struct Stopped {
    /// Connectors whose runs outlasted the grace period and were abandoned.
    pub abandoned: Vec<String>,
}

/// Runs the daemon on the configuration at `path` until SIGTERM or SIGINT.
pub async fn serve(path: &Path) -> Result<Stopped, DaemonError> {
    let cfg = config::load(path)?;
    let global: Vec<&config::Problem> = cfg.problems.iter().filter(|p| p.connector.is_none()).collect();
    if !global.is_empty() {
        // Nothing could run without the platform or the state store: refuse to start.
        return Err(ConfigError::Invalid(global.into_iter().cloned().collect()).into());
    }
    for p in &cfg.problems {
        tracing::error!("{p} (connector {} is not scheduled; run `rostersync check`)", p.connector.as_deref().unwrap_or("?"));
    }
    let health = Arc::new(health::Health::default());
    preflight(&cfg, &health, &[]);
    if cfg.platform.is_none() && cfg.connectors.values().all(|c| c.target.is_none()) {
        return Err(DaemonError::Refused(format!(
            "{}: the daemon needs a platform: a [platform] section (kind, base_url, token_env), or [connectors.NAME.platform]",
            cfg.path.display()
        )));
    }

    // Signals first: a SIGTERM that arrives while we start must not kill us half-way.
    let mut hup = signal(SignalKind::hangup()).map_err(DaemonError::Signals)?;
    let mut term = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?;

    let state_shown = crate::redact::redacted(&cfg.state.url);
    tracing::info!(
        version = crate::build_info::VERSION,
        commit = crate::build_info::COMMIT,
        config = %cfg.path.display(),
        state = %state_shown,
        "rostersync {} daemon starting: config {}, state {state_shown}",
        crate::build_info::LONG_VERSION,
        cfg.path.display()
    );
    let store = Arc::new(state::open(&cfg.state).await?);
    // One clock for the fleet: the store's. Measured now (a clock far off is said at start)
    // and again while the daemon runs, which also tells /healthz whether the store answers.
    let store_clock = Arc::new(clock::StoreClock::default());
    clock::check(&*store, &store_clock, &health).await;
    let watcher =
        tokio::spawn(clock::watch(store.clone(), store_clock.clone(), health.clone(), (cfg.state.lease_ttl / 3).min(clock::REMEASURE)));
    let metrics = Arc::new(Metrics::default());
    let board = Arc::new(status_page::Board::new(store.clone()));
    board.set(cfg.connectors.clone(), cfg.problems.iter().map(|p| p.to_string()).collect());
    let server = match cfg.daemon.listen {
        Some(addr) => {
            let l = http::bind(addr).await.map_err(DaemonError::Listen)?;
            tracing::info!("serving the status page, /healthz and /metrics on http://{addr}");
            Some(tokio::spawn(http::serve_with_status(l, metrics.clone(), health.clone(), Some(board.clone()))))
        }
        None => None,
    };
    let webhook = notify::Webhook::new(cfg.platform.as_ref().and_then(|p| p.notify_webhook.clone())).map_err(DaemonError::Refused)?;
    let daemon_cfg = cfg.daemon.clone();
    let state_url = cfg.state.url.clone();
    let cfg = Arc::new(cfg);
    let runner = Arc::new(SyncRunner::new(cfg.clone(), store));
    let heartbeat = tokio::spawn(runner.clone().heartbeat());
    let mut sched = Scheduler::new(Shared {
        runner: runner.clone(),
        clock: clock::Clock::Store(store_clock),
        permits: Arc::new(Semaphore::new(daemon_cfg.max_concurrent_runs)),
        retry: crate::retry::Policy::SCHEDULED_RUN,
        metrics: metrics.clone(),
        notify: webhook.clone(),
    });
    let ch = sched.apply(&cfg.connectors);
    tracing::info!(
        "daemon started (pid {}): {} connector(s) scheduled [{}], at most {} run(s) at once",
        std::process::id(),
        sched.names().len(),
        ch.added.join(", "),
        daemon_cfg.max_concurrent_runs
    );
    let unscheduled: Vec<&str> = cfg.connectors.values().filter(|c| c.schedule.is_none()).map(|c| c.name.as_str()).collect();
    if !unscheduled.is_empty() {
        tracing::info!("without a schedule (run by hand only): {}", unscheduled.join(", "));
    }

    let mut current: crate::config::Connectors = cfg.connectors.clone();
    let path: PathBuf = path.to_path_buf();
    loop {
        tokio::select! {
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading {}", path.display());
                match plan_reload(&current, config::load(&path)) {
                    Reload::Keep(problems) => {
                        metrics.reload(metrics::ReloadResult::Error);
                        for p in &problems {
                            tracing::error!("reload refused: {p}");
                        }
                        tracing::error!("the previous configuration keeps running; fix the problems above and send SIGHUP again");
                    }
                    Reload::Apply { cfg: new, connectors, kept, problems } => {
                        // A connector refused (kept on its previous definition, or left
                        // out when new) is not an "ok" reload: an alert can tell.
                        metrics.reload(if problems.is_empty() { metrics::ReloadResult::Ok } else { metrics::ReloadResult::Partial });
                        for p in &problems {
                            tracing::error!("{p}");
                        }
                        for k in &kept {
                            tracing::error!("connector {k} has problems (above): its previous definition keeps running");
                        }
                        if new.daemon.listen != daemon_cfg.listen || new.daemon.max_concurrent_runs != daemon_cfg.max_concurrent_runs || new.state.url != state_url {
                            tracing::warn!("[daemon] listen, max_concurrent_runs and [state] take effect on restart only");
                        }
                        webhook.set_url(new.platform.as_ref().and_then(|p| p.notify_webhook.clone()));
                        preflight(&new, &health, &kept);
                        runner.set_config(Arc::new(*new));
                        let ch = sched.apply(&connectors);
                        tracing::info!(
                            "configuration reloaded: added [{}], removed [{}], rescheduled [{}]; {} scheduled",
                            ch.added.join(", "), ch.removed.join(", "), ch.rescheduled.join(", "), sched.names().len()
                        );
                        board.set(connectors.clone(), problems.clone());
                        current = connectors;
                    }
                }
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }

    let running = metrics.running();
    tracing::info!(
        "stopping: no new runs; waiting up to {} for {running} run(s) in progress",
        humantime::format_duration(daemon_cfg.grace)
    );
    // A second SIGTERM/SIGINT means "now": stop waiting for the runs in progress.
    let abandoned = tokio::select! {
        a = scheduler::shutdown(&mut sched, daemon_cfg.grace) => a,
        _ = term.recv() => vec![format!("{} run(s) in progress (second signal)", metrics.running())],
        _ = int.recv() => vec![format!("{} run(s) in progress (second signal)", metrics.running())],
    };
    if !abandoned.is_empty() {
        // Their state is consistent (written per operation); leases expire on their own
        // and the next run adopts whatever reached the platform unrecorded.
        tracing::error!("abandoned the runs of {}", abandoned.join(", "));
    }
    if let Some(s) = server {
        s.abort();
    }
    heartbeat.abort();
    watcher.abort();
    tracing::info!("stopped");
    Ok(Stopped { abandoned })
}

#[cfg(test)]
mod tests;
