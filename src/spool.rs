//! The download file, readable while it is being written: the parser follows the SFTP
//! download instead of waiting for it (issue 8: a million rows in about the download time).
//!
//! Safety of the data: the reader sees end-of-file only once the writer has called
//! [`EndGuard::complete`], which `sync` does after the size check; a failed, cut or
//! unneeded download ends every reader with an error instead, so a partial file can never
//! parse as a short export. `sync` also uses the parse only when the fetch itself succeeded.
//!
//! A file already on this machine (a local folder) is not copied: the "download" reads it to
//! hash it and only counts the bytes ([`Growing::in_place`]), and the parse follows those
//! counts through the file itself. Copying it had been a tenth of a 1M dry run's CPU (perf:
//! the kernel's copy into the page cache, and reading the copy back; BENCHMARKS.md, issue 29
//! sixth pass). What a copy guaranteed, that the bytes hashed are the bytes parsed, a
//! [`Stamp`] checks instead: any write to the file, or a new file renamed over it, between
//! the listing and the end of the parse refuses the run.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// A file being written by one writer and read by any number of readers.
pub struct Growing {
    path: PathBuf,
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// Bytes in the file that readers may read.
    written: u64,
    end: Option<End>,
}

#[derive(Clone)]
enum End {
    Complete,
    Failed(String),
}

impl Growing {
    pub fn new(path: &Path) -> Arc<Growing> {
        Arc::new(Growing { path: path.to_path_buf(), state: Mutex::default(), changed: Condvar::new() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking writer or reader leaves plain counters behind; they stay usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn grew(&self, n: u64) {
        self.lock().written += n;
        self.changed.notify_all();
    }

    fn end(&self, end: End) {
        let mut s = self.lock();
        if s.end.is_none() {
            s.end = Some(end);
        }
        drop(s);
        self.changed.notify_all();
    }

    /// The writer's side: what it writes becomes readable at once.
    pub fn writer(self: &Arc<Growing>, file: File) -> SpoolWriter {
        SpoolWriter { file: Some(file), growing: Arc::clone(self) }
    }

    /// The writer's side for a file that is its own download (`path` is the file itself):
    /// the bytes written are those read from it, so they are counted, not written again.
    pub fn in_place(self: &Arc<Growing>) -> SpoolWriter {
        SpoolWriter { file: None, growing: Arc::clone(self) }
    }

    /// Ends the file when dropped: as failed, unless `complete` was called first. Held by
    /// the code that decides whether the download is good, so every early return fails it.
    pub fn guard(self: &Arc<Growing>) -> EndGuard {
        EndGuard { growing: Arc::clone(self), done: false }
    }

    /// A reader from the start of the file.
    pub fn reader(self: &Arc<Growing>) -> io::Result<Follow> {
        Ok(Follow { file: File::open(&self.path)?, pos: 0, growing: Arc::clone(self) })
    }

    /// Waits until the download ends; Ok when it completed. For readers that need the whole
    /// file (a zip's directory is at its end; spreadsheets seek).
    pub fn wait_complete(&self) -> io::Result<()> {
        let mut s = self.lock();
        loop {
            match &s.end {
                Some(End::Complete) => return Ok(()),
                Some(End::Failed(why)) => return Err(io::Error::other(why.clone())),
                None => s = self.changed.wait(s).unwrap_or_else(|e| e.into_inner()),
            }
        }
    }
}

/// `file` None: in place (see `Growing::in_place`).
pub struct SpoolWriter {
    file: Option<File>,
    growing: Arc<Growing>,
}

impl Write for SpoolWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = match &mut self.file {
            Some(f) => f.write(buf)?,
            None => buf.len(),
        };
        self.growing.grew(n as u64);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().map_or(Ok(()), Write::flush)
    }
}

/// What a file read in place was when it was picked: its inode, size and times. Any write
/// changes its modification and change times, and a file renamed over it is another inode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    path: PathBuf,
    seen: Seen,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Seen {
    fn of(path: &Path) -> io::Result<Seen> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path)?;
        Ok(Seen { dev: m.dev(), ino: m.ino(), size: m.size(), mtime: (m.mtime(), m.mtime_nsec()), ctime: (m.ctime(), m.ctime_nsec()) })
    }
}

impl Stamp {
    pub fn of(path: &Path) -> io::Result<Stamp> {
        Ok(Stamp { path: path.to_path_buf(), seen: Seen::of(path)? })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file is still exactly what was stamped (a file gone is not).
    pub fn holds(&self) -> bool {
        Seen::of(&self.path).is_ok_and(|now| now == self.seen)
    }
}

pub struct EndGuard {
    growing: Arc<Growing>,
    done: bool,
}

impl EndGuard {
    /// The download is whole and checked: readers may now reach its end.
    pub fn complete(mut self) {
        self.done = true;
        self.growing.end(End::Complete);
    }
}

impl Drop for EndGuard {
    fn drop(&mut self) {
        if !self.done {
            self.growing.end(End::Failed("the download did not complete, so the file was not parsed".into()));
        }
    }
}

/// Reads a growing file, waiting for bytes not written yet.
pub struct Follow {
    file: File,
    pos: u64,
    growing: Arc<Growing>,
}

impl Read for Follow {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let available = {
            let mut s = self.growing.lock();
            loop {
                if s.written > self.pos {
                    break s.written - self.pos;
                }
                match &s.end {
                    Some(End::Complete) => return Ok(0),
                    Some(End::Failed(why)) => return Err(io::Error::other(why.clone())),
                    None => s = self.growing.changed.wait(s).unwrap_or_else(|e| e.into_inner()),
                }
            }
        };
        let want = buf.len().min(usize::try_from(available).unwrap_or(usize::MAX));
        let n = self.file.read(&mut buf[..want])?;
        if n == 0 {
            // Bytes were written but cannot be read (the file was truncated under us): an
            // end of file here would make the rest of the export silently disappear.
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the download file is shorter than what was written to it"));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_follows_the_writer_and_ends_only_when_complete() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let g = Growing::new(&path);
        let guard = g.guard();
        let mut w = g.writer(File::create(&path).unwrap());
        let mut r = g.reader().unwrap();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            r.read_to_end(&mut got).map(|_| got)
        });
        for chunk in [&b"hello "[..], b"growing ", b"file"] {
            w.write_all(chunk).unwrap();
        }
        // A wrong end of file would let the reader finish now; give it time to show. (A
        // correct reader blocks until `complete`, whatever the wait.)
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(!reader.is_finished(), "no end of file before the download is declared complete");
        guard.complete();
        assert_eq!(reader.join().unwrap().unwrap(), b"hello growing file");
        g.wait_complete().unwrap();
    }

    #[test]
    fn a_file_read_in_place_is_followed_through_its_counts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"Id\nE1\nE2\n").unwrap();
        let g = Growing::new(&path);
        let guard = g.guard();
        let mut r = g.reader().unwrap();
        let mut w = g.in_place();
        // Counted but not written: the file keeps its bytes, once.
        w.write_all(b"Id\nE1\n").unwrap();
        let mut got = vec![0u8; 64];
        let n = r.read(&mut got).unwrap();
        assert_eq!(&got[..n], b"Id\nE1\n", "no further than counted");
        w.write_all(b"E2\n").unwrap();
        guard.complete();
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, b"E2\n");
        assert_eq!(std::fs::read(&path).unwrap(), b"Id\nE1\nE2\n");
    }

    #[test]
    fn a_stamp_sees_a_write_a_replacement_and_a_removal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.csv");
        std::fs::write(&path, b"Id\nE1\n").unwrap();
        let stamp = Stamp::of(&path).unwrap();
        assert!(stamp.holds(), "nothing happened");
        // The same bytes written again in place, with the old modification time put back.
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        (&f).write_all(b"Id\nE9\n").unwrap();
        f.set_modified(mtime).unwrap();
        drop(f);
        assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), mtime);
        assert!(!stamp.holds(), "a write in place, even with its time put back");
        // Another file renamed over it.
        let stamp = Stamp::of(&path).unwrap();
        let other = dir.path().join("new.csv");
        std::fs::write(&other, b"Id\nE9\n").unwrap();
        std::fs::rename(&other, &path).unwrap();
        assert!(!stamp.holds(), "replaced");
        let stamp = Stamp::of(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(!stamp.holds(), "removed");
    }

    #[test]
    fn a_file_cut_under_the_reader_is_an_error_not_an_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let g = Growing::new(&path);
        let mut w = g.writer(File::create(&path).unwrap());
        w.write_all(b"Id\nE1\nE2\n").unwrap();
        g.guard().complete();
        std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(3).unwrap();
        let mut got = Vec::new();
        let err = g.reader().unwrap().read_to_end(&mut got).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
    }

    #[test]
    fn a_failed_download_is_an_error_for_readers_never_a_short_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let g = Growing::new(&path);
        let guard = g.guard();
        let mut w = g.writer(File::create(&path).unwrap());
        w.write_all(b"Id\nE1\nE2\n").unwrap();
        let mut r = g.reader().unwrap();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            r.read_to_end(&mut got)
        });
        drop(guard); // an early return in the download
        let err = reader.join().unwrap().unwrap_err();
        assert!(err.to_string().contains("did not complete"), "{err}");
        assert!(g.wait_complete().is_err());
    }
}
