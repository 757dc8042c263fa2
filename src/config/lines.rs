//! Finds the line of a key in a TOML file, so that every config problem can say
//! `connectors.toml:14`. serde's errors know the key path but not the line; the TOML parser
//! knows where every key and value is written. This index joins the two: it walks the
//! parser's spanned document (`toml::de::DeTable`) once and keeps each key path's line, so
//! a key in an inline table, in a table of an array or after a multi-line value points at
//! the line it is really on.

use std::collections::HashMap;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// Key path ("connectors.acme.sftp.port", "fields.email.transform[1]", as
/// serde_path_to_error writes them) → 1-based line where it is written.
#[derive(Debug, Default)]
pub struct LineIndex {
    lines: HashMap<String, usize>,
}

impl LineIndex {
    /// The index of `src`. A file that does not parse is indexed as far as the parser could
    /// recover; its syntax error is reported on its own (`Checker::toml`).
    pub fn new(src: &str) -> LineIndex {
        let (doc, _errors) = DeTable::parse_recoverable(src);
        let starts = LineStarts::new(src);
        let mut lines = HashMap::new();
        index_table(doc.get_ref(), "", &starts, &mut lines);
        LineIndex { lines }
    }

    /// The line of `path`, or of its nearest parent that has one.
    pub fn line(&self, path: &str) -> Option<usize> {
        let mut p = path;
        loop {
            if let Some(&n) = self.lines.get(p) {
                return Some(n);
            }
            // The parent of "a.b[2]" is "a.b", of "a.b" is "a".
            p = match p.strip_suffix(']').and_then(|q| q.rfind('[')) {
                Some(open) => &p[..open],
                None => &p[..p.rfind('.')?],
            };
        }
    }
}

/// Each key's line is where the key itself is written (for a table header, the header); the
/// first place counts when dotted keys or headers name a table again.
fn index_table(table: &DeTable<'_>, prefix: &str, starts: &LineStarts, out: &mut HashMap<String, usize>) {
    for (key, value) in table.iter() {
        let path = if prefix.is_empty() { key.get_ref().to_string() } else { format!("{prefix}.{}", key.get_ref()) };
        out.entry(path.clone()).or_insert_with(|| starts.line(key.span().start));
        index_value(value, &path, starts, out);
    }
}

fn index_value(value: &Spanned<DeValue<'_>>, path: &str, starts: &LineStarts, out: &mut HashMap<String, usize>) {
    match value.get_ref() {
        DeValue::Table(t) => index_table(t, path, starts, out),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let at = format!("{path}[{i}]");
                out.entry(at.clone()).or_insert_with(|| starts.line(item.span().start));
                index_value(item, &at, starts, out);
            }
        }
        _ => {}
    }
}

/// Byte offset → 1-based line, by binary search over where each line starts.
struct LineStarts(Vec<usize>);

impl LineStarts {
    fn new(src: &str) -> LineStarts {
        LineStarts(std::iter::once(0).chain(src.match_indices('\n').map(|(i, _)| i + 1)).collect())
    }

    fn line(&self, offset: usize) -> usize {
        self.0.partition_point(|&start| start <= offset).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_keys_in_tables_and_inline_tables() {
        let src = "[platform]\nbase_url = \"x\"\n\n[connectors.acme.sftp]\nport = 22\n[fields]\nemail = { column = \"Email\", transform = [\"trim\"] }\n\"First Name\" = 1\n";
        let ix = LineIndex::new(src);
        assert_eq!(ix.line("platform.base_url"), Some(2));
        assert_eq!(ix.line("connectors.acme.sftp.port"), Some(5));
        assert_eq!(ix.line("connectors.acme.sftp.nope"), Some(4));
        assert_eq!(ix.line("fields.email.column"), Some(7));
        assert_eq!(ix.line("fields.First Name"), Some(8));
        assert_eq!(ix.line("nothing"), None);
    }

    #[test]
    fn a_multi_line_array_puts_each_element_and_the_keys_after_it_on_their_lines() {
        let src = "[fields.email]\ncolumn = \"Email\"\ntransform = [\n  \"trim\",\n  \"lowercase\",\n]\ndate = \"%d/%m/%Y\"\n";
        let ix = LineIndex::new(src);
        assert_eq!(ix.line("fields.email.transform"), Some(3));
        assert_eq!(ix.line("fields.email.transform[1]"), Some(5));
        assert_eq!(ix.line("fields.email.date"), Some(7));
    }

    #[test]
    fn a_multi_line_string_does_not_hide_the_keys_after_it() {
        let src = "[fields.name]\ntemplate = \"\"\"\n{First} = {Last}\n[not.a.table]\n\"\"\"\ndefault = \"x\"\n";
        let ix = LineIndex::new(src);
        assert_eq!(ix.line("fields.name.default"), Some(6));
        assert_eq!(ix.line("not.a.table"), None, "text inside the string is no header");
        assert_eq!(ix.line("fields.First"), Some(1), "nor a key: the nearest parent is the header");
    }

    #[test]
    fn an_inline_table_with_commas_and_equals_inside_strings() {
        let src = "[attributes]\n\ndepartment = { map = { \"R&D, Lab\" = \"Research, =Dev\", \"Ops\" = \"Operations\" }, fallback = \"a, b = c\", column = \"Dept\" }\n";
        let ix = LineIndex::new(src);
        assert_eq!(ix.line("attributes.department.map.R&D, Lab"), Some(3));
        assert_eq!(ix.line("attributes.department.map.Ops"), Some(3));
        assert_eq!(ix.line("attributes.department.column"), Some(3));
        assert_eq!(ix.line("attributes.department.fallback"), Some(3));
    }

    #[test]
    fn an_inline_table_over_several_lines() {
        let src = "[fields]\nemail = { column = \"Email\", transform = [\n  \"trim\",\n], default = \"x\" }\n";
        let ix = LineIndex::new(src);
        assert_eq!(ix.line("fields.email"), Some(2));
        assert_eq!(ix.line("fields.email.transform[0]"), Some(3));
        assert_eq!(ix.line("fields.email.default"), Some(4));
    }

    #[test]
    fn dotted_keys_point_at_their_line() {
        let src = "[connectors.acme]\nmapping = \"m.toml\"\nsftp.host = \"h\"\nsftp.\"port\" = 22\nfile . path = \"/x\"\n";
        let ix = LineIndex::new(src);
        assert_eq!(ix.line("connectors.acme.sftp.host"), Some(3));
        assert_eq!(ix.line("connectors.acme.sftp.port"), Some(4));
        assert_eq!(ix.line("connectors.acme.sftp"), Some(3), "a table made by dotted keys is where it is first named");
        assert_eq!(ix.line("connectors.acme.file.path"), Some(5));
    }

    #[test]
    fn a_file_that_does_not_parse_is_indexed_up_to_its_error() {
        let ix = LineIndex::new("[platform]\nbase_url = \"x\"\nport = = 3\n");
        assert_eq!(ix.line("platform.base_url"), Some(2));
    }
}
