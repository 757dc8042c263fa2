//! Format: turns the bytes of an export into a stream of records, each the values of the
//! columns the mapping asked for, with the line (CSV, JSON) or sheet row (Excel) it came
//! from. Streams: memory does not grow with the file.
//!
//! One file per family: `csv`, `excel`, `json`; `input` unwraps `.gz`/`.zip` and decodes
//! text; `producer` runs readers that cannot be `'static` iterators (calamine's cell reader
//! borrows its workbook) on a thread behind a bounded channel.

mod csv;
mod csv_guard;
mod excel;
mod input;
mod json;
mod memory;
mod number_formats;
mod options;
mod producer;
mod shared_strings;

use std::path::Path;

pub use self::input::Input;
pub use self::memory::Held;
pub use self::options::{Format, SourceOptions};
use crate::exit::{Classify, Exit};
use crate::model::RowError;

/// One data record: `get(i)` is the value of the i-th requested column; `None` when the
/// record has no such field (JSON) — an empty CSV cell is `Some("")`.
///
/// The values share one buffer: two allocations per record instead of one per cell, which
/// was most of the reading cost of a million-row export (BENCHMARKS.md, issue 8).
#[derive(Clone, Default)]
pub struct Record {
    pub line: u64,
    text: String,
    /// Byte range of each value in `text`; `ABSENT` as start for a missing field.
    cells: Vec<(u32, u32)>,
}

const ABSENT: u32 = u32::MAX;

/// Records kept for reuse per thread (eight batches of the mapping's hand-over), and the
/// longest text a kept record may have room for: at most ≈ 32 MiB held, ≈ 2 MiB for
/// usual rows.
const MAX_SPARE: usize = 8 * 1024;
const MAX_SPARE_BYTES: usize = 4 * 1024;

thread_local! {
    static SPARE: std::cell::RefCell<Vec<Record>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Record {
    /// An empty record for `n` values of about `bytes` bytes in all.
    pub fn with_capacity(line: u64, n: usize, bytes: usize) -> Record {
        Record { line, text: String::with_capacity(bytes), cells: Vec::with_capacity(n) }
    }

    pub fn from_values<S: AsRef<str>>(line: u64, values: impl IntoIterator<Item = Option<S>>) -> Record {
        let mut r = Record { line, ..Record::default() };
        for v in values {
            r.push(v.as_ref().map(AsRef::as_ref));
        }
        r
    }

    /// `with_capacity`, reusing the buffers of a record recycled on this thread when there
    /// is one (`recycle`).
    pub fn reused(line: u64, n: usize, bytes: usize) -> Record {
        match SPARE.with_borrow_mut(Vec::pop) {
            Some(mut r) => {
                r.line = line;
                r.text.clear();
                r.text.reserve(bytes);
                r.cells.clear();
                r.cells.reserve(n);
                r
            }
            None => Record::with_capacity(line, n, bytes),
        }
    }

    /// Keeps records read and mapped, for `reused` on this thread: the reader of a
    /// million-row file then fills a few thousand records over and over. Allocated on the
    /// reader and freed on a mapping worker, each record was two fresh allocations, which
    /// the allocator handed back to the system and the kernel zeroed again (perf: 4% of a
    /// 1M dry run, and most of its page faults). Records that held a long row are let go
    /// (a spare keeps its capacity), and the spares are bounded.
    pub fn recycle(records: impl Iterator<Item = Record>) {
        SPARE.with_borrow_mut(|spare| {
            for r in records {
                if spare.len() >= MAX_SPARE {
                    break;
                }
                if r.text.capacity() > 0 && r.text.capacity() <= MAX_SPARE_BYTES {
                    spare.push(r);
                }
            }
        });
    }

    /// The whole row's text at once, its values then given as ranges of it (`push_range`):
    /// one copy a row, not one per value (perf: the copies were 3% of a 1M dry run).
    /// Returns false, keeping nothing, for a row too long for the record's offsets.
    pub fn set_text(&mut self, row: &str) -> bool {
        if u32::try_from(row.len()).is_err() {
            return false;
        }
        self.text.clear();
        self.text.push_str(row);
        true
    }

    /// The next value: `range` of the text `set_text` gave (empty when out of it).
    pub fn push_range(&mut self, range: std::ops::Range<usize>) {
        let range = if self.text.get(range.clone()).is_some() { range } else { 0..0 };
        self.cells.push((range.start as u32, range.end as u32));
    }

    /// Appends the next value. A record's text is one cell row of an export, so it stays
    /// far below 4 GiB (the offsets are u32 to keep the record small).
    pub fn push(&mut self, value: Option<&str>) {
        match value {
            Some(v) => {
                let start = self.text.len() as u32;
                self.text.push_str(v);
                self.cells.push((start, self.text.len() as u32));
            }
            None => self.cells.push((ABSENT, ABSENT)),
        }
    }

    pub fn get(&self, i: usize) -> Option<&str> {
        let &(a, b) = self.cells.get(i)?;
        if a == ABSENT {
            return None;
        }
        self.text.get(a as usize..b as usize)
    }

    pub fn len(&self) -> usize {
        self.cells.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    pub fn values(&self) -> impl Iterator<Item = Option<&str>> {
        (0..self.len()).map(|i| self.get(i))
    }
}

impl PartialEq for Record {
    fn eq(&self, other: &Record) -> bool {
        self.line == other.line && self.values().eq(other.values())
    }
}

impl Eq for Record {}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Record").field("line", &self.line).field("values", &self.values().collect::<Vec<_>>()).finish()
    }
}

/// What can go wrong while reading records: one row (the file goes on), or the file itself
/// (truncated gzip, I/O error): the run must stop, because the records read so far are not
/// the full export and treating them as such would deactivate everyone after the fault.
#[derive(Debug)]
pub enum ReadError {
    /// A row that cannot be used as it is (the file goes on). `cells` holds the values that
    /// were read reliably, an unreadable cell absent: the mapping takes the unique id from
    /// them, so the plan keeps that person as they were. None when no cell can be trusted (a
    /// row whose fields are shifted, a line that is not JSON): the row is unidentified, and
    /// while a file has such a row nobody absent from it is deactivated (it may be them).
    Row {
        error: RowError,
        cells: Option<Record>,
    },
    /// A row with fewer fields than the header and at most two of them filled, such as a
    /// footer ("Total: 100", "Generated 2026-12-01 by Workday"): unidentified like a shifted
    /// row (no cell can be trusted), with its filled values, so that the mapping can tell a
    /// footer at the end of the file (`mapping::footer`) from a person.
    Sparse {
        error: RowError,
        values: Vec<String>,
    },
    File(FormatError),
}

impl ReadError {
    /// A row error with no trustworthy cell.
    pub fn unidentified(error: RowError) -> ReadError {
        ReadError::Row { error, cells: None }
    }
}

/// How many header names a message shows: enough to recognise the file, not a wall of
/// text for an 80-column export (the closest names are said before it).
const HEADER_SHOWN: usize = 8;

/// "the header has 3 columns: "a", "b", "c"", the first few only of a long header.
fn header_view(header: &[String]) -> String {
    let shown: Vec<String> = header.iter().take(HEADER_SHOWN).map(|h| format!("\"{}\"", crate::text::excerpt(h))).collect();
    let more = header.len().saturating_sub(HEADER_SHOWN);
    let rest =
        if more > 0 { format!(" … and {more} more (`rostersync mapping suggest` on a sample lists them all)") } else { String::new() };
    format!("the header has {} column(s): {}{rest}", header.len(), shown.join(", "))
}

/// Records, or faults; a `ReadError::File` is always the last item.
pub type Records = Box<dyn Iterator<Item = Result<Record, ReadError>> + Send>;

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("{file}: mapped column(s) {} not in the header (line {header_line}){}; {}{}",
        missing.iter().map(|m| format!("\"{m}\"")).collect::<Vec<_>>().join(", "),
        if closest.is_empty() { String::new() } else { format!("; closest names: {}", closest.join(", ")) },
        header_view(header),
        hints)]
    MissingColumns {
        file: String,
        header_line: u64,
        missing: Vec<String>,
        header: Vec<String>,
        closest: Vec<String>,
        /// What may lead to the fix (boxed: the error stays small on every `Result`).
        hints: Box<Hints>,
    },
    /// A gzip that ends early or fails its checksum: the transfer was cut or damaged.
    #[error("{file}{}: the compressed data is truncated or corrupt ({detail}): the transfer of the file was incomplete; nothing was synced from it, ask for the file again", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Incomplete { file: String, line: Option<u64>, detail: String },
    #[error("{file}: no data rows (the file is empty or holds only a header); a full export is expected")]
    Empty { file: String },
    #[error("{file}: cannot tell the format from the name; set [file] format = \"csv\" (or xlsx, json …)")]
    UnknownFormat { file: String },
    #[error("{file}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Malformed { file: String, line: Option<u64>, message: String },
    /// A CSV header that is not UTF-8: the export is in another encoding (`mapping suggest`
    /// then tries windows-1252).
    #[error("{file}:{line}: the header has invalid UTF-8 bytes; {}", ENCODING_HINT)]
    HeaderNotUtf8 { file: String, line: u64 },
    /// The JSON value at `[source] records` (`at`, as a message names it) is `kind`, not an
    /// array (`mapping suggest` then looks for the array).
    #[error("{file}: {at} holds {kind}, not an array of records; fix [source] records in the mapping")]
    NotAnArray { file: String, at: String, kind: &'static str },
    #[error("{file}: {source}")]
    Io { file: String, source: std::io::Error },
    /// The file goes past a bound on what one export may make rostersync read or hold (a
    /// decompression bomb, a field of gigabytes): never read to the end.
    #[error("{file}{}: {what} is over {} ({key}); {}", line.map(|l| format!(":{l}")).unwrap_or_default(), humansize(*max), advice(*limit))]
    TooLarge { file: String, line: Option<u64>, limit: Limit, what: String, max: u64, key: &'static str },
}

/// Where a CSV's mapped columns were found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FoundAt {
    /// On the header line, split by this delimiter.
    Delimiter(char),
    /// On this line, split by this delimiter (a title or `sep=` line above the header).
    Line(u64, char),
}

/// What a missing-column error knows that may lead to the fix.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Hints {
    /// Hidden sheets of a workbook that have every mapped column (hidden sheets are not
    /// read unless named).
    pub hidden_sheets: Vec<String>,
    /// Where a CSV's mapped columns are, when that is not how it was read.
    pub found_at: Option<FoundAt>,
    /// The line was Excel's `sep=` marker, not a header.
    pub sep_line: bool,
    /// Header names that are a mapped column once invisible characters are left out, shown
    /// with those characters written out ("Email<U+00A0>").
    pub invisible: Vec<String>,
}

impl std::fmt::Display for Hints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for h in &self.invisible {
            write!(
                f,
                "; the header name \"{h}\" holds invisible characters: retype it in the export (or map the column by that exact name)"
            )?;
        }
        if self.sep_line {
            write!(f, "; the first line is Excel's \"sep=\" marker, not the header")?;
        }
        match self.found_at {
            Some(FoundAt::Line(line, d)) => write!(
                f,
                "; line {line} holds the mapped columns{}: set [source] header_row = {line}{} in the mapping",
                if d == ',' { String::new() } else { format!(" split by {}", delimiter_name(d)) },
                if d == ',' { String::new() } else { format!(" and delimiter = \"{}\"", d.escape_default()) }
            )?,
            Some(FoundAt::Delimiter(d)) => write!(
                f,
                "; split by {} the header holds the mapped columns: set [source] delimiter = \"{}\" in the mapping",
                delimiter_name(d),
                d.escape_default()
            )?,
            None => {}
        }
        match self.hidden_sheets.as_slice() {
            [] => Ok(()),
            [one] => write!(
                f,
                "; the hidden sheet \"{one}\" has them, but hidden sheets are not read: if it is the export, set [source] sheet = \"{one}\" in the mapping (or unhide it)"
            ),
            many => write!(
                f,
                "; the hidden sheets {} have them, but hidden sheets are not read: set [source] sheet in the mapping to the one that is the export",
                many.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(", ")
            ),
        }
    }
}

fn delimiter_name(d: char) -> String {
    match d {
        '\t' => "tabs".into(),
        ';' => "semicolons".into(),
        ',' => "commas".into(),
        other => format!("\"{other}\""),
    }
}

/// Characters that do not show, or show as a space, in a spreadsheet or an editor.
fn invisible(c: char) -> bool {
    matches!(c, '\u{00a0}' | '\u{00ad}' | '\u{2007}' | '\u{202f}' | '\u{200b}'..='\u{200f}' | '\u{2060}' | '\u{feff}')
}

/// A header name with its invisible characters written out, when leaving them out (a
/// no-break space read as a space) makes it the column `want`.
fn with_invisible_shown(header: &str, want: &str) -> Option<String> {
    if !header.chars().any(invisible) {
        return None;
    }
    let plain: String = header
        .chars()
        .filter_map(|c| {
            if c == '\u{a0}' || c == '\u{2007}' || c == '\u{202f}' {
                Some(' ')
            } else if invisible(c) {
                None
            } else {
                Some(c)
            }
        })
        .collect();
    (norm(&plain) == norm(want))
        .then(|| header.trim().chars().map(|c| if invisible(c) { format!("<U+{:04X}>", c as u32) } else { c.to_string() }).collect())
}

/// What a non-UTF-8 CSV header or cell is told to do.
pub(crate) const ENCODING_HINT: &str =
    "the file is not UTF-8; set [source] encoding = \"windows-1252\" (or the export's encoding) in the mapping";

/// Which bound a file went past.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Bytes of the export once decompressed.
    Size,
    /// Bytes of one record.
    Row,
    /// Bytes of one value.
    Field,
    /// Bytes the file makes the run hold at once (rows kept, duplicate tracking, a
    /// workbook's shared strings): `[sync] max_memory`.
    Memory,
}

fn advice(limit: Limit) -> &'static str {
    match limit {
        Limit::Size => {
            "a real export of that size needs a larger max_size; a small compressed file that inflates this far is damaged or hostile"
        }
        Limit::Row | Limit::Field => {
            "HR exports hold short values: the file is damaged (a stray quote joins rows) or hostile; raise the limit only for an export known to need it"
        }
        Limit::Memory => {
            "nothing was synced from it; an export of more people than that holds needs a larger max_memory (about 400 bytes per person), while a small file that makes rostersync hold this much (one id on millions of rows, a huge string table) is damaged or hostile: ask for the file again"
        }
    }
}

fn humansize(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} bytes");
    }
    let mut v = n as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if v.fract() == 0.0 { format!("{v:.0} {}", UNITS[u]) } else { format!("{v:.1} {}", UNITS[u]) }
}

/// Bounds on what one export may make rostersync read or hold, so that memory and time
/// stay bounded whatever the input (beyond the users themselves): a small gzip that
/// inflates to gigabytes, a field of gigabytes, a row that never ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of the export after decompression (gzip, zip, xlsx parts): `[file] max_size`.
    pub max_size: u64,
    /// Bytes of one record (a CSV row, a JSON element or line): `[source] max_row_size`.
    pub max_row: u64,
    /// Bytes of one value: `[source] max_field_size`.
    pub max_field: u64,
    /// Bytes the file may make a run hold (`format::Held`): `[sync] max_memory`.
    pub max_memory: u64,
}

impl Limits {
    pub const DEFAULT_MAX_SIZE: u64 = 1 << 30;
    pub const DEFAULT_MAX_ROW: u64 = 1 << 20;
    pub const DEFAULT_MAX_FIELD: u64 = 256 << 10;
    /// 512 MiB: about 1.2 million people at ≈ 400 bytes each (BENCHMARKS.md), well under
    /// what a small machine or a container of a daemon serving many connectors has.
    pub const DEFAULT_MAX_MEMORY: u64 = 512 << 20;

    pub(crate) fn exceeded(&self, file: &str, line: Option<u64>, limit: Limit, what: impl Into<String>) -> FormatError {
        let (max, key) = match limit {
            Limit::Size => (self.max_size, "[file] max_size in connectors.toml"),
            Limit::Row => (self.max_row, "[source] max_row_size in the mapping"),
            Limit::Field => (self.max_field, "[source] max_field_size in the mapping"),
            Limit::Memory => (self.max_memory, "[sync] max_memory of the connector in connectors.toml"),
        };
        FormatError::TooLarge { file: file.into(), line, limit, what: what.into(), max, key }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_size: Limits::DEFAULT_MAX_SIZE,
            max_row: Limits::DEFAULT_MAX_ROW,
            max_field: Limits::DEFAULT_MAX_FIELD,
            max_memory: Limits::DEFAULT_MAX_MEMORY,
        }
    }
}

/// The I/O error a bounded reader returns when its bound is passed; turned back into
/// `FormatError::TooLarge` wherever a reader's I/O error surfaces (`FormatError::from_io`).
#[derive(Debug)]
pub(crate) struct OverLimit {
    pub limit: Limit,
    pub line: Option<u64>,
    pub what: String,
}

impl std::fmt::Display for OverLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} is over its limit", self.what)
    }
}

impl std::error::Error for OverLimit {}

impl OverLimit {
    pub fn io(limit: Limit, line: Option<u64>, what: impl Into<String>) -> std::io::Error {
        std::io::Error::other(OverLimit { limit, line, what: what.into() })
    }

    /// The limit an I/O error reports, if it is one of ours.
    pub fn of(e: &std::io::Error) -> Option<&OverLimit> {
        e.get_ref().and_then(|inner| inner.downcast_ref::<OverLimit>())
    }
}

impl FormatError {
    /// An I/O error while reading the export: a limit passed, or the I/O error itself.
    pub(crate) fn from_io(file: &str, limits: &Limits, source: std::io::Error) -> FormatError {
        if let Some(i) = input::Incomplete::of(&source) {
            return FormatError::Incomplete { file: file.into(), line: None, detail: i.detail.clone() };
        }
        match OverLimit::of(&source) {
            Some(o) => limits.exceeded(file, o.line, o.limit, o.what.clone()),
            None => FormatError::Io { file: file.into(), source },
        }
    }
}

impl Classify for FormatError {
    fn exit(&self) -> Exit {
        Exit::Data
    }
}

/// Opens an export for reading the given columns. Fails before any record when the file
/// cannot be read, a requested column is missing, or there is no data row at all.
pub fn open(path: &Path, display_name: &str, format: Format, opts: &SourceOptions, columns: &[String]) -> Result<Records, FormatError> {
    open_input(&Input::from(path), display_name, format, opts, columns)
}

/// `open` for a file still being downloaded: CSV and JSON are read as the bytes arrive;
/// spreadsheets and zips wait for the whole file (they seek).
pub fn open_input(
    input: &Input,
    display_name: &str,
    format: Format,
    opts: &SourceOptions,
    columns: &[String],
) -> Result<Records, FormatError> {
    let records = match format {
        Format::Csv => csv::open(input, display_name, opts, columns)?,
        Format::Xlsx | Format::Xls | Format::Ods => excel::open(input, display_name, format, opts, columns)?,
        Format::Json => json::open_array(input, display_name, opts, columns)?,
        Format::Ndjson => json::open_ndjson(input, display_name, opts, columns)?,
    };
    non_empty(records, display_name)
}

/// What opening the export will make the reader hold before its first record, in bytes:
/// an xlsx's shared strings (calamine reads them whole); nothing for the other formats,
/// which stream. Refused past `max_memory` (and the workbook's parts past `max_size`).
pub fn held_on_open(input: &Input, display_name: &str, format: Format, limits: &Limits) -> Result<u64, FormatError> {
    match format {
        Format::Xlsx => input::seekable_held(input, display_name, limits).map(|(_, held)| held),
        _ => Ok(0),
    }
}

/// The format of a file: by name, looking through `.gz`, and into a `.zip` at the name of
/// the one file it holds (`export.zip` holding `employees.csv` is CSV).
pub fn detect(path: &Path, display_name: &str) -> Result<Format, FormatError> {
    if let Some(f) = Format::from_name(display_name) {
        return Ok(f);
    }
    if display_name.to_ascii_lowercase().ends_with(".zip") {
        let inner = input::zip_entry_name(path, display_name)?;
        if let Some(f) = Format::from_name(&inner) {
            return Ok(f);
        }
    }
    Err(FormatError::UnknownFormat { file: display_name.into() })
}

/// The column names of an export (CSV/Excel header, JSON paths of the first records), for
/// `mapping suggest`.
pub fn headers(path: &Path, display_name: &str, format: Format, opts: &SourceOptions) -> Result<Vec<String>, FormatError> {
    match format {
        Format::Csv => csv::headers(&Input::from(path), display_name, opts),
        Format::Xlsx | Format::Xls | Format::Ods => excel::headers(&Input::from(path), display_name, format, opts),
        Format::Json | Format::Ndjson => json::headers(&Input::from(path), display_name, format, opts),
    }
}

/// A workbook's sheet names (xlsx, xls, ods), for `mapping suggest`.
pub fn sheet_names(path: &Path, display_name: &str, format: Format) -> Result<Vec<String>, FormatError> {
    excel::sheet_names(path, display_name, format)
}

/// The export's text decoded to UTF-8 (gzip/zip unwrapped), for sniffing.
pub fn sniff_text(path: &Path, display_name: &str, opts: &SourceOptions) -> Result<Box<dyn std::io::Read + Send>, FormatError> {
    input::text(&Input::from(path), display_name, opts)
}

pub use self::csv::sniff_delimiter;

/// Refuses a file without data rows before anything downstream sees it.
fn non_empty(mut records: Records, file: &str) -> Result<Records, FormatError> {
    match records.next() {
        None => Err(FormatError::Empty { file: file.into() }),
        Some(Err(ReadError::File(e))) => Err(e),
        Some(first) => Ok(Box::new(std::iter::once(first).chain(records))),
    }
}

/// Header names compare after trimming and ignoring case; nothing else is guessed.
pub(crate) fn norm(s: &str) -> String {
    s.trim().to_lowercase()
}

/// For each requested column, the index of the header field holding it.
pub(crate) fn match_columns(file: &str, header_line: u64, header: &[String], columns: &[String]) -> Result<Vec<usize>, FormatError> {
    let normed: Vec<String> = header.iter().map(|h| norm(h)).collect();
    let mut idx = Vec::with_capacity(columns.len());
    let mut missing = Vec::new();
    for c in columns {
        let want = norm(c);
        let hits: Vec<usize> = normed.iter().enumerate().filter(|(_, h)| **h == want).map(|(i, _)| i).collect();
        match hits.as_slice() {
            [] => missing.push(c.clone()),
            [i] => idx.push(*i),
            _ => {
                return Err(FormatError::Malformed {
                    file: file.into(),
                    line: Some(header_line),
                    message: format!(
                        "the header names column \"{c}\" {} times (fields {}); rename the duplicates in the export so the mapping reads one",
                        hits.len(),
                        hits.iter().map(|i| (i + 1).to_string()).collect::<Vec<_>>().join(", ")
                    ),
                });
            }
        }
    }
    if !missing.is_empty() {
        let invisible = missing.iter().flat_map(|m| header.iter().filter_map(|h| with_invisible_shown(h, m))).collect();
        let closest = missing
            .iter()
            .filter_map(|m| closest_name(m, header).map(|h| format!("\"{}\" (for \"{m}\")", crate::text::excerpt(h))))
            .collect();
        return Err(FormatError::MissingColumns {
            file: file.into(),
            header_line,
            missing,
            header: header.iter().map(|h| h.trim().to_string()).filter(|h| !h.is_empty()).collect(),
            closest,
            hints: Box::new(Hints { invisible, ..Hints::default() }),
        });
    }
    Ok(idx)
}

/// The header name nearest to `want` by edit distance (or containing it), if near enough
/// to be a plausible typo or variant.
pub(crate) fn closest_name<'a>(want: &str, header: &'a [String]) -> Option<&'a str> {
    let w = norm(want);
    let mut best: Option<(usize, &str)> = None;
    for h in header {
        let n = norm(h);
        if n.is_empty() {
            continue;
        }
        let d = if n.contains(&w) || w.contains(&n) { 1 } else { edit_distance(&w, &n) };
        if best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, h.trim()));
        }
    }
    let limit = (w.chars().count() / 2).max(2);
    best.filter(|(d, _)| *d <= limit).map(|(_, h)| h)
}

/// Levenshtein distance over chars.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    strsim::levenshtein(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A recycled record comes back empty, with its buffer; one that held a long row is let
    /// go; the spares are bounded.
    #[test]
    fn recycled_records_are_reused_empty_and_bounded() {
        // Each test runs on its own thread: its spares start empty.
        let mut r = Record::reused(2, 3, 64);
        r.push(Some("Ann"));
        r.push(None);
        let buffer = r.text.as_ptr();
        Record::recycle(std::iter::once(r));
        let again = Record::reused(7, 3, 16);
        assert_eq!((again.line, again.len(), again.get(0)), (7, 0, None));
        assert_eq!(again.text.as_ptr(), buffer, "the same buffer");
        let mut long = Record::with_capacity(1, 1, MAX_SPARE_BYTES + 1);
        long.push(Some("x"));
        Record::recycle([again, long].into_iter());
        assert_eq!(SPARE.with_borrow(Vec::len), 1, "the long row's record is let go");
        Record::recycle((0..2 * MAX_SPARE).map(|i| Record::from_values(i as u64, [Some("v")])));
        assert_eq!(SPARE.with_borrow(Vec::len), MAX_SPARE);
        SPARE.with_borrow_mut(Vec::clear);
    }

    fn h(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn columns_match_trimmed_and_case_insensitive() {
        let header = h(&[" Personnel Number", "EMAIL ", "First Name"]);
        let idx = match_columns("f.csv", 1, &header, &h(&["email", "first name", "personnel number"])).unwrap();
        assert_eq!(idx, vec![1, 2, 0]);
    }

    #[test]
    fn a_long_header_is_shown_by_its_first_names_after_the_closest_ones() {
        let mut header: Vec<String> = (1..=80).map(|i| format!("Column {i}")).collect();
        header.push("E-mail".into());
        let e = match_columns("f.csv", 1, &header, &h(&["Email"])).unwrap_err().to_string();
        let closest = e.find("closest names: \"E-mail\" (for \"Email\")").expect(&e);
        let view = e.find("the header has 81 column(s): \"Column 1\",").expect(&e);
        assert!(closest < view, "the fix first: {e}");
        assert!(e.contains("\"Column 8\" … and 73 more") && !e.contains("\"Column 9\""), "{e}");
    }

    #[test]
    fn missing_column_names_the_closest_header() {
        let header = h(&["E-Mail", "First Name", "Last Name"]);
        let err = match_columns("f.csv", 3, &header, &h(&["Email", "First Name"])).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("\"Email\" not in the header (line 3)"), "{text}");
        assert!(text.contains("closest names: \"E-Mail\" (for \"Email\")"), "{text}");
    }

    #[test]
    fn duplicate_header_is_refused() {
        let err = match_columns("f.csv", 1, &h(&["Email", "email"]), &h(&["Email"])).unwrap_err();
        assert!(err.to_string().contains("2 times (fields 1, 2)"), "{err}");
    }

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("prénom", "prenom"), 1);
    }
}
