//! `[scope]` of a mapping (issue 27): which rows of the file are people this connector
//! provisions. A row is in scope when, for every `include` column, its value is one of that
//! column's values, and for no `exclude` column its value is one of those. Values compare
//! trimmed and without case ("Employee" is " employee"). Rows out of scope are not mapped:
//! they get no account, and a known person whose row moves out of scope is handled by
//! `[sync] out_of_scope` (`plan::lifecycle`).

use crate::format::Record;

/// The checked `[scope]`: (column, accepted values), in the file's order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    pub include: Vec<(String, Vec<String>)>,
    pub exclude: Vec<(String, Vec<String>)>,
}

impl Scope {
    pub fn is_empty(&self) -> bool {
        self.include.is_empty() && self.exclude.is_empty()
    }

    /// The columns the scope reads.
    pub fn columns(&self) -> impl Iterator<Item = &str> {
        self.include.iter().chain(&self.exclude).map(|(c, _)| c.as_str())
    }
}

/// A scope compiled against the record's columns: (index, lowercased values).
#[derive(Debug, Clone, Default)]
pub(super) struct CompiledScope {
    include: Vec<(usize, Vec<String>)>,
    exclude: Vec<(usize, Vec<String>)>,
}

impl CompiledScope {
    pub(super) fn new(scope: &Scope, pos: impl Fn(&str) -> usize) -> CompiledScope {
        let compile = |list: &[(String, Vec<String>)]| -> Vec<(usize, Vec<String>)> {
            list.iter().map(|(c, vs)| (pos(c), vs.iter().map(|v| v.trim().to_lowercase()).collect())).collect()
        };
        CompiledScope { include: compile(&scope.include), exclude: compile(&scope.exclude) }
    }

    /// Whether the record is in scope. An absent or empty cell matches no value.
    pub(super) fn admits(&self, record: &Record) -> bool {
        let has = |i: usize, values: &[String]| {
            record.get(i).map(str::trim).filter(|v| !v.is_empty()).is_some_and(|v| {
                let v = v.to_lowercase();
                values.contains(&v)
            })
        };
        self.include.iter().all(|(i, vs)| has(*i, vs)) && !self.exclude.iter().any(|(i, vs)| has(*i, vs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::Mapper;
    use crate::mapping::rules::Mapping;

    fn mapper(scope: Scope) -> Mapper {
        let src = "unique_id = \"employee_id\"\n[fields]\nemployee_id = \"Id\"\nfirst_name = \"First\"\nlast_name = \"Last\"\n";
        let mut m: Mapping = crate::config::mapping::parse_mapping(src, std::path::Path::new("m.toml")).unwrap();
        m.scope = scope;
        Mapper::new(&m)
    }

    fn rec(m: &Mapper, cells: &[(&str, &str)]) -> Record {
        let values: Vec<Option<String>> =
            m.columns().iter().map(|c| cells.iter().find(|(k, _)| k == c).map(|(_, v)| v.to_string())).collect();
        Record::from_values(2, values)
    }

    #[test]
    fn include_and_exclude_table() {
        let s = Scope {
            include: vec![("Type".into(), vec!["Employee".into(), "Intern".into()])],
            exclude: vec![("Company".into(), vec!["Agency Ltd".into()])],
        };
        let m = mapper(s);
        for (cells, want, why) in [
            (vec![("Type", "Employee")], true, "listed"),
            (vec![("Type", " intern ")], true, "trimmed, without case"),
            (vec![("Type", "Contractor")], false, "not listed"),
            (vec![("Type", "")], false, "empty matches nothing"),
            (vec![], false, "absent matches nothing"),
            (vec![("Type", "Employee"), ("Company", "AGENCY LTD")], false, "excluded"),
            (vec![("Type", "Employee"), ("Company", "Acme")], true, "not excluded"),
        ] {
            assert_eq!(m.in_scope(&rec(&m, &cells)), want, "{why}: {cells:?}");
        }
        let all = mapper(Scope::default());
        assert!(all.in_scope(&rec(&all, &[])), "no scope: every row");
    }
}
