//! What went wrong, as the engineer reads it: SCIM error bodies (RFC 7644 §3.12) and
//! transport errors turned into one-line messages.

use serde::Deserialize;

/// A SCIM error body. Every field is optional: a proxy's HTML page or an empty body is an
/// error without detail, not an unreadable answer.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ScimError {
    #[serde(default)]
    scim_type: Option<String>,
    #[serde(default)]
    detail: Option<String>,
}

impl ScimError {
    /// The error in `body`, or an empty one when the body is not a SCIM error.
    pub(super) fn read(body: &[u8]) -> ScimError {
        serde_json::from_slice(body).unwrap_or_default()
    }

    /// The error in a JSON value already read (a /Bulk operation's `response`).
    pub(super) fn of(value: Option<&serde_json::Value>) -> ScimError {
        value.and_then(|v| ScimError::deserialize(v).ok()).unwrap_or_default()
    }

    /// The SCIM error type (RFC 7644 §3.12: invalidPath, noTarget, uniqueness…), a code
    /// from a fixed list that callers may decide on.
    pub(super) fn scim_type(&self) -> Option<&str> {
        self.scim_type.as_deref()
    }

    /// "HTTP 400 invalidValue: detail", every secret we know masked: servers echo
    /// requests (their Authorization header, a form body) in their error details.
    pub(super) fn message(&self, status: u16) -> String {
        crate::redact::redacted(self.raw_message(status))
    }

    fn raw_message(&self, status: u16) -> String {
        let mut s = format!("HTTP {status}");
        if let Some(t) = &self.scim_type {
            s.push(' ');
            s.push_str(t);
        }
        if let Some(d) = &self.detail {
            s.push_str(": ");
            s.push_str(d);
        }
        s
    }
}

/// The error chain of a transport error, for messages (reqwest's top line alone is often
/// just "error sending request").
pub(crate) fn transport_detail(e: &reqwest::Error) -> String {
    let mut s = if e.is_timeout() { "timed out".to_string() } else { e.to_string() };
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    // reqwest names the URL, which may carry a secret (a webhook's token path).
    crate::redact::redacted(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_from_bodies_good_and_bad() {
        let body =
            br#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"status":"400","scimType":"invalidValue","detail":"bad date"}"#;
        assert_eq!(ScimError::read(body).message(400), "HTTP 400 invalidValue: bad date");
        assert_eq!(ScimError::read(b"<html>Bad Gateway</html>").message(502), "HTTP 502");
        assert_eq!(ScimError::read(br#"{"detail": 5}"#).message(500), "HTTP 500");
        assert_eq!(ScimError::of(Some(&serde_json::json!({"detail": "gone"}))).message(404), "HTTP 404: gone");
    }
}
