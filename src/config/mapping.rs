//! Mapping files (`mappings/*.toml`): how one customer's columns become the user model.
//! Parsed and checked here (no data needed); `crate::mapping` applies them to records.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

/// The file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMapping {
    /// "employee_id" or "email": the field that identifies a person.
    pub unique_id: String,
    #[serde(default)]
    pub source: RawSourceOptions,
    pub fields: BTreeMap<String, FieldSpec>,
    #[serde(default)]
    pub attributes: BTreeMap<String, FieldSpec>,
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
}

/// A field: a column name, or a table with transforms.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldTable {
    /// Source column (CSV/Excel header, or JSON path such as "name.first" or "emails[0].value").
    pub column: Option<String>,
    /// Instead of `column`: "{First Name} {Last Name}".
    pub template: Option<String>,
    /// Applied in order: trim, lowercase, uppercase, title-case, collapse-spaces.
    #[serde(default)]
    pub transform: Vec<String>,
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
            toml::Value::Table(t) => FieldTable::deserialize(toml::Value::Table(t))
                .map(FieldSpec)
                .map_err(|e| D::Error::custom(e.to_string().trim().to_string())),
            other => Err(D::Error::custom(format!(
                "expected a column name (\"Email\") or a table ({{ column = \"Email\", transform = [\"trim\"] }}); got {}",
                other.type_str()
            ))),
        }
    }
}

/// The identifying field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UniqueId {
    EmployeeId,
    Email,
}

/// Platform fields that `[fields]` may set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PlatformField {
    EmployeeId,
    Email,
    FirstName,
    LastName,
    Language,
    Active,
}

impl PlatformField {
    pub const ALL: [(&'static str, PlatformField); 6] = [
        ("employee_id", PlatformField::EmployeeId),
        ("email", PlatformField::Email),
        ("first_name", PlatformField::FirstName),
        ("last_name", PlatformField::LastName),
        ("language", PlatformField::Language),
        ("active", PlatformField::Active),
    ];

    pub fn parse(s: &str) -> Option<PlatformField> {
        Self::ALL.iter().find(|(n, _)| *n == s).map(|(_, f)| *f)
    }

    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|(_, f)| *f == self).map(|(n, _)| *n).unwrap_or("?")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transform {
    Trim,
    Lowercase,
    Uppercase,
    TitleCase,
    CollapseSpaces,
}

impl Transform {
    pub fn parse(s: &str) -> Option<Transform> {
        Some(match s {
            "trim" => Transform::Trim,
            "lowercase" => Transform::Lowercase,
            "uppercase" => Transform::Uppercase,
            "title-case" => Transform::TitleCase,
            "collapse-spaces" => Transform::CollapseSpaces,
            _ => return None,
        })
    }
}

/// Where a field's raw value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Column(String),
    /// Literal text and column references, in order.
    Template(Vec<TemplatePart>),
    /// No source: the default alone (e.g. `language = { default = "en" }`).
    Constant,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplatePart {
    Text(String),
    Column(String),
}

/// A checked field rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRule {
    pub input: Input,
    pub transforms: Vec<Transform>,
    /// Source value → platform value (booleans written as "true"/"false").
    pub map: Option<Vec<(String, String)>>,
    pub fallback: Option<String>,
    pub default: Option<String>,
    /// strftime input format; output ISO 8601.
    pub date: Option<String>,
}

impl FieldRule {
    /// Source columns this rule reads.
    pub fn columns(&self) -> Vec<&str> {
        match &self.input {
            Input::Column(c) => vec![c.as_str()],
            Input::Template(parts) => parts
                .iter()
                .filter_map(|p| match p {
                    TemplatePart::Column(c) => Some(c.as_str()),
                    TemplatePart::Text(_) => None,
                })
                .collect(),
            Input::Constant => vec![],
        }
    }
}

/// How to read the file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceOptions {
    /// None = auto-detect.
    pub delimiter: Option<u8>,
    /// WHATWG encoding label; None = UTF-8 with BOM sniffing (UTF-8/UTF-16).
    pub encoding: Option<&'static encoding_rs::Encoding>,
    pub sheet: Option<String>,
    /// 1-based.
    pub header_row: u64,
    /// JSON pointer to the records array.
    pub records: Option<String>,
    /// Bounds on what the file may make us read or hold.
    pub limits: crate::format::Limits,
}

/// A checked mapping file.
#[derive(Debug, Clone)]
pub struct Mapping {
    pub unique_id: UniqueId,
    pub source: SourceOptions,
    pub fields: BTreeMap<PlatformField, FieldRule>,
    pub attributes: BTreeMap<String, FieldRule>,
}

impl Mapping {
    /// Every source column the mapping reads, in a stable order, without repeats.
    pub fn columns(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for rule in self.fields.values().chain(self.attributes.values()) {
            for c in rule.columns() {
                if !out.iter().any(|o| o == c) {
                    out.push(c.to_string());
                }
            }
        }
        out
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
