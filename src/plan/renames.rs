//! Renames ordered so that uniqueness never blocks them (issue 25). A login (`userName`) is
//! unique on the platform: when one person takes a login another person of the same run
//! gives up (an HR correction, an email freed for a new hire), the one who frees it must be
//! written first. Pure: the operations (updates with their previous content attached) in,
//! the stages to send one after the other out.
//!
//! - Frees before takes: an operation that takes a login another rename of this run frees
//!   goes in a later stage than that rename (a chain of them, one stage per link).
//! - A cycle (two people swapping emails) is broken through a temporary unique login: one
//!   member (the smallest id) is first renamed to `local+rostersync-RUN@domain` in the
//!   first stage, which frees its login for the next; its own final rename comes last. The
//!   temporary rename is recorded in the state like any write, so a crash in the middle
//!   leaves a state whose difference from the file the next run sends (finishing the swap).

use std::collections::{HashMap, HashSet};

use super::Op;
use super::matching::fold;

/// The stages of a push, and which operations of the first stage are temporary renames.
#[derive(Debug, Default)]
pub struct Staged {
    /// Sent one after the other; each stage's operations together.
    pub stages: Vec<Vec<Op>>,
    /// External ids whose first operation is a temporary rename (in `stages[0]`); their
    /// final rename is in a later stage.
    pub temporary: HashSet<String>,
}

/// The login an operation gives up (an update's previous userName, when it changes).
fn freed(op: &Op) -> Option<String> {
    match op {
        Op::Update { user, previous: Some(prev), .. } => {
            let (old, new) = (fold(prev.user_name()), fold(user.user_name()));
            (old != new).then_some(old)
        }
        _ => None,
    }
}

/// The login an operation takes (a create's, or an update's new one when it changes).
fn taken(op: &Op) -> Option<String> {
    match op {
        Op::Create { user } => Some(fold(user.user_name())),
        Op::Update { .. } => freed(op).and(match op {
            Op::Update { user, .. } => Some(fold(user.user_name())),
            _ => None,
        }),
        _ => None,
    }
}

/// A temporary login for `email`, unique to this run: `local+rostersync-TAG@domain`.
pub fn temporary_email(email: &str, tag: &str) -> String {
    match email.rsplit_once('@') {
        Some((local, domain)) => format!("{local}+rostersync-{tag}@{domain}"),
        None => format!("{email}+rostersync-{tag}"),
    }
}

/// Orders `ops` into stages (module header). `tag` makes temporary logins unique (a run id).
pub fn order(ops: Vec<Op>, tag: &str) -> Staged {
    let holder: HashMap<String, usize> = ops.iter().enumerate().filter_map(|(i, o)| freed(o).map(|l| (l, i))).collect();
    if holder.is_empty() {
        return Staged { stages: vec![ops], temporary: HashSet::new() };
    }
    // after[i]: the operation that must go before i (it frees the login i takes).
    let mut after: Vec<Option<usize>> =
        ops.iter().enumerate().map(|(i, o)| taken(o).and_then(|l| holder.get(&l).copied()).filter(|j| *j != i)).collect();
    let (breakers, waiters) = break_cycles(&ops, &mut after);
    let mut level: Vec<Option<usize>> = vec![None; ops.len()];
    for i in 0..ops.len() {
        level_of(i, &after, &waiters, &mut level);
    }
    let mut staged = Staged::default();
    let mut temps = Vec::new();
    for &b in &breakers {
        if let Op::Update { platform_id, user, previous, .. } = &ops[b] {
            let mut tmp = user.clone();
            tmp.set_email(user.email().map(|e| temporary_email(e, tag)).as_deref());
            staged.temporary.insert(user.external_id.to_string());
            temps.push(Op::Update { platform_id: platform_id.clone(), user: tmp, adopt: false, previous: previous.clone() });
        }
    }
    let depth = level.iter().flatten().max().copied().unwrap_or(0);
    staged.stages = (0..=depth).map(|_| Vec::new()).collect();
    staged.stages[0].extend(temps);
    for (i, op) in ops.into_iter().enumerate() {
        staged.stages[level[i].unwrap_or(0)].push(op);
    }
    staged.stages.retain(|s| !s.is_empty());
    staged
}

/// Finds the cycles of `after` (each operation waits for at most one other, so they are
/// simple loops) and breaks each at its smallest external id with an email: that member
/// frees its login through a temporary one in the first stage, so the one waiting for it
/// waits for that instead (it goes in stage 1 at least, `level_of`). Returns the breakers
/// and those waiters.
fn break_cycles(ops: &[Op], after: &mut [Option<usize>]) -> (Vec<usize>, Vec<usize>) {
    let mut state = vec![0u8; ops.len()]; // 0 unseen, 1 on the current walk, 2 done
    let (mut breakers, mut waiters) = (Vec::new(), Vec::new());
    for start in 0..ops.len() {
        let mut path = Vec::new();
        let mut at = Some(start);
        while let Some(i) = at {
            match state[i] {
                2 => break,
                1 => {
                    let cycle = &path[path.iter().position(|p| *p == i).unwrap_or(0)..];
                    let with_email =
                        cycle.iter().copied().filter(|c| matches!(&ops[*c], Op::Update { user, .. } if user.email().is_some()));
                    if let Some(b) = with_email.min_by_key(|c: &usize| ops[*c].external_id().to_string()) {
                        // Whoever waited for the breaker's login waits for the temporary rename.
                        for (w, a) in after.iter_mut().enumerate().filter(|(_, a)| **a == Some(b)) {
                            *a = None;
                            waiters.push(w);
                        }
                        breakers.push(b);
                    }
                    break;
                }
                _ => {
                    state[i] = 1;
                    path.push(i);
                    at = after[i];
                }
            }
        }
        for p in path {
            state[p] = 2;
        }
    }
    (breakers, waiters)
}

/// The stage of operation `i`: one after the one it waits for; at least 1 for one that
/// takes a breaker's login (`waiters`: the temporary rename goes in stage 0). A breaker's
/// final rename comes after its predecessor in the cycle.
fn level_of(i: usize, after: &[Option<usize>], waiters: &[usize], level: &mut [Option<usize>]) -> usize {
    let mut chain = vec![i];
    while let Some(j) = chain.last().and_then(|&c| if level[c].is_none() { after[c] } else { None }) {
        if chain.contains(&j) {
            break;
        }
        chain.push(j);
    }
    for &c in chain.iter().rev() {
        if level[c].is_some() {
            continue;
        }
        let before = after[c].and_then(|j| level[j]).map(|l| l + 1).unwrap_or(0);
        let floor = usize::from(waiters.contains(&c));
        level[c] = Some(before.max(floor));
    }
    level[i].unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::User;

    fn person(id: &str, email: &str) -> User {
        let mut u = crate::model::fixtures::user(id, true, "x");
        u.set_email(Some(email));
        u
    }

    fn rename(id: &str, from: &str, to: &str) -> Op {
        Op::Update {
            platform_id: format!("P-{id}"),
            user: Box::new(person(id, to)),
            adopt: false,
            previous: Some(Box::new(person(id, from))),
        }
    }

    /// (external id, email sent) of each stage.
    fn shape(s: &Staged) -> Vec<Vec<(String, String)>> {
        s.stages
            .iter()
            .map(|st| {
                st.iter()
                    .map(|o| match o {
                        Op::Create { user } | Op::Update { user, .. } => {
                            (user.external_id.to_string(), user.email().unwrap_or("").to_string())
                        }
                        o => (o.external_id().to_string(), String::new()),
                    })
                    .collect()
            })
            .collect()
    }

    fn s(a: &str, b: &str) -> (String, String) {
        (a.to_string(), b.to_string())
    }

    #[test]
    fn nothing_to_order_is_one_stage() {
        let ops = vec![rename("a", "a@x.org", "a2@x.org"), Op::Create { user: Box::new(person("c", "c@x.org")) }];
        let staged = order(ops, "r1");
        assert_eq!(staged.stages.len(), 1);
        assert!(staged.temporary.is_empty());
    }

    #[test]
    fn frees_before_takes_and_a_freed_email_goes_to_a_new_hire_after() {
        // b takes a's old email; a new hire takes b's old one: a chain of three stages.
        let ops = vec![
            Op::Create { user: Box::new(person("n", "B@x.org")) },
            rename("b", "b@x.org", "a@x.org"),
            rename("a", "a@x.org", "a.lee@x.org"),
        ];
        let staged = order(ops, "r1");
        assert_eq!(shape(&staged), vec![vec![s("a", "a.lee@x.org")], vec![s("b", "a@x.org")], vec![s("n", "B@x.org")]]);
    }

    #[test]
    fn a_swap_goes_through_a_temporary_email() {
        let ops = vec![rename("a", "a@x.org", "b@x.org"), rename("b", "b@x.org", "a@x.org"), rename("c", "c@x.org", "c2@x.org")];
        let staged = order(ops, "r1");
        assert_eq!(staged.temporary, HashSet::from(["a".to_string()]));
        assert_eq!(
            shape(&staged),
            vec![vec![s("a", "b+rostersync-r1@x.org"), s("c", "c2@x.org")], vec![s("b", "a@x.org")], vec![s("a", "b@x.org")],]
        );
        // The temporary rename's diff is against the previous content: it frees a's login.
        let Op::Update { previous: Some(p), .. } = &staged.stages[0][0] else { panic!() };
        assert_eq!(p.email(), Some("a@x.org"));
    }

    #[test]
    fn a_three_way_rotation_takes_one_temporary_email() {
        let ops = vec![rename("a", "a@x.org", "b@x.org"), rename("b", "b@x.org", "c@x.org"), rename("c", "c@x.org", "a@x.org")];
        let staged = order(ops, "t");
        assert_eq!(staged.temporary.len(), 1);
        let stages = shape(&staged);
        assert_eq!(stages.len(), 4, "{stages:?}");
        assert_eq!(stages[0], vec![s("a", "b+rostersync-t@x.org")]);
        assert_eq!(stages[1], vec![s("c", "a@x.org")]);
        assert_eq!(stages[2], vec![s("b", "c@x.org")]);
        assert_eq!(stages[3], vec![s("a", "b@x.org")]);
    }

    #[test]
    fn logins_compare_without_case() {
        let ops = vec![rename("b", "B@X.org", "A@x.org"), rename("a", "a@x.org ", "a2@x.org")];
        let staged = order(ops, "r");
        assert_eq!(shape(&staged), vec![vec![s("a", "a2@x.org")], vec![s("b", "A@x.org")]]);
    }
}
