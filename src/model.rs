//! The platform's user model and the facts about one export file, shared by every stage.

mod attributes;

pub use attributes::Attributes;
pub use compact_str::CompactString as Str;
use serde::{Deserialize, Serialize};

/// One person as the platform should hold them, after mapping and validation.
///
/// Compact on purpose (BENCHMARKS.md, issue 8): a million of them are held at once. `Str`
/// keeps strings up to 24 bytes inline (ids, names, language codes: no allocation), and the
/// attributes are one packed block, so a typical user is three heap blocks, not fifteen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Value of the field named by the mapping's `unique_id`; the key of the snapshot.
    pub external_id: Str,
    pub email: Option<Str>,
    pub employee_id: Option<Str>,
    pub first_name: Str,
    pub last_name: Str,
    /// ISO 639-1 code, lowercase.
    pub language: Str,
    pub active: bool,
    /// Everything from `[attributes]`, by platform attribute name. Sorted so the content
    /// hash does not depend on the mapping file's order.
    #[serde(default, skip_serializing_if = "Attributes::is_empty")]
    pub attributes: Attributes,
}

impl User {
    /// The SCIM `userName`: the email, or the employee id where there is no email.
    pub fn user_name(&self) -> &str {
        self.email.as_deref().or(self.employee_id.as_deref()).unwrap_or(&self.external_id)
    }

    /// Hash of everything the platform holds for this user. Two users with the same hash
    /// need no write; the snapshot keeps only this (and the content for diffs).
    pub fn content_hash(&self) -> [u8; 16] {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        // Field separator \x1f and record end \x1e cannot appear in mapped values without
        // also changing the hash input, so distinct users never collide by concatenation.
        for part in [
            self.external_id.as_str(),
            self.email.as_deref().unwrap_or("\u{0}"),
            self.employee_id.as_deref().unwrap_or("\u{0}"),
            &self.first_name,
            &self.last_name,
            &self.language,
            if self.active { "1" } else { "0" },
        ] {
            h.update(part.as_bytes());
            h.update([0x1f]);
        }
        for (k, v) in self.attributes.raw_entries() {
            h.update(k);
            h.update([0x1d]);
            h.update(v);
            h.update([0x1e]);
        }
        let full = h.finalize();
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        out
    }
}

/// A mapped user with the place it came from, for reports.
///
/// Boxed: the user moves from the mapping's list into its plan operation without being
/// copied, so two lists of a million users never exist at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcedUser {
    pub user: Box<User>,
    /// CSV/JSON line, or sheet row, of the record (1-based).
    pub line: u64,
}

/// A problem with one row of the export. The row's person keeps their last synced state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowError {
    pub line: u64,
    /// The source column at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    pub message: String,
    /// The unique id of the row, when it could be read (so the plan can protect the person).
    #[serde(skip)]
    pub external_id: Option<String>,
}

/// Identity of an export file: the same fingerprint twice means "no new file".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileFingerprint {
    pub path: String,
    pub size: u64,
    /// RFC 3339, UTC.
    pub mtime: Option<String>,
    pub sha256: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The content hash is stored in every snapshot: it must not change with the in-memory
    /// layout, or every user would read as changed once after an upgrade. The expected value
    /// is SHA-256 of the documented byte layout, computed outside Rust (Python hashlib).
    #[test]
    fn content_hash_is_stable() {
        let u = User {
            external_id: "E1".into(),
            email: Some("ann@example.com".into()),
            employee_id: Some("E1".into()),
            first_name: "Ann".into(),
            last_name: "Lee".into(),
            language: "fr".into(),
            active: true,
            attributes: [("title", "Zoë"), ("department", "R&D")].into(),
        };
        assert_eq!(hex::encode(u.content_hash()), "aa7b2f6ee52ced0d8a43d1c1be702363");
    }

    /// A user with a manager: the value and stored content the code had while the manager
    /// was the attribute `manager_id` (computed on that code, and with Python hashlib).
    #[test]
    fn content_hash_and_stored_content_with_a_manager_are_unchanged() {
        let u = User {
            external_id: "E2".into(),
            email: Some("bob@example.com".into()),
            employee_id: Some("E2".into()),
            first_name: "Bob".into(),
            last_name: "Ray".into(),
            language: "en".into(),
            active: true,
            attributes: [("title", "Lead"), ("department", "R&D"), ("manager_id", "E1"), ("site", "Paris")].into(),
        };
        assert_eq!(hex::encode(u.content_hash()), "401e598352317e12b2cb224b9be45a45");
        let stored = r#"{"external_id":"E2","email":"bob@example.com","employee_id":"E2","first_name":"Bob","last_name":"Ray","language":"en","active":true,"attributes":{"department":"R&D","manager_id":"E1","site":"Paris","title":"Lead"}}"#;
        assert_eq!(serde_json::to_string(&u).unwrap(), stored);
        assert_eq!(serde_json::from_str::<User>(stored).unwrap(), u);
    }
}
