//! Mapping files (`mappings/*.toml`): how one customer's columns become the user model.
//! Parsed and checked here (no data needed), every problem located in the mapping file
//! itself, into the mapping stage's own types (`crate::mapping::rules`), which
//! `crate::mapping` applies to records.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Deserializer};

use super::Problem;
use super::checker::Checker;
use super::word::{self, Parsed, WordError};
pub use crate::format::SourceOptions;
pub use crate::mapping::rules::{FieldRule, IdCase, Input, Mapping, PlatformField, TemplatePart, Transform, UniqueId};

/// `(top level)`: the keys outside any table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMapping {
    /// "employee_id" or "email": the field that identifies a person.
    pub unique_id: Parsed<UniqueId>,
    /// "insensitive" (the default: "e7" and "E7" are one person) or "sensitive" (employee
    /// ids only; emails always compare without case). Ids are always trimmed.
    pub id_case: Option<Parsed<IdCase>>,
    /// How to read the file (delimiter, encoding, sheet, header row, JSON records).
    #[serde(default)]
    pub source: RawSourceOptions,
    /// `[fields]`: the platform's fields — employee_id, email, first_name, last_name,
    /// language, active — each from a column (`email = "Email"`) or a field table. The
    /// `unique_id` field, first_name and last_name are needed. `start_date` and `end_date`
    /// (with a `date` format, or YYYY-MM-DD values) are not sent: they decide when a person
    /// is active (docs/lifecycle.md).
    pub fields: BTreeMap<String, FieldSpec>,
    /// `[attributes]`: any other attribute (department, title, manager_id, …), sent in the
    /// enterprise or custom schema, each from a column or a field table.
    #[serde(default)]
    pub attributes: BTreeMap<String, FieldSpec>,
    /// `[groups]`: one SCIM group per value of some attributes (docs/scim-mapping.md).
    pub groups: Option<RawGroups>,
    /// `[scope]`: which rows are people this connector provisions (default: every row).
    pub scope: Option<RawScope>,
}

/// `[groups]`: keeps one SCIM group per value of the named attributes, whose members are
/// exactly the connector's active people with that value (docs/scim-mapping.md, "Groups").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGroups {
    /// The attributes whose values become groups: names under `[attributes]`
    /// (`from = ["department"]`), or the column one of them reads (`from = ["Department"]`).
    /// The value is the one sent, after transforms and maps.
    pub from: Vec<String>,
    /// Put before each value to name its group: `prefix = "hr-"` makes "hr-Sales" (default
    /// none: the group is named as the value).
    pub prefix: Option<String>,
    /// Members added or removed per PATCH, 1 to 1000 (default 100). The server's announced
    /// /Bulk maxOperations lowers it when smaller.
    pub chunk: Option<i64>,
}

/// `[scope]`: which rows of the file get accounts, by column values (compared trimmed and
/// without case), e.g. `include = { "Type" = ["Employee", "Intern"] }`. A row is in scope
/// when every `include` column holds one of its values and no `exclude` column holds one of
/// its. Rows out of scope get no account; a known person whose row moves out of scope is
/// handled by `[connectors.NAME.sync] out_of_scope` (docs/lifecycle.md).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScope {
    /// Column → the values a row must have in it, e.g. { "Type" = ["Employee"] }.
    #[serde(default)]
    pub include: BTreeMap<String, Vec<String>>,
    /// Column → values that put a row out of scope, e.g. { "Company" = ["Contractor Ltd"] }.
    #[serde(default)]
    pub exclude: BTreeMap<String, Vec<String>>,
}

/// `[source]`: how to read the file, where the defaults do not fit.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSourceOptions {
    /// CSV: "," ";" "\t" "|" or "auto".
    pub delimiter: Option<String>,
    /// utf-8 (BOM tolerated), utf-16, windows-1252, latin1, … (any WHATWG label).
    pub encoding: Option<String>,
    /// Excel/ODS: sheet name (default the first).
    pub sheet: Option<String>,
    /// CSV/Excel: the 1-based row holding the column names (default 1).
    pub header_row: Option<i64>,
    /// JSON: pointer to the array of records, e.g. "/data/employees" (default the root).
    pub records: Option<String>,
    /// The longest record (CSV row, JSON element or line) read, e.g. "1MiB" (the default).
    /// Past it the file is refused (exit 4): HR rows are short, so a longer one is a stray
    /// quote joining rows, or a hostile file.
    pub max_row_size: Option<String>,
    /// The longest value read, e.g. "256KiB" (the default).
    pub max_field_size: Option<String>,
}

/// `[fields.NAME]`: a field of `[fields]` or `[attributes]` written as a table, e.g.
/// `department = { column = "Dept", transform = ["trim"], map = { "ENG" = "Engineering" } }`.
/// Written as a string, a field is its column alone.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldTable {
    /// Source column (CSV/Excel header, or JSON path such as "name.first" or "emails[0].value").
    pub column: Option<String>,
    /// Instead of `column`: "{First Name} {Last Name}".
    pub template: Option<String>,
    /// Applied in order: trim, lowercase, uppercase, title-case, collapse-spaces.
    #[serde(default)]
    pub transform: Vec<Parsed<Transform>>,
    /// Value table: source value → platform value.
    pub map: Option<BTreeMap<String, toml::Value>>,
    /// With `map`: the value for anything the table does not list (default: keep as is).
    pub fallback: Option<toml::Value>,
    /// Used when the cell is empty or the column absent from a record.
    pub default: Option<toml::Value>,
    /// Input date format (strftime, e.g. "%d/%m/%Y"); output is ISO 8601.
    pub date: Option<String>,
}

#[derive(Debug, Clone)]
pub struct FieldSpec(pub FieldTable);

impl<'de> Deserialize<'de> for FieldSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match toml::Value::deserialize(d)? {
            toml::Value::String(column) => Ok(FieldSpec(FieldTable { column: Some(column), ..Default::default() })),
            toml::Value::Table(t) => {
                FieldTable::deserialize(toml::Value::Table(t)).map(FieldSpec).map_err(|e| D::Error::custom(e.message().trim()))
            }
            other => Err(D::Error::custom(format!(
                "expected a column name (\"Email\") or a table ({{ column = \"Email\", transform = [\"trim\"] }}); got {}",
                other.type_str()
            ))),
        }
    }
}

/// Parses "{First Name} {Last Name}" into parts.
pub fn parse_template(t: &str) -> Result<Vec<TemplatePart>, String> {
    let mut parts = Vec::new();
    let mut rest = t;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            parts.push(TemplatePart::Text(rest[..open].to_string()));
        }
        let close = rest[open..].find('}').ok_or_else(|| format!("unclosed '{{' in template \"{t}\""))?;
        let col = rest[open + 1..open + close].trim();
        if col.is_empty() {
            return Err(format!("empty column reference {{}} in template \"{t}\""));
        }
        parts.push(TemplatePart::Column(col.to_string()));
        rest = &rest[open + close + 1..];
    }
    if !rest.is_empty() {
        parts.push(TemplatePart::Text(rest.to_string()));
    }
    if !parts.iter().any(|p| matches!(p, TemplatePart::Column(_))) {
        return Err(format!("template \"{t}\" names no column; write columns as {{Column Name}}"));
    }
    Ok(parts)
}

/// A TOML scalar as the text the mapping compares and emits.
pub fn scalar_text(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        _ => None,
    }
}

/// Reads and checks a mapping file; its problems point into the mapping file itself (the
/// problem of an unreadable file points at `key` in connectors.toml).
pub(super) fn load(ck: &mut Checker, key: &str, path: &Path) -> Option<Mapping> {
    let src = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) => {
            ck.problem(
                key,
                format!(
                    "cannot read mapping file {}: {e}; create it (`rostersync mapping suggest SAMPLE_FILE` drafts one)",
                    path.display()
                ),
            );
            return None;
        }
    };
    let mut mk = Checker::new(path, &src);
    mk.connector = ck.connector.clone();
    let m = check(&mut mk, &src);
    ck.problems.extend(mk.problems);
    m
}

/// Checks a mapping file's text (also used by `mapping suggest` to check its own output).
pub fn parse_mapping(src: &str, path: &Path) -> Result<Mapping, Vec<Problem>> {
    let mut mk = Checker::new(path, src);
    match check(&mut mk, src) {
        Some(m) if mk.problems.is_empty() => Ok(m),
        _ => Err(mk.problems),
    }
}

fn check(mk: &mut Checker, src: &str) -> Option<Mapping> {
    let doc = mk.toml(src)?;
    let raw = mk.section::<RawMapping>("", toml::Value::Table(doc))?;
    let before = mk.problems.len();
    let unique_id = mk.value("unique_id", Some(raw.unique_id));
    let id_case = match raw.id_case {
        None => IdCase::default(),
        Some(c) => mk.value("id_case", Some(c)).unwrap_or_default(),
    };
    let mut source = SourceOptions { header_row: 1, ..Default::default() };
    if let Some(d) = &raw.source.delimiter {
        source.delimiter = match d.as_str() {
            "auto" => None,
            "\\t" | "\t" | "tab" => Some(b'\t'),
            s if s.len() == 1 && s.is_ascii() => Some(s.as_bytes()[0]),
            s => {
                mk.problem("source.delimiter", format!("expected \",\", \";\", \"\\t\", \"|\" or \"auto\"; got \"{s}\""));
                None
            }
        };
    }
    if let Some(e) = &raw.source.encoding {
        match encoding_rs::Encoding::for_label(e.as_bytes()) {
            Some(enc) => source.encoding = Some(enc),
            None => mk.problem(
                "source.encoding",
                format!("unknown encoding \"{e}\"; use utf-8, utf-16, windows-1252, latin1, iso-8859-15, shift_jis …"),
            ),
        }
    }
    source.sheet = raw.source.sheet.clone();
    if let Some(h) = raw.source.header_row {
        if h >= 1 {
            source.header_row = h as u64;
        } else {
            mk.problem("source.header_row", format!("expected a 1-based row number; got {h}"));
        }
    }
    if let Some(r) = &raw.source.records {
        if !r.is_empty() && !r.starts_with('/') {
            mk.problem("source.records", format!("expected a JSON pointer such as \"/data/employees\"; got \"{r}\""));
        }
        source.records = Some(r.clone());
    }
    for (key, raw_value, slot) in [
        ("source.max_row_size", &raw.source.max_row_size, &mut source.limits.max_row),
        ("source.max_field_size", &raw.source.max_field_size, &mut source.limits.max_field),
    ] {
        match raw_value.as_deref().map(super::units::parse_size) {
            None => {}
            Some(Ok(0)) => mk.problem(key, "expected a size above zero, such as \"1MiB\"".to_string()),
            Some(Ok(n)) => *slot = n,
            Some(Err(e)) => mk.problem(key, e),
        }
    }

    let mut fields = BTreeMap::new();
    let mut dates = crate::mapping::dates::DateRules::default();
    for (name, spec) in &raw.fields {
        let key = format!("fields.{name}");
        // The dated fields decide when a person is active; they are not platform fields.
        let dated = match name.as_str() {
            "start_date" => Some(&mut dates.start),
            "end_date" => Some(&mut dates.end),
            _ => None,
        };
        if let Some(slot) = dated {
            *slot = check_rule(mk, &key, &spec.0);
            continue;
        }
        match word::parse::<PlatformField>(name) {
            Ok(f) => {
                if let Some(rule) = check_rule(mk, &key, &spec.0) {
                    fields.insert(f, rule);
                }
            }
            Err(e) => {
                let near = match &e {
                    WordError::Unknown { accepted, .. } => word::did_you_mean(name, accepted.iter().copied()),
                    WordError::Invalid(_) => None,
                };
                let next = match near {
                    Some(f) => format!("did you mean {f}? Otherwise put \"{name}\" under [attributes]"),
                    None => format!("put \"{name}\" under [attributes]"),
                };
                mk.problem(
                    &key,
                    format!(
                        "unknown platform field; [fields] takes employee_id, email, first_name, last_name, language, active (and start_date, end_date) — {next}"
                    ),
                )
            }
        }
    }
    let mut attributes = BTreeMap::new();
    for (name, spec) in &raw.attributes {
        let key = format!("attributes.{name}");
        if let Some(rule) = check_rule(mk, &key, &spec.0) {
            attributes.insert(name.clone(), rule);
        }
    }
    for required in [PlatformField::FirstName, PlatformField::LastName] {
        if !fields.contains_key(&required) && !raw.fields.contains_key(required.name()) {
            mk.problem("fields", format!("missing {} = \"COLUMN\": every user needs one", required.name()));
        }
    }
    let uid_field = unique_id.map(|u| match u {
        UniqueId::EmployeeId => PlatformField::EmployeeId,
        UniqueId::Email => PlatformField::Email,
    });
    if let Some(uid_field) = uid_field
        && !fields.contains_key(&uid_field)
        && !raw.fields.contains_key(uid_field.name())
    {
        mk.problem("unique_id", format!("unique_id is \"{}\" but [fields] does not map it", uid_field.name()));
    }
    let groups = raw.groups.as_ref().and_then(|g| check_groups(mk, g, &attributes));
    let scope = check_scope(mk, raw.scope.unwrap_or_default());
    if mk.problems.len() > before {
        return None;
    }
    Some(Mapping { unique_id: unique_id?, id_case, source, fields, attributes, groups, scope, dates })
}

/// `[groups]`: each name of `from` an attribute of `[attributes]`, or the column exactly one
/// of them reads (resolved to that attribute).
fn check_groups(mk: &mut Checker, g: &RawGroups, attributes: &BTreeMap<String, FieldRule>) -> Option<crate::plan::groups::GroupRule> {
    use crate::plan::groups::{GroupRule, MAX_CHUNK};
    let before = mk.problems.len();
    if g.from.is_empty() {
        mk.problem("groups.from", "expected at least one attribute, e.g. from = [\"department\"]");
    }
    let mut from: Vec<String> = Vec::new();
    for name in &g.from {
        let readers: Vec<&String> = attributes.iter().filter(|(_, r)| r.columns().contains(&name.as_str())).map(|(a, _)| a).collect();
        let resolved = if attributes.contains_key(name) {
            Some(name.clone())
        } else if let [one] = readers.as_slice() {
            Some((*one).clone())
        } else {
            let why = if readers.is_empty() {
                let near = word::did_you_mean(name, attributes.keys().map(String::as_str))
                    .map(|a| format!(" — did you mean \"{a}\"?"))
                    .unwrap_or_default();
                format!(
                    "\"{name}\" is neither an attribute of [attributes] nor a column one reads{near}; map it first, e.g. [attributes] department = \"{name}\""
                )
            } else {
                let names: Vec<&str> = readers.iter().map(|s| s.as_str()).collect();
                format!("column \"{name}\" is read by several attributes ({}); name the one to group by", names.join(", "))
            };
            mk.problem("groups.from", why);
            None
        };
        if let Some(a) = resolved
            && !from.contains(&a)
        {
            from.push(a);
        }
    }
    let chunk = match g.chunk {
        None => None,
        Some(c) if (1..=MAX_CHUNK as i64).contains(&c) => Some(c as usize),
        Some(c) => {
            mk.problem("groups.chunk", format!("expected members per PATCH from 1 to {MAX_CHUNK}; got {c}"));
            None
        }
    };
    let prefix = g.prefix.clone().unwrap_or_default();
    if prefix.chars().any(char::is_control) {
        mk.problem("groups.prefix", "a group name prefix cannot hold control characters (a tab, a line break)");
    }
    if mk.problems.len() > before {
        return None;
    }
    Some(GroupRule { from, prefix, chunk })
}

/// `[scope]`: every column named, every list with a value.
fn check_scope(mk: &mut Checker, raw: RawScope) -> crate::mapping::scope::Scope {
    let mut check = |which: &str, table: BTreeMap<String, Vec<String>>| -> Vec<(String, Vec<String>)> {
        let mut out = Vec::new();
        for (column, values) in table {
            let key = format!("scope.{which}");
            if column.trim().is_empty() {
                mk.problem(&key, "names an empty column");
            } else if values.iter().all(|v| v.trim().is_empty()) {
                mk.problem(
                    &key,
                    format!("\"{column}\" lists no value; give the values that {which} a row, e.g. {{ \"{column}\" = [\"Employee\"] }}"),
                );
            } else {
                out.push((column, values.into_iter().filter(|v| !v.trim().is_empty()).collect()));
            }
        }
        out
    };
    let include = check("include", raw.include);
    let exclude = check("exclude", raw.exclude);
    crate::mapping::scope::Scope { include, exclude }
}

fn check_rule(mk: &mut Checker, key: &str, t: &FieldTable) -> Option<FieldRule> {
    let before = mk.problems.len();
    let input = match (&t.column, &t.template) {
        (Some(c), None) => {
            if c.trim().is_empty() {
                mk.problem(key, "empty column name");
            }
            Input::Column(c.clone())
        }
        (None, Some(tpl)) => match parse_template(tpl) {
            Ok(p) => Input::Template(p),
            Err(e) => {
                mk.problem(&format!("{key}.template"), e);
                Input::Constant
            }
        },
        (Some(_), Some(_)) => {
            mk.problem(key, "give either column or template, not both");
            Input::Constant
        }
        (None, None) => {
            if t.default.is_none() {
                mk.problem(key, "expected column = \"…\", template = \"…\" or at least default = \"…\"");
            }
            Input::Constant
        }
    };
    let mut transforms = Vec::new();
    for (i, parsed) in t.transform.iter().enumerate() {
        match &parsed.0 {
            Ok(x) => transforms.push(*x),
            Err(WordError::Unknown { got, accepted }) => {
                let hint =
                    word::did_you_mean(got, accepted.iter().copied()).map(|w| format!(" — did you mean \"{w}\"?")).unwrap_or_default();
                mk.problem(
                    &format!("{key}.transform"),
                    format!("unknown transform \"{got}\" (item {}); expected {}{hint}", i + 1, word::one_of(accepted)),
                )
            }
            Err(e @ WordError::Invalid(_)) => mk.problem(&format!("{key}.transform"), format!("item {}: {e}", i + 1)),
        }
    }
    let map = t.map.as_ref().map(|m| {
        m.iter()
            .filter_map(|(k, v)| match scalar_text(v) {
                Some(s) => Some((k.clone(), s)),
                None => {
                    mk.problem(
                        &format!("{key}.map"),
                        format!("value for \"{k}\" must be text, a number or true/false; got {}", v.type_str()),
                    );
                    None
                }
            })
            .collect::<Vec<_>>()
    });
    let scalar = |mk: &mut Checker, what: &str, v: &Option<toml::Value>| -> Option<String> {
        let v = v.as_ref()?;
        let s = scalar_text(v);
        if s.is_none() {
            mk.problem(&format!("{key}.{what}"), format!("expected text, a number or true/false; got {}", v.type_str()));
        }
        s
    };
    let fallback = scalar(mk, "fallback", &t.fallback);
    let default = scalar(mk, "default", &t.default);
    if fallback.is_some() && map.is_none() {
        mk.problem(&format!("{key}.fallback"), "fallback only applies with map = { … }");
    }
    if let Some(fmt) = &t.date
        && let Some(why) = date_format_problem(fmt)
    {
        mk.problem(&format!("{key}.date"), why);
    }
    if mk.problems.len() > before {
        return None;
    }
    Some(FieldRule { input, transforms, map, fallback, default, date: t.date.clone() })
}

/// Why a `date` format cannot read dates, if it cannot. Checked here, not found out per row:
/// a value that fails the format is still accepted when it is ISO 8601 (spreadsheet date
/// cells arrive that way), so a format that can never fit goes unnoticed as long as the data
/// happens to be ISO, and fails every row the day it is not.
fn date_format_problem(fmt: &str) -> Option<String> {
    use chrono::format::{Fixed, Item, Numeric, StrftimeItems};
    if !fmt.contains('%') {
        return Some(format!("expected a strftime format such as \"%d/%m/%Y\"; got \"{fmt}\""));
    }
    let items: Vec<Item> = StrftimeItems::new(fmt).collect();
    if items.iter().any(|i| matches!(i, Item::Error)) {
        return Some(format!(
            "\"{fmt}\" holds a % item chrono's strftime does not know (or a lone %); use items such as %d %m %Y %y %b %B %e, and %% for a percent sign"
        ));
    }
    let has = |f: &dyn Fn(&Item) -> bool| items.iter().any(f);
    // A whole timestamp names the date by itself.
    if has(&|i| matches!(i, Item::Numeric(Numeric::Timestamp, _) | Item::Fixed(Fixed::RFC2822 | Fixed::RFC3339))) {
        return None;
    }
    let year = has(&|i| matches!(i, Item::Numeric(Numeric::Year | Numeric::YearMod100 | Numeric::IsoYear | Numeric::IsoYearMod100, _)));
    let month = has(&|i| matches!(i, Item::Numeric(Numeric::Month, _) | Item::Fixed(Fixed::ShortMonthName | Fixed::LongMonthName)));
    let day = has(&|i| matches!(i, Item::Numeric(Numeric::Day, _)));
    let ordinal = has(&|i| matches!(i, Item::Numeric(Numeric::Ordinal, _)));
    let week = has(&|i| matches!(i, Item::Numeric(Numeric::IsoWeek | Numeric::WeekFromSun | Numeric::WeekFromMon, _)))
        && has(&|i| {
            matches!(
                i,
                Item::Numeric(Numeric::WeekdayFromMon | Numeric::NumDaysFromSun, _)
                    | Item::Fixed(Fixed::ShortWeekdayName | Fixed::LongWeekdayName)
            )
        });
    let missing: Vec<&str> = match (year, (month && day) || ordinal || week) {
        (true, true) => return None,
        (false, true) => vec!["a year (%Y or %y)"],
        (y, false) => {
            let mut m = Vec::new();
            if !y {
                m.push("a year (%Y or %y)");
            }
            if !month {
                m.push("a month (%m or %b)");
            }
            if !day {
                m.push("a day (%d)");
            }
            m
        }
    };
    let missing = match missing.split_last() {
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        None => String::new(),
    };
    Some(format!(
        "\"{fmt}\" lacks {missing}: it cannot read a date, and only ISO dates would pass; use a full date format such as \"%d/%m/%Y\""
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "unique_id = \"employee_id\"\n[fields]\nemployee_id = \"Id\"\nfirst_name = \"First\"\nlast_name = \"Last\"\n";

    fn ok(src: &str) -> Mapping {
        parse_mapping(src, Path::new("m.toml")).unwrap_or_else(|ps| panic!("{src}\n{ps:#?}"))
    }

    #[test]
    fn scope_tables_and_their_problems() {
        let m = ok(&format!("{BASE}[scope]\ninclude = {{ \"Type\" = [\"Employee\", \"Intern\"] }}\nexclude = {{ \"Co\" = [\"X\"] }}\n"));
        assert_eq!(m.scope.include, vec![("Type".to_string(), vec!["Employee".to_string(), "Intern".to_string()])]);
        assert_eq!(m.scope.exclude, vec![("Co".to_string(), vec!["X".to_string()])]);
        assert!(m.columns().contains(&"Type".to_string()), "the scope's columns are read");
        assert!(ok(BASE).scope.is_empty());
        let got = problems(&format!("{BASE}[scope]\ninclude = {{ \"Type\" = [] }}\n"));
        assert!(got[0].contains("scope.include: \"Type\" lists no value"), "{got:?}");
        let got = problems(&format!("{BASE}[scope]\nincluded = {{ \"Type\" = [\"A\"] }}\n"));
        assert!(got[0].contains("included"), "{got:?}");
    }

    /// Every problem as "m.toml:LINE: key: message".
    fn problems(src: &str) -> Vec<String> {
        match parse_mapping(src, Path::new("m.toml")) {
            Ok(_) => panic!("accepted:\n{src}"),
            Err(ps) => ps.iter().map(|p| p.to_string()).collect(),
        }
    }

    fn one(src: &str) -> String {
        let ps = problems(src);
        assert_eq!(ps.len(), 1, "{ps:#?}");
        ps[0].clone()
    }

    /// BASE with `attributes.x` set to `spec`.
    fn attr(spec: &str) -> String {
        format!("{BASE}[attributes]\nx = {spec}\n")
    }

    fn attr_rule(spec: &str) -> FieldRule {
        ok(&attr(spec)).attributes["x"].clone()
    }

    #[test]
    fn a_minimal_mapping() {
        let m = ok(BASE);
        assert_eq!(m.unique_id, UniqueId::EmployeeId);
        assert_eq!(m.source, SourceOptions { header_row: 1, ..Default::default() });
        assert_eq!(m.fields[&PlatformField::FirstName].input, Input::Column("First".into()));
        assert_eq!(m.columns(), vec!["Id", "First", "Last"]);
    }

    #[test]
    fn unique_id() {
        let m = ok("unique_id = \"email\"\n[fields]\nemail = \"Mail\"\nfirst_name = \"F\"\nlast_name = \"L\"\n");
        assert_eq!(m.unique_id, UniqueId::Email);
        assert_eq!(
            one(&BASE.replace("\"employee_id\"\n[", "\"badge\"\n[")),
            "m.toml:1: unique_id: expected \"employee_id\" or \"email\"; got \"badge\""
        );
        assert_eq!(
            one(&BASE.replace("\"employee_id\"\n[", "\"employee-id\"\n[")),
            "m.toml:1: unique_id: expected \"employee_id\" or \"email\"; got \"employee-id\" — did you mean \"employee_id\"?"
        );
        assert_eq!(
            one("unique_id = \"email\"\n[fields]\nfirst_name = \"F\"\nlast_name = \"L\"\n"),
            "m.toml:1: unique_id: unique_id is \"email\" but [fields] does not map it"
        );
    }

    #[test]
    fn source_options() {
        for (d, want) in [
            (",", Some(b',')),
            (";", Some(b';')),
            ("|", Some(b'|')),
            ("\\\\t", Some(b'\t')),
            ("\\t", Some(b'\t')),
            ("tab", Some(b'\t')),
            ("auto", None),
        ] {
            assert_eq!(ok(&format!("{BASE}[source]\ndelimiter = \"{d}\"\n")).source.delimiter, want, "{d}");
        }
        assert_eq!(
            one(&format!("{BASE}[source]\ndelimiter = \"::\"\n")),
            "m.toml:7: source.delimiter: expected \",\", \";\", \"\\t\", \"|\" or \"auto\"; got \"::\""
        );
        let m = ok(&format!("{BASE}[source]\nencoding = \"latin1\"\nsheet = \"Staff\"\nheader_row = 3\nrecords = \"/data/employees\"\n"));
        assert_eq!(m.source.encoding, Some(encoding_rs::WINDOWS_1252));
        assert_eq!(
            (m.source.sheet.as_deref(), m.source.header_row, m.source.records.as_deref()),
            (Some("Staff"), 3, Some("/data/employees"))
        );
        assert!(
            one(&format!("{BASE}[source]\nencoding = \"klingon\"\n"))
                .starts_with("m.toml:7: source.encoding: unknown encoding \"klingon\"; use utf-8")
        );
        assert_eq!(one(&format!("{BASE}[source]\nheader_row = 0\n")), "m.toml:7: source.header_row: expected a 1-based row number; got 0");
        assert_eq!(
            one(&format!("{BASE}[source]\nrecords = \"data.employees\"\n")),
            "m.toml:7: source.records: expected a JSON pointer such as \"/data/employees\"; got \"data.employees\""
        );
        assert_eq!(ok(&format!("{BASE}[source]\nrecords = \"\"\n")).source.records.as_deref(), Some(""), "the root, spelled out");
    }

    #[test]
    fn row_and_field_limits() {
        let d = ok(BASE).source.limits;
        assert_eq!((d.max_row, d.max_field), (1 << 20, 256 << 10), "generous defaults");
        let m = ok(&format!("{BASE}[source]\nmax_row_size = \"8MiB\"\nmax_field_size = \"2MiB\"\n"));
        assert_eq!((m.source.limits.max_row, m.source.limits.max_field), (8 << 20, 2 << 20));
        assert_eq!(
            one(&format!("{BASE}[source]\nmax_row_size = \"0\"\n")),
            "m.toml:7: source.max_row_size: expected a size above zero, such as \"1MiB\""
        );
        assert!(one(&format!("{BASE}[source]\nmax_field_size = \"lots\"\n")).starts_with("m.toml:7: source.max_field_size: "));
    }

    #[test]
    fn platform_fields() {
        let m = ok(&BASE.replace("[fields]\n", "[fields]\nemail = \"Mail\"\nlanguage = { default = \"en\" }\nactive = \"Active\"\n"));
        assert_eq!(m.fields.len(), 6);
        assert_eq!(m.fields[&PlatformField::Language].input, Input::Constant);
        for (name, f) in PlatformField::ALL {
            assert_eq!(PlatformField::parse(name), Some(f));
            assert_eq!(f.name(), name);
        }
        assert_eq!(
            one(&BASE.replace("[fields]\n", "[fields]\nnickname = \"Nick\"\n")),
            "m.toml:3: fields.nickname: unknown platform field; [fields] takes employee_id, email, first_name, last_name, language, active (and start_date, end_date) — put \"nickname\" under [attributes]"
        );
        let p = one(&BASE.replace("[fields]\n", "[fields]\nemial = \"Mail\"\n"));
        assert!(p.ends_with("— did you mean email? Otherwise put \"emial\" under [attributes]"), "{p}");
        assert_eq!(
            problems("unique_id = \"employee_id\"\n[fields]\nemployee_id = \"Id\"\n"),
            vec![
                "m.toml:2: fields: missing first_name = \"COLUMN\": every user needs one",
                "m.toml:2: fields: missing last_name = \"COLUMN\": every user needs one"
            ]
        );
    }

    #[test]
    fn inputs_column_template_constant() {
        assert_eq!(attr_rule("\"Dept\"").input, Input::Column("Dept".into()));
        assert_eq!(attr_rule("{ column = \"Dept\" }").input, Input::Column("Dept".into()));
        assert_eq!(
            attr_rule("{ template = \"{First} {Last}\" }").input,
            Input::Template(vec![
                TemplatePart::Column("First".into()),
                TemplatePart::Text(" ".into()),
                TemplatePart::Column("Last".into())
            ])
        );
        assert_eq!(attr_rule("{ default = \"x\" }").input, Input::Constant);
        assert_eq!(one(&attr("\" \"")), "m.toml:7: attributes.x: empty column name");
        assert_eq!(
            one(&attr("{ column = \"a\", template = \"{b}\" }")),
            "m.toml:7: attributes.x: give either column or template, not both"
        );
        assert_eq!(
            one(&attr("{ transform = [\"trim\"] }")),
            "m.toml:7: attributes.x: expected column = \"…\", template = \"…\" or at least default = \"…\""
        );
        for (tpl, msg) in [
            ("{First", "unclosed '{' in template \"{First\""),
            ("a {} b", "empty column reference {} in template \"a {} b\""),
            ("plain", "template \"plain\" names no column; write columns as {Column Name}"),
        ] {
            assert_eq!(one(&attr(&format!("{{ template = \"{tpl}\" }}"))), format!("m.toml:7: attributes.x.template: {msg}"));
        }
        let p = one(&attr("42"));
        assert!(p.starts_with("m.toml:7: attributes.x: expected a column name (\"Email\") or a table"), "{p}");
    }

    #[test]
    fn transforms() {
        let r = attr_rule("{ column = \"a\", transform = [\"trim\", \"lowercase\", \"uppercase\", \"title-case\", \"collapse-spaces\"] }");
        assert_eq!(
            r.transforms,
            vec![Transform::Trim, Transform::Lowercase, Transform::Uppercase, Transform::TitleCase, Transform::CollapseSpaces]
        );
        assert_eq!(
            one(&attr("{ column = \"a\", transform = [\"trim\", \"shout\"] }")),
            "m.toml:7: attributes.x.transform: unknown transform \"shout\" (item 2); expected \"trim\", \"lowercase\", \"uppercase\", \"title-case\" or \"collapse-spaces\""
        );
        let p = one(&attr("{ column = \"a\", transform = [\"titlecase\"] }"));
        assert!(p.ends_with("— did you mean \"title-case\"?"), "{p}");
        // Both bad items are reported.
        assert_eq!(problems(&attr("{ column = \"a\", transform = [\"x\", \"y\"] }")).len(), 2);
    }

    #[test]
    fn maps_fallbacks_defaults_dates() {
        let r = attr_rule("{ column = \"a\", map = { \"1\" = true, \"2\" = 7, \"3\" = \"three\" }, fallback = \"other\", default = 0 }");
        assert_eq!(r.map, Some(vec![("1".into(), "true".into()), ("2".into(), "7".into()), ("3".into(), "three".into())]));
        assert_eq!((r.fallback.as_deref(), r.default.as_deref()), (Some("other"), Some("0")));
        assert_eq!(
            one(&attr("{ column = \"a\", map = { \"1\" = [1] } }")),
            "m.toml:7: attributes.x.map: value for \"1\" must be text, a number or true/false; got array"
        );
        assert_eq!(
            one(&attr("{ column = \"a\", fallback = \"z\" }")),
            "m.toml:7: attributes.x.fallback: fallback only applies with map = { … }"
        );
        assert_eq!(
            one(&attr("{ column = \"a\", default = [] }")),
            "m.toml:7: attributes.x.default: expected text, a number or true/false; got array"
        );
        assert_eq!(attr_rule("{ column = \"a\", date = \"%d/%m/%Y\" }").date.as_deref(), Some("%d/%m/%Y"));
        assert_eq!(
            one(&attr("{ column = \"a\", date = \"dd/mm/yyyy\" }")),
            "m.toml:7: attributes.x.date: expected a strftime format such as \"%d/%m/%Y\"; got \"dd/mm/yyyy\""
        );
    }

    #[test]
    fn date_formats_are_checked_item_by_item() {
        for good in ["%d/%m/%Y", "%m/%d/%y", "%-d.%-m.%Y", "%d %b %Y", "%B %e, %Y", "%Y-%m-%dT%H:%M:%S", "%Y%j", "%G-W%V-%u", "%s", "%+"] {
            assert_eq!(date_format_problem(good), None, "{good}");
        }
        for (bad, want) in [
            ("%d/%m/%Q", "holds a % item chrono's strftime does not know"),
            ("%d/%m/%", "(or a lone %)"),
            ("%m/%Y", "lacks a day (%d): it cannot read a date"),
            ("%d/%m", "lacks a year (%Y or %y):"),
            ("%H:%M", "lacks a year (%Y or %y), a month (%m or %b) and a day (%d):"),
        ] {
            let got = date_format_problem(bad).unwrap_or_else(|| panic!("{bad} must be refused"));
            assert!(got.contains(want), "{bad}: {got}");
        }
        assert_eq!(
            one(&attr("{ column = \"a\", date = \"%d/%m/%Q\" }")),
            "m.toml:7: attributes.x.date: \"%d/%m/%Q\" holds a % item chrono's strftime does not know (or a lone %); use items such as %d %m %Y %y %b %B %e, and %% for a percent sign"
        );
    }

    #[test]
    fn every_problem_of_a_mapping_at_once() {
        let src = "unique_id = \"badge\"\n[source]\nheader_row = 0\ndelimiter = \"ab\"\n[fields]\nfirst_name = { column = \"F\", transform = [\"shout\"] }\nnickname = \"N\"\n[attributes]\nx = { column = \"a\", date = \"nope\" }\n";
        let got: Vec<String> = problems(src).into_iter().map(|p| p.split(": ").take(2).collect::<Vec<_>>().join(": ")).collect();
        assert_eq!(
            got,
            vec![
                "m.toml:1: unique_id",
                "m.toml:4: source.delimiter",
                "m.toml:3: source.header_row",
                "m.toml:6: fields.first_name.transform",
                "m.toml:7: fields.nickname",
                "m.toml:9: attributes.x.date",
                "m.toml:5: fields",
            ]
        );
    }

    #[test]
    fn unknown_keys_and_bad_toml() {
        // The typo first; the check reads on past it, so what the attribute then lacks is said too.
        let ps = problems(&attr("{ colum = \"a\" }"));
        assert!(ps[0].starts_with("m.toml:7: attributes.x.colum: unknown key — did you mean `column`?"), "{ps:#?}");
        assert_eq!(ps[1..], ["m.toml:7: attributes.x: expected column = \"…\", template = \"…\" or at least default = \"…\""]);
        let p = one(&format!("{BASE}[nope]\nx = 1\n"));
        // ("nope" is near the table `scope`: the suggestion may name it.)
        assert!(p.starts_with("m.toml:6: nope: unknown key") && p.contains("found `nope`, expected one of"), "{p}");
        assert!(one("unique_id = \n").contains("not valid TOML"));
    }

    #[test]
    fn groups_name_attributes_or_the_column_one_reads() {
        let base = format!("{BASE}[attributes]\ndepartment = \"Dept\"\ndivision = {{ column = \"Div\", transform = [\"trim\"] }}\n");
        let m = ok(&format!("{base}[groups]\nfrom = [\"Dept\", \"division\", \"department\"]\nprefix = \"hr-\"\nchunk = 50\n"));
        let g = m.groups.expect("groups");
        assert_eq!(g.from, ["department", "division"]);
        assert_eq!((g.prefix.as_str(), g.chunk), ("hr-", Some(50)));
        assert!(ok(&base).groups.is_none());
        let p = one(&format!("{base}[groups]\nfrom = [\"Departement\"]\n"));
        assert!(p.contains("groups.from") && p.contains("did you mean \"department\"") && p.contains("map it first"), "{p}");
        let p = one(&format!("{base}[groups]\nfrom = [\"department\"]\nchunk = 0\n"));
        assert!(p.contains("groups.chunk") && p.contains("1 to 1000"), "{p}");
        let twice = format!("{BASE}[attributes]\na = \"Dept\"\nb = \"Dept\"\n[groups]\nfrom = [\"Dept\"]\n");
        assert!(one(&twice).contains("read by several attributes (a, b)"));
        assert!(one(&format!("{base}[groups]\nfrom = []\n")).contains("at least one"));
    }
}
