//! Spreadsheets with calamine: xlsx through its streaming cell reader (memory holds the
//! shared strings, not the sheet), xls and ods through a sheet range (calamine has no
//! streaming reader for them). Lines are 1-based sheet rows. Cells become text as written:
//! the number 1001 is "1001" (never "1001.0"), text "00123" stays, date cells become ISO
//! 8601 dates.
//!
//! The workbook is read as the customer sees it in Excel: hidden sheets are never read
//! unless named, a merged region reads as its top-left value in every cell it covers, and a
//! cell Excel would show differently from what is stored (a formula never computed, a
//! number past Excel's 15 exact digits) is a cell error, never an empty or altered value. A
//! number whose format pads it with zeros ("00000") reads as displayed (`00123`); xls and
//! ods give no number formats, so there it reads as the number.

use std::path::Path;

use calamine::{Data, DataRef, Dimensions, Ods, Reader, Sheet, SheetVisible, Xls, Xlsx};

use super::input::{self, Input, Seekable};
use super::number_formats::{Padded, zero_padded_width};
use super::producer::{self, Sink};
use super::{Format, SourceOptions};
use super::{FormatError, ReadError, Record, Records, match_columns};
use crate::model::RowError;

pub(crate) fn open(input: &Input, file: &str, format: Format, opts: &SourceOptions, columns: &[String]) -> Result<Records, FormatError> {
    let (input, file_s, opts, columns) = (input.clone(), file.to_string(), opts.clone(), columns.to_vec());
    producer::spawn("excel-reader", file, move |sink| {
        let src = input::seekable(&input, &file_s, &opts.limits)?;
        let mut rows = RowSink::new(&file_s, opts.header_row, columns, sink);
        let sheet = opts.sheet.as_deref();
        match format {
            Format::Xlsx => read_xlsx(src, &file_s, sheet, &mut rows),
            Format::Xls => {
                let wb = Xls::new(src).map_err(|e| unreadable(&file_s, "xls", e))?;
                let name = pick_sheet(wb.sheets_metadata(), sheet, &file_s)?;
                rows.merges(&wb.merge_cells_by_sheet_name(&name).map_err(|e| unreadable(&file_s, "xls", e))?);
                read_range(wb, &file_s, &name, sheet.is_none(), &mut rows)
            }
            // calamine gives no merged regions for ods.
            _ => {
                let wb = Ods::new(src).map_err(|e| unreadable(&file_s, "ods", e))?;
                let name = pick_sheet(wb.sheets_metadata(), sheet, &file_s)?;
                read_range(wb, &file_s, &name, sheet.is_none(), &mut rows)
            }
        }
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

/// The sheet to read: by name (exact, then trimmed and case-insensitive; a hidden sheet
/// too, since it was asked for), else the first visible one: a hidden sheet is often last
/// month's copy, and Excel does not show it to whoever checked the export.
fn pick_sheet(sheets: &[Sheet], want: Option<&str>, file: &str) -> Result<String, FormatError> {
    let malformed = |message: String| FormatError::Malformed { file: file.into(), line: None, message };
    match want {
        None => match sheets.iter().find(|s| s.visible == SheetVisible::Visible) {
            Some(s) => Ok(s.name.clone()),
            None if sheets.is_empty() => Err(malformed("the workbook has no sheet".into())),
            None => Err(malformed(format!(
                "every sheet is hidden ({}); hidden sheets are not read unless named: set [source] sheet in the mapping",
                listed(sheets.iter())
            ))),
        },
        Some(w) => sheets
            .iter()
            .find(|s| s.name == w)
            .or_else(|| sheets.iter().find(|s| super::norm(&s.name) == super::norm(w)))
            .map(|s| s.name.clone())
            .ok_or_else(|| {
                malformed(format!("no sheet named \"{w}\"; the workbook has {}; fix [source] sheet in the mapping", listed(sheets.iter())))
            }),
    }
}

/// Sheet names, quoted, a hidden one said to be so.
fn listed<'a>(sheets: impl Iterator<Item = &'a Sheet>) -> String {
    let one = |s: &Sheet| match s.visible {
        SheetVisible::Visible => format!("\"{}\"", s.name),
        _ => format!("\"{}\" (hidden)", s.name),
    };
    sheets.map(one).collect::<Vec<_>>().join(", ")
}

fn hidden(sheets: &[Sheet]) -> Vec<String> {
    sheets.iter().filter(|s| s.visible != SheetVisible::Visible).map(|s| s.name.clone()).collect()
}

/// A visible sheet lacking mapped columns: which hidden sheets have them all, named in the
/// error so that whoever reads it knows where the data went (and that it is not read).
fn with_hidden_sheets(
    e: FormatError,
    candidates: Vec<String>,
    mut header_of: impl FnMut(&str) -> Vec<String>,
    columns: &[String],
) -> FormatError {
    match e {
        FormatError::MissingColumns { file, header_line, missing, header, closest, mut hints } => {
            hints.hidden_sheets =
                candidates.into_iter().filter(|name| super::match_columns(&file, header_line, &header_of(name), columns).is_ok()).collect();
            FormatError::MissingColumns { file, header_line, missing, header, closest, hints }
        }
        other => other,
    }
}

fn read_xlsx(src: Seekable, file: &str, sheet: Option<&str>, rows: &mut RowSink) -> Result<(), FormatError> {
    let mut wb: Xlsx<Seekable> = Xlsx::new(src).map_err(|e| unreadable(file, "xlsx", e))?;
    let name = pick_sheet(wb.sheets_metadata(), sheet, file)?;
    rows.merges(&wb.merge_cells_by_sheet_name(&name).map_err(|e| unreadable(file, "xlsx", e))?);
    rows.padded = padded_cells(&mut wb, file, &name)?;
    let read = stream_xlsx(&mut wb, file, &name, rows).and_then(|()| rows.finish());
    let hidden = if sheet.is_none() { hidden(wb.sheets_metadata()) } else { Vec::new() };
    match read {
        Err(e @ FormatError::MissingColumns { .. }) if !hidden.is_empty() => {
            let header_row = rows.header_row;
            Err(with_hidden_sheets(e, hidden, |n| xlsx_header(&mut wb, n, header_row), &rows.columns))
        }
        other => other,
    }
}

fn stream_xlsx(wb: &mut Xlsx<Seekable>, file: &str, name: &str, rows: &mut RowSink) -> Result<(), FormatError> {
    let mut cells = wb.worksheet_cells_reader(name).map_err(|e| unreadable(file, "xlsx", e))?;
    loop {
        // With formulas: a formula cell without a stored result reads as Empty otherwise.
        match cells.next_cell_with_formula_metadata() {
            Ok(Some(cell)) => {
                let (r, c) = cell.pos;
                let uncomputed = cell.formula.is_some() && matches!(cell.value, DataRef::Empty);
                if !rows.cell(r, c, &cell.value, uncomputed)? {
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

/// The cells of the sheet whose number format pads them with zeros (`number_formats`): a
/// pass over the cells' styles, only when some style of the workbook pads.
fn padded_cells(wb: &mut Xlsx<Seekable>, file: &str, name: &str) -> Result<Padded, FormatError> {
    let mut padded = Padded::default();
    let mut cells = wb.worksheet_cells_reader(name).map_err(|e| unreadable(file, "xlsx", e))?;
    let widths: Vec<Option<u8>> =
        cells.styles().iter().map(|s| s.number_format.as_ref().and_then(|f| zero_padded_width(&f.format_code))).collect();
    if widths.iter().all(Option::is_none) {
        return Ok(padded);
    }
    // A damaged sheet stops here as it would in the read that follows: that read says where.
    while let Ok(Some((r, c, style))) = cells.next_style_id() {
        if let Some(Some(w)) = widths.get(style) {
            padded.add(r, c, *w);
        }
    }
    Ok(padded)
}

/// The header row of a sheet (0-based `header_row`), empty when it cannot be read.
fn xlsx_header(wb: &mut Xlsx<Seekable>, name: &str, header_row: u32) -> Vec<String> {
    let mut header = Vec::new();
    let Ok(mut cells) = wb.worksheet_cells_reader(name) else { return header };
    while let Ok(Some(cell)) = cells.next_cell() {
        let (r, c) = cell.get_position();
        if r > header_row {
            break;
        }
        if r == header_row {
            put(&mut header, c, cell_text(cell.get_value()).unwrap_or_default());
        }
    }
    header
}

fn put(header: &mut Vec<String>, c: u32, text: String) {
    let c = c as usize;
    if header.len() <= c {
        header.resize(c + 1, String::new());
    }
    header[c] = text;
}

fn read_range<R: Reader<Seekable>>(mut wb: R, file: &str, name: &str, default_sheet: bool, rows: &mut RowSink) -> Result<(), FormatError>
where
    R::Error: std::fmt::Display,
{
    let range = wb.worksheet_range(name).map_err(|e| unreadable(file, "sheet", e))?;
    // The formulas, to tell a formula never computed (no cached value: Empty) from an empty
    // cell; a sheet whose formulas cannot be read has none known.
    let formulas = wb.worksheet_formula(name).ok();
    let read = feed_range(&range, formulas.as_ref(), rows).and_then(|()| rows.finish());
    let hidden = if default_sheet { hidden(wb.sheets_metadata()) } else { Vec::new() };
    match read {
        Err(e @ FormatError::MissingColumns { .. }) if !hidden.is_empty() => {
            let header_row = rows.header_row;
            let header_of = |n: &str| wb.worksheet_range(n).map(|r| range_header(&r, header_row)).unwrap_or_default();
            Err(with_hidden_sheets(e, hidden, header_of, &rows.columns))
        }
        other => other,
    }
}

fn feed_range(range: &calamine::Range<Data>, formulas: Option<&calamine::Range<String>>, rows: &mut RowSink) -> Result<(), FormatError> {
    let Some((r0, c0)) = range.start() else { return Ok(()) };
    for (i, row) in range.rows().enumerate() {
        for (j, d) in row.iter().enumerate() {
            let (r, c) = (r0 + i as u32, c0 + j as u32);
            let uncomputed = matches!(d, Data::Empty) && formulas.and_then(|f| f.get_value((r, c))).is_some_and(|f| !f.is_empty());
            if !rows.cell(r, c, &data_ref(d), uncomputed)? {
                return Ok(());
            }
        }
    }
    Ok(())
}

fn range_header(range: &calamine::Range<Data>, header_row: u32) -> Vec<String> {
    let mut header = Vec::new();
    let Some((r0, c0)) = range.start() else { return header };
    if let Some(row) = header_row.checked_sub(r0).and_then(|i| range.rows().nth(i as usize)) {
        for (j, d) in row.iter().enumerate() {
            put(&mut header, c0 + j as u32, cell_text(&data_ref(d)).unwrap_or_default());
        }
    }
    header
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
        DataRef::Float(f) if f.abs() >= 1e15 => {
            return Err(format!(
                "the number {f:e} is past the 15 digits a spreadsheet keeps exactly, so it may not be the value exported (an id turned into a number?); format the column as text in the export"
            ));
        }
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

/// A cell's name as Excel shows it: column 2, row 4 (0-based) is "C5".
fn cell_name(r: u32, c: u32) -> String {
    let mut letters = Vec::new();
    let mut n = c + 1;
    while n > 0 {
        letters.push(b'A' + ((n - 1) % 26) as u8);
        n = (n - 1) / 26;
    }
    letters.reverse();
    format!("{}{}", String::from_utf8_lossy(&letters), r + 1)
}

/// Merged regions over the data rows, each read as its top-left value (what Excel shows).
/// Regions are kept sorted by first row and visited once as rows go by, so a sheet of many
/// merged blocks costs the regions covering the current row, not all of them.
#[derive(Default)]
struct Merges {
    /// Regions not yet reached, by first row, last first (popped as rows go by).
    pending: Vec<Dimensions>,
    /// Regions covering the current row, with their top-left text once read.
    active: Vec<(Dimensions, Option<String>)>,
}

impl Merges {
    fn new(regions: &[Dimensions]) -> Merges {
        let mut pending: Vec<Dimensions> = regions.iter().filter(|d| d.start != d.end).copied().collect();
        pending.sort_by_key(|d| std::cmp::Reverse(d.start));
        Merges { pending, active: Vec::new() }
    }

    /// Moves to row `r`: regions starting there become active, those ended drop out.
    fn enter(&mut self, r: u32) {
        self.active.retain(|(d, _)| d.end.0 >= r);
        while self.pending.last().is_some_and(|d| d.start.0 <= r) {
            let d = self.pending.pop().unwrap_or_default();
            if d.end.0 >= r {
                self.active.push((d, None));
            }
        }
    }

    /// Keeps the text of a top-left cell.
    fn top_left(&mut self, r: u32, c: u32, text: &str) {
        if let Some((_, v)) = self.active.iter_mut().find(|(d, _)| d.start == (r, c)) {
            *v = Some(text.to_string());
        }
    }

    /// The region covering (r, c) other than at its top-left.
    fn covering(&self, r: u32, c: u32) -> Option<&(Dimensions, Option<String>)> {
        self.active.iter().find(|(d, _)| d.start != (r, c) && d.start.0 <= r && r <= d.end.0 && d.start.1 <= c && c <= d.end.1)
    }
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
    merges: Merges,
    /// Cells whose number format pads with zeros (xlsx).
    padded: Padded,
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
            merges: Merges::default(),
            padded: Padded::default(),
        }
    }

    /// The sheet's merged regions (before the first cell).
    fn merges(&mut self, regions: &[Dimensions]) {
        self.merges = Merges::new(regions);
    }

    /// Takes one cell; false when the consumer is gone. `uncomputed`: a formula whose
    /// result was never stored (the file was written by a tool that does not calculate).
    fn cell(&mut self, r: u32, c: u32, d: &DataRef, uncomputed: bool) -> Result<bool, FormatError> {
        if self.current != Some(r) {
            if !self.end_row()? {
                return Ok(false);
            }
            self.merges.enter(r);
        }
        self.current = Some(r);
        if r < self.header_row {
            return Ok(true);
        }
        if r == self.header_row {
            put(&mut self.header, c, cell_text(d).unwrap_or_default());
            return Ok(true);
        }
        if !self.matched {
            self.match_header()?;
        }
        if matches!(d, DataRef::Empty) && !uncomputed {
            return Ok(true);
        }
        let text = if uncomputed {
            Err(format!(
                "cell {} holds a formula with no computed value (the file was saved without calculating); open and save it in Excel, or export values",
                cell_name(r, c)
            ))
        } else {
            cell_text(d).map(|t| self.padded.display(r, c, d, t)).map_err(|m| format!("cell {}: {m}", cell_name(r, c)))
        };
        if let Ok(t) = &text {
            self.merges.top_left(r, c, t);
        }
        let Some(Some(k)) = self.lookup.get(c as usize) else {
            self.non_empty |= !matches!(d, DataRef::String(s) if s.trim().is_empty());
            return Ok(true);
        };
        match text {
            Ok(t) => {
                self.non_empty |= !t.trim().is_empty();
                self.values[*k] = Some(t);
            }
            Err(msg) => self.cell_error(r, *k, msg),
        }
        Ok(true)
    }

    fn cell_error(&mut self, r: u32, k: usize, message: String) {
        self.non_empty = true;
        self.error.get_or_insert(RowError { line: u64::from(r) + 1, column: Some(self.columns[k].clone()), message, external_id: None });
    }

    /// Mapped cells of row `r` inside a merged region take its top-left value; a region
    /// reaching from the header into the data has no value to give, and is refused.
    fn fill_merged(&mut self, r: u32) -> Result<(), FormatError> {
        for (c, k) in self.lookup.iter().enumerate() {
            let Some(k) = *k else { continue };
            let Some((d, text)) = self.merges.covering(r, c as u32) else { continue };
            if d.start.0 <= self.header_row {
                return Err(FormatError::Malformed {
                    file: self.file.clone(),
                    line: Some(u64::from(r) + 1),
                    message: format!(
                        "cells {}:{} are merged across the header and the data, so column \"{}\" has no value of its own; unmerge them in the export",
                        cell_name(d.start.0, d.start.1),
                        cell_name(d.end.0, d.end.1),
                        self.columns[k]
                    ),
                });
            }
            if self.values[k].is_none() {
                let t = text.clone().unwrap_or_default();
                self.non_empty |= !t.trim().is_empty();
                self.values[k] = Some(t);
            }
        }
        Ok(())
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
        if r > self.header_row && self.matched {
            self.fill_merged(r)?;
        }
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

    fn finish(&mut self) -> Result<(), FormatError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use calamine::SheetType;

    fn sheet(name: &str, visible: SheetVisible) -> Sheet {
        Sheet { name: name.into(), typ: SheetType::WorkSheet, visible }
    }

    #[test]
    fn cells_are_named_as_excel_names_them() {
        assert_eq!(cell_name(0, 0), "A1");
        assert_eq!(cell_name(4, 2), "C5");
        assert_eq!(cell_name(9, 25), "Z10");
        assert_eq!(cell_name(0, 26), "AA1");
        assert_eq!(cell_name(0, 701), "ZZ1");
        assert_eq!(cell_name(0, 702), "AAA1");
    }

    #[test]
    fn the_default_sheet_is_the_first_visible_one() {
        let sheets = [sheet("Old", SheetVisible::Hidden), sheet("Secret", SheetVisible::VeryHidden), sheet("Staff", SheetVisible::Visible)];
        assert_eq!(pick_sheet(&sheets, None, "f").unwrap(), "Staff");
        assert_eq!(pick_sheet(&sheets, Some("old"), "f").unwrap(), "Old", "named, a hidden sheet is read");
        let err = pick_sheet(&sheets[..2], None, "f").unwrap_err().to_string();
        assert!(err.contains("every sheet is hidden (\"Old\" (hidden), \"Secret\" (hidden))"), "{err}");
        assert_eq!(hidden(&sheets), vec!["Old".to_string(), "Secret".to_string()]);
    }

    #[test]
    fn merges_cover_their_rows_once_reached() {
        let d = |a: (u32, u32), b: (u32, u32)| Dimensions { start: a, end: b };
        let mut m = Merges::new(&[d((5, 1), (6, 1)), d((1, 1), (3, 1)), d((2, 2), (2, 2))]);
        assert_eq!(m.pending.len(), 2, "a one-cell region is no merge");
        m.enter(1);
        m.top_left(1, 1, "Sales");
        assert!(m.covering(1, 1).is_none(), "the top-left cell has its own value");
        m.enter(3);
        assert_eq!(m.covering(3, 1).and_then(|(_, t)| t.as_deref()), Some("Sales"));
        assert!(m.covering(3, 2).is_none());
        m.enter(4);
        assert!(m.active.is_empty(), "the region ended on row 3");
        m.enter(6);
        assert_eq!(m.covering(6, 1).map(|(d, t)| (d.start, t.clone())), Some(((5, 1), None)), "a top-left never read is empty");
    }

    #[test]
    fn numbers_past_15_digits_are_refused_and_whole_ones_lose_the_point() {
        assert_eq!(cell_text(&DataRef::Float(1001.0)).unwrap(), "1001");
        assert_eq!(cell_text(&DataRef::Float(123456789012345.0)).unwrap(), "123456789012345");
        assert!(cell_text(&DataRef::Float(1.0e15)).unwrap_err().contains("15 digits"));
        assert_eq!(cell_text(&DataRef::Int(10_000_000_000_000_000)).unwrap(), "10000000000000000", "an integer cell is exact");
    }
}
