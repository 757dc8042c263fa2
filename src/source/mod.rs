//! Source: lists, selects and downloads the export file. `sftp` is the real one; `local`
//! (a folder) serves the demo and the tests of everything downstream.
//!
//! Sources are blocking (libssh2 is); `sync` runs them on a blocking thread under a deadline.
//! A source makes one attempt at each step; `retrieve` is the one loop that retries
//! (connect → list → select → download, resuming where a cut download stopped).

pub mod local;
pub mod pgp;
mod retrieve;
pub mod select;
pub mod settings;
pub mod sftp;

pub use self::retrieve::{Choice, Request, Retrieved, describe, retrieve};

use std::io::Write;

use chrono::{DateTime, Utc};

use crate::exit::{Classify, Exit};
pub use settings::{After, FileRule, HostKeyPolicy, Pick, Sftp, SftpAuth, SourceConfig};

/// A file on the source, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    /// Full path on the source (as the config's `path` is written).
    pub path: String,
    pub size: u64,
    pub mtime: Option<DateTime<Utc>>,
}

impl RemoteFile {
    pub fn name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
}

/// What a completed download was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub bytes: u64,
    /// Lowercase hex.
    pub sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot connect to {host}:{port}: {detail}; check host, port and firewall")]
    Connect { host: String, port: u16, detail: String },
    #[error("{0}")]
    HostKey(String),
    #[error("authentication as \"{user}\" on {host} failed: {detail}")]
    Auth { user: String, host: String, detail: String },
    #[error("{0}")]
    Algorithms(String),
    /// An established connection failed mid-step (not a timeout).
    #[error("{host}: {step}: the connection was lost ({detail}); the server may have restarted, or something between us drops connections")]
    Lost { host: String, step: String, detail: String },
    #[error("{host}: {step} timed out after {secs}s; the server may be overloaded, or something between us drops packets")]
    Timeout { host: String, step: String, secs: u64 },
    #[error("{0}")]
    NoFile(String),
    #[error("file {path} is {size} bytes, above max_size ({max}); raise [file] max_size if this is expected")]
    TooLarge { path: String, size: u64, max: u64 },
    #[error("download of {path} was cut after {got} of {expected} bytes: {detail}")]
    Truncated { path: String, got: u64, expected: u64, detail: String },
    #[error(
        "{path} changed while it was being read (written to, or replaced): nothing was synced from it; sync it again once it is written whole (the daemon's next run does). If exports are written in place, set [file] min_age above the time one takes to write"
    )]
    Changed { path: String },
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error("{0}")]
    Stale(String),
    #[error(transparent)]
    Glob(#[from] select::SelectError),
    /// `retrieve` tried as often as the run allows; `last` is why the last attempt failed.
    #[error("{last} ({why}; the run can be retried later)")]
    GaveUp { why: crate::retry::GiveUp, last: Box<SourceError> },
    #[error("{0}")]
    Other(String),
    /// An OpenPGP export that does not decrypt or verify, or a key that does not read.
    #[error(transparent)]
    Pgp(#[from] pgp::PgpError),
}

impl Classify for SourceError {
    fn exit(&self) -> Exit {
        match self {
            SourceError::Connect { .. }
            | SourceError::HostKey(_)
            | SourceError::Auth { .. }
            | SourceError::Algorithms(_)
            | SourceError::Lost { .. }
            | SourceError::Timeout { .. } => Exit::Connection,
            SourceError::NoFile(_) | SourceError::TooLarge { .. } | SourceError::Stale(_) => Exit::Data,
            SourceError::Truncated { .. } | SourceError::Changed { .. } => Exit::Connection,
            SourceError::Glob(e) => e.exit(),
            SourceError::GaveUp { last, .. } => last.exit(),
            SourceError::Pgp(e) => e.exit(),
            SourceError::Io { .. } | SourceError::Other(_) => Exit::Other,
        }
    }
    fn retriable(&self) -> bool {
        match self {
            SourceError::Connect { .. }
            | SourceError::Lost { .. }
            | SourceError::Timeout { .. }
            | SourceError::Truncated { .. }
            | SourceError::Changed { .. } => true,
            // Not within this run (its retries are spent), but a later run may succeed.
            SourceError::GaveUp { last, .. } => last.retriable(),
            _ => false,
        }
    }
}

/// A connected source. Each method makes one attempt: retrying is `retrieve`'s alone.
pub trait Source: Send {
    /// Files in the folder of `pattern` whose names match its glob (or the exact file).
    fn list(&mut self, pattern: &str) -> Result<Vec<RemoteFile>, SourceError>;
    /// The file at `path` as it is now (size, mtime): a resumed download checks it is still
    /// the file it started on.
    fn stat(&mut self, path: &str) -> Result<RemoteFile, SourceError>;
    /// Writes the bytes of `file` from `offset` to its end into `sink`; returns how many it
    /// wrote. Fails with `TooLarge` once `offset` + those bytes pass `max_size`.
    fn read_from(&mut self, file: &RemoteFile, offset: u64, sink: &mut dyn Write, max_size: u64) -> Result<u64, SourceError>;
    /// One attempt at the whole file, hashed: fails (never returns a short read as
    /// success) when another number of bytes than `file.size` arrives, or more than `max_size`.
    fn fetch(&mut self, file: &RemoteFile, sink: &mut dyn Write, max_size: u64) -> Result<Fetched, SourceError> {
        if file.size > max_size {
            return Err(SourceError::TooLarge { path: file.path.clone(), size: file.size, max: max_size });
        }
        let mut w = HashingWriter::new(sink);
        self.read_from(file, 0, &mut w, max_size)?;
        let (_, fetched) = w.finish();
        retrieve::check_size(file, fetched)
    }
    /// Where the file is on this machine, when it can be read there instead of copied to a
    /// download file (a local folder; `crate::spool`).
    fn in_place(&self, _file: &RemoteFile) -> Option<std::path::PathBuf> {
        None
    }
    /// Applies `after` to a file that has been synced.
    fn finish(&mut self, file: &RemoteFile, after: &After) -> Result<(), SourceError>;
    /// Writes `bytes` to `path` whole (a result file for the customer): under a temporary
    /// name in the same folder, then renamed over `path`, so a reader never sees half of it.
    fn put(&mut self, path: &str, bytes: &[u8]) -> Result<(), SourceError>;
    /// "sftp://user@host:port" or "local:/dir", for reports and errors.
    fn describe(&self) -> String;
}

/// Connects to the configured source.
pub fn connect(cfg: &SourceConfig) -> Result<Box<dyn Source>, SourceError> {
    match cfg {
        SourceConfig::Local { dir } => Ok(Box::new(local::LocalSource::new(dir.clone()))),
        SourceConfig::Sftp(s) => Ok(Box::new(sftp::SftpSource::connect(s)?)),
    }
}

/// A writer that hashes what passes through it and counts bytes. It outlives a cut
/// connection: a resumed download writes on into the same one, so the hash covers the
/// whole file however many connections brought it.
pub struct HashingWriter<W: Write> {
    inner: W,
    hasher: sha2::Sha256,
    pub bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        use sha2::Digest;
        HashingWriter { inner, hasher: sha2::Sha256::new(), bytes: 0 }
    }
    /// The writer back, and what went through it.
    pub fn finish(self) -> (W, Fetched) {
        use sha2::Digest;
        (self.inner, Fetched { bytes: self.bytes, sha256: hex::encode(self.hasher.finalize()) })
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use sha2::Digest;
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
