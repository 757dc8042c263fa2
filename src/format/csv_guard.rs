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
//! field; inside, `""` is a quote and `"` followed by anything else closes it. Quotes are
//! rare, so it jumps from one quote or newline to the next (memchr) instead of looking at
//! every byte.

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

/// A quote opened on `line` and never closed before the end of the file.
#[derive(Debug)]
pub(crate) struct Unclosed {
    pub line: u64,
}

impl std::fmt::Display for Unclosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a quote opened on line {} is never closed", self.line)
    }
}

impl std::error::Error for Unclosed {}

pub(crate) struct Guard<R> {
    inner: R,
    delimiter: u8,
    cr_only: bool,
    max_row: u64,
    state: State,
    /// The physical line at the current position (1-based).
    line: u64,
    /// The line the current quoted field opened on.
    open_line: u64,
    /// Bytes of the current record so far, and the line it started on.
    row_bytes: u64,
    row_line: u64,
    /// The last byte handed on (`\n` at the start: a quote there opens a field).
    last: u8,
    end: Arc<End>,
    done: bool,
}

impl<R: Read> Guard<R> {
    /// `cr_only`: the file ends its lines with `\r` alone (decided from its first bytes).
    pub fn new(inner: R, delimiter: u8, cr_only: bool, max_row: u64) -> (Guard<R>, Arc<End>) {
        let end = Arc::new(End::default());
        let g = Guard {
            inner,
            delimiter,
            cr_only,
            max_row,
            state: State::Plain,
            line: 1,
            open_line: 1,
            row_bytes: 0,
            row_line: 1,
            last: b'\n',
            end: end.clone(),
            done: false,
        };
        (g, end)
    }

    /// Follows the quoting through `buf`, counting lines and the current record's bytes.
    fn scan(&mut self, buf: &[u8]) -> io::Result<()> {
        let mut i = 0;
        while i < buf.len() {
            match self.state {
                State::Plain => match memchr::memchr2(b'"', b'\n', &buf[i..]) {
                    None => {
                        self.grow_row(buf.len() - i)?;
                        i = buf.len();
                    }
                    Some(k) => {
                        let at = i + k;
                        self.grow_row(k + 1)?;
                        if buf[at] == b'\n' {
                            self.line += 1;
                            self.row_bytes = 0;
                            self.row_line = self.line;
                        } else {
                            let prev = if at == 0 { self.last } else { buf[at - 1] };
                            if prev == self.delimiter || prev == b'\n' {
                                self.state = State::Quoted;
                                self.open_line = self.line;
                            }
                        }
                        i = at + 1;
                    }
                },
                State::Quoted => match memchr::memchr(b'"', &buf[i..]) {
                    None => {
                        self.line += memchr::memchr_iter(b'\n', &buf[i..]).count() as u64;
                        self.grow_row(buf.len() - i)?;
                        i = buf.len();
                    }
                    Some(k) => {
                        self.line += memchr::memchr_iter(b'\n', &buf[i..i + k]).count() as u64;
                        self.grow_row(k + 1)?;
                        self.state = State::QuoteInQuoted;
                        i += k + 1;
                    }
                },
                State::QuoteInQuoted => {
                    // `""` is a quote inside the field; anything else follows a closed one.
                    if buf[i] == b'"' {
                        self.state = State::Quoted;
                        self.grow_row(1)?;
                        i += 1;
                    } else {
                        self.state = State::Plain;
                    }
                }
            }
        }
        Ok(())
    }

    fn grow_row(&mut self, n: usize) -> io::Result<()> {
        self.row_bytes += n as u64;
        if self.row_bytes > self.max_row {
            return Err(OverLimit::io(Limit::Row, Some(self.row_line), format!("the row starting on line {}", self.row_line)));
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
            return Err(io::Error::other(Unclosed { line: self.open_line }));
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
    fn an_unclosed_quote_names_the_line_it_opened_on() {
        for chunk in [1, 5, 4096] {
            let (out, _) = run(b"a,b\n1,2\n3,\"oops\n4,5\n6,7\n", chunk, 1 << 20);
            let e = out.unwrap_err();
            let u = e.get_ref().and_then(|i| i.downcast_ref::<Unclosed>()).expect("an Unclosed error");
            assert_eq!(u.line, 3, "chunk {chunk}");
        }
    }

    #[test]
    fn a_row_over_the_limit_stops_the_read_even_inside_quotes() {
        let mut big = b"a,b\n1,\"".to_vec();
        big.extend(std::iter::repeat_n(b'x', 10_000));
        big.extend_from_slice(b"\"\n");
        let (out, _) = run(&big, 4096, 1000);
        let e = out.unwrap_err();
        let o = OverLimit::of(&e).expect("an OverLimit error");
        assert_eq!((o.limit, o.line), (Limit::Row, Some(2)));
        // Many short rows are fine whatever their total.
        let many: Vec<u8> = (0..10_000).flat_map(|i| format!("{i},x\n").into_bytes()).collect();
        assert!(run(&many, 4096, 100).0.is_ok());
    }
}
