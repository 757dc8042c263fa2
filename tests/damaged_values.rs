//! Damaged values rather than damaged files, each synced after a clean baseline against the
//! real scim2-server, through the CLI: control characters in a mapped field, a UTF-16
//! export without its byte-order mark, dates written the other way round from the mapping's
//! format, a date format that cannot read a date, a file name holding terminal escapes, and
//! a status column drafted by `mapping suggest`. Whatever is wrong, nobody is deactivated,
//! deleted or duplicated, the damaged value never reaches the platform, and the report says
//! what was wrong and where. The safeguards are opened wide, as in tests/damaged_files.rs.

use crate::support;

use std::collections::HashMap;

use support::project::{HEADER, Project, row, rows};
use support::scim::ScimServer;

// `max_updates` too: the file read right at last changes every hire date, which is the point
// here, not a wrong file (that is tests/wrong_files.rs).
const SYNC: &str = "max_deactivations = \"100%\"\nmax_invalid = \"100%\"\nmax_updates = \"100%\"";
const BASELINE: u32 = 10;

/// The platform's users by externalId, without `meta` (timestamps change on any write);
/// fails on two accounts for one person.
fn platform(scim: &ScimServer) -> HashMap<String, serde_json::Value> {
    let mut m = HashMap::new();
    for mut u in scim.users() {
        let ext = u["externalId"].as_str().unwrap_or_default().to_string();
        if let Some(o) = u.as_object_mut() {
            o.remove("meta");
        }
        assert!(m.insert(ext.clone(), u).is_none(), "two accounts for externalId {ext}");
    }
    m
}

/// A project synced once with `BASELINE` clean rows, and the platform as it then is.
fn baseline(scim: &ScimServer) -> (Project, HashMap<String, serde_json::Value>) {
    let p = Project::new(scim, SYNC);
    p.export("employees_2026-01-01.csv", &rows(BASELINE));
    let (code, r) = p.sync_json(&[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["counts"]["created"], BASELINE);
    let before = platform(scim);
    assert_eq!(before.len(), BASELINE as usize);
    assert!(before.values().all(|u| u["active"] == true));
    (p, before)
}

fn csv(lines: &[String]) -> String {
    let mut s = format!("{HEADER}\n");
    for l in lines {
        s.push_str(l);
        s.push('\n');
    }
    s
}

/// Writes an export as the newest file and syncs it with --json.
fn sync_bytes(p: &Project, name: &str, bytes: &[u8]) -> (i32, serde_json::Value) {
    std::fs::write(p.path().join("exports").join(name), bytes).unwrap();
    p.sync_json(&[])
}

fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

#[test]
fn control_characters_in_mapped_fields_are_row_errors_and_never_reach_the_platform() {
    let scim = ScimServer::start();
    let (p, before) = baseline(&scim);

    let mut rs = rows(BASELINE);
    rs[2] = rs[2].replacen("Lee3", "Lee3\0x", 1); // NUL in Last Name, line 4
    rs[4] = rs[4].replacen("Ann5", "Ann5\x1b[31m", 1); // an escape in First Name, line 6
    rs[6] = rs[6].replacen("Engineering", "Engi\tneering", 1); // a tab in Department, line 8
    let (code, r) = sync_bytes(&p, "employees_2026-02-01.csv", csv(&rs).as_bytes());
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["counts"]["invalid"], 3, "{r}");
    assert_eq!((r["counts"]["deactivated"].as_u64(), r["counts"]["updated"].as_u64()), (Some(0), Some(0)), "{r}");
    let errors = r["errors"].as_array().unwrap();
    let at: Vec<(u64, &str)> = errors.iter().map(|e| (e["line"].as_u64().unwrap(), e["column"].as_str().unwrap_or(""))).collect();
    assert_eq!(at, vec![(4, "Last Name"), (6, "First Name"), (8, "Department")], "{r}");
    for (e, what) in errors.iter().zip(["NUL (U+0000)", "an escape (U+001B)", "a tab (U+0009)"]) {
        let m = e["message"].as_str().unwrap();
        assert!(m.contains(what) && m.contains("never sent to the platform"), "{m}");
        assert!(!has_control(m), "the message quotes the value escaped: {m:?}");
    }
    assert_eq!(platform(&scim), before, "the platform is as before: nobody renamed, deactivated or duplicated");

    // The human summary prints the same, escaped.
    let out = p.run(&["sync", "acme", "--force"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("Last Name: 1 row invalid, first at line 4"), "{stdout}");
    assert!(!stdout.contains('\0') && !stdout.contains('\x1b'), "{stdout:?}");
    assert_eq!(platform(&scim), before);
}

#[test]
fn a_utf16_file_without_its_bom_is_refused_naming_the_encoding_key() {
    let scim = ScimServer::start();
    let (p, before) = baseline(&scim);

    // Two people left out: read wrongly, they (and everyone) would look absent.
    let mut rs = rows(BASELINE);
    rs.truncate(8);
    let utf16: Vec<u8> = csv(&rs).encode_utf16().flat_map(u16::to_le_bytes).collect();
    let (code, r) = sync_bytes(&p, "employees_2026-02-01.csv", &utf16);
    assert_eq!(code, 4, "{r}");
    let msg = r["message"].as_str().unwrap();
    assert!(msg.contains("UTF-16 without a byte-order mark") && msg.contains("set [source] encoding = \"utf-16le\""), "{msg}");
    assert!(!r.to_string().contains("\\u0000") && !has_control(msg), "no NUL anywhere in the report: {r}");
    assert_eq!(platform(&scim), before);

    // NULs in a UTF-8 header: the missing-column error quotes the header escaped.
    let bytes = csv(&rs).replacen("Personnel Number", "Personnel\0Number", 1);
    let (code, r) = sync_bytes(&p, "employees_2026-02-01.csv", bytes.as_bytes());
    assert_eq!(code, 4, "{r}");
    let msg = r["message"].as_str().unwrap();
    assert!(msg.contains("\"Personnel\\u{0}Number\"") && !has_control(msg), "{msg:?}");
    assert_eq!(platform(&scim), before);

    // With the key set as the message says, the UTF-16 file syncs: the two left out are leavers.
    std::fs::write(p.path().join("exports/employees_2026-02-01.csv"), &utf16).unwrap();
    let mapping = p.path().join("mappings/demo.toml");
    let text = std::fs::read_to_string(&mapping).unwrap();
    std::fs::write(&mapping, text.replacen("[fields]", "[source]\nencoding = \"utf-16le\"\n\n[fields]", 1)).unwrap();
    let (code, r) = p.sync_json(&[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!((r["counts"]["rows"].as_u64(), r["counts"]["deactivated"].as_u64()), (Some(8), Some(2)), "{r}");
}

#[test]
fn dates_the_other_way_round_stop_the_run_and_a_format_that_cannot_read_a_date_is_refused() {
    // A server that takes hire_date (the custom schema): on one that drops it, its dates
    // refuse nothing (tests/unsent_attributes.rs).
    let scim = ScimServer::start_with_custom_schema(&[]);
    let (p, before) = baseline(&scim);
    let mapping = p.path().join("mappings/demo.toml");
    let demo = std::fs::read_to_string(&mapping).unwrap();
    let with_format = |f: &str| std::fs::write(&mapping, demo.replace("date = \"%Y-%m-%d\"", &format!("date = \"{f}\""))).unwrap();

    // A US format on UK data: 04/03/2021 would read as April 3rd; 25/12/2020 reads only
    // swapped. The whole column is refused, not just the rows that fail.
    with_format("%m/%d/%Y");
    let mut rs = rows(BASELINE);
    for (i, r) in rs.iter_mut().enumerate() {
        let date = if i % 3 == 1 { format!("{}/12/2020", 20 + i) } else { format!("0{}/03/2021", 1 + i % 9) };
        *r = r.replacen("2021-03-04", &date, 1);
    }
    let (code, r) = sync_bytes(&p, "employees_2026-02-01.csv", csv(&rs).as_bytes());
    assert_eq!(code, 4, "{r}");
    let msg = r["message"].as_str().unwrap();
    assert!(msg.contains("column \"Hire Date\" (attributes.hire_date, date = \"%m/%d/%Y\") has 3 value(s)"), "{msg}");
    assert!(msg.contains("line 3 \"21/12/2020\", line 6 \"24/12/2020\", line 9 \"27/12/2020\""), "{msg}");
    assert!(msg.contains("Set attributes.hire_date.date = \"%d/%m/%Y\""), "{msg}");
    assert_eq!(platform(&scim), before, "no date swapped on the platform, nobody deactivated");

    // `test` says the same, with the same exit code.
    let out = p.run(&["test", "acme"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("day and month swapped"), "{}", String::from_utf8_lossy(&out.stderr));

    // The format the message suggests reads the file. Read right at last, it changes nearly
    // every hire date against the last good file: a column drift a person lets through.
    with_format("%d/%m/%Y");
    let (code, r) = p.sync_json(&[]);
    assert_eq!((code, r["stopped_by"].as_str()), (5, Some("column_drift")), "{r}");
    let (code, r) = p.sync_json(&["--allow-mass-change", "--reason", "the dates are read right at last"]);
    assert_eq!(code, 0, "{r}");
    assert_eq!((r["counts"]["invalid"].as_u64(), r["counts"]["deactivated"].as_u64()), (Some(0), Some(0)), "{r}");

    // A format chrono cannot read, or one without a day, is refused by check (exit 2) and the
    // connector does not run, even though the ISO dates of a file would have passed.
    let synced = platform(&scim);
    for (bad, why) in [("%d/%m/%Q", "holds a % item chrono's strftime does not know"), ("%m/%Y", "lacks a day (%d)")] {
        with_format(bad);
        let out = p.run(&["check"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(2), "{bad}: {stdout}");
        assert!(stdout.contains("attributes.hire_date.date") && stdout.contains(why), "{bad}: {stdout}");
        std::fs::write(p.path().join("exports/employees_2026-03-01.csv"), csv(&rows(BASELINE))).unwrap();
        let out = p.run(&["sync", "acme"]);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(platform(&scim), synced, "{bad}");
    }
}

#[test]
fn a_file_name_with_terminal_escapes_is_printed_escaped() {
    let scim = ScimServer::start();
    let (p, before) = baseline(&scim);

    // Retitles the window and clears the screen when printed raw.
    let name = "employees_2026-02-01\x1b]0;owned\x07\x1b[2J.csv";
    let mut rs = rows(BASELINE);
    rs[9] = row(10, "ann10@example.com", false, "Engineering");
    std::fs::write(p.path().join("exports").join(name), csv(&rs)).unwrap();
    let shown = "employees_2026-02-01\\u{1b}]0;owned\\u{7}\\u{1b}[2J.csv";
    for args in [&["test", "acme"][..], &["sync", "acme", "--dry-run"], &["sync", "acme"], &["history", "acme"]] {
        let out = p.run(args);
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stdout}{stderr}");
        assert!(stdout.contains(shown), "{args:?}: {stdout:?}");
        assert!(!stdout.contains('\x1b') && !stdout.contains('\x07'), "{args:?}: {stdout:?}");
        assert!(!stderr.contains('\x1b'), "{args:?}: {stderr:?}");
        if args == ["test", "acme"] {
            assert!(stdout.contains("people 9 active, 1 inactive"), "{stdout}");
        }
    }
    let after = platform(&scim);
    assert_eq!(after.len(), before.len(), "nobody duplicated");
    assert_eq!(after["E0000010"]["active"], false, "the file's one leaver");
    assert!(after.iter().filter(|(k, _)| *k != "E0000010").all(|(_, u)| u["active"] == true));
}

#[test]
fn a_drafted_status_map_keeps_leavers_inactive_and_test_counts_them() {
    let scim = ScimServer::start();
    let (p, before) = baseline(&scim);

    // A Workday-style status column: Terminated is a leaver, On Leave is not, and Suspended
    // is a word the draft does not know.
    let status = |i: usize| match i {
        3 | 7 => "Terminated",
        5 => "On Leave",
        8 => "Suspended",
        _ => "Active",
    };
    let rs: Vec<String> = rows(BASELINE).iter().enumerate().map(|(i, r)| r.replacen(",Yes,", &format!(",{},", status(i)), 1)).collect();
    let export = p.path().join("exports/employees_2026-02-01.csv");
    std::fs::write(&export, csv(&rs)).unwrap();
    let out = p.run(&["mapping", "suggest", export.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let draft = String::from_utf8(out.stdout).unwrap();
    assert!(draft.contains("\"Terminated\" = false") && draft.contains("\"On Leave\" = true"), "{draft}");
    assert!(draft.contains("# unsure: \"Suspended\" of column \"Active\" is not a status word"), "{draft}");
    assert!(!draft.contains("\"Suspended\" ="), "never guessed: {draft}");
    std::fs::write(p.path().join("mappings/demo.toml"), &draft).unwrap();

    let out = p.run(&["test", "acme"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("rows 10 — 9 valid, 1 invalid"), "{stdout}");
    assert!(stdout.contains("people 7 active, 2 inactive"), "{stdout}");
    let out = p.run(&["--json", "test", "acme"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((v["active"].as_u64(), v["inactive"].as_u64()), (Some(7), Some(2)), "{v}");

    let (code, r) = p.sync_json(&[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["counts"]["deactivated"], 2, "{r}");
    let after = platform(&scim);
    assert_eq!(after.len(), before.len(), "nobody duplicated");
    for (id, u) in &after {
        let leaver = id == "E0000004" || id == "E0000008";
        assert_eq!(u["active"] == true, !leaver, "{id}: {u}");
    }
}
