//! Groups from attributes (`[groups]` in a mapping file): one SCIM group per value of the
//! named attributes, whose members are exactly the connector's active people with that value.
//!
//! Pure: the people as the platform holds them (after the push, or as a dry run's plan would
//! leave them) and the groups this connector created (from the state, with their members as
//! the platform lists them) in; the group operations out, each membership change chunked to
//! what the server takes in one PATCH. Nothing here knows HTTP or SQL.
//!
//! Why only groups rostersync created: a group of the same name made by someone else (an
//! admin's "Sales" holding contractors, an app's role group) carries access decisions we do
//! not know of. Taking it over would remove its members; so a name held by a group we did not
//! create is a conflict, reported, and that value gets no group until someone renames one of
//! them.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use super::settings::Limit;
use crate::model::User;

/// Members per PATCH when the server announces no smaller bound.
pub const DEFAULT_CHUNK: usize = 100;

/// The most members one PATCH carries, whatever the configuration says: a request of a few
/// hundred KiB at most.
pub const MAX_CHUNK: usize = 1000;

/// The checked `[groups]` table of a mapping file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRule {
    /// The mapped attributes (names under `[attributes]`) whose values become groups, in the
    /// file's order.
    pub from: Vec<String>,
    /// Put before each value to make the group's displayName ("hr-" + "Sales").
    pub prefix: String,
    /// Members per PATCH (`chunk`); None: the server's announced bound, else `DEFAULT_CHUNK`.
    pub chunk: Option<usize>,
}

impl GroupRule {
    /// The displayName of the group of each value this user has (empty values make none).
    /// Several attributes with one value ("Sales" as department and division) are one group.
    pub fn names_of(&self, user: &User) -> BTreeSet<String> {
        self.from
            .iter()
            .filter_map(|a| user.attributes().get(a))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(|v| format!("{}{v}", self.prefix))
            .collect()
    }

    /// Members per PATCH: the configured size, else the server's bound (`announced`, its
    /// /Bulk maxOperations when it offers one), else 100; never above `MAX_CHUNK`.
    pub fn chunk_size(&self, announced: Option<usize>) -> usize {
        let size = match (self.chunk, announced) {
            (Some(c), Some(a)) => c.min(a),
            (Some(c), None) => c,
            (None, Some(a)) => a.min(DEFAULT_CHUNK),
            (None, None) => DEFAULT_CHUNK,
        };
        size.clamp(1, MAX_CHUNK)
    }
}

/// One member as the groups see them: the person (their unique id) and their account, which
/// a dry run's new people do not have yet.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Member {
    /// The platform id; None for a person a dry run would create.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform_id: Option<String>,
    /// The unique id of the connector's person; None for an account the connector does not
    /// know (added to one of its groups by hand).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
}

impl Member {
    /// How a report names the member: their unique id, else the account's id.
    pub fn shown(&self) -> &str {
        self.external_id.as_deref().or(self.platform_id.as_deref()).unwrap_or("?")
    }
}

/// Every group the connector's people should be in: displayName → (value, members), the
/// members keyed by platform id (or, for a dry run's new people, by unique id).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    pub groups: BTreeMap<String, BTreeMap<String, Member>>,
}

impl Desired {
    /// From the people as the platform holds them: (unique id, platform id, content). Only
    /// active people are members; an inactive or deleted person is in no group.
    pub fn of<'a>(rule: &GroupRule, people: impl IntoIterator<Item = (&'a str, Option<&'a str>, &'a User)>) -> Desired {
        let mut groups: BTreeMap<String, BTreeMap<String, Member>> = BTreeMap::new();
        for (external_id, platform_id, user) in people {
            if !user.active {
                continue;
            }
            let member = Member { platform_id: platform_id.map(str::to_string), external_id: Some(external_id.to_string()) };
            let key = platform_id.map(str::to_string).unwrap_or_else(|| format!("new:{external_id}"));
            for name in rule.names_of(user) {
                groups.entry(name).or_default().insert(key.clone(), member.clone());
            }
        }
        Desired { groups }
    }
}

/// A group this connector created, as the state records it and the platform lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owned {
    pub platform_id: String,
    /// Its members' platform ids, as the platform listed them now.
    pub members: BTreeSet<String>,
}

/// What the platform holds for the names the groups need.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Current {
    /// The groups this connector created, by displayName.
    pub owned: BTreeMap<String, Owned>,
    /// Names of desired groups held on the platform by a group this connector did not create.
    pub foreign: BTreeSet<String>,
}

/// One write to a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum GroupOp {
    /// A new group named `display_name`, created empty; its members follow as `Members`.
    Create { display_name: String },
    /// One PATCH of a group's members: at most the chunk size of adds and removes together.
    /// `platform_id` is None for the members of a group this plan creates.
    Members {
        display_name: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        platform_id: Option<String>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        add: Vec<Member>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        remove: Vec<Member>,
    },
}

/// What the groups need: the operations in order (each group's create before its members),
/// and the names that are someone else's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupPlan {
    pub ops: Vec<GroupOp>,
    /// Desired names held by a group this connector did not create: left alone.
    pub conflicts: Vec<String>,
    /// Members added and removed, over every group (what the safeguard counts).
    pub changes: u64,
    pub added: u64,
    pub removed: u64,
}

impl GroupPlan {
    pub fn creates(&self) -> u64 {
        self.ops.iter().filter(|o| matches!(o, GroupOp::Create { .. })).count() as u64
    }

    /// The part of the plan that concerns some people (`explain`, `--only`): their joins and
    /// leaves, and the creates of the groups they join; counted again.
    pub fn only(self, keep: impl Fn(&str) -> bool) -> GroupPlan {
        let kept = |ms: Vec<Member>| -> Vec<Member> { ms.into_iter().filter(|m| m.external_id.as_deref().is_some_and(&keep)).collect() };
        let mut members: Vec<GroupOp> = Vec::new();
        for op in self.ops {
            match op {
                GroupOp::Members { display_name, platform_id, add, remove } => {
                    let (add, remove) = (kept(add), kept(remove));
                    if !add.is_empty() || !remove.is_empty() {
                        members.push(GroupOp::Members { display_name, platform_id, add, remove });
                    }
                }
                create @ GroupOp::Create { .. } => members.push(create),
            }
        }
        // A create stays only when some kept member joins the group it makes.
        let joined: BTreeSet<String> = members
            .iter()
            .filter_map(|o| match o {
                GroupOp::Members { display_name, .. } => Some(display_name.clone()),
                GroupOp::Create { .. } => None,
            })
            .collect();
        members.retain(|o| !matches!(o, GroupOp::Create { display_name } if !joined.contains(display_name)));
        let count = |f: fn(&GroupOp) -> usize| members.iter().map(f).sum::<usize>() as u64;
        let added = count(|o| if let GroupOp::Members { add, .. } = o { add.len() } else { 0 });
        let removed = count(|o| if let GroupOp::Members { remove, .. } = o { remove.len() } else { 0 });
        GroupPlan { ops: members, conflicts: self.conflicts, changes: added + removed, added, removed }
    }
}

/// The operations that make the platform's groups what `desired` says, every PATCH at most
/// `chunk` members. A group this connector created that no active person needs any more is
/// emptied, never deleted (an application may hang permissions on it). A member of one of
/// its groups the connector does not know (added by hand) is removed: the group holds exactly
/// the people with its value. `known` names the connector's people by platform id.
pub fn plan(desired: &Desired, current: &Current, known: &HashMap<String, String>, chunk: usize) -> GroupPlan {
    let chunk = chunk.max(1);
    let mut out = GroupPlan::default();
    let names: BTreeSet<&String> = desired.groups.keys().chain(current.owned.keys()).collect();
    let empty = BTreeMap::new();
    for name in names {
        let want = desired.groups.get(name).unwrap_or(&empty);
        let (platform_id, add, remove) = match current.owned.get(name) {
            Some(owned) => {
                let add: Vec<Member> = want.iter().filter(|(k, _)| !owned.members.contains(*k)).map(|(_, m)| m.clone()).collect();
                let remove: Vec<Member> = owned
                    .members
                    .iter()
                    .filter(|p| !want.contains_key(*p))
                    .map(|p| Member { platform_id: Some(p.clone()), external_id: known.get(p).cloned() })
                    .collect();
                (Some(owned.platform_id.clone()), add, remove)
            }
            None if current.foreign.contains(name) => {
                out.conflicts.push(name.clone());
                continue;
            }
            None => {
                out.ops.push(GroupOp::Create { display_name: name.clone() });
                (None, want.values().cloned().collect(), Vec::new())
            }
        };
        out.added += add.len() as u64;
        out.removed += remove.len() as u64;
        out.ops.extend(chunked(name, platform_id, add, remove, chunk));
    }
    out.changes = out.added + out.removed;
    out
}

/// One group's membership changes as PATCHes of at most `chunk` members each: removals
/// first (a transfer out is never later than the transfer in of someone else).
fn chunked(name: &str, platform_id: Option<String>, add: Vec<Member>, remove: Vec<Member>, chunk: usize) -> Vec<GroupOp> {
    enum Change {
        Add(Member),
        Remove(Member),
    }
    let all: Vec<Change> = remove.into_iter().map(Change::Remove).chain(add.into_iter().map(Change::Add)).collect();
    let mut ops = Vec::new();
    let mut it = all.into_iter().peekable();
    while it.peek().is_some() {
        let (mut add, mut remove) = (Vec::new(), Vec::new());
        for c in it.by_ref().take(chunk) {
            match c {
                Change::Add(m) => add.push(m),
                Change::Remove(m) => remove.push(m),
            }
        }
        ops.push(GroupOp::Members { display_name: name.to_string(), platform_id: platform_id.clone(), add, remove });
    }
    ops
}

/// What a run did (or a dry run would do) to the groups, for the report (`--json`, history).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupsReport {
    /// Groups created.
    pub created: u64,
    /// Members added and removed, over every group.
    pub added: u64,
    pub removed: u64,
    /// Group writes (a create, a PATCH) that failed; the next run tries again.
    #[serde(default)]
    pub failed: u64,
    /// Names held by a group this connector did not create: left alone, no group made.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub conflicts: Vec<String>,
    /// The changes, group by group (the first `report::MAX_LISTED` groups).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub changes: Vec<GroupChange>,
}

impl GroupsReport {
    /// Group memberships changed (added + removed).
    pub fn changes(&self) -> u64 {
        self.added + self.removed
    }
}

/// One group's changes: created or not, who joins, who leaves (unique ids, or the account's
/// id for a member the connector does not know). The counts of `GroupsReport` are whole; the
/// lists stop at `report::MAX_LISTED` members over all groups.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupChange {
    pub group: String,
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub create: bool,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub add: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub remove: Vec<String>,
}

impl GroupPlan {
    /// The plan as the report lists it, group by group: at most `cap` groups and `cap`
    /// members in all (a first filling of a million people is counted, not listed).
    pub fn changes(&self, cap: usize) -> Vec<GroupChange> {
        let mut out: Vec<GroupChange> = Vec::new();
        let mut left = cap;
        for op in &self.ops {
            let name = match op {
                GroupOp::Create { display_name } | GroupOp::Members { display_name, .. } => display_name,
            };
            if out.last().is_none_or(|c| &c.group != name) {
                if out.len() == cap {
                    break;
                }
                out.push(GroupChange { group: name.clone(), ..Default::default() });
            }
            let Some(c) = out.last_mut() else { continue };
            match op {
                GroupOp::Create { .. } => c.create = true,
                GroupOp::Members { add, remove, .. } => {
                    let leaving: Vec<String> = remove.iter().take(left).map(|m| m.shown().to_string()).collect();
                    left -= leaving.len();
                    let joining: Vec<String> = add.iter().take(left).map(|m| m.shown().to_string()).collect();
                    left -= joining.len();
                    c.remove.extend(leaving);
                    c.add.extend(joining);
                }
            }
        }
        out
    }
}

/// The membership changes of one run went over the limit: the groups are left as they are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OverLimit {
    pub changes: u64,
    pub known: u64,
    pub limit: String,
    pub allowed: u64,
}

impl OverLimit {
    /// The stop message, with what to do next.
    pub fn message(&self, connector: &str) -> String {
        format!(
            "this run would change {} group memberships of {} known people, above max_updates = \"{}\" ({} allowed); the people were synced, the groups were left as they are and the file was not recorded as synced. Check the export's group column ([groups] from) with the customer; to apply it anyway: `rostersync sync {connector} --allow-mass-change --reason \"…\"`",
            self.changes, self.known, self.limit, self.allowed
        )
    }
}

/// Whether `plan`'s membership changes go over `limit` (the connector's `max_updates`) of the
/// `known` people. A connector whose groups are new (none created yet) fills them at once
/// and is never over: like a first sync, there is no population to compare with.
pub fn over_limit(plan: &GroupPlan, known: u64, first: bool, limit: Limit) -> Option<OverLimit> {
    if first || known == 0 {
        return None;
    }
    let allowed = match limit {
        Limit::Count(n) => n,
        Limit::Percent(_) => limit.allowed(known).max(super::budget::PERCENT_FLOOR),
    };
    (plan.changes > allowed).then(|| OverLimit { changes: plan.changes, known, limit: limit.to_string(), allowed })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::user;

    fn rule(prefix: &str) -> GroupRule {
        GroupRule { from: vec!["department".into()], prefix: prefix.into(), chunk: None }
    }

    fn person(id: &str, dept: &str, active: bool) -> User {
        let mut u = user(id, active, "Engineer");
        if !dept.is_empty() {
            u.set_attribute("department", dept);
        }
        u
    }

    fn desired(rule: &GroupRule, people: &[(&str, Option<&str>, User)]) -> Desired {
        Desired::of(rule, people.iter().map(|(x, p, u)| (*x, *p, u)))
    }

    fn owned(pid: &str, members: &[&str]) -> Owned {
        Owned { platform_id: pid.into(), members: members.iter().map(|m| m.to_string()).collect() }
    }

    fn m(pid: &str, x: &str) -> Member {
        Member { platform_id: Some(pid.into()), external_id: Some(x.into()) }
    }

    fn known(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(p, x)| (p.to_string(), x.to_string())).collect()
    }

    #[test]
    fn only_active_people_with_a_value_are_members_and_the_prefix_names_the_group() {
        let r = rule("hr-");
        let d = desired(
            &r,
            &[
                ("E1", Some("p1"), person("E1", "Sales", true)),
                ("E2", Some("p2"), person("E2", "Sales", false)),
                ("E3", Some("p3"), person("E3", "", true)),
                ("E4", Some("p4"), person("E4", " R&D ", true)),
            ],
        );
        let names: Vec<&String> = d.groups.keys().collect();
        assert_eq!(names, ["hr-R&D", "hr-Sales"]);
        assert_eq!(d.groups["hr-Sales"].values().cloned().collect::<Vec<_>>(), [m("p1", "E1")]);
    }

    #[test]
    fn a_new_group_is_created_then_filled_in_chunks() {
        let r = rule("");
        let people: Vec<(String, String, User)> =
            (1..=5).map(|i| (format!("E{i}"), format!("p{i}"), person(&format!("E{i}"), "Sales", true))).collect();
        let d = Desired::of(&r, people.iter().map(|(x, p, u)| (x.as_str(), Some(p.as_str()), u)));
        let p = plan(&d, &Current::default(), &HashMap::new(), 2);
        assert_eq!(p.ops[0], GroupOp::Create { display_name: "Sales".into() });
        let listed = p.changes(3);
        assert_eq!((listed.len(), listed[0].add.len(), listed[0].create), (1, 3, true), "at most 3 members listed in all");
        let sizes: Vec<usize> = p.ops[1..]
            .iter()
            .map(|o| match o {
                GroupOp::Members { add, remove, platform_id: None, .. } => add.len() + remove.len(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(sizes, [2, 2, 1]);
        assert_eq!((p.added, p.removed, p.changes, p.creates()), (5, 0, 5, 1));
    }

    #[test]
    fn a_transfer_moves_a_person_and_a_leaver_leaves() {
        let r = rule("");
        let d = desired(
            &r,
            &[
                ("E1", Some("p1"), person("E1", "R&D", true)),
                ("E2", Some("p2"), person("E2", "Sales", false)),
                ("E3", Some("p3"), person("E3", "Sales", true)),
            ],
        );
        let current = Current {
            owned: [("Sales".to_string(), owned("gS", &["p1", "p2", "p3"])), ("R&D".to_string(), owned("gR", &[]))].into(),
            foreign: BTreeSet::new(),
        };
        let p = plan(&d, &current, &known(&[("p1", "E1"), ("p2", "E2"), ("p3", "E3")]), 100);
        assert_eq!(
            p.ops,
            [
                GroupOp::Members { display_name: "R&D".into(), platform_id: Some("gR".into()), add: vec![m("p1", "E1")], remove: vec![] },
                GroupOp::Members {
                    display_name: "Sales".into(),
                    platform_id: Some("gS".into()),
                    add: vec![],
                    remove: vec![m("p1", "E1"), m("p2", "E2")],
                },
            ]
        );
        assert_eq!(p.changes, 3);
        let listed = p.changes(10);
        assert_eq!(listed[1], GroupChange { group: "Sales".into(), create: false, add: vec![], remove: vec!["E1".into(), "E2".into()] });
    }

    #[test]
    fn one_persons_part_of_the_plan() {
        let r = rule("");
        let d = desired(&r, &[("E1", Some("p1"), person("E1", "R&D", true)), ("E2", Some("p2"), person("E2", "Ops", true))]);
        let current = Current { owned: [("Sales".to_string(), owned("gS", &["p1", "p2"]))].into(), foreign: BTreeSet::new() };
        let p = plan(&d, &current, &known(&[("p1", "E1"), ("p2", "E2")]), 100).only(|x| x == "E1");
        assert_eq!(
            p.ops,
            [
                GroupOp::Create { display_name: "R&D".into() },
                GroupOp::Members { display_name: "R&D".into(), platform_id: None, add: vec![m("p1", "E1")], remove: vec![] },
                GroupOp::Members { display_name: "Sales".into(), platform_id: Some("gS".into()), add: vec![], remove: vec![m("p1", "E1")] },
            ]
        );
        assert_eq!((p.added, p.removed, p.changes), (1, 1, 2));
    }

    #[test]
    fn the_same_groups_again_need_no_write() {
        let r = rule("");
        let d = desired(&r, &[("E1", Some("p1"), person("E1", "Sales", true))]);
        let current = Current { owned: [("Sales".to_string(), owned("gS", &["p1"]))].into(), foreign: BTreeSet::new() };
        let p = plan(&d, &current, &known(&[("p1", "E1")]), 100);
        assert!(p.ops.is_empty());
        assert_eq!(p.changes, 0);
    }

    #[test]
    fn a_name_held_by_a_group_we_did_not_create_is_a_conflict_and_untouched() {
        let r = rule("");
        let d = desired(&r, &[("E1", Some("p1"), person("E1", "Sales", true))]);
        let current = Current { owned: BTreeMap::new(), foreign: ["Sales".to_string()].into() };
        let p = plan(&d, &current, &HashMap::new(), 100);
        assert!(p.ops.is_empty());
        assert_eq!(p.conflicts, ["Sales"]);
    }

    #[test]
    fn a_group_nobody_needs_is_emptied_and_a_stranger_in_it_removed() {
        let d = Desired::default();
        let current = Current { owned: [("Old".to_string(), owned("gO", &["p1", "px"]))].into(), foreign: BTreeSet::new() };
        let p = plan(&d, &current, &known(&[("p1", "E1")]), 100);
        let GroupOp::Members { remove, add, .. } = &p.ops[0] else { panic!("{:?}", p.ops) };
        assert!(add.is_empty());
        assert_eq!(remove, &[m("p1", "E1"), Member { platform_id: Some("px".into()), external_id: None }]);
        assert_eq!(p.ops.len(), 1);
    }

    #[test]
    fn two_attributes_with_one_value_make_one_group_and_a_dry_runs_new_person_is_named() {
        let r = GroupRule { from: vec!["department".into(), "division".into()], prefix: String::new(), chunk: None };
        let mut u = person("E1", "Sales", true);
        u.set_attribute("division", "Sales");
        let d = desired(&r, &[("E1", None, u)]);
        assert_eq!(d.groups.len(), 1);
        let p = plan(&d, &Current::default(), &HashMap::new(), 100);
        let GroupOp::Members { add, .. } = &p.ops[1] else { panic!() };
        assert_eq!(add[0].shown(), "E1");
        assert_eq!(add[0].platform_id, None);
    }

    #[test]
    fn chunk_size_takes_the_smaller_of_the_configured_and_the_announced() {
        let mut r = rule("");
        assert_eq!(r.chunk_size(None), 100);
        assert_eq!(r.chunk_size(Some(10)), 10);
        assert_eq!(r.chunk_size(Some(1000)), 100);
        r.chunk = Some(3);
        assert_eq!(r.chunk_size(Some(10)), 3);
        r.chunk = Some(5000);
        assert_eq!(r.chunk_size(None), MAX_CHUNK);
    }

    #[test]
    fn the_limit_counts_membership_changes_but_not_a_first_filling() {
        let p = GroupPlan { changes: 30, added: 20, removed: 10, ..Default::default() };
        assert!(over_limit(&p, 100, true, Limit::Percent(10.0)).is_none());
        let over = over_limit(&p, 100, false, Limit::Percent(10.0)).expect("over");
        assert_eq!((over.changes, over.allowed), (30, 10));
        assert!(over_limit(&p, 100, false, Limit::Count(30)).is_none());
    }
}
