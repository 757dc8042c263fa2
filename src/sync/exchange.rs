//! After a run: what the customer is told (`crate::exchange`). The result file goes back
//! to where the export came from; a failure to deliver it is a warning on a finished run,
//! never a failure of the sync it reports on.

use chrono::Utc;

use super::{RunResult, SyncOptions};
use crate::config::{Config, Connector};
use crate::exchange::{email, result_file};
use crate::report::Report;
use crate::state::StateStore;

/// Delivers the result file of a run that read an export from the customer's source (not
/// a `--file`, a dry run or an `--only` run: those are ours, not the customer's exchange).
pub(super) async fn after_run<S: StateStore>(
    cfg: &Config,
    conn: &Connector,
    store: &S,
    opts: &SyncOptions,
    done: &RunResult,
    invalid_listed: usize,
) {
    if opts.dry_run || opts.only.is_some() || opts.file.is_some() {
        return;
    }
    result(conn, done, invalid_listed).await;
    notify(cfg, conn, store, done, invalid_listed).await;
}

/// Writes the result file back where the export came from.
async fn result(conn: &Connector, done: &RunResult, invalid_listed: usize) {
    let report = &done.report;
    let (Some(rule), Some(file)) = (&conn.exchange.result, &report.file) else { return };
    let Some(text) = result_file::render(report, invalid_listed, rule.when) else { return };
    let name = file.path.rsplit('/').next().unwrap_or(&file.path).to_string();
    let path = result_file::path_for(rule, &name, &report.run_id, Utc::now());
    let source = conn.source.clone();
    let span = tracing::Span::current();
    let target = path.clone();
    let delivered = tokio::task::spawn_blocking(move || span.in_scope(|| result_file::deliver(&source, &target, &text))).await;
    match delivered {
        Ok(Ok(())) => tracing::info!(path = %path, "result file written for the customer"),
        Ok(Err(e)) => tracing::warn!("the sync stands, but its result file {path} could not be written: {e}"),
        Err(e) => tracing::warn!("the sync stands, but its result file {path} could not be written: {e}"),
    }
}

/// Emails the customer's contact about the run's problem, unless an earlier run told them
/// of the same one already (from the run history). A notice that cannot be sent is a warning.
async fn notify<S: StateStore>(cfg: &Config, conn: &Connector, store: &S, done: &RunResult, invalid_listed: usize) {
    let (Some(rule), Some(smtp)) = (&conn.exchange.notify, &cfg.smtp) else { return };
    let report = &done.report;
    let Some(problem) = email::problem_of(report, Some(invalid_listed)) else { return };
    let earlier: Vec<Report> = match store.history(Some(&conn.name), HISTORY_LOOKED_AT).await {
        Ok(runs) => runs.into_iter().filter(|r| r.run_id != report.run_id).filter_map(|r| r.report).collect(),
        Err(e) => {
            // Unknown whether they were told: telling twice beats not telling.
            tracing::warn!("cannot read the run history to tell whether the customer was notified already: {e}");
            Vec::new()
        }
    };
    if email::already_told(&problem, &earlier) {
        tracing::debug!(problem = %problem.key(), "the customer was notified of this problem already");
        return;
    }
    let (subject, body) = email::compose(&problem, &conn.name, &conn.customer);
    match email::send(smtp, rule, &subject, &body).await {
        Ok(()) => tracing::info!(to = rule.email.len(), "notice sent to the customer's contact"),
        Err(e) => tracing::warn!("the customer's contact could not be notified: {e}"),
    }
}

/// Runs looked back on for an earlier notice of the same problem.
const HISTORY_LOOKED_AT: u32 = 50;
