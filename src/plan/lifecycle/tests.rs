//! The lifecycle's rules, each run through `sort`, the plan and `spare` as a run does.

use std::collections::HashSet;

use super::*;
use crate::model::User;
use crate::model::fixtures::user;
use crate::plan::settings::{Limit, SyncRule};
use crate::plan::{OpKind, PlanInput, SnapshotEntry, plan};

/// One planned run: the snapshot (user, platform id), the file, the platform's accounts.
struct Run {
    snapshot: Vec<(User, &'static str)>,
    file: Vec<User>,
    existing: Vec<Existing>,
    rule: SyncRule,
    /// Stored userNames of absentees, as the state gives them.
    stored: Vec<(&'static str, &'static str)>,
    /// Rows out of `[scope]`.
    out_of_scope: Vec<crate::mapping::OutOfScope>,
    dates: Vec<(String, crate::mapping::dates::Dates)>,
    today: chrono::NaiveDate,
}

fn base() -> Run {
    Run {
        snapshot: vec![],
        file: vec![],
        existing: vec![],
        rule: SyncRule { max_deactivations: Limit::Percent(100.0), ..SyncRule::default() },
        stored: vec![],
        out_of_scope: vec![],
        dates: vec![],
        today: chrono::NaiveDate::from_ymd_opt(2026, 3, 1).unwrap(),
    }
}

fn go(r: Run) -> (Plan, Held) {
    let snapshot: Snapshot = r
        .snapshot
        .iter()
        .map(|(u, p)| (u.external_id.to_string(), SnapshotEntry { platform_id: p.to_string(), hash: u.content_hash(), active: u.active }))
        .collect();
    let users: Vec<SourcedUser> =
        r.file.into_iter().enumerate().map(|(i, u)| SourcedUser { user: Box::new(u), line: i as u64 + 2 }).collect();
    let rows = users.len() as u64;
    let sorted = sort(SortInput {
        users,
        out_of_scope: &r.out_of_scope,
        dates: &r.dates,
        today: r.today,
        snapshot: &snapshot,
        existing: &r.existing,
        rules: &r.rule.lifecycle,
        id_rule: IdRule::default(),
    });
    let none = HashSet::new();
    let mut p = plan(PlanInput {
        snapshot: &snapshot,
        users: sorted.users,
        invalid_ids: &none,
        unidentified: &[],
        rows,
        invalid: 0,
        existing: sorted.existing.as_deref().unwrap_or(&r.existing),
        rule: &r.rule,
        allow_mass_change: false,
        id_rule: IdRule::default(),
    });
    let mut held = sorted.held;
    let protected = Protected::new(&r.rule.lifecycle.protected);
    spare(&mut p, &sorted.spare, &protected, &StoredNames::new(), &mut held);
    let names: StoredNames = r.stored.iter().map(|(i, n)| (i.to_string(), n.to_string())).collect();
    spare(&mut p, &Default::default(), &protected, &names, &mut held);
    (p, held)
}

fn ids(p: &Plan, kind: OpKind) -> Vec<&str> {
    p.ops.iter().filter(|o| o.kind() == kind).map(Op::external_id).collect()
}

fn skipped(h: &Held) -> Vec<&str> {
    h.skipped.people.iter().map(|p| p.external_id.as_str()).collect()
}

#[test]
fn an_old_leaver_who_never_had_an_account_gets_none() {
    let (p, h) = go(Run { file: vec![user("a", true, "x"), user("old", false, "x")], ..base() });
    assert_eq!(ids(&p, OpKind::Create), ["a"]);
    assert_eq!(skipped(&h), ["old"]);
    assert_eq!(h.skipped.people[0].line, 3, "named with the line");
    assert_eq!(h.skipped_count(), 1);
}

#[test]
fn create_inactive_creates_them_inactive() {
    let mut r = base();
    r.rule.lifecycle.create_inactive = true;
    r.file = vec![user("old", false, "x")];
    let (p, h) = go(r);
    assert!(matches!(&p.ops[..], [Op::Create { user }] if !user.active));
    assert!(h.is_empty());
}

#[test]
fn a_known_person_turning_inactive_is_deactivated_not_skipped() {
    let (p, h) = go(Run { snapshot: vec![(user("a", true, "x"), "1")], file: vec![user("a", false, "x")], ..base() });
    assert_eq!(ids(&p, OpKind::Deactivate), ["a"]);
    assert!(h.is_empty());
}

#[test]
fn an_inactive_person_with_an_account_on_the_platform_is_adopted_not_skipped() {
    let existing = vec![Existing {
        platform_id: "p9".into(),
        external_id: None,
        user_name: Some("old@example.com".into()),
        emails: Default::default(),
        active: None,
    }];
    let (p, h) = go(Run { file: vec![user("old", false, "x")], existing, ..base() });
    assert!(matches!(&p.ops[..], [Op::Update { adopt: true, user, .. }] if !user.active), "{:?}", p.ops);
    assert!(h.is_empty());
}

fn protecting(list: &[&str]) -> Run {
    let mut r = base();
    r.rule.lifecycle.protected = list.iter().map(|s| s.to_string()).collect();
    r
}

#[test]
fn a_protected_account_is_never_changed_or_deactivated() {
    // By platform id: "b" changes in the file, "c" leaves it; neither is touched.
    let mut r = protecting(&["2", "3"]);
    r.snapshot = vec![(user("a", true, "x"), "1"), (user("b", true, "x"), "2"), (user("c", true, "x"), "3")];
    r.file = vec![user("a", true, "new"), user("b", false, "new")];
    let (p, h) = go(r);
    assert_eq!(p.ops.len(), 1, "{:?}", p.ops);
    assert_eq!(ids(&p, OpKind::Update), ["a"]);
    assert_eq!(h.protected, ["2", "3"]);
    assert_eq!(p.unchanged, 2, "both counted once, as unchanged");
}

#[test]
fn a_protected_username_is_never_created_or_adopted() {
    let mut r = protecting(&["ROOT@example.com"]);
    r.file = vec![user("root", true, "x"), user("a", true, "x")];
    r.existing = vec![Existing {
        platform_id: "p1".into(),
        external_id: None,
        user_name: Some("root@example.com".into()),
        emails: Default::default(),
        active: None,
    }];
    let (p, h) = go(r);
    assert_eq!(ids(&p, OpKind::Create), ["a"]);
    assert!(p.strangers.is_empty() && p.conflicts.is_empty(), "{p:?}");
    assert_eq!(h.protected, ["ROOT@example.com"]);
    assert_eq!(h.skipped_count(), 1, "root has no account of ours: skipped");
}

#[test]
fn an_absentee_whose_stored_username_is_protected_keeps_the_account() {
    let mut r = protecting(&["boss@example.com"]);
    r.snapshot = vec![(user("a", true, "x"), "1"), (user("boss", true, "x"), "2")];
    r.file = vec![user("a", true, "x")];
    r.stored = vec![("boss", "boss@example.com")];
    r.rule.max_deactivations = Limit::Count(0);
    let (p, h) = go(r);
    assert!(p.ops.is_empty(), "{:?}", p.ops);
    assert_eq!(p.stop, None, "the spared deactivation trips no safeguard");
    assert_eq!(h.protected, ["boss@example.com"]);
}

#[test]
fn without_lifecycle_keys_nothing_changes() {
    let r = Run {
        snapshot: vec![(user("a", true, "x"), "1"), (user("b", true, "x"), "2")],
        file: vec![user("a", true, "y"), user("c", true, "x")],
        ..base()
    };
    let (p, h) = go(r);
    assert_eq!((ids(&p, OpKind::Create), ids(&p, OpKind::Update), ids(&p, OpKind::Deactivate)), (vec!["c"], vec!["a"], vec!["b"]));
    assert!(h.is_empty());
}

#[test]
fn hold_deactivations_splits_a_mass_deactivation_only() {
    let mut r = base();
    r.rule.max_deactivations = Limit::Count(1);
    r.snapshot = vec![(user("a", true, "x"), "1"), (user("b", true, "x"), "2"), (user("c", true, "x"), "3")];
    r.file = vec![user("a", true, "new"), user("d", true, "x")];
    let (mut p, _) = go(r);
    assert!(matches!(p.stop, Some(Safeguard::MassDeactivation { count: 2, .. })), "{:?}", p.stop);
    let held = hold_deactivations(&mut p).expect("held");
    assert_eq!((ids(&p, OpKind::Create), ids(&p, OpKind::Update)), (vec!["d"], vec!["a"]));
    assert_eq!(p.ops.len(), p.lines.len());
    assert_eq!(p.stop, None, "the rest goes on");
    assert_eq!(ids(&held, OpKind::Deactivate), ["b", "c"]);
    assert!(held.stop.is_some(), "the held plan carries its safeguard");

    // Any other stop holds all.
    let mut p = Plan { stop: Some(Safeguard::NoDataRows), ..Plan::default() };
    assert!(hold_deactivations(&mut p).is_none());
    assert_eq!(p.stop, Some(Safeguard::NoDataRows));
}

fn oos(id: &str, line: u64) -> crate::mapping::OutOfScope {
    crate::mapping::OutOfScope { external_id: id.into(), line }
}

#[test]
fn out_of_scope_rows_get_no_account_and_known_people_follow_out_of_scope() {
    let snapshot = vec![(user("a", true, "x"), "1"), (user("moved", true, "x"), "2")];
    // deactivate (default): the person who moved out of scope is absent from the plan's file.
    let r = Run {
        snapshot: snapshot.clone(),
        file: vec![user("a", true, "x")],
        out_of_scope: vec![oos("MOVED", 3), oos("contractor", 4)],
        ..base()
    };
    let (p, h) = go(r);
    assert_eq!(ids(&p, OpKind::Deactivate), ["moved"]);
    assert!(ids(&p, OpKind::Create).is_empty(), "no account for the contractor");
    let listed: Vec<(&str, bool)> = h.out_of_scope.people.iter().map(|p| (p.external_id.as_str(), p.known)).collect();
    assert_eq!(listed, [("moved", true), ("contractor", false)], "named as synced");
    assert_eq!(h.skipped_count(), 0, "rows out of scope are not rows of the counts");

    // ignore: their account stays as it is.
    let mut r = Run { snapshot, file: vec![user("a", true, "x")], out_of_scope: vec![oos("moved", 3)], ..base() };
    r.rule.lifecycle.out_of_scope = crate::plan::settings::OutOfScope::Ignore;
    let (p, h) = go(r);
    assert!(p.ops.is_empty(), "{:?}", p.ops);
    assert_eq!(h.out_of_scope.count, 1);
}

#[test]
fn an_id_with_a_row_in_scope_is_that_rows_person() {
    let mut r =
        Run { snapshot: vec![(user("a", true, "x"), "1")], file: vec![user("a", true, "y")], out_of_scope: vec![oos("a", 9)], ..base() };
    r.rule.lifecycle.out_of_scope = crate::plan::settings::OutOfScope::Ignore;
    let (p, h) = go(r);
    assert_eq!(ids(&p, OpKind::Update), ["a"]);
    assert!(h.out_of_scope.is_empty());
}

/// Day `d` of a test month, at 06:00 UTC.
fn day(d: u32) -> chrono::DateTime<chrono::Utc> {
    use chrono::TimeZone;
    chrono::Utc.with_ymd_and_hms(2026, 3, d, 6, 0, 0).unwrap()
}

/// One run of `grace` on day `d` over a plan whose absentees are `absent`, with the
/// recorded absences carried from run to run as the state would.
fn graced(recorded: &mut std::collections::HashMap<String, chrono::DateTime<chrono::Utc>>, absent: &[&str], d: u32) -> (Plan, Held) {
    let snapshot: Vec<(User, &'static str)> = vec![(user("a", true, "x"), "1"), (user("b", true, "x"), "2"), (user("c", true, "x"), "3")];
    let file: Vec<User> = snapshot.iter().filter(|(u, _)| !absent.contains(&u.external_id.as_str())).map(|(u, _)| u.clone()).collect();
    let mut r = base();
    r.rule.max_deactivations = Limit::Count(0);
    let (mut p, mut h) = go(Run { snapshot, file, rule: r.rule, ..base() });
    let out = grace(&mut p, recorded, day(d), std::time::Duration::from_secs(3 * 86_400), &mut h);
    for id in &out.back {
        recorded.remove(id);
    }
    for (id, since) in out.absent {
        recorded.entry(id).or_insert(since);
    }
    (p, h)
}

#[test]
fn grace_keeps_an_absentee_until_absent_that_long_over_several_days() {
    let mut rec = std::collections::HashMap::new();
    // Day 1: b is absent. In grace until day 4, no safeguard (the plan's count is redone).
    let (p, h) = graced(&mut rec, &["b"], 1);
    assert!(p.ops.is_empty() && p.stop.is_none(), "{:?} {:?}", p.ops, p.stop);
    assert_eq!(h.in_grace.people, [InGrace { external_id: "b".into(), absent_since: day(1), until: day(4) }]);
    // Day 3: still absent, still in grace, since day 1.
    let (p, h) = graced(&mut rec, &["b"], 3);
    assert!(p.ops.is_empty());
    assert_eq!(h.in_grace.people[0].absent_since, day(1));
    // Day 4: absent three days: deactivated.
    let (p, h) = graced(&mut rec, &["b"], 4);
    assert_eq!(ids(&p, OpKind::Deactivate), ["b"]);
    assert!(h.in_grace.is_empty());
}

#[test]
fn a_file_that_drops_and_regains_people_for_a_day_changes_nobody() {
    let mut rec = std::collections::HashMap::new();
    let (p, _) = graced(&mut rec, &["a", "c"], 1);
    assert!(p.ops.is_empty());
    assert_eq!(rec.len(), 2);
    let (p, h) = graced(&mut rec, &[], 2);
    assert!(p.ops.is_empty() && h.is_empty());
    assert!(rec.is_empty(), "back in the file: forgotten");
    // Gone again on day 5: the grace starts over, not from day 1.
    let (p, h) = graced(&mut rec, &["a"], 5);
    assert!(p.ops.is_empty());
    assert_eq!(h.in_grace.people[0].until, day(8));
}

fn date(d: u32) -> chrono::NaiveDate {
    chrono::NaiveDate::from_ymd_opt(2026, 3, d).unwrap()
}

/// The file on day `today` with a hire starting on day 10 and a leaver whose last day is day
/// 5 (flagged inactive already, as exports do), lead 3 days; the snapshot as the runs left it.
fn dated_run(snapshot: &[(User, &'static str)], today: u32) -> (Plan, Held) {
    let dates = vec![
        ("hire".to_string(), crate::mapping::dates::Dates { start: Some(date(10)), end: None }),
        ("leaver".to_string(), crate::mapping::dates::Dates { start: None, end: Some(date(5)) }),
    ];
    let mut r = Run {
        snapshot: snapshot.to_vec(),
        file: vec![user("hire", true, "x"), user("leaver", false, "x")],
        dates,
        today: date(today),
        ..base()
    };
    r.rule.lifecycle.create_lead_days = 3;
    go(r)
}

/// The snapshot after a plan's operations succeed.
fn apply(snapshot: &mut Vec<(User, &'static str)>, p: &Plan) {
    for op in &p.ops {
        match op {
            Op::Create { user } | Op::Update { user, .. } => {
                snapshot.retain(|(u, _)| u.external_id != user.external_id);
                snapshot.push(((**user).clone(), "p"));
            }
            _ => panic!("{op:?}"),
        }
    }
}

#[test]
fn dated_hires_and_leaves_over_several_days() {
    let mut snap = vec![(user("leaver", true, "x"), "9")];
    // Day 1: the hire starts in 9 days (> 3): pending, no account; the leaver stays active
    // until day 5 although flagged inactive.
    let (p, h) = dated_run(&snap, 1);
    assert!(p.ops.is_empty(), "{:?}", p.ops);
    assert_eq!(h.pending.people, [Pending { external_id: "hire".into(), line: 2, start_date: date(10), created_on: date(7) }]);
    assert_eq!(h.skipped_count(), 1, "pending counts as skipped");
    assert_eq!(h.next_change, Some(NextChange { on: date(5), external_id: "leaver".into(), change: "leave".into() }));
    // Day 5: the leave date: deactivated.
    let (p, h) = dated_run(&snap, 5);
    assert_eq!(ids(&p, OpKind::Deactivate), ["leaver"]);
    assert_eq!(h.next_change.as_ref().map(|n| (n.on, n.change.as_str())), Some((date(7), "account")));
    apply(&mut snap, &p);
    // Day 7: within the lead: an inactive account.
    let (p, _) = dated_run(&snap, 7);
    assert!(matches!(&p.ops[..], [Op::Create { user }] if user.external_id == "hire" && !user.active), "{:?}", p.ops);
    apply(&mut snap, &p);
    // Day 9: nothing changes.
    let (p, h) = dated_run(&snap, 9);
    assert!(p.ops.is_empty(), "{:?}", p.ops);
    assert_eq!(h.next_change.as_ref().map(|n| (n.on, n.change.as_str())), Some((date(10), "start")));
    // Day 10: the start date: active.
    let (p, h) = dated_run(&snap, 10);
    assert!(matches!(&p.ops[..], [Op::Update { user, .. }] if user.external_id == "hire" && user.active), "{:?}", p.ops);
    assert!(h.next_change.is_none());
}

#[test]
fn a_lead_of_zero_creates_on_the_start_date_active() {
    let dates = vec![("hire".to_string(), crate::mapping::dates::Dates { start: Some(date(3)), end: None })];
    let run = |today| go(Run { file: vec![user("hire", true, "x")], dates: dates.clone(), today: date(today), ..base() });
    let (p, h) = run(2);
    assert!(p.ops.is_empty());
    assert_eq!(h.pending.people[0].created_on, date(3));
    let (p, _) = run(3);
    assert!(matches!(&p.ops[..], [Op::Create { user }] if user.active));
}
