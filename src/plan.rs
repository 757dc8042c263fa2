//! Plan: the pure decision of what to send. Given the last synced snapshot and the users
//! of the new file, it returns the operations and whether a safeguard stops the run.
//! No I/O; table-tested.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::config::{OnMissing, SyncRule};
use crate::model::User;

/// What the state store remembers of one person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotEntry {
    pub platform_id: String,
    pub hash: [u8; 16],
    pub active: bool,
}

/// A user already on the platform that the connector has never synced (first sync, or a
/// 409): found by externalId or userName, adopted rather than created again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Existing {
    pub platform_id: String,
    pub external_id: Option<String>,
    pub user_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Create { user: User },
    /// Content changed (or an adopted user, whose content we never saw: `adopt`).
    /// `previous` is the content last synced, when the state keeps it: the platform then
    /// PATCHes only what changed; without it every mapped attribute is replaced.
    Update { platform_id: String, user: User, adopt: bool, previous: Option<Box<User>> },
    /// `active` became false, or absent with on_missing = deactivate.
    Deactivate { platform_id: String, external_id: String },
    Delete { platform_id: String, external_id: String },
}

impl Op {
    pub fn external_id(&self) -> &str {
        match self {
            Op::Create { user } | Op::Update { user, .. } => &user.external_id,
            Op::Deactivate { external_id, .. } | Op::Delete { external_id, .. } => external_id,
        }
    }
    pub fn kind(&self) -> OpKind {
        match self {
            Op::Create { .. } => OpKind::Create,
            Op::Update { user, .. } if !user.active => OpKind::Deactivate,
            Op::Update { .. } => OpKind::Update,
            Op::Deactivate { .. } => OpKind::Deactivate,
            Op::Delete { .. } => OpKind::Delete,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OpKind {
    Create,
    Update,
    Deactivate,
    Delete,
}

/// Why a run stops before anything is pushed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum Safeguard {
    NoDataRows,
    MassDeactivation { count: u64, known: u64, limit: String, allowed: u64 },
    TooManyInvalid { invalid: u64, rows: u64, limit: String, allowed: u64 },
}

impl Safeguard {
    pub fn message(&self, connector: &str) -> String {
        let go_on = format!("check the file, then run `rostersync sync {connector} --allow-mass-change` to apply it anyway");
        match self {
            Safeguard::NoDataRows => format!("the export has no data rows; nothing was pushed. A full employee list is expected: check the file, then {go_on}"),
            Safeguard::MassDeactivation { count, known, limit, allowed } => format!(
                "this run would deactivate or delete {count} of {known} known users, above max_deactivations = \"{limit}\" ({allowed} allowed); nothing was pushed. A truncated or wrong export looks like this: {go_on}"
            ),
            Safeguard::TooManyInvalid { invalid, rows, limit, allowed } => format!(
                "{invalid} of {rows} rows are invalid, above max_invalid = \"{limit}\" ({allowed} allowed); nothing was pushed. Fix the rows listed in the report (or the mapping), or {go_on}"
            ),
        }
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Sorted: creates, updates, deactivations, deletions; by external id within each.
    pub ops: Vec<Op>,
    pub unchanged: u64,
    /// Known people left as they are because their row is invalid.
    pub protected: u64,
    /// Known people absent from the file, left alone by on_missing = ignore.
    pub ignored: u64,
    pub stop: Option<Safeguard>,
}

impl Plan {
    pub fn count(&self, kind: OpKind) -> u64 {
        self.ops.iter().filter(|o| o.kind() == kind).count() as u64
    }
}

/// Inputs of one plan.
pub struct PlanInput<'a> {
    pub snapshot: &'a HashMap<String, SnapshotEntry>,
    /// Valid users of the file.
    pub users: &'a [User],
    /// Unique ids of invalid rows, where known: these people keep their state.
    pub invalid_ids: &'a HashSet<String>,
    /// Data rows in the file, and how many were invalid.
    pub rows: u64,
    pub invalid: u64,
    /// Platform users matched on a first sync (by externalId, then userName).
    pub existing: &'a [Existing],
    pub rule: &'a SyncRule,
    pub allow_mass_change: bool,
}

/// Decides the operations.
pub fn plan(input: &PlanInput) -> Plan {
    let mut p = Plan::default();
    let snapshot = input.snapshot;

    if input.rows == 0 {
        p.stop = Some(Safeguard::NoDataRows);
        return p;
    }

    let by_ext: HashMap<&str, &Existing> =
        input.existing.iter().filter_map(|e| e.external_id.as_deref().map(|x| (x, e))).collect();
    let by_name: HashMap<String, &Existing> = input
        .existing
        .iter()
        .filter_map(|e| e.user_name.as_deref().map(|n| (n.to_lowercase(), e)))
        .collect();

    let mut seen: HashSet<&str> = HashSet::with_capacity(input.users.len());
    let mut deactivating = 0u64;
    for user in input.users {
        seen.insert(&user.external_id);
        match snapshot.get(&user.external_id) {
            Some(entry) => {
                if entry.hash == user.content_hash() {
                    p.unchanged += 1;
                } else {
                    if entry.active && !user.active {
                        deactivating += 1;
                    }
                    p.ops.push(Op::Update { platform_id: entry.platform_id.clone(), user: user.clone(), adopt: false, previous: None });
                }
            }
            None => {
                let found = by_ext
                    .get(user.external_id.as_str())
                    .or_else(|| by_name.get(&user.user_name().to_lowercase()));
                match found {
                    Some(e) => p.ops.push(Op::Update { platform_id: e.platform_id.clone(), user: user.clone(), adopt: true, previous: None }),
                    None => p.ops.push(Op::Create { user: user.clone() }),
                }
            }
        }
    }

    let mut missing: Vec<(&String, &SnapshotEntry)> = snapshot
        .iter()
        .filter(|(id, _)| !seen.contains(id.as_str()))
        .collect();
    missing.sort_by(|a, b| a.0.cmp(b.0));
    for (id, entry) in missing {
        if input.invalid_ids.contains(id) {
            p.protected += 1;
            continue;
        }
        match input.rule.on_missing {
            OnMissing::Ignore => p.ignored += 1,
            OnMissing::Deactivate if !entry.active => p.unchanged += 1,
            OnMissing::Deactivate => {
                deactivating += 1;
                p.ops.push(Op::Deactivate { platform_id: entry.platform_id.clone(), external_id: id.clone() });
            }
            OnMissing::Delete => {
                deactivating += 1;
                p.ops.push(Op::Delete { platform_id: entry.platform_id.clone(), external_id: id.clone() });
            }
        }
    }

    p.ops.sort_by(|a, b| a.kind().cmp_order().cmp(&b.kind().cmp_order()).then_with(|| a.external_id().cmp(b.external_id())));

    if !input.allow_mass_change {
        let allowed = input.rule.max_invalid.allowed(input.rows);
        if input.invalid > allowed {
            p.stop = Some(Safeguard::TooManyInvalid {
                invalid: input.invalid,
                rows: input.rows,
                limit: input.rule.max_invalid.to_string(),
                allowed,
            });
        } else {
            // The first sync (empty state) deactivates nobody, so this never trips it.
            let known = snapshot.len() as u64;
            let allowed = input.rule.max_deactivations.allowed(known);
            if deactivating > allowed {
                p.stop = Some(Safeguard::MassDeactivation {
                    count: deactivating,
                    known,
                    limit: input.rule.max_deactivations.to_string(),
                    allowed,
                });
            }
        }
    }
    p
}

impl OpKind {
    fn cmp_order(self) -> u8 {
        match self {
            OpKind::Create => 0,
            OpKind::Update => 1,
            OpKind::Deactivate => 2,
            OpKind::Delete => 3,
        }
    }
}
