//! The change budget: how much of a connector's known population one run may change, beyond
//! deactivations (`max_deactivations`), before it stops for a person to look.
//!
//! Why: a file can be well-formed and still wrong. An HRIS field permission that empties the
//! Email column, a JSON export whose duplicated key switches every login to a private address,
//! another customer's export with the same id scheme: each parses cleanly and deactivates
//! nobody, yet rewrites every login. Counting only deactivations let those through with exit 0.
//! So every kind of change has a limit, and a run over any of them stops before sending,
//! exactly like a mass deactivation (stored, approvable, overridable with `--allow-mass-change`).
//!
//! Pure: the plan's operations (updates carrying the content last synced, `Op::Update::previous`)
//! and the known population in, at most one tripped limit out.

use serde::Serialize;

use super::settings::Limit;
use super::{Op, OpKind};
use crate::model::User;

/// The limits, each a count or a percent of the people the connector already knows
/// (`[connectors.NAME.sync]`). A connector's first sync (nobody known) is never over a limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChangeBudget {
    /// People whose login identity (`userName`, or their email) changes.
    pub identity: Limit,
    /// People who lose a mapped value they had (an email, a department … becomes empty),
    /// counted per attribute: a column that arrives empty blanks it for everyone.
    pub blanked: Limit,
    /// People updated in any way (a file of other people rewrites everyone).
    pub updates: Limit,
    /// Accounts moved to a new id (re-hires): a new id scheme looks like everyone re-hired.
    pub rekeys: Limit,
    /// New people on a connector that already has people: a new id scheme, or ids that
    /// changed shape (`00123` → `123`), makes everyone new.
    pub creates: Limit,
}

impl Default for ChangeBudget {
    /// Day-to-day files change a few percent; each default stops a whole-population change
    /// (the cases above) and lets a reorganisation of a department through.
    fn default() -> Self {
        ChangeBudget {
            identity: Limit::Percent(10.0),
            blanked: Limit::Percent(10.0),
            updates: Limit::Percent(50.0),
            rekeys: Limit::Percent(10.0),
            creates: Limit::Percent(50.0),
        }
    }
}

/// Which limit of the budget a run went over; its config key is `key()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Identity,
    Blanked,
    Updates,
    Rekeys,
    Creates,
}

impl ChangeKind {
    /// The `[sync]` key that sets this limit, as the stop message and `stopped_by` name it.
    pub fn key(self) -> &'static str {
        match self {
            ChangeKind::Identity => "max_identity_changes",
            ChangeKind::Blanked => "max_blanked",
            ChangeKind::Updates => "max_updates",
            ChangeKind::Rekeys => "max_rekeys",
            ChangeKind::Creates => "max_creates",
        }
    }

    /// What the run would do, as the stop message says it: "{count} of {known} known people".
    fn what(self, count: u64, known: u64) -> String {
        match self {
            ChangeKind::Identity => format!("change the login (userName or email) of {count} of {known} known people"),
            ChangeKind::Blanked => format!("empty a value that was set for {count} of {known} known people"),
            ChangeKind::Updates => format!("update {count} of {known} known people"),
            ChangeKind::Rekeys => format!("move the accounts of {count} of {known} known people to a new id"),
            ChangeKind::Creates => format!("create {count} new accounts on a connector that knows {known} people"),
        }
    }
}

/// One person's change, shown in the stop message: what the platform holds → what the file says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Example {
    pub external_id: String,
    pub field: String,
    pub before: String,
    pub after: String,
}

/// The run goes over one limit of the budget.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OverBudget {
    pub kind: ChangeKind,
    /// For `Blanked`: the attribute blanked for the most people.
    pub field: Option<String>,
    pub count: u64,
    pub known: u64,
    pub limit: String,
    pub allowed: u64,
    /// A few of the people concerned (at most `EXAMPLES`), in id order.
    pub examples: Vec<Example>,
}

/// Examples a stop message shows.
pub const EXAMPLES: usize = 5;

impl OverBudget {
    pub fn message(&self, go_on: &str) -> String {
        let field = self.field.as_deref().map(|f| format!(" ({f})")).unwrap_or_default();
        let examples: Vec<String> =
            self.examples.iter().map(|e| format!("{}: {} \"{}\" → \"{}\"", e.external_id, e.field, e.before, e.after)).collect();
        let shown = if examples.is_empty() { String::new() } else { format!(" For example: {}.", examples.join("; ")) };
        format!(
            "this run would {}{field}, above {} = \"{}\" ({} allowed); nothing was pushed.{shown} A file that looks right but is wrong (an emptied column, another customer's export, ids that changed shape) looks like this: {go_on}",
            self.kind.what(self.count, self.known),
            self.kind.key(),
            self.limit,
            self.allowed
        )
    }
}

/// What one run's operations change, against `budget`: the first limit exceeded, in the order
/// identity, blanked values, re-keys, creates, updates (the most specific first, so the message
/// names the likeliest cause). `rekeys`: the plan's re-hires (`Plan::rekeyed`).
pub fn check(ops: &[Op], known: u64, rekeys: u64, budget: &ChangeBudget) -> Option<OverBudget> {
    if known == 0 {
        return None;
    }
    let over = |kind: ChangeKind, limit: Limit, count: u64, field: Option<String>, examples: Vec<Example>| {
        let allowed = allowed(limit, known);
        (count > allowed).then(|| OverBudget { kind, field, count, known, limit: limit.to_string(), allowed, examples })
    };
    let updates: Vec<(&User, &User)> = ops
        .iter()
        .filter(|o| o.kind() == OpKind::Update)
        .filter_map(|o| match o {
            Op::Update { user, previous: Some(prev), adopt: false, .. } => Some((prev.as_ref(), user.as_ref())),
            _ => None,
        })
        .collect();

    let identity: Vec<Example> = updates.iter().filter_map(|(p, n)| identity_change(p, n)).collect();
    if let Some(o) = over(ChangeKind::Identity, budget.identity, identity.len() as u64, None, first(identity)) {
        return Some(o);
    }
    if let Some((field, blanked)) = most_blanked(&updates)
        && let Some(o) = over(ChangeKind::Blanked, budget.blanked, blanked.len() as u64, Some(field), first(blanked))
    {
        return Some(o);
    }
    if let Some(o) = over(ChangeKind::Rekeys, budget.rekeys, rekeys, None, Vec::new()) {
        return Some(o);
    }
    let creates = ops.iter().filter(|o| o.kind() == OpKind::Create).count() as u64;
    if let Some(o) = over(ChangeKind::Creates, budget.creates, creates, None, Vec::new()) {
        return Some(o);
    }
    // Adoptions bind accounts found on the platform (their own rules decide them), so they
    // are no update of a known person.
    let all_updates = ops.iter().filter(|o| o.kind() == OpKind::Update && !matches!(o, Op::Update { adopt: true, .. })).count() as u64;
    over(ChangeKind::Updates, budget.updates, all_updates, None, Vec::new())
}

/// People a percent limit lets through at least, whatever the population: a connector of
/// three people whose manager links change on one day is no wrong file. A count limit is
/// taken as written (set one to be stricter on a small connector).
pub const PERCENT_FLOOR: u64 = 5;

fn allowed(limit: Limit, known: u64) -> u64 {
    match limit {
        Limit::Count(n) => n,
        Limit::Percent(_) => limit.allowed(known).max(PERCENT_FLOOR),
    }
}

fn first(mut v: Vec<Example>) -> Vec<Example> {
    v.sort_by(|a, b| a.external_id.cmp(&b.external_id));
    v.truncate(EXAMPLES);
    v
}

/// The login identity changed: `userName` (email, else employee id), or the email itself;
/// compared without case, as the platform compares them.
fn identity_change(prev: &User, new: &User) -> Option<Example> {
    let eq = |a: &str, b: &str| a.eq_ignore_ascii_case(b) || a.to_lowercase() == b.to_lowercase();
    if !eq(prev.user_name(), new.user_name()) {
        return Some(example(new, "userName", prev.user_name(), new.user_name()));
    }
    let (a, b) = (prev.email().unwrap_or_default(), new.email().unwrap_or_default());
    (!eq(a, b)).then(|| example(new, "email", a, b))
}

fn example(u: &User, field: &str, before: &str, after: &str) -> Example {
    Example { external_id: u.external_id.to_string(), field: field.into(), before: before.into(), after: after.into() }
}

/// The optional values a person can lose: email, employee id, manager, each attribute.
fn optional_values(u: &User) -> impl Iterator<Item = (&str, &str)> {
    [("email", u.email()), ("employee_id", u.employee_id())]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .chain(u.stored_attributes())
        .filter(|(_, v)| !v.trim().is_empty())
}

/// The attribute that the most updated people lose (set before, empty or absent now), with
/// those people; None when nobody loses anything.
fn most_blanked(updates: &[(&User, &User)]) -> Option<(String, Vec<Example>)> {
    let mut by_field: std::collections::BTreeMap<&str, Vec<Example>> = std::collections::BTreeMap::new();
    for (prev, new) in updates {
        let now: std::collections::HashMap<&str, &str> = optional_values(new).collect();
        for (field, before) in optional_values(prev) {
            if !now.contains_key(field) {
                by_field.entry(field).or_default().push(example(new, field, before, ""));
            }
        }
    }
    by_field.into_iter().max_by_key(|(_, v)| v.len()).map(|(f, v)| (f.to_string(), v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::UserFields;
    use crate::model::{Attributes, Str};

    fn user(id: &str, email: Option<&str>, dept: Option<&str>) -> User {
        let mut attributes = Attributes::new();
        if let Some(d) = dept {
            attributes.insert("department", d);
        }
        User::from(UserFields {
            external_id: Str::from(id),
            email: email.map(Str::from),
            employee_id: Some(Str::from(id)),
            first_name: Str::from("Ada"),
            last_name: Str::from("Lovelace"),
            language: Str::from("en"),
            active: true,
            manager: None,
            attributes,
        })
    }

    fn update(prev: User, new: User) -> Op {
        Op::Update { platform_id: format!("p-{}", new.external_id), user: Box::new(new), adopt: false, previous: Some(Box::new(prev)) }
    }

    /// `n` people of 100, each changed by `f` (before, after).
    fn ops(n: usize, f: impl Fn(usize) -> (User, User)) -> Vec<Op> {
        (0..n).map(f).map(|(p, u)| update(p, u)).collect()
    }

    #[test]
    fn an_emptied_email_column_is_over_the_identity_limit_with_examples() {
        let ops = ops(100, |i| {
            let id = format!("E{i:03}");
            (user(&id, Some(&format!("p{i}@acme.example")), Some("Sales")), user(&id, None, Some("Sales")))
        });
        let o = check(&ops, 100, 0, &ChangeBudget::default()).expect("stopped");
        assert_eq!((o.kind, o.count, o.allowed, o.known), (ChangeKind::Identity, 100, 10, 100));
        assert_eq!(o.examples.len(), EXAMPLES);
        assert_eq!(o.examples[0], example(&user("E000", None, None), "userName", "p0@acme.example", "E000"));
        let text = o.message("go on");
        assert!(
            text.contains("max_identity_changes = \"10%\"") && text.contains("E000: userName \"p0@acme.example\" → \"E000\""),
            "{text}"
        );
    }

    #[test]
    fn a_login_switched_to_another_address_counts_and_a_change_of_case_does_not() {
        let switched = ops(20, |i| {
            let id = format!("E{i}");
            (user(&id, Some(&format!("p{i}@work.example")), None), user(&id, Some(&format!("p{i}@home.example")), None))
        });
        assert_eq!(check(&switched, 100, 0, &ChangeBudget::default()).map(|o| o.kind), Some(ChangeKind::Identity));
        let cased = ops(20, |i| {
            let id = format!("E{i}");
            (user(&id, Some(&format!("p{i}@work.example")), None), user(&id, Some(&format!("P{i}@Work.example")), None))
        });
        assert_eq!(check(&cased, 100, 0, &ChangeBudget::default()), None);
    }

    #[test]
    fn a_column_that_arrives_empty_is_over_the_blank_limit_naming_the_attribute() {
        let ops = ops(95, |i| {
            let id = format!("E{i:02}");
            (user(&id, Some("x@acme.example"), Some("Sales")), user(&id, Some("x@acme.example"), None))
        });
        let o = check(&ops, 100, 0, &ChangeBudget::default()).expect("stopped");
        assert_eq!((o.kind, o.field.as_deref(), o.count), (ChangeKind::Blanked, Some("department"), 95));
        assert_eq!(o.examples[0].before, "Sales");
    }

    #[test]
    fn day_to_day_changes_are_within_every_limit() {
        // 8 of 100 moved department, 3 changed email, 2 new hires, 1 re-hire.
        let mut ops = ops(8, |i| {
            let id = format!("E{i}");
            (user(&id, Some("a@x.example"), Some("Sales")), user(&id, Some("a@x.example"), Some("Ops")))
        });
        ops.extend((0..3).map(|i| {
            let id = format!("M{i}");
            update(user(&id, Some("old@x.example"), None), user(&id, Some("new@x.example"), None))
        }));
        ops.extend((0..2).map(|i| Op::Create { user: Box::new(user(&format!("N{i}"), None, None)) }));
        assert_eq!(check(&ops, 100, 1, &ChangeBudget::default()), None);
    }

    #[test]
    fn a_small_connector_is_not_stopped_by_a_few_changes_and_adoptions_are_no_updates() {
        // 3 known, 2 manager links changed: under the floor of a percent limit.
        let linked = ops(2, |i| {
            let id = format!("E{i}");
            let mut after = user(&id, Some("a@x.example"), None);
            after.manager = Some(Str::from("E9"));
            (user(&id, Some("a@x.example"), None), after)
        });
        assert_eq!(check(&linked, 3, 0, &ChangeBudget::default()), None);
        let strict = ChangeBudget { updates: Limit::Count(1), ..ChangeBudget::default() };
        assert_eq!(check(&linked, 3, 0, &strict).map(|o| o.kind), Some(ChangeKind::Updates), "a count is taken as written");
        let adopted: Vec<Op> = (0..20)
            .map(|i| Op::Update {
                platform_id: format!("p{i}"),
                user: Box::new(user(&format!("A{i}"), None, None)),
                adopt: true,
                previous: None,
            })
            .collect();
        assert_eq!(check(&adopted, 1, 0, &ChangeBudget::default()), None);
    }

    #[test]
    fn creates_rekeys_and_updates_have_their_own_limits_and_a_first_sync_has_none() {
        let creates: Vec<Op> = (0..60).map(|i| Op::Create { user: Box::new(user(&format!("N{i}"), None, None)) }).collect();
        assert_eq!(check(&creates, 100, 0, &ChangeBudget::default()).map(|o| o.kind), Some(ChangeKind::Creates));
        assert_eq!(check(&creates, 0, 0, &ChangeBudget::default()), None, "a first sync creates everyone");
        assert_eq!(check(&[], 100, 11, &ChangeBudget::default()).map(|o| o.kind), Some(ChangeKind::Rekeys));
        let renamed = ops(60, |i| {
            let id = format!("E{i}");
            let mut after = user(&id, Some("a@x.example"), None);
            after.set_last_name("Byron");
            (user(&id, Some("a@x.example"), None), after)
        });
        let o = check(&renamed, 100, 0, &ChangeBudget::default()).expect("stopped");
        assert_eq!((o.kind, o.count, o.allowed), (ChangeKind::Updates, 60, 50));
        let loose = ChangeBudget { updates: Limit::Count(60), ..ChangeBudget::default() };
        assert_eq!(check(&renamed, 100, 0, &loose), None, "a count limit");
    }
}
