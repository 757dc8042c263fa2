//! The memory budget (`[sync] max_memory`) against files that are small on disk and huge in
//! memory, each synced through the CLI after a clean baseline on the real scim2-server: one
//! id on hundreds of thousands of rows (counted, not held), many distinct rows past the
//! budget, and xlsx workbooks whose shared-string table inflates past it or declares a count
//! calamine would try to reserve. Each asserts the exit code, the platform unchanged and the
//! peak RSS of the runs (children's maximum RSS from getrusage, loosely: the figures go in
//! the report, the bound here only catches a run that holds the file).
//!
//! The budgets are set small so that the files stay small and the test quick; what is tested
//! is that the budget holds whatever its size.

use crate::support;

use std::collections::BTreeMap;
use std::io::Write;

use support::project::{HEADER, Project, rows};
use support::scim::ScimServer;

const BASELINE: u32 = 10;

/// The platform's users by externalId, with what a bad sync would change.
fn platform(scim: &ScimServer) -> BTreeMap<String, (String, bool)> {
    scim.users()
        .into_iter()
        .map(|u| (u["externalId"].as_str().unwrap_or_default().to_string(), (u["userName"].to_string(), u["active"] == true)))
        .collect()
}

fn baseline(scim: &ScimServer, sync: &str) -> Project {
    let p = Project::new(scim, sync);
    p.export("employees_2026-01-01.csv", &rows(BASELINE));
    let (code, r) = p.sync_json(&[]);
    assert_eq!(code, 0, "{}", short(&r));
    assert_eq!(r["counts"]["created"], BASELINE);
    p
}

/// Any extension (the bombs include workbooks).
fn any_extension(p: &Project) {
    let cfg = p.path().join("connectors.toml");
    let text = std::fs::read_to_string(&cfg).unwrap().replacen("path = \"employees_*.csv\"", "path = \"employees_*\"", 1);
    std::fs::write(&cfg, text).unwrap();
}

fn sync_file(p: &Project, name: &str, bytes: &[u8]) -> (i32, serde_json::Value) {
    let path = p.path().join("exports").join(name);
    std::fs::write(&path, bytes).unwrap();
    let res = p.sync_json(&[]);
    std::fs::remove_file(&path).unwrap();
    res
}

/// A report as text, cut for a failure message.
fn short(r: &serde_json::Value) -> String {
    r.to_string().chars().take(3000).collect()
}

fn children_max_rss_mib() -> u64 {
    let u = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN).unwrap();
    u.max_rss() as u64 / 1024
}

fn gzip(text: impl Iterator<Item = String>) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for t in text {
        gz.write_all(t.as_bytes()).unwrap();
    }
    gz.finish().unwrap()
}

/// The baseline's first person on `n` rows (the file's only id).
fn one_id_on(n: u32) -> Vec<u8> {
    let row = support::project::row(1, "ann1@example.com", true, "Engineering");
    gzip(std::iter::once(format!("{HEADER}\n")).chain((0..n).map(|_| format!("{row}\n"))))
}

/// `n` distinct valid people, ids from 1000.
fn distinct(n: u32) -> Vec<u8> {
    gzip(
        std::iter::once(format!("{HEADER}\n"))
            .chain((1000..1000 + n).map(|i| support::project::row(i, &format!("p{i}@example.com"), true, "Engineering") + "\n")),
    )
}

/// An xlsx of the demo layout whose cells are shared strings, with `extra` more strings in
/// the table than the cells use, and the table's `uniqueCount` as given.
fn xlsx_with_strings(extra: u32, unique_count: &str) -> Vec<u8> {
    xlsx_padded(extra, unique_count, 0)
}

/// `xlsx_with_strings`, with a part of `pad` zero bytes stored uncompressed (an embedded
/// picture, say): the workbook file itself is that large.
fn xlsx_padded(extra: u32, unique_count: &str, pad: usize) -> Vec<u8> {
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let o = zip::write::SimpleFileOptions::default();
    let ns = r#"xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main""#;
    let rel = "http://schemas.openxmlformats.org/officeDocument/2006/relationships";
    let mut strings: Vec<String> = Vec::new();
    let mut sheet = format!("<worksheet {ns}><sheetData>");
    for (r, line) in std::iter::once(HEADER.to_string()).chain(rows(BASELINE)).enumerate() {
        sheet += &format!("<row r=\"{}\">", r + 1);
        for (c, v) in line.split(',').enumerate() {
            if !v.is_empty() {
                sheet += &format!("<c r=\"{}{}\" t=\"s\"><v>{}</v></c>", (b'A' + c as u8) as char, r + 1, strings.len());
                strings.push(v.to_string());
            }
        }
        sheet += "</row>";
    }
    sheet += "</sheetData></worksheet>";
    let parts = [
        (
            "[Content_Types].xml",
            r#"<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/></Types>"#.to_string(),
        ),
        (
            "_rels/.rels",
            format!(
                r#"<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="{rel}/officeDocument" Target="xl/workbook.xml"/></Relationships>"#
            ),
        ),
        (
            "xl/workbook.xml",
            format!(r#"<workbook {ns} xmlns:r="{rel}"><sheets><sheet name="Employees" sheetId="1" r:id="rId1"/></sheets></workbook>"#),
        ),
        (
            "xl/_rels/workbook.xml.rels",
            format!(
                r#"<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="{rel}/worksheet" Target="worksheets/sheet1.xml"/><Relationship Id="rId2" Type="{rel}/sharedStrings" Target="sharedStrings.xml"/></Relationships>"#
            ),
        ),
        ("xl/worksheets/sheet1.xml", sheet),
    ];
    for (name, body) in parts {
        z.start_file(name, o).unwrap();
        z.write_all(body.as_bytes()).unwrap();
    }
    z.start_file("xl/sharedStrings.xml", o).unwrap();
    write!(z, "<sst {ns} count=\"{0}\" uniqueCount=\"{unique_count}\">", strings.len()).unwrap();
    for s in &strings {
        write!(z, "<si><t>{s}</t></si>").unwrap();
    }
    // Strings no cell uses, a few bytes each in the zip: the bomb.
    let filler = "<si><t>xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx</t></si>".repeat(1000);
    for _ in 0..extra / 1000 {
        z.write_all(filler.as_bytes()).unwrap();
    }
    z.write_all(b"</sst>").unwrap();
    if pad > 0 {
        z.start_file("xl/media/image1.bin", zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored))
            .unwrap();
        z.write_all(&vec![0u8; pad]).unwrap();
    }
    z.finish().unwrap().into_inner()
}

/// An id on 400,000 rows (40 MB of CSV in a gzip of well under 1 MiB): past a 32 MiB budget
/// its rows beyond the first ten are counted, not held; the run goes on to the invalid-rows
/// safeguard (every row is invalid), and nobody changes.
#[test]
fn one_id_on_many_rows_is_counted_not_held() {
    let scim = ScimServer::start();
    let p = baseline(&scim, "max_memory = \"32MiB\"");
    any_extension(&p);
    let before = platform(&scim);
    let bomb = one_id_on(400_000);
    assert!(bomb.len() < 1 << 20, "{}", bomb.len());

    let (code, r) = sync_file(&p, "employees_2026-02-01.csv.gz", &bomb);
    assert_eq!(code, 5, "the invalid-rows safeguard, not the budget: {}", short(&r));
    assert_eq!(r["stopped_by"], "too_many_invalid", "{}", short(&r));
    assert_eq!(
        (r["counts"]["rows"].as_u64(), r["counts"]["invalid"].as_u64()),
        (Some(400_000), Some(400_000)),
        "every row counted: {}",
        short(&r)
    );
    let errors = r["errors"].to_string();
    assert!(errors.contains("is on 400000 rows (lines 2, 3, 4, 5, 6, 7, 8, 9, 10, 11 and 399990 more)"), "{errors}");
    assert_eq!(r["errors"].as_array().unwrap().len(), 10, "an id's first ten rows are listed: {}", short(&r));
    assert_eq!(r["errors_left_out"], 399_990, "the rows counted, not listed, are said: {}", short(&r));
    assert_eq!(platform(&scim), before, "nothing changed on the platform");
    let rss = children_max_rss_mib();
    eprintln!("peak RSS of the runs (one id on 400,000 rows, max_memory 32 MiB): {rss} MiB");
    assert!(rss < 200, "peak RSS: {rss} MiB");
}

/// Distinct people past the budget: refused with exit 4 before they are all held, naming the
/// file, what grew and the key; then the same file under a budget that fits it is a plan.
#[test]
fn distinct_rows_past_the_budget_are_refused_with_exit_4() {
    let scim = ScimServer::start();
    let p = baseline(&scim, "max_memory = \"16MiB\"");
    any_extension(&p);
    let before = platform(&scim);
    let bomb = distinct(200_000);

    let (code, r) = sync_file(&p, "employees_2026-02-01.csv.gz", &bomb);
    assert_eq!(code, 4, "{}", short(&r));
    let msg = r["message"].as_str().unwrap();
    assert!(msg.starts_with("employees_2026-02-01.csv.gz:"), "the file and the line reached: {msg}");
    assert!(msg.contains("people and") && msg.contains("is over 16 MiB ([sync] max_memory"), "{msg}");
    assert!(msg.len() < 1000, "{msg}");
    assert_eq!(platform(&scim), before, "nothing changed on the platform");
    let rss = children_max_rss_mib();
    eprintln!("peak RSS of the runs (200,000 distinct rows, max_memory 16 MiB): {rss} MiB");
    assert!(rss < 150, "peak RSS: {rss} MiB");

    // The key raises it: the same file is read and planned (a dry run: nothing sent).
    p.set_last_sync_section("acme", "max_memory = \"512MiB\"");
    let path = p.path().join("exports/employees_2026-02-01.csv.gz");
    std::fs::write(&path, &bomb).unwrap();
    let (code, r) = p.sync_json(&["--dry-run"]);
    assert_eq!(r["counts"]["valid"], 200_000, "{code} {}", r.to_string().chars().take(1500).collect::<String>());
    assert_eq!(platform(&scim), before);
}

/// A workbook whose shared-string table inflates to 80 MB (a few hundred KiB on disk), and one
/// that declares 10^11 strings: refused before calamine reads the table, exit 4.
#[test]
fn a_shared_string_table_past_the_budget_is_refused_before_it_is_read() {
    let scim = ScimServer::start();
    let p = baseline(&scim, "max_memory = \"64MiB\"");
    any_extension(&p);
    let before = platform(&scim);

    let fine = xlsx_with_strings(0, "120");
    let (code, r) = sync_file(&p, "employees_2026-02-01.xlsx", &fine);
    assert_eq!((code, r["counts"]["updated"].as_u64()), (0, Some(0)), "a workbook of shared strings reads as the baseline: {}", short(&r));

    let bomb = xlsx_with_strings(1_000_000, "1000120");
    assert!(bomb.len() < 4 << 20, "{}", bomb.len());
    let (code, r) = sync_file(&p, "employees_2026-02-01.xlsx", &bomb);
    assert_eq!(code, 4, "{}", short(&r));
    let msg = r["message"].as_str().unwrap();
    assert!(
        msg.contains("the workbook's shared-string table (1000122 strings, 1000120 declared") && msg.contains("[sync] max_memory"),
        "{msg}"
    );

    let declared = xlsx_with_strings(0, "100000000000");
    let (code, r) = sync_file(&p, "employees_2026-02-01.xlsx", &declared);
    assert_eq!(code, 4, "{}", short(&r));
    let msg = r["message"].as_str().unwrap();
    assert!(msg.contains("100000000000 declared by the table"), "{msg}");

    // A gzipped workbook is inflated in memory to be read (calamine seeks): 80 MiB of it, in
    // a gzip of well under 1 MiB, is past the budget before calamine sees it.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&xlsx_padded(0, "122", 80 << 20)).unwrap();
    let big = gz.finish().unwrap();
    assert!(big.len() < 1 << 20, "{}", big.len());
    let (code, r) = sync_file(&p, "employees_2026-02-01.xlsx.gz", &big);
    assert_eq!(code, 4, "{}", short(&r));
    let msg = r["message"].as_str().unwrap();
    assert!(msg.contains("the workbook inflated from its gzip or zip") && msg.contains("[sync] max_memory"), "{msg}");

    assert_eq!(platform(&scim), before, "nothing changed on the platform");
    let rss = children_max_rss_mib();
    eprintln!("peak RSS of the runs (workbooks, max_memory 64 MiB): {rss} MiB");
    assert!(rss < 150, "peak RSS: {rss} MiB");
}
