//! Finds the line of a key in a TOML file, so that every config problem can say
//! `connectors.toml:14`. serde's errors know the key path but not the line; the toml
//! parser knows lines but stops at the first error. This index joins the two.

use std::collections::HashMap;

/// Key path ("connectors.acme.sftp.port") → 1-based line where it is written.
#[derive(Debug, Default)]
pub struct LineIndex {
    lines: HashMap<String, usize>,
}

impl LineIndex {
    pub fn new(src: &str) -> LineIndex {
        let mut lines = HashMap::new();
        let mut table: Vec<String> = Vec::new();
        for (i, raw) in src.lines().enumerate() {
            let n = i + 1;
            let l = raw.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            if l.starts_with('[') {
                let inner = l.trim_start_matches('[');
                let end = inner.find(']').unwrap_or(inner.len());
                table = split_key(&inner[..end]);
                lines.entry(table.join(".")).or_insert(n);
                continue;
            }
            if let Some(eq) = find_eq(l) {
                let mut path = table.clone();
                path.extend(split_key(&l[..eq]));
                lines.entry(path.join(".")).or_insert(n);
                // Inline tables: `email = { column = "Email", … }` — index their keys too.
                let value = l[eq + 1..].trim();
                if value.starts_with('{') {
                    for part in value.trim_matches(|c| c == '{' || c == '}').split(',') {
                        if let Some(e) = find_eq(part) {
                            let mut p = path.clone();
                            p.extend(split_key(&part[..e]));
                            lines.entry(p.join(".")).or_insert(n);
                        }
                    }
                }
            }
        }
        LineIndex { lines }
    }

    /// The line of `path`, or of its nearest parent that has one.
    pub fn line(&self, path: &str) -> Option<usize> {
        let mut p = path;
        loop {
            if let Some(&n) = self.lines.get(p) {
                return Some(n);
            }
            p = &p[..p.rfind('.')?];
        }
    }
}

fn find_eq(l: &str) -> Option<usize> {
    let mut in_quote = None;
    for (i, c) in l.char_indices() {
        match (c, in_quote) {
            ('"' | '\'', None) => in_quote = Some(c),
            (q, Some(open)) if q == open => in_quote = None,
            ('=', None) => return Some(i),
            _ => {}
        }
    }
    None
}

fn split_key(k: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote = None;
    for c in k.chars() {
        match (c, quote) {
            ('"' | '\'', None) => quote = Some(c),
            (q, Some(open)) if q == open => quote = None,
            ('.', None) => out.push(std::mem::take(&mut cur).trim().to_string()),
            (c, _) => cur.push(c),
        }
    }
    out.push(cur.trim().to_string());
    out
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
}
