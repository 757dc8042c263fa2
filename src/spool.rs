//! The download file, readable while it is being written: the parser follows the SFTP
//! download instead of waiting for it (issue 8: a million rows in about the download time).
//!
//! Safety of the data: the reader sees end-of-file only once the writer has called
//! [`EndGuard::complete`], which `sync` does after the size check; a failed, cut or
//! unneeded download ends every reader with an error instead, so a partial file can never
//! parse as a short export. `sync` also uses the parse only when the fetch itself succeeded.

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
        SpoolWriter { file, growing: Arc::clone(self) }
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

pub struct SpoolWriter {
    file: File,
    growing: Arc<Growing>,
}

impl Write for SpoolWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.growing.grew(n as u64);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
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
