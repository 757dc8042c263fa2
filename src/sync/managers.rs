//! Managers: a user's manager is a reference to another user's platform id, which exists
//! only once that user is on the platform. What cannot be linked in the push is linked in a
//! second pass; what could never be linked yet is not sent at all.

use std::collections::{HashMap, HashSet};

use super::{Job, RunError};
use crate::plan::{self, Op};
use crate::platform::Platform;
use crate::state::StateStore;

impl<S: StateStore> Job<'_, S> {
    /// Second pass for reports whose manager did not exist when they were written (a
    /// manager cycle in the data, or a manager created later in the same push): now that
    /// everyone exists, set just the manager.
    pub(super) async fn link_managers<P: Platform>(&mut self, platform: &P) -> Result<(), RunError> {
        let unlinked = std::mem::take(&mut self.unlinked);
        if unlinked.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = unlinked.iter().filter_map(|(_, u)| u.attributes.get("manager_id")).collect();
        let snapshot = self.store.snapshot(&self.conn.name).await.map_err(RunError::from_error)?;
        tracing::debug!(users = snapshot.len(), elapsed = ?self.started.elapsed(), "snapshot loaded");
        let known: HashMap<String, String> =
            ids.iter().filter_map(|m| snapshot.get(*m).map(|e| (m.to_string(), e.platform_id.clone()))).collect();
        drop(snapshot);
        let ops: Vec<Op> = unlinked
            .into_iter()
            .filter(|(_, u)| u.attributes.get("manager_id").is_some_and(|m| known.contains_key(m)))
            .map(|(platform_id, user)| {
                let mut previous = user.clone();
                previous.attributes.remove("manager_id");
                Op::Update { platform_id, user, adopt: false, previous: Some(previous) }
            })
            .collect();
        if ops.is_empty() {
            return Ok(());
        }
        let n = ops.len();
        self.relinking = true;
        let res = self.push(platform, ops, known, &HashMap::new()).await;
        self.relinking = false;
        tracing::info!("linked the manager of {n} user(s) in a second pass");
        res
    }
}

/// run (so the link is made once the manager exists). While the manager is still
/// neither known nor created by this push, that update would change nothing: drop it and
/// count the user unchanged (returns how many). Judged by the stored content hash, so the
/// content of these users (5% of a large file whose managers' rows are invalid) is never
/// loaded from the state.
pub(super) fn drop_unlinkable(ops: &mut Vec<Op>, lines: &mut Vec<u64>, snapshot: &plan::Snapshot) -> u64 {
    // Only updates of synced users qualify (a first sync has none).
    if snapshot.is_empty() || !ops.iter().any(|o| matches!(o, Op::Update { adopt: false, .. })) {
        return 0;
    }
    let created: HashSet<&str> = ops
        .iter()
        .filter_map(|o| match o {
            Op::Create { user } => Some(user.external_id.as_str()),
            _ => None,
        })
        .collect();
    let unlinkable = |op: &Op| match op {
        Op::Update { user, adopt: false, .. } => match user.attributes.get("manager_id") {
            Some(m) if !m.is_empty() && !snapshot.contains_key(m) && !created.contains(m) => {
                let mut without = (**user).clone();
                without.attributes.remove("manager_id");
                snapshot.get(user.external_id.as_str()).is_some_and(|e| e.hash == without.content_hash())
            }
            _ => false,
        },
        _ => false,
    };
    let keep: Vec<bool> = ops.iter().map(|o| !unlinkable(o)).collect();
    let dropped = keep.iter().filter(|k| !**k).count() as u64;
    if dropped > 0 {
        // `lines` runs parallel to `ops`: filter both by the same flags.
        let mut it = keep.iter();
        ops.retain(|_| *it.next().unwrap_or(&true));
        let mut it = keep.iter();
        lines.retain(|_| *it.next().unwrap_or(&true));
    }
    dropped
}

/// Managers' platform ids, for the manager references of the users being pushed.
pub(super) fn known_managers(ops: &[Op], snapshot: &plan::Snapshot) -> HashMap<String, String> {
    ops.iter()
        .filter_map(|op| match op {
            Op::Create { user } | Op::Update { user, .. } => user.attributes.get("manager_id"),
            _ => None,
        })
        .filter_map(|m| snapshot.get(m).map(|e| (m.to_string(), e.platform_id.clone())))
        .collect()
}
