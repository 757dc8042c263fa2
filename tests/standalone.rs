//! The repository stands alone: a clone has everything its code, docs and scripts point
//! at. Nothing tracked may refer to files outside it (the design contract is
//! docs/design.md; the benchmarks' export generator is scripts/gen_hris.py), and that
//! generator writes what the benchmarks and mappings/demo.toml expect.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// References to files a clone does not have. Spelled in pieces so that this file does not
/// match itself.
fn outside_references() -> [String; 4] {
    [["..", "/shared"].concat(), ["shared", "/tools/"].concat(), ["DESIGN", ".md"].concat(), ["/work", "/shared"].concat()]
}

/// The tracked files, or None (after saying why) when this is not a git checkout, e.g. a
/// crate unpacked from a tarball. Under CI=true that is a failure: CI always has a checkout.
fn tracked_files() -> Option<Vec<PathBuf>> {
    let out = Command::new("git").arg("-C").arg(root()).args(["ls-files", "-z"]).output();
    let why = match &out {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!("`git ls-files` failed: {}", String::from_utf8_lossy(&o.stderr).trim())),
        Err(e) => Some(format!("git could not be run: {e}")),
    };
    if let Some(why) = why {
        assert!(!under_ci(), "{why}; under CI=true the repository must be a git checkout");
        eprintln!("NOT CHECKED: {why} (not a git checkout?); under CI=true this fails");
        return None;
    }
    let stdout = out.expect("checked above").stdout;
    Some(stdout.split(|b| *b == 0).filter(|p| !p.is_empty()).map(|p| PathBuf::from(String::from_utf8_lossy(p).into_owned())).collect())
}

#[test]
fn nothing_tracked_refers_outside_the_repository() {
    let Some(files) = tracked_files() else { return };
    assert!(!files.is_empty(), "git ls-files listed no file");
    let patterns = outside_references();
    let mut found = Vec::new();
    for file in &files {
        // A file deleted in the work tree but not yet from the index has nothing to check;
        // binary files (not UTF-8) hold no references a reader follows.
        let Ok(bytes) = std::fs::read(root().join(file)) else { continue };
        let Ok(text) = String::from_utf8(bytes) else { continue };
        for (n, line) in text.lines().enumerate() {
            if let Some(p) = patterns.iter().find(|p| line.contains(p.as_str())) {
                found.push(format!("{}:{}: `{p}` in: {}", file.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "tracked files refer to files outside the repository (a clone does not have them); point them at docs/design.md or scripts/gen_hris.py:\n{}",
        found.join("\n")
    );
}

const HEADER: &str = "\"Personnel Number\",\"First Name\",\"Last Name\",\"Email\",\"Language\",\"Active\",\"Department\",\"Job Title\",\"Manager ID\",\"Location\",\"Hire Date\",\"Cost Center\"";

fn gen_hris(args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg(root().join("scripts/gen_hris.py"))
        .args(args)
        .output()
        .expect("python3 runs scripts/gen_hris.py (python3 is needed by the tests and the benchmarks)");
    assert!(out.status.success(), "gen_hris.py {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("gen_hris.py writes UTF-8")
}

#[test]
fn gen_hris_writes_the_header_and_rows_asked_for() {
    let csv = gen_hris(&["200"]);
    let lines: Vec<&str> = csv.split_terminator("\r\n").collect();
    assert_eq!(lines[0], HEADER);
    assert_eq!(lines.len(), 201, "a header and 200 rows");
    assert!(lines[1].starts_with("\"E0100000\","), "ids start at E0100000: {}", lines[1]);
    assert!(!csv.contains(".."), "no email with \"..\" (every row valid)");
    assert_eq!(csv, gen_hris(&["200"]), "the same arguments give the same file");
    assert_ne!(csv, gen_hris(&["200", "--seed", "8"]), "another seed, another file");

    let ndjson = gen_hris(&["50", "--format", "ndjson"]);
    assert_eq!(ndjson.lines().count(), 50);
    let json = gen_hris(&["3", "--format", "json"]);
    assert!(json.starts_with("{\"employees\": [{\"Personnel Number\": \"E0100000\""), "{json}");

    // A day-2 file: the same people, some with new job data, some gone.
    let day2 = gen_hris(&["200", "--change", "10", "--drop", "10"]);
    let day2: Vec<&str> = day2.split_terminator("\r\n").collect();
    assert_eq!(day2[0], HEADER);
    let kept = day2.len() - 1;
    assert!((160..200).contains(&kept), "about 10% dropped, {kept} of 200 rows kept");
    let changed = day2[1..].iter().filter(|row| !lines.contains(row)).count();
    assert!((5..=40).contains(&changed), "about 10% changed, {changed} rows differ");
}

#[test]
fn gen_hris_has_every_column_the_demo_mapping_reads() {
    // The benchmarks sync gen_hris.py's files through mappings/demo.toml.
    let text = std::fs::read_to_string(root().join("mappings/demo.toml")).unwrap();
    let mapping: toml::Table = text.parse().unwrap();
    let header = gen_hris(&["1"]);
    let columns: Vec<&str> = header.lines().next().unwrap().split(',').map(|c| c.trim_matches('"')).collect();
    let mut read = Vec::new();
    for table in ["fields", "attributes"] {
        for (name, field) in mapping[table].as_table().unwrap() {
            // `name = "Column"`, or `name = { column = "Column", … }`.
            let column = field.as_str().or_else(|| field.get("column").and_then(|c| c.as_str()));
            read.push((name.clone(), column.unwrap_or_else(|| panic!("{table}.{name}: no column")).to_string()));
        }
    }
    assert!(read.len() >= 10, "{read:?}");
    for (name, column) in &read {
        assert!(columns.contains(&column.as_str()), "mappings/demo.toml reads {name} from {column:?}, which gen_hris.py does not write");
    }
}
