//! The platform's user model and the facts about one export file, shared by every stage.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One person as the platform should hold them, after mapping and validation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Value of the field named by the mapping's `unique_id`; the key of the snapshot.
    pub external_id: String,
    pub email: Option<String>,
    pub employee_id: Option<String>,
    pub first_name: String,
    pub last_name: String,
    /// ISO 639-1 code, lowercase.
    pub language: String,
    pub active: bool,
    /// Everything from `[attributes]`, by platform attribute name. Sorted so the content
    /// hash does not depend on the mapping file's order.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
}

impl User {
    /// The SCIM `userName`: the email, or the employee id where there is no email.
    pub fn user_name(&self) -> &str {
        self.email
            .as_deref()
            .or(self.employee_id.as_deref())
            .unwrap_or(&self.external_id)
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
        for (k, v) in &self.attributes {
            h.update(k.as_bytes());
            h.update([0x1d]);
            h.update(v.as_bytes());
            h.update([0x1e]);
        }
        let full = h.finalize();
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        out
    }
}

/// A mapped user with the place it came from, for reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcedUser {
    pub user: User,
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
