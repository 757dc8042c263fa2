//! JSON: an array of objects at the root or at the pointer `records`, streamed element by
//! element (a serde visitor over the array, never the whole tree); NDJSON, one object per
//! line. Columns are paths into each object: `name.first`, `emails[0].value`. Numbers and
//! booleans become text. Lines are where each object starts.

use super::input::Input;
use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::producer::{self, Sink};
use super::{Format, SourceOptions};
use super::{FormatError, Limit, Limits, OverLimit, ReadError, Record, Records, input};
use crate::model::RowError;

/// A column absent from every one of the first records is missing from the file (optional
/// fields are often left out of single records, so one record is not enough to tell).
const PROBE: usize = 100;

pub(crate) fn open_array(input: &Input, file: &str, opts: &SourceOptions, columns: &[String]) -> Result<Records, FormatError> {
    let (input, file_s, opts, columns) = (input.clone(), file.to_string(), opts.clone(), columns.to_vec());
    producer::spawn("json-reader", file, move |sink| {
        let text = input::text(&input, &file_s, &opts)?;
        let lines = Arc::new(AtomicU64::new(1));
        let record = Arc::new(RecordBytes { max: opts.limits.max_row, ..RecordBytes::default() });
        let reader = LineCounter { inner: BufReader::with_capacity(1 << 16, text), lines: lines.clone(), record: record.clone() };
        let mut out = Emitter::new(&file_s, columns, sink, opts.limits);
        out.record_bytes = Some(record.clone());
        let pointer = parse_pointer(opts.records.as_deref().unwrap_or(""));
        let mut de = serde_json::Deserializer::from_reader(reader);
        let seed = Walk { pointer: &pointer, depth: 0, out: &mut out, lines: &lines };
        match seed.deserialize(&mut de) {
            Ok(Found::Yes) => {}
            Ok(Found::NotArray(kind)) => {
                return Err(FormatError::NotAnArray { file: file_s.clone(), at: pointer_name(&opts), kind });
            }
            Ok(Found::No(keys)) => {
                return Err(FormatError::Malformed {
                    file: file_s.clone(),
                    line: None,
                    message: format!(
                        "nothing at {}; {}; set [source] records to the pointer of the array (e.g. \"/employees\")",
                        pointer_name(&opts),
                        if keys.is_empty() {
                            "the document has no such path".to_string()
                        } else {
                            format!("the keys there are {}", keys.join(", "))
                        }
                    ),
                });
            }
            Err(_) if out.stopped => {}
            Err(_) if record.over.load(Ordering::Relaxed) => {
                let line = record.line.load(Ordering::Relaxed);
                return Err(opts.limits.exceeded(&file_s, Some(line), Limit::Row, format!("the record starting on line {line}")));
            }
            Err(e) if e.io_error_kind().is_some() => {
                let io = std::io::Error::from(e);
                return Err(FormatError::from_io(&file_s, &opts.limits, io));
            }
            Err(e) => {
                return Err(FormatError::Malformed {
                    file: file_s.clone(),
                    line: Some(e.line() as u64),
                    message: format!("not valid JSON: {e}; ask for a new export"),
                });
            }
        }
        out.finish()
    })
}

pub(crate) fn open_ndjson(input: &Input, file: &str, opts: &SourceOptions, columns: &[String]) -> Result<Records, FormatError> {
    let (input, file_s, opts, columns) = (input.clone(), file.to_string(), opts.clone(), columns.to_vec());
    producer::spawn("ndjson-reader", file, move |sink| {
        let mut reader = BufReader::with_capacity(1 << 16, input::text(&input, &file_s, &opts)?);
        let mut out = Emitter::new(&file_s, columns, sink, opts.limits);
        let mut buf = Vec::new();
        let mut line = 0u64;
        let max_row = opts.limits.max_row;
        loop {
            buf.clear();
            // One byte over the limit tells a line at it from one past it; a line is never
            // read further than that.
            let n =
                (&mut reader).take(max_row + 1).read_until(b'\n', &mut buf).map_err(|e| FormatError::from_io(&file_s, &opts.limits, e))?;
            if n == 0 {
                break;
            }
            line += 1;
            if n as u64 > max_row {
                return Err(opts.limits.exceeded(&file_s, Some(line), Limit::Row, format!("line {line}")));
            }
            if buf.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            let keep_going = match parse_strict(&buf) {
                Ok((Value::Object(m), dups)) => out.record(line, m, dups),
                Ok((other, _)) => out.row_error(line, format!("expected an object ({{\"Email\": …}}), found {}", kind(&other))),
                Err(e) => out.row_error(line, format!("not valid JSON: {e}")),
            };
            if !keep_going {
                break;
            }
        }
        out.finish()
    })
}

pub(crate) fn headers(input: &Input, file: &str, format: Format, opts: &SourceOptions) -> Result<Vec<String>, FormatError> {
    let probe = vec!["\u{0}rostersync-probe".to_string()];
    let r = if format == Format::Ndjson { open_ndjson(input, file, opts, &probe) } else { open_array(input, file, opts, &probe) };
    match r {
        Err(FormatError::MissingColumns { header, .. }) => Ok(header),
        Err(e) => Err(e),
        Ok(_) => Ok(Vec::new()),
    }
}

fn pointer_name(opts: &SourceOptions) -> String {
    match opts.records.as_deref() {
        None | Some("") => "the document root".into(),
        Some(p) => format!("records = \"{p}\""),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// One segment of a column path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

/// "emails[0].value" → Key(emails), Index(0), Key(value).
fn parse_path(p: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    for part in p.split('.') {
        let (key, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            out.push(Seg::Key(key.to_string()));
        }
        while let Some(close) = rest.find(']') {
            match rest[1..close].trim().parse::<usize>() {
                Ok(i) => out.push(Seg::Index(i)),
                Err(_) => out.push(Seg::Key(rest[1..close].to_string())),
            }
            rest = &rest[close + 1..];
        }
    }
    out
}

/// A key of an object: exact, else trimmed and ignoring case (as CSV headers).
fn get_key<'v>(m: &'v Map<String, Value>, k: &str) -> Option<&'v Value> {
    m.get(k).or_else(|| {
        let want = super::norm(k);
        m.iter().find(|(key, _)| super::norm(key) == want).map(|(_, v)| v)
    })
}

/// The value at a column: the whole name as a key first (flat exports have keys with dots
/// or brackets in them), then the name as a path.
fn lookup<'v>(m: &'v Map<String, Value>, column: &str, path: &[Seg]) -> Option<&'v Value> {
    if let Some(v) = get_key(m, column) {
        return Some(v);
    }
    let mut cur: Option<&Value> = None;
    for (i, seg) in path.iter().enumerate() {
        cur = match (i, seg, cur) {
            (0, Seg::Key(k), _) => get_key(m, k),
            (_, Seg::Key(k), Some(Value::Object(o))) => get_key(o, k),
            (_, Seg::Index(n), Some(Value::Array(a))) => a.get(*n),
            _ => None,
        };
        cur?;
    }
    cur
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        other => Some(other.to_string()),
    }
}

/// Paths of every leaf of a record, for error messages and `mapping suggest`.
fn leaf_paths(prefix: &str, v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                let p = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                leaf_paths(&p, v, out);
            }
        }
        Value::Array(a) if !a.is_empty() && a.iter().any(|x| x.is_object() || x.is_array()) => {
            for (i, v) in a.iter().enumerate().take(3) {
                leaf_paths(&format!("{prefix}[{i}]"), v, out);
            }
        }
        _ => {
            if !out.iter().any(|o| o == prefix) {
                out.push(prefix.to_string());
            }
        }
    }
}

/// An object of the array, or why the element is not one.
/// An object with the paths of the keys it has more than once, or why it is no object.
type Item = Result<(Map<String, Value>, Vec<String>), String>;
type Held = (u64, Item);

/// Turns objects into records; holds back the first `PROBE` to check the columns.
struct Emitter<'s> {
    file: String,
    columns: Vec<String>,
    paths: Vec<Vec<Seg>>,
    sink: &'s mut Sink,
    held: Vec<Held>,
    ready: bool,
    /// The consumer went away, or `fatal` is set: stop reading.
    stopped: bool,
    /// Columns missing from the first records, or a value over `max_field`: the file is refused.
    fatal: Option<FormatError>,
    limits: Limits,
    /// The reader's count of the record's bytes (JSON arrays), reset after each record.
    record_bytes: Option<Arc<RecordBytes>>,
}

impl<'s> Emitter<'s> {
    fn new(file: &str, columns: Vec<String>, sink: &'s mut Sink, limits: Limits) -> Self {
        let paths = columns.iter().map(|c| parse_path(c)).collect();
        Emitter {
            file: file.into(),
            columns,
            paths,
            sink,
            held: Vec::new(),
            ready: false,
            stopped: false,
            fatal: None,
            limits,
            record_bytes: None,
        }
    }

    /// The records array begins (at `line`): from now on each record's bytes are counted.
    fn count_records(&mut self, line: u64) {
        if let Some(r) = &self.record_bytes {
            r.bytes.store(0, Ordering::Relaxed);
            r.start.store(line, Ordering::Relaxed);
            r.active.store(true, Ordering::Relaxed);
        }
    }

    fn record(&mut self, line: u64, m: Map<String, Value>, duplicated: Vec<String>) -> bool {
        self.item(line, Ok((m, duplicated)))
    }

    fn row_error(&mut self, line: u64, msg: String) -> bool {
        self.item(line, Err(msg))
    }

    fn item(&mut self, line: u64, it: Item) -> bool {
        if let Some(r) = &self.record_bytes {
            r.bytes.store(0, Ordering::Relaxed);
            r.start.store(line, Ordering::Relaxed);
        }
        if !self.ready {
            self.held.push((line, it));
            if self.held.len() >= PROBE {
                return match self.release() {
                    Ok(go_on) => go_on,
                    Err(e) => {
                        self.fatal = Some(e);
                        self.stopped = true;
                        false
                    }
                };
            }
            return true;
        }
        let ok = self.emit(line, it);
        self.stopped |= !ok;
        ok
    }

    fn emit(&mut self, line: u64, it: Item) -> bool {
        let item = match it {
            Ok((m, duplicated)) => {
                let mut values: Vec<Option<String>> =
                    self.columns.iter().zip(&self.paths).map(|(c, p)| lookup(&m, c, p).and_then(text)).collect();
                if let Some((c, _)) =
                    self.columns.iter().zip(&values).find(|(_, v)| v.as_ref().is_some_and(|v| v.len() as u64 > self.limits.max_field))
                {
                    self.fatal = Some(self.limits.exceeded(
                        &self.file,
                        Some(line),
                        Limit::Field,
                        format!("the value of \"{c}\" in the record on line {line}"),
                    ));
                    return false;
                }
                match self.ambiguous(line, &duplicated, &mut values) {
                    Some(error) => Err(ReadError::Row { error, cells: Some(Record::from_values(line, values)) }),
                    None => Ok(Record::from_values(line, values)),
                }
            }
            // Not an object, or not JSON: nothing in it can be trusted to name a person.
            Err(message) => Err(ReadError::unidentified(RowError { line, column: None, message, external_id: None })),
        };
        self.sink.push(item)
    }

    /// A mapped column read through a key the record has twice: JSON parsers keep one of
    /// the values (serde_json the last), so which one the export meant cannot be told. Such
    /// columns are made absent and the row is an error naming the key; the other cells (the
    /// id among them) go with it, so the person is kept as they were.
    fn ambiguous(&self, line: u64, duplicated: &[String], values: &mut [Option<String>]) -> Option<RowError> {
        let mut error = None;
        for (k, column) in self.columns.iter().enumerate() {
            let Some(key) = duplicated.iter().find(|d| reads_through(column, d)) else { continue };
            values[k] = None;
            error.get_or_insert_with(|| RowError {
                line,
                column: Some(column.clone()),
                message: format!(
                    "the key \"{key}\" appears more than once in this record, so which value is meant cannot be told; fix the export so each key appears once"
                ),
                external_id: None,
            });
        }
        error
    }

    /// Checks the columns against the held records, then lets everything flow.
    fn check(&self) -> Result<(), FormatError> {
        let objects: Vec<&Map<String, Value>> = self.held.iter().filter_map(|(_, r)| r.as_ref().ok().map(|(m, _)| m)).collect();
        if objects.is_empty() {
            return Ok(()); // nothing to check against; Empty or row errors follow
        }
        let missing: Vec<String> = self
            .columns
            .iter()
            .zip(&self.paths)
            .filter(|(c, p)| !objects.iter().any(|m| lookup(m, c, p).is_some()))
            .map(|(c, _)| c.clone())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let mut header = Vec::new();
        for m in &objects {
            leaf_paths("", &Value::Object((*m).clone()), &mut header);
        }
        let closest = missing.iter().filter_map(|m| super::closest_name(m, &header).map(|h| format!("\"{h}\" (for \"{m}\")"))).collect();
        Err(FormatError::MissingColumns {
            file: self.file.clone(),
            header_line: self.held[0].0,
            missing,
            header,
            closest,
            hints: Box::default(),
        })
    }

    fn release(&mut self) -> Result<bool, FormatError> {
        self.check()?;
        self.ready = true;
        if !self.sink.ready() {
            self.stopped = true;
            return Ok(false);
        }
        for (line, it) in std::mem::take(&mut self.held) {
            if !self.emit(line, it) {
                self.stopped = true;
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn finish(mut self) -> Result<(), FormatError> {
        if !self.ready && self.fatal.is_none() {
            self.release()?;
        }
        // Releasing the held records may itself find a fatal value.
        match self.fatal.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Counts newlines as serde_json pulls bytes (it reads one byte at a time through `Read`,
/// so at any visitor call the count is exact up to the token just read).
struct LineCounter<R> {
    inner: R,
    lines: Arc<AtomicU64>,
    record: Arc<RecordBytes>,
}

/// The bytes of the record being read, against `max_row`: counted by the reader once the
/// records array is reached, reset by the emitter after each record. serde_json would
/// otherwise build a 512 MiB string in memory before anyone could look at it.
#[derive(Debug, Default)]
struct RecordBytes {
    bytes: AtomicU64,
    active: std::sync::atomic::AtomicBool,
    max: u64,
    over: std::sync::atomic::AtomicBool,
    /// The line the record over the limit started on.
    line: AtomicU64,
    start: AtomicU64,
}

impl<R: Read> Read for LineCounter<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let nl = buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        if nl > 0 {
            self.lines.fetch_add(nl, Ordering::Relaxed);
        }
        let r = &self.record;
        if r.active.load(Ordering::Relaxed) && r.bytes.fetch_add(n as u64, Ordering::Relaxed) + n as u64 > r.max {
            let line = r.start.load(Ordering::Relaxed);
            r.line.store(line, Ordering::Relaxed);
            r.over.store(true, Ordering::Relaxed);
            return Err(OverLimit::io(Limit::Row, Some(line), format!("the record starting on line {line}")));
        }
        Ok(n)
    }
}

/// "/data/employees" → ["data", "employees"], with ~1 and ~0 unescaped.
fn parse_pointer(p: &str) -> Vec<String> {
    p.split('/').skip(1).map(|s| s.replace("~1", "/").replace("~0", "~")).collect()
}

enum Found {
    Yes,
    NotArray(&'static str),
    /// Not found; the keys at the level where the path stopped.
    No(Vec<String>),
}

/// Walks the document down the pointer without building it, then streams the array.
struct Walk<'a, 's> {
    pointer: &'a [String],
    depth: usize,
    out: &'a mut Emitter<'s>,
    lines: &'a Arc<AtomicU64>,
}

impl<'de> DeserializeSeed<'de> for Walk<'_, '_> {
    type Value = Found;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Found, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_, '_> {
    type Value = Found;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON document holding an array of records")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Found, A::Error> {
        if self.depth >= self.pointer.len() {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            return Ok(Found::NotArray("an object"));
        }
        let want = &self.pointer[self.depth];
        let mut keys = Vec::new();
        let mut found = None;
        while let Some(k) = map.next_key::<String>()? {
            if found.is_none() && k == *want {
                let seed = Walk { pointer: self.pointer, depth: self.depth + 1, out: &mut *self.out, lines: self.lines };
                found = Some(map.next_value_seed(seed)?);
                if self.out.stopped {
                    return Err(de::Error::custom("stopped"));
                }
            } else {
                if keys.len() < 20 {
                    keys.push(format!("\"{k}\""));
                }
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found.unwrap_or(Found::No(keys)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Found, A::Error> {
        if self.depth < self.pointer.len() {
            let want = self.pointer[self.depth].parse::<usize>().ok();
            let mut i = 0;
            let mut found = None;
            loop {
                if Some(i) == want && found.is_none() {
                    let seed = Walk { pointer: self.pointer, depth: self.depth + 1, out: &mut *self.out, lines: self.lines };
                    match seq.next_element_seed(seed)? {
                        Some(f) => found = Some(f),
                        None => break,
                    }
                } else if seq.next_element::<IgnoredAny>()?.is_none() {
                    break;
                }
                i += 1;
            }
            return Ok(found.unwrap_or(Found::No(Vec::new())));
        }
        self.out.count_records(self.lines.load(Ordering::Relaxed));
        while let Some(el) = seq.next_element_seed(Element { lines: self.lines })? {
            let keep_going = match el {
                (line, Value::Object(m), dups) => self.out.record(line, m, dups),
                (line, other, _) => self.out.row_error(line, format!("expected an object ({{\"Email\": …}}), found {}", kind(&other))),
            };
            if !keep_going {
                return Err(de::Error::custom("stopped"));
            }
        }
        Ok(Found::Yes)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Found, E> {
        Ok(if self.depth >= self.pointer.len() { Found::NotArray("a string") } else { Found::No(Vec::new()) })
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Found, E> {
        Ok(if self.depth >= self.pointer.len() { Found::NotArray("a boolean") } else { Found::No(Vec::new()) })
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Found, E> {
        Ok(if self.depth >= self.pointer.len() { Found::NotArray("a number") } else { Found::No(Vec::new()) })
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Found, E> {
        self.visit_i64(0)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Found, E> {
        self.visit_i64(0)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Found, E> {
        Ok(if self.depth >= self.pointer.len() { Found::NotArray("null") } else { Found::No(Vec::new()) })
    }
}

/// One array element with the line of its opening brace, and the keys it has twice.
struct Element<'a> {
    lines: &'a Arc<AtomicU64>,
}

impl<'de> DeserializeSeed<'de> for Element<'_> {
    type Value = (u64, Value, Vec<String>);
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        let mut dups = Vec::new();
        // The opening brace is read when the visitor is called: the counter is at its line;
        // a scalar element's line is where it ends, which is the same line.
        let (value, line) = Strict { prefix: "", key: "", dups: &mut dups, lines: Some(self.lines) }.deserialize(d)?;
        Ok((line, value, dups))
    }
}

/// One NDJSON line as a value, with the keys it has twice.
fn parse_strict(buf: &[u8]) -> Result<(Value, Vec<String>), serde_json::Error> {
    let mut dups = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(buf);
    let (value, _) = Strict { prefix: "", key: "", dups: &mut dups, lines: None }.deserialize(&mut de)?;
    de.end()?;
    Ok((value, dups))
}

/// A JSON value as serde_json builds it, noting every key an object has more than once
/// (serde_json's own `Value` keeps the last silently). `prefix` + `key` is the value's path
/// ("name.first", "emails[0]"), built only for an object or array that holds more.
struct Strict<'a> {
    prefix: &'a str,
    key: &'a str,
    dups: &'a mut Vec<String>,
    /// The reader's line counter, for the top-level value of an array element.
    lines: Option<&'a Arc<AtomicU64>>,
}

impl Strict<'_> {
    fn path(&self) -> String {
        format!("{}{}", self.prefix, self.key)
    }

    fn at(&self) -> u64 {
        self.lines.map_or(0, |l| l.load(Ordering::Relaxed))
    }
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = (Value, u64);
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(Value, u64), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = (Value, u64);

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(Value, u64), A::Error> {
        let line = self.at();
        let inner = if self.key.is_empty() { String::new() } else { self.path() + "." };
        let mut m = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            let (v, _) = map.next_value_seed(Strict { prefix: &inner, key: &k, dups: &mut *self.dups, lines: None })?;
            if m.insert(k.clone(), v).is_some() {
                let path = format!("{inner}{k}");
                if !self.dups.contains(&path) {
                    self.dups.push(path);
                }
            }
        }
        Ok((Value::Object(m), line))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(Value, u64), A::Error> {
        let line = self.at();
        let path = self.path();
        let mut a = Vec::new();
        loop {
            let key = format!("[{}]", a.len());
            match seq.next_element_seed(Strict { prefix: &path, key: &key, dups: &mut *self.dups, lines: None })? {
                Some((v, _)) => a.push(v),
                None => break,
            }
        }
        Ok((Value::Array(a), line))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<(Value, u64), E> {
        Ok((Value::String(s.into()), self.at()))
    }
    fn visit_string<E: de::Error>(self, s: String) -> Result<(Value, u64), E> {
        Ok((Value::String(s), self.at()))
    }
    fn visit_bool<E: de::Error>(self, b: bool) -> Result<(Value, u64), E> {
        Ok((Value::Bool(b), self.at()))
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<(Value, u64), E> {
        Ok((Value::from(n), self.at()))
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<(Value, u64), E> {
        Ok((Value::from(n), self.at()))
    }
    fn visit_f64<E: de::Error>(self, n: f64) -> Result<(Value, u64), E> {
        Ok((Value::from(n), self.at()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(Value, u64), E> {
        Ok((Value::Null, self.at()))
    }
}

/// Whether a column's value is read through the key at `path` ("Email" reads through
/// "Email"; "name.first" through "name"), compared as keys are (trimmed, ignoring case).
fn reads_through(column: &str, path: &str) -> bool {
    let (c, p) = (super::norm(column), super::norm(path));
    c == p || c.strip_prefix(&p).is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_keys_and_indexes() {
        assert_eq!(parse_path("emails[0].value"), vec![Seg::Key("emails".into()), Seg::Index(0), Seg::Key("value".into())]);
        assert_eq!(parse_path("name.first"), vec![Seg::Key("name".into()), Seg::Key("first".into())]);
    }

    #[test]
    fn lookup_prefers_flat_keys_then_paths() {
        let v: Value =
            serde_json::from_str(r#"{"a.b": 1, "a": {"b": 2}, "Name": {"First": "Zoë"}, "emails": [{"value": "z@x.org"}]}"#).unwrap();
        let m = v.as_object().unwrap();
        assert_eq!(lookup(m, "a.b", &parse_path("a.b")).and_then(text).as_deref(), Some("1"));
        assert_eq!(lookup(m, "name.first", &parse_path("name.first")).and_then(text).as_deref(), Some("Zoë"));
        assert_eq!(lookup(m, "emails[0].value", &parse_path("emails[0].value")).and_then(text).as_deref(), Some("z@x.org"));
        assert_eq!(lookup(m, "emails[1].value", &parse_path("emails[1].value")), None);
    }

    #[test]
    fn keys_given_twice_are_noted_at_any_depth() {
        let (v, dups) =
            parse_strict(br#"{"Email": "a@x.org", "Name": {"First": "A", "First": "B"}, "Email": "b@y.org", "tags": [{"k": 1, "k": 2}]}"#)
                .unwrap();
        assert_eq!(dups, vec!["Name.First".to_string(), "Email".into(), "tags[0].k".into()]);
        assert_eq!(v["Email"], "b@y.org", "the value is serde_json's, the last");
        let (_, dups) = parse_strict(br#"{"a": 1, "b": {"a": 2}}"#).unwrap();
        assert!(dups.is_empty());
        assert!(parse_strict(br#"{"a": 1} x"#).is_err(), "trailing characters are still refused");
    }

    #[test]
    fn a_column_reads_through_a_key_or_its_parents() {
        assert!(reads_through("Email", "email"));
        assert!(reads_through("name.first", "Name"));
        assert!(reads_through("emails[0].value", "emails"));
        assert!(!reads_through("Email2", "Email"));
        assert!(!reads_through("name", "name.first"));
    }
}
