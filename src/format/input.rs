//! Bytes of an export: looks through gzip and a `.zip` holding one file, and decodes text
//! encodings to UTF-8 (BOM sniffing; UTF-8 passes through untouched for speed).

use std::fs::File;
use std::io::{self, BufReader, Cursor, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};

use encoding_rs_io::DecodeReaderBytesBuilder;

use super::SourceOptions;
use super::{FormatError, Limit, Limits, OverLimit};

/// Chunk size for reading: large reads keep syscalls and channel hand-offs rare.
const CHUNK: usize = 1 << 20;

pub(crate) type Stream = Box<dyn Read + Send>;

/// Where an export's bytes are: a file on disk, or the download file still being written
/// (read as it grows; see `crate::spool`).
#[derive(Clone)]
pub enum Input {
    File(PathBuf),
    Growing(Arc<crate::spool::Growing>),
}

impl From<&Path> for Input {
    fn from(p: &Path) -> Input {
        Input::File(p.to_path_buf())
    }
}

impl Input {
    pub fn path(&self) -> &Path {
        match self {
            Input::File(p) => p,
            Input::Growing(g) => g.path(),
        }
    }

    /// A reader from the first byte.
    fn open(&self) -> io::Result<Stream> {
        Ok(match self {
            Input::File(p) => Box::new(File::open(p)?),
            Input::Growing(g) => Box::new(g.reader()?),
        })
    }

    /// Waits for the whole file, for readers that seek (zip, spreadsheets).
    fn complete(&self, file: &str) -> Result<&Path, FormatError> {
        if let Input::Growing(g) = self {
            g.wait_complete().map_err(io_err(file))?;
        }
        Ok(self.path())
    }
}

fn io_err(file: &str) -> impl Fn(io::Error) -> FormatError + '_ {
    move |source| FormatError::Io { file: file.into(), source }
}

/// The raw bytes of the export, gzip and zip unwrapped (recognised by their magic bytes,
/// so a misnamed file still reads), never more than `max_size` of them: a 2 MiB gzip that
/// inflates to gigabytes stops at the limit instead of being read to the end.
pub(crate) fn raw(input: &Input, file: &str, limits: &Limits) -> Result<Stream, FormatError> {
    let mut f = input.open().map_err(io_err(file))?;
    let mut magic = [0u8; 4];
    let n = read_full(&mut f, &mut magic).map_err(io_err(file))?;
    drop(f);
    let max = limits.max_size;
    if n == 4 && magic == *b"PK\x03\x04" {
        return Ok(Box::new(Bounded { inner: zip_stream(input.complete(file)?, file)?, left: max }));
    }
    let f = input.open().map_err(io_err(file))?;
    if n >= 2 && magic[..2] == [0x1f, 0x8b] {
        let gz = flate2::read::MultiGzDecoder::new(BufReader::with_capacity(CHUNK, f));
        return Ok(Box::new(Bounded { inner: Gunzip(gz), left: max }));
    }
    Ok(Box::new(Bounded { inner: f, left: max }))
}

/// A gzip stream whose decoding faults (cut short, a bad checksum, damaged blocks) are
/// marked `Incomplete`: what they mean for the customer is that the transfer failed.
struct Gunzip<R>(R);

impl<R: Read> Read for Gunzip<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData => {
                io::Error::other(Incomplete { detail: e.to_string() })
            }
            _ => e,
        })
    }
}

/// The I/O error of a gzip that cannot be decoded to its end (see `Gunzip`).
#[derive(Debug)]
pub(crate) struct Incomplete {
    pub detail: String,
}

impl std::fmt::Display for Incomplete {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the gzip data is truncated or corrupt: {}", self.detail)
    }
}

impl std::error::Error for Incomplete {}

impl Incomplete {
    /// The fault an I/O error reports, if it is one.
    pub fn of(e: &io::Error) -> Option<&Incomplete> {
        e.get_ref().and_then(|inner| inner.downcast_ref::<Incomplete>())
    }
}

/// Passes bytes through up to a limit; past it, an `OverLimit` error instead of more bytes.
struct Bounded<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // One byte more than allowed tells "exactly at the limit" from "past it".
        let want = buf.len().min(usize::try_from(self.left.saturating_add(1)).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n as u64 > self.left {
            return Err(OverLimit::io(Limit::Size, None, "the export once decompressed"));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Text decoded to UTF-8. With no encoding set, a BOM decides (UTF-8 or UTF-16) and
/// anything else passes through as UTF-8; an explicit encoding is used unless a BOM says
/// otherwise (a BOM never lies about the bytes that follow it).
pub(crate) fn text(input: &Input, file: &str, opts: &SourceOptions) -> Result<Stream, FormatError> {
    let mut raw = raw(input, file, &opts.limits)?;
    let enc = opts.encoding.filter(|e| *e != encoding_rs::UTF_8);
    if !enc.is_some_and(|e| e == encoding_rs::UTF_16LE || e == encoding_rs::UTF_16BE) {
        let mut head = [0u8; UTF16_SNIFF];
        let n = read_full(&mut raw, &mut head).map_err(|e| FormatError::from_io(file, &opts.limits, e))?;
        if let Some(label) = utf16_without_bom(&head[..n]) {
            return Err(FormatError::Malformed {
                file: file.into(),
                line: None,
                message: format!(
                    "the file is UTF-16 without a byte-order mark (every other byte is NUL), and was read as {}; set [source] encoding = \"{label}\" in the mapping",
                    enc.map_or("UTF-8", |e| e.name())
                ),
            });
        }
        raw = Box::new(Cursor::new(head[..n].to_vec()).chain(raw));
    }
    let dec = DecodeReaderBytesBuilder::new()
        .encoding(enc)
        .utf8_passthru(true)
        .strip_bom(true)
        .bom_override(true)
        .build_with_buffer(raw, vec![0; 1 << 16])
        .map_err(io_err(file))?;
    Ok(Box::new(dec))
}

/// Bytes looked at for UTF-16 without a byte-order mark: a header's first 32 code units.
const UTF16_SNIFF: usize = 64;

/// The encoding label of text that is UTF-16 without a BOM, judged by its first bytes: a
/// header in UTF-16 is mostly ASCII, so one byte of most code units is NUL, on the same side;
/// text in UTF-8 or a single-byte encoding holds no NUL at all. With a BOM, the decoder
/// knows already.
fn utf16_without_bom(head: &[u8]) -> Option<&'static str> {
    if head.starts_with(&[0xff, 0xfe]) || head.starts_with(&[0xfe, 0xff]) {
        return None;
    }
    let units = head.len() / 2;
    if units < 2 {
        return None;
    }
    let nul_at = |k: usize| head.chunks_exact(2).filter(|u| u[k] == 0).count();
    match (nul_at(0), nul_at(1)) {
        (0, high) if high * 2 >= units => Some("utf-16le"),
        (high, 0) if high * 2 >= units => Some("utf-16be"),
        _ => None,
    }
}

/// Whole file in memory, for spreadsheet readers that need `Seek` when the workbook came
/// inside gzip or zip; a plain file is read from disk.
pub(crate) enum Seekable {
    File(BufReader<File>),
    Memory(Chunks),
}

/// An inflated workbook in memory, in fixed-size chunks: never one vector grown by doubling,
/// whose every growth copies it (with mimalloc, whose large reallocations move, a 64 MiB
/// workbook peaked at three times that).
pub(crate) struct Chunks {
    chunks: Vec<Vec<u8>>,
    len: u64,
    pos: u64,
}

impl Chunks {
    const SIZE: usize = 1 << 20;

    /// Reads `r` to its end, in chunks.
    fn read_from(mut r: impl Read) -> io::Result<Chunks> {
        let mut chunks = Vec::new();
        let mut len = 0u64;
        loop {
            let mut chunk = Vec::with_capacity(Chunks::SIZE);
            let n = (&mut r).take(Chunks::SIZE as u64).read_to_end(&mut chunk)?;
            len += n as u64;
            if n > 0 {
                chunks.push(chunk);
            }
            if n < Chunks::SIZE {
                return Ok(Chunks { chunks, len, pos: 0 });
            }
        }
    }
}

impl Read for Chunks {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.len || buf.is_empty() {
            return Ok(0);
        }
        let (i, at) = ((self.pos / Chunks::SIZE as u64) as usize, (self.pos % Chunks::SIZE as u64) as usize);
        let chunk = &self.chunks[i][at..];
        let n = chunk.len().min(buf.len());
        buf[..n].copy_from_slice(&chunk[..n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl io::Seek for Chunks {
    fn seek(&mut self, pos: io::SeekFrom) -> io::Result<u64> {
        let to = match pos {
            io::SeekFrom::Start(n) => Some(n),
            io::SeekFrom::End(d) => self.len.checked_add_signed(d),
            io::SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = to.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start of the workbook"))?;
        Ok(self.pos)
    }
}

impl Read for Seekable {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Seekable::File(f) => f.read(buf),
            Seekable::Memory(m) => m.read(buf),
        }
    }
}

impl io::Seek for Seekable {
    fn seek(&mut self, pos: io::SeekFrom) -> io::Result<u64> {
        match self {
            Seekable::File(f) => f.seek(pos),
            Seekable::Memory(m) => m.seek(pos),
        }
    }
}

pub(crate) fn seekable(input: &Input, file: &str, limits: &Limits) -> Result<Seekable, FormatError> {
    seekable_held(input, file, limits).map(|(w, _)| w)
}

/// `seekable`, with what reading the workbook will hold: a compressed or zipped workbook
/// inflated in memory (calamine seeks), and the shared strings calamine reads whole.
pub(crate) fn seekable_held(input: &Input, file: &str, limits: &Limits) -> Result<(Seekable, u64), FormatError> {
    let path = input.complete(file)?;
    let lower = file.to_ascii_lowercase();
    let (workbook, inflated) = if lower.ends_with(".gz") || lower.ends_with(".zip") {
        // Held for the whole read: never more of it than the memory budget.
        let buf = Chunks::read_from(raw(input, file, limits)?.take(limits.max_memory.saturating_add(1)))
            .map_err(|e| FormatError::from_io(file, limits, e))?;
        if buf.len > limits.max_memory {
            return Err(limits.exceeded(file, None, Limit::Memory, "the workbook inflated from its gzip or zip, held while it is read"));
        }
        let n = buf.len;
        (Seekable::Memory(buf), n)
    } else {
        (Seekable::File(BufReader::with_capacity(1 << 16, File::open(path).map_err(io_err(file))?)), 0)
    };
    let (workbook, strings) = check_parts(workbook, file, limits)?;
    let held = strings.saturating_add(inflated);
    if held > limits.max_memory {
        return Err(limits.exceeded(file, None, Limit::Memory, "the workbook inflated from its gzip or zip and its shared strings"));
    }
    Ok((workbook, held))
}

/// xlsx and ods are zips of XML parts that calamine inflates whole (the shared strings of
/// an xlsx, the sheet of an ods): a 3 MiB workbook can hold a 1 GB part. Their sizes are
/// declared in the zip's directory, so they are checked before anything is inflated; then the
/// shared strings are measured (`shared_strings`), their cost returned and bounded by
/// `max_memory` before calamine reads them.
fn check_parts(mut workbook: Seekable, file: &str, limits: &Limits) -> Result<(Seekable, u64), FormatError> {
    let mut magic = [0u8; 4];
    let n = read_full(&mut workbook, &mut magic).map_err(io_err(file))?;
    io::Seek::rewind(&mut workbook).map_err(io_err(file))?;
    if n < 4 || magic != *b"PK\x03\x04" {
        return Ok((workbook, 0)); // xls (CFB) or not a workbook: calamine says which
    }
    let table = {
        let Ok(mut zip) = zip::ZipArchive::new(&mut workbook) else { return Ok((workbook, 0)) };
        let mut total = 0u64;
        for i in 0..zip.len() {
            let Ok(part) = zip.by_index_raw(i) else { continue };
            total = total.saturating_add(part.size());
        }
        if total > limits.max_size {
            return Err(limits.exceeded(file, None, Limit::Size, format!("the workbook's parts once inflated ({total} bytes declared)")));
        }
        super::shared_strings::measure(&mut zip, file, limits)?
    };
    io::Seek::rewind(&mut workbook).map_err(io_err(file))?;
    let held = table.map_or(0, |t| t.held());
    if let Some(t) = table
        && held > limits.max_memory
    {
        let what = format!(
            "the workbook's shared-string table ({} strings, {} declared by the table, {} bytes of XML once inflated)",
            t.strings, t.declared, t.xml_bytes
        );
        return Err(limits.exceeded(file, None, Limit::Memory, what));
    }
    Ok((workbook, held))
}

/// The one export inside a zip: files only, ignoring folders, macOS resource forks and
/// hidden files.
fn pick_entry<R: Read + io::Seek>(zip: &mut zip::ZipArchive<R>, file: &str) -> Result<(usize, String), FormatError> {
    let mut found = Vec::new();
    for i in 0..zip.len() {
        let Some(Ok(name)) = zip.name_for_index(i) else { continue };
        let base = name.rsplit('/').next().unwrap_or(&name);
        if name.ends_with('/') || name.starts_with("__MACOSX/") || base.starts_with('.') || base.is_empty() {
            continue;
        }
        found.push((i, name.to_string()));
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(FormatError::Malformed {
            file: file.into(),
            line: None,
            message: "the zip holds no file; the customer must zip the export itself".into(),
        }),
        _ => Err(FormatError::Malformed {
            file: file.into(),
            line: None,
            message: format!(
                "the zip holds {} files ({}); it must hold exactly one export",
                found.len(),
                found.iter().map(|(_, n)| n.as_str()).collect::<Vec<_>>().join(", ")
            ),
        }),
    }
}

fn open_zip(path: &Path, file: &str) -> Result<zip::ZipArchive<BufReader<File>>, FormatError> {
    let f = File::open(path).map_err(io_err(file))?;
    zip::ZipArchive::new(BufReader::new(f)).map_err(|e| FormatError::Malformed {
        file: file.into(),
        line: None,
        message: format!("not a readable zip archive: {e}"),
    })
}

pub(crate) fn zip_entry_name(path: &Path, file: &str) -> Result<String, FormatError> {
    let mut zip = open_zip(path, file)?;
    Ok(pick_entry(&mut zip, file)?.1)
}

/// Streams the zip's one entry. `ZipFile` borrows its archive, so a thread owns both and
/// hands chunks over a bounded channel: memory stays at a few chunks.
fn zip_stream(path: &Path, file: &str) -> Result<Stream, FormatError> {
    let mut zip = open_zip(path, file)?;
    let (index, _) = pick_entry(&mut zip, file)?;
    let (tx, rx) = sync_channel::<io::Result<Vec<u8>>>(4);
    std::thread::Builder::new()
        .name("zip-entry".into())
        .spawn(move || {
            let mut entry = match zip.by_index(index) {
                Ok(e) => e,
                Err(e) => {
                    let _ = tx.send(Err(io::Error::other(format!("cannot open the zip entry: {e}"))));
                    return;
                }
            };
            loop {
                let mut buf = vec![0; CHUNK];
                match read_full(&mut entry, &mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        buf.truncate(n);
                        if tx.send(Ok(buf)).is_err() {
                            return; // reader dropped: stop quietly
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                }
            }
        })
        .map_err(io_err(file))?;
    Ok(Box::new(ChannelReader { rx, buf: Vec::new(), pos: 0 }))
}

struct ChannelReader {
    rx: Receiver<io::Result<Vec<u8>>>,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.buf.len() {
            match self.rx.recv() {
                Ok(Ok(b)) => {
                    self.buf = b;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Reads until `buf` is full or the stream ends.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inflated_workbook_in_chunks_reads_and_seeks_like_one_buffer() {
        use std::io::{Read, Seek, SeekFrom};
        let data: Vec<u8> = (0..(super::Chunks::SIZE * 2 + 12_345)).map(|i| (i % 251) as u8).collect();
        let mut c = super::Chunks::read_from(&data[..]).unwrap();
        assert_eq!(c.len, data.len() as u64);
        let mut all = Vec::new();
        c.read_to_end(&mut all).unwrap();
        assert_eq!(all, data);
        // Across a chunk boundary, from the end, and past the end.
        c.seek(SeekFrom::Start(super::Chunks::SIZE as u64 - 3)).unwrap();
        let mut six = [0u8; 6];
        c.read_exact(&mut six).unwrap();
        assert_eq!(&six[..], &data[super::Chunks::SIZE - 3..super::Chunks::SIZE + 3]);
        assert_eq!(c.seek(SeekFrom::End(-10)).unwrap(), data.len() as u64 - 10);
        let mut tail = Vec::new();
        c.read_to_end(&mut tail).unwrap();
        assert_eq!(tail, data[data.len() - 10..]);
        assert!(c.seek(SeekFrom::Current(-(data.len() as i64) - 1)).is_err());
        assert_eq!(super::Chunks::read_from(&[][..]).unwrap().len, 0);
    }

    fn utf16(s: &str, le: bool) -> Vec<u8> {
        s.encode_utf16().flat_map(|u| if le { u.to_le_bytes() } else { u.to_be_bytes() }).collect()
    }

    #[test]
    fn utf16_without_a_bom_is_told_by_its_nuls() {
        let header = "Personnel Number,First Name,Last Name\n";
        assert_eq!(utf16_without_bom(&utf16(header, true)), Some("utf-16le"));
        assert_eq!(utf16_without_bom(&utf16(header, false)), Some("utf-16be"));
        assert_eq!(utf16_without_bom(&utf16("Prénom;Nom;Société\n", true)[..UTF16_SNIFF.min(38)]), Some("utf-16le"));
        for not in [header.as_bytes(), "Prénom;Nom\n".as_bytes(), b"\xff\xfeP\x00e\x00r\x00", b"a", b"", b"\x00\x00\x00\x00"] {
            assert_eq!(utf16_without_bom(not), None, "{not:?}");
        }
    }

    #[test]
    fn text_refuses_utf16_without_a_bom_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("e.csv");
        std::fs::write(&p, utf16("Id,First\nE1,Ann\n", true)).unwrap();
        let opts = SourceOptions::default();
        let e = text(&Input::from(p.as_path()), "e.csv", &opts).err().expect("refused");
        let msg = e.to_string();
        assert!(msg.contains("set [source] encoding = \"utf-16le\""), "{msg}");
        assert!(!msg.contains('\0'), "{msg}");
        // With the encoding set, it reads.
        let opts = SourceOptions { encoding: Some(encoding_rs::UTF_16LE), ..SourceOptions::default() };
        let mut out = String::new();
        text(&Input::from(p.as_path()), "e.csv", &opts).unwrap().read_to_string(&mut out).unwrap();
        assert_eq!(out, "Id,First\nE1,Ann\n");
    }
}
