//! User ↔ SCIM JSON (RFC 7643): the resource for POST/PUT and the PatchOp for updates.
//! The mapping is DESIGN.md's "Platform: SCIM 2.0" section.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::model::User;

pub const CORE: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const BULK_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";

/// Mapped attribute name → enterprise extension attribute.
const ENTERPRISE_ATTRS: &[(&str, &str)] = &[
    ("department", "department"),
    ("cost_center", "costCenter"),
    ("costCenter", "costCenter"),
    ("division", "division"),
    ("organization", "organization"),
];

/// Attributes we own on the platform and must remove when the export no longer has them.
const CLEARABLE: &[&str] = &["title"];

#[derive(Debug, Clone)]
pub struct Encoder {
    pub custom_schema: String,
    /// False when the server's /ResourceTypes/User does not list the custom schema: then
    /// custom attributes are not sent (each user would get a 400 otherwise).
    pub custom_offered: bool,
}

/// One user's attributes as (PATCH path, value), in a stable order.
type Fields = BTreeMap<String, Value>;

impl Encoder {
    /// Where an attribute goes: a core attribute, an extension attribute, or nowhere.
    /// `manager` is the manager's platform id, resolved by the caller from `User::manager`.
    fn fields(&self, user: &User, manager: Option<&str>) -> Fields {
        let mut f = Fields::new();
        f.insert("externalId".into(), json!(user.external_id));
        f.insert("userName".into(), json!(user.user_name()));
        f.insert("name.givenName".into(), json!(user.first_name));
        f.insert("name.familyName".into(), json!(user.last_name));
        if let Some(email) = &user.email {
            f.insert("emails".into(), json!([{"value": email, "type": "work", "primary": true}]));
        }
        f.insert("preferredLanguage".into(), json!(user.language));
        f.insert("active".into(), json!(user.active));
        if let Some(n) = &user.employee_id {
            f.insert(format!("{ENTERPRISE}:employeeNumber"), json!(n));
        }
        if let Some(m) = manager {
            f.insert(format!("{ENTERPRISE}:manager"), json!({ "value": m }));
        }
        for (k, v) in &user.attributes {
            if k == "title" {
                f.insert("title".into(), json!(v));
            } else if let Some((_, scim)) = ENTERPRISE_ATTRS.iter().find(|(a, _)| *a == k) {
                f.insert(format!("{ENTERPRISE}:{scim}"), json!(v));
            } else if k == "employee_id" {
                // Already employeeNumber.
            } else if self.custom_offered {
                f.insert(format!("{}:{k}", self.custom_schema), json!(v));
            }
        }
        f
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
                        ops.push(json!({"op": "replace", "path": path, "value": v}));
                    }
                }
                for path in old.keys().filter(|p| !new.contains_key(*p)) {
                    ops.push(json!({"op": "remove", "path": path}));
                }
            }
            None => {
                ops.push(json!({"op": "replace", "value": Value::Object(self.nest(&new))}));
                let mut owned: Vec<String> = CLEARABLE.iter().map(|s| s.to_string()).collect();
                owned.push("emails".into());
                for (_, scim) in ENTERPRISE_ATTRS {
                    owned.push(format!("{ENTERPRISE}:{scim}"));
                }
                owned.push(format!("{ENTERPRISE}:employeeNumber"));
                owned.push(format!("{ENTERPRISE}:manager"));
                owned.dedup();
                for path in owned.into_iter().filter(|p| !new.contains_key(p)) {
                    ops.push(json!({"op": "remove", "path": path}));
                }
            }
        }
        (!ops.is_empty()).then(|| json!({"schemas": [PATCH_OP], "Operations": ops}))
    }

    pub fn deactivate() -> Value {
        json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "active", "value": false}]})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CUSTOM: &str = "urn:ietf:params:scim:schemas:extension:rostersync:2.0:User";

    fn enc() -> Encoder {
        Encoder { custom_schema: CUSTOM.into(), custom_offered: true }
    }

    fn user() -> User {
        User {
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
        }
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
    fn custom_attributes_dropped_when_the_server_lacks_the_schema() {
        let e = Encoder { custom_schema: CUSTOM.into(), custom_offered: false };
        let r = e.resource(&user(), None);
        assert!(r.get(CUSTOM).is_none());
        assert_eq!(r["schemas"], json!([CORE, ENTERPRISE]));
    }

    #[test]
    fn patch_sends_only_what_changed() {
        let old = user();
        let mut new = user();
        new.last_name = "King".into();
        new.attributes.remove("title");
        new.attributes.insert("division", "R&D");
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
    fn patch_without_previous_replaces_and_clears_owned_attributes() {
        let mut u = user();
        u.attributes.clear();
        let p = enc().patch(&u, None, None).unwrap();
        let ops = p["Operations"].as_array().unwrap();
        assert_eq!(ops[0]["op"], "replace");
        assert_eq!(ops[0]["value"]["name"]["familyName"], "Lovelace");
        let removed: Vec<&str> = ops[1..].iter().map(|o| o["path"].as_str().unwrap()).collect();
        assert!(removed.contains(&"title"));
        assert!(removed.contains(&format!("{ENTERPRISE}:manager").as_str()));
        assert!(!removed.contains(&"emails"));
    }
}
