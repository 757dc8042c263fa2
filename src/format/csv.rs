//! CSV (and TSV): streamed with the csv crate over one reused `ByteRecord`; only the
//! requested cells are turned into strings. Lines are the physical line where a record
//! starts, so a quoted field holding newlines does not shift the numbers after it.
//!
//! Records end at `\n` only (a trailing `\r` is dropped from the last field) and the stream
//! always ends with one: then every record consumes its terminator, and its first line is
//! the reader's line after it minus one minus the newlines inside it. csv's own start
//! position is off by one after CRLF and after blank lines.

use std::io::{Cursor, Read};

use csv::{ByteRecord, ReaderBuilder};

use super::SourceOptions;
use super::csv_guard::{self, End, Guard, Unclosed};
use super::input::{self, Input, Stream};
use super::{ENCODING_HINT, FormatError, FoundAt, Limit, Limits, OverLimit, ReadError, Record, Records, match_columns};
use crate::model::RowError;

/// How much text the delimiter sniffer looks at (the header must start within it).
const SNIFF: usize = 256 * 1024;

pub(crate) fn open(input: &Input, file: &str, opts: &SourceOptions, columns: &[String]) -> Result<Records, FormatError> {
    let Started { mut rdr, header, header_line, end, delimiter, head } = start(input, file, opts)?;
    let idx = match_columns(file, header_line, &header, columns).map_err(|e| with_hints(e, &head, delimiter, columns))?;
    let width = header.len();
    let file = file.to_string();
    let limits = opts.limits;
    let mut rec = ByteRecord::new();
    let mut done = false;
    Ok(Box::new(std::iter::from_fn(move || {
        if done {
            return None;
        }
        loop {
            // Where the next record starts: errors the guard raises are placed there.
            let at = rdr.position().line();
            match rdr.read_byte_record(&mut rec) {
                Ok(true) => {}
                Ok(false) => return None,
                Err(e) => {
                    done = true;
                    return Some(Err(ReadError::File(read_failure(&file, &limits, e, at))));
                }
            }
            let line = start_line(&rdr, &rec);
            // Spreadsheet-saved CSVs end with rows of bare delimiters; they hold nobody.
            if rec.iter().all(|f| f.iter().all(|b| b.is_ascii_whitespace())) {
                continue;
            }
            if rec.as_slice().len() as u64 > limits.max_field
                && let Some(i) = (0..rec.len()).find(|&i| rec[i].len() as u64 > limits.max_field)
            {
                done = true;
                let what = format!("the value of column \"{}\" on line {line}", header.get(i).map(|h| h.trim()).unwrap_or("?"));
                return Some(Err(ReadError::File(limits.exceeded(&file, Some(line), Limit::Field, what))));
            }
            // A short last line without a newline is where the file was cut: the people
            // after it are missing, not leavers.
            if rec.len() < width
                && end.added_newline.load(std::sync::atomic::Ordering::Relaxed)
                && rdr.position().byte() == end.total.load(std::sync::atomic::Ordering::Relaxed)
            {
                done = true;
                return Some(Err(ReadError::File(FormatError::Malformed {
                    file: file.clone(),
                    line: Some(line),
                    message: format!(
                        "the last line has {} of the header's {width} fields and no line end: the file was cut off; nothing was synced from it, ask for a new export",
                        rec.len()
                    ),
                })));
            }
            if rec.len() != width {
                let error = RowError {
                    line,
                    column: None,
                    message: format!(
                        "found {} fields, but the header (line {header_line}) has {width}; a value holding the delimiter or a quote must be quoted",
                        rec.len()
                    ),
                    external_id: None,
                };
                // Never read an id from a shifted row: which field holds it is a guess, and a
                // wrong guess protects someone else and lets this person be deactivated.
                return Some(Err(match sparse(&rec, width) {
                    Some(values) => ReadError::Sparse { error, values },
                    None => ReadError::unidentified(error),
                }));
            }
            // A row of the right shape can still have swallowed the rows after it.
            if let Some(swallowed) = swallowed_rows(&rec, line, width, delimiter) {
                return Some(Err(ReadError::unidentified(swallowed)));
            }
            // One UTF-8 check for the whole row: fields split at ASCII delimiters, so each
            // is valid when the row is. Otherwise the requested fields are checked one by
            // one (bad bytes in a column nobody reads do not make the row invalid).
            let row = std::str::from_utf8(rec.as_slice()).ok();
            let mut out = Record::reused(line, idx.len(), rec.as_slice().len());
            if let Some(row) = row
                && out.set_text(row)
            {
                for &i in &idx {
                    out.push_range(field_range(row, &rec, i));
                }
                return Some(Ok(out));
            }
            let mut bad: Option<RowError> = None;
            for &i in &idx {
                let value = match row {
                    Some(row) => Some(field_str(row, &rec, i)),
                    None => match std::str::from_utf8(field(&rec, i)) {
                        Ok(v) => Some(v),
                        Err(_) => {
                            bad.get_or_insert_with(|| RowError {
                                line,
                                column: Some(header[i].trim().to_string()),
                                message: format!("invalid UTF-8 bytes; {ENCODING_HINT}"),
                                external_id: None,
                            });
                            None
                        }
                    },
                };
                out.push(value);
            }
            // The readable cells go with the error: the id among them keeps its person.
            return Some(match bad {
                Some(error) => Err(ReadError::Row { error, cells: Some(out) }),
                None => Ok(out),
            });
        }
    })))
}

pub(crate) fn headers(input: &Input, file: &str, opts: &SourceOptions) -> Result<Vec<String>, FormatError> {
    Ok(start(input, file, opts)?.header)
}

/// A read error of the csv crate: one of the guard's (a limit, an unclosed quote), or the
/// file's bytes.
/// `at`: the line the record being read starts on (the reader's position).
fn read_failure(file: &str, limits: &Limits, e: csv::Error, at: u64) -> FormatError {
    let line = e.position().map(|p| p.line());
    if let csv::ErrorKind::Io(io) = e.kind() {
        if let Some(o) = OverLimit::of(io) {
            let what = if o.limit == Limit::Row { format!("the row starting on line {at}") } else { o.what.clone() };
            return limits.exceeded(file, Some(at), o.limit, what);
        }
        if let Some(i) = input::Incomplete::of(io) {
            return FormatError::Incomplete { file: file.into(), line: Some(at), detail: i.detail.clone() };
        }
        if io.get_ref().and_then(|i| i.downcast_ref::<Unclosed>()).is_some() {
            return FormatError::Malformed {
                file: file.into(),
                line: Some(at),
                message: format!(
                    "a quote opened on line {at} is never closed: the rest of the file would read as one value. The file is truncated or a value holds a stray quote; nothing was synced from it, ask for a new export"
                ),
            };
        }
    }
    FormatError::Malformed {
        file: file.into(),
        line,
        message: format!("reading stopped: {e}; the file is truncated or corrupt, ask for a new export"),
    }
}

/// A row one of whose values holds line breaks followed by lines that read as whole records
/// of the file's shape: a stray quote opened the value and swallowed the rows after it. The
/// people of those rows would read as absent, and their data would land in this person's
/// field, so the row is refused, naming the lines it swallowed. "The file's shape" is exactly
/// its number of fields, counted as CSV (a quoted delimiter is no field break): a correctly
/// quoted note whose lines hold a few commas is a value, not swallowed rows.
fn swallowed_rows(rec: &ByteRecord, line: u64, width: usize, delimiter: u8) -> Option<RowError> {
    if width < 2 || memchr::memchr(b'\n', rec.as_slice()).is_none() {
        return None;
    }
    let mut offset = 0u64; // lines of the record before this field
    for (i, f) in rec.iter().enumerate() {
        let mut inner = f.split(|b| *b == b'\n');
        inner.next();
        let mut whole = Vec::new();
        for (k, l) in inner.enumerate() {
            if fields_of(l, delimiter) == width {
                whole.push(line + offset + k as u64 + 1);
            }
        }
        offset += memchr::memchr_iter(b'\n', f).count() as u64;
        if let (Some(first), Some(last)) = (whole.first(), whole.last()) {
            return Some(RowError {
                line,
                column: None,
                message: format!(
                    "value {} of this row runs over lines {first}–{last}, which read as {} row(s) of their own: a quote in the row is not closed where it should be. This row and the ones it swallowed are not synced, and nobody absent from the file is deactivated; fix the quote in the export",
                    i + 1,
                    whole.len()
                ),
                external_id: None,
            });
        }
    }
    None
}

/// The fields of one line read as a CSV record (quotes honoured).
fn fields_of(line: &[u8], delimiter: u8) -> usize {
    if memchr::memchr(delimiter, line).is_none() {
        return 1;
    }
    let mut rdr = csv::ReaderBuilder::new().has_headers(false).flexible(true).delimiter(delimiter).from_reader(line);
    let mut rec = ByteRecord::new();
    match rdr.read_byte_record(&mut rec) {
        Ok(true) => rec.len(),
        _ => 0,
    }
}

type Reader = csv::Reader<Box<dyn Read + Send>>;

/// A reader positioned after the header record.
struct Started {
    rdr: Reader,
    header: Vec<String>,
    header_line: u64,
    end: std::sync::Arc<End>,
    delimiter: u8,
    /// The first bytes of the text, to say where the columns are when the header lacks them.
    head: Vec<u8>,
}

/// Opens the text, picks the delimiter and reads up to the header record.
fn start(input: &Input, file: &str, opts: &SourceOptions) -> Result<Started, FormatError> {
    let mut text = input::text(input, file, opts)?;
    let mut prefix = Vec::with_capacity(SNIFF.min(64 * 1024));
    (&mut text).take(SNIFF as u64).read_to_end(&mut prefix).map_err(|e| FormatError::from_io(file, &opts.limits, e))?;
    let cr_only = csv_guard::cr_only(&prefix);
    if cr_only {
        prefix.iter_mut().filter(|b| **b == b'\r').for_each(|b| *b = b'\n');
    }
    let delimiter = opts.delimiter.unwrap_or_else(|| sniff_delimiter(&prefix, opts.header_row));
    let head = prefix[..prefix.len().min(HEAD)].to_vec();
    let (guard, end) = Guard::new(Cursor::new(prefix).chain(text), delimiter, cr_only, opts.limits.max_row);
    let stream: Stream = Box::new(guard);
    let mut rdr = ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .terminator(csv::Terminator::Any(b'\n'))
        .buffer_capacity(1 << 16)
        .from_reader(stream);
    let mut rec = ByteRecord::new();
    loop {
        let at = rdr.position().line();
        match rdr.read_byte_record(&mut rec) {
            Ok(true) => {}
            Ok(false) if opts.header_row > 1 => {
                return Err(FormatError::Malformed {
                    file: file.into(),
                    line: None,
                    message: format!("the file ends before header_row = {}; check [source] header_row in the mapping", opts.header_row),
                });
            }
            Ok(false) => return Err(FormatError::Empty { file: file.into() }),
            Err(e) => {
                return Err(match read_failure(file, &opts.limits, e, at) {
                    FormatError::Malformed { file, line, message } => {
                        FormatError::Malformed { file, line, message: format!("cannot read the header: {message}") }
                    }
                    other => other,
                });
            }
        }
        let line = start_line(&rdr, &rec);
        if line < opts.header_row || rec.iter().all(|f| f.iter().all(|b| b.is_ascii_whitespace())) {
            continue;
        }
        let mut header = Vec::with_capacity(rec.len());
        for f in (0..rec.len()).map(|i| field(&rec, i)) {
            match std::str::from_utf8(f) {
                Ok(s) => header.push(s.to_string()),
                Err(_) => {
                    return Err(FormatError::HeaderNotUtf8 { file: file.into(), line });
                }
            }
        }
        return Ok(Started { rdr, header, header_line: line, end, delimiter, head });
    }
}

/// The physical line a record starts on (see the module comment).
fn start_line(rdr: &Reader, rec: &ByteRecord) -> u64 {
    // SIMD: every row's bytes are scanned, and nearly every row has no newline inside.
    let inside = memchr::memchr_iter(b'\n', rec.as_slice()).count() as u64;
    rdr.position().line().saturating_sub(1 + inside).max(1)
}

/// Field `i`, without the `\r` of a CRLF line end on the last field.
fn field(rec: &ByteRecord, i: usize) -> &[u8] {
    let f = &rec[i];
    if i + 1 == rec.len() { f.strip_suffix(b"\r").unwrap_or(f) } else { f }
}

/// A short row's filled values when it has one or two (a footer looks like that): each
/// trimmed and bounded, for the mapping to judge (`mapping::footer`).
fn sparse(rec: &ByteRecord, width: usize) -> Option<Vec<String>> {
    if rec.len() >= width {
        return None;
    }
    let filled: Vec<&[u8]> = (0..rec.len()).map(|i| field(rec, i).trim_ascii()).filter(|f| !f.is_empty()).take(3).collect();
    (1..=2).contains(&filled.len()).then(|| filled.iter().map(|f| crate::text::excerpt(&String::from_utf8_lossy(f))).collect())
}

/// Field `i` as a slice of the row's text (see `field`).
fn field_str<'a>(row: &'a str, rec: &ByteRecord, i: usize) -> &'a str {
    let Some(r) = rec.range(i) else { return "" };
    let f = row.get(r).unwrap_or_default();
    if i + 1 == rec.len() { f.strip_suffix('\r').unwrap_or(f) } else { f }
}

/// Where field `i` is in the row's text, as `field_str` reads it.
fn field_range(row: &str, rec: &ByteRecord, i: usize) -> std::ops::Range<usize> {
    let Some(r) = rec.range(i) else { return 0..0 };
    let cr = i + 1 == rec.len() && row.get(r.clone()).is_some_and(|f| f.ends_with('\r'));
    if cr { r.start..r.end - 1 } else { r }
}

/// How much of the text is searched for the mapped columns when the header lacks them.
const HEAD: usize = 16 * 1024;
/// How many lines of it.
const HEAD_LINES: usize = 30;

/// A header without the mapped columns: says where they are (another line: a title row or
/// Excel's `sep=` line above the header; another delimiter: a comma file read as `;`).
fn with_hints(e: FormatError, head: &[u8], read_with: u8, columns: &[String]) -> FormatError {
    match e {
        FormatError::MissingColumns { file, header_line, missing, header, closest, mut hints } => {
            hints.found_at = locate_columns(head, columns, read_with)
                .map(|(line, d)| if line == header_line { FoundAt::Delimiter(d) } else { FoundAt::Line(line, d) });
            hints.sep_line = header_line == 1 && header.first().is_some_and(|h| h.trim().to_ascii_lowercase().starts_with("sep="));
            FormatError::MissingColumns { file, header_line, missing, header, closest, hints }
        }
        other => other,
    }
}

/// The first line of `head` that holds every column, and the delimiter that splits it
/// (the one it was read with first); None when no line does.
fn locate_columns(head: &[u8], columns: &[String], read_with: u8) -> Option<(u64, char)> {
    let wanted: Vec<String> = columns.iter().map(|c| super::norm(c)).collect();
    let mut delimiters = vec![read_with];
    delimiters.extend([b',', b';', b'\t', b'|'].into_iter().filter(|d| *d != read_with));
    for d in delimiters {
        let mut rdr = ReaderBuilder::new().has_headers(false).flexible(true).delimiter(d).from_reader(head);
        for rec in rdr.byte_records().take(HEAD_LINES) {
            let Ok(rec) = rec else { break };
            let fields: Vec<String> = rec.iter().map(|f| super::norm(&String::from_utf8_lossy(f))).collect();
            if wanted.iter().all(|w| fields.contains(w)) {
                // Counted from the byte offset past the blank lines csv counts into the record.
                let mut at = rec.position().map_or(0, |p| p.byte() as usize).min(head.len());
                while head.get(at).is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    at += 1;
                }
                let line = memchr::memchr_iter(b'\n', &head[..at]).count() as u64 + 1;
                return Some((line, d as char));
            }
        }
    }
    None
}

/// The delimiter among `,` `;` tab `|` that occurs most often, outside quotes, on the header
/// line; `,` when none does (a one-column file).
pub fn sniff_delimiter(text: &[u8], header_row: u64) -> u8 {
    const CANDIDATES: [u8; 4] = [b',', b';', b'\t', b'|'];
    let mut line = 1u64;
    let mut counts = [0usize; 4];
    let mut quoted = false;
    for &b in text {
        if b == b'"' {
            quoted = !quoted;
        } else if b == b'\n' {
            if line >= header_row && !quoted && counts.iter().any(|&c| c > 0) {
                break;
            }
            line += 1;
        } else if !quoted
            && line >= header_row
            && let Some(k) = CANDIDATES.iter().position(|&c| c == b)
        {
            counts[k] += 1;
        }
    }
    let (best, n) = counts.iter().enumerate().fold((0, 0), |acc, (k, &n)| if n > acc.1 { (k, n) } else { acc });
    if n == 0 { b',' } else { CANDIDATES[best] }
}

#[cfg(test)]
mod tests {
    use super::{locate_columns, sniff_delimiter};

    #[test]
    fn mapped_columns_are_found_on_another_line_or_with_another_delimiter() {
        let cols = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let want = cols(&["Id", "Email"]);
        assert_eq!(locate_columns(b"Id,Email\nE1,a@x\n", &want, b';'), Some((1, ',')), "a comma file read as ;");
        assert_eq!(locate_columns(b"Id;Email\nE1;a@x\n", &want, b','), Some((1, ';')));
        assert_eq!(locate_columns(b"sep=;\nId;Email\nE1;a@x\n", &want, b';'), Some((2, ';')), "Excel's sep= line");
        assert_eq!(locate_columns(b"Staff list, March\n\nId,Email\n", &want, b','), Some((3, ',')), "a title row");
        assert_eq!(locate_columns(b"Id,Mail\n", &want, b','), None);
    }

    #[test]
    fn sniffs_the_header_line() {
        assert_eq!(sniff_delimiter(b"a;b;c\n1,5;2;3\n", 1), b';');
        assert_eq!(sniff_delimiter(b"a\tb\tc\n", 1), b'\t');
        assert_eq!(sniff_delimiter(b"\"x,y\"|b|c\n", 1), b'|');
        assert_eq!(sniff_delimiter(b"Export, 2024\na;b;c\n", 2), b';');
        assert_eq!(sniff_delimiter(b"single\n1\n", 1), b',');
    }
}
