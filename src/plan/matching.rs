//! Whether a platform account is a person's: the one table every adoption goes by (a first
//! sync's or a recovery's listing, a create answered 409). Pure; table-tested below.
//!
//! Like the IdPs that do this well (Okta's exact and partial matches), an id alone never
//! binds an account: another deployment on the same platform, or an admin's test account,
//! may carry the same externalId. The rules, for person P and account A:
//!
//! | A's externalId | A's login (userName or any of emails[]) agrees with P's email or userName | verdict |
//! | --- | --- | --- |
//! | P's id (by the connector's `IdRule`) | yes | `Exact`: adopted |
//! | P's id | no | `Partial`: listed in the plan, adopted only with approval |
//! | none (absent or blank) | yes | `Exact`: a hand-made account, adopted |
//! | none | no | no match |
//! | another id, on an inactive account | yes | `Dormant`: a leaver's account the platform kept (a soft delete), reused |
//! | another id | yes | `Foreign`: someone else's, a conflict |
//! | another id | no | no match |
//!
//! `Dormant` is the platform's side of a re-hire: a platform that keeps an account inactive
//! after DELETE (or an account another tool deactivated) still holds the person's login, so
//! a create for them is answered 409 on every run. The login is theirs and nobody uses the
//! account: it is reused, reactivated and re-keyed, unless `rehire = "conflict"`, or it is
//! bound to another person (of this connector, or another's: the callers check).
//!
//! Logins compare trimmed and without case (`fold`): SCIM's userName and emails are
//! `caseExact: false`, but a server's filter may still compare them with case, so every
//! candidate the server hands back is judged here again, never trusted for its filter.

use std::collections::HashMap;

use super::{Existing, FastHash};
use crate::model::{IdRule, User};

/// How an account relates to a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The person's account: adopted.
    Exact,
    /// The person's id, but neither their email nor their userName: possibly another
    /// customer's person with the same id. Adopted only with approval.
    Partial,
    /// Another externalId on an *inactive* account with the person's login: a leaver's
    /// account the platform kept (soft delete). Reused, as a re-hire is.
    Dormant,
    /// Another externalId on an active account with the person's login: someone else's.
    Foreign,
}

/// A login as compared: trimmed, without case.
pub fn fold(s: &str) -> String {
    s.trim().to_lowercase()
}

/// The account's externalId, if it has one that is not blank.
fn external_id(a: &Existing) -> Option<&str> {
    a.external_id.as_deref().filter(|x| !x.trim().is_empty())
}

/// The logins of an account: its userName and every email, folded.
fn account_logins(a: &Existing) -> impl Iterator<Item = String> + '_ {
    a.user_name.iter().chain(&a.emails).map(|s| fold(s)).filter(|s| !s.is_empty())
}

/// The logins of a person: their email and their userName (which may be the employee id).
fn person_logins(u: &User) -> Vec<String> {
    let mut v: Vec<String> = u.email().iter().map(|e| fold(e)).chain([fold(u.user_name())]).filter(|s| !s.is_empty()).collect();
    v.dedup();
    v
}

/// Whether a login of `a` is one of `u`'s.
fn login_agrees(u: &User, a: &Existing) -> bool {
    let mine = person_logins(u);
    account_logins(a).any(|l| mine.contains(&l))
}

/// The verdict on account `a` for person `u`, or `None` when it is no candidate at all.
pub fn judge(u: &User, a: &Existing, rule: IdRule) -> Option<Verdict> {
    let agrees = login_agrees(u, a);
    match external_id(a) {
        Some(x) if rule.key(x) == rule.key(&u.external_id) => Some(if agrees { Verdict::Exact } else { Verdict::Partial }),
        Some(_) if a.active == Some(false) => agrees.then_some(Verdict::Dormant),
        Some(_) => agrees.then_some(Verdict::Foreign),
        None => agrees.then_some(Verdict::Exact),
    }
}

/// Of several candidates (a listing's, or a 409's lookups), the one that decides: an id
/// match first (exact or partial), then a free account with the person's login, then a
/// dormant one (reused), then a foreign one (a conflict). Candidates the rules do not match
/// are no answer.
pub fn best<'a>(u: &User, candidates: impl IntoIterator<Item = &'a Existing>, rule: IdRule) -> Option<(&'a Existing, Verdict)> {
    let judged = candidates.into_iter().filter_map(|a| judge(u, a, rule).map(|v| (a, v)));
    judged.min_by_key(|(a, v)| match v {
        Verdict::Exact | Verdict::Partial if external_id(a).is_some() => 0,
        Verdict::Exact | Verdict::Partial => 1,
        Verdict::Dormant => 2,
        Verdict::Foreign => 3,
    })
}

/// The accounts of a listing by externalId and by login, to judge each person's few
/// candidates rather than every account.
pub struct Index<'a> {
    by_ext: HashMap<std::borrow::Cow<'a, str>, Vec<&'a Existing>, FastHash>,
    by_login: HashMap<String, Vec<&'a Existing>, FastHash>,
    rule: IdRule,
}

impl<'a> Index<'a> {
    pub fn new(accounts: &'a [Existing], rule: IdRule) -> Index<'a> {
        let mut by_ext: HashMap<_, Vec<&Existing>, FastHash> = HashMap::default();
        let mut by_login: HashMap<String, Vec<&Existing>, FastHash> = HashMap::default();
        for a in accounts {
            if let Some(x) = external_id(a) {
                by_ext.entry(rule.key(x)).or_default().push(a);
            }
            let mut logins: Vec<String> = account_logins(a).collect();
            logins.sort_unstable();
            logins.dedup();
            for l in logins {
                by_login.entry(l).or_default().push(a);
            }
        }
        Index { by_ext, by_login, rule }
    }

    /// The account that decides for `u` (`best` of its candidates), if any.
    pub fn find(&self, u: &User) -> Option<(&'a Existing, Verdict)> {
        let by_id = self.by_ext.get(self.rule.key(&u.external_id).as_ref()).into_iter().flatten();
        let by_login = person_logins(u).into_iter().filter_map(|l| self.by_login.get(&l)).flatten();
        best(u, by_id.chain(by_login).copied(), self.rule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(id: &str, email: Option<&str>) -> User {
        let mut u = crate::model::fixtures::user(id, true, "");
        u.set_email(email);
        u.set_employee_id(None);
        u
    }

    fn account(pid: &str, ext: Option<&str>, user_name: &str, emails: &[&str]) -> Existing {
        Existing {
            platform_id: pid.into(),
            external_id: ext.map(Into::into),
            user_name: Some(user_name.into()),
            emails: emails.iter().map(|e| e.to_string()).collect(),
            active: Some(true),
        }
    }

    fn inactive(a: Existing) -> Existing {
        Existing { active: Some(false), ..a }
    }

    const INSENSITIVE: IdRule = IdRule { fold_case: true, upper: false };

    /// The whole table of the module's header, and the normalisations.
    #[test]
    fn the_table() {
        let p = person("E5", Some("ann@example.com"));
        let cases: &[(&str, Existing, Option<Verdict>)] = &[
            ("id and userName", account("a", Some("E5"), "ann@example.com", &[]), Some(Verdict::Exact)),
            ("id, other case and spaces", account("a", Some(" e5 "), " ANN@Example.COM ", &[]), Some(Verdict::Exact)),
            ("id and an email of emails[]", account("a", Some("E5"), "alee", &["home@x.org", "Ann@Example.com"]), Some(Verdict::Exact)),
            (
                "id only: another person's login",
                account("a", Some("E5"), "bob@other.example", &["bob@other.example"]),
                Some(Verdict::Partial),
            ),
            (
                "id only: no login at all",
                Existing { platform_id: "a".into(), external_id: Some("E5".into()), user_name: None, emails: vec![], active: None },
                Some(Verdict::Partial),
            ),
            ("no externalId, userName", account("a", None, "ANN@EXAMPLE.COM", &[]), Some(Verdict::Exact)),
            ("blank externalId, email in emails[]", account("a", Some("  "), "jdoe5", &["ann@example.com"]), Some(Verdict::Exact)),
            ("no externalId, other login", account("a", None, "bob@example.com", &["bob@example.com"]), None),
            ("another id with the login", account("a", Some("admin-7"), "ann@example.com", &[]), Some(Verdict::Foreign)),
            ("another id, other login", account("a", Some("E6"), "bob@example.com", &[]), None),
            ("another id with the login, inactive", inactive(account("a", Some("E1"), "ann@example.com", &[])), Some(Verdict::Dormant)),
            (
                "another id, active unknown",
                Existing { active: None, ..account("a", Some("E1"), "ann@example.com", &[]) },
                Some(Verdict::Foreign),
            ),
            ("another id, other login, inactive", inactive(account("a", Some("E6"), "bob@example.com", &[])), None),
            ("its own id, inactive", inactive(account("a", Some("E5"), "ann@example.com", &[])), Some(Verdict::Exact)),
        ];
        for (name, a, want) in cases {
            assert_eq!(judge(&p, a, INSENSITIVE), *want, "{name}");
        }
    }

    #[test]
    fn case_sensitive_ids_and_people_without_email() {
        let sensitive = IdRule { fold_case: false, upper: false };
        let p = person("E5", Some("ann@example.com"));
        assert_eq!(judge(&p, &account("a", Some("e5"), "ann@example.com", &[]), sensitive), Some(Verdict::Foreign));
        assert_eq!(judge(&p, &account("a", Some("e5"), "ann@example.com", &[]), INSENSITIVE), Some(Verdict::Exact));
        // No email: the userName is the id (or employee id), which the account carries.
        let p = person("E5", None);
        assert_eq!(judge(&p, &account("a", Some("E5"), "e5", &[]), INSENSITIVE), Some(Verdict::Exact));
        assert_eq!(judge(&p, &account("a", Some("E5"), "someone", &[]), INSENSITIVE), Some(Verdict::Partial));
    }

    #[test]
    fn an_id_match_decides_before_a_login_match_and_a_free_account_before_a_foreign_one() {
        let p = person("E5", Some("ann@example.com"));
        let accounts = vec![
            account("foreign", Some("X1"), "ann@example.com", &[]),
            account("free", None, "alee", &["ann@example.com"]),
            account("byid", Some("E5"), "bob@example.com", &[]),
            account("nobody", Some("E9"), "zed@example.com", &[]),
        ];
        let index = Index::new(&accounts, INSENSITIVE);
        let (a, v) = index.find(&p).unwrap();
        assert_eq!((a.platform_id.as_str(), v), ("byid", Verdict::Partial), "the id's account is the question, not a guess");
        let (a, v) = index.find(&person("E6", Some("ANN@example.com"))).unwrap();
        assert_eq!((a.platform_id.as_str(), v), ("free", Verdict::Exact));
        let only_foreign = &accounts[..1];
        let (a, v) = Index::new(only_foreign, INSENSITIVE).find(&p).unwrap();
        assert_eq!((a.platform_id.as_str(), v), ("foreign", Verdict::Foreign));
        assert!(index.find(&person("E7", Some("carl@example.com"))).is_none());
        assert_eq!(best(&p, &accounts, INSENSITIVE).map(|(a, _)| a.platform_id.as_str()), Some("byid"));
    }

    #[test]
    fn a_dormant_account_comes_after_a_free_one_and_before_a_foreign_one() {
        let p = person("E9", Some("ann@example.com"));
        let dormant = inactive(account("kept", Some("E1"), "ann@example.com", &[]));
        let (foreign, free) = (account("foreign", Some("X1"), "ann@example.com", &[]), account("free", None, "ann@example.com", &[]));
        let pick = |all: Vec<Existing>| best(&p, &all, INSENSITIVE).map(|(a, v)| (a.platform_id.clone(), v));
        assert_eq!(pick(vec![foreign.clone(), dormant.clone()]), Some(("kept".into(), Verdict::Dormant)));
        assert_eq!(pick(vec![dormant.clone(), free]), Some(("free".into(), Verdict::Exact)));
        assert_eq!(pick(vec![foreign]), Some(("foreign".into(), Verdict::Foreign)));
    }
}
