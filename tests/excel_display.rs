//! Numeric ids in a workbook read as Excel displays them, after a clean baseline from a CSV
//! of the same people on the real scim2-server: an id column formatted "00000" holding 123
//! is `00123` (the id the customer knows), and a 12-digit id in General format is
//! `100000000001`, never `1.00000E+11` or `100000000001.0`. Read otherwise, every person
//! would be re-keyed or created again; read right, the workbook changes nobody.

use crate::support;

use std::collections::BTreeMap;
use std::io::Write;

use support::project::{HEADER, Project};
use support::scim::ScimServer;

/// A row of the demo layout with this id.
fn row(id: &str, i: u32) -> String {
    format!("{id},Ann{i},Lee{i},ann{i}@example.com,fr,Yes,Engineering,Engineer,,Paris,2021-03-04,CC-1")
}

/// An xlsx of the demo layout: the first column numbers (`ids`), styled with `id_format`
/// (a custom number format, or None for General); every other cell inline text.
fn xlsx(ids: &[u64], id_format: Option<&str>) -> Vec<u8> {
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let o = zip::write::SimpleFileOptions::default();
    let ns = r#"xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main""#;
    let rel = "http://schemas.openxmlformats.org/officeDocument/2006/relationships";
    let style = if id_format.is_some() { r#" s="1""# } else { "" };
    let mut sheet = format!("<worksheet {ns}><sheetData>");
    let lines = std::iter::once(HEADER.to_string()).chain(ids.iter().enumerate().map(|(i, id)| row(&id.to_string(), i as u32 + 1)));
    for (r, line) in lines.enumerate() {
        sheet += &format!("<row r=\"{}\">", r + 1);
        for (c, v) in line.split(',').enumerate() {
            let at = format!("{}{}", (b'A' + c as u8) as char, r + 1);
            if c == 0 && r > 0 {
                sheet += &format!("<c r=\"{at}\"{style}><v>{v}</v></c>");
            } else if !v.is_empty() {
                sheet += &format!("<c r=\"{at}\" t=\"inlineStr\"><is><t>{v}</t></is></c>");
            }
        }
        sheet += "</row>";
    }
    sheet += "</sheetData></worksheet>";
    let styles = format!(
        r#"<styleSheet {ns}><numFmts count="1"><numFmt numFmtId="164" formatCode="{}"/></numFmts><fonts count="1"><font/></fonts><fills count="1"><fill/></fills><borders count="1"><border/></borders><cellXfs count="2"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/><xf numFmtId="164" fontId="0" fillId="0" borderId="0" applyNumberFormat="1"/></cellXfs></styleSheet>"#,
        id_format.unwrap_or("General")
    );
    let parts = [
        ("[Content_Types].xml", r#"<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/></Types>"#.to_string()),
        ("_rels/.rels", format!(r#"<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="{rel}/officeDocument" Target="xl/workbook.xml"/></Relationships>"#)),
        ("xl/workbook.xml", format!(r#"<workbook {ns} xmlns:r="{rel}"><sheets><sheet name="Employees" sheetId="1" r:id="rId1"/></sheets></workbook>"#)),
        ("xl/_rels/workbook.xml.rels", format!(r#"<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="{rel}/worksheet" Target="worksheets/sheet1.xml"/><Relationship Id="rId2" Type="{rel}/styles" Target="styles.xml"/></Relationships>"#)),
        ("xl/styles.xml", styles),
        ("xl/worksheets/sheet1.xml", sheet),
    ];
    for (name, body) in parts {
        z.start_file(name, o).unwrap();
        z.write_all(body.as_bytes()).unwrap();
    }
    z.finish().unwrap().into_inner()
}

fn platform(scim: &ScimServer) -> BTreeMap<String, String> {
    scim.users().into_iter().map(|u| (u["externalId"].as_str().unwrap_or_default().to_string(), u["userName"].to_string())).collect()
}

/// Syncs the baseline CSV (ids as text), then the workbook of the same people.
fn baseline_then_workbook(ids_text: &[String], workbook: Vec<u8>) -> (BTreeMap<String, String>, i32, serde_json::Value, ScimServer) {
    let scim = ScimServer::start();
    let p = Project::new(&scim, "");
    let rows: Vec<String> = ids_text.iter().enumerate().map(|(i, id)| row(id, i as u32 + 1)).collect();
    p.export("employees_2026-01-01.csv", &rows);
    let (code, r) = p.sync_json(&[]);
    assert_eq!((code, r["counts"]["created"].as_u64()), (0, Some(ids_text.len() as u64)), "{r}");
    let before = platform(&scim);
    let cfg = p.path().join("connectors.toml");
    let text = std::fs::read_to_string(&cfg).unwrap().replacen("path = \"employees_*.csv\"", "path = \"employees_*\"", 1);
    std::fs::write(&cfg, text).unwrap();
    std::fs::write(p.path().join("exports/employees_2026-02-01.xlsx"), workbook).unwrap();
    let (code, r) = p.sync_json(&[]);
    (before, code, r, scim)
}

#[test]
fn zero_padded_ids_keep_their_zeros() {
    let ids: Vec<u64> = (121..=130).collect();
    let text: Vec<String> = ids.iter().map(|i| format!("{i:05}")).collect();
    let (before, code, r, scim) = baseline_then_workbook(&text, xlsx(&ids, Some("00000")));
    assert_eq!(code, 0, "{r}");
    assert_eq!((r["counts"]["created"].as_u64(), r["counts"]["updated"].as_u64()), (Some(0), Some(0)), "the same people: {r}");
    assert_eq!(r["counts"]["unchanged"], 10, "{r}");
    assert!(before.contains_key("00123"));
    assert_eq!(platform(&scim), before, "the platform is as before");
}

#[test]
fn twelve_digit_ids_in_general_format_stay_whole() {
    let ids: Vec<u64> = (1..=10).map(|i| 100_000_000_000 + i).collect();
    let text: Vec<String> = ids.iter().map(u64::to_string).collect();
    let (before, code, r, scim) = baseline_then_workbook(&text, xlsx(&ids, None));
    assert_eq!(code, 0, "{r}");
    assert_eq!((r["counts"]["created"].as_u64(), r["counts"]["updated"].as_u64()), (Some(0), Some(0)), "the same people: {r}");
    assert!(before.contains_key("100000000001"));
    assert_eq!(platform(&scim), before, "the platform is as before");
}

/// An ods of the demo layout, every cell text, the Email cells formulas with no computed
/// value (`table:formula` and no `office:value`), as tools that do not calculate write them.
fn ods_with_uncomputed_emails(n: u32) -> Vec<u8> {
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let o = zip::write::SimpleFileOptions::default();
    let cell = |v: &str| format!("<table:table-cell office:value-type=\"string\"><text:p>{v}</text:p></table:table-cell>");
    let mut table = String::from("<table:table table:name=\"Employees\">");
    for (r, line) in std::iter::once(HEADER.to_string()).chain((1..=n).map(|i| row(&format!("E{i:07}"), i))).enumerate() {
        table += "<table:table-row>";
        for (c, v) in line.split(',').enumerate() {
            table += &if r > 0 && c == 3 {
                format!("<table:table-cell table:formula=\"of:=LOWER([.B{}])\"/>", r + 1)
            } else if v.is_empty() {
                "<table:table-cell/>".to_string()
            } else {
                cell(v)
            };
        }
        table += "</table:table-row>";
    }
    table += "</table:table>";
    let content = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.2"><office:body><office:spreadsheet>{table}</office:spreadsheet></office:body></office:document-content>"#
    );
    let manifest = r#"<?xml version="1.0" encoding="UTF-8"?><manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.2"><manifest:file-entry manifest:full-path="/" manifest:media-type="application/vnd.oasis.opendocument.spreadsheet"/><manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/></manifest:manifest>"#;
    z.start_file("mimetype", stored).unwrap();
    z.write_all(b"application/vnd.oasis.opendocument.spreadsheet").unwrap();
    z.start_file("META-INF/manifest.xml", o).unwrap();
    z.write_all(manifest.as_bytes()).unwrap();
    z.start_file("content.xml", o).unwrap();
    z.write_all(content.as_bytes()).unwrap();
    z.finish().unwrap().into_inner()
}

/// ods formulas never computed are cell errors, as in xlsx: never empty emails (which would
/// turn every login into the employee id).
#[test]
fn ods_formulas_without_a_value_are_cell_errors() {
    let text: Vec<String> = (1..=10).map(|i| format!("E{i:07}")).collect();
    let scim = ScimServer::start();
    let p = Project::new(&scim, "");
    let rows: Vec<String> = text.iter().enumerate().map(|(i, id)| row(id, i as u32 + 1)).collect();
    p.export("employees_2026-01-01.csv", &rows);
    let (code, r) = p.sync_json(&[]);
    assert_eq!(code, 0, "{r}");
    let before = platform(&scim);
    let cfg = p.path().join("connectors.toml");
    let t = std::fs::read_to_string(&cfg).unwrap().replacen("path = \"employees_*.csv\"", "path = \"employees_*\"", 1);
    std::fs::write(&cfg, t).unwrap();
    std::fs::write(p.path().join("exports/employees_2026-02-01.ods"), ods_with_uncomputed_emails(10)).unwrap();
    let (_, r) = p.sync_json(&[]);
    assert_eq!(r["counts"]["invalid"], 10, "{r}");
    assert!(r["errors"].to_string().contains("cell D2 holds a formula with no computed value"), "{r}");
    assert_eq!(platform(&scim), before, "the platform is as before");
}
