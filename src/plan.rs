//! Plan: the pure decision of what to send. Given the last synced snapshot and the users
//! of the new file, it returns the operations and whether a safeguard stops the run.
//! No I/O; table-tested.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

/// Hasher of the plan's maps. The snapshot holds a million keys and the plan looks each
/// user up in it: foldhash is several times faster than std's SipHash on short string ids,
/// and still randomly seeded per map.
pub type FastHash = foldhash::fast::RandomState;

/// The last synced snapshot, by unique id.
pub type Snapshot = HashMap<String, SnapshotEntry, FastHash>;

use crate::config::{OnMissing, SyncRule};
use crate::model::{IdRule, SourcedUser, User};

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
    /// The rule's name, as reports, history and metrics show it (the serde tag).
    pub fn rule(&self) -> &'static str {
        match self {
            Safeguard::NoDataRows => "no_data_rows",
            Safeguard::MassDeactivation { .. } => "mass_deactivation",
            Safeguard::TooManyInvalid { .. } => "too_many_invalid",
        }
    }

    pub fn message(&self, connector: &str) -> String {
        let go_on = format!("check the file, then run `rostersync sync {connector} --allow-mass-change` to apply it anyway");
        match self {
            Safeguard::NoDataRows => {
                format!("the export has no data rows; nothing was pushed. A full employee list is expected: check the file, then {go_on}")
            }
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
}

impl Plan {
    pub fn count(&self, kind: OpKind) -> u64 {
        self.ops.iter().filter(|o| o.kind() == kind).count() as u64
    }

    /// The file line of each operation's person, by external id (people absent from the
    /// file have none), for the errors of a push.
    pub fn lines_by_id(&self) -> std::collections::HashMap<String, u64> {
        self.ops.iter().zip(&self.lines).filter(|(_, l)| **l > 0).map(|(o, l)| (o.external_id().to_string(), *l)).collect()
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

/// Decides the operations.
pub fn plan(input: PlanInput) -> Plan {
    let mut p = Plan::default();
    let snapshot = input.snapshot;

    if input.rows == 0 && !input.allow_mass_change {
        p.stop = Some(Safeguard::NoDataRows);
        return p;
    }
    let mut ops: Vec<(Op, u64)> = Vec::new();

    let rule = input.id_rule;
    let by_ext: HashMap<std::borrow::Cow<'_, str>, &Existing, FastHash> =
        input.existing.iter().filter_map(|e| e.external_id.as_deref().map(|x| (rule.key(x), e))).collect();
    let by_name: HashMap<String, &Existing, FastHash> =
        input.existing.iter().filter_map(|e| e.user_name.as_deref().map(|n| (n.to_lowercase(), e))).collect();

    // The comparison of each user with the snapshot (a lookup and a content hash) is the
    // bulk of the work; it runs on one thread per core over shares of the file.
    let lookup = Lookup { snapshot, rule, folded: std::sync::OnceLock::new() };
    let parts = compare_all(input.users, &lookup);
    let mut deactivating = 0u64;
    let mut marks = Vec::with_capacity(parts.len());
    for part in parts {
        p.unchanged += part.unchanged;
        marks.push(part.marks);
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
                    let found = if input.existing.is_empty() {
                        None
                    } else {
                        by_ext.get(rule.key(&user.external_id).as_ref()).or_else(|| by_name.get(&user.user_name().to_lowercase()))
                    };
                    match found {
                        Some(e) => ops.push((Op::Update { platform_id: e.platform_id.clone(), user, adopt: true, previous: None }, line)),
                        None => ops.push((Op::Create { user }, line)),
                    }
                }
            }
        }
    }
    let seen = |id: &String| marks.iter().any(|m| m.contains(&mark(id)));

    let mut missing: Vec<(&String, &SnapshotEntry)> = snapshot.iter().filter(|(id, _)| !seen(id)).collect();
    missing.sort_by(|a, b| a.0.cmp(b.0));
    let invalid: HashSet<std::borrow::Cow<'_, str>, FastHash> = input.invalid_ids.iter().map(|i| rule.key(i)).collect();
    for (id, entry) in missing {
        if invalid.contains(rule.key(id).as_ref()) {
            p.protected += 1;
            continue;
        }
        if !input.unidentified.is_empty() && input.rule.on_missing != OnMissing::Ignore {
            p.held += 1;
            continue;
        }
        match input.rule.on_missing {
            OnMissing::Ignore => p.ignored += 1,
            OnMissing::Deactivate if !entry.active => p.unchanged += 1,
            OnMissing::Deactivate => {
                deactivating += 1;
                ops.push((Op::Deactivate { platform_id: entry.platform_id.clone(), external_id: id.clone() }, 0));
            }
            OnMissing::Delete => {
                deactivating += 1;
                ops.push((Op::Delete { platform_id: entry.platform_id.clone(), external_id: id.clone() }, 0));
            }
        }
    }

    ops.sort_unstable_by(|(a, _), (b, _)| {
        a.kind().cmp_order().cmp(&b.kind().cmp_order()).then_with(|| a.external_id().cmp(b.external_id()))
    });
    (p.ops, p.lines) = ops.into_iter().unzip();

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
        let index = self.folded.get_or_init(|| self.snapshot.keys().map(|k| (rule.key(k), k)).collect());
        let stored = index.get(rule.key(id).as_ref())?;
        self.snapshot.get_key_value(stored.as_str())
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
        seen: Vec::new(),
        unchanged: 0,
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
                if entry.hash == u.user.content_hash() {
                    part.unchanged += 1;
                } else {
                    part.seen.push(Seen::Changed(u, entry));
                }
            }
            None => part.seen.push(Seen::New(u)),
        }
    }
    part
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
    use super::*;
    use crate::config::{Limit, OnMissing, SyncRule};

    fn user(id: &str, active: bool, title: &str) -> User {
        let mut u = User {
            external_id: id.into(),
            email: Some(format!("{id}@example.com").into()),
            employee_id: Some(id.into()),
            first_name: "Ann".into(),
            last_name: "Lee".into(),
            language: "en".into(),
            active,
            manager: None,
            attributes: Default::default(),
        };
        u.attributes.insert("title", title);
        u
    }
    fn entry(u: &User, pid: &str) -> SnapshotEntry {
        SnapshotEntry { platform_id: pid.into(), hash: u.content_hash(), active: u.active }
    }
    fn rule(on_missing: OnMissing, max_deact: &str) -> SyncRule {
        SyncRule { on_missing, max_deactivations: Limit::parse(max_deact).unwrap(), max_invalid: Limit::Percent(5.0) }
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

        let p = run(Case { users: vec![user("a", true, "x")], invalid: 1, ..base() });
        assert!(matches!(p.stop, Some(Safeguard::TooManyInvalid { invalid: 1, rows: 2, allowed: 0, .. })));

        let p = run(Case { snapshot: snap.clone(), users: vec![], ..base() });
        assert_eq!(p.stop, Some(Safeguard::NoDataRows));
        assert!(p.ops.is_empty());
        // An explicit go-ahead empties the customer (an offboarded customer's last export).
        let p = run(Case { snapshot: snap, users: vec![], allow: true, ..base() });
        assert_eq!(p.stop, None);
        assert_eq!(p.count(OpKind::Deactivate), 10);
    }

    #[test]
    fn existing_platform_users_are_adopted_by_external_id_then_user_name() {
        let p = run(Case {
            users: vec![user("a", true, "x"), user("b", true, "x"), user("c", true, "x")],
            existing: vec![
                Existing { platform_id: "P-A".into(), external_id: Some("a".into()), user_name: None },
                Existing { platform_id: "P-B".into(), external_id: None, user_name: Some("B@EXAMPLE.COM".into()) },
            ],
            ..base()
        });
        assert_eq!(p.ops.len(), 3);
        assert!(matches!(&p.ops[0], Op::Create { user } if user.external_id == "c"));
        assert!(matches!(&p.ops[1], Op::Update { platform_id, adopt: true, .. } if platform_id == "P-A"));
        assert!(matches!(&p.ops[2], Op::Update { platform_id, adopt: true, .. } if platform_id == "P-B"));
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
        ];
        for s in all {
            assert_eq!(serde_json::to_value(&s).unwrap()["rule"], s.rule(), "{s:?}");
        }
    }
}
