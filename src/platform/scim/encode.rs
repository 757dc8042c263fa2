//! User ↔ SCIM JSON (RFC 7643): the resource for POST/PUT and the PatchOp for updates.
//! The mapping is docs/design.md's "Platform: SCIM 2.0" section.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::model::User;

pub const CORE: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const BULK_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";

/// Whether a mapped attribute (or `employee_id`, `manager_id`) lands in the enterprise
/// extension: what a server without it does not get.
pub fn is_enterprise(attribute: &str) -> bool {
    matches!(attribute, "employee_id" | crate::model::MANAGER_ATTRIBUTE) || ENTERPRISE_ATTRS.iter().any(|(a, _)| *a == attribute)
}

/// Mapped attribute name → enterprise extension attribute.
const ENTERPRISE_ATTRS: &[(&str, &str)] = &[
    ("department", "department"),
    ("cost_center", "costCenter"),
    ("costCenter", "costCenter"),
    ("division", "division"),
    ("organization", "organization"),
];

/// Whether a mapped attribute goes under the custom schema (it is neither core `title`, an
/// enterprise attribute, the employee number nor the manager): those are what a platform
/// without that schema drops.
pub fn is_custom(attribute: &str) -> bool {
    attribute != "title"
        && attribute != "employee_id"
        && attribute != crate::model::MANAGER_ATTRIBUTE
        && !ENTERPRISE_ATTRS.iter().any(|(a, _)| *a == attribute)
}

/// Attributes we own on the platform and must remove when the export no longer has them.
const CLEARABLE: &[&str] = &["title"];

/// The emails rostersync owns: the one of type "work" (a person's one email). Others the
/// platform holds (home, other, an admin's second address) are not ours and are kept, so
/// writes address ours by this filter (RFC 7644 §3.5.2 valuePath), never the whole list.
pub const WORK_EMAILS: &str = "emails[type eq \"work\"]";

#[derive(Debug, Clone)]
pub struct Encoder {
    pub custom_schema: String,
    /// False when the server's /ResourceTypes/User does not list the custom schema: then
    /// custom attributes are not sent (each user would get a 400 otherwise).
    pub custom_offered: bool,
    /// False when the server's /ResourceTypes/User lists its extensions without the
    /// enterprise one: then nothing of it is sent (employeeNumber, department, manager …),
    /// nor removed (each create would be refused otherwise).
    pub enterprise_offered: bool,
    /// What the server's `/Schemas` defines, when it serves it: a mapped attribute its
    /// schema does not define is not sent (`defines`).
    pub defined: Option<std::sync::Arc<super::discovery::Defined>>,
}

/// One user's attributes as (PATCH path, value), in a stable order.
type Fields = BTreeMap<String, Value>;

/// One attribute's value as sent, borrowed from the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Field<'a> {
    Str(&'a str),
    Bool(bool),
    /// The person's one email: `[{"value": …, "type": "work", "primary": true}]`.
    WorkEmail(&'a str),
    /// A reference to another resource (the manager): `{"value": platform id}`.
    Reference(&'a str),
}

impl Field<'_> {
    fn to_value(self) -> Value {
        match self {
            Field::Str(s) => json!(s),
            Field::Bool(b) => json!(b),
            Field::WorkEmail(e) => json!([{"value": e, "type": "work", "primary": true}]),
            Field::Reference(id) => json!({ "value": id }),
        }
    }
}

impl Encoder {
    /// Whether the server's `/Schemas` defines attribute `attr` of schema `urn`: yes when it
    /// serves no `/Schemas`, or does not describe that schema (whether it is offered at all
    /// is `/ResourceTypes/User`'s to say).
    fn defines(&self, urn: &str, attr: &str) -> bool {
        let Some(d) = &self.defined else { return true };
        d.get(urn).is_none_or(|attrs| attrs.contains(&attr.to_lowercase()))
    }

    /// Where a mapped attribute (of `[attributes]`, or `employee_id`) goes: (schema URN,
    /// attribute name).
    fn place<'a>(&'a self, attribute: &'a str) -> (&'a str, &'a str) {
        match attribute {
            "title" => (CORE, "title"),
            "employee_id" => (ENTERPRISE, "employeeNumber"),
            crate::model::MANAGER_ATTRIBUTE => (ENTERPRISE, "manager"),
            a => match ENTERPRISE_ATTRS.iter().find(|(m, _)| *m == a) {
                Some((_, scim)) => (ENTERPRISE, scim),
                None => (self.custom_schema.as_str(), a),
            },
        }
    }

    /// Whether a mapped attribute is left out because the server's `/Schemas` does not
    /// define it, in a schema the server offers (one not offered is said elsewhere).
    pub fn undefined(&self, attribute: &str) -> bool {
        let (urn, attr) = self.place(attribute);
        let offered = match urn {
            ENTERPRISE => self.enterprise_offered,
            CORE => true,
            _ => self.custom_offered,
        };
        offered && !self.defines(urn, attr)
    }

    /// Where an attribute goes: a core attribute, an extension attribute, or nowhere.
    /// `manager` is the manager's platform id, resolved by the caller from `User::manager`.
    fn fields(&self, user: &User, manager: Option<&str>) -> Fields {
        let mut f = Fields::new();
        self.each_field(user, manager, |container, attr, v| {
            let path = match container {
                Some(urn) => format!("{urn}:{attr}"),
                None => attr.to_string(),
            };
            f.insert(path, v.to_value());
        });
        f
    }

    /// Each attribute of `user` as the platform gets it: (extension URN or None for core,
    /// attribute path — "name.givenName" nests —, value), borrowed. What `fields` and the
    /// request writer (`super::wire`) share, so the two cannot place an attribute apart.
    pub(super) fn each_field<'a>(
        &'a self,
        user: &'a User,
        manager: Option<&'a str>,
        mut f: impl FnMut(Option<&'a str>, &'a str, Field<'a>),
    ) {
        f(None, "externalId", Field::Str(&user.external_id));
        f(None, "userName", Field::Str(user.user_name()));
        f(None, "name.givenName", Field::Str(user.first_name()));
        f(None, "name.familyName", Field::Str(user.last_name()));
        if let Some(email) = &user.email() {
            f(None, "emails", Field::WorkEmail(email));
        }
        f(None, "preferredLanguage", Field::Str(user.language()));
        f(None, "active", Field::Bool(user.active));
        if let Some(n) = user.employee_id().as_ref().filter(|_| self.enterprise_offered && !self.undefined("employee_id")) {
            f(Some(ENTERPRISE), "employeeNumber", Field::Str(n));
        }
        if let Some(m) = manager.filter(|_| self.enterprise_offered && !self.undefined(crate::model::MANAGER_ATTRIBUTE)) {
            f(Some(ENTERPRISE), "manager", Field::Reference(m));
        }
        for (k, v) in user.attributes().iter().filter(|(k, _)| !self.undefined(k)) {
            if k == "title" {
                f(None, "title", Field::Str(v));
            } else if let Some((_, scim)) = ENTERPRISE_ATTRS.iter().find(|(a, _)| *a == k) {
                if self.enterprise_offered {
                    f(Some(ENTERPRISE), scim, Field::Str(v));
                }
            } else if !is_custom(k) {
                // employee_id is already employeeNumber.
            } else if self.custom_offered {
                f(Some(self.custom_schema.as_str()), k, Field::Str(v));
            }
        }
    }

    /// Nests flattened fields into a resource body (without `schemas`).
    fn nest(&self, fields: &Fields) -> Map<String, Value> {
        let mut out = Map::new();
        for (path, v) in fields {
            let (container, attr) = self.split(path);
            let target = match container {
                Some(urn) => out.entry(urn.to_string()).or_insert_with(|| json!({})).as_object_mut().expect("object"),
                None => &mut out,
            };
            match attr.split_once('.') {
                Some((parent, sub)) => {
                    target.entry(parent.to_string()).or_insert_with(|| json!({}))[sub] = v.clone();
                }
                None => {
                    target.insert(attr.to_string(), v.clone());
                }
            }
        }
        out
    }

    /// Splits "urn:…:User:attr" into (Some(urn), attr); core paths into (None, path).
    fn split<'a>(&self, path: &'a str) -> (Option<&'a str>, &'a str) {
        for urn in [ENTERPRISE, self.custom_schema.as_str()] {
            if let Some(rest) = path.strip_prefix(urn).and_then(|r| r.strip_prefix(':')) {
                return (Some(&path[..urn.len()]), rest);
            }
        }
        (None, path)
    }

    /// The full resource for POST and PUT.
    pub fn resource(&self, user: &User, manager: Option<&str>) -> Value {
        let mut body = self.nest(&self.fields(user, manager));
        let mut schemas = vec![json!(CORE)];
        for urn in [ENTERPRISE, self.custom_schema.as_str()] {
            if body.contains_key(urn) {
                schemas.push(json!(urn));
            }
        }
        body.insert("schemas".into(), Value::Array(schemas));
        Value::Object(body)
    }

    /// The PatchOp that makes the platform hold `user`. With the previous content, only
    /// what changed (None when nothing did); without it (an adopted user, whose content we
    /// never saw), a replace of every mapped attribute plus removals of those we own and
    /// the export no longer has. A replace without a path merges, so attributes we do not
    /// map (phone numbers, groups…) are kept.
    pub fn patch(&self, user: &User, manager: Option<&str>, previous: Option<(&User, Option<&str>)>) -> Option<Value> {
        let new = self.fields(user, manager);
        let mut ops = Vec::new();
        match previous {
            Some((prev, prev_manager)) => {
                let old = self.fields(prev, prev_manager);
                for (path, v) in &new {
                    if old.get(path) != Some(v) {
                        ops.extend(changed(path, old.get(path), Some(v)));
                    }
                }
                for path in old.keys().filter(|p| !new.contains_key(*p)) {
                    ops.extend(changed(path, old.get(path), None));
                }
            }
            None => {
                // The other emails the account holds are not ours: ours are replaced by
                // filter, not the list (a server without such filters answers noTarget or
                // invalidPath, and the write becomes a read-merge-write).
                let mut rest = new.clone();
                let emails = rest.remove("emails");
                ops.push(json!({"op": "replace", "value": Value::Object(self.nest(&rest))}));
                // Ours: the work email, and a copy of the person's email an admin made
                // without a type (compared without case by the filter), so it is not doubled.
                let ours = match &user.email() {
                    Some(e) => format!("emails[type eq \"work\" or value eq {}]", json!(e)),
                    None => WORK_EMAILS.to_string(),
                };
                ops.push(json!({"op": "remove", "path": ours}));
                if let Some(e) = emails {
                    ops.push(json!({"op": "add", "path": "emails", "value": e}));
                }
                // Only what the server defines: removing an attribute it lacks is refused.
                let mut owned: Vec<String> = CLEARABLE.iter().filter(|a| self.defines(CORE, a)).map(|s| s.to_string()).collect();
                if self.enterprise_offered {
                    let scims = ENTERPRISE_ATTRS.iter().map(|(_, scim)| *scim).chain(["employeeNumber", "manager"]);
                    owned.extend(scims.filter(|a| self.defines(ENTERPRISE, a)).map(|a| format!("{ENTERPRISE}:{a}")));
                }
                owned.dedup();
                for path in owned.into_iter().filter(|p| !new.contains_key(p)) {
                    ops.push(json!({"op": "remove", "path": path}));
                }
            }
        }
        (!ops.is_empty()).then(|| json!({"schemas": [PATCH_OP], "Operations": ops}))
    }

    /// Whether the platform's `held` resource differs from what we map for `user` (a hand
    /// edit to revert). Only attributes the server keeps count (`kept`: paths some listed
    /// account holds), so a server that drops `title` for everyone is not "edited" on every
    /// run. Strings compare without case (userName and emails are case-insensitive in
    /// SCIM); multi-valued ones by their `value`s. An owned attribute (`CLEARABLE`) we do
    /// not send but the platform holds counts too.
    pub fn drifted(&self, user: &User, manager: Option<&str>, held: &Value, kept: &std::collections::HashSet<String>) -> bool {
        let ours = self.fields(user, manager);
        for (path, v) in &ours {
            if !kept.contains(path) {
                continue;
            }
            if !same_value(v, self.at(held, path)) {
                return true;
            }
        }
        CLEARABLE.iter().any(|p| !ours.contains_key(*p) && self.at(held, p).is_some_and(|v| !v.is_null() && v != ""))
    }

    /// The value at a field path ("name.givenName", "urn:…:User:attr") of a resource.
    fn at<'v>(&self, held: &'v Value, path: &str) -> Option<&'v Value> {
        let (container, attr) = self.split(path);
        let c = match container {
            Some(urn) => held.get(urn)?,
            None => held,
        };
        match attr.split_once('.') {
            Some((parent, sub)) => c.get(parent)?.get(sub),
            None => c.get(attr),
        }
    }

    /// The field paths a resource holds (the kind `fields` writes), for `drifted`'s `kept`.
    pub fn held_paths(&self, held: &Value, out: &mut std::collections::HashSet<String>) {
        let Some(top) = held.as_object() else { return };
        for (k, v) in top {
            match v {
                Value::Object(inner) if k.starts_with("urn:") => out.extend(inner.keys().map(|a| format!("{k}:{a}"))),
                Value::Object(inner) => out.extend(inner.keys().map(|a| format!("{k}.{a}"))),
                Value::Null => {}
                _ => {
                    out.insert(k.clone());
                }
            }
        }
    }

    pub fn deactivate() -> Value {
        json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "active", "value": false}]})
    }
}

/// The PatchOp operations that take attribute `path` from `old` to `new` (its value in
/// `fields`). Emails address only ours (`WORK_EMAILS`): another email of the account stays.
fn changed(path: &str, old: Option<&Value>, new: Option<&Value>) -> Vec<Value> {
    match (path, old, new) {
        ("emails", Some(_), Some(v)) => match v.get(0).and_then(|e| e.get("value")) {
            Some(value) => vec![json!({"op": "replace", "path": format!("{WORK_EMAILS}.value"), "value": value})],
            None => vec![json!({"op": "remove", "path": WORK_EMAILS}), json!({"op": "add", "path": "emails", "value": v})],
        },
        ("emails", None, Some(v)) => vec![json!({"op": "add", "path": "emails", "value": v})],
        ("emails", _, None) => vec![json!({"op": "remove", "path": WORK_EMAILS})],
        (_, _, Some(v)) => vec![json!({"op": "replace", "path": path, "value": v})],
        (_, _, None) => vec![json!({"op": "remove", "path": path})],
    }
}

/// Whether the platform holds `ours`: strings without case, objects by our keys, lists by
/// the `value`s of their elements (a server may drop `type` or `primary`).
fn same_value(ours: &Value, theirs: Option<&Value>) -> bool {
    let Some(theirs) = theirs else { return false };
    match (ours, theirs) {
        (Value::String(a), Value::String(b)) => a == b || a.to_lowercase() == b.to_lowercase(),
        (Value::Object(a), Value::Object(_)) => a.iter().all(|(k, v)| same_value(v, theirs.get(k))),
        (Value::Array(a), Value::Array(b)) => {
            let value = |v: &Value| v.get("value").cloned().unwrap_or_else(|| v.clone());
            a.iter().all(|x| b.iter().any(|y| same_value(&value(x), Some(&value(y)))))
        }
        (a, b) => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::UserFields;

    const CUSTOM: &str = "urn:ietf:params:scim:schemas:extension:rostersync:2.0:User";

    fn enc() -> Encoder {
        Encoder { custom_schema: CUSTOM.into(), custom_offered: true, enterprise_offered: true, defined: None }
    }

    fn user() -> User {
        User::from(UserFields {
            external_id: "E1".into(),
            email: Some("ada@example.com".into()),
            employee_id: Some("E1".into()),
            first_name: "Ada".into(),
            last_name: "Lovelace".into(),
            language: "en".into(),
            active: true,
            manager: Some("E0".into()),
            attributes: [("title", "Engineer"), ("cost_center", "CC1"), ("hire_date", "2020-01-02")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        })
    }

    #[test]
    fn resource_follows_the_design_mapping() {
        let r = enc().resource(&user(), Some("m-1"));
        assert_eq!(
            r,
            json!({
                "schemas": [CORE, ENTERPRISE, CUSTOM],
                "externalId": "E1", "userName": "ada@example.com",
                "name": {"givenName": "Ada", "familyName": "Lovelace"},
                "emails": [{"value": "ada@example.com", "type": "work", "primary": true}],
                "preferredLanguage": "en", "active": true, "title": "Engineer",
                ENTERPRISE: {"employeeNumber": "E1", "costCenter": "CC1", "manager": {"value": "m-1"}},
                CUSTOM: {"hire_date": "2020-01-02"}
            })
        );
    }

    #[test]
    fn only_attributes_outside_core_and_enterprise_are_custom() {
        assert!(is_custom("badge_colour") && is_custom("location"));
        assert!(!is_custom("title") && !is_custom("department") && !is_custom("cost_center") && !is_custom("employee_id"));
        assert!(!is_custom(crate::model::MANAGER_ATTRIBUTE));
    }

    #[test]
    fn custom_attributes_dropped_when_the_server_lacks_the_schema() {
        let e = Encoder { custom_schema: CUSTOM.into(), custom_offered: false, enterprise_offered: true, defined: None };
        let r = e.resource(&user(), None);
        assert!(r.get(CUSTOM).is_none());
        assert_eq!(r["schemas"], json!([CORE, ENTERPRISE]));
    }

    #[test]
    fn attributes_the_schemas_do_not_define_are_not_sent() {
        let mut defined = super::super::discovery::Defined::new();
        defined.insert(CUSTOM.into(), ["location".to_string()].into());
        defined.insert(ENTERPRISE.into(), ["employeenumber", "manager", "department"].map(String::from).into());
        let e = Encoder { defined: Some(std::sync::Arc::new(defined)), ..enc() };
        let r = e.resource(&user(), Some("m-1"));
        assert_eq!(r[ENTERPRISE], json!({"employeeNumber": "E1", "manager": {"value": "m-1"}}), "costCenter is not defined");
        assert!(r.get(CUSTOM).is_none(), "hire_date is not defined: {r}");
        assert_eq!(r["title"], "Engineer", "core is not described here: sent");
        assert!(e.undefined("cost_center") && e.undefined("hire_date") && !e.undefined("location") && !e.undefined("title"));
        // An extension not offered is said elsewhere, not here.
        let not_offered = Encoder { enterprise_offered: false, ..e.clone() };
        assert!(!not_offered.undefined("cost_center"));
    }

    #[test]
    fn patch_sends_only_what_changed() {
        let old = user();
        let mut new = user();
        new.set_last_name("King");
        new.remove_attribute("title");
        new.set_attribute("division", "R&D");
        let p = enc().patch(&new, Some("m-1"), Some((&old, Some("m-1")))).unwrap();
        assert_eq!(
            p["Operations"],
            json!([
                {"op": "replace", "path": "name.familyName", "value": "King"},
                {"op": "replace", "path": format!("{ENTERPRISE}:division"), "value": "R&D"},
                {"op": "remove", "path": "title"},
            ])
        );
        assert_eq!(enc().patch(&old, Some("m-1"), Some((&old, Some("m-1")))), None);
    }

    #[test]
    fn drift_is_a_hand_edit_of_what_the_server_keeps() {
        let e = enc();
        let u = user();
        let mut held = e.resource(&u, Some("m-1"));
        held["id"] = json!("p-1");
        held["emails"] = json!([{"value": "ADA@example.com"}]);
        held["phoneNumbers"] = json!([{"value": "+1"}]);
        let mut kept = std::collections::HashSet::new();
        e.held_paths(&held, &mut kept);
        assert!(!e.drifted(&u, Some("m-1"), &held, &kept), "case and dropped sub-attributes are no edit");
        let mut edited = held.clone();
        edited["title"] = json!("CEO");
        assert!(e.drifted(&u, Some("m-1"), &edited, &kept));
        let mut other_manager = held.clone();
        other_manager[ENTERPRISE]["manager"]["value"] = json!("m-2");
        assert!(e.drifted(&u, Some("m-1"), &other_manager, &kept));
        // A server that keeps no title for anyone: not an edit.
        let mut dropped = held.clone();
        dropped.as_object_mut().unwrap().remove("title");
        let mut kept_b = std::collections::HashSet::new();
        e.held_paths(&dropped, &mut kept_b);
        assert!(!e.drifted(&u, Some("m-1"), &dropped, &kept_b));
        assert!(e.drifted(&u, Some("m-1"), &dropped, &kept), "another account keeps title: this one lost it");
        // A title set by hand on someone the export gives none.
        let mut plain = u.clone();
        plain.remove_attribute("title");
        assert!(e.drifted(&plain, Some("m-1"), &held, &kept));
    }

    #[test]
    fn patch_without_previous_replaces_and_clears_owned_attributes() {
        let mut u = user();
        u.set_attributes(&Default::default());
        let p = enc().patch(&u, None, None).unwrap();
        let ops = p["Operations"].as_array().unwrap();
        assert_eq!(ops[0]["op"], "replace");
        assert_eq!(ops[0]["value"]["name"]["familyName"], "Lovelace");
        assert!(ops[0]["value"].get("emails").is_none(), "the list is not replaced: other emails are kept");
        let removed: Vec<&str> = ops[1..].iter().filter(|o| o["op"] == "remove").map(|o| o["path"].as_str().unwrap()).collect();
        assert!(removed.contains(&"title"));
        assert!(removed.contains(&format!("{ENTERPRISE}:manager").as_str()));
        assert!(removed.contains(&r#"emails[type eq "work" or value eq "ada@example.com"]"#), "only ours: {removed:?}");
        let added: Vec<&Value> = ops.iter().filter(|o| o["op"] == "add").collect();
        assert_eq!(
            added,
            vec![&json!({"op": "add", "path": "emails", "value": [{"value": "ada@example.com", "type": "work", "primary": true}]})]
        );
    }

    #[test]
    fn an_email_change_addresses_the_work_email_only() {
        let old = user();
        let mut new = user();
        new.set_email(Some("ada.king@example.com"));
        let ops = |new: &User| enc().patch(new, Some("m-1"), Some((&old, Some("m-1")))).unwrap()["Operations"].clone();
        let changed = ops(&new);
        assert!(
            changed
                .as_array()
                .unwrap()
                .contains(&json!({"op": "replace", "path": format!("{WORK_EMAILS}.value"), "value": "ada.king@example.com"}))
        );
        assert!(!changed.as_array().unwrap().iter().any(|o| o["path"] == "emails" && o["op"] != "add"), "never the whole list: {changed}");
        new.set_email(None);
        assert!(ops(&new).as_array().unwrap().contains(&json!({"op": "remove", "path": WORK_EMAILS})));
    }
}
