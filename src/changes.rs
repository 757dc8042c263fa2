//! What a plan does to each person, as people read it: the id and name, the kind of
//! operation, and for updates each changed field with its old and new value. Pure: the
//! plan and the content the state last pushed go in, the list comes out (reports, `--json`,
//! `--plan-out`, `plan show`, `explain`). Also the fingerprints an approval is checked
//! against: of the plan, and of the state it was made from.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::model::{MANAGER_ATTRIBUTE, User};
use crate::plan::{Op, Plan, Snapshot};

mod listing;
pub use listing::Listing;

/// What happens to one person, as a report names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PersonKind {
    Create,
    Update,
    /// Inactive in the state, active in the file.
    Reactivate,
    Deactivate,
    Delete,
    /// An account already on the platform, taken over (first sync).
    Adopt,
    /// A re-hire: a leaver's account moves to the new id.
    Rekey,
    /// Nothing sent: the account is someone else's (`reason` says whose).
    Conflict,
}

impl PersonKind {
    pub fn word(self) -> &'static str {
        match self {
            PersonKind::Create => "create",
            PersonKind::Update => "update",
            PersonKind::Reactivate => "reactivate",
            PersonKind::Deactivate => "deactivate",
            PersonKind::Delete => "delete",
            PersonKind::Adopt => "adopt",
            PersonKind::Rekey => "rekey",
            PersonKind::Conflict => "conflict",
        }
    }
}

/// One field of a person that changes: its value last pushed and its value now (None: no value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub field: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

/// One operation of a plan, for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonOp {
    pub external_id: String,
    /// First and last name (from the file, or from the state for people absent from it).
    pub name: String,
    pub kind: PersonKind,
    /// Updates: each changed field. Empty for the other kinds.
    #[serde(default)]
    pub changes: Vec<Change>,
    /// The file line (absent people have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// Why, in a few words: the rule that decided it (shared text for most: a million
    /// creates do not each allocate "new in the file").
    pub reason: Cow<'static, str>,
}

fn name_of(u: &User) -> String {
    // Pushed, not `format!`: the formatting machinery was most of a million names' cost.
    let (a, sep, b) = name_parts(u);
    let mut n = String::with_capacity(a.len() + sep.len() + b.len());
    n.push_str(a);
    n.push_str(sep);
    n.push_str(b);
    n
}

/// First and last name joined by a space, trimmed, as three pieces to write one after the
/// other (`"first last".trim()` without building the untrimmed string).
fn name_parts(u: &User) -> (&str, &'static str, &str) {
    let (first, last) = (u.first_name(), u.last_name());
    match (first.trim().is_empty(), last.trim().is_empty()) {
        (true, _) => ("", "", last.trim()),
        (false, true) => (first.trim(), "", ""),
        (false, false) => (first.trim_start(), " ", last.trim_end()),
    }
}

/// A person's name as an entry shows it (`name_of`), written where it is serialised.
struct Name<'a>(Option<&'a User>);

impl std::fmt::Display for Name<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Some(u) = self.0 else { return Ok(()) };
        let (a, sep, b) = name_parts(u);
        f.write_str(a)?;
        f.write_str(sep)?;
        f.write_str(b)
    }
}

impl Serialize for Name<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl Name<'_> {
    fn owned(&self) -> String {
        self.0.map(name_of).unwrap_or_default()
    }
}

/// One entry as `person_ops` makes it, before it is owned: what a plan's listing writes,
/// serialised exactly as its `PersonOp`, without a copy of each person's id and name (a
/// million of each in a first sync's `--json`).
#[derive(Serialize)]
pub(crate) struct PersonOpRef<'a> {
    external_id: &'a str,
    name: Name<'a>,
    kind: PersonKind,
    changes: Vec<Change>,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<u64>,
    reason: Cow<'static, str>,
}

impl PersonOpRef<'_> {
    fn owned(self) -> PersonOp {
        PersonOp {
            external_id: self.external_id.to_string(),
            name: self.name.owned(),
            kind: self.kind,
            changes: self.changes,
            line: self.line,
            reason: self.reason,
        }
    }
}

/// Every field the platform holds, by the mapping's names, with its value.
fn fields(u: &User) -> Vec<(&str, Option<&str>)> {
    let mut v = vec![
        ("email", u.email()),
        ("employee_id", u.employee_id()),
        ("first_name", Some(u.first_name())),
        ("last_name", Some(u.last_name())),
        ("language", Some(u.language())),
        ("active", Some(if u.active { "true" } else { "false" })),
    ];
    v.extend(u.stored_attributes().map(|(k, val)| (k, Some(val))));
    v
}

/// The fields that differ between the content last pushed and the new one, in a stable
/// order (the fixed fields, then attributes by name). An empty value reads as none.
pub fn diff(old: &User, new: &User) -> Vec<Change> {
    let (a, b) = (fields(old), fields(new));
    fn get<'u>(list: &[(&str, Option<&'u str>)], k: &str) -> Option<&'u str> {
        list.iter().find(|(f, _)| *f == k).and_then(|(_, v)| *v).filter(|v| !v.is_empty())
    }
    // The six fixed fields come first in both lists; then the union of the attributes.
    let mut names: Vec<&str> = a.iter().take(6).map(|(f, _)| *f).collect();
    let attrs: BTreeSet<&str> = a.iter().skip(6).chain(b.iter().skip(6)).map(|(f, _)| *f).collect();
    names.extend(attrs);
    names
        .into_iter()
        .filter_map(|f| {
            let (o, n) = (get(&a, f), get(&b, f));
            (o != n).then(|| Change { field: f.to_string(), old: o.map(String::from), new: n.map(String::from) })
        })
        .collect()
}

/// The kind of one operation, as people name it: `previous` is the content last pushed
/// (when known), `rekeyed` whether the plan moves a leaver's account to this person.
pub fn kind_of(op: &Op, previous: Option<&User>, rekeyed: bool) -> PersonKind {
    match op {
        Op::Create { .. } => PersonKind::Create,
        Op::Update { adopt: true, .. } if rekeyed => PersonKind::Rekey,
        Op::Update { adopt: true, .. } => PersonKind::Adopt,
        // An inactive person whose other fields changed is updated, not deactivated again.
        Op::Update { user, .. } if !user.active && previous.is_none_or(|p| p.active) => PersonKind::Deactivate,
        Op::Update { .. } if previous.is_some_and(|p| !p.active) => PersonKind::Reactivate,
        Op::Update { .. } => PersonKind::Update,
        Op::Deactivate { .. } => PersonKind::Deactivate,
        Op::Delete { .. } => PersonKind::Delete,
    }
}

/// The names of the fields an operation changes (updates whose previous content is known).
pub fn changed_fields(op: &Op) -> Vec<String> {
    match op {
        Op::Update { user, previous: Some(p), adopt: false, .. } => diff(p, user).into_iter().map(|c| c.field).collect(),
        _ => Vec::new(),
    }
}

/// The plan's operations and conflicts, person by person, in the plan's order (creates,
/// updates, deactivations, deletions), conflicts last; at most `limit` of them (a first sync
/// of a million people is not listed whole unless asked: `--json`, `--plan-out`, which
/// read a `Listing` instead). `stored` is the content the state last pushed, for the people
/// updated, deactivated or deleted (their names, and what changed); `connector` names the
/// config section a conflict's reason points to.
pub fn describe(plan: &Plan, stored: &HashMap<String, User>, connector: &str, limit: usize) -> Vec<PersonOp> {
    let mut out = Vec::with_capacity((plan.ops.len() + plan.conflicts.len()).min(limit));
    out.extend(person_ops(plan, stored, connector).take(limit));
    out
}

/// `describe`'s entries one at a time, as they are read: nothing is kept once the reader
/// has moved on, so a million of them cost one at a time (`Listing`).
pub fn person_ops<'a>(plan: &'a Plan, stored: &'a HashMap<String, User>, connector: &'a str) -> impl Iterator<Item = PersonOp> + 'a {
    person_op_refs(plan, stored, connector).map(PersonOpRef::owned)
}

/// `person_ops`, borrowed from the plan and the stored content.
pub(crate) fn person_op_refs<'a>(
    plan: &'a Plan,
    stored: &'a HashMap<String, User>,
    connector: &'a str,
) -> impl Iterator<Item = PersonOpRef<'a>> + 'a {
    let rekeyed: HashMap<&str, &crate::plan::Rekey> = plan.rekeyed.iter().map(|r| (r.new.as_str(), r)).collect();
    let lines = plan.lines.iter().copied().chain(std::iter::repeat(0));
    let ops = plan.ops.iter().zip(lines).map(move |(op, line)| person_op(op, line, stored, &rekeyed));
    let conflicts = plan.conflicts.iter().map(move |c| PersonOpRef {
        external_id: &c.external_id,
        name: Name(stored.get(&c.external_id)),
        kind: PersonKind::Conflict,
        changes: Vec::new(),
        line: (c.line > 0).then_some(c.line),
        reason: c.message(connector).into(),
    });
    ops.chain(conflicts)
}

fn person_op<'a>(
    op: &'a Op,
    line: u64,
    stored: &'a HashMap<String, User>,
    rekeyed: &HashMap<&str, &crate::plan::Rekey>,
) -> PersonOpRef<'a> {
    let line = (line > 0).then_some(line);
    let id = op.external_id();
    let old = stored.get(id);
    let prev = match op {
        Op::Update { previous, adopt: false, .. } => previous.as_deref().or(old),
        _ => None,
    };
    let rekey = rekeyed.get(id);
    let kind = kind_of(op, prev, rekey.is_some());
    let (name, changes) = match op {
        Op::Create { user } | Op::Update { user, .. } => (Name(Some(&**user)), prev.map(|p| diff(p, user)).unwrap_or_default()),
        Op::Deactivate { .. } | Op::Delete { .. } => (Name(old), Vec::new()),
    };
    let reason: Cow<'static, str> = match (op, kind) {
        (Op::Update { platform_id, .. }, PersonKind::Rekey) => format!(
            "re-hire of \"{}\" (same email): platform account {platform_id} moves to the new id",
            rekey.map(|r| r.old.as_str()).unwrap_or_default()
        )
        .into(),
        (Op::Update { platform_id, .. }, PersonKind::Adopt) => {
            format!("platform account {platform_id} already exists (same externalId or userName) and is taken over").into()
        }
        (_, PersonKind::Create) => "new in the file".into(),
        (Op::Update { .. }, PersonKind::Deactivate) => "inactive in the file".into(),
        (_, PersonKind::Reactivate) => "active again in the file".into(),
        (_, PersonKind::Update) if prev.is_none() => {
            "content differs from the last sync (the state keeps no copy: every attribute is rewritten)".into()
        }
        (_, PersonKind::Update) => "content differs from the last sync".into(),
        (_, PersonKind::Delete) => "absent from the file (on_missing = \"delete\")".into(),
        _ => "absent from the file (on_missing = \"deactivate\")".into(),
    };
    PersonOpRef { external_id: id, name, kind, changes, line, reason }
}

/// The external ids whose stored content `describe` reads, of its first `limit`
/// operations: updated, deactivated or deleted people (not creates, adoptions or re-hires,
/// which the state does not hold).
pub fn stored_ids(plan: &Plan, limit: usize) -> Vec<&str> {
    plan.ops
        .iter()
        .take(limit)
        .filter_map(|op| match op {
            Op::Update { adopt: false, previous: None, .. } | Op::Deactivate { .. } | Op::Delete { .. } => Some(op.external_id()),
            _ => None,
        })
        .collect()
}

/// Of what the plan sends, a digest: each operation's kind, person, account and content.
/// Two plans with the same digest send the same requests; an approval compares it.
pub fn plan_digest(plan: &Plan) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for op in &plan.ops {
        let (pid, content, adopt) = match op {
            Op::Create { user } => ("", Some(user.content_hash()), false),
            Op::Update { platform_id, user, adopt, .. } => (platform_id.as_str(), Some(user.content_hash()), *adopt),
            Op::Deactivate { platform_id, .. } | Op::Delete { platform_id, .. } => (platform_id.as_str(), None, false),
        };
        h.update(format!("{:?}", op.kind()).as_bytes());
        h.update([0x1f]);
        h.update(op.external_id().as_bytes());
        h.update([0x1f]);
        h.update(pid.as_bytes());
        h.update([0x1f, u8::from(adopt)]);
        h.update(content.unwrap_or_default());
        h.update([0x1e]);
    }
    hex::encode(h.finalize())
}

/// A fingerprint of a connector's snapshot (every person's id, account, content hash and
/// active flag): equal fingerprints mean the state is the one a plan was made from. Order
/// does not matter (a sum of per-person hashes), so no sort of a million ids is needed.
pub fn state_fingerprint(snapshot: &Snapshot) -> String {
    use sha2::{Digest, Sha256};
    let mut sum: u128 = 0;
    for (id, e) in snapshot {
        let mut h = Sha256::new();
        h.update(id.as_bytes());
        h.update([0x1f]);
        h.update(e.platform_id.as_bytes());
        h.update([0x1f, u8::from(e.active)]);
        h.update(e.hash);
        let d = h.finalize();
        let mut b = [0u8; 16];
        b.copy_from_slice(&d[..16]);
        sum = sum.wrapping_add(u128::from_le_bytes(b));
    }
    format!("{}:{sum:032x}", snapshot.len())
}

/// Writes the operations as CSV for a customer's HR team: one row per changed field (an
/// operation without changes is one row with empty field columns).
pub fn write_csv<W: std::io::Write>(ops: &[PersonOp], w: W) -> Result<(), csv::Error> {
    let mut out = csv_writer(w)?;
    for op in ops {
        write_csv_rows(&mut out, op)?;
    }
    out.flush()?;
    Ok(())
}

/// The CSV writer of `write_csv`, its header written.
fn csv_writer<W: std::io::Write>(w: W) -> Result<csv::Writer<W>, csv::Error> {
    let mut out = csv::Writer::from_writer(w);
    out.write_record(["external_id", "name", "kind", "field", "old", "new", "line", "reason"])?;
    Ok(out)
}

/// One operation's rows of `write_csv`.
fn write_csv_rows<W: std::io::Write>(out: &mut csv::Writer<W>, op: &PersonOp) -> Result<(), csv::Error> {
    let line = op.line.map(|l| l.to_string()).unwrap_or_default();
    if op.changes.is_empty() {
        out.write_record([op.external_id.as_str(), &op.name, op.kind.word(), "", "", "", &line, &op.reason])?;
    }
    for c in &op.changes {
        out.write_record([
            op.external_id.as_str(),
            &op.name,
            op.kind.word(),
            &c.field,
            c.old.as_deref().unwrap_or(""),
            c.new.as_deref().unwrap_or(""),
            &line,
            &op.reason,
        ])?;
    }
    Ok(())
}

/// The manager field's name in changes (the mapping's `manager_id`).
pub const MANAGER_FIELD: &str = MANAGER_ATTRIBUTE;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Bound, Conflict, Rekey, SnapshotEntry};

    use crate::model::fixtures::user;

    #[test]
    fn diff_names_each_changed_field_with_old_and_new() {
        let old = user("a", true, "Engineer");
        let mut new = user("a", true, "Lead");
        new.set_last_name("Ray");
        new.manager = Some("m1".into());
        new.set_attribute("site", "Paris");
        let c = diff(&old, &new);
        let got: Vec<(&str, Option<&str>, Option<&str>)> =
            c.iter().map(|c| (c.field.as_str(), c.old.as_deref(), c.new.as_deref())).collect();
        assert_eq!(
            got,
            vec![
                ("last_name", Some("Lee"), Some("Ray")),
                (MANAGER_FIELD, None, Some("m1")),
                ("site", None, Some("Paris")),
                ("title", Some("Engineer"), Some("Lead")),
            ]
        );
        assert!(diff(&old, &old).is_empty());
        let mut gone = old.clone();
        gone.set_attribute("title", "");
        assert_eq!(diff(&old, &gone), vec![Change { field: "title".into(), old: Some("Engineer".into()), new: None }]);
    }

    #[test]
    fn describe_gives_each_person_kind_name_and_reason() {
        let mut stored = HashMap::new();
        stored.insert("u".to_string(), user("u", true, "Engineer"));
        stored.insert("gone".to_string(), user("gone", true, "x"));
        stored.insert("back".to_string(), user("back", false, "x"));
        let mut gone_name = user("gone", true, "x");
        gone_name.set_first_name("Gus");
        stored.insert("gone".to_string(), gone_name);
        let plan = Plan {
            ops: vec![
                Op::Create { user: Box::new(user("c", true, "x")) },
                Op::Update { platform_id: "P-U".into(), user: Box::new(user("u", true, "Lead")), adopt: false, previous: None },
                Op::Update { platform_id: "P-B".into(), user: Box::new(user("back", true, "x")), adopt: false, previous: None },
                Op::Update { platform_id: "P-N".into(), user: Box::new(user("new", true, "x")), adopt: true, previous: None },
                Op::Update { platform_id: "P-L".into(), user: Box::new(user("left", false, "x")), adopt: false, previous: None },
                Op::Deactivate { platform_id: "P-G".into(), external_id: "gone".into() },
            ],
            lines: vec![2, 3, 4, 5, 6, 0],
            rekeyed: vec![Rekey { new: "new".into(), old: "old".into(), platform_id: "P-N".into() }],
            conflicts: vec![Conflict {
                external_id: "x".into(),
                line: 9,
                platform_id: "P-X".into(),
                bound: Bound::TakenInRun { external_id: "c".into() },
            }],
            ..Plan::default()
        };
        let d = describe(&plan, &stored, "acme", usize::MAX);
        let kinds: Vec<(&str, PersonKind)> = d.iter().map(|o| (o.external_id.as_str(), o.kind)).collect();
        assert_eq!(
            kinds,
            vec![
                ("c", PersonKind::Create),
                ("u", PersonKind::Update),
                ("back", PersonKind::Reactivate),
                ("new", PersonKind::Rekey),
                ("left", PersonKind::Deactivate),
                ("gone", PersonKind::Deactivate),
                ("x", PersonKind::Conflict),
            ]
        );
        assert_eq!(d[1].changes, vec![Change { field: "title".into(), old: Some("Engineer".into()), new: Some("Lead".into()) }]);
        assert_eq!(d[1].line, Some(3));
        assert_eq!(d[5].name, "Gus Lee", "an absent person's name comes from the state");
        assert_eq!(d[5].line, None);
        assert!(d[5].reason.contains("absent"), "{}", d[5].reason);
        assert!(d[3].reason.contains("\"old\""), "{}", d[3].reason);
        assert!(d[6].reason.contains("\"c\""), "{}", d[6].reason);
        assert_eq!(stored_ids(&plan, usize::MAX), vec!["u", "back", "left", "gone"]);
        let first = describe(&plan, &stored, "acme", 2);
        assert_eq!(first, d[..2].to_vec(), "a limit lists the first operations");
        assert_eq!(stored_ids(&plan, 2), vec!["u"]);
        assert_eq!(changed_fields(&plan.ops[1]), Vec::<String>::new(), "no previous attached: nothing to name");
        let with_prev = Op::Update {
            platform_id: "P".into(),
            user: Box::new(user("u", true, "Lead")),
            adopt: false,
            previous: Some(Box::new(user("u", true, "Engineer"))),
        };
        assert_eq!(changed_fields(&with_prev), vec!["title".to_string()]);
    }

    /// A plan's listing is written from borrowed entries: each is the JSON of its owned
    /// `PersonOp`, names trimmed alike (the listing and `plan show` read the same).
    #[test]
    fn borrowed_entries_serialise_as_the_owned_ones() {
        let named = |id: &str, first: &str, last: &str| {
            let mut u = user(id, true, "x");
            u.set_first_name(first);
            u.set_last_name(last);
            u
        };
        let people =
            [("a", "Ann", "Lee"), ("b", "  Bo ", " Ray  "), ("c", " ", "Solo "), ("d", " Mononym", "  "), ("e", "Zoë \"Z\"", "Ünal")];
        let mut stored = HashMap::new();
        stored.insert("gone".to_string(), named("gone", " Gus", "Lee "));
        let mut ops: Vec<Op> = people.iter().map(|(id, f, l)| Op::Create { user: Box::new(named(id, f, l)) }).collect();
        ops.push(Op::Deactivate { platform_id: "P-G".into(), external_id: "gone".into() });
        ops.push(Op::Deactivate { platform_id: "P-U".into(), external_id: "unknown".into() });
        let plan = Plan {
            ops,
            conflicts: vec![Conflict {
                external_id: "gone".into(),
                line: 0,
                platform_id: "P-X".into(),
                bound: Bound::TakenInRun { external_id: "a".into() },
            }],
            ..Plan::default()
        };
        let borrowed: Vec<String> = person_op_refs(&plan, &stored, "acme").map(|o| serde_json::to_string(&o).unwrap()).collect();
        let owned: Vec<String> = person_ops(&plan, &stored, "acme").map(|o| serde_json::to_string(&o).unwrap()).collect();
        assert_eq!(borrowed, owned);
        let names: Vec<String> = person_ops(&plan, &stored, "acme").map(|o| o.name).collect();
        assert_eq!(names, ["Ann Lee", "Bo   Ray", "Solo", "Mononym", "Zoë \"Z\" Ünal", "Gus Lee", "", "Gus Lee"]);
        for (u, (_, f, l)) in plan.ops.iter().zip(people) {
            let Op::Create { user } = u else { unreachable!() };
            assert_eq!(name_of(user), format!("{f} {l}").trim(), "as the untrimmed join, trimmed");
        }
    }

    #[test]
    fn digests_change_with_what_is_sent_and_nothing_else() {
        let op = |title: &str| Op::Update { platform_id: "P".into(), user: Box::new(user("a", true, title)), adopt: false, previous: None };
        let p1 = Plan { ops: vec![op("x")], lines: vec![2], ..Plan::default() };
        let mut p2 = p1.clone();
        p2.lines = vec![7];
        p2.unchanged = 5;
        assert_eq!(plan_digest(&p1), plan_digest(&p2), "lines and counts are not requests");
        let p3 = Plan { ops: vec![op("y")], ..p1.clone() };
        assert_ne!(plan_digest(&p1), plan_digest(&p3));

        let e = |active| SnapshotEntry { platform_id: "P".into(), hash: [1; 16], active };
        let s1: Snapshot = [("a".to_string(), e(true)), ("b".to_string(), e(true))].into_iter().collect();
        let s2: Snapshot = [("b".to_string(), e(true)), ("a".to_string(), e(true))].into_iter().collect();
        let s3: Snapshot = [("a".to_string(), e(true)), ("b".to_string(), e(false))].into_iter().collect();
        assert_eq!(state_fingerprint(&s1), state_fingerprint(&s2));
        assert_ne!(state_fingerprint(&s1), state_fingerprint(&s3));
    }

    #[test]
    fn csv_has_one_row_per_changed_field() {
        let ops = vec![
            PersonOp {
                external_id: "E1".into(),
                name: "Ann Lee".into(),
                kind: PersonKind::Update,
                changes: vec![
                    Change { field: "title".into(), old: Some("A".into()), new: Some("B, C".into()) },
                    Change { field: "site".into(), old: None, new: Some("Paris".into()) },
                ],
                line: Some(2),
                reason: "r".into(),
            },
            PersonOp {
                external_id: "E2".into(),
                name: "Bob".into(),
                kind: PersonKind::Deactivate,
                changes: vec![],
                line: None,
                reason: "gone".into(),
            },
        ];
        let mut buf = Vec::new();
        write_csv(&ops, &mut buf).unwrap();
        let text = String::from_utf8(buf).unwrap();
        assert_eq!(
            text,
            "external_id,name,kind,field,old,new,line,reason\nE1,Ann Lee,update,title,A,\"B, C\",2,r\nE1,Ann Lee,update,site,,Paris,2,r\nE2,Bob,deactivate,,,,,gone\n"
        );
    }
}
