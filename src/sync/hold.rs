//! `on_safeguard = "hold-deactivations"` (issue 27): a run a `mass_deactivation` safeguard
//! stopped sends its creates and updates, and keeps its deactivations and deletions as a
//! stopped plan for `rostersync approve`. The plan is kept after the push, against the state
//! the push left: an approval re-plans the same file, finds only those left, and applies them
//! while the state is as it was. The file is not recorded as synced until then, so the
//! daemon waits for the approval (or a new file) rather than planning it again.

use super::{Ctx, RunError, Tally, drop_in_background};
use crate::plan::Plan;
use crate::state::StateStore;

/// What the run says of the held operations, as it plans.
pub(super) fn held_note(held: &Plan, connector: &str) -> String {
    let why = held.stop.as_ref().map(|s| s.message(connector)).unwrap_or_default();
    format!(
        "{} deactivation(s) and deletion(s) held for approval (on_safeguard = \"hold-deactivations\"); creates and updates are sent: {why}",
        held.ops.len()
    )
}

impl<S: StateStore> Ctx<'_, S> {
    /// After the push of the rest: the held plan kept for approval, the run stopped (exit
    /// 5) with its command. A failed push keeps nothing: the next run plans again.
    pub(super) async fn keep_held(&self, t: &mut Tally, held: Plan, failed: u64) -> Result<(), RunError> {
        if failed > 0 {
            return Err(RunError::OperationsFailed { failed, scoped: self.opts.only.is_some() });
        }
        let Some(stop) = held.stop.clone() else { return Ok(()) };
        let snapshot = self.store.snapshot(&self.conn.name).await?;
        let fingerprint = crate::changes::state_fingerprint(&snapshot);
        drop_in_background(snapshot);
        // The stored plan lists the held operations; the report keeps what was sent.
        let sent = std::mem::take(&mut t.report.operations);
        let sent_left_out = t.report.operations_left_out;
        self.describe(t, &held).await?;
        let mut e = self.stopped(t, &stop);
        if let RunError::Stopped { kept, .. } = &mut e {
            *kept = self.keep_stopped_plan(t, &held, fingerprint, &stop).await;
        }
        t.report.operations = sent;
        t.report.operations_left_out = sent_left_out;
        Err(e)
    }
}
