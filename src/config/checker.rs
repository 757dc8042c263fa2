//! Collects the problems of one file, each located by key and line: shared by the checks of
//! `connectors.toml` (mod.rs) and of mapping files (mapping.rs).

use std::path::Path;

use serde::de::DeserializeOwned;

use super::Problem;
use super::lines::LineIndex;
use super::word::{self, Parsed};

/// Collects problems against one file.
pub(super) struct Checker<'a> {
    pub file: &'a Path,
    index: LineIndex,
    pub problems: Vec<Problem>,
    /// The connector being checked, named in each problem (others keep running).
    pub connector: Option<String>,
}

impl<'a> Checker<'a> {
    pub fn new(file: &'a Path, src: &str) -> Self {
        Checker { file, index: LineIndex::new(src), problems: Vec::new(), connector: None }
    }

    pub fn problem(&mut self, key: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            file: self.file.to_path_buf(),
            line: self.index.line(key),
            key: key.to_string(),
            message: message.into(),
            connector: self.connector.clone(),
        });
    }

    /// The file as a TOML table, or None with the syntax error as a problem.
    pub fn toml(&mut self, src: &str) -> Option<toml::Table> {
        match toml::from_str(src) {
            Ok(t) => Some(t),
            Err(e) => {
                let line = e.span().map(|s| src[..s.start.min(src.len())].lines().count().max(1));
                self.problems.push(Problem {
                    file: self.file.to_path_buf(),
                    line,
                    key: String::new(),
                    message: format!("not valid TOML: {}", e.message()),
                    connector: self.connector.clone(),
                });
                None
            }
        }
    }

    /// Deserializes one section; a serde error becomes a located problem.
    ///
    /// Every unknown key of the section is reported in one pass: serde stops at the first
    /// one, so the key is taken out of the value and the section read again (a table has
    /// few keys; each round removes one). Three typos are three problems of one `check`,
    /// not three rounds of fix-and-rerun. The section is still returned when only unknown
    /// keys were refused, so the checks of its values run too and say what else is wrong;
    /// the caller sees the problems and refuses what they belong to.
    pub fn section<T: DeserializeOwned>(&mut self, key: &str, mut value: toml::Value) -> Option<T> {
        loop {
            let e = match serde_path_to_error::deserialize::<_, T>(value.clone()) {
                Ok(v) => return Some(v),
                Err(e) => e,
            };
            let mut segments: Vec<String> = e.path().iter().filter_map(segment_key).collect();
            let inner = e.path().to_string();
            let mut full = match (key, inner.as_str()) {
                (k, "." | "") => k.to_string(),
                ("", i) => i.to_string(),
                (k, i) => format!("{k}.{i}"),
            };
            // The message alone: the key is reported beside it, with its line.
            let mut msg = e.into_inner().message().trim().to_string();
            // "unknown field `prot`, expected one of …": point at the unknown key itself.
            // (serde reports an unknown key only as text; values go through `word`,
            // which gets them as data.)
            let mut unknown_key = None;
            if let Some(rest) = msg.strip_prefix("unknown field `")
                && let Some(end) = rest.find('`')
            {
                let unknown = &rest[..end];
                if !full.ends_with(&format!(".{unknown}")) && full != unknown {
                    full = if full.is_empty() { unknown.to_string() } else { format!("{full}.{unknown}") };
                }
                let hint = word::did_you_mean(unknown, rest.split('`').skip(2).step_by(2))
                    .map(|k| format!(" — did you mean `{k}`?"))
                    .unwrap_or_default();
                // The path may end at the unknown key itself or at its table.
                if segments.last().is_some_and(|l| l == unknown) {
                    segments.pop();
                }
                unknown_key = Some(unknown.to_string());
                msg = format!("unknown key{hint}; {}", msg.replacen("unknown field", "found", 1));
            }
            self.problem(&full, msg);
            // Only an unknown key is taken out and the rest read again: any other error
            // (a value of the wrong type, a missing key) leaves nothing safe to read past.
            let removed = unknown_key.is_some_and(|k| remove_at(&mut value, &segments, &k));
            if !removed {
                return None;
            }
        }
    }

    /// The value of a field typed `Parsed<T>`: None when absent, or when refused (then a
    /// problem at `key` says why).
    pub fn value<T>(&mut self, key: &str, v: Option<Parsed<T>>) -> Option<T> {
        match v?.0 {
            Ok(t) => Some(t),
            Err(e) => {
                self.problem(key, e.to_string());
                None
            }
        }
    }

    pub fn env_name(&mut self, key: &str, v: &str) {
        if v.is_empty() || !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            self.problem(
                key,
                format!(
                    "expected the NAME of an environment variable (secrets are never written in the config); got \"{}\"",
                    redact_if_secretish(v)
                ),
            );
        }
    }
}

/// An env-var field holding something that is not a variable name may be the secret itself:
/// never echo it.
pub(super) fn redact_if_secretish(v: &str) -> String {
    if v.len() > 12 {
        format!("{}… ({} characters, not shown)", &v[..v.char_indices().nth(3).map(|(i, _)| i).unwrap_or(0)], v.chars().count())
    } else {
        v.to_string()
    }
}

/// A path segment that names a table key (indexes and enum variants name none).
fn segment_key(s: &serde_path_to_error::Segment) -> Option<String> {
    match s {
        serde_path_to_error::Segment::Map { key } => Some(key.clone()),
        _ => None,
    }
}

/// Removes `key` from the table at `path` inside `value`; false when there is no such key
/// (then the section cannot be read past its error).
fn remove_at(value: &mut toml::Value, path: &[String], key: &str) -> bool {
    let mut at = value;
    for p in path {
        match at.as_table_mut().and_then(|t| t.get_mut(p)) {
            Some(v) => at = v,
            None => return false,
        }
    }
    at.as_table_mut().and_then(|t| t.remove(key)).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_not_echoed() {
        assert_eq!(redact_if_secretish("MY_TOKEN"), "MY_TOKEN");
        assert_eq!(redact_if_secretish("hunter2-is-my-password"), "hun… (22 characters, not shown)");
        // Multi-byte: cut on a character boundary, count characters.
        assert_eq!(redact_if_secretish("ééééééééééééé"), "ééé… (13 characters, not shown)");
        let mut ck = Checker::new(Path::new("c.toml"), "[platform]\ntoken_env = \"sk-live-0123456789abcdef\"\n");
        ck.env_name("platform.token_env", "sk-live-0123456789abcdef");
        assert_eq!(ck.problems.len(), 1);
        let m = &ck.problems[0].message;
        assert!(!m.contains("0123456789abcdef"), "{m}");
        assert!(m.contains("sk-… (24 characters, not shown)"), "{m}");
        assert_eq!(ck.problems[0].line, Some(2));
        ck.env_name("platform.token_env", "GOOD_NAME_1");
        assert_eq!(ck.problems.len(), 1);
    }

    #[test]
    fn an_unknown_key_is_located_and_near_names_suggested() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct S {
            port: Option<i64>,
            host: Option<String>,
        }
        let src = "[s]\nhost = \"h\"\nprot = 22\n";
        let mut ck = Checker::new(Path::new("c.toml"), src);
        let doc = ck.toml(src).unwrap();
        // Read past the unknown key (its values are checked too); the problem refuses it.
        assert!(ck.section::<S>("s", doc["s"].clone()).is_some());
        assert_eq!(ck.problems.len(), 1);
        let p = &ck.problems[0];
        assert_eq!((p.key.as_str(), p.line), ("s.prot", Some(3)));
        assert!(p.message.starts_with("unknown key — did you mean `port`?; found `prot`, expected"), "{}", p.message);
    }

    #[test]
    fn every_unknown_key_of_nested_tables_is_reported_and_the_rest_still_read() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Inner {
            port: Option<i64>,
        }
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct S {
            host: Option<String>,
            inner: Option<Inner>,
        }
        let src = "[s]\nhots = \"h\"\nhost = \"kept\"\n[s.inner]\nprot = 22\nport = 23\n";
        let mut ck = Checker::new(Path::new("c.toml"), src);
        let doc = ck.toml(src).unwrap();
        let s = ck.section::<S>("s", doc["s"].clone()).expect("read past its unknown keys");
        assert_eq!(s.host.as_deref(), Some("kept"));
        assert_eq!(s.inner.and_then(|i| i.port), Some(23));
        let found: Vec<(&str, Option<usize>)> = ck.problems.iter().map(|p| (p.key.as_str(), p.line)).collect();
        assert_eq!(found, [("s.hots", Some(2)), ("s.inner.prot", Some(5))]);
        // A value of the wrong type is not read past: nothing safe is left to return.
        let src = "[s]\nhost = 5\nhots = 1\n";
        let mut ck = Checker::new(Path::new("c.toml"), src);
        let doc = ck.toml(src).unwrap();
        assert!(ck.section::<S>("s", doc["s"].clone()).is_none());
    }

    #[test]
    fn a_syntax_error_is_one_located_problem() {
        let src = "a = 1\nb = = 2\n";
        let mut ck = Checker::new(Path::new("c.toml"), src);
        assert!(ck.toml(src).is_none());
        assert_eq!(ck.problems.len(), 1);
        assert_eq!(ck.problems[0].line, Some(2));
        assert!(ck.problems[0].message.starts_with("not valid TOML: "), "{}", ck.problems[0].message);
    }
}
