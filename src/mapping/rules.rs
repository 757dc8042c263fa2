//! What the mapping stage is configured with: the checked rules of one mapping file
//! (`mappings/NAME.toml`). The mapping stage owns these types; `config` reads the file, checks
//! it and builds them (`config::parse_mapping`).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::IntoDeserializer;

use crate::format::SourceOptions;

/// The identifying field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UniqueId {
    EmployeeId,
    Email,
}

/// Whether employee ids that differ only in case are one person.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdCase {
    #[default]
    Insensitive,
    Sensitive,
}

/// Platform fields that `[fields]` may set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
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
        // Through serde, so the names are the ones a mapping file accepts.
        PlatformField::deserialize(IntoDeserializer::<serde::de::value::Error>::into_deserializer(s)).ok()
    }

    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|(_, f)| *f == self).map(|(n, _)| *n).unwrap_or("?")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transform {
    Trim,
    Lowercase,
    Uppercase,
    TitleCase,
    CollapseSpaces,
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

/// A checked mapping file.
#[derive(Debug, Clone)]
pub struct Mapping {
    pub unique_id: UniqueId,
    pub id_case: IdCase,
    pub source: SourceOptions,
    pub fields: BTreeMap<PlatformField, FieldRule>,
    pub attributes: BTreeMap<String, FieldRule>,
    /// `[groups]`: groups from attribute values (`crate::plan::groups`); None without one.
    pub groups: Option<crate::plan::groups::GroupRule>,
    /// `[scope]`: the rows this connector provisions (empty: every row).
    pub scope: super::scope::Scope,
    /// `[fields] start_date` / `end_date`: when a person is active.
    pub dates: super::dates::DateRules,
}

impl Mapping {
    /// The stand-in of a mapping not written yet, for `fetch` (which reads no row): a new
    /// customer's first export is fetched to draft the mapping from.
    pub fn unwritten() -> Mapping {
        Mapping {
            unique_id: UniqueId::EmployeeId,
            id_case: IdCase::default(),
            source: SourceOptions { header_row: 1, ..SourceOptions::default() },
            fields: BTreeMap::new(),
            attributes: BTreeMap::new(),
            groups: None,
            scope: Default::default(),
            dates: Default::default(),
        }
    }

    /// How this mapping's unique ids compare.
    pub fn id_rule(&self) -> crate::model::IdRule {
        crate::model::IdRule {
            fold_case: self.unique_id == UniqueId::Email || self.id_case == IdCase::Insensitive,
            upper: self.unique_id == UniqueId::EmployeeId,
        }
    }

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
        for c in self.scope.columns().chain(self.dates.columns()) {
            if !out.iter().any(|o| o == c) {
                out.push(c.to_string());
            }
        }
        out
    }
}
