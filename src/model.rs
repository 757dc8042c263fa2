//! The platform's user model and the facts about one export file, shared by every stage.

mod attributes;
mod details;

pub use attributes::{Attributes, AttributesRef};
pub use compact_str::CompactString as Str;
use details::{Details, Field};
use serde::{Deserialize, Serialize};

/// The mapping file's name for the manager reference (`[attributes] manager_id = "…"`), and
/// the key it is stored and hashed under among the attributes: the state written before the
/// manager became `User::manager` reads the same.
pub const MANAGER_ATTRIBUTE: &str = "manager_id";

/// How two unique ids are told to be one person's: always trimmed, and compared without case
/// unless the mapping says `id_case = "sensitive"` (emails always without case). A person's
/// id keeps the form it was first synced with; a later file that writes it otherwise
/// ("E5 ", "e7", another capitalisation of an email) names the same person, never a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRule {
    pub fold_case: bool,
    /// Fold to upper case rather than lower: employee ids are mostly written in capitals
    /// ("E0000001"), emails in small letters, so either way the usual id is its own key and
    /// a million ids cost no million lowercase copies. The keys are never stored or sent.
    pub upper: bool,
}

impl Default for IdRule {
    fn default() -> Self {
        IdRule { fold_case: true, upper: false }
    }
}

impl IdRule {
    /// The form all spellings of one id share. Borrowed when the id is in it already.
    pub fn key<'a>(&self, id: &'a str) -> std::borrow::Cow<'a, str> {
        // An id that starts and ends with a printable ASCII byte has nothing to trim: no
        // Unicode whitespace test from both ends (ids are keyed several times a run).
        let t = match (id.as_bytes().first(), id.as_bytes().last()) {
            (Some(a), Some(b)) if a.is_ascii_graphic() && b.is_ascii_graphic() => id,
            _ => id.trim(),
        };
        if !self.fold_case {
            return std::borrow::Cow::Borrowed(t);
        }
        // Ids are nearly always ASCII: a byte test, not a Unicode property lookup per char
        // (a million ids are keyed several times a run).
        let needs = match (t.is_ascii(), self.upper) {
            (true, true) => t.bytes().any(|b| b.is_ascii_lowercase()),
            (true, false) => t.bytes().any(|b| b.is_ascii_uppercase()),
            (false, true) => t.chars().any(char::is_lowercase),
            (false, false) => t.chars().any(char::is_uppercase),
        };
        match (needs, self.upper) {
            (false, _) => std::borrow::Cow::Borrowed(t),
            (true, true) => std::borrow::Cow::Owned(t.to_uppercase()),
            (true, false) => std::borrow::Cow::Owned(t.to_lowercase()),
        }
    }
}

/// One person as the platform should hold them, after mapping and validation.
///
/// Compact on purpose (BENCHMARKS.md, issues 8 and 29): a million of them are held at once.
/// The unique id and the manager are `Str`s (up to 24 bytes inline: no allocation for the
/// usual id); the email, employee id, names, language and attributes are one packed block
/// (`details`), so a typical user is its struct and one heap block. Read the packed fields
/// with their methods; build a user from `UserFields` (or `User::new` on the hot path).
///
/// Serialised (the state's stored content) as it was when the manager was an attribute:
/// the manager sits in `attributes` under `manager_id`.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    /// Value of the field named by the mapping's `unique_id`; the key of the snapshot.
    pub external_id: Str,
    pub active: bool,
    /// The manager's unique id (their `external_id`). The platform holds a reference to the
    /// manager's *platform* id, which exists only once the manager is on the platform.
    pub manager: Option<Str>,
    details: Details,
}

/// A user's fields one by one: what a `User` is built from and can be taken apart into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserFields {
    pub external_id: Str,
    pub email: Option<Str>,
    pub employee_id: Option<Str>,
    pub first_name: Str,
    pub last_name: Str,
    /// ISO 639-1 code, lowercase.
    pub language: Str,
    pub active: bool,
    pub manager: Option<Str>,
    /// Everything else from `[attributes]`, by platform attribute name (never the manager).
    pub attributes: Attributes,
}

impl From<UserFields> for User {
    fn from(f: UserFields) -> User {
        User {
            external_id: f.external_id,
            active: f.active,
            manager: f.manager,
            details: Details::new(
                [f.email.as_deref(), f.employee_id.as_deref(), Some(&f.first_name), Some(&f.last_name), Some(&f.language)],
                f.attributes.iter(),
            ),
        }
    }
}

/// The profile fields `User::new` packs, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct Profile<'a> {
    pub email: Option<&'a str>,
    pub employee_id: Option<&'a str>,
    pub first_name: &'a str,
    pub last_name: &'a str,
    pub language: &'a str,
}

impl User {
    /// A user from borrowed fields; `attributes` sorted by key, each key once (the
    /// mapping's, sorted once per file), never the manager.
    pub fn new<'a>(
        external_id: Str,
        active: bool,
        manager: Option<Str>,
        p: Profile<'_>,
        attributes: impl Iterator<Item = (&'a str, &'a str)> + Clone,
    ) -> User {
        let fields = [p.email, p.employee_id, Some(p.first_name), Some(p.last_name), Some(p.language)];
        User { external_id, active, manager, details: Details::new(fields, attributes) }
    }

    /// Taken apart, for an edit of several fields or a test's variation.
    pub fn fields(&self) -> UserFields {
        UserFields {
            external_id: self.external_id.clone(),
            email: self.email().map(Str::from),
            employee_id: self.employee_id().map(Str::from),
            first_name: self.first_name().into(),
            last_name: self.last_name().into(),
            language: self.language().into(),
            active: self.active,
            manager: self.manager.clone(),
            attributes: self.attributes().to_attributes(),
        }
    }

    pub fn email(&self) -> Option<&str> {
        self.details.get(Field::Email)
    }

    pub fn employee_id(&self) -> Option<&str> {
        self.details.get(Field::EmployeeId)
    }

    pub fn first_name(&self) -> &str {
        self.details.get(Field::FirstName).unwrap_or_default()
    }

    pub fn last_name(&self) -> &str {
        self.details.get(Field::LastName).unwrap_or_default()
    }

    /// ISO 639-1 code, lowercase.
    pub fn language(&self) -> &str {
        self.details.get(Field::Language).unwrap_or_default()
    }

    /// Everything else from `[attributes]`, by platform attribute name (never the manager),
    /// in key order: the content hash does not depend on the mapping file's order.
    pub fn attributes(&self) -> AttributesRef<'_> {
        self.details.attributes()
    }

    pub fn set_email(&mut self, email: Option<&str>) {
        self.details = self.details.with(Field::Email, email);
    }

    pub fn set_employee_id(&mut self, employee_id: Option<&str>) {
        self.details = self.details.with(Field::EmployeeId, employee_id);
    }

    pub fn set_first_name(&mut self, name: &str) {
        self.details = self.details.with(Field::FirstName, Some(name));
    }

    pub fn set_last_name(&mut self, name: &str) {
        self.details = self.details.with(Field::LastName, Some(name));
    }

    pub fn set_language(&mut self, language: &str) {
        self.details = self.details.with(Field::Language, Some(language));
    }

    /// Sets one attribute (never the manager: that is `manager`).
    pub fn set_attribute(&mut self, key: &str, value: &str) {
        let mut a = self.attributes().to_attributes();
        a.insert(key, value);
        self.set_attributes(&a);
    }

    pub fn remove_attribute(&mut self, key: &str) {
        let mut a = self.attributes().to_attributes();
        a.remove(key);
        self.set_attributes(&a);
    }

    pub fn set_attributes(&mut self, attributes: &Attributes) {
        self.details = self.details.with_attributes(attributes.iter());
    }

    /// Heap bytes the packed block takes (the memory budget's count).
    pub fn details_len(&self) -> usize {
        self.details.heap_len()
    }

    /// The SCIM `userName`: the email, or the employee id where there is no email.
    pub fn user_name(&self) -> &str {
        self.email().or(self.employee_id()).unwrap_or(&self.external_id)
    }

    /// The manager's unique id, when there is one to link (an empty value is none).
    pub fn manager(&self) -> Option<&str> {
        self.manager.as_deref().filter(|m| !m.is_empty())
    }

    /// The attributes as stored and hashed: `attributes` with the manager at its place in
    /// key order under `MANAGER_ATTRIBUTE`.
    pub fn stored_attributes(&self) -> impl Iterator<Item = (&str, &str)> + Clone {
        let before = self.attributes().iter().take_while(|(k, _)| *k < MANAGER_ATTRIBUTE);
        let after = self.attributes().iter().skip_while(|(k, _)| *k < MANAGER_ATTRIBUTE);
        before.chain(self.manager.as_deref().map(|m| (MANAGER_ATTRIBUTE, m))).chain(after)
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
            self.email().unwrap_or("\u{0}"),
            self.employee_id().unwrap_or("\u{0}"),
            self.first_name(),
            self.last_name(),
            self.language(),
            if self.active { "1" } else { "0" },
        ] {
            h.update(part.as_bytes());
            h.update([0x1f]);
        }
        // Raw bytes, in the stored order (the manager among the attributes): no UTF-8
        // checks on the plan's hot path.
        let key = MANAGER_ATTRIBUTE.as_bytes();
        let manager = self.manager.as_deref().map(|m| (key, m.as_bytes()));
        let before = self.attributes().raw_entries().take_while(|(k, _)| *k < key);
        let after = self.attributes().raw_entries().skip_while(|(k, _)| *k < key);
        for (k, v) in before.chain(manager).chain(after) {
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

impl std::fmt::Debug for User {
    /// Field by field, as the struct read before its fields were packed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("external_id", &self.external_id)
            .field("email", &self.email())
            .field("employee_id", &self.employee_id())
            .field("first_name", &self.first_name())
            .field("last_name", &self.last_name())
            .field("language", &self.language())
            .field("active", &self.active)
            .field("manager", &self.manager)
            .field("attributes", &self.attributes())
            .finish()
    }
}

/// The stored form of a user (`User`'s serde), borrowed for writing.
#[derive(Serialize)]
struct StoredRef<'a> {
    external_id: &'a str,
    email: Option<&'a str>,
    employee_id: Option<&'a str>,
    first_name: &'a str,
    last_name: &'a str,
    language: &'a str,
    active: bool,
    #[serde(skip_serializing_if = "StoredAttributes::is_empty")]
    attributes: StoredAttributes<'a>,
}

/// A user's attributes with the manager among them, serialised as one JSON object.
struct StoredAttributes<'a>(&'a User);

impl StoredAttributes<'_> {
    fn is_empty(&self) -> bool {
        self.0.attributes().is_empty() && self.0.manager.is_none()
    }
}

impl Serialize for StoredAttributes<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.stored_attributes())
    }
}

/// The stored form of a user, read back.
#[derive(Deserialize)]
struct Stored {
    external_id: Str,
    email: Option<Str>,
    employee_id: Option<Str>,
    first_name: Str,
    last_name: Str,
    language: Str,
    active: bool,
    #[serde(default)]
    attributes: Attributes,
}

impl Serialize for User {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        StoredRef {
            external_id: &self.external_id,
            email: self.email(),
            employee_id: self.employee_id(),
            first_name: self.first_name(),
            last_name: self.last_name(),
            language: self.language(),
            active: self.active,
            attributes: StoredAttributes(self),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for User {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<User, D::Error> {
        let Stored { external_id, email, employee_id, first_name, last_name, language, active, mut attributes } = Stored::deserialize(d)?;
        let manager = attributes.remove(MANAGER_ATTRIBUTE).map(Str::from);
        Ok(User::from(UserFields { external_id, email, employee_id, first_name, last_name, language, active, manager, attributes }))
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

/// Users for the unit tests of the pure modules (plan, changes): one shape, one place.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::{User, UserFields};

    /// Ann Lee, `id`@example.com, employee id `id`, with a title.
    pub(crate) fn user(id: &str, active: bool, title: &str) -> User {
        User::from(UserFields {
            external_id: id.into(),
            email: Some(format!("{id}@example.com").into()),
            employee_id: Some(id.into()),
            first_name: "Ann".into(),
            last_name: "Lee".into(),
            language: "en".into(),
            active,
            manager: None,
            attributes: [("title", title)].into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The byte test for ASCII ids gives what the Unicode one gives; non-ASCII ids fold as
    /// Unicode does; an id already in its key form is borrowed.
    #[test]
    fn id_keys_fold_ascii_and_unicode_alike() {
        use std::borrow::Cow;
        let lower = IdRule { fold_case: true, upper: false };
        let upper = IdRule { fold_case: true, upper: true };
        let exact = IdRule { fold_case: false, upper: false };
        for id in [
            "E0100000",
            "e0100000",
            " Ann@Example.com ",
            "ann@example.com",
            "ZOË@example.com",
            "zoë",
            "Ärger-7",
            "x",
            "",
            "\u{a0}E1\t",
            "E1 ",
            " e1",
        ] {
            let t = id.trim();
            assert_eq!(lower.key(id), t.to_lowercase(), "{id:?}");
            assert_eq!(upper.key(id), t.to_uppercase(), "{id:?}");
            assert_eq!(exact.key(id), t, "{id:?}");
            assert!(matches!(exact.key(id), Cow::Borrowed(_)));
        }
        assert!(matches!(upper.key("E0100000"), Cow::Borrowed(_)));
        assert!(matches!(lower.key("ann@example.com"), Cow::Borrowed(_)));
        assert!(matches!(lower.key("zoë"), Cow::Borrowed(_)));
        assert!(matches!(upper.key("e0100000"), Cow::Owned(_)));
    }

    /// The content hash is stored in every snapshot: it must not change with the in-memory
    /// layout, or every user would read as changed once after an upgrade. The expected value
    /// is SHA-256 of the documented byte layout, computed outside Rust (Python hashlib).
    #[test]
    fn content_hash_is_stable() {
        let u = User::from(UserFields {
            external_id: "E1".into(),
            email: Some("ann@example.com".into()),
            employee_id: Some("E1".into()),
            first_name: "Ann".into(),
            last_name: "Lee".into(),
            language: "fr".into(),
            active: true,
            manager: None,
            attributes: [("title", "Zoë"), ("department", "R&D")].into(),
        });
        assert_eq!(hex::encode(u.content_hash()), "aa7b2f6ee52ced0d8a43d1c1be702363");
    }

    /// A million users are held at once: the struct stays small, its text in one block.
    #[test]
    fn a_user_is_a_small_struct_that_takes_its_fields_apart_and_back() {
        assert!(std::mem::size_of::<User>() <= 72, "{}", std::mem::size_of::<User>());
        let f = UserFields {
            external_id: "E3".into(),
            email: Some("a.rather.long.address.for.the.inline.limit@example.com".into()),
            employee_id: None,
            first_name: "".into(),
            last_name: "Lee".into(),
            language: "de".into(),
            active: false,
            manager: Some("E1".into()),
            attributes: [("title", "Lead"), ("department", "R&D")].into(),
        };
        let mut u = User::from(f.clone());
        assert_eq!(u.fields(), f);
        assert_eq!((u.email(), u.employee_id(), u.first_name(), u.language()), (f.email.as_deref(), None, "", "de"));
        u.set_employee_id(Some("E3"));
        u.set_attribute("site", "Paris");
        u.remove_attribute("title");
        assert_eq!(u.employee_id(), Some("E3"));
        assert_eq!(u.attributes().iter().collect::<Vec<_>>(), [("department", "R&D"), ("site", "Paris")]);
        assert_eq!(u.last_name(), "Lee", "the other fields kept across edits");
    }

    /// A user with a manager: the value and stored content the code had while the manager
    /// was the attribute `manager_id` (computed on that code, and with Python hashlib).
    #[test]
    fn content_hash_and_stored_content_with_a_manager_are_unchanged() {
        let u = User::from(UserFields {
            external_id: "E2".into(),
            email: Some("bob@example.com".into()),
            employee_id: Some("E2".into()),
            first_name: "Bob".into(),
            last_name: "Ray".into(),
            language: "en".into(),
            active: true,
            manager: Some("E1".into()),
            attributes: [("title", "Lead"), ("department", "R&D"), ("site", "Paris")].into(),
        });
        assert_eq!(hex::encode(u.content_hash()), "401e598352317e12b2cb224b9be45a45");
        let stored = r#"{"external_id":"E2","email":"bob@example.com","employee_id":"E2","first_name":"Bob","last_name":"Ray","language":"en","active":true,"attributes":{"department":"R&D","manager_id":"E1","site":"Paris","title":"Lead"}}"#;
        assert_eq!(serde_json::to_string(&u).unwrap(), stored);
        assert_eq!(serde_json::from_str::<User>(stored).unwrap(), u);
    }
}
