//! Mapping: records → users and row errors. A pure function of the mapping file and the
//! record; no I/O.
//!
//! A field's value is computed as: read (column or template) → transforms → default when
//! empty → `map`/fallback → `date`. The row rules of docs/design.md then check the user; every
//! fault of a row is reported, not only the first.

mod collect;
pub mod dates;
pub mod fill;
pub mod footer;
mod footprint;
pub mod rules;
pub mod scope;
pub mod suggest;

pub use collect::{collect, collect_within};

use std::collections::{BTreeMap, HashMap};

use self::rules::Mapping;
use self::rules::{FieldRule, Input, PlatformField, TemplatePart, Transform, UniqueId};
use crate::format::{FormatError, Record};
use crate::model::{MANAGER_ATTRIBUTE, Profile, RowError, SourcedUser, Str, User};
use crate::text::excerpt;

/// A rule with its column references resolved to indexes into `Record::values`.
#[derive(Debug, Clone)]
struct Compiled {
    rule: FieldRule,
    /// `rule.date` parsed once: re-parsing the format string per row cost more than the date.
    date: Option<Vec<chrono::format::Item<'static>>>,
    /// `date` with day and month exchanged, when it has both as numbers: a value that fails
    /// with `date` but fits this one is a sign of the other order (see `SwappedDates`).
    swapped: Option<Vec<chrono::format::Item<'static>>>,
    /// The mapping key (`attributes.hire_date`), for column-level errors.
    key: String,
    /// Whether the value goes to the platform as text (not language and active, which are
    /// read as a code and a flag): only then are control characters refused.
    pushed: bool,
    /// The source column(s) named in errors.
    column: Option<String>,
    input: CompiledInput,
    /// False for an attribute the platform will not take (`Mapper::leaving_out`): a value of
    /// it that does not read leaves it out of the user rather than refusing the row.
    sent: bool,
}

#[derive(Debug, Clone)]
enum CompiledInput {
    Column(usize),
    Template(Vec<CompiledPart>),
    Constant,
}

#[derive(Debug, Clone)]
enum CompiledPart {
    Text(String),
    Column(usize),
}

/// A mapping compiled against the columns requested from the format (`Mapping::columns()`).
pub struct Mapper {
    mapping: Mapping,
    columns: Vec<String>,
    fields: Vec<(PlatformField, Compiled)>,
    attributes: Vec<(String, Compiled)>,
    /// The `[attributes]` entry named `manager_id`: it becomes `User::manager`.
    manager: Option<Compiled>,
    /// `[scope]`, by column index.
    scope: scope::CompiledScope,
    /// `[fields] start_date`, `end_date`.
    start: Option<Compiled>,
    end: Option<Compiled>,
}

impl Mapper {
    pub fn new(mapping: &Mapping) -> Mapper {
        let columns = mapping.columns();
        let pos = |c: &str| columns.iter().position(|x| x == c).unwrap_or(usize::MAX);
        let compile = |key: String, pushed: bool, rule: &FieldRule| {
            let input = match &rule.input {
                Input::Column(c) => CompiledInput::Column(pos(c)),
                Input::Template(parts) => CompiledInput::Template(
                    parts
                        .iter()
                        .map(|p| match p {
                            TemplatePart::Text(t) => CompiledPart::Text(t.clone()),
                            TemplatePart::Column(c) => CompiledPart::Column(pos(c)),
                        })
                        .collect(),
                ),
                Input::Constant => CompiledInput::Constant,
            };
            let cols = rule.columns();
            let column = if cols.is_empty() { None } else { Some(cols.join(", ")) };
            let date = rule.date.as_deref().and_then(|f| chrono::format::StrftimeItems::new(f).parse_to_owned().ok());
            let swapped = date.as_deref().and_then(swap_day_month);
            Compiled { rule: rule.clone(), date, swapped, key, pushed, column, input, sent: true }
        };
        Mapper {
            fields: mapping
                .fields
                .iter()
                .map(|(f, r)| {
                    (*f, compile(format!("fields.{}", f.name()), !matches!(f, PlatformField::Language | PlatformField::Active), r))
                })
                .collect(),
            // In name order (a BTreeMap's), so each user's attributes are packed unsorted.
            attributes: mapping
                .attributes
                .iter()
                .filter(|(n, _)| *n != MANAGER_ATTRIBUTE)
                .map(|(n, r)| (n.clone(), compile(format!("attributes.{n}"), true, r)))
                .collect(),
            manager: mapping.attributes.get(MANAGER_ATTRIBUTE).map(|r| compile(format!("attributes.{MANAGER_ATTRIBUTE}"), true, r)),
            scope: scope::CompiledScope::new(&mapping.scope, pos),
            start: mapping.dates.start.as_ref().map(|r| compile("fields.start_date".into(), false, r)),
            end: mapping.dates.end.as_ref().map(|r| compile("fields.end_date".into(), false, r)),
            columns,
            mapping: mapping.clone(),
        }
    }

    /// This mapper, for a platform that will not take these attributes (a custom attribute
    /// on a server without the custom schema, an enterprise one without the extension: the
    /// run found out by discovery before the file is read). Their values are never sent, so
    /// one that does not read (a date in another format, a control character) invalidates
    /// no row: the attribute is left out of that user, and the run says once that those
    /// attributes are not sent. Values that read are kept as before.
    pub fn leaving_out(mut self, unsent: &std::collections::BTreeSet<String>) -> Mapper {
        for (name, c) in &mut self.attributes {
            c.sent = !unsent.contains(name);
        }
        self
    }

    /// The record's start and end dates (`[fields] start_date`, `end_date`); a value that
    /// is no date is a row error, like any field's.
    pub fn dates(&self, record: &Record) -> Result<dates::Dates, Vec<RowError>> {
        let mut errors = Vec::new();
        let mut read = |c: &Option<Compiled>| -> Option<chrono::NaiveDate> {
            let c = c.as_ref()?;
            let fault = match value(c, record) {
                Ok(None) => return None,
                Ok(Some(v)) => match dates::iso(&v) {
                    Ok(d) => return Some(d),
                    Err(m) => m,
                },
                Err(m) => m,
            };
            errors.push(RowError {
                line: record.line,
                column: c.column.clone(),
                message: format!("{}: {fault}", c.key),
                external_id: None,
            });
            None
        };
        let d = dates::Dates { start: read(&self.start), end: read(&self.end) };
        if errors.is_empty() { Ok(d) } else { Err(errors) }
    }

    /// Whether the record is a person this connector provisions (`[scope]`).
    pub fn in_scope(&self, record: &Record) -> bool {
        self.scope.admits(record)
    }

    /// The columns to ask the format for, in the order `Record::values` will hold them.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// The source column the unique id comes from (for duplicate errors).
    fn unique_column(&self) -> Option<String> {
        let f = unique_field(self.mapping.unique_id);
        self.fields.iter().find(|(pf, _)| *pf == f).and_then(|(_, c)| c.column.clone())
    }

    /// The unique id a record holds, if readable (for rows that cannot be mapped).
    pub fn external_id(&self, record: &Record) -> Option<String> {
        let f = unique_field(self.mapping.unique_id);
        let (_, c) = self.fields.iter().find(|(pf, _)| *pf == f)?;
        value(c, record).ok().flatten().map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
    }

    /// Notes the dates of a record that are not dates in their format but are with day and
    /// month swapped. Called for rows with errors only: a date that fits is no sign.
    pub(crate) fn note_swapped_dates(&self, record: &Record, out: &mut SwappedDates) {
        let rules = self.fields.iter().map(|(_, c)| c).chain(self.attributes.iter().map(|(_, c)| c)).chain(self.manager.iter());
        // An attribute never sent taints nothing: its dates, whichever way round, go nowhere.
        for c in rules.filter(|c| c.sent) {
            let (Some(fmt), Some(items), Some(swapped)) = (&c.rule.date, &c.date, &c.swapped) else { continue };
            let Prepared::Value(v) = prepared(c, record) else { continue };
            let t = v.trim();
            if parse_date_items(t, fmt, Some(items)).is_err() && date_with(t, swapped.iter()).is_some() {
                out.note(c, record.line, t);
            }
        }
    }

    /// Maps and validates one record.
    pub fn map(&self, record: &Record) -> Result<User, Vec<RowError>> {
        let mut errors: Vec<RowError> = Vec::new();
        let line = record.line;
        let push = |errors: &mut Vec<RowError>, column: &Option<String>, message: String| {
            errors.push(RowError { line, column: column.clone(), message, external_id: None });
        };
        let (mut employee_id, mut email, mut first, mut last) = (None, None, None, None);
        let mut language = None;
        let mut active = None;
        let mut lang_col = None;
        let mut active_col = None;
        for (field, c) in &self.fields {
            let v = match value(c, record) {
                Ok(v) => v,
                Err(m) => {
                    push(&mut errors, &c.column, m);
                    continue;
                }
            };
            match field {
                PlatformField::EmployeeId => employee_id = v,
                PlatformField::Email => email = v,
                PlatformField::FirstName => first = v,
                PlatformField::LastName => last = v,
                PlatformField::Language => {
                    language = v;
                    lang_col = Some(c);
                }
                PlatformField::Active => {
                    active = v;
                    active_col = Some(c);
                }
            }
        }
        let col_of = |f: PlatformField| self.fields.iter().find(|(pf, _)| *pf == f).and_then(|(_, c)| c.column.clone());
        let uid_field = unique_field(self.mapping.unique_id);
        // Trimmed once here: "E5 " is E5 everywhere after (the plan, the state, the platform).
        let external_id: Option<&str> = match self.mapping.unique_id {
            UniqueId::EmployeeId => employee_id.as_deref(),
            UniqueId::Email => email.as_deref(),
        }
        .map(str::trim)
        .filter(|id| !id.is_empty());
        // The field that is the id holds it as the id is held: a stray space is no change.
        let (employee_id, email) = match self.mapping.unique_id {
            UniqueId::EmployeeId => (external_id, email.as_deref()),
            UniqueId::Email => (employee_id.as_deref(), external_id),
        };
        if external_id.is_none() && !errors.iter().any(|e| e.column == col_of(uid_field)) {
            push(
                &mut errors,
                &col_of(uid_field),
                format!("the unique id ({}) is empty; the row cannot be matched to a person", uid_field.name()),
            );
        }
        if first.is_none() && !errors.iter().any(|e| e.column == col_of(PlatformField::FirstName)) {
            push(&mut errors, &col_of(PlatformField::FirstName), "first name is empty; every user needs one".into());
        }
        if last.is_none() && !errors.iter().any(|e| e.column == col_of(PlatformField::LastName)) {
            push(&mut errors, &col_of(PlatformField::LastName), "last name is empty; every user needs one".into());
        }
        if let Some(e) = email
            && let Err(why) = check_email(e)
        {
            push(&mut errors, &col_of(PlatformField::Email), format!("\"{}\" is not a valid email address: {why}", excerpt(e)));
        }
        let language = match (language, lang_col) {
            (Some(l), c) => match language_code(&l) {
                Some(code) => Some(Str::from(code)),
                None => {
                    push(
                        &mut errors,
                        &c.and_then(|c| c.column.clone()),
                        format!(
                            "\"{}\" is not a language; expected an ISO 639-1 code (en, fr, de …), a tag (fr-FR) or a name (French, Français)",
                            excerpt(&l)
                        ),
                    );
                    None
                }
            },
            (None, Some(c)) if c.column.is_some() => {
                if !errors.iter().any(|e| e.column == c.column) {
                    push(
                        &mut errors,
                        &c.column,
                        "language is empty; add default = \"en\" to the language field of the mapping, or fill it in the export".into(),
                    );
                }
                None
            }
            // Not mapped at all: the platform's default language.
            _ => Some(Str::const_new("en")),
        };
        let active = match (active, active_col) {
            (Some(a), c) => match parse_flag(&a) {
                Some(b) => Some(b),
                None => {
                    push(
                        &mut errors,
                        &c.and_then(|c| c.column.clone()),
                        format!(
                            "\"{a}\" is not an active flag; expected true/false, yes/no, 1/0 or active/inactive, or add map = {{ \"{a}\" = true }} (or false, for people who have left) to the active field",
                            a = excerpt(&a)
                        ),
                    );
                    None
                }
            },
            (None, Some(c)) if c.column.is_some() => {
                if !errors.iter().any(|e| e.column == c.column) {
                    push(
                        &mut errors,
                        &c.column,
                        "active flag is empty; add default = true to the active field of the mapping, or fill it in the export".into(),
                    );
                }
                None
            }
            _ => Some(true),
        };
        let mut attributes: Vec<(&str, Value)> = Vec::with_capacity(self.attributes.len());
        for (name, c) in &self.attributes {
            match value(c, record) {
                Ok(Some(v)) => attributes.push((name, v)),
                Ok(None) => {}
                // Not sent anyway: left out of this user, the row stands.
                Err(_) if !c.sent => {}
                Err(m) => push(&mut errors, &c.column, m),
            }
        }
        let manager = match self.manager.as_ref().map(|c| (c, value(c, record))) {
            Some((_, Ok(m))) => m.map(Value::into_str),
            Some((c, Err(m))) => {
                push(&mut errors, &c.column, m);
                None
            }
            None => None,
        };
        if !errors.is_empty() {
            for e in &mut errors {
                e.external_id = external_id.map(str::to_string);
            }
            return Err(errors);
        }
        match (external_id, first, last, language, active) {
            (Some(external_id), Some(first_name), Some(last_name), Some(language), Some(active)) => Ok(User::new(
                Str::from(external_id),
                active,
                manager,
                Profile { email, employee_id, first_name: &first_name, last_name: &last_name, language: &language },
                attributes.iter().map(|(k, v)| (*k, &**v)),
            )),
            // Every None above pushed an error; this arm is not reached.
            _ => Err(vec![RowError { line: record.line, column: None, message: "row incomplete".into(), external_id: None }]),
        }
    }
}

fn unique_field(u: UniqueId) -> PlatformField {
    match u {
        UniqueId::EmployeeId => PlatformField::EmployeeId,
        UniqueId::Email => PlatformField::Email,
    }
}

/// A field's value for one record; `None` when empty with no default. Works on borrowed
/// text: a value the mapping does not change stays a slice of the record (or of the
/// mapping, for a default) until the user's packed block is written.
fn value<'a>(c: &'a Compiled, record: &'a Record) -> Result<Option<Value<'a>>, String> {
    let v = match prepared(c, record) {
        Prepared::Default(d) => return Ok(d.map(Value::Borrowed)),
        Prepared::Value(v) => v,
    };
    if let Some(fmt) = &c.rule.date {
        return parse_date_items(&v, fmt, c.date.as_deref()).map(|d| Some(Value::Made(d)));
    }
    if c.pushed
        && let Some(fault) = control_fault(&v)
    {
        return Err(fault);
    }
    Ok(Some(match v {
        std::borrow::Cow::Borrowed(b) => Value::Borrowed(b),
        std::borrow::Cow::Owned(o) => Value::Made(Str::from(o)),
    }))
}

/// A mapped value: the record's (or the mapping's) text as it is, or text the mapping made
/// (a transform, a template, a date). A million rows' names and emails were each copied
/// into a string of their own before being copied again into the user (perf).
enum Value<'a> {
    Borrowed(&'a str),
    Made(Str),
}

impl std::ops::Deref for Value<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        match self {
            Value::Borrowed(b) => b,
            Value::Made(s) => s,
        }
    }
}

impl Value<'_> {
    fn into_str(self) -> Str {
        match self {
            Value::Borrowed(b) => Str::from(b),
            Value::Made(s) => s,
        }
    }
}

/// Whether a value is empty or only whitespace, as `str::trim` sees it. A byte test for the
/// usual value, which starts with a printable ASCII character: every cell of a million rows
/// is tested (fill counts, defaults), and the Unicode trim was 3% of a dry run (perf).
pub(crate) fn is_blank(v: &str) -> bool {
    match v.as_bytes().first() {
        None => true,
        Some(b) if b.is_ascii_graphic() => false,
        Some(_) => v.trim().is_empty(),
    }
}

/// A value before its date parsing: the platform default, or text from the file (read,
/// transformed, mapped).
enum Prepared<'a> {
    Default(Option<&'a str>),
    Value(std::borrow::Cow<'a, str>),
}

fn prepared<'a>(c: &'a Compiled, record: &'a Record) -> Prepared<'a> {
    use std::borrow::Cow;
    let cell = |i: usize| record.get(i);
    let raw: Option<Cow<str>> = match &c.input {
        CompiledInput::Column(i) => cell(*i).map(Cow::Borrowed),
        CompiledInput::Template(parts) => {
            let mut any = false;
            let mut s = String::new();
            for p in parts {
                match p {
                    CompiledPart::Text(t) => s.push_str(t),
                    CompiledPart::Column(i) => {
                        let v = cell(*i).unwrap_or("");
                        any |= !is_blank(v);
                        s.push_str(v);
                    }
                }
            }
            any.then_some(Cow::Owned(s))
        }
        CompiledInput::Constant => None,
    };
    let default = || Prepared::Default(c.rule.default.as_deref());
    let v = match raw {
        Some(r) => transform_cow(r, &c.rule.transforms),
        None => return default(),
    };
    if is_blank(&v) {
        // The default is a platform value: no transform, map or date applies to it.
        return default();
    }
    Prepared::Value(match &c.rule.map {
        Some(map) => {
            let hit =
                map.iter().find(|(k, _)| *k == v).or_else(|| map.iter().find(|(k, _)| k.trim().to_lowercase() == v.trim().to_lowercase()));
            match (hit, &c.rule.fallback) {
                (Some((_, to)), _) => Cow::Borrowed(to.as_str()),
                (None, Some(fb)) => Cow::Borrowed(fb.as_str()),
                (None, None) => v,
            }
        }
        None => v,
    })
}

/// Why a value may not go to the platform as it is: a control character (NUL, escape, a
/// line break…) is never a person's data, and a platform or a terminal showing it later
/// does harm. A tab counts: inside a name it is junk from a copy and paste; at the ends of
/// a value, the `trim` transform removes it (the message says so).
fn control_fault(v: &str) -> Option<String> {
    // The bytes of every control character: C0 and DEL, and C1 (U+0080–U+009F, 0xC2 0x80…).
    if !v.bytes().any(|b| b < 0x20 || b == 0x7f || b == 0xc2) {
        return None;
    }
    let (at, c) = v.chars().enumerate().find(|(_, c)| c.is_control())?;
    let name = match c {
        '\0' => "NUL",
        '\t' => "a tab",
        '\n' => "a line break",
        '\r' => "a carriage return",
        '\x1b' => "an escape",
        _ => "a control character",
    };
    let trim = if v.trim().chars().any(char::is_control) { "" } else { " (or add \"trim\" to the transforms of this field)" };
    Some(format!(
        "the value holds {name} (U+{:04X}) at character {}: \"{}\"; control characters are never sent to the platform, remove it in the export{trim}",
        c as u32,
        at + 1,
        excerpt(v)
    ))
}

/// Transforms without allocating when a value needs no change (the common case).
fn transform_cow<'a>(mut s: std::borrow::Cow<'a, str>, transforms: &[Transform]) -> std::borrow::Cow<'a, str> {
    use std::borrow::Cow;
    for t in transforms {
        s = match (t, s) {
            (Transform::Trim, Cow::Borrowed(b)) => Cow::Borrowed(b.trim()),
            (Transform::Lowercase, s) if !s.chars().any(char::is_uppercase) => s,
            (Transform::Uppercase, s) if !s.chars().any(char::is_lowercase) => s,
            (t, s) => Cow::Owned(apply_transforms(s.into_owned(), std::slice::from_ref(t))),
        };
    }
    s
}

pub fn apply_transforms(mut s: String, transforms: &[Transform]) -> String {
    for t in transforms {
        s = match t {
            Transform::Trim => {
                let t = s.trim();
                if t.len() == s.len() { s } else { t.to_string() }
            }
            // ASCII (nearly every email and id) without Unicode case tables.
            Transform::Lowercase if s.is_ascii() => {
                s.make_ascii_lowercase();
                s
            }
            Transform::Uppercase if s.is_ascii() => {
                s.make_ascii_uppercase();
                s
            }
            Transform::Lowercase => s.to_lowercase(),
            Transform::Uppercase => s.to_uppercase(),
            Transform::TitleCase => title_case(&s),
            Transform::CollapseSpaces => s.split_whitespace().collect::<Vec<_>>().join(" "),
        };
    }
    s
}

/// "jean-luc O'BRIEN" → "Jean-Luc O'Brien": a letter after a non-letter starts a word; after
/// an apostrophe only when one letter precedes it (O'Brien, D'Arc, but Don't).
fn title_case(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    let mut letters = 0;
    for ch in s.chars() {
        if ch.is_alphabetic() {
            if start {
                out.extend(ch.to_uppercase());
            } else {
                out.extend(ch.to_lowercase());
            }
            start = false;
            letters += 1;
        } else {
            out.push(ch);
            start = if ch == '\'' || ch == '’' { letters == 1 } else { true };
            letters = 0;
        }
    }
    out
}

/// Input date in the mapping's strftime format → ISO 8601. A value already ISO (spreadsheet
/// date cells arrive that way) is accepted as is.
pub fn parse_date(s: &str, fmt: &str) -> Result<String, String> {
    parse_date_items(s, fmt, None).map(String::from)
}

fn parse_date_items(s: &str, fmt: &str, items: Option<&[chrono::format::Item<'static>]>) -> Result<Str, String> {
    use chrono::format::StrftimeItems;
    use chrono::{NaiveDate, NaiveDateTime};
    let t = s.trim();
    // Already the ISO text `iso_date` would write (a four-digit year, two-digit month and day).
    if fmt == "%Y-%m-%d" && plain_iso(t).is_some() {
        return Ok(Str::from(t));
    }
    let with_format = match items {
        Some(items) => date_with(t, items.iter()),
        None => date_with(t, StrftimeItems::new(fmt)),
    };
    let d = with_format
        .or_else(|| NaiveDate::parse_from_str(t, "%Y-%m-%d").ok())
        .or_else(|| NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S").ok().map(|dt| dt.date()));
    match d {
        Some(d) => Ok(iso_date(d)),
        None => Err(format!("\"{}\" is not a date in the format \"{fmt}\"; fix the cell or the date format in the mapping", excerpt(t))),
    }
}

/// `t` when it is exactly an ISO date (`2018-01-17`): the usual cell of an ISO date column,
/// read without chrono's general parser (a million of them were a tenth of the mapping).
/// Anything else is left to the parser, which reads these the same way.
fn plain_iso(t: &str) -> Option<chrono::NaiveDate> {
    let b = t.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().try_fold(0u32, |n, &c| c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0')));
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let year = i32::try_from(digits(0..4)?).ok()?;
    chrono::NaiveDate::from_ymd_opt(year, digits(5..7)?, digits(8..10)?)
}

/// The date `t` reads as with these format items, if any.
fn date_with<'i, I, B>(t: &str, items: I) -> Option<chrono::NaiveDate>
where
    I: Iterator<Item = B> + Clone,
    B: std::borrow::Borrow<chrono::format::Item<'i>>,
{
    let mut p = chrono::format::Parsed::new();
    chrono::format::parse(&mut p, t, items).ok()?;
    p.to_naive_date().ok().or_else(|| p.to_naive_datetime_with_offset(0).ok().map(|dt| dt.date()))
}

/// A date format's items with the numeric day and month exchanged; None unless it has both
/// (a format with a month name cannot be read the other way round).
fn swap_day_month(items: &[chrono::format::Item<'static>]) -> Option<Vec<chrono::format::Item<'static>>> {
    use chrono::format::{Item, Numeric};
    let has = |n: Numeric| items.iter().any(|i| matches!(i, Item::Numeric(m, _) if *m == n));
    if !(has(Numeric::Day) && has(Numeric::Month)) {
        return None;
    }
    Some(
        items
            .iter()
            .map(|i| match i {
                Item::Numeric(Numeric::Day, pad) => Item::Numeric(Numeric::Month, *pad),
                Item::Numeric(Numeric::Month, pad) => Item::Numeric(Numeric::Day, *pad),
                other => other.clone(),
            })
            .collect(),
    )
}

/// The format string with `%d` and `%m` exchanged (padding flags kept), to suggest in a
/// message; None when it has no such pair.
fn swapped_format_text(fmt: &str) -> Option<String> {
    let mut out = String::with_capacity(fmt.len());
    let (mut day, mut month) = (false, false);
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c != '%' {
            continue;
        }
        if let Some(&flag) = chars.peek()
            && matches!(flag, '-' | '_' | '0')
        {
            out.push(flag);
            chars.next();
        }
        match chars.next() {
            Some('d') => {
                day = true;
                out.push('m');
            }
            Some('m') => {
                month = true;
                out.push('d');
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    (day && month).then_some(out)
}

/// Values of date columns that are not dates in their column's format but are with day and
/// month swapped: the export writes dates the other way round, so every other value of the
/// column with a day up to 12 was read with day and month exchanged, silently. One such
/// value condemns the column (a whole-column judgement, made once the file is mapped).
#[derive(Debug, Default)]
pub struct SwappedDates {
    /// By mapping key, in key order.
    columns: BTreeMap<String, SwappedColumn>,
}

#[derive(Debug)]
struct SwappedColumn {
    column: String,
    format: String,
    rows: u64,
    /// The first few (line, value excerpt), in file order.
    examples: Vec<(u64, String)>,
}

/// Example values a swapped-dates message shows; the count says how many there are.
const SWAPPED_EXAMPLES: usize = 3;

impl SwappedDates {
    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

    fn note(&mut self, c: &Compiled, line: u64, value: &str) {
        let col = self.columns.entry(c.key.clone()).or_insert_with(|| SwappedColumn {
            column: c.column.clone().unwrap_or_default(),
            format: c.rule.date.clone().unwrap_or_default(),
            rows: 0,
            examples: Vec::new(),
        });
        col.rows += 1;
        if col.examples.len() < SWAPPED_EXAMPLES {
            col.examples.push((line, excerpt(value)));
        }
    }

    /// Adds what a later part of the file found (parts are merged in file order).
    pub(crate) fn merge(&mut self, later: SwappedDates) {
        for (key, b) in later.columns {
            match self.columns.get_mut(&key) {
                Some(a) => {
                    a.rows += b.rows;
                    let room = SWAPPED_EXAMPLES.saturating_sub(a.examples.len());
                    a.examples.extend(b.examples.into_iter().take(room));
                }
                None => {
                    self.columns.insert(key, b);
                }
            }
        }
    }
}

/// `YYYY-MM-DD`, written directly: `format("%Y-%m-%d")` parsed its format string again for
/// every row of an export (a profile showed it).
fn iso_date(d: chrono::NaiveDate) -> Str {
    use chrono::Datelike;
    use std::fmt::Write;
    if !(0..=9999).contains(&d.year()) {
        return Str::from(d.format("%Y-%m-%d").to_string());
    }
    let mut out = Str::default();
    let _ = write!(out, "{:04}-{:02}-{:02}", d.year(), d.month(), d.day());
    out
}

/// Calls `f` with `s` trimmed and lowercased, without allocating for short ASCII text (the
/// flags and language codes of every row).
fn with_lower<R>(s: &str, f: impl FnOnce(&str) -> R) -> R {
    let t = s.trim();
    let mut buf = [0u8; 32];
    if t.is_ascii() && t.len() <= buf.len() {
        let b = &mut buf[..t.len()];
        b.copy_from_slice(t.as_bytes());
        b.make_ascii_lowercase();
        return f(std::str::from_utf8(b).unwrap_or_default());
    }
    f(&t.to_lowercase())
}

/// Active flags as HR systems write them; `None` for anything else.
pub fn parse_flag(s: &str) -> Option<bool> {
    with_lower(s, |l| match l {
        "true" | "yes" | "y" | "1" | "active" | "on" | "t" | "oui" | "ja" | "si" | "sí" | "sim" | "actif" | "aktiv" | "activo"
        | "ativo" | "attivo" => Some(true),
        "false" | "no" | "n" | "0" | "inactive" | "off" | "f" | "non" | "nein" | "não" | "nao" | "inactif" | "inaktiv" | "inactivo"
        | "inativo" | "inattivo" => Some(false),
        _ => None,
    })
}

/// A reasonable RFC 5322 / RFC 6531 check: one `@`, a dot-atom local part (any Unicode
/// letters allowed, or a quoted string), and a domain of letter/digit/hyphen labels with a
/// dot (internationalised labels allowed).
pub fn check_email(e: &str) -> Result<(), &'static str> {
    if plainly_valid_email(e) { Ok(()) } else { check_email_generally(e) }
}

/// `check_email`'s rules, one by one (the first broken one is the reason given).
fn check_email_generally(e: &str) -> Result<(), &'static str> {
    let spaced = if e.is_ascii() {
        e.bytes().any(|c| c.is_ascii_whitespace() || c.is_ascii_control())
    } else {
        e.chars().any(|c| c.is_whitespace() || c.is_control())
    };
    if spaced {
        return Err("it holds spaces or control characters");
    }
    let at = e.rfind('@').ok_or("no @")?;
    let (local, domain) = (&e[..at], &e[at + 1..]);
    if local.is_empty() {
        return Err("nothing before the @");
    }
    if domain.is_empty() {
        return Err("nothing after the @");
    }
    if e.len() > 254 {
        return Err("longer than 254 bytes");
    }
    if local.len() > 64 {
        return Err("the part before the @ is longer than 64 bytes");
    }
    if local.starts_with('"') && local.ends_with('"') && local.len() >= 2 {
        // Quoted local part: anything printable but an unescaped quote.
    } else {
        if local.contains('@') {
            return Err("more than one @");
        }
        if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
            return Err("dots at the start, the end or doubled before the @");
        }
        // ASCII: atext of RFC 5322; beyond ASCII: any printable character (RFC 6531).
        if local
            .chars()
            .any(|c| if c.is_ascii() { !(c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c)) } else { c.is_control() })
        {
            return Err("a character not allowed before the @");
        }
    }
    if domain.starts_with('[') && domain.ends_with(']') {
        return domain[1..domain.len() - 1].parse::<std::net::Ipv4Addr>().map(|_| ()).map_err(|_| "bad address literal after the @");
    }
    // Labels checked as they are split (no list per address: a million are checked a run).
    if !domain.contains('.') {
        return Err("the domain has no dot");
    }
    for l in domain.split('.') {
        if l.is_empty() {
            return Err("an empty label in the domain");
        }
        if l.len() > 63 {
            return Err("a domain label longer than 63 bytes");
        }
        if l.starts_with('-') || l.ends_with('-') {
            return Err("a domain label starting or ending with '-'");
        }
        if !l.chars().all(|c| c.is_alphanumeric() || c == '-') {
            return Err("a character not allowed in the domain");
        }
    }
    if domain.rsplit('.').next().is_some_and(|t| t.bytes().all(|c| c.is_ascii_digit())) {
        return Err("the top-level domain is a number");
    }
    Ok(())
}

/// The usual address, proved valid in one look at its bytes: ASCII letters, digits and
/// `._+-` before a single `@` (no dot first, last or doubled; at most 64 bytes), then dotted
/// labels of letters, digits and inner hyphens (at most 63 bytes each, not all digits last),
/// 254 bytes in all. Each of these passes every rule of `check_email`, whose general checks
/// (a dozen scans of the text) were a twentieth of a million rows' mapping; `false` only
/// means those checks decide.
fn plainly_valid_email(e: &str) -> bool {
    let b = e.as_bytes();
    let Some(at) = memchr::memchr(b'@', b) else { return false };
    let (local, domain) = (&b[..at], &b[at + 1..]);
    let atom = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'+' | b'-');
    let label_ok = |l: &[u8]| {
        (1..=63).contains(&l.len())
            && l.first() != Some(&b'-')
            && l.last() != Some(&b'-')
            && l.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'-')
    };
    b.len() <= 254
        && (1..=64).contains(&local.len())
        && local.first() != Some(&b'.')
        && local.last() != Some(&b'.')
        && local.iter().all(|&c| atom(c))
        && !local.windows(2).any(|w| w == b"..")
        && memchr::memchr(b'.', domain).is_some()
        && domain.split(|&c| c == b'.').all(label_ok)
        && domain.rsplit(|&c| c == b'.').next().is_some_and(|t| !t.iter().all(u8::is_ascii_digit))
}

/// ISO 639-1 code, English name, native names and ISO 639-2 codes.
const LANGUAGES: &[(&str, &[&str])] = &[
    ("en", &["english", "anglais", "englisch", "inglés", "ingles", "inglese", "inglês", "engels", "eng"]),
    ("fr", &["french", "français", "francais", "französisch", "francés", "frances", "francese", "francês", "frans", "fra", "fre"]),
    ("de", &["german", "deutsch", "allemand", "alemán", "aleman", "tedesco", "alemão", "alemao", "duits", "deu", "ger"]),
    ("es", &["spanish", "español", "espanol", "castellano", "espagnol", "spanisch", "spagnolo", "espanhol", "spaans", "spa"]),
    ("it", &["italian", "italiano", "italien", "italienisch", "italiaans", "ita"]),
    ("pt", &["portuguese", "português", "portugues", "portugais", "portugiesisch", "portoghese", "portugees", "por"]),
    (
        "nl",
        &["dutch", "nederlands", "néerlandais", "neerlandais", "niederländisch", "holandés", "olandese", "flemish", "vlaams", "nld", "dut"],
    ),
    ("ja", &["japanese", "日本語", "japonais", "japanisch", "japonés", "giapponese", "japonês", "jpn"]),
    ("zh", &["chinese", "中文", "汉语", "漢語", "mandarin", "chinois", "chinesisch", "chino", "cinese", "chinês", "zho", "chi"]),
    ("ko", &["korean", "한국어", "coréen", "koreanisch", "coreano", "kor"]),
    ("ru", &["russian", "русский", "russe", "russisch", "ruso", "russo", "rus"]),
    ("pl", &["polish", "polski", "polonais", "polnisch", "polaco", "polacco", "polonês", "pol"]),
    ("sv", &["swedish", "svenska", "suédois", "schwedisch", "sueco", "svedese", "swe"]),
    ("da", &["danish", "dansk", "danois", "dänisch", "danés", "danese", "dan"]),
    ("no", &["norwegian", "norsk", "norvégien", "norwegisch", "noruego", "norvegese", "nor"]),
    ("nb", &["norwegian bokmål", "bokmål", "bokmal", "nob"]),
    ("fi", &["finnish", "suomi", "finnois", "finnisch", "finlandés", "finlandese", "fin"]),
    ("cs", &["czech", "čeština", "cestina", "tchèque", "tschechisch", "checo", "ceco", "ces", "cze"]),
    ("sk", &["slovak", "slovenčina", "slovaque", "slowakisch", "slk"]),
    ("hu", &["hungarian", "magyar", "hongrois", "ungarisch", "húngaro", "hun"]),
    ("ro", &["romanian", "română", "romana", "roumain", "rumänisch", "rumano", "ron", "rum"]),
    ("bg", &["bulgarian", "български", "bulgare", "bul"]),
    ("el", &["greek", "ελληνικά", "grec", "griechisch", "griego", "greco", "ell", "gre"]),
    ("tr", &["turkish", "türkçe", "turkce", "turc", "türkisch", "turco", "tur"]),
    ("uk", &["ukrainian", "українська", "ukrainien", "ukrainisch", "ucraniano", "ukr"]),
    ("hr", &["croatian", "hrvatski", "croate", "kroatisch", "hrv"]),
    ("sr", &["serbian", "српски", "srpski", "serbe", "srp"]),
    ("sl", &["slovenian", "slovene", "slovenščina", "slovène", "slv"]),
    ("lt", &["lithuanian", "lietuvių", "lituanien", "lit"]),
    ("lv", &["latvian", "latviešu", "letton", "lav"]),
    ("et", &["estonian", "eesti", "estonien", "est"]),
    ("ar", &["arabic", "العربية", "arabe", "arabisch", "árabe", "ara"]),
    ("he", &["hebrew", "עברית", "hébreu", "hebräisch", "heb"]),
    ("hi", &["hindi", "हिन्दी", "हिंदी", "hin"]),
    ("bn", &["bengali", "bangla", "বাংলা", "ben"]),
    ("th", &["thai", "ไทย", "thaï", "tha"]),
    ("vi", &["vietnamese", "tiếng việt", "vietnamien", "vie"]),
    ("id", &["indonesian", "bahasa indonesia", "indonésien", "ind"]),
    ("ms", &["malay", "bahasa melayu", "malais", "msa", "may"]),
    ("ca", &["catalan", "català", "catalán", "cat"]),
    ("eu", &["basque", "euskara", "eus", "baq"]),
    ("gl", &["galician", "galego", "glg"]),
    ("ga", &["irish", "gaeilge", "gle"]),
    ("is", &["icelandic", "íslenska", "isl", "ice"]),
    ("fa", &["persian", "farsi", "فارسی", "fas", "per"]),
    ("ur", &["urdu", "اردو", "urd"]),
    ("sw", &["swahili", "kiswahili", "swa"]),
    ("af", &["afrikaans", "afr"]),
    ("tl", &["tagalog", "filipino", "tgl", "fil"]),
];

/// ISO 639-1 code for a code, tag (`fr-FR`, `pt_BR`), ISO 639-2 code or language name in
/// English or the language itself.
pub fn language_code(s: &str) -> Option<&'static str> {
    with_lower(s, language_code_lower)
}

fn language_code_lower(t: &str) -> Option<&'static str> {
    if t.is_empty() {
        return None;
    }
    let primary = t.split(['-', '_']).next().unwrap_or(t);
    if let Some((code, _)) = LANGUAGES.iter().find(|(code, _)| *code == primary) {
        return Some(code);
    }
    // Names, also in the "French (France)" form.
    let name = t.split('(').next().unwrap_or(t).trim();
    for candidate in [t, name, primary] {
        if let Some((code, _)) = LANGUAGES.iter().find(|(_, names)| names.contains(&candidate)) {
            return Some(code);
        }
    }
    None
}

/// Everything mapped from one file.
#[derive(Debug, Default)]
pub struct Mapped {
    /// Valid users, in file order.
    pub users: Vec<SourcedUser>,
    /// Invalid rows; duplicates of one unique id are all here, each with its line.
    pub errors: Vec<RowError>,
    /// Data rows read (valid + invalid).
    pub rows: u64,
    /// Date columns written the other way round (see `date_order_fault`).
    pub swapped_dates: SwappedDates,
    /// Lines of rows whose unique id is on more than one row (`mark_duplicates`), sorted. A
    /// typo or a mangled id (`1.00000E+11` for many) makes one person's row carry another's id:
    /// the person it really is reads as absent, so these rows hold absentees like a row
    /// without an id does.
    pub ambiguous: Vec<u64>,
    /// Rows out of `[scope]`: not mapped, not counted in `rows`; the person's id (when
    /// readable) and line, in file order.
    pub out_of_scope: Vec<OutOfScope>,
    /// The dates of users that have any (`[fields] start_date`, `end_date`), by external id.
    pub dates: Vec<(String, dates::Dates)>,
    /// Rows of an id on many rows that were counted, not kept, once the memory budget filled
    /// (`footprint::compact_duplicates`), by normalised id: invalid rows not in `errors`.
    pub duplicates_untold: HashMap<String, u64>,
    /// How full each mapped column is (`fill`): compared with the last good file's.
    pub fill: fill::ColumnFill,
    /// Rows at the end of the file that are a footer ("Total: 100"), not people: skipped,
    /// not counted in `rows` (`footer`).
    pub footers: Vec<footer::Footer>,
}

/// A row of the file out of the mapping's `[scope]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutOfScope {
    pub external_id: String,
    pub line: u64,
}

impl Mapped {
    /// A date column some of whose values read only with day and month swapped: the file
    /// must not be synced, since its other dates with a day up to 12 were read swapped. The
    /// error names the column, the format, and example lines.
    pub fn date_order_fault(&self, file: &str) -> Option<FormatError> {
        let (key, c) = self.swapped_dates.columns.iter().next()?;
        let examples = c.examples.iter().map(|(l, v)| format!("line {l} \"{v}\"")).collect::<Vec<_>>().join(", ");
        let more = if c.rows > c.examples.len() as u64 { format!(" and {} more", c.rows - c.examples.len() as u64) } else { String::new() };
        let fix = match swapped_format_text(&c.format) {
            Some(other) => format!("Set {key}.date = \"{other}\" in the mapping if the export writes every date that way"),
            None => format!("Fix {key}.date in the mapping"),
        };
        let others = if self.swapped_dates.columns.len() > 1 {
            format!(
                " (so do the columns of {})",
                self.swapped_dates.columns.keys().skip(1).map(String::as_str).collect::<Vec<_>>().join(", ")
            )
        } else {
            String::new()
        };
        Some(FormatError::Malformed {
            file: file.into(),
            line: c.examples.first().map(|(l, _)| *l),
            message: format!(
                "column \"{}\" ({key}, date = \"{}\") has {} value(s) that are not dates in that format but are with day and month swapped: {examples}{more}{others}. The export writes dates the other way round, so its other dates with a day up to 12 would be read with day and month exchanged; nothing was synced from this file. {fix}, or ask the customer for the usual export",
                c.column, c.format, c.rows
            ),
        })
    }

    /// Rows with at least one error (a row may have several errors): the figure for
    /// `max_invalid` and the report's `invalid` count.
    pub fn invalid_rows(&self) -> u64 {
        let mut lines: Vec<u64> = self.errors.iter().map(|e| e.line).collect();
        lines.sort_unstable();
        lines.dedup();
        lines.len() as u64 + self.untold_rows()
    }

    /// Invalid rows counted but not listed in `errors` (`duplicates_untold`).
    pub fn untold_rows(&self) -> u64 {
        self.duplicates_untold.values().sum()
    }

    /// Lines of invalid rows whose person cannot be told (no readable id, or an id on several
    /// rows): while there is one, the plan deactivates nobody absent from the file, since it
    /// may be them.
    pub fn unidentified_lines(&self) -> Vec<u64> {
        let mut named: Vec<u64> = self.errors.iter().filter(|e| e.external_id.is_some()).map(|e| e.line).collect();
        named.sort_unstable();
        let mut lines: Vec<u64> = self.errors.iter().map(|e| e.line).filter(|l| named.binary_search(l).is_err()).collect();
        lines.extend_from_slice(&self.ambiguous);
        lines.sort_unstable();
        lines.dedup();
        lines
    }

    /// Unique ids of invalid rows, where readable: the plan keeps these people as they were.
    pub fn protected_ids(&self) -> std::collections::BTreeSet<String> {
        self.errors.iter().filter_map(|e| e.external_id.clone()).collect()
    }
}

/// Lines a duplicate message names at most; the count says how many there are.
const DUPLICATE_LINES_SHOWN: usize = 10;

/// Every row of a unique id that occurs on more than one row (valid or invalid) becomes an
/// error naming the others: none of them is synced. Linear in the rows: one map of id →
/// lines, one message per id shared by its rows, at most `DUPLICATE_LINES_SHOWN` lines in it.
pub(crate) fn mark_duplicates(out: &mut Mapped, mapper: &Mapper) {
    let uid = mapper.mapping.unique_id;
    let rule = mapper.mapping.id_rule();
    // Every id's key hashed, with its line and where it came from, then sorted: rows sharing
    // a key sit side by side. A million ids in a map of owned keys was a tenth of a dry run
    // (perf: cache misses on a 60 MB table); 24 bytes an id, sorted, is a few times less.
    // Equal hashes are only candidates: the keys themselves are compared within a run.
    let hasher = foldhash::fast::FixedState::default();
    let from_users = out.users.len();
    let id_of = |at: u32| -> &str {
        let at = at as usize;
        if at < from_users {
            &out.users[at].user.external_id
        } else {
            out.errors[at - from_users].external_id.as_deref().unwrap_or_default()
        }
    };
    let mut keyed: Vec<(u64, u64, u32)> = Vec::with_capacity(out.users.len() + out.errors.len());
    for (i, u) in out.users.iter().enumerate() {
        keyed.push((std::hash::BuildHasher::hash_one(&hasher, rule.key(&u.user.external_id)), u.line, i as u32));
    }
    for (j, e) in out.errors.iter().enumerate() {
        if let Some(id) = &e.external_id {
            keyed.push((std::hash::BuildHasher::hash_one(&hasher, rule.key(id)), e.line, (from_users + j) as u32));
        }
    }
    keyed.sort_unstable();
    // Keys on more than one distinct line (a row with several errors names its id on each).
    let mut dups: HashMap<String, std::sync::Arc<str>> = HashMap::new();
    let mut ambiguous: Vec<u64> = Vec::new();
    for run in keyed.chunk_by(|a, b| a.0 == b.0).filter(|r| r.len() > 1) {
        // Nearly always one key per run; lines in order within each key.
        let mut by_key: Vec<(std::borrow::Cow<'_, str>, Vec<u64>)> = Vec::new();
        for &(_, line, at) in run {
            let key = rule.key(id_of(at));
            match by_key.iter_mut().find(|(k, _)| *k == key) {
                Some((_, lines)) if lines.last() != Some(&line) => lines.push(line),
                Some(_) => {}
                None => by_key.push((key, vec![line])),
            }
        }
        for (key, lines) in by_key.into_iter().filter(|(_, lines)| lines.len() > 1) {
            ambiguous.extend_from_slice(&lines);
            // Rows counted past the memory budget are on lines not kept.
            let total = lines.len() as u64 + out.duplicates_untold.get(key.as_ref()).copied().unwrap_or(0);
            let shown = lines.iter().take(DUPLICATE_LINES_SHOWN).map(u64::to_string).collect::<Vec<_>>().join(", ");
            let more = match total.saturating_sub(DUPLICATE_LINES_SHOWN.min(lines.len()) as u64) {
                0 => String::new(),
                n => format!(" and {n} more"),
            };
            let message = format!(
                "unique id \"{}\" ({}) is on {total} rows (lines {shown}{more}); none of them is synced until the export has one row per person",
                excerpt(&key),
                unique_field(uid).name(),
            );
            dups.insert(key.into_owned(), message.into());
        }
    }
    drop(keyed);
    if dups.is_empty() {
        return;
    }
    ambiguous.sort_unstable();
    ambiguous.dedup();
    out.ambiguous = ambiguous;
    let column = mapper.unique_column();
    let mut extra = Vec::new();
    out.users.retain(|u| match dups.get(rule.key(&u.user.external_id).as_ref()) {
        Some(message) => {
            extra.push(RowError {
                line: u.line,
                column: column.clone(),
                message: message.to_string(),
                external_id: Some(u.user.external_id.to_string()),
            });
            false
        }
        None => true,
    });
    // One duplicate error per invalid line, however many errors the line has.
    let mut done: std::collections::HashSet<u64> = std::collections::HashSet::new();
    for e in &out.errors {
        if let Some(id) = &e.external_id
            && let Some(message) = dups.get(rule.key(id).as_ref())
            && done.insert(e.line)
        {
            extra.push(RowError { line: e.line, column: column.clone(), message: message.to_string(), external_id: Some(id.clone()) });
        }
    }
    out.errors.extend(extra);
    out.errors.sort_by_key(|e| e.line);
}

/// Row errors grouped by column for reports, largest group first:
/// "Email: 12 rows invalid, first at lines 4, 19, 22 (line 4: \"x@\" is not a valid …)".
pub fn group_errors(errors: &[RowError]) -> Vec<String> {
    let mut groups: BTreeMap<String, Vec<&RowError>> = BTreeMap::new();
    for e in errors {
        groups.entry(e.column.clone().unwrap_or_else(|| "Row".into())).or_default().push(e);
    }
    let mut out: Vec<(usize, String)> = groups
        .into_iter()
        .map(|(col, mut es)| {
            es.sort_by_key(|e| e.line);
            es.dedup_by_key(|e| e.line);
            let first: Vec<String> = es.iter().take(3).map(|e| e.line.to_string()).collect();
            let n = es.len();
            (
                n,
                format!(
                    "{col}: {n} row{} invalid, first at line{} {} (line {}: {})",
                    if n == 1 { "" } else { "s" },
                    if n == 1 { "" } else { "s" },
                    first.join(", "),
                    es[0].line,
                    es[0].message
                ),
            )
        })
        .collect();
    out.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    out.into_iter().map(|(_, s)| s).collect()
}

/// The first `max` users as an aligned text table, for `rostersync test`.
pub fn preview_table(users: &[SourcedUser], max: usize) -> String {
    const WIDTH: usize = 28;
    let cut = |s: &str| -> String {
        let s: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
        if s.chars().count() > WIDTH { format!("{}…", s.chars().take(WIDTH - 1).collect::<String>()) } else { s }
    };
    let mut rows: Vec<Vec<String>> = vec![
        ["line", "unique id", "email", "employee id", "first name", "last name", "lang", "active", "attributes"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
    ];
    for u in users.iter().take(max) {
        let p = &u.user;
        rows.push(vec![
            u.line.to_string(),
            cut(&p.external_id),
            cut(p.email().unwrap_or("")),
            cut(p.employee_id().unwrap_or("")),
            cut(p.first_name()),
            cut(p.last_name()),
            p.language().to_string(),
            if p.active { "yes".into() } else { "no".into() },
            // Last column: not cut to the width, but kept on one line.
            p.stored_attributes().map(|(k, v)| format!("{k}={}", cut(v))).collect::<Vec<_>>().join(", "),
        ]);
    }
    let n = rows[0].len();
    let widths: Vec<usize> = (0..n).map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for (k, r) in rows.iter().enumerate() {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| if i + 1 == n { c.clone() } else { format!("{c}{}", " ".repeat(widths[i] - c.chars().count())) })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
        if k == 0 {
            let rule: Vec<String> =
                widths.iter().enumerate().map(|(i, w)| "-".repeat(if i + 1 == n { (*w).max(10) } else { *w })).collect();
            out.push_str(&rule.join("  "));
            out.push('\n');
        }
    }
    if users.len() > max {
        out.push_str(&format!("… and {} more\n", users.len() - max));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_is_what_trim_empties() {
        for v in ["", " ", "\t \n", "\u{a0}", "\u{2003}x", "\u{3000}", "a", " a", "é", "\u{feff}", "-", "\u{1}"] {
            assert_eq!(is_blank(v), v.trim().is_empty(), "{v:?}");
        }
    }
    use crate::format::{FormatError, ReadError};
    use std::path::Path;

    #[test]
    fn an_iso_date_read_directly_is_the_date_chrono_reads() {
        let chrono = |t: &str| date_with(t, chrono::format::StrftimeItems::new("%Y-%m-%d"));
        for t in ["2018-01-17", "0000-01-01", "9999-12-31", "2024-02-29", "2023-02-29", "2018-13-01", "2018-00-10", "2018-01-32"] {
            assert_eq!(plain_iso(t), chrono(t), "{t}");
        }
        // Not exactly ISO: left to chrono, which may still read them.
        for t in ["2018-1-17", "+2018-01-17", "2018/01/17", "2018-01-1x", "１２３４-01-01", ""] {
            assert_eq!(plain_iso(t), None, "{t}");
        }
        for t in ["2018-01-17", "0000-01-01", "0999-12-31"] {
            assert_eq!(plain_iso(t).map(iso_date).unwrap(), t, "written back as read");
        }
        assert_eq!(parse_date_items(" 2018-01-17 ", "%Y-%m-%d", None).unwrap(), "2018-01-17");
        assert_eq!(parse_date_items("2018-1-7", "%Y-%m-%d", None).unwrap(), "2018-01-07");
        assert!(parse_date_items("2023-02-29", "%Y-%m-%d", None).is_err());
    }

    const MAPPING: &str = r#"
unique_id = "employee_id"
[fields]
employee_id = "Id"
first_name  = { column = "First", transform = ["trim", "collapse-spaces", "title-case"] }
last_name   = { column = "Last", transform = ["trim", "uppercase"] }
email       = { column = "Email", transform = ["trim", "lowercase"] }
language    = { column = "Lang", default = "en" }
active      = { column = "Status", map = { "Employed" = true, "Left" = false } }
[attributes]
full_name = { template = "{First} {Last}" }
hire_date = { column = "Hired", date = "%d/%m/%Y" }
site      = { column = "Site", map = { "PAR" = "Paris" }, fallback = "Other" }
"#;

    fn mapper() -> Mapper {
        let m = crate::config::parse_mapping(MAPPING, Path::new("m.toml")).unwrap();
        Mapper::new(&m)
    }

    /// A record from (column, value) pairs; columns not given are absent.
    fn rec(mapper: &Mapper, line: u64, cells: &[(&str, &str)]) -> Record {
        let values = mapper.columns().iter().map(|c| cells.iter().find(|(k, _)| k == c).map(|(_, v)| *v));
        Record::from_values(line, values)
    }

    fn good() -> Vec<(&'static str, &'static str)> {
        vec![
            ("Id", "00123"),
            ("First", "  jean-luc   o'brien "),
            ("Last", "Müller"),
            ("Email", " Zoe@Example.COM "),
            ("Lang", "Français"),
            ("Status", "Employed"),
            ("Hired", "15/03/2021"),
            ("Site", "PAR"),
        ]
    }

    #[test]
    fn a_good_row_maps_field_by_field() {
        let m = mapper();
        let u = m.map(&rec(&m, 7, &good())).unwrap();
        assert_eq!(u.external_id, "00123");
        assert_eq!(u.employee_id(), Some("00123"));
        assert_eq!(u.first_name(), "Jean-Luc O'Brien");
        assert_eq!(u.last_name(), "MÜLLER");
        assert_eq!(u.email(), Some("zoe@example.com"));
        assert_eq!(u.language(), "fr");
        assert!(u.active);
        assert_eq!(u.attributes().get("hire_date"), Some("2021-03-15"));
        assert_eq!(u.attributes().get("site"), Some("Paris"));
        assert_eq!(u.attributes().get("full_name"), Some("  jean-luc   o'brien  Müller"));
    }

    #[test]
    fn the_manager_id_attribute_becomes_the_typed_manager() {
        let mapping = format!("{MAPPING}manager_id = {{ column = \"Boss\", transform = [\"trim\"] }}\n");
        let m = Mapper::new(&crate::config::parse_mapping(&mapping, Path::new("m.toml")).unwrap());
        let mut cells = good();
        cells.push(("Boss", " E42 "));
        let u = m.map(&rec(&m, 2, &cells)).unwrap();
        assert_eq!(u.manager.as_deref(), Some("E42"));
        assert!(!u.attributes().contains_key(MANAGER_ATTRIBUTE), "not an attribute as well: {:?}", u.attributes());
        assert_eq!(u.attributes().len(), 3);
        cells.pop();
        assert_eq!(m.map(&rec(&m, 3, &cells)).unwrap().manager, None, "an empty cell is no manager");
    }

    #[test]
    fn defaults_fallbacks_and_empty_attributes() {
        let m = mapper();
        let mut cells = good();
        cells.retain(|(k, _)| *k != "Lang" && *k != "Hired");
        cells.iter_mut().for_each(|c| {
            if c.0 == "Site" {
                c.1 = "NYC"
            }
        });
        let u = m.map(&rec(&m, 2, &cells)).unwrap();
        assert_eq!(u.language(), "en", "absent language takes the default");
        assert_eq!(u.attributes().get("site"), Some("Other"), "fallback for values the map does not list");
        assert!(!u.attributes().contains_key("hire_date"), "empty attributes are left out");
    }

    #[test]
    fn row_rules_table() {
        let m = mapper();
        // (cell to change, new value, expected column, expected message fragment)
        let cases: &[(&str, &str, &str, &str)] = &[
            ("Id", "", "Id", "the unique id (employee_id) is empty"),
            ("First", "   ", "First", "first name is empty"),
            ("Last", "", "Last", "last name is empty"),
            ("Email", "zoe@", "Email", "not a valid email address: nothing after the @"),
            ("Email", "zoe.example.com", "Email", "no @"),
            ("Email", "zo e@example.com", "Email", "spaces"),
            ("Lang", "Klingon", "Lang", "\"Klingon\" is not a language"),
            ("Status", "Maybe", "Status", "\"Maybe\" is not an active flag"),
            ("Hired", "2021/03/15", "Hired", "not a date in the format \"%d/%m/%Y\""),
        ];
        for (col, val, want_col, want_msg) in cases {
            let mut cells = good();
            cells.iter_mut().for_each(|c| {
                if c.0 == *col {
                    c.1 = val
                }
            });
            let errs = m.map(&rec(&m, 9, &cells)).expect_err(&format!("{col}={val:?} must fail"));
            assert_eq!(errs.len(), 1, "{col}={val:?}: {errs:?}");
            assert_eq!(errs[0].line, 9);
            assert_eq!(errs[0].column.as_deref(), Some(*want_col), "{col}={val:?}");
            assert!(errs[0].message.contains(want_msg), "{col}={val:?}: {}", errs[0].message);
            let expected_id = if *col == "Id" { None } else { Some("00123") };
            assert_eq!(errs[0].external_id.as_deref(), expected_id, "{col}={val:?}");
        }
    }

    #[test]
    fn control_characters_in_pushed_values_make_the_row_invalid() {
        let m = mapper();
        // (cell, value, expected message fragment); each one error on that column.
        let cases: &[(&str, &str, &str)] = &[
            ("Last", "Mül\u{0}ler", "holds NUL (U+0000) at character 4: \"MÜL\\u{0}LER\""),
            // (A tab in First is not one: collapse-spaces turns it into a space.)
            ("Last", "Ann\tMarie", "a tab (U+0009)"),
            ("Email", "zoe@example.com\u{1b}[31m", "an escape (U+001B)"),
            ("Last", "Lee\u{90}x", "a control character (U+0090)"),
        ];
        for (col, val, want) in cases {
            let mut cells = good();
            cells.iter_mut().for_each(|c| {
                if c.0 == *col {
                    c.1 = val
                }
            });
            let errs = m.map(&rec(&m, 5, &cells)).expect_err(&format!("{col}={val:?} must fail"));
            // Names also feed the full_name template, which holds the character as well.
            let want_cols: &[&str] = if *col == "Email" { &["Email"] } else { &[col, "First, Last"] };
            assert_eq!(errs.iter().map(|e| e.column.as_deref().unwrap_or("")).collect::<Vec<_>>(), want_cols, "{errs:?}");
            assert!(errs[0].message.contains(want), "{col}={val:?}: {}", errs[0].message);
            for e in &errs {
                assert!(!e.message.chars().any(char::is_control), "the message carries no control character: {:?}", e.message);
                assert_eq!(e.external_id.as_deref(), Some("00123"), "the person is known, so kept as they were");
            }
        }
        // At the ends, a trim removes it (and the message says so when there is none).
        let mut cells = good();
        cells.iter_mut().for_each(|c| {
            if c.0 == "Email" {
                c.1 = "\tzoe@example.com\r\n"
            }
        });
        assert_eq!(m.map(&rec(&m, 5, &cells)).unwrap().email(), Some("zoe@example.com"), "trimmed by the mapping's transform");
        let mut cells = good();
        cells.iter_mut().for_each(|c| {
            if c.0 == "Id" {
                c.1 = "00123\t"
            }
        });
        let errs = m.map(&rec(&m, 5, &cells)).unwrap_err();
        assert!(errs[0].message.ends_with("(or add \"trim\" to the transforms of this field)"), "{}", errs[0].message);
        // A flag or a language is read, not pushed: a stray tab there is harmless.
        let mut cells = good();
        cells.iter_mut().for_each(|c| match c.0 {
            "Status" => c.1 = "Employed\t",
            "Lang" => c.1 = "fr\t",
            _ => {}
        });
        assert!(m.map(&rec(&m, 5, &cells)).is_ok());
        // A control character in the unique id: nobody is named (the row holds absentees).
        let mut cells = good();
        cells.iter_mut().for_each(|c| {
            if c.0 == "Id" {
                c.1 = "001\u{0}23"
            }
        });
        let errs = m.map(&rec(&m, 5, &cells)).unwrap_err();
        assert_eq!((errs.len(), errs[0].external_id.as_deref()), (1, None), "{errs:?}");
    }

    #[test]
    fn messages_quote_values_as_bounded_excerpts() {
        let m = mapper();
        let long = format!("{}\u{1b}]0;pwned\u{7}", "x".repeat(500));
        for col in ["Email", "Lang", "Status", "Hired"] {
            let mut cells = good();
            cells.iter_mut().for_each(|c| {
                if c.0 == col {
                    c.1 = &long
                }
            });
            let errs = m.map(&rec(&m, 5, &cells)).unwrap_err();
            let msg = &errs[0].message;
            assert!(msg.len() < 450 && !msg.chars().any(char::is_control), "{col}: {msg}");
        }
    }

    /// A mapping with one date column, and the records of these values.
    fn dated(format: &str, values: &[&str]) -> (Mapper, Vec<Result<Record, ReadError>>) {
        let src = format!(
            "unique_id = \"employee_id\"\n[fields]\nemployee_id = \"Id\"\nfirst_name = \"F\"\nlast_name = \"L\"\n[attributes]\nhire_date = {{ column = \"Hired\", date = \"{format}\" }}\n"
        );
        let m = Mapper::new(&crate::config::parse_mapping(&src, Path::new("m.toml")).unwrap());
        let records = values
            .iter()
            .enumerate()
            .map(|(i, v)| rec(&m, i as u64 + 2, &[("Id", format!("E{i}").as_str()), ("F", "Ann"), ("L", "Lee"), ("Hired", v)]))
            .map(Ok)
            .collect();
        (m, records)
    }

    #[test]
    fn an_attribute_the_platform_will_not_take_invalidates_no_row() {
        let (m, records) = dated("%m/%d/%Y", &["04/03/2021", "25/12/2020", "not a date", "31/01/2022"]);
        let unsent: std::collections::BTreeSet<String> = ["hire_date".to_string()].into();
        let m = m.leaving_out(&unsent);
        let out = collect(Box::new(records.into_iter()), &m).unwrap();
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        assert!(out.date_order_fault("f.csv").is_none(), "dates never sent taint nothing");
        let hired: Vec<Option<&str>> = out.users.iter().map(|u| u.user.attributes().get("hire_date")).collect();
        assert_eq!(hired, [Some("2021-04-03"), None, None, None], "values that read are kept, the others left out");
        // Sent, the same values are row errors.
        let (m, records) = dated("%m/%d/%Y", &["04/03/2021", "not a date"]);
        assert_eq!(collect(Box::new(records.into_iter()), &m).unwrap().errors.len(), 1);
    }

    #[test]
    fn a_date_column_written_the_other_way_round_stops_the_file() {
        // A US format on UK data: the days up to 12 read swapped, the others fail.
        let (m, records) = dated("%m/%d/%Y", &["04/03/2021", "25/12/2020", "01/02/2019", "31/01/2022", "2020-06-30", "13/13/2020"]);
        let out = collect(Box::new(records.into_iter()), &m).unwrap();
        let e = out.date_order_fault("f.csv").expect("the column is refused");
        let msg = e.to_string();
        assert!(msg.starts_with("f.csv:3: column \"Hired\" (attributes.hire_date, date = \"%m/%d/%Y\") has 2 value(s)"), "{msg}");
        assert!(msg.contains("line 3 \"25/12/2020\", line 5 \"31/01/2022\""), "{msg}");
        assert!(msg.contains("Set attributes.hire_date.date = \"%d/%m/%Y\""), "{msg}");
        assert!(!msg.contains("13/13/2020"), "a value that is no date either way is an ordinary row error: {msg}");
        // Many rows: bounded examples, the count says how many.
        let days: Vec<String> = (0..5000).map(|i| format!("{}/01/2020", 13 + i % 18)).collect();
        let (m, records) = dated("%m/%d/%Y", &days.iter().map(String::as_str).collect::<Vec<_>>());
        let msg = collect(Box::new(records.into_iter()), &m).unwrap().date_order_fault("f.csv").unwrap().to_string();
        assert!(msg.contains("has 5000 value(s)") && msg.contains("and 4997 more") && msg.len() < 800, "{msg}");
    }

    #[test]
    fn a_date_column_that_fits_is_not_judged() {
        for (format, values) in [
            ("%d/%m/%Y", &["04/03/2021", "25/12/2020", "2020-06-30"][..]),
            ("%m/%d/%Y", &["04/03/2021", "12/25/2020"][..]),
            // A month name cannot be read the other way round.
            ("%d %b %Y", &["04 Mar 2021", "31 Dec 2020"][..]),
            // Garbage is a row error, not a column-level one.
            ("%d.%m.%Y", &["31.12.2020", "soon"][..]),
        ] {
            let (m, records) = dated(format, values);
            let out = collect(Box::new(records.into_iter()), &m).unwrap();
            assert!(out.date_order_fault("f.csv").is_none(), "{format} {values:?}");
        }
        assert_eq!(swapped_format_text("%-d.%-m.%Y"), Some("%-m.%-d.%Y".into()));
        assert_eq!(swapped_format_text("%Y-%m"), None);
    }

    #[test]
    fn a_row_reports_all_its_errors() {
        let m = mapper();
        let errs = m.map(&rec(&m, 3, &[("Id", "E1"), ("Email", "bad"), ("Status", "?")])).unwrap_err();
        let cols: Vec<_> = errs.iter().map(|e| e.column.clone().unwrap_or_default()).collect();
        assert_eq!(cols, vec!["First", "Last", "Email", "Status"], "{errs:?}");
    }

    #[test]
    fn emails_table() {
        for ok in [
            "a@b.co",
            "first.last+tag@example.com",
            "zoë@exemple.fr",
            "用户@例子.广告",
            "o'brien@example.ie",
            "\"john doe\"@x.org".replace(' ', "_").as_str(),
            "x@[192.168.0.1]",
            "a@xn--bcher-kva.example",
        ] {
            assert_eq!(check_email(ok), Ok(()), "{ok}");
        }
        for bad in ["", "@b.co", "a@", "a@b", "a@@b.co", "a..b@c.co", ".a@b.co", "a@-b.co", "a@b..co", "a b@c.co", "a@b.123", "a@b_c.co"] {
            assert!(check_email(bad).is_err(), "{bad}");
            assert!(!plainly_valid_email(bad), "{bad}");
        }
        // The quick look accepts the usual address, and nothing the general checks refuse.
        for plain in ["a@b.co", "first.last+tag@example.com", "sarah.schafer.0@example.com", "a-b_c@x-y.example.org"] {
            assert!(plainly_valid_email(plain), "{plain}");
        }
        let long_local = format!("{}@b.co", "a".repeat(65));
        let long_label = format!("a@{}.co", "b".repeat(64));
        let long = format!("a@{}.co", vec!["b".repeat(63); 4].join("."));
        for odd in [
            "a.@b.co",
            "a@b.co.",
            "a@.b.co",
            "a@b-.co",
            "a@b.c-",
            "a@1.2",
            "a@b@c.co",
            "a@b",
            "@",
            "a@bc",
            long_local.as_str(),
            long_label.as_str(),
            long.as_str(),
        ] {
            assert!(!plainly_valid_email(odd) || check_email_generally(odd).is_ok(), "{odd}");
            assert_eq!(check_email(odd), check_email_generally(odd), "{odd}");
        }
        // Every text of up to six of these characters: none the quick look accepts is refused.
        let alphabet = [b'a', b'1', b'.', b'@', b'-', b'_', b'+', b' '];
        let mut text = Vec::new();
        let mut accepted = 0;
        for len in 0..=6u32 {
            for mut n in 0..alphabet.len().pow(len) {
                text.clear();
                for _ in 0..len {
                    text.push(alphabet[n % alphabet.len()]);
                    n /= alphabet.len();
                }
                let t = std::str::from_utf8(&text).unwrap();
                if plainly_valid_email(t) {
                    accepted += 1;
                    assert_eq!(check_email_generally(t), Ok(()), "{t}");
                }
            }
        }
        assert!(accepted > 100, "the quick look took {accepted} texts");
    }

    #[test]
    fn languages_table() {
        for (input, code) in [
            ("fr", "fr"),
            ("FR", "fr"),
            ("fr-FR", "fr"),
            ("pt_BR", "pt"),
            ("French", "fr"),
            ("Français", "fr"),
            ("francais", "fr"),
            ("Deutsch", "de"),
            ("español", "es"),
            ("Nederlands", "nl"),
            ("日本語", "ja"),
            ("German (Switzerland)", "de"),
            ("eng", "en"),
        ] {
            assert_eq!(language_code(input), Some(code), "{input}");
        }
        for bad in ["", "xx", "Klingon", "f"] {
            assert_eq!(language_code(bad), None, "{bad}");
        }
    }

    #[test]
    fn flags_table() {
        for (s, b) in [
            ("true", true),
            ("Yes", true),
            ("1", true),
            ("ACTIVE", true),
            ("oui", true),
            ("false", false),
            ("no", false),
            ("0", false),
            ("Inactive", false),
            ("nein", false),
        ] {
            assert_eq!(parse_flag(s), Some(b), "{s}");
        }
        assert_eq!(parse_flag("maybe"), None);
    }

    #[test]
    fn transforms_table() {
        use Transform::*;
        for (input, ts, out) in [
            ("  a  b ", vec![Trim], "a  b"),
            ("  a  b ", vec![CollapseSpaces], "a b"),
            ("ÉMILIE", vec![Lowercase], "émilie"),
            ("Ann@Example.COM", vec![Lowercase], "ann@example.com"),
            ("e17x-ab", vec![Uppercase], "E17X-AB"),
            ("straße", vec![Uppercase], "STRASSE"),
            ("mARIE-claire d'ARC", vec![TitleCase], "Marie-Claire D'Arc"),
            ("DON'T stop", vec![TitleCase], "Don't Stop"),
        ] {
            assert_eq!(apply_transforms(input.to_string(), &ts), out, "{input} {ts:?}");
        }
    }

    #[test]
    fn duplicates_are_all_errors_and_keep_their_ids() {
        let m = mapper();
        let mut bad = good();
        bad.iter_mut().for_each(|c| {
            if c.0 == "Email" {
                c.1 = "nope"
            }
        });
        let mut other = good();
        other.iter_mut().for_each(|c| {
            if c.0 == "Id" {
                c.1 = "E9"
            }
        });
        let records: Vec<Result<Record, ReadError>> = vec![
            Ok(rec(&m, 2, &good())),
            Ok(rec(&m, 3, &other)),
            Ok(rec(&m, 4, &good())),
            Ok(rec(&m, 5, &bad)),
            Err(ReadError::unidentified(RowError { line: 6, column: None, message: "found 3 fields".into(), external_id: None })),
        ];
        let out = collect(Box::new(records.into_iter()), &m).unwrap();
        assert_eq!(out.rows, 5);
        assert_eq!(out.invalid_rows(), 4, "lines 2, 4, 5, 6; line 5 has two errors");
        assert_eq!(out.protected_ids().into_iter().collect::<Vec<_>>(), vec!["00123".to_string()]);
        assert_eq!(out.users.iter().map(|u| u.line).collect::<Vec<_>>(), vec![3]);
        let dup: Vec<u64> = out.errors.iter().filter(|e| e.message.contains("is on 3 rows (lines 2, 4, 5)")).map(|e| e.line).collect();
        assert_eq!(dup, vec![2, 4, 5]);
        assert!(out.errors.iter().filter(|e| e.line != 6).all(|e| e.external_id.as_deref() == Some("00123")));
        let groups = group_errors(&out.errors);
        assert_eq!(groups[0], format!("Id: 3 rows invalid, first at lines 2, 4, 5 (line 2: {})", out.errors[0].message));
        assert!(groups.iter().any(|g| g.starts_with("Email: 1 row invalid, first at line 5")), "{groups:?}");
        assert!(groups.iter().any(|g| g.starts_with("Row: 1 row invalid, first at line 6")), "{groups:?}");
    }

    #[test]
    fn preview_aligns_columns() {
        let m = mapper();
        let u = m.map(&rec(&m, 7, &good())).unwrap();
        let mut v = u.clone();
        v.set_first_name("Zoë");
        v.external_id = "E2".into();
        let mut x = m.map(&rec(&m, 1, &good())).unwrap();
        x.external_id = "x".into();
        let users = vec![
            SourcedUser { user: Box::new(u), line: 7 },
            SourcedUser { user: Box::new(v), line: 12 },
            SourcedUser { user: Box::new(x), line: 13 },
        ];
        let t = preview_table(&users, 2);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 5, "{t}");
        assert!(lines[0].starts_with("line  unique id  email            "), "{t}");
        assert!(
            lines[2].starts_with("7     00123      zoe@example.com  00123        Jean-Luc O'Brien  MÜLLER     fr    yes     full_name="),
            "{t}"
        );
        assert!(lines[3].starts_with("12    E2         zoe@example.com  00123        Zoë               MÜLLER"), "{t}");
        assert_eq!(lines[4], "… and 1 more");
    }

    #[test]
    fn rows_sharing_an_id_hold_absentees_like_a_row_without_one() {
        // A typo gives line 3 the id of line 2: the person line 3 really is reads as absent,
        // so the plan must hold every absentee (`unidentified_lines`), not only the shared id.
        let m = mapper();
        let records: Vec<Result<Record, ReadError>> = vec![Ok(rec(&m, 2, &good())), Ok(rec(&m, 3, &good()))];
        let out = collect(Box::new(records.into_iter()), &m).unwrap();
        assert!(out.users.is_empty());
        assert_eq!(out.ambiguous, vec![2, 3]);
        assert_eq!(out.unidentified_lines(), vec![2, 3]);
        // One row per id: nothing ambiguous.
        let records: Vec<Result<Record, ReadError>> = vec![Ok(rec(&m, 2, &good()))];
        let out = collect(Box::new(records.into_iter()), &m).unwrap();
        assert!(out.ambiguous.is_empty() && out.unidentified_lines().is_empty());
    }

    #[test]
    fn a_shifted_row_names_nobody_and_makes_no_duplicate() {
        let m = mapper();
        let mut other = good();
        other.iter_mut().for_each(|c| {
            if c.0 == "Id" {
                c.1 = "E9"
            }
        });
        let records: Vec<Result<Record, ReadError>> = vec![
            Ok(rec(&m, 2, &other)),
            Err(ReadError::unidentified(RowError { line: 3, column: None, message: "found 9 fields".into(), external_id: None })),
            Ok(rec(&m, 4, &good())),
        ];
        let out = collect(Box::new(records.into_iter()), &m).unwrap();
        assert_eq!(out.rows, 3);
        assert_eq!(out.users.iter().map(|u| u.line).collect::<Vec<_>>(), vec![2, 4]);
        assert_eq!(out.errors.len(), 1);
        assert_eq!(out.errors[0].external_id, None, "no id is ever guessed from a shifted row");
        assert_eq!(out.unidentified_lines(), vec![3]);
    }

    #[test]
    #[allow(clippy::result_large_err)] // test data; ReadError is what the format yields
    fn many_rows_of_one_id_make_bounded_messages() {
        let m = mapper();
        let n = 25_000u64;
        let records: Vec<Result<Record, ReadError>> = (0..n).map(|i| Ok(rec(&m, i + 2, &good()))).collect();
        let out = collect(Box::new(records.into_iter()), &m).unwrap();
        assert!(out.users.is_empty());
        assert_eq!(out.errors.len() as u64, n, "one error per row");
        let msg = &out.errors[0].message;
        assert!(msg.contains("is on 25000 rows (lines 2, 3, 4, 5, 6, 7, 8, 9, 10, 11 and 24990 more)"), "{msg}");
        assert!(out.errors.iter().all(|e| e.message.len() < 400), "every message is bounded");
        // Any of them may be someone whose id was mangled into this one: all hold absentees.
        assert_eq!(out.unidentified_lines().len() as u64, n);
    }

    #[test]
    fn a_file_fault_stops_collect() {
        let m = mapper();
        let records: Vec<Result<Record, ReadError>> = vec![
            Ok(rec(&m, 2, &good())),
            Err(ReadError::File(FormatError::Malformed { file: "f.csv".into(), line: Some(3), message: "truncated".into() })),
        ];
        assert!(matches!(collect(Box::new(records.into_iter()), &m), Err(FormatError::Malformed { .. })));
    }
}
