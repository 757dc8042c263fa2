//! The employee lifecycle (issue 27): which people of the file get an account, and which
//! known people rostersync leaves alone. Decided around the plan (`plan::plan_with`), not in
//! it, so the plan stays the comparison of the file with the snapshot:
//!
//! - `sort` (before): people who never had an account and are inactive in the file get none
//!   (`create_inactive`); protected accounts (`protected`) are taken out of the file, the
//!   snapshot's decisions and the platform's adoptable accounts;
//! - `spare` (after): the operations the plan made for people left alone are dropped, the
//!   mass-deactivation safeguard counted again without them.
//!
//! Pure: what the state knows (stored userNames) comes in as arguments.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::settings::Lifecycle;
use super::{Existing, FastHash, Op, Plan, Safeguard, Snapshot};
use crate::model::{IdRule, SourcedUser};

/// People each list of the report names at most; its count has every one.
pub const LISTED: usize = 100;

/// A person of the file the lifecycle kept from the platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    pub external_id: String,
    /// The file line (0: absent from the file).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub line: u64,
    /// Whether this connector has an account for them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub known: bool,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A future hire with no account yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub external_id: String,
    pub line: u64,
    pub start_date: chrono::NaiveDate,
    /// The day their (inactive) account is made: `create_lead` before the start.
    pub created_on: chrono::NaiveDate,
}

/// What a date of the file changes next, and for whom.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NextChange {
    pub on: chrono::NaiveDate,
    pub external_id: String,
    /// "account" (a pending hire's account is made), "start" (active), "leave" (deactivated).
    pub change: String,
}

/// A person absent from the file, in grace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InGrace {
    pub external_id: String,
    pub absent_since: chrono::DateTime<chrono::Utc>,
    /// The first run at or after this deactivates them (on_missing), if still absent.
    pub until: chrono::DateTime<chrono::Utc>,
}

/// A list of people, capped at `LISTED`, with the whole count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listed<T> {
    pub count: u64,
    #[serde(default = "Vec::new", skip_serializing_if = "Vec::is_empty")]
    pub people: Vec<T>,
}

impl<T> Default for Listed<T> {
    fn default() -> Self {
        Listed { count: 0, people: Vec::new() }
    }
}

impl<T> Listed<T> {
    fn push(&mut self, p: T) {
        self.count += 1;
        if self.people.len() < LISTED {
            self.people.push(p);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// What the lifecycle held back in one run: the report's `lifecycle` section, also what
/// `explain` reads a person's fate from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    /// Inactive in the file and never synced: no account (`create_inactive = false`).
    #[serde(default = "Listed::default", skip_serializing_if = "Listed::is_empty")]
    pub skipped: Listed<Person>,
    /// Protected accounts this run met (`protected`): their userName or platform id as
    /// the configuration names them, each once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protected: Vec<String>,
    /// Rows out of the mapping's `[scope]` (`Person::known`: this connector has an account
    /// for them, handled by `out_of_scope`). Not rows of the counts: they are not mapped.
    #[serde(default = "Listed::default", skip_serializing_if = "Listed::is_empty")]
    pub out_of_scope: Listed<Person>,
    /// Future hires further than `create_lead` from their start: no account yet.
    #[serde(default = "Listed::default", skip_serializing_if = "Listed::is_empty")]
    pub pending: Listed<Pending>,
    /// The next change a date of the file brings (a hire's account, a start, a leave).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_change: Option<NextChange>,
    /// Absent from the file, keeping their account until `until` (`deactivate_after`).
    #[serde(default = "Listed::default", skip_serializing_if = "Listed::is_empty")]
    pub in_grace: Listed<InGrace>,
    /// People of the file whose protected account this connector never synced: no account
    /// is made or taken for them (counted as skipped).
    #[serde(skip)]
    pub unsynced_protected: u64,
}

impl Held {
    pub fn is_empty(&self) -> bool {
        self.skipped.is_empty()
            && self.protected.is_empty()
            && self.out_of_scope.is_empty()
            && self.in_grace.is_empty()
            && self.pending.is_empty()
            && self.next_change.is_none()
    }

    /// People without an account this run because of the lifecycle (the report's
    /// `skipped` count): every person is counted once.
    pub fn skipped_count(&self) -> u64 {
        self.skipped.count + self.unsynced_protected + self.pending.count
    }
}

/// The protected accounts, as compared: userNames without case, platform ids exactly.
pub struct Protected {
    /// (configured text, lowercased)
    names: Vec<(String, String)>,
}

impl Protected {
    pub fn new(list: &[String]) -> Protected {
        Protected { names: list.iter().map(|p| (p.clone(), p.trim().to_lowercase())).collect() }
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The configured entry naming this account, if one does.
    pub fn find(&self, user_name: Option<&str>, platform_id: Option<&str>) -> Option<&str> {
        let name = user_name.map(|n| n.trim().to_lowercase());
        self.names
            .iter()
            .find(|(raw, low)| name.as_deref() == Some(low.as_str()) || platform_id.is_some_and(|p| p == raw.trim()))
            .map(|(raw, _)| raw.as_str())
    }
}

/// The plan's input after the lifecycle: the users that go on to the plan, the platform
/// accounts it may adopt, and the known people whose operations `spare` drops.
pub struct Sorted {
    pub users: Vec<SourcedUser>,
    /// `None`: all of them (nothing protected).
    pub existing: Option<Vec<Existing>>,
    /// Snapshot keys of people left as they are, whatever the plan decides for them.
    pub spare: HashSet<String, FastHash>,
    pub held: Held,
}

/// What `sort` looks at.
pub struct SortInput<'a> {
    pub users: Vec<SourcedUser>,
    /// Rows out of the mapping's `[scope]`.
    pub out_of_scope: &'a [crate::mapping::OutOfScope],
    /// The users' start and end dates, by external id as the file writes it.
    pub dates: &'a [(String, crate::mapping::dates::Dates)],
    /// Today in the connector's timezone: the dates act on it.
    pub today: chrono::NaiveDate,
    pub snapshot: &'a Snapshot,
    pub existing: &'a [Existing],
    pub rules: &'a Lifecycle,
    pub id_rule: IdRule,
}

/// Sorts the file's people before the plan (see the module's comment).
pub fn sort(input: SortInput) -> Sorted {
    let SortInput { users, out_of_scope, dates, today, snapshot, existing, rules, id_rule } = input;
    let dates: std::collections::HashMap<&str, &crate::mapping::dates::Dates, FastHash> =
        dates.iter().map(|(id, d)| (id.as_str(), d)).collect();
    let protected = Protected::new(&rules.protected);
    let mut held = Held::default();
    let mut spare: HashSet<String, FastHash> = HashSet::default();
    let mut met: Vec<String> = Vec::new();
    let known = Known::new(snapshot, existing, id_rule);

    // Known people whose account is protected by its platform id: spared whether or not
    // the file names them.
    if !protected.is_empty() {
        for (id, e) in snapshot {
            if let Some(p) = protected.find(None, Some(&e.platform_id)) {
                spare.insert(id.clone());
                met.push(p.to_string());
            }
        }
    }
    if !out_of_scope.is_empty() {
        out_of_scope_people(out_of_scope, &users, &known, rules, &mut spare, &mut held);
    }
    let mut kept = Vec::with_capacity(users.len());
    for mut u in users {
        let stored = known.key_of(&u.user.external_id);
        if !protected.is_empty()
            && let Some(p) = protected.find(Some(u.user.user_name()), stored.and_then(|k| snapshot.get(k)).map(|e| e.platform_id.as_str()))
        {
            met.push(p.to_string());
            match stored {
                Some(k) => {
                    spare.insert(k.to_string());
                }
                None => held.unsynced_protected += 1,
            }
            continue;
        }
        if stored.is_some_and(|k| spare.contains(k)) {
            continue;
        }
        let mut prestart = false;
        if let Some(d) = dates.get(u.user.external_id.as_str()) {
            let fate = dated(&mut u.user, d, today, rules.create_lead_days, stored.is_some());
            note_next(&mut held.next_change, &u.user.external_id, d, today, rules.create_lead_days);
            match fate {
                Fate::Pending(p) => {
                    held.pending.push(Pending { line: u.line, ..p });
                    continue;
                }
                Fate::PreStart => prestart = true,
                Fate::AsDated => {}
            }
        }
        if !u.user.active && !prestart && stored.is_none() && !rules.create_inactive && !known.on_platform(&u.user) {
            held.skipped.push(Person { external_id: u.user.external_id.to_string(), line: u.line, known: false });
            continue;
        }
        kept.push(u);
    }
    let existing = (!protected.is_empty()).then(|| {
        existing
            .iter()
            .filter(|e| match protected.find(e.user_name.as_deref(), Some(&e.platform_id)) {
                Some(p) => {
                    met.push(p.to_string());
                    false
                }
                None => true,
            })
            .cloned()
            .collect()
    });
    met.sort_unstable();
    met.dedup();
    held.protected = met;
    Sorted { users: kept, existing, spare, held }
}

/// What a person's dates make of them today.
enum Fate {
    /// Active as the file and the end date say.
    AsDated,
    /// Before their start, within `create_lead` (or already synced): an inactive account.
    PreStart,
    /// Further than `create_lead` from their start, never synced: no account yet.
    Pending(Pending),
}

/// A leave dated today or before deactivates; one in the future keeps the person active until
/// that date, whatever the active flag says (an export flags a leaver as soon as the leave
/// is entered). A start in the future makes the person inactive until then, or pending.
fn dated(user: &mut crate::model::User, d: &crate::mapping::dates::Dates, today: chrono::NaiveDate, lead: i64, known: bool) -> Fate {
    match d.end {
        Some(end) if end <= today => user.active = false,
        Some(_) => user.active = true,
        None => {}
    }
    let Some(start) = d.start.filter(|s| *s > today) else { return Fate::AsDated };
    let created_on = start.checked_sub_days(chrono::Days::new(lead.max(0).unsigned_abs())).unwrap_or(start);
    if !known && created_on > today {
        return Fate::Pending(Pending { external_id: user.external_id.to_string(), line: 0, start_date: start, created_on });
    }
    user.active = false;
    Fate::PreStart
}

/// The earliest change a person's dates bring after today, kept if sooner than `next`.
fn note_next(next: &mut Option<NextChange>, id: &str, d: &crate::mapping::dates::Dates, today: chrono::NaiveDate, lead: i64) {
    let mut candidates = Vec::new();
    if let Some(start) = d.start.filter(|s| *s > today) {
        candidates.push((start, "start"));
        if let Some(c) = start.checked_sub_days(chrono::Days::new(lead.max(0).unsigned_abs())).filter(|c| *c > today && *c < start) {
            candidates.push((c, "account"));
        }
    }
    if let Some(end) = d.end.filter(|e| *e > today) {
        candidates.push((end, "leave"));
    }
    for (on, change) in candidates {
        if next.as_ref().is_none_or(|n| (on, id) < (n.on, n.external_id.as_str())) {
            *next = Some(NextChange { on, external_id: id.to_string(), change: change.to_string() });
        }
    }
}

/// Rows out of `[scope]`: listed; a known person's account is left as it is with
/// `out_of_scope = "ignore"`, else they are absent from the plan's file (on_missing). An id
/// that also has a row in scope is that row's person.
fn out_of_scope_people(
    rows: &[crate::mapping::OutOfScope],
    users: &[SourcedUser],
    known: &Known<'_>,
    rules: &Lifecycle,
    spare: &mut HashSet<String, FastHash>,
    held: &mut Held,
) {
    let rule = known.rule;
    let in_scope: HashSet<std::borrow::Cow<'_, str>, FastHash> = users.iter().map(|u| rule.key(&u.user.external_id)).collect();
    for r in rows.iter().filter(|r| !in_scope.contains(rule.key(&r.external_id).as_ref())) {
        let stored = known.key_of(&r.external_id);
        if let Some(k) = stored
            && rules.out_of_scope == super::settings::OutOfScope::Ignore
        {
            spare.insert(k.to_string());
        }
        let external_id = stored.map_or_else(|| r.external_id.clone(), str::to_string);
        held.out_of_scope.push(Person { external_id, line: r.line, known: stored.is_some() });
    }
}

/// Who has an account: the snapshot (by the id rule), and on a first sync the platform's
/// accounts by externalId or userName.
struct Known<'a> {
    snapshot: &'a Snapshot,
    rule: IdRule,
    folded: std::collections::HashMap<std::borrow::Cow<'a, str>, &'a String, FastHash>,
    platform: HashSet<String, FastHash>,
}

impl<'a> Known<'a> {
    fn new(snapshot: &'a Snapshot, existing: &[Existing], rule: IdRule) -> Known<'a> {
        let folded = snapshot.keys().filter(|k| rule.key(k) != k.as_str()).map(|k| (rule.key(k), k)).collect();
        let mut platform = HashSet::default();
        for e in existing {
            platform.extend(e.external_id.as_deref().map(|x| format!("x:{}", rule.key(x.trim()))));
            platform.extend(e.user_name.as_deref().map(|n| format!("n:{}", n.to_lowercase())));
        }
        Known { snapshot, rule, folded, platform }
    }

    /// The snapshot's key of this id, if the person is known.
    fn key_of(&self, id: &str) -> Option<&'a str> {
        if let Some((k, _)) = self.snapshot.get_key_value(id) {
            return Some(k.as_str());
        }
        if let Some((k, _)) = self.snapshot.get_key_value(self.rule.key(id).as_ref()) {
            return Some(k.as_str());
        }
        self.folded.get(self.rule.key(id).as_ref()).map(|k| k.as_str())
    }

    /// Whether a platform account listed on this run (a first sync) is this person's.
    fn on_platform(&self, u: &crate::model::User) -> bool {
        !self.platform.is_empty()
            && (self.platform.contains(&format!("x:{}", self.rule.key(&u.external_id)))
                || self.platform.contains(&format!("n:{}", u.user_name().to_lowercase())))
    }
}

/// After the plan: drops the operations of the people `sort` spared, and of absentees
/// whose stored userName is protected (`stored_names`: external id → userName, read by the
/// caller for the plan's operations). Known people left alone count as unchanged; the
/// mass-deactivation safeguard is counted again without the dropped operations.
pub fn spare(
    plan: &mut Plan,
    sorted_spare: &HashSet<String, FastHash>,
    protected: &Protected,
    stored_names: &StoredNames,
    held: &mut Held,
) {
    if sorted_spare.is_empty() && (protected.is_empty() || stored_names.is_empty()) {
        return;
    }
    let ops = std::mem::take(&mut plan.ops);
    let lines = std::mem::take(&mut plan.lines);
    let mut dropped_deactivations = 0u64;
    let mut kept = Vec::with_capacity(ops.len());
    for (op, line) in ops.into_iter().zip(lines) {
        let id = op.external_id();
        let by_name = stored_names.get(id).and_then(|n| protected.find(Some(n), None));
        if sorted_spare.contains(id) || by_name.is_some() {
            if let Some(p) = by_name {
                held.protected.push(p.to_string());
            }
            if matches!(op.kind(), super::OpKind::Deactivate | super::OpKind::Delete) {
                dropped_deactivations += 1;
            }
            plan.unchanged += 1;
            continue;
        }
        kept.push((op, line));
    }
    held.protected.sort_unstable();
    held.protected.dedup();
    (plan.ops, plan.lines) = kept.into_iter().unzip();
    plan.dormant.retain(|d| !sorted_spare.contains(&d.external_id));
    if let Some(Safeguard::MassDeactivation { count, allowed, .. }) = &mut plan.stop {
        *count = count.saturating_sub(dropped_deactivations);
        if *count <= *allowed {
            plan.stop = None;
        }
    }
}

/// Stored userNames of the plan's people, by external id.
pub type StoredNames = std::collections::HashMap<String, String>;

/// The external ids whose stored userName `spare` needs: the people the plan changes who
/// are absent from the file (their row, when there is one, was checked by `sort`).
pub fn names_wanted<'p>(plan: &'p Plan, rules: &Lifecycle) -> Vec<&'p str> {
    if rules.protected.is_empty() {
        return Vec::new();
    }
    plan.ops.iter().zip(&plan.lines).filter(|(o, l)| **l == 0 || matches!(o, Op::Update { .. })).map(|(o, _)| o.external_id()).collect()
}

/// `on_safeguard = "hold-deactivations"`: takes the deactivations and deletions out of a
/// plan a `mass_deactivation` safeguard stopped, as a plan of their own (held for approval,
/// in the same order), and lets the rest go on. Other safeguards hold all: a file with too
/// many invalid rows, or over the change budget, is wrong for its creates and updates too.
pub fn hold_deactivations(plan: &mut Plan) -> Option<Plan> {
    if !matches!(plan.stop, Some(Safeguard::MassDeactivation { .. })) {
        return None;
    }
    let stop = plan.stop.take();
    let ops = std::mem::take(&mut plan.ops);
    let lines = std::mem::take(&mut plan.lines);
    let mut held = Plan { stop, ..Plan::default() };
    for (op, line) in ops.into_iter().zip(lines) {
        if matches!(op.kind(), super::OpKind::Deactivate | super::OpKind::Delete) {
            held.ops.push(op);
            held.lines.push(line);
        } else {
            plan.ops.push(op);
            plan.lines.push(line);
        }
    }
    Some(held)
}

/// What `grace` leaves for the state: who is absent since when (new ones at `now`), and
/// the recorded absentees who are no longer (back in the file, or no longer active).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Absences {
    pub absent: Vec<(String, chrono::DateTime<chrono::Utc>)>,
    pub back: Vec<String>,
}

/// `deactivate_after`: the plan's absentees (its `Deactivate` and `Delete` operations, which
/// only people absent from the file get) keep their account until absent that long since
/// `recorded` says they left (now, for one not recorded); their operation is dropped, and the
/// `mass_deactivation` safeguard counted again without it.
pub fn grace(
    plan: &mut Plan,
    recorded: &std::collections::HashMap<String, chrono::DateTime<chrono::Utc>>,
    now: chrono::DateTime<chrono::Utc>,
    after: std::time::Duration,
    held: &mut Held,
) -> Absences {
    let after = chrono::Duration::from_std(after).unwrap_or(chrono::Duration::MAX);
    let mut out = Absences::default();
    let mut graced: HashSet<String, FastHash> = HashSet::default();
    let ops = std::mem::take(&mut plan.ops);
    let lines = std::mem::take(&mut plan.lines);
    let mut kept = Vec::with_capacity(ops.len());
    for (op, line) in ops.into_iter().zip(lines) {
        let (Op::Deactivate { external_id, .. } | Op::Delete { external_id, .. }) = &op else {
            kept.push((op, line));
            continue;
        };
        let since = recorded.get(external_id).copied().unwrap_or(now);
        out.absent.push((external_id.clone(), since));
        let until = since.checked_add_signed(after).unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC);
        if now < until {
            held.in_grace.push(InGrace { external_id: external_id.clone(), absent_since: since, until });
            graced.insert(external_id.clone());
            plan.unchanged += 1;
        } else {
            kept.push((op, line));
        }
    }
    (plan.ops, plan.lines) = kept.into_iter().unzip();
    plan.dormant.retain(|d| !graced.contains(&d.external_id));
    let absent: HashSet<&str, FastHash> = out.absent.iter().map(|(id, _)| id.as_str()).collect();
    out.back = recorded.keys().filter(|id| !absent.contains(id.as_str())).cloned().collect();
    out.back.sort_unstable();
    if let Some(Safeguard::MassDeactivation { count, allowed, .. }) = &mut plan.stop {
        *count = count.saturating_sub(graced.len() as u64);
        if *count <= *allowed {
            plan.stop = None;
        }
    }
    out
}

#[cfg(test)]
#[path = "lifecycle/tests.rs"]
mod tests;
