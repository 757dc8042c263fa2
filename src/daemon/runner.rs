//! What the scheduler starts: one run of one connector. A trait so that the scheduling,
//! concurrency, retry and signal logic is tested with a purpose-built runner; the
//! production one calls `sync::run` against the state store.

use std::future::Future;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use tracing::Instrument;

use crate::config::{Config, Connector};
use crate::report::{Report, RunOutcome};
use crate::state::prelude::*;
use crate::state::{SlotClaim, Store, worker_id};
use crate::sync::{self, RunError, RunResult, SyncOptions};

/// Runs past runs are searched for the last success (catch-up on start).
const HISTORY_DEPTH: u32 = 50;

pub trait Runner: Send + Sync + 'static {
    /// One run; never panics, every failure is in the result.
    fn run(&self, connector: Arc<Connector>) -> impl Future<Output = RunResult> + Send;
    /// One reconcile run (`sync --reconcile`), on the connector's `reconcile` schedule.
    /// A runner that does not tell the two apart runs it as a sync.
    fn reconcile(&self, connector: Arc<Connector>) -> impl Future<Output = RunResult> + Send {
        self.run(connector)
    }
    /// When the connector last ran successfully (None: never, or not in recent history).
    fn last_success(&self, connector: &str) -> impl Future<Output = Option<DateTime<Utc>>> + Send;
    /// A new configuration was accepted (SIGHUP): later runs use it.
    fn set_config(&self, _cfg: Arc<Config>) {}
    /// Claims a scheduled slot (of the connector's syncs, or of its reconcile runs) for this
    /// worker, so that of the daemons sharing a state store one runs it. A runner alone (the
    /// tests' fake) always wins.
    fn claim(&self, _connector: &str, _reconcile: bool, _slot: DateTime<Utc>) -> impl Future<Output = SlotClaim> + Send {
        async { SlotClaim::Won }
    }
    /// The slot won by `claim` has been served (whatever the outcome).
    fn slot_done(&self, _connector: &str, _reconcile: bool, _slot: DateTime<Utc>) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// The production runner: `sync::run` with the current configuration.
pub struct SyncRunner {
    cfg: RwLock<Arc<Config>>,
    store: Arc<Store>,
    /// Per platform target, for the daemon's life: limits shared by every run sending to
    /// it, and what discovery found (refreshed on SIGHUP).
    targets: Arc<crate::platform::targets::Targets>,
}

impl SyncRunner {
    pub fn new(cfg: Arc<Config>, store: Arc<Store>) -> SyncRunner {
        SyncRunner { cfg: RwLock::new(cfg), store, targets: crate::platform::targets::Targets::new() }
    }

    /// This worker's heartbeat, until the process ends: extends its unfinished slot claims
    /// every third of the TTL, so they lapse (and other workers take the slots) only when it
    /// stops beating — killed, frozen, or cut off from the database.
    pub async fn heartbeat(self: Arc<Self>) {
        let ttl = self.store.lease_ttl();
        let mut beat = tokio::time::interval(ttl / 3);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            beat.tick().await;
            if let Err(e) = self.store.renew_slots(&worker_id(), ttl).await {
                tracing::warn!("could not renew this worker's slot claims: {e}");
            }
        }
    }

    fn config(&self) -> Arc<Config> {
        // A poisoned lock only means a panic elsewhere mid-swap; the value is still whole.
        self.cfg.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Runner for SyncRunner {
    async fn run(&self, connector: Arc<Connector>) -> RunResult {
        self.run_with(connector, false).await
    }

    async fn reconcile(&self, connector: Arc<Connector>) -> RunResult {
        self.run_with(connector, true).await
    }

    async fn last_success(&self, connector: &str) -> Option<DateTime<Utc>> {
        self.last_success_in_history(connector).await
    }

    fn set_config(&self, cfg: Arc<Config>) {
        *self.cfg.write().unwrap_or_else(|e| e.into_inner()) = cfg;
        // The platform may have changed too: the next run of each target discovers again.
        self.targets.refresh();
    }
    async fn claim(&self, connector: &str, reconcile: bool, slot: DateTime<Utc>) -> SlotClaim {
        let claim = self.store.claim_slot(&slot_key(connector, reconcile), slot, &worker_id(), self.store.lease_ttl()).await;
        // Won, but the connector may still be running: the previous slot's run on another
        // worker overran, a manual sync, or a dead worker's lease not yet lapsed. Wait for it
        // (holding the slot) rather than run into its lease.
        let claim = match claim {
            Ok(SlotClaim::Won) => match self.store.live_lease(connector).await {
                Ok(Some(l)) => Ok(SlotClaim::Held { worker: l.holder, expires_at: l.expires_at }),
                Ok(None) => Ok(SlotClaim::Won),
                Err(e) => Err(e),
            },
            other => other,
        };
        match claim {
            Ok(c) => c,
            Err(e) => {
                // Not run: run anyway, it could run twice across a fleet (the lease would
                // only keep the two from overlapping). Claimed again shortly, while the slot lasts.
                tracing::warn!(connector, "cannot claim the slot of {} ({e}); not running it until the claim succeeds", slot.to_rfc3339());
                SlotClaim::Unclaimed { retry_in: (self.store.lease_ttl() / 3).max(std::time::Duration::from_secs(1)) }
            }
        }
    }

    async fn slot_done(&self, connector: &str, reconcile: bool, slot: DateTime<Utc>) {
        if let Err(e) = self.store.finish_slot(&slot_key(connector, reconcile), slot, &worker_id()).await {
            tracing::warn!(connector, "cannot record the slot of {} as served ({e}); its claim lapses instead", slot.to_rfc3339());
        }
    }
}

impl SyncRunner {
    async fn run_with(&self, connector: Arc<Connector>, reconcile: bool) -> RunResult {
        let cfg = self.config();
        let store = self.store.clone();
        let name = connector.name.clone();
        // A task of its own, so that a panic in one run (a bug) becomes a failed run of
        // that connector instead of taking the scheduler down.
        let span = tracing::Span::current();
        let targets = Some(self.targets.clone());
        let res = tokio::spawn(
            async move {
                let opts = SyncOptions { origin: sync::Origin::Daemon, reconcile, targets, ..SyncOptions::default() };
                sync::run(&cfg, &connector, &*store, &opts).await
            }
            .instrument(span),
        )
        .await;
        match res {
            Ok(r) => r,
            Err(e) => panicked(&name, e),
        }
    }

    async fn last_success_in_history(&self, connector: &str) -> Option<DateTime<Utc>> {
        match self.store.history(Some(connector), HISTORY_DEPTH).await {
            Ok(runs) => runs
                .iter()
                .find(|r| {
                    r.report.as_ref().is_some_and(|rep| matches!(rep.outcome, RunOutcome::Ok | RunOutcome::NoNewFile) && !rep.dry_run)
                })
                .map(|r| r.started_at),
            Err(e) => {
                tracing::warn!(connector, "cannot read run history ({e}); treating the connector as never synced, so it runs now");
                None
            }
        }
    }
}

/// The key of a connector's slots in the store: a reconcile schedule's slots are its own
/// (a connector would have to be named "NAME#reconcile" to collide), and both kinds
/// share the connector's lease.
fn slot_key(connector: &str, reconcile: bool) -> String {
    if reconcile { format!("{connector}#reconcile") } else { connector.to_string() }
}

/// A run whose thread panicked: a failed run in the report (and the log), not a dead daemon.
/// A bug may depend on the data or on timing: `RunError::Crashed` is retriable.
fn panicked(connector: &str, e: tokio::task::JoinError) -> RunResult {
    let e = RunError::Crashed { connector: connector.to_string(), detail: e.to_string() };
    tracing::error!(connector, "{e}");
    let report = Report {
        outcome: RunOutcome::Failed,
        message: Some(e.to_string()),
        failure: Some(e.kind()),
        ..Report::new(connector, &uuid::Uuid::new_v4().to_string(), false)
    };
    RunResult::failed(report, e, None)
}
