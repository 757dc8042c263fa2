//! Plan: the pure decision of what to send. Given the last synced snapshot and the users
//! of the new file, it returns the operations and whether a safeguard stops the run.
//! No I/O; table-tested.

pub mod budget;
pub mod drift;
pub mod groups;
pub mod lifecycle;
pub mod matching;
pub mod profile;
pub mod renames;

use std::collections::{HashMap, HashSet};

use serde::Serialize;

/// Hasher of the plan's maps. The snapshot holds a million keys and the plan looks each
/// user up in it: foldhash is several times faster than std's SipHash on short string ids,
/// and still randomly seeded per map.
pub type FastHash = foldhash::fast::RandomState;

/// The last synced snapshot, by unique id.
pub type Snapshot = HashMap<String, SnapshotEntry, FastHash>;

pub mod settings;

use self::settings::{OnMissing, Rehire, SyncRule};
use crate::model::{IdRule, SourcedUser, Str, User};

/// What the state store remembers of one person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotEntry {
    pub platform_id: String,
    pub hash: [u8; 16],
    pub active: bool,
}

/// A user already on the platform that the connector has never synced (first sync, or a
/// 409): found by externalId, userName or email, adopted rather than created again when
/// `matching` says it is the person's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Existing {
    pub platform_id: String,
    pub external_id: Option<String>,
    pub user_name: Option<String>,
    /// The values of its `emails[]`, as the platform holds them.
    pub emails: Vec<String>,
    /// Its `active`, when the platform said (an inactive account with another id and the
    /// person's login is a dormant one: `matching::Verdict::Dormant`).
    pub active: Option<bool>,
}

/// An account with a person's id but neither their email nor their userName
/// (`matching::Verdict::Partial`): possibly another customer's person with the same id. Its
/// adoption is in the plan and stops the run (`Safeguard::PartialMatch`) until approved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartialMatch {
    pub external_id: String,
    pub line: u64,
    pub platform_id: String,
    /// The account's userName, to tell whose it is.
    pub user_name: Option<String>,
}

impl PartialMatch {
    pub fn message(&self, connector: &str) -> String {
        let login = self.user_name.as_deref().map(|n| format!(" (userName \"{n}\")")).unwrap_or_default();
        format!(
            "\"{}\": platform account {}{login} has this person's externalId but neither their email nor their userName: a partial match, possibly someone else's person with the same id (another deployment on this platform). Not adopted: check the account, then approve the stopped plan (`rostersync approve RUN --reason \"…\"`), or correct the account's externalId or email on the platform; connector {connector}",
            self.external_id, self.platform_id
        )
    }
}

/// Whose an account is, when it is not this person's: why nothing was sent for them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "bound_to", rename_all = "snake_case")]
pub enum Bound {
    /// The account carries another externalId (another person, or a hand-made account).
    OtherExternalId { external_id: String },
    /// Another connector's person; `adopt_from` does not name that connector.
    OtherConnector { connector: String, external_id: String },
    /// Another connector's person with this id but another login (userName): a different
    /// person who shares the id (another customer numbering people alike), never a
    /// migration.
    IdCollision { connector: String, external_id: String, user_name: Option<String> },
    /// Another person of this file takes the same account in this run.
    TakenInRun { external_id: String },
    /// A re-hire (the leaver's email), and rehire = "conflict".
    Rehire { external_id: String },
}

/// A person of the file whose account is someone else's: nothing is sent for them and
/// nothing is rewritten; the report names both ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub external_id: String,
    /// The file line of the person (0 when unknown).
    pub line: u64,
    /// The account they would have taken.
    pub platform_id: String,
    pub bound: Bound,
}

impl Conflict {
    pub fn message(&self, connector: &str) -> String {
        let (id, pid) = (&self.external_id, &self.platform_id);
        match &self.bound {
            Bound::OtherExternalId { external_id } => format!(
                "\"{id}\": platform account {pid} matches this person but has externalId \"{external_id}\"; it is someone else's and was left as it is. If it is this person, correct its externalId on the platform; otherwise give this person another email"
            ),
            Bound::OtherConnector { connector: other, external_id } => format!(
                "\"{id}\": platform account {pid} belongs to connector \"{other}\" (as \"{external_id}\") and was left as it is. {}",
                across_connectors_advice(connector, other, true)
            ),
            Bound::IdCollision { connector: other, external_id, user_name } => format!(
                "\"{id}\": platform account {pid} belongs to connector \"{other}\"'s person \"{external_id}\" (userName {}), another person with the same id; it was left as it is. {}",
                user_name.as_deref().map(|n| format!("{n:?}")).unwrap_or_else(|| "unknown".into()),
                across_connectors_advice(connector, other, false)
            ),
            Bound::TakenInRun { external_id } => format!(
                "\"{id}\": platform account {pid} is taken by \"{external_id}\" in this run (same externalId or userName); fix the duplicate in the export"
            ),
            Bound::Rehire { external_id } => format!(
                "\"{id}\": a re-hire of \"{external_id}\" (same email, platform account {pid}); left as it is because rehire = \"conflict\". Set rehire = \"rekey\" in [connectors.{connector}.sync] to move the account to the new id"
            ),
        }
    }
}

/// What to do about an account of connector `other`'s person that a person of
/// `connector` would take. A migration (`adopt_from`) is advised only when it is the same
/// person (the same login): advising it for another person would hand one customer's
/// accounts to another's people. Otherwise the ids collide: two customers on one target.
pub fn across_connectors_advice(connector: &str, other: &str, same_person: bool) -> String {
    if same_person {
        format!("For a migration from {other}, add adopt_from = [\"{other}\"] to [connectors.{connector}.sync]")
    } else {
        format!(
            "The ids of {connector} and {other} collide (different people, the same id): do not use adopt_from. If they are different customers, give {connector} its own target ([connectors.{connector}.platform] with its organisation's base_url or token); if not, correct the id in one export"
        )
    }
}

/// A re-hire: the account of `old` (a leaver) now belongs to `new`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rekey {
    pub new: String,
    pub old: String,
    pub platform_id: String,
}

/// A known person absent from the file or inactive in it, whose account a re-hire may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dormant {
    pub external_id: String,
    pub platform_id: String,
    counted: Counted,
}

/// Where the plan counted a dormant person, to count them once when a re-hire takes over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Counted {
    Op,
    Unchanged,
    Ignored,
}

/// Other connectors' snapshots (those `adopt_from` does not name) in the same state store:
/// the accounts they hold are bound to their people. Read from the state, never the platform.
#[derive(Default)]
pub struct Others<'a> {
    pub snapshots: Vec<(&'a str, &'a Snapshot)>,
}

impl<'a> Others<'a> {
    /// platform id → (connector, external id).
    fn by_platform_id(&self) -> HashMap<&'a str, (&'a str, &'a str), FastHash> {
        let mut m = HashMap::default();
        for (c, snap) in &self.snapshots {
            m.extend(snap.iter().map(|(id, e)| (e.platform_id.as_str(), (*c, id.as_str()))));
        }
        m
    }

    /// normalised external id → (connector, external id, platform id).
    fn by_key(&self, rule: IdRule) -> HashMap<std::borrow::Cow<'a, str>, (&'a str, &'a str, &'a str), FastHash> {
        let mut m = HashMap::default();
        for (c, snap) in &self.snapshots {
            m.extend(snap.iter().map(|(id, e)| (rule.key(id), (*c, id.as_str(), e.platform_id.as_str()))));
        }
        m
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Users are boxed: they move here from the mapping's list without a copy.
    Create {
        user: Box<User>,
    },
    /// Content changed (or an adopted user, whose content we never saw: `adopt`).
    /// `previous` is the content last synced, when the state keeps it: the platform then
    /// PATCHes only what changed; without it every mapped attribute is replaced.
    Update {
        platform_id: String,
        user: Box<User>,
        adopt: bool,
        previous: Option<Box<User>>,
    },
    /// `active` became false, or absent with on_missing = deactivate.
    Deactivate {
        platform_id: String,
        external_id: String,
    },
    Delete {
        platform_id: String,
        external_id: String,
    },
}

impl Op {
    pub fn external_id(&self) -> &str {
        match self {
            Op::Create { user } | Op::Update { user, .. } => &user.external_id,
            Op::Deactivate { external_id, .. } | Op::Delete { external_id, .. } => external_id,
        }
    }
    /// What the operation changes, as counted. An update that leaves a person inactive is a
    /// deactivation only when they were active: one whose last synced content (`previous`)
    /// is already inactive is an update of a leaver's other fields, and counted as one.
    pub fn kind(&self) -> OpKind {
        match self {
            Op::Create { .. } => OpKind::Create,
            Op::Update { user, previous, .. } if !user.active && previous.as_deref().is_none_or(|p| p.active) => OpKind::Deactivate,
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
    MassDeactivation {
        count: u64,
        known: u64,
        limit: String,
        allowed: u64,
    },
    TooManyInvalid {
        invalid: u64,
        rows: u64,
        limit: String,
        allowed: u64,
    },
    /// A reconcile found more of this connector's accounts missing from the platform than
    /// `max_deactivations` allows: a listing that misses accounts looks like this, and
    /// re-creating them all would duplicate them.
    MassRecreation {
        count: u64,
        known: u64,
        limit: String,
        allowed: u64,
    },
    /// The run would change more than the change budget allows (`budget`): logins, blanked
    /// values, updates, re-keys or creates of a file that looks right but is wrong.
    OverBudget(Box<budget::OverBudget>),
    /// The file's ids are not the population last synced (`drift`): another customer's
    /// export, a new id scheme, or ids that changed shape.
    IdDrift(Box<drift::Drift>),
    /// A column of the file is not what it was in the last good file (`profile`): emptied,
    /// or every date of it changed.
    ColumnDrift(Box<profile::ColumnDrift>),
    /// Platform accounts match people of the file by externalId alone (`PartialMatch`):
    /// adopting them could take another customer's accounts.
    PartialMatch {
        count: u64,
    },
}

impl Safeguard {
    /// The rule's name, as reports, history and metrics show it (the serde tag).
    pub fn rule(&self) -> &'static str {
        match self {
            Safeguard::NoDataRows => "no_data_rows",
            Safeguard::MassDeactivation { .. } => "mass_deactivation",
            Safeguard::TooManyInvalid { .. } => "too_many_invalid",
            Safeguard::MassRecreation { .. } => "mass_recreation",
            Safeguard::OverBudget(o) => o.kind.key(),
            Safeguard::IdDrift(_) => "id_drift",
            Safeguard::ColumnDrift(_) => "column_drift",
            Safeguard::PartialMatch { .. } => "partial_match",
        }
    }

    /// A stop's rule as a person reads it: with the `[sync]` key that sets its limit when
    /// the rule's name is not that key ("mass_deactivation (max_deactivations)"), so the
    /// status page and notices name what to look at. The rule's name stays what reports,
    /// history and alerts match on.
    pub fn shown_rule(rule: &str) -> String {
        let key = match rule {
            "mass_deactivation" | "mass_recreation" => "max_deactivations",
            "too_many_invalid" => "max_invalid",
            _ => return rule.to_string(),
        };
        format!("{rule} ({key})")
    }

    pub fn message(&self, connector: &str) -> String {
        let go_on = format!("check the file, then run `rostersync sync {connector} --allow-mass-change --reason \"…\"` to apply it anyway");
        match self {
            Safeguard::NoDataRows => {
                format!("the export has no data rows; nothing was pushed. A full employee list is expected: check the file, then {go_on}")
            }
            Safeguard::MassDeactivation { count, known, limit, allowed } => format!(
                "this run would deactivate or delete {count} of {known} known users, above max_deactivations = \"{limit}\" ({allowed} allowed); nothing was pushed. A truncated or wrong export looks like this: {go_on}"
            ),
            Safeguard::MassRecreation { count, known, limit, allowed } => format!(
                "the platform lacks {count} of the {known} accounts this connector synced, above max_deactivations = \"{limit}\" ({allowed} allowed); nothing was pushed. A platform listing that misses accounts looks like this, and re-creating them would duplicate people: check the platform, then run `rostersync sync {connector} --reconcile --allow-mass-change --reason \"…\"` to create them again"
            ),
            Safeguard::OverBudget(o) => o.message(&go_on),
            Safeguard::IdDrift(d) => d.message(&go_on),
            Safeguard::ColumnDrift(d) => d.message(&go_on),
            Safeguard::PartialMatch { count } => format!(
                "{count} platform account(s) carry the externalId of a person of the file but neither their email nor their userName (listed in the report); nothing was pushed, as adopting them could take someone else's accounts. Check them on the platform, then run `rostersync approve RUN --reason \"…\"` with this run's id to adopt them, or correct the accounts"
            ),
            // Overriding syncs the valid rows only (an invalid row's person keeps their
            // account as it is): when no row is valid it would change nobody, so it is not
            // offered; the mapping or the export is what is wrong.
            Safeguard::TooManyInvalid { invalid, rows, limit, allowed } if invalid >= rows => format!(
                "all {rows} rows are invalid, above max_invalid = \"{limit}\" ({allowed} allowed); nothing was pushed. When every row fails, the mapping (a date format, a column) or the export is wrong: `rostersync test {connector}` shows the first invalid rows and why. Overriding would change nobody"
            ),
            Safeguard::TooManyInvalid { invalid, rows, limit, allowed } => format!(
                "{invalid} of {rows} rows are invalid, above max_invalid = \"{limit}\" ({allowed} allowed); nothing was pushed. Fix the rows listed in the report (or the mapping), or, to sync the {} valid rows and leave the accounts of the invalid ones as they are, run `rostersync sync {connector} --allow-mass-change --reason \"…\"`",
                rows - invalid
            ),
        }
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Sorted: creates, updates, deactivations, deletions; by external id within each.
    pub ops: Vec<Op>,
    /// The file line of each op's user (0 for people absent from the file), for reports.
    pub lines: Vec<u64>,
    pub unchanged: u64,
    /// Known people left as they are because their row is invalid.
    pub protected: u64,
    /// Known people absent from the file, left alone by on_missing = ignore.
    pub ignored: u64,
    /// Known people absent from the file, left as they are because some row of the file has
    /// no readable unique id (`PlanInput::unidentified`): it may be theirs.
    pub held: u64,
    pub stop: Option<Safeguard>,
    /// People of the file left out: their account is someone else's.
    pub conflicts: Vec<Conflict>,
    /// Adoptions of partial matches (also in `ops`, so an approval applies them): they stop
    /// the run until approved.
    pub partial: Vec<PartialMatch>,
    /// Re-hires: accounts moved from a leaver to a new id (an `Op::Update` with `adopt`).
    pub rekeyed: Vec<Rekey>,
    /// Known people absent from or inactive in the file, when the plan has creates: a
    /// create with one's email is a re-hire (`settle`, once their emails are read).
    pub dormant: Vec<Dormant>,
    /// Accounts of other connectors' people with the id of one of this plan's creates:
    /// platform id → (connector, external id). A 409 that finds one is a conflict.
    pub claimed: HashMap<String, (String, String)>,
    /// ExternalIds of listed platform accounts that are nobody's here: in neither the file
    /// nor the snapshot, nor another connector's. On a first sync (or after a lost state)
    /// these may be this connector's leavers, still active: the report names them.
    pub strangers: Vec<String>,
}

impl Plan {
    pub fn count(&self, kind: OpKind) -> u64 {
        self.ops.iter().filter(|o| o.kind() == kind).count() as u64
    }

    /// The file line of each operation's person, with their external id (people absent from
    /// the file have none), in the plan's order, for the errors of a push. Inline ids: owned
    /// `String`s were two heap blocks each, a million of them held through a first sync.
    pub fn lines_by_id(&self) -> Vec<(Str, u64)> {
        self.ops.iter().zip(&self.lines).filter(|(_, l)| **l > 0).map(|(o, l)| (Str::from(o.external_id()), *l)).collect()
    }
}

/// Inputs of one plan.
pub struct PlanInput<'a> {
    pub snapshot: &'a Snapshot,
    /// Valid users of the file. Taken by value: each one moves into its operation or is
    /// dropped as unchanged, so a million users are never held twice.
    pub users: Vec<SourcedUser>,
    /// Unique ids of invalid rows, where known: these people keep their state.
    pub invalid_ids: &'a HashSet<String>,
    /// Lines of invalid rows whose unique id cannot be read. While there is one, nobody
    /// absent from the file is deactivated or deleted: any of them may be that row.
    pub unidentified: &'a [u64],
    /// Data rows in the file, and how many were invalid.
    pub rows: u64,
    pub invalid: u64,
    /// Platform users matched on a first sync (by externalId, then userName).
    pub existing: &'a [Existing],
    pub rule: &'a SyncRule,
    pub allow_mass_change: bool,
    /// How ids compare: a file that writes a known id otherwise ("E5 ", "e7") names the
    /// same person, under the id they were first synced with.
    pub id_rule: IdRule,
}

/// Decides the operations, with no other connector in the state.
pub fn plan(input: PlanInput) -> Plan {
    plan_with(input, &Others::default())
}

/// Decides the operations. An existing platform user is adopted only under the binding
/// rule (`binding`); creates are settled afterwards (`settle`).
pub fn plan_with(input: PlanInput, others: &Others) -> Plan {
    let mut p = Plan::default();
    let snapshot = input.snapshot;

    if input.rows == 0 && !input.allow_mass_change {
        p.stop = Some(Safeguard::NoDataRows);
        return p;
    }
    let mut ops: Vec<(Op, u64)> = Vec::new();

    let rule = input.id_rule;
    let index = matching::Index::new(input.existing, rule);
    // Who holds which account: this connector's people (an interrupted run has a snapshot)
    // and other connectors' — built only when there are platform users to match.
    let matching = !input.existing.is_empty();
    let ours: HashMap<&str, &str, FastHash> =
        if matching { snapshot.iter().map(|(id, e)| (e.platform_id.as_str(), id.as_str())).collect() } else { HashMap::default() };
    let theirs = if matching { others.by_platform_id() } else { HashMap::default() };
    let mut taken: HashMap<String, String, FastHash> = HashMap::default();

    // The comparison of each user with the snapshot (a lookup and a content hash) is the
    // bulk of the work; it runs on one thread per core over shares of the file.
    let lookup = Lookup { snapshot, rule, folded: std::sync::OnceLock::new() };
    let parts = compare_all(input.users, &lookup);
    // Sized once: growing a million-op vector by doubling copied every op several times. At
    // most one op for each user seen to need one, and one for each snapshot entry no share met.
    let met: usize = parts.iter().map(|p| p.marks.len()).sum();
    ops.reserve(parts.iter().map(|p| p.seen.len()).sum::<usize>() + snapshot.len().saturating_sub(met));
    let mut deactivating = 0u64;
    let mut marks = Vec::with_capacity(parts.len());
    let mut inactive: Vec<(&String, &SnapshotEntry)> = Vec::new();
    for part in parts {
        p.unchanged += part.unchanged;
        marks.push(part.marks);
        inactive.extend(part.inactive);
        for seen in part.seen {
            match seen {
                Seen::Changed(SourcedUser { user, line }, entry) => {
                    if entry.active && !user.active {
                        deactivating += 1;
                    }
                    ops.push((Op::Update { platform_id: entry.platform_id.clone(), user, adopt: false, previous: None }, line));
                }
                Seen::New(SourcedUser { user, line }) => {
                    // Only a first sync (or one after an interrupted run) has platform users
                    // to match; skip the lowercased copy of every new user's name otherwise.
                    let found = if input.existing.is_empty() { None } else { index.find(&user) };
                    // An account of another person of ours is no match here: a re-hire (`settle`)
                    // or a conflict (the 409 of its create) decides.
                    let found = found.filter(|(e, _)| !ours.contains_key(e.platform_id.as_str()));
                    match found.map(|(e, verdict)| (e, binding(&user, e, verdict, &theirs, &taken, input.rule.rehire))) {
                        Some((e, Ok(verdict))) => {
                            taken.insert(e.platform_id.clone(), user.external_id.to_string());
                            if verdict == matching::Verdict::Partial {
                                let external_id = user.external_id.to_string();
                                let (platform_id, user_name) = (e.platform_id.clone(), e.user_name.clone());
                                p.partial.push(PartialMatch { external_id, line, platform_id, user_name });
                            }
                            ops.push((Op::Update { platform_id: e.platform_id.clone(), user, adopt: true, previous: None }, line))
                        }
                        Some((e, Err(bound))) => p.conflicts.push(Conflict {
                            external_id: user.external_id.to_string(),
                            line,
                            platform_id: e.platform_id.clone(),
                            bound,
                        }),
                        None => ops.push((Op::Create { user }, line)),
                    }
                }
            }
        }
    }
    let seen = |id: &String| marks.iter().any(|m| m.contains(&mark(id)));
    if matching {
        let conflicted: HashSet<&str, FastHash> = p.conflicts.iter().map(|c| c.platform_id.as_str()).collect();
        let named: HashSet<std::borrow::Cow<'_, str>, FastHash> =
            ops.iter().map(|(o, _)| rule.key(o.external_id()).into_owned().into()).collect();
        p.strangers = input
            .existing
            .iter()
            .filter(|e| {
                let pid = e.platform_id.as_str();
                !taken.contains_key(pid) && !ours.contains_key(pid) && !theirs.contains_key(pid) && !conflicted.contains(pid)
            })
            .filter_map(|e| e.external_id.as_deref().map(str::trim).filter(|x| !x.is_empty()))
            .filter(|x| lookup.find(x).is_none() && !named.contains(rule.key(x).as_ref()))
            .map(str::to_string)
            .collect();
        p.strangers.sort_unstable();
    }
    fold_managers(&mut ops, &lookup, rule);

    let mut missing: Vec<(&String, &SnapshotEntry)> = snapshot.iter().filter(|(id, _)| !seen(id)).collect();
    missing.sort_by(|a, b| a.0.cmp(b.0));
    let invalid: HashSet<std::borrow::Cow<'_, str>, FastHash> = input.invalid_ids.iter().map(|i| rule.key(i)).collect();
    // Only a plan with creates can hold a re-hire: otherwise nobody is dormant.
    let creating = ops.iter().any(|(o, _)| matches!(o, Op::Create { .. }));
    let mut dormant = Vec::new();
    if creating {
        for (id, entry) in &inactive {
            dormant.push(Dormant { external_id: id.to_string(), platform_id: entry.platform_id.clone(), counted: Counted::Unchanged });
        }
        for (o, _) in &ops {
            if let Op::Update { platform_id, user, adopt: false, .. } = o
                && !user.active
            {
                dormant.push(Dormant { external_id: user.external_id.to_string(), platform_id: platform_id.clone(), counted: Counted::Op });
            }
        }
    }
    for (id, entry) in missing {
        if invalid.contains(rule.key(id).as_ref()) {
            p.protected += 1;
            continue;
        }
        if !input.unidentified.is_empty() && input.rule.on_missing != OnMissing::Ignore {
            p.held += 1;
            continue;
        }
        let counted = match input.rule.on_missing {
            OnMissing::Ignore => {
                p.ignored += 1;
                Counted::Ignored
            }
            OnMissing::Deactivate if !entry.active => {
                p.unchanged += 1;
                Counted::Unchanged
            }
            OnMissing::Deactivate => {
                deactivating += 1;
                ops.push((Op::Deactivate { platform_id: entry.platform_id.clone(), external_id: id.clone() }, 0));
                Counted::Op
            }
            OnMissing::Delete => {
                deactivating += 1;
                ops.push((Op::Delete { platform_id: entry.platform_id.clone(), external_id: id.clone() }, 0));
                Counted::Op
            }
        };
        if creating {
            dormant.push(Dormant { external_id: id.clone(), platform_id: entry.platform_id.clone(), counted });
        }
    }
    p.dormant = dormant;

    ops.sort_unstable_by(|(a, _), (b, _)| {
        a.kind().cmp_order().cmp(&b.kind().cmp_order()).then_with(|| a.external_id().cmp(b.external_id()))
    });
    (p.ops, p.lines) = split_lines(ops);

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
        if p.stop.is_none() && !p.partial.is_empty() {
            p.stop = Some(Safeguard::PartialMatch { count: p.partial.len() as u64 });
        }
    }
    p
}

/// The binding rule: a person may take account `e` only if `matching` judged it theirs
/// (exact, or partial: approved or stopped; dormant, unless re-hires are conflicts), it is
/// not another connector's, and no other person of this run took it.
fn binding(
    user: &User,
    e: &Existing,
    verdict: matching::Verdict,
    theirs: &HashMap<&str, (&str, &str), FastHash>,
    taken: &HashMap<String, String, FastHash>,
    rehire: Rehire,
) -> Result<matching::Verdict, Bound> {
    if verdict == matching::Verdict::Foreign || (verdict == matching::Verdict::Dormant && rehire == Rehire::Conflict) {
        return Err(Bound::OtherExternalId { external_id: e.external_id.clone().unwrap_or_default() });
    }
    if let Some((c, x)) = theirs.get(e.platform_id.as_str()) {
        let (connector, external_id) = (c.to_string(), x.to_string());
        // Matched by externalId, but another login: another person, not a migration.
        if e.user_name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(user.user_name())) {
            return Err(Bound::OtherConnector { connector, external_id });
        }
        return Err(Bound::IdCollision { connector, external_id, user_name: e.user_name.clone() });
    }
    if let Some(x) = taken.get(&e.platform_id) {
        return Err(Bound::TakenInRun { external_id: x.clone() });
    }
    Ok(verdict)
}

/// What `settle` needs beyond the plan, read at the edge.
pub struct Settle<'a> {
    pub others: &'a Others<'a>,
    /// The stored userName of dormant people (`Plan::dormant`), by external id.
    pub names: &'a HashMap<String, String>,
    pub rehire: Rehire,
    pub id_rule: IdRule,
}

/// Settles the creates of a plan. A new id that is also another connector's person has
/// that account marked as not to be adopted (`Plan::claimed`). A new id whose email is a
/// dormant person's account is a re-hire, which takes that account (the leaver's own
/// operation goes: one account, one operation per run) or, with rehire = "conflict", is
/// reported. Pure: the emails and other snapshots are inputs.
pub fn settle(p: &mut Plan, s: Settle) {
    let creates = p.ops.iter().any(|o| matches!(o, Op::Create { .. }));
    if !creates {
        return;
    }
    let theirs = s.others.by_key(s.id_rule);
    let by_name: HashMap<String, usize, FastHash> =
        p.dormant.iter().enumerate().filter_map(|(i, d)| s.names.get(&d.external_id).map(|n| (n.to_lowercase(), i))).collect();
    let order = |a: &Op, b: &Op| a.kind().cmp_order().cmp(&b.kind().cmp_order()).then_with(|| a.external_id().cmp(b.external_id()));
    // Nobody to re-hire (a first sync): only the claims are noted, in place. Rebuilding the
    // list of a million ops beside the old one cost a hundred MB at the run's peak.
    if by_name.is_empty() && p.ops.is_sorted_by(|a, b| order(a, b).is_le()) {
        if !theirs.is_empty() {
            for op in &p.ops {
                if let Op::Create { user } = op
                    && let Some((c, x, pid)) = theirs.get(s.id_rule.key(&user.external_id).as_ref())
                {
                    p.claimed.insert(pid.to_string(), (c.to_string(), x.to_string()));
                }
            }
        }
        return;
    }
    let mut used = vec![false; p.dormant.len()];
    let mut leavers: HashSet<String> = HashSet::new();
    let ops = std::mem::take(&mut p.ops);
    let lines = std::mem::take(&mut p.lines);
    let mut out: Vec<(Op, u64)> = Vec::with_capacity(ops.len());
    for (op, line) in ops.into_iter().zip(lines) {
        let Op::Create { user } = op else {
            out.push((op, line));
            continue;
        };
        // Another connector's person with this id may be what a 409 finds: the push must
        // not adopt that account. The create itself goes: the id may be another person's
        // (another customer on the same platform), whose create succeeds.
        if !theirs.is_empty()
            && let Some((c, x, pid)) = theirs.get(s.id_rule.key(&user.external_id).as_ref())
        {
            p.claimed.insert(pid.to_string(), (c.to_string(), x.to_string()));
        }
        // No leaver to re-hire (a first sync): no lowercased copy of every new login.
        let rehired = if by_name.is_empty() { None } else { by_name.get(&user.user_name().to_lowercase()).filter(|i| !used[**i]) };
        let Some(&i) = rehired else {
            out.push((Op::Create { user }, line));
            continue;
        };
        let external_id = user.external_id.to_string();
        used[i] = true;
        let d = &p.dormant[i];
        match s.rehire {
            Rehire::Rekey => {
                p.rekeyed.push(Rekey { new: external_id, old: d.external_id.clone(), platform_id: d.platform_id.clone() });
                out.push((Op::Update { platform_id: d.platform_id.clone(), user, adopt: true, previous: None }, line));
                // The leaver keeps no account of their own: counted once, as unchanged.
                match d.counted {
                    Counted::Op => {
                        leavers.insert(d.external_id.clone());
                        p.unchanged += 1;
                    }
                    Counted::Unchanged => {}
                    Counted::Ignored => {
                        p.ignored -= 1;
                        p.unchanged += 1;
                    }
                }
            }
            Rehire::Conflict => {
                let bound = Bound::Rehire { external_id: d.external_id.clone() };
                p.conflicts.push(Conflict { external_id, line, platform_id: d.platform_id.clone(), bound });
            }
        }
    }
    if !leavers.is_empty() {
        out.retain(|(op, _)| matches!(op, Op::Create { .. }) || !leavers.contains(op.external_id()));
    }
    // Usually nothing moved (no re-hire): a check in one pass, not a sort of a million.
    if !out.is_sorted_by(|(a, _), (b, _)| order(a, b).is_le()) {
        out.sort_unstable_by(|(a, _), (b, _)| order(a, b));
    }
    (p.ops, p.lines) = split_lines(out);
}

/// The ops and their lines apart, the ops collected in place (the standard library reuses the
/// buffer): `unzip` held a second million-op buffer beside the first.
fn split_lines(ops: Vec<(Op, u64)>) -> (Vec<Op>, Vec<u64>) {
    let lines = ops.iter().map(|(_, l)| *l).collect();
    (ops.into_iter().map(|(o, _)| o).collect(), lines)
}

/// A snapshot key's identity while the snapshot is borrowed: its address. Unique per entry
/// and stable, so marking a million keys as seen costs an integer hash each instead of
/// hashing and comparing the id strings again.
fn mark(key: &String) -> usize {
    key as *const String as usize
}

/// A user of the file that needs an operation.
enum Seen<'s> {
    /// Not in the snapshot.
    New(SourcedUser),
    /// In it, with other content.
    Changed(SourcedUser, &'s SnapshotEntry),
}

/// One share of the file compared with the snapshot.
struct Compared<'s> {
    /// Users needing an operation, in file order.
    seen: Vec<Seen<'s>>,
    unchanged: u64,
    /// The snapshot keys this share mentions (`mark`).
    marks: HashSet<usize, FastHash>,
    /// Unchanged people inactive in the file (a re-hire may take their account).
    inactive: Vec<(&'s String, &'s SnapshotEntry)>,
}

/// Below this many users one thread is quicker than starting others.
const PARALLEL_FROM: usize = 20_000;

/// Compares every user with the snapshot, one share of the file per core; the parts come
/// back in file order. Unchanged users (most of a daily file) are freed where they are
/// compared, in parallel too: freeing a million users on the plan's thread was a third of
/// its time (perf).
/// Finds a user's snapshot entry: by the id as the file writes it (nearly always), else by
/// its folded form (`IdRule::key`) in an index of the snapshot built the first time a
/// lookup misses, so a run where everyone is known builds none.
struct Lookup<'s> {
    snapshot: &'s Snapshot,
    rule: IdRule,
    folded: std::sync::OnceLock<HashMap<std::borrow::Cow<'s, str>, &'s String, FastHash>>,
}

impl<'s> Lookup<'s> {
    fn find(&self, id: &str) -> Option<(&'s String, &'s SnapshotEntry)> {
        if let Some(kv) = self.snapshot.get_key_value(id) {
            return Some(kv);
        }
        let rule = self.rule;
        let key = rule.key(id);
        match self.respelled().get(key.as_ref()) {
            Some(stored) => self.snapshot.get_key_value(stored.as_str()),
            None => self.snapshot.get_key_value(key.as_ref()).filter(|(k, _)| rule.key(k) == k.as_str()),
        }
    }

    /// Whether some id was synced otherwise than as its own key.
    fn any_respelled(&self) -> bool {
        !self.respelled().is_empty()
    }

    /// The ids synced otherwise than as their own key (usually none), by key: the others
    /// are found in the snapshot under the key itself.
    fn respelled(&self) -> &HashMap<std::borrow::Cow<'s, str>, &'s String, FastHash> {
        let rule = self.rule;
        self.folded.get_or_init(|| {
            self.snapshot.keys().filter_map(|k| Some(rule.key(k)).filter(|f| f.as_ref() != k.as_str()).map(|f| (f, k))).collect()
        })
    }
}

fn compare_all<'s>(mut users: Vec<SourcedUser>, snapshot: &Lookup<'s>) -> Vec<Compared<'s>> {
    let threads = if users.len() < PARALLEL_FROM { 1 } else { std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 8) };
    let size = users.len().div_ceil(threads).max(1);
    let mut shares = Vec::with_capacity(threads);
    while users.len() > size {
        shares.push(users.split_off(users.len() - size));
    }
    shares.push(users);
    shares.reverse();
    if shares.len() == 1 {
        return shares.into_iter().map(|share| compare(share, snapshot)).collect();
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = shares.into_iter().map(|share| s.spawn(move || compare(share, snapshot))).collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
    })
}

fn compare<'s>(users: Vec<SourcedUser>, lookup: &Lookup<'s>) -> Compared<'s> {
    let mut part = Compared {
        // Sized once: a first sync sees every user, and doubling touched twice the memory.
        seen: Vec::with_capacity(users.len()),
        unchanged: 0,
        inactive: Vec::new(),
        marks: HashSet::with_capacity_and_hasher(lookup.snapshot.len().min(users.len()), FastHash::default()),
    };
    for mut u in users {
        match lookup.find(u.user.external_id.as_str()) {
            Some((key, entry)) => {
                part.marks.insert(mark(key));
                // The person keeps the id they were synced with, whatever this file's spelling.
                if u.user.external_id != key.as_str() {
                    u.user.external_id = key.as_str().into();
                }
                // Their manager is named as the manager was synced ("e5" is "E5"): looked at
                // only when the content differs, so the usual unchanged user costs nothing.
                if entry.hash == u.user.content_hash() || (fold_manager(&mut u.user, lookup) && entry.hash == u.user.content_hash()) {
                    part.unchanged += 1;
                    if !entry.active {
                        part.inactive.push((key, entry));
                    }
                } else {
                    part.seen.push(Seen::Changed(u, entry));
                }
            }
            None => part.seen.push(Seen::New(u)),
        }
    }
    part
}

/// Names `user`'s manager as the snapshot does, when only the spelling differs; whether it
/// changed anything.
fn fold_manager(user: &mut User, lookup: &Lookup<'_>) -> bool {
    let Some(m) = user.manager() else { return false };
    if lookup.snapshot.contains_key(m) {
        return false;
    }
    match lookup.find(m) {
        Some((k, _)) if k.as_str() != m => {
            user.manager = Some(k.as_str().into());
            true
        }
        _ => false,
    }
}

/// Manager references of the users sent, named as their manager is (`IdRule`): as synced
/// when the manager is in the snapshot, else as the manager's own row writes their id. A
/// reference that names nobody either way is left as it is (noted as not on the platform).
fn fold_managers(ops: &mut [(Op, u64)], lookup: &Lookup<'_>, rule: IdRule) {
    fn manager(op: &Op) -> Option<&str> {
        match op {
            Op::Create { user } | Op::Update { user, .. } => user.manager(),
            _ => None,
        }
    }
    // Nearly always every manager is synced, or in the file under the very id it is named
    // by: then no set of the ids is built at all.
    let unsynced = |m: &str| !lookup.snapshot.contains_key(m);
    if !ops.iter().any(|(o, _)| manager(o).is_some_and(unsynced)) {
        return;
    }
    // One pass over the ops (each a cache miss on its user): the map from key to id of the
    // ids that are not their own key (nearly always empty: ids are trimmed, and usually
    // written in the key's case), and the references that are not their own key.
    let mut respelled: HashMap<String, &str, FastHash> = HashMap::default();
    let mut odd: Vec<usize> = Vec::new();
    for (i, (o, _)) in ops.iter().enumerate() {
        let id = o.external_id();
        if let Some(k) = Some(rule.key(id)).filter(|k| k.as_ref() != id) {
            respelled.insert(k.into_owned(), id);
        }
        if manager(o).is_some_and(|m| unsynced(m) && rule.key(m) != m) {
            odd.push(i);
        }
    }
    // When every id of the file and of the snapshot is its own key, a reference that is its
    // own key names an id exactly as written, or nobody: it stays as it is (a first sync of
    // a million naming leavers as managers builds no set of the million ids). Only the
    // others are looked up.
    let candidates: Vec<usize> = if respelled.is_empty() && !lookup.any_respelled() {
        odd
    } else {
        ops.iter().enumerate().filter(|(_, (o, _))| manager(o).is_some_and(unsynced)).map(|(i, _)| i).collect()
    };
    if candidates.is_empty() {
        return;
    }
    let exact: HashSet<&str, FastHash> = ops.iter().map(|(o, _)| o.external_id()).collect();
    let in_file = |m: &str| {
        let k = rule.key(m);
        respelled.get(k.as_ref()).copied().or_else(|| exact.get(k.as_ref()).copied().filter(|id| rule.key(id) == *id))
    };
    let fixes: Vec<(usize, String)> = candidates
        .into_iter()
        .filter_map(|i| {
            let m = manager(&ops[i].0).filter(|m| !exact.contains(m))?;
            let named = match lookup.find(m) {
                Some((k, _)) => k.to_string(),
                None => in_file(m)?.to_string(),
            };
            (named != m).then_some((i, named))
        })
        .collect();
    drop(exact);
    for (i, named) in fixes {
        if let (Op::Create { user } | Op::Update { user, .. }, _) = &mut ops[i] {
            user.manager = Some(named.as_str().into());
        }
    }
}

/// A platform account as a reconcile sees it: listed, and active or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listed {
    pub active: Option<bool>,
}

/// What a reconcile changed in the snapshot before planning (`repair`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Repair {
    /// People whose account is no longer on the platform (deleted by hand): out of the
    /// snapshot, so an active one is created again (or adopted, if an account with their
    /// externalId is listed) and a leaver is forgotten.
    pub gone: Vec<String>,
    /// People of the file whose account differs from what we map (edited by hand): their
    /// update replaces every mapped attribute (no PATCH of differences from the state).
    pub rewrite: HashSet<String>,
    /// Absentees (or people inactive in the file) whose account was reactivated by hand:
    /// deactivated again.
    pub reactivated: u64,
}

/// The reconcile's view of drift, decided against the listed accounts: `listed` maps
/// platform id → account; `drifted(user, entry)` says whether a listed account differs from
/// what we map for `user` (the encoder's business). Changes `snapshot` so that the plan
/// does the repairs: entries of deleted accounts go, hand-edited ones read as changed,
/// hand-reactivated leavers read as active. Pure.
pub fn repair(
    snapshot: &mut Snapshot,
    users: &[SourcedUser],
    listed: &HashMap<&str, Listed, FastHash>,
    rule: IdRule,
    drifted: impl Fn(&User, &SnapshotEntry) -> bool,
) -> Repair {
    // A leaver still listed in the file keeps their row (inactive, no account): out of the
    // snapshot they would read as a new person, and be created inactive.
    let listed_inactive: HashSet<std::borrow::Cow<'_, str>, FastHash> =
        users.iter().filter(|u| !u.user.active).map(|u| rule.key(&u.user.external_id).into_owned().into()).collect();
    let gone = snapshot
        .iter()
        .filter(|(id, e)| !listed.contains_key(e.platform_id.as_str()) && !listed_inactive.contains(rule.key(id).as_ref()))
        .map(|(id, _)| id.clone())
        .collect();
    let mut r = Repair { gone, ..Repair::default() };
    r.gone.sort_unstable();
    for id in &r.gone {
        snapshot.remove(id);
    }
    let folded: HashMap<std::borrow::Cow<'_, str>, String, FastHash> =
        if users.iter().all(|u| snapshot.contains_key(u.user.external_id.as_str())) {
            HashMap::default()
        } else {
            snapshot.keys().map(|k| (rule.key(k).into_owned().into(), k.clone())).collect()
        };
    let mut in_file: HashSet<String, FastHash> = HashSet::default();
    for u in users {
        let id = u.user.external_id.as_str();
        let key = if snapshot.contains_key(id) { Some(id.to_string()) } else { folded.get(rule.key(id).as_ref()).cloned() };
        let Some(key) = key else { continue };
        in_file.insert(key.clone());
        let Some(entry) = snapshot.get_mut(&key) else { continue };
        let on_platform = listed.get(entry.platform_id.as_str()).copied().unwrap_or(Listed { active: None });
        if drifted(&u.user, entry) {
            // A hash no content has: the plan sends an update, and `rewrite` makes it whole.
            entry.hash = [0u8; 16];
            r.rewrite.insert(key);
            if !u.user.active && on_platform.active == Some(true) {
                entry.active = true;
                r.reactivated += 1;
            }
        }
    }
    for (id, entry) in snapshot.iter_mut() {
        if !entry.active && !in_file.contains(id) && listed.get(entry.platform_id.as_str()).is_some_and(|l| l.active == Some(true)) {
            entry.active = true;
            r.reactivated += 1;
        }
    }
    r
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

#[cfg(test)]
mod tests {
    use super::settings::{Limit, OnMissing, SyncRule};
    use super::*;

    use crate::model::fixtures::user;
    fn entry(u: &User, pid: &str) -> SnapshotEntry {
        SnapshotEntry { platform_id: pid.into(), hash: u.content_hash(), active: u.active }
    }
    fn rule(on_missing: OnMissing, max_deact: &str) -> SyncRule {
        SyncRule {
            on_missing,
            max_deactivations: Limit::parse(max_deact).unwrap(),
            max_invalid: Limit::Percent(5.0),
            ..SyncRule::default()
        }
    }

    struct Case {
        snapshot: Vec<(User, &'static str)>,
        users: Vec<User>,
        invalid_ids: Vec<&'static str>,
        unidentified: Vec<u64>,
        invalid: u64,
        existing: Vec<Existing>,
        rule: SyncRule,
        allow: bool,
    }

    fn run(c: Case) -> Plan {
        let snapshot: Snapshot = c.snapshot.iter().map(|(u, p)| (u.external_id.to_string(), entry(u, p))).collect();
        let invalid_ids: HashSet<String> = c.invalid_ids.iter().map(|s| s.to_string()).collect();
        let rows = c.users.len() as u64 + c.invalid;
        plan(PlanInput {
            snapshot: &snapshot,
            users: c.users.into_iter().enumerate().map(|(i, user)| SourcedUser { user: Box::new(user), line: i as u64 + 2 }).collect(),
            invalid_ids: &invalid_ids,
            unidentified: &c.unidentified,
            rows,
            invalid: c.invalid,
            existing: &c.existing,
            rule: &c.rule,
            allow_mass_change: c.allow,
            id_rule: IdRule::default(),
        })
    }

    fn base() -> Case {
        Case {
            snapshot: vec![],
            users: vec![],
            invalid_ids: vec![],
            unidentified: vec![],
            invalid: 0,
            existing: vec![],
            rule: rule(OnMissing::Deactivate, "50%"),
            allow: false,
        }
    }

    #[test]
    fn first_sync_creates_everyone_and_is_not_a_mass_change() {
        let p = run(Case { users: vec![user("b", true, "x"), user("a", true, "x")], rule: rule(OnMissing::Deactivate, "0"), ..base() });
        assert_eq!(p.stop, None);
        assert_eq!(p.ops.len(), 2);
        assert!(matches!(&p.ops[0], Op::Create { user } if user.external_id == "a"), "sorted by id");
    }

    #[test]
    fn unchanged_update_deactivate_reactivate() {
        let a = user("a", true, "x");
        let b = user("b", true, "x");
        let c = user("c", true, "x");
        let d_inactive = user("d", false, "x");
        let p = run(Case {
            snapshot: vec![(a.clone(), "1"), (b.clone(), "2"), (c.clone(), "3"), (d_inactive.clone(), "4")],
            users: vec![a.clone(), user("b", true, "new title"), user("d", true, "x")],
            ..base()
        });
        assert_eq!(p.unchanged, 1);
        assert_eq!(
            p.ops,
            vec![
                Op::Update { platform_id: "2".into(), user: Box::new(user("b", true, "new title")), adopt: false, previous: None },
                Op::Update { platform_id: "4".into(), user: Box::new(user("d", true, "x")), adopt: false, previous: None },
                Op::Deactivate { platform_id: "3".into(), external_id: "c".into() },
            ]
        );
        assert_eq!(p.count(OpKind::Update), 2, "reactivation is an update");
    }

    #[test]
    fn active_false_in_the_file_deactivates() {
        let a = user("a", true, "x");
        let p = run(Case {
            snapshot: vec![(a, "1"), (user("b", true, "x"), "2")],
            users: vec![user("a", false, "x"), user("b", true, "x")],
            ..base()
        });
        assert_eq!(p.count(OpKind::Deactivate), 1);
        assert!(matches!(&p.ops[0], Op::Update { user, .. } if !user.active));
    }

    /// Counts count changes: an update that leaves a person inactive is a deactivation only
    /// when they were active (`previous`, the content last synced, attached before the push).
    #[test]
    fn an_update_to_inactive_counts_as_a_deactivation_only_for_someone_active() {
        let op = |now: bool, before: Option<bool>| Op::Update {
            platform_id: "1".into(),
            user: Box::new(user("a", now, "Lead")),
            adopt: false,
            previous: before.map(|b| Box::new(user("a", b, "x"))),
        };
        for (now, before, kind, why) in [
            (false, Some(true), OpKind::Deactivate, "active, now inactive"),
            (false, None, OpKind::Deactivate, "as the plan makes it: only for a change, from a snapshot entry"),
            (false, Some(false), OpKind::Update, "already inactive: a leaver's other field changed"),
            (true, Some(false), OpKind::Update, "a reactivation is an update"),
            (true, Some(true), OpKind::Update, "an update"),
            (true, None, OpKind::Update, "an update, previous unknown"),
        ] {
            assert_eq!(op(now, before).kind(), kind, "{why}");
        }
    }

    #[test]
    fn a_leaver_changed_otherwise_is_updated_and_no_mass_deactivation() {
        let p = run(Case {
            snapshot: vec![(user("a", true, "x"), "1"), (user("b", false, "x"), "2")],
            users: vec![user("a", true, "x"), user("b", false, "Lead")],
            rule: rule(OnMissing::Deactivate, "0"),
            ..base()
        });
        assert_eq!(p.stop, None, "nobody is deactivated");
        assert!(matches!(&p.ops[..], [Op::Update { user, .. }] if !user.active), "the leaver's other field is still sent");
    }

    #[test]
    fn on_missing_delete_and_ignore_and_already_inactive() {
        let snap = vec![(user("a", true, "x"), "1"), (user("b", true, "x"), "2"), (user("c", false, "x"), "3")];
        let p = run(Case { snapshot: snap.clone(), users: vec![user("a", true, "x")], rule: rule(OnMissing::Delete, "100%"), ..base() });
        assert_eq!(p.count(OpKind::Delete), 2);
        let p = run(Case { snapshot: snap.clone(), users: vec![user("a", true, "x")], rule: rule(OnMissing::Ignore, "0"), ..base() });
        assert!(p.ops.is_empty());
        assert_eq!(p.ignored, 2);
        let p = run(Case { snapshot: snap, users: vec![user("a", true, "x")], rule: rule(OnMissing::Deactivate, "100%"), ..base() });
        assert_eq!(p.ops, vec![Op::Deactivate { platform_id: "2".into(), external_id: "b".into() }], "c is already inactive");
    }

    #[test]
    fn invalid_rows_protect_their_people() {
        let p = run(Case {
            snapshot: vec![(user("a", true, "x"), "1"), (user("b", true, "x"), "2")],
            users: vec![user("a", true, "x")],
            invalid_ids: vec!["b"],
            invalid: 1,
            rule: SyncRule { max_invalid: Limit::Percent(100.0), ..rule(OnMissing::Delete, "0") },
            ..base()
        });
        assert!(p.ops.is_empty());
        assert_eq!(p.protected, 1);
        assert_eq!(p.stop, None);
    }

    #[test]
    fn repair_forgets_deleted_accounts_rewrites_edited_ones_and_redeactivates_leavers() {
        let (a, b, c, d) = (user("A", true, "x"), user("B", true, "x"), user("C", false, "x"), user("D", false, "x"));
        let mut snapshot: Snapshot =
            [(&a, "1"), (&b, "2"), (&c, "3"), (&d, "4")].iter().map(|(u, p)| (u.external_id.to_string(), entry(u, p))).collect();
        // A's account was deleted by hand; B's edited; D (absent) reactivated by hand.
        let listed: HashMap<&str, Listed, FastHash> =
            [("2", Some(true)), ("3", Some(false)), ("4", Some(true))].into_iter().map(|(p, a)| (p, Listed { active: a })).collect();
        let users: Vec<SourcedUser> = [&a, &b, &c].iter().map(|u| SourcedUser { user: Box::new((*u).clone()), line: 2 }).collect();
        let r = repair(&mut snapshot, &users, &listed, IdRule::default(), |u, _| u.external_id == "B");
        assert_eq!(r.gone, vec!["A".to_string()]);
        assert_eq!(r.rewrite, HashSet::from(["B".to_string()]));
        assert_eq!(r.reactivated, 1);
        assert!(!snapshot.contains_key("A") && snapshot["B"].hash == [0; 16] && snapshot["D"].active);
        // The plan then does the repairs: A created again, B rewritten, D deactivated again.
        let invalid = HashSet::new();
        let p = plan(PlanInput {
            snapshot: &snapshot,
            users,
            invalid_ids: &invalid,
            unidentified: &[],
            rows: 3,
            invalid: 0,
            existing: &[],
            rule: &rule(OnMissing::Deactivate, "100%"),
            allow_mass_change: false,
            id_rule: IdRule::default(),
        });
        let kinds: Vec<(OpKind, &str)> = p.ops.iter().map(|o| (o.kind(), o.external_id())).collect();
        assert_eq!(kinds, vec![(OpKind::Create, "A"), (OpKind::Update, "B"), (OpKind::Deactivate, "D")]);
        assert_eq!(p.unchanged, 1, "C, inactive in the file and on the platform");
    }

    #[test]
    fn manager_references_fold_like_ids_and_strangers_are_named() {
        let m = user("E5", true, "x");
        let mut report = user("E6", true, "x");
        report.manager = Some("e5".into());
        let mut new_report = user("E7", true, "x");
        new_report.manager = Some("e8".into());
        let new_manager = user("E8", true, "x");
        let mut synced = report.clone();
        synced.manager = Some("E5".into());
        let p = run(Case {
            snapshot: vec![(m.clone(), "5"), (synced, "6")],
            users: vec![m, report, new_report, new_manager],
            existing: vec![ext("99", Some("X-1"), None)],
            ..base()
        });
        // E6 is unchanged: "e5" is their synced manager "E5".
        assert_eq!(p.unchanged, 2, "{:?}", p.ops);
        let e7 = p.ops.iter().find(|o| o.external_id() == "E7").unwrap();
        assert!(matches!(e7, Op::Create { user } if user.manager() == Some("E8")), "{e7:?}");
        assert_eq!(p.strangers, vec!["X-1".to_string()]);
    }

    #[test]
    fn manager_references_fold_when_some_manager_is_nobody_in_the_plan() {
        // A leaver the lifecycle never creates ("L1", not among the users) is named as a
        // manager: the references then go through the folded lookups, which must still
        // answer as the exact ones do.
        let with_manager = |id: &str, manager: &str| {
            let mut u = user(id, true, "x");
            u.manager = Some(manager.into());
            u
        };
        let synced = user("E5", true, "x");
        let p = run(Case {
            snapshot: vec![(synced.clone(), "5")],
            users: vec![
                synced,
                with_manager("E6", "e5"), // in the snapshot, spelled otherwise
                with_manager("E7", "e8"), // in the file, spelled otherwise
                user("E8", true, "x"),
                with_manager("E9", "E11"), // in the file, whose own row is not written as its key
                user("e11", true, "x"),
                with_manager("E10", "l1"), // a leaver not in the ops: left as named
                with_manager("E12", "E8"), // in the file as named
            ],
            ..base()
        });
        let managers: Vec<(&str, Option<&str>)> = p
            .ops
            .iter()
            .filter_map(|o| match o {
                Op::Create { user } | Op::Update { user, .. } => Some((o.external_id(), user.manager())),
                _ => None,
            })
            .collect();
        assert_eq!(
            managers,
            vec![
                ("E10", Some("l1")),
                ("E12", Some("E8")),
                ("E6", Some("E5")),
                ("E7", Some("E8")),
                ("E8", None),
                ("E9", Some("e11")),
                ("e11", None),
            ]
        );
        // Every id its own key (this test's rule folds to lower case): only the references
        // spelled otherwise are looked up, with the same answers.
        let p = run(Case {
            users: vec![
                user("e1", true, "x"),
                with_manager("e2", "E1"), // in the file, spelled otherwise
                with_manager("e3", "l1"), // a leaver not in the ops: left as named
                with_manager("e4", "L1"), // the same, spelled otherwise
                with_manager("e5", "e1"), // in the file as named
            ],
            ..base()
        });
        let managers: Vec<(&str, Option<&str>)> = p
            .ops
            .iter()
            .filter_map(|o| match o {
                Op::Create { user } | Op::Update { user, .. } => Some((o.external_id(), user.manager())),
                _ => None,
            })
            .collect();
        assert_eq!(managers, vec![("e1", None), ("e2", Some("e1")), ("e3", Some("l1")), ("e4", Some("L1")), ("e5", Some("e1"))]);
    }

    #[test]
    fn an_id_written_otherwise_is_the_same_person_under_their_first_id() {
        let snap = vec![(user("E5", true, "x"), "1"), (user("E7", true, "x"), "2"), (user("ann@example.com", true, "x"), "3")];
        // Trailing space, other case, other capitals of an email: nobody new, nobody gone.
        let users = vec![user("E5 ", true, "x"), user("e7", true, "changed"), user("Ann@Example.COM", true, "x")];
        let p = run(Case { snapshot: snap.clone(), users, rule: rule(OnMissing::Delete, "100%"), ..base() });
        // Their other fields are spelled otherwise too (this test's users derive them from the
        // id), so they are updates — of the same accounts, under the ids they were synced with.
        let got: Vec<(OpKind, &str, &str)> = p
            .ops
            .iter()
            .map(|o| match o {
                Op::Update { platform_id, user, .. } => (o.kind(), platform_id.as_str(), user.external_id.as_str()),
                other => (other.kind(), "", other.external_id()),
            })
            .collect();
        assert_eq!(
            got,
            vec![(OpKind::Update, "1", "E5"), (OpKind::Update, "2", "E7"), (OpKind::Update, "3", "ann@example.com")],
            "nobody created, nobody deleted"
        );
        // An invalid row written otherwise still protects its person.
        let p = run(Case {
            snapshot: snap,
            users: vec![user("E5", true, "x"), user("e7", true, "x")],
            invalid_ids: vec!["ANN@example.com"],
            invalid: 1,
            rule: SyncRule { max_invalid: Limit::Percent(100.0), ..rule(OnMissing::Delete, "100%") },
            ..base()
        });
        assert!(p.ops.iter().all(|o| o.kind() == OpKind::Update), "{:?}", p.ops);
        assert_eq!(p.protected, 1);
    }

    #[test]
    fn case_sensitive_ids_are_other_people() {
        let snap: Snapshot = [(user("E7", true, "x"), "2")].iter().map(|(u, p)| (u.external_id.to_string(), entry(u, p))).collect();
        let p = plan(PlanInput {
            snapshot: &snap,
            users: vec![SourcedUser { user: Box::new(user("e7", true, "x")), line: 2 }],
            invalid_ids: &HashSet::new(),
            unidentified: &[],
            rows: 1,
            invalid: 0,
            existing: &[],
            rule: &rule(OnMissing::Deactivate, "100%"),
            allow_mass_change: false,
            id_rule: IdRule { fold_case: false, upper: true },
        });
        let kinds: Vec<OpKind> = p.ops.iter().map(Op::kind).collect();
        assert_eq!(kinds, vec![OpKind::Create, OpKind::Deactivate], "id_case = \"sensitive\": e7 is not E7");
    }

    #[test]
    fn an_unidentified_row_holds_every_absentee_and_nothing_else() {
        let snap = vec![(user("a", true, "x"), "1"), (user("b", true, "x"), "2"), (user("c", true, "x"), "3")];
        for on_missing in [OnMissing::Deactivate, OnMissing::Delete] {
            let p = run(Case {
                snapshot: snap.clone(),
                users: vec![user("a", true, "changed"), user("d", true, "x")],
                unidentified: vec![7],
                invalid: 1,
                rule: SyncRule { max_invalid: Limit::Percent(100.0), ..rule(on_missing, "100%") },
                ..base()
            });
            let kinds: Vec<OpKind> = p.ops.iter().map(Op::kind).collect();
            assert_eq!(kinds, vec![OpKind::Create, OpKind::Update], "{on_missing:?}: the rest of the file still applies");
            assert_eq!(p.held, 2, "b and c may be the row of line 7");
        }
        // Without such a row the same file deactivates them.
        let p = run(Case { snapshot: snap, users: vec![user("a", true, "x")], rule: rule(OnMissing::Deactivate, "100%"), ..base() });
        assert_eq!(p.count(OpKind::Deactivate), 2);
        assert_eq!(p.held, 0);
    }

    #[test]
    fn safeguards_stop_and_allow_mass_change_overrides() {
        let snap: Vec<(User, &str)> = (0..10).map(|i| (user(&format!("u{i}"), true, "x"), "p")).collect();
        let keep: Vec<User> = (0..8).map(|i| user(&format!("u{i}"), true, "x")).collect();
        let p = run(Case { snapshot: snap.clone(), users: keep.clone(), rule: rule(OnMissing::Deactivate, "10%"), ..base() });
        assert_eq!(p.stop, Some(Safeguard::MassDeactivation { count: 2, known: 10, limit: "10%".into(), allowed: 1 }));
        let p = run(Case { snapshot: snap.clone(), users: keep.clone(), rule: rule(OnMissing::Deactivate, "2"), ..base() });
        assert_eq!(p.stop, None, "a count limit of 2 allows 2");
        let p = run(Case { snapshot: snap.clone(), users: keep, rule: rule(OnMissing::Deactivate, "10%"), allow: true, ..base() });
        assert_eq!(p.stop, None);
        assert_eq!(p.count(OpKind::Deactivate), 2);

        // 5% of a small file is still one row: one bad row goes through, two stop it.
        let p = run(Case { users: vec![user("a", true, "x")], invalid: 1, ..base() });
        assert_eq!(p.stop, None);
        let p = run(Case { users: vec![user("a", true, "x")], invalid: 2, ..base() });
        assert!(matches!(p.stop, Some(Safeguard::TooManyInvalid { invalid: 2, rows: 3, allowed: 1, .. })), "{:?}", p.stop);

        let p = run(Case { snapshot: snap.clone(), users: vec![], ..base() });
        assert_eq!(p.stop, Some(Safeguard::NoDataRows));
        assert!(p.ops.is_empty());
        // An explicit go-ahead empties the customer (an offboarded customer's last export).
        let p = run(Case { snapshot: snap, users: vec![], allow: true, ..base() });
        assert_eq!(p.stop, None);
        assert_eq!(p.count(OpKind::Deactivate), 10);
    }

    #[test]
    fn a_stop_for_invalid_rows_offers_an_override_only_when_it_would_sync_someone() {
        let some = Safeguard::TooManyInvalid { invalid: 3, rows: 10, limit: "5%".into(), allowed: 1 }.message("acme");
        assert!(some.contains("to sync the 7 valid rows") && some.contains("--allow-mass-change"), "{some}");
        let all = Safeguard::TooManyInvalid { invalid: 10, rows: 10, limit: "5%".into(), allowed: 1 }.message("acme");
        assert!(all.starts_with("all 10 rows are invalid") && all.contains("`rostersync test acme`"), "{all}");
        assert!(!all.contains("--allow-mass-change") && all.ends_with("Overriding would change nobody"), "{all}");
    }

    #[test]
    fn existing_platform_users_are_adopted_by_external_id_then_user_name() {
        let p = run(Case {
            users: vec![user("a", true, "x"), user("b", true, "x"), user("c", true, "x")],
            existing: vec![ext("P-A", Some("a"), Some("a@example.com")), ext("P-B", None, Some("B@EXAMPLE.COM"))],
            ..base()
        });
        assert_eq!(p.ops.len(), 3);
        assert!(matches!(&p.ops[0], Op::Create { user } if user.external_id == "c"));
        assert!(matches!(&p.ops[1], Op::Update { platform_id, adopt: true, .. } if platform_id == "P-A"));
        assert!(matches!(&p.ops[2], Op::Update { platform_id, adopt: true, .. } if platform_id == "P-B"));
    }

    fn ext(pid: &str, external_id: Option<&str>, user_name: Option<&str>) -> Existing {
        Existing {
            platform_id: pid.into(),
            external_id: external_id.map(Into::into),
            user_name: user_name.map(Into::into),
            emails: vec![],
            active: None,
        }
    }

    /// (kind, platform id or "", external id) of each op: what a table test compares.
    fn shape(p: &Plan) -> Vec<(OpKind, String, String)> {
        p.ops
            .iter()
            .map(|o| {
                let pid = match o {
                    Op::Create { .. } => String::new(),
                    Op::Update { platform_id, .. } | Op::Deactivate { platform_id, .. } | Op::Delete { platform_id, .. } => {
                        platform_id.clone()
                    }
                };
                (o.kind(), pid, o.external_id().to_string())
            })
            .collect()
    }

    #[test]
    fn adoption_binds_only_free_or_same_id_accounts() {
        struct T {
            name: &'static str,
            existing: Vec<Existing>,
            /// (kind, platform id) of the one op for "a", or None with the conflict's bound.
            want: Result<(OpKind, &'static str), Bound>,
        }
        let table = [
            T { name: "same id and login", existing: vec![ext("P1", Some("a"), Some("a@example.com"))], want: Ok((OpKind::Update, "P1")) },
            T {
                name: "same id, other spelling",
                existing: vec![ext("P1", Some(" A "), Some("A@example.com "))],
                want: Ok((OpKind::Update, "P1")),
            },
            T {
                name: "by userName, no externalId",
                existing: vec![ext("P1", None, Some("A@EXAMPLE.com"))],
                want: Ok((OpKind::Update, "P1")),
            },
            T {
                name: "by userName, empty externalId",
                existing: vec![ext("P1", Some(""), Some("a@example.com"))],
                want: Ok((OpKind::Update, "P1")),
            },
            T {
                name: "by userName, another externalId: a takeover",
                existing: vec![ext("P9", Some("admin-1"), Some("a@example.com"))],
                want: Err(Bound::OtherExternalId { external_id: "admin-1".into() }),
            },
            T {
                name: "by email in emails[], a hand-made login",
                existing: vec![Existing { emails: vec!["A@Example.com".into()], ..ext("P1", None, Some("alee5")) }],
                want: Ok((OpKind::Update, "P1")),
            },
            T {
                name: "another connector's person",
                existing: vec![ext("PB", Some("a"), Some("a@example.com"))],
                want: Err(Bound::OtherConnector { connector: "bamboo".into(), external_id: "a".into() }),
            },
            T {
                name: "another connector's person with this id and another login: ids collide",
                existing: vec![ext("PB", Some("a"), Some("someone.else@globex.example"))],
                want: Err(Bound::IdCollision {
                    connector: "bamboo".into(),
                    external_id: "a".into(),
                    user_name: Some("someone.else@globex.example".into()),
                }),
            },
            T {
                name: "nothing on the platform",
                existing: vec![ext("PX", Some("x"), Some("x@example.com"))],
                want: Ok((OpKind::Create, "")),
            },
        ];
        let bamboo: Snapshot = [("a".to_string(), entry(&user("a", true, "x"), "PB"))].into_iter().collect();
        for t in table {
            let c = Case { users: vec![user("a", true, "x")], existing: t.existing, ..base() };
            let others = Others { snapshots: vec![("bamboo", &bamboo)] };
            let snapshot = Snapshot::default();
            let p = plan_with(
                PlanInput {
                    snapshot: &snapshot,
                    users: c.users.into_iter().map(|u| SourcedUser { user: Box::new(u), line: 2 }).collect(),
                    invalid_ids: &HashSet::new(),
                    unidentified: &[],
                    rows: 1,
                    invalid: 0,
                    existing: &c.existing,
                    rule: &c.rule,
                    allow_mass_change: false,
                    id_rule: IdRule::default(),
                },
                &others,
            );
            match t.want {
                Ok((kind, pid)) => {
                    assert_eq!(shape(&p), vec![(kind, pid.to_string(), "a".to_string())], "{}", t.name);
                    assert!(p.conflicts.is_empty(), "{}", t.name);
                }
                Err(bound) => {
                    assert!(p.ops.is_empty(), "{}: nothing is sent: {:?}", t.name, p.ops);
                    assert_eq!(p.conflicts.len(), 1, "{}", t.name);
                    assert_eq!(p.conflicts[0].bound, bound, "{}", t.name);
                    assert_eq!(p.conflicts[0].external_id, "a", "{}", t.name);
                    assert!(p.conflicts[0].message("acme").contains("\"a\""), "{}: both ids", t.name);
                }
            }
        }
    }

    /// An id alone (another person's login on the account) is a partial match: the adoption
    /// is in the plan, which stops until a person approves; approved, it is the same plan.
    #[test]
    fn an_id_match_alone_stops_for_approval_and_approved_is_the_same_plan() {
        let case = || Case {
            users: vec![user("a", true, "x"), user("b", true, "x")],
            existing: vec![ext("P1", Some("a"), Some("someone@other.example")), ext("P2", Some("b"), Some("b@example.com"))],
            ..base()
        };
        let stopped = run(case());
        assert_eq!(stopped.stop, Some(Safeguard::PartialMatch { count: 1 }));
        assert_eq!(stopped.partial.len(), 1);
        let pm = &stopped.partial[0];
        assert_eq!((pm.external_id.as_str(), pm.platform_id.as_str(), pm.user_name.as_deref()), ("a", "P1", Some("someone@other.example")));
        assert!(pm.message("acme").contains("approve"), "{}", pm.message("acme"));
        assert_eq!(shape(&stopped), vec![(OpKind::Update, "P1".into(), "a".into()), (OpKind::Update, "P2".into(), "b".into())]);
        let approved = run(Case { allow: true, ..case() });
        assert_eq!(approved.stop, None);
        assert_eq!(shape(&approved), shape(&stopped), "the approved run sends exactly the stopped plan");
        assert_eq!(Safeguard::PartialMatch { count: 1 }.rule(), "partial_match");
    }

    #[test]
    fn two_people_of_one_file_never_take_one_account() {
        // "b" has no email of its own here: both rows name a@example.com.
        let mut b = user("b", true, "x");
        b.set_email(Some("a@example.com"));
        let p = run(Case { users: vec![user("a", true, "x"), b], existing: vec![ext("P1", None, Some("a@example.com"))], ..base() });
        assert_eq!(shape(&p), vec![(OpKind::Update, "P1".into(), "a".into())]);
        assert_eq!(p.conflicts.len(), 1);
        assert_eq!(p.conflicts[0].bound, Bound::TakenInRun { external_id: "a".into() });
    }

    /// A re-hire: "new" has the email of "old", who is absent from or inactive in the file.
    fn rehire_case(old_in_file: Option<bool>, old_active: bool, on_missing: OnMissing) -> (Plan, HashMap<String, String>) {
        let old = user("old", old_active, "x");
        let mut new = user("new", true, "x");
        new.set_email(Some("old@example.com"));
        let mut users = vec![new, user("k", true, "x")];
        if let Some(active) = old_in_file {
            users.push(user("old", active, "x"));
        }
        let p =
            run(Case { snapshot: vec![(old, "P-OLD"), (user("k", true, "x"), "P-K")], users, rule: rule(on_missing, "100%"), ..base() });
        let names = [("old".to_string(), "Old@Example.com".to_string())].into_iter().collect();
        (p, names)
    }

    fn settled(mut p: Plan, names: &HashMap<String, String>, rehire: Rehire) -> Plan {
        settle(&mut p, Settle { others: &Others::default(), names, rehire, id_rule: IdRule::default() });
        p
    }

    #[test]
    fn a_rehire_takes_the_leavers_account_and_nothing_else_touches_it() {
        // (how the leaver appears, on_missing, the leaver's op before settling)
        let table = [
            ("absent, active", None, true, OnMissing::Deactivate, Some(OpKind::Deactivate)),
            ("absent, deleted", None, true, OnMissing::Delete, Some(OpKind::Delete)),
            ("absent, already inactive", None, false, OnMissing::Deactivate, None),
            ("absent, ignored", None, true, OnMissing::Ignore, None),
            ("inactive in the file", Some(false), true, OnMissing::Deactivate, Some(OpKind::Deactivate)),
            ("inactive in the file, already", Some(false), false, OnMissing::Deactivate, None),
        ];
        for (name, in_file, active, on_missing, leaver_op) in table {
            let (p, names) = rehire_case(in_file, active, on_missing);
            assert_eq!(p.count(OpKind::Create), 1, "{name}");
            assert_eq!(p.ops.iter().filter(|o| o.external_id() == "old").map(Op::kind).next(), leaver_op, "{name}");
            let people = |p: &Plan| p.ops.len() as u64 + p.unchanged + p.ignored + p.conflicts.len() as u64;
            let before = people(&p);
            let p = settled(p, &names, Rehire::Rekey);
            assert_eq!(shape(&p), vec![(OpKind::Update, "P-OLD".into(), "new".into())], "{name}: one op, to the old account");
            assert!(matches!(&p.ops[0], Op::Update { adopt: true, user, .. } if user.active), "{name}");
            assert_eq!(p.rekeyed, vec![Rekey { new: "new".into(), old: "old".into(), platform_id: "P-OLD".into() }], "{name}");
            assert_eq!(people(&p), before, "{name}: everyone still counted once");
        }
    }

    #[test]
    fn rehire_conflict_reports_and_leaves_the_leaver_be() {
        let (p, names) = rehire_case(None, true, OnMissing::Deactivate);
        let p = settled(p, &names, Rehire::Conflict);
        assert_eq!(shape(&p), vec![(OpKind::Deactivate, "P-OLD".into(), "old".into())]);
        assert_eq!(p.conflicts[0].bound, Bound::Rehire { external_id: "old".into() });
        assert!(p.rekeyed.is_empty());
    }

    #[test]
    fn an_active_person_is_no_rehire_and_other_connectors_keep_their_accounts() {
        // The email belongs to someone active in the file: a plain create (its 409 decides).
        let (p, names) = rehire_case(Some(true), true, OnMissing::Deactivate);
        assert!(p.dormant.is_empty());
        let p = settled(p, &names, Rehire::Rekey);
        assert_eq!(shape(&p), vec![(OpKind::Create, String::new(), "new".into())]);
        // A new id another connector holds: that connector's account is not to be adopted.
        let bamboo: Snapshot = [("NEW".to_string(), entry(&user("NEW", true, "x"), "PB"))].into_iter().collect();
        let others = Others { snapshots: vec![("bamboo", &bamboo)] };
        let mut p = run(Case { users: vec![user("new", true, "x")], ..base() });
        settle(&mut p, Settle { others: &others, names: &HashMap::new(), rehire: Rehire::Rekey, id_rule: IdRule::default() });
        assert_eq!(shape(&p), vec![(OpKind::Create, String::new(), "new".into())], "another customer's 1001 is not ours: created");
        let claimed: HashMap<String, (String, String)> =
            [("PB".to_string(), ("bamboo".to_string(), "NEW".to_string()))].into_iter().collect();
        assert_eq!(p.claimed, claimed, "but its 409 may not adopt bamboo's account");
    }

    #[test]
    fn a_large_file_compared_on_several_threads_gives_the_exact_plan() {
        // Above PARALLEL_FROM: shares of the file are compared on different threads.
        let n = 3 * PARALLEL_FROM;
        let id = |i: usize| format!("E{i:06}");
        let snapshot: Vec<(User, &str)> = (0..n).map(|i| (user(&id(i), true, "x"), "pid")).collect();
        // Every 100th has a new title, every 1000th (offset 7) left the company, the last
        // 10 are missing from the file, and 5 people are new.
        let mut users: Vec<User> = (0..n - 10).map(|i| user(&id(i), i % 1000 != 7, if i % 100 == 0 { "new" } else { "x" })).collect();
        users.extend((n..n + 5).map(|i| user(&id(i), true, "x")));
        let p = run(Case { snapshot, users, rule: rule(OnMissing::Deactivate, "5%"), ..base() });
        assert_eq!(p.stop, None);
        let count = |k| p.ops.iter().filter(|o| o.kind() == k).count();
        let leavers = (0..n - 10).filter(|i| i % 1000 == 7).count();
        let retitled = (0..n - 10).filter(|i| i % 100 == 0).count();
        assert_eq!(count(OpKind::Create), 5);
        assert_eq!(count(OpKind::Update), retitled);
        assert_eq!(count(OpKind::Deactivate), leavers + 10, "leavers by flag, and the 10 missing");
        assert_eq!(p.unchanged as usize, n - 10 - leavers - retitled);
        assert!(
            p.ops.windows(2).all(|w| (w[0].kind().cmp_order(), w[0].external_id()) < (w[1].kind().cmp_order(), w[1].external_id())),
            "sorted"
        );
        assert_eq!(p.lines.len(), p.ops.len());
    }

    /// The advice that handed one customer's accounts to another: `adopt_from` is advised
    /// only for the same person (the same login), never for two people sharing an id.
    #[test]
    fn a_conflict_advises_adopt_from_only_for_the_same_person() {
        let conflict = |bound| Conflict { external_id: "1001".into(), line: 2, platform_id: "P1".into(), bound };
        let same = conflict(Bound::OtherConnector { connector: "acme".into(), external_id: "1001".into() }).message("globex");
        assert!(same.contains("adopt_from = [\"acme\"]"), "{same}");
        let other = conflict(Bound::IdCollision {
            connector: "acme".into(),
            external_id: "1001".into(),
            user_name: Some("ann@acme.example".into()),
        })
        .message("globex");
        assert!(!other.contains("adopt_from = ["), "never advised for another person: {other}");
        assert!(other.contains("collide") && other.contains("[connectors.globex.platform]"), "{other}");
        assert!(other.contains("\"ann@acme.example\""), "{other}");
    }
}

#[cfg(test)]
mod rule_names {
    use super::Safeguard;

    #[test]
    fn rule_names_are_the_serde_tags() {
        let all = [
            Safeguard::NoDataRows,
            Safeguard::MassDeactivation { count: 1, known: 1, limit: "1".into(), allowed: 0 },
            Safeguard::TooManyInvalid { invalid: 1, rows: 1, limit: "1".into(), allowed: 0 },
            Safeguard::PartialMatch { count: 1 },
        ];
        for s in all {
            assert_eq!(serde_json::to_value(&s).unwrap()["rule"], s.rule(), "{s:?}");
        }
    }
}
