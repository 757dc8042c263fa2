//! A corpus of damaged exports, each synced after a clean baseline against the real
//! scim2-server, through the CLI: whatever is wrong with a file, nobody is deactivated,
//! deleted or duplicated, and the report says what was wrong and where. The safeguards are
//! opened wide (`max_deactivations = "100%"`) so that it is the handling of the damage that
//! protects people here, not a threshold.
//!
//! The bombs are made at test time, small, and each asserts its exit code and a bound on the
//! run's peak memory (the children's maximum RSS from getrusage).

use crate::support;

use std::collections::HashMap;
use std::io::Write;

use support::project::{HEADER, Project, rows};
use support::scim::ScimServer;

const SYNC: &str = "max_deactivations = \"100%\"\nmax_invalid = \"100%\"";
const BASELINE: u32 = 10;

/// The platform's users by externalId; fails on two accounts for one person.
fn platform(scim: &ScimServer) -> HashMap<String, serde_json::Value> {
    let mut m = HashMap::new();
    for u in scim.users() {
        let ext = u["externalId"].as_str().unwrap_or_default().to_string();
        assert!(m.insert(ext.clone(), u).is_none(), "two accounts for externalId {ext}");
    }
    m
}

/// What matters of the platform for these tests: who is there and who is active.
fn active_flags(scim: &ScimServer) -> Vec<(String, bool)> {
    let mut v: Vec<(String, bool)> = platform(scim).into_iter().map(|(k, u)| (k, u["active"] == true)).collect();
    v.sort();
    v
}

/// A project synced once with `BASELINE` clean rows.
fn baseline(scim: &ScimServer, file_keys: &str) -> Project {
    let p = Project::with_file_keys(scim, SYNC, file_keys);
    p.export("employees_2026-01-01.csv", &rows(BASELINE));
    let (code, r) = p.sync_json(&[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["counts"]["created"], BASELINE);
    p
}

/// Writes a damaged export as the newest file, syncs it, and removes it again.
fn sync_bytes(p: &Project, bytes: &[u8]) -> (i32, serde_json::Value) {
    let path = p.path().join("exports/employees_2026-02-01.csv");
    std::fs::write(&path, bytes).unwrap();
    let res = p.sync_json(&[]);
    std::fs::remove_file(&path).unwrap();
    res
}

fn csv(lines: &[String]) -> Vec<u8> {
    let mut s = format!("{HEADER}\n");
    for l in lines {
        s.push_str(l);
        s.push('\n');
    }
    s.into_bytes()
}

fn errors_text(r: &serde_json::Value) -> String {
    r["errors"].to_string() + &r["notes"].to_string() + r["message"].as_str().unwrap_or_default()
}

/// What a case asserts of the run's exit code and report.
type Check = Box<dyn Fn(i32, &serde_json::Value)>;

/// Each damage against one baseline; after each, the platform holds exactly the baseline's
/// people, all active (the damaged files also leave out a leaver or two, who must be kept).
#[test]
fn damaged_csv_files_never_deactivate_anyone() {
    let scim = ScimServer::start();
    let p = baseline(&scim, "");
    let before = active_flags(&scim);
    assert!(before.iter().all(|(_, a)| *a));

    let mut cases: Vec<(&str, Vec<u8>, Check)> = Vec::new();

    // Invalid UTF-8 in a mapped cell (Department) of E0000003: the row is invalid, its id is
    // readable, so E0000003 is kept; E0000010 is a real leaver and is deactivated… but not
    // here: this case keeps everyone, so the file holds all ten.
    let mut bytes = csv(&rows(BASELINE));
    let at = bytes.windows(8).position(|w| w == b"E0000003").unwrap();
    let dept = at + bytes[at..].windows(11).position(|w| w == b"Engineering").unwrap();
    bytes[dept] = 0xff;
    cases.push((
        "invalid UTF-8 in a mapped cell",
        bytes,
        Box::new(|code, r| {
            assert_eq!(code, 0, "{r}");
            assert_eq!(r["counts"]["invalid"], 1);
            let e = &r["errors"][0];
            assert_eq!((e["line"].as_u64(), e["column"].as_str()), (Some(4), Some("Department")), "{r}");
            assert!(e["message"].as_str().unwrap().contains("UTF-8"), "{r}");
        }),
    ));

    // An empty id cell on one row, and E0000009 left out: the row may be E0000009's, so
    // nobody absent is deactivated, and the report says why, naming the line.
    let mut rs = rows(BASELINE);
    rs[4] = rs[4].replacen("E0000005", "", 1);
    rs.remove(8);
    cases.push((
        "an empty id cell",
        csv(&rs),
        Box::new(|code, r| {
            assert_eq!(code, 0, "{r}");
            assert_eq!(r["counts"]["deactivated"], 0, "{r}");
            let notes = r["notes"].to_string();
            assert!(notes.contains("not deactivated") && notes.contains("line(s) 6"), "{r}");
        }),
    ));

    // An unquoted comma shifts a row (13 fields): no id is guessed from it, and the person
    // left out (E0000007) is not deactivated while that row is unreadable.
    let mut rs = rows(BASELINE);
    rs[3] = rs[3].replacen("Engineering", "Sales, EMEA", 1);
    rs.remove(6);
    cases.push((
        "a row shifted by an unquoted delimiter",
        csv(&rs),
        Box::new(|code, r| {
            assert_eq!(code, 0, "{r}");
            assert_eq!(r["counts"]["deactivated"], 0, "{r}");
            assert!(errors_text(r).contains("found 13 fields"), "{r}");
        }),
    ));

    // A stray quote opens the last value of E0000003 and a quote in E0000008's closes it: the
    // row has the right number of fields, but its value holds lines 5–9, which read as rows.
    let mut rs = rows(BASELINE);
    rs[2] = rs[2].replacen("CC-1", "\"CC-1", 1);
    rs[7] = rs[7].replacen("CC-1", "CC-1\"", 1);
    cases.push((
        "a stray quote swallowing rows",
        csv(&rs),
        Box::new(|code, r| {
            assert_eq!(code, 0, "{r}");
            assert_eq!(r["counts"]["deactivated"], 0, "{r}");
            assert_eq!(r["counts"]["updated"], 0, "nobody's department takes in other rows: {r}");
            assert!(errors_text(r).contains("runs over lines 5–9"), "{r}");
        }),
    ));

    // A quote left open at the end of the file: a file error, nothing applied.
    let mut rs = rows(BASELINE);
    rs[8] = rs[8].replacen("CC-1", "\"CC-1", 1);
    cases.push((
        "an unclosed quote at the end",
        csv(&rs),
        Box::new(|code, r| {
            assert_eq!(code, 4, "{r}");
            assert!(errors_text(r).contains("a quote opened on line 10 is never closed"), "{r}");
        }),
    ));

    // Cut mid-row: no final newline, the last row short.
    let mut bytes = csv(&rows(BASELINE));
    bytes.truncate(bytes.len() - 30);
    cases.push((
        "a file cut mid-row",
        bytes,
        Box::new(|code, r| {
            assert_eq!(code, 4, "{r}");
            assert!(errors_text(r).contains("cut off"), "{r}");
        }),
    ));

    // Ids written otherwise: a trailing space, lower case. The same people, not new ones
    // (created 0) whose "old" ids then leave (deactivated 0).
    let mut rs = rows(BASELINE);
    rs[4] = rs[4].replacen("E0000005", "E0000005 ", 1);
    rs[6] = rs[6].replacen("E0000007", "e0000007", 1);
    cases.push((
        "ids in other spellings",
        csv(&rs),
        Box::new(|code, r| {
            assert_eq!(code, 0, "{r}");
            let c = &r["counts"];
            assert_eq!((c["created"].as_u64(), c["deactivated"].as_u64(), c["invalid"].as_u64()), (Some(0), Some(0), Some(0)), "{r}");
        }),
    ));

    // "CSV (Macintosh)": CR-only line ends, with E0000004 left out. Read as lines, this is
    // an ordinary file: one leaver (deactivated is expected), and messages stay short.
    let mut rs = rows(BASELINE);
    rs.remove(3);
    let bytes: Vec<u8> = csv(&rs).into_iter().map(|b| if b == b'\n' { b'\r' } else { b }).collect();
    cases.push((
        "CR-only line ends",
        bytes,
        Box::new(|code, r| {
            assert_eq!(code, 0, "{r}");
            assert_eq!(r["counts"]["rows"], 9, "{r}");
            assert_eq!(r["counts"]["deactivated"], 1, "{r}");
        }),
    ));

    for (name, bytes, check) in cases {
        let (code, r) = sync_bytes(&p, &bytes);
        check(code, &r);
        assert!(r.to_string().len() < 20_000, "{name}: the report stays small: {}", r.to_string().len());
        if name == "CR-only line ends" {
            // The one real leaver of the corpus; reactivate them for the next case.
            let (code, r) = p.sync_json(&["--force"]);
            assert_eq!(code, 0, "{name}: back to the baseline: {r}");
        }
        assert_eq!(active_flags(&scim), before, "{name}: the platform is as before");
    }
}

/// The peak RSS of the rostersync runs of this test process so far (nextest runs each test
/// in its own process; scim2-server is a child too but is not waited for until the end).
fn children_max_rss_mib() -> u64 {
    let u = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN).unwrap();
    u.max_rss() as u64 / 1024
}

fn gzip(chunks: impl Iterator<Item = Vec<u8>>) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    for c in chunks {
        gz.write_all(&c).unwrap();
    }
    gz.finish().unwrap()
}

#[test]
fn bombs_stop_with_exit_4_naming_the_limit_in_bounded_memory() {
    let scim = ScimServer::start();
    let p = baseline(&scim, "max_size = \"8MiB\"");
    let before = active_flags(&scim);

    // 64 MiB of ordinary rows in a gzip of well under 1 MiB: over max_size once inflated.
    let many = gzip(std::iter::once(format!("{HEADER}\n").into_bytes()).chain((0..64).map(|_| {
        let row = "E0000001,Ann,Lee,ann1@example.com,fr,Yes,Engineering,Engineer,,Paris,2021-03-04,CC-1\n";
        row.repeat((1 << 20) / row.len()).into_bytes()
    })));
    assert!(many.len() < 1 << 20, "{}", many.len());
    let (code, r) = sync_bytes(&p, &many);
    assert_eq!(code, 4, "{r}");
    let msg = r["message"].as_str().unwrap();
    assert!(msg.contains("once decompressed") && msg.contains("[file] max_size"), "{msg}");

    // One row holding a 6 MiB field (under max_size): the row limit stops it, long before
    // the csv reader would hold the field.
    let field = gzip(
        std::iter::once(format!("{HEADER}\nE0000001,Ann,Lee,ann1@example.com,fr,Yes,\"").into_bytes())
            .chain((0..6).map(|_| vec![b'x'; 1 << 20]))
            .chain(std::iter::once(b"\",Engineer,,Paris,2021-03-04,CC-1\n".to_vec())),
    );
    let (code, r) = sync_bytes(&p, &field);
    assert_eq!(code, 4, "{r}");
    let msg = r["message"].as_str().unwrap();
    assert!(msg.contains("the row starting on line 2") && msg.contains("max_row_size"), "{msg}");
    assert!(msg.len() < 1000, "no message carries the file: {msg}");

    assert_eq!(active_flags(&scim), before, "nothing changed on the platform");
    let rss = children_max_rss_mib();
    assert!(rss < 120, "peak RSS of a run: {rss} MiB");
    eprintln!("peak RSS of the runs: {rss} MiB");
}

/// A customer server whose clock runs fast: a file from the future is age 0 (taken with
/// `min_age = "0s"`), and when `min_age` passes over a newer file for an older one, the
/// report names the one passed over.
#[test]
fn files_from_the_future_and_files_passed_over_are_named() {
    let hour = std::time::Duration::from_secs(3600);
    let now = std::time::SystemTime::now();
    // An old export, and a newer one whose server clock runs an hour fast, under `min_age`.
    let sync_with = |min_age: &str| {
        let scim = ScimServer::start();
        let p = Project::with_file_keys(&scim, SYNC, &format!("pick = \"newest\"\nmin_age = \"{min_age}\"")).replaced_pick();
        for (name, n, t) in [("employees_2026-01-01.csv", 3, now - 2 * hour), ("employees_2026-01-02.csv", 4, now + hour)] {
            let f = p.export(name, &rows(n));
            std::fs::File::options().write(true).open(&f).unwrap().set_modified(t).unwrap();
        }
        p.sync_json(&[])
    };

    let (code, r) = sync_with("0s");
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["counts"]["created"], 4, "the file from the future is taken: {r}");
    assert!(r["notes"].to_string().contains("ahead of this machine's clock"), "{r}");

    let (code, r) = sync_with("10m");
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["counts"]["created"], 3, "{r}");
    let notes = r["notes"].to_string();
    assert!(notes.contains("employees_2026-01-02.csv was passed over") && notes.contains("ahead of this machine's clock"), "{r}");
}

/// Every error list is capped, with the count of what was left out, and no message carries
/// more than a bounded excerpt of the file.
#[test]
fn error_lists_are_capped_and_messages_bounded() {
    let scim = ScimServer::start();
    let p = baseline(&scim, "");
    let long = "y".repeat(50_000);
    let mut rs = rows(BASELINE);
    for i in 0..1200u32 {
        rs.push(support::project::row(100 + i, &format!("{long}@@"), true, "Engineering"));
    }
    let (code, r) = sync_bytes(&p, &csv(&rs));
    assert_eq!(code, 0, "{}", r.to_string().chars().take(2000).collect::<String>());
    assert_eq!(r["counts"]["invalid"], 1200);
    assert_eq!(r["errors"].as_array().unwrap().len(), 1000);
    assert_eq!(r["errors_left_out"], 200);
    assert!(r["errors"].as_array().unwrap().iter().all(|e| e["message"].as_str().unwrap().len() < 1000), "bounded messages");
    let history = p.run(&["--json", "history", "acme"]);
    assert!(history.stdout.len() < 4 << 20, "history stays small: {} bytes", history.stdout.len());
}

/// A minimal xlsx of the demo layout, for the workbooks customers send that are well-formed
/// but read otherwise than Excel shows them. Each sheet: name, hidden, rows of CSV text
/// (a cell `=F` is a formula without a stored result, as tools that do not calculate write
/// it; an empty cell is no cell at all, as under a merged region), merged regions.
type SheetSpec<'a> = (&'a str, bool, Vec<String>, &'a [&'a str]);

fn xlsx(sheets: &[SheetSpec]) -> Vec<u8> {
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let o = zip::write::SimpleFileOptions::default();
    let ns = r#"xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main""#;
    let rel = "http://schemas.openxmlformats.org/officeDocument/2006/relationships";
    let mut parts = vec![
        ("[Content_Types].xml".to_string(), format!(
            r#"<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>{}</Types>"#,
            (1..=sheets.len()).map(|i| format!(r#"<Override PartName="/xl/worksheets/sheet{i}.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>"#)).collect::<String>()
        )),
        ("_rels/.rels".into(), format!(r#"<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="{rel}/officeDocument" Target="xl/workbook.xml"/></Relationships>"#)),
        ("xl/workbook.xml".into(), format!(
            r#"<workbook {ns} xmlns:r="{rel}"><sheets>{}</sheets></workbook>"#,
            sheets.iter().enumerate().map(|(i, (name, hidden, ..))| format!(r#"<sheet name="{name}" sheetId="{0}"{1} r:id="rId{0}"/>"#, i + 1, if *hidden { r#" state="hidden""# } else { "" })).collect::<String>()
        )),
        ("xl/_rels/workbook.xml.rels".into(), format!(
            r#"<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">{}</Relationships>"#,
            (1..=sheets.len()).map(|i| format!(r#"<Relationship Id="rId{i}" Type="{rel}/worksheet" Target="worksheets/sheet{i}.xml"/>"#)).collect::<String>()
        )),
    ];
    for (i, (_, _, lines, merged)) in sheets.iter().enumerate() {
        let mut xml = format!("<worksheet {ns}><sheetData>");
        for (r, line) in std::iter::once(HEADER).chain(lines.iter().map(String::as_str)).enumerate() {
            xml += &format!("<row r=\"{}\">", r + 1);
            for (c, v) in line.split(',').enumerate() {
                let at = format!("{}{}", (b'A' + c as u8) as char, r + 1);
                if let Some(f) = v.strip_prefix('=') {
                    xml += &format!("<c r=\"{at}\"><f>{f}</f></c>");
                } else if !v.is_empty() {
                    xml += &format!("<c r=\"{at}\" t=\"inlineStr\"><is><t>{v}</t></is></c>");
                }
            }
            xml += "</row>";
        }
        xml += "</sheetData>";
        if !merged.is_empty() {
            xml += &format!("<mergeCells>{}</mergeCells>", merged.iter().map(|m| format!("<mergeCell ref=\"{m}\"/>")).collect::<String>());
        }
        parts.push((format!("xl/worksheets/sheet{}.xml", i + 1), xml + "</worksheet>"));
    }
    for (name, body) in parts {
        z.start_file(name, o).unwrap();
        z.write_all(body.as_bytes()).unwrap();
    }
    z.finish().unwrap().into_inner()
}

/// The connector takes its newest export whatever its extension (an xlsx, a json).
fn any_extension(p: &Project) {
    let cfg = p.path().join("connectors.toml");
    let text = std::fs::read_to_string(&cfg).unwrap().replacen("path = \"employees_*.csv\"", "path = \"employees_*\"", 1);
    std::fs::write(&cfg, text).unwrap();
}

/// Workbooks read as Excel shows them, after a clean baseline: a hidden first sheet (last
/// month's copy, four people fewer) is not read; a merged Department column is every
/// covered row's department, not empty; Email formulas that were never computed are cell
/// errors, not empty emails (which would turn every login into the employee id).
#[test]
fn workbooks_are_read_as_excel_shows_them() {
    let scim = ScimServer::start();
    let p = baseline(&scim, "");
    any_extension(&p);
    let before = platform(&scim);

    let last_month: Vec<String> = rows(6).into_iter().map(|r| r.replace("Engineering", "Sales")).collect();
    let merged: Vec<String> =
        rows(BASELINE).into_iter().enumerate().map(|(i, r)| if i == 0 { r } else { r.replace("Engineering", "") }).collect();
    let formulas: Vec<String> =
        (1..=BASELINE).map(|i| support::project::row(i, &format!("=LOWER(B{})", i + 1), true, "Engineering")).collect();
    let cases: Vec<(&str, Vec<u8>, Check)> = vec![
        (
            "a hidden first sheet",
            xlsx(&[("Last month", true, last_month, &[]), ("Employees", false, rows(BASELINE), &[])]),
            Box::new(|code, r| {
                assert_eq!(code, 0, "{r}");
                assert_eq!(r["counts"]["rows"], BASELINE, "the visible sheet is read: {r}");
            }),
        ),
        (
            "a merged Department column",
            xlsx(&[("Employees", false, merged, &["G2:G11"])]),
            Box::new(|code, r| {
                assert_eq!(code, 0, "{r}");
                assert_eq!((r["counts"]["updated"].as_u64(), r["counts"]["invalid"].as_u64()), (Some(0), Some(0)), "{r}");
            }),
        ),
        (
            "Email formulas never computed",
            xlsx(&[("Employees", false, formulas, &[])]),
            Box::new(|_, r| {
                assert_eq!(r["counts"]["invalid"], BASELINE, "{r}");
                assert!(errors_text(r).contains("cell D2 holds a formula with no computed value"), "{r}");
            }),
        ),
    ];
    let path = p.path().join("exports/employees_2026-02-01.xlsx");
    for (name, bytes, check) in cases {
        std::fs::write(&path, &bytes).unwrap();
        let (code, r) = p.sync_json(&[]);
        std::fs::remove_file(&path).unwrap();
        check(code, &r);
        assert_eq!(platform(&scim), before, "{name}: the platform is as before");
    }
}

/// A JSON export whose records give "Email" twice (the work address, then a private one):
/// a parser keeps one silently (serde_json the last), which would switch every login. Each
/// such record is a row error naming the key, and its person is kept as they were.
#[test]
fn a_json_key_given_twice_changes_nobody() {
    let scim = ScimServer::start();
    let p = baseline(&scim, "");
    any_extension(&p);
    let before = platform(&scim);

    let names: Vec<&str> = HEADER.split(',').collect();
    let records: Vec<String> = rows(BASELINE)
        .iter()
        .map(|r| {
            let mut fields: Vec<String> = names.iter().zip(r.split(',')).map(|(k, v)| format!("{k:?}: {v:?}")).collect();
            let email = r.split(',').nth(3).unwrap().replace("@example.com", "@private.example");
            fields.push(format!("\"Email\": {email:?}"));
            format!("{{{}}}", fields.join(", "))
        })
        .collect();
    let path = p.path().join("exports/employees_2026-02-01.json");
    std::fs::write(&path, format!("[\n{}\n]\n", records.join(",\n"))).unwrap();
    let (_, r) = p.sync_json(&[]);
    assert_eq!(r["counts"]["invalid"], BASELINE, "{r}");
    assert!(errors_text(&r).contains("the key \\\"Email\\\" appears more than once"), "{r}");
    assert_eq!(platform(&scim), before, "the platform is as before");
}

/// Files the customer cannot tell from a good one, each after a clean baseline: nothing
/// changes, and the message leads to the fix (the delimiter, header_row, the invisible
/// character, asking for the file again).
#[test]
fn wrong_files_say_how_to_fix_them() {
    let scim = ScimServer::start();
    let p = baseline(&scim, "");
    let before = platform(&scim);
    let semicolons = |s: &[u8]| String::from_utf8_lossy(s).replace(',', ";").into_bytes();
    let mut cut = gzip(std::iter::once(csv(&rows(BASELINE))));
    cut.truncate(cut.len() - 20);
    let mut bad_crc = gzip(std::iter::once(csv(&rows(BASELINE))));
    let at = bad_crc.len() - 8;
    bad_crc[at] ^= 0xff;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "a sep= line above the header",
            [b"sep=;\n".to_vec(), semicolons(&csv(&rows(BASELINE)))].concat(),
            "Excel's \"sep=\" marker, not the header; line 2 holds the mapped columns split by semicolons: set [source] header_row = 2 and delimiter = \";\"",
        ),
        (
            "a title row",
            [b"Staff list, March 2026\n".to_vec(), csv(&rows(BASELINE))].concat(),
            "line 2 holds the mapped columns: set [source] header_row = 2",
        ),
        (
            "a no-break space in a header name",
            String::from_utf8(csv(&rows(BASELINE))).unwrap().replacen("Last Name", "Last\u{a0}Name", 1).into_bytes(),
            "the header name \"Last<U+00A0>Name\" holds invisible characters",
        ),
        ("a gzip cut in transfer", cut, "the transfer of the file was incomplete"),
        ("a gzip with a bad checksum", bad_crc, "ask for the file again"),
    ];
    for (name, bytes, expect) in cases {
        let (code, r) = sync_bytes(&p, &bytes);
        assert_eq!(code, 4, "{name}: {r}");
        assert!(errors_text(&r).contains(expect), "{name}: {r}");
        assert_eq!(platform(&scim), before, "{name}: the platform is as before");
    }
    // The baseline's comma file read as `;` (the mapping says so): the delimiter is named.
    let mapping = p.path().join("mappings/demo.toml");
    let text = std::fs::read_to_string(&mapping).unwrap();
    std::fs::write(&mapping, format!("{text}\n[source]\ndelimiter = \";\"\n")).unwrap();
    let (code, r) = p.sync_json(&["--force"]);
    assert_eq!(code, 4, "{r}");
    assert!(errors_text(&r).contains("split by commas the header holds the mapped columns: set [source] delimiter = \",\""), "{r}");
    assert_eq!(platform(&scim), before, "the platform is as before");
}

/// Whether process `pid` holds `path` open (its /proc/PID/fd links).
fn holds_open(pid: u32, path: &std::path::Path) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return false };
    fds.flatten().any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target == path))
}

/// Runs `rostersync ARGS` and, once it has `path` open, rewrites person 1's department in
/// place at the same length (the file's size does not change): the exit code and report.
fn sync_rewriting(p: &Project, path: &std::path::Path, args: &[&str]) -> (Option<i32>, serde_json::Value) {
    let bytes = std::fs::read(path).unwrap();
    let child = p.command(args).stdout(std::process::Stdio::piped()).spawn().unwrap();
    let started = std::time::Instant::now();
    while !holds_open(child.id(), path) {
        assert!(started.elapsed() < std::time::Duration::from_secs(60), "the run never opened the export");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let at = bytes.windows(12).position(|w| w == b",Engineering").expect("person 1's department");
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, b",Marketing__", at as u64).unwrap();
    drop(f);
    let out = child.wait_with_output().unwrap();
    (out.status.code(), serde_json::from_slice(&out.stdout).unwrap())
}

/// A local folder's export is read where it is, not copied (issue 29), and so is `--file`.
/// An export rewritten in place while the run reads it would be planned from bytes that are
/// neither the old file nor the new one: the run must refuse it, change nobody, and take the
/// file whole on the next run.
#[test]
fn an_export_written_to_while_it_is_read_changes_nobody() {
    let scim = ScimServer::start();
    let p = baseline(&scim, "");
    let before = platform(&scim);
    // The people of the baseline, person 2 moved to Sales, then enough all-blank rows (a
    // spreadsheet's padding, which hold nobody) that reading takes a while.
    let mut people = rows(BASELINE);
    people[1] = support::project::row(2, "ann2@example.com", true, "Sales");
    let mut bytes = csv(&people);
    bytes.extend_from_slice(",,,,,,,,,,,\n".repeat(2_000_000).as_bytes());
    let path = p.path().join("exports/employees_2026-02-01.csv");
    std::fs::write(&path, &bytes).unwrap();
    let path = path.canonicalize().unwrap();
    // The same file handed over with --file, outside the folder.
    let sent = p.path().join("sent.csv");
    std::fs::write(&sent, &bytes).unwrap();
    let sent = sent.canonicalize().unwrap();

    for (file, args) in [(&path, vec!["--json", "sync", "acme"]), (&sent, vec!["--json", "sync", "acme", "--file", sent.to_str().unwrap()])]
    {
        let (code, r) = sync_rewriting(&p, file, &args);
        assert_ne!(code, Some(0), "{args:?}: {r}");
        assert!(errors_text(&r).contains("changed while it was being read"), "{args:?}: {r}");
        assert_eq!(platform(&scim), before, "{args:?}: nobody changed, not even person 2");
    }

    // Left alone, the same file is synced whole by the next run.
    let (code, r) = p.sync_json(&[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["counts"]["updated"], 2, "{r}");
    let after = platform(&scim);
    let dept = |id: &str| after[id]["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["department"].clone();
    assert_eq!((dept("E0000001"), dept("E0000002")), ("Marketing__".into(), "Sales".into()));
}
