//! Dates act without a new file (issue 27): a run that finds no new file still applies what
//! a date has brought due since the last file was planned — a hire's account, a start, a
//! leave (`[fields] start_date`, `end_date`), an absentee's grace running out
//! (`deactivate_after`). It takes the last synced file again and plans it against the state,
//! as a forced run would; only when something is due, so a quiet day stays `no-new-file`.
//! What is due is read from the last run that planned that file (its report's `lifecycle`).

use super::fetch::{self, Fetch};
use super::{Ctx, RunError, SyncOptions};
use crate::report::RunOutcome;
use crate::state::{LastFile, StateStore};

/// Runs of the history searched for the one that planned the last file (no-new-file runs
/// in between are many on an hourly schedule).
const SEARCHED: u32 = 200;

impl<S: StateStore> Ctx<'_, S> {
    /// The last synced file again when a date has come due since it was planned; None when
    /// nothing is due (or the connector has no dated rule).
    /// `unsent` is the platform's answer for the rows of the file taken again.
    pub(super) async fn due_again(
        &self,
        last: Option<&LastFile>,
        unsent: &mut super::unsent::Unsent,
    ) -> Result<Option<fetch::Got>, RunError> {
        let rules = &self.conn.sync.lifecycle;
        let Some(last) = last else { return Ok(None) };
        if self.opts.file.is_some() || (self.conn.mapping.dates.is_empty() && rules.deactivate_after.is_none()) {
            return Ok(None);
        }
        let history = self.store.history(Some(&self.conn.name), SEARCHED).await?;
        let planned = history.iter().filter_map(|r| r.report.as_ref()).find(|rep| {
            !rep.dry_run && matches!(rep.outcome, RunOutcome::Ok) && rep.file.as_ref().is_some_and(|f| f.sha256 == last.fingerprint.sha256)
        });
        let Some(held) = planned.map(|rep| &rep.lifecycle) else { return Ok(None) };
        let now = super::clock::now();
        let today = now.with_timezone(&self.conn.schedule.as_ref().map_or(chrono_tz::UTC, |s| s.tz)).date_naive();
        let due = held.next_change.as_ref().is_some_and(|c| c.on <= today) || held.in_grace.people.iter().any(|g| g.until <= now);
        if !due {
            return Ok(None);
        }
        tracing::info!("no new file, but a date has come due: the last file is planned again");
        let forced = SyncOptions { force: true, ..self.opts.clone() };
        let (began, _) = tokio::sync::oneshot::channel();
        *unsent = super::unsent::Unsent::known(self.unsent_attributes().await);
        match fetch::fetch(self.conn, &forced, Some(&last.fingerprint), began, &self.budget, unsent).await? {
            Fetch::Got(g) if g.fingerprint.sha256 == last.fingerprint.sha256 => Ok(Some(*g)),
            // The file is gone (after = "move" or "delete") or another came meanwhile: the
            // next run takes what is there.
            _ => Ok(None),
        }
    }
}
