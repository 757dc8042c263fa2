//! Spreadsheets with calamine: xlsx through its streaming cell reader (memory holds the
//! shared strings, not the sheet), xls and ods through a sheet range (calamine has no
//! streaming reader for them). Lines are 1-based sheet rows. Cells become text as written:
//! the number 1001 is "1001" (never "1001.0"), text "00123" stays, date cells become ISO
//! 8601 dates.

use std::path::Path;

use calamine::{Data, DataRef, Ods, Reader, Xls, Xlsx};

use super::input::{self, Input, Seekable};
use super::producer::{self, Sink};
use super::{Format, SourceOptions};
use super::{FormatError, ReadError, Record, Records, match_columns};
use crate::model::RowError;

pub(crate) fn open(input: &Input, file: &str, format: Format, opts: &SourceOptions, columns: &[String]) -> Result<Records, FormatError> {
    let (input, file_s, opts, columns) = (input.clone(), file.to_string(), opts.clone(), columns.to_vec());
    producer::spawn("excel-reader", file, move |sink| {
        let src = input::seekable(&input, &file_s, &opts.limits)?;
        let mut rows = RowSink::new(&file_s, opts.header_row, columns, sink);
        match format {
            Format::Xlsx => read_xlsx(src, &file_s, opts.sheet.as_deref(), &mut rows)?,
            Format::Xls => {
                read_range(Xls::new(src).map_err(|e| unreadable(&file_s, "xls", e))?, &file_s, opts.sheet.as_deref(), &mut rows)?
            }
            _ => read_range(Ods::new(src).map_err(|e| unreadable(&file_s, "ods", e))?, &file_s, opts.sheet.as_deref(), &mut rows)?,
        }
        rows.finish()
    })
}

pub(crate) fn headers(input: &Input, file: &str, format: Format, opts: &SourceOptions) -> Result<Vec<String>, FormatError> {
    // Ask for a column no header has: the refusal carries the header.
    let probe = vec!["\u{0}rostersync-probe".to_string()];
    match open(input, file, format, opts, &probe) {
        Err(FormatError::MissingColumns { header, .. }) => Ok(header),
        Err(e) => Err(e),
        Ok(_) => Ok(Vec::new()),
    }
}

/// The workbook's sheet names, in order.
pub(crate) fn sheet_names(path: &Path, file: &str, format: Format) -> Result<Vec<String>, FormatError> {
    let src = input::seekable(&Input::from(path), file, &crate::format::Limits::default())?;
    Ok(match format {
        Format::Xlsx => Xlsx::new(src).map_err(|e| unreadable(file, "xlsx", e))?.sheet_names(),
        Format::Xls => Xls::new(src).map_err(|e| unreadable(file, "xls", e))?.sheet_names(),
        _ => Ods::new(src).map_err(|e| unreadable(file, "ods", e))?.sheet_names(),
    })
}

fn unreadable(file: &str, kind: &str, e: impl std::fmt::Display) -> FormatError {
    FormatError::Malformed {
        file: file.into(),
        line: None,
        message: format!("not a readable {kind} workbook: {e}; check [file] format or ask for a new export"),
    }
}

/// The sheet to read: by name (exact, then trimmed and case-insensitive), else the first.
fn pick_sheet(names: &[String], want: Option<&str>, file: &str) -> Result<String, FormatError> {
    let listed = || names.iter().map(|n| format!("\"{n}\"")).collect::<Vec<_>>().join(", ");
    match want {
        None => names.first().cloned().ok_or_else(|| FormatError::Malformed {
            file: file.into(),
            line: None,
            message: "the workbook has no sheet".into(),
        }),
        Some(w) => {
            names.iter().find(|n| *n == w).or_else(|| names.iter().find(|n| super::norm(n) == super::norm(w))).cloned().ok_or_else(|| {
                FormatError::Malformed {
                    file: file.into(),
                    line: None,
                    message: format!("no sheet named \"{w}\"; the workbook has {}; fix [source] sheet in the mapping", listed()),
                }
            })
        }
    }
}

fn read_xlsx(src: Seekable, file: &str, sheet: Option<&str>, rows: &mut RowSink) -> Result<(), FormatError> {
    let mut wb: Xlsx<Seekable> = Xlsx::new(src).map_err(|e| unreadable(file, "xlsx", e))?;
    let name = pick_sheet(&wb.sheet_names(), sheet, file)?;
    let mut cells = wb.worksheet_cells_reader(&name).map_err(|e| unreadable(file, "xlsx", e))?;
    loop {
        match cells.next_cell() {
            Ok(Some(cell)) => {
                let (r, c) = cell.get_position();
                if !rows.cell(r, c, cell.get_value())? {
                    return Ok(()); // consumer gone
                }
            }
            Ok(None) => return Ok(()),
            Err(e) => {
                return Err(FormatError::Malformed {
                    file: file.into(),
                    line: rows.current.map(|r| u64::from(r) + 1),
                    message: format!("reading stopped: {e}; the workbook is damaged, ask for a new export"),
                });
            }
        }
    }
}

fn read_range<R: Reader<Seekable>>(mut wb: R, file: &str, sheet: Option<&str>, rows: &mut RowSink) -> Result<(), FormatError>
where
    R::Error: std::fmt::Display,
{
    let name = pick_sheet(&wb.sheet_names(), sheet, file)?;
    let range = wb.worksheet_range(&name).map_err(|e| unreadable(file, "sheet", e))?;
    let Some((r0, c0)) = range.start() else { return Ok(()) };
    for (i, row) in range.rows().enumerate() {
        for (j, d) in row.iter().enumerate() {
            if !rows.cell(r0 + i as u32, c0 + j as u32, &data_ref(d))? {
                return Ok(());
            }
        }
    }
    Ok(())
}

fn data_ref(d: &Data) -> DataRef<'_> {
    match d {
        Data::Int(i) => DataRef::Int(*i),
        Data::Float(f) => DataRef::Float(*f),
        Data::String(s) => DataRef::SharedString(s),
        Data::Bool(b) => DataRef::Bool(*b),
        Data::DateTime(d) => DataRef::DateTime(*d),
        Data::DateTimeIso(s) => DataRef::DateTimeIso(s.clone()),
        Data::DurationIso(s) => DataRef::DurationIso(s.clone()),
        Data::Error(e) => DataRef::Error(e.clone()),
        Data::Empty => DataRef::Empty,
    }
}

/// A cell as text; Err for a cell holding an Excel error (#N/A, #REF! …).
pub(crate) fn cell_text(d: &DataRef) -> Result<String, String> {
    Ok(match d {
        DataRef::Int(i) => i.to_string(),
        DataRef::Float(f) => number_text(*f),
        DataRef::String(s) => s.clone(),
        DataRef::SharedString(s) => s.to_string(),
        DataRef::Bool(b) => b.to_string(),
        DataRef::DateTime(dt) if dt.is_duration() => number_text(dt.as_f64()),
        DataRef::DateTime(dt) => {
            let (y, mo, d, h, mi, s, ms) = dt.to_ymd_hms_milli();
            if (h, mi, s, ms) == (0, 0, 0, 0) {
                format!("{y:04}-{mo:02}-{d:02}")
            } else {
                format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}")
            }
        }
        // ODS writes dates as "2024-03-01T00:00:00"; a date is a date.
        DataRef::DateTimeIso(s) => s.strip_suffix("T00:00:00").unwrap_or(s).to_string(),
        DataRef::DurationIso(s) => s.clone(),
        DataRef::Error(e) => return Err(format!("the cell holds the spreadsheet error {e}; fix the formula in the export")),
        DataRef::Empty => String::new(),
    })
}

/// Whole numbers without ".0" (ids typed as numbers), others in their shortest form.
fn number_text(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 { format!("{}", f as i64) } else { format!("{f}") }
}

/// Assembles cells, which arrive row by row, into records of the requested columns.
struct RowSink<'s> {
    file: String,
    /// 0-based sheet row of the header.
    header_row: u32,
    columns: Vec<String>,
    sink: &'s mut Sink,
    header: Vec<String>,
    /// Sheet column → index in `columns`.
    lookup: Vec<Option<usize>>,
    matched: bool,
    current: Option<u32>,
    values: Vec<Option<String>>,
    error: Option<RowError>,
    non_empty: bool,
}

impl<'s> RowSink<'s> {
    fn new(file: &str, header_row: u64, columns: Vec<String>, sink: &'s mut Sink) -> Self {
        let n = columns.len();
        RowSink {
            file: file.into(),
            header_row: header_row.saturating_sub(1).min(u64::from(u32::MAX)) as u32,
            columns,
            sink,
            header: Vec::new(),
            lookup: Vec::new(),
            matched: false,
            current: None,
            values: vec![None; n],
            error: None,
            non_empty: false,
        }
    }

    /// Takes one cell; false when the consumer is gone.
    fn cell(&mut self, r: u32, c: u32, d: &DataRef) -> Result<bool, FormatError> {
        if self.current != Some(r) && !self.end_row()? {
            return Ok(false);
        }
        self.current = Some(r);
        if r < self.header_row {
            return Ok(true);
        }
        let c = c as usize;
        if r == self.header_row {
            if self.header.len() <= c {
                self.header.resize(c + 1, String::new());
            }
            self.header[c] = cell_text(d).unwrap_or_default();
            return Ok(true);
        }
        if !self.matched {
            self.match_header()?;
        }
        if matches!(d, DataRef::Empty) {
            return Ok(true);
        }
        let Some(Some(k)) = self.lookup.get(c) else {
            self.non_empty |= !matches!(d, DataRef::String(s) if s.trim().is_empty());
            return Ok(true);
        };
        match cell_text(d) {
            Ok(t) => {
                self.non_empty |= !t.trim().is_empty();
                self.values[*k] = Some(t);
            }
            Err(msg) => {
                self.non_empty = true;
                self.error.get_or_insert(RowError {
                    line: u64::from(r) + 1,
                    column: Some(self.columns[*k].clone()),
                    message: msg,
                    external_id: None,
                });
            }
        }
        Ok(true)
    }

    fn match_header(&mut self) -> Result<(), FormatError> {
        if self.header.iter().all(|h| h.trim().is_empty()) {
            return Err(FormatError::Malformed {
                file: self.file.clone(),
                line: Some(u64::from(self.header_row) + 1),
                message: format!(
                    "row {} is empty, so there is no header; set [source] header_row to the row holding the column names",
                    self.header_row + 1
                ),
            });
        }
        let idx = match_columns(&self.file, u64::from(self.header_row) + 1, &self.header, &self.columns)?;
        self.lookup = vec![None; self.header.len()];
        for (k, i) in idx.into_iter().enumerate() {
            self.lookup[i] = Some(k);
        }
        self.matched = true;
        if !self.sink.ready() {
            return Err(FormatError::Malformed { file: self.file.clone(), line: None, message: "reader stopped".into() });
        }
        Ok(())
    }

    /// Emits the row being assembled, if it is a data row with something in it.
    fn end_row(&mut self) -> Result<bool, FormatError> {
        let Some(r) = self.current else { return Ok(true) };
        if r <= self.header_row || !self.non_empty {
            self.reset();
            return Ok(true);
        }
        let error = self.error.take();
        // A cell that could not be read (#N/A) is absent; an empty one is "".
        let unreadable: Vec<bool> = self.columns.iter().map(|c| error.as_ref().is_some_and(|e| e.column.as_ref() == Some(c))).collect();
        let values = self.values.iter_mut().zip(&unreadable).map(|(v, bad)| if *bad { None } else { Some(v.take().unwrap_or_default()) });
        let record = Record::from_values(u64::from(r) + 1, values);
        let item = match error {
            // The readable cells go with the error: the id among them keeps its person.
            Some(error) => Err(ReadError::Row { error, cells: Some(record) }),
            None => Ok(record),
        };
        self.reset();
        Ok(self.sink.push(item))
    }

    fn reset(&mut self) {
        self.values.iter_mut().for_each(|v| *v = None);
        self.error = None;
        self.non_empty = false;
    }

    fn finish(mut self) -> Result<(), FormatError> {
        self.end_row()?;
        if !self.matched {
            if self.header.is_empty() {
                return Err(FormatError::Malformed {
                    file: self.file.clone(),
                    line: None,
                    message: format!("the sheet has no row {} for the header; check [source] header_row and sheet", self.header_row + 1),
                });
            }
            // Header but no data row: still check the columns, then the file is empty.
            self.match_header()?;
        }
        Ok(())
    }
}
