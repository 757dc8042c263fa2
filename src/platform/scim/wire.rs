//! The resource of a create written straight to bytes, for POST and /Bulk.
//!
//! Why not `Encoder::resource` and `serde_json`: a `Value` tree per user (a map node and an
//! owned key per attribute), serialised, then dropped, was a third of the client's CPU in a
//! 1M first sync (BENCHMARKS.md, issue 29). Here a user is one pass over borrowed fields
//! (`Encoder::each_field`, the placement `resource` uses too) into the request's buffer.
//! The bytes are the ones `resource` serialises to — keys sorted at every level, as
//! serde_json's map writes them —, which the tests check on every shape of user.

use serde::Serialize;

use super::encode::{CORE, ENTERPRISE, Encoder, Field};
use crate::model::User;

/// Where a value goes in the resource: up to three nested keys (extension URN, parent,
/// attribute), `len` of them used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Path<'a> {
    keys: [&'a str; 3],
    len: usize,
}

impl<'a> Path<'a> {
    fn of(container: Option<&'a str>, attr: &'a str) -> Path<'a> {
        let mut keys = [""; 3];
        let mut len = 0;
        if let Some(urn) = container {
            keys[0] = urn;
            len = 1;
        }
        match attr.split_once('.') {
            Some((parent, sub)) => {
                keys[len] = parent;
                keys[len + 1] = sub;
                len += 2;
            }
            None => {
                keys[len] = attr;
                len += 1;
            }
        }
        Path { keys, len }
    }

    fn keys(&self) -> &[&'a str] {
        &self.keys[..self.len]
    }
}

/// A value of the resource: an attribute, or the `schemas` list.
#[derive(Debug, Clone, Copy)]
enum Leaf<'a> {
    Field(Field<'a>),
    Schemas { enterprise: bool, custom: Option<&'a str> },
}

impl Encoder {
    /// Appends the JSON of `user`'s full resource (for POST and PUT) to `out`: the bytes
    /// `serde_json::to_vec(&self.resource(user, manager))` gives.
    pub fn write_resource(&self, user: &User, manager: Option<&str>, out: &mut Vec<u8>) {
        let mut leaves: Vec<(Path<'_>, Leaf<'_>)> = Vec::with_capacity(16);
        self.each_field(user, manager, |container, attr, v| leaves.push((Path::of(container, attr), Leaf::Field(v))));
        let holds = |urn: &str| leaves.iter().any(|(p, _)| p.len > 1 && p.keys[0] == urn);
        let enterprise = holds(ENTERPRISE);
        let custom = holds(&self.custom_schema).then_some(self.custom_schema.as_str());
        leaves.push((Path::of(None, "schemas"), Leaf::Schemas { enterprise, custom }));
        // Sorted as a map sorts its keys, level by level; stable, so of one path written
        // twice (two mapped names of one attribute) the later wins, as a map insert does.
        leaves.sort_by(|a, b| a.0.keys().cmp(b.0.keys()));
        write_nested(out, &leaves);
    }
}

/// The leaves, sorted by path, as nested JSON objects.
fn write_nested(out: &mut Vec<u8>, leaves: &[(Path<'_>, Leaf<'_>)]) {
    // The objects open below the root, and per level (root first) whether a member was
    // written yet (a comma before the next).
    let mut open: Vec<&str> = Vec::with_capacity(2);
    let mut wrote = vec![false];
    out.push(b'{');
    for (i, (path, leaf)) in leaves.iter().enumerate() {
        if leaves.get(i + 1).is_some_and(|(next, _)| next == path) {
            continue;
        }
        let (name, parents) = path.keys().split_last().expect("a path has a key");
        let common = open.iter().zip(parents).take_while(|(a, b)| a == b).count();
        while open.len() > common {
            open.pop();
            wrote.pop();
            out.push(b'}');
        }
        for parent in &parents[common..] {
            member(out, &mut wrote, parent);
            out.push(b'{');
            open.push(parent);
            wrote.push(false);
        }
        member(out, &mut wrote, name);
        write_leaf(out, *leaf);
    }
    for _ in open {
        out.push(b'}');
    }
    out.push(b'}');
}

/// `"name":`, after a comma unless it is its object's first member.
fn member(out: &mut Vec<u8>, wrote: &mut [bool], name: &str) {
    let level = wrote.last_mut().expect("the root is open");
    if *level {
        out.push(b',');
    }
    *level = true;
    string(out, name);
    out.push(b':');
}

fn write_leaf(out: &mut Vec<u8>, leaf: Leaf<'_>) {
    match leaf {
        Leaf::Field(Field::Str(s)) => string(out, s),
        Leaf::Field(Field::Bool(b)) => out.extend_from_slice(if b { b"true" } else { b"false" }),
        Leaf::Field(Field::WorkEmail(e)) => {
            out.extend_from_slice(br#"[{"primary":true,"type":"work","value":"#);
            string(out, e);
            out.extend_from_slice(b"}]");
        }
        Leaf::Field(Field::Reference(id)) => {
            out.extend_from_slice(br#"{"value":"#);
            string(out, id);
            out.push(b'}');
        }
        Leaf::Schemas { enterprise, custom } => {
            out.push(b'[');
            string(out, CORE);
            for urn in enterprise.then_some(ENTERPRISE).into_iter().chain(custom) {
                out.push(b',');
                string(out, urn);
            }
            out.push(b']');
        }
    }
}

/// A JSON string, escaped as serde_json escapes it.
pub(super) fn string(out: &mut Vec<u8>, s: &str) {
    // Serialising a `str` into a `Vec` has no way to fail (no I/O, no map key rules).
    let _ = s.serialize(&mut serde_json::Serializer::new(out));
}

#[cfg(test)]
mod tests {
    use crate::model::UserFields;
    use std::sync::Arc;

    use super::*;
    use crate::platform::scim::discovery::Defined;

    const CUSTOM: &str = "urn:ietf:params:scim:schemas:extension:rostersync:2.0:User";

    fn encoders() -> Vec<Encoder> {
        let full = Encoder { custom_schema: CUSTOM.into(), custom_offered: true, enterprise_offered: true, defined: None };
        let mut defined = Defined::new();
        defined.insert(CUSTOM.into(), ["location".to_string()].into());
        defined.insert(ENTERPRISE.into(), ["employeenumber", "department"].map(String::from).into());
        vec![
            full.clone(),
            Encoder { custom_offered: false, ..full.clone() },
            Encoder { enterprise_offered: false, ..full.clone() },
            Encoder { custom_offered: false, enterprise_offered: false, ..full.clone() },
            Encoder { defined: Some(Arc::new(defined)), ..full.clone() },
            // A custom schema that sorts before the core attributes, and one after "userName".
            Encoder { custom_schema: "Acme:User".into(), ..full.clone() },
            Encoder { custom_schema: "zz:custom".into(), ..full },
        ]
    }

    fn users() -> Vec<User> {
        let base = User::from(UserFields {
            external_id: "E1".into(),
            email: Some("ada@example.com".into()),
            employee_id: Some("E1".into()),
            first_name: "Ada".into(),
            last_name: "Lovelace".into(),
            language: "en".into(),
            active: true,
            manager: Some("E0".into()),
            attributes: [("title", "Engineer"), ("cost_center", "CC1"), ("hire_date", "2020-01-02")].into(),
        });
        let bare = User::from(UserFields {
            email: None,
            employee_id: None,
            manager: None,
            active: false,
            attributes: Default::default(),
            first_name: "Zoë \"Zed\" \\ O'Brien\n\u{1}".into(),
            ..base.clone().fields()
        });
        let every = User::from(UserFields {
            attributes: [
                ("title", "Lead"),
                ("department", "R&D"),
                ("cost_center", "CC1"),
                ("costCenter", "CC2"),
                ("division", "North"),
                ("organization", "Acme"),
                ("employee_id", "ignored"),
                ("location", "Paris ✓"),
                ("badge.colour", "red"),
                ("Zeta", "z"),
                ("", "empty name"),
            ]
            .into(),
            ..base.clone().fields()
        });
        vec![base, bare, every]
    }

    /// The bytes are the ones the `Value` resource serialises to, for every encoder and
    /// every user shape, with and without a manager.
    #[test]
    fn writes_what_the_value_resource_serialises_to() {
        for e in encoders() {
            for u in users() {
                for manager in [None, Some("m-1"), Some("ünï\"code")] {
                    let mut out = b"prefix".to_vec();
                    e.write_resource(&u, manager, &mut out);
                    let want = serde_json::to_string(&e.resource(&u, manager)).unwrap();
                    assert_eq!(std::str::from_utf8(&out[6..]).unwrap(), want, "encoder {} {:?}, user {u:?}", e.custom_schema, e.defined);
                }
            }
        }
    }
}
