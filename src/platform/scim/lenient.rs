//! Numbers as real servers send them: RFC 7644 writes a bulk operation's `status` as a
//! string ("201"), many servers as a number, and some token endpoints send `expires_in` as
//! a string too. Anything else reads as absent, so one odd field never makes a whole answer
//! unreadable; each caller says what an absent value means.
//!
//! Why not serde_with's `PickFirst<(_, DisplayFromStr)>`: it fails on a value of a third
//! kind (an object, a boolean) where we want "absent", and two fields do not justify a
//! dependency with its own proc-macro crate.

use serde::{Deserialize, Deserializer};

/// A non-negative integer given as a number or a numeric string.
pub(super) fn number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Number(u64),
        Text(String),
        Other(serde::de::IgnoredAny),
    }
    Ok(match Repr::deserialize(d)? {
        Repr::Number(n) => Some(n),
        Repr::Text(s) => s.trim().parse().ok(),
        Repr::Other(_) => None,
    })
}

/// An HTTP status given as a number or a numeric string.
pub(super) fn status<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    Ok(number(d)?.and_then(|n| u16::try_from(n).ok()))
}

/// The values of a multi-valued `emails` (RFC 7643 §4.1.2): objects with a `value`, as
/// every server sends them; a bare string is read too, anything else skipped, so one odd
/// entry never hides the others (matching looks at every email an account has).
pub(super) fn emails<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    Ok(email_values(&v))
}

/// `emails` of a resource read as JSON: the same reading as `emails`.
pub(super) fn email_values(v: &serde_json::Value) -> Vec<String> {
    let Some(items) = v.as_array() else { return Vec::new() };
    items
        .iter()
        .filter_map(|e| match e {
            serde_json::Value::String(s) => Some(s.clone()),
            e => e.get("value").and_then(serde_json::Value::as_str).map(str::to_string),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_of_every_shape() {
        let v = serde_json::json!([{"value": "a@x.org", "type": "work"}, "b@x.org", {"type": "home"}, 5, {"value": "c@x.org"}]);
        assert_eq!(email_values(&v), vec!["a@x.org", "b@x.org", "c@x.org"]);
        assert!(email_values(&serde_json::json!({"value": "a@x.org"})).is_empty(), "not a list: none");
        assert!(email_values(&serde_json::Value::Null).is_empty());
    }

    #[derive(Deserialize)]
    struct WithStatus {
        #[serde(default, deserialize_with = "status")]
        status: Option<u16>,
    }

    #[test]
    fn status_as_string_or_number_and_odd_values_as_absent() {
        let read = |j: &str| serde_json::from_str::<WithStatus>(j).unwrap().status;
        assert_eq!(read(r#"{"status": "201"}"#), Some(201));
        assert_eq!(read(r#"{"status": " 409 "}"#), Some(409));
        assert_eq!(read(r#"{"status": 400}"#), Some(400));
        assert_eq!(read(r#"{"status": true}"#), None);
        assert_eq!(read(r#"{"status": {"code": 200}}"#), None);
        assert_eq!(read(r#"{"status": 70000}"#), None);
        assert_eq!(read(r#"{"status": -1}"#), None);
        assert_eq!(read(r#"{}"#), None);
    }
}
