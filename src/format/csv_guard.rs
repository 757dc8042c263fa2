//! Watches CSV bytes on their way to the csv crate, for what that crate cannot say itself
//! and what would otherwise reach the plan as a shorter or stranger file:
//!
//! - CR-only line ends (old Mac "CSV (Macintosh)") become `\n`, so rows are lines (the csv
//!   crate would read the whole file as one row, and a message would quote all of it);
//! - a quote left open at the end of the file is an error naming the line it opened on (the
//!   csv crate ends the field silently, and the rows it swallowed read as absent people);
//! - a row longer than `max_row` stops the read (the csv crate would buffer a 2 GiB field);
//! - a file whose last line has no newline gets one, and says so (a short row there is a cut).
//!
//! It follows the csv crate's quoting: a quote opens a quoted field only at the start of a
//! field; inside, `""` is a quote and `"` followed by anything else closes it. It counts no
//! lines (the csv reader knows where the record being read starts, and errors are placed
//! there) and jumps from one quote to the next (memchr), looking back once per stretch for
//! the last line end: a million-row file costs a few SIMD scans, not a look at every byte.

use std::io::{self, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::{Limit, OverLimit};

/// Where the stream stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Outside a quoted field.
    Plain,
    /// Inside a quoted field.
    Quoted,
    /// Just read a `"` inside a quoted field: an escaped quote or the closing one.
    QuoteInQuoted,
}

/// What the reader of the guarded stream learns at its end.
#[derive(Debug, Default)]
pub(crate) struct End {
    /// The file's last line had no newline; one was added.
    pub added_newline: AtomicBool,
    /// Bytes handed on, the added newline included.
    pub total: AtomicU64,
}

/// A quote opened in the record being read is never closed before the end of the file.
#[derive(Debug)]
pub(crate) struct Unclosed;

impl std::fmt::Display for Unclosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a quote is never closed")
    }
}

impl std::error::Error for Unclosed {}

pub(crate) struct Guard<R> {
    inner: R,
    delimiter: u8,
    cr_only: bool,
    max_row: u64,
    state: State,
    /// Bytes of the current record so far (line ends inside quotes included).
    row_bytes: u64,
    /// The last byte handed on (`\n` at the start: a quote there opens a field).
    last: u8,
    end: Arc<End>,
    done: bool,
}

impl<R: Read> Guard<R> {
    /// `cr_only`: the file ends its lines with `\r` alone (decided from its first bytes).
    pub fn new(inner: R, delimiter: u8, cr_only: bool, max_row: u64) -> (Guard<R>, Arc<End>) {
        let end = Arc::new(End::default());
        let g = Guard { inner, delimiter, cr_only, max_row, state: State::Plain, row_bytes: 0, last: b'\n', end: end.clone(), done: false };
        (g, end)
    }

    /// Follows the quoting through `buf`, and the current record's length.
    fn scan(&mut self, buf: &[u8]) -> io::Result<()> {
        let mut i = 0;
        while i < buf.len() {
            match self.state {
                State::Plain => {
                    let stop = find(b'"', &buf[i..]).map_or(buf.len(), |k| i + k);
                    // Outside quotes, a line end ends the record: the row is what follows
                    // the last one in this stretch.
                    match rfind(b'\n', &buf[i..stop]) {
                        Some(k) => self.row_bytes = (stop - (i + k + 1)) as u64,
                        None => self.row_bytes += (stop - i) as u64,
                    }
                    if stop < buf.len() {
                        let prev = if stop == 0 { self.last } else { buf[stop - 1] };
                        if prev == self.delimiter || prev == b'\n' {
                            self.state = State::Quoted;
                        }
                        self.row_bytes += 1;
                    }
                    self.check_row()?;
                    i = stop + 1;
                }
                State::Quoted => match find(b'"', &buf[i..]) {
                    None => {
                        self.row_bytes += (buf.len() - i) as u64;
                        self.check_row()?;
                        i = buf.len();
                    }
                    Some(k) => {
                        self.row_bytes += k as u64 + 1;
                        self.check_row()?;
                        self.state = State::QuoteInQuoted;
                        i += k + 1;
                    }
                },
                State::QuoteInQuoted => {
                    // `""` is a quote inside the field; anything else follows a closed one.
                    if buf[i] == b'"' {
                        self.state = State::Quoted;
                        self.row_bytes += 1;
                        i += 1;
                    } else {
                        self.state = State::Plain;
                    }
                }
            }
        }
        Ok(())
    }

    fn check_row(&self) -> io::Result<()> {
        if self.row_bytes > self.max_row {
            // The reader places it: the record it was reading is the one.
            return Err(OverLimit::io(Limit::Row, None, "the row"));
        }
        Ok(())
    }
}

impl<R: Read> Read for Guard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() || self.done {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n > 0 {
            if self.cr_only {
                buf[..n].iter_mut().filter(|b| **b == b'\r').for_each(|b| *b = b'\n');
            }
            self.scan(&buf[..n])?;
            self.last = buf[n - 1];
            self.end.total.fetch_add(n as u64, Ordering::Relaxed);
            return Ok(n);
        }
        if self.state == State::Quoted {
            return Err(io::Error::other(Unclosed));
        }
        self.done = true;
        if self.last != b'\n' {
            self.last = b'\n';
            buf[0] = b'\n';
            self.end.added_newline.store(true, Ordering::Relaxed);
            self.end.total.fetch_add(1, Ordering::Relaxed);
            return Ok(1);
        }
        Ok(0)
    }
}

/// Bytes looked at one by one before memchr takes over: exports that quote every field
/// have a quote every few bytes, and memchr's setup costs more than those few bytes.
const NEAR: usize = 16;

fn find(b: u8, hay: &[u8]) -> Option<usize> {
    let near = hay.len().min(NEAR);
    hay[..near].iter().position(|&x| x == b).or_else(|| memchr::memchr(b, &hay[near..]).map(|k| k + near))
}

fn rfind(b: u8, hay: &[u8]) -> Option<usize> {
    if hay.len() <= NEAR { hay.iter().rposition(|&x| x == b) } else { memchr::memrchr(b, hay) }
}

/// Whether a file's first bytes end lines with `\r` alone.
pub(crate) fn cr_only(prefix: &[u8]) -> bool {
    memchr::memchr(b'\r', prefix).is_some() && memchr::memchr(b'\n', prefix).is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole stream through a guard, read in chunks of `chunk` bytes.
    fn run(input: &[u8], chunk: usize, max_row: u64) -> (io::Result<Vec<u8>>, bool) {
        let (mut g, end) = Guard::new(input, b',', cr_only(input), max_row);
        let mut out = Vec::new();
        let mut buf = vec![0u8; chunk];
        loop {
            match g.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => return (Err(e), end.added_newline.load(Ordering::Relaxed)),
            }
        }
        (Ok(out), end.added_newline.load(Ordering::Relaxed))
    }

    #[test]
    fn quotes_newlines_and_cr_only_files() {
        for chunk in [1, 2, 3, 7, 4096] {
            let (out, added) = run(b"a,b\n\"x\ny\",2\n", chunk, 1 << 20);
            assert_eq!(out.unwrap(), b"a,b\n\"x\ny\",2\n", "chunk {chunk}");
            assert!(!added);
            let (out, added) = run(b"a,b\r1,2\r3,4", chunk, 1 << 20);
            assert_eq!(out.unwrap(), b"a,b\n1,2\n3,4\n", "chunk {chunk}");
            assert!(added);
            // Escaped quotes stay inside; a quote inside an unquoted value is just a character.
            let (out, _) = run(b"a,b\n\"say \"\"hi\"\"\",x\"y\n", chunk, 1 << 20);
            assert!(out.is_ok(), "chunk {chunk}");
        }
    }

    #[test]
    fn an_unclosed_quote_is_an_error_at_the_end() {
        for chunk in [1, 5, 4096] {
            let (out, _) = run(b"a,b\n1,2\n3,\"oops\n4,5\n6,7\n", chunk, 1 << 20);
            let e = out.unwrap_err();
            assert!(e.get_ref().and_then(|i| i.downcast_ref::<Unclosed>()).is_some(), "chunk {chunk}: {e}");
            // Closed, the same bytes read to the end.
            assert!(run(b"a,b\n1,2\n3,\"fine\n4,5\"\n6,7\n", chunk, 1 << 20).0.is_ok(), "chunk {chunk}");
        }
    }

    #[test]
    fn a_row_over_the_limit_stops_the_read_even_inside_quotes() {
        let mut big = b"a,b\n1,\"".to_vec();
        big.extend(std::iter::repeat_n(b'x', 10_000));
        big.extend_from_slice(b"\"\n");
        for chunk in [7, 4096] {
            let (out, _) = run(&big, chunk, 1000);
            let e = out.unwrap_err();
            assert_eq!(OverLimit::of(&e).expect("an OverLimit error").limit, Limit::Row, "chunk {chunk}");
        }
        // An unquoted long row too.
        let mut long = b"a,b\n1,".to_vec();
        long.extend(std::iter::repeat_n(b'y', 5000));
        long.push(b'\n');
        assert!(run(&long, 4096, 1000).0.is_err());
        assert!(run(&long, 4096, 10_000).0.is_ok());
        // Many short rows are fine whatever their total.
        let many: Vec<u8> = (0..10_000).flat_map(|i| format!("{i},x\n").into_bytes()).collect();
        assert!(run(&many, 4096, 100).0.is_ok());
    }
}
