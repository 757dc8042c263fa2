//! CONFIG.md, the configuration reference, is generated from the structs serde reads the
//! files into (src/config/raw.rs for connectors.toml, src/config/mapping.rs for mapping
//! files): every key is a field, its `///` comment its documentation. This test fails when
//! a key has no comment, or when CONFIG.md is not what the structs say now; then
//!
//!     UPDATE_CONFIG_MD=1 cargo nextest run --locked config_reference::
//!
//! rewrites it. A struct is a table when its doc comment starts with the table's name in
//! backticks ("`[connectors.NAME.sftp]`: …"); enums that serde reads as words list their
//! values.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

const REGENERATE: &str = "UPDATE_CONFIG_MD=1 cargo nextest run --locked config_reference::";

/// The files whose structs are documented, with the title of their part.
const PARTS: [(&str, &str, &str); 3] = [
    (
        "src/config/raw.rs",
        "connectors.toml",
        "The one configuration file: the platform, the state store, the daemon, and a `[connectors.NAME]` section per customer. Relative paths in it are relative to its folder. Pass it with `--config PATH` or `ROSTERSYNC_CONFIG` (default `./connectors.toml`).",
    ),
    (
        "src/config/exchange.rs",
        "connectors.toml: the exchange with the customer",
        "Result files and email notices back to the customer (docs/exchange.md); OpenPGP exports are read with the `[connectors.NAME.file]` keys above.",
    ),
    (
        "src/config/mapping.rs",
        "Mapping files (`mappings/NAME.toml`)",
        "One per connector (its `mapping` key): how the customer's columns become users. `rostersync mapping suggest SAMPLE` drafts one from a sample export (`rostersync fetch NAME`).",
    ),
];

/// Files whose enums may type a field (closed sets of words).
const ENUM_FILES: [&str; 9] = [
    "src/config/raw.rs",
    "src/config/mapping.rs",
    "src/config/mod.rs",
    "src/config/units.rs",
    "src/source/settings.rs",
    "src/mapping/rules.rs",
    "src/plan/settings.rs",
    "src/exchange/result_file.rs",
    "src/exchange/email.rs",
];

/// Types with their own syntax, as a reader writes them.
fn known_type(name: &str) -> Option<&'static str> {
    Some(match name {
        "String" => "string",
        "i64" | "u64" | "u32" | "usize" => "integer",
        "bool" => "boolean",
        "HumanDuration" => "duration (\"30s\", \"2m\", \"1h30m\", \"8d\")",
        "Size" => "size (\"500MB\", \"2GiB\")",
        "Limit" => "count or percent (\"25\", \"10%\")",
        "After" => "\"keep\", \"delete\" or \"move:DIR\"",
        "FormatChoice" => "\"auto\" or a format",
        "FieldSpec" => "column name, or table (below)",
        "Value" => "string, number or boolean",
        "RawOAuth2" => "table (`[platform.oauth2]`)",
        "RawSourceOptions" => "table (`[source]`)",
        "RawGroups" => "table (`[groups]`)",
        "RawScope" => "table (`[scope]`)",
        _ => return None,
    })
}

struct Table {
    heading: String,
    doc: String,
    keys: Vec<Key>,
}

struct Key {
    name: String,
    ty: String,
    required: bool,
    doc: String,
}

fn doc_of(attrs: &[syn::Attribute]) -> String {
    let mut lines = Vec::new();
    for a in attrs {
        if a.path().is_ident("doc")
            && let syn::Meta::NameValue(nv) = &a.meta
            && let syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(s), .. }) = &nv.value
        {
            lines.push(s.value().trim().to_string());
        }
    }
    lines.join(" ").trim().to_string()
}

/// Whether `name` appears in the type, at any depth of its generics.
fn mentions(ty: &syn::Type, name: &str) -> bool {
    let syn::Type::Path(p) = ty else { return false };
    p.path.segments.iter().any(|s| {
        s.ident == name
            || matches!(&s.arguments, syn::PathArguments::AngleBracketed(a)
                if a.args.iter().any(|g| matches!(g, syn::GenericArgument::Type(t) if mentions(t, name))))
    })
}

fn derives_deserialize(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().filter(|a| a.path().is_ident("derive")).any(|a| {
        a.parse_args_with(syn::punctuated::Punctuated::<syn::Path, syn::Token![,]>::parse_terminated)
            .map(|paths| paths.iter().any(|p| p.segments.last().is_some_and(|s| s.ident == "Deserialize")))
            .unwrap_or(false)
    })
}

fn has_serde(attrs: &[syn::Attribute], word: &str) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("serde") && {
            let mut found = false;
            let _ = a.parse_nested_meta(|m| {
                if m.path.is_ident(word) {
                    found = true;
                }
                if m.input.peek(syn::Token![=]) {
                    let _: syn::Expr = m.value()?.parse()?;
                }
                Ok(())
            });
            found
        }
    })
}

fn rename_all(attrs: &[syn::Attribute]) -> Option<String> {
    let mut out = None;
    for a in attrs.iter().filter(|a| a.path().is_ident("serde")) {
        let _ = a.parse_nested_meta(|m| {
            if m.path.is_ident("rename_all") {
                let s: syn::LitStr = m.value()?.parse()?;
                out = Some(s.value());
            } else if m.input.peek(syn::Token![=]) {
                let _: syn::Expr = m.value()?.parse()?;
            }
            Ok(())
        });
    }
    out
}

fn words(ident: &str, style: &str) -> String {
    let mut out = String::new();
    for (i, c) in ident.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push(if style == "kebab-case" { '-' } else { '_' });
        }
        out.extend(c.to_lowercase());
    }
    out
}

/// Enums serde reads as one of their variants' names: name → the words.
fn word_enums(root: &Path) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for f in ENUM_FILES {
        let file = syn::parse_file(&std::fs::read_to_string(root.join(f)).unwrap()).unwrap_or_else(|e| panic!("{f}: {e}"));
        for item in file.items {
            if let syn::Item::Enum(e) = item
                && let Some(style) = rename_all(&e.attrs)
                && e.variants.iter().all(|v| matches!(v.fields, syn::Fields::Unit))
            {
                out.insert(e.ident.to_string(), e.variants.iter().map(|v| words(&v.ident.to_string(), &style)).collect());
            }
        }
    }
    out
}

/// The type as a reader writes the value, and whether the key may be left out.
fn describe(ty: &syn::Type, enums: &BTreeMap<String, Vec<String>>) -> (String, bool) {
    let syn::Type::Path(p) = ty else { return ("value".into(), true) };
    let Some(last) = p.path.segments.last() else { return ("value".into(), true) };
    let name = last.ident.to_string();
    let inner = || match &last.arguments {
        syn::PathArguments::AngleBracketed(a) => a.args.iter().rev().find_map(|g| match g {
            syn::GenericArgument::Type(t) => Some(t),
            _ => None,
        }),
        _ => None,
    };
    match name.as_str() {
        "Option" => (describe(inner().expect("Option<T>"), enums).0, false),
        "Parsed" => describe(inner().expect("Parsed<T>"), enums),
        "Vec" => (format!("list of {}", describe(inner().expect("Vec<T>"), enums).0), true),
        "BTreeMap" | "HashMap" => (format!("table of NAME = {}", describe(inner().expect("map value"), enums).0), true),
        n => match (known_type(n), enums.get(n)) {
            (Some(t), _) => (t.to_string(), true),
            (None, Some(ws)) => (ws.iter().map(|w| format!("\"{w}\"")).collect::<Vec<_>>().join(" | "), true),
            (None, None) => panic!("no description for the type {n}: add it to known_type() in tests/config_reference.rs"),
        },
    }
}

fn tables(root: &Path, file: &str, enums: &BTreeMap<String, Vec<String>>, undocumented: &mut Vec<String>) -> Vec<Table> {
    let src = std::fs::read_to_string(root.join(file)).unwrap();
    let parsed = syn::parse_file(&src).unwrap_or_else(|e| panic!("{file}: {e}"));
    let mut out = Vec::new();
    for item in parsed.items {
        let syn::Item::Struct(s) = item else { continue };
        let syn::Fields::Named(fields) = &s.fields else { continue };
        // The shapes serde reads; the checked structs built from them are not keys.
        if !derives_deserialize(&s.attrs) {
            continue;
        }
        let doc = doc_of(&s.attrs);
        // The heading: the doc's first backticked words.
        let heading = doc.strip_prefix('`').and_then(|d| d.split_once('`')).map(|(h, rest)| (h.to_string(), rest));
        let Some((heading, rest)) = heading else {
            // Only the whole-file shell, whose sections are tables of their own, has none.
            assert!(s.ident == "RawFileTop", "{file}: struct {} has no table name: start its doc comment with it in backticks", s.ident);
            continue;
        };
        let mut keys = Vec::new();
        for f in &fields.named {
            let name = f.ident.as_ref().unwrap().to_string();
            let fdoc = doc_of(&f.attrs);
            // A sub-table left as a value is documented as its own table.
            if fdoc.is_empty() && mentions(&f.ty, "Value") {
                continue;
            }
            if fdoc.is_empty() {
                undocumented.push(format!("{file}: {}.{name} ({heading})", s.ident));
            }
            let (ty, mut required) = describe(&f.ty, enums);
            if has_serde(&f.attrs, "default") {
                required = false;
            }
            keys.push(Key { name, ty, required, doc: fdoc });
        }
        let rest = rest.trim_start_matches([':', ',', ' ']).trim();
        // "where users are pushed." reads as a sentence under its heading.
        let mut chars = rest.chars();
        let doc = chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default();
        out.push(Table { heading, doc, keys });
    }
    out
}

/// A table cell: pipes escaped, so a list of words stays in its column.
fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

fn render(root: &Path, undocumented: &mut Vec<String>) -> String {
    let enums = word_enums(root);
    let mut md = String::new();
    writeln!(md, "# Configuration reference\n").unwrap();
    writeln!(
        md,
        "Every key of `connectors.toml` and of the mapping files. Generated from the `///` comments of the structs the files are read \
         into (`src/config/raw.rs`, `src/config/mapping.rs`) — do not edit by hand; change the comments and run `{REGENERATE}`.\n"
    )
    .unwrap();
    writeln!(
        md,
        "**What goes wrong.** `rostersync check` reads both kinds of file and reports *every* problem at once, each as \
         `FILE:LINE: KEY: what was expected; what was found` (an unknown key with the nearest known one: \"did you mean `pick`?\"), \
         then checks the environment the keys name (variables set, key and secret files readable, key files private, known_hosts \
         readable and knowing the host); `check --online` also connects. A connector with a problem is refused (exit 2) and the others \
         still run; a problem in `[platform]`, `[state]` or `[daemon]` stops everything. Secrets are never written in these files: \
         a `*_env` key names an environment variable, a `*_file` key a file (one trailing newline ignored) — give one or the other.\n"
    )
    .unwrap();
    for (file, title, intro) in PARTS {
        writeln!(md, "## {title}\n\n{intro}\n").unwrap();
        for t in tables(root, file, &enums, undocumented) {
            writeln!(md, "### `{}`\n", t.heading).unwrap();
            if !t.doc.is_empty() {
                writeln!(md, "{}\n", t.doc).unwrap();
            }
            writeln!(md, "| key | type | | description |\n| --- | --- | --- | --- |").unwrap();
            for k in &t.keys {
                writeln!(
                    md,
                    "| `{}` | {} | {} | {} |",
                    k.name,
                    cell(&k.ty),
                    if k.required { "required" } else { "optional" },
                    cell(&k.doc)
                )
                .unwrap();
            }
            writeln!(md).unwrap();
        }
    }
    md
}

#[test]
fn config_md_documents_every_key_and_is_fresh() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut undocumented = Vec::new();
    let md = render(root, &mut undocumented);
    assert!(
        undocumented.is_empty(),
        "these keys have no `///` doc comment (it is their documentation in CONFIG.md):\n  {}",
        undocumented.join("\n  ")
    );
    let path = root.join("CONFIG.md");
    if std::env::var_os("UPDATE_CONFIG_MD").is_some() {
        std::fs::write(&path, &md).unwrap();
        return;
    }
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(current == md, "CONFIG.md is stale (or missing): regenerate it with `{REGENERATE}` and commit it");
}

#[test]
fn the_reference_names_the_keys_users_look_for() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let md = render(root, &mut Vec::new());
    for expected in [
        "### `[connectors.NAME.sftp]`",
        "| `host_key` | string | optional | Pinned host key fingerprint",
        "| `token_file` | string | optional |",
        "| `pick` | \"newest\" \\| \"last-name\" | optional |",
        "| `min_age` | duration (\"30s\", \"2m\", \"1h30m\", \"8d\") | optional |",
        "| `mapping` | string | required |",
        "### `[source]`",
        "| `unique_id` | \"employee_id\" \\| \"email\" | required |",
    ] {
        assert!(md.contains(expected), "missing «{expected}» in:\n{md}");
    }
}
