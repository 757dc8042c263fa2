//! Formats against hand-made fixtures (tests/fixtures/, written by make_fixtures.py), checked
//! field by field, and a property test: whatever a CSV writer writes reads back identical.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use rostersync::config::Format;
use rostersync::config::mapping::SourceOptions;
use rostersync::format::{self, FormatError, ReadError};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn opts() -> SourceOptions {
    SourceOptions { header_row: 1, ..Default::default() }
}

fn cols(c: &[&str]) -> Vec<String> {
    c.iter().map(|s| s.to_string()).collect()
}

/// One item: Ok((line, values)) or Err((line, message)) for a row error.
type Row = Result<(u64, Vec<Option<String>>), (u64, String)>;
type Rows = Vec<Row>;

fn read(path: &Path, format: Format, opts: &SourceOptions, columns: &[&str]) -> Result<Rows, FormatError> {
    let name = path.file_name().unwrap().to_string_lossy().to_string();
    let records = format::open(path, &name, format, opts, &cols(columns))?;
    let mut out = Vec::new();
    for r in records {
        match r {
            Ok(rec) => out.push(Ok((rec.line, rec.values().map(|v| v.map(str::to_string)).collect()))),
            Err(ReadError::Row { error: e, .. } | ReadError::Sparse { error: e, .. }) => out.push(Err((e.line, e.message))),
            Err(ReadError::File(e)) => return Err(e),
        }
    }
    Ok(out)
}

fn row(line: u64, v: &[&str]) -> Row {
    Ok((line, v.iter().map(|s| Some(s.to_string())).collect()))
}

#[test]
fn windows_1252_with_semicolons_and_quoted_delimiter() {
    let o = SourceOptions { encoding: encoding_rs::Encoding::for_label(b"windows-1252"), ..opts() };
    let rows =
        read(&fixture("cp1252_semicolon.csv"), Format::Csv, &o, &["matricule", "Prénom", "NOM", "E-mail", "Langue", "Actif"]).unwrap();
    assert_eq!(
        rows,
        vec![
            row(2, &["00123", "Zoë", "Müller", "zoe.muller@exemple.fr", "Français", "Oui"]),
            row(3, &["1001", "François", "Le Floc'h; Jr.", "francois@exemple.fr", "fr-FR", "Non"]),
        ],
        "the row of bare delimiters at the end holds nobody and is skipped"
    );
}

#[test]
fn windows_1252_without_the_encoding_says_how_to_fix_it() {
    let err = read(&fixture("cp1252_semicolon.csv"), Format::Csv, &opts(), &["Matricule"]).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("cp1252_semicolon.csv:1") && msg.contains("encoding = \"windows-1252\""), "{msg}");
}

#[test]
fn utf16le_with_bom_and_tabs_is_sniffed() {
    let rows = read(&fixture("utf16le_bom.txt"), Format::Csv, &opts(), &["Email", "First Name", "Personnel Number"]).unwrap();
    assert_eq!(rows, vec![row(2, &["soren@example.dk", "Søren", "E1"]), row(3, &["lukasz@example.pl", "Łukasz", "E2"])]);
}

#[test]
fn utf16be_with_bom_and_latin1_by_label() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("be.csv");
    let text = "Email;First Name\r\nzoe@example.com;Zoë\r\n";
    let mut bytes = vec![0xfe, 0xff];
    bytes.extend(text.encode_utf16().flat_map(|u| u.to_be_bytes()));
    std::fs::write(&p, bytes).unwrap();
    assert_eq!(read(&p, Format::Csv, &opts(), &["First Name", "Email"]).unwrap(), vec![row(2, &["Zoë", "zoe@example.com"])]);
    let p = dir.path().join("latin1.csv");
    std::fs::write(&p, b"Email,Nom\nx@example.fr,Lef\xe8vre\n").unwrap();
    let o = SourceOptions { encoding: encoding_rs::Encoding::for_label(b"latin1"), ..opts() };
    assert_eq!(read(&p, Format::Csv, &o, &["Nom"]).unwrap(), vec![row(2, &["Lefèvre"])]);
}

#[test]
fn utf8_bom_does_not_stick_to_the_first_header() {
    let rows = read(&fixture("utf8_bom.csv"), Format::Csv, &opts(), &["Personnel Number", "First Name"]).unwrap();
    assert_eq!(rows, vec![row(2, &["E1", "Émilie"])]);
}

#[test]
fn title_row_quoted_newlines_and_wrong_field_count() {
    let o = SourceOptions { header_row: 3, ..opts() };
    let rows = read(&fixture("title_row_pipes.csv"), Format::Csv, &o, &["Personnel Number", "Last Name", "Note"]).unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0], row(4, &["E1", "Silva", "two\nlines, with \"quotes\""]));
    let (line, msg) = rows[1].clone().unwrap_err();
    assert_eq!(line, 6, "the record after a two-line record starts on physical line 6");
    assert!(msg.contains("found 6 fields, but the header (line 3) has 5"), "{msg}");
    assert_eq!(rows[2], row(7, &["E3", "Smith", ""]));
}

#[test]
fn header_row_one_reads_the_title_and_refuses_with_the_header_it_saw() {
    let err = read(&fixture("title_row_pipes.csv"), Format::Csv, &opts(), &["Email"]).unwrap_err();
    match err {
        FormatError::MissingColumns { missing, header, header_line, .. } => {
            assert_eq!(missing, vec!["Email"]);
            assert_eq!(header_line, 1);
            assert_eq!(header, vec!["Employee export", "generated 2024-03-01"]);
        }
        other => panic!("expected MissingColumns, got {other}"),
    }
}

#[test]
fn missing_column_lists_the_closest_names() {
    let err = read(&fixture("utf8_bom.csv"), Format::Csv, &opts(), &["E-mail", "Frist Name"]).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("\"E-mail\", \"Frist Name\" not in the header (line 1)"), "{msg}");
    assert!(msg.contains("\"Email\" (for \"E-mail\")") && msg.contains("\"First Name\" (for \"Frist Name\")"), "{msg}");
}

#[test]
fn gzip_and_zip_are_looked_through() {
    for name in ["employees.csv.gz", "export.zip"] {
        let p = fixture(name);
        assert_eq!(format::detect(&p, name).unwrap(), Format::Csv, "{name}");
        let rows = read(&p, Format::Csv, &opts(), &["Personnel Number", "Email"]).unwrap();
        assert_eq!(rows, vec![row(2, &["E1", "ana@example.pt"]), row(3, &["E2", "noah@example.com"])], "{name}");
    }
}

#[test]
fn zip_with_several_files_is_refused_with_their_names() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("two.zip");
    let mut z = zip::ZipWriter::new(std::fs::File::create(&p).unwrap());
    for name in ["a.csv", "b.csv"] {
        z.start_file(name, zip::write::SimpleFileOptions::default()).unwrap();
        std::io::Write::write_all(&mut z, b"Email\nx@example.com\n").unwrap();
    }
    z.finish().unwrap();
    let msg = read(&p, Format::Csv, &opts(), &["Email"]).unwrap_err().to_string();
    assert!(msg.contains("the zip holds 2 files (a.csv, b.csv); it must hold exactly one export"), "{msg}");
}

#[test]
fn header_only_file_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("h.csv");
    std::fs::write(&p, "Email,First Name\n").unwrap();
    assert!(matches!(read(&p, Format::Csv, &opts(), &["Email"]), Err(FormatError::Empty { .. })));
    std::fs::write(&p, "").unwrap();
    assert!(matches!(read(&p, Format::Csv, &opts(), &["Email"]), Err(FormatError::Empty { .. })));
}

#[test]
fn truncated_gzip_stops_the_file_instead_of_looking_short() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("big.csv.gz");
    let mut text = String::from("Personnel Number,Email\n");
    for i in 0..20000 {
        text.push_str(&format!("E{i},user{i}@example.com\n"));
    }
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut enc, text.as_bytes()).unwrap();
    let bytes = enc.finish().unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let err = read(&p, Format::Csv, &opts(), &["Email"]).unwrap_err();
    assert!(err.to_string().contains("truncated or corrupt"), "{err}");
}

fn sheet_opts() -> SourceOptions {
    SourceOptions { sheet: Some("employees".into()), header_row: 2, ..opts() }
}

fn check_workbook(name: &str, format: Format) {
    let rows = read(&fixture(name), format, &sheet_opts(), &["Personnel Number", "First Name", "Email", "Hire Date", "Active"]).unwrap();
    assert_eq!(
        rows,
        vec![
            row(3, &["00123", "Zoë", "zoe@example.com", "2021-03-15", "true"]),
            row(4, &["1001", "Kenji", "kenji@example.com", "2019-12-31", "false"]),
            row(5, &["1002.5", "Ana", "ana@example.pt", "", "true"]),
        ],
        "{name}"
    );
}

#[test]
fn xlsx_sheet_by_name_header_row_ids_and_dates() {
    check_workbook("employees.xlsx", Format::Xlsx);
}

#[test]
fn xls_sheet_by_name_header_row_ids_and_dates() {
    check_workbook("employees.xls", Format::Xls);
}

#[test]
fn ods_sheet_by_name_header_row_ids_and_dates() {
    check_workbook("employees.ods", Format::Ods);
}

#[test]
fn workbook_defaults_to_the_first_sheet_and_names_the_sheets_it_has() {
    let err = read(&fixture("employees.xlsx"), Format::Xlsx, &opts(), &["Email"]).unwrap_err();
    assert!(matches!(&err, FormatError::MissingColumns { header, .. } if header == &vec!["Read me".to_string()]), "{err}");
    let o = SourceOptions { sheet: Some("Staff".into()), ..opts() };
    let msg = read(&fixture("employees.ods"), Format::Ods, &o, &["Email"]).unwrap_err().to_string();
    assert!(msg.contains("no sheet named \"Staff\"; the workbook has \"Notes\", \"Employees\""), "{msg}");
}

#[test]
fn json_nested_paths_at_a_pointer_with_lines() {
    let o = SourceOptions { records: Some("/data/employees".into()), ..opts() };
    let rows =
        read(&fixture("nested.json"), Format::Json, &o, &["id", "name.first", "Name.Last", "emails[0].value", "active", "lang"]).unwrap();
    assert_eq!(
        rows,
        vec![
            row(5, &["1001", "Zoë", "Müller", "zoe@example.com", "true", "de"]),
            Ok((
                12,
                vec![
                    Some("00123".into()),
                    Some("Kenji".into()),
                    Some("Tanaka".into()),
                    None,
                    Some("false".into()),
                    Some("Japanese".into())
                ]
            )),
        ]
    );
}

#[test]
fn json_wrong_pointer_names_the_keys_there() {
    let o = SourceOptions { records: Some("/data/staff".into()), ..opts() };
    let msg = read(&fixture("nested.json"), Format::Json, &o, &["id"]).unwrap_err().to_string();
    assert!(msg.contains("nothing at records = \"/data/staff\"; the keys there are \"employees\""), "{msg}");
    let msg = read(&fixture("nested.json"), Format::Json, &opts(), &["id"]).unwrap_err().to_string();
    assert!(msg.contains("the document root holds an object, not an array"), "{msg}");
}

#[test]
fn json_column_absent_from_the_records_is_missing() {
    let o = SourceOptions { records: Some("/data/employees".into()), ..opts() };
    let err = read(&fixture("nested.json"), Format::Json, &o, &["name.frist"]).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("\"name.frist\" not in the header") && msg.contains("\"name.first\" (for \"name.frist\")"), "{msg}");
}

#[test]
fn ndjson_lines_numbers_text_and_bad_lines() {
    let rows = read(&fixture("people.ndjson"), Format::Ndjson, &opts(), &["id", "email", "active"]).unwrap();
    assert_eq!(rows[0], row(1, &["1", "ana@example.pt", "true"]));
    assert_eq!(rows[1], row(3, &["2.5", "noah@example.com", "false"]));
    let (line, msg) = rows[2].clone().unwrap_err();
    assert_eq!(line, 4);
    assert!(msg.starts_with("not valid JSON"), "{msg}");
    assert_eq!(rows.len(), 3);
}

#[test]
fn headers_lists_the_columns_of_each_format() {
    assert_eq!(
        format::headers(&fixture("utf8_bom.csv"), "utf8_bom.csv", Format::Csv, &opts()).unwrap(),
        cols(&["Personnel Number", "First Name", "Last Name", "Email"])
    );
    assert_eq!(
        format::headers(&fixture("employees.xlsx"), "employees.xlsx", Format::Xlsx, &sheet_opts()).unwrap(),
        cols(&["Personnel Number", "First Name", "Last Name", "Email", "Hire Date", "Active"])
    );
    let o = SourceOptions { records: Some("/data/employees".into()), ..opts() };
    let h = format::headers(&fixture("nested.json"), "nested.json", Format::Json, &o).unwrap();
    assert!(h.contains(&"name.first".to_string()) && h.contains(&"emails[0].value".to_string()), "{h:?}");
}

/// A note correctly quoted over several lines, with commas in it, is a value: its person is
/// read (and so not held absent, nor their leave held back). Only lines that read as whole
/// rows of the file (exactly its number of fields) are taken for rows swallowed by a stray quote.
#[test]
fn a_quoted_multi_line_note_with_commas_is_a_value_not_swallowed_rows() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("notes.csv");
    let note = "Called back Monday, left a message\nNew desk: floor 3, room 12, near the lifts, by the window\nDone";
    std::fs::write(&p, format!("id,name,notes\n1,Ann,\"{note}\"\n2,Bob,plain\n")).unwrap();
    let got = read(&p, Format::Csv, &opts(), &["id", "name", "notes"]).unwrap();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0], Ok((2, vec![Some("1".into()), Some("Ann".into()), Some(note.into())])));
    assert_eq!(got[1], Ok((5, vec![Some("2".into()), Some("Bob".into()), Some("plain".into())])));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Arbitrary text (delimiters, quotes, CR/LF, Unicode) written by the csv crate reads back
    /// identical, with the line each record starts on.
    #[test]
    fn csv_writer_round_trip(rows in prop::collection::vec(prop::collection::vec("[^\u{0}]{0,12}|[,;\"\r\n ]{1,4}", 3), 1..20), delim in prop::sample::select(vec![b',', b';', b'\t', b'|'])) {
        // Rows that are entirely blank are skipped by design (spreadsheet leftovers).
        prop_assume!(rows.iter().all(|r| r.iter().any(|c| !c.trim().is_empty())));
        // The one documented loss: a `\r` ending a record's last field is taken for a CRLF.
        prop_assume!(rows.iter().all(|r| !r[2].ends_with('\r')));
        // The other: a value holding a line that reads as a whole row of the file (here, two
        // delimiters after a line break) is refused as rows swallowed by a stray quote.
        prop_assume!(rows.iter().flatten().all(|c| c.split('\n').skip(1).all(|l| l.matches(delim as char).count() < 2)));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("rt.csv");
        let mut w = csv::WriterBuilder::new().delimiter(delim).from_path(&p).unwrap();
        w.write_record(["a", "b", "c"]).unwrap();
        for r in &rows {
            w.write_record(r).unwrap();
        }
        w.flush().unwrap();
        drop(w);
        let o = SourceOptions { delimiter: Some(delim), ..opts() };
        let got = read(&p, Format::Csv, &o, &["c", "a", "b"]).unwrap();
        prop_assert_eq!(got.len(), rows.len());
        let mut expected_line = 2u64;
        for (g, r) in got.iter().zip(&rows) {
            let (line, values) = g.clone().unwrap();
            prop_assert_eq!(line, expected_line);
            prop_assert_eq!(values, vec![Some(r[2].clone()), Some(r[0].clone()), Some(r[1].clone())]);
            // Newlines inside quoted fields move the next record down.
            expected_line += 1 + r.iter().map(|c| c.matches('\n').count() as u64).sum::<u64>();
        }
    }
}

#[test]
fn bad_bytes_fail_a_row_only_when_a_read_column_holds_them() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("mixed.csv");
    // Row 2: a stray Latin-1 byte in "Notes", which the mapping does not read: the row is
    // fine. Row 3: the same byte in "Last Name": that row fails, naming the column.
    let mut bytes = b"Id,First Name,Last Name,Notes\nE1,Ann,Lee,caf".to_vec();
    bytes.extend_from_slice(&[0xE9]);
    bytes.extend_from_slice(b"\nE2,Bob,M");
    bytes.extend_from_slice(&[0xFC]);
    bytes.extend_from_slice(b"ller,ok\nE3,Cy,Day,ok\n");
    std::fs::write(&p, bytes).unwrap();
    let rows = read(&p, Format::Csv, &opts(), &["Id", "Last Name"]).unwrap();
    assert_eq!(rows[0], row(2, &["E1", "Lee"]));
    assert!(matches!(&rows[1], Err((3, m)) if m.contains("invalid UTF-8")), "{:?}", rows[1]);
    assert_eq!(rows[2], row(4, &["E3", "Day"]));
    let name = p.file_name().unwrap().to_string_lossy().to_string();
    let records = format::open(&p, &name, Format::Csv, &opts(), &cols(&["Id", "Last Name"])).unwrap();
    let column = records.filter_map(|r| match r {
        Err(ReadError::Row { error: e, .. }) => e.column,
        _ => None,
    });
    assert_eq!(column.collect::<Vec<_>>(), vec!["Last Name".to_string()]);
}

/// A minimal xlsx: one sheet of inline-string cells, `e:` cells written as error cells
/// (what Excel stores for `#N/A`), and optionally a shared-strings part of `shared` bytes.
fn xlsx(dir: &Path, rows: &[&[&str]], shared: usize) -> PathBuf {
    workbook(dir, &[Sheet { name: "Staff", hidden: false, rows, merged: &[] }], shared)
}

/// One sheet of a made-up workbook.
struct Sheet<'a> {
    name: &'a str,
    hidden: bool,
    rows: &'a [&'a [&'a str]],
    /// Merged regions, as Excel writes them ("B2:B4").
    merged: &'a [&'a str],
}

/// A minimal xlsx. Cells are inline strings, except `e:` (an error cell, what Excel stores
/// for `#N/A`), `n:` (a number), `f:` (a formula without a stored result, as written by
/// tools that do not calculate) and "" (no cell at all, as for the covered cells of a
/// merged region).
fn workbook(dir: &Path, sheets: &[Sheet], shared: usize) -> PathBuf {
    use std::io::Write;
    let p = dir.join("book.xlsx");
    let mut z = zip::ZipWriter::new(std::fs::File::create(&p).unwrap());
    let o = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    let mut part = |name: &str, body: &[u8]| {
        z.start_file(name, o).unwrap();
        z.write_all(body).unwrap();
    };
    let overrides: String = (1..=sheets.len())
        .map(|i| format!(r#"<Override PartName="/xl/worksheets/sheet{i}.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>"#))
        .collect();
    part("[Content_Types].xml", format!(r#"<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>{overrides}</Types>"#).as_bytes());
    part("_rels/.rels", br#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>"#);
    let entries: String = sheets
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let state = if s.hidden { r#" state="hidden""# } else { "" };
            format!(r#"<sheet name="{}" sheetId="{}"{state} r:id="rId{}"/>"#, s.name, i + 1, i + 1)
        })
        .collect();
    part("xl/workbook.xml", format!(r#"<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets>{entries}</sheets></workbook>"#).as_bytes());
    let rels: String = (1..=sheets.len())
        .map(|i| format!(r#"<Relationship Id="rId{i}" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet{i}.xml"/>"#))
        .collect();
    part("xl/_rels/workbook.xml.rels", format!(r#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">{rels}</Relationships>"#).as_bytes());
    for (i, s) in sheets.iter().enumerate() {
        part(&format!("xl/worksheets/sheet{}.xml", i + 1), sheet_xml(s).as_bytes());
    }
    if shared > 0 {
        let mut sst = String::from(
            r#"<?xml version="1.0" encoding="UTF-8"?><sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">"#,
        );
        while sst.len() < shared {
            sst += "<si><t>xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx</t></si>";
        }
        sst += "</sst>";
        part("xl/sharedStrings.xml", sst.as_bytes());
    }
    z.finish().unwrap();
    p
}

fn sheet_xml(s: &Sheet) -> String {
    let mut sheet = String::from(
        r#"<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>"#,
    );
    for (r, cells) in s.rows.iter().enumerate() {
        sheet += &format!("<row r=\"{}\">", r + 1);
        for (c, v) in cells.iter().enumerate() {
            let at = format!("{}{}", (b'A' + c as u8) as char, r + 1);
            if let Some(err) = v.strip_prefix("e:") {
                sheet += &format!("<c r=\"{at}\" t=\"e\"><v>{err}</v></c>");
            } else if let Some(n) = v.strip_prefix("n:") {
                sheet += &format!("<c r=\"{at}\"><v>{n}</v></c>");
            } else if let Some(f) = v.strip_prefix("f:") {
                sheet += &format!("<c r=\"{at}\"><f>{f}</f></c>");
            } else if !v.is_empty() {
                sheet += &format!("<c r=\"{at}\" t=\"inlineStr\"><is><t>{v}</t></is></c>");
            }
        }
        sheet += "</row>";
    }
    sheet += "</sheetData>";
    if !s.merged.is_empty() {
        sheet += &format!("<mergeCells count=\"{}\">", s.merged.len());
        for m in s.merged {
            sheet += &format!("<mergeCell ref=\"{m}\"/>");
        }
        sheet += "</mergeCells>";
    }
    sheet + "</worksheet>"
}

#[test]
fn an_excel_error_cell_makes_a_row_error_that_keeps_the_rows_id() {
    let dir = tempfile::tempdir().unwrap();
    let p = xlsx(dir.path(), &[&["Id", "First", "Dept"], &["E1", "Ann", "Sales"], &["E2", "Bob", "e:#N/A"], &["E3", "Cy", "Ops"]], 0);
    let records = format::open(&p, "book.xlsx", Format::Xlsx, &opts(), &cols(&["Id", "Dept"])).unwrap();
    let items: Vec<_> = records.collect();
    assert_eq!(items.len(), 3);
    match &items[1] {
        Err(ReadError::Row { error, cells: Some(cells) }) => {
            assert_eq!((error.line, error.column.as_deref()), (3, Some("Dept")), "{error:?}");
            assert_eq!(cells.get(0), Some("E2"), "the id cell read fine and goes with the error");
            assert_eq!(cells.get(1), None, "the error cell is absent, not empty");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_workbook_whose_parts_inflate_past_max_size_is_refused_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let p = xlsx(dir.path(), &[&["Id"], &["E1"]], 20 << 20);
    assert!(std::fs::metadata(&p).unwrap().len() < 1 << 20, "a small file");
    let mut o = opts();
    o.limits.max_size = 8 << 20;
    let err = read(&p, Format::Xlsx, &o, &["Id"]).unwrap_err();
    assert!(matches!(err, FormatError::TooLarge { limit: format::Limit::Size, .. }), "{err}");
    assert!(err.to_string().contains("[file] max_size"), "{err}");
    // Under the limit it reads.
    o.limits.max_size = 64 << 20;
    assert_eq!(read(&p, Format::Xlsx, &o, &["Id"]).unwrap(), vec![row(2, &["E1"])]);
}

#[test]
fn json_records_and_ndjson_lines_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let big = "x".repeat(3 << 20);
    let mut o = opts();
    o.limits.max_row = 1 << 20;
    let p = dir.path().join("a.json");
    std::fs::write(&p, format!("[{{\"Id\": \"E1\"}}, {{\"Id\": \"{big}\"}}]")).unwrap();
    let err = read(&p, Format::Json, &o, &["Id"]).unwrap_err();
    assert!(matches!(err, FormatError::TooLarge { limit: format::Limit::Row, .. }), "{err}");
    assert!(err.to_string().len() < 1000, "the message carries no file: {err}");
    let p = dir.path().join("a.ndjson");
    std::fs::write(&p, format!("{{\"Id\": \"E1\"}}\n{{\"Id\": \"{big}\"}}\n")).unwrap();
    let err = read(&p, Format::Ndjson, &o, &["Id"]).unwrap_err();
    assert!(matches!(err, FormatError::TooLarge { limit: format::Limit::Row, line: Some(2), .. }), "{err}");
    // A value over max_field inside a record under max_row.
    o.limits.max_field = 1000;
    let p = dir.path().join("b.ndjson");
    std::fs::write(&p, format!("{{\"Id\": \"E1\"}}\n{{\"Id\": \"{}\"}}\n", "y".repeat(5000))).unwrap();
    let err = read(&p, Format::Ndjson, &o, &["Id"]).unwrap_err();
    assert!(matches!(err, FormatError::TooLarge { limit: format::Limit::Field, .. }), "{err}");
}

#[test]
fn a_hidden_sheet_is_not_read_and_is_named_when_it_has_the_columns() {
    let dir = tempfile::tempdir().unwrap();
    let old: &[&[&str]] = &[&["Id", "Email"], &["E1", "old@example.com"]];
    let visible: &[&[&str]] = &[&["Id", "Email"], &["E1", "ann@example.com"], &["E2", "bob@example.com"]];
    let sheets = [
        Sheet { name: "Last month", hidden: true, rows: old, merged: &[] },
        Sheet { name: "Staff", hidden: false, rows: visible, merged: &[] },
    ];
    let p = workbook(dir.path(), &sheets, 0);
    // The first visible sheet, not the first sheet.
    assert_eq!(
        read(&p, Format::Xlsx, &opts(), &["Id", "Email"]).unwrap(),
        vec![row(2, &["E1", "ann@example.com"]), row(3, &["E2", "bob@example.com"])]
    );
    // Named, a hidden sheet is read.
    let o = SourceOptions { sheet: Some("Last month".into()), ..opts() };
    assert_eq!(read(&p, Format::Xlsx, &o, &["Id", "Email"]).unwrap(), vec![row(2, &["E1", "old@example.com"])]);

    // The visible sheet lacks the columns; the hidden one has them: named, not read.
    let notes: &[&[&str]] = &[&["Read me"], &["This export is on another sheet"]];
    let sheets = [
        Sheet { name: "Notes", hidden: false, rows: notes, merged: &[] },
        Sheet { name: "Data", hidden: true, rows: visible, merged: &[] },
    ];
    let p = workbook(dir.path(), &sheets, 0);
    let err = read(&p, Format::Xlsx, &opts(), &["Id", "Email"]).unwrap_err();
    assert!(matches!(&err, FormatError::MissingColumns { hints, .. } if hints.hidden_sheets == ["Data".to_string()]), "{err}");
    assert!(err.to_string().contains("the hidden sheet \"Data\" has them, but hidden sheets are not read"), "{err}");

    // A sheet not found lists the sheets, the hidden ones said to be so.
    let o = SourceOptions { sheet: Some("Staff".into()), ..opts() };
    let err = read(&p, Format::Xlsx, &o, &["Id"]).unwrap_err().to_string();
    assert!(err.contains("no sheet named \"Staff\"; the workbook has \"Notes\", \"Data\" (hidden)"), "{err}");
    // Every sheet hidden: refused, naming them.
    let sheets = [Sheet { name: "Data", hidden: true, rows: visible, merged: &[] }];
    let err = read(&workbook(dir.path(), &sheets, 0), Format::Xlsx, &opts(), &["Id"]).unwrap_err().to_string();
    assert!(err.contains("every sheet is hidden (\"Data\" (hidden))"), "{err}");
}

#[test]
fn merged_cells_read_as_their_top_left_value() {
    let dir = tempfile::tempdir().unwrap();
    let rows: &[&[&str]] =
        &[&["Id", "Dept", "City"], &["E1", "Sales", "Paris"], &["E2", "", "Lyon"], &["E3", "", ""], &["E4", "Ops", "Nice"]];
    let p = workbook(dir.path(), &[Sheet { name: "Staff", hidden: false, rows, merged: &["B2:B4", "C3:C4"] }], 0);
    assert_eq!(
        read(&p, Format::Xlsx, &opts(), &["Id", "Dept", "City"]).unwrap(),
        vec![
            row(2, &["E1", "Sales", "Paris"]),
            row(3, &["E2", "Sales", "Lyon"]),
            row(4, &["E3", "Sales", "Lyon"]),
            row(5, &["E4", "Ops", "Nice"])
        ]
    );
    // A region from the header into the data has no value to give: refused.
    let p = workbook(dir.path(), &[Sheet { name: "Staff", hidden: false, rows, merged: &["B1:B3"] }], 0);
    let err = read(&p, Format::Xlsx, &opts(), &["Id", "Dept"]).unwrap_err().to_string();
    assert!(err.contains("cells B1:B3 are merged across the header and the data"), "{err}");
    // A title merged over the columns above the header is no concern.
    let titled: &[&[&str]] = &[&["Staff list"], &["Id", "Dept"], &["E1", "Sales"]];
    let p = workbook(dir.path(), &[Sheet { name: "Staff", hidden: false, rows: titled, merged: &["A1:B1"] }], 0);
    let o = SourceOptions { header_row: 2, ..opts() };
    assert_eq!(read(&p, Format::Xlsx, &o, &["Id", "Dept"]).unwrap(), vec![row(3, &["E1", "Sales"])]);
}

#[test]
fn a_formula_without_a_value_and_an_id_past_15_digits_are_cell_errors() {
    let dir = tempfile::tempdir().unwrap();
    let rows: &[&[&str]] = &[
        &["Id", "Email", "Num"],
        &["E1", "f:LOWER(A2)&amp;\"@example.com\"", "n:1001"],
        &["E2", "bob@example.com", "n:1.00000000000001E+17"],
        &["E3", "cy@example.com", "n:1001.5"],
    ];
    let p = workbook(dir.path(), &[Sheet { name: "Staff", hidden: false, rows, merged: &[] }], 0);
    let got = read(&p, Format::Xlsx, &opts(), &["Id", "Email", "Num"]).unwrap();
    match &got[0] {
        Err((2, m)) => assert!(m.contains("cell B2 holds a formula with no computed value"), "{m}"),
        other => panic!("{other:?}"),
    }
    match &got[1] {
        Err((3, m)) => assert!(m.contains("cell C3: the number 1.00000000000001e17 is past the 15 digits"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(got[2], row(4, &["E3", "cy@example.com", "1001.5"]));
    // An unread formula cell is absent, not empty: the id goes with the error.
    let records = format::open(&p, "book.xlsx", Format::Xlsx, &opts(), &cols(&["Id", "Email"])).unwrap();
    match records.into_iter().next() {
        Some(Err(ReadError::Row { cells: Some(cells), .. })) => assert_eq!((cells.get(0), cells.get(1)), (Some("E1"), None)),
        other => panic!("{other:?}"),
    }
    // 1001 reads as "1001", never "1001.0".
    assert_eq!(read(&p, Format::Xlsx, &opts(), &["Id", "Num"]).unwrap()[0], row(2, &["E1", "1001"]));
}

#[test]
fn a_json_key_given_twice_is_a_row_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.json");
    std::fs::write(
        &p,
        "[{\"Id\": \"E1\", \"Email\": \"ann@work.example\", \"Email\": \"ann@home.example\"},\n {\"Id\": \"E2\", \"Email\": \"bob@work.example\", \"Note\": 1, \"Note\": 2}]",
    )
    .unwrap();
    let records: Vec<_> = format::open(&p, "a.json", Format::Json, &opts(), &cols(&["Id", "Email"])).unwrap().collect();
    match &records[0] {
        Err(ReadError::Row { error, cells: Some(cells) }) => {
            assert_eq!((error.line, error.column.as_deref()), (1, Some("Email")));
            assert!(error.message.contains("the key \"Email\" appears more than once"), "{}", error.message);
            assert_eq!((cells.get(0), cells.get(1)), (Some("E1"), None), "the id goes with the error, the email is absent");
        }
        other => panic!("{other:?}"),
    }
    // A key the mapping does not read may be given twice.
    assert!(matches!(&records[1], Ok(r) if r.get(1) == Some("bob@work.example")), "{:?}", records[1]);
    let p = dir.path().join("a.ndjson");
    std::fs::write(&p, "{\"Id\": \"E1\", \"Email\": \"a@x\", \"Email\": \"b@y\"}\n").unwrap();
    assert!(
        matches!(&read(&p, Format::Ndjson, &opts(), &["Id", "Email"]).unwrap()[0], Err((1, m)) if m.contains("\"Email\" appears more than once"))
    );
}

#[test]
fn a_cut_or_damaged_gzip_says_the_transfer_was_incomplete() {
    let dir = tempfile::tempdir().unwrap();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut enc, b"Personnel Number,Email\nE1,a@example.com\nE2,b@example.com\n").unwrap();
    let bytes = enc.finish().unwrap();
    let p = dir.path().join("e.csv.gz");
    // Cut in the middle; then whole but with its CRC (the trailer's first 4 bytes) wrong.
    std::fs::write(&p, &bytes[..bytes.len() - 10]).unwrap();
    let err = read(&p, Format::Csv, &opts(), &["Email"]).unwrap_err();
    assert!(matches!(err, FormatError::Incomplete { .. }), "{err}");
    assert!(
        err.to_string().contains("the transfer of the file was incomplete") && err.to_string().contains("ask for the file again"),
        "{err}"
    );
    let mut bad = bytes.clone();
    let at = bad.len() - 8;
    bad[at] ^= 0xff;
    std::fs::write(&p, &bad).unwrap();
    let err = read(&p, Format::Csv, &opts(), &["Email"]).unwrap_err();
    assert!(matches!(err, FormatError::Incomplete { .. }), "{err}");
    let p = dir.path().join("e.json.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut enc, b"[{\"Email\": \"a@example.com\"}, {\"Email\": \"b@example.com\"}]").unwrap();
    let bytes = enc.finish().unwrap();
    std::fs::write(&p, &bytes[..bytes.len() - 12]).unwrap();
    let err = read(&p, Format::Json, &opts(), &["Email"]).unwrap_err();
    assert!(matches!(err, FormatError::Incomplete { .. }), "{err}");
}

#[test]
fn a_header_lacking_the_columns_says_where_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("e.csv");
    let check = |text: &str, o: &SourceOptions, expect: &str| {
        std::fs::write(&p, text).unwrap();
        let err = read(&p, Format::Csv, o, &["Id", "Email"]).unwrap_err().to_string();
        assert!(err.contains(expect), "{text:?}: {err}");
    };
    let semi = SourceOptions { delimiter: Some(b';'), ..opts() };
    check("Id,Email\nE1,a@x\n", &semi, "split by commas the header holds the mapped columns: set [source] delimiter = \",\"");
    let comma = SourceOptions { delimiter: Some(b','), ..opts() };
    check("Id;Email\nE1;a@x\n", &comma, "split by semicolons the header holds the mapped columns: set [source] delimiter = \";\"");
    check(
        "sep=;\nId;Email\nE1;a@x\n",
        &opts(),
        "the first line is Excel's \"sep=\" marker, not the header; line 2 holds the mapped columns split by semicolons: set [source] header_row = 2 and delimiter = \";\"",
    );
    check("Staff list March\n\nId,Email\nE1,a@x\n", &opts(), "line 3 holds the mapped columns: set [source] header_row = 3 in the mapping");
    // Identical on screen, not in bytes.
    std::fs::write(&p, "Id,Work\u{a0}Email\nE1,a@x\n").unwrap();
    let err = read(&p, Format::Csv, &opts(), &["Id", "Work Email"]).unwrap_err().to_string();
    assert!(err.contains("the header name \"Work<U+00A0>Email\" holds invisible characters"), "{err}");
    check("Id,E\u{200b}mail\nE1,a@x\n", &opts(), "the header name \"E<U+200B>mail\" holds invisible characters");
    check("Id,\u{feff}Email\nE1,a@x\n", &opts(), "the header name \"<U+FEFF>Email\" holds invisible characters");
}
