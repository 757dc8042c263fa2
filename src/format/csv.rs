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

use super::input::{self, Input, Stream};
use super::{FormatError, ReadError, Record, Records, match_columns};
use crate::config::mapping::SourceOptions;
use crate::model::RowError;

/// How much text the delimiter sniffer looks at (the header must start within it).
const SNIFF: usize = 256 * 1024;

const ENCODING_HINT: &str = "the file is not UTF-8; set [source] encoding = \"windows-1252\" (or the export's encoding) in the mapping";

pub(crate) fn open(input: &Input, file: &str, opts: &SourceOptions, columns: &[String]) -> Result<Records, FormatError> {
    let (mut rdr, header, header_line) = start(input, file, opts)?;
    let idx = match_columns(file, header_line, &header, columns)?;
    let width = header.len();
    let file = file.to_string();
    let mut rec = ByteRecord::new();
    let mut done = false;
    Ok(Box::new(std::iter::from_fn(move || {
        if done {
            return None;
        }
        loop {
            match rdr.read_byte_record(&mut rec) {
                Ok(true) => {}
                Ok(false) => return None,
                Err(e) => {
                    done = true;
                    return Some(Err(ReadError::File(FormatError::Malformed {
                        file: file.clone(),
                        line: e.position().map(|p| p.line()),
                        message: format!("reading stopped: {e}; the file is truncated or corrupt, ask for a new export"),
                    })));
                }
            }
            let line = start_line(&rdr, &rec);
            // Spreadsheet-saved CSVs end with rows of bare delimiters; they hold nobody.
            if rec.iter().all(|f| f.iter().all(|b| b.is_ascii_whitespace())) {
                continue;
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
                return Some(Err(ReadError::unidentified(error)));
            }
            // One UTF-8 check for the whole row: fields split at ASCII delimiters, so each
            // is valid when the row is. Otherwise the requested fields are checked one by
            // one (bad bytes in a column nobody reads do not make the row invalid).
            let row = std::str::from_utf8(rec.as_slice()).ok();
            let mut out = Record::with_capacity(line, idx.len(), rec.as_slice().len());
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
    Ok(start(input, file, opts)?.1)
}

type Reader = csv::Reader<Box<dyn Read + Send>>;

/// Opens the text, picks the delimiter and reads up to the header record.
fn start(input: &Input, file: &str, opts: &SourceOptions) -> Result<(Reader, Vec<String>, u64), FormatError> {
    let mut text = input::text(input, file, opts)?;
    let mut prefix = Vec::with_capacity(SNIFF.min(64 * 1024));
    (&mut text).take(SNIFF as u64).read_to_end(&mut prefix).map_err(|source| FormatError::Io { file: file.into(), source })?;
    let delimiter = opts.delimiter.unwrap_or_else(|| sniff_delimiter(&prefix, opts.header_row));
    let stream: Stream = Box::new(TrailingNewline { inner: Cursor::new(prefix).chain(text), last: b'\n' });
    let mut rdr = ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .terminator(csv::Terminator::Any(b'\n'))
        .buffer_capacity(1 << 16)
        .from_reader(stream);
    let mut rec = ByteRecord::new();
    loop {
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
                return Err(FormatError::Malformed {
                    file: file.into(),
                    line: e.position().map(|p| p.line()),
                    message: format!("cannot read the header: {e}"),
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
                    return Err(FormatError::Malformed {
                        file: file.into(),
                        line: Some(line),
                        message: format!("the header has invalid UTF-8 bytes; {ENCODING_HINT}"),
                    });
                }
            }
        }
        return Ok((rdr, header, line));
    }
}

/// The physical line a record starts on (see the module comment).
fn start_line(rdr: &Reader, rec: &ByteRecord) -> u64 {
    let inside = rec.as_slice().iter().filter(|&&b| b == b'\n').count() as u64;
    rdr.position().line().saturating_sub(1 + inside).max(1)
}

/// Field `i`, without the `\r` of a CRLF line end on the last field.
fn field(rec: &ByteRecord, i: usize) -> &[u8] {
    let f = &rec[i];
    if i + 1 == rec.len() { f.strip_suffix(b"\r").unwrap_or(f) } else { f }
}

/// Field `i` as a slice of the row's text (see `field`).
fn field_str<'a>(row: &'a str, rec: &ByteRecord, i: usize) -> &'a str {
    let Some(r) = rec.range(i) else { return "" };
    let f = row.get(r).unwrap_or_default();
    if i + 1 == rec.len() { f.strip_suffix('\r').unwrap_or(f) } else { f }
}

/// Appends a `\n` to a stream that does not end with one.
struct TrailingNewline<R> {
    inner: R,
    last: u8,
}

impl<R: Read> Read for TrailingNewline<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n > 0 {
            self.last = buf[n - 1];
            return Ok(n);
        }
        if self.last != b'\n' {
            self.last = b'\n';
            buf[0] = b'\n';
            return Ok(1);
        }
        Ok(0)
    }
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
    use super::sniff_delimiter;

    #[test]
    fn sniffs_the_header_line() {
        assert_eq!(sniff_delimiter(b"a;b;c\n1,5;2;3\n", 1), b';');
        assert_eq!(sniff_delimiter(b"a\tb\tc\n", 1), b'\t');
        assert_eq!(sniff_delimiter(b"\"x,y\"|b|c\n", 1), b'|');
        assert_eq!(sniff_delimiter(b"Export, 2024\na;b;c\n", 2), b';');
        assert_eq!(sniff_delimiter(b"single\n1\n", 1), b',');
    }
}
